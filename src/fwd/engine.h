/* The forwarding engine: worker threads that move TCP and UDP, driven from
 * one control thread. The agent and `flowgate forward` both embed it.
 *
 * Threading: every function here is called from the control thread (the
 * one that owns `ctl_loop`). Workers are internal. */
#ifndef FG_FWD_ENGINE_H
#define FG_FWD_ENGINE_H

#include <stddef.h>

#include "core/strbuf.h"
#include "fwd/config.h"

struct fg_loop;
struct fg_engine;

struct fg_engine_opts {
	unsigned workers;	  /* 0 = one per core */
	size_t pipe_size;	  /* 0 = default (1 MiB, or $FLOWGATE_PIPE_SIZE) */
	struct fg_loop *ctl_loop; /* borrowed: the control thread's loop */
};

struct fg_engine *fg_engine_new(const struct fg_engine_opts *opts);
/* Stops the workers, closes everything. */
void fg_engine_free(struct fg_engine *e);

/* Makes `set` the running configuration: forwards equal to the running
 * ones are untouched; changed ones are rebound; removed ones stop and
 * close their connections. All new sockets are bound before anything
 * changes: on failure (port in use...) returns -errno with err naming the
 * forward and address, and what runs is left exactly as it was. */
int fg_engine_apply(struct fg_engine *e, const struct fg_forward_set *set, char *err,
		    size_t errlen);

/* Appends the Prometheus text of every running forward. */
void fg_engine_metrics(struct fg_engine *e, struct fg_strbuf *out);

/* Forwards the engine does not run (engine kernel) report in the same
 * families: the hook is called inside flowgate_forward_bytes_total and then
 * inside flowgate_forward_connections_total (family names the one), so the
 * exposition keeps one # TYPE line per family. data is borrowed. */
typedef void (*fg_engine_metrics_cb)(void *data, const char *family, struct fg_strbuf *out);
void fg_engine_set_metrics_hook(struct fg_engine *e, fg_engine_metrics_cb cb, void *data);

struct fg_resolver;
/* The name resolver of the control loop (net/resolver.h), for another
 * engine on the same loop to share (the tunnel engine): one c-ares
 * channel per loop. Borrowed: valid until fg_engine_free. */
struct fg_resolver *fg_engine_resolver(struct fg_engine *e);

/* Counters of one forward, summed over workers. */
struct fg_forward_counters {
	uint64_t bytes_up, bytes_down, conns_total, conns_active;
	uint64_t refused_max_conns, refused_per_ip, refused_no_target;
};

/* Counters of the running forward `name`, summed over workers: monotonic
 * while a forward of that name runs (a changed forward keeps them; one
 * removed and added again starts from 0). Returns 0 or -ENOENT. */
int fg_engine_counters(struct fg_engine *e, const char *name, struct fg_forward_counters *out);

#endif
