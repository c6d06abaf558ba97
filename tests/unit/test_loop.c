/* The event loop's timers, deferred calls and io delivery (core/loop). */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/clock.h"
#include "core/loop.h"

#define MS FG_NS_PER_MS

/* What happened, in order: short tags. */
static char trace[64][16];
static int ntrace;

static void note(const char *tag)
{
	if (ntrace < 64)
		snprintf(trace[ntrace++], sizeof(trace[0]), "%s", tag);
}

static int setup(void **s)
{
	ntrace = 0;
	struct fg_loop *l = fg_loop_new();
	assert_non_null(l);
	*s = l;
	return 0;
}

static int teardown(void **s)
{
	fg_loop_free(*s);
	return 0;
}

static void stop_cb(struct fg_loop *l, struct fg_timer *t)
{
	note("stop");
	fg_loop_stop(l);
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
}

/* ---- timers ------------------------------------------------------------ */

struct stamped {
	struct fg_timer t;
	int64_t due, fired;
	const char *tag;
};

static void stamped_cb(struct fg_loop *l, struct fg_timer *t)
{
	struct stamped *x = t->data;
	x->fired = fg_now_ns();
	assert_false(fg_timer_armed(t)); /* a one-shot is disarmed before its callback */
	note(x->tag);
}

static void test_timers_fire_in_deadline_order_never_early(void **s)
{
	struct fg_loop *l = *s;
	static const int64_t delays[] = {30, 10, 20, 0, 5, 25, 15};
	static const char *const tags[] = {"30", "10", "20", "0", "5", "25", "15"};
	struct stamped x[7];
	int64_t start = fg_loop_update_now(l);
	for (int i = 0; i < 7; i++) {
		x[i] = (struct stamped){.due = start + delays[i] * MS, .tag = tags[i]};
		fg_timer_init(&x[i].t, stamped_cb, &x[i]);
		fg_timer_start(l, &x[i].t, delays[i] * MS);
		assert_true(fg_timer_armed(&x[i].t));
	}
	struct fg_timer stop;
	fg_timer_init(&stop, stop_cb, NULL);
	fg_timer_start(l, &stop, 40 * MS);
	assert_int_equal(fg_loop_run(l), 0);
	static const char *const want[] = {"0", "5", "10", "15", "20", "25", "30", "stop"};
	assert_int_equal(ntrace, 8);
	for (int i = 0; i < 8; i++)
		assert_string_equal(trace[i], want[i]);
	for (int i = 0; i < 7; i++)
		assert_true(x[i].fired >= x[i].due);
}

static void test_stopped_timer_never_fires(void **s)
{
	struct fg_loop *l = *s;
	struct stamped a = {.tag = "a"}, b = {.tag = "b"}, c = {.tag = "c"};
	fg_timer_init(&a.t, stamped_cb, &a);
	fg_timer_init(&b.t, stamped_cb, &b);
	fg_timer_init(&c.t, stamped_cb, &c);
	fg_timer_start(l, &a.t, 5 * MS);
	fg_timer_start(l, &b.t, 10 * MS);
	fg_timer_start(l, &c.t, 15 * MS);
	fg_timer_stop(l, &b.t);
	assert_false(fg_timer_armed(&b.t));
	fg_timer_stop(l, &b.t); /* stopping twice is harmless */
	struct fg_timer stop;
	fg_timer_init(&stop, stop_cb, NULL);
	fg_timer_start(l, &stop, 30 * MS);
	assert_int_equal(fg_loop_run(l), 0);
	assert_int_equal(ntrace, 3);
	assert_string_equal(trace[0], "a");
	assert_string_equal(trace[1], "c");
	assert_string_equal(trace[2], "stop");
	assert_int_equal(b.fired, 0);
}

static struct fg_timer victim;

static void killer_cb(struct fg_loop *l, struct fg_timer *t)
{
	note("killer");
	fg_timer_stop(l, &victim);
}

static void victim_cb(struct fg_loop *l, struct fg_timer *t)
{
	note("victim");
}

static void test_timer_stopped_by_another_due_in_same_iteration_never_fires(void **s)
{
	struct fg_loop *l = *s;
	struct fg_timer killer, stop;
	fg_timer_init(&killer, killer_cb, NULL);
	fg_timer_init(&victim, victim_cb, NULL);
	fg_timer_init(&stop, stop_cb, NULL);
	fg_timer_start(l, &killer, 1 * MS);
	fg_timer_start(l, &victim, 2 * MS);
	fg_timer_start(l, &stop, 20 * MS);
	sleep_ms(10); /* both are overdue when the loop first looks */
	assert_int_equal(fg_loop_run(l), 0);
	assert_int_equal(ntrace, 2);
	assert_string_equal(trace[0], "killer");
	assert_string_equal(trace[1], "stop");
}

static void test_restarting_a_timer_moves_its_deadline(void **s)
{
	struct fg_loop *l = *s;
	struct stamped a = {.tag = "a"}, b = {.tag = "b"};
	fg_timer_init(&a.t, stamped_cb, &a);
	fg_timer_init(&b.t, stamped_cb, &b);
	fg_timer_start(l, &a.t, 5 * MS);
	fg_timer_start(l, &b.t, 10 * MS);
	fg_timer_start(l, &a.t, 15 * MS); /* re-arm: a now comes after b */
	struct fg_timer stop;
	fg_timer_init(&stop, stop_cb, NULL);
	fg_timer_start(l, &stop, 25 * MS);
	assert_int_equal(fg_loop_run(l), 0);
	assert_int_equal(ntrace, 3);
	assert_string_equal(trace[0], "b");
	assert_string_equal(trace[1], "a");
}

static int periodic_count;

static void periodic_cb(struct fg_loop *l, struct fg_timer *t)
{
	note("tick");
	if (++periodic_count < 5)
		fg_timer_start(l, t, 2 * MS);
	else
		fg_loop_stop(l);
}

static void test_restarting_from_its_own_callback_makes_it_periodic(void **s)
{
	struct fg_loop *l = *s;
	periodic_count = 0;
	struct fg_timer t;
	fg_timer_init(&t, periodic_cb, NULL);
	int64_t start = fg_now_ns();
	fg_timer_start(l, &t, 2 * MS);
	assert_int_equal(fg_loop_run(l), 0);
	assert_int_equal(periodic_count, 5);
	assert_true(fg_now_ns() - start >= 10 * MS);
	assert_false(fg_timer_armed(&t));
}

static void test_many_timers_grow_the_heap_and_all_fire(void **s)
{
	struct fg_loop *l = *s;
	enum { N = 300 };
	static struct stamped x[N];
	for (int i = 0; i < N; i++) {
		x[i] = (struct stamped){.tag = "x"};
		fg_timer_init(&x[i].t, stamped_cb, &x[i]);
		fg_timer_start(l, &x[i].t, (int64_t)((i * 7919) % 20) * MS);
	}
	for (int i = 0; i < N; i += 3) /* stop a third of them, from the middle of the heap */
		fg_timer_stop(l, &x[i].t);
	struct fg_timer stop;
	fg_timer_init(&stop, stop_cb, NULL);
	fg_timer_start(l, &stop, 40 * MS);
	assert_int_equal(fg_loop_run(l), 0);
	for (int i = 0; i < N; i++) {
		if (i % 3 == 0)
			assert_int_equal(x[i].fired, 0);
		else
			assert_true(x[i].fired > 0);
	}
}

/* ---- io + defer ---------------------------------------------------------- */

struct piped {
	int fds[2];
	struct fg_io io;
	const char *tag;
	struct piped *other; /* stopped from this one's callback, if set */
};

static void deferred_cb(void *data)
{
	note(data);
}

static void deferred_again_cb(void *data)
{
	note("d1");
	fg_loop_defer(data, deferred_cb, "d2");
}

static void piped_cb(struct fg_loop *l, struct fg_io *io, uint32_t events)
{
	struct piped *p = io->data;
	char buf[16];
	assert_true(events & FG_IO_READ);
	assert_true(read(p->fds[0], buf, sizeof(buf)) > 0);
	note(p->tag);
	fg_io_stop(l, io);
	if (p->other)
		fg_io_stop(l, &p->other->io);
	fg_loop_defer(l, deferred_cb, "defer");
}

static void pipe_watch(struct fg_loop *l, struct piped *p, const char *tag)
{
	assert_int_equal(pipe(p->fds), 0);
	p->tag = tag;
	p->other = NULL;
	fg_io_init(&p->io);
	assert_false(fg_io_active(&p->io));
	assert_int_equal(fg_io_start(l, &p->io, p->fds[0], FG_IO_READ, piped_cb, p), 0);
	assert_true(fg_io_active(&p->io));
	assert_int_equal(write(p->fds[1], "x", 1), 1);
}

static void pipe_close(struct piped *p)
{
	close(p->fds[0]);
	close(p->fds[1]);
}

static void test_defer_runs_after_every_event_of_the_iteration(void **s)
{
	struct fg_loop *l = *s;
	struct piped a, b;
	pipe_watch(l, &a, "io");
	pipe_watch(l, &b, "io");
	struct fg_timer stop;
	fg_timer_init(&stop, stop_cb, NULL);
	fg_timer_start(l, &stop, 20 * MS);
	assert_int_equal(fg_loop_run(l), 0);
	/* both pipes were readable at once: both events, then both deferred calls */
	assert_int_equal(ntrace, 5);
	assert_string_equal(trace[0], "io");
	assert_string_equal(trace[1], "io");
	assert_string_equal(trace[2], "defer");
	assert_string_equal(trace[3], "defer");
	assert_string_equal(trace[4], "stop");
	pipe_close(&a);
	pipe_close(&b);
}

static void test_defer_from_a_deferred_call_runs_next_iteration(void **s)
{
	struct fg_loop *l = *s;
	fg_loop_defer(l, deferred_again_cb, l);
	struct fg_timer stop;
	fg_timer_init(&stop, stop_cb, NULL);
	fg_timer_start(l, &stop, 5 * MS);
	assert_int_equal(fg_loop_run(l), 0);
	assert_int_equal(ntrace, 3);
	assert_string_equal(trace[0], "d1");
	assert_string_equal(trace[1], "d2");
	assert_string_equal(trace[2], "stop");
}

static void test_defer_pending_at_stop_still_runs(void **s)
{
	struct fg_loop *l = *s;
	fg_loop_stop(l);
	fg_loop_defer(l, deferred_cb, "late");
	assert_int_equal(fg_loop_run(l), 0);
	assert_int_equal(ntrace, 1);
	assert_string_equal(trace[0], "late");
}

static void test_io_stopped_in_the_same_iteration_gets_no_event(void **s)
{
	struct fg_loop *l = *s;
	struct piped a, b;
	pipe_watch(l, &a, "io");
	pipe_watch(l, &b, "io");
	a.other = &b;
	b.other = &a;
	struct fg_timer stop;
	fg_timer_init(&stop, stop_cb, NULL);
	fg_timer_start(l, &stop, 20 * MS);
	assert_int_equal(fg_loop_run(l), 0);
	/* whichever ran first stopped the other, whose event was already fetched */
	assert_int_equal(ntrace, 3);
	assert_string_equal(trace[0], "io");
	assert_string_equal(trace[1], "defer");
	assert_string_equal(trace[2], "stop");
	pipe_close(&a);
	pipe_close(&b);
}

static void *stopper(void *arg)
{
	sleep_ms(20);
	fg_loop_stop(arg);
	return NULL;
}

static void test_loop_stop_from_another_thread_wakes_an_idle_loop(void **s)
{
	struct fg_loop *l = *s;
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, stopper, l), 0);
	int64_t start = fg_now_ns();
	assert_int_equal(fg_loop_run(l), 0); /* nothing armed: would block forever */
	pthread_join(t, NULL);
	assert_true(fg_now_ns() - start < 5 * FG_NS_PER_SEC);
}

static int async_calls;

static void async_cb(struct fg_loop *l, struct fg_async *a)
{
	async_calls++;
	fg_loop_stop(l);
}

static void *sender(void *arg)
{
	sleep_ms(10);
	for (int i = 0; i < 100; i++)
		fg_async_send(arg);
	return NULL;
}

static void test_async_sends_from_another_thread_reach_the_loop(void **s)
{
	struct fg_loop *l = *s;
	struct fg_async a;
	async_calls = 0;
	assert_int_equal(fg_async_init(l, &a, async_cb, NULL), 0);
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, sender, &a), 0);
	assert_int_equal(fg_loop_run(l), 0);
	pthread_join(t, NULL);
	assert_true(async_calls >= 1 && async_calls <= 100);
	fg_async_deinit(l, &a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_timers_fire_in_deadline_order_never_early, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_stopped_timer_never_fires, setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_timer_stopped_by_another_due_in_same_iteration_never_fires, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_restarting_a_timer_moves_its_deadline, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_restarting_from_its_own_callback_makes_it_periodic,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_many_timers_grow_the_heap_and_all_fire, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_defer_runs_after_every_event_of_the_iteration,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_defer_from_a_deferred_call_runs_next_iteration,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_defer_pending_at_stop_still_runs, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_io_stopped_in_the_same_iteration_gets_no_event,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_loop_stop_from_another_thread_wakes_an_idle_loop,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_async_sends_from_another_thread_reach_the_loop,
					    setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
