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

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

int mrl_uffd_init(struct mrl_ctx *ctx)
{
	ctx->uffd = -1;
	if (!ctx->leases)
		return 0;
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
	if (fd < 0) {
		mrl_log("userfaultfd unavailable: %s", strerror(errno));
		return 0;
	}
	struct uffdio_api api = {
		.api = UFFD_API,
		.features = UFFD_FEATURE_EVENT_UNMAP | UFFD_FEATURE_EVENT_REMOVE |
			    UFFD_FEATURE_EVENT_REMAP | UFFD_FEATURE_PAGEFAULT_FLAG_WP,
	};
	if (ioctl(fd, UFFDIO_API, &api) < 0) {
		mrl_log("userfaultfd events unsupported: %s", strerror(errno));
		close(fd);
		return 0;
	}
	ctx->uffd = fd;
	ctx->watchers |= MRL_WATCH_UFFD;
	return 0;
}

void mrl_uffd_fini(struct mrl_ctx *ctx)
{
	if (ctx->uffd >= 0)
		close(ctx->uffd);
	ctx->uffd = -1;
}

static void page_range(const struct mrl_mr *mr, uint64_t *a0, uint64_t *a1)
{
	uint64_t pg = (uint64_t)sysconf(_SC_PAGESIZE);
	*a0 = (uintptr_t)mr->addr & ~(pg - 1);
	*a1 = ((uintptr_t)mr->addr + mr->len + pg - 1) & ~(pg - 1);
}

/* ctx->lock held. Anonymous and shmem MRs only; false if not watched. */
bool mrl_uffd_watch(struct mrl_ctx *ctx, struct mrl_mr *mr)
{
	if (ctx->uffd < 0 || mr->file || (mr->kind != MRL_KIND_ANON && mr->kind != MRL_KIND_SHMEM))
		return false;
	uint64_t a0, a1;
	page_range(mr, &a0, &a1);
	struct uffdio_register reg = {.range = {.start = a0, .len = a1 - a0},
				      .mode = UFFDIO_REGISTER_MODE_WP};
	if (ioctl(ctx->uffd, UFFDIO_REGISTER, &reg) < 0) {
		/* e.g. EBUSY: another userfaultfd (another context) has it */
		mrl_log("userfaultfd register %p+%llu: %s", mr->addr, (unsigned long long)mr->len,
			strerror(errno));
		return false;
	}
	return true;
}

/* ctx->lock held, mr already out of the VA index. */
void mrl_uffd_unwatch(struct mrl_ctx *ctx, struct mrl_mr *mr)
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

/* Read every pending event without any lock (the actors wait for this). */
int mrl_uffd_read(struct mrl_ctx *ctx, struct uffd_msg *msgs, int max)
{
	ssize_t n = ctx->uffd >= 0 ? read(ctx->uffd, msgs, (size_t)max * sizeof(*msgs)) : -1;
	return n > 0 ? (int)(n / (ssize_t)sizeof(*msgs)) : 0;
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
	mrl_post_event(h->ctx, mr, MRL_EVENT_CHANGED, (uint32_t)h->cause, 0, mr->len, 0, 0, h->now);
	if (h->cause == MRL_CAUSE_MADVISED) {
		/* same object, new pages: new generation, re-pin where pinned */
		if (mr->state != MRL_STATE_ACTIVE)
			return 0;
		mrl_mr_repin_locked(h->ctx, mr, h->now);
		if (!h->ctx->rops->restore)
			mr->gen++;
		mr->cause = MRL_CAUSE_MADVISED;
		mrl_send_state(h->ctx, mr, NULL);
		return 0;
	}
	mr->state = MRL_STATE_ACTIVE;
	mr->in_brk = 0;
	mrl_mr_fence_locked(h->ctx, mr, h->cause, 0, mr->len, 0, h->now);
	return 0;
}

/* ctx->lock held. */
void mrl_uffd_handle(struct mrl_ctx *ctx, const struct uffd_msg *msgs, int n)
{
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
