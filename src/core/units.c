#include "core/units.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>

struct unit {
	const char *name;
	uint64_t num, den; /* value * num / den */
};

static const struct unit rate_units[] = {
    {"", 1, 1},
    {"b", 1, 1},
    {"B", 1, 1},
    {"bit", 1, 8},
    {"kbit", 1000, 8},
    {"mbit", 1000000, 8},
    {"gbit", 1000000000, 8},
    {"kbps", 1000, 8},
    {"mbps", 1000000, 8},
    {"gbps", 1000000000, 8},
    {"k", 1000, 1},
    {"kb", 1000, 1},
    {"m", 1000000, 1},
    {"mb", 1000000, 1},
    {"g", 1000000000, 1},
    {"gb", 1000000000, 1},
    {"kib", 1024, 1},
    {"mib", 1024 * 1024, 1},
    {"gib", 1024 * 1024 * 1024, 1},
};

/* Parses "<digits>[.<digits>]" into a value scaled by 1e6 (micro-units), so
 * "1.5mbit" works without floating point. */
static int parse_number(const char **pp, unsigned __int128 *micro)
{
	const char *p = *pp;
	uint64_t whole = 0, frac = 0, scale = 1000000;
	if (!isdigit((unsigned char)*p))
		return -EINVAL;
	while (isdigit((unsigned char)*p)) {
		/* 128-bit micro-units: any 64-bit whole part fits, so a plain
		 * integer has the same range as the same value with a unit */
		if (whole > (UINT64_MAX - 9) / 10)
			return -ERANGE;
		whole = whole * 10 + (uint64_t)(*p++ - '0');
	}
	if (*p == '.') {
		p++;
		if (!isdigit((unsigned char)*p))
			return -EINVAL;
		while (isdigit((unsigned char)*p)) {
			if (scale > 1) {
				scale /= 10;
				frac += (uint64_t)(*p - '0') * scale;
			}
			p++;
		}
	}
	*micro = (unsigned __int128)whole * 1000000 + frac;
	*pp = p;
	return 0;
}

static int parse_with_units(const char *s, const struct unit *units, size_t nunits,
			    bool allow_per_sec, uint64_t *out)
{
	unsigned __int128 micro;
	const char *p = s;
	/* no blanks: "10 mbit/s" is refused like any other unknown spelling */
	int rc = parse_number(&p, &micro);
	if (rc)
		return rc;
	char unit[16];
	size_t n = strlen(p);
	if (allow_per_sec) {
		if (n >= 2 && strcmp(p + n - 2, "/s") == 0)
			n -= 2;
	}
	if (n >= sizeof(unit))
		return -EINVAL;
	memcpy(unit, p, n);
	unit[n] = '\0';
	for (size_t i = 0; i < nunits; i++) {
		if (strcasecmp(unit, units[i].name) != 0)
			continue;
		/* "b" lower-case alone is ambiguous (bit?): bytes only with B */
		if (strcmp(unit, "b") == 0)
			return -EINVAL;
		unsigned __int128 v = micro * units[i].num / units[i].den;
		v /= 1000000;
		if (v > UINT64_MAX / 2)
			return -ERANGE;
		*out = (uint64_t)v;
		return 0;
	}
	return -EINVAL;
}

int fg_parse_rate(const char *s, uint64_t *out)
{
	return parse_with_units(s, rate_units, sizeof(rate_units) / sizeof(rate_units[0]), true,
				out);
}

int fg_parse_size(const char *s, uint64_t *out)
{
	return parse_with_units(s, rate_units, sizeof(rate_units) / sizeof(rate_units[0]), false,
				out);
}

static const struct unit dur_units[] = {
    {"", 1000000000, 1},      {"s", 1000000000, 1},	  {"ms", 1000000, 1},
    {"m", 60000000000ull, 1}, {"h", 3600000000000ull, 1}, {"us", 1000, 1},
};

int fg_parse_duration(const char *s, int64_t *out_ns)
{
	uint64_t v;
	int rc =
	    parse_with_units(s, dur_units, sizeof(dur_units) / sizeof(dur_units[0]), false, &v);
	if (rc)
		return rc;
	if (v > (uint64_t)INT64_MAX / 2)
		return -ERANGE;
	*out_ns = (int64_t)v;
	return 0;
}
