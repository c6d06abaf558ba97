/* fg_nft_compile: golden files. Each case compiles a firewall document and/or
 * a forwards document and compares the script byte for byte with
 * tests/unit/golden/nft/<case>.nft. FG_GOLDEN_UPDATE=1 rewrites the files
 * (review the diff, and check them with `nft -c -f` in a scratch netns). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/alloc.h"
#include "fwd/config.h"
#include "kernel/nft.h"
#include "kernel/nft_compile.h"
#include "kernel/policy.h"

static char *golden_path(const char *name)
{
	static char buf[4096];
	const char *f = __FILE__;
	const char *slash = strrchr(f, '/');
	snprintf(buf, sizeof(buf), "%.*s/golden/nft/%s.nft", slash ? (int)(slash - f) : 1,
		 slash ? f : ".", name);
	return buf;
}

static char *read_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	char *b = calloc(1, 1 << 20);
	size_t n = fread(b, 1, (1 << 20) - 1, f);
	b[n] = '\0';
	fclose(f);
	return b;
}

static void compile_case(const char *name, const char *fw_json, const char *fwd_json)
{
	char err[1024] = "";
	struct fg_fw_doc doc = {0};
	struct fg_forward_set set = {0};
	if (fw_json && fg_fw_doc_parse(fw_json, strlen(fw_json), &doc, err, sizeof(err)))
		fail_msg("%s: firewall document rejected: %s", name, err);
	if (fwd_json && fg_config_parse(fwd_json, strlen(fwd_json), &set, err, sizeof(err)))
		fail_msg("%s: forwards rejected: %s", name, err);
	struct fg_nft_spec spec = {
	    .table = "flowgate", .fw = fw_json ? &doc : NULL, .fwds = set.v, .nfwds = set.n};
	struct fg_strbuf out;
	fg_strbuf_init(&out);
	assert_int_equal(fg_nft_compile(&spec, &out, err, sizeof(err)), 0);
	const char *path = golden_path(name);
	if (getenv("FG_GOLDEN_UPDATE")) {
		FILE *f = fopen(path, "wb");
		assert_non_null(f);
		fwrite(out.s, 1, out.len, f);
		fclose(f);
	}
	char *want = read_file(path);
	if (!want)
		fail_msg("%s: missing golden file %s (run with FG_GOLDEN_UPDATE=1)", name, path);
	if (strcmp(want, out.s) != 0) {
		struct fg_strbuf d;
		fg_strbuf_init(&d);
		fg_text_diff(want, out.s, "golden", "compiled", &d);
		fail_msg("%s: output differs from %s:\n%s", name, path, d.s);
	}
	free(want);
	fg_strbuf_deinit(&out);
	fg_fw_doc_free(&doc);
	fg_forward_set_free(&set);
}

static const char *policies_doc =
    "{\"sets\": ["
    "  {\"name\": \"admins\", \"type\": \"ipv4\", \"elements\": [\"192.0.2.0/24\", "
    "\"198.51.100.7\"]},"
    "  {\"name\": \"admins6\", \"type\": \"ipv6\", \"elements\": [\"2001:db8::/32\"]},"
    "  {\"name\": \"empty\", \"type\": \"ipv4\"}"
    "],"
    "\"policies\": ["
    " {\"name\": \"late\", \"priority\": 200, \"rules\": ["
    "   {\"chain\": \"input\", \"action\": \"drop\", \"proto\": \"tcp\", \"dport\": \"1-1023\","
    "    \"counter\": true, \"comment\": \"default deny low ports\"}]},"
    " {\"name\": \"base\", \"priority\": 10, \"rules\": ["
    "   {\"chain\": \"input\", \"ct_state\": [\"established\", \"related\"], \"action\": "
    "\"accept\"},"
    "   {\"chain\": \"input\", \"ct_state\": \"invalid\", \"action\": \"drop\", \"counter\": true},"
    "   {\"chain\": \"input\", \"iif\": \"lo\", \"action\": \"accept\"},"
    "   {\"chain\": \"input\", \"saddr\": \"@admins\", \"proto\": \"tcp\", \"dport\": 22,"
    "    \"action\": \"accept\", \"comment\": \"ssh from admins\"},"
    "   {\"chain\": \"input\", \"saddr\": [\"10.0.0.0/8\", \"172.16.0.0/12\"], \"proto\": \"both\","
    "    \"dport\": [53, \"8000-8100\"], \"action\": \"accept\", \"counter\": true},"
    "   {\"chain\": \"input\", \"saddr\": \"@admins6\", \"proto\": \"udp\", \"sport\": "
    "\"1024-65535\","
    "    \"dport\": 51820, \"action\": \"accept\"},"
    "   {\"chain\": \"input\", \"proto\": \"icmp\", \"action\": \"limit\","
    "    \"limit\": {\"rate\": \"10/second\", \"burst\": 20}},"
    "   {\"chain\": \"input\", \"proto\": \"icmpv6\", \"action\": \"accept\"},"
    "   {\"chain\": \"input\", \"family\": \"ip6\", \"proto\": \"tcp\", \"dport\": 23,"
    "    \"action\": \"reject\"},"
    "   {\"chain\": \"forward\", \"iif\": \"wg*\", \"oif\": \"eth0\", \"daddr\": \"fd00::/8\","
    "    \"action\": \"reject\", \"counter\": true},"
    "   {\"chain\": \"forward\", \"proto\": \"tcp\", \"action\": \"limit\","
    "    \"limit\": {\"rate\": \"8mbit\", \"burst\": 100000}},"
    "   {\"chain\": \"output\", \"daddr\": \"203.0.113.0/24\", \"action\": \"mark\", \"mark\": 16},"
    "   {\"chain\": \"output\", \"family\": \"ip\", \"proto\": \"udp\", \"dport\": 53,"
    "    \"action\": \"limit\", \"limit\": {\"rate\": \"100/minute\"}},"
    "   {\"chain\": \"prerouting\", \"iif\": \"eth0\", \"proto\": \"tcp\", \"dport\": 2222,"
    "    \"action\": \"dnat\", \"to\": \"10.0.0.5:22\", \"counter\": true},"
    "   {\"chain\": \"prerouting\", \"daddr\": \"2001:db8::1\", \"proto\": \"tcp\", \"dport\": 443,"
    "    \"action\": \"dnat\", \"to\": \"[fd00::5]:8443\"},"
    "   {\"chain\": \"postrouting\", \"saddr\": \"10.0.0.0/24\", \"oif\": \"eth0\","
    "    \"action\": \"snat\", \"to\": \"198.51.100.1\"},"
    "   {\"chain\": \"postrouting\", \"saddr\": \"10.1.0.0/16\", \"action\": \"masquerade\"}"
    " ]},"
    " {\"name\": \"raw-bits\", \"priority\": 10, \"rules\": ["
    "   {\"chain\": \"input\", \"raw\": \"tcp dport 9100 ip saddr 10.9.0.0/16 accept\\n"
    "  # a comment with a } brace\\n  udp dport { 5353, 5354 } counter drop\","
    "    \"comment\": \"metrics and mdns\"}"
    " ]},"
    " {\"name\": \"off\", \"enabled\": false, \"rules\": ["
    "   {\"chain\": \"input\", \"action\": \"drop\"}]}"
    "]}";

static void test_policies_every_action_sets_ranges_raw(void **state)
{
	compile_case("policies", policies_doc, NULL);
}

static void test_empty_document_is_an_empty_table(void **state)
{
	compile_case("empty", "{}", NULL);
}

static void test_kernel_forward_one_target(void **state)
{
	compile_case("fwd_one", NULL,
		     "{\"forwards\": [{\"name\": \"web\", \"engine\": \"kernel\","
		     " \"listen\": \"10.77.1.1:8080\", \"targets\": [\"10.77.2.2:80\"]},"
		     " {\"name\": \"userspace\", \"listen\": \"10.77.1.1:8081\","
		     " \"targets\": [\"10.77.2.2:80\"], \"max_conns\": 3}]}");
}

static void test_kernel_forward_three_targets_both_protos_rates(void **state)
{
	compile_case("fwd_three", NULL,
		     "{\"forwards\": [{\"name\": \"dns.pool-1\", \"engine\": \"kernel\","
		     " \"listen\": \"0.0.0.0:53\", \"proto\": \"both\","
		     " \"targets\": [\"10.77.2.2:5353\", \"10.77.2.3:5353\", \"10.77.2.4:53\"],"
		     " \"rate_up\": \"8mbit\", \"rate_down\": \"2MiB\", \"burst\": \"64KiB\"}]}");
}

static void test_kernel_forward_ranges_v6_and_mixed_targets(void **state)
{
	compile_case(
	    "fwd_ranges", NULL,
	    "{\"forwards\": ["
	    " {\"name\": \"same\", \"engine\": \"kernel\", \"listen\": \"10.77.1.1:10000-10003\","
	    "  \"targets\": [\"10.77.2.2:10000-10003\", \"10.77.2.3:10000-10003\"]},"
	    " {\"name\": \"shift\", \"engine\": \"kernel\", \"proto\": \"udp\","
	    "  \"listen\": \"10.77.1.1:20000-20002\", \"targets\": [\"10.77.2.2:30000-30002\"]},"
	    " {\"name\": \"mixed\", \"engine\": \"kernel\", \"listen\": \"10.77.1.1:40000-40001\","
	    "  \"targets\": [\"10.77.2.2:80\", \"10.77.2.3:50000-50001\"]},"
	    " {\"name\": \"six\", \"engine\": \"kernel\", \"listen\": \"[fd77:1::1]:8443\","
	    "  \"targets\": [\"[fd77:2::2]:443\", \"[fd77:2::3]:443\"]},"
	    " {\"name\": \"off\", \"engine\": \"kernel\", \"enabled\": false,"
	    "  \"listen\": \"10.77.1.1:9999\", \"targets\": [\"10.77.2.2:1\"]}"
	    "]}");
}

static void test_policies_and_forwards_share_one_table(void **state)
{
	compile_case("combined",
		     "{\"policies\": [{\"name\": \"p\", \"rules\": ["
		     " {\"chain\": \"prerouting\", \"saddr\": \"10.77.1.9\", \"action\": \"drop\"},"
		     " {\"chain\": \"forward\", \"action\": \"drop\", \"counter\": true},"
		     " {\"chain\": \"postrouting\", \"oif\": \"n1\", \"action\": \"accept\"}]}]}",
		     "{\"forwards\": [{\"name\": \"web\", \"engine\": \"kernel\","
		     " \"listen\": \"10.77.1.1:8080\", \"targets\": [\"10.77.2.2:80\"]}]}");
}

static void test_bad_table_name_is_refused(void **state)
{
	char err[256];
	struct fg_strbuf out;
	fg_strbuf_init(&out);
	struct fg_nft_spec spec = {.table = "filter"};
	assert_int_equal(fg_nft_compile(&spec, &out, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "filter"));
	spec.table = "flowgate; flush ruleset";
	assert_int_equal(fg_nft_compile(&spec, &out, err, sizeof(err)), -EINVAL);
	assert_int_equal(out.len, 0);
	fg_strbuf_deinit(&out);
}

static void test_counter_names(void **state)
{
	char b[128];
	fg_nft_fwd_counter("web", true, b, sizeof(b));
	assert_string_equal(b, "fwd_web_up");
	fg_nft_fwd_counter("web", false, b, sizeof(b));
	assert_string_equal(b, "fwd_web_down");
	fg_nft_rule_counter("base", 4, b, sizeof(b));
	assert_string_equal(b, "pol_base_4");
}

static void test_diff_shows_only_changes_with_context(void **state)
{
	struct fg_strbuf d;
	fg_strbuf_init(&d);
	fg_text_diff("a\nb\nc\n", "a\nb\nc\n", "x", "y", &d);
	assert_int_equal(d.len, 0);
	fg_text_diff("1\n2\n3\n4\n5\n6\n7\n8\n9\n", "1\n2\n3\n4\nFIVE\n6\n7\n8\n9\n", "old", "new",
		     &d);
	assert_string_equal(d.s, "--- old\n+++ new\n@@\n 2\n 3\n 4\n-5\n+FIVE\n 6\n 7\n 8\n");
	fg_strbuf_deinit(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_policies_every_action_sets_ranges_raw),
	    cmocka_unit_test(test_empty_document_is_an_empty_table),
	    cmocka_unit_test(test_kernel_forward_one_target),
	    cmocka_unit_test(test_kernel_forward_three_targets_both_protos_rates),
	    cmocka_unit_test(test_kernel_forward_ranges_v6_and_mixed_targets),
	    cmocka_unit_test(test_policies_and_forwards_share_one_table),
	    cmocka_unit_test(test_bad_table_name_is_refused),
	    cmocka_unit_test(test_counter_names),
	    cmocka_unit_test(test_diff_shows_only_changes_with_context),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
