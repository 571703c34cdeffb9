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
#include <sys/mman.h>

#include "rig_pair.h"
#include "ep_int.h"

#define MB (1u << 20)
#define DEPTH 16
#define OPLEN 16384

enum { HEAD, TAIL, ANON, NCLASS };
static const char *const cname[] = {"head", "tail", "anon"};

struct st {
	int ok[NCLASS], revoked[NCLASS], other[NCLASS], refused[NCLASS], inflight[NCLASS];
	int other_err;
	uint32_t causes; /* bit per cause the tail's refusals carried */
};

static mrl_rmr *r[2];
static char buf[NCLASS * DEPTH][OPLEN];

static int post(struct st *s, int i, int n)
{
	uint64_t off = (uint64_t)(n % (MB / 2 / OPLEN)) * OPLEN + (i == TAIL ? MB / 2 : 0);
	mrl_rmr *rr = i == ANON ? r[1] : r[0];
	void *b = buf[i * DEPTH + s->inflight[i]];
	memset(b, 'a' + i, OPLEN);
	int ret = mrl_write(rr, off, b, OPLEN, (void *)(uintptr_t)(i + 1));
	if (ret == -EKEYREVOKED)
		s->refused[i]++;
	else if (ret)
		s->other[i]++, s->other_err = ret;
	else
		s->inflight[i]++;
	return ret;
}

static void reap(struct pair *p, struct st *s)
{
	struct mrl_completion c[16];
	int got = mrl_ep_poll(p->cep, c, 16);
	for (int k = 0; k < got; k++) {
		int i = (int)(uintptr_t)c[k].op_context - 1;
		s->inflight[i]--;
		if (!c[k].status)
			s->ok[i]++;
		else if (c[k].status == -EKEYREVOKED)
			s->revoked[i]++, s->causes |= 1u << c[k].cause;
		else
			s->other[i]++, s->other_err = c[k].status;
	}
}

/* keep every class (tail: while the peer lets it) DEPTH deep */
static void stream(struct pair *p, struct st *s, int *n, bool tail)
{
	for (int i = 0; i < NCLASS; i++)
		while ((i != TAIL || tail) && s->inflight[i] < DEPTH && !post(s, i, (*n)++))
			;
	reap(p, s);
}

int main(void)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	char dir[256], path[300];
	t_scratch("tmpfs", dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/f", dir);
	t_make_file(path, MB);
	pid_t reader = t_sh_bg("exec sleep 600 < %s", path);
	for (uint64_t hang = t_now_ns() + T_HANG_MS * 1000000ull; t_now_ns() < hang;)
		if (t_sh("ls -l /proc/%d/fd 2>/dev/null | grep -q %s", reader, path) == 0)
			break;

	struct pair p;
	pair_open(&p);
	if (!(mrl_ctx_watchers(p.sctx) & MRL_WATCH_SIGBUS))
		t_skip("the owner runs no SIGBUS watcher here");
	void *fp;
	REQUIRE(mrl_file_map(p.sctx, path, 0, MB, PROT_READ | PROT_WRITE, &fp) == 0, "map");
	char *anon = mmap(NULL, MB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(anon != MAP_FAILED, "mmap");
	unsigned rw = MRL_ACCESS_REMOTE_READ | MRL_ACCESS_REMOTE_WRITE;
	mrl_mr_t mr[2];
	REQUIRE(mrl_mr_reg(p.sctx, fp, MB, rw, NULL, &mr[0]) == 0, "file MR: %s", mrl_last_error());
	REQUIRE(mrl_mr_reg(p.sctx, anon, MB, rw, NULL, &mr[1]) == 0, "anonymous MR");
	CHECK(!t_query(p.sctx, mr[0]).lease_held, "no lease on the file (another opener)");
	for (int i = 0; i < 2; i++)
		REQUIRE(mrl_rmr_open(p.cpeer, mr[i], T_HANG_MS, &r[i]) == 0, "open %d", i);

	struct st s = {0};
	int n = 0;
	uint64_t hang = t_now_ns() + T_HANG_MS * 1000000ull;
	/* 1. every class streaming */
	while (s.ok[ANON] < 300 && t_now_ns() < hang)
		stream(&p, &s, &n, true);
	/* 2. the truncate lands while the tail's writes are in flight */
	pid_t tr = t_sh_bg("truncate -s %u %s", MB / 2, path);
	int trc = -1;
	for (;;) {
		stream(&p, &s, &n, true);
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
		stream(&p, &s, &n, true);
		mrl_mr_query(p.sctx, mr[0], &mi);
	} while ((s.ok[ANON] < mark + 3000 || mi.valid_length > MB / 2) && t_now_ns() < hang);
	while (s.inflight[HEAD] + s.inflight[TAIL] + s.inflight[ANON] && t_now_ns() < hang)
		reap(&p, &s);
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

	kill(reader, SIGTERM);
	t_wait_status(reader);
	for (int i = 0; i < 2; i++) {
		mrl_rmr_close(r[i]);
		mrl_mr_dereg(p.sctx, mr[i]);
	}
	mrl_file_unmap(p.sctx, fp, MB);
	pair_close(&p);
	munmap(anon, MB);
	t_sh("rm -rf %s", dir);
	return t_done("t_sigbus_stream");
}
