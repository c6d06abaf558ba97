/* `flowgate agent`: a node managed by a flowgate server (src/agent/). */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "agent/agent.h"
#include "agent/state.h"
#include "cli/cli.h"
#include "core/alloc.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/units.h"
#include "fwd/config.h"
#include "net/httpd.h"

struct agent_app {
	struct fg_loop *loop;
	struct fg_agent *agent;
	struct fg_httpd *metrics;
	struct fg_io sig_io;
};

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: flowgate agent --server URL [--server URL ...] [options]\n\n"
	    "  --server URL             ws:// or wss://HOST[:PORT][/PATH] of a flowgate server\n"
	    "                           (path defaults to /agent); several fail over in turn\n"
	    "  --ca FILE                wss://: trust this CA bundle instead of the system's\n"
	    "  --pin SHA256             wss://: accept exactly the server certificate with\n"
	    "                           this SHA-256 fingerprint (self-signed is fine)\n"
	    "  --token TOKEN            node token (else $" FG_AGENT_TOKEN_ENV " or DIR/token)\n"
	    "  --state DIR              state directory (default " FG_AGENT_DEFAULT_STATE_DIR ")\n"
	    "  --report-interval D      how often counters are reported (default 5s)\n"
	    "  --metrics ADDR           Prometheus text at http://ADDR/metrics\n"
	    "  --workers N              data-path threads (default: one per core)\n"
	    "  --tunnel-workers N       threads running this node's tunnels (default: 1)\n"
	    "  --log-level L            error|warn|info|debug\n");
}

static int metrics_cb(void *data, const char *method, const char *path, struct fg_strbuf *body,
		      const char **ctype)
{
	struct agent_app *app = data;
	if (strcmp(path, "/metrics") != 0) {
		fg_strbuf_puts(body, "not found: try /metrics\n");
		return 404;
	}
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return 405;
	*ctype = "text/plain; version=0.0.4; charset=utf-8";
	fg_agent_metrics(app->agent, body);
	return 200;
}

static void signal_cb(struct fg_loop *loop, struct fg_io *io, uint32_t events)
{
	struct agent_app *app = io->data;
	struct signalfd_siginfo si;
	while (read(io->fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		if (si.ssi_signo == SIGHUP)
			continue; /* the server owns the configuration */
		fg_info("signal %u: stopping", si.ssi_signo);
		fg_agent_shutdown(app->agent);
		fg_loop_stop(loop);
	}
}

/* The token: --token, else $FLOWGATE_NODE_TOKEN, else DIR/token (first
 * line). Never printed. Returns an owned string or NULL. */
static char *find_token(const char *flag, const char *dir)
{
	if (flag && *flag)
		return fg_strdup(flag);
	const char *env = getenv(FG_AGENT_TOKEN_ENV);
	if (env && *env)
		return fg_strdup(env);
	char path[PATH_MAX], *buf;
	size_t len;
	snprintf(path, sizeof(path), "%s/%s", dir, FG_AGENT_TOKEN_FILE);
	if (fg_file_read(path, 4096, &buf, &len) < 0)
		return NULL;
	buf[strcspn(buf, "\r\n")] = '\0';
	return buf;
}

int fg_cli_agent(int argc, char **argv)
{
	enum {
		O_SERVER = 256,
		O_TOKEN,
		O_STATE,
		O_REPORT,
		O_METRICS,
		O_WORKERS,
		O_TUNNEL_WORKERS,
		O_LOG,
		O_CA,
		O_PIN
	};
	static const struct option opts[] = {
	    {"server", required_argument, 0, O_SERVER},
	    {"token", required_argument, 0, O_TOKEN},
	    {"state", required_argument, 0, O_STATE},
	    {"report-interval", required_argument, 0, O_REPORT},
	    {"metrics", required_argument, 0, O_METRICS},
	    {"workers", required_argument, 0, O_WORKERS},
	    {"tunnel-workers", required_argument, 0, O_TUNNEL_WORKERS},
	    {"log-level", required_argument, 0, O_LOG},
	    {"ca", required_argument, 0, O_CA},
	    {"pin", required_argument, 0, O_PIN},
	    {"help", no_argument, 0, 'h'},
	    {0, 0, 0, 0},
	};
	struct agent_app app = {0};
	const char *servers[FG_AGENT_MAX_SERVERS];
	size_t nservers = 0;
	const char *token_flag = NULL, *dir = FG_AGENT_DEFAULT_STATE_DIR, *metrics_addr = NULL;
	const char *ca_file = NULL, *pin = NULL;
	int64_t report_ns = 5 * 1000000000LL;
	unsigned workers = 0, tunnel_workers = 1;
	char *token = NULL;
	char err[FG_ERR_MAX];
	int sfd = -1, rc = 2;
	fg_io_init(&app.sig_io);

	opterr = 0;
	optind = 1;
	int c;
	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case O_SERVER:
			if (nservers == FG_AGENT_MAX_SERVERS) {
				fprintf(stderr, "flowgate: --server: at most %d servers\n",
					FG_AGENT_MAX_SERVERS);
				goto out;
			}
			servers[nservers++] = optarg;
			break;
		case O_TOKEN: token_flag = optarg; break;
		case O_STATE: dir = optarg; break;
		case O_REPORT:
			if (fg_parse_duration(optarg, &report_ns) < 0 ||
			    report_ns < 100 * 1000000LL) {
				fprintf(stderr,
					"flowgate: --report-interval: \"%s\" is not a duration of "
					"100ms or more (e.g. 5s)\n",
					optarg);
				goto out;
			}
			break;
		case O_METRICS: metrics_addr = optarg; break;
		case O_CA: ca_file = optarg; break;
		case O_PIN: pin = optarg; break;
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
		case 'h':
			usage(stdout);
			rc = 0;
			goto out;
		case ':':
			fprintf(stderr, "flowgate: %s: needs a value\n", argv[optind - 1]);
			goto out;
		default:
			fprintf(stderr,
				"flowgate: unknown option \"%s\" (see flowgate agent --help)\n",
				argv[optind - 1]);
			goto out;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "flowgate: unexpected argument \"%s\"\n", argv[optind]);
		goto out;
	}
	if (nservers == 0) {
		fprintf(stderr, "flowgate: --server: missing (e.g. --server ws://10.0.0.1:8080)\n");
		goto out;
	}
	token = find_token(token_flag, dir);

	sigset_t mask;
	fg_cli_process_setup(&mask);
	rc = 1;
	app.loop = fg_loop_new();
	if (!app.loop) {
		fprintf(stderr, "flowgate: cannot create event loop\n");
		goto out;
	}
	struct fg_agent_opts ao = {
	    .loop = app.loop,
	    .servers = servers,
	    .ca_file = ca_file,
	    .pin = pin,
	    .nservers = nservers,
	    .token = token,
	    .state_dir = dir,
	    .report_interval_ns = report_ns,
	    .workers = workers,
	    .tunnel_workers = tunnel_workers,
	};
	app.agent = fg_agent_new(&ao, err, sizeof(err));
	if (!app.agent) {
		fprintf(stderr, "flowgate: %s\n", err);
		rc = 2;
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
	sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (sfd < 0 || fg_io_start(app.loop, &app.sig_io, sfd, EPOLLIN, signal_cb, &app) < 0) {
		fprintf(stderr, "flowgate: signalfd: %s\n", strerror(errno));
		goto out;
	}
	fg_agent_start(app.agent);
	rc = fg_loop_run(app.loop) < 0 ? 1 : 0;
out:
	if (sfd >= 0) {
		if (app.loop)
			fg_io_stop(app.loop, &app.sig_io);
		close(sfd);
	}
	fg_httpd_free(app.metrics);
	fg_agent_free(app.agent);
	fg_loop_free(app.loop);
	if (token) {
		memset(token, 0, strlen(token));
		fg_free(token);
	}
	return rc;
}
