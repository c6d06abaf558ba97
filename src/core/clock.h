/* Monotonic time in nanoseconds. */
#ifndef FG_CORE_CLOCK_H
#define FG_CORE_CLOCK_H

#include <stdint.h>
#include <time.h>

#define FG_NS_PER_SEC 1000000000LL
#define FG_NS_PER_MS  1000000LL

static inline int64_t fg_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * FG_NS_PER_SEC + ts.tv_nsec;
}

#endif
