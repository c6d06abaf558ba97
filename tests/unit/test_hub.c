/* The agent hub end to end, in one process: a temporary SQLite store, the
 * hub on a loop, a minimal upgrade front end standing in for the HTTP
 * layer (authenticate, answer 101, fg_hub_attach), and on the other side
 * either a scripted fake agent speaking raw JSON-RPC or the real agent
 * (fg_agent) running the real engine. */
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
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "agent/agent.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/loop.h"
#include "net/rpc.h"
#include "net/ws.h"
#include "server/auth.h"
#include "server/hub.h"
#include "server/store.h"

/* ---- the front end: what the HTTP layer does for /agent ------------- */

struct front {
	struct fg_loop *loop;
	struct fg_hub *hub;
	int lfd;
	uint16_t port;
	struct fg_io lio;
	int done_calls, refused;
};

struct upconn {
	struct front *fr;
	struct fg_io io;
	char buf[8192];
	size_t len;
};

static void done_cb(void *arg)
{
	((struct front *)arg)->done_calls++;
}

static void upconn_read_cb(struct fg_loop *loop, struct fg_io *io, uint32_t events)
{
	struct upconn *c = io->data;
	ssize_t n = read(io->fd, c->buf + c->len, sizeof(c->buf) - c->len);
	if (n <= 0) {
		if (n < 0 && errno == EAGAIN)
			return;
		goto drop;
	}
	c->len += (size_t)n;
	struct fg_ws_request req;
	int hl = fg_ws_parse_upgrade_request(c->buf, c->len, &req);
	if (hl == -EAGAIN)
		return;
	if (hl < 0)
		goto drop;
	int64_t node_id;
	char out[512], acc[FG_WS_ACCEPT_LEN + 1];
	int fd = io->fd;
	if (fg_hub_authenticate(c->fr->hub, req.token, &node_id) < 0) {
		int k = fg_ws_build_error_response(out, sizeof(out), 401, NULL);
		assert_true(write(fd, out, (size_t)k) == k);
		c->fr->refused++;
		goto drop;
	}
	fg_ws_accept_key(req.key, acc);
	int k = fg_ws_build_upgrade_response(out, sizeof(out), acc);
	assert_true(write(fd, out, (size_t)k) == k);
	fg_io_stop(loop, io);
	fg_hub_attach(c->fr->hub, node_id, fd, c->buf + hl, c->len - (size_t)hl, done_cb, c->fr);
	free(c);
	return;
drop:
	fg_io_stop(loop, io);
	close(io->fd);
	free(c);
}

static void accept_cb(struct fg_loop *loop, struct fg_io *io, uint32_t events)
{
	struct front *fr = io->data;
	int fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0)
		return;
	struct upconn *c = calloc(1, sizeof(*c));
	c->fr = fr;
	fg_io_init(&c->io);
	assert_int_equal(fg_io_start(loop, &c->io, fd, EPOLLIN, upconn_read_cb, c), 0);
}

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

/* A free TCP port on 127.0.0.1 (bound then released). */
static uint16_t free_port(void)
{
	uint16_t p;
	int fd = listen_any(&p);
	close(fd);
	return p;
}

/* ---- fixture ------------------------------------------------------- */

struct fx {
	char dir[64];
	struct fg_store *st;
	struct fg_loop *loop;
	struct front fr;
	int64_t node;
	char token[FG_AUTH_TOKEN_SIZE];
	/* fake agent */
	struct fg_ws *ws;
	bool open, closed;
	char *msgs[64];
	size_t nmsgs;
	/* run_until */
	struct fg_timer tick;
	bool (*cond)(struct fx *);
	int64_t deadline;
	bool timed_out;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	char path[128];
	snprintf(f->dir, sizeof(f->dir), "/tmp/fg_test_hub.XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(path, sizeof(path), "%s/flowgate.db", f->dir);
	if (fg_store_sqlite_open(path, &f->st) != 0)
		return -1;
	char hash[FG_STORE_HASH_LEN + 1];
	fg_auth_token_new(FG_TOKEN_PREFIX_NODE, f->token);
	fg_auth_token_hash(f->token, hash);
	if (f->st->ops->node_create(f->st, "n1", hash, &f->node))
		return -1;
	f->loop = fg_loop_new();
	struct fg_hub_opts o = {.flush_interval_ns = 20 * FG_NS_PER_MS};
	f->fr.loop = f->loop;
	f->fr.hub = fg_hub_new(f->loop, f->st, &o);
	if (!f->fr.hub)
		return -1;
	f->fr.lfd = listen_any(&f->fr.port);
	fg_io_init(&f->fr.lio);
	fg_io_start(f->loop, &f->fr.lio, f->fr.lfd, EPOLLIN, accept_cb, &f->fr);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	char cmd[128];
	if (f->ws)
		fg_ws_free(f->ws);
	fg_hub_free(f->fr.hub);
	fg_io_stop(f->loop, &f->fr.lio);
	close(f->fr.lfd);
	fg_loop_free(f->loop);
	fg_store_close(f->st);
	for (size_t i = 0; i < f->nmsgs; i++)
		free(f->msgs[i]);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	if (system(cmd) != 0)
		return -1;
	free(f);
	return 0;
}

static void tick_cb(struct fg_loop *loop, struct fg_timer *t)
{
	struct fx *f = t->data;
	if (f->cond(f)) {
		fg_loop_stop(loop);
		return;
	}
	if (fg_loop_now(loop) > f->deadline) {
		f->timed_out = true;
		fg_loop_stop(loop);
		return;
	}
	fg_timer_start(loop, t, 5 * FG_NS_PER_MS);
}

/* Runs the loop until cond holds; fails the test after timeout_ms. */
static void run_until(struct fx *f, bool (*cond)(struct fx *), int timeout_ms, const char *what)
{
	f->cond = cond;
	f->timed_out = false;
	f->deadline = fg_loop_update_now(f->loop) + timeout_ms * FG_NS_PER_MS;
	fg_timer_init(&f->tick, tick_cb, f);
	fg_timer_start(f->loop, &f->tick, 0);
	fg_loop_run(f->loop);
	fg_timer_stop(f->loop, &f->tick);
	if (f->timed_out)
		fail_msg("timed out waiting for %s", what);
}

static bool never(struct fx *f)
{
	return false;
}

static void run_for(struct fx *f, int ms)
{
	f->cond = never;
	f->deadline = fg_loop_update_now(f->loop) + ms * FG_NS_PER_MS;
	fg_timer_init(&f->tick, tick_cb, f);
	fg_timer_start(f->loop, &f->tick, 0);
	fg_loop_run(f->loop);
	fg_timer_stop(f->loop, &f->tick);
}

/* ---- fake agent ------------------------------------------------------ */

static void fa_text(struct fg_ws *ws, const char *data, size_t len, void *user)
{
	struct fx *f = user;
	assert_true(f->nmsgs < 64);
	f->msgs[f->nmsgs++] = strndup(data, len);
}

static void fa_close(struct fg_ws *ws, int code, const char *err, void *user)
{
	struct fx *f = user;
	f->closed = true;
	fg_ws_free(ws);
	f->ws = NULL;
}

static const struct fg_ws_cbs fa_cbs = {.on_text = fa_text, .on_close = fa_close};

static int fa_status;

static void fa_open(struct fg_ws *ws, int err, int http_status, void *data)
{
	struct fx *f = data;
	fa_status = http_status;
	f->ws = ws;
	f->open = ws != NULL;
	f->closed = ws == NULL;
}

static bool opened(struct fx *f)
{
	return f->open || f->closed;
}

static void fa_connect(struct fx *f, const char *token)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
				 .sin_port = htons(f->fr.port)};
	connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	f->open = f->closed = false;
	assert_non_null(fg_ws_connect_start(f->loop, fd, "127.0.0.1", "/agent", token, &fa_cbs,
					    NULL, fa_open, f));
	run_until(f, opened, 2000, "the upgrade");
}

static void fa_send(struct fx *f, const char *s)
{
	assert_int_equal(fg_ws_send_text(f->ws, s, strlen(s)), 0);
}

static size_t want_n;
static bool have_msgs(struct fx *f)
{
	return f->nmsgs >= want_n;
}

/* Waits for the next message and returns it decoded (caller deinits). */
static void fa_next(struct fx *f, struct fg_rpc_msg *m)
{
	static size_t read_idx;
	if (f->nmsgs == 0)
		read_idx = 0;
	want_n = read_idx + 1;
	run_until(f, have_msgs, 3000, "a message from the hub");
	char err[FG_RPC_ERR_MAX];
	const char *s = f->msgs[read_idx++];
	if (fg_rpc_decode(s, strlen(s), m, err, sizeof(err)))
		fail_msg("hub sent an undecodable message: %s (%s)", s, err);
}

static struct fg_counters total(struct fx *f, int64_t fwd)
{
	struct fg_series_query q = {.kind = "forward",
				    .object_id = fwd,
				    .from = 0,
				    .to = time(NULL) + 3600,
				    .step = 3600 * 24 * 365};
	struct fg_stat_bucket *v;
	size_t n;
	struct fg_counters sum = {0};
	assert_int_equal(f->st->ops->query_series(f->st, &q, &v, &n), 0);
	for (size_t i = 0; i < n; i++) {
		sum.bytes_up += v[i].sum.bytes_up;
		sum.bytes_down += v[i].sum.bytes_down;
		sum.conns += v[i].sum.conns;
	}
	free(v);
	return sum;
}

static int64_t mk_fwd(struct fx *f, const char *name, uint16_t port, uint16_t target)
{
	char json[256];
	snprintf(json, sizeof(json),
		 "{\"name\":\"%s\",\"listen\":\"127.0.0.1:%u\",\"targets\":[\"127.0.0.1:%u\"]}",
		 name, port, target);
	struct fg_forward fw = {.node_id = f->node,
				.enabled = true,
				.port_lo = port,
				.port_hi = port,
				.proto = FG_PROTO_TCP,
				.json = json};
	snprintf(fw.name, sizeof(fw.name), "%s", name);
	assert_int_equal(f->st->ops->forward_create(f->st, &fw), 0);
	return fw.id;
}

static struct fg_node node_now(struct fx *f)
{
	struct fg_node n;
	assert_int_equal(f->st->ops->node_get(f->st, f->node, &n), 0);
	return n;
}

#define REP                                                                                        \
	"{\"jsonrpc\":\"2.0\",\"method\":\"report\",\"params\":{\"boot_id\":\"b1\","               \
	"\"ts\":1,\"counters\":[{\"kind\":\"forward\",\"id\":\"%lld\","                            \
	"\"bytes_up\":%d,\"bytes_down\":%d,\"conns\":1,\"active\":1},"                             \
	"{\"kind\":\"forward\",\"id\":\"999\",\"bytes_up\":5,\"bytes_down\":5}]},"                 \
	"\"id\":%d}"

/* ---- tests ------------------------------------------------------------ */

static void test_hub_start_marks_every_node_offline(void **state)
{
	struct fx *f = *state;
	struct fg_node_live live = {.online = true, .last_seen = 1234, .applied_rev = 3};
	assert_int_equal(f->st->ops->node_set_live(f->st, f->node, &live), 0);
	struct fg_node n = node_now(f);
	assert_true(n.online);
	fg_node_deinit(&n);
	/* a server that starts has no sessions, whatever the store says */
	struct fg_hub *h2 = fg_hub_new(f->loop, f->st, NULL);
	assert_non_null(h2);
	n = node_now(f);
	assert_false(n.online);
	assert_int_equal(n.last_seen, 1234);
	assert_int_equal(n.applied_rev, 3);
	fg_node_deinit(&n);
	assert_false(fg_hub_online(h2, f->node));
	fg_hub_free(h2);
}

static void test_hub_refuses_a_bad_token(void **state)
{
	struct fx *f = *state;
	fa_connect(f, "fgn_not-a-real-token");
	assert_true(f->closed);
	assert_int_equal(fa_status, 401);
	fa_connect(f, "fga_wrong-kind");
	assert_int_equal(fa_status, 401);
	assert_int_equal(f->fr.refused, 2);
	assert_int_equal(fg_hub_sessions(f->fr.hub), 0);
}

static void test_hub_hello_apply_report_and_exact_counters(void **state)
{
	struct fx *f = *state;
	struct fg_rpc_msg m;
	char buf[1024];
	int64_t fwd = mk_fwd(f, "web", 18001, 18002);

	fa_connect(f, f->token);
	assert_true(f->open);
	assert_int_equal(fg_hub_sessions(f->fr.hub), 1);
	assert_true(fg_hub_online(f->fr.hub, f->node));

	/* a report before hello is refused, clearly */
	fa_send(f, "{\"jsonrpc\":\"2.0\",\"method\":\"report\",\"params\":{\"boot_id\":\"b1\"},"
		   "\"id\":1}");
	fa_next(f, &m);
	assert_int_equal(m.kind, FG_RPC_ERROR);
	assert_int_equal(m.err_code, FG_RPC_NO_HELLO);
	fg_rpc_msg_deinit(&m);

	fa_send(f, "{\"jsonrpc\":\"2.0\",\"method\":\"hello\",\"params\":{\"version\":\"t\","
		   "\"hostname\":\"h1\",\"boot_id\":\"b1\",\"applied_rev\":0},\"id\":2}");
	fa_next(f, &m);
	assert_int_equal(m.kind, FG_RPC_RESULT);
	assert_int_equal(m.id_int, 2);
	assert_int_equal(
	    json_integer_value(json_object_get(json_object_get(m.result, "node"), "id")), f->node);
	fg_rpc_msg_deinit(&m);

	/* first contact: the complete state comes right after */
	fa_next(f, &m);
	assert_int_equal(m.kind, FG_RPC_REQUEST);
	assert_string_equal(m.method, "apply");
	struct fg_apply ap;
	char err[FG_RPC_ERR_MAX];
	assert_int_equal(fg_apply_decode(m.params, &ap, err, sizeof(err)), 0);
	int64_t rev = ap.rev;
	assert_true(rev >= 1);
	assert_int_equal(json_array_size(ap.forwards), 1);
	snprintf(buf, sizeof(buf), "%lld", (long long)fwd);
	assert_string_equal(
	    json_string_value(json_object_get(json_array_get(ap.forwards, 0), "id")), buf);
	snprintf(buf, sizeof(buf),
		 "{\"jsonrpc\":\"2.0\",\"result\":{\"rev\":%lld,\"status\":[{\"kind\":\"forward\","
		 "\"id\":\"%lld\",\"name\":\"web\",\"ok\":false,\"error\":\"port in use\"}]},"
		 "\"id\":%lld}",
		 (long long)rev, (long long)fwd, (long long)m.id_int);
	fg_rpc_msg_deinit(&m);
	fa_send(f, buf);

	/* counters: 100 up, then the same report again, then 150 */
	int ups[] = {100, 100, 150};
	for (int i = 0; i < 3; i++) {
		snprintf(buf, sizeof(buf), REP, (long long)fwd, ups[i], 2 * ups[i], 10 + i);
		fa_send(f, buf);
		fa_next(f, &m); /* the ack comes after the store has the values */
		assert_int_equal(m.kind, FG_RPC_RESULT);
		assert_int_equal(m.id_int, 10 + i);
		fg_rpc_msg_deinit(&m);
		struct fg_counters t = total(f, fwd);
		assert_int_equal(t.bytes_up, ups[i]);
		assert_int_equal(t.bytes_down, 2 * ups[i]);
	}
	/* the unknown forward 999 was dropped silently */
	assert_int_equal(total(f, 999).bytes_up, 0);
	/* the repeated values cost no store write */
	struct fg_strbuf mb;
	fg_strbuf_init(&mb);
	fg_hub_metrics(f->fr.hub, &mb);
	assert_non_null(strstr(mb.s, "flowgate_hub_counters_recorded_total 2\n"));
	fg_strbuf_deinit(&mb);

	struct fg_node n = node_now(f);
	assert_true(n.online);
	assert_int_equal(n.applied_rev, rev);
	assert_int_equal(n.desired_rev, rev);
	assert_string_equal(n.hostname, "h1");
	assert_non_null(n.errors);
	assert_non_null(strstr(n.errors, "port in use"));
	fg_node_deinit(&n);

	/* live view: latest counters of the current boot */
	json_t *live = fg_hub_live(f->fr.hub);
	snprintf(buf, sizeof(buf), "%lld", (long long)fwd);
	char nid[24];
	snprintf(nid, sizeof(nid), "%lld", (long long)f->node);
	json_t *c = json_object_get(json_object_get(json_object_get(live, "forwards"), buf), nid);
	assert_int_equal(json_integer_value(json_object_get(c, "bytes_up")), 150);
	assert_int_equal(json_integer_value(json_object_get(c, "active")), 1);
	assert_true(json_is_true(
	    json_object_get(json_object_get(json_object_get(live, "nodes"), nid), "online")));
	json_decref(live);

	/* malformed frames get errors and change nothing */
	fa_send(f, "this is not json");
	fa_next(f, &m);
	assert_int_equal(m.kind, FG_RPC_ERROR);
	assert_int_equal(m.err_code, FG_RPC_PARSE_ERROR);
	fg_rpc_msg_deinit(&m);
	fa_send(f,
		"{\"jsonrpc\":\"2.0\",\"method\":\"report\",\"params\":{\"boot_id\":\"b1\","
		"\"counters\":[{\"kind\":\"forward\",\"id\":1,\"bytes_up\":-1,\"bytes_down\":0}]},"
		"\"id\":20}");
	fa_next(f, &m);
	assert_int_equal(m.err_code, FG_RPC_INVALID_PARAMS);
	assert_non_null(strstr(m.err_message, "bytes_up"));
	fg_rpc_msg_deinit(&m);
	fa_send(f, "{\"jsonrpc\":\"2.0\",\"method\":\"reboot\",\"id\":21}");
	fa_next(f, &m);
	assert_int_equal(m.err_code, FG_RPC_METHOD_NOT_FOUND);
	fg_rpc_msg_deinit(&m);

	/* an unrelated refresh sends nothing; a change sends the next rev */
	size_t before = f->nmsgs;
	assert_int_equal(fg_hub_refresh(f->fr.hub, &f->node, 1), 0);
	run_for(f, 100);
	assert_int_equal(f->nmsgs, before);
	int64_t fwd2 = mk_fwd(f, "ssh", 18003, 18004);
	assert_int_equal(fg_hub_refresh(f->fr.hub, &f->node, 1), 0);
	fa_next(f, &m);
	assert_string_equal(m.method, "apply");
	assert_int_equal(fg_apply_decode(m.params, &ap, err, sizeof(err)), 0);
	assert_int_equal(ap.rev, rev + 1);
	assert_int_equal(json_array_size(ap.forwards), 2);
	fg_rpc_msg_deinit(&m);
	(void)fwd2;

	/* the session ends: offline in the store, done called once */
	fg_ws_close(f->ws, 1000, NULL);
	run_until(f, opened, 2000, "the close"); /* closed is set */
	run_for(f, 100);
	assert_int_equal(fg_hub_sessions(f->fr.hub), 0);
	assert_int_equal(f->fr.done_calls, 1);
	n = node_now(f);
	assert_false(n.online);
	fg_node_deinit(&n);
}

/* A store whose counter writes fail while fail_writes is set: the real
 * SQLite store with its ops pointer swapped for a copy. */
static const struct fg_store_ops *real_ops;
static struct fg_store_ops failing_ops;
static bool fail_writes;

/* Tunnels through the hub: hello's certificate fingerprint lands on the
 * node (canonical form), tunnel counters are recorded under kind "tunnel"
 * (an unknown tunnel's are dropped) and show in the live view. */
static void test_hub_tunnel_counters_and_hello_fingerprint(void **state)
{
	struct fx *f = *state;
	struct fg_rpc_msg m;
	char buf[1024], json[256];
	int64_t exit_node;
	char hash[FG_STORE_HASH_LEN + 1], tok[FG_AUTH_TOKEN_SIZE];
	fg_auth_token_new(FG_TOKEN_PREFIX_NODE, tok);
	fg_auth_token_hash(tok, hash);
	assert_int_equal(f->st->ops->node_create(f->st, "n2", hash, &exit_node), 0);
	snprintf(json, sizeof(json),
		 "{\"entry\":{\"node\":%lld,\"listen\":\"9000\"},\"exit\":%lld,"
		 "\"target\":\"10.0.0.5:1\",\"link_port\":7000}",
		 (long long)f->node, (long long)exit_node);
	int64_t nodes[] = {exit_node};
	struct fg_tunnel t = {.entry_node_id = f->node,
			      .enabled = true,
			      .json = json,
			      .psk = "sb1:not-opened-here",
			      .nodes = nodes,
			      .nnodes = 1};
	snprintf(t.name, sizeof(t.name), "tun");
	assert_int_equal(f->st->ops->tunnel_create(f->st, &t), 0);

	fa_connect(f, f->token);
	fa_send(
	    f,
	    "{\"jsonrpc\":\"2.0\",\"method\":\"hello\",\"params\":{\"version\":\"t\","
	    "\"boot_id\":\"b1\",\"fingerprint\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "aaaaaaaaaaaaaaaaa\"},\"id\":1}");
	fa_next(f, &m);
	assert_int_equal(m.kind, FG_RPC_RESULT);
	fg_rpc_msg_deinit(&m);
	struct fg_node n = node_now(f);
	assert_string_equal(n.fingerprint,
			    "AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:"
			    "AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA");
	fg_node_deinit(&n);
	/* that hello listed no "tunnel" capability: an agent older than tunnels */
	assert_false(fg_hub_runs_tunnels(f->fr.hub, f->node));
	assert_true(fg_hub_runs_tunnels(f->fr.hub, exit_node)); /* never connected */
	fa_next(f, &m);						/* the first apply */
	assert_string_equal(m.method, "apply");
	fg_rpc_msg_deinit(&m);
	/* pushed, not answered: the path view says pending until it is */
	int64_t applied, desired;
	assert_true(fg_hub_node_revs(f->fr.hub, f->node, &applied, &desired));
	assert_true(applied < desired);
	struct fg_hub_tunnel_links tl;
	assert_int_equal(fg_hub_tunnel_links(f->fr.hub, f->node, t.id, &tl), -ENOENT);
	assert_int_equal(tl.links_up, -1);

	snprintf(buf, sizeof(buf),
		 "{\"jsonrpc\":\"2.0\",\"method\":\"report\",\"params\":{\"boot_id\":\"b1\","
		 "\"counters\":[{\"kind\":\"tunnel\",\"id\":\"%lld\",\"bytes_up\":300,"
		 "\"bytes_down\":70,\"conns\":2,\"active\":1,\"links_up\":1,"
		 "\"rtt_next_us\":21500},{\"kind\":\"tunnel\",\"id\":\"999\","
		 "\"bytes_up\":5,\"bytes_down\":5}]},\"id\":2}",
		 (long long)t.id);
	fa_send(f, buf);
	fa_next(f, &m);
	assert_int_equal(m.kind, FG_RPC_RESULT);
	fg_rpc_msg_deinit(&m);
	const char *kinds[] = {"tunnel", "forward"};
	const uint64_t want[] = {300, 0};
	for (int k = 0; k < 2; k++) {
		struct fg_series_query q = {.kind = kinds[k],
					    .object_id = t.id,
					    .from = 0,
					    .to = time(NULL) + 3600,
					    .step = 3600 * 24 * 365};
		struct fg_stat_bucket *v;
		size_t nb;
		uint64_t up = 0;
		assert_int_equal(f->st->ops->query_series(f->st, &q, &v, &nb), 0);
		for (size_t i = 0; i < nb; i++)
			up += v[i].sum.bytes_up;
		free(v);
		assert_int_equal(up, want[k]);
	}
	struct fg_series_query q999 = {
	    .kind = "tunnel", .object_id = 999, .from = 0, .to = time(NULL) + 60, .step = 60};
	struct fg_stat_bucket *v;
	size_t nb;
	assert_int_equal(f->st->ops->query_series(f->st, &q999, &v, &nb), 0);
	assert_int_equal(nb, 0);
	free(v);
	json_t *live = fg_hub_live(f->fr.hub);
	char tid[24], nid[24];
	snprintf(tid, sizeof(tid), "%lld", (long long)t.id);
	snprintf(nid, sizeof(nid), "%lld", (long long)f->node);
	json_t *c = json_object_get(json_object_get(json_object_get(live, "tunnels"), tid), nid);
	assert_int_equal(json_integer_value(json_object_get(c, "bytes_up")), 300);
	assert_int_equal(json_integer_value(json_object_get(c, "active")), 1);
	assert_null(json_object_get(json_object_get(live, "forwards"), tid));
	json_decref(live);
	/* the link health of that report, per (node, tunnel) */
	assert_int_equal(fg_hub_tunnel_links(f->fr.hub, f->node, t.id, &tl), 0);
	assert_int_equal(tl.links_up, 1);
	assert_int_equal(tl.rtt_next_us, 21500);
	assert_int_equal(tl.rtt_prev_us, -1);
	assert_true(tl.ts > 0);
	assert_int_equal(fg_hub_tunnel_links(f->fr.hub, f->node, 999, &tl), 0);
	assert_int_equal(tl.links_up, -1); /* an older agent's entry: no link fields */
	assert_int_equal(fg_hub_tunnel_links(f->fr.hub, exit_node, t.id, &tl), -ENOENT);
	assert_string_equal(tl.warn, "");

	/* a run-time warning lasts exactly as long as the reports say it:
	 * kept per (node, tunnel) and in the live view, gone with the first
	 * report without it (it never becomes a sticky apply error) */
	snprintf(buf, sizeof(buf),
		 "{\"jsonrpc\":\"2.0\",\"method\":\"report\",\"params\":{\"boot_id\":\"b1\","
		 "\"counters\":[{\"kind\":\"tunnel\",\"id\":\"%lld\",\"bytes_up\":300,"
		 "\"bytes_down\":70,\"conns\":2,\"active\":0,\"links_up\":0,"
		 "\"warn\":\"1 name unresolved: targets[0] \\\"db.internal\\\" (cannot resolve: "
		 "Domain name not found; streams to it are refused)\"}]},\"id\":3}",
		 (long long)t.id);
	fa_send(f, buf);
	fa_next(f, &m);
	assert_int_equal(m.kind, FG_RPC_RESULT);
	fg_rpc_msg_deinit(&m);
	assert_int_equal(fg_hub_tunnel_links(f->fr.hub, f->node, t.id, &tl), 0);
	assert_int_equal(tl.links_up, 0);
	assert_string_equal(tl.warn,
			    "1 name unresolved: targets[0] \"db.internal\" (cannot resolve: "
			    "Domain name not found; streams to it are refused)");
	live = fg_hub_live(f->fr.hub);
	c = json_object_get(json_object_get(json_object_get(live, "tunnels"), tid), nid);
	assert_string_equal(json_string_value(json_object_get(c, "warn")), tl.warn);
	assert_int_equal(json_integer_value(json_object_get(c, "links_up")), 0);
	assert_true(json_is_null(json_object_get(c, "rtt_next_ms")));
	json_decref(live);
	struct fg_node nrow = node_now(f);
	assert_true(!nrow.errors || !strstr(nrow.errors, "db.internal"));
	fg_node_deinit(&nrow);

	snprintf(buf, sizeof(buf),
		 "{\"jsonrpc\":\"2.0\",\"method\":\"report\",\"params\":{\"boot_id\":\"b1\","
		 "\"counters\":[{\"kind\":\"tunnel\",\"id\":\"%lld\",\"bytes_up\":400,"
		 "\"bytes_down\":70,\"conns\":3,\"active\":1,\"links_up\":1,"
		 "\"rtt_next_us\":1500}]},\"id\":4}",
		 (long long)t.id);
	fa_send(f, buf);
	fa_next(f, &m);
	assert_int_equal(m.kind, FG_RPC_RESULT);
	fg_rpc_msg_deinit(&m);
	assert_int_equal(fg_hub_tunnel_links(f->fr.hub, f->node, t.id, &tl), 0);
	assert_string_equal(tl.warn, "");
	assert_int_equal(tl.links_up, 1);
	live = fg_hub_live(f->fr.hub);
	c = json_object_get(json_object_get(json_object_get(live, "tunnels"), tid), nid);
	assert_string_equal(json_string_value(json_object_get(c, "warn")), "");
	assert_true(json_real_value(json_object_get(c, "rtt_next_ms")) == 1.5);
	json_decref(live);
}

static int failing_record(struct fg_store *st, const char *kind, int64_t object_id, int64_t node_id,
			  const char *boot_id, const struct fg_counters *abs, int64_t ts,
			  struct fg_counters *delta)
{
	if (fail_writes)
		return -EIO;
	return real_ops->record_counters(st, kind, object_id, node_id, boot_id, abs, ts, delta);
}

static void test_hub_store_failure_acks_nothing_and_the_resend_counts_once(void **state)
{
	struct fx *f = *state;
	struct fg_rpc_msg m;
	char buf[1024];
	int64_t fwd = mk_fwd(f, "web", 18011, 18012);
	real_ops = f->st->ops;
	failing_ops = *real_ops;
	failing_ops.record_counters = failing_record;
	f->st->ops = &failing_ops;

	fa_connect(f, f->token);
	fa_send(f, "{\"jsonrpc\":\"2.0\",\"method\":\"hello\",\"params\":{\"version\":\"t\","
		   "\"boot_id\":\"b1\"},\"id\":1}");
	fa_next(f, &m); /* hello result */
	fg_rpc_msg_deinit(&m);
	fa_next(f, &m); /* apply: left unanswered, it does not matter here */
	fg_rpc_msg_deinit(&m);

	fail_writes = true;
	snprintf(buf, sizeof(buf), REP, (long long)fwd, 100, 200, 5);
	fa_send(f, buf);
	fa_next(f, &m);
	assert_int_equal(m.kind, FG_RPC_ERROR); /* answered, so the agent resends */
	assert_int_equal(m.id_int, 5);
	assert_non_null(strstr(m.err_message, "send it again"));
	fg_rpc_msg_deinit(&m);
	assert_int_equal(total(f, fwd).bytes_up, 0);

	fail_writes = false;
	snprintf(buf, sizeof(buf), REP, (long long)fwd, 100, 200, 6);
	fa_send(f, buf);
	fa_next(f, &m);
	assert_int_equal(m.kind, FG_RPC_RESULT);
	fg_rpc_msg_deinit(&m);
	struct fg_counters t = total(f, fwd);
	assert_int_equal(t.bytes_up, 100);
	assert_int_equal(t.bytes_down, 200);
	f->st->ops = real_ops;
}

static bool node_applied(struct fx *f)
{
	struct fg_node n = node_now(f);
	bool ok = n.online && n.desired_rev > 0 && n.applied_rev == n.desired_rev;
	fg_node_deinit(&n);
	return ok;
}

static int64_t want_bytes, want_fwd;
static bool counted(struct fx *f)
{
	struct fg_counters t = total(f, want_fwd);
	return (int64_t)t.bytes_up >= want_bytes && (int64_t)t.bytes_down >= want_bytes;
}

/* Client -> forward -> echo-less target: send n bytes up and n down
 * through the engine's workers (they run on their own threads, so plain
 * blocking sockets work while the test loop is idle). */
static void move_bytes(uint16_t port, int tfd, size_t n)
{
	int c = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
				 .sin_port = htons(port)};
	assert_int_equal(connect(c, (struct sockaddr *)&sa, sizeof(sa)), 0);
	char *buf = calloc(1, n);
	assert_true(write(c, buf, n) == (ssize_t)n);
	int fl = 0;
	int t = -1;
	for (int i = 0; i < 200 && t < 0; i++) {
		t = accept(tfd, NULL, NULL);
		if (t < 0)
			usleep(10000);
	}
	assert_true(t >= 0);
	(void)fl;
	size_t got = 0;
	while (got < n) {
		ssize_t r = read(t, buf, n - got);
		if (r < 0 && errno == EAGAIN) {
			usleep(1000);
			continue;
		}
		assert_true(r > 0);
		got += (size_t)r;
	}
	assert_true(write(t, buf, n) == (ssize_t)n);
	got = 0;
	while (got < n) {
		ssize_t r = read(c, buf, n - got);
		assert_true(r > 0);
		got += (size_t)r;
	}
	close(t);
	close(c);
	free(buf);
}

static void test_hub_with_the_real_agent(void **state)
{
	struct fx *f = *state;
	uint16_t tport, lport = free_port();
	int tfd = listen_any(&tport);
	int64_t fwd = mk_fwd(f, "web", lport, tport);

	char adir[96], url[64];
	snprintf(adir, sizeof(adir), "%s/agent", f->dir);
	assert_int_equal(mkdir(adir, 0700), 0);
	snprintf(url, sizeof(url), "ws://127.0.0.1:%u", f->fr.port);
	const char *servers[] = {url};
	struct fg_agent_opts ao = {.loop = f->loop,
				   .servers = servers,
				   .nservers = 1,
				   .token = f->token,
				   .state_dir = adir,
				   .report_interval_ns = 100 * FG_NS_PER_MS,
				   .workers = 1};
	char err[256];
	struct fg_agent *a = fg_agent_new(&ao, err, sizeof(err));
	assert_non_null(a);
	fg_agent_start(a);
	run_until(f, node_applied, 5000, "the agent to apply its state");

	/* the state file is there for the next boot */
	char path[160];
	struct stat sb;
	snprintf(path, sizeof(path), "%s/state.json", adir);
	assert_int_equal(stat(path, &sb), 0);

	move_bytes(lport, tfd, 50000);
	want_fwd = fwd;
	want_bytes = 50000;
	run_until(f, counted, 5000, "the counters of 50000 bytes each way");
	struct fg_counters t = total(f, fwd);
	assert_int_equal(t.bytes_up, 50000);
	assert_int_equal(t.bytes_down, 50000);
	assert_int_equal(t.conns, 1);

	/* disabling the forward: the next state has none and the agent
	 * applies it */
	struct fg_forward fw;
	assert_int_equal(f->st->ops->forward_get(f->st, fwd, &fw), 0);
	fw.enabled = false;
	assert_int_equal(f->st->ops->forward_update(f->st, &fw), 0);
	fg_forward_deinit(&fw);
	struct fg_node n0 = node_now(f);
	assert_int_equal(fg_hub_refresh(f->fr.hub, &f->node, 1), 0);
	run_until(f, node_applied, 5000, "the agent to apply the change");
	struct fg_node n1 = node_now(f);
	assert_int_equal(n1.applied_rev, n0.applied_rev + 1);
	fg_node_deinit(&n0);
	fg_node_deinit(&n1);
	int c = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
				 .sin_port = htons(lport)};
	assert_int_equal(connect(c, (struct sockaddr *)&sa, sizeof(sa)), -1);
	close(c);

	fg_agent_shutdown(a);
	run_for(f, 50);
	fg_agent_free(a);
	close(tfd);
	/* exactly what moved, nothing counted twice by the shutdown */
	t = total(f, fwd);
	assert_int_equal(t.bytes_up, 50000);
}

/* ---- tasks (server -> agent requests) --------------------------------- */

struct task_seen {
	int calls;
	char err[256];
	json_t *result;
};

static void task_cb(void *arg, const json_t *result, const char *err)
{
	struct task_seen *t = arg;
	t->calls++;
	snprintf(t->err, sizeof(t->err), "%s", err ? err : "");
	t->result = result ? json_deep_copy(result) : NULL;
}

static struct task_seen *seen_a, *seen_b;
static bool task_answered(struct fx *f)
{
	return seen_a->calls && (!seen_b || seen_b->calls);
}

static void test_hub_task_answers_errors_and_disconnect(void **state)
{
	struct fx *f = *state;
	struct fg_rpc_msg m;
	struct task_seen a = {0}, b = {0};
	seen_a = &a;
	seen_b = NULL;

	/* no session: refused at once, the callback never runs */
	assert_int_equal(fg_hub_task(f->fr.hub, f->node, json_pack("{s:s}", "kind", "x"),
				     FG_NS_PER_SEC, task_cb, &a),
			 -ENOTCONN);
	fa_connect(f, f->token);
	fa_send(f, "{\"jsonrpc\":\"2.0\",\"method\":\"hello\",\"params\":{\"version\":\"t\","
		   "\"boot_id\":\"b1\",\"applied_rev\":0},\"id\":1}");
	fa_next(f, &m); /* hello result */
	fg_rpc_msg_deinit(&m);
	fa_next(f, &m); /* apply */
	fg_rpc_msg_deinit(&m);

	/* an answer reaches the callback, never inside fg_hub_task */
	int64_t h = fg_hub_task(f->fr.hub, f->node,
				json_pack("{s:s,s:s}", "kind", "firewall_show", "script", "s"),
				FG_NS_PER_SEC, task_cb, &a);
	assert_true(h > 0);
	assert_int_equal(a.calls, 0);
	fa_next(f, &m);
	assert_int_equal(m.kind, FG_RPC_REQUEST);
	assert_string_equal(m.method, "task");
	struct fg_task tk;
	char err[FG_RPC_ERR_MAX];
	assert_int_equal(fg_task_decode(m.params, &tk, err, sizeof(err)), 0);
	assert_string_equal(tk.kind, "firewall_show");
	char *ans = fg_rpc_result(m.id, json_pack("{s:s}", "live", "table"));
	fg_rpc_msg_deinit(&m);
	fa_send(f, ans);
	free(ans);
	run_until(f, task_answered, 2000, "the task answer");
	assert_int_equal(a.calls, 1);
	assert_string_equal(a.err, "");
	assert_string_equal(json_string_value(json_object_get(a.result, "live")), "table");
	json_decref(a.result);

	/* the agent's error is the task's error; a cancelled task is silent */
	memset(&a, 0, sizeof(a));
	h = fg_hub_task(f->fr.hub, f->node, json_pack("{s:s}", "kind", "nope"), FG_NS_PER_SEC,
			task_cb, &a);
	int64_t hb = fg_hub_task(f->fr.hub, f->node, json_pack("{s:s}", "kind", "nope"),
				 FG_NS_PER_SEC, task_cb, &b);
	assert_true(h > 0 && hb > 0 && h != hb);
	fg_hub_task_cancel(f->fr.hub, hb);
	fa_next(f, &m);
	char *e =
	    fg_rpc_error(m.id, FG_RPC_METHOD_NOT_FOUND, "task kind \"nope\" is not supported");
	fg_rpc_msg_deinit(&m);
	fa_send(f, e);
	free(e);
	fa_next(f, &m); /* the cancelled one's request still went out */
	e = fg_rpc_error(m.id, FG_RPC_METHOD_NOT_FOUND, "late");
	fg_rpc_msg_deinit(&m);
	fa_send(f, e);
	free(e);
	run_until(f, task_answered, 2000, "the task error");
	run_for(f, 50);
	assert_int_equal(a.calls, 1);
	assert_null(a.result);
	assert_non_null(strstr(a.err, "not supported"));
	assert_int_equal(b.calls, 0);

	/* unanswered: a timeout; then a disconnect fails what is pending */
	memset(&a, 0, sizeof(a));
	fg_hub_task(f->fr.hub, f->node, json_pack("{s:s}", "kind", "slow"), 100 * FG_NS_PER_MS,
		    task_cb, &a);
	run_until(f, task_answered, 2000, "the task timeout");
	assert_non_null(strstr(a.err, "did not answer in time"));
	memset(&a, 0, sizeof(a));
	fg_hub_task(f->fr.hub, f->node, json_pack("{s:s}", "kind", "slow"), 10 * FG_NS_PER_SEC,
		    task_cb, &a);
	fg_ws_close(f->ws, 1000, "bye");
	run_until(f, task_answered, 2000, "the task failing on disconnect");
	assert_non_null(strstr(a.err, "disconnected"));
}

int main(void)
{
	fg_log_set_level(FG_LOG_WARN);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_hub_start_marks_every_node_offline, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_hub_refuses_a_bad_token, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_hub_hello_apply_report_and_exact_counters, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_hub_tunnel_counters_and_hello_fingerprint, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(
		test_hub_store_failure_acks_nothing_and_the_resend_counts_once, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_hub_task_answers_errors_and_disconnect, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_hub_with_the_real_agent, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
