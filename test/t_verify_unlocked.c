/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* No /proc read under ctx->lock in verify (issue 10): a pass of mrl_verify
 * is held just before it reads /proc/self/maps (mrl_verify_read_hook, an
 * event the test waits for, released by another); meanwhile calls that need
 * ctx->lock complete (mrl_ctx_stats, mrl_mr_query, an event acked). While it
 * is held, A moves to a new generation through the after-the-fact path and
 * B is unmapped by a raw munmap (no interposer sees it): the pass reads A
 * again (its stamp moved: the hook runs a second time) and fences B, cause
 * unmapped, returning 1. Had the read been made under the lock, the stats
 * call would wait for the held pass: the child hangs and the parent fails
 * it. Run in a child so a hang fails the test instead of the suite. */
#include <pthread.h>
#include <semaphore.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include "mrl_int.h"
#include "helpers.h"

#define PG 4096

static sem_t in_read, go;
static _Atomic int hook_calls;

static void hold(struct mrl_ctx *ctx)
{
	(void)ctx;
	if (hook_calls++ == 0) {
		sem_post(&in_read);
		sem_wait(&go);
	}
}

struct verify_arg {
	mrl_ctx *ctx;
	int ret;
};

static void *verify_main(void *p)
{
	struct verify_arg *a = p;
	a->ret = mrl_verify(a->ctx, 0);
	return NULL;
}

static int child(void)
{
	char dir[256], path[300];
	t_scratch("tmpfs", dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/f", dir);
	t_make_file(path, 2 * PG);
	int fd = open(path, O_RDWR);
	REQUIRE(fd >= 0, "open");
	char *a_mem = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	char *b_mem = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, PG);
	REQUIRE(a_mem != MAP_FAILED && b_mem != MAP_FAILED, "mmap");
	mrl_ctx *ctx = t_ctx("mock", 5000);
	mrl_mr_t a, b;
	REQUIRE(mrl_mr_reg(ctx, a_mem, PG, MRL_ACCESS_REMOTE_WRITE, NULL, &a) == 0, "register A");
	REQUIRE(mrl_mr_reg(ctx, b_mem, PG, MRL_ACCESS_REMOTE_WRITE, NULL, &b) == 0, "register B");
	CHECK(mrl_verify(ctx, 0) == 0, "nothing changed yet");
	uint32_t a_gen = t_query(ctx, a).generation;

	sem_init(&in_read, 0, 0);
	sem_init(&go, 0, 0);
	hook_calls = 0;
	mrl_verify_read_hook = hold;
	struct verify_arg va = {.ctx = ctx, .ret = -1};
	pthread_t th;
	pthread_create(&th, NULL, verify_main, &va);
	sem_wait(&in_read); /* the pass copied the MRs and is about to read */

	struct mrl_stats st = {.size = sizeof(st)};
	CHECK(mrl_ctx_stats(ctx, &st) == 0 && st.mrs == 2, "stats while the read is held (%llu MRs)",
	      (unsigned long long)st.mrs);
	CHECK(t_query(ctx, a).state == MRL_STATE_ACTIVE, "query while the read is held");
	/* A changes generation in between (what a watcher's after-the-fact
	 * path does); B is unmapped where nobody sees it */
	mrl_lock(&ctx->lock);
	mrl_mr_changed_after(ctx, mrl_ht_get(&ctx->ht, a), MRL_CAUSE_MODIFIED, 0, PG, mrl_now_ns());
	mrl_unlock(&ctx->lock);
	struct mrl_event ev;
	CHECK(t_wait_event(ctx, MRL_EVENT_CHANGED, a, T_HANG_MS, &ev) == 0, "A's CHANGED event");
	CHECK(t_query(ctx, a).generation != a_gen, "A has a new generation");
	CHECK(syscall(SYS_munmap, b_mem, PG) == 0, "raw munmap of B");
	CHECK(va.ret == -1, "the pass is still held");
	sem_post(&go);
	pthread_join(th, NULL);
	mrl_verify_read_hook = NULL;

	CHECK(va.ret == 1, "the pass fenced one MR (%d)", va.ret);
	CHECK(hook_calls == 2, "A, whose stamp moved while it was read, read again (%d reads)",
	      (int)hook_calls);
	struct mrl_mr_info ia = t_query(ctx, a), ib = t_query(ctx, b);
	CHECK(ia.state == MRL_STATE_ACTIVE, "A still active (%s)", mrl_state_str(ia.state));
	CHECK(ib.state == MRL_STATE_FENCED && ib.cause == MRL_CAUSE_UNMAPPED, "B fenced, unmapped (%s, %s)",
	      mrl_state_str(ib.state), mrl_cause_str(ib.cause));
	CHECK(mrl_verify(ctx, 0) == 0, "a second pass finds nothing new");
	mrl_mr_dereg(ctx, a);
	mrl_mr_dereg(ctx, b);
	mrl_ctx_destroy(ctx);
	munmap(a_mem, PG);
	close(fd);
	unlink(path);
	rmdir(dir);
	return t_done("t_verify_unlocked child");
}

int main(void)
{
	return t_in_child(child, "t_verify_unlocked",
			  "the child hung: a call needing the context lock waited for verify's /proc read");
}
