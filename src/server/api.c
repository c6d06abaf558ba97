/* Routing, authentication, login, users and tokens, /metrics, /agent and
 * the UI's static files. The fleet resources live in api_fleet.c. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/log.h"
#include "core/strbuf.h"
#include "core/work.h"
#include "server/api_int.h"
#include "server/auth.h"

#define LIMITER_SLOTS	  1024
#define LOGIN_BURST	  10.0 /* failed logins an address may make at once */
#define LOGIN_REFILL_S	  6.0  /* then one more every this many seconds */
#define PASSWORD_MAX	  1024
#define API_TOKEN_TTL_MAX (10LL * 365 * 86400)

/* Failed-login budget of one client address (a token bucket). */
struct login_slot {
	char ip[48];
	double tokens;
	int64_t last;
};

int64_t api_now(void)
{
	return (int64_t)time(NULL);
}

/* ---- answers ---------------------------------------------------------- */

enum fg_http_verdict api_reply(struct fg_http_req *r, int status, json_t *j)
{
	char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	if (!s) {
		static const char oom[] =
		    "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}";
		fg_http_respond(r, 500, "application/json", oom, sizeof(oom) - 1);
		return FG_HTTP_DONE;
	}
	fg_http_respond(r, status, "application/json", s, strlen(s));
	free(s);
	return FG_HTTP_DONE;
}

enum fg_http_verdict api_fail(struct fg_http_req *r, int status, const char *code,
			      const char *field, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	json_t *e = json_pack("{s:s, s:s}", "code", code, "message", msg);
	if (field)
		json_object_set_new(e, "field", json_string(field));
	if (status == 401)
		fg_http_add_header(r, "WWW-Authenticate", "Bearer");
	return api_reply(r, status, json_pack("{s:o}", "error", e));
}

enum fg_http_verdict api_store_fail(struct fg_http_req *r, int rc, const char *doing)
{
	fg_err("api: %s %s: store error while %s: %s", fg_http_method(r), fg_http_path(r), doing,
	       strerror(-rc));
	return api_fail(r, 500, "internal", NULL, "store error while %s", doing);
}

json_t *api_body_object(struct fg_http_req *r)
{
	size_t len;
	const char *body = fg_http_body(r, &len);
	json_error_t je;
	json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
	if (!j) {
		api_fail(r, 400, "bad_json", NULL, "request body is not valid JSON: %s (line %d)",
			 je.text, je.line);
		return NULL;
	}
	if (!json_is_object(j)) {
		json_decref(j);
		api_fail(r, 400, "bad_json", NULL, "request body must be a JSON object");
		return NULL;
	}
	return j;
}

bool api_require(struct api_call *c, enum fg_role role)
{
	if (c->who.role >= role)
		return true;
	api_fail(c->r, 403, "forbidden", NULL, "this needs the %s role; you are %s",
		 fg_role_name(role), fg_role_name(c->who.role));
	return false;
}

void api_audit(struct api_call *c, const char *action, const char *kind, int64_t id, json_t *before,
	       json_t *after)
{
	char *b = before ? json_dumps(before, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	char *a = after ? json_dumps(after, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	int rc =
	    c->api->st->ops->audit_add(c->api->st, api_now(), c->who.name, action, kind, id, b, a);
	if (rc < 0)
		fg_warn("api: audit %s %s %lld not recorded: %s", action, kind, (long long)id,
			strerror(-rc));
	free(b);
	free(a);
}

const char *api_name_invalid(const char *s)
{
	size_t n = strlen(s);
	if (n == 0)
		return "must not be empty";
	if (n > FG_STORE_NAME_MAX)
		return "is longer than 64 characters";
	bool digits = true;
	for (const char *p = s; *p; p++) {
		if (!isalnum((unsigned char)*p) && *p != '.' && *p != '_' && *p != '-')
			return "may hold only letters, digits, '.', '_' and '-'";
		if (!isdigit((unsigned char)*p))
			digits = false;
	}
	return digits ? "must not be all digits (ids and names share paths)" : NULL;
}

/* ---- authentication --------------------------------------------------- */

static const char *bearer(struct fg_http_req *r)
{
	const char *h = fg_http_header(r, "Authorization");
	if (!h || strncasecmp(h, "Bearer ", 7) != 0)
		return NULL;
	h += 7;
	while (*h == ' ')
		h++;
	return *h ? h : NULL;
}

/* Fills c->who from the bearer token. Returns false after answering 401. */
static bool authenticate(struct api_call *c)
{
	const char *tok = bearer(c->r);
	if (!tok && c->query_token)
		tok = fg_http_query(c->r, "access_token");
	if (!tok)
		return api_fail(c->r, 401, "unauthorized", NULL,
				"missing Authorization: Bearer <token> (POST /api/v1/login)"),
		       false;
	char hash[FG_STORE_HASH_LEN + 1];
	fg_auth_token_hash(tok, hash);
	struct fg_store *st = c->api->st;
	struct fg_token t;
	struct fg_user u;
	int rc = st->ops->token_lookup(st, hash, api_now(), &t);
	if (rc == 0)
		rc = st->ops->user_get(st, t.user_id, &u);
	if (rc == -ENOENT)
		return api_fail(c->r, 401, "unauthorized", NULL,
				"the token is unknown, expired or revoked"),
		       false;
	if (rc < 0)
		return api_store_fail(c->r, rc, "checking the token"), false;
	c->who.user_id = u.id;
	c->who.token_id = t.id;
	c->who.kind = t.kind;
	c->who.role = u.role;
	snprintf(c->who.name, sizeof(c->who.name), "%s", u.name);
	return true;
}

static struct login_slot *limiter_slot(struct fg_api *api, const char *ip)
{
	uint32_t h = 2166136261u;
	for (const char *p = ip; *p; p++)
		h = (h ^ (uint8_t)*p) * 16777619u;
	struct login_slot *s = &api->limiter[h % LIMITER_SLOTS];
	int64_t now = api_now();
	if (strcmp(s->ip, ip) != 0) {
		/* a colliding address takes the slot over only once it is idle,
		 * so flooding from elsewhere cannot wipe an attacker's debt fast */
		if (s->ip[0] && s->tokens < LOGIN_BURST &&
		    now - s->last < (int64_t)(LOGIN_BURST * LOGIN_REFILL_S))
			return s;
		snprintf(s->ip, sizeof(s->ip), "%s", ip);
		s->tokens = LOGIN_BURST;
		s->last = now;
	}
	s->tokens += (double)(now - s->last) / LOGIN_REFILL_S;
	if (s->tokens > LOGIN_BURST)
		s->tokens = LOGIN_BURST;
	s->last = now;
	return s;
}

/* argon2id runs on the work thread; the request waits suspended. */
enum pw_op { PW_LOGIN, PW_CHANGE, PW_CREATE_USER };

struct pw_job {
	struct fg_api *api;
	struct fg_http_req *r;
	enum pw_op op;
	struct fg_user user; /* PW_LOGIN/PW_CHANGE: the user; PW_CREATE_USER: name, role */
	char password[PASSWORD_MAX + 1], new_password[PASSWORD_MAX + 1];
	char new_hash[FG_STORE_PWHASH_MAX + 1];
	bool verified, hashed;
	struct api_who who;
};

static void pw_job_free(void *p)
{
	struct pw_job *j = p;
	sodium_memzero(j, sizeof(*j));
	fg_free(j);
}

static void pw_run(void *p)
{
	struct pw_job *j = p;
	if (j->op != PW_CREATE_USER)
		j->verified = fg_auth_password_verify(j->user.pwhash, j->password);
	if (j->op == PW_CREATE_USER || (j->op == PW_CHANGE && j->verified))
		j->hashed = fg_auth_password_hash(j->new_password, j->new_hash) == 0;
}

static json_t *user_json(const struct fg_user *u)
{
	return json_pack("{s:I, s:s, s:s, s:I}", "id", (json_int_t)u->id, "name", u->name, "role",
			 fg_role_name(u->role), "created", (json_int_t)u->created);
}

static void pw_done(void *p)
{
	struct pw_job *j = p;
	struct fg_api *api = j->api;
	struct fg_store *st = api->st;
	struct fg_http_req *r = j->r;
	struct api_call c = {.api = api, .r = r, .who = j->who};
	int rc;
	switch (j->op) {
	case PW_LOGIN: {
		if (!j->verified) {
			api->logins_failed++;
			limiter_slot(api, fg_http_peer(r))->tokens -= 1.0;
			fg_info("api: failed login for \"%s\" from %s", j->user.name,
				fg_http_peer(r));
			api_fail(r, 401, "bad_credentials", NULL, "wrong username or password");
			break;
		}
		char tok[FG_AUTH_TOKEN_SIZE], hash[FG_STORE_HASH_LEN + 1];
		fg_auth_token_new(FG_TOKEN_PREFIX_SESSION, tok);
		fg_auth_token_hash(tok, hash);
		int64_t tid;
		rc = st->ops->token_create(st, FG_TOKEN_SESSION, j->user.id, hash,
					   api_now() + api->session_ttl_s, &tid);
		if (rc < 0) {
			api_store_fail(r, rc, "creating a session");
			break;
		}
		api->logins_ok++;
		api_reply(r, 200,
			  json_pack("{s:s, s:o, s:I}", "token", tok, "user", user_json(&j->user),
				    "expires", (json_int_t)(api_now() + api->session_ttl_s)));
		sodium_memzero(tok, sizeof(tok));
		break;
	}
	case PW_CHANGE:
		if (!j->verified) {
			api_fail(r, 400, "invalid", "old_password",
				 "the current password is wrong");
			break;
		}
		if (!j->hashed) {
			api_fail(r, 500, "internal", NULL, "could not hash the new password");
			break;
		}
		rc = st->ops->user_set_password(st, j->user.id, j->new_hash);
		if (rc < 0) {
			api_store_fail(r, rc, "setting the password");
			break;
		}
		api_audit(&c, "password", "user", j->user.id, NULL, NULL);
		api_reply(r, 200, json_pack("{s:b}", "ok", 1));
		break;
	case PW_CREATE_USER: {
		if (!j->hashed) {
			api_fail(r, 500, "internal", NULL, "could not hash the password");
			break;
		}
		int64_t id;
		rc = st->ops->user_create(st, j->user.name, j->user.role, j->new_hash, &id);
		if (rc == -EEXIST) {
			api_fail(r, 409, "exists", "username", "a user named \"%s\" exists",
				 j->user.name);
			break;
		}
		if (rc < 0) {
			api_store_fail(r, rc, "creating the user");
			break;
		}
		struct fg_user u;
		if (st->ops->user_get(st, id, &u) < 0) {
			api_store_fail(r, rc, "reading the new user");
			break;
		}
		json_t *uj = user_json(&u);
		api_audit(&c, "create", "user", id, NULL, uj);
		api_reply(r, 201, uj);
		break;
	}
	}
	fg_http_resume(r);
}

static enum fg_http_verdict pw_submit(struct api_call *c, struct pw_job *j)
{
	j->api = c->api;
	j->r = c->r;
	j->who = c->who;
	fg_http_set_user(c->r, j, pw_job_free);
	int rc = fg_work_submit(c->api->work, pw_run, pw_done, j);
	if (rc < 0) {
		fg_http_add_header(c->r, "Retry-After", "1");
		return api_fail(c->r, 503, "busy", NULL, "too many password checks in progress");
	}
	return FG_HTTP_PENDING;
}

/* Copies a string field of at most max bytes; answers 400 and returns
 * false if absent or of the wrong type. */
static bool take_string(struct fg_http_req *r, json_t *o, const char *key, char *out, size_t max)
{
	json_t *v = json_object_get(o, key);
	if (!json_is_string(v))
		return api_fail(r, 400, "invalid", key, "%s: a string is required", key), false;
	if (json_string_length(v) > max)
		return api_fail(r, 400, "invalid", key, "%s: longer than %zu bytes", key, max),
		       false;
	snprintf(out, max + 1, "%s", json_string_value(v));
	return true;
}

static enum fg_http_verdict login(struct fg_api *api, struct fg_http_req *r)
{
	if (strcmp(fg_http_method(r), "POST") != 0)
		return api_fail(r, 405, "method", NULL, "use POST");
	struct login_slot *s = limiter_slot(api, fg_http_peer(r));
	if (s->tokens < 1.0) {
		api->logins_limited++;
		char ra[32];
		snprintf(ra, sizeof(ra), "%d", (int)((1.0 - s->tokens) * LOGIN_REFILL_S) + 1);
		fg_http_add_header(r, "Retry-After", ra);
		return api_fail(r, 429, "rate_limited", NULL,
				"too many failed logins from %s; retry in %s s", fg_http_peer(r),
				ra);
	}
	json_t *b = api_body_object(r);
	if (!b)
		return FG_HTTP_DONE;
	struct pw_job *j = fg_calloc(1, sizeof(*j));
	if (!j) {
		json_decref(b);
		return api_fail(r, 500, "internal", NULL, "out of memory");
	}
	char name[FG_STORE_NAME_MAX + 1];
	if (!take_string(r, b, "username", name, FG_STORE_NAME_MAX) ||
	    !take_string(r, b, "password", j->password, PASSWORD_MAX)) {
		json_decref(b);
		pw_job_free(j);
		return FG_HTTP_DONE;
	}
	json_decref(b);
	j->op = PW_LOGIN;
	int rc = api->st->ops->user_get_by_name(api->st, name, &j->user);
	if (rc == -ENOENT) {
		/* verify against a dummy hash anyway: the answer time must not
		 * tell which user names exist */
		static char dummy[FG_STORE_PWHASH_MAX + 1];
		if (!dummy[0])
			fg_auth_password_hash("not a password", dummy);
		snprintf(j->user.pwhash, sizeof(j->user.pwhash), "%s", dummy);
		snprintf(j->user.name, sizeof(j->user.name), "%s", name);
		j->user.id = 0;
	} else if (rc < 0) {
		pw_job_free(j);
		return api_store_fail(r, rc, "looking up the user");
	}
	struct api_call c = {.api = api, .r = r};
	return pw_submit(&c, j);
}

/* ---- me, users, tokens ------------------------------------------------ */

static enum fg_http_verdict me(struct api_call *c)
{
	struct fg_store *st = c->api->st;
	if (c->nseg == 1 && strcmp(c->method, "GET") == 0) {
		struct fg_user u;
		int rc = st->ops->user_get(st, c->who.user_id, &u);
		if (rc < 0)
			return api_store_fail(c->r, rc, "reading the user");
		return api_reply(c->r, 200, user_json(&u));
	}
	if (c->nseg == 2 && strcmp(c->seg[1], "password") == 0 && strcmp(c->method, "POST") == 0) {
		json_t *b = api_body_object(c->r);
		if (!b)
			return FG_HTTP_DONE;
		struct pw_job *j = fg_calloc(1, sizeof(*j));
		if (!j) {
			json_decref(b);
			return api_fail(c->r, 500, "internal", NULL, "out of memory");
		}
		bool ok = take_string(c->r, b, "old_password", j->password, PASSWORD_MAX) &&
			  take_string(c->r, b, "new_password", j->new_password, PASSWORD_MAX);
		json_decref(b);
		if (ok && strlen(j->new_password) < FG_AUTH_PASSWORD_MIN) {
			api_fail(c->r, 400, "invalid", "new_password",
				 "new_password: at least %d characters", FG_AUTH_PASSWORD_MIN);
			ok = false;
		}
		int rc = ok ? st->ops->user_get(st, c->who.user_id, &j->user) : 0;
		if (rc < 0) {
			api_store_fail(c->r, rc, "reading the user");
			ok = false;
		}
		if (!ok) {
			pw_job_free(j);
			return FG_HTTP_DONE;
		}
		j->op = PW_CHANGE;
		return pw_submit(c, j);
	}
	return api_fail(c->r, 404, "not_found", NULL, "no such resource");
}

static enum fg_http_verdict users(struct api_call *c)
{
	struct fg_store *st = c->api->st;
	if (!api_require(c, FG_ROLE_ADMIN))
		return FG_HTTP_DONE;
	if (c->nseg == 1 && strcmp(c->method, "GET") == 0) {
		struct fg_user *v;
		size_t n;
		int rc = st->ops->user_list(st, &v, &n);
		if (rc < 0)
			return api_store_fail(c->r, rc, "listing users");
		json_t *a = json_array();
		for (size_t i = 0; i < n; i++)
			json_array_append_new(a, user_json(&v[i]));
		fg_free(v);
		return api_reply(c->r, 200, json_pack("{s:o}", "users", a));
	}
	if (c->nseg == 1 && strcmp(c->method, "POST") == 0) {
		json_t *b = api_body_object(c->r);
		if (!b)
			return FG_HTTP_DONE;
		struct pw_job *j = fg_calloc(1, sizeof(*j));
		if (!j) {
			json_decref(b);
			return api_fail(c->r, 500, "internal", NULL, "out of memory");
		}
		const char *why;
		char role[16] = "viewer";
		bool ok = take_string(c->r, b, "username", j->user.name, FG_STORE_NAME_MAX) &&
			  take_string(c->r, b, "password", j->new_password, PASSWORD_MAX) &&
			  (!json_object_get(b, "role") ||
			   take_string(c->r, b, "role", role, sizeof(role) - 1));
		json_decref(b);
		if (ok && (why = api_name_invalid(j->user.name))) {
			api_fail(c->r, 400, "invalid", "username", "username: %s", why);
			ok = false;
		} else if (ok && strlen(j->new_password) < FG_AUTH_PASSWORD_MIN) {
			api_fail(c->r, 400, "invalid", "password",
				 "password: at least %d characters", FG_AUTH_PASSWORD_MIN);
			ok = false;
		} else if (ok && fg_role_parse(role, &j->user.role) < 0) {
			api_fail(c->r, 400, "invalid", "role",
				 "role: \"%s\" is not admin, operator or viewer", role);
			ok = false;
		}
		if (!ok) {
			pw_job_free(j);
			return FG_HTTP_DONE;
		}
		j->op = PW_CREATE_USER;
		return pw_submit(c, j);
	}
	if (c->nseg == 2 && strcmp(c->method, "PATCH") == 0) {
		struct fg_user u;
		int rc = isdigit((unsigned char)c->seg[1][0])
			     ? st->ops->user_get(st, strtoll(c->seg[1], NULL, 10), &u)
			     : st->ops->user_get_by_name(st, c->seg[1], &u);
		if (rc == -ENOENT)
			return api_fail(c->r, 404, "not_found", NULL, "no user \"%s\"", c->seg[1]);
		if (rc < 0)
			return api_store_fail(c->r, rc, "reading the user");
		json_t *b = api_body_object(c->r);
		if (!b)
			return FG_HTTP_DONE;
		json_t *rv = json_object_get(b, "role");
		enum fg_role role;
		if (!json_is_string(rv) || fg_role_parse(json_string_value(rv), &role) < 0) {
			json_decref(b);
			return api_fail(c->r, 400, "invalid", "role",
					"role: one of admin, operator, viewer is required");
		}
		json_decref(b);
		if (u.id == c->who.user_id && role != FG_ROLE_ADMIN)
			return api_fail(c->r, 400, "invalid", "role",
					"you cannot take the admin role from yourself");
		json_t *before = user_json(&u);
		rc = st->ops->user_set_role(st, u.id, role);
		if (rc < 0) {
			json_decref(before);
			return api_store_fail(c->r, rc, "setting the role");
		}
		u.role = role;
		json_t *after = user_json(&u);
		api_audit(c, "update", "user", u.id, before, after);
		json_decref(before);
		return api_reply(c->r, 200, after);
	}
	return api_fail(c->r, 404, "not_found", NULL, "no such resource");
}

/* POST /api/v1/tokens {"expires_in": seconds (optional)}: an API token for
 * scripts with the caller's role. DELETE /api/v1/tokens/current revokes the
 * token in use (logout does the same for sessions). */
static enum fg_http_verdict tokens(struct api_call *c)
{
	struct fg_store *st = c->api->st;
	if (c->nseg == 1 && strcmp(c->method, "POST") == 0) {
		json_t *b = api_body_object(c->r);
		if (!b)
			return FG_HTTP_DONE;
		json_t *e = json_object_get(b, "expires_in");
		int64_t expires = 0;
		if (e && (!json_is_integer(e) || json_integer_value(e) <= 0 ||
			  json_integer_value(e) > API_TOKEN_TTL_MAX)) {
			json_decref(b);
			return api_fail(c->r, 400, "invalid", "expires_in",
					"expires_in: seconds, 1 to %lld", API_TOKEN_TTL_MAX);
		}
		if (e)
			expires = api_now() + json_integer_value(e);
		json_decref(b);
		char tok[FG_AUTH_TOKEN_SIZE], hash[FG_STORE_HASH_LEN + 1];
		fg_auth_token_new(FG_TOKEN_PREFIX_API, tok);
		fg_auth_token_hash(tok, hash);
		int64_t id;
		int rc =
		    st->ops->token_create(st, FG_TOKEN_API, c->who.user_id, hash, expires, &id);
		if (rc < 0)
			return api_store_fail(c->r, rc, "creating the token");
		api_audit(c, "create", "token", id, NULL, NULL);
		enum fg_http_verdict v =
		    api_reply(c->r, 201,
			      json_pack("{s:I, s:s, s:I}", "id", (json_int_t)id, "token", tok,
					"expires", (json_int_t)expires));
		sodium_memzero(tok, sizeof(tok));
		return v;
	}
	if (c->nseg == 2 && strcmp(c->seg[1], "current") == 0 && strcmp(c->method, "DELETE") == 0) {
		int rc = st->ops->token_delete(st, c->who.token_id);
		if (rc < 0)
			return api_store_fail(c->r, rc, "revoking the token");
		return api_reply(c->r, 200, json_pack("{s:b}", "ok", 1));
	}
	return api_fail(c->r, 404, "not_found", NULL, "no such resource");
}

static enum fg_http_verdict logout(struct api_call *c)
{
	if (strcmp(c->method, "POST") != 0)
		return api_fail(c->r, 405, "method", NULL, "use POST");
	int rc = c->api->st->ops->token_delete(c->api->st, c->who.token_id);
	if (rc < 0 && rc != -ENOENT)
		return api_store_fail(c->r, rc, "ending the session");
	return api_reply(c->r, 200, json_pack("{s:b}", "ok", 1));
}

/* ---- /metrics, /agent, static files ------------------------------------ */

static enum fg_http_verdict metrics(struct fg_api *api, struct api_call *c)
{
	struct fg_strbuf b;
	fg_strbuf_init(&b);
	fg_strbuf_printf(&b,
			 "# TYPE flowgate_server_logins_total counter\n"
			 "flowgate_server_logins_total{result=\"ok\"} %llu\n"
			 "flowgate_server_logins_total{result=\"failed\"} %llu\n"
			 "flowgate_server_logins_total{result=\"limited\"} %llu\n",
			 (unsigned long long)api->logins_ok, (unsigned long long)api->logins_failed,
			 (unsigned long long)api->logins_limited);
	fg_hub_metrics(api->hub, &b);
	fg_http_respond(c->r, 200, "text/plain; version=0.0.4", b.s ? b.s : "", b.len);
	fg_strbuf_deinit(&b);
	return FG_HTTP_DONE;
}

struct agent_up {
	struct fg_api *api;
	int64_t node_id;
};

static void agent_release(void *arg)
{
	fg_http_upgraded_release(arg);
}

static void agent_upgraded(int fd, const void *early, size_t early_len, struct fg_http_upgraded *u,
			   void *arg)
{
	struct agent_up *a = arg;
	fg_hub_attach(a->api->hub, a->node_id, fd, early, early_len, agent_release, u);
}

static enum fg_http_verdict agent(struct fg_api *api, struct fg_http_req *r)
{
	const char *tok = bearer(r);
	int64_t node_id;
	if (!tok || fg_hub_authenticate(api->hub, tok, &node_id) < 0) {
		fg_info("api: agent from %s refused: %s", fg_http_peer(r),
			tok ? "unknown node token" : "no bearer token");
		return api_fail(r, 401, "unauthorized", NULL,
				tok ? "unknown node token"
				    : "missing Authorization: Bearer <node token>");
	}
	struct agent_up *a = fg_calloc(1, sizeof(*a));
	if (!a)
		return api_fail(r, 500, "internal", NULL, "out of memory");
	a->api = api;
	a->node_id = node_id;
	fg_http_set_user(r, a, fg_free);
	const char *why;
	if (fg_http_upgrade_ws(r, agent_upgraded, a, &why) < 0)
		return api_fail(r, 400, "bad_upgrade", NULL, "%s", why);
	return FG_HTTP_DONE;
}

static const char *content_type(const char *path)
{
	static const struct {
		const char *ext, *type;
	} types[] = {
	    {".html", "text/html; charset=utf-8"},
	    {".js", "text/javascript; charset=utf-8"},
	    {".css", "text/css; charset=utf-8"},
	    {".json", "application/json"},
	    {".svg", "image/svg+xml"},
	    {".png", "image/png"},
	    {".ico", "image/x-icon"},
	    {".woff2", "font/woff2"},
	    {".txt", "text/plain; charset=utf-8"},
	    {".map", "application/json"},
	};
	const char *dot = strrchr(path, '.');
	if (dot)
		for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
			if (strcmp(dot, types[i].ext) == 0)
				return types[i].type;
	return "application/octet-stream";
}

static int open_regular(const char *path, struct stat *stp)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	if (fstat(fd, stp) < 0 || !S_ISREG(stp->st_mode)) {
		close(fd);
		return -1;
	}
	return fd;
}

/* The UI is a single-page app: files that exist are served, every other
 * path gets index.html so client-side routes survive a reload. */
static enum fg_http_verdict static_file(struct fg_api *api, struct fg_http_req *r)
{
	const char *path = fg_http_path(r);
	if (strcmp(fg_http_method(r), "GET") != 0 && strcmp(fg_http_method(r), "HEAD") != 0)
		return api_fail(r, 405, "method", NULL, "use GET");
	if (!api->web_dir) {
		static const char msg[] =
		    "flowgate server: the web UI is not installed (build it with "
		    "`make`, or pass --web DIR). The API is under /api/v1.\n";
		fg_http_respond(r, 404, "text/plain; charset=utf-8", msg, sizeof(msg) - 1);
		return FG_HTTP_DONE;
	}
	char full[4096];
	struct stat sb;
	int fd = -1;
	if (!strstr(path, "..") && strlen(path) < 1024 && strcmp(path, "/") != 0) {
		snprintf(full, sizeof(full), "%s%s", api->web_dir, path);
		fd = open_regular(full, &sb);
	}
	if (fd < 0) {
		snprintf(full, sizeof(full), "%s/index.html", api->web_dir);
		fd = open_regular(full, &sb);
	}
	if (fd < 0) {
		static const char msg[] = "flowgate server: web UI files missing\n";
		fg_http_respond(r, 404, "text/plain; charset=utf-8", msg, sizeof(msg) - 1);
		return FG_HTTP_DONE;
	}
	/* hashed asset names may be cached; index.html must not be */
	if (strstr(full, "/assets/"))
		fg_http_add_header(r, "Cache-Control", "public, max-age=31536000, immutable");
	fg_http_respond_fd(r, 200, content_type(full), fd, (uint64_t)sb.st_size);
	return FG_HTTP_DONE;
}

/* ---- routing ---------------------------------------------------------- */

static int hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	ch = (char)tolower((unsigned char)ch);
	return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

/* Splits "a/b%2Fc/d" into decoded segments. Returns the count, or -1. */
static int split_path(const char *p, char **seg, int max)
{
	int n = 0;
	while (*p) {
		const char *e = strchr(p, '/');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		if (len) {
			if (n == max)
				return -1;
			char *s = fg_malloc(len + 1);
			if (!s)
				return -1;
			size_t o = 0;
			for (size_t i = 0; i < len; i++) {
				if (p[i] == '%' && i + 2 < len && hexval(p[i + 1]) >= 0 &&
				    hexval(p[i + 2]) >= 0) {
					s[o++] = (char)(hexval(p[i + 1]) * 16 + hexval(p[i + 2]));
					i += 2;
				} else {
					s[o++] = p[i];
				}
			}
			s[o] = 0;
			seg[n++] = s;
		}
		if (!e)
			break;
		p = e + 1;
	}
	return n;
}

static enum fg_http_verdict route_api(struct fg_api *api, struct fg_http_req *r, const char *rest)
{
	struct api_call c = {.api = api, .r = r, .method = fg_http_method(r)};
	c.nseg = split_path(rest, c.seg, API_MAX_SEGS);
	enum fg_http_verdict v = FG_HTTP_DONE;
	if (c.nseg <= 0) {
		v = api_fail(r, 404, "not_found", NULL, "no such resource");
		goto out;
	}
	if (c.nseg == 1 && strcmp(c.seg[0], "login") == 0) {
		v = login(api, r);
		goto out;
	}
	/* a browser's WebSocket cannot send headers: the live channel takes
	 * the token from the query string */
	c.query_token = c.nseg == 2 && strcmp(c.seg[0], "live") == 0 && strcmp(c.seg[1], "ws") == 0;
	if (!authenticate(&c))
		goto out;
	/* viewers read; writing needs at least operator (checked again per
	 * resource where admin is needed) */
	bool write = strcmp(c.method, "GET") != 0 && strcmp(c.method, "HEAD") != 0;
	const char *s0 = c.seg[0];
	bool self = strcmp(s0, "me") == 0 || strcmp(s0, "logout") == 0 || strcmp(s0, "tokens") == 0;
	if (write && !self && !api_require(&c, FG_ROLE_OPERATOR))
		goto out;
	if (strcmp(s0, "logout") == 0 && c.nseg == 1)
		v = logout(&c);
	else if (strcmp(s0, "me") == 0)
		v = me(&c);
	else if (strcmp(s0, "users") == 0)
		v = users(&c);
	else if (strcmp(s0, "tokens") == 0)
		v = tokens(&c);
	else if (strcmp(s0, "nodes") == 0)
		v = api_nodes(&c);
	else if (strcmp(s0, "groups") == 0)
		v = api_groups(&c);
	else if (strcmp(s0, "forwards") == 0)
		v = api_forwards(&c);
	else if (strcmp(s0, "tunnels") == 0)
		v = api_tunnels(&c);
	else if (strcmp(s0, "policies") == 0)
		v = api_policies(&c);
	else if (strcmp(s0, "stats") == 0 && c.nseg == 1)
		v = api_stats_all(&c);
	else if (strcmp(s0, "live") == 0 && c.nseg <= 2)
		v = api_live(&c);
	else if (strcmp(s0, "audit") == 0 && c.nseg == 1)
		v = api_audit_list(&c);
	else if (strcmp(s0, "export") == 0 && c.nseg == 1)
		v = api_export(&c);
	else if (strcmp(s0, "import") == 0 && c.nseg == 1)
		v = api_import(&c);
	else
		v = api_fail(r, 404, "not_found", NULL, "no such resource: %s", fg_http_path(r));
out:
	for (int i = 0; i < c.nseg; i++)
		fg_free(c.seg[i]);
	return v;
}

enum fg_http_verdict fg_api_handle(struct fg_http_req *r, void *data)
{
	struct fg_api *api = data;
	const char *path = fg_http_path(r);
	enum fg_http_verdict v;
	if (strncmp(path, "/api/v1/", 8) == 0)
		v = route_api(api, r, path + 8);
	else if (strcmp(path, "/agent") == 0)
		v = agent(api, r);
	else if (strcmp(path, "/metrics") == 0) {
		struct api_call c = {.api = api, .r = r, .method = fg_http_method(r)};
		v = authenticate(&c) ? metrics(api, &c) : FG_HTTP_DONE;
	} else if (strncmp(path, "/api/", 5) == 0)
		v = api_fail(r, 404, "not_found", NULL, "no such resource: %s (the API is /api/v1)",
			     path);
	else
		v = static_file(api, r);
	return v;
}

/* ---- life ------------------------------------------------------------- */

struct fg_api *fg_api_new(struct fg_loop *loop, struct fg_store *st, struct fg_hub *hub,
			  struct fg_work *work, const struct fg_api_opts *o)
{
	struct fg_api *api = fg_calloc(1, sizeof(*api));
	if (!api)
		return NULL;
	api->loop = loop;
	api->st = st;
	api->hub = hub;
	api->work = work;
	api->live = o ? o->live : NULL;
	api->secret = o ? o->secret : NULL;
	api->session_ttl_s = o && o->session_ttl_s ? o->session_ttl_s : 12 * 3600;
	api->tunnel_key_grace_s =
	    o && o->tunnel_key_grace_s > 0 ? o->tunnel_key_grace_s : FG_API_TUNNEL_KEY_GRACE_S;
	api->limiter = fg_calloc(LIMITER_SLOTS, sizeof(*api->limiter));
	if (!api->limiter)
		goto err;
	if (o && o->web_dir && !(api->web_dir = fg_strdup(o->web_dir)))
		goto err;
	if (o && o->public_url && !(api->public_url = fg_strdup(o->public_url)))
		goto err;
	return api;
err:
	fg_api_free(api);
	return NULL;
}

void fg_api_free(struct fg_api *api)
{
	if (!api)
		return;
	fg_free(api->limiter);
	fg_free(api->web_dir);
	fg_free(api->public_url);
	fg_free(api);
}

void fg_api_set_tls(struct fg_api *api, bool tls)
{
	api->tls = tls;
}
