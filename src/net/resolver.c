/* Asynchronous name resolution: a c-ares channel driven by an fg_loop, and
 * name slots that keep a host's addresses fresh (see resolver.h). Moved
 * here from the forward engine so the tunnel engine uses the same code. */
#include "net/resolver.h"

#include <ares.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/loop.h"
#include "core/util.h"
#include "net/addr.h"

struct rsock {
	struct fg_io io;
	struct fg_resolver *r;
};

struct fg_resolver {
	struct fg_loop *loop; /* borrowed */
	ares_channel ch;
	struct fg_timer timer;	/* c-ares's own timeouts */
	struct rsock socks[16]; /* one per socket c-ares asks us to watch */
	struct fg_name *names;	/* live slots, to detach them at free */
};

struct fg_name {
	struct fg_resolver *r; /* borrowed; NULL once the resolver is gone */
	fg_name_cb cb;
	void *arg; /* borrowed: the owner */
	struct fg_timer timer;
	bool resolving; /* a c-ares query holds the slot until its callback */
	bool in_cb;	/* inside the owner's callback */
	bool dead;	/* freed by the owner: the query's callback frees it */
	size_t naddrs;
	struct sockaddr_storage addrs[FG_NAME_MAX_ADDRS];
	struct fg_name *prev_n, *next_n; /* r->names */
	char host[FG_HOST_MAX + 1];
};

/* ---- pure parts ------------------------------------------------------ */

size_t fg_name_collect(const struct ares_addrinfo_node *nodes, struct sockaddr_storage *out,
		       size_t max, int64_t *ttl_ns)
{
	size_t n = 0;
	int64_t ttl = FG_NAME_MAX_TTL_NS;
	/* IPv4 first: a service that answers on one family usually does v4,
	 * and the first address is the one dialed */
	for (int pass = 0; pass < 2; pass++)
		for (const struct ares_addrinfo_node *nd = nodes; nd && n < max; nd = nd->ai_next) {
			if (nd->ai_family != (pass == 0 ? AF_INET : AF_INET6) ||
			    nd->ai_addrlen > sizeof(out[n]))
				continue;
			memset(&out[n], 0, sizeof(out[n]));
			memcpy(&out[n], nd->ai_addr, nd->ai_addrlen);
			n++;
			ttl = FG_MIN(ttl, (int64_t)nd->ai_ttl * FG_NS_PER_SEC);
		}
	*ttl_ns = ttl;
	return n;
}

int64_t fg_name_refresh_ns(int64_t ttl_ns)
{
	return FG_MIN(FG_MAX(ttl_ns, FG_NAME_MIN_TTL_NS), FG_NAME_MAX_TTL_NS);
}

static bool addr_in(const struct sockaddr_storage *a, const struct sockaddr_storage *set, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (fg_addr_ip_equal((const struct sockaddr *)a,
				     (const struct sockaddr *)&set[i]) &&
		    fg_addr_port((const struct sockaddr *)a) ==
			fg_addr_port((const struct sockaddr *)&set[i]))
			return true;
	return false;
}

bool fg_name_same_set(const struct sockaddr_storage *a, size_t na, const struct sockaddr_storage *b,
		      size_t nb)
{
	if (na != nb)
		return false;
	for (size_t i = 0; i < na; i++)
		if (!addr_in(&a[i], b, nb) || !addr_in(&b[i], a, na))
			return false;
	return true;
}

/* ---- the channel on the loop ----------------------------------------- */

static void resolver_process(struct fg_resolver *r);

static void rsock_cb(struct fg_loop *loop, struct fg_io *io, uint32_t events)
{
	FG_UNUSED(loop);
	struct rsock *rs = io->data;
	ares_socket_t rfd = (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) ? io->fd : ARES_SOCKET_BAD;
	ares_socket_t wfd = (events & EPOLLOUT) ? io->fd : ARES_SOCKET_BAD;
	ares_process_fd(rs->r->ch, rfd, wfd);
	resolver_process(rs->r);
}

static void sock_state_cb(void *data, ares_socket_t fd, int readable, int writable)
{
	struct fg_resolver *r = data;
	struct rsock *slot = NULL, *free_slot = NULL;
	for (size_t i = 0; i < FG_ARRAY_LEN(r->socks); i++) {
		if (r->socks[i].io.fd == fd)
			slot = &r->socks[i];
		else if (!free_slot && r->socks[i].io.fd < 0)
			free_slot = &r->socks[i];
	}
	uint32_t ev = (readable ? EPOLLIN : 0) | (writable ? EPOLLOUT : 0);
	if (!ev) {
		if (slot)
			fg_io_stop(r->loop, &slot->io);
		return;
	}
	if (slot) {
		fg_io_modify(r->loop, &slot->io, ev);
	} else if (free_slot) {
		free_slot->r = r;
		fg_io_start(r->loop, &free_slot->io, fd, ev, rsock_cb, free_slot);
	}
}

static void resolver_timer_cb(struct fg_loop *loop, struct fg_timer *t)
{
	FG_UNUSED(loop);
	struct fg_resolver *r = t->data;
	ares_process_fd(r->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
	resolver_process(r);
}

/* Re-arms the c-ares timeout timer after any activity. */
static void resolver_process(struct fg_resolver *r)
{
	struct timeval tv, *tvp = ares_timeout(r->ch, NULL, &tv);
	if (tvp)
		fg_timer_start(r->loop, &r->timer,
			       (int64_t)tvp->tv_sec * FG_NS_PER_SEC + tvp->tv_usec * 1000);
	else
		fg_timer_stop(r->loop, &r->timer);
}

struct fg_resolver *fg_resolver_new(struct fg_loop *loop)
{
	static bool lib_init;
	if (!lib_init) {
		if (ares_library_init(ARES_LIB_INIT_ALL) != ARES_SUCCESS)
			return NULL;
		lib_init = true;
	}
	struct fg_resolver *r = fg_calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->loop = loop;
	for (size_t i = 0; i < FG_ARRAY_LEN(r->socks); i++)
		fg_io_init(&r->socks[i].io);
	fg_timer_init(&r->timer, resolver_timer_cb, r);
	struct ares_options o = {.sock_state_cb = sock_state_cb, .sock_state_cb_data = r};
	if (ares_init_options(&r->ch, &o, ARES_OPT_SOCK_STATE_CB) != ARES_SUCCESS) {
		fg_free(r);
		return NULL;
	}
	return r;
}

static void name_unlink(struct fg_name *n)
{
	if (!n->r)
		return;
	if (n->prev_n)
		n->prev_n->next_n = n->next_n;
	else
		n->r->names = n->next_n;
	if (n->next_n)
		n->next_n->prev_n = n->prev_n;
	n->prev_n = n->next_n = NULL;
}

void fg_resolver_free(struct fg_resolver *r)
{
	if (!r)
		return;
	/* the slots outlive us, idle: no timer of theirs may fire into a
	 * freed channel */
	while (r->names) {
		struct fg_name *n = r->names;
		name_unlink(n);
		fg_timer_stop(r->loop, &n->timer);
		n->r = NULL;
	}
	ares_destroy(r->ch); /* runs pending callbacks with ARES_EDESTRUCTION */
	for (size_t i = 0; i < FG_ARRAY_LEN(r->socks); i++)
		fg_io_stop(r->loop, &r->socks[i].io);
	fg_timer_stop(r->loop, &r->timer);
	fg_free(r);
}

/* ---- name slots -------------------------------------------------------- */

static void lookup_done(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
	FG_UNUSED(timeouts);
	struct fg_name *n = arg;
	n->resolving = false;
	if (n->dead || status == ARES_EDESTRUCTION || !n->r) {
		if (res)
			ares_freeaddrinfo(res);
		if (n->dead)
			fg_free(n);
		return;
	}
	struct sockaddr_storage a[FG_NAME_MAX_ADDRS];
	size_t na = 0;
	int64_t ttl = 0;
	if (status == ARES_SUCCESS && res)
		na = fg_name_collect(res->nodes, a, FG_NAME_MAX_ADDRS, &ttl);
	if (res)
		ares_freeaddrinfo(res);
	const char *err = NULL;
	bool changed = false;
	int64_t next = FG_NAME_RETRY_NS;
	if (na) {
		changed = n->naddrs == 0 || !fg_name_same_set(a, na, n->addrs, n->naddrs);
		memcpy(n->addrs, a, na * sizeof(a[0]));
		n->naddrs = na;
		next = fg_name_refresh_ns(ttl);
	} else {
		/* an answer without any address is a failure too; the last
		 * good addresses stay */
		err = status == ARES_SUCCESS ? "no address in the answer" : ares_strerror(status);
	}
	n->in_cb = true;
	n->cb(n, err, changed, next, n->arg);
	n->in_cb = false;
	if (n->dead) { /* the owner freed it from its callback */
		fg_free(n);
		return;
	}
	if (n->r)
		fg_timer_start(n->r->loop, &n->timer, next);
}

static void name_timer_cb(struct fg_loop *loop, struct fg_timer *tm)
{
	FG_UNUSED(loop);
	struct fg_name *n = tm->data;
	struct fg_resolver *r = n->r;
	if (!r || n->resolving)
		return;
	struct ares_addrinfo_hints h = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	n->resolving = true;
	/* c-ares may answer (hosts file, immediate failure) from inside this
	 * call; n may be gone when it returns */
	ares_getaddrinfo(r->ch, n->host, NULL, &h, lookup_done, n);
	resolver_process(r);
}

struct fg_name *fg_name_new(struct fg_resolver *r, const char *host, fg_name_cb cb, void *arg)
{
	struct fg_name *n = fg_calloc(1, sizeof(*n));
	if (!n)
		return NULL;
	n->r = r;
	n->cb = cb;
	n->arg = arg;
	snprintf(n->host, sizeof(n->host), "%s", host);
	fg_timer_init(&n->timer, name_timer_cb, n);
	n->next_n = r->names;
	if (r->names)
		r->names->prev_n = n;
	r->names = n;
	return n;
}

void fg_name_start(struct fg_name *n)
{
	if (n->r && !n->resolving)
		fg_timer_start(n->r->loop, &n->timer, 0);
}

void fg_name_free(struct fg_name *n)
{
	if (!n || n->dead)
		return;
	if (n->r) {
		fg_timer_stop(n->r->loop, &n->timer);
		name_unlink(n);
	}
	n->dead = true;
	if (n->resolving || n->in_cb)
		return; /* lookup_done frees it */
	fg_free(n);
}

size_t fg_name_addrs(const struct fg_name *n, struct sockaddr_storage *out, size_t max)
{
	if (out)
		memcpy(out, n->addrs, FG_MIN(max, n->naddrs) * sizeof(out[0]));
	return n->naddrs;
}

const char *fg_name_host(const struct fg_name *n)
{
	return n->host;
}
