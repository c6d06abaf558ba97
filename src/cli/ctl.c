/* `flowgate ctl`: the command-line client of the REST API (/api/v1) for
 * operators and scripts: login, nodes, groups, forwards, stats, export and
 * import. Reference: doc/ctl.md.
 *
 * Exit status: 0 ok; 1 the server or the network failed, or the call was
 * not authorised (401/403); 2 bad usage or a request the API refused as
 * invalid (other 4xx: 400 validation, 404 unknown object, 409 conflict). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/ctl.h"
#include "cli/http_client.h"
#include "core/strbuf.h"
#include "core/util.h"

#define DEFAULT_SERVER "http://127.0.0.1:8080"
#define PASSWORD_MAX   1024
#define EXIT_OK	       0
#define EXIT_FAIL      1
#define EXIT_USAGE     2

struct ctl {
	struct fg_url url;
	char server[FG_URL_HOST_MAX + FG_URL_PATH_MAX + 32]; /* canonical */
	const char *token;				     /* borrowed; NULL = none */
	bool token_saved;				     /* token came from the config file */
	struct fg_httpc_opts hopts;
	bool json;
	struct fg_ctl_config cfg;
	char cfg_path[PATH_MAX];
	bool have_cfg_path;
	bool body_from_flags; /* errors name flags next to fields */
};

/* Options every command takes, anywhere on the line. */
struct globals {
	const char *server, *token, *ca;
	bool insecure, json, help;
	int timeout_s;
};

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: flowgate ctl [--server URL] [--token T] [--json] <command> ...\n\n"
	    "session:\n"
	    "  login [--username NAME] [--password-stdin]   log in; saves server + session\n"
	    "  logout                                       revoke the session and forget it\n"
	    "  whoami                                       who the token belongs to\n"
	    "  token create [--expires-in 30d]              print a new API token for scripts\n\n"
	    "nodes:\n"
	    "  nodes list\n"
	    "  nodes get REF\n"
	    "  nodes create NAME [--group G ...]            prints the enroll command + token\n"
	    "  nodes rename REF NEW\n"
	    "  nodes set-groups REF [G ...]                 exactly these groups (none: no args)\n"
	    "  nodes delete REF [REF ...]\n"
	    "  nodes stats REF [--from T] [--to T] [--step D] [--csv]\n\n"
	    "groups:\n"
	    "  groups list | get REF | delete REF | rename REF NEW\n"
	    "  groups create NAME [--node N ...]\n"
	    "  groups set-nodes REF [N ...]                 exactly these members\n"
	    "  groups stats REF [--from T] [--to T] [--step D] [--csv]\n\n"
	    "forwards:\n"
	    "  forwards list [--node N | --group G]\n"
	    "  forwards get REF | delete REF | enable REF | disable REF\n"
	    "  forwards create --name NAME (--node N | --group G) --listen ADDR\n"
	    "                  --target HOST:PORT [--target ...] [forward options]\n"
	    "  forwards create -f FILE.json [forward options that override the file]\n"
	    "  forwards update REF [forward options] [-f FILE.json] [--unset FIELD ...]\n"
	    "  forwards stats REF [--node N] [--from T] [--to T] [--step D] [--csv]\n"
	    "    forward options: --proto tcp|udp|both, --balance round-robin|least-conn|\n"
	    "    ip-hash|failover, --rate-up R, --rate-down R, --rate-up-per-conn R,\n"
	    "    --rate-down-per-conn R, --burst SIZE, --max-conns N, --max-conns-per-ip N,\n"
	    "    --proxy-protocol v1|v2|none, --health-check D, --connect-timeout D,\n"
	    "    --idle-timeout D, --udp-idle-timeout D, --enabled, --disabled\n\n"
	    "firewall policies:\n"
	    "  policies list | get REF | delete REF | enable REF | disable REF\n"
	    "  policies create -f FILE.json                a policy object (doc/api.md)\n"
	    "  policies update REF -f FILE.json            fields given replace\n"
	    "  policies preview NODE [--diff]              nft text the node gets, and the\n"
	    "                                               diff against what it runs\n"
	    "  policies import-iptables FILE|- [--name N] [--create]\n"
	    "                                               iptables-save -> policy\n\n"
	    "tunnels:\n"
	    "  tunnels list [--node N] | get REF | delete REF | enable REF | disable REF\n"
	    "  tunnels create --name NAME (--node N | --group G) --listen ADDR --exit N\n"
	    "                 --target HOST:PORT [--hop N ...] [tunnel options]\n"
	    "  tunnels create -f FILE.json [tunnel options that override the file]\n"
	    "  tunnels update REF [tunnel options] [-f FILE.json] [--unset FIELD ...]\n"
	    "  tunnels rotate-key REF                      new key; the old one is accepted\n"
	    "                                               for a grace period (10 min)\n"
	    "  tunnels stats REF [--node N] [--from T] [--to T] [--step D] [--csv]\n"
	    "    tunnel options: --exit N (repeat: balanced exits), --balance failover|\n"
	    "    round-robin, --transport tcp|tls|ws|wss|aead, --mux, --no-mux,\n"
	    "    --direction entry_to_exit|exit_to_entry, --link-port P, --ws-path P,\n"
	    "    --ws-host H, --rate-up R, --rate-down R, --max-conns N,\n"
	    "    --max-conns-per-ip N, --connect-timeout D, --idle-timeout D,\n"
	    "    --enabled, --disabled\n\n"
	    "configuration:\n"
	    "  export [-o FILE]                             groups, nodes, forwards, policies,\n"
	    "                                               tunnels as JSON (no keys)\n"
	    "  import FILE|-                                create or update from an export\n\n"
	    "global options:\n"
	    "  --server URL      http[s]://host[:port] (else $FLOWGATE_SERVER, else the saved\n"
	    "                    login, else " DEFAULT_SERVER ")\n"
	    "  --token T         API or session token (else $FLOWGATE_TOKEN, else the saved\n"
	    "                    login of that server)\n"
	    "  --json            print the API's JSON as is (for scripts)\n"
	    "  --ca FILE         trust this PEM CA for https (default: the system CAs)\n"
	    "  --insecure        https WITHOUT certificate checks (testing only)\n"
	    "  --timeout S       seconds for connecting and each read (default 30)\n\n"
	    "REF is a name or an id. T is now, Unix seconds, a time ago (2h, 7d) or\n"
	    "2026-11-22T07:00Z. Exit status: 0 ok, 1 server/network/authorisation\n"
	    "failure, 2 bad usage or a request the API rejected (the error names the\n"
	    "field). The login is saved in $XDG_CONFIG_HOME/flowgate/ctl.json (mode 0600).\n");
}

static void __attribute__((format(printf, 1, 2))) say_err(const char *fmt, ...)
{
	va_list ap;
	fputs("flowgate ctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static int usage_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_err(const char *fmt, ...)
{
	va_list ap;
	fputs("flowgate ctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs(" (see flowgate ctl --help)\n", stderr);
	return EXIT_USAGE;
}

/* ---- formatting ----------------------------------------------------------- */

static void fmt_time(int64_t ts, char *out, size_t len)
{
	if (ts <= 0) {
		snprintf(out, len, "never");
		return;
	}
	time_t t = (time_t)ts;
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, len, "%Y-%m-%d %H:%M:%S UTC", &tm);
}

static void fmt_ago(int64_t ts, char *out, size_t len)
{
	if (ts <= 0) {
		snprintf(out, len, "never");
		return;
	}
	int64_t d = (int64_t)time(NULL) - ts;
	if (d < 0)
		d = 0;
	if (d < 60)
		snprintf(out, len, "%llds ago", (long long)d);
	else if (d < 3600)
		snprintf(out, len, "%lldm ago", (long long)(d / 60));
	else if (d < 86400)
		snprintf(out, len, "%lldh ago", (long long)(d / 3600));
	else
		snprintf(out, len, "%lldd ago", (long long)(d / 86400));
}

static void fmt_bytes(uint64_t v, char *out, size_t len)
{
	static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
	double d = (double)v;
	size_t u = 0;
	while (d >= 1024 && u + 1 < FG_ARRAY_LEN(units)) {
		d /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(out, len, "%llu B", (unsigned long long)v);
	else
		snprintf(out, len, "%.1f %s", d, units[u]);
}

/* A JSON value as one line of text: strings bare, arrays of scalars
 * joined with ", ", the rest compact JSON. */
static void fmt_value(json_t *v, struct fg_strbuf *b)
{
	if (json_is_string(v)) {
		fg_strbuf_puts(b, json_string_value(v));
	} else if (json_is_true(v)) {
		fg_strbuf_puts(b, "yes");
	} else if (json_is_false(v)) {
		fg_strbuf_puts(b, "no");
	} else if (json_is_array(v)) {
		size_t i;
		json_t *e;
		if (json_array_size(v) == 0)
			fg_strbuf_puts(b, "-");
		json_array_foreach(v, i, e)
		{
			if (i)
				fg_strbuf_puts(b, ", ");
			fmt_value(e, b);
		}
	} else {
		char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
		fg_strbuf_puts(b, s ? s : "?");
		free(s);
	}
}

static const char *str(json_t *o, const char *key, const char *dflt)
{
	json_t *v = json_object_get(o, key);
	return json_is_string(v) ? json_string_value(v) : dflt;
}

static long long num(json_t *o, const char *key)
{
	return (long long)json_integer_value(json_object_get(o, key));
}

/* A table printed with columns padded to their widest cell. */
struct table {
	size_t ncols;
	char **cells;
	size_t n, cap;
};

static void table_add(struct table *t, ...)
{
	va_list ap;
	va_start(ap, t);
	for (size_t c = 0; c < t->ncols; c++) {
		const char *s = va_arg(ap, const char *);
		if (t->n == t->cap) {
			size_t cap = t->cap ? t->cap * 2 : 64;
			char **nc = realloc(t->cells, cap * sizeof(*nc));
			if (!nc)
				break;
			t->cells = nc;
			t->cap = cap;
		}
		t->cells[t->n++] = strdup(s ? s : "");
	}
	va_end(ap);
}

static void table_print(struct table *t)
{
	size_t w[16] = {0};
	for (size_t i = 0; i < t->n; i++) {
		size_t l = t->cells[i] ? strlen(t->cells[i]) : 0;
		if (l > w[i % t->ncols])
			w[i % t->ncols] = l;
	}
	for (size_t i = 0; i < t->n; i++) {
		size_t c = i % t->ncols;
		const char *s = t->cells[i] ? t->cells[i] : "";
		if (c + 1 == t->ncols)
			printf("%s\n", s);
		else
			printf("%-*s  ", (int)w[c], s);
	}
	for (size_t i = 0; i < t->n; i++)
		free(t->cells[i]);
	free(t->cells);
	t->cells = NULL;
	t->n = t->cap = 0;
}

static void print_field(const char *key, json_t *v, size_t w)
{
	struct fg_strbuf b;
	fg_strbuf_init(&b);
	if (json_is_integer(v) && (strcmp(key, "created") == 0 || strcmp(key, "last_seen") == 0 ||
				   strcmp(key, "expires") == 0 || strcmp(key, "exported") == 0)) {
		char t[64], a[32];
		fmt_time(json_integer_value(v), t, sizeof(t));
		fmt_ago(json_integer_value(v), a, sizeof(a));
		if (json_integer_value(v) > 0)
			fg_strbuf_printf(&b, "%s (%s)", t, a);
		else
			fg_strbuf_puts(&b, "never");
	} else if (json_is_string(v) && json_string_length(v) == 0) {
		fg_strbuf_puts(&b, "-");
	} else {
		fmt_value(v, &b);
	}
	printf("%s:%*s %s\n", key, (int)(w - strlen(key)), "", b.s ? b.s : "");
	fg_strbuf_deinit(&b);
}

/* Prints an object as "key: value" lines, times made readable: the keys
 * of first (NULL-terminated) in that order, then the others. */
static void print_object(json_t *o)
{
	static const char *const first[] = {"id",     "name",  "enabled", "node", "group",
					    "listen", "proto", "targets", NULL};
	const char *key;
	json_t *v;
	size_t w = 0;
	json_object_foreach(o, key, v)
	{
		if (strlen(key) > w)
			w = strlen(key);
	}
	for (size_t i = 0; first[i]; i++)
		if ((v = json_object_get(o, first[i])))
			print_field(first[i], v, w);
	json_object_foreach(o, key, v)
	{
		bool done = false;
		for (size_t i = 0; first[i]; i++)
			done |= strcmp(first[i], key) == 0;
		if (!done)
			print_field(key, v, w);
	}
}

static void print_json(json_t *j)
{
	char *s = json_dumps(j, JSON_INDENT(2) | JSON_ENCODE_ANY);
	if (s) {
		puts(s);
		free(s);
	}
}

/* Prints the raw answer of a --json command as it came. */
static void print_raw(const struct fg_httpc_response *r)
{
	if (r->body.len) {
		fwrite(r->body.s, 1, r->body.len, stdout);
		if (r->body.s[r->body.len - 1] != '\n')
			putchar('\n');
	}
}

/* ---- calling the API ------------------------------------------------------ */

static bool is_loopback(const char *host)
{
	return strcmp(host, "localhost") == 0 || strncmp(host, "127.", 4) == 0 ||
	       strcmp(host, "::1") == 0;
}

/* Turns a non-2xx answer into a message on stderr; returns the exit
 * status. */
static int report_error(struct ctl *c, const struct fg_httpc_response *r)
{
	json_t *j = r->body.len ? json_loadb(r->body.s, r->body.len, 0, NULL) : NULL;
	json_t *e = json_object_get(j, "error");
	const char *msg = str(e, "message", NULL), *field = str(e, "field", NULL);
	const char *code = str(e, "code", "");
	char raw[200] = "";
	if (!msg) {
		/* not our API (a proxy, the wrong port): show its first line */
		size_t n = r->body.len ? strcspn(r->body.s, "\r\n") : 0;
		snprintf(raw, sizeof(raw), "%.*s", (int)FG_MIN(n, sizeof(raw) - 1),
			 r->body.len ? r->body.s : "");
		if (!raw[0])
			snprintf(raw, sizeof(raw), "an empty answer: is %.120s a flowgate server?",
				 c->server);
		msg = raw;
	}
	int rc;
	if (r->status == 401 && strcmp(code, "bad_credentials") == 0) {
		say_err("login refused: %s", msg);
		rc = EXIT_FAIL;
	} else if (r->status == 401) {
		say_err("unauthorized: %s", msg);
		fprintf(
		    stderr,
		    "  not logged in, or the session expired or was revoked: log in again with\n"
		    "  flowgate ctl login --server %s\n",
		    c->server);
		rc = EXIT_FAIL;
	} else if (r->status == 403) {
		say_err("forbidden: %s", msg);
		rc = EXIT_FAIL;
	} else {
		const char *flag = field && c->body_from_flags ? fg_ctl_field_flag(field) : NULL;
		char where[160] = "";
		if (field)
			snprintf(where, sizeof(where), " [field \"%s\"%s%s]", field,
				 flag ? ", option " : "", flag ? flag : "");
		say_err("%s%s (HTTP %d%s%s)", msg, where, r->status, code[0] ? " " : "", code);
		rc = r->status >= 400 && r->status < 500 && r->status != 408 && r->status != 429
			 ? EXIT_USAGE
			 : EXIT_FAIL;
	}
	json_decref(j);
	return rc;
}

/* One API call. path is below /api/v1 (starts with '/'). body is sent as
 * JSON when not NULL. Returns 0 with *resp filled for a 2xx answer (the
 * caller frees it), else prints why and returns the exit status. */
static int call(struct ctl *c, const char *method, const char *path, json_t *body, bool auth,
		struct fg_httpc_response *resp)
{
	char full[2048], err[512];
	char hdr[600];
	const char *headers[2] = {NULL, NULL};
	memset(resp, 0, sizeof(*resp));
	if (auth) {
		if (!c->token) {
			say_err("not logged in to %s", c->server);
			fprintf(stderr,
				"  log in with: flowgate ctl login --server %s\n"
				"  or give a token: FLOWGATE_TOKEN=... or --token\n",
				c->server);
			return EXIT_FAIL;
		}
		if (strlen(c->token) > 512 || strpbrk(c->token, "\r\n")) {
			say_err("the token is not a flowgate token (too long or several lines)");
			return EXIT_USAGE;
		}
		snprintf(hdr, sizeof(hdr), "Authorization: Bearer %s", c->token);
		headers[0] = hdr;
	}
	snprintf(full, sizeof(full), "/api/v1%s", path);
	char *b = body ? json_dumps(body, JSON_COMPACT) : NULL;
	int rc = fg_httpc_request(&c->url, &c->hopts, method, full, headers, b, b ? strlen(b) : 0,
				  resp, err, sizeof(err));
	if (b) {
		memset(b, 0, strlen(b)); /* may hold a password */
		free(b);
	}
	memset(hdr, 0, sizeof(hdr));
	if (rc < 0) {
		say_err("%s: %s", c->server, err);
		return EXIT_FAIL;
	}
	if (resp->status < 200 || resp->status > 299) {
		rc = report_error(c, resp);
		fg_httpc_response_free(resp);
		return rc;
	}
	return 0;
}

/* The answer's JSON, or NULL after saying why. */
static json_t *answer_json(struct ctl *c, const struct fg_httpc_response *r)
{
	json_error_t je;
	json_t *j = json_loadb(r->body.s ? r->body.s : "", r->body.len, 0, &je);
	if (!j)
		say_err("%s answered something that is not JSON (%s); is it a flowgate server?",
			c->server, je.text);
	return j;
}

/* GET/DELETE/... with an optional body; prints the raw JSON under --json
 * and otherwise hands the parsed answer to the caller. Returns the exit
 * status; *out is NULL under --json. */
static int call_json(struct ctl *c, const char *method, const char *path, json_t *body,
		     json_t **out)
{
	struct fg_httpc_response r;
	*out = NULL;
	int rc = call(c, method, path, body, true, &r);
	if (rc)
		return rc;
	if (c->json) {
		print_raw(&r);
		fg_httpc_response_free(&r);
		return EXIT_OK;
	}
	*out = answer_json(c, &r);
	fg_httpc_response_free(&r);
	return *out ? EXIT_OK : EXIT_FAIL;
}

/* "/nodes/<escaped ref><suffix>" */
static int ref_path(const char *kind, const char *ref, const char *suffix, char *out, size_t len)
{
	char esc[512];
	if (!*ref || fg_ctl_path_escape(ref, esc, sizeof(esc)) < 0)
		return usage_err("\"%.64s\": not a name or id", ref);
	snprintf(out, len, "/%s/%s%s", kind, esc, suffix ? suffix : "");
	return 0;
}

/* ---- small argument helpers ---------------------------------------------- */

/* Matches argv[*i] against an option with a value ("--group G",
 * "--group=G" or the short form "-g G"). Returns 1 and advances *i when it
 * matched, 0 when not, -1 (after saying so) when the value is missing. */
static int opt_value(int argc, char **argv, int *i, const char *lng, const char *shrt,
		     const char **val)
{
	const char *a = argv[*i];
	size_t n = strlen(lng);
	if (strncmp(a, lng, n) == 0 && a[n] == '=') {
		*val = a + n + 1;
		return 1;
	}
	if (strcmp(a, lng) != 0 && !(shrt && strcmp(a, shrt) == 0))
		return 0;
	if (*i + 1 >= argc) {
		usage_err("%s: needs a value", a);
		return -1;
	}
	*val = argv[++*i];
	(*i)++;
	return 1;
}

/* For commands with no options: every argument must be positional. */
static int positional(int argc, char **argv, int min, int max, const char *what)
{
	for (int i = 1; i < argc; i++)
		if (argv[i][0] == '-' && argv[i][1])
			return usage_err("%s: unknown option \"%s\"", what, argv[i]);
	if (argc - 1 < min || (max >= 0 && argc - 1 > max))
		return usage_err("%s: %s", what,
				 argc - 1 < min ? "missing argument" : "too many arguments");
	return 0;
}

/* ---- session commands ------------------------------------------------------ */

static struct termios tty_saved;
static int tty_fd = -1;

static void tty_restore_signal(int sig)
{
	if (tty_fd >= 0)
		tcsetattr(tty_fd, TCSAFLUSH, &tty_saved);
	signal(sig, SIG_DFL);
	raise(sig);
}

/* Reads the password: one line of stdin, or from the terminal without
 * echo. Returns 0 or the exit status after saying why. */
static int read_password(bool from_stdin, const char *prompt, char *out, size_t len)
{
	if (from_stdin) {
		if (!fgets(out, (int)len, stdin)) {
			say_err("--password-stdin: no password on stdin");
			return EXIT_USAGE;
		}
		size_t n = strlen(out);
		if (n + 1 == len && out[n - 1] != '\n') {
			say_err("--password-stdin: the password is longer than %zu bytes", len - 2);
			return EXIT_USAGE;
		}
		out[strcspn(out, "\r\n")] = 0;
		return 0;
	}
	if (!isatty(STDIN_FILENO)) {
		say_err("stdin is not a terminal to ask for the password on: pipe it in with "
			"--password-stdin");
		return EXIT_USAGE;
	}
	tty_fd = open("/dev/tty", O_RDWR | O_CLOEXEC);
	if (tty_fd < 0) {
		say_err("cannot open the terminal: %s (use --password-stdin)", strerror(errno));
		return EXIT_FAIL;
	}
	struct termios t;
	if (tcgetattr(tty_fd, &tty_saved) < 0) {
		say_err("cannot read the terminal settings: %s", strerror(errno));
		close(tty_fd);
		tty_fd = -1;
		return EXIT_FAIL;
	}
	t = tty_saved;
	t.c_lflag &= ~(tcflag_t)ECHO;
	t.c_lflag |= ICANON;
	signal(SIGINT, tty_restore_signal);
	signal(SIGTERM, tty_restore_signal);
	dprintf(tty_fd, "%s", prompt);
	tcsetattr(tty_fd, TCSAFLUSH, &t);
	ssize_t n = 0;
	size_t got = 0;
	char ch;
	while ((n = read(tty_fd, &ch, 1)) == 1 && ch != '\n') {
		if (got + 1 < len)
			out[got++] = ch;
	}
	out[got] = 0;
	tcsetattr(tty_fd, TCSAFLUSH, &tty_saved);
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	dprintf(tty_fd, "\n");
	close(tty_fd);
	tty_fd = -1;
	if (n < 0) {
		say_err("reading the password: %s", strerror(errno));
		return EXIT_FAIL;
	}
	return 0;
}

static int save_config(struct ctl *c)
{
	char err[512];
	if (!c->have_cfg_path) {
		say_err("cannot save the login: neither $XDG_CONFIG_HOME nor $HOME is set "
			"(scripts can use FLOWGATE_TOKEN instead)");
		return EXIT_FAIL;
	}
	if (fg_ctl_config_save(c->cfg_path, &c->cfg, err, sizeof(err)) < 0) {
		say_err("%s", err);
		return EXIT_FAIL;
	}
	return 0;
}

static int cmd_login(struct ctl *c, const struct globals *g, int argc, char **argv)
{
	const char *user = NULL;
	bool pw_stdin = false;
	for (int i = 1; i < argc;) {
		int m = opt_value(argc, argv, &i, "--username", "-u", &user);
		if (m < 0)
			return EXIT_USAGE;
		if (m)
			continue;
		if (strcmp(argv[i], "--password-stdin") == 0) {
			pw_stdin = true;
			i++;
			continue;
		}
		return usage_err("login: unexpected argument \"%s\"", argv[i]);
	}
	if (!user)
		user = c->cfg.username && c->cfg.server && strcmp(c->cfg.server, c->server) == 0
			   ? c->cfg.username
			   : "admin";
	if (!c->url.tls && !is_loopback(c->url.host))
		fprintf(stderr,
			"flowgate ctl: warning: %s is plain http: the password and the session "
			"token cross the network unencrypted (serve https: flowgate server "
			"--tls-cert/--tls-key)\n",
			c->server);
	char pw[PASSWORD_MAX + 2], prompt[sizeof(c->server) + 200];
	snprintf(prompt, sizeof(prompt), "Password for %s at %s: ", user, c->server);
	int rc = read_password(pw_stdin, prompt, pw, sizeof(pw));
	if (rc)
		return rc;
	if (!pw[0]) {
		say_err("login: empty password");
		return EXIT_USAGE;
	}
	json_t *body = json_pack("{s:s, s:s}", "username", user, "password", pw);
	memset(pw, 0, sizeof(pw));
	struct fg_httpc_response r;
	rc = call(c, "POST", "/login", body, false, &r);
	/* jansson keeps its own copy of the password: wipe it too */
	json_t *pv = json_object_get(body, "password");
	if (pv)
		memset((char *)json_string_value(pv), 0, json_string_length(pv));
	json_decref(body);
	if (rc)
		return rc;
	json_t *j = answer_json(c, &r);
	fg_httpc_response_free(&r);
	if (!j)
		return EXIT_FAIL;
	const char *tok = str(j, "token", NULL);
	if (!tok) {
		say_err("%s: the login answer has no token", c->server);
		json_decref(j);
		return EXIT_FAIL;
	}
	char *ca = NULL;
	if (g->ca && !(ca = realpath(g->ca, NULL))) {
		say_err("--ca %s: %s", g->ca, strerror(errno));
		json_decref(j);
		return EXIT_USAGE;
	}
	fg_ctl_config_free(&c->cfg);
	c->cfg.server = strdup(c->server);
	c->cfg.token = strdup(tok);
	c->cfg.username = strdup(user);
	c->cfg.ca_file = ca;
	c->cfg.insecure = g->insecure;
	memset((char *)tok, 0, strlen(tok));
	rc = save_config(c);
	if (rc == 0) {
		json_t *u = json_object_get(j, "user");
		char t[64];
		fmt_time(num(j, "expires"), t, sizeof(t));
		if (c->json) {
			json_t *o = json_pack("{s:s, s:O, s:I}", "server", c->server, "user", u,
					      "expires", (json_int_t)num(j, "expires"));
			print_json(o);
			json_decref(o);
		} else {
			printf("logged in to %s as %s (role %s); the session expires %s\n",
			       c->server, str(u, "name", user), str(u, "role", "?"), t);
		}
		if (getenv("FLOWGATE_TOKEN"))
			fprintf(stderr, "flowgate ctl: note: $FLOWGATE_TOKEN is set and is used "
					"instead of this session\n");
	}
	json_decref(j);
	return rc;
}

static int cmd_logout(struct ctl *c, int argc, char **argv)
{
	int rc = positional(argc, argv, 0, 0, "logout");
	if (rc)
		return rc;
	if (!c->token) {
		printf("not logged in to %s\n", c->server);
		return EXIT_OK;
	}
	struct fg_httpc_response r;
	char err[512];
	char hdr[600];
	snprintf(hdr, sizeof(hdr), "Authorization: Bearer %s", c->token);
	const char *headers[] = {hdr, NULL};
	int hrc = fg_httpc_request(&c->url, &c->hopts, "POST", "/api/v1/logout", headers, NULL, 0,
				   &r, err, sizeof(err));
	memset(hdr, 0, sizeof(hdr));
	int status = hrc == 0 ? r.status : 0;
	if (hrc == 0)
		fg_httpc_response_free(&r);
	rc = EXIT_OK;
	if (hrc < 0) {
		say_err("%s: %s: the token was NOT revoked on the server", c->server, err);
		rc = EXIT_FAIL;
	} else if (status != 401 && (status < 200 || status > 299)) {
		say_err("%s answered HTTP %d to logout: the token may still be valid", c->server,
			status);
		rc = EXIT_FAIL;
	}
	if (c->token_saved) {
		/* forget it even if the server could not be told: the user asked */
		free(c->cfg.token);
		c->cfg.token = NULL;
		int src = save_config(c);
		if (src)
			return src;
	}
	if (rc == EXIT_OK)
		printf("logged out of %s%s\n", c->server,
		       status == 401 ? " (the session had already ended)"
				     : " (the token is revoked)");
	else if (c->token_saved)
		fprintf(stderr, "flowgate ctl: the saved session was forgotten locally\n");
	return rc;
}

static int cmd_whoami(struct ctl *c, int argc, char **argv)
{
	int rc = positional(argc, argv, 0, 0, "whoami");
	json_t *j;
	if (rc || (rc = call_json(c, "GET", "/me", NULL, &j)) || !j)
		return rc;
	printf("%s (role %s) at %s\n", str(j, "name", "?"), str(j, "role", "?"), c->server);
	json_decref(j);
	return EXIT_OK;
}

static int cmd_token(struct ctl *c, int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "create") != 0)
		return usage_err("token: the command is \"token create [--expires-in 30d]\"");
	const char *exp = NULL;
	for (int i = 2; i < argc;) {
		int m = opt_value(argc, argv, &i, "--expires-in", NULL, &exp);
		if (m < 0)
			return EXIT_USAGE;
		if (!m)
			return usage_err("token create: unexpected argument \"%s\"", argv[i]);
	}
	json_t *body = json_object();
	if (exp) {
		int64_t s;
		if (fg_ctl_parse_seconds(exp, &s) < 0 || s <= 0) {
			json_decref(body);
			return usage_err("--expires-in: \"%s\" is not a duration (90s, 15m, 12h, "
					 "30d, 2w)",
					 exp);
		}
		json_object_set_new(body, "expires_in", json_integer(s));
	}
	struct fg_httpc_response r;
	int rc = call(c, "POST", "/tokens", body, true, &r);
	json_decref(body);
	if (rc)
		return rc;
	if (c->json) {
		print_raw(&r);
		fg_httpc_response_free(&r);
		return EXIT_OK;
	}
	json_t *j = answer_json(c, &r);
	fg_httpc_response_free(&r);
	if (!j)
		return EXIT_FAIL;
	/* the token alone on stdout: TOKEN=$(flowgate ctl token create) */
	printf("%s\n", str(j, "token", ""));
	char t[64];
	fmt_time(num(j, "expires"), t, sizeof(t));
	fprintf(stderr, "flowgate ctl: API token %lld created; %s%s. It is shown only this once.\n",
		num(j, "id"), num(j, "expires") ? "it expires " : "it never expires",
		num(j, "expires") ? t : "");
	json_t *tv = json_object_get(j, "token");
	if (tv)
		memset((char *)json_string_value(tv), 0, json_string_length(tv));
	json_decref(j);
	return EXIT_OK;
}

/* ---- stats ------------------------------------------------------------------ */

static int cmd_stats(struct ctl *c, const char *kind, int argc, char **argv)
{
	const char *from = NULL, *to = NULL, *step = NULL, *node = NULL, *ref = NULL;
	bool csv = false;
	for (int i = 1; i < argc;) {
		int m = opt_value(argc, argv, &i, "--from", NULL, &from);
		if (!m)
			m = opt_value(argc, argv, &i, "--to", NULL, &to);
		if (!m)
			m = opt_value(argc, argv, &i, "--step", NULL, &step);
		if (!m && (strcmp(kind, "forwards") == 0 || strcmp(kind, "tunnels") == 0))
			m = opt_value(argc, argv, &i, "--node", NULL, &node);
		if (m < 0)
			return EXIT_USAGE;
		if (m)
			continue;
		if (strcmp(argv[i], "--csv") == 0) {
			csv = true;
		} else if (argv[i][0] == '-' && argv[i][1]) {
			return usage_err("%s stats: unknown option \"%s\"", kind, argv[i]);
		} else if (ref) {
			return usage_err("%s stats: one %s at a time", kind, kind);
		} else {
			ref = argv[i];
		}
		i++;
	}
	if (!ref)
		return usage_err("%s stats: which one? (a name or id)", kind);
	int64_t now = (int64_t)time(NULL), v;
	struct fg_strbuf q;
	fg_strbuf_init(&q);
	const char *sep = "?";
	if (to) {
		if (fg_ctl_parse_time(to, now, &v) < 0) {
			fg_strbuf_deinit(&q);
			return usage_err("--to: \"%s\" is not a time (now, Unix seconds, 2h, "
					 "2026-11-22T07:00Z)",
					 to);
		}
		fg_strbuf_printf(&q, "%sto=%lld", sep, (long long)v);
		sep = "&";
		now = v; /* --from 2h means 2 h before --to */
	}
	if (from) {
		if (fg_ctl_parse_time(from, now, &v) < 0) {
			fg_strbuf_deinit(&q);
			return usage_err("--from: \"%s\" is not a time (now, Unix seconds, 2h, "
					 "2026-11-22T07:00Z)",
					 from);
		}
		fg_strbuf_printf(&q, "%sfrom=%lld", sep, (long long)v);
		sep = "&";
	}
	if (step) {
		if (fg_ctl_parse_seconds(step, &v) < 0 || v <= 0) {
			fg_strbuf_deinit(&q);
			return usage_err("--step: \"%s\" is not a duration (60, 5m, 1h, 1d)", step);
		}
		fg_strbuf_printf(&q, "%sstep=%lld", sep, (long long)v);
		sep = "&";
	}
	if (node) {
		char esc[512];
		if (fg_ctl_path_escape(node, esc, sizeof(esc)) < 0) {
			fg_strbuf_deinit(&q);
			return usage_err("--node: too long");
		}
		fg_strbuf_printf(&q, "%snode=%s", sep, esc);
		sep = "&";
	}
	if (csv)
		fg_strbuf_printf(&q, "%sformat=csv", sep);
	char path[1200];
	int rc = ref_path(kind, ref, "/stats", path, sizeof(path) - 600);
	if (rc) {
		fg_strbuf_deinit(&q);
		return rc;
	}
	strncat(path, q.s ? q.s : "", sizeof(path) - strlen(path) - 1);
	fg_strbuf_deinit(&q);
	struct fg_httpc_response r;
	if ((rc = call(c, "GET", path, NULL, true, &r)))
		return rc;
	if (csv || c->json) {
		/* the server's CSV or JSON, byte for byte */
		if (r.body.len)
			fwrite(r.body.s, 1, r.body.len, stdout);
		fg_httpc_response_free(&r);
		return EXIT_OK;
	}
	json_t *j = answer_json(c, &r);
	fg_httpc_response_free(&r);
	if (!j)
		return EXIT_FAIL;
	struct table t = {.ncols = 4};
	table_add(&t, "TIME (UTC)", "UP", "DOWN", "CONNS");
	size_t i;
	json_t *p;
	json_array_foreach(json_object_get(j, "series"), i, p)
	{
		char ts[32], up[32], down[32], conns[32];
		time_t tt = (time_t)num(p, "t");
		struct tm tm;
		gmtime_r(&tt, &tm);
		strftime(ts, sizeof(ts), "%Y-%m-%d %H:%M", &tm);
		fmt_bytes((uint64_t)num(p, "bytes_up"), up, sizeof(up));
		fmt_bytes((uint64_t)num(p, "bytes_down"), down, sizeof(down));
		snprintf(conns, sizeof(conns), "%lld", num(p, "conns"));
		table_add(&t, ts, up, down, conns);
	}
	json_t *tot = json_object_get(j, "total");
	char up[32], down[32], conns[32];
	fmt_bytes((uint64_t)num(tot, "bytes_up"), up, sizeof(up));
	fmt_bytes((uint64_t)num(tot, "bytes_down"), down, sizeof(down));
	snprintf(conns, sizeof(conns), "%lld", num(tot, "conns"));
	table_add(&t, "total", up, down, conns);
	table_print(&t);
	json_decref(j);
	return EXIT_OK;
}

/* ---- shared get / delete / rename ---------------------------------------- */

static int cmd_get(struct ctl *c, const char *kind, int argc, char **argv)
{
	char path[600];
	json_t *j;
	int rc = positional(argc, argv, 1, 1, "get");
	if (rc || (rc = ref_path(kind, argv[1], NULL, path, sizeof(path))))
		return rc;
	if ((rc = call_json(c, "GET", path, NULL, &j)) || !j)
		return rc;
	print_object(j);
	json_decref(j);
	return EXIT_OK;
}

static int cmd_delete(struct ctl *c, const char *kind, const char *one, int argc, char **argv)
{
	char path[600];
	json_t *j;
	int rc = positional(argc, argv, 1, -1, "delete");
	for (int i = 1; rc == 0 && i < argc; i++) {
		if ((rc = ref_path(kind, argv[i], NULL, path, sizeof(path))))
			break;
		if ((rc = call_json(c, "DELETE", path, NULL, &j)))
			break;
		if (j)
			printf("deleted %s %s\n", one, argv[i]);
		json_decref(j);
	}
	return rc;
}

/* PATCH with a body; prints "<what>" on success. */
static int patch(struct ctl *c, const char *kind, const char *ref, json_t *body, json_t **out)
{
	char path[600];
	int rc = ref_path(kind, ref, NULL, path, sizeof(path));
	if (rc == 0)
		rc = call_json(c, "PATCH", path, body, out);
	json_decref(body);
	return rc;
}

static int cmd_rename(struct ctl *c, const char *kind, const char *one, int argc, char **argv)
{
	json_t *j;
	int rc = positional(argc, argv, 2, 2, "rename");
	if (rc || (rc = patch(c, kind, argv[1], json_pack("{s:s}", "name", argv[2]), &j)) || !j)
		return rc;
	printf("renamed %s %s to %s\n", one, argv[1], str(j, "name", argv[2]));
	json_decref(j);
	return EXIT_OK;
}

/* ---- nodes -------------------------------------------------------------------- */

static int nodes_list(struct ctl *c, int argc, char **argv)
{
	json_t *j;
	int rc = positional(argc, argv, 0, 0, "nodes list");
	if (rc || (rc = call_json(c, "GET", "/nodes", NULL, &j)) || !j)
		return rc;
	json_t *a = json_object_get(j, "nodes"), *n;
	size_t i;
	if (json_array_size(a) == 0) {
		printf("no nodes (add one: flowgate ctl nodes create NAME)\n");
		json_decref(j);
		return EXIT_OK;
	}
	struct table t = {.ncols = 7};
	table_add(&t, "ID", "NAME", "STATUS", "GROUPS", "LAST SEEN", "VERSION", "CONFIG");
	json_array_foreach(a, i, n)
	{
		char id[24], seen[32], cfg[48];
		struct fg_strbuf g;
		fg_strbuf_init(&g);
		fmt_value(json_object_get(n, "groups"), &g);
		snprintf(id, sizeof(id), "%lld", num(n, "id"));
		fmt_ago(num(n, "last_seen"), seen, sizeof(seen));
		size_t nerr = json_array_size(json_object_get(n, "errors"));
		long long want = num(n, "desired_rev"), have = num(n, "applied_rev");
		if (nerr)
			snprintf(cfg, sizeof(cfg), "%zu error%s", nerr, nerr == 1 ? "" : "s");
		else if (want == 0 || want == have)
			snprintf(cfg, sizeof(cfg), "%s", have ? "applied" : "-");
		else
			snprintf(cfg, sizeof(cfg), "pending (rev %lld of %lld)", have, want);
		const char *ver = str(n, "version", "");
		table_add(&t, id, str(n, "name", "?"),
			  json_is_true(json_object_get(n, "online")) ? "online" : "offline",
			  g.s ? g.s : "-", seen, ver[0] ? ver : "-", cfg);
		fg_strbuf_deinit(&g);
	}
	table_print(&t);
	json_decref(j);
	return EXIT_OK;
}

static int nodes_create(struct ctl *c, int argc, char **argv)
{
	const char *name = NULL, *g;
	json_t *groups = json_array();
	int rc = EXIT_USAGE;
	for (int i = 1; i < argc;) {
		int m = opt_value(argc, argv, &i, "--group", "-g", &g);
		if (m < 0)
			goto out;
		if (m) {
			json_array_append_new(groups, json_string(g));
			continue;
		}
		if (argv[i][0] == '-' && argv[i][1]) {
			rc = usage_err("nodes create: unknown option \"%s\"", argv[i]);
			goto out;
		}
		if (name) {
			rc = usage_err("nodes create: one node at a time (\"%s\" and \"%s\")", name,
				       argv[i]);
			goto out;
		}
		name = argv[i++];
	}
	if (!name) {
		rc = usage_err("nodes create: the node's NAME is missing");
		goto out;
	}
	json_t *body = json_pack("{s:s}", "name", name);
	if (json_array_size(groups))
		json_object_set(body, "groups", groups);
	struct fg_httpc_response r;
	rc = call(c, "POST", "/nodes", body, true, &r);
	json_decref(body);
	if (rc)
		goto out;
	if (c->json) {
		print_raw(&r);
		fg_httpc_response_free(&r);
		goto out;
	}
	json_t *j = answer_json(c, &r);
	fg_httpc_response_free(&r);
	if (!j) {
		rc = EXIT_FAIL;
		goto out;
	}
	/* showing the token is this command's purpose: it exists only now */
	printf("created node %s (id %lld)\n\n"
	       "Enroll it: run this on the node, as root (the token is shown only this once):\n\n"
	       "  %s\n\n"
	       "node token: %s\n",
	       str(j, "name", name), num(j, "id"), str(j, "enroll_command", "?"),
	       str(j, "token", "?"));
	json_decref(j);
out:
	json_decref(groups);
	return rc;
}

/* nodes set-groups REF G... / groups set-nodes REF N...: the full list. */
static int set_members(struct ctl *c, const char *kind, const char *field, int argc, char **argv)
{
	int rc = positional(argc, argv, 1, -1, field);
	if (rc)
		return rc;
	json_t *list = json_array(), *j;
	for (int i = 2; i < argc; i++)
		json_array_append_new(list, json_string(argv[i]));
	json_t *body = json_object();
	json_object_set_new(body, field, list);
	if ((rc = patch(c, kind, argv[1], body, &j)) || !j)
		return rc;
	struct fg_strbuf b;
	fg_strbuf_init(&b);
	fmt_value(json_object_get(j, field), &b);
	printf("%s %s: %s %s\n", strcmp(kind, "nodes") == 0 ? "node" : "group", str(j, "name", "?"),
	       field, b.s ? b.s : "-");
	fg_strbuf_deinit(&b);
	json_decref(j);
	return EXIT_OK;
}

static int cmd_nodes(struct ctl *c, int argc, char **argv)
{
	if (argc < 2)
		return usage_err("nodes: list, get, create, rename, set-groups, delete or stats?");
	const char *sub = argv[1];
	argc--;
	argv++;
	if (strcmp(sub, "list") == 0 || strcmp(sub, "ls") == 0)
		return nodes_list(c, argc, argv);
	if (strcmp(sub, "get") == 0 || strcmp(sub, "show") == 0)
		return cmd_get(c, "nodes", argc, argv);
	if (strcmp(sub, "create") == 0 || strcmp(sub, "add") == 0)
		return nodes_create(c, argc, argv);
	if (strcmp(sub, "delete") == 0 || strcmp(sub, "rm") == 0)
		return cmd_delete(c, "nodes", "node", argc, argv);
	if (strcmp(sub, "rename") == 0)
		return cmd_rename(c, "nodes", "node", argc, argv);
	if (strcmp(sub, "set-groups") == 0)
		return set_members(c, "nodes", "groups", argc, argv);
	if (strcmp(sub, "stats") == 0)
		return cmd_stats(c, "nodes", argc, argv);
	return usage_err("nodes: unknown command \"%s\"", sub);
}

/* ---- groups ------------------------------------------------------------------- */

static int groups_list(struct ctl *c, int argc, char **argv)
{
	json_t *j;
	int rc = positional(argc, argv, 0, 0, "groups list");
	if (rc || (rc = call_json(c, "GET", "/groups", NULL, &j)) || !j)
		return rc;
	json_t *a = json_object_get(j, "groups"), *g;
	size_t i;
	if (json_array_size(a) == 0) {
		printf("no groups (add one: flowgate ctl groups create NAME)\n");
		json_decref(j);
		return EXIT_OK;
	}
	struct table t = {.ncols = 3};
	table_add(&t, "ID", "NAME", "NODES");
	json_array_foreach(a, i, g)
	{
		char id[24];
		struct fg_strbuf b;
		fg_strbuf_init(&b);
		fmt_value(json_object_get(g, "nodes"), &b);
		snprintf(id, sizeof(id), "%lld", num(g, "id"));
		table_add(&t, id, str(g, "name", "?"), b.s ? b.s : "-");
		fg_strbuf_deinit(&b);
	}
	table_print(&t);
	json_decref(j);
	return EXIT_OK;
}

static int groups_create(struct ctl *c, int argc, char **argv)
{
	const char *name = NULL, *n;
	json_t *nodes = json_array(), *j = NULL;
	int rc = EXIT_USAGE;
	for (int i = 1; i < argc;) {
		int m = opt_value(argc, argv, &i, "--node", "-n", &n);
		if (m < 0)
			goto out;
		if (m) {
			json_array_append_new(nodes, json_string(n));
			continue;
		}
		if (argv[i][0] == '-' && argv[i][1]) {
			rc = usage_err("groups create: unknown option \"%s\"", argv[i]);
			goto out;
		}
		if (name) {
			rc = usage_err("groups create: one group at a time (\"%s\" and \"%s\")",
				       name, argv[i]);
			goto out;
		}
		name = argv[i++];
	}
	if (!name) {
		rc = usage_err("groups create: the group's NAME is missing");
		goto out;
	}
	json_t *body = json_pack("{s:s}", "name", name);
	if (json_array_size(nodes))
		json_object_set(body, "nodes", nodes);
	rc = call_json(c, "POST", "/groups", body, &j);
	json_decref(body);
	if (rc || !j)
		goto out;
	printf("created group %s (id %lld)\n", str(j, "name", name), num(j, "id"));
out:
	json_decref(j);
	json_decref(nodes);
	return rc;
}

static int cmd_groups(struct ctl *c, int argc, char **argv)
{
	if (argc < 2)
		return usage_err("groups: list, get, create, rename, set-nodes, delete or stats?");
	const char *sub = argv[1];
	argc--;
	argv++;
	if (strcmp(sub, "list") == 0 || strcmp(sub, "ls") == 0)
		return groups_list(c, argc, argv);
	if (strcmp(sub, "get") == 0 || strcmp(sub, "show") == 0)
		return cmd_get(c, "groups", argc, argv);
	if (strcmp(sub, "create") == 0 || strcmp(sub, "add") == 0)
		return groups_create(c, argc, argv);
	if (strcmp(sub, "delete") == 0 || strcmp(sub, "rm") == 0)
		return cmd_delete(c, "groups", "group", argc, argv);
	if (strcmp(sub, "rename") == 0)
		return cmd_rename(c, "groups", "group", argc, argv);
	if (strcmp(sub, "set-nodes") == 0)
		return set_members(c, "groups", "nodes", argc, argv);
	if (strcmp(sub, "stats") == 0)
		return cmd_stats(c, "groups", argc, argv);
	return usage_err("groups: unknown command \"%s\"", sub);
}

/* ---- forwards ----------------------------------------------------------------- */

static const char *forward_place(json_t *f, char *buf, size_t len)
{
	if (str(f, "node", NULL))
		snprintf(buf, len, "node %s", str(f, "node", ""));
	else
		snprintf(buf, len, "group %s", str(f, "group", "?"));
	return buf;
}

static int forwards_list(struct ctl *c, int argc, char **argv)
{
	const char *node = NULL, *group = NULL;
	for (int i = 1; i < argc;) {
		int m = opt_value(argc, argv, &i, "--node", NULL, &node);
		if (!m)
			m = opt_value(argc, argv, &i, "--group", NULL, &group);
		if (m < 0)
			return EXIT_USAGE;
		if (!m)
			return usage_err("forwards list: unexpected argument \"%s\"", argv[i]);
	}
	if (node && group)
		return usage_err("forwards list: --node or --group, not both");
	char path[600] = "/forwards", esc[512];
	if (node || group) {
		if (fg_ctl_path_escape(node ? node : group, esc, sizeof(esc)) < 0)
			return usage_err("--%s: too long", node ? "node" : "group");
		snprintf(path, sizeof(path), "/forwards?%s=%s", node ? "node" : "group", esc);
	}
	json_t *j;
	int rc = call_json(c, "GET", path, NULL, &j);
	if (rc || !j)
		return rc;
	json_t *a = json_object_get(j, "forwards"), *f;
	size_t i;
	if (json_array_size(a) == 0) {
		printf("no forwards%s\n", node || group ? " there" : "");
		json_decref(j);
		return EXIT_OK;
	}
	struct table t = {.ncols = 7};
	table_add(&t, "ID", "NAME", "ON", "LISTEN", "PROTO", "TARGETS", "STATE");
	json_array_foreach(a, i, f)
	{
		char id[24], place[100];
		struct fg_strbuf b;
		fg_strbuf_init(&b);
		fmt_value(json_object_get(f, "targets"), &b);
		snprintf(id, sizeof(id), "%lld", num(f, "id"));
		json_t *en = json_object_get(f, "enabled");
		table_add(&t, id, str(f, "name", "?"), forward_place(f, place, sizeof(place)),
			  str(f, "listen", "?"), str(f, "proto", "tcp"), b.s ? b.s : "-",
			  en && json_is_false(en) ? "disabled" : "enabled");
		fg_strbuf_deinit(&b);
	}
	table_print(&t);
	json_decref(j);
	return EXIT_OK;
}

typedef int (*body_from_flags_fn)(int argc, char **argv, bool update, json_t **body,
				  const char **ref, char *err, size_t errlen);

/* "KIND create|update [REF] --flags": POST /KIND or PATCH /KIND/REF with
 * the body the flags make; *out is the server's answer (NULL on error). */
static int write_from_flags(struct ctl *c, const char *kind, body_from_flags_fn make, bool update,
			    int argc, char **argv, json_t **out)
{
	json_t *body;
	const char *ref;
	char err[512], path[600];
	*out = NULL;
	if (make(argc, argv, update, &body, &ref, err, sizeof(err)) < 0)
		return usage_err("%s", err);
	snprintf(path, sizeof(path), "/%s", kind);
	int rc = update ? ref_path(kind, ref, NULL, path, sizeof(path)) : 0;
	c->body_from_flags = true;
	if (rc == 0)
		rc = call_json(c, update ? "PATCH" : "POST", path, body, out);
	json_decref(body);
	return rc;
}

static int forwards_write(struct ctl *c, bool update, int argc, char **argv)
{
	json_t *j;
	int rc = write_from_flags(c, "forwards", fg_ctl_forward_body, update, argc, argv, &j);
	if (rc || !j)
		return rc;
	char place[100];
	struct fg_strbuf b;
	fg_strbuf_init(&b);
	fmt_value(json_object_get(j, "targets"), &b);
	printf("%s forward %s (id %lld): %s %s -> %s on %s%s\n", update ? "updated" : "created",
	       str(j, "name", "?"), num(j, "id"), str(j, "proto", "tcp"), str(j, "listen", "?"),
	       b.s ? b.s : "?", forward_place(j, place, sizeof(place)),
	       json_is_false(json_object_get(j, "enabled")) ? " (disabled)" : "");
	fg_strbuf_deinit(&b);
	json_decref(j);
	return EXIT_OK;
}

/* ---- policies ----------------------------------------------------------------- */

/* Reads a JSON object from FILE or "-" (stdin); NULL after saying why. */
static json_t *read_object(const char *file)
{
	json_error_t je;
	json_t *j = strcmp(file, "-") == 0 ? json_loadf(stdin, JSON_REJECT_DUPLICATES, &je)
					   : json_load_file(file, JSON_REJECT_DUPLICATES, &je);
	if (!j) {
		if (je.line > 0)
			say_err("%s: line %d column %d: %s", file, je.line, je.column, je.text);
		else
			say_err("%s: %s", file, je.text);
		return NULL;
	}
	if (!json_is_object(j)) {
		json_decref(j);
		say_err("%s: a policy is one JSON object", file);
		return NULL;
	}
	return j;
}

static void targets_text(json_t *p, struct fg_strbuf *b)
{
	json_t *t = json_object_get(p, "targets");
	size_t i;
	json_t *v;
	json_array_foreach(json_object_get(t, "nodes"), i, v)
	    fg_strbuf_printf(b, "%snode %s", b->len ? ", " : "", json_string_value(v));
	json_array_foreach(json_object_get(t, "groups"), i, v)
	    fg_strbuf_printf(b, "%sgroup %s", b->len ? ", " : "", json_string_value(v));
}

static int policies_list(struct ctl *c, int argc, char **argv)
{
	json_t *j;
	int rc = positional(argc, argv, 0, 0, "policies list");
	if (rc || (rc = call_json(c, "GET", "/policies", NULL, &j)) || !j)
		return rc;
	json_t *a = json_object_get(j, "policies"), *p;
	size_t i;
	if (json_array_size(a) == 0) {
		printf("no policies (add one: flowgate ctl policies create -f FILE.json)\n");
		json_decref(j);
		return EXIT_OK;
	}
	struct table t = {.ncols = 6};
	table_add(&t, "ID", "NAME", "PRIORITY", "RULES", "TARGETS", "STATE");
	json_array_foreach(a, i, p)
	{
		char id[24], prio[24], nr[24];
		struct fg_strbuf b;
		fg_strbuf_init(&b);
		targets_text(p, &b);
		snprintf(id, sizeof(id), "%lld", num(p, "id"));
		snprintf(prio, sizeof(prio), "%lld", num(p, "priority"));
		snprintf(nr, sizeof(nr), "%zu", json_array_size(json_object_get(p, "rules")));
		table_add(&t, id, str(p, "name", "?"), prio, nr, b.s ? b.s : "-",
			  json_is_false(json_object_get(p, "enabled")) ? "disabled" : "enabled");
		fg_strbuf_deinit(&b);
	}
	table_print(&t);
	json_decref(j);
	return EXIT_OK;
}

static int policies_write(struct ctl *c, bool update, int argc, char **argv)
{
	const char *file = NULL, *ref = NULL;
	for (int i = 1; i < argc;) {
		int m = opt_value(argc, argv, &i, "--file", "-f", &file);
		if (m < 0)
			return EXIT_USAGE;
		if (!m && update && !ref) {
			ref = argv[i++];
			continue;
		}
		if (!m)
			return usage_err("policies: unexpected argument \"%s\"", argv[i]);
	}
	if (!file)
		return usage_err("policies %s: the policy is -f FILE.json (or -f - for stdin)",
				 update ? "update" : "create");
	if (update && !ref)
		return usage_err("policies update: which policy?");
	json_t *body = read_object(file), *j;
	if (!body)
		return EXIT_USAGE;
	char path[600] = "/policies";
	int rc = update ? ref_path("policies", ref, NULL, path, sizeof(path)) : 0;
	c->body_from_flags = false;
	if (rc == 0)
		rc = call_json(c, update ? "PATCH" : "POST", path, body, &j);
	json_decref(body);
	if (rc || !j)
		return rc;
	struct fg_strbuf b;
	fg_strbuf_init(&b);
	targets_text(j, &b);
	printf("%s policy %s (id %lld): priority %lld, %zu rules, on %s%s\n",
	       update ? "updated" : "created", str(j, "name", "?"), num(j, "id"),
	       num(j, "priority"), json_array_size(json_object_get(j, "rules")),
	       b.s ? b.s : "nothing yet",
	       json_is_false(json_object_get(j, "enabled")) ? " (disabled)" : "");
	fg_strbuf_deinit(&b);
	json_decref(j);
	return EXIT_OK;
}

static int policies_preview(struct ctl *c, int argc, char **argv)
{
	bool diff = false;
	const char *node = NULL;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--diff") == 0)
			diff = true;
		else if (!node)
			node = argv[i];
		else
			return usage_err("policies preview: unexpected argument \"%s\"", argv[i]);
	}
	if (!node)
		return usage_err("policies preview: which node?");
	char path[600];
	json_t *j;
	int rc = ref_path("nodes", node, "/firewall", path, sizeof(path));
	if (rc || (rc = call_json(c, "GET", path, NULL, &j)) || !j)
		return rc;
	if (!diff) {
		fputs(str(j, "preview", ""), stdout);
	} else if (json_is_string(json_object_get(j, "diff"))) {
		const char *d = str(j, "diff", "");
		printf("%s", *d ? d : "# the node runs exactly the preview\n");
	} else {
		printf("# no diff: %s\n",
		       str(j, "live_error", str(j, "diff_error", "unavailable")));
	}
	json_t *ctrs = json_object_get(j, "counters"), *k;
	size_t i;
	if (json_array_size(ctrs)) {
		struct table t = {.ncols = 4};
		table_add(&t, "COUNTER", "WHAT", "PACKETS", "BYTES");
		json_array_foreach(ctrs, i, k)
		{
			char what[160], pk[32], by[32];
			if (str(k, "policy", NULL))
				snprintf(what, sizeof(what), "policy %s rule %lld",
					 str(k, "policy", ""), num(k, "rule"));
			else if (str(k, "forward", NULL))
				snprintf(what, sizeof(what), "forward %s %s", str(k, "forward", ""),
					 str(k, "direction", ""));
			else
				snprintf(what, sizeof(what), "-");
			snprintf(pk, sizeof(pk), "%lld", num(k, "packets"));
			fmt_bytes((uint64_t)num(k, "bytes"), by, sizeof(by));
			table_add(&t, str(k, "name", "?"), what, pk, by);
		}
		printf("\n");
		table_print(&t);
	}
	json_decref(j);
	return EXIT_OK;
}

static int policies_import(struct ctl *c, int argc, char **argv)
{
	const char *file = NULL, *name = NULL;
	bool create = false;
	for (int i = 1; i < argc;) {
		int m = opt_value(argc, argv, &i, "--name", NULL, &name);
		if (m < 0)
			return EXIT_USAGE;
		if (m)
			continue;
		if (strcmp(argv[i], "--create") == 0)
			create = true;
		else if (!file)
			file = argv[i];
		else
			return usage_err("policies import-iptables: unexpected argument \"%s\"",
					 argv[i]);
		i++;
	}
	if (!file)
		return usage_err(
		    "policies import-iptables: which file? (iptables-save output, or -)");
	FILE *f = strcmp(file, "-") == 0 ? stdin : fopen(file, "r");
	if (!f) {
		say_err("%s: %s", file, strerror(errno));
		return EXIT_USAGE;
	}
	struct fg_strbuf text;
	fg_strbuf_init(&text);
	char buf[4096];
	size_t n;
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		fg_strbuf_append(&text, buf, n);
	if (f != stdin)
		fclose(f);
	json_t *body = json_pack("{s:s}", "text", text.s ? text.s : "");
	fg_strbuf_deinit(&text);
	if (name)
		json_object_set_new(body, "name", json_string(name));
	json_t *j;
	int rc = call_json(c, "POST", "/policies/import-iptables", body, &j);
	json_decref(body);
	if (rc || !j)
		return rc;
	json_t *pol = json_object_get(j, "policy");
	fprintf(stderr, "flowgate ctl: %s\n", str(j, "message", ""));
	size_t i;
	json_t *sk;
	json_array_foreach(json_object_get(j, "skipped"), i, sk)
	    fprintf(stderr, "  skipped: %s\n", json_string_value(sk));
	if (!create) {
		char *t = json_dumps(pol, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		if (t)
			printf("%s\n", t);
		free(t);
		json_decref(j);
		return EXIT_OK;
	}
	json_t *made;
	rc = call_json(c, "POST", "/policies", json_incref(pol), &made);
	json_decref(pol);
	if (!rc && made)
		printf("created policy %s (id %lld), disabled: review it, then "
		       "`flowgate ctl policies enable %s`\n",
		       str(made, "name", "?"), num(made, "id"), str(made, "name", "?"));
	json_decref(made);
	json_decref(j);
	return rc;
}

/* ---- tunnels ------------------------------------------------------------------ */

static void tunnel_exits(json_t *t, struct fg_strbuf *b)
{
	json_t *ex = json_object_get(t, "exits");
	if (json_is_array(ex))
		fmt_value(ex, b);
	else
		fg_strbuf_printf(b, "%s", str(t, "exit", "?"));
}

/* entry -> hop -> ... -> exit(s), by node names */
static void tunnel_route(json_t *t, struct fg_strbuf *b)
{
	json_t *en = json_object_get(t, "entry"), *h;
	size_t i;
	if (str(en, "group", NULL))
		fg_strbuf_printf(b, "group %s", str(en, "group", "?"));
	else
		fg_strbuf_printf(b, "%s", str(en, "node", "?"));
	json_array_foreach(json_object_get(t, "hops"), i, h)
	    fg_strbuf_printf(b, " -> %s", json_string_value(h) ? json_string_value(h) : "?");
	fg_strbuf_printf(b, " -> ");
	tunnel_exits(t, b);
}

/* ok, or the first non-ok node state ("degraded", "offline", "waiting", "error"...) */
static const char *tunnel_state(json_t *t)
{
	if (json_is_false(json_object_get(t, "enabled")))
		return "disabled";
	json_t *p, *n;
	size_t i, k;
	json_array_foreach(json_object_get(t, "path"), i, p)
	{
		json_array_foreach(json_object_get(p, "nodes"), k, n)
		{
			const char *st = str(n, "state", "ok");
			if (strcmp(st, "ok") != 0)
				return st;
		}
	}
	return "ok";
}

static int tunnels_list(struct ctl *c, int argc, char **argv)
{
	const char *node = NULL;
	for (int i = 1; i < argc;) {
		int m = opt_value(argc, argv, &i, "--node", NULL, &node);
		if (m < 0)
			return EXIT_USAGE;
		if (!m)
			return usage_err("tunnels list: unexpected argument \"%s\"", argv[i]);
	}
	char path[600] = "/tunnels", esc[512];
	if (node) {
		if (fg_ctl_path_escape(node, esc, sizeof(esc)) < 0)
			return usage_err("--node: too long");
		snprintf(path, sizeof(path), "/tunnels?node=%s", esc);
	}
	json_t *j;
	int rc = call_json(c, "GET", path, NULL, &j);
	if (rc || !j)
		return rc;
	json_t *a = json_object_get(j, "tunnels"), *t;
	size_t i;
	if (json_array_size(a) == 0) {
		printf("no tunnels%s\n", node ? " there" : "");
		json_decref(j);
		return EXIT_OK;
	}
	struct table tb = {.ncols = 7};
	table_add(&tb, "ID", "NAME", "LISTEN", "PATH", "TARGET", "TRANSPORT", "STATE");
	json_array_foreach(a, i, t)
	{
		char id[24];
		struct fg_strbuf b;
		fg_strbuf_init(&b);
		tunnel_route(t, &b);
		snprintf(id, sizeof(id), "%lld", num(t, "id"));
		table_add(&tb, id, str(t, "name", "?"),
			  str(json_object_get(t, "entry"), "listen", "?"), b.s ? b.s : "?",
			  str(t, "target", "?"), str(t, "transport", "tls"), tunnel_state(t));
		fg_strbuf_deinit(&b);
	}
	table_print(&tb);
	json_decref(j);
	return EXIT_OK;
}

static int tunnels_write(struct ctl *c, bool update, int argc, char **argv)
{
	json_t *j;
	int rc = write_from_flags(c, "tunnels", fg_ctl_tunnel_body, update, argc, argv, &j);
	if (rc || !j)
		return rc;
	struct fg_strbuf b;
	fg_strbuf_init(&b);
	tunnel_route(j, &b);
	printf("%s tunnel %s (id %lld): %s via %s -> %s%s\n", update ? "updated" : "created",
	       str(j, "name", "?"), num(j, "id"), str(json_object_get(j, "entry"), "listen", "?"),
	       b.s ? b.s : "?", str(j, "target", "?"),
	       json_is_false(json_object_get(j, "enabled")) ? " (disabled)" : "");
	fg_strbuf_deinit(&b);
	json_t *pr = json_object_get(j, "problems"), *p;
	size_t i;
	json_array_foreach(pr, i, p) fprintf(stderr, "  note: %s\n", json_string_value(p));
	json_decref(j);
	return EXIT_OK;
}

static int tunnels_rotate(struct ctl *c, int argc, char **argv)
{
	char path[600];
	json_t *j;
	int rc = positional(argc, argv, 1, 1, "rotate-key");
	if (rc || (rc = ref_path("tunnels", argv[1], "/rotate-key", path, sizeof(path))))
		return rc;
	if ((rc = call_json(c, "POST", path, NULL, &j)) || !j)
		return rc;
	json_t *k = json_object_get(j, "key");
	char until[64];
	fmt_time(num(k, "previous_until"), until, sizeof(until));
	printf("tunnel %s: new key id %lld; the previous key (id %lld) is accepted until %s\n",
	       str(j, "name", argv[1]), num(k, "id"), num(k, "previous_id"), until);
	json_decref(j);
	return EXIT_OK;
}

/* ---- one dispatcher for the resources ------------------------------------------ */

struct resource;
/* One subcommand: exactly one of run (shared by the resources), plain
 * (the resource's own), write (create/update, update says which). */
struct res_cmd {
	const char *name, *alias;
	int (*run)(struct ctl *c, const struct resource *r, int argc, char **argv);
	int (*plain)(struct ctl *c, int argc, char **argv);
	int (*write)(struct ctl *c, bool update, int argc, char **argv);
	bool update;
};

/* A resource under /api/v1/<kind>: its subcommands, the first one that
 * matches by name or alias runs with argv[0] = the subcommand. */
struct resource {
	const char *kind; /* "forwards": the path and the command */
	const char *one;  /* "forward": in messages */
	const struct res_cmd *cmds;
	size_t ncmds;
};

static int res_get(struct ctl *c, const struct resource *r, int argc, char **argv)
{
	return cmd_get(c, r->kind, argc, argv);
}

static int res_delete(struct ctl *c, const struct resource *r, int argc, char **argv)
{
	return cmd_delete(c, r->kind, r->one, argc, argv);
}

static int res_stats(struct ctl *c, const struct resource *r, int argc, char **argv)
{
	return cmd_stats(c, r->kind, argc, argv);
}

/* enable REF / disable REF (argv[0] says which) */
static int res_enable(struct ctl *c, const struct resource *r, int argc, char **argv)
{
	bool on = strcmp(argv[0], "enable") == 0;
	json_t *j;
	int rc = positional(argc, argv, 1, 1, on ? "enable" : "disable");
	if (rc || (rc = patch(c, r->kind, argv[1], json_pack("{s:b}", "enabled", on), &j)) || !j)
		return rc;
	printf("%s %s %s\n", r->one, str(j, "name", argv[1]), on ? "enabled" : "disabled");
	json_decref(j);
	return EXIT_OK;
}

static const struct res_cmd forward_cmds[] = {
    {"list", "ls", .plain = forwards_list},
    {"get", "show", .run = res_get},
    {"create", "add", .write = forwards_write},
    {"update", "set", .write = forwards_write, .update = true},
    {"enable", NULL, .run = res_enable},
    {"disable", NULL, .run = res_enable},
    {"delete", "rm", .run = res_delete},
    {"stats", NULL, .run = res_stats},
};
static const struct res_cmd policy_cmds[] = {
    {"list", "ls", .plain = policies_list},
    {"get", "show", .run = res_get},
    {"create", "add", .write = policies_write},
    {"update", "set", .write = policies_write, .update = true},
    {"enable", NULL, .run = res_enable},
    {"disable", NULL, .run = res_enable},
    {"delete", "rm", .run = res_delete},
    {"preview", NULL, .plain = policies_preview},
    {"import-iptables", NULL, .plain = policies_import},
};
static const struct res_cmd tunnel_cmds[] = {
    {"list", "ls", .plain = tunnels_list},
    {"get", "show", .run = res_get},
    {"create", "add", .write = tunnels_write},
    {"update", "set", .write = tunnels_write, .update = true},
    {"enable", NULL, .run = res_enable},
    {"disable", NULL, .run = res_enable},
    {"delete", "rm", .run = res_delete},
    {"rotate-key", NULL, .plain = tunnels_rotate},
    {"stats", NULL, .run = res_stats},
};
#define RES(kind, one, cmds)                                                                       \
	{                                                                                          \
		kind, one, cmds, FG_ARRAY_LEN(cmds)                                                \
	}
static const struct resource resources[] = {
    RES("forwards", "forward", forward_cmds),
    RES("policies", "policy", policy_cmds),
    RES("tunnels", "tunnel", tunnel_cmds),
};

/* argv[0] is the resource word, argv[1] the subcommand. */
static int cmd_resource(struct ctl *c, const struct resource *r, int argc, char **argv)
{
	char menu[256] = "";
	for (size_t i = 0; i < r->ncmds; i++)
		snprintf(menu + strlen(menu), sizeof(menu) - strlen(menu), "%s%s",
			 i == 0		     ? ""
			 : i + 1 == r->ncmds ? " or "
					     : ", ",
			 r->cmds[i].name);
	if (argc < 2)
		return usage_err("%s: %s?", r->kind, menu);
	const char *sub = argv[1];
	for (size_t i = 0; i < r->ncmds; i++) {
		const struct res_cmd *k = &r->cmds[i];
		if (strcmp(sub, k->name) != 0 && !(k->alias && strcmp(sub, k->alias) == 0))
			continue;
		if (k->run)
			return k->run(c, r, argc - 1, argv + 1);
		if (k->plain)
			return k->plain(c, argc - 1, argv + 1);
		return k->write(c, k->update, argc - 1, argv + 1);
	}
	return usage_err("%s: unknown command \"%s\"", r->kind, sub);
}

/* ---- export / import ------------------------------------------------------------ */

static int write_file_atomic(const char *path, const char *s, size_t len)
{
	char tmp[PATH_MAX];
	snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
	FILE *f = fopen(tmp, "wx");
	if (!f) {
		say_err("cannot write %s: %s", tmp, strerror(errno));
		return EXIT_FAIL;
	}
	bool ok = fwrite(s, 1, len, f) == len && fflush(f) == 0 && fsync(fileno(f)) == 0;
	int e = errno;
	if (fclose(f) != 0 && ok) {
		ok = false;
		e = errno;
	}
	if (ok && rename(tmp, path) < 0) {
		ok = false;
		e = errno;
	}
	if (!ok) {
		unlink(tmp);
		say_err("cannot write %s: %s", path, strerror(e));
		return EXIT_FAIL;
	}
	return EXIT_OK;
}

static int cmd_export(struct ctl *c, int argc, char **argv)
{
	const char *out = NULL;
	for (int i = 1; i < argc;) {
		int m = opt_value(argc, argv, &i, "--output", "-o", &out);
		if (m < 0)
			return EXIT_USAGE;
		if (!m)
			return usage_err("export: unexpected argument \"%s\" (the file is -o FILE)",
					 argv[i]);
	}
	struct fg_httpc_response r;
	int rc = call(c, "GET", "/export", NULL, true, &r);
	if (rc)
		return rc;
	json_t *j = answer_json(c, &r);
	fg_httpc_response_free(&r);
	if (!j)
		return EXIT_FAIL;
	/* indented: an export is meant to be read, diffed and kept in git */
	char *s = json_dumps(j, JSON_INDENT(2));
	if (!s) {
		json_decref(j);
		say_err("out of memory");
		return EXIT_FAIL;
	}
	size_t len = strlen(s);
	s[len++] = '\n'; /* over the NUL: from here s goes by its length */
	if (out && strcmp(out, "-") != 0) {
		rc = write_file_atomic(out, s, len);
		if (rc == 0)
			fprintf(stderr,
				"flowgate ctl: exported %zu groups, %zu nodes, %zu forwards, %zu "
				"policies, %zu tunnels to %s\n",
				json_array_size(json_object_get(j, "groups")),
				json_array_size(json_object_get(j, "nodes")),
				json_array_size(json_object_get(j, "forwards")),
				json_array_size(json_object_get(j, "policies")),
				json_array_size(json_object_get(j, "tunnels")), out);
	} else if (fwrite(s, 1, len, stdout) != len || fflush(stdout) != 0) {
		if (errno != EPIPE) /* `| head`: the reader has all it wanted */
			say_err("writing the export: %s", strerror(errno));
		rc = EXIT_FAIL;
	}
	free(s);
	json_decref(j);
	return rc;
}

/* The agent's URL for the enroll hint: the API's scheme turned into ws. */
static void agent_url(const struct fg_url *u, char *out, size_t len)
{
	char port[8] = "";
	if (u->port != (u->tls ? 443 : 80))
		snprintf(port, sizeof(port), ":%u", u->port);
	snprintf(out, len, "%s://%s%s%s%s%s", u->tls ? "wss" : "ws", u->host_is_v6 ? "[" : "",
		 u->host, u->host_is_v6 ? "]" : "", port, u->path);
}

static int cmd_import(struct ctl *c, int argc, char **argv)
{
	int rc = positional(argc, argv, 0, 1, "import");
	if (rc)
		return rc;
	if (argc < 2)
		return usage_err("import: which file? (FILE, or - for stdin)");
	const char *file = argv[1];
	json_error_t je;
	json_t *body = strcmp(file, "-") == 0 ? json_loadf(stdin, JSON_REJECT_DUPLICATES, &je)
					      : json_load_file(file, JSON_REJECT_DUPLICATES, &je);
	if (!body) {
		if (je.line > 0)
			say_err("%s: line %d column %d: %s", file, je.line, je.column, je.text);
		else
			say_err("%s: %s", file, je.text);
		return EXIT_USAGE;
	}
	if (!json_is_object(body)) {
		json_decref(body);
		say_err("%s: an export is one JSON object ({\"groups\", \"nodes\", \"forwards\", "
			"\"policies\", \"tunnels\"})",
			file);
		return EXIT_USAGE;
	}
	struct fg_httpc_response r;
	rc = call(c, "POST", "/import", body, true, &r);
	json_decref(body);
	if (rc)
		return rc;
	if (c->json) {
		print_raw(&r);
		fg_httpc_response_free(&r);
		return EXIT_OK;
	}
	json_t *j = answer_json(c, &r);
	fg_httpc_response_free(&r);
	if (!j)
		return EXIT_FAIL;
	printf("imported %s: %lld created, %lld updated\n", strcmp(file, "-") ? file : "stdin",
	       num(j, "created"), num(j, "updated"));
	json_t *toks = json_object_get(j, "node_tokens");
	if (json_object_size(toks)) {
		char url[sizeof(c->server) + 8];
		agent_url(&c->url, url, sizeof(url));
		/* the tokens of new nodes exist only in this answer: print them */
		printf(
		    "\nnew nodes and their tokens (shown only this once); enroll each with\n"
		    "  flowgate agent --server %s --token TOKEN --state /var/lib/flowgate/agent\n"
		    "(use the server's public URL if agents reach it under another name)\n\n",
		    url);
		struct table t = {.ncols = 2};
		const char *name;
		json_t *tok;
		table_add(&t, "NODE", "TOKEN");
		json_object_foreach(toks, name, tok)
		{
			table_add(&t, name, json_string_value(tok));
		}
		table_print(&t);
	}
	json_decref(j);
	return EXIT_OK;
}

/* ---- entry ---------------------------------------------------------------- */

/* Takes the global options out of argv (they may come anywhere before a
 * "--"); the rest is left in order in rest. Returns 0 or the exit status. */
static int take_globals(int argc, char **argv, struct globals *g, char **rest, int *nrest)
{
	*nrest = 0;
	bool dashdash = false;
	for (int i = 1; i < argc;) {
		const char *a = argv[i], *v = NULL;
		if (dashdash || a[0] != '-') {
			rest[(*nrest)++] = argv[i++];
			continue;
		}
		if (strcmp(a, "--") == 0) {
			dashdash = true;
			i++;
			continue;
		}
		int m;
		if ((m = opt_value(argc, argv, &i, "--server", NULL, &v)) != 0) {
			g->server = v;
		} else if ((m = opt_value(argc, argv, &i, "--token", NULL, &v)) != 0) {
			g->token = v;
		} else if ((m = opt_value(argc, argv, &i, "--ca", NULL, &v)) != 0) {
			g->ca = v;
		} else if ((m = opt_value(argc, argv, &i, "--timeout", NULL, &v)) != 0) {
			int64_t s;
			if (m > 0 && (fg_ctl_parse_seconds(v, &s) < 0 || s < 1 || s > 3600))
				return usage_err("--timeout: \"%s\" is not 1-3600 seconds", v);
			if (m > 0)
				g->timeout_s = (int)s;
		} else if (strcmp(a, "--json") == 0) {
			g->json = true;
			i++;
			m = 1;
		} else if (strcmp(a, "--insecure") == 0 || strcmp(a, "-k") == 0) {
			g->insecure = true;
			i++;
			m = 1;
		} else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			g->help = true;
			i++;
			m = 1;
		} else {
			rest[(*nrest)++] = argv[i++]; /* the command's own option */
			m = 1;
		}
		if (m < 0)
			return EXIT_USAGE;
	}
	rest[*nrest] = NULL;
	return 0;
}

/* Server, token and TLS settings from flags, environment and the saved
 * login, in that order. A saved token is only sent to the server it was
 * issued by. */
static int setup(struct ctl *c, const struct globals *g, bool is_login)
{
	char err[512];
	if (fg_ctl_config_path(c->cfg_path, sizeof(c->cfg_path)) == 0) {
		c->have_cfg_path = true;
		struct stat sb;
		if (stat(c->cfg_path, &sb) == 0 && (sb.st_mode & 077))
			fprintf(stderr,
				"flowgate ctl: warning: %s is readable by others (mode %o); it "
				"holds a token: chmod 600 it\n",
				c->cfg_path, (unsigned)(sb.st_mode & 0777));
		/* a damaged file must not block --token / $FLOWGATE_TOKEN, and
		 * login rewrites it */
		if (fg_ctl_config_load(c->cfg_path, &c->cfg, err, sizeof(err)) < 0) {
			if (!is_login)
				fprintf(stderr, "flowgate ctl: warning: ignoring %s\n", err);
			fg_ctl_config_free(&c->cfg);
		}
	}
	const char *srv, *src, *env_srv = getenv("FLOWGATE_SERVER");
	if (g->server) {
		srv = g->server;
		src = "--server";
	} else if (env_srv && *env_srv) {
		srv = env_srv;
		src = "$FLOWGATE_SERVER";
	} else if (c->cfg.server) {
		srv = c->cfg.server;
		src = "the saved login";
	} else {
		srv = DEFAULT_SERVER;
		src = "the default";
	}
	const char *why;
	if (fg_url_parse(srv, &c->url, &why) < 0)
		return usage_err("server URL \"%s\" (from %s): %s", srv, src, why);
	if (c->url.ws)
		return usage_err("server URL \"%s\" (from %s): the API is http:// or https:// "
				 "(ws:// and wss:// are for agents)",
				 srv, src);
	fg_url_format(&c->url, c->server, sizeof(c->server));

	/* the saved login applies only to the server it was made for */
	bool same = false;
	if (c->cfg.server) {
		struct fg_url su;
		char canon[sizeof(c->server)];
		if (fg_url_parse(c->cfg.server, &su, &why) == 0) {
			fg_url_format(&su, canon, sizeof(canon));
			same = strcmp(canon, c->server) == 0;
		}
	}
	const char *env_tok = getenv("FLOWGATE_TOKEN");
	if (g->token) {
		c->token = g->token;
	} else if (env_tok && *env_tok) {
		c->token = env_tok;
	} else if (same && c->cfg.token) {
		c->token = c->cfg.token;
		c->token_saved = true;
	}
	c->hopts.ca_file = g->ca ? g->ca : same ? c->cfg.ca_file : NULL;
	c->hopts.insecure = g->insecure || (same && c->cfg.insecure && !g->ca);
	c->hopts.timeout_ms = (g->timeout_s ? g->timeout_s : 30) * 1000;
	c->json = g->json;
	if (c->hopts.insecure && c->url.tls)
		fprintf(stderr,
			"flowgate ctl: WARNING: TLS certificate checks are OFF (--insecure%s): "
			"anyone on the path to %s can read the token and change what is sent\n",
			g->insecure ? "" : ", saved at login", c->server);
	return 0;
}

int fg_cli_ctl(int argc, char **argv)
{
	struct globals g = {0};
	struct ctl c = {0};
	char **rest = calloc((size_t)argc + 1, sizeof(*rest));
	int nrest, rc;
	if (!rest) {
		say_err("out of memory");
		return EXIT_FAIL;
	}
	/* a server that drops the connection must not kill us silently */
	signal(SIGPIPE, SIG_IGN);
	if ((rc = take_globals(argc, argv, &g, rest, &nrest)))
		goto out;
	if (g.help || nrest == 0 || strcmp(rest[0], "help") == 0) {
		usage(g.help || nrest ? stdout : stderr);
		rc = g.help || nrest ? EXIT_OK : EXIT_USAGE;
		goto out;
	}
	const char *cmd = rest[0];
	if ((rc = setup(&c, &g, strcmp(cmd, "login") == 0)))
		goto out;
	if (strcmp(cmd, "login") == 0)
		rc = cmd_login(&c, &g, nrest, rest);
	else if (strcmp(cmd, "logout") == 0)
		rc = cmd_logout(&c, nrest, rest);
	else if (strcmp(cmd, "whoami") == 0)
		rc = cmd_whoami(&c, nrest, rest);
	else if (strcmp(cmd, "token") == 0 || strcmp(cmd, "tokens") == 0)
		rc = cmd_token(&c, nrest, rest);
	else if (strcmp(cmd, "nodes") == 0 || strcmp(cmd, "node") == 0)
		rc = cmd_nodes(&c, nrest, rest);
	else if (strcmp(cmd, "groups") == 0 || strcmp(cmd, "group") == 0)
		rc = cmd_groups(&c, nrest, rest);
	else if (strcmp(cmd, "forwards") == 0 || strcmp(cmd, "forward") == 0 ||
		 strcmp(cmd, "fwd") == 0)
		rc = cmd_resource(&c, &resources[0], nrest, rest);
	else if (strcmp(cmd, "policies") == 0 || strcmp(cmd, "policy") == 0)
		rc = cmd_resource(&c, &resources[1], nrest, rest);
	else if (strcmp(cmd, "tunnels") == 0 || strcmp(cmd, "tunnel") == 0)
		rc = cmd_resource(&c, &resources[2], nrest, rest);
	else if (strcmp(cmd, "export") == 0)
		rc = cmd_export(&c, nrest, rest);
	else if (strcmp(cmd, "import") == 0)
		rc = cmd_import(&c, nrest, rest);
	else
		rc = usage_err("unknown command \"%s\"", cmd);
out:
	if (fflush(stdout) != 0 && rc == 0) {
		if (errno != EPIPE)
			say_err("writing the output: %s", strerror(errno));
		rc = EXIT_FAIL;
	}
	fg_ctl_config_free(&c.cfg);
	free(rest);
	return rc;
}
