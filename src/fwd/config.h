/* The forwards section of the desired state: the model, its JSON parser and
 * validator. Pure apart from reading a file; no sockets are touched here
 * (binding is checked by the engine when it applies a set). */
#ifndef FG_FWD_CONFIG_H
#define FG_FWD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/addr.h"
#include "net/balance.h"
#include "net/proxy_proto.h"

#define FG_NAME_MAX    64
#define FG_MAX_TARGETS 64
#define FG_ERR_MAX     512

enum fg_proto { FG_PROTO_TCP = 1, FG_PROTO_UDP = 2, FG_PROTO_BOTH = 3 };

/* proxy: the userspace engine (fwd/engine.h); kernel: nftables DNAT +
 * masquerade compiled by kernel/nft_compile.h. */
enum fg_fwd_engine { FG_ENGINE_PROXY = 0, FG_ENGINE_KERNEL = 1 };

struct fg_health_cfg {
	bool enabled;
	int64_t interval_ns, timeout_ns;
	uint32_t rise, fall;
};

struct fg_forward_cfg {
	char name[FG_NAME_MAX + 1];
	char id[FG_NAME_MAX + 1];  /* optional server id, "" if none */
	struct fg_endpoint listen; /* is_ip always true */
	enum fg_proto proto;
	struct fg_endpoint *targets; /* owned array */
	size_t ntargets;
	enum fg_balance balance;
	uint64_t rate_up, rate_down; /* aggregate, bytes/s, 0 = unlimited */
	uint64_t rate_up_conn, rate_down_conn;
	uint64_t burst; /* 0 = default */
	uint32_t max_conns, max_conns_per_ip;
	enum fg_pp_version proxy_protocol;
	struct fg_health_cfg health;
	int64_t connect_timeout_ns, idle_timeout_ns, udp_idle_timeout_ns;
	bool enabled;
	enum fg_fwd_engine engine;
};

struct fg_forward_set {
	struct fg_forward_cfg *v; /* owned array */
	size_t n;
};

/* Fills defaults (everything but name/listen/targets). */
void fg_forward_cfg_defaults(struct fg_forward_cfg *c);
void fg_forward_cfg_deinit(struct fg_forward_cfg *c);
/* Deep copy; returns 0 or -ENOMEM. */
int fg_forward_cfg_copy(struct fg_forward_cfg *dst, const struct fg_forward_cfg *src);
/* Same runtime behaviour (every field equal). */
bool fg_forward_cfg_equal(const struct fg_forward_cfg *a, const struct fg_forward_cfg *b);
/* Checks one forward on its own (listen vs target ranges, limits, and for
 * engine kernel every field the kernel cannot do). path names it in
 * errors, e.g. "forwards[2]". */
int fg_forward_cfg_check(const struct fg_forward_cfg *c, const char *path, char *err,
			 size_t errlen);

void fg_forward_set_free(struct fg_forward_set *s);

/* Parses and validates a document {"forwards":[...]}. On error returns
 * -EINVAL with one line in err naming the JSON path and value, and *out is
 * left empty. */
int fg_config_parse(const char *text, size_t len, struct fg_forward_set *out, char *err,
		    size_t errlen);
int fg_config_load_file(const char *path, struct fg_forward_set *out, char *err, size_t errlen);

/* Parses a "forwards" array already decoded by jansson (the agent's
 * desired state). `json` is a json_t* (kept void here so this header
 * does not pull jansson into every includer). */
int fg_config_parse_forwards(const void *json, struct fg_forward_set *out, char *err,
			     size_t errlen);

/* Checks a whole set: unique names, no two forwards on the same
 * listen port+protocol. */
int fg_forward_set_check(const struct fg_forward_set *s, char *err, size_t errlen);

#endif
