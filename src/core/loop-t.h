/* Types of the event loop (see loop.h). */
#ifndef FG_CORE_LOOP_T_H
#define FG_CORE_LOOP_T_H

#include <stdbool.h>
#include <stdint.h>

struct fg_loop;
struct fg_io;
struct fg_timer;
struct fg_async;

/* events: FG_IO_READ/FG_IO_WRITE/FG_IO_HUP/FG_IO_ERR bits. */
typedef void (*fg_io_cb)(struct fg_loop *loop, struct fg_io *io, uint32_t events);
typedef void (*fg_timer_cb)(struct fg_loop *loop, struct fg_timer *t);
typedef void (*fg_async_cb)(struct fg_loop *loop, struct fg_async *a);
typedef void (*fg_defer_cb)(void *data);

#define FG_IO_READ  0x1u
#define FG_IO_WRITE 0x4u       /* EPOLLOUT */
#define FG_IO_ERR   0x8u       /* EPOLLERR */
#define FG_IO_HUP   0x10u      /* EPOLLHUP */
#define FG_IO_RDHUP 0x2000u    /* EPOLLRDHUP */
#define FG_IO_EDGE  (1u << 31) /* EPOLLET */

/* A file descriptor watched by a loop. Embedded in its owner; the owner
 * keeps it alive until the end of the loop iteration in which it was stopped
 * (use fg_loop_defer to free). */
struct fg_io {
	int fd;		 /* -1 when not started */
	uint32_t events; /* requested mask */
	fg_io_cb cb;
	void *data; /* borrowed: the owner */
};

/* A one-shot timer; restart it from its callback for periodic work. */
struct fg_timer {
	int64_t when_ns;
	uint32_t heap_idx; /* 0 = not armed */
	fg_timer_cb cb;
	void *data;
};

/* A cross-thread wake-up. fg_async_send is the only call that is safe from
 * another thread. */
struct fg_async {
	int efd;
	struct fg_io io;
	fg_async_cb cb;
	void *data;
};

#endif
