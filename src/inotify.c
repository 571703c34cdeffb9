/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The inotify watcher: changes to a backing file seen after they land (size,
 * writes, closes), whoever made them and whatever else watches; closes also
 * tell the lease watcher and fanotify when a breaker is done with the file. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mrl_int.h"

/* IN_ATTRIB also says a link went (rm, a rename over the path: the file
 * loses its name); IN_MOVE_SELF that the file itself moved. */
#define INO_MASK (IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_CLOSE_NOWRITE | IN_OPEN | \
		  IN_MOVE_SELF | IN_DELETE_SELF)

/* Seen after the fact: a shrink fences what lies past the new end. This is
 * the net under every other watcher, so it runs for every file: a change
 * whose landing was judged too early, or let go at a deadline, is seen here
 * once it has landed. MRs a break holds paused are left to restore, which
 * checks the size itself. Nothing else is announced when every change is
 * seen before it lands (fanotify), or for the MRs a break in progress (seen
 * at brk_seen_ns, 0 if none) resolves: those it found when it began. An MR
 * registered since is not its, nor one a restore put back on the file as it
 * still is (the echo of a break already resolved). Anything else is announced on every MR of the file (mrl_mr_changed_after:
 * new generation, re-pin, state to every peer), every time: inotify merges a
 * burst into fewer events, but one always comes after the last change, so
 * the last announcement follows the last change. inotify cannot tell a data
 * write from a punch, so it announces both. */
static bool settled_is(const struct mrl_file *f, const struct stat *st)
{
	return f->settled.seq && f->settled.size == (uint64_t)st->st_size &&
	       f->settled.blocks == (uint64_t)st->st_blocks &&
	       f->settled.ctime.tv_sec == st->st_ctim.tv_sec &&
	       f->settled.ctime.tv_nsec == st->st_ctim.tv_nsec;
}

/* A restore (mr.c) found the file as st says: the same state as the last
 * restore's keeps its number, a new one gets the next. */
uint32_t mrl_file_settled(struct mrl_file *f, const struct stat *st)
{
	if (!settled_is(f, st)) {
		f->settled.size = (uint64_t)st->st_size;
		f->settled.blocks = (uint64_t)st->st_blocks;
		f->settled.ctime = st->st_ctim;
		f->settled.seq = f->settled.seq + 1 ? f->settled.seq + 1 : 1;
	}
	return f->settled.seq;
}

static void changed_after(struct mrl_ctx *ctx, struct mrl_file *f, uint64_t brk_seen_ns)
{
	struct stat st;
	int fd = mrl_file_stat_fd(f);
	if (fd < 0 || fstat(fd, &st) < 0)
		return;
	/* Nothing changed the file since these MRs were restored on it (same
	 * size, blocks and change time): the event is the echo of the change
	 * their break resolved, read late (a busy monitor), not a new one. A
	 * change after the restore moves the change time, so it is announced. */
	uint32_t echo = settled_is(f, &st) ? f->settled.seq : 0;
	bool all_seen = f->fan && f->fan_complete; /* every change was seen before it landed */
	bool shrink_only = all_seen || brk_seen_ns; /* nothing to announce but a shrink */
	uint64_t now = mrl_now_ns(), size = (uint64_t)st.st_size;
	struct mrl_mr_vec vec;
	mrl_file_mrs(f, &vec);
	/* first every MR's pages past the end to scratch: a transport may
	 * reach them until each fence is applied, and a fence takes a while */
	for (size_t i = 0; i < vec.n; i++) {
		struct mrl_mr *mr = vec.v[i];
		uint64_t avail = size > mr->fnode.start ? size - mr->fnode.start : 0;
		if (mr->state == MRL_STATE_ACTIVE && avail < mr->valid_len)
			mrl_sb_cut(mr, avail);
	}
	for (size_t i = 0; i < vec.n; i++) {
		struct mrl_mr *mr = vec.v[i];
		if (mr->state != MRL_STATE_ACTIVE)
			continue;
		uint64_t avail = size > mr->fnode.start ? size - mr->fnode.start : 0;
		if (avail < mr->valid_len) {
			mrl_mr_fence_locked(ctx, mr, MRL_CAUSE_TRUNCATED, avail, mr->len - avail, 0, now);
		}
		/* a break in progress resolves its own change for the MRs it
		 * found; one registered since it was seen is not its */
		bool mine = all_seen || (brk_seen_ns && mr->reg_ns <= brk_seen_ns) ||
			    (echo && mr->settled_seq == echo);
		if (!mine) {
			mrl_mr_changed_after(ctx, mr, MRL_CAUSE_MODIFIED, 0, mr->len, now);
			shrink_only = false;
		}
	}
	free(vec.v);
	if (!shrink_only)
		f->last_change_ev = now;
}

/* Does the file's path still name it? When it does not -- renamed over
 * (mv OTHER FILE, sed -i) or removed (rm) -- nothing can stop it (no
 * watcher sees a rename or an unlink before it lands), and nothing needs
 * stopping: the MRs keep serving the file they registered, which lives on
 * without a name while it is mapped, so no peer's byte lands in a file it
 * did not register. But what the path shows is no longer what the peers
 * write: tell the owner (CHANGED, cause replaced-file or unlinked) and the
 * peers (a new generation with the cause). A file that keeps a name
 * elsewhere (mv FILE ELSEWHERE, a hard link) is only followed. */
static void check_name(struct mrl_ctx *ctx, struct mrl_file *f)
{
	struct stat st, pst;
	int fd = mrl_file_stat_fd(f);
	bool have = fd >= 0 && fstat(fd, &st) == 0;
	int pr = stat(f->path, &pst);
	if (pr == 0 && pst.st_ino == f->ino && (pst.st_dev == f->st_dev || pst.st_dev == f->dev))
		return; /* still ours */
	int cause = pr == 0 ? MRL_CAUSE_REPLACED_FILE : MRL_CAUSE_UNLINKED;
	if (pr < 0 && have && st.st_nlink > 0 && f->path_fd >= 0) {
		/* moved, not gone: follow it */
		char link[64], now[4096];
		snprintf(link, sizeof(link), "/proc/self/fd/%d", f->path_fd);
		ssize_t n = readlink(link, now, sizeof(now) - 1);
		char *copy = n > 0 ? strndup(now, (size_t)n) : NULL;
		if (copy) {
			mrl_log("%s moved to %s", f->path, copy);
			free(f->path);
			f->path = copy;
			return;
		}
	}
	if (f->name_cause == cause)
		return;
	f->name_cause = cause;
	mrl_log("%s: %s; its MRs keep serving the file they registered", f->path,
		cause == MRL_CAUSE_UNLINKED ? "unlinked" : "its path names another file now");
	uint64_t now = mrl_now_ns();
	struct mrl_mr_vec vec;
	mrl_file_mrs(f, &vec);
	for (size_t i = 0; i < vec.n; i++) {
		struct mrl_mr *mr = vec.v[i];
		if (mr->state != MRL_STATE_ACTIVE && mr->state != MRL_STATE_PAUSED)
			continue;
		mr->cause = (uint8_t)cause;
		mr->cause_off = 0;
		mr->cause_len = mr->len;
		mr->cause_pid = 0;
		mr->gen++;
		mrl_post_event(ctx, mr, MRL_EVENT_CHANGED, (uint32_t)cause, 0, mr->len, 0, 0, now);
		if (mr->state == MRL_STATE_ACTIVE) /* a paused one tells them as it is restored */
			mrl_send_state(ctx, mr, NULL);
	}
	free(vec.v);
}

static void on_event(struct mrl_ctx *ctx, int wd, uint32_t mask)
{
	for (struct mrl_file *f = ctx->files; f; f = f->next) {
		if (f->wd != wd)
			continue;
		if (mask & (IN_MODIFY | IN_ATTRIB)) {
			/* A break in progress resolves its own change; any other
			 * change seen now has landed already (under a held lease
			 * too: the owner's own change through an fd it already
			 * holds breaks no lease). Never skip the size check. */
			uint64_t brk_seen = f->brk ? f->brk->seen_ns : 0;
			if (f->brk && f->brk->fev)
				mrl_fan_check_landed(ctx, f);
			changed_after(ctx, f, brk_seen);
		}
		if (mask & (IN_ATTRIB | IN_MOVE_SELF | IN_DELETE_SELF))
			check_name(ctx, f);
		if ((mask & (IN_CLOSE_WRITE | IN_CLOSE_NOWRITE)) && f->fan)
			mrl_fan_on_close(ctx, f);
		else if (mask & (IN_CLOSE_WRITE | IN_CLOSE_NOWRITE))
			mrl_lease_file_closed(ctx, f);
	}
}

static int ino_start(struct mrl_ctx *ctx)
{
	ctx->ino_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	return ctx->ino_fd < 0 ? -errno : 0;
}

static void ino_stop(struct mrl_ctx *ctx)
{
	if (ctx->ino_fd >= 0)
		close(ctx->ino_fd);
	ctx->ino_fd = -1;
}

static int ino_poll_fd(struct mrl_ctx *ctx)
{
	return ctx->ino_fd;
}

static void ino_drain(struct mrl_ctx *ctx)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	ssize_t n;
	while ((n = read(ctx->ino_fd, buf, sizeof(buf))) > 0) {
		for (char *p = buf; p < buf + n;) {
			struct inotify_event *e = (struct inotify_event *)p;
			on_event(ctx, e->wd, e->mask);
			p += sizeof(*e) + e->len;
		}
	}
}

static void ino_file_attach(struct mrl_ctx *ctx, struct mrl_file *f)
{
	if (f->path[0] && (f->wd = inotify_add_watch(ctx->ino_fd, f->path, INO_MASK)) < 0)
		f->wd = -1;
}

static void ino_file_detach(struct mrl_ctx *ctx, struct mrl_file *f)
{
	if (f->wd < 0)
		return;
	/* another file object may share the wd (hard links): remove only if unique */
	bool shared = false;
	for (struct mrl_file *g = ctx->files; g; g = g->next)
		shared |= g != f && g->wd == f->wd;
	if (!shared)
		inotify_rm_watch(ctx->ino_fd, f->wd);
	f->wd = -1;
}

static unsigned ino_coverage(struct mrl_ctx *ctx, struct mrl_mr *mr, uint8_t *cov)
{
	(void)ctx;
	/* what it sees it learns by fstat: no fd to fstat, nothing seen */
	if (!mr->file || mr->file->wd < 0 || mrl_file_stat_fd(mr->file) < 0)
		return 0;
	static const int rows[] = {MRL_CHG_OTHER_TRUNCATE, MRL_CHG_OTHER_LAYOUT,
				   MRL_CHG_OTHER_WRITE,    MRL_CHG_OWNER_TRUNCATE,
				   MRL_CHG_OWNER_LAYOUT,   MRL_CHG_OWNER_WRITE,
				   MRL_CHG_OTHER_OPEN_TRUNC, MRL_CHG_OTHER_RENAME,
				   MRL_CHG_OTHER_UNLINK};
	for (size_t i = 0; i < ARRAY_SIZE(rows); i++)
		mrl_cov_raise(cov, rows[i], MRL_SEEN_AFTER);
	return MRL_WATCH_INOTIFY;
}

const struct mrl_watcher_ops mrl_watch_inotify = {
	.name = "inotify",
	.bit = MRL_WATCH_INOTIFY,
	.start = ino_start,
	.stop = ino_stop,
	.poll_fd = ino_poll_fd,
	.drain = ino_drain,
	.file_attach = ino_file_attach,
	.file_detach = ino_file_detach,
	.coverage = ino_coverage,
};
