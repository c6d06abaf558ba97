/* fg_endpoint_parse and the sockaddr helpers (net/addr). */
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

static struct fg_endpoint ep;
static const char *why;

static void parses(const char *s, bool require_ip, const char *host, unsigned lo, unsigned hi)
{
	int rc = fg_endpoint_parse(s, require_ip, &ep, &why);
	if (rc != 0)
		fail_msg("\"%s\" rejected: %s", s, why ? why : "?");
	assert_null(why);
	assert_string_equal(ep.host, host);
	assert_int_equal(ep.port_lo, lo);
	assert_int_equal(ep.port_hi, hi);
}

static void rejects(const char *s, bool require_ip, const char *reason)
{
	int rc = fg_endpoint_parse(s, require_ip, &ep, &why);
	if (rc != -EINVAL)
		fail_msg("\"%s\" accepted (rc %d)", s, rc);
	assert_non_null(why);
	if (reason && !strstr(why, reason))
		fail_msg("\"%s\": reason \"%s\" does not mention \"%s\"", s, why, reason);
}

static void test_endpoint_ipv4_with_port(void **s)
{
	parses("0.0.0.0:80", true, "0.0.0.0", 80, 80);
	assert_true(ep.is_ip);
	assert_int_equal(ep.ip.ss_family, AF_INET);
	parses("10.1.2.3:65535", true, "10.1.2.3", 65535, 65535);
	const struct sockaddr_in *v4 = (const struct sockaddr_in *)&ep.ip;
	assert_int_equal(ntohl(v4->sin_addr.s_addr), 0x0a010203);
	assert_int_equal(v4->sin_port, 0); /* the port lives in port_lo/hi */
}

static void test_endpoint_missing_host_means_ipv4_wildcard(void **s)
{
	parses(":80", true, "0.0.0.0", 80, 80);
	assert_true(ep.is_ip);
	assert_int_equal(ep.ip.ss_family, AF_INET);
	parses("80", true, "0.0.0.0", 80, 80);
	assert_true(ep.is_ip);
	parses("1", false, "0.0.0.0", 1, 1);
}

static void test_endpoint_ipv6_in_brackets(void **s)
{
	parses("[::1]:443", true, "::1", 443, 443);
	assert_true(ep.is_ip);
	assert_int_equal(ep.ip.ss_family, AF_INET6);
	const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)&ep.ip;
	assert_true(IN6_IS_ADDR_LOOPBACK(&v6->sin6_addr));
	parses("[::]:53", true, "::", 53, 53);
	parses("[2001:db8::1]:8000-8010", true, "2001:db8::1", 8000, 8010);
	parses("[::ffff:10.0.0.1]:80", true, "::ffff:10.0.0.1", 80, 80);
}

static void test_endpoint_port_ranges(void **s)
{
	parses("10000-10100", true, "0.0.0.0", 10000, 10100);
	parses("10.0.0.1:10000-10100", true, "10.0.0.1", 10000, 10100);
	parses("10.0.0.1:7-7", true, "10.0.0.1", 7, 7);
	parses("1-65535", true, "0.0.0.0", 1, 65535);
	rejects("10.0.0.1:10100-10000", true, "reversed");
	rejects("10.0.0.1:0-10", true, "1-65535");
	rejects("10.0.0.1:10-65536", true, "1-65535");
	rejects("10.0.0.1:10-", true, "range");
	rejects("10.0.0.1:-10", true, "range");
	rejects("10.0.0.1:1-2-3", true, "range");
}

static void test_endpoint_hostnames_only_where_allowed(void **s)
{
	parses("backend.example:443", false, "backend.example", 443, 443);
	assert_false(ep.is_ip);
	parses("db-1_a.internal.:5432", false, "db-1_a.internal.", 5432, 5432);
	assert_false(ep.is_ip);
	parses("localhost:80", false, "localhost", 80, 80);
	rejects("localhost:80", true, "not an IP address");
	rejects("backend.example:443", true, "not an IP address");
	rejects("10.0.0.300:80", true, "not an IP address");
	rejects("bad host:80", false, "host name");
	rejects("a..b:80", false, "host name");
	rejects(".a:80", false, "host name");
	char longlabel[80];
	memset(longlabel, 'x', 64);
	strcpy(longlabel + 64, ":80");
	rejects(longlabel, false, "host name");
	strcpy(longlabel + 63, ":80"); /* a 63-character label is the longest allowed */
	assert_int_equal(fg_endpoint_parse(longlabel, false, &ep, &why), 0);
	assert_int_equal(strlen(ep.host), 63);
}

static void test_endpoint_rejections(void **s)
{
	rejects("", false, "empty");
	rejects(NULL, false, "empty");
	rejects("::1:80", true, "brackets");
	rejects("2001:db8::1:443", false, "brackets");
	rejects("[::1]", true, "[::1]:PORT");
	rejects("[::1]80", true, "[::1]:PORT");
	rejects("[::1:80", true, NULL);
	rejects("[10.0.0.1x]:80", false, "IPv6");
	rejects("[10.0.0.1]:80", false, "IPv6");
	rejects("[]:80", false, "IPv6");
	rejects("[backend.example]:80", false, "IPv6");
	rejects("10.0.0.1:0", true, "1-65535");
	rejects("10.0.0.1:65536", true, "1-65535");
	rejects("10.0.0.1:99999", true, "1-65535");
	rejects("10.0.0.1:123456", true, "port");
	rejects("a:b", false, "port");
	rejects("10.0.0.1:", true, "port");
	rejects("10.0.0.1:8o", true, "port");
	rejects("10.0.0.1:+80", true, "port");
	rejects("0", true, "1-65535");
	rejects("10.0.0.1", true, "port");
}

static void test_endpoint_host_over_253_chars_is_rejected(void **s)
{
	char buf[300];
	memset(buf, 'a', 254);
	strcpy(buf + 254, ":80");
	rejects(buf, false, "too long");
}

static void addr4(struct sockaddr_storage *ss, const char *ip, uint16_t port)
{
	memset(ss, 0, sizeof(*ss));
	struct sockaddr_in *a = (struct sockaddr_in *)ss;
	a->sin_family = AF_INET;
	a->sin_port = htons(port);
	assert_int_equal(inet_pton(AF_INET, ip, &a->sin_addr), 1);
}

static void addr6(struct sockaddr_storage *ss, const char *ip, uint16_t port)
{
	memset(ss, 0, sizeof(*ss));
	struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
	a->sin6_family = AF_INET6;
	a->sin6_port = htons(port);
	assert_int_equal(inet_pton(AF_INET6, ip, &a->sin6_addr), 1);
}

static void test_addr_format_v4_and_bracketed_v6(void **s)
{
	struct sockaddr_storage ss;
	char buf[FG_ADDRSTR_MAX];
	addr4(&ss, "192.0.2.7", 8080);
	fg_addr_format((struct sockaddr *)&ss, buf, sizeof(buf));
	assert_string_equal(buf, "192.0.2.7:8080");
	addr6(&ss, "2001:db8::1", 443);
	fg_addr_format((struct sockaddr *)&ss, buf, sizeof(buf));
	assert_string_equal(buf, "[2001:db8::1]:443");
	addr6(&ss, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535);
	fg_addr_format((struct sockaddr *)&ss, buf, sizeof(buf));
	assert_string_equal(buf, "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535");
	ss.ss_family = AF_UNIX;
	fg_addr_format((struct sockaddr *)&ss, buf, sizeof(buf));
	assert_string_equal(buf, "?");
	/* a short buffer is truncated, never overrun */
	char small[8];
	addr4(&ss, "192.0.2.7", 8080);
	fg_addr_format((struct sockaddr *)&ss, small, sizeof(small));
	assert_string_equal(small, "192.0.2");
}

static void test_addr_port_get_set_and_len(void **s)
{
	struct sockaddr_storage ss;
	addr4(&ss, "10.0.0.1", 1);
	fg_addr_set_port((struct sockaddr *)&ss, 4242);
	assert_int_equal(fg_addr_port((struct sockaddr *)&ss), 4242);
	assert_int_equal(fg_addr_len((struct sockaddr *)&ss), sizeof(struct sockaddr_in));
	addr6(&ss, "::1", 1);
	fg_addr_set_port((struct sockaddr *)&ss, 65535);
	assert_int_equal(fg_addr_port((struct sockaddr *)&ss), 65535);
	assert_int_equal(fg_addr_len((struct sockaddr *)&ss), sizeof(struct sockaddr_in6));
}

static void test_ip_hash_equal_for_v4_and_its_v4_mapped_form(void **s)
{
	struct sockaddr_storage a, b, c;
	addr4(&a, "203.0.113.9", 1000);
	addr6(&b, "::ffff:203.0.113.9", 2000);
	addr4(&c, "203.0.113.10", 1000);
	assert_int_equal(fg_addr_ip_hash((struct sockaddr *)&a),
			 fg_addr_ip_hash((struct sockaddr *)&b));
	assert_true(fg_addr_ip_equal((struct sockaddr *)&a, (struct sockaddr *)&b));
	assert_int_not_equal(fg_addr_ip_hash((struct sockaddr *)&a),
			     fg_addr_ip_hash((struct sockaddr *)&c));
	assert_false(fg_addr_ip_equal((struct sockaddr *)&a, (struct sockaddr *)&c));
	/* the port is not part of the identity */
	addr4(&c, "203.0.113.9", 3000);
	assert_int_equal(fg_addr_ip_hash((struct sockaddr *)&a),
			 fg_addr_ip_hash((struct sockaddr *)&c));
	/* a real v6 address is not a v4 one */
	addr6(&b, "2001:db8::cb00:7109", 1000);
	assert_false(fg_addr_ip_equal((struct sockaddr *)&a, (struct sockaddr *)&b));
}

static void test_addr_unmap_turns_v4_mapped_into_v4_keeping_the_port(void **s)
{
	struct sockaddr_storage ss;
	addr6(&ss, "::ffff:198.51.100.1", 5353);
	fg_addr_unmap(&ss);
	assert_int_equal(ss.ss_family, AF_INET);
	char buf[FG_ADDRSTR_MAX];
	fg_addr_format((struct sockaddr *)&ss, buf, sizeof(buf));
	assert_string_equal(buf, "198.51.100.1:5353");
	addr6(&ss, "2001:db8::1", 53);
	fg_addr_unmap(&ss);
	assert_int_equal(ss.ss_family, AF_INET6);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_endpoint_ipv4_with_port),
	    cmocka_unit_test(test_endpoint_missing_host_means_ipv4_wildcard),
	    cmocka_unit_test(test_endpoint_ipv6_in_brackets),
	    cmocka_unit_test(test_endpoint_port_ranges),
	    cmocka_unit_test(test_endpoint_hostnames_only_where_allowed),
	    cmocka_unit_test(test_endpoint_rejections),
	    cmocka_unit_test(test_endpoint_host_over_253_chars_is_rejected),
	    cmocka_unit_test(test_addr_format_v4_and_bracketed_v6),
	    cmocka_unit_test(test_addr_port_get_set_and_len),
	    cmocka_unit_test(test_ip_hash_equal_for_v4_and_its_v4_mapped_form),
	    cmocka_unit_test(test_addr_unmap_turns_v4_mapped_into_v4_keeping_the_port),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
