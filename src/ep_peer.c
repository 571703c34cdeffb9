/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The peer side of the control protocol: remote MRs opened on an owner,
 * paused (drained, acked), resumed or fenced by its messages. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ep_int.h"

struct mrl_rmr *mrl_ep_rmr_find(struct mrl_peer *p, uint64_t id)
{
	if (!p->hcap)
		return NULL;
	for (struct mrl_rmr *r = p->hash[id & (p->hcap - 1)]; r; r = r->hnext)
		if (r->id == id && !r->closed)
			return r;
	return NULL;
}

static int rmr_hash_add(struct mrl_peer *p, struct mrl_rmr *r)
{
	if (p->hn + 1 > p->hcap) {
		uint32_t cap = p->hcap ? p->hcap * 2 : 64;
		struct mrl_rmr **h = calloc(cap, sizeof(*h));
		if (!h)
			return -ENOMEM;
		for (uint32_t i = 0; i < p->hcap; i++)
			for (struct mrl_rmr *x = p->hash[i], *n; x; x = n) {
				n = x->hnext;
				x->hnext = h[x->id & (cap - 1)];
				h[x->id & (cap - 1)] = x;
			}
		free(p->hash);
		p->hash = h;
		p->hcap = cap;
	}
	r->hnext = p->hash[r->id & (p->hcap - 1)];
	p->hash[r->id & (p->hcap - 1)] = r;
	p->hn++;
	return 0;
}

static void rmr_hash_del(struct mrl_peer *p, struct mrl_rmr *r)
{
	for (struct mrl_rmr **pp = &p->hash[r->id & (p->hcap - 1)]; *pp; pp = &(*pp)->hnext)
		if (*pp == r) {
			*pp = r->hnext;
			p->hn--;
			return;
		}
}

/* A paused MR posts nothing new (its operations are held), so one found
 * drained stays so: each check starts where the last one stopped (a pause
 * of 10,000 MRs is not rescanned on every completion). */
static bool pause_drained(struct pause_rec *pr)
{
	while (pr->drained < pr->n && !pr->rmrs[pr->drained]->inflight)
		pr->drained++;
	return pr->drained == pr->n;
}

/* Ack every pause whose MRs have drained. This runs while a batch of
 * completions is being handled (a PAUSE message, an operation's end): a send
 * that waited for room here, driving progress, would wait for completions
 * that sit later in that very batch (the owner acked the writes in the same
 * breath as it paused), and progress it drove could come back here for the
 * same record. So the ack is tried once; a full queue leaves the record in
 * place and progress tries again once the batch is handled (acks_owed). A
 * record leaves the list only once its ack is out (or cannot go at all: the
 * owner then times the peer out, the safe side): one ack per pause. */
void mrl_ep_pause_check(struct mrl_ep *ep, struct mrl_peer *p)
{
	for (struct pause_rec **pp = &p->pauses; *pp && !p->dead;) {
		struct pause_rec *pr = *pp;
		if (!pause_drained(pr)) {
			pp = &pr->next;
			continue;
		}
		struct msg_hdr a;
		mrl_ep_init_hdr(&a, MSG_PAUSE_ACK, sizeof(a), pr->seq);
		int ret = mrl_ep_send_nowait_locked(ep, p, &a, sizeof(a));
		if (ret == -EAGAIN) {
			ep->acks_owed = true;
			return;
		}
		*pp = pr->next;
		for (uint32_t i = 0; i < pr->n; i++)
			pr->rmrs[i]->draining--;
		free(pr->rmrs);
		free(pr);
		if (ret == 0)
			ep->pause_acks_out++;
	}
}

static void rmr_hold(struct mrl_ep *ep, struct mrl_rmr *r)
{
	r->state = MRL_STATE_PAUSED;
	atomic_store_explicit(&r->ctl, RMR_SLOW, memory_order_release);
	/* ops waiting for send-queue room are not in flight yet: hold them */
	for (struct mrl_op **pp = &ep->backlog; *pp;) {
		struct mrl_op *op = *pp;
		if (op->rmr != r) {
			pp = &op->next;
			continue;
		}
		*pp = op->next;
		op->next = NULL;
		*r->held_tail = op;
		r->held_tail = &op->next;
		r->nheld++;
	}
	ep->backlog_tail = &ep->backlog;
	while (*ep->backlog_tail)
		ep->backlog_tail = &(*ep->backlog_tail)->next;
}

void mrl_ep_peer_pause(struct mrl_ep *ep, struct mrl_peer *p, const struct msg_pause *m)
{
	/* (runs checked by mrl_pause_valid: total is their sum, bounded) */
	struct pause_rec *pr = calloc(1, sizeof(*pr));
	if (pr)
		pr->rmrs = calloc(m->total ? m->total : 1, sizeof(*pr->rmrs));
	if (!pr || !pr->rmrs) {
		free(pr);
		return; /* the owner times us out and cuts us off: safe */
	}
	pr->seq = m->h.req;
	ep->pauses_in++;
	for (uint32_t i = 0; i < m->n; i++)
		for (uint64_t id = m->runs[i].first, end = id + m->runs[i].n; id != end; id++) {
			struct mrl_rmr *r = mrl_ep_rmr_find(p, id);
			if (!r || r->state == MRL_STATE_FENCED)
				continue;
			rmr_hold(ep, r);
			r->draining++;
			pr->rmrs[pr->n++] = r;
		}
	pr->next = p->pauses;
	p->pauses = pr;
	mrl_ep_pause_check(ep, p);
}

void mrl_ep_rmr_fail_held(struct mrl_ep *ep, struct mrl_rmr *r, int status)
{
	while (r->held) {
		struct mrl_op *op = r->held;
		r->held = op->next;
		r->nheld--;
		mrl_ep_fail_op(ep, op, status, r->cause);
	}
	r->held_tail = &r->held;
}

/* Post what r held, in order; what lies past the bytes it still serves
 * fails with its cause. */
void mrl_ep_rmr_post_held(struct mrl_ep *ep, struct mrl_rmr *r)
{
	struct mrl_op *op = r->held;
	r->held = NULL;
	r->held_tail = &r->held;
	r->nheld = 0;
	while (op) {
		struct mrl_op *n = op->next;
		op->next = NULL;
		if (op->off + op->len > r->valid_len)
			mrl_ep_fail_op(ep, op, -EKEYREVOKED, r->cause);
		else if (mrl_ep_post_op(ep, op))
			mrl_ep_fail_op(ep, op, -EIO, MRL_CAUSE_NONE);
		op = n;
	}
}

void mrl_ep_rmr_apply_state(struct mrl_ep *ep, struct mrl_rmr *r, const struct msg_state *m)
{
	r->resync_due = false; /* the owner's word on it: what a drop held may go (ep_rma.c) */
	r->gen = m->gen;
	r->cause = m->cause;
	r->key = m->key;
	r->base = m->base;
	if (m->state == MRL_STATE_ACTIVE) {
		r->state = MRL_STATE_ACTIVE;
		r->valid_len = m->valid_len < r->len ? m->valid_len : r->len;
		atomic_store_explicit(&r->ctl, r->valid_len == r->len ? 0 : RMR_SLOW,
				      memory_order_release);
		mrl_ep_rmr_post_held(ep, r); /* resume */
	} else if (m->state == MRL_STATE_PAUSED) {
		rmr_hold(ep, r);
		r->valid_len = m->valid_len;
	} else {
		r->state = MRL_STATE_FENCED;
		r->valid_len = 0;
		/* cut off: the owner stopped waiting for this peer's ack, so what
		 * is still in flight may reach the tombstone (failed, not done) */
		r->cut |= m->cause == MRL_CAUSE_PEER_TIMEOUT;
		r->seen_after |= (m->flags & MRL_SF_AFTER) != 0;
		atomic_store_explicit(&r->ctl, RMR_SLOW, memory_order_release);
		mrl_ep_rmr_fail_held(ep, r, -EKEYREVOKED);
	}
}

/* Runs of MRs to a new state (checked by mrl_state_runs_valid): each keeps
 * its key and serves its whole length, or nothing once fenced. */
void mrl_ep_peer_state_runs(struct mrl_ep *ep, struct mrl_peer *p, const struct msg_state_runs *m)
{
	for (uint32_t i = 0; i < m->n; i++) {
		const struct state_run *run = &m->r[i];
		bool serving = run->state == MRL_STATE_ACTIVE || run->state == MRL_STATE_PAUSED;
		for (uint64_t id = run->first, end = id + run->n; id != end; id++) {
			struct mrl_rmr *r = mrl_ep_rmr_find(p, id);
			if (!r)
				continue;
			struct msg_state one = {.state = run->state, .cause = run->cause, .id = id,
						.key = r->key, .base = r->base, .len = r->len,
						.valid_len = serving ? r->len : 0, .gen = run->gen,
						.flags = run->flags};
			mrl_ep_rmr_apply_state(ep, r, &one);
		}
	}
}

/* Send a request and drive progress until its answer arrives. */
static int request(struct mrl_peer *p, void *msg, size_t len, int timeout_ms, void *reply)
{
	struct mrl_ep *ep = p->ep;
	struct waiter *w = calloc(1, sizeof(*w));
	int ret;
	if (!w)
		return -ENOMEM;
	mrl_lock(&ep->lock);
	if (p->dead) {
		mrl_unlock(&ep->lock);
		free(w);
		return mrl_err(ENOTCONN, "peer %u is disconnected", p->idx);
	}
	w->req = ++ep->next_req;
	if (!w->req) /* 0 marks a probe after a drop (mrl_ep_retry_probe) */
		w->req = ++ep->next_req;
	w->peer = p;
	((struct msg_hdr *)msg)->req = w->req;
	w->next = ep->waiters;
	ep->waiters = w;
	ret = mrl_ep_send_locked(ep, p, msg, len);
	uint64_t until = mrl_now_ns() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 5000) * 1000000ull;
	while (!ret && !w->done) {
		mrl_ep_progress_locked(ep);
		if (w->done)
			break;
		if (p->dead)
			ret = mrl_err(ENOTCONN, "peer %u disconnected", p->idx);
		else if (mrl_now_ns() > until)
			ret = mrl_err(ETIMEDOUT, "peer %u did not answer", p->idx);
		else {
			mrl_unlock(&ep->lock);
			usleep(50);
			mrl_lock(&ep->lock);
		}
	}
	if (!ret)
		memcpy(reply, w->msg, MRL_MSG_MAX);
	for (struct waiter **pp = &ep->waiters; *pp; pp = &(*pp)->next)
		if (*pp == w) {
			*pp = w->next;
			break;
		}
	mrl_unlock(&ep->lock);
	free(w);
	return ret;
}

union list_rep {
	struct msg_list_rep r;
	unsigned char raw[MRL_MSG_MAX];
};

/* Ask the owner for its MR ids from start on; the answer in *u. */
static int list_req(struct mrl_peer *p, uint32_t start, int timeout_ms, union list_rep *u)
{
	struct msg_list_req q;
	memset(&q, 0, sizeof(q));
	mrl_ep_init_hdr(&q.h, MSG_LIST_REQ, sizeof(q), 0);
	q.start = start;
	return request(p, &q, sizeof(q), timeout_ms, u);
}

MRL_EXPORT int mrl_peer_list(mrl_peer *p, mrl_mr_t *ids, size_t max, int timeout_ms)
{
	if (!p || (!ids && max))
		return mrl_err(EINVAL, "mrl_peer_list: NULL %s", !p ? "peer" : "ids");
	MRL_CHILD_CHECK(p->ep->ctx, "mrl_peer_list");
	size_t n = 0;
	uint32_t start = 0;
	do {
		union list_rep u;
		int ret = list_req(p, start, timeout_ms, &u);
		if (ret)
			return ret;
		if (u.r.n > MRL_LIST_IDS)
			return mrl_err(EPROTO, "mrl_peer_list: malformed reply");
		for (uint32_t i = 0; i < u.r.n; i++, n++)
			if (n < max)
				ids[n] = u.r.ids[i];
		if (u.r.next && u.r.next <= start)
			return mrl_err(EPROTO, "mrl_peer_list: reply does not advance");
		start = u.r.next;
	} while (start);
	return (int)(n > INT32_MAX ? INT32_MAX : n);
}

MRL_EXPORT int mrl_rmr_open(mrl_peer *p, mrl_mr_t id, int timeout_ms, mrl_rmr **out)
{
	if (!p || !out)
		return mrl_err(EINVAL, "mrl_rmr_open: NULL %s", !p ? "peer" : "out");
	MRL_CHILD_CHECK(p->ep->ctx, "mrl_rmr_open");
	*out = NULL;
	if (!id)
		return mrl_err(EINVAL, "mrl_rmr_open: MR id 0 is never valid");
	struct msg_id q;
	union {
		struct msg_state s;
		unsigned char raw[MRL_MSG_MAX];
	} u;
	memset(&q, 0, sizeof(q));
	mrl_ep_init_hdr(&q.h, MSG_OPEN_REQ, sizeof(q), 0);
	q.id = id;
	struct mrl_rmr *r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->peer = p;
	r->id = id;
	r->held_tail = &r->held;
	r->state = MRL_STATE_PAUSED; /* hold anything until the answer is in */
	atomic_store(&r->ctl, RMR_SLOW);
	/* Register before asking so a STATE racing the reply finds it. */
	mrl_lock(&p->ep->lock);
	if (mrl_ep_rmr_find(p, id)) {
		mrl_unlock(&p->ep->lock);
		free(r);
		return mrl_err(EEXIST, "mrl_rmr_open: MR %#llx is already open on this peer",
			       (unsigned long long)id);
	}
	int ret = rmr_hash_add(p, r);
	if (ret) {
		mrl_unlock(&p->ep->lock);
		free(r);
		return ret;
	}
	r->next = p->rmrs;
	p->rmrs = r;
	mrl_unlock(&p->ep->lock);
	ret = request(p, &q, sizeof(q), timeout_ms, &u);
	mrl_lock(&p->ep->lock);
	if (!ret && u.s.status)
		ret = mrl_err(u.s.status, "mrl_rmr_open: owner refused MR %#llx: %s",
			      (unsigned long long)id, strerror(-u.s.status));
	if (!ret && (u.s.state < MRL_STATE_ACTIVE || u.s.state > MRL_STATE_DEREGISTERED ||
		     u.s.valid_len > u.s.len || !u.s.len))
		ret = mrl_err(EPROTO, "mrl_rmr_open: malformed reply");
	if (ret) {
		rmr_hash_del(p, r);
		r->closed = true;
		mrl_unlock(&p->ep->lock);
		return ret;
	}
	r->len = u.s.len;
	r->access = u.s.access;
	mrl_ep_rmr_apply_state(p->ep, r, &u.s);
	mrl_unlock(&p->ep->lock);
	*out = r;
	return 0;
}

MRL_EXPORT int mrl_rmr_close(mrl_rmr *r)
{
	if (!r)
		return mrl_err(EINVAL, "mrl_rmr_close: NULL rmr");
	MRL_CHILD_CHECK(r->peer->ep->ctx, "mrl_rmr_close");
	struct mrl_ep *ep = r->peer->ep;
	mrl_lock(&ep->lock);
	if (r->closed) {
		mrl_unlock(&ep->lock);
		return mrl_err(EBADF, "mrl_rmr_close: already closed");
	}
	if (r->inflight) {
		mrl_unlock(&ep->lock);
		return mrl_err(EBUSY, "mrl_rmr_close: %llu operations in flight",
			       (unsigned long long)r->inflight);
	}
	mrl_ep_rmr_fail_held(ep, r, -ECANCELED);
	rmr_hash_del(r->peer, r);
	r->closed = true;
	atomic_store(&r->ctl, RMR_SLOW);
	bool sent = false;
	if (!r->peer->dead) {
		struct msg_id m;
		memset(&m, 0, sizeof(m));
		mrl_ep_init_hdr(&m.h, MSG_CLOSE, sizeof(m), 0);
		m.id = r->id;
		sent = mrl_ep_send_locked(ep, r->peer, &m, sizeof(m)) == 0;
	}
	mrl_unlock(&ep->lock);
	if (sent) {
		/* Until the owner has read it, it counts this peer among the MR's
		 * holders, and deregistering or fencing the MR waits for this
		 * peer to drain it (brk.c): a thread that closes and then has the
		 * MR deregistered in this process would wait for itself. So wait
		 * (briefly, best effort) for an answer the owner sends after
		 * reading it: a list request past its table's end. */
		union list_rep u;
		if (list_req(r->peer, UINT32_MAX, 2000, &u))
			mrl_log("mrl_rmr_close: the owner did not confirm (%s)", mrl_last_error());
	}
	return 0;
}

MRL_EXPORT int mrl_rmr_query(mrl_rmr *r, struct mrl_rmr_info *info)
{
	if (!r || !info)
		return mrl_err(EINVAL, "mrl_rmr_query: NULL %s", !r ? "rmr" : "info");
	MRL_CHILD_CHECK(r->peer->ep->ctx, "mrl_rmr_query");
	/* (flags came later: a caller built before them gets the rest) */
	size_t size = info->size;
	if (size < offsetof(struct mrl_rmr_info, flags))
		return mrl_err(EINVAL, "mrl_rmr_query: info->size %zu too small", info->size);
	if (size > sizeof(*info))
		size = sizeof(*info);
	struct mrl_ep *ep = r->peer->ep;
	mrl_lock(&ep->lock);
	memset(info, 0, size);
	info->size = size;
	info->state = r->closed ? MRL_STATE_DEREGISTERED : r->state;
	info->generation = r->gen;
	info->cause = r->cause;
	info->length = r->len;
	info->valid_length = r->valid_len;
	info->key = r->key;
	info->held = r->nheld;
	info->inflight = r->inflight;
	if (size >= offsetof(struct mrl_rmr_info, flags) + sizeof(info->flags))
		info->flags = r->seen_after ? MRL_RMR_SEEN_AFTER : 0;
	mrl_unlock(&ep->lock);
	return 0;
}
