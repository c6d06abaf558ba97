/* tunnel/wsframe: the ws/wss transports' binary framing. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "tunnel/wsframe.h"

/* Decodes all of buf (one byte at a time when bytewise) and returns the data
 * bytes collected, or the first error. */
static int decode_all(struct fg_wsf_dec *d, uint8_t *buf, size_t len, int bytewise, uint8_t *out,
		      size_t *outlen, int *last_ev)
{
	size_t off = 0;
	*outlen = 0;
	while (off < len) {
		size_t n = bytewise ? 1 : len - off;
		uint8_t *p = buf + off;
		off += n;
		while (n) {
			size_t used = 0, dlen = 0;
			uint8_t *dp = NULL;
			int ev = fg_wsf_decode(d, p, n, &used, &dp, &dlen);
			if (ev < 0)
				return ev;
			*last_ev = ev;
			if (ev == FG_WSF_DATA) {
				memcpy(out + *outlen, dp, dlen);
				*outlen += dlen;
			}
			p += used;
			n -= used;
			if (ev == FG_WSF_NEED)
				break;
		}
	}
	return 0;
}

static void test_wsframe_rfc6455_masked_example_unmasks(void **state)
{
	(void)state;
	/* RFC 6455 5.7 "Hello", masked, as a binary frame */
	uint8_t f[] = {0x82, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
	for (int bw = 0; bw < 2; bw++) {
		uint8_t b[sizeof(f)], out[16];
		size_t n;
		int ev = -1;
		memcpy(b, f, sizeof(f));
		struct fg_wsf_dec d;
		fg_wsf_dec_init(&d, true);
		assert_int_equal(decode_all(&d, b, sizeof(b), bw, out, &n, &ev), 0);
		assert_int_equal(n, 5);
		assert_memory_equal(out, "Hello", 5);
	}
}

static void test_wsframe_header_lengths_round_trip(void **state)
{
	(void)state;
	static uint8_t payload[70000], wire[70100], out[70000];
	size_t sizes[] = {0, 1, 125, 126, 65535, 65536, 70000};
	for (size_t i = 0; i < sizeof(payload); i++)
		payload[i] = (uint8_t)(i * 7);
	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		for (int masked = 0; masked < 2; masked++) {
			uint8_t mask[4] = {1, 2, 3, 4};
			size_t h =
			    fg_wsf_header(wire, FG_WSF_OP_BINARY, sizes[k], masked ? mask : NULL);
			assert_int_equal(h, (sizes[k] < 126	  ? 2
					     : sizes[k] <= 0xffff ? 4
								  : 10) +
						(masked ? 4 : 0));
			memcpy(wire + h, payload, sizes[k]);
			if (masked)
				fg_wsf_mask(wire + h, sizes[k], mask, 0);
			struct fg_wsf_dec d;
			fg_wsf_dec_init(&d, masked);
			size_t n;
			int ev = -1;
			assert_int_equal(decode_all(&d, wire, h + sizes[k], 0, out, &n, &ev), 0);
			assert_int_equal(n, sizes[k]);
			assert_memory_equal(out, payload, sizes[k]);
		}
	}
}

static void test_wsframe_control_frames(void **state)
{
	(void)state;
	uint8_t b[] = {0x89, 0x02, 'h', 'i', 0x8A, 0x00, 0x88, 0x02, 0x03, 0xe8};
	struct fg_wsf_dec d;
	fg_wsf_dec_init(&d, false);
	size_t used, dlen;
	uint8_t *dp;
	assert_int_equal(fg_wsf_decode(&d, b, sizeof(b), &used, &dp, &dlen), FG_WSF_PING);
	assert_int_equal(d.ctrl_len, 2);
	assert_memory_equal(d.ctrl, "hi", 2);
	size_t off = used;
	assert_int_equal(fg_wsf_decode(&d, b + off, sizeof(b) - off, &used, &dp, &dlen),
			 FG_WSF_PONG);
	off += used;
	assert_int_equal(fg_wsf_decode(&d, b + off, sizeof(b) - off, &used, &dp, &dlen),
			 FG_WSF_CLOSE);
	off += used;
	assert_int_equal(off, sizeof(b));
	uint8_t more[] = {0x82, 0x01, 'x'};
	assert_int_equal(fg_wsf_decode(&d, more, sizeof(more), &used, &dp, &dlen), -EPROTO);
}

static void test_wsframe_protocol_violations_are_refused(void **state)
{
	(void)state;
	struct {
		uint8_t b[12];
		size_t len;
		bool server;
	} bad[] = {
	    {{0x82, 0x01, 'x'}, 3, true},			     /* unmasked from a client */
	    {{0x82, 0x81, 1, 2, 3, 4, 'x'}, 7, false},		     /* masked from a server */
	    {{0xC2, 0x01, 'x'}, 3, false},			     /* reserved bit */
	    {{0x81, 0x01, 'x'}, 3, false},			     /* text */
	    {{0x83, 0x01, 'x'}, 3, false},			     /* unknown opcode */
	    {{0x09, 0x00}, 2, false},				     /* fragmented ping */
	    {{0x89, 0x7E, 0x00, 0x7E}, 4, false},		     /* long ping */
	    {{0x82, 0x7E, 0x00, 0x10}, 4, false},		     /* non-minimal 16-bit length */
	    {{0x82, 0x7F, 0, 0, 0, 0, 0, 0, 0xff, 0xff}, 10, false}, /* non-minimal 64 */
	    {{0x82, 0x7F, 0, 0, 0, 1, 0, 0, 0, 0}, 10, false},	     /* too big */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct fg_wsf_dec d;
		fg_wsf_dec_init(&d, bad[i].server);
		size_t used, dlen;
		uint8_t *dp;
		int rc = fg_wsf_decode(&d, bad[i].b, bad[i].len, &used, &dp, &dlen);
		if (rc != -EPROTO)
			fail_msg("case %zu: rc %d", i, rc);
		assert_non_null(d.why);
		/* dead for good */
		assert_int_equal(fg_wsf_decode(&d, bad[i].b, 1, &used, &dp, &dlen), -EPROTO);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_wsframe_rfc6455_masked_example_unmasks),
	    cmocka_unit_test(test_wsframe_header_lengths_round_trip),
	    cmocka_unit_test(test_wsframe_control_frames),
	    cmocka_unit_test(test_wsframe_protocol_violations_are_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
