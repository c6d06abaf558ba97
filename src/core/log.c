#include "core/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "core/clock.h"
#include "core/util.h"

#define RL_PER_WINDOW 5
#define RL_WINDOW_NS  FG_NS_PER_SEC

static _Atomic int cur_level = FG_LOG_INFO;
static const char *const level_names[] = {"error", "warn", "info", "debug"};

void fg_log_set_level(enum fg_log_level lvl)
{
	atomic_store(&cur_level, (int)lvl);
}

enum fg_log_level fg_log_get_level(void)
{
	return (enum fg_log_level)atomic_load_explicit(&cur_level, memory_order_relaxed);
}

int fg_log_parse_level(const char *s, enum fg_log_level *out)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (strcmp(s, level_names[i]) == 0) {
			*out = (enum fg_log_level)i;
			return 0;
		}
	}
	return -EINVAL;
}

__attribute__((format(printf, 2, 0))) static void vlog(enum fg_log_level lvl, const char *fmt,
						       va_list ap)
{
	char line[1024];
	struct timeval tv;
	struct tm tm;
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s ",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
			 tm.tm_sec, (long)(tv.tv_usec / 1000), level_names[lvl]);
	if (n < 0)
		return;
	int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	if (m < 0)
		return;
	size_t len = (size_t)n + FG_MIN((size_t)m, sizeof(line) - (size_t)n - 2);
	line[len++] = '\n';
	/* One write per line so lines from several threads do not interleave. */
	fwrite(line, 1, len, stderr);
}

void fg_log(enum fg_log_level lvl, const char *fmt, ...)
{
	if ((int)lvl > atomic_load_explicit(&cur_level, memory_order_relaxed))
		return;
	va_list ap;
	va_start(ap, fmt);
	vlog(lvl, fmt, ap);
	va_end(ap);
}

void fg_log_rl_emit(struct fg_log_rl_state *st, enum fg_log_level lvl, const char *fmt, ...)
{
	int64_t now = fg_now_ns();
	int64_t start = atomic_load_explicit(&st->window_start_ns, memory_order_relaxed);
	if (now - start >= RL_WINDOW_NS &&
	    atomic_compare_exchange_strong(&st->window_start_ns, &start, now)) {
		uint32_t dropped = atomic_exchange(&st->suppressed, 0);
		atomic_store(&st->in_window, 0);
		if (dropped)
			fg_log(lvl, "(%u similar messages suppressed)", dropped);
	}
	if (atomic_fetch_add(&st->in_window, 1) >= RL_PER_WINDOW) {
		atomic_fetch_add(&st->suppressed, 1);
		return;
	}
	va_list ap;
	va_start(ap, fmt);
	vlog(lvl, fmt, ap);
	va_end(ap);
}
