/* mrlease: the command-line tool. The usage and which file runs each command;
 * the commands are tools/cmd_*.c, what they share tools/cli.c. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const struct {
	const char *name;
	int (*run)(const struct cli_opts *o);
} commands[] = {
	{"demo", cmd_demo},
	{"serve", cmd_serve},
	{"client", cmd_client},
	{"coverage", cmd_coverage},
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: mrlease demo [--seconds N] [--fs ext4|tmpfs] [--no-lease] [--no-fanotify] [--json]\n"
		"                    [--device fabric|uring]: uring streams READ_FIXED into a tmpfs file\n"
		"                    [--mrs N] [--size BYTES] [--actions punch,truncate,cat]\n"
		"                    [--policy restore|notify|fence|deny]\n"
		"       mrlease serve FILE [--addr A] [--port P] [--mrs N] [--size BYTES] [--no-lease]\n"
		"                    [--no-fanotify] [--policy P] [--deadline-ms MS]\n"
		"       mrlease client HOST:PORT [--addr A] [--seconds N] [--depth N] [--block BYTES]\n"
		"       mrlease coverage [FILE]\n");
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
		ret = i < n ? commands[i].run(&o) : CLI_USAGE;
	}
	if (ret == CLI_USAGE) {
		usage(stderr);
		return 2;
	}
	return ret;
}
