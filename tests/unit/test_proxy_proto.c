/* PROXY protocol v1/v2 headers (net/proxy_proto): byte-exact encoding
 * against hand-written headers, and decoding. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "net/addr.h"
#include "net/proxy_proto.h"

#define SIG "\r\n\r\n\0\r\nQUIT\n"

static struct sockaddr_storage v4(const char *ip, uint16_t port)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	struct sockaddr_in *a = (struct sockaddr_in *)&ss;
	a->sin_family = AF_INET;
	a->sin_port = htons(port);
	assert_int_equal(inet_pton(AF_INET, ip, &a->sin_addr), 1);
	return ss;
}

static struct sockaddr_storage v6(const char *ip, uint16_t port)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
	a->sin6_family = AF_INET6;
	a->sin6_port = htons(port);
	assert_int_equal(inet_pton(AF_INET6, ip, &a->sin6_addr), 1);
	return ss;
}

static int enc(enum fg_pp_version v, struct sockaddr_storage s, struct sockaddr_storage d,
	       uint8_t *out)
{
	return fg_pp_encode(v, (struct sockaddr *)&s, (struct sockaddr *)&d, out, FG_PP_MAX_LEN);
}

static void expect_bytes(const uint8_t *got, int n, const void *want, size_t wlen)
{
	assert_int_equal(n, (int)wlen);
	assert_memory_equal(got, want, wlen);
}

#define EXPECT_STR(got, n, lit) expect_bytes(got, n, lit, sizeof(lit) - 1)

static void test_pp_v1_encodes_tcp4(void **s)
{
	uint8_t out[FG_PP_MAX_LEN];
	int n = enc(FG_PP_V1, v4("192.0.2.1", 56324), v4("198.51.100.2", 443), out);
	EXPECT_STR(out, n, "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n");
}

static void test_pp_v1_encodes_tcp6(void **s)
{
	uint8_t out[FG_PP_MAX_LEN];
	int n = enc(FG_PP_V1, v6("2001:db8::1", 1234), v6("2001:db8::2", 80), out);
	EXPECT_STR(out, n, "PROXY TCP6 2001:db8::1 2001:db8::2 1234 80\r\n");
}

static void test_pp_v1_writes_v4_mapped_addresses_as_tcp4(void **s)
{
	uint8_t out[FG_PP_MAX_LEN];
	int n = enc(FG_PP_V1, v6("::ffff:192.0.2.1", 1000), v6("::ffff:198.51.100.2", 80), out);
	EXPECT_STR(out, n, "PROXY TCP4 192.0.2.1 198.51.100.2 1000 80\r\n");
	/* a mapped client on a v4 listener */
	n = enc(FG_PP_V1, v6("::ffff:192.0.2.1", 1000), v4("198.51.100.2", 80), out);
	EXPECT_STR(out, n, "PROXY TCP4 192.0.2.1 198.51.100.2 1000 80\r\n");
}

static void test_pp_v1_mixed_families_say_unknown(void **s)
{
	uint8_t out[FG_PP_MAX_LEN];
	int n = enc(FG_PP_V1, v4("192.0.2.1", 1000), v6("2001:db8::2", 80), out);
	EXPECT_STR(out, n, "PROXY UNKNOWN\r\n");
}

static void test_pp_v1_longest_header_fits_max_len(void **s)
{
	uint8_t out[FG_PP_MAX_LEN];
	const char *full = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
	int n = enc(FG_PP_V1, v6(full, 65535), v6(full, 65535), out);
	assert_true(n > 0 && n <= 107);
	EXPECT_STR(out, n,
		   "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
		   "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n");
}

static void test_pp_v2_encodes_tcp4(void **s)
{
	uint8_t out[FG_PP_MAX_LEN];
	int n = enc(FG_PP_V2, v4("192.0.2.1", 56324), v4("198.51.100.2", 443), out);
	static const uint8_t want[] = {
	    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, /* sig */
	    0x21, 0x11, 0x00, 0x0c,			 /* v2 PROXY, TCP4, 12 */
	    192,  0,	2,    1,    198,  51,	100,  2, /* addrs */
	    0xdc, 0x04, 0x01, 0xbb,			 /* 56324, 443 */
	};
	expect_bytes(out, n, want, sizeof(want));
	assert_memory_equal(out, SIG, 12);
}

static void test_pp_v2_encodes_tcp6(void **s)
{
	uint8_t out[FG_PP_MAX_LEN];
	int n = enc(FG_PP_V2, v6("2001:db8::1", 1234), v6("2001:db8::ff:2", 80), out);
	static const uint8_t want[] = {
	    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51,
	    0x55, 0x49, 0x54, 0x0a, 0x21, 0x21, 0x00, 0x24, /* v2 PROXY, TCP6, 36 */
	    0x20, 0x01, 0x0d, 0xb8, 0,	  0,	0,    0,
	    0,	  0,	0,    0,    0,	  0,	0,    0x01, /* 2001:db8::1 */
	    0x20, 0x01, 0x0d, 0xb8, 0,	  0,	0,    0,
	    0,	  0,	0,    0,    0,	  0xff, 0,    0x02, /* 2001:db8::ff:2 */
	    0x04, 0xd2, 0x00, 0x50,			    /* 1234, 80 */
	};
	expect_bytes(out, n, want, sizeof(want));
	assert_int_equal(n, 52);
}

static void test_pp_v2_writes_v4_mapped_addresses_as_tcp4(void **s)
{
	uint8_t out[FG_PP_MAX_LEN];
	int n = enc(FG_PP_V2, v6("::ffff:10.1.2.3", 40000), v6("::ffff:10.9.8.7", 8080), out);
	static const uint8_t want[] = {
	    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, 0x11,
	    0x00, 0x0c, 10,   1,    2,	  3,	10,   9,    8,	  7,	0x9c, 0x40, 0x1f, 0x90,
	};
	expect_bytes(out, n, want, sizeof(want));
}

static void test_pp_v2_mixed_families_send_unspec_without_addresses(void **s)
{
	uint8_t out[FG_PP_MAX_LEN];
	int n = enc(FG_PP_V2, v4("192.0.2.1", 1000), v6("2001:db8::2", 80), out);
	static const uint8_t want[] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51,
				       0x55, 0x49, 0x54, 0x0a, 0x21, 0x00, 0x00, 0x00};
	expect_bytes(out, n, want, sizeof(want));
}

static void test_pp_encode_reports_short_buffer_and_bad_version(void **s)
{
	struct sockaddr_storage a = v4("192.0.2.1", 1), b = v4("192.0.2.2", 2);
	uint8_t out[FG_PP_MAX_LEN];
	assert_int_equal(
	    fg_pp_encode(FG_PP_V2, (struct sockaddr *)&a, (struct sockaddr *)&b, out, 27), -ENOSPC);
	assert_int_equal(
	    fg_pp_encode(FG_PP_V2, (struct sockaddr *)&a, (struct sockaddr *)&b, out, 28), 28);
	assert_int_equal(
	    fg_pp_encode(FG_PP_V1, (struct sockaddr *)&a, (struct sockaddr *)&b, out, 10), -ENOSPC);
	assert_int_equal(fg_pp_encode(FG_PP_NONE, (struct sockaddr *)&a, (struct sockaddr *)&b, out,
				      sizeof(out)),
			 -EINVAL);
}

/* Decoded addresses equal the encoded ones once v4-mapped is folded to v4. */
static void expect_same(const struct sockaddr_storage *got, struct sockaddr_storage want)
{
	fg_addr_unmap(&want);
	char g[FG_ADDRSTR_MAX], w[FG_ADDRSTR_MAX];
	fg_addr_format((const struct sockaddr *)got, g, sizeof(g));
	fg_addr_format((const struct sockaddr *)&want, w, sizeof(w));
	assert_string_equal(g, w);
	assert_int_equal(got->ss_family, want.ss_family);
}

static void round_trip(enum fg_pp_version v, struct sockaddr_storage a, struct sockaddr_storage b,
		       int fam)
{
	uint8_t out[FG_PP_MAX_LEN + 8];
	int n = enc(v, a, b, out);
	assert_true(n > 0);
	memcpy(out + n, "payload", 7); /* bytes after the header are not part of it */
	struct fg_pp_info info;
	assert_int_equal(fg_pp_decode(out, (size_t)n + 7, &info), n);
	assert_int_equal(info.version, (int)v);
	assert_int_equal(info.family, fam);
	if (fam != AF_UNSPEC) {
		expect_same(&info.src, a);
		expect_same(&info.dst, b);
	}
	/* every strict prefix asks for more */
	for (int k = 0; k < n; k++)
		if (fg_pp_decode(out, (size_t)k, &info) != -EAGAIN)
			fail_msg("v%d prefix of %d/%d bytes: not -EAGAIN", (int)v, k, n);
}

static void test_pp_decode_of_encode_round_trips(void **s)
{
	for (int v = FG_PP_V1; v <= FG_PP_V2; v++) {
		round_trip(v, v4("192.0.2.1", 56324), v4("198.51.100.2", 443), AF_INET);
		round_trip(v, v4("0.0.0.0", 1), v4("255.255.255.255", 65535), AF_INET);
		round_trip(v, v6("2001:db8::1", 1234), v6("2001:db8::2", 80), AF_INET6);
		round_trip(v, v6("::", 0), v6("::1", 0), AF_INET6);
		round_trip(v, v6("::ffff:10.0.0.1", 9), v6("::ffff:10.0.0.2", 10), AF_INET);
		round_trip(v, v4("10.0.0.1", 9), v6("2001:db8::2", 10), AF_UNSPEC);
	}
	/* many random addresses */
	uint32_t x = 12345;
	for (int i = 0; i < 500; i++) {
		struct sockaddr_storage a, b;
		memset(&a, 0, sizeof(a));
		memset(&b, 0, sizeof(b));
		struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&a,
				    *b6 = (struct sockaddr_in6 *)&b;
		a6->sin6_family = b6->sin6_family = AF_INET6;
		for (int k = 0; k < 16; k++) {
			x = x * 1103515245u + 12345u;
			a6->sin6_addr.s6_addr[k] = (uint8_t)(x >> 16);
			b6->sin6_addr.s6_addr[k] = (uint8_t)(x >> 8);
		}
		a6->sin6_port = (uint16_t)x;
		b6->sin6_port = (uint16_t)(x >> 16);
		round_trip(i % 2 ? FG_PP_V1 : FG_PP_V2, a, b, AF_INET6);
	}
}

static void test_pp_v2_local_command_and_tlvs_are_accepted(void **s)
{
	static const uint8_t local[] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51,
					0x55, 0x49, 0x54, 0x0a, 0x20, 0x00, 0x00, 0x00};
	struct fg_pp_info info;
	assert_int_equal(fg_pp_decode(local, sizeof(local), &info), 16);
	assert_int_equal(info.version, 2);
	assert_int_equal(info.family, AF_UNSPEC);
	/* TCP4 with a 3-byte TLV after the addresses: the whole block is consumed */
	static const uint8_t tlv[] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51,
				      0x55, 0x49, 0x54, 0x0a, 0x21, 0x11, 0x00, 0x0f,
				      1,    2,	  3,	4,    5,    6,	  7,	8,
				      0x00, 0x50, 0x01, 0xbb, 0x04, 0x00, 0x00};
	assert_int_equal(fg_pp_decode(tlv, sizeof(tlv), &info), (int)sizeof(tlv));
	assert_int_equal(info.family, AF_INET);
	assert_int_equal(fg_addr_port((struct sockaddr *)&info.src), 80);
	assert_int_equal(fg_addr_port((struct sockaddr *)&info.dst), 443);
	assert_int_equal(fg_pp_decode(tlv, sizeof(tlv) - 1, &info), -EAGAIN);
}

static void test_pp_v1_unknown_is_accepted(void **s)
{
	struct fg_pp_info info;
	const char *h = "PROXY UNKNOWN\r\n";
	assert_int_equal(fg_pp_decode((const uint8_t *)h, strlen(h), &info), 15);
	assert_int_equal(info.family, AF_UNSPEC);
	h = "PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\nGET";
	assert_int_equal(fg_pp_decode((const uint8_t *)h, strlen(h), &info), (int)strlen(h) - 3);
	assert_int_equal(info.family, AF_UNSPEC);
}

static void rejects(const void *buf, size_t len)
{
	struct fg_pp_info info;
	int rc = fg_pp_decode(buf, len, &info);
	if (rc != -EINVAL)
		fail_msg("accepted (rc %d): %.*s", rc, (int)len, (const char *)buf);
}

#define REJECTS_STR(lit) rejects(lit, sizeof(lit) - 1)

static void test_pp_decode_garbage_is_einval(void **s)
{
	REJECTS_STR("GET / HTTP/1.1\r\n\r\n");
	REJECTS_STR("proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n");
	REJECTS_STR("PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n");
	REJECTS_STR("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n");
	REJECTS_STR("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n");
	REJECTS_STR("PROXY TCP4 1.2.3.4 5.6.7.8 70000 2\r\n");
	REJECTS_STR("PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n");
	REJECTS_STR("PROXY TCP4 1.2.3.4 5.6.7.8 +80 2\r\n");
	REJECTS_STR("PROXY TCP4 1.2.3.4 5.6.7.8 -0 2\r\n");
	REJECTS_STR("PROXY TCP4 1.2.3.4 5.6.7.8 1 \r\n");
	REJECTS_STR("PROXY TCP4 ::1 ::2 1 2\r\n");
	REJECTS_STR("PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n");
	REJECTS_STR("PROXY TCP4 1.2.3.4 5.6.7.8\t1 2\r\n");
	REJECTS_STR("PROXY TCP4 1.2.3.4 5.6.7.\x80 1 2\r\n");
	REJECTS_STR("PROXY \r\n");
	/* no CRLF within the 107 bytes a v1 line may take */
	char longline[200];
	memset(longline, 'A', sizeof(longline));
	memcpy(longline, "PROXY ", 6);
	rejects(longline, sizeof(longline));
	rejects(longline, 107);
	/* v2: wrong version nibble, unknown command, address block too short */
	static const uint8_t v1ver[] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51,
					0x55, 0x49, 0x54, 0x0a, 0x11, 0x11, 0x00, 0x00};
	rejects(v1ver, sizeof(v1ver));
	static const uint8_t cmd2[] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51,
				       0x55, 0x49, 0x54, 0x0a, 0x22, 0x11, 0x00, 0x00};
	rejects(cmd2, sizeof(cmd2));
	static const uint8_t short4[] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49,
					 0x54, 0x0a, 0x21, 0x11, 0x00, 0x04, 1,	   2,	 3,    4};
	rejects(short4, sizeof(short4));
	static const uint8_t short6[] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49,
					 0x54, 0x0a, 0x21, 0x21, 0x00, 0x0c, 1,	   2,	 3,    4,
					 5,    6,    7,	   8,	 9,    10,   11,   12};
	rejects(short6, sizeof(short6));
	/* a signature that diverges early */
	static const uint8_t badsig[] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51,
					 0x55, 0x49, 0x54, 0x0b, 0x21, 0x11, 0x00, 0x00};
	rejects(badsig, sizeof(badsig));
	rejects("\r\n\r\nX", 5);
}

static void test_pp_decode_partial_input_is_eagain(void **s)
{
	struct fg_pp_info info;
	assert_int_equal(fg_pp_decode((const uint8_t *)"", 0, &info), -EAGAIN);
	assert_int_equal(fg_pp_decode((const uint8_t *)"PRO", 3, &info), -EAGAIN);
	assert_int_equal(fg_pp_decode((const uint8_t *)"PROXY TCP4 1.2", 14, &info), -EAGAIN);
	assert_int_equal(fg_pp_decode((const uint8_t *)"\r\n\r\n\0\r\nQU", 9, &info), -EAGAIN);
	/* v2 header announcing 36 address bytes, 20 present */
	uint8_t b[36] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51,
			 0x55, 0x49, 0x54, 0x0a, 0x21, 0x21, 0x00, 0x24};
	assert_int_equal(fg_pp_decode(b, sizeof(b), &info), -EAGAIN);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_pp_v1_encodes_tcp4),
	    cmocka_unit_test(test_pp_v1_encodes_tcp6),
	    cmocka_unit_test(test_pp_v1_writes_v4_mapped_addresses_as_tcp4),
	    cmocka_unit_test(test_pp_v1_mixed_families_say_unknown),
	    cmocka_unit_test(test_pp_v1_longest_header_fits_max_len),
	    cmocka_unit_test(test_pp_v2_encodes_tcp4),
	    cmocka_unit_test(test_pp_v2_encodes_tcp6),
	    cmocka_unit_test(test_pp_v2_writes_v4_mapped_addresses_as_tcp4),
	    cmocka_unit_test(test_pp_v2_mixed_families_send_unspec_without_addresses),
	    cmocka_unit_test(test_pp_encode_reports_short_buffer_and_bad_version),
	    cmocka_unit_test(test_pp_decode_of_encode_round_trips),
	    cmocka_unit_test(test_pp_v2_local_command_and_tlvs_are_accepted),
	    cmocka_unit_test(test_pp_v1_unknown_is_accepted),
	    cmocka_unit_test(test_pp_decode_garbage_is_einval),
	    cmocka_unit_test(test_pp_decode_partial_input_is_eagain),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
