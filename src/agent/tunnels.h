/* The agent's side of tunnels: runs the "tunnels" section of the desired
 * state (doc/tunnel.md) through the tunnel engine and reads its counters.
 * A thin adapter, so agent.c does not depend on how the engine is built.
 * Control loop only. */
#ifndef FG_AGENT_TUNNELS_H
#define FG_AGENT_TUNNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/loop-t.h"
#include "core/strbuf.h"
#include "tunnel/config.h"

struct fg_agent_tunnels;

struct fg_agent_tunnel_counters {
	uint64_t bytes_up, bytes_down, conns_total, conns_active;
};

struct fg_resolver;
/* cert/key: this node's certificate files (copied). resolver: the loop's
 * (the forward engine's), borrowed, outliving the result; NULL makes the
 * tunnel engine use its own. workers: threads running the tunnels (0 or 1:
 * the loop's own; see doc/tunnel.md "Threads"). NULL on ENOMEM. */
struct fg_agent_tunnels *fg_agent_tunnels_new(struct fg_loop *loop, struct fg_resolver *resolver,
					      const char *cert, const char *key, unsigned workers);
void fg_agent_tunnels_free(struct fg_agent_tunnels *t);

/* Whether tunnels can run in this build (false: a set is checked but
 * every tunnel in it reports that it cannot run; the build without the
 * tunnel engine had that). */
bool fg_agent_tunnels_available(void);

/* Makes set (parsed and checked) what runs. A tunnel that cannot run (its
 * port is taken...) does not stop the others: errs[i] (owned, fg_free)
 * gets its error and it is left out. Returns 0, or -errno with err when
 * nothing could be applied (then errs are unset and what ran before
 * runs on). */
int fg_agent_tunnels_apply(struct fg_agent_tunnels *t, struct fg_tunnel_set *set, char **errs,
			   char *err, size_t errlen);

/* Counters of the running tunnel name: 0, or -ENOENT. */
int fg_agent_tunnels_counters(struct fg_agent_tunnels *t, const char *name,
			      struct fg_agent_tunnel_counters *out);

/* Link health of one side (prev: towards the entry, next: towards the
 * exit) of a running tunnel, for reports. */
struct fg_agent_tunnel_links {
	bool present;	   /* this node has that side */
	uint32_t links_up; /* its link connections up now */
	int64_t rtt_us;	   /* round trip, -1 until measured */
};
/* out[0] prev, out[1] next of the running tunnel name: 0, or -ENOENT. */
int fg_agent_tunnels_links(struct fg_agent_tunnels *t, const char *name,
			   struct fg_agent_tunnel_links out[2]);

/* The running tunnel name's run-time problems as one line ("" when none:
 * names whose last lookup failed, see fg_tunnel_engine_health), at most
 * FG_TUNNEL_HEALTH_MAX characters into buf: 0, or -ENOENT. */
int fg_agent_tunnels_health(struct fg_agent_tunnels *t, const char *name, char *buf, size_t len);

void fg_agent_tunnels_metrics(struct fg_agent_tunnels *t, struct fg_strbuf *out);

#endif
