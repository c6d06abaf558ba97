/* The agent's tunnel adapter over the tunnel engine (src/tunnel/engine.h):
 * see tunnels.h. */
#include "agent/tunnels.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>

#include "core/alloc.h"
#include "net/rpc.h"
#include "tunnel/engine.h"

/* the server's decoder takes every line the engine writes */
_Static_assert(FG_TUNNEL_HEALTH_MAX <= FG_RPC_WARN_MAX, "a health line fits a report's warn");

struct fg_agent_tunnels {
	struct fg_tunnel_engine *eng;
	char *cert, *key;
};

struct fg_agent_tunnels *fg_agent_tunnels_new(struct fg_loop *loop, struct fg_resolver *resolver,
					      const char *cert, const char *key, unsigned workers)
{
	struct fg_agent_tunnels *t = fg_calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->cert = fg_strdup(cert);
	t->key = fg_strdup(key);
	if (!t->cert || !t->key)
		goto err;
	/* the agent made its pair at start (agent.c): the engine only loads it */
	struct fg_tunnel_engine_opts o = {.loop = loop,
					  .tls_cert = t->cert,
					  .tls_key = t->key,
					  .resolver = resolver,
					  .workers = workers};
	t->eng = fg_tunnel_engine_new(&o);
	if (!t->eng)
		goto err;
	return t;
err:
	fg_agent_tunnels_free(t);
	return NULL;
}

void fg_agent_tunnels_free(struct fg_agent_tunnels *t)
{
	if (!t)
		return;
	fg_tunnel_engine_free(t->eng);
	fg_free(t->cert);
	fg_free(t->key);
	fg_free(t);
}

bool fg_agent_tunnels_available(void)
{
	return true;
}

/* Index of the enabled tunnel an engine error names ("tunnel \"NAME\": ..."),
 * or -1. */
static ssize_t culprit(const struct fg_tunnel_set *set, const char *err)
{
	static const char pre[] = "tunnel \"";
	if (strncmp(err, pre, sizeof(pre) - 1) != 0)
		return -1;
	const char *name = err + sizeof(pre) - 1;
	for (size_t i = 0; i < set->n; i++) {
		size_t n = strlen(set->v[i].name);
		if (set->v[i].enabled && strncmp(name, set->v[i].name, n) == 0 && name[n] == '"')
			return (ssize_t)i;
	}
	return -1;
}

int fg_agent_tunnels_apply(struct fg_agent_tunnels *t, struct fg_tunnel_set *set, char **errs,
			   char *err, size_t errlen)
{
	for (;;) {
		char e[512];
		int rc = fg_tunnel_engine_apply(t->eng, set, e, sizeof(e));
		if (rc == 0)
			return 0;
		/* one tunnel cannot run (its port is taken, a peer's name does
		 * not resolve...): run the rest, report that one */
		ssize_t bad = culprit(set, e);
		if (bad < 0) {
			snprintf(err, errlen, "%s", e);
			return rc;
		}
		fg_free(errs[bad]);
		errs[bad] = fg_strdup(e);
		set->v[bad].enabled = false;
	}
}

int fg_agent_tunnels_counters(struct fg_agent_tunnels *t, const char *name,
			      struct fg_agent_tunnel_counters *out)
{
	struct fg_tunnel_counters c;
	int rc = fg_tunnel_engine_counters(t->eng, name, &c);
	if (rc)
		return rc;
	out->bytes_up = c.bytes_up;
	out->bytes_down = c.bytes_down;
	out->conns_total = c.conns_total;
	out->conns_active = c.conns_active;
	return 0;
}

int fg_agent_tunnels_links(struct fg_agent_tunnels *t, const char *name,
			   struct fg_agent_tunnel_links out[2])
{
	struct fg_tunnel_link_stats ls[2];
	int rc = fg_tunnel_engine_links(t->eng, name, ls);
	for (int i = 0; i < 2; i++) {
		out[i].present = ls[i].present;
		out[i].links_up = ls[i].links_up;
		out[i].rtt_us = ls[i].rtt_us;
	}
	return rc;
}

int fg_agent_tunnels_health(struct fg_agent_tunnels *t, const char *name, char *buf, size_t len)
{
	return fg_tunnel_engine_health(t->eng, name, buf, len);
}

void fg_agent_tunnels_metrics(struct fg_agent_tunnels *t, struct fg_strbuf *out)
{
	fg_tunnel_engine_metrics(t->eng, out);
}
