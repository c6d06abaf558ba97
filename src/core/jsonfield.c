#include "core/jsonfield.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/errmsg.h"
#include "core/units.h"

void fg_json_value_text(const json_t *v, char *buf, size_t len)
{
	char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
	if (!s) {
		snprintf(buf, len, "?");
		return;
	}
	if (strlen(s) > 60)
		snprintf(buf, len, "%.57s...", s);
	else
		snprintf(buf, len, "%s", s);
	free(s);
}

int fg_json_get_string(const json_t *v, const char *path, const char *field, const char **out,
		       char *err, size_t errlen)
{
	if (!json_is_string(v)) {
		char vt[72];
		fg_json_value_text(v, vt, sizeof(vt));
		return fg_errf(err, errlen, "%s.%s: %s is not a string", path, field, vt);
	}
	*out = json_string_value(v);
	return 0;
}

int fg_json_get_uint(const json_t *v, const char *path, const char *field, uint32_t lo, uint32_t hi,
		     uint32_t *out, char *err, size_t errlen)
{
	if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
		char vt[72];
		fg_json_value_text(v, vt, sizeof(vt));
		return fg_errf(err, errlen, "%s.%s: %s is not a whole number %u-%u", path, field,
			       vt, lo, hi);
	}
	*out = (uint32_t)json_integer_value(v);
	return 0;
}

int fg_json_get_bool(const json_t *v, const char *path, const char *field, bool *out, char *err,
		     size_t errlen)
{
	if (!json_is_boolean(v)) {
		char vt[72];
		fg_json_value_text(v, vt, sizeof(vt));
		return fg_errf(err, errlen, "%s.%s: %s is not true or false", path, field, vt);
	}
	*out = json_is_true(v);
	return 0;
}

int fg_json_get_rate(const json_t *v, const char *path, const char *field, bool size, uint64_t *out,
		     char *err, size_t errlen)
{
	if (json_is_integer(v) && json_integer_value(v) >= 0) {
		*out = (uint64_t)json_integer_value(v);
		return 0;
	}
	if (json_is_string(v)) {
		int rc = size ? fg_parse_size(json_string_value(v), out)
			      : fg_parse_rate(json_string_value(v), out);
		if (rc == 0)
			return 0;
	}
	char vt[72];
	fg_json_value_text(v, vt, sizeof(vt));
	return fg_errf(err, errlen, "%s.%s: %s is not a %s (use 1000, 8mbit, 2MiB, ...)", path,
		       field, vt, size ? "size" : "rate");
}

int fg_json_get_duration(const json_t *v, const char *path, const char *field, int64_t *out,
			 char *err, size_t errlen)
{
	if (json_is_integer(v) && json_integer_value(v) > 0 &&
	    json_integer_value(v) < 86400 * 365) {
		*out = json_integer_value(v) * FG_NS_PER_SEC;
		return 0;
	}
	if (json_is_string(v) && fg_parse_duration(json_string_value(v), out) == 0 && *out > 0)
		return 0;
	char vt[72];
	fg_json_value_text(v, vt, sizeof(vt));
	return fg_errf(err, errlen, "%s.%s: %s is not a duration (use 500ms, 5s, 2m, ...)", path,
		       field, vt);
}

bool fg_name_valid(const char *s, size_t max)
{
	size_t n = strlen(s);
	if (n == 0 || n > max)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '-' || c == '.'))
			return false;
	}
	return true;
}

int fg_json_get_name(const json_t *v, const char *path, char *out, size_t max, char *err,
		     size_t errlen)
{
	const char *s = NULL;
	int rc = fg_json_get_string(v, path, "name", &s, err, errlen);
	if (rc)
		return rc;
	if (!fg_name_valid(s, max))
		return fg_errf(err, errlen,
			       "%s.name: \"%.80s\" must be 1-%zu characters of A-Z a-z 0-9 _ - .",
			       path, s, max);
	strcpy(out, s);
	return 0;
}

int fg_json_get_id(const json_t *v, const char *path, char *out, size_t max, char *err,
		   size_t errlen)
{
	if (json_is_integer(v)) {
		snprintf(out, max + 1, "%lld", (long long)json_integer_value(v));
		return 0;
	}
	if (json_is_string(v) && strlen(json_string_value(v)) <= max) {
		strcpy(out, json_string_value(v));
		return 0;
	}
	char vt[72];
	fg_json_value_text(v, vt, sizeof(vt));
	return fg_errf(err, errlen, "%s.id: %s is not a string or integer", path, vt);
}
