/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Streams of RMA operations from the peer of a rig_pair over a whole file
 * MR (cut in half by the test: a head that stays, a tail that goes) and an
 * anonymous MR, each class kept DEPTH deep; completions counted per class.
 * Another process keeps the file open, so the owner gets no lease. */
#ifndef MRL_TEST_RMA_STREAM_H
#define MRL_TEST_RMA_STREAM_H

#include <sys/mman.h>

#include "rig_pair.h"

#define MB (1u << 20)
#define DEPTH 16
#define OPLEN 16384

enum { HEAD, TAIL, ANON, NCLASS };

struct st {
	int ok[NCLASS], revoked[NCLASS], other[NCLASS], refused[NCLASS], inflight[NCLASS];
	int other_err;
	uint32_t causes; /* bit per cause the refusals carried */
	uint32_t cause;  /* the last of them */
};

struct rs {
	struct pair *p;
	pid_t reader; /* keeps the file open: no lease */
	void *fp;     /* the file, MB, mapped by the owner */
	char *anon;
	mrl_mr_t mr[2]; /* 0: the file, 1: anonymous */
	mrl_rmr *r[2];
	bool reads; /* odd operations are reads */
};

static char rs_buf[NCLASS * DEPTH][OPLEN];

/* The reader opens path and waits until it holds it. */
static inline void rs_hold(struct rs *g, const char *path)
{
	g->reader = t_sh_bg("exec sleep 600 < %s", path);
	for (uint64_t hang = t_now_ns() + T_HANG_MS * 1000000ull; t_now_ns() < hang;)
		if (t_sh("ls -l /proc/%d/fd 2>/dev/null | grep -q %s", g->reader, path) == 0)
			break;
}

/* Both MRs registered on the owner and opened by the peer. */
static inline void rs_open(struct rs *g, struct pair *p, const char *path)
{
	g->p = p;
	REQUIRE(mrl_file_map(p->sctx, path, 0, MB, PROT_READ | PROT_WRITE, &g->fp) == 0, "map");
	g->anon = mmap(NULL, MB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(g->anon != MAP_FAILED, "mmap");
	unsigned rw = MRL_ACCESS_REMOTE_READ | MRL_ACCESS_REMOTE_WRITE;
	REQUIRE(mrl_mr_reg(p->sctx, g->fp, MB, rw, NULL, &g->mr[0]) == 0, "file MR: %s", mrl_last_error());
	REQUIRE(mrl_mr_reg(p->sctx, g->anon, MB, rw, NULL, &g->mr[1]) == 0, "anonymous MR");
	for (int i = 0; i < 2; i++)
		REQUIRE(mrl_rmr_open(p->cpeer, g->mr[i], T_HANG_MS, &g->r[i]) == 0, "open %d", i);
}

/* Undoes rs_hold and rs_open, and closes the pair. */
static inline void rs_close(struct rs *g)
{
	kill(g->reader, SIGTERM);
	t_wait_status(g->reader);
	for (int i = 0; i < 2; i++) {
		mrl_rmr_close(g->r[i]);
		mrl_mr_dereg(g->p->sctx, g->mr[i]);
	}
	mrl_file_unmap(g->p->sctx, g->fp, MB);
	pair_close(g->p);
	munmap(g->anon, MB);
}

/* Operation n of class i (a write of 'a' + i, or a read if g->reads and n
 * is odd); a refusal at post is counted here, a completion by rs_reap. */
static inline int rs_post(struct rs *g, struct st *s, int i, int n)
{
	uint64_t off = (uint64_t)(n % (MB / 2 / OPLEN)) * OPLEN + (i == TAIL ? MB / 2 : 0);
	mrl_rmr *rr = i == ANON ? g->r[1] : g->r[0];
	void *b = rs_buf[i * DEPTH + s->inflight[i]];
	void *uc = (void *)(uintptr_t)(i + 1);
	int ret;
	if (g->reads && n & 1) {
		ret = mrl_read(rr, off, b, OPLEN, uc);
	} else {
		memset(b, 'a' + i, OPLEN);
		ret = mrl_write(rr, off, b, OPLEN, uc);
	}
	if (ret == -EKEYREVOKED)
		s->refused[i]++;
	else if (ret)
		s->other[i]++, s->other_err = ret;
	else
		s->inflight[i]++;
	return ret;
}

static inline void rs_reap(struct rs *g, struct st *s)
{
	struct mrl_completion c[16];
	int got = mrl_ep_poll(g->p->cep, c, 16);
	for (int k = 0; k < got; k++) {
		int i = (int)(uintptr_t)c[k].op_context - 1;
		s->inflight[i]--;
		if (!c[k].status)
			s->ok[i]++;
		else if (c[k].status == -EKEYREVOKED)
			s->revoked[i]++, s->causes |= 1u << c[k].cause, s->cause = c[k].cause;
		else
			s->other[i]++, s->other_err = c[k].status;
	}
}

#endif
