/* The context: creates and destroys the registrar, the watchers and the
 * monitor; holds the event queue, the outbox of control messages and the counters. */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "mrl_int.h"
#include "proto.h"

#define EVQ_MAX 65536 /* informational events beyond this are dropped and counted */

/* ---- fork ---- */
static void fork_child(void)
{
	atomic_fetch_add(&mrl_fork_gen, 1);
}

static void fork_watch_once(void)
{
	pthread_atfork(NULL, NULL, fork_child);
}

void mrl_fork_watch(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, fork_watch_once);
}

/* ---- events ---- */
/* each context's tag in its events' sequence numbers (wraps after 2^20 contexts) */
static _Atomic uint32_t ev_tags = 1;

void mrl_post_event(struct mrl_ctx *ctx, struct mrl_mr *mr, uint32_t type, uint32_t cause,
		    uint64_t off, uint64_t len, pid_t pid, uint64_t deadline, uint64_t seen)
{
	pthread_mutex_lock(&ctx->evq_lock);
	/* A break the owner must answer is never dropped; the rest may be. */
	if (ctx->evq_len >= EVQ_MAX && !(type == MRL_EVENT_BREAK && mr->policy == MRL_POLICY_NOTIFY)) {
		ctx->st.events_dropped++;
		pthread_mutex_unlock(&ctx->evq_lock);
		return;
	}
	struct mrl_evq_item *it = calloc(1, sizeof(*it));
	if (!it) {
		ctx->st.events_dropped++;
		pthread_mutex_unlock(&ctx->evq_lock);
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
	pthread_mutex_unlock(&ctx->evq_lock);
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
static void ev_release_all(struct mrl_ctx *ctx)
{
	pthread_mutex_lock(&ctx->lock);
	pthread_mutex_lock(&ctx->evq_lock);
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
	pthread_mutex_unlock(&ctx->evq_lock);
	while (list) {
		struct mrl_evq_item *it = list;
		list = it->next;
		mrl_mr_put(ctx, it->mr);
		free(it);
	}
	pthread_mutex_unlock(&ctx->lock);
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
	pthread_mutex_lock(&ctx->evq_lock);
	struct mrl_evq_item *it = ctx->evq_head;
	if (!it) {
		uint64_t v;
		/* drain the eventfd so poll() stops reporting it */
		if (read(ctx->ev_fd, &v, sizeof(v)) < 0) {
		}
		pthread_mutex_unlock(&ctx->evq_lock);
		return -EAGAIN;
	}
	if (evo_reserve(ctx)) { /* the event stays queued for a later get */
		pthread_mutex_unlock(&ctx->evq_lock);
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
	pthread_mutex_unlock(&ctx->evq_lock);
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
	pthread_mutex_lock(&ctx->lock);
	pthread_mutex_lock(&ctx->evq_lock);
	struct mrl_evq_item *it = evo_take(ctx, seq, h, &why);
	pthread_mutex_unlock(&ctx->evq_lock);
	if (it)
		mrl_mr_put(ctx, it->mr);
	pthread_mutex_unlock(&ctx->lock);
	if (!it)
		return mrl_err(EINVAL, "mrl_event_ack: event %#llx for MR %#llx %s",
			       (unsigned long long)seq, (unsigned long long)h, why);
	free(it);
	return 0;
}

/* ---- outbox: control messages decided under ctx->lock, sent without it ---- */
static void close_batch(struct mrl_ctx *ctx, struct mrl_peer *peer)
{
	for (int i = 0; i < MRL_OPEN_BATCHES; i++)
		if (ctx->open_batch[i] && ctx->open_batch[i]->peer == peer)
			ctx->open_batch[i] = NULL;
}

void mrl_outbox_close_batches(struct mrl_ctx *ctx)
{
	memset(ctx->open_batch, 0, sizeof(ctx->open_batch));
}

static struct mrl_out *outbox_add(struct mrl_ctx *ctx, struct mrl_peer *peer, size_t cap)
{
	struct mrl_out *o = malloc(sizeof(*o) + cap);
	if (!o)
		return NULL; /* the peer then times out and is cut off: safe, if not hitless */
	o->next = NULL;
	o->peer = peer;
	o->len = 0;
	*ctx->outbox_tail = o;
	ctx->outbox_tail = &o->next;
	return o;
}

void mrl_queue_out(struct mrl_ctx *ctx, struct mrl_peer *peer, const void *msg, size_t len)
{
	close_batch(ctx, peer); /* what follows must not overtake this */
	struct mrl_out *o = outbox_add(ctx, peer, len);
	if (o) {
		o->len = len;
		memcpy(o->buf, msg, len);
	}
}

/* Many MRs change state at once (a restore after a break over 10,000 of
 * them): one MSG_STATES per peer carries up to MRL_STATES_MAX of them. */
void mrl_queue_state(struct mrl_ctx *ctx, struct mrl_peer *peer, const struct state_ent *e)
{
	struct mrl_out *o = NULL;
	int slot = -1;
	for (int i = 0; i < MRL_OPEN_BATCHES; i++) {
		if (ctx->open_batch[i] && ctx->open_batch[i]->peer == peer)
			o = ctx->open_batch[i], slot = i;
		else if (!ctx->open_batch[i] && slot < 0)
			slot = i;
	}
	struct msg_states *m = o ? (struct msg_states *)o->buf : NULL;
	if (!m || m->n == MRL_STATES_MAX) {
		if (!(o = outbox_add(ctx, peer, sizeof(*m))))
			return;
		m = (struct msg_states *)o->buf;
		memset(&m->h, 0, sizeof(m->h));
		m->h.magic = MRL_MAGIC;
		m->h.type = MSG_STATES;
		m->n = 0;
		m->pad = 0;
		if (slot < 0)
			slot = 0; /* more peers than slots: the evicted batch is just closed */
		ctx->open_batch[slot] = o;
	}
	m->e[m->n++] = *e;
	o->len = offsetof(struct msg_states, e) + m->n * sizeof(m->e[0]);
	m->h.len = (uint16_t)o->len;
}

void mrl_flush_outbox(struct mrl_ctx *ctx)
{
	/* flush_lock keeps mrl_ep_destroy from freeing a peer we are sending to */
	pthread_mutex_lock(&ctx->flush_lock);
	pthread_mutex_lock(&ctx->lock);
	struct mrl_out *o = ctx->outbox;
	ctx->outbox = NULL;
	ctx->outbox_tail = &ctx->outbox;
	mrl_outbox_close_batches(ctx);
	pthread_mutex_unlock(&ctx->lock);
	while (o) {
		struct mrl_out *n = o->next;
		mrl_ep_send_raw(o->peer, o->buf, o->len);
		free(o);
		o = n;
	}
	pthread_mutex_unlock(&ctx->flush_lock);
}

void mrl_wake_monitor(struct mrl_ctx *ctx)
{
	uint64_t one = 1;
	if (ctx->wake_fd >= 0 && write(ctx->wake_fd, &one, sizeof(one)) < 0) {
	}
}

/* ---- context ---- */
MRL_EXPORT int mrl_ctx_create(const struct mrl_ctx_opts *opts, mrl_ctx **out)
{
	int ret;
	if (!out)
		return mrl_err(EINVAL, "mrl_ctx_create: NULL out");
	*out = NULL;
	if (opts && opts->size < offsetof(struct mrl_ctx_opts, flags) + sizeof(opts->flags))
		return mrl_err(EINVAL, "mrl_ctx_create: opts->size %zu too small (set it to sizeof)",
			       opts->size);
	struct mrl_ctx *ctx = calloc(1, sizeof(*ctx));
	if (!ctx)
		return -ENOMEM;
	if (opts)
		/* an older caller's struct may be shorter: copy what it has */
		memcpy(&ctx->opts, opts, opts->size < sizeof(*opts) ? opts->size : sizeof(*opts));
	ctx->opts.size = sizeof(ctx->opts);
	if (!ctx->opts.provider)
		ctx->opts.provider = "tcp;ofi_rxm";
	if (!ctx->opts.addr)
		ctx->opts.addr = "127.0.0.1";
	if (!ctx->opts.deadline_ms)
		ctx->opts.deadline_ms = 2000;
	if (!ctx->opts.relock_ms)
		ctx->opts.relock_ms = 50;
	if (!ctx->opts.signo)
		ctx->opts.signo = SIGRTMIN + 4;
	if (ctx->opts.signo < SIGRTMIN || ctx->opts.signo > SIGRTMAX) {
		free(ctx);
		return mrl_err(EINVAL, "mrl_ctx_create: signo %d is not a realtime signal",
			       opts->signo);
	}
	ctx->leases = !(ctx->opts.flags & MRL_CTX_NO_LEASES);
	mrl_fork_watch();
	ctx->fork_gen = atomic_load(&mrl_fork_gen);
	/* error-checking: an interposed munmap made by a thread that already
	 * holds the lock (inside the library) gets EDEADLK, not a deadlock */
	pthread_mutexattr_t ma;
	pthread_mutexattr_init(&ma);
	pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ERRORCHECK);
	pthread_mutex_init(&ctx->lock, &ma);
	pthread_mutexattr_destroy(&ma);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&ctx->as_cv, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&ctx->flush_lock, NULL);
	pthread_mutex_init(&ctx->evq_lock, NULL);
	ctx->evq_tail = &ctx->evq_head;
	ctx->ev_seq = (uint64_t)atomic_fetch_add(&ev_tags, 1) << MRL_EV_TAG_SHIFT;
	ctx->outbox_tail = &ctx->outbox;
	mrl_itree_init(&ctx->va_index);
	ctx->next_key = 0x10000;
	ctx->sig_fd = ctx->ino_fd = ctx->wake_fd = ctx->timer_fd = ctx->procmaps_fd = -1;
	ctx->fan_fd = -1;
	ctx->uffd = -1;
	ctx->intp_slot = -1;
	ctx->intp_inline = true; /* until the monitor runs */
	ctx->ev_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (ctx->ev_fd < 0) {
		ret = mrl_err(errno, "eventfd: %s", strerror(errno));
		goto fail;
	}
	ctx->rops = mrl_registrar_find(ctx->opts.provider);
	ret = ctx->rops->open(ctx, &ctx->dev);
	if (ret) {
		ctx->dev = NULL;
		goto fail;
	}
	if (ctx->rops->open == mrl_reg_fabric_ops.open)
		ctx->fab = ctx->dev;
	mrl_watchers_start(ctx);
	ret = mrl_monitor_start(ctx);
	if (ret)
		goto fail;
	*out = ctx;
	return 0;
fail:
	mrl_ctx_destroy(ctx);
	return ret;
}

MRL_EXPORT int mrl_ctx_destroy(mrl_ctx *ctx)
{
	if (!ctx)
		return mrl_err(EINVAL, "mrl_ctx_destroy: NULL context");
	MRL_CHILD_CHECK(ctx, "mrl_ctx_destroy");
	while (ctx->eps)
		mrl_ep_destroy(ctx->eps);
	mrl_monitor_stop(ctx);
	/* the interposer lets go first; fanotify and userfaultfd let every
	 * actor still waiting in the kernel go */
	mrl_watchers_stop(ctx);
	/* deregister what the application left registered */
	for (uint32_t c = 0; c < ctx->ht.nchunks; c++)
		for (uint32_t i = 0; i < MRL_HT_CHUNK; i++) {
			struct mrl_mr *mr = ctx->ht.chunks[c][i].mr;
			if (mr)
				mrl_mr_dereg(ctx, mr->handle);
		}
	ev_release_all(ctx);
	while (ctx->files) {
		struct mrl_file *f = ctx->files;
		f->refs = 1;
		f->maps = 0;
		mrl_file_put(ctx, f);
	}
	if (ctx->rops && ctx->dev)
		ctx->rops->close(ctx->dev);
	mrl_ht_free(&ctx->ht);
	struct mrl_out *o = ctx->outbox;
	while (o) {
		struct mrl_out *n = o->next;
		free(o);
		o = n;
	}
	if (ctx->ev_fd >= 0)
		close(ctx->ev_fd);
	if (ctx->wake_fd >= 0)
		close(ctx->wake_fd);
	if (ctx->procmaps_fd >= 0)
		close(ctx->procmaps_fd);
	pthread_cond_destroy(&ctx->as_cv);
	pthread_mutex_destroy(&ctx->lock);
	pthread_mutex_destroy(&ctx->flush_lock);
	pthread_mutex_destroy(&ctx->evq_lock);
	free(ctx);
	return 0;
}

MRL_EXPORT int mrl_ctx_watchers(mrl_ctx *ctx)
{
	if (!ctx)
		return mrl_err(EINVAL, "mrl_ctx_watchers: NULL context");
	MRL_CHILD_CHECK(ctx, "mrl_ctx_watchers");
	return (int)ctx->watchers;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

MRL_EXPORT int mrl_ctx_stats(mrl_ctx *ctx, struct mrl_stats *st)
{
	if (!ctx || !st)
		return mrl_err(EINVAL, "mrl_ctx_stats: NULL %s", !ctx ? "context" : "stats");
	MRL_CHILD_CHECK(ctx, "mrl_ctx_stats");
	if (st->size < sizeof(*st))
		return mrl_err(EINVAL, "mrl_ctx_stats: st->size %zu too small", st->size);
	uint64_t tmp[ARRAY_SIZE(ctx->pause_ns)];
	pthread_mutex_lock(&ctx->lock);
	*st = ctx->st;
	st->mrs = ctx->ht.used;
	size_t n = ctx->npause < ARRAY_SIZE(tmp) ? ctx->npause : ARRAY_SIZE(tmp);
	memcpy(tmp, ctx->pause_ns, n * sizeof(tmp[0]));
	pthread_mutex_unlock(&ctx->lock);
	st->size = sizeof(*st);
	if (n) {
		qsort(tmp, n, sizeof(tmp[0]), cmp_u64);
		st->pause_ns_p50 = tmp[n / 2];
		st->pause_ns_p99 = tmp[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1];
		st->pause_ns_max = tmp[n - 1];
	}
	return 0;
}
