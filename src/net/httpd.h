/* A minimal HTTP/1.x server on a loop, for small read-only endpoints
 * (/metrics). One request per connection; the response is built whole by
 * the handler. Not for the data path. */
#ifndef FG_NET_HTTPD_H
#define FG_NET_HTTPD_H

#include "core/strbuf.h"

struct fg_loop;
struct fg_httpd;

/* Fills body and content_type for method/path; returns the HTTP status. */
typedef int (*fg_httpd_handler_cb)(void *data, const char *method, const char *path,
				   struct fg_strbuf *body, const char **content_type);

/* addr: "127.0.0.1:9100" style. Returns NULL with err filled. */
struct fg_httpd *fg_httpd_new(struct fg_loop *loop, const char *addr, fg_httpd_handler_cb cb,
			      void *data, char *err, size_t errlen);
void fg_httpd_free(struct fg_httpd *h);

#endif
