/* Nodes, groups, forwards, their traffic series, live counters, the audit
 * log, export and import. Every write that changes what a node must run
 * ends with fg_hub_refresh() of exactly the nodes it touched. */
#include <ctype.h>
#include <sodium.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/log.h"
#include "core/strbuf.h"
#include "fwd/config.h"
#include "server/api_int.h"
#include "server/auth.h"
#include "server/live.h"
#include "net/addr.h"

#define SERIES_MAX_POINTS 10000
#define AUDIT_MAX_LIMIT	  500
#define IMPORT_MAX_ITEMS  10000

/* ---- small helpers ---------------------------------------------------- */

static void idset_add(struct idset *s, int64_t id)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->v[i] == id)
			return;
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 8;
		int64_t *nv = fg_malloc(cap * sizeof(*nv));
		if (!nv)
			return;
		if (s->n)
			memcpy(nv, s->v, s->n * sizeof(*nv));
		fg_free(s->v);
		s->v = nv;
		s->cap = cap;
	}
	s->v[s->n++] = id;
}

static void idset_add_group(struct fg_store *st, struct idset *s, int64_t group_id)
{
	int64_t *m;
	size_t n;
	if (group_id <= 0 || st->ops->group_members(st, group_id, &m, &n) < 0)
		return;
	for (size_t i = 0; i < n; i++)
		idset_add(s, m[i]);
	fg_free(m);
}

static void idset_refresh(struct fg_api *api, struct idset *s)
{
	if (s->n) {
		int rc = fg_hub_refresh(api->hub, s->v, s->n);
		if (rc < 0)
			fg_err("api: pushing the new state to %zu node(s) failed: %s", s->n,
			       strerror(-rc));
	}
	fg_free(s->v);
	s->v = NULL;
	s->n = s->cap = 0;
}

static bool is_id(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!isdigit((unsigned char)*s))
			return false;
	return true;
}

/* A reference is an id (all digits) or a name. */
static int node_by_ref(struct fg_store *st, const char *ref, struct fg_node *out)
{
	return is_id(ref) ? st->ops->node_get(st, strtoll(ref, NULL, 10), out)
			  : st->ops->node_get_by_name(st, ref, out);
}

static int group_by_ref(struct fg_store *st, const char *ref, struct fg_group *out)
{
	return is_id(ref) ? st->ops->group_get(st, strtoll(ref, NULL, 10), out)
			  : st->ops->group_get_by_name(st, ref, out);
}

/* A reference in a JSON body: a string (id or name) or an integer id. */
static int json_ref(json_t *v, char *buf, size_t len)
{
	if (json_is_string(v)) {
		snprintf(buf, len, "%s", json_string_value(v));
		return 0;
	}
	if (json_is_integer(v) && json_integer_value(v) > 0) {
		snprintf(buf, len, "%lld", (long long)json_integer_value(v));
		return 0;
	}
	return -EINVAL;
}

static bool method_is(struct api_call *c, const char *m)
{
	return strcmp(c->method, m) == 0;
}

static enum fg_http_verdict not_found(struct api_call *c, const char *kind, const char *ref)
{
	return api_fail(c->r, 404, "not_found", NULL, "no %s \"%s\"", kind, ref);
}

static enum fg_http_verdict bad_method(struct api_call *c)
{
	return api_fail(c->r, 405, "method", NULL, "%s is not allowed on %s", c->method,
			fg_http_path(c->r));
}

static const char *group_name(struct fg_store *st, int64_t id, struct fg_group *tmp)
{
	return st->ops->group_get(st, id, tmp) == 0 ? tmp->name : "?";
}

/* ---- stats ------------------------------------------------------------ */

static bool query_int(struct api_call *c, const char *key, int64_t *out)
{
	const char *s = fg_http_query(c->r, key);
	if (!s)
		return true;
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || end == s || *end || v < 0) {
		api_fail(c->r, 400, "invalid", key,
			 "%s: \"%s\" is not a Unix time or count of seconds", key, s);
		return false;
	}
	*out = v;
	return true;
}

static enum fg_http_verdict series(struct api_call *c, struct fg_series_query *q)
{
	int64_t now = api_now();
	q->to = now;
	q->from = 0;
	q->step = 0;
	if (!query_int(c, "to", &q->to) || !query_int(c, "from", &q->from) ||
	    !query_int(c, "step", &q->step))
		return FG_HTTP_DONE;
	if (!fg_http_query(c->r, "from"))
		q->from = q->to - 3600;
	if (q->from >= q->to)
		return api_fail(c->r, 400, "invalid", "from", "from must be before to");
	if (!fg_http_query(c->r, "step")) {
		int64_t s = (q->to - q->from) / 360;
		q->step = s <= 60 ? 60 : (s + 59) / 60 * 60;
	}
	if (q->step <= 0 || q->step % 60)
		return api_fail(c->r, 400, "invalid", "step", "step: a multiple of 60 seconds");
	if ((q->to - q->from) / q->step > SERIES_MAX_POINTS)
		return api_fail(
		    c->r, 400, "invalid", "step",
		    "step: %lld s gives over %d points for this range; use a larger step",
		    (long long)q->step, SERIES_MAX_POINTS);
	const char *fmt = fg_http_query(c->r, "format");
	bool csv = fmt && strcmp(fmt, "csv") == 0;
	if (fmt && !csv && strcmp(fmt, "json") != 0)
		return api_fail(c->r, 400, "invalid", "format", "format: json or csv");

	struct fg_stat_bucket *v;
	size_t n;
	int rc = c->api->st->ops->query_series(c->api->st, q, &v, &n);
	if (rc < 0)
		return api_store_fail(c->r, rc, "reading the series");
	/* dense: one point per step, zeros where nothing moved, so charts and
	 * spreadsheets need no gap filling */
	int64_t first = q->from / q->step * q->step;
	struct fg_counters total = {0};
	json_t *a = csv ? NULL : json_array();
	struct fg_strbuf b;
	fg_strbuf_init(&b);
	if (csv)
		fg_strbuf_puts(&b, "t,bytes_up,bytes_down,conns\n");
	size_t k = 0;
	for (int64_t t = first; t < q->to; t += q->step) {
		struct fg_counters s = {0};
		while (k < n && v[k].ts < t)
			k++;
		if (k < n && v[k].ts == t)
			s = v[k].sum;
		total.bytes_up += s.bytes_up;
		total.bytes_down += s.bytes_down;
		total.conns += s.conns;
		if (csv)
			fg_strbuf_printf(&b, "%lld,%llu,%llu,%llu\n", (long long)t,
					 (unsigned long long)s.bytes_up,
					 (unsigned long long)s.bytes_down,
					 (unsigned long long)s.conns);
		else
			json_array_append_new(
			    a, json_pack("{s:I, s:I, s:I, s:I}", "t", (json_int_t)t, "bytes_up",
					 (json_int_t)s.bytes_up, "bytes_down",
					 (json_int_t)s.bytes_down, "conns", (json_int_t)s.conns));
	}
	fg_free(v);
	if (csv) {
		fg_http_add_header(c->r, "Content-Disposition",
				   "attachment; filename=\"stats.csv\"");
		fg_http_respond(c->r, 200, "text/csv; charset=utf-8", b.s ? b.s : "", b.len);
		fg_strbuf_deinit(&b);
		return FG_HTTP_DONE;
	}
	fg_strbuf_deinit(&b);
	return api_reply(c->r, 200,
			 json_pack("{s:o, s:{s:I, s:I, s:I}, s:I, s:I, s:I}", "series", a, "total",
				   "bytes_up", (json_int_t)total.bytes_up, "bytes_down",
				   (json_int_t)total.bytes_down, "conns", (json_int_t)total.conns,
				   "from", (json_int_t)q->from, "to", (json_int_t)q->to, "step",
				   (json_int_t)q->step));
}

enum fg_http_verdict api_stats_all(struct api_call *c)
{
	if (!method_is(c, "GET"))
		return bad_method(c);
	struct fg_series_query q = {0};
	return series(c, &q);
}

/* ---- nodes ------------------------------------------------------------ */

static json_t *node_json(struct fg_api *api, const struct fg_node *n)
{
	struct fg_store *st = api->st;
	json_t *groups = json_array();
	int64_t *g;
	size_t ng;
	if (st->ops->node_groups(st, n->id, &g, &ng) == 0) {
		struct fg_group tmp;
		for (size_t i = 0; i < ng; i++)
			json_array_append_new(groups, json_string(group_name(st, g[i], &tmp)));
		fg_free(g);
	}
	json_t *errors = n->errors ? json_loads(n->errors, 0, NULL) : NULL;
	if (!errors)
		errors = json_array();
	json_t *j = json_pack("{s:I, s:s, s:o, s:b, s:I, s:s, s:s, s:I, s:I, s:o, s:I}", "id",
			      (json_int_t)n->id, "name", n->name, "groups", groups, "online",
			      fg_hub_online(api->hub, n->id), "last_seen", (json_int_t)n->last_seen,
			      "version", n->version, "hostname", n->hostname, "desired_rev",
			      (json_int_t)n->desired_rev, "applied_rev", (json_int_t)n->applied_rev,
			      "errors", errors, "created", (json_int_t)n->created);
	/* how peers reach it (tunnels): the operator's address, else the one
	 * its session came from; its certificate's fingerprint from hello */
	json_object_set_new(j, "address", n->address[0] ? json_string(n->address) : json_null());
	json_object_set_new(j, "session_address",
			    n->seen_address[0] ? json_string(n->seen_address) : json_null());
	json_object_set_new(j, "fingerprint",
			    n->fingerprint[0] ? json_string(n->fingerprint) : json_null());
	return j;
}

/* An address peers can dial: an IP literal or a DNS name, no port. NULL
 * if good, else why not. */
static const char *address_invalid(const char *s)
{
	size_t n = strlen(s);
	struct fg_endpoint ep;
	const char *why = NULL;
	if (n == 0 || n > FG_HOST_MAX)
		return "must be 1-253 characters";
	char buf[FG_HOST_MAX + 16];
	snprintf(buf, sizeof(buf), strchr(s, ':') ? "[%s]:1" : "%s:1", s);
	if (fg_endpoint_parse(buf, false, &ep, &why) < 0)
		return "is not an IP address or a host name (no port: tunnels choose it)";
	for (const char *p = s; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '.' && *p != '-' && *p != ':')
			return "is not an IP address or a host name (no port: tunnels choose it)";
	return NULL;
}

enum ref_kind { REF_NODE, REF_GROUP };
static const char *const ref_kind_name[] = {"node", "group"};

/* One reference of a body (a name, or an id as string or integer) to the
 * id of a node or group; ref gets its text for messages. */
static int ref_id(struct fg_store *st, enum ref_kind k, json_t *v, int64_t *id, char *ref,
		  size_t reflen)
{
	int rc = json_ref(v, ref, reflen);
	if (rc < 0)
		return rc;
	if (k == REF_NODE) {
		struct fg_node n;
		if ((rc = node_by_ref(st, ref, &n)) == 0) {
			*id = n.id;
			fg_node_deinit(&n);
		}
	} else {
		struct fg_group g;
		if ((rc = group_by_ref(st, ref, &g)) == 0)
			*id = g.id;
	}
	return rc;
}

/* Resolves a body's list of references ("groups": [...], "nodes": [...])
 * into distinct ids. Answers 400 and returns false on a bad or unknown one. */
static bool ref_ids(struct api_call *c, json_t *arr, const char *field, enum ref_kind k,
		    int64_t **ids, size_t *n)
{
	const char *kind = ref_kind_name[k];
	*ids = NULL;
	*n = 0;
	if (!json_is_array(arr))
		return api_fail(c->r, 400, "invalid", field, "%s: a list of %s names", field, kind),
		       false;
	size_t len = json_array_size(arr);
	*ids = fg_calloc(len + 1, sizeof(**ids));
	if (!*ids)
		return api_fail(c->r, 500, "internal", NULL, "out of memory"), false;
	for (size_t i = 0; i < len; i++) {
		char ref[128];
		int64_t id;
		int rc = ref_id(c->api->st, k, json_array_get(arr, i), &id, ref, sizeof(ref));
		if (rc < 0) {
			fg_free(*ids);
			*ids = NULL;
			if (rc == -ENOENT)
				api_fail(c->r, 400, "invalid", field, "%s[%zu]: no %s \"%s\"",
					 field, i, kind, ref);
			else
				api_fail(c->r, 400, "invalid", field, "%s[%zu]: a %s name or id",
					 field, i, kind);
			return false;
		}
		bool dup = false;
		for (size_t m = 0; m < *n; m++)
			dup |= (*ids)[m] == id;
		if (!dup)
			(*ids)[(*n)++] = id;
	}
	return true;
}

static void enroll_command(struct api_call *c, const char *token, char *out, size_t len)
{
	struct fg_api *api = c->api;
	char base[512];
	if (api->public_url) {
		snprintf(base, sizeof(base), "%s", api->public_url);
	} else {
		const char *host = fg_http_header(c->r, "Host");
		snprintf(base, sizeof(base), "%s://%s", api->tls ? "wss" : "ws",
			 host ? host : "127.0.0.1:8080");
	}
	snprintf(out, len, "flowgate agent --server %s --token %s --state /var/lib/flowgate/agent",
		 base, token);
}

static enum fg_http_verdict node_create(struct api_call *c)
{
	struct fg_store *st = c->api->st;
	json_t *b = api_body_object(c->r);
	if (!b)
		return FG_HTTP_DONE;
	enum fg_http_verdict v = FG_HTTP_DONE;
	int64_t *gids = NULL;
	size_t ng = 0;
	json_t *nv = json_object_get(b, "name");
	const char *why;
	const char *key;
	json_t *val;
	json_object_foreach(b, key, val)
	{
		if (strcmp(key, "name") && strcmp(key, "groups")) {
			v = api_fail(c->r, 400, "invalid", key, "%s: unknown field", key);
			goto out;
		}
	}
	if (!json_is_string(nv)) {
		v = api_fail(c->r, 400, "invalid", "name", "name: a string is required");
		goto out;
	}
	if ((why = api_name_invalid(json_string_value(nv)))) {
		v = api_fail(c->r, 400, "invalid", "name", "name: %s", why);
		goto out;
	}
	if (json_object_get(b, "groups") &&
	    !ref_ids(c, json_object_get(b, "groups"), "groups", REF_GROUP, &gids, &ng))
		goto out;
	char tok[FG_AUTH_TOKEN_SIZE], hash[FG_STORE_HASH_LEN + 1];
	fg_auth_token_new(FG_TOKEN_PREFIX_NODE, tok);
	fg_auth_token_hash(tok, hash);
	int64_t id;
	int rc = st->ops->tx_begin(st);
	if (rc == 0) {
		rc = st->ops->node_create(st, json_string_value(nv), hash, &id);
		if (rc == 0 && ng)
			rc = st->ops->node_set_groups(st, id, gids, ng);
		if (rc == 0)
			rc = st->ops->tx_commit(st);
		else
			st->ops->tx_rollback(st);
	}
	if (rc == -EEXIST) {
		v = api_fail(c->r, 409, "exists", "name", "a node named \"%s\" exists",
			     json_string_value(nv));
		goto out;
	}
	if (rc < 0) {
		v = api_store_fail(c->r, rc, "creating the node");
		goto out;
	}
	struct fg_node n;
	if ((rc = st->ops->node_get(st, id, &n)) < 0) {
		v = api_store_fail(c->r, rc, "reading the node");
		goto out;
	}
	json_t *j = node_json(c->api, &n);
	fg_node_deinit(&n);
	api_audit(c, "create", "node", id, NULL, j);
	char cmd[1024];
	enroll_command(c, tok, cmd, sizeof(cmd));
	json_object_set_new(j, "token", json_string(tok));
	json_object_set_new(j, "enroll_command", json_string(cmd));
	sodium_memzero(tok, sizeof(tok));
	struct idset s = {0};
	idset_add(&s, id);
	idset_refresh(c->api, &s);
	v = api_reply(c->r, 201, j);
out:
	fg_free(gids);
	json_decref(b);
	return v;
}

static enum fg_http_verdict node_patch(struct api_call *c, struct fg_node *n)
{
	struct fg_store *st = c->api->st;
	json_t *b = api_body_object(c->r);
	if (!b)
		return FG_HTTP_DONE;
	enum fg_http_verdict v = FG_HTTP_DONE;
	int64_t *gids = NULL;
	size_t ng = 0;
	const char *key, *why;
	json_t *val, *nv = json_object_get(b, "name"), *gv = json_object_get(b, "groups");
	json_t *av = json_object_get(b, "address");
	json_object_foreach(b, key, val)
	{
		if (strcmp(key, "name") && strcmp(key, "groups") && strcmp(key, "address")) {
			v = api_fail(c->r, 400, "invalid", key, "%s: unknown field", key);
			goto out;
		}
	}
	if (av && !json_is_null(av) &&
	    (!json_is_string(av) || (why = address_invalid(json_string_value(av))))) {
		v = api_fail(c->r, 400, "invalid", "address", "address: %s",
			     json_is_string(av) ? why : "a string, or null for the session's");
		goto out;
	}
	if (nv && !json_is_string(nv)) {
		v = api_fail(c->r, 400, "invalid", "name", "name: a string is required");
		goto out;
	}
	if (nv && (why = api_name_invalid(json_string_value(nv)))) {
		v = api_fail(c->r, 400, "invalid", "name", "name: %s", why);
		goto out;
	}
	if (gv && !ref_ids(c, gv, "groups", REF_GROUP, &gids, &ng))
		goto out;
	json_t *before = node_json(c->api, n);
	int rc = st->ops->tx_begin(st);
	if (rc == 0) {
		if (nv)
			rc = st->ops->node_rename(st, n->id, json_string_value(nv));
		if (rc == 0 && gv)
			rc = st->ops->node_set_groups(st, n->id, gids, ng);
		if (rc == 0 && av)
			rc = st->ops->node_set_address(
			    st, n->id, json_is_string(av) ? json_string_value(av) : "");
		if (rc == 0)
			rc = st->ops->tx_commit(st);
		else
			st->ops->tx_rollback(st);
	}
	if (rc == -EEXIST) {
		json_decref(before);
		v = api_fail(c->r, 409, "exists", "name", "a node named \"%s\" exists",
			     json_string_value(nv));
		goto out;
	}
	struct fg_node after;
	if (rc == 0)
		rc = st->ops->node_get(st, n->id, &after);
	if (rc < 0) {
		json_decref(before);
		v = api_store_fail(c->r, rc, "updating the node");
		goto out;
	}
	json_t *j = node_json(c->api, &after);
	fg_node_deinit(&after);
	api_audit(c, "update", "node", n->id, before, j);
	json_decref(before);
	if (gv || av) {
		struct idset s = {0};
		idset_add(&s, n->id);
		/* its tunnel peers dial the new address */
		if (av)
			api_tunnel_peers_of(st, n->id, &s);
		idset_refresh(c->api, &s);
	}
	v = api_reply(c->r, 200, j);
out:
	fg_free(gids);
	json_decref(b);
	return v;
}

enum fg_http_verdict api_nodes(struct api_call *c)
{
	struct fg_store *st = c->api->st;
	if (c->nseg == 1) {
		if (method_is(c, "POST"))
			return node_create(c);
		if (!method_is(c, "GET"))
			return bad_method(c);
		struct fg_node *v;
		size_t n;
		int rc = st->ops->node_list(st, &v, &n);
		if (rc < 0)
			return api_store_fail(c->r, rc, "listing nodes");
		json_t *a = json_array();
		for (size_t i = 0; i < n; i++)
			json_array_append_new(a, node_json(c->api, &v[i]));
		fg_node_list_free(v, n);
		return api_reply(c->r, 200, json_pack("{s:o}", "nodes", a));
	}
	struct fg_node n;
	int rc = node_by_ref(st, c->seg[1], &n);
	if (rc == -ENOENT)
		return not_found(c, "node", c->seg[1]);
	if (rc < 0)
		return api_store_fail(c->r, rc, "reading the node");
	enum fg_http_verdict v;
	if (c->nseg == 3 && strcmp(c->seg[2], "stats") == 0 && method_is(c, "GET")) {
		struct fg_series_query q = {.node_id = n.id};
		v = series(c, &q);
	} else if (c->nseg == 3 && strcmp(c->seg[2], "firewall") == 0 && method_is(c, "GET")) {
		v = api_node_firewall(c, &n);
	} else if (c->nseg != 2) {
		v = api_fail(c->r, 404, "not_found", NULL, "no such resource");
	} else if (method_is(c, "GET")) {
		v = api_reply(c->r, 200, node_json(c->api, &n));
	} else if (method_is(c, "PATCH")) {
		v = node_patch(c, &n);
	} else if (method_is(c, "DELETE")) {
		json_t *before = node_json(c->api, &n);
		struct idset peers = {0};
		/* its tunnels go with it: their other nodes stop running them */
		api_tunnel_peers_of(st, n.id, &peers);
		fg_hub_kick(c->api->hub, n.id);
		rc = st->ops->node_delete(st, n.id);
		v = api_deleted(c, rc, "node", n.id, before, &peers);
	} else {
		v = bad_method(c);
	}
	fg_node_deinit(&n);
	return v;
}

/* ---- groups ----------------------------------------------------------- */

static json_t *group_json(struct fg_store *st, const struct fg_group *g)
{
	json_t *nodes = json_array();
	int64_t *m;
	size_t n;
	if (st->ops->group_members(st, g->id, &m, &n) == 0) {
		for (size_t i = 0; i < n; i++) {
			struct fg_node nd;
			if (st->ops->node_get(st, m[i], &nd) == 0) {
				json_array_append_new(nodes, json_string(nd.name));
				fg_node_deinit(&nd);
			}
		}
		fg_free(m);
	}
	return json_pack("{s:I, s:s, s:o, s:I}", "id", (json_int_t)g->id, "name", g->name, "nodes",
			 nodes, "created", (json_int_t)g->created);
}

/* Makes the group's members exactly `want` (node ids). Inside a tx. */
static int set_members(struct fg_store *st, int64_t gid, const int64_t *want, size_t nwant,
		       struct idset *touched)
{
	int64_t *cur;
	size_t ncur;
	int rc = st->ops->group_members(st, gid, &cur, &ncur);
	if (rc < 0)
		return rc;
	struct idset all = {0};
	for (size_t i = 0; i < ncur; i++)
		idset_add(&all, cur[i]);
	for (size_t i = 0; i < nwant; i++)
		idset_add(&all, want[i]);
	fg_free(cur);
	for (size_t i = 0; rc == 0 && i < all.n; i++) {
		int64_t nid = all.v[i];
		bool in = false;
		for (size_t k = 0; k < nwant; k++)
			in |= want[k] == nid;
		int64_t *g;
		size_t ng;
		if ((rc = st->ops->node_groups(st, nid, &g, &ng)) < 0)
			break;
		int64_t *ng2 = fg_calloc(ng + 1, sizeof(*ng2));
		size_t k2 = 0;
		bool had = false;
		for (size_t k = 0; ng2 && k < ng; k++) {
			if (g[k] == gid)
				had = true;
			else
				ng2[k2++] = g[k];
		}
		fg_free(g);
		if (!ng2) {
			rc = -ENOMEM;
			break;
		}
		if (in)
			ng2[k2++] = gid;
		if (in != had) {
			rc = st->ops->node_set_groups(st, nid, ng2, k2);
			idset_add(touched, nid);
		}
		fg_free(ng2);
	}
	fg_free(all.v);
	return rc;
}

/* POST (g == NULL) or PATCH of a group: {"name", "nodes"}. */
static enum fg_http_verdict group_write(struct api_call *c, const struct fg_group *g)
{
	struct fg_store *st = c->api->st;
	json_t *b = api_body_object(c->r);
	if (!b)
		return FG_HTTP_DONE;
	enum fg_http_verdict v = FG_HTTP_DONE;
	int64_t *nids = NULL;
	size_t nn = 0;
	const char *key, *why;
	json_t *val, *nv = json_object_get(b, "name"), *mv = json_object_get(b, "nodes");
	json_t *before = g ? group_json(st, g) : NULL;
	struct idset touched = {0};
	json_object_foreach(b, key, val)
	{
		if (strcmp(key, "name") && strcmp(key, "nodes")) {
			v = api_fail(c->r, 400, "invalid", key, "%s: unknown field", key);
			goto out;
		}
	}
	if ((!g || nv) && !json_is_string(nv)) {
		v = api_fail(c->r, 400, "invalid", "name", "name: a string is required");
		goto out;
	}
	if (nv && (why = api_name_invalid(json_string_value(nv)))) {
		v = api_fail(c->r, 400, "invalid", "name", "name: %s", why);
		goto out;
	}
	if (mv && !ref_ids(c, mv, "nodes", REF_NODE, &nids, &nn))
		goto out;
	int64_t id = g ? g->id : 0;
	int rc = st->ops->tx_begin(st);
	if (rc == 0) {
		if (!g)
			rc = st->ops->group_create(st, json_string_value(nv), &id);
		else if (nv)
			rc = st->ops->group_rename(st, id, json_string_value(nv));
		if (rc == 0 && mv)
			rc = set_members(st, id, nids, nn, &touched);
		if (rc == 0)
			rc = st->ops->tx_commit(st);
		else
			st->ops->tx_rollback(st);
	}
	if (rc == -EEXIST) {
		v = api_fail(c->r, 409, "exists", "name", "a group named \"%s\" exists",
			     json_string_value(nv));
		goto out;
	}
	struct fg_group after;
	if (rc == 0)
		rc = st->ops->group_get(st, id, &after);
	if (rc < 0) {
		v = api_store_fail(c->r, rc, "writing the group");
		goto out;
	}
	json_t *j = group_json(st, &after);
	api_audit(c, g ? "update" : "create", "group", id, before, j);
	idset_refresh(c->api, &touched);
	v = api_reply(c->r, g ? 200 : 201, j);
out:
	fg_free(touched.v);
	fg_free(nids);
	json_decref(before);
	json_decref(b);
	return v;
}

enum fg_http_verdict api_groups(struct api_call *c)
{
	struct fg_store *st = c->api->st;
	if (c->nseg == 1) {
		if (method_is(c, "POST"))
			return group_write(c, NULL);
		if (!method_is(c, "GET"))
			return bad_method(c);
		struct fg_group *v;
		size_t n;
		int rc = st->ops->group_list(st, &v, &n);
		if (rc < 0)
			return api_store_fail(c->r, rc, "listing groups");
		json_t *a = json_array();
		for (size_t i = 0; i < n; i++)
			json_array_append_new(a, group_json(st, &v[i]));
		fg_free(v);
		return api_reply(c->r, 200, json_pack("{s:o}", "groups", a));
	}
	struct fg_group g;
	int rc = group_by_ref(st, c->seg[1], &g);
	if (rc == -ENOENT)
		return not_found(c, "group", c->seg[1]);
	if (rc < 0)
		return api_store_fail(c->r, rc, "reading the group");
	if (c->nseg == 3 && strcmp(c->seg[2], "stats") == 0 && method_is(c, "GET")) {
		struct fg_series_query q = {.group_id = g.id};
		return series(c, &q);
	}
	if (c->nseg != 2)
		return api_fail(c->r, 404, "not_found", NULL, "no such resource");
	if (method_is(c, "GET"))
		return api_reply(c->r, 200, group_json(st, &g));
	if (method_is(c, "PATCH"))
		return group_write(c, &g);
	if (!method_is(c, "DELETE"))
		return bad_method(c);
	struct idset s = {0};
	idset_add_group(st, &s, g.id);
	struct fg_tunnel *tv;
	size_t tn;
	if (st->ops->tunnel_list(st, &tv, &tn) == 0) { /* its entry tunnels go too */
		for (size_t i = 0; i < tn; i++)
			if (tv[i].entry_group_id == g.id)
				api_tunnel_nodes(st, &tv[i], &s);
		fg_tunnel_list_free(tv, tn);
	}
	json_t *before = group_json(st, &g);
	rc = st->ops->group_delete(st, g.id);
	return api_deleted(c, rc, "group", g.id, before, &s);
}

/* ---- forwards --------------------------------------------------------- */

/* The API's view of a stored forward: the engine fields plus id, node or
 * group (by name), enabled. */
static json_t *forward_json(struct fg_store *st, const struct fg_forward *f)
{
	json_t *j = json_loads(f->json ? f->json : "{}", 0, NULL);
	if (!j)
		j = json_object();
	json_object_set_new(j, "id", json_integer(f->id));
	json_object_set_new(j, "name", json_string(f->name));
	json_object_set_new(j, "enabled", json_boolean(f->enabled));
	if (f->node_id > 0) {
		struct fg_node n;
		if (st->ops->node_get(st, f->node_id, &n) == 0) {
			json_object_set_new(j, "node", json_string(n.name));
			fg_node_deinit(&n);
		}
	} else {
		struct fg_group g;
		json_object_set_new(j, "group", json_string(group_name(st, f->group_id, &g)));
	}
	return j;
}

/* Maps the engine validator's "forwards[0].listen: ..." onto the field. */
static enum fg_http_verdict engine_error(struct api_call *c, const char *err)
{
	const char *p = err;
	static const char pre[] = "forwards[0]";
	if (strncmp(p, pre, sizeof(pre) - 1) == 0)
		p += sizeof(pre) - 1;
	if (*p != '.')
		return api_fail(c->r, 400, "invalid", NULL, "%s", *p == ':' ? p + 2 : p);
	p++;
	char field[64];
	size_t n = strcspn(p, ":. ");
	if (n >= sizeof(field))
		n = sizeof(field) - 1;
	memcpy(field, p, n);
	field[n] = 0;
	return api_fail(c->r, 400, "invalid", field, "%s", p);
}

/* Builds f (and *api_obj, the resulting API view) from a POST body or from
 * old + a PATCH body. Answers and returns false on any error. */
static bool forward_from_body(struct api_call *c, json_t *body, const struct fg_forward *old,
			      struct fg_forward *f, struct fg_forward_cfg *cfg_out)
{
	struct fg_store *st = c->api->st;
	json_t *o = old ? forward_json(st, old) : json_object();
	const char *key;
	json_t *val;
	bool ok = false;
	json_object_foreach(body, key, val)
	{
		if (strcmp(key, "id") == 0) {
			if (old && json_is_integer(val) && json_integer_value(val) == old->id)
				continue;
			api_fail(c->r, 400, "invalid", "id", "id: set by the server");
			goto out;
		}
		if (json_is_null(val))
			json_object_del(o, key);
		else
			json_object_set(o, key, val);
	}
	/* a PATCH that names the other kind of target replaces the old one */
	if (old && json_object_get(body, "node") && !json_object_get(body, "group"))
		json_object_del(o, "group");
	if (old && json_object_get(body, "group") && !json_object_get(body, "node"))
		json_object_del(o, "node");
	json_object_del(o, "id");

	json_t *nv = json_object_get(o, "node"), *gv = json_object_get(o, "group");
	if (!!nv == !!gv) {
		api_fail(c->r, 400, "invalid", nv ? "group" : "node",
			 "a forward targets exactly one \"node\" or one \"group\"");
		goto out;
	}
	char ref[128];
	memset(f, 0, sizeof(*f));
	enum ref_kind k = nv ? REF_NODE : REF_GROUP;
	int64_t tid;
	int trc = ref_id(st, k, nv ? nv : gv, &tid, ref, sizeof(ref));
	if (trc < 0) {
		const char *kind = ref_kind_name[k];
		if (trc == -ENOENT)
			api_fail(c->r, 400, "invalid", kind, "%s: no %s \"%s\"", kind, kind, ref);
		else
			api_fail(c->r, 400, "invalid", kind, "%s: a %s name or id", kind, kind);
		goto out;
	}
	if (nv)
		f->node_id = tid;
	else
		f->group_id = tid;
	json_t *ev = json_object_get(o, "enabled");
	if (ev && !json_is_boolean(ev)) {
		api_fail(c->r, 400, "invalid", "enabled", "enabled: true or false");
		goto out;
	}
	f->enabled = !ev || json_is_true(ev);
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
	snprintf(f->name, sizeof(f->name), "%s", json_string_value(namev));

	/* the engine's own validator decides what a forward may be */
	json_t *eng = json_deep_copy(o);
	json_object_del(eng, "node");
	json_object_del(eng, "group");
	json_object_del(eng, "enabled");
	json_t *arr = json_pack("[O]", eng);
	struct fg_forward_set set = {0};
	char err[512];
	int rc = fg_config_parse_forwards(arr, &set, err, sizeof(err));
	json_decref(arr);
	if (rc < 0) {
		json_decref(eng);
		engine_error(c, err);
		goto out;
	}
	f->port_lo = set.v[0].listen.port_lo;
	f->port_hi = set.v[0].listen.port_hi;
	f->proto = set.v[0].proto;
	if (cfg_out)
		fg_forward_cfg_copy(cfg_out, &set.v[0]);
	fg_forward_set_free(&set);
	f->json = json_dumps(eng, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(eng);
	if (!f->json) {
		api_fail(c->r, 500, "internal", NULL, "out of memory");
		goto out;
	}
	ok = true;
out:
	json_decref(o);
	return ok;
}

static enum fg_http_verdict conflict(struct api_call *c, const struct fg_forward *f, int64_t other)
{
	struct fg_store *st = c->api->st;
	struct fg_forward o;
	char what[160] = "another forward";
	if (st->ops->forward_get(st, other, &o) == 0) {
		snprintf(what, sizeof(what), "forward \"%s\" (id %lld)", o.name, (long long)o.id);
		fg_forward_deinit(&o);
	}
	char ports[32];
	if (f->port_lo == f->port_hi)
		snprintf(ports, sizeof(ports), "port %u", f->port_lo);
	else
		snprintf(ports, sizeof(ports), "ports %u-%u", f->port_lo, f->port_hi);
	return api_fail(c->r, 409, "conflict", "listen",
			"listen: %s/%s is already used by %s on the same node", ports,
			f->proto == FG_PROTO_UDP   ? "udp"
			: f->proto == FG_PROTO_TCP ? "tcp"
						   : "tcp+udp",
			what);
}

/* A forward may not take a tunnel's name or port on a node both land on.
 * Answers and returns FG_HTTP_DONE on a clash, FG_HTTP_PENDING if none. */
static enum fg_http_verdict tunnel_clash(struct api_call *c, const struct fg_forward *f,
					 const struct fg_forward *old)
{
	struct fg_store *st = c->api->st;
	if ((!old || strcmp(old->name, f->name) != 0) && api_tunnel_name_taken(st, f->name))
		return api_fail(c->r, 409, "exists", "name",
				"name: a tunnel named \"%s\" exists (forwards and tunnels share "
				"names on the nodes)",
				f->name);
	struct fg_port_claim cl = {.node_id = f->node_id,
				   .group_id = f->group_id,
				   .port_lo = f->port_lo,
				   .port_hi = f->port_hi,
				   .proto = f->proto,
				   .skip_forward = f->id};
	const char *kind;
	int64_t other;
	int rc = st->ops->port_conflict(st, &cl, &kind, &other);
	if (rc == -EEXIST)
		return api_port_conflict(c, "listen", kind, other, &cl);
	if (rc < 0)
		return api_store_fail(c->r, rc, "checking ports");
	return FG_HTTP_PENDING;
}

static enum fg_http_verdict forward_write(struct api_call *c, const struct fg_forward *old)
{
	struct fg_store *st = c->api->st;
	json_t *b = api_body_object(c->r);
	if (!b)
		return FG_HTTP_DONE;
	struct fg_forward f;
	enum fg_http_verdict v = FG_HTTP_DONE;
	if (!forward_from_body(c, b, old, &f, NULL)) {
		json_decref(b);
		return FG_HTTP_DONE;
	}
	json_decref(b);
	if (old)
		f.id = old->id;
	int64_t other = 0;
	int rc = st->ops->forward_conflict(st, &f, &other);
	if (rc == -EEXIST) {
		v = conflict(c, &f, other);
		goto out;
	}
	if (rc == 0 && (v = tunnel_clash(c, &f, old)) != FG_HTTP_PENDING)
		goto out;
	v = FG_HTTP_DONE;
	if (rc == 0)
		rc = old ? st->ops->forward_update(st, &f) : st->ops->forward_create(st, &f);
	if (rc == -EEXIST) {
		v = api_fail(c->r, 409, "exists", "name", "name: a forward named \"%s\" exists",
			     f.name);
		goto out;
	}
	if (rc < 0) {
		v = api_store_fail(c->r, rc, "writing the forward");
		goto out;
	}
	json_t *after = forward_json(st, &f);
	json_t *before = old ? forward_json(st, old) : NULL;
	api_audit(c, old ? "update" : "create", "forward", f.id, before, after);
	json_decref(before);
	struct idset s = {0};
	if (old) {
		if (old->node_id > 0)
			idset_add(&s, old->node_id);
		idset_add_group(st, &s, old->group_id);
	}
	if (f.node_id > 0)
		idset_add(&s, f.node_id);
	idset_add_group(st, &s, f.group_id);
	idset_refresh(c->api, &s);
	v = api_reply(c->r, old ? 200 : 201, after);
out:
	free(f.json);
	return v;
}

static int forward_by_ref(struct fg_store *st, const char *ref, struct fg_forward *out)
{
	if (is_id(ref))
		return st->ops->forward_get(st, strtoll(ref, NULL, 10), out);
	struct fg_forward *v;
	size_t n;
	int rc = st->ops->forward_list(st, &v, &n);
	if (rc < 0)
		return rc;
	rc = -ENOENT;
	for (size_t i = 0; i < n; i++) {
		if (strcmp(v[i].name, ref) == 0) {
			*out = v[i];
			memset(&v[i], 0, sizeof(v[i]));
			rc = 0;
			break;
		}
	}
	fg_forward_list_free(v, n);
	return rc;
}

static enum fg_http_verdict forward_list(struct api_call *c)
{
	struct fg_store *st = c->api->st;
	const char *node = fg_http_query(c->r, "node"), *group = fg_http_query(c->r, "group");
	struct fg_forward *v;
	size_t n;
	int rc;
	int64_t gid = 0;
	if (node) {
		struct fg_node nd;
		if ((rc = node_by_ref(st, node, &nd)) == -ENOENT)
			return not_found(c, "node", node);
		if (rc == 0) {
			rc = st->ops->forwards_for_node(st, nd.id, &v, &n);
			fg_node_deinit(&nd);
		}
	} else {
		if (group) {
			struct fg_group g;
			if ((rc = group_by_ref(st, group, &g)) == -ENOENT)
				return not_found(c, "group", group);
			if (rc < 0)
				return api_store_fail(c->r, rc, "reading the group");
			gid = g.id;
		}
		rc = st->ops->forward_list(st, &v, &n);
	}
	if (rc < 0)
		return api_store_fail(c->r, rc, "listing forwards");
	json_t *a = json_array();
	for (size_t i = 0; i < n; i++)
		if (!gid || v[i].group_id == gid)
			json_array_append_new(a, forward_json(st, &v[i]));
	fg_forward_list_free(v, n);
	return api_reply(c->r, 200, json_pack("{s:o}", "forwards", a));
}

enum fg_http_verdict api_forwards(struct api_call *c)
{
	struct fg_store *st = c->api->st;
	if (c->nseg == 1) {
		if (method_is(c, "POST"))
			return forward_write(c, NULL);
		if (method_is(c, "GET"))
			return forward_list(c);
		return bad_method(c);
	}
	struct fg_forward f;
	int rc = forward_by_ref(st, c->seg[1], &f);
	if (rc == -ENOENT)
		return not_found(c, "forward", c->seg[1]);
	if (rc < 0)
		return api_store_fail(c->r, rc, "reading the forward");
	enum fg_http_verdict v;
	if (c->nseg == 3 && strcmp(c->seg[2], "stats") == 0 && method_is(c, "GET")) {
		struct fg_series_query q = {.kind = "forward", .object_id = f.id};
		const char *node = fg_http_query(c->r, "node");
		struct fg_node nd;
		if (node && node_by_ref(st, node, &nd) == 0) {
			q.node_id = nd.id;
			fg_node_deinit(&nd);
		}
		v = series(c, &q);
	} else if (c->nseg != 2) {
		v = api_fail(c->r, 404, "not_found", NULL, "no such resource");
	} else if (method_is(c, "GET")) {
		v = api_reply(c->r, 200, forward_json(st, &f));
	} else if (method_is(c, "PATCH") || method_is(c, "PUT")) {
		v = forward_write(c, &f);
	} else if (method_is(c, "DELETE")) {
		struct idset s = {0};
		if (f.node_id > 0)
			idset_add(&s, f.node_id);
		idset_add_group(st, &s, f.group_id);
		json_t *before = forward_json(st, &f);
		rc = st->ops->forward_delete(st, f.id);
		v = api_deleted(c, rc, "forward", f.id, before, &s);
	} else {
		v = bad_method(c);
	}
	fg_forward_deinit(&f);
	return v;
}

/* ---- live, audit ------------------------------------------------------ */

enum fg_http_verdict api_live(struct api_call *c)
{
	if (c->nseg == 2 && strcmp(c->seg[1], "ws") == 0) {
		const char *why;
		if (fg_http_upgrade_ws(c->r, fg_live_attach, c->api->live, &why) < 0)
			return api_fail(c->r, 400, "bad_upgrade", NULL, "%s", why);
		return FG_HTTP_DONE;
	}
	if (c->nseg != 1 || !method_is(c, "GET"))
		return bad_method(c);
	json_t *j = fg_live_snapshot(c->api->hub);
	return j ? api_reply(c->r, 200, j) : api_fail(c->r, 500, "internal", NULL, "out of memory");
}

enum fg_http_verdict api_audit_list(struct api_call *c)
{
	if (!method_is(c, "GET"))
		return bad_method(c);
	if (!api_require(c, FG_ROLE_ADMIN))
		return FG_HTTP_DONE;
	int64_t before = 0, limit = 100;
	if (!query_int(c, "before", &before) || !query_int(c, "limit", &limit))
		return FG_HTTP_DONE;
	if (limit < 1 || limit > AUDIT_MAX_LIMIT)
		return api_fail(c->r, 400, "invalid", "limit", "limit: 1 to %d", AUDIT_MAX_LIMIT);
	struct fg_audit_event *v;
	size_t n;
	int rc = c->api->st->ops->audit_list(c->api->st, before, (size_t)limit, &v, &n);
	if (rc < 0)
		return api_store_fail(c->r, rc, "reading the audit log");
	json_t *a = json_array();
	for (size_t i = 0; i < n; i++) {
		json_t *e =
		    json_pack("{s:I, s:I, s:s, s:s, s:s, s:I}", "id", (json_int_t)v[i].id, "ts",
			      (json_int_t)v[i].ts, "who", v[i].who, "action", v[i].action, "kind",
			      v[i].object_kind, "object_id", (json_int_t)v[i].object_id);
		json_t *bj = v[i].before ? json_loads(v[i].before, 0, NULL) : NULL;
		json_t *aj = v[i].after ? json_loads(v[i].after, 0, NULL) : NULL;
		json_object_set_new(e, "before", bj ? bj : json_null());
		json_object_set_new(e, "after", aj ? aj : json_null());
		json_array_append_new(a, e);
	}
	fg_audit_list_free(v, n);
	return api_reply(c->r, 200, json_pack("{s:o}", "events", a));
}

/* ---- export / import -------------------------------------------------- */

enum fg_http_verdict api_export(struct api_call *c)
{
	if (!method_is(c, "GET"))
		return bad_method(c);
	struct fg_store *st = c->api->st;
	struct fg_group *gv = NULL;
	struct fg_node *nv = NULL;
	struct fg_forward *fv = NULL;
	size_t ng = 0, nn = 0, nf = 0;
	int rc = st->ops->group_list(st, &gv, &ng);
	if (rc == 0)
		rc = st->ops->node_list(st, &nv, &nn);
	if (rc == 0)
		rc = st->ops->forward_list(st, &fv, &nf);
	if (rc < 0) {
		fg_free(gv);
		fg_node_list_free(nv, nn);
		return api_store_fail(c->r, rc, "exporting");
	}
	json_t *groups = json_array(), *nodes = json_array(), *forwards = json_array();
	for (size_t i = 0; i < ng; i++)
		json_array_append_new(groups, json_pack("{s:s}", "name", gv[i].name));
	for (size_t i = 0; i < nn; i++) {
		json_t *nj = node_json(c->api, &nv[i]);
		json_array_append_new(nodes, json_pack("{s:s, s:O}", "name", nv[i].name, "groups",
						       json_object_get(nj, "groups")));
		json_decref(nj);
	}
	for (size_t i = 0; i < nf; i++) {
		json_t *fj = forward_json(st, &fv[i]);
		json_object_del(fj, "id");
		json_array_append_new(forwards, fj);
	}
	fg_free(gv);
	fg_node_list_free(nv, nn);
	fg_forward_list_free(fv, nf);
	json_t *policies = api_policies_export(c);
	if (!policies) {
		json_decref(groups);
		json_decref(nodes);
		json_decref(forwards);
		return api_store_fail(c->r, -EIO, "exporting policies");
	}
	json_t *tunnels = api_tunnels_export(c);
	if (!tunnels) {
		json_decref(groups);
		json_decref(nodes);
		json_decref(forwards);
		json_decref(policies);
		return FG_HTTP_DONE;
	}
	return api_reply(c->r, 200,
			 json_pack("{s:i, s:I, s:o, s:o, s:o, s:o, s:o}", "version", 1, "exported",
				   (json_int_t)api_now(), "groups", groups, "nodes", nodes,
				   "forwards", forwards, "policies", policies, "tunnels", tunnels));
}

/* Import: groups, then nodes (created with a fresh enrollment token when
 * missing; their groups set as given), then forwards (created, or updated
 * when one of that name exists), all in one transaction: an error anywhere
 * answers 400 naming the item and leaves the store as it was. */
enum fg_http_verdict api_import(struct api_call *c)
{
	if (!method_is(c, "POST"))
		return bad_method(c);
	struct fg_store *st = c->api->st;
	json_t *b = api_body_object(c->r);
	if (!b)
		return FG_HTTP_DONE;
	enum fg_http_verdict v = FG_HTTP_DONE;
	json_t *tokens = json_object();
	struct idset touched = {0};
	bool in_tx = false;
	size_t created = 0, updated = 0;
	const char *key;
	json_t *val;
	json_object_foreach(b, key, val)
	{
		if (strcmp(key, "version") && strcmp(key, "exported") && strcmp(key, "groups") &&
		    strcmp(key, "nodes") && strcmp(key, "forwards") && strcmp(key, "policies") &&
		    strcmp(key, "tunnels")) {
			v = api_fail(c->r, 400, "invalid", key, "%s: unknown field", key);
			goto out;
		}
		if (strcmp(key, "version") && strcmp(key, "exported") &&
		    (!json_is_array(val) || json_array_size(val) > IMPORT_MAX_ITEMS)) {
			v = api_fail(c->r, 400, "invalid", key, "%s: a list of at most %d items",
				     key, IMPORT_MAX_ITEMS);
			goto out;
		}
	}
	int rc = st->ops->tx_begin(st);
	if (rc < 0) {
		v = api_store_fail(c->r, rc, "starting the import");
		goto out;
	}
	in_tx = true;
	size_t i;
	json_array_foreach(json_object_get(b, "groups"), i, val)
	{
		json_t *nv = json_object_get(val, "name");
		const char *why = json_is_string(nv) ? api_name_invalid(json_string_value(nv))
						     : "a string is required";
		if (why) {
			v = api_fail(c->r, 400, "invalid", "groups", "groups[%zu].name: %s", i,
				     why);
			goto out;
		}
		struct fg_group g;
		int64_t id;
		rc = st->ops->group_get_by_name(st, json_string_value(nv), &g);
		if (rc == -ENOENT &&
		    (rc = st->ops->group_create(st, json_string_value(nv), &id)) == 0)
			created++;
		if (rc < 0) {
			v = api_store_fail(c->r, rc, "importing groups");
			goto out;
		}
	}
	json_array_foreach(json_object_get(b, "nodes"), i, val)
	{
		json_t *nv = json_object_get(val, "name");
		const char *why = json_is_string(nv) ? api_name_invalid(json_string_value(nv))
						     : "a string is required";
		if (why) {
			v = api_fail(c->r, 400, "invalid", "nodes", "nodes[%zu].name: %s", i, why);
			goto out;
		}
		struct fg_node n;
		int64_t id;
		rc = st->ops->node_get_by_name(st, json_string_value(nv), &n);
		if (rc == 0) {
			id = n.id;
			fg_node_deinit(&n);
		} else if (rc == -ENOENT) {
			char tok[FG_AUTH_TOKEN_SIZE], hash[FG_STORE_HASH_LEN + 1];
			fg_auth_token_new(FG_TOKEN_PREFIX_NODE, tok);
			fg_auth_token_hash(tok, hash);
			rc = st->ops->node_create(st, json_string_value(nv), hash, &id);
			if (rc == 0) {
				json_object_set_new(tokens, json_string_value(nv),
						    json_string(tok));
				created++;
			}
		}
		json_t *gv = json_object_get(val, "groups");
		if (rc == 0 && gv) {
			int64_t *gids;
			size_t ng;
			if (!ref_ids(c, gv, "groups", REF_GROUP, &gids, &ng))
				goto out;
			rc = st->ops->node_set_groups(st, id, gids, ng);
			fg_free(gids);
			idset_add(&touched, id);
		}
		if (rc < 0) {
			v = api_store_fail(c->r, rc, "importing nodes");
			goto out;
		}
	}
	json_array_foreach(json_object_get(b, "forwards"), i, val)
	{
		if (!json_is_object(val)) {
			v = api_fail(c->r, 400, "invalid", "forwards", "forwards[%zu]: an object",
				     i);
			goto out;
		}
		json_t *nv = json_object_get(val, "name");
		struct fg_forward old, f;
		bool have_old = json_is_string(nv) && !is_id(json_string_value(nv)) &&
				forward_by_ref(st, json_string_value(nv), &old) == 0;
		json_t *body = json_deep_copy(val);
		json_object_del(body, "id");
		bool ok = forward_from_body(c, body, have_old ? &old : NULL, &f, NULL);
		json_decref(body);
		if (!ok) {
			if (have_old)
				fg_forward_deinit(&old);
			goto out; /* answered; the field names the forward's key */
		}
		int64_t other;
		f.id = have_old ? old.id : 0;
		rc = st->ops->forward_conflict(st, &f, &other);
		if (rc == -EEXIST) {
			conflict(c, &f, other);
			free(f.json);
			if (have_old)
				fg_forward_deinit(&old);
			goto out;
		}
		if (rc == 0 && tunnel_clash(c, &f, have_old ? &old : NULL) != FG_HTTP_PENDING) {
			free(f.json);
			if (have_old)
				fg_forward_deinit(&old);
			goto out;
		}
		if (rc == 0)
			rc = have_old ? st->ops->forward_update(st, &f)
				      : st->ops->forward_create(st, &f);
		if (rc == 0) {
			if (have_old) {
				updated++;
				if (old.node_id > 0)
					idset_add(&touched, old.node_id);
				idset_add_group(st, &touched, old.group_id);
			} else {
				created++;
			}
			if (f.node_id > 0)
				idset_add(&touched, f.node_id);
			idset_add_group(st, &touched, f.group_id);
		}
		free(f.json);
		if (have_old)
			fg_forward_deinit(&old);
		if (rc < 0) {
			v = api_store_fail(c->r, rc, "importing forwards");
			goto out;
		}
	}
	json_array_foreach(json_object_get(b, "policies"), i, val)
	{
		if (!api_policy_import_one(c, val, i, &created, &updated, &touched))
			goto out; /* answered */
	}
	/* tunnels last: they name nodes and groups imported above */
	json_array_foreach(json_object_get(b, "tunnels"), i, val)
	{
		int r = api_tunnel_import_one(c, i, val, &touched);
		if (r == 0)
			goto out; /* answered */
		if (r == 1)
			created++;
		else
			updated++;
	}
	rc = st->ops->tx_commit(st);
	in_tx = false;
	if (rc < 0) {
		v = api_store_fail(c->r, rc, "committing the import");
		goto out;
	}
	api_audit(c, "import", "config", 0, NULL, NULL);
	idset_refresh(c->api, &touched);
	v = api_reply(c->r, 200,
		      json_pack("{s:I, s:I, s:O}", "created", (json_int_t)created, "updated",
				(json_int_t)updated, "node_tokens", tokens));
out:
	if (in_tx)
		st->ops->tx_rollback(st);
	fg_free(touched.v);
	json_decref(tokens);
	json_decref(b);
	return v;
}

/* ---- shared with api_tunnel.c ----------------------------------------- */

void api_idset_add(struct idset *s, int64_t id)
{
	idset_add(s, id);
}

void api_idset_add_group(struct fg_store *st, struct idset *s, int64_t group_id)
{
	idset_add_group(st, s, group_id);
}

void api_idset_refresh(struct fg_api *api, struct idset *s)
{
	idset_refresh(api, s);
}

enum fg_http_verdict api_deleted(struct api_call *c, int rc, const char *kind, int64_t id,
				 json_t *before, struct idset *s)
{
	if (rc < 0) {
		fg_free(s->v);
		s->v = NULL;
		json_decref(before);
		char doing[64];
		snprintf(doing, sizeof(doing), "deleting the %s", kind);
		return api_store_fail(c->r, rc, doing);
	}
	api_audit(c, "delete", kind, id, before, NULL);
	json_decref(before);
	idset_refresh(c->api, s);
	return api_reply(c->r, 200, json_pack("{s:b}", "ok", 1));
}

bool api_is_id(const char *s)
{
	return is_id(s);
}

int api_node_by_ref(struct fg_store *st, const char *ref, struct fg_node *out)
{
	return node_by_ref(st, ref, out);
}

int api_group_by_ref(struct fg_store *st, const char *ref, struct fg_group *out)
{
	return group_by_ref(st, ref, out);
}

int api_json_ref(json_t *v, char *buf, size_t len)
{
	return json_ref(v, buf, len);
}

int api_forward_by_ref(struct fg_store *st, const char *ref, struct fg_forward *out)
{
	return forward_by_ref(st, ref, out);
}

enum fg_http_verdict api_not_found(struct api_call *c, const char *kind, const char *ref)
{
	return not_found(c, kind, ref);
}

enum fg_http_verdict api_bad_method(struct api_call *c)
{
	return bad_method(c);
}

enum fg_http_verdict api_series(struct api_call *c, struct fg_series_query *q)
{
	return series(c, q);
}
