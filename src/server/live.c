#include "server/live.h"

#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/log.h"
#include "core/loop.h"
#include "net/ws.h"

#define PUSH_INTERVAL_NS (1000000000LL)
/* a viewer that cannot take a second's worth of updates is skipped */
#define VIEWER_MAX_QUEUED (256u << 10)

struct viewer {
	struct viewer *next, **pprev;
	struct fg_live *lv;
	struct fg_ws *ws;
	struct fg_http_upgraded *u;
};

struct fg_live {
	struct fg_loop *loop;
	struct fg_hub *hub;
	struct viewer *viewers;
	size_t n;
	struct fg_timer tick;
};

/* Replaces j[key] ({id: {node: counters}}) by per-object sums with the
 * per-node values under "nodes". */
static void summarize(json_t *j, const char *key)
{
	json_t *objs = json_object_get(j, key), *out = json_object();
	const char *fid, *nid;
	json_t *per_node, *v;
	json_object_foreach(objs, fid, per_node)
	{
		uint64_t up = 0, down = 0, conns = 0, active = 0;
		double rup = 0, rdown = 0;
		json_object_foreach(per_node, nid, v)
		{
			up += (uint64_t)json_integer_value(json_object_get(v, "bytes_up"));
			down += (uint64_t)json_integer_value(json_object_get(v, "bytes_down"));
			conns += (uint64_t)json_integer_value(json_object_get(v, "conns"));
			active += (uint64_t)json_integer_value(json_object_get(v, "active"));
			rup += json_number_value(json_object_get(v, "rate_up"));
			rdown += json_number_value(json_object_get(v, "rate_down"));
		}
		json_object_set_new(out, fid,
				    json_pack("{s:I, s:I, s:I, s:I, s:f, s:f, s:O}", "bytes_up",
					      (json_int_t)up, "bytes_down", (json_int_t)down,
					      "conns", (json_int_t)conns, "conns_active",
					      (json_int_t)active, "up_bps", rup, "down_bps", rdown,
					      "nodes", per_node));
	}
	json_object_set_new(j, key, out);
}

json_t *fg_live_snapshot(const struct fg_hub *hub)
{
	json_t *j = fg_hub_live(hub);
	if (!j)
		return NULL;
	summarize(j, "forwards");
	summarize(j, "tunnels");
	return j;
}

static void viewer_unlink(struct viewer *v)
{
	if (!v->pprev)
		return;
	*v->pprev = v->next;
	if (v->next)
		v->next->pprev = v->pprev;
	v->pprev = NULL;
	v->lv->n--;
}

static void on_close(struct fg_ws *ws, int code, const char *err, void *user)
{
	struct viewer *v = user;
	viewer_unlink(v);
	fg_http_upgraded_release(v->u);
	fg_ws_free(ws);
	fg_free(v);
}

/* Viewers only listen; anything they send is ignored. */
static void on_text(struct fg_ws *ws, const char *data, size_t len, void *user)
{
}

static const struct fg_ws_cbs viewer_cbs = {.on_text = on_text, .on_close = on_close};

static void push(struct fg_live *lv)
{
	json_t *j = fg_live_snapshot(lv->hub);
	char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	if (!s)
		return;
	size_t len = strlen(s);
	for (struct viewer *v = lv->viewers; v; v = v->next)
		if (fg_ws_queued_bytes(v->ws) < VIEWER_MAX_QUEUED)
			fg_ws_send_text(v->ws, s, len);
	free(s);
}

static void tick_cb(struct fg_loop *loop, struct fg_timer *t)
{
	struct fg_live *lv = t->data;
	if (!lv->viewers)
		return; /* re-armed by the next attach */
	push(lv);
	fg_timer_start(loop, t, PUSH_INTERVAL_NS);
}

void fg_live_attach(int fd, const void *early, size_t early_len, struct fg_http_upgraded *u,
		    void *live)
{
	struct fg_live *lv = live;
	struct viewer *v = fg_calloc(1, sizeof(*v));
	if (!v) {
		close(fd);
		fg_http_upgraded_release(u);
		return;
	}
	v->lv = lv;
	v->u = u;
	v->ws = fg_ws_new_ex(lv->loop, fd, false, &viewer_cbs, NULL, early, early_len, v);
	if (!v->ws) {
		fg_http_upgraded_release(u);
		fg_free(v);
		return;
	}
	v->next = lv->viewers;
	if (lv->viewers)
		lv->viewers->pprev = &v->next;
	lv->viewers = v;
	v->pprev = &lv->viewers;
	lv->n++;
	/* the first frame right away, so a page fills in at once */
	if (fg_timer_armed(&lv->tick))
		fg_timer_stop(lv->loop, &lv->tick);
	fg_timer_start(lv->loop, &lv->tick, 0);
}

size_t fg_live_viewers(const struct fg_live *lv)
{
	return lv->n;
}

struct fg_live *fg_live_new(struct fg_loop *loop, struct fg_hub *hub)
{
	struct fg_live *lv = fg_calloc(1, sizeof(*lv));
	if (!lv)
		return NULL;
	lv->loop = loop;
	lv->hub = hub;
	fg_timer_init(&lv->tick, tick_cb, lv);
	return lv;
}

void fg_live_free(struct fg_live *lv)
{
	if (!lv)
		return;
	fg_timer_stop(lv->loop, &lv->tick);
	while (lv->viewers) {
		struct viewer *v = lv->viewers;
		viewer_unlink(v);
		fg_http_upgraded_release(v->u);
		fg_ws_free(v->ws); /* on_close will not come */
		fg_free(v);
	}
	fg_free(lv);
}
