/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Fast path: RMA write/read through mrl_write/mrl_read/mrl_ep_poll versus
 * fi_writemsg/fi_readmsg + fi_cq_read on the same provider (tcp;ofi_rxm on
 * loopback), the same hints, the same CQ/AV/endpoint setup and the same
 * completion semantics (writes delivery-complete, as the library posts them).
 * One thread drives both sides of each pair (post, progress the target, poll
 * the initiator), so both are measured the same way and interleaved in blocks.
 * The callgrind part re-runs this program under valgrind and counts the
 * instructions executed on the initiator's side per operation. */
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <dirent.h>
#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#define HAVE_CALLGRIND 1
#else
#define HAVE_CALLGRIND 0 /* no valgrind headers: the counting part reports itself skipped */
#define CALLGRIND_TOGGLE_COLLECT
#define CALLGRIND_ZERO_STATS
#define CALLGRIND_DUMP_STATS_AT(x) (void)(x)
#endif

#include "common.h"

enum { K_WRITE = 0, K_READ = 1 };
static const char *kind_name[] = {"write", "read"};
static const size_t sizes[] = {64, 4096, 1 << 20};
#define NSIZES 3
#define DEPTH 16
#define BUFSZ (1u << 20)

struct fp {
	/* mrlease */
	mrl_ctx *sctx, *cctx;
	mrl_ep *sep, *cep;
	mrl_peer *cpeer, *speer;
	mrl_mr_t tmr, lmr;
	mrl_rmr *rmr;
	/* raw */
	struct raw_node rt, ri;
	fi_addr_t rt_addr;
	struct fid_mr *rt_mr, *ri_mr;
	void *ri_desc;
	uint64_t rt_base, rt_key;
	struct fi_context2 rctx[DEPTH * 2];
	/* memory */
	void *mtgt, *mloc, *rtgt, *rloc;
	/* callgrind: count only the initiator's calls */
	bool cg;
	uint64_t polls, errors;
};

static atomic_bool helper_stop;
static void *helper_main(void *a)
{
	mrl_ep *ep = a;
	while (!atomic_load(&helper_stop)) {
		mrl_ep_progress(ep);
		usleep(50);
	}
	return NULL;
}


static void *map_anon(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	memset(p, 0x5a, len);
	return p;
}

static int fp_setup(struct fp *f)
{
	int ret;
	memset(f, 0, sizeof(*f));
	f->mtgt = map_anon(BUFSZ);
	f->mloc = map_anon(BUFSZ);
	f->rtgt = map_anon(BUFSZ);
	f->rloc = map_anon(BUFSZ);
	if (!f->mtgt || !f->mloc || !f->rtgt || !f->rloc)
		return -ENOMEM;

	/* mrlease: owner and peer in one process, each its own context */
	struct mrl_ctx_opts o = {.size = sizeof(o), .provider = "tcp;ofi_rxm"};
	if ((ret = mrl_ctx_create(&o, &f->sctx)) || (ret = mrl_ctx_create(&o, &f->cctx)))
		return ret;
	if ((ret = mrl_mr_reg(f->sctx, f->mtgt, BUFSZ, MRL_ACCESS_REMOTE_READ | MRL_ACCESS_REMOTE_WRITE,
			      NULL, &f->tmr)) ||
	    (ret = mrl_mr_reg(f->cctx, f->mloc, BUFSZ, 0, NULL, &f->lmr)))
		return ret;
	if ((ret = mrl_ep_create(f->sctx, NULL, &f->sep)) || (ret = mrl_ep_create(f->cctx, NULL, &f->cep)))
		return ret;
	uint16_t port;
	if ((ret = mrl_ep_listen(f->sep, "127.0.0.1", 0, &port)))
		return ret;
	struct acc a = {.ep = f->sep};
	pthread_t th, hp;
	pthread_create(&th, NULL, acc_main, &a);
	ret = mrl_ep_connect(f->cep, "127.0.0.1", port, 10000, &f->cpeer);
	pthread_join(th, NULL);
	if (ret || a.ret)
		return ret ? ret : a.ret;
	f->speer = a.peer;
	atomic_store(&helper_stop, false);
	pthread_create(&hp, NULL, helper_main, f->sep); /* the owner answers the open */
	ret = mrl_rmr_open(f->cpeer, f->tmr, 10000, &f->rmr);
	atomic_store(&helper_stop, true);
	pthread_join(hp, NULL);
	if (ret)
		return ret;

	/* raw libfabric: two nodes, each its own fabric and domain like the contexts */
	if ((ret = raw_open(&f->rt)) || (ret = raw_open(&f->ri)))
		return ret;
	fi_addr_t back;
	if ((ret = raw_connect(&f->ri, &f->rt, &f->rt_addr)) || (ret = raw_connect(&f->rt, &f->ri, &back)))
		return ret;
	uint64_t acc = FI_READ | FI_WRITE | FI_SEND | FI_RECV; /* as src/reg_fabric.c */
	if ((ret = fi_mr_reg(f->rt.domain, f->rtgt, BUFSZ, acc | FI_REMOTE_READ | FI_REMOTE_WRITE, 0,
			     f->rt.prov_key ? 0 : 0x10000, 0, &f->rt_mr, NULL)) ||
	    (ret = fi_mr_reg(f->ri.domain, f->rloc, BUFSZ, acc, 0, f->ri.prov_key ? 0 : 0x10000, 0,
			     &f->ri_mr, NULL)))
		return ret;
	f->rt_key = fi_mr_key(f->rt_mr);
	f->rt_base = f->rt.virt_addr ? (uintptr_t)f->rtgt : 0;
	f->ri_desc = f->ri.mr_local ? fi_mr_desc(f->ri_mr) : NULL;
	return 0;
}

static void fp_teardown(struct fp *f)
{
	if (f->rmr)
		mrl_rmr_close(f->rmr);
	if (f->cep)
		mrl_ep_destroy(f->cep);
	if (f->sep)
		mrl_ep_destroy(f->sep);
	if (f->cctx)
		mrl_ctx_destroy(f->cctx);
	if (f->sctx)
		mrl_ctx_destroy(f->sctx);
	if (f->rt_mr)
		fi_close(&f->rt_mr->fid);
	if (f->ri_mr)
		fi_close(&f->ri_mr->fid);
	raw_close(&f->ri);
	raw_close(&f->rt);
	munmap(f->mtgt, BUFSZ);
	munmap(f->mloc, BUFSZ);
	munmap(f->rtgt, BUFSZ);
	munmap(f->rloc, BUFSZ);
}

/* ---- one operation each way: post, drive the target, poll the initiator ---- */

static inline void cg_on(struct fp *f)
{
	if (f->cg)
		CALLGRIND_TOGGLE_COLLECT;
}
#define cg_off cg_on

/* 0, -FI_EAGAIN (no room: poll, then post again) or an error */
static inline int raw_post(struct fp *f, int kind, size_t len, void *uctx)
{
	struct iovec iov = {.iov_base = f->rloc, .iov_len = len};
	struct fi_rma_iov riov = {.addr = f->rt_base, .len = len, .key = f->rt_key};
	struct fi_msg_rma msg = {.msg_iov = &iov, .desc = &f->ri_desc, .iov_count = 1,
				 .addr = f->rt_addr, .rma_iov = &riov, .rma_iov_count = 1,
				 .context = uctx};
	cg_on(f);
	ssize_t r = kind == K_WRITE ? fi_writemsg(f->ri.ep, &msg, FI_DELIVERY_COMPLETE | FI_COMPLETION)
				    : fi_readmsg(f->ri.ep, &msg, FI_COMPLETION);
	cg_off(f);
	return (int)r;
}

static inline int raw_poll(struct fp *f)
{
	struct fi_cq_msg_entry e[16];
	fi_cq_read(f->rt.cq, e, 16); /* the target's progress */
	cg_on(f);
	ssize_t n = fi_cq_read(f->ri.cq, e, 16);
	cg_off(f);
	f->polls++;
	if (n == -FI_EAVAIL) {
		struct fi_cq_err_entry ee = {0};
		if (fi_cq_readerr(f->ri.cq, &ee, 0) > 0) {
			f->errors++;
			return 1;
		}
		return 0;
	}
	return n > 0 ? (int)n : 0;
}

static inline int mrl_post(struct fp *f, int kind, size_t len, void *uctx)
{
	cg_on(f);
	int r = kind == K_WRITE ? mrl_write(f->rmr, 0, f->mloc, len, uctx)
				: mrl_read(f->rmr, 0, f->mloc, len, uctx);
	cg_off(f);
	return r;
}

static inline int mrl_poll(struct fp *f)
{
	struct mrl_completion c[16];
	mrl_ep_progress(f->sep); /* the target's progress */
	cg_on(f);
	int n = mrl_ep_poll(f->cep, c, 16);
	cg_off(f);
	f->polls++;
	for (int i = 0; i < n; i++)
		f->errors += c[i].status != 0;
	return n > 0 ? n : 0;
}

/* n operations one at a time; lat[] gets each one's time (may be NULL) */
static int run_lat(struct fp *f, bool mrl, int kind, size_t len, int n, uint64_t *lat)
{
	for (int i = 0; i < n; i++) {
		uint64_t t0 = now_ns(), spin = 0;
		int r, got = 0;
		/* the library queues what finds no room; raw gets -FI_EAGAIN: drive and retry */
		while ((r = mrl ? mrl_post(f, kind, len, f->rctx) : raw_post(f, kind, len, f->rctx)) == -FI_EAGAIN)
			got += mrl ? mrl_poll(f) : raw_poll(f);
		if (r)
			return r;
		while (!got && !(got = mrl ? mrl_poll(f) : raw_poll(f)))
			if (++spin > 200000000ull)
				return -ETIMEDOUT;
		if (lat)
			lat[i] = now_ns() - t0;
	}
	return 0;
}

/* n operations keeping DEPTH in flight; returns elapsed ns or -errno */
static int64_t run_rate(struct fp *f, bool mrl, int kind, size_t len, int n)
{
	int posted = 0, done = 0;
	uint64_t t0 = now_ns(), spin = 0;
	while (done < n) {
		while (posted < n && posted - done < DEPTH) {
			/* contexts rotate over twice the depth: a slot is reused only
			 * long after its operation completed */
			void *uctx = &f->rctx[posted % (2 * DEPTH)];
			int r = mrl ? mrl_post(f, kind, len, uctx) : raw_post(f, kind, len, uctx);
			if (r == -FI_EAGAIN)
				break;
			if (r)
				return r;
			posted++;
		}
		int got = mrl ? mrl_poll(f) : raw_poll(f);
		done += got;
		if (!got && ++spin > 200000000ull)
			return -ETIMEDOUT;
	}
	return (int64_t)(now_ns() - t0);
}

int bench_fastpath(void)
{
	struct fp f;
	int ret = fp_setup(&f);
	if (ret) {
		fp_teardown(&f);
		return ret;
	}
	int rounds = B.smoke ? 2 : 10;
	printf("== fast path: RMA through mrlease vs raw libfabric (tcp;ofi_rxm, loopback, one thread drives both sides)\n");
	printf("%-6s %-8s %12s %12s %7s | %9s %9s %9s %9s %7s\n", "op", "size", "raw ops/s",
	       "mrl ops/s", "ratio", "raw p50", "mrl p50", "raw p99", "mrl p99", "p50 x");
	json_part("fastpath");
	for (int s = 0; s < NSIZES; s++) {
		int n = B.smoke ? 8 : sizes[s] >= MiB ? 60 : 1000;
		for (int k = 0; k < 2; k++) {
			size_t cap = (size_t)n * (size_t)rounds;
			uint64_t *lat[2] = {calloc(cap, 8), calloc(cap, 8)};
			uint64_t ns[2] = {0, 0}, ops[2] = {0, 0};
			/* warm up both (connections, caches) */
			for (int m = 0; m < 2 && !ret; m++)
				ret = run_lat(&f, m, k, sizes[s], B.smoke ? 2 : 20, NULL);
			for (int r = 0; r < rounds && !ret; r++)
				for (int j = 0; j < 2 && !ret; j++) {
					int m = (r + j) & 1; /* alternate which goes first */
					ret = run_lat(&f, m, k, sizes[s], n, lat[m] + (size_t)r * (size_t)n);
					int64_t el = ret ? 0 : run_rate(&f, m, k, sizes[s], n);
					if (el < 0)
						ret = (int)el;
					ns[m] += (uint64_t)el;
					ops[m] += (uint64_t)n;
				}
			if (ret) {
				free(lat[0]);
				free(lat[1]);
				break;
			}
			double rate[2], p50[2], p99[2];
			for (int m = 0; m < 2; m++) {
				rate[m] = (double)ops[m] * 1e9 / (double)ns[m];
				p50[m] = pctl(lat[m], cap, 50) / 1e3;
				p99[m] = pctl(lat[m], cap, 99) / 1e3;
			}
			char sz[16];
			snprintf(sz, sizeof(sz), sizes[s] >= MiB ? "%zu MiB" : sizes[s] >= KiB ? "%zu KiB" : "%zu B",
				 sizes[s] >= MiB ? sizes[s] >> 20 : sizes[s] >= KiB ? sizes[s] >> 10 : sizes[s]);
			printf("%-6s %-8s %12.0f %12.0f %7.3f | %7.1fus %7.1fus %7.1fus %7.1fus %7.3f\n",
			       kind_name[k], sz, rate[0], rate[1], rate[1] / rate[0], p50[0], p50[1], p99[0],
			       p99[1], p50[1] / p50[0]);
			json_row("\"op\": \"%s\", \"size\": %zu, \"depth\": %d, \"ops_each\": %llu, "
				 "\"raw_ops_per_s\": %.1f, \"mrl_ops_per_s\": %.1f, \"rate_ratio\": %.4f, "
				 "\"raw_lat_p50_us\": %.2f, \"mrl_lat_p50_us\": %.2f, \"raw_lat_p99_us\": %.2f, "
				 "\"mrl_lat_p99_us\": %.2f, \"lat_p50_ratio\": %.4f",
				 kind_name[k], sizes[s], DEPTH, (unsigned long long)ops[0], rate[0], rate[1],
				 rate[1] / rate[0], p50[0], p50[1], p99[0], p99[1], p50[1] / p50[0]);
			free(lat[0]);
			free(lat[1]);
		}
		if (ret)
			break;
	}
	json_part_end();
	if (!ret && f.errors)
		ret = -EIO, fail("fast path: %llu operations completed with an error",
				 (unsigned long long)f.errors);
	printf("ratio = mrlease / raw (rate: >= 0.99 is the target); rate with %d in flight, latency one at a time\n",
	       DEPTH);
	fp_teardown(&f);
	return ret;
}

/* ---- instructions per operation under callgrind ---- */

/* Run under valgrind: per size and kind, raw then mrlease, one dump each. */
int bench_callgrind_inner(void)
{
	struct fp f;
	int ret = fp_setup(&f);
	const char *polls = getenv("MRL_BENCH_CG_POLLS");
	FILE *pf = polls ? fopen(polls, "w") : NULL;
	int n_small = getenv("MRL_BENCH_CG_N") ? atoi(getenv("MRL_BENCH_CG_N")) : 300;
	for (int s = 0; s < NSIZES && !ret; s++)
		for (int k = 0; k < 2 && !ret; k++)
			for (int m = 0; m < 2 && !ret; m++) {
				int n = sizes[s] >= MiB ? (n_small / 10 > 2 ? n_small / 10 : 2) : n_small;
				ret = run_lat(&f, m, k, sizes[s], 10, NULL); /* warm */
				if (ret)
					break;
				char label[64];
				snprintf(label, sizeof(label), "%s-%s-%zu-%d", m ? "mrl" : "raw", kind_name[k],
					 sizes[s], n);
				f.polls = 0;
				f.cg = true;
				CALLGRIND_ZERO_STATS;
				ret = run_lat(&f, m, k, sizes[s], n, NULL);
				CALLGRIND_DUMP_STATS_AT(label);
				f.cg = false;
				if (pf)
					fprintf(pf, "%s %llu\n", label, (unsigned long long)f.polls);
			}
	if (pf)
		fclose(pf);
	fp_teardown(&f);
	if (ret)
		fprintf(stderr, "callgrind run: %s [%s]\n", mrl_strerror(ret), mrl_last_error());
	return ret ? 1 : 0;
}

static uint64_t cg_dump(const char *dir, const char *name, char label[64])
{
	char path[1200], line[512];
	uint64_t ir = 0;
	label[0] = 0;
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *cf = fopen(path, "r");
	while (cf && fgets(line, sizeof(line), cf)) {
		if (!strncmp(line, "desc: Trigger: Client Request: ", 31))
			sscanf(line + 31, "%63s", label);
		else if (!strncmp(line, "summary: ", 9) || !strncmp(line, "totals: ", 8))
			ir = strtoull(strchr(line, ' ') + 1, NULL, 10);
	}
	if (cf)
		fclose(cf);
	return ir;
}

int cg_rows(const char *dir, const char *pollf, struct cg_row *rows, int max)
{
	int nr = 0;
	FILE *pf = fopen(pollf, "r");
	if (!pf)
		return -ENOENT;
	while (nr < max && fscanf(pf, "%63s %llu", rows[nr].label, (unsigned long long *)&rows[nr].polls) == 2) {
		rows[nr].ir = 0;
		nr++;
	}
	fclose(pf);
	/* each dump is cg.out.N, with "desc: Trigger: Client Request: LABEL" and "summary: IR" */
	DIR *d = opendir(dir);
	struct dirent *de;
	while (d && (de = readdir(d))) {
		if (strncmp(de->d_name, "cg.out", 6))
			continue;
		char label[64];
		uint64_t ir = cg_dump(dir, de->d_name, label);
		for (int i = 0; i < nr; i++)
			if (!strcmp(rows[i].label, label))
				rows[i].ir = ir;
	}
	if (d)
		closedir(d);
	return nr;
}

int bench_callgrind(void)
{
	if (!HAVE_CALLGRIND || system("command -v valgrind >/dev/null 2>&1")) {
		printf("== callgrind: valgrind not installed, skipped\n");
		json_part("callgrind");
		json_row("\"skipped\": \"valgrind not installed\"");
		json_part_end();
		return 0;
	}
	char dir[600], cmd[4096], pollf[700];
	snprintf(dir, sizeof(dir), "%s/callgrind", B.outdir);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s' && mkdir -p '%s'", dir, dir);
	if (system(cmd))
		return -EIO;
	snprintf(pollf, sizeof(pollf), "%s/polls.txt", dir);
	printf("== instructions per operation (valgrind --tool=callgrind, initiator side: post + polls of its CQ)\n");
	snprintf(cmd, sizeof(cmd),
		 "MRL_BENCH_CG_POLLS='%s' MRL_BENCH_CG_N=%d valgrind --tool=callgrind --collect-atstart=no "
		 "--callgrind-out-file='%s/cg.out' '%s' --callgrind-inner >'%s/valgrind.log' 2>&1",
		 pollf, B.smoke ? 6 : 300, dir, B.self, dir);
	int st = system(cmd);
	if (st) {
		fail("valgrind run failed (%d); see %s/valgrind.log", st, dir);
		return -EIO;
	}
	struct cg_row rows[32];
	int nr = cg_rows(dir, pollf, rows, 32);
	if (nr < 0)
		return nr;
	printf("%-6s %-8s %10s %10s %8s | %9s %9s\n", "op", "size", "raw Ir/op", "mrl Ir/op", "added",
	       "raw polls", "mrl polls");
	json_part("callgrind");
	int ret = 0;
	for (int i = 0; i + 1 < nr; i += 2) {
		char kind[16];
		size_t size;
		int n;
		if (sscanf(rows[i].label, "raw-%15[a-z]-%zu-%d", kind, &size, &n) != 3 || n <= 0 ||
		    !rows[i].ir || !rows[i + 1].ir) {
			fail("callgrind: no count for %s", rows[i].label);
			ret = -EIO;
			continue;
		}
		double raw = (double)rows[i].ir / n, mrl = (double)rows[i + 1].ir / n;
		double rp = (double)rows[i].polls / n, mp = (double)rows[i + 1].polls / n;
		printf("%-6s %-8zu %10.0f %10.0f %8.0f | %9.2f %9.2f\n", kind, size, raw, mrl, mrl - raw, rp, mp);
		json_row("\"op\": \"%s\", \"size\": %zu, \"ops\": %d, \"raw_ir_per_op\": %.1f, "
			 "\"mrl_ir_per_op\": %.1f, \"added_ir_per_op\": %.1f, \"raw_polls_per_op\": %.2f, "
			 "\"mrl_polls_per_op\": %.2f",
			 kind, size, n, raw, mrl, mrl - raw, rp, mp);
	}
	json_part_end();
	printf("added = mrlease - raw; polls/op differ when a completion needs more progress calls, "
	       "so compare rows whose poll counts match\n");
	return ret;
}
