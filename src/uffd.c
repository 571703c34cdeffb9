/* The userfaultfd watcher: non-cooperative events for anonymous and shmem
 * MRs, unprivileged (UFFD_USER_MODE_ONLY). Ranges are registered in
 * write-protect mode and never write-protected, so no page fault ever comes
 * here: only the events. The kernel sends them for raw system calls too,
 * which the interposer cannot see:
 *   UNMAP (munmap), REMAP (mremap): after the change -> CHANGED, fence;
 *   REMOVE (madvise DONTNEED/REMOVE): before the zap, but the actor goes on
 *     as soon as the event is read, so nothing can be held: the MR moves to
 *     a new generation (and pinning devices are re-pinned) -> CHANGED.
 * The actor of an event waits until it is read, so the monitor reads them
 * before it takes any lock and never blocks in between. */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "mrl_int.h"

#define UFFD_BATCH 32

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

static int uffd_start(struct mrl_ctx *ctx)
{
	ctx->uffd = -1;
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
	if (fd < 0)
		return -errno;
	struct uffdio_api api = {
		.api = UFFD_API,
		.features = UFFD_FEATURE_EVENT_UNMAP | UFFD_FEATURE_EVENT_REMOVE |
			    UFFD_FEATURE_EVENT_REMAP | UFFD_FEATURE_PAGEFAULT_FLAG_WP,
	};
	if (ioctl(fd, UFFDIO_API, &api) < 0) {
		int err = errno; /* events unsupported */
		close(fd);
		return -err;
	}
	ctx->uffd_msgs = calloc(UFFD_BATCH, sizeof(*ctx->uffd_msgs));
	if (!ctx->uffd_msgs) {
		close(fd);
		return -ENOMEM;
	}
	ctx->uffd = fd;
	return 0;
}

static void uffd_stop(struct mrl_ctx *ctx)
{
	if (ctx->uffd >= 0)
		close(ctx->uffd);
	ctx->uffd = -1;
	free(ctx->uffd_msgs);
	ctx->uffd_msgs = NULL;
}

static void page_range(const struct mrl_mr *mr, uint64_t *a0, uint64_t *a1)
{
	uint64_t pg = (uint64_t)sysconf(_SC_PAGESIZE);
	*a0 = (uintptr_t)mr->addr & ~(pg - 1);
	*a1 = ((uintptr_t)mr->addr + mr->len + pg - 1) & ~(pg - 1);
}

/* ctx->lock held. Anonymous and shmem MRs only. */
static void uffd_mr_attach(struct mrl_ctx *ctx, struct mrl_mr *mr)
{
	mr->uffd = 0;
	if (ctx->uffd < 0 || mr->file || (mr->kind != MRL_KIND_ANON && mr->kind != MRL_KIND_SHMEM))
		return;
	uint64_t a0, a1;
	page_range(mr, &a0, &a1);
	struct uffdio_register reg = {.range = {.start = a0, .len = a1 - a0},
				      .mode = UFFDIO_REGISTER_MODE_WP};
	if (ioctl(ctx->uffd, UFFDIO_REGISTER, &reg) < 0) {
		/* e.g. EBUSY: another userfaultfd (another context) has it */
		mrl_log("userfaultfd register %p+%llu: %s", mr->addr, (unsigned long long)mr->len,
			strerror(errno));
		return;
	}
	mr->uffd = 1;
}

/* ctx->lock held, mr already out of the VA index. */
static void uffd_mr_detach(struct mrl_ctx *ctx, struct mrl_mr *mr)
{
	if (ctx->uffd < 0 || !mr->uffd)
		return;
	uint64_t a0, a1;
	page_range(mr, &a0, &a1);
	mr->uffd = 0;
	if (mrl_itree_first_overlap(&ctx->va_index, a0, a1))
		return; /* another MR still needs the pages watched */
	struct uffdio_range r = {.start = a0, .len = a1 - a0};
	ioctl(ctx->uffd, UFFDIO_UNREGISTER, &r); /* ENOMEM/EINVAL once unmapped: nothing to undo */
}

/* Read every pending event without any lock (the actors wait for this):
 * into the context's buffer, handled by uffd_drain under the lock. Only the
 * monitor thread reads and drains. */
static void uffd_read(struct mrl_ctx *ctx)
{
	ssize_t n = ctx->uffd >= 0 ? read(ctx->uffd, ctx->uffd_msgs, UFFD_BATCH * sizeof(*ctx->uffd_msgs)) : -1;
	ctx->uffd_nmsgs = n > 0 ? (int)(n / (ssize_t)sizeof(ctx->uffd_msgs[0])) : 0;
}

struct uffd_hit {
	struct mrl_ctx *ctx;
	int cause;
	uint64_t now;
};

static int uffd_cb(struct mrl_itree_node *node, void *p)
{
	struct uffd_hit *h = p;
	struct mrl_mr *mr = (struct mrl_mr *)node;
	if (!mr->uffd || (mr->state != MRL_STATE_ACTIVE && mr->state != MRL_STATE_PAUSED))
		return 0;
	if (mr->in_brk && h->cause == MRL_CAUSE_MADVISED)
		return 0; /* the interposer has it paused around the call */
	h->ctx->st.uffd_events++;
	/* MADVISED: same object, new pages (new generation, re-pinned where
	 * pinned); UNMAPPED, MOVED: fenced */
	mrl_mr_changed_after(h->ctx, mr, h->cause, 0, mr->len, h->now);
	return 0;
}

/* ctx->lock held. */
static void uffd_drain(struct mrl_ctx *ctx)
{
	const struct uffd_msg *msgs = ctx->uffd_msgs;
	int n = ctx->uffd_nmsgs;
	ctx->uffd_nmsgs = 0;
	for (int i = 0; i < n; i++) {
		const struct uffd_msg *m = &msgs[i];
		struct uffd_hit h = {.ctx = ctx, .now = mrl_now_ns()};
		uint64_t a, b;
		switch (m->event) {
		case UFFD_EVENT_UNMAP:
			h.cause = MRL_CAUSE_UNMAPPED;
			a = m->arg.remove.start;
			b = m->arg.remove.end;
			break;
		case UFFD_EVENT_REMOVE:
			h.cause = MRL_CAUSE_MADVISED;
			a = m->arg.remove.start;
			b = m->arg.remove.end;
			break;
		case UFFD_EVENT_REMAP:
			h.cause = MRL_CAUSE_MOVED;
			a = m->arg.remap.from;
			b = a + m->arg.remap.len;
			break;
		default:
			continue; /* no page faults are asked for */
		}
		if (b > a)
			mrl_itree_overlap(&ctx->va_index, a, b, uffd_cb, &h);
	}
}

static int uffd_poll_fd(struct mrl_ctx *ctx)
{
	return ctx->uffd;
}

/* munmap and mremap by any path, raw system calls included, after they land */
static unsigned uffd_coverage(struct mrl_ctx *ctx, struct mrl_mr *mr, uint8_t *cov)
{
	(void)ctx;
	if (!mr->uffd)
		return 0;
	mrl_cov_raise(cov, MRL_CHG_OWNER_MUNMAP, MRL_SEEN_AFTER);
	mrl_cov_raise(cov, MRL_CHG_OWNER_MREMAP, MRL_SEEN_AFTER);
	return MRL_WATCH_UFFD;
}

const struct mrl_watcher_ops mrl_watch_uffd = {
	.name = "userfaultfd",
	.bit = MRL_WATCH_UFFD,
	.start = uffd_start,
	.stop = uffd_stop,
	.poll_fd = uffd_poll_fd,
	.read = uffd_read,
	.drain = uffd_drain,
	.mr_attach = uffd_mr_attach,
	.mr_detach = uffd_mr_detach,
	.coverage = uffd_coverage,
};
