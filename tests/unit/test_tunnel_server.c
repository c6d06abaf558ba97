/* Tunnels on the server: the store's tunnel ops (nodes, ports, cascades,
 * port conflicts with forwards), the secret key and PSK sealing (no
 * plaintext at rest), the tunnel model's validator (errors name the
 * field), and the desired-state compile of each role into the engine's
 * node-local schema (doc/tunnel.md) with the peers' addresses, pins and
 * the PSK. Each test runs on a fresh store in its own directory. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include <sodium.h>

#include "core/loop.h"
#include "net/rpc.h"
#include "server/api.h"
#include "server/auth.h"
#include "server/hub.h"
#include "server/desired.h"
#include "server/secret.h"
#include "server/store.h"
#include "server/tunnel_model.h"
#include "tunnel/config.h"

#define FP_A                                                                                       \
	"AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:"  \
	"AA:AA:AA"
#define FP_B                                                                                       \
	"BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:"  \
	"BB:BB:BB"
#define FP_C                                                                                       \
	"CC:CC:CC:CC:CC:CC:CC:CC:CC:CC:CC:CC:CC:CC:CC:CC:CC:CC:CC:CC:CC:CC:CC:CC:CC:CC:CC:CC:CC:"  \
	"CC:CC:CC"

struct fixture {
	char dir[64];
	char path[128];
	struct fg_store *st;
	struct fg_secret_key key;
};

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
	char err[256];
	snprintf(fx->dir, sizeof(fx->dir), "/tmp/fg_test_tunnel_srv.XXXXXX");
	if (!mkdtemp(fx->dir))
		return -1;
	snprintf(fx->path, sizeof(fx->path), "%s/flowgate.db", fx->dir);
	if (fg_store_sqlite_open(fx->path, &fx->st) != 0)
		return -1;
	if (fg_secret_key_load(fx->dir, &fx->key, err, sizeof(err)) != 1)
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

static int64_t mk_group(struct fg_store *st, const char *name)
{
	int64_t id;
	assert_int_equal(st->ops->group_create(st, name, &id), 0);
	return id;
}

static int64_t mk_forward(struct fg_store *st, const char *name, int64_t node, int lo, int hi,
			  enum fg_proto proto)
{
	char json[128];
	snprintf(json, sizeof(json), "{\"listen\":\"0.0.0.0:%d-%d\",\"targets\":[\"1.2.3.4:1\"]}",
		 lo, hi);
	struct fg_forward f = {.node_id = node,
			       .enabled = true,
			       .port_lo = lo,
			       .port_hi = hi,
			       .proto = proto,
			       .json = json};
	snprintf(f.name, sizeof(f.name), "%s", name);
	assert_int_equal(st->ops->forward_create(st, &f), 0);
	return f.id;
}

/* Stores a tunnel from its stored JSON (ids), with a fresh sealed PSK;
 * nodes and ports as the API would derive them. */
static int64_t mk_tunnel(struct fixture *fx, const char *name, const char *json,
			 uint8_t psk_out[FG_TM_PSK_LEN])
{
	struct fg_store *st = fx->st;
	struct fg_tm m;
	char field[64], err[256];
	json_t *j = json_loads(json, 0, NULL);
	assert_non_null(j);
	int rc = fg_tm_parse(j, &m, field, sizeof(field), err, sizeof(err));
	if (rc)
		fail_msg("%s: %s", field, err);
	json_decref(j);
	uint8_t psk[FG_TM_PSK_LEN];
	randombytes_buf(psk, sizeof(psk));
	if (psk_out)
		memcpy(psk_out, psk, sizeof(psk));
	struct fg_tunnel_port ports[FG_TM_MAX_LINKS + FG_TM_MAX_EXITS + 1];
	int64_t nodes[FG_TM_MAX_HOPS + FG_TM_MAX_EXITS];
	struct fg_tunnel t = {.entry_node_id = m.entry_node,
			      .entry_group_id = m.entry_group,
			      .enabled = m.enabled,
			      .json = (char *)json,
			      .psk = fg_secret_seal(&fx->key, psk, sizeof(psk)),
			      .nodes = nodes,
			      .ports = ports};
	snprintf(t.name, sizeof(t.name), "%s", name);
	ports[t.nports++] =
	    (struct fg_tunnel_port){m.entry_node, m.entry_group, m.listen_lo, m.listen_hi};
	for (size_t i = 0; i < m.nhops; i++)
		nodes[t.nnodes++] = m.hops[i];
	for (size_t i = 0; i < m.nexits; i++)
		nodes[t.nnodes++] = m.exits[i];
	/* the first link's listener (entry_to_exit: the next node) */
	int64_t l0 = m.nhops ? m.hops[0] : m.exits[0];
	ports[t.nports++] =
	    (struct fg_tunnel_port){l0, 0, fg_tm_link_port(&m, 0), fg_tm_link_port(&m, 0)};
	assert_int_equal(st->ops->tunnel_create(st, &t), 0);
	assert_true(t.id > 0);
	free(t.psk);
	fg_tm_deinit(&m);
	return t.id;
}

/* ---- store ----------------------------------------------------------- */

static void test_tunnel_store_round_trip_with_nodes_and_ports(void **state)
{
	struct fixture *fx = *state;
	struct fg_store *st = fx->st;
	int64_t a = mk_node(st, "a"), r = mk_node(st, "r"), b = mk_node(st, "b");
	char json[512];
	snprintf(json, sizeof(json),
		 "{\"entry\":{\"node\":%lld,\"listen\":\"0.0.0.0:5432\"},\"hops\":[%lld],"
		 "\"exit\":%lld,\"target\":\"10.0.0.5:5432\",\"link_port\":7000}",
		 (long long)a, (long long)r, (long long)b);
	int64_t id = mk_tunnel(fx, "db", json, NULL);

	struct fg_tunnel t;
	assert_int_equal(st->ops->tunnel_get(st, id, &t), 0);
	assert_string_equal(t.name, "db");
	assert_int_equal(t.entry_node_id, a);
	assert_int_equal(t.entry_group_id, 0);
	assert_true(t.enabled);
	assert_string_equal(t.json, json);
	assert_int_equal(strncmp(t.psk, "sb1:", 4), 0);
	assert_int_equal(t.nnodes, 2);
	assert_int_equal(t.nports, 2);
	assert_int_equal(t.ports[0].port_lo, 5432);
	assert_int_equal(t.ports[1].port_lo, 7000);
	assert_int_equal(t.ports[1].node_id, r);
	fg_tunnel_deinit(&t);

	assert_int_equal(st->ops->tunnel_get_by_name(st, "db", &t), 0);
	assert_int_equal(t.id, id);
	fg_tunnel_deinit(&t);
	assert_int_equal(st->ops->tunnel_get_by_name(st, "nope", &t), -ENOENT);

	/* update keeps the PSK when none is given, replaces nodes and ports */
	struct fg_tunnel u = {.id = id, .entry_node_id = a, .enabled = false, .json = "{}"};
	snprintf(u.name, sizeof(u.name), "db2");
	int64_t nodes[] = {b};
	u.nodes = nodes;
	u.nnodes = 1;
	assert_int_equal(st->ops->tunnel_update(st, &u), 0);
	assert_int_equal(st->ops->tunnel_get(st, id, &t), 0);
	assert_string_equal(t.name, "db2");
	assert_false(t.enabled);
	assert_int_equal(strncmp(t.psk, "sb1:", 4), 0);
	assert_int_equal(t.nnodes, 1);
	assert_int_equal(t.nports, 0);
	fg_tunnel_deinit(&t);

	/* names are unique among tunnels */
	snprintf(json, sizeof(json),
		 "{\"entry\":{\"node\":%lld,\"listen\":\"0.0.0.0:5433\"},\"exit\":%lld,"
		 "\"target\":\"10.0.0.5:5432\",\"link_port\":7001}",
		 (long long)a, (long long)b);
	int64_t id2 = mk_tunnel(fx, "other", json, NULL);
	snprintf(u.name, sizeof(u.name), "other");
	assert_int_equal(st->ops->tunnel_update(st, &u), -EEXIST);
	assert_int_equal(st->ops->tunnel_delete(st, id2), 0);
	assert_int_equal(st->ops->tunnel_delete(st, id2), -ENOENT);
	struct fg_tunnel *v;
	size_t n;
	assert_int_equal(st->ops->tunnel_list(st, &v, &n), 0);
	assert_int_equal(n, 1);
	fg_tunnel_list_free(v, n);
}

static void test_tunnel_store_for_node_covers_entry_group_hops_and_exits(void **state)
{
	struct fixture *fx = *state;
	struct fg_store *st = fx->st;
	int64_t a = mk_node(st, "a"), a2 = mk_node(st, "a2"), r = mk_node(st, "r"),
		b = mk_node(st, "b"), other = mk_node(st, "other");
	int64_t g = mk_group(st, "edge");
	assert_int_equal(st->ops->node_set_groups(st, a2, &g, 1), 0);
	char json[512];
	snprintf(json, sizeof(json),
		 "{\"entry\":{\"group\":%lld,\"listen\":\"0.0.0.0:5432\"},\"hops\":[%lld],"
		 "\"exits\":[%lld],\"target\":\"10.0.0.5:5432\",\"link_port\":7000}",
		 (long long)g, (long long)r, (long long)b);
	int64_t t1 = mk_tunnel(fx, "t1", json, NULL);
	snprintf(json, sizeof(json),
		 "{\"entry\":{\"node\":%lld,\"listen\":\"0.0.0.0:5433\"},\"exit\":%lld,"
		 "\"target\":\"10.0.0.5:5432\",\"link_port\":7001}",
		 (long long)a, (long long)b);
	int64_t t2 = mk_tunnel(fx, "t2", json, NULL);

	struct {
		int64_t node;
		size_t n;
		int64_t first;
	} want[] = {{a, 1, t2}, {a2, 1, t1}, {r, 1, t1}, {b, 2, t1}, {other, 0, 0}};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		struct fg_tunnel *v;
		size_t n;
		assert_int_equal(st->ops->tunnels_for_node(st, want[i].node, &v, &n), 0);
		assert_int_equal(n, want[i].n);
		if (n)
			assert_int_equal(v[0].id, want[i].first);
		fg_tunnel_list_free(v, n);
	}

	/* a hop's node going takes the tunnel with it; the group's going
	 * takes the tunnels it is the entry of */
	struct fg_tunnel t;
	assert_int_equal(st->ops->node_delete(st, r), 0);
	assert_int_equal(st->ops->tunnel_get(st, t1, &t), -ENOENT);
	assert_int_equal(st->ops->tunnel_get(st, t2, &t), 0);
	fg_tunnel_deinit(&t);
	assert_int_equal(st->ops->node_delete(st, a), 0);
	assert_int_equal(st->ops->tunnel_get(st, t2, &t), -ENOENT);
	assert_int_equal(st->ops->node_delete(st, a), -ENOENT);
}

static void test_tunnel_store_port_conflicts_meet_forwards_and_tunnels(void **state)
{
	struct fixture *fx = *state;
	struct fg_store *st = fx->st;
	int64_t a = mk_node(st, "a"), b = mk_node(st, "b"), c = mk_node(st, "c");
	int64_t g = mk_group(st, "g");
	assert_int_equal(st->ops->node_set_groups(st, c, &g, 1), 0);
	int64_t fw = mk_forward(st, "web", a, 8000, 8010, FG_PROTO_TCP);
	int64_t fu = mk_forward(st, "dns", b, 53, 53, FG_PROTO_UDP);
	char json[512];
	snprintf(json, sizeof(json),
		 "{\"entry\":{\"node\":%lld,\"listen\":\"0.0.0.0:9000\"},\"exit\":%lld,"
		 "\"target\":\"10.0.0.5:1\",\"link_port\":7000}",
		 (long long)a, (long long)b);
	int64_t t = mk_tunnel(fx, "t", json, NULL);

	const char *kind = NULL;
	int64_t other = 0;
	struct fg_port_claim cl = {
	    .node_id = a, .port_lo = 8005, .port_hi = 8005, .proto = FG_PROTO_TCP};
	assert_int_equal(st->ops->port_conflict(st, &cl, &kind, &other), -EEXIST);
	assert_string_equal(kind, "forward");
	assert_int_equal(other, fw);
	cl.skip_forward = fw; /* the forward itself, being edited */
	assert_int_equal(st->ops->port_conflict(st, &cl, &kind, &other), 0);

	/* the tunnel's entry port on a and link port on b */
	cl = (struct fg_port_claim){
	    .node_id = a, .port_lo = 9000, .port_hi = 9000, .proto = FG_PROTO_BOTH};
	assert_int_equal(st->ops->port_conflict(st, &cl, &kind, &other), -EEXIST);
	assert_string_equal(kind, "tunnel");
	assert_int_equal(other, t);
	cl.proto = FG_PROTO_UDP; /* tunnels are TCP */
	assert_int_equal(st->ops->port_conflict(st, &cl, &kind, &other), 0);
	cl = (struct fg_port_claim){
	    .node_id = b, .port_lo = 6990, .port_hi = 7000, .proto = FG_PROTO_TCP};
	assert_int_equal(st->ops->port_conflict(st, &cl, &kind, &other), -EEXIST);
	cl.skip_tunnel = t;
	assert_int_equal(st->ops->port_conflict(st, &cl, &kind, &other), 0);
	/* a UDP forward does not block a TCP tunnel port */
	cl = (struct fg_port_claim){
	    .node_id = b, .port_lo = 53, .port_hi = 53, .proto = FG_PROTO_TCP};
	assert_int_equal(st->ops->port_conflict(st, &cl, &kind, &other), 0);
	(void)fu;
	/* a claim on a group meets its members' ports */
	snprintf(json, sizeof(json),
		 "{\"entry\":{\"node\":%lld,\"listen\":\"0.0.0.0:9100\"},\"exit\":%lld,"
		 "\"target\":\"10.0.0.5:1\",\"link_port\":7100}",
		 (long long)a, (long long)c);
	int64_t t2 = mk_tunnel(fx, "t2", json, NULL);
	cl = (struct fg_port_claim){
	    .group_id = g, .port_lo = 7100, .port_hi = 7100, .proto = FG_PROTO_TCP};
	assert_int_equal(st->ops->port_conflict(st, &cl, &kind, &other), -EEXIST);
	assert_int_equal(other, t2);
}

static void test_tunnel_store_node_peer_fields(void **state)
{
	struct fixture *fx = *state;
	struct fg_store *st = fx->st;
	int64_t a = mk_node(st, "a");
	struct fg_node n;
	assert_int_equal(st->ops->node_set_peer(st, a, "198.51.100.7", FP_A), 0);
	assert_int_equal(st->ops->node_set_peer(st, a, NULL, NULL), 0);
	assert_int_equal(st->ops->node_set_address(st, a, "edge.example"), 0);
	assert_int_equal(st->ops->node_get(st, a, &n), 0);
	assert_string_equal(n.seen_address, "198.51.100.7");
	assert_string_equal(n.fingerprint, FP_A);
	assert_string_equal(n.address, "edge.example");
	fg_node_deinit(&n);
	assert_int_equal(st->ops->node_set_address(st, a, ""), 0);
	assert_int_equal(st->ops->node_set_peer(st, 999, "x", NULL), -ENOENT);
}

/* ---- secrets --------------------------------------------------------- */

static void test_secret_key_created_private_and_reloaded(void **state)
{
	struct fixture *fx = *state;
	char path[128], err[256];
	struct stat sb;
	struct fg_secret_key k2;
	snprintf(path, sizeof(path), "%s/secret.key", fx->dir);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	assert_int_equal(sb.st_size, FG_SECRET_KEY_LEN);
	assert_int_equal(fg_secret_key_load(fx->dir, &k2, err, sizeof(err)), 0);
	assert_memory_equal(k2.k, fx->key.k, FG_SECRET_KEY_LEN);
	/* a key others can read is refused, naming the fix */
	assert_int_equal(chmod(path, 0644), 0);
	assert_int_equal(fg_secret_key_load(fx->dir, &k2, err, sizeof(err)), -EACCES);
	assert_non_null(strstr(err, "chmod 600"));
	assert_int_equal(chmod(path, 0600), 0);
	/* a truncated key is refused */
	assert_int_equal(truncate(path, 10), 0);
	assert_int_equal(fg_secret_key_load(fx->dir, &k2, err, sizeof(err)), -EINVAL);
}

static void test_secret_seal_round_trip_and_tamper(void **state)
{
	struct fixture *fx = *state;
	uint8_t psk[32], out[FG_SECRET_PLAIN_MAX];
	randombytes_buf(psk, sizeof(psk));
	char *s1 = fg_secret_seal(&fx->key, psk, sizeof(psk));
	char *s2 = fg_secret_seal(&fx->key, psk, sizeof(psk));
	assert_non_null(s1);
	assert_string_not_equal(s1, s2); /* fresh nonce each time */
	assert_int_equal(fg_secret_open(&fx->key, s1, out), 32);
	assert_memory_equal(out, psk, 32);
	/* the plaintext does not appear in the sealed text, raw or base64 */
	char b64[64];
	sodium_bin2base64(b64, sizeof(b64), psk, sizeof(psk), sodium_base64_VARIANT_ORIGINAL);
	assert_null(strstr(s1, b64));
	/* another key, a flipped character, garbage */
	struct fg_secret_key other;
	randombytes_buf(other.k, sizeof(other.k));
	assert_int_equal(fg_secret_open(&other, s1, out), -EBADMSG);
	size_t len = strlen(s1);
	s1[len / 2] = s1[len / 2] == 'A' ? 'B' : 'A';
	assert_true(fg_secret_open(&fx->key, s1, out) < 0);
	assert_int_equal(fg_secret_open(&fx->key, "plain", out), -EINVAL);
	assert_int_equal(fg_secret_open(&fx->key, "sb1:!!!", out), -EINVAL);
	assert_null(fg_secret_seal(&fx->key, psk, 0));
	free(s1);
	free(s2);
}

static void test_tunnel_psk_never_in_the_store_file_in_plaintext(void **state)
{
	struct fixture *fx = *state;
	struct fg_store *st = fx->st;
	int64_t a = mk_node(st, "a"), b = mk_node(st, "b");
	char json[512], b64[64], hex[65];
	uint8_t psk[FG_TM_PSK_LEN];
	snprintf(json, sizeof(json),
		 "{\"entry\":{\"node\":%lld,\"listen\":\"0.0.0.0:9000\"},\"exit\":%lld,"
		 "\"target\":\"10.0.0.5:1\",\"link_port\":7000}",
		 (long long)a, (long long)b);
	mk_tunnel(fx, "t", json, psk);
	fg_store_close(fx->st);
	fx->st = NULL;
	sodium_bin2base64(b64, sizeof(b64), psk, sizeof(psk), sodium_base64_VARIANT_ORIGINAL);
	sodium_bin2hex(hex, sizeof(hex), psk, sizeof(psk));
	const char *suffixes[] = {"", "-wal"};
	for (size_t i = 0; i < 2; i++) {
		char p[160];
		snprintf(p, sizeof(p), "%s%s", fx->path, suffixes[i]);
		FILE *f = fopen(p, "rb");
		if (!f)
			continue;
		static char buf[1 << 21];
		size_t n = fread(buf, 1, sizeof(buf), f);
		fclose(f);
		assert_null(memmem(buf, n, psk, sizeof(psk)));
		assert_null(memmem(buf, n, b64, strlen(b64)));
		assert_null(memmem(buf, n, hex, strlen(hex)));
	}
	assert_int_equal(fg_store_sqlite_open(fx->path, &fx->st), 0);
}

/* ---- model ----------------------------------------------------------- */

static void expect_invalid(const char *json, const char *field, const char *needle)
{
	struct fg_tm m;
	char f[64], err[256];
	json_t *j = json_loads(json, 0, NULL);
	assert_non_null(j);
	int rc = fg_tm_parse(j, &m, f, sizeof(f), err, sizeof(err));
	json_decref(j);
	if (rc != -EINVAL)
		fail_msg("accepted: %s", json);
	if (strcmp(f, field) != 0 || !strstr(err, needle))
		fail_msg("%s: got field \"%s\", error \"%s\"; want \"%s\", \"%s\"", json, f, err,
			 field, needle);
}

#define BASE "\"entry\":{\"node\":1,\"listen\":\"0.0.0.0:9000\"},\"target\":\"10.0.0.5:80\""

static void test_tunnel_model_errors_name_the_field(void **state)
{
	expect_invalid("{" BASE ",\"exit\":2,\"bogus\":1}", "bogus", "unknown field");
	expect_invalid("{\"exit\":2,\"target\":\"a:1\"}", "entry", "entry");
	expect_invalid("{\"entry\":{\"node\":1},\"exit\":2,\"target\":\"a:1\"}", "entry.listen",
		       "required");
	expect_invalid("{\"entry\":{\"node\":1,\"group\":2,\"listen\":\"1\"},\"exit\":2,"
		       "\"target\":\"a:1\"}",
		       "entry.group", "exactly one");
	expect_invalid("{\"entry\":{\"node\":1,\"listen\":\"0.0.0.0:99999\"},\"exit\":2,"
		       "\"target\":\"a:1\"}",
		       "entry.listen", "99999");
	expect_invalid("{" BASE "}", "exit", "exactly one");
	expect_invalid("{" BASE ",\"exit\":2,\"exits\":[3]}", "exits", "exactly one");
	expect_invalid("{" BASE ",\"exits\":[]}", "exits", "at least one");
	expect_invalid("{" BASE ",\"exits\":[2,2]}", "exits[1]", "twice");
	expect_invalid("{" BASE ",\"exit\":1}", "exit", "entry node");
	expect_invalid("{" BASE ",\"exit\":2,\"hops\":[2]}", "hops[0]", "exit");
	expect_invalid("{" BASE ",\"exit\":2,\"hops\":[1]}", "hops[0]", "entry");
	expect_invalid("{" BASE ",\"exit\":2,\"hops\":[3,4,5,6,7,8,9,10,11]}", "hops", "at most");
	expect_invalid("{\"entry\":{\"node\":1,\"listen\":\"9000\"},\"exit\":2,"
		       "\"target\":\"nohost\"}",
		       "target", "nohost");
	expect_invalid("{\"entry\":{\"node\":1,\"listen\":\"9000\"},\"exit\":2,"
		       "\"target\":\"0.0.0.0:80\"}",
		       "target", "needs a host");
	expect_invalid("{\"entry\":{\"node\":1,\"listen\":\"9000\"},\"exit\":2,"
		       "\"target\":\"[::]:80\"}",
		       "target", "needs a host");
	expect_invalid("{" BASE ",\"exit\":2,\"transport\":\"quic\"}", "transport", "quic");
	expect_invalid("{" BASE ",\"exit\":2,\"mux\":\"yes\"}", "mux", "true or false");
	expect_invalid("{" BASE ",\"exit\":2,\"direction\":\"up\"}", "direction", "entry_to_exit");
	expect_invalid("{" BASE ",\"exit\":2,\"link_port\":0}", "link_port", "1-65535");
	expect_invalid("{" BASE ",\"exit\":2,\"ws_path\":\"/x\"}", "ws_path", "ws or wss");
	expect_invalid("{" BASE ",\"exit\":2,\"transport\":\"ws\",\"ws_path\":\"nope\"}", "ws_path",
		       "start with /");
	expect_invalid("{" BASE ",\"exit\":2,\"hops\":[3],\"links\":[{}]}", "links", "2 link");
	expect_invalid("{" BASE ",\"exit\":2,\"links\":[{\"transport\":\"x\"}]}",
		       "links[0].transport", "\"x\"");
	expect_invalid("{" BASE ",\"exit\":2,\"links\":[{\"port\":70000}]}", "links[0].port",
		       "1-65535");
	expect_invalid("{" BASE ",\"exit\":2,\"links\":[{\"ws_host\":\"h\"}]}", "links[0].ws_host",
		       "ws or wss");
	expect_invalid("{" BASE ",\"exit\":2,\"links\":[{\"speed\":1}]}", "links[0].speed",
		       "unknown");
	expect_invalid("{" BASE ",\"exit\":2,\"rate_up\":\"fast\"}", "rate_up", "fast");
	expect_invalid("{" BASE ",\"exit\":2,\"max_conns\":-1}", "max_conns", "count");
	expect_invalid("{" BASE ",\"exit\":2,\"idle_timeout\":\"soon\"}", "idle_timeout",
		       "duration");
	expect_invalid("{" BASE ",\"exit\":2,\"balance\":\"random\"}", "balance", "round-robin");
	expect_invalid("{" BASE ",\"exit\":2,\"enabled\":1}", "enabled", "true or false");
	expect_invalid("{\"entry\":{\"group\":1,\"listen\":\"9000\"},\"exit\":2,\"target\":\"a:1\","
		       "\"direction\":\"exit_to_entry\"}",
		       "direction", "group");
	/* what the engine would refuse on the node is refused here, by field */
	expect_invalid("{" BASE ",\"exit\":2,\"hops\":[3],\"link_port\":7000,"
		       "\"links\":[{},{\"direction\":\"exit_to_entry\"}]}",
		       "link_port", "already where this node listens");
	expect_invalid("{\"entry\":{\"node\":1,\"listen\":\"7000\"},\"exit\":2,\"target\":\"a:1\","
		       "\"link_port\":7000,\"direction\":\"exit_to_entry\"}",
		       "link_port", "entry.listen");
	expect_invalid("{\"entry\":{\"node\":1,\"listen\":\"1000-9000\"},\"exit\":2,"
		       "\"target\":\"a:1\"}",
		       "entry.listen", "4096");
	expect_invalid("{" BASE ",\"exit\":2,\"max_conns\":2000000000}", "max_conns", "1000000000");
	expect_invalid("{" BASE ",\"exit\":2,\"connect_timeout\":0}", "connect_timeout",
		       "duration");
	expect_invalid("{\"entry\":{\"node\":1,\"listen\":\"9000\"},\"exit\":2,"
		       "\"target\":\":80\"}",
		       "target", ":80");
	expect_invalid("{" BASE ",\"exit\":2,\"bad\\u0001key\":1}", "bad?key", "unknown");
	expect_invalid("{\"entry\":{\"node\":1,\"listen\":\"9000-9001\"},\"exit\":2,"
		       "\"target\":\"a:1-5\"}",
		       "target", "as long");
}

/* ---- compile --------------------------------------------------------- */

struct chain {
	int64_t a, r, b, c;
	int64_t tid;
	uint8_t psk[FG_TM_PSK_LEN];
};

static void mk_chain(struct fixture *fx, struct chain *ch, const char *extra)
{
	struct fg_store *st = fx->st;
	ch->a = mk_node(st, "a");
	ch->r = mk_node(st, "r");
	ch->b = mk_node(st, "b");
	ch->c = mk_node(st, "c");
	assert_int_equal(st->ops->node_set_peer(st, ch->a, "198.51.100.1", FP_A), 0);
	assert_int_equal(st->ops->node_set_peer(st, ch->r, "198.51.100.2", FP_C), 0);
	assert_int_equal(st->ops->node_set_peer(st, ch->b, "198.51.100.3", FP_B), 0);
	/* the operator's address wins over the session's */
	assert_int_equal(st->ops->node_set_address(st, ch->b, "2001:db8::3"), 0);
	char json[768];
	snprintf(json, sizeof(json),
		 "{\"entry\":{\"node\":%lld,\"listen\":\"0.0.0.0:5432\"},\"hops\":[%lld],"
		 "\"exits\":[%lld,%lld],\"balance\":\"round-robin\",\"target\":\"10.0.0.5:5432\","
		 "\"link_port\":7000,\"rate_down\":\"50mbit\",\"max_conns\":500%s}",
		 (long long)ch->a, (long long)ch->r, (long long)ch->b, (long long)ch->c, extra);
	ch->tid = mk_tunnel(fx, "db", json, ch->psk);
}

static json_t *tunnels_of(struct fixture *fx, int64_t node)
{
	json_t *state;
	char *text;
	assert_int_equal(fg_desired_compile_ex(fx->st, &fx->key, node, &state, &text), 0);
	free(text);
	json_t *t = json_incref(json_object_get(state, "tunnels"));
	json_decref(state);
	if (t) { /* what the node gets, the engine's own parser takes */
		struct fg_tunnel_set set = {0};
		char err[512];
		if (fg_tunnel_parse_json(t, &set, err, sizeof(err)) != 0)
			fail_msg("engine refuses node %lld's tunnels: %s", (long long)node, err);
		fg_tunnel_set_free(&set);
	}
	return t;
}

static void test_desired_tunnel_roles_peers_pins_and_psk(void **state)
{
	struct fixture *fx = *state;
	struct chain ch;
	mk_chain(fx, &ch, "");
	char b64[64], id[24];
	sodium_bin2base64(b64, sizeof(b64), ch.psk, sizeof(ch.psk), sodium_base64_VARIANT_ORIGINAL);
	snprintf(id, sizeof(id), "%lld", (long long)ch.tid);

	/* entry: listens for clients, dials the relay with its pin */
	json_t *t = tunnels_of(fx, ch.a);
	assert_int_equal(json_array_size(t), 1);
	json_t *e = json_array_get(t, 0);
	assert_string_equal(json_string_value(json_object_get(e, "role")), "entry");
	assert_string_equal(json_string_value(json_object_get(e, "name")), "db");
	assert_string_equal(json_string_value(json_object_get(e, "id")), id);
	assert_string_equal(json_string_value(json_object_get(e, "listen")), "0.0.0.0:5432");
	assert_string_equal(json_string_value(json_object_get(e, "rate_down")), "50mbit");
	assert_int_equal(json_integer_value(json_object_get(e, "max_conns")), 500);
	assert_null(json_object_get(e, "prev"));
	json_t *next = json_object_get(e, "next");
	assert_string_equal(json_string_value(json_object_get(next, "transport")), "tls");
	assert_true(json_is_true(json_object_get(next, "mux")));
	json_t *psk = json_object_get(next, "psk");
	assert_int_equal(json_integer_value(json_object_get(psk, "id")), ch.tid);
	assert_string_equal(json_string_value(json_object_get(psk, "key")), b64);
	json_t *peers = json_object_get(next, "peers");
	assert_int_equal(json_array_size(peers), 1);
	json_t *p0 = json_array_get(peers, 0);
	assert_string_equal(json_string_value(json_object_get(p0, "address")), "198.51.100.2:7000");
	assert_string_equal(json_string_value(json_object_get(p0, "fingerprint")), FP_C);
	assert_string_equal(json_string_value(json_object_get(p0, "node")), "r");
	json_decref(t);

	/* relay: listens for the entry, dials the exits it knows, balanced */
	t = tunnels_of(fx, ch.r);
	e = json_array_get(t, 0);
	assert_string_equal(json_string_value(json_object_get(e, "role")), "relay");
	assert_null(json_object_get(e, "listen"));
	assert_null(json_object_get(e, "max_conns"));
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(e, "prev"), "listen")),
	    "0.0.0.0:7000");
	next = json_object_get(e, "next");
	assert_string_equal(json_string_value(json_object_get(next, "balance")), "round-robin");
	peers = json_object_get(next, "peers");
	/* c never connected: no address, left out; b by its operator's v6 address */
	assert_int_equal(json_array_size(peers), 1);
	p0 = json_array_get(peers, 0);
	assert_string_equal(json_string_value(json_object_get(p0, "address")),
			    "[2001:db8::3]:7000");
	assert_string_equal(json_string_value(json_object_get(p0, "fingerprint")), FP_B);
	json_decref(t);

	/* exit: listens (on v6, its address is v6), dials only the target */
	t = tunnels_of(fx, ch.b);
	e = json_array_get(t, 0);
	assert_string_equal(json_string_value(json_object_get(e, "role")), "exit");
	json_t *prev = json_object_get(e, "prev");
	assert_string_equal(json_string_value(json_object_get(prev, "listen")), "[::]:7000");
	assert_string_equal(json_string_value(json_object_get(json_object_get(prev, "psk"), "key")),
			    b64);
	assert_string_equal(json_string_value(json_array_get(json_object_get(e, "targets"), 0)),
			    "10.0.0.5:5432");
	assert_null(json_object_get(e, "next"));
	json_decref(t);

	/* c has a role too (it listens; nobody needs its address for that) */
	t = tunnels_of(fx, ch.c);
	assert_int_equal(json_array_size(t), 1);
	json_decref(t);

	/* without the key (an old caller) tunnels are left out entirely */
	json_t *doc;
	char *text;
	assert_int_equal(fg_desired_compile(fx->st, ch.a, &doc, &text), 0);
	assert_null(json_object_get(doc, "tunnels"));
	assert_null(strstr(text, b64));
	json_decref(doc);
	free(text);
}

static json_t *link_of(json_t *tunnels, const char *side)
{
	return json_object_get(json_array_get(tunnels, 0), side);
}

/* A rotated key: during the grace period every link of every node carries
 * "keys" (the new one to dial with, the previous one accepted); when the
 * grace period is over (fg_api_tunnel_keys_expire) the previous key leaves
 * the store and the states, and the new one is the plain "psk". Neither
 * key is ever in the store in plaintext. */
static void test_desired_rotation_sends_both_keys_then_the_new_one_only(void **state)
{
	struct fixture *fx = *state;
	struct fg_store *st = fx->st;
	struct chain ch;
	mk_chain(fx, &ch, "");
	struct fg_tunnel t;
	assert_int_equal(st->ops->tunnel_get(st, ch.tid, &t), 0);
	assert_int_equal(t.key_id, ch.tid); /* a first key: the tunnel's id */
	assert_null(t.prev_psk);
	assert_int_equal(t.rotated, 0);
	uint8_t newk[FG_TM_PSK_LEN];
	randombytes_buf(newk, sizeof(newk));
	char *sealed = fg_secret_seal(&fx->key, newk, sizeof(newk));
	int64_t now = 1790000000;
	assert_int_equal(
	    st->ops->tunnel_set_keys(st, ch.tid, sealed, ch.tid + 1, t.psk, ch.tid, now), 0);
	free(sealed);
	fg_tunnel_deinit(&t);
	assert_int_equal(st->ops->tunnel_get(st, ch.tid, &t), 0);
	assert_int_equal(t.key_id, ch.tid + 1);
	assert_int_equal(t.prev_key_id, ch.tid);
	assert_int_equal(t.rotated, now);
	assert_int_equal(strncmp(t.prev_psk, "sb1:", 4), 0);
	fg_tunnel_deinit(&t);

	char oldb[64], newb[64];
	sodium_bin2base64(oldb, sizeof(oldb), ch.psk, sizeof(ch.psk),
			  sodium_base64_VARIANT_ORIGINAL);
	sodium_bin2base64(newb, sizeof(newb), newk, sizeof(newk), sodium_base64_VARIANT_ORIGINAL);
	json_t *want = json_pack("[{s:I, s:s, s:b}, {s:I, s:s}]", "id", (json_int_t)ch.tid + 1,
				 "key", newb, "dial", 1, "id", (json_int_t)ch.tid, "key", oldb);
	int64_t nodes[] = {ch.a, ch.r, ch.b};
	const char *sides[][2] = {{"next", NULL}, {"prev", "next"}, {"prev", NULL}};
	for (size_t i = 0; i < 3; i++) {
		json_t *tn = tunnels_of(fx, nodes[i]); /* the engine parses it too */
		for (int k = 0; k < 2 && sides[i][k]; k++) {
			json_t *l = link_of(tn, sides[i][k]);
			assert_null(json_object_get(l, "psk"));
			assert_true(json_equal(json_object_get(l, "keys"), want));
		}
		json_decref(tn);
	}
	json_decref(want);

	/* the grace period: not over one second early, over at its end */
	struct fg_loop *loop = fg_loop_new();
	struct fg_hub_opts ho = {.secret = &fx->key};
	struct fg_hub *hub = fg_hub_new(loop, st, &ho);
	struct fg_api_opts ao = {.secret = &fx->key};
	struct fg_api *api = fg_api_new(loop, st, hub, NULL, &ao);
	assert_non_null(api);
	assert_int_equal(fg_api_tunnel_keys_expire(api, now + FG_API_TUNNEL_KEY_GRACE_S - 1), 0);
	assert_int_equal(st->ops->tunnel_get(st, ch.tid, &t), 0);
	assert_non_null(t.prev_psk);
	fg_tunnel_deinit(&t);
	assert_int_equal(fg_api_tunnel_keys_expire(api, now + FG_API_TUNNEL_KEY_GRACE_S), 0);
	assert_int_equal(st->ops->tunnel_get(st, ch.tid, &t), 0);
	assert_null(t.prev_psk);
	assert_int_equal(t.key_id, ch.tid + 1);
	fg_tunnel_deinit(&t);
	json_t *tn = tunnels_of(fx, ch.r);
	json_t *psk = json_object_get(link_of(tn, "prev"), "psk");
	assert_int_equal(json_integer_value(json_object_get(psk, "id")), ch.tid + 1);
	assert_string_equal(json_string_value(json_object_get(psk, "key")), newb);
	assert_null(json_object_get(link_of(tn, "next"), "keys"));
	json_decref(tn);
	/* audited, with ids only */
	struct fg_audit_event *ev;
	size_t nev;
	assert_int_equal(st->ops->audit_list(st, 0, 10, &ev, &nev), 0);
	assert_true(nev >= 1);
	assert_string_equal(ev[0].action, "key-grace-end");
	assert_null(strstr(ev[0].before ? ev[0].before : "", oldb));
	fg_audit_list_free(ev, nev);
	fg_api_free(api);
	fg_hub_free(hub);
	fg_loop_free(loop);

	/* at rest: neither key in plaintext */
	FILE *f = fopen(fx->path, "rb");
	assert_non_null(f);
	static uint8_t blob[1 << 20];
	size_t n = fread(blob, 1, sizeof(blob), f);
	fclose(f);
	assert_null(memmem(blob, n, newk, sizeof(newk)));
	assert_null(memmem(blob, n, ch.psk, sizeof(ch.psk)));
	assert_null(memmem(blob, n, newb, strlen(newb)));
}

static void test_desired_reverse_tunnel_swaps_listen_and_dial(void **state)
{
	struct fixture *fx = *state;
	struct chain ch;
	mk_chain(
	    fx, &ch,
	    ",\"direction\":\"exit_to_entry\",\"links\":[{\"transport\":\"aead\","
	    "\"mux\":false},{\"transport\":\"wss\",\"ws_path\":\"/t\",\"ws_host\":\"cdn.example\","
	    "\"port\":8443}]");
	json_t *t = tunnels_of(fx, ch.a);
	json_t *next = json_object_get(json_array_get(t, 0), "next");
	assert_string_equal(json_string_value(json_object_get(next, "listen")), "0.0.0.0:7000");
	assert_string_equal(json_string_value(json_object_get(next, "transport")), "aead");
	assert_true(json_is_false(json_object_get(next, "mux")));
	assert_null(json_object_get(next, "peers"));
	json_decref(t);

	t = tunnels_of(fx, ch.r);
	json_t *e = json_array_get(t, 0);
	json_t *prev = json_object_get(e, "prev");
	json_t *p0 = json_array_get(json_object_get(prev, "peers"), 0);
	assert_string_equal(json_string_value(json_object_get(p0, "address")), "198.51.100.1:7000");
	assert_null(json_object_get(p0, "fingerprint")); /* aead: no pin */
	next = json_object_get(e, "next");
	assert_string_equal(json_string_value(json_object_get(next, "listen")), "0.0.0.0:8443");
	assert_string_equal(json_string_value(json_object_get(next, "balance")), "round-robin");
	assert_string_equal(json_string_value(json_object_get(json_object_get(next, "ws"), "path")),
			    "/t");
	assert_string_equal(json_string_value(json_object_get(json_object_get(next, "ws"), "host")),
			    "cdn.example");
	json_decref(t);

	t = tunnels_of(fx, ch.b);
	prev = json_object_get(json_array_get(t, 0), "prev");
	p0 = json_array_get(json_object_get(prev, "peers"), 0);
	assert_string_equal(json_string_value(json_object_get(p0, "address")), "198.51.100.2:8443");
	assert_string_equal(json_string_value(json_object_get(p0, "fingerprint")), FP_C);
	json_decref(t);
}

static void test_desired_tunnel_waits_for_peer_fingerprint_and_skips_double_roles(void **state)
{
	struct fixture *fx = *state;
	struct fg_store *st = fx->st;
	int64_t a = mk_node(st, "a"), b = mk_node(st, "b");
	int64_t g = mk_group(st, "g");
	int64_t gm[] = {g};
	assert_int_equal(st->ops->node_set_groups(st, a, gm, 1), 0);
	char json[512];
	snprintf(json, sizeof(json),
		 "{\"entry\":{\"group\":%lld,\"listen\":\"0.0.0.0:9000\"},\"exit\":%lld,"
		 "\"target\":\"10.0.0.5:1\",\"link_port\":7000}",
		 (long long)g, (long long)b);
	mk_tunnel(fx, "t", json, NULL);
	/* b's agent never connected: the entry cannot pin it yet, the exit runs */
	json_t *t = tunnels_of(fx, a);
	assert_null(t);
	t = tunnels_of(fx, b);
	assert_int_equal(json_array_size(t), 1);
	json_decref(t);
	assert_int_equal(st->ops->node_set_peer(st, b, "198.51.100.3", FP_B), 0);
	t = tunnels_of(fx, a);
	assert_int_equal(json_array_size(t), 1);
	json_decref(t);
	/* b joins the entry group: it would be entry and exit; left out on b */
	assert_int_equal(st->ops->node_set_groups(st, b, gm, 1), 0);
	t = tunnels_of(fx, b);
	assert_null(t);
}

/* ---- hello ----------------------------------------------------------- */

static void test_rpc_hello_fingerprint_optional_canonical_and_checked(void **state)
{
	struct fg_hello h;
	char err[FG_RPC_ERR_MAX];
	/* an older agent sends none */
	json_t *p = json_pack("{s:s, s:s, s:I}", "version", "0.1", "boot_id", "b1", "applied_rev",
			      (json_int_t)3);
	assert_int_equal(fg_hello_decode(p, &h, err, sizeof(err)), 0);
	assert_string_equal(h.fingerprint, "");
	/* any case, with or without colons: kept in the canonical form */
	json_object_set_new(
	    p, "fingerprint",
	    json_string("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
	assert_int_equal(fg_hello_decode(p, &h, err, sizeof(err)), 0);
	assert_string_equal(h.fingerprint, FP_A);
	json_object_set_new(p, "fingerprint", json_string(FP_B));
	assert_int_equal(fg_hello_decode(p, &h, err, sizeof(err)), 0);
	assert_string_equal(h.fingerprint, FP_B);
	/* anything else is refused, naming the field */
	json_object_set_new(p, "fingerprint", json_string("AB:CD"));
	assert_int_equal(fg_hello_decode(p, &h, err, sizeof(err)), FG_RPC_INVALID_PARAMS);
	assert_non_null(strstr(err, "fingerprint"));
	json_object_set_new(p, "fingerprint", json_integer(5));
	assert_int_equal(fg_hello_decode(p, &h, err, sizeof(err)), FG_RPC_INVALID_PARAMS);
	assert_non_null(strstr(err, "fingerprint"));
	json_decref(p);
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(
		test_desired_rotation_sends_both_keys_then_the_new_one_only, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_tunnel_store_round_trip_with_nodes_and_ports,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_tunnel_store_for_node_covers_entry_group_hops_and_exits, setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_tunnel_store_port_conflicts_meet_forwards_and_tunnels, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_tunnel_store_node_peer_fields, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_secret_key_created_private_and_reloaded, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_secret_seal_round_trip_and_tamper, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_tunnel_psk_never_in_the_store_file_in_plaintext,
					    setup, teardown),
	    cmocka_unit_test(test_tunnel_model_errors_name_the_field),
	    cmocka_unit_test(test_rpc_hello_fingerprint_optional_canonical_and_checked),
	    cmocka_unit_test_setup_teardown(test_desired_tunnel_roles_peers_pins_and_psk, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_desired_reverse_tunnel_swaps_listen_and_dial,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_desired_tunnel_waits_for_peer_fingerprint_and_skips_double_roles, setup,
		teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
