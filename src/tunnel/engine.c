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

uint64_t eng_rand(struct fg_tunnel_engine *e)
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

static struct tstats *stats_get(struct fg_tunnel_engine *e, const char *name)
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

static void stats_unref(struct fg_tunnel_engine *e, struct tstats *s)
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

static void reap(struct fg_tunnel_engine *e)
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
void eng_schedule_reap(struct fg_tunnel_engine *e)
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

static struct fg_resolver *eng_resolver(struct fg_tunnel_engine *e)
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
static int endpoint_addr(struct fg_tunnel_engine *e, const struct fg_endpoint *ep,
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
	for (size_t i = 0; t->iptab && i < IPTAB_SIZE; i++)
		while (t->iptab[i]) {
			struct iprec *r = t->iptab[i];
			t->iptab[i] = r->next;
			fg_free(r);
		}
	fg_free(t->iptab);
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
	ls->hcfg.replay = &t->e->replay;
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
static struct tun *tun_new(struct fg_tunnel_engine *e, const struct fg_tunnel_cfg *cfg, char *err,
			   size_t errlen)
{
	struct tun *t = fg_calloc(1, sizeof(*t));
	if (!t || fg_tunnel_cfg_copy(&t->cfg, cfg)) {
		fg_free(t);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	t->e = e;
	t->prev.lfd = t->next.lfd = -1;
	t->stats = stats_get(e, cfg->name);
	if (!t->stats)
		goto oom;
	if (cfg->role == FG_TUNNEL_ENTRY) {
		int64_t now = fg_loop_now(e->loop);
		fg_bucket_init(&t->agg_up, cfg->rate_up,
			       cfg->burst ? cfg->burst : fg_bucket_default_burst(cfg->rate_up),
			       now);
		fg_bucket_init(&t->agg_down, cfg->rate_down,
			       cfg->burst ? cfg->burst : fg_bucket_default_burst(cfg->rate_down),
			       now);
		if (cfg->max_conns_per_ip && !(t->iptab = fg_calloc(IPTAB_SIZE, sizeof(*t->iptab))))
			goto oom;
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
	struct fg_tunnel_engine *e = t->e;
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

/* ---- engine ------------------------------------------------------------- */

struct fg_tunnel_engine *fg_tunnel_engine_new(const struct fg_tunnel_engine_opts *opts)
{
	struct fg_tunnel_engine *e = fg_calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	e->loop = opts->loop;
	if (opts->tls_cert)
		snprintf(e->cert, sizeof(e->cert), "%s", opts->tls_cert);
	if (opts->tls_key)
		snprintf(e->key, sizeof(e->key), "%s", opts->tls_key);
	e->make_cert = opts->make_cert;
	e->resolver = opts->resolver;
	fg_timer_init(&e->reap_timer, reap_cb, e);
	if (RAND_bytes((uint8_t *)&e->rng, sizeof(e->rng)) != 1 || !e->rng)
		e->rng = (uint64_t)fg_now_ns() | 1;
	uint64_t seed = eng_rand(e);
	unsigned cap = opts->replay_capacity ? opts->replay_capacity : REPLAY_CAPACITY;
	if (fg_hs_replay_init(&e->replay, cap, FG_HS_DEFAULT_CLOCK_WINDOW, seed) ||
	    fg_buf_pool_init(&e->chunks, sizeof(struct tq_chunk), 256) ||
	    fg_buf_pool_init(&e->wpool[0], LINK_WBUF(TQ_CHUNK), 64) ||
	    fg_buf_pool_init(&e->wpool[1], LINK_WBUF(LINK_PLAIN), 16) ||
	    fg_buf_pool_init(&e->spool, LINK_PLAIN, 8) || !(e->rbuf = fg_malloc(LINK_RBUF))) {
		fg_tunnel_engine_free(e);
		errno = ENOMEM;
		return NULL;
	}
	fg_slab_init(&e->streams, sizeof(struct tstream));
	return e;
}

void fg_tunnel_engine_free(struct fg_tunnel_engine *e)
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
	fg_tls_server_free(e->tls_srv);
	fg_tls_client_free(e->tls_cli);
	fg_hs_replay_deinit(&e->replay);
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
		fg_info("tunnel %s: %s link keys changed: dials with key id %u, accepts %zu "
			"key(s)",
			t->cfg.name, k ? "next" : "prev", lk[k]->psk_id, lk[k]->nkeys);
	}
}

static struct tun *find_running(struct fg_tunnel_engine *e, const char *name)
{
	for (struct tun *t = e->tuns; t; t = t->next_t)
		if (strcmp(t->cfg.name, name) == 0)
			return t;
	return NULL;
}

int fg_tunnel_engine_apply(struct fg_tunnel_engine *e, const struct fg_tunnel_set *set, char *err,
			   size_t errlen)
{
	struct fg_tls_server *srv = NULL;
	struct tun **fresh = fg_calloc(set->n + 1, sizeof(*fresh));
	bool *keep = fg_calloc(set->n + 1, sizeof(*keep));
	bool *rekey = fg_calloc(set->n + 1, sizeof(*rekey));
	int rc = 0;
	if (!fresh || !keep || !rekey) {
		snprintf(err, errlen, "out of memory");
		rc = -ENOMEM;
		goto out;
	}
	if ((rc = load_cert(e, set, &srv, err, errlen)) < 0)
		goto out;
	/* the client context (it reads the system CA store) only once a
	 * tls/wss link dials */
	for (size_t i = 0; i < set->n && !e->tls_cli; i++) {
		const struct fg_tunnel_cfg *c = &set->v[i];
		const struct fg_tunnel_link_cfg *lk[2] = {&c->prev, &c->next};
		for (int k = 0; k < 2 && !e->tls_cli; k++) {
			if (!c->enabled || !lk[k]->present || lk[k]->is_listen ||
			    (lk[k]->transport != FG_TT_TLS && lk[k]->transport != FG_TT_WSS))
				continue;
			/* resume: a link without mux is one TLS handshake per
			 * client connection; tickets from the peers we pin
			 * save their certificate and signatures */
			struct fg_tls_client_opts co = {.tls13_only = true, .resume = true};
			char terr[FG_TLS_ERR_LEN];
			e->tls_cli = fg_tls_client_new(&co, terr, sizeof(terr));
			if (!e->tls_cli) {
				snprintf(err, errlen, "tls client: %s", terr);
				rc = -EINVAL;
				goto out;
			}
		}
	}
	for (size_t i = 0; i < set->n; i++) {
		const struct fg_tunnel_cfg *c = &set->v[i];
		if (!c->enabled)
			continue;
		struct tun *old = find_running(e, c->name);
		if (old && fg_tunnel_cfg_equal(&old->cfg, c)) {
			keep[i] = true;
			continue;
		}
		if (old && fg_tunnel_cfg_equal_but_keys(&old->cfg, c)) {
			/* a key rotation: the links up were authenticated at their
			 * handshake and stay; the keys change below, in place */
			keep[i] = rekey[i] = true;
			continue;
		}
		fresh[i] = tun_new(e, c, err, errlen);
		if (!fresh[i]) {
			rc = -EINVAL;
			goto out;
		}
		if (old)
			tun_seed_names(fresh[i], old);
	}
	/* everything is bound: switch */
	if (srv) {
		fg_tls_server_free(e->tls_srv);
		e->tls_srv = srv;
		srv = NULL;
	}
	for (size_t i = 0; i < set->n; i++) {
		struct tun *t = rekey[i] ? find_running(e, set->v[i].name) : NULL;
		if (t)
			tun_set_keys(t, &set->v[i]);
	}
	struct tun *keepers = NULL, **tail = &keepers;
	for (struct tun *t = e->tuns, *nx; t; t = nx) {
		nx = t->next_t;
		bool kept = false;
		for (size_t i = 0; i < set->n; i++)
			if (keep[i] && strcmp(set->v[i].name, t->cfg.name) == 0)
				kept = true;
		if (kept) {
			t->next_t = NULL;
			*tail = t;
			tail = &t->next_t;
		} else {
			fg_info("tunnel %s: stopped", t->cfg.name);
			tun_stop(t);
		}
	}
	e->tuns = keepers;
	for (size_t i = 0; i < set->n; i++) {
		if (!fresh[i])
			continue;
		struct tun *t = fresh[i];
		fresh[i] = NULL;
		t->next_t = e->tuns;
		e->tuns = t;
		if (tun_start(t) < 0)
			fg_err("tunnel %s: cannot watch its sockets: %s", t->cfg.name,
			       strerror(errno));
		else
			fg_info("tunnel %s: %s running", t->cfg.name,
				fg_tunnel_role_name(t->cfg.role));
	}
out:
	for (size_t i = 0; fresh && i < set->n; i++)
		if (fresh[i])
			tun_free_mem(fresh[i]);
	fg_tls_server_free(srv);
	fg_free(fresh);
	fg_free(keep);
	fg_free(rekey);
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

int fg_tunnel_engine_counters(struct fg_tunnel_engine *e, const char *name,
			      struct fg_tunnel_counters *out)
{
	for (struct tstats *s = e->stats; s; s = s->next)
		if (strcmp(s->name, name) == 0) {
			*out = s->c;
			return 0;
		}
	memset(out, 0, sizeof(*out));
	return -ENOENT;
}

void fg_tunnel_engine_foreach(struct fg_tunnel_engine *e,
			      void (*cb)(const char *name, const char *id,
					 const struct fg_tunnel_counters *c, void *arg),
			      void *arg)
{
	for (struct tun *t = e->tuns; t; t = t->next_t)
		cb(t->cfg.name, t->cfg.id, &t->stats->c, arg);
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

int fg_tunnel_engine_links(struct fg_tunnel_engine *e, const char *name,
			   struct fg_tunnel_link_stats out[2])
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

int fg_tunnel_engine_health(struct fg_tunnel_engine *e, const char *name, char *buf, size_t len)
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

void fg_tunnel_engine_metrics(struct fg_tunnel_engine *e, struct fg_strbuf *b)
{
	if (!e->stats)
		return;
	fg_prom_family(
	    b, "flowgate_tunnel_bytes_total", "counter",
	    "Bytes this node passed on, up = towards the exit, down = towards the entry.");
	for (struct tstats *s = e->stats; s; s = s->next) {
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
		for (struct tstats *s = e->stats; s; s = s->next) {
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
		if (t->dying || fg_tunnel_engine_links(e, t->cfg.name, ls) < 0)
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
