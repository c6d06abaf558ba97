/* libFuzzer harness: the certificate pin parser (net/tls) on arbitrary
 * bytes. What it accepts must format back to the canonical form and parse
 * to the same fingerprint. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/tls.h"

#define CHECK(c)                                                                                   \
	do {                                                                                       \
		if (!(c))                                                                          \
			abort();                                                                   \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char s[256];
	if (size >= sizeof(s))
		return 0;
	memcpy(s, data, size);
	s[size] = 0;
	uint8_t fp[FG_TLS_FP_LEN], again[FG_TLS_FP_LEN];
	if (fg_tls_parse_pin(s, fp) < 0)
		return 0;
	CHECK(strlen(s) == 64 || strlen(s) == 95);
	char canon[FG_TLS_FP_STRLEN];
	fg_tls_format_fp(fp, canon);
	CHECK(strlen(canon) == 95);
	CHECK(fg_tls_parse_pin(canon, again) == 0);
	CHECK(memcmp(fp, again, sizeof(fp)) == 0);
	CHECK(strcasecmp(canon, s) == 0 || strlen(s) == 64);
	return 0;
}
