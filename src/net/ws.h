/* A WebSocket (RFC 6455) session on an fg_loop, framed by wslay, over a
 * connected non-blocking socket (plain, or TLS: net/tls.h) whose opening
 * handshake is done; and the client and server handshakes that lead to one
 * (fg_ws_connect_start, fg_ws_accept_start, and their _tls_ twins). One
 * loop, one thread: nothing here is thread-safe. See doc/websocket.md and
 * doc/tls.md. */
#ifndef FG_NET_WS_H
#define FG_NET_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/loop-t.h"
#include "net/ws_handshake.h"

struct fg_ws;
struct fg_ws_hs;
struct fg_tls;
struct fg_tls_client;
struct fg_tls_server;

/* Session callbacks; `user` is the session's data pointer. on_binary may be
 * NULL: a binary message then closes the session with 1003. */
struct fg_ws_cbs {
	void (*on_text)(struct fg_ws *ws, const char *data, size_t len, void *user);
	void (*on_binary)(struct fg_ws *ws, const uint8_t *data, size_t len, void *user);
	/* Called exactly once, whatever ends the session (peer close, local
	 * close, error, ping timeout), never from inside fg_ws_send_text() or
	 * fg_ws_close(). err is NULL when the close handshake completed, else a
	 * string valid until on_close returns ("ping timeout", "connection
	 * reset", a TLS failure such as "TLS read failed: ...", ...). code is the
	 * close code received (peer-initiated), sent (locally initiated), or
	 * 1006 when no close frame was exchanged. When it returns the socket is
	 * closed; the session may be freed from inside it. */
	void (*on_close)(struct fg_ws *ws, int code, const char *err, void *user);
};

/* Limits and timers; a zero field takes the default. */
struct fg_ws_opts {
	int64_t ping_interval_ns;     /* default 10 s; < 0: never ping */
	int64_t ping_timeout_ns;      /* no frame for this long ends it; default 30 s */
	int64_t close_timeout_ns;     /* wait for the peer's close frame; default 5 s */
	int64_t handshake_timeout_ns; /* fg_ws_connect_start/accept_start; default 10 s */
	size_t max_msg;		      /* largest message received; default 16 MiB */
	size_t max_queued;	      /* bytes queued for sending; default 16 MiB */
};

#define FG_WS_DEFAULT_PING_INTERVAL_NS	   (10 * 1000000000LL)
#define FG_WS_DEFAULT_PING_TIMEOUT_NS	   (30 * 1000000000LL)
#define FG_WS_DEFAULT_CLOSE_TIMEOUT_NS	   (5 * 1000000000LL)
#define FG_WS_DEFAULT_HANDSHAKE_TIMEOUT_NS (10 * 1000000000LL)
#define FG_WS_DEFAULT_MAX_MSG		   (16u << 20)
#define FG_WS_DEFAULT_MAX_QUEUED	   (16u << 20)

/* Starts a session on fd (connected, non-blocking; owned by the session
 * from now on, even on failure). opts may be NULL. early/early_len are
 * bytes already read from fd after the handshake head (copied); they are
 * processed on the next loop iteration, like anything read later. Returns
 * NULL on allocation failure (fd closed). */
struct fg_ws *fg_ws_new_ex(struct fg_loop *loop, int fd, bool is_client,
			   const struct fg_ws_cbs *cbs, const struct fg_ws_opts *opts,
			   const void *early, size_t early_len, void *data);
static inline struct fg_ws *fg_ws_new(struct fg_loop *loop, int fd, bool is_client,
				      const struct fg_ws_cbs *cbs, void *data)
{
	return fg_ws_new_ex(loop, fd, is_client, cbs, NULL, NULL, 0, data);
}

/* Queues one text message (s need not be NUL-terminated; it must be UTF-8)
 * and starts sending it. Never blocks. Returns 0, -ENOBUFS if the queue
 * would exceed opts.max_queued, -EPIPE once the session is closing or
 * closed, -ENOMEM. */
int fg_ws_send_text(struct fg_ws *ws, const char *s, size_t n);
int fg_ws_send_binary(struct fg_ws *ws, const void *p, size_t n);
/* Bytes queued and not yet written. */
size_t fg_ws_queued_bytes(const struct fg_ws *ws);

/* Starts the closing handshake: sends a close frame with code and reason
 * (NULL for none; cut at 123 bytes), stops delivering messages, and ends
 * the session when the peer answers (or after close_timeout). on_close
 * follows later. Safe from inside any callback; a no-op once closing. */
void fg_ws_close(struct fg_ws *ws, int code, const char *reason);

/* Frees the session; closes the socket if on_close has not happened yet
 * (then on_close is not called). Safe from inside any callback: the memory
 * goes at the end of the loop iteration. NULL is fine. */
void fg_ws_free(struct fg_ws *ws);

void *fg_ws_data(const struct fg_ws *ws);
void fg_ws_set_data(struct fg_ws *ws, void *data);

/* The TLS session under ws (version, peer fingerprint, exporter), or NULL
 * for a plain session or one that has ended. Borrowed. */
struct fg_tls *fg_ws_tls(const struct fg_ws *ws);

/* ---- handshakes ------------------------------------------------------ */

/* Result of a handshake. On success ws is the established session (err 0,
 * http_status 101); it belongs to the callee. On failure ws is NULL, the
 * socket is closed, err is -EACCES (the server answered http_status, or
 * the check refused with it), -EINVAL (bad head), -E2BIG, -ETIMEDOUT,
 * -ECONNRESET (peer closed), or another -errno. The handshake object is
 * gone once this returns. */
typedef void (*fg_ws_open_cb)(struct fg_ws *ws, int err, int http_status, void *data);

/* Server side: sees the parsed request and answers an HTTP status: 101
 * accepts, anything else is sent as the error answer. *session_data starts
 * as the accept's data and becomes the session's data pointer. */
typedef int (*fg_ws_check_cb)(const struct fg_ws_request *req, void **session_data, void *data);

/* Client side: fd is a non-blocking socket, connected or with a connect()
 * in progress; owned from now on. Sends the upgrade request for
 * host/path with the bearer token (may be NULL), checks the answer, and
 * hands the session (with cbs, opts, and data as its data) to cb. Returns
 * the handshake (for fg_ws_hs_cancel) or NULL on allocation failure (fd
 * closed, cb not called). */
struct fg_ws_hs *fg_ws_connect_start(struct fg_loop *loop, int fd, const char *host,
				     const char *path, const char *token,
				     const struct fg_ws_cbs *cbs, const struct fg_ws_opts *opts,
				     fg_ws_open_cb cb, void *data);

/* Server side: fd is an accepted non-blocking socket, owned from now on.
 * Reads the request (a malformed one gets 400), asks check_cb, writes the
 * answer and hands the session (or the failure) to cb. */
struct fg_ws_hs *fg_ws_accept_start(struct fg_loop *loop, int fd, fg_ws_check_cb check_cb,
				    const struct fg_ws_cbs *cbs, const struct fg_ws_opts *opts,
				    fg_ws_open_cb cb, void *data);

/* wss client: like fg_ws_connect_start, with a TLS handshake (client
 * context tls, borrowed; it must outlive the call only) before the
 * upgrade; handshake_timeout covers both. server_name is the name sent as
 * SNI and verified against the certificate; NULL takes it from host (port
 * and IPv6 brackets removed). pin (NULL or "" for none) is the SHA-256
 * fingerprint the server's certificate must have (net/tls.h). TLS
 * failures reach cb as -EKEYREJECTED (we refused the certificate),
 * -EPROTO (TLS failure, including the server refusing us) or -ECONNRESET;
 * an invalid pin or missing server name as -EINVAL (out of memory:
 * -ENOMEM) on the next iteration.
 * fg_ws_hs_error() tells what failed. Returns NULL only on allocation
 * failure (fd closed, cb not called). */
struct fg_ws_hs *fg_ws_connect_tls_start(struct fg_loop *loop, int fd, struct fg_tls_client *tls,
					 const char *server_name, const char *pin, const char *host,
					 const char *path, const char *token,
					 const struct fg_ws_cbs *cbs, const struct fg_ws_opts *opts,
					 fg_ws_open_cb cb, void *data);

/* wss server: like fg_ws_accept_start, with a TLS handshake (server
 * context tls, borrowed) before the request is read. */
struct fg_ws_hs *fg_ws_accept_tls_start(struct fg_loop *loop, int fd, struct fg_tls_server *tls,
					fg_ws_check_cb check_cb, const struct fg_ws_cbs *cbs,
					const struct fg_ws_opts *opts, fg_ws_open_cb cb,
					void *data);

/* What made the handshake fail, in words ("certificate fingerprint
 * mismatch: got AB:.., pinned 12:..", "server answered HTTP 401", "TLS
 * handshake timed out", ...), or NULL. Call it from inside the open
 * callback (the handshake is freed at the end of that loop iteration),
 * with the pointer the start function returned. */
const char *fg_ws_hs_error(const struct fg_ws_hs *hs);

/* Abandons a handshake in progress: closes the socket; cb is not called. */
void fg_ws_hs_cancel(struct fg_ws_hs *hs);

#endif
