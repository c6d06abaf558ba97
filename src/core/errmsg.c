#include "core/errmsg.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

int fg_errf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	/* values are quoted raw: keep the message on one line whatever they hold */
	for (char *p = err; errlen && *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	return -EINVAL;
}
