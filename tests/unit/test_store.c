/* The SQLite store against the contract in server/store.h and doc/store.md:
 * migrations, unique names, hashed node tokens, forwards per node, and the
 * counter delta rule with its minute buckets and hour rollups. Each test
 * runs on a fresh file in its own temporary directory. */
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
#include "core/log.h"
#include "server/auth.h"
#include "server/store.h"

struct fixture {
	char dir[64];
	char path[128];
	struct fg_store *st;
};

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
	snprintf(fx->dir, sizeof(fx->dir), "/tmp/fg_test_store.XXXXXX");
	if (!mkdtemp(fx->dir))
		return -1;
	snprintf(fx->path, sizeof(fx->path), "%s/flowgate.db", fx->dir);
	if (fg_store_sqlite_open(fx->path, &fx->st) != 0)
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

static struct fg_store *store(void **state)
{
	return ((struct fixture *)*state)->st;
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

static int64_t mk_group(struct fg_store *st, const char *name)
{
	int64_t id;
	assert_int_equal(st->ops->group_create(st, name, &id), 0);
	return id;
}

static int64_t mk_forward(struct fg_store *st, const char *name, int64_t node, int64_t group,
			  int lo, int hi, enum fg_proto proto)
{
	char json[128];
	snprintf(json, sizeof(json), "{\"name\":\"%s\",\"listen\":\"0.0.0.0:%d-%d\"}", name, lo,
		 hi);
	struct fg_forward f = {.node_id = node,
			       .group_id = group,
			       .enabled = true,
			       .port_lo = lo,
			       .port_hi = hi,
			       .proto = proto,
			       .json = json};
	snprintf(f.name, sizeof(f.name), "%s", name);
	assert_int_equal(st->ops->forward_create(st, &f), 0);
	assert_true(f.id > 0);
	return f.id;
}

/* Reads a whole file (or "" if absent) into a malloc'd buffer. */
static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = malloc(1 << 22);
	*len = f ? fread(buf, 1, 1 << 22, f) : 0;
	if (f)
		fclose(f);
	return buf;
}

/* Whether needle occurs in the database file or its WAL. */
static bool db_contains(const struct fixture *fx, const char *needle)
{
	static const char *const suffixes[] = {"", "-wal", "-shm"};
	bool found = false;
	for (size_t i = 0; i < 3; i++) {
		char p[160];
		size_t len;
		snprintf(p, sizeof(p), "%s%s", fx->path, suffixes[i]);
		char *buf = slurp(p, &len);
		found |= memmem(buf, len, needle, strlen(needle)) != NULL;
		free(buf);
	}
	return found;
}

static void test_store_migrations_are_idempotent(void **state)
{
	struct fixture *fx = *state;
	struct fg_user u;
	int64_t id;
	int v;

	assert_int_equal(fx->st->ops->schema_version(fx->st, &v), 0);
	assert_int_equal(v, 4);
	assert_int_equal(fx->st->ops->user_create(fx->st, "alice", FG_ROLE_OPERATOR, "h", &id), 0);
	fg_store_close(fx->st);

	/* Reopening applies nothing and keeps the data. */
	assert_int_equal(fg_store_sqlite_open(fx->path, &fx->st), 0);
	assert_int_equal(fx->st->ops->schema_version(fx->st, &v), 0);
	assert_int_equal(v, 4);
	assert_int_equal(fx->st->ops->user_get_by_name(fx->st, "alice", &u), 0);
	assert_int_equal(u.id, id);
	assert_int_equal(u.role, FG_ROLE_OPERATOR);
}

static void test_store_unique_names_conflict_with_eexist(void **state)
{
	struct fg_store *st = store(state);
	int64_t id, n1 = mk_node(st, "n1"), n2 = mk_node(st, "n2"), g = mk_group(st, "g");

	assert_int_equal(st->ops->user_create(st, "bob", FG_ROLE_VIEWER, "h", &id), 0);
	assert_int_equal(st->ops->user_create(st, "bob", FG_ROLE_ADMIN, "h", &id), -EEXIST);
	assert_int_equal(st->ops->node_create(st, "n1", "otherhash", &id), -EEXIST);
	assert_int_equal(st->ops->node_rename(st, n2, "n1"), -EEXIST);
	assert_int_equal(st->ops->group_create(st, "g", &id), -EEXIST);
	mk_forward(st, "web", n1, 0, 80, 80, FG_PROTO_TCP);
	struct fg_forward f = {.node_id = n2,
			       .enabled = true,
			       .port_lo = 81,
			       .port_hi = 81,
			       .proto = FG_PROTO_TCP,
			       .json = "{}"};
	strcpy(f.name, "web");
	assert_int_equal(st->ops->forward_create(st, &f), -EEXIST);

	/* Schema checks and missing references. */
	assert_int_equal(st->ops->group_create(st, "", &id), -EINVAL);
	strcpy(f.name, "web2");
	f.group_id = g; /* both node and group */
	assert_int_equal(st->ops->forward_create(st, &f), -EINVAL);
	f.group_id = 0;
	f.node_id = 999;
	assert_int_equal(st->ops->forward_create(st, &f), -ENOENT);
	f.node_id = n2;
	f.port_lo = 90; /* lo > hi */
	assert_int_equal(st->ops->forward_create(st, &f), -EINVAL);

	struct fg_group grp;
	assert_int_equal(st->ops->group_get(st, 999, &grp), -ENOENT);
	assert_int_equal(st->ops->node_delete(st, 999), -ENOENT);
	assert_int_equal(st->ops->user_set_role(st, 999, FG_ROLE_ADMIN), -ENOENT);
}

static void test_store_node_token_is_stored_only_hashed(void **state)
{
	struct fixture *fx = *state;
	struct fg_store *st = fx->st;
	char tok[FG_AUTH_TOKEN_SIZE], hash[FG_STORE_HASH_LEN + 1];
	struct fg_node n;
	int64_t id;

	fg_auth_token_new(FG_TOKEN_PREFIX_NODE, tok);
	fg_auth_token_hash(tok, hash);
	assert_int_equal(st->ops->node_create(st, "edge-1", hash, &id), 0);
	assert_true(db_contains(fx, hash)); /* the search does see stored text */
	assert_false(db_contains(fx, tok));
	assert_false(db_contains(fx, tok + 4));

	assert_int_equal(st->ops->node_get_by_token(st, hash, &n), 0);
	assert_int_equal(n.id, id);
	assert_string_equal(n.name, "edge-1");
	fg_node_deinit(&n);
}

static void test_store_policies_for_node_by_priority_through_groups(void **state)
{
	struct fg_store *st = store(state);
	int64_t a = mk_node(st, "a"), b = mk_node(st, "b"), g = mk_group(st, "g");
	int64_t none = 0;
	assert_int_equal(st->ops->node_set_groups(st, a, &g, 1), 0);
	/* "late" targets node a directly; "early" the group; "other" node b */
	struct fg_policy late = {.name = "late",
				 .priority = 20,
				 .enabled = true,
				 .json = "{\"rules\":[]}",
				 .node_ids = &a,
				 .nnodes = 1};
	struct fg_policy early = {.name = "early",
				  .priority = -5,
				  .enabled = false,
				  .json = "{\"rules\":[1]}",
				  .group_ids = &g,
				  .ngroups = 1};
	struct fg_policy other = {.name = "other",
				  .priority = 0,
				  .enabled = true,
				  .json = "{}",
				  .node_ids = &b,
				  .nnodes = 1};
	assert_int_equal(st->ops->policy_create(st, &late), 0);
	assert_int_equal(st->ops->policy_create(st, &early), 0);
	assert_int_equal(st->ops->policy_create(st, &other), 0);
	assert_int_equal(st->ops->policy_create(st, &other), -EEXIST);
	int64_t ghost = 999;
	struct fg_policy bad = {.name = "bad", .json = "{}", .node_ids = &ghost, .nnodes = 1};
	assert_int_equal(st->ops->policy_create(st, &bad), -ENOENT);

	struct fg_policy *v;
	size_t n;
	assert_int_equal(st->ops->policies_for_node(st, a, &v, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(v[0].name, "early"); /* lower priority runs first */
	assert_false(v[0].enabled);		 /* listed enabled or not */
	assert_int_equal(v[0].ngroups, 1);
	assert_int_equal(v[0].group_ids[0], g);
	assert_int_equal(v[0].nnodes, 0);
	assert_string_equal(v[0].json, "{\"rules\":[1]}");
	assert_string_equal(v[1].name, "late");
	assert_int_equal(v[1].node_ids[0], a);
	fg_policy_list_free(v, n);

	/* update replaces the targets; a deleted group leaves the policy */
	struct fg_policy p;
	assert_int_equal(st->ops->policy_get_by_name(st, "early", &p), 0);
	int64_t both[2] = {a, b};
	struct fg_policy upd = {.id = p.id,
				.name = "early2",
				.priority = 1,
				.enabled = true,
				.json = "{}",
				.node_ids = both,
				.nnodes = 2,
				.group_ids = &g,
				.ngroups = 1};
	fg_policy_deinit(&p);
	assert_int_equal(st->ops->policy_update(st, &upd), 0);
	assert_int_equal(st->ops->policies_for_node(st, b, &v, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(v[0].name, "other");
	assert_string_equal(v[1].name, "early2");
	assert_int_equal(v[1].nnodes, 2);
	fg_policy_list_free(v, n);
	assert_int_equal(st->ops->group_delete(st, g), 0);
	assert_int_equal(st->ops->policy_get(st, upd.id, &p), 0);
	assert_int_equal(p.ngroups, 0);
	assert_int_equal(p.nnodes, 2);
	fg_policy_deinit(&p);
	assert_int_equal(st->ops->node_delete(st, b), 0);
	assert_int_equal(st->ops->policy_list(st, &v, &n), 0);
	assert_int_equal(n, 3);
	assert_string_equal(v[0].name, "other"); /* priority 0, no target left */
	assert_int_equal(v[0].nnodes, 0);
	fg_policy_list_free(v, n);
	assert_int_equal(st->ops->policy_delete(st, upd.id), 0);
	assert_int_equal(st->ops->policy_delete(st, upd.id), -ENOENT);
	assert_int_equal(st->ops->policy_get(st, upd.id, &p), -ENOENT);
	(void)none;
}

static void test_store_forwards_for_node_include_group_forwards(void **state)
{
	struct fg_store *st = store(state);
	int64_t a = mk_node(st, "a"), b = mk_node(st, "b"), g = mk_group(st, "g");
	int64_t fa = mk_forward(st, "fa", a, 0, 1000, 1000, FG_PROTO_TCP);
	int64_t fb = mk_forward(st, "fb", b, 0, 1000, 1000, FG_PROTO_TCP);
	int64_t fg = mk_forward(st, "fg", 0, g, 2000, 2010, FG_PROTO_BOTH);
	struct fg_forward *v;
	size_t n;

	assert_int_equal(st->ops->node_set_groups(st, a, &g, 1), 0);
	assert_int_equal(st->ops->forwards_for_node(st, a, &v, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(v[0].id, fa);
	assert_int_equal(v[1].id, fg);
	assert_int_equal(v[1].group_id, g);
	assert_int_equal(v[1].node_id, 0);
	assert_int_equal(v[1].port_hi, 2010);
	assert_int_equal(v[1].proto, FG_PROTO_BOTH);
	assert_non_null(strstr(v[1].json, "2000-2010"));
	fg_forward_list_free(v, n);

	assert_int_equal(st->ops->forwards_for_node(st, b, &v, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(v[0].id, fb);
	fg_forward_list_free(v, n);

	/* Membership changes move group forwards; deleting the group drops them. */
	int64_t *ids;
	assert_int_equal(st->ops->node_set_groups(st, b, &g, 1), 0);
	assert_int_equal(st->ops->group_members(st, g, &ids, &n), 0);
	assert_int_equal(n, 2);
	fg_free(ids);
	assert_int_equal(st->ops->forwards_for_node(st, b, &v, &n), 0);
	assert_int_equal(n, 2);
	fg_forward_list_free(v, n);
	assert_int_equal(st->ops->group_delete(st, g), 0);
	assert_int_equal(st->ops->forwards_for_node(st, b, &v, &n), 0);
	assert_int_equal(n, 1);
	fg_forward_list_free(v, n);
	assert_int_equal(st->ops->node_groups(st, b, &ids, &n), 0);
	assert_int_equal(n, 0);
	fg_free(ids);
}

static void test_store_forward_conflict_sees_group_ports(void **state)
{
	struct fg_store *st = store(state);
	int64_t a = mk_node(st, "a"), b = mk_node(st, "b"), g = mk_group(st, "g"), other = 0;
	int64_t fg = mk_forward(st, "fg", 0, g, 8000, 8010, FG_PROTO_TCP);
	assert_int_equal(st->ops->node_set_groups(st, a, &g, 1), 0);

	struct fg_forward f = {
	    .node_id = a, .port_lo = 8005, .port_hi = 8005, .proto = FG_PROTO_BOTH};
	assert_int_equal(st->ops->forward_conflict(st, &f, &other), -EEXIST);
	assert_int_equal(other, fg);
	f.proto = FG_PROTO_UDP;
	assert_int_equal(st->ops->forward_conflict(st, &f, &other), 0);
	f.proto = FG_PROTO_TCP;
	f.node_id = b; /* not a member */
	assert_int_equal(st->ops->forward_conflict(st, &f, &other), 0);
	f.id = fg; /* the forward itself, moved */
	f.node_id = 0;
	f.group_id = g;
	assert_int_equal(st->ops->forward_conflict(st, &f, &other), 0);
}

static void test_store_forward_update_and_delete(void **state)
{
	struct fg_store *st = store(state);
	int64_t a = mk_node(st, "a"), id = mk_forward(st, "f", a, 0, 10, 20, FG_PROTO_TCP);
	struct fg_forward f;

	assert_int_equal(st->ops->forward_get(st, id, &f), 0);
	fg_free(f.json);
	f.json = "{\"enabled\":false}";
	f.enabled = false;
	strcpy(f.name, "renamed");
	assert_int_equal(st->ops->forward_update(st, &f), 0);
	assert_int_equal(st->ops->forward_get(st, id, &f), 0);
	assert_false(f.enabled);
	assert_string_equal(f.name, "renamed");
	assert_string_equal(f.json, "{\"enabled\":false}");
	fg_forward_deinit(&f);
	assert_int_equal(st->ops->forward_delete(st, id), 0);
	assert_int_equal(st->ops->forward_get(st, id, &f), -ENOENT);

	/* Deleting a node deletes its own forwards. */
	id = mk_forward(st, "g", a, 0, 10, 20, FG_PROTO_TCP);
	assert_int_equal(st->ops->node_delete(st, a), 0);
	assert_int_equal(st->ops->forward_get(st, id, &f), -ENOENT);
}

static void test_store_revisions_count_up(void **state)
{
	struct fg_store *st = store(state);
	int64_t a = mk_node(st, "a"), rev;

	assert_int_equal(st->ops->config_rev(st, &rev), 0);
	assert_int_equal(rev, 0);
	assert_int_equal(st->ops->config_bump(st, &rev), 0);
	assert_int_equal(rev, 1);
	assert_int_equal(st->ops->config_bump(st, &rev), 0);
	assert_int_equal(rev, 2);
	assert_int_equal(st->ops->node_bump_desired_rev(st, a, &rev), 0);
	assert_int_equal(rev, 1);
	assert_int_equal(st->ops->node_bump_desired_rev(st, 999, &rev), -ENOENT);

	/* A transaction that rolls back leaves the revision alone. */
	assert_int_equal(st->ops->tx_begin(st), 0);
	assert_int_equal(st->ops->config_bump(st, &rev), 0);
	st->ops->tx_rollback(st);
	assert_int_equal(st->ops->config_rev(st, &rev), 0);
	assert_int_equal(rev, 2);
}

static void test_store_node_live_keeps_unset_fields(void **state)
{
	struct fg_store *st = store(state);
	int64_t a = mk_node(st, "a");
	struct fg_node n;

	struct fg_node_live l = {.online = true,
				 .last_seen = 100,
				 .version = "0.1.0",
				 .hostname = "edge",
				 .boot_id = "b1",
				 .applied_rev = 3,
				 .errors = "[{\"forward\":1}]"};
	assert_int_equal(st->ops->node_set_live(st, a, &l), 0);
	l = (struct fg_node_live){.online = false, .last_seen = 200, .applied_rev = -1};
	assert_int_equal(st->ops->node_set_live(st, a, &l), 0);
	assert_int_equal(st->ops->node_get(st, a, &n), 0);
	assert_false(n.online);
	assert_int_equal(n.last_seen, 200);
	assert_string_equal(n.version, "0.1.0");
	assert_string_equal(n.boot_id, "b1");
	assert_int_equal(n.applied_rev, 3);
	assert_string_equal(n.errors, "[{\"forward\":1}]");
	fg_node_deinit(&n);
	l.errors = "";
	assert_int_equal(st->ops->node_set_live(st, a, &l), 0);
	assert_int_equal(st->ops->node_get(st, a, &n), 0);
	assert_null(n.errors);
	assert_int_equal(st->ops->node_set_live(st, 999, &l), -ENOENT);
}

static void test_store_tokens_expire_and_delete(void **state)
{
	struct fg_store *st = store(state);
	struct fg_token t;
	int64_t uid, s1, s2;

	assert_int_equal(st->ops->user_create(st, "u", FG_ROLE_ADMIN, "h", &uid), 0);
	assert_int_equal(st->ops->token_create(st, FG_TOKEN_SESSION, uid, "h1", 1000, &s1), 0);
	assert_int_equal(st->ops->token_create(st, FG_TOKEN_API, uid, "h2", 0, &s2), 0);
	assert_int_equal(st->ops->token_create(st, FG_TOKEN_API, uid, "h2", 0, &s2), -EEXIST);
	assert_int_equal(st->ops->token_create(st, FG_TOKEN_API, 999, "h3", 0, &s2), -ENOENT);

	assert_int_equal(st->ops->token_lookup(st, "h1", 999, &t), 0);
	assert_int_equal(t.id, s1);
	assert_int_equal(t.kind, FG_TOKEN_SESSION);
	assert_int_equal(t.user_id, uid);
	assert_int_equal(st->ops->token_lookup(st, "h1", 1000, &t), -ENOENT);
	assert_int_equal(st->ops->token_lookup(st, "h2", INT64_MAX, &t), 0);
	assert_int_equal(t.kind, FG_TOKEN_API);

	assert_int_equal(st->ops->token_purge_expired(st, 2000), 0);
	assert_int_equal(st->ops->token_lookup(st, "h1", 0, &t), -ENOENT);
	assert_int_equal(st->ops->token_delete(st, t.id), 0);
	assert_int_equal(st->ops->token_lookup(st, "h2", 0, &t), -ENOENT);
	assert_int_equal(st->ops->token_delete(st, t.id), -ENOENT);
}

static const struct fg_counters zero;

/* Records abs and returns the delta the store added. */
static struct fg_counters report(struct fg_store *st, int64_t obj, int64_t node, const char *boot,
				 uint64_t up, uint64_t down, uint64_t conns, int64_t ts)
{
	struct fg_counters abs = {up, down, conns}, d;
	assert_int_equal(st->ops->record_counters(st, "forward", obj, node, boot, &abs, ts, &d), 0);
	return d;
}

/* Sum of every bucket of a series. */
static struct fg_counters total(struct fg_store *st, const struct fg_series_query *q)
{
	struct fg_stat_bucket *v;
	struct fg_counters t = zero;
	size_t n;
	assert_int_equal(st->ops->query_series(st, q, &v, &n), 0);
	for (size_t i = 0; i < n; i++) {
		t.bytes_up += v[i].sum.bytes_up;
		t.bytes_down += v[i].sum.bytes_down;
		t.conns += v[i].sum.conns;
	}
	fg_free(v);
	return t;
}

static const struct fg_series_query all = {
    .kind = "forward", .from = 0, .to = INT64_MAX, .step = 60};

static void test_store_repeated_report_counts_once(void **state)
{
	struct fg_store *st = store(state);
	struct fg_counters d = report(st, 1, 1, "boot", 100, 200, 3, 600);
	assert_int_equal(d.bytes_up, 100);
	d = report(st, 1, 1, "boot", 100, 200, 3, 610);
	assert_memory_equal(&d, &zero, sizeof(d));
	d = report(st, 1, 1, "boot", 100, 200, 3, 720);
	assert_memory_equal(&d, &zero, sizeof(d));

	struct fg_counters t = total(st, &all);
	assert_int_equal(t.bytes_up, 100);
	assert_int_equal(t.bytes_down, 200);
	assert_int_equal(t.conns, 3);
}

static void test_store_lost_report_counts_full_difference(void **state)
{
	struct fg_store *st = store(state);
	report(st, 1, 1, "boot", 100, 1000, 1, 600);
	/* The report of 200/2000/2 at 660 never arrives. */
	struct fg_counters d = report(st, 1, 1, "boot", 300, 3000, 3, 720);
	assert_int_equal(d.bytes_up, 200);
	assert_int_equal(d.bytes_down, 2000);
	assert_int_equal(d.conns, 2);

	struct fg_counters t = total(st, &all);
	assert_int_equal(t.bytes_up, 300);
	assert_int_equal(t.bytes_down, 3000);
	assert_int_equal(t.conns, 3);
}

static void test_store_new_boot_id_counts_from_zero(void **state)
{
	struct fg_store *st = store(state);
	report(st, 1, 1, "boot-a", 500, 500, 5, 600);
	/* The agent restarted: its counters began again at 0. */
	struct fg_counters d = report(st, 1, 1, "boot-b", 70, 700, 1, 660);
	assert_int_equal(d.bytes_up, 70);
	assert_int_equal(d.bytes_down, 700);
	/* A late repeat of the old boot's last report still counts 0. */
	d = report(st, 1, 1, "boot-a", 500, 500, 5, 670);
	assert_memory_equal(&d, &zero, sizeof(d));

	struct fg_counters t = total(st, &all);
	assert_int_equal(t.bytes_up, 570);
	assert_int_equal(t.bytes_down, 1200);
	assert_int_equal(t.conns, 6);
}

static void test_store_smaller_value_same_boot_is_a_reset(void **state)
{
	struct fg_store *st = store(state);
	report(st, 1, 1, "boot", 500, 500, 5, 600);
	struct fg_counters d = report(st, 1, 1, "boot", 800, 40, 6, 660);
	assert_int_equal(d.bytes_up, 800);
	assert_int_equal(d.bytes_down, 40);
	assert_int_equal(d.conns, 6);
}

static void test_store_minute_buckets_and_hour_rollups_sum_exactly(void **state)
{
	struct fg_store *st = store(state);
	const int64_t t0 = 1700000000 - 1700000000 % 3600; /* an hour boundary */
	uint64_t abs[2][2] = {{0}}, per_hour[4] = {0}, per_node[2] = {0}, sum = 0;
	int64_t g = mk_group(st, "g"), n1 = mk_node(st, "n1"), n2 = mk_node(st, "n2");
	assert_int_equal(st->ops->node_set_groups(st, n2, &g, 1), 0);
	int64_t node_ids[2] = {n1, n2};

	/* Four hours of reports every 20 s for 2 objects on 2 nodes, with
	 * repeats; bytes_up grows by a varying amount. */
	srand(7);
	for (int64_t ts = t0; ts < t0 + 4 * 3600; ts += 20) {
		for (int o = 0; o < 2; o++)
			for (int n = 0; n < 2; n++) {
				uint64_t inc = rand() % 3 ? (uint64_t)(rand() % 100000) : 0;
				abs[o][n] += inc;
				per_hour[(ts - t0) / 3600] += inc;
				per_node[n] += inc;
				sum += inc;
				report(st, o + 1, node_ids[n], "boot", abs[o][n], 0, 0, ts);
			}
	}
	struct fg_stat_bucket *v;
	size_t cnt;
	struct fg_series_query q = all;
	assert_int_equal(st->ops->query_series(st, &q, &v, &cnt), 0);
	assert_true(cnt > 200); /* minute resolution */
	assert_int_equal(v[0].ts, t0);
	fg_free(v);
	assert_int_equal(total(st, &q).bytes_up, sum);

	/* Roll up everything before t0 + 2h30 (the hour boundary below is t0 + 2h). */
	assert_int_equal(st->ops->rollup_hours(st, t0 + 2 * 3600 + 1800), 0);
	assert_int_equal(total(st, &q).bytes_up, sum);
	q.step = 3600;
	assert_int_equal(st->ops->query_series(st, &q, &v, &cnt), 0);
	assert_int_equal(cnt, 4);
	for (int h = 0; h < 4; h++) {
		assert_int_equal(v[h].ts, t0 + h * 3600);
		assert_int_equal(v[h].sum.bytes_up, per_hour[h]);
	}
	fg_free(v);
	/* Rolled-up hours have no minute rows left: step 60 gives one bucket
	 * for each of them. */
	q.step = 60;
	q.to = t0 + 2 * 3600;
	assert_int_equal(st->ops->query_series(st, &q, &v, &cnt), 0);
	assert_int_equal(cnt, 2);
	fg_free(v);

	/* Rolling up the same range again moves nothing twice. */
	assert_int_equal(st->ops->rollup_hours(st, t0 + 2 * 3600 + 1800), 0);
	assert_int_equal(st->ops->rollup_hours(st, t0 + 4 * 3600), 0);
	q = all;
	assert_int_equal(total(st, &q).bytes_up, sum);

	/* Scopes: one node, one group (n2 only), one object. */
	q.node_id = n1;
	assert_int_equal(total(st, &q).bytes_up, per_node[0]);
	q.node_id = 0;
	q.group_id = g;
	assert_int_equal(total(st, &q).bytes_up, per_node[1]);
	q.group_id = 0;
	q.object_id = 2;
	q.step = 3600;
	uint64_t obj2 = total(st, &q).bytes_up;
	q.object_id = 1;
	assert_int_equal(total(st, &q).bytes_up + obj2, sum);
	q.kind = "tunnel";
	assert_int_equal(total(st, &q).bytes_up, 0);

	q.step = 90;
	assert_int_equal(st->ops->query_series(st, &q, &v, &cnt), -EINVAL);
}

static void test_store_audit_lists_newest_first(void **state)
{
	struct fg_store *st = store(state);
	struct fg_audit_event *v;
	size_t n;

	for (int i = 1; i <= 5; i++)
		assert_int_equal(st->ops->audit_add(st, 100 + i, "admin", "forward.update",
						    "forward", i, "{\"a\":1}",
						    i == 5 ? NULL : "{\"a\":2}"),
				 0);
	assert_int_equal(st->ops->audit_list(st, 0, 2, &v, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(v[0].object_id, 5);
	assert_null(v[0].after);
	assert_string_equal(v[1].before, "{\"a\":1}");
	assert_string_equal(v[1].who, "admin");
	int64_t next = v[1].id;
	fg_audit_list_free(v, n);
	assert_int_equal(st->ops->audit_list(st, next, 10, &v, &n), 0);
	assert_int_equal(n, 3);
	assert_int_equal(v[0].ts, 103);
	fg_audit_list_free(v, n);
}

static void test_store_list_fails_cleanly_without_memory(void **state)
{
	struct fg_store *st = store(state);
	struct fg_node *v = (void *)1;
	size_t n = 9;
	struct fg_node_live l = {.errors = "[]", .applied_rev = -1};
	for (int i = 0; i < 20; i++) {
		char name[16];
		snprintf(name, sizeof(name), "n%d", i);
		assert_int_equal(st->ops->node_set_live(st, mk_node(st, name), &l), 0);
	}
	fg_alloc_fail_after(3); /* fails in the middle of reading rows */
	int rc = st->ops->node_list(st, &v, &n);
	fg_alloc_fail_after(0);
	assert_int_equal(rc, -ENOMEM);
	assert_null(v);
	assert_int_equal(n, 0);
	assert_int_equal(st->ops->node_list(st, &v, &n), 0);
	assert_int_equal(n, 20);
	fg_node_list_free(v, n);
}

int main(void)
{
	fg_log_set_level(FG_LOG_WARN);
	if (fg_auth_init())
		return 1;
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_store_migrations_are_idempotent, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_store_unique_names_conflict_with_eexist, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_store_node_token_is_stored_only_hashed, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_store_policies_for_node_by_priority_through_groups,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_store_forwards_for_node_include_group_forwards,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_store_forward_conflict_sees_group_ports, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_store_forward_update_and_delete, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_store_revisions_count_up, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_store_node_live_keeps_unset_fields, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_store_tokens_expire_and_delete, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_store_repeated_report_counts_once, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_store_lost_report_counts_full_difference, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_store_new_boot_id_counts_from_zero, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_store_smaller_value_same_boot_is_a_reset, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_store_minute_buckets_and_hour_rollups_sum_exactly,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_store_audit_lists_newest_first, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_store_list_fails_cleanly_without_memory, setup,
					    teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
