/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The seccomp watcher's matching (seccomp.h): each context's copy of its
 * registered ranges (page-rounded) and objects, rebuilt under ctx->lock when
 * an MR comes or goes, and the supervisor's lookup of a call in them under
 * mrl_sc.lock alone. ftruncate and fallocate are matched by object (dev,
 * inode), not by open file description (F_DUPFD_QUERY): a change through
 * any description of the object changes the registered pages, a separate
 * open of it as much as the fd the MR was mapped from. */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "seccomp.h"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
/* mrl_sc.lock held */
struct sc_ctx *mrl_sc_of(struct mrl_ctx *ctx)
{
	for (int i = 0; i < SC_CTXS; i++)
		if (mrl_sc.ctxs[i] && mrl_sc.ctxs[i]->ctx == ctx)
			return mrl_sc.ctxs[i];
	return NULL;
}

/* mrl_sc.lock held */
struct sc_ctx *mrl_sc_by_id(uint64_t id)
{
	for (int i = 0; i < SC_CTXS; i++)
		if (mrl_sc.ctxs[i] && mrl_sc.ctxs[i]->id == id)
			return mrl_sc.ctxs[i];
	return NULL;
}

/* ---- matching, without ctx->lock ---- */

static bool range_hit(const struct sc_ctx *s, uintptr_t a, uintptr_t b)
{
	for (unsigned i = 0; i < s->nranges; i++)
		if (a < s->hi[i] && s->lo[i] < b)
			return true;
	return false;
}

/* mrl_sc.lock held (seccomp.h) */
struct sc_ctx *mrl_sc_match_locked(const struct seccomp_notif *n, const struct stat *st,
				   const struct iovec *iov, size_t niov, uint64_t seg)
{
	for (int c = 0; c < SC_CTXS; c++) {
		struct sc_ctx *s = mrl_sc.ctxs[c];
		if (!s)
			continue;
		if (s->overflow)
			return s;
		switch (n->data.nr) {
		case SYS_ftruncate:
		case SYS_fallocate:
			for (unsigned i = 0; st && i < s->nobjs; i++)
				if (s->obj[i].ino == st->st_ino &&
				    (s->obj[i].st_dev == st->st_dev || s->obj[i].dev == st->st_dev))
					return s;
			break;
		case SYS_munmap:
		case SYS_madvise:
		case SYS_mremap:
			if (range_hit(s, n->data.args[0], n->data.args[0] + n->data.args[1]))
				return s;
			/* MREMAP_FIXED: whatever was at the target is replaced */
			if (n->data.nr == SYS_mremap && (n->data.args[3] & MREMAP_FIXED) &&
			    range_hit(s, n->data.args[4], n->data.args[4] + n->data.args[2]))
				return s;
			break;
		case SYS_mmap:
			/* MAP_FIXED_NOREPLACE never replaces (EEXIST) */
			if (!(n->data.args[3] & MAP_FIXED_NOREPLACE) &&
			    range_hit(s, n->data.args[0], n->data.args[0] + n->data.args[1]))
				return s;
			break;
		case SYS_shmat:
			/* SHM_RND rounds down to SHMLBA (a page here): the
			 * page-rounded range covers both */
			if (seg && range_hit(s, n->data.args[1] & ~(uintptr_t)4095,
					     n->data.args[1] + seg))
				return s;
			break;
		case SYS_process_madvise:
			for (size_t i = 0; i < niov; i++)
				if (range_hit(s, (uintptr_t)iov[i].iov_base,
					      (uintptr_t)iov[i].iov_base + iov[i].iov_len))
					return s;
			break;
		}
	}
	return NULL;
}

/* ---- the tables the supervisor matches against (ctx->lock held) ---- */

struct rebuild {
	struct mrl_ctx *ctx;
	struct sc_ctx *tmp;
};

static void add_obj(struct sc_ctx *t, dev_t dev, dev_t st_dev, ino_t ino)
{
	for (unsigned i = 0; i < t->nobjs; i++)
		if (t->obj[i].ino == ino && t->obj[i].dev == dev)
			return;
	if (t->nobjs == SC_OBJS) {
		t->overflow = true;
		return;
	}
	t->obj[t->nobjs++] = (struct sc_obj){.dev = dev, .st_dev = st_dev, .ino = ino};
}

static int rebuild_cb(struct mrl_itree_node *node, void *p)
{
	struct rebuild *r = p;
	struct sc_ctx *t = r->tmp;
	struct mrl_mr *mr = (struct mrl_mr *)node; /* va is the first member */
	uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
	if (t->nranges == SC_RANGES) {
		t->overflow = true;
	} else {
		t->lo[t->nranges] = (uintptr_t)mr->addr & ~(pg - 1);
		t->hi[t->nranges++] = ((uintptr_t)mr->addr + mr->len + pg - 1) & ~(pg - 1);
	}
	dev_t dev;
	ino_t ino;
	if (mr->file && !mr->file->fan)
		add_obj(t, mr->file->dev, mr->file->st_dev, mr->file->ino);
	else if (!mr->file && mrl_memfd_ident(r->ctx, mr, &dev, &ino) == 0)
		add_obj(t, dev, dev, ino);
	return 0;
}

void mrl_sc_rebuild(struct mrl_ctx *ctx)
{
	struct sc_ctx *t = calloc(1, sizeof(*t));
	if (!t)
		return; /* the old tables stay: a call on a new MR goes unseen, as without */
	struct rebuild r = {ctx, t};
	mrl_itree_overlap(&ctx->va_index, 0, UINTPTR_MAX, rebuild_cb, &r);
	mrl_lock(&mrl_sc.lock);
	struct sc_ctx *s = mrl_sc_of(ctx);
	if (s) {
		memcpy(s->lo, t->lo, sizeof(t->lo[0]) * t->nranges);
		memcpy(s->hi, t->hi, sizeof(t->hi[0]) * t->nranges);
		memcpy(s->obj, t->obj, sizeof(t->obj[0]) * t->nobjs);
		s->nranges = t->nranges;
		s->nobjs = t->nobjs;
		s->overflow = t->overflow;
	}
	mrl_unlock(&mrl_sc.lock);
	free(t);
}

