/* The agent's files and server URLs (agent/state.h, agent/agent.h):
 * pending counters survive a write/read round trip exactly, a damaged file
 * is refused with a clear error, the state file is replaced atomically,
 * and server URLs parse or are refused clearly (wss:// is parsed; the
 * agent refuses it until TLS lands). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "agent/agent.h"
#include "agent/state.h"

static void test_pending_roundtrip_is_exact(void **state)
{
	char dir[] = "/tmp/fg_test_pending.XXXXXX";
	assert_non_null(mkdtemp(dir));
	struct fg_pending_ctr c1[2] = {
	    {.kind = "forward", .id = "12", .bytes_up = 1, .bytes_down = (1ull << 62), .conns = 3},
	    {.kind = "forward", .id = "7", .bytes_up = 0, .bytes_down = 0, .conns = 0},
	};
	struct fg_pending_boot boots[2] = {
	    {.boot_id = "0123456789abcdef0123456789abcdef", .v = c1, .n = 2},
	    {.boot_id = "b2", .v = NULL, .n = 0},
	};
	struct fg_pending p = {.v = boots, .n = 2}, q;
	char err[256];
	assert_int_equal(fg_pending_load(dir, &q, err, sizeof(err)), -ENOENT);
	assert_int_equal(fg_pending_save(dir, &p), 0);
	assert_int_equal(fg_pending_load(dir, &q, err, sizeof(err)), 0);
	assert_int_equal(q.n, 2);
	assert_string_equal(q.v[0].boot_id, boots[0].boot_id);
	assert_int_equal(q.v[0].n, 2);
	assert_string_equal(q.v[0].v[0].id, "12");
	assert_true(q.v[0].v[0].bytes_down == (1ull << 62));
	assert_int_equal(q.v[0].v[0].conns, 3);
	assert_string_equal(q.v[0].v[1].id, "7");
	assert_int_equal(q.v[1].n, 0);
	fg_pending_remove(&q, 0);
	assert_int_equal(q.n, 1);
	assert_string_equal(q.v[0].boot_id, "b2");
	fg_pending_free(&q);
	/* no temporary file is left behind */
	char tmp[128];
	struct stat sb;
	snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", dir, FG_AGENT_PENDING_FILE);
	assert_int_equal(stat(tmp, &sb), -1);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

static void test_pending_decode_rejects_damage(void **state)
{
	static const struct {
		const char *in, *needle;
	} bad[] = {
	    {"", "not JSON"},
	    {"{\"boots\":{}}", "boots: must be an array"},
	    {"{\"boots\":[{\"counters\":[]}]}", "boots[0].boot_id"},
	    {"{\"boots\":[{\"boot_id\":\"a\"}]}", "boots[0].counters"},
	    {"{\"boots\":[{\"boot_id\":\"a\",\"counters\":[{\"kind\":\"forward\",\"id\":\"x\"}]}]}",
	     "counters[0].id"},
	    {"{\"boots\":[{\"boot_id\":\"a\",\"counters\":[{\"kind\":\"forward\",\"id\":1,"
	     "\"bytes_up\":-5,\"bytes_down\":0,\"conns\":0}]}]}",
	     "non-negative"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct fg_pending q;
		char err[256] = "";
		int rc = fg_pending_decode(bad[i].in, strlen(bad[i].in), &q, err, sizeof(err));
		if (rc != -EINVAL || !strstr(err, bad[i].needle) || q.n != 0)
			fail_msg("%s: got %d \"%s\"", bad[i].in, rc, err);
	}
}

static void test_state_file_roundtrip(void **state)
{
	char dir[] = "/tmp/fg_test_state.XXXXXX";
	assert_non_null(mkdtemp(dir));
	char err[256];
	int64_t rev;
	json_t *st;
	assert_int_equal(fg_agent_state_load(dir, &rev, &st, err, sizeof(err)), -ENOENT);
	json_t *doc = json_pack("{s:[{s:s}]}", "forwards", "name", "a");
	assert_int_equal(fg_agent_state_save(dir, 5, doc), 0);
	assert_int_equal(fg_agent_state_save(dir, 6, doc), 0);
	assert_int_equal(fg_agent_state_load(dir, &rev, &st, err, sizeof(err)), 0);
	assert_int_equal(rev, 6);
	assert_true(json_equal(st, doc));
	json_decref(st);
	json_decref(doc);
	/* a damaged file is refused with its path named */
	assert_int_equal(fg_file_write_atomic(dir, FG_AGENT_STATE_FILE, "{\"rev\":1}", 9), 0);
	assert_int_equal(fg_agent_state_load(dir, &rev, &st, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, FG_AGENT_STATE_FILE));
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

static void test_url_parse(void **state)
{
	struct fg_agent_url u;
	char err[256];
	assert_int_equal(fg_agent_url_parse("ws://10.0.0.1:8080", &u, err, sizeof(err)), 0);
	assert_false(u.tls);
	assert_string_equal(u.host, "10.0.0.1");
	assert_string_equal(u.port, "8080");
	assert_string_equal(u.authority, "10.0.0.1:8080");
	assert_string_equal(u.path, "/agent");
	assert_int_equal(fg_agent_url_parse("ws://[::1]:81/x/agent", &u, err, sizeof(err)), 0);
	assert_string_equal(u.host, "::1");
	assert_string_equal(u.path, "/x/agent");
	assert_int_equal(fg_agent_url_parse("wss://ctl.example.com/", &u, err, sizeof(err)), 0);
	assert_true(u.tls);
	assert_string_equal(u.port, "443");
	assert_string_equal(u.path, "/agent");

	static const struct {
		const char *in, *needle;
	} bad[] = {
	    {"http://x", "ws:// or wss://"},
	    {"ws://", "host is missing"},
	    {"ws://h:0", "port"},
	    {"ws://h:99999", "port"},
	    {"ws://[::1", "closing ']'"},
	    {"ws://h/a?b=1", "query"},
	    {"ws://u@h", "user names"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = fg_agent_url_parse(bad[i].in, &u, err, sizeof(err));
		if (rc != -EINVAL || !strstr(err, bad[i].needle))
			fail_msg("%s: got %d \"%s\"", bad[i].in, rc, err);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_pending_roundtrip_is_exact),
	    cmocka_unit_test(test_pending_decode_rejects_damage),
	    cmocka_unit_test(test_state_file_roundtrip),
	    cmocka_unit_test(test_url_parse),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
