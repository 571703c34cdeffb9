/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* A fence is told only once the device applied it (issue 10). Device calls
 * are the device worker's (devq.c); here the worker is held in a call that
 * waits (the mock's registration of X, made again after a madvise break,
 * waits until the test lets it go) while the owner fences Y. The fence is
 * decided, but Y's registration is still in the device: a peer that has
 * not heard still reaches it. Until the device lets go of it, the library
 * must tell nobody: no FENCED event, and mrl_mr_query does not answer
 * "fenced" (it waits; so does mrl_ctx_stats, which counts it then). Before, all three said
 * "fenced" at once: the owner went on to change the memory (a truncate, an
 * unmap) while the device could still write there. Once the device is let
 * go, all three say it, and the key is gone from the device. */
#include <pthread.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include "mrl_int.h"
#include "helpers.h"

#define PG 4096

static mrl_ctx *ctx;
static char *x_mem;
static mrl_mr_t y;
static int fence_ret = 1;
static pid_t main_tid;
static atomic_int query_back;

static void *madvise_x(void *p)
{
	(void)p;
	CHECK(madvise(x_mem, PG, MADV_DONTNEED) == 0, "madvise X");
	return NULL;
}

static void *fence_y(void *p)
{
	(void)p;
	fence_ret = mrl_mr_fence(ctx, y); /* returns once applied */
	return NULL;
}

/* the main thread asleep (waiting in mrl_mr_query), from its /proc stat */
static bool main_sleeps(void)
{
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", (int)main_tid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = 0;
	char *rp = strrchr(buf, ')');
	return rp && rp[1] == ' ' && rp[2] == 'S';
}

/* lets the device go once the main thread's query has come back (the bug)
 * or waits (the fix) */
static void *unblock(void *p)
{
	(void)p;
	while (!atomic_load(&query_back) && !main_sleeps())
		sched_yield();
	mrl_mock_block(ctx->dev, NULL);
	return NULL;
}

static int y_state_inside(void)
{
	mrl_lock(&ctx->lock);
	struct mrl_mr *m = mrl_ht_get(&ctx->ht, y);
	int st = m ? m->state : -1;
	mrl_unlock(&ctx->lock);
	return st;
}

static int fenced_events(void)
{
	int n = 0;
	struct mrl_event ev;
	while (mrl_event_get(ctx, &ev) == 0) {
		n += ev.mr == y && ev.type == MRL_EVENT_FENCED;
		mrl_event_ack(ctx, &ev);
	}
	return n;
}

int main(void)
{
	main_tid = (pid_t)syscall(SYS_gettid);
	ctx = t_ctx("mock", 5000);
	if (!(mrl_ctx_watchers(ctx) & MRL_WATCH_INTERPOSE))
		t_skip("the preload library is not what callers of madvise reach here");
	x_mem = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *y_mem = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(x_mem != MAP_FAILED && y_mem != MAP_FAILED, "mmap");
	memset(x_mem, 1, PG);
	memset(y_mem, 2, PG);
	mrl_mr_t x;
	REQUIRE(mrl_mr_reg(ctx, x_mem, PG, MRL_ACCESS_REMOTE_WRITE, NULL, &x) == 0, "register X");
	REQUIRE(mrl_mr_reg(ctx, y_mem, PG, MRL_ACCESS_REMOTE_WRITE, NULL, &y) == 0, "register Y");
	uint64_t y_key = t_query(ctx, y).key;

	struct mrl_stats st0 = {.size = sizeof(st0)}, st1 = st0;
	mrl_ctx_stats(ctx, &st0); /* (it waits for the device: not once it is held) */
	/* the device worker is held: X's registration, made again after its
	 * madvise break, waits in the device */
	mrl_mock_block(ctx->dev, x_mem);
	pthread_t t1, t2, tu;
	pthread_create(&t1, NULL, madvise_x, NULL);
	mrl_mock_wait_blocked(ctx->dev);
	fenced_events(); /* X's break */

	/* the owner fences Y: decided at once, applied when the worker comes to it */
	pthread_create(&t2, NULL, fence_y, NULL);
	for (uint64_t hang = t_now_ns() + T_HANG_MS * 1000000ull;
	     y_state_inside() != MRL_STATE_FENCED && t_now_ns() < hang;)
		usleep(1000);
	REQUIRE(y_state_inside() == MRL_STATE_FENCED, "the fence of Y is decided");
	void *ka;
	size_t kl;
	REQUIRE(mrl_mock_lookup(ctx->dev, y_key, &ka, &kl) == 0,
		"Y's registration is still in the device (the worker is held)");

	CHECK(fenced_events() == 0, "no FENCED event before the device applied it");

	pthread_create(&tu, NULL, unblock, NULL);
	struct mrl_mr_info in = t_query(ctx, y);
	bool still_there = mrl_mock_lookup(ctx->dev, y_key, &ka, &kl) == 0;
	atomic_store(&query_back, 1);
	CHECK(in.state == MRL_STATE_FENCED, "the query says fenced (%s)", mrl_state_str(in.state));
	CHECK(!still_there, "the query said fenced only once the device let go of Y's registration");

	pthread_join(tu, NULL);
	pthread_join(t2, NULL);
	pthread_join(t1, NULL);
	CHECK(fence_ret == 0, "mrl_mr_fence returned 0 (%d)", fence_ret);
	mrl_ctx_stats(ctx, &st1);
	CHECK(st1.fences == st0.fences + 1, "the fence is counted now");
	CHECK(fenced_events() == 1, "one FENCED event for Y now");
	CHECK(mrl_mock_lookup(ctx->dev, y_key, &ka, &kl) == -ENOENT, "Y's key is gone from the device");
	in = t_query(ctx, x);
	CHECK(in.state == MRL_STATE_ACTIVE && in.restores == 1, "X was restored (%s, %u restores)",
	      mrl_state_str(in.state), in.restores);
	mrl_mr_dereg(ctx, x);
	mrl_mr_dereg(ctx, y);
	mrl_ctx_destroy(ctx);
	munmap(x_mem, PG);
	munmap(y_mem, PG);
	return t_done("t_fence_applied");
}
