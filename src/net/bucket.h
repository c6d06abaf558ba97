/* Token bucket as GCRA: the whole state is one atomic word (the
 * theoretical arrival time), so worker threads share a forward's aggregate
 * limit without locks. Time is passed in (ns) so the logic is testable. */
#ifndef FG_NET_BUCKET_H
#define FG_NET_BUCKET_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct fg_bucket {
	_Atomic int64_t tat; /* ns: when the bucket would be full again */
	uint64_t rate;	     /* bytes per second; 0 = unlimited */
	uint64_t burst;	     /* bytes */
	int64_t burst_ns;    /* burst expressed as time at rate */
};

/* The default depth: a tenth of a second of rate, at least 16 KiB. */
uint64_t fg_bucket_default_burst(uint64_t rate);

/* Starts full: `burst` bytes may pass at once, then `rate` per second. */
void fg_bucket_init(struct fg_bucket *b, uint64_t rate, uint64_t burst, int64_t now);
static inline bool fg_bucket_limited(const struct fg_bucket *b)
{
	return b->rate != 0;
}
/* Takes up to `want` bytes; returns what was granted (0..want). */
size_t fg_bucket_take(struct fg_bucket *b, size_t want, int64_t now);
/* Gives back bytes granted but not used. */
void fg_bucket_refund(struct fg_bucket *b, size_t n);
/* How long until `n` bytes (capped at burst) can be taken; 0 = now. */
int64_t fg_bucket_wait_ns(struct fg_bucket *b, size_t n, int64_t now);

/* Charges n bytes unconditionally (may leave the bucket in debt): for
 * datagrams, which are already read when their size becomes known. */
void fg_bucket_charge(struct fg_bucket *b, size_t n, int64_t now);

#endif
