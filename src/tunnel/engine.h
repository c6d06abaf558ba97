/* The tunnel engine: runs this node's part of each tunnel (doc/tunnel.md)
 * on one event loop — client listeners at an entry, link listeners and
 * dialers, the handshake, TLS / WebSocket / AEAD framing, mux sessions or
 * one link connection per stream, and the exit's connections to its
 * targets. Used by `flowgate forward -c` and by the agent.
 *
 * Threading: every function is called on the thread that runs `loop`
 * (the control loop of the caller). With `workers` > 1 the engine runs
 * that many shards: shard 0 on `loop`, the others on threads of their own,
 * each a whole engine with its own sockets (SO_REUSEPORT) and links; the
 * functions below park the other shards while they run (doc/tunnel.md,
 * "Threads"). */
#ifndef FG_TUNNEL_ENGINE_H
#define FG_TUNNEL_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "core/strbuf.h"
#include "tunnel/config.h"

struct fg_loop;
struct fg_tunnel_engine;

struct fg_resolver;

struct fg_tunnel_engine_opts {
	struct fg_loop *loop; /* borrowed */
	/* This node's certificate and key (PEM) for tls/wss link listeners,
	 * used when a set gives none (the agent: files in its state dir).
	 * NULL: only the set's "tls" paths. */
	const char *tls_cert, *tls_key;
	/* Generate a self-signed pair at these paths when both files are
	 * missing (forward -c). */
	int make_cert;
	/* Handshakes remembered for replay detection; 0 = 131072 (5 MiB).
	 * Size it for 2 x 60 s of link handshakes at the peak rate: without
	 * mux every stream is a handshake (doc/tunnel.md). */
	unsigned replay_capacity;
	/* The loop's name resolver (net/resolver.h) for peers' and targets'
	 * host names, borrowed: it must outlive the engine (forward -c and the
	 * agent pass the forward engine's, fg_engine_resolver). NULL: the
	 * engine makes its own when a tunnel first names a host. */
	struct fg_resolver *resolver;
	/* Shards (threads running tunnels), 0 = 1: everything on `loop`.
	 * Capped at FG_TUNNEL_MAX_WORKERS. */
	unsigned workers;
};
#define FG_TUNNEL_MAX_WORKERS 64

/* NULL on ENOMEM (errno set). */
struct fg_tunnel_engine *fg_tunnel_engine_new(const struct fg_tunnel_engine_opts *opts);
/* Closes every listener, link and stream. NULL is fine. */
void fg_tunnel_engine_free(struct fg_tunnel_engine *e);
/* The number of shards (threads) the engine runs tunnels on. */
unsigned fg_tunnel_engine_workers(const struct fg_tunnel_engine *e);

/* Makes `set` the running tunnels. Tunnels equal to running ones
 * (fg_tunnel_cfg_equal) keep their listeners, links and streams; changed
 * ones are restarted (their streams close), removed ones stop, new ones
 * start. Every new socket is bound and the certificate loaded before
 * anything changes: on failure returns -errno with err naming the tunnel
 * and address, and what runs is left as it was. Host names (peers'
 * addresses, exits' targets) never block or fail an apply: they are
 * resolved asynchronously on the engine's loop and refreshed by TTL; until
 * a name has an address, streams to it are refused and links to it wait. */
int fg_tunnel_engine_apply(struct fg_tunnel_engine *e, const struct fg_tunnel_set *set, char *err,
			   size_t errlen);

/* For the agent: parses the desired state's "tunnels" array (a json_t *;
 * NULL means none) and applies it. Same errors as parse + apply. */
int fg_tunnel_engine_apply_json(struct fg_tunnel_engine *e, const void *tunnels_json, char *err,
				size_t errlen);

/* Appends the Prometheus text of every tunnel (flowgate_tunnel_*). */
void fg_tunnel_engine_metrics(struct fg_tunnel_engine *e, struct fg_strbuf *out);

/* Counters of one tunnel on this node (kind "tunnel" in agent reports).
 * Bytes count what this node passed on: up = towards the exit (at an
 * exit: written to the target), down = towards the entry (at an entry:
 * written to the client). Monotonic while a tunnel of that name runs. */
struct fg_tunnel_counters {
	uint64_t bytes_up, bytes_down;
	uint64_t conns_total, conns_active; /* streams through this node */
	uint64_t refused;		    /* max_conns, no link, target refused */
	uint64_t links_up;		    /* link connections up now */
	uint64_t link_failures;		    /* dials/handshakes that failed, links lost */
	uint64_t handshakes_refused;	    /* peers we refused (bad key, replay, ...) */
	uint64_t tls_resumed;		    /* tls/wss link connections that resumed a session */
};
/* Returns 0 or -ENOENT (no tunnel of that name). */
int fg_tunnel_engine_counters(struct fg_tunnel_engine *e, const char *name,
			      struct fg_tunnel_counters *out);
/* The health of one side of a tunnel's links on this node. */
struct fg_tunnel_link_stats {
	int present;	   /* this node has the side (an entry has no prev, an exit no next) */
	uint32_t links_up; /* link connections of this side up now */
	/* round trip in microseconds, -1 until measured: the slowest live
	 * link's (a mux link: its PING's, smoothed; otherwise the kernel's
	 * TCP estimate of the link socket, TCP_INFO); with no link up, the
	 * last one measured on this side (without mux: at a link's handshake) */
	int64_t rtt_us;
};
/* out[0]: the prev side (towards the entry), out[1]: next (towards the
 * exit). Cheap (a getsockopt per live link, no allocation): for reports,
 * not for the data path. Returns 0 or -ENOENT (no running tunnel of that
 * name; out is zeroed, rtt -1). */
int fg_tunnel_engine_links(struct fg_tunnel_engine *e, const char *name,
			   struct fg_tunnel_link_stats out[2]);
/* A running tunnel's run-time problems on this node as one line for an
 * operator, "" when there are none: the host names (peers' addresses,
 * targets) whose last lookup failed — how many, the first one and why,
 * e.g. `1 name unresolved: targets[0] "db.internal" (cannot resolve:
 * Domain name not found; streams to it are refused)` — then, "; "
 * between, each dialing side that keeps links up (mux, or a reverse pool)
 * and has had none up for FG_TUNNEL_NOLINK_WARN_NS: `next: no link up for
 * 31s (dialing 10.0.0.2:7301)`. That time is measured between calls (a
 * side without a link at one call and still without one at a later call
 * at least that much later): call it at a steady pace. At most
 * FG_TUNNEL_HEALTH_MAX characters (ASCII; longer is cut) into buf (len
 * bytes). Cheap, no allocation: for reports, not the data path. Returns 0
 * or -ENOENT (no running tunnel of that name; buf is ""). */
#define FG_TUNNEL_HEALTH_MAX 255
/* past the longest re-dial backoff (10 s) twice over: a link that heals
 * by itself never shows */
#define FG_TUNNEL_NOLINK_WARN_NS (30 * 1000000000LL)
int fg_tunnel_engine_health(struct fg_tunnel_engine *e, const char *name, char *buf, size_t len);
/* Calls cb for each running tunnel (name, server id or "", counters). */
void fg_tunnel_engine_foreach(struct fg_tunnel_engine *e,
			      void (*cb)(const char *name, const char *id,
					 const struct fg_tunnel_counters *c, void *arg),
			      void *arg);

#endif
