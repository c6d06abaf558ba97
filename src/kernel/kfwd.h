/* Kernel forwards of one owner (`flowgate forward`, the agent): the forwards
 * with engine kernel of a forward set, kept in one table of ours, with the IP
 * forwarding they need and their byte counters.
 *
 * Apply in two steps around the proxy engine's apply, so a set is either
 * taken whole or not at all:
 *     fg_kfwd_prepare(k, set, &script)   compile + nft dry run; changes nothing
 *     fg_engine_apply(engine, set)       proxy forwards (may fail: binding)
 *     fg_kfwd_commit(k, set, script)     one nft transaction
 *
 * Blocking (netlink, sysctl): control thread only. */
#ifndef FG_KERNEL_KFWD_H
#define FG_KERNEL_KFWD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/strbuf.h"
#include "fwd/config.h"

struct fg_kfwd;

/* table: e.g. "flowgate_forward" (copied). NULL on a bad name / no memory. */
struct fg_kfwd *fg_kfwd_new(const char *table);
/* Deletes our table if anything was applied, sets back the IP forwarding
 * sysctls it turned on, frees. */
void fg_kfwd_free(struct fg_kfwd *k);

/* true if set holds an enabled forward with engine kernel. */
bool fg_kfwd_any(const struct fg_forward_set *set);

/* Compiles the kernel forwards of set and dry-runs the script. *script
 * (owned, fg_free; give it to fg_kfwd_commit) is NULL when there is nothing
 * to do (no kernel forward now, none applied before). Returns 0 or -errno,
 * err naming the forward or quoting nft. */
int fg_kfwd_prepare(struct fg_kfwd *k, const struct fg_forward_set *set, char **script, char *err,
		    size_t errlen);

/* Turns on IP forwarding if needed, applies script in one transaction and
 * remembers which forwards run (for counters). Takes script (even on
 * error). */
int fg_kfwd_commit(struct fg_kfwd *k, const struct fg_forward_set *set, char *script, char *err,
		   size_t errlen);

/* Reads the counters once (one netlink dump) for the lookups that follow. */
int fg_kfwd_refresh(struct fg_kfwd *k, char *err, size_t errlen);
/* Counters of a running kernel forward from the last refresh: nft's L3
 * bytes (up = client to target) and connections (first packets DNATed: TCP
 * connections, UDP conntrack flows). -ENOENT if no such kernel forward runs. */
int fg_kfwd_bytes(const struct fg_kfwd *k, const char *name, uint64_t *up, uint64_t *down,
		  uint64_t *conns);

/* An fg_engine_set_metrics_hook() callback: writes the samples of every
 * running kernel forward for flowgate_forward_bytes_total (refreshing the
 * counters first) and flowgate_forward_connections_total. */
void fg_kfwd_metrics_cb(void *k, const char *family, struct fg_strbuf *out);

#endif
