/* The server's tunnel object (doc/api.md, "Tunnels"): parser/validator of
 * its stored JSON, and the compile of one node's role in it into the
 * engine's node-local schema (doc/tunnel.md, the "tunnels" section of the
 * desired state). Pure: no store, no clock, no randomness; the caller
 * passes the nodes (names, addresses, fingerprints) and the plaintext PSK.
 *
 * A tunnel is a chain of positions: 0 = the entry (one node, or every
 * member of a group), 1..nhops = the hops (relays), nhops + 1 = the exits
 * (one or several, balanced). Link i joins position i (upstream) to
 * position i + 1 (downstream). On a link with direction entry_to_exit the
 * downstream side listens and the upstream side dials it; exit_to_entry is
 * the reverse (the downstream node is behind NAT and dials back). */
#ifndef FG_SERVER_TUNNEL_MODEL_H
#define FG_SERVER_TUNNEL_MODEL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FG_TM_MAX_HOPS	   8
#define FG_TM_MAX_EXITS	   16 /* the engine's peers per link */
#define FG_TM_MAX_LINKS	   (FG_TM_MAX_HOPS + 1)
#define FG_TM_WS_PATH_MAX  255
#define FG_TM_WS_HOST_MAX  260 /* host:port, as the engine takes it */
#define FG_TM_TARGET_MAX   270
#define FG_TM_LISTEN_MAX   80
#define FG_TM_PSK_LEN	   32
#define FG_TM_PORT_DEFAULT 20000 /* link ports are allocated from here up */
#define FG_TM_PORT_LAST	   29999

struct fg_tm_link {
	const char *transport; /* static: "tcp" "tls" "ws" "wss" "aead" */
	bool mux;
	bool reverse;			     /* exit_to_entry: the downstream node dials */
	uint16_t port;			     /* where the listening side listens; 0 = link_port */
	char ws_path[FG_TM_WS_PATH_MAX + 1]; /* "" = engine default */
	char ws_host[FG_TM_WS_HOST_MAX + 1];
};

struct fg_tm {
	int64_t entry_node, entry_group; /* exactly one > 0 */
	char listen[FG_TM_LISTEN_MAX + 1];
	uint16_t listen_lo, listen_hi;
	int64_t hops[FG_TM_MAX_HOPS];
	size_t nhops;
	int64_t exits[FG_TM_MAX_EXITS];
	size_t nexits;
	bool single_exit; /* written as "exit", not "exits" */
	bool round_robin; /* between exits */
	char target[FG_TM_TARGET_MAX + 1];
	uint16_t link_port; /* 0 = not set yet (the API allocates one) */
	struct fg_tm_link links[FG_TM_MAX_LINKS];
	size_t nlinks; /* nhops + 1 */
	bool enabled;
	json_t *limits; /* owned: rate_*, max_conns*, *_timeout as given */
};

/* Parses and checks a tunnel in its stored form (nodes and groups as
 * integer ids; see doc/api.md for the fields). Unknown fields are
 * refused. On error returns -EINVAL with field ("entry.listen",
 * "links[1].transport", ...) and one line in err, and *out is empty.
 * Release with fg_tm_deinit. Checks that need the store (the nodes exist,
 * a group entry's members are not hops or exits, ports are free) are the
 * caller's. */
int fg_tm_parse(const json_t *stored, struct fg_tm *out, char *field, size_t fieldlen, char *err,
		size_t errlen);
void fg_tm_deinit(struct fg_tm *m);

/* The port link i listens on (its own, else link_port). */
uint16_t fg_tm_link_port(const struct fg_tm *m, size_t i);

/* A node as compile sees it; strings borrowed. */
struct fg_tm_node {
	int64_t id;
	const char *name;
	const char *address;	 /* how peers reach it, "" if not known */
	const char *fingerprint; /* TLS certificate SHA-256, "" if not known */
};

struct fg_tm_ctx {
	int64_t tunnel_id;
	const char *name;
	/* the nodes of the tunnel, entry members included */
	const struct fg_tm_node *nodes;
	size_t nnodes;
	const int64_t *entry_members; /* position 0: the entry node or the group's members */
	size_t nentry;
	const uint8_t *psk; /* plaintext, FG_TM_PSK_LEN bytes */
	size_t psk_len;
	uint32_t key_id; /* psk's handshake key id */
	/* during a key rotation's grace period: the previous key, which links
	 * still accept (emitted as "keys" with psk marked "dial"); NULL none */
	const uint8_t *prev_psk;
	size_t prev_psk_len;
	uint32_t prev_key_id;
};

/* Compiles node_id's role in the tunnel: the element of its desired
 * state's "tunnels" array (doc/tunnel.md). Returns
 *   0 with *out (new reference): the node has a role; why may hold a
 *     warning (a peer left out: no address or fingerprint known yet);
 *   0 with *out NULL: the node takes no part;
 *   -EAGAIN with why: the node's role cannot run yet (no peer of a link it
 *     dials has an address, or a TLS fingerprint where the transport
 *     needs one);
 *   -EINVAL with why: the node holds two positions (a group member that
 *     is also a hop or exit), or the model cannot be compiled;
 *   -ENOMEM. */
int fg_tm_compile(const struct fg_tm *m, const struct fg_tm_ctx *c, int64_t node_id, json_t **out,
		  char *why, size_t whylen);

/* "host:port" with brackets for an IPv6 literal. */
void fg_tm_hostport(const char *host, uint16_t port, char *out, size_t len);

#endif
