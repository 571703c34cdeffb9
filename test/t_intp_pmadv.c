/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* process_madvise(MADV_DONTNEED) of the process on itself zaps pages as
 * madvise does (Linux 6.18); libmrlease-preload.so interposes it like
 * madvise: the MR under it is paused before the pages go. Under
 * MRL_POLICY_NOTIFY the break waits for the owner's answer, so a second
 * thread takes the BREAK event and checks, while the call is held, that the
 * bytes are still there and the call has not returned; then it answers and
 * the pages go. A pidfd of another process (a child) is let through
 * without a pause. */
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>

#include "held.h"

#define SZ (64u * 1024)

int main(void)
{
	mrl_ctx *ctx = t_ctx("mock", T_HANG_MS);
	if (!(mrl_ctx_watchers(ctx) & MRL_WATCH_INTERPOSE))
		t_skip("the preload library does not interpose here");
	int self = (int)syscall(SYS_pidfd_open, getpid(), 0);
	if (self < 0)
		t_skip("pidfd_open: %s", strerror(errno));
	char *p = mmap(NULL, SZ, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(p != MAP_FAILED, "mmap");
	memset(p, 'A', SZ);
	struct mrl_reg_opts ro = {.size = sizeof(ro), .policy = MRL_POLICY_NOTIFY};
	mrl_mr_t mr;
	REQUIRE(mrl_mr_reg(ctx, p, SZ, MRL_ACCESS_REMOTE_WRITE, &ro, &mr) == 0, "register");
	uint32_t gen = t_query(ctx, mr).generation;

	/* a child's pidfd: its copy of the pages, not ours: no pause */
	int go[2];
	REQUIRE(pipe(go) == 0, "pipe");
	pid_t c = fork();
	if (c == 0) {
		char x;
		close(go[1]);
		_exit(read(go[0], &x, 1) == 0 ? 0 : 1); /* until the parent is done */
	}
	close(go[0]);
	int child = (int)syscall(SYS_pidfd_open, c, 0);
	struct iovec cv = {p, 4096};
	ssize_t r = process_madvise(child, &cv, 1, MADV_DONTNEED, 0);
	/* Linux 6.18 refuses DONTNEED on another process (EINVAL); had the
	 * interposer taken it for ours, the NOTIFY MR would be paused first */
	CHECK(r == 4096 || (r < 0 && (errno == EINVAL || errno == EPERM)),
	      "process_madvise on the child (%zd: %s)", r, r < 0 ? strerror(errno) : "");
	struct mrl_stats st = {.size = sizeof(st)};
	mrl_ctx_stats(ctx, &st);
	CHECK(st.pauses == 0 && p[0] == 'A', "the child's pages: nothing of ours paused or lost");
	close(go[1]);
	CHECK(t_wait_status(c) == 0, "child done");
	close(child);

	/* on ourselves: two ranges, held at the break */
	struct held h = {.ctx = ctx, .mr = mr, .p = {p, p + 8192}};
	pthread_t t;
	REQUIRE(pthread_create(&t, NULL, answerer, &h) == 0, "answerer");
	struct iovec v[2] = {{p, 4096}, {p + 8192, 4096}};
	r = process_madvise(self, v, 2, MADV_DONTNEED, 0);
	atomic_store(&h.returned, 1);
	pthread_join(t, NULL);
	CHECK(r == 8192, "process_madvise on ourselves advised both ranges (%zd: %s)", r,
	      r < 0 ? strerror(errno) : "");
	CHECK(h.got && h.cause == MRL_CAUSE_MADVISED, "BREAK before it, cause %s",
	      mrl_cause_str(h.cause));
	CHECK(h.still_held && h.intact, "held at the break, the pages still there");
	CHECK(p[0] == 0 && p[8192] == 0 && p[4096] == 'A', "the pages went after the answer");
	CHECK(t_wait_state(ctx, mr, MRL_STATE_ACTIVE, T_HANG_MS) == 0 &&
		      t_query(ctx, mr).generation > gen,
	      "restored on the same object, new generation");
	mrl_mr_dereg(ctx, mr);
	munmap(p, SZ);
	close(self);
	mrl_ctx_destroy(ctx);
	return t_done("t_intp_pmadv");
}
