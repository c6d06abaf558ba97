/* ChaCha20-Poly1305 stream framing (tunnel/aead). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "tunnel/aead.h"

static const uint8_t psk[32] = "0123456789abcdef0123456789abcdef";
static const uint8_t ln[32] = "listener-nonce-listener-nonce-ln";
static const uint8_t dn[32] = "dialer-nonce-dialer-nonce-dialer";

struct pair {
	struct fg_aead_sealer s;
	struct fg_aead_opener o;
};

static void pair_init(struct pair *p)
{
	struct fg_aead_keys d, l;
	assert_int_equal(fg_aead_derive(psk, sizeof(psk), ln, dn, 1, &d), 0);
	assert_int_equal(fg_aead_derive(psk, sizeof(psk), ln, dn, 0, &l), 0);
	assert_int_equal(fg_aead_sealer_init(&p->s, d.tx), 0);
	assert_int_equal(fg_aead_opener_init(&p->o, l.rx), 0);
}

static void pair_deinit(struct pair *p)
{
	fg_aead_sealer_deinit(&p->s);
	fg_aead_opener_deinit(&p->o);
}

static void fill(uint8_t *b, size_t n, uint32_t seed)
{
	for (size_t i = 0; i < n; i++) {
		seed = seed * 1103515245u + 12345u;
		b[i] = (uint8_t)(seed >> 16);
	}
}

/* Opens everything in wire[0..n) fed in chunks of the given size (0 =
 * random sizes); appends plaintext to plain. Returns the last open result
 * (-EAGAIN when all input was used without error). */
static int open_all(struct fg_aead_opener *o, const uint8_t *wire, size_t n, size_t chunk,
		    uint8_t *plain, size_t *plain_len)
{
	static uint8_t out[FG_AEAD_MAX_PAYLOAD];
	size_t off = 0;
	int rc = -EAGAIN;
	while (off < n) {
		size_t c = chunk ? chunk : 1 + (size_t)rand() % 3000;
		if (c > n - off)
			c = n - off;
		size_t pos = 0;
		while (pos < c) {
			size_t used;
			rc = fg_aead_open(o, wire + off + pos, c - pos, &used, out, sizeof(out));
			pos += used;
			if (rc > 0) {
				memcpy(plain + *plain_len, out, (size_t)rc);
				*plain_len += (size_t)rc;
				continue;
			}
			if (rc == -EAGAIN) {
				assert_int_equal(pos, c);
				break;
			}
			return rc;
		}
		off += c;
	}
	return rc > 0 ? -EAGAIN : rc;
}

static void test_aead_keys_differ_per_direction_and_match_across_sides(void **st)
{
	struct fg_aead_keys d, l, other;
	assert_int_equal(fg_aead_derive(psk, sizeof(psk), ln, dn, 1, &d), 0);
	assert_int_equal(fg_aead_derive(psk, sizeof(psk), ln, dn, 0, &l), 0);
	assert_memory_equal(d.tx, l.rx, FG_AEAD_KEY_LEN);
	assert_memory_equal(d.rx, l.tx, FG_AEAD_KEY_LEN);
	assert_memory_not_equal(d.tx, d.rx, FG_AEAD_KEY_LEN);
	/* a fresh nonce on either side gives fresh keys */
	uint8_t dn2[32];
	memcpy(dn2, dn, 32);
	dn2[31] ^= 1;
	assert_int_equal(fg_aead_derive(psk, sizeof(psk), ln, dn2, 1, &other), 0);
	assert_memory_not_equal(d.tx, other.tx, FG_AEAD_KEY_LEN);
	assert_int_equal(fg_aead_derive(psk, 8, ln, dn, 1, &other), -EINVAL);
}

static void test_aead_roundtrip_any_chunking(void **st)
{
	size_t sizes[] = {1, 100, FG_AEAD_MAX_PAYLOAD, FG_AEAD_MAX_PAYLOAD + 1, 100000};
	size_t chunks[] = {1, 7, 18, 19, 4096, 0};
	static uint8_t msg[100000], wire[110000], plain[100000];
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		for (size_t j = 0; j < sizeof(chunks) / sizeof(chunks[0]); j++) {
			struct pair p;
			pair_init(&p);
			fill(msg, sizes[i], (uint32_t)(i * 31 + j));
			int n = fg_aead_seal(&p.s, msg, sizes[i], wire, sizeof(wire));
			assert_int_equal(n, (int)fg_aead_sealed_size(sizes[i]));
			size_t got = 0;
			assert_int_equal(open_all(&p.o, wire, (size_t)n, chunks[j], plain, &got),
					 -EAGAIN);
			assert_int_equal(got, sizes[i]);
			assert_memory_equal(plain, msg, sizes[i]);
			pair_deinit(&p);
		}
	}
}

static void test_aead_tampered_byte_is_ebadmsg_and_session_dead(void **st)
{
	static uint8_t msg[3000], wire[4000], plain[8000];
	fill(msg, sizeof(msg), 7);
	/* every byte position of two frames: length header, payload, tags */
	struct pair ref;
	pair_init(&ref);
	int n1 = fg_aead_seal(&ref.s, msg, 1000, wire, sizeof(wire));
	int n2 = fg_aead_seal(&ref.s, msg, 2000, wire + n1, sizeof(wire) - (size_t)n1);
	pair_deinit(&ref);
	int n = n1 + n2;
	for (int pos = 0; pos < n; pos += (pos < n1 + 40 ? 1 : 97)) {
		struct pair p;
		pair_init(&p);
		static uint8_t w2[4000];
		memcpy(w2, wire, (size_t)n);
		w2[pos] ^= 0x20;
		size_t got = 0;
		int rc = open_all(&p.o, w2, (size_t)n, 0, plain, &got);
		assert_int_equal(rc, -EBADMSG);
		/* frames before the tampered one were fine; nothing after it */
		assert_int_equal(got, pos < n1 ? 0 : 1000);
		/* dead: even the untouched stream is refused now */
		size_t used = 99;
		assert_int_equal(fg_aead_open(&p.o, wire, (size_t)n, &used, plain, sizeof(plain)),
				 -EBADMSG);
		assert_int_equal(used, 0);
		pair_deinit(&p);
	}
}

static void test_aead_reordered_or_replayed_frame_refused(void **st)
{
	struct pair p;
	pair_init(&p);
	uint8_t a[100], b[100], wire[400], plain[FG_AEAD_MAX_PAYLOAD];
	fill(a, 100, 1);
	fill(b, 100, 2);
	int na = fg_aead_seal(&p.s, a, 100, wire, sizeof(wire));
	int nb = fg_aead_seal(&p.s, b, 100, wire + na, sizeof(wire) - (size_t)na);
	assert_int_equal(na, nb);
	/* frame b first: its counters are 2 and 3, the opener expects 0 */
	size_t used;
	assert_int_equal(fg_aead_open(&p.o, wire + na, (size_t)nb, &used, plain, sizeof(plain)),
			 -EBADMSG);
	pair_deinit(&p);

	pair_init(&p);
	na = fg_aead_seal(&p.s, a, 100, wire, sizeof(wire));
	memcpy(wire + na, wire, (size_t)na); /* the same frame twice */
	assert_int_equal(fg_aead_open(&p.o, wire, (size_t)na * 2, &used, plain, sizeof(plain)),
			 100);
	assert_int_equal(
	    fg_aead_open(&p.o, wire + used, (size_t)na * 2 - used, &used, plain, sizeof(plain)),
	    -EBADMSG);
	pair_deinit(&p);
}

static void test_aead_wrong_key_refused(void **st)
{
	struct fg_aead_keys d, l;
	uint8_t other[32];
	memcpy(other, psk, 32);
	other[0] ^= 1;
	assert_int_equal(fg_aead_derive(psk, 32, ln, dn, 1, &d), 0);
	assert_int_equal(fg_aead_derive(other, 32, ln, dn, 0, &l), 0);
	struct fg_aead_sealer s;
	struct fg_aead_opener o;
	assert_int_equal(fg_aead_sealer_init(&s, d.tx), 0);
	assert_int_equal(fg_aead_opener_init(&o, l.rx), 0);
	uint8_t msg[10] = "hello", wire[64], plain[FG_AEAD_MAX_PAYLOAD];
	int n = fg_aead_seal(&s, msg, 5, wire, sizeof(wire));
	size_t used;
	assert_int_equal(fg_aead_open(&o, wire, (size_t)n, &used, plain, sizeof(plain)), -EBADMSG);
	/* the dialer's own rx key cannot open what it sent either */
	fg_aead_opener_deinit(&o);
	assert_int_equal(fg_aead_opener_init(&o, d.rx), 0);
	assert_int_equal(fg_aead_open(&o, wire, (size_t)n, &used, plain, sizeof(plain)), -EBADMSG);
	fg_aead_sealer_deinit(&s);
	fg_aead_opener_deinit(&o);
}

static void test_aead_truncated_frame_waits(void **st)
{
	struct pair p;
	pair_init(&p);
	uint8_t msg[50], wire[200], plain[FG_AEAD_MAX_PAYLOAD];
	fill(msg, 50, 3);
	int n = fg_aead_seal(&p.s, msg, 50, wire, sizeof(wire));
	size_t used;
	assert_int_equal(fg_aead_open(&p.o, wire, (size_t)n - 1, &used, plain, sizeof(plain)),
			 -EAGAIN);
	assert_int_equal(used, (size_t)n - 1);
	assert_int_equal(fg_aead_open(&p.o, wire + n - 1, 1, &used, plain, sizeof(plain)), 50);
	assert_memory_equal(plain, msg, 50);
	pair_deinit(&p);
}

static void test_aead_seal_no_space_changes_nothing(void **st)
{
	struct pair p;
	pair_init(&p);
	uint8_t msg[50] = {0}, wire[200], plain[FG_AEAD_MAX_PAYLOAD];
	assert_int_equal(fg_aead_seal(&p.s, msg, 50, wire, 50 + 33), -ENOSPC);
	int n = fg_aead_seal(&p.s, msg, 50, wire, sizeof(wire));
	assert_int_equal(n, 50 + 34);
	size_t used;
	assert_int_equal(fg_aead_open(&p.o, wire, (size_t)n, &used, plain, sizeof(plain)), 50);
	assert_int_equal(fg_aead_open(&p.o, wire, 0, &used, plain, 100), -EINVAL);
	pair_deinit(&p);
}

static void test_aead_counter_exhaustion_refused_before_wrap(void **st)
{
	struct pair p;
	pair_init(&p);
	uint8_t msg[10] = "x", wire[200], plain[FG_AEAD_MAX_PAYLOAD];
	/* the last frame that fits: counters MAX-1 and MAX */
	fg_aead_sealer_set_counter(&p.s, FG_AEAD_COUNTER_MAX - 1);
	fg_aead_opener_set_counter(&p.o, FG_AEAD_COUNTER_MAX - 1);
	int n = fg_aead_seal(&p.s, msg, 1, wire, sizeof(wire));
	assert_true(n > 0);
	size_t used;
	assert_int_equal(fg_aead_open(&p.o, wire, (size_t)n, &used, plain, sizeof(plain)), 1);
	/* the next would need counter MAX+1: refused, and the sealer stays dead */
	assert_int_equal(fg_aead_seal(&p.s, msg, 1, wire, sizeof(wire)), -EOVERFLOW);
	assert_int_equal(fg_aead_seal(&p.s, msg, 1, wire, sizeof(wire)), -EOVERFLOW);
	assert_int_equal(fg_aead_open(&p.o, wire, 18, &used, plain, sizeof(plain)), -EOVERFLOW);
	pair_deinit(&p);

	/* a multi-frame write that would cross the limit writes nothing */
	pair_init(&p);
	static uint8_t big[FG_AEAD_MAX_PAYLOAD * 2], bw[FG_AEAD_MAX_PAYLOAD * 2 + 100];
	fg_aead_sealer_set_counter(&p.s, FG_AEAD_COUNTER_MAX - 1);
	assert_int_equal(fg_aead_seal(&p.s, big, sizeof(big), bw, sizeof(bw)), -EOVERFLOW);
	pair_deinit(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_aead_keys_differ_per_direction_and_match_across_sides),
	    cmocka_unit_test(test_aead_roundtrip_any_chunking),
	    cmocka_unit_test(test_aead_tampered_byte_is_ebadmsg_and_session_dead),
	    cmocka_unit_test(test_aead_reordered_or_replayed_frame_refused),
	    cmocka_unit_test(test_aead_wrong_key_refused),
	    cmocka_unit_test(test_aead_truncated_frame_waits),
	    cmocka_unit_test(test_aead_seal_no_space_changes_nothing),
	    cmocka_unit_test(test_aead_counter_exhaustion_refused_before_wrap),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
