/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The fcntl-lease watcher: a lease on the library's own fd of each backing
 * file; another opener (or a truncate by path) breaks it, and the signal
 * begins a whole-file break. The change lands once the lease is let go; it
 * has landed when the breaker closes the file (inotify) and the lease can be
 * taken again. Every function here runs with ctx->lock held. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "mrl_int.h"

static void lease_events(struct mrl_ctx *ctx, struct mrl_file *f, uint32_t type)
{
	struct mrl_mr_vec vec;
	mrl_file_mrs(f, &vec);
	uint64_t now = mrl_now_ns();
	for (size_t i = 0; i < vec.n; i++)
		mrl_post_event(ctx, vec.v[i], type, MRL_CAUSE_NONE, 0, vec.v[i]->len, 0, 0, now);
	free(vec.v);
}

void mrl_lease_take(struct mrl_ctx *ctx, struct mrl_file *f)
{
	int was = f->lease;
	if (f->fan) {
		/* fanotify sees each change itself, by range: no lease needed */
		f->lease = LEASE_OFF;
		f->lease_errno = 0;
		return;
	}
	if (!ctx->leases || f->fd < 0) {
		f->lease = LEASE_OFF;
		f->lease_errno = ctx->leases ? EBADF : ENOTSUP;
		return;
	}
	struct f_owner_ex owner = {.type = F_OWNER_TID, .pid = ctx->monitor_tid};
	int type = (fcntl(f->fd, F_GETFL) & O_ACCMODE) == O_RDONLY ? F_RDLCK : F_WRLCK;
	/* F_SETSIG is forgotten after every F_UNLCK: set it each time. */
	if (fcntl(f->fd, F_SETOWN_EX, &owner) < 0 || fcntl(f->fd, F_SETSIG, ctx->opts.signo) < 0 ||
	    fcntl(f->fd, F_SETLEASE, type) < 0) {
		f->lease_errno = errno;
		f->lease = errno == EAGAIN || errno == EBUSY ? LEASE_BLOCKED : LEASE_OFF;
		if (f->lease == LEASE_OFF)
			mrl_log("lease on %s impossible: %s", f->path, strerror(errno));
		if (was == LEASE_HELD || was == LEASE_RELEASED)
			lease_events(ctx, f, MRL_EVENT_LEASE_LOST);
		return;
	}
	f->lease = LEASE_HELD;
	f->lease_errno = 0;
	f->relock_at = 0;
	mrl_guard_lease_arm(ctx, f, type);
	ctx->st.lease_retakes += was == LEASE_RELEASED || was == LEASE_BLOCKED;
	if (was == LEASE_BLOCKED)
		lease_events(ctx, f, MRL_EVENT_LEASE_HELD);
}

void mrl_lease_drop(struct mrl_ctx *ctx, struct mrl_file *f)
{
	if (f->fd >= 0 && (f->lease == LEASE_HELD || f->lease == LEASE_BREAKING)) {
		mrl_guard_lease_idle(ctx, f);
		fcntl(f->fd, F_SETLEASE, F_UNLCK);
	}
	f->lease = LEASE_OFF;
}

/* The blocked opener shows in /proc/locks as "N: -> LEASE  BREAKER ... pid"
 * under our lease's line N. O_NONBLOCK openers leave no trace: pid 0. */
static pid_t breaker_pid(dev_t dev, ino_t ino)
{
	FILE *pl = fopen("/proc/locks", "re");
	char line[256], want[64];
	int ours = -1;
	pid_t pid = 0;
	if (!pl)
		return 0;
	snprintf(want, sizeof(want), "%02x:%02x:%lu ", major(dev), minor(dev), (unsigned long)ino);
	while (fgets(line, sizeof(line), pl)) {
		int id;
		if (sscanf(line, "%d:", &id) != 1)
			continue;
		if (!strstr(line, "->") && strstr(line, "LEASE") && strstr(line, want) &&
		    strstr(line, "BREAKING")) {
			ours = id;
		} else if (id == ours && strstr(line, "->") && strstr(line, "BREAKER")) {
			char *p = strstr(line, "BREAKER");
			char kind[16];
			int bp;
			if (p && sscanf(p, "BREAKER %15s %d", kind, &bp) == 2) {
				pid = bp;
				break;
			}
		}
	}
	fclose(pl);
	return pid;
}

/* Let the breaker in; take the lease back when it closes or after relock_ms. */
static void let_go(struct mrl_ctx *ctx, struct mrl_file *f, uint64_t now)
{
	mrl_guard_lease_idle(ctx, f);
	fcntl(f->fd, F_SETLEASE, F_UNLCK);
	f->lease = LEASE_RELEASED;
	f->relock_at = now + (uint64_t)ctx->opts.relock_ms * 1000000ull;
}

/* ---- a data write, told from a layout change ----
 * A lease breaks at the open, before anyone knows what the opener will do:
 * every write opener is paused for (what it does next through its fd, a
 * punch, is seen by nothing else before it lands). Once it has landed, the
 * break is classified by the file's layout: its size and where its bytes
 * live (FIEMAP's extents; tmpfs, which has none: its data and holes). A
 * data write (dd conv=notrunc, pwrite, mmap stores, copy_file_range, a
 * write into a hole or past the end) keeps every byte where it was: the
 * size did not shrink and every extent (data segment) the file had is still
 * there, mapped as before; it may only have gained some. Truncate, punch,
 * zero, collapse, insert and reflink drop or move one. Content written by
 * others is shared memory (README, "Data written by others"): after a data
 * write the MRs are restored under the generation they had, as fanotify
 * lets a data write through without one. Whatever else is announced with a
 * new generation, as is a file whose layout cannot be read (or has more
 * than LAYOUT_RUNS runs): safe, never silent. */
#define LAYOUT_RUNS 512
struct lease_layout {
	uint64_t size;
	bool extents;       /* FIEMAP runs, else data segments (lseek) */
	unsigned n;
	struct layout_run {
		uint64_t lo, phys, len; /* file bytes [lo, lo+len) at phys.. (0: segments) */
		uint32_t kind;          /* FIEMAP_EXTENT_UNWRITTEN/SHARED/DATA_INLINE/UNKNOWN */
	} run[LAYOUT_RUNS];
};

static bool layout_add(struct lease_layout *L, uint64_t lo, uint64_t phys, uint64_t len, uint32_t kind)
{
	struct layout_run *r = L->n ? &L->run[L->n - 1] : NULL;
	/* runs of contiguous logical and physical blocks of one kind: how the
	 * filesystem happens to split one in its report (ext4's extent cache,
	 * writeback) is not layout */
	if (r && r->lo + r->len == lo && r->kind == kind &&
	    ((kind & FIEMAP_EXTENT_UNKNOWN) || r->phys + r->len == phys)) {
		r->len += len;
		return true;
	}
	if (L->n == LAYOUT_RUNS)
		return false;
	L->run[L->n++] = (struct layout_run){lo, phys, len, kind};
	return true;
}

/* NULL when the file's layout cannot be read (then never equal: announced) */
static struct lease_layout *layout_read(int fd)
{
	struct stat st;
	struct lease_layout *L = fd >= 0 && fstat(fd, &st) == 0 ? calloc(1, sizeof(*L)) : NULL;
	if (!L)
		return NULL;
	L->size = (uint64_t)st.st_size;
	enum { NEXT = 64 };
	union {
		struct fiemap fm;
		char buf[sizeof(struct fiemap) + NEXT * sizeof(struct fiemap_extent)];
	} u;
	/* Flags about caching (delalloc, merged, last) are not layout; an
	 * extent with no known place yet (delalloc) is compared by range. */
	const uint32_t kind = FIEMAP_EXTENT_UNWRITTEN | FIEMAP_EXTENT_SHARED | FIEMAP_EXTENT_DATA_INLINE |
			      FIEMAP_EXTENT_UNKNOWN;
	uint64_t start = 0;
	for (int rounds = 0; rounds < 1024; rounds++) {
		memset(&u.fm, 0, sizeof(u.fm));
		u.fm.fm_start = start;
		u.fm.fm_length = FIEMAP_MAX_OFFSET - start;
		u.fm.fm_extent_count = NEXT;
		if (ioctl(fd, FS_IOC_FIEMAP, &u.fm) < 0)
			break; /* tmpfs: no extent map; its holes below */
		L->extents = true;
		if (!u.fm.fm_mapped_extents)
			return L;
		for (unsigned i = 0; i < u.fm.fm_mapped_extents; i++) {
			const struct fiemap_extent *e = &u.fm.fm_extents[i];
			if (!layout_add(L, e->fe_logical, e->fe_physical, e->fe_length, e->fe_flags & kind))
				goto unknown;
			start = e->fe_logical + e->fe_length;
			if (e->fe_flags & FIEMAP_EXTENT_LAST)
				return L;
		}
	}
	if (L->extents)
		goto unknown; /* more extents than rounds */
	/* the data and holes as lseek sees them */
	for (off_t pos = 0;;) {
		off_t d = lseek(fd, pos, SEEK_DATA);
		if (d < 0 && errno == ENXIO)
			return L;
		off_t hole = d < 0 ? -1 : lseek(fd, d, SEEK_HOLE);
		if (hole < 0 || !layout_add(L, (uint64_t)d, 0, (uint64_t)(hole - d), 0))
			goto unknown;
		pos = hole;
	}
unknown:
	free(L);
	return NULL;
}

/* Is [lo, lo+len) of run b (before) still mapped the same way in after? */
static bool run_kept(const struct lease_layout *after, const struct layout_run *b)
{
	uint64_t lo = b->lo, end = b->lo + b->len;
	for (unsigned i = 0; i < after->n && lo < end; i++) {
		const struct layout_run *a = &after->run[i];
		if (a->lo + a->len <= lo)
			continue;
		if (a->lo > lo)
			return false; /* a hole where b had bytes */
		/* written into (unwritten -> written) is data; anything else
		 * (zeroed, shared, moved) is layout */
		uint32_t bk = b->kind & ~(uint32_t)FIEMAP_EXTENT_UNKNOWN, ak = a->kind & ~(uint32_t)FIEMAP_EXTENT_UNKNOWN;
		if (ak != bk && ak != (bk & ~(uint32_t)FIEMAP_EXTENT_UNWRITTEN))
			return false;
		/* extents: where b's blocks were known, the same blocks (a
		 * punch written over again is pending or new blocks); where
		 * they were not yet (delalloc), they may have found a place */
		if (after->extents && !(b->kind & FIEMAP_EXTENT_UNKNOWN) &&
		    ((a->kind & FIEMAP_EXTENT_UNKNOWN) || a->phys - a->lo != b->phys - b->lo))
			return false;
		lo = a->lo + a->len;
	}
	return lo >= end;
}

/* Did only data change from before to after (every byte where it was)? */
static bool layout_kept(const struct lease_layout *before, const struct lease_layout *after)
{
	if (!before || !after || after->size < before->size || after->extents != before->extents)
		return false;
	for (unsigned i = 0; i < before->n; i++)
		if (!run_kept(after, &before->run[i]))
			return false;
	return true;
}

/* The break has landed: was it a plain data write? Then its MRs keep their
 * generation (mrl_mr_restore_locked). */
static void classify_landed(struct mrl_file *f)
{
	struct mrl_brk *b = f->brk;
	struct lease_layout *before = f->layout, *after = NULL;
	f->layout = NULL;
	if (!b || b->cause != MRL_CAUSE_OPEN_WRITE)
		goto out;
	after = layout_read(f->fd);
	if (!layout_kept(before, after)) {
		mrl_log("%s: a write opener changed the layout (size %llu -> %llu, %u -> %u runs%s)",
			f->path, before ? (unsigned long long)before->size : 0ull,
			after ? (unsigned long long)after->size : 0ull, before ? before->n : 0,
			after ? after->n : 0, before && after ? "" : ", unreadable");
		goto out;
	}
	for (size_t i = 0; i < b->mrs.n; i++)
		if (b->mrs.v[i]->state == MRL_STATE_PAUSED)
			b->mrs.v[i]->data_only = 1;
out:
	free(before);
	free(after);
}

static void brk_begin(struct mrl_ctx *ctx, struct mrl_file *f, int cause, pid_t pid, uint64_t seen)
{
	free(f->layout);
	f->layout = cause == MRL_CAUSE_OPEN_WRITE ? layout_read(f->fd) : NULL;
	ctx->st.lease_breaks++;
	/* A reader changes no layout: nothing to pause. Our mapping is shared
	 * writable, so a read lease is impossible: let go, and take it back
	 * when the reader closes. A lease is whole-file: for a writer every MR
	 * of the file is paused. */
	if (cause == MRL_CAUSE_OPEN_READ ||
	    !mrl_brk_begin(ctx, f, &mrl_watch_lease, cause, pid, 0, UINT64_MAX, seen, NULL)) {
		free(f->layout); /* no break to classify */
		f->layout = NULL;
		let_go(ctx, f, seen);
	}
}

/* a break freed unclassified (its file went away, the context ends) */
static void lease_brk_done(struct mrl_ctx *ctx, struct mrl_brk *b)
{
	(void)ctx;
	if (b->file) {
		free(b->file->layout);
		b->file->layout = NULL;
	}
}

/* the type of lease the library takes on f's fd */
static int held_type(struct mrl_file *f)
{
	return (fcntl(f->fd, F_GETFL) & O_ACCMODE) == O_RDONLY ? F_RDLCK : F_WRLCK;
}

enum retake_why { RETAKE_CLOSE, RETAKE_RELOCK, RETAKE_DEADLINE };

static void try_retake(struct mrl_ctx *ctx, struct mrl_file *f, enum retake_why why)
{
	if (f->lease != LEASE_RELEASED && f->lease != LEASE_BLOCKED)
		return;
	if (f->brk && (f->brk->phase != BRK_LANDING || f->brk->src != &mrl_watch_lease))
		return;
	mrl_lease_take(ctx, f);
	if (!f->brk)
		return;
	/* The lease comes back only if nobody has the file open. Taken on the
	 * relock timer: the breaker did not come in time (see lease_let_land).
	 * Refused, or taken on a close: it came. Taken at the deadline: it
	 * gave up, and the next breaker gets the short window again. */
	f->brk_unmet = f->lease == LEASE_HELD && why == RETAKE_RELOCK;
	if (f->lease == LEASE_HELD || why == RETAKE_DEADLINE) {
		classify_landed(f);
		mrl_brk_finish(ctx, f->brk);
	}
}

static struct mrl_file *file_of_fd(struct mrl_ctx *ctx, int fd)
{
	for (struct mrl_file *f = ctx->files; f; f = f->next)
		if (f->fd == fd && fd >= 0)
			return f;
	return NULL;
}

/* An owner will be asked to decide (a NOTIFY MR is live on f). */
static bool asks_owner(struct mrl_file *f)
{
	struct mrl_mr_vec vec;
	mrl_file_mrs(f, &vec);
	bool ask = false;
	for (size_t i = 0; i < vec.n && !ask; i++)
		ask = vec.v[i]->policy == MRL_POLICY_NOTIFY && vec.v[i]->state == MRL_STATE_ACTIVE;
	free(vec.v);
	return ask;
}

/* the lease on fd was broken (seen at seen; bp: the breaker, 0 if unknown) */
static void on_signal(struct mrl_ctx *ctx, int fd, pid_t bp, uint64_t seen)
{
	struct mrl_file *f = file_of_fd(ctx, fd);
	if (!f) {
		mrl_memfd_lease_signal(ctx, fd, seen); /* a memfd's lease (memfd.c), or stale */
		return;
	}
	if (f->lease != LEASE_HELD)
		return; /* stale: the lease was dropped already */
	int target = fcntl(fd, F_GETLEASE);
	if (target == held_type(f))
		return; /* no break: stale (the guardian let that one in, and we took it back) */
	f->lease = LEASE_BREAKING;
	/* The lease's target type tells a reader (F_RDLCK) from a writer. */
	brk_begin(ctx, f, target == F_RDLCK ? MRL_CAUSE_OPEN_READ : MRL_CAUSE_OPEN_WRITE,
		  bp, seen);
	if (f->brk && f->lease == LEASE_BREAKING)
		mrl_guard_lease_pending(ctx, f, f->brk->deadline_ns);
}

/* The guardian let a breaker in at deadline + margin: the owner did not
 * (stopped, hung). A writer's change has landed, or is landing, unpaused:
 * announce it as seen after (a reader changes nothing). The lease is gone
 * unless we took it back since: then the guardian watches it again. */
void mrl_lease_guard_let(struct mrl_ctx *ctx, struct mrl_file *f, int target, uint64_t at)
{
	mrl_log("%s: the guardian let a %s in past the deadline (the owner did not answer)",
		f->path, target == F_RDLCK ? "reader" : "writer");
	ctx->st.lease_breaks++;
	if (target != F_RDLCK) {
		struct mrl_mr_vec vec;
		mrl_file_mrs(f, &vec);
		for (size_t i = 0; i < vec.n; i++)
			mrl_mr_changed_after(ctx, vec.v[i], MRL_CAUSE_OPEN_WRITE, 0, vec.v[i]->len, at);
		free(vec.v);
	}
	if (f->fd >= 0 && fcntl(f->fd, F_GETLEASE) == held_type(f) && f->lease == LEASE_HELD) {
		mrl_guard_lease_arm(ctx, f, held_type(f));
		return;
	}
	if (f->lease == LEASE_HELD) {
		f->lease = LEASE_RELEASED;
		f->relock_at = mrl_now_ns() + (uint64_t)ctx->opts.relock_ms * 1000000ull;
	}
}

/* The file was closed by someone: a released or blocked lease may be taken
 * again, and a break waiting for the change to land may finish. */
void mrl_lease_file_closed(struct mrl_ctx *ctx, struct mrl_file *f)
{
	try_retake(ctx, f, RETAKE_CLOSE);
}

/* Quiesced: let the breaker in. */
static void lease_let_land(struct mrl_ctx *ctx, struct mrl_brk *b, uint64_t now)
{
	let_go(ctx, b->file, now);
	/* An O_NONBLOCK breaker (coreutils truncate) was told EWOULDBLOCK and
	 * comes back when it likes. Retaking after relock_ms breaks it again,
	 * and one that retries slower than that never gets in. So once a
	 * breaker missed its window, the next release waits for the breaker
	 * itself (its close) or the landing deadline. */
	if (b->file->brk_unmet)
		b->file->relock_at = 0;
}

static void lease_tick(struct mrl_ctx *ctx, uint64_t now)
{
	for (struct mrl_file *f = ctx->files; f; f = f->next) {
		struct mrl_brk *b = f->brk;
		if (b && b->src == &mrl_watch_lease && b->phase == BRK_LANDING &&
		    now >= b->landing_deadline_ns)
			try_retake(ctx, f, RETAKE_DEADLINE);
		else if (f->relock_at && now >= f->relock_at) {
			f->relock_at = 0;
			try_retake(ctx, f, RETAKE_RELOCK);
		}
	}
}

static uint64_t lease_next_timer(struct mrl_ctx *ctx)
{
	uint64_t t = UINT64_MAX;
	for (struct mrl_file *f = ctx->files; f; f = f->next) {
		struct mrl_brk *b = f->brk;
		if (b && b->src == &mrl_watch_lease && b->phase == BRK_LANDING &&
		    b->landing_deadline_ns < t)
			t = b->landing_deadline_ns;
		if (f->relock_at && f->relock_at < t)
			t = f->relock_at;
	}
	return t;
}

/* ---- the lease watcher's ops ---- */

/* The lease signal goes to the monitor thread alone (F_OWNER_TID) and is
 * blocked there, so the application's own signal handling is undisturbed. */
static int lease_thread_start(struct mrl_ctx *ctx)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, ctx->opts.signo);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	ctx->sig_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (ctx->sig_fd < 0)
		return mrl_err(errno, "monitor: signalfd: %s", strerror(errno));
	return 0;
}

static void lease_stop(struct mrl_ctx *ctx)
{
	if (ctx->sig_fd >= 0)
		close(ctx->sig_fd);
	ctx->sig_fd = -1;
}

static int lease_poll_fd(struct mrl_ctx *ctx)
{
	return ctx->sig_fd;
}

/* No lock held: read the broken leases, and find the breaker where an owner
 * will be asked (reading /proc/locks costs an RCU grace period, ~10 ms,
 * which nobody should wait for on ctx->lock). The monitor alone reads and
 * drains. */
static void lease_read(struct mrl_ctx *ctx)
{
	struct signalfd_siginfo si[MRL_LEASE_SIGS];
	ssize_t n = read(ctx->sig_fd, si, sizeof(si));
	struct mrl_lease_sig *s = ctx->lease_sigs;
	ctx->nlease_sigs = n > 0 ? (int)((size_t)n / sizeof(si[0])) : 0;
	uint64_t seen = mrl_now_ns();
	mrl_lock(&ctx->lock);
	for (int i = 0; i < ctx->nlease_sigs; i++) {
		struct mrl_file *f = file_of_fd(ctx, (int)si[i].ssi_fd);
		bool ask = f && f->lease == LEASE_HELD && asks_owner(f);
		s[i] = (struct mrl_lease_sig){.fd = (int)si[i].ssi_fd, .seen = seen,
					      .dev = ask ? f->dev : 0, .ino = ask ? f->ino : 0};
	}
	mrl_unlock(&ctx->lock);
	for (int i = 0; i < ctx->nlease_sigs; i++)
		if (s[i].dev || s[i].ino)
			s[i].pid = breaker_pid(s[i].dev, s[i].ino);
}

static void lease_drain(struct mrl_ctx *ctx)
{
	for (int i = 0; i < ctx->nlease_sigs; i++)
		on_signal(ctx, ctx->lease_sigs[i].fd, ctx->lease_sigs[i].pid, ctx->lease_sigs[i].seen);
	ctx->nlease_sigs = 0;
}

static void lease_file_detach(struct mrl_ctx *ctx, struct mrl_file *f)
{
	free(f->layout);
	f->layout = NULL;
	mrl_lease_drop(ctx, f);
	mrl_guard_lease_detach(ctx, f);
}

/* The library holds an fd and the mapping is made: a lease is possible now. */
static void lease_file_arm(struct mrl_ctx *ctx, struct mrl_file *f)
{
	if (f->lease == LEASE_OFF || f->lease == LEASE_BLOCKED)
		mrl_lease_take(ctx, f);
}

static unsigned lease_coverage(struct mrl_ctx *ctx, struct mrl_mr *mr, uint8_t *cov)
{
	(void)ctx;
	struct mrl_file *f = mr->file;
	if (!f || f->lease == LEASE_OFF)
		return 0;
	if (f->lease != LEASE_HELD)
		return MRL_WATCH_LEASE;
	/* Under a lease every change by another process starts with an open
	 * (or a truncate by path), which the lease holds back; so does the
	 * owner's own new open. Its changes through an fd it already holds
	 * break nothing. */
	static const int rows[] = {MRL_CHG_OTHER_OPEN_READ, MRL_CHG_OTHER_OPEN_WRITE,
				   MRL_CHG_OTHER_TRUNCATE,  MRL_CHG_OTHER_LAYOUT,
				   MRL_CHG_OTHER_WRITE,     MRL_CHG_OWNER_OPEN,
				   MRL_CHG_OTHER_OPEN_TRUNC};
	for (size_t i = 0; i < ARRAY_SIZE(rows); i++)
		mrl_cov_raise(cov, rows[i], MRL_SEEN_BEFORE);
	return MRL_WATCH_LEASE;
}

/* fcntl delegations (F_SETDELEG, Linux 6.19+): detected, not used yet. An
 * unknown fcntl command fails EINVAL; F_GETDELEG on a regular file of ours
 * answers where the kernel has them. Once per context (mrl_watchers_start). */
#ifndef F_GETDELEG
#define F_GETDELEG (1024 + 15) /* F_LINUX_SPECIFIC_BASE + 15 */
#endif
bool mrl_lease_deleg_present(void)
{
	struct {
		uint32_t d_flags;
		uint16_t d_type, pad;
	} d = {0};
	int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	bool present = fd >= 0 && fcntl(fd, F_GETDELEG, &d) == 0;
	if (fd >= 0)
		close(fd);
	return present;
}

const struct mrl_watcher_ops mrl_watch_lease = {
	.name = "lease",
	.bit = MRL_WATCH_LEASE,
	.thread_start = lease_thread_start,
	.stop = lease_stop,
	.poll_fd = lease_poll_fd,
	.read = lease_read,
	.drain = lease_drain,
	.next_timer = lease_next_timer,
	.tick = lease_tick,
	.let_land = lease_let_land,
	.brk_done = lease_brk_done,
	.file_detach = lease_file_detach,
	.file_arm = lease_file_arm,
	.coverage = lease_coverage,
};

