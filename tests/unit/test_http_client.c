/* The ctl HTTP client: URL parsing, response heads, chunked bodies, and
 * whole requests against a canned server on a loopback socket. */
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "cli/http_client.h"

/* ---- URLs ---------------------------------------------------------------- */

static void test_url_http_default_port_and_prefix(void **s)
{
	struct fg_url u;
	const char *why = NULL;
	assert_int_equal(fg_url_parse("http://gw.example.com/flowgate/", &u, &why), 0);
	assert_false(u.tls);
	assert_string_equal(u.host, "gw.example.com");
	assert_int_equal(u.port, 80);
	assert_false(u.port_given);
	assert_string_equal(u.path, "/flowgate");
	char out[300];
	fg_url_format(&u, out, sizeof(out));
	assert_string_equal(out, "http://gw.example.com/flowgate");
}

static void test_url_https_v6_and_port(void **s)
{
	struct fg_url u;
	const char *why = NULL;
	assert_int_equal(fg_url_parse("HTTPS://[2001:db8::1]:8443", &u, &why), 0);
	assert_true(u.tls);
	assert_true(u.host_is_v6);
	assert_string_equal(u.host, "2001:db8::1");
	assert_int_equal(u.port, 8443);
	assert_string_equal(u.path, "");
	char out[300];
	fg_url_format(&u, out, sizeof(out));
	assert_string_equal(out, "https://[2001:db8::1]:8443");
	assert_int_equal(fg_url_parse("https://h:443/", &u, &why), 0);
	fg_url_format(&u, out, sizeof(out));
	assert_string_equal(out, "https://h"); /* the default port is not repeated */
}

static void test_url_bare_host_port_is_http(void **s)
{
	struct fg_url u;
	const char *why = NULL;
	assert_int_equal(fg_url_parse("127.0.0.1:8080", &u, &why), 0);
	assert_false(u.tls);
	assert_string_equal(u.host, "127.0.0.1");
	assert_int_equal(u.port, 8080);
}

static void test_loopback_hosts_are_recognised(void **s)
{
	static const char *const yes[] = {"localhost", "LOCALHOST", "127.0.0.1",
					  "127.1.2.3", "::1",	    "::ffff:127.0.0.1"};
	static const char *const no[] = {
	    "10.0.0.1", "0.0.0.0", "::", "fd00::1", "gw.example", "128.0.0.1", "localhost.example"};
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
		if (!fg_host_is_loopback(yes[i]))
			fail_msg("%s should be loopback", yes[i]);
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
		if (fg_host_is_loopback(no[i]))
			fail_msg("%s should not be loopback", no[i]);
}

static void test_url_rejects_what_it_cannot_use(void **s)
{
	static const char *const bad[] = {
	    "ftp://h",	      "http://",	"http://:80",	 "http://h:0",
	    "http://h:65536", "http://h:8o",	"http://::1:80", "http://u:p@h",
	    "http://h/?x=1",  "http://h/#frag", "http://[::1",	 "http://[::1]x",
	    "http://[zz]:80", "http://h h",	"http://h:",	 "gopher://h:80",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct fg_url u;
		const char *why = NULL;
		if (fg_url_parse(bad[i], &u, &why) != -EINVAL)
			fail_msg("accepted \"%s\"", bad[i]);
		assert_non_null(why);
	}
}

/* ---- heads ------------------------------------------------------------------ */

static void test_head_content_length(void **s)
{
	static const char r[] = "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
				"Content-Length:  12 \r\n\r\n{\"ok\":true}\n";
	struct fg_httpc_head h;
	int n = fg_httpc_parse_head(r, sizeof(r) - 1, &h);
	assert_int_equal(n, (int)(strstr(r, "\r\n\r\n") - r + 4));
	assert_int_equal(h.status, 201);
	assert_int_equal(h.content_length, 12);
	assert_false(h.chunked);
	assert_string_equal(h.content_type, "application/json");
}

static void test_head_incomplete_then_bad(void **s)
{
	struct fg_httpc_head h;
	assert_int_equal(fg_httpc_parse_head("HTTP/1.1 200 OK\r\nA: b\r\n", 23, &h), -EAGAIN);
	assert_int_equal(fg_httpc_parse_head("HTT", 3, &h), -EAGAIN);
	assert_int_equal(fg_httpc_parse_head("SSH-2.0-OpenSSH\r\n\r\n", 19, &h), -EBADMSG);
	assert_int_equal(fg_httpc_parse_head("HTTP/1.1 2x0 OK\r\n\r\n", 19, &h), -EBADMSG);
	static const char two[] =
	    "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n";
	assert_int_equal(fg_httpc_parse_head(two, sizeof(two) - 1, &h), -EBADMSG);
	static const char neg[] = "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n";
	assert_int_equal(fg_httpc_parse_head(neg, sizeof(neg) - 1, &h), -EBADMSG);
}

static void test_head_chunked_wins_over_length(void **s)
{
	static const char r[] = "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, Chunked\r\n"
				"Content-Length: 5\r\n\r\n";
	struct fg_httpc_head h;
	assert_true(fg_httpc_parse_head(r, sizeof(r) - 1, &h) > 0);
	assert_true(h.chunked);
	assert_int_equal(h.content_length, -1);
}

static void test_head_bare_lf_lines(void **s)
{
	static const char r[] = "HTTP/1.0 404 Not Found\nContent-Length: 3\n\nabc";
	struct fg_httpc_head h;
	assert_int_equal(fg_httpc_parse_head(r, sizeof(r) - 1, &h), (int)(sizeof(r) - 1 - 3));
	assert_int_equal(h.status, 404);
	assert_int_equal(h.content_length, 3);
}

/* ---- chunked ---------------------------------------------------------------- */

static const char chunked_body[] = "5;name=value\r\nhello\r\n"
				   "7\r\n, world\r\n"
				   "A\r\n0123456789\r\n"
				   "0\r\nX-Trailer: 1\r\n\r\n"
				   "NEXT";

static void test_chunked_whole(void **s)
{
	struct fg_httpc_chunked c;
	struct fg_strbuf out;
	size_t used;
	fg_httpc_chunked_init(&c);
	fg_strbuf_init(&out);
	assert_int_equal(
	    fg_httpc_chunked_feed(&c, chunked_body, sizeof(chunked_body) - 1, &out, &used), 1);
	assert_int_equal(used, sizeof(chunked_body) - 1 - 4); /* "NEXT" is not ours */
	assert_int_equal(out.len, 22);
	assert_memory_equal(out.s, "hello, world0123456789", 22);
	fg_strbuf_deinit(&out);
}

static void test_chunked_byte_by_byte(void **s)
{
	struct fg_httpc_chunked c;
	struct fg_strbuf out;
	fg_httpc_chunked_init(&c);
	fg_strbuf_init(&out);
	size_t total = sizeof(chunked_body) - 1 - 4, used;
	for (size_t i = 0; i < total; i++) {
		int rc = fg_httpc_chunked_feed(&c, chunked_body + i, 1, &out, &used);
		assert_int_equal(used, 1);
		assert_int_equal(rc, i + 1 == total ? 1 : 0);
	}
	assert_int_equal(out.len, 22);
	assert_memory_equal(out.s, "hello, world0123456789", 22);
	fg_strbuf_deinit(&out);
}

static void test_chunked_lf_only_and_no_trailers(void **s)
{
	static const char b[] = "3\nabc\n0\n\n";
	struct fg_httpc_chunked c;
	struct fg_strbuf out;
	size_t used;
	fg_httpc_chunked_init(&c);
	fg_strbuf_init(&out);
	assert_int_equal(fg_httpc_chunked_feed(&c, b, sizeof(b) - 1, &out, &used), 1);
	assert_int_equal(used, sizeof(b) - 1);
	assert_int_equal(out.len, 3);
	fg_strbuf_deinit(&out);
}

static void test_chunked_malformed(void **s)
{
	static const char *const bad[] = {
	    "x\r\n",		     /* not hex */
	    "\r\n",		     /* no size */
	    "3\r\nabcX\r\n",	     /* data longer than the size */
	    "3\rx",		     /* CR without LF */
	    "fffffffffffffffff\r\n", /* too many digits */
	    "0\r\n\rx",		     /* bad final line */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct fg_httpc_chunked c;
		struct fg_strbuf out;
		size_t used;
		fg_httpc_chunked_init(&c);
		fg_strbuf_init(&out);
		int rc = fg_httpc_chunked_feed(&c, bad[i], strlen(bad[i]), &out, &used);
		if (rc != -EBADMSG)
			fail_msg("\"%s\": %d", bad[i], rc);
		fg_strbuf_deinit(&out);
	}
}

/* ---- whole requests against a canned server ---------------------------------- */

struct canned {
	int lfd;
	uint16_t port;
	const char *const *parts; /* written one after another, NULL-terminated */
	bool silent;		  /* accept, read, never answer */
	char request[4096];	  /* what the client sent */
	size_t request_len;
	pthread_t th;
};

static void *canned_run(void *arg)
{
	struct canned *c = arg;
	int fd = accept(c->lfd, NULL, NULL);
	if (fd < 0)
		return NULL;
	/* read the head and the body the client announced */
	for (;;) {
		ssize_t n =
		    read(fd, c->request + c->request_len, sizeof(c->request) - 1 - c->request_len);
		if (n <= 0)
			break;
		c->request_len += (size_t)n;
		c->request[c->request_len] = 0;
		char *end = strstr(c->request, "\r\n\r\n");
		if (!end)
			continue;
		const char *cl = strstr(c->request, "Content-Length: ");
		size_t want = cl ? strtoul(cl + 16, NULL, 10) : 0;
		if (c->request_len >= (size_t)(end + 4 - c->request) + want)
			break;
	}
	if (c->silent) {
		struct timespec ts = {1, 0};
		nanosleep(&ts, NULL);
	}
	for (size_t i = 0; !c->silent && c->parts[i]; i++) {
		if (write(fd, c->parts[i], strlen(c->parts[i])) < 0)
			break;
		struct timespec ts = {0, 5 * 1000 * 1000};
		nanosleep(&ts, NULL); /* separate reads on the client side */
	}
	close(fd);
	return NULL;
}

static void canned_start(struct canned *c)
{
	c->lfd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(c->lfd >= 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(bind(c->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(c->lfd, 4), 0);
	socklen_t al = sizeof(a);
	getsockname(c->lfd, (struct sockaddr *)&a, &al);
	c->port = ntohs(a.sin_port);
	assert_int_equal(pthread_create(&c->th, NULL, canned_run, c), 0);
}

static void canned_stop(struct canned *c)
{
	pthread_join(c->th, NULL);
	close(c->lfd);
}

static int canned_request(struct canned *c, const char *method, const char *body,
			  const struct fg_httpc_opts *o, struct fg_httpc_response *r, char *err,
			  size_t errlen)
{
	char url[64];
	struct fg_url u;
	const char *why;
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/base", c->port);
	assert_int_equal(fg_url_parse(url, &u, &why), 0);
	const char *headers[] = {"Authorization: Bearer fgs_test", NULL};
	return fg_httpc_request(&u, o, method, "/api/v1/nodes", headers, body,
				body ? strlen(body) : 0, r, err, errlen);
}

static void test_request_content_length_body_and_what_is_sent(void **s)
{
	static const char *const parts[] = {
	    "HTTP/1.1 201 Created\r\nContent-Type: "
	    "application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":",
	    "true}", NULL};
	struct canned c = {.parts = parts};
	canned_start(&c);
	struct fg_httpc_response r;
	char err[256];
	assert_int_equal(
	    canned_request(&c, "POST", "{\"name\":\"n1\"}", NULL, &r, err, sizeof(err)), 0);
	canned_stop(&c);
	assert_int_equal(r.status, 201);
	assert_string_equal(r.content_type, "application/json");
	assert_int_equal(r.body.len, 11);
	assert_memory_equal(r.body.s, "{\"ok\":true}", 11);
	assert_non_null(strstr(c.request, "POST /base/api/v1/nodes HTTP/1.1\r\n"));
	char host[64];
	snprintf(host, sizeof(host), "\r\nHost: 127.0.0.1:%u\r\n", c.port);
	assert_non_null(strstr(c.request, host));
	assert_non_null(strstr(c.request, "\r\nAuthorization: Bearer fgs_test\r\n"));
	assert_non_null(strstr(c.request, "\r\nContent-Length: 13\r\n"));
	assert_non_null(strstr(c.request, "\r\n\r\n{\"name\":\"n1\"}"));
	fg_httpc_response_free(&r);
}

static void test_request_chunked_across_reads_and_interim_100(void **s)
{
	static const char *const parts[] = {
	    "HTTP/1.1 100 Continue\r\n\r\n",
	    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r",
	    "\nabcd\r\n3\r\nefg\r\n0\r\n", "\r\n", NULL};
	struct canned c = {.parts = parts};
	canned_start(&c);
	struct fg_httpc_response r;
	char err[256];
	assert_int_equal(canned_request(&c, "GET", NULL, NULL, &r, err, sizeof(err)), 0);
	canned_stop(&c);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.body.len, 7);
	assert_memory_equal(r.body.s, "abcdefg", 7);
	assert_null(strstr(c.request, "Content-Length")); /* a GET without a body */
	fg_httpc_response_free(&r);
}

static void test_request_body_to_eof(void **s)
{
	static const char *const parts[] = {"HTTP/1.1 500 Oops\r\n\r\nbroken", " proxy", NULL};
	struct canned c = {.parts = parts};
	canned_start(&c);
	struct fg_httpc_response r;
	char err[256];
	assert_int_equal(canned_request(&c, "GET", NULL, NULL, &r, err, sizeof(err)), 0);
	canned_stop(&c);
	assert_int_equal(r.status, 500);
	assert_int_equal(r.body.len, 12);
	assert_memory_equal(r.body.s, "broken proxy", 12);
	fg_httpc_response_free(&r);
}

static void test_request_truncated_body_is_an_error(void **s)
{
	static const char *const parts[] = {"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort",
					    NULL};
	struct canned c = {.parts = parts};
	canned_start(&c);
	struct fg_httpc_response r;
	char err[256];
	assert_int_equal(canned_request(&c, "GET", NULL, NULL, &r, err, sizeof(err)), -ECONNRESET);
	canned_stop(&c);
	assert_non_null(strstr(err, "middle of its answer"));
}

static void test_request_times_out(void **s)
{
	struct canned c = {.silent = true};
	canned_start(&c);
	struct fg_httpc_response r;
	char err[256];
	struct fg_httpc_opts o = {.timeout_ms = 200};
	assert_int_equal(canned_request(&c, "GET", NULL, &o, &r, err, sizeof(err)), -ETIMEDOUT);
	canned_stop(&c);
	assert_non_null(strstr(err, "timed out"));
}

static void test_request_refused_names_the_address(void **s)
{
	/* a port nobody listens on: bind one, close it */
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);
	bind(fd, (struct sockaddr *)&a, sizeof(a));
	getsockname(fd, (struct sockaddr *)&a, &al);
	close(fd);
	char url[64], err[256], want[64];
	snprintf(url, sizeof(url), "http://127.0.0.1:%u", ntohs(a.sin_port));
	struct fg_url u;
	const char *why;
	assert_int_equal(fg_url_parse(url, &u, &why), 0);
	struct fg_httpc_response r;
	assert_int_equal(
	    fg_httpc_request(&u, NULL, "GET", "/", NULL, NULL, 0, &r, err, sizeof(err)),
	    -ECONNREFUSED);
	snprintf(want, sizeof(want), "cannot connect to 127.0.0.1:%u", ntohs(a.sin_port));
	assert_non_null(strstr(err, want));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_url_http_default_port_and_prefix),
	    cmocka_unit_test(test_url_https_v6_and_port),
	    cmocka_unit_test(test_url_bare_host_port_is_http),
	    cmocka_unit_test(test_url_rejects_what_it_cannot_use),
	    cmocka_unit_test(test_loopback_hosts_are_recognised),
	    cmocka_unit_test(test_head_content_length),
	    cmocka_unit_test(test_head_incomplete_then_bad),
	    cmocka_unit_test(test_head_chunked_wins_over_length),
	    cmocka_unit_test(test_head_bare_lf_lines),
	    cmocka_unit_test(test_chunked_whole),
	    cmocka_unit_test(test_chunked_byte_by_byte),
	    cmocka_unit_test(test_chunked_lf_only_and_no_trailers),
	    cmocka_unit_test(test_chunked_malformed),
	    cmocka_unit_test(test_request_content_length_body_and_what_is_sent),
	    cmocka_unit_test(test_request_chunked_across_reads_and_interim_100),
	    cmocka_unit_test(test_request_body_to_eof),
	    cmocka_unit_test(test_request_truncated_body_is_an_error),
	    cmocka_unit_test(test_request_times_out),
	    cmocka_unit_test(test_request_refused_names_the_address),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
