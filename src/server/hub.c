/* Placeholder agent hub until the real one lands (branch hub-agent):
 * authenticates node tokens and refuses sessions. */
#include "server/hub.h"

#include <errno.h>
#include <unistd.h>

#include "core/alloc.h"
#include "server/auth.h"

struct fg_hub {
	struct fg_store *st;
};

struct fg_hub *fg_hub_new(struct fg_loop *loop, struct fg_store *st, const struct fg_hub_opts *o)
{
	struct fg_hub *h = fg_calloc(1, sizeof(*h));
	if (h)
		h->st = st;
	return h;
}

void fg_hub_free(struct fg_hub *hub)
{
	fg_free(hub);
}

int fg_hub_authenticate(struct fg_hub *hub, const char *token, int64_t *node_id)
{
	char hash[FG_STORE_HASH_LEN + 1];
	struct fg_node n;
	fg_auth_token_hash(token, hash);
	if (hub->st->ops->node_get_by_token(hub->st, hash, &n) < 0)
		return -EACCES;
	*node_id = n.id;
	fg_node_deinit(&n);
	return 0;
}

void fg_hub_attach(struct fg_hub *hub, int64_t node_id, int fd, const void *early, size_t early_len,
		   void (*done)(void *done_arg), void *done_arg)
{
	close(fd);
	done(done_arg);
}

int fg_hub_refresh(struct fg_hub *hub, const int64_t *node_ids, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int64_t rev;
		hub->st->ops->node_bump_desired_rev(hub->st, node_ids[i], &rev);
	}
	return 0;
}

void fg_hub_kick(struct fg_hub *hub, int64_t node_id)
{
}

bool fg_hub_online(const struct fg_hub *hub, int64_t node_id)
{
	return false;
}

size_t fg_hub_sessions(const struct fg_hub *hub)
{
	return 0;
}

json_t *fg_hub_live(const struct fg_hub *hub)
{
	return json_pack("{s:{}, s:{}}", "nodes", "forwards");
}

void fg_hub_metrics(const struct fg_hub *hub, struct fg_strbuf *out)
{
}
