/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* interpose: what the owner's interposed address-space calls cost when the
 * range touches no MR, next to the bare system call, in the same run:
 * madvise(MADV_DONTNEED) of a page with 0 MRs and with 1, 1,000 and 100,000
 * MRs registered (a mock context): a page away from them, and a page in a
 * hole between them. */
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common.h"

static int cmp64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* median ns per call over `rounds` blocks of `n` calls, interposed vs bare, interleaved */
static void measure(char *page, int n, int rounds, double *madv, double *madv_raw)
{
	uint64_t a[64], b[64];
	for (int r = 0; r < rounds; r++) {
		uint64_t t0 = now_ns();
		for (int i = 0; i < n; i++)
			madvise(page, 4096, MADV_DONTNEED);
		uint64_t t1 = now_ns();
		for (int i = 0; i < n; i++)
			syscall(SYS_madvise, page, 4096, MADV_DONTNEED);
		uint64_t t2 = now_ns();
		a[r] = (t1 - t0) / (uint64_t)n;
		b[r] = (t2 - t1) / (uint64_t)n;
	}
	qsort(a, (size_t)rounds, 8, cmp64);
	qsort(b, (size_t)rounds, 8, cmp64);
	*madv = (double)a[rounds / 2];
	*madv_raw = (double)b[rounds / 2];
}

int bench_interpose(void)
{
	static const int counts[] = {0, 1, 1000, 100000};
	int n = B.smoke ? 200 : 10000, rounds = B.smoke ? 3 : 15;
	json_part("interpose");
	printf("== interpose: madvise(MADV_DONTNEED) of a page no MR covers, interposed vs bare syscall\n");
	printf("%8s | %12s %12s %10s | %12s %10s\n", "MRs", "interposed", "bare", "added", "in a hole",
	       "added");
	char *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	for (size_t k = 0; k < sizeof(counts) / sizeof(counts[0]); k++) {
		int nmr = B.smoke && counts[k] > 1000 ? 1000 : counts[k];
		mrl_ctx *ctx = NULL;
		char *mem = NULL;
		mrl_mr_t *mrs = NULL;
		if (nmr) {
			struct mrl_ctx_opts o = {.size = sizeof(o), .provider = "mock"};
			int ret = mrl_ctx_create(&o, &ctx);
			if (ret)
				return ret;
			/* nmr pages registered, with one unregistered page, the
			 * "hole", in the middle of them */
			mem = mmap(NULL, ((size_t)nmr + 1) * 4096, PROT_READ | PROT_WRITE,
				   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			mrs = calloc((size_t)nmr, sizeof(*mrs));
			for (int i = 0; i < nmr; i++) {
				size_t pgi = (size_t)i + (i >= nmr / 2);
				if ((ret = mrl_mr_reg(ctx, mem + pgi * 4096, 4096, 0, NULL, &mrs[i])))
					return ret;
			}
		}
		double t, raw, th = 0, rawh = 0;
		measure(page, n, rounds, &t, &raw);
		if (nmr)
			measure(mem + (size_t)(nmr / 2) * 4096, n, rounds, &th, &rawh);
		printf("%8d | %10.0fns %10.0fns %8.0fns | %10.0fns %8.0fns\n", nmr, t, raw, t - raw, th,
		       th - rawh);
		json_row("\"mrs\": %d, \"interposed_ns\": %.0f, \"bare_ns\": %.0f, \"added_ns\": %.0f, "
			 "\"hole_interposed_ns\": %.0f, \"hole_added_ns\": %.0f",
			 nmr, t, raw, t - raw, th, th - rawh);
		if (ctx) {
			for (int i = 0; i < nmr; i++)
				mrl_mr_dereg(ctx, mrs[i]);
			mrl_ctx_destroy(ctx);
			munmap(mem, ((size_t)nmr + 1) * 4096);
			free(mrs);
		}
	}
	munmap(page, 4096);
	json_part_end();
	printf("(median of %d blocks of %d calls each, blocks interleaved; \"in a hole\": a page between\n"
	       " registered pages, inside the box the interposer tests first, so it takes the lock and\n"
	       " looks the range up)\n", rounds, n);
	return 0;
}
