#include "kernel/nft_compile.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

/* Base chain declarations. prerouting / postrouting are NAT chains (they see
 * the first packet of each connection), the others filter. Hook priorities
 * are nft's standard names so other tools' tables order around us as usual. */
static const char *const chain_decl[FG_FW_NCHAINS] = {
    "type filter hook input priority filter; policy accept;",
    "type filter hook forward priority filter; policy accept;",
    "type filter hook output priority filter; policy accept;",
    "type nat hook prerouting priority dstnat; policy accept;",
    "type nat hook postrouting priority srcnat; policy accept;",
};

bool fg_nft_table_name_ok(const char *name)
{
	size_t n = strlen(name);
	if (n < 8 || n > FG_NFT_TABLE_MAX || strncmp(name, "flowgate", 8) != 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9') ||
		      name[i] == '_'))
			return false;
	return true;
}

void fg_nft_fwd_counter(const char *fwd_name, bool up, char *buf, size_t len)
{
	snprintf(buf, len, "fwd_%s_%s", fwd_name, up ? "up" : "down");
}

void fg_nft_fwd_conns_counter(const char *fwd_name, char *buf, size_t len)
{
	snprintf(buf, len, "fwd_%s_conns", fwd_name);
}

void fg_nft_rule_counter(const char *policy, size_t index, char *buf, size_t len)
{
	snprintf(buf, len, "pol_%s_%zu", policy, index);
}

void fg_nft_compile_delete(const char *table, struct fg_strbuf *out)
{
	/* declaring first makes the delete succeed when the table is missing */
	fg_strbuf_printf(out, "table inet %s {}\ndelete table inet %s\n", table, table);
}

static bool kernel_fwd(const struct fg_forward_cfg *c)
{
	return c->enabled && c->engine == FG_ENGINE_KERNEL;
}

unsigned fg_nft_forwarding_needed(const struct fg_nft_spec *spec)
{
	unsigned need = 0;
	for (size_t i = 0; i < spec->nfwds; i++)
		if (kernel_fwd(&spec->fwds[i]))
			need |= spec->fwds[i].listen.ip.ss_family == AF_INET6 ? 2u : 1u;
	return need;
}

/* ---- policies -------------------------------------------------------------- */

static const char *fam_kw(enum fg_fw_family f)
{
	return f == FG_FW_IP6 ? "ip6" : "ip";
}

static void ct_state_text(struct fg_strbuf *b, unsigned bits)
{
	static const char *const names[] = {"new", "established", "related", "invalid",
					    "untracked"};
	unsigned n = (unsigned)__builtin_popcount(bits);
	fg_strbuf_puts(b, n > 1 ? "ct state { " : "ct state ");
	bool first = true;
	for (unsigned i = 0; i < 5; i++) {
		if (!(bits & (1u << i)))
			continue;
		fg_strbuf_printf(b, "%s%s", first ? "" : ", ", names[i]);
		first = false;
	}
	fg_strbuf_puts(b, n > 1 ? " } " : " ");
}

static void rule_text(struct fg_strbuf *b, const struct fg_fw_policy *p, size_t idx)
{
	const struct fg_fw_rule *r = &p->rules[idx];
	char cname[FG_FW_NAME_MAX + 32];

	if (r->raw) {
		/* verbatim, one line per line, indented; the checker made sure it
		 * cannot leave this chain */
		fg_strbuf_printf(b, "\t\t# policy %s rule %zu (raw)%s%s\n", p->name, idx,
				 r->comment[0] ? ": " : "", r->comment);
		const char *s = r->raw;
		while (*s) {
			const char *e = strchr(s, '\n');
			size_t n = e ? (size_t)(e - s) : strlen(s);
			while (n && (s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
				n--;
			const char *t = s;
			while ((size_t)(t - s) < n && (*t == ' ' || *t == '\t'))
				t++;
			if ((size_t)(t - s) < n) {
				fg_strbuf_puts(b, "\t\t");
				fg_strbuf_append(b, t, n - (size_t)(t - s));
				fg_strbuf_puts(b, "\n");
			}
			s = e ? e + 1 : s + strlen(s);
		}
		return;
	}

	fg_strbuf_puts(b, "\t\t");
	if (r->family != FG_FW_INET && !r->saddr && !r->daddr)
		fg_strbuf_printf(b, "meta nfproto %s ", r->family == FG_FW_IP6 ? "ipv6" : "ipv4");
	if (r->iif[0])
		fg_strbuf_printf(b, "iifname \"%s\" ", r->iif);
	if (r->oif[0])
		fg_strbuf_printf(b, "oifname \"%s\" ", r->oif);
	if (r->saddr)
		fg_strbuf_printf(b, "%s saddr %s ", fam_kw(r->family), r->saddr);
	if (r->daddr)
		fg_strbuf_printf(b, "%s daddr %s ", fam_kw(r->family), r->daddr);
	const char *l4 = NULL;
	switch (r->proto) {
	case FG_FW_PROTO_TCP: l4 = "tcp"; break;
	case FG_FW_PROTO_UDP: l4 = "udp"; break;
	case FG_FW_PROTO_TCPUDP:
		fg_strbuf_puts(b, "meta l4proto { tcp, udp } ");
		l4 = "th";
		break;
	case FG_FW_PROTO_ICMP: fg_strbuf_puts(b, "meta l4proto icmp "); break;
	case FG_FW_PROTO_ICMPV6: fg_strbuf_puts(b, "meta l4proto ipv6-icmp "); break;
	case FG_FW_PROTO_ANY: break;
	}
	if (l4 && !r->sport && !r->dport && r->proto != FG_FW_PROTO_TCPUDP)
		fg_strbuf_printf(b, "meta l4proto %s ", l4);
	if (r->sport)
		fg_strbuf_printf(b, "%s sport %s ", l4, r->sport);
	if (r->dport)
		fg_strbuf_printf(b, "%s dport %s ", l4, r->dport);
	if (r->ct_state)
		ct_state_text(b, r->ct_state);
	if (r->action == FG_FW_LIMIT) {
		fg_strbuf_printf(b, "limit rate over %llu%s/%s ", (unsigned long long)r->rate,
				 r->rate_bytes ? " bytes" : "", r->unit);
		if (r->burst)
			fg_strbuf_printf(b, "burst %llu %s ", (unsigned long long)r->burst,
					 r->rate_bytes ? "bytes" : "packets");
	}
	if (r->counter) {
		fg_nft_rule_counter(p->name, idx, cname, sizeof(cname));
		fg_strbuf_printf(b, "counter name \"%s\" ", cname);
	}
	switch (r->action) {
	case FG_FW_ACCEPT: fg_strbuf_puts(b, "accept"); break;
	case FG_FW_DROP:
	case FG_FW_LIMIT: fg_strbuf_puts(b, "drop"); break;
	case FG_FW_REJECT:
		fg_strbuf_puts(b, r->proto == FG_FW_PROTO_TCP ? "reject with tcp reset" : "reject");
		break;
	case FG_FW_DNAT: fg_strbuf_printf(b, "dnat %s to %s", fam_kw(r->family), r->to); break;
	case FG_FW_SNAT: fg_strbuf_printf(b, "snat %s to %s", fam_kw(r->family), r->to); break;
	case FG_FW_MASQUERADE: fg_strbuf_puts(b, "masquerade"); break;
	case FG_FW_MARK: fg_strbuf_printf(b, "meta mark set 0x%08x", r->mark); break;
	}
	if (r->comment[0])
		fg_strbuf_printf(b, " comment \"%s\"", r->comment);
	fg_strbuf_puts(b, "\n");
}

/* Enabled policies by priority; equal priorities keep document order. */
static size_t policy_order(const struct fg_fw_doc *fw, size_t *idx)
{
	size_t n = 0;
	for (size_t i = 0; fw && i < fw->npolicies; i++) {
		if (!fw->policies[i].enabled)
			continue;
		size_t j = n++;
		while (j > 0 && fw->policies[idx[j - 1]].priority > fw->policies[i].priority) {
			idx[j] = idx[j - 1];
			j--;
		}
		idx[j] = i;
	}
	return n;
}

static void policies_text(struct fg_strbuf *chain, enum fg_fw_chain c, const struct fg_fw_doc *fw,
			  const size_t *order, size_t n)
{
	for (size_t k = 0; k < n; k++) {
		const struct fg_fw_policy *p = &fw->policies[order[k]];
		bool header = false;
		for (size_t i = 0; i < p->nrules; i++) {
			if (p->rules[i].chain != c)
				continue;
			if (!header && !p->rules[i].raw)
				fg_strbuf_printf(chain, "\t\t# policy %s (priority %d)\n", p->name,
						 p->priority);
			header = true;
			rule_text(chain, p, i);
		}
	}
}

/* ---- kernel forwards --------------------------------------------------------- */

static void ip_text(const struct sockaddr_storage *ss, char *buf, size_t len)
{
	if (ss->ss_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, buf, len);
	else
		inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, buf, len);
}

static bool wildcard(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET6)
		return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)ss)->sin6_addr);
	return ((const struct sockaddr_in *)ss)->sin_addr.s_addr == htonl(INADDR_ANY);
}

static void range_text(unsigned lo, unsigned hi, char *buf, size_t len)
{
	if (lo == hi)
		snprintf(buf, len, "%u", lo);
	else
		snprintf(buf, len, "%u-%u", lo, hi);
}

enum tform { T_PORT, T_SAME, T_SHIFT };

static enum tform target_form(const struct fg_forward_cfg *c, const struct fg_endpoint *t)
{
	if (t->port_lo == t->port_hi)
		return T_PORT; /* every listen port goes to this one */
	return t->port_lo == c->listen.port_lo ? T_SAME : T_SHIFT;
}

/* The nat expression for one target: "A:p", "[A]:p", "A", or a map from the
 * listen port to "A . p" for a shifted range. */
static void target_expr(struct fg_strbuf *b, const struct fg_forward_cfg *c,
			const struct fg_endpoint *t)
{
	char a[INET6_ADDRSTRLEN];
	ip_text(&t->ip, a, sizeof(a));
	bool v6 = t->ip.ss_family == AF_INET6;
	switch (target_form(c, t)) {
	case T_PORT: fg_strbuf_printf(b, v6 ? "[%s]:%u" : "%s:%u", a, t->port_lo); break;
	case T_SAME: fg_strbuf_puts(b, a); break;
	case T_SHIFT:
		fg_strbuf_puts(b, "th dport map { ");
		for (unsigned p = c->listen.port_lo; p <= c->listen.port_hi; p++)
			fg_strbuf_printf(b, "%s%u : %s . %u", p == c->listen.port_lo ? "" : ", ", p,
					 a, t->port_lo + (p - c->listen.port_lo));
		fg_strbuf_puts(b, " }");
		break;
	}
}

static void fwd_text(const struct fg_forward_cfg *c, struct fg_strbuf *pre, struct fg_strbuf *fwd,
		     struct fg_strbuf *post, struct fg_strbuf *extra)
{
	bool v6 = c->listen.ip.ss_family == AF_INET6;
	const char *ipk = v6 ? "ip6" : "ip";
	char la[INET6_ADDRSTRLEN], lp[16], daddr[96], ct_daddr[96], cname[FG_NAME_MAX + 16];
	ip_text(&c->listen.ip, la, sizeof(la));
	range_text(c->listen.port_lo, c->listen.port_hi, lp, sizeof(lp));
	if (wildcard(&c->listen.ip)) {
		/* any local address of the family (as a wildcard listener would) */
		snprintf(daddr, sizeof(daddr), "meta nfproto %s fib daddr type local",
			 v6 ? "ipv6" : "ipv4");
		snprintf(ct_daddr, sizeof(ct_daddr), "meta nfproto %s", v6 ? "ipv6" : "ipv4");
	} else {
		snprintf(daddr, sizeof(daddr), "%s daddr %s", ipk, la);
		snprintf(ct_daddr, sizeof(ct_daddr), "ct original %s daddr %s", ipk, la);
	}
	const char *l4match = c->proto == FG_PROTO_TCP	 ? "tcp"
			      : c->proto == FG_PROTO_UDP ? "udp"
							 : "meta l4proto { tcp, udp } th";

	/* prerouting: pick the target */
	fg_strbuf_printf(pre, "\t\t# forward %s: %s%s%s:%s %s -> %zu target(s)\n", c->name,
			 v6 ? "[" : "", la, v6 ? "]" : "", lp,
			 c->proto == FG_PROTO_TCP   ? "tcp"
			 : c->proto == FG_PROTO_UDP ? "udp"
						    : "tcp+udp",
			 c->ntargets);
	fg_nft_fwd_conns_counter(c->name, cname, sizeof(cname));
	fg_strbuf_printf(pre, "\t\t%s %s dport %s counter name \"%s\" ", daddr, l4match, lp, cname);
	enum tform f0 = target_form(c, &c->targets[0]);
	bool uniform = f0 != T_SHIFT;
	for (size_t i = 1; i < c->ntargets; i++)
		if (target_form(c, &c->targets[i]) != f0)
			uniform = false;
	if (c->ntargets == 1) {
		fg_strbuf_printf(pre, "dnat %s to ", ipk);
		target_expr(pre, c, &c->targets[0]);
		fg_strbuf_puts(pre, "\n");
	} else if (uniform) {
		/* round-robin per connection: numgen runs on the first packet only */
		fg_strbuf_printf(pre, "dnat %s to numgen inc mod %zu map { ", ipk, c->ntargets);
		for (size_t i = 0; i < c->ntargets; i++) {
			char a[INET6_ADDRSTRLEN];
			ip_text(&c->targets[i].ip, a, sizeof(a));
			if (f0 == T_PORT)
				fg_strbuf_printf(pre, "%s%zu : %s . %u", i ? ", " : "", i, a,
						 c->targets[i].port_lo);
			else
				fg_strbuf_printf(pre, "%s%zu : %s", i ? ", " : "", i, a);
		}
		fg_strbuf_puts(pre, " }\n");
	} else {
		/* targets with different port forms: one chain per target */
		fg_strbuf_printf(pre, "numgen inc mod %zu vmap { ", c->ntargets);
		for (size_t i = 0; i < c->ntargets; i++)
			fg_strbuf_printf(pre, "%s%zu : jump fwd_%s_t%zu", i ? ", " : "", i, c->name,
					 i);
		fg_strbuf_puts(pre, " }\n");
		for (size_t i = 0; i < c->ntargets; i++) {
			fg_strbuf_printf(extra,
					 "\n\tchain fwd_%s_t%zu {\n\t\t%s dport %s dnat %s to ",
					 c->name, i, l4match, lp, ipk);
			target_expr(extra, c, &c->targets[i]);
			fg_strbuf_puts(extra, "\n\t}\n");
		}
	}

	/* forward: count (and limit) both directions by the original tuple;
	 * ct original proto-dst needs a single l4 protocol, so tcp+udp is two
	 * rules sharing the named counter and limit */
	static const char *const protos[] = {"tcp", "udp"};
	fg_strbuf_printf(fwd, "\t\t# forward %s\n", c->name);
	for (int dir = 0; dir < 2; dir++) {
		bool up = dir == 0;
		uint64_t rate = up ? c->rate_up : c->rate_down;
		fg_nft_fwd_counter(c->name, up, cname, sizeof(cname));
		for (int pi = 0; pi < 2; pi++) {
			if (!(c->proto & (pi ? FG_PROTO_UDP : FG_PROTO_TCP)))
				continue;
			char base[256];
			snprintf(base, sizeof(base),
				 "\t\tmeta l4proto %s ct status dnat %s ct original proto-dst %s "
				 "ct direction %s",
				 protos[pi], ct_daddr, lp, up ? "original" : "reply");
			if (rate)
				fg_strbuf_printf(fwd, "%s limit name \"%s\" drop\n", base, cname);
			fg_strbuf_printf(fwd, "%s counter name \"%s\" accept\n", base, cname);
		}
	}

	/* postrouting: replies must come back through us */
	for (int pi = 0; pi < 2; pi++) {
		if (!(c->proto & (pi ? FG_PROTO_UDP : FG_PROTO_TCP)))
			continue;
		fg_strbuf_printf(post,
				 "\t\tmeta l4proto %s ct status dnat %s ct original proto-dst %s "
				 "masquerade\n",
				 protos[pi], ct_daddr, lp);
	}
}

/* nft's limit burst: the proxy engine's default (rate/10, at least 16 KiB). */
static uint64_t fwd_burst(const struct fg_forward_cfg *c, uint64_t rate)
{
	if (c->burst)
		return c->burst;
	uint64_t b = rate / 10;
	return b < 16384 ? 16384 : b;
}

int fg_nft_compile(const struct fg_nft_spec *spec, struct fg_strbuf *out, char *err, size_t errlen)
{
	const struct fg_fw_doc *fw = spec->fw;
	struct fg_strbuf chain[FG_FW_NCHAINS], extra;
	size_t *order = NULL;
	int rc = 0;

	if (!fg_nft_table_name_ok(spec->table)) {
		snprintf(err, errlen, "table name \"%.40s\" must be flowgate[a-z0-9_]*, at most 32",
			 spec->table);
		return -EINVAL;
	}
	for (size_t i = 0; i < spec->nfwds; i++) {
		const struct fg_forward_cfg *c = &spec->fwds[i];
		if (!kernel_fwd(c))
			continue;
		char path[32];
		snprintf(path, sizeof(path), "forwards[%zu]", i);
		if ((rc = fg_forward_cfg_check(c, path, err, errlen)))
			return rc;
	}
	order = fg_calloc(fw ? fw->npolicies + 1 : 1, sizeof(*order));
	if (!order)
		return -ENOMEM;
	size_t norder = policy_order(fw, order);
	for (int c = 0; c < FG_FW_NCHAINS; c++)
		fg_strbuf_init(&chain[c]);
	fg_strbuf_init(&extra);

	/* prerouting: policies first, so a policy can refuse a client before a
	 * kernel forward translates it; forward / postrouting: the forwards'
	 * own counting and masquerade first (a configured forward is an
	 * explicit allow, like a published port) */
	if (fw)
		policies_text(&chain[FG_FW_PREROUTING], FG_FW_PREROUTING, fw, order, norder);
	for (size_t i = 0; i < spec->nfwds; i++)
		if (kernel_fwd(&spec->fwds[i]))
			fwd_text(&spec->fwds[i], &chain[FG_FW_PREROUTING], &chain[FG_FW_FORWARD],
				 &chain[FG_FW_POSTROUTING], &extra);
	if (fw)
		for (int c = 0; c < FG_FW_NCHAINS; c++)
			if (c != FG_FW_PREROUTING)
				policies_text(&chain[c], (enum fg_fw_chain)c, fw, order, norder);

	fg_strbuf_puts(out, "# generated by flowgate: replaces this table as a whole, "
			    "touches no other\n");
	fg_nft_compile_delete(spec->table, out);
	fg_strbuf_printf(out, "table inet %s {\n", spec->table);
	bool any = false;
	for (size_t i = 0; fw && i < fw->nsets; i++) {
		const struct fg_fw_set *s = &fw->sets[i];
		fg_strbuf_printf(out, "%s\tset %s {\n\t\ttype %s\n\t\tflags interval\n",
				 any ? "\n" : "", s->name,
				 s->family == FG_FW_IP6 ? "ipv6_addr" : "ipv4_addr");
		if (s->elements[0])
			fg_strbuf_printf(out, "\t\telements = { %s }\n", s->elements);
		fg_strbuf_puts(out, "\t}\n");
		any = true;
	}
	char cname[FG_FW_NAME_MAX + FG_NAME_MAX + 32];
	for (size_t k = 0; k < norder; k++) {
		const struct fg_fw_policy *p = &fw->policies[order[k]];
		for (size_t i = 0; i < p->nrules; i++) {
			if (!p->rules[i].counter)
				continue;
			fg_nft_rule_counter(p->name, i, cname, sizeof(cname));
			fg_strbuf_printf(out, "%s\tcounter %s {\n\t}\n", any ? "\n" : "", cname);
			any = true;
		}
	}
	for (size_t i = 0; i < spec->nfwds; i++) {
		const struct fg_forward_cfg *c = &spec->fwds[i];
		if (!kernel_fwd(c))
			continue;
		for (int up = 1; up >= 0; up--) {
			uint64_t rate = up ? c->rate_up : c->rate_down;
			fg_nft_fwd_counter(c->name, up, cname, sizeof(cname));
			fg_strbuf_printf(out, "%s\tcounter %s {\n\t}\n", any ? "\n" : "", cname);
			any = true;
			if (rate)
				fg_strbuf_printf(out,
						 "\n\tlimit %s {\n\t\trate over %llu bytes/second "
						 "burst %llu bytes\n\t}\n",
						 cname, (unsigned long long)rate,
						 (unsigned long long)fwd_burst(c, rate));
		}
		fg_nft_fwd_conns_counter(c->name, cname, sizeof(cname));
		fg_strbuf_printf(out, "\n\tcounter %s {\n\t}\n", cname);
	}
	for (int c = 0; c < FG_FW_NCHAINS; c++) {
		if (!chain[c].len)
			continue;
		fg_strbuf_printf(out, "%s\tchain %s {\n\t\t%s\n", any ? "\n" : "",
				 fg_fw_chain_names[c], chain_decl[c]);
		fg_strbuf_append(out, chain[c].s, chain[c].len);
		fg_strbuf_puts(out, "\t}\n");
		any = true;
	}
	if (extra.len)
		fg_strbuf_append(out, extra.s, extra.len);
	fg_strbuf_puts(out, "}\n");

	for (int c = 0; c < FG_FW_NCHAINS; c++) {
		if (chain[c].oom)
			rc = -ENOMEM;
		fg_strbuf_deinit(&chain[c]);
	}
	if (extra.oom || out->oom)
		rc = -ENOMEM;
	fg_strbuf_deinit(&extra);
	fg_free(order);
	if (rc == -ENOMEM)
		snprintf(err, errlen, "out of memory");
	return rc;
}
