#include "kernel/kfwd.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/log.h"
#include "core/metrics.h"
#include "kernel/nft.h"
#include "kernel/nft_compile.h"

struct fg_kfwd {
	char table[FG_NFT_TABLE_MAX + 1];
	struct fg_nft *nft;		/* owned; created on the first kernel forward */
	unsigned fwd_changed;		/* IP forwarding sysctls we turned on */
	char (*names)[FG_NAME_MAX + 1]; /* owned: kernel forwards running */
	size_t nnames;
	struct fg_nft_counter *ctrs; /* owned: last refresh */
	size_t nctrs;
};

struct fg_kfwd *fg_kfwd_new(const char *table)
{
	if (!fg_nft_table_name_ok(table))
		return NULL;
	struct fg_kfwd *k = fg_calloc(1, sizeof(*k));
	if (k)
		snprintf(k->table, sizeof(k->table), "%s", table);
	return k;
}

void fg_kfwd_free(struct fg_kfwd *k)
{
	if (!k)
		return;
	if (k->nft) {
		/* exactly what we added: our table, and the sysctls we turned on */
		char err[1024];
		if (fg_nft_current(k->nft) || k->nnames) {
			if (fg_nft_remove(k->nft, err, sizeof(err)) < 0)
				fg_err("kernel forwards: cannot remove table inet %s: %s", k->table,
				       err);
			else
				fg_info("kernel forwards: table inet %s removed", k->table);
		}
		fg_nft_free(k->nft);
	}
	fg_kernel_forwarding_restore(k->fwd_changed);
	fg_free(k->names);
	fg_free(k->ctrs);
	fg_free(k);
}

bool fg_kfwd_any(const struct fg_forward_set *set)
{
	for (size_t i = 0; i < set->n; i++)
		if (set->v[i].engine == FG_ENGINE_KERNEL && set->v[i].enabled)
			return true;
	return false;
}

int fg_kfwd_prepare(struct fg_kfwd *k, const struct fg_forward_set *set, char **script, char *err,
		    size_t errlen)
{
	*script = NULL;
	if (!fg_kfwd_any(set) && !k->nft)
		return 0;
	if (!k->nft && !(k->nft = fg_nft_new(k->table))) {
		snprintf(err, errlen, "kernel forwards: cannot create an nftables context");
		return -ENOMEM;
	}
	struct fg_strbuf b;
	fg_strbuf_init(&b);
	struct fg_nft_spec spec = {.table = k->table, .fwds = set->v, .nfwds = set->n};
	int rc = fg_nft_compile(&spec, &b, err, errlen);
	if (rc == 0 && (rc = fg_nft_check(k->nft, b.s, err, errlen)) < 0) {
		char e2[1024];
		snprintf(e2, sizeof(e2), "kernel forwards: nft rejected the ruleset: %s", err);
		snprintf(err, errlen, "%s", e2);
	}
	if (rc < 0) {
		fg_strbuf_deinit(&b);
		return rc;
	}
	*script = b.s;
	return 0;
}

int fg_kfwd_commit(struct fg_kfwd *k, const struct fg_forward_set *set, char *script, char *err,
		   size_t errlen)
{
	if (!script)
		return 0;
	struct fg_nft_spec spec = {.table = k->table, .fwds = set->v, .nfwds = set->n};
	char(*names)[FG_NAME_MAX + 1] = fg_calloc(set->n + 1, sizeof(*names));
	int rc = names
		     ? fg_kernel_forwarding_enable(fg_nft_forwarding_needed(&spec), &k->fwd_changed)
		     : -ENOMEM;
	if (rc < 0)
		snprintf(err, errlen, "kernel forwards: cannot enable IP forwarding: %s",
			 strerror(-rc));
	else
		rc = fg_nft_apply(k->nft, script, err, errlen);
	fg_free(script);
	if (rc < 0) {
		fg_free(names);
		return rc;
	}
	size_t n = 0;
	for (size_t i = 0; i < set->n; i++)
		if (set->v[i].engine == FG_ENGINE_KERNEL && set->v[i].enabled)
			snprintf(names[n++], sizeof(names[0]), "%s", set->v[i].name);
	fg_free(k->names);
	k->names = names;
	k->nnames = n;
	fg_info("kernel forwards: %zu in table inet %s", n, k->table);
	return 0;
}

int fg_kfwd_refresh(struct fg_kfwd *k, char *err, size_t errlen)
{
	struct fg_nft_counter *c = NULL;
	size_t n = 0;
	if (!k->nft || !k->nnames)
		return 0;
	int rc = fg_nft_counters(k->nft, &c, &n, err, errlen);
	if (rc < 0)
		return rc;
	fg_free(k->ctrs);
	k->ctrs = c;
	k->nctrs = n;
	return 0;
}

/* which: 0 up bytes, 1 down bytes, 2 connections (packets of _conns) */
static uint64_t counter_value(const struct fg_kfwd *k, const char *name, int which)
{
	char cn[FG_NAME_MAX + 16];
	if (which == 2)
		fg_nft_fwd_conns_counter(name, cn, sizeof(cn));
	else
		fg_nft_fwd_counter(name, which == 0, cn, sizeof(cn));
	for (size_t i = 0; i < k->nctrs; i++)
		if (strcmp(k->ctrs[i].name, cn) == 0)
			return which == 2 ? k->ctrs[i].packets : k->ctrs[i].bytes;
	return 0;
}

int fg_kfwd_bytes(const struct fg_kfwd *k, const char *name, uint64_t *up, uint64_t *down,
		  uint64_t *conns)
{
	for (size_t i = 0; i < k->nnames; i++) {
		if (strcmp(k->names[i], name) == 0) {
			*up = counter_value(k, name, 0);
			*down = counter_value(k, name, 1);
			*conns = counter_value(k, name, 2);
			return 0;
		}
	}
	return -ENOENT;
}

void fg_kfwd_metrics_cb(void *data, const char *family, struct fg_strbuf *b)
{
	struct fg_kfwd *k = data;
	char err[1024];
	if (!k->nnames)
		return;
	if (strcmp(family, "flowgate_forward_bytes_total") == 0) {
		/* the first family of a scrape: read once for both */
		if (fg_kfwd_refresh(k, err, sizeof(err)) < 0) {
			fg_warn("kernel forwards: cannot read counters: %s", err);
			return;
		}
		for (size_t i = 0; i < k->nnames; i++) {
			for (int up = 1; up >= 0; up--) {
				const char *l[] = {"forward", k->names[i], "direction",
						   up ? "up" : "down", NULL};
				fg_prom_sample(b, family, l, counter_value(k, k->names[i], !up));
			}
		}
	} else if (strcmp(family, "flowgate_forward_connections_total") == 0) {
		for (size_t i = 0; i < k->nnames; i++) {
			const char *l[] = {"forward", k->names[i], NULL};
			fg_prom_sample(b, family, l, counter_value(k, k->names[i], 2));
		}
	}
}
