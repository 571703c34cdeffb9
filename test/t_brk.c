/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* brk/sbrk shrinking the heap under an MR: the interposed calls fence it
 * (cause "unmapped") before the heap shrinks, in the caller's name; growing
 * touches nothing. userfaultfd would also see the shrink, but after it and
 * as a CHANGED event: that must not be what happened. */
#include <malloc.h>
#include <sys/mman.h>

#include "helpers.h"

#define LEN (1u << 20)

/* The MR was fenced before the change: a FENCED event naming this process,
 * and no CHANGED event (which would mean seen only after). */
static void fenced_before(mrl_ctx *ctx, mrl_mr_t mr, const char *what)
{
	struct mrl_event ev;
	bool fenced = false, after = false;
	while (mrl_event_get(ctx, &ev) == 0) {
		if (ev.mr == mr && ev.type == MRL_EVENT_FENCED && ev.cause == MRL_CAUSE_UNMAPPED &&
		    ev.pid == getpid())
			fenced = true;
		after |= ev.mr == mr && ev.type == MRL_EVENT_CHANGED;
		mrl_event_ack(ctx, &ev);
	}
	CHECK(fenced, "%s: fenced by the interposed call, in this process's name", what);
	CHECK(!after, "%s: not merely seen after it landed", what);
}

int main(void)
{
	/* keep malloc's own heap below ours: a big top pad served first, no trimming */
	mallopt(M_TOP_PAD, 64 << 20);
	mallopt(M_TRIM_THRESHOLD, 1 << 30);
	mallopt(M_MMAP_THRESHOLD, 1 << 30);
	free(malloc(64));
	mrl_ctx *ctx = t_ctx("mock", 1000);
	if (!(mrl_ctx_watchers(ctx) & MRL_WATCH_INTERPOSE))
		t_skip("the interposer is not what callers reach in this build");
	char *p = sbrk(0);
	REQUIRE(sbrk(LEN) == p, "grow the heap by 1 MiB");
	memset(p, 1, LEN);
	mrl_mr_t mr;
	REQUIRE(mrl_mr_reg(ctx, p, LEN, MRL_ACCESS_REMOTE_WRITE, NULL, &mr) == 0, "register the new heap");
	CHECK(sbrk(4096) != (void *)-1 && t_query(ctx, mr).state == MRL_STATE_ACTIVE, "growing touches no MR");
	CHECK(sbrk(-(intptr_t)(LEN / 2 + 4096)) != (void *)-1, "shrink into the MR");
	struct mrl_mr_info in = t_query(ctx, mr);
	CHECK(in.state == MRL_STATE_FENCED && in.cause == MRL_CAUSE_UNMAPPED, "fenced, cause unmapped (%s)",
	      mrl_cause_str(in.cause));
	fenced_before(ctx, mr, "sbrk");
	CHECK(sbrk(0) == p + LEN / 2, "libc's break is where it should be");
	mrl_mr_dereg(ctx, mr);

	mrl_mr_t m2;
	REQUIRE(mrl_mr_reg(ctx, p, LEN / 4, MRL_ACCESS_REMOTE_WRITE, NULL, &m2) == 0, "register again");
	CHECK(brk(p + LEN / 8) == 0, "brk down into it");
	in = t_query(ctx, m2);
	CHECK(in.state == MRL_STATE_FENCED && in.cause == MRL_CAUSE_UNMAPPED, "brk: fenced, cause unmapped");
	fenced_before(ctx, m2, "brk");
	CHECK(sbrk(0) == p + LEN / 8, "the break moved");
	mrl_mr_dereg(ctx, m2);
	CHECK(brk(p) == 0, "give the rest back");
	mrl_ctx_destroy(ctx);
	return t_done("t_brk");
}
