#include "net/ws.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/random.h>
#include <unistd.h>

#include <wslay/wslay.h>

#include "core/alloc.h"
#include "core/log.h"
#include "core/loop.h"
#include "net/stream.h"
#include "net/tls.h"

struct fg_ws {
	struct fg_loop *loop;
	struct fg_io io;	     /* watches st->fd */
	struct fg_stream *st;	     /* &plain, or an owned TLS stream */
	struct fg_stream plain;	     /* the socket of a plain session */
	struct fg_timer ping_timer;  /* pings and the liveness check */
	struct fg_timer kick;	     /* 0-delay: work that must not run in the caller */
	struct fg_timer close_timer; /* waiting for the peer's close frame */
	wslay_event_context_ptr ctx; /* owned */
	struct fg_ws_cbs cbs;
	struct fg_ws_opts opts;
	void *data;	/* borrowed: the user's */
	uint8_t *early; /* owned: bytes read with the handshake head */
	size_t early_len, early_off;
	int64_t last_rx_ns, last_ping_ns;
	int io_err;		  /* errno of a failed read/write, 0 */
	const char *fail;	  /* set when the session must end with this error */
	char why[FG_TLS_ERR_LEN]; /* the stream's own account of io_err */
	bool is_client;
	bool eof;	  /* the peer closed its side of the TCP stream */
	bool local_close; /* fg_ws_close() was called */
	bool in_wslay;	  /* inside wslay_event_recv/send */
	bool dead;	  /* on_close happened (or fg_ws_free): fd closed */
	bool freed;
};

static void ws_progress(struct fg_ws *ws);

/* A read or write failed with errno e: keep the stream's own words for it
 * (a TLS alert says more than EPROTO), the first failure wins. */
static void stream_failed(struct fg_ws *ws, int e)
{
	if (ws->io_err)
		return;
	ws->io_err = e;
	const char *why = ws->st->ops->error(ws->st);
	if (why)
		snprintf(ws->why, sizeof(ws->why), "%s", why);
}

/* ---- wslay callbacks ------------------------------------------------- */

static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *user)
{
	struct fg_ws *ws = user;
	if (ws->dead) {
		wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
		return -1;
	}
	if (ws->early_off < ws->early_len) {
		size_t n = ws->early_len - ws->early_off;
		if (n > len)
			n = len;
		memcpy(buf, ws->early + ws->early_off, n);
		ws->early_off += n;
		if (ws->early_off == ws->early_len) {
			fg_free(ws->early);
			ws->early = NULL;
			ws->early_len = ws->early_off = 0;
		}
		ws->last_rx_ns = fg_loop_now(ws->loop);
		return (ssize_t)n;
	}
	ssize_t r = ws->st->ops->read(ws->st, buf, len);
	if (r > 0) {
		ws->last_rx_ns = fg_loop_now(ws->loop);
		return r;
	}
	if (r == -EAGAIN) {
		wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
		return -1;
	}
	if (r == 0)
		ws->eof = true;
	else
		stream_failed(ws, (int)-r);
	wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
	return -1;
}

static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
		       void *user)
{
	struct fg_ws *ws = user;
	if (ws->dead) {
		wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
		return -1;
	}
	ssize_t r = ws->st->ops->write(ws->st, data, len, (flags & WSLAY_MSG_MORE) != 0);
	if (r >= 0)
		return r;
	if (r == -EAGAIN) {
		wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
		return -1;
	}
	stream_failed(ws, (int)-r);
	wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
	return -1;
}

static int genmask_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, void *user)
{
	/* the mask only defeats cache poisoning by in-path proxies; urandom
	 * without blocking is plenty */
	while (len) {
		ssize_t r = getrandom(buf, len, GRND_NONBLOCK);
		if (r <= 0) {
			if (r < 0 && errno == EINTR)
				continue;
			wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
			return -1;
		}
		buf += r;
		len -= (size_t)r;
	}
	return 0;
}

static void on_msg_cb(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *a,
		      void *user)
{
	struct fg_ws *ws = user;
	if (ws->dead || ws->local_close)
		return; /* the user is done with this session */
	switch (a->opcode) {
	case WSLAY_TEXT_FRAME:
		if (ws->cbs.on_text)
			ws->cbs.on_text(ws, (const char *)a->msg, a->msg_length, ws->data);
		break;
	case WSLAY_BINARY_FRAME:
		if (ws->cbs.on_binary) {
			ws->cbs.on_binary(ws, a->msg, a->msg_length, ws->data);
		} else {
			static const char r[] = "binary messages not accepted";
			wslay_event_queue_close(ctx, WSLAY_CODE_UNSUPPORTED_DATA,
						(const uint8_t *)r, sizeof(r) - 1);
			wslay_event_shutdown_read(ctx);
		}
		break;
	default: break; /* ping (wslay answers), pong, close: seen by ws_progress */
	}
}

/* ---- session --------------------------------------------------------- */

static void fill_opts(struct fg_ws_opts *o, const struct fg_ws_opts *in)
{
	if (in)
		*o = *in;
	else
		memset(o, 0, sizeof(*o));
	if (!o->ping_interval_ns)
		o->ping_interval_ns = FG_WS_DEFAULT_PING_INTERVAL_NS;
	if (o->ping_timeout_ns <= 0)
		o->ping_timeout_ns = FG_WS_DEFAULT_PING_TIMEOUT_NS;
	if (o->close_timeout_ns <= 0)
		o->close_timeout_ns = FG_WS_DEFAULT_CLOSE_TIMEOUT_NS;
	if (o->handshake_timeout_ns <= 0)
		o->handshake_timeout_ns = FG_WS_DEFAULT_HANDSHAKE_TIMEOUT_NS;
	if (!o->max_msg)
		o->max_msg = FG_WS_DEFAULT_MAX_MSG;
	if (!o->max_queued)
		o->max_queued = FG_WS_DEFAULT_MAX_QUEUED;
}

/* Ends the session: socket closed, timers stopped, on_close once. */
static void finish(struct fg_ws *ws, int code, const char *err)
{
	if (ws->dead)
		return;
	ws->dead = true;
	fg_timer_stop(ws->loop, &ws->ping_timer);
	fg_timer_stop(ws->loop, &ws->kick);
	fg_timer_stop(ws->loop, &ws->close_timer);
	fg_io_stop(ws->loop, &ws->io);
	ws->st->ops->close(ws->st);
	ws->st = NULL; /* a TLS stream is freed: every later use checks dead */
	if (err)
		fg_dbg("ws: session ends: %s (code %d)", err, code);
	if (ws->cbs.on_close)
		ws->cbs.on_close(ws, code, err, ws->data);
}

static const char *code_error(int code)
{
	switch (code) {
	case WSLAY_CODE_PROTOCOL_ERROR: return "protocol error";
	case WSLAY_CODE_UNSUPPORTED_DATA: return "unsupported data";
	case WSLAY_CODE_INVALID_FRAME_PAYLOAD_DATA: return "invalid payload";
	case WSLAY_CODE_MESSAGE_TOO_BIG: return "message too big";
	default: return "closed by us";
	}
}

/* Called after every bout of wslay work, outside wslay: decides whether the
 * session is over and what the socket should be watched for. */
static void ws_progress(struct fg_ws *ws)
{
	if (ws->dead)
		return;
	wslay_event_context_ptr c = ws->ctx;
	bool got_close = wslay_event_get_close_received(c);
	bool sent_close = wslay_event_get_close_sent(c);
	if (ws->fail) {
		finish(ws, 1006, ws->fail);
		return;
	}
	if (got_close && sent_close) {
		int code = wslay_event_get_status_code_received(c);
		if (ws->local_close)
			code = wslay_event_get_status_code_sent(c);
		finish(ws, code, NULL);
		return;
	}
	if (sent_close && !ws->local_close && !got_close) {
		/* wslay failed the connection (bad frame, too big, binary) */
		int code = wslay_event_get_status_code_sent(c);
		finish(ws, code, code_error(code));
		return;
	}
	if (ws->eof) {
		if (sent_close)
			finish(ws, wslay_event_get_status_code_sent(c), NULL);
		else
			finish(ws, 1006, "connection closed without close frame");
		return;
	}
	if (ws->io_err) {
		finish(ws, 1006,
		       ws->why[0]		  ? ws->why
		       : ws->io_err == ECONNRESET ? "connection reset"
						  : strerror(ws->io_err));
		return;
	}
	if (sent_close && ws->local_close && !fg_timer_armed(&ws->close_timer) && !got_close)
		fg_timer_start(ws->loop, &ws->close_timer, ws->opts.close_timeout_ns);
	/* after our close frame, keep reading: the peer's close ends it */
	uint32_t ev =
	    ws->st->ops->events(ws->st, wslay_event_want_read(c) || (sent_close && !got_close),
				wslay_event_want_write(c));
	if (ev != ws->io.events)
		fg_io_modify(ws->loop, &ws->io, ev);
}

static void do_recv(struct fg_ws *ws)
{
	if (ws->dead)
		return;
	if (!wslay_event_get_read_enabled(ws->ctx)) {
		/* only the peer's EOF or close still matters: drain and drop
		 * (all of it: a TLS stream may hold decrypted bytes that no
		 * epoll event would announce) */
		char sink[4096];
		ssize_t r;
		while ((r = ws->st->ops->read(ws->st, sink, sizeof(sink))) > 0)
			;
		if (r == 0)
			ws->eof = true;
		else if (r != -EAGAIN)
			stream_failed(ws, (int)-r);
		return;
	}
	ws->in_wslay = true;
	int r = wslay_event_recv(ws->ctx);
	ws->in_wslay = false;
	if (r < 0 && !ws->eof && !ws->io_err && !ws->dead)
		ws->fail = r == WSLAY_ERR_NOMEM ? "out of memory" : "receive failed";
}

static void do_send(struct fg_ws *ws)
{
	if (ws->dead || !wslay_event_want_write(ws->ctx))
		return;
	ws->in_wslay = true;
	int r = wslay_event_send(ws->ctx);
	ws->in_wslay = false;
	if (r < 0 && !ws->io_err && !ws->dead)
		ws->fail = r == WSLAY_ERR_NOMEM ? "out of memory" : "send failed";
}

static void io_cb(struct fg_loop *loop, struct fg_io *io, uint32_t events)
{
	struct fg_ws *ws = io->data;
	/* a TLS read may be waiting for the socket to take a write */
	if (events & (ws->st->ops->events(ws->st, true, false) | FG_IO_HUP | FG_IO_ERR))
		do_recv(ws);
	do_send(ws);
	ws_progress(ws);
}

static void kick_cb(struct fg_loop *loop, struct fg_timer *t)
{
	struct fg_ws *ws = t->data;
	if (ws->early)
		do_recv(ws);
	do_send(ws);
	ws_progress(ws);
}

static void close_timer_cb(struct fg_loop *loop, struct fg_timer *t)
{
	struct fg_ws *ws = t->data;
	finish(ws, wslay_event_get_status_code_sent(ws->ctx), "close timeout");
}

static void ping_timer_cb(struct fg_loop *loop, struct fg_timer *t)
{
	struct fg_ws *ws = t->data;
	int64_t now = fg_loop_now(loop);
	if (now - ws->last_rx_ns >= ws->opts.ping_timeout_ns) {
		finish(ws, 1006, "ping timeout");
		return;
	}
	int64_t next = ws->last_rx_ns + ws->opts.ping_timeout_ns;
	if (ws->opts.ping_interval_ns > 0) {
		if (now - ws->last_ping_ns >= ws->opts.ping_interval_ns &&
		    !wslay_event_get_close_sent(ws->ctx)) {
			struct wslay_event_msg m = {WSLAY_PING, NULL, 0};
			wslay_event_queue_msg(ws->ctx, &m);
			ws->last_ping_ns = now;
			do_send(ws);
			ws_progress(ws);
			if (ws->dead)
				return;
		}
		if (ws->last_ping_ns + ws->opts.ping_interval_ns < next)
			next = ws->last_ping_ns + ws->opts.ping_interval_ns;
	}
	fg_timer_start(loop, t, next > now ? next - now : 0);
}

/* A session over tls (owned) if not NULL, else over the plain socket fd
 * (owned). On failure both are closed. */
static struct fg_ws *ws_new(struct fg_loop *loop, int fd, struct fg_stream *tls, bool is_client,
			    const struct fg_ws_cbs *cbs, const struct fg_ws_opts *opts,
			    const void *early, size_t early_len, void *data)
{
	struct fg_ws *ws = fg_calloc(1, sizeof(*ws));
	if (!ws)
		goto err;
	if (tls) {
		ws->st = tls;
	} else {
		fg_stream_plain_init(&ws->plain, fd);
		ws->st = &ws->plain;
	}
	ws->loop = loop;
	ws->cbs = *cbs;
	ws->data = data;
	ws->is_client = is_client;
	fill_opts(&ws->opts, opts);
	fg_io_init(&ws->io);
	fg_timer_init(&ws->ping_timer, ping_timer_cb, ws);
	fg_timer_init(&ws->kick, kick_cb, ws);
	fg_timer_init(&ws->close_timer, close_timer_cb, ws);
	if (early_len) {
		ws->early = fg_malloc(early_len);
		if (!ws->early)
			goto err;
		memcpy(ws->early, early, early_len);
		ws->early_len = early_len;
	}
	struct wslay_event_callbacks wcb = {
	    .recv_callback = recv_cb,
	    .send_callback = send_cb,
	    .genmask_callback = genmask_cb,
	    .on_msg_recv_callback = on_msg_cb,
	};
	int r = is_client ? wslay_event_context_client_init(&ws->ctx, &wcb, ws)
			  : wslay_event_context_server_init(&ws->ctx, &wcb, ws);
	if (r != 0) {
		ws->ctx = NULL;
		goto err;
	}
	wslay_event_config_set_max_recv_msg_length(ws->ctx, ws->opts.max_msg);
	if (fg_io_start(loop, &ws->io, ws->st->fd, FG_IO_READ, io_cb, ws) < 0)
		goto err;
	int64_t now = fg_loop_now(loop);
	ws->last_rx_ns = ws->last_ping_ns = now;
	int64_t first = ws->opts.ping_timeout_ns;
	if (ws->opts.ping_interval_ns > 0 && ws->opts.ping_interval_ns < first)
		first = ws->opts.ping_interval_ns;
	fg_timer_start(loop, &ws->ping_timer, first);
	if (ws->early)
		fg_timer_start(loop, &ws->kick, 0);
	return ws;
err:
	if (tls)
		tls->ops->close(tls);
	else
		close(fd);
	if (ws) {
		if (ws->ctx)
			wslay_event_context_free(ws->ctx);
		fg_free(ws->early);
		fg_free(ws);
	}
	return NULL;
}

struct fg_ws *fg_ws_new_ex(struct fg_loop *loop, int fd, bool is_client,
			   const struct fg_ws_cbs *cbs, const struct fg_ws_opts *opts,
			   const void *early, size_t early_len, void *data)
{
	return ws_new(loop, fd, NULL, is_client, cbs, opts, early, early_len, data);
}

static int queue(struct fg_ws *ws, uint8_t opcode, const void *p, size_t n)
{
	if (ws->dead || ws->local_close || wslay_event_get_close_sent(ws->ctx) ||
	    wslay_event_get_close_received(ws->ctx))
		return -EPIPE;
	if (n > ws->opts.max_queued ||
	    wslay_event_get_queued_msg_length(ws->ctx) > ws->opts.max_queued - n)
		return -ENOBUFS;
	struct wslay_event_msg m = {opcode, p, n};
	int r = wslay_event_queue_msg(ws->ctx, &m);
	if (r == WSLAY_ERR_NOMEM)
		return -ENOMEM;
	if (r != 0)
		return -EPIPE;
	if (!ws->in_wslay) {
		/* write now, but leave any failure to the loop: on_close never
		 * runs inside the caller */
		do_send(ws);
		if ((ws->fail || ws->io_err) && !fg_timer_armed(&ws->kick))
			fg_timer_start(ws->loop, &ws->kick, 0);
		else if (wslay_event_want_write(ws->ctx)) {
			uint32_t ev = ws->io.events | ws->st->ops->events(ws->st, false, true);
			if (ev != ws->io.events)
				fg_io_modify(ws->loop, &ws->io, ev);
		}
	}
	return 0;
}

int fg_ws_send_text(struct fg_ws *ws, const char *s, size_t n)
{
	return queue(ws, WSLAY_TEXT_FRAME, s, n);
}

int fg_ws_send_binary(struct fg_ws *ws, const void *p, size_t n)
{
	return queue(ws, WSLAY_BINARY_FRAME, p, n);
}

size_t fg_ws_queued_bytes(const struct fg_ws *ws)
{
	return ws->dead ? 0 : wslay_event_get_queued_msg_length(ws->ctx);
}

void fg_ws_close(struct fg_ws *ws, int code, const char *reason)
{
	if (!ws || ws->dead || ws->local_close)
		return;
	ws->local_close = true;
	if (!wslay_event_get_close_sent(ws->ctx)) {
		size_t rl = reason ? strlen(reason) : 0;
		if (rl > 123)
			rl = 123;
		if (code < 1000 || code > 4999)
			code = WSLAY_CODE_NORMAL_CLOSURE;
		wslay_event_queue_close(ws->ctx, (uint16_t)code, (const uint8_t *)reason, rl);
	}
	fg_timer_start(ws->loop, &ws->close_timer, ws->opts.close_timeout_ns);
	fg_timer_start(ws->loop, &ws->kick, 0);
}

static void free_cb(void *p)
{
	struct fg_ws *ws = p;
	wslay_event_context_free(ws->ctx);
	fg_free(ws->early);
	fg_free(ws);
}

void fg_ws_free(struct fg_ws *ws)
{
	if (!ws || ws->freed)
		return;
	ws->freed = true;
	if (!ws->dead) {
		ws->cbs.on_close = NULL;
		finish(ws, 1006, "freed");
	}
	fg_loop_defer(ws->loop, free_cb, ws);
}

void *fg_ws_data(const struct fg_ws *ws)
{
	return ws->data;
}

void fg_ws_set_data(struct fg_ws *ws, void *data)
{
	ws->data = data;
}

struct fg_tls *fg_ws_tls(const struct fg_ws *ws)
{
	return ws->dead ? NULL : fg_tls_from_stream(ws->st);
}

/* ---- handshakes ------------------------------------------------------ */

enum hs_state { HS_CONNECTING, HS_TLS, HS_WRITE_REQ, HS_READ_RESP, HS_READ_REQ, HS_WRITE_RESP };

struct fg_ws_hs {
	struct fg_loop *loop;
	struct fg_io io;	/* watches st->fd */
	struct fg_stream *st;	/* owned until handed to the session: &plain or TLS */
	struct fg_stream plain; /* the socket of a plain handshake */
	struct fg_timer timer;	/* the handshake timeout; 0-delay for an early failure */
	enum hs_state state;
	bool is_client;
	bool done;
	struct fg_ws_cbs cbs;
	struct fg_ws_opts opts;
	fg_ws_open_cb cb;
	fg_ws_check_cb check_cb;
	void *data;	    /* borrowed: the caller's */
	void *session_data; /* what the session gets (server: set by check_cb) */
	int status;	    /* HTTP status sent or received */
	int fail_err;	    /* error to report after the error answer, or before starting */
	char accept[FG_WS_ACCEPT_LEN + 1];
	char why[FG_TLS_ERR_LEN]; /* what failed, for fg_ws_hs_error() */
	size_t out_len, out_off;  /* bytes of out still to write */
	size_t in_len;
	char out[FG_WS_MAX_HEAD + 64];
	char in[FG_WS_MAX_HEAD + 4096];
};

static void hs_free_cb(void *p)
{
	fg_free(p);
}

static void hs_set_why(struct fg_ws_hs *hs, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void hs_set_why(struct fg_ws_hs *hs, const char *fmt, ...)
{
	if (hs->why[0])
		return; /* the first, most specific account wins */
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(hs->why, sizeof(hs->why), fmt, ap);
	va_end(ap);
}

/* Ends the handshake; ws is the session on success. */
static void hs_end(struct fg_ws_hs *hs, struct fg_ws *ws, int err)
{
	hs->done = true;
	fg_timer_stop(hs->loop, &hs->timer);
	if (fg_io_active(&hs->io))
		fg_io_stop(hs->loop, &hs->io);
	if (err) {
		switch (err) {
		case -ETIMEDOUT:
			hs_set_why(hs, "%s timed out",
				   hs->state == HS_TLS ? "TLS handshake" : "WebSocket handshake");
			break;
		case -EACCES:
			hs_set_why(
			    hs, hs->is_client ? "server answered HTTP %d" : "refused with HTTP %d",
			    hs->status);
			break;
		case -ECONNRESET: hs_set_why(hs, "connection closed during the handshake"); break;
		case -EINVAL:
			hs_set_why(hs, "invalid upgrade %s",
				   hs->is_client ? "response" : "request");
			break;
		case -E2BIG:
			hs_set_why(hs, "upgrade %s head too large",
				   hs->is_client ? "response" : "request");
			break;
		default: hs_set_why(hs, "%s", strerror(-err)); break;
		}
		if (hs->cb)
			fg_dbg("ws: handshake failed: %s", hs->why);
	}
	if (hs->cb)
		hs->cb(ws, err, hs->status, hs->session_data);
	fg_loop_defer(hs->loop, hs_free_cb, hs);
}

static void hs_fail(struct fg_ws_hs *hs, int err)
{
	if (fg_io_active(&hs->io))
		fg_io_stop(hs->loop, &hs->io);
	if (hs->st)
		hs->st->ops->close(hs->st);
	hs->st = NULL;
	hs_end(hs, NULL, err);
}

/* A read or write on the stream failed with err: keep its own words. */
static void hs_stream_fail(struct fg_ws_hs *hs, int err)
{
	const char *why = hs->st->ops->error(hs->st);
	if (why)
		hs_set_why(hs, "%s", why);
	hs_fail(hs, err);
}

static void hs_established(struct fg_ws_hs *hs, size_t head)
{
	fg_io_stop(hs->loop, &hs->io);
	struct fg_stream *tls = hs->st == &hs->plain ? NULL : hs->st;
	int fd = hs->st->fd;
	hs->st = NULL; /* the session owns it now, even if ws_new fails */
	struct fg_ws *ws = ws_new(hs->loop, fd, tls, hs->is_client, &hs->cbs, &hs->opts,
				  hs->in + head, hs->in_len - head, hs->session_data);
	if (!ws) {
		hs_end(hs, NULL, -ENOMEM);
		return;
	}
	hs_end(hs, ws, 0);
}

/* Watches the socket for what the stream needs to read (rd) or write. */
static void hs_wait(struct fg_ws_hs *hs, bool rd, bool wr)
{
	uint32_t ev = hs->st->ops->events(hs->st, rd, wr);
	if (ev != hs->io.events)
		fg_io_modify(hs->loop, &hs->io, ev);
}

/* Writes what is left of out. Returns 1 when all is written, 0 on EAGAIN,
 * -errno on error. */
static int hs_write(struct fg_ws_hs *hs)
{
	while (hs->out_off < hs->out_len) {
		ssize_t r = hs->st->ops->write(hs->st, hs->out + hs->out_off,
					       hs->out_len - hs->out_off, false);
		if (r == -EAGAIN)
			return 0;
		if (r < 0)
			return (int)r;
		hs->out_off += (size_t)r;
	}
	return 1;
}

/* Reads what is there. Returns 1 with new bytes, 0 on EAGAIN, -errno
 * (-ECONNRESET for EOF). Never reads past the buffer. */
static int hs_read(struct fg_ws_hs *hs)
{
	bool got = false;
	while (hs->in_len < sizeof(hs->in)) {
		ssize_t r =
		    hs->st->ops->read(hs->st, hs->in + hs->in_len, sizeof(hs->in) - hs->in_len);
		if (r == -EAGAIN)
			break;
		if (r < 0)
			return (int)r;
		if (r == 0)
			return got ? 1 : -ECONNRESET;
		hs->in_len += (size_t)r;
		got = true;
	}
	return got || hs->in_len == sizeof(hs->in) ? 1 : 0;
}

static void hs_server_answer(struct fg_ws_hs *hs, int status, const char *key)
{
	int n;
	hs->status = status;
	if (status == 101) {
		char accept[FG_WS_ACCEPT_LEN + 1];
		n = fg_ws_accept_key(key, accept) < 0
			? -EINVAL
			: fg_ws_build_upgrade_response(hs->out, sizeof(hs->out), accept);
	} else {
		n = fg_ws_build_error_response(hs->out, sizeof(hs->out), status, NULL);
		if (!hs->fail_err)
			hs->fail_err = -EACCES;
	}
	if (n < 0) {
		hs_fail(hs, n);
		return;
	}
	hs->out_len = (size_t)n;
	hs->out_off = 0;
	hs->state = HS_WRITE_RESP;
}

static void hs_step(struct fg_ws_hs *hs)
{
	int r;
	for (;;) {
		switch (hs->state) {
		case HS_CONNECTING: {
			int soerr = 0;
			socklen_t sl = sizeof(soerr);
			if (getsockopt(hs->st->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
				soerr = errno;
			if (soerr) {
				hs_fail(hs, -soerr);
				return;
			}
			hs->state = fg_stream_is_plain(hs->st) ? HS_WRITE_REQ : HS_TLS;
			break;
		}
		case HS_TLS: {
			struct fg_tls *tls = fg_tls_from_stream(hs->st);
			r = fg_tls_handshake(tls);
			if (r == -EAGAIN) {
				uint32_t ev = fg_tls_want(tls);
				if (ev != hs->io.events)
					fg_io_modify(hs->loop, &hs->io, ev);
				return;
			}
			if (r < 0) {
				hs_set_why(hs, "%s", fg_tls_error(tls));
				hs_fail(hs, r == -ENOTCONN ? -ECONNREFUSED : r);
				return;
			}
			hs->state = hs->is_client ? HS_WRITE_REQ : HS_READ_REQ;
			break;
		}
		case HS_WRITE_REQ:
			r = hs_write(hs);
			if (r < 0) {
				hs_stream_fail(hs, r == -ENOTCONN ? -ECONNREFUSED : r);
				return;
			}
			if (r == 0) {
				hs_wait(hs, false, true);
				return;
			}
			hs->state = HS_READ_RESP;
			break;
		case HS_READ_RESP:
			r = hs_read(hs);
			if (r < 0) {
				hs_stream_fail(hs, r);
				return;
			}
			r = fg_ws_parse_upgrade_response(hs->in, hs->in_len, hs->accept,
							 &hs->status);
			if (r == -EAGAIN) {
				hs_wait(hs, true, false);
				return;
			}
			if (r < 0) {
				hs_fail(hs, r);
				return;
			}
			hs_established(hs, (size_t)r);
			return;
		case HS_READ_REQ: {
			r = hs_read(hs);
			if (r < 0) {
				hs_stream_fail(hs, r);
				return;
			}
			struct fg_ws_request req;
			r = fg_ws_parse_upgrade_request(hs->in, hs->in_len, &req);
			if (r == -EAGAIN) {
				hs_wait(hs, true, false);
				return;
			}
			if (r < 0) {
				fg_dbg("ws: bad upgrade request: %s",
				       req.why ? req.why : strerror(-r));
				if (req.why)
					hs_set_why(hs, "invalid upgrade request: %s", req.why);
				hs->fail_err = r;
				hs_server_answer(hs, r == -E2BIG ? 431 : 400, NULL);
				break;
			}
			size_t head = (size_t)r;
			int st =
			    hs->check_cb ? hs->check_cb(&req, &hs->session_data, hs->data) : 101;
			if (st != 101 && (st < 200 || st > 599))
				st = 500;
			hs_server_answer(hs, st, req.key);
			/* what follows the head is the peer's first frames */
			hs->in_len -= head;
			memmove(hs->in, hs->in + head, hs->in_len);
			break;
		}
		case HS_WRITE_RESP:
			r = hs_write(hs);
			if (r == 0) {
				hs_wait(hs, false, true);
				return;
			}
			if (r < 0 && hs->status == 101) {
				hs_stream_fail(hs, r);
				return;
			}
			if (r < 0 || hs->status != 101) {
				hs_fail(hs, hs->fail_err);
				return;
			}
			hs_established(hs, 0);
			return;
		}
		if (hs->done)
			return;
	}
}

static void hs_io_cb(struct fg_loop *loop, struct fg_io *io, uint32_t events)
{
	struct fg_ws_hs *hs = io->data;
	if (hs->done)
		return;
	if (hs->state == HS_CONNECTING && !(events & (FG_IO_WRITE | FG_IO_ERR | FG_IO_HUP)))
		return;
	hs_step(hs);
}

static void hs_timer_cb(struct fg_loop *loop, struct fg_timer *t)
{
	struct fg_ws_hs *hs = t->data;
	hs_fail(hs, hs->fail_err && !hs->st ? hs->fail_err : -ETIMEDOUT);
}

static struct fg_ws_hs *hs_new(struct fg_loop *loop, const struct fg_ws_cbs *cbs,
			       const struct fg_ws_opts *opts, fg_ws_open_cb cb, void *data)
{
	struct fg_ws_hs *hs = fg_malloc(sizeof(*hs));
	if (!hs)
		return NULL;
	memset(hs, 0, offsetof(struct fg_ws_hs, out));
	hs->loop = loop;
	hs->cbs = *cbs;
	fill_opts(&hs->opts, opts);
	hs->cb = cb;
	hs->data = hs->session_data = data;
	fg_io_init(&hs->io);
	fg_timer_init(&hs->timer, hs_timer_cb, hs);
	return hs;
}

/* Prepares the client's request; hs->st is set. Returns 0 or -errno. */
static int hs_client_prepare(struct fg_ws_hs *hs, const char *host, const char *path,
			     const char *token)
{
	hs->is_client = true;
	uint8_t nonce[16];
	char key[FG_WS_KEY_LEN + 1];
	if (getrandom(nonce, sizeof(nonce), 0) != (ssize_t)sizeof(nonce))
		return -EIO;
	fg_ws_key_encode(nonce, key);
	if (fg_ws_accept_key(key, hs->accept) < 0)
		return -EINVAL;
	int n = fg_ws_build_upgrade_request(hs->out, sizeof(hs->out), host, path, key, token);
	if (n < 0)
		return n;
	hs->out_len = (size_t)n;
	hs->state = HS_CONNECTING;
	return 0;
}

/* Starts watching the stream and the timeout. Returns 0 or -errno. */
static int hs_go(struct fg_ws_hs *hs, uint32_t events)
{
	if (fg_io_start(hs->loop, &hs->io, hs->st->fd, events, hs_io_cb, hs) < 0)
		return -EIO;
	fg_timer_start(hs->loop, &hs->timer, hs->opts.handshake_timeout_ns);
	return 0;
}

/* The early failure of a handshake that could not start (its why is set):
 * reported through the callback on the next iteration, like any other. */
static struct fg_ws_hs *hs_fail_soon(struct fg_ws_hs *hs, int err)
{
	hs->fail_err = err;
	hs->st = NULL;
	fg_timer_start(hs->loop, &hs->timer, 0);
	return hs;
}

struct fg_ws_hs *fg_ws_connect_start(struct fg_loop *loop, int fd, const char *host,
				     const char *path, const char *token,
				     const struct fg_ws_cbs *cbs, const struct fg_ws_opts *opts,
				     fg_ws_open_cb cb, void *data)
{
	struct fg_ws_hs *hs = hs_new(loop, cbs, opts, cb, data);
	if (!hs)
		goto err;
	fg_stream_plain_init(&hs->plain, fd);
	hs->st = &hs->plain;
	if (hs_client_prepare(hs, host, path, token) < 0 || hs_go(hs, FG_IO_WRITE) < 0)
		goto err;
	return hs;
err:
	close(fd);
	fg_free(hs);
	return NULL;
}

struct fg_ws_hs *fg_ws_accept_start(struct fg_loop *loop, int fd, fg_ws_check_cb check_cb,
				    const struct fg_ws_cbs *cbs, const struct fg_ws_opts *opts,
				    fg_ws_open_cb cb, void *data)
{
	struct fg_ws_hs *hs = hs_new(loop, cbs, opts, cb, data);
	if (!hs)
		goto err;
	fg_stream_plain_init(&hs->plain, fd);
	hs->st = &hs->plain;
	hs->check_cb = check_cb;
	hs->state = HS_READ_REQ;
	if (hs_go(hs, FG_IO_READ) < 0)
		goto err;
	return hs;
err:
	close(fd);
	fg_free(hs);
	return NULL;
}

/* The TLS server name for a Host value: without its port and without the
 * brackets of an IPv6 literal. */
static void host_to_name(const char *host, char *out, size_t outlen)
{
	const char *end = host + strlen(host);
	if (host[0] == '[') {
		const char *rb = strchr(host, ']');
		if (rb) {
			host++;
			end = rb;
		}
	} else {
		const char *colon = strchr(host, ':');
		if (colon && !strchr(colon + 1, ':')) /* one colon: a port */
			end = colon;
	}
	snprintf(out, outlen, "%.*s", (int)(end - host), host);
}

struct fg_ws_hs *fg_ws_connect_tls_start(struct fg_loop *loop, int fd, struct fg_tls_client *tls,
					 const char *server_name, const char *pin, const char *host,
					 const char *path, const char *token,
					 const struct fg_ws_cbs *cbs, const struct fg_ws_opts *opts,
					 fg_ws_open_cb cb, void *data)
{
	struct fg_ws_hs *hs = hs_new(loop, cbs, opts, cb, data);
	if (!hs) {
		close(fd);
		return NULL;
	}
	char name[256];
	if (!server_name || !*server_name) {
		host_to_name(host ? host : "", name, sizeof(name));
		server_name = name;
	}
	struct fg_tls *t = fg_tls_client_conn(tls, fd, server_name, pin, hs->why, sizeof(hs->why));
	if (!t)
		return hs_fail_soon(hs, -errno); /* fd is closed */
	hs->st = fg_tls_stream(t);
	int r = hs_client_prepare(hs, host, path, token);
	if (r < 0) {
		fg_tls_free(t);
		hs_set_why(hs, "cannot build the upgrade request: %s", strerror(-r));
		return hs_fail_soon(hs, r);
	}
	if (hs_go(hs, FG_IO_WRITE) < 0) {
		fg_tls_free(t);
		fg_free(hs);
		return NULL;
	}
	return hs;
}

struct fg_ws_hs *fg_ws_accept_tls_start(struct fg_loop *loop, int fd, struct fg_tls_server *tls,
					fg_ws_check_cb check_cb, const struct fg_ws_cbs *cbs,
					const struct fg_ws_opts *opts, fg_ws_open_cb cb, void *data)
{
	struct fg_ws_hs *hs = hs_new(loop, cbs, opts, cb, data);
	if (!hs) {
		close(fd);
		return NULL;
	}
	hs->check_cb = check_cb;
	struct fg_tls *t = fg_tls_server_conn(tls, fd, hs->why, sizeof(hs->why));
	if (!t)
		return hs_fail_soon(hs, -ENOMEM); /* fd is closed */
	hs->st = fg_tls_stream(t);
	hs->state = HS_TLS;
	if (hs_go(hs, FG_IO_READ) < 0) {
		fg_tls_free(t);
		fg_free(hs);
		return NULL;
	}
	return hs;
}

const char *fg_ws_hs_error(const struct fg_ws_hs *hs)
{
	return hs && hs->why[0] ? hs->why : NULL;
}

void fg_ws_hs_cancel(struct fg_ws_hs *hs)
{
	if (!hs || hs->done)
		return;
	hs->cb = NULL;
	hs_fail(hs, -ECANCELED);
}
