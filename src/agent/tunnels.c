/* The agent's tunnel adapter: see tunnels.h.
 *
 * The tunnel engine (branch tunnel-engine, src/tunnel/engine.h) is not
 * merged yet: until it is, this build checks a tunnels section like the
 * engine would and reports each enabled tunnel as not running, so the
 * server and the UI say so instead of showing it as up. */
#include "agent/tunnels.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"

struct fg_agent_tunnels {
	struct fg_loop *loop;
	char *cert, *key;
};

struct fg_agent_tunnels *fg_agent_tunnels_new(struct fg_loop *loop, const char *cert,
					      const char *key)
{
	struct fg_agent_tunnels *t = fg_calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->loop = loop;
	t->cert = fg_strdup(cert);
	t->key = fg_strdup(key);
	if (!t->cert || !t->key) {
		fg_agent_tunnels_free(t);
		return NULL;
	}
	return t;
}

void fg_agent_tunnels_free(struct fg_agent_tunnels *t)
{
	if (!t)
		return;
	fg_free(t->cert);
	fg_free(t->key);
	fg_free(t);
}

bool fg_agent_tunnels_available(void)
{
	return false;
}

int fg_agent_tunnels_apply(struct fg_agent_tunnels *t, struct fg_tunnel_set *set, char **errs,
			   char *err, size_t errlen)
{
	for (size_t i = 0; i < set->n; i++) {
		if (!set->v[i].enabled)
			continue;
		errs[i] = fg_strdup("not running: this agent was built without the tunnel engine");
		set->v[i].enabled = false;
	}
	return 0;
}

int fg_agent_tunnels_counters(struct fg_agent_tunnels *t, const char *name,
			      struct fg_agent_tunnel_counters *out)
{
	return -ENOENT;
}

void fg_agent_tunnels_metrics(struct fg_agent_tunnels *t, struct fg_strbuf *out)
{
}
