/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The monitor thread: one poll loop over the fds the watchers give it
 * (mrl_watchers) and a wake eventfd, with the break engine's and the
 * watchers' deadlines as its timeout. */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "mrl_int.h"

struct start_sync {
	struct mrl_ctx *ctx;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int ret;
	bool ready;
};

#define MAX_POLL 16

static void *monitor_main(void *arg)
{
	struct start_sync *ss = arg;
	struct mrl_ctx *ctx = ss->ctx;
	const struct mrl_watcher_ops *polled[MAX_POLL];
	int ret = 0;

	/* under the lock: the interposer may have published the context
	 * already, and reads it there (hand_to_monitor) */
	mrl_lock(&ctx->lock);
	ctx->monitor_tid = (pid_t)syscall(SYS_gettid);
	mrl_unlock(&ctx->lock);
	for (const struct mrl_watcher_ops *const *w = ctx->wtab; *w && !ret; w++)
		if ((ctx->watchers & (*w)->bit) && (*w)->thread_start)
			ret = (*w)->thread_start(ctx);
	/* from this thread: the guardian dies with it (PR_SET_PDEATHSIG) */
	if (!ret && mrl_guard_start(ctx))
		mrl_log("no guardian: a stopped owner holds other processes up to lease-break-time (%s)",
			mrl_last_error());
	mrl_lock(&ss->lock);
	ss->ret = ret;
	ss->ready = true;
	pthread_cond_signal(&ss->cond);
	mrl_unlock(&ss->lock);
	if (ret)
		return NULL;
	mrl_lock(&ctx->lock);
	ctx->intp_inline = false; /* interposed calls may wait for this thread now */
	mrl_unlock(&ctx->lock);

	bool unsent = false; /* control messages the last flush could not send yet */
	while (!atomic_load(&ctx->stop)) {
		struct pollfd pfd[MAX_POLL + 1] = {{.fd = ctx->wake_fd, .events = POLLIN}};
		int np = 0;
		for (const struct mrl_watcher_ops *const *w = ctx->wtab; *w && np < MAX_POLL; w++) {
			int fd = (ctx->watchers & (*w)->bit) && (*w)->poll_fd ? (*w)->poll_fd(ctx) : -1;
			if (fd >= 0) {
				polled[np] = *w;
				pfd[++np] = (struct pollfd){.fd = fd, .events = POLLIN};
			}
		}
		mrl_lock(&ctx->lock);
		uint64_t next = mrl_brk_next_timer(ctx);
		for (const struct mrl_watcher_ops *const *w = ctx->wtab; *w; w++)
			if ((ctx->watchers & (*w)->bit) && (*w)->next_timer) {
				uint64_t t = (*w)->next_timer(ctx);
				next = t < next ? t : next;
			}
		bool acks = mrl_brk_waiting_acks(ctx);
		mrl_unlock(&ctx->lock);
		if (unsent) {
			uint64_t soon = mrl_now_ns() + 200000ull;
			next = soon < next ? soon : next;
		}
		if (acks)
			mrl_ep_progress_all(ctx);
		struct timespec ts, *tsp = NULL;
		if (next != UINT64_MAX) {
			uint64_t now = mrl_now_ns();
			uint64_t d = next > now ? next - now : 0;
			ts.tv_sec = (time_t)(d / 1000000000ull);
			ts.tv_nsec = (long)(d % 1000000000ull);
			tsp = &ts;
		}
		int n = ppoll(pfd, (nfds_t)np + 1, tsp, NULL);
		if (n < 0 && errno != EINTR)
			break;
		if (n > 0 && pfd[0].revents) {
			uint64_t v;
			if (read(ctx->wake_fd, &v, sizeof(v)) < 0) {
			}
		}
		/* actors that wait until their event is read (userfaultfd): read
		 * first, before any lock, handle after */
		for (int i = 0; n > 0 && i < np; i++)
			if (pfd[i + 1].revents && polled[i]->read)
				polled[i]->read(ctx);
		/* what may not be read under the lock (/proc): verify, landing */
		MRL_WATCHERS_EACH(ctx, look, mrl_now_ns());
		mrl_lock(&ctx->lock);
		mrl_guard_reap(ctx); /* what it let go is seen before what was read */
		for (int i = 0; n > 0 && i < np; i++)
			if (pfd[i + 1].revents && polled[i]->drain)
				polled[i]->drain(ctx);
		uint64_t now = mrl_now_ns();
		mrl_brk_tick(ctx, now);
		MRL_WATCHERS_EACH(ctx, tick, now);
		mrl_unlock(&ctx->lock);
		unsent = mrl_flush_outbox_nowait(ctx);
	}
	mrl_lock(&ctx->lock);
	MRL_WATCHERS_EACH(ctx, monitor_gone);
	mrl_unlock(&ctx->lock);
	mrl_flush_outbox(ctx);
	return NULL;
}

int mrl_monitor_start(struct mrl_ctx *ctx)
{
	struct start_sync ss = {.ctx = ctx};
	int ret;
	pthread_mutex_init(&ss.lock, NULL);
	pthread_cond_init(&ss.cond, NULL);
	ret = pthread_create(&ctx->monitor, NULL, monitor_main, &ss);
	if (ret)
		return mrl_err(ret, "monitor: pthread_create: %s", strerror(ret));
	mrl_lock(&ss.lock);
	while (!ss.ready)
		pthread_cond_wait(&ss.cond, &ss.lock);
	mrl_unlock(&ss.lock);
	ctx->monitor_running = true;
	pthread_cond_destroy(&ss.cond);
	pthread_mutex_destroy(&ss.lock);
	if (ss.ret) {
		mrl_monitor_stop(ctx);
		return ss.ret;
	}
	return 0;
}

void mrl_monitor_stop(struct mrl_ctx *ctx)
{
	if (ctx->monitor_running) {
		atomic_store(&ctx->stop, true);
		mrl_wake_monitor(ctx);
		pthread_join(ctx->monitor, NULL);
		ctx->monitor_running = false;
	}
}
