/* JSON-RPC 2.0 envelope and control-protocol message decoders: pure
 * functions, see rpc.h and doc/protocol.md. */
#include "net/rpc.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/tls.h"

_Static_assert(sizeof(((struct fg_hello *)0)->fingerprint) == FG_TLS_FP_STRLEN,
	       "hello fingerprint holds a formatted SHA-256");

static int fail(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(char *err, size_t errlen, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	/* one printable line whatever the input held */
	for (char *p = err; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	return code;
}

static const char *type_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT: return "an object";
	case JSON_ARRAY: return "an array";
	case JSON_STRING: return "a string";
	case JSON_INTEGER: return "an integer";
	case JSON_REAL: return "a number";
	case JSON_TRUE:
	case JSON_FALSE: return "a boolean";
	default: return "null";
	}
}

/* ---- envelope -------------------------------------------------------- */

int fg_rpc_decode(const char *buf, size_t len, struct fg_rpc_msg *out, char *err, size_t errlen)
{
	json_error_t je;
	memset(out, 0, sizeof(*out));
	out->id_int = -1;
	out->root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
	if (!out->root)
		return fail(err, errlen, FG_RPC_PARSE_ERROR, "not JSON: %s at offset %d", je.text,
			    je.position);
	json_t *r = out->root;
	if (!json_is_object(r))
		return fail(err, errlen, FG_RPC_INVALID_REQUEST, "message is %s, not an object",
			    type_name(r));
	json_t *id = json_object_get(r, "id");
	if (id && !json_is_integer(id) && !json_is_string(id) && !json_is_null(id))
		return fail(err, errlen, FG_RPC_INVALID_REQUEST,
			    "id is %s, must be an integer, a string or null", type_name(id));
	if (id && !json_is_null(id))
		out->id = id;
	if (out->id && json_is_integer(id) && json_integer_value(id) >= 0)
		out->id_int = json_integer_value(id);
	const char *ver = json_string_value(json_object_get(r, "jsonrpc"));
	if (!ver || strcmp(ver, "2.0") != 0)
		return fail(err, errlen, FG_RPC_INVALID_REQUEST, "jsonrpc must be \"2.0\"");

	json_t *method = json_object_get(r, "method");
	json_t *result = json_object_get(r, "result");
	json_t *error = json_object_get(r, "error");
	if (method) {
		if (!json_is_string(method) || json_string_length(method) == 0)
			return fail(err, errlen, FG_RPC_INVALID_REQUEST,
				    "method must be a non-empty string");
		if (result || error)
			return fail(err, errlen, FG_RPC_INVALID_REQUEST,
				    "a request cannot carry result or error");
		json_t *params = json_object_get(r, "params");
		if (params && !json_is_object(params) && !json_is_array(params))
			return fail(err, errlen, FG_RPC_INVALID_REQUEST,
				    "params is %s, must be an object", type_name(params));
		out->method = json_string_value(method);
		out->params = params;
		out->kind = out->id ? FG_RPC_REQUEST : FG_RPC_NOTIFY;
		return 0;
	}
	if (!!result == !!error)
		return fail(err, errlen, FG_RPC_INVALID_REQUEST,
			    "message has no method and not exactly one of result and error");
	if (result) {
		if (!out->id)
			return fail(err, errlen, FG_RPC_INVALID_REQUEST, "a result needs an id");
		out->kind = FG_RPC_RESULT;
		out->result = result;
		return 0;
	}
	json_t *code = json_object_get(error, "code");
	json_t *msg = json_object_get(error, "message");
	if (!json_is_object(error) || !json_is_integer(code) || !json_is_string(msg))
		return fail(err, errlen, FG_RPC_INVALID_REQUEST,
			    "error must be an object with an integer code and a string message");
	out->kind = FG_RPC_ERROR;
	out->err_code = (int)json_integer_value(code);
	out->err_message = json_string_value(msg);
	return 0;
}

void fg_rpc_msg_deinit(struct fg_rpc_msg *m)
{
	json_decref(m->root);
	memset(m, 0, sizeof(*m));
}

static char *dump(json_t *o)
{
	if (!o)
		return NULL;
	char *s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return s;
}

char *fg_rpc_request(const char *method, json_t *params, int64_t id)
{
	json_t *o = json_pack("{s:s,s:s,s:o,s:I}", "jsonrpc", "2.0", "method", method, "params",
			      params ? params : json_object(), "id", (json_int_t)id);
	return dump(o);
}

char *fg_rpc_result(const json_t *id, json_t *result)
{
	json_t *o = json_pack("{s:s,s:o,s:O}", "jsonrpc", "2.0", "result",
			      result ? result : json_null(), "id", id ? id : json_null());
	return dump(o);
}

char *fg_rpc_error(const json_t *id, int code, const char *message)
{
	/* a message may quote the peer's bytes, which need not be UTF-8: JSON
	 * strings must be, so anything outside ASCII becomes '?' */
	char safe[FG_RPC_ERR_MAX];
	size_t n = 0;
	for (const char *p = message ? message : ""; *p && n + 1 < sizeof(safe); p++)
		safe[n++] = (unsigned char)*p < 0x80 ? *p : '?';
	safe[n] = '\0';
	json_t *o = json_pack("{s:s,s:{s:i,s:s},s:O}", "jsonrpc", "2.0", "error", "code", code,
			      "message", safe, "id", id ? id : json_null());
	return dump(o);
}

/* ---- field helpers --------------------------------------------------- */

bool fg_rpc_valid_boot_id(const char *s)
{
	size_t n = 0;
	for (; s[n]; n++) {
		char c = s[n];
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      c == '_' || c == '-'))
			return false;
	}
	return n >= 1 && n <= FG_RPC_ID_MAX;
}

int fg_rpc_parse_id(const json_t *v, int64_t *out)
{
	if (json_is_integer(v)) {
		if (json_integer_value(v) <= 0)
			return -EINVAL;
		*out = json_integer_value(v);
		return 0;
	}
	if (!json_is_string(v))
		return -EINVAL;
	const char *s = json_string_value(v);
	size_t n = json_string_length(v);
	if (n == 0 || n > 18 || strlen(s) != n) /* 18 digits fit in int64 */
		return -EINVAL;
	int64_t x = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		x = x * 10 + (s[i] - '0');
	}
	if (x <= 0)
		return -EINVAL;
	*out = x;
	return 0;
}

static int need_object(const json_t *o, const char *what, char *err, size_t errlen)
{
	if (!json_is_object(o))
		return fail(err, errlen, FG_RPC_INVALID_PARAMS, "%s: must be an object, not %s",
			    what, o ? type_name(o) : "missing");
	return 0;
}

/* A string field of at most max bytes, no NUL inside. required: absent is
 * an error; else absent gives "". */
static int get_str(const json_t *o, const char *path, const char *key, size_t max, bool required,
		   const char **out, char *err, size_t errlen)
{
	json_t *v = json_object_get(o, key);
	if (!v) {
		if (required)
			return fail(err, errlen, FG_RPC_INVALID_PARAMS, "%s%s%s: missing", path,
				    *path ? "." : "", key);
		*out = "";
		return 0;
	}
	if (!json_is_string(v))
		return fail(err, errlen, FG_RPC_INVALID_PARAMS, "%s%s%s: must be a string, not %s",
			    path, *path ? "." : "", key, type_name(v));
	if (json_string_length(v) > max || strlen(json_string_value(v)) != json_string_length(v))
		return fail(err, errlen, FG_RPC_INVALID_PARAMS,
			    "%s%s%s: must be at most %zu characters, without NUL", path,
			    *path ? "." : "", key, max);
	*out = json_string_value(v);
	return 0;
}

/* A non-negative integer field; absent gives def (or an error if def < 0). */
static int get_uint(const json_t *o, const char *path, const char *key, int64_t def, int64_t *out,
		    char *err, size_t errlen)
{
	json_t *v = json_object_get(o, key);
	if (!v) {
		if (def < 0)
			return fail(err, errlen, FG_RPC_INVALID_PARAMS, "%s%s%s: missing", path,
				    *path ? "." : "", key);
		*out = def;
		return 0;
	}
	if (!json_is_integer(v))
		return fail(err, errlen, FG_RPC_INVALID_PARAMS,
			    "%s%s%s: must be a non-negative integer, not %s", path,
			    *path ? "." : "", key, type_name(v));
	if (json_integer_value(v) < 0)
		return fail(err, errlen, FG_RPC_INVALID_PARAMS,
			    "%s%s%s: %lld is negative, must be a non-negative integer", path,
			    *path ? "." : "", key, (long long)json_integer_value(v));
	*out = json_integer_value(v);
	return 0;
}

/* ---- messages -------------------------------------------------------- */

int fg_hello_decode(const json_t *params, struct fg_hello *out, char *err, size_t errlen)
{
	int rc;
	memset(out, 0, sizeof(*out));
	if ((rc = need_object(params, "hello params", err, errlen)))
		return rc;
	if ((rc = get_str(params, "", "version", FG_RPC_FIELD_MAX, true, &out->version, err,
			  errlen)) ||
	    (rc = get_str(params, "", "hostname", FG_RPC_FIELD_MAX, false, &out->hostname, err,
			  errlen)) ||
	    (rc =
		 get_str(params, "", "boot_id", FG_RPC_ID_MAX, true, &out->boot_id, err, errlen)) ||
	    (rc = get_uint(params, "", "applied_rev", 0, &out->applied_rev, err, errlen)))
		return rc;
	if (!fg_rpc_valid_boot_id(out->boot_id))
		return fail(err, errlen, FG_RPC_INVALID_PARAMS,
			    "boot_id: \"%.64s\" must be 1-64 characters of A-Z a-z 0-9 _ -",
			    out->boot_id);
	json_t *caps = json_object_get(params, "capabilities");
	if (caps) {
		size_t i;
		json_t *c;
		if (!json_is_array(caps))
			return fail(err, errlen, FG_RPC_INVALID_PARAMS,
				    "capabilities: must be an array of strings, not %s",
				    type_name(caps));
		json_array_foreach(caps, i, c)
		{
			if (!json_is_string(c))
				return fail(err, errlen, FG_RPC_INVALID_PARAMS,
					    "capabilities[%zu]: must be a string, not %s", i,
					    type_name(c));
		}
	}
	out->capabilities = caps;
	const char *fp;
	if ((rc = get_str(params, "", "fingerprint", FG_RPC_FIELD_MAX, false, &fp, err, errlen)))
		return rc;
	if (*fp) {
		uint8_t raw[FG_TLS_FP_LEN];
		if (fg_tls_parse_pin(fp, raw) < 0)
			return fail(err, errlen, FG_RPC_INVALID_PARAMS,
				    "fingerprint: \"%.100s\" is not a SHA-256 fingerprint (64 hex "
				    "digits, colons allowed)",
				    fp);
		fg_tls_format_fp(raw, out->fingerprint);
	}
	return 0;
}

int fg_hello_result_decode(const json_t *result, struct fg_hello_result *out, char *err,
			   size_t errlen)
{
	int rc;
	memset(out, 0, sizeof(*out));
	if ((rc = need_object(result, "hello result", err, errlen)))
		return rc;
	json_t *node = json_object_get(result, "node");
	if ((rc = need_object(node, "node", err, errlen)))
		return rc;
	if ((rc = fg_rpc_parse_id(json_object_get(node, "id"), &out->node_id)))
		return fail(err, errlen, FG_RPC_INVALID_PARAMS, "node.id: must be a positive id");
	if ((rc = get_str(node, "node", "name", FG_RPC_FIELD_MAX, true, &out->node_name, err,
			  errlen)) ||
	    (rc = get_uint(result, "", "server_time", 0, &out->server_time, err, errlen)))
		return rc;
	return 0;
}

int fg_status_decode(const json_t *o, const char *path, struct fg_status_rec *out, char *err,
		     size_t errlen)
{
	int rc;
	memset(out, 0, sizeof(*out));
	if ((rc = need_object(o, path, err, errlen)))
		return rc;
	if ((rc = get_str(o, path, "kind", FG_RPC_ID_MAX, true, &out->kind, err, errlen)) ||
	    (rc = get_str(o, path, "name", FG_RPC_FIELD_MAX, false, &out->name, err, errlen)) ||
	    (rc = get_str(o, path, "error", FG_RPC_ERR_MAX, false, &out->error, err, errlen)))
		return rc;
	json_t *id = json_object_get(o, "id");
	if (id && !(json_is_string(id) && json_string_length(id) == 0) &&
	    fg_rpc_parse_id(id, &out->id) < 0)
		return fail(err, errlen, FG_RPC_INVALID_PARAMS,
			    "%s.id: must be a positive integer or a string holding one", path);
	json_t *ok = json_object_get(o, "ok");
	if (!json_is_boolean(ok))
		return fail(err, errlen, FG_RPC_INVALID_PARAMS, "%s.ok: must be a boolean, not %s",
			    path, ok ? type_name(ok) : "missing");
	out->ok = json_is_true(ok);
	return 0;
}

int fg_counter_decode(const json_t *o, const char *path, struct fg_counter_rec *out, char *err,
		      size_t errlen)
{
	int rc;
	int64_t up, down, conns, active;
	memset(out, 0, sizeof(*out));
	if ((rc = need_object(o, path, err, errlen)))
		return rc;
	if ((rc = get_str(o, path, "kind", FG_RPC_ID_MAX, true, &out->kind, err, errlen)))
		return rc;
	if (fg_rpc_parse_id(json_object_get(o, "id"), &out->id) < 0)
		return fail(err, errlen, FG_RPC_INVALID_PARAMS,
			    "%s.id: must be a positive integer or a string holding one", path);
	if ((rc = get_uint(o, path, "bytes_up", -1, &up, err, errlen)) ||
	    (rc = get_uint(o, path, "bytes_down", -1, &down, err, errlen)) ||
	    (rc = get_uint(o, path, "conns", 0, &conns, err, errlen)) ||
	    (rc = get_uint(o, path, "active", 0, &active, err, errlen)))
		return rc;
	out->bytes_up = (uint64_t)up;
	out->bytes_down = (uint64_t)down;
	out->conns = (uint64_t)conns;
	out->active = (uint64_t)active;
	static const struct {
		const char *key;
		int64_t max;
		size_t off;
	} opt[] = {
	    {"links_up", FG_RPC_LINKS_UP_MAX, offsetof(struct fg_counter_rec, links_up)},
	    {"rtt_prev_us", FG_RPC_RTT_MAX_US, offsetof(struct fg_counter_rec, rtt_prev_us)},
	    {"rtt_next_us", FG_RPC_RTT_MAX_US, offsetof(struct fg_counter_rec, rtt_next_us)},
	};
	for (size_t i = 0; i < sizeof(opt) / sizeof(opt[0]); i++) {
		int64_t v = -1;
		if (json_object_get(o, opt[i].key) &&
		    (rc = get_uint(o, path, opt[i].key, 0, &v, err, errlen)))
			return rc;
		if (v > opt[i].max)
			return fail(err, errlen, FG_RPC_INVALID_PARAMS,
				    "%s.%s: %lld is more than %lld", path, opt[i].key, (long long)v,
				    (long long)opt[i].max);
		memcpy((char *)out + opt[i].off, &v, sizeof(v));
	}
	if ((rc = get_str(o, path, "warn", FG_RPC_WARN_MAX, false, &out->warn, err, errlen)))
		return rc;
	/* shown as is in the API and the UI: one line, no control bytes */
	for (const unsigned char *p = (const unsigned char *)out->warn; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			return fail(err, errlen, FG_RPC_INVALID_PARAMS,
				    "%s.warn: must be one line without control characters", path);
	return 0;
}

/* Checks every element of an optional array field with dec. */
static int check_list(const json_t *o, const char *key, const json_t **out, bool is_status,
		      char *err, size_t errlen)
{
	json_t *a = json_object_get(o, key);
	*out = NULL;
	if (!a)
		return 0;
	if (!json_is_array(a))
		return fail(err, errlen, FG_RPC_INVALID_PARAMS, "%s: must be an array, not %s", key,
			    type_name(a));
	size_t i;
	json_t *v;
	json_array_foreach(a, i, v)
	{
		char path[48];
		int rc;
		snprintf(path, sizeof(path), "%s[%zu]", key, i);
		if (is_status) {
			struct fg_status_rec s;
			rc = fg_status_decode(v, path, &s, err, errlen);
		} else {
			struct fg_counter_rec c;
			rc = fg_counter_decode(v, path, &c, err, errlen);
		}
		if (rc)
			return rc;
	}
	*out = a;
	return 0;
}

static int check_firewall_counters(const json_t *fw, char *err, size_t errlen);

int fg_report_decode(const json_t *params, struct fg_report *out, char *err, size_t errlen)
{
	int rc;
	memset(out, 0, sizeof(*out));
	out->applied_rev = -1;
	if ((rc = need_object(params, "report params", err, errlen)))
		return rc;
	if ((rc =
		 get_str(params, "", "boot_id", FG_RPC_ID_MAX, true, &out->boot_id, err, errlen)) ||
	    (rc = get_uint(params, "", "ts", 0, &out->ts, err, errlen)))
		return rc;
	if (!fg_rpc_valid_boot_id(out->boot_id))
		return fail(err, errlen, FG_RPC_INVALID_PARAMS,
			    "boot_id: \"%.64s\" must be 1-64 characters of A-Z a-z 0-9 _ -",
			    out->boot_id);
	if (json_object_get(params, "applied_rev") &&
	    (rc = get_uint(params, "", "applied_rev", 0, &out->applied_rev, err, errlen)))
		return rc;
	if ((rc = check_list(params, "status", &out->status, true, err, errlen)) ||
	    (rc = check_list(params, "counters", &out->counters, false, err, errlen)))
		return rc;
	json_t *fw = json_object_get(params, "firewall");
	if (fw && (rc = check_firewall_counters(fw, err, errlen)))
		return rc;
	out->firewall = fw;
	return 0;
}

int fg_apply_decode(const json_t *params, struct fg_apply *out, char *err, size_t errlen)
{
	int rc;
	memset(out, 0, sizeof(*out));
	if ((rc = need_object(params, "apply params", err, errlen)))
		return rc;
	if ((rc = get_uint(params, "", "rev", -1, &out->rev, err, errlen)))
		return rc;
	if (out->rev < 1)
		return fail(err, errlen, FG_RPC_INVALID_PARAMS, "rev: must be 1 or more");
	out->state = json_object_get(params, "state");
	if ((rc = need_object(out->state, "state", err, errlen)))
		return rc;
	out->forwards = json_object_get(out->state, "forwards");
	if (out->forwards && !json_is_array(out->forwards))
		return fail(err, errlen, FG_RPC_INVALID_PARAMS,
			    "state.forwards: must be an array, not %s", type_name(out->forwards));
	return 0;
}

int fg_apply_result_decode(const json_t *result, struct fg_apply_result *out, char *err,
			   size_t errlen)
{
	int rc;
	memset(out, 0, sizeof(*out));
	if ((rc = need_object(result, "apply result", err, errlen)))
		return rc;
	if ((rc = get_uint(result, "", "rev", -1, &out->rev, err, errlen)))
		return rc;
	return check_list(result, "status", &out->status, true, err, errlen);
}

/* ---- tasks ----------------------------------------------------------- */

#define TEXT_MAX (16u << 20) /* nft listings and scripts: the frame limit */

int fg_task_decode(const json_t *params, struct fg_task *out, char *err, size_t errlen)
{
	int rc;
	memset(out, 0, sizeof(*out));
	if ((rc = need_object(params, "task params", err, errlen)))
		return rc;
	if ((rc = get_str(params, "", "kind", FG_RPC_ID_MAX, true, &out->kind, err, errlen)) ||
	    (rc = get_str(params, "", "script", TEXT_MAX, false, &out->script, err, errlen)))
		return rc;
	return 0;
}

int fg_nft_counter_decode(const json_t *o, const char *path, struct fg_nft_counter_rec *out,
			  char *err, size_t errlen)
{
	int rc;
	int64_t packets, bytes;
	memset(out, 0, sizeof(*out));
	if ((rc = need_object(o, path, err, errlen)))
		return rc;
	if ((rc = get_str(o, path, "name", 95, true, &out->name, err, errlen)) ||
	    (rc = get_uint(o, path, "packets", -1, &packets, err, errlen)) ||
	    (rc = get_uint(o, path, "bytes", -1, &bytes, err, errlen)))
		return rc;
	out->packets = (uint64_t)packets;
	out->bytes = (uint64_t)bytes;
	return 0;
}

int fg_firewall_show_decode(const json_t *result, struct fg_firewall_show *out, char *err,
			    size_t errlen)
{
	int rc;
	memset(out, 0, sizeof(*out));
	if ((rc = need_object(result, "firewall_show result", err, errlen)))
		return rc;
	if ((rc = get_str(result, "", "live", TEXT_MAX, true, &out->live, err, errlen)) ||
	    (rc = get_str(result, "", "preview", TEXT_MAX, false, &out->preview, err, errlen)) ||
	    (rc = get_str(result, "", "preview_error", FG_RPC_ERR_MAX * 8, false,
			  &out->preview_error, err, errlen)))
		return rc;
	json_t *cp = json_object_get(result, "confirm_pending");
	if (cp && !json_is_boolean(cp))
		return fail(err, errlen, FG_RPC_INVALID_PARAMS,
			    "confirm_pending: must be a boolean, not %s", type_name(cp));
	out->confirm_pending = json_is_true(cp);
	json_t *a = json_object_get(result, "counters");
	if (a && !json_is_array(a))
		return fail(err, errlen, FG_RPC_INVALID_PARAMS,
			    "counters: must be an array, not %s", type_name(a));
	size_t i;
	json_t *v;
	json_array_foreach(a, i, v)
	{
		char path[32];
		struct fg_nft_counter_rec c;
		snprintf(path, sizeof(path), "counters[%zu]", i);
		if ((rc = fg_nft_counter_decode(v, path, &c, err, errlen)))
			return rc;
	}
	out->counters = a;
	return 0;
}

/* report.firewall: {counters:[{name, packets, bytes}], confirm_pending?} */
static int check_firewall_counters(const json_t *fw, char *err, size_t errlen)
{
	int rc;
	if ((rc = need_object(fw, "firewall", err, errlen)))
		return rc;
	json_t *cp = json_object_get(fw, "confirm_pending");
	if (cp && !json_is_boolean(cp))
		return fail(err, errlen, FG_RPC_INVALID_PARAMS,
			    "firewall.confirm_pending: must be a boolean, not %s", type_name(cp));
	json_t *a = json_object_get(fw, "counters");
	if (a && !json_is_array(a))
		return fail(err, errlen, FG_RPC_INVALID_PARAMS,
			    "firewall.counters: must be an array, not %s", type_name(a));
	size_t i;
	json_t *v;
	json_array_foreach(a, i, v)
	{
		char path[48];
		struct fg_nft_counter_rec c;
		snprintf(path, sizeof(path), "firewall.counters[%zu]", i);
		if ((rc = fg_nft_counter_decode(v, path, &c, err, errlen)))
			return rc;
	}
	return 0;
}
