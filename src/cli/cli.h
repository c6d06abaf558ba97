/* Subcommand entry points: each returns the process exit status
 * (0 ok, 1 runtime failure, 2 bad input). */
#ifndef FG_CLI_CLI_H
#define FG_CLI_CLI_H

#include <signal.h>

int fg_cli_forward(int argc, char **argv);
int fg_cli_firewall(int argc, char **argv);
int fg_cli_server(int argc, char **argv);
int fg_cli_agent(int argc, char **argv);

/* Blocks SIGHUP, SIGINT and SIGTERM (read them from a signalfd on mask),
 * ignores SIGPIPE, raises the open-file limit. Call before any thread
 * starts, so every thread inherits the mask. */
void fg_cli_process_setup(sigset_t *mask);
int fg_cli_ctl(int argc, char **argv);

/* Options the long-running subcommands share. Each returns 0, or -EINVAL
 * after telling stderr which value is wrong. */
int fg_cli_opt_workers(const char *arg, unsigned *out); /* --workers 1-64 */
/* a number lo..hi for option opt (its name, for the message); 0 or -EINVAL */
int fg_cli_opt_count(const char *arg, const char *opt, unsigned lo, unsigned hi, unsigned *out);
int fg_cli_opt_log_level(const char *arg); /* --log-level, applied */

#endif
