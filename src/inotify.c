/* The inotify watcher: changes to a backing file seen after they land (size,
 * writes, closes), whoever made them and whatever else watches; closes also
 * tell the lease watcher and fanotify when a breaker is done with the file. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mrl_int.h"

#define INO_MASK (IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_CLOSE_NOWRITE | IN_OPEN)

/* Seen after the fact: a shrink fences what lies past the new end. This is
 * the net under every other watcher, so it runs for every file: a change
 * whose landing was judged too early, or let go at a deadline, is seen here
 * once it has landed. MRs a break holds paused are left to restore, which
 * checks the size itself. shrink_only: the change is (or was) resolved
 * before it landed, so there is nothing to announce or re-pin.
 * Anything else is announced on every MR of the file (mrl_mr_changed_after:
 * new generation, re-pin, state to every peer), every time: inotify merges a
 * burst into fewer events, but one always comes after the last change, so
 * the last announcement follows the last change. inotify cannot tell a data
 * write from a punch, so it announces both. */
static void changed_after(struct mrl_ctx *ctx, struct mrl_file *f, bool shrink_only)
{
	struct stat st;
	int fd = mrl_file_stat_fd(f);
	if (fd < 0 || fstat(fd, &st) < 0)
		return;
	shrink_only |= f->fan && f->fan_complete; /* every change was seen before it landed */
	uint64_t now = mrl_now_ns(), size = (uint64_t)st.st_size;
	struct mrl_mr_vec vec;
	mrl_file_mrs(f, &vec);
	for (size_t i = 0; i < vec.n; i++) {
		struct mrl_mr *mr = vec.v[i];
		if (mr->state != MRL_STATE_ACTIVE)
			continue;
		uint64_t avail = size > mr->fnode.start ? size - mr->fnode.start : 0;
		if (avail < mr->valid_len)
			mrl_mr_fence_locked(ctx, mr, MRL_CAUSE_TRUNCATED, avail, mr->len - avail, 0, now);
		if (!shrink_only)
			mrl_mr_changed_after(ctx, mr, MRL_CAUSE_MODIFIED, 0, mr->len, now);
	}
	free(vec.v);
	if (!shrink_only)
		f->last_change_ev = now;
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
			bool in_brk = f->brk != NULL;
			if (f->brk && f->brk->fev)
				mrl_fan_check_landed(ctx, f);
			changed_after(ctx, f, in_brk);
		}
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
	if (!mr->file || mr->file->wd < 0)
		return 0;
	static const int rows[] = {MRL_CHG_OTHER_TRUNCATE, MRL_CHG_OTHER_LAYOUT,
				   MRL_CHG_OTHER_WRITE,    MRL_CHG_OWNER_TRUNCATE,
				   MRL_CHG_OWNER_LAYOUT,   MRL_CHG_OWNER_WRITE};
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
