/* The request head parser of the /metrics endpoint (net/http_req). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "net/http_req.h"

static struct fg_http_req req;

static int parse(const char *s)
{
	return fg_http_req_parse(s, strlen(s), &req);
}

static void test_http_complete_head_is_parsed(void **s)
{
	const char *h = "GET /metrics HTTP/1.1\r\nHost: 10.0.0.1:9100\r\nAccept: */*\r\n\r\n";
	assert_int_equal(parse(h), (int)strlen(h));
	assert_string_equal(req.method, "GET");
	assert_string_equal(req.path, "/metrics");
	assert_int_equal(req.minor, 1);

	assert_int_equal(parse("HEAD /?x=1&y=%20 HTTP/1.0\r\n\r\n"), 29);
	assert_string_equal(req.method, "HEAD");
	assert_string_equal(req.path, "/?x=1&y=%20");
	assert_int_equal(req.minor, 0);
}

static void test_http_returns_head_length_when_a_body_follows(void **s)
{
	const char *h = "POST /x HTTP/1.1\r\nContent-Length: 4\r\n\r\nbody";
	assert_int_equal(parse(h), (int)strlen(h) - 4);
	assert_string_equal(req.method, "POST");
	/* a pipelined second request is not part of the first */
	h = "GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n";
	assert_int_equal(parse(h), 19);
	assert_string_equal(req.path, "/a");
}

static void test_http_partial_head_is_eagain(void **s)
{
	const char *h = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
	size_t n = strlen(h);
	for (size_t k = 0; k < n; k++)
		if (fg_http_req_parse(h, k, &req) != -EAGAIN)
			fail_msg("prefix of %zu/%zu bytes is not -EAGAIN", k, n);
	assert_int_equal(fg_http_req_parse(h, n, &req), (int)n);
	/* bare LF line ends never complete a head */
	assert_int_equal(parse("GET / HTTP/1.1\n\n"), -EAGAIN);
}

static void test_http_bad_method_is_einval(void **s)
{
	assert_int_equal(parse("get / HTTP/1.1\r\n\r\n"), -EINVAL);
	assert_int_equal(parse("G3T / HTTP/1.1\r\n\r\n"), -EINVAL);
	assert_int_equal(parse(" / HTTP/1.1\r\n\r\n"), -EINVAL);
	assert_int_equal(parse("ABCDEFGHIJKLMNOP / HTTP/1.1\r\n\r\n"), -EINVAL); /* 16 chars */
	assert_int_equal(parse("ABCDEFGHIJKLMNO / HTTP/1.1\r\n\r\n"), 30);	 /* 15 fit */
	assert_int_equal(parse("\r\n\r\n"), -EINVAL);
	assert_int_equal(parse("GET\r\n\r\n"), -EINVAL);
}

static void test_http_bad_version_is_einval(void **s)
{
	assert_int_equal(parse("GET / HTTP/2.0\r\n\r\n"), -EINVAL);
	assert_int_equal(parse("GET / HTTP/1.2\r\n\r\n"), -EINVAL);
	assert_int_equal(parse("GET / HTTP/1.10\r\n\r\n"), -EINVAL);
	assert_int_equal(parse("GET / HTTP/1\r\n\r\n"), -EINVAL);
	assert_int_equal(parse("GET / http/1.1\r\n\r\n"), -EINVAL);
	assert_int_equal(parse("GET /\r\n\r\n"), -EINVAL);
	assert_int_equal(parse("GET / HTTP/1.1 \r\n\r\n"), -EINVAL);
}

static void test_http_bad_path_is_einval(void **s)
{
	assert_int_equal(parse("GET  HTTP/1.1\r\n\r\n"), -EINVAL);
	assert_int_equal(parse("GET /a\x01 HTTP/1.1\r\n\r\n"), -EINVAL);
	assert_int_equal(parse("GET /a\x7f HTTP/1.1\r\n\r\n"), -EINVAL);
	assert_int_equal(parse("GET /\xc3\xa9 HTTP/1.1\r\n\r\n"), -EINVAL);
	char h[400];
	memset(h, 'a', sizeof(h));
	memcpy(h, "GET /", 5);
	strcpy(h + 5 + 255, " HTTP/1.1\r\n\r\n"); /* a 256-byte path does not fit */
	assert_int_equal(parse(h), -EINVAL);
	strcpy(h + 5 + 254, " HTTP/1.1\r\n\r\n"); /* 255 does */
	assert_true(parse(h) > 0);
	assert_int_equal(strlen(req.path), 255);
}

static void test_http_head_over_8k_is_e2big(void **s)
{
	char *h = malloc(FG_HTTP_MAX_HEAD * 2);
	assert_non_null(h);
	/* no end in sight at 8 KiB */
	size_t n = (size_t)snprintf(h, FG_HTTP_MAX_HEAD * 2, "GET / HTTP/1.1\r\nX: ");
	memset(h + n, 'a', FG_HTTP_MAX_HEAD * 2 - n);
	assert_int_equal(fg_http_req_parse(h, FG_HTTP_MAX_HEAD - 1, &req), -EAGAIN);
	assert_int_equal(fg_http_req_parse(h, FG_HTTP_MAX_HEAD, &req), -E2BIG);
	assert_int_equal(fg_http_req_parse(h, FG_HTTP_MAX_HEAD + 100, &req), -E2BIG);
	/* a complete head that is one byte too long */
	memcpy(h + FG_HTTP_MAX_HEAD + 1 - 4, "\r\n\r\n", 4);
	assert_int_equal(fg_http_req_parse(h, FG_HTTP_MAX_HEAD + 1, &req), -E2BIG);
	/* exactly 8 KiB is fine */
	memset(h + n, 'a', FG_HTTP_MAX_HEAD * 2 - n);
	memcpy(h + FG_HTTP_MAX_HEAD - 4, "\r\n\r\n", 4);
	assert_int_equal(fg_http_req_parse(h, FG_HTTP_MAX_HEAD + 50, &req), FG_HTTP_MAX_HEAD);
	free(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_http_complete_head_is_parsed),
	    cmocka_unit_test(test_http_returns_head_length_when_a_body_follows),
	    cmocka_unit_test(test_http_partial_head_is_eagain),
	    cmocka_unit_test(test_http_bad_method_is_einval),
	    cmocka_unit_test(test_http_bad_version_is_einval),
	    cmocka_unit_test(test_http_bad_path_is_einval),
	    cmocka_unit_test(test_http_head_over_8k_is_e2big),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
