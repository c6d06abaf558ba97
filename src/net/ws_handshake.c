#include "net/ws_handshake.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "net/http_req.h"

static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* A borrowed span of the input. */
struct span {
	const char *p;
	size_t n;
};

void fg_ws_key_encode(const uint8_t nonce[16], char out[FG_WS_KEY_LEN + 1])
{
	EVP_EncodeBlock((unsigned char *)out, nonce, 16);
	out[FG_WS_KEY_LEN] = '\0';
}

int fg_ws_accept_key(const char *client_key, char out[FG_WS_ACCEPT_LEN + 1])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	bool ok = c && EVP_DigestInit_ex(c, EVP_sha1(), NULL) &&
		  EVP_DigestUpdate(c, client_key, strlen(client_key)) &&
		  EVP_DigestUpdate(c, ws_guid, sizeof(ws_guid) - 1) &&
		  EVP_DigestFinal_ex(c, md, &mdlen) && mdlen == 20;
	EVP_MD_CTX_free(c);
	if (!ok) {
		out[0] = '\0';
		return -EINVAL;
	}
	EVP_EncodeBlock((unsigned char *)out, md, 20);
	out[FG_WS_ACCEPT_LEN] = '\0';
	return 0;
}

static bool is_tchar(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

static struct span trim(struct span s)
{
	while (s.n && (s.p[0] == ' ' || s.p[0] == '\t')) {
		s.p++;
		s.n--;
	}
	while (s.n && (s.p[s.n - 1] == ' ' || s.p[s.n - 1] == '\t'))
		s.n--;
	return s;
}

static bool span_ieq(struct span s, const char *lit)
{
	size_t n = strlen(lit);
	return s.n == n && strncasecmp(s.p, lit, n) == 0;
}

/* Does the comma-separated list s hold token tok (case-insensitive)? */
static bool list_has(struct span s, const char *tok)
{
	const char *p = s.p, *end = s.p + s.n;
	while (p <= end) {
		const char *c = memchr(p, ',', (size_t)(end - p));
		if (!c)
			c = end;
		if (span_ieq(trim((struct span){p, (size_t)(c - p)}), tok))
			return true;
		p = c + 1;
	}
	return false;
}

static int copy_span(char *dst, size_t cap, struct span s)
{
	if (s.n >= cap)
		return -1;
	memcpy(dst, s.p, s.n);
	dst[s.n] = '\0';
	return 0;
}

/* Walks the header lines of a complete head. *p starts after the first
 * line's CRLF; end points at the final blank line's CRLF. Returns 1 with a
 * header, 0 at the end, -1 if a line is malformed. */
static int next_header(const char **p, const char *end, struct span *name, struct span *value)
{
	if (*p >= end)
		return 0;
	const char *eol = memchr(*p, '\r', (size_t)(end - *p));
	if (!eol || eol[1] != '\n')
		return -1;
	const char *line = *p;
	*p = eol + 2;
	const char *colon = memchr(line, ':', (size_t)(eol - line));
	if (!colon || colon == line)
		return -1;
	for (const char *c = line; c < colon; c++)
		if (!is_tchar((unsigned char)*c))
			return -1; /* also rejects obs-fold and space before ':' */
	for (const char *c = colon + 1; c < eol; c++) {
		unsigned char u = (unsigned char)*c;
		if ((u < 0x20 && u != '\t') || u == 0x7f)
			return -1;
	}
	*name = (struct span){line, (size_t)(colon - line)};
	*value = trim((struct span){colon + 1, (size_t)(eol - colon - 1)});
	return 1;
}

static bool key_valid(struct span k)
{
	if (k.n != FG_WS_KEY_LEN || k.p[22] != '=' || k.p[23] != '=')
		return false;
	for (size_t i = 0; i < 22; i++)
		if (!strchr(b64, k.p[i]) || !k.p[i])
			return false;
	return true;
}

#define REJECT(msg)                                                                                \
	do {                                                                                       \
		out->why = (msg);                                                                  \
		return -EINVAL;                                                                    \
	} while (0)

int fg_ws_parse_upgrade_request(const char *buf, size_t len, struct fg_ws_request *out)
{
	memset(out, 0, sizeof(*out));
	struct fg_http_req rl;
	int head = fg_http_req_parse(buf, len, &rl);
	if (head == -EINVAL)
		REJECT("malformed request line");
	if (head < 0)
		return head;
	if (strcmp(rl.method, "GET") != 0)
		REJECT("method is not GET");
	if (rl.minor != 1)
		REJECT("not HTTP/1.1");
	memcpy(out->path, rl.path, sizeof(out->path));

	const char *rl_end = memchr(buf, '\r', (size_t)head);
	if (rl_end[1] != '\n')
		REJECT("malformed request line");
	const char *p = rl_end + 2;
	const char *end = buf + head - 2;
	struct span name, value;
	bool host = false, upgrade = false, conn = false, version = false, key = false;
	int r;
	while ((r = next_header(&p, end, &name, &value)) > 0) {
		if (span_ieq(name, "Host")) {
			if (host)
				REJECT("duplicate Host");
			if (!value.n || copy_span(out->host, sizeof(out->host), value) < 0)
				REJECT("bad Host");
			host = true;
		} else if (span_ieq(name, "Upgrade")) {
			if (list_has(value, "websocket"))
				upgrade = true;
		} else if (span_ieq(name, "Connection")) {
			if (list_has(value, "upgrade"))
				conn = true;
		} else if (span_ieq(name, "Sec-WebSocket-Version")) {
			if (version)
				REJECT("duplicate Sec-WebSocket-Version");
			if (!span_ieq(value, "13"))
				REJECT("Sec-WebSocket-Version is not 13");
			version = true;
		} else if (span_ieq(name, "Sec-WebSocket-Key")) {
			if (key)
				REJECT("duplicate Sec-WebSocket-Key");
			if (!key_valid(value))
				REJECT("Sec-WebSocket-Key is not base64 of 16 bytes");
			copy_span(out->key, sizeof(out->key), value);
			key = true;
		} else if (span_ieq(name, "Authorization")) {
			if (out->has_authorization)
				REJECT("duplicate Authorization");
			out->has_authorization = 1;
			/* "Bearer" SP token; any other scheme leaves token empty */
			if (value.n > 7 && strncasecmp(value.p, "Bearer ", 7) == 0) {
				struct span t = trim((struct span){value.p + 7, value.n - 7});
				if (copy_span(out->token, sizeof(out->token), t) < 0)
					REJECT("bearer token too long");
			}
		} else if (span_ieq(name, "Sec-WebSocket-Protocol")) {
			if (!out->protocol[0] &&
			    copy_span(out->protocol, sizeof(out->protocol), value) < 0)
				REJECT("Sec-WebSocket-Protocol too long");
		}
	}
	if (r < 0)
		REJECT("malformed header line");
	if (!host)
		REJECT("missing Host");
	if (!upgrade)
		REJECT("Upgrade is not websocket");
	if (!conn)
		REJECT("Connection lacks upgrade");
	if (!version)
		REJECT("missing Sec-WebSocket-Version");
	if (!key)
		REJECT("missing Sec-WebSocket-Key");
	return head;
}

#undef REJECT

int fg_ws_parse_upgrade_response(const char *buf, size_t len, const char *expected_accept,
				 int *status)
{
	*status = 0;
	const char *hend = fg_http_head_end(buf, len);
	if (!hend)
		return len >= FG_WS_MAX_HEAD ? -E2BIG : -EAGAIN;
	size_t head = (size_t)(hend - buf);
	if (head > FG_WS_MAX_HEAD)
		return -E2BIG;
	/* "HTTP/1.1 101 Switching Protocols" */
	const char *eol = memchr(buf, '\r', head);
	size_t l = (size_t)(eol - buf);
	if (eol[1] != '\n')
		return -EINVAL;
	if (l < 12 || memcmp(buf, "HTTP/1.", 7) != 0 || (buf[7] != '0' && buf[7] != '1') ||
	    buf[8] != ' ' || (l > 12 && buf[12] != ' '))
		return -EINVAL;
	int st = 0;
	for (int i = 9; i < 12; i++) {
		if (buf[i] < '0' || buf[i] > '9')
			return -EINVAL;
		st = st * 10 + (buf[i] - '0');
	}
	if (st < 100)
		return -EINVAL;
	for (const char *c = buf; c < eol; c++)
		if ((unsigned char)*c < 0x20 && *c != '\t')
			return -EINVAL;
	*status = st;

	const char *p = eol + 2, *end = buf + head - 2;
	struct span name, value;
	bool upgrade = false, conn = false, accept = false;
	int r;
	while ((r = next_header(&p, end, &name, &value)) > 0) {
		if (span_ieq(name, "Upgrade")) {
			if (list_has(value, "websocket"))
				upgrade = true;
		} else if (span_ieq(name, "Connection")) {
			if (list_has(value, "upgrade"))
				conn = true;
		} else if (span_ieq(name, "Sec-WebSocket-Accept")) {
			if (accept)
				return -EINVAL;
			if (value.n != strlen(expected_accept) ||
			    memcmp(value.p, expected_accept, value.n) != 0)
				return -EINVAL;
			accept = true;
		} else if (span_ieq(name, "Sec-WebSocket-Extensions")) {
			if (st == 101)
				return -EINVAL; /* we offered none */
		}
	}
	if (r < 0)
		return -EINVAL;
	if (st != 101)
		return -EACCES;
	if (buf[7] != '1' || !upgrade || !conn || !accept)
		return -EINVAL;
	return (int)head;
}

/* A header value or path must not carry CR, LF or other control bytes. */
static bool clean(const char *s, bool allow_space)
{
	for (; *s; s++) {
		unsigned char u = (unsigned char)*s;
		if (u < 0x20 || u == 0x7f || (!allow_space && u == ' '))
			return false;
	}
	return true;
}

static int fit(int n, size_t cap)
{
	if (n < 0)
		return -EINVAL;
	if ((size_t)n >= cap)
		return -ENOSPC;
	return n;
}

int fg_ws_build_upgrade_request(char *buf, size_t cap, const char *host, const char *path,
				const char *key, const char *bearer_token)
{
	if (!*host || !*path || path[0] != '/' || !clean(host, false) || !clean(path, false) ||
	    !clean(key, false) || (bearer_token && !clean(bearer_token, false)))
		return -EINVAL;
	int n = snprintf(buf, cap,
			 "GET %s HTTP/1.1\r\n"
			 "Host: %s\r\n"
			 "Upgrade: websocket\r\n"
			 "Connection: Upgrade\r\n"
			 "Sec-WebSocket-Key: %s\r\n"
			 "Sec-WebSocket-Version: 13\r\n"
			 "%s%s%s"
			 "\r\n",
			 path, host, key, bearer_token ? "Authorization: Bearer " : "",
			 bearer_token ? bearer_token : "", bearer_token ? "\r\n" : "");
	return fit(n, cap);
}

int fg_ws_build_upgrade_response(char *buf, size_t cap, const char *accept_key)
{
	if (!clean(accept_key, false))
		return -EINVAL;
	int n = snprintf(buf, cap,
			 "HTTP/1.1 101 Switching Protocols\r\n"
			 "Upgrade: websocket\r\n"
			 "Connection: Upgrade\r\n"
			 "Sec-WebSocket-Accept: %s\r\n"
			 "\r\n",
			 accept_key);
	return fit(n, cap);
}

const char *fg_ws_status_phrase(int status)
{
	switch (status) {
	case 101: return "Switching Protocols";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 426: return "Upgrade Required";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 503: return "Service Unavailable";
	default: return "Error";
	}
}

int fg_ws_build_error_response(char *buf, size_t cap, int status, const char *reason)
{
	if (status < 200 || status > 999)
		return -EINVAL;
	if (!reason)
		reason = fg_ws_status_phrase(status);
	if (!clean(reason, true))
		return -EINVAL;
	const char *extra = status == 401   ? "WWW-Authenticate: Bearer\r\n"
			    : status == 426 ? "Sec-WebSocket-Version: 13\r\n"
					    : "";
	int n = snprintf(buf, cap,
			 "HTTP/1.1 %d %s\r\n"
			 "%s"
			 "Content-Length: 0\r\n"
			 "Connection: close\r\n"
			 "\r\n",
			 status, reason, extra);
	return fit(n, cap);
}
