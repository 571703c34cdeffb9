/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* fork with a pinning device (io_uring fixed buffer over a 1,000-byte
 * malloc'd buffer): after the parent writes the buffer, the device still
 * sees the parent's bytes, not a copy left to the child (copy-on-write
 * must not move the parent away from the pinned page). How depends on the
 * kernel: one that copies pinned private pages into the child at fork
 * (probed by the library) needs nothing, and the child keeps the whole
 * heap; otherwise the pages are MADV_DONTFORK and the child has none. */
#include <sys/mman.h>

#include "uring_rig.h"
#include "mrl_int.h"

#define N 8
#define MID 4

int main(void)
{
	struct rig r;
	rig_open(&r);
	mrl_ctx *ctx = t_ctx("uring", 1000);
	REQUIRE(mrl_uring_attach(ctx, &r.ring, 4) == 0, "attach");
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);
	char *bufs[N];
	for (int i = 0; i < N; i++) {
		bufs[i] = malloc(1000);
		memset(bufs[i], 'a' + i, 1000);
	}
	mrl_mr_t mr;
	REQUIRE(mrl_mr_reg(ctx, bufs[MID], 1000, 0, NULL, &mr) == 0, "a fixed buffer");
	CHECK(ctx->rops->pins && ctx->rops->pins(ctx->dev), "io_uring is taken for a pinning device");
	bool copies = mrl_fork_copies_pinned();
	printf("the kernel %s pinned pages at fork\n", copies ? "copies" : "does not copy");

	int gate[2], res[2];
	REQUIRE(pipe(gate) == 0 && pipe(res) == 0, "pipes");
	pid_t c = fork();
	if (c == 0) {
		unsigned char v;
		char x;
		bool present = mincore((void *)((uintptr_t)bufs[MID] & ~(pg - 1)), pg, &v) == 0;
		int bad = 0;
		if (copies && !present)
			bad |= 1; /* nothing needed protecting, yet the page is gone */
		if (!copies && present)
			bad |= 2; /* the parent's pinned page was left to copy-on-write */
		if (present && (bufs[MID - 1][0] != 'a' + MID - 1 || bufs[MID][999] != 'a' + MID))
			bad |= 4;
		if (present) {
			bufs[MID][0] = 'X'; /* the child's copy, not the device's */
			bufs[MID - 1][0] = 'X';
			free(malloc(100));
		}
		/* stay alive (sharing whatever fork shares) until the parent has looked */
		if (read(gate[0], &x, 1) != 1)
			bad |= 8;
		_exit(bad);
	}
	/* the parent writes, then asks the device for the buffer */
	memset(bufs[MID], 'P', 1000);
	unsigned idx;
	REQUIRE(mrl_uring_get(ctx, mr, 0, &idx) == 0, "get");
	struct io_uring_sqe *sqe = io_uring_get_sqe(&r.ring);
	io_uring_prep_write_fixed(sqe, res[1], bufs[MID], 1000, 0, (int)idx);
	REQUIRE(io_uring_submit(&r.ring) == 1, "submit WRITE_FIXED");
	int n = rig_reap(&r);
	mrl_uring_put(ctx, mr);
	char got[1000];
	CHECK(n == 1000 && read(res[0], got, sizeof(got)) == 1000, "the device wrote the buffer out");
	bool all_p = true;
	for (int i = 0; i < 1000; i++)
		all_p &= got[i] == 'P';
	CHECK(all_p, "the device sees the parent's bytes written after fork (got '%c')", got[0]);
	CHECK(write(gate[1], "x", 1) == 1, "release the child");
	int st = t_wait_status(c);
	CHECK(st == 0, "the child's view is what the kernel's fork behaviour calls for (status %d)", st);
	CHECK(bufs[MID - 1][0] == 'a' + MID - 1, "the parent's neighbour is its own");
	mrl_mr_dereg(ctx, mr);
	mrl_uring_detach(ctx);
	mrl_ctx_destroy(ctx);
	rig_close(&r);
	for (int i = 0; i < N; i++)
		free(bufs[i]);
	return t_done("t_fork_pinned");
}
