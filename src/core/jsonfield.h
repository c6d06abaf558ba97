/* Reading one field of a JSON document with an error that names it:
 * "forwards[2].rate_up: \"fast\" is not a rate (use 1000, 8mbit, ...)".
 * Shared by every validator of operator-written JSON (forwards, tunnels,
 * firewall policies). Each getter returns 0, or -EINVAL with err set. */
#ifndef FG_CORE_JSONFIELD_H
#define FG_CORE_JSONFIELD_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The value as JSON text for a message, cut at 60 characters. */
void fg_json_value_text(const json_t *v, char *buf, size_t len);

int fg_json_get_string(const json_t *v, const char *path, const char *field, const char **out,
		       char *err, size_t errlen);
/* An integer in [lo, hi]. */
int fg_json_get_uint(const json_t *v, const char *path, const char *field, uint32_t lo, uint32_t hi,
		     uint32_t *out, char *err, size_t errlen);
int fg_json_get_bool(const json_t *v, const char *path, const char *field, bool *out, char *err,
		     size_t errlen);
/* Bytes/s (size = false) or bytes (size = true): an integer, or a string
 * with units as core/units.h parses them. */
int fg_json_get_rate(const json_t *v, const char *path, const char *field, bool size, uint64_t *out,
		     char *err, size_t errlen);
/* Seconds as an integer, or "500ms", "5s", "2m"; > 0 and under a year. */
int fg_json_get_duration(const json_t *v, const char *path, const char *field, int64_t *out,
			 char *err, size_t errlen);

/* path.name: an object name (fg_name_valid) copied into out[max + 1]. */
int fg_json_get_name(const json_t *v, const char *path, char *out, size_t max, char *err,
		     size_t errlen);
/* path.id: a server object id, an integer or a string of at most max
 * characters, copied into out[max + 1] as text. */
int fg_json_get_id(const json_t *v, const char *path, char *out, size_t max, char *err,
		   size_t errlen);

/* An object name: 1..max characters of [A-Za-z0-9._-]. */
bool fg_name_valid(const char *s, size_t max);

#endif
