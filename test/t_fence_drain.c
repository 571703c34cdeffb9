/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* No write a peer sees succeed is lost to a fence seen before the change
 * (issue 13). A peer keeps many writes in flight, each a unique stamp to a
 * slot of its own, while the owner moves the MR's memory (an interposed
 * mremap(MREMAP_MAYMOVE): the MR is fenced, cause "moved", before the call
 * lands, and the bytes move with the mapping) or deregisters it (the memory
 * stays). Every write the peer saw complete with status 0 must be found in
 * the memory afterwards (at the new address for a move); every other one
 * must have failed -EKEYREVOKED (or been refused at once) with the MR's
 * cause. Before the drain, the device swapped the key to its tombstone as
 * soon as the fence was decided, and a write that landed there before the
 * notice reached the peer completed successfully: a silent loss. Runs for
 * the default policy, MRL_POLICY_FENCE, and mrl_mr_dereg, several rounds
 * each. */
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>

#include "rig_pair.h"

#define LEN (1u << 20)
#define SLOT 64u
#define NSLOTS (LEN / SLOT)
#define WINDOW 48 /* writes in flight at once */

enum variant { V_MOVE_RESTORE, V_MOVE_FENCE, V_DEREG };
static const char *const vname[] = {"mremap, default policy", "mremap, MRL_POLICY_FENCE",
				    "mrl_mr_dereg"};

struct owner {
	struct pair *p;
	enum variant v;
	char *mem;
	mrl_mr_t mr;
	atomic_int go, finished;
	char *moved;
	int ret;
};

static void *owner_main(void *arg)
{
	struct owner *o = arg;
	while (!atomic_load(&o->go))
		sched_yield();
	if (o->v == V_DEREG) {
		o->ret = mrl_mr_dereg(o->p->sctx, o->mr);
	} else {
		o->moved = mremap(o->mem, LEN, 2 * LEN, MREMAP_MAYMOVE);
		o->ret = o->moved == MAP_FAILED ? -errno : 0;
	}
	atomic_store(&o->finished, 1);
	return NULL;
}

static void stamp(uint8_t *buf, int round, uint32_t slot)
{
	uint64_t v = (uint64_t)(round + 1) << 40 | (uint64_t)slot << 8 | 0xa5;
	for (unsigned i = 0; i < SLOT / 8; i++)
		memcpy(buf + i * 8, &v, 8);
}

struct counts {
	long ok, refused, failed_ok, lost, other;
};

/* One round: the peer writes until its writes are refused, the owner moves
 * or deregisters the MR meanwhile; then every slot is checked. */
static void round_one(struct pair *p, enum variant v, int round, struct counts *t)
{
	/* the mapping cannot grow in place (a guard page after it): mremap moves it */
	char *mem = mmap(NULL, LEN + 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(mem != MAP_FAILED, "mmap");
	REQUIRE(mprotect(mem + LEN, 4096, PROT_NONE) == 0, "guard page");
	memset(mem, 0, LEN);
	struct mrl_reg_opts ro = {.size = sizeof(ro),
				  .policy = v == V_MOVE_FENCE ? MRL_POLICY_FENCE : MRL_POLICY_RESTORE,
				  .deadline_ms = T_HANG_MS};
	struct owner o = {.p = p, .v = v, .mem = mem};
	REQUIRE(mrl_mr_reg(p->sctx, mem, LEN, MRL_ACCESS_REMOTE_WRITE, &ro, &o.mr) == 0, "register");
	mrl_rmr *r;
	REQUIRE(mrl_rmr_open(p->cpeer, o.mr, T_HANG_MS, &r) == 0, "peer opens the MR");
	uint8_t *src = malloc((size_t)NSLOTS * SLOT);
	int *st = malloc(NSLOTS * sizeof(int));
	uint32_t *cause = calloc(NSLOTS, sizeof(uint32_t));
	REQUIRE(src && st && cause, "memory");
	for (uint32_t i = 0; i < NSLOTS; i++)
		st[i] = 1; /* not posted */
	pthread_t th;
	pthread_create(&th, NULL, owner_main, &o);

	uint32_t next = 0, inflight = 0, nrefused = 0;
	bool joined = false;
	uint64_t until = t_now_ns() + 4ull * T_HANG_MS * 1000000ull;
	/* the owner acts once writes are flowing; the peer stops posting once
	 * refused (and a few more after), and ends when nothing is in flight
	 * and the owner's call has returned */
	while (t_now_ns() < until) {
		while (inflight < WINDOW && next < NSLOTS && nrefused < 16) {
			stamp(src + (size_t)next * SLOT, round, next);
			int ret = mrl_write(r, (uint64_t)next * SLOT, src + (size_t)next * SLOT, SLOT,
					    (void *)(uintptr_t)(next + 1));
			if (ret == -EKEYREVOKED || ret == -ENOTCONN) {
				st[next] = ret;
				nrefused++;
				next++;
				break; /* refused at once: poll, then try again */
			}
			REQUIRE(ret == 0, "post a write (%d)", ret);
			st[next] = 2; /* in flight */
			next++;
			inflight++;
		}
		if (next >= 256 && !atomic_load(&o.go))
			atomic_store(&o.go, 1);
		struct mrl_completion c[16];
		int n = mrl_ep_poll(p->cep, c, 16);
		for (int i = 0; i < n; i++) {
			uint32_t s = (uint32_t)(uintptr_t)c[i].op_context - 1;
			REQUIRE(s < NSLOTS && st[s] == 2, "a completion for a write in flight");
			st[s] = c[i].status;
			cause[s] = c[i].cause;
			inflight--;
			nrefused += c[i].status != 0;
		}
		/* (the peer keeps driving its progress until the owner's call is
		 * back: the owner may be waiting for its ack) */
		if (!joined && atomic_load(&o.finished) && !inflight) {
			pthread_join(th, NULL);
			joined = true;
		}
		if (joined && !inflight && (nrefused >= 16 || next == NSLOTS))
			break;
		if (!n)
			usleep(20);
	}
	if (!joined) {
		atomic_store(&o.go, 1);
		while (!atomic_load(&o.finished)) {
			struct mrl_completion c;
			mrl_ep_poll(p->cep, &c, 0);
			usleep(100);
		}
		pthread_join(th, NULL);
	}
	CHECK(!inflight, "every write completed (%u left)", inflight);
	CHECK(o.ret == 0, "the owner's %s succeeded (%d)", v == V_DEREG ? "dereg" : "mremap", o.ret);
	CHECK(nrefused > 0, "the peer's writes were refused in the end");
	const char *at = v == V_DEREG ? mem : o.moved;
	int want = v == V_DEREG ? MRL_CAUSE_DEREGISTERED : MRL_CAUSE_MOVED;
	long lost = 0, ok = 0, refused = 0, failed_ok = 0, other = 0;
	for (uint32_t s = 0; s < next; s++) {
		bool there = at && at != MAP_FAILED && !memcmp(at + (size_t)s * SLOT, src + (size_t)s * SLOT, SLOT);
		if (st[s] == 0) {
			ok++;
			if (!there) {
				lost++;
				if (lost <= 3)
					fprintf(stderr, "  %s round %d: slot %u completed with status 0 and is not in the memory\n",
						vname[v], round, s);
			}
		} else if (st[s] == -EKEYREVOKED || st[s] == -ENOTCONN) {
			refused++;
			failed_ok += there; /* landed before the change, reported failed: not a loss */
			if (st[s] == -EKEYREVOKED && cause[s] && cause[s] != (uint32_t)want &&
			    cause[s] != MRL_CAUSE_PEER_TIMEOUT) {
				other++;
				fprintf(stderr, "  slot %u refused with cause %s\n", s, mrl_cause_str(cause[s]));
			}
		} else {
			other++;
			fprintf(stderr, "  %s round %d: slot %u failed %d (%s)\n", vname[v], round, s, st[s],
				strerror(-st[s]));
		}
	}
	CHECK(lost == 0, "%s round %d: %ld of %ld successful writes lost silently", vname[v], round, lost, ok);
	CHECK(other == 0, "%s round %d: %ld writes failed otherwise than -EKEYREVOKED with the MR's cause",
	      vname[v], round, other);
	/* the peer drained (it was not cut off): what was in flight at the
	 * notice landed before the change and completed as such */
	CHECK(failed_ok == 0, "%s round %d: %ld writes reported failed are in the memory", vname[v],
	      round, failed_ok);
	t->ok += ok;
	t->refused += refused;
	t->failed_ok += failed_ok;
	t->lost += lost;
	t->other += other;
	struct mrl_rmr_info ri = {.size = sizeof(ri)};
	CHECK(mrl_rmr_query(r, &ri) == 0 && ri.state == MRL_STATE_FENCED && ri.cause == (uint32_t)want,
	      "the peer's view: fenced, cause %s (state %u cause %s)", mrl_cause_str(want), ri.state,
	      mrl_cause_str(ri.cause));
	mrl_rmr_close(r);
	if (v != V_DEREG)
		mrl_mr_dereg(p->sctx, o.mr);
	if (v == V_DEREG || !o.moved || o.moved == MAP_FAILED) {
		munmap(mem, LEN + 4096);
	} else {
		munmap(o.moved, 2 * LEN);
		munmap(mem + LEN, 4096);
	}
	free(src);
	free(st);
	free(cause);
}

int main(void)
{
	struct pair p;
	pair_open(&p);
	if (!(mrl_ctx_watchers(p.sctx) & MRL_WATCH_INTERPOSE))
		t_skip("the interposer is not what callers reach in this build");
	int rounds = t_rounds(8, 3);
	for (int v = V_MOVE_RESTORE; v <= V_DEREG; v++) {
		struct counts t = {0};
		for (int i = 0; i < rounds; i++)
			round_one(&p, (enum variant)v, i, &t);
		printf("%s: %d rounds: %ld writes succeeded, %ld lost silently; %ld refused or failed "
		       "(%ld of them in the memory anyway); %ld other\n",
		       vname[v], rounds, t.ok, t.lost, t.refused, t.failed_ok, t.other);
	}
	pair_close(&p);
	return t_done("t_fence_drain");
}
