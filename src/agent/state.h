/* The agent's files in its state directory (doc/protocol.md, "Agent
 * files"): state.json, the last applied desired state, loaded at boot
 * before the server answers; pending.json, the latest absolute counters
 * per boot not yet acknowledged by the server, so traffic moved during a
 * server outage is counted once even across an agent restart. Writes are
 * atomic (tmp + fsync + rename + fsync of the directory). */
#ifndef FG_AGENT_STATE_H
#define FG_AGENT_STATE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "net/rpc.h"

#define FG_AGENT_STATE_FILE   "state.json"
#define FG_AGENT_PENDING_FILE "pending.json"
#define FG_AGENT_TOKEN_FILE   "token"

/* Writes dir/name atomically: readers see the old or the new content,
 * never a part, even across a power cut. Returns 0 or -errno. */
int fg_file_write_atomic(const char *dir, const char *name, const char *data, size_t len);
/* Reads a whole file (at most max bytes) into an owned NUL-terminated
 * buffer. Returns 0, -ENOENT, -EFBIG or another -errno. */
int fg_file_read(const char *path, size_t max, char **out, size_t *len);

/* state.json: {"rev": N, "state": {...}}. load returns 0 with *rev and
 * *state (new reference), -ENOENT if there is none, -EINVAL with err. */
int fg_agent_state_load(const char *dir, int64_t *rev, json_t **state, char *err, size_t errlen);
int fg_agent_state_save(const char *dir, int64_t rev, const json_t *state);

struct fg_pending_ctr {
	char kind[16];
	char id[FG_RPC_ID_MAX + 1];
	uint64_t bytes_up, bytes_down, conns;
};

struct fg_pending_boot {
	char boot_id[FG_RPC_ID_MAX + 1];
	struct fg_pending_ctr *v; /* owned */
	size_t n;
};

struct fg_pending {
	struct fg_pending_boot *v; /* owned */
	size_t n;
};

/* pending.json: {"boots":[{"boot_id":"...","counters":[{"kind","id",
 * "bytes_up","bytes_down","conns"}]}]}. decode is pure: on bad input it
 * returns -EINVAL with err and leaves *out empty. encode returns owned
 * text (free()) or NULL. */
int fg_pending_decode(const char *buf, size_t len, struct fg_pending *out, char *err,
		      size_t errlen);
char *fg_pending_encode(const struct fg_pending *p);
void fg_pending_free(struct fg_pending *p);
/* Takes boot i out of p (its memory freed). */
void fg_pending_remove(struct fg_pending *p, size_t i);

int fg_pending_load(const char *dir, struct fg_pending *out, char *err, size_t errlen);
int fg_pending_save(const char *dir, const struct fg_pending *p);

#endif
