/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* A peer cut off whose cut-off notice was lost never comes back (issue
 * 16). The owner pauses an MR (an interposed madvise) while its one peer
 * stays silent: at the deadline the peer is cut off and the MR comes back
 * under a new key it is never to be told. Here the notice (and the PAUSE
 * before it) are lost, as they may be in a dropped connection: the
 * owner's queued messages to the peer are thrown away. The peer, after a
 * drop, asks the owner for the MR's state again (the probe of
 * mrl_ep_retry_probe: an open request for an MR it holds, request id 0),
 * sent here by hand. Before, the owner made it a holder again and answered
 * with the MR's state and new key: the cut-off was undone (and with the MR
 * paused at that moment, the peer stayed active on its stale key, whose
 * writes went to the tombstone). Now the answer is "fenced, peer timeout":
 * the peer refuses its writes, never learns the new key, and the owner
 * does not count it among the holders.
 * Then a drained fence with a silent holder: mrl_mr_dereg waits for it
 * until the MR's deadline only, cuts it off, and every write of the peer's
 * that completes successfully is in the memory (which stays mapped). */
#include <sys/mman.h>

#include "ep_int.h"
#include "rig_pair.h"

#define LEN (1u << 20)

static bool match_peer(struct mrl_tpeer *tp, void *arg)
{
	return tp == arg;
}

static bool holds(mrl_ctx *ctx, mrl_mr_t h, struct mrl_peer *peer)
{
	bool found = false;
	mrl_lock(&ctx->lock);
	struct mrl_mr *mr = mrl_ht_get(&ctx->ht, h);
	for (struct mrl_holder *x = mr ? mr->holders : NULL; x && !found; x = x->next)
		found = x->peer == &peer->tp;
	mrl_unlock(&ctx->lock);
	return found;
}

int main(void)
{
	struct pair p;
	pair_open(&p);
	if (!(mrl_ctx_watchers(p.sctx) & MRL_WATCH_INTERPOSE))
		t_skip("the interposer is not what callers reach in this build");
	char *mem = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(mem != MAP_FAILED, "mmap");
	/* a short deadline: the peer is silent by construction, the cut-off certain */
	struct mrl_reg_opts ro = {.size = sizeof(ro), .deadline_ms = 300};
	mrl_mr_t mr;
	REQUIRE(mrl_mr_reg(p.sctx, mem, LEN, MRL_ACCESS_REMOTE_WRITE, &ro, &mr) == 0, "register");
	mrl_rmr *r;
	REQUIRE(mrl_rmr_open(p.cpeer, mr, T_HANG_MS, &r) == 0, "peer opens the MR");
	char buf[4096];
	memset(buf, 0x5a, sizeof(buf));
	struct mrl_completion c;
	REQUIRE(mrl_write(r, 0, buf, sizeof(buf), NULL) == 0 && pair_wait(&p, &c, T_HANG_MS) == 0 &&
			c.status == 0,
		"a first write lands");
	CHECK(holds(p.sctx, mr, p.speer), "the owner counts the peer among the holders");
	uint64_t old_key = t_query(p.sctx, mr).key;

	/* nothing the owner queues for the peer goes out (the monitor only
	 * ever tries this lock) until it is thrown away below */
	mrl_lock(&p.sctx->flush_lock);
	CHECK(madvise(mem, 4096, MADV_DONTNEED) == 0, "madvise: a break, the peer silent");
	int ret = t_wait_state(p.sctx, mr, MRL_STATE_ACTIVE, T_HANG_MS);
	struct mrl_mr_info in = t_query(p.sctx, mr);
	for (uint64_t until = t_now_ns() + T_HANG_MS * 1000000ull; in.key == old_key && t_now_ns() < until;
	     in = t_query(p.sctx, mr))
		usleep(1000);
	CHECK(ret == 0 && in.state == MRL_STATE_ACTIVE && in.key != old_key,
	      "the MR is back, under a new key (the peer was cut off)");
	CHECK(!holds(p.sctx, mr, p.speer), "the owner no longer counts the peer");
	mrl_lock(&p.sctx->lock);
	mrl_outbox_forget(p.sctx, match_peer, &p.speer->tp); /* the PAUSE and the cut-off: lost */
	mrl_unlock(&p.sctx->lock);
	mrl_unlock(&p.sctx->flush_lock);

	struct mrl_rmr_info ri = {.size = sizeof(ri)};
	CHECK(mrl_rmr_query(r, &ri) == 0 && ri.state == MRL_STATE_ACTIVE && ri.key == old_key,
	      "the peer never heard: active on the old key");

	/* the peer's probe after a drop */
	struct msg_id q;
	mrl_ep_init_hdr(&q.h, MSG_OPEN_REQ, sizeof(q), 0);
	q.id = mr;
	REQUIRE(mrl_ep_send_raw(p.cpeer, &q, sizeof(q)) == 0, "the peer asks for the MR's state");
	for (uint64_t until = t_now_ns() + T_HANG_MS * 1000000ull; t_now_ns() < until;) {
		mrl_ep_poll(p.cep, &c, 0);
		if (mrl_rmr_query(r, &ri) == 0 && (ri.state != MRL_STATE_ACTIVE || ri.key != old_key))
			break;
		usleep(200);
	}
	CHECK(ri.state == MRL_STATE_FENCED && ri.cause == MRL_CAUSE_PEER_TIMEOUT,
	      "the answer: cut off (state %s, cause %s)", mrl_state_str(ri.state), mrl_cause_str(ri.cause));
	CHECK(ri.key != in.key, "the peer is never told the new key");
	CHECK(!holds(p.sctx, mr, p.speer), "nor made a holder again");
	ret = mrl_write(r, 0, buf, sizeof(buf), NULL);
	if (ret == 0)
		ret = pair_wait(&p, &c, T_HANG_MS) ? -ETIMEDOUT : c.status;
	CHECK(ret == -EKEYREVOKED, "its writes are refused (%d)", ret);
	CHECK((unsigned char)mem[0] != 0x5a, "and none reached the memory");

	mrl_rmr_close(r);
	mrl_mr_dereg(p.sctx, mr);

	/* a silent holder of an MR being deregistered */
	memset(mem, 0, LEN);
	REQUIRE(mrl_mr_reg(p.sctx, mem, LEN, MRL_ACCESS_REMOTE_WRITE, &ro, &mr) == 0, "register again");
	REQUIRE(mrl_rmr_open(p.cpeer, mr, T_HANG_MS, &r) == 0, "peer opens it");
	enum { NW = 8 };
	static char wb[NW][4096];
	for (int i = 0; i < NW; i++) {
		memset(wb[i], 0x30 + i, sizeof(wb[i]));
		REQUIRE(mrl_write(r, (uint64_t)i * 4096, wb[i], 4096, (void *)(uintptr_t)(i + 1)) == 0,
			"post write %d", i);
	}
	/* the peer drives no progress meanwhile: it cannot ack */
	CHECK(mrl_mr_dereg(p.sctx, mr) == 0, "the dereg returns (the silent peer cut off at the deadline)");
	int ok = 0, refused = 0, wrong = 0;
	for (int got = 0; got < NW;) {
		REQUIRE(pair_wait(&p, &c, T_HANG_MS) == 0, "completion %d", got);
		int i = (int)(uintptr_t)c.op_context - 1;
		got++;
		if (c.status == 0) {
			ok++;
			wrong += memcmp(mem + (size_t)i * 4096, wb[i], 4096) != 0;
		} else {
			refused += c.status == -EKEYREVOKED;
		}
	}
	CHECK(wrong == 0 && ok + refused == NW,
	      "every write seen to succeed is in the memory (%d ok, %d refused, %d not there)", ok, refused,
	      wrong);
	for (uint64_t until = t_now_ns() + T_HANG_MS * 1000000ull; t_now_ns() < until; usleep(200)) {
		mrl_ep_poll(p.cep, &c, 0);
		if (mrl_rmr_query(r, &ri) == 0 && ri.cause == MRL_CAUSE_PEER_TIMEOUT)
			break;
	}
	CHECK(ri.state == MRL_STATE_FENCED && ri.cause == MRL_CAUSE_PEER_TIMEOUT,
	      "the peer hears it was cut off (state %s, cause %s)", mrl_state_str(ri.state),
	      mrl_cause_str(ri.cause));
	CHECK(mrl_write(r, 0, buf, sizeof(buf), NULL) == -EKEYREVOKED, "and its writes are refused");
	mrl_rmr_close(r);
	munmap(mem, LEN);
	pair_close(&p);
	return t_done("t_cutoff_resync");
}
