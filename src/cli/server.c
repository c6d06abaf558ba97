/* flowgate server: the control plane on one port — REST API, agent hub,
 * /metrics and the web UI — over a SQLite store in the data directory. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/dir.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/work.h"
#include "net/addr.h"
#include "net/url.h"
#include "server/api.h"
#include "server/auth.h"
#include "server/http.h"
#include "server/hub.h"
#include "server/live.h"
#include "server/secret.h"
#include "server/store.h"

#define MAINT_INTERVAL_NS (60 * 1000000000LL)
/* minute buckets are kept this long, then rolled up into hours */
#define MINUTE_RETENTION_S (48 * 3600)

struct server_app {
	struct fg_loop *loop;
	struct fg_store *st;
	struct fg_work *work;
	struct fg_hub *hub;
	struct fg_live *live;
	struct fg_api *api;
	struct fg_http *http;
	int sfd;
	struct fg_io sig_io;
	struct fg_timer maint;
	struct fg_secret_key secret;
};

static void usage(FILE *f)
{
	fprintf(f, "usage: flowgate server [options]\n\n"
		   "  --listen ADDR        HTTP(S) address for API, agents, UI, metrics\n"
		   "                       (default 127.0.0.1:8080)\n"
		   "  --data DIR           data directory: store, initial admin password\n"
		   "                       (default /var/lib/flowgate/server)\n"
		   "  --tls-cert FILE      serve HTTPS/WSS with this PEM certificate chain\n"
		   "  --tls-key FILE       and this PEM private key\n"
		   "  --web DIR            the built web UI (default: $FLOWGATE_WEB_DIR, or\n"
		   "                       web/dist of the source tree this binary was built in)\n"
		   "  --public-url URL     base URL agents dial (ws://host:port or wss://...),\n"
		   "                       used in enroll commands (default: from the request)\n"
		   "  -v, --verbose        debug logging\n\n"
		   "The first start creates the user admin; its password comes from\n"
		   "$FLOWGATE_ADMIN_PASSWORD or is generated, printed once and written to\n"
		   "DIR/initial-admin-password (mode 0600).\n");
}

static void signal_cb(struct fg_loop *loop, struct fg_io *io, uint32_t events)
{
	struct signalfd_siginfo si;
	while (read(io->fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		if (si.ssi_signo == SIGINT || si.ssi_signo == SIGTERM) {
			fg_info("signal %u: stopping", si.ssi_signo);
			fg_loop_stop(loop);
		}
	}
}

/* Once a minute: roll old minute buckets into hours, drop expired tokens,
 * end the grace period of rotated tunnel keys. */
static void maint_cb(struct fg_loop *loop, struct fg_timer *t)
{
	struct server_app *app = t->data;
	int64_t now = (int64_t)time(NULL);
	int rc = app->st->ops->rollup_hours(app->st, now - MINUTE_RETENTION_S);
	if (rc < 0)
		fg_warn("stats rollup failed: %s", strerror(-rc));
	app->st->ops->token_purge_expired(app->st, now);
	if ((rc = fg_api_tunnel_keys_expire(app->api, now)) < 0)
		fg_warn("tunnel key grace periods: %s", strerror(-rc));
	fg_timer_start(loop, t, MAINT_INTERVAL_NS);
}

/* The UI next to the sources this binary came from, if it was built. */
static const char *default_web_dir(char *buf, size_t len)
{
	const char *env = getenv("FLOWGATE_WEB_DIR");
	if (env && *env)
		return env;
#ifdef FG_SOURCE_DIR
	snprintf(buf, len, "%s/web/dist/index.html", FG_SOURCE_DIR);
	if (access(buf, R_OK) == 0) {
		snprintf(buf, len, "%s/web/dist", FG_SOURCE_DIR);
		return buf;
	}
#endif
	(void)buf;
	(void)len;
	return NULL;
}

static bool listen_is_loopback(const char *listen)
{
	struct fg_endpoint ep;
	const char *why;
	if (fg_endpoint_parse(listen, true, &ep, &why) < 0)
		return false;
	char host[FG_ADDRSTR_MAX];
	fg_addr_format((struct sockaddr *)&ep.ip, host, sizeof(host));
	char *colon = strrchr(host, ':'); /* "1.2.3.4:0" / "[::1]:0" */
	if (colon)
		*colon = 0;
	const char *h = host;
	if (*h == '[') {
		h++;
		host[strlen(host) - 1] = 0;
	}
	return fg_host_is_loopback(h);
}

int fg_cli_server(int argc, char **argv)
{
	enum { O_LISTEN = 256, O_DATA, O_CERT, O_KEY, O_WEB, O_PUBLIC };
	static const struct option longopts[] = {
	    {"listen", required_argument, 0, O_LISTEN},
	    {"data", required_argument, 0, O_DATA},
	    {"tls-cert", required_argument, 0, O_CERT},
	    {"tls-key", required_argument, 0, O_KEY},
	    {"web", required_argument, 0, O_WEB},
	    {"public-url", required_argument, 0, O_PUBLIC},
	    {"verbose", no_argument, 0, 'v'},
	    {"help", no_argument, 0, 'h'},
	    {0, 0, 0, 0},
	};
	const char *listen = "127.0.0.1:8080", *data = "/var/lib/flowgate/server";
	const char *cert = NULL, *key = NULL, *web = NULL, *public_url = NULL;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "vh", longopts, NULL)) != -1) {
		switch (c) {
		case O_LISTEN: listen = optarg; break;
		case O_DATA: data = optarg; break;
		case O_CERT: cert = optarg; break;
		case O_KEY: key = optarg; break;
		case O_WEB: web = optarg; break;
		case O_PUBLIC: public_url = optarg; break;
		case 'v': fg_log_set_level(FG_LOG_DEBUG); break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "flowgate server: unexpected argument \"%s\"\n", argv[optind]);
		return 2;
	}
	if (public_url && strncmp(public_url, "ws://", 5) && strncmp(public_url, "wss://", 6)) {
		fprintf(stderr,
			"flowgate server: --public-url \"%s\": must start with ws:// or wss://\n",
			public_url);
		return 2;
	}
	char webbuf[PATH_MAX];
	if (!web)
		web = default_web_dir(webbuf, sizeof(webbuf));
	else if (access(web, R_OK) < 0) {
		fprintf(stderr, "flowgate server: --web %s: %s\n", web, strerror(errno));
		return 2;
	}

	struct server_app app = {.sfd = -1};
	fg_io_init(&app.sig_io);
	int rc = 1;
	char err[512], path[PATH_MAX];
	sigset_t mask;
	fg_cli_process_setup(&mask);

	if (fg_auth_init() < 0) {
		fprintf(stderr, "flowgate server: libsodium failed to initialise\n");
		goto out;
	}
	int e = fg_dir_make(data);
	if (e < 0) {
		fprintf(stderr, "flowgate server: --data %s: %s\n", data, strerror(-e));
		rc = 2;
		goto out;
	}
	/* the key that seals tunnel PSKs in the store: made at first start */
	e = fg_secret_key_load(data, &app.secret, err, sizeof(err));
	if (e < 0) {
		fprintf(stderr, "flowgate server: %s\n", err);
		goto out;
	}
	if (e == 1)
		fg_info("created %s/" FG_SECRET_KEY_FILE " (it seals tunnel keys: back it up with "
			"the database)",
			data);
	snprintf(path, sizeof(path), "%s/flowgate.db", data);
	e = fg_store_sqlite_open(path, &app.st);
	if (e < 0) {
		fprintf(stderr, "flowgate server: store %s: %s\n", path,
			e == -ENOTSUP ? "written by a newer flowgate" : strerror(-e));
		goto out;
	}
	char generated[64];
	e = fg_auth_bootstrap_admin(app.st, data, generated, sizeof(generated));
	if (e < 0) {
		fprintf(stderr, "flowgate server: creating the admin user: %s\n",
			e == -EINVAL ? "$" FG_AUTH_ADMIN_ENV " must have at least 8 characters"
				     : strerror(-e));
		rc = e == -EINVAL ? 2 : 1;
		goto out;
	}
	if (e == 1)
		printf("flowgate server: created user admin with password %s\n"
		       "  (also in %s/" FG_AUTH_ADMIN_FILE "; it is shown only once)\n",
		       generated, data);
	memset(generated, 0, sizeof(generated));

	app.loop = fg_loop_new();
	app.work = app.loop ? fg_work_new(app.loop, 32) : NULL;
	struct fg_hub_opts hopts = {.secret = &app.secret};
	app.hub = app.work ? fg_hub_new(app.loop, app.st, &hopts) : NULL;
	app.live = app.hub ? fg_live_new(app.loop, app.hub) : NULL;
	struct fg_api_opts ao = {
	    .web_dir = web, .public_url = public_url, .live = app.live, .secret = &app.secret};
	app.api = app.live ? fg_api_new(app.loop, app.st, app.hub, app.work, &ao) : NULL;
	if (!app.api) {
		fprintf(stderr, "flowgate server: out of memory or threads\n");
		goto out;
	}
	struct fg_http_opts ho = {.listen = listen, .tls_cert = cert, .tls_key = key};
	app.http = fg_http_new(app.loop, &ho, fg_api_handle, app.api, err, sizeof(err));
	if (!app.http) {
		fprintf(stderr, "flowgate server: %s\n", err);
		rc = 2;
		goto out;
	}
	fg_api_set_tls(app.api, fg_http_is_tls(app.http));
	if (!fg_http_is_tls(app.http) && !listen_is_loopback(listen))
		fg_warn("serving plain HTTP on %s: passwords, tokens and node tokens travel "
			"unencrypted; give --tls-cert/--tls-key outside a trusted network",
			listen);
	app.sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (app.sfd < 0 ||
	    fg_io_start(app.loop, &app.sig_io, app.sfd, FG_IO_READ, signal_cb, &app) < 0) {
		fprintf(stderr, "flowgate server: signalfd: %s\n", strerror(errno));
		goto out;
	}
	fg_timer_init(&app.maint, maint_cb, &app);
	fg_timer_start(app.loop, &app.maint, 0);
	fg_info("flowgate server %s: listening on %s://%s (store %s%s%s)", FG_VERSION,
		fg_http_is_tls(app.http) ? "https" : "http", listen, path, web ? ", web UI " : "",
		web ? web : "");
	fflush(stdout);
	rc = fg_loop_run(app.loop) < 0 ? 1 : 0;
out:
	if (app.loop)
		fg_timer_stop(app.loop, &app.maint);
	/* sessions first: their HTTP sides are released by deferred calls,
	 * which one more loop pass delivers */
	fg_live_free(app.live);
	fg_hub_free(app.hub);
	if (app.loop) {
		fg_loop_stop(app.loop);
		fg_loop_run(app.loop);
	}
	fg_work_free(app.work);
	fg_http_free(app.http);
	fg_api_free(app.api);
	if (app.sfd >= 0) {
		fg_io_stop(app.loop, &app.sig_io);
		close(app.sfd);
	}
	fg_loop_free(app.loop);
	fg_store_close(app.st);
	explicit_bzero(&app.secret, sizeof(app.secret));
	return rc;
}
