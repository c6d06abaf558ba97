/* fg_fw_doc_parse: every rejection names the JSON path and the value, nothing
 * that could carry nft syntax gets through, and good documents parse into the
 * canonical text the compiler assembles. Table-driven. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "core/alloc.h"
#include "kernel/policy.h"

/* One rule inside a one-policy document; %s is the rule object. */
#define DOC(rule)                                                                                  \
	"{\"sets\": [{\"name\": \"admins\", \"type\": \"ipv4\", \"elements\": [\"10.0.0.0/8\"]}]," \
	" \"policies\": [{\"name\": \"p\", \"rules\": [{\"chain\": \"input\", \"action\": "        \
	"\"accept\"}, " rule "]}]}"

static const struct bad_case {
	const char *doc, *error;
} bad_cases[] = {
    {"[]", "the document must be an object"},
    {"{\"policies\": {}}", "policies: {} must be an array"},
    {"{\"rules\": []}", "rules: unknown field"},
    {"{\"policies\": [{\"rules\": []}]}", "policies[0].name: missing"},
    {"{\"policies\": [{\"name\": \"a b\", \"rules\": []}]}",
     "policies[0].name: \"a b\" must be 1-48 characters"},
    {"{\"policies\": [{\"name\": \"a\"}]}", "policies[0].rules: missing"},
    {"{\"policies\": [{\"name\": \"a\", \"rules\": []}, {\"name\": \"a\", \"rules\": []}]}",
     "policies[1].name: \"a\" is already used by policies[0]"},
    {"{\"policies\": [{\"name\": \"a\", \"priority\": \"high\", \"rules\": []}]}",
     "policies[0].priority: \"high\" is not a number"},
    {DOC("{\"chain\": \"input\", \"action\": \"accept\", \"proto\": \"tcp\", \"dport\": "
	 "\"70000\"}"),
     "policies[0].rules[1].dport: \"70000\" is not a port or range"},
    {DOC("{\"chain\": \"input\", \"action\": \"accept\", \"proto\": \"tcp\", \"dport\": "
	 "\"200-100\"}"),
     "policies[0].rules[1].dport: \"200-100\" is not a port or range"},
    {DOC("{\"chain\": \"input\", \"action\": \"accept\", \"proto\": \"tcp\", \"sport\": [22, "
	 "0]}"),
     "policies[0].rules[1].sport: 0 is not a port or range"},
    {DOC("{\"chain\": \"input\", \"action\": \"accept\", \"dport\": 22}"),
     "policies[0].rules[1].dport: ports need proto tcp, udp or both"},
    {DOC("{\"chain\": \"inptu\", \"action\": \"accept\"}"),
     "policies[0].rules[1].chain: \"inptu\" is not input, forward, output"},
    {DOC("{\"action\": \"accept\"}"), "policies[0].rules[1].chain: missing"},
    {DOC("{\"chain\": \"input\"}"), "policies[0].rules[1].action: missing"},
    {DOC("{\"chain\": \"input\", \"action\": \"allow\"}"),
     "policies[0].rules[1].action: \"allow\" is not accept, drop"},
    {DOC("{\"chain\": \"input\", \"action\": \"accept\", \"saddr\": \"10.0.0.1/8\"}"),
     "policies[0].rules[1].saddr: \"10.0.0.1/8\" has host bits set"},
    {DOC("{\"chain\": \"input\", \"action\": \"accept\", \"saddr\": \"10.0.0.0/33\"}"),
     "policies[0].rules[1].saddr: \"10.0.0.0/33\" is not a CIDR or address"},
    {DOC("{\"chain\": \"input\", \"action\": \"accept\", \"saddr\": [\"10.0.0.0/8\", "
	 "\"fd00::/8\"]}"),
     "policies[0].rules[1].saddr: mixes IPv4 and IPv6"},
    {DOC("{\"chain\": \"input\", \"action\": \"accept\", \"family\": \"ip6\", \"daddr\": "
	 "\"10.0.0.1\"}"),
     "policies[0].rules[1].daddr: IPv4 addresses in a rule of family ip6"},
    {DOC("{\"chain\": \"input\", \"action\": \"accept\", \"saddr\": \"@nosuch\"}"),
     "policies[0].rules[1].saddr: \"@nosuch\" is not a set defined in sets"},
    {DOC("{\"chain\": \"input\", \"action\": \"accept\", \"saddr\": [\"@admins\", "
	 "\"1.2.3.4\"]}"),
     "policies[0].rules[1].saddr: \"@admins\": a set must be the only item"},
    {DOC("{\"chain\": \"input\", \"action\": \"accept\", \"iif\": \"eth0\\\" accept\"}"),
     "policies[0].rules[1].iif: \"eth0\" accept\" is not an interface name"},
    {DOC("{\"chain\": \"input\", \"action\": \"accept\", \"iif\": \"averyveryverylongname\"}"),
     "policies[0].rules[1].iif:"},
    {DOC("{\"chain\": \"input\", \"action\": \"accept\", \"comment\": \"a\\\"b\"}"),
     "policies[0].rules[1].comment:"},
    {DOC("{\"chain\": \"input\", \"action\": \"accept\", \"comment\": \"a\\nb\"}"),
     "policies[0].rules[1].comment:"},
    {DOC("{\"chain\": \"output\", \"action\": \"accept\", \"iif\": \"eth0\"}"),
     "policies[0].rules[1].iif: chain output has no input interface"},
    {DOC("{\"chain\": \"input\", \"action\": \"accept\", \"ct_state\": [\"new\", \"old\"]}"),
     "policies[0].rules[1].ct_state: \"old\" is not new, established"},
    {DOC("{\"chain\": \"prerouting\", \"action\": \"reject\"}"),
     "policies[0].rules[1].action: reject is only possible in chains input, forward"},
    {DOC("{\"chain\": \"input\", \"action\": \"dnat\", \"to\": \"10.0.0.1\"}"),
     "policies[0].rules[1].action: dnat is only possible in chain prerouting"},
    {DOC("{\"chain\": \"input\", \"action\": \"masquerade\"}"),
     "policies[0].rules[1].action: snat and masquerade are only possible in chain "
     "postrouting"},
    {DOC("{\"chain\": \"prerouting\", \"action\": \"dnat\"}"), "policies[0].rules[1].to: missing"},
    {DOC("{\"chain\": \"prerouting\", \"action\": \"dnat\", \"to\": \"10.0.0.1:80\"}"),
     "policies[0].rules[1].to: a port needs proto tcp, udp or both"},
    {DOC("{\"chain\": \"prerouting\", \"action\": \"dnat\", \"to\": \"nowhere\"}"),
     "policies[0].rules[1].to: \"nowhere\" is not ADDR"},
    {DOC("{\"chain\": \"input\", \"action\": \"accept\", \"to\": \"10.0.0.1\"}"),
     "policies[0].rules[1].to: only dnat and snat take a target"},
    {DOC("{\"chain\": \"input\", \"action\": \"mark\"}"), "policies[0].rules[1].mark: missing"},
    {DOC("{\"chain\": \"input\", \"action\": \"mark\", \"mark\": -1}"),
     "policies[0].rules[1].mark: -1 is not a number 0-4294967295"},
    {DOC("{\"chain\": \"input\", \"action\": \"limit\"}"),
     "policies[0].rules[1].limit: missing must be an object"},
    {DOC("{\"chain\": \"input\", \"action\": \"limit\", \"limit\": {\"rate\": \"lots\"}}"),
     "policies[0].rules[1].limit.rate: \"lots\" is not a rate"},
    {DOC("{\"chain\": \"input\", \"action\": \"limit\", \"limit\": {\"rate\": \"100\"}}"),
     "policies[0].rules[1].limit.rate: \"100\" is not a rate"},
    {DOC("{\"chain\": \"input\", \"action\": \"limit\", \"limit\": {\"burst\": 5}}"),
     "policies[0].rules[1].limit.rate: missing"},
    {DOC("{\"chain\": \"input\", \"action\": \"accept\", \"counter\": \"yes\"}"),
     "policies[0].rules[1].counter: \"yes\" is not true or false"},
    {DOC("{\"chain\": \"input\", \"action\": \"accept\", \"colour\": 1}"),
     "policies[0].rules[1].colour: unknown field"},
    {DOC("{\"chain\": \"input\", \"proto\": \"icmp\", \"family\": \"ip6\", \"action\": "
	 "\"accept\"}"),
     "policies[0].rules[1].proto: icmp in a rule of family ip6"},
    /* raw blocks: nothing that could leave our chain */
    {DOC("{\"chain\": \"input\", \"raw\": \"accept }\\ntable ip filter { }\"}"),
     "policies[0].rules[1].raw: the block closes a brace it did not open"},
    {DOC("{\"chain\": \"input\", \"raw\": \"include \\\"/etc/shadow\\\"\"}"),
     "policies[0].rules[1].raw: the block uses include/define"},
    {DOC("{\"chain\": \"input\", \"raw\": \"define X = 1\"}"),
     "policies[0].rules[1].raw: the block uses include/define"},
    {DOC("{\"chain\": \"input\", \"raw\": \"tcp dport $port accept\"}"),
     "policies[0].rules[1].raw: the block uses a $variable"},
    {DOC("{\"chain\": \"input\", \"raw\": \"tcp dport { 22, 80 accept\"}"),
     "policies[0].rules[1].raw: the block has unbalanced braces"},
    {DOC("{\"chain\": \"input\", \"raw\": \"comment \\\"x\"}"),
     "policies[0].rules[1].raw: the block has an unterminated string"},
    {DOC("{\"chain\": \"input\", \"raw\": \"\"}"), "policies[0].rules[1].raw: the block is empty"},
    {DOC("{\"chain\": \"input\", \"raw\": \"accept\", \"action\": \"drop\"}"),
     "policies[0].rules[1].raw: a raw block takes only chain and comment"},
    /* sets */
    {"{\"sets\": [{\"name\": \"1x\", \"type\": \"ipv4\"}]}",
     "sets[0].name: \"1x\" must be a letter"},
    {"{\"sets\": [{\"name\": \"x\"}]}", "sets[0].type: missing"},
    {"{\"sets\": [{\"name\": \"x\", \"type\": \"ipv4\", \"elements\": [\"fd00::1\"]}]}",
     "sets[0].elements[0]: \"fd00::1\" is not an IPv4 CIDR or address"},
    {"{\"sets\": [{\"name\": \"x\", \"type\": \"ipv4\"}, {\"name\": \"x\", \"type\": "
     "\"ipv6\"}]}",
     "sets[1].name: \"x\" is already used by sets[0]"},
    {"{\"policies\": [", "line 1 column"},
};

static void test_bad_documents_name_path_and_value(void **state)
{
	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		char err[512] = "";
		struct fg_fw_doc doc = {(void *)1, 9, (void *)1, 9};
		int rc = fg_fw_doc_parse(bad_cases[i].doc, strlen(bad_cases[i].doc), &doc, err,
					 sizeof(err));
		if (rc != -EINVAL)
			fail_msg("case %zu accepted (rc %d): %s", i, rc, bad_cases[i].doc);
		assert_null(doc.policies);
		assert_null(doc.sets);
		assert_null(strchr(err, '\n'));
		if (!strstr(err, bad_cases[i].error))
			fail_msg("case %zu: error \"%s\" does not contain \"%s\"", i, err,
				 bad_cases[i].error);
	}
}

static void test_good_document_renders_canonical_values(void **state)
{
	const char *text =
	    DOC("{\"chain\": \"forward\", \"saddr\": [\"10.1.0.0/16\", \"10.2.3.4/32\"], "
		"\"daddr\": \"@admins\", \"proto\": \"both\", \"sport\": 53, \"dport\": [\"80\", "
		"\"8000-8100\"], \"iif\": \"wg*\", \"ct_state\": [\"related\", \"new\"], "
		"\"action\": \"limit\", \"limit\": {\"rate\": \"2MiB\", \"burst\": 1000}, "
		"\"counter\": true, \"comment\": \"ok, fine: (yes)\"}");
	char err[512];
	struct fg_fw_doc doc;
	assert_int_equal(fg_fw_doc_parse(text, strlen(text), &doc, err, sizeof(err)), 0);
	assert_int_equal(doc.npolicies, 1);
	assert_int_equal(doc.policies[0].nrules, 2);
	const struct fg_fw_rule *r = &doc.policies[0].rules[1];
	assert_int_equal(r->chain, FG_FW_FORWARD);
	assert_int_equal(r->family, FG_FW_IP);
	assert_string_equal(r->saddr, "{ 10.1.0.0/16, 10.2.3.4 }");
	assert_string_equal(r->daddr, "@admins");
	assert_string_equal(r->sport, "53");
	assert_string_equal(r->dport, "{ 80, 8000-8100 }");
	assert_string_equal(r->iif, "wg*");
	assert_int_equal(r->ct_state, FG_FW_CT_NEW | FG_FW_CT_RELATED);
	assert_true(r->rate_bytes);
	assert_int_equal(r->rate, 2 * 1024 * 1024);
	assert_int_equal(r->burst, 1000);
	assert_true(r->counter);
	assert_string_equal(r->comment, "ok, fine: (yes)");
	assert_string_equal(doc.sets[0].elements, "10.0.0.0/8");
	fg_fw_doc_free(&doc);
	assert_null(doc.policies);
}

static void test_v6_addresses_are_canonical(void **state)
{
	const char *text = DOC("{\"chain\": \"prerouting\", \"daddr\": \"2001:DB8:0::1\", "
			       "\"proto\": \"tcp\", \"action\": \"dnat\", \"to\": "
			       "\"[fd00:0::5]:8443\"}");
	char err[512];
	struct fg_fw_doc doc;
	assert_int_equal(fg_fw_doc_parse(text, strlen(text), &doc, err, sizeof(err)), 0);
	const struct fg_fw_rule *r = &doc.policies[0].rules[1];
	assert_int_equal(r->family, FG_FW_IP6);
	assert_string_equal(r->daddr, "2001:db8::1");
	assert_string_equal(r->to, "[fd00::5]:8443");
	fg_fw_doc_free(&doc);
}

static void test_raw_check_allows_rules_sets_and_comments(void **state)
{
	assert_null(fg_fw_raw_check("tcp dport { 22, 80 } accept"));
	assert_null(fg_fw_raw_check("# } not a brace\nudp dport 53 counter accept comment \"}{\""));
	assert_null(fg_fw_raw_check("ip saddr 10.0.0.0/8 jump other_chain"));
	assert_non_null(fg_fw_raw_check("INCLUDE \"/etc/passwd\""));
}

static void test_out_of_memory_is_reported_and_leaves_nothing(void **state)
{
	const char *text = DOC("{\"chain\": \"input\", \"saddr\": \"10.0.0.0/8\", \"action\": "
			       "\"accept\", \"comment\": \"x\"}");
	for (long n = 1; n < 40; n++) {
		char err[512] = "";
		struct fg_fw_doc doc;
		fg_alloc_fail_after(n);
		int rc = fg_fw_doc_parse(text, strlen(text), &doc, err, sizeof(err));
		fg_alloc_fail_after(0);
		if (rc == 0) {
			fg_fw_doc_free(&doc);
			continue;
		}
		assert_int_equal(rc, -EINVAL);
		assert_null(doc.policies);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_bad_documents_name_path_and_value),
	    cmocka_unit_test(test_good_document_renders_canonical_values),
	    cmocka_unit_test(test_v6_addresses_are_canonical),
	    cmocka_unit_test(test_raw_check_allows_rules_sets_and_comments),
	    cmocka_unit_test(test_out_of_memory_is_reported_and_leaves_nothing),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
