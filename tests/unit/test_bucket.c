/* The GCRA token bucket (net/bucket) with injected time: the amount moved in
 * any interval T is at most burst + rate * T, and a greedy consumer gets it. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "core/clock.h"
#include "net/bucket.h"

#define T0 ((int64_t)1000 * FG_NS_PER_SEC) /* arbitrary, far from 0 */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(uint64_t n) /* xorshift64*, deterministic: uniform in [0, n) */
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (rng_state * 2685821657736338717ull) % n;
}

static void test_bucket_default_burst_is_a_tenth_of_rate_at_least_16k(void **s)
{
	assert_int_equal(fg_bucket_default_burst(1000), 16384);
	assert_int_equal(fg_bucket_default_burst(163840), 16384);
	assert_int_equal(fg_bucket_default_burst(10000000), 1000000);
	struct fg_bucket b;
	fg_bucket_init(&b, 10000000, 0, T0);
	assert_int_equal(b.burst, 1000000);
	assert_true(fg_bucket_limited(&b));
}

static void test_bucket_starts_full_at_burst(void **s)
{
	struct fg_bucket b;
	fg_bucket_init(&b, 1000, 5000, T0);
	assert_int_equal(fg_bucket_take(&b, 100000, T0), 5000);
	assert_int_equal(fg_bucket_take(&b, 1, T0), 0);
	assert_int_equal(fg_bucket_take(&b, 1, T0 + FG_NS_PER_MS), 1);
	/* the bucket never holds more than burst, however long it idles */
	fg_bucket_init(&b, 1000, 5000, T0);
	assert_int_equal(fg_bucket_take(&b, 100000, T0 + 3600 * FG_NS_PER_SEC), 5000);
}

static void test_bucket_take_grants_part_of_a_large_request(void **s)
{
	struct fg_bucket b;
	fg_bucket_init(&b, 1000, 1000, T0);
	assert_int_equal(fg_bucket_take(&b, 600, T0), 600);
	assert_int_equal(fg_bucket_take(&b, 600, T0), 400);
	assert_int_equal(fg_bucket_take(&b, 600, T0 + FG_NS_PER_SEC / 4), 250);
}

/* A greedy consumer over 10 simulated seconds, random chunk sizes and random
 * gaps: at every instant t the total is within [rate*t, burst + rate*t], and
 * no window [t1, t2] ever carries more than burst + rate*(t2 - t1). */
static void greedy_run(uint64_t rate, uint64_t burst)
{
	enum { MAXS = 20000 };
	static int64_t when[MAXS];
	static uint64_t cum[MAXS];
	size_t ns = 0;
	struct fg_bucket b;
	fg_bucket_init(&b, rate, burst, T0);
	uint64_t total = 0;
	int64_t t = T0, end = T0 + 10 * FG_NS_PER_SEC;
	while (t <= end) {
		for (;;) {
			size_t want = 1 + (size_t)rnd(3 * burst / 2);
			size_t got = fg_bucket_take(&b, want, t);
			assert_true(got <= want);
			total += got;
			if (got < want)
				break;
		}
		double el = (double)(t - T0) / FG_NS_PER_SEC;
		if ((double)total > (double)burst + (double)rate * el + 1)
			fail_msg("rate %lu: %lu bytes after %.6f s, limit %.0f",
				 (unsigned long)rate, (unsigned long)total, el,
				 (double)burst + (double)rate * el);
		if ((double)total + 1 < (double)rate * el)
			fail_msg("rate %lu: only %lu bytes after %.6f s", (unsigned long)rate,
				 (unsigned long)total, el);
		if (ns < MAXS) {
			when[ns] = t;
			cum[ns++] = total;
		}
		t += 1 + (int64_t)rnd(3 * FG_NS_PER_MS);
	}
	double T = 10.0;
	assert_true((double)total >= (double)rate * T);
	assert_true((double)total <= (double)burst + (double)rate * T + 1);
	/* every window: bytes taken strictly after t1 up to t2 */
	for (size_t i = 0; i < ns; i += 7)
		for (size_t j = i + 1; j < ns; j++) {
			double w = (double)(when[j] - when[i]) / FG_NS_PER_SEC;
			if ((double)(cum[j] - cum[i]) > (double)burst + (double)rate * w + 1)
				fail_msg("window %.6f s carried %lu bytes", w,
					 (unsigned long)(cum[j] - cum[i]));
		}
}

static void test_bucket_greedy_consumer_gets_rate_and_never_more_than_burst_plus_rate(void **s)
{
	greedy_run(1000000, 100000);
	greedy_run(1250000, 16384);
	greedy_run(12345, 16384);	      /* rate that does not divide 1e9 */
	greedy_run(3000000000ull, 300000000); /* 24 Gbit/s */
}

static void test_bucket_refund_returns_tokens(void **s)
{
	struct fg_bucket b;
	fg_bucket_init(&b, 1000, 1000, T0);
	assert_int_equal(fg_bucket_take(&b, 1000, T0), 1000);
	assert_int_equal(fg_bucket_take(&b, 1, T0), 0);
	fg_bucket_refund(&b, 400);
	assert_int_equal(fg_bucket_take(&b, 1000, T0), 400);
	assert_int_equal(fg_bucket_take(&b, 1, T0), 0);
	/* a refund never lets the bucket exceed what was charged, even with odd rates */
	fg_bucket_init(&b, 7, 16384, T0);
	size_t got = fg_bucket_take(&b, 16384, T0);
	assert_int_equal(got, 16384);
	fg_bucket_refund(&b, 3);
	assert_true(fg_bucket_take(&b, 100, T0) <= 3);
	fg_bucket_refund(&b, 0); /* no-op */
}

static void test_bucket_wait_ns_is_exact(void **s)
{
	struct fg_bucket b;
	fg_bucket_init(&b, 1000, 1000, T0);
	assert_int_equal(fg_bucket_wait_ns(&b, 1000, T0), 0); /* full */
	assert_int_equal(fg_bucket_take(&b, 1000, T0), 1000);
	assert_int_equal(fg_bucket_wait_ns(&b, 500, T0), FG_NS_PER_SEC / 2);
	assert_int_equal(fg_bucket_wait_ns(&b, 500, T0 + FG_NS_PER_SEC / 4), FG_NS_PER_SEC / 4);
	/* capped at burst: asking for more than fits waits only for a full bucket */
	assert_int_equal(fg_bucket_wait_ns(&b, 1000000, T0), FG_NS_PER_SEC);

	/* for any rate, after the wait exactly n can be taken, one ns earlier not */
	for (int i = 0; i < 2000; i++) {
		uint64_t rate = 1 + rnd(50000000);
		uint64_t burst = 1 + rnd(1 << 20);
		size_t n = 1 + (size_t)rnd(burst);
		struct fg_bucket x, y;
		fg_bucket_init(&x, rate, burst, T0);
		fg_bucket_init(&y, rate, burst, T0);
		size_t drain = (size_t)rnd(burst + 1);
		assert_int_equal(fg_bucket_take(&x, drain, T0), drain);
		assert_int_equal(fg_bucket_take(&y, drain, T0), drain);
		int64_t w = fg_bucket_wait_ns(&x, n, T0);
		if (w == 0) {
			assert_int_equal(fg_bucket_take(&x, n, T0), n);
			continue;
		}
		assert_int_equal(fg_bucket_take(&y, n, T0 + w), n);
		assert_true(fg_bucket_take(&x, n, T0 + w - 1) < n);
	}
}

static void test_bucket_two_interleaved_consumers_never_exceed_the_limit_together(void **s)
{
	const uint64_t rate = 2000000, burst = 50000;
	struct fg_bucket b;
	fg_bucket_init(&b, rate, burst, T0);
	uint64_t got[2] = {0, 0};
	int64_t t = T0, end = T0 + 10 * FG_NS_PER_SEC;
	while (t <= end) {
		int who = (int)rnd(2);
		size_t want = 1 + (size_t)rnd(40000);
		size_t g = fg_bucket_take(&b, want, t);
		/* sometimes the write was short: the unused part goes back */
		size_t used = rnd(3) == 0 ? (size_t)rnd(g + 1) : g;
		fg_bucket_refund(&b, g - used);
		got[who] += used;
		double el = (double)(t - T0) / FG_NS_PER_SEC;
		assert_true((double)(got[0] + got[1]) <= (double)burst + (double)rate * el + 1);
		t += (int64_t)rnd(FG_NS_PER_MS);
	}
	/* both got a share, and together they used the whole rate */
	assert_true(got[0] > 0 && got[1] > 0);
	assert_true((double)(got[0] + got[1]) >= (double)rate * 10.0 * 0.99);
}

struct thr {
	struct fg_bucket *b;
	uint64_t got;
	int64_t stop;
};

static void *thr_main(void *arg)
{
	struct thr *t = arg;
	for (;;) {
		int64_t now = fg_now_ns();
		if (now >= t->stop)
			break;
		t->got += fg_bucket_take(t->b, 1500, now);
	}
	return NULL;
}

static void test_bucket_threads_sharing_one_bucket_stay_within_the_limit(void **s)
{
	const uint64_t rate = 20000000, burst = 100000;
	struct fg_bucket b;
	int64_t start = fg_now_ns();
	fg_bucket_init(&b, rate, burst, start);
	struct thr th[4];
	pthread_t tid[4];
	for (int i = 0; i < 4; i++) {
		th[i] = (struct thr){&b, 0, start + 200 * FG_NS_PER_MS};
		assert_int_equal(pthread_create(&tid[i], NULL, thr_main, &th[i]), 0);
	}
	uint64_t total = 0;
	for (int i = 0; i < 4; i++) {
		pthread_join(tid[i], NULL);
		total += th[i].got;
	}
	double el = (double)(fg_now_ns() - start) / FG_NS_PER_SEC;
	assert_true((double)total <= (double)burst + (double)rate * el);
	assert_true(total >= burst);
}

static void test_bucket_charge_puts_bucket_in_debt_and_wait_reflects_it(void **s)
{
	struct fg_bucket b;
	fg_bucket_init(&b, 1000, 1000, T0);
	fg_bucket_charge(&b, 5000, T0); /* 1000 in the bucket, 4000 owed */
	assert_int_equal(fg_bucket_take(&b, 1, T0), 0);
	assert_int_equal(fg_bucket_wait_ns(&b, 1, T0), 4 * FG_NS_PER_SEC + FG_NS_PER_MS);
	assert_int_equal(fg_bucket_take(&b, 1, T0 + 4 * FG_NS_PER_SEC), 0);
	assert_int_equal(fg_bucket_take(&b, 1, T0 + 4 * FG_NS_PER_SEC + FG_NS_PER_MS), 1);
	/* debt is paid back in full before anything passes again */
	fg_bucket_init(&b, 1000, 1000, T0);
	fg_bucket_charge(&b, 3000, T0);
	fg_bucket_charge(&b, 1000, T0 + FG_NS_PER_SEC);
	assert_int_equal(fg_bucket_wait_ns(&b, 1000, T0 + FG_NS_PER_SEC), 3 * FG_NS_PER_SEC);
}

static void test_bucket_rate_0_is_unlimited(void **s)
{
	struct fg_bucket b;
	fg_bucket_init(&b, 0, 5000, T0);
	assert_false(fg_bucket_limited(&b));
	assert_int_equal(b.burst, 0);
	assert_int_equal(fg_bucket_take(&b, (size_t)1 << 40, T0), (size_t)1 << 40);
	fg_bucket_charge(&b, (size_t)1 << 40, T0);
	fg_bucket_refund(&b, 1000);
	assert_int_equal(fg_bucket_wait_ns(&b, (size_t)1 << 40, T0), 0);
	assert_int_equal(fg_bucket_take(&b, 7, T0), 7);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_bucket_default_burst_is_a_tenth_of_rate_at_least_16k),
	    cmocka_unit_test(test_bucket_starts_full_at_burst),
	    cmocka_unit_test(test_bucket_take_grants_part_of_a_large_request),
	    cmocka_unit_test(
		test_bucket_greedy_consumer_gets_rate_and_never_more_than_burst_plus_rate),
	    cmocka_unit_test(test_bucket_refund_returns_tokens),
	    cmocka_unit_test(test_bucket_wait_ns_is_exact),
	    cmocka_unit_test(test_bucket_two_interleaved_consumers_never_exceed_the_limit_together),
	    cmocka_unit_test(test_bucket_threads_sharing_one_bucket_stay_within_the_limit),
	    cmocka_unit_test(test_bucket_charge_puts_bucket_in_debt_and_wait_reflects_it),
	    cmocka_unit_test(test_bucket_rate_0_is_unlimited),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
