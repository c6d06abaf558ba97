/* The request head of a minimal HTTP/1.x server (the /metrics endpoint).
 * Pure parser over (buf, len). */
#ifndef FG_NET_HTTP_REQ_H
#define FG_NET_HTTP_REQ_H

#include <stddef.h>

#define FG_HTTP_MAX_HEAD 8192

struct fg_http_req {
	char method[16];
	char path[256];
	int minor; /* HTTP/1.minor */
};

/* The end of an HTTP head (just past the blank line), or NULL. */
const char *fg_http_head_end(const char *buf, size_t len);

/* Returns the length of the complete head (through the blank line),
 * -EAGAIN if more bytes are needed, -EINVAL if malformed, -E2BIG if the
 * head is over FG_HTTP_MAX_HEAD. */
int fg_http_req_parse(const char *buf, size_t len, struct fg_http_req *out);

#endif
