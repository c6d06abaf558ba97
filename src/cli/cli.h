/* Subcommand entry points: each returns the process exit status
 * (0 ok, 1 runtime failure, 2 bad input). */
#ifndef FG_CLI_CLI_H
#define FG_CLI_CLI_H

int fg_cli_forward(int argc, char **argv);
int fg_cli_firewall(int argc, char **argv);

#endif
