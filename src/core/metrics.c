#include "core/metrics.h"

#include <inttypes.h>
#include <string.h>

void fg_prom_family(struct fg_strbuf *b, const char *name, const char *type, const char *help)
{
	fg_strbuf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void fg_prom_escape(struct fg_strbuf *b, const char *v)
{
	for (const char *p = v; *p; p++) {
		switch (*p) {
		case '\\': fg_strbuf_append(b, "\\\\", 2); break;
		case '"': fg_strbuf_append(b, "\\\"", 2); break;
		case '\n': fg_strbuf_append(b, "\\n", 2); break;
		default: fg_strbuf_append(b, p, 1);
		}
	}
}

void fg_prom_sample(struct fg_strbuf *b, const char *name, const char *const *labels,
		    uint64_t value)
{
	fg_strbuf_puts(b, name);
	if (labels && labels[0]) {
		fg_strbuf_append(b, "{", 1);
		for (size_t i = 0; labels[i]; i += 2) {
			if (i)
				fg_strbuf_append(b, ",", 1);
			fg_strbuf_puts(b, labels[i]);
			fg_strbuf_append(b, "=\"", 2);
			fg_prom_escape(b, labels[i + 1]);
			fg_strbuf_append(b, "\"", 1);
		}
		fg_strbuf_append(b, "}", 1);
	}
	fg_strbuf_printf(b, " %" PRIu64 "\n", value);
}
