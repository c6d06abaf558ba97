/* Desired-state compile (server/desired.h): a node gets its own forwards
 * and its groups', enabled only, with server-only fields dropped, in a
 * deterministic text whatever the order of the rows. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "fwd/config.h"
#include "server/auth.h"
#include "server/desired.h"
#include "server/store.h"

struct fixture {
	char dir[64];
	struct fg_store *st;
};

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
	char path[128];
	snprintf(fx->dir, sizeof(fx->dir), "/tmp/fg_test_desired.XXXXXX");
	if (!mkdtemp(fx->dir))
		return -1;
	snprintf(path, sizeof(path), "%s/flowgate.db", fx->dir);
	if (fg_store_sqlite_open(path, &fx->st) != 0)
		return -1;
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;
	char cmd[128];
	fg_store_close(fx->st);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fx->dir);
	if (system(cmd) != 0)
		return -1;
	free(fx);
	return 0;
}

static int64_t mk_node(struct fg_store *st, const char *name)
{
	char tok[FG_AUTH_TOKEN_SIZE], hash[FG_STORE_HASH_LEN + 1];
	int64_t id;
	fg_auth_token_new(FG_TOKEN_PREFIX_NODE, tok);
	fg_auth_token_hash(tok, hash);
	assert_int_equal(st->ops->node_create(st, name, hash, &id), 0);
	return id;
}

static int64_t mk_fwd(struct fg_store *st, const char *name, int64_t node, int64_t group, int port,
		      bool enabled)
{
	char json[256];
	snprintf(json, sizeof(json),
		 "{\"name\":\"%s\",\"listen\":\"127.0.0.1:%d\",\"targets\":[\"127.0.0.1:9\"],"
		 "\"node\":\"x\",\"group\":\"y\",\"enabled\":%s}",
		 name, port, enabled ? "true" : "false");
	struct fg_forward f = {.node_id = node,
			       .group_id = group,
			       .enabled = enabled,
			       .port_lo = port,
			       .port_hi = port,
			       .proto = FG_PROTO_TCP,
			       .json = json};
	snprintf(f.name, sizeof(f.name), "%s", name);
	assert_int_equal(st->ops->forward_create(st, &f), 0);
	return f.id;
}

static void test_desired_node_gets_own_and_group_forwards_enabled_only(void **state)
{
	struct fixture *fx = *state;
	struct fg_store *st = fx->st;
	int64_t n1 = mk_node(st, "n1"), n2 = mk_node(st, "n2"), g;
	assert_int_equal(st->ops->group_create(st, "edge", &g), 0);
	assert_int_equal(st->ops->node_set_groups(st, n1, &g, 1), 0);
	int64_t own = mk_fwd(st, "own", n1, 0, 1001, true);
	int64_t grp = mk_fwd(st, "grp", 0, g, 1002, true);
	mk_fwd(st, "off", n1, 0, 1003, false);
	mk_fwd(st, "other", n2, 0, 1004, true);

	json_t *state1;
	char *text;
	assert_int_equal(fg_desired_compile(st, n1, &state1, &text), 0);
	json_t *arr = json_object_get(state1, "forwards");
	assert_int_equal(json_array_size(arr), 2);
	json_t *a = json_array_get(arr, 0), *b = json_array_get(arr, 1);
	char id[24];
	snprintf(id, sizeof(id), "%lld", (long long)own);
	assert_string_equal(json_string_value(json_object_get(a, "id")), id);
	assert_string_equal(json_string_value(json_object_get(a, "name")), "own");
	snprintf(id, sizeof(id), "%lld", (long long)grp);
	assert_string_equal(json_string_value(json_object_get(b, "id")), id);
	/* server-only fields are gone; the engine accepts the section */
	assert_null(json_object_get(a, "node"));
	assert_null(json_object_get(a, "group"));
	assert_null(json_object_get(a, "enabled"));
	struct fg_forward_set set;
	char err[FG_ERR_MAX];
	assert_int_equal(fg_config_parse_forwards(arr, &set, err, sizeof(err)), 0);
	assert_int_equal(set.n, 2);
	fg_forward_set_free(&set);
	json_decref(state1);
	free(text);

	/* a node in no group with no forwards gets an empty section */
	int64_t n3 = mk_node(st, "n3");
	assert_int_equal(fg_desired_compile(st, n3, &state1, &text), 0);
	assert_string_equal(text, "{\"forwards\":[]}");
	json_decref(state1);
	free(text);

	/* leaving the group takes the group's forward away */
	assert_int_equal(st->ops->node_set_groups(st, n1, NULL, 0), 0);
	assert_int_equal(fg_desired_compile(st, n1, &state1, &text), 0);
	assert_int_equal(json_array_size(json_object_get(state1, "forwards")), 1);
	json_decref(state1);
	free(text);
}

static void test_desired_text_is_deterministic(void **state)
{
	/* same forwards in another order, keys written in another order:
	 * byte-identical text and hash */
	struct fg_forward v[2] = {
	    {.id = 7,
	     .enabled = true,
	     .json = "{\"name\":\"b\",\"listen\":\":2\",\"targets\":[\"h:1\"]}"},
	    {.id = 3,
	     .enabled = true,
	     .json = "{\"targets\":[\"h:1\"],\"listen\":\":1\",\"name\":\"a\"}"},
	};
	strcpy(v[0].name, "b");
	strcpy(v[1].name, "a");
	struct fg_forward w[2] = {v[1], v[0]};
	w[0].json = "{\"listen\":\":1\",\"name\":\"a\",\"targets\":[\"h:1\"]}";
	json_t *s1 = fg_desired_from_forwards(v, 2), *s2 = fg_desired_from_forwards(w, 2);
	char *t1 = fg_desired_text(s1), *t2 = fg_desired_text(s2);
	assert_string_equal(t1, t2);
	assert_string_equal(t1, "{\"forwards\":[{\"id\":\"3\",\"listen\":\":1\",\"name\":\"a\","
				"\"targets\":[\"h:1\"]},{\"id\":\"7\",\"listen\":\":2\",\"name\":"
				"\"b\",\"targets\":[\"h:1\"]}]}");
	unsigned char h1[FG_DESIRED_HASH_LEN], h2[FG_DESIRED_HASH_LEN];
	fg_desired_hash(t1, h1);
	fg_desired_hash(t2, h2);
	assert_memory_equal(h1, h2, sizeof(h1));
	/* and a change shows */
	v[0].json = "{\"name\":\"b\",\"listen\":\":3\",\"targets\":[\"h:1\"]}";
	json_t *s3 = fg_desired_from_forwards(v, 2);
	char *t3 = fg_desired_text(s3);
	fg_desired_hash(t3, h2);
	assert_memory_not_equal(h1, h2, sizeof(h1));
	free(t1);
	free(t2);
	free(t3);
	json_decref(s1);
	json_decref(s2);
	json_decref(s3);

	/* a broken stored row is left out, not fatal */
	struct fg_forward bad = {.id = 1, .enabled = true, .json = "[1]"};
	strcpy(bad.name, "bad");
	json_t *s4 = fg_desired_from_forwards(&bad, 1);
	assert_int_equal(json_array_size(json_object_get(s4, "forwards")), 0);
	json_decref(s4);
}

/* The firewall section: enabled policies by priority then id, sets merged,
 * the smallest confirm_timeout; none left = no section. */
static void test_desired_firewall_section(void **state)
{
	struct fg_policy v[3] = {
	    {.id = 7,
	     .name = "late",
	     .priority = 20,
	     .enabled = true,
	     .json =
		 "{\"rules\":[{\"chain\":\"input\",\"action\":\"drop\"}],\"confirm_timeout\":30,"
		 "\"sets\":[{\"name\":\"s\",\"type\":\"ipv4\",\"elements\":[]}]}"},
	    {.id = 9,
	     .name = "early",
	     .priority = -1,
	     .enabled = true,
	     .json = "{\"rules\":[],\"description\":\"d\",\"confirm_timeout\":10,"
		     "\"sets\":[{\"name\":\"s\",\"type\":\"ipv4\",\"elements\":[]}]}"},
	    {.id = 3, .name = "off", .priority = 0, .enabled = false, .json = "{\"rules\":[]}"},
	};
	json_t *fw;
	assert_int_equal(fg_desired_firewall(v, 3, &fw), 0);
	assert_non_null(fw);
	char *t = fg_desired_text(fw);
	assert_string_equal(
	    t,
	    "{\"confirm_timeout\":10,\"policies\":[{\"description\":\"d\",\"id\":\"9\",\"name\":"
	    "\"early\",\"priority\":-1,\"rules\":[]},{\"id\":\"7\",\"name\":\"late\",\"priority\":"
	    "20,\"rules\":[{\"action\":\"drop\",\"chain\":\"input\"}]}],\"sets\":[{\"elements\":"
	    "[],\"name\":\"s\",\"type\":\"ipv4\"}]}");
	free(t);
	json_decref(fw);
	assert_int_equal(fg_desired_firewall(&v[2], 1, &fw), 0);
	assert_null(fw);
	assert_int_equal(fg_desired_firewall(NULL, 0, &fw), 0);
	assert_null(fw);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(
		test_desired_node_gets_own_and_group_forwards_enabled_only, setup, teardown),
	    cmocka_unit_test(test_desired_text_is_deterministic),
	    cmocka_unit_test(test_desired_firewall_section),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
