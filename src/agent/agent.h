/* `flowgate agent`: the node side of the control protocol (doc/protocol.md).
 * One outbound WebSocket session to a server (failing over between
 * several), the forwarding engine driven by the desired state the server
 * pushes, the state file that lets the node forward before the server
 * answers, and counter reports that survive server outages and agent
 * restarts. Everything runs on the loop given in the options (the
 * engine's control loop). */
#ifndef FG_AGENT_AGENT_H
#define FG_AGENT_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/loop-t.h"
#include "core/strbuf.h"

#define FG_AGENT_DEFAULT_STATE_DIR "/var/lib/flowgate/agent"
#define FG_AGENT_TOKEN_ENV	   "FLOWGATE_NODE_TOKEN"
#define FG_AGENT_MAX_SERVERS	   8

/* A server URL as the agent dials it. */
struct fg_agent_url {
	bool tls;	/* wss:// */
	char host[256]; /* without brackets */
	char port[8];
	char authority[300]; /* Host header: host[:port] as written */
	char path[256];	     /* "/agent" when the URL has none */
};

/* Parses ws://HOST[:PORT][/PATH] or wss://... (pure; net/url.h does the
 * parsing). Returns 0, or -EINVAL with err. */
int fg_agent_url_parse(const char *s, struct fg_agent_url *u, char *err, size_t errlen);

struct fg_agent_opts {
	struct fg_loop *loop;	    /* borrowed */
	const char *const *servers; /* URLs, tried in turn */
	size_t nservers;
	const char *token;	    /* node token (copied) */
	const char *state_dir;	    /* must exist */
	int64_t report_interval_ns; /* 0 = 5 s */
	const char *ca_file;	    /* wss://: CA bundle; NULL = the system's */
	const char *pin;	    /* wss://: SHA-256 of the server certificate;
				       it alone decides when given (tls.md) */
	unsigned workers;	    /* engine threads, 0 = one per core */
	unsigned tunnel_workers;    /* tunnel engine threads, 0 = 1 */
	/* test knobs: 0 = defaults (0.5 s doubling to 30 s) */
	int64_t backoff_min_ns, backoff_max_ns;
};

struct fg_agent;

/* Checks the options, starts the engine and applies the state file (so
 * the node forwards before any server answers), loads pending counters.
 * Returns NULL with err set. */
struct fg_agent *fg_agent_new(const struct fg_agent_opts *o, char *err, size_t errlen);
/* Starts connecting and reporting. */
void fg_agent_start(struct fg_agent *a);
/* Saves pending counters and ends the session; call before stopping the
 * loop on SIGTERM/SIGINT. */
void fg_agent_shutdown(struct fg_agent *a);
/* NULL is fine. */
void fg_agent_free(struct fg_agent *a);

/* Prometheus text: the engine's forwards plus the agent's own gauges. */
void fg_agent_metrics(struct fg_agent *a, struct fg_strbuf *out);

#endif
