/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* MRL_CTX_SECCOMP holds the owner's raw mmap(MAP_FIXED) over a registered
 * range before it lands: the MR is fenced (cause replaced) while the call
 * still waits, and the new pages arrive only after the device let go.
 * Deterministic: the device worker is kept busy first (another MR's
 * restore waits in the mock registrar), so the held call cannot land until
 * the test lets the device go; meanwhile the MR reads FENCED/replaced, the
 * call has not returned and the old page is still mapped. Then: the
 * coverage cell (owner mmap MAP_FIXED: before) matches, the FENCED event
 * came and no CHANGED one (never seen after); MAP_FIXED_NOREPLACE over an
 * MR (EEXIST) and MAP_FIXED elsewhere leave MRs alone; a raw
 * shmat(SHM_REMAP) over an MR, and a raw mremap(MREMAP_FIXED) onto one,
 * fence it (replaced) before they return. */
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/syscall.h>

#include "mrl_int.h"
#include "helpers.h"

#define PG 4096
#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

struct call {
	char *at;
	long r;
	atomic_int returned;
};

static void *mapper(void *p)
{
	struct call *c = p;
	c->r = syscall(SYS_mmap, c->at, PG, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	atomic_store(&c->returned, 1);
	return NULL;
}

/* The monitor's view of mr, under the context's lock (white box): public
 * queries wait for the device to apply a fence, and here the device is
 * kept busy on purpose. Waits (bounded by T_HANG_MS) for FENCED. */
static bool fenced_inside(mrl_ctx *ctx, mrl_mr_t h, uint32_t *cause)
{
	uint64_t end = t_now_ns() + (uint64_t)T_HANG_MS * 1000000ull;
	for (;;) {
		mrl_lock(&ctx->lock);
		struct mrl_mr *mr = mrl_ht_get(&ctx->ht, h);
		bool f = mr && mr->state == MRL_STATE_FENCED;
		if (f)
			*cause = (uint32_t)mr->cause;
		mrl_unlock(&ctx->lock);
		if (f || t_now_ns() > end)
			return f;
		usleep(1000);
	}
}

static char *page(char fill)
{
	char *p = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(p != MAP_FAILED, "mmap");
	memset(p, fill, PG);
	return p;
}

/* the events of mr until one of type want: whether a CHANGED came first */
static int changed_events(mrl_ctx *ctx, mrl_mr_t mr)
{
	struct mrl_event ev;
	int changed = 0;
	while (mrl_event_get(ctx, &ev) == 0) {
		changed += ev.mr == mr && ev.type == MRL_EVENT_CHANGED;
		mrl_event_ack(ctx, &ev);
	}
	return changed;
}

int main(void)
{
	struct mrl_ctx_opts o = {.size = sizeof(o), .provider = "mock", .deadline_ms = T_HANG_MS,
				 .flags = MRL_CTX_SECCOMP};
	mrl_ctx *ctx;
	int ret = mrl_ctx_create(&o, &ctx);
	if (ret == -EOPNOTSUPP || ret == -ENOSYS)
		t_skip("seccomp user notification unavailable: %s", mrl_last_error());
	REQUIRE(ret == 0, "context with MRL_CTX_SECCOMP: %s", mrl_last_error());

	char *a = page('A'), *b = page('B');
	mrl_mr_t ma, mb;
	REQUIRE(mrl_mr_reg(ctx, a, PG, MRL_ACCESS_REMOTE_WRITE, NULL, &ma) == 0 &&
			mrl_mr_reg(ctx, b, PG, MRL_ACCESS_REMOTE_WRITE, NULL, &mb) == 0,
		"register: %s", mrl_last_error());
	struct mrl_mr_info in = t_query(ctx, ma);
	CHECK((in.watchers & MRL_WATCH_SECCOMP) &&
		      in.coverage[MRL_CHG_OWNER_MAP_FIXED] == MRL_SEEN_BEFORE,
	      "coverage: the owner's mmap(MAP_FIXED) claimed before, seccomp watching (%s)",
	      mrl_seen_str(in.coverage[MRL_CHG_OWNER_MAP_FIXED]));

	/* the device worker kept busy: B's restore after a raw madvise waits
	 * in the mock registrar */
	mrl_mock_block(ctx->dev, b);
	REQUIRE(syscall(SYS_madvise, b, PG, MADV_DONTNEED) == 0, "raw madvise of B");
	mrl_mock_wait_blocked(ctx->dev);

	/* 1. raw mmap(MAP_FIXED) over A: fenced while the call is held */
	struct call c = {.at = a};
	pthread_t t;
	REQUIRE(pthread_create(&t, NULL, mapper, &c) == 0, "mapper thread");
	uint32_t cause = 0;
	CHECK(fenced_inside(ctx, ma, &cause) && cause == MRL_CAUSE_REPLACED,
	      "A fenced by the monitor, cause replaced (%s)", mrl_cause_str(cause));
	CHECK(!atomic_load(&c.returned) && a[0] == 'A' && a[PG - 1] == 'A',
	      "held: fenced before the call lands, the old page still mapped");
	mrl_mock_block(ctx->dev, NULL); /* the device goes on: B restored, A let go */
	pthread_join(t, NULL);
	CHECK(c.r == (long)(uintptr_t)a, "the raw mmap returned its address (%ld)", c.r);
	CHECK(a[0] == 0, "the new anonymous page is there after it returned");
	struct mrl_event ev;
	CHECK(t_wait_event(ctx, MRL_EVENT_FENCED, ma, T_HANG_MS, &ev) == 0 &&
		      ev.cause == MRL_CAUSE_REPLACED,
	      "FENCED event, cause replaced");
	in = t_query(ctx, ma);
	CHECK(in.state == MRL_STATE_FENCED && in.cause == MRL_CAUSE_REPLACED,
	      "A queried: fenced, cause replaced");
	CHECK(t_wait_state(ctx, mb, MRL_STATE_ACTIVE, T_HANG_MS) == 0, "B restored");
	CHECK(changed_events(ctx, ma) == 0, "A never reported as changed after the fact");
	mrl_mr_dereg(ctx, ma);

	/* 2. MAP_FIXED_NOREPLACE over B fails EEXIST and touches nothing; a
	 * MAP_FIXED over an unregistered page goes through */
	long r = syscall(SYS_mmap, b, PG, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
			 -1, 0);
	CHECK(r < 0 && errno == EEXIST, "MAP_FIXED_NOREPLACE over B: EEXIST");
	char *u = page('U');
	CHECK(syscall(SYS_mmap, u, PG, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) ==
		      (long)(uintptr_t)u,
	      "MAP_FIXED over an unregistered page");
	CHECK(t_query(ctx, mb).state == MRL_STATE_ACTIVE, "B untouched by either");

	/* 3. raw shmat(SHM_REMAP) over B: fenced, cause replaced, when it returns */
	int id = shmget(IPC_PRIVATE, PG, IPC_CREAT | 0600);
	if (id < 0) {
		printf("shmget: %s: shmat case not run\n", strerror(errno));
	} else {
		uint64_t t0 = t_now_ns();
		r = syscall(SYS_shmat, id, b, SHM_REMAP);
		uint64_t t1 = t_now_ns();
		shmctl(id, IPC_RMID, NULL);
		CHECK(r == (long)(uintptr_t)b, "raw shmat(SHM_REMAP) over B (%ld: %s)", r,
		      r < 0 ? strerror(errno) : "");
		in = t_query(ctx, mb);
		CHECK(in.state == MRL_STATE_FENCED && in.cause == MRL_CAUSE_REPLACED,
		      "B fenced, cause replaced, when shmat returns (%s, %s)", mrl_state_str(in.state),
		      mrl_cause_str(in.cause));
		CHECK(t_wait_event(ctx, MRL_EVENT_FENCED, mb, T_HANG_MS, &ev) == 0 &&
			      ev.time_ns >= t0 && ev.time_ns <= t1,
		      "FENCED event, seen during the call");
		CHECK(changed_events(ctx, mb) == 0, "B never reported as changed after the fact");
		shmdt(b);
	}
	mrl_mr_dereg(ctx, mb);

	/* 4. raw mremap(MREMAP_FIXED) of another page onto an MR: the MR is
	 * replaced (fenced, cause replaced) when the call returns */
	char *c4 = page('C'), *src = page('S');
	mrl_mr_t mc;
	REQUIRE(mrl_mr_reg(ctx, c4, PG, MRL_ACCESS_REMOTE_WRITE, NULL, &mc) == 0, "register C");
	r = syscall(SYS_mremap, src, PG, PG, MREMAP_MAYMOVE | MREMAP_FIXED, c4);
	CHECK(r == (long)(uintptr_t)c4 && c4[0] == 'S', "raw mremap onto C (%ld)", r);
	in = t_query(ctx, mc);
	CHECK(in.state == MRL_STATE_FENCED && in.cause == MRL_CAUSE_REPLACED,
	      "C fenced, cause replaced, when mremap returns (%s, %s)", mrl_state_str(in.state),
	      mrl_cause_str(in.cause));
	CHECK(changed_events(ctx, mc) == 0, "C never reported as changed after the fact");
	mrl_mr_dereg(ctx, mc);
	mrl_ctx_destroy(ctx);
	return t_done("t_seccomp_mapfixed");
}
