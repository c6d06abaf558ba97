/* Firewall policies (/api/v1/policies), a node's firewall view
 * (/api/v1/nodes/{ref}/firewall) and the iptables-save import. A policy is
 * validated by the kernel plane's own parser (kernel/policy.h), so what
 * the API accepts every agent can compile; nft's own verdict comes from
 * the agent's dry run and reaches the node's errors. Every write ends with
 * fg_hub_refresh() of the nodes the policy lands on, before and after. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/strbuf.h"
#include "core/work.h"
#include "fwd/config.h"
#include "kernel/nft.h"
#include "kernel/nft_compile.h"
#include "kernel/policy.h"
#include "net/rpc.h"
#include "server/api_int.h"
#include "server/desired.h"

#define CONFIRM_MIN_S  5
#define CONFIRM_MAX_S  3600
#define TASK_TIMEOUT_S 10

/* Fields a policy object may carry besides its rules' own. */
static const char *const policy_keys[] = {
    "name", "priority", "enabled", "description", "confirm_timeout", "sets", "rules", "targets"};

static bool method_is(struct api_call *c, const char *m)
{
	return strcmp(c->method, m) == 0;
}

static int policy_by_ref(struct fg_store *st, const char *ref, struct fg_policy *out)
{
	return api_is_id(ref) ? st->ops->policy_get(st, strtoll(ref, NULL, 10), out)
			      : st->ops->policy_get_by_name(st, ref, out);
}

/* The API view: stored JSON + id, name, priority, enabled, targets by name. */
static json_t *policy_json(struct fg_store *st, const struct fg_policy *p)
{
	json_t *j = json_loads(p->json ? p->json : "{}", 0, NULL);
	if (!j)
		j = json_object();
	json_t *nodes = json_array(), *groups = json_array();
	for (size_t i = 0; i < p->nnodes; i++) {
		struct fg_node n;
		if (st->ops->node_get(st, p->node_ids[i], &n) == 0) {
			json_array_append_new(nodes, json_string(n.name));
			fg_node_deinit(&n);
		}
	}
	for (size_t i = 0; i < p->ngroups; i++) {
		struct fg_group g;
		if (st->ops->group_get(st, p->group_ids[i], &g) == 0)
			json_array_append_new(groups, json_string(g.name));
	}
	json_object_set_new(j, "id", json_integer(p->id));
	json_object_set_new(j, "name", json_string(p->name));
	json_object_set_new(j, "priority", json_integer(p->priority));
	json_object_set_new(j, "enabled", json_boolean(p->enabled));
	json_object_set_new(j, "targets",
			    json_pack("{s:o, s:o}", "nodes", nodes, "groups", groups));
	json_object_set_new(j, "created", json_integer(p->created));
	if (!json_object_get(j, "sets"))
		json_object_set_new(j, "sets", json_array());
	return j;
}

/* Every node a policy lands on now. */
static void touch_policy(struct fg_store *st, struct idset *s, const struct fg_policy *p)
{
	for (size_t i = 0; i < p->nnodes; i++)
		api_idset_add(s, p->node_ids[i]);
	for (size_t i = 0; i < p->ngroups; i++)
		api_idset_add_group(st, s, p->group_ids[i]);
}

/* Where the policy stands on each node it lands on (GET answers only):
 * [{node, online, applied, ok, error}] from the nodes' reported errors
 * (this policy's entry, or the firewall's commit-confirm one). */
static json_t *policy_status(struct api_call *c, const struct fg_policy *p)
{
	struct fg_store *st = c->api->st;
	struct idset s = {0};
	json_t *a = json_array();
	touch_policy(st, &s, p);
	for (size_t i = 0; i < s.n; i++) {
		struct fg_node n;
		if (st->ops->node_get(st, s.v[i], &n) != 0)
			continue;
		json_t *errs = n.errors ? json_loads(n.errors, 0, NULL) : NULL;
		const char *err = "";
		size_t k;
		json_t *e;
		json_array_foreach(errs, k, e)
		{
			const char *kind = json_string_value(json_object_get(e, "kind"));
			json_t *id = json_object_get(e, "id");
			bool mine = kind && strcmp(kind, "policy") == 0 && json_is_integer(id) &&
				    json_integer_value(id) == p->id;
			bool whole = kind && strcmp(kind, "firewall") == 0;
			if ((mine || whole) && !*err)
				err = json_string_value(json_object_get(e, "error")) ?: "";
		}
		json_array_append_new(a, json_pack("{s:s, s:b, s:b, s:b, s:s}", "node", n.name,
						   "online", fg_hub_online(c->api->hub, n.id),
						   "applied", n.applied_rev == n.desired_rev, "ok",
						   !*err, "error", err));
		json_decref(errs);
		fg_node_deinit(&n);
	}
	fg_free(s.v);
	return a;
}

/* Maps the parser's "policies[0].rules[3].dport: ..." onto the request's
 * field "rules[3].dport" (sets keep their own path). */
static enum fg_http_verdict parser_error(struct api_call *c, const char *err)
{
	const char *p = err;
	static const char pre[] = "policies[0].";
	if (strncmp(p, pre, sizeof(pre) - 1) == 0)
		p += sizeof(pre) - 1;
	char field[96];
	size_t n = strcspn(p, ": ");
	if (n >= sizeof(field))
		n = sizeof(field) - 1;
	memcpy(field, p, n);
	field[n] = 0;
	return api_fail(c->r, 400, "invalid", n ? field : NULL, "%s", p);
}

/* Resolves targets {"nodes": [...], "groups": [...]} into p. Answers and
 * returns false on an error. */
static bool parse_targets(struct api_call *c, json_t *t, struct fg_policy *p)
{
	struct fg_store *st = c->api->st;
	const char *key;
	json_t *v;
	if (!t)
		return true;
	if (!json_is_object(t))
		return api_fail(c->r, 400, "invalid", "targets",
				"targets: an object {\"nodes\": [...], \"groups\": [...]}"),
		       false;
	json_object_foreach(t, key, v)
	{
		bool nodes = strcmp(key, "nodes") == 0;
		if (!nodes && strcmp(key, "groups") != 0)
			return api_fail(c->r, 400, "invalid", "targets",
					"targets.%s: unknown field (nodes, groups)", key),
			       false;
		if (!json_is_array(v))
			return api_fail(c->r, 400, "invalid", "targets", "targets.%s: a list of %s",
					key, nodes ? "node names" : "group names"),
			       false;
		size_t len = json_array_size(v);
		int64_t *ids = fg_calloc(len + 1, sizeof(*ids));
		if (!ids)
			return api_fail(c->r, 500, "internal", NULL, "out of memory"), false;
		size_t n = 0;
		for (size_t i = 0; i < len; i++) {
			char ref[128], field[48];
			int64_t id = 0;
			int rc = api_json_ref(json_array_get(v, i), ref, sizeof(ref));
			if (rc == 0 && nodes) {
				struct fg_node nd;
				if ((rc = api_node_by_ref(st, ref, &nd)) == 0) {
					id = nd.id;
					fg_node_deinit(&nd);
				}
			} else if (rc == 0) {
				struct fg_group g;
				if ((rc = api_group_by_ref(st, ref, &g)) == 0)
					id = g.id;
			}
			snprintf(field, sizeof(field), "targets.%s[%zu]", key, i);
			if (rc < 0) {
				fg_free(ids);
				return api_fail(c->r, 400, "invalid", field,
						rc == -ENOENT ? "%s: no %s \"%s\""
							      : "%s: a %s name or id%s",
						field, nodes ? "node" : "group",
						rc == -ENOENT ? ref : ""),
				       false;
			}
			bool dup = false;
			for (size_t k = 0; k < n; k++)
				dup |= ids[k] == id;
			if (!dup)
				ids[n++] = id;
		}
		if (nodes) {
			fg_free(p->node_ids);
			p->node_ids = ids;
			p->nnodes = n;
		} else {
			fg_free(p->group_ids);
			p->group_ids = ids;
			p->ngroups = n;
		}
	}
	return true;
}

/* A set another policy defines under the same name must be the same set:
 * the sets of every policy on a node share one table. */
static bool sets_conflict(struct api_call *c, json_t *sets, int64_t self_id)
{
	struct fg_store *st = c->api->st;
	struct fg_policy *v;
	size_t n;
	int rc = st->ops->policy_list(st, &v, &n);
	if (rc < 0)
		return api_store_fail(c->r, rc, "reading policies"), true;
	bool bad = false;
	size_t i;
	json_t *s;
	json_array_foreach(sets, i, s)
	{
		const char *name = json_string_value(json_object_get(s, "name"));
		for (size_t k = 0; name && !bad && k < n; k++) {
			if (v[k].id == self_id)
				continue;
			json_t *o = json_loads(v[k].json ? v[k].json : "{}", 0, NULL);
			size_t j;
			json_t *os;
			json_array_foreach(json_object_get(o, "sets"), j, os)
			{
				const char *on = json_string_value(json_object_get(os, "name"));
				if (on && strcmp(on, name) == 0 && !json_equal(os, s)) {
					char field[32];
					snprintf(field, sizeof(field), "sets[%zu].name", i);
					api_fail(c->r, 409, "conflict", field,
						 "%s: policy \"%s\" defines a different set \"%s\" "
						 "(sets are shared by every policy of a node: use "
						 "the same definition or another name)",
						 field, v[k].name, name);
					bad = true;
					break;
				}
			}
			json_decref(o);
		}
		if (bad)
			break;
	}
	fg_policy_list_free(v, n);
	return bad;
}

/* Builds p (p->json owned, targets owned) from a POST body, or from old + a
 * PATCH body (fields given replace, null removes). Answers and returns
 * false on any error. */
static bool policy_from_body(struct api_call *c, json_t *body, const struct fg_policy *old,
			     struct fg_policy *p)
{
	struct fg_store *st = c->api->st;
	json_t *o = old ? policy_json(st, old) : json_object();
	json_t *doc = NULL;
	const char *key, *why;
	json_t *val;
	bool ok = false;
	char err[1024];

	memset(p, 0, sizeof(*p));
	json_object_del(o, "id");
	json_object_del(o, "created");
	json_object_foreach(body, key, val)
	{
		bool known = false;
		if (strcmp(key, "status") == 0)
			continue; /* read-only (GET answers), echoed back by clients */
		if (strcmp(key, "id") == 0 || strcmp(key, "created") == 0) {
			if (old && strcmp(key, "id") == 0 && json_is_integer(val) &&
			    json_integer_value(val) == old->id)
				continue;
			if (strcmp(key, "created") == 0)
				continue; /* read-only, echoed back by clients */
			api_fail(c->r, 400, "invalid", "id", "id: set by the server");
			goto out;
		}
		for (size_t i = 0; i < sizeof(policy_keys) / sizeof(policy_keys[0]); i++)
			known |= strcmp(key, policy_keys[i]) == 0;
		if (!known) {
			api_fail(c->r, 400, "invalid", key, "%s: unknown field", key);
			goto out;
		}
		if (json_is_null(val))
			json_object_del(o, key);
		else
			json_object_set(o, key, val);
	}
	json_t *nv = json_object_get(o, "name");
	if (!json_is_string(nv)) {
		api_fail(c->r, 400, "invalid", "name", "name: a string is required");
		goto out;
	}
	if ((why = api_name_invalid(json_string_value(nv)))) {
		api_fail(c->r, 400, "invalid", "name", "name: %s", why);
		goto out;
	}
	if (strchr(json_string_value(nv), '.') || json_string_length(nv) > FG_FW_NAME_MAX) {
		api_fail(c->r, 400, "invalid", "name",
			 "name: \"%s\" must be 1-48 characters of A-Z a-z 0-9 _ - (it names the "
			 "policy's nft counters)",
			 json_string_value(nv));
		goto out;
	}
	snprintf(p->name, sizeof(p->name), "%s", json_string_value(nv));
	json_t *pv = json_object_get(o, "priority");
	if (pv && (!json_is_integer(pv) || json_integer_value(pv) < -1000000 ||
		   json_integer_value(pv) > 1000000)) {
		api_fail(c->r, 400, "invalid", "priority",
			 "priority: an integer -1000000 to 1000000 (lower runs first)");
		goto out;
	}
	p->priority = pv ? (int)json_integer_value(pv) : 0;
	json_t *ev = json_object_get(o, "enabled");
	if (ev && !json_is_boolean(ev)) {
		api_fail(c->r, 400, "invalid", "enabled", "enabled: true or false");
		goto out;
	}
	p->enabled = !ev || json_is_true(ev);
	json_t *cv = json_object_get(o, "confirm_timeout");
	if (cv && (!json_is_integer(cv) || json_integer_value(cv) < CONFIRM_MIN_S ||
		   json_integer_value(cv) > CONFIRM_MAX_S)) {
		api_fail(c->r, 400, "invalid", "confirm_timeout",
			 "confirm_timeout: seconds, %d to %d", CONFIRM_MIN_S, CONFIRM_MAX_S);
		goto out;
	}
	json_t *sets = json_object_get(o, "sets");
	if (!sets) {
		sets = json_array();
		json_object_set_new(o, "sets", sets);
	}
	if (!json_object_get(o, "rules")) {
		api_fail(c->r, 400, "invalid", "rules", "rules: missing (a list of rules)");
		goto out;
	}
	if (old) {
		p->node_ids = fg_calloc(old->nnodes + 1, sizeof(int64_t));
		p->group_ids = fg_calloc(old->ngroups + 1, sizeof(int64_t));
		if (!p->node_ids || !p->group_ids) {
			api_fail(c->r, 500, "internal", NULL, "out of memory");
			goto out;
		}
		if (old->nnodes)
			memcpy(p->node_ids, old->node_ids, old->nnodes * sizeof(int64_t));
		if (old->ngroups)
			memcpy(p->group_ids, old->group_ids, old->ngroups * sizeof(int64_t));
		p->nnodes = old->nnodes;
		p->ngroups = old->ngroups;
		/* the old view's targets are names; a PATCH without targets
		 * keeps the ids, one with targets replaces both lists */
		if (!json_object_get(body, "targets"))
			json_object_del(o, "targets");
		else
			p->nnodes = p->ngroups = 0;
	}
	if (!parse_targets(c, json_object_get(o, "targets"), p))
		goto out;
	json_object_del(o, "targets");

	/* the kernel plane's parser decides what a policy may be */
	json_t *pol = json_pack("{s:O, s:i, s:b, s:O}", "name", nv, "priority", p->priority,
				"enabled", p->enabled, "rules", json_object_get(o, "rules"));
	if (pol && json_object_get(o, "description"))
		json_object_set(pol, "description", json_object_get(o, "description"));
	doc = json_pack("{s:O, s:[o]}", "sets", sets, "policies", pol);
	struct fg_fw_doc d;
	if (!doc) {
		api_fail(c->r, 500, "internal", NULL, "out of memory");
		goto out;
	}
	if (fg_fw_doc_parse_json(doc, &d, err, sizeof(err)) < 0) {
		parser_error(c, err);
		goto out;
	}
	fg_fw_doc_free(&d);
	if (sets_conflict(c, sets, old ? old->id : 0))
		goto out;
	json_object_del(o, "name");
	json_object_del(o, "priority");
	json_object_del(o, "enabled");
	p->json = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
	if (!p->json) {
		api_fail(c->r, 500, "internal", NULL, "out of memory");
		goto out;
	}
	ok = true;
out:
	if (!ok) {
		fg_free(p->node_ids);
		fg_free(p->group_ids);
		p->node_ids = p->group_ids = NULL;
	}
	json_decref(doc);
	json_decref(o);
	return ok;
}

/* p from policy_from_body: its json is malloc'd by jansson, its targets
 * by fg_calloc. */
static void body_policy_free(struct fg_policy *p)
{
	free(p->json);
	fg_free(p->node_ids);
	fg_free(p->group_ids);
	p->json = NULL;
	p->node_ids = p->group_ids = NULL;
}

static enum fg_http_verdict policy_write(struct api_call *c, const struct fg_policy *old)
{
	struct fg_store *st = c->api->st;
	json_t *b = api_body_object(c->r);
	if (!b)
		return FG_HTTP_DONE;
	struct fg_policy p;
	bool ok = policy_from_body(c, b, old, &p);
	json_decref(b);
	if (!ok)
		return FG_HTTP_DONE;
	enum fg_http_verdict v;
	if (old)
		p.id = old->id;
	int rc = old ? st->ops->policy_update(st, &p) : st->ops->policy_create(st, &p);
	if (rc == -EEXIST) {
		v = api_fail(c->r, 409, "exists", "name", "name: a policy named \"%s\" exists",
			     p.name);
		goto out;
	}
	if (rc < 0) {
		v = api_store_fail(c->r, rc, "writing the policy");
		goto out;
	}
	struct fg_policy after;
	if ((rc = st->ops->policy_get(st, p.id, &after)) < 0) {
		v = api_store_fail(c->r, rc, "reading the policy");
		goto out;
	}
	json_t *aj = policy_json(st, &after);
	json_t *bj = old ? policy_json(st, old) : NULL;
	api_audit(c, old ? "update" : "create", "policy", p.id, bj, aj);
	json_decref(bj);
	struct idset s = {0};
	if (old)
		touch_policy(st, &s, old);
	touch_policy(st, &s, &after);
	fg_policy_deinit(&after);
	api_idset_refresh(c->api, &s);
	v = api_reply(c->r, old ? 200 : 201, aj);
out:
	body_policy_free(&p);
	return v;
}

/* ---- iptables-save import -------------------------------------------- */

/* Runs iptables-restore-translate (ip6tables-… for ipv6) on text. Returns
 * 0 with the translation in out, -ENOENT when the tool is not installed,
 * or -EINVAL with its complaint in err. Blocks for the tool's run (it
 * reads a bounded input: the request body). */
static int translate(const char *text, bool v6, struct fg_strbuf *out, char *err, size_t errlen)
{
	const char *tool = v6 ? "ip6tables-restore-translate" : "iptables-restore-translate";
	const char *dirs[] = {"/usr/sbin/", "/sbin/", "/usr/bin/"};
	char path[64] = "";
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]) && !path[0]; i++) {
		char p[64];
		snprintf(p, sizeof(p), "%s%s", dirs[i], tool);
		if (access(p, X_OK) == 0)
			snprintf(path, sizeof(path), "%s", p);
	}
	if (!path[0])
		return -ENOENT;
	char in_tmpl[] = "/tmp/fg-ipt-XXXXXX";
	int fd = mkstemp(in_tmpl);
	if (fd < 0) {
		snprintf(err, errlen, "cannot make a temporary file: %s", strerror(errno));
		return -EIO;
	}
	size_t len = strlen(text);
	bool wrote = write(fd, text, len) == (ssize_t)len;
	close(fd);
	if (!wrote) {
		unlink(in_tmpl);
		snprintf(err, errlen, "cannot write a temporary file");
		return -EIO;
	}
	int pfd[2];
	if (pipe(pfd) < 0) {
		unlink(in_tmpl);
		snprintf(err, errlen, "pipe: %s", strerror(errno));
		return -EIO;
	}
	pid_t pid = fork();
	if (pid == 0) {
		close(pfd[0]);
		dup2(pfd[1], 1);
		dup2(pfd[1], 2);
		execl(path, tool, "-f", in_tmpl, (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	char buf[4096];
	ssize_t n;
	while (pid > 0 && (n = read(pfd[0], buf, sizeof(buf))) > 0)
		fg_strbuf_append(out, buf, (size_t)n);
	close(pfd[0]);
	int status = 0;
	if (pid > 0)
		waitpid(pid, &status, 0);
	unlink(in_tmpl);
	if (pid < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		snprintf(err, errlen, "%s: %.400s", tool, out->s ? out->s : "failed");
		for (char *q = err; *q; q++)
			if (*q == '\n')
				*q = ' ';
		return -EINVAL;
	}
	return 0;
}

/* "add rule ip filter INPUT tcp dport 22 counter accept" → chain input,
 * rule text "tcp dport 22 counter accept". Only the filter table's
 * built-in chains and the nat table's PREROUTING/POSTROUTING map onto our
 * base chains; everything else is left out (and said so). */
static json_t *translated_rules(const char *nft, json_t *skipped)
{
	json_t *rules = json_array(), *drops = json_array();
	static const struct {
		const char *table, *chain, *ours;
	} map[] = {
	    {"filter", "INPUT", "input"},	   {"filter", "FORWARD", "forward"},
	    {"filter", "OUTPUT", "output"},	   {"nat", "PREROUTING", "prerouting"},
	    {"nat", "POSTROUTING", "postrouting"},
	};
	const char *line = nft;
	while (line && *line) {
		const char *end = strchr(line, '\n');
		size_t len = end ? (size_t)(end - line) : strlen(line);
		char l[2048];
		snprintf(l, sizeof(l), "%.*s", (int)(len < sizeof(l) ? len : sizeof(l) - 1), line);
		line = end ? end + 1 : NULL;
		char fam[16], table[64], chain[64];
		int off = 0;
		if (sscanf(l, "add chain %15s %63s %63s", fam, table, chain) == 3 &&
		    strstr(l, "policy drop")) {
			/* a chain's default DROP becomes a last rule */
			for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
				if (strcmp(map[i].table, table) == 0 &&
				    strcmp(map[i].chain, chain) == 0)
					json_array_append_new(
					    drops,
					    json_pack("{s:s, s:s, s:s}", "chain", map[i].ours,
						      "action", "drop", "comment",
						      "iptables default policy DROP"));
			continue;
		}
		if (sscanf(l, "add rule %15s %63s %63s %n", fam, table, chain, &off) != 3 || !off)
			continue;
		const char *ours = NULL;
		for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
			if (strcmp(map[i].table, table) == 0 && strcmp(map[i].chain, chain) == 0)
				ours = map[i].ours;
		const char *rule = l + off;
		/* a jump to a user chain has nothing to land on in our table */
		bool jumps = strstr(rule, "jump ") || strstr(rule, "goto ");
		if (!ours || jumps) {
			json_array_append_new(skipped, json_string(l));
			continue;
		}
		json_array_append_new(rules, json_pack("{s:s, s:s}", "chain", ours, "raw", rule));
	}
	json_array_extend(rules, drops);
	json_decref(drops);
	return rules;
}

/* Best effort without the tool: -A CHAIN [-p P] [-s A] [-d A] [--dport N]
 * [-i IF] [-o IF] [-m state/conntrack --state/--ctstate S] -j ACCEPT|DROP|
 * REJECT|MASQUERADE → structured rules; anything else is listed in
 * skipped. */
static json_t *structured_rules(const char *text, json_t *skipped)
{
	json_t *rules = json_array(), *drops = json_array();
	char table[32] = "filter";
	const char *line = text;
	while (line && *line) {
		const char *end = strchr(line, '\n');
		size_t len = end ? (size_t)(end - line) : strlen(line);
		char l[2048], orig[2048];
		snprintf(l, sizeof(l), "%.*s", (int)(len < sizeof(l) ? len : sizeof(l) - 1), line);
		memcpy(orig, l, sizeof(orig));
		line = end ? end + 1 : NULL;
		if (l[0] == '*') {
			snprintf(table, sizeof(table), "%.31s", l + 1);
			continue;
		}
		char cname[64], cpol[16];
		if (l[0] == ':' && sscanf(l + 1, "%63s %15s", cname, cpol) == 2 &&
		    strcmp(table, "filter") == 0 && strcmp(cpol, "DROP") == 0) {
			const char *ours = strcmp(cname, "INPUT") == 0	   ? "input"
					   : strcmp(cname, "FORWARD") == 0 ? "forward"
					   : strcmp(cname, "OUTPUT") == 0  ? "output"
									   : NULL;
			if (ours)
				json_array_append_new(drops,
						      json_pack("{s:s, s:s, s:s}", "chain", ours,
								"action", "drop", "comment",
								"iptables default policy DROP"));
			continue;
		}
		if (strncmp(l, "-A ", 3) != 0)
			continue;
		json_t *r = json_object();
		bool ok = true;
		char *save = NULL, *tok = strtok_r(l + 3, " \t", &save);
		const char *chain = tok ? tok : "";
		if (strcmp(table, "filter") == 0 && strcmp(chain, "INPUT") == 0)
			json_object_set_new(r, "chain", json_string("input"));
		else if (strcmp(table, "filter") == 0 && strcmp(chain, "FORWARD") == 0)
			json_object_set_new(r, "chain", json_string("forward"));
		else if (strcmp(table, "filter") == 0 && strcmp(chain, "OUTPUT") == 0)
			json_object_set_new(r, "chain", json_string("output"));
		else if (strcmp(table, "nat") == 0 && strcmp(chain, "POSTROUTING") == 0)
			json_object_set_new(r, "chain", json_string("postrouting"));
		else
			ok = false;
		while (ok && (tok = strtok_r(NULL, " \t", &save))) {
			char *arg = NULL;
			if (strcmp(tok, "-m") == 0 || strcmp(tok, "--match") == 0) {
				strtok_r(NULL, " \t", &save); /* the match's name */
				continue;
			}
			if (strcmp(tok, "-p") == 0 || strcmp(tok, "-s") == 0 ||
			    strcmp(tok, "-d") == 0 || strcmp(tok, "--dport") == 0 ||
			    strcmp(tok, "--sport") == 0 || strcmp(tok, "-i") == 0 ||
			    strcmp(tok, "-o") == 0 || strcmp(tok, "--state") == 0 ||
			    strcmp(tok, "--ctstate") == 0 || strcmp(tok, "-j") == 0 ||
			    strcmp(tok, "--comment") == 0)
				arg = strtok_r(NULL, " \t", &save);
			if (!arg) {
				ok = false;
				break;
			}
			if (strcmp(tok, "-p") == 0)
				json_object_set_new(r, "proto", json_string(arg));
			else if (strcmp(tok, "-s") == 0)
				json_object_set_new(r, "saddr", json_string(arg));
			else if (strcmp(tok, "-d") == 0)
				json_object_set_new(r, "daddr", json_string(arg));
			else if (strcmp(tok, "--dport") == 0 || strcmp(tok, "--sport") == 0) {
				for (char *q = arg; *q; q++)
					if (*q == ':')
						*q = '-';
				json_object_set_new(r, tok[2] == 'd' ? "dport" : "sport",
						    isdigit((unsigned char)arg[0]) &&
							    !strchr(arg, '-')
							? json_integer(atoi(arg))
							: json_string(arg));
			} else if (strcmp(tok, "-i") == 0)
				json_object_set_new(r, "iif", json_string(arg));
			else if (strcmp(tok, "-o") == 0)
				json_object_set_new(r, "oif", json_string(arg));
			else if (strcmp(tok, "--state") == 0 || strcmp(tok, "--ctstate") == 0) {
				json_t *a = json_array();
				char *s2 = NULL;
				for (char *w = strtok_r(arg, ",", &s2); w;
				     w = strtok_r(NULL, ",", &s2)) {
					for (char *q = w; *q; q++)
						*q = (char)tolower((unsigned char)*q);
					json_array_append_new(a, json_string(w));
				}
				json_object_set_new(r, "ct_state", a);
			} else if (strcmp(tok, "--comment") == 0) {
				json_object_set_new(r, "comment", json_string(arg));
			} else {
				for (char *q = arg; *q; q++)
					*q = (char)tolower((unsigned char)*q);
				if (strcmp(arg, "accept") && strcmp(arg, "drop") &&
				    strcmp(arg, "reject") && strcmp(arg, "masquerade"))
					ok = false;
				else
					json_object_set_new(r, "action", json_string(arg));
			}
		}
		if (ok && !json_object_get(r, "action"))
			ok = false;
		if (!ok) {
			json_array_append_new(skipped, json_string(orig));
			json_decref(r);
			continue;
		}
		json_array_append_new(rules, r);
	}
	json_array_extend(rules, drops);
	json_decref(drops);
	return rules;
}

/* The conversion runs iptables-restore-translate (a process) on the work
 * thread; the request waits suspended. */
struct ipt_job {
	struct fg_api *api;
	struct fg_http_req *r;
	char *text; /* owned */
	bool v6;
	char name[FG_STORE_NAME_MAX + 1];
	struct fg_strbuf out;
	int rc;
	char err[600];
};

static void ipt_job_free(void *p)
{
	struct ipt_job *j = p;
	fg_free(j->text);
	fg_strbuf_deinit(&j->out);
	fg_free(j);
}

static void ipt_run(void *p)
{
	struct ipt_job *j = p;
	j->rc = translate(j->text, j->v6, &j->out, j->err, sizeof(j->err));
}

static void ipt_done(void *p)
{
	struct ipt_job *j = p;
	struct fg_http_req *r = j->r;
	json_t *skipped = json_array(), *rules;
	const char *how, *message;
	if (j->rc == -EINVAL || j->rc == -EIO) {
		json_decref(skipped);
		api_fail(r, 400, "invalid", "text", "text: %s", j->err);
		fg_http_resume(r);
		return;
	}
	if (j->rc == 0) {
		rules = translated_rules(j->out.s ? j->out.s : "", skipped);
		how = "iptables-restore-translate";
		message = "converted by iptables-restore-translate into raw nft rules; review "
			  "them before enabling the policy";
	} else {
		rules = structured_rules(j->text, skipped);
		how = "builtin";
		message = "iptables-restore-translate is not installed on the server (Debian "
			  "package iptables): simple rules were converted into structured "
			  "rules, the others are listed in skipped";
	}
	json_t *pol =
	    json_pack("{s:s, s:i, s:b, s:o, s:[], s:{s:[], s:[]}}", "name", j->name, "priority", 0,
		      "enabled", 0, "rules", rules, "sets", "targets", "nodes", "groups");
	api_reply(r, 200,
		  json_pack("{s:o, s:s, s:s, s:o}", "policy", pol, "converter", how, "message",
			    message, "skipped", skipped));
	fg_http_resume(r);
}

static enum fg_http_verdict import_iptables(struct api_call *c)
{
	json_t *b = api_body_object(c->r);
	if (!b)
		return FG_HTTP_DONE;
	enum fg_http_verdict v;
	json_t *tv = json_object_get(b, "text"), *nv = json_object_get(b, "name");
	const char *key;
	json_t *val;
	json_object_foreach(b, key, val)
	{
		if (strcmp(key, "text") && strcmp(key, "name") && strcmp(key, "family")) {
			v = api_fail(c->r, 400, "invalid", key, "%s: unknown field", key);
			goto out;
		}
	}
	if (!json_is_string(tv) || json_string_length(tv) == 0 ||
	    strlen(json_string_value(tv)) != json_string_length(tv)) {
		v = api_fail(c->r, 400, "invalid", "text",
			     "text: the output of iptables-save (a non-empty string)");
		goto out;
	}
	if (nv && (!json_is_string(nv) || api_name_invalid(json_string_value(nv)))) {
		v = api_fail(c->r, 400, "invalid", "name", "name: a policy name");
		goto out;
	}
	const char *fam = json_string_value(json_object_get(b, "family"));
	struct ipt_job *j = fg_calloc(1, sizeof(*j));
	if (!j || !(j->text = fg_strdup(json_string_value(tv)))) {
		fg_free(j);
		v = api_fail(c->r, 500, "internal", NULL, "out of memory");
		goto out;
	}
	j->api = c->api;
	j->r = c->r;
	j->v6 = fam && strcmp(fam, "ipv6") == 0;
	snprintf(j->name, sizeof(j->name), "%s", nv ? json_string_value(nv) : "imported");
	fg_strbuf_init(&j->out);
	fg_http_set_user(c->r, j, ipt_job_free);
	if (fg_work_submit(c->api->work, ipt_run, ipt_done, j) < 0) {
		fg_http_add_header(c->r, "Retry-After", "1");
		v = api_fail(c->r, 503, "busy", NULL, "too much background work queued; retry");
		goto out;
	}
	v = FG_HTTP_PENDING;
out:
	json_decref(b);
	return v;
}

/* ---- /policies -------------------------------------------------------- */

enum fg_http_verdict api_policies(struct api_call *c)
{
	struct fg_store *st = c->api->st;
	if (c->nseg == 2 && strcmp(c->seg[1], "import-iptables") == 0) {
		if (!method_is(c, "POST"))
			return api_bad_method(c);
		return import_iptables(c);
	}
	if (c->nseg == 1) {
		if (method_is(c, "POST"))
			return policy_write(c, NULL);
		if (!method_is(c, "GET"))
			return api_bad_method(c);
		struct fg_policy *v;
		size_t n;
		int rc = st->ops->policy_list(st, &v, &n);
		if (rc < 0)
			return api_store_fail(c->r, rc, "listing policies");
		json_t *a = json_array();
		for (size_t i = 0; i < n; i++) {
			json_t *j = policy_json(st, &v[i]);
			json_object_set_new(j, "status", policy_status(c, &v[i]));
			json_array_append_new(a, j);
		}
		fg_policy_list_free(v, n);
		return api_reply(c->r, 200, json_pack("{s:o}", "policies", a));
	}
	if (c->nseg != 2)
		return api_fail(c->r, 404, "not_found", NULL, "no such resource");
	struct fg_policy p;
	int rc = policy_by_ref(st, c->seg[1], &p);
	if (rc == -ENOENT)
		return api_not_found(c, "policy", c->seg[1]);
	if (rc < 0)
		return api_store_fail(c->r, rc, "reading the policy");
	enum fg_http_verdict v;
	if (method_is(c, "GET")) {
		json_t *j = policy_json(st, &p);
		json_object_set_new(j, "status", policy_status(c, &p));
		v = api_reply(c->r, 200, j);
	} else if (method_is(c, "PATCH") || method_is(c, "PUT")) {
		v = policy_write(c, &p);
	} else if (method_is(c, "DELETE")) {
		struct idset s = {0};
		touch_policy(st, &s, &p);
		json_t *before = policy_json(st, &p);
		rc = st->ops->policy_delete(st, p.id);
		v = api_deleted(c, rc, "policy", p.id, before, &s);
	} else {
		v = api_bad_method(c);
	}
	fg_policy_deinit(&p);
	return v;
}

/* ---- export / import ---------------------------------------------------- */

json_t *api_policies_export(struct api_call *c)
{
	struct fg_store *st = c->api->st;
	struct fg_policy *v;
	size_t n;
	if (st->ops->policy_list(st, &v, &n) < 0)
		return NULL;
	json_t *a = json_array();
	for (size_t i = 0; i < n; i++) {
		json_t *j = policy_json(st, &v[i]);
		json_object_del(j, "id");
		json_object_del(j, "created");
		json_array_append_new(a, j);
	}
	fg_policy_list_free(v, n);
	return a;
}

bool api_policy_import_one(struct api_call *c, json_t *item, size_t i, size_t *created,
			   size_t *updated, struct idset *touched)
{
	struct fg_store *st = c->api->st;
	if (!json_is_object(item)) {
		api_fail(c->r, 400, "invalid", "policies", "policies[%zu]: an object", i);
		return false;
	}
	json_t *nv = json_object_get(item, "name");
	struct fg_policy old, p;
	bool have_old = json_is_string(nv) && !api_is_id(json_string_value(nv)) &&
			st->ops->policy_get_by_name(st, json_string_value(nv), &old) == 0;
	json_t *body = json_deep_copy(item);
	json_object_del(body, "id");
	json_object_del(body, "created");
	bool ok = policy_from_body(c, body, have_old ? &old : NULL, &p);
	json_decref(body);
	if (!ok) {
		if (have_old)
			fg_policy_deinit(&old);
		return false;
	}
	p.id = have_old ? old.id : 0;
	int rc = have_old ? st->ops->policy_update(st, &p) : st->ops->policy_create(st, &p);
	if (rc == 0) {
		if (have_old) {
			touch_policy(st, touched, &old);
			(*updated)++;
		} else {
			(*created)++;
		}
		touch_policy(st, touched, &p);
	}
	body_policy_free(&p);
	if (have_old)
		fg_policy_deinit(&old);
	if (rc < 0) {
		api_store_fail(c->r, rc, "importing policies");
		return false;
	}
	return true;
}

/* ---- /nodes/{ref}/firewall ---------------------------------------------- */

/* What one GET /nodes/{ref}/firewall waits for: the agent's firewall_show. */
struct fw_job {
	struct fg_api *api;
	struct fg_http_req *r;
	int64_t handle; /* the hub task, 0 once answered */
	int64_t node_id;
	json_t *answer; /* built before the task; completed by its result */
	struct fg_fw_doc doc;
	struct fg_forward_set set;
};

static void fw_job_free(void *p)
{
	struct fw_job *j = p;
	if (j->handle)
		fg_hub_task_cancel(j->api->hub, j->handle);
	json_decref(j->answer);
	fg_fw_doc_free(&j->doc);
	fg_forward_set_free(&j->set);
	fg_free(j);
}

/* A counter of the node's table with what it counts: a policy's rule, or a
 * kernel forward's direction. */
static json_t *counter_json(const struct fw_job *j, const struct fg_nft_counter_rec *c)
{
	json_t *o = json_pack("{s:s, s:I, s:I}", "name", c->name, "packets", (json_int_t)c->packets,
			      "bytes", (json_int_t)c->bytes);
	char buf[128];
	for (size_t i = 0; i < j->doc.npolicies; i++) {
		const struct fg_fw_policy *p = &j->doc.policies[i];
		for (size_t k = 0; k < p->nrules; k++) {
			if (!p->rules[k].counter)
				continue;
			fg_nft_rule_counter(p->name, k, buf, sizeof(buf));
			if (strcmp(buf, c->name) == 0) {
				json_object_set_new(o, "policy", json_string(p->name));
				if (p->id[0])
					json_object_set_new(o, "policy_id",
							    json_integer(strtoll(p->id, NULL, 10)));
				json_object_set_new(o, "rule", json_integer((json_int_t)k));
				if (p->rules[k].comment[0])
					json_object_set_new(o, "comment",
							    json_string(p->rules[k].comment));
				return o;
			}
		}
	}
	for (size_t i = 0; i < j->set.n; i++) {
		const char *name = j->set.v[i].name;
		for (int w = 0; w < 3; w++) {
			if (w == 2)
				fg_nft_fwd_conns_counter(name, buf, sizeof(buf));
			else
				fg_nft_fwd_counter(name, w == 0, buf, sizeof(buf));
			if (strcmp(buf, c->name) == 0) {
				json_object_set_new(o, "forward", json_string(name));
				json_object_set_new(o, "direction",
						    json_string(w == 0	 ? "up"
								: w == 1 ? "down"
									 : "conns"));
				return o;
			}
		}
	}
	return o;
}

/* The live view is not available: show the counters of the node's last
 * report instead (saying from when). */
static void reported_counters(struct fw_job *j, int64_t node_id)
{
	int64_t ts = 0;
	const json_t *fw = fg_hub_node_firewall(j->api->hub, node_id, &ts);
	char derr[FG_RPC_ERR_MAX];
	size_t i;
	json_t *v;
	if (!fw)
		return;
	json_t *ctrs = json_object_get(j->answer, "counters");
	json_array_foreach(json_object_get(fw, "counters"), i, v)
	{
		struct fg_nft_counter_rec c;
		if (fg_nft_counter_decode(v, "counters", &c, derr, sizeof(derr)) == 0)
			json_array_append_new(ctrs, counter_json(j, &c));
	}
	json_object_set_new(j->answer, "counters_reported_at", json_integer(ts));
}

static void fw_task_cb(void *arg, const json_t *result, const char *err)
{
	struct fw_job *j = arg;
	json_t *a = j->answer;
	char derr[FG_RPC_ERR_MAX];
	struct fg_firewall_show fs;
	j->handle = 0;
	if (!err && fg_firewall_show_decode(result, &fs, derr, sizeof(derr)) != 0)
		err = derr;
	if (err) {
		json_object_set_new(a, "live_error", json_string(err));
		reported_counters(j, j->node_id);
	} else {
		json_object_set_new(a, "live", json_string(fs.live));
		json_object_set_new(a, "confirm_pending", json_boolean(fs.confirm_pending));
		if (fs.preview_error && *fs.preview_error) {
			/* nft refuses the preview: the node keeps what it runs */
			json_object_set_new(a, "diff_error", json_string(fs.preview_error));
			json_object_set_new(a, "in_sync", json_false());
		} else {
			struct fg_strbuf d;
			fg_strbuf_init(&d);
			fg_text_diff(fs.live, fs.preview, "running", "preview", &d);
			json_object_set_new(a, "preview_listing", json_string(fs.preview));
			json_object_set_new(a, "diff", json_string(d.s ? d.s : ""));
			json_object_set_new(a, "in_sync", json_boolean(d.len == 0));
			fg_strbuf_deinit(&d);
		}
		json_t *ctrs = json_object_get(a, "counters");
		size_t i;
		json_t *v;
		json_array_foreach(fs.counters, i, v)
		{
			struct fg_nft_counter_rec c;
			if (fg_nft_counter_decode(v, "counters", &c, derr, sizeof(derr)) == 0)
				json_array_append_new(ctrs, counter_json(j, &c));
		}
	}
	struct fg_http_req *r = j->r;
	api_reply(r, 200, json_incref(a));
	fg_http_resume(r);
}

enum fg_http_verdict api_node_firewall(struct api_call *c, const struct fg_node *n)
{
	struct fg_store *st = c->api->st;
	json_t *state = NULL;
	char *text = NULL, err[1024];
	int64_t confirm = 0;
	struct fw_job *j = fg_calloc(1, sizeof(*j));
	if (!j)
		return api_fail(c->r, 500, "internal", NULL, "out of memory");
	j->api = c->api;
	j->r = c->r;
	j->node_id = n->id;
	int rc = fg_desired_compile(st, n->id, &state, &text);
	if (rc < 0) {
		fw_job_free(j);
		return api_store_fail(c->r, rc, "compiling the node's desired state");
	}
	free(text);
	/* exactly what the agent does with the document it gets */
	json_t *fwd = json_object_get(state, "forwards");
	json_t *empty = json_array();
	struct fg_strbuf script;
	fg_strbuf_init(&script);
	rc = fg_fw_section_parse(json_object_get(state, "firewall"), &j->doc, &confirm, err,
				 sizeof(err));
	if (!rc)
		rc = fg_config_parse_forwards(fwd ? fwd : empty, &j->set, err, sizeof(err));
	/* with nothing to run the agent keeps no table at all (fg_kplane_clear) */
	bool any = j->doc.npolicies || j->doc.nsets;
	for (size_t i = 0; !rc && !any && i < j->set.n; i++)
		any = j->set.v[i].engine == FG_ENGINE_KERNEL && j->set.v[i].enabled;
	if (!rc && any) {
		struct fg_nft_spec spec = {
		    .table = "flowgate", .fw = &j->doc, .fwds = j->set.v, .nfwds = j->set.n};
		rc = fg_nft_compile(&spec, &script, err, sizeof(err));
	}
	json_decref(empty);
	json_t *pols = json_array();
	size_t i;
	json_t *pv;
	json_array_foreach(json_object_get(json_object_get(state, "firewall"), "policies"), i, pv)
	{
		json_array_append_new(pols,
				      json_pack("{s:O, s:O, s:O}", "id", json_object_get(pv, "id"),
						"name", json_object_get(pv, "name"), "priority",
						json_object_get(pv, "priority")));
	}
	json_decref(state);
	if (rc < 0) {
		fg_strbuf_deinit(&script);
		json_decref(pols);
		fw_job_free(j);
		return api_fail(c->r, 500, "internal", NULL,
				"the node's firewall does not compile: %s", err);
	}
	j->answer = json_pack("{s:s, s:b, s:s, s:o, s:I, s:n, s:n, s:[]}", "node", n->name,
			      "online", fg_hub_online(c->api->hub, n->id), "preview",
			      script.s ? script.s : "", "policies", pols, "confirm_timeout",
			      (json_int_t)(confirm ? confirm : 60), "live", "diff", "counters");
	json_t *params =
	    json_pack("{s:s, s:s}", "kind", "firewall_show", "script", script.s ? script.s : "");
	fg_strbuf_deinit(&script);
	if (!j->answer || !params) {
		json_decref(params);
		fw_job_free(j);
		return api_fail(c->r, 500, "internal", NULL, "out of memory");
	}
	fg_http_set_user(c->r, j, fw_job_free);
	int64_t h =
	    fg_hub_task(c->api->hub, n->id, params, TASK_TIMEOUT_S * FG_NS_PER_SEC, fw_task_cb, j);
	if (h < 0) {
		json_object_set_new(
		    j->answer, "live_error",
		    json_string(h == -ENOTCONN ? "the node is offline" : "out of memory"));
		reported_counters(j, n->id);
		return api_reply(c->r, 200, json_incref(j->answer));
	}
	j->handle = h;
	return FG_HTTP_PENDING;
}
