/* The fcntl-lease watcher and the per-file break state machine:
 * break seen -> pause MRs and peers -> release the lease -> change lands ->
 * retake the lease (close watch via inotify) -> restore -> resume.
 * Every function here runs with ctx->lock held. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "mrl_int.h"
#include "proto.h"

#define MR_OF_FNODE(n) ((struct mrl_mr *)((char *)(n) - offsetof(struct mrl_mr, fnode)))

/* Stay well inside the kernel's lease-break-time: past it the kernel drops
 * the lease on its own and the change lands unannounced. */
static uint64_t break_time_cap_ns(void)
{
	static _Atomic uint64_t cap;
	if (!cap) {
		long secs = 45;
		FILE *f = fopen("/proc/sys/fs/lease-break-time", "re");
		if (f) {
			if (fscanf(f, "%ld", &secs) != 1)
				secs = 45;
			fclose(f);
		}
		cap = secs > 1 ? (uint64_t)secs * 1000000000ull - 500000000ull : 500000000ull;
	}
	return cap;
}

/* The MRs of a file, as an array the caller frees: the state machine
 * changes MRs while walking them, which the tree walk does not allow. */
struct mr_vec {
	struct mrl_mr **v;
	size_t n, cap;
};
static int vec_cb(struct mrl_itree_node *node, void *p)
{
	struct mr_vec *vec = p;
	if (vec->n == vec->cap) {
		size_t cap = vec->cap ? vec->cap * 2 : 16;
		struct mrl_mr **v = realloc(vec->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		vec->v = v;
		vec->cap = cap;
	}
	vec->v[vec->n++] = MR_OF_FNODE(node);
	return 0;
}
static void range_mrs(struct mrl_file *f, uint64_t lo, uint64_t hi, struct mr_vec *vec)
{
	memset(vec, 0, sizeof(*vec));
	mrl_itree_overlap(&f->mrs, lo, hi, vec_cb, vec);
}
static void file_mrs(struct mrl_file *f, struct mr_vec *vec)
{
	range_mrs(f, 0, UINT64_MAX, vec);
}

int mrl_file_stat_fd(struct mrl_file *f)
{
	if (f->fd >= 0)
		return f->fd;
	return f->brk && f->brk->fev ? f->brk->fev->fd : -1;
}

static void lease_events(struct mrl_ctx *ctx, struct mrl_file *f, uint32_t type)
{
	struct mr_vec vec;
	file_mrs(f, &vec);
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

void mrl_brk_free(struct mrl_ctx *ctx, struct mrl_file *f)
{
	struct mrl_brk *b = f->brk;
	if (!b)
		return;
	while (b->acks) {
		struct mrl_brk_ack *a = b->acks;
		b->acks = a->next;
		free(a);
	}
	if (b->fev) {
		mrl_fan_answer(ctx, b->fev, 0); /* never leave an actor waiting in the kernel */
		mrl_fan_ev_free(b->fev);
	}
	free(b);
	f->brk = NULL;
}

/* Queue one PAUSE message to a peer and expect its ack. */
static void queue_pause(struct mrl_ctx *ctx, struct mrl_brk *b, struct mrl_peer *peer,
			struct msg_pause *m)
{
	static _Atomic uint32_t seq;
	struct mrl_brk_ack *a = calloc(1, sizeof(*a));
	if (!a)
		return; /* no ack expected: the peer times out and is cut off */
	a->peer = peer;
	a->seq = ++seq;
	a->next = b->acks;
	b->acks = a;
	b->acks_pending++;
	m->h.req = a->seq;
	m->h.len = offsetof(struct msg_pause, ids) + m->n * sizeof(m->ids[0]);
	mrl_queue_out(ctx, peer, m, m->h.len);
	m->n = 0;
}

static bool holds_mr(struct mrl_mr *mr, struct mrl_peer *peer)
{
	for (struct mrl_holder *h = mr->holders; h; h = h->next)
		if (h->peer == peer)
			return true;
	return false;
}

/* Send PAUSE for the file's paused MRs to every peer holding one of them. */
static void brk_send_pauses(struct mrl_ctx *ctx, struct mrl_brk *b, struct mr_vec *vec)
{
	/* group by peer: peers are few, MRs many */
	for (size_t i = 0; i < vec->n; i++) {
		struct mrl_mr *mr = vec->v[i];
		if (!mr->in_brk)
			continue;
		for (struct mrl_holder *h = mr->holders; h; h = h->next) {
			bool seen = false;
			for (struct mrl_brk_ack *a = b->acks; a && !seen; a = a->next)
				seen = a->peer == h->peer;
			if (seen)
				continue;
			/* one peer: all its paused MRs of this file, in batches */
			struct msg_pause m;
			memset(&m, 0, sizeof(m));
			m.h.magic = MRL_MAGIC;
			m.h.type = MSG_PAUSE;
			for (size_t j = i; j < vec->n; j++) {
				struct mrl_mr *o = vec->v[j];
				if (!o->in_brk || !holds_mr(o, h->peer))
					continue;
				m.ids[m.n++] = o->handle;
				if (m.n == MRL_PAUSE_IDS)
					queue_pause(ctx, b, h->peer, &m);
			}
			if (m.n)
				queue_pause(ctx, b, h->peer, &m);
		}
	}
}

static void brk_release(struct mrl_ctx *ctx, struct mrl_file *f, uint64_t now);

static void brk_check(struct mrl_ctx *ctx, struct mrl_file *f)
{
	struct mrl_brk *b = f->brk;
	if (!b || b->phase != BRK_QUIESCE || b->acks_pending > 0)
		return;
	struct mr_vec vec;
	file_mrs(f, &vec);
	bool waiting = false;
	for (size_t i = 0; i < vec.n && !waiting; i++)
		waiting = vec.v[i]->in_brk && vec.v[i]->policy == MRL_POLICY_NOTIFY &&
			  !vec.v[i]->owner_answer;
	free(vec.v);
	if (!waiting)
		brk_release(ctx, f, mrl_now_ns());
}

/* Pause the live MRs over [lo, hi) of the file. false if none is live
 * there (nothing to wait for: the caller lets the change go at once). */
static bool brk_start(struct mrl_ctx *ctx, struct mrl_file *f, int cause, pid_t pid, uint64_t lo,
		      uint64_t hi, uint64_t seen, struct mrl_fan_ev *fev)
{
	struct mr_vec vec;
	range_mrs(f, lo, hi, &vec);
	/* live: active, and the part still served (not a fenced tail) is in range */
	size_t k = 0;
	for (size_t i = 0; i < vec.n; i++)
		if (vec.v[i]->state == MRL_STATE_ACTIVE && vec.v[i]->fnode.start + vec.v[i]->valid_len > lo)
			vec.v[k++] = vec.v[i];
	vec.n = k;
	bool live = k > 0;
	struct mrl_brk *b = live ? calloc(1, sizeof(*b)) : NULL;
	if (!b) {
		/* nothing live, or cannot track it: fence what is live (safe side) */
		for (size_t i = 0; i < vec.n; i++)
			mrl_mr_fence_locked(ctx, vec.v[i], cause, 0, vec.v[i]->len, pid, seen);
		free(vec.v);
		return false;
	}
	ctx->st.breaks++;
	b->file = f;
	b->phase = BRK_QUIESCE;
	b->cause = cause;
	b->pid = pid;
	b->seen_ns = seen;
	b->lo = lo;
	b->hi = hi;
	b->fev = fev;
	f->brk = b;
	uint64_t dl = UINT64_MAX;
	for (size_t i = 0; i < vec.n; i++) {
		uint64_t d = seen + (uint64_t)vec.v[i]->deadline_ms * 1000000ull;
		dl = d < dl ? d : dl;
	}
	/* a lease breaker is let in by the kernel after lease-break-time; a
	 * fanotify actor would wait for ever: both get no more than that */
	if (dl == UINT64_MAX || dl > seen + break_time_cap_ns())
		dl = seen + break_time_cap_ns();
	b->deadline_ns = dl;
	for (size_t i = 0; i < vec.n; i++) {
		struct mrl_mr *mr = vec.v[i];
		if (mr->state != MRL_STATE_ACTIVE)
			continue;
		/* the part of the MR the change touches, in MR offsets */
		uint64_t off = lo > mr->fnode.start ? lo - mr->fnode.start : 0;
		uint64_t end = hi - mr->fnode.start < mr->len && hi > mr->fnode.start ? hi - mr->fnode.start : mr->len;
		mr->breaks++;
		mr->cause = cause;
		mr->cause_pid = pid;
		mr->cause_off = off;
		mr->cause_len = end - off;
		if (mr->policy == MRL_POLICY_FENCE) {
			mrl_mr_fence_locked(ctx, mr, cause, 0, mr->len, pid, seen);
			continue;
		}
		mr->state = MRL_STATE_PAUSED;
		mr->in_brk = 1;
		mr->owner_answer = ANSWER_NONE;
		ctx->st.pauses++;
		mrl_mr_quiesce_locked(ctx, mr);
		mrl_post_event(ctx, mr, MRL_EVENT_BREAK, cause, off, end - off, pid, dl, seen);
	}
	brk_send_pauses(ctx, b, &vec);
	free(vec.v);
	brk_check(ctx, f);
	return true;
}

bool mrl_brk_begin_range(struct mrl_ctx *ctx, struct mrl_file *f, struct mrl_fan_ev *e)
{
	return brk_start(ctx, f, e->cause, e->pid, e->lo, e->hi, e->seen, e);
}

static void brk_begin(struct mrl_ctx *ctx, struct mrl_file *f, int cause, pid_t pid, uint64_t seen)
{
	ctx->st.lease_breaks++;
	if (cause == MRL_CAUSE_OPEN_READ) {
		/* A reader changes no layout: nothing to pause. Our mapping is
		 * shared writable, so a read lease is impossible: let go, and
		 * take it back when the reader closes. */
		fcntl(f->fd, F_SETLEASE, F_UNLCK);
		f->lease = LEASE_RELEASED;
		f->relock_at = seen + (uint64_t)ctx->opts.relock_ms * 1000000ull;
		return;
	}
	/* a lease is whole-file: every MR of the file is paused */
	if (!brk_start(ctx, f, cause, pid, 0, UINT64_MAX, seen, NULL)) {
		fcntl(f->fd, F_SETLEASE, F_UNLCK);
		f->lease = LEASE_RELEASED;
		f->relock_at = seen + (uint64_t)ctx->opts.relock_ms * 1000000ull;
	}
}

/* Quiesced (or out of time): revoke what must go, then let the change land. */
static void brk_release(struct mrl_ctx *ctx, struct mrl_file *f, uint64_t now)
{
	struct mrl_brk *b = f->brk;
	struct mr_vec vec;
	file_mrs(f, &vec);
	for (struct mrl_brk_ack *a = b->acks; a; a = a->next) {
		if (a->done)
			continue;
		/* A peer that did not answer is cut off from the paused MRs it
		 * holds: they come back under a new key it is never told. */
		ctx->st.peer_timeouts += a->peer != NULL; /* NULL: a local device (uring quiesce) */
		for (size_t i = 0; i < vec.n; i++) {
			struct mrl_mr *mr = vec.v[i];
			for (struct mrl_holder **hp = &mr->holders; *hp; hp = &(*hp)->next) {
				if ((*hp)->peer != a->peer || !mr->in_brk)
					continue;
				struct mrl_holder *h = *hp;
				uint8_t st = mr->state, cause = mr->cause;
				mr->state = MRL_STATE_FENCED;
				mr->cause = MRL_CAUSE_PEER_TIMEOUT;
				mrl_send_state(ctx, mr, a->peer);
				mr->state = st;
				mr->cause = cause;
				mr->rekey = 1;
				*hp = h->next;
				free(h);
				break;
			}
		}
		a->done = true;
	}
	b->acks_pending = 0;
	for (size_t i = 0; i < vec.n; i++) {
		struct mrl_mr *mr = vec.v[i];
		if (!mr->in_brk)
			continue;
		int answer = mr->owner_answer;
		if (mr->policy == MRL_POLICY_NOTIFY && !answer) {
			mr->state = MRL_STATE_ACTIVE;
			mr->in_brk = 0;
			mrl_mr_fence_locked(ctx, mr, MRL_CAUSE_DEADLINE, 0, mr->len, b->pid, b->seen_ns);
		} else if (answer == ANSWER_RELEASE) {
			mr->state = MRL_STATE_ACTIVE;
			mr->in_brk = 0;
			mrl_mr_fence_locked(ctx, mr, MRL_CAUSE_RELEASED, 0, mr->len, b->pid, b->seen_ns);
		} else if (answer == ANSWER_FENCE) {
			mr->state = MRL_STATE_ACTIVE;
			mr->in_brk = 0;
			mrl_mr_fence_locked(ctx, mr, MRL_CAUSE_OWNER, 0, mr->len, b->pid, b->seen_ns);
		} else {
			/* the device must not keep the old pages while the change lands */
			mrl_mr_unpin_locked(ctx, mr, b->pid, b->seen_ns);
		}
	}
	free(vec.v);
	if (b->fev) {
		mrl_fan_answer(ctx, b->fev, 0); /* the actor goes on; the change lands */
		b->poll_at = now + 250000ull;
	} else {
		fcntl(f->fd, F_SETLEASE, F_UNLCK);
		f->lease = LEASE_RELEASED;
		/* An O_NONBLOCK breaker (coreutils truncate) was told EWOULDBLOCK
		 * and comes back when it likes. Retaking after relock_ms breaks
		 * it again, and one that retries slower than that never gets in.
		 * So once a breaker missed its window, the next release waits
		 * for the breaker itself (its close) or the landing deadline. */
		f->relock_at = f->brk_unmet ? 0 : now + (uint64_t)ctx->opts.relock_ms * 1000000ull;
	}
	uint64_t done = mrl_now_ns();
	ctx->pause_ns[ctx->npause++ % ARRAY_SIZE(ctx->pause_ns)] = done - b->seen_ns;
	mrl_log("released %s after %llu us", f->path, (unsigned long long)(done - b->seen_ns) / 1000);
	b->phase = BRK_LANDING;
	/* the breaker may keep the file open a while: wait as long as a break may take */
	b->landing_deadline_ns = now + (uint64_t)ctx->opts.deadline_ms * 1000000ull;
}

/* The change has landed (the breaker closed the file, or nobody came): resume. */
void mrl_brk_finish(struct mrl_ctx *ctx, struct mrl_file *f)
{
	struct mr_vec vec;
	file_mrs(f, &vec);
	uint64_t now = mrl_now_ns();
	for (size_t i = 0; i < vec.n; i++) {
		struct mrl_mr *mr = vec.v[i];
		if (!mr->in_brk)
			continue;
		mr->in_brk = 0;
		mrl_mr_restore_locked(ctx, mr, now);
	}
	free(vec.v);
	mrl_brk_free(ctx, f);
}

enum retake_why { RETAKE_CLOSE, RETAKE_RELOCK, RETAKE_DEADLINE };

static void try_retake(struct mrl_ctx *ctx, struct mrl_file *f, enum retake_why why)
{
	if (f->lease != LEASE_RELEASED && f->lease != LEASE_BLOCKED)
		return;
	if (f->brk && (f->brk->phase != BRK_LANDING || f->brk->fev))
		return;
	mrl_lease_take(ctx, f);
	if (!f->brk)
		return;
	/* The lease comes back only if nobody has the file open. Taken on the
	 * relock timer: the breaker did not come in time (see brk_release).
	 * Refused, or taken on a close: it came. Taken at the deadline: it
	 * gave up, and the next breaker gets the short window again. */
	f->brk_unmet = f->lease == LEASE_HELD && why == RETAKE_RELOCK;
	if (f->lease == LEASE_HELD || why == RETAKE_DEADLINE)
		mrl_brk_finish(ctx, f);
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
	struct mr_vec vec;
	file_mrs(f, &vec);
	for (size_t i = 0; i < vec.n && !bp; i++)
		if (vec.v[i]->policy == MRL_POLICY_NOTIFY && vec.v[i]->state == MRL_STATE_ACTIVE)
			bp = breaker_pid(f);
	free(vec.v);
	f->lease = LEASE_BREAKING;
	/* The lease's target type tells a reader (F_RDLCK) from a writer. */
	brk_begin(ctx, f, target == F_RDLCK ? MRL_CAUSE_OPEN_READ : MRL_CAUSE_OPEN_WRITE,
		  bp, seen);
}

/* Seen after the fact: a shrink fences what lies past the new end. This is
 * the net under every other watcher, so it runs for every file: a change
 * whose landing was judged too early, or let go at a deadline, is seen here
 * once it has landed. MRs a break holds paused are left to restore, which
 * checks the size itself. shrink_only: the change is (or was) resolved
 * before it landed, so there is nothing to announce or re-pin. */
static void changed_after(struct mrl_ctx *ctx, struct mrl_file *f, bool shrink_only)
{
	struct stat st;
	int fd = mrl_file_stat_fd(f);
	if (fd < 0 || fstat(fd, &st) < 0)
		return;
	shrink_only |= f->fan && f->fan_complete; /* every change was seen before it landed */
	uint64_t now = mrl_now_ns(), size = (uint64_t)st.st_size;
	bool announce = !shrink_only && now - f->last_change_ev > 100000000ull;
	struct mr_vec vec;
	file_mrs(f, &vec);
	for (size_t i = 0; i < vec.n; i++) {
		struct mrl_mr *mr = vec.v[i];
		if (mr->state != MRL_STATE_ACTIVE)
			continue;
		uint64_t avail = size > mr->fnode.start ? size - mr->fnode.start : 0;
		if (avail < mr->valid_len)
			mrl_mr_fence_locked(ctx, mr, MRL_CAUSE_TRUNCATED, avail, mr->len - avail, 0, now);
		else if (announce)
			mrl_post_event(ctx, mr, MRL_EVENT_CHANGED, MRL_CAUSE_MODIFIED, 0, mr->len, 0, 0, now);
		/* pinned pages may be orphaned (a punch): re-pin what is still served */
		if (!shrink_only)
			mrl_mr_repin_locked(ctx, mr, now);
	}
	free(vec.v);
	if (announce)
		f->last_change_ev = now;
}

void mrl_lease_on_inotify(struct mrl_ctx *ctx, int wd, uint32_t mask)
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
			try_retake(ctx, f, RETAKE_CLOSE);
	}
}

void mrl_brk_tick(struct mrl_ctx *ctx, uint64_t now)
{
	for (struct mrl_file *f = ctx->files; f; f = f->next) {
		struct mrl_brk *b = f->brk;
		if (b && b->phase == BRK_QUIESCE && now >= b->deadline_ns)
			brk_release(ctx, f, now);
		else if (b && b->fev && b->phase == BRK_LANDING && now >= b->landing_deadline_ns)
			mrl_fan_landing_timeout(ctx, f);
		else if (b && b->fev && b->phase == BRK_LANDING && now >= b->poll_at)
			mrl_fan_check_landed(ctx, f);
		else if (b && b->phase == BRK_LANDING && now >= b->landing_deadline_ns)
			try_retake(ctx, f, RETAKE_DEADLINE);
		else if (f->relock_at && now >= f->relock_at) {
			f->relock_at = 0;
			try_retake(ctx, f, RETAKE_RELOCK);
		}
	}
}

uint64_t mrl_brk_next_timer(struct mrl_ctx *ctx)
{
	uint64_t t = UINT64_MAX;
	for (struct mrl_file *f = ctx->files; f; f = f->next) {
		struct mrl_brk *b = f->brk;
		if (b && b->phase == BRK_QUIESCE && b->deadline_ns < t)
			t = b->deadline_ns;
		if (b && b->phase == BRK_LANDING && b->landing_deadline_ns < t)
			t = b->landing_deadline_ns;
		if (b && b->fev && b->phase == BRK_LANDING && b->poll_at < t)
			t = b->poll_at;
		/* acks come through endpoint progress, which the monitor drives
		 * while it waits: the application's thread may be the actor */
		if (b && b->phase == BRK_QUIESCE && b->acks_pending > 0) {
			uint64_t soon = mrl_now_ns() + 200000ull;
			t = soon < t ? soon : t;
		}
		if (f->relock_at && f->relock_at < t)
			t = f->relock_at;
	}
	return t;
}

bool mrl_brk_waiting_acks(struct mrl_ctx *ctx)
{
	if (ctx->as_brk && ctx->as_brk->acks_pending > 0)
		return true;
	for (struct mrl_file *f = ctx->files; f; f = f->next)
		if (f->brk && f->brk->phase == BRK_QUIESCE && f->brk->acks_pending > 0)
			return true;
	return false;
}

/* Address-space pause (madvise of anonymous/shmem MRs, src/interpose.c):
 * its acks wake the application thread that waits for them. */
static bool as_ack(struct mrl_ctx *ctx, struct mrl_peer *peer, uint32_t seq, bool any_seq)
{
	struct mrl_brk *b = ctx->as_brk;
	bool hit = false;
	for (struct mrl_brk_ack *a = b ? b->acks : NULL; a; a = a->next)
		if (a->peer == peer && (any_seq || a->seq == seq) && !a->done) {
			a->done = true;
			b->acks_pending--;
			hit = true;
		}
	if (hit)
		pthread_cond_broadcast(&ctx->as_cv);
	return hit;
}

void mrl_brk_send_pauses(struct mrl_ctx *ctx, struct mrl_brk *b, struct mrl_mr **mrs, size_t n)
{
	struct mr_vec vec = {.v = mrs, .n = n, .cap = n};
	brk_send_pauses(ctx, b, &vec);
}

void mrl_brk_ack(struct mrl_ctx *ctx, struct mrl_peer *peer, uint32_t seq)
{
	if (as_ack(ctx, peer, seq, false))
		return;
	for (struct mrl_file *f = ctx->files; f; f = f->next) {
		if (!f->brk)
			continue;
		for (struct mrl_brk_ack *a = f->brk->acks; a; a = a->next)
			if (a->peer == peer && a->seq == seq && !a->done) {
				a->done = true;
				f->brk->acks_pending--;
				brk_check(ctx, f);
				return;
			}
	}
}

void mrl_brk_forget_peer(struct mrl_ctx *ctx, struct mrl_peer *peer)
{
	as_ack(ctx, peer, 0, true);
	for (struct mrl_file *f = ctx->files; f; f = f->next) {
		if (!f->brk)
			continue;
		for (struct mrl_brk_ack *a = f->brk->acks; a; a = a->next)
			if (a->peer == peer && !a->done) {
				a->done = true;
				f->brk->acks_pending--;
			}
		/* outbox entries for the peer are dropped by the endpoint */
		brk_check(ctx, f);
	}
}

void mrl_brk_owner_answered(struct mrl_ctx *ctx, struct mrl_mr *mr)
{
	struct mrl_file *f = mr->file;
	if (mr->state == MRL_STATE_DEREGISTERED)
		mr->in_brk = 0;
	if (f && f->brk)
		brk_check(ctx, f);
}
