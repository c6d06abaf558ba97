/* libFuzzer harness: fg_http_req_parse on arbitrary bytes. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/http_req.h"

#define CHECK(c)                                                                                   \
	do {                                                                                       \
		if (!(c))                                                                          \
			abort();                                                                   \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fg_http_req req;
	int n = fg_http_req_parse((const char *)data, size, &req);
	if (n == -EAGAIN) {
		CHECK(size < FG_HTTP_MAX_HEAD);
		return 0;
	}
	if (n == -EINVAL || n == -E2BIG)
		return 0;
	CHECK(n >= 4 && (size_t)n <= size && n <= FG_HTTP_MAX_HEAD);
	CHECK(memcmp(data + n - 4, "\r\n\r\n", 4) == 0);
	size_t ml = strnlen(req.method, sizeof(req.method));
	CHECK(ml > 0 && ml < sizeof(req.method));
	for (size_t i = 0; i < ml; i++)
		CHECK(req.method[i] >= 'A' && req.method[i] <= 'Z');
	size_t pl = strnlen(req.path, sizeof(req.path));
	CHECK(pl > 0 && pl < sizeof(req.path));
	CHECK(req.minor == 0 || req.minor == 1);
	/* the head alone parses the same */
	struct fg_http_req again;
	CHECK(fg_http_req_parse((const char *)data, (size_t)n, &again) == n);
	CHECK(memcmp(&req, &again, sizeof(req)) == 0);
	return 0;
}
