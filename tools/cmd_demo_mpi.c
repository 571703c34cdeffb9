/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* `mrlease demo --device mpi`: an MPI one-sided program that knows nothing
 * of mrlease (test/mpi_win: each rank exposes a MAP_SHARED file with
 * MPI_Win_create, both stream verified MPI_Put + MPI_Get at the other) run
 * by Open MPI's mpirun over btl/ofi (sockets), with FI_HOOK=mrlease, or
 * without it (--no-lease). In the middle, the system's tools break rank 1's
 * window: a hole punched with fallocate, then a truncate below the window's
 * end. Summary: operations, errors, bytes lost where nothing was cut,
 * blocks past the cut, what the hook did (its log: breaks, restores,
 * fences, operations held and discarded) and how the job ended.
 * The program is MRLEASE_MPI_PROG or test/mpi_win beside this binary; the
 * hook, fi/libmrlease-fi.so beside it (a build tree) or libfabric's own
 * provider directory (installed). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"

#define WIN (64 * 1024)
#define STRICT (32 * 1024) /* below: never punched or cut */
#define HOLE 40960
#define CUT 49152

struct run {
	char dir[PATH_MAX], out[PATH_MAX + 8], log[PATH_MAX + 8], stop[PATH_MAX + 8];
	pid_t pid;                 /* mpirun, leader of its own process group */
	int status;
	bool ended, hung;
	/* rank 0's last "stats" line */
	uint64_t passes, ok, errors, strict_bad, other_bad;
	bool final, sigbus, btl_abort;
	/* the hook's log */
	uint64_t breaks, restores, fences, held, discarded;
};

/* the file's lines starting with prefix: how many, the last into buf */
static unsigned last_line(const char *path, const char *prefix, char *buf, size_t len)
{
	FILE *f = fopen(path, "r");
	char line[1024];
	unsigned n = 0;
	if (buf && len)
		buf[0] = 0;
	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, prefix, strlen(prefix))) {
			n++;
			if (buf)
				snprintf(buf, len, "%s", line);
		}
	if (f)
		fclose(f);
	return n;
}

static bool file_has(const char *path, const char *what)
{
	FILE *f = fopen(path, "r");
	char line[1024];
	bool found = false;
	while (f && !found && fgets(line, sizeof(line), f))
		found = strstr(line, what) != NULL;
	if (f)
		fclose(f);
	return found;
}

static void read_stats(struct run *r)
{
	char line[1024];
	r->passes = last_line(r->out, "stats rank 0 ", line, sizeof(line));
	sscanf(line, "stats rank 0 pass %*u ok %" SCNu64 " errors %" SCNu64 " strict_bad %" SCNu64
	       " other_bad %" SCNu64, &r->ok, &r->errors, &r->strict_bad, &r->other_bad);
}

static bool job_ended(struct run *r)
{
	if (!r->ended && waitpid(r->pid, &r->status, WNOHANG) == r->pid)
		r->ended = true;
	return r->ended;
}

/* until rank 0 has made `passes` passes, the job ended, or secs went by */
static void wait_passes(struct run *r, uint64_t passes, unsigned secs)
{
	uint64_t until = cli_now_ns() + (uint64_t)secs * 1000000000ull;
	for (read_stats(r); r->passes < passes && !job_ended(r) && cli_now_ns() < until; read_stats(r))
		usleep(50000);
}

static int tool(char *const argv[])
{
	return cli_run_tool(argv, NULL);
}

static int start(struct run *r, const char *prog, const char *hookdir, bool hooked)
{
	r->pid = fork();
	if (r->pid < 0)
		return -errno;
	if (r->pid)
		return 0;
	setpgid(0, 0);
	int fd = open(r->out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		_exit(127);
	dup2(fd, 1);
	dup2(fd, 2);
	if (hooked) {
		if (hookdir)
			setenv("FI_PROVIDER_PATH", hookdir, 1);
		setenv("FI_HOOK", "mrlease", 1);
		setenv("MRLEASE_LOG", r->log, 1);
	} else {
		unsetenv("FI_HOOK");
	}
	char strict[16];
	snprintf(strict, sizeof(strict), "%u", STRICT);
	char *argv[] = {"mpirun", "--allow-run-as-root", "--oversubscribe", "-np", "2",
			"--mca", "pml", "ob1", "--mca", "btl", "self,tcp,ofi",
			"--mca", "btl_ofi_provider_include", "sockets", "--mca", "osc", "rdma",
			"--mca", "osc_rdma_btls", "ofi", (char *)prog, r->dir, strict, r->stop, NULL};
	execvp("mpirun", argv);
	fprintf(stderr, "mrlease demo: cannot run mpirun: %s\n", strerror(errno));
	_exit(127);
}

/* the hook's numbers from its log */
static void read_log(struct run *r)
{
	FILE *f = fopen(r->log, "r");
	char line[1024];
	while (f && fgets(line, sizeof(line), f)) {
		unsigned long long h, d;
		const char *s = strstr(line, "]: ");
		if (!s)
			continue;
		s += 3;
		r->breaks += !strncmp(s, "break:", 6);
		r->restores += !strncmp(s, "restore:", 8);
		r->fences += !strncmp(s, "fence:", 6);
		const char *a = strstr(s, "as initiator: ");
		if (!strncmp(s, "summary:", 8) && a &&
		    sscanf(a, "as initiator: %llu posts held by a pause, %*u refused, %llu discarded", &h, &d) == 2) {
			r->held += h;
			r->discarded += d;
		}
	}
	if (f)
		fclose(f);
}

static void remove_run(struct run *r)
{
	char p[PATH_MAX + 16];
	for (int i = 0; i < 2; i++) {
		snprintf(p, sizeof(p), "%s/win.%d", r->dir, i);
		unlink(p);
	}
	unlink(r->out);
	unlink(r->log);
	unlink(r->stop);
	rmdir(r->dir);
}

int cmd_demo_mpi(const struct cli_opts *o)
{
	/* the program and the hook, beside this binary */
	char exe[PATH_MAX], prog[PATH_MAX + 16], hookdir[PATH_MAX + 8], so[PATH_MAX + 32];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	exe[n > 0 ? n : 0] = 0;
	char *bindir = dirname(exe);
	const char *p = getenv("MRLEASE_MPI_PROG");
	snprintf(prog, sizeof(prog), "%s", p && *p ? p : "");
	if (!*prog)
		snprintf(prog, sizeof(prog), "%s/test/mpi_win", bindir);
	if (access(prog, X_OK)) {
		fprintf(stderr, "mrlease demo: no MPI program at %s (make tests builds test/mpi_win; "
			"MRLEASE_MPI_PROG names another)\n", prog);
		return 2;
	}
	snprintf(hookdir, sizeof(hookdir), "%s/fi", bindir);
	snprintf(so, sizeof(so), "%s/libmrlease-fi.so", hookdir);
	bool local_hook = access(so, R_OK) == 0;

	struct run *r = calloc(1, sizeof(*r));
	if (!r)
		return 2;
	const char *base = !strcmp(o->fs, "tmpfs") ? "/dev/shm" : "/var/tmp";
	snprintf(r->dir, sizeof(r->dir), "%s/mrlease-demo-mpi-XXXXXX", base);
	if (!mkdtemp(r->dir)) {
		fprintf(stderr, "mrlease demo: mkdtemp in %s: %s\n", base, strerror(errno));
		free(r);
		return 2;
	}
	snprintf(r->out, sizeof(r->out), "%s/out", r->dir);
	snprintf(r->log, sizeof(r->log), "%s/log", r->dir);
	snprintf(r->stop, sizeof(r->stop), "%s/stop", r->dir);
	char win1[PATH_MAX + 16];
	for (int i = 0; i < 2; i++) {
		char path[PATH_MAX + 16];
		static uint8_t buf[WIN];
		snprintf(path, sizeof(path), "%s/win.%d", r->dir, i);
		if (getrandom(buf, sizeof(buf), 0) != (ssize_t)sizeof(buf))
			memset(buf, 0x5a + i, sizeof(buf));
		int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (fd < 0 || write(fd, buf, sizeof(buf)) != (ssize_t)sizeof(buf)) {
			fprintf(stderr, "mrlease demo: %s: %s\n", path, strerror(errno));
			return 2;
		}
		close(fd);
		if (i)
			snprintf(win1, sizeof(win1), "%s", path);
	}
	bool hooked = !o->no_lease;
	if (start(r, prog, local_hook ? hookdir : NULL, hooked)) {
		fprintf(stderr, "mrlease demo: fork: %s\n", strerror(errno));
		return 2;
	}
	if (!o->quiet)
		fprintf(stderr, "mrlease demo: mpirun -np 2 %s (osc/rdma over btl/ofi, sockets), %s\n",
			prog, hooked ? "FI_HOOK=mrlease" : "no hook");
	/* the stream going, then a hole, then a cut; each followed by two
	 * passes of rank 0 over the whole window (or the job's end) */
	wait_passes(r, 1, 60);
	bool started = r->passes >= 1 && !r->ended;
	uint64_t before = r->passes, after_punch = 0;
	char off_s[16], len_s[16], cut_s[16];
	snprintf(off_s, sizeof(off_s), "%u", HOLE);
	snprintf(len_s, sizeof(len_s), "%u", 4096);
	snprintf(cut_s, sizeof(cut_s), "%u", CUT);
	if (started) {
		char *punch[] = {"fallocate", "--punch-hole", "-o", off_s, "-l", len_s, win1, NULL};
		tool(punch);
		wait_passes(r, before + 2, 30);
		after_punch = r->passes;
		if (!o->quiet)
			fprintf(stderr, "  hole punched at %u+4096: rank 0 ok %" PRIu64 " errors %" PRIu64 "\n",
				HOLE, r->ok, r->errors);
	}
	if (started && !r->ended) {
		char *trunc[] = {"truncate", "-s", cut_s, win1, NULL};
		tool(trunc);
		wait_passes(r, after_punch + 2, 30);
		if (!o->quiet)
			fprintf(stderr, "  truncated to %u: rank 0 ok %" PRIu64 " errors %" PRIu64 "%s\n", CUT,
				r->ok, r->errors, r->ended ? " (the job ended)" : "");
	}
	int fd = open(r->stop, O_WRONLY | O_CREAT, 0644);
	if (fd >= 0)
		close(fd);
	uint64_t until = cli_now_ns() + 30 * 1000000000ull;
	while (!job_ended(r) && cli_now_ns() < until)
		usleep(50000);
	if (!r->ended) { /* spinning (a provider recv'ing into a cut tail gets EFAULT for ever) */
		r->hung = true;
		kill(-r->pid, SIGKILL);
		waitpid(r->pid, &r->status, 0);
		r->ended = true;
	}
	read_stats(r);
	r->final = last_line(r->out, "final rank 0 ", NULL, 0) > 0;
	r->sigbus = file_has(r->out, "Bus error") || file_has(r->out, "signal 7");
	r->btl_abort = file_has(r->out, "will now abort");
	read_log(r);
	bool normal = !r->hung && WIFEXITED(r->status) && WEXITSTATUS(r->status) == 0 && r->final;
	const char *end = r->hung ? "hung (killed)" : r->sigbus ? "SIGBUS" : r->btl_abort ? "aborted by btl/ofi"
			: normal ? "ended normally" : "failed";
	if (o->json) {
		printf("{\"device\":\"mpi\",\"leases\":%s,\"fs\":\"%s\",\"started\":%s,\"passes\":%" PRIu64
		       ",\"ops\":%" PRIu64 ",\"errors\":%" PRIu64 ",\"lost_below_cut\":%" PRIu64
		       ",\"past_cut\":%" PRIu64 ",\"breaks\":%" PRIu64 ",\"restores\":%" PRIu64
		       ",\"fences\":%" PRIu64 ",\"held\":%" PRIu64 ",\"discarded\":%" PRIu64
		       ",\"job\":\"%s\",\"normal\":%s}\n",
		       hooked ? "true" : "false", o->fs, started ? "true" : "false", r->passes, r->ok,
		       r->errors, r->strict_bad, r->other_bad, r->breaks, r->restores, r->fences, r->held,
		       r->discarded, end, normal ? "true" : "false");
	} else {
		printf("\nmrlease demo: Open MPI one-sided (btl/ofi, sockets), 2 ranks, a %u KiB window each "
		       "on %s, hook %s\n\n", WIN / 1024, o->fs, hooked ? "ON (FI_HOOK=mrlease)" : "OFF");
		printf("  %-30s fallocate --punch-hole %u+4096, truncate to %u (rank 1's window)\n",
		       "adversary", HOLE, CUT);
		printf("  %-30s %" PRIu64 " (%" PRIu64 " passes of rank 0)\n", "verified Put+Get", r->ok, r->passes);
		printf("  %-30s %" PRIu64 "\n", "errors", r->errors);
		printf("  %-30s %" PRIu64 "\n", "blocks lost below the cut", r->strict_bad);
		printf("  %-30s %" PRIu64 " (what is past the end reads as zeroes)\n", "blocks past the cut",
		       r->other_bad);
		if (hooked)
			printf("  %-30s %" PRIu64 " breaks, %" PRIu64 " restores (same key), %" PRIu64
			       " fences; %" PRIu64 " posts held, %" PRIu64 " discarded past the end\n",
			       "hook", r->breaks, r->restores, r->fences, r->held, r->discarded);
		printf("  %-30s %s\n\n", "job", end);
	}
	if (!o->quiet && !normal && !started)
		fprintf(stderr, "mrlease demo: the job did not start; its output is in %s\n", r->out);
	else
		remove_run(r);
	int rc = !hooked ? 0 : normal && r->errors == 0 && r->strict_bad == 0 ? 0 : 1;
	free(r);
	return rc;
}
