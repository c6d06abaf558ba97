/* Blocking HTTP/1.1 client for `flowgate ctl` (see http_client.h). */
#include "cli/http_client.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef FG_VERSION
#define FG_VERSION "0.0.0-dev"
#endif

#define HEAD_MAX	   (64 * 1024)
#define DEFAULT_TIMEOUT_MS 30000
#define DEFAULT_MAX_BODY   (256u * 1024 * 1024)
#define CHUNK_SIZE_DIGITS  16

/* ---- response head ------------------------------------------------------ */

static const char *find_head_end(const char *buf, size_t len, size_t *end)
{
	for (size_t i = 0; i + 1 < len; i++) {
		if (buf[i] != '\n')
			continue;
		if (buf[i + 1] == '\n') {
			*end = i + 2;
			return buf + i;
		}
		if (i + 2 < len && buf[i + 1] == '\r' && buf[i + 2] == '\n') {
			*end = i + 3;
			return buf + i;
		}
	}
	return NULL;
}

/* Does the comma-separated list value end with token (case-insensitive)?
 * Transfer-Encoding: chunked must be the last coding. */
static bool last_coding_is(const char *v, size_t vlen, const char *token)
{
	while (vlen && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
		vlen--;
	size_t start = vlen;
	while (start && v[start - 1] != ',' && v[start - 1] != ' ' && v[start - 1] != '\t')
		start--;
	size_t tl = strlen(token);
	return vlen - start == tl && strncasecmp(v + start, token, tl) == 0;
}

int fg_httpc_parse_head(const char *buf, size_t len, struct fg_httpc_head *h)
{
	memset(h, 0, sizeof(*h));
	h->content_length = -1;
	size_t end;
	if (len >= 5 && strncmp(buf, "HTTP/", 5) != 0)
		return -EBADMSG;
	if (!find_head_end(buf, len, &end))
		return len > HEAD_MAX ? -EBADMSG : -EAGAIN;
	if (end > HEAD_MAX)
		return -EBADMSG;
	/* status line: HTTP/1.x SP 3DIGIT [SP reason] */
	if (end < 12 || strncmp(buf, "HTTP/1.", 7) != 0 || !isdigit((unsigned char)buf[7]) ||
	    buf[8] != ' ')
		return -EBADMSG;
	for (int i = 9; i < 12; i++) {
		if (!isdigit((unsigned char)buf[i]))
			return -EBADMSG;
		h->status = h->status * 10 + (buf[i] - '0');
	}
	if (h->status < 100 || (buf[12] != ' ' && buf[12] != '\r' && buf[12] != '\n'))
		return -EBADMSG;
	const char *p = memchr(buf, '\n', end) + 1;
	const char *stop = buf + end;
	while (p < stop) {
		const char *nl = memchr(p, '\n', (size_t)(stop - p));
		size_t llen = (size_t)(nl - p);
		if (llen && p[llen - 1] == '\r')
			llen--;
		if (llen == 0)
			break;
		const char *colon = memchr(p, ':', llen);
		if (!colon || colon == p)
			return -EBADMSG;
		size_t nlen = (size_t)(colon - p);
		const char *v = colon + 1;
		size_t vlen = llen - nlen - 1;
		while (vlen && (*v == ' ' || *v == '\t')) {
			v++;
			vlen--;
		}
		while (vlen && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
			vlen--;
		if (nlen == 14 && strncasecmp(p, "Content-Length", 14) == 0) {
			int64_t cl = 0;
			if (vlen == 0 || vlen > 18)
				return -EBADMSG;
			for (size_t i = 0; i < vlen; i++) {
				if (!isdigit((unsigned char)v[i]))
					return -EBADMSG;
				cl = cl * 10 + (v[i] - '0');
			}
			/* two different lengths: a smuggling attempt or a broken peer */
			if (h->content_length >= 0 && h->content_length != cl)
				return -EBADMSG;
			h->content_length = cl;
		} else if (nlen == 17 && strncasecmp(p, "Transfer-Encoding", 17) == 0) {
			h->chunked = last_coding_is(v, vlen, "chunked");
		} else if (nlen == 12 && strncasecmp(p, "Content-Type", 12) == 0) {
			snprintf(h->content_type, sizeof(h->content_type), "%.*s", (int)vlen, v);
		}
		p = nl + 1;
	}
	/* chunked wins over a length (RFC 9112 6.3) */
	if (h->chunked)
		h->content_length = -1;
	return (int)end;
}

/* ---- chunked bodies ----------------------------------------------------- */

enum {
	CH_SIZE,
	CH_EXT,
	CH_SIZE_LF,
	CH_DATA,
	CH_DATA_CR,
	CH_DATA_LF,
	CH_TRAILER_START,
	CH_TRAILER_LINE,
	CH_END_LF,
	CH_DONE,
};

void fg_httpc_chunked_init(struct fg_httpc_chunked *c)
{
	memset(c, 0, sizeof(*c));
	c->state = CH_SIZE;
}

static int hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* The end of a chunk-size line: data follows, or the trailers. */
static void size_line_done(struct fg_httpc_chunked *c)
{
	c->state = c->left ? CH_DATA : CH_TRAILER_START;
}

int fg_httpc_chunked_feed(struct fg_httpc_chunked *c, const char *in, size_t len,
			  struct fg_strbuf *out, size_t *used)
{
	size_t i = 0;
	*used = 0;
	while (i < len) {
		char ch = in[i];
		switch (c->state) {
		case CH_SIZE: {
			int v = hexval(ch);
			if (v >= 0) {
				if (++c->ndigits > CHUNK_SIZE_DIGITS - 1)
					return -EBADMSG;
				c->left = c->left * 16 + (uint64_t)v;
			} else if (c->ndigits == 0) {
				return -EBADMSG;
			} else if (ch == ';' || ch == ' ' || ch == '\t') {
				c->state = CH_EXT;
			} else if (ch == '\r') {
				c->state = CH_SIZE_LF;
			} else if (ch == '\n') {
				size_line_done(c);
			} else {
				return -EBADMSG;
			}
			i++;
			break;
		}
		case CH_EXT:
			if (ch == '\r')
				c->state = CH_SIZE_LF;
			else if (ch == '\n')
				size_line_done(c);
			i++;
			break;
		case CH_SIZE_LF:
			if (ch != '\n')
				return -EBADMSG;
			size_line_done(c);
			i++;
			break;
		case CH_DATA: {
			size_t n = len - i;
			if (n > c->left)
				n = (size_t)c->left;
			fg_strbuf_append(out, in + i, n);
			if (out->oom)
				return -ENOMEM;
			c->left -= n;
			i += n;
			if (c->left == 0)
				c->state = CH_DATA_CR;
			break;
		}
		case CH_DATA_CR:
			if (ch == '\r') {
				c->state = CH_DATA_LF;
			} else if (ch == '\n') {
				c->state = CH_SIZE;
				c->ndigits = 0;
			} else {
				return -EBADMSG;
			}
			i++;
			break;
		case CH_DATA_LF:
			if (ch != '\n')
				return -EBADMSG;
			c->state = CH_SIZE;
			c->ndigits = 0;
			i++;
			break;
		case CH_TRAILER_START:
			i++;
			if (ch == '\r') {
				c->state = CH_END_LF;
			} else if (ch == '\n') {
				c->state = CH_DONE;
				*used = i;
				return 1;
			} else {
				c->state = CH_TRAILER_LINE;
			}
			break;
		case CH_TRAILER_LINE:
			if (ch == '\n')
				c->state = CH_TRAILER_START;
			i++;
			break;
		case CH_END_LF:
			if (ch != '\n')
				return -EBADMSG;
			c->state = CH_DONE;
			*used = i + 1;
			return 1;
		case CH_DONE: *used = i; return 1;
		}
	}
	*used = i;
	return c->state == CH_DONE ? 1 : 0;
}

/* ---- connection --------------------------------------------------------- */

struct conn {
	int fd;
	SSL_CTX *ctx;
	SSL *ssl;
	int timeout_ms;
	const struct fg_url *url;
};

static void conn_close(struct conn *c)
{
	if (c->ssl) {
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	if (c->ctx) {
		SSL_CTX_free(c->ctx);
		c->ctx = NULL;
	}
	if (c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
	}
}

/* Waits for events on the socket. Returns 0, or -ETIMEDOUT / -errno. */
static int wait_fd(int fd, short events, int timeout_ms)
{
	struct pollfd pfd = {.fd = fd, .events = events};
	for (;;) {
		int n = poll(&pfd, 1, timeout_ms);
		if (n > 0)
			return 0;
		if (n == 0)
			return -ETIMEDOUT;
		if (errno != EINTR)
			return -errno;
	}
}

static void host_port_text(const struct fg_url *u, char *out, size_t len)
{
	snprintf(out, len, "%s%s%s:%u", u->host_is_v6 ? "[" : "", u->host, u->host_is_v6 ? "]" : "",
		 u->port);
}

static int tcp_connect(struct conn *c, char *err, size_t errlen)
{
	const struct fg_url *u = c->url;
	char port[8], where[FG_URL_HOST_MAX + 16];
	snprintf(port, sizeof(port), "%u", u->port);
	host_port_text(u, where, sizeof(where));
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	struct addrinfo *res = NULL;
	int g = getaddrinfo(u->host, port, &hints, &res);
	if (g != 0) {
		snprintf(err, errlen, "cannot resolve %s: %s", u->host,
			 g == EAI_SYSTEM ? strerror(errno) : gai_strerror(g));
		return -EHOSTUNREACH;
	}
	int rc = -ECONNREFUSED, tried = 0;
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		tried++;
		int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
				ai->ai_protocol);
		if (fd < 0) {
			rc = -errno;
			continue;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
			c->fd = fd;
			rc = 0;
			break;
		}
		rc = -errno;
		if (rc == -EINPROGRESS) {
			rc = wait_fd(fd, POLLOUT, c->timeout_ms);
			int soerr = 0;
			socklen_t sl = sizeof(soerr);
			if (rc == 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
				soerr = errno;
			if (rc == 0 && soerr == 0) {
				c->fd = fd;
				break;
			}
			if (rc == 0)
				rc = -soerr;
		}
		close(fd);
	}
	freeaddrinfo(res);
	if (rc < 0 && tried > 1)
		snprintf(err, errlen, "cannot connect to %s: %s (tried its %d addresses)", where,
			 rc == -ETIMEDOUT ? "timed out" : strerror(-rc), tried);
	else if (rc < 0)
		snprintf(err, errlen, "cannot connect to %s: %s", where,
			 rc == -ETIMEDOUT ? "timed out" : strerror(-rc));
	return rc;
}

static void ssl_error_text(char *out, size_t len)
{
	unsigned long e = ERR_get_error();
	if (e)
		ERR_error_string_n(e, out, len);
	else
		snprintf(out, len, "%s", errno ? strerror(errno) : "connection closed");
	ERR_clear_error();
}

/* Drives one SSL call to completion, polling the socket for what OpenSSL
 * wants. Returns the call's positive result, 0 at a clean EOF (reads), or
 * -errno. */
static int ssl_drive(struct conn *c, int (*op)(SSL *, void *, int), void *buf, int len)
{
	for (;;) {
		ERR_clear_error();
		errno = 0;
		int n = op(c->ssl, buf, len);
		if (n > 0)
			return n;
		int e = SSL_get_error(c->ssl, n);
		int rc;
		if (e == SSL_ERROR_WANT_READ)
			rc = wait_fd(c->fd, POLLIN, c->timeout_ms);
		else if (e == SSL_ERROR_WANT_WRITE)
			rc = wait_fd(c->fd, POLLOUT, c->timeout_ms);
		else if (e == SSL_ERROR_ZERO_RETURN)
			return 0;
		else
			return e == SSL_ERROR_SYSCALL && errno ? -errno : -EPROTO;
		if (rc < 0)
			return rc;
	}
}

static int ssl_read_op(SSL *s, void *buf, int len)
{
	return SSL_read(s, buf, len);
}

static int ssl_write_op(SSL *s, void *buf, int len)
{
	return SSL_write(s, buf, len);
}

static int ssl_connect_op(SSL *s, void *buf, int len)
{
	return SSL_connect(s);
}

static bool is_ip_literal(const char *host)
{
	unsigned char a[16];
	return inet_pton(AF_INET, host, a) == 1 || inet_pton(AF_INET6, host, a) == 1;
}

static int tls_start(struct conn *c, const struct fg_httpc_opts *o, char *err, size_t errlen)
{
	const struct fg_url *u = c->url;
	char why[256];
	c->ctx = SSL_CTX_new(TLS_client_method());
	if (!c->ctx) {
		ssl_error_text(why, sizeof(why));
		snprintf(err, errlen, "TLS setup failed: %s", why);
		return -ENOMEM;
	}
	SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
#ifdef SSL_OP_IGNORE_UNEXPECTED_EOF
	/* a server closing without close_notify after a complete response is
	 * common; lengths are checked against Content-Length/chunking anyway */
	SSL_CTX_set_options(c->ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
#endif
	if (!o->insecure) {
		int ok = o->ca_file ? SSL_CTX_load_verify_locations(c->ctx, o->ca_file, NULL)
				    : SSL_CTX_set_default_verify_paths(c->ctx);
		if (ok != 1) {
			ssl_error_text(why, sizeof(why));
			snprintf(err, errlen, "cannot load %s: %s",
				 o->ca_file ? o->ca_file : "the system CA certificates", why);
			return -EINVAL;
		}
		SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
	}
	c->ssl = SSL_new(c->ctx);
	if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1) {
		ssl_error_text(why, sizeof(why));
		snprintf(err, errlen, "TLS setup failed: %s", why);
		return -ENOMEM;
	}
	if (is_ip_literal(u->host)) {
		if (!o->insecure &&
		    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), u->host) != 1) {
			snprintf(err, errlen, "TLS setup failed: bad address %s", u->host);
			return -EINVAL;
		}
	} else {
		SSL_set_tlsext_host_name(c->ssl, u->host);
		if (!o->insecure && SSL_set1_host(c->ssl, u->host) != 1) {
			snprintf(err, errlen, "TLS setup failed: bad host name %s", u->host);
			return -EINVAL;
		}
	}
	int rc = ssl_drive(c, ssl_connect_op, NULL, 0);
	if (rc > 0)
		return 0;
	long vr = SSL_get_verify_result(c->ssl);
	char where[FG_URL_HOST_MAX + 16];
	host_port_text(u, where, sizeof(where));
	if (!o->insecure && vr != X509_V_OK) {
		snprintf(err, errlen,
			 "TLS: the certificate of %s is not trusted: %s (a private CA: --ca FILE)",
			 where, X509_verify_cert_error_string(vr));
		return -EPERM;
	}
	if (rc == -ETIMEDOUT)
		snprintf(err, errlen, "TLS handshake with %s timed out", where);
	else {
		ssl_error_text(why, sizeof(why));
		snprintf(err, errlen, "TLS handshake with %s failed: %s (is it an HTTPS port?)",
			 where, why);
	}
	return rc < 0 ? rc : -EPROTO;
}

static int conn_write(struct conn *c, const char *buf, size_t len)
{
	while (len) {
		int chunk = len > (1u << 30) ? (1 << 30) : (int)len;
		ssize_t n;
		if (c->ssl) {
			n = ssl_drive(c, ssl_write_op, (void *)buf, chunk);
			if (n == 0)
				return -EPIPE;
		} else {
			n = send(c->fd, buf, (size_t)chunk, MSG_NOSIGNAL);
			if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
				int rc = wait_fd(c->fd, POLLOUT, c->timeout_ms);
				if (rc < 0)
					return rc;
				continue;
			}
			if (n < 0)
				return -errno;
		}
		if (n < 0)
			return (int)n;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Returns bytes read, 0 at EOF, or -errno. */
static ssize_t conn_read(struct conn *c, char *buf, size_t len)
{
	if (c->ssl)
		return ssl_drive(c, ssl_read_op, buf, len > INT32_MAX ? INT32_MAX : (int)len);
	for (;;) {
		ssize_t n = recv(c->fd, buf, len, 0);
		if (n >= 0)
			return n;
		if (errno != EAGAIN && errno != EINTR)
			return -errno;
		int rc = wait_fd(c->fd, POLLIN, c->timeout_ms);
		if (rc < 0)
			return rc;
	}
}

/* ---- one request -------------------------------------------------------- */

static int read_response(struct conn *c, size_t max_body, struct fg_httpc_response *resp, char *err,
			 size_t errlen)
{
	struct fg_strbuf raw;
	fg_strbuf_init(&raw);
	struct fg_httpc_head h;
	char buf[16384];
	int rc, hl;
	size_t off = 0; /* start of the current head in raw */
	bool eof = false;
	/* the head; 1xx interim responses are skipped */
	for (;;) {
		hl = raw.len > off ? fg_httpc_parse_head(raw.s + off, raw.len - off, &h) : -EAGAIN;
		if (hl > 0 && h.status >= 200)
			break;
		if (hl > 0) {
			off += (size_t)hl;
			continue;
		}
		if (hl != -EAGAIN) {
			snprintf(err, errlen, "the server's answer is not HTTP/1.1");
			rc = -EBADMSG;
			goto out;
		}
		if (eof) {
			snprintf(err, errlen, "the server closed the connection %s%s",
				 raw.len ? "in the middle of its answer" : "without answering",
				 raw.len || c->ssl ? "" : " (is it an https:// server?)");
			rc = -ECONNRESET;
			goto out;
		}
		ssize_t n = conn_read(c, buf, sizeof(buf));
		if (n < 0) {
			rc = (int)n;
			snprintf(err, errlen, "reading the answer: %s",
				 rc == -ETIMEDOUT ? "timed out" : strerror(-rc));
			goto out;
		}
		if (n == 0)
			eof = true;
		fg_strbuf_append(&raw, buf, (size_t)n);
		if (raw.oom) {
			rc = -ENOMEM;
			snprintf(err, errlen, "out of memory");
			goto out;
		}
	}
	resp->status = h.status;
	snprintf(resp->content_type, sizeof(resp->content_type), "%s", h.content_type);
	const char *rest = raw.s + off + hl;
	size_t rlen = raw.len - off - (size_t)hl;
	bool no_body = h.status == 204 || h.status == 304;
	struct fg_httpc_chunked ch;
	fg_httpc_chunked_init(&ch);
	bool done = no_body || h.content_length == 0;
	if (h.content_length > 0 && (uint64_t)h.content_length > max_body) {
		snprintf(err, errlen, "the answer is too large (%lld bytes)",
			 (long long)h.content_length);
		rc = -EFBIG;
		goto out;
	}
	for (;;) {
		if (!done && rlen) {
			if (h.chunked) {
				size_t used;
				rc = fg_httpc_chunked_feed(&ch, rest, rlen, &resp->body, &used);
				if (rc < 0) {
					snprintf(err, errlen,
						 rc == -ENOMEM ? "out of memory"
							       : "malformed chunked answer");
					goto out;
				}
				done = rc == 1;
			} else {
				size_t n = rlen;
				if (h.content_length >= 0 &&
				    n > (uint64_t)h.content_length - resp->body.len)
					n = (size_t)((uint64_t)h.content_length - resp->body.len);
				fg_strbuf_append(&resp->body, rest, n);
				done = h.content_length >= 0 &&
				       resp->body.len == (uint64_t)h.content_length;
			}
			if (resp->body.oom) {
				rc = -ENOMEM;
				snprintf(err, errlen, "out of memory");
				goto out;
			}
			if (resp->body.len > max_body) {
				rc = -EFBIG;
				snprintf(err, errlen, "the answer is larger than %zu bytes",
					 max_body);
				goto out;
			}
		}
		if (done)
			break;
		if (eof) {
			if (h.chunked || h.content_length >= 0) {
				snprintf(err, errlen,
					 "the server closed the connection in the "
					 "middle of its answer");
				rc = -ECONNRESET;
				goto out;
			}
			break; /* no length: the body ends at EOF */
		}
		ssize_t n = conn_read(c, buf, sizeof(buf));
		if (n < 0) {
			rc = (int)n;
			snprintf(err, errlen, "reading the answer: %s",
				 rc == -ETIMEDOUT ? "timed out" : strerror(-rc));
			goto out;
		}
		eof = n == 0;
		rest = buf;
		rlen = (size_t)n;
	}
	rc = 0;
out:
	fg_strbuf_deinit(&raw);
	return rc;
}

int fg_httpc_request(const struct fg_url *base, const struct fg_httpc_opts *o, const char *method,
		     const char *path, const char *const *headers, const char *body,
		     size_t body_len, struct fg_httpc_response *resp, char *err, size_t errlen)
{
	static const struct fg_httpc_opts defaults = {0};
	if (!o)
		o = &defaults;
	struct conn c = {.fd = -1, .url = base};
	c.timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : DEFAULT_TIMEOUT_MS;
	size_t max_body = o->max_body ? o->max_body : DEFAULT_MAX_BODY;
	memset(resp, 0, sizeof(*resp));
	fg_strbuf_init(&resp->body);
	struct fg_strbuf req;
	fg_strbuf_init(&req);
	int rc = tcp_connect(&c, err, errlen);
	if (rc < 0)
		goto out;
	if (base->tls && (rc = tls_start(&c, o, err, errlen)) < 0)
		goto out;
	char hostport[FG_URL_HOST_MAX + 16];
	if (base->port == (base->tls ? 443 : 80))
		snprintf(hostport, sizeof(hostport), "%s%s%s", base->host_is_v6 ? "[" : "",
			 base->host, base->host_is_v6 ? "]" : "");
	else
		host_port_text(base, hostport, sizeof(hostport));
	fg_strbuf_printf(&req,
			 "%s %s%s HTTP/1.1\r\nHost: %s\r\nUser-Agent: flowgate-ctl/%s\r\n"
			 "Accept: application/json\r\nConnection: close\r\n",
			 method, base->path, path, hostport, FG_VERSION);
	for (size_t i = 0; headers && headers[i]; i++)
		fg_strbuf_printf(&req, "%s\r\n", headers[i]);
	if (body)
		fg_strbuf_printf(&req, "Content-Type: application/json\r\nContent-Length: %zu\r\n",
				 body_len);
	else if (strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
		 strcmp(method, "PATCH") == 0)
		fg_strbuf_puts(&req, "Content-Length: 0\r\n");
	fg_strbuf_puts(&req, "\r\n");
	if (req.oom) {
		rc = -ENOMEM;
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	rc = conn_write(&c, req.s, req.len);
	if (rc == 0 && body && body_len)
		rc = conn_write(&c, body, body_len);
	if (rc < 0) {
		snprintf(err, errlen, "sending the request: %s",
			 rc == -ETIMEDOUT ? "timed out" : strerror(-rc));
		goto out;
	}
	rc = read_response(&c, max_body, resp, err, errlen);
out:
	if (req.s)
		memset(req.s, 0, req.len); /* it held the bearer token */
	fg_strbuf_deinit(&req);
	conn_close(&c);
	if (rc < 0)
		fg_httpc_response_free(resp);
	return rc;
}

void fg_httpc_response_free(struct fg_httpc_response *r)
{
	if (r->body.s)
		memset(r->body.s, 0, r->body.len); /* answers may hold tokens */
	fg_strbuf_deinit(&r->body);
	r->status = 0;
}
