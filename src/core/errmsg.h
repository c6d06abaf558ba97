/* One-line error messages for validators and loaders. */
#ifndef FG_CORE_ERRMSG_H
#define FG_CORE_ERRMSG_H

#include <stddef.h>

/* Formats the message into err (errlen may be 0), replaces control
 * characters with '?' so a quoted raw value keeps it on one line, and
 * returns -EINVAL: `return fg_errf(err, errlen, "%s.port: ...", path);`. */
int fg_errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
