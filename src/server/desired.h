/* Compiles a node's desired state: the one JSON document the agent runs
 * (doc/protocol.md, "Desired state"). Deterministic: the same objects give
 * byte-identical text, so a hash of the text tells whether anything the
 * node runs changed. Loop thread (it reads the store). */
#ifndef FG_SERVER_DESIRED_H
#define FG_SERVER_DESIRED_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "server/secret.h"
#include "server/store.h"
#include "server/tunnel_model.h"

#define FG_DESIRED_HASH_LEN 16 /* first 128 bits of SHA-256 */

/* Pure part: the state {"forwards":[...]} of a node given every forward
 * that lands on it (its own and its groups', in any order). Disabled
 * forwards are left out; each entry is the stored forward JSON with "id"
 * set to the forward's id as a string, "name" from the row, and the fields
 * that only mean something to the server (node, group, enabled) dropped;
 * entries are sorted by id. A forward whose stored JSON is not an object
 * is skipped (logged). Returns a new reference, NULL on allocation
 * failure. */
json_t *fg_desired_from_forwards(const struct fg_forward *v, size_t n);

/* Pure part of the "firewall" section: the enabled policies among v (the
 * node's, any order), sorted by priority then id, as
 *   {"confirm_timeout"?: s, "sets": [...], "policies": [{"id", "name",
 *    "priority", "rules", "description"?}]}
 * Sets are the union of the policies' sets (the API keeps a name's
 * definition the same across policies; the first one wins here).
 * confirm_timeout is the smallest one the policies set (absent: the
 * agent's default, 60 s). Returns 0 with *out a new reference, or NULL
 * when no enabled policy is left (no section); -ENOMEM. */
int fg_desired_firewall(const struct fg_policy *v, size_t n, json_t **out);

/* The canonical text of a state (compact, keys sorted): owned, free(). */
char *fg_desired_text(const json_t *state);

/* Hash of the canonical text. */
void fg_desired_hash(const char *text, unsigned char out[FG_DESIRED_HASH_LEN]);

/* Reads node_id's forwards, firewall policies and tunnels from the store
 * and compiles them. Returns 0 with *state (new reference) and *text
 * (owned), or a negative errno. The document is {"forwards":[...]} plus
 * "firewall" when an enabled policy targets the node, and "tunnels":[...]
 * when it takes part in an enabled tunnel that can run (its role in each,
 * sorted by tunnel id; doc/tunnel.md). key opens the tunnels' PSKs; NULL
 * leaves tunnels out (fg_desired_compile passes NULL). */
int fg_desired_compile_ex(struct fg_store *st, const struct fg_secret_key *key, int64_t node_id,
			  json_t **state, char **text);
int fg_desired_compile(struct fg_store *st, int64_t node_id, json_t **state, char **text);

/* Everything fg_tm_compile needs for one stored tunnel: its parsed model,
 * its nodes (effective addresses: the operator's, else the session's),
 * the entry's members, the opened PSK (and the previous one while links
 * still accept it after a key rotation). */
struct fg_desired_tunnel {
	struct fg_tm model;
	struct fg_tm_ctx ctx;
	struct fg_node *rows; /* owned */
	struct fg_tm_node *nodes;
	int64_t *entry; /* owned */
	uint8_t psk[FG_SECRET_PLAIN_MAX];
	uint8_t prev_psk[FG_SECRET_PLAIN_MAX]; /* during a rotation's grace period */
};

/* Loads t's context. key NULL: no PSK (ctx.psk NULL; compile then fails
 * with -EINVAL). Returns 0, or a negative errno with err (a stored tunnel
 * that does not parse, a PSK that does not open). */
int fg_desired_tunnel_load(struct fg_store *st, const struct fg_secret_key *key,
			   const struct fg_tunnel *t, struct fg_desired_tunnel *out, char *err,
			   size_t errlen);
/* Wipes the PSK and frees. */
void fg_desired_tunnel_deinit(struct fg_desired_tunnel *d);

#endif
