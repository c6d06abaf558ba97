/* The UI's live channel: browsers open a WebSocket at /api/v1/live/ws and
 * get the fleet's live view (fg_live_snapshot) pushed once a second, so
 * pages move without polling. Loop thread only. */
#ifndef FG_SERVER_LIVE_H
#define FG_SERVER_LIVE_H

#include <jansson.h>
#include <stddef.h>

#include "server/http.h"
#include "server/hub.h"

struct fg_live;

struct fg_live *fg_live_new(struct fg_loop *loop, struct fg_hub *hub);
/* Closes every viewer (their HTTP sides are released by deferred calls:
 * run the loop once more before freeing the HTTP layer). NULL is fine. */
void fg_live_free(struct fg_live *lv);

/* Takes over an upgraded connection (see fg_http_upgraded_cb). */
void fg_live_attach(int fd, const void *early, size_t early_len, struct fg_http_upgraded *u,
		    void *live);
size_t fg_live_viewers(const struct fg_live *lv);

/* The live view (new reference, NULL on allocation failure): the hub's
 * per-node state, and per forward the sums over its nodes (bytes_up,
 * bytes_down, conns, conns_active, up_bps, down_bps) with the per-node
 * values under "nodes". */
json_t *fg_live_snapshot(const struct fg_hub *hub);

#endif
