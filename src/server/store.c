/* Backend-independent parts of the store interface. */
#include "server/store.h"

#include <errno.h>
#include <string.h>

#include "core/alloc.h"

void fg_store_close(struct fg_store *st)
{
	if (st)
		st->ops->close(st);
}

static const char *const role_names[] = {
    [FG_ROLE_VIEWER] = "viewer",
    [FG_ROLE_OPERATOR] = "operator",
    [FG_ROLE_ADMIN] = "admin",
};

static const char *const token_kind_names[] = {
    [FG_TOKEN_SESSION] = "session",
    [FG_TOKEN_API] = "api",
};

/* Index of s in names[1..n-1], or 0. */
static int name_index(const char *const *names, int n, const char *s)
{
	for (int i = 1; i < n; i++)
		if (strcmp(names[i], s) == 0)
			return i;
	return 0;
}

const char *fg_role_name(enum fg_role r)
{
	return r >= FG_ROLE_VIEWER && r <= FG_ROLE_ADMIN ? role_names[r] : "?";
}

int fg_role_parse(const char *s, enum fg_role *out)
{
	int i = name_index(role_names, FG_ROLE_ADMIN + 1, s);
	if (!i)
		return -EINVAL;
	*out = i;
	return 0;
}

const char *fg_token_kind_name(enum fg_token_kind k)
{
	return k >= FG_TOKEN_SESSION && k <= FG_TOKEN_API ? token_kind_names[k] : "?";
}

int fg_token_kind_parse(const char *s, enum fg_token_kind *out)
{
	int i = name_index(token_kind_names, FG_TOKEN_API + 1, s);
	if (!i)
		return -EINVAL;
	*out = i;
	return 0;
}

void fg_node_deinit(struct fg_node *n)
{
	fg_free(n->errors);
	n->errors = NULL;
}

void fg_node_list_free(struct fg_node *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		fg_node_deinit(&v[i]);
	fg_free(v);
}

void fg_forward_deinit(struct fg_forward *f)
{
	fg_free(f->json);
	f->json = NULL;
}

void fg_forward_list_free(struct fg_forward *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		fg_forward_deinit(&v[i]);
	fg_free(v);
}

void fg_tunnel_deinit(struct fg_tunnel *t)
{
	fg_free(t->json);
	fg_free(t->psk);
	fg_free(t->prev_psk);
	fg_free(t->nodes);
	fg_free(t->ports);
	t->json = t->psk = t->prev_psk = NULL;
	t->nodes = NULL;
	t->ports = NULL;
	t->nnodes = t->nports = 0;
}

void fg_tunnel_list_free(struct fg_tunnel *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		fg_tunnel_deinit(&v[i]);
	fg_free(v);
}

void fg_policy_deinit(struct fg_policy *p)
{
	fg_free(p->json);
	fg_free(p->node_ids);
	fg_free(p->group_ids);
	p->json = NULL;
	p->node_ids = p->group_ids = NULL;
	p->nnodes = p->ngroups = 0;
}

void fg_policy_list_free(struct fg_policy *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		fg_policy_deinit(&v[i]);
	fg_free(v);
}

void fg_audit_list_free(struct fg_audit_event *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		fg_free(v[i].who);
		fg_free(v[i].action);
		fg_free(v[i].object_kind);
		fg_free(v[i].before);
		fg_free(v[i].after);
	}
	fg_free(v);
}
