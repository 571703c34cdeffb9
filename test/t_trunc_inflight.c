/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* A truncate seen only after it lands (another process keeps the file open,
 * so no lease can be taken: coverage "after"), and operations past the new
 * end still in flight when the owner has fenced the tail: tcp tears down the
 * whole connection when an RMA runs past the registration the owner cut
 * short. Those operations fail alone (-EKEYREVOKED, cause truncated); the
 * ones on the rest of the file MR and on an anonymous MR on the same
 * connection all succeed; none fails with ENOTCONN or ECANCELED; the
 * connection stays up. (Issue 13 item 3, the data path's half. Operations
 * that reach the owner before it has seen the truncate are another matter:
 * README, "Not covered yet".) */
#include "rma_stream.h"
#include "ep_int.h"

/* classes: the file's first half (stays), its second half (cut), anonymous */

int main(void)
{
	char dir[256], path[300];
	t_scratch("tmpfs", dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/f", dir);
	t_make_file(path, MB);
	/* an opener from before registration: the owner cannot lease the file */
	struct rs g = {.reads = true};
	rs_hold(&g, path);

	struct pair p;
	pair_open(&p);
	rs_open(&g, &p, path);
	struct mrl_mr_info mi = {.size = sizeof(mi)};
	mrl_mr_query(p.sctx, g.mr[0], &mi);
	printf("file MR: lease held %d\n", mi.lease_held);

	struct st s = {0};
	int n = 0;
	uint64_t hang = t_now_ns() + T_HANG_MS * 1000000ull;
	/* 1. stream to the file's first half and the anonymous MR */
	while (s.ok[0] + s.ok[2] < 400 && t_now_ns() < hang) {
		for (int i = 0; i < 3; i += 2)
			while (s.inflight[i] < DEPTH && !rs_post(&g, &s, i, n++))
				;
		rs_reap(&g, &s);
	}
	/* 2. truncate to half; the peer's endpoint is not driven meanwhile, so it
	 * has not heard of it when the owner has fenced the tail */
	pid_t tr = t_sh_bg("truncate -s %d %s", MB / 2, path);
	CHECK(t_wait_status(tr) == 0, "truncate ran");
	do
		mrl_mr_query(p.sctx, g.mr[0], &mi);
	while (mi.valid_length > MB / 2 && t_now_ns() < hang && !usleep(1000));
	/* the owner is told of the fence only once the device applied it (the
	 * registration is shrunk): a write past the new end from here on is
	 * refused by the provider, not made into the file past its end
	 * (SIGBUS). Before that, nothing waited for the device worker here. */
	REQUIRE(mi.valid_length == MB / 2, "the owner saw the truncate: the tail is fenced (valid %llu)",
		(unsigned long long)mi.valid_length);
	struct mrl_rmr_info ri = {.size = sizeof(ri)};
	mrl_rmr_query(g.r[0], &ri);
	CHECK(ri.valid_length == MB, "the peer has not heard yet (valid %llu)",
	      (unsigned long long)ri.valid_length);
	/* 3. reads and writes past the new end, with the others in flight */
	for (int i = 0; i < 3; i++)
		while (s.inflight[i] < DEPTH && !rs_post(&g, &s, i, n++))
			;
	int tail_posted = s.inflight[1];
	/* 4. go on with the others until 3000 more succeeded on the anonymous MR */
	int mark = s.ok[2];
	while ((s.ok[2] < mark + 3000 || s.inflight[0] + s.inflight[1] + s.inflight[2]) &&
	       t_now_ns() < hang) {
		for (int i = 0; i < 3; i += 2)
			while (s.ok[2] < mark + 3000 && s.inflight[i] < DEPTH && !rs_post(&g, &s, i, n++))
				;
		rs_reap(&g, &s);
	}
	mrl_rmr_query(g.r[0], &ri);
	printf("ops: head %d ok %d revoked; tail %d posted, %d ok %d revoked (cause %s); anon %d ok %d "
	       "revoked; other %d/%d/%d (last %d); the peer's file MR now: valid %llu\n",
	       s.ok[0], s.revoked[0], tail_posted, s.ok[1], s.revoked[1], mrl_cause_str(s.cause), s.ok[2],
	       s.revoked[2], s.other[0], s.other[1], s.other[2], s.other_err,
	       (unsigned long long)ri.valid_length);
	printf("ops posted again after the provider dropped the connection: %llu\n",
	       (unsigned long long)p.cep->op_retries);
	mrl_mr_query(p.sctx, g.mr[0], &mi);
	printf("the owner's file MR: cause %s\n", mrl_cause_str(mi.cause));
	/* the cause is the owner's: the fence's (truncated) or, when the
	 * announcement that follows it (what the query shows last) came in
	 * before the peer failed them, the announcement's */
	CHECK(tail_posted == DEPTH && s.revoked[1] == DEPTH && s.ok[1] == 0 &&
	      !(s.causes & ~(1u << MRL_CAUSE_TRUNCATED | 1u << mi.cause)) && s.cause != MRL_CAUSE_NONE,
	      "every operation past the new end failed with -EKEYREVOKED and the owner's cause (mask %#x, owner %s)",
	      s.causes, mrl_cause_str(mi.cause));
	/* Usually tcp drops the connection under the tail's operations and the
	 * others are re-posted (the path this test is for). When the owner's
	 * fence notice overtakes them (seen under ASan), the peer fails them
	 * itself and nothing is re-posted: the checks around still hold, the
	 * drop path is just not taken in this run; say so rather than fail. */
	if (!p.cep->op_retries)
		printf("NOTE: the fence notice came first: no operation was re-posted this run\n");
	CHECK(s.other[0] + s.other[1] + s.other[2] == 0 && s.revoked[0] + s.revoked[2] == 0,
	      "no other operation failed (last %d)", s.other_err);
	CHECK(s.ok[2] >= mark + 3000, "the anonymous MR went on (%d ok)", s.ok[2] - mark);
	CHECK(ri.valid_length == MB / 2, "the peer knows the new length");
	mrl_rmr_query(g.r[1], &ri);
	CHECK(ri.state == MRL_STATE_ACTIVE, "the anonymous MR is still active");

	rs_close(&g);
	unlink(path);
	rmdir(dir);
	return t_done("t_trunc_inflight");
}
