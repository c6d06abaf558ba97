/* Targets: choosing one, passive failure detection, active TCP health
 * checks, and the addresses of host-name targets (kept fresh by a name slot
 * of net/resolver.h). Health checks and names run on the control thread;
 * workers only read target state. */
#include <arpa/inet.h>
#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/loop.h"
#include "fwd/internal.h"
#include "net/addr.h"
#include "net/balance.h"
#include "net/resolver.h"

/* ---- choosing (workers) --------------------------------------------- */

static bool target_eligible(const struct fg_fwd *f, struct fg_target *t, int64_t now)
{
	if (atomic_load_explicit(&t->up, memory_order_relaxed))
		return true;
	/* passive-only: a down target gets a retry after a while; with an
	 * active check only the check brings it back */
	return !f->cfg.health.enabled &&
	       now >= atomic_load_explicit(&t->retry_at, memory_order_relaxed);
}

int fg_target_pick(struct fg_fwd *f, const struct sockaddr *client, uint64_t skip, int64_t now)
{
	struct fg_pick_candidate cand[FG_MAX_TARGETS];
	size_t n = f->cfg.ntargets;
	for (size_t i = 0; i < n; i++) {
		struct fg_target *t = &f->targets[i];
		cand[i].eligible = target_eligible(f, t, now) &&
				   atomic_load_explicit(&t->seq, memory_order_acquire) != 0;
		cand[i].active = atomic_load_explicit(&t->active, memory_order_relaxed);
		cand[i].key = t->key;
	}
	uint64_t rr = 0;
	if (f->cfg.balance == FG_BAL_ROUND_ROBIN || f->cfg.balance == FG_BAL_LEAST_CONN)
		rr = atomic_fetch_add_explicit(&f->rr, 1, memory_order_relaxed);
	uint32_t h = f->cfg.balance == FG_BAL_IP_HASH ? fg_addr_ip_hash(client) : 0;
	return fg_balance_pick(f->cfg.balance, cand, n, skip, rr, h);
}

/* Readers copy under the seqlock: the control thread may be publishing a
 * new resolution at the same moment. seq 0 = never resolved; odd = write
 * in progress. */
bool fg_target_addr(struct fg_target *t, unsigned port_idx, struct sockaddr_storage *out)
{
	uint32_t s1, s2, n;
	do {
		s1 = atomic_load_explicit(&t->seq, memory_order_acquire);
		if (s1 == 0)
			return false;
		if (s1 & 1)
			continue;
		n = t->naddrs;
		if (n == 0)
			return false;
		/* the first address: IPv4 ones are sorted first, since a
		 * service that answers on one family only usually does v4 */
		memcpy(out, &t->addrs[0], sizeof(*out));
		atomic_thread_fence(memory_order_acquire);
		s2 = atomic_load_explicit(&t->seq, memory_order_relaxed);
	} while ((s1 & 1) || s1 != s2);
	uint16_t port = t->ep.port_lo;
	if (t->ep.port_hi != t->ep.port_lo)
		port = (uint16_t)(t->ep.port_lo + port_idx);
	fg_addr_set_port((struct sockaddr *)out, port);
	return true;
}

void fg_target_failed(struct fg_fwd *f, struct fg_target *t, int64_t now)
{
	fg_stats_add(&t->stats->errors, 1);
	uint32_t fails = atomic_fetch_add(&t->fails, 1) + 1;
	uint32_t fall = f->cfg.health.enabled ? f->cfg.health.fall : 1;
	if (fails >= fall && atomic_exchange(&t->up, false))
		fg_warn("forward %s: target %s:%u is down", f->cfg.name, t->ep.host, t->ep.port_lo);
	atomic_store(&t->retry_at, now + FG_PASSIVE_RETRY_NS);
}

void fg_target_succeeded(struct fg_fwd *f, struct fg_target *t)
{
	atomic_store_explicit(&t->fails, 0, memory_order_relaxed);
	if (!f->cfg.health.enabled && !atomic_load_explicit(&t->up, memory_order_relaxed) &&
	    !atomic_exchange(&t->up, true))
		fg_info("forward %s: target %s:%u is up again", f->cfg.name, t->ep.host,
			t->ep.port_lo);
}

static void publish_addrs(struct fg_target *t, const struct sockaddr_storage *a, uint32_t n)
{
	uint32_t s = atomic_load_explicit(&t->seq, memory_order_relaxed);
	atomic_store_explicit(&t->seq, s + 1, memory_order_relaxed); /* odd: writing */
	atomic_thread_fence(memory_order_release);
	memcpy(t->addrs, a, n * sizeof(*a));
	t->naddrs = n;
	atomic_store_explicit(&t->seq, s + 2 == 0 ? 2 : s + 2, memory_order_release);
}

/* ---- active health checks (control thread) -------------------------- */

static void hc_schedule(struct fg_engine *e, struct fg_target *t);

static void hc_result(struct fg_engine *e, struct fg_target *t, bool ok)
{
	struct fg_fwd *f = t->fwd;
	if (t->hc_fd >= 0) {
		fg_io_stop(e->ctl, &t->hc_io);
		close(t->hc_fd);
		t->hc_fd = -1;
	}
	fg_timer_stop(e->ctl, &t->hc_timeout);
	if (ok) {
		t->hc_bad = 0;
		if (++t->hc_ok >= f->cfg.health.rise && !atomic_load(&t->up)) {
			atomic_store(&t->fails, 0);
			atomic_store(&t->up, true);
			fg_info("forward %s: target %s:%u passed its health check, up", f->cfg.name,
				t->ep.host, t->ep.port_lo);
		}
	} else {
		t->hc_ok = 0;
		if (++t->hc_bad >= f->cfg.health.fall && atomic_exchange(&t->up, false))
			fg_warn("forward %s: target %s:%u failed its health check, down",
				f->cfg.name, t->ep.host, t->ep.port_lo);
	}
	hc_schedule(e, t);
}

static void hc_io_cb(struct fg_loop *loop, struct fg_io *io, uint32_t events)
{
	FG_UNUSED(loop);
	FG_UNUSED(events);
	struct fg_target *t = io->data;
	int err = 0;
	socklen_t el = sizeof(err);
	getsockopt(io->fd, SOL_SOCKET, SO_ERROR, &err, &el);
	hc_result(t->fwd->engine, t, err == 0);
}

static void hc_timeout_cb(struct fg_loop *loop, struct fg_timer *tm)
{
	FG_UNUSED(loop);
	struct fg_target *t = tm->data;
	hc_result(t->fwd->engine, t, false);
}

static void hc_start_cb(struct fg_loop *loop, struct fg_timer *tm)
{
	struct fg_target *t = tm->data;
	struct fg_fwd *f = t->fwd;
	struct sockaddr_storage sa;
	if (!fg_target_addr(t, 0, &sa)) {
		hc_schedule(f->engine, t);
		return;
	}
	int fd = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		hc_schedule(f->engine, t);
		return;
	}
	if (connect(fd, (struct sockaddr *)&sa, fg_addr_len((struct sockaddr *)&sa)) < 0 &&
	    errno != EINPROGRESS) {
		close(fd);
		hc_result(f->engine, t, false);
		return;
	}
	t->hc_fd = fd;
	if (fg_io_start(loop, &t->hc_io, fd, EPOLLOUT, hc_io_cb, t) < 0) {
		close(fd);
		t->hc_fd = -1;
		hc_schedule(f->engine, t);
		return;
	}
	fg_timer_start(loop, &t->hc_timeout, f->cfg.health.timeout_ns);
}

static void hc_schedule(struct fg_engine *e, struct fg_target *t)
{
	if (t->fwd->ctl_dead)
		return;
	fg_timer_start(e->ctl, &t->hc_timer, t->fwd->cfg.health.interval_ns);
}

/* ---- names (control thread) ------------------------------------------ */

/* The shared name slot (net/resolver.h) keeps the name fresh; the forward
 * publishes each good answer to its workers through the seqlock. */
static void target_name_cb(struct fg_name *n, const char *err, bool changed, int64_t next_ns,
			   void *arg)
{
	FG_UNUSED(changed);
	struct fg_target *t = arg;
	struct fg_fwd *f = t->fwd;
	if (err) {
		/* the slot keeps the last good addresses, and so do we */
		fg_log_rl(FG_LOG_WARN,
			  "forward %s: cannot resolve %s: %s (keeping %u old address(es))",
			  f->cfg.name, t->ep.host, err, t->naddrs);
		return;
	}
	struct sockaddr_storage a[FG_MAX_ADDRS];
	uint32_t na = (uint32_t)FG_MIN(fg_name_addrs(n, a, FG_MAX_ADDRS), FG_MAX_ADDRS);
	publish_addrs(t, a, na);
	char first[FG_ADDRSTR_MAX];
	fg_addr_format((struct sockaddr *)&a[0], first, sizeof(first));
	fg_dbg("forward %s: %s resolved to %u address(es), first %s, next in %llds", f->cfg.name,
	       t->ep.host, na, first, (long long)(next_ns / FG_NS_PER_SEC));
}

/* ---- start/stop per forward (control thread) ------------------------ */

void fg_targets_start(struct fg_engine *e, struct fg_fwd *f)
{
	for (size_t i = 0; i < f->cfg.ntargets; i++) {
		struct fg_target *t = &f->targets[i];
		if (!t->ep.is_ip && !t->name) {
			t->name = fg_name_new(e->resolver, t->ep.host, target_name_cb, t);
			if (t->name)
				fg_name_start(t->name);
			else
				fg_err("forward %s: out of memory resolving %s", f->cfg.name,
				       t->ep.host);
		}
		if (f->cfg.health.enabled)
			fg_timer_start(e->ctl, &t->hc_timer, 0);
	}
}

void fg_targets_stop(struct fg_engine *e, struct fg_fwd *f)
{
	f->ctl_dead = true;
	for (size_t i = 0; i < f->cfg.ntargets; i++) {
		struct fg_target *t = &f->targets[i];
		fg_timer_stop(e->ctl, &t->hc_timer);
		fg_timer_stop(e->ctl, &t->hc_timeout);
		fg_name_free(t->name); /* no callback after this */
		t->name = NULL;
		if (t->hc_fd >= 0) {
			fg_io_stop(e->ctl, &t->hc_io);
			close(t->hc_fd);
			t->hc_fd = -1;
		}
	}
}

void fg_target_init(struct fg_fwd *f, struct fg_target *t, const struct fg_endpoint *ep)
{
	memset(t, 0, sizeof(*t));
	t->ep = *ep;
	t->fwd = f;
	t->hc_fd = -1;
	fg_io_init(&t->hc_io);
	atomic_store(&t->up, true);
	char label[FG_HOST_MAX + 16];
	snprintf(label, sizeof(label), "%s:%u", ep->host, ep->port_lo);
	uint32_t h = 2166136261u;
	for (const char *p = label; *p; p++)
		h = (h ^ (uint8_t)*p) * 16777619u;
	t->key = h;
	fg_timer_init(&t->hc_timer, hc_start_cb, t);
	fg_timer_init(&t->hc_timeout, hc_timeout_cb, t);
	/* IP literals are usable before any worker sees the forward */
	if (ep->is_ip)
		publish_addrs(t, &ep->ip, 1);
}
