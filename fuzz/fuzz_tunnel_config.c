/* libFuzzer harness: arbitrary documents into the tunnel schema parser
 * (doc/tunnel.md). It must never crash, leave the set empty on error with
 * a one-line message, accept a copy of what it accepted as equal, and
 * dial every link with one of the keys the link accepts. */
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
		CHECK(fg_tunnel_cfg_equal_but_keys(&c, &s.v[i]));
		/* every link dials with a key it also accepts */
		const struct fg_tunnel_link_cfg *lk[2] = {&c.prev, &c.next};
		for (int k = 0; k < 2; k++) {
			const struct fg_tunnel_key *dk =
			    lk[k]->present ? fg_tunnel_link_key(lk[k], lk[k]->psk_id) : NULL;
			CHECK(!lk[k]->present || (dk && dk->len == lk[k]->psk_len &&
						  memcmp(dk->key, lk[k]->psk, dk->len) == 0));
		}
		fg_tunnel_cfg_deinit(&c);
	}
	fg_tunnel_set_free(&s);
	return 0;
}
