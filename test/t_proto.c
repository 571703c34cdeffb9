/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Malformed control messages: a peer sends the owner truncated messages,
 * unknown types, counts larger than the message, and requests naming MRs
 * that do not exist. Each is dropped and counted (or answered with an
 * error), the owner does not crash, and the data path goes on working. */
#include <sys/mman.h>

#include "mrl_int.h"
#include "proto.h"
#include "rig_pair.h"

static uint64_t bad_count(mrl_ctx *ctx)
{
	struct mrl_stats s = {.size = sizeof(s)};
	mrl_ctx_stats(ctx, &s);
	return s.bad_msgs;
}

/* wait until the owner has counted `want` bad messages (its progress thread reads them) */
static int wait_bad(mrl_ctx *sctx, mrl_ep *cep, uint64_t want)
{
	struct mrl_completion c[4];
	for (int i = 0; i < 30000 && bad_count(sctx) < want; i++) {
		mrl_ep_poll(cep, c, 4);
		usleep(1000);
	}
	return bad_count(sctx) >= want ? 0 : -ETIMEDOUT;
}

int main(void)
{
	struct pair pr;
	pair_open(&pr);
	mrl_ctx *sctx = pr.sctx, *cctx = pr.cctx;
	mrl_ep *cep = pr.cep;
	mrl_peer *peer = pr.cpeer;
	struct {
		mrl_peer *peer;
	} aa = {pr.speer};
	size_t len = 1 << 20;
	char *buf = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	mrl_mr_t mr;
	REQUIRE(mrl_mr_reg(sctx, buf, len, MRL_ACCESS_REMOTE_READ | MRL_ACCESS_REMOTE_WRITE, NULL, &mr) == 0,
		"register");

	uint64_t bad = bad_count(sctx);
	unsigned char raw[MRL_MSG_MAX];
	struct msg_hdr *h = (struct msg_hdr *)raw;

	/* 1. shorter than its type needs */
	memset(raw, 0, sizeof(raw));
	h->type = MSG_OPEN_REQ;
	CHECK(mrl_ep_send_raw(peer, raw, sizeof(*h)) == 0, "send a truncated OPEN_REQ");
	CHECK(wait_bad(sctx, cep, ++bad) == 0, "truncated message dropped and counted");

	/* 2. an unknown type */
	memset(raw, 0, sizeof(raw));
	h->type = 200;
	CHECK(mrl_ep_send_raw(peer, raw, 64) == 0, "send type 200");
	CHECK(wait_bad(sctx, cep, ++bad) == 0, "unknown type dropped and counted");

	/* 3. a PAUSE claiming more ids than fit (owners do not take pauses, but
	 * the count is checked first) and more than the message holds */
	memset(raw, 0, sizeof(raw));
	struct msg_pause *pm = (struct msg_pause *)raw;
	pm->h.type = MSG_PAUSE;
	pm->n = 1000;
	CHECK(mrl_ep_send_raw(peer, raw, offsetof(struct msg_pause, runs) + sizeof(pm->runs[0])) == 0,
	      "send a lying PAUSE");
	CHECK(wait_bad(sctx, cep, ++bad) == 0, "PAUSE with a count past its end dropped");

	/* 3b. PAUSE runs that lie: a total that is not the runs' sum, an empty
	 * run, a run wrapping past the last id, a total past the bound */
	static const struct {
		uint64_t first;
		uint32_t n, total;
	} lies[] = {{1, 3, 4}, {1, 0, 0}, {UINT64_MAX - 1, 3, 3}, {1, MRL_PAUSE_MAX_IDS + 1, MRL_PAUSE_MAX_IDS + 1}};
	for (size_t i = 0; i < sizeof(lies) / sizeof(lies[0]); i++) {
		memset(raw, 0, sizeof(raw));
		pm->h.type = MSG_PAUSE;
		pm->n = 1;
		pm->total = lies[i].total;
		pm->runs[0].first = lies[i].first;
		pm->runs[0].n = lies[i].n;
		CHECK(mrl_ep_send_raw(peer, raw, offsetof(struct msg_pause, runs) + sizeof(pm->runs[0])) == 0,
		      "send PAUSE lie %zu", i);
		CHECK(wait_bad(sctx, cep, ++bad) == 0, "PAUSE lie %zu dropped and counted", i);
	}

	/* 4. a STATES batch with a count past its end, sent to the peer side
	 * by the owner: use the owner's peer handle */
	memset(raw, 0, sizeof(raw));
	struct msg_states *sm = (struct msg_states *)raw;
	sm->h.type = MSG_STATES;
	sm->n = 500;
	uint64_t cbad = bad_count(cctx);
	CHECK(mrl_ep_send_raw(aa.peer, raw, offsetof(struct msg_states, e) + sizeof(sm->e[0])) == 0,
	      "send a lying STATES");
	for (int i = 0; i < 30000 && bad_count(cctx) <= cbad; i++) {
		struct mrl_completion c[4];
		mrl_ep_poll(cep, c, 4);
		usleep(1000);
	}
	CHECK(bad_count(cctx) == cbad + 1, "STATES with a count past its end dropped by the peer");

	/* 4b. STATE_RUNS that lie, to the peer: a count past its end, an empty
	 * run, a state out of range */
	for (int i = 0; i < 3; i++) {
		memset(raw, 0, sizeof(raw));
		struct msg_state_runs *rm = (struct msg_state_runs *)raw;
		rm->h.type = MSG_STATE_RUNS;
		rm->n = i == 0 ? 5 : 1;
		rm->r[0] = (struct state_run){.first = mr, .n = i == 1 ? 0 : 1, .state = i == 2 ? 77 : MRL_STATE_FENCED};
		cbad = bad_count(cctx);
		CHECK(mrl_ep_send_raw(aa.peer, raw, offsetof(struct msg_state_runs, r) + sizeof(rm->r[0])) == 0,
		      "send lying STATE_RUNS %d", i);
		for (int k = 0; k < 30000 && bad_count(cctx) <= cbad; k++) {
			struct mrl_completion c[4];
			mrl_ep_poll(cep, c, 4);
			usleep(1000);
		}
		CHECK(bad_count(cctx) == cbad + 1, "lying STATE_RUNS %d dropped by the peer", i);
	}

	/* 5. a STATES entry for an MR the peer never opened, and one with a
	 * state out of range: ignored, nothing else changes */
	memset(raw, 0, sizeof(raw));
	sm->h.type = MSG_STATES;
	sm->n = 2;
	sm->e[0].id = 0xdeadbeef;
	sm->e[0].state = MRL_STATE_FENCED;
	sm->e[1].id = mr;
	sm->e[1].state = 77;
	CHECK(mrl_ep_send_raw(aa.peer, raw, offsetof(struct msg_states, e) + 2 * sizeof(sm->e[0])) == 0,
	      "send STATES for unknown MRs");

	/* 6. OPEN of an MR that does not exist: a clean error to the caller */
	mrl_rmr *r;
	CHECK(mrl_rmr_open(peer, 0x123456789ull, 3000, &r) < 0, "open of a bogus MR id fails cleanly");

	/* the data path still works */
	REQUIRE(mrl_rmr_open(peer, mr, T_HANG_MS, &r) == 0, "open the real MR");
	char out[4096], in[4096];
	memset(out, 0x3c, sizeof(out));
	struct mrl_completion c[2];
	CHECK(mrl_write(r, 8192, out, sizeof(out), (void *)1) == 0, "write");
	int got = 0;
	for (int i = 0; i < 30000 && !got; i++) {
		got = mrl_ep_poll(cep, c, 1);
		if (!got)
			usleep(1000);
	}
	CHECK(got == 1 && c[0].status == 0, "write completed after the garbage");
	CHECK(mrl_read(r, 8192, in, sizeof(in), (void *)2) == 0, "read");
	got = 0;
	for (int i = 0; i < 30000 && !got; i++) {
		got = mrl_ep_poll(cep, c, 1);
		if (!got)
			usleep(1000);
	}
	CHECK(got == 1 && c[0].status == 0 && !memcmp(in, out, sizeof(in)), "read back what was written");
	struct mrl_rmr_info ri = {.size = sizeof(ri)};
	CHECK(mrl_rmr_query(r, &ri) == 0 && ri.state == MRL_STATE_ACTIVE, "the MR stayed active");

	mrl_rmr_close(r);
	mrl_mr_dereg(sctx, mr);
	pair_close(&pr);
	munmap(buf, len);
	return t_done("t_proto");
}
