/* `flowgate firewall`: the agent's firewall plane as a local tool. Like
 * `nft -f`, but it only ever replaces its own table, checks before it
 * applies, and can roll itself back (commit-confirm). */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/units.h"
#include "kernel/nft.h"
#include "kernel/nft_compile.h"
#include "kernel/policy.h"

#define DEFAULT_TABLE "flowgate_local"
#define NFT_ERR_MAX   8192

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: flowgate firewall check   -f FILE\n"
	    "       flowgate firewall preview -f FILE [--table NAME]\n"
	    "       flowgate firewall apply   -f FILE [--table NAME] [--confirm-timeout D]\n"
	    "       flowgate firewall show    [--table NAME] [--json]\n"
	    "       flowgate firewall remove  [--table NAME]\n\n"
	    "  -f, --file FILE          policies document {\"sets\": [...], \"policies\": [...]}\n"
	    "      --table NAME         our nftables table (inet family), default " DEFAULT_TABLE
	    "\n"
	    "      --confirm-timeout D  after applying, restore the previous table unless\n"
	    "                           confirmed within D (Enter on stdin, or SIGUSR1)\n"
	    "      --json               show: nft's JSON instead of text\n\n"
	    "Only table inet NAME is ever touched; other tables are left alone.\n");
}

static int load_and_compile(const char *file, const char *table, struct fg_strbuf *script)
{
	char err[1024];
	struct fg_fw_doc doc;
	if (fg_fw_doc_load_file(file, &doc, err, sizeof(err)) < 0) {
		fprintf(stderr, "flowgate: %s: %s\n", file, err);
		return 2;
	}
	struct fg_nft_spec spec = {.table = table, .fw = &doc};
	int rc = fg_nft_compile(&spec, script, err, sizeof(err));
	fg_fw_doc_free(&doc);
	if (rc < 0) {
		fprintf(stderr, "flowgate: %s\n", err);
		return rc == -ENOMEM ? 1 : 2;
	}
	return 0;
}

/* Waits for a confirmation: a line on stdin or SIGUSR1. Returns true if
 * confirmed, false on timeout or SIGINT/SIGTERM. */
static bool wait_confirm(int64_t timeout_ns)
{
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGUSR1);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	int sfd = signalfd(-1, &mask, SFD_CLOEXEC);
	int64_t deadline = fg_now_ns() + timeout_ns;
	bool stdin_open = true, ok = false;
	for (;;) {
		int64_t left = deadline - fg_now_ns();
		if (left <= 0)
			break;
		struct pollfd p[2] = {{.fd = sfd, .events = POLLIN},
				      {.fd = stdin_open ? 0 : -1, .events = POLLIN}};
		int r = poll(p, 2, (int)(left / 1000000 + 1));
		if (r < 0 && errno != EINTR)
			break;
		if (r <= 0)
			continue;
		if (p[0].revents & POLLIN) {
			struct signalfd_siginfo si;
			if (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
				ok = si.ssi_signo == SIGUSR1;
				break;
			}
		}
		if (p[1].revents & (POLLIN | POLLHUP)) {
			char buf[256];
			ssize_t n = read(0, buf, sizeof(buf));
			if (n > 0 && memchr(buf, '\n', (size_t)n)) {
				ok = true;
				break;
			}
			if (n <= 0)
				stdin_open = false; /* EOF is not a confirmation */
		}
	}
	if (sfd >= 0)
		close(sfd);
	return ok;
}

int fg_cli_firewall(int argc, char **argv)
{
	enum { O_TABLE = 256, O_CONFIRM, O_JSON };
	static const struct option opts[] = {
	    {"file", required_argument, 0, 'f'},
	    {"table", required_argument, 0, O_TABLE},
	    {"confirm-timeout", required_argument, 0, O_CONFIRM},
	    {"json", no_argument, 0, O_JSON},
	    {"help", no_argument, 0, 'h'},
	    {0, 0, 0, 0},
	};
	const char *file = NULL, *table = DEFAULT_TABLE, *cmd;
	int64_t confirm_ns = 0;
	bool json = false;
	char err[NFT_ERR_MAX];
	struct fg_strbuf script, live, next, diff;
	struct fg_nft *nft = NULL;
	int rc = 2, c;

	fg_strbuf_init(&script);
	fg_strbuf_init(&live);
	fg_strbuf_init(&next);
	fg_strbuf_init(&diff);
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	cmd = argv[1];
	argc--;
	argv++;
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, ":f:h", opts, NULL)) != -1) {
		switch (c) {
		case 'f': file = optarg; break;
		case O_TABLE: table = optarg; break;
		case O_JSON: json = true; break;
		case O_CONFIRM:
			if (fg_parse_duration(optarg, &confirm_ns) < 0 || confirm_ns <= 0) {
				fprintf(stderr,
					"flowgate: --confirm-timeout: \"%s\" is not a duration "
					"(60s, 2m...)\n",
					optarg);
				goto out;
			}
			break;
		case 'h': usage(stdout); return 0;
		case ':':
			fprintf(stderr, "flowgate: %s: needs a value\n", argv[optind - 1]);
			goto out;
		default:
			fprintf(stderr,
				"flowgate: unknown option \"%s\" (see flowgate firewall --help)\n",
				argv[optind - 1]);
			goto out;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "flowgate: unexpected argument \"%s\"\n", argv[optind]);
		goto out;
	}
	if (!fg_nft_table_name_ok(table)) {
		fprintf(stderr,
			"flowgate: --table: \"%s\" must be flowgate[a-z0-9_]*, at most %d "
			"characters\n",
			table, FG_NFT_TABLE_MAX);
		goto out;
	}
	bool needs_file =
	    strcmp(cmd, "check") == 0 || strcmp(cmd, "preview") == 0 || strcmp(cmd, "apply") == 0;
	if (!needs_file && strcmp(cmd, "show") != 0 && strcmp(cmd, "remove") != 0) {
		fprintf(stderr, "flowgate: firewall: unknown command \"%s\"\n", cmd);
		usage(stderr);
		goto out;
	}
	if (needs_file && !file) {
		fprintf(stderr, "flowgate: firewall %s: -f FILE is missing\n", cmd);
		goto out;
	}
	if (needs_file && (rc = load_and_compile(file, table, &script)) != 0)
		goto out;
	rc = 1;
	nft = fg_nft_new(table);
	if (!nft) {
		fprintf(stderr, "flowgate: cannot create an nftables context\n");
		goto out;
	}

	if (strcmp(cmd, "check") == 0) {
		if (fg_nft_check(nft, script.s, err, sizeof(err)) < 0) {
			fprintf(stderr, "flowgate: nft rejected the ruleset:\n%s\n", err);
			rc = 2;
			goto out;
		}
		printf("%s: ok\n", file);
		rc = 0;
	} else if (strcmp(cmd, "preview") == 0) {
		/* the exact text the kernel gets, then how nft would list it
		 * against what runs now */
		fputs(script.s, stdout);
		if (fg_nft_check(nft, script.s, err, sizeof(err)) < 0) {
			fprintf(stderr, "flowgate: nft rejected the ruleset:\n%s\n", err);
			rc = 2;
			goto out;
		}
		int lrc = fg_nft_list(nft, false, true, &live, err, sizeof(err));
		if (lrc < 0 && lrc != -ENOENT) {
			fprintf(stderr, "flowgate: cannot list table inet %s: %s\n", table, err);
			goto out;
		}
		if (fg_nft_normalize(table, script.s, &next, err, sizeof(err)) < 0) {
			printf("\n# diff against the running table unavailable: %s\n", err);
			rc = 0;
			goto out;
		}
		fg_text_diff(live.s ? live.s : "", next.s ? next.s : "", "running", "preview",
			     &diff);
		if (diff.len)
			printf("\n# diff against the running table inet %s:\n%s", table, diff.s);
		else
			printf("\n# no change against the running table inet %s\n", table);
		rc = 0;
	} else if (strcmp(cmd, "apply") == 0) {
		if (fg_nft_apply(nft, script.s, err, sizeof(err)) < 0) {
			fprintf(stderr,
				"flowgate: nft rejected the ruleset, nothing was changed:\n%s\n",
				err);
			rc = 2;
			goto out;
		}
		fg_info("applied %s to table inet %s", file, table);
		rc = 0;
		if (confirm_ns) {
			fprintf(stderr,
				"flowgate: applied; confirm within %.0f s (press Enter or send "
				"SIGUSR1 to %d) or the previous table is restored\n",
				(double)confirm_ns / 1e9, (int)getpid());
			if (wait_confirm(confirm_ns)) {
				fg_info("confirmed: table inet %s kept", table);
			} else if (fg_nft_rollback(nft, err, sizeof(err)) < 0) {
				fprintf(stderr, "flowgate: rollback FAILED: %s\n", err);
				rc = 1;
			} else {
				fg_warn("not confirmed: previous table inet %s restored", table);
				rc = 3;
			}
		}
	} else if (strcmp(cmd, "show") == 0) {
		int lrc = fg_nft_list(nft, json, false, &live, err, sizeof(err));
		if (lrc == -ENOENT) {
			fprintf(stderr, "flowgate: table inet %s does not exist\n", table);
			goto out;
		}
		if (lrc < 0) {
			fprintf(stderr, "flowgate: %s\n", err);
			goto out;
		}
		fputs(live.s ? live.s : "", stdout);
		rc = 0;
	} else { /* remove */
		if (fg_nft_remove(nft, err, sizeof(err)) < 0) {
			fprintf(stderr, "flowgate: %s\n", err);
			goto out;
		}
		fg_info("removed table inet %s", table);
		rc = 0;
	}
out:
	fg_nft_free(nft);
	fg_strbuf_deinit(&script);
	fg_strbuf_deinit(&live);
	fg_strbuf_deinit(&next);
	fg_strbuf_deinit(&diff);
	return rc;
}
