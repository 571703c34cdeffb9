/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Shared helpers for the test programs: assertions that name what failed,
 * skips with a reason, scratch files on ext4 and tmpfs, event waiting. */
#ifndef MRL_TEST_HELPERS_H
#define MRL_TEST_HELPERS_H

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mrlease.h"

static int t_failures;

/* Every test's endpoints authenticate, with a secret from the environment
 * (MRLEASE_SECRET), unless the test says otherwise. */
__attribute__((constructor)) static void t_secret_env(void)
{
	setenv("MRLEASE_SECRET", "mrlease-test-secret-6b1f0c9e", 0);
}

#define CHECK(cond, ...)                                                                   \
	do {                                                                               \
		if (!(cond)) {                                                             \
			fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__,  \
				#cond);                                                    \
			fprintf(stderr, __VA_ARGS__);                                      \
			fprintf(stderr, " [last error: %s]\n", mrl_last_error());         \
			t_failures++;                                                      \
		}                                                                          \
	} while (0)

/* A call that must fail with err (a negative errno) and say why. */
#define NEG(expr, err)                                                                     \
	do {                                                                               \
		int r_ = (expr);                                                           \
		CHECK(r_ == (err), "%s returned %d (%s), expected %d", #expr, r_,          \
		      r_ < 0 ? mrl_strerror(r_) : "", err);                                \
		if (r_ < 0)                                                                \
			CHECK(*mrl_last_error(), "%s left no message", #expr);             \
	} while (0)

/* evaluates cond once: it often registers something */
#define REQUIRE(cond, ...)                                                                 \
	do {                                                                               \
		int before_ = t_failures;                                                  \
		CHECK(cond, __VA_ARGS__);                                                  \
		if (t_failures != before_)                                                 \
			exit(1);                                                           \
	} while (0)

static inline __attribute__((noreturn)) void t_skip(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "SKIP: ");
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(77);
}

static inline int t_done(const char *name)
{
	if (t_failures) {
		fprintf(stderr, "%s: %d check(s) failed\n", name, t_failures);
		return 1;
	}
	printf("%s: ok\n", name);
	return 0;
}

/* A deadline that only detects a hang: long enough for a machine at load
 * 10, never a measure of speed. */
#define T_HANG_MS 30000

/* Repetition counts for races a test provokes many times: sanitizer builds
 * run 5-15x slower, so they try the race fewer times (each try still
 * asserts everything) and the suite stays inside its time budget on a busy
 * machine. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define T_SANITIZED 1
#else
#define T_SANITIZED 0
#endif
static inline int t_rounds(int plain, int sanitized)
{
	return T_SANITIZED ? sanitized : plain;
}

static inline uint64_t t_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

#define T_TMPFS_MAGIC 0x01021994
#define T_EXT4_MAGIC 0xEF53

/* A scratch directory on the requested filesystem: "ext4" (the test's own
 * directory under /var/tmp) or "tmpfs" (/dev/shm). Skips if not available. */
static inline void t_scratch(const char *fs, char *dir, size_t dirsz)
{
	const char *base = !strcmp(fs, "tmpfs") ? "/dev/shm" : "/var/tmp";
	struct statfs s;
	snprintf(dir, dirsz, "%s/mrl-test-XXXXXX", base);
	if (!mkdtemp(dir))
		t_skip("cannot make a directory under %s: %s", base, strerror(errno));
	if (statfs(dir, &s) < 0)
		t_skip("statfs %s: %s", dir, strerror(errno));
	if (!strcmp(fs, "tmpfs") && s.f_type != T_TMPFS_MAGIC)
		t_skip("%s is not tmpfs", base);
	if (!strcmp(fs, "ext4") && s.f_type != T_EXT4_MAGIC)
		t_skip("%s is not ext4 (f_type %#lx)", base, (unsigned long)s.f_type);
}

/* Create path with size bytes of a recognisable pattern. */
static inline void t_make_file(const char *path, size_t size)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0) {
		fprintf(stderr, "create %s: %s\n", path, strerror(errno));
		exit(1);
	}
	char buf[4096];
	for (size_t off = 0; off < size; off += sizeof(buf)) {
		for (size_t i = 0; i < sizeof(buf); i++)
			buf[i] = (char)((off + i) * 7 + 1);
		size_t n = size - off < sizeof(buf) ? size - off : sizeof(buf);
		if (write(fd, buf, n) != (ssize_t)n) {
			fprintf(stderr, "write %s: %s\n", path, strerror(errno));
			exit(1);
		}
	}
	close(fd);
}

/* Run a shell command; return its exit status (or -1). */
static inline int t_sh(const char *fmt, ...)
{
	char cmd[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	int st = system(cmd);
	return st == -1 ? -1 : WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Start a shell command in the background; returns its pid. */
static inline pid_t t_sh_bg(const char *fmt, ...)
{
	char cmd[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	pid_t pid = fork();
	if (pid == 0) {
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	return pid;
}

/* Run a command, capture its standard output (echoed with the command);
 * return its exit status. */
static inline int t_capture(const char *cmd, char *out, size_t outsz)
{
	FILE *f = popen(cmd, "r");
	if (!f)
		return -1;
	size_t n = fread(out, 1, outsz - 1, f);
	out[n] = 0;
	int st = pclose(f);
	printf("%s -> %s", cmd, out);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static inline int t_wait_status(pid_t pid)
{
	int st;
	if (waitpid(pid, &st, 0) < 0)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Wait for a child up to ms, a bound only to tell a hang from a slow
 * machine: its exit status (128 + signal when killed by one), -1 when it
 * cannot be waited for, or -2 when it hung (it is killed then). */
static inline int t_wait_child(pid_t pid, unsigned ms)
{
	uint64_t until = t_now_ns() + (uint64_t)ms * 1000000ull;
	for (;;) {
		int st;
		pid_t w = waitpid(pid, &st, WNOHANG);
		if (w == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		if (w < 0)
			return -1;
		if (t_now_ns() > until)
			break;
		usleep(1000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	return -2;
}

/* A whole test run in a forked child (so a deadlock can be told from a
 * pass): its verdict passed on, 77 (skip) included; hang names what a child
 * still running after four hang bounds means. */
static inline int t_in_child(int (*child)(void), const char *name, const char *hang)
{
	pid_t pid = fork();
	if (pid == 0)
		_exit(child());
	int st = t_wait_child(pid, 4 * T_HANG_MS);
	if (st == 77)
		return 77;
	CHECK(st != -2, "%s", hang);
	CHECK(st == 0 || st == -2, "child passed (status %d)", st);
	return t_done(name);
}

/* An opener that came first: a process (its pid returned) that holds path
 * open for reading, once it has it open; so no lease can be taken on it and
 * a truncate by another process is seen only after it lands. */
static inline pid_t t_hold_open(const char *path)
{
	pid_t reader = t_sh_bg("exec sleep 600 < %s", path);
	for (uint64_t hang = t_now_ns() + T_HANG_MS * 1000000ull; t_now_ns() < hang;)
		if (t_sh("ls -l /proc/%d/fd 2>/dev/null | grep -q %s", reader, path) == 0)
			break;
	return reader;
}

/* Huge pages for this test: raises vm.nr_hugepages by n for the life of
 * the process (root only; the previous count comes back at exit), holding
 * a lock so that two tests never count on each other's pages. Returns the
 * huge pages free now (0: none can be had here, say so and skip a part). */
static char t_huge_old[32];
static inline void t_huge_restore(void)
{
	int fd = open("/proc/sys/vm/nr_hugepages", O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		(void)!write(fd, t_huge_old, strlen(t_huge_old));
		close(fd);
	}
}
static inline unsigned t_hugepages(unsigned n)
{
	unsigned free_pages = 0;
	if (!t_huge_old[0] && geteuid() == 0) {
		int lk = open("/var/tmp/mrl-test-hugepages.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
		int fd = open("/proc/sys/vm/nr_hugepages", O_RDWR | O_CLOEXEC);
		ssize_t k = fd >= 0 && lk >= 0 && flock(lk, LOCK_EX) == 0
				    ? read(fd, t_huge_old, sizeof(t_huge_old) - 1)
				    : -1;
		if (k > 0) {
			char want[32];
			int len = snprintf(want, sizeof(want), "%lu", strtoul(t_huge_old, NULL, 10) + n);
			atexit(t_huge_restore);
			(void)!pwrite(fd, want, (size_t)len, 0);
		} else {
			t_huge_old[0] = 0;
		}
		if (fd >= 0)
			close(fd);
		/* lk stays open: the lock is held until this process exits */
	}
	FILE *f = fopen("/proc/meminfo", "re");
	char line[128];
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "HugePages_Free: %u", &free_pages) == 1)
			break;
	if (f)
		fclose(f);
	return free_pages;
}

/* Wait up to ms for an event of the given type (0 = any) on any MR (0) or
 * on mr; returns 0 and fills ev (acked already), or -ETIMEDOUT. */
static inline int t_wait_event(mrl_ctx *ctx, uint32_t type, mrl_mr_t mr, int ms,
			       struct mrl_event *out)
{
	uint64_t until = t_now_ns() + (uint64_t)ms * 1000000ull;
	for (;;) {
		struct mrl_event ev;
		while (mrl_event_get(ctx, &ev) == 0) {
			bool match = (!type || ev.type == type) && (!mr || ev.mr == mr);
			struct mrl_event copy = ev;
			mrl_event_ack(ctx, &ev);
			if (match) {
				if (out)
					*out = copy;
				return 0;
			}
		}
		uint64_t now = t_now_ns();
		if (now >= until)
			return -ETIMEDOUT;
		struct pollfd p = {.fd = mrl_event_fd(ctx), .events = POLLIN};
		poll(&p, 1, (int)((until - now) / 1000000ull) + 1);
	}
}

static inline struct mrl_mr_info t_query(mrl_ctx *ctx, mrl_mr_t mr)
{
	struct mrl_mr_info info = {.size = sizeof(info)};
	if (mrl_mr_query(ctx, mr, &info))
		memset(&info, 0, sizeof(info));
	return info;
}

/* Poll an MR until its state is st, up to ms. */
static inline int t_wait_state(mrl_ctx *ctx, mrl_mr_t mr, uint32_t st, int ms)
{
	uint64_t until = t_now_ns() + (uint64_t)ms * 1000000ull;
	while (t_now_ns() < until) {
		if (t_query(ctx, mr).state == st)
			return 0;
		usleep(1000);
	}
	return -ETIMEDOUT;
}

/* Wait until a lease covers the MR's file again (after a break, or after
 * an opener broke it), so the next change is seen before it lands. */
static inline int t_wait_lease(mrl_ctx *ctx, mrl_mr_t mr, int ms)
{
	uint64_t until = t_now_ns() + (uint64_t)ms * 1000000ull;
	while (t_now_ns() < until) {
		if (t_query(ctx, mr).lease_held)
			return 0;
		usleep(1000);
	}
	return -ETIMEDOUT;
}

static inline mrl_ctx *t_ctx_flags(const char *provider, unsigned deadline_ms, unsigned flags)
{
	struct mrl_ctx_opts o = {.size = sizeof(o), .provider = provider, .deadline_ms = deadline_ms,
				 .flags = flags};
	mrl_ctx *ctx = NULL;
	int ret = mrl_ctx_create(&o, &ctx);
	if (ret == -ENODATA || ret == -ENOENT)
		t_skip("provider %s not available: %s", provider, mrl_last_error());
	if (ret) {
		fprintf(stderr, "mrl_ctx_create(%s): %s (%s)\n", provider, mrl_strerror(ret),
			mrl_last_error());
		exit(1);
	}
	return ctx;
}

static inline mrl_ctx *t_ctx(const char *provider, unsigned deadline_ms)
{
	return t_ctx_flags(provider, deadline_ms, 0);
}

#endif
