/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* What the mrlease commands share: the parsed command line, time and
 * percentiles, the stream's data pattern, and running the system's tools. */
#ifndef MRL_CLI_H
#define MRL_CLI_H
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MAX_MRS 256
#define MAX_SAMPLES 4096

/* Every option of every command: one parser, each command reads its own. */
struct cli_opts {
	unsigned seconds, mrs, deadline_ms, port, depth, block, policy;
	uint64_t size;
	const char *fs, *actions, *policy_name, *device, *addr, *secret_file, *unix_path;
	bool seconds_given, size_given, addr_given, insecure;
	bool no_lease, no_fanotify, json, machine, quiet;
	bool given[128]; /* by short option letter: which options were on the line */
	char **args; /* the operands after the command */
	int nargs;
};

/* Beyond an exit status, what cli_parse or a command may return. */
#define CLI_USAGE (-1) /* print the usage to stderr, exit 2 */
#define CLI_HELP (-2)  /* print the usage to stdout, exit 0 */

/* 0, CLI_HELP, CLI_USAGE, or 2 once the reason is printed */
int cli_parse(int argc, char **argv, struct cli_opts *o);

int cmd_demo(const struct cli_opts *o);
int cmd_demo_uring(const struct cli_opts *o); /* demo --device uring */
int cmd_serve(const struct cli_opts *o);
int cmd_client(const struct cli_opts *o);
int cmd_coverage(const struct cli_opts *o);

/* An unsigned decimal number in [lo, hi] (cli_size: K/M/G suffixes too), or
 * exit 2 naming what it was for and what is wrong. */
unsigned long long cli_num(const char *s, const char *what, unsigned long long lo, unsigned long long hi);
unsigned long long cli_size(const char *s, const char *what, unsigned long long lo, unsigned long long hi);
/* the long name of a short option letter */
const char *cli_opt_name(int c);
/* The endpoint's secret for serve (create: a missing --secret-file gets a
 * new random secret, mode 0600) and client: --secret-file becomes
 * MRLEASE_SECRET_FILE for the library, --insecure clears the environment's
 * secret; peercred (a unix: bootstrap, the uid proves the peer) needs none.
 * 0, or 2 once the reason is printed (no secret, no --insecure). */
int cli_secret(const struct cli_opts *o, const char *cmd, bool create, bool peercred);
/* Report a library error with its detail and exit 2. */
void cli_die(const char *what, int err);

uint64_t cli_now_ns(void); /* CLOCK_MONOTONIC */
/* The p-th percentile of v[0..n) (sorts v); 0 when n is 0. */
uint64_t cli_pct(uint64_t *v, size_t n, int p);

/* Set by cli_on_stop, the SIGTERM/SIGINT handler. */
extern volatile sig_atomic_t cli_stop;
void cli_on_stop(int sig);

/* The generators behind the client's and the adversaries' choices. */
static inline uint64_t cli_rand(uint64_t *state)
{
	return *state = *state * 6364136223846793005ull + 1442695040888963407ull;
}

/* Deterministic content: the verifier and the final read-back agree on it. */
static inline uint8_t cli_pattern(uint32_t mr, uint64_t off, uint32_t seq)
{
	uint64_t x = ((uint64_t)mr << 40) ^ off ^ ((uint64_t)seq * 0x9e3779b97f4a7c15ull);
	x ^= x >> 29;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 32;
	return (uint8_t)x;
}
#define CLI_FINAL_SEQ 0xfffffffu

/* "fanotify+inotify" from a MRL_WATCH_* mask, "none" for 0 */
const char *cli_watcher_names(unsigned mask, char *buf, size_t n);

/* Run a real tool quietly, return its exit status; *t0 gets the time it was
 * started (cli_now_ns) when t0 is not NULL. */
int cli_run_tool(char *const argv[], uint64_t *t0);
/* The same, again every 5 ms while it fails, at most tries times; counts the
 * failures in *retries, *t0 is the first attempt's start. */
int cli_run_tool_retry(char *const argv[], int tries, unsigned *retries, uint64_t *t0);
#endif
