/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The RMA data path: ops, posting (held while paused, queued while the send
 * queue is full), completions to the caller. The fast path is one load and
 * compare of rmr->ctl. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <rdma/fabric.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>

#include "ep_int.h"
#include "fabric.h"

static struct mrl_op *op_get(struct mrl_ep *ep)
{
	struct mrl_op *op = ep->free_ops;
	if (op)
		ep->free_ops = op->next;
	else if (!(op = malloc(sizeof(*op))))
		return NULL;
	memset(op, 0, sizeof(*op));
	return op;
}

void mrl_ep_op_put(struct mrl_ep *ep, struct mrl_op *op)
{
	op->next = ep->free_ops;
	ep->free_ops = op;
}

static void inflight_add(struct mrl_ep *ep, struct mrl_op *op)
{
	op->inext = ep->inflight.inext;
	op->iprev = &ep->inflight;
	ep->inflight.inext->iprev = op;
	ep->inflight.inext = op;
}

void mrl_ep_inflight_del(struct mrl_op *op)
{
	op->iprev->inext = op->inext;
	op->inext->iprev = op->iprev;
	op->inext = op->iprev = NULL;
}

void mrl_ep_lcq_push(struct mrl_ep *ep, void *uctx, int status, uint32_t cause, uint32_t gen)
{
	if (ep->lcq_n == ep->lcq_cap) {
		size_t cap = ep->lcq_cap ? ep->lcq_cap * 2 : 256;
		struct mrl_completion *n = malloc(cap * sizeof(*n));
		if (!n)
			return; /* would lose a completion: only on OOM */
		for (size_t i = 0; i < ep->lcq_n; i++)
			n[i] = ep->lcq[(ep->lcq_head + i) % ep->lcq_cap];
		free(ep->lcq);
		ep->lcq = n;
		ep->lcq_cap = cap;
		ep->lcq_head = 0;
	}
	struct mrl_completion *c = &ep->lcq[(ep->lcq_head + ep->lcq_n++) % ep->lcq_cap];
	memset(c, 0, sizeof(*c));
	c->op_context = uctx;
	c->status = status;
	c->cause = cause;
	c->generation = gen;
}

void mrl_ep_fail_op(struct mrl_ep *ep, struct mrl_op *op, int status, uint32_t cause)
{
	mrl_ep_lcq_push(ep, op->uctx, status, cause, op->rmr ? op->rmr->gen : 0);
	mrl_ep_op_put(ep, op);
}

/* tests: act as if the provider wanted local descriptors (FI_MR_LOCAL),
 * which tcp does not */
bool mrl_ep_test_mr_local;

/* The local descriptor of the MR that holds [buf, buf+len), for providers
 * that want one, with a hold on it (*held, for local_desc_put): the device
 * worker neither closes nor replaces that MR's registration while a post
 * uses its descriptor (devq.c). None while the worker is in a call on it
 * (dev_busy: the registration is being replaced) nor when no MR holds buf. */
static void *local_desc(struct mrl_ep *ep, const void *buf, size_t len, struct mrl_mr **held)
{
	struct mrl_ctx *ctx = ep->ctx;
	*held = NULL;
	if (!ctx->fab || !(ctx->fab->mr_local || unlikely(mrl_ep_test_mr_local)))
		return NULL;
	void *d = NULL;
	mrl_lock(&ctx->lock);
	struct mrl_itree_node *n =
		mrl_itree_first_overlap(&ctx->va_index, (uintptr_t)buf, (uintptr_t)buf + len);
	if (n && n->start <= (uintptr_t)buf && n->end >= (uintptr_t)buf + len) {
		struct mrl_mr *mr = (struct mrl_mr *)n;
		if (mr->dev_mr && !mr->dev_busy) {
			d = ctx->rops->desc(mr->dev_mr);
			mr->desc_users++;
			mr->refs++;
			*held = mr;
		}
	}
	mrl_unlock(&ctx->lock);
	return d;
}

static void local_desc_put(struct mrl_ep *ep, struct mrl_mr *held)
{
	if (!held)
		return;
	mrl_lock(&ep->ctx->lock);
	mrl_dev_desc_put(ep->ctx, held);
	mrl_unlock(&ep->ctx->lock);
}

/* Hand an op to the provider now: 0, -FI_EAGAIN (no room) or an error. */
int mrl_ep_post_op_now(struct mrl_ep *ep, struct mrl_op *op)
{
	struct mrl_rmr *r = op->rmr;
	struct iovec iov = {.iov_base = op->buf, .iov_len = op->len};
	struct mrl_mr *held;
	void *desc = local_desc(ep, op->buf, op->len, &held);
	struct fi_rma_iov riov = {.addr = r->base + op->off, .len = op->len, .key = r->key};
	struct fi_msg_rma msg = {
		.msg_iov = &iov, .desc = &desc, .iov_count = 1, .addr = r->peer->addr,
		.rma_iov = &riov, .rma_iov_count = 1, .context = &op->h.fictx,
	};
	ssize_t ret;
	op->gen = r->gen;
	mrl_sb_precheck(ep->ctx);
	pthread_rwlock_rdlock(&ep->ctx->fab->gate); /* a post may drive progress */
	if (op->h.kind == OP_WRITE)
		/* delivery-complete: when it completes, the bytes are in the target's memory */
		ret = fi_writemsg(ep->ep, &msg, FI_DELIVERY_COMPLETE | FI_COMPLETION);
	else
		ret = fi_readmsg(ep->ep, &msg, FI_COMPLETION);
	pthread_rwlock_unlock(&ep->ctx->fab->gate);
	local_desc_put(ep, held);
	if (ret == -FI_EAGAIN)
		return -FI_EAGAIN;
	if (ret)
		return mrl_err((int)ret, "fi_%smsg: %s", op->h.kind == OP_WRITE ? "write" : "read",
			       fi_strerror((int)-ret));
	r->inflight++;
	inflight_add(ep, op);
	return 0;
}

/* Post, or queue behind what already waits for room (order is kept). */
int mrl_ep_post_op(struct mrl_ep *ep, struct mrl_op *op)
{
	int ret = ep->backlog ? -FI_EAGAIN : mrl_ep_post_op_now(ep, op);
	if (ret == -FI_EAGAIN) {
		op->next = NULL;
		*ep->backlog_tail = op;
		ep->backlog_tail = &op->next;
		return 0;
	}
	return ret;
}

/* How often one op is posted again after the provider failed it. Each
 * retry waits for the owner's word on its MR (a round trip), and an op
 * that caused a drop is refused once that word comes; the others are
 * failed again only by drops other ops cause, a few per change. */
#define OP_RETRIES 32
/* an answer to a probe that did not come: ask again after this long */
#define RESYNC_ASK_NS 200000000ull

/* An op the provider completed. Two things can have happened to it that
 * its status alone does not tell:
 *  - Fenced (or cut short) since it was posted: the owner keeps a fenced
 *    key alive over scratch memory so a late operation cannot break the
 *    connection; it completed there, not in the MR: -EKEYREVOKED with the
 *    cause. A fence seen before its change is drained first (PAUSE, then
 *    the notice; the owner swaps only once this peer acked), so an op in
 *    flight when the pause came landed in the MR: its own status. Cut off
 *    (the owner stopped waiting), it may not have: -EKEYREVOKED (the owner
 *    sends the cut-off before its key moves to the tombstone: brk.c).
 *  - Failed with an error while its peer is alive: tcp (ofi_rxm over it)
 *    tears down the whole connection when one RMA cannot be served at the
 *    target (an offset past a registration cut short, pages past a new end
 *    of file not yet fenced, a key it does not know), and every other op in
 *    flight on it fails with ECANCELED/ENOTCONN, on MRs nothing happened
 *    to. Such an op's outcome is unknown, and posting it again is safe (a
 *    write puts the same bytes at the same place; its buffer is still the
 *    op's), so it is held and goes again (the provider connects anew) once
 *    the owner has answered a request for the MR's state (the drop may have
 *    taken the owner's notice of what caused it with it), or sent anything
 *    else: by then the owner has had a round trip to fence what broke.
 *    The op that caused the drop is then refused (-EKEYREVOKED and the
 *    cause); each op gets OP_RETRIES before its own error is reported. */
void mrl_ep_op_done(struct mrl_ep *ep, struct mrl_op *op, int err)
{
	struct mrl_rmr *r = op->rmr;
	struct mrl_peer *p = r->peer;
	r->inflight--;
	int status = 0;
	uint32_t cause = MRL_CAUSE_NONE;
	bool gone = r->state == MRL_STATE_FENCED || op->off + op->len > r->valid_len;
	/* draining (a pause not acked yet, not cut off): the owner's device is
	 * still on the pages, so it landed there even if fenced since */
	bool revoked = gone && (r->cut || (op->gen != r->gen && !r->draining));
	if (err && !revoked && !p->dead && !r->closed) {
		if (gone) {
			revoked = true;
		} else if (op->retries < OP_RETRIES) {
			op->retries++;
			ep->op_retries++;
			op->next = NULL;
			*r->held_tail = op;
			r->held_tail = &op->next;
			r->nheld++;
			p->nparked++;
			if (!r->resync_due) { /* asked (again) at the end of this progress turn */
				r->resync_due = true;
				r->probe_ns = 0;
				ep->resync_any = true;
			}
			if (!p->probe_due) {
				p->probe_due = true;
				ep->probes_due++;
			}
			goto out;
		}
	}
	if (err || revoked) {
		status = revoked || r->state == MRL_STATE_FENCED ? -EKEYREVOKED : -err;
		cause = r->cause;
	}
	mrl_ep_lcq_push(ep, op->uctx, status, cause, op->gen);
	mrl_ep_op_put(ep, op);
out:
	if (!r->inflight && p->pauses)
		mrl_ep_pause_check(ep, p);
}

/* A message from p: post again what a drop held, on the MRs the owner has
 * spoken of since (their state applied: mrl_ep_rmr_apply_state clears
 * resync_due); the others wait for their answer. */
void mrl_ep_retry_flush(struct mrl_ep *ep, struct mrl_peer *p)
{
	if (likely(!p->nparked))
		return;
	p->nparked = 0;
	/* a paused MR keeps them until it resumes; a fenced one has failed them */
	for (struct mrl_rmr *r = p->rmrs; r; r = r->next) {
		if (r->state != MRL_STATE_ACTIVE || !r->held || r->closed)
			continue;
		if (r->resync_due) {
			p->nparked += (uint32_t)r->nheld;
			continue;
		}
		mrl_ep_rmr_post_held(ep, r);
	}
}

/* Ask the owner for the state of an MR with ops held after a drop (an open
 * request for an MR held already: the owner answers with its state, req 0
 * marks it). The drop may have taken the owner's notice of what caused it
 * with it; the answer brings it back. */
static int resync_ask(struct mrl_ep *ep, struct mrl_peer *p, struct mrl_rmr *r, uint64_t now)
{
	struct msg_id q;
	memset(&q, 0, sizeof(q));
	mrl_ep_init_hdr(&q.h, MSG_OPEN_REQ, sizeof(q), 0);
	q.id = r->id;
	r->probe_ns = now;
	return mrl_ep_send_locked(ep, p, &q, sizeof(q));
}

void mrl_ep_retry_probe(struct mrl_ep *ep)
{
	uint64_t now = mrl_now_ns();
	for (uint32_t i = 0; i < ep->npeers && ep->probes_due; i++) {
		struct mrl_peer *p = ep->peers[i];
		if (!p || !p->probe_due)
			continue;
		p->probe_due = false;
		ep->probes_due--;
		if (p->dead)
			continue;
		int ret = 0;
		for (struct mrl_rmr *r = p->rmrs; r && !ret; r = r->next)
			if (!r->closed && r->state == MRL_STATE_ACTIVE && r->held && r->resync_due)
				ret = resync_ask(ep, p, r, now);
		/* a request that cannot go now goes again from mrl_ep_resync_tick */
	}
}

/* Progress, while some MR waits for the owner's word: one whose request
 * or answer was lost (a drop takes what is in flight on the connection
 * with it) is asked again; one the owner paused or fenced meanwhile waits
 * no more (its resume posts them, its fence failed them). */
void mrl_ep_resync_tick(struct mrl_ep *ep)
{
	uint64_t now = mrl_now_ns();
	if (now < ep->resync_next_ns)
		return;
	ep->resync_next_ns = now + RESYNC_ASK_NS / 4;
	bool any = false;
	for (uint32_t i = 0; i < ep->npeers; i++) {
		struct mrl_peer *p = ep->peers[i];
		if (!p || p->dead)
			continue;
		for (struct mrl_rmr *r = p->rmrs; r; r = r->next) {
			if (!r->resync_due)
				continue;
			if (r->closed || r->state != MRL_STATE_ACTIVE || !r->held) {
				r->resync_due = false;
				continue;
			}
			any = true;
			if (r->probe_ns && now - r->probe_ns >= RESYNC_ASK_NS)
				resync_ask(ep, p, r, now);
		}
	}
	ep->resync_any = any;
}

/* The owner's answer to such a request: the MR's state now. */
void mrl_ep_resync_reply(struct mrl_ep *ep, struct mrl_peer *p, const struct msg_state *m)
{
	struct mrl_rmr *r = mrl_ep_rmr_find(p, m->id);
	/* only an MR active here takes it, or a paused one a final state
	 * (fenced: cut off, say): a fence or cut-off that came in meanwhile is
	 * final, a pause is its own message's (and ack's) */
	bool final = m->status || m->state == MRL_STATE_FENCED || m->state == MRL_STATE_DEREGISTERED;
	if (!r || r->closed || !(r->state == MRL_STATE_ACTIVE || (r->state == MRL_STATE_PAUSED && final)))
		return;
	if (m->status) { /* gone from the owner's table: deregistered */
		struct msg_state f = *m;
		f.state = MRL_STATE_DEREGISTERED;
		f.cause = r->cause;
		f.key = r->key;
		f.base = r->base;
		f.gen = r->gen;
		mrl_ep_rmr_apply_state(ep, r, &f);
		return;
	}
	if (m->state < MRL_STATE_ACTIVE || m->state > MRL_STATE_DEREGISTERED || m->cause >= MRL_CAUSE_MAX ||
	    m->len != r->len || m->valid_len > m->len) {
		ep->bad_msgs++;
		return;
	}
	if (m->state == MRL_STATE_PAUSED) {
		r->resync_due = false; /* held by the pause now: its resume posts them */
		return;
	}
	mrl_ep_rmr_apply_state(ep, r, m);
}

static int rma(struct mrl_rmr *r, int kind, uint64_t off, void *buf, size_t len, void *uctx,
	       const char *fn)
{
	if (unlikely(!r || !buf || !len))
		return mrl_err(EINVAL, "%s: %s", fn, !r ? "NULL rmr" : !buf ? "NULL buffer" : "zero length");
	MRL_CHILD_CHECK(r->peer->ep->ctx, fn);
	struct mrl_ep *ep = r->peer->ep;
	int ret = 0;
	mrl_lock(&ep->lock);
	/* the owner's provider refuses it too, but by dropping the connection */
	unsigned need = kind == OP_WRITE ? MRL_ACCESS_REMOTE_WRITE : MRL_ACCESS_REMOTE_READ;
	if (unlikely(r->access && !(r->access & need))) {
		ret = mrl_err(EACCES, "%s: the owner registered this MR %s", fn,
			      need == MRL_ACCESS_REMOTE_WRITE ? "without remote write" : "without remote read");
		goto out;
	}
	if (unlikely(len > r->len || off > r->len - len)) {
		ret = mrl_err(ERANGE, "%s: %llu+%zu outside the remote MR (%llu bytes)", fn,
			      (unsigned long long)off, len, (unsigned long long)r->len);
		goto out;
	}
	if (unlikely(atomic_load_explicit(&r->ctl, memory_order_relaxed))) {
		if (r->closed) {
			ret = mrl_err(EBADF, "%s: remote MR handle was closed", fn);
			goto out;
		}
		if (r->state == MRL_STATE_FENCED &&
		    (r->cause == MRL_CAUSE_DISCONNECTED || r->cause == MRL_CAUSE_PEER_LOST)) {
			ret = -ENOTCONN;
			goto out;
		}
		if (r->state == MRL_STATE_FENCED || (r->state == MRL_STATE_ACTIVE && off + len > r->valid_len)) {
			ret = -EKEYREVOKED;
			goto out;
		}
	}
	struct mrl_op *op = op_get(ep);
	if (!op) {
		ret = -ENOMEM;
		goto out;
	}
	op->h.kind = (uint8_t)kind;
	op->rmr = r;
	op->off = off;
	op->buf = buf;
	op->len = len;
	op->uctx = uctx;
	if (unlikely(r->state == MRL_STATE_PAUSED)) {
		*r->held_tail = op;
		r->held_tail = &op->next;
		r->nheld++;
		goto out;
	}
	ret = mrl_ep_post_op(ep, op);
	if (ret)
		mrl_ep_op_put(ep, op);
out:
	mrl_unlock(&ep->lock);
	return ret;
}

MRL_EXPORT int mrl_write(mrl_rmr *r, uint64_t off, const void *buf, size_t len, void *uctx)
{
	return rma(r, OP_WRITE, off, (void *)buf, len, uctx, "mrl_write");
}

MRL_EXPORT int mrl_read(mrl_rmr *r, uint64_t off, void *buf, size_t len, void *uctx)
{
	return rma(r, OP_READ, off, buf, len, uctx, "mrl_read");
}

MRL_EXPORT int mrl_ep_poll(mrl_ep *ep, struct mrl_completion *c, int n)
{
	if (!ep || (!c && n > 0) || n < 0)
		return mrl_err(EINVAL, "mrl_ep_poll: %s", !ep ? "NULL ep" : "bad completion array");
	MRL_CHILD_CHECK(ep->ctx, "mrl_ep_poll");
	mrl_lock(&ep->lock);
	mrl_ep_progress_locked(ep);
	int got = 0;
	while (got < n && ep->lcq_n) {
		c[got++] = ep->lcq[ep->lcq_head];
		ep->lcq_head = (ep->lcq_head + 1) % ep->lcq_cap;
		ep->lcq_n--;
	}
	mrl_unlock(&ep->lock);
	return got;
}
