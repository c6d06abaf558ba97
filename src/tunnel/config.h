/* The tunnels section of a node's desired state (and of a `flowgate
 * forward -c` file): one node's role in each tunnel and its links. Model,
 * JSON parser and validator; pure apart from reading a file. Schema and
 * rules: doc/tunnel.md. */
#ifndef FG_TUNNEL_CONFIG_H
#define FG_TUNNEL_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fwd/config.h"
#include "net/addr.h"
#include "net/tls.h"
#include "tunnel/handshake.h"

#define FG_TUNNEL_MAX_PEERS   16
#define FG_TUNNEL_MAX_TARGETS 64
#define FG_TUNNEL_WS_PATH_MAX 255
#define FG_TUNNEL_PATH_MAX    4096
#define FG_TUNNEL_MAX_KEYS    4 /* keys a link accepts at once (rotation) */

enum fg_tunnel_role { FG_TUNNEL_ENTRY = 1, FG_TUNNEL_RELAY = 2, FG_TUNNEL_EXIT = 3 };

enum fg_tunnel_transport {
	FG_TT_TCP = 1,
	FG_TT_TLS = 2,
	FG_TT_WS = 3,
	FG_TT_WSS = 4,
	FG_TT_AEAD = 5,
};

enum fg_tunnel_balance { FG_TBAL_FAILOVER = 0, FG_TBAL_ROUND_ROBIN = 1 };

struct fg_tunnel_peer {
	struct fg_endpoint address;	    /* one port; host may be a name */
	char fingerprint[FG_TLS_FP_STRLEN]; /* "" unless tls/wss */
	char node[FG_NAME_MAX + 1];	    /* informational, may be "" */
};

/* One pre-shared key of a link. Key material: wipe copies after use, never
 * log or print it (the id is fine). */
struct fg_tunnel_key {
	uint32_t id;
	uint8_t key[FG_HS_PSK_MAX];
	size_t len;
};

struct fg_tunnel_link_cfg {
	bool present;
	enum fg_tunnel_transport transport;
	bool mux;
	/* the key this node dials with (the "psk" of a file, or the "keys"
	 * entry marked "dial") */
	uint32_t psk_id;
	uint8_t psk[FG_HS_PSK_MAX];
	size_t psk_len;
	/* every key a listener accepts, the dial key included (during a key
	 * rotation the previous key too); at least 1 */
	struct fg_tunnel_key keys[FG_TUNNEL_MAX_KEYS];
	size_t nkeys;
	bool is_listen; /* listen set; else peers */
	struct fg_endpoint listen;
	struct fg_tunnel_peer *peers; /* owned array */
	size_t npeers;
	enum fg_tunnel_balance balance;
	char ws_path[FG_TUNNEL_WS_PATH_MAX + 1]; /* "/" by default */
	char ws_host[FG_HOST_MAX + 8];		 /* "" = the peer's address */
	uint32_t pool;				 /* reverse without mux; 4 */
	int64_t keepalive_ns;			 /* 10 s */
};

struct fg_tunnel_cfg {
	char name[FG_NAME_MAX + 1];
	char id[FG_NAME_MAX + 1]; /* "" if none */
	uint32_t tunnel_num;	  /* id as a number (handshake TUNNEL), else 0 */
	enum fg_tunnel_role role;
	struct fg_endpoint listen; /* entry only */
	struct fg_tunnel_link_cfg prev, next;
	struct fg_endpoint *targets; /* exit only; owned */
	size_t ntargets;
	enum fg_tunnel_balance target_balance;
	uint64_t rate_up, rate_down, rate_up_conn, rate_down_conn, burst;
	uint32_t max_conns, max_conns_per_ip;
	int64_t connect_timeout_ns, idle_timeout_ns;
	bool enabled;
};

struct fg_tunnel_set {
	struct fg_tunnel_cfg *v; /* owned array */
	size_t n;
	/* top-level "tls" of a file ("" when absent); the agent passes its own */
	char tls_cert[FG_TUNNEL_PATH_MAX];
	char tls_key[FG_TUNNEL_PATH_MAX];
};

const char *fg_tunnel_transport_name(enum fg_tunnel_transport t);
const char *fg_tunnel_role_name(enum fg_tunnel_role r);

void fg_tunnel_cfg_deinit(struct fg_tunnel_cfg *c);
/* Deep copy; 0 or -ENOMEM. */
int fg_tunnel_cfg_copy(struct fg_tunnel_cfg *dst, const struct fg_tunnel_cfg *src);
/* Every field equal (an unchanged tunnel keeps its links and streams). */
bool fg_tunnel_cfg_equal(const struct fg_tunnel_cfg *a, const struct fg_tunnel_cfg *b);
/* Equal apart from the links' keys: a key rotation, which the engine
 * applies in place (links up stay up; new handshakes use the new keys). */
bool fg_tunnel_cfg_equal_but_keys(const struct fg_tunnel_cfg *a, const struct fg_tunnel_cfg *b);
/* The key with this id that the link accepts, or NULL. Borrowed. */
const struct fg_tunnel_key *fg_tunnel_link_key(const struct fg_tunnel_link_cfg *l, uint32_t id);
/* Does this link's far end need a TLS server certificate on this node? */
bool fg_tunnel_link_needs_cert(const struct fg_tunnel_link_cfg *l);

void fg_tunnel_set_free(struct fg_tunnel_set *s);

/* Parses a "tunnels" array already decoded by jansson (json_t *, kept void
 * so jansson stays out of this header). On error returns -EINVAL with one
 * line in err naming the JSON path ("tunnels[1].next.psk.key: ...") and
 * *out empty. Checks the set as a whole (names, ports) too, but not against
 * the forwards: see fg_tunnel_set_check_forwards. tls_* are left empty. */
int fg_tunnel_parse_json(const void *json, struct fg_tunnel_set *out, char *err, size_t errlen);

/* A whole document {"forwards":[...], "tunnels":[...], "tls":{...}}: the
 * tunnels (an absent "tunnels" gives an empty set) and the "tls" paths.
 * Unknown top-level fields are refused. Forwards are not parsed here
 * (fg_config_parse does). */
int fg_tunnel_parse_doc(const char *text, size_t len, struct fg_tunnel_set *out, char *err,
			size_t errlen);
int fg_tunnel_load_file(const char *path, struct fg_tunnel_set *out, char *err, size_t errlen);

/* No tunnel listener (client or link) shares a port with a forward's
 * listener of the same protocol; every tls/wss listening link has a
 * certificate (tls_cert set). Returns 0 or -EINVAL with err. */
int fg_tunnel_set_check_forwards(const struct fg_tunnel_set *s, const struct fg_forward_set *f,
				 char *err, size_t errlen);

/* The stream open header (4 bytes at the start of every stream, entry ->
 * exit): version 1, flags 0, u16 port offset. */
#define FG_TUNNEL_OPEN_LEN 4
void fg_tunnel_open_encode(uint16_t port_offset, uint8_t out[FG_TUNNEL_OPEN_LEN]);
/* Returns FG_TUNNEL_OPEN_LEN with *port_offset, -EAGAIN for fewer than 4
 * bytes, -EINVAL for another version or any flag. */
int fg_tunnel_open_decode(const uint8_t *buf, size_t len, uint16_t *port_offset);

#endif
