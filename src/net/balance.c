#include "net/balance.h"

#include <errno.h>
#include <string.h>

static const char *const names[] = {"round-robin", "least-conn", "ip-hash", "failover"};

int fg_balance_parse(const char *s, enum fg_balance *out)
{
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcmp(s, names[i]) == 0) {
			*out = (enum fg_balance)i;
			return 0;
		}
	}
	return -EINVAL;
}

const char *fg_balance_name(enum fg_balance mode)
{
	return (unsigned)mode < sizeof(names) / sizeof(names[0]) ? names[mode] : "?";
}

static bool usable(const struct fg_pick_candidate *c, size_t i, uint64_t skip)
{
	return c[i].eligible && !(i < 64 && (skip >> i) & 1);
}

static uint32_t mix(uint32_t a, uint32_t b)
{
	uint32_t h = a ^ (b * 0x9e3779b9u);
	h ^= h >> 16;
	h *= 0x85ebca6bu;
	h ^= h >> 13;
	h *= 0xc2b2ae35u;
	h ^= h >> 16;
	return h;
}

int fg_balance_pick(enum fg_balance mode, const struct fg_pick_candidate *c, size_t n,
		    uint64_t skip, uint64_t rr, uint32_t client_hash)
{
	if (n == 0)
		return -1;
	int best = -1;
	switch (mode) {
	case FG_BAL_FAILOVER:
		for (size_t i = 0; i < n; i++)
			if (usable(c, i, skip))
				return (int)i;
		return -1;
	case FG_BAL_ROUND_ROBIN: {
		/* the (rr mod m)-th of the m usable targets: a down target's turns
		 * are spread over all the others, not handed to its successor */
		size_t m = 0;
		for (size_t i = 0; i < n; i++)
			m += usable(c, i, skip);
		if (m == 0)
			return -1;
		size_t k = (size_t)(rr % m);
		for (size_t i = 0; i < n; i++)
			if (usable(c, i, skip) && k-- == 0)
				return (int)i;
		return -1;
	}
	case FG_BAL_LEAST_CONN:
		/* start at the rr offset so ties rotate instead of piling on 0 */
		for (size_t k = 0; k < n; k++) {
			size_t i = (size_t)((rr + k) % n);
			if (usable(c, i, skip) && (best < 0 || c[i].active < c[best].active))
				best = (int)i;
		}
		return best;
	case FG_BAL_IP_HASH: {
		/* rendezvous hashing: a dead target moves only its own clients */
		uint32_t best_w = 0;
		for (size_t i = 0; i < n; i++) {
			if (!usable(c, i, skip))
				continue;
			uint32_t w = mix(client_hash, c[i].key);
			if (best < 0 || w > best_w) {
				best = (int)i;
				best_w = w;
			}
		}
		return best;
	}
	}
	return -1;
}
