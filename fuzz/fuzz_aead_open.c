/* libFuzzer harness: arbitrary ciphertext into the AEAD opener, fed in
 * chunks whose sizes come from the input. Odd first byte: the input is
 * sealed instead and must open back identically under the same chunking,
 * with one byte flipped when the second byte says so (then it must fail). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tunnel/aead.h"

#define CHECK(c)                                                                                   \
	do {                                                                                       \
		if (!(c))                                                                          \
			abort();                                                                   \
	} while (0)

static const uint8_t key[FG_AEAD_KEY_LEN] = "fuzz-key-fuzz-key-fuzz-key-fuzz";

/* Feeds wire in chunks of 1 + (chunk-1) bytes; returns the final status and
 * appends plaintext to plain. */
static int feed(struct fg_aead_opener *o, const uint8_t *wire, size_t n, size_t chunk,
		uint8_t *plain, size_t *plen)
{
	static uint8_t out[FG_AEAD_MAX_PAYLOAD];
	size_t off = 0;
	while (off < n) {
		size_t c = chunk < n - off ? chunk : n - off;
		size_t pos = 0;
		while (pos < c) {
			size_t used = 0;
			int rc =
			    fg_aead_open(o, wire + off + pos, c - pos, &used, out, sizeof(out));
			CHECK(used <= c - pos);
			pos += used;
			if (rc > 0) {
				CHECK(rc <= FG_AEAD_MAX_PAYLOAD);
				if (plain)
					memcpy(plain + *plen, out, (size_t)rc);
				*plen += (size_t)rc;
				continue;
			}
			if (rc == -EAGAIN) {
				CHECK(pos == c);
				break;
			}
			CHECK(rc == -EBADMSG || rc == -EPROTO);
			/* dead for good, reads nothing */
			CHECK(fg_aead_open(o, wire, n, &used, out, sizeof(out)) == rc && used == 0);
			return rc;
		}
		off += c;
	}
	return -EAGAIN;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	size_t chunk = 1 + data[1] % 64 * 37;
	struct fg_aead_opener o;
	CHECK(fg_aead_opener_init(&o, key) == 0);
	if (!(data[0] & 1)) {
		size_t got = 0;
		feed(&o, data + 2, size - 2, chunk, NULL, &got);
		/* random bytes never authenticate */
		CHECK(got == 0);
		fg_aead_opener_deinit(&o);
		return 0;
	}
	size_t n = size - 2;
	uint8_t *wire = malloc(fg_aead_sealed_size(n) + 1);
	uint8_t *plain = malloc(n + 1);
	struct fg_aead_sealer s;
	CHECK(fg_aead_sealer_init(&s, key) == 0);
	int w = fg_aead_seal(&s, data + 2, n, wire, fg_aead_sealed_size(n));
	CHECK(w == (int)fg_aead_sealed_size(n));
	size_t got = 0;
	if (w > 0 && (data[0] & 2)) {
		wire[data[1] % w] ^= (uint8_t)(data[0] | 1);
		CHECK(feed(&o, wire, (size_t)w, chunk, plain, &got) == -EBADMSG);
	} else {
		CHECK(feed(&o, wire, (size_t)w, chunk, plain, &got) == -EAGAIN);
		CHECK(got == n && memcmp(plain, data + 2, n) == 0);
	}
	fg_aead_sealer_deinit(&s);
	fg_aead_opener_deinit(&o);
	free(wire);
	free(plain);
	return 0;
}
