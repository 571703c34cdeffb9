/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The seccomp watcher (seccomp.h): the monitor's side of a held call
 * (ctx->lock held). munmap, mremap, mmap(MAP_FIXED) and shmat(SHM_REMAP)
 * over a range fence its MRs (unmapped, moved, replaced) and let the call
 * land once the device let go; ftruncate, fallocate, madvise and
 * process_madvise pause them through the break engine, the call lands when
 * the break lets it (let_land), and the MRs are restored on what is there
 * after it returned. */
#include <errno.h>
#include <linux/falloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "seccomp.h"

/* ---- the watcher ---- */

static int sc_start(struct mrl_ctx *ctx)
{
	if (!(ctx->opts.flags & MRL_CTX_SECCOMP))
		return -EOPNOTSUPP;
	struct sc_ctx *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->ctx = ctx;
	mrl_lock(&mrl_sc.lock);
	int slot = -1;
	for (int i = 0; i < SC_CTXS && slot < 0; i++)
		if (!mrl_sc.ctxs[i])
			slot = i;
	if (slot >= 0) {
		s->id = ++mrl_sc.next_id;
		mrl_sc.ctxs[slot] = s;
	}
	mrl_unlock(&mrl_sc.lock);
	if (slot < 0) {
		free(s);
		return -EMFILE;
	}
	return 0;
}

static void sc_stop(struct mrl_ctx *ctx)
{
	mrl_brks_free_of(ctx, &mrl_watch_seccomp);
	mrl_lock(&mrl_sc.lock);
	struct sc_ctx *s = mrl_sc_of(ctx);
	for (int i = 0; i < SC_CTXS; i++)
		if (s && mrl_sc.ctxs[i] == s)
			mrl_sc.ctxs[i] = NULL;
	/* a held call goes on (nobody resolves it now): the caller makes it */
	if (s && (s->req.state == REQ_PENDING || s->req.state == REQ_HELD || s->req.state == REQ_GO))
		mrl_sc_respond(&s->req.n, true, 0, 0);
	pthread_cond_broadcast(&mrl_sc.cv);
	mrl_unlock(&mrl_sc.lock);
	mrl_sc_kick(); /* its backlog is let go */
	free(s);
}

static void sc_mr_attach(struct mrl_ctx *ctx, struct mrl_mr *mr)
{
	(void)mr;
	mrl_sc_rebuild(ctx);
}

static void sc_mr_detach(struct mrl_ctx *ctx, struct mrl_mr *mr)
{
	(void)mr;
	mrl_sc_rebuild(ctx);
}

/* ---- the monitor's side: resolve a held call (ctx->lock held) ---- */

static void set_state(struct mrl_ctx *ctx, int state)
{
	mrl_lock(&mrl_sc.lock);
	struct sc_ctx *s = mrl_sc_of(ctx);
	if (s)
		s->req.state = state;
	pthread_cond_broadcast(&mrl_sc.cv);
	mrl_unlock(&mrl_sc.lock);
}

static void go_after_dev(struct mrl_ctx *ctx, struct mrl_mr *unused, int ret, void *arg)
{
	(void)unused, (void)ret, (void)arg;
	set_state(ctx, REQ_GO);
}

struct collect {
	struct mrl_mr_vec vec;
	bool fence;
	int cause;
	pid_t pid;
	uint64_t seen;
	struct mrl_ctx *ctx;
};

static int collect_cb(struct mrl_itree_node *node, void *p)
{
	struct collect *c = p;
	struct mrl_mr *mr = (struct mrl_mr *)node;
	if (!mrl_mr_live(mr) || mr->in_brk)
		return 0;
	for (size_t i = 0; i < c->vec.n; i++)
		if (c->vec.v[i] == mr)
			return 0;
	if (c->fence)
		mrl_mr_fence_locked(c->ctx, mr, c->cause, 0, mr->len, c->pid, c->seen);
	else
		mrl_mr_vec_push(&c->vec, mr);
	return 0;
}

static void begin(struct mrl_ctx *ctx, struct sc_ctx *s, const struct sc_req *q)
{
	const __u64 *a = q->n.data.args;
	pid_t tid = (pid_t)q->n.pid;
	struct mrl_brk *b = NULL;
	struct collect c = {.ctx = ctx, .pid = tid, .seen = q->seen};
	switch (q->n.data.nr) {
	case SYS_ftruncate:
	case SYS_fallocate: {
		struct mrl_file *f = mrl_file_find(ctx, q->dev, q->ino);
		uint64_t lo, hi = UINT64_MAX;
		int cause;
		if (q->n.data.nr == SYS_ftruncate) {
			lo = a[1];
			cause = MRL_CAUSE_TRUNCATED;
		} else {
			uint32_t mode = (uint32_t)a[1];
			lo = a[2];
			cause = mode & FALLOC_FL_PUNCH_HOLE	? MRL_CAUSE_PUNCH_HOLE
				: mode & FALLOC_FL_ZERO_RANGE	? MRL_CAUSE_ZERO_RANGE
				: mode & FALLOC_FL_COLLAPSE_RANGE ? MRL_CAUSE_COLLAPSE_RANGE
								  : MRL_CAUSE_INSERT_RANGE;
			if (mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE))
				hi = a[2] + a[3] < a[2] ? UINT64_MAX : a[2] + a[3];
		}
		if (f && f->fan)
			break; /* fanotify holds it itself */
		if (f && f->brk) {
			set_state(ctx, REQ_PENDING); /* after the break under way (tick) */
			return;
		}
		if (f) {
			b = mrl_brk_begin(ctx, f, &mrl_watch_seccomp, cause, tid, lo, hi, q->seen, NULL);
			break;
		}
		mrl_memfd_mrs(ctx, q->dev, q->ino, lo, hi, &c.vec);
		if (c.vec.n)
			b = mrl_brk_begin_mrs(ctx, &mrl_watch_seccomp, &c.vec, cause, tid, q->seen);
		else
			free(c.vec.v);
		break;
	}
	case SYS_munmap:
	case SYS_mremap:
	case SYS_mmap:
	case SYS_shmat: {
		uintptr_t lo = a[0], hi = a[0] + a[1];
		c.fence = true;
		c.cause = q->n.data.nr == SYS_munmap ? MRL_CAUSE_UNMAPPED
			: q->n.data.nr == SYS_mremap ? MRL_CAUSE_MOVED
						      : MRL_CAUSE_REPLACED;
		if (q->n.data.nr == SYS_shmat) {
			lo = a[1] & ~(uintptr_t)4095;
			hi = a[1] + q->seg;
		}
		mrl_itree_overlap(&ctx->va_index, lo, hi, collect_cb, &c);
		if (q->n.data.nr == SYS_mremap && (a[3] & MREMAP_FIXED)) {
			c.cause = MRL_CAUSE_REPLACED; /* whatever was at the target */
			mrl_itree_overlap(&ctx->va_index, a[4], a[4] + a[2], collect_cb, &c);
		}
		mrl_dev_after(ctx, go_after_dev, NULL); /* once the device let go */
		return;
	}
	case SYS_madvise:
	case SYS_process_madvise:
		if (q->n.data.nr == SYS_madvise) {
			mrl_itree_overlap(&ctx->va_index, a[0], a[0] + a[1], collect_cb, &c);
		} else {
			struct iovec iov[8];
			size_t niov = a[2] < ARRAY_SIZE(iov) ? a[2] : ARRAY_SIZE(iov);
			struct iovec l = {iov, niov * sizeof(iov[0])},
				     r = {(void *)(uintptr_t)a[1], niov * sizeof(iov[0])};
			if (process_vm_readv(getpid(), &l, 1, &r, 1, 0) != (ssize_t)l.iov_len)
				niov = 0;
			for (size_t i = 0; i < niov; i++)
				mrl_itree_overlap(&ctx->va_index, (uintptr_t)iov[i].iov_base,
						  (uintptr_t)iov[i].iov_base + iov[i].iov_len, collect_cb, &c);
		}
		if (c.vec.n)
			b = mrl_brk_begin_mrs(ctx, &mrl_watch_seccomp, &c.vec, MRL_CAUSE_MADVISED, tid,
					      q->seen);
		else
			free(c.vec.v);
		break;
	}
	mrl_lock(&mrl_sc.lock);
	if (s->req.state == REQ_HELD && !b)
		s->req.state = REQ_GO; /* nothing to pause */
	else if (b && (s->req.state == REQ_HELD || s->req.state == REQ_GO))
		s->req.brk = b; /* (GO: quiesced inside the begin already) */
	pthread_cond_broadcast(&mrl_sc.cv);
	mrl_unlock(&mrl_sc.lock);
}

static void sc_tick(struct mrl_ctx *ctx, uint64_t now)
{
	mrl_lock(&mrl_sc.lock);
	struct sc_ctx *s = mrl_sc_of(ctx);
	struct sc_req q = s ? s->req : (struct sc_req){0};
	if (s && q.state == REQ_PENDING)
		s->req.state = REQ_HELD;
	mrl_unlock(&mrl_sc.lock);
	if (!s)
		return;
	if (q.state == REQ_PENDING) {
		begin(ctx, s, &q);
	} else if (q.state == REQ_DONE) {
		/* the call has returned: it landed */
		struct mrl_brk *b = q.brk;
		mrl_lock(&mrl_sc.lock);
		s->req.brk = NULL;
		mrl_unlock(&mrl_sc.lock);
		if (b) {
			if (!b->file)
				mrl_memfd_fence_past_end(ctx, b, now);
			mrl_brk_finish(ctx, b);
		}
		set_state(ctx, REQ_NONE);
		mrl_sc_kick(); /* a call of this context may wait in the backlog */
	}
}

static uint64_t sc_next_timer(struct mrl_ctx *ctx)
{
	mrl_lock(&mrl_sc.lock);
	struct sc_ctx *s = mrl_sc_of(ctx);
	bool waiting = s && s->req.state == REQ_PENDING;
	mrl_unlock(&mrl_sc.lock);
	return waiting ? mrl_now_ns() + 1000000ull : UINT64_MAX;
}

/* Quiesced: the supervisor makes the call now. */
static void sc_let_land(struct mrl_ctx *ctx, struct mrl_brk *b, uint64_t now)
{
	(void)now;
	mrl_lock(&mrl_sc.lock);
	struct sc_ctx *s = mrl_sc_of(ctx);
	if (s && s->req.state == REQ_HELD && (!s->req.brk || s->req.brk == b)) {
		s->req.brk = b;
		s->req.state = REQ_GO;
		pthread_cond_broadcast(&mrl_sc.cv);
	}
	mrl_unlock(&mrl_sc.lock);
}

static void sc_brk_done(struct mrl_ctx *ctx, struct mrl_brk *b)
{
	mrl_lock(&mrl_sc.lock);
	struct sc_ctx *s = mrl_sc_of(ctx);
	if (s && s->req.brk == b) {
		s->req.brk = NULL;
		if (s->req.state == REQ_HELD)
			s->req.state = REQ_GO;
		pthread_cond_broadcast(&mrl_sc.cv);
	}
	mrl_unlock(&mrl_sc.lock);
}

static void sc_monitor_gone(struct mrl_ctx *ctx)
{
	mrl_lock(&mrl_sc.lock);
	struct sc_ctx *s = mrl_sc_of(ctx);
	if (s && s->req.state != REQ_NONE && s->req.state != REQ_CALLING)
		s->req.state = s->req.state == REQ_DONE ? REQ_NONE : REQ_GO;
	pthread_cond_broadcast(&mrl_sc.cv);
	mrl_unlock(&mrl_sc.lock);
	mrl_sc_kick();
}

/* Seen before they land: the owner's own calls, raw ones included. */
static unsigned sc_coverage(struct mrl_ctx *ctx, struct mrl_mr *mr, uint8_t *cov)
{
	mrl_lock(&mrl_sc.lock);
	bool on = mrl_sc_of(ctx) && mrl_sc.notify_fd >= 0 && mrl_sc.pid == getpid();
	mrl_unlock(&mrl_sc.lock);
	if (!on)
		return 0;
	mrl_cov_raise(cov, MRL_CHG_OWNER_MUNMAP, MRL_SEEN_BEFORE);
	mrl_cov_raise(cov, MRL_CHG_OWNER_MREMAP, MRL_SEEN_BEFORE);
	mrl_cov_raise(cov, MRL_CHG_OWNER_MADVISE, MRL_SEEN_BEFORE);
	mrl_cov_raise(cov, MRL_CHG_OWNER_MAP_FIXED, MRL_SEEN_BEFORE); /* and shmat(SHM_REMAP) */
	dev_t dev;
	ino_t ino;
	if ((mr->file && !mr->file->fan) || (!mr->file && mrl_memfd_ident(ctx, mr, &dev, &ino) == 0)) {
		mrl_cov_raise(cov, MRL_CHG_OWNER_TRUNCATE, MRL_SEEN_BEFORE);
		mrl_cov_raise(cov, MRL_CHG_OWNER_LAYOUT, MRL_SEEN_BEFORE);
	}
	return MRL_WATCH_SECCOMP;
}

const struct mrl_watcher_ops mrl_watch_seccomp = {
	.name = "seccomp",
	.bit = MRL_WATCH_SECCOMP,
	.start = sc_start,
	.stop = sc_stop,
	.tick = sc_tick,
	.next_timer = sc_next_timer,
	.let_land = sc_let_land,
	.brk_done = sc_brk_done,
	.monitor_gone = sc_monitor_gone,
	.mr_attach = sc_mr_attach,
	.mr_detach = sc_mr_detach,
	.coverage = sc_coverage,
};
