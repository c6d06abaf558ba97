/* The rule compiler: firewall policies + kernel forwards -> the complete nft
 * script for one table of ours. Pure (no kernel, no I/O); see
 * doc/firewall.md for the shape of the output.
 *
 * The script always starts with
 *     table inet <T> {}
 *     delete table inet <T>
 *     table inet <T> { ... }
 * so that one nft transaction replaces exactly our table (creating it if it
 * was missing) and touches nothing else. */
#ifndef FG_KERNEL_NFT_COMPILE_H
#define FG_KERNEL_NFT_COMPILE_H

#include <stdbool.h>
#include <stddef.h>

#include "core/strbuf.h"
#include "fwd/config.h"
#include "kernel/policy.h"

#define FG_NFT_TABLE_MAX 32

struct fg_nft_spec {
	const char *table;	    /* borrowed; inet family table name, e.g. "flowgate" */
	const struct fg_fw_doc *fw; /* borrowed; NULL = no policies */
	/* borrowed; only enabled forwards with engine kernel are compiled,
	 * the others are skipped (the proxy engine runs them) */
	const struct fg_forward_cfg *fwds;
	size_t nfwds;
};

/* Appends the script to out. Returns 0, -EINVAL (err says why: a bad table
 * name, a forward the compiler cannot express) or -ENOMEM. */
int fg_nft_compile(const struct fg_nft_spec *spec, struct fg_strbuf *out, char *err, size_t errlen);

/* Appends the script that removes table inet <table> whether or not it
 * exists (and nothing else). */
void fg_nft_compile_delete(const char *table, struct fg_strbuf *out);

/* true if name is a table name we accept: [a-z0-9_], starting "flowgate". */
bool fg_nft_table_name_ok(const char *name);

/* The named counters of a kernel forward: "fwd_<name>_up" / "_down". */
void fg_nft_fwd_counter(const char *fwd_name, bool up, char *buf, size_t len);
/* The connection counter of a kernel forward: "fwd_<name>_conns" (packets
 * = connections: it sits on the NAT rule, which sees first packets only). */
void fg_nft_fwd_conns_counter(const char *fwd_name, char *buf, size_t len);
/* The named counter of a policy rule with counter: true: "pol_<policy>_<index>". */
void fg_nft_rule_counter(const char *policy, size_t index, char *buf, size_t len);

/* Which IP forwarding sysctls the compiled forwards need: bit 0 IPv4,
 * bit 1 IPv6. */
unsigned fg_nft_forwarding_needed(const struct fg_nft_spec *spec);

#endif
