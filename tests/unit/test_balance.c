/* Target selection (net/balance). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "net/balance.h"

static uint32_t hash32(uint32_t x) /* a stand-in for fg_addr_ip_hash of a client */
{
	x ^= x >> 16;
	x *= 0x7feb352du;
	x ^= x >> 15;
	x *= 0x846ca68bu;
	x ^= x >> 16;
	return x;
}

static void all_up(struct fg_pick_candidate *c, size_t n)
{
	for (size_t i = 0; i < n; i++)
		c[i] = (struct fg_pick_candidate){true, 0, hash32((uint32_t)i + 1000)};
}

static void test_round_robin_cycles_evenly(void **s)
{
	struct fg_pick_candidate c[4];
	all_up(c, 4);
	unsigned count[4] = {0};
	for (uint64_t rr = 0; rr < 400; rr++) {
		int i = fg_balance_pick(FG_BAL_ROUND_ROBIN, c, 4, 0, rr, 0);
		assert_int_equal(i, (int)(rr % 4));
		count[i]++;
	}
	for (int i = 0; i < 4; i++)
		assert_int_equal(count[i], 100);
}

static void test_round_robin_skips_ineligible_and_stays_even(void **s)
{
	struct fg_pick_candidate c[4];
	all_up(c, 4);
	c[1].eligible = false;
	unsigned count[4] = {0};
	for (uint64_t rr = 0; rr < 300; rr++)
		count[fg_balance_pick(FG_BAL_ROUND_ROBIN, c, 4, 0, rr, 0)]++;
	assert_int_equal(count[1], 0);
	/* the dead target's share is spread, not handed to its neighbour */
	assert_int_equal(count[0], 100);
	assert_int_equal(count[2], 100);
	assert_int_equal(count[3], 100);
	/* consecutive picks never repeat while two or more are up */
	for (uint64_t rr = 0; rr < 50; rr++)
		assert_int_not_equal(fg_balance_pick(FG_BAL_ROUND_ROBIN, c, 4, 0, rr, 0),
				     fg_balance_pick(FG_BAL_ROUND_ROBIN, c, 4, 0, rr + 1, 0));
}

static void test_round_robin_huge_counter_does_not_break(void **s)
{
	struct fg_pick_candidate c[3];
	all_up(c, 3);
	int i = fg_balance_pick(FG_BAL_ROUND_ROBIN, c, 3, 0, UINT64_MAX, 0);
	assert_true(i >= 0 && i < 3);
}

static void test_least_conn_picks_the_minimum(void **s)
{
	struct fg_pick_candidate c[4];
	all_up(c, 4);
	c[0].active = 5;
	c[1].active = 3;
	c[2].active = 1;
	c[3].active = 4;
	for (uint64_t rr = 0; rr < 8; rr++)
		assert_int_equal(fg_balance_pick(FG_BAL_LEAST_CONN, c, 4, 0, rr, 0), 2);
	c[2].eligible = false;
	assert_int_equal(fg_balance_pick(FG_BAL_LEAST_CONN, c, 4, 0, 0, 0), 1);
	assert_int_equal(fg_balance_pick(FG_BAL_LEAST_CONN, c, 4, 1u << 1, 0, 0), 3);
}

static void test_least_conn_rotates_ties(void **s)
{
	struct fg_pick_candidate c[3];
	all_up(c, 3);
	unsigned count[3] = {0};
	for (uint64_t rr = 0; rr < 30; rr++)
		count[fg_balance_pick(FG_BAL_LEAST_CONN, c, 3, 0, rr, 0)]++;
	assert_int_equal(count[0], 10);
	assert_int_equal(count[1], 10);
	assert_int_equal(count[2], 10);
}

static void test_ip_hash_is_stable_for_a_client(void **s)
{
	struct fg_pick_candidate c[5];
	all_up(c, 5);
	unsigned count[5] = {0};
	for (uint32_t k = 0; k < 1000; k++) {
		uint32_t h = hash32(k);
		int first = fg_balance_pick(FG_BAL_IP_HASH, c, 5, 0, 0, h);
		assert_true(first >= 0 && first < 5);
		/* the rr counter does not matter, only the client */
		for (uint64_t rr = 1; rr < 4; rr++)
			assert_int_equal(fg_balance_pick(FG_BAL_IP_HASH, c, 5, 0, rr, h), first);
		count[first]++;
	}
	for (int i = 0; i < 5; i++) /* roughly 200 each */
		assert_true(count[i] > 120 && count[i] < 280);
}

static void test_ip_hash_removing_a_target_moves_only_its_clients(void **s)
{
	enum { N = 6, CLIENTS = 1000 };
	struct fg_pick_candidate c[N];
	for (int k = 0; k < N; k++) {
		all_up(c, N);
		int before[CLIENTS];
		for (uint32_t j = 0; j < CLIENTS; j++)
			before[j] = fg_balance_pick(FG_BAL_IP_HASH, c, N, 0, 0, hash32(j));
		c[k].eligible = false;
		unsigned moved = 0;
		for (uint32_t j = 0; j < CLIENTS; j++) {
			int after = fg_balance_pick(FG_BAL_IP_HASH, c, N, 0, 0, hash32(j));
			assert_int_not_equal(after, k);
			if (before[j] != k)
				assert_int_equal(after, before[j]);
			else
				moved++;
		}
		assert_true(moved > 0);
		/* the same holds when k is excluded through the skip mask */
		all_up(c, N);
		for (uint32_t j = 0; j < CLIENTS; j++)
			if (before[j] != k)
				assert_int_equal(
				    fg_balance_pick(FG_BAL_IP_HASH, c, N, 1ull << k, 0, hash32(j)),
				    before[j]);
		/* and bringing k back restores every client */
		for (uint32_t j = 0; j < CLIENTS; j++)
			assert_int_equal(fg_balance_pick(FG_BAL_IP_HASH, c, N, 0, 0, hash32(j)),
					 before[j]);
	}
}

static void test_ip_hash_does_not_depend_on_target_order(void **s)
{
	struct fg_pick_candidate a[3], b[3];
	all_up(a, 3);
	b[0] = a[2];
	b[1] = a[0];
	b[2] = a[1];
	const int map[3] = {1, 2, 0}; /* a index -> b index */
	for (uint32_t j = 0; j < 300; j++) {
		int ia = fg_balance_pick(FG_BAL_IP_HASH, a, 3, 0, 0, hash32(j));
		int ib = fg_balance_pick(FG_BAL_IP_HASH, b, 3, 0, 0, hash32(j));
		assert_int_equal(map[ia], ib);
	}
}

static void test_failover_picks_first_eligible(void **s)
{
	struct fg_pick_candidate c[3];
	all_up(c, 3);
	for (uint64_t rr = 0; rr < 5; rr++)
		assert_int_equal(
		    fg_balance_pick(FG_BAL_FAILOVER, c, 3, 0, rr, hash32((uint32_t)rr)), 0);
	c[0].eligible = false;
	assert_int_equal(fg_balance_pick(FG_BAL_FAILOVER, c, 3, 0, 0, 0), 1);
	c[1].eligible = false;
	assert_int_equal(fg_balance_pick(FG_BAL_FAILOVER, c, 3, 0, 0, 0), 2);
	c[0].eligible = true;
	assert_int_equal(fg_balance_pick(FG_BAL_FAILOVER, c, 3, 0, 0, 0), 0);
}

static void test_skip_mask_is_honoured_by_every_mode(void **s)
{
	struct fg_pick_candidate c[4];
	all_up(c, 4);
	const enum fg_balance modes[] = {FG_BAL_ROUND_ROBIN, FG_BAL_LEAST_CONN, FG_BAL_IP_HASH,
					 FG_BAL_FAILOVER};
	for (size_t m = 0; m < 4; m++) {
		for (uint64_t rr = 0; rr < 64; rr++) {
			uint64_t skip = rr & 0xf;
			int i = fg_balance_pick(modes[m], c, 4, skip, rr, hash32((uint32_t)rr));
			if (skip == 0xf) {
				assert_int_equal(i, -1);
				continue;
			}
			assert_true(i >= 0 && i < 4);
			assert_false((skip >> i) & 1);
		}
	}
	/* failover skips the first when it was already tried */
	assert_int_equal(fg_balance_pick(FG_BAL_FAILOVER, c, 4, 1, 0, 0), 1);
}

static void test_none_eligible_returns_minus_1(void **s)
{
	struct fg_pick_candidate c[3];
	all_up(c, 3);
	for (int i = 0; i < 3; i++)
		c[i].eligible = false;
	const enum fg_balance modes[] = {FG_BAL_ROUND_ROBIN, FG_BAL_LEAST_CONN, FG_BAL_IP_HASH,
					 FG_BAL_FAILOVER};
	for (size_t m = 0; m < 4; m++) {
		assert_int_equal(fg_balance_pick(modes[m], c, 3, 0, 7, 99), -1);
		assert_int_equal(fg_balance_pick(modes[m], c, 0, 0, 7, 99), -1);
	}
	assert_int_equal(fg_balance_pick((enum fg_balance)42, c, 3, 0, 0, 0), -1);
}

static void test_balance_names_parse_and_print(void **s)
{
	const char *names[] = {"round-robin", "least-conn", "ip-hash", "failover"};
	for (int i = 0; i < 4; i++) {
		enum fg_balance b;
		assert_int_equal(fg_balance_parse(names[i], &b), 0);
		assert_int_equal(b, i);
		assert_string_equal(fg_balance_name(b), names[i]);
	}
	enum fg_balance b;
	assert_int_equal(fg_balance_parse("random", &b), -EINVAL);
	assert_int_equal(fg_balance_parse("Round-Robin", &b), -EINVAL);
	assert_int_equal(fg_balance_parse("", &b), -EINVAL);
	assert_string_equal(fg_balance_name((enum fg_balance)9), "?");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_round_robin_cycles_evenly),
	    cmocka_unit_test(test_round_robin_skips_ineligible_and_stays_even),
	    cmocka_unit_test(test_round_robin_huge_counter_does_not_break),
	    cmocka_unit_test(test_least_conn_picks_the_minimum),
	    cmocka_unit_test(test_least_conn_rotates_ties),
	    cmocka_unit_test(test_ip_hash_is_stable_for_a_client),
	    cmocka_unit_test(test_ip_hash_removing_a_target_moves_only_its_clients),
	    cmocka_unit_test(test_ip_hash_does_not_depend_on_target_order),
	    cmocka_unit_test(test_failover_picks_first_eligible),
	    cmocka_unit_test(test_skip_mask_is_honoured_by_every_mode),
	    cmocka_unit_test(test_none_eligible_returns_minus_1),
	    cmocka_unit_test(test_balance_names_parse_and_print),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
