#include "core/loop.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/util.h"

#define MAX_EVENTS 256

struct deferred {
	fg_defer_cb cb;
	void *data;
};

struct fg_loop {
	int epfd;
	_Atomic bool stop;
	int64_t now;
	bool in_timers;
	struct fg_async stop_async;
	/* timer heap, 1-based: heap[1] is the earliest */
	struct fg_timer **heap;
	uint32_t heap_len, heap_cap;
	struct deferred *defer;
	size_t defer_len, defer_cap;
};

/* ---- timer heap ------------------------------------------------------- */

static void heap_swap(struct fg_loop *l, uint32_t a, uint32_t b)
{
	struct fg_timer *t = l->heap[a];
	l->heap[a] = l->heap[b];
	l->heap[b] = t;
	l->heap[a]->heap_idx = a;
	l->heap[b]->heap_idx = b;
}

static void heap_up(struct fg_loop *l, uint32_t i)
{
	while (i > 1 && l->heap[i / 2]->when_ns > l->heap[i]->when_ns) {
		heap_swap(l, i, i / 2);
		i /= 2;
	}
}

static void heap_down(struct fg_loop *l, uint32_t i)
{
	for (;;) {
		uint32_t m = i, c = 2 * i;
		if (c <= l->heap_len && l->heap[c]->when_ns < l->heap[m]->when_ns)
			m = c;
		if (c + 1 <= l->heap_len && l->heap[c + 1]->when_ns < l->heap[m]->when_ns)
			m = c + 1;
		if (m == i)
			return;
		heap_swap(l, i, m);
		i = m;
	}
}

void fg_timer_init(struct fg_timer *t, fg_timer_cb cb, void *data)
{
	t->when_ns = 0;
	t->heap_idx = 0;
	t->cb = cb;
	t->data = data;
}

void fg_timer_stop(struct fg_loop *l, struct fg_timer *t)
{
	uint32_t i = t->heap_idx;
	if (!i)
		return;
	FG_BUG_ON(i > l->heap_len || l->heap[i] != t);
	if (i != l->heap_len) {
		heap_swap(l, i, l->heap_len);
		l->heap_len--;
		heap_down(l, i);
		heap_up(l, i);
	} else {
		l->heap_len--;
	}
	t->heap_idx = 0;
}

void fg_timer_start(struct fg_loop *l, struct fg_timer *t, int64_t delay_ns)
{
	fg_timer_stop(l, t);
	if (l->heap_len + 1 >= l->heap_cap) {
		uint32_t ncap = l->heap_cap ? l->heap_cap * 2 : 64;
		struct fg_timer **nh = fg_realloc(l->heap, ncap * sizeof(*nh));
		/* A loop that cannot grow its timer heap cannot keep its promises. */
		FG_BUG_ON(!nh);
		l->heap = nh;
		l->heap_cap = ncap;
	}
	t->when_ns = l->now + (delay_ns > 0 ? delay_ns : 0);
	/* a timer (re)started while timers run fires next pass at the
	 * earliest, so one that restarts itself with 0 cannot starve I/O */
	if (l->in_timers && t->when_ns <= l->now)
		t->when_ns = l->now + 1;
	l->heap[++l->heap_len] = t;
	t->heap_idx = l->heap_len;
	heap_up(l, l->heap_len);
}

static void run_timers(struct fg_loop *l)
{
	l->in_timers = true;
	while (l->heap_len && l->heap[1]->when_ns <= l->now) {
		struct fg_timer *t = l->heap[1];
		fg_timer_stop(l, t);
		t->cb(l, t);
	}
	l->in_timers = false;
}

static int next_timeout_ms(struct fg_loop *l)
{
	if (l->defer_len)
		return 0;
	if (!l->heap_len)
		return -1;
	int64_t d = l->heap[1]->when_ns - fg_now_ns();
	if (d <= 0)
		return 0;
	/* round up so a timer never fires early */
	return (int)FG_MIN((d + FG_NS_PER_MS - 1) / FG_NS_PER_MS, 60000);
}

/* ---- io --------------------------------------------------------------- */

int fg_io_start(struct fg_loop *l, struct fg_io *io, int fd, uint32_t events, fg_io_cb cb,
		void *data)
{
	struct epoll_event ev = {.events = events, .data.ptr = io};
	io->fd = fd;
	io->events = events;
	io->cb = cb;
	io->data = data;
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		int e = errno;
		io->fd = -1;
		return -e;
	}
	return 0;
}

int fg_io_modify(struct fg_loop *l, struct fg_io *io, uint32_t events)
{
	struct epoll_event ev = {.events = events, .data.ptr = io};
	if (io->events == events)
		return 0;
	if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, io->fd, &ev) < 0)
		return -errno;
	io->events = events;
	return 0;
}

void fg_io_stop(struct fg_loop *l, struct fg_io *io)
{
	if (io->fd < 0)
		return;
	epoll_ctl(l->epfd, EPOLL_CTL_DEL, io->fd, NULL);
	io->fd = -1;
}

/* ---- async ------------------------------------------------------------ */

static void async_io_cb(struct fg_loop *l, struct fg_io *io, uint32_t events)
{
	FG_UNUSED(events);
	struct fg_async *a = io->data;
	uint64_t v;
	while (read(a->efd, &v, sizeof(v)) == (ssize_t)sizeof(v))
		;
	a->cb(l, a);
}

int fg_async_init(struct fg_loop *l, struct fg_async *a, fg_async_cb cb, void *data)
{
	a->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (a->efd < 0)
		return -errno;
	a->cb = cb;
	a->data = data;
	fg_io_init(&a->io);
	int rc = fg_io_start(l, &a->io, a->efd, EPOLLIN, async_io_cb, a);
	if (rc < 0) {
		close(a->efd);
		a->efd = -1;
	}
	return rc;
}

void fg_async_deinit(struct fg_loop *l, struct fg_async *a)
{
	if (a->efd < 0)
		return;
	fg_io_stop(l, &a->io);
	close(a->efd);
	a->efd = -1;
}

void fg_async_send(struct fg_async *a)
{
	uint64_t one = 1;
	ssize_t r = write(a->efd, &one, sizeof(one));
	FG_UNUSED(r); /* EAGAIN means the counter is already non-zero: awake anyway */
}

/* ---- loop ------------------------------------------------------------- */

static void stop_cb(struct fg_loop *l, struct fg_async *a)
{
	FG_UNUSED(a);
	FG_UNUSED(l);
}

struct fg_loop *fg_loop_new(void)
{
	struct fg_loop *l = fg_calloc(1, sizeof(*l));
	if (!l)
		return NULL;
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (l->epfd < 0)
		goto err;
	l->now = fg_now_ns();
	if (fg_async_init(l, &l->stop_async, stop_cb, NULL) < 0)
		goto err;
	return l;
err:
	if (l->epfd >= 0)
		close(l->epfd);
	fg_free(l);
	return NULL;
}

static void run_deferred(struct fg_loop *l);

void fg_loop_free(struct fg_loop *l)
{
	if (!l)
		return;
	/* work deferred after the last iteration (objects freed while shutting
	 * down, e.g. sessions ended by their owner's _free) still runs */
	while (l->defer_len)
		run_deferred(l);
	fg_async_deinit(l, &l->stop_async);
	close(l->epfd);
	fg_free(l->heap);
	fg_free(l->defer);
	fg_free(l);
}

int fg_loop_defer(struct fg_loop *l, fg_defer_cb cb, void *data)
{
	if (l->defer_len == l->defer_cap) {
		size_t ncap = l->defer_cap ? l->defer_cap * 2 : 64;
		struct deferred *nd = fg_realloc(l->defer, ncap * sizeof(*nd));
		FG_BUG_ON(!nd);
		l->defer = nd;
		l->defer_cap = ncap;
	}
	l->defer[l->defer_len++] = (struct deferred){cb, data};
	return 0;
}

static void run_deferred(struct fg_loop *l)
{
	/* A deferred callback may defer more work: it runs next round. */
	size_t n = l->defer_len;
	if (!n)
		return;
	for (size_t i = 0; i < n; i++)
		l->defer[i].cb(l->defer[i].data);
	memmove(l->defer, l->defer + n, (l->defer_len - n) * sizeof(*l->defer));
	l->defer_len -= n;
}

int64_t fg_loop_now(const struct fg_loop *l)
{
	return l->now;
}

int64_t fg_loop_update_now(struct fg_loop *l)
{
	l->now = fg_now_ns();
	return l->now;
}

void fg_loop_stop(struct fg_loop *l)
{
	atomic_store(&l->stop, true);
	fg_async_send(&l->stop_async);
}

int fg_loop_run(struct fg_loop *l)
{
	struct epoll_event evs[MAX_EVENTS];
	while (!atomic_load_explicit(&l->stop, memory_order_relaxed)) {
		int n = epoll_wait(l->epfd, evs, MAX_EVENTS, next_timeout_ms(l));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		l->now = fg_now_ns();
		for (int i = 0; i < n; i++) {
			struct fg_io *io = evs[i].data.ptr;
			/* stopped earlier in this iteration: its owner may be on
			 * the deferred list, memory still valid */
			if (io->fd < 0)
				continue;
			io->cb(l, io, evs[i].events);
		}
		run_timers(l);
		run_deferred(l);
	}
	run_deferred(l);
	atomic_store(&l->stop, false); /* the loop may be run again */
	return 0;
}
