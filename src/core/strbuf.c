#include "core/strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"

void fg_strbuf_init(struct fg_strbuf *b)
{
	b->s = NULL;
	b->len = b->cap = 0;
	b->oom = false;
}

void fg_strbuf_deinit(struct fg_strbuf *b)
{
	fg_free(b->s);
	fg_strbuf_init(b);
}

static bool reserve(struct fg_strbuf *b, size_t extra)
{
	if (b->oom)
		return false;
	if (b->len + extra + 1 <= b->cap)
		return true;
	size_t ncap = b->cap ? b->cap : 256;
	while (ncap < b->len + extra + 1)
		ncap *= 2;
	char *ns = fg_realloc(b->s, ncap);
	if (!ns) {
		b->oom = true;
		return false;
	}
	b->s = ns;
	b->cap = ncap;
	return true;
}

void fg_strbuf_append(struct fg_strbuf *b, const char *s, size_t n)
{
	if (!reserve(b, n))
		return;
	memcpy(b->s + b->len, s, n);
	b->len += n;
	b->s[b->len] = '\0';
}

void fg_strbuf_puts(struct fg_strbuf *b, const char *s)
{
	fg_strbuf_append(b, s, strlen(s));
}

void fg_strbuf_printf(struct fg_strbuf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || !reserve(b, (size_t)n))
		return;
	va_start(ap, fmt);
	vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}
