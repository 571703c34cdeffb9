/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* A peer streams RMA writes over a whole file MR (tcp;ofi_rxm, loopback)
 * and over an anonymous MR while truncate(1) cuts the file in half; another
 * process keeps the file open, so no lease: the owner sees the truncate only
 * after it landed, and writes past the new end reach its mapping first (the
 * provider copies them into pages past the end of file). The owner lives
 * (its SIGBUS watcher puts them in scratch pages and fences the MR there);
 * every write to the file's first half and to the anonymous MR succeeds;
 * writes past the new end succeed (landed before the owner knew) or fail
 * alone with -EKEYREVOKED and the owner's cause; nothing else fails.
 * (Issue 13 item 3; reads past the end are another matter: README.) */
#include "rma_stream.h"
#include "ep_int.h"

static const char *const cname[] = {"head", "tail", "anon"};

/* keep every class (tail: while the peer lets it) DEPTH deep */
static void stream(struct rs *g, struct st *s, int *n, bool tail)
{
	for (int i = 0; i < NCLASS; i++)
		while ((i != TAIL || tail) && s->inflight[i] < DEPTH && !rs_post(g, s, i, (*n)++))
			;
	rs_reap(g, s);
}

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

	struct st s = {0};
	int n = 0;
	uint64_t hang = t_now_ns() + T_HANG_MS * 1000000ull;
	/* 1. every class streaming */
	while (s.ok[ANON] < 300 && t_now_ns() < hang)
		stream(&g, &s, &n, true);
	/* 2. the truncate lands while the tail's writes are in flight */
	pid_t tr = t_sh_bg("truncate -s %u %s", MB / 2, path);
	int trc = -1;
	for (;;) {
		stream(&g, &s, &n, true);
		int st;
		if (waitpid(tr, &st, WNOHANG) == tr) {
			trc = WIFEXITED(st) ? WEXITSTATUS(st) : 128;
			break;
		}
	}
	CHECK(trc == 0, "truncate ran");
	/* 3. on, tail included (refused once the peer hears), until the owner
	 * has fenced the tail and 3000 more anonymous writes succeeded */
	int mark = s.ok[ANON];
	struct mrl_mr_info mi = {.size = sizeof(mi)};
	do {
		stream(&g, &s, &n, true);
		mrl_mr_query(p.sctx, g.mr[0], &mi);
	} while ((s.ok[ANON] < mark + 3000 || mi.valid_length > MB / 2) && t_now_ns() < hang);
	while (s.inflight[HEAD] + s.inflight[TAIL] + s.inflight[ANON] && t_now_ns() < hang)
		rs_reap(&g, &s);
	struct mrl_stats stt = {.size = sizeof(stt)};
	mrl_ctx_stats(p.sctx, &stt);
	for (int i = 0; i < NCLASS; i++)
		printf("%s: %d ok, %d revoked, %d refused at post, %d other\n", cname[i], s.ok[i], s.revoked[i],
		       s.refused[i], s.other[i]);
	printf("owner: stores past the end caught %llu; file MR valid %llu, cause %s\n",
	       (unsigned long long)stt.sigbus_caught, (unsigned long long)mi.valid_length, mrl_cause_str(mi.cause));
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
	CHECK(s.ok[ANON] >= mark + 3000, "the anonymous MR went on (%d ok)", s.ok[ANON] - mark);
	CHECK(s.inflight[HEAD] + s.inflight[TAIL] + s.inflight[ANON] == 0, "every write completed");
	if (!stt.sigbus_caught)
		printf("NOTE: no write reached a page past the end before the fence this run\n");

	rs_close(&g);
	t_sh("rm -rf %s", dir);
	return t_done("t_sigbus_stream");
}
