/* Agent files: see state.h. */
#include "agent/state.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/errmsg.h"
#include "core/alloc.h"

#define STATE_MAX   (64u << 20)
#define PENDING_MAX (16u << 20)

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int fg_file_write_atomic(const char *dir, const char *name, const char *data, size_t len)
{
	char tmp[PATH_MAX], dst[PATH_MAX];
	int rc = 0;
	if (snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", dir, name) >= (int)sizeof(tmp) ||
	    snprintf(dst, sizeof(dst), "%s/%s", dir, name) >= (int)sizeof(dst))
		return -ENAMETOOLONG;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	if ((rc = write_all(fd, data, len)) == 0 && fsync(fd) < 0)
		rc = -errno;
	if (close(fd) < 0 && !rc)
		rc = -errno;
	if (!rc && rename(tmp, dst) < 0)
		rc = -errno;
	if (rc) {
		unlink(tmp);
		return rc;
	}
	/* the rename itself must reach the disk */
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	if (fsync(dfd) < 0)
		rc = -errno;
	close(dfd);
	return rc;
}

int fg_file_read(const char *path, size_t max, char **out, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat sb;
	int rc = 0;
	char *buf = NULL;
	if (fstat(fd, &sb) < 0) {
		rc = -errno;
		goto out;
	}
	if ((size_t)sb.st_size > max) {
		rc = -EFBIG;
		goto out;
	}
	buf = fg_malloc((size_t)sb.st_size + 1);
	if (!buf) {
		rc = -ENOMEM;
		goto out;
	}
	size_t n = 0;
	while (n < (size_t)sb.st_size) {
		ssize_t r = read(fd, buf + n, (size_t)sb.st_size - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = -errno;
			goto out;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	buf[n] = '\0';
	*out = buf;
	*len = n;
	buf = NULL;
out:
	fg_free(buf);
	close(fd);
	return rc;
}

int fg_agent_state_load(const char *dir, int64_t *rev, json_t **state, char *err, size_t errlen)
{
	char path[PATH_MAX], *buf;
	size_t len;
	snprintf(path, sizeof(path), "%s/%s", dir, FG_AGENT_STATE_FILE);
	int rc = fg_file_read(path, STATE_MAX, &buf, &len);
	if (rc == -ENOENT)
		return rc;
	if (rc)
		return fg_errf(err, errlen, "%s: %s", path, strerror(-rc));
	json_error_t je;
	json_t *root = json_loadb(buf, len, 0, &je);
	fg_free(buf);
	json_t *r = json_object_get(root, "rev"), *s = json_object_get(root, "state");
	if (!root || !json_is_integer(r) || json_integer_value(r) < 0 || !json_is_object(s)) {
		json_decref(root);
		return fg_errf(err, errlen, "%s: not a state file ({\"rev\":N,\"state\":{...}})",
			       path);
	}
	*rev = json_integer_value(r);
	*state = json_incref(s);
	json_decref(root);
	return 0;
}

int fg_agent_state_save(const char *dir, int64_t rev, const json_t *state)
{
	json_t *o = json_pack("{s:I,s:O}", "rev", (json_int_t)rev, "state", state);
	char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	if (!text)
		return -ENOMEM;
	int rc = fg_file_write_atomic(dir, FG_AGENT_STATE_FILE, text, strlen(text));
	free(text);
	return rc;
}

/* ---- pending counters ------------------------------------------------ */

void fg_pending_free(struct fg_pending *p)
{
	for (size_t i = 0; i < p->n; i++)
		fg_free(p->v[i].v);
	fg_free(p->v);
	p->v = NULL;
	p->n = 0;
}

void fg_pending_remove(struct fg_pending *p, size_t i)
{
	fg_free(p->v[i].v);
	memmove(&p->v[i], &p->v[i + 1], (p->n - i - 1) * sizeof(p->v[0]));
	p->n--;
}

static int get_u64(const json_t *o, const char *key, uint64_t *out)
{
	json_t *v = json_object_get(o, key);
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return -EINVAL;
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

int fg_pending_decode(const char *buf, size_t len, struct fg_pending *out, char *err, size_t errlen)
{
	struct fg_pending p = {0};
	json_error_t je;
	int rc = -EINVAL;
	out->v = NULL;
	out->n = 0;
	json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
	if (!root) {
		fg_errf(err, errlen, "not JSON: %s at offset %d", je.text, je.position);
		goto out;
	}
	json_t *boots = json_object_get(root, "boots");
	if (!json_is_array(boots)) {
		fg_errf(err, errlen, "boots: must be an array");
		goto out;
	}
	p.v = fg_calloc(json_array_size(boots) + 1, sizeof(*p.v));
	if (!p.v) {
		rc = fg_errf(err, errlen, "out of memory");
		goto out;
	}
	size_t i, j;
	json_t *b, *c;
	json_array_foreach(boots, i, b)
	{
		struct fg_pending_boot *pb = &p.v[p.n++];
		const char *bid = json_string_value(json_object_get(b, "boot_id"));
		json_t *ctrs = json_object_get(b, "counters");
		if (!bid || !fg_rpc_valid_boot_id(bid)) {
			fg_errf(err, errlen, "boots[%zu].boot_id: missing or not a boot id", i);
			goto out;
		}
		if (!json_is_array(ctrs)) {
			fg_errf(err, errlen, "boots[%zu].counters: must be an array", i);
			goto out;
		}
		snprintf(pb->boot_id, sizeof(pb->boot_id), "%s", bid);
		pb->v = fg_calloc(json_array_size(ctrs) + 1, sizeof(*pb->v));
		if (!pb->v) {
			fg_errf(err, errlen, "out of memory");
			goto out;
		}
		json_array_foreach(ctrs, j, c)
		{
			struct fg_pending_ctr *pc = &pb->v[pb->n];
			const char *kind = json_string_value(json_object_get(c, "kind"));
			json_t *id = json_object_get(c, "id");
			int64_t idv;
			if (!kind || !*kind || strlen(kind) >= sizeof(pc->kind)) {
				fg_errf(err, errlen,
					"boots[%zu].counters[%zu].kind: missing or too "
					"long",
					i, j);
				goto out;
			}
			if (fg_rpc_parse_id(id, &idv) < 0) {
				fg_errf(err, errlen,
					"boots[%zu].counters[%zu].id: must be a positive id", i, j);
				goto out;
			}
			if (get_u64(c, "bytes_up", &pc->bytes_up) ||
			    get_u64(c, "bytes_down", &pc->bytes_down) ||
			    get_u64(c, "conns", &pc->conns)) {
				fg_errf(err, errlen,
					"boots[%zu].counters[%zu]: bytes_up, bytes_down and conns "
					"must be non-negative integers",
					i, j);
				goto out;
			}
			snprintf(pc->kind, sizeof(pc->kind), "%s", kind);
			snprintf(pc->id, sizeof(pc->id), "%lld", (long long)idv);
			pb->n++;
		}
	}
	*out = p;
	p.v = NULL;
	p.n = 0;
	rc = 0;
out:
	fg_pending_free(&p);
	json_decref(root);
	return rc;
}

char *fg_pending_encode(const struct fg_pending *p)
{
	json_t *boots = json_array();
	json_t *root = json_pack("{s:o}", "boots", boots);
	char *text = NULL;
	if (!root)
		return NULL;
	for (size_t i = 0; i < p->n; i++) {
		json_t *ctrs = json_array();
		json_t *b = json_pack("{s:s,s:o}", "boot_id", p->v[i].boot_id, "counters", ctrs);
		if (!b || json_array_append_new(boots, b))
			goto out;
		for (size_t j = 0; j < p->v[i].n; j++) {
			const struct fg_pending_ctr *c = &p->v[i].v[j];
			json_t *o =
			    json_pack("{s:s,s:s,s:I,s:I,s:I}", "kind", c->kind, "id", c->id,
				      "bytes_up", (json_int_t)c->bytes_up, "bytes_down",
				      (json_int_t)c->bytes_down, "conns", (json_int_t)c->conns);
			if (!o || json_array_append_new(ctrs, o))
				goto out;
		}
	}
	text = json_dumps(root, JSON_COMPACT);
out:
	json_decref(root);
	return text;
}

int fg_pending_load(const char *dir, struct fg_pending *out, char *err, size_t errlen)
{
	char path[PATH_MAX], *buf;
	size_t len;
	out->v = NULL;
	out->n = 0;
	snprintf(path, sizeof(path), "%s/%s", dir, FG_AGENT_PENDING_FILE);
	int rc = fg_file_read(path, PENDING_MAX, &buf, &len);
	if (rc == -ENOENT)
		return rc;
	if (rc)
		return fg_errf(err, errlen, "%s: %s", path, strerror(-rc));
	char e2[256];
	rc = fg_pending_decode(buf, len, out, e2, sizeof(e2));
	fg_free(buf);
	if (rc)
		return fg_errf(err, errlen, "%s: %s", path, e2);
	return 0;
}

int fg_pending_save(const char *dir, const struct fg_pending *p)
{
	char *text = fg_pending_encode(p);
	if (!text)
		return -ENOMEM;
	int rc = fg_file_write_atomic(dir, FG_AGENT_PENDING_FILE, text, strlen(text));
	free(text);
	return rc;
}
