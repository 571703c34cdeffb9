/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The owner's own address space, seen before it changes. libmrlease
 * defines no libc names: libmrlease-preload.so (preload/) does, unversioned,
 * so every object in the process reaches it, and calls the hooks here
 * before it chains to the next definition. Each hook looks the range up in
 * the contexts' VA indexes and resolves the MRs it touches before the
 * change lands:
 *   munmap, shmdt, brk/sbrk shrinking -> fence, cause "unmapped"
 *   mremap               -> fence, cause "moved"
 *   mmap(MAP_FIXED) over -> fence, cause "replaced" (a different object
 *                           must never be exposed under the old key)
 *                           (the fenced MRs' holders drain them first, the
 *                           call waiting: brk.c, fence mode)
 *   madvise(DONTNEED, REMOVE, FREE) -> same object, new pages: FENCE-policy
 *                           MRs are fenced first (cause "madvised"); the
 *                           peers of other anonymous/shmem MRs are paused
 *                           around the call, pinning devices re-pinned, the
 *                           MRs resume under a new generation.
 * Every hook may run in a signal handler that interrupted malloc or the
 * library itself: the caller allocates nothing and waits on futexes only;
 * the monitor does the work (intp_serve).
 * Raw syscall(2)s, and everything when the preload library is absent,
 * bypass this: mrl_verify and userfaultfd catch them afterwards.
 *
 * Fast path (in the preload library): one relaxed atomic load when no MR
 * exists; otherwise a lock and an O(log n) interval query per context. A
 * thread already inside the library (holding a context's lock: libfabric
 * unmapping its own memory under an MR call, say) is recognised by the
 * error-checking mutex and passes straight through. */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/mman.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "mrl_int.h"
#include "../preload/mrlease_preload.h"

#define MAX_CTX 16
static struct mrl_ctx *_Atomic g_ctx[MAX_CTX];
/* per slot: hooks looking at its context, counted before the pointer is
 * loaded (mrl_intp_del clears the pointer, then waits for zero) */
static _Atomic int g_users[MAX_CTX];
static _Atomic long g_mrs;          /* MRs counted in all contexts */
/* per slot: every MR of that context lies in [g_lo, g_hi) (grows only);
 * tested before the context is even looked at */
static _Atomic uintptr_t g_lo[MAX_CTX], g_hi[MAX_CTX];
static _Atomic int g_top; /* slots in use are below this */
/* the preload library, once attached */
static const struct mrlease_preload_info_v1 *g_pl;

static inline bool outside(int i, uintptr_t a, size_t len)
{
	return a + len <= atomic_load_explicit(&g_lo[i], memory_order_relaxed) ||
	       a >= atomic_load_explicit(&g_hi[i], memory_order_relaxed);
}

/* ctx->lock held: a new MR at [a, b) */
void mrl_intp_grow(struct mrl_ctx *ctx, uintptr_t a, uintptr_t b)
{
	int i = ctx->intp_slot;
	if (i < 0)
		return;
	uintptr_t lo = atomic_load(&g_lo[i]), hi = atomic_load(&g_hi[i]);
	if (a < lo)
		atomic_store(&g_lo[i], a);
	if (b > hi)
		atomic_store(&g_hi[i], b);
}

/* An MR of a watched context came (+1) or went (-1): the preload library
 * calls the hooks only while some MR exists. */
static void intp_count(long d)
{
	atomic_fetch_add(&g_mrs, d);
	if (g_pl)
		atomic_fetch_add(g_pl->mrs, d);
}

/* ctx->fork_gen is set already (mrl_ctx_create): the slot publishes it */
int mrl_intp_add(struct mrl_ctx *ctx)
{
	for (int i = 0; i < MAX_CTX; i++) {
		struct mrl_ctx *expect = NULL;
		if (atomic_compare_exchange_strong(&g_ctx[i], &expect, ctx)) {
			/* an empty box: nothing is inside until an MR comes (a box
			 * left by the slot's last context only costs a lookup) */
			atomic_store(&g_lo[i], UINTPTR_MAX);
			atomic_store(&g_hi[i], 0);
			ctx->intp_slot = i;
			int top = atomic_load(&g_top);
			while (top < i + 1 && !atomic_compare_exchange_weak(&g_top, &top, i + 1))
				;
			return 0;
		}
	}
	mrl_log("more than %d contexts: the interposer does not watch this one", MAX_CTX);
	return -ENOSPC;
}

void mrl_intp_del(struct mrl_ctx *ctx)
{
	int i = ctx->intp_slot;
	if (i < 0)
		return;
	struct mrl_ctx *expect = ctx;
	atomic_compare_exchange_strong(&g_ctx[i], &expect, NULL);
	/* seq_cst against enter(): either it saw NULL, or it is counted here */
	while (atomic_load(&g_users[i]))
		sched_yield();
	ctx->intp_slot = -1;
}

enum intp_op { OP_UNMAP, OP_MOVE, OP_REPLACE, OP_MADVISE, OP_MADV_PAUSE, OP_MADV_RESUME };

struct hit {
	struct mrl_ctx *ctx;
	int op;
	uint64_t now;
};

static const int op_cause[] = {[OP_UNMAP] = MRL_CAUSE_UNMAPPED, [OP_MOVE] = MRL_CAUSE_MOVED,
			       [OP_REPLACE] = MRL_CAUSE_REPLACED};

/* munmap, mremap, MAP_FIXED: fence before the call (in place: nobody to
 * drain the holders with) */
static int act_cb(struct mrl_itree_node *node, void *p)
{
	struct hit *h = p;
	struct mrl_mr *mr = (struct mrl_mr *)node; /* va is the first member */
	if (mr->state != MRL_STATE_FENCED && mr->state != MRL_STATE_DEREGISTERED)
		mrl_mr_fence_locked(h->ctx, mr, op_cause[h->op], 0, mr->len, getpid(), h->now);
	return 0;
}

struct drain_probe {
	struct mrl_ctx *ctx;
	bool any;
};

static int drains_cb(struct mrl_itree_node *node, void *p)
{
	struct drain_probe *d = p;
	d->any = mrl_mr_drains(d->ctx, (struct mrl_mr *)node);
	return d->any;
}

static int fence_collect_cb(struct mrl_itree_node *node, void *p)
{
	struct mrl_mr *mr = (struct mrl_mr *)node;
	if (mr->state == MRL_STATE_FENCED || mr->state == MRL_STATE_DEREGISTERED)
		return 0;
	return mrl_mr_vec_push(p, mr);
}

/* madvise of file-backed MRs, after the call */
static int madv_cb(struct mrl_itree_node *node, void *p)
{
	struct hit *h = p;
	struct mrl_mr *mr = (struct mrl_mr *)node;
	if (mr->state != MRL_STATE_ACTIVE || !mr->file)
		return 0; /* anonymous and shmem MRs were paused and resumed around the call */
	if (mrl_mr_repin_locked(h->ctx, mr, MRL_CAUSE_MADVISED))
		return 0; /* its end moves it on and tells the holders */
	if (!h->ctx->rops->pins(h->ctx->dev)) {
		/* virtually addressed device: nothing to move, but the bytes
		 * may have changed under the peers: new generation */
		mr->gen++;
		mr->restores++;
		h->ctx->st.restores++;
		mrl_post_event(h->ctx, mr, MRL_EVENT_RESTORED, MRL_CAUSE_MADVISED, 0, mr->valid_len, 0, 0,
			       h->now);
	}
	mr->cause = MRL_CAUSE_MADVISED;
	mrl_send_state(h->ctx, mr, NULL);
	return 0;
}

/* Slot i's context, locked, with this call counted among the slot's
 * users; NULL when [a, a+len) is nowhere near its MRs, it is going away,
 * it is the parent's (we are a forked child), or this thread is inside the
 * library already (it holds the lock: EDEADLK from the error-checking
 * mutex). */
static struct mrl_ctx *enter(int i, uintptr_t a, size_t len)
{
	if (outside(i, a, len))
		return NULL;
	atomic_fetch_add(&g_users[i], 1); /* before the pointer: see mrl_intp_del */
	struct mrl_ctx *ctx = atomic_load(&g_ctx[i]);
	int err = !ctx || ctx->fork_gen != atomic_load(&mrl_fork_gen) ? EPERM
										: pthread_mutex_lock(&ctx->lock);
	if (err) {
		if (err != EPERM && err != EDEADLK)
			mrl_lock_failed("interposer lock", err);
		atomic_fetch_sub(&g_users[i], 1);
		return NULL;
	}
	return ctx;
}

/* ctx->lock already dropped; i: the slot enter() counted the call on (not
 * ctx->intp_slot, which its creator may not have written yet) */
static void leave(int i)
{
	atomic_fetch_sub(&g_users[i], 1);
}

static inline int slots_in_use(void)
{
	return atomic_load_explicit(&g_top, memory_order_acquire);
}

/* ctx->lock held: fence the MRs over [a, a+len) (OP_UNMAP/MOVE/REPLACE,
 * before the call) or, for OP_MADVISE after the call, move file-backed ones
 * to a new generation. */
static void resolve_locked(struct mrl_ctx *ctx, uintptr_t a, size_t len, int op)
{
	struct hit h = {.ctx = ctx, .op = op, .now = mrl_now_ns()};
	mrl_itree_overlap(&ctx->va_index, a, a + len, op == OP_MADVISE ? madv_cb : act_cb, &h);
}

/* A call waiting for the monitor to resolve its range: on the caller's
 * stack, on ctx->intp_reqs (ctx->lock) until served. */
struct mrl_intp_req {
	struct mrl_intp_req *next;
	uintptr_t a;
	size_t len;
	int op;
	bool paused;           /* OP_MADV_PAUSE: a break was begun and has quiesced */
	_Atomic uint32_t done; /* futex word */
};

static void futex_wait(_Atomic uint32_t *w, uint32_t val)
{
	syscall(SYS_futex, w, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void futex_wake(_Atomic uint32_t *w, int n)
{
	syscall(SYS_futex, w, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

/* ctx->lock held: r is served; its caller may go on (and r be gone) */
static void req_done(struct mrl_intp_req *r)
{
	atomic_store(&r->done, 1);
	/* r may be gone now (its caller went on): only its address is used */
	futex_wake(&r->done, 1);
}

/* once the device let go of what serving r fenced (devq.c) */
static void req_done_cb(struct mrl_ctx *ctx, struct mrl_mr *mr, int ret, void *arg)
{
	(void)ctx, (void)mr, (void)ret;
	req_done(arg);
}

/* The monitor, ctx->lock held: fence the MRs over r's range (munmap,
 * mremap, MAP_FIXED). Those with holders are drained first: r is served
 * once their device let go (intp_let_land). false: nothing to drain, r
 * waits only for the device calls queued. */
static bool fence_range_locked(struct mrl_ctx *ctx, struct mrl_intp_req *r)
{
	/* nobody to drain (no holders): fenced in place, as few allocations
	 * as ever (the caller may have interrupted malloc, which the monitor
	 * then waits on) */
	struct drain_probe d = {.ctx = ctx};
	mrl_itree_overlap(&ctx->va_index, r->a, r->a + r->len, drains_cb, &d);
	if (!d.any) {
		resolve_locked(ctx, r->a, r->len, r->op);
		return false;
	}
	struct mrl_mr_vec vec = {0};
	if (mrl_itree_overlap(&ctx->va_index, r->a, r->a + r->len, fence_collect_cb, &vec)) {
		free(vec.v); /* no memory to track them: fenced at once (the safe side) */
		resolve_locked(ctx, r->a, r->len, r->op);
		return false;
	}
	if (!vec.n) {
		free(vec.v);
		return false;
	}
	return mrl_brk_fence_mrs(ctx, &mrl_watch_interpose, &vec, op_cause[r->op], getpid(),
				 mrl_now_ns(), r) != NULL;
}

/* ctx->lock held (by the caller, or the monitor serving it): queue r for
 * the monitor, drop the lock and wait until it is served. false, lock
 * still held, when nobody is there to serve it: the caller does it itself
 * (the monitor's own calls, a context whose monitor has stopped). */
static bool hand_to_monitor(struct mrl_ctx *ctx, struct mrl_intp_req *r)
{
	if (ctx->intp_inline || ctx->monitor_tid == (pid_t)syscall(SYS_gettid))
		return false;
	r->next = ctx->intp_reqs;
	ctx->intp_reqs = r;
	mrl_unlock(&ctx->lock);
	mrl_wake_monitor(ctx);
	while (!atomic_load(&r->done))
		futex_wait(&r->done, 0);
	return true;
}

/* Resolve the MRs over [a, a+len) in every context, before the call lands.
 * The caller may be a signal handler that interrupted malloc, or code that
 * holds locks of its own: so the work (device calls, allocation, the event
 * queue) is the monitor's; this thread only queues the range under
 * ctx->lock (error-checking: a thread inside the library passes through)
 * and waits on a futex, both safe there. The monitor itself, and a context
 * whose monitor has stopped, resolve in place. */
static void resolve(uintptr_t a, size_t len, int op)
{
	if (!len || a + len < a)
		return;
	for (int i = 0, top = slots_in_use(); i < top; i++) {
		struct mrl_ctx *ctx = enter(i, a, len);
		if (!ctx)
			continue;
		if (!mrl_itree_first_overlap(&ctx->va_index, a, a + len)) {
			mrl_unlock(&ctx->lock);
			leave(i);
			continue;
		}
		struct mrl_intp_req r = {.a = a, .len = len, .op = op};
		if (!hand_to_monitor(ctx, &r)) {
			resolve_locked(ctx, a, len, op);
			mrl_dev_sync(ctx); /* the device lets go before the call lands */
			mrl_unlock(&ctx->lock);
			mrl_wake_monitor(ctx); /* it sends the state messages */
		}
		leave(i);
	}
}

static bool madv_pause_locked(struct mrl_ctx *ctx, struct mrl_intp_req *r);
static void madv_resume_locked(struct mrl_ctx *ctx);

/* The monitor, ctx->lock held: serve the calls waiting for it. A pause
 * waits while another address-space break is under way (one at a time);
 * anything served may have ended one, so the walk starts over. */
static void intp_serve(struct mrl_ctx *ctx)
{
	for (struct mrl_intp_req **pp = &ctx->intp_reqs; *pp;) {
		struct mrl_intp_req *r = *pp;
		if (r->op == OP_MADV_PAUSE && (ctx->as_brk || ctx->as_req)) {
			pp = &r->next;
			continue;
		}
		*pp = r->next;
		if (r->op == OP_MADV_PAUSE) {
			if (!madv_pause_locked(ctx, r))
				mrl_dev_after(ctx, req_done_cb, r); /* nothing paused */
			/* else its break's let_land serves it (maybe done already) */
		} else if (r->op == OP_MADV_RESUME) {
			madv_resume_locked(ctx);
			mrl_dev_after(ctx, req_done_cb, r);
		} else if (r->op == OP_MADVISE) {
			resolve_locked(ctx, r->a, r->len, r->op);
			mrl_dev_after(ctx, req_done_cb, r);
		} else if (!fence_range_locked(ctx, r)) {
			mrl_dev_after(ctx, req_done_cb, r);
		}
		pp = &ctx->intp_reqs;
	}
}

static void intp_tick(struct mrl_ctx *ctx, uint64_t now)
{
	(void)now;
	intp_serve(ctx);
}

/* The monitor is leaving (ctx->lock held): nobody is left to serve. A
 * pause still quiescing lets its caller go (the context is being
 * destroyed: its MRs go next); pauses behind it go unpaused. */
static void intp_monitor_gone(struct mrl_ctx *ctx)
{
	ctx->intp_inline = true;
	intp_serve(ctx);
	if (ctx->as_req) {
		struct mrl_intp_req *r = ctx->as_req;
		ctx->as_req = NULL;
		r->paused = ctx->as_brk != NULL;
		req_done(r);
	}
	while (ctx->intp_reqs) {
		struct mrl_intp_req *r = ctx->intp_reqs;
		ctx->intp_reqs = r->next;
		req_done(r);
	}
}

static inline bool any_mr(void)
{
	return atomic_load_explicit(&g_mrs, memory_order_relaxed) != 0;
}

/* madvise(DONTNEED/REMOVE/FREE) of anonymous or shmem MRs keeps the object
 * and replaces the pages: a break of the owner's address space, resolved by
 * the break engine like any other (brk.c: peers paused and drained, owners
 * of NOTIFY MRs asked, FENCE MRs fenced, silent peers cut off at the
 * deadline). This thread is the actor: it waits until the engine lets the
 * change land (intp_let_land), makes the call, then the break is finished
 * (the MRs are restored onto the new pages, same keys). Like resolve(), the
 * caller only queues requests and waits on futexes (a signal handler may
 * madvise): the monitor begins and finishes the break. One address-space
 * break per context at a time (ctx->as_brk): the caller that got it paused
 * is the one that resumes it. */
struct as_pause {
	struct mrl_ctx *ctx;
	int slot;
};

static int collect_cb(struct mrl_itree_node *node, void *p)
{
	struct mrl_mr *mr = (struct mrl_mr *)node;
	if (!mrl_mr_live(mr) || mr->file)
		return 0;
	return mrl_mr_vec_push(p, mr);
}

/* ctx->lock held, no address-space break under way: pause the MRs over
 * r's range. false when nothing was left paused (none there, or all
 * fenced); else r is served once the break has quiesced (intp_let_land,
 * possibly already, inside mrl_brk_begin_mrs). */
static bool madv_pause_locked(struct mrl_ctx *ctx, struct mrl_intp_req *r)
{
	struct mrl_mr_vec vec = {0};
	mrl_itree_overlap(&ctx->va_index, r->a, r->a + r->len, collect_cb, &vec);
	if (!vec.n) { /* a hole between MRs: nothing to do */
		free(vec.v);
		return false;
	}
	ctx->as_req = r;
	struct mrl_brk *b = mrl_brk_begin_mrs(ctx, &mrl_watch_interpose, &vec, MRL_CAUSE_MADVISED,
					      getpid(), mrl_now_ns());
	if (!b) { /* all fenced (FENCE policy): nothing to wait for */
		ctx->as_req = NULL;
		return false;
	}
	ctx->as_brk = b;
	return true;
}

/* ctx->lock held: the call has been made; restore onto the new pages */
static void madv_resume_locked(struct mrl_ctx *ctx)
{
	if (ctx->as_brk && ctx->as_brk->phase == BRK_LANDING)
		mrl_brk_finish(ctx, ctx->as_brk); /* same keys; frees it, clears as_brk */
}

/* The caller's side, for one context it entered (locked): true if it
 * paused MRs there (the slot's user count then stays held until resumed). */
static bool madv_pause_one(struct mrl_ctx *ctx, uintptr_t a, size_t len)
{
	struct mrl_intp_req r = {.a = a, .len = len, .op = OP_MADV_PAUSE};
	if (hand_to_monitor(ctx, &r))
		return r.paused;
	/* in place: this thread is the monitor, or there is none any more (the
	 * other address-space break's actor then finishes it in place too) */
	bool monitor = ctx->monitor_tid == (pid_t)syscall(SYS_gettid);
	while (ctx->as_brk && !monitor)
		pthread_cond_wait(&ctx->as_cv, &ctx->lock);
	if (ctx->as_brk || !madv_pause_locked(ctx, &r)) {
		mrl_dev_sync(ctx);
		mrl_unlock(&ctx->lock);
		mrl_wake_monitor(ctx); /* it sends the state messages */
		return false;
	}
	ctx->as_req = NULL;
	while (ctx->as_brk && ctx->as_brk->phase != BRK_LANDING)
		pthread_cond_wait(&ctx->as_cv, &ctx->lock);
	bool paused = ctx->as_brk != NULL;
	mrl_unlock(&ctx->lock);
	mrl_wake_monitor(ctx);
	return paused;
}

static void madv_resume_one(struct mrl_ctx *ctx)
{
	mrl_lock(&ctx->lock);
	struct mrl_intp_req r = {.op = OP_MADV_RESUME};
	if (!hand_to_monitor(ctx, &r)) {
		madv_resume_locked(ctx);
		mrl_dev_sync(ctx);
		mrl_unlock(&ctx->lock);
	}
	mrl_wake_monitor(ctx);
}

/* The break is quiesced: the actor may go on (waiting on its request, or
 * in madv_pause_one when it runs in place). */
static void intp_let_land(struct mrl_ctx *ctx, struct mrl_brk *b, uint64_t now)
{
	(void)now;
	if (b->actor) { /* a fence drained: the munmap, mremap, MAP_FIXED goes on */
		struct mrl_intp_req *r = b->actor;
		b->actor = NULL;
		req_done(r);
		mrl_brk_finish(ctx, b);
		return;
	}
	if (ctx->as_req) {
		struct mrl_intp_req *r = ctx->as_req;
		ctx->as_req = NULL;
		r->paused = true;
		req_done(r);
	}
	pthread_cond_broadcast(&ctx->as_cv);
}

/* An address-space break freed before it landed: its actor goes on. */
static void intp_brk_done(struct mrl_ctx *ctx, struct mrl_brk *b)
{
	if (b->actor) { /* a fence's */
		struct mrl_intp_req *r = b->actor;
		b->actor = NULL;
		req_done(r);
		return;
	}
	if (ctx->as_req && !ctx->as_brk) {
		struct mrl_intp_req *r = ctx->as_req;
		ctx->as_req = NULL;
		req_done(r);
	}
}

static bool zaps(int advice)
{
	return advice == MADV_DONTNEED || advice == MADV_REMOVE || advice == MADV_FREE
#ifdef MADV_DONTNEED_LOCKED
	       || advice == MADV_DONTNEED_LOCKED
#endif
		;
}

/* ---- the hooks the preload library calls ---- */

static void hook_before(int op, uintptr_t a, size_t len)
{
	if (!any_mr())
		return;
	switch (op) {
	case MRLEASE_PRELOAD_UNMAP: resolve(a, len, OP_UNMAP); break;
	case MRLEASE_PRELOAD_MOVE: resolve(a, len, OP_MOVE); break;
	case MRLEASE_PRELOAD_REPLACE: resolve(a, len, OP_REPLACE); break;
	case MRLEASE_PRELOAD_SHMDT: {
		uintptr_t start, end;
		/* the segment is the mapping that starts at a */
		if (mrl_vma_range(a, &start, &end) == 0)
			resolve(start, end - start, OP_UNMAP);
		break;
	}
	}
}

/* The state between madv_before and madv_after, from a fixed pool: the
 * hook may run in a signal handler, where nothing may be allocated. A
 * caller finding the pool empty waits for a token to come back. */
struct madv_tok {
	int nps;
	struct as_pause ps[MAX_CTX];
};
#define MADV_TOKS 64
static struct madv_tok g_toks[MADV_TOKS];
static _Atomic uint32_t g_tok_busy[MADV_TOKS];
static _Atomic uint32_t g_tok_back; /* futex word: bumped as a token comes back */

static struct madv_tok *tok_get(void)
{
	for (;;) {
		uint32_t back = atomic_load(&g_tok_back);
		for (int i = 0; i < MADV_TOKS; i++) {
			uint32_t free_ = 0;
			if (atomic_compare_exchange_strong(&g_tok_busy[i], &free_, 1)) {
				g_toks[i].nps = 0;
				return &g_toks[i];
			}
		}
		futex_wait(&g_tok_back, back);
	}
}

static void tok_put(struct madv_tok *t)
{
	atomic_store(&g_tok_busy[t - g_toks], 0);
	atomic_fetch_add(&g_tok_back, 1);
	futex_wake(&g_tok_back, INT32_MAX);
}

static void *hook_madv_before(uintptr_t a, size_t len, int advice)
{
	if (!zaps(advice) || !any_mr() || !len || a + len < a)
		return NULL;
	bool near = false; /* any context's MRs around: else no token */
	for (int i = 0, top = slots_in_use(); i < top && !near; i++)
		near = !outside(i, a, len);
	if (!near)
		return NULL;
	struct madv_tok *t = tok_get();
	for (int i = 0, top = slots_in_use(); i < top; i++) {
		struct mrl_ctx *ctx = enter(i, a, len);
		if (!ctx)
			continue;
		if (madv_pause_one(ctx, a, len))
			t->ps[t->nps++] = (struct as_pause){.ctx = ctx, .slot = i};
		else
			leave(i);
	}
	return t;
}

static void hook_madv_after(void *tok, uintptr_t a, size_t len, int advice, int ret)
{
	struct madv_tok *t = tok;
	if (!t)
		return;
	for (int i = 0; i < t->nps; i++) {
		madv_resume_one(t->ps[i].ctx);
		leave(t->ps[i].slot);
	}
	tok_put(t);
	if (ret == 0 && zaps(advice))
		resolve(a, len, OP_MADVISE); /* file-backed MRs */
}

static const struct mrlease_preload_hooks_v1 g_hooks = {
	.size = sizeof(g_hooks),
	.before = hook_before,
	.madv_before = hook_madv_before,
	.madv_after = hook_madv_after,
};

static pthread_once_t g_attach_once = PTHREAD_ONCE_INIT;

/* Before the first MR: the counts the preload library sees start here. */
static void attach(void)
{
	mrlease_preload_attach_v1_fn *fn =
		(mrlease_preload_attach_v1_fn *)dlsym(RTLD_DEFAULT, "mrlease_preload_attach_v1");
	const struct mrlease_preload_info_v1 *info = NULL;
	if (!fn)
		return;
	int ret = fn(&g_hooks, &info);
	if (ret || !info || info->size < sizeof(*info)) {
		mrl_log("libmrlease-preload.so is loaded but does not take this copy (%d)", ret);
		return;
	}
	g_pl = info;
}

__attribute__((destructor)) static void detach(void)
{
	if (!g_pl)
		return;
	mrlease_preload_detach_v1_fn *fn =
		(mrlease_preload_detach_v1_fn *)dlsym(RTLD_DEFAULT, "mrlease_preload_detach_v1");
	if (fn)
		fn(&g_hooks);
	atomic_fetch_sub(g_pl->mrs, atomic_load(&g_mrs)); /* MRs left registered */
}

/* munmap as every other object asks for it: bound by the dynamic linker
 * the way their references are (dlvsym is stricter than binding: it never
 * takes an unversioned definition from an object that has versions) */
#ifdef __x86_64__
extern int mrl_munmap_glibc(void *addr, size_t len);
__asm__(".symver mrl_munmap_glibc, munmap@GLIBC_2.2.5");
#else
#define mrl_munmap_glibc munmap
#endif

/* Do callers of munmap reach the preload library? Directly, when the
 * GLIBC_2.2.5 reference every object makes binds to it; or through another
 * interposer that comes first and chains to it (a sanitizer runtime): a
 * probe call through that reference must arrive. */
bool mrl_intp_active(void)
{
	pthread_once(&g_attach_once, attach);
	if (!g_pl)
		return false;
	if ((void *)mrl_munmap_glibc == g_pl->munmap)
		return true;
	void *page = (void *)syscall(SYS_mmap, NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (page == MAP_FAILED)
		return false;
	long seen = atomic_load(g_pl->probe_seen);
	atomic_fetch_add(g_pl->mrs, 1); /* the preload looks only while armed */
	atomic_store(g_pl->probe, (uintptr_t)page);
	mrl_munmap_glibc(page, 4096);
	atomic_store(g_pl->probe, 0);
	atomic_fetch_sub(g_pl->mrs, 1);
	return atomic_load(g_pl->probe_seen) != seen;
}

/* ---- the interposer as a watcher ---- */

static int intp_start(struct mrl_ctx *ctx)
{
	if (!mrl_intp_active())
		return -ENOTSUP; /* callers of munmap do not reach our definition */
	return mrl_intp_add(ctx);
}

static void intp_mr_attach(struct mrl_ctx *ctx, struct mrl_mr *mr)
{
	/* the interposer's first, lock-free test: outside this box, no MR */
	mrl_intp_grow(ctx, (uintptr_t)mr->addr, (uintptr_t)mr->addr + mr->len);
	intp_count(1);
	mr->counted = 1;
	ctx->intp_nmrs++;
}

static void intp_mr_detach(struct mrl_ctx *ctx, struct mrl_mr *mr)
{
	if (!mr->counted)
		return;
	intp_count(-1);
	mr->counted = 0;
	ctx->intp_nmrs--;
}

/* MRs left registered are deregistered after the watchers stop */
static void intp_stop(struct mrl_ctx *ctx)
{
	mrl_intp_del(ctx);
	intp_count(-ctx->intp_nmrs);
	ctx->intp_nmrs = 0;
}

static unsigned intp_coverage(struct mrl_ctx *ctx, struct mrl_mr *mr, uint8_t *cov)
{
	(void)ctx;
	(void)mr;
	static const int rows[] = {MRL_CHG_OWNER_MUNMAP, MRL_CHG_OWNER_MREMAP,
				   MRL_CHG_OWNER_MAP_FIXED, MRL_CHG_OWNER_MADVISE};
	for (size_t i = 0; i < ARRAY_SIZE(rows); i++)
		mrl_cov_raise(cov, rows[i], MRL_SEEN_BEFORE);
	return MRL_WATCH_INTERPOSE;
}

const struct mrl_watcher_ops mrl_watch_interpose = {
	.name = "interpose",
	.bit = MRL_WATCH_INTERPOSE,
	.start = intp_start,
	.stop = intp_stop,
	.let_land = intp_let_land,
	.brk_done = intp_brk_done,
	.tick = intp_tick,
	.monitor_gone = intp_monitor_gone,
	.mr_attach = intp_mr_attach,
	.mr_detach = intp_mr_detach,
	.coverage = intp_coverage,
};
