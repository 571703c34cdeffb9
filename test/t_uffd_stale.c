/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* A userfaultfd UNMAP event is about the MRs registered when it was made,
 * never one registered since at the same address (issue 10). The kernel
 * lets the unmapping thread go once the event is read; the event is
 * handled later, under the context's lock. Meanwhile that thread (or
 * another) may map the same address again and register a new MR there:
 * the stale event used to fence the new MR. Here the monitor is stopped so
 * the test holds the moment open: a raw munmap (no interposer) of MR A's
 * pages is read by the watcher's stand-by reader, the munmap returns, the
 * same address is mapped again and MR B registered there, and only then is
 * the event handled (the test drives the watcher's read and drain as the
 * monitor does). A is fenced (unmapped); B stays active. */
#include <sys/mman.h>
#include <sys/syscall.h>

#include "mrl_int.h"
#include "helpers.h"

#define LEN (64u * 1024u)

static void monitor_turn(mrl_ctx *ctx)
{
	mrl_watch_uffd.read(ctx);
	mrl_lock(&ctx->lock);
	mrl_watch_uffd.drain(ctx);
	mrl_unlock(&ctx->lock);
}

/* One try: 1 if another thread's mapping took the address between the
 * unmap and the test's own mapping (seen under TSan: its runtime maps), so
 * nothing was checked; else 0. */
static int attempt(void)
{
	mrl_ctx *ctx = t_ctx("mock", 5000);
	if (!(mrl_ctx_watchers(ctx) & MRL_WATCH_UFFD))
		t_skip("userfaultfd events are not available here");
	char *mem = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(mem != MAP_FAILED, "mmap");
	memset(mem, 1, LEN);
	mrl_mr_t a, b;
	REQUIRE(mrl_mr_reg(ctx, mem, LEN, MRL_ACCESS_REMOTE_WRITE, NULL, &a) == 0, "register A");
	REQUIRE(t_query(ctx, a).watchers & MRL_WATCH_UFFD, "A is watched by userfaultfd");

	/* nobody handles events now but this test */
	mrl_monitor_stop(ctx);
	/* the unmap, unseen by the interposer: the munmap returns once the
	 * stand-by reader has read its event (the monitor does not come) */
	REQUIRE(syscall(SYS_munmap, mem, LEN) == 0, "raw munmap of A's pages");
	char *again = mmap(mem, LEN, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (again != mem) {
		if (again != MAP_FAILED)
			munmap(again, LEN);
		mrl_mr_dereg(ctx, a);
		mrl_ctx_destroy(ctx);
		return 1;
	}
	memset(again, 2, LEN);
	REQUIRE(mrl_mr_reg(ctx, again, LEN, MRL_ACCESS_REMOTE_WRITE, NULL, &b) == 0, "register B");
	CHECK(t_query(ctx, a).state == MRL_STATE_ACTIVE,
	      "A not fenced yet: its event waits for the monitor's turn");

	/* the monitor's turns: read what was queued, handle it (the reader
	 * queues an event just after the read that let its actor go) */
	for (uint64_t hang = t_now_ns() + T_HANG_MS * 1000000ull;
	     t_query(ctx, a).state != MRL_STATE_FENCED && t_now_ns() < hang; usleep(1000))
		monitor_turn(ctx);
	monitor_turn(ctx);

	struct mrl_mr_info ia = t_query(ctx, a), ib = t_query(ctx, b);
	CHECK(ia.state == MRL_STATE_FENCED && ia.cause == MRL_CAUSE_UNMAPPED, "A fenced, unmapped (%s, %s)",
	      mrl_state_str(ia.state), mrl_cause_str(ia.cause));
	CHECK(ib.state == MRL_STATE_ACTIVE && ib.generation == 1,
	      "B, registered after the event, untouched by it (%s, %s, generation %u)",
	      mrl_state_str(ib.state), mrl_cause_str(ib.cause), ib.generation);

	/* and an unmap of B's pages now is B's */
	REQUIRE(syscall(SYS_munmap, again, LEN) == 0, "raw munmap of B's pages");
	for (uint64_t hang = t_now_ns() + T_HANG_MS * 1000000ull;
	     t_query(ctx, b).state != MRL_STATE_FENCED && t_now_ns() < hang; usleep(1000))
		monitor_turn(ctx);
	ib = t_query(ctx, b);
	CHECK(ib.state == MRL_STATE_FENCED && ib.cause == MRL_CAUSE_UNMAPPED, "B fenced by its own unmap (%s, %s)",
	      mrl_state_str(ib.state), mrl_cause_str(ib.cause));
	mrl_mr_dereg(ctx, a);
	mrl_mr_dereg(ctx, b);
	mrl_ctx_destroy(ctx);
	return 0;
}

int main(void)
{
	int tries = 0;
	while (attempt())
		if (++tries == 10)
			t_skip("another mapping took the unmapped address in each of 10 tries");
	if (tries)
		printf("the address was taken by another mapping %d time(s): tried again\n", tries);
	return t_done("t_uffd_stale");
}
