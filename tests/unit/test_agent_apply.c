/* The agent's side of `apply` (doc/protocol.md), against a scripted server
 * on the same loop: the same revision twice gives the same answer and
 * changes nothing; a document that does not validate is refused as a whole
 * with the JSON path named and nothing changes; a forward whose port is
 * taken is reported while the rest runs; unknown sections are ignored; a
 * malformed frame gets a JSON-RPC error. The real engine runs the forwards
 * (a port listens iff a connect to it succeeds). */
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
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "agent/agent.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/loop.h"
#include "net/rpc.h"
#include "net/ws.h"

struct fx {
	char dir[64];
	struct fg_loop *loop;
	int lfd;
	uint16_t port;
	struct fg_io lio;
	struct fg_ws *ws; /* the server side of the agent's session */
	struct fg_agent *agent;
	char *msgs[128];
	size_t nmsgs, read_idx;
	struct fg_timer tick;
	bool (*cond)(struct fx *);
	int64_t deadline;
	bool timed_out;
	int64_t next_id;
};

static int listen_any(uint16_t *port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fd, 16), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	*port = ntohs(sa.sin_port);
	return fd;
}

static uint16_t free_port(void)
{
	uint16_t p;
	close(listen_any(&p));
	return p;
}

static bool listening(uint16_t port)
{
	int c = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
				 .sin_port = htons(port)};
	bool ok = connect(c, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(c);
	return ok;
}

/* ---- scripted server -------------------------------------------------- */

static void srv_text(struct fg_ws *ws, const char *data, size_t len, void *user)
{
	struct fx *f = user;
	struct fg_rpc_msg m;
	char err[FG_RPC_ERR_MAX];
	assert_true(f->nmsgs < 128);
	f->msgs[f->nmsgs++] = strndup(data, len);
	/* answer hello and reports like the hub does */
	if (fg_rpc_decode(data, len, &m, err, sizeof(err)) == 0 && m.kind == FG_RPC_REQUEST) {
		char *t = NULL;
		if (strcmp(m.method, "hello") == 0)
			t = fg_rpc_result(m.id, json_pack("{s:{s:i,s:s},s:i}", "node", "id", 1,
							  "name", "n1", "server_time", 0));
		else if (strcmp(m.method, "report") == 0)
			t = fg_rpc_result(m.id, json_object());
		if (t)
			fg_ws_send_text(ws, t, strlen(t));
		free(t);
	}
	fg_rpc_msg_deinit(&m);
}

static void srv_close(struct fg_ws *ws, int code, const char *err, void *user)
{
	struct fx *f = user;
	fg_ws_free(ws);
	f->ws = NULL;
}

static const struct fg_ws_cbs srv_cbs = {.on_text = srv_text, .on_close = srv_close};

static int srv_check(const struct fg_ws_request *req, void **session_data, void *data)
{
	return strcmp(req->token, "fgn_test") == 0 ? 101 : 401;
}

static void srv_open(struct fg_ws *ws, int err, int http_status, void *data)
{
	struct fx *f = data;
	if (ws)
		f->ws = ws;
}

static void accept_cb(struct fg_loop *loop, struct fg_io *io, uint32_t events)
{
	struct fx *f = io->data;
	int fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd >= 0)
		assert_non_null(
		    fg_ws_accept_start(loop, fd, srv_check, &srv_cbs, NULL, srv_open, f));
}

/* ---- loop helpers ----------------------------------------------------- */

static void tick_cb(struct fg_loop *loop, struct fg_timer *t)
{
	struct fx *f = t->data;
	if (f->cond(f) || fg_loop_now(loop) > f->deadline) {
		f->timed_out = !f->cond(f);
		fg_loop_stop(loop);
		return;
	}
	fg_timer_start(loop, t, 5 * FG_NS_PER_MS);
}

static void run_until(struct fx *f, bool (*cond)(struct fx *), int ms, const char *what)
{
	f->cond = cond;
	f->deadline = fg_loop_update_now(f->loop) + ms * FG_NS_PER_MS;
	fg_timer_init(&f->tick, tick_cb, f);
	fg_timer_start(f->loop, &f->tick, 0);
	fg_loop_run(f->loop);
	fg_timer_stop(f->loop, &f->tick);
	if (f->timed_out)
		fail_msg("timed out waiting for %s", what);
}

static bool hello_seen(struct fx *f)
{
	for (size_t i = 0; i < f->nmsgs; i++)
		if (strstr(f->msgs[i], "\"hello\""))
			return true;
	return false;
}

static int64_t want_id;
static bool answer_seen(struct fx *f)
{
	char needle[48];
	snprintf(needle, sizeof(needle), "\"id\":%lld}", (long long)want_id);
	for (size_t i = 0; i < f->nmsgs; i++)
		if (strstr(f->msgs[i], needle) && !strstr(f->msgs[i], "\"method\""))
			return true;
	return false;
}

/* Sends apply {rev, state} and returns the agent's answer (deinit it). */
static void apply(struct fx *f, int64_t rev, const char *state, struct fg_rpc_msg *out)
{
	char buf[2048];
	int64_t id = f->next_id++;
	snprintf(buf, sizeof(buf),
		 "{\"jsonrpc\":\"2.0\",\"method\":\"apply\",\"params\":{\"rev\":%lld,\"state\":%s},"
		 "\"id\":%lld}",
		 (long long)rev, state, (long long)id);
	assert_int_equal(fg_ws_send_text(f->ws, buf, strlen(buf)), 0);
	want_id = id;
	run_until(f, answer_seen, 5000, "the apply answer");
	char needle[48], err[FG_RPC_ERR_MAX];
	snprintf(needle, sizeof(needle), "\"id\":%lld}", (long long)id);
	for (size_t i = 0; i < f->nmsgs; i++) {
		if (strstr(f->msgs[i], needle) && !strstr(f->msgs[i], "\"method\"")) {
			assert_int_equal(
			    fg_rpc_decode(f->msgs[i], strlen(f->msgs[i]), out, err, sizeof(err)),
			    0);
			return;
		}
	}
	fail();
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	snprintf(f->dir, sizeof(f->dir), "/tmp/fg_test_agent_apply.XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	f->loop = fg_loop_new();
	f->lfd = listen_any(&f->port);
	f->next_id = 100;
	fg_io_init(&f->lio);
	fg_io_start(f->loop, &f->lio, f->lfd, EPOLLIN, accept_cb, f);
	char url[64], err[256];
	snprintf(url, sizeof(url), "ws://127.0.0.1:%u", f->port);
	const char *servers[] = {url};
	struct fg_agent_opts ao = {.loop = f->loop,
				   .servers = servers,
				   .nservers = 1,
				   .token = "fgn_test",
				   .state_dir = f->dir,
				   .report_interval_ns = 200 * FG_NS_PER_MS,
				   .workers = 1};
	f->agent = fg_agent_new(&ao, err, sizeof(err));
	if (!f->agent)
		return -1;
	fg_agent_start(f->agent);
	run_until(f, hello_seen, 5000, "hello");
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	char cmd[128];
	fg_agent_shutdown(f->agent);
	fg_agent_free(f->agent);
	if (f->ws)
		fg_ws_free(f->ws);
	fg_io_stop(f->loop, &f->lio);
	close(f->lfd);
	fg_loop_free(f->loop);
	for (size_t i = 0; i < f->nmsgs; i++)
		free(f->msgs[i]);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	if (system(cmd) != 0)
		return -1;
	free(f);
	return 0;
}

static const char *fwd_state(char *buf, size_t len, uint16_t p1, const char *extra)
{
	snprintf(buf, len,
		 "{\"forwards\":[{\"id\":\"1\",\"name\":\"a\",\"listen\":\"127.0.0.1:%u\","
		 "\"targets\":[\"127.0.0.1:9\"]}%s]}",
		 p1, extra);
	return buf;
}

static void test_agent_same_rev_twice_same_answer_nothing_changes(void **state)
{
	struct fx *f = *state;
	struct fg_rpc_msg m1, m2;
	char s1[512], s2[512];
	uint16_t p1 = free_port(), p2 = free_port();
	apply(f, 5, fwd_state(s1, sizeof(s1), p1, ""), &m1);
	assert_int_equal(m1.kind, FG_RPC_RESULT);
	assert_int_equal(json_integer_value(json_object_get(m1.result, "rev")), 5);
	assert_true(listening(p1));
	/* rev 5 again, whatever it carries: the same answer, no change */
	apply(f, 5, fwd_state(s2, sizeof(s2), p2, ""), &m2);
	assert_int_equal(m2.kind, FG_RPC_RESULT);
	assert_true(json_equal(m1.result, m2.result));
	assert_true(listening(p1));
	assert_false(listening(p2));
	fg_rpc_msg_deinit(&m1);
	fg_rpc_msg_deinit(&m2);
}

static void test_agent_bad_document_is_refused_and_nothing_changes(void **state)
{
	struct fx *f = *state;
	struct fg_rpc_msg m;
	char s1[512];
	uint16_t p1 = free_port();
	apply(f, 1, fwd_state(s1, sizeof(s1), p1, ""), &m);
	assert_int_equal(m.kind, FG_RPC_RESULT);
	fg_rpc_msg_deinit(&m);
	apply(f, 2, "{\"forwards\":[{\"name\":\"b\",\"listen\":\"nowhere\",\"targets\":[]}]}", &m);
	assert_int_equal(m.kind, FG_RPC_ERROR);
	assert_int_equal(m.err_code, FG_RPC_APPLY_FAILED);
	assert_non_null(strstr(m.err_message, "forwards[0]"));
	fg_rpc_msg_deinit(&m);
	assert_true(listening(p1)); /* rev 1 still runs */
	apply(f, 3, "{\"forwards\":{}}", &m);
	assert_int_equal(m.kind, FG_RPC_ERROR);
	assert_int_equal(m.err_code, FG_RPC_INVALID_PARAMS);
	fg_rpc_msg_deinit(&m);
	assert_true(listening(p1));
}

static void test_agent_taken_port_is_reported_and_the_rest_runs(void **state)
{
	struct fx *f = *state;
	struct fg_rpc_msg m;
	char s[512], extra[256];
	uint16_t taken, p1 = free_port();
	int squat = listen_any(&taken);
	snprintf(extra, sizeof(extra),
		 ",{\"id\":\"2\",\"name\":\"b\",\"listen\":\"127.0.0.1:%u\",\"targets\":[\"127.0.0."
		 "1:9\"]}",
		 taken);
	/* and a section this agent does not know: ignored */
	char doc[800];
	fwd_state(s, sizeof(s), p1, extra);
	snprintf(doc, sizeof(doc), "%.*s,\"tunnels\":[]}", (int)strlen(s) - 1, s);
	apply(f, 7, doc, &m);
	assert_int_equal(m.kind, FG_RPC_RESULT);
	json_t *st = json_object_get(m.result, "status");
	assert_int_equal(json_array_size(st), 2);
	json_t *a = json_array_get(st, 0), *b = json_array_get(st, 1);
	assert_true(json_is_true(json_object_get(a, "ok")));
	assert_false(json_is_true(json_object_get(b, "ok")));
	assert_string_equal(json_string_value(json_object_get(b, "id")), "2");
	assert_non_null(strstr(json_string_value(json_object_get(b, "error")), "in use"));
	assert_true(listening(p1));
	fg_rpc_msg_deinit(&m);
	close(squat);
}

static void test_agent_answers_malformed_frames_with_errors(void **state)
{
	struct fx *f = *state;
	const char *bad = "{\"jsonrpc\":\"2.0\",\"method\":\"apply\",\"params\":{\"rev\":\"x\"},"
			  "\"id\":77}";
	assert_int_equal(fg_ws_send_text(f->ws, bad, strlen(bad)), 0);
	want_id = 77;
	run_until(f, answer_seen, 5000, "the error answer");
	const char *last = f->msgs[f->nmsgs - 1];
	assert_non_null(strstr(last, "\"code\":-32602"));
	assert_non_null(strstr(last, "rev"));
	const char *unknown = "{\"jsonrpc\":\"2.0\",\"method\":\"reboot\",\"id\":78}";
	assert_int_equal(fg_ws_send_text(f->ws, unknown, strlen(unknown)), 0);
	want_id = 78;
	run_until(f, answer_seen, 5000, "the error answer");
	assert_non_null(strstr(f->msgs[f->nmsgs - 1], "\"code\":-32601"));
	/* not JSON: answered to null, the session stays up */
	const char *junk = "}{";
	assert_int_equal(fg_ws_send_text(f->ws, junk, 2), 0);
	size_t n = f->nmsgs;
	for (int i = 0; i < 100 && f->nmsgs == n; i++) {
		struct fg_rpc_msg m;
		apply(f, 9, "{\"forwards\":[]}", &m);
		fg_rpc_msg_deinit(&m);
	}
	bool found = false;
	for (size_t i = n; i < f->nmsgs; i++)
		found |= strstr(f->msgs[i], "\"code\":-32700") != NULL;
	assert_true(found);
	assert_non_null(f->ws);
}

int main(void)
{
	fg_log_set_level(FG_LOG_ERROR);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_agent_same_rev_twice_same_answer_nothing_changes,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_agent_bad_document_is_refused_and_nothing_changes,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_agent_taken_port_is_reported_and_the_rest_runs,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_agent_answers_malformed_frames_with_errors, setup,
					    teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
