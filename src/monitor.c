/* The monitor thread: one poll loop over the lease signal (signalfd), the
 * fanotify pre-content group, the inotify close/modify watch and a wake
 * eventfd, with deadlines as its timeout.
 * The lease signal is directed at this thread alone (F_OWNER_TID) and blocked
 * here, so the application's own signal handling is never disturbed. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <linux/userfaultfd.h>
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

static void drain_signals(struct mrl_ctx *ctx)
{
	struct signalfd_siginfo si[16];
	ssize_t n;
	while ((n = read(ctx->sig_fd, si, sizeof(si))) > 0)
		for (size_t i = 0; i < (size_t)n / sizeof(si[0]); i++)
			mrl_lease_on_signal(ctx, si[i].ssi_fd);
}

static void drain_inotify(struct mrl_ctx *ctx)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	ssize_t n;
	while ((n = read(ctx->ino_fd, buf, sizeof(buf))) > 0) {
		for (char *p = buf; p < buf + n;) {
			struct inotify_event *e = (struct inotify_event *)p;
			mrl_lease_on_inotify(ctx, e->wd, e->mask);
			p += sizeof(*e) + e->len;
		}
	}
}

static void *monitor_main(void *arg)
{
	struct start_sync *ss = arg;
	struct mrl_ctx *ctx = ss->ctx;
	sigset_t set;
	int ret = 0;

	sigemptyset(&set);
	sigaddset(&set, ctx->opts.signo);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	ctx->monitor_tid = (pid_t)syscall(SYS_gettid);
	ctx->sig_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	ctx->ino_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (ctx->sig_fd < 0 || ctx->ino_fd < 0)
		ret = mrl_err(errno, "monitor: signalfd/inotify: %s", strerror(errno));
	pthread_mutex_lock(&ss->lock);
	ss->ret = ret;
	ss->ready = true;
	pthread_cond_signal(&ss->cond);
	pthread_mutex_unlock(&ss->lock);
	if (ret)
		return NULL;

	while (!atomic_load(&ctx->stop)) {
		struct pollfd pfd[5] = {
			{.fd = ctx->sig_fd, .events = POLLIN},
			{.fd = ctx->ino_fd, .events = POLLIN},
			{.fd = ctx->wake_fd, .events = POLLIN},
			{.fd = ctx->fan_fd, .events = POLLIN}, /* -1: ignored by ppoll */
			{.fd = ctx->uffd, .events = POLLIN},
		};
		pthread_mutex_lock(&ctx->lock);
		uint64_t next = mrl_brk_next_timer(ctx);
		if (ctx->verify_at && ctx->verify_at < next)
			next = ctx->verify_at;
		bool acks = mrl_brk_waiting_acks(ctx);
		pthread_mutex_unlock(&ctx->lock);
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
		int n = ppoll(pfd, 5, tsp, NULL);
		if (n < 0 && errno != EINTR)
			break;
		if (pfd[2].revents) {
			uint64_t v;
			if (read(ctx->wake_fd, &v, sizeof(v)) < 0) {
			}
		}
		/* userfaultfd actors wait until their event is read: read first,
		 * before any lock, handle after */
		struct uffd_msg um[32];
		int nu = pfd[4].revents ? mrl_uffd_read(ctx, um, 32) : 0;
		pthread_mutex_lock(&ctx->lock);
		if (nu)
			mrl_uffd_handle(ctx, um, nu);
		if (pfd[0].revents)
			drain_signals(ctx);
		if (pfd[3].revents)
			mrl_fan_drain(ctx);
		if (pfd[1].revents)
			drain_inotify(ctx);
		uint64_t now = mrl_now_ns();
		mrl_brk_tick(ctx, now);
		if (ctx->verify_at && now >= ctx->verify_at) {
			/* raw system calls the interposer cannot see, caught after */
			mrl_verify_locked(ctx);
			ctx->verify_at = now + (uint64_t)ctx->opts.verify_ms * 1000000ull;
		}
		pthread_mutex_unlock(&ctx->lock);
		mrl_flush_outbox(ctx);
	}
	return NULL;
}

int mrl_monitor_start(struct mrl_ctx *ctx)
{
	struct start_sync ss = {.ctx = ctx};
	int ret;
	ctx->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (ctx->wake_fd < 0)
		return mrl_err(errno, "monitor: eventfd: %s", strerror(errno));
	pthread_mutex_init(&ss.lock, NULL);
	pthread_cond_init(&ss.cond, NULL);
	ret = pthread_create(&ctx->monitor, NULL, monitor_main, &ss);
	if (ret)
		return mrl_err(ret, "monitor: pthread_create: %s", strerror(ret));
	pthread_mutex_lock(&ss.lock);
	while (!ss.ready)
		pthread_cond_wait(&ss.cond, &ss.lock);
	pthread_mutex_unlock(&ss.lock);
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
	if (ctx->sig_fd >= 0)
		close(ctx->sig_fd);
	if (ctx->ino_fd >= 0)
		close(ctx->ino_fd);
	if (ctx->wake_fd >= 0)
		close(ctx->wake_fd);
	ctx->sig_fd = ctx->ino_fd = ctx->wake_fd = -1;
}
