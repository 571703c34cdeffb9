/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The seccomp watcher (opt-in: MRL_CTX_SECCOMP): the owner's own raw
 * ftruncate, fallocate (punch, zero, collapse, insert), madvise and
 * process_madvise (advice that drops pages), munmap and mremap are held at
 * system-call entry by a seccomp user-notification filter and seen before
 * they land, whatever the memory kind and however they are called (libc,
 * syscall(2), io_uring is not a system call of the owner: not seen here).
 *
 * How: mrl_ctx_create installs one filter (once per process) on the calling
 * thread; every thread and process that thread starts afterwards inherits
 * it. The library's own threads started before (the monitor, the device
 * worker, the userfaultfd reader, the supervisor below) are not filtered,
 * so nothing the library must do to resolve a break waits for itself.
 * A process-wide supervisor thread reads the notifications:
 *  - a call from another process (a child: filters are inherited across
 *    fork and exec) is let go at once (SECCOMP_USER_NOTIF_FLAG_CONTINUE);
 *  - a call of this process that touches no registered range or object is
 *    let go at once (the lookup takes only the supervisor's leaf lock);
 *  - a call that does is handed to the monitor of the context that has it
 *    (ctx->lock, tick): munmap and mremap fence the MRs they take away
 *    (cause unmapped/moved), the others pause them through the break engine
 *    (brk.c) and, once peers and device have let go, the supervisor makes
 *    the very call itself (same address space, same fd table) and answers
 *    with its result: the change has landed exactly then, and the MRs are
 *    restored on what is there now (past a new end: fenced, truncated).
 * Files marked by fanotify are left to it (it sees the owner's calls too).
 *
 * Costs and inheritance (mrl_ctx_create(3), README): a filter cannot be
 * removed; it stays after mrl_ctx_destroy and so does the supervisor,
 * answering "go on". Unrelated system calls pay the filter (a few BPF
 * instructions); every matching call of the process and its descendants
 * makes a round trip to the supervisor. Children get no copy of the
 * listener (closed in the child at fork): once the owner process has
 * exited, their matching calls fail with ENOSYS (seccomp's answer when
 * nobody listens) instead of hanging. Without CAP_SYS_ADMIN the process
 * gets no_new_privs (setuid programs it runs keep their caller's rights). */
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/falloc.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "mrl_int.h"

#if defined(__x86_64__)
#define SC_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define SC_ARCH AUDIT_ARCH_AARCH64
#endif
#ifndef SYS_process_madvise
#define SYS_process_madvise 440
#endif
#ifndef MADV_DONTNEED_LOCKED
#define MADV_DONTNEED_LOCKED 24
#endif

#define SC_CTXS 8
#define SC_RANGES 1024
#define SC_OBJS 256

/* One context's registered ranges (page-rounded) and objects, copied here
 * so the supervisor can match without ctx->lock. */
struct sc_obj {
	dev_t dev, st_dev;
	ino_t ino;
};
/* PENDING: for the monitor; HELD: its break runs; GO: may land (the caller
 * thread makes it: CALLING); DONE: it returned, the monitor finishes */
enum { REQ_NONE = 0, REQ_PENDING, REQ_HELD, REQ_GO, REQ_CALLING, REQ_DONE };
struct sc_req {
	int state;
	struct seccomp_notif n;
	dev_t dev;
	ino_t ino;
	uint64_t seen;
	struct mrl_brk *brk;
};
struct sc_ctx {
	struct mrl_ctx *ctx;
	uint64_t id;      /* never reused: a context destroyed meanwhile is told apart */
	uintptr_t lo[SC_RANGES], hi[SC_RANGES];
	unsigned nranges;
	struct sc_obj obj[SC_OBJS];
	unsigned nobjs;
	bool overflow;    /* more than fits: every call of the process goes to the monitor */
	struct sc_req req; /* the one call held for this context */
};

static struct {
	pthread_mutex_t lock; /* leaf: no system call is made under it */
	pthread_cond_t cv;    /* a request moved on */
	struct sc_ctx *ctxs[SC_CTXS];
	int notify_fd;        /* -1: no filter in this process */
	bool started;
	pid_t pid;            /* the process that installed it */
	uint64_t next_id;
	uint64_t held, passed, lost; /* statistics */
} sc = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, {0}, -1, false, 0, 0, 0, 0, 0};

/* sc.lock held */
static struct sc_ctx *sc_of(struct mrl_ctx *ctx)
{
	for (int i = 0; i < SC_CTXS; i++)
		if (sc.ctxs[i] && sc.ctxs[i]->ctx == ctx)
			return sc.ctxs[i];
	return NULL;
}

static struct sc_ctx *sc_by_id(uint64_t id)
{
	for (int i = 0; i < SC_CTXS; i++)
		if (sc.ctxs[i] && sc.ctxs[i]->id == id)
			return sc.ctxs[i];
	return NULL;
}

/* ---- the filter ---- */
#define LD(off) BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (off))
#define JEQ(v, t, f) BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (v), (t), (f))
#define JSET(v, t, f) BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, (v), (t), (f))
#define RET(v) BPF_STMT(BPF_RET | BPF_K, (v))
#define ARG_LO(i) (offsetof(struct seccomp_data, args) + (i) * 8)

static int install_filter(void)
{
#ifdef SC_ARCH
	const uint32_t drop_modes = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE |
				    FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_INSERT_RANGE;
	struct sock_filter f[] = {
		/* 0 */ LD(offsetof(struct seccomp_data, arch)),
		/* 1 */ JEQ(SC_ARCH, 1, 0),
		/* 2 */ RET(SECCOMP_RET_ALLOW),
		/* 3 */ LD(offsetof(struct seccomp_data, nr)),
		/* 4 */ JEQ(SYS_ftruncate, 15, 0),   /* -> 20 notify */
		/* 5 */ JEQ(SYS_munmap, 14, 0),
		/* 6 */ JEQ(SYS_mremap, 13, 0),
		/* 7 */ JEQ(SYS_fallocate, 3, 0),    /* -> 11 */
		/* 8 */ JEQ(SYS_madvise, 4, 0),      /* -> 13 */
		/* 9 */ JEQ(SYS_process_madvise, 5, 0), /* -> 15 */
		/* 10 */ RET(SECCOMP_RET_ALLOW),
		/* 11 */ LD(ARG_LO(1)),              /* fallocate mode */
		/* 12 */ JSET(drop_modes, 7, 8),     /* -> 20 notify, else 21 allow */
		/* 13 */ LD(ARG_LO(2)),              /* madvise advice */
		/* 14 */ BPF_JUMP(BPF_JMP | BPF_JA, 1, 0, 0), /* -> 16 */
		/* 15 */ LD(ARG_LO(3)),              /* process_madvise advice */
		/* 16 */ JEQ(MADV_DONTNEED, 3, 0),   /* -> 20 */
		/* 17 */ JEQ(MADV_REMOVE, 2, 0),
		/* 18 */ JEQ(MADV_FREE, 1, 0),
		/* 19 */ JEQ(MADV_DONTNEED_LOCKED, 0, 1),
		/* 20 */ RET(SECCOMP_RET_USER_NOTIF),
		/* 21 */ RET(SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {.len = ARRAY_SIZE(f), .filter = f};
	int fd = (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER,
			      &prog);
	if (fd < 0 && errno == EACCES) {
		/* no CAP_SYS_ADMIN: the kernel wants no_new_privs first */
		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
			return -errno;
		fd = (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER,
				  SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
	}
	return fd < 0 ? -errno : fd;
#else
	return -EOPNOTSUPP;
#endif
}

/* ---- matching, without ctx->lock ---- */

static bool range_hit(const struct sc_ctx *s, uintptr_t a, uintptr_t b)
{
	for (unsigned i = 0; i < s->nranges; i++)
		if (a < s->hi[i] && s->lo[i] < b)
			return true;
	return false;
}

/* sc.lock held: the context whose MRs the call touches, NULL if none */
static struct sc_ctx *match_locked(const struct seccomp_notif *n, const struct stat *st,
				   const struct iovec *iov, size_t niov)
{
	for (int c = 0; c < SC_CTXS; c++) {
		struct sc_ctx *s = sc.ctxs[c];
		if (!s)
			continue;
		if (s->overflow)
			return s;
		switch (n->data.nr) {
		case SYS_ftruncate:
		case SYS_fallocate:
			for (unsigned i = 0; st && i < s->nobjs; i++)
				if (s->obj[i].ino == st->st_ino &&
				    (s->obj[i].st_dev == st->st_dev || s->obj[i].dev == st->st_dev))
					return s;
			break;
		case SYS_munmap:
		case SYS_madvise:
		case SYS_mremap:
			if (range_hit(s, n->data.args[0], n->data.args[0] + n->data.args[1]))
				return s;
			break;
		case SYS_process_madvise:
			for (size_t i = 0; i < niov; i++)
				if (range_hit(s, (uintptr_t)iov[i].iov_base,
					      (uintptr_t)iov[i].iov_base + iov[i].iov_len))
					return s;
			break;
		}
	}
	return NULL;
}

static void respond(const struct seccomp_notif *n, bool go_on, int64_t val, int err)
{
	struct seccomp_notif_resp r = {.id = n->id};
	if (go_on) {
		r.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
	} else {
		r.val = val;
		r.error = err;
	}
	/* ENOENT: the actor is gone (killed, or a signal restarted the call) */
	ioctl(sc.notify_fd, SECCOMP_IOCTL_NOTIF_SEND, &r);
}

/* The call, made by the supervisor for the actor: same process, so the same
 * address space and fd table. -errno or the call's value. */
static int64_t do_call(const struct seccomp_notif *n)
{
	const __u64 *a = n->data.args;
	long r = syscall((long)n->data.nr, a[0], a[1], a[2], a[3], a[4], a[5]);
	return r < 0 ? -errno : r;
}

/* Matching calls waiting for their context's one slot (a call of it is held
 * already): dispatched in order as slots free. Full: let go unseen (logged). */
#define SC_BACKLOG 64
static struct {
	struct seccomp_notif n;
	uint64_t id;
	dev_t dev;
	ino_t ino;
} backlog[SC_BACKLOG];
static unsigned nbacklog;

/* sc.lock held: hand the call to its context's monitor */
static void dispatch_locked(struct sc_ctx *s, const struct seccomp_notif *n, dev_t dev, ino_t ino)
{
	s->req = (struct sc_req){.state = REQ_PENDING, .n = *n, .seen = mrl_now_ns(), .dev = dev,
				 .ino = ino};
	sc.held++;
	mrl_wake_monitor(s->ctx); /* an eventfd write: never held */
}

/* sc.lock held: the backlog's calls whose contexts are free now */
static void dispatch_backlog_locked(void)
{
	unsigned k = 0;
	for (unsigned i = 0; i < nbacklog; i++) {
		struct sc_ctx *s = sc_by_id(backlog[i].id);
		if (!s) {
			respond(&backlog[i].n, true, 0, 0); /* its context is gone */
		} else if (s->req.state == REQ_NONE) {
			dispatch_locked(s, &backlog[i].n, backlog[i].dev, backlog[i].ino);
		} else {
			backlog[k++] = backlog[i];
		}
	}
	nbacklog = k;
}

/* One notification, answered at once unless it touches a context's MRs. */
static void handle(const struct seccomp_notif *n)
{
	/* another process (a descendant): not ours to hold */
	if (syscall(SYS_tgkill, sc.pid, n->pid, 0) < 0) {
		respond(n, true, 0, 0);
		return;
	}
	struct stat st, *stp = NULL;
	struct iovec iov[8];
	size_t niov = 0;
	if ((n->data.nr == SYS_ftruncate || n->data.nr == SYS_fallocate) &&
	    fstat((int)n->data.args[0], &st) == 0)
		stp = &st;
	if (n->data.nr == SYS_process_madvise) {
		/* the iovecs, read safely (a bad pointer is the call's EFAULT) */
		niov = n->data.args[2] < ARRAY_SIZE(iov) ? n->data.args[2] : ARRAY_SIZE(iov);
		struct iovec l = {iov, niov * sizeof(iov[0])},
			     r = {(void *)(uintptr_t)n->data.args[1], niov * sizeof(iov[0])};
		if (process_vm_readv(sc.pid, &l, 1, &r, 1, 0) != (ssize_t)(niov * sizeof(iov[0])))
			niov = 0;
	}
	mrl_lock(&sc.lock);
	struct sc_ctx *s = match_locked(n, stp, iov, niov);
	bool go_on = !s;
	if (s && s->req.state == REQ_NONE) {
		dispatch_locked(s, n, stp ? stp->st_dev : 0, stp ? stp->st_ino : 0);
	} else if (s && nbacklog < SC_BACKLOG) {
		backlog[nbacklog].n = *n;
		backlog[nbacklog].id = s->id;
		backlog[nbacklog].dev = stp ? stp->st_dev : 0;
		backlog[nbacklog++].ino = stp ? stp->st_ino : 0;
	} else if (s) {
		go_on = true;
		sc.lost++;
	}
	if (go_on)
		sc.passed++;
	mrl_unlock(&sc.lock);
	if (go_on)
		respond(n, true, 0, 0);
}

static int kick_fd = -1; /* eventfd: a slot freed, dispatch the backlog */

static void kick(void)
{
	uint64_t one = 1;
	if (write(kick_fd, &one, sizeof(one)) < 0) {
		/* a full counter still wakes the supervisor */
	}
}

/* Blocks nothing but its own poll: every notification is answered or
 * handed over at once, so calls that touch no MR never wait behind one
 * that is held. */
static void *sup_main(void *arg)
{
	(void)arg;
	sigset_t all;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	mrl_lock(&sc.lock);
	while (sc.notify_fd == -1)
		pthread_cond_wait(&sc.cv, &sc.lock);
	int fd = sc.notify_fd;
	mrl_unlock(&sc.lock);
	if (fd < 0)
		return NULL; /* the filter could not be installed */
	struct seccomp_notif n;
	for (;;) {
		struct pollfd p[2] = {{.fd = fd, .events = POLLIN}, {.fd = kick_fd, .events = POLLIN}};
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[1].revents) {
			uint64_t v;
			if (read(kick_fd, &v, sizeof(v)) < 0) {
			}
			mrl_lock(&sc.lock);
			dispatch_backlog_locked();
			mrl_unlock(&sc.lock);
		}
		if (!p[0].revents)
			continue;
		memset(&n, 0, sizeof(n));
		if (ioctl(fd, SECCOMP_IOCTL_NOTIF_RECV, &n) < 0) {
			if (errno == EINTR || errno == ENOENT)
				continue; /* ENOENT: the actor left before we read it */
			break;
		}
		handle(&n);
	}
	return NULL;
}

/* Makes the held calls once their context let them land: same process, so
 * the same address space and fd table as the actor. Unfiltered, like the
 * supervisor. */
static void *caller_main(void *arg)
{
	(void)arg;
	sigset_t all;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL); /* SIGXFSZ of a call made here included */
	mrl_lock(&sc.lock);
	for (;;) {
		struct sc_ctx *s = NULL;
		for (int i = 0; i < SC_CTXS && !s; i++)
			if (sc.ctxs[i] && sc.ctxs[i]->req.state == REQ_GO)
				s = sc.ctxs[i];
		if (!s) {
			if (sc.notify_fd == -2)
				break;
			pthread_cond_wait(&sc.cv, &sc.lock);
			continue;
		}
		struct seccomp_notif n = s->req.n;
		uint64_t id = s->id;
		s->req.state = REQ_CALLING;
		mrl_unlock(&sc.lock);
		int64_t v = do_call(&n);
		respond(&n, false, v < 0 ? 0 : v, v < 0 ? (int)v : 0);
		mrl_lock(&sc.lock);
		if ((s = sc_by_id(id))) {
			s->req.state = REQ_DONE;
			mrl_wake_monitor(s->ctx);
		}
	}
	mrl_unlock(&sc.lock);
	return NULL;
}

/* The child of a fork has no supervisor: without a copy of the listener its
 * matching calls go to the parent's while it lives (let go), then fail
 * ENOSYS; with one they would wait for ever. */
static void sc_child(void)
{
	if (sc.notify_fd >= 0)
		close(sc.notify_fd);
	sc.notify_fd = -1;
	if (kick_fd >= 0)
		close(kick_fd);
	kick_fd = -1;
	nbacklog = 0;
	sc.started = false;
	pthread_mutex_init(&sc.lock, NULL);
	pthread_cond_init(&sc.cv, NULL);
	memset(sc.ctxs, 0, sizeof(sc.ctxs)); /* the parent's: never freed here */
}
static void sc_atfork(void)
{
	pthread_atfork(NULL, NULL, sc_child);
}

/* mrl_ctx_create, once the library's threads run: the supervisor first (a
 * thread made after the filter would be filtered, and would hold its own
 * calls), then the filter on the calling thread, once per process. */
int mrl_seccomp_install(struct mrl_ctx *ctx)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	if (!(ctx->opts.flags & MRL_CTX_SECCOMP) || !ctx->leases)
		return 0;
	if (!(ctx->watchers & MRL_WATCH_SECCOMP))
		return mrl_err(EMFILE, "mrl_ctx_create: MRL_CTX_SECCOMP: more than %d contexts",
			       SC_CTXS);
	mrl_lock(&sc.lock);
	bool started = sc.started;
	sc.started = true;
	mrl_unlock(&sc.lock);
	if (started)
		return 0;
	pthread_once(&once, sc_atfork);
	pthread_t t;
	pthread_attr_t at;
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	sc.pid = getpid();
	kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	int err = kick_fd < 0 ? errno : pthread_create(&t, &at, sup_main, NULL);
	if (!err)
		err = pthread_create(&t, &at, caller_main, NULL);
	pthread_attr_destroy(&at);
	if (err) {
		mrl_lock(&sc.lock);
		sc.notify_fd = -2; /* whatever started leaves */
		pthread_cond_broadcast(&sc.cv);
		mrl_unlock(&sc.lock);
		return mrl_err(err, "mrl_ctx_create: MRL_CTX_SECCOMP: supervisor threads: %s",
			       strerror(err));
	}
	int fd = install_filter();
	mrl_lock(&sc.lock);
	sc.notify_fd = fd < 0 ? -2 : fd; /* -2: the threads leave */
	pthread_cond_broadcast(&sc.cv);
	mrl_unlock(&sc.lock);
	if (fd == -EBUSY)
		return mrl_err(EBUSY, "mrl_ctx_create: MRL_CTX_SECCOMP: this process inherited a seccomp listener (a parent used MRL_CTX_SECCOMP, or runs a supervisor): one per process tree");
	if (fd < 0)
		return mrl_err(-fd, "mrl_ctx_create: MRL_CTX_SECCOMP: seccomp filter: %s",
			       strerror(-fd));
	return 0;
}

/* ---- the watcher ---- */

static int sc_start(struct mrl_ctx *ctx)
{
	if (!(ctx->opts.flags & MRL_CTX_SECCOMP))
		return -EOPNOTSUPP;
	struct sc_ctx *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->ctx = ctx;
	mrl_lock(&sc.lock);
	int slot = -1;
	for (int i = 0; i < SC_CTXS && slot < 0; i++)
		if (!sc.ctxs[i])
			slot = i;
	if (slot >= 0) {
		s->id = ++sc.next_id;
		sc.ctxs[slot] = s;
	}
	mrl_unlock(&sc.lock);
	if (slot < 0) {
		free(s);
		return -EMFILE;
	}
	return 0;
}

static void sc_stop(struct mrl_ctx *ctx)
{
	mrl_brks_free_of(ctx, &mrl_watch_seccomp);
	mrl_lock(&sc.lock);
	struct sc_ctx *s = sc_of(ctx);
	for (int i = 0; i < SC_CTXS; i++)
		if (s && sc.ctxs[i] == s)
			sc.ctxs[i] = NULL;
	/* a held call goes on (nobody resolves it now): the caller makes it */
	if (s && (s->req.state == REQ_PENDING || s->req.state == REQ_HELD || s->req.state == REQ_GO))
		respond(&s->req.n, true, 0, 0);
	pthread_cond_broadcast(&sc.cv);
	mrl_unlock(&sc.lock);
	kick(); /* its backlog is let go */
	free(s);
}

/* ---- the tables the supervisor matches against (ctx->lock held) ---- */

struct rebuild {
	struct mrl_ctx *ctx;
	struct sc_ctx *tmp;
};

static void add_obj(struct sc_ctx *t, dev_t dev, dev_t st_dev, ino_t ino)
{
	for (unsigned i = 0; i < t->nobjs; i++)
		if (t->obj[i].ino == ino && t->obj[i].dev == dev)
			return;
	if (t->nobjs == SC_OBJS) {
		t->overflow = true;
		return;
	}
	t->obj[t->nobjs++] = (struct sc_obj){.dev = dev, .st_dev = st_dev, .ino = ino};
}

static int rebuild_cb(struct mrl_itree_node *node, void *p)
{
	struct rebuild *r = p;
	struct sc_ctx *t = r->tmp;
	struct mrl_mr *mr = (struct mrl_mr *)node; /* va is the first member */
	uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
	if (t->nranges == SC_RANGES) {
		t->overflow = true;
	} else {
		t->lo[t->nranges] = (uintptr_t)mr->addr & ~(pg - 1);
		t->hi[t->nranges++] = ((uintptr_t)mr->addr + mr->len + pg - 1) & ~(pg - 1);
	}
	dev_t dev;
	ino_t ino;
	if (mr->file && !mr->file->fan)
		add_obj(t, mr->file->dev, mr->file->st_dev, mr->file->ino);
	else if (!mr->file && mrl_memfd_ident(r->ctx, mr, &dev, &ino) == 0)
		add_obj(t, dev, dev, ino);
	return 0;
}

static void rebuild(struct mrl_ctx *ctx)
{
	struct sc_ctx *t = calloc(1, sizeof(*t));
	if (!t)
		return; /* the old tables stay: a call on a new MR goes unseen, as without */
	struct rebuild r = {ctx, t};
	mrl_itree_overlap(&ctx->va_index, 0, UINTPTR_MAX, rebuild_cb, &r);
	mrl_lock(&sc.lock);
	struct sc_ctx *s = sc_of(ctx);
	if (s) {
		memcpy(s->lo, t->lo, sizeof(t->lo[0]) * t->nranges);
		memcpy(s->hi, t->hi, sizeof(t->hi[0]) * t->nranges);
		memcpy(s->obj, t->obj, sizeof(t->obj[0]) * t->nobjs);
		s->nranges = t->nranges;
		s->nobjs = t->nobjs;
		s->overflow = t->overflow;
	}
	mrl_unlock(&sc.lock);
	free(t);
}

static void sc_mr_attach(struct mrl_ctx *ctx, struct mrl_mr *mr)
{
	(void)mr;
	rebuild(ctx);
}

static void sc_mr_detach(struct mrl_ctx *ctx, struct mrl_mr *mr)
{
	(void)mr;
	rebuild(ctx);
}

/* ---- the monitor's side: resolve a held call (ctx->lock held) ---- */

static void set_state(struct mrl_ctx *ctx, int state)
{
	mrl_lock(&sc.lock);
	struct sc_ctx *s = sc_of(ctx);
	if (s)
		s->req.state = state;
	pthread_cond_broadcast(&sc.cv);
	mrl_unlock(&sc.lock);
}

static void go_after_dev(struct mrl_ctx *ctx, struct mrl_mr *unused, int ret, void *arg)
{
	(void)unused, (void)ret, (void)arg;
	set_state(ctx, REQ_GO);
}

struct collect {
	struct mrl_mr_vec vec;
	bool fence;
	int cause;
	pid_t pid;
	uint64_t seen;
	struct mrl_ctx *ctx;
};

static int collect_cb(struct mrl_itree_node *node, void *p)
{
	struct collect *c = p;
	struct mrl_mr *mr = (struct mrl_mr *)node;
	if (!mrl_mr_live(mr) || mr->in_brk)
		return 0;
	for (size_t i = 0; i < c->vec.n; i++)
		if (c->vec.v[i] == mr)
			return 0;
	if (c->fence)
		mrl_mr_fence_locked(c->ctx, mr, c->cause, 0, mr->len, c->pid, c->seen);
	else
		mrl_mr_vec_push(&c->vec, mr);
	return 0;
}

static void begin(struct mrl_ctx *ctx, struct sc_ctx *s, const struct sc_req *q)
{
	const __u64 *a = q->n.data.args;
	pid_t tid = (pid_t)q->n.pid;
	struct mrl_brk *b = NULL;
	struct collect c = {.ctx = ctx, .pid = tid, .seen = q->seen};
	switch (q->n.data.nr) {
	case SYS_ftruncate:
	case SYS_fallocate: {
		struct mrl_file *f = mrl_file_find(ctx, q->dev, q->ino);
		uint64_t lo, hi = UINT64_MAX;
		int cause;
		if (q->n.data.nr == SYS_ftruncate) {
			lo = a[1];
			cause = MRL_CAUSE_TRUNCATED;
		} else {
			uint32_t mode = (uint32_t)a[1];
			lo = a[2];
			cause = mode & FALLOC_FL_PUNCH_HOLE	? MRL_CAUSE_PUNCH_HOLE
				: mode & FALLOC_FL_ZERO_RANGE	? MRL_CAUSE_ZERO_RANGE
				: mode & FALLOC_FL_COLLAPSE_RANGE ? MRL_CAUSE_COLLAPSE_RANGE
								  : MRL_CAUSE_INSERT_RANGE;
			if (mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE))
				hi = a[2] + a[3] < a[2] ? UINT64_MAX : a[2] + a[3];
		}
		if (f && f->fan)
			break; /* fanotify holds it itself */
		if (f && f->brk) {
			set_state(ctx, REQ_PENDING); /* after the break under way (tick) */
			return;
		}
		if (f) {
			b = mrl_brk_begin(ctx, f, &mrl_watch_seccomp, cause, tid, lo, hi, q->seen, NULL);
			break;
		}
		mrl_memfd_mrs(ctx, q->dev, q->ino, lo, hi, &c.vec);
		if (c.vec.n)
			b = mrl_brk_begin_mrs(ctx, &mrl_watch_seccomp, &c.vec, cause, tid, q->seen);
		else
			free(c.vec.v);
		break;
	}
	case SYS_munmap:
	case SYS_mremap:
		c.fence = true;
		c.cause = q->n.data.nr == SYS_munmap ? MRL_CAUSE_UNMAPPED : MRL_CAUSE_MOVED;
		mrl_itree_overlap(&ctx->va_index, a[0], a[0] + a[1], collect_cb, &c);
		mrl_dev_after(ctx, go_after_dev, NULL); /* once the device let go */
		return;
	case SYS_madvise:
	case SYS_process_madvise:
		if (q->n.data.nr == SYS_madvise) {
			mrl_itree_overlap(&ctx->va_index, a[0], a[0] + a[1], collect_cb, &c);
		} else {
			struct iovec iov[8];
			size_t niov = a[2] < ARRAY_SIZE(iov) ? a[2] : ARRAY_SIZE(iov);
			struct iovec l = {iov, niov * sizeof(iov[0])},
				     r = {(void *)(uintptr_t)a[1], niov * sizeof(iov[0])};
			if (process_vm_readv(getpid(), &l, 1, &r, 1, 0) != (ssize_t)l.iov_len)
				niov = 0;
			for (size_t i = 0; i < niov; i++)
				mrl_itree_overlap(&ctx->va_index, (uintptr_t)iov[i].iov_base,
						  (uintptr_t)iov[i].iov_base + iov[i].iov_len, collect_cb, &c);
		}
		if (c.vec.n)
			b = mrl_brk_begin_mrs(ctx, &mrl_watch_seccomp, &c.vec, MRL_CAUSE_MADVISED, tid,
					      q->seen);
		else
			free(c.vec.v);
		break;
	}
	mrl_lock(&sc.lock);
	if (s->req.state == REQ_HELD && !b)
		s->req.state = REQ_GO; /* nothing to pause */
	else if (b && (s->req.state == REQ_HELD || s->req.state == REQ_GO))
		s->req.brk = b; /* (GO: quiesced inside the begin already) */
	pthread_cond_broadcast(&sc.cv);
	mrl_unlock(&sc.lock);
}

static void sc_tick(struct mrl_ctx *ctx, uint64_t now)
{
	mrl_lock(&sc.lock);
	struct sc_ctx *s = sc_of(ctx);
	struct sc_req q = s ? s->req : (struct sc_req){0};
	if (s && q.state == REQ_PENDING)
		s->req.state = REQ_HELD;
	mrl_unlock(&sc.lock);
	if (!s)
		return;
	if (q.state == REQ_PENDING) {
		begin(ctx, s, &q);
	} else if (q.state == REQ_DONE) {
		/* the call has returned: it landed */
		struct mrl_brk *b = q.brk;
		mrl_lock(&sc.lock);
		s->req.brk = NULL;
		mrl_unlock(&sc.lock);
		if (b) {
			if (!b->file)
				mrl_memfd_fence_past_end(ctx, b, now);
			mrl_brk_finish(ctx, b);
		}
		set_state(ctx, REQ_NONE);
		kick(); /* a call of this context may wait in the backlog */
	}
}

static uint64_t sc_next_timer(struct mrl_ctx *ctx)
{
	mrl_lock(&sc.lock);
	struct sc_ctx *s = sc_of(ctx);
	bool waiting = s && s->req.state == REQ_PENDING;
	mrl_unlock(&sc.lock);
	return waiting ? mrl_now_ns() + 1000000ull : UINT64_MAX;
}

/* Quiesced: the supervisor makes the call now. */
static void sc_let_land(struct mrl_ctx *ctx, struct mrl_brk *b, uint64_t now)
{
	(void)now;
	mrl_lock(&sc.lock);
	struct sc_ctx *s = sc_of(ctx);
	if (s && s->req.state == REQ_HELD && (!s->req.brk || s->req.brk == b)) {
		s->req.brk = b;
		s->req.state = REQ_GO;
		pthread_cond_broadcast(&sc.cv);
	}
	mrl_unlock(&sc.lock);
}

static void sc_brk_done(struct mrl_ctx *ctx, struct mrl_brk *b)
{
	mrl_lock(&sc.lock);
	struct sc_ctx *s = sc_of(ctx);
	if (s && s->req.brk == b) {
		s->req.brk = NULL;
		if (s->req.state == REQ_HELD)
			s->req.state = REQ_GO;
		pthread_cond_broadcast(&sc.cv);
	}
	mrl_unlock(&sc.lock);
}

static void sc_monitor_gone(struct mrl_ctx *ctx)
{
	mrl_lock(&sc.lock);
	struct sc_ctx *s = sc_of(ctx);
	if (s && s->req.state != REQ_NONE && s->req.state != REQ_CALLING)
		s->req.state = s->req.state == REQ_DONE ? REQ_NONE : REQ_GO;
	pthread_cond_broadcast(&sc.cv);
	mrl_unlock(&sc.lock);
	kick();
}

/* Seen before they land: the owner's own calls, raw ones included. */
static unsigned sc_coverage(struct mrl_ctx *ctx, struct mrl_mr *mr, uint8_t *cov)
{
	mrl_lock(&sc.lock);
	bool on = sc_of(ctx) && sc.notify_fd >= 0 && sc.pid == getpid();
	mrl_unlock(&sc.lock);
	if (!on)
		return 0;
	mrl_cov_raise(cov, MRL_CHG_OWNER_MUNMAP, MRL_SEEN_BEFORE);
	mrl_cov_raise(cov, MRL_CHG_OWNER_MREMAP, MRL_SEEN_BEFORE);
	mrl_cov_raise(cov, MRL_CHG_OWNER_MADVISE, MRL_SEEN_BEFORE);
	dev_t dev;
	ino_t ino;
	if ((mr->file && !mr->file->fan) || (!mr->file && mrl_memfd_ident(ctx, mr, &dev, &ino) == 0)) {
		mrl_cov_raise(cov, MRL_CHG_OWNER_TRUNCATE, MRL_SEEN_BEFORE);
		mrl_cov_raise(cov, MRL_CHG_OWNER_LAYOUT, MRL_SEEN_BEFORE);
	}
	return MRL_WATCH_SECCOMP;
}

const struct mrl_watcher_ops mrl_watch_seccomp = {
	.name = "seccomp",
	.bit = MRL_WATCH_SECCOMP,
	.start = sc_start,
	.stop = sc_stop,
	.tick = sc_tick,
	.next_timer = sc_next_timer,
	.let_land = sc_let_land,
	.brk_done = sc_brk_done,
	.monitor_gone = sc_monitor_gone,
	.mr_attach = sc_mr_attach,
	.mr_detach = sc_mr_detach,
	.coverage = sc_coverage,
};
