/* `flowgate forward`: the engine with no server, from flags or a file. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/alloc.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/units.h"
#include "core/util.h"
#include "fwd/config.h"
#include "fwd/engine.h"
#include "kernel/kfwd.h"
#include "net/httpd.h"
#include "tunnel/config.h"
#include "tunnel/engine.h"

/* The table `flowgate forward` owns for its kernel forwards (the agent owns
 * inet flowgate, `flowgate firewall` inet flowgate_local). */
#define FWD_TABLE "flowgate_forward"

struct fwd_app {
	struct fg_loop *loop;
	struct fg_engine *engine;
	struct fg_tunnel_engine *tunnels;
	struct fg_httpd *metrics;
	const char *file;
	struct fg_io sig_io;
	int sfd;
	int exit_code;
	struct fg_kfwd *kfwd; /* kernel forwards (engine kernel) */
};

/* Field of the JSON model <-> command-line flag, so the one validator
 * can speak in the user's own terms. */
static const struct flag_map {
	const char *field, *flag;
} flag_map[] = {
    {"listen", "--listen"},
    {"targets", "--target"},
    {"name", "--name"},
    {"proto", "--proto"},
    {"engine", "--engine"},
    {"balance", "--balance"},
    {"rate_up_per_conn", "--rate-up-per-conn"},
    {"rate_down_per_conn", "--rate-down-per-conn"},
    {"rate_up", "--rate-up"},
    {"rate_down", "--rate-down"},
    {"burst", "--burst"},
    {"max_conns_per_ip", "--max-conns-per-ip"},
    {"max_conns", "--max-conns"},
    {"proxy_protocol", "--proxy-protocol"},
    {"health_check.interval", "--health-check"},
    {"health_check", "--health-check"},
    {"connect_timeout", "--connect-timeout"},
    {"udp_idle_timeout", "--udp-idle-timeout"},
    {"idle_timeout", "--idle-timeout"},
};

/* "forwards[0].rate_up: ..." -> "--rate-up: ..." */
static void err_to_flags(const char *err, char *out, size_t len)
{
	const char *p = err;
	if (strncmp(p, "forwards[0].", 12) == 0) {
		p += 12;
		for (size_t i = 0; i < FG_ARRAY_LEN(flag_map); i++) {
			size_t n = strlen(flag_map[i].field);
			if (strncmp(p, flag_map[i].field, n) == 0 &&
			    (p[n] == ':' || p[n] == '[' || p[n] == '.')) {
				const char *rest = p + n;
				if (*rest == '[') /* targets[2] -> --target */
					rest = strchr(rest, ']') ? strchr(rest, ']') + 1 : rest;
				if (*rest == '.')
					rest = strchr(rest, ':') ? strchr(rest, ':') : rest;
				snprintf(out, len, "%s%s", flag_map[i].flag, rest);
				return;
			}
		}
	}
	snprintf(out, len, "%s", err);
}

static void usage(FILE *f)
{
	fprintf(
	    f, "usage: flowgate forward -l LISTEN -r TARGET [-r TARGET ...] [options]\n"
	       "       flowgate forward -c FILE [--metrics ADDR] [--workers N] [--tunnel-workers "
	       "N]\n\n"
	       "  -l, --listen ADDR            HOST:PORT, HOST:LO-HI, [V6]:PORT or :PORT\n"
	       "  -r, --target HOST:PORT       target (repeat for several); PORT may be a range\n"
	       "  -c, --config FILE            run the forwards of a JSON file (SIGHUP re-reads)\n"
	       "      --name NAME              forward name for metrics (default: cli)\n"
	       "      --proto tcp|udp|both     (default: tcp)\n"
	       "      --engine proxy|kernel    userspace proxy, or nftables DNAT (default: proxy)\n"
	       "      --balance MODE           round-robin|least-conn|ip-hash|failover\n"
	       "      --rate-up R, --rate-down R        aggregate limit (1000, 8mbit, 2MiB...)\n"
	       "      --rate-up-per-conn R, --rate-down-per-conn R\n"
	       "      --burst SIZE             bucket depth (default: rate/10, >= 16KiB)\n"
	       "      --max-conns N, --max-conns-per-ip N\n"
	       "      --proxy-protocol v1|v2   send a PROXY header to the target\n"
	       "      --health-check DURATION  active TCP check of each target\n"
	       "      --connect-timeout D, --idle-timeout D, --udp-idle-timeout D\n"
	       "      --metrics ADDR           Prometheus text at http://ADDR/metrics\n"
	       "      --workers N              data-path threads (default: one per core)\n"
	       "      --tunnel-workers N       threads running the file's tunnels (default: 1)\n"
	       "      --log-level L            error|warn|info|debug\n");
}

static int metrics_cb(void *data, const char *method, const char *path, struct fg_strbuf *body,
		      const char **ctype)
{
	struct fwd_app *app = data;
	if (strcmp(path, "/metrics") != 0) {
		fg_strbuf_puts(body, "not found: try /metrics\n");
		return 404;
	}
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return 405;
	*ctype = "text/plain; version=0.0.4; charset=utf-8";
	fg_engine_metrics(app->engine, body);
	if (app->tunnels)
		fg_tunnel_engine_metrics(app->tunnels, body);
	return 200;
}

static void reload(struct fwd_app *app)
{
	char err[FG_ERR_MAX];
	struct fg_forward_set set;
	if (!app->file) {
		fg_info("SIGHUP: no configuration file (-c), nothing to re-read");
		return;
	}
	struct fg_tunnel_set tset;
	if (fg_config_load_file(app->file, &set, err, sizeof(err)) < 0) {
		fg_err("reload rejected, running forwards unchanged: %s: %s", app->file, err);
		return;
	}
	if (fg_tunnel_load_file(app->file, &tset, err, sizeof(err)) < 0 ||
	    fg_tunnel_set_check_forwards(&tset, &set, err, sizeof(err)) < 0) {
		fg_err("reload rejected, running forwards and tunnels unchanged: %s: %s", app->file,
		       err);
		fg_forward_set_free(&set);
		fg_tunnel_set_free(&tset);
		return;
	}
	char *script = NULL;
	if (fg_kfwd_prepare(app->kfwd, &set, &script, err, sizeof(err)) < 0) {
		fg_err("reload rejected, running forwards and tunnels unchanged: %s", err);
	} else if (fg_engine_apply(app->engine, &set, err, sizeof(err)) < 0) {
		fg_err("reload rejected, running forwards and tunnels unchanged: %s", err);
		fg_free(script);
	} else if (fg_kfwd_commit(app->kfwd, &set, script, err, sizeof(err)) < 0) {
		/* checked a moment ago: only a kernel-side race gets here */
		fg_err("reload: kernel forwards NOT updated (proxy forwards were): %s", err);
	} else if (fg_tunnel_engine_apply(app->tunnels, &tset, err, sizeof(err)) < 0) {
		fg_err("reload: forwards applied, tunnels unchanged: %s", err);
	} else {
		fg_info("reloaded %s: %zu forward(s), %zu tunnel(s)", app->file, set.n, tset.n);
	}
	fg_forward_set_free(&set);
	fg_tunnel_set_free(&tset);
}

static void signal_cb(struct fg_loop *loop, struct fg_io *io, uint32_t events)
{
	FG_UNUSED(events);
	struct fwd_app *app = io->data;
	struct signalfd_siginfo si;
	while (read(io->fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		if (si.ssi_signo == SIGHUP) {
			reload(app);
		} else {
			fg_info("signal %u: stopping", si.ssi_signo);
			fg_loop_stop(loop);
		}
	}
}

/* Builds the one-forward document from flags; the validator does the rest. */
static int add_rate(json_t *o, const char *field, const char *v)
{
	return json_object_set_new(o, field, json_string(v));
}

int fg_cli_forward(int argc, char **argv)
{
	enum {
		O_NAME = 256,
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
		O_METRICS,
		O_WORKERS,
		O_TUNNEL_WORKERS,
		O_LOG,
		O_ENGINE
	};
	static const struct option opts[] = {
	    {"listen", required_argument, 0, 'l'},
	    {"target", required_argument, 0, 'r'},
	    {"config", required_argument, 0, 'c'},
	    {"help", no_argument, 0, 'h'},
	    {"name", required_argument, 0, O_NAME},
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
	    {"metrics", required_argument, 0, O_METRICS},
	    {"workers", required_argument, 0, O_WORKERS},
	    {"tunnel-workers", required_argument, 0, O_TUNNEL_WORKERS},
	    {"log-level", required_argument, 0, O_LOG},
	    {"engine", required_argument, 0, O_ENGINE},
	    {0, 0, 0, 0},
	};
	struct fwd_app app = {.sfd = -1};
	const char *metrics_addr = NULL;
	unsigned workers = 0, tunnel_workers = 1;
	char err[FG_ERR_MAX], msg[FG_ERR_MAX + 64];
	int rc = 2;
	bool any_flag = false;
	json_t *fw = json_object(), *targets = json_array();
	struct fg_forward_set set = {0};
	struct fg_tunnel_set tset = {0};
	json_object_set_new(fw, "name", json_string("cli"));

	opterr = 0;
	int c;
	while ((c = getopt_long(argc, argv, ":l:r:c:h", opts, NULL)) != -1) {
		char *end;
		long long n;
		switch (c) {
		case 'l':
			json_object_set_new(fw, "listen", json_string(optarg));
			any_flag = true;
			break;
		case 'r':
			json_array_append_new(targets, json_string(optarg));
			any_flag = true;
			break;
		case 'c': app.file = optarg; break;
		case 'h':
			usage(stdout);
			rc = 0;
			goto out;
		case O_NAME: json_object_set_new(fw, "name", json_string(optarg)); break;
		case O_PROTO:
			json_object_set_new(fw, "proto", json_string(optarg));
			any_flag = true;
			break;
		case O_ENGINE:
			json_object_set_new(fw, "engine", json_string(optarg));
			any_flag = true;
			break;
		case O_BALANCE:
			json_object_set_new(fw, "balance", json_string(optarg));
			any_flag = true;
			break;
		case O_RATE_UP:
			add_rate(fw, "rate_up", optarg);
			any_flag = true;
			break;
		case O_RATE_DOWN:
			add_rate(fw, "rate_down", optarg);
			any_flag = true;
			break;
		case O_RATE_UP_CONN:
			add_rate(fw, "rate_up_per_conn", optarg);
			any_flag = true;
			break;
		case O_RATE_DOWN_CONN:
			add_rate(fw, "rate_down_per_conn", optarg);
			any_flag = true;
			break;
		case O_BURST:
			add_rate(fw, "burst", optarg);
			any_flag = true;
			break;
		case O_MAX_CONNS:
		case O_MAX_PER_IP:
			/* a number goes in as a JSON integer, anything else as a
			 * string: the validator checks the range and names it */
			errno = 0;
			n = strtoll(optarg, &end, 10);
			json_object_set_new(fw, c == O_MAX_CONNS ? "max_conns" : "max_conns_per_ip",
					    errno || *end || end == optarg ? json_string(optarg)
									   : json_integer(n));
			any_flag = true;
			break;
		case O_PP:
			json_object_set_new(fw, "proxy_protocol", json_string(optarg));
			any_flag = true;
			break;
		case O_HC: {
			json_t *hc = json_object();
			json_object_set_new(hc, "interval", json_string(optarg));
			int64_t ns;
			/* the timeout follows the interval: half of it, at most 2 s */
			if (fg_parse_duration(optarg, &ns) == 0 && ns > 0) {
				char t[32];
				snprintf(t, sizeof(t), "%lldms",
					 (long long)FG_MIN(ns / 2, 2000000000LL) / 1000000);
				json_object_set_new(hc, "timeout", json_string(t));
			}
			json_object_set_new(fw, "health_check", hc);
			any_flag = true;
			break;
		}
		case O_CTO:
			json_object_set_new(fw, "connect_timeout", json_string(optarg));
			any_flag = true;
			break;
		case O_ITO:
			json_object_set_new(fw, "idle_timeout", json_string(optarg));
			any_flag = true;
			break;
		case O_UTO:
			json_object_set_new(fw, "udp_idle_timeout", json_string(optarg));
			any_flag = true;
			break;
		case O_METRICS: metrics_addr = optarg; break;
		case O_WORKERS:
			if (fg_cli_opt_workers(optarg, &workers))
				goto out;
			break;
		case O_TUNNEL_WORKERS:
			if (fg_cli_opt_count(optarg, "--tunnel-workers", 1, 64, &tunnel_workers))
				goto out;
			break;
		case O_LOG:
			if (fg_cli_opt_log_level(optarg))
				goto out;
			break;
		case ':':
			fprintf(stderr, "flowgate: %s: needs a value\n", argv[optind - 1]);
			goto out;
		default:
			fprintf(stderr,
				"flowgate: unknown option \"%s\" (see flowgate forward --help)\n",
				argv[optind - 1]);
			goto out;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "flowgate: unexpected argument \"%s\"\n", argv[optind]);
		goto out;
	}
	if (app.file && any_flag) {
		fprintf(stderr, "flowgate: -c FILE cannot be combined with forward options "
				"(put them in the file)\n");
		goto out;
	}
	if (app.file) {
		if (fg_config_load_file(app.file, &set, err, sizeof(err)) < 0 ||
		    fg_tunnel_load_file(app.file, &tset, err, sizeof(err)) < 0 ||
		    fg_tunnel_set_check_forwards(&tset, &set, err, sizeof(err)) < 0) {
			fprintf(stderr, "flowgate: %s: %s\n", app.file, err);
			goto out;
		}
	} else {
		if (!json_object_get(fw, "listen")) {
			fprintf(stderr, "flowgate: --listen: missing (or use -c FILE)\n");
			goto out;
		}
		if (json_array_size(targets) == 0) {
			fprintf(stderr,
				"flowgate: --target: missing (give at least one -r HOST:PORT)\n");
			goto out;
		}
		json_object_set(fw, "targets", targets);
		json_t *arr = json_array();
		json_array_append(arr, fw);
		int prc = fg_config_parse_forwards(arr, &set, err, sizeof(err));
		json_decref(arr);
		if (prc < 0) {
			err_to_flags(err, msg, sizeof(msg));
			fprintf(stderr, "flowgate: %s\n", msg);
			goto out;
		}
	}

	sigset_t mask;
	fg_cli_process_setup(&mask);

	rc = 1;
	app.loop = fg_loop_new();
	if (!app.loop) {
		fprintf(stderr, "flowgate: cannot create event loop\n");
		goto out;
	}
	if (metrics_addr) {
		app.metrics =
		    fg_httpd_new(app.loop, metrics_addr, metrics_cb, &app, err, sizeof(err));
		if (!app.metrics) {
			fprintf(stderr, "flowgate: --metrics: %s\n", err);
			rc = 2;
			goto out;
		}
	}
	struct fg_engine_opts eo = {.workers = workers, .ctl_loop = app.loop};
	app.engine = fg_engine_new(&eo);
	if (!app.engine) {
		fprintf(stderr, "flowgate: cannot start the engine: %s\n", strerror(errno));
		goto out;
	}
	char *script = NULL;
	if (!(app.kfwd = fg_kfwd_new(FWD_TABLE))) {
		fprintf(stderr, "flowgate: out of memory\n");
		goto out;
	}
	if (fg_kfwd_prepare(app.kfwd, &set, &script, err, sizeof(err)) < 0) {
		fprintf(stderr, "flowgate: %s\n", err);
		rc = 2;
		goto out;
	}
	if (fg_engine_apply(app.engine, &set, err, sizeof(err)) < 0) {
		fprintf(stderr, "flowgate: %s\n", err);
		fg_free(script);
		rc = 2;
		goto out;
	}
	if (fg_kfwd_commit(app.kfwd, &set, script, err, sizeof(err)) < 0) {
		fprintf(stderr, "flowgate: %s\n", err);
		rc = 2;
		goto out;
	}
	/* one resolver on the loop: the tunnels use the forwards' */
	struct fg_tunnel_engine_opts to = {.loop = app.loop,
					   .make_cert = 1,
					   .resolver = fg_engine_resolver(app.engine),
					   .workers = tunnel_workers};
	app.tunnels = fg_tunnel_engine_new(&to);
	if (!app.tunnels) {
		fprintf(stderr, "flowgate: cannot start the tunnel engine: %s\n", strerror(errno));
		goto out;
	}
	if (fg_tunnel_engine_apply(app.tunnels, &tset, err, sizeof(err)) < 0) {
		fprintf(stderr, "flowgate: %s\n", err);
		rc = 2;
		goto out;
	}
	fg_engine_set_metrics_hook(app.engine, fg_kfwd_metrics_cb, app.kfwd);
	app.sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	fg_io_init(&app.sig_io);
	if (app.sfd < 0 ||
	    fg_io_start(app.loop, &app.sig_io, app.sfd, EPOLLIN, signal_cb, &app) < 0) {
		fprintf(stderr, "flowgate: signalfd: %s\n", strerror(errno));
		goto out;
	}
	fg_info("flowgate forward: %zu forward(s), %zu tunnel(s) running (on %u thread%s)%s%s",
		set.n, tset.n, fg_tunnel_engine_workers(app.tunnels),
		fg_tunnel_engine_workers(app.tunnels) == 1 ? "" : "s",
		metrics_addr ? ", metrics on " : "", metrics_addr ? metrics_addr : "");
	rc = fg_loop_run(app.loop) < 0 ? 1 : 0;
out:
	fg_forward_set_free(&set);
	fg_tunnel_set_free(&tset);
	json_decref(fw);
	json_decref(targets);
	if (app.sfd >= 0) {
		if (app.loop)
			fg_io_stop(app.loop, &app.sig_io);
		close(app.sfd);
	}
	fg_tunnel_engine_free(app.tunnels);
	fg_engine_free(app.engine);
	fg_httpd_free(app.metrics);
	fg_loop_free(app.loop);
	fg_kfwd_free(app.kfwd); /* our table and the sysctls we turned on */
	return rc;
}
