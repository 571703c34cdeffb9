/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* MR events: the queue the monitor and the watchers post to, the pollable
 * fd, and the events got and not yet acked, against which an ack is matched
 * by value (never by a pointer the caller could copy or forge). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mrl_int.h"

#define EVQ_MAX 65536 /* informational events beyond this are dropped and counted */
#define EV_POOL_MAX 16384 /* acked events kept for reuse (a break over 10,000 MRs posts 10,000) */

/* An event item, from the pool of acked ones or new; evq_lock held. */
static struct mrl_evq_item *item_get(struct mrl_ctx *ctx)
{
	struct mrl_evq_item *it = ctx->ev_pool;
	if (!it)
		return calloc(1, sizeof(*it));
	ctx->ev_pool = it->next;
	ctx->ev_npool--;
	memset(it, 0, sizeof(*it));
	return it;
}

/* evq_lock held */
static void item_put(struct mrl_ctx *ctx, struct mrl_evq_item *it)
{
	if (ctx->ev_npool >= EV_POOL_MAX) {
		free(it);
		return;
	}
	it->next = ctx->ev_pool;
	ctx->ev_pool = it;
	ctx->ev_npool++;
}

/* each context's tag in its events' sequence numbers (wraps after 2^20 contexts) */
static _Atomic uint32_t ev_tags = 1;

/* a new context's events: its own tag in their sequence numbers */
void mrl_events_init(struct mrl_ctx *ctx)
{
	ctx->ev_seq = (uint64_t)atomic_fetch_add(&ev_tags, 1) << MRL_EV_TAG_SHIFT;
}

/* ---- events ---- */

void mrl_post_event(struct mrl_ctx *ctx, struct mrl_mr *mr, uint32_t type, uint32_t cause,
		    uint64_t off, uint64_t len, pid_t pid, uint64_t deadline, uint64_t seen)
{
	mrl_lock(&ctx->evq_lock);
	/* A break the owner must answer is never dropped; the rest may be. */
	if (ctx->evq_len >= EVQ_MAX && !(type == MRL_EVENT_BREAK && mr->policy == MRL_POLICY_NOTIFY)) {
		ctx->st.events_dropped++;
		mrl_unlock(&ctx->evq_lock);
		return;
	}
	struct mrl_evq_item *it = item_get(ctx);
	if (!it) {
		ctx->st.events_dropped++;
		mrl_unlock(&ctx->evq_lock);
		return;
	}
	it->ev.type = type;
	it->ev.cause = cause;
	it->ev.mr = mr->handle;
	it->ev.mr_context = mr->context;
	it->ev.offset = off;
	it->ev.length = len;
	it->ev.pid = pid;
	it->ev.generation = mr->gen;
	it->ev.deadline_ns = deadline;
	it->ev.time_ns = seen;
	ctx->ev_seq = (ctx->ev_seq & ~MRL_EV_SEQ_MASK) | ((ctx->ev_seq + 1) & MRL_EV_SEQ_MASK);
	if (!(ctx->ev_seq & MRL_EV_SEQ_MASK))
		ctx->ev_seq++; /* 0 never names an event */
	it->ev.internal = ctx->ev_seq;
	it->mr = mr;
	mr->refs++; /* ctx->lock is held by every caller */
	*ctx->evq_tail = it;
	ctx->evq_tail = &it->next;
	/* The eventfd is readable exactly while the queue is not empty: only
	 * the first event into an empty queue writes it (a break over 10,000
	 * MRs used to make 10,000 system calls while the breaker waited). */
	if (++ctx->evq_len == 1) {
		uint64_t one = 1;
		if (write(ctx->ev_fd, &one, sizeof(one)) < 0) {
			/* cannot overflow: the counter is 0 or 1 */
		}
	}
	mrl_unlock(&ctx->evq_lock);
}

/* A peer is gone (ep.c): an event naming no MR (mr 0), its mrl_peer handle
 * in mr_context. evq_lock only: the callers hold an endpoint's lock and
 * may hold ctx->lock. Dropped like any event but a NOTIFY break when the
 * queue is full (counted). */
void mrl_post_peer_event(struct mrl_ctx *ctx, void *peer, uint32_t cause, uint64_t seen)
{
	mrl_lock(&ctx->evq_lock);
	struct mrl_evq_item *it = ctx->evq_len < EVQ_MAX ? item_get(ctx) : NULL;
	if (!it) {
		ctx->st.events_dropped++;
		mrl_unlock(&ctx->evq_lock);
		return;
	}
	it->ev.type = MRL_EVENT_PEER_LOST;
	it->ev.cause = cause;
	it->ev.mr_context = peer;
	it->ev.time_ns = seen;
	ctx->ev_seq = (ctx->ev_seq & ~MRL_EV_SEQ_MASK) | ((ctx->ev_seq + 1) & MRL_EV_SEQ_MASK);
	if (!(ctx->ev_seq & MRL_EV_SEQ_MASK))
		ctx->ev_seq++;
	it->ev.internal = ctx->ev_seq;
	*ctx->evq_tail = it;
	ctx->evq_tail = &it->next;
	if (++ctx->evq_len == 1) {
		uint64_t one = 1;
		if (write(ctx->ev_fd, &one, sizeof(one)) < 0) {
		}
	}
	mrl_unlock(&ctx->evq_lock);
}

/* ---- events got and not yet acked: an ack is matched against these by
 * value (handle and sequence number), never through a pointer the caller
 * hands back, so a copy acked twice or a forged event frees nothing ---- */
static inline uint32_t evo_bucket(const struct mrl_ctx *ctx, uint64_t seq)
{
	return (uint32_t)(seq & (ctx->evo_cap - 1)); /* sequential keys spread evenly */
}

/* Room for one more outstanding event; evq_lock held. */
static int evo_reserve(struct mrl_ctx *ctx)
{
	if (ctx->evo_n < ctx->evo_cap)
		return 0;
	uint32_t cap = ctx->evo_cap ? ctx->evo_cap * 2 : 64;
	struct mrl_evq_item **b = cap > ctx->evo_cap ? calloc(cap, sizeof(*b)) : NULL;
	if (!b)
		/* chains just grow longer; only a first table is a must */
		return ctx->evo_cap ? 0 : -ENOMEM;
	for (uint32_t i = 0; i < ctx->evo_cap; i++)
		while (ctx->evo[i]) {
			struct mrl_evq_item *it = ctx->evo[i];
			ctx->evo[i] = it->next;
			uint32_t k = (uint32_t)(it->ev.internal & (cap - 1));
			it->next = b[k];
			b[k] = it;
		}
	free(ctx->evo);
	ctx->evo = b;
	ctx->evo_cap = cap;
	return 0;
}

/* Unlink the outstanding event (seq, h); NULL (and why) if there is none. */
static struct mrl_evq_item *evo_take(struct mrl_ctx *ctx, uint64_t seq, mrl_mr_t h,
				     const char **why)
{
	*why = "not outstanding: acked already (a copy is the same event) or never got";
	if (!seq) {
		*why = "not from mrl_event_get (no sequence number)";
		return NULL;
	}
	if ((seq & ~MRL_EV_SEQ_MASK) != (ctx->ev_seq & ~MRL_EV_SEQ_MASK)) {
		*why = "not from this context";
		return NULL;
	}
	if (!ctx->evo_cap)
		return NULL;
	for (struct mrl_evq_item **pp = &ctx->evo[evo_bucket(ctx, seq)]; *pp; pp = &(*pp)->next) {
		struct mrl_evq_item *it = *pp;
		if (it->ev.internal != seq)
			continue;
		if (it->ev.mr != h) {
			*why = "its MR handle does not match the event got (forged or altered)";
			return NULL;
		}
		*pp = it->next;
		ctx->evo_n--;
		return it;
	}
	return NULL;
}

/* mrl_ctx_destroy: events queued or got and never acked let go of their MRs. */
void mrl_events_release(struct mrl_ctx *ctx)
{
	mrl_lock(&ctx->lock);
	mrl_lock(&ctx->evq_lock);
	struct mrl_evq_item *list = ctx->evq_head;
	ctx->evq_head = NULL;
	ctx->evq_tail = &ctx->evq_head;
	ctx->evq_len = 0;
	for (uint32_t i = 0; i < ctx->evo_cap; i++)
		while (ctx->evo[i]) {
			struct mrl_evq_item *it = ctx->evo[i];
			ctx->evo[i] = it->next;
			it->next = list;
			list = it;
		}
	free(ctx->evo);
	ctx->evo = NULL;
	ctx->evo_cap = ctx->evo_n = 0;
	while (ctx->ev_pool) {
		struct mrl_evq_item *it = ctx->ev_pool;
		ctx->ev_pool = it->next;
		free(it);
	}
	ctx->ev_npool = 0;
	mrl_unlock(&ctx->evq_lock);
	while (list) {
		struct mrl_evq_item *it = list;
		list = it->next;
		if (it->mr) /* NULL: a peer's event */
			mrl_mr_put(ctx, it->mr);
		free(it);
	}
	mrl_unlock(&ctx->lock);
}

MRL_EXPORT int mrl_event_fd(mrl_ctx *ctx)
{
	if (!ctx)
		return mrl_err(EINVAL, "mrl_event_fd: NULL context");
	MRL_CHILD_CHECK(ctx, "mrl_event_fd");
	return ctx->ev_fd;
}

MRL_EXPORT int mrl_event_get(mrl_ctx *ctx, struct mrl_event *ev)
{
	if (!ctx || !ev)
		return mrl_err(EINVAL, "mrl_event_get: NULL %s", !ctx ? "context" : "event");
	MRL_CHILD_CHECK(ctx, "mrl_event_get");
	mrl_lock(&ctx->evq_lock);
	struct mrl_evq_item *it = ctx->evq_head;
	if (!it) {
		uint64_t v;
		/* drain the eventfd so poll() stops reporting it */
		if (read(ctx->ev_fd, &v, sizeof(v)) < 0) {
		}
		mrl_unlock(&ctx->evq_lock);
		return -EAGAIN;
	}
	if (evo_reserve(ctx)) { /* the event stays queued for a later get */
		mrl_unlock(&ctx->evq_lock);
		return mrl_err(ENOMEM, "mrl_event_get: no memory to track the event until its ack");
	}
	ctx->evq_head = it->next;
	if (!ctx->evq_head) {
		ctx->evq_tail = &ctx->evq_head;
		uint64_t v;
		if (read(ctx->ev_fd, &v, sizeof(v)) < 0) {
		}
	}
	ctx->evq_len--;
	uint32_t k = evo_bucket(ctx, it->ev.internal);
	it->next = ctx->evo[k];
	ctx->evo[k] = it;
	ctx->evo_n++;
	*ev = it->ev;
	mrl_unlock(&ctx->evq_lock);
	return 0;
}

MRL_EXPORT int mrl_event_ack(mrl_ctx *ctx, struct mrl_event *ev)
{
	if (!ctx || !ev)
		return mrl_err(EINVAL, "mrl_event_ack: NULL %s", !ctx ? "context" : "event");
	MRL_CHILD_CHECK(ctx, "mrl_event_ack");
	/* read once: the caller's struct is only data to match, never followed */
	uint64_t seq = ev->internal;
	mrl_mr_t h = ev->mr;
	const char *why;
	/* ctx->lock before evq_lock, as mrl_post_event takes them */
	mrl_lock(&ctx->lock);
	mrl_lock(&ctx->evq_lock);
	struct mrl_evq_item *it = evo_take(ctx, seq, h, &why);
	bool found = it != NULL;
	struct mrl_mr *mr = it ? it->mr : NULL; /* NULL: a peer's event */
	if (it)
		item_put(ctx, it);
	mrl_unlock(&ctx->evq_lock);
	if (mr)
		mrl_mr_put(ctx, mr);
	mrl_unlock(&ctx->lock);
	if (!found)
		return mrl_err(EINVAL, "mrl_event_ack: event %#llx for MR %#llx %s",
			       (unsigned long long)seq, (unsigned long long)h, why);
	return 0;
}

