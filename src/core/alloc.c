#include "core/alloc.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static _Atomic long fail_countdown; /* 0 = off */

static int should_fail(void)
{
	long v = atomic_load_explicit(&fail_countdown, memory_order_relaxed);
	if (v == 0)
		return 0;
	if (v == 1)
		return 1; /* stays at 1: every later allocation fails too */
	atomic_fetch_sub_explicit(&fail_countdown, 1, memory_order_relaxed);
	return 0;
}

void fg_alloc_fail_after(long n)
{
	atomic_store(&fail_countdown, n);
}

void *fg_malloc(size_t n)
{
	return should_fail() ? NULL : malloc(n);
}

void *fg_calloc(size_t nmemb, size_t n)
{
	return should_fail() ? NULL : calloc(nmemb, n);
}

void *fg_realloc(void *p, size_t n)
{
	return should_fail() ? NULL : realloc(p, n);
}

char *fg_strdup(const char *s)
{
	return fg_strndup(s, strlen(s));
}

char *fg_strndup(const char *s, size_t n)
{
	char *d = fg_malloc(n + 1);
	if (!d)
		return NULL;
	memcpy(d, s, n);
	d[n] = '\0';
	return d;
}

void fg_free(void *p)
{
	free(p);
}
