/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The owner's side of the guardian (the process itself: guard_loop.c).
 *
 * A break's deadline is counted by the monitor thread; if the owner is
 * stopped, busy, deadlocked or paged out, nothing in it fires, and other
 * processes wait on it: a fanotify actor for ever, a lease breaker for the
 * kernel's lease-break-time. So every context that watches with fanotify or
 * leases forks a guardian from its monitor thread: a small process holding
 * the fanotify group (inherited) and a dup of every leased file description
 * (sent over a socket: a file's, and a memfd's reopen that memfd.c leases),
 * and a shared table where the owner publishes each
 * held event and each lease break it handles, with its deadline. The owner
 * answers as before; the guardian acts only past deadline + margin, and
 * each act is reaped here (mrl_guard_reap) as a change seen after it
 * landed (mrl_mr_changed_after: a new generation or a fence, never silence).
 *
 * The fast path pays a few stores per held event (publish, take, release);
 * nothing is sent to the guardian for an event. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mrl_int.h"
#include "guard.h"

#define FAN_OPEN_PERM_BIT 0x00010000 /* <sys/fanotify.h>'s FAN_OPEN_PERM */

#define LD(p) __atomic_load_n((p), __ATOMIC_SEQ_CST)
#define ST(p, v) __atomic_store_n((p), (v), __ATOMIC_SEQ_CST)
/* what the guardian reads after it sees the state: release is enough */
#define PUT(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)

struct mrl_guard {
	struct guard_shm *g;
	pid_t pid;
	int sock;
	unsigned fan_hint;
	uint64_t reads;                            /* owner_reads, the owner's copy */
	struct mrl_fan_ev *ev[GUARD_FAN_SLOTS];    /* the owner's event per fan slot */
	/* the leased object per lease slot: a file, or a memfd's record */
	struct {
		void *obj;
		int kind; /* enum mrl_guard_kind */
	} leased[GUARD_LEASE_SLOTS];
};

static void poke(struct mrl_guard *gd, int slot, int fd);

/* tests: start no guardian (to show what it prevents) */
bool mrl_guard_off;

static bool cas(uint32_t *p, uint32_t from, uint32_t to)
{
	return __atomic_compare_exchange_n(p, &from, to, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}

/* In the monitor thread, before its loop: the guardian's parent is this
 * thread (PR_SET_PDEATHSIG), which lives exactly as long as the context. */
int mrl_guard_start(struct mrl_ctx *ctx)
{
	if (!(ctx->watchers & (MRL_WATCH_LEASE | MRL_WATCH_FANOTIFY | MRL_WATCH_MEMFD)) ||
	    mrl_guard_off)
		return 0;
	struct mrl_guard *gd = calloc(1, sizeof(*gd));
	if (!gd)
		return mrl_err(ENOMEM, "guardian: no memory");
	gd->sock = -1;
	int sv[2] = {-1, -1}, pidfd = -1, ret;
	gd->g = mmap(NULL, sizeof(*gd->g), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (gd->g == MAP_FAILED) {
		gd->g = NULL;
		ret = mrl_err(errno, "guardian: mmap: %s", strerror(errno));
		goto fail;
	}
	struct rlimit rl;
	gd->g->deadline_ns = (uint64_t)ctx->opts.deadline_ms * 1000000ull;
	gd->g->owner_nofile = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (1u << 20)
				      ? (int)rl.rlim_cur : 1 << 20;
	for (int i = 0; i < GUARD_FAN_SLOTS; i++)
		gd->g->fan[i].fd = -1;
	pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0 || pidfd < 0) {
		ret = mrl_err(errno, "guardian: socketpair/pidfd_open: %s", strerror(errno));
		goto fail;
	}
	pid_t owner = getpid();
	struct guard_shm *g = gd->g;
	int fan_fd = ctx->fan_fd, wake_fd = ctx->wake_fd, gsock = sv[1];
	/* a bare clone: no exit signal (the application's wait(-1) never sees
	 * it), no fork handlers (the child runs no library or libc code) */
	long pid = syscall(SYS_clone, 0, NULL, NULL, NULL, 0);
	if (pid == 0)
		mrl_guard_loop(g, gsock, fan_fd, wake_fd, pidfd, owner);
	if (pid < 0) {
		ret = mrl_err(errno, "guardian: clone: %s", strerror(errno));
		goto fail;
	}
	gd->pid = (pid_t)pid;
	close(sv[1]);
	close(pidfd);
	gd->sock = sv[0];
	fcntl(gd->sock, F_SETFL, O_NONBLOCK);
	ctx->guard = gd;
	return 0;
fail:
	if (sv[0] >= 0)
		close(sv[0]), close(sv[1]);
	if (pidfd >= 0)
		close(pidfd);
	if (gd->g)
		munmap(gd->g, sizeof(*gd->g));
	free(gd);
	return ret;
}

/* After the monitor stopped (its exit killed the guardian: PDEATHSIG). */
void mrl_guard_stop(struct mrl_ctx *ctx)
{
	struct mrl_guard *gd = ctx->guard;
	if (!gd)
		return;
	close(gd->sock);
	kill(gd->pid, SIGKILL);
	while (waitpid(gd->pid, NULL, __WALL) < 0 && errno == EINTR)
		;
	for (int i = 0; i < GUARD_FAN_SLOTS; i++) {
		struct mrl_fan_ev *e = gd->ev[i];
		if (!e)
			continue;
		e->gslot = 0; /* the owner alone answers now */
		if (e->gzombie) /* freed by the owner, kept for the reap */
			mrl_fan_ev_free(e);
	}
	munmap(gd->g, sizeof(*gd->g));
	free(gd);
	ctx->guard = NULL;
}

pid_t mrl_guard_pid(struct mrl_ctx *ctx)
{
	return ctx->guard ? ctx->guard->pid : 0;
}

uint64_t mrl_guard_acts(struct mrl_ctx *ctx)
{
	return ctx->guard ? LD(&ctx->guard->g->acts) : 0;
}

/* ---- fanotify: held events ---- */

/* No lock: before the monitor reads the group. false: the guardian is
 * reading it now (try again); *mark says later whether it swept meanwhile. */
bool mrl_guard_read_begin(struct mrl_ctx *ctx, uint64_t *mark)
{
	struct mrl_guard *gd = ctx->guard;
	if (!gd)
		return true;
	/* against the guardian's guard_reading: each sees the other's store
	 * before its own load (seq_cst), so they never both read */
	ST(&gd->g->owner_reading, mrl_now_ns() | 1);
	if (LD(&gd->g->guard_reading)) {
		ST(&gd->g->owner_reading, 0);
		sched_yield();
		return false;
	}
	*mark = LD(&gd->g->sweeps);
	/* against the guardian's guard_idle (seq_cst, as above): either it
	 * sees this read begun and keeps a timer, or we wake it here */
	if (LD(&gd->g->guard_idle) && __atomic_exchange_n(&gd->g->guard_idle, 0, __ATOMIC_SEQ_CST))
		poke(gd, -1, -1);
	return true;
}

/* After every event read was published: true if the guardian, seeing the
 * owner stuck in that read, answered every number meanwhile. */
bool mrl_guard_read_end(struct mrl_ctx *ctx, uint64_t mark)
{
	struct mrl_guard *gd = ctx->guard;
	if (!gd)
		return false;
	__atomic_add_fetch(&gd->g->owner_reads, 1, __ATOMIC_RELAXED);
	PUT(&gd->g->owner_reading, 0);
	return LD(&gd->g->sweeps) != mark;
}

/* No lock (the monitor, right after its read): e is held in the kernel;
 * the guardian lets it go at deadline + margin unless the owner answers. */
void mrl_guard_fan_hold(struct mrl_ctx *ctx, struct mrl_fan_ev *e, uint64_t deadline)
{
	struct mrl_guard *gd = ctx->guard;
	if (!gd || e->fd < 0)
		return;
	for (unsigned k = 0; k < GUARD_FAN_SLOTS; k++) {
		unsigned i = (gd->fan_hint + k) % GUARD_FAN_SLOTS;
		struct guard_slot *s = &gd->g->fan[i];
		if (LD(&s->state) != GS_FREE)
			continue;
		s->fd = e->fd;
		s->tid = e->tid;
		s->pad2 = (e->mask & FAN_OPEN_PERM_BIT) != 0;
		s->size = e->size;
		PUT(&s->deadline_ns, deadline);
		gd->ev[i] = e;
		e->gslot = i + 1;
		e->guard = gd;
		PUT(&s->state, GS_PENDING);
		gd->fan_hint = i + 1;
		return;
	}
	static _Atomic bool told;
	if (!atomic_exchange(&told, true))
		mrl_log("guardian: more than %d held events: the rest wait on the owner alone",
			GUARD_FAN_SLOTS);
}

/* The break holding e has its own deadline (later, when e waited behind
 * another break, or an MR's own longer one): the guardian keeps it. */
void mrl_guard_fan_deadline(struct mrl_fan_ev *e, uint64_t deadline)
{
	if (!e->gslot)
		return;
	struct guard_slot *s = &e->guard->g->fan[e->gslot - 1];
	if (deadline > LD(&s->deadline_ns))
		ST(&s->deadline_ns, deadline);
}

/* The owner is about to answer e: true = answer it (then
 * mrl_guard_fan_answered); false = the guardian has (e->gdone). */
bool mrl_guard_fan_take(struct mrl_fan_ev *e)
{
	if (!e->gslot)
		return true;
	struct guard_slot *s = &e->guard->g->fan[e->gslot - 1];
	if (cas(&s->state, GS_PENDING, GS_OWNED))
		return true;
	e->gdone = true; /* claimed or done: reaped as a change seen after */
	return false;
}

void mrl_guard_fan_answered(struct mrl_fan_ev *e)
{
	if (!e->gslot)
		return;
	struct mrl_guard *gd = e->guard;
	unsigned i = e->gslot - 1;
	gd->ev[i] = NULL;
	e->gslot = 0;
	PUT(&gd->g->fan[i].fd, -1);
	PUT(&gd->g->fan[i].state, GS_FREE);
}

/* e is being freed: true = free it now. false = the guardian answered it
 * (or is answering): its fd must stay open (the kernel matches the
 * guardian's answer by its number) and the reap still needs it. */
bool mrl_guard_fan_free(struct mrl_fan_ev *e)
{
	if (!e->gslot)
		return true;
	struct guard_slot *s = &e->guard->g->fan[e->gslot - 1];
	if (cas(&s->state, GS_PENDING, GS_OWNED)) { /* never answered: the caller let it go */
		mrl_guard_fan_answered(e);
		return true;
	}
	e->gzombie = true;
	return false;
}

/* ---- leases: a file's (lease.c) or a memfd's (memfd.c), by slot ---- */

static struct guard_slot *lease_slot(struct mrl_ctx *ctx, const unsigned *gslot)
{
	return ctx->guard && *gslot ? &ctx->guard->g->lease[*gslot - 1] : NULL;
}

static void poke(struct mrl_guard *gd, int slot, int fd)
{
	uint32_t v = (uint32_t)slot;
	struct iovec iov = {&v, sizeof(v)};
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} c;
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
	if (fd >= 0) {
		memset(&c, 0, sizeof(c));
		m.msg_control = c.buf;
		m.msg_controllen = sizeof(c.buf);
		struct cmsghdr *h = CMSG_FIRSTHDR(&m);
		h->cmsg_level = SOL_SOCKET;
		h->cmsg_type = SCM_RIGHTS;
		h->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(h), &fd, sizeof(fd));
	} else {
		v = UINT32_MAX; /* only a wake-up */
	}
	if (sendmsg(gd->sock, &m, MSG_DONTWAIT | MSG_NOSIGNAL) < 0 && fd >= 0)
		mrl_log("guardian: cannot hand it a lease: %s", strerror(errno));
}

/* ctx->lock held: the lease (type) on fd is held now; the guardian watches
 * it. *gslot: the object's slot + 1 (0 none yet); obj, kind: who is told
 * when the guardian lets go of it (mrl_guard_reap). */
void mrl_guard_slot_arm(struct mrl_ctx *ctx, unsigned *gslot, int fd, int type, int kind, void *obj,
			const char *what)
{
	struct mrl_guard *gd = ctx->guard;
	if (!gd || fd < 0)
		return;
	if (!*gslot) {
		for (int i = 0; i < GUARD_LEASE_SLOTS && !*gslot; i++)
			if (!gd->leased[i].obj && LD(&gd->g->lease[i].state) == GS_FREE) {
				gd->leased[i].obj = obj;
				gd->leased[i].kind = kind;
				*gslot = (unsigned)i + 1;
				ST(&gd->g->lease[i].state, GS_IDLE);
				poke(gd, i, fd);
			}
		if (!*gslot) {
			mrl_log("guardian: more than %d leases: %s waits on the owner alone",
				GUARD_LEASE_SLOTS, what);
			return;
		}
	}
	struct guard_slot *s = &gd->g->lease[*gslot - 1];
	s->lease_type = (uint32_t)type;
	__atomic_add_fetch(&s->pad, 1, __ATOMIC_SEQ_CST);
	if (cas(&s->state, GS_IDLE, GS_ARMED))
		poke(gd, -1, -1); /* it may sleep without a lease to watch */
}

/* ctx->lock held: the owner handles the lease's break, resolved by deadline. */
void mrl_guard_slot_pending(struct mrl_ctx *ctx, const unsigned *gslot, uint64_t deadline)
{
	struct guard_slot *s = lease_slot(ctx, gslot);
	if (!s)
		return;
	ST(&s->deadline_ns, deadline);
	cas(&s->state, GS_ARMED, GS_PENDING);
}

/* ctx->lock held: the owner lets go of the lease itself. */
void mrl_guard_slot_idle(struct mrl_ctx *ctx, const unsigned *gslot)
{
	struct guard_slot *s = lease_slot(ctx, gslot);
	if (s && !cas(&s->state, GS_ARMED, GS_IDLE))
		cas(&s->state, GS_PENDING, GS_IDLE); /* else the guardian has: reaped */
}

/* ctx->lock held: the leased fd is about to close: the guardian closes its dup. */
void mrl_guard_slot_detach(struct mrl_ctx *ctx, unsigned *gslot)
{
	struct guard_slot *s = lease_slot(ctx, gslot);
	if (!s)
		return;
	for (;;) {
		uint32_t st = LD(&s->state);
		if (st == GS_CLAIMED) { /* one fcntl away from done */
			sched_yield();
			continue;
		}
		if (cas(&s->state, st, GS_CLOSE))
			break;
	}
	ctx->guard->leased[*gslot - 1].obj = NULL;
	*gslot = 0;
	poke(ctx->guard, -1, -1);
	/* its close is waited for by mrl_guard_settle, outside ctx->lock */
}

void mrl_guard_lease_arm(struct mrl_ctx *ctx, struct mrl_file *f, int type)
{
	mrl_guard_slot_arm(ctx, &f->gslot, f->fd, type, GUARD_FILE, f, f->path);
}

void mrl_guard_lease_pending(struct mrl_ctx *ctx, struct mrl_file *f, uint64_t deadline)
{
	mrl_guard_slot_pending(ctx, &f->gslot, deadline);
}

void mrl_guard_lease_idle(struct mrl_ctx *ctx, struct mrl_file *f)
{
	mrl_guard_slot_idle(ctx, &f->gslot);
}

void mrl_guard_lease_detach(struct mrl_ctx *ctx, struct mrl_file *f)
{
	mrl_guard_slot_detach(ctx, &f->gslot);
}

/* No lock held: the guardian's dups of detached files are closed. Its dup
 * keeps the open file description, and so the file's write count, alive: a
 * lease taken on the file right after (mrl_file_adopt, a new mrl_file_map,
 * a file MR) would find another opener. Its close is one poll wake-up
 * away; wait that long, bounded (a guardian stopped by hand only delays
 * the next lease, which is retaken on the close). */
void mrl_guard_settle(struct mrl_ctx *ctx)
{
	struct mrl_guard *gd = ctx->guard;
	if (!gd)
		return;
	uint64_t until = 0;
	for (int k = 0; k < GUARD_LEASE_SLOTS; k++)
		for (int i = 0; LD(&gd->g->lease[k].state) == GS_CLOSE; i++) {
			if (!until)
				until = mrl_now_ns() + 100000000ull;
			else if (mrl_now_ns() >= until)
				return;
			if (i < 50) {
				sched_yield();
			} else {
				struct timespec ts = {0, 50000};
				nanosleep(&ts, NULL);
			}
		}
}

/* ---- what the guardian did, seen by the owner: ctx->lock held, in the
 * monitor, before anything read this round is handled ---- */
void mrl_guard_reap(struct mrl_ctx *ctx)
{
	struct mrl_guard *gd = ctx->guard;
	if (!gd)
		return;
	struct guard_shm *g = gd->g;
	__atomic_add_fetch(&g->alive, 1, __ATOMIC_SEQ_CST); /* ends the guardian's "stalled" */
	for (int i = 0; i < GUARD_FAN_SLOTS; i++) {
		if (LD(&g->fan[i].state) != GS_DONE)
			continue;
		struct mrl_fan_ev *e = gd->ev[i];
		gd->ev[i] = NULL;
		g->fan[i].fd = -1;
		if (e) {
			e->gslot = 0;
			e->answered = true;
			e->gdone = true;
			e->gdenied = g->fan[i].lease_type == 1;
			mrl_fan_guard_let(ctx, e, g->fan[i].acted_ns);
			if (e->gzombie)
				mrl_fan_ev_free(e);
		}
		ST(&g->fan[i].state, GS_FREE);
	}
	for (uint64_t i = 0; i < GUARD_RECS; i++) {
		struct guard_rec *r = &g->rec[i];
		if (!LD(&r->full))
			continue;
		mrl_fan_guard_rec(ctx, r->dev, r->ino, r->mask, r->tid, r->lo, r->hi, r->line, r->at,
				  r->denied);
		ST(&r->full, 0);
	}
	for (int i = 0; i < GUARD_LEASE_SLOTS; i++) {
		struct guard_slot *s = &g->lease[i];
		if (LD(&s->state) != GS_DONE || !gd->leased[i].obj)
			continue;
		ST(&s->state, GS_IDLE);
		if (gd->leased[i].kind == GUARD_MEMFD)
			mrl_memfd_guard_let(ctx, gd->leased[i].obj, (int)s->lease_type, s->acted_ns);
		else
			mrl_lease_guard_let(ctx, gd->leased[i].obj, (int)s->lease_type, s->acted_ns);
	}
}
