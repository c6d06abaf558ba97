/* Streams: one client connection's way through this node. A stream has
 * two endpoints (a socket, a mux stream, or a link of its own) and a
 * bounded queue per direction; producers stop when a queue is full, and
 * a mux producer's credit goes back only when its bytes are written out. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/util.h"
#include "net/addr.h"
#include "tunnel/internal.h"

/* ---- queues ------------------------------------------------------------ */

/* Room at the tail of q (a new chunk when the tail is full): returns the
 * bytes free at *p, 0 when out of memory. */
size_t tq_room(struct tshard *e, struct tq *q, uint8_t **p)
{
	if (!q->tail || q->tail->len == TQ_CHUNK) {
		struct tq_chunk *c = fg_buf_get(&e->chunks);
		if (!c)
			return 0;
		c->next = NULL;
		c->off = c->len = 0;
		if (q->tail)
			q->tail->next = c;
		else
			q->head = c;
		q->tail = c;
	}
	*p = q->tail->data + q->tail->len;
	return TQ_CHUNK - q->tail->len;
}

void tq_commit(struct tq *q, size_t n)
{
	q->tail->len += (uint32_t)n;
	q->bytes += n;
}

static int tq_append(struct tshard *e, struct tq *q, const uint8_t *p, size_t n)
{
	while (n) {
		uint8_t *d;
		size_t r = tq_room(e, q, &d);
		if (!r)
			return -ENOMEM;
		size_t k = FG_MIN(r, n);
		memcpy(d, p, k);
		tq_commit(q, k);
		p += k;
		n -= k;
	}
	return 0;
}

void tq_drop(struct tshard *e, struct tq *q, size_t n)
{
	q->bytes -= n;
	while (n) {
		struct tq_chunk *c = q->head;
		size_t k = FG_MIN(n, (size_t)(c->len - c->off));
		c->off += (uint32_t)k;
		n -= k;
		if (c->off == c->len) {
			q->head = c->next;
			if (!q->head)
				q->tail = NULL;
			fg_buf_put(&e->chunks, c);
		}
	}
}

size_t tq_take(struct tshard *e, struct tq *q, uint8_t *out, size_t max)
{
	size_t n = 0;
	for (struct tq_chunk *c = q->head; c && n < max; c = c->next) {
		size_t k = FG_MIN(max - n, (size_t)(c->len - c->off));
		memcpy(out + n, c->data + c->off, k);
		n += k;
	}
	tq_drop(e, q, n);
	return n;
}

void tq_clear(struct tshard *e, struct tq *q)
{
	while (q->head) {
		struct tq_chunk *c = q->head;
		q->head = c->next;
		fg_buf_put(&e->chunks, c);
	}
	q->tail = NULL;
	q->bytes = 0;
}

/* ---- streams ----------------------------------------------------------- */

static void ts_timer_cb(struct fg_loop *loop, struct fg_timer *tm);
static void ts_throttle_cb(struct fg_loop *loop, struct fg_timer *tm);
static void ts_idle_cb(struct fg_loop *loop, struct fg_timer *tm);

struct tstream *ts_new(struct tun *t)
{
	struct tstream *ts = fg_slab_alloc(&t->e->streams);
	if (!ts)
		return NULL;
	ts->tun = t;
	for (int i = 0; i < 2; i++) {
		ts->ep[i].side = (uint8_t)i;
		ts->ep[i].ts = ts;
		ts->ep[i].fd = -1;
		fg_io_init(&ts->ep[i].io);
	}
	fg_timer_init(&ts->timer, ts_timer_cb, ts);
	fg_timer_init(&ts->throttle, ts_throttle_cb, ts);
	fg_timer_init(&ts->idle, ts_idle_cb, ts);
	ts->last_ns = fg_loop_now(t->e->loop);
	fg_timer_start(t->e->loop, &ts->idle, t->cfg.idle_timeout_ns);
	if (t->cfg.role == FG_TUNNEL_ENTRY) {
		const struct fg_tunnel_cfg *c = &t->cfg;
		fg_bucket_init(&ts->own_up, c->rate_up_conn,
			       c->burst ? c->burst : fg_bucket_default_burst(c->rate_up_conn),
			       ts->last_ns);
		fg_bucket_init(&ts->own_down, c->rate_down_conn,
			       c->burst ? c->burst : fg_bucket_default_burst(c->rate_down_conn),
			       ts->last_ns);
	}
	ts->next_s = t->streams;
	if (t->streams)
		t->streams->prev_s = ts;
	t->streams = ts;
	return ts;
}

/* A stream counts once its first bytes (the open header) arrived: an idle
 * pooled link or a probe that sends nothing is not a connection. */
static void ts_count(struct tstream *ts)
{
	if (ts->counted)
		return;
	ts->counted = true;
	ts->tun->stats->c.conns_total++;
	ts->tun->stats->c.conns_active++;
}

void ts_free(struct tstream *ts)
{
	fg_slab_free(&ts->tun->e->streams, ts);
}

static void waitq_remove(struct tstream *ts)
{
	struct tun *t = ts->tun;
	if (!ts->waiting)
		return;
	if (ts->wprev_s)
		ts->wprev_s->wnext_s = ts->wnext_s;
	else
		t->waitq = ts->wnext_s;
	if (ts->wnext_s)
		ts->wnext_s->wprev_s = ts->wprev_s;
	else
		t->waitq_tail = ts->wprev_s;
	ts->wprev_s = ts->wnext_s = NULL;
	ts->waiting = false;
}

static void waitq_push(struct tstream *ts)
{
	struct tun *t = ts->tun;
	if (ts->waiting)
		return;
	ts->waiting = true;
	ts->wprev_s = t->waitq_tail;
	ts->wnext_s = NULL;
	if (t->waitq_tail)
		t->waitq_tail->wnext_s = ts;
	else
		t->waitq = ts;
	t->waitq_tail = ts;
	fg_timer_start(t->e->loop, &ts->timer, t->cfg.connect_timeout_ns);
}

static void ep_close(struct ep *ep, bool reset)
{
	switch (ep->kind) {
	case EP_SOCK:
		if (ep->fd >= 0) {
			if (reset) {
				struct linger lg = {1, 0};
				setsockopt(ep->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
			}
			fg_io_forget(ep->ts->tun->e->loop, &ep->io);
			close(ep->fd);
			ep->fd = -1;
		}
		break;
	case EP_MUX:
		if (ep->ms) {
			struct fg_mux_stream *ms = ep->ms;
			ep->ms = NULL;
			fg_mux_stream_set_user(ms, NULL);
			if (reset)
				fg_mux_stream_reset(ms);
			fg_mux_stream_release(ms);
			link_flush(ep->link);
		}
		break;
	case EP_LINK:
		if (ep->link) {
			struct link *l = ep->link;
			ep->link = NULL;
			l->single = NULL;
			link_close(l, reset ? "stream reset" : NULL);
		}
		break;
	case EP_NONE: break;
	}
	ep->kind = EP_NONE;
}

void ts_close(struct tstream *ts, bool reset)
{
	if (ts->closed)
		return;
	struct tun *t = ts->tun;
	struct tshard *e = t->e;
	fg_dbg("tunnel %s: stream closed%s (q %zu/%zu, eof %d/%d, shut %d/%d)", t->cfg.name,
	       reset ? " with reset" : "", ts->q[0].bytes, ts->q[1].bytes, ts->ep[0].eof_in,
	       ts->ep[1].eof_in, ts->ep[0].shut_out, ts->ep[1].shut_out);
	ts->closed = true;
	waitq_remove(ts);
	fg_timer_stop(e->loop, &ts->timer);
	fg_timer_stop(e->loop, &ts->throttle);
	fg_timer_stop(e->loop, &ts->idle);
	ep_close(&ts->ep[0], reset);
	ep_close(&ts->ep[1], reset);
	tq_clear(e, &ts->q[0]);
	tq_clear(e, &ts->q[1]);
	if (ts->prev_s)
		ts->prev_s->next_s = ts->next_s;
	else
		t->streams = ts->next_s;
	if (ts->next_s)
		ts->next_s->prev_s = ts->prev_s;
	ts->prev_s = ts->next_s = NULL;
	if (ts->counted)
		t->stats->c.conns_active--;
	if (ts->sh_counted) {
		ts->sh_counted = false;
		__atomic_fetch_sub(&t->sh->conns, 1, __ATOMIC_RELAXED);
	}
	if (ts->iprec) {
		struct iprec *r = ts->iprec;
		ts->iprec = NULL;
		pthread_mutex_lock(&t->sh->ipmu);
		if (--r->n == 0) {
			struct iprec **pp =
			    &t->sh->iptab[fg_addr_ip_hash((struct sockaddr *)&r->ip) % IPTAB_SIZE];
			while (*pp != r)
				pp = &(*pp)->next;
			*pp = r->next;
			fg_free(r);
		}
		pthread_mutex_unlock(&t->sh->ipmu);
	}
	ts->dead_next = e->dead_streams;
	e->dead_streams = ts;
	eng_schedule_reap(e);
}

void ts_check_later(struct tstream *ts)
{
	struct tshard *e = ts->tun->e;
	if (ts->check_pending || ts->closed)
		return;
	ts->check_pending = true;
	ts->check_next = e->check_list;
	e->check_list = ts;
	eng_schedule_reap(e);
}

void ts_check_done(struct tstream *ts)
{
	if (ts->closed)
		return;
	for (int d = 0; d < 2; d++)
		if (!(ts->ep[1 - d].eof_in && ts->q[d].bytes == 0 && ts->ep[d].shut_out))
			return;
	ts_close(ts, false);
}

/* ---- sockets (client at an entry, target at an exit) ------------------- */

#define THROTTLE_MIN_CHUNK 4096

static void ts_pump(struct tstream *ts);

/* The entry's client socket is where limits apply: reads are client ->
 * target (up), writes target -> client (down). */
static bool limited(const struct ep *ep, struct fg_bucket **agg, struct fg_bucket **own, bool up)
{
	struct tstream *ts = ep->ts;
	struct tun *t = ts->tun;
	if (t->cfg.role != FG_TUNNEL_ENTRY || ep->side != 0)
		return false;
	*agg = up ? &t->sh->agg_up : &t->sh->agg_down;
	*own = up ? &ts->own_up : &ts->own_down;
	return fg_bucket_limited(*agg) || fg_bucket_limited(*own);
}

/* Up to want bytes from both buckets; 0 means wait (throttle armed). */
static size_t grant(struct ep *ep, size_t want, bool up)
{
	struct fg_bucket *agg, *own;
	if (!limited(ep, &agg, &own, up))
		return want;
	struct fg_loop *loop = ep->ts->tun->e->loop;
	int64_t now = fg_loop_now(loop);
	size_t g = want;
	if (fg_bucket_limited(agg))
		g = fg_bucket_take(agg, g, now);
	if (g && fg_bucket_limited(own)) {
		size_t g2 = fg_bucket_take(own, g, now);
		if (fg_bucket_limited(agg))
			fg_bucket_refund(agg, g - g2);
		g = g2;
	}
	if (!g) {
		int64_t a =
		    fg_bucket_limited(agg) ? fg_bucket_wait_ns(agg, THROTTLE_MIN_CHUNK, now) : 0;
		int64_t b =
		    fg_bucket_limited(own) ? fg_bucket_wait_ns(own, THROTTLE_MIN_CHUNK, now) : 0;
		int64_t wt = FG_MAX(a, b);
		if (!fg_timer_armed(&ep->ts->throttle))
			fg_timer_start(loop, &ep->ts->throttle, wt > 0 ? wt : FG_NS_PER_MS);
	}
	return g;
}

static void refund(struct ep *ep, size_t n, bool up)
{
	struct fg_bucket *agg, *own;
	if (!n || !limited(ep, &agg, &own, up))
		return;
	if (fg_bucket_limited(agg))
		fg_bucket_refund(agg, n);
	if (fg_bucket_limited(own))
		fg_bucket_refund(own, n);
}

static void ts_throttle_cb(struct fg_loop *loop, struct fg_timer *tm)
{
	FG_UNUSED(loop);
	struct tstream *ts = tm->data;
	if (!ts->closed)
		ts_pump(ts);
}

static void ts_idle_cb(struct fg_loop *loop, struct fg_timer *tm)
{
	struct tstream *ts = tm->data;
	int64_t left = ts->last_ns + ts->tun->cfg.idle_timeout_ns - fg_loop_now(loop);
	if (left > 0) {
		fg_timer_start(loop, tm, left);
		return;
	}
	fg_dbg("tunnel %s: stream idle for %llds: closed", ts->tun->cfg.name,
	       (long long)(ts->tun->cfg.idle_timeout_ns / FG_NS_PER_SEC));
	ts_close(ts, true);
}

static void sock_write(struct ep *ep)
{
	struct tstream *ts = ep->ts;
	struct tq *q = &ts->q[ep->side];
	while (q->bytes && ep->can_write && !ts->closed) {
		struct iovec iov[16];
		int n = 0;
		size_t g = grant(ep, q->bytes, false), tot = 0;
		if (!g)
			break;
		for (struct tq_chunk *c = q->head; c && n < 16 && tot < g; c = c->next, n++) {
			iov[n].iov_base = c->data + c->off;
			iov[n].iov_len = FG_MIN((size_t)(c->len - c->off), g - tot);
			tot += iov[n].iov_len;
		}
		ssize_t w = writev(ep->fd, iov, n);
		refund(ep, w > 0 ? tot - (size_t)w : tot, false);
		if (w > 0) {
			tq_drop(ts->tun->e, q, (size_t)w);
			ts_consumed(ts, ep->side, (size_t)w);
		} else if (w < 0 && errno == EAGAIN) {
			ep->can_write = false;
		} else if (w < 0 && errno == EINTR) {
			continue;
		} else {
			ts_close(ts, true);
			return;
		}
	}
	if (!ts->closed && !q->bytes && ts->ep[1 - ep->side].eof_in && !ep->shut_out) {
		shutdown(ep->fd, SHUT_WR);
		ep->shut_out = true;
	}
}

static void sock_read(struct ep *ep)
{
	struct tstream *ts = ep->ts;
	struct tshard *e = ts->tun->e;
	int o = 1 - ep->side;
	struct tq *q = &ts->q[o];
	bool got = false;
	while (ep->can_read && !ep->eof_in && q->bytes < TQ_MAX && !ts->closed) {
		uint8_t *p;
		size_t room = tq_room(e, q, &p);
		if (!room) {
			ts_close(ts, true);
			return;
		}
		size_t g = grant(ep, room, true);
		if (!g)
			break;
		ssize_t n = read(ep->fd, p, g);
		refund(ep, n > 0 ? g - (size_t)n : g, true);
		if (n > 0) {
			tq_commit(q, (size_t)n);
			got = true;
		} else if (n == 0) {
			ep->eof_in = true;
		} else if (errno == EAGAIN) {
			ep->can_read = false;
		} else if (errno != EINTR) {
			ts_close(ts, true);
			return;
		}
	}
	if (got)
		ep_kick_out(&ts->ep[o]);
	if (ep->eof_in && !ts->closed)
		ts_eof_in(ep);
}

/* Moves what the sockets of ts can move now. Re-entry (from a consumer's
 * callback) only asks for another round. */
static void ts_pump(struct tstream *ts)
{
	if (ts->pumping) {
		ts->again = true;
		return;
	}
	ts->pumping = true;
	do {
		ts->again = false;
		for (int s = 0; s < 2 && !ts->closed; s++) {
			struct ep *ep = &ts->ep[s];
			if (ep->kind != EP_SOCK || ep->connecting)
				continue;
			sock_write(ep);
			if (!ts->closed)
				sock_read(ep);
		}
	} while (ts->again && !ts->closed);
	ts->pumping = false;
	/* not now: this may run inside a mux pull, which must not see its
	 * stream released under it */
	ts_check_later(ts);
}

static void exit_connect(struct tstream *ts);

static void sock_cb(struct fg_loop *loop, struct fg_io *io, uint32_t events)
{
	FG_UNUSED(loop);
	struct ep *ep = io->data;
	struct tstream *ts = ep->ts;
	if (ep->connecting) {
		int err = 0;
		socklen_t len = sizeof(err);
		if (!(events & (FG_IO_WRITE | FG_IO_ERR | FG_IO_HUP)))
			return;
		getsockopt(ep->fd, SOL_SOCKET, SO_ERROR, &err, &len);
		if (err || (events & (FG_IO_ERR | FG_IO_HUP))) {
			char a[FG_ADDRSTR_MAX];
			fg_addr_format((struct sockaddr *)&ts->tun->taddr[ts->target_idx], a,
				       sizeof(a));
			fg_log_rl(FG_LOG_WARN, "tunnel %s: target %s: %s", ts->tun->cfg.name, a,
				  strerror(err ? err : ECONNREFUSED));
			ep_close(ep, false);
			ts->attempts++;
			exit_connect(ts);
			return;
		}
		ep->connecting = false;
		fg_timer_stop(ts->tun->e->loop, &ts->timer);
		ep->can_read = ep->can_write = true;
		ts_pump(ts);
		return;
	}
	if (events & (FG_IO_READ | FG_IO_HUP | FG_IO_ERR | FG_IO_RDHUP))
		ep->can_read = true;
	if (events & (FG_IO_WRITE | FG_IO_HUP | FG_IO_ERR))
		ep->can_write = true;
	ts_pump(ts);
}

void ep_sock_start(struct ep *ep, int fd, bool connecting)
{
	ep->kind = EP_SOCK;
	ep->fd = fd;
	ep->connecting = connecting;
	ep->can_read = ep->can_write = !connecting;
	if (fg_io_start(ep->ts->tun->e->loop, &ep->io, fd,
			FG_IO_READ | FG_IO_WRITE | FG_IO_RDHUP | FG_IO_EDGE, sock_cb, ep) < 0) {
		close(fd);
		ep->fd = -1;
		ep->kind = EP_NONE;
		ts_close(ep->ts, true);
	}
}

/* ---- moving bytes between endpoints ------------------------------------ */

/* Pumps the streams whose socket writes waited for the end of a link
 * read (one writev for all the frames a read brought, not one each). */
void eng_run_pumps(struct tshard *e)
{
	while (e->pump_list) {
		struct tstream *ts = e->pump_list;
		e->pump_list = ts->pump_next;
		ts->pump_pending = false;
		if (!ts->closed)
			ts_pump(ts);
	}
}

void ep_kick_out(struct ep *ep)
{
	switch (ep->kind) {
	case EP_SOCK:
		if (ep->connecting)
			break;
		if (ep->ts->tun->e->batching) {
			struct tstream *ts = ep->ts;
			struct tshard *e = ts->tun->e;
			if (!ts->pump_pending) {
				ts->pump_pending = true;
				ts->pump_next = e->pump_list;
				e->pump_list = ts;
			}
			break;
		}
		ts_pump(ep->ts);
		break;
	case EP_MUX:
		if (ep->ms) {
			fg_mux_stream_want_send(ep->ms);
			link_flush(ep->link);
		}
		break;
	case EP_LINK: link_flush(ep->link); break;
	case EP_NONE: break;
	}
}

void ts_consumed(struct tstream *ts, int d, size_t n)
{
	struct fg_tunnel_counters *c = &ts->tun->stats->c;
	ts->last_ns = fg_loop_now(ts->tun->e->loop);
	if (d == 1) {
		/* the open header is the tunnel's, not the client's */
		size_t skip = FG_MIN(n, (size_t)ts->up_skip);
		ts->up_skip = (uint8_t)(ts->up_skip - skip);
		c->bytes_up += n - skip;
	} else
		c->bytes_down += n;
	struct ep *prod = &ts->ep[1 - d];
	switch (prod->kind) {
	case EP_MUX:
		if (prod->ms) {
			fg_mux_stream_consumed(prod->ms, n);
			link_flush(prod->link);
		}
		break;
	case EP_SOCK:
		if (ts->q[d].bytes < TQ_MAX)
			ts_pump(ts);
		break;
	case EP_LINK:
		if (prod->link && prod->link->rd_paused && ts->q[d].bytes < TQ_MAX)
			link_resume(prod->link);
		break;
	case EP_NONE: break;
	}
	if (ts->q[d].bytes == 0)
		ts_check_later(ts);
}

void ts_eof_in(struct ep *ep)
{
	struct tstream *ts = ep->ts;
	struct ep *o = &ts->ep[1 - ep->side];
	ep->eof_in = true;
	switch (o->kind) {
	case EP_MUX:
		if (o->ms && !o->shut_out) {
			fg_mux_stream_shutdown(o->ms);
			o->shut_out = true;
			fg_mux_stream_want_send(o->ms);
			link_flush(o->link);
		}
		break;
	case EP_SOCK:
		if (!o->connecting)
			ts_pump(ts);
		break;
	case EP_LINK: link_flush(o->link); break;
	case EP_NONE: break;
	}
	ts_check_later(ts);
}

/* The exit connects to the target the open header asked for: only ever
 * one of its configured targets. */
static void exit_connect(struct tstream *ts)
{
	struct tun *t = ts->tun;
	const struct fg_tunnel_cfg *c = &t->cfg;
	/* whether every target was skipped for having no address yet: that
	 * is logged by the name's lookup (once per change), not per stream */
	bool only_unresolved = ts->attempts == 0;
	if (ts->attempts == 0)
		ts->target_base = c->target_balance == FG_TBAL_ROUND_ROBIN ? t->target_rr++ : 0;
	while (ts->attempts < c->ntargets) {
		size_t i = (ts->target_base + ts->attempts) % c->ntargets;
		const struct fg_endpoint *tg = &c->targets[i];
		unsigned size = (unsigned)tg->port_hi - tg->port_lo + 1;
		if (t->tnames && !t->tnames[i].resolved) {
			ts->attempts++;
			continue;
		}
		only_unresolved = false;
		if (size > 1 && ts->port_off >= size) {
			ts->attempts++;
			continue;
		}
		struct sockaddr_storage sa = t->taddr[i];
		fg_addr_set_port((struct sockaddr *)&sa,
				 (uint16_t)(tg->port_lo + (size > 1 ? ts->port_off : 0)));
		t->taddr[i] = sa; /* for the log line */
		int fd = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			ts->attempts++;
			continue;
		}
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (connect(fd, (struct sockaddr *)&sa, fg_addr_len((struct sockaddr *)&sa)) < 0 &&
		    errno != EINPROGRESS) {
			close(fd);
			ts->attempts++;
			continue;
		}
		ts->target_idx = i;
		ep_sock_start(&ts->ep[1], fd, true);
		if (!ts->closed)
			fg_timer_start(t->e->loop, &ts->timer, c->connect_timeout_ns);
		return;
	}
	if (!only_unresolved)
		fg_log_rl(FG_LOG_WARN, "tunnel %s: no target reachable for port offset %u", c->name,
			  ts->port_off);
	t->stats->c.refused++;
	ts_close(ts, true);
}

static void ts_timer_cb(struct fg_loop *loop, struct fg_timer *tm)
{
	FG_UNUSED(loop);
	struct tstream *ts = tm->data;
	if (ts->waiting) {
		fg_log_rl(FG_LOG_WARN,
			  "tunnel %s: no link to the next hop within the connect timeout",
			  ts->tun->cfg.name);
		ts->tun->stats->c.refused++;
		ts_close(ts, true);
	} else if (ts->ep[1].kind == EP_SOCK && ts->ep[1].connecting) {
		fg_log_rl(FG_LOG_WARN, "tunnel %s: target connect timed out", ts->tun->cfg.name);
		ep_close(&ts->ep[1], false);
		ts->attempts++;
		exit_connect(ts);
	}
}

void ts_input(struct tstream *ts, int side, const uint8_t *p, size_t n)
{
	struct tun *t = ts->tun;
	if (ts->closed)
		return;
	if (side == 0 && !ts->started) {
		ts_count(ts);
		if (t->cfg.role == FG_TUNNEL_EXIT) {
			size_t take = FG_MIN((size_t)(FG_TUNNEL_OPEN_LEN - ts->open_have), n);
			memcpy(ts->open_buf + ts->open_have, p, take);
			ts->open_have += (uint8_t)take;
			p += take;
			n -= take;
			if (ts->ep[0].kind == EP_MUX && ts->ep[0].ms)
				fg_mux_stream_consumed(ts->ep[0].ms, take);
			if (ts->open_have < FG_TUNNEL_OPEN_LEN)
				return;
			if (fg_tunnel_open_decode(ts->open_buf, FG_TUNNEL_OPEN_LEN, &ts->port_off) <
			    0) {
				fg_log_rl(FG_LOG_WARN, "tunnel %s: bad stream open header",
					  t->cfg.name);
				t->stats->c.refused++;
				ts_close(ts, true);
				return;
			}
			ts->started = true;
			if (ts->ep[0].kind == EP_LINK && ts->ep[0].link)
				link_used(ts->ep[0].link);
			exit_connect(ts);
		} else {
			ts->started = true;
			ts->up_skip = FG_TUNNEL_OPEN_LEN;
			if (ts->ep[0].kind == EP_LINK && ts->ep[0].link)
				link_used(ts->ep[0].link);
			ts_attach_next(ts);
		}
		if (ts->closed)
			return;
	}
	if (!n)
		return;
	int d = 1 - side;
	if (tq_append(t->e, &ts->q[d], p, n) < 0) {
		ts_close(ts, true);
		return;
	}
	ep_kick_out(&ts->ep[d]);
}

/* ---- the next hop ------------------------------------------------------ */

static struct link *pick_mux_link(struct lside *ls)
{
	struct link *best = NULL;
	size_t nup = 0;
	for (struct link *l = ls->links; l; l = l->next_l)
		if (l->state == LS_UP && l->mux && !l->goaway)
			nup++;
	if (!nup)
		return NULL;
	if (ls->cfg->balance == FG_TBAL_ROUND_ROBIN) {
		size_t k = ls->rr++ % nup;
		for (struct link *l = ls->links; l; l = l->next_l)
			if (l->state == LS_UP && l->mux && !l->goaway && k-- == 0)
				return l;
		return NULL;
	}
	/* failover: the first peer in the configured order that is up; for
	 * registered links (no peer), the oldest */
	for (struct link *l = ls->links; l; l = l->next_l) {
		if (!(l->state == LS_UP && l->mux && !l->goaway))
			continue;
		if (!best)
			best = l;
		else if (l->peer && best->peer && l->peer->idx < best->peer->idx)
			best = l;
		else if (!l->peer && l->up_since_ns < best->up_since_ns)
			best = l;
	}
	return best;
}

void ts_attach_next(struct tstream *ts)
{
	struct tun *t = ts->tun;
	struct lside *ls = &t->next;
	const struct fg_tunnel_link_cfg *cfg = ls->cfg;
	if (ts->closed || ts->ep[1].kind != EP_NONE)
		return;
	if (cfg->mux) {
		struct link *l = pick_mux_link(ls);
		struct fg_mux_stream *ms = NULL;
		if (l && fg_mux_stream_open(l->mux, &ms) == 0) {
			ts->ep[1].kind = EP_MUX;
			ts->ep[1].link = l;
			ts->ep[1].ms = ms;
			fg_mux_stream_set_user(ms, &ts->ep[1]);
			if (ts->ep[0].eof_in) {
				fg_mux_stream_shutdown(ms);
				ts->ep[1].shut_out = true;
			}
			fg_mux_stream_want_send(ms);
			link_flush(l);
			return;
		}
		waitq_push(ts);
		lside_ensure(ls);
		return;
	}
	if (!cfg->is_listen) {
		int64_t now = fg_loop_now(t->e->loop);
		if (ts->attempts >= ls->npeers) {
			t->stats->c.refused++;
			ts_close(ts, true);
			return;
		}
		size_t start = cfg->balance == FG_TBAL_ROUND_ROBIN ? ls->rr++ : 0;
		struct peer_slot *p = NULL;
		for (size_t k = 0; k < ls->npeers; k++) {
			struct peer_slot *c = &ls->peers[(start + ts->attempts + k) % ls->npeers];
			if (c->resolved && c->down_until_ns <= now) {
				p = c;
				break;
			}
		}
		/* all marked down: try anyway, in order (a peer whose name has
		 * no address yet cannot be tried) */
		for (size_t k = 0; !p && k < ls->npeers; k++) {
			struct peer_slot *c = &ls->peers[(start + ts->attempts + k) % ls->npeers];
			if (c->resolved)
				p = c;
		}
		if (!p) { /* logged by the name's lookup, once per change */
			t->stats->c.refused++;
			ts_close(ts, true);
			return;
		}
		ts->attempts++;
		if (!link_dial(ls, p, &ts->ep[1]))
			ts_close(ts, true);
		return;
	}
	for (struct link *l = ls->links; l; l = l->next_l) {
		if (l->state == LS_UP && l->idle && !l->single) {
			l->idle = false;
			l->single = &ts->ep[1];
			ts->ep[1].kind = EP_LINK;
			ts->ep[1].link = l;
			link_flush(l);
			return;
		}
	}
	waitq_push(ts);
}

void tun_drain_waitq(struct tun *t)
{
	size_t n = 0;
	for (struct tstream *ts = t->waitq; ts; ts = ts->wnext_s)
		n++;
	while (n-- && t->waitq) {
		struct tstream *ts = t->waitq;
		waitq_remove(ts);
		fg_timer_stop(t->e->loop, &ts->timer);
		ts_attach_next(ts);
		if (ts->waiting)
			break; /* nothing free: it went back to the queue */
	}
}

/* ---- entry: clients ----------------------------------------------------- */

/* Counts a new client of ip; NULL when it is at max_conns_per_ip (or out
 * of memory). The table is the tunnel's across shards: call with
 * t->sh->ipmu held. */
static struct iprec *ip_acquire_locked(struct tun *t, const struct sockaddr_storage *ip)
{
	struct iprec **head =
	    &t->sh->iptab[fg_addr_ip_hash((const struct sockaddr *)ip) % IPTAB_SIZE];
	struct iprec *r;
	for (r = *head; r; r = r->next)
		if (fg_addr_ip_equal((const struct sockaddr *)&r->ip, (const struct sockaddr *)ip))
			break;
	if (!r) {
		r = fg_calloc(1, sizeof(*r));
		if (!r)
			return NULL;
		r->ip = *ip;
		r->next = *head;
		*head = r;
	}
	if (r->n >= t->cfg.max_conns_per_ip)
		return NULL; /* r->n > 0 here: it stays in the table */
	r->n++;
	return r;
}

void entry_accept_cb(struct fg_loop *loop, struct fg_io *io, uint32_t events)
{
	FG_UNUSED(loop);
	FG_UNUSED(events);
	struct tun *t = io->data;
	size_t idx = (size_t)(io - t->cio);
	for (int i = 0; i < 64; i++) {
		struct sockaddr_storage peer;
		socklen_t plen = sizeof(peer);
		int fd =
		    accept4(io->fd, (struct sockaddr *)&peer, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		if (t->dying) {
			t->stats->c.refused++;
			close(fd);
			continue;
		}
		/* max_conns is the tunnel's, over every shard: take a place
		 * first, so two shards accepting at once cannot both get the
		 * last one */
		bool placed = false;
		if (t->cfg.max_conns) {
			if (__atomic_fetch_add(&t->sh->conns, 1, __ATOMIC_RELAXED) >=
			    t->cfg.max_conns) {
				__atomic_fetch_sub(&t->sh->conns, 1, __ATOMIC_RELAXED);
				t->stats->c.refused++;
				close(fd);
				continue;
			}
			placed = true;
		}
		struct iprec *ipr = NULL;
		if (t->sh->iptab) {
			fg_addr_unmap(&peer);
			pthread_mutex_lock(&t->sh->ipmu);
			ipr = ip_acquire_locked(t, &peer);
			pthread_mutex_unlock(&t->sh->ipmu);
			if (!ipr) {
				if (placed)
					__atomic_fetch_sub(&t->sh->conns, 1, __ATOMIC_RELAXED);
				t->stats->c.refused++;
				close(fd);
				continue;
			}
		}
		struct tstream *ts = ts_new(t);
		if (!ts) {
			if (ipr) {
				/* an empty record stays until the tunnel goes */
				pthread_mutex_lock(&t->sh->ipmu);
				ipr->n--;
				pthread_mutex_unlock(&t->sh->ipmu);
			}
			if (placed)
				__atomic_fetch_sub(&t->sh->conns, 1, __ATOMIC_RELAXED);
			close(fd);
			continue;
		}
		ts->iprec = ipr;
		ts->sh_counted = placed;
		ts_count(ts);
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		uint8_t hdr[FG_TUNNEL_OPEN_LEN];
		ts->port_off = (uint16_t)idx;
		fg_tunnel_open_encode(ts->port_off, hdr);
		ts->started = true;
		ts->up_skip = FG_TUNNEL_OPEN_LEN;
		if (tq_append(t->e, &ts->q[1], hdr, sizeof(hdr)) < 0) {
			close(fd);
			ts_close(ts, true);
			continue;
		}
		ep_sock_start(&ts->ep[0], fd, false);
		if (ts->closed)
			continue;
		ts_attach_next(ts);
		if (!ts->closed)
			ts_pump(ts);
	}
}
