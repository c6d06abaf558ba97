/* WebSocket sessions over real loopback sockets, client and server driven
 * by one fg_loop (net/ws). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/clock.h"
#include "core/loop.h"
#include "net/ws.h"

#define MS    FG_NS_PER_MS
#define TOKEN "secret-node-token"
#define NMSG  1000
#define MAXSZ (256 * 1024)

/* One end of a session under test. */
struct side {
	struct fg_ws *ws;
	int open_err, open_status, opened;
	int sent, recvd, bad;
	int closed, close_code;
	char close_err[64];
	int texts;
	char last[64];
};

struct env {
	struct fg_loop *loop;
	int lfd;
	struct fg_io lio;
	struct fg_timer guard;
	struct fg_ws_opts opts;
	struct side cli, srv;
	int mode;     /* what the test does in callbacks */
	int srv_only; /* there is no fg_ws client: stop when the server ends */
	char *buf;    /* message scratch */
};

enum { M_PLAIN, M_EXCHANGE, M_CLOSE_IN_TEXT, M_FREE_IN_TEXT, M_BINARY };

static struct env *E;

static void guard_cb(struct fg_loop *l, struct fg_timer *t)
{
	fail_msg("test took too long");
}

static void stop_soon_cb(struct fg_loop *l, struct fg_timer *t)
{
	fg_loop_stop(l);
}

/* Runs one more iteration so deferred frees happen. */
static void drain(struct env *e)
{
	struct fg_timer t;
	fg_timer_init(&t, stop_soon_cb, NULL);
	fg_timer_start(e->loop, &t, 0);
	fg_loop_run(e->loop);
}

/* ---- messages: size and contents are a function of (index, direction) -- */

static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static size_t msg_size(int i, int dir)
{
	return 1 + (size_t)(mix((uint64_t)i * 2 + (uint64_t)dir) % MAXSZ);
}

static void msg_fill(char *b, int i, int dir)
{
	size_t n = msg_size(i, dir);
	for (size_t j = 0; j < n; j++)
		b[j] = (char)('a' + (i + (int)(j * 13) + dir * 7) % 26);
}

static int send_next(struct side *s, int dir)
{
	if (s->sent >= NMSG)
		return 0;
	msg_fill(E->buf, s->sent, dir);
	int r = fg_ws_send_text(s->ws, E->buf, msg_size(s->sent, dir));
	if (r == 0)
		s->sent++;
	return r;
}

/* ---- callbacks ------------------------------------------------------- */

static void maybe_stop(void)
{
	if ((E->srv_only || E->cli.closed || E->cli.open_err) && (E->srv.closed || E->srv.open_err))
		fg_loop_stop(E->loop);
}

static void on_text(struct fg_ws *ws, const char *d, size_t n, void *user)
{
	struct side *s = user;
	int dir = s == &E->cli ? 1 : 0; /* the direction of what s receives */
	s->texts++;
	snprintf(s->last, sizeof(s->last), "%.*s", (int)(n < 60 ? n : 60), d);
	switch (E->mode) {
	case M_EXCHANGE: {
		if (n != msg_size(s->recvd, dir)) {
			s->bad++;
		} else {
			msg_fill(E->buf, s->recvd, dir);
			if (memcmp(E->buf, d, n) != 0)
				s->bad++;
		}
		s->recvd++;
		assert_int_equal(send_next(s, !dir), 0);
		if (E->cli.recvd == NMSG && E->srv.recvd == NMSG)
			fg_ws_close(E->cli.ws, 1000, "done");
		break;
	}
	case M_CLOSE_IN_TEXT:
		if (s == &E->srv)
			fg_ws_close(ws, 4000, "bye");
		break;
	case M_FREE_IN_TEXT:
		if (s == &E->srv) {
			fg_ws_free(ws);
			s->ws = NULL;
			s->closed = 1; /* on_close is not called after free */
			maybe_stop();
		}
		break;
	}
}

static void on_close(struct fg_ws *ws, int code, const char *err, void *user)
{
	struct side *s = user;
	s->closed++;
	s->close_code = code;
	snprintf(s->close_err, sizeof(s->close_err), "%s", err ? err : "");
	fg_ws_free(ws);
	s->ws = NULL;
	maybe_stop();
}

static const struct fg_ws_cbs cbs = {.on_text = on_text, .on_close = on_close};

static void open_cb(struct fg_ws *ws, int err, int status, void *data)
{
	struct side *s = data;
	s->opened++;
	s->open_err = err;
	s->open_status = status;
	s->ws = ws;
	if (err) {
		maybe_stop();
		return;
	}
	int dir = s == &E->cli ? 0 : 1; /* the direction of what s sends */
	if (E->mode == M_EXCHANGE)
		for (int i = 0; i < 4; i++)
			assert_int_equal(send_next(s, dir), 0);
	if (E->mode == M_BINARY && s == &E->cli)
		assert_int_equal(fg_ws_send_binary(ws, "\x01\x02", 2), 0);
	if (E->mode == M_CLOSE_IN_TEXT || E->mode == M_FREE_IN_TEXT) {
		if (s == &E->cli) {
			/* one write, three messages: the server is still inside
			 * the same read when it closes */
			assert_int_equal(fg_ws_send_text(ws, "a", 1), 0);
			assert_int_equal(fg_ws_send_text(ws, "b", 1), 0);
			assert_int_equal(fg_ws_send_text(ws, "c", 1), 0);
		}
	}
}

static int check_cb(const struct fg_ws_request *req, void **session_data, void *data)
{
	assert_string_equal(req->path, "/agent");
	if (strcmp(req->token, TOKEN) != 0)
		return 401;
	*session_data = &E->srv;
	return 101;
}

static void listen_cb(struct fg_loop *l, struct fg_io *io, uint32_t events)
{
	int fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0)
		return;
	assert_non_null(fg_ws_accept_start(l, fd, check_cb, &cbs, &E->opts, open_cb, &E->srv));
}

/* ---- fixture --------------------------------------------------------- */

static struct sockaddr_in laddr;

static int setup(void **st)
{
	struct env *e = calloc(1, sizeof(*e));
	E = e;
	e->loop = fg_loop_new();
	e->buf = malloc(MAXSZ);
	e->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	laddr =
	    (struct sockaddr_in){.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(bind(e->lfd, (struct sockaddr *)&laddr, sizeof(laddr)), 0);
	socklen_t sl = sizeof(laddr);
	getsockname(e->lfd, (struct sockaddr *)&laddr, &sl);
	assert_int_equal(listen(e->lfd, 16), 0);
	fg_io_init(&e->lio);
	assert_int_equal(fg_io_start(e->loop, &e->lio, e->lfd, FG_IO_READ, listen_cb, e), 0);
	fg_timer_init(&e->guard, guard_cb, e);
	fg_timer_start(e->loop, &e->guard, 60000 * MS);
	*st = e;
	return 0;
}

static int teardown(void **st)
{
	struct env *e = *st;
	fg_ws_free(e->cli.ws);
	fg_ws_free(e->srv.ws);
	fg_timer_stop(e->loop, &e->guard);
	fg_io_stop(e->loop, &e->lio);
	drain(e);
	close(e->lfd);
	fg_loop_free(e->loop);
	free(e->buf);
	free(e);
	E = NULL;
	return 0;
}

static int dial(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int r = connect(fd, (struct sockaddr *)&laddr, sizeof(laddr));
	assert_true(r == 0 || errno == EINPROGRESS);
	return fd;
}

static void start_client(struct env *e, const char *token)
{
	assert_non_null(fg_ws_connect_start(e->loop, dial(), "127.0.0.1", "/agent", token, &cbs,
					    &e->opts, open_cb, &e->cli));
}

/* A client that only does the handshake by hand, then (optionally) sends
 * `extra` in the same write, and never reads. */
static int raw_client(const void *extra, size_t extra_len)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&laddr, sizeof(laddr)), 0);
	char buf[1024];
	int n = fg_ws_build_upgrade_request(buf, sizeof(buf), "x", "/agent",
					    "dGhlIHNhbXBsZSBub25jZQ==", TOKEN);
	assert_true(n > 0);
	if (extra_len)
		memcpy(buf + n, extra, extra_len);
	assert_int_equal(write(fd, buf, (size_t)n + extra_len), n + (int)extra_len);
	return fd;
}

/* ---- tests ----------------------------------------------------------- */

static void test_ws_wrong_token_gets_401(void **st)
{
	struct env *e = *st;
	start_client(e, "wrong");
	fg_loop_run(e->loop);
	assert_int_equal(e->cli.open_err, -EACCES);
	assert_int_equal(e->cli.open_status, 401);
	assert_int_equal(e->srv.open_err, -EACCES);
	assert_int_equal(e->srv.open_status, 401);
	assert_null(e->cli.ws);
}

static void test_ws_missing_token_gets_401(void **st)
{
	struct env *e = *st;
	start_client(e, NULL);
	fg_loop_run(e->loop);
	assert_int_equal(e->cli.open_err, -EACCES);
	assert_int_equal(e->cli.open_status, 401);
}

static void test_ws_thousand_messages_both_ways_intact(void **st)
{
	struct env *e = *st;
	e->mode = M_EXCHANGE;
	e->opts.ping_interval_ns = 20 * MS; /* pings interleave with the data */
	e->opts.ping_timeout_ns = 20000 * MS;
	start_client(e, TOKEN);
	fg_loop_run(e->loop);
	assert_int_equal(e->cli.open_err, 0);
	assert_int_equal(e->srv.open_err, 0);
	assert_int_equal(e->cli.recvd, NMSG);
	assert_int_equal(e->srv.recvd, NMSG);
	assert_int_equal(e->cli.bad, 0);
	assert_int_equal(e->srv.bad, 0);
	assert_int_equal(e->cli.closed, 1);
	assert_int_equal(e->srv.closed, 1);
	assert_int_equal(e->cli.close_code, 1000);
	assert_int_equal(e->srv.close_code, 1000);
	assert_string_equal(e->cli.close_err, "");
	assert_string_equal(e->srv.close_err, "");
}

static void test_ws_idle_session_kept_alive_by_pongs(void **st)
{
	struct env *e = *st;
	e->opts.ping_interval_ns = 20 * MS;
	e->opts.ping_timeout_ns = 100 * MS;
	start_client(e, TOKEN);
	struct fg_timer t;
	fg_timer_init(&t, stop_soon_cb, NULL);
	fg_timer_start(e->loop, &t, 500 * MS);
	fg_loop_run(e->loop);
	assert_int_equal(e->cli.open_err, 0);
	assert_int_equal(e->cli.closed, 0);
	assert_int_equal(e->srv.closed, 0);
}

static void test_ws_ping_timeout_when_peer_never_answers(void **st)
{
	struct env *e = *st;
	e->opts.ping_interval_ns = 20 * MS;
	e->opts.ping_timeout_ns = 200 * MS;
	e->srv_only = 1;
	int fd = raw_client(NULL, 0);
	int64_t t0 = fg_now_ns();
	fg_loop_run(e->loop); /* stops when the server side closes */
	int64_t took = fg_now_ns() - t0;
	assert_int_equal(e->srv.open_err, 0);
	assert_int_equal(e->srv.closed, 1);
	assert_int_equal(e->srv.close_code, 1006);
	assert_string_equal(e->srv.close_err, "ping timeout");
	assert_true(took >= 190 * MS);
	close(fd);
}

static void test_ws_bytes_after_request_head_not_lost(void **st)
{
	struct env *e = *st;
	/* a masked text frame "hi" with mask 0 */
	const uint8_t frame[] = {0x81, 0x82, 0, 0, 0, 0, 'h', 'i'};
	int fd = raw_client(frame, sizeof(frame));
	struct fg_timer t;
	fg_timer_init(&t, stop_soon_cb, NULL);
	fg_timer_start(e->loop, &t, 300 * MS);
	fg_loop_run(e->loop);
	assert_int_equal(e->srv.open_err, 0);
	assert_int_equal(e->srv.texts, 1);
	assert_string_equal(e->srv.last, "hi");
	close(fd);
}

static void test_ws_close_inside_on_text_is_safe(void **st)
{
	struct env *e = *st;
	e->mode = M_CLOSE_IN_TEXT;
	start_client(e, TOKEN);
	fg_loop_run(e->loop);
	assert_int_equal(e->srv.texts, 1); /* nothing delivered after close */
	assert_int_equal(e->srv.closed, 1);
	assert_int_equal(e->cli.closed, 1);
	assert_int_equal(e->srv.close_code, 4000);
	assert_int_equal(e->cli.close_code, 4000);
	assert_string_equal(e->srv.close_err, "");
	assert_string_equal(e->cli.close_err, "");
}

static void test_ws_free_inside_on_text_is_safe(void **st)
{
	struct env *e = *st;
	e->mode = M_FREE_IN_TEXT;
	start_client(e, TOKEN);
	fg_loop_run(e->loop);
	assert_int_equal(e->srv.texts, 1);
	assert_int_equal(e->cli.closed, 1);
	assert_int_equal(e->cli.close_code, 1006);
	assert_string_not_equal(e->cli.close_err, "");
}

static void test_ws_binary_without_handler_closes_1003(void **st)
{
	struct env *e = *st;
	e->mode = M_BINARY;
	start_client(e, TOKEN);
	fg_loop_run(e->loop);
	assert_int_equal(e->srv.close_code, 1003);
	assert_string_equal(e->srv.close_err, "unsupported data");
	assert_int_equal(e->cli.close_code, 1003);
	assert_string_equal(e->cli.close_err, "");
}

static void test_ws_send_queue_limit_returns_enobufs(void **st)
{
	struct env *e = *st;
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	int small = 4096;
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	struct fg_ws_opts o = {.max_queued = 256 * 1024};
	struct fg_ws *ws = fg_ws_new_ex(e->loop, sv[0], false, &cbs, &o, NULL, 0, &e->srv);
	assert_non_null(ws);
	memset(e->buf, 'x', 64 * 1024);
	int r = 0, i;
	for (i = 0; i < 1000 && r == 0; i++)
		r = fg_ws_send_text(ws, e->buf, 64 * 1024);
	assert_int_equal(r, -ENOBUFS);
	assert_true(fg_ws_queued_bytes(ws) <= 256 * 1024);
	assert_true(i < 1000);
	fg_ws_free(ws);
	close(sv[1]);
	assert_int_equal(e->srv.closed, 0); /* free does not call on_close */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_ws_wrong_token_gets_401, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_ws_missing_token_gets_401, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_ws_thousand_messages_both_ways_intact, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_ws_idle_session_kept_alive_by_pongs, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_ws_ping_timeout_when_peer_never_answers, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_ws_bytes_after_request_head_not_lost, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_ws_close_inside_on_text_is_safe, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_ws_free_inside_on_text_is_safe, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_ws_binary_without_handler_closes_1003, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_ws_send_queue_limit_returns_enobufs, setup,
					    teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
