/* Logging to stderr with levels. fg_log_rl() is for the data path: at most
 * a few lines per second per call site, with a count of what was dropped. */
#ifndef FG_CORE_LOG_H
#define FG_CORE_LOG_H

#include <stdatomic.h>
#include <stdint.h>

enum fg_log_level { FG_LOG_ERROR = 0, FG_LOG_WARN, FG_LOG_INFO, FG_LOG_DEBUG };

struct fg_log_rl_state {
	_Atomic int64_t window_start_ns;
	_Atomic uint32_t in_window;
	_Atomic uint32_t suppressed;
};

void fg_log_set_level(enum fg_log_level lvl);
enum fg_log_level fg_log_get_level(void);
/* Returns 0, or -EINVAL for an unknown level name. */
int fg_log_parse_level(const char *s, enum fg_log_level *out);
void fg_log(enum fg_log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void fg_log_rl_emit(struct fg_log_rl_state *st, enum fg_log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define fg_err(...)  fg_log(FG_LOG_ERROR, __VA_ARGS__)
#define fg_warn(...) fg_log(FG_LOG_WARN, __VA_ARGS__)
#define fg_info(...) fg_log(FG_LOG_INFO, __VA_ARGS__)
#define fg_dbg(...)                                                                                \
	do {                                                                                       \
		if (fg_log_get_level() >= FG_LOG_DEBUG)                                            \
			fg_log(FG_LOG_DEBUG, __VA_ARGS__);                                         \
	} while (0)

/* Rate-limited log: one static state per call site. */
#define fg_log_rl(lvl, ...)                                                                        \
	do {                                                                                       \
		static struct fg_log_rl_state fg__rl;                                              \
		if (fg_log_get_level() >= (lvl))                                                   \
			fg_log_rl_emit(&fg__rl, (lvl), __VA_ARGS__);                               \
	} while (0)

#endif
