/* Firewall policies: the model, its JSON parser and validator. Pure.
 *
 * A document is {"sets": [...], "policies": [...]}: the firewall section of
 * a node's desired state (and the file `flowgate firewall -f` reads). The
 * parser renders every matched value (addresses, ports, interface names,
 * comments) into canonical nft text once, after checking it cannot carry
 * nft syntax of its own; the compiler (nft_compile.h) only assembles.
 * Raw blocks are the one exception: they are checked for what could leave
 * our chain (braces, include/define), and nft's dry run checks the rest. */
#ifndef FG_KERNEL_POLICY_H
#define FG_KERNEL_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FG_FW_NAME_MAX	  48
#define FG_FW_SETNAME_MAX 32
#define FG_FW_IFNAME_MAX  15
#define FG_FW_COMMENT_MAX 128
#define FG_FW_RAW_MAX	  8192
#define FG_FW_MAX_RULES	  4096
#define FG_FW_MAX_ITEMS	  256 /* addresses or ports in one rule field */

enum fg_fw_chain {
	FG_FW_INPUT = 0,
	FG_FW_FORWARD,
	FG_FW_OUTPUT,
	FG_FW_PREROUTING,
	FG_FW_POSTROUTING,
	FG_FW_NCHAINS
};

/* inet = both; ip / ip6 restrict the rule (and decide address syntax) */
enum fg_fw_family { FG_FW_INET = 0, FG_FW_IP, FG_FW_IP6 };

enum fg_fw_proto {
	FG_FW_PROTO_ANY = 0,
	FG_FW_PROTO_TCP,
	FG_FW_PROTO_UDP,
	FG_FW_PROTO_TCPUDP, /* "both" */
	FG_FW_PROTO_ICMP,
	FG_FW_PROTO_ICMPV6,
};

enum fg_fw_action {
	FG_FW_ACCEPT = 0,
	FG_FW_DROP,
	FG_FW_REJECT,
	FG_FW_DNAT,
	FG_FW_SNAT,
	FG_FW_MASQUERADE,
	FG_FW_MARK,
	FG_FW_LIMIT,
};

/* ct state bits */
enum {
	FG_FW_CT_NEW = 1 << 0,
	FG_FW_CT_ESTABLISHED = 1 << 1,
	FG_FW_CT_RELATED = 1 << 2,
	FG_FW_CT_INVALID = 1 << 3,
	FG_FW_CT_UNTRACKED = 1 << 4,
};

struct fg_fw_rule {
	enum fg_fw_chain chain;
	enum fg_fw_family family; /* after inference from addresses */
	enum fg_fw_proto proto;
	/* canonical nft text, owned, NULL when absent: "10.0.0.0/8",
	 * "{ 10.0.0.0/8, 192.0.2.1 }", "@admins"; "22", "{ 22, 8000-8100 }" */
	char *saddr, *daddr, *sport, *dport;
	char iif[FG_FW_IFNAME_MAX + 1], oif[FG_FW_IFNAME_MAX + 1]; /* "" = any */
	unsigned ct_state;					   /* FG_FW_CT_* bits */
	enum fg_fw_action action;
	char *to;	  /* dnat/snat: "10.0.0.2:80", "[fd00::2]:80", "10.0.0.2"; owned */
	uint32_t mark;	  /* mark */
	uint64_t rate;	  /* limit: per `unit` */
	uint64_t burst;	  /* limit: 0 = nft default */
	bool rate_bytes;  /* limit: rate is bytes (else packets) */
	const char *unit; /* limit: "second", "minute", "hour", "day" (static) */
	bool counter;	  /* named counter pol_<policy>_<index> */
	char comment[FG_FW_COMMENT_MAX + 1];
	char *raw; /* raw block (rule lines for `chain`), owned; NULL = structured.
		    * Only chain and comment go with it. */
};

struct fg_fw_policy {
	char name[FG_FW_NAME_MAX + 1];
	char id[65];  /* server id, "" if none */
	int priority; /* lower runs first; equal keep document order */
	bool enabled;
	struct fg_fw_rule *rules; /* owned array */
	size_t nrules;
};

/* A named address set: `set <name> { type ipv4_addr; flags interval; }`.
 * Rules refer to it as "@name". */
struct fg_fw_set {
	char name[FG_FW_SETNAME_MAX + 1];
	enum fg_fw_family family; /* FG_FW_IP or FG_FW_IP6 */
	char *elements;		  /* "10.0.0.0/8, 192.0.2.1" or "" ; owned */
};

struct fg_fw_doc {
	struct fg_fw_set *sets; /* owned */
	size_t nsets;
	struct fg_fw_policy *policies; /* owned */
	size_t npolicies;
};

extern const char *const fg_fw_chain_names[FG_FW_NCHAINS];

/* Parses and validates {"sets": [...], "policies": [...]} (both optional).
 * On error returns -EINVAL with one line in err naming the JSON path and the
 * value (e.g. `policies[0].rules[3].dport: "70000" is not a port or range`),
 * and *out is left empty. -ENOMEM is reported the same way. */
int fg_fw_doc_parse(const char *text, size_t len, struct fg_fw_doc *out, char *err, size_t errlen);
/* The same for a document already decoded by jansson (json_t *). */
int fg_fw_doc_parse_json(const void *json, struct fg_fw_doc *out, char *err, size_t errlen);
/* The "firewall" section of a node's desired state: a document as above
 * plus "confirm_timeout" (seconds, optional: *confirm_s gets 0 when
 * absent). NULL section = no policies (an empty document). */
int fg_fw_section_parse(const void *section, struct fg_fw_doc *out, int64_t *confirm_s, char *err,
			size_t errlen);
int fg_fw_doc_load_file(const char *path, struct fg_fw_doc *out, char *err, size_t errlen);
void fg_fw_doc_free(struct fg_fw_doc *d);

/* Checks that a raw nft block can only add rules to the chain it is placed
 * in: balanced braces that never close the enclosing chain, no include /
 * define / redefine / undefine, no $variables, no NUL. Returns NULL or a
 * reason. Everything else is left to nft's dry run. */
const char *fg_fw_raw_check(const char *raw);

#endif
