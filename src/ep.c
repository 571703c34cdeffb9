/* The data path: RDM endpoints, TCP bootstrap, RMA with held/resumed
 * operations, and both sides of the pause protocol (owner and peer).
 * The fast path is one load and compare of rmr->ctl. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>

#include "mrl_int.h"
#include "fabric.h"
#include "proto.h"

#define NRECV 64
#define RMR_SLOW 1u

enum op_kind { OP_WRITE = 1, OP_READ, OP_RECV, OP_SEND };

struct op_head {
	struct fi_context2 fictx; /* must be first: the provider's context */
	uint8_t kind;
};

struct mrl_op {
	struct op_head h;
	struct mrl_op *next;
	struct mrl_op *iprev, *inext; /* ep->inflight list while the provider has it */
	bool orphan;                  /* reported already: the peer died under it */
	struct mrl_rmr *rmr;
	uint64_t off;
	void *buf;
	size_t len;
	void *uctx;
	uint32_t gen;
};

struct mrl_rbuf {
	struct op_head h;
	unsigned char data[MRL_MSG_MAX];
};

/* a control message too big to inject lives until its send completes */
struct mrl_sbuf {
	struct op_head h;
	unsigned char data[MRL_MSG_MAX];
};

struct pause_rec {
	struct pause_rec *next;
	uint32_t seq;
	uint32_t n;
	struct mrl_rmr **rmrs;
};

struct mrl_rmr {
	_Atomic uint32_t ctl; /* 0: active and whole; anything else takes the slow path */
	uint8_t state, cause;
	bool closed;
	struct mrl_peer *peer;
	uint64_t id, key, base, len, valid_len;
	uint32_t gen;
	uint64_t inflight, nheld;
	struct mrl_op *held, **held_tail;
	struct mrl_rmr *next, *hnext;
};

struct mrl_peer {
	struct mrl_ep *ep;
	uint32_t idx, remote_idx;
	fi_addr_t addr;
	int sock;
	bool dead;
	struct mrl_rmr *rmrs;
	struct mrl_rmr **hash;
	uint32_t hcap, hn;
	struct pause_rec *pauses;
};

struct waiter {
	struct waiter *next;
	uint32_t req;
	bool done;
	unsigned char msg[MRL_MSG_MAX];
};

struct mrl_ep {
	struct mrl_ctx *ctx;
	struct mrl_ep *next;
	pthread_mutex_t lock;
	struct fid_ep *ep;
	struct fid_av *av;
	struct fid_cq *cq;
	int cq_fd;
	size_t inject_size;
	unsigned char name[64];
	size_t namelen;
	struct mrl_peer **peers;
	uint32_t npeers, cap;
	int lsock;
	struct mrl_rbuf *rbufs;
	struct mrl_op *free_ops;
	struct mrl_op *backlog, **backlog_tail;
	struct mrl_op inflight;       /* list head of ops the provider holds */
	struct mrl_completion *lcq;
	size_t lcq_head, lcq_n, lcq_cap;
	struct waiter *waiters;
	uint32_t next_req;
	uint64_t polls, bad_msgs;
	/* pause protocol, for tests: pauses received and acks sent (peer
	 * side), acks received (owner side); one ack per pause, never two */
	_Atomic uint64_t pauses_in, pause_acks_out, pause_acks_in;
	pthread_t prog;
	bool prog_running;
	atomic_bool stop;
};

static int post_op(struct mrl_ep *ep, struct mrl_op *op);
static int post_op_now(struct mrl_ep *ep, struct mrl_op *op);

/* ---- small helpers ---- */

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

static void op_put(struct mrl_ep *ep, struct mrl_op *op)
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

static void inflight_del(struct mrl_op *op)
{
	op->iprev->inext = op->inext;
	op->inext->iprev = op->iprev;
	op->inext = op->iprev = NULL;
}

static void lcq_push(struct mrl_ep *ep, void *uctx, int status, uint32_t cause, uint32_t gen)
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

static void fail_op(struct mrl_ep *ep, struct mrl_op *op, int status, uint32_t cause)
{
	lcq_push(ep, op->uctx, status, cause, op->rmr ? op->rmr->gen : 0);
	op_put(ep, op);
}

static struct mrl_rmr *rmr_find(struct mrl_peer *p, uint64_t id)
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

/* ---- sending control messages ---- */

static int send_locked(struct mrl_ep *ep, struct mrl_peer *p, void *msg, size_t len);

int mrl_ep_send_raw(struct mrl_peer *peer, const void *msg, size_t len)
{
	unsigned char buf[MRL_MSG_MAX];
	if (len > sizeof(buf))
		return -EMSGSIZE;
	memcpy(buf, msg, len);
	pthread_mutex_lock(&peer->ep->lock);
	int ret = peer->dead ? -ENOTCONN : send_locked(peer->ep, peer, buf, len);
	pthread_mutex_unlock(&peer->ep->lock);
	return ret;
}

static int progress_locked(struct mrl_ep *ep);

/* Tests: a send queue that has room only while no RMA operation is in
 * flight, as a queue full of writes does; tcp;ofi_rxm queues small control
 * messages itself and never reports it full. */
bool mrl_ep_test_full_txq;

static int send_locked(struct mrl_ep *ep, struct mrl_peer *p, void *msg, size_t len)
{
	struct msg_hdr *h = msg;
	h->magic = MRL_MAGIC;
	h->len = (uint16_t)len;
	h->peer = p->remote_idx;
	uint64_t until = mrl_now_ns() + 2000000000ull;
	struct mrl_sbuf *sb = NULL;
	if (len > ep->inject_size) {
		if (!(sb = malloc(sizeof(*sb))))
			return -ENOMEM;
		sb->h.kind = OP_SEND;
		memcpy(sb->data, msg, len);
	}
	for (;;) {
		ssize_t ret = unlikely(mrl_ep_test_full_txq) && ep->inflight.inext != &ep->inflight
				      ? -FI_EAGAIN
			      : sb ? fi_send(ep->ep, sb->data, len, NULL, p->addr, &sb->h.fictx)
				   : fi_inject(ep->ep, msg, len, p->addr);
		if (ret == 0)
			return 0;
		if (ret != -FI_EAGAIN || mrl_now_ns() > until) {
			free(sb);
			return mrl_err((int)ret, "control message to peer %u: %s", p->idx,
				       fi_strerror((int)-ret));
		}
		progress_locked(ep);
	}
}

static void init_hdr(struct msg_hdr *h, int type, size_t len, uint32_t req)
{
	memset(h, 0, sizeof(*h));
	h->magic = MRL_MAGIC;
	h->type = (uint8_t)type;
	h->len = (uint16_t)len;
	h->req = req;
}

/* ---- owner side of the protocol ---- */

static void owner_open(struct mrl_ep *ep, struct mrl_peer *p, const struct msg_id *m)
{
	struct mrl_ctx *ctx = ep->ctx;
	struct msg_state r;
	memset(&r, 0, sizeof(r));
	init_hdr(&r.h, MSG_OPEN_REP, sizeof(r), m->h.req);
	r.id = m->id;
	pthread_mutex_lock(&ctx->lock);
	struct mrl_mr *mr = mrl_ht_get(&ctx->ht, m->id);
	if (!mr || !(mr->access & (MRL_ACCESS_REMOTE_READ | MRL_ACCESS_REMOTE_WRITE))) {
		r.status = -ENOENT;
	} else {
		bool have = false;
		for (struct mrl_holder *h = mr->holders; h && !have; h = h->next)
			have = h->peer == p;
		struct mrl_holder *h = have ? NULL : calloc(1, sizeof(*h));
		if (!have && !h) {
			r.status = -ENOMEM;
		} else {
			if (h) {
				h->peer = p;
				h->next = mr->holders;
				mr->holders = h;
			}
			r.state = mr->state;
			r.cause = mr->cause;
			r.key = mr->key;
			r.base = ctx->fab && ctx->fab->virt_addr ? (uintptr_t)mr->addr : 0;
			r.len = mr->len;
			r.valid_len = mr->state == MRL_STATE_FENCED ? 0 : mr->valid_len;
			r.gen = mr->gen;
		}
	}
	pthread_mutex_unlock(&ctx->lock);
	send_locked(ep, p, &r, sizeof(r));
}

static void owner_close(struct mrl_ep *ep, struct mrl_peer *p, const struct msg_id *m)
{
	struct mrl_ctx *ctx = ep->ctx;
	pthread_mutex_lock(&ctx->lock);
	struct mrl_mr *mr = mrl_ht_get(&ctx->ht, m->id);
	if (mr)
		for (struct mrl_holder **hp = &mr->holders; *hp; hp = &(*hp)->next)
			if ((*hp)->peer == p) {
				struct mrl_holder *h = *hp;
				*hp = h->next;
				free(h);
				break;
			}
	pthread_mutex_unlock(&ctx->lock);
}

static void owner_list(struct mrl_ep *ep, struct mrl_peer *p, const struct msg_list_req *m)
{
	struct mrl_ctx *ctx = ep->ctx;
	struct msg_list_rep r;
	memset(&r, 0, sizeof(r));
	init_hdr(&r.h, MSG_LIST_REP, sizeof(r), m->h.req);
	pthread_mutex_lock(&ctx->lock);
	uint32_t total = ctx->ht.nchunks * MRL_HT_CHUNK, i;
	for (i = m->start; i < total && r.n < MRL_LIST_IDS; i++) {
		struct mrl_ht_slot *s = &ctx->ht.chunks[i / MRL_HT_CHUNK][i % MRL_HT_CHUNK];
		if (s->mr && (s->mr->access & (MRL_ACCESS_REMOTE_READ | MRL_ACCESS_REMOTE_WRITE)))
			r.ids[r.n++] = s->mr->handle;
	}
	r.next = i < total ? i : 0;
	pthread_mutex_unlock(&ctx->lock);
	send_locked(ep, p, &r, sizeof(r));
}

void mrl_peer_release_holders(struct mrl_ctx *ctx, struct mrl_peer *peer)
{
	for (uint32_t c = 0; c < ctx->ht.nchunks; c++)
		for (uint32_t i = 0; i < MRL_HT_CHUNK; i++) {
			struct mrl_mr *mr = ctx->ht.chunks[c][i].mr;
			if (!mr)
				continue;
			for (struct mrl_holder **hp = &mr->holders; *hp;)
				if ((*hp)->peer == peer) {
					struct mrl_holder *h = *hp;
					*hp = h->next;
					free(h);
				} else {
					hp = &(*hp)->next;
				}
		}
	mrl_brk_forget_peer(ctx, peer);
}

/* ---- peer side of the protocol ---- */

static bool pause_drained(const struct pause_rec *pr)
{
	for (uint32_t i = 0; i < pr->n; i++)
		if (pr->rmrs[i]->inflight)
			return false;
	return true;
}

/* Ack every pause whose MRs have drained. A send that finds the queue full
 * drives progress, which can come back here (a completion, another pause)
 * or cut the peer off (peer_dead frees its records): so a record leaves
 * the list before its ack is sent, and the walk starts over after each
 * send instead of trusting a pointer into a list that may have changed. */
static void pause_check(struct mrl_ep *ep, struct mrl_peer *p)
{
	for (;;) {
		struct pause_rec **pp = &p->pauses;
		while (*pp && !pause_drained(*pp))
			pp = &(*pp)->next;
		struct pause_rec *pr = *pp;
		if (!pr || p->dead)
			return;
		*pp = pr->next;
		struct msg_hdr a;
		init_hdr(&a, MSG_PAUSE_ACK, sizeof(a), pr->seq);
		free(pr->rmrs);
		free(pr);
		if (send_locked(ep, p, &a, sizeof(a)) == 0)
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

static void peer_pause(struct mrl_ep *ep, struct mrl_peer *p, const struct msg_pause *m)
{
	struct pause_rec *pr = calloc(1, sizeof(*pr));
	if (pr)
		pr->rmrs = calloc(m->n ? m->n : 1, sizeof(*pr->rmrs));
	if (!pr || !pr->rmrs) {
		free(pr);
		return; /* the owner times us out and cuts us off: safe */
	}
	pr->seq = m->h.req;
	ep->pauses_in++;
	for (uint32_t i = 0; i < m->n; i++) {
		struct mrl_rmr *r = rmr_find(p, m->ids[i]);
		if (!r || r->state == MRL_STATE_FENCED)
			continue;
		rmr_hold(ep, r);
		pr->rmrs[pr->n++] = r;
	}
	pr->next = p->pauses;
	p->pauses = pr;
	pause_check(ep, p);
}

static void rmr_fail_held(struct mrl_ep *ep, struct mrl_rmr *r, int status)
{
	while (r->held) {
		struct mrl_op *op = r->held;
		r->held = op->next;
		r->nheld--;
		fail_op(ep, op, status, r->cause);
	}
	r->held_tail = &r->held;
}

static void rmr_apply_state(struct mrl_ep *ep, struct mrl_rmr *r, const struct msg_state *m)
{
	r->gen = m->gen;
	r->cause = m->cause;
	r->key = m->key;
	r->base = m->base;
	if (m->state == MRL_STATE_ACTIVE) {
		r->state = MRL_STATE_ACTIVE;
		r->valid_len = m->valid_len < r->len ? m->valid_len : r->len;
		atomic_store_explicit(&r->ctl, r->valid_len == r->len ? 0 : RMR_SLOW,
				      memory_order_release);
		/* resume: post what was held, in order */
		struct mrl_op *op = r->held;
		r->held = NULL;
		r->held_tail = &r->held;
		r->nheld = 0;
		while (op) {
			struct mrl_op *n = op->next;
			op->next = NULL;
			if (op->off + op->len > r->valid_len)
				fail_op(ep, op, -EKEYREVOKED, r->cause);
			else if (post_op(ep, op))
				fail_op(ep, op, -EIO, MRL_CAUSE_NONE);
			op = n;
		}
	} else if (m->state == MRL_STATE_PAUSED) {
		rmr_hold(ep, r);
		r->valid_len = m->valid_len;
	} else {
		r->state = MRL_STATE_FENCED;
		r->valid_len = 0;
		atomic_store_explicit(&r->ctl, RMR_SLOW, memory_order_release);
		rmr_fail_held(ep, r, -EKEYREVOKED);
	}
}

static void peer_dead(struct mrl_ep *ep, struct mrl_peer *p)
{
	if (p->dead)
		return;
	p->dead = true;
	for (struct mrl_rmr *r = p->rmrs; r; r = r->next) {
		if (r->state == MRL_STATE_FENCED)
			continue;
		r->state = MRL_STATE_FENCED;
		r->cause = MRL_CAUSE_DISCONNECTED;
		atomic_store_explicit(&r->ctl, RMR_SLOW, memory_order_release);
		rmr_fail_held(ep, r, -ENOTCONN);
	}
	/* the provider may never report what was in flight to a dead peer:
	 * report it now, and keep the op until the provider lets go of it */
	for (struct mrl_op *op = ep->inflight.inext; op != &ep->inflight; op = op->inext) {
		if (op->orphan || op->rmr->peer != p)
			continue;
		op->orphan = true;
		op->rmr->inflight--;
		lcq_push(ep, op->uctx, -ENOTCONN, MRL_CAUSE_DISCONNECTED, op->gen);
	}
	for (struct mrl_op **pp = &ep->backlog; *pp;) {
		struct mrl_op *op = *pp;
		if (op->rmr->peer != p) {
			pp = &op->next;
			continue;
		}
		*pp = op->next;
		fail_op(ep, op, -ENOTCONN, MRL_CAUSE_DISCONNECTED);
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
	pthread_mutex_lock(&ep->ctx->lock);
	mrl_peer_release_holders(ep->ctx, p);
	pthread_mutex_unlock(&ep->ctx->lock);
	mrl_wake_monitor(ep->ctx);
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
	case MSG_PAUSE: return offsetof(struct msg_pause, ids);
	case MSG_PAUSE_ACK: return sizeof(struct msg_hdr);
	case MSG_STATES: return offsetof(struct msg_states, e);
	default: return SIZE_MAX;
	}
}

/* Every field is checked: a malformed message is dropped and counted. */
/* A malformed control message is dropped and counted (mrl_stats.bad_msgs). */
static void bad_msg(struct mrl_ep *ep, size_t len)
{
	ep->bad_msgs++;
	pthread_mutex_lock(&ep->ctx->lock);
	ep->ctx->st.bad_msgs++;
	pthread_mutex_unlock(&ep->ctx->lock);
	mrl_log("dropped malformed control message (%zu bytes)", len);
}

static void handle_msg(struct mrl_ep *ep, const unsigned char *buf, size_t len)
{
	const struct msg_hdr *h = (const void *)buf;
	if (len < sizeof(*h) || h->magic != MRL_MAGIC || h->len != len ||
	    msg_min_len(h->type) > len || h->peer >= ep->npeers || !ep->peers[h->peer] ||
	    ep->peers[h->peer]->dead) {
		bad_msg(ep, len);
		return;
	}
	struct mrl_peer *p = ep->peers[h->peer];
	switch (h->type) {
	case MSG_OPEN_REQ:
		owner_open(ep, p, (const void *)buf);
		break;
	case MSG_CLOSE:
		owner_close(ep, p, (const void *)buf);
		break;
	case MSG_LIST_REQ:
		owner_list(ep, p, (const void *)buf);
		break;
	case MSG_PAUSE_ACK:
		ep->pause_acks_in++;
		pthread_mutex_lock(&ep->ctx->lock);
		mrl_brk_ack(ep->ctx, p, h->req);
		pthread_mutex_unlock(&ep->ctx->lock);
		mrl_wake_monitor(ep->ctx); /* it sends what the release queued */
		break;
	case MSG_PAUSE: {
		const struct msg_pause *m = (const void *)buf;
		if (m->n > MRL_PAUSE_IDS || len < offsetof(struct msg_pause, ids) + m->n * 8) {
			bad_msg(ep, len);
			return;
		}
		peer_pause(ep, p, m);
		break;
	}
	case MSG_STATE: {
		const struct msg_state *m = (const void *)buf;
		struct mrl_rmr *r = rmr_find(p, m->id);
		if (r && m->state >= MRL_STATE_ACTIVE && m->state <= MRL_STATE_DEREGISTERED &&
		    m->cause < MRL_CAUSE_MAX)
			rmr_apply_state(ep, r, m);
		break;
	}
	case MSG_STATES: {
		const struct msg_states *m = (const void *)buf;
		if (m->n > MRL_STATES_MAX || len < offsetof(struct msg_states, e) + m->n * sizeof(m->e[0])) {
			bad_msg(ep, len);
			return;
		}
		for (uint32_t i = 0; i < m->n; i++) {
			const struct state_ent *e = &m->e[i];
			struct mrl_rmr *r = rmr_find(p, e->id);
			if (!r || e->state < MRL_STATE_ACTIVE || e->state > MRL_STATE_DEREGISTERED ||
			    e->cause >= MRL_CAUSE_MAX)
				continue;
			struct msg_state one = {.state = e->state, .cause = e->cause, .id = e->id,
						.key = e->key, .base = r->base, .len = r->len,
						.valid_len = e->valid_len, .gen = e->gen};
			rmr_apply_state(ep, r, &one);
		}
		break;
	}
	case MSG_OPEN_REP:
	case MSG_LIST_REP:
		for (struct waiter *w = ep->waiters; w; w = w->next)
			if (w->req == h->req && !w->done) {
				memcpy(w->msg, buf, len);
				w->done = true;
			}
		break;
	}
}

static void handle_cqe(struct mrl_ep *ep, void *ctxp, size_t len, int err)
{
	struct op_head *oh = ctxp;
	if (!oh)
		return;
	if (oh->kind == OP_SEND) {
		free(oh);
		return;
	}
	if (oh->kind == OP_RECV) {
		struct mrl_rbuf *rb = (struct mrl_rbuf *)oh;
		if (!err)
			handle_msg(ep, rb->data, len);
		if (!atomic_load(&ep->stop))
			fi_recv(ep->ep, rb->data, sizeof(rb->data), NULL, FI_ADDR_UNSPEC, &rb->h.fictx);
		return;
	}
	struct mrl_op *op = (struct mrl_op *)oh;
	struct mrl_rmr *r = op->rmr;
	inflight_del(op);
	if (op->orphan) { /* reported when its peer died */
		op_put(ep, op);
		return;
	}
	r->inflight--;
	int status = 0;
	uint32_t cause = MRL_CAUSE_NONE;
	if (err) {
		status = r->state == MRL_STATE_FENCED ? -EKEYREVOKED : -err;
		cause = r->cause;
	}
	lcq_push(ep, op->uctx, status, cause, op->gen);
	op_put(ep, op);
	if (!r->inflight && r->peer->pauses)
		pause_check(ep, r->peer);
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
			peer_dead(ep, p);
	}
}

static int progress_locked(struct mrl_ep *ep)
{
	struct fi_cq_msg_entry e[16];
	int got = 0;
	for (;;) {
		ssize_t n = fi_cq_read(ep->cq, e, ARRAY_SIZE(e));
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
			if (fi_cq_readerr(ep->cq, &ee, 0) > 0) {
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
		int r = post_op_now(ep, op);
		if (r == -FI_EAGAIN) { /* still no room: back to the head, in order */
			op->next = ep->backlog;
			ep->backlog = op;
			if (!op->next)
				ep->backlog_tail = &op->next;
			break;
		}
		if (r)
			fail_op(ep, op, -EIO, MRL_CAUSE_NONE);
	}
	if ((++ep->polls & 1023) == 0)
		check_peers(ep);
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
	pthread_mutex_lock(&ctx->flush_lock); /* keeps mrl_ep_destroy out */
	pthread_mutex_lock(&ctx->lock);
	for (struct mrl_ep *ep = ctx->eps; ep && n < ARRAY_SIZE(eps); ep = ep->next)
		eps[n++] = ep;
	pthread_mutex_unlock(&ctx->lock);
	for (size_t i = 0; i < n; i++)
		if (pthread_mutex_trylock(&eps[i]->lock) == 0) {
			progress_locked(eps[i]);
			pthread_mutex_unlock(&eps[i]->lock);
		}
	pthread_mutex_unlock(&ctx->flush_lock);
}

/* ---- posting ---- */

static void *local_desc(struct mrl_ep *ep, const void *buf, size_t len)
{
	struct mrl_ctx *ctx = ep->ctx;
	if (!ctx->fab || !ctx->fab->mr_local)
		return NULL;
	void *d = NULL;
	pthread_mutex_lock(&ctx->lock);
	struct mrl_itree_node *n =
		mrl_itree_first_overlap(&ctx->va_index, (uintptr_t)buf, (uintptr_t)buf + len);
	if (n && n->start <= (uintptr_t)buf && n->end >= (uintptr_t)buf + len) {
		struct mrl_mr *mr = (struct mrl_mr *)n;
		if (mr->dev_mr)
			d = ctx->rops->desc(mr->dev_mr);
	}
	pthread_mutex_unlock(&ctx->lock);
	return d;
}

/* Hand an op to the provider now: 0, -FI_EAGAIN (no room) or an error. */
static int post_op_now(struct mrl_ep *ep, struct mrl_op *op)
{
	struct mrl_rmr *r = op->rmr;
	struct iovec iov = {.iov_base = op->buf, .iov_len = op->len};
	void *desc = local_desc(ep, op->buf, op->len);
	struct fi_rma_iov riov = {.addr = r->base + op->off, .len = op->len, .key = r->key};
	struct fi_msg_rma msg = {
		.msg_iov = &iov, .desc = &desc, .iov_count = 1, .addr = r->peer->addr,
		.rma_iov = &riov, .rma_iov_count = 1, .context = &op->h.fictx,
	};
	ssize_t ret;
	op->gen = r->gen;
	if (op->h.kind == OP_WRITE)
		/* delivery-complete: when it completes, the bytes are in the target's memory */
		ret = fi_writemsg(ep->ep, &msg, FI_DELIVERY_COMPLETE | FI_COMPLETION);
	else
		ret = fi_readmsg(ep->ep, &msg, FI_COMPLETION);
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
static int post_op(struct mrl_ep *ep, struct mrl_op *op)
{
	int ret = ep->backlog ? -FI_EAGAIN : post_op_now(ep, op);
	if (ret == -FI_EAGAIN) {
		op->next = NULL;
		*ep->backlog_tail = op;
		ep->backlog_tail = &op->next;
		return 0;
	}
	return ret;
}

static int rma(struct mrl_rmr *r, int kind, uint64_t off, void *buf, size_t len, void *uctx,
	       const char *fn)
{
	if (unlikely(!r || !buf || !len))
		return mrl_err(EINVAL, "%s: %s", fn, !r ? "NULL rmr" : !buf ? "NULL buffer" : "zero length");
	MRL_CHILD_CHECK(r->peer->ep->ctx, fn);
	struct mrl_ep *ep = r->peer->ep;
	int ret = 0;
	pthread_mutex_lock(&ep->lock);
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
		if (r->state == MRL_STATE_FENCED && r->cause == MRL_CAUSE_DISCONNECTED) {
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
	ret = post_op(ep, op);
	if (ret)
		op_put(ep, op);
out:
	pthread_mutex_unlock(&ep->lock);
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
	pthread_mutex_lock(&ep->lock);
	progress_locked(ep);
	int got = 0;
	while (got < n && ep->lcq_n) {
		c[got++] = ep->lcq[ep->lcq_head];
		ep->lcq_head = (ep->lcq_head + 1) % ep->lcq_cap;
		ep->lcq_n--;
	}
	pthread_mutex_unlock(&ep->lock);
	return got;
}

MRL_EXPORT int mrl_ep_progress(mrl_ep *ep)
{
	if (!ep)
		return mrl_err(EINVAL, "mrl_ep_progress: NULL ep");
	MRL_CHILD_CHECK(ep->ctx, "mrl_ep_progress");
	pthread_mutex_lock(&ep->lock);
	int ret = progress_locked(ep);
	pthread_mutex_unlock(&ep->lock);
	return ret;
}

/* ---- endpoint life ---- */

static void *progress_main(void *arg)
{
	struct mrl_ep *ep = arg;
	while (!atomic_load(&ep->stop)) {
		pthread_mutex_lock(&ep->lock);
		int got = progress_locked(ep);
		if ((ep->polls & 63) == 0)
			check_peers(ep);
		pthread_mutex_unlock(&ep->lock);
		if (got)
			continue;
		if (ep->cq_fd >= 0) {
			struct fid *f = &ep->cq->fid;
			if (fi_trywait(ep->ctx->fab->fabric, &f, 1) == FI_SUCCESS) {
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
	if (opts && opts->size < sizeof(*opts))
		return mrl_err(EINVAL, "mrl_ep_create: opts->size %zu too small", opts->size);
	if (!ctx->fab)
		return mrl_err(EOPNOTSUPP, "mrl_ep_create: the %s registrar has no data path",
			       ctx->rops->name);
	struct mrl_fabric *fab = ctx->fab;
	struct mrl_ep *ep = calloc(1, sizeof(*ep));
	if (!ep)
		return -ENOMEM;
	ep->ctx = ctx;
	ep->lsock = -1;
	ep->cq_fd = -1;
	ep->backlog_tail = &ep->backlog;
	ep->inflight.inext = ep->inflight.iprev = &ep->inflight;
	pthread_mutex_init(&ep->lock, NULL);
	ep->inject_size = fab->info->tx_attr->inject_size;
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
	pthread_mutex_lock(&ctx->lock);
	ep->next = ctx->eps;
	ctx->eps = ep;
	pthread_mutex_unlock(&ctx->lock);
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
	pthread_mutex_lock(&ctx->flush_lock);
	pthread_mutex_lock(&ep->lock);
	for (uint32_t i = 0; i < ep->npeers; i++) {
		struct mrl_peer *p = ep->peers[i];
		if (p && !p->dead)
			peer_dead(ep, p);
	}
	pthread_mutex_unlock(&ep->lock);
	pthread_mutex_lock(&ctx->lock);
	for (struct mrl_out **op = &ctx->outbox; *op;) {
		struct mrl_out *o = *op;
		if (o->peer && o->peer->ep == ep) {
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
	for (struct mrl_ep **pp = &ctx->eps; *pp; pp = &(*pp)->next)
		if (*pp == ep) {
			*pp = ep->next;
			break;
		}
	pthread_mutex_unlock(&ctx->lock);
	pthread_mutex_unlock(&ctx->flush_lock);

	if (ep->ep)
		fi_close(&ep->ep->fid);
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
		inflight_del(op);
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
	free(ep->peers);
	free(ep->rbufs);
	free(ep->lcq);
	pthread_mutex_destroy(&ep->lock);
	free(ep);
	return 0;
}

/* ---- bootstrap ---- */

struct hello {
	uint32_t magic;
	uint32_t idx;     /* the sender's index for the receiver */
	uint32_t namelen;
	unsigned char name[64];
};

static int io_full(int fd, void *buf, size_t len, bool wr, int timeout_ms)
{
	size_t done = 0;
	uint64_t until = mrl_now_ns() + (uint64_t)timeout_ms * 1000000ull;
	while (done < len) {
		struct pollfd pfd = {.fd = fd, .events = wr ? POLLOUT : POLLIN};
		uint64_t now = mrl_now_ns();
		if (now >= until)
			return -ETIMEDOUT;
		int pr = poll(&pfd, 1, (int)((until - now) / 1000000ull) + 1);
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr <= 0)
			return pr < 0 ? -errno : -ETIMEDOUT;
		ssize_t n = wr ? send(fd, (char *)buf + done, len - done, MSG_NOSIGNAL)
			       : recv(fd, (char *)buf + done, len - done, 0);
		if (n == 0)
			return -ECONNRESET;
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			return -errno;
		}
		done += (size_t)n;
	}
	return 0;
}

static int handshake(struct mrl_ep *ep, int sock, int timeout_ms, mrl_peer **out)
{
	struct hello me = {.magic = MRL_MAGIC, .namelen = (uint32_t)ep->namelen}, them;
	int ret;
	memcpy(me.name, ep->name, ep->namelen);
	pthread_mutex_lock(&ep->lock);
	if (ep->npeers == ep->cap) {
		uint32_t cap = ep->cap ? ep->cap * 2 : 8;
		struct mrl_peer **n = realloc(ep->peers, cap * sizeof(*n));
		if (!n) {
			pthread_mutex_unlock(&ep->lock);
			return -ENOMEM;
		}
		ep->peers = n;
		ep->cap = cap;
	}
	struct mrl_peer *p = calloc(1, sizeof(*p));
	if (!p) {
		pthread_mutex_unlock(&ep->lock);
		return -ENOMEM;
	}
	p->ep = ep;
	p->idx = ep->npeers;
	p->sock = -1;
	p->dead = true; /* not usable until the handshake is done */
	ep->peers[ep->npeers++] = p;
	pthread_mutex_unlock(&ep->lock);
	me.idx = p->idx;
	ret = io_full(sock, &me, sizeof(me), true, timeout_ms);
	if (!ret)
		ret = io_full(sock, &them, sizeof(them), false, timeout_ms);
	if (ret) {
		ret = mrl_err(ret, "bootstrap handshake: %s", strerror(-ret));
		goto fail;
	}
	if (them.magic != MRL_MAGIC || them.namelen == 0 || them.namelen > sizeof(them.name)) {
		ret = mrl_err(EPROTO, "bootstrap handshake: not an mrlease peer");
		goto fail;
	}
	pthread_mutex_lock(&ep->lock);
	ret = fi_av_insert(ep->av, them.name, 1, &p->addr, 0, NULL);
	if (ret != 1) {
		pthread_mutex_unlock(&ep->lock);
		ret = mrl_err(EADDRNOTAVAIL, "fi_av_insert failed (%d)", ret);
		goto fail;
	}
	p->remote_idx = them.idx;
	p->sock = sock;
	p->dead = false;
	pthread_mutex_unlock(&ep->lock);
	*out = p;
	return 0;
fail:
	close(sock);
	return ret;
}

static int resolve(const char *host, uint16_t port, struct sockaddr_in *sa)
{
	struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *ai;
	int r = getaddrinfo(host, NULL, &hints, &ai);
	if (r)
		return mrl_err(EADDRNOTAVAIL, "cannot resolve %s: %s", host, gai_strerror(r));
	*sa = *(struct sockaddr_in *)ai->ai_addr;
	sa->sin_port = htons(port);
	freeaddrinfo(ai);
	return 0;
}

MRL_EXPORT int mrl_ep_listen(mrl_ep *ep, const char *host, uint16_t port, uint16_t *bound)
{
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	int one = 1, ret;
	if (!ep || !host)
		return mrl_err(EINVAL, "mrl_ep_listen: NULL %s", !ep ? "ep" : "host");
	MRL_CHILD_CHECK(ep->ctx, "mrl_ep_listen");
	if (ep->lsock >= 0)
		return mrl_err(EALREADY, "mrl_ep_listen: already listening");
	if ((ret = resolve(host, port, &sa)))
		return ret;
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return mrl_err(errno, "socket: %s", strerror(errno));
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(s, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(s, 16) < 0 ||
	    getsockname(s, (struct sockaddr *)&sa, &sl) < 0) {
		ret = mrl_err(errno, "listen on %s:%u: %s", host, port, strerror(errno));
		close(s);
		return ret;
	}
	ep->lsock = s;
	if (bound)
		*bound = ntohs(sa.sin_port);
	return 0;
}

MRL_EXPORT int mrl_ep_accept(mrl_ep *ep, int timeout_ms, mrl_peer **out)
{
	if (!ep || !out)
		return mrl_err(EINVAL, "mrl_ep_accept: NULL %s", !ep ? "ep" : "out");
	MRL_CHILD_CHECK(ep->ctx, "mrl_ep_accept");
	if (ep->lsock < 0)
		return mrl_err(EINVAL, "mrl_ep_accept: call mrl_ep_listen first");
	struct pollfd pfd = {.fd = ep->lsock, .events = POLLIN};
	int pr = poll(&pfd, 1, timeout_ms);
	if (pr == 0)
		return -ETIMEDOUT;
	if (pr < 0)
		return mrl_err(errno, "accept: %s", strerror(errno));
	int s = accept4(ep->lsock, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (s < 0)
		return mrl_err(errno, "accept: %s", strerror(errno));
	return handshake(ep, s, timeout_ms > 0 ? timeout_ms : 5000, out);
}

MRL_EXPORT int mrl_ep_connect(mrl_ep *ep, const char *host, uint16_t port, int timeout_ms,
			      mrl_peer **out)
{
	struct sockaddr_in sa;
	int ret;
	if (!ep || !host || !out)
		return mrl_err(EINVAL, "mrl_ep_connect: NULL %s", !ep ? "ep" : !host ? "host" : "out");
	MRL_CHILD_CHECK(ep->ctx, "mrl_ep_connect");
	if (!port)
		return mrl_err(EINVAL, "mrl_ep_connect: port 0");
	if ((ret = resolve(host, port, &sa)))
		return ret;
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (s < 0)
		return mrl_err(errno, "socket: %s", strerror(errno));
	if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno != EINPROGRESS) {
		ret = mrl_err(errno, "connect %s:%u: %s", host, port, strerror(errno));
		close(s);
		return ret;
	}
	struct pollfd pfd = {.fd = s, .events = POLLOUT};
	int err = 0;
	socklen_t el = sizeof(err);
	if (poll(&pfd, 1, timeout_ms) <= 0) {
		close(s);
		return mrl_err(ETIMEDOUT, "connect %s:%u: timed out", host, port);
	}
	getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &el);
	if (err) {
		close(s);
		return mrl_err(err, "connect %s:%u: %s", host, port, strerror(err));
	}
	return handshake(ep, s, timeout_ms, out);
}

/* Send a request and drive progress until its answer arrives. */
static int request(struct mrl_peer *p, void *msg, size_t len, int timeout_ms, void *reply)
{
	struct mrl_ep *ep = p->ep;
	struct waiter *w = calloc(1, sizeof(*w));
	int ret;
	if (!w)
		return -ENOMEM;
	pthread_mutex_lock(&ep->lock);
	if (p->dead) {
		pthread_mutex_unlock(&ep->lock);
		free(w);
		return mrl_err(ENOTCONN, "peer %u is disconnected", p->idx);
	}
	w->req = ++ep->next_req;
	((struct msg_hdr *)msg)->req = w->req;
	w->next = ep->waiters;
	ep->waiters = w;
	ret = send_locked(ep, p, msg, len);
	uint64_t until = mrl_now_ns() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 5000) * 1000000ull;
	while (!ret && !w->done) {
		progress_locked(ep);
		if (w->done)
			break;
		if (p->dead)
			ret = mrl_err(ENOTCONN, "peer %u disconnected", p->idx);
		else if (mrl_now_ns() > until)
			ret = mrl_err(ETIMEDOUT, "peer %u did not answer", p->idx);
		else {
			pthread_mutex_unlock(&ep->lock);
			usleep(50);
			pthread_mutex_lock(&ep->lock);
		}
	}
	if (!ret)
		memcpy(reply, w->msg, MRL_MSG_MAX);
	for (struct waiter **pp = &ep->waiters; *pp; pp = &(*pp)->next)
		if (*pp == w) {
			*pp = w->next;
			break;
		}
	pthread_mutex_unlock(&ep->lock);
	free(w);
	return ret;
}

MRL_EXPORT int mrl_peer_list(mrl_peer *p, mrl_mr_t *ids, size_t max, int timeout_ms)
{
	if (!p || (!ids && max))
		return mrl_err(EINVAL, "mrl_peer_list: NULL %s", !p ? "peer" : "ids");
	MRL_CHILD_CHECK(p->ep->ctx, "mrl_peer_list");
	size_t n = 0;
	uint32_t start = 0;
	do {
		struct msg_list_req q;
		union {
			struct msg_list_rep r;
			unsigned char raw[MRL_MSG_MAX];
		} u;
		memset(&q, 0, sizeof(q));
		init_hdr(&q.h, MSG_LIST_REQ, sizeof(q), 0);
		q.start = start;
		int ret = request(p, &q, sizeof(q), timeout_ms, &u);
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
	init_hdr(&q.h, MSG_OPEN_REQ, sizeof(q), 0);
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
	pthread_mutex_lock(&p->ep->lock);
	if (rmr_find(p, id)) {
		pthread_mutex_unlock(&p->ep->lock);
		free(r);
		return mrl_err(EEXIST, "mrl_rmr_open: MR %#llx is already open on this peer",
			       (unsigned long long)id);
	}
	int ret = rmr_hash_add(p, r);
	if (ret) {
		pthread_mutex_unlock(&p->ep->lock);
		free(r);
		return ret;
	}
	r->next = p->rmrs;
	p->rmrs = r;
	pthread_mutex_unlock(&p->ep->lock);
	ret = request(p, &q, sizeof(q), timeout_ms, &u);
	pthread_mutex_lock(&p->ep->lock);
	if (!ret && u.s.status)
		ret = mrl_err(u.s.status, "mrl_rmr_open: owner refused MR %#llx: %s",
			      (unsigned long long)id, strerror(-u.s.status));
	if (!ret && (u.s.state < MRL_STATE_ACTIVE || u.s.state > MRL_STATE_DEREGISTERED ||
		     u.s.valid_len > u.s.len || !u.s.len))
		ret = mrl_err(EPROTO, "mrl_rmr_open: malformed reply");
	if (ret) {
		rmr_hash_del(p, r);
		r->closed = true;
		pthread_mutex_unlock(&p->ep->lock);
		return ret;
	}
	r->len = u.s.len;
	rmr_apply_state(p->ep, r, &u.s);
	pthread_mutex_unlock(&p->ep->lock);
	*out = r;
	return 0;
}

MRL_EXPORT int mrl_rmr_close(mrl_rmr *r)
{
	if (!r)
		return mrl_err(EINVAL, "mrl_rmr_close: NULL rmr");
	MRL_CHILD_CHECK(r->peer->ep->ctx, "mrl_rmr_close");
	struct mrl_ep *ep = r->peer->ep;
	pthread_mutex_lock(&ep->lock);
	if (r->closed) {
		pthread_mutex_unlock(&ep->lock);
		return mrl_err(EBADF, "mrl_rmr_close: already closed");
	}
	if (r->inflight) {
		pthread_mutex_unlock(&ep->lock);
		return mrl_err(EBUSY, "mrl_rmr_close: %llu operations in flight",
			       (unsigned long long)r->inflight);
	}
	rmr_fail_held(ep, r, -ECANCELED);
	rmr_hash_del(r->peer, r);
	r->closed = true;
	atomic_store(&r->ctl, RMR_SLOW);
	if (!r->peer->dead) {
		struct msg_id m;
		memset(&m, 0, sizeof(m));
		init_hdr(&m.h, MSG_CLOSE, sizeof(m), 0);
		m.id = r->id;
		send_locked(ep, r->peer, &m, sizeof(m));
	}
	pthread_mutex_unlock(&ep->lock);
	return 0;
}

MRL_EXPORT int mrl_rmr_query(mrl_rmr *r, struct mrl_rmr_info *info)
{
	if (!r || !info)
		return mrl_err(EINVAL, "mrl_rmr_query: NULL %s", !r ? "rmr" : "info");
	MRL_CHILD_CHECK(r->peer->ep->ctx, "mrl_rmr_query");
	if (info->size < sizeof(*info))
		return mrl_err(EINVAL, "mrl_rmr_query: info->size %zu too small", info->size);
	struct mrl_ep *ep = r->peer->ep;
	pthread_mutex_lock(&ep->lock);
	memset(info, 0, sizeof(*info));
	info->size = sizeof(*info);
	info->state = r->closed ? MRL_STATE_DEREGISTERED : r->state;
	info->generation = r->gen;
	info->cause = r->cause;
	info->length = r->len;
	info->valid_length = r->valid_len;
	info->key = r->key;
	info->held = r->nheld;
	info->inflight = r->inflight;
	pthread_mutex_unlock(&ep->lock);
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
