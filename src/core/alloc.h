/* One allocation wrapper so tests can make allocation fail (fg_alloc_fail_after). */
#ifndef FG_CORE_ALLOC_H
#define FG_CORE_ALLOC_H

#include <stddef.h>

void *fg_malloc(size_t n);
void *fg_calloc(size_t nmemb, size_t n);
void *fg_realloc(void *p, size_t n);
char *fg_strdup(const char *s);
char *fg_strndup(const char *s, size_t n);
void fg_free(void *p);

/* Test hook: the Nth next allocation (1 = the next one) and every one after
 * it fails; 0 turns failure injection off. */
void fg_alloc_fail_after(long n);

#endif
