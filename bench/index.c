/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Index: event -> MR lookup in the interval index (src/itree.c, a B+-tree),
 * side by side in the same run with the AVL tree it replaced
 * (bench/itree_avl.c, its nodes embedded in MRs of the size they had, 248
 * bytes) and a sorted array searched by bisection: the floor for a point
 * query over disjoint ranges (it cannot answer nested ranges nor take an
 * insert in less than O(n)). 1k, 100k and 1M MRs of 4 KiB, registered in
 * address order and in random order.
 *
 * Figures per structure: bytes per MR (the node embedded in the MR plus the
 * index's heap, malloc overhead included); the dependent lookup (each query's
 * address depends on the MR the previous one found, so misses cannot
 * overlap: what one event pays, the MR's own line included) as the median of
 * short chains and as a mean; p50/p99 of lookups timed one by one (timer
 * cost subtracted); the independent lookup (throughput); insert and remove
 * per MR; and instructions and simulated cache misses per lookup, counted
 * under callgrind by a re-run of this program. Rows are interleaved in
 * blocks so all three see the same load; compare ratios, not absolute
 * times. */
#include <malloc.h>
#include <sys/wait.h>
#include <dirent.h>
#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#define HAVE_CALLGRIND 1
#else
#define HAVE_CALLGRIND 0
#define CALLGRIND_TOGGLE_COLLECT
#define CALLGRIND_ZERO_STATS
#define CALLGRIND_DUMP_STATS_AT(x) (void)(x)
#endif

#include "common.h"
#include "itree_avl.h"
#include "mrl_int.h"

#define PG 4096ull
#define BASE 0x7f0000000000ull
enum { S_BTREE, S_AVL, S_ARRAY, NS };
static const char *sname[NS] = {"btree", "avl", "array"};

/* An MR as it was with the AVL nodes (two per MR): the B+-tree's node and an
 * AVL node both live in it, so the AVL walks MRs of the size it used to. */
#define OLD_MR_SIZE (sizeof(struct mrl_mr) + 2 * (sizeof(struct avl_node) - sizeof(struct mrl_itree_node)))
struct obj {
	struct mrl_itree_node bn;
	struct avl_node an;
};

struct ix {
	long n;
	struct obj **o;
	struct mrl_itree bt;
	struct avl_tree avl;
	uint64_t *as, *ae; /* the array: starts, ends, objects */
	struct obj **ao;
	double heap_per_mr[NS], ins_ns[NS], del_ns;
};

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static inline uint64_t xrand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static inline const void *find_arr(const struct ix *x, uint64_t q)
{
	long lo = 0, hi = x->n; /* first start > q, then the one before it */
	while (lo < hi) {
		long mid = (lo + hi) / 2;
		if (x->as[mid] > q)
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo && x->ae[lo - 1] > q ? x->ao[lo - 1] : NULL;
}

static inline const void *find(const struct ix *x, int s, uint64_t q)
{
	switch (s) {
	case S_BTREE:
		return mrl_itree_first_overlap(&x->bt, q, q + 1);
	case S_AVL: {
		const struct avl_node *a = avl_first_overlap(&x->avl, q, q + 1);
		return a ? (const char *)a - offsetof(struct obj, an) : NULL;
	}
	default:
		return find_arr(x, q);
	}
}

static double heap_now(void)
{
	struct mallinfo2 m = mallinfo2();
	return (double)m.uordblks;
}

/* n MRs, indexed in address order (shuffled: random order) by all three */
static int ix_build(struct ix *x, long n, bool shuffled)
{
	memset(x, 0, sizeof(*x));
	x->n = n;
	x->o = calloc((size_t)n, sizeof(*x->o));
	long *perm = malloc((size_t)n * sizeof(*perm));
	x->as = malloc((size_t)n * 8);
	x->ae = malloc((size_t)n * 8);
	x->ao = malloc((size_t)n * sizeof(*x->ao));
	if (!x->o || !perm || !x->as || !x->ae || !x->ao) {
		free(perm);
		return -ENOMEM;
	}
	for (long i = 0; i < n; i++) {
		if (!(x->o[i] = calloc(1, OLD_MR_SIZE))) {
			free(perm);
			return -ENOMEM;
		}
		x->o[i]->bn.start = x->o[i]->an.start = BASE + (uint64_t)i * PG;
		x->o[i]->bn.end = x->o[i]->an.end = BASE + (uint64_t)(i + 1) * PG;
		perm[i] = i;
	}
	for (long i = n - 1; shuffled && i > 0; i--) {
		long j = (long)(xrand() % (uint64_t)(i + 1)), t = perm[i];
		perm[i] = perm[j];
		perm[j] = t;
	}
	mrl_itree_init(&x->bt);
	avl_init(&x->avl);
	malloc_trim(0);
	double h0 = heap_now();
	uint64_t t0 = now_ns();
	for (long i = 0; i < n; i++)
		if (mrl_itree_insert(&x->bt, &x->o[perm[i]]->bn)) {
			free(perm);
			return -ENOMEM;
		}
	uint64_t t1 = now_ns();
	x->heap_per_mr[S_BTREE] = (heap_now() - h0) / (double)n;
	for (long i = 0; i < n; i++)
		avl_insert(&x->avl, &x->o[perm[i]]->an);
	uint64_t t2 = now_ns();
	/* the array is built sorted: inserting into it one by one is O(n) each */
	for (long i = 0; i < n; i++) {
		x->as[i] = x->o[i]->bn.start;
		x->ae[i] = x->o[i]->bn.end;
		x->ao[i] = x->o[i];
	}
	x->heap_per_mr[S_AVL] = 0;
	x->heap_per_mr[S_ARRAY] = 3 * 8;
	x->ins_ns[S_BTREE] = (double)(t1 - t0) / (double)n;
	x->ins_ns[S_AVL] = (double)(t2 - t1) / (double)n;
	free(perm);
	return 0;
}

static void ix_free(struct ix *x, bool timed)
{
	if (timed) { /* everything was inserted */
		uint64_t t0 = now_ns();
		for (long i = 0; i < x->n; i++)
			mrl_itree_remove(&x->bt, &x->o[i]->bn);
		x->del_ns = (double)(now_ns() - t0) / (double)x->n;
	}
	mrl_itree_destroy(&x->bt);
	for (long i = 0; x->o && i < x->n; i++)
		free(x->o[i]);
	free(x->o);
	free(x->as);
	free(x->ae);
	free(x->ao);
}

/* bytes per MR for one index: the node it embeds in the MR plus its heap */
static double bytes_per_mr(const struct ix *x, int s)
{
	size_t emb = s == S_BTREE ? sizeof(struct mrl_itree_node) : s == S_AVL ? sizeof(struct avl_node) : 0;
	return (double)emb + x->heap_per_mr[s];
}

static uint64_t *queries(long n, long k)
{
	uint64_t *q = malloc((size_t)k * 8);
	for (long i = 0; q && i < k; i++)
		q[i] = BASE + xrand() % ((uint64_t)n * PG);
	return q;
}

/* What an event does: find the MR and read it (here its start; 0 if none).
 * Every structure pays for touching the MR it answers. */
static inline uint64_t answer(const struct ix *x, int s, uint64_t q)
{
	const struct obj *o = find(x, s, q);
	return o ? o->bn.start : 0;
}

/* each query's address depends on the answer before it (the difference is 0
 * when the answer is right, but the CPU cannot know that before the MR's
 * line lands) */
static uint64_t chain(const struct ix *x, int s, const uint64_t *q, long k)
{
	uint64_t dep = 0;
	for (long i = 0; i < k; i++) {
		uint64_t a = q[i] + dep;
		dep = answer(x, s, a) - a / PG * PG;
	}
	return dep;
}

static uint64_t indep(const struct ix *x, int s, const uint64_t *q, long k)
{
	uint64_t acc = 0;
	for (long i = 0; i < k; i++)
		acc ^= answer(x, s, q[i]);
	return acc;
}

struct lrow {
	double chain_ns, chain_mean, indep_ns, p50, p99;
};

static volatile uint64_t sink;

/* Three sets of k random queries: the dependent chains, the throughput run
 * and the one-by-one timing each get their own, so none runs on lines
 * another just brought in; all three structures answer the same queries, in
 * interleaved blocks. Chains are timed in segments of SEG lookups and the
 * median segment reported beside the mean: on a shared machine a time slice
 * lost to another process lands in a few segments, not in the median.
 * Answers are checked after the timing, on a fourth set. */
#define SEG 32
static int measure(const struct ix *x, long k, struct lrow r[NS])
{
	k -= k % SEG;
	uint64_t *q = queries(x->n, 4 * k), *lat[NS], *seg[NS];
	uint64_t tchain[NS] = {0}, tind[NS] = {0}, bad = 0;
	if (!q)
		return -ENOMEM;
	for (int s = 0; s < NS; s++) {
		lat[s] = malloc((size_t)k * 8);
		seg[s] = malloc((size_t)(k / SEG) * 8);
		if (!lat[s] || !seg[s]) {
			for (int z = 0; z <= s; z++) {
				free(lat[z]);
				free(seg[z]);
			}
			free(q);
			return -ENOMEM;
		}
	}
	/* the timer's own cost, subtracted from one-by-one samples */
	uint64_t ov[1001];
	for (int i = 0; i < 1001; i++) {
		uint64_t a = now_ns();
		ov[i] = now_ns() - a;
	}
	double tov = pctl(ov, 1001, 50);
	const long blk = 4096;
	const uint64_t *qc = q, *qi = q + k, *qt = q + 2 * k, *qv = q + 3 * k;
	for (long b = 0; b < k; b += blk) {
		long m = k - b < blk ? k - b : blk;
		for (int s = 0; s < NS; s++) {
			for (long j = b; j < b + m; j += SEG) {
				uint64_t t0 = now_ns();
				sink = chain(x, s, qc + j, SEG);
				uint64_t d = now_ns() - t0;
				tchain[s] += d;
				seg[s][j / SEG] = d;
			}
			uint64_t t1 = now_ns();
			sink = indep(x, s, qi + b, m);
			tind[s] += now_ns() - t1;
			for (long i = b; i < b + m; i++) {
				uint64_t a = now_ns();
				sink = answer(x, s, qt[i]);
				uint64_t d = now_ns() - a;
				lat[s][i] = (double)d > tov ? d - (uint64_t)tov : 0;
			}
		}
	}
	for (long i = 0; i < k; i++)
		for (int s = 0; s < NS; s++) {
			const struct obj *o = find(x, s, qv[i]);
			bad += !o || o->bn.start != qv[i] / PG * PG;
		}
	for (int s = 0; s < NS; s++) {
		r[s].chain_ns = (pctl(seg[s], (size_t)(k / SEG), 50) - tov) / SEG;
		r[s].chain_mean = (double)tchain[s] / (double)k;
		r[s].indep_ns = (double)tind[s] / (double)k;
		r[s].p50 = pctl(lat[s], (size_t)k, 50);
		r[s].p99 = pctl(lat[s], (size_t)k, 99);
		free(lat[s]);
		free(seg[s]);
	}
	free(q);
	if (bad) {
		fail("index: %llu lookups found the wrong MR", (unsigned long long)bad);
		return -EIO;
	}
	return 0;
}

/* ---- instructions per lookup, under callgrind ---- */

static const long cg_sizes[] = {1000, 100000, 1000000};

int bench_index_inner(void)
{
	int nsz = getenv("MRL_BENCH_CG_N") && atoi(getenv("MRL_BENCH_CG_N")) < 1000 ? 1 : 3;
	long k = nsz == 1 ? 1000 : 20000;
	for (int z = 0; z < nsz; z++) {
		struct ix x;
		int ret = ix_build(&x, cg_sizes[z], false);
		uint64_t *q = queries(cg_sizes[z], k);
		if (ret || !q) {
			fprintf(stderr, "index callgrind run: out of memory\n");
			return 1;
		}
		for (int s = 0; s < NS; s++) {
			char label[64];
			snprintf(label, sizeof(label), "%s-%ld-%ld", sname[s], cg_sizes[z], k);
			sink = chain(&x, s, q, 64); /* warm */
			CALLGRIND_ZERO_STATS;
			CALLGRIND_TOGGLE_COLLECT;
			sink = chain(&x, s, q, k);
			CALLGRIND_TOGGLE_COLLECT;
			CALLGRIND_DUMP_STATS_AT(label);
		}
		free(q);
		ix_free(&x, false);
	}
	return 0;
}

/* Events of the dump labelled label in dir (cg.out.N files), in the order
 * Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw; 0 if not found. */
static int cg_events(const char *dir, const char *label, uint64_t ev[9])
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int found = 0;
	while (d && (de = readdir(d)) && !found) {
		if (strncmp(de->d_name, "cg.out", 6))
			continue;
		char path[1200], line[512], l[64] = "";
		unsigned long long v[9] = {0};
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		FILE *f = fopen(path, "r");
		while (f && fgets(line, sizeof(line), f)) {
			if (!strncmp(line, "desc: Trigger: Client Request: ", 31))
				sscanf(line + 31, "%63s", l);
			else if (!strncmp(line, "summary: ", 9) || !strncmp(line, "totals: ", 8))
				sscanf(strchr(line, ' ') + 1, "%llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1],
				       &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8]);
		}
		if (f)
			fclose(f);
		if (!strcmp(l, label) && v[0]) {
			for (int i = 0; i < 9; i++)
				ev[i] = v[i];
			found = 1;
		}
	}
	if (d)
		closedir(d);
	return found;
}

/* per lookup [size][structure]: instructions, simulated L1 and last-level
 * read misses; 0 where not counted */
static int index_callgrind(double ir[3][NS], double l1[3][NS], double ll[3][NS])
{
	memset(ir, 0, sizeof(double) * 3 * NS);
	memset(l1, 0, sizeof(double) * 3 * NS);
	memset(ll, 0, sizeof(double) * 3 * NS);
	if (!HAVE_CALLGRIND || system("command -v valgrind >/dev/null 2>&1")) {
		printf("(instructions: valgrind not installed, not counted)\n");
		return 0;
	}
	char dir[600], cmd[4096];
	snprintf(dir, sizeof(dir), "%s/callgrind-index", B.outdir);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s' && mkdir -p '%s'", dir, dir);
	if (system(cmd))
		return -EIO;
	snprintf(cmd, sizeof(cmd),
		 "MRL_BENCH_CG_N=%d valgrind --tool=callgrind --collect-atstart=no "
		 "--cache-sim=yes --D1=49152,12,64 --LL=4194304,16,64 --callgrind-out-file='%s/cg.out' '%s' --index-inner >'%s/valgrind.log' 2>&1",
		 B.smoke ? 1 : 1000, dir, B.self, dir);
	if (system(cmd)) {
		fail("index: valgrind run failed; see %s/valgrind.log", dir);
		return -EIO;
	}
	int nsz = B.smoke ? 1 : 3;
	long k = B.smoke ? 1000 : 20000;
	for (int z = 0; z < nsz; z++)
		for (int s = 0; s < NS; s++) {
			char label[64];
			snprintf(label, sizeof(label), "%s-%ld-%ld", sname[s], cg_sizes[z], k);
			uint64_t ev[9];
			if (!cg_events(dir, label, ev)) {
				fail("index: no callgrind count for %s", label);
				return -EIO;
			}
			ir[z][s] = (double)ev[0] / (double)k;
			l1[z][s] = (double)ev[4] / (double)k;
			ll[z][s] = (double)ev[7] / (double)k;
		}
	return 0;
}

int bench_index(void)
{
	static const long full[] = {1000, 100000, 1000000}, smoke[] = {1000};
	const long *ns = B.smoke ? smoke : full;
	int nn = B.smoke ? 1 : 3, ret = 0;
	double ir[3][NS], l1[3][NS], ll[3][NS];

	printf("== index: event -> MR point lookup; B+-tree (src/itree.c) vs the old AVL vs a sorted array (floor)\n");
	if ((ret = index_callgrind(ir, l1, ll)))
		return ret;
	printf("%8s %6s %-5s | %6s | %7s %8s | %7s %7s | %8s | %6s %6s | %5s %5s %5s | %7s %9s\n", "MRs",
	       "order", "index", "B/MR", "dep ns", "dep mean", "p50 ns", "p99 ns", "indep ns", "ins ns", "del ns", "Ir",
	       "L1m", "LLm", "dep/avl", "dep/floor");
	json_part("index");
	for (int i = 0; i < nn && !ret; i++)
		for (int shuf = 0; shuf < 2 && !ret; shuf++) {
			struct ix x;
			struct lrow r[NS];
			long k = B.smoke ? 2000 : ns[i] < 200000 ? 200000 : ns[i];
			if ((ret = ix_build(&x, ns[i], shuf)) || (ret = measure(&x, k, r))) {
				ix_free(&x, false);
				break;
			}
			ix_free(&x, true);
			for (int s = 0; s < NS; s++) {
				double irs = shuf ? 0 : ir[i][s];
				char irb[48] = "    -     -     -", del[16] = "-";
				if (s == S_BTREE)
					snprintf(del, sizeof(del), "%.0f", x.del_ns);
				if (irs > 0)
					snprintf(irb, sizeof(irb), "%5.0f %5.1f %5.1f", irs, l1[i][s], ll[i][s]);
				printf("%8ld %6s %-5s | %6.1f | %7.1f %8.1f | %7.0f %7.0f | %8.1f | %6.0f %6s | %s | %7.2f %9.2f\n",
				       ns[i], shuf ? "random" : "addr", sname[s], bytes_per_mr(&x, s), r[s].chain_ns,
				       r[s].chain_mean, r[s].p50, r[s].p99, r[s].indep_ns, s == S_ARRAY ? 0 : x.ins_ns[s],
				       del, irb, r[s].chain_ns / r[S_AVL].chain_ns,
				       r[s].chain_ns / r[S_ARRAY].chain_ns);
				json_row("\"mrs\": %ld, \"order\": \"%s\", \"index\": \"%s\", \"bytes_per_mr\": %.1f, "
					 "\"dep_lookup_ns\": %.2f, \"dep_lookup_mean_ns\": %.2f, \"p50_ns\": %.0f, \"p99_ns\": %.0f, "
					 "\"indep_lookup_ns\": %.2f, \"insert_ns\": %.1f, \"remove_ns\": %.1f, "
					 "\"ir_per_lookup\": %.1f, \"l1_miss_per_lookup\": %.2f, \"ll_miss_per_lookup\": %.2f, "
					 "\"dep_vs_avl\": %.3f, \"dep_vs_floor\": %.3f",
					 ns[i], shuf ? "random" : "addr", sname[s], bytes_per_mr(&x, s), r[s].chain_ns,
					 r[s].chain_mean, r[s].p50, r[s].p99, r[s].indep_ns, s == S_ARRAY ? 0 : x.ins_ns[s],
					 s == S_BTREE ? x.del_ns : 0, irs, shuf ? 0 : l1[i][s], shuf ? 0 : ll[i][s],
					 r[s].chain_ns / r[S_AVL].chain_ns,
					 r[s].chain_ns / r[S_ARRAY].chain_ns);
			}
		}
	json_part_end();
	printf("B/MR = node embedded in the MR + the index's heap per MR (one index; an MR on a file is in two);\n"
	       "dep = dependent lookup, median of %d-lookup chains (mean beside it); p50/p99 = lookups timed one\n"
	       "by one; indep = throughput; all read the MR found;\n"
	       "Ir, L1m, LLm = instructions, L1 and last-level read misses per dependent lookup (callgrind, simulated\n"
	       "48 KiB L1 and 4 MiB last level, address order); array = floor for point queries, not a usable index\n",
	       SEG);
	return ret;
}
