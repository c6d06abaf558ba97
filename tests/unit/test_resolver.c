/* The shared name resolver (net/resolver): the pure parts (answer to
 * address list, TTL clamp, change detection) and a slot's life on a real
 * loop (a hosts-file name, freeing from the callback, freeing in any order
 * with its resolver). */
#include <ares.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "core/clock.h"
#include "core/loop.h"
#include "net/resolver.h"

static struct sockaddr_storage v4(const char *ip, uint16_t port)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	sin->sin_family = AF_INET;
	sin->sin_port = htons(port);
	assert_int_equal(inet_pton(AF_INET, ip, &sin->sin_addr), 1);
	return ss;
}

static struct sockaddr_storage v6(const char *ip)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
	sin6->sin6_family = AF_INET6;
	assert_int_equal(inet_pton(AF_INET6, ip, &sin6->sin6_addr), 1);
	return ss;
}

static void node(struct ares_addrinfo_node *nd, struct sockaddr_storage *sa, int ttl,
		 struct ares_addrinfo_node *next)
{
	memset(nd, 0, sizeof(*nd));
	nd->ai_family = sa->ss_family;
	nd->ai_addr = (struct sockaddr *)sa;
	nd->ai_addrlen =
	    sa->ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
	nd->ai_ttl = ttl;
	nd->ai_next = next;
}

static void test_collect_puts_ipv4_first_and_takes_the_lowest_ttl(void **s)
{
	(void)s;
	struct sockaddr_storage a6 = v6("fd00::1"), a1 = v4("10.0.0.1", 0), a2 = v4("10.0.0.2", 0);
	struct ares_addrinfo_node n3, n2, n1;
	node(&n3, &a2, 300, NULL);
	node(&n2, &a1, 60, &n3);
	node(&n1, &a6, 30, &n2);
	struct sockaddr_storage out[FG_NAME_MAX_ADDRS];
	int64_t ttl = 0;
	assert_int_equal(fg_name_collect(&n1, out, FG_NAME_MAX_ADDRS, &ttl), 3);
	assert_int_equal(out[0].ss_family, AF_INET);
	assert_true(fg_name_same_set(&out[0], 1, &a1, 1));
	assert_true(fg_name_same_set(&out[1], 1, &a2, 1));
	assert_int_equal(out[2].ss_family, AF_INET6);
	assert_true(ttl == 30 * FG_NS_PER_SEC);
	/* capped at max, still v4 first */
	assert_int_equal(fg_name_collect(&n1, out, 1, &ttl), 1);
	assert_true(fg_name_same_set(&out[0], 1, &a1, 1));
	/* nothing at all */
	assert_int_equal(fg_name_collect(NULL, out, FG_NAME_MAX_ADDRS, &ttl), 0);
}

static void test_refresh_is_clamped_between_5s_and_1h(void **s)
{
	(void)s;
	assert_true(fg_name_refresh_ns(0) == 5 * FG_NS_PER_SEC);
	assert_true(fg_name_refresh_ns(1 * FG_NS_PER_SEC) == 5 * FG_NS_PER_SEC);
	assert_true(fg_name_refresh_ns(60 * FG_NS_PER_SEC) == 60 * FG_NS_PER_SEC);
	assert_true(fg_name_refresh_ns(86400 * FG_NS_PER_SEC) == 3600 * FG_NS_PER_SEC);
}

static void test_same_set_ignores_order_but_not_content(void **s)
{
	(void)s;
	struct sockaddr_storage a[2] = {v4("10.0.0.1", 0), v4("10.0.0.2", 0)};
	struct sockaddr_storage b[2] = {v4("10.0.0.2", 0), v4("10.0.0.1", 0)};
	struct sockaddr_storage c[2] = {v4("10.0.0.1", 0), v4("10.0.0.3", 0)};
	struct sockaddr_storage d[2] = {v4("10.0.0.1", 0), v4("10.0.0.1", 0)};
	assert_true(fg_name_same_set(a, 2, b, 2)); /* a rotating server */
	assert_false(fg_name_same_set(a, 2, c, 2));
	assert_false(fg_name_same_set(a, 2, a, 1));
	assert_false(fg_name_same_set(a, 2, d, 2));
	assert_false(fg_name_same_set(d, 2, a, 2));
	assert_true(fg_name_same_set(a, 0, b, 0));
}

/* ---- on a loop -------------------------------------------------------- */

struct seen {
	struct fg_loop *loop;
	int calls;
	const char *err;
	bool changed;
	int64_t next_ns;
	size_t naddrs;
	struct sockaddr_storage first;
	bool free_in_cb;
};

static void seen_cb(struct fg_name *n, const char *err, bool changed, int64_t next_ns, void *arg)
{
	struct seen *sn = arg;
	sn->calls++;
	sn->err = err;
	sn->changed = changed;
	sn->next_ns = next_ns;
	sn->naddrs = fg_name_addrs(n, &sn->first, 1);
	if (sn->free_in_cb)
		fg_name_free(n);
	fg_loop_stop(sn->loop);
}

static void stop_cb(struct fg_loop *loop, struct fg_timer *t)
{
	(void)t;
	fg_loop_stop(loop);
}

static void test_a_hosts_file_name_resolves_from_the_loop_not_inside_start(void **s)
{
	(void)s;
	struct fg_loop *loop = fg_loop_new();
	struct fg_resolver *r = fg_resolver_new(loop);
	assert_non_null(r);
	struct seen sn = {.loop = loop};
	struct fg_name *n = fg_name_new(r, "localhost", seen_cb, &sn);
	assert_non_null(n);
	assert_string_equal(fg_name_host(n), "localhost");
	assert_int_equal(fg_name_addrs(n, NULL, 0), 0);
	fg_name_start(n);
	assert_int_equal(sn.calls, 0); /* never from inside start */
	struct fg_timer guard;
	fg_timer_init(&guard, stop_cb, NULL);
	fg_timer_start(loop, &guard, 5 * FG_NS_PER_SEC);
	fg_loop_run(loop);
	assert_int_equal(sn.calls, 1);
	assert_null(sn.err);
	assert_true(sn.changed); /* the first answer is a change */
	assert_true(sn.naddrs >= 1);
	assert_true(sn.next_ns >= FG_NAME_MIN_TTL_NS);
	if (sn.first.ss_family == AF_INET)
		assert_int_equal(((struct sockaddr_in *)&sn.first)->sin_addr.s_addr,
				 htonl(INADDR_LOOPBACK));
	fg_timer_stop(loop, &guard);
	/* the slot outlives its resolver (idle, no timer fires), then goes */
	fg_resolver_free(r);
	fg_name_free(n);
	fg_loop_free(loop);
}

static void test_a_slot_freed_from_its_callback_or_before_its_lookup_is_gone(void **s)
{
	(void)s;
	struct fg_loop *loop = fg_loop_new();
	struct fg_resolver *r = fg_resolver_new(loop);
	assert_non_null(r);
	struct seen sn = {.loop = loop, .free_in_cb = true};
	struct fg_name *n = fg_name_new(r, "localhost", seen_cb, &sn);
	fg_name_start(n);
	/* freed before its first lookup started: never calls back */
	struct seen never = {.loop = loop};
	struct fg_name *m = fg_name_new(r, "localhost", seen_cb, &never);
	fg_name_start(m);
	fg_name_free(m);
	struct fg_timer guard;
	fg_timer_init(&guard, stop_cb, NULL);
	fg_timer_start(loop, &guard, 5 * FG_NS_PER_SEC);
	fg_loop_run(loop);
	assert_int_equal(sn.calls, 1);
	assert_int_equal(never.calls, 0);
	fg_timer_stop(loop, &guard);
	/* ASan checks nothing leaked and nothing was touched after free */
	fg_resolver_free(r);
	fg_loop_free(loop);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_collect_puts_ipv4_first_and_takes_the_lowest_ttl),
	    cmocka_unit_test(test_refresh_is_clamped_between_5s_and_1h),
	    cmocka_unit_test(test_same_set_ignores_order_but_not_content),
	    cmocka_unit_test(test_a_hosts_file_name_resolves_from_the_loop_not_inside_start),
	    cmocka_unit_test(test_a_slot_freed_from_its_callback_or_before_its_lookup_is_gone),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
