/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The memfd lease and "the process's own fds": a write lease (taken on the
 * library's reopen of /proc/self/fd/N) waits while another open file
 * description of the memfd exists, the process's own included -- but a dup
 * of one is the same description and does not count. Inode matching cannot
 * tell them apart; F_DUPFD_QUERY (Linux 6.10+) can, and the watcher uses it:
 *  - memfd M with a dup D: the lease is taken (coverage: other processes'
 *    opens seen before), and no fd is named as a second open;
 *  - memfd M2 with a separate open S2 of /proc/self/fd/M2: no lease
 *    (coverage does not claim those opens), and the watcher names exactly
 *    S2 -- not M2 -- as the second open keeping it away (its log);
 *  - S2 closed: the lease is retaken and the claim comes back.
 * The first two also check what the kernel says, so a kernel that changes
 * the rule fails here rather than in a coverage claim. */
#include <sys/mman.h>

#include "helpers.h"

#define SZ (16u * 1024)
#ifndef F_DUPFD_QUERY
#define F_DUPFD_QUERY 1027
#endif

static char *map(int fd)
{
	REQUIRE(ftruncate(fd, SZ) == 0, "ftruncate");
	char *p = mmap(NULL, SZ, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	REQUIRE(p != MAP_FAILED, "mmap");
	return p;
}

static int seen_open(mrl_ctx *ctx, mrl_mr_t mr)
{
	return t_query(ctx, mr).coverage[MRL_CHG_OTHER_OPEN_WRITE];
}

/* the library's log so far (stderr goes to log_fd) */
static void read_log(int log_fd, char *buf, size_t n)
{
	fflush(stderr);
	ssize_t r = pread(log_fd, buf, n - 1, 0);
	buf[r > 0 ? r : 0] = 0;
}

int main(void)
{
	if (fcntl(0, F_DUPFD_QUERY, 0) < 0 && errno == EINVAL)
		t_skip("F_DUPFD_QUERY: not in this kernel (Linux 6.10+)");
	/* the watcher tells what keeps the lease away in its log */
	char logpath[] = "/tmp/t_memfd_dupq-XXXXXX";
	int log_fd = mkstemp(logpath);
	REQUIRE(log_fd >= 0, "log file");
	unlink(logpath);
	int saved = dup(2);
	REQUIRE(dup2(log_fd, 2) == 2, "stderr to the log");
	setenv("MRL_DEBUG", "1", 1);
	mrl_ctx *ctx = t_ctx("mock", T_HANG_MS);
	char log[16384], want[128];

	/* 1. memfd and a dup: one description */
	int m = memfd_create("t_memfd_dupq", MFD_CLOEXEC);
	REQUIRE(m >= 0, "memfd");
	char *p = map(m);
	int d = dup(m);
	int same = fcntl(m, F_DUPFD_QUERY, d);
	mrl_mr_t mr;
	REQUIRE(mrl_mr_reg(ctx, p, SZ, MRL_ACCESS_REMOTE_WRITE, NULL, &mr) == 0, "register: %s",
		mrl_last_error());
	uint32_t w1 = t_query(ctx, mr).watchers;
	int cov1 = seen_open(ctx, mr);

	/* 2. memfd and a separate open of it: two descriptions */
	int m2 = memfd_create("t_memfd_dupq2", MFD_CLOEXEC);
	REQUIRE(m2 >= 0, "memfd 2");
	char *p2 = map(m2);
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", m2);
	int s2 = open(path, O_RDWR | O_CLOEXEC);
	REQUIRE(s2 >= 0, "separate open of memfd 2");
	int other = fcntl(m2, F_DUPFD_QUERY, s2);
	mrl_mr_t mr2;
	REQUIRE(mrl_mr_reg(ctx, p2, SZ, MRL_ACCESS_REMOTE_WRITE, NULL, &mr2) == 0, "register 2: %s",
		mrl_last_error());
	int cov2 = seen_open(ctx, mr2);
	read_log(log_fd, log, sizeof(log));
	unsetenv("MRL_DEBUG");
	dup2(saved, 2); /* the checks' own messages to the real stderr */
	CHECK(same == 1, "the kernel: the dup shares the description");
	CHECK(other == 0, "the kernel: a separate open is another description");
	CHECK(w1 & MRL_WATCH_MEMFD, "the memfd watcher has it");
	CHECK(cov1 == MRL_SEEN_BEFORE, "memfd + dup: leased, another process's open claimed before (%s)",
	      mrl_seen_str((unsigned)cov1));
	CHECK(cov2 != MRL_SEEN_BEFORE, "memfd + separate open: no lease, opens not claimed (%s)",
	      mrl_seen_str((unsigned)cov2));
	snprintf(want, sizeof(want), "no lease while fd %d of this process, a second open", s2);
	CHECK(strstr(log, want), "the watcher names fd %d, the separate open, exactly", s2);
	snprintf(want, sizeof(want), "no lease while fd %d of", m2);
	CHECK(!strstr(log, want), "and not fd %d, the memfd itself", m2);
	snprintf(want, sizeof(want), "no lease while fd %d of", d);
	CHECK(!strstr(log, want), "and not fd %d, the dup of the first memfd", d);

	/* 3. the separate open closed: the lease comes back */
	close(s2);
	uint64_t end = t_now_ns() + (uint64_t)T_HANG_MS * 1000000ull;
	while (seen_open(ctx, mr2) != MRL_SEEN_BEFORE && t_now_ns() < end)
		usleep(1000);
	CHECK(seen_open(ctx, mr2) == MRL_SEEN_BEFORE, "separate open closed: leased again");

	mrl_mr_dereg(ctx, mr);
	mrl_mr_dereg(ctx, mr2);
	mrl_ctx_destroy(ctx);
	munmap(p, SZ);
	munmap(p2, SZ);
	close(d);
	close(m);
	close(m2);
	return t_done("t_memfd_dupq");
}
