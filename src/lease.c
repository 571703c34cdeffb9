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
	ctx->st.lease_retakes += was == LEASE_RELEASED || was == LEASE_BLOCKED;
	if (was == LEASE_BLOCKED)
		lease_events(ctx, f, MRL_EVENT_LEASE_HELD);
}

void mrl_lease_drop(struct mrl_ctx *ctx, struct mrl_file *f)
{
	(void)ctx;
	if (f->fd >= 0 && (f->lease == LEASE_HELD || f->lease == LEASE_BREAKING))
		fcntl(f->fd, F_SETLEASE, F_UNLCK);
	f->lease = LEASE_OFF;
}

/* The blocked opener shows in /proc/locks as "N: -> LEASE  BREAKER ... pid"
 * under our lease's line N. O_NONBLOCK openers leave no trace: pid 0. */
static pid_t breaker_pid(struct mrl_file *f)
{
	FILE *pl = fopen("/proc/locks", "re");
	char line[256], want[64];
	int ours = -1;
	pid_t pid = 0;
	if (!pl)
		return 0;
	snprintf(want, sizeof(want), "%02x:%02x:%lu ", major(f->dev), minor(f->dev),
		 (unsigned long)f->ino);
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
	fcntl(f->fd, F_SETLEASE, F_UNLCK);
	f->lease = LEASE_RELEASED;
	f->relock_at = now + (uint64_t)ctx->opts.relock_ms * 1000000ull;
}

static void brk_begin(struct mrl_ctx *ctx, struct mrl_file *f, int cause, pid_t pid, uint64_t seen)
{
	ctx->st.lease_breaks++;
	/* A reader changes no layout: nothing to pause. Our mapping is shared
	 * writable, so a read lease is impossible: let go, and take it back
	 * when the reader closes. A lease is whole-file: for a writer every MR
	 * of the file is paused. */
	if (cause == MRL_CAUSE_OPEN_READ ||
	    !mrl_brk_begin(ctx, f, &mrl_watch_lease, cause, pid, 0, UINT64_MAX, seen, NULL))
		let_go(ctx, f, seen);
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
	if (f->lease == LEASE_HELD || why == RETAKE_DEADLINE)
		mrl_brk_finish(ctx, f->brk);
}

void mrl_lease_on_signal(struct mrl_ctx *ctx, int fd)
{
	struct mrl_file *f;
	uint64_t seen = mrl_now_ns();
	for (f = ctx->files; f; f = f->next)
		if (f->fd == fd && fd >= 0)
			break;
	if (!f || f->lease != LEASE_HELD)
		return; /* stale: the lease was dropped already */
	int target = fcntl(fd, F_GETLEASE);
	/* Reading /proc/locks costs an RCU grace period (~10 ms) while the
	 * breaker waits: pay it only when an owner is asked to decide. */
	pid_t bp = 0;
	struct mrl_mr_vec vec;
	mrl_file_mrs(f, &vec);
	for (size_t i = 0; i < vec.n && !bp; i++)
		if (vec.v[i]->policy == MRL_POLICY_NOTIFY && vec.v[i]->state == MRL_STATE_ACTIVE)
			bp = breaker_pid(f);
	free(vec.v);
	f->lease = LEASE_BREAKING;
	/* The lease's target type tells a reader (F_RDLCK) from a writer. */
	brk_begin(ctx, f, target == F_RDLCK ? MRL_CAUSE_OPEN_READ : MRL_CAUSE_OPEN_WRITE,
		  bp, seen);
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

static void lease_drain(struct mrl_ctx *ctx)
{
	struct signalfd_siginfo si[16];
	ssize_t n;
	while ((n = read(ctx->sig_fd, si, sizeof(si))) > 0)
		for (size_t i = 0; i < (size_t)n / sizeof(si[0]); i++)
			mrl_lease_on_signal(ctx, si[i].ssi_fd);
}

static void lease_file_detach(struct mrl_ctx *ctx, struct mrl_file *f)
{
	mrl_lease_drop(ctx, f);
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

const struct mrl_watcher_ops mrl_watch_lease = {
	.name = "lease",
	.bit = MRL_WATCH_LEASE,
	.thread_start = lease_thread_start,
	.stop = lease_stop,
	.poll_fd = lease_poll_fd,
	.drain = lease_drain,
	.next_timer = lease_next_timer,
	.tick = lease_tick,
	.let_land = lease_let_land,
	.file_detach = lease_file_detach,
	.file_arm = lease_file_arm,
	.coverage = lease_coverage,
};

