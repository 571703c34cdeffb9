/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* madvise(MADV_DONTNEED) over an anonymous MR registered with
 * MRL_POLICY_FENCE: the MR is fenced (cause "madvised") before the pages
 * go, as the policy promises, not paused and restored; a RESTORE-policy MR
 * beside it is still paused and resumed, ending ACTIVE. */
#include <sys/mman.h>

#include "helpers.h"

#define LEN (1u << 20)

int main(void)
{
	mrl_ctx *ctx = t_ctx("mock", 1000);
	if (!(mrl_ctx_watchers(ctx) & MRL_WATCH_INTERPOSE))
		t_skip("the preload library is not what callers reach in this build");
	char *p = mmap(NULL, 2 * LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(p != MAP_FAILED, "map");
	memset(p, 1, 2 * LEN);
	struct mrl_reg_opts fo = {.size = sizeof(fo), .policy = MRL_POLICY_FENCE};
	struct mrl_reg_opts ro = {.size = sizeof(ro), .policy = MRL_POLICY_RESTORE};
	mrl_mr_t fm, rm;
	REQUIRE(mrl_mr_reg(ctx, p, LEN, MRL_ACCESS_REMOTE_WRITE, &fo, &fm) == 0, "register FENCE-policy MR");
	REQUIRE(mrl_mr_reg(ctx, p + LEN, LEN, MRL_ACCESS_REMOTE_WRITE, &ro, &rm) == 0, "register RESTORE-policy MR");

	CHECK(madvise(p + 4096, 8192, MADV_DONTNEED) == 0, "madvise DONTNEED inside the FENCE MR");
	struct mrl_mr_info in = t_query(ctx, fm);
	CHECK(in.state == MRL_STATE_FENCED, "FENCE policy: fenced, not %s", mrl_state_str(in.state));
	CHECK(in.cause == MRL_CAUSE_MADVISED, "cause madvised (%s)", mrl_cause_str(in.cause));
	CHECK(madvise(p + LEN + 4096, 8192, MADV_DONTNEED) == 0, "madvise DONTNEED inside the RESTORE MR");
	in = t_query(ctx, rm);
	CHECK(in.state == MRL_STATE_ACTIVE && in.cause == MRL_CAUSE_MADVISED && in.restores == 1,
	      "RESTORE policy: paused and resumed (%s, %s, %u restores)", mrl_state_str(in.state),
	      mrl_cause_str(in.cause), in.restores);

	struct mrl_event ev;
	bool fenced = false, f_paused = false, f_restored = false;
	while (mrl_event_get(ctx, &ev) == 0) {
		if (ev.mr == fm) {
			fenced |= ev.type == MRL_EVENT_FENCED && ev.cause == MRL_CAUSE_MADVISED && ev.pid == getpid();
			f_paused |= ev.type == MRL_EVENT_BREAK;
			f_restored |= ev.type == MRL_EVENT_RESTORED;
		}
		mrl_event_ack(ctx, &ev);
	}
	CHECK(fenced, "a FENCED event, cause madvised, in this process's name");
	CHECK(!f_paused && !f_restored, "the FENCE MR was not paused (%d) nor restored (%d)", f_paused, f_restored);
	in = t_query(ctx, fm);
	CHECK(in.state != MRL_STATE_ACTIVE, "and it does not end ACTIVE");
	mrl_mr_dereg(ctx, fm);
	mrl_mr_dereg(ctx, rm);
	munmap(p, 2 * LEN);
	mrl_ctx_destroy(ctx);
	return t_done("t_intp_madv_fence");
}
