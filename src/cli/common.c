/* Process setup shared by the long-running subcommands. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

#include "cli/cli.h"
#include "core/log.h"

void fg_cli_process_setup(sigset_t *mask)
{
	/* Signals go through a signalfd on the control loop; workers inherit
	 * the blocked mask and never see them. */
	sigemptyset(mask);
	sigaddset(mask, SIGHUP);
	sigaddset(mask, SIGINT);
	sigaddset(mask, SIGTERM);
	pthread_sigmask(SIG_BLOCK, mask, NULL);
	signal(SIGPIPE, SIG_IGN);

	/* one fd per connection and per pipe end: take every fd allowed */
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

int fg_cli_opt_count(const char *arg, const char *opt, unsigned lo, unsigned hi, unsigned *out)
{
	char *end;
	errno = 0;
	long long n = strtoll(arg, &end, 10);
	if (errno || *end || end == arg || n < lo || n > hi) {
		fprintf(stderr, "flowgate: %s: \"%s\" is not a number %u-%u\n", opt, arg, lo, hi);
		return -EINVAL;
	}
	*out = (unsigned)n;
	return 0;
}

int fg_cli_opt_workers(const char *arg, unsigned *out)
{
	return fg_cli_opt_count(arg, "--workers", 1, 64, out);
}

int fg_cli_opt_log_level(const char *arg)
{
	enum fg_log_level lvl;
	if (fg_log_parse_level(arg, &lvl) < 0) {
		fprintf(stderr, "flowgate: --log-level: \"%s\" is not error, warn, info or debug\n",
			arg);
		return -EINVAL;
	}
	fg_log_set_level(lvl);
	return 0;
}
