#include "tunnel/config.h"

#include <errno.h>
#include <jansson.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/errmsg.h"
#include "core/jsonfield.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/units.h"

#define DEFAULT_CONNECT_TIMEOUT (5 * FG_NS_PER_SEC)
#define DEFAULT_IDLE_TIMEOUT	(300 * FG_NS_PER_SEC)
#define DEFAULT_KEEPALIVE	(10 * FG_NS_PER_SEC)
#define DEFAULT_POOL		4

const char *fg_tunnel_transport_name(enum fg_tunnel_transport t)
{
	switch (t) {
	case FG_TT_TCP: return "tcp";
	case FG_TT_TLS: return "tls";
	case FG_TT_WS: return "ws";
	case FG_TT_WSS: return "wss";
	case FG_TT_AEAD: return "aead";
	}
	return "?";
}

const char *fg_tunnel_role_name(enum fg_tunnel_role r)
{
	switch (r) {
	case FG_TUNNEL_ENTRY: return "entry";
	case FG_TUNNEL_RELAY: return "relay";
	case FG_TUNNEL_EXIT: return "exit";
	}
	return "?";
}

static void link_deinit(struct fg_tunnel_link_cfg *l)
{
	fg_free(l->peers);
	l->peers = NULL;
	l->npeers = 0;
	explicit_bzero(l->psk, sizeof(l->psk));
	explicit_bzero(l->keys, sizeof(l->keys));
}

void fg_tunnel_cfg_deinit(struct fg_tunnel_cfg *c)
{
	link_deinit(&c->prev);
	link_deinit(&c->next);
	fg_free(c->targets);
	c->targets = NULL;
	c->ntargets = 0;
}

static int dup_array(void **dst, const void *src, size_t n, size_t size)
{
	*dst = NULL;
	if (!n)
		return 0;
	*dst = fg_calloc(n, size);
	if (!*dst)
		return -ENOMEM;
	memcpy(*dst, src, n * size);
	return 0;
}

int fg_tunnel_cfg_copy(struct fg_tunnel_cfg *dst, const struct fg_tunnel_cfg *src)
{
	*dst = *src;
	dst->prev.peers = dst->next.peers = NULL;
	dst->targets = NULL;
	if (dup_array((void **)&dst->prev.peers, src->prev.peers, src->prev.npeers,
		      sizeof(*src->prev.peers)) ||
	    dup_array((void **)&dst->next.peers, src->next.peers, src->next.npeers,
		      sizeof(*src->next.peers)) ||
	    dup_array((void **)&dst->targets, src->targets, src->ntargets, sizeof(*src->targets))) {
		fg_tunnel_cfg_deinit(dst);
		return -ENOMEM;
	}
	return 0;
}

static bool endpoint_equal(const struct fg_endpoint *a, const struct fg_endpoint *b)
{
	return strcmp(a->host, b->host) == 0 && a->port_lo == b->port_lo &&
	       a->port_hi == b->port_hi;
}

static bool keys_equal(const struct fg_tunnel_link_cfg *a, const struct fg_tunnel_link_cfg *b)
{
	if (a->psk_id != b->psk_id || a->psk_len != b->psk_len ||
	    memcmp(a->psk, b->psk, a->psk_len) || a->nkeys != b->nkeys)
		return false;
	for (size_t i = 0; i < a->nkeys; i++)
		if (a->keys[i].id != b->keys[i].id || a->keys[i].len != b->keys[i].len ||
		    memcmp(a->keys[i].key, b->keys[i].key, a->keys[i].len))
			return false;
	return true;
}

static bool link_equal(const struct fg_tunnel_link_cfg *a, const struct fg_tunnel_link_cfg *b,
		       bool with_keys)
{
	if (a->present != b->present)
		return false;
	if (!a->present)
		return true;
	if (with_keys && !keys_equal(a, b))
		return false;
	if (a->transport != b->transport || a->mux != b->mux || a->is_listen != b->is_listen ||
	    a->npeers != b->npeers || a->balance != b->balance || strcmp(a->ws_path, b->ws_path) ||
	    strcmp(a->ws_host, b->ws_host) || a->pool != b->pool ||
	    a->keepalive_ns != b->keepalive_ns)
		return false;
	if (a->is_listen && !endpoint_equal(&a->listen, &b->listen))
		return false;
	for (size_t i = 0; i < a->npeers; i++)
		if (!endpoint_equal(&a->peers[i].address, &b->peers[i].address) ||
		    strcmp(a->peers[i].fingerprint, b->peers[i].fingerprint) ||
		    strcmp(a->peers[i].node, b->peers[i].node))
			return false;
	return true;
}

static bool cfg_equal(const struct fg_tunnel_cfg *a, const struct fg_tunnel_cfg *b, bool with_keys)
{
	if (strcmp(a->name, b->name) || strcmp(a->id, b->id) || a->role != b->role ||
	    !endpoint_equal(&a->listen, &b->listen) || !link_equal(&a->prev, &b->prev, with_keys) ||
	    !link_equal(&a->next, &b->next, with_keys) || a->ntargets != b->ntargets ||
	    a->target_balance != b->target_balance || a->rate_up != b->rate_up ||
	    a->rate_down != b->rate_down || a->rate_up_conn != b->rate_up_conn ||
	    a->rate_down_conn != b->rate_down_conn || a->burst != b->burst ||
	    a->max_conns != b->max_conns || a->max_conns_per_ip != b->max_conns_per_ip ||
	    a->connect_timeout_ns != b->connect_timeout_ns ||
	    a->idle_timeout_ns != b->idle_timeout_ns || a->enabled != b->enabled)
		return false;
	for (size_t i = 0; i < a->ntargets; i++)
		if (!endpoint_equal(&a->targets[i], &b->targets[i]))
			return false;
	return true;
}

bool fg_tunnel_cfg_equal(const struct fg_tunnel_cfg *a, const struct fg_tunnel_cfg *b)
{
	return cfg_equal(a, b, true);
}

bool fg_tunnel_cfg_equal_but_keys(const struct fg_tunnel_cfg *a, const struct fg_tunnel_cfg *b)
{
	return cfg_equal(a, b, false);
}

const struct fg_tunnel_key *fg_tunnel_link_key(const struct fg_tunnel_link_cfg *l, uint32_t id)
{
	for (size_t i = 0; i < l->nkeys; i++)
		if (l->keys[i].id == id)
			return &l->keys[i];
	return NULL;
}

bool fg_tunnel_link_needs_cert(const struct fg_tunnel_link_cfg *l)
{
	return l->present && l->is_listen &&
	       (l->transport == FG_TT_TLS || l->transport == FG_TT_WSS);
}

void fg_tunnel_set_free(struct fg_tunnel_set *s)
{
	for (size_t i = 0; i < s->n; i++)
		fg_tunnel_cfg_deinit(&s->v[i]);
	fg_free(s->v);
	s->v = NULL;
	s->n = 0;
}

/* ---- stream open header ------------------------------------------------ */

void fg_tunnel_open_encode(uint16_t port_offset, uint8_t out[FG_TUNNEL_OPEN_LEN])
{
	out[0] = 1;
	out[1] = 0;
	out[2] = (uint8_t)(port_offset >> 8);
	out[3] = (uint8_t)port_offset;
}

int fg_tunnel_open_decode(const uint8_t *buf, size_t len, uint16_t *port_offset)
{
	if (len < FG_TUNNEL_OPEN_LEN)
		return -EAGAIN;
	if (buf[0] != 1 || buf[1] != 0)
		return -EINVAL;
	*port_offset = (uint16_t)(buf[2] << 8 | buf[3]);
	return FG_TUNNEL_OPEN_LEN;
}

/* ---- JSON helpers ------------------------------------------------------ */

static int b64_val(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+' || c == '-')
		return 62;
	if (c == '/' || c == '_')
		return 63;
	return -1;
}

/* Standard or URL-safe base64, padding optional. Returns the decoded
 * length or -1 (bad character, bad length, over cap, nonzero spare bits). */
static int b64_decode(const char *s, uint8_t *out, size_t cap)
{
	size_t n = strlen(s), o = 0;
	while (n && s[n - 1] == '=')
		n--;
	if (strlen(s) - n > 2 || n % 4 == 1)
		return -1;
	uint32_t acc = 0;
	int bits = 0;
	for (size_t i = 0; i < n; i++) {
		int v = b64_val(s[i]);
		if (v < 0)
			return -1;
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o >= cap)
				return -1;
			out[o++] = (uint8_t)(acc >> bits);
		}
	}
	if (bits && (acc & ((1u << bits) - 1)))
		return -1;
	return (int)o;
}

static int parse_balance(const json_t *v, const char *path, const char *field,
			 enum fg_tunnel_balance *out, char *err, size_t errlen)
{
	const char *s = NULL;
	int rc = fg_json_get_string(v, path, field, &s, err, errlen);
	if (rc)
		return rc;
	if (strcmp(s, "failover") == 0)
		*out = FG_TBAL_FAILOVER;
	else if (strcmp(s, "round-robin") == 0)
		*out = FG_TBAL_ROUND_ROBIN;
	else
		return fg_errf(err, errlen, "%s.%s: \"%.40s\" is not failover or round-robin", path,
			       field, s);
	return 0;
}

/* One key object at path p: {"id": u32, "key": base64 of 16-64 bytes},
 * plus "dial": bool when it is an element of "keys" (dial != NULL). The
 * key text is never echoed in full. */
static int parse_key(const json_t *o, const char *p, struct fg_tunnel_key *k, bool *dial, char *err,
		     size_t errlen)
{
	char vt[72];
	if (!json_is_object(o)) {
		fg_json_value_text(o, vt, sizeof(vt));
		return fg_errf(err, errlen,
			       "%s: %s must be an object {\"id\": N, \"key\": base64%s}", p, vt,
			       dial ? ", \"dial\": bool" : "");
	}
	const char *key, *s = NULL;
	json_t *v;
	bool have_id = false, have_key = false;
	int rc;
	json_object_foreach((json_t *)o, key, v)
	{
		if (strcmp(key, "id") == 0) {
			if ((rc = fg_json_get_uint(v, p, key, 0, UINT32_MAX, &k->id, err, errlen)))
				return rc;
			have_id = true;
		} else if (strcmp(key, "key") == 0) {
			if ((rc = fg_json_get_string(v, p, key, &s, err, errlen)))
				return rc;
			int n = b64_decode(s, k->key, sizeof(k->key));
			if (n < 16 || n > 64) {
				explicit_bzero(k->key, sizeof(k->key));
				/* never echo a secret in full */
				return fg_errf(err, errlen,
					       "%s.key: \"%.4s...\" is not base64 of 16-64 bytes",
					       p, s);
			}
			k->len = (size_t)n;
			have_key = true;
		} else if (dial && strcmp(key, "dial") == 0) {
			if ((rc = fg_json_get_bool(v, p, key, dial, err, errlen)))
				return rc;
		} else {
			return fg_errf(err, errlen, "%s.%.64s: unknown field", p, key);
		}
	}
	if (!have_id)
		return fg_errf(err, errlen, "%s.id: missing", p);
	if (!have_key)
		return fg_errf(err, errlen, "%s.key: missing", p);
	return 0;
}

/* "psk": the link's one key, which it dials with and accepts. */
static int parse_psk(const json_t *o, const char *path, struct fg_tunnel_link_cfg *l, char *err,
		     size_t errlen)
{
	char p[96];
	snprintf(p, sizeof(p), "%s.psk", path);
	int rc = parse_key(o, p, &l->keys[0], NULL, err, errlen);
	if (rc)
		return rc;
	l->nkeys = 1;
	l->psk_id = l->keys[0].id;
	return 0;
}

/* "keys": 1-FG_TUNNEL_MAX_KEYS keys with distinct ids, exactly one
 * marked "dial" (the one this node dials with); a listener accepts all of
 * them. What a key rotation sends: the new key to dial with, the previous
 * one still accepted for a grace period. */
static int parse_keys(const json_t *a, const char *path, struct fg_tunnel_link_cfg *l, char *err,
		      size_t errlen)
{
	char p[96], vt[72];
	snprintf(p, sizeof(p), "%s.keys", path);
	if (!json_is_array(a) || json_array_size(a) == 0 ||
	    json_array_size(a) > FG_TUNNEL_MAX_KEYS) {
		fg_json_value_text(a, vt, sizeof(vt));
		return fg_errf(err, errlen, "%s: %s must be an array of 1-%d keys", p, vt,
			       FG_TUNNEL_MAX_KEYS);
	}
	size_t ndial = 0;
	for (size_t i = 0; i < json_array_size(a); i++) {
		char kp[160];
		bool dial = false;
		snprintf(kp, sizeof(kp), "%s[%zu]", p, i);
		int rc = parse_key(json_array_get(a, i), kp, &l->keys[i], &dial, err, errlen);
		if (rc)
			return rc;
		for (size_t k = 0; k < i; k++)
			if (l->keys[k].id == l->keys[i].id)
				return fg_errf(err, errlen, "%s.id: %u is also the id of %s[%zu]",
					       kp, l->keys[i].id, p, k);
		l->nkeys = i + 1;
		if (dial) {
			ndial++;
			l->psk_id = l->keys[i].id;
		}
	}
	if (ndial != 1)
		return fg_errf(err, errlen,
			       "%s: exactly one key must have \"dial\": true (%zu have)", p, ndial);
	return 0;
}

static int parse_ws(const json_t *o, const char *path, struct fg_tunnel_link_cfg *l, char *err,
		    size_t errlen)
{
	char p[96], vt[72];
	snprintf(p, sizeof(p), "%s.ws", path);
	if (!json_is_object(o)) {
		fg_json_value_text(o, vt, sizeof(vt));
		return fg_errf(err, errlen, "%s: %s must be an object {\"path\", \"host\"}", p, vt);
	}
	const char *key, *s = NULL;
	json_t *v;
	int rc;
	json_object_foreach((json_t *)o, key, v)
	{
		if ((rc = fg_json_get_string(v, p, key, &s, err, errlen)))
			return rc;
		bool bad = false;
		for (const char *c = s; *c; c++)
			if ((unsigned char)*c <= 0x20 || *c == 0x7f)
				bad = true;
		if (strcmp(key, "path") == 0) {
			if (bad || s[0] != '/' || strlen(s) > FG_TUNNEL_WS_PATH_MAX)
				return fg_errf(err, errlen,
					       "%s.path: \"%.80s\" must start with / and hold no "
					       "spaces or control characters (at most 255)",
					       p, s);
			strcpy(l->ws_path, s);
		} else if (strcmp(key, "host") == 0) {
			if (bad || !*s || strlen(s) >= sizeof(l->ws_host))
				return fg_errf(err, errlen,
					       "%s.host: \"%.80s\" is not a Host header value", p,
					       s);
			strcpy(l->ws_host, s);
		} else {
			return fg_errf(err, errlen, "%s.%.64s: unknown field", p, key);
		}
	}
	return 0;
}

static int parse_peer(const json_t *o, const char *path, struct fg_tunnel_peer *pe, char *err,
		      size_t errlen)
{
	char vt[72];
	const char *key, *s = NULL, *why;
	json_t *v;
	int rc;
	bool have_addr = false;
	if (!json_is_object(o)) {
		fg_json_value_text(o, vt, sizeof(vt));
		return fg_errf(err, errlen,
			       "%s: %s must be an object {\"address\", \"fingerprint\", \"node\"}",
			       path, vt);
	}
	json_object_foreach((json_t *)o, key, v)
	{
		if ((rc = fg_json_get_string(v, path, key, &s, err, errlen)))
			return rc;
		if (strcmp(key, "address") == 0) {
			if (fg_endpoint_parse(s, false, &pe->address, &why))
				return fg_errf(err, errlen, "%s.address: \"%.80s\": %s", path, s,
					       why);
			if (pe->address.port_lo != pe->address.port_hi)
				return fg_errf(err, errlen,
					       "%s.address: \"%.80s\": one port, not a range", path,
					       s);
			if (pe->address.is_ip && fg_addr_is_wildcard(&pe->address.ip))
				return fg_errf(err, errlen, "%s.address: \"%.80s\": needs a host",
					       path, s);
			have_addr = true;
		} else if (strcmp(key, "fingerprint") == 0) {
			uint8_t fp[FG_TLS_FP_LEN];
			if (fg_tls_parse_pin(s, fp))
				return fg_errf(err, errlen,
					       "%s.fingerprint: \"%.100s\" is not a SHA-256 "
					       "fingerprint (64 hex digits, colons allowed)",
					       path, s);
			fg_tls_format_fp(fp, pe->fingerprint);
		} else if (strcmp(key, "node") == 0) {
			if (strlen(s) > FG_NAME_MAX)
				return fg_errf(err, errlen, "%s.node: longer than %d characters",
					       path, FG_NAME_MAX);
			strcpy(pe->node, s);
		} else {
			return fg_errf(err, errlen, "%s.%.64s: unknown field", path, key);
		}
	}
	if (!have_addr)
		return fg_errf(err, errlen, "%s.address: missing", path);
	return 0;
}

static int parse_link(const json_t *o, const char *path, bool is_prev, struct fg_tunnel_link_cfg *l,
		      char *err, size_t errlen)
{
	char vt[72];
	const char *key, *s = NULL, *why;
	json_t *v;
	int rc = 0;
	bool have_transport = false, have_psk = false, have_keys = false, have_listen = false,
	     have_peers = false, have_ws = false, have_pool = false;

	memset(l, 0, sizeof(*l));
	l->present = true;
	l->mux = true;
	l->balance = FG_TBAL_FAILOVER;
	strcpy(l->ws_path, "/");
	l->pool = DEFAULT_POOL;
	l->keepalive_ns = DEFAULT_KEEPALIVE;
	if (!json_is_object(o)) {
		fg_json_value_text(o, vt, sizeof(vt));
		return fg_errf(err, errlen, "%s: %s must be an object", path, vt);
	}
	json_object_foreach((json_t *)o, key, v)
	{
		if (strcmp(key, "transport") == 0) {
			if ((rc = fg_json_get_string(v, path, key, &s, err, errlen)))
				return rc;
			if (strcmp(s, "tcp") == 0)
				l->transport = FG_TT_TCP;
			else if (strcmp(s, "tls") == 0)
				l->transport = FG_TT_TLS;
			else if (strcmp(s, "ws") == 0)
				l->transport = FG_TT_WS;
			else if (strcmp(s, "wss") == 0)
				l->transport = FG_TT_WSS;
			else if (strcmp(s, "aead") == 0)
				l->transport = FG_TT_AEAD;
			else
				return fg_errf(
				    err, errlen,
				    "%s.transport: \"%.40s\" is not tcp, tls, ws, wss or "
				    "aead",
				    path, s);
			have_transport = true;
		} else if (strcmp(key, "mux") == 0) {
			rc = fg_json_get_bool(v, path, key, &l->mux, err, errlen);
		} else if (strcmp(key, "psk") == 0) {
			rc = parse_psk(v, path, l, err, errlen);
			have_psk = true;
		} else if (strcmp(key, "keys") == 0) {
			rc = parse_keys(v, path, l, err, errlen);
			have_keys = true;
		} else if (strcmp(key, "listen") == 0) {
			if ((rc = fg_json_get_string(v, path, key, &s, err, errlen)))
				return rc;
			if (fg_endpoint_parse(s, true, &l->listen, &why))
				return fg_errf(err, errlen, "%s.listen: \"%.80s\": %s", path, s,
					       why);
			if (l->listen.port_lo != l->listen.port_hi)
				return fg_errf(err, errlen,
					       "%s.listen: \"%.80s\": a link listens on one port",
					       path, s);
			have_listen = true;
		} else if (strcmp(key, "peers") == 0) {
			if (!json_is_array(v) || json_array_size(v) == 0 ||
			    json_array_size(v) > FG_TUNNEL_MAX_PEERS) {
				fg_json_value_text(v, vt, sizeof(vt));
				return fg_errf(err, errlen,
					       "%s.peers: %s must be an array of 1-%d peers", path,
					       vt, FG_TUNNEL_MAX_PEERS);
			}
			l->npeers = json_array_size(v);
			l->peers = fg_calloc(l->npeers, sizeof(*l->peers));
			if (!l->peers)
				return fg_errf(err, errlen, "out of memory");
			for (size_t i = 0; i < l->npeers; i++) {
				char pp[128];
				snprintf(pp, sizeof(pp), "%s.peers[%zu]", path, i);
				if ((rc = parse_peer(json_array_get(v, i), pp, &l->peers[i], err,
						     errlen)))
					return rc;
			}
			have_peers = true;
		} else if (strcmp(key, "balance") == 0) {
			rc = parse_balance(v, path, key, &l->balance, err, errlen);
		} else if (strcmp(key, "ws") == 0) {
			rc = parse_ws(v, path, l, err, errlen);
			have_ws = true;
		} else if (strcmp(key, "pool") == 0) {
			rc = fg_json_get_uint(v, path, key, 1, 64, &l->pool, err, errlen);
			have_pool = true;
		} else if (strcmp(key, "keepalive") == 0) {
			rc = fg_json_get_duration(v, path, key, &l->keepalive_ns, err, errlen);
		} else {
			return fg_errf(err, errlen, "%s.%.64s: unknown field", path, key);
		}
		if (rc)
			return rc;
	}
	if (!have_transport)
		return fg_errf(err, errlen, "%s.transport: missing", path);
	if (have_psk && have_keys)
		return fg_errf(err, errlen, "%s.keys: give \"psk\" or \"keys\", not both", path);
	if (!have_psk && !have_keys)
		return fg_errf(err, errlen, "%s.psk: missing (every link authenticates with a key)",
			       path);
	/* the dial key, where the handshake's dialer takes it */
	const struct fg_tunnel_key *dk = fg_tunnel_link_key(l, l->psk_id);
	memcpy(l->psk, dk->key, dk->len);
	l->psk_len = dk->len;
	if (l->transport == FG_TT_AEAD && l->psk_len < 16)
		return fg_errf(err, errlen, "%s.psk.key: aead needs at least 16 bytes", path);
	if (have_listen == have_peers)
		return fg_errf(err, errlen, "%s: give exactly one of \"listen\" and \"peers\"",
			       path);
	l->is_listen = have_listen;
	if (have_ws && l->transport != FG_TT_WS && l->transport != FG_TT_WSS)
		return fg_errf(err, errlen, "%s.ws: only with transport \"ws\" or \"wss\"", path);
	bool pinned = l->transport == FG_TT_TLS || l->transport == FG_TT_WSS;
	for (size_t i = 0; i < l->npeers; i++) {
		if (pinned && !l->peers[i].fingerprint[0])
			return fg_errf(err, errlen,
				       "%s.peers[%zu].fingerprint: required with transport \"%s\"",
				       path, i, fg_tunnel_transport_name(l->transport));
		if (!pinned && l->peers[i].fingerprint[0])
			return fg_errf(err, errlen,
				       "%s.peers[%zu].fingerprint: only with transport tls or wss",
				       path, i);
	}
	if (have_pool && !(is_prev && !l->is_listen && !l->mux))
		return fg_errf(err, errlen,
			       "%s.pool: only on a prev link that dials (\"peers\") without mux",
			       path);
	return 0;
}

static int parse_targets(const json_t *v, const char *path, struct fg_tunnel_cfg *c, char *err,
			 size_t errlen)
{
	char vt[72];
	const char *s = NULL, *why;
	int rc;
	if (!json_is_array(v) || json_array_size(v) == 0 ||
	    json_array_size(v) > FG_TUNNEL_MAX_TARGETS) {
		fg_json_value_text(v, vt, sizeof(vt));
		return fg_errf(err, errlen,
			       "%s.targets: %s must be an array of 1-%d \"host:port\" strings",
			       path, vt, FG_TUNNEL_MAX_TARGETS);
	}
	c->ntargets = json_array_size(v);
	c->targets = fg_calloc(c->ntargets, sizeof(*c->targets));
	if (!c->targets)
		return fg_errf(err, errlen, "out of memory");
	for (size_t i = 0; i < c->ntargets; i++) {
		char tp[32];
		snprintf(tp, sizeof(tp), "targets[%zu]", i);
		if ((rc = fg_json_get_string(json_array_get(v, i), path, tp, &s, err, errlen)))
			return rc;
		if (fg_endpoint_parse(s, false, &c->targets[i], &why))
			return fg_errf(err, errlen, "%s.targets[%zu]: \"%.80s\": %s", path, i, s,
				       why);
		if (c->targets[i].is_ip && fg_addr_is_wildcard(&c->targets[i].ip))
			return fg_errf(err, errlen,
				       "%s.targets[%zu]: \"%.80s\": a target needs a host", path, i,
				       s);
	}
	return 0;
}

static int parse_tunnel(const json_t *o, const char *path, struct fg_tunnel_cfg *c, char *err,
			size_t errlen)
{
	const char *key, *s = NULL, *why;
	json_t *v;
	char vt[72], lp[64];
	bool have_name = false, have_role = false, have_listen = false, have_targets = false,
	     have_proto = false, have_tbal = false, entry_only = false;
	const char *entry_field = NULL;
	int rc = 0;

	memset(c, 0, sizeof(*c));
	c->target_balance = FG_TBAL_FAILOVER;
	c->connect_timeout_ns = DEFAULT_CONNECT_TIMEOUT;
	c->idle_timeout_ns = DEFAULT_IDLE_TIMEOUT;
	c->enabled = true;
	if (!json_is_object(o)) {
		fg_json_value_text(o, vt, sizeof(vt));
		return fg_errf(err, errlen, "%s: %s must be an object", path, vt);
	}
	json_object_foreach((json_t *)o, key, v)
	{
		bool limit = false;
		if (strcmp(key, "name") == 0) {
			if ((rc = fg_json_get_name(v, path, c->name, FG_NAME_MAX, err, errlen)))
				return rc;
			have_name = true;
		} else if (strcmp(key, "id") == 0) {
			if ((rc = fg_json_get_id(v, path, c->id, FG_NAME_MAX, err, errlen)))
				return rc;
		} else if (strcmp(key, "role") == 0) {
			if ((rc = fg_json_get_string(v, path, key, &s, err, errlen)))
				return rc;
			if (strcmp(s, "entry") == 0)
				c->role = FG_TUNNEL_ENTRY;
			else if (strcmp(s, "relay") == 0)
				c->role = FG_TUNNEL_RELAY;
			else if (strcmp(s, "exit") == 0)
				c->role = FG_TUNNEL_EXIT;
			else
				return fg_errf(err, errlen,
					       "%s.role: \"%.40s\" is not entry, relay or exit",
					       path, s);
			have_role = true;
		} else if (strcmp(key, "listen") == 0) {
			if ((rc = fg_json_get_string(v, path, key, &s, err, errlen)))
				return rc;
			if (fg_endpoint_parse(s, true, &c->listen, &why))
				return fg_errf(err, errlen, "%s.listen: \"%.80s\": %s", path, s,
					       why);
			if ((unsigned)c->listen.port_hi - c->listen.port_lo + 1 > 4096)
				return fg_errf(err, errlen,
					       "%s.listen: a range of more than 4096 ports", path);
			have_listen = true;
		} else if (strcmp(key, "proto") == 0) {
			if ((rc = fg_json_get_string(v, path, key, &s, err, errlen)))
				return rc;
			if (strcmp(s, "tcp") != 0)
				return fg_errf(err, errlen,
					       "%s.proto: \"%.40s\": tunnels carry tcp only", path,
					       s);
			have_proto = true;
		} else if (strcmp(key, "prev") == 0) {
			snprintf(lp, sizeof(lp), "%s.prev", path);
			rc = parse_link(v, lp, true, &c->prev, err, errlen);
		} else if (strcmp(key, "next") == 0) {
			snprintf(lp, sizeof(lp), "%s.next", path);
			rc = parse_link(v, lp, false, &c->next, err, errlen);
		} else if (strcmp(key, "targets") == 0) {
			rc = parse_targets(v, path, c, err, errlen);
			have_targets = true;
		} else if (strcmp(key, "target_balance") == 0) {
			rc = parse_balance(v, path, key, &c->target_balance, err, errlen);
			have_tbal = true;
		} else if (strcmp(key, "rate_up") == 0) {
			rc = fg_json_get_rate(v, path, key, false, &c->rate_up, err, errlen);
			limit = true;
		} else if (strcmp(key, "rate_down") == 0) {
			rc = fg_json_get_rate(v, path, key, false, &c->rate_down, err, errlen);
			limit = true;
		} else if (strcmp(key, "rate_up_per_conn") == 0) {
			rc = fg_json_get_rate(v, path, key, false, &c->rate_up_conn, err, errlen);
			limit = true;
		} else if (strcmp(key, "rate_down_per_conn") == 0) {
			rc = fg_json_get_rate(v, path, key, false, &c->rate_down_conn, err, errlen);
			limit = true;
		} else if (strcmp(key, "burst") == 0) {
			rc = fg_json_get_rate(v, path, key, true, &c->burst, err, errlen);
			limit = true;
		} else if (strcmp(key, "max_conns") == 0) {
			rc = fg_json_get_uint(v, path, key, 0, 1000000000, &c->max_conns, err,
					      errlen);
			limit = true;
		} else if (strcmp(key, "max_conns_per_ip") == 0) {
			rc = fg_json_get_uint(v, path, key, 0, 1000000000, &c->max_conns_per_ip,
					      err, errlen);
			limit = true;
		} else if (strcmp(key, "connect_timeout") == 0) {
			rc =
			    fg_json_get_duration(v, path, key, &c->connect_timeout_ns, err, errlen);
		} else if (strcmp(key, "idle_timeout") == 0) {
			rc = fg_json_get_duration(v, path, key, &c->idle_timeout_ns, err, errlen);
		} else if (strcmp(key, "enabled") == 0) {
			rc = fg_json_get_bool(v, path, key, &c->enabled, err, errlen);
		} else {
			return fg_errf(err, errlen, "%s.%.64s: unknown field", path, key);
		}
		if (rc)
			return rc;
		if (limit && !entry_field) {
			entry_only = true;
			entry_field = key;
		}
	}
	if (!have_name)
		return fg_errf(err, errlen, "%s.name: missing", path);
	if (!have_role)
		return fg_errf(err, errlen, "%s.role: missing (entry, relay or exit)", path);
	bool is_entry = c->role == FG_TUNNEL_ENTRY, is_exit = c->role == FG_TUNNEL_EXIT;
	const char *role = fg_tunnel_role_name(c->role);
	if (is_entry && !have_listen)
		return fg_errf(err, errlen,
			       "%s.listen: missing (an entry needs its client address)", path);
	if (!is_entry && (have_listen || have_proto))
		return fg_errf(err, errlen, "%s.%s: only an entry has a client listen address",
			       path, have_listen ? "listen" : "proto");
	if (!is_entry && entry_only)
		return fg_errf(err, errlen, "%s.%s: limits apply at the entry, not at a %s", path,
			       entry_field, role);
	if (!is_exit && !c->next.present)
		return fg_errf(err, errlen, "%s.next: missing (a%s %s needs its next hop)", path,
			       is_entry ? "n" : "", role);
	if (is_exit && c->next.present)
		return fg_errf(err, errlen, "%s.next: an exit has no next hop", path);
	if (!is_entry && !c->prev.present)
		return fg_errf(err, errlen, "%s.prev: missing (a%s %s needs its previous hop)",
			       path, is_exit ? "n" : "", role);
	if (is_entry && c->prev.present)
		return fg_errf(err, errlen, "%s.prev: an entry has no previous hop", path);
	if (is_exit && !have_targets)
		return fg_errf(err, errlen, "%s.targets: missing (an exit connects only to these)",
			       path);
	if (!is_exit && (have_targets || have_tbal))
		return fg_errf(err, errlen, "%s.%s: only an exit has targets", path,
			       have_targets ? "targets" : "target_balance");
	/* the tunnel number of the handshake: the id when it is a plain number */
	if (c->id[0]) {
		char *end;
		errno = 0;
		unsigned long long n = strtoull(c->id, &end, 10);
		if (!errno && !*end && c->id[0] >= '0' && c->id[0] <= '9' && n <= UINT32_MAX)
			c->tunnel_num = (uint32_t)n;
	}
	if (is_exit) {
		/* the stream open carries a port offset within the entry's listen
		 * range; a ranged target is checked against it at open time */
		for (size_t i = 0; i < c->ntargets; i++)
			if (c->targets[i].port_hi - c->targets[i].port_lo + 1 > 4096)
				return fg_errf(err, errlen,
					       "%s.targets[%zu]: a range of more than 4096 ports",
					       path, i);
	}
	return 0;
}

static bool ranges_overlap(uint16_t alo, uint16_t ahi, uint16_t blo, uint16_t bhi)
{
	return alo <= bhi && blo <= ahi;
}

static bool addr_conflict(const struct fg_endpoint *a, const struct fg_endpoint *b)
{
	if (!ranges_overlap(a->port_lo, a->port_hi, b->port_lo, b->port_hi))
		return false;
	if (a->ip.ss_family != b->ip.ss_family)
		return true;
	if (fg_addr_is_wildcard(&a->ip) || fg_addr_is_wildcard(&b->ip))
		return true;
	return fg_addr_ip_equal((const struct sockaddr *)&a->ip, (const struct sockaddr *)&b->ip);
}

/* Every TCP address a tunnel binds, with the JSON path naming it. */
static size_t tunnel_binds(const struct fg_tunnel_cfg *c, const struct fg_endpoint *out[3],
			   const char *names[3])
{
	size_t n = 0;
	if (c->role == FG_TUNNEL_ENTRY) {
		names[n] = "listen";
		out[n++] = &c->listen;
	}
	if (c->prev.present && c->prev.is_listen) {
		names[n] = "prev.listen";
		out[n++] = &c->prev.listen;
	}
	if (c->next.present && c->next.is_listen) {
		names[n] = "next.listen";
		out[n++] = &c->next.listen;
	}
	return n;
}

static int set_check(const struct fg_tunnel_set *s, char *err, size_t errlen)
{
	for (size_t i = 0; i < s->n; i++) {
		const struct fg_endpoint *ai[3], *aj[3];
		const char *ni[3], *nj[3];
		size_t ci = tunnel_binds(&s->v[i], ai, ni);
		if (ci == 2 && addr_conflict(ai[0], ai[1]))
			return fg_errf(err, errlen, "tunnels[%zu].%s: port %u is also its %s", i,
				       ni[1], ai[1]->port_lo, ni[0]);
		for (size_t j = 0; j < i; j++) {
			if (strcmp(s->v[i].name, s->v[j].name) == 0)
				return fg_errf(
				    err, errlen,
				    "tunnels[%zu].name: \"%s\" is already used by tunnels[%zu]", i,
				    s->v[i].name, j);
			if (!s->v[i].enabled || !s->v[j].enabled)
				continue;
			size_t cj = tunnel_binds(&s->v[j], aj, nj);
			for (size_t a = 0; a < ci; a++)
				for (size_t b = 0; b < cj; b++)
					if (addr_conflict(ai[a], aj[b]))
						return fg_errf(
						    err, errlen,
						    "tunnels[%zu].%s: \"%s:%u\" overlaps "
						    "tunnels[%zu].%s (\"%s\")",
						    i, ni[a], ai[a]->host, ai[a]->port_lo, j, nj[b],
						    s->v[j].name);
		}
	}
	return 0;
}

int fg_tunnel_set_check_forwards(const struct fg_tunnel_set *s, const struct fg_forward_set *f,
				 char *err, size_t errlen)
{
	for (size_t i = 0; i < s->n; i++) {
		const struct fg_tunnel_cfg *c = &s->v[i];
		if (!c->enabled)
			continue;
		if ((fg_tunnel_link_needs_cert(&c->prev) || fg_tunnel_link_needs_cert(&c->next)) &&
		    (!s->tls_cert[0] || !s->tls_key[0]))
			return fg_errf(
			    err, errlen,
			    "tunnels[%zu]: a tls/wss link listens here, so the node needs "
			    "\"tls\": {\"cert\": ..., \"key\": ...}",
			    i);
		const struct fg_endpoint *a[3];
		const char *names[3];
		size_t na = tunnel_binds(c, a, names);
		for (size_t j = 0; f && j < f->n; j++) {
			if (!f->v[j].enabled || !(f->v[j].proto & FG_PROTO_TCP))
				continue;
			for (size_t k = 0; k < na; k++)
				if (addr_conflict(a[k], &f->v[j].listen))
					return fg_errf(err, errlen,
						       "tunnels[%zu].%s: port %u overlaps forward "
						       "\"%s\"",
						       i, names[k], a[k]->port_lo, f->v[j].name);
		}
	}
	return 0;
}

int fg_tunnel_parse_json(const void *json, struct fg_tunnel_set *out, char *err, size_t errlen)
{
	const json_t *arr = json;
	struct fg_tunnel_set s = {0};
	memset(out, 0, sizeof(*out));
	if (!json_is_array(arr)) {
		char vt[72];
		fg_json_value_text(arr, vt, sizeof(vt));
		return fg_errf(err, errlen, "tunnels: %s must be an array", vt);
	}
	s.v = fg_calloc(json_array_size(arr) + 1, sizeof(*s.v));
	if (!s.v)
		return fg_errf(err, errlen, "out of memory");
	for (size_t i = 0; i < json_array_size(arr); i++) {
		char path[32];
		snprintf(path, sizeof(path), "tunnels[%zu]", i);
		s.n = i + 1;
		if (parse_tunnel(json_array_get(arr, i), path, &s.v[i], err, errlen))
			goto err;
	}
	if (set_check(&s, err, errlen))
		goto err;
	out->v = s.v;
	out->n = s.n;
	return 0;
err:
	fg_tunnel_set_free(&s);
	return -EINVAL;
}

static int parse_tls(const json_t *o, struct fg_tunnel_set *s, char *err, size_t errlen)
{
	char vt[72];
	const char *key, *v = NULL;
	json_t *jv;
	if (!json_is_object(o)) {
		fg_json_value_text(o, vt, sizeof(vt));
		return fg_errf(err, errlen, "tls: %s must be an object {\"cert\", \"key\"}", vt);
	}
	json_object_foreach((json_t *)o, key, jv)
	{
		int rc = fg_json_get_string(jv, "tls", key, &v, err, errlen);
		if (rc)
			return rc;
		if (!*v || strlen(v) >= FG_TUNNEL_PATH_MAX)
			return fg_errf(err, errlen, "tls.%s: \"%.80s\" is not a file path", key, v);
		if (strcmp(key, "cert") == 0)
			strcpy(s->tls_cert, v);
		else if (strcmp(key, "key") == 0)
			strcpy(s->tls_key, v);
		else
			return fg_errf(err, errlen, "tls.%.64s: unknown field", key);
	}
	if (!s->tls_cert[0] || !s->tls_key[0])
		return fg_errf(err, errlen, "tls.%s: missing", s->tls_cert[0] ? "key" : "cert");
	return 0;
}

int fg_tunnel_parse_doc(const char *text, size_t len, struct fg_tunnel_set *out, char *err,
			size_t errlen)
{
	json_error_t je;
	memset(out, 0, sizeof(*out));
	json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
	if (!root)
		return fg_errf(err, errlen, "line %d column %d: %s", je.line, je.column, je.text);
	int rc = 0;
	const char *key;
	json_t *v, *tunnels = NULL, *tls = NULL;
	struct fg_tunnel_set s;
	if (!json_is_object(root)) {
		rc = fg_errf(err, errlen, "the document must be an object {\"forwards\": [...]}");
		goto out;
	}
	json_object_foreach(root, key, v)
	{
		if (strcmp(key, "tunnels") == 0) {
			tunnels = v;
		} else if (strcmp(key, "tls") == 0) {
			tls = v;
		} else if (strcmp(key, "forwards") != 0) {
			rc = fg_errf(err, errlen, "%.64s: unknown field", key);
			goto out;
		}
	}
	if (tunnels) {
		if ((rc = fg_tunnel_parse_json(tunnels, &s, err, errlen)))
			goto out;
	} else {
		memset(&s, 0, sizeof(s));
	}
	if (tls && (rc = parse_tls(tls, &s, err, errlen))) {
		fg_tunnel_set_free(&s);
		goto out;
	}
	*out = s;
out:
	json_decref(root);
	return rc;
}

int fg_tunnel_load_file(const char *path, struct fg_tunnel_set *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	FILE *f = fopen(path, "rb");
	if (!f)
		return fg_errf(err, errlen, "%s: %s", path, strerror(errno));
	char *buf = NULL;
	size_t len = 0, cap = 0;
	for (;;) {
		if (len == cap) {
			cap = cap ? cap * 2 : 65536;
			char *nb = cap > 64 * 1024 * 1024 ? NULL : fg_realloc(buf, cap);
			if (!nb) {
				fclose(f);
				fg_free(buf);
				return fg_errf(err, errlen, "%s: too big or out of memory", path);
			}
			buf = nb;
		}
		size_t n = fread(buf + len, 1, cap - len, f);
		len += n;
		if (n == 0)
			break;
	}
	int rerr = ferror(f);
	fclose(f);
	if (rerr) {
		fg_free(buf);
		return fg_errf(err, errlen, "%s: read error", path);
	}
	int rc = fg_tunnel_parse_doc(buf, len, out, err, errlen);
	fg_free(buf);
	return rc;
}
