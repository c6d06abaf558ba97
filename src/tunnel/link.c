/* Links: one connection between two nodes of a tunnel. Dial or accept,
 * then TLS (tls, wss), the WebSocket upgrade (ws, wss), the tunnel
 * handshake, then AEAD framing (aead) and either a mux session or the
 * bytes of exactly one stream. Every layer is fed from one read buffer and
 * writes into one bounded output buffer per link. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/rand.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/util.h"
#include "net/addr.h"
#include "net/ws_handshake.h"
#include "tunnel/internal.h"

#define BACKOFF_MIN (100 * FG_NS_PER_MS)
#define BACKOFF_MAX (10 * FG_NS_PER_SEC)
#define PEER_DOWN   (5 * FG_NS_PER_SEC)

static void link_timer_cb(struct fg_loop *loop, struct fg_timer *tm);
static void link_resume_cb(struct fg_loop *loop, struct fg_timer *tm);
static void link_io_cb(struct fg_loop *loop, struct fg_io *io, uint32_t events);
static void link_fail(struct link *l, const char *why);
static void link_payload(struct link *l, const uint8_t *p, size_t n);
static void start_hs(struct link *l);

static bool is_persistent(const struct link *l)
{
	return l->counted_have;
}

static const char *peer_text(const struct link *l, char *buf, size_t len)
{
	if (l->peer) {
		const struct fg_tunnel_peer *p = &l->ls->cfg->peers[l->peer->idx];
		snprintf(buf, len, "%s:%u", p->address.host, p->address.port_lo);
	} else {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fd = l->st ? l->st->fd : l->pending_fd;
		if (fd >= 0 && getpeername(fd, (struct sockaddr *)&ss, &sl) == 0)
			fg_addr_format((struct sockaddr *)&ss, buf, len);
		else
			snprintf(buf, len, "?");
	}
	return buf;
}

int key_lookup_cb(void *arg, uint32_t key_id, uint8_t *psk, size_t *psk_len)
{
	struct lside *ls = arg;
	/* any key the link accepts: during a rotation the new and the
	 * previous one */
	const struct fg_tunnel_key *k = fg_tunnel_link_key(ls->cfg, key_id);
	if (!k)
		return -ENOKEY;
	memcpy(psk, k->key, k->len);
	*psk_len = k->len;
	return 0;
}

static struct link *link_new(struct lside *ls, struct peer_slot *p, bool dialer)
{
	struct link *l = fg_calloc(1, sizeof(*l));
	if (!l)
		return NULL;
	const struct fg_tunnel_link_cfg *cfg = ls->cfg;
	l->tun = ls->tun;
	l->ls = ls;
	l->peer = p;
	l->dialer = dialer;
	l->pending_fd = -1;
	l->plain_cap = cfg->mux ? LINK_PLAIN : TQ_CHUNK;
	l->ws = cfg->transport == FG_TT_WS || cfg->transport == FG_TT_WSS;
	l->aead = cfg->transport == FG_TT_AEAD;
	/* buffers come from the engine's pools only while bytes wait in
	 * them: an idle link holds none */
	l->wpool = &ls->tun->e->wpool[cfg->mux ? 1 : 0];
	l->wcap = LINK_WBUF(l->plain_cap);
	fg_io_init(&l->io);
	fg_timer_init(&l->timer, link_timer_cb, l);
	fg_timer_init(&l->resume, link_resume_cb, l);
	l->next_l = ls->links;
	if (ls->links)
		ls->links->prev_l = l;
	ls->links = l;
	return l;
}

void link_free_deferred(struct link *l)
{
	if (l->wbuf)
		fg_buf_put(l->wpool, l->wbuf);
	fg_free(l->head);
	if (l->hd) {
		fg_hs_dialer_wipe(l->hd);
		fg_free(l->hd);
	}
	if (l->hl) {
		fg_hs_listener_wipe(l->hl);
		fg_free(l->hl);
	}
	if (l->aead && l->opener) {
		fg_aead_opener_deinit(l->opener);
		fg_free(l->opener);
		fg_aead_sealer_deinit(&l->sealer);
	}
	fg_free(l);
}

/* ---- output ------------------------------------------------------------ */

static size_t wbuf_room(struct link *l)
{
	if (!l->wbuf && !(l->wbuf = fg_buf_get(l->wpool)))
		return 0;
	return l->wcap - l->wlen;
}

/* Gives an empty output buffer back to the pool. */
static void wbuf_release(struct link *l)
{
	if (l->wbuf && l->woff >= l->wlen) {
		fg_buf_put(l->wpool, l->wbuf);
		l->wbuf = NULL;
		l->woff = l->wlen = 0;
	}
}

/* Appends one message of the link's own protocol (handshake, pong,
 * close) as wire bytes: framed for ws, as-is otherwise. */
static void wire_put(struct link *l, uint8_t op, const uint8_t *p, size_t n)
{
	if (l->ws) {
		uint8_t mask[4];
		uint64_t r = eng_rand(l->tun->e);
		memcpy(mask, &r, 4);
		if (wbuf_room(l) < n + FG_WSF_HDR_MAX)
			return;
		l->wlen += fg_wsf_header(l->wbuf + l->wlen, op, n, l->dialer ? mask : NULL);
		if (n)
			memcpy(l->wbuf + l->wlen, p, n);
		if (l->dialer)
			fg_wsf_mask(l->wbuf + l->wlen, n, mask, 0);
		l->wlen += n;
		return;
	}
	if (wbuf_room(l) < n)
		return;
	memcpy(l->wbuf + l->wlen, p, n);
	l->wlen += n;
}

/* Encodes n plaintext bytes of scratch into wire bytes. */
static int encode_plain(struct link *l, const uint8_t *scratch, size_t n)
{
	if (l->aead) {
		size_t room = wbuf_room(l);
		if (!room)
			return -ENOMEM;
		int w = fg_aead_seal(&l->sealer, scratch, n, l->wbuf + l->wlen, room);
		if (w < 0)
			return w;
		l->wlen += (size_t)w;
		return 0;
	}
	wire_put(l, FG_WSF_OP_BINARY, scratch, n);
	return 0;
}

/* Fills wbuf (empty) with the next plaintext: mux frames, or the single
 * stream's queued bytes. Returns the wire bytes added. */
static size_t refill(struct link *l)
{
	struct tshard *e = l->tun->e;
	bool raw = !l->aead && !l->ws;
	size_t n = 0;
	if (raw && !wbuf_room(l))
		return 0;
	/* framed transports stage plaintext in a pooled buffer, held only for
	 * this call (refills of different links may nest: each has its own) */
	uint8_t *dst = raw ? l->wbuf : fg_buf_get(&e->spool);
	if (!dst)
		return 0;
	if (l->mux) {
		n = fg_mux_output(l->mux, dst, l->plain_cap, fg_loop_now(e->loop));
	} else if (l->single) {
		struct ep *ep = l->single;
		struct tstream *ts = ep->ts;
		n = tq_take(e, &ts->q[ep->side], dst, l->plain_cap);
		if (n)
			ts_consumed(ts, ep->side, n);
		if (l->state == LS_DEAD) {
			if (!raw)
				fg_buf_put(&e->spool, dst);
			return 0;
		}
		if (!n && l->single && ts->ep[1 - ep->side].eof_in && !l->shut_done)
			l->shut_pending = true;
	}
	if (raw) {
		l->wlen = n;
		return n;
	}
	int rc = n && l->state == LS_UP ? encode_plain(l, dst, n) : 0;
	fg_buf_put(&e->spool, dst);
	if (rc < 0) {
		link_fail(l, "sealing failed");
		return 0;
	}
	return n ? l->wlen : 0;
}

/* Sends our end of the stream (mux off): close_notify, a ws close frame,
 * or a TCP FIN. Returns 0 when done, -EAGAIN, or -errno. */
static int send_shutdown(struct link *l)
{
	if (l->ws && !l->shut_done) {
		wire_put(l, FG_WSF_OP_CLOSE, NULL, 0);
		l->shut_done = true;
		return -EAGAIN; /* flush it first */
	}
	if (l->tls) {
		int rc = fg_tls_shutdown(l->tls);
		if (rc == -EAGAIN)
			return rc;
	} else {
		shutdown(l->st->fd, SHUT_WR);
	}
	l->shut_done = true;
	return 0;
}

/* A tcp or tls link carrying one stream moves its bytes straight between
 * the stream's queue and the socket (TLS encrypts from the queue), without
 * the staging copy the framed transports need. */
static bool zero_copy(const struct link *l)
{
	return l->state == LS_UP && !l->mux && !l->ws && !l->aead && l->single;
}

/* Writes the single stream's queue out. Returns 0, -EAGAIN, or -1 after
 * the link failed. */
static int zc_write(struct link *l)
{
	struct ep *ep = l->single;
	struct tstream *ts = ep->ts;
	int side = ep->side;
	struct tq *q = &ts->q[side];
	while (q->bytes && l->single && l->state == LS_UP) {
		struct tq_chunk *c = q->head;
		size_t n = c->len - c->off;
		ssize_t w = l->st->ops->write(l->st, c->data + c->off, n, q->bytes > n);
		if (w > 0) {
			tq_drop(l->tun->e, q, (size_t)w);
			ts_consumed(ts, side, (size_t)w);
		} else if (w == -EAGAIN) {
			return -EAGAIN;
		} else {
			l->busy = false;
			link_fail(l, "write failed");
			return -1;
		}
	}
	if (l->state != LS_UP)
		return -1;
	if (l->single && !q->bytes && ts->ep[1 - side].eof_in && !l->shut_done)
		l->shut_pending = true;
	return 0;
}

void link_flush(struct link *l)
{
	if (!l || l->state == LS_DEAD || !l->st)
		return;
	if (l->busy) {
		l->flush_pending = true;
		return;
	}
	l->busy = true;
	for (;;) {
		l->flush_pending = false;
		while (l->woff < l->wlen) {
			ssize_t w =
			    l->st->ops->write(l->st, l->wbuf + l->woff, l->wlen - l->woff, false);
			if (w > 0) {
				l->woff += (size_t)w;
			} else if (w == -EAGAIN) {
				goto out;
			} else {
				l->busy = false;
				link_fail(l, "write failed");
				return;
			}
		}
		l->woff = l->wlen = 0;
		if (l->hs_refused) {
			l->busy = false;
			link_close(l, "handshake refused");
			return;
		}
		if (l->state != LS_UP)
			break;
		if (!l->shut_pending && zero_copy(l)) {
			int rc = zc_write(l);
			if (rc == -1)
				return;
			if (rc == -EAGAIN)
				goto out;
			if (!l->shut_pending && !l->flush_pending)
				break;
			if (!l->shut_pending)
				continue;
		}
		if (l->shut_pending) {
			int rc = send_shutdown(l);
			if (rc == -EAGAIN && l->wlen)
				continue; /* the ws close frame */
			if (rc == -EAGAIN)
				goto out;
			l->shut_pending = false;
			if (l->single) {
				l->single->shut_out = true;
				ts_check_later(l->single->ts);
			}
			break;
		}
		if (!refill(l)) {
			if (l->state == LS_DEAD)
				return;
			if (l->shut_pending)
				continue;
			if (!l->flush_pending)
				break;
		}
		if (l->state == LS_DEAD)
			return;
	}
out:
	l->busy = false;
	wbuf_release(l);
}

/* ---- state changes ----------------------------------------------------- */

static void peer_retry_cb(struct fg_loop *loop, struct fg_timer *tm)
{
	FG_UNUSED(loop);
	struct peer_slot *p = tm->data;
	lside_ensure(p->ls);
}

static void peer_retry(struct peer_slot *p)
{
	struct tshard *e = p->ls->tun->e;
	if (fg_timer_armed(&p->retry))
		return;
	p->backoff_ns = p->backoff_ns ? FG_MIN(p->backoff_ns * 2, BACKOFF_MAX) : BACKOFF_MIN;
	/* jitter: between half and the full backoff, so nodes restarted
	 * together do not dial in lockstep */
	int64_t d = p->backoff_ns / 2 + (int64_t)(eng_rand(e) % (uint64_t)(p->backoff_ns / 2 + 1));
	fg_timer_init(&p->retry, peer_retry_cb, p);
	fg_timer_start(e->loop, &p->retry, d);
}

void link_close(struct link *l, const char *why)
{
	if (l->state == LS_DEAD)
		return;
	struct tun *t = l->tun;
	struct tshard *e = t->e;
	struct lside *ls = l->ls;
	char pt[FG_ADDRSTR_MAX + 8];
	bool was_up = l->state == LS_UP;
	if (why && is_persistent(l) && !t->dying)
		fg_log_rl(FG_LOG_WARN, "tunnel %s: %s link %s %s: %s", t->cfg.name,
			  ls->which ? "next" : "prev", l->dialer ? "to" : "from",
			  peer_text(l, pt, sizeof(pt)), why);
	l->state = LS_DEAD;
	fg_timer_stop(e->loop, &l->timer);
	fg_timer_stop(e->loop, &l->resume);
	if (l->tls_hs) {
		fg_tls_hs_cancel(l->tls_hs);
		l->tls_hs = NULL;
		l->pending_fd = -1;
	}
	if (fg_io_active(&l->io))
		fg_io_forget(e->loop, &l->io);
	if (l->st) {
		if (why && l->st->fd >= 0) {
			struct linger lg = {1, 0};
			setsockopt(l->st->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		}
		l->st->ops->close(l->st);
		l->st = NULL;
	} else if (l->pending_fd >= 0) {
		close(l->pending_fd);
	}
	l->pending_fd = -1;
	if (l->mux) {
		for (struct tstream *ts = t->streams, *nx; ts; ts = nx) {
			nx = ts->next_s;
			for (int s = 0; s < 2; s++) {
				struct ep *ep = &ts->ep[s];
				if (ep->kind == EP_MUX && ep->link == l) {
					ep->ms = NULL;
					ep->kind = EP_NONE;
					ts_close(ts, true);
				}
			}
		}
		fg_mux_free(l->mux);
		l->mux = NULL;
	}
	if (l->single) {
		struct ep *ep = l->single;
		l->single = NULL;
		ep->link = NULL;
		ep->kind = EP_NONE;
		struct tstream *ts = ep->ts;
		/* a per-stream link that never came up: try another peer (or the
		 * same one once more with another key, see key_for_dial) */
		if (!was_up && l->key_unknown && !ts->key_retried && ts->attempts) {
			ts->key_retried = true;
			ts->attempts--;
		}
		if (!was_up && ep->side == 1 && !ts->closed && !ls->cfg->is_listen &&
		    ts->attempts < ls->npeers)
			ts_attach_next(ts);
		else
			ts_close(ts, why != NULL);
	}
	if (l->counted_up) {
		t->stats->c.links_up--;
		l->counted_up = false;
	}
	if (l->prev_l)
		l->prev_l->next_l = l->next_l;
	else
		ls->links = l->next_l;
	if (l->next_l)
		l->next_l->prev_l = l->prev_l;
	l->prev_l = l->next_l = NULL;
	l->dead_next = e->dead_links;
	e->dead_links = l;
	eng_schedule_reap(e);
	if (l->counted_have) {
		l->counted_have = false;
		l->peer->have--;
		if (!t->dying)
			peer_retry(l->peer);
	}
}

static void link_fail(struct link *l, const char *why)
{
	if (l->state == LS_DEAD)
		return;
	l->tun->stats->c.link_failures++;
	if (l->peer && l->state != LS_UP && !l->key_unknown)
		l->peer->down_until_ns = fg_loop_now(l->tun->e->loop) + PEER_DOWN;
	if (!is_persistent(l)) {
		/* a per-stream link: a failure to come up matters to an operator;
		 * an error on a running stream is the stream's business */
		char pt[FG_ADDRSTR_MAX + 8];
		if (l->state != LS_UP)
			fg_log_rl(FG_LOG_WARN, "tunnel %s: link %s %s: %s", l->tun->cfg.name,
				  l->dialer ? "to" : "from", peer_text(l, pt, sizeof(pt)), why);
		else
			fg_dbg("tunnel %s: link %s %s: %s", l->tun->cfg.name,
			       l->dialer ? "to" : "from", peer_text(l, pt, sizeof(pt)), why);
	}
	link_close(l, why);
}

static void link_up(struct link *l)
{
	struct tun *t = l->tun;
	struct tshard *e = t->e;
	struct lside *ls = l->ls;
	const struct fg_tunnel_link_cfg *cfg = ls->cfg;
	struct fg_aead_keys keys;
	int rc = 0;

	if (l->aead) {
		rc = l->dialer ? fg_hs_dialer_aead_keys(l->hd, &keys)
			       : fg_hs_listener_aead_keys(l->hl, &keys);
		l->opener = fg_malloc(sizeof(*l->opener));
		if (rc || !l->opener || fg_aead_sealer_init(&l->sealer, keys.tx) ||
		    fg_aead_opener_init(l->opener, keys.rx)) {
			OPENSSL_cleanse(&keys, sizeof(keys));
			fg_free(l->opener);
			l->opener = NULL;
			l->aead = false; /* nothing to deinit */
			link_fail(l, "cannot set up AEAD keys");
			return;
		}
		OPENSSL_cleanse(&keys, sizeof(keys));
	}
	if (l->hd) {
		fg_hs_dialer_wipe(l->hd);
		fg_free(l->hd);
		l->hd = NULL;
	}
	if (l->hl) {
		fg_hs_listener_wipe(l->hl);
		fg_free(l->hl);
		l->hl = NULL;
	}
	l->state = LS_UP;
	l->up_since_ns = fg_loop_now(e->loop);
	l->counted_up = true;
	t->stats->c.links_up++;
	link_note_rtt(l);
	if (l->peer)
		l->peer->backoff_ns = 0;
	fg_timer_start(e->loop, &l->timer, cfg->keepalive_ns / 2);
	if (is_persistent(l) || (cfg->mux && !l->dialer)) {
		char pt[FG_ADDRSTR_MAX + 8];
		fg_info("tunnel %s: %s link %s %s up (%s%s)", t->cfg.name,
			ls->which ? "next" : "prev", l->dialer ? "to" : "from",
			peer_text(l, pt, sizeof(pt)), fg_tunnel_transport_name(cfg->transport),
			cfg->mux ? ", mux" : "");
	}
	if (cfg->mux) {
		/* the peer proved the tunnel's key: the stream and churn limits
		 * guard against a busy tunnel, not a stranger */
		struct fg_mux_config mc = {.ping_interval_ns = cfg->keepalive_ns,
					   .max_streams = MUX_MAX_STREAMS,
					   .churn_per_sec = MUX_CHURN};
		l->mux = fg_mux_new(&mc, l->dialer, &link_mux_ops, l);
		if (!l->mux) {
			link_fail(l, "out of memory");
			return;
		}
		if (ls->which == 1)
			tun_drain_waitq(t);
	} else if (ls->which == 1) {
		if (!l->dialer) {
			l->idle = true; /* a registered reverse link, ready for a stream */
			tun_drain_waitq(t);
		}
	} else {
		struct tstream *ts = ts_new(t);
		if (!ts) {
			link_fail(l, "out of memory");
			return;
		}
		ts->ep[0].kind = EP_LINK;
		ts->ep[0].link = l;
		l->single = &ts->ep[0];
		l->idle = l->dialer;
	}
	link_flush(l);
}

void link_used(struct link *l)
{
	l->idle = false;
	if (l->counted_have) {
		l->counted_have = false;
		l->peer->have--;
		lside_ensure(l->ls);
	}
}

static void link_eof(struct link *l)
{
	l->rd_eof = true;
	if (l->single && l->state == LS_UP) {
		if (!l->single->eof_in)
			ts_eof_in(l->single);
		return;
	}
	link_fail(l, "closed by peer");
}

/* ---- the handshake ----------------------------------------------------- */

static void hs_consume(struct link *l, size_t n)
{
	memmove(l->hsbuf, l->hsbuf + n, l->hslen - n);
	l->hslen -= n;
}

static void hs_input(struct link *l, const uint8_t *p, size_t n)
{
	struct tun *t = l->tun;
	const struct fg_tunnel_link_cfg *cfg = l->ls->cfg;
	uint8_t out[FG_HS_AUTH_MAX];
	char pt[FG_ADDRSTR_MAX + 8];
	int rc;
	/* bytes past the handshake (the peer may send payload right after
	 * its last message) stay in p and go to the next layer */
	size_t take = FG_MIN(n, sizeof(l->hsbuf) - l->hslen);
	memcpy(l->hsbuf + l->hslen, p, take);
	l->hslen += take;
	p += take;
	n -= take;
	if (l->dialer) {
		if (l->hd->state == 0) {
			struct fg_hs_req req = {
			    .kind = l->ls->which == 1 ? FG_HS_KIND_DIAL : FG_HS_KIND_REGISTER,
			    .tunnel_id = t->cfg.tunnel_num,
			    .present = 1u << FG_HS_TLV_MUX,
			    .mux = cfg->mux ? 1 : 0,
			};
			size_t olen = 0;
			rc = fg_hs_dialer_on_hello(l->hd, l->hsbuf, l->hslen, &req,
						   (uint64_t)time(NULL), out, sizeof(out), &olen);
			if (rc == -EAGAIN)
				return;
			if (rc < 0) {
				link_fail(l, fg_hs_strerror(rc));
				return;
			}
			hs_consume(l, (size_t)rc);
			wire_put(l, FG_WSF_OP_BINARY, out, olen);
			link_flush(l);
			if (l->state == LS_DEAD)
				return;
			if (n) { /* room again: take the rest */
				hs_input(l, p, n);
				return;
			}
		}
		int refuse = 0;
		rc = fg_hs_dialer_on_answer(l->hd, l->hsbuf, l->hslen, NULL, 0, NULL, &refuse);
		if (rc == -EAGAIN) {
			if (n)
				link_fail(l, "handshake: too many bytes");
			return;
		}
		if (rc < 0) {
			char why[160];
			if (rc == -ECONNREFUSED)
				snprintf(why, sizeof(why), "handshake refused by the peer: %s",
					 fg_hs_refuse_str(refuse));
			else
				snprintf(why, sizeof(why), "handshake: %s", fg_hs_strerror(rc));
			if (rc == -ECONNREFUSED && refuse == FG_HS_R_UNKNOWN_KEY && l->peer &&
			    l->ls->cfg->nkeys > 1) {
				/* during a key rotation the peer may not have the new
				 * key yet: the next dial to it tries our next key */
				l->key_unknown = true;
				l->peer->key_alt = (l->peer->key_alt + 1) % l->ls->cfg->nkeys;
				fg_log_rl(FG_LOG_WARN,
					  "tunnel %s: a peer does not know key id %u; trying the "
					  "link's other keys",
					  l->tun->cfg.name, l->hd->key_id);
			}
			link_fail(l, why);
			return;
		}
		hs_consume(l, (size_t)rc);
		size_t left = l->hslen;
		uint8_t rest[sizeof(l->hsbuf)];
		memcpy(rest, l->hsbuf, left);
		l->hslen = 0;
		link_up(l);
		if (left && l->state == LS_UP)
			link_payload(l, rest, left);
		if (n && l->state == LS_UP)
			link_payload(l, p, n);
		return;
	}
	struct fg_hs_req req;
	rc = fg_hs_listener_on_auth(l->hl, l->hsbuf, l->hslen, (uint64_t)time(NULL), &req);
	if (rc == -EAGAIN) {
		if (n)
			link_fail(l, "handshake: too many bytes");
		return;
	}
	if (rc >= 0) {
		uint8_t want_kind = l->ls->which == 0 ? FG_HS_KIND_DIAL : FG_HS_KIND_REGISTER;
		uint8_t mux = FG_HS_HAS(&req, FG_HS_TLV_MUX) ? req.mux : 0;
		if (req.kind != want_kind || req.tunnel_id != t->cfg.tunnel_num ||
		    (mux != 0) != cfg->mux) {
			fg_dbg(
			    "tunnel %s: request kind %u tunnel %u mux %u, want kind %u tunnel %u "
			    "mux %d",
			    t->cfg.name, req.kind, req.tunnel_id, mux, want_kind, t->cfg.tunnel_num,
			    cfg->mux);
			rc = -EACCES;
		}
	}
	if (rc < 0) {
		t->stats->c.handshakes_refused++;
		fg_log_rl(FG_LOG_WARN, "tunnel %s: refused a link from %s: %s", t->cfg.name,
			  peer_text(l, pt, sizeof(pt)),
			  rc == -EACCES ? "request does not match this tunnel (kind, id or mux)"
					: fg_hs_strerror(rc));
		int k = fg_hs_build_refuse(out, sizeof(out), rc);
		if (k > 0)
			wire_put(l, FG_WSF_OP_BINARY, out, (size_t)k);
		l->hs_refused = true;
		l->hslen = 0;
		link_flush(l);
		return;
	}
	hs_consume(l, (size_t)rc);
	int k = fg_hs_listener_accept(l->hl, NULL, 0, out, sizeof(out));
	if (k < 0) {
		link_fail(l, "handshake: cannot answer");
		return;
	}
	wire_put(l, FG_WSF_OP_BINARY, out, (size_t)k);
	size_t left = l->hslen;
	uint8_t rest[sizeof(l->hsbuf)];
	memcpy(rest, l->hsbuf, left);
	l->hslen = 0;
	link_up(l);
	if (left && l->state == LS_UP)
		link_payload(l, rest, left);
	if (n && l->state == LS_UP)
		link_payload(l, p, n);
}

/* The key a dialer uses: the link's dial key, or after the peer refused
 * that as unknown (peer->key_alt), the link's other keys in turn. Only keys
 * the server put in this node's config are ever used. */
static const struct fg_tunnel_key *key_for_dial(const struct link *l)
{
	const struct fg_tunnel_link_cfg *cfg = l->ls->cfg;
	const struct fg_tunnel_key *dk = fg_tunnel_link_key(cfg, cfg->psk_id);
	unsigned alt = l->peer ? l->peer->key_alt : 0;
	if (!alt || cfg->nkeys < 2)
		return dk;
	for (size_t i = 0; i < cfg->nkeys; i++)
		if (cfg->keys[i].id != cfg->psk_id && --alt == 0)
			return &cfg->keys[i];
	return dk;
}

static void start_hs(struct link *l)
{
	uint8_t nonce[FG_HS_NONCE_LEN], exp[32], out[FG_HS_HELLO_LEN];
	size_t elen = 0;
	l->state = LS_HS;
	if (RAND_bytes(nonce, sizeof(nonce)) != 1) {
		link_fail(l, "no random bytes");
		return;
	}
	if (l->tls) {
		if (fg_tls_export(l->tls, FG_HS_TLS_EXPORTER_LABEL, NULL, 0, exp, sizeof(exp))) {
			link_fail(l, "TLS exporter failed");
			return;
		}
		elen = sizeof(exp);
	}
	if (l->dialer) {
		l->hd = fg_calloc(1, sizeof(*l->hd));
		const struct fg_tunnel_key *k = key_for_dial(l);
		if (!l->hd || !k ||
		    fg_hs_dialer_init(l->hd, k->id, k->key, k->len, nonce, elen ? exp : NULL,
				      elen)) {
			link_fail(l, "handshake setup failed");
			return;
		}
		return;
	}
	l->hl = fg_calloc(1, sizeof(*l->hl));
	int n = l->hl ? fg_hs_listener_init(l->hl, &l->ls->hcfg, nonce, elen ? exp : NULL, elen,
					    out, sizeof(out))
		      : -ENOMEM;
	if (n < 0) {
		link_fail(l, "handshake setup failed");
		return;
	}
	wire_put(l, FG_WSF_OP_BINARY, out, (size_t)n);
	link_flush(l);
}

/* ---- the WebSocket upgrade --------------------------------------------- */

static void ws_input(struct link *l, uint8_t *p, size_t n);

static void ws_upgrade_input(struct link *l, const uint8_t *p, size_t n)
{
	const struct fg_tunnel_link_cfg *cfg = l->ls->cfg;
	if (n > WS_HEAD_MAX - l->head_len) {
		link_fail(l, "WebSocket upgrade head too long");
		return;
	}
	memcpy(l->head + l->head_len, p, n);
	l->head_len += n;
	int rc;
	if (l->dialer) {
		char accept[FG_WS_ACCEPT_LEN + 1];
		int status = 0;
		fg_ws_accept_key(l->ws_key, accept);
		rc = fg_ws_parse_upgrade_response(l->head, l->head_len, accept, &status);
		if (rc == -EAGAIN)
			return;
		if (rc < 0) {
			char why[96];
			snprintf(why, sizeof(why), "WebSocket upgrade refused (HTTP %d)", status);
			link_fail(l, why);
			return;
		}
		fg_wsf_dec_init(&l->wsd, false);
	} else {
		struct fg_ws_request req;
		rc = fg_ws_parse_upgrade_request(l->head, l->head_len, &req);
		if (rc == -EAGAIN)
			return;
		int status = rc < 0 ? 400 : strcmp(req.path, cfg->ws_path) ? 404 : 101;
		if (status != 101) {
			int k = fg_ws_build_error_response((char *)l->wbuf + l->wlen, wbuf_room(l),
							   status, NULL);
			if (k > 0)
				l->wlen += (size_t)k;
			l->tun->stats->c.handshakes_refused++;
			l->hs_refused = true;
			link_flush(l);
			return;
		}
		char accept[FG_WS_ACCEPT_LEN + 1];
		fg_ws_accept_key(req.key, accept);
		int k =
		    fg_ws_build_upgrade_response((char *)l->wbuf + l->wlen, wbuf_room(l), accept);
		if (k < 0) {
			link_fail(l, "cannot answer the upgrade");
			return;
		}
		l->wlen += (size_t)k;
		fg_wsf_dec_init(&l->wsd, true);
	}
	size_t left = l->head_len - (size_t)rc;
	uint8_t rest[WS_HEAD_MAX];
	memcpy(rest, l->head + rc, left);
	fg_free(l->head);
	l->head = NULL;
	l->head_len = 0;
	start_hs(l);
	if (left && l->state == LS_HS)
		ws_input(l, rest, left);
}

static void ws_input(struct link *l, uint8_t *p, size_t n)
{
	while (n && l->state != LS_DEAD) {
		size_t used = 0, dlen = 0;
		uint8_t *data = NULL;
		int ev = fg_wsf_decode(&l->wsd, p, n, &used, &data, &dlen);
		p += used;
		n -= used;
		if (ev < 0) {
			link_fail(l, l->wsd.why ? l->wsd.why : "WebSocket protocol error");
			return;
		}
		switch (ev) {
		case FG_WSF_DATA: link_payload(l, data, dlen); break;
		case FG_WSF_PING:
			if (wbuf_room(l) > FG_WSF_CTRL_MAX + FG_WSF_HDR_MAX)
				wire_put(l, FG_WSF_OP_PONG, l->wsd.ctrl, l->wsd.ctrl_len);
			link_flush(l);
			break;
		case FG_WSF_CLOSE: link_eof(l); return;
		case FG_WSF_PONG: break;
		case FG_WSF_NEED: return;
		}
	}
}

/* ---- input ------------------------------------------------------------- */

static void link_plain(struct link *l, const uint8_t *p, size_t n)
{
	if (l->mux) {
		l->busy = true;
		int rc = fg_mux_input(l->mux, p, n, fg_loop_now(l->tun->e->loop));
		l->busy = false;
		if (l->state == LS_DEAD)
			return;
		if (rc < 0) {
			link_fail(l, fg_mux_error(l->mux) ? fg_mux_error(l->mux) : "mux error");
			return;
		}
		link_flush(l);
		return;
	}
	if (!l->single) {
		link_fail(l, "bytes on an idle link");
		return;
	}
	struct ep *ep = l->single;
	ts_input(ep->ts, ep->side, p, n);
	if (l->state != LS_DEAD && l->single &&
	    l->single->ts->q[1 - l->single->side].bytes >= TQ_MAX)
		l->rd_paused = true;
}

static void link_payload(struct link *l, const uint8_t *p, size_t n)
{
	if (l->state == LS_HS) {
		hs_input(l, p, n);
		return;
	}
	if (l->state != LS_UP)
		return;
	if (!l->aead) {
		link_plain(l, p, n);
		return;
	}
	struct tshard *e = l->tun->e;
	while (n && l->state == LS_UP) {
		size_t used = 0;
		int rc = fg_aead_open(l->opener, p, n, &used, e->plain, sizeof(e->plain));
		p += used;
		n -= used;
		if (rc > 0) {
			link_plain(l, e->plain, (size_t)rc);
		} else if (rc == -EAGAIN) {
			return;
		} else {
			link_fail(l, "AEAD frame does not verify (wrong key or tampered)");
			return;
		}
	}
}

static void link_input(struct link *l, uint8_t *p, size_t n)
{
	if (l->state == LS_WS)
		ws_upgrade_input(l, p, n);
	else if (l->ws)
		ws_input(l, p, n);
	else
		link_payload(l, p, n);
}

static void link_read_some(struct link *l)
{
	size_t cap = l->ls->cfg->mux ? LINK_RBUF : TQ_CHUNK + 64;
	/* a bounded number of reads per wake-up, so one busy link cannot
	 * starve the others; the rest after the loop's other events */
	for (int rounds = 0; l->state != LS_DEAD && !l->rd_paused && !l->rd_eof && l->st;
	     rounds++) {
		if (rounds == 16) {
			link_resume(l);
			return;
		}
		if (zero_copy(l) && l->single->ts->started) {
			/* straight into the stream's queue */
			struct tstream *ts = l->single->ts;
			int o = 1 - l->single->side;
			struct tq *q = &ts->q[o];
			uint8_t *p;
			size_t room;
			if (q->bytes >= TQ_MAX) {
				l->rd_paused = true;
				return;
			}
			if (!(room = tq_room(l->tun->e, q, &p))) {
				link_fail(l, "out of memory");
				return;
			}
			ssize_t n = l->st->ops->read(l->st, p, room);
			if (n > 0) {
				tq_commit(q, (size_t)n);
				ep_kick_out(&ts->ep[o]);
				continue;
			}
			if (n == 0) {
				link_eof(l);
			} else if (n != -EAGAIN) {
				const char *why =
				    l->st->ops->error ? l->st->ops->error(l->st) : NULL;
				link_fail(l, why && *why ? why : strerror((int)-n));
			}
			return;
		}
		/* one read buffer for every link: reads never nest (a paused
		 * link resumes from a timer) and every layer consumes or copies
		 * what it is given before returning */
		uint8_t *rbuf = l->tun->e->rbuf;
		ssize_t n = l->st->ops->read(l->st, rbuf, cap);
		if (n > 0) {
			link_input(l, rbuf, (size_t)n);
		} else if (n == 0) {
			link_eof(l);
			return;
		} else if (n == -EAGAIN) {
			return;
		} else {
			const char *why = l->st->ops->error ? l->st->ops->error(l->st) : NULL;
			link_fail(l, why && *why ? why : strerror((int)-n));
			return;
		}
	}
}

/* Reads what the link has; writes to the sockets of the streams it feeds
 * are batched until the reads are done. */
static void link_read(struct link *l)
{
	struct tshard *e = l->tun->e;
	e->batching++;
	link_read_some(l);
	if (--e->batching == 0)
		eng_run_pumps(e);
}

static void link_resume_cb(struct fg_loop *loop, struct fg_timer *tm)
{
	FG_UNUSED(loop);
	struct link *l = tm->data;
	if (l->state == LS_DEAD)
		return;
	link_read(l);
	link_flush(l);
}

/* Reading again later (from the loop), so that reads never nest inside
 * another link's callbacks. */
void link_resume(struct link *l)
{
	l->rd_paused = false;
	if (!fg_timer_armed(&l->resume))
		fg_timer_start(l->tun->e->loop, &l->resume, 0);
}

/* TCP (and TLS) is up: the upgrade or the handshake comes next. */
static void transport_ready(struct link *l)
{
	const struct fg_tunnel_link_cfg *cfg = l->ls->cfg;
	if (!l->ws) {
		start_hs(l);
		return;
	}
	l->state = LS_WS;
	l->head = fg_malloc(WS_HEAD_MAX);
	if (!l->head) {
		link_fail(l, "out of memory");
		return;
	}
	if (!l->dialer)
		return; /* wait for the request */
	uint8_t nonce[16];
	RAND_bytes(nonce, sizeof(nonce));
	fg_ws_key_encode(nonce, l->ws_key);
	char host[FG_HOST_MAX + 16];
	if (cfg->ws_host[0])
		snprintf(host, sizeof(host), "%s", cfg->ws_host);
	else
		peer_text(l, host, sizeof(host));
	if (!wbuf_room(l)) {
		link_fail(l, "out of memory");
		return;
	}
	int k = fg_ws_build_upgrade_request((char *)l->wbuf, l->wcap, host, cfg->ws_path, l->ws_key,
					    NULL);
	if (k < 0) {
		link_fail(l, "cannot build the upgrade request");
		return;
	}
	l->wlen = (size_t)k;
	link_flush(l);
}

static void link_io_cb(struct fg_loop *loop, struct fg_io *io, uint32_t events)
{
	FG_UNUSED(loop);
	struct link *l = io->data;
	if (l->state == LS_CONNECT) {
		int err = 0;
		socklen_t len = sizeof(err);
		if (!(events & (FG_IO_WRITE | FG_IO_ERR | FG_IO_HUP)))
			return;
		getsockopt(l->pending_fd, SOL_SOCKET, SO_ERROR, &err, &len);
		if (err || (events & FG_IO_ERR)) {
			link_fail(l, strerror(err ? err : ECONNREFUSED));
			return;
		}
		fg_stream_plain_init(&l->plain, l->pending_fd);
		l->st = &l->plain;
		l->pending_fd = -1;
		transport_ready(l);
		if (l->state == LS_DEAD)
			return;
	}
	link_read(l);
	link_flush(l);
}

static int start_io(struct link *l, int fd)
{
	return fg_io_start(l->tun->e->loop, &l->io, fd,
			   FG_IO_READ | FG_IO_WRITE | FG_IO_RDHUP | FG_IO_EDGE, link_io_cb, l);
}

static void tls_done_cb(struct fg_tls *t, int err, const char *why, void *data)
{
	struct link *l = data;
	l->tls_hs = NULL;
	l->pending_fd = -1;
	if (err) {
		char w[FG_TLS_ERR_LEN + 16];
		snprintf(w, sizeof(w), "TLS: %s", why ? why : strerror(-err));
		link_fail(l, w);
		return;
	}
	l->tls = t;
	if (fg_tls_resumed(t))
		l->tun->stats->c.tls_resumed++;
	/* link_read reads until -EAGAIN (or pauses and resumes by itself) */
	fg_tls_set_read_ahead(t, true);
	l->st = fg_tls_stream(t);
	if (start_io(l, l->st->fd) < 0) {
		link_fail(l, "cannot watch the socket");
		return;
	}
	transport_ready(l);
}

static void link_timer_cb(struct fg_loop *loop, struct fg_timer *tm)
{
	struct link *l = tm->data;
	const struct fg_tunnel_link_cfg *cfg = l->ls->cfg;
	if (l->state != LS_UP) {
		link_fail(l, l->dial_errno ? strerror(l->dial_errno) : "handshake timed out");
		return;
	}
	if (l->mux) {
		struct fg_mux_info mi;
		fg_mux_info(l->mux, &mi);
		if (mi.ping_unanswered_since_ns &&
		    fg_loop_now(loop) - mi.ping_unanswered_since_ns > 3 * cfg->keepalive_ns) {
			link_fail(l, "keepalive: no answer to PING");
			return;
		}
		link_flush(l);
	}
	fg_timer_start(loop, &l->timer, cfg->keepalive_ns / 2);
}

struct link *link_dial(struct lside *ls, struct peer_slot *p, struct ep *single)
{
	struct tun *t = ls->tun;
	struct tshard *e = t->e;
	const struct fg_tunnel_link_cfg *cfg = ls->cfg;
	struct link *l = link_new(ls, p, true);
	if (!l)
		return NULL;
	if (single) {
		l->single = single;
		single->kind = EP_LINK;
		single->link = l;
	}
	l->state = LS_CONNECT;
	fg_timer_start(e->loop, &l->timer, t->cfg.connect_timeout_ns);
	int fd = socket(p->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		/* reported from the timer, never from inside the caller */
		l->dial_errno = errno;
		fg_timer_start(e->loop, &l->timer, 0);
		return l;
	}
	set_link_sockopts(fd, cfg->keepalive_ns);
	if (connect(fd, (struct sockaddr *)&p->addr, fg_addr_len((struct sockaddr *)&p->addr)) <
		0 &&
	    errno != EINPROGRESS) {
		l->dial_errno = errno;
		close(fd);
		fg_timer_start(e->loop, &l->timer, 0);
		return l;
	}
	if (cfg->transport == FG_TT_TLS || cfg->transport == FG_TT_WSS) {
		const struct fg_tunnel_peer *pc = &cfg->peers[p->idx];
		l->state = LS_TLS;
		l->pending_fd = fd;
		l->tls_hs =
		    fg_tls_connect_start(e->loop, fd, e->tls_cli, pc->address.host, pc->fingerprint,
					 t->cfg.connect_timeout_ns, tls_done_cb, l);
		if (!l->tls_hs) {
			l->pending_fd = -1;
			l->dial_errno = ENOMEM;
			fg_timer_start(e->loop, &l->timer, 0);
		}
		return l;
	}
	l->pending_fd = fd;
	if (start_io(l, fd) < 0) {
		l->dial_errno = errno;
		fg_timer_start(e->loop, &l->timer, 0);
	}
	return l;
}

void link_accept_cb(struct fg_loop *loop, struct fg_io *io, uint32_t events)
{
	FG_UNUSED(events);
	struct lside *ls = io->data;
	struct tun *t = ls->tun;
	struct tshard *e = t->e;
	const struct fg_tunnel_link_cfg *cfg = ls->cfg;
	for (int i = 0; i < 64; i++) {
		int fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		if (t->dying) {
			close(fd);
			continue;
		}
		set_link_sockopts(fd, cfg->keepalive_ns);
		struct link *l = link_new(ls, NULL, false);
		if (!l) {
			close(fd);
			continue;
		}
		fg_timer_start(loop, &l->timer, t->cfg.connect_timeout_ns);
		if (cfg->transport == FG_TT_TLS || cfg->transport == FG_TT_WSS) {
			l->state = LS_TLS;
			l->pending_fd = fd;
			if (!e->tls_srv) {
				link_fail(l, "no TLS certificate on this node");
				continue;
			}
			l->tls_hs = fg_tls_accept_start(loop, fd, e->tls_srv,
							t->cfg.connect_timeout_ns, tls_done_cb, l);
			if (!l->tls_hs) {
				l->pending_fd = -1;
				link_fail(l, "out of memory");
			}
			continue;
		}
		fg_stream_plain_init(&l->plain, fd);
		l->st = &l->plain;
		if (start_io(l, fd) < 0) {
			link_fail(l, "cannot watch the socket");
			continue;
		}
		transport_ready(l);
	}
}

/* ---- persistent links -------------------------------------------------- */

void lside_ensure(struct lside *ls)
{
	const struct fg_tunnel_link_cfg *cfg = ls->cfg;
	if (!cfg || !cfg->present || cfg->is_listen || ls->tun->dying)
		return;
	unsigned want = cfg->mux ? 1 : (ls->which == 0 ? cfg->pool : 0);
	for (size_t i = 0; i < ls->npeers; i++) {
		struct peer_slot *p = &ls->peers[i];
		p->want = want;
		if (fg_timer_armed(&p->retry))
			continue;
		if (!p->resolved && p->have < p->want) {
			/* a name with no address yet: look again at the usual
			 * backoff (its first answer also dials at once) */
			peer_retry(p);
			continue;
		}
		while (p->have < p->want) {
			struct link *l = link_dial(ls, p, NULL);
			if (!l) {
				peer_retry(p);
				break;
			}
			l->counted_have = true;
			p->have++;
		}
	}
}

void lside_stop(struct lside *ls)
{
	struct tshard *e = ls->tun->e;
	for (size_t i = 0; i < ls->npeers; i++)
		if (fg_timer_armed(&ls->peers[i].retry))
			fg_timer_stop(e->loop, &ls->peers[i].retry);
	if (ls->lfd >= 0) {
		fg_io_stop(e->loop, &ls->lio);
		close(ls->lfd);
		ls->lfd = -1;
	}
	while (ls->links)
		link_close(ls->links, NULL);
}

/* ---- mux glue ---------------------------------------------------------- */

static void mux_event_cb(struct fg_mux *m, struct fg_mux_stream *s, enum fg_mux_event ev,
			 const uint8_t *data, size_t len, void *arg)
{
	FG_UNUSED(m);
	struct link *l = arg;
	struct ep *ep = s ? fg_mux_stream_user(s) : NULL;
	switch (ev) {
	case FG_MUX_EV_OPEN: {
		struct tstream *ts = NULL;
		if (l->ls->which == 0 && !l->tun->dying)
			ts = ts_new(l->tun);
		if (!ts) {
			fg_mux_stream_reset(s);
			fg_mux_stream_release(s);
			return;
		}
		ts->ep[0].kind = EP_MUX;
		ts->ep[0].link = l;
		ts->ep[0].ms = s;
		fg_mux_stream_set_user(s, &ts->ep[0]);
		return;
	}
	case FG_MUX_EV_DATA:
		if (ep)
			ts_input(ep->ts, ep->side, data, len);
		else
			fg_mux_stream_consumed(s, len);
		return;
	case FG_MUX_EV_FIN:
		if (ep && !ep->eof_in)
			ts_eof_in(ep);
		return;
	case FG_MUX_EV_RST:
		fg_mux_stream_set_user(s, NULL);
		fg_mux_stream_release(s);
		if (ep) {
			ep->ms = NULL;
			ep->kind = EP_NONE;
			ts_close(ep->ts, true);
		}
		return;
	case FG_MUX_EV_GOAWAY: l->goaway = true; return;
	case FG_MUX_EV_ACK:
	case FG_MUX_EV_WRITABLE: return;
	}
}

static size_t mux_pull_cb(struct fg_mux *m, struct fg_mux_stream *s, uint8_t *buf, size_t max,
			  void *arg)
{
	FG_UNUSED(m);
	struct link *l = arg;
	struct ep *ep = fg_mux_stream_user(s);
	if (!ep)
		return 0;
	struct tstream *ts = ep->ts;
	size_t n = tq_take(l->tun->e, &ts->q[ep->side], buf, max);
	if (n)
		ts_consumed(ts, ep->side, n);
	return n;
}

const struct fg_mux_ops link_mux_ops = {
    .event_cb = mux_event_cb,
    .pull_cb = mux_pull_cb,
};
