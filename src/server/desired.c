/* Desired-state compile: see desired.h. */
#include "server/desired.h"

#include <errno.h>
#include <openssl/sha.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/log.h"

/* Fields of a stored forward that place it (the server's business), not
 * what the engine runs. */
static const char *const server_only[] = {"node", "group", "node_id", "group_id", "enabled"};

static int cmp_id(const void *a, const void *b)
{
	int64_t x = (*(const struct fg_forward *const *)a)->id;
	int64_t y = (*(const struct fg_forward *const *)b)->id;
	return (x > y) - (x < y);
}

json_t *fg_desired_from_forwards(const struct fg_forward *v, size_t n)
{
	json_t *state = json_object(), *arr = json_array();
	const struct fg_forward **sorted = fg_calloc(n + 1, sizeof(*sorted));
	if (!state || !arr || !sorted)
		goto err;
	for (size_t i = 0; i < n; i++)
		sorted[i] = &v[i];
	qsort(sorted, n, sizeof(*sorted), cmp_id);
	for (size_t i = 0; i < n; i++) {
		const struct fg_forward *f = sorted[i];
		if (!f->enabled)
			continue;
		json_error_t je;
		json_t *o = f->json ? json_loads(f->json, 0, &je) : NULL;
		if (!json_is_object(o)) {
			fg_err("hub: forward %lld (%s): stored JSON is not an object, left out "
			       "of the desired state",
			       (long long)f->id, f->name);
			json_decref(o);
			continue;
		}
		for (size_t k = 0; k < sizeof(server_only) / sizeof(server_only[0]); k++)
			json_object_del(o, server_only[k]);
		char id[24];
		snprintf(id, sizeof(id), "%lld", (long long)f->id);
		if (json_object_set_new(o, "id", json_string(id)) ||
		    json_object_set_new(o, "name", json_string(f->name)) ||
		    json_array_append_new(arr, o))
			goto err;
	}
	fg_free(sorted);
	if (json_object_set_new(state, "forwards", arr))
		goto err2;
	return state;
err:
	fg_free(sorted);
	json_decref(arr);
err2:
	json_decref(state);
	return NULL;
}

static int cmp_policy(const void *a, const void *b)
{
	const struct fg_policy *x = *(const struct fg_policy *const *)a;
	const struct fg_policy *y = *(const struct fg_policy *const *)b;
	if (x->priority != y->priority)
		return x->priority < y->priority ? -1 : 1;
	return (x->id > y->id) - (x->id < y->id);
}

int fg_desired_firewall(const struct fg_policy *v, size_t n, json_t **out)
{
	*out = NULL;
	const struct fg_policy **sorted = fg_calloc(n + 1, sizeof(*sorted));
	json_t *sec = json_object(), *sets = json_array(), *pols = json_array();
	int64_t confirm = 0;
	if (!sorted || !sec || !sets || !pols)
		goto oom;
	for (size_t i = 0; i < n; i++)
		sorted[i] = &v[i];
	qsort(sorted, n, sizeof(*sorted), cmp_policy);
	for (size_t i = 0; i < n; i++) {
		const struct fg_policy *p = sorted[i];
		if (!p->enabled)
			continue;
		json_t *o = p->json ? json_loads(p->json, 0, NULL) : NULL;
		if (!json_is_object(o)) {
			fg_err("hub: policy %lld (%s): stored JSON is not an object, left out of "
			       "the desired state",
			       (long long)p->id, p->name);
			json_decref(o);
			continue;
		}
		size_t k;
		json_t *set;
		json_array_foreach(json_object_get(o, "sets"), k, set)
		{
			const char *name = json_string_value(json_object_get(set, "name"));
			bool dup = false;
			size_t j;
			json_t *have;
			json_array_foreach(sets, j, have)
			{
				const char *hn = json_string_value(json_object_get(have, "name"));
				dup |= name && hn && strcmp(name, hn) == 0;
			}
			if (!dup && json_array_append(sets, set))
				goto oom_o;
		}
		json_t *ct = json_object_get(o, "confirm_timeout");
		if (json_is_integer(ct) && (!confirm || json_integer_value(ct) < confirm))
			confirm = json_integer_value(ct);
		char id[24];
		snprintf(id, sizeof(id), "%lld", (long long)p->id);
		json_t *pol =
		    json_pack("{s:s, s:s, s:i, s:O}", "id", id, "name", p->name, "priority",
			      p->priority, "rules", json_object_get(o, "rules"));
		if (pol && json_object_get(o, "description"))
			json_object_set(pol, "description", json_object_get(o, "description"));
		json_decref(o);
		if (!pol || json_array_append_new(pols, pol))
			goto oom;
		continue;
	oom_o:
		json_decref(o);
		goto oom;
	}
	fg_free(sorted);
	sorted = NULL;
	if (json_array_size(pols) == 0) {
		json_decref(sets);
		json_decref(pols);
		json_decref(sec);
		return 0;
	}
	if (json_object_set_new(sec, "sets", sets) || json_object_set_new(sec, "policies", pols)) {
		sets = pols = NULL;
		goto oom;
	}
	if (confirm && json_object_set_new(sec, "confirm_timeout", json_integer(confirm))) {
		json_decref(sec);
		return -ENOMEM;
	}
	*out = sec;
	return 0;
oom:
	fg_free(sorted);
	json_decref(sets);
	json_decref(pols);
	json_decref(sec);
	return -ENOMEM;
}

char *fg_desired_text(const json_t *state)
{
	return json_dumps(state, JSON_COMPACT | JSON_SORT_KEYS);
}

void fg_desired_hash(const char *text, unsigned char out[FG_DESIRED_HASH_LEN])
{
	unsigned char md[SHA256_DIGEST_LENGTH];
	SHA256((const unsigned char *)text, strlen(text), md);
	memcpy(out, md, FG_DESIRED_HASH_LEN);
}

static int add_node(struct fg_store *st, struct fg_desired_tunnel *d, size_t *cap, int64_t id)
{
	for (size_t i = 0; i < d->ctx.nnodes; i++)
		if (d->rows[i].id == id)
			return 0;
	if (d->ctx.nnodes == *cap) {
		size_t ncap = *cap ? *cap * 2 : 8;
		struct fg_node *r = fg_realloc(d->rows, ncap * sizeof(*r));
		if (!r)
			return -ENOMEM;
		d->rows = r;
		*cap = ncap;
	}
	int rc = st->ops->node_get(st, id, &d->rows[d->ctx.nnodes]);
	if (rc == -ENOENT)
		return 0; /* deleted meanwhile: compile names it unknown */
	if (rc)
		return rc;
	d->ctx.nnodes++;
	return 0;
}

int fg_desired_tunnel_load(struct fg_store *st, const struct fg_secret_key *key,
			   const struct fg_tunnel *t, struct fg_desired_tunnel *d, char *err,
			   size_t errlen)
{
	char field[64];
	size_t cap = 0;
	memset(d, 0, sizeof(*d));
	json_error_t je;
	json_t *j = t->json ? json_loads(t->json, 0, &je) : NULL;
	int rc = fg_tm_parse(j, &d->model, field, sizeof(field), err, errlen);
	json_decref(j);
	if (rc)
		return rc;
	d->ctx.tunnel_id = t->id;
	d->ctx.name = t->name;
	d->ctx.key_id = (uint32_t)t->key_id;
	if (d->model.entry_group) {
		rc = st->ops->group_members(st, d->model.entry_group, &d->entry, &d->ctx.nentry);
		if (rc == -ENOENT)
			rc = 0;
	} else {
		d->entry = fg_calloc(1, sizeof(*d->entry));
		rc = d->entry ? 0 : -ENOMEM;
		if (!rc) {
			d->entry[0] = d->model.entry_node;
			d->ctx.nentry = 1;
		}
	}
	d->ctx.entry_members = d->entry;
	for (size_t i = 0; !rc && i < d->ctx.nentry; i++)
		rc = add_node(st, d, &cap, d->entry[i]);
	for (size_t i = 0; !rc && i < d->model.nhops; i++)
		rc = add_node(st, d, &cap, d->model.hops[i]);
	for (size_t i = 0; !rc && i < d->model.nexits; i++)
		rc = add_node(st, d, &cap, d->model.exits[i]);
	if (!rc && d->ctx.nnodes && !(d->nodes = fg_calloc(d->ctx.nnodes, sizeof(*d->nodes))))
		rc = -ENOMEM;
	if (rc) {
		snprintf(err, errlen, "%s", strerror(-rc));
		goto err;
	}
	for (size_t i = 0; i < d->ctx.nnodes; i++) {
		const struct fg_node *n = &d->rows[i];
		d->nodes[i] = (struct fg_tm_node){
		    .id = n->id,
		    .name = n->name,
		    .address = n->address[0] ? n->address : n->seen_address,
		    .fingerprint = n->fingerprint,
		};
	}
	d->ctx.nodes = d->nodes;
	if (key) {
		int len = fg_secret_open(key, t->psk, d->psk);
		if (len < 0) {
			rc = len;
			snprintf(
			    err, errlen,
			    "its pre-shared key does not open with this server's key (%s): was "
			    "secret.key replaced?",
			    strerror(-rc));
			goto err;
		}
		d->ctx.psk = d->psk;
		d->ctx.psk_len = (size_t)len;
		if (t->prev_psk) {
			len = fg_secret_open(key, t->prev_psk, d->prev_psk);
			if (len < 0) {
				rc = len;
				snprintf(err, errlen,
					 "its previous pre-shared key does not open with this "
					 "server's key (%s)",
					 strerror(-rc));
				goto err;
			}
			d->ctx.prev_psk = d->prev_psk;
			d->ctx.prev_psk_len = (size_t)len;
			d->ctx.prev_key_id = (uint32_t)t->prev_key_id;
		}
	}
	return 0;
err:
	fg_desired_tunnel_deinit(d);
	return rc;
}

void fg_desired_tunnel_deinit(struct fg_desired_tunnel *d)
{
	sodium_memzero(d->psk, sizeof(d->psk));
	sodium_memzero(d->prev_psk, sizeof(d->prev_psk));
	fg_tm_deinit(&d->model);
	fg_node_list_free(d->rows, d->ctx.nnodes);
	fg_free(d->nodes);
	fg_free(d->entry);
	memset(d, 0, sizeof(*d));
}

/* The node's roles in its enabled tunnels, sorted by tunnel id (the store
 * lists them so). Tunnels that cannot run on the node yet are left out
 * and logged at debug level: the API shows why, per tunnel. */
static int tunnels_section(struct fg_store *st, const struct fg_secret_key *key, int64_t node_id,
			   json_t **out)
{
	struct fg_tunnel *v = NULL;
	size_t n = 0;
	*out = NULL;
	int rc = st->ops->tunnels_for_node(st, node_id, &v, &n);
	if (rc)
		return rc;
	json_t *arr = json_array();
	if (!arr) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		struct fg_desired_tunnel d;
		char why[512];
		json_t *o = NULL;
		if (!v[i].enabled)
			continue;
		rc = fg_desired_tunnel_load(st, key, &v[i], &d, why, sizeof(why));
		if (rc == -ENOMEM || rc == -EIO || rc == -EBUSY)
			goto out;
		if (rc) {
			fg_log_rl(FG_LOG_ERROR,
				  "hub: tunnel %lld (%s): %s: left out of node %lld's "
				  "state",
				  (long long)v[i].id, v[i].name, why, (long long)node_id);
			rc = 0;
			continue;
		}
		rc = fg_tm_compile(&d.model, &d.ctx, node_id, &o, why, sizeof(why));
		fg_desired_tunnel_deinit(&d);
		if (rc == -ENOMEM)
			goto out;
		if (rc || why[0])
			fg_dbg("hub: tunnel %lld (%s) on node %lld: %s", (long long)v[i].id,
			       v[i].name, (long long)node_id, why);
		rc = 0;
		if (o && json_array_append_new(arr, o)) {
			rc = -ENOMEM;
			goto out;
		}
	}
out:
	fg_tunnel_list_free(v, n);
	if (!rc && json_array_size(arr))
		*out = arr;
	else
		json_decref(arr);
	return rc;
}

int fg_desired_compile(struct fg_store *st, int64_t node_id, json_t **state, char **text)
{
	return fg_desired_compile_ex(st, NULL, node_id, state, text);
}

int fg_desired_compile_ex(struct fg_store *st, const struct fg_secret_key *key, int64_t node_id,
			  json_t **state, char **text)
{
	struct fg_forward *v = NULL;
	size_t n = 0;
	json_t *tunnels = NULL;
	int rc = st->ops->forwards_for_node(st, node_id, &v, &n);
	if (rc)
		return rc;
	*state = fg_desired_from_forwards(v, n);
	fg_forward_list_free(v, n);
	if (!*state)
		return -ENOMEM;
	struct fg_policy *pv = NULL;
	size_t np = 0;
	json_t *fw = NULL;
	rc = st->ops->policies_for_node(st, node_id, &pv, &np);
	if (!rc)
		rc = fg_desired_firewall(pv, np, &fw);
	fg_policy_list_free(pv, np);
	if (!rc && fw && json_object_set_new(*state, "firewall", fw))
		rc = -ENOMEM;
	if (!rc && key) {
		rc = tunnels_section(st, key, node_id, &tunnels);
		if (!rc && tunnels && json_object_set_new(*state, "tunnels", tunnels))
			rc = -ENOMEM;
	}
	if (rc) {
		json_decref(*state);
		*state = NULL;
		return rc;
	}
	*text = fg_desired_text(*state);
	if (!*text) {
		json_decref(*state);
		*state = NULL;
		return -ENOMEM;
	}
	return 0;
}
