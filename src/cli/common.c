/* Process setup shared by the long-running subcommands. */
#include <signal.h>
#include <sys/resource.h>

#include "cli/cli.h"

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
