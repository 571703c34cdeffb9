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
#include <sys/mman.h>

#include "rig_pair.h"
#include "ep_int.h"

#define MB (1u << 20)
#define DEPTH 16
#define OPLEN 16384

struct st {
	int ok[3], revoked[3], other[3], other_err, refused[3];
	uint32_t cause;
	int inflight[3];
};

/* MR 0: the file's first half (stays); 1: its second half (cut); 2: anonymous */
static mrl_rmr *r[2];
static char buf[3 * DEPTH][OPLEN];

static int post(struct st *s, int i, int n)
{
	uint64_t off = (uint64_t)(n % (MB / 2 / OPLEN)) * OPLEN + (i == 1 ? MB / 2 : 0);
	mrl_rmr *rr = i == 2 ? r[1] : r[0];
	void *b = buf[i * DEPTH + s->inflight[i]];
	void *uc = (void *)(uintptr_t)(i + 1);
	int ret = n & 1 ? mrl_read(rr, off, b, OPLEN, uc) : mrl_write(rr, off, b, OPLEN, uc);
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
			s->revoked[i]++, s->cause = c[k].cause;
		else
			s->other[i]++, s->other_err = c[k].status;
	}
}

int main(void)
{
	char dir[256], path[300];
	t_scratch("tmpfs", dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/f", dir);
	t_make_file(path, MB);
	/* an opener from before registration: the owner cannot lease the file */
	pid_t reader = t_sh_bg("exec sleep 600 < %s", path);
	for (uint64_t hang = t_now_ns() + T_HANG_MS * 1000000ull; t_now_ns() < hang;)
		if (t_sh("ls -l /proc/%d/fd 2>/dev/null | grep -q %s", reader, path) == 0)
			break;

	struct pair p;
	pair_open(&p);
	void *fp;
	REQUIRE(mrl_file_map(p.sctx, path, 0, MB, PROT_READ | PROT_WRITE, &fp) == 0, "map");
	char *anon = mmap(NULL, MB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(anon != MAP_FAILED, "mmap");
	unsigned rw = MRL_ACCESS_REMOTE_READ | MRL_ACCESS_REMOTE_WRITE;
	mrl_mr_t mr[2];
	REQUIRE(mrl_mr_reg(p.sctx, fp, MB, rw, NULL, &mr[0]) == 0, "file MR: %s", mrl_last_error());
	REQUIRE(mrl_mr_reg(p.sctx, anon, MB, rw, NULL, &mr[1]) == 0, "anonymous MR");
	struct mrl_mr_info mi = {.size = sizeof(mi)};
	mrl_mr_query(p.sctx, mr[0], &mi);
	printf("file MR: lease held %d\n", mi.lease_held);
	for (int i = 0; i < 2; i++)
		REQUIRE(mrl_rmr_open(p.cpeer, mr[i], T_HANG_MS, &r[i]) == 0, "open %d", i);

	struct st s = {0};
	int n = 0;
	uint64_t hang = t_now_ns() + T_HANG_MS * 1000000ull;
	/* 1. stream to the file's first half and the anonymous MR */
	while (s.ok[0] + s.ok[2] < 400 && t_now_ns() < hang) {
		for (int i = 0; i < 3; i += 2)
			while (s.inflight[i] < DEPTH && !post(&s, i, n++))
				;
		reap(&p, &s);
	}
	/* 2. truncate to half; the peer's endpoint is not driven meanwhile, so it
	 * has not heard of it when the owner has fenced the tail */
	pid_t tr = t_sh_bg("truncate -s %d %s", MB / 2, path);
	CHECK(t_wait_status(tr) == 0, "truncate ran");
	do
		mrl_mr_query(p.sctx, mr[0], &mi);
	while (mi.valid_length > MB / 2 && t_now_ns() < hang && !usleep(1000));
	/* the owner is told of the fence only once the device applied it (the
	 * registration is shrunk): a write past the new end from here on is
	 * refused by the provider, not made into the file past its end
	 * (SIGBUS). Before that, nothing waited for the device worker here. */
	REQUIRE(mi.valid_length == MB / 2, "the owner saw the truncate: the tail is fenced (valid %llu)",
		(unsigned long long)mi.valid_length);
	struct mrl_rmr_info ri = {.size = sizeof(ri)};
	mrl_rmr_query(r[0], &ri);
	CHECK(ri.valid_length == MB, "the peer has not heard yet (valid %llu)",
	      (unsigned long long)ri.valid_length);
	/* 3. reads and writes past the new end, with the others in flight */
	for (int i = 0; i < 3; i++)
		while (s.inflight[i] < DEPTH && !post(&s, i, n++))
			;
	int tail_posted = s.inflight[1];
	/* 4. go on with the others until 3000 more succeeded on the anonymous MR */
	int mark = s.ok[2];
	while ((s.ok[2] < mark + 3000 || s.inflight[0] + s.inflight[1] + s.inflight[2]) &&
	       t_now_ns() < hang) {
		for (int i = 0; i < 3; i += 2)
			while (s.ok[2] < mark + 3000 && s.inflight[i] < DEPTH && !post(&s, i, n++))
				;
		reap(&p, &s);
	}
	mrl_rmr_query(r[0], &ri);
	printf("ops: head %d ok %d revoked; tail %d posted, %d ok %d revoked (cause %s); anon %d ok %d "
	       "revoked; other %d/%d/%d (last %d); the peer's file MR now: valid %llu\n",
	       s.ok[0], s.revoked[0], tail_posted, s.ok[1], s.revoked[1], mrl_cause_str(s.cause), s.ok[2],
	       s.revoked[2], s.other[0], s.other[1], s.other[2], s.other_err,
	       (unsigned long long)ri.valid_length);
	printf("ops posted again after the provider dropped the connection: %llu\n",
	       (unsigned long long)p.cep->op_retries);
	mrl_mr_query(p.sctx, mr[0], &mi);
	printf("the owner's file MR: cause %s\n", mrl_cause_str(mi.cause));
	/* the cause is the owner's: what its watcher made of the change */
	CHECK(tail_posted == DEPTH && s.revoked[1] == DEPTH && s.ok[1] == 0 && s.cause == mi.cause &&
	      s.cause != MRL_CAUSE_NONE,
	      "every operation past the new end failed with -EKEYREVOKED and the owner's cause");
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
	mrl_rmr_query(r[1], &ri);
	CHECK(ri.state == MRL_STATE_ACTIVE, "the anonymous MR is still active");

	kill(reader, SIGTERM);
	t_wait_status(reader);
	for (int i = 0; i < 2; i++) {
		mrl_rmr_close(r[i]);
		mrl_mr_dereg(p.sctx, mr[i]);
	}
	mrl_file_unmap(p.sctx, fp, MB);
	pair_close(&p);
	munmap(anon, MB);
	unlink(path);
	rmdir(dir);
	return t_done("t_trunc_inflight");
}
