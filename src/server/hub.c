/* The agent hub: see hub.h and doc/protocol.md.
 *
 * Scale: the hub holds thousands of sessions on one loop, so per message
 * it does work proportional to that message only (a hash lookup of the
 * node, a walk of the node's own forwards), and store writes are batched:
 * reports and liveness changes are queued and written in one transaction
 * per flush interval. A report is acknowledged only after its counters are
 * committed, so an agent never drops values the store does not hold. */
#include "server/hub.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/metrics.h"
#include "net/addr.h"
#include "net/rpc.h"
#include "net/ws.h"
#include "server/auth.h"
#include "server/desired.h"

#define DEFAULT_PING_NS	 (10 * FG_NS_PER_SEC)
#define DEFAULT_FLUSH_NS (1 * FG_NS_PER_SEC)
#define MISSED_PINGS	 3

struct session;

/* Counter kinds the hub records. */
enum ctr_kind { K_FORWARD = 0, K_TUNNEL = 1 };

/* Latest counters of one forward or tunnel on one node (current boot
 * only). */
struct fwd_live {
	uint8_t kind; /* enum ctr_kind */
	int64_t fwd_id;
	struct fg_counters abs, prev;
	uint64_t active;
	int64_t t_ns, prev_t_ns; /* loop time of the two last reports */
	int64_t ts;		 /* wall time of the last report */
	/* what was last queued for the store; equal values are not written
	 * again (an idle forward costs no SQL) until a flush fails */
	struct fg_counters stored;
	bool stored_ok;
	/* tunnels: the link health of the last report (-1 = absent; links_up
	 * present means the node's engine runs the tunnel) */
	int64_t links_up, rtt_prev_us, rtt_next_us;
	/* owned, NULL = none: the run-time warning of the last report (only
	 * a node with a problem pays for the text) */
	char *warn;
};

/* What the hub knows of a node. Created on first contact or refresh, kept
 * until the hub is freed (a few hundred bytes per node). */
struct nstate {
	int64_t id;
	struct session *s; /* the attached session, NULL if none */
	bool hash_known;
	bool no_tunnels; /* its agent's hello did not list the "tunnel" capability */
	unsigned char hash[FG_DESIRED_HASH_LEN]; /* of the last compiled document */
	int64_t desired_rev;
	/* live view */
	int64_t last_seen, applied_rev;
	char boot_id[FG_RPC_ID_MAX + 1];
	char *errors; /* owned JSON text, NULL = none */
	struct fwd_live *fl;
	uint32_t nfl, capfl;
	/* queued store write (see flush) */
	bool dirty, errors_dirty, online;
	struct nstate *dirty_next;
	json_t *hello; /* hello params not yet written: version, hostname, boot id */
	json_t *fw;    /* the last report's firewall counters, NULL if none */
	int64_t fw_ts; /* when (Unix seconds) */
};

struct session {
	struct fg_hub *hub;
	struct fg_ws *ws;
	struct nstate *ns;
	uint64_t serial;
	bool hello_done;
	int64_t next_id;  /* our request ids */
	int64_t apply_id; /* outstanding apply request, 0 if none */
	int64_t apply_rev;
	void (*done)(void *);
	void *done_arg;
	struct session *prev, *next;
	char peer[FG_ADDRSTR_MAX]; /* the address the session comes from, no port */
};

/* A task request in flight (fg_hub_task). */
struct task {
	struct fg_hub *hub;
	int64_t handle;
	struct session *s;
	int64_t req_id; /* the JSON-RPC id in s */
	fg_hub_task_cb cb;
	void *arg;
	struct fg_timer timer;
	struct task *next;
};

struct qctr {
	uint8_t kind; /* enum ctr_kind */
	int64_t node_id, fwd_id, ts;
	struct fg_counters abs;
	char boot_id[FG_RPC_ID_MAX + 1];
};

struct qack {
	struct nstate *ns;
	uint64_t serial;
	json_t *id; /* owned reference */
};

struct fg_hub {
	struct fg_loop *loop;
	struct fg_store *st;
	const struct fg_secret_key *secret;
	struct fg_ws_opts wsopts;
	int64_t flush_ns;
	struct fg_timer flush_timer;
	/* nodes: open addressing on id, never shrinks */
	struct nstate **slots;
	size_t cap, nnodes;
	struct session *sessions;
	size_t nsessions;
	uint64_t next_serial;
	/* forward and tunnel ids that exist (sorted), to drop counters of
	 * deleted ones */
	int64_t *fwd_ids;
	size_t nfwd_ids;
	int64_t *tun_ids;
	size_t ntun_ids;
	/* batched writes */
	struct qctr *qc;
	size_t nqc, capqc;
	struct qack *qa;
	size_t nqa, capqa;
	struct nstate *dirty;
	struct task *tasks;
	int64_t next_task;
	/* metrics */
	uint64_t m_msgs_in, m_msgs_out, m_applies, m_apply_ok, m_apply_err, m_proto_err;
	uint64_t m_flushes, m_flush_err, m_counters, m_counters_dropped, m_accepted;
};

static int64_t wall_now(void)
{
	return (int64_t)time(NULL);
}

/* ---- node map -------------------------------------------------------- */

static size_t slot_of(int64_t id, size_t cap)
{
	uint64_t x = (uint64_t)id * 0x9E3779B97F4A7C15ull;
	return (size_t)(x >> 32) & (cap - 1);
}

static struct nstate *node_find(const struct fg_hub *hub, int64_t id)
{
	if (!hub->cap)
		return NULL;
	for (size_t i = slot_of(id, hub->cap);; i = (i + 1) & (hub->cap - 1)) {
		struct nstate *ns = hub->slots[i];
		if (!ns || ns->id == id)
			return ns;
	}
}

static struct nstate *node_get(struct fg_hub *hub, int64_t id)
{
	struct nstate *ns = node_find(hub, id);
	if (ns)
		return ns;
	if ((hub->nnodes + 1) * 2 > hub->cap) {
		size_t ncap = hub->cap ? hub->cap * 2 : 64;
		struct nstate **ns2 = fg_calloc(ncap, sizeof(*ns2));
		if (!ns2)
			return NULL;
		for (size_t i = 0; i < hub->cap; i++) {
			struct nstate *o = hub->slots[i];
			if (!o)
				continue;
			size_t j = slot_of(o->id, ncap);
			while (ns2[j])
				j = (j + 1) & (ncap - 1);
			ns2[j] = o;
		}
		fg_free(hub->slots);
		hub->slots = ns2;
		hub->cap = ncap;
	}
	ns = fg_calloc(1, sizeof(*ns));
	if (!ns)
		return NULL;
	ns->id = id;
	ns->desired_rev = -1;
	ns->applied_rev = -1;
	size_t j = slot_of(id, hub->cap);
	while (hub->slots[j])
		j = (j + 1) & (hub->cap - 1);
	hub->slots[j] = ns;
	hub->nnodes++;
	return ns;
}

/* Forgets every live counter of ns (and their warnings). */
static void fl_clear(struct nstate *ns)
{
	for (uint32_t i = 0; i < ns->nfl; i++)
		fg_free(ns->fl[i].warn);
	fg_free(ns->fl);
	ns->fl = NULL;
	ns->nfl = ns->capfl = 0;
}

static void nstate_free(struct nstate *ns)
{
	fg_free(ns->errors);
	fl_clear(ns);
	json_decref(ns->hello);
	json_decref(ns->fw);
	fg_free(ns);
}

/* ---- batching -------------------------------------------------------- */

static void flush(struct fg_hub *hub);

static void flush_timer_cb(struct fg_loop *loop, struct fg_timer *t)
{
	flush(t->data);
}

static void arm_flush(struct fg_hub *hub)
{
	if (!fg_timer_armed(&hub->flush_timer))
		fg_timer_start(hub->loop, &hub->flush_timer, hub->flush_ns);
}

static void mark_dirty(struct fg_hub *hub, struct nstate *ns)
{
	if (!ns->dirty) {
		ns->dirty = true;
		ns->dirty_next = hub->dirty;
		hub->dirty = ns;
	}
	arm_flush(hub);
}

static bool id_in(const int64_t *v, size_t n, int64_t id)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (v[mid] == id)
			return true;
		if (v[mid] < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

/* Whether the forward or tunnel exists: the cached set, else the store
 * (one created since the last refresh), which then joins the set. */
static bool obj_known(struct fg_hub *hub, uint8_t kind, int64_t id)
{
	int64_t **v = kind == K_TUNNEL ? &hub->tun_ids : &hub->fwd_ids;
	size_t *n = kind == K_TUNNEL ? &hub->ntun_ids : &hub->nfwd_ids;
	if (id_in(*v, *n, id))
		return true;
	if (kind == K_TUNNEL) {
		struct fg_tunnel t;
		if (hub->st->ops->tunnel_get(hub->st, id, &t) != 0)
			return false;
		fg_tunnel_deinit(&t);
	} else {
		struct fg_forward f;
		if (hub->st->ops->forward_get(hub->st, id, &f) != 0)
			return false;
		fg_forward_deinit(&f);
	}
	int64_t *ids = fg_realloc(*v, (*n + 1) * sizeof(*ids));
	if (!ids)
		return true;
	size_t i = *n;
	while (i > 0 && ids[i - 1] > id) {
		ids[i] = ids[i - 1];
		i--;
	}
	ids[i] = id;
	*v = ids;
	(*n)++;
	return true;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

/* Re-reads which forwards and tunnels exist (after a refresh: one may be
 * gone). */
static int load_fwd_ids(struct fg_hub *hub)
{
	struct fg_forward *v = NULL;
	struct fg_tunnel *tv = NULL;
	size_t n = 0, tn = 0;
	int rc = hub->st->ops->forward_list(hub->st, &v, &n);
	if (rc)
		return rc;
	rc = hub->st->ops->tunnel_list(hub->st, &tv, &tn);
	if (rc) {
		fg_forward_list_free(v, n);
		return rc;
	}
	int64_t *ids = fg_calloc(n + 1, sizeof(*ids)), *tids = fg_calloc(tn + 1, sizeof(*tids));
	if (!ids || !tids) {
		fg_free(ids);
		fg_free(tids);
		fg_forward_list_free(v, n);
		fg_tunnel_list_free(tv, tn);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++)
		ids[i] = v[i].id;
	for (size_t i = 0; i < tn; i++)
		tids[i] = tv[i].id;
	fg_forward_list_free(v, n);
	fg_tunnel_list_free(tv, tn);
	qsort(ids, n, sizeof(*ids), cmp_i64);
	qsort(tids, tn, sizeof(*tids), cmp_i64);
	fg_free(hub->fwd_ids);
	hub->fwd_ids = ids;
	hub->nfwd_ids = n;
	fg_free(hub->tun_ids);
	hub->tun_ids = tids;
	hub->ntun_ids = tn;
	return 0;
}

static int send_text(struct session *s, char *text)
{
	if (!text)
		return -ENOMEM;
	int rc = fg_ws_send_text(s->ws, text, strlen(text));
	free(text);
	if (rc == 0) {
		s->hub->m_msgs_out++;
	} else if (rc != -EPIPE) {
		fg_warn("hub: node %lld: cannot send (%s), closing the session",
			(long long)s->ns->id, strerror(-rc));
		fg_ws_close(s->ws, 1011, "send failed");
	}
	return rc;
}

/* Writes everything queued in one transaction, then acknowledges the
 * reports it held. On failure nothing is acknowledged: the agents send
 * the same absolute values again, so nothing is lost or counted twice. */
static void flush(struct fg_hub *hub)
{
	struct fg_store *st = hub->st;
	if (!hub->nqc && !hub->dirty && !hub->nqa)
		return;
	hub->m_flushes++;
	bool ok = st->ops->tx_begin(st) == 0;
	for (size_t i = 0; ok && i < hub->nqc; i++) {
		struct qctr *q = &hub->qc[i];
		const char *kind = q->kind == K_TUNNEL ? "tunnel" : "forward";
		if (!obj_known(hub, q->kind, q->fwd_id)) { /* deleted meanwhile */
			hub->m_counters_dropped++;
			continue;
		}
		int rc = st->ops->record_counters(st, kind, q->fwd_id, q->node_id, q->boot_id,
						  &q->abs, q->ts, NULL);
		if (rc == -ERANGE || rc == -EINVAL) {
			fg_log_rl(FG_LOG_WARN, "hub: node %lld %s %lld: counters refused: %s",
				  (long long)q->node_id, kind, (long long)q->fwd_id, strerror(-rc));
			hub->m_counters_dropped++;
		} else if (rc) {
			fg_err("hub: store: recording counters: %s", strerror(-rc));
			ok = false;
		} else {
			hub->m_counters++;
		}
	}
	struct nstate *dirty = hub->dirty;
	for (struct nstate *ns = dirty; ok && ns; ns = ns->dirty_next) {
		struct fg_node_live live = {
		    .online = ns->online,
		    .last_seen = ns->last_seen,
		    .applied_rev = ns->applied_rev,
		    .errors = ns->errors_dirty ? (ns->errors ? ns->errors : "") : NULL,
		};
		if (ns->hello) {
			live.version = json_string_value(json_object_get(ns->hello, "version"));
			live.hostname = json_string_value(json_object_get(ns->hello, "hostname"));
			live.boot_id = json_string_value(json_object_get(ns->hello, "boot_id"));
		}
		int rc = st->ops->node_set_live(st, ns->id, &live);
		if (rc && rc != -ENOENT) { /* -ENOENT: deleted meanwhile */
			fg_err("hub: store: node %lld liveness: %s", (long long)ns->id,
			       strerror(-rc));
			ok = false;
		}
	}
	if (ok && st->ops->tx_commit(st) != 0) {
		fg_err("hub: store: commit failed, reports will be taken again");
		ok = false;
	}
	if (!ok) {
		hub->m_flush_err++;
		st->ops->tx_rollback(st);
		/* nothing queued reached the store: write every value again */
		for (size_t i = 0; i < hub->cap; i++)
			for (uint32_t k = 0; hub->slots[i] && k < hub->slots[i]->nfl; k++)
				hub->slots[i]->fl[k].stored_ok = false;
	}
	/* Liveness is re-queued on failure (it is state, not an event);
	 * counters and acks are dropped: the agents resend. */
	hub->dirty = NULL;
	for (struct nstate *ns = dirty, *next; ns; ns = next) {
		next = ns->dirty_next;
		ns->dirty = false;
		ns->dirty_next = NULL;
		if (ok) {
			json_decref(ns->hello);
			ns->hello = NULL;
			ns->errors_dirty = false;
		} else {
			mark_dirty(hub, ns);
		}
	}
	for (size_t i = 0; i < hub->nqa; i++) {
		struct qack *a = &hub->qa[i];
		struct session *s = a->ns->s;
		/* a failed write is answered too, so the agent sends the same
		 * absolute values again at its next tick instead of waiting */
		if (s && s->serial == a->serial)
			send_text(s, ok ? fg_rpc_result(a->id, json_object())
					: fg_rpc_error(a->id, FG_RPC_INTERNAL_ERROR,
						       "report not stored (store write failed), "
						       "send it again"));
		json_decref(a->id);
	}
	hub->nqa = 0;
	hub->nqc = 0;
	/* give the memory of a burst back */
	if (hub->capqc > 4096) {
		fg_free(hub->qc);
		hub->qc = NULL;
		hub->capqc = 0;
	}
}

static int grow(void **v, size_t *cap, size_t need, size_t elem)
{
	if (need <= *cap)
		return 0;
	size_t ncap = *cap ? *cap * 2 : 64;
	while (ncap < need)
		ncap *= 2;
	void *p = fg_realloc(*v, ncap * elem);
	if (!p)
		return -ENOMEM;
	*v = p;
	*cap = ncap;
	return 0;
}

/* ---- desired state --------------------------------------------------- */

/* Compiles the node's document; bumps desired_rev when it differs from the
 * last one compiled (or when none was compiled since the server started:
 * the hub cannot know what the stored revision held). Returns 0 with
 * *text (owned) or a negative errno. */
static int compile(struct fg_hub *hub, struct nstate *ns, char **text)
{
	json_t *state;
	unsigned char h[FG_DESIRED_HASH_LEN];
	int rc = fg_desired_compile_ex(hub->st, hub->secret, ns->id, &state, text);
	if (rc)
		return rc;
	json_decref(state);
	fg_desired_hash(*text, h);
	if (ns->hash_known && memcmp(h, ns->hash, sizeof(h)) == 0)
		return 0;
	int64_t rev;
	if ((rc = hub->st->ops->node_bump_desired_rev(hub->st, ns->id, &rev))) {
		free(*text);
		*text = NULL;
		return rc;
	}
	memcpy(ns->hash, h, sizeof(h));
	ns->hash_known = true;
	ns->desired_rev = rev;
	return 0;
}

static void push_apply(struct session *s, const char *state_text)
{
	struct fg_strbuf b;
	fg_strbuf_init(&b);
	int64_t id = s->next_id++;
	fg_strbuf_printf(&b,
			 "{\"jsonrpc\":\"2.0\",\"method\":\"apply\",\"params\":{\"rev\":%lld,"
			 "\"state\":",
			 (long long)s->ns->desired_rev);
	fg_strbuf_puts(&b, state_text);
	fg_strbuf_printf(&b, "},\"id\":%lld}", (long long)id);
	if (b.oom) {
		fg_strbuf_deinit(&b);
		fg_ws_close(s->ws, 1011, "out of memory");
		return;
	}
	char *text = b.s; /* send_text frees with free(): strbuf memory is malloc'd */
	b.s = NULL;
	fg_strbuf_deinit(&b);
	if (send_text(s, text) == 0) {
		s->apply_id = id;
		s->apply_rev = s->ns->desired_rev;
		s->hub->m_applies++;
		fg_dbg("hub: node %lld: apply rev %lld sent", (long long)s->ns->id,
		       (long long)s->apply_rev);
	}
}

/* ---- messages -------------------------------------------------------- */

static void reply_error(struct session *s, const json_t *id, int code, const char *msg)
{
	s->hub->m_proto_err++;
	fg_log_rl(FG_LOG_WARN, "hub: node %lld: %s", (long long)s->ns->id, msg);
	if (id) /* notifications get no answer, even an error */
		send_text(s, fg_rpc_error(id, code, msg));
}

/* The failing entries of a status list as JSON text, NULL if none. */
static char *errors_of(const json_t *status)
{
	json_t *out = json_array();
	size_t i;
	json_t *v;
	char tmp[FG_RPC_ERR_MAX];
	json_array_foreach(status, i, v)
	{
		struct fg_status_rec r;
		if (fg_status_decode(v, "status", &r, tmp, sizeof(tmp)) || r.ok)
			continue;
		json_t *e =
		    json_pack("{s:s,s:s,s:s}", "kind", r.kind, "name", r.name, "error", r.error);
		if (e && r.id)
			json_object_set_new(e, "id", json_integer(r.id));
		json_array_append_new(out, e);
	}
	char *text = json_array_size(out) ? json_dumps(out, JSON_COMPACT) : NULL;
	json_decref(out);
	return text;
}

static void set_errors(struct fg_hub *hub, struct nstate *ns, char *errors)
{
	bool same =
	    (!errors && !ns->errors) || (errors && ns->errors && strcmp(errors, ns->errors) == 0);
	if (same) {
		free(errors);
		return;
	}
	fg_free(ns->errors);
	ns->errors = errors ? fg_strdup(errors) : NULL;
	free(errors);
	ns->errors_dirty = true;
	mark_dirty(hub, ns);
}

/* The node's tunnel peers dial it by its address and pin its
 * fingerprint: when either changed, their states are compiled again. */
static void refresh_tunnel_peers(struct fg_hub *hub, int64_t node_id)
{
	struct fg_store *st = hub->st;
	struct fg_tunnel *v;
	size_t n, cnt = 0, cap = 0;
	int64_t *ids = NULL;
	if (st->ops->tunnels_for_node(st, node_id, &v, &n) != 0 || n == 0)
		return;
	for (size_t i = 0; i < n; i++) {
		int64_t *members = NULL, one = v[i].entry_node_id;
		size_t nm = 0;
		if (v[i].entry_group_id > 0)
			st->ops->group_members(st, v[i].entry_group_id, &members, &nm);
		size_t total = (one > 0) + nm + v[i].nnodes;
		if (grow((void **)&ids, &cap, cnt + total, sizeof(*ids)) == 0) {
			if (one > 0)
				ids[cnt++] = one;
			for (size_t k = 0; k < nm; k++)
				ids[cnt++] = members[k];
			for (size_t k = 0; k < v[i].nnodes; k++)
				ids[cnt++] = v[i].nodes[k];
		}
		fg_free(members);
	}
	fg_tunnel_list_free(v, n);
	size_t w = 0; /* the node itself compiles after its hello */
	for (size_t i = 0; i < cnt; i++)
		if (ids[i] != node_id)
			ids[w++] = ids[i];
	if (w)
		fg_hub_refresh(hub, ids, w);
	fg_free(ids);
}

static void on_hello(struct session *s, struct fg_rpc_msg *m)
{
	struct fg_hub *hub = s->hub;
	struct nstate *ns = s->ns;
	struct fg_hello h;
	char err[FG_RPC_ERR_MAX];
	int rc;
	if (s->hello_done) {
		reply_error(s, m->id, FG_RPC_INVALID_REQUEST, "hello: already done");
		return;
	}
	if ((rc = fg_hello_decode(m->params, &h, err, sizeof(err)))) {
		reply_error(s, m->id, rc, err);
		return;
	}
	struct fg_node node;
	if ((rc = hub->st->ops->node_get(hub->st, ns->id, &node))) {
		reply_error(s, m->id, FG_RPC_INTERNAL_ERROR, "hello: node not found");
		fg_ws_close(s->ws, 4001, "node deleted");
		return;
	}
	s->hello_done = true;
	ns->no_tunnels = true;
	size_t ci;
	json_t *cv;
	json_array_foreach(h.capabilities, ci, cv)
	{
		if (strcmp(json_string_value(cv), "tunnel") == 0)
			ns->no_tunnels = false;
	}
	/* where peers reach it and what they pin: written at once (not
	 * batched), the peers' states depend on it */
	const char *fp = h.fingerprint[0] ? h.fingerprint : NULL;
	const char *peer = s->peer[0] ? s->peer : NULL;
	bool peers_changed = (fp && strcmp(fp, node.fingerprint) != 0) ||
			     (peer && strcmp(peer, node.seen_address) != 0);
	if (peers_changed && (rc = hub->st->ops->node_set_peer(hub->st, ns->id, peer, fp))) {
		fg_err("hub: node %lld: cannot store its address/fingerprint: %s",
		       (long long)ns->id, strerror(-rc));
		peers_changed = false;
	}
	if (peers_changed)
		fg_info("hub: node %lld (%s): address %s, certificate %s", (long long)ns->id,
			node.name, peer ? peer : node.seen_address,
			fp ? fp : (node.fingerprint[0] ? node.fingerprint : "(none sent)"));
	snprintf(ns->boot_id, sizeof(ns->boot_id), "%s", h.boot_id);
	ns->applied_rev = h.applied_rev;
	ns->last_seen = wall_now();
	ns->online = true;
	json_decref(ns->fw); /* a new boot: counters restart */
	ns->fw = NULL;
	fl_clear(ns);
	json_decref(ns->hello);
	ns->hello = json_incref(m->params);
	mark_dirty(hub, ns);
	fg_info("hub: node %lld (%s): connected, agent %s on %s, boot %s, applied rev %lld",
		(long long)ns->id, node.name, h.version, h.hostname, h.boot_id,
		(long long)h.applied_rev);
	if (m->id)
		send_text(s,
			  fg_rpc_result(m->id, json_pack("{s:{s:I,s:s},s:I}", "node", "id",
							 (json_int_t)ns->id, "name", node.name,
							 "server_time", (json_int_t)wall_now())));
	fg_node_deinit(&node);
	if (peers_changed)
		refresh_tunnel_peers(hub, ns->id);

	char *text = NULL;
	if ((rc = compile(hub, ns, &text))) {
		fg_err("hub: node %lld: cannot compile its desired state: %s", (long long)ns->id,
		       strerror(-rc));
		return;
	}
	if (h.applied_rev != ns->desired_rev)
		push_apply(s, text);
	free(text);
}

static struct fwd_live *fwd_live_get(struct nstate *ns, uint8_t kind, int64_t fwd_id)
{
	for (uint32_t i = 0; i < ns->nfl; i++)
		if (ns->fl[i].fwd_id == fwd_id && ns->fl[i].kind == kind)
			return &ns->fl[i];
	if (ns->nfl == ns->capfl) {
		uint32_t ncap = ns->capfl ? ns->capfl * 2 : 4;
		struct fwd_live *p = fg_realloc(ns->fl, ncap * sizeof(*p));
		if (!p)
			return NULL;
		ns->fl = p;
		ns->capfl = ncap;
	}
	struct fwd_live *f = &ns->fl[ns->nfl++];
	memset(f, 0, sizeof(*f));
	f->kind = kind;
	f->fwd_id = fwd_id;
	f->links_up = f->rtt_prev_us = f->rtt_next_us = -1;
	return f;
}

static void on_report(struct session *s, struct fg_rpc_msg *m)
{
	struct fg_hub *hub = s->hub;
	struct nstate *ns = s->ns;
	struct fg_report r;
	char err[FG_RPC_ERR_MAX];
	int rc;
	if (!s->hello_done) {
		reply_error(s, m->id, FG_RPC_NO_HELLO, "report: send hello first");
		return;
	}
	if ((rc = fg_report_decode(m->params, &r, err, sizeof(err)))) {
		reply_error(s, m->id, rc, err);
		return;
	}
	int64_t now = wall_now(), tnow = fg_loop_now(hub->loop);
	bool current = strcmp(r.boot_id, ns->boot_id) == 0;
	size_t n = r.counters ? json_array_size(r.counters) : 0;
	if (grow((void **)&hub->qc, &hub->capqc, hub->nqc + n, sizeof(*hub->qc)) ||
	    grow((void **)&hub->qa, &hub->capqa, hub->nqa + 1, sizeof(*hub->qa))) {
		reply_error(s, m->id, FG_RPC_INTERNAL_ERROR, "report: server out of memory");
		return;
	}
	for (size_t i = 0; i < n; i++) {
		struct fg_counter_rec c;
		fg_counter_decode(json_array_get(r.counters, i), "counters", &c, err, sizeof(err));
		uint8_t kind;
		if (strcmp(c.kind, "forward") == 0)
			kind = K_FORWARD;
		else if (strcmp(c.kind, "tunnel") == 0)
			kind = K_TUNNEL;
		else
			continue; /* kinds this server does not count yet */
		struct fg_counters abs = {c.bytes_up, c.bytes_down, c.conns};
		struct fwd_live *f = current ? fwd_live_get(ns, kind, c.id) : NULL;
		if (f) {
			f->prev = f->abs;
			f->prev_t_ns = f->t_ns;
			f->abs = abs;
			f->active = c.active;
			f->t_ns = tnow;
			f->ts = now;
			f->links_up = c.links_up;
			f->rtt_prev_us = c.rtt_prev_us;
			f->rtt_next_us = c.rtt_next_us;
			/* a warning lasts exactly as long as the agent says it:
			 * the next report without one clears it */
			if (!c.warn[0] || !f->warn || strcmp(f->warn, c.warn) != 0) {
				fg_free(f->warn);
				f->warn = c.warn[0] ? fg_strdup(c.warn) : NULL;
			}
			if (f->stored_ok && !memcmp(&f->stored, &abs, sizeof(abs)))
				continue; /* nothing moved: the delta would be 0 */
			f->stored = abs;
			f->stored_ok = true;
		}
		struct qctr *q = &hub->qc[hub->nqc++];
		q->kind = kind;
		q->node_id = ns->id;
		q->fwd_id = c.id;
		q->ts = now;
		q->abs = abs;
		snprintf(q->boot_id, sizeof(q->boot_id), "%s", r.boot_id);
	}
	if (m->id) {
		struct qack *a = &hub->qa[hub->nqa++];
		a->ns = ns;
		a->serial = s->serial;
		a->id = json_incref(m->id);
	}
	if (current) {
		if (r.firewall) {
			json_decref(ns->fw);
			ns->fw = json_incref((json_t *)r.firewall);
			ns->fw_ts = now;
		}
		if (r.applied_rev >= 0)
			ns->applied_rev = r.applied_rev;
		if (r.status)
			set_errors(hub, ns, errors_of(r.status));
	}
	ns->last_seen = now;
	mark_dirty(hub, ns);
}

static struct task *task_unlink(struct fg_hub *hub, struct task *t)
{
	for (struct task **pp = &hub->tasks; *pp; pp = &(*pp)->next) {
		if (*pp == t) {
			*pp = t->next;
			fg_timer_stop(hub->loop, &t->timer);
			return t;
		}
	}
	return NULL;
}

/* Ends t: unlinked first, so a cb that cancels or starts tasks is safe. */
static void task_finish(struct task *t, const json_t *result, const char *err)
{
	struct fg_hub *hub = t->hub;
	task_unlink(hub, t);
	t->cb(t->arg, result, err);
	fg_free(t);
}

static void task_timer_cb(struct fg_loop *loop, struct fg_timer *tm)
{
	struct task *t = tm->data;
	fg_warn("hub: node %lld: task timed out", (long long)t->s->ns->id);
	task_finish(t, NULL, "the agent did not answer in time");
}

/* The answer to one of our task requests, if it is one. */
static bool on_task_answer(struct session *s, struct fg_rpc_msg *m)
{
	for (struct task *t = s->hub->tasks; t; t = t->next) {
		if (t->s != s || m->id_int <= 0 || t->req_id != m->id_int)
			continue;
		if (m->kind == FG_RPC_ERROR)
			task_finish(t, NULL, m->err_message);
		else
			task_finish(t, m->result, NULL);
		return true;
	}
	return false;
}

static void on_apply_answer(struct session *s, struct fg_rpc_msg *m)
{
	struct fg_hub *hub = s->hub;
	struct nstate *ns = s->ns;
	char err[FG_RPC_ERR_MAX];
	if (m->id_int <= 0 || m->id_int != s->apply_id) {
		fg_log_rl(FG_LOG_WARN, "hub: node %lld: answer to unknown request id dropped",
			  (long long)ns->id);
		return;
	}
	s->apply_id = 0;
	ns->last_seen = wall_now();
	if (m->kind == FG_RPC_ERROR) {
		hub->m_apply_err++;
		fg_warn("hub: node %lld: apply rev %lld refused: %s", (long long)ns->id,
			(long long)s->apply_rev, m->err_message);
		json_t *e = json_pack("[{s:s,s:s}]", "kind", "state", "error", m->err_message);
		set_errors(hub, ns, e ? json_dumps(e, JSON_COMPACT) : NULL);
		json_decref(e);
		mark_dirty(hub, ns);
		return;
	}
	struct fg_apply_result ar;
	if (fg_apply_result_decode(m->result, &ar, err, sizeof(err))) {
		hub->m_proto_err++;
		fg_warn("hub: node %lld: bad apply result: %s", (long long)ns->id, err);
		return;
	}
	hub->m_apply_ok++;
	ns->applied_rev = ar.rev;
	char *errors = ar.status ? errors_of(ar.status) : NULL;
	/* one line per node per change is noise in a large fleet: only
	 * failures are worth an operator's eye */
	if (errors)
		fg_warn("hub: node %lld: applied rev %lld with errors: %s", (long long)ns->id,
			(long long)ar.rev, errors);
	else
		fg_dbg("hub: node %lld: applied rev %lld", (long long)ns->id, (long long)ar.rev);
	set_errors(hub, ns, errors);
	mark_dirty(hub, ns);
}

static void on_text(struct fg_ws *ws, const char *data, size_t len, void *user)
{
	struct session *s = user;
	struct fg_rpc_msg m;
	char err[FG_RPC_ERR_MAX];
	s->hub->m_msgs_in++;
	int rc = fg_rpc_decode(data, len, &m, err, sizeof(err));
	if (rc) {
		/* unreadable: answer to its id when one was readable, else to
		 * null (JSON-RPC's rule for parse errors) */
		s->hub->m_proto_err++;
		fg_log_rl(FG_LOG_WARN, "hub: node %lld: bad message: %s", (long long)s->ns->id,
			  err);
		send_text(s, fg_rpc_error(m.id, rc, err));
		fg_rpc_msg_deinit(&m);
		return;
	}
	switch (m.kind) {
	case FG_RPC_REQUEST:
	case FG_RPC_NOTIFY:
		if (strcmp(m.method, "hello") == 0)
			on_hello(s, &m);
		else if (strcmp(m.method, "report") == 0)
			on_report(s, &m);
		else {
			snprintf(err, sizeof(err), "unknown method \"%.64s\"", m.method);
			reply_error(s, m.id, FG_RPC_METHOD_NOT_FOUND, err);
		}
		break;
	case FG_RPC_RESULT:
	case FG_RPC_ERROR:
		if (!on_task_answer(s, &m))
			on_apply_answer(s, &m);
		break;
	}
	fg_rpc_msg_deinit(&m);
}

static void session_unlink(struct fg_hub *hub, struct session *s)
{
	if (s->prev)
		s->prev->next = s->next;
	else
		hub->sessions = s->next;
	if (s->next)
		s->next->prev = s->prev;
	hub->nsessions--;
}

/* The session ended: the node goes offline unless a newer session of it
 * took over. */
static void session_end(struct session *s, const char *why)
{
	struct fg_hub *hub = s->hub;
	struct nstate *ns = s->ns;
	if (ns->s == s) {
		ns->s = NULL;
		ns->online = false;
		if (s->hello_done)
			ns->last_seen = wall_now();
		mark_dirty(hub, ns);
		fg_info("hub: node %lld: disconnected: %s", (long long)ns->id, why);
	}
	session_unlink(hub, s);
	for (struct task *t = hub->tasks, *next; t; t = next) {
		next = t->next;
		if (t->s == s)
			task_finish(t, NULL, "the node disconnected");
	}
	if (s->done)
		s->done(s->done_arg);
	fg_free(s);
}

static void on_close(struct fg_ws *ws, int code, const char *err, void *user)
{
	struct session *s = user;
	char why[96];
	snprintf(why, sizeof(why), "%s (code %d)", err ? err : "closed", code);
	fg_ws_free(ws);
	session_end(s, why);
}

static const struct fg_ws_cbs hub_cbs = {.on_text = on_text, .on_close = on_close};

/* ---- public ---------------------------------------------------------- */

struct fg_hub *fg_hub_new(struct fg_loop *loop, struct fg_store *st, const struct fg_hub_opts *o)
{
	struct fg_hub *hub = fg_calloc(1, sizeof(*hub));
	if (!hub)
		return NULL;
	hub->loop = loop;
	hub->st = st;
	hub->secret = o ? o->secret : NULL;
	int64_t ping = o && o->ping_interval_ns > 0 ? o->ping_interval_ns : DEFAULT_PING_NS;
	hub->wsopts.ping_interval_ns = ping;
	hub->wsopts.ping_timeout_ns = ping * MISSED_PINGS;
	hub->flush_ns = o && o->flush_interval_ns > 0 ? o->flush_interval_ns : DEFAULT_FLUSH_NS;
	hub->next_serial = 1;
	fg_timer_init(&hub->flush_timer, flush_timer_cb, hub);

	/* no session survives a restart: whatever the store says, every
	 * node is offline until it says hello */
	struct fg_node *nodes = NULL;
	size_t n = 0;
	int rc = st->ops->node_list(st, &nodes, &n);
	if (!rc && (rc = st->ops->tx_begin(st)) == 0) {
		for (size_t i = 0; !rc && i < n; i++) {
			if (!nodes[i].online)
				continue;
			struct fg_node_live live = {
			    .online = false, .last_seen = nodes[i].last_seen, .applied_rev = -1};
			rc = st->ops->node_set_live(st, nodes[i].id, &live);
		}
		if (!rc)
			rc = st->ops->tx_commit(st);
		if (rc)
			st->ops->tx_rollback(st);
	}
	fg_node_list_free(nodes, n);
	if (!rc)
		rc = load_fwd_ids(hub);
	if (rc) {
		fg_err("hub: store: %s", strerror(-rc));
		fg_free(hub);
		return NULL;
	}
	return hub;
}

void fg_hub_free(struct fg_hub *hub)
{
	if (!hub)
		return;
	while (hub->sessions) {
		struct session *s = hub->sessions;
		fg_ws_free(s->ws); /* on_close will not come */
		session_end(s, "server stopping");
	}
	flush(hub);
	fg_timer_stop(hub->loop, &hub->flush_timer);
	for (size_t i = 0; i < hub->cap; i++)
		if (hub->slots[i])
			nstate_free(hub->slots[i]);
	fg_free(hub->slots);
	fg_free(hub->fwd_ids);
	fg_free(hub->tun_ids);
	fg_free(hub->qc);
	fg_free(hub->qa);
	fg_free(hub);
}

int fg_hub_authenticate(struct fg_hub *hub, const char *token, int64_t *node_id)
{
	char hash[FG_STORE_HASH_LEN + 1];
	struct fg_node n;
	size_t plen = strlen(FG_TOKEN_PREFIX_NODE);
	if (!token || strncmp(token, FG_TOKEN_PREFIX_NODE, plen) != 0)
		return -EACCES;
	fg_auth_token_hash(token, hash);
	if (hub->st->ops->node_get_by_token(hub->st, hash, &n) != 0)
		return -EACCES;
	*node_id = n.id;
	fg_node_deinit(&n);
	return 0;
}

static void done_deferred(void *data)
{
	struct session *s = data; /* a session that never started */
	if (s->done)
		s->done(s->done_arg);
	fg_free(s);
}

void fg_hub_attach(struct fg_hub *hub, int64_t node_id, int fd, const void *early, size_t early_len,
		   void (*done)(void *done_arg), void *done_arg)
{
	struct nstate *ns = node_get(hub, node_id);
	struct session *s = fg_calloc(1, sizeof(*s));
	if (!ns || !s) {
		fg_err("hub: node %lld: out of memory, session refused", (long long)node_id);
		close(fd);
		fg_free(s);
		if (done)
			done(done_arg);
		return;
	}
	s->hub = hub;
	s->ns = ns;
	s->serial = hub->next_serial++;
	s->next_id = 1;
	s->done = done;
	s->done_arg = done_arg;
	struct sockaddr_storage sa;
	socklen_t salen = sizeof(sa);
	if (getpeername(fd, (struct sockaddr *)&sa, &salen) == 0) {
		fg_addr_unmap(&sa);
		if (sa.ss_family == AF_INET)
			inet_ntop(AF_INET, &((struct sockaddr_in *)&sa)->sin_addr, s->peer,
				  sizeof(s->peer));
		else if (sa.ss_family == AF_INET6)
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&sa)->sin6_addr, s->peer,
				  sizeof(s->peer));
	}
	s->ws = fg_ws_new_ex(hub->loop, fd, false, &hub_cbs, &hub->wsopts, early, early_len, s);
	if (!s->ws) {
		fg_err("hub: node %lld: cannot start the session", (long long)node_id);
		/* done must not run inside the caller's own call */
		if (fg_loop_defer(hub->loop, done_deferred, s) < 0)
			done_deferred(s);
		return;
	}
	if (ns->s) {
		fg_info("hub: node %lld: new session replaces the old one", (long long)node_id);
		struct session *old = ns->s;
		ns->s = NULL; /* its end must not mark the node offline */
		fg_ws_close(old->ws, 4000, "replaced by a new session");
	}
	ns->s = s;
	s->next = hub->sessions;
	if (hub->sessions)
		hub->sessions->prev = s;
	hub->sessions = s;
	hub->nsessions++;
	hub->m_accepted++;
}

int fg_hub_refresh(struct fg_hub *hub, const int64_t *node_ids, size_t n)
{
	int rc = load_fwd_ids(hub), first = rc;
	for (size_t i = 0; i < n; i++) {
		struct nstate *ns = node_get(hub, node_ids[i]);
		if (!ns)
			return -ENOMEM;
		int64_t before = ns->desired_rev;
		char *text = NULL;
		rc = compile(hub, ns, &text);
		if (rc == -ENOENT)
			continue; /* no such node */
		if (rc) {
			fg_err("hub: node %lld: cannot compile its desired state: %s",
			       (long long)ns->id, strerror(-rc));
			if (!first)
				first = rc;
			continue;
		}
		if (ns->desired_rev != before && ns->s && ns->s->hello_done) {
			fg_dbg("hub: node %lld: desired rev %lld", (long long)ns->id,
			       (long long)ns->desired_rev);
			push_apply(ns->s, text);
		}
		free(text);
	}
	return first;
}

int64_t fg_hub_task(struct fg_hub *hub, int64_t node_id, json_t *params, int64_t timeout_ns,
		    fg_hub_task_cb cb, void *arg)
{
	struct nstate *ns = node_find(hub, node_id);
	struct session *s = ns ? ns->s : NULL;
	if (!s || !s->hello_done) {
		json_decref(params);
		return -ENOTCONN;
	}
	struct task *t = fg_calloc(1, sizeof(*t));
	if (!t) {
		json_decref(params);
		return -ENOMEM;
	}
	t->hub = hub;
	t->handle = ++hub->next_task;
	t->s = s;
	t->req_id = s->next_id++;
	t->cb = cb;
	t->arg = arg;
	fg_timer_init(&t->timer, task_timer_cb, t);
	int rc = send_text(s, fg_rpc_request("task", params, t->req_id));
	if (rc < 0) {
		fg_free(t);
		return rc == -ENOMEM ? -ENOMEM : -ENOTCONN;
	}
	t->next = hub->tasks;
	hub->tasks = t;
	fg_timer_start(hub->loop, &t->timer, timeout_ns > 0 ? timeout_ns : 10 * FG_NS_PER_SEC);
	return t->handle;
}

void fg_hub_task_cancel(struct fg_hub *hub, int64_t handle)
{
	for (struct task *t = hub->tasks; t; t = t->next) {
		if (t->handle == handle) {
			task_unlink(hub, t);
			fg_free(t);
			return;
		}
	}
}

void fg_hub_kick(struct fg_hub *hub, int64_t node_id)
{
	struct nstate *ns = node_find(hub, node_id);
	if (ns && ns->s)
		fg_ws_close(ns->s->ws, 4001, "node deleted");
	if (ns)
		ns->hash_known = false;
}

const json_t *fg_hub_node_firewall(const struct fg_hub *hub, int64_t node_id, int64_t *ts)
{
	const struct nstate *ns = node_find(hub, node_id);
	if (!ns || !ns->fw)
		return NULL;
	if (ts)
		*ts = ns->fw_ts;
	return ns->fw;
}

static json_t *ms_or_null(int64_t us)
{
	return us >= 0 ? json_real((double)us / 1000.0) : json_null();
}

/* A tunnel's link health on its live entry, named as in the API's path
 * view (doc/api.md) so the UI can lay it over the path between re-reads. */
static void add_live_links(json_t *c, const struct fwd_live *f)
{
	json_object_set_new(c, "links_up",
			    f->links_up >= 0 ? json_integer(f->links_up) : json_null());
	json_object_set_new(c, "rtt_prev_ms", ms_or_null(f->rtt_prev_us));
	json_object_set_new(c, "rtt_next_ms", ms_or_null(f->rtt_next_us));
	json_object_set_new(c, "warn", json_string(f->warn ? f->warn : ""));
}

int fg_hub_tunnel_links(const struct fg_hub *hub, int64_t node_id, int64_t tunnel_id,
			struct fg_hub_tunnel_links *out)
{
	const struct nstate *ns = node_find(hub, node_id);
	out->links_up = out->rtt_prev_us = out->rtt_next_us = -1;
	out->warn = "";
	out->ts = 0;
	for (uint32_t i = 0; ns && i < ns->nfl; i++) {
		const struct fwd_live *f = &ns->fl[i];
		if (f->kind != K_TUNNEL || f->fwd_id != tunnel_id)
			continue;
		out->links_up = f->links_up;
		out->rtt_prev_us = f->rtt_prev_us;
		out->rtt_next_us = f->rtt_next_us;
		out->warn = f->warn ? f->warn : "";
		out->ts = f->ts;
		return 0;
	}
	return -ENOENT;
}

bool fg_hub_node_revs(const struct fg_hub *hub, int64_t node_id, int64_t *applied, int64_t *desired)
{
	const struct nstate *ns = node_find(hub, node_id);
	if (!ns || ns->desired_rev < 0)
		return false;
	*applied = ns->applied_rev;
	*desired = ns->desired_rev;
	return true;
}

bool fg_hub_online(const struct fg_hub *hub, int64_t node_id)
{
	const struct nstate *ns = node_find(hub, node_id);
	return ns && ns->s;
}

bool fg_hub_runs_tunnels(const struct fg_hub *hub, int64_t node_id)
{
	const struct nstate *ns = node_find(hub, node_id);
	return !ns || !ns->s || !ns->s->hello_done || !ns->no_tunnels;
}

size_t fg_hub_sessions(const struct fg_hub *hub)
{
	return hub->nsessions;
}

void fg_hub_metrics(const struct fg_hub *hub, struct fg_strbuf *out)
{
	static const char *const none[] = {NULL};
	const struct {
		const char *name, *type, *help;
		uint64_t v;
	} m[] = {
	    {"flowgate_hub_sessions", "gauge", "Agent sessions attached.", hub->nsessions},
	    {"flowgate_hub_sessions_total", "counter", "Agent sessions accepted.", hub->m_accepted},
	    {"flowgate_hub_messages_received_total", "counter", "Messages from agents.",
	     hub->m_msgs_in},
	    {"flowgate_hub_messages_sent_total", "counter", "Messages to agents.", hub->m_msgs_out},
	    {"flowgate_hub_protocol_errors_total", "counter",
	     "Malformed or refused messages from agents.", hub->m_proto_err},
	    {"flowgate_hub_applies_sent_total", "counter", "Desired states pushed.",
	     hub->m_applies},
	    {"flowgate_hub_applies_ok_total", "counter", "Desired states the agents applied.",
	     hub->m_apply_ok},
	    {"flowgate_hub_applies_refused_total", "counter",
	     "Desired states the agents refused as a whole.", hub->m_apply_err},
	    {"flowgate_hub_flushes_total", "counter", "Batched store writes.", hub->m_flushes},
	    {"flowgate_hub_flush_errors_total", "counter",
	     "Batched store writes that failed (reports taken again).", hub->m_flush_err},
	    {"flowgate_hub_counters_recorded_total", "counter",
	     "Counter reports written to the store.", hub->m_counters},
	    {"flowgate_hub_counters_dropped_total", "counter",
	     "Counter reports of unknown objects or out of range.", hub->m_counters_dropped},
	};
	for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++) {
		fg_prom_family(out, m[i].name, m[i].type, m[i].help);
		fg_prom_sample(out, m[i].name, none, m[i].v);
	}
}

static uint64_t rate(uint64_t now, uint64_t prev, int64_t dt_ns)
{
	if (dt_ns <= 0 || now < prev)
		return 0;
	return (uint64_t)((double)(now - prev) * FG_NS_PER_SEC / (double)dt_ns);
}

json_t *fg_hub_live(const struct fg_hub *hub)
{
	json_t *nodes = json_object(), *fwds = json_object(), *tuns = json_object();
	json_t *out = json_pack("{s:o,s:o,s:o}", "nodes", nodes, "forwards", fwds, "tunnels", tuns);
	if (!out)
		return NULL;
	for (size_t i = 0; i < hub->cap; i++) {
		const struct nstate *ns = hub->slots[i];
		if (!ns || (ns->last_seen == 0 && !ns->s))
			continue;
		char nid[24];
		snprintf(nid, sizeof(nid), "%lld", (long long)ns->id);
		json_error_t je;
		json_t *errors = ns->errors ? json_loads(ns->errors, 0, &je) : NULL;
		json_t *n =
		    json_pack("{s:b,s:I,s:I,s:I,s:s,s:o}", "online", ns->s != NULL, "last_seen",
			      (json_int_t)ns->last_seen, "applied_rev", (json_int_t)ns->applied_rev,
			      "desired_rev", (json_int_t)ns->desired_rev, "boot_id", ns->boot_id,
			      "errors", errors ? errors : json_null());
		if (!n || json_object_set_new(nodes, nid, n))
			goto err;
		for (uint32_t k = 0; k < ns->nfl; k++) {
			const struct fwd_live *f = &ns->fl[k];
			char fid[24];
			snprintf(fid, sizeof(fid), "%lld", (long long)f->fwd_id);
			json_t *map = f->kind == K_TUNNEL ? tuns : fwds;
			json_t *per = json_object_get(map, fid);
			if (!per) {
				per = json_object();
				if (!per || json_object_set_new(map, fid, per))
					goto err;
			}
			int64_t dt = f->prev_t_ns ? f->t_ns - f->prev_t_ns : 0;
			json_t *c = json_pack(
			    "{s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "bytes_up",
			    (json_int_t)f->abs.bytes_up, "bytes_down",
			    (json_int_t)f->abs.bytes_down, "conns", (json_int_t)f->abs.conns,
			    "active", (json_int_t)f->active, "rate_up",
			    (json_int_t)rate(f->abs.bytes_up, f->prev.bytes_up, dt), "rate_down",
			    (json_int_t)rate(f->abs.bytes_down, f->prev.bytes_down, dt), "ts",
			    (json_int_t)f->ts);
			if (c && f->kind == K_TUNNEL)
				add_live_links(c, f);
			if (!c || json_object_set_new(per, nid, c))
				goto err;
		}
	}
	return out;
err:
	json_decref(out);
	return NULL;
}
