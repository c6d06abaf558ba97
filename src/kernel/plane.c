#include "kernel/plane.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/log.h"
#include "kernel/nft_compile.h"

struct fg_kplane {
	char table[FG_NFT_TABLE_MAX + 1];
	const struct fg_kplane_backend *ops;
	void *b;
	struct fg_nft *nft; /* owned when the libnftables backend is used */
	char *cur;	    /* owned: the script that runs */
	char *restore;	    /* owned: restores the last confirmed table; NULL = none pending */
	int64_t deadline_ns;
};

/* ---- the libnftables backend -------------------------------------------- */

static int nft_check(void *b, const char *script, char *err, size_t errlen)
{
	return fg_nft_check(b, script, err, errlen);
}

static int nft_run(void *b, const char *script, char *err, size_t errlen)
{
	return fg_nft_run(b, script, err, errlen);
}

static int nft_snapshot(void *b, char **out, char *err, size_t errlen)
{
	return fg_nft_snapshot(b, out, err, errlen);
}

static int nft_remove(void *b, char *err, size_t errlen)
{
	return fg_nft_remove(b, err, errlen);
}

static int nft_counters(void *b, struct fg_nft_counter **out, size_t *n, char *err, size_t errlen)
{
	return fg_nft_counters(b, out, n, err, errlen);
}

static int nft_list(void *b, struct fg_strbuf *out, char *err, size_t errlen)
{
	return fg_nft_list(b, false, true, out, err, errlen);
}

static const struct fg_kplane_backend nft_backend = {
    .list = nft_list,
    .check = nft_check,
    .run = nft_run,
    .snapshot = nft_snapshot,
    .remove = nft_remove,
    .counters = nft_counters,
};

/* ---- the plane -------------------------------------------------------------- */

struct fg_kplane *fg_kplane_new(const char *table, const struct fg_kplane_backend *ops,
				void *backend)
{
	if (!fg_nft_table_name_ok(table))
		return NULL;
	struct fg_kplane *kp = fg_calloc(1, sizeof(*kp));
	if (!kp)
		return NULL;
	snprintf(kp->table, sizeof(kp->table), "%s", table);
	if (ops) {
		kp->ops = ops;
		kp->b = backend;
	} else {
		kp->nft = fg_nft_new(table);
		if (!kp->nft) {
			fg_free(kp);
			return NULL;
		}
		kp->ops = &nft_backend;
		kp->b = kp->nft;
	}
	return kp;
}

void fg_kplane_free(struct fg_kplane *kp)
{
	if (!kp)
		return;
	char err[1024];
	if (kp->cur && kp->ops->remove(kp->b, err, sizeof(err)) < 0)
		fg_err("kernel plane: cannot remove table inet %s: %s", kp->table, err);
	fg_nft_free(kp->nft);
	fg_free(kp->cur);
	fg_free(kp->restore);
	fg_free(kp);
}

/* Makes script (s, taken) what runs: dry run, restore point, one
 * transaction, commit-confirm. See fg_kplane_apply. */
static int install(struct fg_kplane *kp, struct fg_strbuf *s, int64_t now_ns, int64_t confirm_ns,
		   char *err, size_t errlen)
{
	char *restore = NULL;
	int rc;
	/* the same desired state twice changes nothing (and arms nothing) */
	if (kp->cur && strcmp(kp->cur, s->s) == 0)
		return FG_KPLANE_UNCHANGED;
	if ((rc = kp->ops->check(kp->b, s->s, err, errlen)) < 0)
		return rc;
	/* the restore point is the last confirmed table: keep it while a
	 * confirmation is pending */
	if (confirm_ns > 0 && !kp->restore &&
	    (rc = kp->ops->snapshot(kp->b, &restore, err, errlen)) < 0)
		return rc;
	if ((rc = kp->ops->run(kp->b, s->s, err, errlen)) < 0) {
		fg_free(restore);
		return rc;
	}
	fg_free(kp->cur);
	kp->cur = s->s;
	s->s = NULL;
	if (confirm_ns > 0) {
		if (restore)
			kp->restore = restore;
		kp->deadline_ns = now_ns + confirm_ns;
	}
	return FG_KPLANE_APPLIED;
}

int fg_kplane_apply(struct fg_kplane *kp, const struct fg_fw_doc *fw,
		    const struct fg_forward_cfg *fwds, size_t nfwds, int64_t now_ns,
		    int64_t confirm_ns, char *err, size_t errlen)
{
	struct fg_strbuf s;
	struct fg_nft_spec spec = {.table = kp->table, .fw = fw, .fwds = fwds, .nfwds = nfwds};
	fg_strbuf_init(&s);
	int rc = fg_nft_compile(&spec, &s, err, errlen);
	if (rc == 0)
		rc = install(kp, &s, now_ns, confirm_ns, err, errlen);
	fg_strbuf_deinit(&s);
	return rc;
}

int fg_kplane_clear(struct fg_kplane *kp, int64_t now_ns, int64_t confirm_ns, char *err,
		    size_t errlen)
{
	if (!kp->cur)
		return FG_KPLANE_UNCHANGED; /* nothing of ours was ever there */
	struct fg_strbuf s;
	fg_strbuf_init(&s);
	fg_nft_compile_delete(kp->table, &s);
	int rc = s.oom ? -ENOMEM : install(kp, &s, now_ns, confirm_ns, err, errlen);
	if (rc == -ENOMEM)
		snprintf(err, errlen, "out of memory");
	fg_strbuf_deinit(&s);
	return rc;
}

int fg_kplane_check(struct fg_kplane *kp, const struct fg_fw_doc *fw,
		    const struct fg_forward_cfg *fwds, size_t nfwds, char *err, size_t errlen)
{
	struct fg_strbuf s;
	struct fg_nft_spec spec = {.table = kp->table, .fw = fw, .fwds = fwds, .nfwds = nfwds};
	fg_strbuf_init(&s);
	int rc = fg_nft_compile(&spec, &s, err, errlen);
	if (!rc)
		rc = kp->ops->check(kp->b, s.s, err, errlen);
	fg_strbuf_deinit(&s);
	return rc;
}

int fg_kplane_list(struct fg_kplane *kp, struct fg_strbuf *out, char *err, size_t errlen)
{
	if (!kp->ops->list) {
		snprintf(err, errlen, "this firewall backend cannot list its table");
		return -ENOTSUP;
	}
	int rc = kp->ops->list(kp->b, out, err, errlen);
	return rc == -ENOENT ? 0 : rc;
}

void fg_kplane_confirm(struct fg_kplane *kp)
{
	fg_free(kp->restore);
	kp->restore = NULL;
}

bool fg_kplane_pending(const struct fg_kplane *kp, int64_t *deadline_ns)
{
	if (kp->restore && deadline_ns)
		*deadline_ns = kp->deadline_ns;
	return kp->restore != NULL;
}

int fg_kplane_tick(struct fg_kplane *kp, int64_t now_ns, char *err, size_t errlen)
{
	if (!kp->restore || now_ns < kp->deadline_ns)
		return 0;
	int rc = kp->ops->run(kp->b, kp->restore, err, errlen);
	if (rc < 0)
		return rc;
	fg_warn("kernel plane: change to table inet %s not confirmed in time: previous table "
		"restored",
		kp->table);
	fg_free(kp->cur);
	kp->cur = kp->restore;
	kp->restore = NULL;
	return 1;
}

const char *fg_kplane_current(const struct fg_kplane *kp)
{
	return kp->cur;
}

int fg_kplane_counters(struct fg_kplane *kp, struct fg_nft_counter **out, size_t *n, char *err,
		       size_t errlen)
{
	return kp->ops->counters(kp->b, out, n, err, errlen);
}
