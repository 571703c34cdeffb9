/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* A fence is per MR: two MRs on one connection, the peer streaming writes
 * and reads to both, the owner fences one (mrl_mr_fence; then an MR with
 * MRL_POLICY_FENCE under a truncate by coreutils). Every operation on the
 * other MR succeeds, the fenced one's fail with -EKEYREVOKED and a cause,
 * none fails with ENOTCONN, and the connection stays up. */
#include <pthread.h>
#include <sys/mman.h>

#include "rig_pair.h"

#define MB (1u << 20)
#define DEPTH 16

struct stream {
	mrl_rmr *r[2];
	bool refused;     /* the peer knows: stop posting to MR 0 */
	int posted[2], ok[2], revoked[2], other[2], other_err;
	uint32_t cause[2];
	char *buf;
};

static void post(struct stream *s, int i, int n)
{
	int kind = n & 1;
	uint64_t off = (uint64_t)(n % 32) * 16384;
	void *ctx = (void *)(uintptr_t)(i + 1);
	int ret = kind ? mrl_read(s->r[i], off, s->buf + i * 16384, 16384, ctx)
		       : mrl_write(s->r[i], off, s->buf + 2 * 16384, 16384, ctx);
	if (ret == 0) {
		s->posted[i]++;
	} else if (ret == -EKEYREVOKED) {
		/* refused at once: the remote MR says why (operations in flight
		 * at the fence were drained: they complete with their status) */
		struct mrl_rmr_info ri = {.size = sizeof(ri)};
		if (!s->refused && mrl_rmr_query(s->r[i], &ri) == 0)
			s->cause[i] = ri.cause;
		s->refused = true;
	} else
		s->other[i]++, s->other_err = ret;
}

static void reap(struct pair *p, struct stream *s, int *inflight)
{
	struct mrl_completion c[16];
	int n = mrl_ep_poll(p->cep, c, 16);
	for (int k = 0; k < n; k++) {
		int i = (int)(uintptr_t)c[k].op_context - 1;
		inflight[i]--;
		if (c[k].status == 0) {
			s->ok[i]++;
		} else if (c[k].status == -EKEYREVOKED) {
			s->revoked[i]++;
			s->cause[i] = c[k].cause;
		} else {
			s->other[i]++;
			s->other_err = c[k].status;
		}
	}
}

/* Stream to both MRs; fence() is called once after `before` completions. */
static void run(struct pair *p, mrl_mr_t mr[2], const char *what, void (*fence)(void *), void *arg,
		uint32_t want_cause)
{
	struct stream s = {0};
	static char buf[3 * 16384];
	s.buf = buf;
	for (int i = 0; i < 2; i++)
		REQUIRE(mrl_rmr_open(p->cpeer, mr[i], T_HANG_MS, &s.r[i]) == 0, "%s: open %d", what, i);
	int inflight[2] = {0}, n[2] = {0};
	bool fenced = false;
	uint64_t hang = t_now_ns() + T_HANG_MS * 1000000ull;
	/* stream until the peer knows of the fence and 2000 more ops went to the other MR */
	int mark = -1;
	while (t_now_ns() < hang && (mark < 0 || s.ok[1] < mark + 2000)) {
		for (int i = 0; i < 2; i++)
			while (inflight[i] < DEPTH && !(i == 0 && s.refused)) {
				int before = s.posted[i];
				post(&s, i, n[i]++);
				if (s.posted[i] == before)
					break;
				inflight[i]++;
			}
		reap(p, &s, inflight);
		if (!fenced && s.ok[0] + s.ok[1] > 400) {
			fence(arg);
			fenced = true;
		}
		if (s.refused && mark < 0)
			mark = s.ok[1];
	}
	while (inflight[0] + inflight[1] > 0 && t_now_ns() < hang)
		reap(p, &s, inflight);
	printf("%s: MR 0 %d ok, %d revoked; MR 1 %d ok, %d revoked; other %d/%d (%d)\n", what, s.ok[0],
	       s.revoked[0], s.ok[1], s.revoked[1], s.other[0], s.other[1], s.other_err);
	CHECK(fenced && s.refused, "%s: the fenced MR's new operations are refused (-EKEYREVOKED)", what);
	CHECK(s.cause[0] == want_cause || (!want_cause && s.cause[0] != MRL_CAUSE_NONE),
	      "%s: with its cause (%s)", what, mrl_cause_str(s.cause[0]));
	CHECK(s.revoked[1] == 0 && s.other[1] == 0 && mark >= 0 && s.ok[1] >= mark + 2000,
	      "%s: every operation on the other MR succeeded (%d ok)", what, s.ok[1]);
	CHECK(s.other[0] == 0, "%s: no other failure on the fenced MR (%d, last %d)", what, s.other[0],
	      s.other_err);
	struct mrl_rmr_info ri = {.size = sizeof(ri)};
	mrl_rmr_query(s.r[1], &ri);
	CHECK(ri.state == MRL_STATE_ACTIVE, "%s: the other MR is still active", what);
	for (int i = 0; i < 2; i++)
		mrl_rmr_close(s.r[i]);
}

struct fence_arg {
	mrl_ctx *ctx;
	mrl_mr_t mr;
	const char *path;
	pid_t pid;
	pthread_t th;
};

static void *fence_main(void *a)
{
	struct fence_arg *f = a;
	CHECK(mrl_mr_fence(f->ctx, f->mr) == 0, "mrl_mr_fence");
	return NULL;
}

/* from another thread: mrl_mr_fence returns once the peer drained the MR,
 * and this thread drives the peer's progress */
static void fence_owner(void *a)
{
	struct fence_arg *f = a;
	pthread_create(&f->th, NULL, fence_main, f);
}

static void fence_truncate(void *a)
{
	struct fence_arg *f = a;
	/* coreutils, from another process: the policy fences at the break */
	/* it opens O_NONBLOCK: refused while the lease is held, it retries; the
	 * policy fences at its first open (whether it then gets in is the lease
	 * watcher's business, not this test's) */
	f->pid = t_sh_bg("for i in $(seq 20); do truncate -s 0 %s 2>/dev/null && exit 0; sleep 0.2; "
			 "done; exit 1", f->path);
}

int main(void)
{
	struct pair p;
	pair_open(&p);

	/* 1. the owner fences one of two anonymous MRs */
	char *mem = mmap(NULL, 2 * MB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(mem != MAP_FAILED, "mmap");
	mrl_mr_t mr[2];
	for (int i = 0; i < 2; i++)
		REQUIRE(mrl_mr_reg(p.sctx, mem + i * MB, MB,
				   MRL_ACCESS_REMOTE_READ | MRL_ACCESS_REMOTE_WRITE, NULL, &mr[i]) == 0,
			"register %d", i);
	struct fence_arg fa = {.ctx = p.sctx, .mr = mr[0]};
	run(&p, mr, "mrl_mr_fence", fence_owner, &fa, MRL_CAUSE_OWNER);
	pthread_join(fa.th, NULL);
	for (int i = 0; i < 2; i++)
		mrl_mr_dereg(p.sctx, mr[i]);

	/* 2. MRL_POLICY_FENCE on a file MR, truncated by coreutils; the other MR
	 * is anonymous memory */
	char dir[256], path[300];
	t_scratch("tmpfs", dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/f", dir);
	t_make_file(path, MB);
	void *fp;
	REQUIRE(mrl_file_map(p.sctx, path, 0, MB, PROT_READ | PROT_WRITE, &fp) == 0, "map");
	struct mrl_reg_opts ro = {.size = sizeof(ro), .policy = MRL_POLICY_FENCE};
	REQUIRE(mrl_mr_reg(p.sctx, fp, MB, MRL_ACCESS_REMOTE_READ | MRL_ACCESS_REMOTE_WRITE, &ro,
			   &mr[0]) == 0, "register the file MR");
	REQUIRE(mrl_mr_reg(p.sctx, mem + MB, MB, MRL_ACCESS_REMOTE_READ | MRL_ACCESS_REMOTE_WRITE, NULL,
			   &mr[1]) == 0, "register the anonymous MR");
	struct fence_arg ta = {.ctx = p.sctx, .mr = mr[0], .path = path};
	/* fenced at the break: the cause names what broke the lease */
	run(&p, mr, "policy fence + truncate", fence_truncate, &ta, MRL_CAUSE_NONE);
	t_wait_status(ta.pid);
	for (int i = 0; i < 2; i++)
		mrl_mr_dereg(p.sctx, mr[i]);
	mrl_file_unmap(p.sctx, fp, MB);
	unlink(path);
	rmdir(dir);

	pair_close(&p);
	munmap(mem, 2 * MB);
	return t_done("t_fence_conn");
}
