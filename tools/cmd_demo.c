/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* `mrlease demo`: a server exporting a file, a client streaming verified RMA
 * at it and an adversary using the system's own truncate/fallocate/cat, with
 * leases on (or off, to show what they prevent). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"

struct child {
	pid_t pid;
	FILE *out;
	int fd;
	char line[512];
	size_t len;
};

static int spawn(struct child *c, char *const argv[])
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	c->pid = fork();
	if (c->pid < 0)
		return -errno;
	if (c->pid == 0) {
		dup2(p[1], 1);
		execv("/proc/self/exe", argv);
		_exit(127);
	}
	close(p[1]);
	c->fd = p[0];
	fcntl(c->fd, F_SETFL, O_NONBLOCK);
	c->len = 0;
	return 0;
}

/* Read complete lines from a child; calls fn for each. */
static void pump(struct child *c, void (*fn)(const char *line, void *arg), void *arg)
{
	for (;;) {
		ssize_t n = read(c->fd, c->line + c->len, sizeof(c->line) - 1 - c->len);
		if (n <= 0)
			return;
		c->len += (size_t)n;
		c->line[c->len] = 0;
		char *nl;
		while ((nl = strchr(c->line, '\n'))) {
			*nl = 0;
			fn(c->line, arg);
			size_t rest = c->len - (size_t)(nl + 1 - c->line);
			memmove(c->line, nl + 1, rest);
			c->len = rest;
			c->line[c->len] = 0;
		}
		if (c->len == sizeof(c->line) - 1)
			c->len = 0; /* overlong line: drop */
	}
}

struct demo_state {
	uint64_t c_transfers, c_failed, c_mismatches, c_refused, c_final_mis;
	uint64_t s_breaks, s_pauses, s_restores, s_fences;
	char s_final[512], c_final[512];
	uint64_t breaks_seen[MAX_SAMPLES]; /* server: (seen, read) pairs */
	uint64_t breaks_read[MAX_SAMPLES];
	size_t nbreaks;
	unsigned port;
};

static void on_server_line(const char *l, void *arg)
{
	struct demo_state *d = arg;
	uint64_t a, b, c, e;
	if (sscanf(l, "port %u", &d->port) == 1)
		return;
	if (sscanf(l, "break %" SCNu64 " %" SCNu64, &a, &b) == 2 && d->nbreaks < MAX_SAMPLES) {
		d->breaks_seen[d->nbreaks] = a;
		d->breaks_read[d->nbreaks++] = b;
	} else if (sscanf(l, "stats %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64, &a, &b, &c, &e) == 4) {
		d->s_breaks = a, d->s_pauses = b, d->s_restores = c, d->s_fences = e;
	} else if (!strncmp(l, "final ", 6)) {
		snprintf(d->s_final, sizeof(d->s_final), "%s", l + 6);
	}
}

static void on_client_line(const char *l, void *arg)
{
	struct demo_state *d = arg;
	uint64_t a, b, c, e;
	if (sscanf(l, "stats %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64, &a, &b, &c, &e) == 4)
		d->c_transfers = a, d->c_failed = b, d->c_mismatches = c, d->c_refused = e;
	else if (!strncmp(l, "final ", 6))
		snprintf(d->c_final, sizeof(d->c_final), "%s", l + 6);
}

static double json_num(const char *js, const char *key)
{
	char k[64];
	snprintf(k, sizeof(k), "\"%s\":", key);
	const char *p = strstr(js, k);
	return p ? strtod(p + strlen(k), NULL) : 0;
}

/* Run a real tool; return its exit status. The entry time is recorded. */
struct adv_result {
	unsigned punches, truncates, cats, truncate_retries, tool_errors;
	uint64_t t0[MAX_SAMPLES];
	size_t nt0;
};

/* The adversary: the system's own tools against the served file. */
static void adversary(const char *file, uint64_t size, unsigned seconds, const char *actions,
		      struct adv_result *r, volatile int *server_dead)
{
	uint64_t start = cli_now_ns(), until = start + (uint64_t)seconds * 1000000000ull;
	uint64_t rng = 0xfeedbeef;
	bool truncated = false;
	char a1[32], a2[32], sz[32];
	memset(r, 0, sizeof(*r));
	usleep(300000); /* let the stream get going */
	while (cli_now_ns() < until - 300000000ull && !*server_dead) {
		cli_rand(&rng);
		unsigned pick = (unsigned)(rng >> 40) % 3;
		uint64_t t0;
		bool late = cli_now_ns() > start + (until - start) * 2 / 3;
		if (strstr(actions, "truncate") && late && !truncated) {
			/* cut into the last MR at a non-page boundary */
			snprintf(sz, sizeof(sz), "%" PRIu64, size - size / 16 - 1000);
			char *argv[] = {"truncate", "-s", sz, (char *)file, NULL};
			int st = cli_run_tool_retry(argv, 200, &r->truncate_retries, &t0);
			if (r->nt0 < MAX_SAMPLES)
				r->t0[r->nt0++] = t0;
			r->tool_errors += st != 0;
			r->truncates++;
			truncated = true;
		} else if (pick == 0 && strstr(actions, "punch")) {
			uint64_t pages = size / 4096;
			uint64_t off = ((rng >> 8) % pages) * 4096;
			uint64_t len = (1 + (rng >> 20) % 8) * 4096;
			if (truncated && off + len > size - size / 16 - 1000)
				continue;
			snprintf(a1, sizeof(a1), "%" PRIu64, off);
			snprintf(a2, sizeof(a2), "%" PRIu64, len);
			char *argv[] = {"fallocate", "--punch-hole", "-o", a1, "-l", a2, (char *)file, NULL};
			r->tool_errors += cli_run_tool(argv, &t0) != 0;
			if (r->nt0 < MAX_SAMPLES)
				r->t0[r->nt0++] = t0;
			r->punches++;
		} else if (pick == 1 && strstr(actions, "cat")) {
			char cmd[600];
			snprintf(cmd, sizeof(cmd), "cat '%s' > /dev/null", file);
			char *argv[] = {"sh", "-c", cmd, NULL};
			r->tool_errors += cli_run_tool(argv, &t0) != 0;
			r->cats++;
		} else {
			continue;
		}
		usleep(150000 + (unsigned)((rng >> 30) % 200000));
	}
}

int cmd_demo(const struct cli_opts *o)
{
	if (o->device && !strcmp(o->device, "mpi")) {
		/* a fixed MPI job and a fixed adversary: only --fs, --no-lease, --json, --quiet */
		static const char unused[] = "smzaFPD";
		for (const char *c = unused; *c; c++)
			if (o->given[(int)*c]) {
				fprintf(stderr, "mrlease demo: --%s does not apply to --device mpi\n",
					cli_opt_name(*c));
				return 2;
			}
		if (strcmp(o->fs, "ext4") && strcmp(o->fs, "tmpfs")) {
			fprintf(stderr, "mrlease: --fs ext4 or tmpfs\n");
			return 2;
		}
		return cmd_demo_mpi(o);
	}
	if (o->device && strcmp(o->device, "fabric")) {
		if (strcmp(o->device, "uring")) {
			fprintf(stderr, "mrlease: --device fabric, uring or mpi\n");
			return 2;
		}
		/* one tmpfs buffer, restored (or redirected) by the library, a fixed adversary */
		static const char unused[] = "maF";
		for (const char *c = unused; *c; c++)
			if (o->given[(int)*c]) {
				fprintf(stderr, "mrlease demo: --%s does not apply to --device uring\n",
					cli_opt_name(*c));
				return 2;
			}
		if (o->given['f'] && strcmp(o->fs, "tmpfs")) {
			fprintf(stderr, "mrlease demo: --device uring runs on tmpfs only\n");
			return 2;
		}
		return cmd_demo_uring(o);
	}
	if (strcmp(o->fs, "ext4") && strcmp(o->fs, "tmpfs")) {
		fprintf(stderr, "mrlease: --fs ext4 or tmpfs\n");
		return 2;
	}
	char dir[256], file[300], secret[300], port_s[16], mrs_s[16], size_s[32], secs_s[16], dl_s[16];
	const char *base = !strcmp(o->fs, "tmpfs") ? "/dev/shm" : "/var/tmp";
	snprintf(dir, sizeof(dir), "%s/mrlease-demo-XXXXXX", base);
	if (!mkdtemp(dir)) {
		fprintf(stderr, "mrlease demo: mkdtemp in %s: %s\n", base, strerror(errno));
		return 2;
	}
	snprintf(file, sizeof(file), "%s/exported", dir);
	/* the server writes a new secret here (the directory is ours alone),
	 * the client reads it */
	snprintf(secret, sizeof(secret), "%s/secret", dir);
	snprintf(mrs_s, sizeof(mrs_s), "%u", o->mrs);
	snprintf(size_s, sizeof(size_s), "%" PRIu64, o->size);
	snprintf(secs_s, sizeof(secs_s), "%u", o->seconds + 30);
	snprintf(dl_s, sizeof(dl_s), "%u", o->deadline_ms);
	struct demo_state *d = calloc(1, sizeof(*d));
	struct child srv, cli;
	char *sargv[20] = {"mrlease", "serve", file, "--machine", "--mrs", mrs_s, "--size", size_s,
			   "--seconds", secs_s, "--deadline-ms", dl_s, "--policy", (char *)o->policy_name,
			   "--secret-file", secret};
	int sargc = 16;
	if (o->no_lease)
		sargv[sargc++] = "--no-lease";
	if (o->no_fanotify)
		sargv[sargc++] = "--no-fanotify";
	sargv[sargc] = NULL;
	signal(SIGPIPE, SIG_IGN);
	if (spawn(&srv, sargv)) {
		fprintf(stderr, "mrlease demo: cannot start the server\n");
		return 2;
	}
	uint64_t t_start = cli_now_ns();
	while (!d->port && cli_now_ns() - t_start < 10000000000ull) {
		struct pollfd p = {.fd = srv.fd, .events = POLLIN};
		poll(&p, 1, 100);
		pump(&srv, on_server_line, d);
		if (waitpid(srv.pid, NULL, WNOHANG) == srv.pid) {
			fprintf(stderr, "mrlease demo: the server exited before listening\n");
			return 2;
		}
	}
	if (!d->port) {
		fprintf(stderr, "mrlease demo: the server did not start listening\n");
		kill(srv.pid, SIGKILL);
		return 2;
	}
	snprintf(port_s, sizeof(port_s), "%u", d->port);
	snprintf(secs_s, sizeof(secs_s), "%u", o->seconds);
	char hostport[64];
	snprintf(hostport, sizeof(hostport), "127.0.0.1:%s", port_s);
	char *cargv[] = {"mrlease", "client", hostport, "--machine", "--seconds", secs_s,
			 "--secret-file", secret, NULL};
	if (spawn(&cli, cargv)) {
		fprintf(stderr, "mrlease demo: cannot start the client\n");
		kill(srv.pid, SIGKILL);
		return 2;
	}
	/* the adversary runs in its own process and reports through shared memory */
	struct adv_result *adv = mmap(NULL, sizeof(*adv) + sizeof(int), PROT_READ | PROT_WRITE,
				      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	volatile int *server_dead = (int *)(adv + 1);
	pid_t apid = fork();
	if (apid == 0) {
		adversary(file, o->size, o->seconds, o->actions, adv, server_dead);
		_exit(0);
	}
	bool tty = isatty(2) && !o->quiet;
	uint64_t last = 0;
	int srv_status = -1, cli_status = -1;
	bool srv_done = false, cli_done = false, adv_done = false;
	while (!cli_done || !adv_done) {
		struct pollfd p[2] = {{.fd = srv.fd, .events = POLLIN}, {.fd = cli.fd, .events = POLLIN}};
		poll(p, 2, 100);
		pump(&srv, on_server_line, d);
		pump(&cli, on_client_line, d);
		int st;
		if (!srv_done && waitpid(srv.pid, &st, WNOHANG) == srv.pid) {
			srv_done = true;
			srv_status = st;
			*server_dead = 1;
		}
		if (!cli_done && waitpid(cli.pid, &st, WNOHANG) == cli.pid) {
			cli_done = true;
			cli_status = st;
			pump(&cli, on_client_line, d);
		}
		if (!adv_done && waitpid(apid, &st, WNOHANG) == apid)
			adv_done = true;
		if (cli_now_ns() - t_start > (uint64_t)(o->seconds + 60) * 1000000000ull) {
			kill(cli.pid, SIGKILL);
			kill(apid, SIGKILL);
		}
		uint64_t t = cli_now_ns();
		if (!o->quiet && t - last > (tty ? 200000000ull : 1000000000ull)) {
			fprintf(stderr, "%s[%5.1fs] transfers %-9" PRIu64 " failed %-5" PRIu64
				" mismatched %-4" PRIu64 " breaks %-4" PRIu64 " restores %-5" PRIu64
				" fences %-3" PRIu64 "%s%s",
				tty ? "\r" : "", (t - t_start) / 1e9, d->c_transfers, d->c_failed,
				d->c_mismatches, d->s_breaks, d->s_restores, d->s_fences,
				srv_done ? " SERVER DIED" : "", tty ? "" : "\n");
			last = t;
		}
	}
	if (tty)
		fputc('\n', stderr);
	/* a third process reads the file back: every byte the client's final pass
	 * wrote after the last resume must be there */
	uint64_t readback_mis = 0, fsize = 0;
	if (d->c_final[0]) {
		int fd = open(file, O_RDONLY);
		struct stat st;
		if (fd >= 0 && fstat(fd, &st) == 0) {
			fsize = (uint64_t)st.st_size;
			uint64_t each = o->size / o->mrs;
			uint8_t *buf = malloc(1 << 16);
			for (uint64_t off = 0; off < fsize && off < each * o->mrs; off += 1 << 16) {
				ssize_t n = pread(fd, buf, 1 << 16, (off_t)off);
				for (ssize_t i = 0; i < n; i++) {
					uint64_t fo = off + (uint64_t)i;
					if (buf[i] != cli_pattern((uint32_t)(fo / each), fo % each, CLI_FINAL_SEQ)) {
						readback_mis++;
						break;
					}
				}
			}
			free(buf);
			close(fd);
		}
	}
	if (!srv_done) {
		kill(srv.pid, SIGTERM);
		waitpid(srv.pid, &srv_status, 0);
		pump(&srv, on_server_line, d);
	}
	/* final numbers */
	/* a client that never reported its end: count what it said while running,
	 * plus one failure for the end it never reached */
	double transfers = d->c_final[0] ? json_num(d->c_final, "transfers") : (double)d->c_transfers;
	double failed = d->c_final[0] ? json_num(d->c_final, "failed") : (double)d->c_failed + 1;
	double mism = (d->c_final[0] ? json_num(d->c_final, "mismatches") : (double)d->c_mismatches) +
		      json_num(d->c_final, "final_mismatches") + (double)readback_mis;
	double refused = json_num(d->c_final, "refused");
	double mib_s = json_num(d->c_final, "mib_s");
	double breaks = json_num(d->s_final, "breaks"), pauses = json_num(d->s_final, "pauses");
	double restores = json_num(d->s_final, "restores"), fences = json_num(d->s_final, "fences");
	double p50 = json_num(d->s_final, "pause_us_p50"), p99 = json_num(d->s_final, "pause_us_p99");
	double untouched = json_num(d->s_final, "untouched");
	double fan_ev = json_num(d->s_final, "fan_events"), fan_lay = json_num(d->s_final, "fan_layout");
	double fan_data = json_num(d->s_final, "fan_pass_data"), fan_out = json_num(d->s_final, "fan_pass_range");
	double classify_us = json_num(d->s_final, "classify_us");
	double redirects = json_num(d->s_final, "redirects");
	char wbuf[96];
	const char *watchers = cli_watcher_names((unsigned)json_num(d->s_final, "watchers"), wbuf, sizeof(wbuf));
	/* break -> event: from the tool's start (fork+exec included) to the
	 * server reading the MR event */
	uint64_t lat[MAX_SAMPLES];
	size_t nl = 0;
	for (size_t i = 0; i < adv->nt0; i++)
		for (size_t k = 0; k < d->nbreaks; k++)
			if (d->breaks_read[k] >= adv->t0[i]) {
				if (d->breaks_seen[k] >= adv->t0[i] && nl < MAX_SAMPLES)
					lat[nl++] = d->breaks_read[k] - adv->t0[i];
				break;
			}
	double e50 = cli_pct(lat, nl, 50) / 1e3, e99 = cli_pct(lat, nl, 99) / 1e3;
	bool server_crashed = srv_done && !(WIFEXITED(srv_status) && WEXITSTATUS(srv_status) == 0);
	if (o->json) {
		printf("{\"leases\":%s,\"fs\":\"%s\",\"seconds\":%u,\"mrs\":%u,\"transfers\":%.0f,"
		       "\"failed\":%.0f,\"mismatches\":%.0f,\"refused\":%.0f,\"readback_mismatches\":%" PRIu64
		       ",\"breaks\":%.0f,\"pauses\":%.0f,\"restores\":%.0f,\"fences\":%.0f,"
		       "\"pause_us_p50\":%.1f,\"pause_us_p99\":%.1f,\"event_us_p50\":%.1f,\"event_us_p99\":%.1f,"
		       "\"punches\":%u,\"truncates\":%u,\"cats\":%u,\"truncate_retries\":%u,"
		       "\"server_crashed\":%s,\"server_signal\":%d,\"mib_s\":%.1f,\"file_size\":%" PRIu64
		       ",\"watchers\":\"%s\",\"untouched_mrs\":%.0f,\"fan_events\":%.0f,\"fan_layout\":%.0f"
		       ",\"fan_data\":%.0f,\"fan_outside\":%.0f,\"classify_us\":%.2f"
		       ",\"policy\":\"%s\",\"redirects\":%.0f}\n",
		       o->no_lease ? "false" : "true", o->fs, o->seconds, o->mrs, transfers, failed, mism,
		       refused, readback_mis, breaks, pauses, restores, fences, p50, p99, e50, e99,
		       adv->punches, adv->truncates, adv->cats, adv->truncate_retries,
		       server_crashed ? "true" : "false",
		       srv_done && WIFSIGNALED(srv_status) ? WTERMSIG(srv_status) : 0, mib_s, fsize,
		       watchers, untouched, fan_ev, fan_lay, fan_data, fan_out, classify_us, o->policy_name,
		       redirects);
	} else {
		printf("\nmrlease demo: %s on %s, %u s, %u MRs over %" PRIu64 " bytes, leases %s, policy %s\n\n",
		       "tcp;ofi_rxm loopback", o->fs, o->seconds, o->mrs, o->size,
		       o->no_lease ? "OFF" : "ON", o->policy_name);
		printf("  %-28s %s\n", "watchers", watchers);
		if (fan_ev > 0)
			printf("  %-28s %.0f: %.0f layout, %.0f read/write, %.0f outside every MR; %.1f us to classify\n",
			       "  fanotify events", fan_ev, fan_lay, fan_data, fan_out, classify_us);
		printf("  %-28s %s\n", "adversary", "");
		printf("  %-28s %u fallocate --punch-hole, %u truncate (%u EAGAIN retries), %u cat\n",
		       "  actions", adv->punches, adv->truncates, adv->truncate_retries, adv->cats);
		printf("  %-28s %.0f (%.1f MiB/s)\n", "transfers", transfers, mib_s);
		printf("  %-28s %.0f\n", "failed", failed);
		printf("  %-28s %.0f\n", "mismatched (silent changes)", mism);
		printf("  %-28s %.0f\n", "refused (fenced, clean)", refused);
		printf("  %-28s %.0f\n", "breaks", breaks);
		printf("  %-28s %.0f\n", "pauses (MRs)", pauses);
		printf("  %-28s %.0f of %u\n", "MRs never paused", untouched, o->mrs);
		printf("  %-28s %.0f\n", "restores", restores);
		if (!strcmp(o->policy_name, "redirect"))
			printf("  %-28s %.0f\n", "redirects (onto scratch)", redirects);
		printf("  %-28s %.0f\n", "fences", fences);
		printf("  %-28s p50 %.1f us, p99 %.1f us\n", "breaker held (pause)", p50, p99);
		printf("  %-28s p50 %.1f us, p99 %.1f us\n", "tool start -> MR event", e50, e99);
		if (server_crashed)
			printf("  %-28s %s\n", "server",
			       WIFSIGNALED(srv_status) ? strsignal(WTERMSIG(srv_status)) : "exited with error");
		printf("\n");
	}
	/* tidy up */
	unlink(file);
	unlink(secret);
	rmdir(dir);
	(void)cli_status;
	free(d);
	bool ok = !o->no_lease && failed == 0 && mism == 0 && !server_crashed;
	return o->no_lease ? 0 : ok ? 0 : 1;
}
