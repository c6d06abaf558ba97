/* flowgate: one binary, one subcommand per role. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

#ifndef FG_VERSION
#define FG_VERSION "0.0.0-dev"
#endif

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "flowgate %s - traffic forwarding for fleets of Linux nodes\n\n"
	    "usage: flowgate <command> [options]\n\n"
	    "commands:\n"
	    "  server     run the control server (API, agent hub, web UI)\n"
	    "  forward    run port forwards from the command line or a JSON file\n"
	    "  firewall   check, preview, apply (with commit-confirm) or remove a policies file\n"
	    "  agent      run a node managed by a flowgate server\n"
	    "  ctl        command-line client of a server's API (login, nodes,\n"
	    "             groups, forwards, stats, export/import)\n"
	    "  version    print the version\n\n"
	    "flowgate <command> --help shows a command's options.\n",
	    FG_VERSION);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	const char *cmd = argv[1];
	if (strcmp(cmd, "forward") == 0)
		return fg_cli_forward(argc - 1, argv + 1);
	if (strcmp(cmd, "firewall") == 0)
		return fg_cli_firewall(argc - 1, argv + 1);
	if (strcmp(cmd, "server") == 0)
		return fg_cli_server(argc - 1, argv + 1);
	if (strcmp(cmd, "agent") == 0)
		return fg_cli_agent(argc - 1, argv + 1);
	if (strcmp(cmd, "ctl") == 0)
		return fg_cli_ctl(argc - 1, argv + 1);
	if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
		printf("flowgate %s\n", FG_VERSION);
		return 0;
	}
	if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
		usage(stdout);
		return 0;
	}
	fprintf(stderr, "flowgate: unknown command \"%s\"\n", cmd);
	usage(stderr);
	return 2;
}
