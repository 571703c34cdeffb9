/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Endpoints of an application-facing domain (active, scalable, their tx/rx
 * contexts, shared receive contexts) and passive endpoints: every call goes
 * to the provider's endpoint, with the hook's MR descriptors translated to
 * the provider registration under them at post time. */
#include <stdlib.h>
#include <string.h>

#include "board.h"
#include "hook.h"

#define HEP(ep) (((struct hook_ep *)(ep))->hep)
#define HOOK_IOV_MAX 32

/* The provider's descriptors for count of the hook's, in tmp. */
static inline void **descs(void **desc, size_t count, void **tmp)
{
	if (!desc)
		return NULL;
	for (size_t i = 0; i < count; i++)
		tmp[i] = hook_desc(desc[i]);
	return tmp;
}
#define DESCS(var, d, n)                                                                     \
	void *var##_t[HOOK_IOV_MAX];                                                         \
	if ((d) && (n) > HOOK_IOV_MAX)                                                       \
		return -FI_EINVAL;                                                           \
	void **var = descs(d, n, var##_t)

/* ---- fi_ops_ep (shared with passive endpoints: unwrap by fid) ---- */
static ssize_t ep_cancel(fid_t fid, void *context)
{
	struct fid_ep *u = container_of(hook_unwrap(fid), struct fid_ep, fid);
	return u->ops->cancel(&u->fid, context);
}

static int ep_getopt(fid_t fid, int level, int optname, void *optval, size_t *optlen)
{
	struct fid_ep *u = container_of(hook_unwrap(fid), struct fid_ep, fid);
	return u->ops->getopt(&u->fid, level, optname, optval, optlen);
}

static int ep_setopt(fid_t fid, int level, int optname, const void *optval, size_t optlen)
{
	struct fid_ep *u = container_of(hook_unwrap(fid), struct fid_ep, fid);
	return u->ops->setopt(&u->fid, level, optname, optval, optlen);
}

static int ep_tx_ctx(struct fid_ep *sep, int index, struct fi_tx_attr *attr, struct fid_ep **tx,
		     void *context)
{
	struct fid_ep *h;
	int ret = fi_tx_context(HEP(sep), index, attr, &h, context);
	if (!ret)
		ret = hook_ep_wrap(((struct hook_ep *)sep)->dom, h,
				   attr ? attr->op_flags : ((struct hook_ep *)sep)->txflags, tx, context);
	if (!ret) /* it sends to the scalable endpoint's address vector */
		((struct hook_ep *)*tx)->av = ((struct hook_ep *)sep)->av;
	return ret;
}

static int ep_rx_ctx(struct fid_ep *sep, int index, struct fi_rx_attr *attr, struct fid_ep **rx,
		     void *context)
{
	struct fid_ep *h;
	int ret = fi_rx_context(HEP(sep), index, attr, &h, context);
	return ret ? ret : hook_ep_wrap(((struct hook_ep *)sep)->dom, h, 0, rx, context);
}

/* deprecated calls, still in the table: called through it as the inline did */
static ssize_t ep_rx_size_left(struct fid_ep *ep)
{
	struct fid_ep *u = HEP(ep);
	return FI_CHECK_OP(u->ops, struct fi_ops_ep, rx_size_left) ? u->ops->rx_size_left(u) : -FI_ENOSYS;
}
static ssize_t ep_tx_size_left(struct fid_ep *ep)
{
	struct fid_ep *u = HEP(ep);
	return FI_CHECK_OP(u->ops, struct fi_ops_ep, tx_size_left) ? u->ops->tx_size_left(u) : -FI_ENOSYS;
}

static struct fi_ops_ep hook_ep_ops = {
	.size = sizeof(struct fi_ops_ep),
	.cancel = ep_cancel,
	.getopt = ep_getopt,
	.setopt = ep_setopt,
	.tx_ctx = ep_tx_ctx,
	.rx_ctx = ep_rx_ctx,
	.rx_size_left = ep_rx_size_left,
	.tx_size_left = ep_tx_size_left,
};

/* ---- connection management ---- */
#define UEP(ep) container_of(hook_unwrap(&(ep)->fid), struct fid_ep, fid)
#define UPEP(pep) container_of(hook_unwrap(&(pep)->fid), struct fid_pep, fid)

static int cm_setname(fid_t fid, void *addr, size_t addrlen) { return fi_setname(hook_unwrap(fid), addr, addrlen); }
static int cm_getname(fid_t fid, void *addr, size_t *addrlen) { return fi_getname(hook_unwrap(fid), addr, addrlen); }
static int cm_getpeer(struct fid_ep *ep, void *addr, size_t *addrlen) { return fi_getpeer(UEP(ep), addr, addrlen); }
static int cm_connect(struct fid_ep *ep, const void *addr, const void *param, size_t paramlen)
{
	return fi_connect(UEP(ep), addr, param, paramlen);
}
static int cm_listen(struct fid_pep *pep) { return fi_listen(UPEP(pep)); }
static int cm_accept(struct fid_ep *ep, const void *param, size_t paramlen)
{
	return fi_accept(UEP(ep), param, paramlen);
}
static int cm_reject(struct fid_pep *pep, fid_t handle, const void *param, size_t paramlen)
{
	return fi_reject(UPEP(pep), handle, param, paramlen);
}
static int cm_shutdown(struct fid_ep *ep, uint64_t flags) { return fi_shutdown(UEP(ep), flags); }
static int cm_join(struct fid_ep *ep, const void *addr, uint64_t flags, struct fid_mc **mc, void *context)
{
	return fi_join(UEP(ep), addr, flags, mc, context);
}

static struct fi_ops_cm hook_cm_ops = {
	.size = sizeof(struct fi_ops_cm),
	.setname = cm_setname,
	.getname = cm_getname,
	.getpeer = cm_getpeer,
	.connect = cm_connect,
	.listen = cm_listen,
	.accept = cm_accept,
	.reject = cm_reject,
	.shutdown = cm_shutdown,
	.join = cm_join,
};

/* ---- messages ---- */
static ssize_t msg_recv(struct fid_ep *ep, void *buf, size_t len, void *desc, fi_addr_t src,
			void *context)
{
	return fi_recv(HEP(ep), buf, len, hook_desc(desc), src, context);
}

static ssize_t msg_recvv(struct fid_ep *ep, const struct iovec *iov, void **desc, size_t count,
			 fi_addr_t src, void *context)
{
	DESCS(desc_u, desc, count);
	return fi_recvv(HEP(ep), iov, desc_u, count, src, context);
}

static ssize_t msg_recvmsg(struct fid_ep *ep, const struct fi_msg *msg, uint64_t flags)
{
	struct fi_msg m = *msg;
	DESCS(md, msg->desc, msg->iov_count);
	m.desc = md;
	return fi_recvmsg(HEP(ep), &m, flags);
}

static ssize_t msg_send(struct fid_ep *ep, const void *buf, size_t len, void *desc, fi_addr_t dest,
			void *context)
{
	return fi_send(HEP(ep), buf, len, hook_desc(desc), dest, context);
}

static ssize_t msg_sendv(struct fid_ep *ep, const struct iovec *iov, void **desc, size_t count,
			 fi_addr_t dest, void *context)
{
	DESCS(desc_u, desc, count);
	return fi_sendv(HEP(ep), iov, desc_u, count, dest, context);
}

static ssize_t msg_sendmsg(struct fid_ep *ep, const struct fi_msg *msg, uint64_t flags)
{
	struct fi_msg m = *msg;
	DESCS(md, msg->desc, msg->iov_count);
	m.desc = md;
	return fi_sendmsg(HEP(ep), &m, flags);
}

static ssize_t msg_inject(struct fid_ep *ep, const void *buf, size_t len, fi_addr_t dest)
{
	return fi_inject(HEP(ep), buf, len, dest);
}

static ssize_t msg_senddata(struct fid_ep *ep, const void *buf, size_t len, void *desc,
			    uint64_t data, fi_addr_t dest, void *context)
{
	return fi_senddata(HEP(ep), buf, len, hook_desc(desc), data, dest, context);
}

static ssize_t msg_injectdata(struct fid_ep *ep, const void *buf, size_t len, uint64_t data,
			      fi_addr_t dest)
{
	return fi_injectdata(HEP(ep), buf, len, data, dest);
}

static struct fi_ops_msg hook_msg_ops = {
	.size = sizeof(struct fi_ops_msg),
	.recv = msg_recv,
	.recvv = msg_recvv,
	.recvmsg = msg_recvmsg,
	.send = msg_send,
	.sendv = msg_sendv,
	.sendmsg = msg_sendmsg,
	.inject = msg_inject,
	.senddata = msg_senddata,
	.injectdata = msg_injectdata,
};

/* ---- tagged ---- */
static ssize_t tag_recv(struct fid_ep *ep, void *buf, size_t len, void *desc, fi_addr_t src,
			uint64_t tag, uint64_t ignore, void *context)
{
	return fi_trecv(HEP(ep), buf, len, hook_desc(desc), src, tag, ignore, context);
}

static ssize_t tag_recvv(struct fid_ep *ep, const struct iovec *iov, void **desc, size_t count,
			 fi_addr_t src, uint64_t tag, uint64_t ignore, void *context)
{
	DESCS(desc_u, desc, count);
	return fi_trecvv(HEP(ep), iov, desc_u, count, src, tag, ignore, context);
}

static ssize_t tag_recvmsg(struct fid_ep *ep, const struct fi_msg_tagged *msg, uint64_t flags)
{
	struct fi_msg_tagged m = *msg;
	DESCS(md, msg->desc, msg->iov_count);
	m.desc = md;
	return fi_trecvmsg(HEP(ep), &m, flags);
}

static ssize_t tag_send(struct fid_ep *ep, const void *buf, size_t len, void *desc, fi_addr_t dest,
			uint64_t tag, void *context)
{
	return fi_tsend(HEP(ep), buf, len, hook_desc(desc), dest, tag, context);
}

static ssize_t tag_sendv(struct fid_ep *ep, const struct iovec *iov, void **desc, size_t count,
			 fi_addr_t dest, uint64_t tag, void *context)
{
	DESCS(desc_u, desc, count);
	return fi_tsendv(HEP(ep), iov, desc_u, count, dest, tag, context);
}

static ssize_t tag_sendmsg(struct fid_ep *ep, const struct fi_msg_tagged *msg, uint64_t flags)
{
	struct fi_msg_tagged m = *msg;
	DESCS(md, msg->desc, msg->iov_count);
	m.desc = md;
	return fi_tsendmsg(HEP(ep), &m, flags);
}

static ssize_t tag_inject(struct fid_ep *ep, const void *buf, size_t len, fi_addr_t dest,
			  uint64_t tag)
{
	return fi_tinject(HEP(ep), buf, len, dest, tag);
}

static ssize_t tag_senddata(struct fid_ep *ep, const void *buf, size_t len, void *desc,
			    uint64_t data, fi_addr_t dest, uint64_t tag, void *context)
{
	return fi_tsenddata(HEP(ep), buf, len, hook_desc(desc), data, dest, tag, context);
}

static ssize_t tag_injectdata(struct fid_ep *ep, const void *buf, size_t len, uint64_t data,
			      fi_addr_t dest, uint64_t tag)
{
	return fi_tinjectdata(HEP(ep), buf, len, data, dest, tag);
}

static struct fi_ops_tagged hook_tagged_ops = {
	.size = sizeof(struct fi_ops_tagged),
	.recv = tag_recv,
	.recvv = tag_recvv,
	.recvmsg = tag_recvmsg,
	.send = tag_send,
	.sendv = tag_sendv,
	.sendmsg = tag_sendmsg,
	.inject = tag_inject,
	.senddata = tag_senddata,
	.injectdata = tag_injectdata,
};

/* ---- RMA and atomics to another hooked process's leased MR ----
 * guard: 1 = the key is on no board (post as it is); 0 = counted in flight
 * (with *op the hook's context to post with, when a completion will count it
 * out); 2 = wholly past what the owner still serves, whose board says to
 * discard it (RMA only: tail); < 0 = the answer: -FI_EAGAIN while the owner
 * pauses the MR (the application retries after progress, as for a full
 * queue: the operation is held, never lost), -FI_EKEYREJECTED past what the
 * owner still serves. */
atomic_ullong hook_held, hook_refused, hook_discarded;

/* dest without the receive context in its high bits (fi_rx_addr) */
static inline uint64_t dest_addr(struct fid_ep *ep, fi_addr_t dest)
{
	struct hook_domain *d = ((struct hook_ep *)ep)->dom;
	unsigned bits = d ? d->rx_bits : 0;
	return bits && bits < 64 ? dest & ((1ull << (64 - bits)) - 1) : dest;
}

/* the board entry for key at the process dest names, NULL if none */
static inline struct board_ent *find(struct fid_ep *ep, fi_addr_t dest, uint64_t key)
{
	return board_find(((struct hook_ep *)ep)->av, dest_addr(ep, dest), key);
}

static inline int guard(struct fid_ep *ep, fi_addr_t dest, uint64_t key, uint64_t addr, size_t len,
			void *ctx, struct hook_op **op, struct board_ent **ent, bool tail)
{
	struct board_ent *e = find(ep, dest, key);
	if (!e && ((struct hook_ep *)ep)->av && relay_on()) /* another host's, through its relay */
		e = relay_find(((struct hook_ep *)ep)->av, ((struct hook_ep *)ep)->dom ? ((struct hook_ep *)ep)->dom->rx_bits : 0,
			       dest, key);
	*ent = NULL;
	if (op)
		*op = NULL;
	if (!e)
		return 1;
	atomic_fetch_add(&e->inflight, 1);
	uint32_t st = atomic_load(&e->state);
	int ret = 0;
	if (atomic_load_explicit(&e->key, memory_order_relaxed) != key)
		ret = 1;
	else if (st == BS_PAUSED)
		ret = -FI_EAGAIN;
	else if (st != BS_ACTIVE)
		ret = -FI_EKEYREJECTED;
	else if (addr >= e->base && addr - e->base <= e->len) {
		uint64_t off = addr - e->base, valid = atomic_load_explicit(&e->valid, memory_order_relaxed);
		if (off + len > valid)
			ret = tail && off >= valid && e->tail == BT_DISCARD ? 2 : -FI_EKEYREJECTED;
	}
	if (!ret && op && !(*op = hook_op_get(e, ctx)))
		ret = -FI_EAGAIN;
	if (ret) {
		atomic_fetch_sub(&e->inflight, 1);
		if (ret == -FI_EAGAIN)
			atomic_fetch_add_explicit(&hook_held, 1, memory_order_relaxed);
		else if (ret < 0)
			atomic_fetch_add_explicit(&hook_refused, 1, memory_order_relaxed);
		return ret;
	}
	*ent = e;
	return 0;
}

/* the key to post with: the provider's under the application's (strict
 * keys), read from the board after the guard saw the MR active */
static inline uint64_t pkey_of(struct board_ent *e, uint64_t key)
{
	uint64_t pk = e ? atomic_load(&e->pkey) : 0;
	return pk ? pk : key;
}

static size_t iov_len(const struct iovec *iov, size_t n)
{
	size_t l = 0;
	for (size_t i = 0; i < n; i++)
		l += iov[i].iov_len;
	return l;
}

/* One RMA call (read or write; plain, *v, *data, *msg or inject) on its
 * way to the provider. rma_pre guards it and does what the guard decides;
 * RMA_POST asks the caller to make its own call to the provider (with
 * c->desc and c->pctx) and hand the result to rma_done. */
enum { RMA_PLAIN, RMA_MSG, RMA_INJECT };
#define RMA_POST 1
struct rma_call {
	struct fid_ep *ep;
	bool write;
	int kind;
	const struct iovec *iov;
	size_t count;
	fi_addr_t peer;
	uint64_t addr, key, data, flags;  /* flags: a *msg call's */
	void *ctx;
	bool unguarded;                   /* a *msg call naming several remote ranges */
	bool cqdata;                      /* *writedata, *injectdata: data goes with it */
	/* set by rma_pre */
	void **desc;                      /* the provider's descriptors */
	void *pctx;                       /* the context to post with */
	struct hook_op *op;               /* counted out by its completion */
	struct board_ent *ge;             /* the board entry it is counted on */
	struct fid_cntr *cn;              /* the hook's counter it bumps, if any */
	bool by_cntr;                     /* ge counted out through cn, not a completion */
	void **dt;                        /* room for the provider's descriptors */
};

/* whether the application gets a completion queue entry for an operation
 * of kind (flags: a *msg call's) */
static bool completes_(const struct hook_ep *e, int kind, uint64_t flags)
{
	if (kind == RMA_INJECT || !e->txcq)
		return false;
	uint64_t fl = kind == RMA_MSG ? flags : e->txflags;
	return !e->selective || (fl & FI_COMPLETION);
}
static bool completes(const struct rma_call *c)
{
	return completes_((const struct hook_ep *)c->ep, c->kind, c->flags);
}

/* An operation wholly past a truncated tail whose owner discards it (what
 * it would have read, the caller zeroed): the completion (and counter cn)
 * the application expects is the hook's own. Where the hook cannot complete
 * it (no CQ of its own), it is refused after all. */
static ssize_t discard(struct hook_ep *e, bool cmpl, void *ctx, uint64_t cqflags, struct fid_cntr *cn)
{
	if (cmpl && hook_cq_synth(e->txcq, ctx, cqflags)) {
		atomic_fetch_add_explicit(&hook_refused, 1, memory_order_relaxed);
		return -FI_EKEYREJECTED;
	}
	if (cn)
		hook_cntr_synth(cn);
	atomic_fetch_add_explicit(&hook_discarded, 1, memory_order_relaxed);
	return 0;
}

/* RMA past the end: a write lands nowhere, a read gives zeroes */
static ssize_t rma_discard(struct rma_call *c)
{
	if (!c->write)
		for (size_t i = 0; i < c->count; i++)
			memset(c->iov[i].iov_base, 0, c->iov[i].iov_len);
	return discard((struct hook_ep *)c->ep, completes(c), c->ctx,
		       FI_RMA | (c->write ? FI_WRITE : FI_READ), c->cn);
}

/* after the provider's answer r: what was counted in goes out again on a
 * refusal; a counter learns of what it will count */
static ssize_t rma_done(struct rma_call *c, ssize_t r)
{
	if (r) {
		if (c->op)
			hook_op_cancel(c->op);
		else if (c->ge)
			atomic_fetch_sub(&c->ge->inflight, 1);
		return r;
	}
	if (c->cn)
		hook_cntr_issue(c->cn, c->by_cntr ? c->ge : NULL);
	else if (!c->op && c->ge) /* nothing will say when it is done */
		atomic_fetch_sub(&c->ge->inflight, 1);
	return 0;
}

static ssize_t rma_pre(struct rma_call *c, void **desc)
{
	struct hook_ep *e = (struct hook_ep *)c->ep;
	if (desc && c->count > HOOK_IOV_MAX)
		return -FI_EINVAL;
	c->desc = descs(desc, c->count, c->dt);
	c->pctx = c->ctx;
	c->op = NULL;
	c->ge = NULL;
	c->cn = c->write ? e->wcntr : e->rcntr;
	c->by_cntr = false;
	if (c->unguarded)
		return RMA_POST;
	/* an inject gets a completion only the hook reads, where its CQ is the hook's */
	bool silent = c->kind == RMA_INJECT && hook_cq_ours(e->txcq);
	bool cmpl = completes(c) || silent;
	int g = guard(c->ep, c->peer, c->key, c->addr, iov_len(c->iov, c->count), c->ctx,
		      cmpl ? &c->op : NULL, &c->ge, true);
	if (g < 0)
		return g;
	if (g == 2)
		return rma_discard(c);
	if (c->op && silent)
		hook_op_silence(c->op, NULL);
	if (c->op)
		c->pctx = c->op;
	if (c->ge) { /* strict keys: the provider's key under the application's (read after the state) */
		uint64_t pk = atomic_load(&c->ge->pkey);
		if (pk)
			c->key = pk;
	}
	c->by_cntr = c->ge && !c->op && c->cn;
	/* A write to a hooked owner's MR is counted out only once the owner's
	 * provider has taken it in (delivery complete): a transmit completion
	 * comes when the bytes leave, and an owner that closed its key as soon
	 * as the count fell would meet them after (tcp then drops the
	 * connection). An inject is posted as a write with FI_INJECT (its
	 * buffer is free on return, as the application expects) asking for
	 * delivery complete, with a completion the hook takes out of the
	 * application's CQ, or counted out by the counter it bumps; with
	 * neither, nothing can say when it is done: posted as it is. */
	if (!c->write || !c->ge || (!c->op && !c->by_cntr)) {
		if (c->kind == RMA_INJECT && c->ge) {
			static atomic_bool said;
			if (!atomic_exchange(&said, true))
				hook_log("an inject to a leased MR from an endpoint with neither a CQ nor a "
					 "counter of the hook's: counted done when posted (no delivery complete)");
		}
		return RMA_POST;
	}
	struct fi_rma_iov rma = {.addr = c->addr, .len = iov_len(c->iov, c->count), .key = c->key};
	struct fi_msg_rma m = {.msg_iov = c->iov, .desc = c->desc, .iov_count = c->count,
			       .addr = c->peer, .rma_iov = &rma, .rma_iov_count = 1,
			       .context = c->pctx, .data = c->data};
	uint64_t fl = c->kind == RMA_MSG ? c->flags : c->cqdata ? FI_REMOTE_CQ_DATA : 0;
	if (c->op)
		fl |= FI_COMPLETION;
	if (c->kind == RMA_INJECT)
		fl |= FI_INJECT;
	return rma_done(c, fi_writemsg(HEP(c->ep), &m, fl | FI_DELIVERY_COMPLETE));
}

#define RMA_CALL(w, k, iov_, n, peer_, addr_, key_, data_, flags_, ctx_)                      \
	void *dt_[HOOK_IOV_MAX];                                                             \
	struct rma_call c = {.ep = ep, .write = w, .kind = k, .iov = iov_, .count = n,         \
			     .peer = peer_, .addr = addr_, .key = key_, .data = data_,          \
			     .flags = flags_, .ctx = ctx_, .dt = dt_}

static ssize_t rma_read(struct fid_ep *ep, void *buf, size_t len, void *desc, fi_addr_t src,
			uint64_t addr, uint64_t key, void *context)
{
	struct iovec iov = {.iov_base = buf, .iov_len = len};
	RMA_CALL(false, RMA_PLAIN, &iov, 1, src, addr, key, 0, 0, context);
	ssize_t r = rma_pre(&c, desc ? &desc : NULL);
	return r != RMA_POST ? r : rma_done(&c, fi_read(HEP(ep), buf, len, c.desc ? c.desc[0] : NULL,
							src, addr, c.key, c.pctx));
}

static ssize_t rma_readv(struct fid_ep *ep, const struct iovec *iov, void **desc, size_t count,
			 fi_addr_t src, uint64_t addr, uint64_t key, void *context)
{
	RMA_CALL(false, RMA_PLAIN, iov, count, src, addr, key, 0, 0, context);
	ssize_t r = rma_pre(&c, desc);
	return r != RMA_POST ? r : rma_done(&c, fi_readv(HEP(ep), iov, c.desc, count, src, addr, c.key,
							 c.pctx));
}

/* a *msg call: guarded when it names one remote range */
static ssize_t rma_msg(struct fid_ep *ep, bool write, const struct fi_msg_rma *msg, uint64_t flags)
{
	bool one = msg->rma_iov_count == 1;
	RMA_CALL(write, RMA_MSG, msg->msg_iov, msg->iov_count, msg->addr,
		 one ? msg->rma_iov[0].addr : 0, one ? msg->rma_iov[0].key : 0, msg->data, flags,
		 msg->context);
	c.unguarded = !one;
	ssize_t r = rma_pre(&c, msg->desc);
	if (r != RMA_POST)
		return r;
	struct fi_msg_rma m = *msg;
	struct fi_rma_iov ri;
	m.desc = c.desc;
	m.context = c.pctx;
	if (one && c.key != msg->rma_iov[0].key) { /* translated (strict keys) */
		ri = msg->rma_iov[0];
		ri.key = c.key;
		m.rma_iov = &ri;
	}
	return rma_done(&c, write ? fi_writemsg(HEP(ep), &m, flags) : fi_readmsg(HEP(ep), &m, flags));
}

static ssize_t rma_readmsg(struct fid_ep *ep, const struct fi_msg_rma *msg, uint64_t flags)
{
	return rma_msg(ep, false, msg, flags);
}

/* fi_write's fast path: to a hooked owner's active MR, wholly within what it
 * serves, from an endpoint whose every write completes on the hook's CQ:
 * counted in, posted with the hook's context asking delivery complete.
 * Anything else (no board entry, a pause, past the end, a counter to tell)
 * is the general path's (rma_pre), which looks again. */
static inline ssize_t write_fast(struct fid_ep *ep, struct board_ent *e, const void *buf, size_t len,
				 void *desc, fi_addr_t dest, uint64_t addr, uint64_t key, void *context)
{
	atomic_fetch_add(&e->inflight, 1);
	uint64_t off = addr - e->base;
	if (atomic_load(&e->state) == BS_ACTIVE && atomic_load_explicit(&e->key, memory_order_relaxed) == key &&
	    addr >= e->base && off <= e->len && off + len <= atomic_load_explicit(&e->valid, memory_order_relaxed)) {
		struct hook_op *op = hook_op_get(e, context);
		if (op) {
			void *d = hook_desc(desc);
			uint64_t pk = atomic_load(&e->pkey);
			struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
			struct fi_rma_iov rma = {.addr = addr, .len = len, .key = pk ? pk : key};
			struct fi_msg_rma m = {.msg_iov = &iov, .desc = desc ? &d : NULL, .iov_count = 1,
					       .addr = dest, .rma_iov = &rma, .rma_iov_count = 1, .context = op};
			ssize_t r = fi_writemsg(HEP(ep), &m, FI_COMPLETION | FI_DELIVERY_COMPLETE);
			if (r)
				hook_op_cancel(op);
			return r;
		}
	}
	atomic_fetch_sub(&e->inflight, 1);
	return RMA_POST;
}

static ssize_t rma_write(struct fid_ep *ep, const void *buf, size_t len, void *desc,
			 fi_addr_t dest, uint64_t addr, uint64_t key, void *context)
{
	struct board_ent *e;
	if (((struct hook_ep *)ep)->fast && (e = find(ep, dest, key))) {
		ssize_t r = write_fast(ep, e, buf, len, desc, dest, addr, key, context);
		if (r != RMA_POST)
			return r;
	}
	struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
	RMA_CALL(true, RMA_PLAIN, &iov, 1, dest, addr, key, 0, 0, context);
	ssize_t r = rma_pre(&c, desc ? &desc : NULL);
	return r != RMA_POST ? r : rma_done(&c, fi_write(HEP(ep), buf, len, c.desc ? c.desc[0] : NULL,
							 dest, addr, c.key, c.pctx));
}

static ssize_t rma_writev(struct fid_ep *ep, const struct iovec *iov, void **desc, size_t count,
			  fi_addr_t dest, uint64_t addr, uint64_t key, void *context)
{
	RMA_CALL(true, RMA_PLAIN, iov, count, dest, addr, key, 0, 0, context);
	ssize_t r = rma_pre(&c, desc);
	return r != RMA_POST ? r : rma_done(&c, fi_writev(HEP(ep), iov, c.desc, count, dest, addr, c.key,
							  c.pctx));
}

static ssize_t rma_writemsg(struct fid_ep *ep, const struct fi_msg_rma *msg, uint64_t flags)
{
	return rma_msg(ep, true, msg, flags);
}

static ssize_t rma_inject(struct fid_ep *ep, const void *buf, size_t len, fi_addr_t dest,
			  uint64_t addr, uint64_t key)
{
	struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
	RMA_CALL(true, RMA_INJECT, &iov, 1, dest, addr, key, 0, 0, NULL);
	ssize_t r = rma_pre(&c, NULL);
	return r != RMA_POST ? r : rma_done(&c, fi_inject_write(HEP(ep), buf, len, dest, addr, c.key));
}

static ssize_t rma_writedata(struct fid_ep *ep, const void *buf, size_t len, void *desc,
			     uint64_t data, fi_addr_t dest, uint64_t addr, uint64_t key,
			     void *context)
{
	struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
	RMA_CALL(true, RMA_PLAIN, &iov, 1, dest, addr, key, data, 0, context);
	c.cqdata = true;
	ssize_t r = rma_pre(&c, desc ? &desc : NULL);
	return r != RMA_POST ? r : rma_done(&c, fi_writedata(HEP(ep), buf, len, c.desc ? c.desc[0] : NULL,
							     data, dest, addr, c.key, c.pctx));
}

static ssize_t rma_injectdata(struct fid_ep *ep, const void *buf, size_t len, uint64_t data,
			      fi_addr_t dest, uint64_t addr, uint64_t key)
{
	struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
	RMA_CALL(true, RMA_INJECT, &iov, 1, dest, addr, key, data, 0, NULL);
	c.cqdata = true;
	ssize_t r = rma_pre(&c, NULL);
	return r != RMA_POST ? r : rma_done(&c, fi_inject_writedata(HEP(ep), buf, len, data, dest,
								    addr, c.key));
}

static struct fi_ops_rma hook_rma_ops = {
	.size = sizeof(struct fi_ops_rma),
	.read = rma_read,
	.readv = rma_readv,
	.readmsg = rma_readmsg,
	.write = rma_write,
	.writev = rma_writev,
	.writemsg = rma_writemsg,
	.inject = rma_inject,
	.writedata = rma_writedata,
	.injectdata = rma_injectdata,
};

/* ---- atomics ----
 * Guarded as RMA over the bytes they touch. Wholly past a truncated end
 * whose owner discards it, an atomic is completed by the hook: it changes
 * nothing, a fetch or compare returns zeroes (what a read there gives). A
 * non-fetching atomic to a hooked owner's MR asks for delivery complete, as
 * a write does; an inject atomic is posted as an atomic of a copy of its
 * operand with a completion only the hook reads, where the endpoint's CQ is
 * the hook's (counted done at post otherwise, as before). */
static size_t dt_size(enum fi_datatype dt)
{
	switch (dt) {
	case FI_INT8: case FI_UINT8:
		return 1;
	case FI_INT16: case FI_UINT16:
		return 2;
	case FI_INT32: case FI_UINT32: case FI_FLOAT:
		return 4;
	case FI_INT64: case FI_UINT64: case FI_DOUBLE: case FI_FLOAT_COMPLEX:
		return 8;
	case FI_DOUBLE_COMPLEX: case FI_INT128: case FI_UINT128:
		return 16;
	case FI_LONG_DOUBLE:
		return sizeof(long double);
	case FI_LONG_DOUBLE_COMPLEX:
		return 2 * sizeof(long double);
	default:
		return 1; /* unknown to the hook: at least its first byte is checked */
	}
}

static size_t ioc_count(const struct fi_ioc *v, size_t n)
{
	size_t c = 0;
	for (size_t i = 0; i < n; i++)
		c += v[i].count;
	return c;
}

struct at_call {
	struct fid_ep *ep;
	int kind;                         /* RMA_PLAIN, RMA_MSG, RMA_INJECT */
	bool fetch;                       /* fetch or compare: returns data */
	enum fi_datatype dt;
	fi_addr_t dest;
	uint64_t addr, key, flags;        /* flags: a *msg call's */
	size_t elems;                     /* elements it touches remotely */
	void *ctx;
	bool unguarded;                   /* a *msg call naming several remote ranges */
	/* what a fetch returns into: zeroed when discarded */
	void *res;                        /* elems of dt, or */
	const struct fi_ioc *resv;        /* nres of them */
	size_t nres;
	/* set by at_pre */
	void *pctx;
	struct hook_op *op;
	struct board_ent *ge;
	bool dc;                          /* post as *msg asking delivery complete (non-fetching) */
};

static ssize_t at_pre(struct at_call *c)
{
	struct hook_ep *e = (struct hook_ep *)c->ep;
	c->pctx = c->ctx;
	c->op = NULL;
	c->ge = NULL;
	c->dc = false;
	if (c->unguarded)
		return RMA_POST;
	size_t sz = dt_size(c->dt);
	bool silent = c->kind == RMA_INJECT && hook_cq_ours(e->txcq);
	bool cmpl = completes_(e, c->kind, c->flags) || silent;
	int g = guard(c->ep, c->dest, c->key, c->addr, c->elems * sz, c->ctx, cmpl ? &c->op : NULL,
		      &c->ge, true);
	if (g < 0)
		return g;
	if (g == 2) {
		if (c->res)
			memset(c->res, 0, c->elems * sz);
		for (size_t i = 0; c->resv && i < c->nres; i++)
			memset(c->resv[i].addr, 0, c->resv[i].count * sz);
		return discard(e, completes_(e, c->kind, c->flags), c->ctx,
			       FI_ATOMIC | (c->fetch ? FI_READ : FI_WRITE), c->fetch ? e->rcntr : e->wcntr);
	}
	if (c->op && silent)
		hook_op_silence(c->op, NULL);
	if (c->op)
		c->pctx = c->op;
	c->key = pkey_of(c->ge, c->key);
	c->dc = c->op && !c->fetch && c->kind != RMA_MSG;
	return RMA_POST;
}

/* after posting: an operation refused, or one no completion will count out */
static inline ssize_t at_done(struct at_call *c, ssize_t r)
{
	if (c->op && r)
		hook_op_cancel(c->op);
	else if (!c->op && c->ge)
		atomic_fetch_sub(&c->ge->inflight, 1);
	return r;
}

/* a non-fetching atomic counted out by its completion: as *msg, delivery complete */
static ssize_t at_post_dc(struct at_call *c, const struct fi_ioc *iov, void **desc, size_t count,
			  fi_addr_t dest, enum fi_op aop)
{
	struct fi_rma_ioc r = {.addr = c->addr, .count = c->elems, .key = c->key};
	struct fi_msg_atomic m = {.msg_iov = iov, .desc = desc, .iov_count = count, .addr = dest,
				  .rma_iov = &r, .rma_iov_count = 1, .datatype = c->dt, .op = aop,
				  .context = c->pctx};
	return at_done(c, fi_atomicmsg(HEP(c->ep), &m, FI_COMPLETION | FI_DELIVERY_COMPLETE));
}

#define AT_CALL(k, fetch_, dt_, addr_, key_, elems_, ctx_)                                   \
	struct at_call c = {.ep = ep, .kind = k, .fetch = fetch_, .dt = dt_, .dest = dest,    \
			    .addr = addr_, .key = key_, .elems = elems_, .ctx = ctx_}

static ssize_t at_write(struct fid_ep *ep, const void *buf, size_t count, void *desc,
			fi_addr_t dest, uint64_t addr, uint64_t key, enum fi_datatype dt,
			enum fi_op aop, void *context)
{
	AT_CALL(RMA_PLAIN, false, dt, addr, key, count, context);
	ssize_t r = at_pre(&c);
	if (r != RMA_POST)
		return r;
	if (c.dc) {
		struct fi_ioc iov = {.addr = (void *)buf, .count = count};
		void *d = hook_desc(desc);
		return at_post_dc(&c, &iov, desc ? &d : NULL, 1, dest, aop);
	}
	return at_done(&c, fi_atomic(HEP(ep), buf, count, hook_desc(desc), dest, addr, c.key, dt, aop,
				     c.pctx));
}

static ssize_t at_writev(struct fid_ep *ep, const struct fi_ioc *iov, void **desc, size_t count,
			 fi_addr_t dest, uint64_t addr, uint64_t key, enum fi_datatype dt,
			 enum fi_op aop, void *context)
{
	DESCS(desc_u, desc, count);
	AT_CALL(RMA_PLAIN, false, dt, addr, key, ioc_count(iov, count), context);
	ssize_t r = at_pre(&c);
	if (r != RMA_POST)
		return r;
	if (c.dc)
		return at_post_dc(&c, iov, desc_u, count, dest, aop);
	return at_done(&c, fi_atomicv(HEP(ep), iov, desc_u, count, dest, addr, c.key, dt, aop, c.pctx));
}

/* a *msg atomic: guarded when it names one remote range; the provider's
 * key put in where strict keys translate it (into *ri) */
#define AT_MSG(fetch_)                                                                       \
	struct fi_msg_atomic m = *msg;                                                       \
	fi_addr_t dest = msg->addr;                                                          \
	bool one = msg->rma_iov_count == 1;                                                  \
	AT_CALL(RMA_MSG, fetch_, msg->datatype, one ? msg->rma_iov[0].addr : 0,               \
		one ? msg->rma_iov[0].key : 0, one ? msg->rma_iov[0].count : 0, msg->context); \
	c.flags = flags;                                                                     \
	c.unguarded = !one;                                                                  \
	struct fi_rma_ioc ri

static inline void at_msg_fix(struct at_call *c, const struct fi_msg_atomic *msg,
			      struct fi_msg_atomic *m, struct fi_rma_ioc *ri, void **md)
{
	m->desc = md;
	m->context = c->pctx;
	if (!c->unguarded && c->key != msg->rma_iov[0].key) { /* translated (strict keys) */
		*ri = msg->rma_iov[0];
		ri->key = c->key;
		m->rma_iov = ri;
	}
}

static ssize_t at_writemsg(struct fid_ep *ep, const struct fi_msg_atomic *msg, uint64_t flags)
{
	DESCS(md, msg->desc, msg->iov_count);
	AT_MSG(false);
	ssize_t r = at_pre(&c);
	if (r != RMA_POST)
		return r;
	at_msg_fix(&c, msg, &m, &ri, md);
	return at_done(&c, fi_atomicmsg(HEP(ep), &m, flags));
}

static ssize_t at_inject(struct fid_ep *ep, const void *buf, size_t count, fi_addr_t dest,
			 uint64_t addr, uint64_t key, enum fi_datatype dt, enum fi_op aop)
{
	AT_CALL(RMA_INJECT, false, dt, addr, key, count, NULL);
	ssize_t r = at_pre(&c);
	if (r != RMA_POST)
		return r;
	if (c.dc) { /* the operand copied (an atomic *msg with FI_INJECT gets no completion from ofi_rxm) */
		size_t len = count * dt_size(dt);
		void *b = malloc(len ? len : 1);
		if (!b)
			return at_done(&c, -FI_EAGAIN);
		memcpy(b, buf, len);
		hook_op_silence(c.op, b);
		struct fi_ioc iov = {.addr = b, .count = count};
		return at_post_dc(&c, &iov, NULL, 1, dest, aop);
	}
	return at_done(&c, fi_inject_atomic(HEP(ep), buf, count, dest, addr, c.key, dt, aop));
}

static ssize_t at_readwrite(struct fid_ep *ep, const void *buf, size_t count, void *desc,
			    void *result, void *result_desc, fi_addr_t dest, uint64_t addr,
			    uint64_t key, enum fi_datatype dt, enum fi_op aop, void *context)
{
	AT_CALL(RMA_PLAIN, true, dt, addr, key, count, context);
	c.res = result;
	ssize_t r = at_pre(&c);
	return r != RMA_POST ? r : at_done(&c, fi_fetch_atomic(HEP(ep), buf, count, hook_desc(desc), result,
							    hook_desc(result_desc), dest, addr, c.key, dt,
							    aop, c.pctx));
}

static ssize_t at_readwritev(struct fid_ep *ep, const struct fi_ioc *iov, void **desc,
			     size_t count, struct fi_ioc *resultv, void **result_desc,
			     size_t result_count, fi_addr_t dest, uint64_t addr, uint64_t key,
			     enum fi_datatype dt, enum fi_op aop, void *context)
{
	DESCS(desc_u, desc, count);
	DESCS(result_desc_u, result_desc, result_count);
	AT_CALL(RMA_PLAIN, true, dt, addr, key, ioc_count(iov, count), context);
	c.resv = resultv;
	c.nres = result_count;
	ssize_t r = at_pre(&c);
	return r != RMA_POST ? r : at_done(&c, fi_fetch_atomicv(HEP(ep), iov, desc_u, count, resultv,
							     result_desc_u, result_count, dest, addr,
							     c.key, dt, aop, c.pctx));
}

static ssize_t at_readwritemsg(struct fid_ep *ep, const struct fi_msg_atomic *msg,
			       struct fi_ioc *resultv, void **result_desc, size_t result_count,
			       uint64_t flags)
{
	DESCS(md, msg->desc, msg->iov_count);
	DESCS(result_desc_u, result_desc, result_count);
	AT_MSG(true);
	c.resv = resultv;
	c.nres = result_count;
	ssize_t r = at_pre(&c);
	if (r != RMA_POST)
		return r;
	at_msg_fix(&c, msg, &m, &ri, md);
	return at_done(&c, fi_fetch_atomicmsg(HEP(ep), &m, resultv, result_desc_u, result_count, flags));
}

static ssize_t at_compwrite(struct fid_ep *ep, const void *buf, size_t count, void *desc,
			    const void *compare, void *compare_desc, void *result,
			    void *result_desc, fi_addr_t dest, uint64_t addr, uint64_t key,
			    enum fi_datatype dt, enum fi_op aop, void *context)
{
	AT_CALL(RMA_PLAIN, true, dt, addr, key, count, context);
	c.res = result;
	ssize_t r = at_pre(&c);
	return r != RMA_POST ? r : at_done(&c, fi_compare_atomic(HEP(ep), buf, count, hook_desc(desc), compare,
							      hook_desc(compare_desc), result,
							      hook_desc(result_desc), dest, addr, c.key,
							      dt, aop, c.pctx));
}

static ssize_t at_compwritev(struct fid_ep *ep, const struct fi_ioc *iov, void **desc,
			     size_t count, const struct fi_ioc *comparev, void **compare_desc,
			     size_t compare_count, struct fi_ioc *resultv, void **result_desc,
			     size_t result_count, fi_addr_t dest, uint64_t addr, uint64_t key,
			     enum fi_datatype dt, enum fi_op aop, void *context)
{
	DESCS(desc_u, desc, count);
	DESCS(compare_desc_u, compare_desc, compare_count);
	DESCS(result_desc_u, result_desc, result_count);
	AT_CALL(RMA_PLAIN, true, dt, addr, key, ioc_count(iov, count), context);
	c.resv = resultv;
	c.nres = result_count;
	ssize_t r = at_pre(&c);
	return r != RMA_POST ? r : at_done(&c, fi_compare_atomicv(HEP(ep), iov, desc_u, count, comparev,
							       compare_desc_u, compare_count, resultv,
							       result_desc_u, result_count, dest, addr,
							       c.key, dt, aop, c.pctx));
}

static ssize_t at_compwritemsg(struct fid_ep *ep, const struct fi_msg_atomic *msg,
			       const struct fi_ioc *comparev, void **compare_desc,
			       size_t compare_count, struct fi_ioc *resultv, void **result_desc,
			       size_t result_count, uint64_t flags)
{
	DESCS(md, msg->desc, msg->iov_count);
	DESCS(compare_desc_u, compare_desc, compare_count);
	DESCS(result_desc_u, result_desc, result_count);
	AT_MSG(true);
	c.resv = resultv;
	c.nres = result_count;
	ssize_t r = at_pre(&c);
	if (r != RMA_POST)
		return r;
	at_msg_fix(&c, msg, &m, &ri, md);
	return at_done(&c, fi_compare_atomicmsg(HEP(ep), &m, comparev, compare_desc_u, compare_count,
						resultv, result_desc_u, result_count, flags));
}

static int at_writevalid(struct fid_ep *ep, enum fi_datatype dt, enum fi_op aop, size_t *count)
{
	return fi_atomicvalid(HEP(ep), dt, aop, count);
}

static int at_readwritevalid(struct fid_ep *ep, enum fi_datatype dt, enum fi_op aop, size_t *count)
{
	return fi_fetch_atomicvalid(HEP(ep), dt, aop, count);
}

static int at_compwritevalid(struct fid_ep *ep, enum fi_datatype dt, enum fi_op aop, size_t *count)
{
	return fi_compare_atomicvalid(HEP(ep), dt, aop, count);
}

static struct fi_ops_atomic hook_atomic_ops = {
	.size = sizeof(struct fi_ops_atomic),
	.write = at_write,
	.writev = at_writev,
	.writemsg = at_writemsg,
	.inject = at_inject,
	.readwrite = at_readwrite,
	.readwritev = at_readwritev,
	.readwritemsg = at_readwritemsg,
	.compwrite = at_compwrite,
	.compwritev = at_compwritev,
	.compwritemsg = at_compwritemsg,
	.writevalid = at_writevalid,
	.readwritevalid = at_readwritevalid,
	.compwritevalid = at_compwritevalid,
};

/* ---- objects ---- */
static int ep_close(struct fid *fid)
{
	struct hook_ep *e = (struct hook_ep *)fid;
	struct fid *u = &e->hep->fid;
	int ret = fi_close(u);
	if (ret)
		return ret;
	hook_untrack(u);
	free(e);
	return 0;
}

/* whether the fast path applies (write_fast) */
static void ep_fast(struct hook_ep *e)
{
	e->fast = hook_cq_ours(e->txcq) && (!e->selective || (e->txflags & FI_COMPLETION)) && !e->wcntr &&
		  !e->rcntr;
}

static int ep_bind(struct fid *fid, struct fid *bfid, uint64_t flags)
{
	struct hook_ep *e = (struct hook_ep *)fid;
	int ret = hook_fwd_bind(fid, bfid, flags);
	if (!ret && bfid && bfid->fclass == FI_CLASS_CQ && (flags & FI_TRANSMIT)) {
		e->selective = flags & FI_SELECTIVE_COMPLETION;
		e->txcq = bfid;
	}
	if (!ret && bfid && bfid->fclass == FI_CLASS_CNTR && bfid->ops == &hook_cntr_fid_ops) {
		struct fid_cntr *cn = container_of(bfid, struct fid_cntr, fid);
		if (flags & FI_WRITE)
			e->wcntr = cn;
		if (flags & FI_READ)
			e->rcntr = cn;
	}
	if (!ret && bfid && bfid->fclass == FI_CLASS_AV)
		e->av = container_of(bfid, struct fid_av, fid);
	ep_fast(e);
	return ret;
}

/* an endpoint enabled: its address goes on this process's board, where
 * hooked initiators on the host look for the owner they write to */
static int ep_control(struct fid *fid, int command, void *arg)
{
	int ret = hook_fwd_control(fid, command, arg);
	struct fid *u = hook_unwrap(fid);
	/* an endpoint or a scalable one has an address; its tx/rx contexts
	 * have none (no cm ops) */
	if (!ret && command == FI_ENABLE && (u->fclass == FI_CLASS_EP || u->fclass == FI_CLASS_SEP)) {
		struct fid_ep *uep = container_of(u, struct fid_ep, fid);
		uint8_t name[BOARD_NAME_MAX + 8];
		size_t len = sizeof(name);
		if (uep->cm && uep->cm->getname && uep->cm->getname(u, name, &len) == 0)
			board_add_name(name, len);
	}
	return ret;
}

struct fi_ops hook_ep_fid_ops = {
	.size = sizeof(struct fi_ops),
	.close = ep_close,
	.bind = ep_bind,
	.control = ep_control,
	.ops_open = hook_fwd_ops_open,
	.tostr = hook_fwd_tostr,
	.ops_set = hook_fwd_ops_set,
};

int hook_ep_wrap(struct hook_domain *dom, struct fid_ep *hep, uint64_t txflags, struct fid_ep **out,
		 void *context)
{
	struct hook_ep *e = calloc(1, sizeof(*e));
	if (!e) {
		fi_close(&hep->fid);
		return -FI_ENOMEM;
	}
	e->hep = hep;
	e->dom = dom;
	e->txflags = txflags;
	if (dom) {
		atomic_ullong *n = hep->fid.fclass == FI_CLASS_SEP      ? &dom->n.seps
				   : hep->fid.fclass == FI_CLASS_TX_CTX ? &dom->n.txctxs
				   : hep->fid.fclass == FI_CLASS_EP     ? &dom->n.eps
									: NULL;
		if (n)
			atomic_fetch_add_explicit(n, 1, memory_order_relaxed);
	}
	e->ep.fid.fclass = hep->fid.fclass;
	e->ep.fid.context = context;
	e->ep.fid.ops = &hook_ep_fid_ops;
	e->ep.ops = &hook_ep_ops;
	e->ep.cm = &hook_cm_ops;
	e->ep.msg = &hook_msg_ops;
	e->ep.rma = &hook_rma_ops;
	e->ep.tagged = &hook_tagged_ops;
	e->ep.atomic = &hook_atomic_ops;
	e->ep.collective = NULL; /* not carried through the hook */
	hook_track(&hep->fid, &e->ep.fid);
	*out = &e->ep;
	return 0;
}

static int pep_close(struct fid *fid)
{
	struct hook_pep *p = (struct hook_pep *)fid;
	struct fid *u = &p->hpep->fid;
	int ret = fi_close(u);
	if (ret)
		return ret;
	hook_untrack(u);
	free(p);
	return 0;
}

struct fi_ops hook_pep_fid_ops = HOOK_FID_OPS(pep_close);

int hook_pep_wrap(struct fid_pep *hpep, struct fid_pep **out, void *context)
{
	struct hook_pep *p = calloc(1, sizeof(*p));
	if (!p) {
		fi_close(&hpep->fid);
		return -FI_ENOMEM;
	}
	p->hpep = hpep;
	p->pep.fid.fclass = FI_CLASS_PEP;
	p->pep.fid.context = context;
	p->pep.fid.ops = &hook_pep_fid_ops;
	p->pep.ops = &hook_ep_ops;
	p->pep.cm = &hook_cm_ops;
	hook_track(&hpep->fid, &p->pep.fid);
	*out = &p->pep;
	return 0;
}
