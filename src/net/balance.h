/* Target selection: pure over a snapshot of the targets' state. */
#ifndef FG_NET_BALANCE_H
#define FG_NET_BALANCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum fg_balance {
	FG_BAL_ROUND_ROBIN = 0,
	FG_BAL_LEAST_CONN,
	FG_BAL_IP_HASH,
	FG_BAL_FAILOVER,
};

struct fg_pick_candidate {
	bool eligible;	 /* up, or due for a retry */
	uint32_t active; /* open connections (least-conn) */
	uint32_t key;	 /* stable hash of the target's text (ip-hash) */
};

/* Returns the index of the chosen target, or -1 if none is eligible.
 * skip: a bitmask of indexes already tried for this connection (bit i
 * for i < 64). rr: a counter the caller increments per pick. */
int fg_balance_pick(enum fg_balance mode, const struct fg_pick_candidate *c, size_t n,
		    uint64_t skip, uint64_t rr, uint32_t client_hash);

/* "round-robin" ... -> mode; returns 0 or -EINVAL. */
int fg_balance_parse(const char *s, enum fg_balance *out);
const char *fg_balance_name(enum fg_balance mode);

#endif
