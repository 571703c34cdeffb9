/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The endpoint: create and destroy, progress (the caller's, the monitor's,
 * the progress thread's), CQ entries and control messages in, messages out. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_errno.h>

#include "ep_int.h"
#include "fabric.h"

#define NRECV 64

/* ---- sending control messages ---- */

/* mrl_outbox_forget: messages to this endpoint's peers */
static bool peer_of_ep(struct mrl_tpeer *tp, void *ep)
{
	return tp && ((struct mrl_peer *)tp)->ep == ep;
}

static int send_one(struct mrl_ep *ep, struct mrl_peer *p, void *msg, size_t len, uint64_t wait_ns);

/* The native data path as the core's transport (mrl_transport_ops): a
 * control message from the outbox. Waiting: up to send_one's 2 s for room.
 * Not waiting (the monitor): -EAGAIN at once when another thread has the
 * endpoint or the provider's queue is full. */
static int ep_transport_send(struct mrl_tpeer *tp, const void *msg, size_t len, bool wait)
{
	struct mrl_peer *peer = (struct mrl_peer *)tp; /* tp is its first member */
	unsigned char buf[MRL_MSG_MAX];
	if (len > sizeof(buf))
		return -EMSGSIZE;
	memcpy(buf, msg, len);
	if (!wait && pthread_mutex_trylock(&peer->ep->lock))
		return -EAGAIN;
	if (wait)
		mrl_lock(&peer->ep->lock);
	int ret = peer->dead ? -ENOTCONN : send_one(peer->ep, peer, buf, len, wait ? 2000000000ull : 0);
	mrl_unlock(&peer->ep->lock);
	return ret;
}

const struct mrl_transport_ops mrl_ep_transport = {
	.name = "native",
	.send = ep_transport_send,
};

/* tests: a raw control message, as any peer could send */
int mrl_ep_send_raw(struct mrl_peer *peer, const void *msg, size_t len)
{
	return ep_transport_send(&peer->tp, msg, len, true);
}

/* Tests: a send queue that has room only while no RMA operation is in
 * flight, as a queue full of writes does; tcp;ofi_rxm queues small control
 * messages itself and never reports it full. */
bool mrl_ep_test_full_txq;

int mrl_ep_send_locked(struct mrl_ep *ep, struct mrl_peer *p, void *msg, size_t len)
{
	return send_one(ep, p, msg, len, 2000000000ull);
}

int mrl_ep_send_nowait_locked(struct mrl_ep *ep, struct mrl_peer *p, void *msg, size_t len)
{
	return send_one(ep, p, msg, len, 0);
}

/* Send, driving progress while the queue is full, for up to wait_ns (0:
 * one try, -EAGAIN if the queue is full). */
static int send_one(struct mrl_ep *ep, struct mrl_peer *p, void *msg, size_t len, uint64_t wait_ns)
{
	struct msg_hdr *h = msg;
	h->magic = MRL_MAGIC;
	h->len = (uint16_t)len;
	h->peer = p->remote_idx;
	/* numbered and tagged once: a retry below sends the same message */
	int sret = mrl_auth_seal(p, msg, len);
	if (sret)
		return sret;
	uint64_t until = mrl_now_ns() + wait_ns;
	struct mrl_sbuf *sb = NULL;
	if (len > ep->inject_size) {
		if (!(sb = malloc(sizeof(*sb))))
			return -ENOMEM;
		sb->h.kind = OP_SEND;
		memcpy(sb->data, msg, len);
	}
	for (;;) {
		mrl_sb_precheck(ep->ctx);
		pthread_rwlock_rdlock(&ep->ctx->fab->gate); /* a send may drive progress */
		ssize_t ret = unlikely(mrl_ep_test_full_txq) && ep->inflight.inext != &ep->inflight
				      ? -FI_EAGAIN
			      : sb ? fi_send(ep->ep, sb->data, len, NULL, p->addr, &sb->h.fictx)
				   : fi_inject(ep->ep, msg, len, p->addr);
		pthread_rwlock_unlock(&ep->ctx->fab->gate);
		if (ret == 0) {
			if (sb) { /* ep->lock held: the completion unlinks it */
				sb->prev = NULL;
				sb->next = ep->sbufs;
				if (ep->sbufs)
					ep->sbufs->prev = sb;
				ep->sbufs = sb;
			}
			return 0;
		}
		if (ret == -FI_EAGAIN && !wait_ns) {
			free(sb);
			return -EAGAIN;
		}
		if (ret != -FI_EAGAIN || mrl_now_ns() > until) {
			free(sb);
			return mrl_err((int)ret, "control message to peer %u: %s", p->idx,
				       fi_strerror((int)-ret));
		}
		mrl_ep_progress_locked(ep);
	}
}

void mrl_ep_init_hdr(struct msg_hdr *h, int type, size_t len, uint32_t req)
{
	memset(h, 0, sizeof(*h));
	h->magic = MRL_MAGIC;
	h->type = (uint8_t)type;
	h->len = (uint16_t)len;
	h->req = req;
}

/* The peer is gone (cause DISCONNECTED: its bootstrap socket hung up or we
 * are closing; PEER_LOST: the keep-alive heard nothing): everything to it
 * fails with the cause, and an owner lets go of its holds. */
static void peer_dead(struct mrl_ep *ep, struct mrl_peer *p, uint8_t cause)
{
	if (p->dead)
		return;
	p->dead = true;
	for (struct mrl_rmr *r = p->rmrs; r; r = r->next) {
		if (r->state == MRL_STATE_FENCED)
			continue;
		r->state = MRL_STATE_FENCED;
		r->cause = cause;
		atomic_store_explicit(&r->ctl, RMR_SLOW, memory_order_release);
		mrl_ep_rmr_fail_held(ep, r, -ENOTCONN);
	}
	/* the provider may never report what was in flight to a dead peer:
	 * report it now, and keep the op until the provider lets go of it */
	for (struct mrl_op *op = ep->inflight.inext; op != &ep->inflight; op = op->inext) {
		if (op->orphan || op->rmr->peer != p)
			continue;
		op->orphan = true;
		op->rmr->inflight--;
		mrl_ep_lcq_push(ep, op->uctx, -ENOTCONN, cause, op->gen);
	}
	for (struct mrl_op **pp = &ep->backlog; *pp;) {
		struct mrl_op *op = *pp;
		if (op->rmr->peer != p) {
			pp = &op->next;
			continue;
		}
		*pp = op->next;
		mrl_ep_fail_op(ep, op, -ENOTCONN, cause);
	}
	ep->backlog_tail = &ep->backlog;
	while (*ep->backlog_tail)
		ep->backlog_tail = &(*ep->backlog_tail)->next;
	while (p->pauses) {
		struct pause_rec *pr = p->pauses;
		p->pauses = pr->next;
		free(pr->rmrs);
		free(pr);
	}
	mrl_lock(&ep->ctx->lock);
	mrl_peer_release_holders(ep->ctx, p);
	mrl_unlock(&ep->ctx->lock);
	if (!atomic_load(&ep->stop)) /* the application is told (not as it destroys the endpoint) */
		mrl_post_peer_event(ep->ctx, p, cause, mrl_now_ns());
	mrl_wake_monitor(ep->ctx);
}

/* A peer entry whose handshake failed: nothing refers to it yet (no MR
 * holds it, it sent nothing), so it goes at once. */
void mrl_ep_peer_free_locked(struct mrl_ep *ep, struct mrl_peer *p)
{
	if (p->addr != FI_ADDR_NOTAVAIL)
		fi_av_remove(ep->av, &p->addr, 1, 0);
	ep->peers[p->idx] = NULL;
	if (p->idx + 1 == ep->npeers)
		ep->npeers--;
	free(p->hash);
	mrl_auth_peer_free(p);
	explicit_bzero(p, sizeof(*p));
	free(p);
}

/* ---- receiving ---- */

static size_t msg_min_len(int type)
{
	switch (type) {
	case MSG_OPEN_REQ:
	case MSG_CLOSE: return sizeof(struct msg_id);
	case MSG_OPEN_REP:
	case MSG_STATE: return sizeof(struct msg_state);
	case MSG_LIST_REQ: return sizeof(struct msg_list_req);
	case MSG_LIST_REP: return sizeof(struct msg_list_rep);
	case MSG_PAUSE: return offsetof(struct msg_pause, runs);
	case MSG_PAUSE_ACK:
	case MSG_PING:
	case MSG_PONG: return sizeof(struct msg_hdr);
	case MSG_STATES: return offsetof(struct msg_states, e);
	case MSG_STATE_RUNS: return offsetof(struct msg_state_runs, r);
	default: return SIZE_MAX;
	}
}

/* A PAUSE's runs: within the message, none empty or wrapping past the
 * last id, their lengths summing to its total, the total bounded. */
bool mrl_pause_valid(const struct msg_pause *m, size_t len)
{
	if (m->n > MRL_PAUSE_RUNS || len != offsetof(struct msg_pause, runs) + m->n * sizeof(m->runs[0]) ||
	    m->total > MRL_PAUSE_MAX_IDS)
		return false;
	uint64_t sum = 0;
	for (uint32_t i = 0; i < m->n; i++) {
		const struct pause_run *r = &m->runs[i];
		if (!r->n || r->first + r->n - 1 < r->first)
			return false;
		sum += r->n;
	}
	return sum == m->total;
}

/* STATE_RUNS: within the message, each run non-empty, not wrapping, its
 * state and cause in range, all runs together bounded as a PAUSE's. */
bool mrl_state_runs_valid(const struct msg_state_runs *m, size_t len)
{
	if (m->n > MRL_STATE_RUNS_MAX || len != offsetof(struct msg_state_runs, r) + m->n * sizeof(m->r[0]))
		return false;
	uint64_t sum = 0;
	for (uint32_t i = 0; i < m->n; i++) {
		const struct state_run *r = &m->r[i];
		if (!r->n || r->first + r->n - 1 < r->first || r->state < MRL_STATE_ACTIVE ||
		    r->state > MRL_STATE_DEREGISTERED || r->cause >= MRL_CAUSE_MAX)
			return false;
		sum += r->n;
	}
	return sum <= MRL_PAUSE_MAX_IDS;
}

/* A malformed, forged or replayed control message is dropped, counted
 * (mrl_stats.bad_msgs) and logged. Every field is checked. */
static void bad_msg(struct mrl_ep *ep, size_t len, const char *why)
{
	ep->bad_msgs++;
	mrl_lock(&ep->ctx->lock);
	ep->ctx->st.bad_msgs++;
	mrl_unlock(&ep->ctx->lock);
	mrl_log("dropped a control message (%zu bytes): %s", len, why);
}

/* A control message, ep->lock held. The header's peer index only says
 * which connection's key to try: the tag decides who sent it, so a message
 * naming a peer it does not come from is dropped here. */
void mrl_ep_handle_msg(struct mrl_ep *ep, const unsigned char *buf, size_t len)
{
	const struct msg_hdr *h = (const void *)buf;
	if (len < sizeof(*h) || h->magic != MRL_MAGIC || h->len != len) {
		bad_msg(ep, len, "malformed header");
		return;
	}
	if (h->peer >= ep->npeers || !ep->peers[h->peer] || ep->peers[h->peer]->dead) {
		bad_msg(ep, len, "no such peer");
		return;
	}
	struct mrl_peer *p = ep->peers[h->peer];
	int ar = mrl_auth_open(p, buf, len);
	if (ar) {
		bad_msg(ep, len, ar == -EALREADY ? "a replay" : "not from the peer it names (forged)");
		return;
	}
	if (msg_min_len(h->type) > len) {
		bad_msg(ep, len, "malformed");
		return;
	}
	mrl_ep_dispatch(ep, p, buf, len);
}

/* An authenticated message from p: act on it. */
void mrl_ep_dispatch(struct mrl_ep *ep, struct mrl_peer *p, const unsigned char *buf, size_t len)
{
	const struct msg_hdr *h = (const void *)buf;
	p->heard = true; /* any message is a sign of life; the keep-alive check stamps it */
	switch (h->type) {
	case MSG_PING: {
		struct msg_hdr pong;
		mrl_ep_init_hdr(&pong, MSG_PONG, sizeof(pong), h->req);
		/* not waiting: a full queue now means the answer would come
		 * late anyway, and the asker asks again */
		send_one(ep, p, &pong, sizeof(pong), 0);
		break;
	}
	case MSG_PONG:
		break;
	case MSG_OPEN_REQ:
		mrl_ep_owner_open(ep, p, (const void *)buf);
		break;
	case MSG_CLOSE:
		mrl_ep_owner_close(ep, p, (const void *)buf);
		break;
	case MSG_LIST_REQ:
		mrl_ep_owner_list(ep, p, (const void *)buf);
		break;
	case MSG_PAUSE_ACK:
		ep->pause_acks_in++;
		mrl_lock(&ep->ctx->lock);
		mrl_brk_ack(ep->ctx, &p->tp, h->req);
		mrl_unlock(&ep->ctx->lock);
		mrl_wake_monitor(ep->ctx); /* it sends what the release queued */
		break;
	case MSG_PAUSE: {
		const struct msg_pause *m = (const void *)buf;
		if (!mrl_pause_valid(m, len)) {
			bad_msg(ep, len, "malformed PAUSE");
			return;
		}
		mrl_ep_peer_pause(ep, p, m);
		break;
	}
	case MSG_STATE: {
		const struct msg_state *m = (const void *)buf;
		struct mrl_rmr *r = mrl_ep_rmr_find(p, m->id);
		if (r && m->state >= MRL_STATE_ACTIVE && m->state <= MRL_STATE_DEREGISTERED &&
		    m->cause < MRL_CAUSE_MAX)
			mrl_ep_rmr_apply_state(ep, r, m);
		break;
	}
	case MSG_STATES: {
		const struct msg_states *m = (const void *)buf;
		if (m->n > MRL_STATES_MAX || len < offsetof(struct msg_states, e) + m->n * sizeof(m->e[0])) {
			bad_msg(ep, len, "malformed STATES");
			return;
		}
		for (uint32_t i = 0; i < m->n; i++) {
			const struct state_ent *e = &m->e[i];
			struct mrl_rmr *r = mrl_ep_rmr_find(p, e->id);
			if (!r || e->state < MRL_STATE_ACTIVE || e->state > MRL_STATE_DEREGISTERED ||
			    e->cause >= MRL_CAUSE_MAX)
				continue;
			struct msg_state one = {.state = e->state, .cause = e->cause, .id = e->id,
						.key = e->key, .base = r->base, .len = r->len,
						.valid_len = e->valid_len, .gen = e->gen, .flags = e->flags};
			mrl_ep_rmr_apply_state(ep, r, &one);
		}
		break;
	}
	case MSG_STATE_RUNS: {
		const struct msg_state_runs *m = (const void *)buf;
		if (!mrl_state_runs_valid(m, len)) {
			bad_msg(ep, len, "malformed STATE_RUNS");
			return;
		}
		mrl_ep_peer_state_runs(ep, p, m);
		break;
	}
	case MSG_OPEN_REP:
		if (!h->req) { /* not asked by a waiter: a probe after a drop */
			mrl_ep_resync_reply(ep, p, (const void *)buf);
			break;
		}
		/* fall through */
	case MSG_LIST_REP:
		/* an answer only from the peer asked */
		for (struct waiter *w = ep->waiters; w; w = w->next)
			if (w->req == h->req && w->peer == p && !w->done) {
				memcpy(w->msg, buf, len);
				w->done = true;
			}
		break;
	}
	mrl_ep_retry_flush(ep, p);
}

static void handle_cqe(struct mrl_ep *ep, void *ctxp, size_t len, int err)
{
	struct op_head *oh = ctxp;
	if (!oh)
		return;
	if (oh->kind == OP_SEND) {
		struct mrl_sbuf *sb = (struct mrl_sbuf *)oh;
		*(sb->prev ? &sb->prev->next : &ep->sbufs) = sb->next;
		if (sb->next)
			sb->next->prev = sb->prev;
		free(sb);
		return;
	}
	if (oh->kind == OP_RECV) {
		struct mrl_rbuf *rb = (struct mrl_rbuf *)oh;
		if (!err)
			mrl_ep_handle_msg(ep, rb->data, len);
		if (!atomic_load(&ep->stop)) {
			pthread_rwlock_rdlock(&ep->ctx->fab->gate);
			fi_recv(ep->ep, rb->data, sizeof(rb->data), NULL, FI_ADDR_UNSPEC, &rb->h.fictx);
			pthread_rwlock_unlock(&ep->ctx->fab->gate);
		}
		return;
	}
	struct mrl_op *op = (struct mrl_op *)oh;
	mrl_ep_inflight_del(op);
	if (op->orphan) { /* reported when its peer died */
		mrl_ep_op_put(ep, op);
		return;
	}
	mrl_ep_op_done(ep, op, err);
}

/* Keep-alive, ep->lock held: stamp who was heard since the last check, ask
 * the quiet ones for a sign of life, and declare lost those silent past the
 * timeout. Runs every quarter of the interval, so silence is measured to
 * that resolution. */
static void ka_check(struct mrl_ep *ep, uint64_t now)
{
	uint64_t step = (ep->ka_ns < ep->ka_timeout_ns ? ep->ka_ns : ep->ka_timeout_ns) / 4;
	ep->ka_next_ns = now + (step ? step : 1);
	for (uint32_t i = 0; i < ep->npeers; i++) {
		struct mrl_peer *p = ep->peers[i];
		if (!p || p->dead)
			continue;
		if (p->heard) {
			p->heard = false;
			p->last_rx_ns = now;
		}
		uint64_t quiet = now > p->last_rx_ns ? now - p->last_rx_ns : 0;
		if (quiet >= ep->ka_timeout_ns) {
			ep->peers_lost++;
			mrl_log("peer %u lost: nothing heard for %llu ms", p->idx,
				(unsigned long long)(quiet / 1000000));
			peer_dead(ep, p, MRL_CAUSE_PEER_LOST);
			continue;
		}
		if (quiet >= ep->ka_ns && now - p->ping_ns >= ep->ka_ns) {
			struct msg_hdr ping;
			mrl_ep_init_hdr(&ping, MSG_PING, sizeof(ping), 0);
			if (send_one(ep, p, &ping, sizeof(ping), 0) == 0)
				p->ping_ns = now;
		}
	}
}

static void check_peers(struct mrl_ep *ep)
{
	/* the bootstrap socket stays open as the liveness channel: RDHUP means
	 * the other side's process is gone (data left in it does not hide that) */
	for (uint32_t i = 0; i < ep->npeers; i++) {
		struct mrl_peer *p = ep->peers[i];
		if (!p || p->dead)
			continue;
		struct pollfd pfd = {.fd = p->sock, .events = POLLRDHUP};
		if (poll(&pfd, 1, 0) > 0 && (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR)))
			peer_dead(ep, p, MRL_CAUSE_DISCONNECTED);
	}
}

int mrl_ep_progress_locked(struct mrl_ep *ep)
{
	struct fi_cq_msg_entry e[16];
	int got = 0;
	/* the provider copies peers' data into and out of MRs as it
	 * progresses: what lies past a file's new end goes to scratch first */
	mrl_sb_precheck(ep->ctx);
	for (;;) {
		pthread_rwlock_rdlock(&ep->ctx->fab->gate);
		ssize_t n = fi_cq_read(ep->cq, e, ARRAY_SIZE(e));
		pthread_rwlock_unlock(&ep->ctx->fab->gate);
		if (n > 0) {
			for (ssize_t i = 0; i < n; i++)
				handle_cqe(ep, e[i].op_context, e[i].len, 0);
			got += (int)n;
			/* a short read drained the CQ: another read would only run
			 * the provider's progress again for nothing (with rxm that
			 * doubled the cost of every poll) */
			if (n < (ssize_t)ARRAY_SIZE(e))
				break;
			continue;
		}
		if (n == -FI_EAVAIL) {
			struct fi_cq_err_entry ee;
			memset(&ee, 0, sizeof(ee));
			pthread_rwlock_rdlock(&ep->ctx->fab->gate);
			ssize_t got_err = fi_cq_readerr(ep->cq, &ee, 0);
			pthread_rwlock_unlock(&ep->ctx->fab->gate);
			if (got_err > 0) {
				handle_cqe(ep, ee.op_context, ee.len, ee.err ? ee.err : EIO);
				got++;
			}
			continue;
		}
		break;
	}
	while (ep->backlog) {
		struct mrl_op *op = ep->backlog;
		ep->backlog = op->next;
		if (!ep->backlog)
			ep->backlog_tail = &ep->backlog;
		op->next = NULL;
		int r = mrl_ep_post_op_now(ep, op);
		if (r == -FI_EAGAIN) { /* still no room: back to the head, in order */
			op->next = ep->backlog;
			ep->backlog = op;
			if (!op->next)
				ep->backlog_tail = &op->next;
			break;
		}
		if (r)
			mrl_ep_fail_op(ep, op, -EIO, MRL_CAUSE_NONE);
	}
	if (ep->acks_owed) { /* the batch is handled: the completions they waited for too */
		ep->acks_owed = false;
		for (uint32_t i = 0; i < ep->npeers; i++)
			if (ep->peers[i] && !ep->peers[i]->dead && ep->peers[i]->pauses)
				mrl_ep_pause_check(ep, ep->peers[i]);
	}
	if (ep->probes_due)
		mrl_ep_retry_probe(ep);
	if (unlikely(ep->resync_any))
		mrl_ep_resync_tick(ep);
	if ((++ep->polls & 1023) == 0)
		check_peers(ep);
	if (ep->ka_ns) {
		/* after the CQ is drained: what waited in it counts as heard */
		uint64_t now = mrl_now_ns();
		if (now >= ep->ka_next_ns)
			ka_check(ep, now);
	}
	return got;
}

/* While a break waits for pause acks the monitor drives progress itself:
 * the application's only progress thread may be the one blocked in the
 * change (its own ftruncate seen by fanotify). Endpoints busy in another
 * thread are skipped: that thread is making progress already. */
void mrl_ep_progress_all(struct mrl_ctx *ctx)
{
	struct mrl_ep *eps[32];
	size_t n = 0;
	/* flush_lock keeps mrl_ep_destroy out. The monitor never waits for it
	 * or an endpoint: a thread holding one is sending, so progressing */
	if (pthread_mutex_trylock(&ctx->flush_lock))
		return;
	mrl_lock(&ctx->lock);
	for (struct mrl_ep *ep = ctx->eps; ep && n < ARRAY_SIZE(eps); ep = ep->next)
		eps[n++] = ep;
	mrl_unlock(&ctx->lock);
	for (size_t i = 0; i < n; i++)
		if (pthread_mutex_trylock(&eps[i]->lock) == 0) {
			mrl_ep_progress_locked(eps[i]);
			mrl_unlock(&eps[i]->lock);
		}
	mrl_unlock(&ctx->flush_lock);
}

MRL_EXPORT int mrl_ep_progress(mrl_ep *ep)
{
	if (!ep)
		return mrl_err(EINVAL, "mrl_ep_progress: NULL ep");
	MRL_CHILD_CHECK(ep->ctx, "mrl_ep_progress");
	mrl_lock(&ep->lock);
	int ret = mrl_ep_progress_locked(ep);
	mrl_unlock(&ep->lock);
	return ret;
}

/* ---- endpoint life ---- */

static void *progress_main(void *arg)
{
	struct mrl_ep *ep = arg;
	while (!atomic_load(&ep->stop)) {
		mrl_lock(&ep->lock);
		int got = mrl_ep_progress_locked(ep);
		if ((ep->polls & 63) == 0)
			check_peers(ep);
		mrl_unlock(&ep->lock);
		if (got)
			continue;
		if (ep->cq_fd >= 0) {
			struct fid *f = &ep->cq->fid;
			mrl_sb_precheck(ep->ctx);
			pthread_rwlock_rdlock(&ep->ctx->fab->gate); /* it may drive progress */
			int tw = fi_trywait(ep->ctx->fab->fabric, &f, 1);
			pthread_rwlock_unlock(&ep->ctx->fab->gate);
			if (tw == FI_SUCCESS) {
				struct pollfd pfd = {.fd = ep->cq_fd, .events = POLLIN};
				poll(&pfd, 1, 1);
			}
		} else {
			usleep(20);
		}
	}
	return NULL;
}

MRL_EXPORT int mrl_ep_create(mrl_ctx *ctx, const struct mrl_ep_opts *opts, mrl_ep **out)
{
	int ret;
	if (!ctx || !out)
		return mrl_err(EINVAL, "mrl_ep_create: NULL %s", !ctx ? "context" : "out");
	MRL_CHILD_CHECK(ctx, "mrl_ep_create");
	*out = NULL;
	/* the first version of the struct ended at flags (size 16 with its
	 * padding, which ka_ms now fills: hence both ka fields or neither) */
	if (opts && opts->size < offsetof(struct mrl_ep_opts, flags) + sizeof(opts->flags))
		return mrl_err(EINVAL, "mrl_ep_create: opts->size %zu too small", opts->size);
	unsigned ka_ms = 0, ka_to_ms = 0;
	if (opts && opts->size >= offsetof(struct mrl_ep_opts, ka_timeout_ms) + sizeof(opts->ka_timeout_ms)) {
		ka_ms = opts->ka_ms;
		ka_to_ms = opts->ka_timeout_ms;
	}
	if (ka_ms != MRL_EP_KA_OFF) {
		ka_ms = ka_ms ? ka_ms : 1000;
		ka_to_ms = ka_to_ms ? ka_to_ms : 5000;
		if (ka_to_ms <= ka_ms)
			return mrl_err(EINVAL, "mrl_ep_create: ka_timeout_ms %u must exceed ka_ms %u",
				       ka_to_ms, ka_ms);
	}
	if (!ctx->fab)
		return mrl_err(EOPNOTSUPP, "mrl_ep_create: the %s registrar has no data path",
			       ctx->rops->name);
	const void *secret = NULL;
	size_t secret_len = 0;
	if (opts && opts->size >= offsetof(struct mrl_ep_opts, secret_len) + sizeof(opts->secret_len)) {
		secret = opts->secret;
		secret_len = opts->secret_len;
	}
	if (opts && (opts->flags & ~(MRL_EP_AUTO_PROGRESS | MRL_EP_INSECURE | MRL_EP_PEERCRED)))
		return mrl_err(EINVAL, "mrl_ep_create: unknown flags %#x", opts->flags);
	struct mrl_fabric *fab = ctx->fab;
	struct mrl_ep *ep = calloc(1, sizeof(*ep));
	if (!ep)
		return -ENOMEM;
	ret = mrl_auth_secret(secret, secret_len, opts && (opts->flags & (MRL_EP_INSECURE | MRL_EP_PEERCRED)),
			      ep->secret, &ep->secret_len);
	if (ret) {
		explicit_bzero(ep->secret, sizeof(ep->secret));
		free(ep);
		return ret;
	}
	ep->ctx = ctx;
	ep->peercred = opts && (opts->flags & MRL_EP_PEERCRED);
	ep->lsock = -1;
	ep->cq_fd = -1;
	ep->backlog_tail = &ep->backlog;
	ep->inflight.inext = ep->inflight.iprev = &ep->inflight;
	pthread_mutex_init(&ep->lock, NULL);
	pthread_mutex_init(&ep->boot_lock, NULL);
	ep->inject_size = fab->info->tx_attr->inject_size;
	if (ka_ms != MRL_EP_KA_OFF) {
		ep->ka_ns = ka_ms * 1000000ull;
		ep->ka_timeout_ns = ka_to_ms * 1000000ull;
	}
	struct fi_cq_attr cqa = {.format = FI_CQ_FORMAT_MSG, .wait_obj = FI_WAIT_FD, .size = 1024};
	ret = fi_cq_open(fab->domain, &cqa, &ep->cq, NULL);
	if (ret) {
		cqa.wait_obj = FI_WAIT_NONE;
		ret = fi_cq_open(fab->domain, &cqa, &ep->cq, NULL);
	} else if (fi_control(&ep->cq->fid, FI_GETWAIT, &ep->cq_fd)) {
		ep->cq_fd = -1;
	}
	if (ret) {
		ret = mrl_err(ret, "fi_cq_open: %s", fi_strerror(-ret));
		goto fail;
	}
	struct fi_av_attr ava = {.type = FI_AV_TABLE};
	ret = fi_av_open(fab->domain, &ava, &ep->av, NULL);
	if (ret) {
		ret = mrl_err(ret, "fi_av_open: %s", fi_strerror(-ret));
		goto fail;
	}
	ret = fi_endpoint(fab->domain, fab->info, &ep->ep, NULL);
	if (ret) {
		ret = mrl_err(ret, "fi_endpoint: %s", fi_strerror(-ret));
		goto fail;
	}
	if ((ret = fi_ep_bind(ep->ep, &ep->cq->fid, FI_TRANSMIT | FI_RECV)) ||
	    (ret = fi_ep_bind(ep->ep, &ep->av->fid, 0)) || (ret = fi_enable(ep->ep))) {
		ret = mrl_err(ret, "endpoint setup: %s", fi_strerror(-ret));
		goto fail;
	}
	ep->namelen = sizeof(ep->name);
	ret = fi_getname(&ep->ep->fid, ep->name, &ep->namelen);
	if (ret) {
		ret = mrl_err(ret, "fi_getname: %s", fi_strerror(-ret));
		goto fail;
	}
	ep->rbufs = calloc(NRECV, sizeof(*ep->rbufs));
	if (!ep->rbufs) {
		ret = -ENOMEM;
		goto fail;
	}
	for (int i = 0; i < NRECV; i++) {
		ep->rbufs[i].h.kind = OP_RECV;
		ret = (int)fi_recv(ep->ep, ep->rbufs[i].data, MRL_MSG_MAX, NULL, FI_ADDR_UNSPEC,
				   &ep->rbufs[i].h.fictx);
		if (ret) {
			ret = mrl_err(ret, "fi_recv: %s", fi_strerror(-ret));
			goto fail;
		}
	}
	if (opts && (opts->flags & MRL_EP_AUTO_PROGRESS)) {
		ret = pthread_create(&ep->prog, NULL, progress_main, ep);
		if (ret) {
			ret = mrl_err(ret, "progress thread: %s", strerror(ret));
			goto fail;
		}
		ep->prog_running = true;
	}
	mrl_lock(&ctx->lock);
	ep->next = ctx->eps;
	ctx->eps = ep;
	mrl_unlock(&ctx->lock);
	*out = ep;
	return 0;
fail:
	mrl_ep_destroy(ep);
	return ret;
}

MRL_EXPORT int mrl_ep_destroy(mrl_ep *ep)
{
	if (!ep)
		return mrl_err(EINVAL, "mrl_ep_destroy: NULL ep");
	MRL_CHILD_CHECK(ep->ctx, "mrl_ep_destroy");
	struct mrl_ctx *ctx = ep->ctx;
	atomic_store(&ep->stop, true);
	if (ep->prog_running)
		pthread_join(ep->prog, NULL);
	/* tell owners we are gone, then forget this endpoint's peers everywhere */
	mrl_lock(&ctx->flush_lock);
	mrl_lock(&ep->lock);
	for (uint32_t i = 0; i < ep->npeers; i++) {
		struct mrl_peer *p = ep->peers[i];
		if (p && !p->dead)
			peer_dead(ep, p, MRL_CAUSE_DISCONNECTED);
	}
	mrl_unlock(&ep->lock);
	mrl_lock(&ctx->lock);
	mrl_outbox_forget(ctx, peer_of_ep, ep);
	for (struct mrl_ep **pp = &ctx->eps; *pp; pp = &(*pp)->next)
		if (*pp == ep) {
			*pp = ep->next;
			break;
		}
	mrl_unlock(&ctx->lock);
	mrl_unlock(&ctx->flush_lock);

	if (ep->ep)
		fi_close(&ep->ep->fid);
	while (ep->sbufs) { /* sends the closed endpoint will never complete */
		struct mrl_sbuf *sb = ep->sbufs;
		ep->sbufs = sb->next;
		free(sb);
	}
	if (ep->av)
		fi_close(&ep->av->fid);
	if (ep->cq)
		fi_close(&ep->cq->fid);
	for (uint32_t i = 0; i < ep->npeers; i++) {
		struct mrl_peer *p = ep->peers[i];
		if (!p)
			continue;
		while (p->rmrs) {
			struct mrl_rmr *r = p->rmrs;
			p->rmrs = r->next;
			while (r->held) {
				struct mrl_op *op = r->held;
				r->held = op->next;
				free(op);
			}
			free(r);
		}
		free(p->hash);
		if (p->sock >= 0)
			close(p->sock);
		mrl_auth_peer_free(p);
		explicit_bzero(p, sizeof(*p));
		free(p);
	}
	while (ep->backlog) {
		struct mrl_op *op = ep->backlog;
		ep->backlog = op->next;
		free(op);
	}
	/* the endpoint is closed: the provider holds no op any more */
	while (ep->inflight.inext && ep->inflight.inext != &ep->inflight) {
		struct mrl_op *op = ep->inflight.inext;
		mrl_ep_inflight_del(op);
		free(op);
	}
	while (ep->free_ops) {
		struct mrl_op *op = ep->free_ops;
		ep->free_ops = op->next;
		free(op);
	}
	while (ep->waiters) {
		struct waiter *w = ep->waiters;
		ep->waiters = w->next;
		free(w);
	}
	if (ep->lsock >= 0)
		close(ep->lsock);
	mrl_ep_boot_free(ep);
	pthread_mutex_destroy(&ep->boot_lock);
	free(ep->peers);
	free(ep->rbufs);
	free(ep->lcq);
	pthread_mutex_destroy(&ep->lock);
	explicit_bzero(ep->secret, sizeof(ep->secret));
	free(ep);
	return 0;
}

void mrl_ep_pause_counts(struct mrl_ep *ep, uint64_t *pauses_in, uint64_t *acks_out,
			 uint64_t *acks_in)
{
	/* no lock: a test reads them while the endpoint is busy in a send */
	*pauses_in = atomic_load(&ep->pauses_in);
	*acks_out = atomic_load(&ep->pause_acks_out);
	*acks_in = atomic_load(&ep->pause_acks_in);
}
