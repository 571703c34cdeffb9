/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The memfd/shmem watcher: a lease on a reopen of the object under memfd and
 * shared-anonymous MRs, and seals for MRL_POLICY_DENY on a memfd.
 *
 * What Linux 6.18 allows (measured, issue 15):
 *  - F_SETLEASE fails EAGAIN on a memfd's own fd but works on a reopen of
 *    /proc/self/fd/N (and, for shared anonymous memory, of
 *    /proc/self/map_files/START-END). That lease is broken by every new open
 *    of the object (another process's open of /proc/PID/fd/N, truncate(2)
 *    of that path, the owner's own reopen) -- and by nothing done through a
 *    file description that exists already: an inherited or passed fd, the
 *    owner's memfd fd, pidfd_getfd, ftruncate, fallocate punch, pwrite, mmap
 *    stores. fanotify cannot mark a memfd (EOPNOTSUPP); inotify sees only
 *    ftruncate, after; userfaultfd sees a punch only at the next touch. So
 *    coverage claims "before" for opens and path truncates, and nothing for
 *    changes through existing fds (those need the seals below or the
 *    seccomp option, seccomp.h).
 *  - Seals F_SEAL_SHRINK|F_SEAL_GROW|F_SEAL_FUTURE_WRITE on a memfd made
 *    with MFD_ALLOW_SEALING refuse truncate, grow, punch, MADV_REMOVE and
 *    write(2) from anyone, the owner included (EPERM), while existing
 *    writable mappings, pinned pages and re-registration keep working. They
 *    can never be removed. mrl_mr_reg adds them for MRL_POLICY_DENY on a
 *    memfd: the refused changes then "cannot happen" (coverage n/a); the
 *    library is not told of a refusal (the kernel answers the actor).
 *
 * A break begun here is an address-space break over the object's live MRs
 * (mrl_brk_begin_mrs): let land = let go of the lease; landed = the lease
 * can be taken again (the breaker closed), polled every relock_ms, or the
 * landing deadline passed. What lies past the object's end then is fenced
 * (cause truncated). The guardian process (guardian.c) holds a dup of the
 * leased reopen, as it does a file's: if the owner stalls (stopped, hung),
 * it lets go of a broken lease at deadline + margin, and the owner, once it
 * runs, announces the change as seen after (mrl_memfd_guard_let).
 * Every function here runs with ctx->lock held. Finding the owner's fd reads
 * /proc/self/fd (a directory walk, no wait) once per object. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mrl_int.h"

#define MFD_DENY_SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_FUTURE_WRITE)

struct mrl_mfd {
	struct mrl_mfd *next;
	dev_t dev;
	ino_t ino;
	int fd;               /* the library's reopen, O_RDWR; -1 if none (yet) */
	int lease;            /* enum lease_state */
	int lease_errno;
	bool sealed;          /* all of MFD_DENY_SEALS are on */
	uintptr_t map_lo, map_hi; /* a mapping of it, for /proc/self/map_files */
	struct mrl_mr_vec mrs; /* its MRs (the table's references) */
	struct mrl_brk *brk;  /* the break under way, NULL if none */
	uint64_t relock_at;   /* retake (or reopen) the lease then; 0 none */
	unsigned gslot;       /* the guardian's lease slot + 1, 0 if none */
};

#ifndef F_DUPFD_QUERY
#define F_DUPFD_QUERY 1027 /* Linux 6.10: 1 if two fds share one open file description */
#endif

/* F_DUPFD_QUERY, detected once: 1 present, 0 absent (EINVAL before 6.10) */
static int dupq_present(void)
{
	static int present = -1;
	int p = __atomic_load_n(&present, __ATOMIC_RELAXED);
	if (p < 0) {
		p = fcntl(0, F_DUPFD_QUERY, 0) >= 0 || errno != EINVAL;
		__atomic_store_n(&present, p, __ATOMIC_RELAXED);
	}
	return p;
}

/* 1 if fds a and b share one open file description (a dup, an inherited or
 * passed copy), 0 if not, -EOPNOTSUPP if the kernel cannot tell. */
int mrl_fd_same_desc(int a, int b)
{
	if (!dupq_present())
		return -EOPNOTSUPP;
	int r = fcntl(a, F_DUPFD_QUERY, b);
	return r < 0 ? -errno : r;
}

static struct mrl_mfd *mfd_of_mr(struct mrl_ctx *ctx, const struct mrl_mr *mr)
{
	for (struct mrl_mfd *m = ctx->mfds; m; m = m->next)
		for (size_t i = 0; i < m->mrs.n; i++)
			if (m->mrs.v[i] == mr)
				return m;
	return NULL;
}

/* The first of this process's fds on (dev, ino), in /proc/self/fd's
 * order, that pick (NULL: any) takes; -1 if none. */
static int fd_on(dev_t dev, ino_t ino, bool (*pick)(int fd, void *arg), void *arg)
{
	DIR *d = opendir("/proc/self/fd");
	int found = -1;
	if (!d)
		return -1;
	for (struct dirent *e; found < 0 && (e = readdir(d));) {
		char *end;
		long n = strtol(e->d_name, &end, 10);
		struct stat st;
		if (*end || end == e->d_name || n == dirfd(d))
			continue;
		if (fstat((int)n, &st) == 0 && st.st_ino == ino && st.st_dev == dev &&
		    (!pick || pick((int)n, arg)))
			found = (int)n;
	}
	closedir(d);
	return found;
}

/* An fd of this process on (dev, ino), -1 if none: the owner's memfd. */
static int find_fd(dev_t dev, ino_t ino)
{
	return fd_on(dev, ino, NULL, NULL);
}

struct blocker {
	int lib_fd, first;
};

/* not the library's own description; the first such, or not a dup of it */
static bool blocks(int fd, void *arg)
{
	struct blocker *b = arg;
	if (fd == b->lib_fd || (b->lib_fd >= 0 && mrl_fd_same_desc(b->lib_fd, fd) != 0))
		return false; /* the library's own (or the kernel cannot tell) */
	if (b->first < 0) {
		b->first = fd;
		return false;
	}
	return mrl_fd_same_desc(b->first, fd) == 0;
}

/* A write lease on the object waits while another open file description of
 * it exists -- the process's own included, but not a dup of one (measured:
 * memfd M with dup(M): the reopen's lease is taken; M and a separate open of
 * /proc/self/fd/M: EAGAIN). Inode matching cannot tell the two apart; the
 * exact check can: among this process's fds on (dev, ino), other than the
 * library's own lib_fd and its dups, the first one that is not a dup of the
 * first found: the process itself holds a second description, and the lease
 * waits until it is closed. -1 if none, or if the kernel cannot tell. */
static int self_blocker(dev_t dev, ino_t ino, int lib_fd)
{
	struct blocker b = {.lib_fd = lib_fd, .first = -1};
	return fd_on(dev, ino, blocks, &b);
}

/* A file description of the library's own on the object: a reopen through
 * /proc (an fd's link, else the mapping's). O_NONBLOCK: against another
 * holder's lease the open fails at once instead of waiting under the lock. */
static int reopen(dev_t dev, ino_t ino, uintptr_t lo, uintptr_t hi)
{
	char path[80];
	int fd = -1, src = find_fd(dev, ino);
	if (src >= 0) {
		snprintf(path, sizeof(path), "/proc/self/fd/%d", src);
		fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
	}
	if (fd < 0 && lo < hi) {
		snprintf(path, sizeof(path), "/proc/self/map_files/%lx-%lx", (unsigned long)lo,
			 (unsigned long)hi);
		fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
	}
	struct stat st;
	if (fd >= 0 && (fstat(fd, &st) < 0 || st.st_ino != ino || st.st_dev != dev)) {
		close(fd); /* the fd was reused for something else meanwhile */
		fd = -1;
		errno = ESTALE;
	}
	if (fd >= 0)
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	return fd < 0 ? -errno : fd;
}

static bool is_sealed(int fd)
{
	int s = fd >= 0 ? fcntl(fd, F_GET_SEALS) : -1;
	return s >= 0 && (s & MFD_DENY_SEALS) == MFD_DENY_SEALS;
}

/* Take the lease (reopening first if there is no fd yet). */
static void take(struct mrl_ctx *ctx, struct mrl_mfd *m)
{
	int was = m->lease;
	m->relock_at = 0;
	if (m->fd < 0) {
		int fd = reopen(m->dev, m->ino, m->map_lo, m->map_hi);
		if (fd < 0) {
			m->lease_errno = -fd;
			m->lease = fd == -EWOULDBLOCK ? LEASE_BLOCKED : LEASE_OFF;
			if (m->lease == LEASE_BLOCKED) { /* another holder's lease: try again */
				m->relock_at = mrl_now_ns() + (uint64_t)ctx->opts.relock_ms * 1000000ull;
				mrl_wake_monitor(ctx);
			}
			return;
		}
		m->fd = fd;
		m->sealed = is_sealed(fd);
	}
	struct f_owner_ex owner = {.type = F_OWNER_TID, .pid = ctx->monitor_tid};
	if (fcntl(m->fd, F_SETOWN_EX, &owner) < 0 || fcntl(m->fd, F_SETSIG, ctx->opts.signo) < 0 ||
	    fcntl(m->fd, F_SETLEASE, F_WRLCK) < 0) {
		m->lease_errno = errno;
		m->lease = errno == EAGAIN || errno == EBUSY ? LEASE_BLOCKED : LEASE_OFF;
		if (m->lease == LEASE_BLOCKED) {
			m->relock_at = mrl_now_ns() + (uint64_t)ctx->opts.relock_ms * 1000000ull;
			/* a registration's first try: the monitor's sleep was
			 * timed before this retry existed */
			mrl_wake_monitor(ctx);
			/* once per refusal, not per retry (a walk of /proc/self/fd,
			 * no wait): is it the process's own second open? */
			if (was != LEASE_BLOCKED) {
				int b = dupq_present() ? self_blocker(m->dev, m->ino, m->fd) : -1;
				if (b >= 0)
					mrl_log("memfd inode %lu: no lease while fd %d of this process, "
						"a second open of it (not a dup), is open",
						(unsigned long)m->ino, b);
			}
		}
		return;
	}
	if (m->lease == LEASE_RELEASED || m->lease == LEASE_BLOCKED)
		ctx->st.lease_retakes++;
	m->lease = LEASE_HELD;
	m->lease_errno = 0;
	mrl_guard_slot_arm(ctx, &m->gslot, m->fd, F_WRLCK, GUARD_MEMFD, m, "a memfd");
}

static void let_go(struct mrl_ctx *ctx, struct mrl_mfd *m, uint64_t now)
{
	mrl_guard_slot_idle(ctx, &m->gslot);
	if (m->fd >= 0)
		fcntl(m->fd, F_SETLEASE, F_UNLCK);
	m->lease = LEASE_RELEASED;
	m->relock_at = now + (uint64_t)ctx->opts.relock_ms * 1000000ull;
}

static void mfd_free(struct mrl_ctx *ctx, struct mrl_mfd *m)
{
	for (struct mrl_mfd **p = &ctx->mfds; *p; p = &(*p)->next)
		if (*p == m) {
			*p = m->next;
			break;
		}
	if (m->fd >= 0) {
		mrl_guard_slot_detach(ctx, &m->gslot);
		if (m->lease == LEASE_HELD || m->lease == LEASE_BREAKING)
			fcntl(m->fd, F_SETLEASE, F_UNLCK);
		close(m->fd);
	}
	free(m->mrs.v);
	free(m);
}

/* A new opener broke the lease on fd (lease.c hands over the signals of
 * fds that are no file's). A writer pauses every live MR of the object;
 * a reader, or an opener of a sealed object (it can change nothing a seal
 * does not refuse), is let in at once. */
void mrl_memfd_lease_signal(struct mrl_ctx *ctx, int fd, uint64_t seen)
{
	struct mrl_mfd *m = ctx->mfds;
	while (m && (m->fd != fd || fd < 0))
		m = m->next;
	if (!m || m->lease != LEASE_HELD)
		return; /* stale: dropped already */
	int target = fcntl(fd, F_GETLEASE);
	if (target == F_WRLCK)
		return; /* no break pending */
	ctx->st.lease_breaks++;
	m->lease = LEASE_BREAKING;
	struct mrl_mr_vec vec = {0};
	for (size_t i = 0; !m->sealed && target != F_RDLCK && i < m->mrs.n; i++)
		if (mrl_mr_live(m->mrs.v[i]))
			mrl_mr_vec_push(&vec, m->mrs.v[i]);
	if (!vec.n) {
		free(vec.v);
		let_go(ctx, m, seen);
		return;
	}
	ctx->mfd_starting = m;
	struct mrl_brk *b = mrl_brk_begin_mrs(ctx, &mrl_watch_memfd, &vec, MRL_CAUSE_OPEN_WRITE, 0,
					      seen);
	ctx->mfd_starting = NULL;
	if (b)
		m->brk = b;
	else if (m->lease == LEASE_BREAKING)
		let_go(ctx, m, seen);
	if (m->brk && m->lease == LEASE_BREAKING)
		mrl_guard_slot_pending(ctx, &m->gslot, m->brk->deadline_ns);
}

/* The guardian let an opener in at deadline + margin: the owner did not
 * (stopped, hung). A writer may have changed the object unpaused: announce
 * it as seen after, on every live MR (a reader, or an opener of a sealed
 * object, changes nothing a seal does not refuse). The lease is gone unless
 * taken back since: then the guardian watches it again. */
void mrl_memfd_guard_let(struct mrl_ctx *ctx, struct mrl_mfd *m, int target, uint64_t at)
{
	mrl_log("memfd inode %lu: the guardian let a %s in past the deadline (the owner did not answer)",
		(unsigned long)m->ino, target == F_RDLCK ? "reader" : "writer");
	ctx->st.lease_breaks++;
	for (size_t i = 0; target != F_RDLCK && !m->sealed && i < m->mrs.n; i++)
		if (mrl_mr_live(m->mrs.v[i]))
			mrl_mr_changed_after(ctx, m->mrs.v[i], MRL_CAUSE_OPEN_WRITE, 0, m->mrs.v[i]->len,
					     at);
	if (m->fd >= 0 && m->lease == LEASE_HELD && fcntl(m->fd, F_GETLEASE) == F_WRLCK) {
		mrl_guard_slot_arm(ctx, &m->gslot, m->fd, F_WRLCK, GUARD_MEMFD, m, "a memfd");
		return;
	}
	if (m->lease == LEASE_HELD) {
		m->lease = LEASE_RELEASED;
		m->relock_at = mrl_now_ns() + (uint64_t)ctx->opts.relock_ms * 1000000ull;
	}
}

static struct mrl_mfd *mfd_of_brk(struct mrl_ctx *ctx, struct mrl_brk *b)
{
	for (struct mrl_mfd *m = ctx->mfds; m; m = m->next)
		if (m->brk == b)
			return m;
	return ctx->mfd_starting; /* quiesced inside mrl_brk_begin_mrs */
}

static void mfd_let_land(struct mrl_ctx *ctx, struct mrl_brk *b, uint64_t now)
{
	struct mrl_mfd *m = mfd_of_brk(ctx, b);
	if (!m)
		return;
	m->brk = b;
	let_go(ctx, m, now);
}

/* The change has landed (or gave up): fence what lies past the object's
 * end now, restore the rest. */
static void landed(struct mrl_ctx *ctx, struct mrl_mfd *m, uint64_t now)
{
	mrl_memfd_fence_past_end(ctx, m->brk, now);
	mrl_brk_finish(ctx, m->brk); /* frees it: brk_done clears m->brk */
}

static void mfd_tick(struct mrl_ctx *ctx, uint64_t now)
{
	for (struct mrl_mfd *m = ctx->mfds, *next; m; m = next) {
		next = m->next;
		struct mrl_brk *b = m->brk;
		bool landing = b && b->phase == BRK_LANDING && b->src == &mrl_watch_memfd;
		if (m->relock_at && now >= m->relock_at)
			take(ctx, m);
		if (landing && (m->lease == LEASE_HELD || now >= b->landing_deadline_ns))
			landed(ctx, m, now);
	}
}

static uint64_t mfd_next_timer(struct mrl_ctx *ctx)
{
	uint64_t t = UINT64_MAX;
	for (struct mrl_mfd *m = ctx->mfds; m; m = m->next) {
		if (m->relock_at && m->relock_at < t)
			t = m->relock_at;
		if (m->brk && m->brk->phase == BRK_LANDING && m->brk->landing_deadline_ns < t)
			t = m->brk->landing_deadline_ns;
	}
	return t;
}

static void mfd_brk_done(struct mrl_ctx *ctx, struct mrl_brk *b)
{
	for (struct mrl_mfd *m = ctx->mfds, *next; m; m = next) {
		next = m->next;
		if (m->brk != b)
			continue;
		m->brk = NULL;
		if (!m->mrs.n)
			mfd_free(ctx, m);
	}
}

static void mfd_mr_attach(struct mrl_ctx *ctx, struct mrl_mr *mr)
{
	dev_t dev;
	ino_t ino;
	uint64_t off;
	uintptr_t lo, hi;
	if (mr->file || (mr->kind != MRL_KIND_MEMFD && mr->kind != MRL_KIND_SHMEM) ||
	    mrl_vma_file(ctx, (uintptr_t)mr->addr, &dev, &ino, &off, &lo, &hi))
		return;
	struct mrl_mfd *m = ctx->mfds;
	while (m && !(m->dev == dev && m->ino == ino))
		m = m->next;
	bool fresh = !m;
	if (fresh) {
		if (!(m = calloc(1, sizeof(*m))))
			return;
		m->dev = dev;
		m->ino = ino;
		m->fd = -1;
		m->lease = LEASE_OFF;
		m->map_lo = lo;
		m->map_hi = hi;
	}
	if (mrl_mr_vec_push(&m->mrs, mr)) {
		if (fresh)
			free(m);
		return;
	}
	/* the object's offset: a truncate is fenced from where it cuts */
	mr->fnode.start = off;
	mr->fnode.end = off + mr->len;
	if (fresh) {
		m->next = ctx->mfds;
		ctx->mfds = m;
		take(ctx, m);
		if (m->lease == LEASE_OFF)
			mrl_log("memfd/shmem lease impossible (inode %lu): %s", (unsigned long)ino,
				strerror(m->lease_errno));
	}
}

static void mfd_mr_detach(struct mrl_ctx *ctx, struct mrl_mr *mr)
{
	struct mrl_mfd *m = mfd_of_mr(ctx, mr);
	if (!m)
		return;
	for (size_t i = 0; i < m->mrs.n; i++)
		if (m->mrs.v[i] == mr) {
			m->mrs.v[i] = m->mrs.v[--m->mrs.n];
			break;
		}
	if (!m->mrs.n && !m->brk)
		mfd_free(ctx, m);
}

/* The breaks this watcher began and that no file holds (address-space
 * ones): freed when it stops (the monitor has, ctx->lock not held). */
void mrl_brks_free_of(struct mrl_ctx *ctx, const struct mrl_watcher_ops *src)
{
	mrl_lock(&ctx->lock);
	for (struct mrl_brk *b = ctx->brks, *next; b; b = next) {
		next = b->next;
		if (b->src == src && !b->file) {
			mrl_brk_free(ctx, b);
			next = ctx->brks; /* brk_done may have changed the list */
		}
	}
	mrl_unlock(&ctx->lock);
}

static void mfd_stop(struct mrl_ctx *ctx)
{
	mrl_brks_free_of(ctx, &mrl_watch_memfd);
	while (ctx->mfds)
		mfd_free(ctx, ctx->mfds);
}

/* Deny on a memfd: add the seals (permanent) through an fd of the
 * process's on it. Also the object's record, if it has one, learns it. */
int mrl_memfd_seal(struct mrl_ctx *ctx, dev_t dev, ino_t ino, const char **why)
{
	struct mrl_mfd *m = ctx->mfds;
	while (m && !(m->dev == dev && m->ino == ino))
		m = m->next;
	int fd = m && m->fd >= 0 ? m->fd : find_fd(dev, ino);
	if (fd < 0) {
		*why = "no fd of this process names the memfd (seals are added through one)";
		return -ENOENT;
	}
	int seals = fcntl(fd, F_GET_SEALS);
	if (seals < 0 || (seals & F_SEAL_SEAL)) {
		if ((seals & MFD_DENY_SEALS) == MFD_DENY_SEALS)
			goto sealed;
		*why = seals < 0 ? "the memfd takes no seals"
				 : "the memfd was made without MFD_ALLOW_SEALING, or sealed against more seals";
		return -EPERM;
	}
	if (fcntl(fd, F_ADD_SEALS, MFD_DENY_SEALS) < 0) {
		*why = errno == EBUSY ? "sealing refused: EBUSY" : strerror(errno);
		return -errno;
	}
	mrl_log("memfd inode %lu sealed (shrink, grow, future write): permanently",
		(unsigned long)ino);
sealed:
	if (m)
		m->sealed = true;
	return 0;
}

/* for the seccomp watcher: the object under mr, if this watcher has it */
int mrl_memfd_ident(struct mrl_ctx *ctx, struct mrl_mr *mr, dev_t *dev, ino_t *ino)
{
	struct mrl_mfd *m = mfd_of_mr(ctx, mr);
	if (!m)
		return -ENOENT;
	*dev = m->dev;
	*ino = m->ino;
	return 0;
}

/* the live MRs of object (dev, ino) over its bytes [lo, hi) */
void mrl_memfd_mrs(struct mrl_ctx *ctx, dev_t dev, ino_t ino, uint64_t lo, uint64_t hi,
		   struct mrl_mr_vec *vec)
{
	for (struct mrl_mfd *m = ctx->mfds; m; m = m->next) {
		if (m->dev != dev || m->ino != ino)
			continue;
		for (size_t i = 0; i < m->mrs.n; i++) {
			struct mrl_mr *mr = m->mrs.v[i];
			if (mrl_mr_live(mr) && !mr->in_brk && mr->fnode.start < hi &&
			    mr->fnode.start + mr->valid_len > lo)
				mrl_mr_vec_push(vec, mr);
		}
	}
}

/* A change to the object landed under break b: fence what lies past its end. */
void mrl_memfd_fence_past_end(struct mrl_ctx *ctx, struct mrl_brk *b, uint64_t now)
{
	for (size_t i = 0; i < b->mrs.n; i++) {
		struct mrl_mr *mr = b->mrs.v[i];
		struct mrl_mfd *m = mfd_of_mr(ctx, mr);
		struct stat st;
		if (!m || m->fd < 0 || !mr->in_brk || fstat(m->fd, &st) < 0)
			continue;
		uint64_t size = (uint64_t)st.st_size;
		uint64_t avail = size > mr->fnode.start ? size - mr->fnode.start : 0;
		if (avail < mr->valid_len)
			mrl_mr_fence_locked(ctx, mr, MRL_CAUSE_TRUNCATED, avail, mr->len - avail, 0, now);
	}
}

static unsigned mfd_coverage(struct mrl_ctx *ctx, struct mrl_mr *mr, uint8_t *cov)
{
	struct mrl_mfd *m = mfd_of_mr(ctx, mr);
	if (!m)
		return 0;
	/* no name: nothing can be renamed over it or unlinked */
	cov[MRL_CHG_OTHER_RENAME] = cov[MRL_CHG_OTHER_UNLINK] = MRL_SEEN_NA;
	if (m->sealed) {
		/* refused by the kernel, to everyone: these cannot happen */
		static const int refused[] = {MRL_CHG_OTHER_TRUNCATE, MRL_CHG_OTHER_LAYOUT,
					      MRL_CHG_OTHER_WRITE,    MRL_CHG_OWNER_TRUNCATE,
					      MRL_CHG_OWNER_LAYOUT,   MRL_CHG_OWNER_WRITE,
					      MRL_CHG_OTHER_OPEN_TRUNC};
		for (size_t i = 0; i < ARRAY_SIZE(refused); i++)
			cov[refused[i]] = MRL_SEEN_NA;
	}
	if (m->lease == LEASE_OFF && !m->sealed)
		return 0;
	if (m->lease == LEASE_HELD) {
		/* every new open of the object waits for the lease; so does a
		 * truncate by path (/proc/PID/fd/N) */
		static const int rows[] = {MRL_CHG_OTHER_OPEN_READ, MRL_CHG_OTHER_OPEN_WRITE,
					   MRL_CHG_OTHER_TRUNCATE,  MRL_CHG_OWNER_OPEN,
					   MRL_CHG_OTHER_OPEN_TRUNC};
		for (size_t i = 0; i < ARRAY_SIZE(rows); i++)
			mrl_cov_raise(cov, rows[i], MRL_SEEN_BEFORE);
	}
	return MRL_WATCH_MEMFD;
}

const struct mrl_watcher_ops mrl_watch_memfd = {
	.name = "memfd",
	.bit = MRL_WATCH_MEMFD,
	.stop = mfd_stop,
	.next_timer = mfd_next_timer,
	.tick = mfd_tick,
	.let_land = mfd_let_land,
	.brk_done = mfd_brk_done,
	.mr_attach = mfd_mr_attach,
	.mr_detach = mfd_mr_detach,
	.coverage = mfd_coverage,
};
