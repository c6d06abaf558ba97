/* The applier: our nft scripts into the kernel through libnftables.
 *
 * One fg_nft owns one table (inet <table>) and never touches another: it
 * only ever runs scripts from the compiler (nft_compile.h), which begin by
 * replacing that table, and `list`/`delete` commands naming it. It never
 * flushes the ruleset.
 *
 * Every call blocks on netlink: call from a control thread, never from a
 * data-path loop. Not thread-safe: one thread uses one fg_nft. */
#ifndef FG_KERNEL_NFT_H
#define FG_KERNEL_NFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/strbuf.h"

struct fg_nft;

/* table: borrowed only during the call (copied). NULL on a bad name or
 * out of memory. */
struct fg_nft *fg_nft_new(const char *table);
void fg_nft_free(struct fg_nft *n);

/* Runs script as a dry run (parse, evaluate, and the kernel's own check of
 * the transaction) without changing anything. Returns 0, or -EINVAL with
 * nft's error text in err. */
int fg_nft_check(struct fg_nft *n, const char *script, char *err, size_t errlen);

/* Checks, then applies script in one transaction. Before it, the live
 * table is saved so fg_nft_rollback() can restore it. On failure nothing
 * changed and err holds nft's error text (-EINVAL). */
int fg_nft_apply(struct fg_nft *n, const char *script, char *err, size_t errlen);

/* Applies script in one transaction without a dry run or a snapshot (the
 * caller checked it; used to restore a saved table). */
int fg_nft_run(struct fg_nft *n, const char *script, char *err, size_t errlen);

/* *out (owned, fg_free) gets a script that puts the live table back as it
 * is now: its listing after a delete, or only the delete if there is no
 * table. */
int fg_nft_snapshot(struct fg_nft *n, char **out, char *err, size_t errlen);

/* Restores what the table was before the last successful fg_nft_apply (the
 * table as it was listed then, or no table). -ENOENT if there is nothing to
 * roll back to. Used by commit-confirm. */
int fg_nft_rollback(struct fg_nft *n, char *err, size_t errlen);

/* Deletes our table if it exists (and nothing else). */
int fg_nft_remove(struct fg_nft *n, char *err, size_t errlen);

/* Appends `list table inet <table>` to out: nft's text, or JSON with json;
 * stateless omits counter values (for diffs). -ENOENT if the table does
 * not exist. */
int fg_nft_list(struct fg_nft *n, bool json, bool stateless, struct fg_strbuf *out, char *err,
		size_t errlen);

/* The last script applied through this handle (NULL if none). */
const char *fg_nft_current(const struct fg_nft *n);

struct fg_nft_counter {
	char name[96];
	uint64_t packets, bytes;
};

/* Reads every named counter of our table. *out is an owned array (fg_free).
 * A missing table gives 0 counters. */
int fg_nft_counters(struct fg_nft *n, struct fg_nft_counter **out, size_t *nout, char *err,
		    size_t errlen);

/* Renders script as nft would list it, by applying it in a private network
 * namespace of a short-lived child process (nothing of this host is
 * touched). stateless as for fg_nft_list. Needs CAP_SYS_ADMIN; returns
 * -errno (err says why) when that is not possible. */
int fg_nft_normalize(const char *table, const char *script, struct fg_strbuf *out, char *err,
		     size_t errlen);

/* Unified line diff of a and b ("--- label_a", "+++ label_b", "-", "+", " "
 * lines, 3 lines of context). Appends nothing when they are equal. */
void fg_text_diff(const char *a, const char *b, const char *label_a, const char *label_b,
		  struct fg_strbuf *out);

/* IP forwarding for kernel forwards. need: bit 0 IPv4, bit 1 IPv6.
 * Enables what is needed and not on; *changed gets the bits it turned on
 * (to give back to fg_kernel_forwarding_restore). Logs what it did. */
int fg_kernel_forwarding_enable(unsigned need, unsigned *changed);
void fg_kernel_forwarding_restore(unsigned changed);

#endif
