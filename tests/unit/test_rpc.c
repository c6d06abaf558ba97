/* The control protocol decoders (net/rpc.h): well-formed messages decode,
 * and every malformed one gets the right JSON-RPC code with a message
 * naming the field. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "net/rpc.h"

static int decode(const char *s, struct fg_rpc_msg *m, char *err)
{
	return fg_rpc_decode(s, strlen(s), m, err, FG_RPC_ERR_MAX);
}

static void expect_bad(const char *s, int code, const char *needle)
{
	struct fg_rpc_msg m;
	char err[FG_RPC_ERR_MAX] = "";
	int rc = decode(s, &m, err);
	if (rc != code || !strstr(err, needle))
		fail_msg("%s: got %d \"%s\", want %d with \"%s\"", s, rc, err, code, needle);
	fg_rpc_msg_deinit(&m);
}

static void test_rpc_envelope_kinds(void **state)
{
	struct fg_rpc_msg m;
	char err[FG_RPC_ERR_MAX];
	assert_int_equal(
	    decode("{\"jsonrpc\":\"2.0\",\"method\":\"hello\",\"params\":{},\"id\":7}", &m, err),
	    0);
	assert_int_equal(m.kind, FG_RPC_REQUEST);
	assert_string_equal(m.method, "hello");
	assert_int_equal(m.id_int, 7);
	fg_rpc_msg_deinit(&m);

	assert_int_equal(decode("{\"jsonrpc\":\"2.0\",\"method\":\"x\"}", &m, err), 0);
	assert_int_equal(m.kind, FG_RPC_NOTIFY);
	assert_null(m.id);
	fg_rpc_msg_deinit(&m);

	assert_int_equal(decode("{\"jsonrpc\":\"2.0\",\"result\":{\"rev\":3},\"id\":2}", &m, err),
			 0);
	assert_int_equal(m.kind, FG_RPC_RESULT);
	assert_int_equal(m.id_int, 2);
	fg_rpc_msg_deinit(&m);

	assert_int_equal(
	    decode(
		"{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32602,\"message\":\"no\"},\"id\":null}",
		&m, err),
	    0);
	assert_int_equal(m.kind, FG_RPC_ERROR);
	assert_int_equal(m.err_code, -32602);
	assert_string_equal(m.err_message, "no");
	fg_rpc_msg_deinit(&m);
}

static void test_rpc_envelope_rejects_malformed(void **state)
{
	expect_bad("", FG_RPC_PARSE_ERROR, "not JSON");
	expect_bad("{\"jsonrpc\":\"2.0\",", FG_RPC_PARSE_ERROR, "not JSON");
	expect_bad("[1,2]", FG_RPC_INVALID_REQUEST, "not an object");
	expect_bad("{\"method\":\"hello\",\"id\":1}", FG_RPC_INVALID_REQUEST, "jsonrpc");
	expect_bad("{\"jsonrpc\":\"1.0\",\"method\":\"hello\"}", FG_RPC_INVALID_REQUEST, "jsonrpc");
	expect_bad("{\"jsonrpc\":\"2.0\",\"method\":5}", FG_RPC_INVALID_REQUEST, "method");
	expect_bad("{\"jsonrpc\":\"2.0\",\"method\":\"a\",\"params\":3}", FG_RPC_INVALID_REQUEST,
		   "params");
	expect_bad("{\"jsonrpc\":\"2.0\",\"id\":{}}", FG_RPC_INVALID_REQUEST, "id");
	expect_bad("{\"jsonrpc\":\"2.0\",\"id\":1}", FG_RPC_INVALID_REQUEST, "result and error");
	expect_bad("{\"jsonrpc\":\"2.0\",\"result\":1}", FG_RPC_INVALID_REQUEST, "needs an id");
	expect_bad("{\"jsonrpc\":\"2.0\",\"error\":{\"code\":\"x\"},\"id\":1}",
		   FG_RPC_INVALID_REQUEST, "integer code");
	expect_bad("{\"jsonrpc\":\"2.0\",\"method\":\"a\",\"method\":\"b\"}", FG_RPC_PARSE_ERROR,
		   "duplicate");

	/* the id survives a bad message so the error can be answered to it */
	struct fg_rpc_msg m;
	char err[FG_RPC_ERR_MAX];
	assert_int_equal(decode("{\"jsonrpc\":\"2.0\",\"method\":7,\"id\":42}", &m, err),
			 FG_RPC_INVALID_REQUEST);
	assert_int_equal(m.id_int, 42);
	char *text = fg_rpc_error(m.id, FG_RPC_INVALID_REQUEST, err);
	assert_non_null(strstr(text, "\"id\":42"));
	free(text);
	fg_rpc_msg_deinit(&m);
}

static json_t *J(const char *s)
{
	json_error_t je;
	json_t *j = json_loads(s, 0, &je);
	assert_non_null(j);
	return j;
}

static void test_rpc_hello_decode(void **state)
{
	char err[FG_RPC_ERR_MAX];
	struct fg_hello h;
	json_t *p = J("{\"version\":\"0.1.0\",\"hostname\":\"n1\",\"boot_id\":\"ab12\","
		      "\"applied_rev\":4,\"capabilities\":[\"forward\"]}");
	assert_int_equal(fg_hello_decode(p, &h, err, sizeof(err)), 0);
	assert_string_equal(h.version, "0.1.0");
	assert_string_equal(h.boot_id, "ab12");
	assert_int_equal(h.applied_rev, 4);
	json_decref(p);

	static const struct {
		const char *in, *needle;
	} bad[] = {
	    {"[]", "must be an object, not an array"},
	    {"{\"boot_id\":\"a\"}", "version: missing"},
	    {"{\"version\":\"1\"}", "boot_id: missing"},
	    {"{\"version\":\"1\",\"boot_id\":\"a b\"}", "boot_id"},
	    {"{\"version\":1,\"boot_id\":\"a\"}", "version: must be a string, not an integer"},
	    {"{\"version\":\"1\",\"boot_id\":\"a\",\"applied_rev\":-1}", "applied_rev"},
	    {"{\"version\":\"1\",\"boot_id\":\"a\",\"capabilities\":[1]}", "capabilities[0]"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		p = J(bad[i].in);
		int rc = fg_hello_decode(p, &h, err, sizeof(err));
		if (rc != FG_RPC_INVALID_PARAMS || !strstr(err, bad[i].needle))
			fail_msg("%s: got %d \"%s\"", bad[i].in, rc, err);
		json_decref(p);
	}
}

static void test_rpc_report_decode(void **state)
{
	char err[FG_RPC_ERR_MAX];
	struct fg_report r;
	json_t *p = J("{\"boot_id\":\"b1\",\"ts\":100,\"applied_rev\":3,"
		      "\"status\":[{\"kind\":\"forward\",\"id\":\"5\",\"name\":\"w\",\"ok\":false,"
		      "\"error\":\"port in use\"}],"
		      "\"counters\":[{\"kind\":\"forward\",\"id\":\"5\",\"bytes_up\":10,"
		      "\"bytes_down\":20,\"conns\":1,\"active\":0},"
		      "{\"kind\":\"forward\",\"id\":6,\"bytes_up\":0,\"bytes_down\":0}]}");
	assert_int_equal(fg_report_decode(p, &r, err, sizeof(err)), 0);
	assert_int_equal(r.applied_rev, 3);
	assert_int_equal(json_array_size(r.counters), 2);
	struct fg_counter_rec c;
	assert_int_equal(
	    fg_counter_decode(json_array_get(r.counters, 0), "c", &c, err, sizeof(err)), 0);
	assert_int_equal(c.id, 5);
	assert_int_equal(c.bytes_down, 20);
	struct fg_status_rec s;
	assert_int_equal(fg_status_decode(json_array_get(r.status, 0), "s", &s, err, sizeof(err)),
			 0);
	assert_false(s.ok);
	assert_string_equal(s.error, "port in use");
	json_decref(p);

	/* no applied_rev, no status: unchanged */
	p = J("{\"boot_id\":\"b1\",\"counters\":[]}");
	assert_int_equal(fg_report_decode(p, &r, err, sizeof(err)), 0);
	assert_int_equal(r.applied_rev, -1);
	assert_null(r.status);
	json_decref(p);

	static const struct {
		const char *in, *needle;
	} bad[] = {
	    {"{}", "boot_id: missing"},
	    {"{\"boot_id\":\"b\",\"counters\":{}}", "counters: must be an array, not an object"},
	    {"{\"boot_id\":\"b\",\"counters\":[{\"kind\":\"forward\",\"id\":\"x\",\"bytes_up\":1,"
	     "\"bytes_down\":1}]}",
	     "counters[0].id"},
	    {"{\"boot_id\":\"b\",\"counters\":[{\"kind\":\"forward\",\"id\":1,\"bytes_up\":-1,"
	     "\"bytes_down\":1}]}",
	     "counters[0].bytes_up"},
	    {"{\"boot_id\":\"b\",\"counters\":[{\"kind\":\"forward\",\"id\":1,\"bytes_up\":1}]}",
	     "counters[0].bytes_down: missing"},
	    {"{\"boot_id\":\"b\",\"status\":[{\"kind\":\"forward\",\"id\":1}]}", "status[0].ok"},
	    {"{\"boot_id\":\"b\",\"counters\":[{\"kind\":\"forward\",\"id\":0,\"bytes_up\":1,"
	     "\"bytes_down\":1}]}",
	     "counters[0].id"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		p = J(bad[i].in);
		int rc = fg_report_decode(p, &r, err, sizeof(err));
		if (rc != FG_RPC_INVALID_PARAMS || !strstr(err, bad[i].needle))
			fail_msg("%s: got %d \"%s\"", bad[i].in, rc, err);
		json_decref(p);
	}
}

/* A tunnel's counter entry carries its link health; absent fields read
 * -1 (an older agent, a tunnel not running) and wrong ones are refused
 * naming the field, so the hub never shows a made-up round trip. */
static void test_rpc_tunnel_counter_link_fields(void **state)
{
	char err[FG_RPC_ERR_MAX];
	struct fg_counter_rec c;
	json_t *o = J("{\"kind\":\"tunnel\",\"id\":\"17\",\"bytes_up\":1,\"bytes_down\":2,"
		      "\"links_up\":2,\"rtt_next_us\":21500}");
	assert_int_equal(fg_counter_decode(o, "counters[0]", &c, err, sizeof(err)), 0);
	assert_int_equal(c.links_up, 2);
	assert_int_equal(c.rtt_next_us, 21500);
	assert_int_equal(c.rtt_prev_us, -1);
	json_decref(o);
	o = J("{\"kind\":\"tunnel\",\"id\":17,\"bytes_up\":1,\"bytes_down\":2}");
	assert_int_equal(fg_counter_decode(o, "c", &c, err, sizeof(err)), 0);
	assert_int_equal(c.links_up, -1);
	assert_int_equal(c.rtt_prev_us, -1);
	assert_int_equal(c.rtt_next_us, -1);
	json_decref(o);

	static const struct {
		const char *extra, *needle;
	} bad[] = {
	    {"\"links_up\":-1", "c.links_up: -1 is negative"},
	    {"\"links_up\":\"2\"", "c.links_up: must be a non-negative integer, not a string"},
	    {"\"rtt_prev_us\":1.5", "c.rtt_prev_us: must be a non-negative integer"},
	    {"\"rtt_next_us\":60000001", "c.rtt_next_us: 60000001 is more than 60000000"},
	    {"\"links_up\":1000001", "c.links_up: 1000001 is more than 1000000"},
	    {"\"rtt_next_us\":null", "c.rtt_next_us: must be a non-negative integer"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char text[256];
		snprintf(text, sizeof(text),
			 "{\"kind\":\"tunnel\",\"id\":1,\"bytes_up\":1,\"bytes_down\":1,%s}",
			 bad[i].extra);
		o = J(text);
		int rc = fg_counter_decode(o, "c", &c, err, sizeof(err));
		if (rc != FG_RPC_INVALID_PARAMS || !strstr(err, bad[i].needle))
			fail_msg("%s: got %d \"%s\"", text, rc, err);
		json_decref(o);
	}
}

/* A tunnel's run-time warning: optional ("" when absent, what an older
 * agent sends), one bounded line of text; anything else is refused
 * naming the field, so the API never shows a megabyte or a terminal
 * escape from a node. */
static void test_rpc_tunnel_counter_warn(void **state)
{
	(void)state;
	char err[FG_RPC_ERR_MAX];
	struct fg_counter_rec c;
	json_t *o =
	    J("{\"kind\":\"tunnel\",\"id\":3,\"bytes_up\":1,\"bytes_down\":2,\"links_up\":0,"
	      "\"warn\":\"1 name unresolved: targets[0] \\\"db.internal\\\" (cannot "
	      "resolve: Domain name not found; streams to it are refused)\"}");
	assert_int_equal(fg_counter_decode(o, "c", &c, err, sizeof(err)), 0);
	assert_string_equal(c.warn,
			    "1 name unresolved: targets[0] \"db.internal\" (cannot resolve: "
			    "Domain name not found; streams to it are refused)");
	json_decref(o);
	o = J("{\"kind\":\"tunnel\",\"id\":3,\"bytes_up\":1,\"bytes_down\":2}");
	assert_int_equal(fg_counter_decode(o, "c", &c, err, sizeof(err)), 0);
	assert_string_equal(c.warn, "");
	json_decref(o);

	char longest[FG_RPC_WARN_MAX + 2];
	memset(longest, 'x', FG_RPC_WARN_MAX);
	longest[FG_RPC_WARN_MAX] = '\0';
	o = json_pack("{s:s,s:i,s:i,s:i,s:s}", "kind", "tunnel", "id", 3, "bytes_up", 1,
		      "bytes_down", 1, "warn", longest);
	assert_int_equal(fg_counter_decode(o, "c", &c, err, sizeof(err)), 0);
	assert_int_equal(strlen(c.warn), FG_RPC_WARN_MAX);
	json_decref(o);
	strcat(longest, "x");
	o = json_pack("{s:s,s:i,s:i,s:i,s:s}", "kind", "tunnel", "id", 3, "bytes_up", 1,
		      "bytes_down", 1, "warn", longest);
	assert_int_equal(fg_counter_decode(o, "c", &c, err, sizeof(err)), FG_RPC_INVALID_PARAMS);
	assert_non_null(strstr(err, "c.warn: must be at most 255 characters"));
	json_decref(o);

	static const struct {
		const char *extra, *needle;
	} bad[] = {
	    {"\"warn\":1", "c.warn: must be a string, not an integer"},
	    {"\"warn\":null", "c.warn: must be a string"},
	    {"\"warn\":\"a\\nb\"", "c.warn: must be one line without control characters"},
	    {"\"warn\":\"\\u001b[31mred\"", "c.warn: must be one line without control characters"},
	    {"\"warn\":\"a\\u0000b\"", "c.warn: must be at most 255 characters, without NUL"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char text[256];
		snprintf(text, sizeof(text),
			 "{\"kind\":\"tunnel\",\"id\":1,\"bytes_up\":1,\"bytes_down\":1,%s}",
			 bad[i].extra);
		o = json_loads(text, JSON_ALLOW_NUL, NULL);
		assert_non_null(o);
		int rc = fg_counter_decode(o, "c", &c, err, sizeof(err));
		if (rc != FG_RPC_INVALID_PARAMS || !strstr(err, bad[i].needle))
			fail_msg("%s: got %d \"%s\"", text, rc, err);
		json_decref(o);
	}
}

static void test_rpc_apply_decode(void **state)
{
	char err[FG_RPC_ERR_MAX];
	struct fg_apply a;
	json_t *p = J("{\"rev\":9,\"state\":{\"forwards\":[],\"tunnels\":[]}}");
	assert_int_equal(fg_apply_decode(p, &a, err, sizeof(err)), 0);
	assert_int_equal(a.rev, 9);
	assert_true(json_is_array(a.forwards));
	json_decref(p);

	p = J("{\"rev\":1,\"state\":{}}");
	assert_int_equal(fg_apply_decode(p, &a, err, sizeof(err)), 0);
	assert_null(a.forwards);
	json_decref(p);

	static const char *const bad[] = {"{\"state\":{}}", "{\"rev\":0,\"state\":{}}",
					  "{\"rev\":1}", "{\"rev\":1,\"state\":[]}",
					  "{\"rev\":1,\"state\":{\"forwards\":{}}}"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		p = J(bad[i]);
		assert_int_equal(fg_apply_decode(p, &a, err, sizeof(err)), FG_RPC_INVALID_PARAMS);
		json_decref(p);
	}

	struct fg_apply_result ar;
	p = J("{\"rev\":2,\"status\":[{\"kind\":\"forward\",\"id\":\"1\",\"ok\":true}]}");
	assert_int_equal(fg_apply_result_decode(p, &ar, err, sizeof(err)), 0);
	assert_int_equal(ar.rev, 2);
	json_decref(p);
	p = J("{\"status\":[]}");
	assert_int_equal(fg_apply_result_decode(p, &ar, err, sizeof(err)), FG_RPC_INVALID_PARAMS);
	assert_non_null(strstr(err, "rev: missing"));
	json_decref(p);

	struct fg_hello_result hr;
	p = J("{\"node\":{\"id\":3,\"name\":\"edge\"},\"server_time\":5}");
	assert_int_equal(fg_hello_result_decode(p, &hr, err, sizeof(err)), 0);
	assert_int_equal(hr.node_id, 3);
	assert_string_equal(hr.node_name, "edge");
	json_decref(p);
}

static void test_rpc_encoders_roundtrip(void **state)
{
	struct fg_rpc_msg m;
	char err[FG_RPC_ERR_MAX];
	char *t = fg_rpc_request("report", json_pack("{s:s}", "boot_id", "x"), 12);
	assert_int_equal(decode(t, &m, err), 0);
	assert_int_equal(m.kind, FG_RPC_REQUEST);
	assert_int_equal(m.id_int, 12);
	fg_rpc_msg_deinit(&m);
	free(t);
	json_t *id = json_integer(12);
	t = fg_rpc_result(id, json_object());
	assert_int_equal(decode(t, &m, err), 0);
	assert_int_equal(m.kind, FG_RPC_RESULT);
	fg_rpc_msg_deinit(&m);
	free(t);
	json_decref(id);
	t = fg_rpc_error(NULL, FG_RPC_PARSE_ERROR, "bad \"x\"\n");
	assert_int_equal(decode(t, &m, err), 0);
	assert_int_equal(m.kind, FG_RPC_ERROR);
	assert_string_equal(m.err_message, "bad \"x\"\n");
	fg_rpc_msg_deinit(&m);
	free(t);
	/* an error quoting a peer's non-UTF-8 bytes still encodes (fuzz find) */
	t = fg_rpc_error(NULL, FG_RPC_PARSE_ERROR, "near \"\xc6\x97\xfe\"");
	assert_non_null(t);
	assert_int_equal(decode(t, &m, err), 0);
	assert_string_equal(m.err_message, "near \"???\"");
	fg_rpc_msg_deinit(&m);
	free(t);
}

static void test_rpc_task_and_firewall_show_decode(void **state)
{
	char err[FG_RPC_ERR_MAX];
	struct fg_report r;
	json_t *rp =
	    J("{\"boot_id\":\"b1\",\"counters\":[],\"firewall\":{\"counters\":"
	      "[{\"name\":\"pol_a_0\",\"packets\":1,\"bytes\":60}],\"confirm_pending\":false}}");
	assert_int_equal(fg_report_decode(rp, &r, err, sizeof(err)), 0);
	assert_non_null(r.firewall);
	json_decref(rp);
	rp = J("{\"boot_id\":\"b1\",\"firewall\":{\"counters\":[{\"name\":\"x\",\"packets\":1}]}}");
	assert_int_equal(fg_report_decode(rp, &r, err, sizeof(err)), FG_RPC_INVALID_PARAMS);
	assert_non_null(strstr(err, "firewall.counters[0].bytes: missing"));
	json_decref(rp);
	struct fg_task t;
	json_t *p = J("{\"kind\":\"firewall_show\",\"script\":\"table inet flowgate {}\"}");
	assert_int_equal(fg_task_decode(p, &t, err, sizeof(err)), 0);
	assert_string_equal(t.kind, "firewall_show");
	assert_string_equal(t.script, "table inet flowgate {}");
	json_decref(p);
	p = J("{\"kind\":\"firewall_show\"}");
	assert_int_equal(fg_task_decode(p, &t, err, sizeof(err)), 0);
	assert_string_equal(t.script, "");
	json_decref(p);
	p = J("{\"script\":\"x\"}");
	assert_int_equal(fg_task_decode(p, &t, err, sizeof(err)), FG_RPC_INVALID_PARAMS);
	assert_non_null(strstr(err, "kind: missing"));
	json_decref(p);

	struct fg_firewall_show fs;
	p = J("{\"live\":\"table inet flowgate {\\n}\\n\",\"preview\":\"p\",\"counters\":"
	      "[{\"name\":\"pol_a_0\",\"packets\":2,\"bytes\":120}],\"confirm_pending\":true}");
	assert_int_equal(fg_firewall_show_decode(p, &fs, err, sizeof(err)), 0);
	assert_true(fs.confirm_pending);
	assert_string_equal(fs.preview, "p");
	assert_string_equal(fs.preview_error, "");
	struct fg_nft_counter_rec c;
	assert_int_equal(
	    fg_nft_counter_decode(json_array_get(fs.counters, 0), "c", &c, err, sizeof(err)), 0);
	assert_string_equal(c.name, "pol_a_0");
	assert_int_equal(c.packets, 2);
	assert_int_equal(c.bytes, 120);
	json_decref(p);

	static const struct {
		const char *json, *want;
	} bad[] = {
	    {"{\"preview\":\"\"}", "live: missing"},
	    {"{\"live\":1}", "live: must be a string"},
	    {"{\"live\":\"\",\"confirm_pending\":1}", "confirm_pending: must be a boolean"},
	    {"{\"live\":\"\",\"counters\":{}}", "counters: must be an array"},
	    {"{\"live\":\"\",\"counters\":[{\"name\":\"x\",\"packets\":-1,\"bytes\":0}]}",
	     "counters[0].packets: -1 is negative"},
	    {"{\"live\":\"\",\"counters\":[{\"packets\":1,\"bytes\":0}]}",
	     "counters[0].name: missing"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		p = J(bad[i].json);
		assert_int_equal(fg_firewall_show_decode(p, &fs, err, sizeof(err)),
				 FG_RPC_INVALID_PARAMS);
		if (!strstr(err, bad[i].want))
			fail_msg("%s: got \"%s\", want \"%s\"", bad[i].json, err, bad[i].want);
		json_decref(p);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_rpc_envelope_kinds),
	    cmocka_unit_test(test_rpc_envelope_rejects_malformed),
	    cmocka_unit_test(test_rpc_hello_decode),
	    cmocka_unit_test(test_rpc_report_decode),
	    cmocka_unit_test(test_rpc_tunnel_counter_link_fields),
	    cmocka_unit_test(test_rpc_tunnel_counter_warn),
	    cmocka_unit_test(test_rpc_apply_decode),
	    cmocka_unit_test(test_rpc_task_and_firewall_show_decode),
	    cmocka_unit_test(test_rpc_encoders_roundtrip),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
