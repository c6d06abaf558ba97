/* The kernel plane as the agent drives it: desired state (firewall policies
 * + kernel forwards) in, one table of ours out, with commit-confirm.
 *
 *   kp = fg_kplane_new("flowgate", NULL, NULL);         // libnftables backend
 *   fg_kplane_apply(kp, &doc, fwds, nfwds, now, 60 s)    // on each `apply`
 *   fg_kplane_confirm(kp)                                // server reached again
 *   fg_kplane_tick(kp, now)                              // from a timer: rolls
 *                                                        // back when overdue
 *   fg_kplane_free(kp)                                   // removes our table
 *
 * Times are CLOCK_MONOTONIC ns supplied by the caller, so the state machine
 * runs on any loop and in unit tests. Blocking (netlink): call from the
 * control thread, never from a data-path loop. */
#ifndef FG_KERNEL_PLANE_H
#define FG_KERNEL_PLANE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/strbuf.h"
#include "fwd/config.h"
#include "kernel/nft.h"
#include "kernel/policy.h"

/* A firewall backend (STYLE: interfaces as ops tables). The real one is
 * libnftables through fg_nft; tests plug in a fake. Each returns 0 or
 * -errno with a message in err. */
struct fg_kplane_backend {
	int (*check)(void *b, const char *script, char *err, size_t errlen);
	/* one transaction: all or nothing */
	int (*run)(void *b, const char *script, char *err, size_t errlen);
	/* *out (fg_malloc'd) = a script that restores the table as it is now */
	int (*snapshot)(void *b, char **out, char *err, size_t errlen);
	int (*remove)(void *b, char *err, size_t errlen);
	int (*counters)(void *b, struct fg_nft_counter **out, size_t *n, char *err, size_t errlen);
	/* optional: the live table as nft lists it (stateless); -ENOENT when
	 * there is none */
	int (*list)(void *b, struct fg_strbuf *out, char *err, size_t errlen);
};

struct fg_kplane;

/* table: our table name (copied). ops NULL = libnftables (backend ignored);
 * else ops/backend are borrowed. NULL on a bad table name or no memory. */
struct fg_kplane *fg_kplane_new(const char *table, const struct fg_kplane_backend *ops,
				void *backend);
/* Removes our table (exactly what we added) and frees. */
void fg_kplane_free(struct fg_kplane *kp);

enum fg_kplane_result {
	FG_KPLANE_UNCHANGED = 0, /* the same script already runs: nothing was done */
	FG_KPLANE_APPLIED = 1,
};

/* Compiles fw (may be NULL) + fwds (only enabled engine-kernel ones count)
 * and applies the script in one transaction after a dry run. Returns
 * FG_KPLANE_UNCHANGED, FG_KPLANE_APPLIED, or -errno with the compiler's or
 * nft's error in err and nothing changed.
 *
 * confirm_ns > 0 arms commit-confirm: unless fg_kplane_confirm() is called
 * before now_ns + confirm_ns, fg_kplane_tick() restores the last confirmed
 * table. Several applies while unconfirmed keep the same restore point
 * (the table as it was before the first of them). */
int fg_kplane_apply(struct fg_kplane *kp, const struct fg_fw_doc *fw,
		    const struct fg_forward_cfg *fwds, size_t nfwds, int64_t now_ns,
		    int64_t confirm_ns, char *err, size_t errlen);

/* Nothing to run any more: deletes our table (one transaction), with the
 * same restore point and commit-confirm as fg_kplane_apply. UNCHANGED when
 * nothing of ours runs. */
int fg_kplane_clear(struct fg_kplane *kp, int64_t now_ns, int64_t confirm_ns, char *err,
		    size_t errlen);

/* Compiles fw + fwds and dry-runs the script: what fg_kplane_apply would
 * say, without changing anything. 0 or -errno with err. */
int fg_kplane_check(struct fg_kplane *kp, const struct fg_fw_doc *fw,
		    const struct fg_forward_cfg *fwds, size_t nfwds, char *err, size_t errlen);

/* The live table as nft lists it without counter values, appended to out
 * ("" when there is no table). -ENOTSUP if the backend cannot list. */
int fg_kplane_list(struct fg_kplane *kp, struct fg_strbuf *out, char *err, size_t errlen);

/* The server was reached after the apply: keep it. */
void fg_kplane_confirm(struct fg_kplane *kp);

/* true while an apply waits for confirmation; *deadline_ns gets when. */
bool fg_kplane_pending(const struct fg_kplane *kp, int64_t *deadline_ns);

/* Rolls back when the confirmation is overdue. Returns 1 if it rolled back,
 * 0 if nothing was due, -errno if the rollback failed (err says why; it is
 * tried again on the next tick). */
int fg_kplane_tick(struct fg_kplane *kp, int64_t now_ns, char *err, size_t errlen);

/* The script that runs now (NULL before the first apply). */
const char *fg_kplane_current(const struct fg_kplane *kp);

/* Named counters of our table (see fg_nft_counters). */
int fg_kplane_counters(struct fg_kplane *kp, struct fg_nft_counter **out, size_t *n, char *err,
		       size_t errlen);

#endif
