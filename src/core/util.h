/* Small always-on helpers shared by every module. */
#ifndef FG_CORE_UTIL_H
#define FG_CORE_UTIL_H

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#define FG_MIN(a, b)			   ((a) < (b) ? (a) : (b))
#define FG_MAX(a, b)			   ((a) > (b) ? (a) : (b))
#define FG_ARRAY_LEN(a)			   (sizeof(a) / sizeof((a)[0]))
#define FG_CONTAINER_OF(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))
#define FG_UNUSED(x)			   ((void)(x))
#define FG_CACHELINE			   64

/* Invariant checks stay on in release builds: a broken invariant in a
 * data path is worse than the branch it costs. */
#define FG_BUG_ON(cond)                                                                            \
	do {                                                                                       \
		if (__builtin_expect(!!(cond), 0)) {                                               \
			fprintf(stderr, "BUG at %s:%d: %s\n", __FILE__, __LINE__, #cond);          \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

#define FG_LIKELY(x)   __builtin_expect(!!(x), 1)
#define FG_UNLIKELY(x) __builtin_expect(!!(x), 0)

#endif
