/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* NOTIFY policy: the owner answers a break. Never answering fences the MR by
 * its deadline and the breaker proceeds long before lease-break-time;
 * answering restore restores; answering release fences with cause released. */
#include <sys/mman.h>

#include "helpers.h"

#define MB (1u << 20)

static long lease_break_time(void)
{
	long s = 45;
	FILE *f = fopen("/proc/sys/fs/lease-break-time", "r");
	if (f) {
		if (fscanf(f, "%ld", &s) != 1)
			s = 45;
		fclose(f);
	}
	return s;
}

int main(void)
{
	char dir[256], path[300];
	t_scratch("ext4", dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/f", dir);
	t_make_file(path, 2 * MB);
	if (lease_break_time() < 2)
		t_skip("lease-break-time is %lds: too short to tell a fence from the kernel's timeout",
		       lease_break_time());

	/* the context's deadline is the hang bound: only the MR's own 300 ms
	 * can end part 1's wait before it */
	mrl_ctx *ctx = t_ctx_flags("mock", T_HANG_MS, MRL_CTX_NO_FANOTIFY);
	void *p;
	REQUIRE(mrl_file_map(ctx, path, 0, 2 * MB, PROT_READ | PROT_WRITE, &p) == 0, "map");
	struct mrl_reg_opts ro = {.size = sizeof(ro), .policy = MRL_POLICY_NOTIFY, .deadline_ms = 300};
	mrl_mr_t mr;
	REQUIRE(mrl_mr_reg(ctx, p, MB, MRL_ACCESS_REMOTE_WRITE, &ro, &mr) == 0, "register");
	struct mrl_event ev;

	/* 1. an owner that never answers */
	uint64_t t0 = t_now_ns();
	pid_t pid = t_sh_bg("fallocate --punch-hole -o 0 -l 4096 %s", path);
	CHECK(t_wait_event(ctx, MRL_EVENT_BREAK, mr, T_HANG_MS, &ev) == 0, "break event");
	uint64_t got = t_now_ns();
	/* The deadline is the MR's 300 ms counted from when the peers were
	 * asked, which lies between the break being seen and the event being
	 * got here: ordered by events, not by how fast this machine is. */
	CHECK(ev.time_ns >= t0 && ev.deadline_ns >= ev.time_ns + 300000000ull &&
	      ev.deadline_ns <= got + 300000000ull,
	      "deadline is the MR's 300 ms from when it was asked (seen +%lld ms, got +%lld ms, deadline +%lld ms)",
	      (long long)(ev.time_ns - t0) / 1000000, (long long)(got - t0) / 1000000,
	      (long long)(ev.deadline_ns - t0) / 1000000);
	/* do not answer */
	CHECK(t_wait_status(pid) == 0, "the breaker completed");
	uint64_t held = t_now_ns() - t0;
	CHECK(held < (uint64_t)lease_break_time() * 1000000000ull / 2,
	      "the breaker proceeded long before lease-break-time (%llu ms)",
	      (unsigned long long)(held / 1000000));
	CHECK(t_wait_state(ctx, mr, MRL_STATE_FENCED, T_HANG_MS) == 0, "fenced by the deadline");
	struct mrl_mr_info in = t_query(ctx, mr);
	CHECK(in.cause == MRL_CAUSE_DEADLINE, "cause deadline, got %s", mrl_cause_str(in.cause));
	CHECK(t_wait_event(ctx, MRL_EVENT_FENCED, mr, T_HANG_MS, &ev) == 0 && ev.cause == MRL_CAUSE_DEADLINE,
	      "fenced event names the deadline");
	CHECK(mrl_mr_restore(ctx, mr) == -EKEYREVOKED, "a fenced MR cannot be restored");
	CHECK(mrl_mr_dereg(ctx, mr) == 0, "dereg fenced");

	/* 2. an owner that answers restore: within a deadline a busy machine
	 * cannot miss (only part 1 wants the deadline to pass) */
	ro.deadline_ms = 10000;
	REQUIRE(mrl_mr_reg(ctx, p, MB, MRL_ACCESS_REMOTE_WRITE, &ro, &mr) == 0, "register again");
	pid = t_sh_bg("fallocate --punch-hole -o 8192 -l 4096 %s", path);
	CHECK(t_wait_event(ctx, MRL_EVENT_BREAK, mr, T_HANG_MS, &ev) == 0, "break event 2");
	CHECK(t_query(ctx, mr).state == MRL_STATE_PAUSED, "paused while the owner decides");
	CHECK(mrl_mr_restore(ctx, mr) == 0, "owner restores");
	CHECK(t_wait_status(pid) == 0, "breaker completed");
	CHECK(t_wait_state(ctx, mr, MRL_STATE_ACTIVE, T_HANG_MS) == 0, "restored");
	CHECK(t_query(ctx, mr).restores == 1, "one restore");

	/* 3. an owner that releases */
	pid = t_sh_bg("fallocate --punch-hole -o 16384 -l 4096 %s", path);
	CHECK(t_wait_event(ctx, MRL_EVENT_BREAK, mr, T_HANG_MS, &ev) == 0, "break event 3");
	CHECK(mrl_mr_release(ctx, mr) == 0, "owner releases");
	CHECK(t_wait_status(pid) == 0, "breaker completed");
	CHECK(t_wait_state(ctx, mr, MRL_STATE_FENCED, T_HANG_MS) == 0, "released MR is fenced");
	CHECK(t_query(ctx, mr).cause == MRL_CAUSE_RELEASED, "cause released");
	mrl_mr_dereg(ctx, mr);

	/* 4. the fence policy: revoked at once, no owner involved. Part 3's
	 * change lands when its breaker closes the file; the lease is taken
	 * again after that, and only then is the next change seen before it
	 * lands (a change meanwhile is announced after it, as CHANGED). */
	ro.policy = MRL_POLICY_FENCE;
	REQUIRE(mrl_mr_reg(ctx, p, MB, MRL_ACCESS_REMOTE_WRITE, &ro, &mr) == 0, "register fence");
	CHECK(t_wait_lease(ctx, mr, T_HANG_MS) == 0, "the lease is held again after part 3's change");
	CHECK(t_sh("fallocate --punch-hole -o 0 -l 4096 %s", path) == 0, "breaker");
	CHECK(t_wait_state(ctx, mr, MRL_STATE_FENCED, T_HANG_MS) == 0, "fence policy fences");
	CHECK(t_query(ctx, mr).cause == MRL_CAUSE_OPEN_WRITE, "cause open-write");
	mrl_mr_dereg(ctx, mr);

	mrl_file_unmap(ctx, p, 2 * MB);
	mrl_ctx_destroy(ctx);
	unlink(path);
	rmdir(dir);
	return t_done("t_notify");
}
