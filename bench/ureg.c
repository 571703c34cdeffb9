/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Registration on a device that pins: mrl_mr_reg + mrl_mr_dereg on the
 * io_uring registrar versus the device's own registration, the same buffer
 * update (io_uring_register_buffers_update_tag: pin, then unpin) on a ring
 * of its own, in the same run, interleaved pairs. Anonymous memory (a
 * page-aligned buffer of its own mapping, touched) and a memfd, at 4 KiB,
 * 64 KiB and 1 MiB. Reported: p50 and p99 of the registration, the
 * deregistration and the whole cycle, the ratio mrl/raw of each, and the
 * system calls per cycle (counted by the raw_syscalls:sys_enter tracepoint
 * over every thread of the process, the library's own included; "-" where
 * tracefs is not mounted). Instructions per cycle come from the callgrind
 * re-run (user space only; the kernel's share shows in the system calls). */
#include <fcntl.h>
#include <linux/perf_event.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <liburing.h>

#include "common.h"

#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#define HAVE_CALLGRIND 1
#else
#define HAVE_CALLGRIND 0
#define CALLGRIND_TOGGLE_COLLECT
#define CALLGRIND_ZERO_STATS
#define CALLGRIND_DUMP_STATS_AT(x) (void)(x)
#endif

#define RW (MRL_ACCESS_REMOTE_READ | MRL_ACCESS_REMOTE_WRITE)
static const size_t usizes[] = {4 * KiB, 64 * KiB, 1 * MiB};
static const char *const umem[] = {"anon", "memfd"};

struct ub {
	mrl_ctx *ctx;
	struct io_uring lib_ring, raw_ring;
	int sc_fd; /* system call counter, or -1 */
};

/* the tracepoint's id, or -1 (tracefs not mounted, or no such event) */
static long syscall_tp_id(void)
{
	static const char *const paths[] = {"/sys/kernel/tracing/events/raw_syscalls/sys_enter/id",
					    "/sys/kernel/debug/tracing/events/raw_syscalls/sys_enter/id"};
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		FILE *f = fopen(paths[i], "re");
		long id = -1;
		if (!f)
			continue;
		if (fscanf(f, "%ld", &id) != 1)
			id = -1;
		fclose(f);
		if (id >= 0)
			return id;
	}
	return -1;
}

/* Counts every system call of this thread and of the threads it creates
 * from now on (inherit): open it before the context starts its own. */
static int syscall_counter(void)
{
	long id = syscall_tp_id();
	if (id < 0)
		return -1;
	struct perf_event_attr a = {.type = PERF_TYPE_TRACEPOINT, .size = sizeof(a), .config = (uint64_t)id,
				    .inherit = 1, .disabled = 0, .exclude_hv = 1};
	return (int)syscall(SYS_perf_event_open, &a, 0, -1, -1, PERF_FLAG_FD_CLOEXEC);
}

static uint64_t syscalls_now(int fd)
{
	uint64_t v = 0;
	if (fd < 0 || read(fd, &v, sizeof(v)) != sizeof(v))
		return 0;
	return v;
}

static int raw_set(struct io_uring *ring, void *p, size_t len)
{
	struct iovec iov = {.iov_base = p, .iov_len = p ? len : 0};
	__u64 tag = 0;
	int r = io_uring_register_buffers_update_tag(ring, 0, &iov, &tag, 1);
	return r == 1 ? 0 : r < 0 ? r : -EIO;
}

/* one raw cycle: t[0] reg, t[1] dereg */
static int raw_cycle(struct ub *u, void *p, size_t len, uint64_t *t)
{
	uint64_t t0 = now_ns();
	int ret = raw_set(&u->raw_ring, p, len);
	uint64_t t1 = now_ns();
	if (!ret)
		ret = raw_set(&u->raw_ring, NULL, 0);
	t[0] = t1 - t0;
	t[1] = now_ns() - t1;
	return ret;
}

static int mrl_cycle(struct ub *u, void *p, size_t len, uint64_t *t)
{
	mrl_mr_t h;
	uint64_t t0 = now_ns();
	int ret = mrl_mr_reg(u->ctx, p, len, RW, NULL, &h);
	uint64_t t1 = now_ns();
	if (!ret)
		ret = mrl_mr_dereg(u->ctx, h);
	t[0] = t1 - t0;
	t[1] = now_ns() - t1;
	return ret;
}

/* both sides' memory: its own mapping (a neighbour would merge with it) */
static void *ub_mem(int kind, size_t len)
{
	void *p;
	if (kind == 0) {
		p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	} else {
		int fd = memfd_create("mrl-bench-ureg", MFD_CLOEXEC);
		if (fd < 0)
			return NULL;
		p = ftruncate(fd, (off_t)len) ? MAP_FAILED
					      : mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		close(fd);
	}
	if (p == MAP_FAILED)
		return NULL;
	memset(p, 0x5a, len); /* faulted in: the pin finds its pages */
	return p;
}

static int ub_open(struct ub *u, bool count)
{
	memset(u, 0, sizeof(*u));
	u->sc_fd = count ? syscall_counter() : -1;
	struct mrl_ctx_opts o = {.size = sizeof(o), .provider = "uring"};
	int ret = io_uring_queue_init(4, &u->lib_ring, 0);
	if (ret)
		return ret;
	if ((ret = io_uring_queue_init(4, &u->raw_ring, 0))) {
		io_uring_queue_exit(&u->lib_ring);
		return ret;
	}
	if ((ret = io_uring_register_buffers_sparse(&u->raw_ring, 4)) ||
	    (ret = mrl_ctx_create(&o, &u->ctx)))
		goto fail;
	if ((ret = mrl_uring_attach(u->ctx, &u->lib_ring, 4))) {
		mrl_ctx_destroy(u->ctx);
		goto fail;
	}
	return 0;
fail:
	io_uring_queue_exit(&u->raw_ring);
	io_uring_queue_exit(&u->lib_ring);
	if (u->sc_fd >= 0)
		close(u->sc_fd);
	return ret;
}

static void ub_close(struct ub *u)
{
	mrl_uring_detach(u->ctx);
	mrl_ctx_destroy(u->ctx);
	io_uring_queue_exit(&u->raw_ring);
	io_uring_queue_exit(&u->lib_ring);
	if (u->sc_fd >= 0)
		close(u->sc_fd);
}

static const char *szs(size_t s, char *b, size_t n)
{
	snprintf(b, n, s >= MiB ? "%zu MiB" : "%zu KiB", s >= MiB ? s >> 20 : s >> 10);
	return b;
}

/* ---- instructions per cycle, under callgrind ---- */

int bench_ureg_inner(void)
{
	struct ub u;
	int n = getenv("MRL_BENCH_CG_N") ? atoi(getenv("MRL_BENCH_CG_N")) : 100;
	int ret = ub_open(&u, false);
	if (ret) {
		fprintf(stderr, "ureg callgrind run: %s [%s]\n", mrl_strerror(ret), mrl_last_error());
		return 1;
	}
	for (int k = 0; k < 2; k++) {
		void *p = ub_mem(k, 4 * KiB);
		if (!p)
			return 1;
		for (int side = 0; side < 2; side++) {
			char label[64];
			uint64_t t[2];
			snprintf(label, sizeof(label), "%s-%s", side ? "mrl" : "raw", umem[k]);
			for (int i = 0; i < 4; i++) /* warm */
				ret |= side ? mrl_cycle(&u, p, 4 * KiB, t) : raw_cycle(&u, p, 4 * KiB, t);
			CALLGRIND_ZERO_STATS;
			CALLGRIND_TOGGLE_COLLECT;
			for (int i = 0; i < n; i++)
				ret |= side ? mrl_cycle(&u, p, 4 * KiB, t) : raw_cycle(&u, p, 4 * KiB, t);
			CALLGRIND_TOGGLE_COLLECT;
			CALLGRIND_DUMP_STATS_AT(label);
		}
		munmap(p, 4 * KiB);
	}
	ub_close(&u);
	if (ret)
		fprintf(stderr, "ureg callgrind run: a cycle failed [%s]\n", mrl_last_error());
	return ret ? 1 : 0;
}

/* instructions of the dump labelled label in dir (cg.out.N), 0 if none */
static uint64_t cg_ir(const char *dir, const char *label)
{
	char path[1200], line[512];
	uint64_t found = 0;
	for (int i = 1; i < 64 && !found; i++) {
		snprintf(path, sizeof(path), "%s/cg.out.%d", dir, i);
		FILE *f = fopen(path, "r");
		char l[64] = "";
		unsigned long long v = 0;
		if (!f)
			continue;
		while (fgets(line, sizeof(line), f)) {
			if (!strncmp(line, "desc: Trigger: Client Request: ", 31))
				sscanf(line + 31, "%63s", l);
			else if (!strncmp(line, "summary: ", 9) || !strncmp(line, "totals: ", 8))
				sscanf(strchr(line, ' ') + 1, "%llu", &v);
		}
		fclose(f);
		if (!strcmp(l, label))
			found = v;
	}
	return found;
}

static void ureg_callgrind(void)
{
	if (!HAVE_CALLGRIND || system("command -v valgrind >/dev/null 2>&1")) {
		printf("(instructions: valgrind not installed, not counted)\n");
		return;
	}
	char dir[600], cmd[4096];
	int n = B.smoke ? 4 : 200;
	snprintf(dir, sizeof(dir), "%s/callgrind-ureg", B.outdir);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s' && mkdir -p '%s'", dir, dir);
	if (system(cmd))
		return;
	snprintf(cmd, sizeof(cmd),
		 "MRL_BENCH_CG_N=%d valgrind --tool=callgrind --collect-atstart=no "
		 "--callgrind-out-file='%s/cg.out' '%s' --ureg-inner >'%s/valgrind.log' 2>&1",
		 n, dir, B.self, dir);
	if (system(cmd)) {
		printf("(instructions: the valgrind run failed, see %s/valgrind.log)\n", dir);
		return;
	}
	printf("instructions per 4 KiB reg+dereg cycle (callgrind, user space, every thread):\n");
	for (int k = 0; k < 2; k++) {
		char l1[64], l2[64];
		snprintf(l1, sizeof(l1), "raw-%s", umem[k]);
		snprintf(l2, sizeof(l2), "mrl-%s", umem[k]);
		double raw = (double)cg_ir(dir, l1) / n, lib = (double)cg_ir(dir, l2) / n;
		printf("  %-6s raw %8.0f  mrl %8.0f  added %8.0f\n", umem[k], raw, lib, lib - raw);
		json_row("\"memory\": \"%s\", \"what\": \"instructions\", \"size\": 4096, \"cycles\": %d, "
			 "\"raw_ir\": %.0f, \"mrl_ir\": %.0f",
			 umem[k], n, raw, lib);
	}
}

int bench_ureg(void)
{
	struct ub u;
	int ret = ub_open(&u, true);
	if (ret == -ENOSYS || ret == -EPERM) {
		printf("== io_uring registration: io_uring unavailable (%s), skipped\n", strerror(-ret));
		json_part("ureg");
		json_row("\"skipped\": \"io_uring unavailable\"");
		json_part_end();
		return 0;
	}
	if (ret)
		return ret;
	int n = B.smoke ? 4 : 2000;
	uint64_t *v[6];
	for (int i = 0; i < 6; i++)
		v[i] = calloc((size_t)n, 8);
	printf("== io_uring registration: mrl_mr_reg/dereg (provider uring) vs the same buffer update on a bare "
	       "ring (us; ratio = mrl/raw; syscalls per cycle)\n");
	printf("%-6s %-8s %8s %8s %6s | %8s %8s %6s | %8s %8s %6s %8s | %7s %7s\n", "memory", "size", "raw reg",
	       "mrl reg", "ratio", "raw der", "mrl der", "ratio", "raw cyc", "mrl cyc", "p50 x", "p99 x",
	       "raw sc", "mrl sc");
	json_part("ureg");
	for (int k = 0; k < 2 && !ret; k++)
		for (size_t s = 0; s < sizeof(usizes) / sizeof(usizes[0]) && !ret; s++) {
			size_t len = usizes[s];
			void *p = ub_mem(k, len);
			if (!p) {
				ret = -ENOMEM;
				break;
			}
			uint64_t t[2], sc[2] = {0, 0};
			for (int i = 0; i < 8 && !ret; i++) /* warm: the fork probe, first faults */
				ret = raw_cycle(&u, p, len, t) ?: mrl_cycle(&u, p, len, t);
			for (int i = 0; i < n && !ret; i++) {
				for (int j = 0; j < 2 && !ret; j++) {
					int m = (i + j) & 1;
					uint64_t c0 = syscalls_now(u.sc_fd);
					ret = m ? mrl_cycle(&u, p, len, t) : raw_cycle(&u, p, len, t);
					sc[m] += syscalls_now(u.sc_fd) - c0 - (u.sc_fd >= 0); /* less the read itself */
					v[m * 3][i] = t[0];
					v[m * 3 + 1][i] = t[1];
					v[m * 3 + 2][i] = t[0] + t[1];
				}
			}
			munmap(p, len);
			if (ret)
				break;
			double p50[6], p99[6];
			for (int i = 0; i < 6; i++) {
				p50[i] = pctl(v[i], (size_t)n, 50) / 1e3;
				p99[i] = pctl(v[i], (size_t)n, 99) / 1e3;
			}
			char sz[16], rsc[16] = "-", msc[16] = "-";
			if (u.sc_fd >= 0) {
				snprintf(rsc, sizeof(rsc), "%.2f", (double)sc[0] / n);
				snprintf(msc, sizeof(msc), "%.2f", (double)sc[1] / n);
			}
			printf("%-6s %-8s %8.2f %8.2f %6.2f | %8.2f %8.2f %6.2f | %8.2f %8.2f %6.2f %8.2f | %7s %7s\n",
			       umem[k], szs(len, sz, sizeof(sz)), p50[0], p50[3], p50[3] / p50[0], p50[1], p50[4],
			       p50[4] / p50[1], p50[2], p50[5], p50[5] / p50[2], p99[5] / p99[2], rsc, msc);
			json_row("\"memory\": \"%s\", \"size\": %zu, \"samples\": %d, "
				 "\"raw_reg_p50_us\": %.3f, \"mrl_reg_p50_us\": %.3f, \"reg_ratio\": %.3f, "
				 "\"raw_dereg_p50_us\": %.3f, \"mrl_dereg_p50_us\": %.3f, \"dereg_ratio\": %.3f, "
				 "\"raw_cycle_p50_us\": %.3f, \"mrl_cycle_p50_us\": %.3f, \"cycle_ratio\": %.3f, "
				 "\"raw_cycle_p99_us\": %.3f, \"mrl_cycle_p99_us\": %.3f, \"cycle_p99_ratio\": %.3f, "
				 "\"raw_syscalls\": %.2f, \"mrl_syscalls\": %.2f",
				 umem[k], len, n, p50[0], p50[3], p50[3] / p50[0], p50[1], p50[4], p50[4] / p50[1],
				 p50[2], p50[5], p50[5] / p50[2], p99[2], p99[5], p99[5] / p99[2],
				 u.sc_fd >= 0 ? (double)sc[0] / n : -1.0, u.sc_fd >= 0 ? (double)sc[1] / n : -1.0);
		}
	for (int i = 0; i < 6; i++)
		free(v[i]);
	ub_close(&u);
	if (!ret)
		ureg_callgrind();
	json_part_end();
	printf("reg: the pin (mrl: + finding the backing, the watchers); der: the unpin (mrl: the device\n"
	       "     worker's, waited for); cyc: both; p99 x: the cycle's p99 ratio\n");
	return ret;
}
