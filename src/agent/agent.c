/* The agent: see agent.h and doc/protocol.md. */
#include "agent/agent.h"

#include <errno.h>
#include <jansson.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "agent/state.h"
#include "agent/tunnels.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/dir.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/metrics.h"
#include "core/util.h"
#include "core/work.h"
#include "fwd/config.h"
#include "fwd/engine.h"
#include "kernel/nft.h"
#include "kernel/nft_compile.h"
#include "kernel/plane.h"
#include "kernel/policy.h"
#include "net/rpc.h"
#include "net/tls.h"
#include "net/url.h"
#include "net/ws.h"
#include "tunnel/config.h"

#define DEFAULT_REPORT_NS  (5 * FG_NS_PER_SEC)
#define DEFAULT_BACKOFF_LO (500 * FG_NS_PER_MS)
#define DEFAULT_BACKOFF_HI (30 * FG_NS_PER_SEC)
#define PING_NS		   (10 * FG_NS_PER_SEC)
#define RETRY_FAILED_NS	   (10 * FG_NS_PER_SEC)
#define REPORT_ANSWER_NS   (30 * FG_NS_PER_SEC)
#define CONFIRM_DEFAULT_S  60
#define CERT_FILE	   "node.crt" /* in the state dir: this node's TLS certificate */
#define KEY_FILE	   "node.key"

/* do_apply flags */
#define APPLY_SAVE  0x1 /* write state.json */
#define APPLY_RETRY 0x2 /* the same state again, for forwards that failed: quiet */
#define APPLY_BOOT  0x4 /* the state file at start: no commit-confirm */

enum ctr_kind { K_FORWARD = 0, K_TUNNEL = 1 };

/* Absolute counters of one forward or tunnel (by server id) for this
 * boot. The engines' counters belong to a name and restart from 0 when
 * the name stops running; base carries what earlier names/runs moved, so
 * the sum reported per id never goes down within a boot. */
struct ctr {
	uint8_t kind; /* enum ctr_kind */
	char id[FG_RPC_ID_MAX + 1];
	char name[FG_NAME_MAX + 1]; /* what it runs as, "" when not running */
	struct fg_forward_counters raw;
	uint64_t base_up, base_down, base_conns;
};

enum link_state { L_IDLE, L_RESOLVING, L_CONNECTING, L_HELLO, L_READY };

/* The server's name is looked up on a work thread: getaddrinfo can wait
 * for seconds when DNS is down, and this loop also runs the tunnels and
 * the commit-confirm timer. One lookup at a time; the job lives in the
 * agent. */
struct resolve_job {
	struct fg_agent *a;
	const struct fg_agent_url *u;
	struct addrinfo *res; /* set by the work thread, owned by the job */
	int gai;
};

struct fg_agent {
	struct fg_loop *loop;
	struct fg_engine *engine;
	struct fg_agent_tunnels *tunnels;
	char cert[4096], key[4096];	    /* this node's certificate files */
	char fingerprint[FG_TLS_FP_STRLEN]; /* of cert, sent in hello */
	/* table inet flowgate: firewall policies + engine kernel forwards,
	 * one compile, one transaction (doc/firewall.md) */
	struct fg_kplane *kp;
	unsigned fwd_changed;	      /* IP forwarding sysctls we turned on */
	struct fg_forward_set kset;   /* kernel forwards running (copies) */
	struct fg_nft_counter *kctrs; /* our table's counters, last read */
	size_t nkctrs;
	json_t *fw_run;		 /* firewall section running (NULL = none) */
	json_t *fw_confirmed;	 /* the one at the restore point while unconfirmed */
	int64_t confirm_from_id; /* an answer to a request id >= this confirms */
	int64_t confirm_s;	 /* grace period of the pending change */
	struct fg_timer confirm_timer;
	char *fw_rollback_err; /* the last change was rolled back: why (owned) */
	json_t *fw_rejected;   /* the section that was rolled back */
	char *token, *dir;
	char *pin;		   /* wss:// pin, or NULL */
	struct fg_tls_client *tls; /* for wss:// URLs, or NULL */
	struct fg_agent_url urls[FG_AGENT_MAX_SERVERS];
	size_t nurls, url_idx;
	int64_t report_ns, backoff_lo, backoff_hi, backoff;
	char boot_id[33];
	char hostname[256];

	enum link_state link;
	struct fg_work *resolver; /* made at the first dial */
	struct resolve_job rj;
	struct fg_ws_hs *hs;
	struct fg_ws *ws;
	struct fg_timer retry_timer, report_timer;
	int64_t next_id, hello_id, report_id; /* report_id: current boot's, unanswered */
	int64_t report_sent;		      /* loop time the last report went out */
	int64_t node_id;

	struct fg_pending old; /* earlier boots' final counters, not yet acked */
	int64_t *old_req;      /* per old boot: request id in flight, 0 if none */

	struct ctr *ctrs;
	size_t nctrs, capctrs;
	bool ctrs_dirty; /* changed since pending.json was written */

	int64_t applied_rev;
	json_t *last_result; /* {rev, status} of the last apply */
	json_t *last_params; /* {rev, state} of the last apply */
	size_t nfailed;	     /* forwards of the last apply that could not run */
	int64_t retry_at;    /* loop time of the next retry of those */
	bool stopping;

	uint64_t m_connects, m_applies, m_apply_fail, m_reports;
};

/* ---- URLs ------------------------------------------------------------ */

int fg_agent_url_parse(const char *s, struct fg_agent_url *u, char *err, size_t errlen)
{
	struct fg_url url;
	const char *why = NULL;
	memset(u, 0, sizeof(*u));
	if (fg_url_parse(s, &url, &why) < 0 || !url.ws) {
		snprintf(err, errlen, "\"%.200s\": %s", s,
			 why ? why : "must start with ws:// or wss://");
		return -EINVAL;
	}
	if (strlen(url.path) >= sizeof(u->path)) {
		snprintf(err, errlen, "\"%.200s\": path is too long", s);
		return -EINVAL;
	}
	u->tls = url.tls;
	snprintf(u->host, sizeof(u->host), "%s", url.host);
	snprintf(u->port, sizeof(u->port), "%u", url.port);
	fg_url_authority(&url, u->authority, sizeof(u->authority));
	const char *path = url.path[0] ? url.path : "/agent";
	memcpy(u->path, path, strlen(path) + 1); /* length checked above */
	return 0;
}

/* ---- counters -------------------------------------------------------- */

/* Ids the server understands: a positive decimal integer. */
static bool numeric_id(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 18)
		return false;
	bool nonzero = false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		nonzero |= s[i] != '0';
	}
	return nonzero;
}

static const char *kind_name(uint8_t kind)
{
	return kind == K_TUNNEL ? "tunnel" : "forward";
}

static struct ctr *ctr_find(struct fg_agent *a, uint8_t kind, const char *id)
{
	for (size_t i = 0; i < a->nctrs; i++)
		if (a->ctrs[i].kind == kind && strcmp(a->ctrs[i].id, id) == 0)
			return &a->ctrs[i];
	return NULL;
}

static void ctr_retire(struct ctr *c)
{
	c->base_up += c->raw.bytes_up;
	c->base_down += c->raw.bytes_down;
	c->base_conns += c->raw.conns_total;
	memset(&c->raw, 0, sizeof(c->raw));
}

/* ---- kernel plane ---------------------------------------------------- */

/* Reads our table's named counters once (one netlink dump). */
static void kctrs_refresh(struct fg_agent *a)
{
	char err[1024];
	struct fg_nft_counter *c = NULL;
	size_t n = 0;
	if (!fg_kplane_current(a->kp))
		return;
	if (fg_kplane_counters(a->kp, &c, &n, err, sizeof(err)) < 0) {
		fg_log_rl(FG_LOG_WARN, "agent: kernel counters: %s", err);
		return;
	}
	fg_free(a->kctrs);
	a->kctrs = c;
	a->nkctrs = n;
}

static uint64_t kctr(const struct fg_agent *a, const char *name, bool packets)
{
	for (size_t i = 0; i < a->nkctrs; i++)
		if (strcmp(a->kctrs[i].name, name) == 0)
			return packets ? a->kctrs[i].packets : a->kctrs[i].bytes;
	return 0;
}

/* Counters of a running kernel forward from the last read: nft's L3 bytes
 * and connections (first packets DNATed). -ENOENT if it does not run. */
static int kfwd_bytes(const struct fg_agent *a, const char *name, uint64_t *up, uint64_t *down,
		      uint64_t *conns)
{
	char cn[FG_NAME_MAX + 16];
	for (size_t i = 0; i < a->kset.n; i++) {
		if (strcmp(a->kset.v[i].name, name) != 0)
			continue;
		fg_nft_fwd_counter(name, true, cn, sizeof(cn));
		*up = kctr(a, cn, false);
		fg_nft_fwd_counter(name, false, cn, sizeof(cn));
		*down = kctr(a, cn, false);
		fg_nft_fwd_conns_counter(name, cn, sizeof(cn));
		*conns = kctr(a, cn, true);
		return 0;
	}
	return -ENOENT;
}

/* fg_engine_set_metrics_hook(): the kernel forwards' samples. */
static void kmetrics_cb(void *data, const char *family, struct fg_strbuf *b)
{
	struct fg_agent *a = data;
	if (!a->kset.n)
		return;
	bool bytes = strcmp(family, "flowgate_forward_bytes_total") == 0;
	if (bytes)
		kctrs_refresh(a); /* the first family of a scrape: read once for both */
	else if (strcmp(family, "flowgate_forward_connections_total") != 0)
		return;
	for (size_t i = 0; i < a->kset.n; i++) {
		uint64_t up = 0, down = 0, conns = 0;
		const char *name = a->kset.v[i].name;
		kfwd_bytes(a, name, &up, &down, &conns);
		if (bytes) {
			const char *lu[] = {"forward", name, "direction", "up", NULL};
			const char *ld[] = {"forward", name, "direction", "down", NULL};
			fg_prom_sample(b, family, lu, up);
			fg_prom_sample(b, family, ld, down);
		} else {
			const char *l[] = {"forward", name, NULL};
			fg_prom_sample(b, family, l, conns);
		}
	}
}

/* Reads the running counters of c's name from its engine. */
static int ctr_read(struct fg_agent *a, const struct ctr *c, struct fg_forward_counters *raw)
{
	if (c->kind == K_FORWARD) {
		if (fg_engine_counters(a->engine, c->name, raw) == 0)
			return 0;
		/* an engine kernel forward: nft's L3 bytes (doc/forward.md) */
		memset(raw, 0, sizeof(*raw));
		return kfwd_bytes(a, c->name, &raw->bytes_up, &raw->bytes_down, &raw->conns_total);
	}
	struct fg_agent_tunnel_counters tc;
	int rc = fg_agent_tunnels_counters(a->tunnels, c->name, &tc);
	if (rc)
		return rc;
	memset(raw, 0, sizeof(*raw));
	raw->bytes_up = tc.bytes_up;
	raw->bytes_down = tc.bytes_down;
	raw->conns_total = tc.conns_total;
	raw->conns_active = tc.conns_active;
	return 0;
}

/* Reads the engines' counters of every running forward and tunnel. */
static void sample(struct fg_agent *a)
{
	kctrs_refresh(a);
	for (size_t i = 0; i < a->nctrs; i++) {
		struct ctr *c = &a->ctrs[i];
		struct fg_forward_counters raw;
		if (!c->name[0] || ctr_read(a, c, &raw) < 0)
			continue;
		if (raw.bytes_up < c->raw.bytes_up || raw.bytes_down < c->raw.bytes_down ||
		    raw.conns_total < c->raw.conns_total)
			ctr_retire(c); /* the engine restarted this name from 0 */
		if (raw.bytes_up != c->raw.bytes_up || raw.bytes_down != c->raw.bytes_down ||
		    raw.conns_total != c->raw.conns_total)
			a->ctrs_dirty = true;
		c->raw = raw;
	}
}

/* What runs of one kind after an apply: (id, name) of each running
 * object. */
struct running {
	const char *id, *name;
};

/* After an apply: follow each id of this kind to the name it runs as now. */
static void ctrs_follow(struct fg_agent *a, uint8_t kind, const struct running *run, size_t n)
{
	for (size_t i = 0; i < a->nctrs; i++) {
		struct ctr *c = &a->ctrs[i];
		const struct running *cfg = NULL;
		if (c->kind != kind)
			continue;
		for (size_t k = 0; k < n && !cfg; k++)
			if (strcmp(run[k].id, c->id) == 0)
				cfg = &run[k];
		if (c->name[0] && (!cfg || strcmp(cfg->name, c->name) != 0)) {
			ctr_retire(c);
			c->name[0] = '\0';
		}
		if (cfg && !c->name[0])
			snprintf(c->name, sizeof(c->name), "%s", cfg->name);
	}
	for (size_t k = 0; k < n; k++) {
		const struct running *cfg = &run[k];
		if (!numeric_id(cfg->id) || ctr_find(a, kind, cfg->id))
			continue;
		if (a->nctrs == a->capctrs) {
			size_t ncap = a->capctrs ? a->capctrs * 2 : 16;
			struct ctr *p = fg_realloc(a->ctrs, ncap * sizeof(*p));
			if (!p) {
				fg_err("agent: out of memory: %s %s will not be counted",
				       kind_name(kind), cfg->name);
				continue;
			}
			a->ctrs = p;
			a->capctrs = ncap;
		}
		struct ctr *c = &a->ctrs[a->nctrs++];
		memset(c, 0, sizeof(*c));
		c->kind = kind;
		snprintf(c->id, sizeof(c->id), "%s", cfg->id);
		snprintf(c->name, sizeof(c->name), "%s", cfg->name);
	}
}

/* pending.json holds the earlier boots not yet acked plus this boot's
 * latest values. It is written before a report is sent, so the file never
 * holds less than the server has seen: a value below the server's cursor
 * would read as a counter reset and count twice. */
static void persist(struct fg_agent *a, bool force)
{
	if (!a->ctrs_dirty && !force)
		return;
	struct fg_pending p = {.n = a->old.n + 1};
	p.v = fg_calloc(p.n, sizeof(*p.v));
	struct fg_pending_ctr *cur = fg_calloc(a->nctrs + 1, sizeof(*cur));
	if (!p.v || !cur) {
		fg_err("agent: out of memory writing %s", FG_AGENT_PENDING_FILE);
		goto out;
	}
	if (a->old.n)
		memcpy(p.v, a->old.v, a->old.n * sizeof(*p.v));
	struct fg_pending_boot *b = &p.v[a->old.n];
	snprintf(b->boot_id, sizeof(b->boot_id), "%s", a->boot_id);
	b->v = cur;
	for (size_t i = 0; i < a->nctrs; i++) {
		const struct ctr *c = &a->ctrs[i];
		struct fg_pending_ctr *pc = &cur[b->n++];
		snprintf(pc->kind, sizeof(pc->kind), "%s", kind_name(c->kind));
		snprintf(pc->id, sizeof(pc->id), "%s", c->id);
		pc->bytes_up = c->base_up + c->raw.bytes_up;
		pc->bytes_down = c->base_down + c->raw.bytes_down;
		pc->conns = c->base_conns + c->raw.conns_total;
	}
	int rc = fg_pending_save(a->dir, &p);
	if (rc)
		fg_log_rl(FG_LOG_ERROR, "agent: cannot write %s/%s: %s", a->dir,
			  FG_AGENT_PENDING_FILE, strerror(-rc));
	else
		a->ctrs_dirty = false;
out:
	fg_free(cur);
	fg_free(p.v);
}

/* ---- sending --------------------------------------------------------- */

static int send_msg(struct fg_agent *a, char *text)
{
	if (!text)
		return -ENOMEM;
	int rc = a->ws ? fg_ws_send_text(a->ws, text, strlen(text)) : -EPIPE;
	free(text);
	if (rc && rc != -EPIPE && a->ws) {
		fg_warn("agent: cannot send (%s), closing the session", strerror(-rc));
		fg_ws_close(a->ws, 1011, "send failed");
	}
	return rc;
}

static json_t *counter_json(const char *kind, const char *id, uint64_t up, uint64_t down,
			    uint64_t conns, uint64_t active)
{
	return json_pack("{s:s,s:s,s:I,s:I,s:I,s:I}", "kind", kind, "id", id, "bytes_up",
			 (json_int_t)up, "bytes_down", (json_int_t)down, "conns", (json_int_t)conns,
			 "active", (json_int_t)active);
}

/* A running tunnel's link health on its counter entry: links_up (its
 * presence says the engine runs the tunnel), per side this node has and
 * once measured, rtt_prev_us / rtt_next_us, and while the engine has a
 * run-time problem with it (a name that does not resolve) `warn`, absent
 * again once it is gone (doc/protocol.md). */
static void add_links(struct fg_agent *a, const char *name, json_t *cj)
{
	struct fg_agent_tunnel_links ls[2];
	if (fg_agent_tunnels_links(a->tunnels, name, ls) < 0)
		return;
	static const char *const key[2] = {"rtt_prev_us", "rtt_next_us"};
	/* within the bounds the server's decoder holds them to */
	uint64_t up = (uint64_t)ls[0].links_up + ls[1].links_up;
	json_object_set_new(cj, "links_up",
			    json_integer((json_int_t)FG_MIN(up, (uint64_t)FG_RPC_LINKS_UP_MAX)));
	for (int i = 0; i < 2; i++)
		if (ls[i].present && ls[i].rtt_us >= 0)
			json_object_set_new(
			    cj, key[i],
			    json_integer(FG_MIN(ls[i].rtt_us, (int64_t)FG_RPC_RTT_MAX_US)));
	char warn[FG_RPC_WARN_MAX + 1];
	if (fg_agent_tunnels_health(a->tunnels, name, warn, sizeof(warn)) == 0 && warn[0])
		json_object_set_new(cj, "warn", json_string(warn));
}

/* Reports this boot's counters (one report in flight at a time: the next
 * one carries the newer absolute values anyway) and each earlier boot's
 * final ones until the server acknowledges them. */
static void send_reports(struct fg_agent *a)
{
	if (a->link != L_READY)
		return;
	int64_t now = (int64_t)time(NULL), tnow = fg_loop_now(a->loop);
	/* a report never answered (lost with a server in trouble) must not
	 * stop reporting: the values are absolute, sending again is safe */
	if (tnow - a->report_sent > REPORT_ANSWER_NS) {
		a->report_id = 0;
		for (size_t i = 0; i < a->old.n; i++)
			a->old_req[i] = 0;
	}
	if (!a->report_id) {
		json_t *ctrs = json_array();
		for (size_t i = 0; i < a->nctrs; i++) {
			const struct ctr *c = &a->ctrs[i];
			json_t *cj = counter_json(
			    kind_name(c->kind), c->id, c->base_up + c->raw.bytes_up,
			    c->base_down + c->raw.bytes_down, c->base_conns + c->raw.conns_total,
			    c->name[0] ? c->raw.conns_active : 0);
			if (cj && c->kind == K_TUNNEL && c->name[0])
				add_links(a, c->name, cj);
			json_array_append_new(ctrs, cj);
		}
		json_t *status = json_object_get(a->last_result, "status");
		status = status ? json_incref(status) : json_array();
		json_t *p = json_pack("{s:s,s:I,s:I,s:o,s:o}", "boot_id", a->boot_id, "ts",
				      (json_int_t)now, "applied_rev", (json_int_t)a->applied_rev,
				      "status", status, "counters", ctrs);
		if (p && fg_kplane_current(a->kp)) {
			/* the policies' rule counters (absolute; the server keeps the
			 * latest for a node that cannot be asked) */
			json_t *fc = json_array();
			for (size_t i = 0; i < a->nkctrs; i++)
				if (strncmp(a->kctrs[i].name, "pol_", 4) == 0)
					json_array_append_new(
					    fc,
					    json_pack("{s:s,s:I,s:I}", "name", a->kctrs[i].name,
						      "packets", (json_int_t)a->kctrs[i].packets,
						      "bytes", (json_int_t)a->kctrs[i].bytes));
			json_object_set_new(p, "firewall",
					    json_pack("{s:o,s:b}", "counters", fc,
						      "confirm_pending",
						      fg_kplane_pending(a->kp, NULL)));
		}
		int64_t id = a->next_id++;
		if (send_msg(a, fg_rpc_request("report", p, id)) == 0) {
			a->report_id = id;
			a->report_sent = tnow;
			a->m_reports++;
		}
	}
	for (size_t i = 0; i < a->old.n; i++) {
		if (a->old_req[i])
			continue;
		const struct fg_pending_boot *b = &a->old.v[i];
		json_t *ctrs = json_array();
		for (size_t j = 0; j < b->n; j++)
			json_array_append_new(
			    ctrs, counter_json(b->v[j].kind, b->v[j].id, b->v[j].bytes_up,
					       b->v[j].bytes_down, b->v[j].conns, 0));
		json_t *p = json_pack("{s:s,s:I,s:o}", "boot_id", b->boot_id, "ts", (json_int_t)now,
				      "counters", ctrs);
		int64_t id = a->next_id++;
		if (send_msg(a, fg_rpc_request("report", p, id)) == 0) {
			a->old_req[i] = id;
			a->report_sent = tnow;
		}
	}
}

static json_t *do_apply(struct fg_agent *a, const json_t *params, unsigned flags, int *code,
			char *err, size_t errlen);

/* A forward that could not run (its port was taken) is tried again now
 * and then with the same state: once it runs, the next report says so. */
static void retry_failed(struct fg_agent *a)
{
	char err[FG_RPC_ERR_MAX];
	int code;
	if (!a->nfailed || !a->last_params || fg_loop_now(a->loop) < a->retry_at)
		return;
	json_t *params = json_incref(a->last_params);
	json_t *res = do_apply(a, params, APPLY_RETRY, &code, err, sizeof(err));
	if (!res)
		a->retry_at = fg_loop_now(a->loop) + RETRY_FAILED_NS;
	json_decref(res);
	json_decref(params);
}

static void report_cb(struct fg_loop *loop, struct fg_timer *t)
{
	struct fg_agent *a = t->data;
	retry_failed(a);
	sample(a);
	persist(a, false);
	send_reports(a);
	fg_timer_start(loop, t, a->report_ns);
}

/* ---- apply ----------------------------------------------------------- */

/* Index of the enabled forward an engine error names ("forward NAME: ..."),
 * or -1. */
static ssize_t culprit(const struct fg_forward_set *set, const char *err)
{
	if (strncmp(err, "forward ", 8) != 0)
		return -1;
	const char *name = err + 8;
	for (size_t i = 0; i < set->n; i++) {
		size_t n = strlen(set->v[i].name);
		if (set->v[i].enabled && strncmp(name, set->v[i].name, n) == 0 && name[n] == ':')
			return (ssize_t)i;
	}
	return -1;
}

/* The firewall section's policies as status entries: all ok when err is
 * NULL; else the policy at blame (or every one when blame < 0) gets err
 * and the others say they were held back with it. */
static json_t *policy_status(const struct fg_fw_doc *fw, ssize_t blame, const char *err)
{
	json_t *a = json_array();
	for (size_t i = 0; a && i < fw->npolicies; i++) {
		const struct fg_fw_policy *p = &fw->policies[i];
		char other[FG_ERR_MAX];
		const char *e = "";
		if (err && (blame < 0 || (size_t)blame == i)) {
			e = err;
		} else if (err) {
			snprintf(
			    other, sizeof(other),
			    "not applied: policy \"%s\" was refused, and a firewall is applied "
			    "whole or not at all",
			    fw->policies[blame].name);
			e = other;
		}
		json_array_append_new(a, json_pack("{s:s,s:s,s:s,s:b,s:s}", "kind", "policy", "id",
						   p->id, "name", p->name, "ok", !*e, "error", e));
	}
	return a;
}

/* Which policy nft refuses on its own (each dry-run alone, with the sets):
 * its index with nft's words in err, or -1 (only the whole fails). */
static ssize_t policy_blame(struct fg_agent *a, const struct fg_fw_doc *fw, char *err,
			    size_t errlen)
{
	for (size_t i = 0; i < fw->npolicies; i++) {
		struct fg_fw_doc one = {.sets = fw->sets,
					.nsets = fw->nsets,
					.policies = &fw->policies[i],
					.npolicies = 1};
		if (fg_kplane_check(a->kp, &one, NULL, 0, err, errlen) < 0)
			return (ssize_t)i;
	}
	return -1;
}

static bool same_json(const json_t *x, const json_t *y)
{
	return (!x && !y) || (x && y && json_equal((json_t *)x, (json_t *)y));
}

static void replace_json(json_t **slot, const json_t *v)
{
	json_t *old = *slot;
	*slot = v ? json_incref((json_t *)v) : NULL;
	json_decref(old);
}

/* Writes state.json: the last applied document, but with the firewall
 * section that is safe to boot with (the confirmed one while a change
 * waits for confirmation; the one running after a rollback). */
static void save_state(struct fg_agent *a)
{
	json_t *params = a->last_params;
	if (!params)
		return;
	int64_t rev = json_integer_value(json_object_get(params, "rev"));
	json_t *st = json_copy(json_object_get(params, "state"));
	const json_t *fw = fg_kplane_pending(a->kp, NULL) ? a->fw_confirmed : a->fw_run;
	int rc = st ? 0 : -ENOMEM;
	if (!rc && fw)
		rc = json_object_set(st, "firewall", (json_t *)fw) ? -ENOMEM : 0;
	else if (!rc)
		json_object_del(st, "firewall");
	if (!rc)
		rc = fg_agent_state_save(a->dir, rev, st);
	json_decref(st);
	if (rc)
		fg_err("agent: cannot write %s/%s: %s (the node will come back from an older state "
		       "after a restart)",
		       a->dir, FG_AGENT_STATE_FILE, strerror(-rc));
}

/* fg_kplane_apply, or fg_kplane_clear when there is nothing to run: no
 * policy, no set, no enabled kernel forward (our table goes away). */
static int kplane_put(struct fg_agent *a, const struct fg_fw_doc *fw,
		      const struct fg_forward_cfg *fwds, size_t n, int64_t now, int64_t cns,
		      char *err, size_t errlen)
{
	bool any = fw && (fw->npolicies || fw->nsets);
	for (size_t i = 0; !any && i < n; i++)
		any = fwds[i].engine == FG_ENGINE_KERNEL && fwds[i].enabled;
	return any ? fg_kplane_apply(a->kp, fw, fwds, n, now, cns, err, errlen)
		   : fg_kplane_clear(a->kp, now, cns, err, errlen);
}

/* Sets a->kset to copies of set's enabled kernel forwards. */
static void kset_take(struct fg_agent *a, const struct fg_forward_set *set)
{
	struct fg_forward_set k = {0};
	size_t n = 0;
	for (size_t i = 0; i < set->n; i++)
		n += set->v[i].engine == FG_ENGINE_KERNEL && set->v[i].enabled;
	k.v = fg_calloc(n + 1, sizeof(*k.v));
	for (size_t i = 0; k.v && i < set->n; i++) {
		if (set->v[i].engine != FG_ENGINE_KERNEL || !set->v[i].enabled)
			continue;
		if (fg_forward_cfg_copy(&k.v[k.n], &set->v[i]) == 0)
			k.n++;
	}
	if (!k.v) {
		fg_err("agent: out of memory: kernel forward counters are not followed");
		return;
	}
	fg_forward_set_free(&a->kset);
	a->kset = k;
}

/* Puts the firewall section fwsec (parsed: fw) and set's kernel forwards
 * into table inet flowgate, in one transaction (doc/firewall.md). A
 * firewall is applied whole or not at all: if nft refuses a policy,
 * nothing of the firewall changes, the refused policy gets nft's words.
 * If nft refuses the kernel forwards, they fail (errs) and the running ones
 * stay. A changed firewall arms commit-confirm (not at boot). Returns the
 * policies' status entries (new reference). */
static json_t *kplane_apply(struct fg_agent *a, int64_t rev, const json_t *fwsec,
			    const struct fg_fw_doc *fw, int64_t confirm_s,
			    struct fg_forward_set *set, char **errs, unsigned flags)
{
	char kerr[FG_ERR_MAX], ferr[FG_ERR_MAX], perr[FG_ERR_MAX];
	bool any_k = false;
	for (size_t i = 0; i < set->n; i++)
		any_k |= set->v[i].engine == FG_ENGINE_KERNEL && set->v[i].enabled;
	if (!any_k && !fwsec && !fg_kplane_current(a->kp)) {
		fg_forward_set_free(&a->kset);
		return json_array(); /* nothing now, nothing before: no table */
	}
	/* a change that was rolled back is not tried again until it changes */
	if (fwsec && a->fw_rejected && json_equal((json_t *)fwsec, a->fw_rejected)) {
		struct fg_fw_doc run = {0};
		int64_t cs;
		fg_fw_section_parse(a->fw_run, &run, &cs, perr, sizeof(perr));
		int rc = kplane_put(a, &run, set->v, set->n, fg_loop_now(a->loop), 0, kerr,
				    sizeof(kerr));
		fg_fw_doc_free(&run);
		if (rc >= 0)
			kset_take(a, set);
		return policy_status(fw, -1,
				     a->fw_rollback_err ? a->fw_rollback_err : "rolled back");
	}
	json_decref(a->fw_rejected);
	a->fw_rejected = NULL;
	struct fg_nft_spec spec = {.table = "flowgate", .fwds = set->v, .nfwds = set->n};
	unsigned need = fg_nft_forwarding_needed(&spec);
	int rc = need ? fg_kernel_forwarding_enable(need, &a->fwd_changed) : 0;
	for (size_t i = 0; rc < 0 && i < set->n; i++) {
		if (set->v[i].engine != FG_ENGINE_KERNEL || !set->v[i].enabled || errs[i])
			continue;
		char e[160];
		snprintf(e, sizeof(e), "kernel forwards: cannot enable IP forwarding: %s",
			 strerror(-rc));
		errs[i] = fg_strdup(e);
		set->v[i].enabled = false;
	}
	bool fw_changed = !same_json(fwsec, a->fw_run);
	int64_t now = fg_loop_now(a->loop);
	int64_t cs = confirm_s > 0 ? confirm_s : CONFIRM_DEFAULT_S;
	int64_t cns = fw_changed && !(flags & APPLY_BOOT) ? cs * FG_NS_PER_SEC : 0;
	bool was_pending = fg_kplane_pending(a->kp, NULL);
	bool kfail = false, fwfail = false;
	ssize_t blame = -1;
	rc = kplane_put(a, fw, set->v, set->n, now, cns, kerr, sizeof(kerr));
	if (rc < 0 && any_k &&
	    fg_kplane_check(a->kp, NULL, set->v, set->n, ferr, sizeof(ferr)) < 0) {
		/* the kernel forwards are refused: they fail, the running ones
		 * stay, the firewall goes on */
		kfail = true;
		fg_warn("agent: rev %lld: kernel forwards: nft rejected the ruleset: %s",
			(long long)rev, ferr);
		rc = kplane_put(a, fw, a->kset.v, a->kset.n, now, cns, kerr, sizeof(kerr));
	}
	if (rc < 0) {
		/* the firewall is refused: it stays as it runs, the kernel
		 * forwards may still move on */
		fwfail = true;
		blame = policy_blame(a, fw, perr, sizeof(perr));
		fg_warn("agent: rev %lld: firewall refused, the running one stays: %s",
			(long long)rev, blame >= 0 ? perr : kerr);
		if (blame < 0)
			snprintf(perr, sizeof(perr), "%s", kerr);
		struct fg_fw_doc run = {0};
		int64_t rcs;
		char e2[FG_ERR_MAX];
		fg_fw_section_parse(a->fw_run, &run, &rcs, e2, sizeof(e2));
		const struct fg_forward_set *ks = kfail ? &a->kset : set;
		if (kplane_put(a, &run, ks->v, ks->n, now, 0, e2, sizeof(e2)) < 0 && !kfail) {
			kfail = true; /* neither moves: what runs stays */
			snprintf(ferr, sizeof(ferr), "%s", e2);
		}
		fg_fw_doc_free(&run);
	}
	for (size_t i = 0; kfail && i < set->n; i++) {
		if (set->v[i].engine != FG_ENGINE_KERNEL || !set->v[i].enabled || errs[i])
			continue;
		char e[FG_ERR_MAX + 48];
		snprintf(e, sizeof(e), "kernel forwards: nft rejected the ruleset: %s", ferr);
		errs[i] = fg_strdup(e);
		set->v[i].enabled = false;
	}
	if (!kfail)
		kset_take(a, set);
	if (rc == FG_KPLANE_APPLIED)
		fg_info("agent: rev %lld: %zu kernel forward(s) and %zu firewall policies in table "
			"inet flowgate",
			(long long)rev, a->kset.n, fwfail ? (size_t)0 : fw->npolicies);
	if (!fwfail) {
		if (rc == FG_KPLANE_APPLIED && cns > 0) {
			if (!was_pending)
				replace_json(&a->fw_confirmed, a->fw_run);
			a->confirm_from_id = a->next_id;
			a->confirm_s = cs;
			int64_t deadline = 0;
			fg_kplane_pending(a->kp, &deadline);
			fg_timer_start(a->loop, &a->confirm_timer, deadline - now);
			fg_info("agent: rev %lld: firewall changed (%zu policies): it stays if the "
				"server answers within %lld s, else the previous one is restored",
				(long long)rev, fw->npolicies, (long long)cs);
		}
		replace_json(&a->fw_run, fwsec);
		if (!fg_kplane_pending(a->kp, NULL))
			replace_json(&a->fw_confirmed, NULL);
		fg_free(a->fw_rollback_err);
		a->fw_rollback_err = NULL;
	}
	return policy_status(fw, fwfail ? blame : -1, fwfail ? perr : NULL);
}

/* Makes params ({rev, state}) what runs. Returns the result {rev, status}
 * (new reference), or NULL with *code and err: then nothing changed. */
static json_t *do_apply(struct fg_agent *a, const json_t *params, unsigned flags, int *code,
			char *err, size_t errlen)
{
	struct fg_apply ap;
	struct fg_forward_set set = {0};
	struct fg_fw_doc fw = {0};
	struct fg_tunnel_set tset = {0};
	char **errs = NULL, **terrs = NULL;
	json_t *result = NULL, *empty = NULL, *pstatus = NULL;
	int64_t confirm_s = 0;
	struct running *run = NULL;
	if ((*code = fg_apply_decode(params, &ap, err, errlen)))
		return NULL;
	if (ap.rev == a->applied_rev && a->last_result && !(flags & APPLY_RETRY))
		return json_incref(a->last_result); /* same revision, same answer */
	const char *key;
	json_t *v;
	json_object_foreach((json_t *)ap.state, key, v)
	{
		if (strcmp(key, "forwards") != 0 && strcmp(key, "firewall") != 0 &&
		    strcmp(key, "tunnels") != 0 && !(flags & APPLY_RETRY))
			fg_warn("agent: rev %lld: section \"%s\" is not supported by this agent, "
				"ignored",
				(long long)ap.rev, key);
	}
	const json_t *fwsec = json_object_get(ap.state, "firewall");
	const json_t *fwd = ap.forwards ? ap.forwards : (empty = json_array());
	if (fg_config_parse_forwards(fwd, &set, err, errlen) < 0) {
		*code = FG_RPC_APPLY_FAILED;
		goto out;
	}
	if (fg_fw_section_parse(fwsec, &fw, &confirm_s, err, errlen) < 0) {
		*code = FG_RPC_APPLY_FAILED;
		goto out;
	}
	/* tunnels: the engine's own parser, and no port shared with a forward;
	 * a section that does not pass refuses the whole state */
	json_t *tj = json_object_get(ap.state, "tunnels");
	if (tj && fg_tunnel_parse_json(tj, &tset, err, errlen) < 0) {
		*code = FG_RPC_APPLY_FAILED;
		goto out;
	}
	snprintf(tset.tls_cert, sizeof(tset.tls_cert), "%s", a->cert);
	snprintf(tset.tls_key, sizeof(tset.tls_key), "%s", a->key);
	if (fg_tunnel_set_check_forwards(&tset, &set, err, errlen) < 0) {
		*code = FG_RPC_APPLY_FAILED;
		goto out;
	}
	errs = fg_calloc(set.n + 1, sizeof(*errs));
	terrs = fg_calloc(tset.n + 1, sizeof(*terrs));
	run = fg_calloc(set.n + tset.n + 1, sizeof(*run));
	if (!errs || !terrs || !run) {
		*code = FG_RPC_INTERNAL_ERROR;
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	sample(a); /* the last values of what this apply stops or renames */
	for (;;) {
		char e[FG_ERR_MAX];
		if (fg_engine_apply(a->engine, &set, e, sizeof(e)) == 0)
			break;
		/* one forward cannot run (its port is taken...): run the rest
		 * and report that one */
		ssize_t bad = culprit(&set, e);
		if (bad < 0) {
			*code = FG_RPC_APPLY_FAILED;
			snprintf(err, errlen, "%s", e);
			goto out;
		}
		errs[bad] = fg_strdup(e);
		set.v[bad].enabled = false;
		if (!(flags & APPLY_RETRY))
			fg_warn("agent: rev %lld: %s", (long long)ap.rev, e);
	}
	/* firewall policies and kernel forwards: one table, one transaction */
	pstatus = kplane_apply(a, ap.rev, fwsec, &fw, confirm_s, &set, errs, flags);
	size_t nrun = 0;
	for (size_t i = 0; i < set.n; i++)
		if (set.v[i].enabled)
			run[nrun++] = (struct running){set.v[i].id, set.v[i].name};
	ctrs_follow(a, K_FORWARD, run, nrun);
	/* tunnels after forwards: one that cannot run is reported, the rest run */
	char te[FG_ERR_MAX];
	if (fg_agent_tunnels_apply(a->tunnels, &tset, terrs, te, sizeof(te)) < 0) {
		for (size_t i = 0; i < tset.n; i++)
			if (tset.v[i].enabled && !terrs[i])
				terrs[i] = fg_strdup(te);
		if (!(flags & APPLY_RETRY))
			fg_warn("agent: rev %lld: tunnels not applied: %s", (long long)ap.rev, te);
	}
	nrun = 0;
	for (size_t i = 0; i < tset.n; i++)
		if (tset.v[i].enabled && !terrs[i])
			run[nrun++] = (struct running){tset.v[i].id, tset.v[i].name};
	ctrs_follow(a, K_TUNNEL, run, nrun);
	a->ctrs_dirty = true;

	json_t *status = json_array();
	size_t failed = 0, running = 0;
	for (size_t i = 0; i < set.n; i++) {
		const struct fg_forward_cfg *c = &set.v[i];
		json_array_append_new(status,
				      json_pack("{s:s,s:s,s:s,s:b,s:s}", "kind", "forward", "id",
						c->id, "name", c->name, "ok", errs[i] == NULL,
						"error", errs[i] ? errs[i] : ""));
		failed += errs[i] != NULL;
		running += c->enabled;
	}
	size_t tfailed = 0, trunning = 0;
	for (size_t i = 0; i < tset.n; i++) {
		const struct fg_tunnel_cfg *c = &tset.v[i];
		json_array_append_new(status,
				      json_pack("{s:s,s:s,s:s,s:b,s:s}", "kind", "tunnel", "id",
						c->id, "name", c->name, "ok", terrs[i] == NULL,
						"error", terrs[i] ? terrs[i] : ""));
		tfailed += terrs[i] != NULL;
		trunning += c->enabled && !terrs[i];
	}
	size_t pfailed = 0, pi;
	json_array_foreach(pstatus, pi, v)
	{
		pfailed += !json_is_true(json_object_get(v, "ok"));
		json_array_append(status, v);
	}
	result = json_pack("{s:I,s:o}", "rev", (json_int_t)ap.rev, "status", status);
	if (!result) {
		*code = FG_RPC_INTERNAL_ERROR;
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	a->applied_rev = ap.rev;
	json_decref(a->last_result);
	a->last_result = json_incref(result);
	if (a->last_params != params) {
		json_decref(a->last_params);
		a->last_params = json_incref((json_t *)params);
	}
	if (flags & APPLY_SAVE)
		save_state(a);
	if (!(flags & APPLY_RETRY)) {
		a->m_applies++;
		fg_info("agent: applied rev %lld: %zu forward(s) running, %zu failed; %zu firewall "
			"policies, %zu failed; %zu tunnel(s) running, %zu failed",
			(long long)ap.rev, running, failed, fw.npolicies, pfailed, trunning,
			tfailed);
	} else if (failed != a->nfailed) {
		fg_info("agent: rev %lld: retried the forwards that could not run: %zu running, "
			"%zu still failing",
			(long long)ap.rev, running, failed);
	}
	/* tunnels that cannot run in this build are not worth retrying */
	a->nfailed = failed + (fg_agent_tunnels_available() ? tfailed : 0);
	a->retry_at = fg_loop_now(a->loop) + RETRY_FAILED_NS;
out:
	if (errs)
		for (size_t i = 0; i < set.n; i++)
			fg_free(errs[i]);
	if (terrs)
		for (size_t i = 0; i < tset.n; i++)
			fg_free(terrs[i]);
	fg_free(errs);
	fg_free(terrs);
	fg_free(run);
	fg_tunnel_set_free(&tset);
	fg_forward_set_free(&set);
	fg_fw_doc_free(&fw);
	json_decref(pstatus);
	json_decref(empty);
	if (!result)
		a->m_apply_fail++;
	return result;
}

/* The server answered a request sent after the firewall change: keep it. */
static void confirm_check(struct fg_agent *a, int64_t answered_id)
{
	if (!fg_kplane_pending(a->kp, NULL) || answered_id < a->confirm_from_id)
		return;
	fg_kplane_confirm(a->kp);
	fg_timer_stop(a->loop, &a->confirm_timer);
	replace_json(&a->fw_confirmed, NULL);
	fg_info("agent: firewall change confirmed: the server answered after it");
	save_state(a);
}

/* The grace period is over without an answer: the previous table comes
 * back, and the change is reported as rolled back until it changes. */
static void confirm_timer_cb(struct fg_loop *loop, struct fg_timer *t)
{
	struct fg_agent *a = t->data;
	char err[FG_ERR_MAX];
	int rc = fg_kplane_tick(a->kp, fg_loop_now(loop), err, sizeof(err));
	if (rc < 0) {
		fg_err("agent: cannot restore the previous firewall (trying again): %s", err);
		fg_timer_start(loop, t, FG_NS_PER_SEC);
		return;
	}
	int64_t deadline;
	if (rc == 0) {
		if (fg_kplane_pending(a->kp, &deadline))
			fg_timer_start(loop, t, deadline - fg_loop_now(loop));
		return;
	}
	char why[256];
	snprintf(why, sizeof(why),
		 "rolled back: the server did not answer within %lld s after this firewall "
		 "change, so the previous firewall was restored (commit-confirm)",
		 (long long)a->confirm_s);
	fg_err("agent: %s", why);
	fg_free(a->fw_rollback_err);
	a->fw_rollback_err = fg_strdup(why);
	replace_json(&a->fw_rejected, a->fw_run);
	replace_json(&a->fw_run, a->fw_confirmed);
	replace_json(&a->fw_confirmed, NULL);
	/* the restored table is the confirmed firewall with the kernel
	 * forwards of then: bring the forwards back to what runs now */
	struct fg_fw_doc run = {0};
	int64_t cs;
	if (fg_fw_section_parse(a->fw_run, &run, &cs, err, sizeof(err)) == 0 &&
	    kplane_put(a, &run, a->kset.v, a->kset.n, fg_loop_now(loop), 0, err, sizeof(err)) < 0)
		fg_err("agent: after the rollback, kernel forwards: %s", err);
	fg_fw_doc_free(&run);
	/* the report says so: every policy entry fails, plus one line for
	 * the firewall as a whole */
	json_t *status = json_object_get(a->last_result, "status");
	size_t i;
	json_t *v;
	json_array_foreach(status, i, v)
	{
		if (strcmp(json_string_value(json_object_get(v, "kind")) ?: "", "policy") == 0) {
			json_object_set_new(v, "ok", json_false());
			json_object_set_new(v, "error", json_string(why));
		}
	}
	if (status)
		json_array_append_new(status, json_pack("{s:s,s:s,s:s,s:b,s:s}", "kind", "firewall",
							"id", "", "name", "commit-confirm", "ok", 0,
							"error", why));
	save_state(a);
	send_reports(a);
}

/* ---- session --------------------------------------------------------- */

static void connect_next(struct fg_agent *a);

static void retry_cb(struct fg_loop *loop, struct fg_timer *t)
{
	connect_next(t->data);
}

static void schedule_retry(struct fg_agent *a)
{
	if (a->stopping)
		return;
	a->link = L_IDLE;
	a->url_idx = (a->url_idx + 1) % a->nurls;
	/* jitter ±20% so a fleet does not reconnect in lockstep */
	double j = 0.8 + 0.4 * ((double)random() / RAND_MAX);
	int64_t delay = (int64_t)((double)a->backoff * j);
	a->backoff = a->backoff * 2 > a->backoff_hi ? a->backoff_hi : a->backoff * 2;
	fg_timer_start(a->loop, &a->retry_timer, delay);
}

static void link_failed(struct fg_agent *a, const char *why)
{
	const struct fg_agent_url *u = &a->urls[a->url_idx];
	fg_warn("agent: cannot connect to ws%s://%s%s: %s", u->tls ? "s" : "", u->authority,
		u->path, why);
	schedule_retry(a);
}

static void send_hello(struct fg_agent *a)
{
	json_t *p = json_pack("{s:s,s:s,s:s,s:I,s:[s]}", "version", FG_VERSION, "hostname",
			      a->hostname, "boot_id", a->boot_id, "applied_rev",
			      (json_int_t)a->applied_rev, "capabilities", "forward");
	json_array_append_new(json_object_get(p, "capabilities"), json_string("firewall"));
	json_array_append_new(json_object_get(p, "capabilities"), json_string("tunnel"));
	/* the server gives it to the tunnel peers that pin this node */
	if (p && a->fingerprint[0])
		json_object_set_new(p, "fingerprint", json_string(a->fingerprint));
	a->hello_id = a->next_id++;
	a->link = L_HELLO;
	send_msg(a, fg_rpc_request("hello", p, a->hello_id));
}

static void on_response(struct fg_agent *a, const struct fg_rpc_msg *m)
{
	char err[FG_RPC_ERR_MAX];
	const struct fg_agent_url *u = &a->urls[a->url_idx];
	/* any answer to a request sent after a firewall change shows the
	 * server is still reachable: commit-confirm keeps the change */
	if (m->id_int > 0)
		confirm_check(a, m->id_int);
	if (m->id_int > 0 && m->id_int == a->hello_id) {
		struct fg_hello_result hr;
		a->hello_id = 0;
		if (m->kind == FG_RPC_ERROR) {
			fg_err("agent: %s refused hello: %s", u->authority, m->err_message);
			fg_ws_close(a->ws, 1000, "hello refused");
			return;
		}
		if (fg_hello_result_decode(m->result, &hr, err, sizeof(err))) {
			fg_err("agent: %s: bad hello answer: %s", u->authority, err);
			fg_ws_close(a->ws, 1002, "bad hello answer");
			return;
		}
		a->link = L_READY;
		a->node_id = hr.node_id;
		a->backoff = a->backoff_lo;
		a->m_connects++;
		fg_info("agent: connected to ws%s://%s%s as node %s (id %lld), applied rev %lld",
			u->tls ? "s" : "", u->authority, u->path, hr.node_name,
			(long long)hr.node_id, (long long)a->applied_rev);
		sample(a);
		persist(a, false);
		send_reports(a);
		return;
	}
	if (m->id_int > 0 && m->id_int == a->report_id) {
		a->report_id = 0;
		if (m->kind == FG_RPC_ERROR)
			fg_log_rl(FG_LOG_WARN, "agent: report refused: %s", m->err_message);
		/* a firewall change waits for an answer to a newer request */
		if (fg_kplane_pending(a->kp, NULL))
			send_reports(a);
		return;
	}
	for (size_t i = 0; i < a->old.n; i++) {
		if (m->id_int <= 0 || a->old_req[i] != m->id_int)
			continue;
		a->old_req[i] = 0;
		if (m->kind == FG_RPC_ERROR) {
			fg_warn("agent: report of boot %s refused: %s", a->old.v[i].boot_id,
				m->err_message);
			return;
		}
		/* the server holds them now: stop carrying them */
		fg_info("agent: counters of previous boot %s delivered", a->old.v[i].boot_id);
		fg_pending_remove(&a->old, i);
		memmove(&a->old_req[i], &a->old_req[i + 1], (a->old.n - i) * sizeof(int64_t));
		persist(a, true);
		return;
	}
}

/* firewall_show: the live table, the server's preview as nft lists it,
 * the counters, whether a change waits for confirmation. Blocks the
 * control loop for a listing and (with a script) a child that renders it
 * in a private network namespace. */
static json_t *task_firewall_show(struct fg_agent *a, const struct fg_task *t, char *err,
				  size_t errlen)
{
	struct fg_strbuf live, pv;
	char perr[FG_ERR_MAX] = "";
	fg_strbuf_init(&live);
	fg_strbuf_init(&pv);
	fg_strbuf_puts(&live, "");
	fg_strbuf_puts(&pv, "");
	json_t *res = NULL;
	if (fg_kplane_current(a->kp) && fg_kplane_list(a->kp, &live, err, errlen) < 0)
		goto out;
	if (*t->script && fg_nft_normalize("flowgate", t->script, &pv, perr, sizeof(perr)) < 0)
		fg_strbuf_puts(&pv, "");
	kctrs_refresh(a);
	json_t *ctrs = json_array();
	for (size_t i = 0; fg_kplane_current(a->kp) && i < a->nkctrs; i++)
		json_array_append_new(ctrs, json_pack("{s:s,s:I,s:I}", "name", a->kctrs[i].name,
						      "packets", (json_int_t)a->kctrs[i].packets,
						      "bytes", (json_int_t)a->kctrs[i].bytes));
	res = json_pack("{s:s,s:s,s:s,s:o,s:b}", "live", live.s ? live.s : "", "preview",
			pv.s ? pv.s : "", "preview_error", perr, "counters", ctrs,
			"confirm_pending", fg_kplane_pending(a->kp, NULL));
	if (!res)
		snprintf(err, errlen, "out of memory");
out:
	fg_strbuf_deinit(&live);
	fg_strbuf_deinit(&pv);
	return res;
}

static json_t *do_task(struct fg_agent *a, const json_t *params, int *code, char *err,
		       size_t errlen)
{
	struct fg_task t;
	if ((*code = fg_task_decode(params, &t, err, errlen)))
		return NULL;
	json_t *res = NULL;
	if (strcmp(t.kind, "firewall_show") == 0) {
		res = task_firewall_show(a, &t, err, errlen);
	} else {
		*code = FG_RPC_METHOD_NOT_FOUND;
		snprintf(err, errlen, "task kind \"%.64s\" is not supported by this agent", t.kind);
		return NULL;
	}
	if (!res)
		*code = FG_RPC_INTERNAL_ERROR;
	return res;
}

static void on_text(struct fg_ws *ws, const char *data, size_t len, void *user)
{
	struct fg_agent *a = user;
	struct fg_rpc_msg m;
	char err[FG_RPC_ERR_MAX];
	int rc = fg_rpc_decode(data, len, &m, err, sizeof(err));
	if (rc) {
		fg_log_rl(FG_LOG_WARN, "agent: bad message from the server: %s", err);
		/* answered to its id, or to null when none could be read (an
		 * error answer is never answered, so this cannot ping-pong) */
		send_msg(a, fg_rpc_error(m.id, rc, err));
		fg_rpc_msg_deinit(&m);
		return;
	}
	if (m.kind == FG_RPC_RESULT || m.kind == FG_RPC_ERROR) {
		on_response(a, &m);
	} else if (strcmp(m.method, "apply") == 0) {
		int code = 0;
		json_t *res = do_apply(a, m.params, APPLY_SAVE, &code, err, sizeof(err));
		if (!res)
			fg_err("agent: apply refused, running state unchanged: %s", err);
		if (m.id)
			send_msg(a, res ? fg_rpc_result(m.id, res) : fg_rpc_error(m.id, code, err));
		else
			json_decref(res);
		/* after a firewall change, ask for the answer that confirms it */
		if (fg_kplane_pending(a->kp, NULL))
			send_reports(a);
	} else if (strcmp(m.method, "task") == 0) {
		int code = 0;
		json_t *res = do_task(a, m.params, &code, err, sizeof(err));
		if (m.id)
			send_msg(a, res ? fg_rpc_result(m.id, res) : fg_rpc_error(m.id, code, err));
		else
			json_decref(res);
	} else if (m.id) {
		snprintf(err, sizeof(err), "unknown method \"%.64s\"", m.method);
		send_msg(a, fg_rpc_error(m.id, FG_RPC_METHOD_NOT_FOUND, err));
	}
	fg_rpc_msg_deinit(&m);
}

static void on_close(struct fg_ws *ws, int code, const char *err, void *user)
{
	struct fg_agent *a = user;
	const struct fg_agent_url *u = &a->urls[a->url_idx];
	bool was_ready = a->link == L_READY;
	fg_ws_free(ws);
	a->ws = NULL;
	a->hello_id = a->report_id = 0;
	for (size_t i = 0; i < a->old.n; i++)
		a->old_req[i] = 0;
	if (was_ready) {
		fg_warn("agent: disconnected from ws%s://%s%s: %s (code %d)", u->tls ? "s" : "",
			u->authority, u->path, err ? err : "closed by the server", code);
		a->backoff = a->backoff_lo;
		persist(a, false);
	} else {
		char why[128];
		snprintf(why, sizeof(why), "session ended before hello: %s (code %d)",
			 err ? err : "closed", code);
		fg_warn("agent: ws%s://%s%s: %s", u->tls ? "s" : "", u->authority, u->path, why);
	}
	/* the next attempt goes to the next server */
	schedule_retry(a);
}

static const struct fg_ws_cbs agent_cbs = {.on_text = on_text, .on_close = on_close};

static void open_cb(struct fg_ws *ws, int err, int http_status, void *data)
{
	struct fg_agent *a = data;
	const char *hs_why = a->hs ? fg_ws_hs_error(a->hs) : NULL;
	a->hs = NULL;
	if (err) {
		char why[300];
		if (err == -EACCES && (http_status == 401 || http_status == 403))
			snprintf(why, sizeof(why), "node token refused (HTTP %d)", http_status);
		else if (err == -EACCES)
			snprintf(why, sizeof(why), "the server answered HTTP %d", http_status);
		else if (hs_why && *hs_why)
			snprintf(why, sizeof(why), "%s", hs_why);
		else
			snprintf(why, sizeof(why), "%s", strerror(-err));
		link_failed(a, why);
		return;
	}
	a->ws = ws;
	send_hello(a);
}

/* Starts a connection to u: TCP connect, then (wss://) the TLS handshake,
 * then the upgrade; open_cb gets the outcome. Returns 0 or -errno with err. */
static int dial(struct fg_agent *a, const struct fg_agent_url *u, struct addrinfo *res, char *err,
		size_t errlen)
{
	int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		int e = errno;
		freeaddrinfo(res);
		snprintf(err, errlen, "socket: %s", strerror(e));
		return -e;
	}
	int rc = connect(fd, res->ai_addr, res->ai_addrlen);
	freeaddrinfo(res);
	if (rc < 0 && errno != EINPROGRESS) {
		int e = errno;
		close(fd);
		snprintf(err, errlen, "%s", strerror(e));
		return -e;
	}
	struct fg_ws_opts wo = {.ping_interval_ns = PING_NS, .ping_timeout_ns = 3 * PING_NS};
	if (u->tls)
		a->hs = fg_ws_connect_tls_start(a->loop, fd, a->tls, u->host, a->pin, u->authority,
						u->path, a->token, &agent_cbs, &wo, open_cb, a);
	else
		a->hs = fg_ws_connect_start(a->loop, fd, u->authority, u->path, a->token,
					    &agent_cbs, &wo, open_cb, a);
	if (!a->hs) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	return 0;
}

static void resolve_run(void *arg)
{
	struct resolve_job *j = arg;
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	j->gai = getaddrinfo(j->u->host, j->u->port, &hints, &j->res);
}

static void resolve_done(void *arg)
{
	struct resolve_job *j = arg;
	struct fg_agent *a = j->a;
	struct addrinfo *res = j->res;
	char err[512];
	j->res = NULL;
	if (a->stopping || a->link != L_RESOLVING) {
		if (res)
			freeaddrinfo(res);
		return;
	}
	if (j->gai) {
		snprintf(err, sizeof(err), "cannot resolve %s: %s", j->u->host,
			 gai_strerror(j->gai));
		link_failed(a, err);
		return;
	}
	a->link = L_CONNECTING;
	if (dial(a, j->u, res, err, sizeof(err)) < 0)
		link_failed(a, err);
}

static void connect_next(struct fg_agent *a)
{
	const struct fg_agent_url *u = &a->urls[a->url_idx];
	if (!a->resolver && !(a->resolver = fg_work_new(a->loop, 1))) {
		link_failed(a, "out of memory");
		return;
	}
	a->rj = (struct resolve_job){.a = a, .u = u};
	a->link = L_RESOLVING;
	if (fg_work_submit(a->resolver, resolve_run, resolve_done, &a->rj) < 0)
		link_failed(a, "cannot start the name lookup");
}

/* ---- public ---------------------------------------------------------- */

static void apply_state_file(struct fg_agent *a)
{
	char err[FG_ERR_MAX];
	int64_t rev;
	json_t *state;
	int rc = fg_agent_state_load(a->dir, &rev, &state, err, sizeof(err));
	if (rc == -ENOENT) {
		fg_info("agent: no %s/%s yet: waiting for the server's first state", a->dir,
			FG_AGENT_STATE_FILE);
		return;
	}
	if (rc) {
		fg_err("agent: %s: ignored, waiting for the server", err);
		return;
	}
	json_t *params = json_pack("{s:I,s:o}", "rev", (json_int_t)rev, "state", state);
	int code;
	json_t *res = params ? do_apply(a, params, APPLY_BOOT, &code, err, sizeof(err)) : NULL;
	if (!res)
		fg_err("agent: %s/%s (rev %lld) cannot run: %s", a->dir, FG_AGENT_STATE_FILE,
		       (long long)rev, err);
	json_decref(res);
	json_decref(params);
}

/* This node's TLS certificate for tunnel links: made in the state dir at
 * first start (peers pin its fingerprint, which hello tells the server). */
static int node_cert(struct fg_agent *a, char *err, size_t errlen)
{
	char e[FG_TLS_ERR_LEN];
	snprintf(a->cert, sizeof(a->cert), "%s/" CERT_FILE, a->dir);
	snprintf(a->key, sizeof(a->key), "%s/" KEY_FILE, a->dir);
	bool have_cert = access(a->cert, R_OK) == 0, have_key = access(a->key, R_OK) == 0;
	if (!have_cert || !have_key) {
		if (have_cert != have_key)
			fg_warn("agent: %s without %s: making a new pair",
				have_cert ? a->cert : a->key, have_cert ? a->key : a->cert);
		if (fg_tls_make_self_signed(a->cert, a->key, a->hostname, NULL, 0, e, sizeof(e)) <
		    0) {
			snprintf(err, errlen, "cannot make this node's certificate: %s", e);
			return -EIO;
		}
		fg_info("agent: made this node's TLS certificate %s", a->cert);
	}
	if (fg_tls_cert_fingerprint(a->cert, a->fingerprint, e, sizeof(e)) < 0) {
		snprintf(err, errlen, "%s (remove %s and %s to make a new pair)", e, a->cert,
			 a->key);
		return -EINVAL;
	}
	fg_info("agent: node certificate fingerprint %s", a->fingerprint);
	return 0;
}

struct fg_agent *fg_agent_new(const struct fg_agent_opts *o, char *err, size_t errlen)
{
	struct fg_agent *a = fg_calloc(1, sizeof(*a));
	if (!a) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	a->loop = o->loop;
	if (o->nservers == 0 || o->nservers > FG_AGENT_MAX_SERVERS) {
		snprintf(err, errlen, "--server: give 1 to %d server URLs", FG_AGENT_MAX_SERVERS);
		goto err;
	}
	for (size_t i = 0; i < o->nservers; i++) {
		char e[300];
		if (fg_agent_url_parse(o->servers[i], &a->urls[i], e, sizeof(e)) < 0) {
			snprintf(err, errlen, "--server: %s", e);
			goto err;
		}
		if (!a->urls[i].tls && !fg_host_is_loopback(a->urls[i].host))
			fg_warn("agent: %s is ws://: the node token and the node's configuration "
				"travel unencrypted; use wss:// outside a trusted network",
				o->servers[i]);
		if (a->urls[i].tls && !a->tls) {
			struct fg_tls_client_opts to = {.ca_file = o->ca_file};
			char terr[FG_TLS_ERR_LEN];
			a->tls = fg_tls_client_new(&to, terr, sizeof(terr));
			if (!a->tls) {
				snprintf(err, errlen, "--ca: %s", terr);
				goto err;
			}
		}
	}
	if (o->pin && *o->pin) {
		uint8_t fp[FG_TLS_FP_LEN];
		if (fg_tls_parse_pin(o->pin, fp) < 0) {
			snprintf(
			    err, errlen,
			    "--pin: \"%s\" is not a SHA-256 fingerprint (64 hex digits, colons "
			    "allowed)",
			    o->pin);
			goto err;
		}
		if (!(a->pin = fg_strdup(o->pin))) {
			snprintf(err, errlen, "out of memory");
			goto err;
		}
	}
	a->nurls = o->nservers;
	if (!o->token || !*o->token) {
		snprintf(err, errlen,
			 "no node token: give --token, set " FG_AGENT_TOKEN_ENV
			 ", or write it to %s/" FG_AGENT_TOKEN_FILE,
			 o->state_dir);
		goto err;
	}
	a->token = fg_strdup(o->token);
	a->dir = fg_strdup(o->state_dir);
	if (!a->token || !a->dir) {
		snprintf(err, errlen, "out of memory");
		goto err;
	}
	a->report_ns = o->report_interval_ns > 0 ? o->report_interval_ns : DEFAULT_REPORT_NS;
	a->backoff_lo = o->backoff_min_ns > 0 ? o->backoff_min_ns : DEFAULT_BACKOFF_LO;
	a->backoff_hi = o->backoff_max_ns > 0 ? o->backoff_max_ns : DEFAULT_BACKOFF_HI;
	a->backoff = a->backoff_lo;
	a->next_id = 1;

	unsigned char rnd[16];
	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
		snprintf(err, errlen, "getrandom: %s", strerror(errno));
		goto err;
	}
	for (size_t i = 0; i < sizeof(rnd); i++)
		snprintf(a->boot_id + 2 * i, 3, "%02x", rnd[i]);
	srandom((unsigned)(rnd[0] | rnd[1] << 8 | rnd[2] << 16 | (unsigned)rnd[3] << 24));
	if (gethostname(a->hostname, sizeof(a->hostname) - 1) < 0)
		snprintf(a->hostname, sizeof(a->hostname), "unknown");

	/* made on first start (the enroll command names it); fail early on
	 * one we cannot write: the state file is what keeps the node
	 * forwarding through a restart */
	int drc = fg_dir_make(a->dir);
	if (drc < 0) {
		snprintf(err, errlen, "--state %s: %s", a->dir, strerror(-drc));
		goto err;
	}
	if (access(a->dir, W_OK) < 0) {
		snprintf(err, errlen, "--state %s: %s", a->dir, strerror(errno));
		goto err;
	}
	char e2[FG_ERR_MAX];
	int rc = fg_pending_load(a->dir, &a->old, e2, sizeof(e2));
	if (rc && rc != -ENOENT)
		fg_err("agent: %s: ignored (counters moved before the restart are lost)", e2);
	for (size_t i = 0; i < a->old.n;) { /* nothing to deliver */
		if (a->old.v[i].n == 0)
			fg_pending_remove(&a->old, i);
		else
			i++;
	}
	a->old_req = fg_calloc(a->old.n + 1, sizeof(*a->old_req));
	if (!a->old_req) {
		snprintf(err, errlen, "out of memory");
		goto err;
	}
	if (a->old.n)
		fg_info("agent: %zu earlier boot(s) have counters to deliver", a->old.n);

	if (node_cert(a, err, errlen) < 0)
		goto err;
	struct fg_engine_opts eo = {.workers = o->workers, .ctl_loop = o->loop};
	a->engine = fg_engine_new(&eo);
	if (!a->engine) {
		snprintf(err, errlen, "cannot start the engine: %s", strerror(errno));
		goto err;
	}
	a->kp = fg_kplane_new("flowgate", NULL, NULL);
	if (!a->kp) {
		snprintf(err, errlen, "cannot create an nftables context");
		goto err;
	}
	fg_engine_set_metrics_hook(a->engine, kmetrics_cb, a);
	/* the forward engine's resolver: one c-ares channel on the loop */
	a->tunnels = fg_agent_tunnels_new(o->loop, fg_engine_resolver(a->engine), a->cert, a->key,
					  o->tunnel_workers);
	if (!a->tunnels) {
		snprintf(err, errlen, "out of memory");
		goto err;
	}
	fg_timer_init(&a->confirm_timer, confirm_timer_cb, a);
	fg_timer_init(&a->retry_timer, retry_cb, a);
	fg_timer_init(&a->report_timer, report_cb, a);
	apply_state_file(a);
	return a;
err:
	fg_agent_free(a);
	return NULL;
}

void fg_agent_start(struct fg_agent *a)
{
	fg_info("agent: boot %s, %zu server(s), reporting every %lld ms", a->boot_id, a->nurls,
		(long long)(a->report_ns / FG_NS_PER_MS));
	persist(a, a->old.n > 0);
	fg_timer_start(a->loop, &a->report_timer, a->report_ns);
	connect_next(a);
}

void fg_agent_shutdown(struct fg_agent *a)
{
	if (!a || a->stopping)
		return;
	a->stopping = true;
	sample(a);
	persist(a, true);
	fg_timer_stop(a->loop, &a->retry_timer);
	fg_timer_stop(a->loop, &a->report_timer);
	if (a->hs) {
		fg_ws_hs_cancel(a->hs);
		a->hs = NULL;
	}
	if (a->ws) {
		fg_ws_free(a->ws);
		a->ws = NULL;
	}
	a->link = L_IDLE;
}

void fg_agent_free(struct fg_agent *a)
{
	if (!a)
		return;
	if (a->engine)
		fg_agent_shutdown(a);
	fg_work_free(a->resolver); /* a lookup still running is waited for */
	if (a->rj.res)		   /* looked up, never delivered */
		freeaddrinfo(a->rj.res);
	fg_agent_tunnels_free(a->tunnels);
	fg_engine_free(a->engine);
	if (a->kp)
		fg_timer_stop(a->loop, &a->confirm_timer);
	fg_kplane_free(a->kp); /* our table: exactly what we added */
	fg_kernel_forwarding_restore(a->fwd_changed);
	fg_forward_set_free(&a->kset);
	fg_free(a->kctrs);
	fg_free(a->fw_rollback_err);
	json_decref(a->fw_run);
	json_decref(a->fw_confirmed);
	json_decref(a->fw_rejected);
	fg_pending_free(&a->old);
	fg_free(a->old_req);
	fg_free(a->ctrs);
	json_decref(a->last_result);
	json_decref(a->last_params);
	fg_free(a->token);
	fg_free(a->dir);
	fg_free(a->pin);
	fg_tls_client_free(a->tls);
	fg_free(a);
}

void fg_agent_metrics(struct fg_agent *a, struct fg_strbuf *out)
{
	static const char *const none[] = {NULL};
	fg_engine_metrics(a->engine, out);
	fg_agent_tunnels_metrics(a->tunnels, out);
	fg_prom_family(out, "flowgate_agent_connected", "gauge",
		       "1 while a session with a server is up.");
	fg_prom_sample(out, "flowgate_agent_connected", none, a->link == L_READY);
	fg_prom_family(out, "flowgate_agent_applied_rev", "gauge",
		       "Revision of the desired state running.");
	fg_prom_sample(out, "flowgate_agent_applied_rev", none, (uint64_t)a->applied_rev);
	fg_prom_family(out, "flowgate_agent_connects_total", "counter", "Sessions established.");
	fg_prom_sample(out, "flowgate_agent_connects_total", none, a->m_connects);
	fg_prom_family(out, "flowgate_agent_applies_total", "counter", "Desired states applied.");
	fg_prom_sample(out, "flowgate_agent_applies_total", none, a->m_applies);
	fg_prom_family(out, "flowgate_agent_applies_refused_total", "counter",
		       "Desired states refused as a whole (nothing changed).");
	fg_prom_sample(out, "flowgate_agent_applies_refused_total", none, a->m_apply_fail);
	fg_prom_family(out, "flowgate_agent_reports_total", "counter", "Reports sent.");
	fg_prom_sample(out, "flowgate_agent_reports_total", none, a->m_reports);
}
