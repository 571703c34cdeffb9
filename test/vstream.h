/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* A peer's verified stream over a file cut into MRs of equal size: each
 * slot writes a block with its own pattern, reads it back and compares. The
 * generation each operation ran under says whether an announced change may
 * lie between the write and the read (a mismatch then is "rewritten", not
 * wrong). The last MR is the one a test may cut short: -EKEYREVOKED there is
 * a clean refusal past the end; any other failure counts as failed.
 * Used by t_fan_stream and t_unclassified. */
#ifndef MRL_TEST_VSTREAM_H
#define MRL_TEST_VSTREAM_H

#include "helpers.h"

#define VS_BLK 4096u
#define VS_SLOTS 8

struct vs_slot {
	int busy, is_read, m, after;
	unsigned blk, seq;
	unsigned char buf[VS_BLK];
};

struct vstream {
	mrl_ep *ep;
	mrl_rmr **r;
	int nmr;
	unsigned nblk;              /* blocks per MR */
	unsigned *seq_of, *gen_of;  /* [m * nblk + blk]: the last verified write */
	struct vs_slot slots[VS_SLOTS];
	unsigned long transfers, failed, refused, mismatches, regen, verified, after, posted_after;
	uint64_t rng;
	unsigned seq;
};

static inline void vs_pattern(unsigned char *b, int m, unsigned blk, unsigned seq)
{
	for (unsigned i = 0; i < VS_BLK; i += 4) {
		uint32_t v = (uint32_t)(m * 0x1000193u) ^ (blk * 2654435761u) ^ (seq * 40503u) ^ i;
		memcpy(b + i, &v, 4);
	}
}

static inline void vs_init(struct vstream *s, mrl_ep *ep, mrl_rmr **r, int nmr, size_t mrsz)
{
	memset(s, 0, sizeof(*s));
	s->ep = ep;
	s->r = r;
	s->nmr = nmr;
	s->nblk = (unsigned)(mrsz / VS_BLK);
	s->seq_of = calloc((size_t)nmr * s->nblk, sizeof(unsigned));
	s->gen_of = calloc((size_t)nmr * s->nblk, sizeof(unsigned));
	REQUIRE(s->seq_of && s->gen_of, "stream bookkeeping");
	s->rng = 0x9e3779b97f4a7c15ull;
	s->seq = 1;
}

static inline void vs_free(struct vstream *s)
{
	free(s->seq_of);
	free(s->gen_of);
}

static inline bool vs_busy(const struct vstream *s)
{
	for (int i = 0; i < VS_SLOTS; i++)
		if (s->slots[i].busy)
			return true;
	return false;
}

/* Start a write in every idle slot; after marks transfers started once the
 * test's changes are all made. */
static inline void vs_post(struct vstream *s, int after)
{
	for (int i = 0; i < VS_SLOTS; i++) {
		struct vs_slot *sl = &s->slots[i];
		if (sl->busy)
			continue;
		s->rng ^= s->rng << 13, s->rng ^= s->rng >> 7, s->rng ^= s->rng << 17;
		sl->m = (int)(s->rng % (uint64_t)s->nmr);
		sl->blk = (unsigned)((s->rng >> 16) % s->nblk);
		sl->is_read = 0;
		sl->seq = s->seq++;
		sl->after = after;
		s->posted_after += (unsigned)after;
		vs_pattern(sl->buf, sl->m, sl->blk, sl->seq);
		int ret = mrl_write(s->r[sl->m], (uint64_t)sl->blk * VS_BLK, sl->buf, VS_BLK, sl);
		if (ret == -EKEYREVOKED && sl->m == s->nmr - 1)
			s->refused++; /* past the cut end: refused cleanly */
		else if (ret)
			s->failed++;
		else
			sl->busy = 1;
	}
}

/* Reap completions: a finished write is read back, a finished read
 * compared. Returns how many completions it saw. */
static inline int vs_reap(struct vstream *s)
{
	struct mrl_completion c[VS_SLOTS];
	int n = mrl_ep_poll(s->ep, c, VS_SLOTS);
	for (int i = 0; i < n; i++) {
		struct vs_slot *sl = c[i].op_context;
		unsigned *seq_of = &s->seq_of[sl->m * s->nblk + sl->blk];
		unsigned *gen_of = &s->gen_of[sl->m * s->nblk + sl->blk];
		s->transfers++;
		if (c[i].status) {
			if (sl->m == s->nmr - 1 && c[i].status == -EKEYREVOKED)
				s->refused++;
			else
				s->failed++, fprintf(stderr, "op on MR %d failed: %s (%s)\n", sl->m,
						     strerror(-c[i].status), mrl_cause_str(c[i].cause));
			sl->busy = 0;
			continue;
		}
		if (!sl->is_read) {
			*seq_of = sl->seq;
			*gen_of = c[i].generation;
			sl->is_read = 1;
			memset(sl->buf, 0, VS_BLK);
			if (mrl_read(s->r[sl->m], (uint64_t)sl->blk * VS_BLK, sl->buf, VS_BLK, sl))
				s->failed++, sl->busy = 0;
			continue;
		}
		unsigned char want[VS_BLK];
		vs_pattern(want, sl->m, sl->blk, sl->seq);
		if (memcmp(want, sl->buf, VS_BLK)) {
			if (c[i].generation == *gen_of && *seq_of == sl->seq)
				s->mismatches++; /* no change announced in between: must match */
			else
				s->regen++;
		}
		s->verified++;
		s->after += (unsigned)sl->after;
		sl->busy = 0;
	}
	return n;
}

/* Every block last written under its MR's final generation, and below the
 * MR's valid length, is in the file at path (MR m at m * nblk blocks).
 * Returns the blocks lost; *checked gets how many were compared. */
static inline unsigned long vs_lost(const struct vstream *s, mrl_ctx *ctx, const mrl_mr_t *mr,
				    const char *path, unsigned long *checked)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	unsigned long lost = 0;
	*checked = 0;
	for (int m = 0; m < s->nmr; m++) {
		struct mrl_mr_info in = t_query(ctx, mr[m]);
		for (unsigned b = 0; b < s->nblk; b++) {
			unsigned seq = s->seq_of[m * s->nblk + b];
			if (!seq || s->gen_of[m * s->nblk + b] != in.generation ||
			    (uint64_t)(b + 1) * VS_BLK > in.valid_length)
				continue;
			unsigned char want[VS_BLK], got[VS_BLK];
			vs_pattern(want, m, b, seq);
			(*checked)++;
			off_t at = (off_t)(((uint64_t)m * s->nblk + b) * VS_BLK);
			if (fd < 0 || pread(fd, got, VS_BLK, at) != VS_BLK || memcmp(want, got, VS_BLK))
				lost++;
		}
	}
	if (fd >= 0)
		close(fd);
	return lost;
}

#endif
