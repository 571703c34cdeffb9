/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The break engine: the one place that resolves a break of an MR's lease,
 * whichever watcher saw it. A watcher begins a break over a file range
 * (mrl_brk_begin); the engine pauses the live MRs there, sends PAUSE to every
 * peer holding one and waits for their acks and, for NOTIFY MRs, the owner's
 * answer, up to the deadline; then revokes what must go (fence, unpin, cut
 * off silent peers) and asks the watcher to let the change land
 * (ops->let_land). The watcher says when it has landed (mrl_brk_finish):
 * the MRs are restored, under the same keys, onto what the file has now.
 * Device calls (unpin, fence, restore) are queued for the device worker
 * (devq.c); the change is let in only once they are done (BRK_UNPIN).
 * MRL_POLICY_REDIRECT MRs of a file break go the same way, except that
 * the device is pointed at scratch (same key) instead of being cut off,
 * and once the change has landed they go live on that scratch
 * (MRL_EVENT_REDIRECTED) rather than on the file; the owner's
 * mrl_mr_restore brings them back through a break of their own
 * (mrl_brk_unredirect: pause, quiesce, unpin, restore onto the file).
 * A fence decided before its change lands (FENCE-policy MRs here; the
 * interposed munmap, mremap and MAP_FIXED; mrl_mr_fence; mrl_mr_dereg)
 * goes the same way when the MR has holders (fence mode, mr->drain): the
 * MR is fenced for everyone at once, each holder gets PAUSE (asking for an
 * ack) ahead of the notice, refuses new operations, lets those in flight
 * end and acks; only then does the device let go of the pages (the key to
 * its tombstone) and the change land. So no operation a peer reports done
 * reached the tombstone; a holder that does not answer by the deadline is
 * cut off (cause peer timeout), as in any break.
 * Every function here runs with ctx->lock held. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "mrl_int.h"
#include "proto.h"

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

int mrl_mr_vec_push(struct mrl_mr_vec *vec, struct mrl_mr *mr)
{
	if (vec->n == vec->cap) {
		size_t cap = vec->cap ? vec->cap * 2 : 16;
		struct mrl_mr **v = realloc(vec->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		vec->v = v;
		vec->cap = cap;
	}
	vec->v[vec->n++] = mr;
	return 0;
}

static int vec_cb(struct mrl_itree_node *node, void *p)
{
	return mrl_mr_vec_push(p, MR_OF_FNODE(node));
}
void mrl_file_mrs_range(struct mrl_file *f, uint64_t lo, uint64_t hi, struct mrl_mr_vec *vec)
{
	memset(vec, 0, sizeof(*vec));
	mrl_itree_overlap(&f->mrs, lo, hi, vec_cb, vec);
}

int mrl_file_stat_fd(struct mrl_file *f)
{
	if (f->fd >= 0)
		return f->fd;
	if (f->path_fd >= 0)
		return f->path_fd;
	return f->brk && f->brk->fev ? f->brk->fev->fd : -1;
}

void mrl_brk_free(struct mrl_ctx *ctx, struct mrl_brk *b)
{
	for (struct mrl_brk **p = &ctx->brks; *p; p = &(*p)->next)
		if (*p == b) {
			*p = b->next;
			break;
		}
	if (b->file)
		b->file->brk = NULL;
	mrl_dev_cancel(ctx, b); /* freed before it was let land */
	if (ctx->as_brk == b) {
		ctx->as_brk = NULL;
		pthread_cond_broadcast(&ctx->as_cv); /* the next madvise may pause */
	}
	while (b->acks) {
		struct mrl_brk_ack *a = b->acks;
		b->acks = a->next;
		free(a);
	}
	free(b->ack_hash);
	if (b->src->brk_done)
		b->src->brk_done(ctx, b);
	for (size_t i = 0; i < b->mrs.n; i++) {
		if (b->mrs.v[i]->drain == b) /* freed before it released: the device lets go now */
			mrl_mr_drained(ctx, b->mrs.v[i]);
		mrl_mr_put(ctx, b->mrs.v[i]);
	}
	free(b->mrs.v);
	free(b);
}

/* ---- acks: every ack a break waits for (its peers' and the local
 * device's, mr.c puts those on b->acks) is found by its sender and number
 * through a small hash per break, filled lazily from the list's head: new
 * acks are pushed there, so the ones not indexed yet come first. ---- */
static size_t ack_slot(const struct mrl_brk *b, const struct mrl_tpeer *peer, uint32_t seq)
{
	uint64_t k = ((uint64_t)(uintptr_t)peer >> 4) * 0x9e3779b97f4a7c15ull ^ seq;
	k ^= k >> 29;
	return (size_t)(k * 0xbf58476d1ce4e5b9ull >> 17) & (b->ack_hcap - 1);
}

static void ack_index(struct mrl_brk *b)
{
	size_t n = 0;
	for (struct mrl_brk_ack *a = b->acks; a && !a->indexed; a = a->next)
		n++;
	if (!n)
		return;
	if ((b->ack_hn + n) * 2 > b->ack_hcap) {
		size_t cap = b->ack_hcap ? b->ack_hcap : 16;
		while ((b->ack_hn + n) * 2 > cap)
			cap *= 2;
		struct mrl_brk_ack **h = calloc(cap, sizeof(*h));
		if (!h)
			return; /* found by the list walk instead */
		free(b->ack_hash);
		b->ack_hash = h;
		b->ack_hcap = cap;
		b->ack_hn = 0;
		for (struct mrl_brk_ack *a = b->acks; a; a = a->next)
			a->indexed = false; /* all again, into the new table */
	}
	for (struct mrl_brk_ack *a = b->acks; a && !a->indexed; a = a->next) {
		size_t i = ack_slot(b, a->peer, a->seq);
		while (b->ack_hash[i])
			i = (i + 1) & (b->ack_hcap - 1);
		b->ack_hash[i] = a;
		a->indexed = true;
		b->ack_hn++;
	}
}

static struct mrl_brk_ack *ack_find(struct mrl_brk *b, const struct mrl_tpeer *peer, uint32_t seq)
{
	ack_index(b);
	if (b->ack_hcap && (!b->acks || b->acks->indexed)) {
		for (size_t i = ack_slot(b, peer, seq); b->ack_hash[i]; i = (i + 1) & (b->ack_hcap - 1))
			if (b->ack_hash[i]->peer == peer && b->ack_hash[i]->seq == seq)
				return b->ack_hash[i];
		return NULL;
	}
	for (struct mrl_brk_ack *a = b->acks; a; a = a->next) /* no memory for the index */
		if (a->peer == peer && a->seq == seq)
			return a;
	return NULL;
}

/* Queue one PAUSE message to a peer and expect its ack. */
static void queue_pause(struct mrl_ctx *ctx, struct mrl_brk *b, struct mrl_tpeer *peer,
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
	m->h.len = (uint16_t)(offsetof(struct msg_pause, runs) + m->n * sizeof(m->runs[0]));
	mrl_queue_out(ctx, peer, m, m->h.len);
	m->n = 0;
	m->total = 0;
}

/* Add id to the PAUSE being built for one peer: onto its last run when
 * it follows it, else a new run (the message goes out when full). */
static void pause_add(struct mrl_ctx *ctx, struct mrl_brk *b, struct mrl_tpeer *peer,
		      struct msg_pause *m, uint64_t id)
{
	struct pause_run *last = m->n ? &m->runs[m->n - 1] : NULL;
	if (last && id == last->first + last->n && last->n < UINT32_MAX && m->total < MRL_PAUSE_MAX_IDS) {
		last->n++;
		m->total++;
		return;
	}
	if (m->n == MRL_PAUSE_RUNS || m->total == MRL_PAUSE_MAX_IDS)
		queue_pause(ctx, b, peer, m);
	m->runs[m->n++] = (struct pause_run){.first = id, .n = 1};
	m->total++;
}

/* Send PAUSE for the break's paused MRs to every peer holding one of them:
 * one walk over the MRs (file order), each holder's id added to its peer's
 * message as runs. Peers are few: a builder each, found by a short search
 * (the last one found first). */
static void brk_send_pauses(struct mrl_ctx *ctx, struct mrl_brk *b)
{
	const struct mrl_mr_vec *vec = &b->mrs;
	struct pause_builder {
		struct mrl_tpeer *peer;
		struct msg_pause m;
	} *pb = NULL;
	size_t npb = 0, cap = 0, last = 0;
	for (size_t i = 0; i < vec->n; i++) {
		struct mrl_mr *mr = vec->v[i];
		if (!mr->in_brk && mr->drain != b)
			continue;
		for (struct mrl_holder *h = mr->holders; h; h = h->next) {
			size_t k = last < npb && pb[last].peer == h->peer ? last : 0;
			while (k < npb && pb[k].peer != h->peer)
				k++;
			if (k == npb) {
				if (npb == cap) {
					size_t nc = cap ? cap * 2 : 4;
					struct pause_builder *n = realloc(pb, nc * sizeof(*n));
					if (!n)
						continue; /* not asked: it times out and is cut off (safe) */
					pb = n;
					cap = nc;
				}
				memset(&pb[npb].m.h, 0, sizeof(pb[npb].m.h));
				pb[npb].peer = h->peer;
				pb[npb].m.h.magic = MRL_MAGIC;
				pb[npb].m.h.type = MSG_PAUSE;
				pb[npb].m.n = pb[npb].m.total = 0;
				npb++;
			}
			last = k;
			pause_add(ctx, b, h->peer, &pb[k].m, mr->handle);
		}
	}
	for (size_t k = 0; k < npb; k++)
		if (pb[k].m.n)
			queue_pause(ctx, b, pb[k].peer, &pb[k].m);
	free(pb);
}

static void brk_release(struct mrl_ctx *ctx, struct mrl_brk *b, uint64_t now);

/* Quiesced when every peer and local device answered and every NOTIFY MR's
 * owner decided: then the change may land. */
static void brk_check(struct mrl_ctx *ctx, struct mrl_brk *b)
{
	if (b->phase != BRK_QUIESCE || b->acks_pending > 0)
		return;
	for (size_t i = 0; i < b->mrs.n; i++) {
		struct mrl_mr *mr = b->mrs.v[i];
		if (mr->in_brk && mr->policy == MRL_POLICY_NOTIFY && !mr->owner_answer)
			return;
	}
	brk_release(ctx, b, mrl_now_ns());
}

/* A break pauses and restores its MRs (MODE_BREAK), or is the owner's
 * move back off scratch (MODE_UNREDIRECT), or fences them all (MODE_FENCE). */
enum brk_mode { MODE_BREAK = 0, MODE_UNREDIRECT, MODE_FENCE };

/* Is there anyone to drain mr before its device lets go: a holder that may
 * have operations in flight on its registration, and a monitor to hear
 * the acks and keep the deadline? */
bool mrl_mr_drains(struct mrl_ctx *ctx, const struct mrl_mr *mr)
{
	return mr->holders && mr->dev_mr && !mr->dev_busy && !mr->drain && !ctx->intp_inline &&
	       (mr->state == MRL_STATE_ACTIVE || mr->state == MRL_STATE_PAUSED);
}

/* Pause the MRs in vec (the caller's array, taken over) for a change src
 * saw over [lo, hi) of their backing (file offsets; 0..UINT64_MAX for the
 * address space). FENCE-policy MRs (all of them in MODE_FENCE) are fenced
 * at once, their device let go once their holders drained them (the
 * pauses go out first, then the fence notice). NULL when nothing is left
 * to wait for: the caller lets the change go at once (MODE_FENCE: once
 * the device calls queued are done). */
static struct mrl_brk *brk_begin(struct mrl_ctx *ctx, struct mrl_file *f,
				 const struct mrl_watcher_ops *src, struct mrl_mr_vec *vec, int cause,
				 pid_t pid, uint64_t lo, uint64_t hi, uint64_t seen, struct mrl_fan_ev *fev,
				 int mode, void *actor)
{
	bool unredirect = mode == MODE_UNREDIRECT;
	struct mrl_brk *b = vec->n ? calloc(1, sizeof(*b)) : NULL;
	if (!b) {
		/* nothing live, or cannot track it: fence what is live (safe side) */
		for (size_t i = 0; i < vec->n && cause != MRL_CAUSE_DEREGISTERED; i++)
			mrl_mr_fence_locked(ctx, vec->v[i], cause, 0, vec->v[i]->len, pid, seen);
		free(vec->v);
		return NULL;
	}
	ctx->st.breaks += mode == MODE_BREAK; /* (the owner's move back off scratch is none) */
	b->file = f;
	b->phase = BRK_QUIESCE;
	b->cause = cause;
	b->pid = pid;
	b->seen_ns = seen;
	b->lo = lo;
	b->hi = hi;
	b->fev = fev;
	b->src = src;
	b->unredirect = unredirect;
	b->actor = actor;
	/* The peers' time to answer runs from when they are asked: a change
	 * that waited behind another break on the file must not reach its
	 * peers with its deadline spent and cut off ones that answer at once. */
	uint64_t asked = mrl_now_ns();
	if (asked < seen)
		asked = seen;
	uint64_t dl = UINT64_MAX;
	for (size_t i = 0; i < vec->n; i++) {
		uint64_t d = asked + (uint64_t)vec->v[i]->deadline_ms * 1000000ull;
		dl = d < dl ? d : dl;
	}
	/* a lease breaker is let in by the kernel after lease-break-time; a
	 * fanotify actor would wait for ever: both get no more than that */
	if (dl == UINT64_MAX || dl > seen + break_time_cap_ns())
		dl = seen + break_time_cap_ns();
	b->deadline_ns = dl;
	size_t k = unredirect ? vec->n : 0;
	for (size_t i = 0; i < vec->n && unredirect; i++) { /* the owner's own: no break to report */
		struct mrl_mr *mr = vec->v[i];
		mrl_mr_set_state(mr, MRL_STATE_PAUSED);
		mr->in_brk = 1;
		mr->owner_answer = ANSWER_NONE;
		mr->refs++;
		mrl_mr_quiesce_locked(ctx, b, mr);
	}
	for (size_t i = 0; i < vec->n && !unredirect; i++) {
		struct mrl_mr *mr = vec->v[i];
		/* the part of the MR the change touches, in MR offsets */
		uint64_t off = lo > mr->fnode.start ? lo - mr->fnode.start : 0;
		uint64_t end = hi - mr->fnode.start < mr->len && hi > mr->fnode.start ? hi - mr->fnode.start : mr->len;
		if (mode == MODE_BREAK) {
			mr->breaks++;
			mr->cause = cause;
			mr->cause_pid = pid;
			mr->cause_off = off;
			mr->cause_len = end - off;
		}
		if (mr->policy == MRL_POLICY_FENCE || mode == MODE_FENCE) {
			if (!mrl_mr_drains(ctx, mr)) { /* nobody to drain: the device lets go now */
				if (cause != MRL_CAUSE_DEREGISTERED)
					mrl_mr_fence_locked(ctx, mr, cause, 0, mr->len, pid, seen);
				continue;
			}
			mr->drain = b; /* fenced below, once the pauses are queued */
			mr->refs++;
			vec->v[k++] = mr;
			continue;
		}
		mrl_mr_set_state(mr, MRL_STATE_PAUSED);
		mr->in_brk = 1;
		mr->owner_answer = ANSWER_NONE;
		mr->refs++; /* the break's reference: it may outlive the MR's registration */
		vec->v[k++] = mr;
		ctx->st.pauses++;
		mrl_mr_quiesce_locked(ctx, b, mr);
		mrl_post_event(ctx, mr, MRL_EVENT_BREAK, cause, off, end - off, pid, dl, seen);
	}
	if (!k && (mode == MODE_FENCE || (!ctx->devq && !ctx->dev_active))) {
		/* all fenced, the device let go already (MODE_FENCE: its caller
		 * waits for the device calls queued) */
		free(vec->v);
		free(b);
		return NULL;
	}
	/* (all fenced, the device still letting go: an empty break lets the
	 * change in once it has) */
	vec->n = k;
	b->mrs = *vec;
	b->next = ctx->brks;
	ctx->brks = b;
	if (f)
		f->brk = b;
	brk_send_pauses(ctx, b);
	/* the fence notice follows each holder's PAUSE: a peer of an earlier
	 * version, which skips fenced MRs in a PAUSE, drains them too */
	for (size_t i = 0; i < b->mrs.n && cause != MRL_CAUSE_DEREGISTERED; i++)
		if (b->mrs.v[i]->drain == b)
			mrl_mr_fence_held(ctx, b->mrs.v[i], cause, pid, seen);
	brk_check(ctx, b);
	return b;
}

/* A change to [lo, hi) of file f: its live MRs there (active or being
 * restored, and the part still served, not a fenced tail, in range). */
struct mrl_brk *mrl_brk_begin(struct mrl_ctx *ctx, struct mrl_file *f,
			      const struct mrl_watcher_ops *src, int cause, pid_t pid, uint64_t lo,
			      uint64_t hi, uint64_t seen, struct mrl_fan_ev *fev)
{
	struct mrl_mr_vec vec;
	mrl_file_mrs_range(f, lo, hi, &vec);
	size_t k = 0;
	for (size_t i = 0; i < vec.n; i++)
		if (mrl_mr_live(vec.v[i]) && vec.v[i]->fnode.start + vec.v[i]->valid_len > lo)
			vec.v[k++] = vec.v[i];
	vec.n = k;
	return brk_begin(ctx, f, src, &vec, cause, pid, lo, hi, seen, fev, MODE_BREAK, NULL);
}

/* A change to the owner's address space under the MRs in vec (active,
 * no file behind them), taken over. */
struct mrl_brk *mrl_brk_begin_mrs(struct mrl_ctx *ctx, const struct mrl_watcher_ops *src,
				  struct mrl_mr_vec *vec, int cause, pid_t pid, uint64_t seen)
{
	return brk_begin(ctx, NULL, src, vec, cause, pid, 0, UINT64_MAX, seen, NULL, MODE_BREAK, NULL);
}

struct mrl_brk *mrl_brk_fence_mrs(struct mrl_ctx *ctx, const struct mrl_watcher_ops *src,
				  struct mrl_mr_vec *vec, int cause, pid_t pid, uint64_t seen,
				  void *actor)
{
	return brk_begin(ctx, NULL, src, vec, cause, pid, 0, UINT64_MAX, seen, NULL, MODE_FENCE,
			 actor);
}

/* A fence the owner's own call waits for (mrl_mr_fence, mrl_mr_dereg):
 * once the device let go, its caller goes on. */
static void fence_landed(struct mrl_ctx *ctx, struct mrl_brk *b)
{
	bool *landed = b->actor;
	b->actor = NULL;
	if (landed) {
		*landed = true;
		pthread_cond_broadcast(&ctx->dev_cv);
	}
}

static void fence_let_land(struct mrl_ctx *ctx, struct mrl_brk *b, uint64_t now)
{
	(void)now;
	fence_landed(ctx, b);
	mrl_brk_finish(ctx, b);
}

static const struct mrl_watcher_ops fence_src = {
	.name = "owner-fence",
	.let_land = fence_let_land,
	.brk_done = fence_landed, /* freed before it landed: nothing left to wait for */
};

struct mrl_brk *mrl_brk_fence_one(struct mrl_ctx *ctx, struct mrl_mr *mr, int cause, bool *landed)
{
	/* the caller waits: not the monitor, which hears the acks */
	if (!mrl_mr_drains(ctx, mr) || ctx->monitor_tid == (pid_t)syscall(SYS_gettid))
		return NULL;
	struct mrl_mr_vec vec = {0};
	if (mrl_mr_vec_push(&vec, mr))
		return NULL;
	return brk_begin(ctx, NULL, &fence_src, &vec, cause, 0, 0, UINT64_MAX, mrl_now_ns(), NULL,
			 MODE_FENCE, landed);
}

/* ctx->lock held (dropped while waiting): the monitor sends the pauses
 * and hears the acks; bounded by the MR's deadline (cut-off) */
void mrl_brk_wait_landed(struct mrl_ctx *ctx, bool *landed)
{
	mrl_wake_monitor(ctx);
	while (!*landed)
		pthread_cond_wait(&ctx->dev_cv, &ctx->lock);
}

/* The device let go of the break's pages (every device call queued before
 * is done): the watcher lets the change in. */
static void brk_land(struct mrl_ctx *ctx, struct mrl_mr *unused, int ret, void *arg)
{
	struct mrl_brk *b = arg;
	(void)unused, (void)ret;
	b->phase = BRK_LANDING;
	b->src->let_land(ctx, b, mrl_now_ns());
}

/* The device could not move onto scratch: the safe side, as for an unpin. */
static void redirect_done(struct mrl_ctx *ctx, struct mrl_mr *mr, int ret, void *arg)
{
	if (ret && ret != -ECANCELED)
		mrl_mr_fence_locked(ctx, mr, ret == -EBUSY ? MRL_CAUSE_DEADLINE : mr->cause, 0, mr->len,
				    (pid_t)(intptr_t)arg, mrl_now_ns());
}

static void brk_release_device(struct mrl_ctx *ctx, struct mrl_brk *b, uint64_t now);

/* Every control message queued so far is out (handed to the transport,
 * which keeps their order with everything it sends later). ctx->lock
 * held; flush_lock is only tried (it is taken before ctx->lock). */
static bool notices_sent(struct mrl_ctx *ctx)
{
	if (ctx->outbox || pthread_mutex_trylock(&ctx->flush_lock))
		return false; /* queued, or being sent now */
	mrl_unlock(&ctx->flush_lock);
	return true;
}

/* Quiesced (or out of time): cut off the peers that did not answer, then
 * (their notices out first) revoke what must go and let the change land. */
static void brk_release(struct mrl_ctx *ctx, struct mrl_brk *b, uint64_t now)
{
	bool cut = false;
	for (struct mrl_brk_ack *a = b->acks; a; a = a->next) {
		if (a->done)
			continue;
		/* A peer that did not answer is cut off from the paused MRs it
		 * holds: they come back under a new key it is never told. */
		ctx->st.peer_timeouts += a->peer != NULL; /* NULL: a local device (uring quiesce) */
		for (size_t i = 0; a->peer && i < b->mrs.n; i++) {
			struct mrl_mr *mr = b->mrs.v[i];
			for (struct mrl_holder **hp = &mr->holders; *hp; hp = &(*hp)->next) {
				if ((*hp)->peer != a->peer || !(mr->in_brk || mr->drain == b))
					continue;
				struct mrl_holder *h = *hp;
				mrl_send_cut_off(ctx, mr, a->peer);
				cut = true;
				mr->rekey = 1;
				*hp = h->next;
				free(h);
				break;
			}
		}
		a->done = true;
	}
	b->acks_pending = 0;
	if (cut) {
		/* A peer cut off may still have operations in flight on the old
		 * registration: its notice goes out before the key moves to its
		 * tombstone, so whatever lands there completes after the peer
		 * has it (-EKEYREVOKED there), never as a success before. The
		 * monitor sends it next; a queue that stays full is not waited
		 * for long. */
		b->phase = BRK_NOTIFY;
		b->notify_until = now + 1000000000ull;
		mrl_wake_monitor(ctx);
		return;
	}
	brk_release_device(ctx, b, now);
}

/* Revoke what must go, then let the change land. */
static void brk_release_device(struct mrl_ctx *ctx, struct mrl_brk *b, uint64_t now)
{
	for (size_t i = 0; i < b->mrs.n; i++) {
		struct mrl_mr *mr = b->mrs.v[i];
		if (mr->drain == b) { /* fenced, drained: the device lets go now */
			mrl_mr_drained(ctx, mr);
			continue;
		}
		if (!mr->in_brk)
			continue;
		int answer = mr->owner_answer;
		if (mr->policy == MRL_POLICY_NOTIFY && !answer)
			mrl_mr_fence_locked(ctx, mr, MRL_CAUSE_DEADLINE, 0, mr->len, b->pid, b->seen_ns);
		else if (answer == ANSWER_RELEASE)
			mrl_mr_fence_locked(ctx, mr, MRL_CAUSE_RELEASED, 0, mr->len, b->pid, b->seen_ns);
		else if (answer == ANSWER_FENCE)
			mrl_mr_fence_locked(ctx, mr, MRL_CAUSE_OWNER, 0, mr->len, b->pid, b->seen_ns);
		else if (mr->policy == MRL_POLICY_REDIRECT && b->file && !b->unredirect &&
			 answer != ANSWER_RESTORE) {
			/* the device keeps working, on scratch: the change lands under it */
			mr->redirected = 1;
			mrl_dev_redirect(ctx, mr, redirect_done, (void *)(intptr_t)b->pid);
		} else { /* the device must not keep the old pages while the change lands */
			mr->redirected = 0; /* (the owner's restore: onto the file after all) */
			mrl_mr_unpin_locked(ctx, mr, b->pid, b->seen_ns);
		}
	}
	/* the breaker may keep the file open a while: wait as long as a break may take */
	b->landing_deadline_ns = now + (uint64_t)ctx->opts.deadline_ms * 1000000ull;
	uint64_t done = mrl_now_ns();
	ctx->pause_ns[ctx->npause++ % ARRAY_SIZE(ctx->pause_ns)] = done - b->seen_ns;
	mrl_log("released %s after %llu us", b->file ? b->file->path : "an address-space change",
		(unsigned long long)(done - b->seen_ns) / 1000);
	b->phase = BRK_UNPIN;
	mrl_dev_after(ctx, brk_land, b);
}

/* The change has landed (the breaker closed the file, the actor's call
 * returned, or nobody came): restore what is still paused, then free b. */
void mrl_brk_finish(struct mrl_ctx *ctx, struct mrl_brk *b)
{
	uint64_t now = mrl_now_ns();
	for (size_t i = 0; i < b->mrs.n; i++) {
		struct mrl_mr *mr = b->mrs.v[i];
		if (!mr->in_brk)
			continue;
		mr->in_brk = 0;
		/* the owner said restore once the device was on scratch: the
		 * MR is still paused and quiesced, so straight back onto the file */
		if (mr->redirected && mr->owner_answer == ANSWER_RESTORE)
			mr->redirected = 0;
		if (mr->redirected) {
			/* live on its scratch, same key: the holders go on (a new
			 * generation: what they write now is discarded) */
			mrl_mr_set_state(mr, MRL_STATE_ACTIVE);
			mr->gen++;
			ctx->st.redirects++;
			mrl_post_event(ctx, mr, MRL_EVENT_REDIRECTED, mr->cause, mr->cause_off,
				       mr->cause_len, mr->cause_pid, 0, b->seen_ns);
			mrl_send_state(ctx, mr, NULL);
			/* local users waiting for it (mrl_uring_get) sleep on the
			 * device's condition: no device call ends to wake them */
			pthread_cond_broadcast(&ctx->dev_cv);
			continue;
		}
		mrl_mr_restore_locked(ctx, mr, now);
	}
	mrl_brk_free(ctx, b);
}

/* The owner's move back of a redirected MR: its break has nothing to wait
 * for once quiesced. */
static void unredirect_let_land(struct mrl_ctx *ctx, struct mrl_brk *b, uint64_t now)
{
	(void)now;
	mrl_brk_finish(ctx, b);
}

static const struct mrl_watcher_ops unredirect_src = {
	.name = "restore-from-redirect",
	.let_land = unredirect_let_land,
};

/* mrl_mr_restore of a redirected MR (not in a break): pause it (peers and
 * the local device hold their operations, so none is handed the scratch
 * address and issued on the file's pages), cut the device off the scratch,
 * restore onto the pages the file has now, same key (past a new end of
 * file: fenced), RESTORED. */
int mrl_brk_unredirect(struct mrl_ctx *ctx, struct mrl_mr *mr)
{
	if (mr->file && mr->file->brk)
		return mrl_err(EAGAIN, "mrl_mr_restore: a change to %s is still landing; "
				       "restore once MRL_EVENT_REDIRECTED for it has come",
			       mr->file->path);
	struct mrl_mr_vec vec = {0};
	int ret = mrl_mr_vec_push(&vec, mr);
	if (ret)
		return ret;
	brk_begin(ctx, NULL, &unredirect_src, &vec, mr->cause, 0, 0, UINT64_MAX, mrl_now_ns(), NULL,
		  MODE_UNREDIRECT, NULL);
	return 0;
}

/* The quiescing breaks' deadlines; the landing ones are their watchers'. */
void mrl_brk_tick(struct mrl_ctx *ctx, uint64_t now)
{
	for (struct mrl_brk *b = ctx->brks, *next; b; b = next) {
		next = b->next;
		if (b->phase == BRK_QUIESCE && now >= b->deadline_ns)
			brk_release(ctx, b, now);
		else if (b->phase == BRK_NOTIFY && (notices_sent(ctx) || now >= b->notify_until))
			brk_release_device(ctx, b, now);
	}
}

uint64_t mrl_brk_next_timer(struct mrl_ctx *ctx)
{
	uint64_t t = UINT64_MAX;
	for (struct mrl_brk *b = ctx->brks; b; b = b->next) {
		if (b->phase == BRK_NOTIFY) { /* the monitor's flush, then a look */
			uint64_t soon = mrl_now_ns() + 200000ull;
			t = soon < t ? soon : t;
		}
		if (b->phase != BRK_QUIESCE)
			continue;
		if (b->deadline_ns < t)
			t = b->deadline_ns;
		/* acks come through endpoint progress, which the monitor drives
		 * while it waits: the application's thread may be the actor */
		if (b->acks_pending > 0) {
			uint64_t soon = mrl_now_ns() + 200000ull;
			t = soon < t ? soon : t;
		}
	}
	return t;
}

bool mrl_brk_waiting_acks(struct mrl_ctx *ctx)
{
	for (struct mrl_brk *b = ctx->brks; b; b = b->next)
		if (b->phase == BRK_QUIESCE && b->acks_pending > 0)
			return true;
	return false;
}

/* peer NULL: the local device (mrl_brk_device_idle) */
static void brk_ack(struct mrl_ctx *ctx, struct mrl_tpeer *peer, uint32_t seq)
{
	for (struct mrl_brk *b = ctx->brks; b; b = b->next) {
		struct mrl_brk_ack *a = ack_find(b, peer, seq);
		if (a && !a->done) {
			a->done = true;
			b->acks_pending--;
			brk_check(ctx, b);
			return;
		}
	}
}

/* A peer answered PAUSE seq. */
void mrl_brk_ack(struct mrl_ctx *ctx, struct mrl_tpeer *peer, uint32_t seq)
{
	if (peer)
		brk_ack(ctx, peer, seq);
}

/* The device the library quiesces itself (rops->quiesce) has finished the
 * operations that were in flight when break seq paused its MR. */
void mrl_brk_device_idle(struct mrl_ctx *ctx, uint32_t seq)
{
	brk_ack(ctx, NULL, seq);
}

void mrl_brk_forget_peer(struct mrl_ctx *ctx, struct mrl_tpeer *peer)
{
	for (struct mrl_brk *b = ctx->brks, *next; b; b = next) {
		next = b->next;
		for (struct mrl_brk_ack *a = b->acks; a; a = a->next)
			if (a->peer == peer && !a->done) {
				a->done = true;
				b->acks_pending--;
			}
		/* outbox entries for the peer are dropped by the endpoint */
		brk_check(ctx, b);
	}
}

/* The owner answered a NOTIFY MR (or deregistered one): a break may go on. */
void mrl_brk_owner_answered(struct mrl_ctx *ctx, struct mrl_mr *mr)
{
	if (mr->state == MRL_STATE_DEREGISTERED)
		mr->in_brk = 0;
	for (struct mrl_brk *b = ctx->brks, *next; b; b = next) {
		next = b->next;
		brk_check(ctx, b);
	}
}
