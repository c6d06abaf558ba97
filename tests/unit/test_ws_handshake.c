/* The WebSocket opening handshake: pure builders and parsers (net/ws_handshake). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "net/ws_handshake.h"

#define KEY "dGhlIHNhbXBsZSBub25jZQ=="

static const char good_req[] = "GET /agent HTTP/1.1\r\n"
			       "Host: server.example:8080\r\n"
			       "Upgrade: WebSocket\r\n"
			       "Connection: keep-alive, Upgrade\r\n"
			       "Sec-WebSocket-Key: " KEY "\r\n"
			       "Sec-WebSocket-Version: 13\r\n"
			       "Authorization: Bearer tok-123\r\n"
			       "Sec-WebSocket-Protocol: jsonrpc\r\n"
			       "\r\n";

static void test_accept_key_matches_rfc6455_example(void **s)
{
	char out[FG_WS_ACCEPT_LEN + 1];
	assert_int_equal(fg_ws_accept_key(KEY, out), 0);
	/* RFC 6455 section 1.3 */
	assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

static void test_key_encode_is_24_chars(void **s)
{
	uint8_t nonce[16] = "the sample nonce";
	char key[FG_WS_KEY_LEN + 1];
	fg_ws_key_encode(nonce, key);
	assert_string_equal(key, KEY);
}

static void test_request_valid_parsed(void **s)
{
	struct fg_ws_request r;
	assert_int_equal(fg_ws_parse_upgrade_request(good_req, strlen(good_req), &r),
			 (int)strlen(good_req));
	assert_string_equal(r.path, "/agent");
	assert_string_equal(r.host, "server.example:8080");
	assert_string_equal(r.key, KEY);
	assert_string_equal(r.token, "tok-123");
	assert_int_equal(r.has_authorization, 1);
	assert_string_equal(r.protocol, "jsonrpc");
	assert_null(r.why);
}

static void test_request_bytes_after_head_not_counted(void **s)
{
	char buf[1024];
	int n = snprintf(buf, sizeof(buf), "%s\x81\x05hello", good_req);
	struct fg_ws_request r;
	assert_int_equal(fg_ws_parse_upgrade_request(buf, (size_t)n, &r), (int)strlen(good_req));
}

static void test_request_partial_is_eagain(void **s)
{
	struct fg_ws_request r;
	for (size_t i = 0; i < strlen(good_req); i++)
		assert_int_equal(fg_ws_parse_upgrade_request(good_req, i, &r), -EAGAIN);
}

static void test_request_oversized_is_e2big(void **s)
{
	static char big[FG_WS_MAX_HEAD + 100];
	memset(big, 'a', sizeof(big));
	memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
	struct fg_ws_request r;
	assert_int_equal(fg_ws_parse_upgrade_request(big, sizeof(big), &r), -E2BIG);
}

/* good_req with header `from` replaced by `to` ("" deletes the line). */
static int mutate(char *buf, size_t cap, const char *from, const char *to)
{
	const char *p = strstr(good_req, from);
	assert_non_null(p);
	const char *eol = strstr(p, "\r\n") + 2;
	int n = snprintf(buf, cap, "%.*s%s%s", (int)(p - good_req), good_req, to, eol);
	return n;
}

static void expect_reject(const char *from, const char *to, const char *why)
{
	char buf[2048];
	int n = mutate(buf, sizeof(buf), from, to);
	struct fg_ws_request r;
	assert_int_equal(fg_ws_parse_upgrade_request(buf, (size_t)n, &r), -EINVAL);
	assert_non_null(r.why);
	if (strcmp(r.why, why) != 0)
		fail_msg("replacing '%s' by '%s': got '%s', want '%s'", from, to, r.why, why);
}

static void test_request_each_bad_header_rejected_with_reason(void **s)
{
	expect_reject("GET", "POST /agent HTTP/1.1\r\n", "method is not GET");
	expect_reject("GET", "GET /agent HTTP/1.0\r\n", "not HTTP/1.1");
	expect_reject("GET", "GET /agent\r\n", "malformed request line");
	expect_reject("Host:", "", "missing Host");
	expect_reject("Host:", "Host: \r\n", "bad Host");
	expect_reject("Upgrade:", "", "Upgrade is not websocket");
	expect_reject("Upgrade:", "Upgrade: h2c\r\n", "Upgrade is not websocket");
	expect_reject("Connection:", "", "Connection lacks upgrade");
	expect_reject("Connection:", "Connection: keep-alive, upgraded\r\n",
		      "Connection lacks upgrade");
	expect_reject("Sec-WebSocket-Version:", "", "missing Sec-WebSocket-Version");
	expect_reject("Sec-WebSocket-Version:", "Sec-WebSocket-Version: 8\r\n",
		      "Sec-WebSocket-Version is not 13");
	expect_reject("Sec-WebSocket-Key:", "", "missing Sec-WebSocket-Key");
	expect_reject("Sec-WebSocket-Key:", "Sec-WebSocket-Key: dGhlIHNhbXBsZQ==\r\n",
		      "Sec-WebSocket-Key is not base64 of 16 bytes");
	expect_reject("Sec-WebSocket-Key:", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j*Q==\r\n",
		      "Sec-WebSocket-Key is not base64 of 16 bytes");
	expect_reject("Host:", "Host: a\r\nHost: b\r\n", "duplicate Host");
	expect_reject("Host:", "Host : a\r\n", "malformed header line");
	expect_reject("Host:", "Host: a\r\n folded\r\n", "malformed header line");
	expect_reject("Host:", "Host: a\rb\r\n", "malformed header line");
	expect_reject("Authorization:", "Authorization: Bearer a\r\nAuthorization: Bearer b\r\n",
		      "duplicate Authorization");
}

static void test_request_tokens_case_insensitive(void **s)
{
	char buf[2048];
	int n = mutate(buf, sizeof(buf), "Connection:", "connection: UPGRADE\r\n");
	struct fg_ws_request r;
	assert_int_equal(fg_ws_parse_upgrade_request(buf, (size_t)n, &r), n);
	n = mutate(buf, sizeof(buf), "Authorization:", "authorization: bearer   xyz  \r\n");
	assert_int_equal(fg_ws_parse_upgrade_request(buf, (size_t)n, &r), n);
	assert_string_equal(r.token, "xyz");
}

static void test_request_non_bearer_auth_leaves_token_empty(void **s)
{
	char buf[2048];
	int n = mutate(buf, sizeof(buf), "Authorization:", "Authorization: Basic dXNlcg==\r\n");
	struct fg_ws_request r;
	assert_int_equal(fg_ws_parse_upgrade_request(buf, (size_t)n, &r), n);
	assert_int_equal(r.has_authorization, 1);
	assert_string_equal(r.token, "");
	n = mutate(buf, sizeof(buf), "Authorization:", "");
	assert_int_equal(fg_ws_parse_upgrade_request(buf, (size_t)n, &r), n);
	assert_int_equal(r.has_authorization, 0);
}

static void test_build_request_parses_back(void **s)
{
	char buf[1024];
	int n = fg_ws_build_upgrade_request(buf, sizeof(buf), "h:1", "/agent", KEY, "t0k");
	assert_true(n > 0);
	struct fg_ws_request r;
	assert_int_equal(fg_ws_parse_upgrade_request(buf, (size_t)n, &r), n);
	assert_string_equal(r.token, "t0k");
	assert_string_equal(r.host, "h:1");
	n = fg_ws_build_upgrade_request(buf, sizeof(buf), "h", "/", KEY, NULL);
	assert_int_equal(fg_ws_parse_upgrade_request(buf, (size_t)n, &r), n);
	assert_int_equal(r.has_authorization, 0);
	assert_int_equal(fg_ws_build_upgrade_request(buf, 40, "h", "/", KEY, NULL), -ENOSPC);
	assert_int_equal(fg_ws_build_upgrade_request(buf, sizeof(buf), "h", "/", KEY, "a\r\nX: y"),
			 -EINVAL);
}

static void test_response_valid_and_checked(void **s)
{
	char acc[FG_WS_ACCEPT_LEN + 1], buf[512];
	fg_ws_accept_key(KEY, acc);
	int n = fg_ws_build_upgrade_response(buf, sizeof(buf), acc);
	assert_true(n > 0);
	int st = -1;
	assert_int_equal(fg_ws_parse_upgrade_response(buf, (size_t)n, acc, &st), n);
	assert_int_equal(st, 101);
	for (int i = 0; i < n; i++)
		assert_int_equal(fg_ws_parse_upgrade_response(buf, (size_t)i, acc, &st), -EAGAIN);
	/* wrong accept key */
	assert_int_equal(
	    fg_ws_parse_upgrade_response(buf, (size_t)n, "s3pPLMBiTxaQ9kYGzzhZRbK+xOX=", &st),
	    -EINVAL);
	/* missing Upgrade */
	const char *no_up = "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\n"
			    "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
	assert_int_equal(fg_ws_parse_upgrade_response(no_up, strlen(no_up), acc, &st), -EINVAL);
	const char *no_conn = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
			      "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
	assert_int_equal(fg_ws_parse_upgrade_response(no_conn, strlen(no_conn), acc, &st), -EINVAL);
	const char *no_acc = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
			     "Connection: Upgrade\r\n\r\n";
	assert_int_equal(fg_ws_parse_upgrade_response(no_acc, strlen(no_acc), acc, &st), -EINVAL);
	assert_int_equal(fg_ws_parse_upgrade_response("HTTP/1.1 1x1 \r\n\r\n", 17, acc, &st),
			 -EINVAL);
}

static void test_response_non_101_is_eacces_with_status(void **s)
{
	char buf[512];
	int n = fg_ws_build_error_response(buf, sizeof(buf), 401, NULL);
	assert_true(n > 0);
	assert_non_null(strstr(buf, "HTTP/1.1 401 Unauthorized\r\n"));
	assert_non_null(strstr(buf, "WWW-Authenticate: Bearer\r\n"));
	int st = 0;
	assert_int_equal(fg_ws_parse_upgrade_response(buf, (size_t)n, "x", &st), -EACCES);
	assert_int_equal(st, 401);
	n = fg_ws_build_error_response(buf, sizeof(buf), 503, "busy");
	assert_int_equal(fg_ws_parse_upgrade_response(buf, (size_t)n, "x", &st), -EACCES);
	assert_int_equal(st, 503);
	assert_int_equal(fg_ws_build_error_response(buf, sizeof(buf), 101, NULL), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_accept_key_matches_rfc6455_example),
	    cmocka_unit_test(test_key_encode_is_24_chars),
	    cmocka_unit_test(test_request_valid_parsed),
	    cmocka_unit_test(test_request_bytes_after_head_not_counted),
	    cmocka_unit_test(test_request_partial_is_eagain),
	    cmocka_unit_test(test_request_oversized_is_e2big),
	    cmocka_unit_test(test_request_each_bad_header_rejected_with_reason),
	    cmocka_unit_test(test_request_tokens_case_insensitive),
	    cmocka_unit_test(test_request_non_bearer_auth_leaves_token_empty),
	    cmocka_unit_test(test_build_request_parses_back),
	    cmocka_unit_test(test_response_valid_and_checked),
	    cmocka_unit_test(test_response_non_101_is_eacces_with_status),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
