/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* munmap and madvise(DONTNEED) of a registered range from a signal handler
 * that interrupted a thread inside malloc: the call completes (the
 * interposer does no allocation and takes no lock the interrupted code may
 * hold: it hands the range to the monitor and waits on a futex), and the MR
 * is resolved before the call lands: munmap fences it with cause
 * "unmapped"; madvise fences a FENCE-policy MR and pauses and restores a
 * RESTORE-policy one (cause "madvised"). Run in a child so a deadlock fails
 * the test instead of hanging the suite. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>

#include "helpers.h"

#define NMR 64

static char *addr[NMR];
static atomic_int target = -1, handled, stop, madv;
static int results[NMR], madv_results[NMR];

static void on_sig(int sig)
{
	(void)sig;
	int k = atomic_load(&target);
	if (k < 0)
		return;
	if (atomic_load(&madv))
		madv_results[k] = madvise(addr[k], 4096, MADV_DONTNEED);
	else
		results[k] = munmap(addr[k], 4096);
	atomic_store(&target, -1);
	atomic_fetch_add(&handled, 1);
}

/* lives in malloc and free, so the signal lands inside them */
static void *churn(void *arg)
{
	(void)arg;
	void *keep[64] = {0};
	for (unsigned i = 0; !atomic_load(&stop); i++) {
		unsigned s = i % 64;
		free(keep[s]);
		keep[s] = malloc(16 + (i * 2654435761u) % 70000);
	}
	for (unsigned s = 0; s < 64; s++)
		free(keep[s]);
	return NULL;
}

/* one signal per MR, each until its handler ran with a target (a signal
 * may land between two mallocs: it still must complete) */
static void signal_each(pthread_t th)
{
	atomic_store(&handled, 0);
	for (int k = 0; k < NMR; k++) {
		atomic_store(&target, k);
		while (atomic_load(&handled) == k) {
			pthread_kill(th, SIGUSR1);
			for (int spin = 0; spin < 100000 && atomic_load(&handled) == k; spin++)
				;
		}
	}
}

static int child(void)
{
	mrl_ctx *ctx = t_ctx("mock", 1000);
	if (!(mrl_ctx_watchers(ctx) & MRL_WATCH_INTERPOSE))
		t_skip("the preload library is not what callers of munmap reach here");
	mrl_mr_t mr[NMR];
	/* the madvise round's memory first, never at an address the munmap
	 * round frees: the userfaultfd watcher handles an UNMAP event after
	 * the munmap returned and finds MRs by address, so a late one fences
	 * an MR registered since at the same address (a race of its own) */
	char *later[NMR];
	for (int k = 0; k < NMR; k++) {
		later[k] = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		REQUIRE(later[k] != MAP_FAILED, "mmap");
	}
	for (int k = 0; k < NMR; k++) {
		addr[k] = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		REQUIRE(addr[k] != MAP_FAILED, "mmap");
		REQUIRE(mrl_mr_reg(ctx, addr[k], 4096, MRL_ACCESS_REMOTE_WRITE, NULL, &mr[k]) == 0,
			"register %d", k);
	}
	struct sigaction sa = {.sa_handler = on_sig};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	pthread_t th;
	pthread_create(&th, NULL, churn, NULL);
	signal_each(th);
	int fenced = 0;
	for (int k = 0; k < NMR; k++) {
		CHECK(results[k] == 0, "munmap %d from the handler succeeded", k);
		struct mrl_mr_info in = t_query(ctx, mr[k]);
		fenced += in.state == MRL_STATE_FENCED && in.cause == MRL_CAUSE_UNMAPPED;
	}
	CHECK(fenced == NMR, "every MR fenced, cause unmapped (%d of %d)", fenced, NMR);
	for (int k = 0; k < NMR; k++)
		mrl_mr_dereg(ctx, mr[k]);

	/* madvise: even MRs under MRL_POLICY_FENCE, odd ones restored */
	for (int k = 0; k < NMR; k++) {
		addr[k] = later[k];
		memset(addr[k], 1, 4096);
		struct mrl_reg_opts o = {.size = sizeof(o),
					 .policy = k % 2 ? MRL_POLICY_RESTORE : MRL_POLICY_FENCE};
		REQUIRE(mrl_mr_reg(ctx, addr[k], 4096, MRL_ACCESS_REMOTE_WRITE, &o, &mr[k]) == 0,
			"register %d", k);
	}
	atomic_store(&madv, 1);
	signal_each(th);
	atomic_store(&stop, 1);
	pthread_join(th, NULL);
	int mfenced = 0, restored = 0;
	for (int k = 0; k < NMR; k++) {
		CHECK(madv_results[k] == 0, "madvise %d from the handler succeeded", k);
		CHECK(addr[k][0] == 0, "madvise %d landed (the page reads zero)", k);
		struct mrl_mr_info in = t_query(ctx, mr[k]);
		if (k % 2) {
			bool ok = in.state == MRL_STATE_ACTIVE && in.cause == MRL_CAUSE_MADVISED &&
				  in.breaks == 1 && in.restores == 1;
			restored += ok;
			if (!ok)
				fprintf(stderr, "MR %d: %s, cause %s, %u breaks, %u restores\n", k,
					mrl_state_str(in.state), mrl_cause_str(in.cause), in.breaks,
					in.restores);
		}
		else
			mfenced += in.state == MRL_STATE_FENCED && in.cause == MRL_CAUSE_MADVISED;
	}
	CHECK(mfenced == NMR / 2, "every FENCE-policy MR fenced, cause madvised (%d of %d)", mfenced,
	      NMR / 2);
	CHECK(restored == NMR / 2, "every other MR paused once and restored (%d of %d)", restored,
	      NMR / 2);
	for (int k = 0; k < NMR; k++) {
		mrl_mr_dereg(ctx, mr[k]);
		munmap(addr[k], 4096);
	}
	mrl_ctx_destroy(ctx);
	printf("%d munmaps from a handler inside malloc, %d MRs fenced; %d madvises, %d fenced, "
	       "%d restored\n", NMR, fenced, NMR, mfenced, restored);
	return t_done("t_intp_signal child");
}

int main(void)
{
	return t_in_child(child, "t_intp_signal",
			  "the child deadlocked (munmap or madvise from a handler inside malloc never returned)");
}
