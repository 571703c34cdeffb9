/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* No device call under a lock another thread needs (issue 10): while one
 * thread's registration sits in its device call (the mock registrar holds
 * it as long as the test says, as pinning a large range can take), the
 * context's other work goes on and completes: a break of another MR
 * (madvise(DONTNEED) of an anonymous RESTORE-policy MR: paused, its device
 * registration let go and made anew, restored), its events got and acked,
 * an munmap that fences a third MR, a deregistration, a query. Before, the
 * registering thread held the context lock across the device call and every
 * one of those waited for it. The blocked registration then completes,
 * ACTIVE and registered in the device. Run in a child so a hang fails the
 * test instead of hanging the suite. */
#include <pthread.h>
#include <sys/mman.h>

#include "mrl_int.h"
#include "helpers.h"

#define PG 4096

struct reg_arg {
	mrl_ctx *ctx;
	void *addr;
	mrl_mr_t mr;
	int ret;
};

static void *reg_main(void *p)
{
	struct reg_arg *a = p;
	a->ret = mrl_mr_reg(a->ctx, a->addr, PG, MRL_ACCESS_REMOTE_WRITE, NULL, &a->mr);
	return NULL;
}

static int child(void)
{
	mrl_ctx *ctx = t_ctx("mock", 5000);
	if (!(mrl_ctx_watchers(ctx) & MRL_WATCH_INTERPOSE))
		t_skip("the preload library is not what callers of madvise reach here");
	char *mem = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(mem != MAP_FAILED, "mmap");
	memset(mem, 1, 4 * PG);
	/* separate mappings' worth of pages: B is madvised, C unmapped, D deregistered */
	char *a_mem = mem, *b_mem = mem + PG, *d_mem = mem + 3 * PG;
	char *c_mem = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(c_mem != MAP_FAILED, "mmap");
	mrl_mr_t b, c, d;
	REQUIRE(mrl_mr_reg(ctx, b_mem, PG, MRL_ACCESS_REMOTE_WRITE, NULL, &b) == 0, "register B");
	REQUIRE(mrl_mr_reg(ctx, c_mem, PG, MRL_ACCESS_REMOTE_WRITE, NULL, &c) == 0, "register C");
	REQUIRE(mrl_mr_reg(ctx, d_mem, PG, MRL_ACCESS_REMOTE_WRITE, NULL, &d) == 0, "register D");
	uint64_t b_key = t_query(ctx, b).key;

	/* A's registration waits in the device */
	mrl_mock_block(ctx->dev, a_mem);
	struct reg_arg ra = {.ctx = ctx, .addr = a_mem};
	pthread_t th;
	pthread_create(&th, NULL, reg_main, &ra);
	mrl_mock_wait_blocked(ctx->dev);

	/* meanwhile: a break of B from start to end */
	CHECK(madvise(b_mem, PG, MADV_DONTNEED) == 0, "madvise DONTNEED of B");
	struct mrl_mr_info in = t_query(ctx, b);
	CHECK(in.state == MRL_STATE_ACTIVE && in.breaks == 1 && in.restores == 1 &&
		      in.cause == MRL_CAUSE_MADVISED,
	      "B paused and restored while A's registration waits (%s, %u breaks, %u restores)",
	      mrl_state_str(in.state), in.breaks, in.restores);
	void *ka;
	size_t kl;
	CHECK(in.key == b_key && mrl_mock_lookup(ctx->dev, in.key, &ka, &kl) == 0 && ka == b_mem,
	      "B registered again in the device, same key");
	struct mrl_event ev;
	int brk = 0, restored = 0;
	while (mrl_event_get(ctx, &ev) == 0) {
		brk += ev.mr == b && ev.type == MRL_EVENT_BREAK;
		restored += ev.mr == b && ev.type == MRL_EVENT_RESTORED;
		CHECK(mrl_event_ack(ctx, &ev) == 0, "event acked");
	}
	CHECK(brk == 1 && restored == 1, "B's BREAK and RESTORED events got and acked (%d, %d)", brk,
	      restored);
	/* an munmap fences C before it lands; D is deregistered */
	CHECK(munmap(c_mem, PG) == 0, "munmap of C");
	in = t_query(ctx, c);
	CHECK(in.state == MRL_STATE_FENCED && in.cause == MRL_CAUSE_UNMAPPED, "C fenced, unmapped (%s)",
	      mrl_state_str(in.state));
	uint64_t d_key = t_query(ctx, d).key;
	CHECK(mrl_mr_dereg(ctx, d) == 0, "deregister D");
	CHECK(mrl_mock_lookup(ctx->dev, d_key, &ka, &kl) == -ENOENT, "D gone from the device");
	CHECK(t_query(ctx, b).state == MRL_STATE_ACTIVE, "query answers");

	/* A was waiting all along; let it go */
	CHECK(ra.ret == 0 && ra.mr == 0, "A's registration still in its device call");
	mrl_mock_block(ctx->dev, NULL);
	pthread_join(th, NULL);
	CHECK(ra.ret == 0, "A registered (%d)", ra.ret);
	in = t_query(ctx, ra.mr);
	CHECK(in.state == MRL_STATE_ACTIVE && mrl_mock_lookup(ctx->dev, in.key, &ka, &kl) == 0 &&
		      ka == a_mem,
	      "A active and in the device");
	mrl_mr_dereg(ctx, ra.mr);
	mrl_mr_dereg(ctx, b);
	mrl_mr_dereg(ctx, c);
	mrl_ctx_destroy(ctx);
	munmap(mem, 4 * PG);
	return t_done("t_dev_unlocked child");
}

int main(void)
{
	return t_in_child(child, "t_dev_unlocked",
			  "the child hung: other work waited for a registration's device call");
}
