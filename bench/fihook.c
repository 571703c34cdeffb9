/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The libfabric hook's cost (issue 11's figures): fi_write of 64 B + its
 * completion on tcp;ofi_rxm (loopback, an endpoint writing its own MR), in
 * one process and interleaved in blocks, three ways:
 *   plain     fi_write, as the application posts it, without the hook;
 *   plain-dc  fi_writemsg with FI_DELIVERY_COMPLETE, without the hook: what
 *             the hook posts for a write to a leased MR of a hooked owner;
 *   hooked    fi_write through libmrlease-fi.so (dlopened, installed over
 *             the same provider as libfabric would), the target MR leased
 *             and on the state board: the guarded path.
 * Latency p50/p99 per way and the ratio hooked/plain; registration
 * (fi_mr_reg + fi_close of 64 KiB) through the hook and without. With
 * valgrind, the program re-runs itself under callgrind and counts the
 * instructions per write + completion polls for each way ("added" =
 * hooked - plain-dc is the hook's own work; hooked - plain also counts the
 * provider's delivery-complete protocol). */
#include <dirent.h>
#include <dlfcn.h>
#include <libgen.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <unistd.h>
#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#define HAVE_CG 1
#else
#define HAVE_CG 0
#define CALLGRIND_ZERO_STATS
#define CALLGRIND_TOGGLE_COLLECT
#define CALLGRIND_DUMP_STATS_AT(x) (void)(x)
#endif

#include <rdma/providers/fi_prov.h>

#include "common.h"

#define SZ 64
#define WIN (64 * 1024)
enum { W_PLAIN, W_DC, W_HOOK, NWAYS };
static const char *way_name[] = {"plain", "plain-dc", "hooked"};

struct stack {
	struct fi_info *info;
	struct fid_fabric *pfab, *fab; /* the provider's; the one used (the hook's, or the same) */
	struct fid_domain *dom;
	struct fid_cq *cq;
	struct fid_av *av;
	struct fid_ep *ep;
	struct fid_mr *tmr, *lmr;
	fi_addr_t self;
	uint64_t base, key;
	void *ldesc;
	char *win, *buf;
	uint64_t polls;
};

static struct fi_provider *hook_prov(char *why, size_t wsz)
{
	char self[4096], path[4200];
	snprintf(self, sizeof(self), "%s", B.self);
	snprintf(path, sizeof(path), "%s/../fi/libmrlease-fi.so", dirname(self));
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		snprintf(why, wsz, "%.180s not loadable (make builds it in the plain tree)", path);
		return NULL;
	}
	struct fi_provider *(*ini)(void) = (struct fi_provider * (*)(void)) dlsym(h, "fi_prov_ini");
	struct fi_provider *p = ini ? ini() : NULL;
	if (!p || p->getinfo || !p->fabric)
		snprintf(why, wsz, "%.200s is not a hooking provider", path);
	return p && !p->getinfo && p->fabric ? p : NULL;
}

static int stack_open(struct stack *s, struct fi_provider *hook)
{
	memset(s, 0, sizeof(*s));
	struct fi_info *hints = fi_allocinfo();
	if (!hints)
		return -ENOMEM;
	hints->ep_attr->type = FI_EP_RDM;
	hints->caps = FI_RMA | FI_MSG;
	hints->domain_attr->mr_mode = FI_MR_VIRT_ADDR | FI_MR_ALLOCATED | FI_MR_PROV_KEY | FI_MR_LOCAL;
	hints->domain_attr->threading = FI_THREAD_SAFE;
	hints->fabric_attr->prov_name = strdup("tcp;ofi_rxm");
	int ret = fi_getinfo(FI_VERSION(1, 9), "127.0.0.1", NULL, FI_SOURCE, hints, &s->info);
	fi_freeinfo(hints);
	if (ret || (ret = fi_fabric(s->info->fabric_attr, &s->pfab, NULL)))
		return ret;
	s->fab = s->pfab;
	if (hook) { /* as libfabric installs a hook: over the fabric, naming its provider */
		struct fi_provider rxm = {.name = "ofi_rxm"};
		struct fi_fabric_attr fa = {.fabric = s->pfab};
		if ((ret = hook->fabric(&fa, &s->fab, &rxm)))
			return ret;
	}
	struct fi_cq_attr ca = {.format = FI_CQ_FORMAT_CONTEXT, .size = 64};
	struct fi_av_attr aa = {.type = FI_AV_TABLE};
	if ((ret = fi_domain(s->fab, s->info, &s->dom, NULL)) || (ret = fi_cq_open(s->dom, &ca, &s->cq, NULL)) ||
	    (ret = fi_av_open(s->dom, &aa, &s->av, NULL)) || (ret = fi_endpoint(s->dom, s->info, &s->ep, NULL)) ||
	    (ret = fi_ep_bind(s->ep, &s->cq->fid, FI_TRANSMIT | FI_RECV)) ||
	    (ret = fi_ep_bind(s->ep, &s->av->fid, 0)) || (ret = fi_enable(s->ep)))
		return ret;
	char name[128];
	size_t nl = sizeof(name);
	if ((ret = fi_getname(&s->ep->fid, name, &nl)))
		return ret;
	if (fi_av_insert(s->av, name, 1, &s->self, 0, NULL) != 1)
		return -EIO;
	s->win = mmap(NULL, WIN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	s->buf = aligned_alloc(4096, 4096);
	if (s->win == MAP_FAILED || !s->buf)
		return -ENOMEM;
	memset(s->win, 0, WIN);
	/* a random key: the state board tells owners apart by key, and other
	 * hooked programs on the host ask for small ones too (an ambiguous key
	 * is posted unguarded, which would measure the wrong path) */
	uint64_t rk = 0;
	size_t ks = s->info->domain_attr->mr_key_size;
	while (!rk && getrandom(&rk, sizeof(rk), 0) == (ssize_t)sizeof(rk))
		rk &= ks && ks < 8 ? (1ull << (8 * ks)) - 1 : ~0ull >> 16;
	if ((ret = fi_mr_reg(s->dom, s->win, WIN, FI_REMOTE_READ | FI_REMOTE_WRITE | FI_READ | FI_WRITE, 0, rk,
			     0, &s->tmr, NULL)) ||
	    (ret = fi_mr_reg(s->dom, s->buf, 4096, FI_READ | FI_WRITE, 0, 1, 0, &s->lmr, NULL)))
		return ret;
	s->key = fi_mr_key(s->tmr);
	s->ldesc = fi_mr_desc(s->lmr);
	s->base = s->info->domain_attr->mr_mode & FI_MR_VIRT_ADDR ? (uintptr_t)s->win : 0;
	return 0;
}

static void stack_close(struct stack *s)
{
	if (s->tmr)
		fi_close(&s->tmr->fid);
	if (s->lmr)
		fi_close(&s->lmr->fid);
	if (s->ep)
		fi_close(&s->ep->fid);
	if (s->av)
		fi_close(&s->av->fid);
	if (s->cq)
		fi_close(&s->cq->fid);
	if (s->dom)
		fi_close(&s->dom->fid);
	if (s->fab && s->fab != s->pfab)
		fi_close(&s->fab->fid); /* the hook's closes the provider's under it */
	else if (s->pfab)
		fi_close(&s->pfab->fid);
	if (s->win && s->win != MAP_FAILED)
		munmap(s->win, WIN);
	free(s->buf);
	fi_freeinfo(s->info);
	memset(s, 0, sizeof(*s));
}

/* one write of SZ and its completion: 0 or -errno */
static int one(struct stack *s, int way, uint64_t off)
{
	ssize_t r;
	struct fi_context2 ctx;
	for (;;) {
		if (way == W_DC) {
			struct iovec iov = {.iov_base = s->buf, .iov_len = SZ};
			struct fi_rma_iov rma = {.addr = s->base + off, .len = SZ, .key = s->key};
			struct fi_msg_rma m = {.msg_iov = &iov, .desc = &s->ldesc, .iov_count = 1,
					       .addr = s->self, .rma_iov = &rma, .rma_iov_count = 1,
					       .context = &ctx};
			r = fi_writemsg(s->ep, &m, FI_COMPLETION | FI_DELIVERY_COMPLETE);
		} else {
			r = fi_write(s->ep, s->buf, SZ, s->ldesc, s->self, s->base + off, s->key, &ctx);
		}
		if (r != -FI_EAGAIN)
			break;
		struct fi_cq_entry e;
		fi_cq_read(s->cq, &e, 0);
	}
	if (r)
		return (int)r;
	for (;;) {
		struct fi_cq_entry e;
		ssize_t n = fi_cq_read(s->cq, &e, 1);
		s->polls++;
		if (n == 1)
			return e.op_context == &ctx ? 0 : -EPROTO;
		if (n == -FI_EAVAIL) {
			struct fi_cq_err_entry err = {0};
			fi_cq_readerr(s->cq, &err, 0);
			return -(int)err.err;
		}
		if (n != -FI_EAGAIN)
			return (int)n;
	}
}

static int block(struct stack *s, int way, int n, uint64_t *lat)
{
	for (int i = 0; i < n; i++) {
		uint64_t t0 = now_ns();
		int ret = one(s, way, (uint64_t)(i % (WIN / SZ)) * SZ);
		if (ret)
			return ret;
		if (lat)
			lat[i] = now_ns() - t0;
	}
	return 0;
}

static struct stack st_plain, st_hook;

static int open_both(char *why, size_t wsz)
{
	struct fi_provider *hook = hook_prov(why, wsz);
	if (!hook)
		return 1;
	setenv("MRLEASE_LOG", "", 0);
	int ret = stack_open(&st_plain, NULL);
	if (!ret)
		ret = stack_open(&st_hook, hook);
	return ret;
}

static struct stack *way_stack(int w)
{
	return w == W_HOOK ? &st_hook : &st_plain;
}

/* re-run under callgrind: one dump per way */
int bench_fihook_inner(void)
{
	char why[256];
	int n = getenv("MRL_BENCH_CG_N") ? atoi(getenv("MRL_BENCH_CG_N")) : 300;
	int ret = open_both(why, sizeof(why));
	FILE *pf = getenv("MRL_BENCH_CG_POLLS") ? fopen(getenv("MRL_BENCH_CG_POLLS"), "w") : NULL;
	for (int w = 0; w < NWAYS && !ret; w++) {
		struct stack *s = way_stack(w);
		if ((ret = block(s, w, 20, NULL)))
			break;
		s->polls = 0;
		CALLGRIND_ZERO_STATS;
		CALLGRIND_TOGGLE_COLLECT;
		ret = block(s, w, n, NULL);
		CALLGRIND_TOGGLE_COLLECT;
		char label[64];
		snprintf(label, sizeof(label), "fihook-%s-%d", way_name[w], n);
		CALLGRIND_DUMP_STATS_AT(label);
		if (pf)
			fprintf(pf, "%s %llu\n", label, (unsigned long long)s->polls);
	}
	if (pf)
		fclose(pf);
	stack_close(&st_hook);
	stack_close(&st_plain);
	return ret ? 1 : 0;
}

static void callgrind_counts(void)
{
	if (!HAVE_CG || system("command -v valgrind >/dev/null 2>&1")) {
		printf("instructions: valgrind not installed, not counted\n");
		json_row("\"instructions\": \"skipped: valgrind not installed\"");
		return;
	}
	char dir[700], cmd[4096], pollf[800];
	int n = B.smoke ? 6 : 300;
	snprintf(dir, sizeof(dir), "%s/callgrind-fihook", B.outdir);
	snprintf(pollf, sizeof(pollf), "%s/polls.txt", dir);
	snprintf(cmd, sizeof(cmd),
		 "rm -rf '%s' && mkdir -p '%s' && MRL_BENCH_CG_POLLS='%s' MRL_BENCH_CG_N=%d valgrind "
		 "--tool=callgrind --collect-atstart=no --callgrind-out-file='%s/cg.out' '%s' --fihook-inner "
		 ">'%s/valgrind.log' 2>&1",
		 dir, dir, pollf, n, dir, B.self, dir);
	if (system(cmd)) {
		fail("fihook: valgrind run failed; see %s/valgrind.log", dir);
		return;
	}
	double ir[NWAYS] = {0}, polls[NWAYS] = {0};
	struct cg_row rows[32];
	int nr = cg_rows(dir, pollf, rows, 32);
	for (int i = 0; i < nr; i++)
		for (int w = 0; w < NWAYS; w++) {
			char want[64];
			snprintf(want, sizeof(want), "fihook-%s-%d", way_name[w], n);
			if (!strcmp(rows[i].label, want)) {
				polls[w] = (double)rows[i].polls / n;
				ir[w] = (double)rows[i].ir / n;
			}
		}
	for (int w = 0; w < NWAYS; w++)
		if (!ir[w]) {
			fail("fihook: no callgrind count for %s", way_name[w]);
			return;
		}
	printf("instructions per write + completion (callgrind, %d ops): plain %.0f, plain-dc %.0f, hooked %.0f;"
	       " polls/op %.2f %.2f %.2f\n", n, ir[0], ir[1], ir[2], polls[0], polls[1], polls[2]);
	printf("added by the hook: %.0f (hooked - plain-dc: same provider protocol); %.0f (hooked - plain)\n",
	       ir[2] - ir[1], ir[2] - ir[0]);
	json_row("\"ops\": %d, \"plain_ir_per_op\": %.1f, \"plain_dc_ir_per_op\": %.1f, \"hooked_ir_per_op\": %.1f, "
		 "\"added_ir_vs_dc\": %.1f, \"added_ir_vs_plain\": %.1f, \"polls_per_op\": [%.2f, %.2f, %.2f]",
		 n, ir[0], ir[1], ir[2], ir[2] - ir[1], ir[2] - ir[0], polls[0], polls[1], polls[2]);
}

static uint64_t reg_p50(struct stack *s, int n)
{
	uint64_t *v = calloc((size_t)n, sizeof(*v));
	if (!v)
		return 0;
	char *m = mmap(NULL, WIN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int got = 0;
	for (int i = 0; i < n && m != MAP_FAILED; i++) {
		struct fid_mr *mr;
		uint64_t t0 = now_ns();
		if (fi_mr_reg(s->dom, m, WIN, FI_REMOTE_WRITE | FI_REMOTE_READ, 0, 1000 + (uint64_t)i, 0,
			      &mr, NULL))
			break;
		fi_close(&mr->fid);
		v[got++] = now_ns() - t0;
	}
	if (m != MAP_FAILED)
		munmap(m, WIN);
	uint64_t r = got == n ? (uint64_t)pctl(v, (size_t)got, 50) : 0;
	free(v);
	return r;
}

int bench_fihook(void)
{
	char why[256] = "";
	printf("== libfabric hook: fi_write %d B + completion, tcp;ofi_rxm loopback, plain vs hooked (same run)\n", SZ);
	json_part("fihook");
	int ret = open_both(why, sizeof(why));
	if (ret == 1) {
		printf("skipped: %s\n", why);
		json_row("\"skipped\": \"%s\"", why);
		json_part_end();
		stack_close(&st_plain);
		return 0;
	}
	if (ret) {
		fail("fihook setup: %s", fi_strerror(-ret));
		json_part_end();
		stack_close(&st_hook);
		stack_close(&st_plain);
		return 0;
	}
	int blocks = B.smoke ? 2 : 40, per = B.smoke ? 20 : 500;
	uint64_t *lat[NWAYS];
	for (int w = 0; w < NWAYS; w++)
		lat[w] = calloc((size_t)blocks * per, sizeof(uint64_t));
	for (int w = 0; w < NWAYS && !ret; w++) /* warm */
		ret = block(way_stack(w), w, 50, NULL);
	for (int b = 0; b < blocks && !ret; b++)
		for (int w = 0; w < NWAYS && !ret; w++) /* interleaved, the order turning */
			ret = block(way_stack((w + b) % NWAYS), (w + b) % NWAYS, per,
				    lat[(w + b) % NWAYS] + (size_t)b * per);
	if (ret) {
		fail("fihook: a write failed: %s", fi_strerror(-ret));
	} else {
		size_t n = (size_t)blocks * per;
		double p50[NWAYS], p99[NWAYS];
		for (int w = 0; w < NWAYS; w++) {
			p50[w] = pctl(lat[w], n, 50) / 1e3;
			p99[w] = pctl(lat[w], n, 99) / 1e3;
		}
		printf("%-9s %9s %9s\n", "way", "p50 us", "p99 us");
		for (int w = 0; w < NWAYS; w++)
			printf("%-9s %9.2f %9.2f\n", way_name[w], p50[w], p99[w]);
		printf("p50 ratio hooked/plain %.3f, hooked/plain-dc %.3f (%zu writes each)\n", p50[2] / p50[0],
		       p50[2] / p50[1], n);
		json_row("\"size\": %d, \"writes\": %zu, \"plain_p50_us\": %.3f, \"plain_dc_p50_us\": %.3f, "
			 "\"hooked_p50_us\": %.3f, \"plain_p99_us\": %.3f, \"plain_dc_p99_us\": %.3f, "
			 "\"hooked_p99_us\": %.3f, \"ratio_hooked_plain\": %.4f, \"ratio_hooked_dc\": %.4f",
			 SZ, n, p50[0], p50[1], p50[2], p99[0], p99[1], p99[2], p50[2] / p50[0], p50[2] / p50[1]);
		int nr = B.smoke ? 5 : 200;
		uint64_t rp = reg_p50(&st_plain, nr), rh = reg_p50(&st_hook, nr);
		if (!rp || !rh)
			fail("fihook: a registration failed");
		printf("registration 64 KiB (fi_mr_reg + fi_close) p50: plain %.1f us, through the hook %.1f us\n",
		       rp / 1e3, rh / 1e3);
		json_row("\"reg_bytes\": %d, \"reg_plain_p50_us\": %.2f, \"reg_hooked_p50_us\": %.2f", WIN,
			 rp / 1e3, rh / 1e3);
	}
	for (int w = 0; w < NWAYS; w++)
		free(lat[w]);
	stack_close(&st_hook);
	stack_close(&st_plain);
	if (!ret && B.smoke) /* the valgrind re-run is a minute: counted in full runs only */
		json_row("\"instructions\": \"skipped: smoke run\"");
	else if (!ret)
		callgrind_counts();
	json_part_end();
	return 0;
}
