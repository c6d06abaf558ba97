#include "kernel/policy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/errmsg.h"
#include "core/jsonfield.h"
#include "core/alloc.h"
#include "core/strbuf.h"
#include "core/units.h"

const char *const fg_fw_chain_names[FG_FW_NCHAINS] = {"input", "forward", "output", "prerouting",
						      "postrouting"};

#define OOM(err, errlen) fg_errf(err, errlen, "out of memory")

static void rule_deinit(struct fg_fw_rule *r)
{
	fg_free(r->saddr);
	fg_free(r->daddr);
	fg_free(r->sport);
	fg_free(r->dport);
	fg_free(r->to);
	fg_free(r->raw);
	memset(r, 0, sizeof(*r));
}

void fg_fw_doc_free(struct fg_fw_doc *d)
{
	for (size_t i = 0; i < d->npolicies; i++) {
		for (size_t j = 0; j < d->policies[i].nrules; j++)
			rule_deinit(&d->policies[i].rules[j]);
		fg_free(d->policies[i].rules);
	}
	fg_free(d->policies);
	for (size_t i = 0; i < d->nsets; i++)
		fg_free(d->sets[i].elements);
	fg_free(d->sets);
	memset(d, 0, sizeof(*d));
}

/* ---- value checks --------------------------------------------------------- */

static bool name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '-';
}

/* Policy names become parts of nft object names (pol_<name>_<n>). */
static bool valid_policy_name(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > FG_FW_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!name_char(s[i]))
			return false;
	return true;
}

/* Set names are nft identifiers: a letter, then letters, digits, _. */
static bool valid_set_name(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > FG_FW_SETNAME_MAX)
		return false;
	if (!((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z')))
		return false;
	for (size_t i = 1; i < n; i++)
		if (!name_char(s[i]) || s[i] == '-')
			return false;
	return true;
}

/* Interface names as the kernel allows them, minus anything nft would read
 * inside a quoted string as syntax; a trailing '*' is nft's wildcard. */
static bool valid_ifname(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > FG_FW_IFNAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (c == '*' && i == n - 1 && n > 1)
			continue;
		if (!(name_char(c) || c == '.' || c == ':' || c == '@'))
			return false;
	}
	return true;
}

static bool valid_comment(const char *s)
{
	if (strlen(s) > FG_FW_COMMENT_MAX)
		return false;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p < 0x20 || *p == 0x7f || *p == '"' || *p == '\\' || *p == '$')
			return false;
	return true;
}

const char *fg_fw_raw_check(const char *raw)
{
	int depth = 0;
	size_t n = strlen(raw);
	if (n == 0)
		return "is empty";
	if (n > FG_FW_RAW_MAX)
		return "is longer than 8192 bytes";
	for (size_t i = 0; i < n; i++) {
		char c = raw[i];
		if (c == '"') {
			/* quoted string: anything but a newline until the next quote */
			size_t j = i + 1;
			while (j < n && raw[j] != '"' && raw[j] != '\n')
				j++;
			if (j >= n || raw[j] != '"')
				return "has an unterminated string";
			i = j;
			continue;
		}
		if (c == '#') { /* comment to end of line */
			while (i < n && raw[i] != '\n')
				i++;
			continue;
		}
		if (c == '{') {
			depth++;
		} else if (c == '}') {
			if (--depth < 0)
				return "closes a brace it did not open (a block may only add rules "
				       "to its chain)";
		} else if (c == '$') {
			return "uses a $variable (not allowed in a raw block)";
		} else if ((unsigned char)c < 0x20 && c != '\n' && c != '\t' && c != '\r') {
			return "contains a control character";
		} else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_') {
			/* a word: reject the file-reading / scope-changing commands */
			size_t j = i;
			while (j < n && (name_char(raw[j]) || raw[j] == '.'))
				j++;
			size_t wl = j - i;
			static const char *const bad[] = {"include", "define", "redefine",
							  "undefine"};
			for (size_t b = 0; b < sizeof(bad) / sizeof(bad[0]); b++)
				if (wl == strlen(bad[b]) && strncasecmp(raw + i, bad[b], wl) == 0)
					return "uses include/define (not allowed in a raw block)";
			i = j - 1;
		}
	}
	if (depth != 0)
		return "has unbalanced braces";
	return NULL;
}

/* ---- addresses and ports ------------------------------------------------- */

/* One CIDR or address, canonical. Returns the family or -1. */
static int parse_cidr(const char *s, char *out, size_t outlen)
{
	char buf[64];
	const char *slash = strchr(s, '/');
	size_t alen = slash ? (size_t)(slash - s) : strlen(s);
	if (alen == 0 || alen >= sizeof(buf))
		return -1;
	memcpy(buf, s, alen);
	buf[alen] = '\0';
	unsigned char a[16];
	int fam, bits;
	if (inet_pton(AF_INET, buf, a) == 1) {
		fam = FG_FW_IP;
		bits = 32;
	} else if (inet_pton(AF_INET6, buf, a) == 1) {
		fam = FG_FW_IP6;
		bits = 128;
	} else {
		return -1;
	}
	int plen = bits;
	if (slash) {
		const char *p = slash + 1;
		if (!*p || strlen(p) > 3)
			return -1;
		plen = 0;
		for (; *p; p++) {
			if (*p < '0' || *p > '9')
				return -1;
			plen = plen * 10 + (*p - '0');
		}
		if (plen > bits)
			return -1;
	}
	/* host bits set is almost always a typo: refuse rather than guess */
	for (int b = plen; b < bits; b++)
		if (a[b / 8] & (0x80 >> (b % 8)))
			return -2;
	char txt[INET6_ADDRSTRLEN];
	inet_ntop(fam == FG_FW_IP ? AF_INET : AF_INET6, a, txt, sizeof(txt));
	if (plen == bits)
		snprintf(out, outlen, "%s", txt);
	else
		snprintf(out, outlen, "%s/%d", txt, plen);
	return fam;
}

/* A list of rendered items -> "x" or "{ x, y }". */
static char *render_list(struct fg_strbuf *items, size_t n)
{
	struct fg_strbuf b;
	if (items->oom || !items->s)
		return NULL;
	fg_strbuf_init(&b);
	if (n == 1) {
		fg_strbuf_puts(&b, items->s);
	} else {
		fg_strbuf_puts(&b, "{ ");
		fg_strbuf_puts(&b, items->s);
		fg_strbuf_puts(&b, " }");
	}
	if (b.oom || items->oom) {
		fg_strbuf_deinit(&b);
		return NULL;
	}
	return b.s;
}

/* Element text for the item list used in messages. */
static const char *item_str(const json_t *v, char *vt, size_t vtlen)
{
	fg_json_value_text(v, vt, vtlen);
	return vt;
}

/* saddr/daddr: a string or an array of strings; each a CIDR or address;
 * "@set" alone names a set. family in/out: the rule's family, narrowed by
 * what the addresses are. */
static int parse_addrs(const json_t *v, const char *path, const char *field,
		       const struct fg_fw_doc *doc, enum fg_fw_family *family, char **out,
		       char *err, size_t errlen)
{
	char vt[72];
	size_t n = json_is_array(v) ? json_array_size(v) : 1;
	if (!(json_is_string(v) || (json_is_array(v) && n > 0)))
		return fg_errf(err, errlen,
			       "%s.%s: %s must be a CIDR, an address, \"@set\" or an array of them",
			       path, field, item_str(v, vt, sizeof(vt)));
	if (n > FG_FW_MAX_ITEMS)
		return fg_errf(err, errlen, "%s.%s: %zu items, at most %d", path, field, n,
			       FG_FW_MAX_ITEMS);
	struct fg_strbuf items;
	fg_strbuf_init(&items);
	int fam = -1;
	for (size_t i = 0; i < n; i++) {
		const json_t *e = json_is_array(v) ? json_array_get(v, i) : v;
		if (!json_is_string(e)) {
			fg_strbuf_deinit(&items);
			return fg_errf(err, errlen, "%s.%s: %s is not a CIDR or address", path,
				       field, item_str(e, vt, sizeof(vt)));
		}
		const char *s = json_string_value(e);
		char one[80];
		int f;
		if (s[0] == '@') {
			const struct fg_fw_set *set = NULL;
			for (size_t k = 0; k < doc->nsets; k++)
				if (strcmp(doc->sets[k].name, s + 1) == 0)
					set = &doc->sets[k];
			if (!set || n != 1) {
				fg_strbuf_deinit(&items);
				return fg_errf(
				    err, errlen,
				    set ? "%s.%s: \"%.40s\": a set must be the only item"
					: "%s.%s: \"%.40s\" is not a set defined in sets",
				    path, field, s);
			}
			snprintf(one, sizeof(one), "@%s", set->name);
			f = set->family;
		} else {
			f = parse_cidr(s, one, sizeof(one));
			if (f < 0) {
				fg_strbuf_deinit(&items);
				return fg_errf(
				    err, errlen,
				    f == -2 ? "%s.%s: \"%.60s\" has host bits set beyond the "
					      "prefix"
					    : "%s.%s: \"%.60s\" is not a CIDR or address",
				    path, field, s);
			}
		}
		if (fam >= 0 && f != fam) {
			fg_strbuf_deinit(&items);
			return fg_errf(err, errlen,
				       "%s.%s: mixes IPv4 and IPv6 (write one rule per family)",
				       path, field);
		}
		fam = f;
		if (i)
			fg_strbuf_puts(&items, ", ");
		fg_strbuf_puts(&items, one);
	}
	if (*family != FG_FW_INET && (int)*family != fam) {
		fg_strbuf_deinit(&items);
		return fg_errf(err, errlen, "%s.%s: %s addresses in a rule of family %s", path,
			       field, fam == FG_FW_IP ? "IPv4" : "IPv6",
			       *family == FG_FW_IP ? "ip (IPv4)" : "ip6 (IPv6)");
	}
	*family = (enum fg_fw_family)fam;
	*out = render_list(&items, n);
	fg_strbuf_deinit(&items);
	return *out ? 0 : OOM(err, errlen);
}

/* "80", "1000-2000" or an integer -> lo, hi. */
static int parse_port_item(const json_t *e, unsigned *lo, unsigned *hi)
{
	if (json_is_integer(e)) {
		json_int_t x = json_integer_value(e);
		if (x < 1 || x > 65535)
			return -1;
		*lo = *hi = (unsigned)x;
		return 0;
	}
	if (!json_is_string(e))
		return -1;
	const char *s = json_string_value(e);
	unsigned v[2] = {0, 0};
	int k = 0, digits = 0;
	for (const char *p = s;; p++) {
		if (*p >= '0' && *p <= '9') {
			v[k] = v[k] * 10 + (unsigned)(*p - '0');
			if (++digits > 5)
				return -1;
		} else if (*p == '-' && k == 0 && digits) {
			k = 1;
			digits = 0;
		} else if (*p == '\0' && digits) {
			break;
		} else {
			return -1;
		}
	}
	if (k == 0)
		v[1] = v[0];
	if (v[0] < 1 || v[1] > 65535 || v[0] > v[1])
		return -1;
	*lo = v[0];
	*hi = v[1];
	return 0;
}

static int parse_ports(const json_t *v, const char *path, const char *field, char **out, char *err,
		       size_t errlen)
{
	char vt[72];
	size_t n = json_is_array(v) ? json_array_size(v) : 1;
	if (json_is_array(v) && n == 0)
		return fg_errf(err, errlen, "%s.%s: [] must hold at least one port or range", path,
			       field);
	if (n > FG_FW_MAX_ITEMS)
		return fg_errf(err, errlen, "%s.%s: %zu items, at most %d", path, field, n,
			       FG_FW_MAX_ITEMS);
	struct fg_strbuf items;
	fg_strbuf_init(&items);
	for (size_t i = 0; i < n; i++) {
		const json_t *e = json_is_array(v) ? json_array_get(v, i) : v;
		unsigned lo, hi;
		if (parse_port_item(e, &lo, &hi) < 0) {
			fg_strbuf_deinit(&items);
			return fg_errf(err, errlen, "%s.%s: %s is not a port or range", path, field,
				       item_str(e, vt, sizeof(vt)));
		}
		if (i)
			fg_strbuf_puts(&items, ", ");
		if (lo == hi)
			fg_strbuf_printf(&items, "%u", lo);
		else
			fg_strbuf_printf(&items, "%u-%u", lo, hi);
	}
	*out = render_list(&items, n);
	fg_strbuf_deinit(&items);
	return *out ? 0 : OOM(err, errlen);
}

/* dnat/snat "to": ADDR or ADDR:PORT ([V6]:PORT); port may be a range. */
static int parse_to(const char *s, enum fg_fw_family *family, char **out)
{
	char host[64], addr[80];
	const char *port = NULL;
	if (s[0] == '[') {
		const char *e = strchr(s, ']');
		if (!e || (size_t)(e - s - 1) >= sizeof(host))
			return -1;
		memcpy(host, s + 1, (size_t)(e - s - 1));
		host[e - s - 1] = '\0';
		if (e[1] == ':')
			port = e + 2;
		else if (e[1] != '\0')
			return -1;
	} else {
		const char *c = strchr(s, ':');
		if (c && strchr(c + 1, ':'))
			c = NULL; /* bare IPv6 */
		size_t hl = c ? (size_t)(c - s) : strlen(s);
		if (hl >= sizeof(host))
			return -1;
		memcpy(host, s, hl);
		host[hl] = '\0';
		if (c)
			port = c + 1;
	}
	if (strchr(host, '/'))
		return -1;
	int f = parse_cidr(host, addr, sizeof(addr));
	if (f < 0)
		return -1;
	if (*family != FG_FW_INET && (int)*family != f)
		return -1;
	*family = (enum fg_fw_family)f;
	unsigned lo = 0, hi = 0;
	if (port) {
		json_t *pj = json_string(port);
		int rc = pj ? parse_port_item(pj, &lo, &hi) : -1;
		json_decref(pj);
		if (rc < 0)
			return -1;
	}
	char buf[128];
	if (!port)
		snprintf(buf, sizeof(buf), "%s", addr);
	else if (f == FG_FW_IP6)
		snprintf(buf, sizeof(buf), lo == hi ? "[%s]:%u" : "[%s]:%u-%u", addr, lo, hi);
	else
		snprintf(buf, sizeof(buf), lo == hi ? "%s:%u" : "%s:%u-%u", addr, lo, hi);
	*out = fg_strdup(buf);
	return *out ? 0 : -2;
}

/* "100/second", "10/m", or a byte rate ("1mbit", "2MiB") per second. */
static int parse_limit_rate(const char *s, struct fg_fw_rule *r)
{
	const char *slash = strchr(s, '/');
	if (slash) {
		static const struct {
			const char *in, *unit;
		} units[] = {{"second", "second"}, {"s", "second"},  {"minute", "minute"},
			     {"m", "minute"},	   {"hour", "hour"}, {"h", "hour"},
			     {"day", "day"},	   {"d", "day"}};
		char *end;
		errno = 0;
		unsigned long long n = strtoull(s, &end, 10);
		if (end == s || end != slash || errno || n == 0 || n > 1000000000ULL)
			goto bytes;
		for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
			if (strcmp(slash + 1, units[i].in) == 0) {
				r->rate = n;
				r->unit = units[i].unit;
				r->rate_bytes = false;
				return 0;
			}
		}
	}
bytes:;
	uint64_t b;
	if (fg_parse_rate(s, &b) < 0 || b == 0 || b > (1ULL << 40))
		return -1;
	/* a plain number with no unit is ambiguous here: packets need /unit */
	bool has_unit = false;
	for (const char *p = s; *p; p++)
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z'))
			has_unit = true;
	if (!has_unit)
		return -1;
	r->rate = b;
	r->unit = "second";
	r->rate_bytes = true;
	return 0;
}

static const char *chain_actions_ok(enum fg_fw_chain c, enum fg_fw_action a)
{
	switch (a) {
	case FG_FW_REJECT:
		return c == FG_FW_INPUT || c == FG_FW_FORWARD || c == FG_FW_OUTPUT
			   ? NULL
			   : "reject is only possible in chains input, forward and output";
	case FG_FW_DNAT:
		return c == FG_FW_PREROUTING ? NULL : "dnat is only possible in chain prerouting";
	case FG_FW_SNAT:
	case FG_FW_MASQUERADE:
		return c == FG_FW_POSTROUTING ? NULL
					      : "snat and masquerade are only possible in chain "
						"postrouting";
	default: return NULL;
	}
}

static int lookup(const char *s, const char *const *names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (names[i] && strcmp(s, names[i]) == 0)
			return (int)i;
	return -1;
}

static int parse_rule(const json_t *o, const char *path, const struct fg_fw_doc *doc,
		      struct fg_fw_rule *r, char *err, size_t errlen)
{
	static const char *const families[] = {"inet", "ip", "ip6"};
	static const char *const protos[] = {"any", "tcp", "udp", "both", "icmp", "icmpv6"};
	static const char *const actions[] = {"accept", "drop",	      "reject", "dnat",
					      "snat",	"masquerade", "mark",	"limit"};
	static const char *const ct_names[] = {"new", "established", "related", "invalid",
					       "untracked"};
	const char *key, *s = NULL;
	json_t *v;
	char vt[72];
	int rc = 0, k;
	bool have_chain = false, have_action = false;
	const json_t *saddr = NULL, *daddr = NULL, *to = NULL, *mark = NULL, *limit = NULL;

	memset(r, 0, sizeof(*r));
	if (!json_is_object(o)) {
		fg_json_value_text(o, vt, sizeof(vt));
		return fg_errf(err, errlen, "%s: %s must be an object", path, vt);
	}
	json_object_foreach((json_t *)o, key, v)
	{
		if (strcmp(key, "chain") == 0) {
			if ((rc = fg_json_get_string(v, path, key, &s, err, errlen)))
				return rc;
			if ((k = lookup(s, fg_fw_chain_names, FG_FW_NCHAINS)) < 0)
				return fg_errf(err, errlen,
					       "%s.chain: \"%.40s\" is not input, forward, output, "
					       "prerouting or postrouting",
					       path, s);
			r->chain = (enum fg_fw_chain)k;
			have_chain = true;
		} else if (strcmp(key, "family") == 0) {
			if ((rc = fg_json_get_string(v, path, key, &s, err, errlen)))
				return rc;
			if ((k = lookup(s, families, 3)) < 0)
				return fg_errf(err, errlen,
					       "%s.family: \"%.40s\" is not inet, ip or ip6", path,
					       s);
			r->family = (enum fg_fw_family)k;
		} else if (strcmp(key, "proto") == 0 || strcmp(key, "protocol") == 0) {
			if ((rc = fg_json_get_string(v, path, key, &s, err, errlen)))
				return rc;
			if ((k = lookup(s, protos, 6)) < 0)
				return fg_errf(
				    err, errlen,
				    "%s.%s: \"%.40s\" is not any, tcp, udp, both, icmp or "
				    "icmpv6",
				    path, key, s);
			r->proto = (enum fg_fw_proto)k;
		} else if (strcmp(key, "saddr") == 0) {
			saddr = v;
		} else if (strcmp(key, "daddr") == 0) {
			daddr = v;
		} else if (strcmp(key, "sport") == 0) {
			if ((rc = parse_ports(v, path, key, &r->sport, err, errlen)))
				return rc;
		} else if (strcmp(key, "dport") == 0) {
			if ((rc = parse_ports(v, path, key, &r->dport, err, errlen)))
				return rc;
		} else if (strcmp(key, "iif") == 0 || strcmp(key, "oif") == 0) {
			if ((rc = fg_json_get_string(v, path, key, &s, err, errlen)))
				return rc;
			if (!valid_ifname(s))
				return fg_errf(err, errlen,
					       "%s.%s: \"%.40s\" is not an interface name (1-15 of "
					       "A-Z a-z 0-9 _ - . : @, optional trailing *)",
					       path, key, s);
			strcpy(key[0] == 'i' ? r->iif : r->oif, s);
		} else if (strcmp(key, "ct_state") == 0) {
			size_t n = json_is_array(v) ? json_array_size(v) : 1;
			if (json_is_array(v) && n == 0)
				return fg_errf(err, errlen, "%s.ct_state: [] names no state", path);
			for (size_t i = 0; i < n; i++) {
				const json_t *e = json_is_array(v) ? json_array_get(v, i) : v;
				if (!json_is_string(e) ||
				    (k = lookup(json_string_value(e), ct_names, 5)) < 0)
					return fg_errf(err, errlen,
						       "%s.ct_state: %s is not new, established, "
						       "related, invalid or untracked",
						       path, item_str(e, vt, sizeof(vt)));
				r->ct_state |= 1u << k;
			}
		} else if (strcmp(key, "action") == 0) {
			if ((rc = fg_json_get_string(v, path, key, &s, err, errlen)))
				return rc;
			if ((k = lookup(s, actions, 8)) < 0)
				return fg_errf(
				    err, errlen,
				    "%s.action: \"%.40s\" is not accept, drop, reject, dnat, "
				    "snat, masquerade, mark or limit",
				    path, s);
			r->action = (enum fg_fw_action)k;
			have_action = true;
		} else if (strcmp(key, "to") == 0) {
			to = v;
		} else if (strcmp(key, "mark") == 0) {
			mark = v;
		} else if (strcmp(key, "limit") == 0) {
			limit = v;
		} else if (strcmp(key, "counter") == 0) {
			if (!json_is_boolean(v))
				return fg_errf(err, errlen, "%s.counter: %s is not true or false",
					       path, item_str(v, vt, sizeof(vt)));
			r->counter = json_is_true(v);
		} else if (strcmp(key, "comment") == 0) {
			if ((rc = fg_json_get_string(v, path, key, &s, err, errlen)))
				return rc;
			if (!valid_comment(s))
				return fg_errf(
				    err, errlen,
				    "%s.comment: \"%.60s\" must be at most 128 characters "
				    "without quotes, backslashes, $ or control characters",
				    path, s);
			strcpy(r->comment, s);
		} else if (strcmp(key, "raw") == 0) {
			if ((rc = fg_json_get_string(v, path, key, &s, err, errlen)))
				return rc;
			const char *why = fg_fw_raw_check(s);
			if (why)
				return fg_errf(err, errlen, "%s.raw: the block %s", path, why);
			if (!(r->raw = fg_strdup(s)))
				return OOM(err, errlen);
		} else {
			return fg_errf(err, errlen, "%s.%.64s: unknown field", path, key);
		}
	}
	if (!have_chain)
		return fg_errf(err, errlen, "%s.chain: missing", path);
	if (r->raw) {
		/* a raw block is the chain's text: structured fields would be ignored */
		if (have_action || saddr || daddr || to || mark || limit || r->sport || r->dport ||
		    r->iif[0] || r->oif[0] || r->ct_state || r->proto || r->family || r->counter)
			return fg_errf(err, errlen,
				       "%s.raw: a raw block takes only chain and comment (write "
				       "counters inside the block)",
				       path);
		return 0;
	}
	if (!have_action)
		return fg_errf(err, errlen, "%s.action: missing", path);
	const char *why = chain_actions_ok(r->chain, r->action);
	if (why)
		return fg_errf(err, errlen, "%s.action: %s", path, why);
	if ((r->sport || r->dport) && r->proto != FG_FW_PROTO_TCP && r->proto != FG_FW_PROTO_UDP &&
	    r->proto != FG_FW_PROTO_TCPUDP)
		return fg_errf(err, errlen, "%s.%s: ports need proto tcp, udp or both", path,
			       r->sport ? "sport" : "dport");
	if (r->proto == FG_FW_PROTO_ICMP) {
		if (r->family == FG_FW_IP6)
			return fg_errf(err, errlen,
				       "%s.proto: icmp in a rule of family ip6 (use icmpv6)", path);
		r->family = FG_FW_IP;
	} else if (r->proto == FG_FW_PROTO_ICMPV6) {
		if (r->family == FG_FW_IP)
			return fg_errf(err, errlen,
				       "%s.proto: icmpv6 in a rule of family ip (use icmp)", path);
		r->family = FG_FW_IP6;
	}
	if (saddr &&
	    (rc = parse_addrs(saddr, path, "saddr", doc, &r->family, &r->saddr, err, errlen)))
		return rc;
	if (daddr &&
	    (rc = parse_addrs(daddr, path, "daddr", doc, &r->family, &r->daddr, err, errlen)))
		return rc;
	if ((r->iif[0] && r->chain == FG_FW_OUTPUT) || (r->iif[0] && r->chain == FG_FW_POSTROUTING))
		return fg_errf(err, errlen, "%s.iif: chain %s has no input interface", path,
			       fg_fw_chain_names[r->chain]);
	if (r->oif[0] && (r->chain == FG_FW_INPUT || r->chain == FG_FW_PREROUTING))
		return fg_errf(err, errlen, "%s.oif: chain %s has no output interface", path,
			       fg_fw_chain_names[r->chain]);

	/* action arguments: present exactly when the action needs them */
	bool need_to = r->action == FG_FW_DNAT || r->action == FG_FW_SNAT;
	if (to && !need_to)
		return fg_errf(err, errlen, "%s.to: only dnat and snat take a target", path);
	if (need_to) {
		if (!to)
			return fg_errf(err, errlen, "%s.to: missing (%s needs ADDR or ADDR:PORT)",
				       path, actions[r->action]);
		if (!json_is_string(to))
			return fg_errf(err, errlen, "%s.to: %s is not a string", path,
				       item_str(to, vt, sizeof(vt)));
		int prc = parse_to(json_string_value(to), &r->family, &r->to);
		if (prc == -2)
			return OOM(err, errlen);
		if (prc < 0)
			return fg_errf(
			    err, errlen,
			    "%s.to: \"%.60s\" is not ADDR, ADDR:PORT or [V6]:PORT (of the "
			    "rule's family)",
			    path, json_string_value(to));
		if (strchr(r->to, ']') || (r->family == FG_FW_IP && strchr(r->to, ':'))) {
			if (r->proto != FG_FW_PROTO_TCP && r->proto != FG_FW_PROTO_UDP &&
			    r->proto != FG_FW_PROTO_TCPUDP)
				return fg_errf(err, errlen,
					       "%s.to: a port needs proto tcp, udp or both", path);
		}
	}
	if (mark && r->action != FG_FW_MARK)
		return fg_errf(err, errlen, "%s.mark: only action mark takes a mark", path);
	if (r->action == FG_FW_MARK) {
		if (!mark)
			return fg_errf(err, errlen, "%s.mark: missing (action mark needs a number)",
				       path);
		if (!json_is_integer(mark) || json_integer_value(mark) < 0 ||
		    json_integer_value(mark) > 0xffffffffLL)
			return fg_errf(err, errlen, "%s.mark: %s is not a number 0-4294967295",
				       path, item_str(mark, vt, sizeof(vt)));
		r->mark = (uint32_t)json_integer_value(mark);
	}
	if (limit && r->action != FG_FW_LIMIT)
		return fg_errf(err, errlen, "%s.limit: only action limit takes a limit", path);
	if (r->action == FG_FW_LIMIT) {
		char lp[160];
		snprintf(lp, sizeof(lp), "%s.limit", path);
		if (!limit || !json_is_object(limit))
			return fg_errf(err, errlen,
				       "%s: %s must be an object {\"rate\": \"100/second\" or "
				       "\"1mbit\", \"burst\": N}",
				       lp, limit ? item_str(limit, vt, sizeof(vt)) : "missing");
		json_object_foreach((json_t *)limit, key, v)
		{
			if (strcmp(key, "rate") == 0) {
				if (!json_is_string(v) || parse_limit_rate(json_string_value(v), r))
					return fg_errf(err, errlen,
						       "%s.rate: %s is not a rate (100/second, "
						       "10/minute, 1mbit, 2MiB...)",
						       lp, item_str(v, vt, sizeof(vt)));
			} else if (strcmp(key, "burst") == 0) {
				if (!json_is_integer(v) || json_integer_value(v) < 1 ||
				    json_integer_value(v) > 1000000000LL)
					return fg_errf(err, errlen,
						       "%s.burst: %s is not a number 1-1000000000",
						       lp, item_str(v, vt, sizeof(vt)));
				r->burst = (uint64_t)json_integer_value(v);
			} else {
				return fg_errf(err, errlen, "%s.%.64s: unknown field", lp, key);
			}
		}
		if (!r->rate)
			return fg_errf(err, errlen, "%s.rate: missing", lp);
	}
	return 0;
}

static int parse_policy(const json_t *o, const char *path, const struct fg_fw_doc *doc,
			struct fg_fw_policy *p, char *err, size_t errlen)
{
	const char *key, *s = NULL;
	json_t *v, *rules = NULL;
	char vt[72];
	int rc;

	memset(p, 0, sizeof(*p));
	p->enabled = true;
	if (!json_is_object(o)) {
		fg_json_value_text(o, vt, sizeof(vt));
		return fg_errf(err, errlen, "%s: %s must be an object", path, vt);
	}
	json_object_foreach((json_t *)o, key, v)
	{
		if (strcmp(key, "name") == 0) {
			if ((rc = fg_json_get_string(v, path, key, &s, err, errlen)))
				return rc;
			if (!valid_policy_name(s))
				return fg_errf(
				    err, errlen,
				    "%s.name: \"%.60s\" must be 1-48 characters of A-Z a-z "
				    "0-9 _ -",
				    path, s);
			strcpy(p->name, s);
		} else if (strcmp(key, "id") == 0) {
			if (json_is_integer(v))
				snprintf(p->id, sizeof(p->id), "%lld",
					 (long long)json_integer_value(v));
			else if (json_is_string(v) && strlen(json_string_value(v)) < sizeof(p->id))
				strcpy(p->id, json_string_value(v));
			else
				return fg_errf(err, errlen, "%s.id: %s is not a string or integer",
					       path, item_str(v, vt, sizeof(vt)));
		} else if (strcmp(key, "priority") == 0) {
			if (!json_is_integer(v) || json_integer_value(v) < -1000000 ||
			    json_integer_value(v) > 1000000)
				return fg_errf(err, errlen,
					       "%s.priority: %s is not a number -1000000-1000000",
					       path, item_str(v, vt, sizeof(vt)));
			p->priority = (int)json_integer_value(v);
		} else if (strcmp(key, "enabled") == 0) {
			if (!json_is_boolean(v))
				return fg_errf(err, errlen, "%s.enabled: %s is not true or false",
					       path, item_str(v, vt, sizeof(vt)));
			p->enabled = json_is_true(v);
		} else if (strcmp(key, "description") == 0) {
			if (!json_is_string(v))
				return fg_errf(err, errlen, "%s.description: %s is not a string",
					       path, item_str(v, vt, sizeof(vt)));
		} else if (strcmp(key, "rules") == 0) {
			rules = v;
		} else {
			return fg_errf(err, errlen, "%s.%.64s: unknown field", path, key);
		}
	}
	if (!p->name[0])
		return fg_errf(err, errlen, "%s.name: missing", path);
	if (!rules)
		return fg_errf(err, errlen, "%s.rules: missing", path);
	if (!json_is_array(rules))
		return fg_errf(err, errlen, "%s.rules: %s must be an array", path,
			       item_str(rules, vt, sizeof(vt)));
	if (json_array_size(rules) > FG_FW_MAX_RULES)
		return fg_errf(err, errlen, "%s.rules: %zu rules, at most %d", path,
			       json_array_size(rules), FG_FW_MAX_RULES);
	p->rules = fg_calloc(json_array_size(rules) + 1, sizeof(*p->rules));
	if (!p->rules)
		return OOM(err, errlen);
	for (size_t i = 0; i < json_array_size(rules); i++) {
		char rp[96];
		snprintf(rp, sizeof(rp), "%s.rules[%zu]", path, i);
		p->nrules = i + 1;
		if ((rc = parse_rule(json_array_get(rules, i), rp, doc, &p->rules[i], err, errlen)))
			return rc;
	}
	return 0;
}

static int parse_set(const json_t *o, const char *path, struct fg_fw_set *set, char *err,
		     size_t errlen)
{
	const char *key, *s = NULL;
	json_t *v, *elems = NULL;
	char vt[72];
	int rc;
	bool have_type = false;

	memset(set, 0, sizeof(*set));
	if (!json_is_object(o))
		return fg_errf(err, errlen, "%s: %s must be an object", path,
			       item_str(o, vt, sizeof(vt)));
	json_object_foreach((json_t *)o, key, v)
	{
		if (strcmp(key, "name") == 0) {
			if ((rc = fg_json_get_string(v, path, key, &s, err, errlen)))
				return rc;
			if (!valid_set_name(s))
				return fg_errf(
				    err, errlen,
				    "%s.name: \"%.60s\" must be a letter then up to 31 of "
				    "A-Z a-z 0-9 _",
				    path, s);
			strcpy(set->name, s);
		} else if (strcmp(key, "type") == 0) {
			if ((rc = fg_json_get_string(v, path, key, &s, err, errlen)))
				return rc;
			if (strcmp(s, "ipv4") == 0)
				set->family = FG_FW_IP;
			else if (strcmp(s, "ipv6") == 0)
				set->family = FG_FW_IP6;
			else
				return fg_errf(err, errlen,
					       "%s.type: \"%.40s\" is not ipv4 or ipv6", path, s);
			have_type = true;
		} else if (strcmp(key, "elements") == 0) {
			elems = v;
		} else {
			return fg_errf(err, errlen, "%s.%.64s: unknown field", path, key);
		}
	}
	if (!set->name[0])
		return fg_errf(err, errlen, "%s.name: missing", path);
	if (!have_type)
		return fg_errf(err, errlen, "%s.type: missing (ipv4 or ipv6)", path);
	if (elems && !json_is_array(elems))
		return fg_errf(err, errlen, "%s.elements: %s must be an array", path,
			       item_str(elems, vt, sizeof(vt)));
	if (elems && json_array_size(elems) > 65536)
		return fg_errf(err, errlen, "%s.elements: more than 65536", path);
	struct fg_strbuf b;
	fg_strbuf_init(&b);
	fg_strbuf_puts(&b, "");
	for (size_t i = 0; elems && i < json_array_size(elems); i++) {
		const json_t *e = json_array_get(elems, i);
		char one[80];
		int f = json_is_string(e) ? parse_cidr(json_string_value(e), one, sizeof(one)) : -1;
		if (f < 0 || f != (int)set->family) {
			fg_strbuf_deinit(&b);
			return fg_errf(err, errlen,
				       "%s.elements[%zu]: %s is not an %s CIDR or address", path, i,
				       item_str(e, vt, sizeof(vt)),
				       set->family == FG_FW_IP ? "IPv4" : "IPv6");
		}
		if (i)
			fg_strbuf_puts(&b, ", ");
		fg_strbuf_puts(&b, one);
	}
	if (b.oom)
		return fg_strbuf_deinit(&b), OOM(err, errlen);
	set->elements = b.s;
	return 0;
}

int fg_fw_doc_parse_json(const void *json, struct fg_fw_doc *out, char *err, size_t errlen)
{
	const json_t *root = json;
	struct fg_fw_doc d = {0};
	const char *key;
	json_t *v, *sets = NULL, *pols = NULL;
	char vt[72];
	int rc;

	memset(out, 0, sizeof(*out));
	if (!json_is_object(root))
		return fg_errf(
		    err, errlen,
		    "the document must be an object {\"sets\": [...], \"policies\": [...]}");
	json_object_foreach((json_t *)root, key, v)
	{
		if (strcmp(key, "sets") == 0)
			sets = v;
		else if (strcmp(key, "policies") == 0)
			pols = v;
		else
			return fg_errf(err, errlen, "%.64s: unknown field", key);
	}
	if (sets && !json_is_array(sets))
		return fg_errf(err, errlen, "sets: %s must be an array",
			       item_str(sets, vt, sizeof(vt)));
	if (pols && !json_is_array(pols))
		return fg_errf(err, errlen, "policies: %s must be an array",
			       item_str(pols, vt, sizeof(vt)));
	size_t ns = sets ? json_array_size(sets) : 0, np = pols ? json_array_size(pols) : 0;
	if (ns > 1024 || np > 1024)
		return fg_errf(err, errlen, "%s: more than 1024 entries",
			       ns > 1024 ? "sets" : "policies");
	d.sets = fg_calloc(ns + 1, sizeof(*d.sets));
	d.policies = fg_calloc(np + 1, sizeof(*d.policies));
	if (!d.sets || !d.policies) {
		rc = OOM(err, errlen);
		goto err;
	}
	for (size_t i = 0; i < ns; i++) {
		char p[32];
		snprintf(p, sizeof(p), "sets[%zu]", i);
		d.nsets = i + 1;
		if ((rc = parse_set(json_array_get(sets, i), p, &d.sets[i], err, errlen)))
			goto err;
		for (size_t j = 0; j < i; j++)
			if (strcmp(d.sets[j].name, d.sets[i].name) == 0) {
				rc = fg_errf(err, errlen,
					     "%s.name: \"%s\" is already used by sets[%zu]", p,
					     d.sets[i].name, j);
				goto err;
			}
	}
	for (size_t i = 0; i < np; i++) {
		char p[32];
		snprintf(p, sizeof(p), "policies[%zu]", i);
		d.npolicies = i + 1;
		if ((rc =
			 parse_policy(json_array_get(pols, i), p, &d, &d.policies[i], err, errlen)))
			goto err;
		for (size_t j = 0; j < i; j++)
			if (strcmp(d.policies[j].name, d.policies[i].name) == 0) {
				rc = fg_errf(err, errlen,
					     "%s.name: \"%s\" is already used by policies[%zu]", p,
					     d.policies[i].name, j);
				goto err;
			}
	}
	*out = d;
	return 0;
err:
	fg_fw_doc_free(&d);
	return rc;
}

int fg_fw_section_parse(const void *section, struct fg_fw_doc *out, int64_t *confirm_s, char *err,
			size_t errlen)
{
	const json_t *sec = section;
	*confirm_s = 0;
	memset(out, 0, sizeof(*out));
	if (!sec)
		return 0;
	if (!json_is_object(sec))
		return fg_errf(err, errlen, "firewall: must be an object");
	json_t *ct = json_object_get(sec, "confirm_timeout");
	if (ct &&
	    (!json_is_integer(ct) || json_integer_value(ct) < 1 || json_integer_value(ct) > 86400))
		return fg_errf(err, errlen, "firewall.confirm_timeout: must be 1-86400 seconds");
	if (ct)
		*confirm_s = json_integer_value(ct);
	json_t *copy = json_copy((json_t *)sec);
	if (!copy)
		return OOM(err, errlen);
	json_object_del(copy, "confirm_timeout");
	int rc = fg_fw_doc_parse_json(copy, out, err, errlen);
	json_decref(copy);
	return rc;
}

int fg_fw_doc_parse(const char *text, size_t len, struct fg_fw_doc *out, char *err, size_t errlen)
{
	json_error_t je;
	memset(out, 0, sizeof(*out));
	json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
	if (!root)
		return fg_errf(err, errlen, "line %d column %d: %s", je.line, je.column, je.text);
	int rc = fg_fw_doc_parse_json(root, out, err, errlen);
	json_decref(root);
	return rc;
}

int fg_fw_doc_load_file(const char *path, struct fg_fw_doc *out, char *err, size_t errlen)
{
	json_error_t je;
	memset(out, 0, sizeof(*out));
	json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
	if (!root)
		return fg_errf(err, errlen, "%s: line %d column %d: %s", path, je.line, je.column,
			       je.text);
	int rc = fg_fw_doc_parse_json(root, out, err, errlen);
	json_decref(root);
	return rc;
}
