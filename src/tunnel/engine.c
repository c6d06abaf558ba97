/* The tunnel engine: tunnels by name, apply by diff, sockets, counters. */
#include "tunnel/engine.h"

#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/util.h"
#include "net/addr.h"
#include "tunnel/internal.h"

#define REPLAY_CAPACITY 131072

uint64_t eng_rand(struct tshard *e)
{
	/* xorshift64*: jitter and ws masks need spread, not secrecy (the
	 * handshake nonces come from RAND_bytes) */
	uint64_t x = e->rng;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	e->rng = x;
	return x * 0x2545F4914F6CDD1DULL;
}

void set_link_sockopts(int fd, int64_t keepalive_ns)
{
	int one = 1;
	int ka = (int)FG_MAX(keepalive_ns / FG_NS_PER_SEC, 1);
	int cnt = 3;
	unsigned uto = (unsigned)(3 * keepalive_ns / FG_NS_PER_MS);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &ka, sizeof(ka));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &ka, sizeof(ka));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
	/* unacknowledged data for this long ends the connection: a dead peer
	 * is noticed even while we are sending */
	setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &uto, sizeof(uto));
}

/* ---- stats -------------------------------------------------------------- */

static struct tstats *stats_get(struct tshard *e, const char *name)
{
	for (struct tstats *s = e->stats; s; s = s->next)
		if (strcmp(s->name, name) == 0) {
			s->refs++;
			return s;
		}
	struct tstats *s = fg_calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	snprintf(s->name, sizeof(s->name), "%s", name);
	s->refs = 1;
	s->next = e->stats;
	e->stats = s;
	return s;
}

static void stats_unref(struct tshard *e, struct tstats *s)
{
	if (!s || --s->refs > 0)
		return;
	for (struct tstats **pp = &e->stats; *pp; pp = &(*pp)->next)
		if (*pp == s) {
			*pp = s->next;
			break;
		}
	fg_free(s);
}

/* ---- deferred frees ---------------------------------------------------- */

static void tun_free_mem(struct tun *t);

static void reap(struct tshard *e)
{
	e->reap_scheduled = false;
	eng_run_pumps(e);
	while (e->check_list) {
		struct tstream *ts = e->check_list;
		e->check_list = ts->check_next;
		ts->check_pending = false;
		ts_check_done(ts);
	}
	while (e->dead_streams) {
		struct tstream *ts = e->dead_streams;
		e->dead_streams = ts->dead_next;
		ts_free(ts);
	}
	while (e->dead_links) {
		struct link *l = e->dead_links;
		e->dead_links = l->dead_next;
		link_free_deferred(l);
	}
	while (e->dead_tuns) {
		struct tun *t = e->dead_tuns;
		e->dead_tuns = t->dead_next;
		tun_free_mem(t);
	}
}

static void reap_cb(struct fg_loop *loop, struct fg_timer *tm)
{
	FG_UNUSED(loop);
	reap(tm->data);
}

/* Frees closed objects from a zero-delay timer rather than fg_loop_defer:
 * it runs after the events already fetched for them, and unlike a
 * deferred call it can be cancelled when the engine is freed (the agent's
 * loop may run on). */
void eng_schedule_reap(struct tshard *e)
{
	if (e->reap_scheduled)
		return;
	e->reap_scheduled = true;
	fg_timer_start(e->loop, &e->reap_timer, 0);
}

/* ---- tunnels ------------------------------------------------------------ */

static int bind_listen(const struct sockaddr_storage *base, uint16_t port, int *out)
{
	struct sockaddr_storage sa = *base;
	fg_addr_set_port((struct sockaddr *)&sa, port);
	int fd = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1, zero = 0;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	/* a changed tunnel binds its new sockets before the old ones close */
	setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	if (sa.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sa, fg_addr_len((struct sockaddr *)&sa)) < 0 ||
	    listen(fd, 1024) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	*out = fd;
	return 0;
}

/* ---- host names ---------------------------------------------------------- *
 * Peers' addresses and exits' targets given as names are resolved on the
 * loop by the shared resolver (net/resolver.h): apply never waits for DNS
 * and never fails because a name does not resolve yet. A name slot
 * refreshes by TTL; a new address is used by new links and streams only. */

static struct fg_resolver *eng_resolver(struct tshard *e)
{
	if (!e->resolver) {
		e->resolver = fg_resolver_new(e->loop);
		e->own_resolver = e->resolver != NULL;
	}
	return e->resolver;
}

static void peer_name_cb(struct fg_name *n, const char *err, bool changed, int64_t next_ns,
			 void *arg)
{
	FG_UNUSED(next_ns);
	struct peer_slot *p = arg;
	struct lside *ls = p->ls;
	struct tun *t = ls->tun;
	const char *lname = ls->which ? "next" : "prev";
	if (err) {
		if (!p->name_failing)
			fg_warn("tunnel %s: %s.peers[%zu] \"%s\": cannot resolve: %s (%s)",
				t->cfg.name, lname, p->idx, fg_name_host(n), err,
				p->resolved ? "keeping its last address"
					    : "not dialed until it resolves");
		p->name_failing = true;
		snprintf(p->why, sizeof(p->why), "%s", err);
		return;
	}
	bool was_failing = p->name_failing;
	p->name_failing = false;
	if (!changed) {
		if (was_failing)
			fg_info("tunnel %s: %s.peers[%zu] \"%s\" resolves again", t->cfg.name,
				lname, p->idx, fg_name_host(n));
		return;
	}
	struct sockaddr_storage sa;
	fg_name_addrs(n, &sa, 1);
	fg_addr_set_port((struct sockaddr *)&sa, ls->cfg->peers[p->idx].address.port_lo);
	char a[FG_ADDRSTR_MAX];
	fg_addr_format((struct sockaddr *)&sa, a, sizeof(a));
	fg_info("tunnel %s: %s.peers[%zu] \"%s\" is %s%s", t->cfg.name, lname, p->idx,
		fg_name_host(n), a, p->resolved ? " now (new links go there)" : "");
	bool first = !p->resolved;
	p->addr = sa;
	p->resolved = true;
	if (first) {
		/* it was skipped while unresolved: dial now, not at the
		 * next backoff step */
		if (fg_timer_armed(&p->retry))
			fg_timer_stop(t->e->loop, &p->retry);
		p->backoff_ns = 0;
		lside_ensure(ls);
	}
}

static void target_name_cb(struct fg_name *n, const char *err, bool changed, int64_t next_ns,
			   void *arg)
{
	FG_UNUSED(next_ns);
	struct tname *tn = arg;
	struct tun *t = tn->tun;
	if (err) {
		if (!tn->failing)
			fg_warn("tunnel %s: targets[%zu] \"%s\": cannot resolve: %s (%s)",
				t->cfg.name, tn->idx, fg_name_host(n), err,
				tn->resolved ? "keeping its last address"
					     : "streams to it are refused until it resolves");
		tn->failing = true;
		snprintf(tn->why, sizeof(tn->why), "%s", err);
		return;
	}
	bool was_failing = tn->failing;
	tn->failing = false;
	if (!changed) {
		if (was_failing)
			fg_info("tunnel %s: targets[%zu] \"%s\" resolves again", t->cfg.name,
				tn->idx, fg_name_host(n));
		return;
	}
	struct sockaddr_storage sa;
	fg_name_addrs(n, &sa, 1);
	char a[FG_ADDRSTR_MAX];
	fg_addr_format((struct sockaddr *)&sa, a, sizeof(a));
	/* the port is set per stream (exit_connect): show the address only */
	char *colon = strrchr(a, ':');
	if (colon)
		*colon = '\0';
	fg_info("tunnel %s: targets[%zu] \"%s\" is %s%s", t->cfg.name, tn->idx, fg_name_host(n), a,
		tn->resolved ? " now (new streams go there)" : "");
	t->taddr[tn->idx] = sa;
	tn->resolved = true;
}

/* The address of an IP-literal endpoint, or a (not yet started) name slot
 * for a host name. Returns 0 or -ENOMEM. */
static int endpoint_addr(struct tshard *e, const struct fg_endpoint *ep,
			 struct sockaddr_storage *out, struct fg_name **name, fg_name_cb cb,
			 void *arg)
{
	if (ep->is_ip) {
		*out = ep->ip;
		fg_addr_set_port((struct sockaddr *)out, ep->port_lo);
		return 0;
	}
	struct fg_resolver *r = eng_resolver(e);
	if (!r || !(*name = fg_name_new(r, ep->host, cb, arg)))
		return -ENOMEM;
	return 0;
}

/* Name slots: started with the tunnel, freed when it stops (no callback
 * after that) or when a tunnel that never ran is dropped. */
static void tun_names(struct tun *t, bool start)
{
	struct lside *sides[2] = {&t->prev, &t->next};
	for (int k = 0; k < 2; k++)
		for (size_t i = 0; sides[k]->peers && i < sides[k]->npeers; i++) {
			struct peer_slot *p = &sides[k]->peers[i];
			if (!p->name)
				continue;
			if (start) {
				fg_name_start(p->name);
			} else {
				fg_name_free(p->name);
				p->name = NULL;
			}
		}
	for (size_t i = 0; t->tnames && i < t->cfg.ntargets; i++) {
		if (!t->tnames[i].name)
			continue;
		if (start) {
			fg_name_start(t->tnames[i].name);
		} else {
			fg_name_free(t->tnames[i].name);
			t->tnames[i].name = NULL;
		}
	}
}

/* A changed tunnel restarts with new name slots: until their first answer
 * it dials what the running one resolved for the same host, so a restart
 * refuses no stream for want of an address. */
static void tun_seed_names(struct tun *t, const struct tun *old)
{
	for (size_t i = 0; t->tnames && old->tnames && i < t->cfg.ntargets; i++) {
		if (!t->tnames[i].name)
			continue;
		for (size_t j = 0; j < old->cfg.ntargets; j++)
			if (old->tnames[j].resolved &&
			    strcmp(old->cfg.targets[j].host, t->cfg.targets[i].host) == 0) {
				t->taddr[i] = old->taddr[j];
				t->tnames[i].resolved = true;
				break;
			}
	}
	const struct lside *os[2] = {&old->prev, &old->next};
	struct lside *ns[2] = {&t->prev, &t->next};
	for (int k = 0; k < 2; k++)
		for (size_t i = 0; ns[k]->peers && os[k]->peers && i < ns[k]->npeers; i++) {
			struct peer_slot *p = &ns[k]->peers[i];
			const struct fg_endpoint *a = &ns[k]->cfg->peers[i].address;
			for (size_t j = 0; p->name && j < os[k]->npeers; j++) {
				const struct peer_slot *q = &os[k]->peers[j];
				if (q->resolved && q->name &&
				    strcmp(os[k]->cfg->peers[j].address.host, a->host) == 0) {
					p->addr = q->addr;
					fg_addr_set_port((struct sockaddr *)&p->addr, a->port_lo);
					p->resolved = true;
					break;
				}
			}
		}
}

/* ---- what the shards of a tunnel share ---------------------------------- */

/* Owner thread (apply), before any shard uses it. NULL on ENOMEM. */
static struct tshared *tshared_new(const struct fg_tunnel_cfg *cfg, int64_t now)
{
	struct tshared *sh = fg_calloc(1, sizeof(*sh));
	if (!sh)
		return NULL;
	sh->refs = 1;
	pthread_mutex_init(&sh->ipmu, NULL);
	fg_bucket_init(&sh->agg_up, cfg->rate_up,
		       cfg->burst ? cfg->burst : fg_bucket_default_burst(cfg->rate_up), now);
	fg_bucket_init(&sh->agg_down, cfg->rate_down,
		       cfg->burst ? cfg->burst : fg_bucket_default_burst(cfg->rate_down), now);
	if (cfg->role == FG_TUNNEL_ENTRY && cfg->max_conns_per_ip &&
	    !(sh->iptab = fg_calloc(IPTAB_SIZE, sizeof(*sh->iptab)))) {
		pthread_mutex_destroy(&sh->ipmu);
		fg_free(sh);
		return NULL;
	}
	return sh;
}

static struct tshared *tshared_ref(struct tshared *sh)
{
	__atomic_fetch_add(&sh->refs, 1, __ATOMIC_RELAXED);
	return sh;
}

/* Any thread: the last reference frees (the shards free their tunnels on
 * their own threads). NULL is fine. */
static void tshared_unref(struct tshared *sh)
{
	if (!sh || __atomic_sub_fetch(&sh->refs, 1, __ATOMIC_ACQ_REL) > 0)
		return;
	for (size_t i = 0; sh->iptab && i < IPTAB_SIZE; i++)
		while (sh->iptab[i]) {
			struct iprec *r = sh->iptab[i];
			sh->iptab[i] = r->next;
			fg_free(r);
		}
	fg_free(sh->iptab);
	pthread_mutex_destroy(&sh->ipmu);
	fg_free(sh);
}

static void tun_free_mem(struct tun *t)
{
	tun_names(t, false);
	for (size_t i = 0; i < t->ncfds; i++)
		if (t->cfds[i] >= 0)
			close(t->cfds[i]);
	if (t->prev.lfd >= 0)
		close(t->prev.lfd);
	if (t->next.lfd >= 0)
		close(t->next.lfd);
	fg_free(t->cfds);
	fg_free(t->cio);
	fg_free(t->prev.peers);
	fg_free(t->next.peers);
	fg_free(t->taddr);
	fg_free(t->tnames);
	tshared_unref(t->sh);
	t->sh = NULL;
	stats_unref(t->e, t->stats);
	fg_tunnel_cfg_deinit(&t->cfg);
	fg_free(t);
}

static int lside_init(struct tun *t, struct lside *ls, int which, char *err, size_t errlen)
{
	const struct fg_tunnel_link_cfg *cfg = which ? &t->cfg.next : &t->cfg.prev;
	ls->tun = t;
	ls->which = which;
	ls->lfd = -1;
	fg_io_init(&ls->lio);
	if (!cfg->present)
		return 0;
	ls->cfg = cfg;
	ls->hcfg.lookup_cb = key_lookup_cb;
	ls->hcfg.lookup_arg = ls;
	ls->hcfg.replay = t->e->replay;
	const char *lname = which ? "next" : "prev";
	if (cfg->is_listen) {
		int rc = bind_listen(&cfg->listen.ip, cfg->listen.port_lo, &ls->lfd);
		if (rc < 0) {
			snprintf(err, errlen, "tunnel \"%s\": %s.listen %s:%u: %s", t->cfg.name,
				 lname, cfg->listen.host, cfg->listen.port_lo, strerror(-rc));
			return rc;
		}
		return 0;
	}
	ls->npeers = cfg->npeers;
	ls->peers = fg_calloc(cfg->npeers, sizeof(*ls->peers));
	if (!ls->peers) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	for (size_t i = 0; i < cfg->npeers; i++) {
		struct peer_slot *p = &ls->peers[i];
		p->ls = ls;
		p->idx = i;
		const struct fg_endpoint *a = &cfg->peers[i].address;
		int rc = endpoint_addr(t->e, a, &p->addr, &p->name, peer_name_cb, p);
		if (rc < 0) {
			snprintf(err, errlen, "tunnel \"%s\": %s.peers[%zu] \"%s\": out of memory",
				 t->cfg.name, lname, i, a->host);
			return rc;
		}
		p->resolved = !p->name;
	}
	return 0;
}

/* Builds a tunnel and binds all its sockets; nothing runs yet. */
static struct tun *tun_new(struct tshard *e, const struct fg_tunnel_cfg *cfg, struct tshared *sh,
			   char *err, size_t errlen)
{
	struct tun *t = fg_calloc(1, sizeof(*t));
	if (!t || fg_tunnel_cfg_copy(&t->cfg, cfg)) {
		fg_free(t);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	t->e = e;
	t->sh = tshared_ref(sh);
	t->prev.lfd = t->next.lfd = -1;
	t->stats = stats_get(e, cfg->name);
	if (!t->stats)
		goto oom;
	if (cfg->role == FG_TUNNEL_ENTRY) {
		t->ncfds = (size_t)cfg->listen.port_hi - cfg->listen.port_lo + 1;
		t->cfds = fg_malloc(t->ncfds * sizeof(int));
		t->cio = fg_calloc(t->ncfds, sizeof(*t->cio));
		if (!t->cfds || !t->cio)
			goto oom;
		for (size_t i = 0; i < t->ncfds; i++)
			t->cfds[i] = -1;
		for (size_t i = 0; i < t->ncfds; i++) {
			fg_io_init(&t->cio[i]);
			uint16_t port = (uint16_t)(cfg->listen.port_lo + i);
			int rc = bind_listen(&cfg->listen.ip, port, &t->cfds[i]);
			if (rc < 0) {
				snprintf(err, errlen, "tunnel \"%s\": listen %s:%u: %s", cfg->name,
					 cfg->listen.host, port, strerror(-rc));
				goto fail;
			}
		}
	}
	if (lside_init(t, &t->prev, 0, err, errlen) || lside_init(t, &t->next, 1, err, errlen))
		goto fail;
	if (cfg->role == FG_TUNNEL_EXIT) {
		t->taddr = fg_calloc(cfg->ntargets, sizeof(*t->taddr));
		t->tnames = fg_calloc(cfg->ntargets, sizeof(*t->tnames));
		if (!t->taddr || !t->tnames)
			goto oom;
		for (size_t i = 0; i < cfg->ntargets; i++) {
			struct tname *tn = &t->tnames[i];
			tn->tun = t;
			tn->idx = i;
			if (endpoint_addr(e, &cfg->targets[i], &t->taddr[i], &tn->name,
					  target_name_cb, tn) < 0)
				goto oom;
			tn->resolved = !tn->name;
		}
	}
	return t;
oom:
	snprintf(err, errlen, "out of memory");
fail:
	tun_free_mem(t);
	return NULL;
}

static int tun_start(struct tun *t)
{
	struct fg_loop *loop = t->e->loop;
	for (size_t i = 0; i < t->ncfds; i++)
		if (fg_io_start(loop, &t->cio[i], t->cfds[i], FG_IO_READ, entry_accept_cb, t) < 0)
			return -errno;
	struct lside *sides[2] = {&t->prev, &t->next};
	for (int i = 0; i < 2; i++)
		if (sides[i]->lfd >= 0 && fg_io_start(loop, &sides[i]->lio, sides[i]->lfd,
						      FG_IO_READ, link_accept_cb, sides[i]) < 0)
			return -errno;
	tun_names(t, true); /* lookups answer from the loop, never from here */
	lside_ensure(&t->prev);
	lside_ensure(&t->next);
	return 0;
}

/* Stops a tunnel: listeners, links and streams close now, memory later. */
static void tun_stop(struct tun *t)
{
	struct tshard *e = t->e;
	t->dying = true;
	for (size_t i = 0; i < t->ncfds; i++) {
		if (fg_io_active(&t->cio[i]))
			fg_io_stop(e->loop, &t->cio[i]);
		if (t->cfds[i] >= 0)
			close(t->cfds[i]);
		t->cfds[i] = -1;
	}
	tun_names(t, false);
	while (t->streams)
		ts_close(t->streams, true);
	lside_stop(&t->prev);
	lside_stop(&t->next);
	t->dead_next = e->dead_tuns;
	e->dead_tuns = t;
	eng_schedule_reap(e);
}

/* ---- shards ------------------------------------------------------------- */

static struct tshard *shard_new(struct fg_loop *loop, struct fg_resolver *resolver,
				struct fg_hs_replay_cache *replay, unsigned idx)
{
	struct tshard *e = fg_calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	e->loop = loop;
	e->resolver = resolver;
	e->replay = replay;
	e->idx = idx;
	fg_timer_init(&e->reap_timer, reap_cb, e);
	if (RAND_bytes((uint8_t *)&e->rng, sizeof(e->rng)) != 1 || !e->rng)
		e->rng = (uint64_t)fg_now_ns() | 1;
	if (fg_buf_pool_init(&e->chunks, sizeof(struct tq_chunk), 256) ||
	    fg_buf_pool_init(&e->wpool[0], LINK_WBUF(TQ_CHUNK), 64) ||
	    fg_buf_pool_init(&e->wpool[1], LINK_WBUF(LINK_PLAIN), 16) ||
	    fg_buf_pool_init(&e->spool, LINK_PLAIN, 8) || !(e->rbuf = fg_malloc(LINK_RBUF))) {
		fg_buf_pool_deinit(&e->chunks);
		fg_buf_pool_deinit(&e->wpool[0]);
		fg_buf_pool_deinit(&e->wpool[1]);
		fg_buf_pool_deinit(&e->spool);
		fg_free(e);
		errno = ENOMEM;
		return NULL;
	}
	fg_slab_init(&e->streams, sizeof(struct tstream));
	return e;
}

/* On the shard's thread, or with its loop stopped. The TLS contexts and
 * the replay cache are the engine's (not freed here). */
static void shard_free(struct tshard *e)
{
	if (!e)
		return;
	while (e->tuns) {
		struct tun *t = e->tuns;
		e->tuns = t->next_t;
		tun_stop(t);
	}
	if (fg_timer_armed(&e->reap_timer))
		fg_timer_stop(e->loop, &e->reap_timer);
	reap(e);
	if (e->own_resolver)
		fg_resolver_free(e->resolver);
	fg_buf_pool_deinit(&e->chunks);
	fg_buf_pool_deinit(&e->wpool[0]);
	fg_buf_pool_deinit(&e->wpool[1]);
	fg_buf_pool_deinit(&e->spool);
	fg_free(e->rbuf);
	fg_slab_deinit(&e->streams);
	while (e->stats) {
		struct tstats *s = e->stats;
		e->stats = s->next;
		fg_free(s);
	}
	fg_free(e);
}

/* One shard's thread: shard k > 0 runs its own loop (shard 0 is the
 * caller's). The owner thread stops it with fg_loop_stop and joins. */
struct shard_thr {
	struct fg_tunnel_engine *eng;
	struct fg_loop *loop; /* owned */
	struct fg_async park; /* the owner asks the shard to park */
	pthread_t thread;
	bool started;
};

/* The engine: the shards, and what they share (the replay cache, the TLS
 * contexts). Everything here but `replay` and the park fields is the owner
 * thread's (the caller's loop). */
struct fg_tunnel_engine {
	unsigned n;		/* shards, >= 1 */
	struct tshard **shards; /* [0] on the caller's loop */
	struct shard_thr *thr;	/* [n]; [0] unused */
	struct fg_hs_replay_cache replay;
	char cert[FG_TUNNEL_PATH_MAX], key[FG_TUNNEL_PATH_MAX]; /* from opts */
	int make_cert;
	char srv_cert[FG_TUNNEL_PATH_MAX], srv_key[FG_TUNNEL_PATH_MAX]; /* loaded */
	struct fg_tls_server *tls_srv;					/* owned, shared */
	struct fg_tls_client *tls_cli;					/* owned, shared */
	/* parking: the owner thread sets park_req and waits until every
	 * other shard sits in park_cb (parked == n - 1); then it may touch
	 * any shard's state as if it were that shard's thread */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool park_req;
	unsigned parked;
};

static void park_cb(struct fg_loop *loop, struct fg_async *a)
{
	FG_UNUSED(loop);
	struct shard_thr *th = a->data;
	struct fg_tunnel_engine *E = th->eng;
	pthread_mutex_lock(&E->mu);
	if (E->park_req) {
		E->parked++;
		pthread_cond_broadcast(&E->cv);
		while (E->park_req)
			pthread_cond_wait(&E->cv, &E->mu);
		E->parked--;
	}
	pthread_mutex_unlock(&E->mu);
}

/* Owner thread: stops every other shard's thread at a known point (in
 * park_cb, between events) until unpark. Cheap: a wake-up per shard. */
static void eng_park(struct fg_tunnel_engine *E)
{
	if (E->n < 2)
		return;
	pthread_mutex_lock(&E->mu);
	E->park_req = true;
	pthread_mutex_unlock(&E->mu);
	for (unsigned k = 1; k < E->n; k++)
		fg_async_send(&E->thr[k].park);
	pthread_mutex_lock(&E->mu);
	while (E->parked < E->n - 1)
		pthread_cond_wait(&E->cv, &E->mu);
	pthread_mutex_unlock(&E->mu);
}

static void eng_unpark(struct fg_tunnel_engine *E)
{
	if (E->n < 2)
		return;
	pthread_mutex_lock(&E->mu);
	E->park_req = false;
	pthread_cond_broadcast(&E->cv);
	pthread_mutex_unlock(&E->mu);
}

static void *shard_main(void *arg)
{
	struct shard_thr *th = arg;
	int rc = fg_loop_run(th->loop);
	if (rc < 0)
		fg_err("tunnel shard: event loop failed: %s", strerror(-rc));
	return NULL;
}

struct fg_tunnel_engine *fg_tunnel_engine_new(const struct fg_tunnel_engine_opts *opts)
{
	struct fg_tunnel_engine *E = fg_calloc(1, sizeof(*E));
	if (!E)
		return NULL;
	pthread_mutex_init(&E->mu, NULL);
	pthread_cond_init(&E->cv, NULL);
	E->n = opts->workers ? opts->workers : 1;
	if (E->n > FG_TUNNEL_MAX_WORKERS)
		E->n = FG_TUNNEL_MAX_WORKERS;
	if (opts->tls_cert)
		snprintf(E->cert, sizeof(E->cert), "%s", opts->tls_cert);
	if (opts->tls_key)
		snprintf(E->key, sizeof(E->key), "%s", opts->tls_key);
	E->make_cert = opts->make_cert;
	uint64_t seed = 0;
	if (RAND_bytes((uint8_t *)&seed, sizeof(seed)) != 1)
		seed = (uint64_t)fg_now_ns();
	unsigned cap = opts->replay_capacity ? opts->replay_capacity : REPLAY_CAPACITY;
	E->shards = fg_calloc(E->n, sizeof(*E->shards));
	E->thr = fg_calloc(E->n, sizeof(*E->thr));
	if (!E->shards || !E->thr ||
	    fg_hs_replay_init(&E->replay, cap, FG_HS_DEFAULT_CLOCK_WINDOW, seed))
		goto err;
	if (!(E->shards[0] = shard_new(opts->loop, opts->resolver, &E->replay, 0)))
		goto err;
	for (unsigned k = 1; k < E->n; k++) {
		struct shard_thr *th = &E->thr[k];
		th->eng = E;
		if (!(th->loop = fg_loop_new()))
			goto err;
		if (fg_async_init(th->loop, &th->park, park_cb, th) < 0) {
			fg_loop_free(th->loop);
			th->loop = NULL;
			goto err;
		}
		/* its own resolver (one c-ares channel per loop), made when a
		 * tunnel first names a host */
		if (!(E->shards[k] = shard_new(th->loop, NULL, &E->replay, k)))
			goto err;
		if (pthread_create(&th->thread, NULL, shard_main, th) != 0)
			goto err;
		th->started = true;
		char tname[16];
		snprintf(tname, sizeof(tname), "fg-tunnel-%u", k % 100);
		pthread_setname_np(th->thread, tname);
	}
	return E;
err:
	fg_tunnel_engine_free(E);
	errno = ENOMEM;
	return NULL;
}

void fg_tunnel_engine_free(struct fg_tunnel_engine *E)
{
	if (!E)
		return;
	/* the other shards first, each stopped and then freed with its loop
	 * idle: nothing of theirs runs while shard 0 and the shared parts go */
	for (unsigned k = 1; E->thr && k < E->n; k++) {
		struct shard_thr *th = &E->thr[k];
		if (th->started) {
			fg_loop_stop(th->loop);
			pthread_join(th->thread, NULL);
		}
		shard_free(E->shards[k]);
		if (th->loop) {
			fg_async_deinit(th->loop, &th->park);
			fg_loop_free(th->loop);
		}
	}
	if (E->shards)
		shard_free(E->shards[0]);
	fg_tls_server_free(E->tls_srv);
	fg_tls_client_free(E->tls_cli);
	fg_hs_replay_deinit(&E->replay);
	fg_free(E->shards);
	fg_free(E->thr);
	pthread_cond_destroy(&E->cv);
	pthread_mutex_destroy(&E->mu);
	fg_free(E);
}

unsigned fg_tunnel_engine_workers(const struct fg_tunnel_engine *E)
{
	return E->n;
}

static bool file_exists(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0;
}

/* Loads (or, for forward -c, first creates) the node certificate when a
 * tls/wss link listens here. */
static int load_cert(struct fg_tunnel_engine *e, const struct fg_tunnel_set *set,
		     struct fg_tls_server **out, char *err, size_t errlen)

{
	bool need = false;
	*out = NULL;
	for (size_t i = 0; i < set->n; i++)
		if (set->v[i].enabled && (fg_tunnel_link_needs_cert(&set->v[i].prev) ||
					  fg_tunnel_link_needs_cert(&set->v[i].next)))
			need = true;
	if (!need)
		return 0;
	const char *cert = set->tls_cert[0] ? set->tls_cert : e->cert;
	const char *key = set->tls_key[0] ? set->tls_key : e->key;
	if (!cert[0] || !key[0]) {
		snprintf(err, errlen,
			 "a tls/wss link listens here but the node has no certificate "
			 "(\"tls\": {\"cert\", \"key\"})");
		return -EINVAL;
	}
	if (e->tls_srv && strcmp(cert, e->srv_cert) == 0 && strcmp(key, e->srv_key) == 0)
		return 0; /* the loaded one */
	if (e->make_cert && !file_exists(cert) && !file_exists(key)) {
		char fp[FG_TLS_FP_STRLEN];
		if (fg_tls_make_self_signed(cert, key, "flowgate-node", NULL, 0, err, errlen) < 0)
			return -EINVAL;
		if (fg_tls_cert_fingerprint(cert, fp, NULL, 0) == 0)
			fg_info("wrote a self-signed node certificate %s (fingerprint %s)", cert,
				fp);
	}
	char terr[FG_TLS_ERR_LEN];
	*out = fg_tls_server_new(cert, key, terr, sizeof(terr));
	if (!*out) {
		snprintf(err, errlen, "tls: %s", terr);
		return -EINVAL;
	}
	snprintf(e->srv_cert, sizeof(e->srv_cert), "%s", cert);
	snprintf(e->srv_key, sizeof(e->srv_key), "%s", key);
	return 0;
}

/* Takes c's link keys into the running t (the lsides read t->cfg, so the
 * next handshake uses them). */
static void tun_set_keys(struct tun *t, const struct fg_tunnel_cfg *c)
{
	struct fg_tunnel_link_cfg *lk[2] = {&t->cfg.prev, &t->cfg.next};
	const struct fg_tunnel_link_cfg *nk[2] = {&c->prev, &c->next};
	for (int k = 0; k < 2; k++) {
		if (!lk[k]->present)
			continue;
		lk[k]->psk_id = nk[k]->psk_id;
		memcpy(lk[k]->psk, nk[k]->psk, sizeof(lk[k]->psk));
		lk[k]->psk_len = nk[k]->psk_len;
		memcpy(lk[k]->keys, nk[k]->keys, sizeof(lk[k]->keys));
		lk[k]->nkeys = nk[k]->nkeys;
		struct lside *ls = k ? &t->next : &t->prev;
		for (size_t i = 0; i < ls->npeers; i++)
			ls->peers[i].key_alt = 0; /* the new dial key first */
		if (!t->e->idx)
			fg_info(
			    "tunnel %s: %s link keys changed: dials with key id %u, accepts %zu "
			    "key(s)",
			    t->cfg.name, k ? "next" : "prev", lk[k]->psk_id, lk[k]->nkeys);
	}
}

static struct tun *find_running(struct tshard *e, const char *name)
{
	for (struct tun *t = e->tuns; t; t = t->next_t)
		if (strcmp(t->cfg.name, name) == 0)
			return t;
	return NULL;
}

/* A tunnel with a reverse hop on this node runs on shard 0 alone: its
 * links are registered by the far side (a listening `next`) or dialed
 * back as a fixed set (a dialing `prev`), and a stream can only use a link
 * of its own shard, so spreading them would leave shards without one. */
static bool tun_one_shard(const struct fg_tunnel_cfg *c)
{
	return (c->prev.present && !c->prev.is_listen) || (c->next.present && c->next.is_listen);
}

/* What one shard's apply will do, built (and every socket bound) before
 * anything changes on any shard. */
struct plan {
	struct tun **fresh;
	bool *keep, *rekey;
};

static void plan_free(struct plan *p, size_t n)
{
	for (size_t i = 0; p->fresh && i < n; i++)
		if (p->fresh[i])
			tun_free_mem(p->fresh[i]);
	fg_free(p->fresh);
	fg_free(p->keep);
	fg_free(p->rekey);
	memset(p, 0, sizeof(*p));
}

static bool shard_runs(const struct tshard *e, const struct fg_tunnel_cfg *c)
{
	return c->enabled && (e->idx == 0 || !tun_one_shard(c));
}

/* On the shard's thread or with it parked. shv[i] is the shared state of
 * set->v[i] when it (re)starts, made by the first shard that needs it. */
static int shard_prepare(struct tshard *e, const struct fg_tunnel_set *set, struct tshared **shv,
			 struct plan *p, char *err, size_t errlen)
{
	p->fresh = fg_calloc(set->n + 1, sizeof(*p->fresh));
	p->keep = fg_calloc(set->n + 1, sizeof(*p->keep));
	p->rekey = fg_calloc(set->n + 1, sizeof(*p->rekey));
	if (!p->fresh || !p->keep || !p->rekey) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	for (size_t i = 0; i < set->n; i++) {
		const struct fg_tunnel_cfg *c = &set->v[i];
		if (!shard_runs(e, c))
			continue;
		struct tun *old = find_running(e, c->name);
		if (old && fg_tunnel_cfg_equal(&old->cfg, c)) {
			p->keep[i] = true;
			continue;
		}
		if (old && fg_tunnel_cfg_equal_but_keys(&old->cfg, c)) {
			/* a key rotation: the links up were authenticated at their
			 * handshake and stay; the keys change below, in place */
			p->keep[i] = p->rekey[i] = true;
			continue;
		}
		if (!shv[i] && !(shv[i] = tshared_new(c, fg_loop_now(e->loop)))) {
			snprintf(err, errlen, "out of memory");
			return -ENOMEM;
		}
		p->fresh[i] = tun_new(e, c, shv[i], err, errlen);
		if (!p->fresh[i])
			return -EINVAL;
		if (old)
			tun_seed_names(p->fresh[i], old);
	}
	return 0;
}

/* Switches one shard to its plan; cannot fail. Same thread rules. */
static void shard_commit(struct tshard *e, const struct fg_tunnel_set *set, struct plan *p)
{
	for (size_t i = 0; i < set->n; i++) {
		struct tun *t = p->rekey[i] ? find_running(e, set->v[i].name) : NULL;
		if (t)
			tun_set_keys(t, &set->v[i]);
	}
	struct tun *keepers = NULL, **tail = &keepers;
	for (struct tun *t = e->tuns, *nx; t; t = nx) {
		nx = t->next_t;
		bool kept = false;
		for (size_t i = 0; i < set->n; i++)
			if (p->keep[i] && strcmp(set->v[i].name, t->cfg.name) == 0)
				kept = true;
		if (kept) {
			t->next_t = NULL;
			*tail = t;
			tail = &t->next_t;
		} else {
			if (!e->idx)
				fg_info("tunnel %s: stopped", t->cfg.name);
			tun_stop(t);
		}
	}
	e->tuns = keepers;
	for (size_t i = 0; i < set->n; i++) {
		if (!p->fresh[i])
			continue;
		struct tun *t = p->fresh[i];
		p->fresh[i] = NULL;
		t->next_t = e->tuns;
		e->tuns = t;
		if (tun_start(t) < 0)
			fg_err("tunnel %s: cannot watch its sockets: %s", t->cfg.name,
			       strerror(errno));
		else if (!e->idx)
			fg_info("tunnel %s: %s running", t->cfg.name,
				fg_tunnel_role_name(t->cfg.role));
	}
}

/* Every shard runs the whole set (but reverse hops: tun_one_shard), with
 * its own sockets (SO_REUSEPORT: the kernel spreads client and link
 * connections over the shards). The other shards are parked meanwhile, so
 * either every shard switches or, on an error, none changed. */
int fg_tunnel_engine_apply(struct fg_tunnel_engine *E, const struct fg_tunnel_set *set, char *err,
			   size_t errlen)
{
	struct fg_tls_server *srv = NULL;
	struct plan *plans = fg_calloc(E->n, sizeof(*plans));
	struct tshared **shv = fg_calloc(set->n + 1, sizeof(*shv));
	int rc = 0;
	if (!plans || !shv) {
		fg_free(plans);
		fg_free(shv);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	eng_park(E);
	if ((rc = load_cert(E, set, &srv, err, errlen)) < 0)
		goto out;
	/* the client context (it reads the system CA store) only once a
	 * tls/wss link dials; one for every shard, so a TLS session a link
	 * got on one shard resumes on any */
	for (size_t i = 0; i < set->n && !E->tls_cli; i++) {
		const struct fg_tunnel_cfg *c = &set->v[i];
		const struct fg_tunnel_link_cfg *lk[2] = {&c->prev, &c->next};
		for (int k = 0; k < 2 && !E->tls_cli; k++) {
			if (!c->enabled || !lk[k]->present || lk[k]->is_listen ||
			    (lk[k]->transport != FG_TT_TLS && lk[k]->transport != FG_TT_WSS))
				continue;
			/* resume: a link without mux is one TLS handshake per
			 * client connection; tickets from the peers we pin
			 * save their certificate and signatures */
			struct fg_tls_client_opts co = {.tls13_only = true, .resume = true};
			char terr[FG_TLS_ERR_LEN];
			E->tls_cli = fg_tls_client_new(&co, terr, sizeof(terr));
			if (!E->tls_cli) {
				snprintf(err, errlen, "tls client: %s", terr);
				rc = -EINVAL;
				goto out;
			}
		}
	}
	for (unsigned k = 0; k < E->n; k++)
		if ((rc = shard_prepare(E->shards[k], set, shv, &plans[k], err, errlen)) < 0)
			goto out;
	/* everything is bound on every shard: switch */
	if (srv) {
		fg_tls_server_free(E->tls_srv);
		E->tls_srv = srv;
		srv = NULL;
	}
	for (unsigned k = 0; k < E->n; k++) {
		E->shards[k]->tls_srv = E->tls_srv;
		E->shards[k]->tls_cli = E->tls_cli;
		shard_commit(E->shards[k], set, &plans[k]);
	}
out:
	for (unsigned k = 0; k < E->n; k++)
		plan_free(&plans[k], set->n);
	for (size_t i = 0; i < set->n; i++)
		tshared_unref(shv[i]); /* the tunnels hold their own references */
	eng_unpark(E);
	fg_tls_server_free(srv);
	fg_free(plans);
	fg_free(shv);
	return rc;
}

int fg_tunnel_engine_apply_json(struct fg_tunnel_engine *e, const void *tunnels_json, char *err,
				size_t errlen)

{
	struct fg_tunnel_set set;
	json_t *empty = NULL;
	if (!tunnels_json)
		tunnels_json = empty = json_array();
	int rc = fg_tunnel_parse_json(tunnels_json, &set, err, errlen);
	json_decref(empty);
	if (rc < 0)
		return rc;
	rc = fg_tunnel_engine_apply(e, &set, err, errlen);
	fg_tunnel_set_free(&set);
	return rc;
}

/* ---- counters and metrics ---------------------------------------------- */

static void metrics_locked(struct fg_tunnel_engine *E, struct tstats *stats, struct fg_strbuf *b);

/* Counters are per shard (each shard's slot, written by its thread with
 * no atomics); a reader sums them with the other shards parked. */
#define NCOUNTERS (sizeof(struct fg_tunnel_counters) / sizeof(uint64_t))

static void counters_add(struct fg_tunnel_counters *sum, const struct fg_tunnel_counters *c)
{
	uint64_t a[NCOUNTERS], b[NCOUNTERS];
	memcpy(a, sum, sizeof(a));
	memcpy(b, c, sizeof(b));
	for (size_t i = 0; i < NCOUNTERS; i++)
		a[i] += b[i];
	memcpy(sum, a, sizeof(a));
}

/* With the other shards parked. Returns 0 or -ENOENT (no shard knows it). */
static int sum_counters(struct fg_tunnel_engine *E, const char *name,
			struct fg_tunnel_counters *out)
{
	int rc = -ENOENT;
	memset(out, 0, sizeof(*out));
	for (unsigned k = 0; k < E->n; k++)
		for (struct tstats *s = E->shards[k]->stats; s; s = s->next)
			if (strcmp(s->name, name) == 0) {
				counters_add(out, &s->c);
				rc = 0;
				break;
			}
	return rc;
}

int fg_tunnel_engine_counters(struct fg_tunnel_engine *E, const char *name,
			      struct fg_tunnel_counters *out)
{
	eng_park(E);
	int rc = sum_counters(E, name, out);
	eng_unpark(E);
	return rc;
}

void fg_tunnel_engine_foreach(struct fg_tunnel_engine *E,
			      void (*cb)(const char *name, const char *id,
					 const struct fg_tunnel_counters *c, void *arg),
			      void *arg)
{
	eng_park(E);
	/* shard 0 runs every tunnel */
	for (struct tun *t = E->shards[0]->tuns; t; t = t->next_t) {
		struct fg_tunnel_counters c;
		sum_counters(E, t->cfg.name, &c);
		cb(t->cfg.name, t->cfg.id, &c, arg);
	}
	eng_unpark(E);
}

/* The kernel's smoothed round trip of a TCP socket (TCP_INFO tcpi_rtt,
 * microseconds), in ns; 0 when it has none (not TCP, no sample yet). */
static int64_t sock_rtt_ns(int fd)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);
	if (fd < 0 || getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0 ||
	    len < offsetof(struct tcp_info, tcpi_rttvar))
		return 0;
	return (int64_t)ti.tcpi_rtt * 1000;
}

/* A link's round trip: its mux PING's (smoothed; a ping is answered by
 * the peer's engine, so TLS, AEAD and anything between the two nodes
 * count) once one came back, else the kernel's estimate of its socket. */
static int64_t link_rtt_ns(const struct link *l)
{
	if (l->mux) {
		struct fg_mux_info mi;
		fg_mux_info(l->mux, &mi);
		if (mi.srtt_ns > 0)
			return mi.srtt_ns;
	}
	return sock_rtt_ns(l->io.fd);
}

void link_note_rtt(struct link *l)
{
	int64_t rtt = link_rtt_ns(l);
	if (rtt > 0)
		l->ls->last_rtt_ns = rtt;
}

static int shard_links(struct tshard *e, const char *name, struct fg_tunnel_link_stats out[2])
{
	memset(out, 0, 2 * sizeof(*out));
	out[0].rtt_us = out[1].rtt_us = -1;
	struct tun *t = e->tuns;
	while (t && (t->dying || strcmp(t->cfg.name, name) != 0))
		t = t->next_t;
	if (!t)
		return -ENOENT;
	struct lside *sides[2] = {&t->prev, &t->next};
	for (int i = 0; i < 2; i++) {
		struct lside *ls = sides[i];
		if (!ls->cfg)
			continue;
		out[i].present = 1;
		int64_t worst = 0;
		for (struct link *l = ls->links; l; l = l->next_l) {
			if (l->state != LS_UP)
				continue;
			out[i].links_up++;
			int64_t rtt = link_rtt_ns(l);
			worst = rtt > worst ? rtt : worst;
		}
		if (worst > 0)
			ls->last_rtt_ns = worst;
		if (ls->last_rtt_ns > 0)
			out[i].rtt_us = (ls->last_rtt_ns + 999) / 1000;
	}
	return 0;
}

/* Whether t dials any host name; *failing (if given) gets how many of
 * them have no address or failed their last lookup. */
static bool tun_unresolved(const struct tun *t, unsigned *failing)
{
	bool names = false;
	unsigned n = 0;
	const struct lside *sides[2] = {&t->prev, &t->next};
	for (int k = 0; k < 2; k++)
		for (size_t i = 0; sides[k]->peers && i < sides[k]->npeers; i++) {
			const struct peer_slot *p = &sides[k]->peers[i];
			if (!p->name)
				continue;
			names = true;
			n += !p->resolved || p->name_failing;
		}
	for (size_t i = 0; t->tnames && i < t->cfg.ntargets; i++) {
		if (!t->tnames[i].name)
			continue;
		names = true;
		n += !t->tnames[i].resolved || t->tnames[i].failing;
	}
	if (failing)
		*failing = n;
	return names;
}

/* A dialing side that keeps links up all the time (a mux link per peer,
 * or a reverse side's pool; what lside_ensure dials) and has had none up
 * for FG_TUNNEL_NOLINK_WARN_NS, looked at now: writes why into buf and
 * returns true. Any other side has nothing to say (a listening side waits
 * for its peer, whose own health says why; per-stream dialing has no link
 * between streams). */
static bool side_nolink(struct lside *ls, int64_t now, char *buf, size_t len)
{
	const struct fg_tunnel_link_cfg *cfg = ls->cfg;
	if (!cfg || !cfg->present || cfg->is_listen || !ls->npeers ||
	    !(cfg->mux || (ls->which == 0 && cfg->pool)))
		return false;
	for (const struct link *l = ls->links; l; l = l->next_l)
		if (l->state == LS_UP) {
			ls->nolink_since_ns = 0;
			return false;
		}
	if (!ls->nolink_since_ns)
		ls->nolink_since_ns = now;
	int64_t secs = (now - ls->nolink_since_ns) / 1000000000LL;
	if (now - ls->nolink_since_ns < FG_TUNNEL_NOLINK_WARN_NS)
		return false;
	/* the first peer with an address says where it dials (a name with
	 * none is in the names part) */
	const struct peer_slot *p = NULL;
	for (size_t i = 0; i < ls->npeers && !p; i++)
		if (ls->peers[i].resolved)
			p = &ls->peers[i];
	char a[FG_ADDRSTR_MAX] = "";
	if (p)
		fg_addr_format((const struct sockaddr *)&p->addr, a, sizeof(a));
	if (!a[0])
		snprintf(buf, len, "%s: no link up for %llds (no peer address to dial)",
			 ls->which ? "next" : "prev", (long long)secs);
	else if (ls->npeers > 1)
		snprintf(buf, len, "%s: no link up for %llds (dialing %s and %zu more)",
			 ls->which ? "next" : "prev", (long long)secs, a, ls->npeers - 1);
	else
		snprintf(buf, len, "%s: no link up for %llds (dialing %s)",
			 ls->which ? "next" : "prev", (long long)secs, a);
	return true;
}

static int shard_health(struct tshard *e, const char *name, char *buf, size_t len)
{
	if (len)
		buf[0] = '\0';
	struct tun *t = e->tuns;
	while (t && (t->dying || strcmp(t->cfg.name, name) != 0))
		t = t->next_t;
	if (!t)
		return -ENOENT;
	/* only names whose last lookup failed: one still on its first lookup
	 * is not a problem yet (a few ms from the hosts file), and a report
	 * must not flash a warning after every apply */
	unsigned n = 0;
	char first[FG_TUNNEL_HEALTH_MAX + 1] = "";
	const struct lside *sides[2] = {&t->prev, &t->next};
	for (int k = 0; k < 2; k++)
		for (size_t i = 0; sides[k]->peers && i < sides[k]->npeers; i++) {
			const struct peer_slot *p = &sides[k]->peers[i];
			if (!p->name || !p->name_failing)
				continue;
			if (!n++)
				snprintf(first, sizeof(first),
					 "%s.peers[%zu] \"%s\" (cannot resolve: %s; %s)",
					 k ? "next" : "prev", i, fg_name_host(p->name), p->why,
					 p->resolved ? "dialing its last address" : "not dialed");
		}
	for (size_t i = 0; t->tnames && i < t->cfg.ntargets; i++) {
		const struct tname *tn = &t->tnames[i];
		if (!tn->name || !tn->failing)
			continue;
		if (!n++)
			snprintf(first, sizeof(first),
				 "targets[%zu] \"%s\" (cannot resolve: %s; %s)", i,
				 fg_name_host(tn->name), tn->why,
				 tn->resolved ? "its last address is used"
					      : "streams to it are refused");
	}
	size_t off = 0;
	if (n) {
		int w = snprintf(buf, len, "%u name%s unresolved: %s", n, n == 1 ? "" : "s", first);
		off = w > 0 ? FG_MIN((size_t)w, len ? len - 1 : 0) : 0;
	}
	/* both sides are looked at every time: each keeps its own clock */
	int64_t now = fg_loop_now(e->loop);
	struct lside *ls[2] = {&t->prev, &t->next};
	for (int k = 0; k < 2; k++) {
		char s[FG_TUNNEL_HEALTH_MAX + 1];
		if (!side_nolink(ls[k], now, s, sizeof(s)) || off + 1 >= len)
			continue;
		int w = snprintf(buf + off, len - off, "%s%s", off ? "; " : "", s);
		off = w > 0 ? FG_MIN(off + (size_t)w, len - 1) : off;
	}
	return 0;
}

/* With the other shards parked: each shard's copy of the tunnel has its
 * own links; a side's links add up, its round trip is the slowest. */
static int links_locked(struct fg_tunnel_engine *E, const char *name,
			struct fg_tunnel_link_stats out[2])
{
	int rc = shard_links(E->shards[0], name, out);
	for (unsigned k = 1; k < E->n; k++) {
		struct fg_tunnel_link_stats o[2];
		if (shard_links(E->shards[k], name, o) < 0)
			continue;
		rc = 0;
		for (int i = 0; i < 2; i++) {
			out[i].present |= o[i].present;
			out[i].links_up += o[i].links_up;
			out[i].rtt_us = FG_MAX(out[i].rtt_us, o[i].rtt_us);
		}
	}
	return rc;
}

int fg_tunnel_engine_links(struct fg_tunnel_engine *E, const char *name,
			   struct fg_tunnel_link_stats out[2])
{
	eng_park(E);
	int rc = links_locked(E, name, out);
	eng_unpark(E);
	return rc;
}

/* Every shard resolves the same names and dials its own links: the first
 * shard with something to say speaks (each is asked, so each keeps its
 * no-link clock). */
int fg_tunnel_engine_health(struct fg_tunnel_engine *E, const char *name, char *buf, size_t len)
{
	eng_park(E);
	int rc = shard_health(E->shards[0], name, buf, len);
	for (unsigned k = 1; k < E->n; k++) {
		char other[FG_TUNNEL_HEALTH_MAX + 1];
		if (shard_health(E->shards[k], name, other, sizeof(other)) < 0)
			continue;
		rc = 0;
		if (len && !buf[0] && other[0])
			snprintf(buf, len, "%s", other);
	}
	eng_unpark(E);
	return rc;
}

void fg_tunnel_engine_metrics(struct fg_tunnel_engine *E, struct fg_strbuf *b)
{
	eng_park(E);
	/* the names any shard has counters for, each summed over the shards
	 * (shard 0 knows every name but a dying one's the others still reap) */
	size_t n = 0, cap = 0;
	for (unsigned k = 0; k < E->n; k++)
		for (struct tstats *s = E->shards[k]->stats; s; s = s->next)
			cap++;
	struct tstats *sum = cap ? fg_calloc(cap, sizeof(*sum)) : NULL;
	for (unsigned k = 0; sum && k < E->n; k++)
		for (struct tstats *s = E->shards[k]->stats; s; s = s->next) {
			size_t j = 0;
			while (j < n && strcmp(sum[j].name, s->name) != 0)
				j++;
			if (j == n) {
				snprintf(sum[n].name, sizeof(sum[n].name), "%s", s->name);
				sum[n].next = NULL;
				if (n)
					sum[n - 1].next = &sum[n];
				n++;
			}
			counters_add(&sum[j].c, &s->c);
		}
	metrics_locked(E, n ? sum : NULL, b);
	fg_free(sum);
	eng_unpark(E);
}

/* The text, from the summed counters (a list; NULL = none) and shard 0's
 * tunnels (it runs every one). */
static void metrics_locked(struct fg_tunnel_engine *E, struct tstats *stats, struct fg_strbuf *b)
{
	struct tshard *e = E->shards[0];
	if (!stats)
		return;
	fg_prom_family(
	    b, "flowgate_tunnel_bytes_total", "counter",
	    "Bytes this node passed on, up = towards the exit, down = towards the entry.");
	for (struct tstats *s = stats; s; s = s->next) {
		const char *up[] = {"tunnel", s->name, "direction", "up", NULL};
		const char *down[] = {"tunnel", s->name, "direction", "down", NULL};
		fg_prom_sample(b, "flowgate_tunnel_bytes_total", up, s->c.bytes_up);
		fg_prom_sample(b, "flowgate_tunnel_bytes_total", down, s->c.bytes_down);
	}
	struct {
		const char *name, *type, *help;
		size_t off;
	} fam[] = {
	    {"flowgate_tunnel_connections_active", "gauge", "Streams open through this node.",
	     offsetof(struct fg_tunnel_counters, conns_active)},
	    {"flowgate_tunnel_connections_total", "counter", "Streams through this node.",
	     offsetof(struct fg_tunnel_counters, conns_total)},
	    {"flowgate_tunnel_refused_total", "counter",
	     "Streams refused (max_conns, no link, no target).",
	     offsetof(struct fg_tunnel_counters, refused)},
	    {"flowgate_tunnel_links_up", "gauge", "Link connections up.",
	     offsetof(struct fg_tunnel_counters, links_up)},
	    {"flowgate_tunnel_link_failures_total", "counter",
	     "Link dials or handshakes that failed, and links lost.",
	     offsetof(struct fg_tunnel_counters, link_failures)},
	    {"flowgate_tunnel_handshakes_refused_total", "counter",
	     "Link handshakes this node refused (wrong key, replay, clock, mismatch).",
	     offsetof(struct fg_tunnel_counters, handshakes_refused)},
	    {"flowgate_tunnel_tls_resumed_total", "counter",
	     "tls/wss link connections whose TLS handshake resumed a session (a ticket).",
	     offsetof(struct fg_tunnel_counters, tls_resumed)},
	};
	for (size_t f = 0; f < FG_ARRAY_LEN(fam); f++) {
		fg_prom_family(b, fam[f].name, fam[f].type, fam[f].help);
		for (struct tstats *s = stats; s; s = s->next) {
			const char *l[] = {"tunnel", s->name, NULL};
			uint64_t v;
			memcpy(&v, (const char *)&s->c + fam[f].off, sizeof(v));
			fg_prom_sample(b, fam[f].name, l, v);
		}
	}
	/* host names that cannot be dialed right now: no address yet, or the
	 * last lookup failed (a kept old address is still dialed) */
	bool any_name = false;
	for (struct tun *t = e->tuns; t && !any_name; t = t->next_t)
		any_name = !t->dying && tun_unresolved(t, NULL);
	if (any_name) {
		fg_prom_family(b, "flowgate_tunnel_names_unresolved", "gauge",
			       "Peer and target host names with no address yet or whose last "
			       "lookup failed.");
		for (struct tun *t = e->tuns; t; t = t->next_t) {
			unsigned failing = 0;
			if (t->dying || !tun_unresolved(t, &failing))
				continue;
			const char *l[] = {"tunnel", t->cfg.name, NULL};
			fg_prom_sample(b, "flowgate_tunnel_names_unresolved", l, failing);
		}
	}
	/* integer microseconds: the writer has no floats */
	fg_prom_family(b, "flowgate_tunnel_link_rtt_microseconds", "gauge",
		       "Round trip of the slowest live link of a side (prev: towards the entry, "
		       "next: towards the exit); absent until measured.");
	for (struct tun *t = e->tuns; t; t = t->next_t) {
		struct fg_tunnel_link_stats ls[2];
		if (t->dying || links_locked(E, t->cfg.name, ls) < 0)
			continue;
		for (int i = 0; i < 2; i++) {
			const char *l[] = {"tunnel", t->cfg.name, "side", i ? "next" : "prev",
					   NULL};
			if (ls[i].present && ls[i].rtt_us >= 0)
				fg_prom_sample(b, "flowgate_tunnel_link_rtt_microseconds", l,
					       (uint64_t)ls[i].rtt_us);
		}
	}
}
