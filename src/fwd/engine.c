/* The engine's control side: worker threads, applying a forward set
 * (bind first, then switch), reference counting, per-IP counts, metrics. */
#include "fwd/engine.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/metrics.h"
#include "fwd/internal.h"
#include "net/addr.h"

#define DEFAULT_PIPE_SIZE (1024 * 1024)
#define PIPE_POOL_CAP	  256
#define LISTEN_BACKLOG	  4096

void fg_stats_add(_Atomic uint64_t *c, uint64_t n)
{
	/* single writer per slot: a relaxed load+store is enough and cheaper
	 * than a locked add */
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
			      memory_order_relaxed);
}

/* ---- stats registry (control thread) -------------------------------- */

static struct fg_stats *stats_get(struct fg_engine *e, const char *name)
{
	for (struct fg_stats *s = e->stats; s; s = s->next) {
		if (strcmp(s->name, name) == 0) {
			atomic_fetch_add(&s->refs, 1);
			return s;
		}
	}
	size_t sz = sizeof(struct fg_stats) + e->nworkers * sizeof(struct fg_stats_slot);
	sz = (sz + FG_CACHELINE - 1) & ~(size_t)(FG_CACHELINE - 1);
	struct fg_stats *s = aligned_alloc(FG_CACHELINE, sz);
	if (!s)
		return NULL;
	memset(s, 0, sz);
	snprintf(s->name, sizeof(s->name), "%s", name);
	atomic_store(&s->refs, 2); /* registry + caller */
	s->next = e->stats;
	e->stats = s;
	return s;
}

static void stats_unref(struct fg_stats *s)
{
	if (atomic_fetch_sub(&s->refs, 1) != 1)
		return;
	struct fg_target_stats *t = s->targets, *next;
	for (; t; t = next) {
		next = t->next;
		fg_free(t);
	}
	free(s);
}

static struct fg_target_stats *target_stats_get(struct fg_stats *s, const char *label)
{
	struct fg_target_stats **pp = &s->targets;
	for (; *pp; pp = &(*pp)->next)
		if (strcmp((*pp)->label, label) == 0)
			return *pp;
	struct fg_target_stats *t = fg_calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	snprintf(t->label, sizeof(t->label), "%s", label);
	*pp = t; /* appended last: readers walking the list never see a gap */
	return t;
}

/* ---- forward runtime ------------------------------------------------ */

void fg_fwd_ref(struct fg_fwd *f)
{
	atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
}

static void iptable_free(struct fg_iptable *t);

static void fwd_free(struct fg_fwd *f)
{
	if (f->tcp_fds)
		for (unsigned i = 0; i < f->engine->nworkers * f->nports; i++)
			if (f->tcp_fds[i] >= 0)
				close(f->tcp_fds[i]);
	if (f->udp_fds)
		for (unsigned i = 0; i < f->engine->nworkers * f->nports; i++)
			if (f->udp_fds[i] >= 0)
				close(f->udp_fds[i]);
	fg_free(f->tcp_fds);
	fg_free(f->udp_fds);
	fg_free(f->targets);
	iptable_free(f->per_ip);
	if (f->stats)
		stats_unref(f->stats);
	fg_forward_cfg_deinit(&f->cfg);
	fg_free(f);
}

void fg_fwd_unref(struct fg_fwd *f)
{
	if (atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) == 1)
		fwd_free(f);
}

/* ---- per-IP counts -------------------------------------------------- */

static struct fg_iptable *iptable_new(void)
{
	struct fg_iptable *t = fg_calloc(1, sizeof(*t));
	if (t)
		pthread_mutex_init(&t->mu, NULL);
	return t;
}

static void iptable_free(struct fg_iptable *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < FG_IPTABLE_BUCKETS; i++) {
		struct fg_ipcount *c = t->b[i], *next;
		for (; c; c = next) {
			next = c->next;
			fg_free(c);
		}
	}
	pthread_mutex_destroy(&t->mu);
	fg_free(t);
}

bool fg_ip_acquire(struct fg_fwd *f, const struct sockaddr *ip)
{
	struct fg_iptable *t = f->per_ip;
	size_t k = fg_addr_ip_hash(ip) % FG_IPTABLE_BUCKETS;
	bool ok = false;
	pthread_mutex_lock(&t->mu);
	struct fg_ipcount *c = t->b[k];
	for (; c; c = c->next)
		if (fg_addr_ip_equal((struct sockaddr *)&c->ip, ip))
			break;
	if (!c) {
		c = fg_calloc(1, sizeof(*c));
		if (c) {
			memcpy(&c->ip, ip, fg_addr_len(ip));
			c->next = t->b[k];
			t->b[k] = c;
		}
	}
	if (c && c->count < f->cfg.max_conns_per_ip) {
		c->count++;
		ok = true;
	}
	pthread_mutex_unlock(&t->mu);
	return ok;
}

void fg_ip_release(struct fg_fwd *f, const struct sockaddr *ip)
{
	struct fg_iptable *t = f->per_ip;
	size_t k = fg_addr_ip_hash(ip) % FG_IPTABLE_BUCKETS;
	pthread_mutex_lock(&t->mu);
	for (struct fg_ipcount **pp = &t->b[k]; *pp; pp = &(*pp)->next) {
		struct fg_ipcount *c = *pp;
		if (!fg_addr_ip_equal((struct sockaddr *)&c->ip, ip))
			continue;
		if (--c->count == 0) {
			*pp = c->next;
			fg_free(c);
		}
		break;
	}
	pthread_mutex_unlock(&t->mu);
}

/* ---- sockets -------------------------------------------------------- */

static int bind_one(const struct sockaddr_storage *base, uint16_t port, bool udp, int *out)
{
	struct sockaddr_storage sa = *base;
	fg_addr_set_port((struct sockaddr *)&sa, port);
	int fd = socket(sa.ss_family,
			(udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1, zero = 0;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	if (sa.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	if (!udp)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one,
			   sizeof(one)); /* inherited on accept */
	if (udp) {
		setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one));
		if (sa.ss_family == AF_INET6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof(one));
	}
	if (bind(fd, (struct sockaddr *)&sa, fg_addr_len((struct sockaddr *)&sa)) < 0 ||
	    (!udp && listen(fd, LISTEN_BACKLOG) < 0)) {
		int e = errno;
		close(fd);
		return -e;
	}
	*out = fd;
	return 0;
}

/* Binds every socket of a forward: [worker][port] for each protocol. */
static int fwd_bind(struct fg_engine *e, struct fg_fwd *f, char *err, size_t errlen)
{
	unsigned n = e->nworkers * f->nports;
	f->tcp_fds = fg_malloc(n * sizeof(int));
	f->udp_fds = fg_malloc(n * sizeof(int));
	if (!f->tcp_fds || !f->udp_fds) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	for (unsigned i = 0; i < n; i++)
		f->tcp_fds[i] = f->udp_fds[i] = -1;
	for (unsigned p = 0; p < f->nports; p++) {
		uint16_t port = (uint16_t)(f->cfg.listen.port_lo + p);
		for (int udp = 0; udp < 2; udp++) {
			if (!(f->cfg.proto & (udp ? FG_PROTO_UDP : FG_PROTO_TCP)))
				continue;
			for (unsigned w = 0; w < e->nworkers; w++) {
				int *slot = &(udp ? f->udp_fds : f->tcp_fds)[w * f->nports + p];
				int rc = bind_one(&f->cfg.listen.ip, port, udp, slot);
				if (rc < 0) {
					struct sockaddr_storage sa = f->cfg.listen.ip;
					char a[FG_ADDRSTR_MAX];
					fg_addr_set_port((struct sockaddr *)&sa, port);
					fg_addr_format((struct sockaddr *)&sa, a, sizeof(a));
					snprintf(
					    err, errlen, "forward %s: cannot listen on %s/%s: %s",
					    f->cfg.name, a, udp ? "udp" : "tcp", strerror(-rc));
					return rc;
				}
			}
		}
	}
	return 0;
}

static struct fg_fwd *fwd_new(struct fg_engine *e, const struct fg_forward_cfg *cfg)
{
	struct fg_fwd *f = fg_calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	atomic_store(&f->refs, 1); /* the control thread's */
	f->engine = e;
	if (fg_forward_cfg_copy(&f->cfg, cfg) < 0) {
		fg_free(f);
		return NULL;
	}
	f->nports = (unsigned)cfg->listen.port_hi - cfg->listen.port_lo + 1;
	f->stats = stats_get(e, cfg->name);
	f->targets = fg_calloc(cfg->ntargets, sizeof(*f->targets));
	if (!f->stats || !f->targets)
		goto err;
	for (size_t i = 0; i < cfg->ntargets; i++) {
		fg_target_init(f, &f->targets[i], &cfg->targets[i]);
		char label[FG_HOST_MAX + 16];
		const struct fg_endpoint *ep = &cfg->targets[i];
		if (ep->port_lo == ep->port_hi)
			snprintf(label, sizeof(label), "%s:%u", ep->host, ep->port_lo);
		else
			snprintf(label, sizeof(label), "%s:%u-%u", ep->host, ep->port_lo,
				 ep->port_hi);
		f->targets[i].stats = target_stats_get(f->stats, label);
		if (!f->targets[i].stats)
			goto err;
	}
	int64_t now = fg_now_ns();
	fg_bucket_init(&f->up, cfg->rate_up, cfg->burst, now);
	fg_bucket_init(&f->down, cfg->rate_down, cfg->burst, now);
	if (cfg->max_conns_per_ip && !(f->per_ip = iptable_new()))
		goto err;
	return f;
err:
	fwd_free(f);
	return NULL;
}

/* ---- workers -------------------------------------------------------- */

static void worker_post2(struct fg_worker *w, enum fg_msg_kind kind, struct fg_fwd *f,
			 struct fg_fwd *old)
{
	struct fg_msg *m = fg_calloc(1, sizeof(*m));
	FG_BUG_ON(!m); /* a lost control message would leak a forward */
	m->kind = kind;
	m->fwd = f;
	m->old = old;
	if (f)
		fg_fwd_ref(f);
	if (old)
		fg_fwd_ref(old);
	pthread_mutex_lock(&w->inbox_mu);
	struct fg_msg **pp = &w->inbox;
	while (*pp)
		pp = &(*pp)->next;
	*pp = m;
	pthread_mutex_unlock(&w->inbox_mu);
	fg_async_send(&w->inbox_async);
}

static void worker_post(struct fg_worker *w, enum fg_msg_kind kind, struct fg_fwd *f)
{
	worker_post2(w, kind, f, NULL);
}

static void listener_free_deferred(void *data)
{
	struct fg_listener *l = data;
	fg_fwd_unref(l->fwd);
	fg_free(l);
}

static void worker_add(struct fg_worker *w, struct fg_fwd *f)
{
	for (unsigned p = 0; p < f->nports; p++) {
		for (int udp = 0; udp < 2; udp++) {
			int *slot = &(udp ? f->udp_fds : f->tcp_fds)[w->id * f->nports + p];
			if (*slot < 0)
				continue;
			struct fg_listener *l = fg_calloc(1, sizeof(*l));
			FG_BUG_ON(!l);
			l->w = w;
			l->fwd = f;
			fg_fwd_ref(f);
			l->port = (uint16_t)(f->cfg.listen.port_lo + p);
			l->port_idx = (uint16_t)p;
			l->udp = udp;
			fg_io_init(&l->io);
			fg_tcp_listener_timer_init(l);
			if (udp)
				FG_BUG_ON(fg_udp_listener_init(l) < 0);
			int fd = *slot;
			*slot = -1; /* the worker owns it now */
			int rc = fg_io_start(w->loop, &l->io, fd, EPOLLIN,
					     udp ? fg_udp_recv_cb : fg_tcp_accept_cb, l);
			FG_BUG_ON(rc < 0);
			l->next = w->listeners;
			w->listeners = l;
		}
	}
}

static void worker_remove(struct fg_worker *w, struct fg_fwd *f)
{
	bool closing = atomic_load(&f->closing);
	struct fg_listener **pp = &w->listeners;
	while (*pp) {
		struct fg_listener *l = *pp;
		if (l->fwd != f) {
			pp = &l->next;
			continue;
		}
		*pp = l->next;
		if (!l->udp && !closing)
			fg_tcp_drain_listener(w, l);
		int fd = l->io.fd;
		fg_io_stop(w->loop, &l->io);
		fg_timer_stop(w->loop, &l->pause);
		close(fd);
		if (l->udp)
			fg_udp_listener_deinit(l);
		fg_loop_defer(w->loop, listener_free_deferred, l);
	}
	if (closing)
		fg_tcp_close_fwd(w, f);
}

/* Hands the listeners of `old` to `f` (same address and protocol). TCP
 * connections keep their forward; UDP sessions end, as their state
 * (limits, targets) belongs to the old forward. */
static void worker_replace(struct fg_worker *w, struct fg_fwd *old, struct fg_fwd *f)
{
	for (struct fg_listener *l = w->listeners; l; l = l->next) {
		if (l->fwd != old)
			continue;
		if (l->udp) {
			fg_udp_listener_deinit(l);
			FG_BUG_ON(fg_udp_listener_init(l) < 0);
		}
		fg_fwd_ref(f);
		l->fwd = f;
		fg_fwd_unref(old);
	}
}

static void inbox_cb(struct fg_loop *loop, struct fg_async *a)
{
	struct fg_worker *w = a->data;
	pthread_mutex_lock(&w->inbox_mu);
	struct fg_msg *m = w->inbox;
	w->inbox = NULL;
	pthread_mutex_unlock(&w->inbox_mu);
	while (m) {
		struct fg_msg *next = m->next;
		if (!m->fwd) {
			/* a message without a forward: stop, closing what still
			 * drains from replaced forwards */
			fg_tcp_close_fwd(w, NULL);
			fg_loop_stop(loop);
		} else if (m->kind == FG_MSG_ADD) {
			worker_add(w, m->fwd);
		} else if (m->kind == FG_MSG_REPLACE) {
			worker_replace(w, m->old, m->fwd);
		} else {
			worker_remove(w, m->fwd);
		}
		if (m->fwd)
			fg_fwd_unref(m->fwd);
		if (m->old)
			fg_fwd_unref(m->old);
		fg_free(m);
		m = next;
	}
}

static void *worker_main(void *arg)
{
	struct fg_worker *w = arg;
	fg_loop_update_now(w->loop);
	int rc = fg_loop_run(w->loop);
	if (rc < 0)
		fg_err("worker %u: event loop failed: %s", w->id, strerror(-rc));
	return NULL;
}

static int worker_init(struct fg_engine *e, struct fg_worker *w, unsigned id)
{
	w->id = id;
	w->engine = e;
	pthread_mutex_init(&w->inbox_mu, NULL);
	fg_slab_init(&w->conn_slab, fg_tcp_conn_size);
	fg_slab_init(&w->sess_slab, fg_udp_session_size);
	w->loop = fg_loop_new();
	if (!w->loop)
		return -ENOMEM;
	if (fg_async_init(w->loop, &w->inbox_async, inbox_cb, w) < 0)
		return -ENOMEM;
	if (fg_pipe_pool_init(&w->pipes, e->pipe_size, PIPE_POOL_CAP) < 0)
		return -ENOMEM;
	if (fg_udp_worker_init(w) < 0)
		return -ENOMEM;
	if (pthread_create(&w->thread, NULL, worker_main, w) != 0)
		return -EAGAIN;
	char tname[32];
	snprintf(tname, sizeof(tname), "fg-worker-%u", id);
	pthread_setname_np(w->thread, tname);
	return 0;
}

struct fg_engine *fg_engine_new(const struct fg_engine_opts *opts)
{
	struct fg_engine *e = fg_calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	e->ctl = opts->ctl_loop;
	e->nworkers = opts->workers;
	if (!e->nworkers) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		e->nworkers = n > 0 ? (unsigned)n : 1;
	}
	if (e->nworkers > FG_MAX_WORKERS)
		e->nworkers = FG_MAX_WORKERS;
	e->pipe_size = opts->pipe_size;
	if (!e->pipe_size) {
		const char *env = getenv("FLOWGATE_PIPE_SIZE");
		e->pipe_size = env ? strtoul(env, NULL, 0) : DEFAULT_PIPE_SIZE;
	}
	e->resolver = fg_resolver_new(e->ctl);
	e->workers = fg_calloc(e->nworkers, sizeof(*e->workers));
	if (!e->resolver || !e->workers)
		goto err;
	for (unsigned i = 0; i < e->nworkers; i++) {
		if (worker_init(e, &e->workers[i], i) < 0) {
			e->nworkers = i + 1; /* free what was set up */
			goto err;
		}
	}
	return e;
err:
	fg_engine_free(e);
	return NULL;
}

void fg_engine_free(struct fg_engine *e)
{
	if (!e)
		return;
	struct fg_fwd *f = e->running, *next;
	for (; f; f = next) {
		next = f->next;
		atomic_store(&f->closing, true);
		for (unsigned i = 0; e->workers && i < e->nworkers; i++)
			if (e->workers[i].loop)
				worker_post(&e->workers[i], FG_MSG_REMOVE, f);
		fg_targets_stop(e, f);
		fg_fwd_unref(f);
	}
	e->running = NULL;
	for (unsigned i = 0; e->workers && i < e->nworkers; i++) {
		struct fg_worker *w = &e->workers[i];
		if (!w->loop)
			continue;
		if (w->thread) {
			worker_post(w, FG_MSG_REMOVE, NULL); /* NULL forward = stop */
			pthread_join(w->thread, NULL);
		}
		fg_async_deinit(w->loop, &w->inbox_async);
		fg_pipe_pool_deinit(&w->pipes);
		fg_udp_worker_deinit(w);
		fg_loop_free(w->loop);
		fg_slab_deinit(&w->conn_slab);
		fg_slab_deinit(&w->sess_slab);
		pthread_mutex_destroy(&w->inbox_mu);
	}
	fg_free(e->workers);
	fg_resolver_free(e->resolver);
	struct fg_stats *s = e->stats, *sn;
	for (; s; s = sn) {
		sn = s->next;
		stats_unref(s);
	}
	fg_free(e);
}

/* ---- apply ---------------------------------------------------------- */

static struct fg_fwd *find_running(struct fg_engine *e, const char *name)
{
	for (struct fg_fwd *f = e->running; f; f = f->next)
		if (strcmp(f->cfg.name, name) == 0)
			return f;
	return NULL;
}

static const struct fg_forward_cfg *find_cfg(const struct fg_forward_set *set, const char *name)
{
	for (size_t i = 0; i < set->n; i++)
		if (set->v[i].enabled && set->v[i].engine == FG_ENGINE_PROXY &&
		    strcmp(set->v[i].name, name) == 0)
			return &set->v[i];
	return NULL;
}

static void stop_fwd(struct fg_engine *e, struct fg_fwd *f, bool close_conns)
{
	atomic_store(&f->closing, close_conns);
	for (unsigned i = 0; i < e->nworkers; i++)
		worker_post(&e->workers[i], FG_MSG_REMOVE, f);
	fg_targets_stop(e, f);
	fg_fwd_unref(f);
}

/* Drops registry entries whose name no longer runs. */
static void stats_prune(struct fg_engine *e)
{
	struct fg_stats **pp = &e->stats;
	while (*pp) {
		struct fg_stats *s = *pp;
		if (find_running(e, s->name)) {
			pp = &s->next;
			continue;
		}
		*pp = s->next;
		stats_unref(s);
	}
}

int fg_engine_apply(struct fg_engine *e, const struct fg_forward_set *set, char *err, size_t errlen)
{
	int rc = fg_forward_set_check(set, err, errlen);
	if (rc)
		return rc;
	/* 1. build and bind everything new; nothing running is touched yet */
	struct fg_fwd *fresh = NULL;
	for (size_t i = 0; i < set->n; i++) {
		const struct fg_forward_cfg *c = &set->v[i];
		if (!c->enabled || c->engine != FG_ENGINE_PROXY)
			continue; /* kernel forwards are the kernel plane's (src/kernel) */
		struct fg_fwd *old = find_running(e, c->name);
		if (old && fg_forward_cfg_equal(&old->cfg, c))
			continue;
		struct fg_fwd *f = fwd_new(e, c);
		if (!f) {
			snprintf(err, errlen, "forward %s: out of memory", c->name);
			rc = -ENOMEM;
			goto rollback;
		}
		f->next = fresh;
		fresh = f;
		if (old && old->cfg.proto == c->proto &&
		    memcmp(&old->cfg.listen, &c->listen, sizeof(c->listen)) == 0) {
			f->adopt = true;
			continue;
		}
		if ((rc = fwd_bind(e, f, err, errlen)) < 0)
			goto rollback;
	}

	/* 2. switch: start the new ones, then stop what they replace */
	struct fg_fwd **pp = &e->running;
	while (*pp) {
		struct fg_fwd *f = *pp;
		const struct fg_forward_cfg *c = find_cfg(set, f->cfg.name);
		if (c && fg_forward_cfg_equal(&f->cfg, c)) {
			pp = &f->next;
			continue;
		}
		*pp = f->next;
		/* replaced: old connections finish on the old settings;
		 * removed: they close */
		if (c)
			fg_info("forward %s: changed, rebinding", f->cfg.name);
		else
			fg_info("forward %s: removed", f->cfg.name);
		/* new listeners first, so no connection attempt meets a closed port */
		struct fg_fwd *nf = NULL;
		if (c) {
			for (struct fg_fwd **fp = &fresh; *fp; fp = &(*fp)->next) {
				if (strcmp((*fp)->cfg.name, f->cfg.name) == 0) {
					nf = *fp;
					*fp = nf->next;
					break;
				}
			}
		}
		if (nf) {
			fg_targets_start(e, nf);
			for (unsigned i = 0; i < e->nworkers; i++)
				worker_post2(&e->workers[i],
					     nf->adopt ? FG_MSG_REPLACE : FG_MSG_ADD, nf,
					     nf->adopt ? f : NULL);
			nf->next = *pp;
			*pp = nf;
			pp = &nf->next;
		}
		stop_fwd(e, f, c == NULL);
	}
	while (fresh) {
		struct fg_fwd *f = fresh;
		fresh = f->next;
		fg_info("forward %s: listening on %s:%u%s%.0u/%s", f->cfg.name, f->cfg.listen.host,
			f->cfg.listen.port_lo, f->nports > 1 ? "-" : "",
			f->nports > 1 ? f->cfg.listen.port_hi : 0u,
			f->cfg.proto == FG_PROTO_BOTH  ? "tcp+udp"
			: f->cfg.proto == FG_PROTO_UDP ? "udp"
						       : "tcp");
		fg_targets_start(e, f);
		for (unsigned i = 0; i < e->nworkers; i++)
			worker_post(&e->workers[i], FG_MSG_ADD, f);
		f->next = e->running;
		e->running = f;
	}
	stats_prune(e);
	return 0;

rollback:
	while (fresh) {
		struct fg_fwd *f = fresh;
		fresh = f->next;
		fg_fwd_unref(f);
	}
	stats_prune(e);
	return rc;
}

/* ---- counters and metrics ------------------------------------------- */

static void stats_sum(struct fg_engine *e, struct fg_stats *s, struct fg_forward_counters *o)
{
	memset(o, 0, sizeof(*o));
	int64_t active = 0;
	for (unsigned i = 0; i < e->nworkers; i++) {
		struct fg_stats_slot *sl = &s->slot[i];
		o->bytes_up += atomic_load_explicit(&sl->bytes_up, memory_order_relaxed);
		o->bytes_down += atomic_load_explicit(&sl->bytes_down, memory_order_relaxed);
		o->conns_total += atomic_load_explicit(&sl->conns_total, memory_order_relaxed);
		active += atomic_load_explicit(&sl->active, memory_order_relaxed);
		o->refused_max_conns +=
		    atomic_load_explicit(&sl->refused[FG_REFUSE_MAX_CONNS], memory_order_relaxed);
		o->refused_per_ip +=
		    atomic_load_explicit(&sl->refused[FG_REFUSE_PER_IP], memory_order_relaxed);
		o->refused_no_target +=
		    atomic_load_explicit(&sl->refused[FG_REFUSE_NO_TARGET], memory_order_relaxed);
	}
	o->conns_active = active > 0 ? (uint64_t)active : 0;
}

struct fg_resolver *fg_engine_resolver(struct fg_engine *e)
{
	return e->resolver;
}

void fg_engine_set_metrics_hook(struct fg_engine *e, fg_engine_metrics_cb cb, void *data)
{
	e->metrics_hook = cb;
	e->metrics_hook_data = data;
}

int fg_engine_counters(struct fg_engine *e, const char *name, struct fg_forward_counters *out)
{
	for (struct fg_stats *s = e->stats; s; s = s->next) {
		if (strcmp(s->name, name) == 0) {
			stats_sum(e, s, out);
			return 0;
		}
	}
	memset(out, 0, sizeof(*out));
	return -ENOENT;
}

void fg_engine_metrics(struct fg_engine *e, struct fg_strbuf *b)
{
	static const char *const reasons[] = {"max_conns", "max_conns_per_ip", "no_target"};

	/* sum the worker slots once, so every family of a scrape shows the
	 * same moment */
	for (struct fg_stats *s = e->stats; s; s = s->next)
		stats_sum(e, s, &s->snap);

	fg_prom_family(b, "flowgate_forward_bytes_total", "counter",
		       "Bytes delivered, up = client to target, down = target to client.");
	for (struct fg_stats *s = e->stats; s; s = s->next) {
		const char *up[] = {"forward", s->name, "direction", "up", NULL};
		const char *down[] = {"forward", s->name, "direction", "down", NULL};
		fg_prom_sample(b, "flowgate_forward_bytes_total", up, s->snap.bytes_up);
		fg_prom_sample(b, "flowgate_forward_bytes_total", down, s->snap.bytes_down);
	}
	if (e->metrics_hook)
		e->metrics_hook(e->metrics_hook_data, "flowgate_forward_bytes_total", b);
	fg_prom_family(b, "flowgate_forward_connections_active", "gauge",
		       "Open TCP connections and UDP sessions.");
	for (struct fg_stats *s = e->stats; s; s = s->next) {
		const char *l[] = {"forward", s->name, NULL};
		fg_prom_sample(b, "flowgate_forward_connections_active", l, s->snap.conns_active);
	}
	fg_prom_family(b, "flowgate_forward_connections_total", "counter",
		       "Accepted TCP connections and UDP sessions.");
	for (struct fg_stats *s = e->stats; s; s = s->next) {
		const char *l[] = {"forward", s->name, NULL};
		fg_prom_sample(b, "flowgate_forward_connections_total", l, s->snap.conns_total);
	}
	if (e->metrics_hook)
		e->metrics_hook(e->metrics_hook_data, "flowgate_forward_connections_total", b);
	fg_prom_family(b, "flowgate_forward_refused_total", "counter",
		       "Connections refused, by reason.");
	for (struct fg_stats *s = e->stats; s; s = s->next) {
		uint64_t v[] = {s->snap.refused_max_conns, s->snap.refused_per_ip,
				s->snap.refused_no_target};
		for (size_t i = 0; i < FG_ARRAY_LEN(reasons); i++) {
			const char *l[] = {"forward", s->name, "reason", reasons[i], NULL};
			fg_prom_sample(b, "flowgate_forward_refused_total", l, v[i]);
		}
	}
	fg_prom_family(b, "flowgate_forward_target_errors_total", "counter",
		       "Failed connects (refused, timed out, unreachable) per target.");
	for (struct fg_stats *s = e->stats; s; s = s->next)
		for (struct fg_target_stats *t = s->targets; t; t = t->next) {
			const char *l[] = {"forward", s->name, "target", t->label, NULL};
			fg_prom_sample(b, "flowgate_forward_target_errors_total", l,
				       atomic_load_explicit(&t->errors, memory_order_relaxed));
		}
	fg_prom_family(b, "flowgate_forward_target_up", "gauge",
		       "1 if the target is taking connections.");
	for (struct fg_fwd *f = e->running; f; f = f->next)
		for (size_t i = 0; i < f->cfg.ntargets; i++) {
			const char *l[] = {"forward", f->cfg.name, "target",
					   f->targets[i].stats->label, NULL};
			fg_prom_sample(
			    b, "flowgate_forward_target_up", l,
			    atomic_load_explicit(&f->targets[i].up, memory_order_relaxed));
		}
}
