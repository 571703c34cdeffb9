/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Completion queues of an application-facing domain, and the operations the
 * hook counts in flight to a leased MR of another hooked process: such an
 * operation is posted with the hook's own context (room for the provider,
 * the application's context, the board entry it counts on); its completion
 * gives the application its context back and counts the operation out, so
 * an owner pausing the MR knows when nothing of this process can still reach it. */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "board.h"
#include "hook.h"
#include "mrl_int.h"

#define MAX_OPS (1u << 18)
static struct hook_op *_Atomic arena;
static struct hook_op *free_ops;
static unsigned arena_used;
static pthread_mutex_t ops_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t arena_once = PTHREAD_ONCE_INIT;

static void arena_map(void)
{
	void *p = mmap(NULL, MAX_OPS * sizeof(struct hook_op), PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	arena = p == MAP_FAILED ? NULL : p;
}

/* Each thread keeps a few free operations of its own (posts and the
 * completions that free them are mostly on one thread): no lock on the
 * fast path; the shared list behind a lock otherwise. */
#define LOCAL_OPS 64
__thread struct hook_op *hook_local_free HOOK_TLS;
__thread unsigned hook_nlocal HOOK_TLS;

/* hook_op_get when this thread has none free: the shared list, or the arena */
struct hook_op *hook_op_get_slow(struct board_ent *e, void *app)
{
	if (!atomic_load_explicit(&arena, memory_order_acquire))
		pthread_once(&arena_once, arena_map);
	if (!arena)
		return NULL;
	mrl_lock(&ops_lock);
	struct hook_op *op = free_ops;
	if (op)
		free_ops = op->next;
	else if (arena_used < MAX_OPS)
		op = &arena[arena_used++];
	mrl_unlock(&ops_lock);
	if (!op)
		return NULL;
	op->app = app; /* op->prov is the provider's to fill */
	op->e = e;
	op->silent = false;
	op->bounce = NULL;
	return op;
}

void hook_op_silence(struct hook_op *op, void *bounce)
{
	op->silent = true;
	op->bounce = bounce;
}

void hook_op_put(struct hook_op *op)
{
	if (op->bounce) {
		free(op->bounce);
		op->bounce = NULL;
	}
	if (hook_nlocal < LOCAL_OPS) {
		op->next = hook_local_free;
		hook_local_free = op;
		hook_nlocal++;
		return;
	}
	mrl_lock(&ops_lock);
	op->next = free_ops;
	free_ops = op;
	mrl_unlock(&ops_lock);
}

void hook_op_cancel(struct hook_op *op)
{
	atomic_fetch_sub(&op->e->inflight, 1);
	hook_op_put(op);
}

/* The application's context for a completion's context; an operation of
 * the hook's is counted out of its MR. *silent: the application asked for
 * no completion (an inject): the entry is the hook's alone. */
static inline void *op_done(void *ctx, bool *silent)
{
	struct hook_op *op = ctx;
	if (!arena || op < arena || op >= arena + MAX_OPS)
		return ctx;
	void *app = op->app;
	*silent = op->silent;
	atomic_fetch_sub(&op->e->inflight, 1);
	hook_op_put(op);
	return app;
}

struct hook_cq {
	struct fid_cq cq;
	struct fid_cq *hcq;
	size_t esize;
	bool waitable;                  /* it has a wait object: fi_cq_signal wakes sread */
	/* completions the hook gives for operations it finished itself
	 * (discarded past a truncated tail): returned before the provider's */
	pthread_mutex_t slock;          /* leaf */
	atomic_uint nsynth;
	unsigned cap;
	struct synth { void *ctx; uint64_t flags; } *synth;
};

int hook_cq_synth(struct fid *fid, void *ctx, uint64_t flags)
{
	if (!fid || fid->ops != &hook_cq_fid_ops)
		return -FI_ENOSYS; /* not the hook's: no way to complete into it */
	struct hook_cq *c = (struct hook_cq *)fid;
	mrl_lock(&c->slock);
	unsigned n = atomic_load(&c->nsynth);
	if (n == c->cap) {
		unsigned cap = c->cap ? 2 * c->cap : 16;
		struct synth *s = realloc(c->synth, cap * sizeof(*s));
		if (!s) {
			mrl_unlock(&c->slock);
			return -FI_ENOMEM;
		}
		c->synth = s;
		c->cap = cap;
	}
	c->synth[n].ctx = ctx;
	c->synth[n].flags = flags;
	atomic_store(&c->nsynth, n + 1);
	mrl_unlock(&c->slock);
	if (c->waitable) /* a reader blocked in the provider looks again */
		fi_cq_signal(c->hcq);
	return 0;
}

/* up to count of the hook's own completions into buf (src: no address) */
static ssize_t take_synth_(struct hook_cq *c, void *buf, size_t count, fi_addr_t *src)
{
	if (!count)
		return 0;
	mrl_lock(&c->slock);
	unsigned n = atomic_load(&c->nsynth), k = n < count ? n : (unsigned)count;
	for (unsigned i = 0; i < k; i++) {
		char *e = (char *)buf + (size_t)i * c->esize;
		memset(e, 0, c->esize);
		((struct fi_cq_entry *)e)->op_context = c->synth[i].ctx;
		if (c->esize >= sizeof(struct fi_cq_msg_entry))
			((struct fi_cq_msg_entry *)e)->flags = c->synth[i].flags;
		if (src)
			src[i] = FI_ADDR_NOTAVAIL;
	}
	memmove(c->synth, c->synth + k, (n - k) * sizeof(*c->synth));
	atomic_store(&c->nsynth, n - k);
	mrl_unlock(&c->slock);
	return k;
}

static inline ssize_t take_synth(struct hook_cq *c, void *buf, size_t count, fi_addr_t *src)
{
	return atomic_load_explicit(&c->nsynth, memory_order_relaxed) ? take_synth_(c, buf, count, src) : 0;
}

/* The application's contexts back in n entries of buf (and src): the
 * hook's own entries (silent injects) taken out. The entries left, or
 * -FI_EAGAIN when none is. */
static ssize_t fix_(struct hook_cq *c, void *buf, ssize_t n, fi_addr_t *src)
{
	ssize_t k = 0;
	for (ssize_t i = 0; i < n; i++) {
		char *ent = (char *)buf + (size_t)i * c->esize;
		void **ctx = (void **)ent; /* op_context leads every format */
		bool silent = false;
		*ctx = op_done(*ctx, &silent);
		if (silent)
			continue;
		if (k != i) {
			memmove((char *)buf + (size_t)k * c->esize, ent, c->esize);
			if (src)
				src[k] = src[i];
		}
		k++;
	}
	return n > 0 && !k ? -FI_EAGAIN : n > 0 ? k : n;
}

static inline ssize_t fix(struct hook_cq *c, void *buf, ssize_t n, fi_addr_t *src)
{
	return n > 0 ? fix_(c, buf, n, src) : n; /* an empty poll costs a compare */
}

#define HCQ(cq) (((struct hook_cq *)(cq))->hcq)

static ssize_t cq_read(struct fid_cq *cq, void *buf, size_t count)
{
	ssize_t n = take_synth((struct hook_cq *)cq, buf, count, NULL);
	if (n)
		return n;
	n = fi_cq_read(HCQ(cq), buf, count);
	return fix((struct hook_cq *)cq, buf, n, NULL);
}

static ssize_t cq_readfrom(struct fid_cq *cq, void *buf, size_t count, fi_addr_t *src)
{
	ssize_t n = take_synth((struct hook_cq *)cq, buf, count, src);
	if (n)
		return n;
	n = fi_cq_readfrom(HCQ(cq), buf, count, src);
	return fix((struct hook_cq *)cq, buf, n, src);
}

static ssize_t cq_readerr(struct fid_cq *cq, struct fi_cq_err_entry *buf, uint64_t flags)
{
	ssize_t n = fi_cq_readerr(HCQ(cq), buf, flags);
	bool silent = false; /* a failed inject: reported, with no context (it had none) */
	if (n > 0)
		buf->op_context = op_done(buf->op_context, &silent);
	return n;
}

static ssize_t cq_sread(struct fid_cq *cq, void *buf, size_t count, const void *cond, int timeout)
{
	ssize_t n = take_synth((struct hook_cq *)cq, buf, count, NULL);
	if (n)
		return n;
	do /* a wait that met only the hook's own entries waits again */
		n = fix((struct hook_cq *)cq, buf, fi_cq_sread(HCQ(cq), buf, count, cond, timeout), NULL);
	while (n == -FI_EAGAIN && timeout < 0);
	return n;
}

static ssize_t cq_sreadfrom(struct fid_cq *cq, void *buf, size_t count, fi_addr_t *src,
			    const void *cond, int timeout)
{
	ssize_t n = take_synth((struct hook_cq *)cq, buf, count, src);
	if (n)
		return n;
	do
		n = fix((struct hook_cq *)cq, buf, fi_cq_sreadfrom(HCQ(cq), buf, count, src, cond, timeout), src);
	while (n == -FI_EAGAIN && timeout < 0);
	return n;
}

static int cq_signal(struct fid_cq *cq) { return fi_cq_signal(HCQ(cq)); }

static const char *cq_strerror(struct fid_cq *cq, int prov_errno, const void *err_data, char *buf,
			       size_t len)
{
	return fi_cq_strerror(HCQ(cq), prov_errno, err_data, buf, len);
}

static struct fi_ops_cq hook_cq_ops = {
	.size = sizeof(struct fi_ops_cq),
	.read = cq_read,
	.readfrom = cq_readfrom,
	.readerr = cq_readerr,
	.sread = cq_sread,
	.sreadfrom = cq_sreadfrom,
	.signal = cq_signal,
	.strerror = cq_strerror,
};

static int cq_close(struct fid *fid)
{
	struct hook_cq *c = (struct hook_cq *)fid;
	int ret = fi_close(&c->hcq->fid);
	if (!ret) {
		pthread_mutex_destroy(&c->slock);
		free(c->synth);
		free(c);
	}
	return ret;
}
struct fi_ops hook_cq_fid_ops = HOOK_FID_OPS(cq_close);

bool hook_cq_ours(const struct fid *fid)
{
	return fid && fid->ops == &hook_cq_fid_ops;
}

struct fid *hook_cq_under(struct fid *fid)
{
	return &((struct hook_cq *)fid)->hcq->fid;
}

int hook_cq_open(struct fid_domain *hdomain, struct fi_cq_attr *attr, struct fid_cq **out,
		 void *context)
{
	struct fi_cq_attr a = *attr;
	size_t esize;
	switch (a.format) {
	case FI_CQ_FORMAT_UNSPEC: /* the hook needs to know the stride */
		a.format = FI_CQ_FORMAT_CONTEXT;
		/* fallthrough */
	case FI_CQ_FORMAT_CONTEXT:
		esize = sizeof(struct fi_cq_entry);
		break;
	case FI_CQ_FORMAT_MSG:
		esize = sizeof(struct fi_cq_msg_entry);
		break;
	case FI_CQ_FORMAT_DATA:
		esize = sizeof(struct fi_cq_data_entry);
		break;
	case FI_CQ_FORMAT_TAGGED:
		esize = sizeof(struct fi_cq_tagged_entry);
		break;
	default:
		return fi_cq_open(hdomain, attr, out, context);
	}
	struct hook_cq *c = calloc(1, sizeof(*c));
	if (!c)
		return -FI_ENOMEM;
	int ret = fi_cq_open(hdomain, &a, &c->hcq, context);
	if (ret) {
		free(c);
		return ret;
	}
	c->esize = esize;
	c->waitable = a.wait_obj != FI_WAIT_NONE;
	pthread_mutex_init(&c->slock, NULL);
	c->cq.fid.fclass = FI_CLASS_CQ;
	c->cq.fid.context = context;
	c->cq.fid.ops = &hook_cq_fid_ops;
	c->cq.ops = &hook_cq_ops;
	*out = &c->cq;
	return 0;
}
