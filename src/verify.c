/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The verify watcher: compares each MR's current backing (mapping, object,
 * offset) with what was registered, on demand (mrl_verify) and every
 * opts.verify_ms in the monitor; catches what no other watcher saw (raw
 * system calls), after it landed. */
#include <errno.h>

#include "mrl_int.h"

/* ctx->lock held: fence what changed, return how many */
int mrl_verify_locked(struct mrl_ctx *ctx)
{
	int fenced = 0;
	uint64_t now = mrl_now_ns();
	for (uint32_t c = 0; c < ctx->ht.nchunks; c++)
		for (uint32_t i = 0; i < MRL_HT_CHUNK; i++) {
			struct mrl_mr *mr = ctx->ht.chunks[c][i].mr;
			if (!mr || (mr->state != MRL_STATE_ACTIVE && mr->state != MRL_STATE_PAUSED))
				continue;
			int cause = mrl_mr_backing_changed(ctx, mr);
			if (!cause)
				continue;
			/* seen after it landed: unmapped or replaced, so fenced */
			mrl_mr_changed_after(ctx, mr, cause, 0, mr->len, now);
			fenced += mr->state == MRL_STATE_FENCED;
		}
	return fenced;
}

MRL_EXPORT int mrl_verify(mrl_ctx *ctx, unsigned flags)
{
	if (!ctx)
		return mrl_err(EINVAL, "mrl_verify: NULL context");
	if (flags)
		return mrl_err(EINVAL, "mrl_verify: unknown flags %#x", flags);
	MRL_CHILD_CHECK(ctx, "mrl_verify");
	mrl_lock(&ctx->lock);
	int fenced = mrl_verify_locked(ctx);
	mrl_unlock(&ctx->lock);
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

static void verify_tick(struct mrl_ctx *ctx, uint64_t now)
{
	if (!ctx->verify_at || now < ctx->verify_at)
		return;
	mrl_verify_locked(ctx);
	ctx->verify_at = now + (uint64_t)ctx->opts.verify_ms * 1000000ull;
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
	.tick = verify_tick,
	.coverage = verify_coverage,
};
