/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* fork while another thread of the parent holds the context's locks: the
 * child's calls on the parent's context say EPERM at once instead of
 * waiting for ever on a lock whose holder does not exist in the child.
 * First with the locks held for certain (taken by a thread of the test),
 * then with a thread looping over mrl_mr_query/mrl_ctx_stats while the
 * main thread forks over and over. */
#include <pthread.h>
#include <sys/mman.h>

#include "helpers.h"
#include "mrl_int.h"

#define FORKS 60

static mrl_ctx *ctx;
static mrl_mr_t mr;
static atomic_bool stop;
static pthread_mutex_t gate = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static int phase; /* 1: locks held, 2: release them */

static void *holder(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&ctx->flush_lock);
	pthread_mutex_lock(&ctx->lock);
	pthread_mutex_lock(&ctx->evq_lock);
	pthread_mutex_lock(&gate);
	phase = 1;
	pthread_cond_broadcast(&gate_cv);
	while (phase != 2)
		pthread_cond_wait(&gate_cv, &gate);
	pthread_mutex_unlock(&gate);
	pthread_mutex_unlock(&ctx->evq_lock);
	pthread_mutex_unlock(&ctx->lock);
	pthread_mutex_unlock(&ctx->flush_lock);
	return NULL;
}

static void *looper(void *arg)
{
	(void)arg;
	struct mrl_mr_info in = {.size = sizeof(in)};
	struct mrl_stats st = {.size = sizeof(st)};
	while (!atomic_load(&stop)) {
		mrl_mr_query(ctx, mr, &in);
		mrl_ctx_stats(ctx, &st);
	}
	return NULL;
}

/* the child: the calls that take ctx->lock, flush_lock or evq_lock */
static int child_calls(void *spare)
{
	int bad = 0;
	struct mrl_mr_info in = {.size = sizeof(in)};
	struct mrl_stats st = {.size = sizeof(st)};
	struct mrl_event ev = {.internal = 1};
	mrl_mr_t m2;
	bad += mrl_mr_query(ctx, mr, &in) != -EPERM;
	bad += mrl_ctx_stats(ctx, &st) != -EPERM;
	bad += mrl_event_get(ctx, &ev) != -EPERM;
	bad += mrl_event_ack(ctx, &ev) != -EPERM;
	bad += mrl_mr_reg(ctx, spare, 4096, 0, NULL, &m2) != -EPERM;
	bad += mrl_mr_fence(ctx, mr) != -EPERM;
	bad += mrl_verify(ctx, 0) != -EPERM;
	bad += mrl_mr_dereg(ctx, mr) != -EPERM;
	bad += mrl_ctx_destroy(ctx) != -EPERM;
	return bad;
}

int main(void)
{
	ctx = t_ctx("mock", 1000);
	char *buf = mmap(NULL, 1 << 16, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(mrl_mr_reg(ctx, buf, 1 << 15, MRL_ACCESS_REMOTE_WRITE, NULL, &mr) == 0, "register");

	/* 1: the locks are held for certain */
	pthread_t th;
	pthread_create(&th, NULL, holder, NULL);
	pthread_mutex_lock(&gate);
	while (phase != 1)
		pthread_cond_wait(&gate_cv, &gate);
	pthread_mutex_unlock(&gate);
	pid_t c = fork();
	if (c == 0)
		_exit(child_calls(buf + (1 << 15)));
	int st = t_wait_child(c, 4 * T_HANG_MS);
	CHECK(st != -2, "no call of the child waits for the lock a parent thread held at fork");
	CHECK(st == 0, "every call in the child says EPERM (%d did not)", st);
	pthread_mutex_lock(&gate);
	phase = 2;
	pthread_cond_broadcast(&gate_cv);
	pthread_mutex_unlock(&gate);
	pthread_join(th, NULL);

	/* 2: forks racing a thread that takes and drops the lock all the time */
	pthread_create(&th, NULL, looper, NULL);
	int hung = 0, wrong = 0;
	for (int i = 0; i < FORKS; i++) {
		c = fork();
		if (c == 0)
			_exit(child_calls(buf + (1 << 15)));
		st = t_wait_child(c, 4 * T_HANG_MS);
		hung += st == -2;
		wrong += st != 0 && st != -2;
	}
	atomic_store(&stop, true);
	pthread_join(th, NULL);
	CHECK(hung == 0, "%d of %d children hung", hung, FORKS);
	CHECK(wrong == 0, "%d of %d children got something else than EPERM", wrong, FORKS);
	CHECK(t_query(ctx, mr).state == MRL_STATE_ACTIVE, "the parent's MR is untouched");
	CHECK(mrl_mr_dereg(ctx, mr) == 0 && mrl_ctx_destroy(ctx) == 0, "and the parent cleans up");
	return t_done("t_fork_locked");
}
