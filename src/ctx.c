/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
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

/* ---- context ---- */
static int ctx_create(const struct mrl_ctx_opts *opts, const struct mrl_registrar_ops *rops,
		      void *dev, mrl_ctx **out);

MRL_EXPORT int mrl_ctx_create(const struct mrl_ctx_opts *opts, mrl_ctx **out)
{
	return ctx_create(opts, NULL, NULL, out);
}

/* A context over a device its caller opened (the libfabric hook: the
 * provider's domain under the application's), every entry of rops filled. */
int mrl_ctx_create_dev(const struct mrl_ctx_opts *opts, const struct mrl_registrar_ops *rops,
		       void *dev, mrl_ctx **out)
{
	if (!rops || !dev)
		return mrl_err(EINVAL, "mrl_ctx_create_dev: NULL %s", !rops ? "registrar" : "device");
	return ctx_create(opts, rops, dev, out);
}

static int ctx_create(const struct mrl_ctx_opts *opts, const struct mrl_registrar_ops *rops,
		      void *dev, mrl_ctx **out)
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
	pthread_cond_init(&ctx->dev_cv, &ca);
	pthread_cond_init(&ctx->dev_work_cv, NULL);
	pthread_condattr_destroy(&ca);
	ctx->devq_tail = &ctx->devq;
	pthread_mutex_init(&ctx->flush_lock, NULL);
	pthread_mutex_init(&ctx->evq_lock, NULL);
	ctx->evq_tail = &ctx->evq_head;
	mrl_events_init(ctx);
	ctx->outbox_tail = &ctx->outbox;
	mrl_itree_init(&ctx->va_index);
	ctx->sig_fd = ctx->ino_fd = ctx->wake_fd = ctx->timer_fd = ctx->procmaps_fd = -1;
	ctx->fan_fd = -1;
	ctx->uffd = -1;
	ctx->intp_slot = -1;
	ctx->intp_inline = true; /* until the monitor runs */
	ctx->ev_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	/* before any watcher starts: the interposer may wake the monitor as
	 * soon as it publishes the context */
	ctx->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (ctx->ev_fd < 0 || ctx->wake_fd < 0) {
		ret = mrl_err(errno, "eventfd: %s", strerror(errno));
		goto fail;
	}
	ctx->rops = rops ? rops : mrl_registrar_find(ctx->opts.provider);
	ctx->dev = dev;
	ret = rops ? 0 : ctx->rops->open(ctx, &ctx->dev);
	if (ret) {
		ctx->dev = NULL;
		goto fail;
	}
	if (ctx->rops->open == mrl_reg_fabric_ops.open)
		ctx->fab = ctx->dev;
	ret = mrl_dev_start(ctx);
	if (ret)
		goto fail;
	mrl_watchers_start(ctx);
	ret = mrl_monitor_start(ctx);
	if (!ret)
		ret = mrl_seccomp_install(ctx); /* last: threads started after it are filtered */
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
	/* breaks waiting for the device reach their watchers before they stop */
	mrl_lock(&ctx->lock);
	mrl_dev_sync(ctx);
	mrl_unlock(&ctx->lock);
	mrl_guard_stop(ctx);
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
	mrl_dev_stop(ctx);
	mrl_events_release(ctx);
	while (ctx->files) {
		struct mrl_file *f = ctx->files;
		f->refs = 1;
		f->maps = 0;
		mrl_file_put(ctx, f);
	}
	if (ctx->rops && ctx->dev)
		ctx->rops->close(ctx->dev);
	mrl_ht_free(&ctx->ht);
	mrl_keys_free(&ctx->keys);
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
	pthread_cond_destroy(&ctx->dev_cv);
	pthread_cond_destroy(&ctx->dev_work_cv);
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
	mrl_lock(&ctx->lock);
	/* a fence is counted once the device applied it (mr.c): what is
	 * decided is counted, not left for a later call */
	mrl_dev_sync(ctx);
	*st = ctx->st;
	st->mrs = ctx->ht.used;
	size_t n = ctx->npause < ARRAY_SIZE(tmp) ? ctx->npause : ARRAY_SIZE(tmp);
	memcpy(tmp, ctx->pause_ns, n * sizeof(tmp[0]));
	mrl_unlock(&ctx->lock);
	st->size = sizeof(*st);
	if (n) {
		qsort(tmp, n, sizeof(tmp[0]), cmp_u64);
		st->pause_ns_p50 = tmp[n / 2];
		st->pause_ns_p99 = tmp[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1];
		st->pause_ns_max = tmp[n - 1];
	}
	return 0;
}
