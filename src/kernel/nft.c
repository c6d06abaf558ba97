#include "kernel/nft.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <nftables/libnftables.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/log.h"
#include "kernel/nft_compile.h"

struct fg_nft {
	struct nft_ctx *ctx;
	char table[FG_NFT_TABLE_MAX + 1];
	char *cur;  /* owned: last applied script */
	char *prev; /* owned: script restoring the table as it was before cur */
	bool have_prev;
};

static struct nft_ctx *ctx_new(void)
{
	struct nft_ctx *ctx = nft_ctx_new(NFT_CTX_DEFAULT);
	if (!ctx)
		return NULL;
	/* no file of this host is ever read by a script of ours */
	nft_ctx_clear_include_paths(ctx);
	if (nft_ctx_buffer_output(ctx) || nft_ctx_buffer_error(ctx)) {
		nft_ctx_free(ctx);
		return NULL;
	}
	return ctx;
}

struct fg_nft *fg_nft_new(const char *table)
{
	if (!fg_nft_table_name_ok(table)) {
		errno = EINVAL;
		return NULL;
	}
	struct fg_nft *n = fg_calloc(1, sizeof(*n));
	if (!n)
		return NULL;
	snprintf(n->table, sizeof(n->table), "%s", table);
	n->ctx = ctx_new();
	if (!n->ctx) {
		fg_free(n);
		errno = ENOMEM;
		return NULL;
	}
	return n;
}

void fg_nft_free(struct fg_nft *n)
{
	if (!n)
		return;
	nft_ctx_free(n->ctx);
	fg_free(n->cur);
	fg_free(n->prev);
	fg_free(n);
}

const char *fg_nft_current(const struct fg_nft *n)
{
	return n->cur;
}

static int write_all(int fd, const char *s, size_t n)
{
	while (n) {
		ssize_t w = write(fd, s, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		s += w;
		n -= (size_t)w;
	}
	return 0;
}

/* nft's error text, trimmed of the trailing newline, with the memfd's
 * path ("/proc/self/fd/N:") shown as "ruleset:". */
static void copy_error(struct nft_ctx *ctx, char *err, size_t errlen)
{
	const char *e = nft_ctx_get_error_buffer(ctx);
	if (!e || !*e)
		e = "nft failed without a message";
	size_t l = 0;
	while (*e && l + 1 < errlen) {
		if (strncmp(e, "/proc/self/fd/", 14) == 0) {
			const char *p = e + 14;
			while (*p >= '0' && *p <= '9')
				p++;
			if (*p == ':') {
				l += (size_t)snprintf(err + l, errlen - l, "ruleset");
				if (l >= errlen) {
					l = errlen - 1;
					break;
				}
				e = p;
				continue;
			}
		}
		err[l++] = *e++;
	}
	err[l] = '\0';
	while (l && err[l - 1] == '\n')
		err[--l] = '\0';
}

/* Runs cmd; output (if any) appended to out. Every call resets the buffers
 * (reading a buffer rewinds it). Scripts (several lines) go through a
 * memfd: nft 1.0.6 quotes the wrong source line in errors about a buffer,
 * and the line is what tells an operator which rule is wrong. */
static int run(struct nft_ctx *ctx, const char *cmd, bool dry, unsigned flags,
	       struct fg_strbuf *out, char *err, size_t errlen)
{
	nft_ctx_set_dry_run(ctx, dry);
	nft_ctx_output_set_flags(ctx, flags);
	int rc, fd = strchr(cmd, '\n') ? memfd_create("ruleset", MFD_CLOEXEC) : -1;
	if (fd >= 0 && write_all(fd, cmd, strlen(cmd)) == 0) {
		char path[64];
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		rc = nft_run_cmd_from_filename(ctx, path);
	} else {
		rc = nft_run_cmd_from_buffer(ctx, cmd);
	}
	if (fd >= 0)
		close(fd);
	const char *o = nft_ctx_get_output_buffer(ctx);
	if (rc != 0) {
		copy_error(ctx, err, errlen);
		return -EINVAL;
	}
	(void)nft_ctx_get_error_buffer(ctx);
	if (out && o)
		fg_strbuf_puts(out, o);
	return 0;
}

int fg_nft_check(struct fg_nft *n, const char *script, char *err, size_t errlen)
{
	return run(n->ctx, script, true, 0, NULL, err, errlen);
}

int fg_nft_list(struct fg_nft *n, bool json, bool stateless, struct fg_strbuf *out, char *err,
		size_t errlen)
{
	char cmd[96];
	snprintf(cmd, sizeof(cmd), "list table inet %s", n->table);
	unsigned flags =
	    (json ? NFT_CTX_OUTPUT_JSON : 0) | (stateless ? NFT_CTX_OUTPUT_STATELESS : 0);
	int rc = run(n->ctx, cmd, false, flags, out, err, errlen);
	if (rc && strstr(err, "No such file or directory"))
		return -ENOENT;
	return rc;
}

int fg_nft_run(struct fg_nft *n, const char *script, char *err, size_t errlen)
{
	return run(n->ctx, script, false, 0, NULL, err, errlen);
}

int fg_nft_snapshot(struct fg_nft *n, char **out, char *err, size_t errlen)
{
	struct fg_strbuf live, s;
	fg_strbuf_init(&live);
	fg_strbuf_init(&s);
	int rc = fg_nft_list(n, false, false, &live, err, errlen);
	if (rc && rc != -ENOENT) {
		fg_strbuf_deinit(&live);
		return rc;
	}
	fg_nft_compile_delete(n->table, &s);
	if (rc == 0 && live.len)
		fg_strbuf_append(&s, live.s, live.len);
	fg_strbuf_deinit(&live);
	if (s.oom) {
		fg_strbuf_deinit(&s);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	*out = s.s;
	return 0;
}

int fg_nft_apply(struct fg_nft *n, const char *script, char *err, size_t errlen)
{
	char *prev = NULL, *cur = NULL;
	int rc = fg_nft_check(n, script, err, errlen);
	if (rc)
		return rc;
	if ((rc = fg_nft_snapshot(n, &prev, err, errlen)))
		return rc;
	cur = fg_strdup(script);
	if (!cur) {
		fg_free(prev);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	/* one buffer = one netlink batch = one transaction: all or nothing */
	if ((rc = run(n->ctx, script, false, 0, NULL, err, errlen))) {
		fg_free(prev);
		fg_free(cur);
		return rc;
	}
	fg_free(n->prev);
	fg_free(n->cur);
	n->prev = prev;
	n->cur = cur;
	n->have_prev = true;
	return 0;
}

int fg_nft_rollback(struct fg_nft *n, char *err, size_t errlen)
{
	if (!n->have_prev) {
		snprintf(err, errlen, "nothing to roll back to");
		return -ENOENT;
	}
	int rc = run(n->ctx, n->prev, false, 0, NULL, err, errlen);
	if (rc)
		return rc;
	fg_free(n->cur);
	n->cur = n->prev;
	n->prev = NULL;
	n->have_prev = false;
	return 0;
}

int fg_nft_remove(struct fg_nft *n, char *err, size_t errlen)
{
	struct fg_strbuf s;
	fg_strbuf_init(&s);
	fg_nft_compile_delete(n->table, &s);
	int rc = s.oom ? -ENOMEM : run(n->ctx, s.s, false, 0, NULL, err, errlen);
	fg_strbuf_deinit(&s);
	if (rc == 0) {
		fg_free(n->cur);
		n->cur = NULL;
	}
	return rc;
}

int fg_nft_counters(struct fg_nft *n, struct fg_nft_counter **out, size_t *nout, char *err,
		    size_t errlen)
{
	struct fg_strbuf o;
	char cmd[96];
	*out = NULL;
	*nout = 0;
	fg_strbuf_init(&o);
	snprintf(cmd, sizeof(cmd), "list counters table inet %s", n->table);
	int rc = run(n->ctx, cmd, false, NFT_CTX_OUTPUT_JSON, &o, err, errlen);
	if (rc) {
		fg_strbuf_deinit(&o);
		return strstr(err, "No such file or directory") ? 0 : rc;
	}
	json_error_t je;
	json_t *root = o.s ? json_loads(o.s, 0, &je) : NULL;
	fg_strbuf_deinit(&o);
	json_t *arr = root ? json_object_get(root, "nftables") : NULL;
	if (!json_is_array(arr)) {
		json_decref(root);
		return 0; /* no output: no counters */
	}
	struct fg_nft_counter *v = fg_calloc(json_array_size(arr) + 1, sizeof(*v));
	if (!v) {
		json_decref(root);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	size_t k = 0;
	for (size_t i = 0; i < json_array_size(arr); i++) {
		json_t *c = json_object_get(json_array_get(arr, i), "counter");
		const char *name = json_string_value(json_object_get(c, "name"));
		const char *table = json_string_value(json_object_get(c, "table"));
		if (!name || !table || strcmp(table, n->table) != 0)
			continue;
		snprintf(v[k].name, sizeof(v[k].name), "%s", name);
		v[k].packets = (uint64_t)json_integer_value(json_object_get(c, "packets"));
		v[k].bytes = (uint64_t)json_integer_value(json_object_get(c, "bytes"));
		k++;
	}
	json_decref(root);
	*out = v;
	*nout = k;
	return 0;
}

/* ---- normalize: apply in a throwaway network namespace ------------------ */

int fg_nft_normalize(const char *table, const char *script, struct fg_strbuf *out, char *err,
		     size_t errlen)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0) {
		snprintf(err, errlen, "pipe: %s", strerror(errno));
		return -errno;
	}
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		int e = errno;
		close(p[0]);
		close(p[1]);
		snprintf(err, errlen, "fork: %s", strerror(e));
		return -e;
	}
	if (pid == 0) {
		/* child: a new, empty network namespace; nothing here is the host's */
		close(p[0]);
		char e[4096];
		const char *status = "E";
		struct fg_strbuf o;
		fg_strbuf_init(&o);
		if (unshare(CLONE_NEWNET) < 0) {
			snprintf(e, sizeof(e), "unshare(CLONE_NEWNET): %s", strerror(errno));
		} else {
			struct fg_nft *n = fg_nft_new(table);
			if (!n)
				snprintf(e, sizeof(e), "cannot create an nft context");
			else if (run(n->ctx, script, false, 0, NULL, e, sizeof(e)) == 0 &&
				 fg_nft_list(n, false, true, &o, e, sizeof(e)) == 0)
				status = "O";
			fg_nft_free(n);
		}
		if (write_all(p[1], status, 1) == 0) {
			if (*status == 'O')
				write_all(p[1], o.s ? o.s : "", o.len);
			else
				write_all(p[1], e, strlen(e));
		}
		_exit(0);
	}
	close(p[1]);
	struct fg_strbuf r;
	fg_strbuf_init(&r);
	char buf[65536];
	for (;;) {
		ssize_t k = read(p[0], buf, sizeof(buf));
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		fg_strbuf_append(&r, buf, (size_t)k);
	}
	close(p[0]);
	int st;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	int rc = 0;
	if (!r.len || r.oom) {
		snprintf(err, errlen, "the preview process failed");
		rc = -EIO;
	} else if (r.s[0] != 'O') {
		snprintf(err, errlen, "%s", r.s + 1);
		rc = -EINVAL;
	} else {
		fg_strbuf_append(out, r.s + 1, r.len - 1);
	}
	fg_strbuf_deinit(&r);
	return rc;
}

/* ---- a small unified diff ------------------------------------------------- */

struct lines {
	const char **s;
	size_t *len;
	size_t n;
};

static int split_lines(const char *t, struct lines *l)
{
	size_t cap = 1;
	for (const char *p = t; *p; p++)
		cap += *p == '\n';
	l->s = fg_calloc(cap, sizeof(*l->s));
	l->len = fg_calloc(cap, sizeof(*l->len));
	l->n = 0;
	if (!l->s || !l->len)
		return -ENOMEM;
	while (*t) {
		const char *e = strchr(t, '\n');
		size_t n = e ? (size_t)(e - t) : strlen(t);
		l->s[l->n] = t;
		l->len[l->n++] = n;
		t += n + (e ? 1 : 0);
	}
	return 0;
}

static bool line_eq(const struct lines *a, size_t i, const struct lines *b, size_t j)
{
	return a->len[i] == b->len[j] && memcmp(a->s[i], b->s[j], a->len[i]) == 0;
}

void fg_text_diff(const char *a, const char *b, const char *label_a, const char *label_b,
		  struct fg_strbuf *out)
{
	struct lines la = {0}, lb = {0};
	uint32_t *dp = NULL;
	char *op = NULL; /* per output step: ' ', '-', '+' */
	size_t *oi = NULL;
	if (split_lines(a, &la) || split_lines(b, &lb))
		goto out;
	size_t n = la.n, m = lb.n;
	if ((n + 1) * (m + 1) > 16u * 1024 * 1024) {
		/* too big for the table: show it as replaced */
		fg_strbuf_printf(out, "--- %s\n+++ %s\n", label_a, label_b);
		for (size_t i = 0; i < n; i++)
			fg_strbuf_printf(out, "-%.*s\n", (int)la.len[i], la.s[i]);
		for (size_t j = 0; j < m; j++)
			fg_strbuf_printf(out, "+%.*s\n", (int)lb.len[j], lb.s[j]);
		goto out;
	}
	/* LCS table over suffixes */
	dp = fg_calloc((n + 1) * (m + 1), sizeof(*dp));
	op = fg_calloc(n + m + 1, 1);
	oi = fg_calloc(n + m + 1, sizeof(*oi));
	if (!dp || !op || !oi)
		goto out;
#define DP(i, j) dp[(i) * (m + 1) + (j)]
	for (size_t i = n; i-- > 0;)
		for (size_t j = m; j-- > 0;)
			DP(i, j) =
			    line_eq(&la, i, &lb, j)
				? DP(i + 1, j + 1) + 1
				: (DP(i + 1, j) > DP(i, j + 1) ? DP(i + 1, j) : DP(i, j + 1));
	size_t k = 0, i = 0, j = 0;
	bool changed = false;
	while (i < n || j < m) {
		if (i < n && j < m && line_eq(&la, i, &lb, j)) {
			op[k] = ' ';
			oi[k++] = i;
			i++;
			j++;
		} else if (i < n && (j == m || DP(i + 1, j) >= DP(i, j + 1))) {
			op[k] = '-';
			oi[k++] = i++;
			changed = true;
		} else {
			op[k] = '+';
			oi[k++] = j++;
			changed = true;
		}
	}
#undef DP
	if (!changed)
		goto out;
	fg_strbuf_printf(out, "--- %s\n+++ %s\n", label_a, label_b);
	/* print changes with 3 lines of context; "@@" between distant hunks */
	size_t last = (size_t)-1;
	for (size_t s = 0; s < k; s++) {
		bool near = false;
		for (size_t d = (s >= 3 ? s - 3 : 0); d <= s + 3 && d < k; d++)
			if (op[d] != ' ')
				near = true;
		if (!near)
			continue;
		if (last == (size_t)-1 || s != last + 1)
			fg_strbuf_puts(out, "@@\n");
		last = s;
		const struct lines *L = op[s] == '+' ? &lb : &la;
		fg_strbuf_printf(out, "%c%.*s\n", op[s], (int)L->len[oi[s]], L->s[oi[s]]);
	}
out:
	fg_free(dp);
	fg_free(op);
	fg_free(oi);
	fg_free(la.s);
	fg_free(la.len);
	fg_free(lb.s);
	fg_free(lb.len);
}

/* ---- IP forwarding --------------------------------------------------------- */

static const char *const fwd_sysctl[2] = {"/proc/sys/net/ipv4/ip_forward",
					  "/proc/sys/net/ipv6/conf/all/forwarding"};

static int sysctl_get(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return -errno;
	int v = -1;
	if (fscanf(f, "%d", &v) != 1)
		v = -EIO;
	fclose(f);
	return v;
}

static int sysctl_set(const char *path, int v)
{
	FILE *f = fopen(path, "w");
	if (!f)
		return -errno;
	int rc = fprintf(f, "%d\n", v) < 0 ? -EIO : 0;
	if (fclose(f) != 0 && rc == 0)
		rc = -errno;
	return rc;
}

int fg_kernel_forwarding_enable(unsigned need, unsigned *changed)
{
	for (int i = 0; i < 2; i++) {
		if (!(need & (1u << i)) || (*changed & (1u << i)))
			continue;
		int v = sysctl_get(fwd_sysctl[i]);
		if (v == 1)
			continue;
		int rc = sysctl_set(fwd_sysctl[i], 1);
		if (rc < 0) {
			fg_err("kernel forwards: cannot enable %s: %s", fwd_sysctl[i],
			       strerror(-rc));
			return rc;
		}
		*changed |= 1u << i;
		fg_info("kernel forwards: enabled IP forwarding (%s = 1); restored to 0 when "
			"flowgate exits",
			fwd_sysctl[i]);
	}
	return 0;
}

void fg_kernel_forwarding_restore(unsigned changed)
{
	for (int i = 0; i < 2; i++) {
		if (!(changed & (1u << i)))
			continue;
		if (sysctl_set(fwd_sysctl[i], 0) == 0)
			fg_info("kernel forwards: IP forwarding restored (%s = 0)", fwd_sysctl[i]);
	}
}
