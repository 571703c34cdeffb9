/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The seccomp watcher's threads (seccomp.h), both started before the filter
 * so they are not filtered: the supervisor reads every notification and
 * answers it at once ("go on") unless it touches a context's MRs, then hands
 * it to that context's monitor (one held call per context, the rest wait in
 * a backlog); the caller makes a held call once its context let it land, in
 * this process (same address space, same fd table), and answers with its
 * result. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/shm.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "seccomp.h"

struct mrl_sc mrl_sc = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, {0}, -1, false, 0, 0, 0, 0, 0};

void mrl_sc_respond(const struct seccomp_notif *n, bool go_on, int64_t val, int err)
{
	struct seccomp_notif_resp r = {.id = n->id};
	if (go_on) {
		r.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
	} else {
		r.val = val;
		r.error = err;
	}
	/* ENOENT: the actor is gone (killed, or a signal restarted the call) */
	ioctl(mrl_sc.notify_fd, SECCOMP_IOCTL_NOTIF_SEND, &r);
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
	struct sc_req q; /* n, dev, ino, seg */
	uint64_t id;
} backlog[SC_BACKLOG];
static unsigned nbacklog;

/* mrl_sc.lock held: hand the call to its context's monitor */
static void dispatch_locked(struct sc_ctx *s, const struct sc_req *q)
{
	s->req = (struct sc_req){.state = REQ_PENDING, .n = q->n, .seen = mrl_now_ns(),
				 .dev = q->dev, .ino = q->ino, .seg = q->seg};
	mrl_sc.held++;
	mrl_wake_monitor(s->ctx); /* an eventfd write: never held */
}

/* mrl_sc.lock held: the backlog's calls whose contexts are free now */
static void dispatch_backlog_locked(void)
{
	unsigned k = 0;
	for (unsigned i = 0; i < nbacklog; i++) {
		struct sc_ctx *s = mrl_sc_by_id(backlog[i].id);
		if (!s) {
			mrl_sc_respond(&backlog[i].q.n, true, 0, 0); /* its context is gone */
		} else if (s->req.state == REQ_NONE) {
			dispatch_locked(s, &backlog[i].q);
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
	if (syscall(SYS_tgkill, mrl_sc.pid, n->pid, 0) < 0) {
		mrl_sc_respond(n, true, 0, 0);
		return;
	}
	struct stat st, *stp = NULL;
	struct iovec iov[8];
	size_t niov = 0;
	/* the actor's fd, looked at on its behalf while its call waits (the
	 * kernel orders the two): a raw fstat, outside ThreadSanitizer's model
	 * of fds, which cannot see that order */
	if ((n->data.nr == SYS_ftruncate || n->data.nr == SYS_fallocate) &&
	    syscall(SYS_fstat, (int)n->data.args[0], &st) == 0)
		stp = &st;
	if (n->data.nr == SYS_process_madvise) {
		/* the iovecs, read safely (a bad pointer is the call's EFAULT) */
		niov = n->data.args[2] < ARRAY_SIZE(iov) ? n->data.args[2] : ARRAY_SIZE(iov);
		struct iovec l = {iov, niov * sizeof(iov[0])},
			     r = {(void *)(uintptr_t)n->data.args[1], niov * sizeof(iov[0])};
		if (process_vm_readv(mrl_sc.pid, &l, 1, &r, 1, 0) != (ssize_t)(niov * sizeof(iov[0])))
			niov = 0;
	}
	struct sc_req q = {.n = *n, .dev = stp ? stp->st_dev : 0, .ino = stp ? stp->st_ino : 0};
	struct shmid_ds ds;
	if (n->data.nr == SYS_shmat && shmctl((int)n->data.args[0], IPC_STAT, &ds) == 0)
		q.seg = ds.shm_segsz;
	mrl_lock(&mrl_sc.lock);
	struct sc_ctx *s = mrl_sc_match_locked(n, stp, iov, niov, q.seg);
	bool go_on = !s;
	if (s && s->req.state == REQ_NONE) {
		dispatch_locked(s, &q);
	} else if (s && nbacklog < SC_BACKLOG) {
		backlog[nbacklog].q = q;
		backlog[nbacklog++].id = s->id;
	} else if (s) {
		go_on = true;
		mrl_sc.lost++;
	}
	if (go_on)
		mrl_sc.passed++;
	mrl_unlock(&mrl_sc.lock);
	if (go_on)
		mrl_sc_respond(n, true, 0, 0);
}

static int kick_fd = -1; /* eventfd: a slot freed, dispatch the backlog */

void mrl_sc_kick(void)
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
	mrl_lock(&mrl_sc.lock);
	while (mrl_sc.notify_fd == -1)
		pthread_cond_wait(&mrl_sc.cv, &mrl_sc.lock);
	int fd = mrl_sc.notify_fd;
	mrl_unlock(&mrl_sc.lock);
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
			mrl_lock(&mrl_sc.lock);
			dispatch_backlog_locked();
			mrl_unlock(&mrl_sc.lock);
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
	mrl_lock(&mrl_sc.lock);
	for (;;) {
		struct sc_ctx *s = NULL;
		for (int i = 0; i < SC_CTXS && !s; i++)
			if (mrl_sc.ctxs[i] && mrl_sc.ctxs[i]->req.state == REQ_GO)
				s = mrl_sc.ctxs[i];
		if (!s) {
			if (mrl_sc.notify_fd == -2)
				break;
			pthread_cond_wait(&mrl_sc.cv, &mrl_sc.lock);
			continue;
		}
		struct seccomp_notif n = s->req.n;
		uint64_t id = s->id;
		s->req.state = REQ_CALLING;
		mrl_unlock(&mrl_sc.lock);
		int64_t v = do_call(&n);
		mrl_sc_respond(&n, false, v < 0 ? 0 : v, v < 0 ? (int)v : 0);
		mrl_lock(&mrl_sc.lock);
		if ((s = mrl_sc_by_id(id))) {
			s->req.state = REQ_DONE;
			mrl_wake_monitor(s->ctx);
		}
	}
	mrl_unlock(&mrl_sc.lock);
	return NULL;
}

/* The child of a fork has no supervisor: without a copy of the listener its
 * matching calls go to the parent's while it lives (let go), then fail
 * ENOSYS; with one they would wait for ever. */
static void sc_child(void)
{
	if (mrl_sc.notify_fd >= 0)
		close(mrl_sc.notify_fd);
	mrl_sc.notify_fd = -1;
	if (kick_fd >= 0)
		close(kick_fd);
	kick_fd = -1;
	nbacklog = 0;
	mrl_sc.started = false;
	pthread_mutex_init(&mrl_sc.lock, NULL);
	pthread_cond_init(&mrl_sc.cv, NULL);
	memset(mrl_sc.ctxs, 0, sizeof(mrl_sc.ctxs)); /* the parent's: never freed here */
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
	mrl_lock(&mrl_sc.lock);
	bool started = mrl_sc.started;
	mrl_sc.started = true;
	mrl_unlock(&mrl_sc.lock);
	if (started)
		return 0;
	pthread_once(&once, sc_atfork);
	pthread_t t;
	pthread_attr_t at;
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	mrl_sc.pid = getpid();
	kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	int err = kick_fd < 0 ? errno : pthread_create(&t, &at, sup_main, NULL);
	if (!err)
		err = pthread_create(&t, &at, caller_main, NULL);
	pthread_attr_destroy(&at);
	if (err) {
		mrl_lock(&mrl_sc.lock);
		mrl_sc.notify_fd = -2; /* whatever started leaves */
		pthread_cond_broadcast(&mrl_sc.cv);
		mrl_unlock(&mrl_sc.lock);
		return mrl_err(err, "mrl_ctx_create: MRL_CTX_SECCOMP: supervisor threads: %s",
			       strerror(err));
	}
	int fd = mrl_sc_filter_install();
	mrl_lock(&mrl_sc.lock);
	mrl_sc.notify_fd = fd < 0 ? -2 : fd; /* -2: the threads leave */
	pthread_cond_broadcast(&mrl_sc.cv);
	mrl_unlock(&mrl_sc.lock);
	if (fd == -EBUSY)
		return mrl_err(EBUSY, "mrl_ctx_create: MRL_CTX_SECCOMP: this process inherited a seccomp listener (a parent used MRL_CTX_SECCOMP, or runs a supervisor): one per process tree");
	if (fd < 0)
		return mrl_err(-fd, "mrl_ctx_create: MRL_CTX_SECCOMP: seccomp filter: %s",
			       strerror(-fd));
	return 0;
}

