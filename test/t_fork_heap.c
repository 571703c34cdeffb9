/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* fork after registering a small malloc'd buffer on a registrar that pins
 * nothing (mock, tcp;ofi_rxm): the child gets the whole heap, registered
 * buffer and neighbours on the same pages included, and can read, write,
 * malloc and free there. (Marking those pages MADV_DONTFORK, as for a
 * pinning device, would leave the child a hole in the middle of its heap.) */
#include <sys/mman.h>

#include "helpers.h"
#include "mrl_int.h"

#define N 16
#define MID 8

static int child(char **bufs, size_t pg)
{
	int bad = 0;
	unsigned char v;
	if (mincore((void *)((uintptr_t)bufs[MID] & ~(pg - 1)), pg, &v))
		bad |= 1; /* the registered buffer's page is missing */
	for (int i = 0; i < N; i++) {
		for (int j = 0; j < 1000; j++)
			if (bufs[i][j] != (char)(i + 1))
				bad |= 2;
		memset(bufs[i], 0x55, 1000);
	}
	for (int i = 0; i < N; i++)
		if (i != MID)
			free(bufs[i]);
	for (int k = 0; k < 1000; k++) {
		char *p = malloc(16 + (size_t)k * 7);
		if (!p)
			bad |= 4;
		else
			p[0] = 1;
		free(p);
	}
	return bad;
}

static void one(const char *provider)
{
	mrl_ctx *ctx = t_ctx(provider, 1000);
	/* on a kernel that copies pinned pages at fork this alone keeps them
	 * from MADV_DONTFORK: say it is so whatever the kernel */
	CHECK(!ctx->rops->pins || !ctx->rops->pins(ctx->dev), "%s is not taken for a pinning device",
	      provider);
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);
	char *bufs[N];
	for (int i = 0; i < N; i++) {
		bufs[i] = malloc(1000);
		memset(bufs[i], i + 1, 1000);
	}
	mrl_mr_t mr;
	REQUIRE(mrl_mr_reg(ctx, bufs[MID], 1000, MRL_ACCESS_REMOTE_WRITE, NULL, &mr) == 0,
		"%s: register a 1,000-byte malloc'd buffer", provider);
	pid_t c = fork();
	if (c == 0)
		_exit(child(bufs, pg));
	int st = t_wait_status(c);
	CHECK(st != 128 + SIGSEGV && st != 128 + SIGBUS, "%s: the child did not crash (status %d)",
	      provider, st);
	CHECK(!(st & 1) || st >= 128, "%s: the registered buffer's page is in the child", provider);
	CHECK(!(st & 2) || st >= 128, "%s: the child reads the parent's heap", provider);
	CHECK(st == 0, "%s: the child reads, writes, mallocs and frees (status %d)", provider, st);
	CHECK(bufs[MID - 1][0] == MID && bufs[MID][0] == MID + 1,
	      "%s: the parent's heap is its own", provider);
	CHECK(t_query(ctx, mr).state == MRL_STATE_ACTIVE, "%s: the MR is untouched", provider);
	mrl_mr_dereg(ctx, mr);
	mrl_ctx_destroy(ctx);
	for (int i = 0; i < N; i++)
		free(bufs[i]);
}

int main(void)
{
	one("mock");
	one("tcp;ofi_rxm");
	return t_done("t_fork_heap");
}
