/* libFuzzer harness: arbitrary documents into the tunnel schema parser
 * (doc/tunnel.md). It must never crash, leave the set empty on error with
 * a one-line message, and accept a copy of what it accepted as equal. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tunnel/config.h"

#define CHECK(c)                                                                                   \
	do {                                                                                       \
		if (!(c))                                                                          \
			abort();                                                                   \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fg_tunnel_set s;
	char err[FG_ERR_MAX];
	err[0] = 0;
	int rc = fg_tunnel_parse_doc((const char *)data, size, &s, err, sizeof(err));
	if (rc < 0) {
		CHECK(rc == -EINVAL && s.n == 0 && s.v == NULL && err[0] && !strchr(err, '\n'));
		return 0;
	}
	for (size_t i = 0; i < s.n; i++) {
		struct fg_tunnel_cfg c;
		CHECK(fg_tunnel_cfg_copy(&c, &s.v[i]) == 0);
		CHECK(fg_tunnel_cfg_equal(&c, &s.v[i]));
		fg_tunnel_cfg_deinit(&c);
	}
	fg_tunnel_set_free(&s);
	return 0;
}
