#include "net/bucket.h"

#include "core/clock.h"
#include "core/util.h"

#define MIN_BURST (16 * 1024)

uint64_t fg_bucket_default_burst(uint64_t rate)
{
	return FG_MAX(rate / 10, (uint64_t)MIN_BURST);
}

/* ceil(bytes * 1e9 / rate) */
static int64_t cost_ns(const struct fg_bucket *b, uint64_t bytes)
{
	unsigned __int128 num = (unsigned __int128)bytes * FG_NS_PER_SEC + b->rate - 1;
	return (int64_t)(num / b->rate);
}

void fg_bucket_init(struct fg_bucket *b, uint64_t rate, uint64_t burst, int64_t now)
{
	b->rate = rate;
	b->burst = rate ? (burst ? burst : fg_bucket_default_burst(rate)) : 0;
	b->burst_ns = rate ? cost_ns(b, b->burst) : 0;
	atomic_store(&b->tat, now - b->burst_ns);
}

size_t fg_bucket_take(struct fg_bucket *b, size_t want, int64_t now)
{
	if (!b->rate)
		return want;
	int64_t old = atomic_load_explicit(&b->tat, memory_order_relaxed);
	for (;;) {
		int64_t base = FG_MAX(old, now - b->burst_ns);
		if (base >= now)
			return 0;
		unsigned __int128 avail = (unsigned __int128)(now - base) * b->rate / FG_NS_PER_SEC;
		if (avail == 0)
			return 0;
		size_t grant = avail < want ? (size_t)avail : want;
		int64_t next = base + cost_ns(b, grant);
		if (atomic_compare_exchange_weak_explicit(&b->tat, &old, next, memory_order_relaxed,
							  memory_order_relaxed))
			return grant;
	}
}

void fg_bucket_refund(struct fg_bucket *b, size_t n)
{
	if (!b->rate || !n)
		return;
	/* floor, so a refund never gives back more than was charged */
	int64_t back = (int64_t)((unsigned __int128)n * FG_NS_PER_SEC / b->rate);
	atomic_fetch_sub_explicit(&b->tat, back, memory_order_relaxed);
}

int64_t fg_bucket_wait_ns(struct fg_bucket *b, size_t n, int64_t now)
{
	if (!b->rate)
		return 0;
	n = FG_MIN(n, (size_t)b->burst);
	int64_t tat = atomic_load_explicit(&b->tat, memory_order_relaxed);
	int64_t base = FG_MAX(tat, now - b->burst_ns);
	int64_t ready = base + cost_ns(b, n);
	return ready > now ? ready - now : 0;
}

void fg_bucket_charge(struct fg_bucket *b, size_t n, int64_t now)
{
	if (!b->rate)
		return;
	int64_t old = atomic_load_explicit(&b->tat, memory_order_relaxed);
	for (;;) {
		int64_t next = FG_MAX(old, now - b->burst_ns) + cost_ns(b, n);
		if (atomic_compare_exchange_weak_explicit(&b->tat, &old, next, memory_order_relaxed,
							  memory_order_relaxed))
			return;
	}
}
