/* One epoll event loop per thread: fd watchers, a timer heap, eventfd
 * wake-ups and deferred frees. Nothing here is thread-safe except
 * fg_async_send() and fg_loop_stop(). */
#ifndef FG_CORE_LOOP_H
#define FG_CORE_LOOP_H

#include "core/loop-t.h"

struct fg_loop *fg_loop_new(void);
void fg_loop_free(struct fg_loop *loop);

/* Runs until fg_loop_stop(). Returns 0, or a negative errno if epoll fails. */
int fg_loop_run(struct fg_loop *loop);
/* Safe from any thread and from signal-free contexts. */
void fg_loop_stop(struct fg_loop *loop);

/* Time cached at the start of the current iteration (cheap). */
int64_t fg_loop_now(const struct fg_loop *loop);
/* Refreshes and returns the cached time. */
int64_t fg_loop_update_now(struct fg_loop *loop);

/* Starts watching fd. Returns 0 or -errno. */
int fg_io_start(struct fg_loop *loop, struct fg_io *io, int fd, uint32_t events, fg_io_cb cb,
		void *data);
int fg_io_modify(struct fg_loop *loop, struct fg_io *io, uint32_t events);
/* Stops watching; the fd is left open (the caller owns it). Events already
 * fetched for this io in the current iteration are not delivered. */
void fg_io_stop(struct fg_loop *loop, struct fg_io *io);
/* Like fg_io_stop for an fd the caller closes right away: close() removes a
 * never-duplicated fd from epoll, so the EPOLL_CTL_DEL syscall is skipped. */
static inline void fg_io_forget(struct fg_loop *loop, struct fg_io *io)
{
	(void)loop;
	io->fd = -1;
}
static inline bool fg_io_active(const struct fg_io *io)
{
	return io->fd >= 0;
}
static inline void fg_io_init(struct fg_io *io)
{
	io->fd = -1;
	io->events = 0;
	io->cb = 0;
	io->data = 0;
}

void fg_timer_init(struct fg_timer *t, fg_timer_cb cb, void *data);
/* (Re)arms t to fire after delay_ns. */
void fg_timer_start(struct fg_loop *loop, struct fg_timer *t, int64_t delay_ns);
void fg_timer_stop(struct fg_loop *loop, struct fg_timer *t);
static inline bool fg_timer_armed(const struct fg_timer *t)
{
	return t->heap_idx != 0;
}

int fg_async_init(struct fg_loop *loop, struct fg_async *a, fg_async_cb cb, void *data);
void fg_async_deinit(struct fg_loop *loop, struct fg_async *a);
/* Thread-safe: wakes the loop, which calls a->cb once for any number of sends. */
void fg_async_send(struct fg_async *a);

/* Calls cb(data) at the end of the current iteration, after every event
 * of the iteration has been delivered: the safe place to free an object
 * whose io may still have pending events. */
int fg_loop_defer(struct fg_loop *loop, fg_defer_cb cb, void *data);

#endif
