/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Device calls outside ctx->lock. fi_mr_reg pins memory (long for a large
 * range), fi_close waits for the provider, an io_uring buffer update pins
 * and unpins pages: none of that may hold up a thread that needs ctx->lock
 * to make progress (the monitor answering a fanotify actor, an endpoint
 * handing in a pause ack). So the state machine (mr.c, brk.c) queues what
 * the device must do, under ctx->lock; this file's worker thread makes the
 * calls in order with no lock held and publishes each result under
 * ctx->lock (the op's done callback). See mrl_int.h for the contract. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "mrl_int.h"

enum devop_kind { DEVOP_DEREG = 1, DEVOP_REREG, DEVOP_REVOKE, DEVOP_AFTER, DEVOP_REDIRECT };

struct mrl_devop {
	struct mrl_devop *next;
	int kind;
	struct mrl_mr *mr;      /* REREG, REVOKE, REDIRECT: a reference */
	void *handle;           /* DEREG: a registration nobody else has any more */
	uint64_t len;           /* REREG: the bytes it registered (valid_len then) */
	bool rekey;             /* REREG: register anew (under mr->key, already new) */
	bool keep_none;         /* REREG: only an existing registration (a fenced tail) */
	/* REREG, REVOKE: what the MR was when queued; dropped if it moved on */
	uint8_t state, in_brk;
	mrl_dev_done_fn *done;
	void *arg;
};

static void push(struct mrl_ctx *ctx, struct mrl_devop *op)
{
	if (ctx->devq_front) { /* from a done callback: before what was queued earlier */
		op->next = *ctx->devq_front;
		*ctx->devq_front = op;
		if (ctx->devq_tail == ctx->devq_front)
			ctx->devq_tail = &op->next;
		ctx->devq_front = &op->next;
	} else {
		op->next = NULL;
		*ctx->devq_tail = op;
		ctx->devq_tail = &op->next;
	}
	pthread_cond_broadcast(&ctx->dev_cv);
	/* (the idle worker sleeps on a condition of its own: a caller's end of
	 * a call it made itself, mrl_dev_dereg_here, need not wake it) */
	pthread_cond_signal(&ctx->dev_work_cv);
}

static struct mrl_devop *op_new(int kind)
{
	struct mrl_devop *op = calloc(1, sizeof(*op));
	if (op)
		op->kind = kind;
	return op;
}

static bool idle(const struct mrl_ctx *ctx)
{
	return !ctx->devq && !ctx->dev_active;
}

/* ctx->lock held: until no post holds a descriptor of mr's registrations
 * (a post is one provider call, never a wait) */
static void desc_wait(struct mrl_ctx *ctx, struct mrl_mr *mr)
{
	while (mr && mr->desc_users)
		pthread_cond_wait(&ctx->dev_cv, &ctx->lock);
}

void mrl_dev_desc_put(struct mrl_ctx *ctx, struct mrl_mr *mr)
{
	if (!--mr->desc_users)
		pthread_cond_broadcast(&ctx->dev_cv);
	mrl_mr_put(ctx, mr);
}

void mrl_dev_dereg(struct mrl_ctx *ctx, void *handle, struct mrl_mr *mr)
{
	struct mrl_devop *op = op_new(DEVOP_DEREG);
	if (!op) { /* out of memory: the call is made here rather than never */
		desc_wait(ctx, mr);
		ctx->rops->dereg(ctx->dev, handle);
		return;
	}
	op->handle = handle;
	if ((op->mr = mr))
		mr->refs++;
	push(ctx, op);
}

void mrl_dev_dereg_here(struct mrl_ctx *ctx, void *handle, struct mrl_mr *mr)
{
	desc_wait(ctx, mr);
	if (!idle(ctx)) { /* after what is queued, in order */
		mrl_dev_dereg(ctx, handle, mr);
		return;
	}
	ctx->dev_active++;
	ctx->dev_inline++;
	mrl_unlock(&ctx->lock);
	ctx->rops->dereg(ctx->dev, handle);
	mrl_lock(&ctx->lock);
	ctx->dev_inline--;
	ctx->dev_active--;
	pthread_cond_broadcast(&ctx->dev_cv);
}

static struct mrl_devop *mr_op(int kind, struct mrl_mr *mr, mrl_dev_done_fn *done, void *arg)
{
	struct mrl_devop *op = op_new(kind);
	if (!op)
		return NULL;
	op->mr = mr;
	mr->refs++;
	op->state = mr->state;
	op->in_brk = mr->in_brk;
	op->done = done;
	op->arg = arg;
	return op;
}

void mrl_dev_rereg(struct mrl_ctx *ctx, struct mrl_mr *mr, int how, mrl_dev_done_fn *done,
		   void *arg)
{
	struct mrl_devop *op = mr_op(DEVOP_REREG, mr, done, arg);
	if (!op) {
		if (done)
			done(ctx, mr, -ENOMEM, arg);
		return;
	}
	op->rekey = how == MRL_REREG_REKEY;
	op->keep_none = how == MRL_REREG_SHRINK;
	push(ctx, op);
}

void mrl_dev_revoke(struct mrl_ctx *ctx, struct mrl_mr *mr, mrl_dev_done_fn *done, void *arg)
{
	struct mrl_devop *op = mr_op(DEVOP_REVOKE, mr, done, arg);
	if (!op) {
		if (done)
			done(ctx, mr, -ENOMEM, arg);
		return;
	}
	push(ctx, op);
}

void mrl_dev_redirect(struct mrl_ctx *ctx, struct mrl_mr *mr, mrl_dev_done_fn *done, void *arg)
{
	struct mrl_devop *op = mr_op(DEVOP_REDIRECT, mr, done, arg);
	if (!op) {
		if (done)
			done(ctx, mr, -ENOMEM, arg);
		return;
	}
	push(ctx, op);
}

void mrl_dev_after(struct mrl_ctx *ctx, mrl_dev_done_fn *done, void *arg)
{
	struct mrl_devop *op = idle(ctx) ? NULL : op_new(DEVOP_AFTER);
	if (!op) { /* nothing to wait for (or no memory: go on, as before) */
		done(ctx, NULL, 0, arg);
		return;
	}
	op->done = done;
	op->arg = arg;
	push(ctx, op);
}

void mrl_dev_cancel(struct mrl_ctx *ctx, void *arg)
{
	for (struct mrl_devop **pp = &ctx->devq; *pp;) {
		struct mrl_devop *op = *pp;
		if (op->kind != DEVOP_AFTER || op->arg != arg) {
			pp = &op->next;
			continue;
		}
		*pp = op->next;
		if (ctx->devq_tail == &op->next)
			ctx->devq_tail = pp;
		if (ctx->devq_front == &op->next)
			ctx->devq_front = pp;
		free(op);
	}
}

/* ctx->lock held, an MR op: make the call unlocked; the result's code */
static int mr_call(struct mrl_ctx *ctx, struct mrl_devop *op)
{
	struct mrl_mr *mr = op->mr;
	desc_wait(ctx, mr); /* (the lock may drop: what follows looks afresh) */
	if (mr->registering || mr->state != op->state || mr->in_brk != op->in_brk)
		return -ECANCELED; /* it moved on: whoever moved it queued what it needs */
	const struct mrl_registrar_ops *r = ctx->rops;
	void *h = mr->dev_mr, *addr = mr->addr;
	uint64_t key = mr->key, len = mr->valid_len;
	unsigned access = mr->access;
	int ret;
	if (!h && (op->kind != DEVOP_REREG || op->keep_none))
		return 0;
	op->len = len;
	mr->dev_busy = 1;
	mrl_unlock(&ctx->lock);
	if (op->kind == DEVOP_REDIRECT) {
		ret = r->redirect(ctx->dev, h);
	} else if (op->kind == DEVOP_REVOKE) {
		ret = r->revoke(ctx->dev, h);
		if (ret == -EOPNOTSUPP) { /* no revoke-and-keep: the restore registers anew */
			r->dereg(ctx->dev, h);
			h = NULL;
			ret = 0;
		}
	} else {
		ret = -EOPNOTSUPP;
		if (h && !op->rekey)
			ret = r->restore(ctx->dev, h, addr, len);
		if (ret == -EOPNOTSUPP) {
			if (h)
				r->dereg(ctx->dev, h);
			h = NULL;
			ret = r->reg(ctx->dev, addr, len, access, &key, &h);
			if (ret)
				h = NULL;
		}
	}
	mrl_lock(&ctx->lock);
	/* what is queued from here on follows from this call: it goes before
	 * what was queued while the lock was dropped (a fence's barrier) */
	ctx->devq_front = &ctx->devq;
	mr->dev_busy = 0;
	mr->dev_mr = h;
	/* what the device reaches through it now: a new registration's
	 * length; nothing once revoked or redirected (scratch); as before
	 * when the call failed and kept the handle */
	if (!h)
		mr->dev_len = 0;
	else if (!ret)
		mr->dev_len = op->kind == DEVOP_REREG ? len : 0;
	if (!ret)
		mr->key = key;
	/* fenced or deregistered while the call ran: it let the handle be */
	if (h && (mr->state == MRL_STATE_FENCED || mr->state == MRL_STATE_DEREGISTERED)) {
		mr->dev_mr = NULL;
		mrl_dev_dereg(ctx, h, mr);
	}
	return ret;
}

/* ctx->lock held, ctx->devq not empty: run its first op */
static void run_one(struct mrl_ctx *ctx)
{
	struct mrl_devop *op = ctx->devq;
	ctx->devq = op->next;
	if (!ctx->devq)
		ctx->devq_tail = &ctx->devq;
	ctx->dev_active++;
	int ret = 0;
	if (op->kind == DEVOP_AFTER) {
		/* queued after a caller's own deregistration began: after it ends */
		while (ctx->dev_inline)
			pthread_cond_wait(&ctx->dev_cv, &ctx->lock);
	} else if (op->kind == DEVOP_DEREG) {
		desc_wait(ctx, op->mr);
		mrl_unlock(&ctx->lock);
		ctx->rops->dereg(ctx->dev, op->handle);
		mrl_lock(&ctx->lock);
	} else if (op->kind != DEVOP_AFTER) {
		ret = mr_call(ctx, op); /* may have queued at the front already */
	}
	ctx->dev_active--;
	if (!ctx->devq_front)
		ctx->devq_front = &ctx->devq;
	if (op->done)
		op->done(ctx, op->mr, ret, op->arg);
	/* its tail was fenced while the call ran: shrink to what is served */
	struct mrl_mr *mr = op->mr;
	if (op->kind == DEVOP_REREG && !ret && mr->dev_mr && mr->valid_len < op->len &&
	    (mr->state == MRL_STATE_ACTIVE || mr->state == MRL_STATE_PAUSED))
		mrl_dev_rereg(ctx, mr, MRL_REREG_SHRINK, NULL, NULL);
	ctx->devq_front = NULL;
	if (op->mr)
		mrl_mr_put(ctx, op->mr);
	free(op);
	pthread_cond_broadcast(&ctx->dev_cv);
	/* what the callbacks queued (state messages) and the timers they set
	 * (a landing to poll) are the monitor's */
	mrl_wake_monitor(ctx);
}

void mrl_dev_sync(struct mrl_ctx *ctx)
{
	while (!idle(ctx)) {
		if (ctx->dev_running && !pthread_equal(pthread_self(), ctx->dev_thread))
			pthread_cond_wait(&ctx->dev_cv, &ctx->lock);
		else if (ctx->devq)
			run_one(ctx); /* no worker (any more): this thread is it */
		else
			break;
	}
}

void mrl_dev_wait_applied(struct mrl_ctx *ctx, struct mrl_mr *mr)
{
	while (mr->unapplied) {
		if (ctx->dev_running && !pthread_equal(pthread_self(), ctx->dev_thread))
			pthread_cond_wait(&ctx->dev_cv, &ctx->lock);
		else if (ctx->devq)
			run_one(ctx);
		else
			break; /* nothing left to apply them: cannot happen */
	}
}

static void *dev_main(void *arg)
{
	struct mrl_ctx *ctx = arg;
	mrl_lock(&ctx->lock);
	for (;;) {
		if (ctx->devq) {
			run_one(ctx);
			continue;
		}
		if (ctx->dev_stop)
			break;
		pthread_cond_wait(&ctx->dev_work_cv, &ctx->lock);
	}
	mrl_unlock(&ctx->lock);
	return NULL;
}

int mrl_dev_start(struct mrl_ctx *ctx)
{
	int ret = pthread_create(&ctx->dev_thread, NULL, dev_main, ctx);
	if (ret)
		return mrl_err(ret, "device worker: pthread_create: %s", strerror(ret));
	pthread_setname_np(ctx->dev_thread, "mrl-dev"); /* named before anyone looks */
	ctx->dev_running = true;
	return 0;
}

/* After the last MR went: the worker finishes what is queued and ends. */
void mrl_dev_stop(struct mrl_ctx *ctx)
{
	if (!ctx->dev_running)
		return;
	mrl_lock(&ctx->lock);
	ctx->dev_stop = true;
	pthread_cond_broadcast(&ctx->dev_cv);
	pthread_cond_signal(&ctx->dev_work_cv);
	mrl_unlock(&ctx->lock);
	pthread_join(ctx->dev_thread, NULL);
	mrl_lock(&ctx->lock);
	ctx->dev_running = false;
	mrl_dev_sync(ctx); /* anything queued since (nothing should be) */
	mrl_unlock(&ctx->lock);
}
