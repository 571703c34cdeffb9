/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* A forked child writing into its copy of a registered anonymous buffer
 * never reaches the parent's pinned pages or the device, with and without
 * the MADV_DONTFORK/DOFORK pair. Without it (a kernel that copies pinned
 * private pages into the child at fork, probed by the library): the child
 * has the buffer, with the parent's bytes, and its write stays in its own
 * copy; the parent's memory and what the device reads (io_uring WRITE_FIXED
 * from the fixed buffer into a pipe) are the parent's, before and after the
 * parent writes again. With it (MRL_FORK_DONTFORK, the older kernels'
 * way, forced here by re-running this program): the child has no mapping
 * there at all, and once the MR is deregistered a child gets the memory
 * again (DOFORK). */
#include <sys/mman.h>
#include <sys/wait.h>

#include "uring_rig.h"
#include "mrl_int.h"

/* what the device reads from the fixed buffer's first byte */
static char device_reads(struct rig *r, mrl_ctx *ctx, mrl_mr_t mr, char *buf, int pfd[2])
{
	unsigned idx;
	char got = 0;
	REQUIRE(mrl_uring_get(ctx, mr, -1, &idx) == 0, "get the buffer");
	struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
	io_uring_prep_write_fixed(sqe, pfd[1], buf, 1, 0, (int)idx);
	struct io_uring_cqe *cqe;
	REQUIRE(io_uring_submit(&r->ring) == 1 && io_uring_wait_cqe(&r->ring, &cqe) == 0, "submit");
	CHECK(cqe->res == 1, "WRITE_FIXED wrote a byte (%d)", cqe->res);
	io_uring_cqe_seen(&r->ring, cqe);
	REQUIRE(read(pfd[0], &got, 1) == 1, "read it back");
	REQUIRE(mrl_uring_put(ctx, mr) == 0, "put");
	return got;
}

/* the child: 0 if it saw what it should (pair: no mapping; none: the
 * parent's byte, then its own write in its copy) */
static int child(char *buf, bool pair, int go, int done)
{
	char c;
	if (read(go, &c, 1) != 1)
		return 10;
	unsigned char vec;
	int mapped = mincore(buf, 4096, &vec) == 0;
	if (pair) {
		if (mapped)
			return 11; /* the pair: nothing there in the child */
	} else {
		if (!mapped || buf[0] != 'P')
			return 12;
		buf[0] = 'C'; /* its own copy */
		if (buf[0] != 'C')
			return 13;
	}
	if (write(done, "x", 1) != 1)
		return 14;
	if (read(go, &c, 1) != 1) /* alive until the parent has looked */
		return 15;
	return 0;
}

static void run(bool want_pair)
{
	struct rig r;
	rig_open(&r);
	mrl_ctx *ctx = rig_ctx(&r, 1000);
	bool pair = !mrl_fork_copies_pinned();
	printf("%s: the pair is %s\n", want_pair ? "MRL_FORK_DONTFORK" : "as probed",
	       pair ? "used (MADV_DONTFORK)" : "not needed (the kernel copies pinned pages at fork)");
	if (want_pair)
		REQUIRE(pair, "MRL_FORK_DONTFORK asks for the pair");
	char *buf = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(buf != MAP_FAILED, "mmap");
	memset(buf, 'P', 4096);
	mrl_mr_t mr;
	REQUIRE(mrl_mr_reg(ctx, buf, 4096, MRL_ACCESS_REMOTE_WRITE, NULL, &mr) == 0, "register: %s",
		mrl_last_error());
	int pfd[2], go[2], done[2];
	REQUIRE(pipe(pfd) == 0 && pipe(go) == 0 && pipe(done) == 0, "pipes");
	CHECK(device_reads(&r, ctx, mr, buf, pfd) == 'P', "the device reads the parent's byte");

	pid_t pid = fork();
	REQUIRE(pid >= 0, "fork");
	if (pid == 0) {
		close(go[1]);
		close(done[0]);
		_exit(child(buf, pair, go[0], done[1]));
	}
	close(go[0]); /* a child that ends early ends the parent's wait too */
	close(done[1]);
	go[0] = done[1] = -1;
	char c;
	REQUIRE(write(go[1], "g", 1) == 1, "start the child");
	if (read(done[0], &c, 1) != 1) {
		CHECK(0, "the child ended early: exit %d (11: a mapping despite the pair; 12: not the "
			 "parent's byte)", t_wait_child(pid, 4 * T_HANG_MS));
		exit(1);
	}
	CHECK(buf[0] == 'P', "the child's write is not in the parent's memory (%c)", buf[0]);
	CHECK(device_reads(&r, ctx, mr, buf, pfd) == 'P', "nor in what the device reads");
	/* the parent writes while the child still shares what it did not copy */
	buf[0] = 'Q';
	CHECK(device_reads(&r, ctx, mr, buf, pfd) == 'Q', "the parent's new byte reaches the device");
	REQUIRE(write(go[1], "g", 1) == 1, "let the child go");
	int st = t_wait_child(pid, 4 * T_HANG_MS);
	CHECK(st == 0, "the child saw %s (exit %d)", pair ? "no mapping" : "its own copy", st);

	REQUIRE(mrl_mr_dereg(ctx, mr) == 0, "dereg");
	if (pair) { /* DOFORK once deregistered: a child has the memory again */
		pid = fork();
		REQUIRE(pid >= 0, "fork");
		if (pid == 0) {
			unsigned char vec;
			_exit(mincore(buf, 4096, &vec) == 0 && buf[0] == 'Q' ? 0 : 1);
		}
		CHECK(t_wait_child(pid, 4 * T_HANG_MS) == 0, "after dereg a child has the buffer again (MADV_DOFORK)");
	}
	munmap(buf, 4096);
	close(pfd[0]);
	close(pfd[1]);
	close(go[1]);
	close(done[0]);
	mrl_uring_detach(ctx);
	mrl_ctx_destroy(ctx);
	rig_close(&r);
}

int main(int argc, char **argv)
{
	(void)argc;
	bool forced = getenv("MRL_FORK_DONTFORK") != NULL;
	run(forced);
	if (!forced) { /* and the older kernels' way: a fresh process, the probe is once per process */
		fflush(stdout);
		pid_t pid = fork();
		REQUIRE(pid >= 0, "fork");
		if (pid == 0) {
			setenv("MRL_FORK_DONTFORK", "1", 1);
			execv("/proc/self/exe", argv);
			_exit(127);
		}
		CHECK(t_wait_child(pid, 4 * T_HANG_MS) == 0, "with the pair forced: passed");
	}
	return t_done(forced ? "t_fork_pair (MRL_FORK_DONTFORK)" : "t_fork_pair");
}
