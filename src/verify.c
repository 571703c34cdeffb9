/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The verify watcher: compares each MR's current backing (mapping, object,
 * offset) with what was registered, on demand (mrl_verify) and every
 * opts.verify_ms in the monitor; catches what no other watcher saw (raw
 * system calls), after it landed. /proc/self/maps is read with no lock held
 * (the kernel's mmap lock is behind it, which a faulting or unmapping
 * thread may hold while it waits for the monitor); ctx->lock is taken only
 * to copy the MRs and to act on what was read. */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "mrl_int.h"

/* Test hook: called with no lock held just before each pass reads the
 * address space (t_verify_unlocked holds it there). NULL in use. */
_Atomic mrl_test_hook mrl_verify_read_hook;

/* One MR as copied under the lock: a reference, what it was registered
 * over, and the stamp (generation, valid length) its reading is checked
 * against when acted on. */
struct vcheck {
	struct mrl_mr *mr;
	struct mrl_backing b;
	uint32_t gen;
	int cause;
	bool again;
};

static bool verified(const struct mrl_mr *mr)
{
	return (mr->state == MRL_STATE_ACTIVE || mr->state == MRL_STATE_PAUSED) && !mr->registering;
}

static void copy_mr(struct vcheck *c, struct mrl_mr *mr)
{
	c->b = (struct mrl_backing){
		.addr = (uintptr_t)mr->addr, .len = mr->valid_len, .off = mr->fnode.start,
		.dev = mr->file ? mr->file->dev : 0, .ino = mr->file ? mr->file->ino : 0,
		.kind = mr->kind, .file = mr->file != NULL,
	};
	c->gen = mr->gen;
	c->again = false;
}

/* ctx->lock held: every MR verify looks at, a reference each (*n of them) */
static struct vcheck *collect(struct mrl_ctx *ctx, size_t *n)
{
	size_t cap = 0;
	struct vcheck *v = NULL;
	*n = 0;
	for (uint32_t c = 0; c < ctx->ht.nchunks; c++)
		for (uint32_t i = 0; i < MRL_HT_CHUNK; i++) {
			struct mrl_mr *mr = ctx->ht.chunks[c][i].mr;
			if (!mr || !verified(mr))
				continue;
			if (*n == cap) {
				size_t ncap = cap ? cap * 2 : 64;
				struct vcheck *nv = realloc(v, ncap * sizeof(*v));
				if (!nv)
					return v; /* the rest waits for the next pass */
				v = nv;
				cap = ncap;
			}
			mr->refs++;
			v[*n].mr = mr;
			copy_mr(&v[(*n)++], mr);
		}
	return v;
}

/* A pass: copy under the lock, read with none, act under the lock on what
 * still holds. An MR whose generation or valid length moved while its
 * mapping was read is read again (a restore or a shrink in between changes
 * what it should map), so a change is acted on against the MR it was read
 * for, and none is dropped. Returns how many MRs it fenced. */
static int verify_pass(struct mrl_ctx *ctx)
{
	size_t n;
	int fenced = 0, maps_fd = -1;
	mrl_lock(&ctx->lock);
	struct vcheck *v = collect(ctx, &n);
	mrl_unlock(&ctx->lock);
	for (int round = 0; n; round++) {
		mrl_test_hook hook = atomic_load(&mrl_verify_read_hook);
		if (hook)
			hook(ctx);
		for (size_t i = 0; i < n; i++)
			if (!round || v[i].again)
				v[i].cause = mrl_backing_changed(&maps_fd, &v[i].b);
		uint64_t now = mrl_now_ns();
		size_t again = 0;
		mrl_lock(&ctx->lock);
		for (size_t i = 0; i < n; i++) {
			struct mrl_mr *mr = v[i].mr;
			if (round && !v[i].again)
				continue;
			v[i].again = false;
			if (!verified(mr))
				continue; /* fenced, deregistered meanwhile: not ours to act on */
			if (mr->gen != v[i].gen || mr->valid_len != v[i].b.len) {
				copy_mr(&v[i], mr);
				v[i].again = round < 8; /* else: the next pass */
				again += v[i].again;
				continue;
			}
			if (!v[i].cause)
				continue;
			/* seen after it landed: unmapped or replaced, so fenced */
			mrl_mr_changed_after(ctx, mr, v[i].cause, 0, mr->len, now);
			fenced += mr->state == MRL_STATE_FENCED;
		}
		if (!again) {
			for (size_t i = 0; i < n; i++)
				mrl_mr_put(ctx, v[i].mr);
			n = 0;
		}
		mrl_unlock(&ctx->lock);
	}
	free(v);
	if (maps_fd >= 0)
		close(maps_fd);
	return fenced;
}

MRL_EXPORT int mrl_verify(mrl_ctx *ctx, unsigned flags)
{
	if (!ctx)
		return mrl_err(EINVAL, "mrl_verify: NULL context");
	if (flags)
		return mrl_err(EINVAL, "mrl_verify: unknown flags %#x", flags);
	MRL_CHILD_CHECK(ctx, "mrl_verify");
	int fenced = verify_pass(ctx);
	mrl_flush_outbox(ctx);
	return fenced;
}

static int verify_start(struct mrl_ctx *ctx)
{
	if (ctx->opts.verify_ms)
		ctx->verify_at = mrl_now_ns() + (uint64_t)ctx->opts.verify_ms * 1000000ull;
	return 0;
}

static uint64_t verify_next_timer(struct mrl_ctx *ctx)
{
	return ctx->verify_at ? ctx->verify_at : UINT64_MAX;
}

/* the periodic pass, in the monitor with no lock held (verify_at is the
 * monitor's alone) */
static void verify_look(struct mrl_ctx *ctx, uint64_t now)
{
	if (!ctx->verify_at || now < ctx->verify_at)
		return;
	verify_pass(ctx);
	ctx->verify_at = mrl_now_ns() + (uint64_t)ctx->opts.verify_ms * 1000000ull;
}

/* A replaced or unmapped range is found by the next verify, after it landed;
 * madvise keeps the object, which verify cannot tell. */
static unsigned verify_coverage(struct mrl_ctx *ctx, struct mrl_mr *mr, uint8_t *cov)
{
	(void)ctx;
	(void)mr;
	mrl_cov_raise(cov, MRL_CHG_OWNER_MUNMAP, MRL_SEEN_AFTER);
	mrl_cov_raise(cov, MRL_CHG_OWNER_MREMAP, MRL_SEEN_AFTER);
	mrl_cov_raise(cov, MRL_CHG_OWNER_MAP_FIXED, MRL_SEEN_AFTER);
	return MRL_WATCH_VERIFY;
}

const struct mrl_watcher_ops mrl_watch_verify = {
	.name = "verify",
	.bit = MRL_WATCH_VERIFY,
	.start = verify_start,
	.next_timer = verify_next_timer,
	.look = verify_look,
	.coverage = verify_coverage,
};
