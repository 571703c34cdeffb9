/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Breaks: a child process makes the breaking call; it takes CLOCK_MONOTONIC
 * just before the call and just after it returns (the clock is shared with
 * the parent). Measured: entry of the breaking call -> the MR event readable
 * on mrl_event_fd (p50, p99), and how long the breaking call was blocked
 * under the default policy, hitless restore (p50, p99); with 1, 100, 10,000
 * MRs on one ext4 file and 0, 1, 4 peers holding all of them, for each
 * watcher mrl_ctx_watchers reports:
 *   lease    (context flag MRL_CTX_NO_FANOTIFY): the breaking call is
 *            open(O_WRONLY) by another process;
 *   fanotify (default context, when the watcher runs): the other process
 *            opens the file first (untimed), then fallocate(PUNCH_HOLE) of
 *            one page of the first MR is the timed call. */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"

#define PG 4096u
enum { W_LEASE = 0, W_FAN = 1 };
static const char *wname[] = {"lease", "fanotify"};


struct peer {
	mrl_ctx *ctx;
	mrl_ep *ep;
	mrl_peer *p;
	mrl_rmr **rmrs;
};

struct cfg {
	int watcher;
	int nmr, npeers;
	const char *path;
	mrl_ctx *ctx;
	mrl_ep *sep;
	void *map;
	mrl_mr_t *mrs;
	struct peer peers[4];
};

static void drain(mrl_ctx *ctx, uint64_t *first_break_ns)
{
	struct mrl_event ev;
	while (mrl_event_get(ctx, &ev) == 0) {
		if (first_break_ns && !*first_break_ns && ev.type == MRL_EVENT_BREAK)
			*first_break_ns = ev.time_ns;
		mrl_event_ack(ctx, &ev);
	}
}

/* the file's MRs active again, its lease held again (lease watcher), nothing queued */
static int settle(struct cfg *c)
{
	uint64_t until = now_ns() + 10000000000ull;
	while (now_ns() < until) {
		drain(c->ctx, NULL);
		struct mrl_mr_info a = {.size = sizeof(a)}, b = {.size = sizeof(b)};
		if (mrl_mr_query(c->ctx, c->mrs[0], &a) || mrl_mr_query(c->ctx, c->mrs[c->nmr - 1], &b))
			return -EIO;
		bool ok = a.state == MRL_STATE_ACTIVE && b.state == MRL_STATE_ACTIVE;
		if (c->watcher == W_LEASE)
			ok = ok && a.lease_held;
		if (ok) {
			drain(c->ctx, NULL);
			return 0;
		}
		usleep(200);
	}
	return -ETIMEDOUT;
}

static int setup(struct cfg *c)
{
	struct mrl_ctx_opts o = {.size = sizeof(o), .provider = "tcp;ofi_rxm", .relock_ms = 5,
				 .flags = c->watcher == W_LEASE ? MRL_CTX_NO_FANOTIFY : 0};
	int ret = mrl_ctx_create(&o, &c->ctx);
	if (ret)
		return ret;
	size_t len = (size_t)c->nmr * PG;
	if ((ret = mrl_file_map(c->ctx, c->path, 0, len, PROT_READ | PROT_WRITE, &c->map)))
		return ret;
	c->mrs = calloc((size_t)c->nmr, sizeof(*c->mrs));
	for (int i = 0; i < c->nmr; i++)
		if ((ret = mrl_mr_reg(c->ctx, (char *)c->map + (size_t)i * PG, PG,
				      MRL_ACCESS_REMOTE_READ | MRL_ACCESS_REMOTE_WRITE, NULL, &c->mrs[i])))
			return ret;
	if (!c->npeers)
		return 0;
	struct mrl_ep_opts eo = {.size = sizeof(eo), .flags = MRL_EP_AUTO_PROGRESS};
	if ((ret = mrl_ep_create(c->ctx, &eo, &c->sep)))
		return ret;
	uint16_t port;
	if ((ret = mrl_ep_listen(c->sep, "127.0.0.1", 0, &port)))
		return ret;
	for (int p = 0; p < c->npeers; p++) {
		struct peer *pe = &c->peers[p];
		struct mrl_ctx_opts po = {.size = sizeof(po), .provider = "tcp;ofi_rxm"};
		if ((ret = mrl_ctx_create(&po, &pe->ctx)) || (ret = mrl_ep_create(pe->ctx, &eo, &pe->ep)))
			return ret;
		struct acc a = {.ep = c->sep};
		pthread_t th;
		pthread_create(&th, NULL, acc_main, &a);
		ret = mrl_ep_connect(pe->ep, "127.0.0.1", port, 10000, &pe->p);
		pthread_join(th, NULL);
		if (ret || a.ret)
			return ret ? ret : a.ret;
		pe->rmrs = calloc((size_t)c->nmr, sizeof(*pe->rmrs));
		for (int i = 0; i < c->nmr; i++)
			if ((ret = mrl_rmr_open(pe->p, c->mrs[i], 10000, &pe->rmrs[i])))
				return ret;
	}
	return 0;
}

static void teardown(struct cfg *c)
{
	for (int p = 0; p < c->npeers; p++) {
		struct peer *pe = &c->peers[p];
		if (pe->rmrs)
			for (int i = 0; i < c->nmr; i++)
				if (pe->rmrs[i])
					mrl_rmr_close(pe->rmrs[i]);
		free(pe->rmrs);
		if (pe->ep)
			mrl_ep_destroy(pe->ep);
		if (pe->ctx)
			mrl_ctx_destroy(pe->ctx);
	}
	if (c->sep)
		mrl_ep_destroy(c->sep);
	if (c->mrs)
		for (int i = 0; i < c->nmr; i++)
			if (c->mrs[i])
				mrl_mr_dereg(c->ctx, c->mrs[i]);
	if (c->map)
		mrl_file_unmap(c->ctx, c->map, (size_t)c->nmr * PG);
	if (c->ctx)
		mrl_ctx_destroy(c->ctx);
	free(c->mrs);
}

/* The child: only system calls between fork and _exit. */
static __attribute__((noreturn)) void child(const char *path, int watcher, int res, int ready, int go)
{
	uint64_t t[3] = {0, 0, 0};
	int fd = -1;
	if (watcher == W_FAN) {
		fd = open(path, O_RDWR);
		char b = 1;
		if (write(ready, &b, 1) != 1 || read(go, &b, 1) != 1)
			_exit(2);
		t[0] = now_ns();
		int r = fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, PG);
		t[1] = now_ns();
		t[2] = r ? (uint64_t)errno : 0;
	} else {
		t[0] = now_ns();
		fd = open(path, O_WRONLY);
		t[1] = now_ns();
		t[2] = fd < 0 ? (uint64_t)errno : 0;
	}
	if (write(res, t, sizeof(t)) != sizeof(t))
		_exit(2);
	if (fd >= 0)
		close(fd);
	_exit(0);
}

/* one break: 0 and the three times, or -errno */
static int one_break(struct cfg *c, uint64_t *ev_lat, uint64_t *seen_lat, uint64_t *blocked)
{
	int res[2], ready[2], go[2];
	if (pipe(res) || pipe(ready) || pipe(go))
		return -errno;
	int ret = settle(c);
	/* MRL_BENCH_BREAK_GAP_MS: quiet time between breaks, to tell the cost
	 * of one break from the tail of the previous one */
	const char *gap = getenv("MRL_BENCH_BREAK_GAP_MS");
	if (!ret && gap && atoi(gap) > 0) {
		usleep((useconds_t)atoi(gap) * 1000);
		ret = settle(c);
	}
	pid_t pid = ret ? -1 : fork();
	if (pid == 0)
		child(c->path, c->watcher, res[1], ready[1], go[0]);
	close(res[1]);
	close(ready[1]);
	close(go[0]);
	if (pid < 0) {
		ret = ret ? ret : -errno;
		goto out;
	}
	if (c->watcher == W_FAN) {
		char b;
		if (read(ready[0], &b, 1) != 1 || (ret = settle(c)) || write(go[1], &b, 1) != 1) {
			ret = ret ? ret : -EIO;
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			goto out;
		}
	}
	struct pollfd pf = {.fd = mrl_event_fd(c->ctx), .events = POLLIN};
	int pr = poll(&pf, 1, 5000);
	uint64_t tev = now_ns();
	uint64_t t[3];
	ssize_t rd = read(res[0], t, sizeof(t));
	waitpid(pid, NULL, 0);
	if (pr != 1 || rd != sizeof(t) || t[2]) {
		ret = -EIO;
		fail("break (%s): %s", wname[c->watcher],
		     pr != 1 ? "no event within 5 s" : t[2] ? strerror((int)t[2]) : "child gave no times");
		goto out;
	}
	uint64_t first = 0;
	drain(c->ctx, &first);
	*ev_lat = tev > t[0] ? tev - t[0] : 0;
	*seen_lat = first > t[0] ? first - t[0] : 0;
	*blocked = t[1] - t[0];
out:
	close(res[0]);
	close(ready[0]);
	close(go[1]);
	return ret;
}

int bench_breaks(void)
{
	static const int nmrs_full[] = {1, 100, 10000}, nmrs_smoke[] = {1, 10};
	static const int npeers_full[] = {0, 1, 4}, npeers_smoke[] = {0, 1};
	const int *nmrs = B.smoke ? nmrs_smoke : nmrs_full, *npeers = B.smoke ? npeers_smoke : npeers_full;
	int nn = B.smoke ? 2 : 3, np = B.smoke ? 2 : 3;
	char dir[256], path[300];
	int ret = scratch_dir("ext4", dir, sizeof(dir));
	if (ret) {
		printf("== breaks: no ext4 scratch directory under /var/tmp, skipped\n");
		json_part("breaks");
		json_row("\"skipped\": \"no ext4 under /var/tmp\"");
		json_part_end();
		return 0;
	}
	snprintf(path, sizeof(path), "%s/f", dir);
	if ((ret = make_sparse(path, (uint64_t)nmrs[nn - 1] * PG)))
		return ret;
	/* which watchers run here */
	struct mrl_ctx_opts o = {.size = sizeof(o), .provider = "mock"};
	mrl_ctx *probe;
	if ((ret = mrl_ctx_create(&o, &probe)))
		return ret;
	int have = mrl_ctx_watchers(probe);
	mrl_ctx_destroy(probe);
	bool run_w[2] = {have & MRL_WATCH_LEASE, have & MRL_WATCH_FANOTIFY};
	printf("== breaks: breaking call's entry -> MR event readable on mrl_event_fd, and the breaker's blocked time\n"
	       "   under hitless restore (ext4 file, 4 KiB MRs, policy restore; watchers here: %s%s%s)\n",
	       run_w[0] ? "lease " : "", run_w[1] ? "fanotify " : "", have & MRL_WATCH_INOTIFY ? "inotify" : "");
	printf("%-9s %6s %5s %7s | %10s %10s | %10s %10s | %10s %10s\n", "watcher", "MRs", "peers", "samples",
	       "event p50", "event p99", "seen p50", "seen p99", "block p50", "block p99");
	json_part("breaks");
	for (int w = 0; w < 2 && !ret; w++) {
		if (!run_w[w]) {
			json_row("\"watcher\": \"%s\", \"skipped\": \"mrl_ctx_watchers does not report it\"", wname[w]);
			continue;
		}
		for (int i = 0; i < nn && !ret; i++)
			for (int j = 0; j < np && !ret; j++) {
				if (!bench_pick("MRL_BENCH_WATCHER", wname[w], -1) ||
				    !bench_pick("MRL_BENCH_MRS", NULL, nmrs[i]) ||
				    !bench_pick("MRL_BENCH_PEERS", NULL, npeers[j]))
					continue;
				struct cfg c = {.watcher = w, .nmr = nmrs[i], .npeers = npeers[j], .path = path};
				int S = B.smoke ? 2 : nmrs[i] >= 10000 ? 40 : 150;
				uint64_t *ev = calloc((size_t)S, 8), *seen = calloc((size_t)S, 8),
					 *blk = calloc((size_t)S, 8);
				ret = setup(&c);
				int s;
				for (s = 0; s < S && !ret; s++)
					ret = one_break(&c, &ev[s], &seen[s], &blk[s]);
				struct mrl_stats st = {.size = sizeof(st)};
				if (c.ctx)
					mrl_ctx_stats(c.ctx, &st);
				teardown(&c);
				if (!ret) {
					double e50 = pctl(ev, (size_t)S, 50) / 1e3, e99 = pctl(ev, (size_t)S, 99) / 1e3;
					double s50 = pctl(seen, (size_t)S, 50) / 1e3, s99 = pctl(seen, (size_t)S, 99) / 1e3;
					double b50 = pctl(blk, (size_t)S, 50) / 1e3, b99 = pctl(blk, (size_t)S, 99) / 1e3;
					printf("%-9s %6d %5d %7d | %8.1fus %8.1fus | %8.1fus %8.1fus | %8.1fus %8.1fus\n",
					       wname[w], nmrs[i], npeers[j], S, e50, e99, s50, s99, b50, b99);
					json_row("\"watcher\": \"%s\", \"mrs\": %d, \"peers\": %d, \"samples\": %d, "
						 "\"event_p50_us\": %.2f, \"event_p99_us\": %.2f, \"seen_p50_us\": %.2f, "
						 "\"seen_p99_us\": %.2f, \"blocked_p50_us\": %.2f, \"blocked_p99_us\": %.2f, "
						 "\"lib_pause_p50_us\": %.2f, \"lib_pause_p99_us\": %.2f, \"breaks\": %llu, "
						 "\"fences\": %llu, \"peer_timeouts\": %llu",
						 wname[w], nmrs[i], npeers[j], S, e50, e99, s50, s99, b50, b99,
						 (double)st.pause_ns_p50 / 1e3, (double)st.pause_ns_p99 / 1e3,
						 (unsigned long long)st.breaks, (unsigned long long)st.fences,
						 (unsigned long long)st.peer_timeouts);
					if (st.fences || st.peer_timeouts)
						fail("breaks: %llu fences, %llu peer timeouts under hitless restore",
						     (unsigned long long)st.fences, (unsigned long long)st.peer_timeouts);
				}
				free(ev);
				free(seen);
				free(blk);
			}
	}
	json_part_end();
	printf("event = breaking call's entry -> mrl_event_fd readable; seen = -> the event's time_ns (the library saw it);\n"
	       "block = how long the breaking call took (the breaker waits for the restore)\n");
	unlink(path);
	rmdir(dir);
	return ret;
}
