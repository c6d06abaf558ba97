/* The server's store: users, tokens, nodes, groups, forwards, the config
 * revision, stats series and the audit log, behind an ops table so a
 * PostgreSQL backend can sit beside SQLite without touching the handlers.
 * Schema, delta rule and dialect notes: doc/store.md.
 *
 * Conventions for every op: returns 0 or a negative errno; -ENOENT when the
 * object (or an object it references) does not exist; -EEXIST on a unique
 * violation (a name, a token hash); -EINVAL when a value breaks a schema
 * check (empty or over-long name, bad port range). Ids are > 0; 0 means
 * "none". Timestamps are Unix seconds. A store handle is used from one
 * thread at a time. */
#ifndef FG_SERVER_STORE_H
#define FG_SERVER_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fwd/config.h"

#define FG_STORE_NAME_MAX   64	/* users, nodes, groups, forwards */
#define FG_STORE_PWHASH_MAX 128 /* crypto_pwhash_STRBYTES */
#define FG_STORE_HASH_LEN   64	/* SHA-256, lowercase hex */
#define FG_STORE_FIELD_MAX  255 /* node version, hostname, boot id, address */
#define FG_STORE_FP_MAX	    95	/* TLS fingerprint "AB:CD:...", see net/tls.h */

enum fg_role { FG_ROLE_VIEWER = 1, FG_ROLE_OPERATOR, FG_ROLE_ADMIN };
enum fg_token_kind { FG_TOKEN_SESSION = 1, FG_TOKEN_API };

struct fg_user {
	int64_t id;
	char name[FG_STORE_NAME_MAX + 1];
	enum fg_role role;
	char pwhash[FG_STORE_PWHASH_MAX + 1]; /* argon2id string, see auth.h */
	int64_t created;
};

/* A session or API token. Only the hash of the token is ever stored. */
struct fg_token {
	int64_t id;
	enum fg_token_kind kind;
	int64_t user_id;
	int64_t expires; /* 0 = never */
	int64_t created;
};

struct fg_node {
	int64_t id;
	char name[FG_STORE_NAME_MAX + 1];
	bool online;
	int64_t last_seen;
	char version[FG_STORE_FIELD_MAX + 1];
	char hostname[FG_STORE_FIELD_MAX + 1];
	char boot_id[FG_STORE_FIELD_MAX + 1];
	int64_t desired_rev, applied_rev;
	char *errors; /* owned JSON text, NULL if none */
	int64_t created;
	/* how peers reach it: address set by an operator ("" = none), else the
	 * address its last session came from; the SHA-256 fingerprint of its
	 * TLS certificate, as its agent said in hello ("" = not known) */
	char address[FG_STORE_FIELD_MAX + 1];
	char seen_address[FG_STORE_FIELD_MAX + 1];
	char fingerprint[FG_STORE_FP_MAX + 1];
};

/* What the agent hub learns from hello/report/disconnect. NULL strings and
 * a negative applied_rev leave the stored value as it is; errors = NULL
 * keeps the stored errors, "" clears them. */
struct fg_node_live {
	bool online;
	int64_t last_seen;
	const char *version, *hostname, *boot_id; /* borrowed */
	int64_t applied_rev;
	const char *errors; /* borrowed JSON text */
};

struct fg_group {
	int64_t id;
	char name[FG_STORE_NAME_MAX + 1];
	int64_t created;
};

/* A forward targets exactly one node or one group. The JSON text (the
 * forward as fwd/config.h parses it) is the truth; the other columns are
 * copies the caller extracts from it for lookups and collision checks. */
struct fg_forward {
	int64_t id;
	char name[FG_STORE_NAME_MAX + 1];
	int64_t node_id, group_id; /* exactly one is > 0 */
	bool enabled;
	uint16_t port_lo, port_hi; /* listen port range */
	enum fg_proto proto;
	char *json; /* owned when returned by the store, borrowed when passed in */
};

/* A port range a tunnel listens on, on one node or on every member of one
 * group (exactly one of node_id, group_id > 0). Tunnels are TCP. */
struct fg_tunnel_port {
	int64_t node_id, group_id;
	uint16_t port_lo, port_hi;
};

/* A tunnel. The JSON text (the API model with nodes and groups as ids, see
 * api_tunnel.c) is the truth; the rest are copies for lookups: where the
 * entry is, which other nodes take part (hops and exits), which ports it
 * listens on where (collision checks). psk is the sealed pre-shared key
 * (server/secret.h), never plaintext. */
struct fg_tunnel {
	int64_t id;
	char name[FG_STORE_NAME_MAX + 1];
	int64_t entry_node_id, entry_group_id; /* exactly one is > 0 */
	bool enabled;
	char *json; /* owned when returned by the store, borrowed when passed in */
	char *psk;  /* idem; on update NULL keeps the stored one */
	/* Key rotation (read-only here: tunnel_set_keys writes them). key_id
	 * is psk's handshake key id; prev_psk (sealed, NULL when none) the
	 * previous key that links still accept until the grace period after
	 * the rotation at `rotated` (unix s, 0 never) ends. */
	int64_t key_id, prev_key_id, rotated;
	char *prev_psk;
	int64_t *nodes; /* hops and exits; owned when returned, borrowed when passed in */
	size_t nnodes;
	struct fg_tunnel_port *ports; /* idem */
	size_t nports;
};

/* A port claim to check: [port_lo, port_hi] for proto on node_id or on the
 * members of group_id. The object being written is skipped: skip_forward
 * or skip_tunnel (0 = none). */
struct fg_port_claim {
	int64_t node_id, group_id;
	uint16_t port_lo, port_hi;
	enum fg_proto proto;
	int64_t skip_forward, skip_tunnel;
};

/* A firewall policy (doc/firewall.md): ordered rules plus the nodes and
 * groups it targets. The JSON text {"description"?, "sets", "rules"} is
 * the truth for what it does (validated by the kernel policy parser before
 * it is stored); name, priority, enabled and the targets are columns. */
struct fg_policy {
	int64_t id;
	char name[FG_STORE_NAME_MAX + 1];
	int priority; /* lower runs first */
	bool enabled;
	char *json;	   /* owned when returned by the store, borrowed when passed in */
	int64_t *node_ids; /* targets; owned when returned, borrowed when passed in */
	size_t nnodes;
	int64_t *group_ids;
	size_t ngroups;
	int64_t created;
};

struct fg_counters {
	uint64_t bytes_up, bytes_down, conns;
};

/* One bucket of a series: the sum of every delta whose minute lies in
 * [ts, ts + step). */
struct fg_stat_bucket {
	int64_t ts;
	struct fg_counters sum;
};

/* Which rows a series sums. kind NULL = every kind; object_id, node_id,
 * group_id 0 = no restriction (group_id: nodes that are members now).
 * from/to: [from, to); step: a multiple of 60 (buckets align to multiples
 * of step since the epoch; rolled-up ranges have hour resolution). */
struct fg_series_query {
	const char *kind;
	int64_t object_id, node_id, group_id;
	int64_t from, to, step;
};

struct fg_audit_event {
	int64_t id, ts;
	char *who, *action, *object_kind; /* owned */
	int64_t object_id;
	char *before, *after; /* owned JSON text, NULL if none */
};

struct fg_store;

/* Lists are returned as one owned array (*v, *n): free it with fg_free(),
 * or with the matching fg_*_list_free() when the element owns strings. */
struct fg_store_ops {
	const char *name;
	void (*close)(struct fg_store *st);
	int (*schema_version)(struct fg_store *st, int *version);

	/* One writer transaction around several ops (ops that need atomicity
	 * on their own take it themselves, nested inside this one if open). */
	int (*tx_begin)(struct fg_store *st);
	int (*tx_commit)(struct fg_store *st);
	void (*tx_rollback)(struct fg_store *st);

	int (*user_create)(struct fg_store *st, const char *name, enum fg_role role,
			   const char *pwhash, int64_t *id);
	int (*user_get)(struct fg_store *st, int64_t id, struct fg_user *out);
	int (*user_get_by_name)(struct fg_store *st, const char *name, struct fg_user *out);
	int (*user_list)(struct fg_store *st, struct fg_user **v, size_t *n);
	int (*user_set_password)(struct fg_store *st, int64_t id, const char *pwhash);
	int (*user_set_role)(struct fg_store *st, int64_t id, enum fg_role role);

	/* hash: fg_auth_token_hash() of the token. lookup treats a token
	 * whose expiry is <= now as absent. */
	int (*token_create)(struct fg_store *st, enum fg_token_kind kind, int64_t user_id,
			    const char *hash, int64_t expires, int64_t *id);
	int (*token_lookup)(struct fg_store *st, const char *hash, int64_t now,
			    struct fg_token *out);
	int (*token_delete)(struct fg_store *st, int64_t id);
	int (*token_purge_expired)(struct fg_store *st, int64_t now);

	/* Node structs returned here must be released with fg_node_deinit(). */
	int (*node_create)(struct fg_store *st, const char *name, const char *token_hash,
			   int64_t *id);
	int (*node_get)(struct fg_store *st, int64_t id, struct fg_node *out);
	int (*node_get_by_name)(struct fg_store *st, const char *name, struct fg_node *out);
	int (*node_get_by_token)(struct fg_store *st, const char *token_hash, struct fg_node *out);
	int (*node_list)(struct fg_store *st, struct fg_node **v, size_t *n);
	int (*node_rename)(struct fg_store *st, int64_t id, const char *name);
	/* Deletes the node's own forwards, the tunnels it takes part in and its
	 * memberships with it. */
	int (*node_delete)(struct fg_store *st, int64_t id);
	/* Replaces the node's group memberships with group_ids. */
	int (*node_set_groups)(struct fg_store *st, int64_t id, const int64_t *group_ids, size_t n);
	int (*node_groups)(struct fg_store *st, int64_t id, int64_t **group_ids, size_t *n);
	int (*node_set_live)(struct fg_store *st, int64_t id, const struct fg_node_live *live);
	/* desired_rev + 1, returned in *rev: call when the node's compiled
	 * document changed. */
	int (*node_bump_desired_rev)(struct fg_store *st, int64_t id, int64_t *rev);
	/* The operator's address of the node ("" = none: peers use the
	 * address its session comes from). */
	int (*node_set_address)(struct fg_store *st, int64_t id, const char *address);
	/* What the hub learned from a session: the address it came from and
	 * the certificate fingerprint of hello. NULL keeps the stored value. */
	int (*node_set_peer)(struct fg_store *st, int64_t id, const char *seen_address,
			     const char *fingerprint);

	int (*group_create)(struct fg_store *st, const char *name, int64_t *id);
	int (*group_get)(struct fg_store *st, int64_t id, struct fg_group *out);
	int (*group_get_by_name)(struct fg_store *st, const char *name, struct fg_group *out);
	int (*group_list)(struct fg_store *st, struct fg_group **v, size_t *n);
	int (*group_rename)(struct fg_store *st, int64_t id, const char *name);
	/* Deletes the group's forwards, the tunnels whose entry it is, and its
	 * memberships with it. */
	int (*group_delete)(struct fg_store *st, int64_t id);
	int (*group_members)(struct fg_store *st, int64_t id, int64_t **node_ids, size_t *n);

	/* Forward structs returned here must be released with
	 * fg_forward_deinit() / fg_forward_list_free(). create sets f->id;
	 * update rewrites every column of the row f->id. Names are unique
	 * across all forwards. */
	int (*forward_create)(struct fg_store *st, struct fg_forward *f);
	int (*forward_get)(struct fg_store *st, int64_t id, struct fg_forward *out);
	int (*forward_list)(struct fg_store *st, struct fg_forward **v, size_t *n);
	int (*forward_update)(struct fg_store *st, const struct fg_forward *f);
	int (*forward_delete)(struct fg_store *st, int64_t id);
	/* The node's own forwards and those of the groups it belongs to. */
	int (*forwards_for_node)(struct fg_store *st, int64_t node_id, struct fg_forward **v,
				 size_t *n);
	/* -EEXIST with *other_id set if another forward (id != f->id) that
	 * lands on any node f lands on (or on f's group) overlaps f's port
	 * range on a common protocol, enabled or not; 0 if none. */
	int (*forward_conflict)(struct fg_store *st, const struct fg_forward *f, int64_t *other_id);

	/* Tunnel structs returned here must be released with
	 * fg_tunnel_deinit() / fg_tunnel_list_free(). create sets t->id (and
	 * needs t->psk); update rewrites the row t->id, its nodes and ports.
	 * Names are unique across all tunnels. */
	int (*tunnel_create)(struct fg_store *st, struct fg_tunnel *t);
	int (*tunnel_get)(struct fg_store *st, int64_t id, struct fg_tunnel *out);
	int (*tunnel_get_by_name)(struct fg_store *st, const char *name, struct fg_tunnel *out);
	int (*tunnel_list)(struct fg_store *st, struct fg_tunnel **v, size_t *n);
	int (*tunnel_update)(struct fg_store *st, const struct fg_tunnel *t);
	int (*tunnel_delete)(struct fg_store *st, int64_t id);
	/* Sets a tunnel's keys (sealed texts; prev_psk NULL: none). */
	int (*tunnel_set_keys)(struct fg_store *st, int64_t id, const char *psk, int64_t key_id,
			       const char *prev_psk, int64_t prev_key_id, int64_t rotated);
	/* The tunnels node_id takes part in: as entry (directly or through a
	 * group), hop or exit. */
	int (*tunnels_for_node)(struct fg_store *st, int64_t node_id, struct fg_tunnel **v,
				size_t *n);
	/* -EEXIST with *kind ("forward" or "tunnel", static) and *other_id set
	 * if a forward or a tunnel other than the skipped ones listens on a
	 * port of the claim on a node it lands on (a TCP claim meets tunnels;
	 * enabled or not); 0 if none. */
	int (*port_conflict)(struct fg_store *st, const struct fg_port_claim *c, const char **kind,
			     int64_t *other_id);
	/* Policy structs returned here must be released with
	 * fg_policy_deinit() / fg_policy_list_free(). create sets p->id and
	 * writes the targets; update rewrites the row and replaces the
	 * targets. Names are unique across policies. A target node or group
	 * that does not exist is -ENOENT; deleting a node or group removes it
	 * from every policy's targets (the policy stays). */
	int (*policy_create)(struct fg_store *st, struct fg_policy *p);
	int (*policy_get)(struct fg_store *st, int64_t id, struct fg_policy *out);
	int (*policy_get_by_name)(struct fg_store *st, const char *name, struct fg_policy *out);
	/* by priority, then id */
	int (*policy_list)(struct fg_store *st, struct fg_policy **v, size_t *n);
	int (*policy_update)(struct fg_store *st, const struct fg_policy *p);
	int (*policy_delete)(struct fg_store *st, int64_t id);
	/* The policies that target the node directly or through one of its
	 * groups, enabled or not, by priority then id. */
	int (*policies_for_node)(struct fg_store *st, int64_t node_id, struct fg_policy **v,
				 size_t *n);

	/* The global config revision; bump on every config change. */
	int (*config_rev)(struct fg_store *st, int64_t *rev);
	int (*config_bump)(struct fg_store *st, int64_t *rev);

	/* abs: the agent's absolute counters for (kind, object_id, node_id)
	 * under boot_id. Adds the delta against the last report for the same
	 * (kind, object_id, node_id, boot_id) into the minute bucket of ts:
	 * a first report under a boot id counts in full, a repeat counts 0, and
	 * if any counter went down the report counts as a restart from 0.
	 * delta (optional) receives what was added. */
	int (*record_counters)(struct fg_store *st, const char *kind, int64_t object_id,
			       int64_t node_id, const char *boot_id, const struct fg_counters *abs,
			       int64_t ts, struct fg_counters *delta);
	/* Moves minute buckets older than the hour holding before_ts into hour
	 * buckets (sums are preserved exactly) and drops cursors of superseded
	 * boot ids last seen before before_ts. */
	int (*rollup_hours)(struct fg_store *st, int64_t before_ts);
	/* Non-empty buckets only, oldest first. */
	int (*query_series)(struct fg_store *st, const struct fg_series_query *q,
			    struct fg_stat_bucket **v, size_t *n);

	/* who/action/object_kind required; before/after JSON may be NULL. */
	int (*audit_add)(struct fg_store *st, int64_t ts, const char *who, const char *action,
			 const char *object_kind, int64_t object_id, const char *before,
			 const char *after);
	/* Newest first, ids < before_id (0 = from the newest), at most limit. */
	int (*audit_list)(struct fg_store *st, int64_t before_id, size_t limit,
			  struct fg_audit_event **v, size_t *n);
};

/* Every backend's handle starts with this. */
struct fg_store {
	const struct fg_store_ops *ops;
};

/* Opens (creating if needed) the SQLite store at path and applies pending
 * migrations. Returns 0 or a negative errno (-ENOTSUP: the file's schema
 * is newer than this binary). */
int fg_store_sqlite_open(const char *path, struct fg_store **out);
/* NULL is fine. */
void fg_store_close(struct fg_store *st);

const char *fg_role_name(enum fg_role r);
/* Returns 0, or -EINVAL for an unknown name. */
int fg_role_parse(const char *s, enum fg_role *out);
const char *fg_token_kind_name(enum fg_token_kind k);
int fg_token_kind_parse(const char *s, enum fg_token_kind *out);

void fg_node_deinit(struct fg_node *n);
void fg_node_list_free(struct fg_node *v, size_t n);
void fg_forward_deinit(struct fg_forward *f);
void fg_forward_list_free(struct fg_forward *v, size_t n);
void fg_tunnel_deinit(struct fg_tunnel *t);
void fg_tunnel_list_free(struct fg_tunnel *v, size_t n);
void fg_policy_deinit(struct fg_policy *p);
void fg_policy_list_free(struct fg_policy *v, size_t n);
void fg_audit_list_free(struct fg_audit_event *v, size_t n);

#endif
