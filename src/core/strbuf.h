/* A growable text buffer, for building responses off the data path. */
#ifndef FG_CORE_STRBUF_H
#define FG_CORE_STRBUF_H

#include <stdbool.h>
#include <stddef.h>

struct fg_strbuf {
	char *s; /* owned, always NUL-terminated once anything was added */
	size_t len, cap;
	bool oom; /* an append failed: the content is truncated */
};

void fg_strbuf_init(struct fg_strbuf *b);
void fg_strbuf_deinit(struct fg_strbuf *b);
void fg_strbuf_append(struct fg_strbuf *b, const char *s, size_t n);
void fg_strbuf_puts(struct fg_strbuf *b, const char *s);
void fg_strbuf_printf(struct fg_strbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
