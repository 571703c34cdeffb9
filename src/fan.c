/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The fanotify pre-content watcher (Linux >= 6.14, CAP_SYS_ADMIN, ext4/xfs/btrfs).
 *
 * Every truncate, fallocate, write and mmap of a marked file -- by any process,
 * the owner's own threads included -- stops in the kernel until the monitor
 * answers. The event carries the byte range; the actor's own system call
 * (read from /proc/TID/syscall while it waits) tells a layout change from a
 * plain read or write. Only the MRs whose file range the change touches are
 * paused; the answer lets the change land (or refuses it, MRL_POLICY_DENY),
 * and the MRs are restored once it has landed.
 *
 * Landing is known per kind of change: a truncate when the file has its new
 * size (the part of an MR below the new end keeps its pages, so nothing
 * restored can be hit by the rest of the truncation); an fallocate by the
 * actor's own FAN_MODIFY, which vfs_fallocate sends after the change is done;
 * any change, or a failed one, when the actor has left the system call.
 *
 * Runs in the monitor thread. /proc (the actor's syscall line, its process)
 * is read with no lock held: when the events are read (fan_read), and for a
 * landing in fan_look, whose line is published under ctx->lock by the
 * event's id and line generation; the rest runs with ctx->lock held. */
#include <errno.h>
#include <sched.h>
#include <time.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fanotify.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "mrl_int.h"

/* Debian 12's headers predate pre-content events. */
#ifndef FAN_PRE_ACCESS
#define FAN_PRE_ACCESS 0x00100000
#endif
#ifndef FAN_REPORT_TID
#define FAN_REPORT_TID 0x00000100
#endif
#ifndef FAN_EVENT_INFO_TYPE_RANGE
#define FAN_EVENT_INFO_TYPE_RANGE 6
#endif
#ifndef FAN_DENY_ERRNO
#define FAN_DENY_ERRNO(e) (FAN_DENY | ((((uint32_t)(e)) & 0xff) << 24))
#endif
#ifndef FALLOC_FL_WRITE_ZEROES
#define FALLOC_FL_WRITE_ZEROES 0x80
#endif
#ifndef FICLONE
#define FICLONE 0x40049409
#define FICLONERANGE 0x4020940d
#define FIDEDUPERANGE 0xc0189436
#endif

struct fan_range_info {
	struct fanotify_event_info_header hdr;
	uint32_t pad;
	uint64_t offset;
	uint64_t count;
};

/* Opens change nothing, but seeing them (and letting them go at once) keeps
 * the coverage of a lease: an opener is known before it can act. */
#define FAN_MASK (FAN_PRE_ACCESS | FAN_MODIFY | FAN_OPEN_PERM)

static int fan_start(struct mrl_ctx *ctx)
{
	ctx->fan_fd = -1;
	pthread_mutex_init(&ctx->fan_sys_lock, NULL);
	if (ctx->opts.flags & MRL_CTX_NO_FANOTIFY)
		return -ECANCELED;
	int fd = fanotify_init(FAN_CLASS_PRE_CONTENT | FAN_CLOEXEC | FAN_NONBLOCK | FAN_REPORT_TID,
			       O_RDONLY | O_LARGEFILE | O_CLOEXEC);
	if (fd < 0) {
		ctx->fan_errno = errno;
		return -errno;
	}
	/* Does the kernel know pre-content events? A memfd answers without
	 * side effects: EINVAL = unknown event bit, EOPNOTSUPP = known, but
	 * not on this filesystem (tmpfs). */
	int probe = memfd_create("mrlease-probe", MFD_CLOEXEC);
	int r = probe < 0 ? -1 : fanotify_mark(fd, FAN_MARK_ADD, FAN_PRE_ACCESS, probe, NULL);
	int err = r < 0 ? errno : 0;
	if (r == 0)
		fanotify_mark(fd, FAN_MARK_REMOVE, FAN_PRE_ACCESS, probe, NULL);
	if (probe >= 0)
		close(probe);
	if (r < 0 && err != EOPNOTSUPP) {
		ctx->fan_errno = err; /* the kernel does not know pre-content events */
		close(fd);
		return -err;
	}
	ctx->fan_fd = fd;
	return 0;
}

static void fan_stop(struct mrl_ctx *ctx)
{
	for (struct mrl_fan_ev **q = &ctx->fan_read_q; q; q = q == &ctx->fan_read_q ? &ctx->fan_later : NULL)
		while (*q) { /* read, never handled: let the actors go */
			struct mrl_fan_ev *e = *q;
			*q = e->next;
			mrl_fan_answer(ctx, e, 0);
			mrl_fan_ev_free(e);
		}
	if (ctx->fan_fd >= 0)
		close(ctx->fan_fd); /* the kernel lets every waiting actor go */
	ctx->fan_fd = -1;
	mrl_lock(&ctx->fan_sys_lock); /* a reader still in it finishes first */
	for (int i = 0; i < MRL_FAN_SYS_CACHE; i++)
		if (ctx->fan_sys[i].fd1) {
			close(ctx->fan_sys[i].fd1 - 1);
			ctx->fan_sys[i].fd1 = 0;
		}
	mrl_unlock(&ctx->fan_sys_lock);
	pthread_mutex_destroy(&ctx->fan_sys_lock);
}

/* Are all open file descriptions of the file younger than our mark? Only
 * those see write and fallocate events. A write lease can be taken only by
 * the file's one opener, so taking it (and dropping it at once) proves it. */
static void fan_probe_complete(struct mrl_ctx *ctx, struct mrl_file *f)
{
	if (f->fan_complete || !f->fan_fd_young || f->fd < 0)
		return;
	struct f_owner_ex owner = {.type = F_OWNER_TID, .pid = ctx->monitor_tid};
	if ((fcntl(f->fd, F_GETFL) & O_ACCMODE) == O_RDONLY)
		return;
	if (fcntl(f->fd, F_SETOWN_EX, &owner) == 0 && fcntl(f->fd, F_SETSIG, ctx->opts.signo) == 0 &&
	    fcntl(f->fd, F_SETLEASE, F_WRLCK) == 0) {
		fcntl(f->fd, F_SETLEASE, F_UNLCK);
		f->fan_complete = true;
	}
}

/* Mark the file (by path, before the library opens its own fd, so that fd
 * sees events too). Disk filesystems only: tmpfs says EOPNOTSUPP. */
static void fan_file_attach(struct mrl_ctx *ctx, struct mrl_file *f)
{
	if (f->kind != MRL_KIND_FILE) {
		f->fan_errno = EOPNOTSUPP;
		return;
	}
	if (!f->path[0]) {
		f->fan_errno = ENOENT;
		return;
	}
	if (fanotify_mark(ctx->fan_fd, FAN_MARK_ADD, FAN_MASK, AT_FDCWD, f->path) < 0) {
		f->fan_errno = errno;
		return;
	}
	struct stat st;
	if (stat(f->path, &st) < 0 || st.st_dev != f->st_dev || st.st_ino != f->ino) {
		/* the path names another file now: do not claim to watch ours */
		fanotify_mark(ctx->fan_fd, FAN_MARK_REMOVE, FAN_MASK, AT_FDCWD, f->path);
		f->fan_errno = ESTALE;
		return;
	}
	f->fan = true;
}

/* The library's own fd was opened after the mark (mrl_file_map). */
static void fan_file_opened(struct mrl_ctx *ctx, struct mrl_file *f)
{
	if (!f->fan)
		return;
	f->fan_fd_young = true;
	fan_probe_complete(ctx, f);
}

static void fan_file_detach(struct mrl_ctx *ctx, struct mrl_file *f)
{
	if (!f->fan || ctx->fan_fd < 0)
		return;
	if (f->fd >= 0)
		fanotify_mark(ctx->fan_fd, FAN_MARK_REMOVE, FAN_MASK, f->fd, NULL);
	else
		fanotify_mark(ctx->fan_fd, FAN_MARK_REMOVE, FAN_MASK, AT_FDCWD, f->path);
	f->fan = false;
	while (f->fan_q) {
		struct mrl_fan_ev *e = f->fan_q;
		f->fan_q = e->next;
		mrl_fan_answer(ctx, e, 0);
		mrl_fan_ev_free(e);
	}
}

/* Any close may have been the last early opener's. */
void mrl_fan_on_close(struct mrl_ctx *ctx, struct mrl_file *f)
{
	if (f->fan && !f->fan_complete && !f->brk)
		fan_probe_complete(ctx, f);
}

/* ---- answers ---- */

static bool read_line(struct mrl_ctx *ctx, struct mrl_fan_ev *e, int tries);

/* Landing is judged by the actor leaving the call whose line we saw. A
 * line still "running" when classified is learned while landing (landed:
 * the first line seen outside "running" is the call or one after it); no
 * /proc read is made here, under ctx->lock, at the answer. */
void mrl_fan_answer(struct mrl_ctx *ctx, struct mrl_fan_ev *e, int deny_errno)
{
	if (e->fd < 0 || e->answered || ctx->fan_fd < 0)
		return;
	if (!mrl_guard_fan_take(e)) { /* the guardian let it go: reaped as seen after */
		e->answered = true;
		return;
	}
	struct fanotify_response r = {
		.fd = e->fd,
		.response = deny_errno ? FAN_DENY_ERRNO(deny_errno) : FAN_ALLOW,
	};
	if (write(ctx->fan_fd, &r, sizeof(r)) != sizeof(r))
		mrl_log("fanotify answer failed: %s", strerror(errno));
	mrl_guard_fan_answered(e);
	e->answered = true;
}

void mrl_fan_ev_free(struct mrl_fan_ev *e)
{
	if (!mrl_guard_fan_free(e))
		return; /* the guardian's answer names its fd: kept until reaped */
	if (e->fd >= 0)
		close(e->fd);
	free(e);
}

/* ---- classification ---- */

/* The actor's system call while it waits: "NR arg0 arg1 ...", or
 * "running", or nothing when it is gone. The monitor keeps the files of
 * the last few actors open (fan_sys: an actor that breaks again is read
 * with one pread, not open+read+close); a file of a thread that has gone
 * reads as an error, never another thread's line (it names the old task),
 * and is dropped. The cache is taken by trylock: another thread reading
 * meanwhile opens its own. */
static ssize_t sys_pread(int fd, char *buf, size_t n)
{
	ssize_t k = pread(fd, buf, n - 1, 0);
	return k;
}

static int read_syscall(struct mrl_ctx *ctx, pid_t tid, char *buf, size_t n)
{
	ssize_t k = -1;
	int err = ENOENT;
	bool cached = ctx && !pthread_mutex_trylock(&ctx->fan_sys_lock);
	if (cached) {
		int slot = -1;
		for (int i = 0; i < MRL_FAN_SYS_CACHE && slot < 0; i++)
			if (ctx->fan_sys[i].fd1 && ctx->fan_sys[i].tid == tid)
				slot = i;
		if (slot >= 0) {
			k = sys_pread(ctx->fan_sys[slot].fd1 - 1, buf, n);
			err = errno;
			if (k <= 0) { /* gone (or no line): forget it, open afresh below */
				close(ctx->fan_sys[slot].fd1 - 1);
				ctx->fan_sys[slot].fd1 = 0;
			}
		}
	}
	if (k <= 0) {
		char path[48];
		snprintf(path, sizeof(path), "/proc/%d/syscall", (int)tid);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			err = errno;
		} else {
			k = sys_pread(fd, buf, n);
			err = errno;
			if (cached && k > 0) { /* keep it, in the oldest slot */
				int i = ctx->fan_sys_next++ % MRL_FAN_SYS_CACHE;
				if (ctx->fan_sys[i].fd1)
					close(ctx->fan_sys[i].fd1 - 1);
				ctx->fan_sys[i].fd1 = fd + 1;
				ctx->fan_sys[i].tid = tid;
			} else {
				close(fd);
			}
		}
	}
	if (cached)
		mrl_unlock(&ctx->fan_sys_lock);
	if (k <= 0)
		return k < 0 ? -err : -ENODATA;
	buf[k] = 0;
	buf[strcspn(buf, "\n")] = 0;
	return 0;
}

/* Read the actor's line into e->line until it is not "running", at most
 * tries times. false if the actor is gone. */
static bool read_line(struct mrl_ctx *ctx, struct mrl_fan_ev *e, int tries)
{
	for (int i = 0;; i++) {
		if (read_syscall(ctx, e->tid, e->line, sizeof(e->line)) < 0)
			return false;
		if (strcmp(e->line, "running") || i >= tries)
			return true;
		struct timespec ts = {0, i < 20 ? 0 : 50000};
		if (i < 20)
			sched_yield();
		else
			nanosleep(&ts, NULL);
	}
}

static int parse_call(const char *line, uint64_t *arg1, uint64_t *arg2, uint64_t *arg3);

static int classify(struct mrl_ctx *ctx, struct mrl_fan_ev *e, uint64_t *arg1, uint64_t *arg2,
		    uint64_t *arg3)
{
	/* The actor queues the event, wakes us, then goes to sleep for the
	 * answer: until it sleeps its line reads "running". It will sleep
	 * (nobody else answers), so look again, briefly. A busy machine may
	 * keep it from its sleep longer: then the change is unknown (the
	 * safe side), and the line is read again before the answer. */
	if (!read_line(ctx, e, 200))
		return FOP_LAYOUT;
	return parse_call(e->line, arg1, arg2, arg3);
}

/* The change a /proc/TID/syscall line names (FOP_LAYOUT: unknown). */
static int parse_call(const char *line, uint64_t *arg1, uint64_t *arg2, uint64_t *arg3)
{
	long nr;
	unsigned long long a[4] = {0};
	if (sscanf(line, "%ld %llx %llx %llx %llx", &nr, &a[0], &a[1], &a[2], &a[3]) < 2)
		return FOP_LAYOUT; /* "running" or a kernel thread (io_uring worker): unknown */
	*arg1 = a[1];
	*arg2 = a[2];
	*arg3 = a[3];
	switch (nr) {
	case SYS_read: case SYS_pread64: case SYS_readv: case SYS_preadv: case SYS_preadv2:
	case SYS_write: case SYS_pwrite64: case SYS_writev: case SYS_pwritev: case SYS_pwritev2:
	case SYS_sendfile: case SYS_splice: case SYS_copy_file_range: case SYS_readahead:
	case SYS_mmap: case SYS_fadvise64:
		return FOP_DATA;
	case SYS_truncate: case SYS_ftruncate:
		return FOP_TRUNCATE;
	case SYS_fallocate: {
		uint64_t mode = a[1];
		if (mode & FALLOC_FL_PUNCH_HOLE)
			return FOP_PUNCH;
		if (mode & (FALLOC_FL_ZERO_RANGE | FALLOC_FL_WRITE_ZEROES))
			return FOP_ZERO;
		if (mode & FALLOC_FL_COLLAPSE_RANGE)
			return FOP_COLLAPSE;
		if (mode & FALLOC_FL_INSERT_RANGE)
			return FOP_INSERT;
		if (!(mode & ~(uint64_t)FALLOC_FL_KEEP_SIZE))
			return FOP_ALLOC; /* allocation keeps every page that is there */
		return FOP_LAYOUT;
	}
	case SYS_ioctl:
		return FOP_LAYOUT; /* FICLONE, FIDEDUPERANGE, ...: blocks replaced */
	default:
		return FOP_LAYOUT;
	}
}

static const int op_cause[] = {
	[FOP_TRUNCATE] = MRL_CAUSE_TRUNCATED, [FOP_PUNCH] = MRL_CAUSE_PUNCH_HOLE,
	[FOP_ZERO] = MRL_CAUSE_ZERO_RANGE, [FOP_COLLAPSE] = MRL_CAUSE_COLLAPSE_RANGE,
	[FOP_INSERT] = MRL_CAUSE_INSERT_RANGE, [FOP_LAYOUT] = MRL_CAUSE_LAYOUT,
};

/* The actor's process. /proc/TID/status costs ~20 us; tgkill(TGID, TID, 0)
 * answers "is TID a thread of TGID" in about one: ask it for our own process
 * and for TID as its own leader first. EPERM still means "yes, it exists". */
static bool thread_of(pid_t tgid, pid_t tid)
{
	return syscall(SYS_tgkill, tgid, tid, 0) == 0 || errno == EPERM;
}

static pid_t tgid_of(pid_t tid)
{
	char path[64], line[128];
	if (thread_of(getpid(), tid))
		return getpid();
	if (thread_of(tid, tid))
		return tid;
	pid_t tgid = tid;
	snprintf(path, sizeof(path), "/proc/%d/status", (int)tid);
	FILE *s = fopen(path, "re");
	if (!s)
		return tid;
	while (fgets(line, sizeof(line), s))
		if (sscanf(line, "Tgid: %d", &tgid) == 1)
			break;
	fclose(s);
	return tgid;
}


struct deny_scan {
	int err;
	struct mrl_ctx *ctx;
	struct mrl_fan_ev *e;
	bool post;
};
static int deny_cb(struct mrl_itree_node *n, void *p)
{
	struct deny_scan *d = p;
	struct mrl_mr *mr = MR_OF_FNODE(n);
	if (mr->policy != MRL_POLICY_DENY || mr->state == MRL_STATE_FENCED ||
	    mr->state == MRL_STATE_DEREGISTERED)
		return 0;
	if (!d->err)
		d->err = mr->deny_errno;
	if (d->post) {
		uint64_t lo = d->e->lo > mr->fnode.start ? d->e->lo - mr->fnode.start : 0;
		uint64_t end = d->e->hi < mr->fnode.start + mr->len ? d->e->hi - mr->fnode.start : mr->len;
		mr->denials++;
		mr->cause = d->e->cause;
		mr->cause_pid = d->e->pid;
		mr->cause_off = lo;
		mr->cause_len = end - lo;
		mrl_post_event(d->ctx, mr, MRL_EVENT_DENIED, d->e->cause, lo, end - lo, d->e->pid, 0,
			       d->e->seen);
	}
	return 0;
}

/* Refuse e now if a deny MR lies under it: true when refused (and freed). */
static bool try_deny(struct mrl_ctx *ctx, struct mrl_file *f, struct mrl_fan_ev *e)
{
	struct deny_scan d = {.ctx = ctx, .e = e, .post = true};
	mrl_itree_overlap(&f->mrs, e->lo, e->hi, deny_cb, &d);
	if (!d.err)
		return false;
	ctx->st.denials++;
	mrl_fan_answer(ctx, e, d.err);
	mrl_fan_ev_free(e);
	return true;
}

static void start_next(struct mrl_ctx *ctx, struct mrl_file *f)
{
	while (f->fan_q && !f->brk) {
		struct mrl_fan_ev *e = f->fan_q;
		f->fan_q = e->next;
		e->next = NULL;
		if (e->gdone) { /* the guardian let it go while it waited here */
			mrl_fan_guard_let(ctx, e, mrl_now_ns());
			mrl_fan_ev_free(e);
			continue;
		}
		/* refused now if a deny MR came into its range meanwhile */
		if (try_deny(ctx, f, e))
			continue;
		struct mrl_brk *b = mrl_brk_begin(ctx, f, &mrl_watch_fan, e->cause, e->pid, e->lo,
						  e->hi, e->seen, e);
		if (b) {
			mrl_guard_fan_deadline(e, b->deadline_ns);
		} else {
			/* nothing live under the range any more */
			mrl_fan_answer(ctx, e, 0);
			mrl_fan_ev_free(e);
		}
	}
}

/* The actor's call, read while it waits in the kernel, and its process:
 * no lock held (the read may take a while when the actor has not gone to
 * sleep yet; the process may take a /proc read). */
static void classify_now(struct mrl_ctx *ctx, struct mrl_fan_ev *e)
{
	uint64_t t0 = mrl_now_ns();
	e->op = classify(ctx, e, &e->args[0], &e->args[1], &e->args[2]);
	if (e->op != FOP_DATA && e->op != FOP_ALLOC)
		e->pid = tgid_of(e->tid); /* a change: its event names the process */
	e->classify_ns = mrl_now_ns() - t0;
	e->classified = true;
}

/* An open of a file that backs MRs: O_TRUNC truncates it to 0 inside the
 * open, after FAN_OPEN_PERM and with no pre-content event of its own (Linux
 * 6.18: handle_truncate runs after the permission event and checks with
 * nobody). So the opener's call decides: open/openat/openat2/creat with
 * O_TRUNC is a truncate to 0, held at its open. An opener whose call
 * cannot be read (an io_uring worker) is let go: inotify sees the truncate
 * after it lands. No lock held. */
static bool parse_open(struct mrl_fan_ev *e, bool live);

static void classify_open(struct mrl_ctx *ctx, struct mrl_fan_ev *e)
{
	uint64_t t0 = mrl_now_ns();
	bool known = read_line(ctx, e, 200) && parse_open(e, true);
	if (!known)
		mrl_log("fanotify: an open by %d [%s] not classified: an O_TRUNC in it is seen after",
			(int)e->tid, e->line);
	if (e->op == FOP_TRUNCATE)
		e->pid = tgid_of(e->tid); /* a change: its event names the process */
	e->classify_ns = mrl_now_ns() - t0;
	e->classified = true;
}

/* e->line is an open: a truncate to 0 with O_TRUNC, else data. false when
 * the line names no open it can read (live: the actor still waits in it,
 * so its memory can be read for openat2's flags). */
static bool parse_open(struct mrl_fan_ev *e, bool live)
{
	long nr;
	unsigned long long a[4] = {0};
	uint64_t flags = 0;
	bool known = true;
	e->op = FOP_DATA;
	if (sscanf(e->line, "%ld %llx %llx %llx %llx", &nr, &a[0], &a[1], &a[2], &a[3]) >= 2) {
		switch (nr) {
		case SYS_open: flags = a[1]; break;
		case SYS_creat: flags = O_TRUNC; break;
		case SYS_openat: case SYS_open_by_handle_at: flags = a[2]; break;
#ifdef SYS_openat2
		case SYS_openat2: { /* struct open_how: its first field is the flags */
			struct iovec here = {&flags, sizeof(flags)}, there = {(void *)(uintptr_t)a[2], sizeof(flags)};
			if (!live || process_vm_readv(e->tid, &here, 1, &there, 1, 0) != sizeof(flags))
				known = false;
			break;
		}
#endif
		default: known = false; break;
		}
	} else {
		known = false;
	}
	if (flags & O_TRUNC) {
		e->op = FOP_TRUNCATE;
		e->args[0] = 0; /* the new size */
	}
	return known;
}

static int live_cb(struct mrl_itree_node *n, void *p)
{
	struct mrl_fan_ev *e = p;
	struct mrl_mr *mr = MR_OF_FNODE(n);
	return mr->state == MRL_STATE_ACTIVE && mr->fnode.start + mr->valid_len > e->lo;
}

/* A call that asks again while its own break is landing (a reflink or
 * dedupe within the file asks for its source and then its destination) has
 * not landed: it waits for this answer. (An actor's next unclassified call,
 * seen before the first's landing was noticed, is the same case.) Queued behind its own break it
 * would wait the whole landing deadline, and its next break would start
 * with its deadline already spent. When that break holds every live MR of
 * the new range, the change is covered: let it go; the break lands when
 * the call is left. */
static bool absorbed(struct mrl_file *f, struct mrl_fan_ev *e)
{
	struct mrl_brk *b = f->brk;
	if (!b || b->src != &mrl_watch_fan || !b->fev || b->phase != BRK_LANDING ||
	    b->fev->tid != e->tid || b->fev->op != FOP_LAYOUT)
		return false;
	if (!strcmp(e->line, "running"))
		return false; /* may be a truncate (it fences): not absorbed */
	if (e->op != FOP_LAYOUT)
		return false;
	if (mrl_itree_overlap(&f->mrs, e->lo, e->hi, live_cb, e))
		return false; /* an MR there came live since the break began */
	mrl_log("fanotify: %s by %d: the same call again, its break holds the range",
		mrl_cause_str((unsigned)e->cause), (int)e->tid);
	/* A line that differs ("running" on either side, or a later call of
	 * the actor's): landing is judged by the newest, which the actor
	 * leaves last; "running" learns it (landed). */
	if (strcmp(e->line, b->fev->line)) {
		snprintf(b->fev->line, sizeof(b->fev->line), "%s", e->line);
		b->fev->line_gen++; /* a look at the older call is not this one's */
	}
	b->fev->modified = false; /* its FAN_MODIFY comes after this part too */
	return true;
}

/* The file bytes a classified change touches, hi exclusive; false for a
 * plain read or write (content, not layout). */
static bool change_of(struct mrl_fan_ev *e, uint64_t *lo, uint64_t *hi)
{
	uint64_t a1 = e->args[0], a2 = e->args[1], a3 = e->args[2];
	if (!e->classified)
		e->op = FOP_LAYOUT;
	switch (e->op) {
	case FOP_DATA: case FOP_ALLOC:
		return false;
	case FOP_TRUNCATE:
		/* the range record is page-rounded; the call has the exact size */
		*lo = a1;
		*hi = UINT64_MAX;
		break;
	case FOP_PUNCH: case FOP_ZERO:
		*lo = a2;
		*hi = a2 + a3 < a2 ? UINT64_MAX : a2 + a3;
		break;
	case FOP_COLLAPSE: case FOP_INSERT:
		*lo = a2; /* everything after the offset moves */
		*hi = UINT64_MAX;
		break;
	default:
		/* Unclassified (an ioctl such as FICLONERANGE or
		 * FIDEDUPERANGE, an unknown fallocate mode, a line read as
		 * "running"): a layout change of the whole file. The range
		 * named is one of possibly several the same call asks for
		 * (a reflink within the file: source, then destination), and
		 * the call lands only once all are answered: its break must
		 * hold them all (absorbed, below). */
		e->op = FOP_LAYOUT;
		*lo = 0;
		*hi = UINT64_MAX;
		break;
	}
	return true;
}

/* ctx->lock held: the guardian let e go (the owner did not answer by its
 * deadline + margin, or never read it): whatever it changes has landed or
 * is landing unpaused. Announce it as seen after it landed, once. */
void mrl_fan_guard_let(struct mrl_ctx *ctx, struct mrl_fan_ev *e, uint64_t at)
{
	uint64_t lo, hi;
	if (e->gapplied)
		return;
	e->gapplied = true;
	struct mrl_file *f = e->dev || e->ino ? mrl_file_find(ctx, e->dev, e->ino) : NULL;
	if (!f || !change_of(e, &lo, &hi))
		return;
	int cause = op_cause[e->op];
	mrl_log("fanotify: the guardian %s %s by %d [%s] past its deadline%s",
		e->gdenied ? "refused" : "let", mrl_cause_str((unsigned)cause), (int)e->tid, e->line,
		e->gdenied ? "" : " go: seen after it landed");
	struct mrl_mr_vec vec;
	mrl_file_mrs_range(f, lo, hi, &vec);
	for (size_t i = 0; i < vec.n; i++) {
		struct mrl_mr *mr = vec.v[i];
		uint64_t off = lo > mr->fnode.start ? lo - mr->fnode.start : 0;
		uint64_t end = hi - mr->fnode.start < mr->len && hi > mr->fnode.start ? hi - mr->fnode.start : mr->len;
		if (e->gdenied) { /* nothing changed: the actor was told EBUSY */
			if (off < mr->valid_len && (mr->state == MRL_STATE_ACTIVE || mr->state == MRL_STATE_PAUSED)) {
				mr->denials++;
				mrl_post_event(ctx, mr, MRL_EVENT_DENIED, (uint32_t)cause, off, end - off,
					       e->pid ? e->pid : e->tid, 0, at);
			}
		} else if (e->op != FOP_TRUNCATE)
			mrl_mr_changed_after(ctx, mr, cause, off, end - off, at);
		else if (off < mr->valid_len) /* its pages past the new end are gone */
			mrl_mr_fence_locked(ctx, mr, MRL_CAUSE_TRUNCATED, off, mr->len - off, 0, at);
	}
	free(vec.v);
}

static void on_modify(struct mrl_ctx *ctx, dev_t dev, ino_t ino, pid_t tid);

/* ctx->lock held: an event the guardian read and let go itself. */
void mrl_fan_guard_rec(struct mrl_ctx *ctx, uint64_t dev, uint64_t ino, uint32_t mask, pid_t tid,
		       uint64_t lo, uint64_t hi, const char *line, uint64_t at, bool denied)
{
	if (mask & FAN_MODIFY) {
		on_modify(ctx, (dev_t)dev, (ino_t)ino, tid);
		return;
	}
	struct mrl_fan_ev e = {.fd = -1, .dev = (dev_t)dev, .ino = (ino_t)ino, .tid = tid,
			       .mask = mask, .lo = lo, .hi = hi, .gdenied = denied};
	snprintf(e.line, sizeof(e.line), "%s", line);
	if (mask & FAN_OPEN_PERM)
		e.classified = parse_open(&e, false);
	else if ((e.op = parse_call(e.line, &e.args[0], &e.args[1], &e.args[2])) != FOP_LAYOUT)
		e.classified = true;
	mrl_fan_guard_let(ctx, &e, at);
}

/* ctx->lock held; e was read by fan_read (again: classified since, by fan_look) */
static void on_pre_access(struct mrl_ctx *ctx, struct mrl_fan_ev *e, bool again)
{
	ctx->st.fan_events += !again;
	if (e->gdone) { /* the guardian let it go before we got here */
		mrl_fan_guard_let(ctx, e, mrl_now_ns());
		mrl_fan_ev_free(e);
		return;
	}
	struct mrl_file *f = e->dev || e->ino ? mrl_file_find(ctx, e->dev, e->ino) : NULL;
	if (!f || !f->fan || !mrl_itree_first_overlap(&f->mrs, e->lo, e->hi)) {
		ctx->st.fan_pass_range++;
		goto allow;
	}
	if (!e->classified) {
		/* an MR came into its range since it was read (rare): its
		 * actor's line is read with no lock held (fan_look), and the
		 * event comes back here (fan_tick); the actor waits meanwhile */
		e->next = ctx->fan_later;
		ctx->fan_later = e;
		return;
	}
	if (e->mask & FAN_OPEN_PERM)
		ctx->st.fan_opens++;
	ctx->st.classify_ns_total += e->classify_ns;
	ctx->st.classify_count++;
	uint64_t named_lo = e->lo, named_hi = e->hi;
	if (!change_of(e, &e->lo, &e->hi)) {
		/* content written by others is shared memory (README, "Data
		 * written by others"): no pause, no new generation; the lease
		 * restores such a write under the generation it had too */
		ctx->st.fan_pass_data++;
		goto allow;
	}
	if (e->op == FOP_TRUNCATE)
		e->target = e->args[0];
	e->cause = op_cause[e->op];
	mrl_log("fanotify: %s by %d [%s] over %llu..%llu (named %llu..%llu)", mrl_cause_str((unsigned)e->cause),
		(int)e->tid, e->line, (unsigned long long)e->lo, (unsigned long long)e->hi,
		(unsigned long long)named_lo, (unsigned long long)named_hi);
	if (!mrl_itree_first_overlap(&f->mrs, e->lo, e->hi)) {
		ctx->st.fan_pass_range++;
		goto allow;
	}
	ctx->st.fan_layout++;
	if (!e->pid) /* found with no lock held when classified; never read here */
		e->pid = e->tid;
	if (try_deny(ctx, f, e))
		return;
	if (absorbed(f, e))
		goto allow;
	struct mrl_fan_ev **tail = &f->fan_q;
	while (*tail)
		tail = &(*tail)->next;
	*tail = e;
	start_next(ctx, f);
	return;
allow:
	mrl_fan_answer(ctx, e, 0);
	mrl_fan_ev_free(e);
}

/* ---- landing ---- */

/* ctx->lock held: has e's change landed? The actor's line is the one
 * fan_look read with no lock held since the last check, if any (and read
 * against the line e has now). */
static bool landed(struct mrl_fan_ev *e)
{
	if (e->modified)
		return true;
	if (e->op == FOP_TRUNCATE) {
		struct stat st;
		if (fstat(e->fd, &st) == 0 && (uint64_t)st.st_size == e->target)
			return true;
	}
	int look = e->look;
	e->look = 0;
	if (!look || e->look_gen != e->line_gen)
		return false; /* nothing read since, or read for an older line: look again */
	if (look == 2)
		return true; /* the actor is gone */
	const char *now = e->look_line;
	/* Left the call (done, or failed and changed nothing)? "running" may
	 * still be inside it. Never seen outside "running" (see mrl_fan_answer):
	 * any call may be this one; the signs above, the line learned now, or
	 * the landing deadline end it (and a shrink seen after still fences). */
	if (!strcmp(e->line, "running")) {
		/* The first line seen outside "running" is the call, or one
		 * after it: leaving that is a sign the change has landed, far
		 * sooner than the landing deadline. */
		if (strcmp(now, "running")) {
			snprintf(e->line, sizeof(e->line), "%s", now);
			e->line_gen++;
		}
		return false;
	}
	return strcmp(now, "running") != 0 && strcmp(now, e->line) != 0;
}

/* Quiesced: the actor goes on, the change lands. */
static void fan_let_land(struct mrl_ctx *ctx, struct mrl_brk *b, uint64_t now)
{
	mrl_fan_answer(ctx, b->fev, 0);
	b->poll_at = now + 250000ull;
}

/* A truncate known to have landed (its size seen, or its own FAN_MODIFY)
 * dropped every page past its new end, even if the file has grown again
 * since (cp OTHER FILE writes right after its O_TRUNC open): fence past the
 * new end, not past whatever size the restore finds. */
static void fence_past_target(struct mrl_ctx *ctx, struct mrl_brk *b)
{
	struct mrl_fan_ev *e = b->fev;
	struct stat st;
	if (e->op != FOP_TRUNCATE ||
	    !(e->modified || (fstat(e->fd, &st) == 0 && (uint64_t)st.st_size == e->target)))
		return;
	uint64_t now = mrl_now_ns();
	for (size_t i = 0; i < b->mrs.n; i++) {
		struct mrl_mr *mr = b->mrs.v[i];
		uint64_t avail = e->target > mr->fnode.start ? e->target - mr->fnode.start : 0;
		if (mr->in_brk && avail < mr->valid_len)
			mrl_mr_fence_locked(ctx, mr, MRL_CAUSE_TRUNCATED, avail, mr->len - avail, e->pid, now);
	}
}

void mrl_fan_check_landed(struct mrl_ctx *ctx, struct mrl_file *f)
{
	struct mrl_brk *b = f->brk;
	if (!b || !b->fev || b->phase != BRK_LANDING)
		return;
	bool looked = b->fev->look && b->fev->look_gen == b->fev->line_gen;
	if (!landed(b->fev)) {
		/* looked: again in a while; else a look in the monitor's next round */
		b->poll_at = mrl_now_ns() + (looked ? 250000ull : 0);
		return;
	}
	fence_past_target(ctx, b);
	mrl_brk_finish(ctx, f->brk);
	start_next(ctx, f);
}

/* never leave an actor waiting in the kernel */
static void fan_brk_done(struct mrl_ctx *ctx, struct mrl_brk *b)
{
	mrl_fan_answer(ctx, b->fev, 0);
	mrl_fan_ev_free(b->fev);
	b->fev = NULL;
}

/* The brk timed out waiting for the landing: resume anyway. */
static void landing_timeout(struct mrl_ctx *ctx, struct mrl_file *f)
{
	mrl_log("%s: the change by %d did not finish in time; restoring", f->path,
		(int)f->brk->fev->tid);
	mrl_brk_finish(ctx, f->brk);
	start_next(ctx, f);
}

static void on_modify(struct mrl_ctx *ctx, dev_t dev, ino_t ino, pid_t tid)
{
	struct mrl_file *f = dev || ino ? mrl_file_find(ctx, dev, ino) : NULL;
	if (!f || !f->brk || !f->brk->fev || f->brk->fev->tid != tid)
		return;
	f->brk->fev->modified = true;
	mrl_fan_check_landed(ctx, f);
}

/* No lock held: read every event; let opens go at once; classify the
 * pre-access events that fall on an MR (the actor's /proc line, which may
 * take a while) before ctx->lock is taken, so nobody waits on the lock for
 * it. The monitor alone reads and drains. */
static void fan_read(struct mrl_ctx *ctx)
{
	char buf[8192] __attribute__((aligned(__alignof__(struct fanotify_event_metadata))));
	struct mrl_fan_ev **tail = &ctx->fan_read_q, **first;
	while (*tail)
		tail = &(*tail)->next;
	first = tail;
	ssize_t n;
	uint64_t mark = 0, dl = (uint64_t)ctx->opts.deadline_ms * 1000000ull;
	if (!mrl_guard_read_begin(ctx, &mark))
		return; /* the guardian is reading what we did not */
	while ((n = read(ctx->fan_fd, buf, sizeof(buf))) > 0) {
		uint64_t seen = mrl_now_ns();
		struct fanotify_event_metadata *md = (void *)buf;
		for (; FAN_EVENT_OK(md, n); md = FAN_EVENT_NEXT(md, n)) {
			if (md->vers != FANOTIFY_METADATA_VERSION) {
				mrl_log("fanotify: metadata version %u, expected %u", md->vers,
					FANOTIFY_METADATA_VERSION);
				if (md->fd >= 0)
					close(md->fd);
				continue;
			}
			if (md->fd < 0)
				continue; /* overflow: permission events are never dropped */
			const struct fan_range_info *rg = NULL;
			for (char *p = (char *)md + md->metadata_len; p + sizeof(struct fanotify_event_info_header) <= (char *)md + md->event_len;) {
				const struct fanotify_event_info_header *h = (void *)p;
				if (!h->len)
					break;
				if (h->info_type == FAN_EVENT_INFO_TYPE_RANGE && h->len >= sizeof(*rg))
					rg = (const void *)p;
				p += h->len;
			}
			struct mrl_fan_ev *e = calloc(1, sizeof(*e));
			if (!e || !(md->mask & (FAN_OPEN_PERM | FAN_PRE_ACCESS | FAN_MODIFY))) {
				struct mrl_fan_ev tmp = {.fd = md->fd};
				if (md->mask & (FAN_OPEN_PERM | FAN_PRE_ACCESS))
					mrl_fan_answer(ctx, &tmp, 0); /* never leave an actor waiting */
				close(md->fd);
				free(e);
				continue;
			}
			e->fd = md->fd;
			e->id = ++ctx->fan_ids;
			e->tid = md->pid;
			e->seen = seen;
			e->mask = md->mask;
			e->lo = rg ? rg->offset : 0;
			e->hi = rg && rg->count ? rg->offset + rg->count : UINT64_MAX;
			struct stat st;
			if (fstat(md->fd, &st) == 0) {
				e->dev = st.st_dev;
				e->ino = st.st_ino;
				e->size = (uint64_t)st.st_size;
			}
			/* a modify event's fd is not needed (an open file
			 * description held here counts as another opener for
			 * the lease probe, F_SETLEASE) */
			if (md->mask & FAN_MODIFY) {
				close(e->fd);
				e->fd = -1;
			} else {
				mrl_guard_fan_hold(ctx, e, seen + dl);
			}
			*tail = e;
			tail = &e->next;
		}
	}
	if (mrl_guard_read_end(ctx, mark)) {
		/* stopped inside this read, the guardian answered every
		 * number we might hold: all of it went through unpaused */
		for (struct mrl_fan_ev *e = *first; e; e = e->next) {
			mrl_fan_answer(ctx, e, 0);
			e->gdone = true;
		}
	}
	/* Under the lock, briefly: opens change nothing, let them go (answer
	 * and close together under the lock, as a thread that saw its open
	 * return then probes the file's openers under it); and which events
	 * fall on an MR. The long part, classifying those, after. */
	mrl_lock(&ctx->lock);
	for (struct mrl_fan_ev *e = ctx->fan_read_q; e; e = e->next) {
		if (e->classified || e->fd < 0)
			continue;
		struct mrl_file *f = (e->mask & (FAN_PRE_ACCESS | FAN_OPEN_PERM))
					     ? mrl_file_find(ctx, e->dev, e->ino) : NULL;
		e->on_mr = f && f->fan && mrl_itree_first_overlap(&f->mrs, e->lo, e->hi);
		/* an open of a file without MRs cannot truncate one: let it go */
		if ((e->mask & FAN_OPEN_PERM) && !e->on_mr) {
			mrl_fan_answer(ctx, e, 0);
			close(e->fd);
			e->fd = -1;
		}
	}
	mrl_unlock(&ctx->lock);
	for (struct mrl_fan_ev *e = ctx->fan_read_q; e; e = e->next)
		if (e->on_mr && !e->classified) {
			if (e->mask & FAN_OPEN_PERM)
				classify_open(ctx, e);
			else
				classify_now(ctx, e);
		}
}

/* ctx->lock held: handle what fan_read read. */
static void fan_drain(struct mrl_ctx *ctx)
{
	while (ctx->fan_read_q) {
		struct mrl_fan_ev *e = ctx->fan_read_q;
		ctx->fan_read_q = e->next;
		e->next = NULL;
		if (e->gdone && (e->mask & (FAN_PRE_ACCESS | FAN_OPEN_PERM))) {
			ctx->st.fan_events++;
			mrl_fan_guard_let(ctx, e, mrl_now_ns());
			mrl_fan_ev_free(e);
		} else if ((e->mask & FAN_OPEN_PERM) && (e->fd < 0 || e->op != FOP_TRUNCATE)) {
			/* answered in fan_read, or a plain open of a file with MRs:
			 * answered and closed here, under the lock, at once */
			ctx->st.fan_events++;
			ctx->st.fan_opens++;
			mrl_fan_answer(ctx, e, 0);
			mrl_fan_ev_free(e);
		} else if (e->mask & (FAN_PRE_ACCESS | FAN_OPEN_PERM)) {
			on_pre_access(ctx, e, false);
		} else {
			on_modify(ctx, e->dev, e->ino, e->tid);
			mrl_fan_ev_free(e);
		}
	}
}

/* Test hook: the monitor stops here, no lock held, before it reads a
 * landing actor's line (t_fan_look_unlocked). NULL in use. */
_Atomic mrl_test_hook mrl_fan_look_hook;

/* No lock held, in the monitor each round: the /proc reads fanotify may not
 * make under ctx->lock. Events an MR came under after they were read are
 * classified (fan_later: the monitor's alone, off every file's queue, so
 * nobody else reaches them). The actors of landing breaks that are due a
 * look have their line read: copied under the lock by id, tid and line
 * generation, read with none, published under it to the event that still
 * has that id and generation (a break freed meanwhile, or a line learned
 * meanwhile, drops the reading; the next check looks again). */
#define FAN_LOOKS 8
static void fan_look(struct mrl_ctx *ctx, uint64_t now)
{
	if (ctx->fan_fd < 0)
		return;
	for (struct mrl_fan_ev *e = ctx->fan_later; e; e = e->next)
		if (!e->classified) {
			if (e->mask & FAN_OPEN_PERM)
				classify_open(ctx, e);
			else
				classify_now(ctx, e);
		}
	struct {
		uint64_t id;
		uint32_t gen;
		pid_t tid;
		bool gone;
		char line[sizeof(((struct mrl_fan_ev *)0)->line)];
	} lk[FAN_LOOKS];
	int n = 0;
	mrl_lock(&ctx->lock);
	for (struct mrl_file *f = ctx->files; f && n < FAN_LOOKS; f = f->next) {
		struct mrl_brk *b = f->brk;
		if (b && b->src == &mrl_watch_fan && b->fev && b->phase == BRK_LANDING &&
		    now >= b->poll_at && !b->fev->modified) {
			lk[n].id = b->fev->id;
			lk[n].gen = b->fev->line_gen;
			lk[n++].tid = b->fev->tid;
		}
	}
	mrl_unlock(&ctx->lock);
	if (!n)
		return;
	mrl_test_hook hook = atomic_load(&mrl_fan_look_hook);
	if (hook)
		hook(ctx);
	for (int i = 0; i < n; i++)
		lk[i].gone = read_syscall(ctx, lk[i].tid, lk[i].line, sizeof(lk[i].line)) < 0;
	mrl_lock(&ctx->lock);
	for (int i = 0; i < n; i++)
		for (struct mrl_file *f = ctx->files; f; f = f->next) {
			struct mrl_fan_ev *e = f->brk && f->brk->src == &mrl_watch_fan ? f->brk->fev : NULL;
			if (!e || e->id != lk[i].id)
				continue;
			if (e->line_gen == lk[i].gen) {
				e->look = lk[i].gone ? 2 : 1;
				e->look_gen = lk[i].gen;
				snprintf(e->look_line, sizeof(e->look_line), "%s", lk[i].line);
			}
			break;
		}
	mrl_unlock(&ctx->lock);
}

static void fan_tick(struct mrl_ctx *ctx, uint64_t now)
{
	/* classified by fan_look, with no lock held (one put here since waits
	 * for the next round's look) */
	for (struct mrl_fan_ev **q = &ctx->fan_later; *q;) {
		struct mrl_fan_ev *e = *q;
		if (!e->classified) {
			q = &e->next;
			continue;
		}
		*q = e->next;
		e->next = NULL;
		on_pre_access(ctx, e, true);
	}
	for (struct mrl_file *f = ctx->files; f; f = f->next) {
		struct mrl_brk *b = f->brk;
		if (!b || b->src != &mrl_watch_fan || b->phase != BRK_LANDING)
			continue;
		if (now >= b->landing_deadline_ns)
			landing_timeout(ctx, f);
		else if (now >= b->poll_at)
			mrl_fan_check_landed(ctx, f);
	}
}

static uint64_t fan_next_timer(struct mrl_ctx *ctx)
{
	uint64_t t = ctx->fan_later ? 0 : UINT64_MAX;
	for (struct mrl_file *f = ctx->files; f; f = f->next) {
		struct mrl_brk *b = f->brk;
		if (!b || b->src != &mrl_watch_fan || b->phase != BRK_LANDING)
			continue;
		if (b->landing_deadline_ns < t)
			t = b->landing_deadline_ns;
		if (b->poll_at < t)
			t = b->poll_at;
	}
	return t;
}

static int fan_poll_fd(struct mrl_ctx *ctx)
{
	return ctx->fan_fd;
}

static unsigned fan_coverage(struct mrl_ctx *ctx, struct mrl_mr *mr, uint8_t *cov)
{
	(void)ctx;
	struct mrl_file *f = mr->file;
	if (!f || !f->fan)
		return 0;
	/* Truncates always announce themselves; writes and fallocates only
	 * through file descriptions opened after the mark, which is all of
	 * them once the lease probe proved no older one exists. Opens are
	 * seen and let through, an O_TRUNC one as a truncate (classify_open).
	 * Renames and unlinks have no pre-content event: inotify's, after. */
	static const int always[] = {MRL_CHG_OTHER_OPEN_READ, MRL_CHG_OTHER_OPEN_WRITE,
				     MRL_CHG_OWNER_OPEN, MRL_CHG_OTHER_TRUNCATE,
				     MRL_CHG_OWNER_TRUNCATE, MRL_CHG_OTHER_OPEN_TRUNC};
	static const int young[] = {MRL_CHG_OTHER_LAYOUT, MRL_CHG_OTHER_WRITE,
				    MRL_CHG_OWNER_LAYOUT, MRL_CHG_OWNER_WRITE};
	for (size_t i = 0; i < ARRAY_SIZE(always); i++)
		mrl_cov_raise(cov, always[i], MRL_SEEN_BEFORE);
	for (size_t i = 0; f->fan_complete && i < ARRAY_SIZE(young); i++)
		mrl_cov_raise(cov, young[i], MRL_SEEN_BEFORE);
	return MRL_WATCH_FANOTIFY;
}

const struct mrl_watcher_ops mrl_watch_fan = {
	.name = "fanotify",
	.bit = MRL_WATCH_FANOTIFY,
	.start = fan_start,
	.stop = fan_stop,
	.poll_fd = fan_poll_fd,
	.read = fan_read,
	.drain = fan_drain,
	.look = fan_look,
	.next_timer = fan_next_timer,
	.tick = fan_tick,
	.let_land = fan_let_land,
	.brk_done = fan_brk_done,
	.file_attach = fan_file_attach,
	.file_detach = fan_file_detach,
	.file_opened = fan_file_opened,
	.coverage = fan_coverage,
};
