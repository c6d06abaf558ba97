/* libFuzzer harness: the ctl HTTP client's parsers on arbitrary bytes —
 * a response head, then the rest as a chunked body fed in two pieces (the
 * result must not depend on where reads split), and the first line as a
 * server URL. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli/http_client.h"

#define CHECK(c)                                                                                   \
	do {                                                                                       \
		if (!(c))                                                                          \
			abort();                                                                   \
	} while (0)

static int decode(const char *in, size_t len, size_t split, struct fg_strbuf *out, size_t *used)
{
	struct fg_httpc_chunked c;
	size_t u1 = 0, u2 = 0;
	fg_httpc_chunked_init(&c);
	int rc = fg_httpc_chunked_feed(&c, in, split, out, &u1);
	CHECK(u1 <= split);
	if (rc == 0) {
		CHECK(u1 == split);
		rc = fg_httpc_chunked_feed(&c, in + split, len - split, out, &u2);
		CHECK(u2 <= len - split);
	}
	*used = u1 + u2;
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data;
	struct fg_httpc_head h;
	int n = fg_httpc_parse_head(in, size, &h);
	CHECK(n == -EAGAIN || n == -EBADMSG || (n > 0 && (size_t)n <= size));
	if (n > 0) {
		CHECK(h.status >= 100 && h.status <= 999);
		CHECK(!h.chunked || h.content_length == -1);
		CHECK(strlen(h.content_type) < sizeof(h.content_type));
	}

	struct fg_strbuf a, b;
	size_t ua, ub;
	fg_strbuf_init(&a);
	fg_strbuf_init(&b);
	int ra = decode(in, size, size, &a, &ua);
	int rb = decode(in, size, size / 2, &b, &ub);
	CHECK(ra == rb);
	CHECK(a.len <= size);
	if (ra == 1) {
		CHECK(ua == ub);
		CHECK(a.len == b.len && (a.len == 0 || memcmp(a.s, b.s, a.len) == 0));
	}
	fg_strbuf_deinit(&a);
	fg_strbuf_deinit(&b);

	char line[2048];
	const char *nl = memchr(in, '\n', size);
	size_t ll = nl ? (size_t)(nl - in) : size;
	if (ll < sizeof(line)) {
		memcpy(line, in, ll);
		line[ll] = 0;
		struct fg_url u;
		const char *why = NULL;
		if (fg_url_parse(line, &u, &why) == 0) {
			char out[FG_URL_HOST_MAX + FG_URL_PATH_MAX + 32];
			struct fg_url again;
			fg_url_format(&u, out, sizeof(out));
			/* the canonical form parses back to the same URL */
			CHECK(fg_url_parse(out, &again, &why) == 0);
			CHECK(again.tls == u.tls && again.port == u.port &&
			      strcmp(again.host, u.host) == 0 && strcmp(again.path, u.path) == 0);
		} else {
			CHECK(why != NULL);
		}
	}
	return 0;
}
