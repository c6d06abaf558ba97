/* Prometheus text exposition format (version 0.0.4) writer. */
#ifndef FG_CORE_METRICS_H
#define FG_CORE_METRICS_H

#include <stdint.h>

#include "core/strbuf.h"

/* Writes the # HELP and # TYPE lines of a family. type: "counter", "gauge". */
void fg_prom_family(struct fg_strbuf *b, const char *name, const char *type, const char *help);

/* Writes one sample. labels: NULL-terminated list of key, value pairs;
 * values are escaped as the format requires (\\, \", \n). */
void fg_prom_sample(struct fg_strbuf *b, const char *name, const char *const *labels,
		    uint64_t value);

/* Escapes a label value into b. */
void fg_prom_escape(struct fg_strbuf *b, const char *v);

#endif
