/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Scale: 1,000 -> 1,000,000 MRs of 4 KiB, on anonymous memory and on one
 * ext4 file. The device costs nothing: a mock context whose registrar is
 * swapped for one that allocates nothing, so what is measured is the
 * library's own work. Figures: heap bytes per MR (mallinfo2 delta of the
 * registering thread's arena), registration and deregistration rate, and
 * event -> MR lookup time in the file-offset interval index and in the VA
 * index (random point queries, each depending on the answer before it, as a
 * break or a VMA event resolves). */
#include <malloc.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common.h"
#include "mrl_int.h"

#define PG 4096u

static int null_reg(void *dev, void *addr, size_t len, unsigned access, uint64_t *key, void **h)
{
	(void)dev, (void)len, (void)access, (void)key;
	*h = addr; /* any non-NULL handle */
	return 0;
}
static int null_dereg(void *dev, void *h)
{
	(void)dev, (void)h;
	return 0;
}
static void *null_desc(void *h)
{
	(void)h;
	return NULL;
}
/* the mock's table (every entry answered) with a device that does nothing */
static struct mrl_registrar_ops null_ops;

static uint64_t rng = 88172645463325252ull;
static inline uint64_t xrand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

struct srow {
	long n;
	double bytes_per_mr[2], reg_per_s[2], dereg_per_s[2], lookup_va_ns, lookup_file_ns;
};

/* kind 0: anonymous, 1: file. Fills the row's [kind] fields (and lookups for the file). */
static int one(const char *path, int kind, long n, struct srow *row)
{
	struct mrl_ctx_opts o = {.size = sizeof(o), .provider = "mock"};
	mrl_ctx *ctx;
	int ret = mrl_ctx_create(&o, &ctx);
	if (ret)
		return ret;
	const struct mrl_registrar_ops *saved = ctx->rops;
	null_ops = *saved;
	null_ops.name = "null";
	null_ops.reg = null_reg;
	null_ops.dereg = null_dereg;
	null_ops.desc = null_desc;
	ctx->rops = &null_ops;
	size_t len = (size_t)n * PG;
	void *base = NULL;
	if (kind == 0) {
		base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (base == MAP_FAILED) {
			base = NULL;
			ret = -errno;
		}
	} else {
		ret = make_sparse(path, len);
		if (!ret)
			ret = mrl_file_map(ctx, path, 0, len, PROT_READ | PROT_WRITE, &base);
	}
	mrl_mr_t *h = calloc((size_t)n, sizeof(*h));
	if (!h)
		ret = -ENOMEM;
	long i = 0;
	if (!ret) {
		malloc_trim(0);
		struct mallinfo2 m0 = mallinfo2();
		uint64_t t0 = now_ns();
		for (i = 0; i < n && !ret; i++)
			ret = mrl_mr_reg(ctx, (char *)base + (size_t)i * PG, PG,
					 MRL_ACCESS_REMOTE_READ | MRL_ACCESS_REMOTE_WRITE, NULL, &h[i]);
		uint64_t t1 = now_ns();
		struct mallinfo2 m1 = mallinfo2();
		if (!ret) {
			row->bytes_per_mr[kind] = ((double)m1.uordblks - (double)m0.uordblks) / (double)n;
			row->reg_per_s[kind] = (double)n * 1e9 / (double)(t1 - t0);
		}
	}
	if (!ret && kind == 1) {
		/* point lookups at random offsets, as an event names a byte */
		long K = n < 200000 ? 200000 : n;
		uint64_t *q = malloc((size_t)K * 8), bad = 0;
		for (long k = 0; k < K; k++)
			q[k] = xrand() % ((uint64_t)n * PG);
		pthread_mutex_lock(&ctx->lock);
		struct mrl_file *f = ctx->files;
		/* dependent lookups, as one event pays: each query's address
		 * depends on the MR the one before found (the difference is 0
		 * when the answer is right, but only once the load lands) */
		uint64_t dep = 0;
		uint64_t t0 = now_ns();
		for (long k = 0; k < K; k++) {
			uint64_t a = q[k] + dep;
			struct mrl_itree_node *x = mrl_itree_first_overlap(&f->mrs, a, a + 1);
			dep = x ? x->start - a / PG * PG : 0;
			bad += !x || dep;
		}
		uint64_t t1 = now_ns();
		uintptr_t b = (uintptr_t)base;
		for (long k = 0; k < K; k++) {
			uint64_t a = b + q[k] + dep;
			struct mrl_itree_node *x = mrl_itree_first_overlap(&ctx->va_index, a, a + 1);
			dep = x ? x->start - a / PG * PG : 0;
			bad += !x || dep;
		}
		uint64_t t2 = now_ns();
		pthread_mutex_unlock(&ctx->lock);
		free(q);
		row->lookup_file_ns = (double)(t1 - t0) / (double)K;
		row->lookup_va_ns = (double)(t2 - t1) / (double)K;
		if (bad) {
			fail("scale: %llu lookups found the wrong MR", (unsigned long long)bad);
			ret = -EIO;
		}
	}
	uint64_t t0 = now_ns();
	long nreg = i;
	for (long j = 0; j < nreg; j++)
		if (h[j] && mrl_mr_dereg(ctx, h[j]) && !ret)
			ret = -EIO;
	if (nreg)
		row->dereg_per_s[kind] = (double)nreg * 1e9 / (double)(now_ns() - t0);
	free(h);
	if (base && kind == 1)
		mrl_file_unmap(ctx, base, len);
	else if (base)
		munmap(base, len);
	ctx->rops = saved;
	mrl_ctx_destroy(ctx);
	if (kind == 1)
		unlink(path);
	return ret;
}

int bench_scale(void)
{
	static const long full[] = {1000, 10000, 100000, 1000000}, smoke[] = {100, 1000};
	const long *ns = B.smoke ? smoke : full;
	int nn = B.smoke ? 2 : 4, ret = 0;
	char dir[256], path[300];
	if ((ret = scratch_dir("ext4", dir, sizeof(dir))) && (ret = scratch_dir("tmpfs", dir, sizeof(dir))))
		return ret;
	snprintf(path, sizeof(path), "%s/f", dir);
	struct srow rows[4] = {0};
	printf("== scale: library cost per MR (mock registrar that allocates nothing; 4 KiB MRs)\n");
	printf("%9s | %9s %9s | %10s %10s %10s | %9s %9s | %6s\n", "MRs", "B/MR anon", "B/MR file",
	       "reg/s anon", "reg/s file", "dereg/s", "lookup VA", "lookup fo", "x 1k");
	json_part("scale");
	for (int i = 0; i < nn && !ret; i++) {
		rows[i].n = ns[i];
		if ((ret = one(path, 0, ns[i], &rows[i])) || (ret = one(path, 1, ns[i], &rows[i])))
			break;
		struct srow *r = &rows[i];
		double growth = r->lookup_file_ns / rows[0].lookup_file_ns;
		printf("%9ld | %9.1f %9.1f | %10.0f %10.0f %10.0f | %7.1fns %7.1fns | %6.2f\n", r->n,
		       r->bytes_per_mr[0], r->bytes_per_mr[1], r->reg_per_s[0], r->reg_per_s[1], r->dereg_per_s[1],
		       r->lookup_va_ns, r->lookup_file_ns, growth);
		json_row("\"mrs\": %ld, \"bytes_per_mr_anon\": %.1f, \"bytes_per_mr_file\": %.1f, "
			 "\"reg_per_s_anon\": %.0f, \"reg_per_s_file\": %.0f, \"dereg_per_s_anon\": %.0f, "
			 "\"dereg_per_s_file\": %.0f, \"lookup_va_ns\": %.2f, \"lookup_file_ns\": %.2f, "
			 "\"lookup_file_vs_first\": %.3f, \"reg_rate_file_vs_first\": %.3f, \"sizeof_mrl_mr\": %zu",
			 r->n, r->bytes_per_mr[0], r->bytes_per_mr[1], r->reg_per_s[0], r->reg_per_s[1],
			 r->dereg_per_s[0], r->dereg_per_s[1], r->lookup_va_ns, r->lookup_file_ns, growth,
			 r->reg_per_s[1] / rows[0].reg_per_s[1], sizeof(struct mrl_mr));
	}
	json_part_end();
	printf("B/MR = heap bytes per MR (struct mrl_mr is %zu); lookup = one random point query, dependent (bench index: percentiles, baselines); x 1k = file lookup time vs the first row\n",
	       sizeof(struct mrl_mr));
	char dpath[600];
	snprintf(dpath, sizeof(dpath), "%s/scale.dat", B.outdir);
	FILE *d = fopen(dpath, "w");
	if (d) {
		fprintf(d, "# mrs bytes_anon bytes_file reg_s_anon reg_s_file lookup_va_ns lookup_file_ns\n");
		for (int i = 0; i < nn; i++)
			if (rows[i].n && rows[i].reg_per_s[1] > 0)
				fprintf(d, "%ld %.1f %.1f %.0f %.0f %.2f %.2f\n", rows[i].n, rows[i].bytes_per_mr[0],
					rows[i].bytes_per_mr[1], rows[i].reg_per_s[0], rows[i].reg_per_s[1],
					rows[i].lookup_va_ns, rows[i].lookup_file_ns);
		fclose(d);
	}
	rmdir(dir);
	return ret;
}
