/* /api/v1/tunnels: tunnels between nodes (doc/api.md, "Tunnels"). The
 * body is the tunnel model of server/tunnel_model.h with nodes and groups
 * by name or id; the store keeps it with ids (so renames follow), plus the
 * copies port and membership lookups need, and a PSK made here and sealed
 * with the server's key. The PSK never leaves the server except inside a
 * node's desired state. Every write refreshes exactly the nodes of the
 * tunnel before and after it. */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/log.h"
#include "net/rpc.h"
#include "server/api_int.h"
#include "server/desired.h"
#include "server/tunnel_model.h"
#include "tunnel/config.h"

#define PORT_TRIES 1000 /* link ports tried when allocating one */

/* Fields the view computes; a body may carry them back (GET, edit, PUT):
 * they are ignored. */
static const char *const computed[] = {"path", "problems", "key"};

/* ---- ids <-> names --------------------------------------------------- */

static const char *node_name(struct fg_store *st, int64_t id, char *buf, size_t len)
{
	struct fg_node n;
	if (st->ops->node_get(st, id, &n) != 0) {
		snprintf(buf, len, "%lld", (long long)id);
		return buf;
	}
	snprintf(buf, len, "%s", n.name);
	fg_node_deinit(&n);
	return buf;
}

static void name_of(struct fg_store *st, json_t *parent, const char *key, json_t *arr, size_t i)
{
	json_t *v = arr ? json_array_get(arr, i) : json_object_get(parent, key);
	char buf[FG_STORE_NAME_MAX + 24];
	if (!json_is_integer(v))
		return;
	json_t *s = json_string(node_name(st, json_integer_value(v), buf, sizeof(buf)));
	if (arr)
		json_array_set_new(arr, i, s);
	else
		json_object_set_new(parent, key, s);
}

/* The stored JSON with names for ids, plus id and name: what a body may
 * look like. */
static json_t *tunnel_editable(struct fg_store *st, const struct fg_tunnel *t)
{
	json_t *j = json_loads(t->json ? t->json : "{}", 0, NULL);
	if (!j)
		j = json_object();
	json_t *en = json_object_get(j, "entry");
	if (json_is_object(en)) {
		name_of(st, en, "node", NULL, 0);
		json_t *g = json_object_get(en, "group");
		struct fg_group grp;
		if (json_is_integer(g) && st->ops->group_get(st, json_integer_value(g), &grp) == 0)
			json_object_set_new(en, "group", json_string(grp.name));
	}
	json_t *a;
	size_t i;
	json_t *v;
	if ((a = json_object_get(j, "hops")))
		json_array_foreach(a, i, v) name_of(st, NULL, NULL, a, i);
	if ((a = json_object_get(j, "exits")))
		json_array_foreach(a, i, v) name_of(st, NULL, NULL, a, i);
	name_of(st, j, "exit", NULL, 0);
	json_object_set_new(j, "id", json_integer(t->id));
	json_object_set_new(j, "name", json_string(t->name));
	json_object_set_new(j, "enabled", json_boolean(t->enabled));
	return j;
}

/* The error a node reported for this tunnel, "" if none. */
static void reported_error(const struct fg_node *n, int64_t tid, char *out, size_t len)
{
	out[0] = 0;
	json_t *e = n->errors ? json_loads(n->errors, 0, NULL) : NULL;
	size_t i;
	json_t *v;
	json_array_foreach(e, i, v)
	{
		const char *kind = json_string_value(json_object_get(v, "kind"));
		json_t *id = json_object_get(v, "id");
		if (kind && strcmp(kind, "tunnel") == 0 && json_is_integer(id) &&
		    json_integer_value(id) == tid) {
			snprintf(out, len, "%s",
				 json_string_value(json_object_get(v, "error"))
				     ? json_string_value(json_object_get(v, "error"))
				     : "failed");
			break;
		}
	}
	json_decref(e);
}

static json_t *ms_or_null(int64_t us)
{
	return us >= 0 ? json_real((double)us / 1000.0) : json_null();
}

/* A path node's link health as its agent last reported it (nulls when it
 * is offline, the tunnel disabled, or nothing reported): links_up, the
 * round trip of each side, and rtt_ms, the hop it dials or accepts
 * towards the exit (at an exit: towards the previous node). */
static void add_links(struct fg_api *api, json_t *o, int64_t node_id, int64_t tunnel_id,
		      bool is_exit, bool live)
{
	struct fg_hub_tunnel_links l;
	if (!live || fg_hub_tunnel_links(api->hub, node_id, tunnel_id, &l) < 0)
		l.links_up = l.rtt_prev_us = l.rtt_next_us = -1;
	json_object_set_new(o, "links_up",
			    l.links_up >= 0 ? json_integer(l.links_up) : json_null());
	json_object_set_new(o, "rtt_prev_ms", ms_or_null(l.rtt_prev_us));
	json_object_set_new(o, "rtt_next_ms", ms_or_null(l.rtt_next_us));
	json_object_set_new(o, "rtt_ms", ms_or_null(is_exit ? l.rtt_prev_us : l.rtt_next_us));
}

/* path: one element per position (entry, hops, exits), each with its
 * nodes' state: ok, pending (online, the revision with the tunnel not yet
 * applied), degraded (it runs the tunnel but its latest report warns of a
 * run-time problem: a peer or target name that does not resolve), offline,
 * waiting (cannot run yet: a peer's address or fingerprint is missing),
 * error (two places in the tunnel, or what the agent reported), disabled;
 * and their link health (add_links).
 * problems: the non-ok ones as sentences (not pending ones). */
static void add_path(struct fg_api *api, const struct fg_tunnel *t, json_t *view)
{
	struct fg_store *st = api->st;
	struct fg_desired_tunnel d;
	char err[512];
	json_t *path = json_array(), *problems = json_array();
	json_object_set_new(view, "path", path);
	json_object_set_new(view, "problems", problems);
	if (fg_desired_tunnel_load(st, NULL, t, &d, err, sizeof(err)) < 0) {
		json_array_append_new(problems, json_string(err));
		return;
	}
	/* compile checks peers, not the key: a stand-in keeps it honest */
	memset(d.psk, 0, FG_TM_PSK_LEN);
	d.ctx.psk = d.psk;
	d.ctx.psk_len = FG_TM_PSK_LEN;
	size_t last = d.model.nhops + 1;
	for (size_t p = 0; p <= last; p++) {
		const int64_t *ids = p == 0	? d.ctx.entry_members
				     : p < last ? &d.model.hops[p - 1]
						: d.model.exits;
		size_t n = p == 0 ? d.ctx.nentry : p < last ? 1 : d.model.nexits;
		json_t *nodes = json_array();
		json_array_append_new(path, json_pack("{s:s, s:o}", "role",
						      p == 0	 ? "entry"
						      : p < last ? "relay"
								 : "exit",
						      "nodes", nodes));
		for (size_t k = 0; k < n; k++) {
			const struct fg_node *row = NULL;
			for (size_t r = 0; r < d.ctx.nnodes; r++)
				if (d.rows[r].id == ids[k])
					row = &d.rows[r];
			if (!row)
				continue;
			json_t *o = NULL;
			char why[512], rep[512];
			int rc = fg_tm_compile(&d.model, &d.ctx, ids[k], &o, why, sizeof(why));
			json_decref(o);
			reported_error(row, t->id, rep, sizeof(rep));
			bool online = fg_hub_online(api->hub, row->id);
			if (!rep[0] && rc == 0 && !fg_hub_runs_tunnels(api->hub, row->id))
				snprintf(rep, sizeof(rep),
					 "its agent (%s) cannot run tunnels: upgrade it",
					 row->version[0] ? row->version : "an older version");
			const char *state = !t->enabled	       ? "disabled"
					    : rc == -EAGAIN    ? "waiting"
					    : rc < 0 || rep[0] ? "error"
					    : !online	       ? "offline"
							       : "ok";
			/* the document holding the tunnel is not applied yet: the
			 * node does not run it (as it is now) before it answers */
			int64_t applied, desired;
			char pend[96] = "";
			if (strcmp(state, "ok") == 0 &&
			    fg_hub_node_revs(api->hub, row->id, &applied, &desired) &&
			    applied < desired) {
				state = "pending";
				snprintf(pend, sizeof(pend),
					 "applying revision %lld (the node runs %lld)",
					 (long long)desired, (long long)applied);
			}
			/* it runs the tunnel, but its engine says part of it cannot
			 * work right now (a name that does not resolve): a run-time
			 * condition, gone with the report that no longer says it */
			struct fg_hub_tunnel_links hl;
			char warn[FG_RPC_WARN_MAX + 1] = "";
			if (strcmp(state, "ok") == 0 &&
			    fg_hub_tunnel_links(api->hub, row->id, t->id, &hl) == 0 && hl.warn[0]) {
				state = "degraded";
				snprintf(warn, sizeof(warn), "%s", hl.warn);
			}
			const char *detail = pend[0]		 ? pend
					     : warn[0]		 ? warn
					     : rep[0] && rc == 0 ? rep
								 : why;
			const char *addr = row->address[0] ? row->address : row->seen_address;
			json_t *no =
			    json_pack("{s:I, s:s, s:b, s:s, s:s, s:s}", "id", (json_int_t)row->id,
				      "name", row->name, "online", online, "address", addr, "state",
				      state, "detail", t->enabled ? detail : "");
			add_links(api, no, row->id, t->id, p == last, online && t->enabled);
			json_array_append_new(nodes, no);
			if (strcmp(state, "pending") == 0)
				; /* on its way: not a problem */
			else if (t->enabled && (rc < 0 || rep[0] || why[0] || warn[0]))
				json_array_append_new(problems,
						      json_sprintf("%s: %s", row->name, detail));
			else if (t->enabled && !online)
				json_array_append_new(problems,
						      json_sprintf("%s: offline", row->name));
		}
	}
	fg_desired_tunnel_deinit(&d);
}

/* The key's ids and rotation times: never key material. */
static json_t *key_info(const struct fg_api *api, const struct fg_tunnel *t)
{
	json_t *k = json_pack("{s:I}", "id", (json_int_t)t->key_id);
	json_object_set_new(k, "rotated", t->rotated ? json_integer(t->rotated) : json_null());
	json_object_set_new(k, "previous_id",
			    t->prev_psk ? json_integer(t->prev_key_id) : json_null());
	json_object_set_new(k, "previous_until",
			    t->prev_psk ? json_integer(t->rotated + api->tunnel_key_grace_s)
					: json_null());
	return k;
}

static json_t *tunnel_view(struct fg_api *api, const struct fg_tunnel *t)
{
	json_t *j = tunnel_editable(api->st, t);
	add_path(api, t, j);
	json_object_set_new(j, "key", key_info(api, t));
	return j;
}

void api_tunnel_nodes(struct fg_store *st, const struct fg_tunnel *t, struct idset *s)
{
	if (t->entry_node_id > 0)
		api_idset_add(s, t->entry_node_id);
	api_idset_add_group(st, s, t->entry_group_id);
	for (size_t i = 0; i < t->nnodes; i++)
		api_idset_add(s, t->nodes[i]);
}

void api_tunnel_peers_of(struct fg_store *st, int64_t node_id, struct idset *s)
{
	struct fg_tunnel *v;
	size_t n;
	api_idset_add(s, node_id);
	if (st->ops->tunnels_for_node(st, node_id, &v, &n) < 0)
		return;
	for (size_t i = 0; i < n; i++)
		api_tunnel_nodes(st, &v[i], s);
	fg_tunnel_list_free(v, n);
}

bool api_tunnel_name_taken(struct fg_store *st, const char *name)
{
	struct fg_tunnel t;
	if (st->ops->tunnel_get_by_name(st, name, &t) != 0)
		return false;
	fg_tunnel_deinit(&t);
	return true;
}

enum fg_http_verdict api_port_conflict(struct api_call *c, const char *field, const char *kind,
				       int64_t other, const struct fg_port_claim *cl)
{
	struct fg_store *st = c->api->st;
	char what[160], where[96], ports[32];
	snprintf(what, sizeof(what), "another %s", kind);
	if (strcmp(kind, "forward") == 0) {
		struct fg_forward f;
		if (st->ops->forward_get(st, other, &f) == 0) {
			snprintf(what, sizeof(what), "forward \"%s\" (id %lld)", f.name,
				 (long long)f.id);
			fg_forward_deinit(&f);
		}
	} else {
		struct fg_tunnel t;
		if (st->ops->tunnel_get(st, other, &t) == 0) {
			snprintf(what, sizeof(what), "tunnel \"%s\" (id %lld)", t.name,
				 (long long)t.id);
			fg_tunnel_deinit(&t);
		}
	}
	if (cl->node_id > 0) {
		char nb[FG_STORE_NAME_MAX + 24];
		snprintf(where, sizeof(where), "node %s",
			 node_name(st, cl->node_id, nb, sizeof(nb)));
	} else {
		struct fg_group g;
		if (st->ops->group_get(st, cl->group_id, &g) == 0)
			snprintf(where, sizeof(where), "a node of group %s", g.name);
		else
			snprintf(where, sizeof(where), "the same node");
	}
	if (cl->port_lo == cl->port_hi)
		snprintf(ports, sizeof(ports), "port %u", cl->port_lo);
	else
		snprintf(ports, sizeof(ports), "ports %u-%u", cl->port_lo, cl->port_hi);
	return api_fail(c->r, 409, "conflict", field, "%s: %s/tcp is already used by %s on %s",
			field, ports, what, where);
}

/* ---- building a tunnel from a body ------------------------------------ */

struct claim {
	struct fg_port_claim c;
	char field[48];
};

struct tbuild {
	struct fg_tunnel t; /* json, nodes, ports owned here */
	struct fg_tm m;
	json_t *stored;
	struct claim claims[1 + FG_TM_MAX_LINKS + FG_TM_MAX_EXITS];
	size_t nclaims;
};

static void tbuild_deinit(struct tbuild *b)
{
	free(b->t.json);
	fg_free(b->t.nodes);
	fg_free(b->t.ports);
	fg_tm_deinit(&b->m);
	json_decref(b->stored);
	memset(b, 0, sizeof(*b));
}

/* Replaces a node reference (name or id) at parent[key] or arr[i] by its
 * id. Answers 400 and returns false when bad or unknown. */
static bool resolve(struct api_call *c, json_t *parent, const char *key, json_t *arr, size_t i,
		    const char *field, bool group)
{
	json_t *v = arr ? json_array_get(arr, i) : json_object_get(parent, key);
	char ref[128];
	int rc = api_json_ref(v, ref, sizeof(ref));
	int64_t id = 0;
	if (rc == 0 && group) {
		struct fg_group g;
		if ((rc = api_group_by_ref(c->api->st, ref, &g)) == 0)
			id = g.id;
	} else if (rc == 0) {
		struct fg_node n;
		if ((rc = api_node_by_ref(c->api->st, ref, &n)) == 0) {
			id = n.id;
			fg_node_deinit(&n);
		}
	}
	if (rc == -ENOENT) {
		api_fail(c->r, 400, "invalid", field, "%s: no %s \"%s\"", field,
			 group ? "group" : "node", ref);
		return false;
	}
	if (rc < 0) {
		api_fail(c->r, 400, "invalid", field, "%s: a %s name or id", field,
			 group ? "group" : "node");
		return false;
	}
	if (arr)
		json_array_set_new(arr, i, json_integer(id));
	else
		json_object_set_new(parent, key, json_integer(id));
	return true;
}

static bool resolve_all(struct api_call *c, json_t *o)
{
	json_t *en = json_object_get(o, "entry");
	if (json_is_object(en)) {
		if (json_object_get(en, "node") &&
		    !resolve(c, en, "node", NULL, 0, "entry.node", 0))
			return false;
		if (json_object_get(en, "group") &&
		    !resolve(c, en, "group", NULL, 0, "entry.group", 1))
			return false;
	}
	const char *lists[] = {"hops", "exits"};
	for (size_t l = 0; l < 2; l++) {
		json_t *a = json_object_get(o, lists[l]);
		size_t i;
		json_t *v;
		if (!json_is_array(a))
			continue;
		json_array_foreach(a, i, v)
		{
			char field[32];
			snprintf(field, sizeof(field), "%s[%zu]", lists[l], i);
			if (!resolve(c, NULL, NULL, a, i, field, 0))
				return false;
		}
	}
	if (json_object_get(o, "exit") && !resolve(c, o, "exit", NULL, 0, "exit", 0))
		return false;
	return true;
}

static void add_claim(struct tbuild *b, int64_t node, int64_t group, uint16_t lo, uint16_t hi,
		      const char *field)
{
	struct claim *cl = &b->claims[b->nclaims++];
	cl->c = (struct fg_port_claim){.node_id = node,
				       .group_id = group,
				       .port_lo = lo,
				       .port_hi = hi,
				       .proto = FG_PROTO_TCP,
				       .skip_tunnel = b->t.id};
	snprintf(cl->field, sizeof(cl->field), "%s", field);
}

/* Where the tunnel listens: the entry's client port on the entry node or
 * group, and each link's port on the node(s) that accept it. */
static void make_claims(struct tbuild *b)
{
	const struct fg_tm *m = &b->m;
	b->nclaims = 0;
	add_claim(b, m->entry_node, m->entry_group, m->listen_lo, m->listen_hi, "entry.listen");
	for (size_t i = 0; i < m->nlinks; i++) {
		size_t pos = m->links[i].reverse ? i : i + 1;
		uint16_t port = fg_tm_link_port(m, i);
		char field[48];
		if (m->links[i].port)
			snprintf(field, sizeof(field), "links[%zu].port", i);
		else
			snprintf(field, sizeof(field), "link_port");
		if (pos == 0)
			add_claim(b, m->entry_node, m->entry_group, port, port, field);
		else if (pos <= m->nhops)
			add_claim(b, m->hops[pos - 1], 0, port, port, field);
		else
			for (size_t k = 0; k < m->nexits; k++)
				add_claim(b, m->exits[k], 0, port, port, field);
	}
}

/* Two claims of this tunnel on one node overlapping: index of the later
 * one, or -1. */
static ssize_t self_overlap(const struct tbuild *b)
{
	for (size_t i = 0; i < b->nclaims; i++)
		for (size_t k = i + 1; k < b->nclaims; k++) {
			const struct fg_port_claim *x = &b->claims[i].c, *y = &b->claims[k].c;
			bool same = (x->node_id && x->node_id == y->node_id) ||
				    (x->group_id && x->group_id == y->group_id);
			if (same && x->port_lo <= y->port_hi && y->port_lo <= x->port_hi)
				return (ssize_t)k;
		}
	return -1;
}

/* First claim taken by someone else: 0, -EEXIST with *idx/kind/other, or
 * a store error. from: first claim index to check. */
static int taken(struct fg_store *st, const struct tbuild *b, size_t from, size_t *idx,
		 const char **kind, int64_t *other)
{
	for (size_t i = from; i < b->nclaims; i++) {
		int rc = st->ops->port_conflict(st, &b->claims[i].c, kind, other);
		if (rc) {
			*idx = i;
			return rc;
		}
	}
	return 0;
}

/* Picks the lowest link port from FG_TM_PORT_DEFAULT that every listening
 * node of the links has free. Answers and returns false if none. */
static bool allocate_link_port(struct api_call *c, struct tbuild *b)
{
	struct fg_store *st = c->api->st;
	unsigned tries = 0;
	for (unsigned p = FG_TM_PORT_DEFAULT; p <= FG_TM_PORT_LAST && tries < PORT_TRIES;
	     p++, tries++) {
		b->m.link_port = (uint16_t)p;
		make_claims(b);
		if (self_overlap(b) >= 0)
			continue;
		size_t idx;
		const char *kind;
		int64_t other;
		int rc = taken(st, b, 1, &idx, &kind, &other);
		if (rc == 0) {
			json_object_set_new(b->stored, "link_port", json_integer(p));
			return true;
		}
		if (rc != -EEXIST) {
			api_store_fail(c->r, rc, "looking for a free link port");
			return false;
		}
	}
	api_fail(c->r, 409, "conflict", "link_port",
		 "link_port: no port from %d on is free on every node that listens; set one",
		 FG_TM_PORT_DEFAULT);
	return false;
}

/* What the API accepts every agent can run: each role of the tunnel,
 * compiled with stand-in peers, must pass the engine's own parser. */
static bool engine_check(struct api_call *c, const struct tbuild *b)
{
	const struct fg_tm *m = &b->m;
	struct fg_tm_node nodes[1 + FG_TM_MAX_HOPS + FG_TM_MAX_EXITS];
	size_t nn = 0;
	int64_t entry = m->entry_node ? m->entry_node : -1; /* a group: any member */
	static const char fp[] = "00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:"
				 "00:00:00:00:00:00:00:00:00:00:00:00";
	nodes[nn++] = (struct fg_tm_node){entry, "entry", "192.0.2.1", fp};
	for (size_t i = 0; i < m->nhops; i++)
		nodes[nn++] = (struct fg_tm_node){m->hops[i], "hop", "192.0.2.2", fp};
	for (size_t i = 0; i < m->nexits; i++)
		nodes[nn++] = (struct fg_tm_node){m->exits[i], "exit", "192.0.2.3", fp};
	uint8_t psk[FG_TM_PSK_LEN] = {1};
	struct fg_tm_ctx ctx = {.tunnel_id = b->t.id ? b->t.id : 1,
				.name = b->t.name,
				.nodes = nodes,
				.nnodes = nn,
				.entry_members = &entry,
				.nentry = 1,
				.psk = psk,
				.psk_len = sizeof(psk)};
	for (size_t i = 0; i < nn; i++) {
		json_t *o = NULL;
		char why[512], err[512];
		int rc = fg_tm_compile(m, &ctx, nodes[i].id, &o, why, sizeof(why));
		if (rc < 0 || !o) {
			json_decref(o);
			api_fail(c->r, rc == -ENOMEM ? 500 : 400, "invalid", NULL,
				 "the %s role cannot be compiled: %s", nodes[i].name,
				 why[0] ? why : strerror(-rc));
			return false;
		}
		json_t *arr = json_pack("[o]", o);
		struct fg_tunnel_set set = {0};
		rc = fg_tunnel_parse_json(arr, &set, err, sizeof(err));
		json_decref(arr);
		fg_tunnel_set_free(&set);
		if (rc < 0) {
			/* "tunnels[0].next.ws.path: ..." -> the message after the path */
			const char *msg = strstr(err, ": ");
			api_fail(c->r, 400, "invalid", NULL, "the %s role would not run: %s",
				 nodes[i].name, msg ? msg + 2 : err);
			return false;
		}
	}
	return true;
}

/* Merges body into old's editable form (PATCH) or takes it (POST), checks
 * and resolves it into b. Answers and returns false on any error. */
static bool tunnel_from_body(struct api_call *c, json_t *body, const struct fg_tunnel *old,
			     struct tbuild *b)
{
	struct fg_store *st = c->api->st;
	json_t *o = old ? tunnel_editable(st, old) : json_object();
	const char *key;
	json_t *val;
	bool ok = false;
	memset(b, 0, sizeof(*b));
	json_object_foreach(body, key, val)
	{
		bool skip = false;
		for (size_t i = 0; i < sizeof(computed) / sizeof(computed[0]); i++)
			skip |= strcmp(key, computed[i]) == 0;
		if (skip)
			continue;
		if (strcmp(key, "id") == 0) {
			if (old && json_is_integer(val) && json_integer_value(val) == old->id)
				continue;
			api_fail(c->r, 400, "invalid", "id", "id: set by the server");
			goto out;
		}
		json_t *cur = json_object_get(o, key);
		if (strcmp(key, "entry") == 0 && json_is_object(val) && json_is_object(cur)) {
			/* one level deeper: {"entry": {"listen": "9001"}} keeps the node */
			const char *k2;
			json_t *v2;
			if (json_object_get(val, "node") && !json_object_get(val, "group"))
				json_object_del(cur, "group");
			if (json_object_get(val, "group") && !json_object_get(val, "node"))
				json_object_del(cur, "node");
			json_object_foreach(val, k2, v2)
			{
				if (json_is_null(v2))
					json_object_del(cur, k2);
				else
					json_object_set(cur, k2, v2);
			}
			continue;
		}
		if (json_is_null(val))
			json_object_del(o, key);
		else
			json_object_set(o, key, val);
	}
	/* the other form of the exit gives way */
	if (old && json_object_get(body, "exit") && !json_object_get(body, "exits"))
		json_object_del(o, "exits");
	if (old && json_object_get(body, "exits") && !json_object_get(body, "exit"))
		json_object_del(o, "exit");
	json_object_del(o, "id");

	json_t *namev = json_object_get(o, "name");
	const char *why;
	if (!json_is_string(namev)) {
		api_fail(c->r, 400, "invalid", "name", "name: a string is required");
		goto out;
	}
	if ((why = api_name_invalid(json_string_value(namev)))) {
		api_fail(c->r, 400, "invalid", "name", "name: %s", why);
		goto out;
	}
	snprintf(b->t.name, sizeof(b->t.name), "%s", json_string_value(namev));
	b->t.id = old ? old->id : 0;

	b->stored = json_deep_copy(o);
	if (!b->stored) {
		api_fail(c->r, 500, "internal", NULL, "out of memory");
		goto out;
	}
	json_object_del(b->stored, "name");
	if (!resolve_all(c, b->stored))
		goto out;
	char field[64], err[512];
	if (fg_tm_parse(b->stored, &b->m, field, sizeof(field), err, sizeof(err)) < 0) {
		api_fail(c->r, 400, "invalid", field[0] ? field : NULL, "%s", err);
		goto out;
	}
	if (b->m.entry_group) {
		int64_t *mem;
		size_t n;
		if (st->ops->group_members(st, b->m.entry_group, &mem, &n) == 0) {
			for (size_t i = 0; i < n; i++) {
				bool dup = false;
				for (size_t k = 0; k < b->m.nhops; k++)
					dup |= b->m.hops[k] == mem[i];
				for (size_t k = 0; k < b->m.nexits; k++)
					dup |= b->m.exits[k] == mem[i];
				if (dup) {
					char nb[FG_STORE_NAME_MAX + 24];
					api_fail(
					    c->r, 400, "invalid", "entry.group",
					    "entry.group: its member %s is also a hop or an exit "
					    "of the tunnel",
					    node_name(st, mem[i], nb, sizeof(nb)));
					fg_free(mem);
					goto out;
				}
			}
			fg_free(mem);
		}
	}
	if (!old || strcmp(old->name, b->t.name) != 0) {
		struct fg_forward f;
		if (api_forward_by_ref(st, b->t.name, &f) == 0) {
			fg_forward_deinit(&f);
			api_fail(c->r, 409, "exists", "name",
				 "name: a forward named \"%s\" exists (forwards and tunnels share "
				 "names on the nodes)",
				 b->t.name);
			goto out;
		}
	}

	/* ports: allocate the link port if none is set, then check them all */
	bool uses_default = false;
	for (size_t i = 0; i < b->m.nlinks; i++)
		uses_default |= b->m.links[i].port == 0;
	if (uses_default && !b->m.link_port && !allocate_link_port(c, b))
		goto out;
	make_claims(b);
	ssize_t so = self_overlap(b);
	if (so >= 0) {
		api_fail(c->r, 409, "conflict", b->claims[so].field,
			 "%s: port %u is used twice by this tunnel on the same node",
			 b->claims[so].field, b->claims[so].c.port_lo);
		goto out;
	}
	size_t idx;
	const char *kind;
	int64_t other;
	int rc = taken(st, b, 0, &idx, &kind, &other);
	if (rc == -EEXIST) {
		api_port_conflict(c, b->claims[idx].field, kind, other, &b->claims[idx].c);
		goto out;
	}
	if (rc < 0) {
		api_store_fail(c->r, rc, "checking ports");
		goto out;
	}

	if (!engine_check(c, b))
		goto out;

	/* the row */
	b->t.entry_node_id = b->m.entry_node;
	b->t.entry_group_id = b->m.entry_group;
	b->t.enabled = b->m.enabled;
	b->t.nodes = fg_calloc(b->m.nhops + b->m.nexits + 1, sizeof(int64_t));
	b->t.ports = fg_calloc(b->nclaims + 1, sizeof(*b->t.ports));
	b->t.json = json_dumps(b->stored, JSON_COMPACT | JSON_SORT_KEYS);
	if (!b->t.nodes || !b->t.ports || !b->t.json) {
		api_fail(c->r, 500, "internal", NULL, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < b->m.nhops; i++)
		b->t.nodes[b->t.nnodes++] = b->m.hops[i];
	for (size_t i = 0; i < b->m.nexits; i++)
		b->t.nodes[b->t.nnodes++] = b->m.exits[i];
	for (size_t i = 0; i < b->nclaims; i++)
		b->t.ports[b->t.nports++] =
		    (struct fg_tunnel_port){b->claims[i].c.node_id, b->claims[i].c.group_id,
					    b->claims[i].c.port_lo, b->claims[i].c.port_hi};
	ok = true;
out:
	json_decref(o);
	return ok;
}

/* A fresh PSK, sealed. NULL (answered) on failure. */
static char *new_psk(struct api_call *c)
{
	uint8_t psk[FG_TM_PSK_LEN];
	if (!c->api->secret) {
		api_fail(c->r, 500, "internal", NULL,
			 "the server has no secret key: tunnels cannot be created");
		return NULL;
	}
	randombytes_buf(psk, sizeof(psk));
	char *sealed = fg_secret_seal(c->api->secret, psk, sizeof(psk));
	sodium_memzero(psk, sizeof(psk));
	if (!sealed)
		api_fail(c->r, 500, "internal", NULL, "out of memory");
	return sealed;
}

/* Writes b (create when old is NULL). 0, or answered (-1). */
static int tunnel_store(struct api_call *c, struct tbuild *b, const struct fg_tunnel *old)
{
	struct fg_store *st = c->api->st;
	int rc;
	if (old) {
		b->t.psk = NULL; /* keep */
		rc = st->ops->tunnel_update(st, &b->t);
	} else {
		b->t.psk = new_psk(c);
		if (!b->t.psk)
			return -1;
		rc = st->ops->tunnel_create(st, &b->t);
		fg_free(b->t.psk);
		b->t.psk = NULL;
	}
	if (rc == -EEXIST) {
		api_fail(c->r, 409, "exists", "name", "name: a tunnel named \"%s\" exists",
			 b->t.name);
		return -1;
	}
	if (rc < 0) {
		api_store_fail(c->r, rc, "writing the tunnel");
		return -1;
	}
	return 0;
}

static enum fg_http_verdict tunnel_write(struct api_call *c, const struct fg_tunnel *old)
{
	struct fg_store *st = c->api->st;
	json_t *body = api_body_object(c->r);
	if (!body)
		return FG_HTTP_DONE;
	struct tbuild b;
	enum fg_http_verdict v = FG_HTTP_DONE;
	struct idset s = {0};
	bool ok = tunnel_from_body(c, body, old, &b);
	json_decref(body);
	if (!ok || tunnel_store(c, &b, old) < 0)
		goto out;
	struct fg_tunnel now;
	int rc = st->ops->tunnel_get(st, b.t.id, &now);
	if (rc < 0) {
		v = api_store_fail(c->r, rc, "reading the tunnel");
		goto out;
	}
	json_t *after = tunnel_editable(st, &now);
	json_t *before = old ? tunnel_editable(st, old) : NULL;
	api_audit(c, old ? "update" : "create", "tunnel", now.id, before, after);
	json_decref(before);
	json_decref(after);
	if (old)
		api_tunnel_nodes(st, old, &s);
	api_tunnel_nodes(st, &now, &s);
	api_idset_refresh(c->api, &s);
	v = api_reply(c->r, old ? 200 : 201, tunnel_view(c->api, &now));
	fg_tunnel_deinit(&now);
out:
	fg_free(s.v);
	tbuild_deinit(&b);
	return v;
}

/* POST /tunnels/{ref}/rotate-key: a new key with the next key id. The
 * nodes then dial with it and, for the grace period, still accept the key
 * it replaces (fg_api_tunnel_keys_expire drops that one afterwards); links
 * up stay up. A rotation during a grace period drops the oldest key at
 * once. */
static enum fg_http_verdict tunnel_rotate(struct api_call *c, const struct fg_tunnel *t)
{
	struct fg_store *st = c->api->st;
	struct idset s = {0};
	char *sealed = new_psk(c);
	if (!sealed)
		return FG_HTTP_DONE;
	int64_t now = api_now();
	int64_t key_id = (t->key_id + 1) & 0xffffffff;
	int rc = st->ops->tunnel_set_keys(st, t->id, sealed, key_id, t->psk, t->key_id, now);
	fg_free(sealed);
	if (rc < 0)
		return api_store_fail(c->r, rc, "rotating the tunnel's key");
	struct fg_tunnel after;
	if ((rc = st->ops->tunnel_get(st, t->id, &after)) < 0)
		return api_store_fail(c->r, rc, "reading the tunnel");
	json_t *b = key_info(c->api, t), *a = key_info(c->api, &after);
	api_audit(c, "rotate-key", "tunnel", t->id, b, a);
	json_decref(b);
	json_decref(a);
	fg_info("api: tunnel %lld (%s): key rotated by %s: key id %lld, previous %lld accepted "
		"until %lld",
		(long long)t->id, t->name, c->who.name, (long long)key_id, (long long)t->key_id,
		(long long)(now + c->api->tunnel_key_grace_s));
	api_tunnel_nodes(st, &after, &s);
	api_idset_refresh(c->api, &s);
	fg_free(s.v);
	enum fg_http_verdict v = api_reply(c->r, 200, tunnel_view(c->api, &after));
	fg_tunnel_deinit(&after);
	return v;
}

int fg_api_tunnel_keys_expire(struct fg_api *api, int64_t now)
{
	struct fg_store *st = api->st;
	struct fg_tunnel *v;
	size_t n;
	struct idset s = {0};
	int rc = st->ops->tunnel_list(st, &v, &n);
	if (rc < 0)
		return rc;
	for (size_t i = 0; i < n; i++) {
		const struct fg_tunnel *t = &v[i];
		if (!t->prev_psk || t->rotated + api->tunnel_key_grace_s > now)
			continue;
		rc = st->ops->tunnel_set_keys(st, t->id, t->psk, t->key_id, NULL, 0, t->rotated);
		if (rc < 0)
			break;
		json_t *b = key_info(api, t);
		char *bt = json_dumps(b, JSON_COMPACT | JSON_SORT_KEYS);
		char at[96];
		snprintf(at, sizeof(at), "{\"id\":%lld,\"previous_id\":null,\"rotated\":%lld}",
			 (long long)t->key_id, (long long)t->rotated);
		st->ops->audit_add(st, now, "server", "key-grace-end", "tunnel", t->id, bt, at);
		free(bt);
		json_decref(b);
		fg_info("tunnel %lld (%s): previous key id %lld no longer accepted",
			(long long)t->id, t->name, (long long)t->prev_key_id);
		api_tunnel_nodes(st, t, &s);
	}
	fg_tunnel_list_free(v, n);
	if (s.n)
		api_idset_refresh(api, &s);
	fg_free(s.v);
	return rc < 0 ? rc : 0;
}

static int tunnel_by_ref(struct fg_store *st, const char *ref, struct fg_tunnel *out)
{
	return api_is_id(ref) ? st->ops->tunnel_get(st, strtoll(ref, NULL, 10), out)
			      : st->ops->tunnel_get_by_name(st, ref, out);
}

static enum fg_http_verdict tunnel_list(struct api_call *c)
{
	struct fg_store *st = c->api->st;
	const char *node = fg_http_query(c->r, "node");
	struct fg_tunnel *v;
	size_t n;
	int rc;
	if (node) {
		struct fg_node nd;
		if ((rc = api_node_by_ref(st, node, &nd)) == -ENOENT)
			return api_not_found(c, "node", node);
		if (rc == 0) {
			rc = st->ops->tunnels_for_node(st, nd.id, &v, &n);
			fg_node_deinit(&nd);
		}
	} else {
		rc = st->ops->tunnel_list(st, &v, &n);
	}
	if (rc < 0)
		return api_store_fail(c->r, rc, "listing tunnels");
	json_t *a = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(a, tunnel_view(c->api, &v[i]));
	fg_tunnel_list_free(v, n);
	return api_reply(c->r, 200, json_pack("{s:o}", "tunnels", a));
}

enum fg_http_verdict api_tunnels(struct api_call *c)
{
	struct fg_store *st = c->api->st;
	if (c->nseg == 1) {
		if (strcmp(c->method, "POST") == 0)
			return tunnel_write(c, NULL);
		if (strcmp(c->method, "GET") == 0)
			return tunnel_list(c);
		return api_bad_method(c);
	}
	struct fg_tunnel t;
	int rc = tunnel_by_ref(st, c->seg[1], &t);
	if (rc == -ENOENT)
		return api_not_found(c, "tunnel", c->seg[1]);
	if (rc < 0)
		return api_store_fail(c->r, rc, "reading the tunnel");
	enum fg_http_verdict v;
	const char *m = c->method;
	if (c->nseg == 3 && strcmp(c->seg[2], "stats") == 0 && strcmp(m, "GET") == 0) {
		/* the same bytes pass every node of a tunnel: its series is what
		 * its entry (the client-facing side) moved, or one node's own */
		struct fg_series_query q = {.kind = "tunnel",
					    .object_id = t.id,
					    .node_id = t.entry_node_id,
					    .group_id = t.entry_group_id};
		const char *node = fg_http_query(c->r, "node");
		struct fg_node nd;
		if (node && (rc = api_node_by_ref(st, node, &nd)) == 0) {
			q.node_id = nd.id;
			q.group_id = 0;
			fg_node_deinit(&nd);
		} else if (node) {
			fg_tunnel_deinit(&t);
			return rc == -ENOENT ? api_not_found(c, "node", node)
					     : api_store_fail(c->r, rc, "reading the node");
		}
		v = api_series(c, &q);
	} else if (c->nseg == 3 && strcmp(c->seg[2], "rotate-key") == 0) {
		v = strcmp(m, "POST") == 0 ? tunnel_rotate(c, &t) : api_bad_method(c);
	} else if (c->nseg != 2) {
		v = api_fail(c->r, 404, "not_found", NULL, "no such resource");
	} else if (strcmp(m, "GET") == 0) {
		v = api_reply(c->r, 200, tunnel_view(c->api, &t));
	} else if (strcmp(m, "PATCH") == 0 || strcmp(m, "PUT") == 0) {
		v = tunnel_write(c, &t);
	} else if (strcmp(m, "DELETE") == 0) {
		struct idset s = {0};
		api_tunnel_nodes(st, &t, &s);
		json_t *before = tunnel_editable(st, &t);
		rc = st->ops->tunnel_delete(st, t.id);
		v = api_deleted(c, rc, "tunnel", t.id, before, &s);
	} else {
		v = api_bad_method(c);
	}
	fg_tunnel_deinit(&t);
	return v;
}

/* ---- export / import ------------------------------------------------- */

json_t *api_tunnels_export(struct api_call *c)
{
	struct fg_store *st = c->api->st;
	struct fg_tunnel *v;
	size_t n;
	int rc = st->ops->tunnel_list(st, &v, &n);
	if (rc < 0) {
		api_store_fail(c->r, rc, "exporting tunnels");
		return NULL;
	}
	json_t *a = json_array();
	for (size_t i = 0; i < n; i++) {
		json_t *j = tunnel_editable(st, &v[i]);
		json_object_del(j, "id");
		json_array_append_new(a, j);
	}
	fg_tunnel_list_free(v, n);
	return a;
}

int api_tunnel_import_one(struct api_call *c, size_t i, json_t *item, struct idset *touched)
{
	struct fg_store *st = c->api->st;
	if (!json_is_object(item)) {
		api_fail(c->r, 400, "invalid", "tunnels", "tunnels[%zu]: an object", i);
		return 0;
	}
	json_t *nv = json_object_get(item, "name");
	struct fg_tunnel old;
	bool have_old = json_is_string(nv) && !api_is_id(json_string_value(nv)) &&
			st->ops->tunnel_get_by_name(st, json_string_value(nv), &old) == 0;
	json_t *body = json_deep_copy(item);
	json_object_del(body, "id");
	struct tbuild b;
	bool ok = tunnel_from_body(c, body, have_old ? &old : NULL, &b) &&
		  tunnel_store(c, &b, have_old ? &old : NULL) == 0;
	json_decref(body);
	if (ok) {
		if (have_old)
			api_tunnel_nodes(st, &old, touched);
		api_tunnel_nodes(st, &b.t, touched);
	}
	tbuild_deinit(&b);
	if (have_old)
		fg_tunnel_deinit(&old);
	return ok ? (have_old ? 2 : 1) : 0;
}
