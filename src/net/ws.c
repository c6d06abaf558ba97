#include "net/ws.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/random.h>
#include <unistd.h>

#include <wslay/wslay.h>

#include "core/alloc.h"
#include "core/log.h"
#include "core/loop.h"

struct fg_ws {
	struct fg_loop *loop;
	struct fg_io io;
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
	int io_err;	  /* errno of a failed read/write, 0 */
	const char *fail; /* set when the session must end with this error */
	bool is_client;
	bool eof;	  /* the peer closed its side of the TCP stream */
	bool local_close; /* fg_ws_close() was called */
	bool in_wslay;	  /* inside wslay_event_recv/send */
	bool dead;	  /* on_close happened (or fg_ws_free): fd closed */
	bool freed;
};

static void ws_progress(struct fg_ws *ws);

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
	ssize_t r;
	do
		r = recv(ws->io.fd, buf, len, 0);
	while (r < 0 && errno == EINTR);
	if (r > 0) {
		ws->last_rx_ns = fg_loop_now(ws->loop);
		return r;
	}
	if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
		wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
		return -1;
	}
	if (r == 0)
		ws->eof = true;
	else
		ws->io_err = errno;
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
	ssize_t r;
	do
		r = send(ws->io.fd, data, len,
			 MSG_NOSIGNAL | ((flags & WSLAY_MSG_MORE) ? MSG_MORE : 0));
	while (r < 0 && errno == EINTR);
	if (r >= 0)
		return r;
	if (errno == EAGAIN || errno == EWOULDBLOCK) {
		wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
		return -1;
	}
	ws->io_err = errno;
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
	int fd = ws->io.fd;
	fg_io_stop(ws->loop, &ws->io);
	close(fd);
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
		       ws->io_err == ECONNRESET ? "connection reset" : strerror(ws->io_err));
		return;
	}
	if (sent_close && ws->local_close && !fg_timer_armed(&ws->close_timer) && !got_close)
		fg_timer_start(ws->loop, &ws->close_timer, ws->opts.close_timeout_ns);
	/* after our close frame, keep reading: the peer's close ends it */
	uint32_t ev = 0;
	if (wslay_event_want_read(c) || (sent_close && !got_close))
		ev |= FG_IO_READ;
	if (wslay_event_want_write(c))
		ev |= FG_IO_WRITE;
	if (ev != ws->io.events)
		fg_io_modify(ws->loop, &ws->io, ev);
}

static void do_recv(struct fg_ws *ws)
{
	if (!wslay_event_get_read_enabled(ws->ctx)) {
		/* only the peer's EOF or close still matters: drain and drop */
		char sink[4096];
		ssize_t r = recv(ws->io.fd, sink, sizeof(sink), 0);
		if (r == 0)
			ws->eof = true;
		else if (r < 0 && errno != EAGAIN && errno != EINTR)
			ws->io_err = errno;
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
	if (events & (FG_IO_READ | FG_IO_HUP | FG_IO_ERR))
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

struct fg_ws *fg_ws_new_ex(struct fg_loop *loop, int fd, bool is_client,
			   const struct fg_ws_cbs *cbs, const struct fg_ws_opts *opts,
			   const void *early, size_t early_len, void *data)
{
	struct fg_ws *ws = fg_calloc(1, sizeof(*ws));
	if (!ws)
		goto err;
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
	if (fg_io_start(loop, &ws->io, fd, FG_IO_READ, io_cb, ws) < 0)
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
	close(fd);
	if (ws) {
		if (ws->ctx)
			wslay_event_context_free(ws->ctx);
		fg_free(ws->early);
		fg_free(ws);
	}
	return NULL;
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
		else if (wslay_event_want_write(ws->ctx) && !(ws->io.events & FG_IO_WRITE))
			fg_io_modify(ws->loop, &ws->io, ws->io.events | FG_IO_WRITE);
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

/* ---- handshakes ------------------------------------------------------ */

enum hs_state { HS_CONNECTING, HS_WRITE_REQ, HS_READ_RESP, HS_READ_REQ, HS_WRITE_RESP };

struct fg_ws_hs {
	struct fg_loop *loop;
	struct fg_io io;
	struct fg_timer timer;
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
	int fail_err;	    /* server: error to report after the error answer */
	char accept[FG_WS_ACCEPT_LEN + 1];
	size_t out_len, out_off; /* bytes of out still to write */
	size_t in_len;
	char out[FG_WS_MAX_HEAD + 64];
	char in[FG_WS_MAX_HEAD + 4096];
};

static void hs_free_cb(void *p)
{
	fg_free(p);
}

/* Ends the handshake; ws is the session on success. */
static void hs_end(struct fg_ws_hs *hs, struct fg_ws *ws, int err)
{
	hs->done = true;
	fg_timer_stop(hs->loop, &hs->timer);
	if (fg_io_active(&hs->io))
		fg_io_stop(hs->loop, &hs->io);
	if (err && hs->cb)
		fg_dbg("ws: handshake failed: %s (status %d)", strerror(-err), hs->status);
	if (hs->cb)
		hs->cb(ws, err, hs->status, hs->session_data);
	fg_loop_defer(hs->loop, hs_free_cb, hs);
}

static void hs_fail(struct fg_ws_hs *hs, int err)
{
	int fd = hs->io.fd;
	fg_io_stop(hs->loop, &hs->io);
	if (fd >= 0)
		close(fd);
	hs_end(hs, NULL, err);
}

static void hs_established(struct fg_ws_hs *hs, size_t head)
{
	int fd = hs->io.fd;
	fg_io_stop(hs->loop, &hs->io);
	struct fg_ws *ws = fg_ws_new_ex(hs->loop, fd, hs->is_client, &hs->cbs, &hs->opts,
					hs->in + head, hs->in_len - head, hs->session_data);
	if (!ws) {
		hs_end(hs, NULL, -ENOMEM);
		return;
	}
	hs_end(hs, ws, 0);
}

/* Writes what is left of out. Returns 1 when all is written, 0 on EAGAIN,
 * -errno on error. */
static int hs_write(struct fg_ws_hs *hs)
{
	while (hs->out_off < hs->out_len) {
		ssize_t r =
		    send(hs->io.fd, hs->out + hs->out_off, hs->out_len - hs->out_off, MSG_NOSIGNAL);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			return -errno;
		}
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
		ssize_t r = recv(hs->io.fd, hs->in + hs->in_len, sizeof(hs->in) - hs->in_len, 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			return -errno;
		}
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
			if (getsockopt(hs->io.fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
				soerr = errno;
			if (soerr) {
				hs_fail(hs, -soerr);
				return;
			}
			hs->state = HS_WRITE_REQ;
			break;
		}
		case HS_WRITE_REQ:
			r = hs_write(hs);
			if (r < 0) {
				hs_fail(hs, r == -ENOTCONN ? -ECONNREFUSED : r);
				return;
			}
			if (r == 0) {
				fg_io_modify(hs->loop, &hs->io, FG_IO_WRITE);
				return;
			}
			hs->state = HS_READ_RESP;
			fg_io_modify(hs->loop, &hs->io, FG_IO_READ);
			break;
		case HS_READ_RESP:
			r = hs_read(hs);
			if (r < 0) {
				hs_fail(hs, r);
				return;
			}
			r = fg_ws_parse_upgrade_response(hs->in, hs->in_len, hs->accept,
							 &hs->status);
			if (r == -EAGAIN)
				return;
			if (r < 0) {
				hs_fail(hs, r);
				return;
			}
			hs_established(hs, (size_t)r);
			return;
		case HS_READ_REQ: {
			r = hs_read(hs);
			if (r < 0) {
				hs_fail(hs, r);
				return;
			}
			struct fg_ws_request req;
			r = fg_ws_parse_upgrade_request(hs->in, hs->in_len, &req);
			if (r == -EAGAIN)
				return;
			if (r < 0) {
				fg_dbg("ws: bad upgrade request: %s",
				       req.why ? req.why : strerror(-r));
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
				fg_io_modify(hs->loop, &hs->io, FG_IO_WRITE);
				return;
			}
			if (r < 0 || hs->status != 101) {
				hs_fail(hs, r < 0 && hs->status == 101 ? r : hs->fail_err);
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
	hs_fail(t->data, -ETIMEDOUT);
}

static struct fg_ws_hs *hs_new(struct fg_loop *loop, int fd, const struct fg_ws_cbs *cbs,
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
	(void)fd;
	return hs;
}

struct fg_ws_hs *fg_ws_connect_start(struct fg_loop *loop, int fd, const char *host,
				     const char *path, const char *token,
				     const struct fg_ws_cbs *cbs, const struct fg_ws_opts *opts,
				     fg_ws_open_cb cb, void *data)
{
	struct fg_ws_hs *hs = hs_new(loop, fd, cbs, opts, cb, data);
	if (!hs)
		goto err;
	hs->is_client = true;
	uint8_t nonce[16];
	char key[FG_WS_KEY_LEN + 1];
	if (getrandom(nonce, sizeof(nonce), 0) != (ssize_t)sizeof(nonce))
		goto err;
	fg_ws_key_encode(nonce, key);
	if (fg_ws_accept_key(key, hs->accept) < 0)
		goto err;
	int n = fg_ws_build_upgrade_request(hs->out, sizeof(hs->out), host, path, key, token);
	if (n < 0)
		goto err;
	hs->out_len = (size_t)n;
	hs->state = HS_CONNECTING;
	if (fg_io_start(loop, &hs->io, fd, FG_IO_WRITE, hs_io_cb, hs) < 0)
		goto err;
	fg_timer_start(loop, &hs->timer, hs->opts.handshake_timeout_ns);
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
	struct fg_ws_hs *hs = hs_new(loop, fd, cbs, opts, cb, data);
	if (!hs)
		goto err;
	hs->check_cb = check_cb;
	hs->state = HS_READ_REQ;
	if (fg_io_start(loop, &hs->io, fd, FG_IO_READ, hs_io_cb, hs) < 0)
		goto err;
	fg_timer_start(loop, &hs->timer, hs->opts.handshake_timeout_ns);
	return hs;
err:
	close(fd);
	fg_free(hs);
	return NULL;
}

void fg_ws_hs_cancel(struct fg_ws_hs *hs)
{
	if (!hs || hs->done)
		return;
	hs->cb = NULL;
	hs_fail(hs, -ECANCELED);
}
