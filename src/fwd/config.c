#include "fwd/config.h"

#include <errno.h>
#include <jansson.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/errmsg.h"
#include "core/jsonfield.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/units.h"

#define DEFAULT_CONNECT_TIMEOUT	 (5 * FG_NS_PER_SEC)
#define DEFAULT_IDLE_TIMEOUT	 (300 * FG_NS_PER_SEC)
#define DEFAULT_UDP_IDLE_TIMEOUT (60 * FG_NS_PER_SEC)

void fg_forward_cfg_defaults(struct fg_forward_cfg *c)
{
	memset(c, 0, sizeof(*c));
	c->proto = FG_PROTO_TCP;
	c->balance = FG_BAL_ROUND_ROBIN;
	c->proxy_protocol = FG_PP_NONE;
	c->connect_timeout_ns = DEFAULT_CONNECT_TIMEOUT;
	c->idle_timeout_ns = DEFAULT_IDLE_TIMEOUT;
	c->udp_idle_timeout_ns = DEFAULT_UDP_IDLE_TIMEOUT;
	c->health.interval_ns = 2 * FG_NS_PER_SEC;
	c->health.timeout_ns = 1 * FG_NS_PER_SEC;
	c->health.rise = 1;
	c->health.fall = 1;
	c->enabled = true;
}

void fg_forward_cfg_deinit(struct fg_forward_cfg *c)
{
	fg_free(c->targets);
	c->targets = NULL;
	c->ntargets = 0;
}

int fg_forward_cfg_copy(struct fg_forward_cfg *dst, const struct fg_forward_cfg *src)
{
	*dst = *src;
	dst->targets = fg_calloc(src->ntargets ? src->ntargets : 1, sizeof(*dst->targets));
	if (!dst->targets)
		return -ENOMEM;
	memcpy(dst->targets, src->targets, src->ntargets * sizeof(*dst->targets));
	return 0;
}

static bool endpoint_equal(const struct fg_endpoint *a, const struct fg_endpoint *b)
{
	return strcmp(a->host, b->host) == 0 && a->port_lo == b->port_lo &&
	       a->port_hi == b->port_hi;
}

bool fg_forward_cfg_equal(const struct fg_forward_cfg *a, const struct fg_forward_cfg *b)
{
	if (strcmp(a->name, b->name) || strcmp(a->id, b->id) ||
	    !endpoint_equal(&a->listen, &b->listen) || a->proto != b->proto ||
	    a->ntargets != b->ntargets || a->balance != b->balance || a->rate_up != b->rate_up ||
	    a->rate_down != b->rate_down || a->rate_up_conn != b->rate_up_conn ||
	    a->rate_down_conn != b->rate_down_conn || a->burst != b->burst ||
	    a->max_conns != b->max_conns || a->max_conns_per_ip != b->max_conns_per_ip ||
	    a->proxy_protocol != b->proxy_protocol || a->health.enabled != b->health.enabled ||
	    a->connect_timeout_ns != b->connect_timeout_ns ||
	    a->idle_timeout_ns != b->idle_timeout_ns ||
	    a->udp_idle_timeout_ns != b->udp_idle_timeout_ns || a->enabled != b->enabled ||
	    a->engine != b->engine)
		return false;
	if (a->health.enabled &&
	    (a->health.interval_ns != b->health.interval_ns ||
	     a->health.timeout_ns != b->health.timeout_ns || a->health.rise != b->health.rise ||
	     a->health.fall != b->health.fall))
		return false;
	for (size_t i = 0; i < a->ntargets; i++)
		if (!endpoint_equal(&a->targets[i], &b->targets[i]))
			return false;
	return true;
}

/* What nftables DNAT can do and what it cannot: every refusal names the
 * field, so the operator knows to switch that forward to engine proxy. */
static int kernel_check(const struct fg_forward_cfg *c, const char *path, char *err, size_t errlen)
{
	static const char *const why = "is not possible with engine kernel (use engine proxy)";
	int lfam = c->listen.ip.ss_family;
	unsigned lsize = (unsigned)c->listen.port_hi - c->listen.port_lo + 1;
	if (c->proxy_protocol != FG_PP_NONE)
		return fg_errf(err, errlen, "%s.proxy_protocol: a PROXY protocol header %s", path,
			       why);
	if (c->max_conns)
		return fg_errf(err, errlen, "%s.max_conns: a connection limit %s", path, why);
	if (c->max_conns_per_ip)
		return fg_errf(err, errlen, "%s.max_conns_per_ip: a per-IP connection limit %s",
			       path, why);
	if (c->rate_up_conn || c->rate_down_conn)
		return fg_errf(err, errlen, "%s.%s: a per-connection rate %s", path,
			       c->rate_up_conn ? "rate_up_per_conn" : "rate_down_per_conn", why);
	if (c->health.enabled)
		return fg_errf(err, errlen, "%s.health_check: active health checks %s", path, why);
	if (c->balance != FG_BAL_ROUND_ROBIN)
		return fg_errf(err, errlen,
			       "%s.balance: \"%s\" %s; the kernel engine balances round-robin",
			       path, fg_balance_name(c->balance), why);
	if (c->connect_timeout_ns != DEFAULT_CONNECT_TIMEOUT)
		return fg_errf(err, errlen, "%s.connect_timeout: %s", path, why);
	if (c->idle_timeout_ns != DEFAULT_IDLE_TIMEOUT)
		return fg_errf(err, errlen, "%s.idle_timeout: %s (conntrack timeouts apply)", path,
			       why);
	if (c->udp_idle_timeout_ns != DEFAULT_UDP_IDLE_TIMEOUT)
		return fg_errf(err, errlen, "%s.udp_idle_timeout: %s (conntrack timeouts apply)",
			       path, why);
	for (size_t i = 0; i < c->ntargets; i++) {
		const struct fg_endpoint *t = &c->targets[i];
		if (!t->is_ip)
			return fg_errf(
			    err, errlen,
			    "%s.targets[%zu]: \"%.80s\": a host name %s (the kernel needs an "
			    "IP address)",
			    path, i, t->host, why);
		if (t->ip.ss_family != lfam)
			return fg_errf(
			    err, errlen,
			    "%s.targets[%zu]: \"%.80s\": listen and target must be the same "
			    "IP family with engine kernel",
			    path, i, t->host);
		unsigned tsize = (unsigned)t->port_hi - t->port_lo + 1;
		if (tsize != 1 && tsize == lsize && t->port_lo != c->listen.port_lo && lsize > 1024)
			return fg_errf(
			    err, errlen,
			    "%s.targets[%zu]: a shifted port range of over 1024 ports %s", path, i,
			    why);
	}
	return 0;
}

int fg_forward_cfg_check(const struct fg_forward_cfg *c, const char *path, char *err, size_t errlen)
{
	unsigned lsize = (unsigned)c->listen.port_hi - c->listen.port_lo + 1;
	if (c->ntargets == 0)
		return fg_errf(err, errlen, "%s.targets: at least one target is required", path);
	for (size_t i = 0; i < c->ntargets; i++) {
		const struct fg_endpoint *t = &c->targets[i];
		unsigned tsize = (unsigned)t->port_hi - t->port_lo + 1;
		if (tsize != 1 && tsize != lsize)
			return fg_errf(
			    err, errlen,
			    "%s.targets[%zu]: port range %u-%u has %u ports but listen has %u "
			    "(use one port or a range of the same size)",
			    path, i, t->port_lo, t->port_hi, tsize, lsize);
	}
	if (lsize > 4096)
		return fg_errf(err, errlen,
			       "%s.listen: a range of %u ports is over the limit of 4096", path,
			       lsize);
	if (c->health.enabled && c->health.timeout_ns >= c->health.interval_ns)
		return fg_errf(err, errlen,
			       "%s.health_check.timeout: must be shorter than the interval", path);
	if (c->engine == FG_ENGINE_KERNEL)
		return kernel_check(c, path, err, errlen);
	return 0;
}

void fg_forward_set_free(struct fg_forward_set *s)
{
	for (size_t i = 0; i < s->n; i++)
		fg_forward_cfg_deinit(&s->v[i]);
	fg_free(s->v);
	s->v = NULL;
	s->n = 0;
}

/* ---- JSON --------------------------------------------------------------- */

static int parse_health(const json_t *o, const char *path, struct fg_health_cfg *h, char *err,
			size_t errlen)
{
	char p[96];
	snprintf(p, sizeof(p), "%s.health_check", path);
	if (json_is_null(o)) {
		h->enabled = false;
		return 0;
	}
	if (!json_is_object(o)) {
		char vt[72];
		fg_json_value_text(o, vt, sizeof(vt));
		return fg_errf(err, errlen, "%s: %s must be an object or null", p, vt);
	}
	h->enabled = true;
	const char *key;
	json_t *v;
	int rc;
	json_object_foreach((json_t *)o, key, v)
	{
		if (strcmp(key, "interval") == 0)
			rc = fg_json_get_duration(v, p, key, &h->interval_ns, err, errlen);
		else if (strcmp(key, "timeout") == 0)
			rc = fg_json_get_duration(v, p, key, &h->timeout_ns, err, errlen);
		else if (strcmp(key, "rise") == 0)
			rc = fg_json_get_uint(v, p, key, 0, 1000000000, &h->rise, err, errlen);
		else if (strcmp(key, "fall") == 0)
			rc = fg_json_get_uint(v, p, key, 0, 1000000000, &h->fall, err, errlen);
		else
			rc = fg_errf(err, errlen, "%s.%s: unknown field", p, key);
		if (rc)
			return rc;
	}
	if (h->rise < 1)
		return fg_errf(err, errlen, "%s.rise: %u must be at least 1", p, h->rise);
	if (h->fall < 1)
		return fg_errf(err, errlen, "%s.fall: %u must be at least 1", p, h->fall);
	return 0;
}

static int parse_forward(const json_t *o, const char *path, struct fg_forward_cfg *c, char *err,
			 size_t errlen)
{
	const char *key, *s = NULL, *why;
	json_t *v;
	char vt[72];
	bool have_name = false, have_listen = false, have_targets = false;
	int rc = 0;

	fg_forward_cfg_defaults(c);
	if (!json_is_object(o)) {
		fg_json_value_text(o, vt, sizeof(vt));
		return fg_errf(err, errlen, "%s: %s must be an object", path, vt);
	}

	json_object_foreach((json_t *)o, key, v)
	{
		if (strcmp(key, "name") == 0) {
			if ((rc = fg_json_get_name(v, path, c->name, FG_NAME_MAX, err, errlen)))
				return rc;
			have_name = true;
		} else if (strcmp(key, "id") == 0) {
			if ((rc = fg_json_get_id(v, path, c->id, FG_NAME_MAX, err, errlen)))
				return rc;
		} else if (strcmp(key, "listen") == 0) {
			if ((rc = fg_json_get_string(v, path, key, &s, err, errlen)))
				return rc;
			if (fg_endpoint_parse(s, true, &c->listen, &why))
				return fg_errf(err, errlen, "%s.listen: \"%.80s\": %s", path, s,
					       why);
			have_listen = true;
		} else if (strcmp(key, "proto") == 0) {
			if ((rc = fg_json_get_string(v, path, key, &s, err, errlen)))
				return rc;
			if (strcmp(s, "tcp") == 0)
				c->proto = FG_PROTO_TCP;
			else if (strcmp(s, "udp") == 0)
				c->proto = FG_PROTO_UDP;
			else if (strcmp(s, "both") == 0)
				c->proto = FG_PROTO_BOTH;
			else
				return fg_errf(err, errlen,
					       "%s.proto: \"%.40s\" is not tcp, udp or both", path,
					       s);
		} else if (strcmp(key, "targets") == 0) {
			if (!json_is_array(v) || json_array_size(v) == 0) {
				fg_json_value_text(v, vt, sizeof(vt));
				return fg_errf(err, errlen,
					       "%s.targets: %s must be a non-empty array of "
					       "\"host:port\" strings",
					       path, vt);
			}
			if (json_array_size(v) > FG_MAX_TARGETS)
				return fg_errf(err, errlen, "%s.targets: %zu targets, at most %d",
					       path, json_array_size(v), FG_MAX_TARGETS);
			fg_free(c->targets);
			c->ntargets = json_array_size(v);
			c->targets = fg_calloc(c->ntargets, sizeof(*c->targets));
			if (!c->targets)
				return fg_errf(err, errlen, "out of memory");
			for (size_t i = 0; i < c->ntargets; i++) {
				json_t *t = json_array_get(v, i);
				char tp[96];
				snprintf(tp, sizeof(tp), "targets[%zu]", i);
				if ((rc = fg_json_get_string(t, path, tp, &s, err, errlen)))
					return rc;
				if (fg_endpoint_parse(s, false, &c->targets[i], &why))
					return fg_errf(err, errlen,
						       "%s.targets[%zu]: \"%.80s\": %s", path, i, s,
						       why);
				if (c->targets[i].is_ip && fg_addr_is_wildcard(&c->targets[i].ip))
					return fg_errf(
					    err, errlen,
					    "%s.targets[%zu]: \"%.80s\": a target needs a host",
					    path, i, s);
			}
			have_targets = true;
		} else if (strcmp(key, "balance") == 0) {
			if ((rc = fg_json_get_string(v, path, key, &s, err, errlen)))
				return rc;
			if (fg_balance_parse(s, &c->balance))
				return fg_errf(
				    err, errlen,
				    "%s.balance: \"%.40s\" is not round-robin, least-conn, "
				    "ip-hash or failover",
				    path, s);
		} else if (strcmp(key, "rate_up") == 0) {
			rc = fg_json_get_rate(v, path, key, false, &c->rate_up, err, errlen);
		} else if (strcmp(key, "rate_down") == 0) {
			rc = fg_json_get_rate(v, path, key, false, &c->rate_down, err, errlen);
		} else if (strcmp(key, "rate_up_per_conn") == 0) {
			rc = fg_json_get_rate(v, path, key, false, &c->rate_up_conn, err, errlen);
		} else if (strcmp(key, "rate_down_per_conn") == 0) {
			rc = fg_json_get_rate(v, path, key, false, &c->rate_down_conn, err, errlen);
		} else if (strcmp(key, "burst") == 0) {
			rc = fg_json_get_rate(v, path, key, true, &c->burst, err, errlen);
		} else if (strcmp(key, "max_conns") == 0) {
			rc = fg_json_get_uint(v, path, key, 0, 1000000000, &c->max_conns, err,
					      errlen);
		} else if (strcmp(key, "max_conns_per_ip") == 0) {
			rc = fg_json_get_uint(v, path, key, 0, 1000000000, &c->max_conns_per_ip,
					      err, errlen);
		} else if (strcmp(key, "proxy_protocol") == 0) {
			if (json_is_null(v)) {
				c->proxy_protocol = FG_PP_NONE;
				continue;
			}
			if ((rc = fg_json_get_string(v, path, key, &s, err, errlen)))
				return rc;
			if (strcmp(s, "v1") == 0)
				c->proxy_protocol = FG_PP_V1;
			else if (strcmp(s, "v2") == 0)
				c->proxy_protocol = FG_PP_V2;
			else if (strcmp(s, "none") == 0)
				c->proxy_protocol = FG_PP_NONE;
			else
				return fg_errf(err, errlen,
					       "%s.proxy_protocol: \"%.40s\" is not v1, v2 or none",
					       path, s);
		} else if (strcmp(key, "health_check") == 0) {
			rc = parse_health(v, path, &c->health, err, errlen);
		} else if (strcmp(key, "connect_timeout") == 0) {
			rc =
			    fg_json_get_duration(v, path, key, &c->connect_timeout_ns, err, errlen);
		} else if (strcmp(key, "idle_timeout") == 0) {
			rc = fg_json_get_duration(v, path, key, &c->idle_timeout_ns, err, errlen);
		} else if (strcmp(key, "udp_idle_timeout") == 0) {
			rc = fg_json_get_duration(v, path, key, &c->udp_idle_timeout_ns, err,
						  errlen);
		} else if (strcmp(key, "engine") == 0) {
			if ((rc = fg_json_get_string(v, path, key, &s, err, errlen)))
				return rc;
			if (strcmp(s, "proxy") == 0)
				c->engine = FG_ENGINE_PROXY;
			else if (strcmp(s, "kernel") == 0)
				c->engine = FG_ENGINE_KERNEL;
			else
				return fg_errf(err, errlen,
					       "%s.engine: \"%.40s\" is not proxy or kernel", path,
					       s);
		} else if (strcmp(key, "enabled") == 0) {
			if (!json_is_boolean(v)) {
				fg_json_value_text(v, vt, sizeof(vt));
				return fg_errf(err, errlen, "%s.enabled: %s is not true or false",
					       path, vt);
			}
			c->enabled = json_is_true(v);
		} else {
			return fg_errf(err, errlen, "%s.%.64s: unknown field", path, key);
		}
		if (rc)
			return rc;
	}
	if (!have_name)
		return fg_errf(err, errlen, "%s.name: missing", path);
	if (!have_listen)
		return fg_errf(err, errlen, "%s.listen: missing", path);
	if (!have_targets)
		return fg_errf(err, errlen, "%s.targets: missing", path);
	return fg_forward_cfg_check(c, path, err, errlen);
}

static bool ranges_overlap(const struct fg_endpoint *a, const struct fg_endpoint *b)
{
	return a->port_lo <= b->port_hi && b->port_lo <= a->port_hi;
}

/* Two listen addresses that the kernel would let both bind only by
 * accident of SO_REUSEPORT: same port, and same IP or a wildcard. */
static bool listen_conflict(const struct fg_forward_cfg *a, const struct fg_forward_cfg *b)
{
	if (!(a->proto & b->proto) || !ranges_overlap(&a->listen, &b->listen))
		return false;
	if (a->listen.ip.ss_family != b->listen.ip.ss_family)
		return true; /* dual-stack v6 wildcard may cover v4: be strict */
	/* compare the parsed address, not the text: "::" is also "0::0" */
	if (fg_addr_is_wildcard(&a->listen.ip) || fg_addr_is_wildcard(&b->listen.ip))
		return true;
	return fg_addr_ip_equal((const struct sockaddr *)&a->listen.ip,
				(const struct sockaddr *)&b->listen.ip);
}

int fg_forward_set_check(const struct fg_forward_set *s, char *err, size_t errlen)
{
	for (size_t i = 0; i < s->n; i++) {
		for (size_t j = 0; j < i; j++) {
			if (strcmp(s->v[i].name, s->v[j].name) == 0)
				return fg_errf(
				    err, errlen,
				    "forwards[%zu].name: \"%s\" is already used by forwards[%zu]",
				    i, s->v[i].name, j);
			if (s->v[i].enabled && s->v[j].enabled &&
			    listen_conflict(&s->v[i], &s->v[j]))
				return fg_errf(
				    err, errlen,
				    "forwards[%zu].listen: \"%s:%u-%u\" overlaps forwards[%zu] "
				    "(\"%s\")",
				    i, s->v[i].listen.host, s->v[i].listen.port_lo,
				    s->v[i].listen.port_hi, j, s->v[j].name);
		}
	}
	return 0;
}

int fg_config_parse_forwards(const void *json, struct fg_forward_set *out, char *err, size_t errlen)
{
	const json_t *arr = json;
	struct fg_forward_set s = {0};
	out->v = NULL;
	out->n = 0;
	if (!json_is_array(arr)) {
		char vt[72];
		fg_json_value_text(arr, vt, sizeof(vt));
		return fg_errf(err, errlen, "forwards: %s must be an array", vt);
	}
	s.v = fg_calloc(json_array_size(arr) + 1, sizeof(*s.v));
	if (!s.v)
		return fg_errf(err, errlen, "out of memory");
	for (size_t i = 0; i < json_array_size(arr); i++) {
		char path[32];
		snprintf(path, sizeof(path), "forwards[%zu]", i);
		s.n = i + 1;
		if (parse_forward(json_array_get(arr, i), path, &s.v[i], err, errlen))
			goto err;
	}
	if (fg_forward_set_check(&s, err, errlen))
		goto err;
	*out = s;
	return 0;
err:
	fg_forward_set_free(&s);
	return -EINVAL;
}

int fg_config_parse(const char *text, size_t len, struct fg_forward_set *out, char *err,
		    size_t errlen)
{
	json_error_t je;
	out->v = NULL;
	out->n = 0;
	json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
	if (!root)
		return fg_errf(err, errlen, "line %d column %d: %s", je.line, je.column, je.text);
	int rc;
	const char *key;
	json_t *v, *fwds = NULL, *tunnels = NULL;
	if (!json_is_object(root)) {
		rc = fg_errf(err, errlen, "the document must be an object {\"forwards\": [...]}");
		goto out;
	}
	json_object_foreach(root, key, v)
	{
		if (strcmp(key, "forwards") == 0) {
			fwds = v;
		} else if (strcmp(key, "tunnels") == 0 || strcmp(key, "tls") == 0) {
			/* parsed by tunnel/config.c (fg_tunnel_parse_doc) */
			if (key[1] == 'u')
				tunnels = v;
		} else {
			rc = fg_errf(err, errlen, "%.64s: unknown field", key);
			goto out;
		}
	}
	if (!fwds && !tunnels) {
		rc = fg_errf(err, errlen, "forwards: missing");
		goto out;
	}
	if (!fwds) { /* a file of tunnels only */
		rc = 0;
		goto out;
	}
	rc = fg_config_parse_forwards(fwds, out, err, errlen);
out:
	json_decref(root);
	return rc;
}

int fg_config_load_file(const char *path, struct fg_forward_set *out, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	out->v = NULL;
	out->n = 0;
	if (!f)
		return fg_errf(err, errlen, "%s: %s", path, strerror(errno));
	char *buf = NULL;
	size_t len = 0, cap = 0;
	for (;;) {
		if (len == cap) {
			cap = cap ? cap * 2 : 65536;
			if (cap > 64 * 1024 * 1024) {
				fclose(f);
				fg_free(buf);
				return fg_errf(err, errlen, "%s: file is over 64 MiB", path);
			}
			char *nb = fg_realloc(buf, cap);
			if (!nb) {
				fclose(f);
				fg_free(buf);
				return fg_errf(err, errlen, "out of memory");
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
	int rc = fg_config_parse(buf, len, out, err, errlen);
	fg_free(buf);
	return rc;
}
