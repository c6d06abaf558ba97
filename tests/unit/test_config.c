/* fg_config_parse / fg_forward_cfg_equal: the strict validation promised in
 * doc/forward.md (every rejection names the JSON path and the value). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "core/clock.h"
#include "fwd/config.h"

static char err[FG_ERR_MAX];

static int parse(const char *text, struct fg_forward_set *set)
{
	err[0] = '\0';
	return fg_config_parse(text, strlen(text), set, err, sizeof(err));
}

/* Parses text, expects -EINVAL, an empty set, and every needle in the one-line error. */
static void expect_reject(const char *text, ...)
{
	struct fg_forward_set set = {(void *)1, 99};
	int rc = parse(text, &set);
	if (rc != -EINVAL) {
		if (rc == 0)
			fg_forward_set_free(&set);
		fail_msg("accepted (rc %d): %s", rc, text);
	}
	assert_null(set.v);
	assert_int_equal(set.n, 0);
	assert_null(strchr(err, '\n'));
	va_list ap;
	va_start(ap, text);
	for (const char *needle; (needle = va_arg(ap, const char *));)
		if (!strstr(err, needle))
			fail_msg("error \"%s\" does not contain \"%s\" (input %s)", err, needle,
				 text);
	va_end(ap);
}

/* A one-forward document with `fields` spliced into the object. */
static const char *one(const char *fields)
{
	static char buf[2048];
	snprintf(buf, sizeof(buf),
		 "{\"forwards\":[{\"name\":\"web\",\"listen\":\"0.0.0.0:8080\","
		 "\"targets\":[\"10.0.0.2:80\"]%s%s}]}",
		 *fields ? "," : "", fields);
	return buf;
}

static void test_config_full_document_sets_every_field(void **s)
{
	const char *doc =
	    "{\"forwards\":[{"
	    "\"name\":\"web\",\"id\":42,\"listen\":\"10.0.0.1:8080\",\"proto\":\"both\","
	    "\"targets\":[\"10.0.0.2:80\",\"[2001:db8::1]:81\",\"backend.example:82\"],"
	    "\"balance\":\"least-conn\",\"rate_up\":\"10mbit\",\"rate_down\":\"2MiB\","
	    "\"rate_up_per_conn\":1000,\"rate_down_per_conn\":\"8kbit\",\"burst\":\"64KiB\","
	    "\"max_conns\":1000,\"max_conns_per_ip\":20,\"proxy_protocol\":\"v2\","
	    "\"health_check\":{\"interval\":\"2s\",\"timeout\":\"500ms\",\"rise\":3,\"fall\":2},"
	    "\"connect_timeout\":\"3s\",\"idle_timeout\":\"10m\",\"udp_idle_timeout\":30,"
	    "\"enabled\":false},"
	    "{\"name\":\"dns\",\"id\":\"srv-7\",\"listen\":\"[::1]:5300-5301\",\"proto\":\"udp\","
	    "\"targets\":[\"10.0.0.9:53-54\"],\"proxy_protocol\":null,\"health_check\":null}]}";
	struct fg_forward_set set;
	assert_int_equal(parse(doc, &set), 0);
	assert_int_equal(set.n, 2);
	const struct fg_forward_cfg *c = &set.v[0];
	assert_string_equal(c->name, "web");
	assert_string_equal(c->id, "42");
	assert_string_equal(c->listen.host, "10.0.0.1");
	assert_true(c->listen.is_ip);
	assert_int_equal(c->listen.port_lo, 8080);
	assert_int_equal(c->listen.port_hi, 8080);
	assert_int_equal(c->proto, FG_PROTO_BOTH);
	assert_int_equal(c->ntargets, 3);
	assert_string_equal(c->targets[0].host, "10.0.0.2");
	assert_int_equal(c->targets[0].port_lo, 80);
	assert_string_equal(c->targets[1].host, "2001:db8::1");
	assert_true(c->targets[1].is_ip);
	assert_string_equal(c->targets[2].host, "backend.example");
	assert_false(c->targets[2].is_ip);
	assert_int_equal(c->targets[2].port_lo, 82);
	assert_int_equal(c->balance, FG_BAL_LEAST_CONN);
	assert_int_equal(c->rate_up, 1250000);
	assert_int_equal(c->rate_down, 2097152);
	assert_int_equal(c->rate_up_conn, 1000);
	assert_int_equal(c->rate_down_conn, 1000);
	assert_int_equal(c->burst, 65536);
	assert_int_equal(c->max_conns, 1000);
	assert_int_equal(c->max_conns_per_ip, 20);
	assert_int_equal(c->proxy_protocol, FG_PP_V2);
	assert_true(c->health.enabled);
	assert_int_equal(c->health.interval_ns, 2 * FG_NS_PER_SEC);
	assert_int_equal(c->health.timeout_ns, 500 * FG_NS_PER_MS);
	assert_int_equal(c->health.rise, 3);
	assert_int_equal(c->health.fall, 2);
	assert_int_equal(c->connect_timeout_ns, 3 * FG_NS_PER_SEC);
	assert_int_equal(c->idle_timeout_ns, 600 * FG_NS_PER_SEC);
	assert_int_equal(c->udp_idle_timeout_ns, 30 * FG_NS_PER_SEC);
	assert_false(c->enabled);

	c = &set.v[1];
	assert_string_equal(c->name, "dns");
	assert_string_equal(c->id, "srv-7");
	assert_string_equal(c->listen.host, "::1");
	assert_int_equal(c->listen.ip.ss_family, AF_INET6);
	assert_int_equal(c->listen.port_lo, 5300);
	assert_int_equal(c->listen.port_hi, 5301);
	assert_int_equal(c->proto, FG_PROTO_UDP);
	assert_int_equal(c->targets[0].port_lo, 53);
	assert_int_equal(c->targets[0].port_hi, 54);
	assert_int_equal(c->proxy_protocol, FG_PP_NONE);
	assert_false(c->health.enabled);
	assert_true(c->enabled);
	fg_forward_set_free(&set);
	assert_null(set.v);
}

static void test_config_minimal_forward_gets_documented_defaults(void **s)
{
	struct fg_forward_set set;
	assert_int_equal(parse(one(""), &set), 0);
	assert_int_equal(set.n, 1);
	const struct fg_forward_cfg *c = &set.v[0];
	assert_string_equal(c->id, "");
	assert_int_equal(c->proto, FG_PROTO_TCP);
	assert_int_equal(c->balance, FG_BAL_ROUND_ROBIN);
	assert_int_equal(c->rate_up, 0);
	assert_int_equal(c->rate_down, 0);
	assert_int_equal(c->burst, 0);
	assert_int_equal(c->max_conns, 0);
	assert_int_equal(c->proxy_protocol, FG_PP_NONE);
	assert_false(c->health.enabled);
	assert_int_equal(c->connect_timeout_ns, 5 * FG_NS_PER_SEC);
	assert_int_equal(c->idle_timeout_ns, 300 * FG_NS_PER_SEC);
	assert_int_equal(c->udp_idle_timeout_ns, 60 * FG_NS_PER_SEC);
	assert_true(c->enabled);
	fg_forward_set_free(&set);
}

static void test_config_empty_forwards_array_is_valid(void **s)
{
	struct fg_forward_set set;
	assert_int_equal(parse("{\"forwards\":[]}", &set), 0);
	assert_int_equal(set.n, 0);
	fg_forward_set_free(&set);
}

static void test_config_unknown_field_names_its_path(void **s)
{
	expect_reject("{\"forwards\":[],\"version\":3}", "version", "unknown field", NULL);
	expect_reject(one("\"colour\":\"red\""), "forwards[0].colour", "unknown field", NULL);
	expect_reject(one("\"health_check\":{\"interval\":\"1s\",\"every\":\"1s\"}"),
		      "forwards[0].health_check.every", "unknown field", NULL);
}

static void test_config_bad_listen_address_names_path_and_value(void **s)
{
	expect_reject("{\"forwards\":[{\"name\":\"a\",\"listen\":\"10.0.0.300:80\",\"targets\":["
		      "\"1.2.3.4:1\"]}]}",
		      "forwards[0].listen", "10.0.0.300:80", NULL);
	expect_reject("{\"forwards\":[{\"name\":\"a\",\"listen\":\"not an "
		      "address\",\"targets\":[\"1.2.3.4:1\"]}]}",
		      "forwards[0].listen", "not an address", NULL);
	expect_reject(
	    "{\"forwards\":[{\"name\":\"a\",\"listen\":\"::1:80\",\"targets\":[\"1.2.3.4:1\"]}]}",
	    "forwards[0].listen", "::1:80", "brackets", NULL);
}

static void test_config_error_stays_one_line_whatever_the_value_holds(void **s)
{
	expect_reject(
	    "{\"forwards\":[{\"name\":\"a\",\"listen\":\"x\\ny:80\",\"targets\":[\"1.2.3.4:1\"]}]}",
	    "forwards[0].listen", "x?y:80", NULL);
	expect_reject(one("\"proto\":\"tcp\\r\\nudp\""), "forwards[0].proto", "tcp??udp", NULL);
	expect_reject(one("\"bad\\nkey\":1"), "forwards[0].bad?key", NULL);
	assert_null(strchr(err, '\r'));
}

static void test_config_hostname_is_not_a_listen_address(void **s)
{
	expect_reject("{\"forwards\":[{\"name\":\"a\",\"listen\":\"localhost:80\",\"targets\":[\"1."
		      "2.3.4:1\"]}]}",
		      "forwards[0].listen", "localhost:80", "not an IP address", NULL);
}

static void test_config_port_out_of_range_is_rejected(void **s)
{
	expect_reject("{\"forwards\":[{\"name\":\"a\",\"listen\":\"10.0.0.1:0\",\"targets\":[\"1.2."
		      "3.4:1\"]}]}",
		      "forwards[0].listen", "10.0.0.1:0", "1-65535", NULL);
	expect_reject("{\"forwards\":[{\"name\":\"a\",\"listen\":\"10.0.0.1:70000\",\"targets\":["
		      "\"1.2.3.4:1\"]}]}",
		      "forwards[0].listen", "10.0.0.1:70000", "1-65535", NULL);
	expect_reject("{\"forwards\":[{\"name\":\"a\",\"listen\":\"10.0.0.1:80\","
		      "\"targets\":[\"1.2.3.4:1\",\"1.2.3.4:0\"]}]}",
		      "forwards[0].targets[1]", "1.2.3.4:0", NULL);
	expect_reject("{\"forwards\":[{\"name\":\"a\",\"listen\":\"10.0.0.1:80\","
		      "\"targets\":[\"1.2.3.4:70000\"]}]}",
		      "forwards[0].targets[0]", "1.2.3.4:70000", NULL);
}

static void test_config_reversed_port_range_is_rejected(void **s)
{
	expect_reject("{\"forwards\":[{\"name\":\"a\",\"listen\":\"10.0.0.1:2000-1000\","
		      "\"targets\":[\"1.2.3.4:1\"]}]}",
		      "forwards[0].listen", "2000-1000", "reversed", NULL);
}

static void test_config_target_range_must_match_listen_range_size(void **s)
{
	expect_reject("{\"forwards\":[{\"name\":\"a\",\"listen\":\"10.0.0.1:20000-20009\","
		      "\"targets\":[\"1.2.3.4:30000-30004\"]}]}",
		      "forwards[0].targets[0]", "30000-30004", "5 ports", "10", NULL);
	/* same size, or a single port, is fine */
	struct fg_forward_set set;
	assert_int_equal(parse("{\"forwards\":[{\"name\":\"a\",\"listen\":\"10.0.0.1:20000-20009\","
			       "\"targets\":[\"1.2.3.4:30000-30009\",\"1.2.3.5:443\"]}]}",
			       &set),
			 0);
	fg_forward_set_free(&set);
}

static void test_config_listen_range_over_4096_ports_is_rejected(void **s)
{
	expect_reject("{\"forwards\":[{\"name\":\"a\",\"listen\":\"10.0.0.1:1000-6000\","
		      "\"targets\":[\"1.2.3.4:80\"]}]}",
		      "forwards[0].listen", "5001", NULL);
}

static void test_config_unparseable_rate_names_path_and_value(void **s)
{
	expect_reject(one("\"rate_up\":\"12 parsecs\""), "forwards[0].rate_up", "12 parsecs",
		      "is not a rate", NULL);
	expect_reject(one("\"rate_down\":-5"), "forwards[0].rate_down", "-5", NULL);
	expect_reject(one("\"rate_up_per_conn\":1.5"), "forwards[0].rate_up_per_conn", "1.5", NULL);
	expect_reject(one("\"burst\":\"lots\""), "forwards[0].burst", "lots", NULL);
	expect_reject(one("\"idle_timeout\":\"5 fortnights\""), "forwards[0].idle_timeout",
		      "5 fortnights", NULL);
	expect_reject(one("\"connect_timeout\":0"), "forwards[0].connect_timeout", "0", NULL);
}

static void test_config_error_in_second_forward_names_index_1(void **s)
{
	expect_reject("{\"forwards\":[{\"name\":\"a\",\"listen\":\"10.0.0.1:80\","
		      "\"targets\":[\"1.2.3.4:1\"]},{\"name\":\"b\",\"listen\":\"10.0.0.1:81\","
		      "\"targets\":[\"1.2.3.4:1\"],\"rate_up\":\"12 parsecs\"}]}",
		      "forwards[1].rate_up", "12 parsecs", NULL);
}

static void test_config_duplicate_names_are_rejected(void **s)
{
	expect_reject("{\"forwards\":[{\"name\":\"a\",\"listen\":\"10.0.0.1:80\","
		      "\"targets\":[\"1.2.3.4:1\"]},{\"name\":\"a\",\"listen\":\"10.0.0.1:81\","
		      "\"targets\":[\"1.2.3.4:1\"]}]}",
		      "forwards[1].name", "\"a\"", "forwards[0]", NULL);
}

static const char *two_listens(const char *l0, const char *p0, const char *l1, const char *p1)
{
	static char buf[1024];
	snprintf(buf, sizeof(buf),
		 "{\"forwards\":[{\"name\":\"a\",\"listen\":\"%s\",\"proto\":\"%s\","
		 "\"targets\":[\"1.2.3.4:1\"]},{\"name\":\"b\",\"listen\":\"%s\",\"proto\":\"%s\","
		 "\"targets\":[\"1.2.3.4:1\"]}]}",
		 l0, p0, l1, p1);
	return buf;
}

static void accepts(const char *doc)
{
	struct fg_forward_set set;
	if (parse(doc, &set) != 0)
		fail_msg("rejected: %s (%s)", doc, err);
	assert_int_equal(set.n, 2);
	fg_forward_set_free(&set);
}

static void test_config_same_port_on_wildcard_and_specific_ip_conflicts(void **s)
{
	expect_reject(two_listens("0.0.0.0:80", "tcp", "10.0.0.1:80", "tcp"), "forwards[1].listen",
		      "10.0.0.1", "forwards[0]", NULL);
	expect_reject(two_listens("10.0.0.1:80", "tcp", "0.0.0.0:80", "tcp"), "forwards[1].listen",
		      NULL);
	expect_reject(two_listens("10.0.0.1:80", "tcp", "10.0.0.1:80", "both"),
		      "forwards[1].listen", NULL);
	expect_reject(two_listens("10.0.0.1:70-90", "udp", "10.0.0.1:90-95", "udp"),
		      "forwards[1].listen", NULL);
	expect_reject(two_listens("[::]:80", "tcp", "[::1]:80", "tcp"), "forwards[1].listen", NULL);
	/* "::" has several spellings; all are the v6 wildcard */
	expect_reject(two_listens("[0:0::0]:80", "tcp", "[::1]:80", "tcp"), "forwards[1].listen",
		      NULL);
	expect_reject(two_listens("[::1]:80", "tcp", "[0:0:0:0:0:0:0:0]:80", "tcp"),
		      "forwards[1].listen", NULL);
}

static void test_config_different_ports_or_ips_or_protocols_do_not_conflict(void **s)
{
	accepts(two_listens("0.0.0.0:80", "tcp", "0.0.0.0:81", "tcp"));
	accepts(two_listens("10.0.0.1:80", "tcp", "10.0.0.2:80", "tcp"));
	accepts(two_listens("0.0.0.0:80", "tcp", "0.0.0.0:80", "udp"));
	accepts(two_listens("10.0.0.1:70-89", "both", "10.0.0.1:90-95", "both"));
}

static void test_config_disabled_forward_may_share_a_port(void **s)
{
	struct fg_forward_set set;
	assert_int_equal(
	    parse("{\"forwards\":[{\"name\":\"a\",\"listen\":\"10.0.0.1:80\","
		  "\"targets\":[\"1.2.3.4:1\"]},{\"name\":\"b\",\"listen\":\"10.0.0.1:80\","
		  "\"targets\":[\"1.2.3.4:1\"],\"enabled\":false}]}",
		  &set),
	    0);
	fg_forward_set_free(&set);
}

static void test_config_wrong_types_name_path_and_value(void **s)
{
	expect_reject(one("\"max_conns\":\"ten\""), "forwards[0].max_conns", "ten", NULL);
	expect_reject(one("\"max_conns\":-1"), "forwards[0].max_conns", "-1", NULL);
	expect_reject(one("\"proto\":5"), "forwards[0].proto", "5", NULL);
	expect_reject(one("\"proto\":\"sctp\""), "forwards[0].proto", "sctp", NULL);
	expect_reject(one("\"balance\":\"random\""), "forwards[0].balance", "random", NULL);
	expect_reject(one("\"proxy_protocol\":\"v3\""), "forwards[0].proxy_protocol", "v3", NULL);
	expect_reject(one("\"enabled\":\"yes\""), "forwards[0].enabled", "yes", NULL);
	expect_reject(one("\"id\":[1]"), "forwards[0].id", "[1]", NULL);
	expect_reject(one("\"health_check\":5"), "forwards[0].health_check", "5", NULL);
	expect_reject("{\"forwards\":[{\"name\":\"a\",\"listen\":80,\"targets\":[\"1.2.3.4:1\"]}]}",
		      "forwards[0].listen", "80", NULL);
	expect_reject("{\"forwards\":[{\"name\":\"a\",\"listen\":\"10.0.0.1:80\","
		      "\"targets\":[9000]}]}",
		      "forwards[0].targets[0]", "9000", NULL);
	expect_reject("{\"forwards\":[{\"name\":\"a\",\"listen\":\"10.0.0.1:80\","
		      "\"targets\":\"1.2.3.4:1\"}]}",
		      "forwards[0].targets", "1.2.3.4:1", NULL);
	expect_reject("{\"forwards\":[\"web\"]}", "forwards[0]", "web", NULL);
	expect_reject("{\"forwards\":{}}", "forwards", "{}", NULL);
	expect_reject("[]", "object", NULL);
}

static void test_config_bad_names_are_rejected(void **s)
{
	expect_reject("{\"forwards\":[{\"name\":\"we "
		      "b\",\"listen\":\"10.0.0.1:80\",\"targets\":[\"1.2.3.4:1\"]}]}",
		      "forwards[0].name", "we b", NULL);
	expect_reject("{\"forwards\":[{\"name\":\"\",\"listen\":\"10.0.0.1:80\",\"targets\":[\"1.2."
		      "3.4:1\"]}]}",
		      "forwards[0].name", NULL);
	char doc[512], name[70];
	memset(name, 'n', 65);
	name[65] = '\0';
	snprintf(doc, sizeof(doc),
		 "{\"forwards\":[{\"name\":\"%s\",\"listen\":\"10.0.0.1:80\","
		 "\"targets\":[\"1.2.3.4:1\"]}]}",
		 name);
	expect_reject(doc, "forwards[0].name", name, NULL);
}

static void test_config_missing_required_fields_are_named(void **s)
{
	expect_reject("{\"forwards\":[{\"listen\":\"10.0.0.1:80\",\"targets\":[\"1.2.3.4:1\"]}]}",
		      "forwards[0].name", "missing", NULL);
	expect_reject("{\"forwards\":[{\"name\":\"a\",\"targets\":[\"1.2.3.4:1\"]}]}",
		      "forwards[0].listen", "missing", NULL);
	expect_reject("{\"forwards\":[{\"name\":\"a\",\"listen\":\"10.0.0.1:80\"}]}",
		      "forwards[0].targets", "missing", NULL);
	expect_reject("{}", "forwards", "missing", NULL);
}

static void test_config_empty_or_too_many_targets_are_rejected(void **s)
{
	expect_reject("{\"forwards\":[{\"name\":\"a\",\"listen\":\"10.0.0.1:80\",\"targets\":[]}]}",
		      "forwards[0].targets", "[]", NULL);
	char doc[4096];
	size_t n = (size_t)snprintf(doc, sizeof(doc),
				    "{\"forwards\":[{\"name\":\"a\",\"listen\":\"10.0.0.1:80\","
				    "\"targets\":[");
	for (int i = 0; i < 65; i++)
		n += (size_t)snprintf(doc + n, sizeof(doc) - n, "%s\"1.2.3.4:%d\"", i ? "," : "",
				      1000 + i);
	snprintf(doc + n, sizeof(doc) - n, "]}]}");
	expect_reject(doc, "forwards[0].targets", "65", NULL);
}

static void test_config_target_without_host_is_rejected(void **s)
{
	expect_reject(
	    "{\"forwards\":[{\"name\":\"a\",\"listen\":\"10.0.0.1:80\",\"targets\":[\"9000\"]}]}",
	    "forwards[0].targets[0]", "9000", NULL);
	expect_reject("{\"forwards\":[{\"name\":\"a\",\"listen\":\"10.0.0.1:80\",\"targets\":[\"10."
		      "0.0.2\"]}]}",
		      "forwards[0].targets[0]", "10.0.0.2", NULL);
}

static void test_config_health_check_bounds_name_the_field(void **s)
{
	expect_reject(
	    one("\"health_check\":{\"interval\":\"1s\",\"timeout\":\"1s\",\"rise\":0,\"fall\":1}"),
	    "forwards[0].health_check.rise", "0", NULL);
	expect_reject(one("\"health_check\":{\"fall\":0}"), "forwards[0].health_check.fall", "0",
		      NULL);
	expect_reject(one("\"health_check\":{\"interval\":\"1s\",\"timeout\":\"2s\"}"),
		      "forwards[0].health_check.timeout", NULL);
	expect_reject(one("\"health_check\":{\"interval\":\"often\"}"),
		      "forwards[0].health_check.interval", "often", NULL);
}

static void test_config_malformed_json_reports_line_and_column(void **s)
{
	expect_reject("{\"forwards\": [\n  {\"name\": \"a\",,}\n]}", "line 2", "column", NULL);
	expect_reject("{not json", "line 1", "column", NULL);
	expect_reject("", "line", NULL);
}

static void test_config_duplicate_json_keys_are_rejected(void **s)
{
	expect_reject("{\"forwards\":[{\"name\":\"a\",\"name\":\"b\",\"listen\":\"10.0.0.1:80\","
		      "\"targets\":[\"1.2.3.4:1\"]}]}",
		      "duplicate", "name", NULL);
	expect_reject("{\"forwards\":[],\"forwards\":[]}", "duplicate", NULL);
}

/* ---- fg_forward_cfg_equal ---------------------------------------------- */

static const char *full_fw(const char *override_key, const char *override_val)
{
	/* every field, one of them optionally replaced */
	static const char *const keys[] = {
	    "name",
	    "id",
	    "listen",
	    "proto",
	    "targets",
	    "balance",
	    "rate_up",
	    "rate_down",
	    "rate_up_per_conn",
	    "rate_down_per_conn",
	    "burst",
	    "max_conns",
	    "max_conns_per_ip",
	    "proxy_protocol",
	    "health_check",
	    "connect_timeout",
	    "idle_timeout",
	    "udp_idle_timeout",
	    "enabled",
	};
	static const char *const vals[] = {
	    "\"web\"",
	    "7",
	    "\"10.0.0.1:8080\"",
	    "\"tcp\"",
	    "[\"10.0.0.2:80\",\"10.0.0.3:80\"]",
	    "\"least-conn\"",
	    "\"8mbit\"",
	    "2000000",
	    "3000",
	    "4000",
	    "65536",
	    "100",
	    "10",
	    "\"v1\"",
	    "{\"interval\":\"2s\",\"timeout\":\"1s\",\"rise\":2,\"fall\":3}",
	    "\"5s\"",
	    "\"300s\"",
	    "\"60s\"",
	    "true",
	};
	static char buf[2048];
	size_t n = (size_t)snprintf(buf, sizeof(buf), "{\"forwards\":[{");
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		const char *v =
		    override_key && strcmp(keys[i], override_key) == 0 ? override_val : vals[i];
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s\"%s\":%s", i ? "," : "",
				      keys[i], v);
	}
	snprintf(buf + n, sizeof(buf) - n, "}]}");
	return buf;
}

static void parse_one(const char *doc, struct fg_forward_set *set)
{
	if (parse(doc, set) != 0)
		fail_msg("rejected: %s (%s)", doc, err);
	assert_int_equal(set->n, 1);
}

static void test_cfg_equal_when_same_values_are_written_differently(void **s)
{
	struct fg_forward_set a, b;
	parse_one(full_fw(NULL, NULL), &a);
	parse_one(full_fw("rate_up", "1000000"), &b);
	assert_true(fg_forward_cfg_equal(&a.v[0], &b.v[0]));
	fg_forward_set_free(&b);
	parse_one(full_fw("idle_timeout", "\"5m\""), &b);
	assert_true(fg_forward_cfg_equal(&a.v[0], &b.v[0]));
	fg_forward_set_free(&b);
	parse_one(full_fw("burst", "\"64KiB\""), &b);
	assert_true(fg_forward_cfg_equal(&a.v[0], &b.v[0]));
	fg_forward_set_free(&b);
	parse_one(full_fw("connect_timeout", "5"), &b);
	assert_true(fg_forward_cfg_equal(&a.v[0], &b.v[0]));
	fg_forward_set_free(&b);
	parse_one(full_fw("id", "\"7\""), &b);
	assert_true(fg_forward_cfg_equal(&a.v[0], &b.v[0]));
	fg_forward_set_free(&b);

	/* a deep copy is equal and owns its own targets */
	struct fg_forward_cfg c;
	assert_int_equal(fg_forward_cfg_copy(&c, &a.v[0]), 0);
	assert_ptr_not_equal(c.targets, a.v[0].targets);
	assert_true(fg_forward_cfg_equal(&a.v[0], &c));
	fg_forward_cfg_deinit(&c);
	fg_forward_set_free(&a);
}

static void test_cfg_not_equal_when_any_field_differs(void **s)
{
	static const struct {
		const char *key, *val;
	} diffs[] = {
	    {"name", "\"web2\""},
	    {"id", "8"},
	    {"listen", "\"10.0.0.1:8081\""},
	    {"listen", "\"10.0.0.9:8080\""},
	    {"proto", "\"both\""},
	    {"targets", "[\"10.0.0.2:80\"]"},
	    {"targets", "[\"10.0.0.2:80\",\"10.0.0.4:80\"]"},
	    {"targets", "[\"10.0.0.2:80\",\"10.0.0.3:81\"]"},
	    {"targets", "[\"10.0.0.3:80\",\"10.0.0.2:80\"]"},
	    {"balance", "\"ip-hash\""},
	    {"rate_up", "\"9mbit\""},
	    {"rate_down", "2000001"},
	    {"rate_up_per_conn", "3001"},
	    {"rate_down_per_conn", "0"},
	    {"burst", "65537"},
	    {"max_conns", "101"},
	    {"max_conns_per_ip", "11"},
	    {"proxy_protocol", "\"v2\""},
	    {"health_check", "null"},
	    {"health_check", "{\"interval\":\"3s\",\"timeout\":\"1s\",\"rise\":2,\"fall\":3}"},
	    {"health_check", "{\"interval\":\"2s\",\"timeout\":\"1500ms\",\"rise\":2,\"fall\":3}"},
	    {"health_check", "{\"interval\":\"2s\",\"timeout\":\"1s\",\"rise\":1,\"fall\":3}"},
	    {"health_check", "{\"interval\":\"2s\",\"timeout\":\"1s\",\"rise\":2,\"fall\":1}"},
	    {"connect_timeout", "\"6s\""},
	    {"idle_timeout", "\"301s\""},
	    {"udp_idle_timeout", "\"61s\""},
	    {"enabled", "false"},
	};
	struct fg_forward_set a, b;
	parse_one(full_fw(NULL, NULL), &a);
	for (size_t i = 0; i < sizeof(diffs) / sizeof(diffs[0]); i++) {
		parse_one(full_fw(diffs[i].key, diffs[i].val), &b);
		if (fg_forward_cfg_equal(&a.v[0], &b.v[0]) ||
		    fg_forward_cfg_equal(&b.v[0], &a.v[0]))
			fail_msg("equal although %s differs (%s)", diffs[i].key, diffs[i].val);
		fg_forward_set_free(&b);
	}
	fg_forward_set_free(&a);
}

/* engine kernel: what nftables DNAT cannot do is refused, naming the field. */
static void test_config_kernel_engine_refuses_what_nft_cannot_do(void **s)
{
	struct fg_forward_set set;
	assert_int_equal(parse(one("\"engine\":\"kernel\",\"rate_up\":\"8mbit\","
				   "\"proto\":\"both\""),
			       &set),
			 0);
	assert_int_equal(set.v[0].engine, FG_ENGINE_KERNEL);
	fg_forward_set_free(&set);
	assert_int_equal(parse(one(""), &set), 0);
	assert_int_equal(set.v[0].engine, FG_ENGINE_PROXY);
	fg_forward_set_free(&set);
	expect_reject(one("\"engine\":\"ebpf\""), "forwards[0].engine", "\"ebpf\"", NULL);
	expect_reject(one("\"engine\":\"kernel\",\"proxy_protocol\":\"v2\""),
		      "forwards[0].proxy_protocol", "engine kernel", NULL);
	expect_reject(one("\"engine\":\"kernel\",\"max_conns\":5"), "forwards[0].max_conns", NULL);
	expect_reject(one("\"engine\":\"kernel\",\"max_conns_per_ip\":5"),
		      "forwards[0].max_conns_per_ip", NULL);
	expect_reject(one("\"engine\":\"kernel\",\"rate_down_per_conn\":\"1mbit\""),
		      "forwards[0].rate_down_per_conn", NULL);
	expect_reject(one("\"engine\":\"kernel\",\"health_check\":{\"interval\":\"2s\"}"),
		      "forwards[0].health_check", NULL);
	expect_reject(one("\"engine\":\"kernel\",\"balance\":\"ip-hash\""), "forwards[0].balance",
		      "\"ip-hash\"", NULL);
	expect_reject(one("\"engine\":\"kernel\",\"idle_timeout\":\"10m\""),
		      "forwards[0].idle_timeout", NULL);
	expect_reject(one("\"engine\":\"kernel\",\"connect_timeout\":\"1s\""),
		      "forwards[0].connect_timeout", NULL);
	expect_reject(one("\"engine\":\"kernel\",\"udp_idle_timeout\":\"1s\""),
		      "forwards[0].udp_idle_timeout", NULL);
	expect_reject("{\"forwards\":[{\"name\":\"w\",\"engine\":\"kernel\","
		      "\"listen\":\"0.0.0.0:80\",\"targets\":[\"backend.example:80\"]}]}",
		      "forwards[0].targets[0]", "host name", NULL);
	expect_reject("{\"forwards\":[{\"name\":\"w\",\"engine\":\"kernel\","
		      "\"listen\":\"0.0.0.0:80\",\"targets\":[\"[fd00::1]:80\"]}]}",
		      "forwards[0].targets[0]", "same IP family", NULL);
	/* a kernel forward and a proxy forward still cannot share a port */
	expect_reject("{\"forwards\":[{\"name\":\"a\",\"engine\":\"kernel\","
		      "\"listen\":\"0.0.0.0:80\",\"targets\":[\"10.0.0.1:80\"]},"
		      "{\"name\":\"b\",\"listen\":\"10.0.0.5:80\",\"targets\":[\"10.0.0.1:80\"]}]}",
		      "forwards[1].listen", NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_config_full_document_sets_every_field),
	    cmocka_unit_test(test_config_minimal_forward_gets_documented_defaults),
	    cmocka_unit_test(test_config_empty_forwards_array_is_valid),
	    cmocka_unit_test(test_config_unknown_field_names_its_path),
	    cmocka_unit_test(test_config_bad_listen_address_names_path_and_value),
	    cmocka_unit_test(test_config_error_stays_one_line_whatever_the_value_holds),
	    cmocka_unit_test(test_config_hostname_is_not_a_listen_address),
	    cmocka_unit_test(test_config_port_out_of_range_is_rejected),
	    cmocka_unit_test(test_config_reversed_port_range_is_rejected),
	    cmocka_unit_test(test_config_target_range_must_match_listen_range_size),
	    cmocka_unit_test(test_config_listen_range_over_4096_ports_is_rejected),
	    cmocka_unit_test(test_config_unparseable_rate_names_path_and_value),
	    cmocka_unit_test(test_config_error_in_second_forward_names_index_1),
	    cmocka_unit_test(test_config_duplicate_names_are_rejected),
	    cmocka_unit_test(test_config_same_port_on_wildcard_and_specific_ip_conflicts),
	    cmocka_unit_test(test_config_different_ports_or_ips_or_protocols_do_not_conflict),
	    cmocka_unit_test(test_config_disabled_forward_may_share_a_port),
	    cmocka_unit_test(test_config_wrong_types_name_path_and_value),
	    cmocka_unit_test(test_config_bad_names_are_rejected),
	    cmocka_unit_test(test_config_missing_required_fields_are_named),
	    cmocka_unit_test(test_config_empty_or_too_many_targets_are_rejected),
	    cmocka_unit_test(test_config_target_without_host_is_rejected),
	    cmocka_unit_test(test_config_health_check_bounds_name_the_field),
	    cmocka_unit_test(test_config_malformed_json_reports_line_and_column),
	    cmocka_unit_test(test_config_duplicate_json_keys_are_rejected),
	    cmocka_unit_test(test_cfg_equal_when_same_values_are_written_differently),
	    cmocka_unit_test(test_cfg_not_equal_when_any_field_differs),
	    cmocka_unit_test(test_config_kernel_engine_refuses_what_nft_cannot_do),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
