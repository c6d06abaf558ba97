/* Internals shared by the API's files: api.c (routing, auth, users,
 * static files) and api_fleet.c (nodes, groups, forwards, stats). */
#ifndef FG_SERVER_API_INT_H
#define FG_SERVER_API_INT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "server/api.h"

#define API_MAX_SEGS 6

/* Who is calling (from the bearer token). */
struct api_who {
	int64_t user_id, token_id;
	enum fg_token_kind kind;
	enum fg_role role;
	char name[FG_STORE_NAME_MAX + 1];
};

/* One routed call: /api/v1/<seg[0]>/<seg[1]>/... */
struct api_call {
	struct fg_api *api;
	struct fg_http_req *r;
	const char *method;
	char *seg[API_MAX_SEGS]; /* percent-decoded, owned by the call */
	int nseg;
	struct api_who who;
	bool query_token; /* ?access_token= is accepted (browser WebSockets) */
};

struct fg_api {
	struct fg_loop *loop;
	struct fg_store *st;
	struct fg_hub *hub;
	struct fg_work *work;
	struct fg_live *live;
	const struct fg_secret_key *secret; /* borrowed */
	char *web_dir, *public_url;
	bool tls;
	int64_t session_ttl_s;
	int64_t tunnel_key_grace_s; /* a rotated-out tunnel key is accepted this long */
	struct login_slot *limiter; /* LIMITER_SLOTS entries */
	uint64_t logins_ok, logins_failed, logins_limited;
};

/* Answers and returns FG_HTTP_DONE. reply() takes j. */
enum fg_http_verdict api_reply(struct fg_http_req *r, int status, json_t *j);
enum fg_http_verdict api_fail(struct fg_http_req *r, int status, const char *code,
			      const char *field, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* 500 for a store error, logged with what was being done. */
enum fg_http_verdict api_store_fail(struct fg_http_req *r, int rc, const char *doing);
/* Parses the body as one JSON object; on failure answers 400 and returns
 * NULL. */
json_t *api_body_object(struct fg_http_req *r);
/* Caller has at least this role; else answers 403 and returns false. */
bool api_require(struct api_call *c, enum fg_role role);
void api_audit(struct api_call *c, const char *action, const char *kind, int64_t id, json_t *before,
	       json_t *after);
/* Names of nodes, groups, forwards, users: 1-64 of [A-Za-z0-9._-], not
 * all digits (ids and names share the {ref} slot of a path). NULL if good,
 * else why not. */
const char *api_name_invalid(const char *s);
int64_t api_now(void);

/* A growable set of node ids to refresh (api_fleet.c). */
struct idset {
	int64_t *v;
	size_t n, cap;
};
void api_idset_add(struct idset *s, int64_t id);
/* Adds the group's current members. */
void api_idset_add_group(struct fg_store *st, struct idset *s, int64_t group_id);
/* fg_hub_refresh of the set, then empties it. */
void api_idset_refresh(struct fg_api *api, struct idset *s);
/* The end of every DELETE, rc being the store's answer: on failure 500
 * ("store error while deleting the <kind>"); else the audit event, the new
 * state pushed to the nodes in s, and {"ok":true}. Takes before and s. */
enum fg_http_verdict api_deleted(struct api_call *c, int rc, const char *kind, int64_t id,
				 json_t *before, struct idset *s);

/* References: an id (all digits) or a name; in a JSON body also an
 * integer id (api_json_ref copies it into buf as text). */
bool api_is_id(const char *s);
int api_node_by_ref(struct fg_store *st, const char *ref, struct fg_node *out);
int api_group_by_ref(struct fg_store *st, const char *ref, struct fg_group *out);
int api_json_ref(json_t *v, char *buf, size_t len);
int api_forward_by_ref(struct fg_store *st, const char *ref, struct fg_forward *out);
enum fg_http_verdict api_not_found(struct api_call *c, const char *kind, const char *ref);
enum fg_http_verdict api_bad_method(struct api_call *c);
/* A traffic series answer (?from, to, step, format) for q. */
enum fg_http_verdict api_series(struct api_call *c, struct fg_series_query *q);

/* api_fleet.c */
enum fg_http_verdict api_nodes(struct api_call *c);
enum fg_http_verdict api_groups(struct api_call *c);
enum fg_http_verdict api_forwards(struct api_call *c);
enum fg_http_verdict api_stats_all(struct api_call *c);
enum fg_http_verdict api_live(struct api_call *c);
enum fg_http_verdict api_audit_list(struct api_call *c);
enum fg_http_verdict api_export(struct api_call *c);
enum fg_http_verdict api_import(struct api_call *c);

/* api_tunnel.c */
enum fg_http_verdict api_tunnels(struct api_call *c);
/* The nodes whose desired state holds tunnel t: the entry (node or the
 * group's members), hops, exits. */
void api_tunnel_nodes(struct fg_store *st, const struct fg_tunnel *t, struct idset *s);
/* Adds to s every node sharing a tunnel with node_id (and node_id). */
void api_tunnel_peers_of(struct fg_store *st, int64_t node_id, struct idset *s);
/* Export: every tunnel as the API shows it, without id and the computed
 * fields. NULL on a store error (answered). */
json_t *api_tunnels_export(struct api_call *c);
/* Import one tunnel (created, or updated by name) inside the caller's
 * transaction. Returns 1 created, 2 updated, or 0 after answering an
 * error (the field names the item). */
int api_tunnel_import_one(struct api_call *c, size_t i, json_t *item, struct idset *touched);
/* Whether a tunnel of that name exists (forward names must not collide). */
bool api_tunnel_name_taken(struct fg_store *st, const char *name);
/* Answers 409 for a port claimed by another forward or tunnel. */
enum fg_http_verdict api_port_conflict(struct api_call *c, const char *field, const char *kind,
				       int64_t other, const struct fg_port_claim *cl);
/* api_policy.c */
enum fg_http_verdict api_policies(struct api_call *c);
/* GET /nodes/{ref}/firewall (n: the node, borrowed for the call) */
enum fg_http_verdict api_node_firewall(struct api_call *c, const struct fg_node *n);
/* Export/import of policies: the API view without ids, and one item of an
 * import inside the caller's transaction (answers and returns false on an
 * error; *created or *updated counts it; touched gets the nodes). */
json_t *api_policies_export(struct api_call *c);
bool api_policy_import_one(struct api_call *c, json_t *item, size_t i, size_t *created,
			   size_t *updated, struct idset *touched);

#endif
