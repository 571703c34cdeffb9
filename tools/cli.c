/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* What the mrlease commands share (tools/cli.h): the one option parser, exit
 * on error, time and percentiles, and running the system's own tools. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mrlease.h"
#include "cli.h"

volatile sig_atomic_t cli_stop;

void cli_on_stop(int sig)
{
	(void)sig;
	cli_stop = 1;
}

uint64_t cli_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void cli_die(const char *what, int err)
{
	fprintf(stderr, "mrlease: %s: %s", what, mrl_strerror(err));
	if (*mrl_last_error())
		fprintf(stderr, " (%s)", mrl_last_error());
	fputc('\n', stderr);
	exit(2);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

uint64_t cli_pct(uint64_t *v, size_t n, int p)
{
	if (!n)
		return 0;
	qsort(v, n, sizeof(*v), cmp_u64);
	size_t i = n * (size_t)p / 100;
	return v[i < n ? i : n - 1];
}

const char *cli_watcher_names(unsigned mask, char *buf, size_t n)
{
	buf[0] = 0;
	for (unsigned bit = 1; bit <= MRL_WATCH_SECCOMP; bit <<= 1)
		if (mask & bit)
			snprintf(buf + strlen(buf), n - strlen(buf), "%s%s", buf[0] ? "+" : "",
				 mrl_watcher_str(bit));
	if (!buf[0])
		snprintf(buf, n, "none");
	return buf;
}

int cli_run_tool(char *const argv[], uint64_t *t0)
{
	if (t0)
		*t0 = cli_now_ns();
	pid_t pid = fork();
	if (pid == 0) {
		int dn = open("/dev/null", O_WRONLY);
		dup2(dn, 1);
		dup2(dn, 2);
		execvp(argv[0], argv);
		_exit(127);
	}
	int st;
	if (pid < 0 || waitpid(pid, &st, 0) < 0)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* coreutils' truncate opens O_NONBLOCK: a leased file answers EAGAIN until
 * the library lets go, so the adversaries try again */
int cli_run_tool_retry(char *const argv[], int tries, unsigned *retries, uint64_t *t0)
{
	int st = 1;
	uint64_t first = 0, t = 0;
	for (int i = 0; i < tries && (st = cli_run_tool(argv, &t)) != 0; i++) {
		first = first ? first : t;
		(*retries)++;
		usleep(5000);
	}
	if (t0)
		*t0 = first ? first : t; /* the break began with the first attempt */
	return st;
}

/* A decimal number, no sign, no trailing text; with units, an optional
 * K/M/G (binary: KiB, MiB, GiB) suffix. Out of [lo, hi]: exit 2 naming it. */
static unsigned long long parse_num(const char *s, const char *what, unsigned long long lo,
				    unsigned long long hi, bool units)
{
	char *end;
	errno = 0;
	unsigned long long v = s[0] >= '0' && s[0] <= '9' ? strtoull(s, &end, 10) : 0;
	if (s[0] < '0' || s[0] > '9' || errno) {
		fprintf(stderr, "mrlease: %s: '%s' is not a number%s\n", what, s,
			errno == ERANGE ? " (too large)" : s[0] == '-' ? " (negative)" : "");
		exit(2);
	}
	if (units && *end) {
		unsigned shift = 0;
		switch (*end) {
		case 'k': case 'K': shift = 10; break;
		case 'm': case 'M': shift = 20; break;
		case 'g': case 'G': shift = 30; break;
		}
		if (shift && (!end[1] || !strcmp(end + 1, "iB") || !strcmp(end + 1, "B"))) {
			if (v > (~0ull >> shift)) {
				fprintf(stderr, "mrlease: %s: '%s' is too large\n", what, s);
				exit(2);
			}
			v <<= shift;
			end += strlen(end);
		}
	}
	if (*end) {
		fprintf(stderr, "mrlease: %s: '%s' is not a number (trailing '%s')%s\n", what, s, end,
			units ? "; sizes take K, M or G" : "");
		exit(2);
	}
	if (v < lo || v > hi) {
		fprintf(stderr, "mrlease: %s: %s is out of range (%llu..%llu)\n", what, s, lo, hi);
		exit(2);
	}
	return v;
}

unsigned long long cli_num(const char *s, const char *what, unsigned long long lo, unsigned long long hi)
{
	return parse_num(s, what, lo, hi, false);
}

unsigned long long cli_size(const char *s, const char *what, unsigned long long lo, unsigned long long hi)
{
	return parse_num(s, what, lo, hi, true);
}

static unsigned policy_of(const char *s)
{
	if (!strcmp(s, "restore"))
		return MRL_POLICY_RESTORE;
	if (!strcmp(s, "notify"))
		return MRL_POLICY_NOTIFY;
	if (!strcmp(s, "fence"))
		return MRL_POLICY_FENCE;
	if (!strcmp(s, "deny"))
		return MRL_POLICY_DENY;
	if (!strcmp(s, "redirect"))
		return MRL_POLICY_REDIRECT;
	fprintf(stderr, "mrlease: unknown policy '%s' (restore, notify, fence, deny, redirect)\n", s);
	exit(2);
}

static const struct option cli_lo[] = {
		{"seconds", 1, 0, 's'}, {"fs", 1, 0, 'f'},      {"no-lease", 0, 0, 'n'},
		{"json", 0, 0, 'j'},    {"mrs", 1, 0, 'm'},     {"size", 1, 0, 'z'},
		{"actions", 1, 0, 'a'}, {"policy", 1, 0, 'P'},  {"addr", 1, 0, 'A'},
		{"port", 1, 0, 'p'},    {"machine", 0, 0, 'M'}, {"depth", 1, 0, 'd'},
		{"block", 1, 0, 'b'},   {"quiet", 0, 0, 'q'},   {"deadline-ms", 1, 0, 'D'},
		{"help", 0, 0, 'h'},    {"no-fanotify", 0, 0, 'F'}, {"device", 1, 0, 'V'},
		{"secret-file", 1, 0, 'S'}, {"insecure", 0, 0, 'I'}, {"unix", 1, 0, 'U'},
		{0, 0, 0, 0},
};

const char *cli_opt_name(int c)
{
	for (const struct option *l = cli_lo; l->name; l++)
		if (l->val == c)
			return l->name;
	return "?";
}

/* punch, truncate, cat, comma separated, at least one */
static void check_actions(const char *s)
{
	char buf[256];
	snprintf(buf, sizeof(buf), "%s", s);
	int n = 0;
	for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save), n++)
		if (strcmp(t, "punch") && strcmp(t, "truncate") && strcmp(t, "cat")) {
			fprintf(stderr, "mrlease: --actions: unknown action '%s' (punch, truncate, cat)\n", t);
			exit(2);
		}
	if (!n || strlen(s) >= sizeof(buf)) {
		fprintf(stderr, "mrlease: --actions: a comma-separated list of punch, truncate, cat\n");
		exit(2);
	}
}

int cli_parse(int argc, char **argv, struct cli_opts *o)
{
	const struct option *lo = cli_lo;
	*o = (struct cli_opts){.seconds = 5, .mrs = 16, .size = 16 << 20, .deadline_ms = 1000,
			       .depth = 8, .block = 4096, .policy = MRL_POLICY_RESTORE,
			       .fs = "ext4", .actions = "punch,truncate,cat", .policy_name = "restore",
			       .addr = "127.0.0.1"};
	int c;
	optind = 2; /* argv[1] is the command */
	opterr = 0; /* our own messages: say which command and why */
	while ((c = getopt_long(argc, argv, ":h", lo, NULL)) != -1) {
		if (c > 0 && c < 128)
			o->given[c] = true;
		switch (c) {
		case 's': o->seconds = (unsigned)cli_num(optarg, "--seconds", 1, 31536000); o->seconds_given = true; break;
		case 'f': o->fs = optarg; break;
		case 'n': o->no_lease = true; break;
		case 'F': o->no_fanotify = true; break;
		case 'j': o->json = true; break;
		case 'm': o->mrs = (unsigned)cli_num(optarg, "--mrs", 1, MAX_MRS); break;
		case 'z': o->size = cli_size(optarg, "--size", 4096, 1ull << 40); o->size_given = true; break;
		case 'a': check_actions(optarg); o->actions = optarg; break;
		case 'P': o->policy_name = optarg; o->policy = policy_of(optarg); break;
		case 'A': o->addr = optarg; o->addr_given = true; break;
		case 'p': o->port = (unsigned)cli_num(optarg, "--port", 0, 65535); break;
		case 'M': o->machine = true; break;
		case 'd': o->depth = (unsigned)cli_num(optarg, "--depth", 1, 1024); break;
		case 'b': o->block = (unsigned)cli_size(optarg, "--block", 1, 1u << 24); break;
		case 'q': o->quiet = true; break;
		case 'D': o->deadline_ms = (unsigned)cli_num(optarg, "--deadline-ms", 1, 600000); break;
		case 'V': o->device = optarg; break;
		case 'S': o->secret_file = optarg; break;
		case 'I': o->insecure = true; break;
		case 'U': o->unix_path = optarg; break;
		case 'h': return CLI_HELP;
		case ':':
			fprintf(stderr, "mrlease: %s needs a value\n", argv[optind - 1]);
			return 2;
		default:
			fprintf(stderr, "mrlease: unknown option '%s'\n", argv[optind - 1]);
			return CLI_USAGE;
		}
	}
	if (o->insecure && o->secret_file) {
		fprintf(stderr, "mrlease: --insecure and --secret-file: choose one\n");
		return 2;
	}
	if (o->insecure && o->unix_path) {
		fprintf(stderr, "mrlease: --insecure and --unix: the socket's uid check is the credential; "
				"drop --insecure\n");
		return 2;
	}
	o->args = argv + optind;
	o->nargs = argc - optind;
	if ((o->given['z'] || o->given['m']) && o->size < (uint64_t)o->mrs * 65536) {
		fprintf(stderr, "mrlease: --size %llu with --mrs %u: at least 64 KiB per MR\n",
			(unsigned long long)o->size, o->mrs);
		return 2;
	}
	return 0;
}

/* 32 random bytes as hex, into a new file only its owner can read. */
static int secret_create(const char *path)
{
	unsigned char r[32];
	char hex[sizeof(r) * 2 + 2];
	if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r))
		return -errno;
	for (size_t i = 0; i < sizeof(r); i++)
		snprintf(hex + 2 * i, 3, "%02x", r[i]);
	hex[sizeof(r) * 2] = '\n';
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return -errno;
	ssize_t n = write(fd, hex, sizeof(r) * 2 + 1);
	int err = n == (ssize_t)(sizeof(r) * 2 + 1) ? 0 : n < 0 ? -errno : -EIO;
	if (close(fd) < 0 && !err)
		err = -errno;
	explicit_bzero(r, sizeof(r));
	explicit_bzero(hex, sizeof(hex));
	if (err)
		unlink(path);
	return err;
}

int cli_secret(const struct cli_opts *o, const char *cmd, bool create, bool peercred)
{
	if (o->insecure) {
		unsetenv("MRLEASE_SECRET_FILE");
		unsetenv("MRLEASE_SECRET");
		return 0;
	}
	if (o->secret_file) {
		if (create && access(o->secret_file, F_OK) < 0 && errno == ENOENT) {
			int r = secret_create(o->secret_file);
			if (r) {
				fprintf(stderr, "mrlease %s: create secret file %s: %s\n", cmd, o->secret_file,
					strerror(-r));
				return 2;
			}
			fprintf(stderr, "mrlease %s: wrote a new secret to %s (mode 0600): give it to the "
					"clients (--secret-file or MRLEASE_SECRET_FILE)\n", cmd, o->secret_file);
		}
		setenv("MRLEASE_SECRET_FILE", o->secret_file, 1);
		return 0;
	}
	const char *f = getenv("MRLEASE_SECRET_FILE"), *e = getenv("MRLEASE_SECRET");
	if ((f && *f) || (e && *e) || peercred)
		return 0;
	fprintf(stderr, "mrlease %s: no secret: give --secret-file PATH%s, or set MRLEASE_SECRET_FILE "
			"or MRLEASE_SECRET; --insecure %s\n", cmd,
		create ? " (created with a new secret if missing)" : "",
		create ? "serves the file to anyone who can reach the port" : "connects without one");
	return 2;
}
