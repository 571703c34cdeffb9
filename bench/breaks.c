/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Breaks: one persistent breaker process (this program re-executed with
 * --breaker, so it shares no pages with the benchmark: no copy-on-write
 * fault of the owner's is ever counted) makes the breaking call when told;
 * it takes CLOCK_MONOTONIC just before the call and just after it returns
 * (the clock is shared with the benchmark). Measured: entry of the breaking
 * call -> the MR event readable on mrl_event_fd (p50, p99), and how long
 * the breaking call was blocked under the default policy, hitless restore
 * (p50, p99); with 1, 100, 10,000 MRs on one ext4 file and 0, 1, 4 peers
 * holding all of them, for each watcher mrl_ctx_watchers reports:
 *   lease    (context flag MRL_CTX_NO_FANOTIFY): the breaking call is
 *            open(O_WRONLY) by the breaker;
 *   fanotify (default context, when the watcher runs): the breaker opens
 *            the file first (untimed), then fallocate(PUNCH_HOLE) of one
 *            page of the first MR is the timed call.
 * Each watcher's bare primitive runs first, in the same run, as the floor
 * (no library: a lease held and given back on its signal; a pre-content
 * fanotify mark answered FAN_ALLOW at once), and every library row is also
 * given as a ratio to it. */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/fanotify.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"

#define PG 4096u
#define BENCH_FAN_PRE_ACCESS 0x00100000u /* Debian 12's headers predate it */
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

/* the file's MRs active again on the owner and at every peer, its lease
 * held again (lease watcher), nothing queued */
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
		/* and every peer told: the previous restore is over on both sides */
		for (int p = 0; ok && p < c->npeers; p++) {
			struct mrl_rmr_info ra = {.size = sizeof(ra)}, rb = {.size = sizeof(rb)};
			ok = !mrl_rmr_query(c->peers[p].rmrs[0], &ra) &&
			     !mrl_rmr_query(c->peers[p].rmrs[c->nmr - 1], &rb) &&
			     ra.state == MRL_STATE_ACTIVE && rb.state == MRL_STATE_ACTIVE;
		}
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

/* ---- the breaker: a separate program image, told what to do over a pipe ---- */
enum { OP_OPEN_WR = 'L', OP_OPEN_RW = 'O', OP_PUNCH = 'P', OP_CLOSE = 'C' };

/* mrl_bench --breaker PATH: fd 0 brings one-byte commands, fd 1 takes
 * three u64 per command (entry time, return time, errno or 0). */
int bench_breaker_inner(const char *path)
{
	int fd = -1;
	char op;
	while (read(0, &op, 1) == 1) {
		uint64_t t[3] = {0, 0, 0};
		int r = 0;
		switch (op) {
		case OP_OPEN_WR: /* the lease break: open for writing, then close */
			t[0] = now_ns();
			r = open(path, O_WRONLY);
			t[1] = now_ns();
			if (r >= 0)
				close(r), r = 0;
			break;
		case OP_OPEN_RW:
			if (fd < 0)
				fd = open(path, O_RDWR);
			r = fd < 0 ? -1 : 0;
			break;
		case OP_PUNCH:
			t[0] = now_ns();
			r = fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, PG);
			t[1] = now_ns();
			break;
		case OP_CLOSE:
			if (fd >= 0)
				close(fd);
			fd = -1;
			break;
		default:
			return 2;
		}
		t[2] = r < 0 ? (uint64_t)errno : 0;
		if (write(1, t, sizeof(t)) != sizeof(t))
			return 2;
	}
	return 0;
}

struct breaker {
	pid_t pid;
	int cmd, res;
};

static int breaker_start(struct breaker *k, const char *path)
{
	int c[2], r[2];
	if (pipe2(c, O_CLOEXEC) || pipe2(r, O_CLOEXEC))
		return -errno;
	k->pid = fork();
	if (k->pid == 0) { /* only system calls until exec */
		if (dup2(c[0], 0) < 0 || dup2(r[1], 1) < 0)
			_exit(2);
		execl("/proc/self/exe", B.self, "--breaker", path, (char *)NULL);
		_exit(127);
	}
	close(c[0]);
	close(r[1]);
	if (k->pid < 0) {
		close(c[1]);
		close(r[0]);
		return -errno;
	}
	k->cmd = c[1];
	k->res = r[0];
	return 0;
}

static void breaker_stop(struct breaker *k)
{
	close(k->cmd);
	close(k->res);
	waitpid(k->pid, NULL, 0);
}

static int breaker_send(struct breaker *k, char op)
{
	return write(k->cmd, &op, 1) == 1 ? 0 : -EIO;
}

static int breaker_result(struct breaker *k, uint64_t t[3])
{
	if (read(k->res, t, 3 * sizeof(uint64_t)) != 3 * sizeof(uint64_t))
		return -EIO;
	if (t[2]) {
		fail("breaker: %s", strerror((int)t[2]));
		return -(int)t[2];
	}
	return 0;
}

static int breaker_do(struct breaker *k, char op)
{
	uint64_t t[3];
	int ret = breaker_send(k, op);
	return ret ? ret : breaker_result(k, t);
}

/* one break: 0 and the three times, or -errno */
static int one_break(struct cfg *c, struct breaker *k, uint64_t *ev_lat, uint64_t *seen_lat,
		     uint64_t *blocked)
{
	int ret = settle(c);
	/* MRL_BENCH_BREAK_GAP_MS: quiet time between breaks, to tell the cost
	 * of one break from the tail of the previous one */
	const char *gap = getenv("MRL_BENCH_BREAK_GAP_MS");
	if (!ret && gap && atoi(gap) > 0) {
		usleep((useconds_t)atoi(gap) * 1000);
		ret = settle(c);
	}
	if (!ret && c->watcher == W_FAN && !(ret = breaker_do(k, OP_OPEN_RW)))
		ret = settle(c);
	if (ret || (ret = breaker_send(k, c->watcher == W_FAN ? OP_PUNCH : OP_OPEN_WR)))
		return ret;
	struct pollfd pf = {.fd = mrl_event_fd(c->ctx), .events = POLLIN};
	int pr = poll(&pf, 1, 5000);
	uint64_t tev = now_ns();
	uint64_t t[3];
	if ((ret = breaker_result(k, t)))
		return ret;
	if (pr != 1) {
		fail("break (%s): no event within 5 s", wname[c->watcher]);
		return -EIO;
	}
	if (c->watcher == W_FAN && (ret = breaker_do(k, OP_CLOSE)))
		return ret;
	uint64_t first = 0;
	drain(c->ctx, &first);
	*ev_lat = tev > t[0] ? tev - t[0] : 0;
	*seen_lat = first > t[0] ? first - t[0] : 0;
	*blocked = t[1] - t[0];
	return 0;
}

/* The bare primitives, no library: the floor of each watcher's row. */
static int floor_lease(const char *path, struct breaker *k, int S, uint64_t *ev, uint64_t *blk)
{
	int sig = SIGRTMIN + 3, ret = 0;
	sigset_t set, old;
	sigemptyset(&set);
	sigaddset(&set, sig);
	pthread_sigmask(SIG_BLOCK, &set, &old);
	int fd = open(path, O_RDONLY);
	struct f_owner_ex own = {.type = F_OWNER_TID, .pid = (pid_t)syscall(SYS_gettid)};
	for (int s = 0; s < S && !ret; s++) {
		if (fd < 0 || fcntl(fd, F_SETOWN_EX, &own) || fcntl(fd, F_SETSIG, sig) ||
		    fcntl(fd, F_SETLEASE, F_RDLCK)) {
			ret = -errno;
			break;
		}
		if ((ret = breaker_send(k, OP_OPEN_WR)))
			break;
		struct timespec to = {5, 0};
		siginfo_t si;
		int got = sigtimedwait(&set, &si, &to);
		uint64_t tsig = now_ns();
		fcntl(fd, F_SETLEASE, F_UNLCK);
		uint64_t t[3];
		if ((ret = breaker_result(k, t)))
			break;
		if (got != sig) {
			fail("bare lease: no signal within 5 s");
			ret = -EIO;
			break;
		}
		ev[s] = tsig > t[0] ? tsig - t[0] : 0;
		blk[s] = t[1] - t[0];
	}
	if (fd >= 0)
		close(fd);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return ret;
}

static int floor_fan(const char *path, struct breaker *k, int S, uint64_t *ev, uint64_t *blk)
{
	int fan = fanotify_init(FAN_CLASS_PRE_CONTENT | FAN_CLOEXEC, O_RDONLY | O_LARGEFILE);
	if (fan < 0)
		return -errno;
	int ret = fanotify_mark(fan, FAN_MARK_ADD, BENCH_FAN_PRE_ACCESS, AT_FDCWD, path) ? -errno : 0;
	if (!ret)
		ret = breaker_do(k, OP_OPEN_RW);
	char buf[4096] __attribute__((aligned(8)));
	for (int s = 0; s < S && !ret; s++) {
		if ((ret = breaker_send(k, OP_PUNCH)))
			break;
		ssize_t n = read(fan, buf, sizeof(buf));
		uint64_t tev = now_ns();
		for (char *p = buf; n > 0 && p < buf + n;) {
			struct fanotify_event_metadata *m = (void *)p;
			if (m->event_len < sizeof(*m))
				break;
			if (m->fd >= 0) {
				struct fanotify_response r = {.fd = m->fd, .response = FAN_ALLOW};
				if (write(fan, &r, sizeof(r)) != sizeof(r))
					ret = -errno;
				close(m->fd);
			}
			p += m->event_len;
		}
		uint64_t t[3];
		int r2 = breaker_result(k, t);
		ret = ret ? ret : n <= 0 ? -EIO : r2;
		if (!ret) {
			ev[s] = tev > t[0] ? tev - t[0] : 0;
			blk[s] = t[1] - t[0];
		}
	}
	breaker_do(k, OP_CLOSE);
	close(fan);
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
	struct breaker k = {.pid = -1, .cmd = -1, .res = -1};
	if ((ret = breaker_start(&k, path)))
		return ret;
	printf("== breaks: breaking call's entry -> MR event readable on mrl_event_fd, and the breaker's blocked time\n"
	       "   under hitless restore (ext4 file, 4 KiB MRs, policy restore; one persistent breaker process;\n"
	       "   watchers here: %s%s%s); x = p50 over the bare primitive's p50, same run\n",
	       run_w[0] ? "lease " : "", run_w[1] ? "fanotify " : "", have & MRL_WATCH_INOTIFY ? "inotify" : "");
	printf("%-9s %6s %5s %7s | %10s %10s %7s | %10s %10s | %10s %10s %7s\n", "watcher", "MRs", "peers",
	       "samples", "event p50", "event p99", "x", "seen p50", "seen p99", "block p50", "block p99", "x");
	json_part("breaks");
	for (int w = 0; w < 2 && !ret; w++) {
		if (!run_w[w]) {
			json_row("\"watcher\": \"%s\", \"skipped\": \"mrl_ctx_watchers does not report it\"", wname[w]);
			continue;
		}
		if (!bench_pick("MRL_BENCH_WATCHER", wname[w], -1))
			continue;
		/* the floor: the bare primitive */
		int S = B.smoke ? 2 : 200;
		uint64_t *fev = calloc((size_t)S, 8), *fblk = calloc((size_t)S, 8);
		ret = w == W_LEASE ? floor_lease(path, &k, S, fev, fblk) : floor_fan(path, &k, S, fev, fblk);
		if (ret) {
			fail("breaks: bare %s floor: %s", wname[w], strerror(-ret));
			free(fev);
			free(fblk);
			break;
		}
		double fe50 = pctl(fev, (size_t)S, 50) / 1e3, fe99 = pctl(fev, (size_t)S, 99) / 1e3;
		double fb50 = pctl(fblk, (size_t)S, 50) / 1e3, fb99 = pctl(fblk, (size_t)S, 99) / 1e3;
		free(fev);
		free(fblk);
		printf("%-9s %6s %5s %7d | %8.1fus %8.1fus %7s | %10s %10s | %8.1fus %8.1fus %7s\n", wname[w],
		       "bare", "-", S, fe50, fe99, "1.0", "-", "-", fb50, fb99, "1.0");
		json_row("\"watcher\": \"%s\", \"floor\": \"bare %s\", \"samples\": %d, \"event_p50_us\": %.2f, "
			 "\"event_p99_us\": %.2f, \"blocked_p50_us\": %.2f, \"blocked_p99_us\": %.2f",
			 wname[w], w == W_LEASE ? "lease signal, released at once" : "fanotify pre-content, allowed at once",
			 S, fe50, fe99, fb50, fb99);
		for (int i = 0; i < nn && !ret; i++)
			for (int j = 0; j < np && !ret; j++) {
				if (!bench_pick("MRL_BENCH_MRS", NULL, nmrs[i]) ||
				    !bench_pick("MRL_BENCH_PEERS", NULL, npeers[j]))
					continue;
				struct cfg c = {.watcher = w, .nmr = nmrs[i], .npeers = npeers[j], .path = path};
				S = B.smoke ? 2 : nmrs[i] >= 10000 ? 40 : 150;
				uint64_t *ev = calloc((size_t)S, 8), *seen = calloc((size_t)S, 8),
					 *blk = calloc((size_t)S, 8);
				ret = setup(&c);
				int s;
				for (s = 0; s < S && !ret; s++)
					ret = one_break(&c, &k, &ev[s], &seen[s], &blk[s]);
				struct mrl_stats st = {.size = sizeof(st)};
				if (c.ctx)
					mrl_ctx_stats(c.ctx, &st);
				teardown(&c);
				if (!ret) {
					double e50 = pctl(ev, (size_t)S, 50) / 1e3, e99 = pctl(ev, (size_t)S, 99) / 1e3;
					double s50 = pctl(seen, (size_t)S, 50) / 1e3, s99 = pctl(seen, (size_t)S, 99) / 1e3;
					double b50 = pctl(blk, (size_t)S, 50) / 1e3, b99 = pctl(blk, (size_t)S, 99) / 1e3;
					double xe = fe50 > 0 ? e50 / fe50 : 0, xb = fb50 > 0 ? b50 / fb50 : 0;
					printf("%-9s %6d %5d %7d | %8.1fus %8.1fus %6.1fx | %8.1fus %8.1fus | %8.1fus %8.1fus %6.1fx\n",
					       wname[w], nmrs[i], npeers[j], S, e50, e99, xe, s50, s99, b50, b99, xb);
					json_row("\"watcher\": \"%s\", \"mrs\": %d, \"peers\": %d, \"samples\": %d, "
						 "\"event_p50_us\": %.2f, \"event_p99_us\": %.2f, \"event_x_floor\": %.2f, "
						 "\"seen_p50_us\": %.2f, "
						 "\"seen_p99_us\": %.2f, \"blocked_p50_us\": %.2f, \"blocked_p99_us\": %.2f, "
						 "\"blocked_x_floor\": %.2f, "
						 "\"lib_pause_p50_us\": %.2f, \"lib_pause_p99_us\": %.2f, \"breaks\": %llu, "
						 "\"fences\": %llu, \"peer_timeouts\": %llu, \"classify_mean_us\": %.2f",
						 wname[w], nmrs[i], npeers[j], S, e50, e99, xe, s50, s99, b50, b99, xb,
						 (double)st.pause_ns_p50 / 1e3, (double)st.pause_ns_p99 / 1e3,
						 (unsigned long long)st.breaks, (unsigned long long)st.fences,
						 (unsigned long long)st.peer_timeouts,
						 st.classify_count ? (double)st.classify_ns_total / (double)st.classify_count / 1e3 : 0.0);
					printf("%-9s %6s %5s %7s   library: pause (seen -> change let in) p50 %.1fus p99 %.1fus%s",
						       "", "", "", "", (double)st.pause_ns_p50 / 1e3, (double)st.pause_ns_p99 / 1e3,
						       w == W_FAN ? "" : "\n");
					if (w == W_FAN)
						printf(", classification mean %.1fus\n",
						       st.classify_count ? (double)st.classify_ns_total / (double)st.classify_count / 1e3 : 0.0);
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
	breaker_stop(&k);
	printf("event = breaking call's entry -> mrl_event_fd readable; seen = -> the event's time_ns (the library saw it);\n"
	       "block = how long the breaking call took (the breaker waits for the restore); bare = the primitive alone\n");
	unlink(path);
	rmdir(dir);
	return ret;
}
