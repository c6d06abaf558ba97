/* The agent hub: one WebSocket session (JSON-RPC 2.0 text frames) per
 * enrolled node, on the server's loop. It authenticates agents by node
 * token, compiles and pushes each node's desired state, records what the
 * agents report (liveness, applied revision, per-object status, counters)
 * in the store. Protocol: doc/protocol.md. Loop thread only. */
#ifndef FG_SERVER_HUB_H
#define FG_SERVER_HUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/loop-t.h"
#include "core/strbuf.h"
#include "server/store.h"

struct fg_hub;

struct fg_secret_key;

struct fg_hub_opts {
	int64_t ping_interval_ns;  /* 0 = default (10 s); offline after 3 missed */
	int64_t flush_interval_ns; /* batching of store writes; 0 = default (1 s) */
	/* opens tunnel PSKs for the desired states (borrowed, must outlive the
	 * hub); NULL = no tunnels in any node's state */
	const struct fg_secret_key *secret;
};

/* store is borrowed and used from the loop thread only. opts may be NULL.
 * Marks every node offline in the store (a server that starts has no
 * sessions). Returns NULL on failure. */
struct fg_hub *fg_hub_new(struct fg_loop *loop, struct fg_store *st, const struct fg_hub_opts *o);
/* Ends every session (calling each one's done callback: free the hub
 * before the HTTP layer), marks their nodes offline and flushes what is
 * queued to the store. NULL is fine. */
void fg_hub_free(struct fg_hub *hub);

/* Authenticates an agent's upgrade request by its bearer token (the node
 * token, "fgn_..."). Returns 0 with *node_id set, or -EACCES. */
int fg_hub_authenticate(struct fg_hub *hub, const char *token, int64_t *node_id);

/* Takes over an upgraded HTTP connection of node node_id: fd (connected,
 * non-blocking) is owned by the hub from now on; early/early_len are
 * WebSocket bytes already read (copied). When the session ends the hub
 * calls done(done_arg) once, so the HTTP layer can release its side.
 * A second session of the same node replaces the first. */
void fg_hub_attach(struct fg_hub *hub, int64_t node_id, int fd, const void *early, size_t early_len,
		   void (*done)(void *done_arg), void *done_arg);

/* The desired state of these nodes may have changed (a forward, group or
 * membership was written and committed): recompile each node's document,
 * bump its desired_rev if the document differs, push it to the node if
 * connected. Unknown ids are skipped. Returns 0 or a negative errno. */
int fg_hub_refresh(struct fg_hub *hub, const int64_t *node_ids, size_t n);

/* A one-off request to a node's agent: JSON-RPC method "task" with params
 * (stolen), e.g. {"kind": "firewall_show"} (doc/protocol.md). cb runs once,
 * on the loop, later (never inside this call): with the agent's result
 * (borrowed for the call) and err NULL, or result NULL and err saying why
 * (the agent's error, node disconnected, timed out after timeout_ns).
 * Returns a handle > 0, or -ENOTCONN (no session past hello) / -ENOMEM,
 * and then cb is never called. */
typedef void (*fg_hub_task_cb)(void *arg, const json_t *result, const char *err);
int64_t fg_hub_task(struct fg_hub *hub, int64_t node_id, json_t *params, int64_t timeout_ns,
		    fg_hub_task_cb cb, void *arg);
/* The caller no longer wants the answer: cb will not be called. Unknown or
 * finished handles are fine. */
void fg_hub_task_cancel(struct fg_hub *hub, int64_t handle);

/* Ends the node's session, if any (node deleted). */
void fg_hub_kick(struct fg_hub *hub, int64_t node_id);

/* The firewall counters of the node's last report this boot
 * ({counters:[{name, packets, bytes}], confirm_pending}), borrowed until
 * the next call into the hub; *ts (optional) = when. NULL if none. */
const json_t *fg_hub_node_firewall(const struct fg_hub *hub, int64_t node_id, int64_t *ts);

/* What a node's agent said of one tunnel in its latest report of its
 * current boot (doc/protocol.md, a counter entry's link fields). */
struct fg_hub_tunnel_links {
	int64_t links_up;		  /* -1: not reported as running */
	int64_t rtt_prev_us, rtt_next_us; /* -1: no such side or not measured */
	/* the run-time warning (a name that does not resolve...), "" if
	 * none; borrowed until the next call into the hub */
	const char *warn;
	int64_t ts; /* Unix seconds of that report */
};
/* 0, or -ENOENT (out all -1) when the node has not reported the tunnel
 * since its session began. */
int fg_hub_tunnel_links(const struct fg_hub *hub, int64_t node_id, int64_t tunnel_id,
			struct fg_hub_tunnel_links *out);
/* The node's applied and desired revisions as the hub holds them (fresher
 * than the store, which gets them batched); false if the hub has not
 * compiled the node since it started. */
bool fg_hub_node_revs(const struct fg_hub *hub, int64_t node_id, int64_t *applied,
		      int64_t *desired);
bool fg_hub_online(const struct fg_hub *hub, int64_t node_id);
/* False only for a connected node whose agent said in hello that it cannot
 * run tunnels (no "tunnel" capability: an agent older than tunnels). */
bool fg_hub_runs_tunnels(const struct fg_hub *hub, int64_t node_id);
size_t fg_hub_sessions(const struct fg_hub *hub);

/* Appends Prometheus text (sessions, messages, applies, store flushes). */
void fg_hub_metrics(const struct fg_hub *hub, struct fg_strbuf *out);

/* Live data for the UI, from memory (no store access). A new reference:
 *   {"nodes": {"<node id>": {"online", "last_seen", "applied_rev",
 *                            "desired_rev", "boot_id", "errors"}},
 *    "forwards": {"<forward id>": {"<node id>": {"bytes_up", "bytes_down",
 *                 "conns", "active", "rate_up", "rate_down", "ts"}}},
 *    "tunnels": {"<tunnel id>": {"<node id>": {... as forwards}}}}
 * Only nodes that connected since the server started appear. Counters are
 * the latest absolute values of the node's current boot; rate_* are bytes/s
 * between its last two reports (0 until there are two); errors is the
 * node's failing objects [{kind, id, name, error}] or null; ts/last_seen
 * are Unix seconds. NULL on allocation failure. */
json_t *fg_hub_live(const struct fg_hub *hub);

#endif
