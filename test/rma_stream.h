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
	/* reads that completed with success: looked at, and those with a byte
	 * that is neither zero, nor the file's first content, nor the class's
	 * own writes (the first such byte: where, what) */
	int reads_ok[NCLASS], bad_reads[NCLASS];
	uint64_t bad_off;
	int bad_class, bad_byte;
	int anon_after; /* anonymous MR successes after the truncate returned */
};

/* one operation in flight: its own buffer, what it was */
struct rs_op {
	bool busy, read;
	int cls;
	uint64_t off;
};

struct rs {
	struct pair *p;
	pid_t reader; /* keeps the file open: no lease */
	void *fp;     /* the file, MB, mapped by the owner */
	char *anon;
	mrl_mr_t mr[2]; /* 0: the file, 1: anonymous */
	mrl_rmr *r[2];
	bool reads; /* odd operations are reads */
	bool tail_reads; /* ... and every one past the half */
};

static char rs_buf[NCLASS * DEPTH][OPLEN];
static struct rs_op rs_ops[NCLASS * DEPTH];

/* the byte t_make_file put at offset o */
static inline char rs_first(uint64_t o)
{
	return (char)(o * 7 + 1);
}

/* The reader opens path and waits until it holds it. */
static inline void rs_hold(struct rs *g, const char *path)
{
	g->reader = t_hold_open(path);
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
 * is odd or, with tail_reads, i is TAIL), in a buffer of its own; a refusal at post is counted here, a
 * completion by rs_reap. -EBUSY (not counted): DEPTH in flight already. */
static inline int rs_post(struct rs *g, struct st *s, int i, int n)
{
	uint64_t off = (uint64_t)(n % (MB / 2 / OPLEN)) * OPLEN + (i == TAIL ? MB / 2 : 0);
	mrl_rmr *rr = i == ANON ? g->r[1] : g->r[0];
	int k = 0;
	while (k < DEPTH && rs_ops[i * DEPTH + k].busy)
		k++;
	if (k == DEPTH)
		return -EBUSY;
	struct rs_op *o = &rs_ops[i * DEPTH + k];
	void *b = rs_buf[i * DEPTH + k];
	bool rd = g->reads && ((n & 1) || (g->tail_reads && i == TAIL));
	*o = (struct rs_op){.busy = true, .read = rd, .cls = i, .off = off};
	int ret;
	if (o->read) {
		memset(b, 0x5a, OPLEN); /* never a byte a read may return here */
		ret = mrl_read(rr, off, b, OPLEN, o);
	} else {
		memset(b, 'a' + i, OPLEN);
		ret = mrl_write(rr, off, b, OPLEN, o);
	}
	if (ret == -EKEYREVOKED)
		s->refused[i]++;
	else if (ret)
		s->other[i]++, s->other_err = ret;
	else
		s->inflight[i]++;
	if (ret)
		o->busy = false;
	return ret;
}

/* A read that completed with success: each byte is zero (a hole, scratch
 * past the end), the file's first content, or the class's own write. */
static inline void rs_check_read(struct st *s, const struct rs_op *o, const unsigned char *b)
{
	s->reads_ok[o->cls]++;
	for (size_t k = 0; k < OPLEN; k++) {
		uint64_t at = o->off + k;
		if (b[k] == 0 || b[k] == 'a' + o->cls || (o->cls != ANON && b[k] == (unsigned char)rs_first(at)))
			continue;
		if (!s->bad_reads[0] && !s->bad_reads[1] && !s->bad_reads[2]) {
			s->bad_off = at;
			s->bad_class = o->cls;
			s->bad_byte = b[k];
		}
		s->bad_reads[o->cls]++;
		return;
	}
}

static inline void rs_reap(struct rs *g, struct st *s)
{
	struct mrl_completion c[16];
	int got = mrl_ep_poll(g->p->cep, c, 16);
	for (int k = 0; k < got; k++) {
		struct rs_op *o = c[k].op_context;
		int i = o->cls;
		s->inflight[i]--;
		if (!c[k].status) {
			s->ok[i]++;
			if (o->read)
				rs_check_read(s, o, (const unsigned char *)rs_buf[o - rs_ops]);
		} else if (c[k].status == -EKEYREVOKED) {
			s->revoked[i]++, s->causes |= 1u << c[k].cause, s->cause = c[k].cause;
		} else {
			s->other[i]++, s->other_err = c[k].status;
		}
		o->busy = false;
	}
}

/* keep every class DEPTH deep */
static inline void rs_stream(struct rs *g, struct st *s, int *n)
{
	for (int i = 0; i < NCLASS; i++)
		while (s->inflight[i] < DEPTH && !rs_post(g, s, i, (*n)++))
			;
	rs_reap(g, s);
}

/* Stream every class; truncate(1) cuts the file to half while they are in
 * flight; stream on (the tail refused once the peer hears) until the owner
 * has fenced the tail and `more` more operations on the anonymous MR
 * succeeded; then let everything complete. The owner's view of the file
 * MR in *mi; the truncate's exit status returned. */
static inline int rs_truncate_stream(struct rs *g, const char *path, struct st *s, int more,
				     struct mrl_mr_info *mi)
{
	int n = 0;
	uint64_t hang = t_now_ns() + T_HANG_MS * 1000000ull;
	while (s->ok[ANON] < 300 && t_now_ns() < hang)
		rs_stream(g, s, &n);
	pid_t tr = t_sh_bg("truncate -s %u %s", MB / 2, path);
	int trc = -1;
	for (;;) {
		rs_stream(g, s, &n);
		int st;
		if (waitpid(tr, &st, WNOHANG) == tr) {
			trc = WIFEXITED(st) ? WEXITSTATUS(st) : 128;
			break;
		}
	}
	int mark = s->ok[ANON];
	*mi = (struct mrl_mr_info){.size = sizeof(*mi)};
	do {
		rs_stream(g, s, &n);
		mrl_mr_query(g->p->sctx, g->mr[0], mi);
	} while ((s->ok[ANON] < mark + more || mi->valid_length > MB / 2) && t_now_ns() < hang);
	while (s->inflight[HEAD] + s->inflight[TAIL] + s->inflight[ANON] && t_now_ns() < hang)
		rs_reap(g, s);
	s->anon_after = s->ok[ANON] - mark;
	mrl_mr_query(g->p->sctx, g->mr[0], mi);
	return trc;
}

#endif
