/* TCP data path: accept, connect to a target (retrying others), then move
 * bytes both ways with splice() through pooled pipes. Runs on a worker
 * loop only; a connection never leaves the worker that accepted it. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/loop.h"
#include "fwd/internal.h"
#include "net/addr.h"
#include "net/proxy_proto.h"

#define ACCEPT_BATCH	   64
#define THROTTLE_MIN_CHUNK 4096
#define CONN_EVENTS	   (EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET)

enum conn_state { ST_CONNECTING = 0, ST_OPEN, ST_CLOSED };

/* One direction of a connection: src socket -> pipe -> dst socket. */
struct dir {
	struct fg_pipe pipe;
	size_t inpipe;
	bool readable, writable, eof, shut;
	bool bulk;	       /* a read filled the copy buffer: splice from now on */
	bool rdhup;	       /* the source sent its FIN: read on until EOF */
	struct fg_bucket *agg; /* forward-wide limit, borrowed */
	struct fg_bucket own;  /* per-connection limit */
};

struct fg_tcp_conn {
	struct fg_worker *w;
	struct fg_fwd *fwd; /* counted reference */
	struct fg_target *target;
	struct fg_io cli, srv;
	struct dir up, down;   /* up: client -> target */
	struct fg_timer timer; /* connect timeout, then idle timeout */
	struct fg_timer throttle;
	int64_t last_active;
	uint64_t tried; /* targets already tried (bitmask) */
	uint16_t port_idx;
	uint8_t state;
	bool per_ip_held;
	uint8_t pp_off, pp_len;
	uint8_t pp[FG_PP_MAX_LEN];
	struct sockaddr_storage peer;
	struct fg_tcp_conn *prev, *next;
};

static void conn_close(struct fg_tcp_conn *c, bool reset);
static void conn_pump(struct fg_tcp_conn *c);
static int conn_connect(struct fg_tcp_conn *c);

static struct fg_stats_slot *slot_of(struct fg_tcp_conn *c)
{
	return &c->fwd->stats->slot[c->w->id];
}

/* ---- closing -------------------------------------------------------- */

static void conn_free_deferred(void *data)
{
	struct fg_tcp_conn *c = data;
	struct fg_worker *w = c->w;
	struct fg_fwd *f = c->fwd;
	fg_slab_free(&w->conn_slab, c);
	fg_fwd_unref(f);
}

static void set_rst(int fd)
{
	struct linger lg = {.l_onoff = 1, .l_linger = 0};
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
}

static void dir_release(struct fg_worker *w, struct dir *d)
{
	if (d->pipe.rfd < 0)
		return;
	if (d->inpipe == 0)
		fg_pipe_put(&w->pipes, &d->pipe);
	else
		fg_pipe_close(&d->pipe); /* bytes left in it: not reusable */
	d->inpipe = 0;
}

static void close_side(struct fg_loop *loop, struct fg_io *io, bool reset)
{
	int fd = io->fd;
	if (fd < 0)
		return;
	fg_io_forget(loop, io); /* close() below takes it out of epoll */
	if (reset)
		set_rst(fd);
	close(fd);
}

static void conn_close(struct fg_tcp_conn *c, bool reset)
{
	struct fg_worker *w = c->w;
	struct fg_fwd *f = c->fwd;
	if (c->state == ST_CLOSED)
		return;
	c->state = ST_CLOSED;
	close_side(w->loop, &c->cli, reset);
	close_side(w->loop, &c->srv, reset);
	dir_release(w, &c->up);
	dir_release(w, &c->down);
	fg_timer_stop(w->loop, &c->timer);
	fg_timer_stop(w->loop, &c->throttle);
	if (c->target)
		atomic_fetch_sub(&c->target->active, 1);
	atomic_fetch_sub(&f->active, 1);
	if (c->per_ip_held)
		fg_ip_release(f, (struct sockaddr *)&c->peer);
	atomic_store_explicit(&slot_of(c)->active,
			      atomic_load_explicit(&slot_of(c)->active, memory_order_relaxed) - 1,
			      memory_order_relaxed);
	if (c->prev)
		c->prev->next = c->next;
	else
		w->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	fg_loop_defer(w->loop, conn_free_deferred, c);
}

void fg_tcp_close_fwd(struct fg_worker *w, struct fg_fwd *f)
{
	struct fg_tcp_conn *c = w->conns, *next;
	for (; c; c = next) {
		next = c->next;
		if (!f || c->fwd == f)
			conn_close(c, false);
	}
}

/* ---- moving bytes --------------------------------------------------- */

/* Grants up to `want` bytes from the aggregate and the per-connection
 * buckets; 0 means "wait". */
static size_t dir_grant(struct dir *d, size_t want, int64_t now)
{
	size_t g = want;
	if (fg_bucket_limited(d->agg))
		g = fg_bucket_take(d->agg, g, now);
	if (g && fg_bucket_limited(&d->own)) {
		size_t g2 = fg_bucket_take(&d->own, g, now);
		if (fg_bucket_limited(d->agg))
			fg_bucket_refund(d->agg, g - g2);
		g = g2;
	}
	return g;
}

static void dir_refund(struct dir *d, size_t n)
{
	if (!n)
		return;
	if (fg_bucket_limited(d->agg))
		fg_bucket_refund(d->agg, n);
	if (fg_bucket_limited(&d->own))
		fg_bucket_refund(&d->own, n);
}

static int64_t dir_wait(struct dir *d, int64_t now)
{
	int64_t a =
	    fg_bucket_limited(d->agg) ? fg_bucket_wait_ns(d->agg, THROTTLE_MIN_CHUNK, now) : 0;
	int64_t b =
	    fg_bucket_limited(&d->own) ? fg_bucket_wait_ns(&d->own, THROTTLE_MIN_CHUNK, now) : 0;
	int64_t wt = FG_MAX(a, b);
	return wt > 0 ? wt : 1000000; /* lost a race with another conn: 1 ms */
}

static void throttle_cb(struct fg_loop *loop, struct fg_timer *t)
{
	FG_UNUSED(loop);
	conn_pump(t->data);
}

static void throttle_arm(struct fg_tcp_conn *c, int64_t wait)
{
	struct fg_loop *loop = c->w->loop;
	int64_t when = fg_loop_now(loop) + wait;
	if (fg_timer_armed(&c->throttle) && c->throttle.when_ns <= when)
		return;
	fg_timer_start(loop, &c->throttle, wait);
}

/* The first bytes of each burst go through recv/send and a per-worker
 * buffer: for a request or a reply of a few hundred bytes that is cheaper
 * than filling and draining a pipe. A read that fills the buffer marks the
 * direction bulk, and splice takes over. `grant` bytes were taken from the
 * buckets; unused ones are refunded here. What send() does not take goes
 * into the pipe (a plain write). Returns 1 on progress, 0 on none, -1 on a
 * socket error. */
static int dir_copy(struct fg_tcp_conn *c, struct dir *d, int src, int dst, size_t grant,
		    _Atomic uint64_t *counter, int64_t now)
{
	struct fg_worker *w = c->w;
	ssize_t n = recv(src, w->copy_buf, grant, MSG_DONTWAIT);
	if (n == 0) {
		dir_refund(d, grant);
		d->eof = true;
		return 0;
	}
	if (n < 0) {
		dir_refund(d, grant);
		if (errno != EAGAIN)
			return -1;
		d->readable = false;
		return 0;
	}
	dir_refund(d, grant - (size_t)n);
	if ((size_t)n == sizeof(w->copy_buf))
		d->bulk = true;
	else if ((size_t)n < grant && !d->rdhup)
		d->readable = false; /* short read: drained (edge-triggered) */
	c->last_active = now;
	ssize_t sent = send(dst, w->copy_buf, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);
	if (sent < 0) {
		if (errno != EAGAIN)
			return -1;
		sent = 0;
	}
	if (sent > 0)
		fg_stats_add(counter, (uint64_t)sent);
	if (sent < n) {
		d->writable = false;
		if (d->pipe.rfd < 0 && fg_pipe_get(&w->pipes, &d->pipe) < 0)
			return -1;
		/* an empty pipe holds far more than the copy buffer */
		ssize_t wr = write(d->pipe.wfd, w->copy_buf + sent, (size_t)(n - sent));
		if (wr != n - sent)
			return -1;
		d->inpipe += (size_t)wr;
	}
	return 1;
}

/* Reads from the source into the direction's pipe (taken from the pool
 * on demand). `grant` bytes were taken from the buckets; unused ones are
 * refunded here. Returns 1 on progress, 0 on none, -1 on an error. */
static int dir_splice_in(struct fg_tcp_conn *c, struct dir *d, int src, size_t grant, size_t psize,
			 int64_t now)
{
	struct fg_worker *w = c->w;
	if (d->pipe.rfd < 0 && fg_pipe_get(&w->pipes, &d->pipe) < 0) {
		dir_refund(d, grant);
		fg_log_rl(FG_LOG_WARN, "forward %s: cannot create pipe: %s", c->fwd->cfg.name,
			  strerror(errno));
		return -1;
	}
	ssize_t n = splice(src, NULL, d->pipe.wfd, NULL, grant, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
	if (n > 0) {
		dir_refund(d, grant - (size_t)n);
		d->inpipe += (size_t)n;
		c->last_active = now;
		/* A short read drained the socket, unless the pipe ran out of
		 * slots: it cannot have if it holds fewer bytes than it has
		 * slots. Skipping the read that would only say EAGAIN is safe
		 * with edge-triggered epoll, which reports every arrival after
		 * this point - but not a FIN that came with the data (rdhup):
		 * read on to EOF. */
		if ((size_t)n < grant && d->inpipe < psize / 4096 && !d->rdhup)
			d->readable = false;
		return 1;
	}
	dir_refund(d, grant);
	if (n == 0) {
		d->eof = true;
		return 0;
	}
	if (errno != EAGAIN)
		return -1;
	/* EAGAIN with bytes in the pipe may mean the pipe ran out of slots,
	 * not that the socket is empty: keep `readable` and retry after
	 * draining. */
	if (d->inpipe == 0)
		d->readable = false;
	return 0;
}

/* Moves what can be moved now in one direction. Returns 0, or -1 when the
 * connection must be reset (an error on either socket). */
static int dir_pump(struct fg_tcp_conn *c, struct dir *d, int src, int dst,
		    _Atomic uint64_t *counter, bool other_shut)
{
	struct fg_worker *w = c->w;
	int64_t now = fg_loop_now(w->loop);
	size_t psize = w->pipes.actual_size ? w->pipes.actual_size : 65536;
	for (;;) {
		bool progress = false;
		if (d->inpipe && d->writable) {
			ssize_t n = splice(d->pipe.rfd, NULL, dst, NULL, d->inpipe,
					   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
			if (n > 0) {
				d->inpipe -= (size_t)n;
				fg_stats_add(counter, (uint64_t)n);
				c->last_active = now;
				progress = true;
			} else if (n < 0 && errno == EAGAIN) {
				d->writable = false;
			} else {
				return -1;
			}
		}
		if (!d->eof && d->readable && d->inpipe < psize) {
			/* small first reads are copied (see dir_copy), bulk is spliced */
			bool copy = !d->bulk && d->inpipe == 0 && d->writable;
			size_t want = copy ? sizeof(w->copy_buf) : psize - d->inpipe;
			size_t grant = dir_grant(d, want, now);
			if (grant == 0) {
				throttle_arm(c, dir_wait(d, now));
				goto done;
			}
			int r = copy ? dir_copy(c, d, src, dst, grant, counter, now)
				     : dir_splice_in(c, d, src, grant, psize, now);
			if (r < 0)
				return -1;
			if (r > 0)
				progress = true;
		}
		if (!progress)
			break;
	}
done:
	if (d->eof && d->inpipe == 0 && !d->shut) {
		/* when the other way is already shut the connection closes
		 * next, and close() sends the FIN: one syscall less per
		 * connection */
		if (!other_shut)
			shutdown(dst, SHUT_WR);
		d->shut = true;
	}
	if (d->inpipe == 0)
		dir_release(w, d);
	return 0;
}

/* Sends what is left of the PROXY header. Returns 0 when done, 1 to wait
 * for writability, -1 on error. */
static int pp_flush(struct fg_tcp_conn *c)
{
	while (c->pp_off < c->pp_len) {
		ssize_t n = send(c->srv.fd, c->pp + c->pp_off, c->pp_len - c->pp_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			c->pp_off += (uint8_t)n;
		} else if (n < 0 && errno == EAGAIN) {
			c->up.writable = false;
			return 1;
		} else {
			return -1;
		}
	}
	return 0;
}

static void conn_pump(struct fg_tcp_conn *c)
{
	if (c->state != ST_OPEN)
		return;
	if (c->pp_off < c->pp_len) {
		int r = pp_flush(c);
		if (r < 0) {
			conn_close(c, true);
			return;
		}
		if (r > 0)
			goto down_only;
	}
	if (dir_pump(c, &c->up, c->cli.fd, c->srv.fd, &slot_of(c)->bytes_up, c->down.shut) < 0) {
		conn_close(c, true);
		return;
	}
down_only:
	if (dir_pump(c, &c->down, c->srv.fd, c->cli.fd, &slot_of(c)->bytes_down, c->up.shut) < 0) {
		conn_close(c, true);
		return;
	}
	if (c->up.shut && c->down.shut)
		conn_close(c, false);
}

/* ---- events --------------------------------------------------------- */

static void idle_cb(struct fg_loop *loop, struct fg_timer *t)
{
	struct fg_tcp_conn *c = t->data;
	int64_t idle = c->fwd->cfg.idle_timeout_ns;
	int64_t quiet = fg_loop_now(loop) - c->last_active;
	if (quiet >= idle) {
		fg_dbg("forward %s: closing idle connection", c->fwd->cfg.name);
		conn_close(c, false);
		return;
	}
	/* re-armed lazily: the data path only stores a timestamp */
	fg_timer_start(loop, t, idle - quiet);
}

static void conn_established(struct fg_tcp_conn *c)
{
	struct fg_loop *loop = c->w->loop;
	fg_target_succeeded(c->fwd, c->target);
	c->state = ST_OPEN;
	c->last_active = fg_loop_now(loop);
	fg_timer_stop(loop, &c->timer);
	c->timer.cb = idle_cb;
	fg_timer_start(loop, &c->timer, c->fwd->cfg.idle_timeout_ns);
	if (c->fwd->cfg.proxy_protocol != FG_PP_NONE) {
		struct sockaddr_storage local;
		socklen_t ll = sizeof(local);
		if (getsockname(c->cli.fd, (struct sockaddr *)&local, &ll) == 0) {
			int n =
			    fg_pp_encode(c->fwd->cfg.proxy_protocol, (struct sockaddr *)&c->peer,
					 (struct sockaddr *)&local, c->pp, sizeof(c->pp));
			if (n > 0) {
				c->pp_len = (uint8_t)n;
				c->pp_off = 0;
			}
		}
	}
	conn_pump(c);
}

/* A connect to t failed: count it against the target and log it. */
static void dial_failed(struct fg_fwd *f, struct fg_target *t, int err, int64_t now)
{
	fg_target_failed(f, t, now);
	fg_log_rl(FG_LOG_WARN, "forward %s: target %s:%u: %s", f->cfg.name, t->ep.host,
		  t->ep.port_lo, strerror(err));
}

static void connect_failed(struct fg_tcp_conn *c, int err)
{
	struct fg_worker *w = c->w;
	dial_failed(c->fwd, c->target, err, fg_loop_now(w->loop));
	close_side(w->loop, &c->srv, false);
	atomic_fetch_sub(&c->target->active, 1);
	c->target = NULL;
	if (conn_connect(c) < 0)
		conn_close(c, true);
}

static void connect_timeout_cb(struct fg_loop *loop, struct fg_timer *t)
{
	FG_UNUSED(loop);
	connect_failed(t->data, ETIMEDOUT);
}

/* Records what epoll said about one socket: `rd` is the direction that
 * reads from it, `wr` the one that writes to it. */
static void note_events(struct dir *rd, struct dir *wr, uint32_t events)
{
	if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		rd->readable = true;
	if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		rd->rdhup = true;
	if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
		wr->writable = true;
}

static void srv_cb(struct fg_loop *loop, struct fg_io *io, uint32_t events)
{
	FG_UNUSED(loop);
	struct fg_tcp_conn *c = io->data;
	if (c->state == ST_CONNECTING) {
		if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
			return;
		/* EPOLLOUT without EPOLLERR means connected: SO_ERROR is
		 * read only on failure, for the log */
		if (events & EPOLLERR) {
			int err = ECONNREFUSED;
			socklen_t el = sizeof(err);
			getsockopt(io->fd, SOL_SOCKET, SO_ERROR, &err, &el);
			connect_failed(c, err ? err : ECONNREFUSED);
			return;
		}
		note_events(&c->down, &c->up, events);
		conn_established(c);
		return;
	}
	note_events(&c->down, &c->up, events);
	conn_pump(c);
}

static void cli_cb(struct fg_loop *loop, struct fg_io *io, uint32_t events)
{
	FG_UNUSED(loop);
	struct fg_tcp_conn *c = io->data;
	note_events(&c->up, &c->down, events);
	conn_pump(c);
}

/* Dials the next eligible target. Returns 0 when a connect is under way,
 * -1 when no target is left (counted as refused: no_target). */
static int conn_connect(struct fg_tcp_conn *c)
{
	struct fg_worker *w = c->w;
	struct fg_fwd *f = c->fwd;
	int64_t now = fg_loop_now(w->loop);
	for (;;) {
		int idx = fg_target_pick(f, (struct sockaddr *)&c->peer, c->tried, now);
		if (idx < 0) {
			fg_stats_add(&slot_of(c)->refused[FG_REFUSE_NO_TARGET], 1);
			fg_log_rl(FG_LOG_WARN, "forward %s: no target available", f->cfg.name);
			return -1;
		}
		if (idx < 64)
			c->tried |= 1ull << idx;
		struct fg_target *t = &f->targets[idx];
		struct sockaddr_storage sa;
		if (!fg_target_addr(t, c->port_idx, &sa))
			continue; /* name not resolved yet */
		int fd = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			fg_log_rl(FG_LOG_ERROR, "forward %s: socket: %s", f->cfg.name,
				  strerror(errno));
			return -1;
		}
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (connect(fd, (struct sockaddr *)&sa, fg_addr_len((struct sockaddr *)&sa)) < 0 &&
		    errno != EINPROGRESS) {
			int e = errno;
			close(fd);
			dial_failed(f, t, e, now);
			continue;
		}
		if (fg_io_start(w->loop, &c->srv, fd, CONN_EVENTS, srv_cb, c) < 0) {
			close(fd);
			return -1;
		}
		c->target = t;
		atomic_fetch_add(&t->active, 1);
		c->timer.cb = connect_timeout_cb;
		fg_timer_start(w->loop, &c->timer, f->cfg.connect_timeout_ns);
		return 0;
	}
}

static void refuse(struct fg_worker *w, struct fg_fwd *f, int fd, enum fg_refuse_reason why)
{
	fg_stats_add(&f->stats->slot[w->id].refused[why], 1);
	close(fd);
}

static void accept_one(struct fg_worker *w, struct fg_listener *l, int fd,
		       const struct sockaddr_storage *peer)
{
	struct fg_fwd *f = l->fwd;
	uint32_t active = atomic_fetch_add(&f->active, 1);
	if (f->cfg.max_conns && active >= f->cfg.max_conns) {
		atomic_fetch_sub(&f->active, 1);
		refuse(w, f, fd, FG_REFUSE_MAX_CONNS);
		return;
	}
	bool per_ip = false;
	if (f->cfg.max_conns_per_ip) {
		if (!fg_ip_acquire(f, (const struct sockaddr *)peer)) {
			atomic_fetch_sub(&f->active, 1);
			refuse(w, f, fd, FG_REFUSE_PER_IP);
			return;
		}
		per_ip = true;
	}
	struct fg_tcp_conn *c = fg_slab_alloc(&w->conn_slab);
	if (!c) {
		if (per_ip)
			fg_ip_release(f, (const struct sockaddr *)peer);
		atomic_fetch_sub(&f->active, 1);
		close(fd);
		return;
	}
	int64_t now = fg_loop_now(w->loop);
	c->w = w;
	c->fwd = f;
	fg_fwd_ref(f);
	c->port_idx = l->port_idx;
	c->peer = *peer;
	c->per_ip_held = per_ip;
	c->state = ST_CONNECTING;
	fg_io_init(&c->cli);
	fg_io_init(&c->srv);
	c->up.pipe.rfd = c->up.pipe.wfd = -1;
	c->down.pipe.rfd = c->down.pipe.wfd = -1;
	c->up.agg = &f->up;
	c->down.agg = &f->down;
	fg_bucket_init(&c->up.own, f->cfg.rate_up_conn, f->cfg.burst, now);
	fg_bucket_init(&c->down.own, f->cfg.rate_down_conn, f->cfg.burst, now);
	c->down.writable = true; /* a fresh socket is writable */
	fg_timer_init(&c->timer, connect_timeout_cb, c);
	fg_timer_init(&c->throttle, throttle_cb, c);
	/* on the worker's list from here on, so conn_close can unlink it */
	c->next = w->conns;
	if (w->conns)
		w->conns->prev = c;
	w->conns = c;
	struct fg_stats_slot *s = slot_of(c);
	atomic_store_explicit(&s->active,
			      atomic_load_explicit(&s->active, memory_order_relaxed) + 1,
			      memory_order_relaxed);

	/* TCP_NODELAY comes from the listener: accepted sockets inherit it */
	if (fg_io_start(w->loop, &c->cli, fd, CONN_EVENTS, cli_cb, c) < 0) {
		close(fd);
		conn_close(c, false);
		return;
	}
	if (conn_connect(c) < 0) {
		conn_close(c, false);
		return;
	}
	fg_stats_add(&s->conns_total, 1);
}

static void listener_resume_cb(struct fg_loop *loop, struct fg_timer *t)
{
	struct fg_listener *l = t->data;
	fg_io_modify(loop, &l->io, EPOLLIN);
}

void fg_tcp_accept_cb(struct fg_loop *loop, struct fg_io *io, uint32_t events)
{
	FG_UNUSED(events);
	struct fg_listener *l = io->data;
	for (int i = 0; i < ACCEPT_BATCH; i++) {
		struct sockaddr_storage peer;
		socklen_t plen = sizeof(peer);
		int fd =
		    accept4(io->fd, (struct sockaddr *)&peer, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM) {
				/* out of descriptors: pause this listener for a
				 * moment instead of spinning on it */
				fg_log_rl(FG_LOG_ERROR, "forward %s: accept: %s (pausing 100 ms)",
					  l->fwd->cfg.name, strerror(errno));
				fg_io_modify(loop, &l->io, 0);
				fg_timer_start(loop, &l->pause, 100 * FG_NS_PER_MS);
			}
			return;
		}
		accept_one(l->w, l, fd, &peer);
	}
}

/* Accepts what is already queued on a listener that is about to close, so
 * a reload does not reset connections the kernel already completed. */
void fg_tcp_drain_listener(struct fg_worker *w, struct fg_listener *l)
{
	for (;;) {
		struct sockaddr_storage peer;
		socklen_t plen = sizeof(peer);
		int fd = accept4(l->io.fd, (struct sockaddr *)&peer, &plen,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		accept_one(w, l, fd, &peer);
	}
}

void fg_tcp_listener_timer_init(struct fg_listener *l)
{
	fg_timer_init(&l->pause, listener_resume_cb, l);
}

const size_t fg_tcp_conn_size = sizeof(struct fg_tcp_conn);
