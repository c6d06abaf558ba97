/* The REST API under /api/v1, the agent endpoint /agent, /metrics and the
 * web UI's static files: the request handler behind fg_http. Resource
 * shapes and errors: doc/api.md. Loop thread only. */
#ifndef FG_SERVER_API_H
#define FG_SERVER_API_H

#include <stdint.h>

#include "server/http.h"
#include "server/hub.h"
#include "server/store.h"

/* How long a tunnel key replaced by a rotation is still accepted. */
#define FG_API_TUNNEL_KEY_GRACE_S 600

struct fg_work;
struct fg_api;
struct fg_live;
struct fg_secret_key;

struct fg_api_opts {
	const char *web_dir;		    /* the UI's built files; NULL = no UI */
	const char *public_url;		    /* base URL agents dial, e.g. "wss://gw.example:8443";
					       NULL = derived from each request's Host header */
	int64_t session_ttl_s;		    /* 0 = 12 h */
	struct fg_live *live;		    /* the UI's live channel (borrowed) */
	const struct fg_secret_key *secret; /* seals tunnel PSKs (borrowed); NULL =
					       tunnels cannot be created */
	int64_t tunnel_key_grace_s;	    /* after a key rotation the previous key
					       is accepted this long; 0 = 600 s */
};

/* Everything is borrowed and must outlive the api. */
struct fg_api *fg_api_new(struct fg_loop *loop, struct fg_store *st, struct fg_hub *hub,
			  struct fg_work *work, const struct fg_api_opts *o);
void fg_api_free(struct fg_api *api);
/* Tells the api whether it is served over TLS (for the enroll command). */
void fg_api_set_tls(struct fg_api *api, bool tls);

/* Ends the grace period of every tunnel key rotated out more than the
 * grace period before now (unix s): the previous key leaves the store and
 * the tunnel's nodes get their new state. Returns 0 or a negative errno.
 * Loop thread; the server calls it once a minute. */
int fg_api_tunnel_keys_expire(struct fg_api *api, int64_t now);

/* The fg_http handler; data is the fg_api. */
enum fg_http_verdict fg_api_handle(struct fg_http_req *r, void *data);

#endif
