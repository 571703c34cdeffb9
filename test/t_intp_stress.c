/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The interposer against contexts coming and going: threads map, advise
 * and unmap unregistered memory in a hole between MRs (so every call gets
 * past the lock-free box and into the contexts), while another thread
 * creates and destroys contexts whose MRs frame the same hole. Run under
 * TSan and ASan: a context freed while a call still looks at it shows up
 * there. Nothing registered is touched, so every MR stays ACTIVE. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/mman.h>

#include "helpers.h"

#define KIB 1024u
#define MIB (1024u * KIB)
#define PIECE (64u * KIB)
#define NWORK 2
#define CYCLES 40

static char *base; /* 4 MiB: MRs at [1M,2M) and [3M,3M+64K), the hole between */
static atomic_int stop;
static atomic_long ops, errors, taken;

static char *piece(int i)
{
	return base + 2 * MIB + (size_t)i * 4 * PIECE;
}

/* Each worker owns one piece of the hole while it is mapped, and only
 * then: once it unmaps it, anything in the process may be placed there (a
 * sanitizer runtime's own mappings were, about 1 run in 20). So the piece
 * is taken back with MAP_FIXED_NOREPLACE (not interposed), and MAP_FIXED,
 * the interposed replace, only ever lands on the worker's own mapping: a
 * MAP_FIXED over the free hole would silently replace whatever another
 * thread put there (it did: TSan's state, then SIGSEGV). */
static void *worker(void *arg)
{
	char *p = piece((int)(intptr_t)arg);
	bool own = true; /* part of base at first */
	while (!atomic_load(&stop)) {
		if (!own) {
			void *q = mmap(p, PIECE, PROT_READ | PROT_WRITE,
				       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
			if (q == MAP_FAILED) { /* someone else's now: leave it be */
				if (errno != EEXIST)
					atomic_fetch_add(&errors, 1);
				atomic_fetch_add(&taken, 1);
				sched_yield();
				continue;
			}
			if (q != p) { /* a kernel without NOREPLACE took it as a hint */
				munmap(q, PIECE);
				atomic_fetch_add(&taken, 1);
				continue;
			}
			own = true;
		}
		if (mmap(p, PIECE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != p)
			atomic_fetch_add(&errors, 1);
		p[0] = 1;
		if (madvise(p, PIECE, MADV_DONTNEED))
			atomic_fetch_add(&errors, 1);
		if (munmap(p, PIECE))
			atomic_fetch_add(&errors, 1);
		own = false;
		atomic_fetch_add(&ops, 3);
	}
	return NULL;
}

/* contexts whose MRs frame the hole: every worker call enters them */
static void *churn(void *arg)
{
	(void)arg;
	for (int i = 0; i < CYCLES; i++) {
		mrl_ctx *c = t_ctx("mock", 1000);
		mrl_mr_t a, b;
		CHECK(mrl_mr_reg(c, base + 2 * MIB - PIECE, PIECE, MRL_ACCESS_REMOTE_WRITE, NULL, &a) == 0 &&
			      mrl_mr_reg(c, base + 3 * MIB, PIECE, MRL_ACCESS_REMOTE_WRITE, NULL, &b) == 0,
		      "cycle %d: register around the hole", i);
		if (i % 2) /* half the time the context goes with its MRs in */
			mrl_mr_dereg(c, a), mrl_mr_dereg(c, b);
		mrl_ctx_destroy(c);
	}
	atomic_store(&stop, 1);
	return NULL;
}

int main(void)
{
	base = mmap(NULL, 4 * MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(base != MAP_FAILED, "map 4 MiB");
	memset(base, 1, 4 * MIB);
	mrl_ctx *ctx = t_ctx("mock", 1000);
	if (!(mrl_ctx_watchers(ctx) & MRL_WATCH_INTERPOSE))
		t_skip("the preload library is not what callers reach in this build");
	mrl_mr_t m1, m2;
	REQUIRE(mrl_mr_reg(ctx, base + MIB, MIB, MRL_ACCESS_REMOTE_WRITE, NULL, &m1) == 0, "register [1M,2M)");
	REQUIRE(mrl_mr_reg(ctx, base + 3 * MIB, PIECE, MRL_ACCESS_REMOTE_WRITE, NULL, &m2) == 0, "register at 3M");
	pthread_t w[NWORK], c;
	for (int i = 0; i < NWORK; i++)
		pthread_create(&w[i], NULL, worker, (void *)(intptr_t)i);
	pthread_create(&c, NULL, churn, NULL);
	pthread_join(c, NULL);
	for (int i = 0; i < NWORK; i++)
		pthread_join(w[i], NULL);
	printf("%ld calls beside %d context lifetimes; a piece was someone else's %ld times\n",
	       atomic_load(&ops), CYCLES, atomic_load(&taken));
	CHECK(atomic_load(&errors) == 0, "every mmap/madvise/munmap in the hole succeeded (%ld failed)",
	      atomic_load(&errors));
	CHECK(atomic_load(&ops) > 0, "the workers ran");
	CHECK(t_query(ctx, m1).state == MRL_STATE_ACTIVE && t_query(ctx, m2).state == MRL_STATE_ACTIVE,
	      "the MRs around the hole were not touched");
	mrl_mr_dereg(ctx, m1);
	mrl_mr_dereg(ctx, m2);
	mrl_ctx_destroy(ctx);
	/* base but the workers' pieces: they unmapped theirs, and what is
	 * there now may be another's */
	char *from = base;
	for (int i = 0; i < NWORK; i++) {
		munmap(from, (size_t)(piece(i) - from));
		from = piece(i) + PIECE;
	}
	munmap(from, (size_t)(base + 4 * MIB - from));
	return t_done("t_intp_stress");
}
