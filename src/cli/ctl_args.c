/* `flowgate ctl`: saved login, arguments -> request bodies, times. Pure
 * apart from the config file's I/O (see ctl.h). */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/ctl.h"
#include "core/dir.h"
#include "core/units.h"
#include "core/util.h"

#define CONFIG_MAX (64 * 1024)

/* ---- the saved login ------------------------------------------------------ */

int fg_ctl_config_path(char *out, size_t len)
{
	const char *xdg = getenv("XDG_CONFIG_HOME");
	const char *home = getenv("HOME");
	int n;
	/* the XDG spec: a relative $XDG_CONFIG_HOME is invalid and ignored */
	if (xdg && xdg[0] == '/')
		n = snprintf(out, len, "%s/flowgate/ctl.json", xdg);
	else if (home && home[0])
		n = snprintf(out, len, "%s/.config/flowgate/ctl.json", home);
	else
		return -ENOENT;
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

static char *dup_string(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);
	return json_is_string(v) && json_string_length(v) ? strdup(json_string_value(v)) : NULL;
}

int fg_ctl_config_load(const char *path, struct fg_ctl_config *c, char *err, size_t errlen)
{
	memset(c, 0, sizeof(*c));
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		int rc = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return rc;
	}
	char *buf = malloc(CONFIG_MAX + 1);
	size_t len = 0;
	ssize_t n;
	if (!buf) {
		close(fd);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	while (len < CONFIG_MAX && (n = read(fd, buf + len, CONFIG_MAX - len)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int rc = -errno;
			snprintf(err, errlen, "%s: %s", path, strerror(errno));
			close(fd);
			free(buf);
			return rc;
		}
		len += (size_t)n;
	}
	close(fd);
	json_error_t je;
	json_t *j = json_loadb(buf, len, 0, &je);
	memset(buf, 0, len);
	free(buf);
	if (!j || !json_is_object(j)) {
		snprintf(err, errlen, "%s: not a JSON object%s%s (log in again to rewrite it)",
			 path, j ? "" : ": ", j ? "" : je.text);
		json_decref(j);
		return -EINVAL;
	}
	c->server = dup_string(j, "server");
	c->token = dup_string(j, "token");
	c->username = dup_string(j, "username");
	c->ca_file = dup_string(j, "ca");
	c->insecure = json_is_true(json_object_get(j, "insecure"));
	json_decref(j);
	return 0;
}

/* The directory a credentials file goes in: ours alone (core/dir.h). */
static int make_parent(const char *file, char *err, size_t errlen)
{
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s", file);
	char *slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return 0;
	*slash = 0;
	int rc = fg_dir_make(dir);
	if (rc < 0)
		snprintf(err, errlen, "cannot create %s: %s", dir, strerror(-rc));
	return rc;
}

int fg_ctl_config_save(const char *path, const struct fg_ctl_config *c, char *err, size_t errlen)
{
	int rc = make_parent(path, err, errlen);
	if (rc < 0)
		return rc;
	json_t *j = json_object();
	if (c->server)
		json_object_set_new(j, "server", json_string(c->server));
	if (c->username)
		json_object_set_new(j, "username", json_string(c->username));
	if (c->token)
		json_object_set_new(j, "token", json_string(c->token));
	if (c->ca_file)
		json_object_set_new(j, "ca", json_string(c->ca_file));
	if (c->insecure)
		json_object_set_new(j, "insecure", json_true());
	char *s = json_dumps(j, JSON_INDENT(2));
	json_decref(j);
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	char tmp[PATH_MAX];
	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof(tmp)) {
		free(s);
		snprintf(err, errlen, "%s: path too long", path);
		return -ENAMETOOLONG;
	}
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
		goto out;
	}
	size_t len = strlen(s), off = 0;
	/* O_CREAT's mode does not apply to a file left over by a crash */
	if (fchmod(fd, 0600) < 0)
		rc = -errno;
	while (rc == 0 && off < len) {
		ssize_t n = write(fd, s + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			rc = -errno;
		else
			off += (size_t)n;
	}
	if (rc == 0 && (write(fd, "\n", 1) != 1 || fsync(fd) < 0))
		rc = -errno;
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
	if (rc == 0 && rename(tmp, path) < 0)
		rc = -errno;
	if (rc < 0) {
		snprintf(err, errlen, "cannot write %s: %s", path, strerror(-rc));
		unlink(tmp);
	}
out:
	memset(s, 0, strlen(s));
	free(s);
	return rc;
}

static void free_secret(char *s)
{
	if (s) {
		memset(s, 0, strlen(s));
		free(s);
	}
}

void fg_ctl_config_free(struct fg_ctl_config *c)
{
	free(c->server);
	free_secret(c->token);
	free(c->username);
	free(c->ca_file);
	memset(c, 0, sizeof(*c));
}

/* ---- times ------------------------------------------------------------------ */

int fg_ctl_parse_seconds(const char *s, int64_t *out)
{
	char *end;
	if (!s || !isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno)
		return -ERANGE;
	uint64_t mul;
	if (*end == 0 || strcmp(end, "s") == 0)
		mul = 1;
	else if (strcmp(end, "m") == 0 || strcmp(end, "min") == 0)
		mul = 60;
	else if (strcmp(end, "h") == 0)
		mul = 3600;
	else if (strcmp(end, "d") == 0)
		mul = 86400;
	else if (strcmp(end, "w") == 0)
		mul = 7 * 86400;
	else
		return -EINVAL;
	const uint64_t max = 100ULL * 366 * 86400;
	if (v > max / mul)
		return -ERANGE;
	*out = (int64_t)(v * mul);
	return 0;
}

int fg_ctl_parse_time(const char *s, int64_t now, int64_t *out)
{
	if (strcmp(s, "now") == 0) {
		*out = now;
		return 0;
	}
	bool digits = *s != 0;
	for (const char *p = s; *p; p++)
		digits &= isdigit((unsigned char)*p) != 0;
	if (digits) {
		errno = 0;
		long long v = strtoll(s, NULL, 10);
		if (errno)
			return -EINVAL;
		*out = v;
		return 0;
	}
	int64_t ago;
	if (fg_ctl_parse_seconds(s, &ago) == 0) {
		*out = now - ago;
		return 0;
	}
	static const char *const formats[] = {
	    "%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%MZ", "%Y-%m-%dT%H:%M",
	    "%Y-%m-%d %H:%M:%S",  "%Y-%m-%d %H:%M",    "%Y-%m-%d"};
	for (size_t i = 0; i < FG_ARRAY_LEN(formats); i++) {
		struct tm tm = {0};
		const char *e = strptime(s, formats[i], &tm);
		if (e && *e == 0) {
			*out = (int64_t)timegm(&tm);
			return 0;
		}
	}
	return -EINVAL;
}

/* ---- forward bodies ----------------------------------------------------------- */

static const struct {
	const char *field, *flag;
} field_flags[] = {
    {"name", "--name"},
    {"node", "--node"},
    {"group", "--group"},
    {"listen", "--listen"},
    {"targets", "--target"},
    {"proto", "--proto"},
    {"balance", "--balance"},
    {"rate_up", "--rate-up"},
    {"rate_down", "--rate-down"},
    {"rate_up_per_conn", "--rate-up-per-conn"},
    {"rate_down_per_conn", "--rate-down-per-conn"},
    {"burst", "--burst"},
    {"max_conns", "--max-conns"},
    {"max_conns_per_ip", "--max-conns-per-ip"},
    {"proxy_protocol", "--proxy-protocol"},
    {"health_check", "--health-check"},
    {"connect_timeout", "--connect-timeout"},
    {"idle_timeout", "--idle-timeout"},
    {"udp_idle_timeout", "--udp-idle-timeout"},
    {"enabled", "--enabled/--disabled"},
    /* tunnels */
    {"entry.node", "--node"},
    {"entry.group", "--group"},
    {"entry.listen", "--listen"},
    {"entry", "--node/--group/--listen"},
    {"hops", "--hop"},
    {"exit", "--exit"},
    {"exits", "--exit"},
    {"target", "--target"},
    {"transport", "--transport"},
    {"mux", "--mux/--no-mux"},
    {"direction", "--direction"},
    {"link_port", "--link-port"},
    {"ws_path", "--ws-path"},
    {"ws_host", "--ws-host"},
};

const char *fg_ctl_field_flag(const char *field)
{
	/* "targets[1]", "hops[0]": the option of the list */
	char base[64];
	snprintf(base, sizeof(base), "%.*s", (int)strcspn(field, "["), field);
	for (size_t i = 0; i < FG_ARRAY_LEN(field_flags); i++)
		if (strcmp(field_flags[i].field, base) == 0)
			return field_flags[i].flag;
	return NULL;
}

/* A JSON object from a file ("-" = stdin). */
static json_t *load_object(const char *path, char *err, size_t errlen)
{
	json_error_t je;
	json_t *j = strcmp(path, "-") == 0 ? json_loadf(stdin, JSON_REJECT_DUPLICATES, &je)
					   : json_load_file(path, JSON_REJECT_DUPLICATES, &je);
	if (!j) {
		if (je.line > 0)
			snprintf(err, errlen, "%s: line %d column %d: %s", path, je.line, je.column,
				 je.text);
		else
			snprintf(err, errlen, "%s: %s", path, je.text);
		return NULL;
	}
	if (!json_is_object(j)) {
		snprintf(err, errlen, "%s: must hold one JSON object", path);
		json_decref(j);
		return NULL;
	}
	return j;
}

/* A count goes in as a JSON integer, anything else as a string the API
 * validates and names. */
static json_t *count_value(const char *s)
{
	char *end;
	errno = 0;
	long long n = strtoll(s, &end, 10);
	return errno || *end || end == s ? json_string(s) : json_integer(n);
}

/* --unset takes the field's name or its flag's spelling (rate-up). */
static void field_spelling(const char *arg, char *out, size_t len)
{
	snprintf(out, len, "%s", arg);
	for (char *p = out; *p; p++)
		if (*p == '-')
			*p = '_';
}

/* After the options of "KIND create|update": update names exactly one
 * object (returned in *ref), create none (its name is --name). */
static int positionals(const char *kind, const char *one, bool update, int argc, char **argv,
		       const char **ref, char *err, size_t errlen)
{
	int npos = argc - optind;
	if (update && npos != 1) {
		snprintf(err, errlen, "%s update: give exactly one %s (name or id)%s", kind, one,
			 npos > 1 ? "; options come as --flag VALUE" : "");
		return -EINVAL;
	}
	if (!update && npos != 0) {
		snprintf(err, errlen,
			 "%s create: unexpected argument \"%s\" (the name is --name NAME)", kind,
			 argv[optind]);
		return -EINVAL;
	}
	if (update)
		*ref = argv[optind];
	return 0;
}

int fg_ctl_forward_body(int argc, char **argv, bool update, json_t **body, const char **ref,
			char *err, size_t errlen)
{
	enum {
		O_NAME = 256,
		O_NODE,
		O_GROUP,
		O_LISTEN,
		O_TARGET,
		O_PROTO,
		O_BALANCE,
		O_RATE_UP,
		O_RATE_DOWN,
		O_RATE_UP_CONN,
		O_RATE_DOWN_CONN,
		O_BURST,
		O_MAX_CONNS,
		O_MAX_PER_IP,
		O_PP,
		O_HC,
		O_CTO,
		O_ITO,
		O_UTO,
		O_ENABLED,
		O_DISABLED,
		O_UNSET,
	};
	static const struct option opts[] = {
	    {"name", required_argument, 0, O_NAME},
	    {"node", required_argument, 0, O_NODE},
	    {"group", required_argument, 0, O_GROUP},
	    {"listen", required_argument, 0, O_LISTEN},
	    {"target", required_argument, 0, O_TARGET},
	    {"proto", required_argument, 0, O_PROTO},
	    {"balance", required_argument, 0, O_BALANCE},
	    {"rate-up", required_argument, 0, O_RATE_UP},
	    {"rate-down", required_argument, 0, O_RATE_DOWN},
	    {"rate-up-per-conn", required_argument, 0, O_RATE_UP_CONN},
	    {"rate-down-per-conn", required_argument, 0, O_RATE_DOWN_CONN},
	    {"burst", required_argument, 0, O_BURST},
	    {"max-conns", required_argument, 0, O_MAX_CONNS},
	    {"max-conns-per-ip", required_argument, 0, O_MAX_PER_IP},
	    {"proxy-protocol", required_argument, 0, O_PP},
	    {"health-check", required_argument, 0, O_HC},
	    {"connect-timeout", required_argument, 0, O_CTO},
	    {"idle-timeout", required_argument, 0, O_ITO},
	    {"udp-idle-timeout", required_argument, 0, O_UTO},
	    {"enabled", no_argument, 0, O_ENABLED},
	    {"disabled", no_argument, 0, O_DISABLED},
	    {"unset", required_argument, 0, O_UNSET},
	    {"file", required_argument, 0, 'f'},
	    {0, 0, 0, 0},
	};
	json_t *flags = json_object(), *targets = json_array(), *unset = json_array();
	const char *file = NULL;
	int c, rc = -EINVAL;
	*body = NULL;
	*ref = NULL;
	opterr = 0;
	optind = 0; /* GNU: re-initialise, so one process may parse twice */
	while ((c = getopt_long(argc, argv, ":f:", opts, NULL)) != -1) {
		const char *key = NULL;
		json_t *val = NULL;
		switch (c) {
		case 'f': file = optarg; break;
		case O_NAME: key = "name"; break;
		case O_NODE: key = "node"; break;
		case O_GROUP: key = "group"; break;
		case O_LISTEN: key = "listen"; break;
		case O_TARGET: json_array_append_new(targets, json_string(optarg)); break;
		case O_PROTO: key = "proto"; break;
		case O_BALANCE: key = "balance"; break;
		case O_RATE_UP: key = "rate_up"; break;
		case O_RATE_DOWN: key = "rate_down"; break;
		case O_RATE_UP_CONN: key = "rate_up_per_conn"; break;
		case O_RATE_DOWN_CONN: key = "rate_down_per_conn"; break;
		case O_BURST: key = "burst"; break;
		case O_MAX_CONNS:
			key = "max_conns";
			val = count_value(optarg);
			break;
		case O_MAX_PER_IP:
			key = "max_conns_per_ip";
			val = count_value(optarg);
			break;
		case O_PP: key = "proxy_protocol"; break;
		case O_HC: {
			/* like `flowgate forward --health-check`: the timeout
			 * follows the interval, half of it, at most 2 s */
			key = "health_check";
			val = json_object();
			json_object_set_new(val, "interval", json_string(optarg));
			int64_t ns;
			if (fg_parse_duration(optarg, &ns) == 0 && ns > 0) {
				char t[32];
				snprintf(t, sizeof(t), "%lldms",
					 (long long)FG_MIN(ns / 2, 2000000000LL) / 1000000);
				json_object_set_new(val, "timeout", json_string(t));
			}
			break;
		}
		case O_CTO: key = "connect_timeout"; break;
		case O_ITO: key = "idle_timeout"; break;
		case O_UTO: key = "udp_idle_timeout"; break;
		case O_ENABLED:
			key = "enabled";
			val = json_true();
			break;
		case O_DISABLED:
			key = "enabled";
			val = json_false();
			break;
		case O_UNSET: {
			const char *f = optarg;
			/* accept the flag spelling too: --unset rate-up */
			char fb[64];
			field_spelling(f, fb, sizeof(fb));
			if (!fg_ctl_field_flag(fb) || strcmp(fb, "name") == 0 ||
			    strcmp(fb, "listen") == 0 || strcmp(fb, "targets") == 0 ||
			    strcmp(fb, "node") == 0 || strcmp(fb, "group") == 0) {
				snprintf(err, errlen,
					 "--unset: \"%s\" is not an optional forward field (e.g. "
					 "rate_up, max_conns, proxy_protocol, health_check)",
					 f);
				goto out;
			}
			json_array_append_new(unset, json_string(fb));
			break;
		}
		case ':': snprintf(err, errlen, "%s: needs a value", argv[optind - 1]); goto out;
		default:
			snprintf(err, errlen, "unknown option \"%s\" for forwards %s",
				 argv[optind - 1], argv[0]);
			goto out;
		}
		if (key)
			json_object_set_new(flags, key, val ? val : json_string(optarg));
	}
	if (positionals("forwards", "forward", update, argc, argv, ref, err, errlen))
		goto out;
	if (json_object_get(flags, "node") && json_object_get(flags, "group")) {
		snprintf(err, errlen,
			 "--node and --group: a forward runs on one node or one group");
		goto out;
	}
	json_t *b = NULL;
	if (file && !(b = load_object(file, err, errlen)))
		goto out;
	if (!b)
		b = json_object();
	/* flags override the file; naming the node drops the file's group and
	 * the other way round */
	if (json_object_get(flags, "node"))
		json_object_del(b, "group");
	if (json_object_get(flags, "group"))
		json_object_del(b, "node");
	json_object_update(b, flags);
	if (json_array_size(targets))
		json_object_set(b, "targets", targets);
	size_t i;
	json_t *u;
	json_array_foreach(unset, i, u)
	{
		if (update)
			json_object_set_new(b, json_string_value(u), json_null());
		else
			json_object_del(b, json_string_value(u));
	}
	if (!update) {
		const char *missing = !json_object_get(b, "name") ? "--name NAME"
				      : !json_object_get(b, "node") && !json_object_get(b, "group")
					  ? "--node NODE or --group GROUP"
				      : !json_object_get(b, "listen")  ? "--listen ADDR"
				      : !json_object_get(b, "targets") ? "--target HOST:PORT"
								       : NULL;
		if (missing) {
			snprintf(err, errlen, "forwards create: %s is required%s", missing,
				 file ? " (not in the file either)" : "");
			json_decref(b);
			goto out;
		}
	} else if (json_object_size(b) == 0) {
		snprintf(err, errlen,
			 "forwards update: nothing to change (give options or -f FILE)");
		json_decref(b);
		goto out;
	}
	*body = b;
	rc = 0;
out:
	json_decref(flags);
	json_decref(targets);
	json_decref(unset);
	return rc;
}

/* ---- tunnel bodies ------------------------------------------------------------ */

int fg_ctl_tunnel_body(int argc, char **argv, bool update, json_t **body, const char **ref,
		       char *err, size_t errlen)
{
	enum {
		O_NAME = 256,
		O_NODE,
		O_GROUP,
		O_LISTEN,
		O_HOP,
		O_EXIT,
		O_TARGET,
		O_BALANCE,
		O_TRANSPORT,
		O_MUX,
		O_NO_MUX,
		O_DIRECTION,
		O_LINK_PORT,
		O_WS_PATH,
		O_WS_HOST,
		O_RATE_UP,
		O_RATE_DOWN,
		O_MAX_CONNS,
		O_MAX_PER_IP,
		O_CTO,
		O_ITO,
		O_ENABLED,
		O_DISABLED,
		O_UNSET,
	};
	static const struct option opts[] = {
	    {"name", required_argument, 0, O_NAME},
	    {"node", required_argument, 0, O_NODE},
	    {"group", required_argument, 0, O_GROUP},
	    {"listen", required_argument, 0, O_LISTEN},
	    {"hop", required_argument, 0, O_HOP},
	    {"exit", required_argument, 0, O_EXIT},
	    {"target", required_argument, 0, O_TARGET},
	    {"balance", required_argument, 0, O_BALANCE},
	    {"transport", required_argument, 0, O_TRANSPORT},
	    {"mux", no_argument, 0, O_MUX},
	    {"no-mux", no_argument, 0, O_NO_MUX},
	    {"direction", required_argument, 0, O_DIRECTION},
	    {"link-port", required_argument, 0, O_LINK_PORT},
	    {"ws-path", required_argument, 0, O_WS_PATH},
	    {"ws-host", required_argument, 0, O_WS_HOST},
	    {"rate-up", required_argument, 0, O_RATE_UP},
	    {"rate-down", required_argument, 0, O_RATE_DOWN},
	    {"max-conns", required_argument, 0, O_MAX_CONNS},
	    {"max-conns-per-ip", required_argument, 0, O_MAX_PER_IP},
	    {"connect-timeout", required_argument, 0, O_CTO},
	    {"idle-timeout", required_argument, 0, O_ITO},
	    {"enabled", no_argument, 0, O_ENABLED},
	    {"disabled", no_argument, 0, O_DISABLED},
	    {"unset", required_argument, 0, O_UNSET},
	    {"file", required_argument, 0, 'f'},
	    {0, 0, 0, 0},
	};
	/* optional fields --unset may remove (the API's defaults apply again) */
	static const char *const optional[] = {
	    "hops",
	    "balance",
	    "transport",
	    "mux",
	    "ws_path",
	    "ws_host",
	    "direction",
	    "link_port",
	    "links",
	    "rate_up",
	    "rate_down",
	    "max_conns",
	    "max_conns_per_ip",
	    "connect_timeout",
	    "idle_timeout",
	};
	json_t *flags = json_object(), *entry = json_object(), *hops = json_array(),
	       *exits = json_array(), *unset = json_array();
	const char *file = NULL;
	int c, rc = -EINVAL;
	*body = NULL;
	*ref = NULL;
	opterr = 0;
	optind = 0; /* GNU: re-initialise, so one process may parse twice */
	while ((c = getopt_long(argc, argv, ":f:", opts, NULL)) != -1) {
		const char *key = NULL;
		json_t *val = NULL;
		switch (c) {
		case 'f': file = optarg; break;
		case O_NAME: key = "name"; break;
		case O_NODE: json_object_set_new(entry, "node", json_string(optarg)); break;
		case O_GROUP: json_object_set_new(entry, "group", json_string(optarg)); break;
		case O_LISTEN: json_object_set_new(entry, "listen", json_string(optarg)); break;
		case O_HOP: json_array_append_new(hops, json_string(optarg)); break;
		case O_EXIT: json_array_append_new(exits, json_string(optarg)); break;
		case O_TARGET: key = "target"; break;
		case O_BALANCE: key = "balance"; break;
		case O_TRANSPORT: key = "transport"; break;
		case O_MUX:
		case O_NO_MUX:
			key = "mux";
			val = json_boolean(c == O_MUX);
			break;
		case O_DIRECTION: key = "direction"; break;
		case O_LINK_PORT:
			key = "link_port";
			val = count_value(optarg);
			break;
		case O_WS_PATH: key = "ws_path"; break;
		case O_WS_HOST: key = "ws_host"; break;
		case O_RATE_UP: key = "rate_up"; break;
		case O_RATE_DOWN: key = "rate_down"; break;
		case O_MAX_CONNS:
			key = "max_conns";
			val = count_value(optarg);
			break;
		case O_MAX_PER_IP:
			key = "max_conns_per_ip";
			val = count_value(optarg);
			break;
		case O_CTO: key = "connect_timeout"; break;
		case O_ITO: key = "idle_timeout"; break;
		case O_ENABLED:
		case O_DISABLED:
			key = "enabled";
			val = json_boolean(c == O_ENABLED);
			break;
		case O_UNSET: {
			char fb[64];
			bool ok = false;
			field_spelling(optarg, fb, sizeof(fb));
			for (size_t i = 0; i < FG_ARRAY_LEN(optional); i++)
				ok |= strcmp(optional[i], fb) == 0;
			if (!ok) {
				snprintf(err, errlen,
					 "--unset: \"%s\" is not an optional tunnel field (e.g. "
					 "rate_up, max_conns, hops, link_port)",
					 optarg);
				goto out;
			}
			json_array_append_new(unset, json_string(fb));
			break;
		}
		case ':': snprintf(err, errlen, "%s: needs a value", argv[optind - 1]); goto out;
		default:
			snprintf(err, errlen, "unknown option \"%s\" for tunnels %s",
				 argv[optind - 1], argv[0]);
			goto out;
		}
		if (key)
			json_object_set_new(flags, key, val ? val : json_string(optarg));
	}
	if (positionals("tunnels", "tunnel", update, argc, argv, ref, err, errlen))
		goto out;
	if (json_object_get(entry, "node") && json_object_get(entry, "group")) {
		snprintf(err, errlen,
			 "--node and --group: a tunnel enters at one node or one group");
		goto out;
	}
	json_t *b = NULL;
	if (file && !(b = load_object(file, err, errlen)))
		goto out;
	if (!b)
		b = json_object();
	json_object_update(b, flags);
	if (json_object_size(entry)) {
		/* the entry merges: --listen alone keeps the file's node (and
		 * on update the server merges it into the stored entry) */
		json_t *fe = json_object_get(b, "entry");
		if (json_is_object(fe)) {
			if (json_object_get(entry, "node"))
				json_object_del(fe, "group");
			if (json_object_get(entry, "group"))
				json_object_del(fe, "node");
			json_object_update(fe, entry);
		} else {
			json_object_set(b, "entry", entry);
		}
	}
	if (json_array_size(hops))
		json_object_set(b, "hops", hops);
	if (json_array_size(exits) == 1) {
		json_object_del(b, "exits");
		json_object_set(b, "exit", json_array_get(exits, 0));
	} else if (json_array_size(exits) > 1) {
		json_object_del(b, "exit");
		json_object_set(b, "exits", exits);
	}
	size_t i;
	json_t *u;
	json_array_foreach(unset, i, u)
	{
		if (update)
			json_object_set_new(b, json_string_value(u), json_null());
		else
			json_object_del(b, json_string_value(u));
	}
	if (!update) {
		json_t *e = json_object_get(b, "entry");
		const char *missing = !json_object_get(b, "name") ? "--name NAME"
				      : !json_object_get(e, "node") && !json_object_get(e, "group")
					  ? "--node NODE or --group GROUP (the entry)"
				      : !json_object_get(e, "listen") ? "--listen ADDR"
				      : !json_object_get(b, "exit") && !json_object_get(b, "exits")
					  ? "--exit NODE"
				      : !json_object_get(b, "target") ? "--target HOST:PORT"
								      : NULL;
		if (missing) {
			snprintf(err, errlen, "tunnels create: %s is required%s", missing,
				 file ? " (not in the file either)" : "");
			json_decref(b);
			goto out;
		}
	} else if (json_object_size(b) == 0) {
		snprintf(err, errlen,
			 "tunnels update: nothing to change (give options or -f FILE)");
		json_decref(b);
		goto out;
	}
	*body = b;
	rc = 0;
out:
	json_decref(flags);
	json_decref(entry);
	json_decref(hops);
	json_decref(exits);
	json_decref(unset);
	return rc;
}

/* ---- paths ---------------------------------------------------------------------- */

int fg_ctl_path_escape(const char *s, char *out, size_t len)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		bool plain = isalnum(*p) || *p == '-' || *p == '.' || *p == '_' || *p == '~';
		size_t need = plain ? 1 : 3;
		if (o + need >= len)
			return -ENOSPC;
		if (plain) {
			out[o++] = (char)*p;
		} else {
			out[o++] = '%';
			out[o++] = hex[*p >> 4];
			out[o++] = hex[*p & 15];
		}
	}
	if (o >= len)
		return -ENOSPC;
	out[o] = 0;
	return 0;
}
