/* libFuzzer harness: fg_config_parse (the JSON forwards document). A parsed
 * set must pass its own checks and compare equal to a deep copy; a rejected
 * one leaves an empty set and one error line. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fwd/config.h"

#define CHECK(c)                                                                                   \
	do {                                                                                       \
		if (!(c))                                                                          \
			abort();                                                                   \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fg_forward_set set;
	char err[FG_ERR_MAX];
	err[0] = '\0';
	int rc = fg_config_parse((const char *)data, size, &set, err, sizeof(err));
	if (rc) {
		CHECK(rc == -EINVAL);
		CHECK(set.v == NULL && set.n == 0);
		CHECK(err[0] != '\0');
		for (const char *p = err; *p; p++) /* one line, printable */
			CHECK((unsigned char)*p >= 0x20 && *p != 0x7f);
		return 0;
	}
	char err2[FG_ERR_MAX];
	CHECK(fg_forward_set_check(&set, err2, sizeof(err2)) == 0);
	for (size_t i = 0; i < set.n; i++) {
		const struct fg_forward_cfg *c = &set.v[i];
		CHECK(c->name[0] != '\0' && strlen(c->name) <= FG_NAME_MAX);
		CHECK(c->listen.is_ip);
		CHECK(c->listen.port_lo >= 1 && c->listen.port_lo <= c->listen.port_hi);
		CHECK(c->ntargets >= 1 && c->ntargets <= FG_MAX_TARGETS);
		for (size_t t = 0; t < c->ntargets; t++)
			CHECK(c->targets[t].port_lo >= 1 &&
			      c->targets[t].port_lo <= c->targets[t].port_hi);
		CHECK(fg_forward_cfg_check(c, "f", err2, sizeof(err2)) == 0);
		CHECK(fg_forward_cfg_equal(c, c));
		struct fg_forward_cfg copy;
		CHECK(fg_forward_cfg_copy(&copy, c) == 0);
		CHECK(fg_forward_cfg_equal(c, &copy) && fg_forward_cfg_equal(&copy, c));
		copy.max_conns ^= 1;
		CHECK(!fg_forward_cfg_equal(c, &copy));
		fg_forward_cfg_deinit(&copy);
	}
	fg_forward_set_free(&set);
	CHECK(set.v == NULL && set.n == 0);
	return 0;
}
