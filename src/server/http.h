/* The server's HTTP front: libmicrohttpd driven by our own epoll loop (its
 * epoll fd is one io of the loop, its timeout one timer), with request
 * bodies gathered into one buffer, answers built whole, requests that wait
 * for background work (suspend/resume), and WebSocket upgrades handed over
 * as plain sockets. Loop thread only. */
#ifndef FG_SERVER_HTTP_H
#define FG_SERVER_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct fg_loop;
struct fg_http;
struct fg_http_req;
struct fg_http_upgraded;

#define FG_HTTP_DEFAULT_MAX_BODY (1u << 20)

struct fg_http_opts {
	const char *listen;		/* "127.0.0.1:8080", "[::]:443" */
	const char *tls_cert, *tls_key; /* PEM files; both or neither */
	size_t max_body;		/* 0 = FG_HTTP_DEFAULT_MAX_BODY */
	unsigned conn_limit;		/* 0 = 16000 */
	unsigned timeout_s;		/* idle keep-alive; 0 = 60 */
};

/* What a handler returns. */
enum fg_http_verdict {
	FG_HTTP_DONE,	 /* it answered with fg_http_respond*() / fg_http_upgrade_ws() */
	FG_HTTP_PENDING, /* it keeps req and calls fg_http_resume() later */
};

typedef enum fg_http_verdict (*fg_http_handler_cb)(struct fg_http_req *req, void *data);

/* Starts listening. Returns NULL with a one-line reason in err. */
struct fg_http *fg_http_new(struct fg_loop *loop, const struct fg_http_opts *o,
			    fg_http_handler_cb handler, void *data, char *err, size_t errlen);
/* Answers every pending request with 503, closes every connection. Upgraded
 * connections must have been released before. NULL is fine. */
void fg_http_free(struct fg_http *h);
bool fg_http_is_tls(const struct fg_http *h);
uint16_t fg_http_port(const struct fg_http *h);

/* ---- a request (borrowed; valid until answered and resumed) ---------- */
const char *fg_http_method(const struct fg_http_req *r);
/* The path without the query string, percent-decoding left to the caller. */
const char *fg_http_path(const struct fg_http_req *r);
/* A query argument (decoded), or NULL. */
const char *fg_http_query(const struct fg_http_req *r, const char *key);
/* A request header (case-insensitive name), or NULL. */
const char *fg_http_header(const struct fg_http_req *r, const char *name);
/* The whole body (NUL-terminated for convenience; len excludes the NUL). */
const char *fg_http_body(const struct fg_http_req *r, size_t *len);
/* The client's IP address as text. */
const char *fg_http_peer(const struct fg_http_req *r);
/* Per-request slot for the handler (e.g. state across a PENDING wait). */
void *fg_http_user(const struct fg_http_req *r);
/* free_fn(user) runs when the request ends, however it ends. */
void fg_http_set_user(struct fg_http_req *r, void *user, void (*free_fn)(void *));

/* ---- answers --------------------------------------------------------- */
/* Adds a header to the answer about to be given (before fg_http_respond). */
void fg_http_add_header(struct fg_http_req *r, const char *name, const char *value);
/* Answers with a copy of body. Returns 0 or -ENOMEM (then a bare 500 goes). */
int fg_http_respond(struct fg_http_req *r, int status, const char *content_type, const void *body,
		    size_t len);
/* Answers with len bytes of fd from offset 0; takes fd. */
int fg_http_respond_fd(struct fg_http_req *r, int status, const char *content_type, int fd,
		       uint64_t len);
/* A request answered while PENDING continues. */
void fg_http_resume(struct fg_http_req *r);

/* ---- WebSocket upgrade ----------------------------------------------- */
/* fd: the connection's socket for the new protocol (owned by the callee,
 * non-blocking); early: bytes already read after the request head. The
 * callee calls fg_http_upgraded_release(u) once when done with fd. */
typedef void (*fg_http_upgraded_cb)(int fd, const void *early, size_t early_len,
				    struct fg_http_upgraded *u, void *arg);

/* If r is a valid WebSocket upgrade request, answers 101 and calls cb once
 * the connection is switched; returns 0. Otherwise returns -EINVAL with a
 * static reason in *why and answers nothing. */
int fg_http_upgrade_ws(struct fg_http_req *r, fg_http_upgraded_cb cb, void *arg, const char **why);
void fg_http_upgraded_release(struct fg_http_upgraded *u);

#endif
