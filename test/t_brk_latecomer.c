/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* An MR registered while another change to its file is still landing is
 * not that change's: a writer that broke the lease keeps the file open (its
 * change is landing until it closes), a second MR is registered on the
 * file, and a hole is punched in it by another process. No lease is held
 * then, so the punch is seen after it lands, and the new MR must be told
 * (CHANGED, cause modified): the break in progress resolves only the MRs it
 * found when it began. */
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>

#include "helpers.h"

#define MB (1u << 20)

int main(void)
{
	char dir[256], path[300];
	t_scratch("ext4", dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/f", dir);
	t_make_file(path, 2 * MB);

	mrl_ctx *ctx = t_ctx_flags("mock", T_HANG_MS, MRL_CTX_NO_FANOTIFY);
	void *p;
	REQUIRE(mrl_file_map(ctx, path, 0, 2 * MB, PROT_READ | PROT_WRITE, &p) == 0, "map");
	mrl_mr_t a, b;
	REQUIRE(mrl_mr_reg(ctx, p, MB, MRL_ACCESS_REMOTE_WRITE, NULL, &a) == 0, "register the first MR");
	REQUIRE(t_wait_lease(ctx, a, T_HANG_MS) == 0, "lease held");

	/* the writer: opens the file for writing (breaks the lease), says so,
	 * and keeps it open until killed */
	int pp[2];
	REQUIRE(pipe(pp) == 0, "pipe");
	pid_t w = fork();
	REQUIRE(w >= 0, "fork");
	if (w == 0) {
		close(pp[0]);
		int fd = open(path, O_RDWR);
		char c = fd >= 0 ? 'o' : 'e';
		if (write(pp[1], &c, 1) != 1)
			_exit(2);
		for (;;)
			pause();
	}
	close(pp[1]);
	char c = 0;
	CHECK(read(pp[0], &c, 1) == 1 && c == 'o', "the writer opened the file");
	struct mrl_event ev;
	CHECK(t_wait_event(ctx, MRL_EVENT_BREAK, a, T_HANG_MS, &ev) == 0, "the open broke the first MR's lease");
	CHECK(!t_query(ctx, a).lease_held, "no lease while the writer holds the file open");

	/* the latecomer, then a punch in it by another process */
	REQUIRE(mrl_mr_reg(ctx, (char *)p + MB, MB, MRL_ACCESS_REMOTE_WRITE, NULL, &b) == 0,
		"register the second MR");
	uint64_t gen0 = t_query(ctx, b).generation;
	CHECK(t_sh("fallocate --punch-hole -o %u -l 4096 %s", MB + 4096, path) == 0, "punch in the second MR");
	CHECK(t_wait_event(ctx, MRL_EVENT_CHANGED, b, T_HANG_MS, &ev) == 0 && ev.cause == MRL_CAUSE_MODIFIED,
	      "the second MR is told of the punch (CHANGED, modified)");
	CHECK(t_query(ctx, b).generation > gen0, "with a new generation");

	kill(w, SIGKILL);
	t_wait_status(w);
	mrl_mr_dereg(ctx, b);
	mrl_mr_dereg(ctx, a);
	mrl_file_unmap(ctx, p, 2 * MB);
	mrl_ctx_destroy(ctx);
	return t_done("t_brk_latecomer");
}
