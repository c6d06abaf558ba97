/* A small blocking HTTP/1.1 client for `flowgate ctl`: one request per
 * connection (Connection: close), plain TCP or TLS (OpenSSL, certificates
 * checked against the system CAs or a given CA file), IPv4/IPv6 and host
 * names, Content-Length, chunked and read-to-EOF bodies, a timeout on
 * connecting and on every read or write. Not for the data path: it blocks.
 *
 * The parsers (fg_url_parse, fg_httpc_parse_head, fg_httpc_chunked_feed)
 * are pure functions over their input, unit-tested on their own. */
#ifndef FG_CLI_HTTP_CLIENT_H
#define FG_CLI_HTTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/strbuf.h"
#include "net/url.h"

/* The parts of a response head the client acts on. */
struct fg_httpc_head {
	int status;
	int64_t content_length; /* -1: not given */
	bool chunked;
	char content_type[128];
};

/* Parses a response head (status line + headers + empty line) at the start
 * of buf. Returns the head's length in bytes, -EAGAIN if buf does not hold
 * a whole head yet, -EBADMSG if it is not HTTP/1.x. */
int fg_httpc_parse_head(const char *buf, size_t len, struct fg_httpc_head *h);

/* Incremental decoder of a chunked body (RFC 9112 7.1): chunk extensions
 * and trailers are skipped. */
struct fg_httpc_chunked {
	int state;
	uint64_t left;	  /* bytes still to copy from the current chunk */
	unsigned ndigits; /* hex digits of the size seen so far */
};

void fg_httpc_chunked_init(struct fg_httpc_chunked *c);
/* Feeds in[0, len): payload bytes are appended to out, *used is set to the
 * bytes consumed. Returns 1 once the last chunk and trailers are complete
 * (bytes after them are not consumed), 0 when it needs more input,
 * -EBADMSG on a malformed body, -ENOMEM if out ran out of memory. */
int fg_httpc_chunked_feed(struct fg_httpc_chunked *c, const char *in, size_t len,
			  struct fg_strbuf *out, size_t *used);

struct fg_httpc_opts {
	const char *ca_file; /* PEM bundle to trust instead of the system CAs; NULL = system */
	bool insecure;	     /* TLS without certificate checks (the caller warns) */
	int timeout_ms;	     /* connect, and each read/write; 0 = 30 s */
	size_t max_body;     /* 0 = 256 MiB */
};

struct fg_httpc_response {
	int status;
	char content_type[128];
	struct fg_strbuf body; /* owned; body.s may be NULL when empty */
};

/* Sends one request to base + path (path starts with '/'; base's prefix is
 * put in front) and reads the whole response. headers: NULL-terminated
 * "Name: value" lines, may be NULL. body may be NULL (no Content-Length is
 * sent for GET/DELETE then). Returns 0 with *resp filled (any status), or a
 * negative errno with a one-line reason in err (could not resolve, connect,
 * verify the certificate, time out, malformed response). */
int fg_httpc_request(const struct fg_url *base, const struct fg_httpc_opts *o, const char *method,
		     const char *path, const char *const *headers, const char *body,
		     size_t body_len, struct fg_httpc_response *resp, char *err, size_t errlen);
void fg_httpc_response_free(struct fg_httpc_response *r);

#endif
