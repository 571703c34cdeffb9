/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* No write a peer sees succeed is lost to a fence seen before the change
 * (issue 13). A peer keeps many writes in flight, each a unique stamp to a
 * slot of its own, while the owner moves the MR's memory (an interposed
 * mremap(MREMAP_MAYMOVE): the MR is fenced, cause "moved", before the call
 * lands, and the bytes move with the mapping) or deregisters it (the memory
 * stays). Every write the peer saw complete with status 0 must be found in
 * the memory afterwards (at the new address for a move); every other one
 * must have failed -EKEYREVOKED (or been refused at once) with the MR's
 * cause, and, the peer having drained in time, none of those is in the
 * memory. Before the drain, the device swapped the key to its tombstone as
 * soon as the fence was decided, and a write that landed there before the
 * notice reached the peer completed successfully: a silent loss (8 rounds
 * each: 1238 of 5115, 421 of 4364 and 1001 of 4831 successful writes lost).
 * Runs for the default policy, MRL_POLICY_FENCE, and mrl_mr_dereg. */
#include <sys/mman.h>

#include "inflight.h"

#define LEN (1u << 20)

enum variant { V_MOVE_RESTORE, V_MOVE_FENCE, V_DEREG };
static const char *const vname[] = {"mremap, default policy", "mremap, MRL_POLICY_FENCE",
				    "mrl_mr_dereg"};

struct owner {
	struct pair *p;
	enum variant v;
	char *mem;
	mrl_mr_t mr;
	char *moved;
	int ret;
};

static void *owner_act(void *arg)
{
	struct owner *o = arg;
	if (o->v == V_DEREG) {
		o->ret = mrl_mr_dereg(o->p->sctx, o->mr);
	} else {
		o->moved = mremap(o->mem, LEN, 2 * LEN, MREMAP_MAYMOVE);
		o->ret = o->moved == MAP_FAILED ? -errno : 0;
	}
	return NULL;
}

static void round_one(struct pair *p, enum variant v, int round, struct inflight_counts *t)
{
	/* the mapping cannot grow in place (a guard page after it): mremap moves it */
	char *mem = mmap(NULL, LEN + 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(mem != MAP_FAILED, "mmap");
	REQUIRE(mprotect(mem + LEN, 4096, PROT_NONE) == 0, "guard page");
	struct mrl_reg_opts ro = {.size = sizeof(ro),
				  .policy = v == V_MOVE_FENCE ? MRL_POLICY_FENCE : MRL_POLICY_RESTORE,
				  .deadline_ms = T_HANG_MS};
	struct owner o = {.p = p, .v = v, .mem = mem};
	REQUIRE(mrl_mr_reg(p->sctx, mem, LEN, MRL_ACCESS_REMOTE_WRITE, &ro, &o.mr) == 0, "register");
	mrl_rmr *r;
	REQUIRE(mrl_rmr_open(p->cpeer, o.mr, T_HANG_MS, &r) == 0, "peer opens the MR");
	struct inflight w;
	inflight_run(p, r, &w, LEN / IF_SLOT, round, owner_act, &o);
	CHECK(o.ret == 0, "the owner's %s succeeded (%d)", v == V_DEREG ? "dereg" : "mremap", o.ret);
	bool moved = o.moved && o.moved != MAP_FAILED;
	uint32_t want = v == V_DEREG ? MRL_CAUSE_DEREGISTERED : MRL_CAUSE_MOVED;
	inflight_check(&w, v == V_DEREG ? mem : moved ? o.moved : NULL, want, true, vname[v], t);
	struct mrl_rmr_info ri = {.size = sizeof(ri)};
	CHECK(mrl_rmr_query(r, &ri) == 0 && ri.state == MRL_STATE_FENCED && ri.cause == want,
	      "the peer's view: fenced, cause %s (state %u cause %s)", mrl_cause_str(want), ri.state,
	      mrl_cause_str(ri.cause));
	mrl_rmr_close(r);
	if (v != V_DEREG)
		mrl_mr_dereg(p->sctx, o.mr);
	if (!moved) {
		munmap(mem, LEN + 4096);
	} else {
		munmap(o.moved, 2 * LEN);
		munmap(mem + LEN, 4096);
	}
}

int main(void)
{
	struct pair p;
	pair_open(&p);
	if (!(mrl_ctx_watchers(p.sctx) & MRL_WATCH_INTERPOSE))
		t_skip("the interposer is not what callers reach in this build");
	int rounds = t_rounds(8, 3);
	for (int v = V_MOVE_RESTORE; v <= V_DEREG; v++) {
		struct inflight_counts t = {0};
		for (int i = 0; i < rounds; i++)
			round_one(&p, (enum variant)v, i, &t);
		printf("%s: %d rounds: %ld writes succeeded, %ld lost silently; %ld refused or failed "
		       "(%ld of them in the memory anyway); %ld other\n",
		       vname[v], rounds, t.ok, t.lost, t.refused, t.failed_ok, t.other);
	}
	pair_close(&p);
	return t_done("t_fence_drain");
}
