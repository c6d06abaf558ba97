/* `flowgate ctl`: the pure parts (saved login, argument -> request body,
 * time and duration arguments), kept apart from the command code so unit
 * tests can reach them. ctl.c holds the commands; ctl_args.c these. */
#ifndef FG_CLI_CTL_H
#define FG_CLI_CTL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What `ctl login` saves (~/.config/flowgate/ctl.json). Strings owned,
 * NULL when absent. */
struct fg_ctl_config {
	char *server;	/* canonical URL the token belongs to */
	char *token;	/* session or API token: a secret */
	char *username; /* who logged in, for messages */
	char *ca_file;	/* --ca given at login, reused for this server */
	bool insecure;	/* --insecure given at login, reused (with a warning) */
};

/* $XDG_CONFIG_HOME/flowgate/ctl.json, else $HOME/.config/flowgate/ctl.json.
 * Returns 0, -ENOENT when neither variable is set, -ENAMETOOLONG. */
int fg_ctl_config_path(char *out, size_t len);
/* Reads the file; a missing file is an empty config (returns 0). Returns
 * -errno / -EINVAL with a reason in err. A file readable by others is
 * still read (ctl warns) since refusing would only lock the user out. */
int fg_ctl_config_load(const char *path, struct fg_ctl_config *c, char *err, size_t errlen);
/* Writes the file atomically (temp file + rename) with mode 0600, creating
 * its directory with mode 0700 (and tightening it to 0700 if looser).
 * Returns 0 or -errno with a reason in err. */
int fg_ctl_config_save(const char *path, const struct fg_ctl_config *c, char *err, size_t errlen);
/* Frees the strings (the token is wiped first) and zeroes c. */
void fg_ctl_config_free(struct fg_ctl_config *c);

/* A count of seconds: "90", "90s", "15m", "12h", "30d", "2w". Returns 0,
 * -EINVAL, -ERANGE (more than 100 years). */
int fg_ctl_parse_seconds(const char *s, int64_t *out);
/* A point in time for stats: "now", Unix seconds ("1795333651"), a
 * duration meaning that long before now ("2h", "7d"), or UTC
 * "2026-11-22T07:00[:00][Z]" / "2026-11-22". Returns 0 or -EINVAL. */
int fg_ctl_parse_time(const char *s, int64_t now, int64_t *out);

/* The request body of `forwards create` / `forwards update` from their
 * arguments. argv[0] is the subcommand ("create"/"update"); options are
 * the forward's flags, -f FILE (a JSON object, "-" = stdin) as the base
 * that flags override, --unset FIELD. update takes one positional REF
 * (*ref points into argv), create none. For create without -f the name,
 * node or group, listen and target are required. update sends only what
 * is given, with null for --unset fields (the API removes them).
 * Returns 0 with *body (owned by the caller), or -EINVAL with a one-line
 * reason naming the flag in err. Uses getopt: not reentrant. */
int fg_ctl_forward_body(int argc, char **argv, bool update, json_t **body, const char **ref,
			char *err, size_t errlen);
/* The same for `tunnels create` / `tunnels update`: --name, the entry
 * (--node or --group, --listen), --hop (repeat), --exit (once: "exit";
 * several: "exits"), --target, --transport, --mux/--no-mux, --direction,
 * --link-port, --ws-path, --ws-host, --balance, --rate-up, --rate-down,
 * --max-conns, --max-conns-per-ip, --connect-timeout, --idle-timeout,
 * --enabled/--disabled, -f FILE, --unset FIELD. create without -f needs
 * the name, the entry node or group, listen, an exit and the target. */
int fg_ctl_tunnel_body(int argc, char **argv, bool update, json_t **body, const char **ref,
		       char *err, size_t errlen);
/* The flag that sets an API field ("rate_up" -> "--rate-up",
 * "entry.listen" -> "--listen", "targets[1]" -> "--target"), or NULL. */
const char *fg_ctl_field_flag(const char *field);

/* Writes s to out percent-encoded for a path segment or query value
 * (everything but A-Z a-z 0-9 - . _ ~). Returns 0 or -ENOSPC. */
int fg_ctl_path_escape(const char *s, char *out, size_t len);

#endif
