/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* A peer's writes in flight across an owner's change (t_fence_drain,
 * t_unmap): the peer keeps a window of writes in flight, each a unique
 * stamp to a slot of its own, the owner's action runs on a thread of its
 * own once they flow (it may wait for the peer, whose progress this thread
 * drives), and the peer goes on until its writes are refused. Then every
 * write the peer saw complete with status 0 must be in the memory; every
 * other one failed -EKEYREVOKED (or was refused at once) with the cause. */
#ifndef MRL_INFLIGHT_H
#define MRL_INFLIGHT_H
#include <pthread.h>
#include <stdatomic.h>

#include "rig_pair.h"

#define IF_SLOT 64u
#define IF_WINDOW 48 /* writes in flight at once */

struct inflight {
	uint32_t nslots, next;
	int round;
	uint8_t *src;     /* each slot's stamp, as posted */
	int *st;          /* 1: not posted, 2: in flight, else its status */
	uint32_t *cause;
	void *(*act)(void *);
	void *arg;
	atomic_int go, finished;
};

struct inflight_counts {
	long ok, refused, failed_ok, lost, other;
};

static void *inflight_act(void *a)
{
	struct inflight *w = a;
	while (!atomic_load(&w->go))
		sched_yield();
	w->act(w->arg);
	atomic_store(&w->finished, 1);
	return NULL;
}

/* Stream to r (nslots slots of IF_SLOT bytes) with act(arg) run once 256
 * writes went; returns once act returned, the writes were refused and
 * nothing is in flight. */
static inline void inflight_run(struct pair *p, mrl_rmr *r, struct inflight *w, uint32_t nslots,
				int round, void *(*act)(void *), void *arg)
{
	w->nslots = nslots;
	w->next = 0;
	w->round = round;
	w->src = malloc((size_t)nslots * IF_SLOT);
	w->st = malloc(nslots * sizeof(int));
	w->cause = calloc(nslots, sizeof(uint32_t));
	REQUIRE(w->src && w->st && w->cause, "memory");
	for (uint32_t i = 0; i < nslots; i++)
		w->st[i] = 1;
	w->act = act;
	w->arg = arg;
	atomic_store(&w->go, 0);
	atomic_store(&w->finished, 0);
	pthread_t th;
	pthread_create(&th, NULL, inflight_act, w);
	uint32_t inflight = 0, nrefused = 0;
	uint64_t until = t_now_ns() + 4ull * T_HANG_MS * 1000000ull;
	/* the peer keeps driving its progress until the owner's call is back
	 * (it may be waiting for the peer's ack) and stops posting once
	 * refused (16 refusals); the last 16 slots are kept for after the
	 * call, in case a slow owner let the others run out first */
	uint32_t limit = nslots - 16;
	bool after = false;
	while (t_now_ns() < until) {
		if (atomic_load(&w->finished) && !inflight) {
			if (nrefused >= 16 || w->next == nslots)
				break;
			limit = nslots; /* the call is back: what is posted now must be refused */
			after = true;
		}
		while (inflight < IF_WINDOW && w->next < limit && nrefused < 16) {
			uint32_t s = w->next++;
			uint64_t v = (uint64_t)(round + 1) << 40 | (uint64_t)s << 8 | 0xa5;
			for (unsigned i = 0; i < IF_SLOT / 8; i++)
				memcpy(w->src + (size_t)s * IF_SLOT + i * 8, &v, 8);
			int ret = mrl_write(r, (uint64_t)s * IF_SLOT, w->src + (size_t)s * IF_SLOT, IF_SLOT,
					    (void *)(uintptr_t)(s + 1));
			if (ret == -EKEYREVOKED || ret == -ENOTCONN) {
				w->st[s] = ret;
				nrefused++;
				break; /* refused at once: poll, then try again */
			}
			REQUIRE(ret == 0, "post a write (%d)", ret);
			w->st[s] = 2;
			inflight++;
			if (after)
				break; /* one at a time: each must fail */
		}
		if (w->next >= 256)
			atomic_store(&w->go, 1);
		struct mrl_completion c[16];
		int n = mrl_ep_poll(p->cep, c, 16);
		for (int i = 0; i < n; i++) {
			uint32_t s = (uint32_t)(uintptr_t)c[i].op_context - 1;
			REQUIRE(s < nslots && w->st[s] == 2, "a completion for a write in flight");
			w->st[s] = c[i].status;
			w->cause[s] = c[i].cause;
			inflight--;
			nrefused += c[i].status != 0;
		}
		if (!n)
			usleep(20);
	}
	atomic_store(&w->go, 1);
	while (!atomic_load(&w->finished)) {
		struct mrl_completion c;
		mrl_ep_poll(p->cep, &c, 0);
		usleep(100);
	}
	pthread_join(th, NULL);
	CHECK(!inflight, "every write completed (%u left)", inflight);
	CHECK(nrefused > 0, "the peer's writes were refused in the end");
}

/* Check every slot against the memory at `at` (NULL: none to look at),
 * add to t, free what inflight_run took. drained: the peer drained the MR
 * before the change (nobody was cut off), so no write it reports failed
 * may be in the memory either. */
static inline void inflight_check(struct inflight *w, const char *at, uint32_t want_cause,
				  bool drained, const char *what, struct inflight_counts *t)
{
	long lost = 0, ok = 0, refused = 0, failed_ok = 0, other = 0;
	for (uint32_t s = 0; s < w->next; s++) {
		const uint8_t *want = w->src + (size_t)s * IF_SLOT;
		bool there = at && !memcmp(at + (size_t)s * IF_SLOT, want, IF_SLOT);
		if (w->st[s] == 0) {
			ok++;
			if (!there && ++lost <= 3)
				fprintf(stderr, "  %s round %d: slot %u completed with status 0 and is not in the memory\n",
					what, w->round, s);
		} else if (w->st[s] == -EKEYREVOKED || w->st[s] == -ENOTCONN) {
			refused++;
			failed_ok += there; /* landed before the change, reported failed */
			if (w->st[s] == -EKEYREVOKED && w->cause[s] && w->cause[s] != want_cause &&
			    w->cause[s] != MRL_CAUSE_PEER_TIMEOUT && ++other <= 3)
				fprintf(stderr, "  %s: slot %u refused with cause %s\n", what, s,
					mrl_cause_str(w->cause[s]));
		} else if (++other <= 3) {
			fprintf(stderr, "  %s round %d: slot %u failed %d (%s)\n", what, w->round, s, w->st[s],
				strerror(-w->st[s]));
		}
	}
	CHECK(lost == 0, "%s round %d: %ld of %ld successful writes lost silently", what, w->round, lost, ok);
	CHECK(other == 0, "%s round %d: %ld writes failed otherwise than -EKEYREVOKED with cause %s",
	      what, w->round, other, mrl_cause_str(want_cause));
	CHECK(!drained || !failed_ok, "%s round %d: %ld writes reported failed are in the memory", what,
	      w->round, failed_ok);
	t->ok += ok;
	t->refused += refused;
	t->failed_ok += failed_ok;
	t->lost += lost;
	t->other += other;
	free(w->src);
	free(w->st);
	free(w->cause);
}
#endif
