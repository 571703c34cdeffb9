/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* A peer streams RMA writes over a whole file MR (tcp;ofi_rxm, loopback)
 * and over an anonymous MR while truncate(1) cuts the file in half; another
 * process keeps the file open, so no lease: the owner sees the truncate only
 * after it landed. Writes past the new end reach the owner's mapping before
 * it has seen it: the provider copies them into pages past the end (SIGBUS:
 * the watcher puts them on scratch pages) or receives them straight into
 * those pages (no signal: the owner's size check before each progress turn
 * puts the tail on scratch first). The owner lives; every write to the
 * file's first half and to the anonymous MR succeeds; writes past the new
 * end succeed (landed before the owner knew) or fail alone with
 * -EKEYREVOKED and the owner's cause; nothing else fails. (Issue 13; reads
 * past the end: t_eof_reads.) */
#include "rma_stream.h"
#include "ep_int.h"

static const char *const cname[] = {"head", "tail", "anon"};

int main(void)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	char dir[256], path[300];
	t_scratch("tmpfs", dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/f", dir);
	t_make_file(path, MB);
	struct rs g = {0};
	rs_hold(&g, path);

	struct pair p;
	pair_open(&p);
	if (!(mrl_ctx_watchers(p.sctx) & MRL_WATCH_SIGBUS))
		t_skip("the owner runs no SIGBUS watcher here");
	rs_open(&g, &p, path);
	CHECK(!t_query(p.sctx, g.mr[0]).lease_held, "no lease on the file (another opener)");

	/* MRL_TEST_NO_PRECHECK=1: without the owner's size check (shows what it prevents) */
	mrl_sb_test_no_precheck = getenv("MRL_TEST_NO_PRECHECK") != NULL;
	struct st s = {0};
	struct mrl_mr_info mi;
	CHECK(rs_truncate_stream(&g, path, &s, 3000, &mi) == 0, "truncate ran");
	struct mrl_stats stt = {.size = sizeof(stt)};
	mrl_ctx_stats(p.sctx, &stt);
	for (int i = 0; i < NCLASS; i++)
		printf("%s: %d ok, %d revoked, %d refused at post, %d other\n", cname[i], s.ok[i], s.revoked[i],
		       s.refused[i], s.other[i]);
	printf("owner: stores past the end caught %llu; file MR valid %llu, cause %s; peer: ops posted again "
	       "after a drop %llu\n", (unsigned long long)stt.sigbus_caught, (unsigned long long)mi.valid_length,
	       mrl_cause_str(mi.cause), (unsigned long long)p.cep->op_retries);
	CHECK(mi.valid_length == MB / 2 && mi.state == MRL_STATE_ACTIVE && mi.cause != MRL_CAUSE_NONE,
	      "the owner fenced the tail and kept the head");
	CHECK(s.other[HEAD] + s.other[TAIL] + s.other[ANON] == 0, "no write failed but with -EKEYREVOKED (last %d)",
	      s.other_err);
	CHECK(s.revoked[HEAD] + s.refused[HEAD] + s.revoked[ANON] + s.refused[ANON] == 0,
	      "no write to the head or the anonymous MR was refused");
	/* the cause is the owner's for this change: the fence's (truncated,
	 * from the caught store or the watcher) or, for refusals after it was
	 * announced, the announcement's (which is what the query shows last) */
	uint32_t owner_causes = 1u << MRL_CAUSE_TRUNCATED | 1u << mi.cause;
	CHECK(!(s.causes & ~owner_causes), "the tail's were refused with the owner's causes (mask %#x, owner %s)",
	      s.causes, mrl_cause_str(mi.cause));
	CHECK(s.anon_after >= 3000, "the anonymous MR went on (%d ok)", s.anon_after);
	CHECK(s.inflight[HEAD] + s.inflight[TAIL] + s.inflight[ANON] == 0, "every write completed");
	if (!stt.sigbus_caught)
		printf("NOTE: no write reached a page past the end before the fence this run\n");

	rs_close(&g);
	t_sh("rm -rf %s", dir);
	return t_done("t_sigbus_stream");
}
