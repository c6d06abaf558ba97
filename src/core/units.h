/* Parsers for the units operators type: rates, sizes, durations. Pure. */
#ifndef FG_CORE_UNITS_H
#define FG_CORE_UNITS_H

#include <stdint.h>

/* Rate in bytes/s. Plain integer = bytes/s; kbit/mbit/gbit (bits, x1000),
 * kbps/mbps/gbps (bits, x1000), K/KB/M/MB/G/GB (bytes, x1000),
 * KiB/MiB/GiB (bytes, x1024); an optional "/s" suffix is accepted. Units
 * are case-insensitive. Returns 0 or -EINVAL / -ERANGE. */
int fg_parse_rate(const char *s, uint64_t *out);
/* Size in bytes, the same units as fg_parse_rate. */
int fg_parse_size(const char *s, uint64_t *out);
/* Duration: plain integer = seconds; ms, s, m, h. Returns ns. */
int fg_parse_duration(const char *s, int64_t *out_ns);

#endif
