/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The userfaultfd watcher: non-cooperative events for anonymous and shmem
 * MRs, unprivileged (UFFD_USER_MODE_ONLY). Ranges are registered in
 * write-protect mode and never write-protected, so no page fault ever comes
 * here: only the events. The kernel sends them for raw system calls too,
 * which the interposer cannot see:
 *   UNMAP (munmap), REMAP (mremap): after the change -> CHANGED, fence;
 *   REMOVE (madvise DONTNEED/REMOVE): before the zap, but the actor goes on
 *     as soon as the event is read, so nothing can be held: the MR moves to
 *     a new generation (and pinning devices are re-pinned) -> CHANGED.
 * The actor of an event waits until it is read. The monitor reads them
 * before it takes any lock, so the change is handled (an MR fenced, its
 * peers told) before the actor goes on, as before a lease break lands. But
 * a munmap made on the monitor itself (a provider freeing a buffer, an
 * application signal handler run there) would wait for the monitor for
 * ever. So a reader thread of this watcher's own stands by: when events
 * stay unread while the monitor does not come round (UFFD_STUCK_MS), it
 * reads them into a queue the monitor drains later. It blocks every signal,
 * takes only its queue's lock (never held across a call that could unmap)
 * and allocates nothing, so it can never be the actor it waits for.
 * An event is handled after its actor went on: by then the address may be
 * mapped again and a new MR registered there. Each event carries the count
 * of registrations when it was read, each MR its own place in that count:
 * an event reaches only the MRs registered before it was read (and a
 * registration first takes in what is pending, stamped before it). */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "mrl_int.h"

#define UFFD_BATCH 32
#define UFFD_RING 256
/* events unread this long with no turn of the monitor: it may be the actor */
#define UFFD_STUCK_MS 100
/* ranges kept registered with no MR (see struct uffd_rd) */
#define UFFD_KEEP 32

/* The stand-by reader and the queue it fills. ctx->uffd_msgs points at
 * out, which the monitor hands to uffd_drain. */
enum { OV_UNMAP, OV_REMOVE, OV_REMAP, OV_N };
struct uffd_rd {
	pthread_t thr;
	struct mrl_ctx *ctx;
	int ready_fd;            /* eventfd: messages queued */
	int stop_fd;             /* eventfd: the reader leaves */
	int ep_fd;               /* what the monitor polls: the userfaultfd and ready_fd */
	pthread_mutex_t lock;    /* q, n, ov_*, turns */
	/* a read of the userfaultfd with its stamp, against a registration's
	 * count: the read lets an unmapping thread go, which may map the
	 * address again and register there before a stamp taken after the
	 * read without this lock (ctx->lock -> take; never held over a wait:
	 * the fd is non-blocking) */
	pthread_mutex_t take;
	pthread_cond_t turned;   /* the monitor took its turn */
	uint64_t turns;
	uint64_t rescued;        /* events the reader read for a monitor that did not come */
	int n;
	/* a full queue is never waited on (the monitor might be the actor):
	 * later events are merged per kind into one range covering them all */
	bool ov[OV_N];
	uint64_t ov_lo[OV_N], ov_hi[OV_N], ov_seq[OV_N];
	uint64_t overflowed;
	/* Registrations of MRs with the userfaultfd, counted (uffd_mr_attach,
	 * ctx->lock). An event is stamped with the count when it was read: it
	 * was made before then, so it is not about an MR registered after (a
	 * new MR at the address of an unmapped one, registered once the
	 * munmap returned but before the event was handled). */
	_Atomic uint64_t attach_seq;
	/* Anonymous ranges left registered when their last MR went (under
	 * take), oldest first: registering one again costs no UFFDIO_REGISTER,
	 * letting it go no UFFDIO_UNREGISTER (each splits or merges the
	 * mapping under the kernel's mmap lock). An entry is a range known to
	 * be registered still: an UNMAP or REMAP event over it drops it as it
	 * is read, as does this watcher's own UNREGISTER. Its actor goes on
	 * only once it is read, but the kernel posts it after the unmap: a
	 * thread may map the address again and register it in between, find
	 * the stale entry and skip the registration; the event, read after
	 * that registration, then fences that MR (stamps: see above), as it
	 * would a registered one, so nothing stays unwatched. Shared memory
	 * is not kept: shmdt unmaps with no event. The cost: the owner's later
	 * munmap of a kept range waits until the monitor reads its event. */
	int nkept;
	uint64_t kept_hits;      /* registrations that found their range kept */
	/* UNMAP and REMAP events read so far: a range is kept when its MR goes
	 * only if none was read since the MR's registration (its range may be
	 * gone already; an unmap whose event is not out yet drops the entry
	 * when it is read, and fences what was registered there meanwhile) */
	uint64_t unmaps;
	struct { uint64_t lo, hi, vma_lo, vma_hi, since; } kept[UFFD_KEEP];
	struct uffd_msg q[UFFD_RING];
	uint64_t q_seq[UFFD_RING];
	struct uffd_msg out[UFFD_RING + OV_N + UFFD_BATCH];
	uint64_t out_seq[UFFD_RING + OV_N + UFFD_BATCH];
};

static struct uffd_rd *rd_of(struct mrl_ctx *ctx)
{
	return (struct uffd_rd *)((char *)ctx->uffd_msgs - offsetof(struct uffd_rd, out));
}

/* rd->lock held: one event read when the registrations were seq */
static void rd_push(struct uffd_rd *rd, const struct uffd_msg *m, uint64_t seq)
{
	if (rd->n < UFFD_RING) {
		rd->q_seq[rd->n] = seq;
		rd->q[rd->n++] = *m;
		return;
	}
	int k;
	uint64_t a, b;
	switch (m->event) {
	case UFFD_EVENT_UNMAP:
	case UFFD_EVENT_REMOVE:
		k = m->event == UFFD_EVENT_UNMAP ? OV_UNMAP : OV_REMOVE;
		a = m->arg.remove.start;
		b = m->arg.remove.end;
		break;
	case UFFD_EVENT_REMAP:
		k = OV_REMAP;
		a = m->arg.remap.from;
		b = a + m->arg.remap.len;
		break;
	default:
		return;
	}
	rd->overflowed++;
	if (!rd->ov[k]) {
		rd->ov[k] = true;
		rd->ov_lo[k] = a;
		rd->ov_hi[k] = b;
	} else {
		rd->ov_lo[k] = a < rd->ov_lo[k] ? a : rd->ov_lo[k];
		rd->ov_hi[k] = b > rd->ov_hi[k] ? b : rd->ov_hi[k];
	}
	rd->ov_seq[k] = seq; /* the latest: what was merged reaches every MR it may be about */
}

/* rd->take held: forget the kept ranges overlapping [a, b) */
static void kept_drop(struct uffd_rd *rd, uint64_t a, uint64_t b)
{
	int j = 0;
	for (int i = 0; i < rd->nkept; i++)
		if (rd->kept[i].hi <= a || b <= rd->kept[i].lo)
			rd->kept[j++] = rd->kept[i];
	rd->nkept = j;
}

/* rd->take held: events just read; what they unmapped or moved is no
 * longer registered */
static void kept_seen(struct uffd_rd *rd, const struct uffd_msg *m, int n)
{
	for (int i = 0; i < n; i++) {
		if (m[i].event == UFFD_EVENT_UNMAP || m[i].event == UFFD_EVENT_REMAP)
			rd->unmaps++;
		if (m[i].event == UFFD_EVENT_UNMAP)
			kept_drop(rd, m[i].arg.remove.start, m[i].arg.remove.end);
		else if (m[i].event == UFFD_EVENT_REMAP)
			kept_drop(rd, m[i].arg.remap.from, m[i].arg.remap.from + m[i].arg.remap.len);
	}
}

/* rd->take held, no lock of the context needed: the pending events into
 * the queue, stamped; how many. Never blocks (the fd is non-blocking). */
static int rd_take_locked(struct uffd_rd *rd, int uffd)
{
	struct uffd_msg batch[UFFD_BATCH];
	int total = 0;
	for (;;) {
		ssize_t r = read(uffd, batch, sizeof(batch));
		if (r <= 0)
			break;
		/* after the read: every event in it was made before this count */
		uint64_t seq = atomic_load(&rd->attach_seq);
		int n = (int)(r / (ssize_t)sizeof(batch[0]));
		kept_seen(rd, batch, n);
		mrl_lock(&rd->lock);
		for (int i = 0; i < n; i++)
			rd_push(rd, &batch[i], seq);
		mrl_unlock(&rd->lock);
		total += n;
		if (n < UFFD_BATCH)
			break;
	}
	if (total) {
		uint64_t one = 1;
		if (write(rd->ready_fd, &one, sizeof(one)) < 0) {
		}
	}
	return total;
}

static int rd_take(struct uffd_rd *rd, int uffd)
{
	mrl_lock(&rd->take);
	int n = rd_take_locked(rd, uffd);
	mrl_unlock(&rd->take);
	return n;
}

static void *rd_main(void *arg)
{
	struct uffd_rd *rd = arg;
	int uffd = rd->ctx->uffd;
	for (;;) {
		struct pollfd pfd[2] = {{.fd = uffd, .events = POLLIN}, {.fd = rd->stop_fd, .events = POLLIN}};
		if (poll(pfd, 2, -1) < 0)
			continue;
		if (pfd[1].revents)
			break;
		/* give the monitor its chance to read them itself */
		struct timespec until;
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_nsec += UFFD_STUCK_MS * 1000000L;
		until.tv_sec += until.tv_nsec / 1000000000L;
		until.tv_nsec %= 1000000000L;
		mrl_lock(&rd->lock);
		uint64_t seen = rd->turns;
		int w = 0;
		while (rd->turns == seen && w != ETIMEDOUT)
			w = pthread_cond_timedwait(&rd->turned, &rd->lock, &until);
		bool came = rd->turns != seen;
		mrl_unlock(&rd->lock);
		if (came)
			continue;
		int n = rd_take(rd, uffd);
		mrl_lock(&rd->lock);
		rd->rescued += (uint64_t)n;
		mrl_unlock(&rd->lock);
	}
	return NULL;
}

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
	/* its own pages, not the heap: a context must not move malloc's top */
	struct uffd_rd *rd = mmap(NULL, sizeof(*rd), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (rd == MAP_FAILED) {
		close(fd);
		return -ENOMEM;
	}
	rd->ctx = ctx;
	rd->ready_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	rd->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	rd->ep_fd = epoll_create1(EPOLL_CLOEXEC);
	pthread_mutex_init(&rd->lock, NULL);
	pthread_mutex_init(&rd->take, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&rd->turned, &ca);
	pthread_condattr_destroy(&ca);
	int err = rd->ready_fd < 0 || rd->stop_fd < 0 || rd->ep_fd < 0 ? errno : 0;
	struct epoll_event e1 = {.events = EPOLLIN, .data.fd = fd}, e2 = {.events = EPOLLIN, .data.fd = rd->ready_fd};
	if (!err && (epoll_ctl(rd->ep_fd, EPOLL_CTL_ADD, fd, &e1) || epoll_ctl(rd->ep_fd, EPOLL_CTL_ADD, rd->ready_fd, &e2)))
		err = errno;
	ctx->uffd = fd;
	ctx->uffd_msgs = rd->out;
	if (!err) {
		/* no application signal handler may run on the reader */
		sigset_t all, old;
		sigfillset(&all);
		pthread_sigmask(SIG_SETMASK, &all, &old);
		err = pthread_create(&rd->thr, NULL, rd_main, rd);
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		if (!err)
			pthread_setname_np(rd->thr, "mrl-uffd");
	}
	if (err) {
		if (rd->ready_fd >= 0)
			close(rd->ready_fd);
		if (rd->stop_fd >= 0)
			close(rd->stop_fd);
		if (rd->ep_fd >= 0)
			close(rd->ep_fd);
		pthread_mutex_destroy(&rd->lock);
		pthread_mutex_destroy(&rd->take);
		pthread_cond_destroy(&rd->turned);
		syscall(SYS_munmap, rd, sizeof(*rd));
		ctx->uffd_msgs = NULL;
		ctx->uffd = -1;
		close(fd);
		return -err;
	}
	return 0;
}

static void uffd_stop(struct mrl_ctx *ctx)
{
	if (ctx->uffd_msgs) {
		struct uffd_rd *rd = rd_of(ctx);
		uint64_t one = 1;
		if (write(rd->stop_fd, &one, sizeof(one)) < 0) {
		}
		pthread_join(rd->thr, NULL);
		if (rd->rescued)
			mrl_log("userfaultfd: %llu events read by the stand-by reader: the monitor did not come round",
				(unsigned long long)rd->rescued);
		if (rd->kept_hits)
			mrl_log("userfaultfd: %llu registrations found their range registered still",
				(unsigned long long)rd->kept_hits);
		if (rd->overflowed)
			mrl_log("userfaultfd: %llu events arrived while the queue was full, merged per kind",
				(unsigned long long)rd->overflowed);
		close(rd->ready_fd);
		close(rd->stop_fd);
		close(rd->ep_fd);
		pthread_mutex_destroy(&rd->lock);
		pthread_mutex_destroy(&rd->take);
		pthread_cond_destroy(&rd->turned);
		syscall(SYS_munmap, rd, sizeof(*rd)); /* raw: nothing of the application's */
	}
	/* closing it lets every actor still waiting in the kernel go */
	if (ctx->uffd >= 0)
		close(ctx->uffd);
	ctx->uffd = -1;
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
	mr->uffd_since = 0;
	if (ctx->uffd < 0 || mr->file || (mr->kind != MRL_KIND_ANON && mr->kind != MRL_KIND_SHMEM))
		return;
	uint64_t a0, a1;
	page_range(mr, &a0, &a1);
	struct uffdio_register reg = {.range = {.start = a0, .len = a1 - a0},
				      .mode = UFFDIO_REGISTER_MODE_WP};
	/* what is pending was made before this MR: stamped so before it counts
	 * (and what it unmapped is no longer kept) */
	struct uffd_rd *rd = ctx->uffd_msgs ? rd_of(ctx) : NULL;
	if (rd) {
		mrl_lock(&rd->take);
		rd_take_locked(rd, ctx->uffd);
		for (int i = 0; i < rd->nkept; i++)
			if (rd->kept[i].lo <= a0 && a1 <= rd->kept[i].hi) {
				mr->uffd = 1; /* registered still: the MR takes it over */
				mr->uffd_since = rd->kept[i].since;
				/* and the mapping it lay in before this watcher split
				 * it (mr.c's split_is_ours: the split edges are ours) */
				if (rd->kept[i].vma_lo < mr->vma_lo)
					mr->vma_lo = rd->kept[i].vma_lo;
				if (rd->kept[i].vma_hi > mr->vma_hi)
					mr->vma_hi = rd->kept[i].vma_hi;
				memmove(&rd->kept[i], &rd->kept[i + 1],
					(size_t)(rd->nkept - i - 1) * sizeof(rd->kept[0]));
				rd->nkept--;
				break;
			}
	}
	if (mr->uffd) {
		rd->kept_hits++;
	} else if (ioctl(ctx->uffd, UFFDIO_REGISTER, &reg) < 0) {
		/* e.g. EBUSY: another userfaultfd (another context) has it */
		mrl_log("userfaultfd register %p+%llu: %s", mr->addr, (unsigned long long)mr->len,
			strerror(errno));
	} else {
		mr->uffd = 1;
		ctx->vma_known = NULL; /* the mapping may be split at the range's edges now */
	}
	if (rd && mr->uffd) {
		mr->uffd_unmaps = rd->unmaps;
		mr->uffd_seq = atomic_fetch_add(&rd->attach_seq, 1) + 1;
		if (!mr->uffd_since) /* registered just now */
			mr->uffd_since = mr->uffd_seq;
	}
	if (rd)
		mrl_unlock(&rd->take);
}

/* ctx->lock held, rd->take held: [a0, a1) registered, not kept: let it go */
static void uffd_unregister(struct mrl_ctx *ctx, struct uffd_rd *rd, uint64_t a0, uint64_t a1)
{
	struct uffdio_range r = {.start = a0, .len = a1 - a0};
	if (rd)
		kept_drop(rd, a0, a1);
	ioctl(ctx->uffd, UFFDIO_UNREGISTER, &r); /* ENOMEM/EINVAL once unmapped: nothing to undo */
}

/* ctx->lock held, mr already out of the VA index. An anonymous range is
 * kept registered (see struct uffd_rd), the oldest kept one let go when
 * there are too many. */
static void uffd_mr_detach(struct mrl_ctx *ctx, struct mrl_mr *mr)
{
	if (ctx->uffd < 0 || !mr->uffd)
		return;
	uint64_t a0, a1;
	page_range(mr, &a0, &a1);
	mr->uffd = 0;
	if (mrl_itree_first_overlap(&ctx->va_index, a0, a1))
		return; /* another MR still needs the pages watched */
	struct uffd_rd *rd = ctx->uffd_msgs ? rd_of(ctx) : NULL;
	/* (an event not read yet drops the entry when it is: no read here) */
	if (rd)
		mrl_lock(&rd->take);
	if (!rd || mr->kind != MRL_KIND_ANON || rd->unmaps != mr->uffd_unmaps) {
		uffd_unregister(ctx, rd, a0, a1);
	} else {
		if (rd->nkept == UFFD_KEEP) {
			uint64_t lo = rd->kept[0].lo, hi = rd->kept[0].hi;
			memmove(&rd->kept[0], &rd->kept[1], (UFFD_KEEP - 1) * sizeof(rd->kept[0]));
			rd->nkept--;
			if (!mrl_itree_first_overlap(&ctx->va_index, lo, hi))
				uffd_unregister(ctx, rd, lo, hi);
		}
		kept_drop(rd, a0, a1); /* (one entry per range) */
		rd->kept[rd->nkept].lo = a0;
		rd->kept[rd->nkept].hi = a1;
		rd->kept[rd->nkept].vma_lo = mr->vma_lo;
		rd->kept[rd->nkept].vma_hi = mr->vma_hi;
		rd->kept[rd->nkept].since = mr->uffd_since;
		rd->nkept++;
	}
	if (rd)
		mrl_unlock(&rd->take);
}

uint64_t mrl_uffd_seq(struct mrl_ctx *ctx)
{
	return ctx->uffd_msgs ? atomic_load(&rd_of(ctx)->attach_seq) : 0;
}

/* ctx->lock held: is the boundary between two anonymous mappings at `at'
 * the edge of a range kept registered, inside the mappings it lay in when
 * its MR was registered (a split of this watcher's own, mr.c)? */
bool mrl_uffd_kept_split(struct mrl_ctx *ctx, uint64_t at)
{
	if (!ctx->uffd_msgs)
		return false;
	struct uffd_rd *rd = rd_of(ctx);
	bool ours = false;
	mrl_lock(&rd->take);
	for (int i = 0; i < rd->nkept && !ours; i++)
		ours = (rd->kept[i].lo == at || rd->kept[i].hi == at) && rd->kept[i].vma_lo < at &&
		       at < rd->kept[i].vma_hi;
	mrl_unlock(&rd->take);
	return ours;
}

/* The monitor, no lock of the context held: what the stand-by reader
 * queued, then every pending event (the actors wait for this), into
 * ctx->uffd_msgs, handled by uffd_drain under the lock. */
static void uffd_read(struct mrl_ctx *ctx)
{
	ctx->uffd_nmsgs = 0;
	if (!ctx->uffd_msgs)
		return;
	struct uffd_rd *rd = rd_of(ctx);
	uint64_t v;
	if (read(rd->ready_fd, &v, sizeof(v)) < 0) {
	}
	static const uint8_t ev[OV_N] = {[OV_UNMAP] = UFFD_EVENT_UNMAP, [OV_REMOVE] = UFFD_EVENT_REMOVE,
					 [OV_REMAP] = UFFD_EVENT_REMAP};
	mrl_lock(&rd->lock);
	rd->turns++;
	pthread_cond_signal(&rd->turned);
	int n = rd->n;
	memcpy(rd->out, rd->q, (size_t)n * sizeof(rd->q[0]));
	memcpy(rd->out_seq, rd->q_seq, (size_t)n * sizeof(rd->q_seq[0]));
	rd->n = 0;
	for (int k = 0; k < OV_N; k++) {
		if (!rd->ov[k])
			continue;
		rd->out_seq[n] = rd->ov_seq[k];
		struct uffd_msg *m = &rd->out[n++];
		memset(m, 0, sizeof(*m));
		m->event = ev[k];
		if (k == OV_REMAP) {
			m->arg.remap.from = rd->ov_lo[k];
			m->arg.remap.len = rd->ov_hi[k] - rd->ov_lo[k];
		} else {
			m->arg.remove.start = rd->ov_lo[k];
			m->arg.remove.end = rd->ov_hi[k];
		}
		rd->ov[k] = false;
	}
	mrl_unlock(&rd->lock);
	mrl_lock(&rd->take);
	ssize_t r = read(ctx->uffd, rd->out + n, UFFD_BATCH * sizeof(rd->out[0]));
	if (r > 0) {
		uint64_t seq = atomic_load(&rd->attach_seq); /* after the read */
		kept_seen(rd, rd->out + n, (int)(r / (ssize_t)sizeof(rd->out[0])));
		for (int i = 0; i < (int)(r / (ssize_t)sizeof(rd->out[0])); i++)
			rd->out_seq[n++] = seq;
	}
	mrl_unlock(&rd->take);
	ctx->uffd_nmsgs = n;
}

struct uffd_hit {
	struct mrl_ctx *ctx;
	int cause;
	uint64_t now;
	uint64_t seq;      /* the registrations when the event was read */
};

static int uffd_cb(struct mrl_itree_node *node, void *p)
{
	struct uffd_hit *h = p;
	struct mrl_mr *mr = (struct mrl_mr *)node;
	if (!mr->uffd || (mr->state != MRL_STATE_ACTIVE && mr->state != MRL_STATE_PAUSED))
		return 0;
	if (mr->uffd_seq > h->seq)
		return 0; /* registered after the event was made: not about it */
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
		struct uffd_hit h = {.ctx = ctx, .now = mrl_now_ns(), .seq = rd_of(ctx)->out_seq[i]};
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
	return ctx->uffd_msgs ? rd_of(ctx)->ep_fd : -1;
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
