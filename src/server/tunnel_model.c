/* Tunnel object: see tunnel_model.h. */
#include "server/tunnel_model.h"

#include <arpa/inet.h>
#include <errno.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/units.h"
#include "net/addr.h"

static const char *const transports[] = {"tcp", "tls", "ws", "wss", "aead"};

static const char *const top_keys[] = {"name",
				       "entry",
				       "hops",
				       "exit",
				       "exits",
				       "balance",
				       "target",
				       "transport",
				       "mux",
				       "ws_path",
				       "ws_host",
				       "direction",
				       "link_port",
				       "links",
				       "rate_up",
				       "rate_down",
				       "max_conns",
				       "max_conns_per_ip",
				       "connect_timeout",
				       "idle_timeout",
				       "enabled"};
static const char *const link_keys[] = {"transport", "mux",	  "ws_path",
					"ws_host",   "direction", "port"};
static const char *const limit_keys[] = {"rate_up",	     "rate_down",	"max_conns",
					 "max_conns_per_ip", "connect_timeout", "idle_timeout"};

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

struct perr {
	char *field, *err;
	size_t fieldlen, errlen;
};

static int __attribute__((format(printf, 3, 4)))
fail(struct perr *e, const char *field, const char *fmt, ...)
{
	va_list ap;
	snprintf(e->field, e->fieldlen, "%s", field);
	va_start(ap, fmt);
	vsnprintf(e->err, e->errlen, fmt, ap);
	va_end(ap);
	/* an unknown key or a bad value is quoted raw: keep both on one line */
	for (char *p = e->field; e->fieldlen && *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	for (char *p = e->err; e->errlen && *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	return -EINVAL;
}

static bool in_list(const char *k, const char *const *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(k, v[i]) == 0)
			return true;
	return false;
}

static int only_keys(const json_t *o, const char *path, const char *const *keys, size_t n,
		     struct perr *e)
{
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)o, k, v)
	{
		if (!in_list(k, keys, n)) {
			char f[128];
			snprintf(f, sizeof(f), "%s%s%s", path, *path ? "." : "", k);
			return fail(e, f, "%s: unknown field", f);
		}
	}
	return 0;
}

static int get_id(const json_t *v, const char *field, int64_t *out, struct perr *e)
{
	if (!json_is_integer(v) || json_integer_value(v) <= 0)
		return fail(e, field, "%s: a node id is required", field);
	*out = json_integer_value(v);
	return 0;
}

static int get_bool(const json_t *o, const char *key, const char *field, bool def, bool *out,
		    struct perr *e)
{
	json_t *v = json_object_get(o, key);
	if (!v) {
		*out = def;
		return 0;
	}
	if (!json_is_boolean(v))
		return fail(e, field, "%s: true or false", field);
	*out = json_is_true(v);
	return 0;
}

/* A string field; absent gives def (NULL def: required). */
static int get_str(const json_t *o, const char *key, const char *field, const char *def, size_t max,
		   char *out, size_t outlen, struct perr *e)
{
	json_t *v = json_object_get(o, key);
	if (!v) {
		if (!def)
			return fail(e, field, "%s: required", field);
		snprintf(out, outlen, "%s", def);
		return 0;
	}
	if (!json_is_string(v))
		return fail(e, field, "%s: a string is required", field);
	if (json_string_length(v) > max || strlen(json_string_value(v)) != json_string_length(v))
		return fail(e, field, "%s: at most %zu characters", field, max);
	snprintf(out, outlen, "%s", json_string_value(v));
	return 0;
}

static bool printable_token(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
			return false;
	return true;
}

static int check_ws_path(const char *p, const char *field, struct perr *e)
{
	if (!*p)
		return 0;
	if (p[0] != '/' || !printable_token(p))
		return fail(e, field,
			    "%s: \"%s\" must start with / and hold no spaces or control "
			    "characters",
			    field, p);
	return 0;
}

static int check_ws_host(const char *h, const char *field, struct perr *e)
{
	if (!*h)
		return 0;
	for (const char *p = h; *p; p++) {
		char c = *p;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '-' || c == '_' || c == ':' || c == '[' || c == ']'))
			return fail(e, field, "%s: \"%s\" is not a host name (optionally :port)",
				    field, h);
	}
	return 0;
}

static int get_transport(const json_t *o, const char *field, const char *def, const char **out,
			 struct perr *e)
{
	json_t *v = json_object_get(o, "transport");
	if (!v) {
		*out = def;
		return 0;
	}
	for (size_t i = 0; json_is_string(v) && i < NELEM(transports); i++) {
		if (strcmp(json_string_value(v), transports[i]) == 0) {
			*out = transports[i];
			return 0;
		}
	}
	return fail(e, field, "%s: %s%s%s is not tcp, tls, ws, wss or aead", field,
		    json_is_string(v) ? "\"" : "",
		    json_is_string(v) ? json_string_value(v) : "this",
		    json_is_string(v) ? "\"" : "");
}

static int get_direction(const json_t *o, const char *field, bool def, bool *reverse,
			 struct perr *e)
{
	json_t *v = json_object_get(o, "direction");
	if (!v) {
		*reverse = def;
		return 0;
	}
	const char *s = json_is_string(v) ? json_string_value(v) : "";
	if (strcmp(s, "entry_to_exit") == 0)
		*reverse = false;
	else if (strcmp(s, "exit_to_entry") == 0)
		*reverse = true;
	else
		return fail(e, field, "%s: entry_to_exit or exit_to_entry", field);
	return 0;
}

static int get_port(const json_t *o, const char *key, const char *field, uint16_t *out,
		    struct perr *e)
{
	json_t *v = json_object_get(o, key);
	if (!v) {
		*out = 0;
		return 0;
	}
	if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 65535)
		return fail(e, field, "%s: a port, 1-65535", field);
	*out = (uint16_t)json_integer_value(v);
	return 0;
}

static bool is_ws(const char *t)
{
	return strcmp(t, "ws") == 0 || strcmp(t, "wss") == 0;
}

static int parse_limits(const json_t *o, struct fg_tm *m, struct perr *e)
{
	m->limits = json_object();
	if (!m->limits)
		return -ENOMEM;
	for (size_t i = 0; i < NELEM(limit_keys); i++) {
		const char *k = limit_keys[i];
		json_t *v = json_object_get(o, k);
		if (!v)
			continue;
		bool rate = strncmp(k, "rate_", 5) == 0, dur = strstr(k, "timeout") != NULL;
		/* the engine's ranges (tunnel/config.c): rates >= 0, durations
		 * above 0 and below a year, counts up to 10^9 */
		if (rate || dur) {
			if (json_is_integer(v) && json_integer_value(v) >= (rate ? 0 : 1) &&
			    (rate || json_integer_value(v) < 86400LL * 365)) {
				/* plain numbers: bytes/s, seconds */
			} else if (json_is_string(v)) {
				uint64_t r;
				int64_t ns = 0;
				int rc = rate ? fg_parse_rate(json_string_value(v), &r)
					      : fg_parse_duration(json_string_value(v), &ns);
				if (rc < 0 || (dur && ns <= 0))
					return fail(e, k,
						    rate ? "%s: \"%s\" is not a rate (e.g. 10MB/s, "
							   "50mbit, 1048576)"
							 : "%s: \"%s\" is not a duration (e.g. 5s, "
							   "500ms, 2m)",
						    k, json_string_value(v));
			} else {
				return fail(e, k,
					    rate ? "%s: a rate such as \"10MB/s\""
						 : "%s: a duration such as \"5s\"",
					    k);
			}
		} else if (!json_is_integer(v) || json_integer_value(v) < 0 ||
			   json_integer_value(v) > 1000000000LL) {
			return fail(e, k, "%s: a count, 0 (no limit) to 1000000000", k);
		}
		if (json_object_set(m->limits, k, v))
			return -ENOMEM;
	}
	return 0;
}

static int parse_nodes(const json_t *arr, const char *field, size_t max, int64_t *out, size_t *n,
		       struct perr *e)
{
	if (!json_is_array(arr))
		return fail(e, field, "%s: a list of nodes", field);
	if (json_array_size(arr) > max)
		return fail(e, field, "%s: at most %zu nodes", field, max);
	size_t i;
	json_t *v;
	json_array_foreach(arr, i, v)
	{
		char f[64];
		snprintf(f, sizeof(f), "%s[%zu]", field, i);
		int rc = get_id(v, f, &out[i], e);
		if (rc)
			return rc;
		for (size_t k = 0; k < i; k++)
			if (out[k] == out[i])
				return fail(e, f, "%s: the same node twice", f);
	}
	*n = json_array_size(arr);
	return 0;
}

static int parse(const json_t *o, struct fg_tm *m, struct perr *e)
{
	int rc;
	if (!json_is_object(o))
		return fail(e, "", "a tunnel is a JSON object");
	if ((rc = only_keys(o, "", top_keys, NELEM(top_keys), e)))
		return rc;

	/* entry */
	json_t *en = json_object_get(o, "entry");
	if (!json_is_object(en))
		return fail(e, "entry", "entry: an object {\"node\" or \"group\", \"listen\"}");
	static const char *const entry_keys[] = {"node", "group", "listen"};
	if ((rc = only_keys(en, "entry", entry_keys, NELEM(entry_keys), e)))
		return rc;
	json_t *nv = json_object_get(en, "node"), *gv = json_object_get(en, "group");
	if (!!nv == !!gv)
		return fail(e, nv ? "entry.group" : "entry.node",
			    "entry: exactly one \"node\" or one \"group\"");
	if (nv && (rc = get_id(nv, "entry.node", &m->entry_node, e)))
		return rc;
	if (gv && (!json_is_integer(gv) || json_integer_value(gv) <= 0))
		return fail(e, "entry.group", "entry.group: a group id is required");
	if (gv)
		m->entry_group = json_integer_value(gv);
	if ((rc = get_str(en, "listen", "entry.listen", NULL, FG_TM_LISTEN_MAX, m->listen,
			  sizeof(m->listen), e)))
		return rc;
	struct fg_endpoint ep;
	const char *why = NULL;
	if (fg_endpoint_parse(m->listen, true, &ep, &why) < 0)
		return fail(e, "entry.listen", "entry.listen: \"%s\": %s", m->listen,
			    why ? why : "not an address");
	m->listen_lo = ep.port_lo;
	m->listen_hi = ep.port_hi;
	if (m->listen_hi - m->listen_lo + 1 > 4096)
		return fail(e, "entry.listen", "entry.listen: a range of at most 4096 ports");

	/* hops, exits */
	json_t *hv = json_object_get(o, "hops");
	if (hv && (rc = parse_nodes(hv, "hops", FG_TM_MAX_HOPS, m->hops, &m->nhops, e)))
		return rc;
	json_t *xv = json_object_get(o, "exit"), *xsv = json_object_get(o, "exits");
	if (!!xv == !!xsv)
		return fail(e, xv ? "exits" : "exit",
			    "exactly one of \"exit\" (a node) and \"exits\" (a list of nodes)");
	if (xv) {
		if ((rc = get_id(xv, "exit", &m->exits[0], e)))
			return rc;
		m->nexits = 1;
		m->single_exit = true;
	} else {
		if ((rc = parse_nodes(xsv, "exits", FG_TM_MAX_EXITS, m->exits, &m->nexits, e)))
			return rc;
		if (m->nexits == 0)
			return fail(e, "exits", "exits: at least one node");
	}
	for (size_t i = 0; i < m->nhops; i++) {
		char f[32];
		snprintf(f, sizeof(f), "hops[%zu]", i);
		if (m->hops[i] == m->entry_node)
			return fail(e, f, "%s: the entry node cannot also be a hop", f);
		for (size_t k = 0; k < m->nexits; k++)
			if (m->hops[i] == m->exits[k])
				return fail(e, f, "%s: a hop cannot also be an exit", f);
	}
	for (size_t k = 0; k < m->nexits; k++)
		if (m->exits[k] == m->entry_node)
			return fail(e, m->single_exit ? "exit" : "exits",
				    "%s: the entry node cannot also be the exit",
				    m->single_exit ? "exit" : "exits");
	char bal[16];
	if ((rc = get_str(o, "balance", "balance", "failover", 15, bal, sizeof(bal), e)))
		return rc;
	if (strcmp(bal, "failover") && strcmp(bal, "round-robin"))
		return fail(e, "balance", "balance: failover or round-robin (between exits)");
	m->round_robin = strcmp(bal, "round-robin") == 0;

	/* target */
	if ((rc = get_str(o, "target", "target", NULL, FG_TM_TARGET_MAX, m->target,
			  sizeof(m->target), e)))
		return rc;
	if (fg_endpoint_parse(m->target, false, &ep, &why) < 0 || !ep.host[0] ||
	    strchr(m->target, ':') == NULL || m->target[0] == ':')
		return fail(e, "target", "target: \"%s\": %s", m->target,
			    why ? why : "want host:port");
	if (ep.is_ip && fg_addr_is_wildcard(&ep.ip))
		return fail(e, "target", "target: \"%s\": a target needs a host, not %s", m->target,
			    ep.ip.ss_family == AF_INET6 ? "::" : "0.0.0.0");
	if (ep.port_lo != ep.port_hi && ep.port_hi - ep.port_lo != m->listen_hi - m->listen_lo)
		return fail(e, "target",
			    "target: a port range must be as long as entry.listen's (%u ports)",
			    (unsigned)(m->listen_hi - m->listen_lo + 1));

	/* link defaults, then per link */
	const char *transport;
	bool mux, reverse;
	char ws_path[FG_TM_WS_PATH_MAX + 1], ws_host[FG_TM_WS_HOST_MAX + 1];
	if ((rc = get_transport(o, "transport", "tls", &transport, e)) ||
	    (rc = get_bool(o, "mux", "mux", true, &mux, e)) ||
	    (rc = get_direction(o, "direction", false, &reverse, e)) ||
	    (rc = get_str(o, "ws_path", "ws_path", "", FG_TM_WS_PATH_MAX, ws_path, sizeof(ws_path),
			  e)) ||
	    (rc = check_ws_path(ws_path, "ws_path", e)) ||
	    (rc = get_str(o, "ws_host", "ws_host", "", FG_TM_WS_HOST_MAX, ws_host, sizeof(ws_host),
			  e)) ||
	    (rc = check_ws_host(ws_host, "ws_host", e)) ||
	    (rc = get_port(o, "link_port", "link_port", &m->link_port, e)))
		return rc;
	m->nlinks = m->nhops + 1;
	json_t *lv = json_object_get(o, "links");
	if (lv && (!json_is_array(lv) || json_array_size(lv) != m->nlinks))
		return fail(e, "links",
			    "links: a list of %zu link settings (one per hop: hops + 1), or absent",
			    m->nlinks);
	bool any_ws = false;
	for (size_t i = 0; i < m->nlinks; i++) {
		struct fg_tm_link *l = &m->links[i];
		json_t *lo = lv ? json_array_get(lv, i) : NULL;
		char p[32], f[64];
		snprintf(p, sizeof(p), "links[%zu]", i);
		l->transport = transport;
		l->mux = mux;
		l->reverse = reverse;
		snprintf(l->ws_path, sizeof(l->ws_path), "%s", ws_path);
		snprintf(l->ws_host, sizeof(l->ws_host), "%s", ws_host);
		if (lo) {
			if (!json_is_object(lo))
				return fail(e, p, "%s: an object", p);
			if ((rc = only_keys(lo, p, link_keys, NELEM(link_keys), e)))
				return rc;
#define F(k) (snprintf(f, sizeof(f), "%s.%s", p, k), f)
			if ((rc = get_transport(lo, F("transport"), transport, &l->transport, e)) ||
			    (rc = get_bool(lo, "mux", F("mux"), mux, &l->mux, e)) ||
			    (rc = get_direction(lo, F("direction"), reverse, &l->reverse, e)) ||
			    (rc = get_port(lo, "port", F("port"), &l->port, e)))
				return rc;
			if (json_object_get(lo, "ws_path") &&
			    ((rc = get_str(lo, "ws_path", F("ws_path"), "", FG_TM_WS_PATH_MAX,
					   l->ws_path, sizeof(l->ws_path), e)) ||
			     (rc = check_ws_path(l->ws_path, F("ws_path"), e))))
				return rc;
			if (json_object_get(lo, "ws_host") &&
			    ((rc = get_str(lo, "ws_host", F("ws_host"), "", FG_TM_WS_HOST_MAX,
					   l->ws_host, sizeof(l->ws_host), e)) ||
			     (rc = check_ws_host(l->ws_host, F("ws_host"), e))))
				return rc;
			if (!is_ws(l->transport) &&
			    (json_object_get(lo, "ws_path") || json_object_get(lo, "ws_host")))
				return fail(
				    e, F(json_object_get(lo, "ws_path") ? "ws_path" : "ws_host"),
				    "%s: only with transport ws or wss", f);
#undef F
		}
		any_ws |= is_ws(l->transport);
		if (i == 0 && l->reverse && m->entry_group)
			return fail(
			    e,
			    lo && json_object_get(lo, "direction") ? "links[0].direction"
								   : "direction",
			    "direction: exit_to_entry needs the entry on one node: the next "
			    "node cannot dial back to every member of a group");
	}
	/* a node listens once per port: its client port (the entry) and the
	 * links it accepts (the port 0 of an unallocated link_port aside) */
	for (size_t pos = 0; pos <= m->nhops + 1; pos++) {
		struct {
			unsigned lo, hi;
			char field[40];
		} r[1 + FG_TM_MAX_LINKS];
		size_t n = 0;
		if (pos == 0) {
			r[n].lo = m->listen_lo;
			r[n].hi = m->listen_hi;
			snprintf(r[n++].field, sizeof(r[0].field), "entry.listen");
		}
		for (size_t i = 0; i < m->nlinks; i++) {
			uint16_t port = fg_tm_link_port(m, i);
			if ((m->links[i].reverse ? i : i + 1) != pos || port == 0)
				continue;
			r[n].lo = r[n].hi = port;
			if (m->links[i].port)
				snprintf(r[n].field, sizeof(r[0].field), "links[%zu].port", i);
			else
				snprintf(r[n].field, sizeof(r[0].field), "link_port");
			for (size_t k = 0; k < n; k++)
				if (r[k].lo <= r[n].hi && r[n].lo <= r[k].hi)
					return fail(
					    e, r[n].field,
					    "%s: port %u is already where this node listens "
					    "for %s (give the links different ports)",
					    r[n].field, port, r[k].field);
			n++;
		}
	}
	if (!any_ws && (ws_path[0] || ws_host[0]))
		return fail(e, ws_path[0] ? "ws_path" : "ws_host",
			    "%s: only with transport ws or wss",
			    ws_path[0] ? "ws_path" : "ws_host");
	if ((rc = parse_limits(o, m, e)) ||
	    (rc = get_bool(o, "enabled", "enabled", true, &m->enabled, e)))
		return rc;
	return 0;
}

int fg_tm_parse(const json_t *stored, struct fg_tm *out, char *field, size_t fieldlen, char *err,
		size_t errlen)
{
	struct perr e = {field, err, fieldlen, errlen};
	memset(out, 0, sizeof(*out));
	if (fieldlen)
		field[0] = 0;
	if (errlen)
		err[0] = 0;
	int rc = parse(stored, out, &e);
	if (rc) {
		if (rc == -ENOMEM)
			snprintf(err, errlen, "out of memory");
		fg_tm_deinit(out);
		memset(out, 0, sizeof(*out));
	}
	return rc;
}

void fg_tm_deinit(struct fg_tm *m)
{
	json_decref(m->limits);
	m->limits = NULL;
}

uint16_t fg_tm_link_port(const struct fg_tm *m, size_t i)
{
	return i < m->nlinks && m->links[i].port ? m->links[i].port : m->link_port;
}

void fg_tm_hostport(const char *host, uint16_t port, char *out, size_t len)
{
	struct in6_addr a6;
	if (inet_pton(AF_INET6, host, &a6) == 1)
		snprintf(out, len, "[%s]:%u", host, port);
	else
		snprintf(out, len, "%s:%u", host, port);
}

/* ---- compile --------------------------------------------------------- */

static const struct fg_tm_node *find_node(const struct fg_tm_ctx *c, int64_t id)
{
	for (size_t i = 0; i < c->nnodes; i++)
		if (c->nodes[i].id == id)
			return &c->nodes[i];
	return NULL;
}

/* The nodes at position pos (0 = entry, nhops + 1 = exits). */
static const int64_t *position(const struct fg_tm *m, const struct fg_tm_ctx *c, size_t pos,
			       size_t *n)
{
	if (pos == 0) {
		*n = c->nentry;
		return c->entry_members;
	}
	if (pos <= m->nhops) {
		*n = 1;
		return &m->hops[pos - 1];
	}
	*n = m->nexits;
	return m->exits;
}

static void append(char *why, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void append(char *why, size_t len, const char *fmt, ...)
{
	size_t used = strlen(why);
	if (used + 3 >= len)
		return;
	if (used)
		used += (size_t)snprintf(why + used, len - used, "; ");
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why + used, len - used, fmt, ap);
	va_end(ap);
}

static bool needs_fp(const char *t)
{
	return strcmp(t, "tls") == 0 || strcmp(t, "wss") == 0;
}

/* The link object for link i seen from side (upstream: our "next";
 * downstream: our "prev"). Returns a new object, NULL with -EAGAIN in *rc
 * when no peer can be dialed. */
static json_t *link_json(const struct fg_tm *m, const struct fg_tm_ctx *c, size_t i, bool upstream,
			 const struct fg_tm_node *self, int *rc, char *why, size_t whylen)
{
	const struct fg_tm_link *l = &m->links[i];
	uint16_t port = fg_tm_link_port(m, i);
	char b64[sodium_base64_ENCODED_LEN(64, sodium_base64_VARIANT_ORIGINAL)];
	*rc = -ENOMEM;
	if (!c->psk || c->psk_len == 0 || c->psk_len > 64) {
		*rc = -EINVAL;
		append(why, whylen, "no pre-shared key");
		return NULL;
	}
	sodium_bin2base64(b64, sizeof(b64), c->psk, c->psk_len, sodium_base64_VARIANT_ORIGINAL);
	json_t *o;
	if (c->prev_psk && c->prev_psk_len && c->prev_psk_len <= 64) {
		/* a rotation's grace period: dial with the new key, accept both */
		char pb64[sizeof(b64)];
		sodium_bin2base64(pb64, sizeof(pb64), c->prev_psk, c->prev_psk_len,
				  sodium_base64_VARIANT_ORIGINAL);
		o = json_pack("{s:s, s:b, s:[{s:I, s:s, s:b}, {s:I, s:s}]}", "transport",
			      l->transport, "mux", l->mux, "keys", "id", (json_int_t)c->key_id,
			      "key", b64, "dial", 1, "id", (json_int_t)c->prev_key_id, "key", pb64);
		sodium_memzero(pb64, sizeof(pb64));
	} else {
		o = json_pack("{s:s, s:b, s:{s:I, s:s}}", "transport", l->transport, "mux", l->mux,
			      "psk", "id", (json_int_t)c->key_id, "key", b64);
	}
	sodium_memzero(b64, sizeof(b64));
	if (!o)
		return NULL;
	if (is_ws(l->transport) && (l->ws_path[0] || l->ws_host[0])) {
		json_t *ws = json_object();
		if (!ws || json_object_set_new(o, "ws", ws))
			goto err;
		if (l->ws_path[0])
			json_object_set_new(ws, "path", json_string(l->ws_path));
		if (l->ws_host[0])
			json_object_set_new(ws, "host", json_string(l->ws_host));
	}
	bool last = i == m->nlinks - 1;
	/* the listening side: downstream normally, upstream when reversed */
	bool listens = upstream == l->reverse;
	if (listens) {
		struct in6_addr a6;
		bool v6 = self && inet_pton(AF_INET6, self->address, &a6) == 1;
		char addr[64];
		snprintf(addr, sizeof(addr), "%s:%u", v6 ? "[::]" : "0.0.0.0", port);
		json_object_set_new(o, "listen", json_string(addr));
		if (upstream && last && m->nexits > 1)
			json_object_set_new(
			    o, "balance", json_string(m->round_robin ? "round-robin" : "failover"));
		*rc = 0;
		return o;
	}
	size_t n;
	const int64_t *ids = position(m, c, upstream ? i + 1 : i, &n);
	json_t *peers = json_array();
	if (!peers || json_object_set_new(o, "peers", peers))
		goto err;
	for (size_t k = 0; k < n; k++) {
		const struct fg_tm_node *p = find_node(c, ids[k]);
		if (!p) {
			append(why, whylen, "node %lld is unknown", (long long)ids[k]);
			continue;
		}
		if (!p->address || !p->address[0]) {
			append(why, whylen,
			       "node %s has no address yet (set one, or let its agent connect)",
			       p->name);
			continue;
		}
		if (needs_fp(l->transport) && (!p->fingerprint || !p->fingerprint[0])) {
			append(why, whylen,
			       "node %s has not reported its TLS fingerprint yet (its agent has "
			       "never connected)",
			       p->name);
			continue;
		}
		char addr[FG_HOST_MAX + 16];
		fg_tm_hostport(p->address, port, addr, sizeof(addr));
		json_t *pj = json_pack("{s:s, s:s}", "address", addr, "node", p->name);
		if (!pj || json_array_append_new(peers, pj))
			goto err;
		if (needs_fp(l->transport))
			json_object_set_new(pj, "fingerprint", json_string(p->fingerprint));
	}
	if (json_array_size(peers) == 0) {
		*rc = -EAGAIN;
		json_decref(o);
		return NULL;
	}
	if (upstream && last && m->nexits > 1)
		json_object_set_new(o, "balance",
				    json_string(m->round_robin ? "round-robin" : "failover"));
	*rc = 0;
	return o;
err:
	json_decref(o);
	return NULL;
}

int fg_tm_compile(const struct fg_tm *m, const struct fg_tm_ctx *c, int64_t node_id, json_t **out,
		  char *why, size_t whylen)
{
	*out = NULL;
	if (whylen)
		why[0] = 0;
	/* where is the node? */
	size_t npos = 0, pos = 0;
	for (size_t p = 0; p <= m->nhops + 1; p++) {
		size_t n;
		const int64_t *ids = position(m, c, p, &n);
		for (size_t k = 0; k < n; k++) {
			if (ids[k] == node_id) {
				npos++;
				pos = p;
			}
		}
	}
	if (npos == 0)
		return 0;
	const struct fg_tm_node *self = find_node(c, node_id);
	if (npos > 1) {
		append(why, whylen,
		       "node %s holds two places in the tunnel (a member of the entry "
		       "group that is also a hop or an exit): left out there",
		       self ? self->name : "?");
		return -EINVAL;
	}
	const char *role = pos == 0 ? "entry" : pos <= m->nhops ? "relay" : "exit";
	char id[24];
	snprintf(id, sizeof(id), "%lld", (long long)c->tunnel_id);
	json_t *o = json_pack("{s:s, s:s, s:s}", "name", c->name, "id", id, "role", role);
	if (!o)
		return -ENOMEM;
	int rc = 0;
	if (pos == 0) {
		json_object_set_new(o, "listen", json_string(m->listen));
		const char *k;
		json_t *v;
		json_object_foreach(m->limits, k, v)
		{
			if (strstr(k, "timeout") == NULL)
				json_object_set(o, k, v);
		}
	}
	json_t *ct = json_object_get(m->limits, "connect_timeout");
	json_t *it = json_object_get(m->limits, "idle_timeout");
	if (ct)
		json_object_set(o, "connect_timeout", ct);
	if (it)
		json_object_set(o, "idle_timeout", it);
	if (pos <= m->nhops) {
		json_t *next = link_json(m, c, pos, true, self, &rc, why, whylen);
		if (!next)
			goto fail;
		json_object_set_new(o, "next", next);
	}
	if (pos >= 1) {
		json_t *prev = link_json(m, c, pos - 1, false, self, &rc, why, whylen);
		if (!prev)
			goto fail;
		json_object_set_new(o, "prev", prev);
	}
	if (pos == m->nhops + 1)
		json_object_set_new(o, "targets", json_pack("[s]", m->target));
	*out = o;
	return 0;
fail:
	json_decref(o);
	return rc ? rc : -ENOMEM;
}
