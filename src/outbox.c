/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The outbox: control messages (PAUSE, states) decided under ctx->lock,
 * batched per peer, sent after the lock is dropped. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "mrl_int.h"
#include "proto.h"

/* ---- outbox: control messages decided under ctx->lock, sent without it ---- */
static void close_batch(struct mrl_ctx *ctx, struct mrl_tpeer *peer)
{
	for (int i = 0; i < MRL_OPEN_BATCHES; i++)
		if (ctx->open_batch[i] && ctx->open_batch[i]->peer == peer)
			ctx->open_batch[i] = NULL;
}

void mrl_outbox_close_batches(struct mrl_ctx *ctx)
{
	memset(ctx->open_batch, 0, sizeof(ctx->open_batch));
}

static struct mrl_out *outbox_add(struct mrl_ctx *ctx, struct mrl_tpeer *peer, size_t cap)
{
	struct mrl_out *o = malloc(sizeof(*o) + cap);
	if (!o)
		return NULL; /* the peer then times out and is cut off: safe, if not hitless */
	o->next = NULL;
	o->peer = peer;
	o->len = 0;
	if (!ctx->outbox)
		ctx->outbox_since = mrl_now_ns();
	*ctx->outbox_tail = o;
	ctx->outbox_tail = &o->next;
	return o;
}

void mrl_queue_out(struct mrl_ctx *ctx, struct mrl_tpeer *peer, const void *msg, size_t len)
{
	close_batch(ctx, peer); /* what follows must not overtake this */
	struct mrl_out *o = outbox_add(ctx, peer, len);
	if (o) {
		o->len = len;
		memcpy(o->buf, msg, len);
	}
}

/* The open batch of the given type to this peer (a state message being
 * filled), or a new one; a batch of the other type is closed first, so a
 * peer reads every MR's states in the order they were decided. */
static struct mrl_out *state_batch(struct mrl_ctx *ctx, struct mrl_tpeer *peer, uint8_t type,
				   bool full)
{
	struct mrl_out *o = NULL;
	int slot = -1;
	for (int i = 0; i < MRL_OPEN_BATCHES; i++) {
		if (ctx->open_batch[i] && ctx->open_batch[i]->peer == peer)
			o = ctx->open_batch[i], slot = i;
		else if (!ctx->open_batch[i] && slot < 0)
			slot = i;
	}
	if (o && !full && ((struct msg_hdr *)o->buf)->type == type)
		return o;
	size_t cap = type == MSG_STATES ? sizeof(struct msg_states) : sizeof(struct msg_state_runs);
	if (!(o = outbox_add(ctx, peer, cap)))
		return NULL;
	struct msg_hdr *h = (struct msg_hdr *)o->buf;
	memset(o->buf, 0, offsetof(struct msg_states, e)); /* header, n, pad: the same in both */
	h->magic = MRL_MAGIC;
	h->type = type;
	o->len = h->len = offsetof(struct msg_states, e);
	if (slot < 0)
		slot = 0; /* more peers than slots: the evicted batch is just closed */
	ctx->open_batch[slot] = o;
	return o;
}

/* Many MRs change state at once (a restore after a break over 10,000 of
 * them): their states to a peer go in batches. An MR that keeps the key
 * the peer knows and serves all or nothing goes into a run of consecutive
 * ids (MSG_STATE_RUNS: one message for a file's MRs registered in order);
 * any other, one entry of MSG_STATES each (up to MRL_STATES_MAX). */
void mrl_queue_state(struct mrl_ctx *ctx, struct mrl_holder *h, const struct state_ent *e, uint64_t len)
{
	bool serving = e->state == MRL_STATE_ACTIVE || e->state == MRL_STATE_PAUSED;
	bool run = e->key == h->told_key && (serving ? e->valid_len == len : !e->valid_len);
	h->told_key = e->key;
	if (run) {
		struct mrl_out *o = state_batch(ctx, h->peer, MSG_STATE_RUNS, false);
		if (!o)
			return;
		struct msg_state_runs *m = (struct msg_state_runs *)o->buf;
		struct state_run *last = m->n ? &m->r[m->n - 1] : NULL;
		if (last && e->id == last->first + last->n && last->n < UINT32_MAX && last->gen == e->gen &&
		    last->state == e->state && last->cause == e->cause && last->flags == e->flags) {
			last->n++;
			return;
		}
		if (m->n == MRL_STATE_RUNS_MAX) {
			if (!(o = state_batch(ctx, h->peer, MSG_STATE_RUNS, true)))
				return;
			m = (struct msg_state_runs *)o->buf;
		}
		m->r[m->n++] = (struct state_run){.first = e->id, .n = 1, .gen = e->gen, .state = e->state,
						  .cause = e->cause, .flags = e->flags};
		o->len = offsetof(struct msg_state_runs, r) + m->n * sizeof(m->r[0]);
		m->h.len = (uint16_t)o->len;
		return;
	}
	struct mrl_out *o = state_batch(ctx, h->peer, MSG_STATES, false);
	if (!o)
		return;
	struct msg_states *m = (struct msg_states *)o->buf;
	if (m->n == MRL_STATES_MAX) {
		if (!(o = state_batch(ctx, h->peer, MSG_STATES, true)))
			return;
		m = (struct msg_states *)o->buf;
	}
	m->e[m->n++] = *e;
	o->len = offsetof(struct msg_states, e) + m->n * sizeof(m->e[0]);
	m->h.len = (uint16_t)o->len;
}

/* Send a list in order; stop at the first message the peer has no room
 * for (-EAGAIN: at once when not waiting, after the transport's wait
 * otherwise) and return it with the rest, unsent. Other errors (a dead
 * peer) drop the message: the peer's loss is handled elsewhere. */
static struct mrl_out *send_list(struct mrl_out *o, bool wait)
{
	while (o && o->peer->t->send(o->peer, o->buf, o->len, wait) != -EAGAIN) {
		struct mrl_out *n = o->next;
		free(o);
		o = n;
	}
	return o;
}

/* What could not go goes back to the head of the outbox, in order, ahead
 * of anything queued meanwhile. */
static void requeue_front(struct mrl_ctx *ctx, struct mrl_out *o)
{
	if (!o)
		return;
	mrl_lock(&ctx->lock);
	struct mrl_out *last = o;
	while (last->next)
		last = last->next;
	last->next = ctx->outbox;
	if (!ctx->outbox)
		ctx->outbox_tail = &last->next;
	ctx->outbox = o;
	mrl_outbox_close_batches(ctx); /* nothing may be appended behind the requeued */
	mrl_unlock(&ctx->lock);
}

/* The whole outbox, emptied. */
static struct mrl_out *take_all(struct mrl_ctx *ctx)
{
	mrl_lock(&ctx->lock);
	struct mrl_out *o = ctx->outbox;
	ctx->outbox = NULL;
	ctx->outbox_tail = &ctx->outbox;
	mrl_outbox_close_batches(ctx);
	mrl_unlock(&ctx->lock);
	return o;
}

/* The monitor's flush: it never waits for an endpoint another thread holds
 * or a full send queue (actors in the kernel may be waiting for the
 * monitor). What cannot go now goes back to the head of the outbox, in
 * order; true when something is left (try again soon). */
/* Hold state messages (nothing else) for a little while the device worker
 * still has calls queued: a restore of 10,000 MRs tells its peers as each
 * MR's device call ends, and the monitor, woken by every one, sent a
 * message per MR or three. Held, they gather into runs; a peer's resume
 * comes at most STATES_HOLD_NS later. ctx->lock held. */
#define STATES_HOLD_NS 1000000ull
static bool hold_states(struct mrl_ctx *ctx)
{
	if (!ctx->outbox || (!ctx->devq && !ctx->dev_active) ||
	    mrl_now_ns() - ctx->outbox_since >= STATES_HOLD_NS)
		return false;
	for (struct mrl_out *o = ctx->outbox; o; o = o->next) {
		uint8_t type = ((const struct msg_hdr *)o->buf)->type;
		if (type != MSG_STATES && type != MSG_STATE_RUNS)
			return false;
	}
	return true;
}

bool mrl_flush_outbox_nowait(struct mrl_ctx *ctx)
{
	if (pthread_mutex_trylock(&ctx->flush_lock))
		return true; /* another thread is sending: what it left, next time */
	mrl_lock(&ctx->lock);
	bool hold = hold_states(ctx);
	mrl_unlock(&ctx->lock);
	if (hold) {
		mrl_unlock(&ctx->flush_lock);
		return true; /* the monitor looks again soon, and at each device call's end */
	}
	struct mrl_out *o = take_all(ctx);
	o = send_list(o, false);
	requeue_front(ctx, o);
	mrl_unlock(&ctx->flush_lock);
	return o != NULL;
}

/* ctx->lock held: drop the queued messages whose peer match() says goes
 * away (a transport tearing down its peers). */
void mrl_outbox_forget(struct mrl_ctx *ctx, bool (*match)(struct mrl_tpeer *, void *), void *arg)
{
	for (struct mrl_out **op = &ctx->outbox; *op;) {
		struct mrl_out *o = *op;
		if (match(o->peer, arg)) {
			*op = o->next;
			free(o);
		} else {
			op = &o->next;
		}
	}
	ctx->outbox_tail = &ctx->outbox;
	while (*ctx->outbox_tail)
		ctx->outbox_tail = &(*ctx->outbox_tail)->next;
	mrl_outbox_close_batches(ctx);
}

void mrl_flush_outbox(struct mrl_ctx *ctx)
{
	/* flush_lock keeps mrl_ep_destroy from freeing a peer we are sending to */
	mrl_lock(&ctx->flush_lock);
	struct mrl_out *o = take_all(ctx);
	/* A peer with no room for a whole wait keeps its messages: a lost
	 * resume would hold its operations for ever. The monitor retries;
	 * the keep-alive cuts off a peer that never makes room. */
	o = send_list(o, true);
	requeue_front(ctx, o);
	mrl_unlock(&ctx->flush_lock);
	if (o)
		mrl_wake_monitor(ctx);
}

