/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* mrlease: the command-line tool. The usage and which file runs each command;
 * the commands are tools/cmd_*.c, what they share tools/cli.c. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

/* opts: the short letters of the options each command takes (cli.c);
 * args: how many operands at most */
static const struct {
	const char *name;
	int (*run)(const struct cli_opts *o);
	const char *opts;
	int args;
} commands[] = {
	{"demo", cmd_demo, "sfnFjmzaPDVq", 0},
	{"serve", cmd_serve, "ApmznFPDsMqSIU", 1},
	{"client", cmd_client, "ApsdbMqSI", 1},
	{"coverage", cmd_coverage, "nF", 1},
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: mrlease demo [--seconds N] [--fs ext4|tmpfs] [--no-lease] [--no-fanotify] [--json]\n"
		"                    [--device fabric|uring]: uring streams READ_FIXED into a tmpfs file\n"
		"                    [--mrs N] [--size BYTES] [--actions punch,truncate,cat]\n"
		"                    [--policy restore|notify|fence|deny|redirect]\n"
		"                    [--deadline-ms MS]\n"
		"       mrlease serve FILE [--addr A] [--port P] [--mrs N] [--size BYTES] [--no-lease]\n"
		"                    [--no-fanotify] [--policy P] [--deadline-ms MS] [--seconds N]\n"
		"                    --secret-file PATH (created if missing) | --insecure | --unix PATH\n"
		"       mrlease client HOST:PORT|unix:PATH [--addr A] [--seconds N] [--depth N]\n"
		"                    [--block BYTES] --secret-file PATH | --insecure\n"
		"serve and client authenticate each other with a shared secret: --secret-file, or\n"
		"MRLEASE_SECRET_FILE (a file only its owner may read) or MRLEASE_SECRET in the environment;\n"
		"--insecure: no secret, anyone who reaches the port may read and write the file.\n"
		"--unix PATH (same host): the bootstrap is a Unix socket (mode 0600) and the kernel's word\n"
		"for each side's uid (SO_PEERCRED) is the credential: only this uid or root; no secret.\n"
		"       mrlease coverage [FILE] [--no-lease] [--no-fanotify]\n"
		"numbers are decimal: --port 0..65535 (0: any), --seconds 1..31536000, --mrs 1..256,\n"
		"--depth 1..1024, --deadline-ms 1..600000; sizes may end in K, M or G:\n"
		"--size 4K..1T (64 KiB per MR at least), --block 1..16M. Bad input exits 2.\n");
}

int main(int argc, char **argv)
{
	struct cli_opts o;
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	int ret = cli_parse(argc, argv, &o);
	if (ret == CLI_HELP) {
		usage(stdout);
		return 0;
	}
	if (ret == 0) {
		size_t i = 0, n = sizeof(commands) / sizeof(commands[0]);
		while (i < n && strcmp(argv[1], commands[i].name))
			i++;
		if (i == n) {
			fprintf(stderr, "mrlease: unknown command '%s'\n", argv[1]);
			usage(stderr);
			return 2;
		}
		/* an option the command does not use would be ignored silently */
		for (int c = 1; c < 128; c++)
			if (o.given[c] && !strchr(commands[i].opts, c)) {
				fprintf(stderr, "mrlease %s: --%s is not an option of %s\n", argv[1],
					cli_opt_name(c), argv[1]);
				return 2;
			}
		if (o.nargs > commands[i].args) {
			fprintf(stderr, "mrlease %s: unexpected operand '%s'\n", argv[1],
				o.args[commands[i].args]);
			return 2;
		}
		ret = commands[i].run(&o);
	}
	if (ret == CLI_USAGE) {
		usage(stderr);
		return 2;
	}
	return ret;
}
