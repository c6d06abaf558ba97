/* The control protocol between agent and server (doc/protocol.md): the
 * JSON-RPC 2.0 envelope and the decoders of each message's params/result.
 * Every decoder is a pure function over (buf, len) or a json_t: it never
 * touches sockets or state, accepts any input, and on bad input returns a
 * JSON-RPC error code with one printable line in err naming the field.
 * Strings in the decoded structs are borrowed from the json_t they came
 * from. Used by the server's hub and by the agent. */
#ifndef FG_NET_RPC_H
#define FG_NET_RPC_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FG_PROTO_VERSION 1

/* JSON-RPC 2.0 error codes, plus ours in the server range. */
#define FG_RPC_PARSE_ERROR	-32700
#define FG_RPC_INVALID_REQUEST	-32600
#define FG_RPC_METHOD_NOT_FOUND -32601
#define FG_RPC_INVALID_PARAMS	-32602
#define FG_RPC_INTERNAL_ERROR	-32603
#define FG_RPC_NO_HELLO		-32001 /* a request before hello */
#define FG_RPC_APPLY_FAILED	-32002 /* the desired state was refused as a whole */

#define FG_RPC_ERR_MAX	 512
#define FG_RPC_ID_MAX	 64  /* object ids and boot ids on the wire */
#define FG_RPC_FIELD_MAX 255 /* version, hostname */

enum fg_rpc_kind {
	FG_RPC_REQUEST = 1, /* method + id */
	FG_RPC_NOTIFY,	    /* method, no id */
	FG_RPC_RESULT,	    /* result + id */
	FG_RPC_ERROR,	    /* error + id (may be null) */
};

struct fg_rpc_msg {
	enum fg_rpc_kind kind;
	json_t *root;	    /* owned */
	const char *method; /* requests */
	json_t *params;	    /* borrowed; NULL if absent */
	json_t *id;	    /* borrowed; NULL for notifications */
	int64_t id_int;	    /* id as an integer, -1 if it is not one */
	json_t *result;	    /* FG_RPC_RESULT */
	int err_code;	    /* FG_RPC_ERROR */
	const char *err_message;
};

/* Decodes one text frame. Returns 0 with *out filled (release with
 * fg_rpc_msg_deinit), or a JSON-RPC error code (< 0) with err set; then
 * out->id is the request's id when one could be read (answer the error to
 * it, or to null), and out->root is kept for that: deinit in every case. */
int fg_rpc_decode(const char *buf, size_t len, struct fg_rpc_msg *out, char *err, size_t errlen);
void fg_rpc_msg_deinit(struct fg_rpc_msg *m);

/* Encoders: return owned compact JSON text (free()), NULL on allocation
 * failure. params/result are stolen (a reference is consumed). */
char *fg_rpc_request(const char *method, json_t *params, int64_t id);
char *fg_rpc_result(const json_t *id, json_t *result);
/* id NULL encodes null. */
char *fg_rpc_error(const json_t *id, int code, const char *message);

/* ---- messages -------------------------------------------------------- */

/* hello params (agent -> server). */
struct fg_hello {
	const char *version, *hostname, *boot_id;
	int64_t applied_rev;	    /* 0 = nothing applied yet */
	const json_t *capabilities; /* array of strings */
	/* SHA-256 of the node's TLS certificate (tunnel peers pin it), in the
	 * canonical "AB:CD:..." form; "" when the agent sent none (older
	 * agents) */
	char fingerprint[96];
};
int fg_hello_decode(const json_t *params, struct fg_hello *out, char *err, size_t errlen);

/* hello result (server -> agent). */
struct fg_hello_result {
	int64_t node_id;
	const char *node_name;
	int64_t server_time;
};
int fg_hello_result_decode(const json_t *result, struct fg_hello_result *out, char *err,
			   size_t errlen);

/* One entry of a status list: {kind, id, name, ok, error}. */
struct fg_status_rec {
	const char *kind, *name, *error; /* name/error: "" if absent */
	int64_t id;			 /* 0 if the object has no server id */
	bool ok;
};
int fg_status_decode(const json_t *o, const char *path, struct fg_status_rec *out, char *err,
		     size_t errlen);

/* Upper bounds of a tunnel counter entry's link fields: a round trip
 * past a minute or more links than a node can hold are not measurements. */
#define FG_RPC_RTT_MAX_US   60000000
#define FG_RPC_LINKS_UP_MAX 1000000
/* ...and of its run-time warning (one line for an operator) */
#define FG_RPC_WARN_MAX 255

/* One entry of a counters list: absolute values since boot. A tunnel's
 * entry may carry its link health (doc/protocol.md). */
struct fg_counter_rec {
	const char *kind;
	int64_t id; /* > 0 */
	uint64_t bytes_up, bytes_down, conns, active;
	int64_t links_up;		  /* -1 if absent (not running, older agent) */
	int64_t rtt_prev_us, rtt_next_us; /* -1 if absent (no such side, not measured) */
	/* what keeps the node from running its part fully right now (a name
	 * that does not resolve), "" if absent: none, or an older agent.
	 * At most FG_RPC_WARN_MAX bytes of printable text. */
	const char *warn;
};
int fg_counter_decode(const json_t *o, const char *path, struct fg_counter_rec *out, char *err,
		      size_t errlen);

/* report params (agent -> server). status and counters are validated
 * arrays (possibly empty; status NULL when absent = unchanged); walk them
 * with fg_status_decode / fg_counter_decode, which then cannot fail. */
struct fg_report {
	const char *boot_id;
	int64_t ts;	     /* agent's Unix time, seconds */
	int64_t applied_rev; /* -1 if absent */
	const json_t *status;
	const json_t *counters;
	/* optional {counters:[{name, packets, bytes}], confirm_pending}: the
	 * firewall's rule counters (validated; NULL if absent) */
	const json_t *firewall;
};
int fg_report_decode(const json_t *params, struct fg_report *out, char *err, size_t errlen);

/* apply params (server -> agent): the node's complete desired state.
 * forwards is the "forwards" section (an array; NULL if absent = none). */
struct fg_apply {
	int64_t rev; /* >= 1 */
	const json_t *state;
	const json_t *forwards;
};
int fg_apply_decode(const json_t *params, struct fg_apply *out, char *err, size_t errlen);

/* apply result (agent -> server): {rev, status:[...]} */
struct fg_apply_result {
	int64_t rev;
	const json_t *status;
};
int fg_apply_result_decode(const json_t *result, struct fg_apply_result *out, char *err,
			   size_t errlen);

/* task params (server -> agent): one-off work. kind names it
 * ("firewall_show"); script (optional, "" if absent) is an nft script the
 * agent renders as nft would list it, for the preview diff. */
struct fg_task {
	const char *kind;
	const char *script;
};
int fg_task_decode(const json_t *params, struct fg_task *out, char *err, size_t errlen);

/* One named counter of the agent's table: {name, packets, bytes}. */
struct fg_nft_counter_rec {
	const char *name;
	uint64_t packets, bytes;
};

/* firewall_show result (agent -> server): the live table as nft lists it
 * (stateless; "" when the agent has no table), the task's script as nft
 * would list it (preview; "" with preview_error when it could not be
 * rendered), the table's named counters (validated array, walk with
 * fg_nft_counter_decode), and whether a change waits for confirmation. */
struct fg_firewall_show {
	const char *live, *preview, *preview_error;
	const json_t *counters;
	bool confirm_pending;
};
int fg_firewall_show_decode(const json_t *result, struct fg_firewall_show *out, char *err,
			    size_t errlen);
int fg_nft_counter_decode(const json_t *o, const char *path, struct fg_nft_counter_rec *out,
			  char *err, size_t errlen);

/* A boot id: 1-64 characters of [0-9A-Za-z_-]. */
bool fg_rpc_valid_boot_id(const char *s);
/* An object id on the wire: a positive integer, or a string holding one. */
int fg_rpc_parse_id(const json_t *v, int64_t *out);

#endif
