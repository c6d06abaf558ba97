/* libFuzzer harness: the WebSocket upgrade request and response parsers on
 * arbitrary bytes (the first byte picks which). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/ws_handshake.h"

#define CHECK(c)                                                                                   \
	do {                                                                                       \
		if (!(c))                                                                          \
			abort();                                                                   \
	} while (0)

static void check_request(const char *buf, size_t len)
{
	struct fg_ws_request r;
	int n = fg_ws_parse_upgrade_request(buf, len, &r);
	if (n == -EINVAL) {
		CHECK(r.why != NULL);
		return;
	}
	if (n == -EAGAIN) {
		CHECK(len < FG_WS_MAX_HEAD);
		return;
	}
	if (n == -E2BIG)
		return;
	CHECK(n >= 4 && (size_t)n <= len && n <= FG_WS_MAX_HEAD);
	CHECK(memcmp(buf + n - 4, "\r\n\r\n", 4) == 0);
	CHECK(r.why == NULL);
	CHECK(strlen(r.key) == FG_WS_KEY_LEN);
	CHECK(r.host[0] != '\0' && r.path[0] != '\0');
	char acc[FG_WS_ACCEPT_LEN + 1];
	CHECK(fg_ws_accept_key(r.key, acc) == 0);
	/* the head alone parses the same */
	struct fg_ws_request again;
	CHECK(fg_ws_parse_upgrade_request(buf, (size_t)n, &again) == n);
	CHECK(memcmp(&r, &again, sizeof(r)) == 0);
	/* what we would answer parses back as a valid response */
	char resp[256];
	int m = fg_ws_build_upgrade_response(resp, sizeof(resp), acc);
	int st;
	CHECK(m > 0 && fg_ws_parse_upgrade_response(resp, (size_t)m, acc, &st) == m && st == 101);
}

static void check_response(const char *buf, size_t len)
{
	int st = -1;
	int n = fg_ws_parse_upgrade_response(buf, len, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", &st);
	if (n == -EAGAIN) {
		CHECK(len < FG_WS_MAX_HEAD && st == 0);
		return;
	}
	if (n == -EACCES) {
		CHECK(st >= 100 && st <= 999 && st != 101);
		return;
	}
	if (n == -EINVAL || n == -E2BIG)
		return;
	CHECK(n >= 4 && (size_t)n <= len && n <= FG_WS_MAX_HEAD && st == 101);
	CHECK(memcmp(buf + n - 4, "\r\n\r\n", 4) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	/* a copy of exactly the input, so ASan sees any overread */
	char *buf = malloc(size - 1 ? size - 1 : 1);
	memcpy(buf, data + 1, size - 1);
	if (data[0] & 1)
		check_response(buf, size - 1);
	else
		check_request(buf, size - 1);
	free(buf);
	return 0;
}
