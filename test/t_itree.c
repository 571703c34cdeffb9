/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Interval index against a brute-force model: random inserts/removes/queries
 * with full invariant checks at small n over many seeds (duplicates, nested
 * and overlapping ranges, ascending and descending insertion), then height,
 * memory and queries at 5 x 10^5 nodes. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/itree.h"

/* Nodes live in one array, so ascending address is ascending index. */
static struct mrl_itree_node *pool;
static bool *in_tree;
static size_t pool_n, model_count;
static uint64_t rng_state;

static void fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "t_itree: FAIL: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(1);
}

#define CHECK(cond, ...)                                                                   \
	do {                                                                               \
		if (!(cond))                                                               \
			fail(__VA_ARGS__);                                                 \
	} while (0)

static uint64_t rnd(void) /* splitmix64: fixed seed keeps failures reproducible */
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t below(uint64_t n) { return rnd() % n; }

/* log2 by repeated squaring, so the test needs no -lm. */
static double lg2(double x)
{
	double f = 0, bit = 0.5;

	while (x >= 2) {
		x /= 2;
		f += 1;
	}
	for (int i = 0; i < 40; i++, bit /= 2) {
		x *= x;
		if (x >= 2) {
			x /= 2;
			f += bit;
		}
	}
	return f;
}

static size_t idx(const struct mrl_itree_node *n) { return (size_t)(n - pool); }

/* ---- structural invariants ---- */

/* The index checks its own shape (order, bounds, max ends, counts, bytes); the
 * test adds that it holds exactly the model's nodes, via check_query over
 * everything. */
static void check_tree(const struct mrl_itree *t, const char *when)
{
	char why[256];

	CHECK(mrl_itree_check(t, why, sizeof(why)) == 0, "%s: %s", when, why);
	CHECK(t->count == model_count, "%s: t->count %zu, model %zu", when, t->count,
	      model_count);
}

/* ---- queries vs. linear scan ---- */

static struct mrl_itree_node **got, **want;
static size_t ngot, stop_after;

static int collect(struct mrl_itree_node *n, void *arg)
{
	CHECK(arg == &ngot, "callback got the wrong arg");
	CHECK(ngot < pool_n, "overlap visited more nodes than exist (repeat visit?)");
	got[ngot++] = n;
	return ngot == stop_after ? 7 : 0;
}

static int cmp_key(const void *a, const void *b)
{
	const struct mrl_itree_node *x = *(struct mrl_itree_node *const *)a;
	const struct mrl_itree_node *y = *(struct mrl_itree_node *const *)b;

	if (x->start != y->start)
		return x->start < y->start ? -1 : 1;
	return (x > y) - (x < y);
}

/* At 10^6 nodes a scan of the whole pool per query is memory-bound; the large
 * run scans a compact copy of the live set, sorted once by the same key. */
static size_t snap_n;
static uint64_t snap_maxlen; /* longest range in the snapshot */
static uint64_t *snap_start, *snap_end;
static struct mrl_itree_node **snap_node;

static void check_query(const struct mrl_itree *t, uint64_t s, uint64_t e)
{
	size_t nwant = 0, i;
	struct mrl_itree_node *first;
	int r;

	if (snap_n) { /* sorted snapshot: the candidates start in [s - longest, e), in order */
		size_t lo = 0, hi = snap_n;
		uint64_t from = s > snap_maxlen ? s - snap_maxlen : 0;

		while (lo < hi) {
			size_t mid = (lo + hi) / 2;

			if (snap_start[mid] < from)
				lo = mid + 1;
			else
				hi = mid;
		}
		for (i = lo; i < snap_n && snap_start[i] < e; i++)
			if (snap_end[i] > s)
				want[nwant++] = snap_node[i];
	} else {
		for (i = 0; i < pool_n; i++)
			if (in_tree[i] && pool[i].start < e && pool[i].end > s)
				want[nwant++] = &pool[i];
		qsort(want, nwant, sizeof(*want), cmp_key);
	}

	ngot = 0;
	stop_after = 0;
	r = mrl_itree_overlap(t, s, e, collect, &ngot);
	CHECK(r == 0, "overlap [%" PRIu64 ",%" PRIu64 ") returned %d without a stop", s, e, r);
	CHECK(ngot == nwant, "overlap [%" PRIu64 ",%" PRIu64 ") visited %zu nodes, model %zu", s,
	      e, ngot, nwant);
	for (i = 0; i < nwant; i++)
		CHECK(got[i] == want[i],
		      "overlap [%" PRIu64 ",%" PRIu64 ") result %zu is node %zu, model node %zu", s,
		      e, i, idx(got[i]), idx(want[i]));

	first = mrl_itree_first_overlap(t, s, e);
	CHECK(first == (nwant ? want[0] : NULL),
	      "first_overlap [%" PRIu64 ",%" PRIu64 ") gave %p, model %p", s, e, (void *)first,
	      nwant ? (void *)want[0] : NULL);

	if (nwant) { /* stopping early must return cb's value after exactly that prefix */
		ngot = 0;
		stop_after = 1 + below(nwant);
		r = mrl_itree_overlap(t, s, e, collect, &ngot);
		CHECK(r == 7, "overlap stopped by cb returned %d, want 7", r);
		CHECK(ngot == stop_after, "overlap kept going after cb stop: %zu visits, want %zu",
		      ngot, stop_after);
		for (i = 0; i < ngot; i++)
			CHECK(got[i] == want[i], "early-stopped overlap result %zu differs", i);
	}
}

/* ---- random workloads ---- */

static void setup(size_t n)
{
	pool_n = n;
	model_count = 0;
	pool = calloc(n, sizeof(*pool));
	in_tree = calloc(n, sizeof(*in_tree));
	got = calloc(n, sizeof(*got));
	want = calloc(n, sizeof(*want));
	CHECK(pool && in_tree && got && want, "out of memory for %zu nodes", n);
}

static void teardown(void)
{
	free(pool);
	free(in_tree);
	free(got);
	free(want);
}

/* space/maxlen shape the density; near_top puts ranges against UINT64_MAX. */
static void random_range(uint64_t space, uint64_t maxlen, bool near_top, uint64_t *s,
			 uint64_t *e)
{
	uint64_t base = near_top ? UINT64_MAX - space - maxlen : 0;

	*s = base + below(space);
	*e = *s + 1 + below(maxlen);
}

static void random_query(uint64_t space, uint64_t maxlen, bool near_top, uint64_t *s,
			 uint64_t *e)
{
	switch (below(8)) {
	case 0: /* everything */
		*s = 0;
		*e = UINT64_MAX;
		break;
	case 1: /* a point */
		random_range(space + maxlen, 1, near_top, s, e);
		break;
	case 2: /* open-ended to the top */
		random_range(space + maxlen, 1, near_top, s, e);
		*e = UINT64_MAX;
		break;
	default:
		random_range(space + maxlen, maxlen * 2, near_top, s, e);
	}
}

static size_t random_member(void)
{
	size_t i;

	do
		i = below(pool_n);
	while (!in_tree[i]);
	return i;
}

static void small_run(size_t n, int ops, uint64_t space, uint64_t maxlen, bool near_top)
{
	struct mrl_itree t;
	size_t *free_list;
	size_t nfree = n, i;
	char when[96];

	setup(n);
	free_list = malloc(n * sizeof(*free_list));
	CHECK(free_list, "out of memory");
	for (i = 0; i < n; i++)
		free_list[i] = i;
	mrl_itree_init(&t);
	check_tree(&t, "empty tree");
	check_query(&t, 0, UINT64_MAX);

	for (int op = 0; op < ops; op++) {
		/* Alternate growing and shrinking phases so n sweeps its whole range. */
		bool grow = (op / (int)(n + n / 4)) % 2 == 0;
		bool insert = nfree && (!model_count || below(10) < (grow ? 8u : 2u));

		if (insert) {
			size_t k = below(nfree);
			struct mrl_itree_node *nd = &pool[free_list[k]];

			free_list[k] = free_list[--nfree];
			if (model_count && below(4) == 0) { /* duplicate an existing range */
				struct mrl_itree_node *d = &pool[random_member()];

				nd->start = d->start;
				nd->end = d->end;
			} else {
				random_range(space, maxlen, near_top, &nd->start, &nd->end);
			}
			CHECK(mrl_itree_insert(&t, nd) == 0, "insert failed");
			in_tree[idx(nd)] = true;
			model_count++;
			snprintf(when, sizeof(when), "op %d insert node %zu", op, idx(nd));
		} else {
			i = random_member();
			mrl_itree_remove(&t, &pool[i]);
			in_tree[i] = false;
			model_count--;
			free_list[nfree++] = i;
			snprintf(when, sizeof(when), "op %d remove node %zu", op, i);
		}
		check_tree(&t, when);
		uint64_t s, e;
		random_query(space, maxlen, near_top, &s, &e);
		check_query(&t, s, e);
	}
	mrl_itree_destroy(&t);
	CHECK(!t.root && !t.bytes && !t.count, "destroy left a root, bytes or count");
	free(free_list);
	teardown();
}

static void fixed_cases(void)
{
	struct mrl_itree t;

	setup(3);
	mrl_itree_init(&t);
	pool[0].start = 10;
	pool[0].end = 20;
	CHECK(mrl_itree_insert(&t, &pool[0]) == 0, "insert failed");
	in_tree[0] = true;
	model_count = 1;
	check_tree(&t, "one node");
	CHECK(!mrl_itree_first_overlap(&t, 20, 30), "[20,30) must not touch [10,20)");
	CHECK(!mrl_itree_first_overlap(&t, 0, 10), "[0,10) must not touch [10,20)");
	CHECK(mrl_itree_first_overlap(&t, 19, 20) == &pool[0], "[19,20) must hit [10,20)");
	CHECK(mrl_itree_first_overlap(&t, 0, 11) == &pool[0], "[0,11) must hit [10,20)");
	pool[1].start = 0;
	pool[1].end = UINT64_MAX;
	pool[2].start = UINT64_MAX - 1;
	pool[2].end = UINT64_MAX;
	CHECK(mrl_itree_insert(&t, &pool[1]) == 0, "insert failed");
	CHECK(mrl_itree_insert(&t, &pool[2]) == 0, "insert failed");
	in_tree[1] = in_tree[2] = true;
	model_count = 3;
	check_tree(&t, "three nodes with extreme ends");
	check_query(&t, UINT64_MAX - 1, UINT64_MAX);
	check_query(&t, 0, 1);
	check_query(&t, 0, UINT64_MAX);
	mrl_itree_remove(&t, &pool[1]);
	in_tree[1] = false;
	model_count = 2;
	check_tree(&t, "after removing [0,max)");
	check_query(&t, 0, 10);
	check_query(&t, 15, UINT64_MAX);
	mrl_itree_destroy(&t);
	teardown();
}

/* Bytes per entry of an index filled in ascending order, set by ordered_runs. */
static double packed_bytes_per_entry;

/* n disjoint ranges [16i, 16i + 12) inserted in order (dir > 0 ascending, < 0
 * descending, 0 shuffled), every point answered, then all removed in random
 * order. Returns the index's bytes per entry once full. */
static double ordered_run(size_t n, int dir)
{
	struct mrl_itree t;
	size_t *perm, i;
	double per;

	setup(n);
	perm = malloc(n * sizeof(*perm));
	CHECK(perm, "out of memory");
	for (i = 0; i < n; i++)
		perm[i] = dir >= 0 ? i : n - 1 - i;
	if (!dir)
		for (i = n - 1; i > 0; i--) {
			size_t j = below(i + 1), x = perm[i];

			perm[i] = perm[j];
			perm[j] = x;
		}
	mrl_itree_init(&t);
	for (i = 0; i < n; i++) {
		struct mrl_itree_node *nd = &pool[perm[i]];

		nd->start = 16 * perm[i];
		nd->end = nd->start + 12;
		CHECK(mrl_itree_insert(&t, nd) == 0, "insert failed");
		in_tree[perm[i]] = true;
		model_count++;
		if (i % 997 == 0)
			check_tree(&t, "ordered insert");
	}
	check_tree(&t, "ordered insert, full");
	per = (double)t.bytes / (double)n;
	for (i = 0; i < 16 * n; i++) {
		struct mrl_itree_node *x = mrl_itree_first_overlap(&t, i, i + 1);

		CHECK(x == (i % 16 < 12 ? &pool[i / 16] : NULL), "point %zu: got %p", i, (void *)x);
	}
	check_query(&t, 0, UINT64_MAX);
	for (i = n - 1; i > 0; i--) {
		size_t j = below(i + 1), x = perm[i];

		perm[i] = perm[j];
		perm[j] = x;
	}
	for (i = 0; i < n; i++) {
		mrl_itree_remove(&t, &pool[perm[i]]);
		in_tree[perm[i]] = false;
		model_count--;
		if (i % 991 == 0) {
			check_tree(&t, "random remove after ordered insert");
			check_query(&t, 16 * below(n), 16 * below(n) + 64);
		}
	}
	check_tree(&t, "all removed");
	CHECK(!t.root && !t.bytes && !t.height, "empty index still holds %zu bytes", t.bytes);
	free(perm);
	teardown();
	return per;
}

static void ordered_runs(void)
{
	double up = ordered_run(20000, 1), down = ordered_run(20000, -1), shuf = ordered_run(20000, 0);

	/* in-order registration packs the nodes instead of leaving them half full */
	CHECK(up < 0.8 * shuf && down < 0.8 * shuf,
	      "bytes per entry: ascending %.1f, descending %.1f, shuffled %.1f: ordered inserts should pack",
	      up, down, shuf);
	packed_bytes_per_entry = up;
	printf("t_itree: bytes per entry ascending %.1f, descending %.1f, shuffled %.1f\n", up, down,
	       shuf);
}

static void large_run(size_t n)
{
	struct mrl_itree t;
	size_t *perm, i;
	const uint64_t space = 1ull << 40, maxlen = 1ull << 21;
	double bound;

	setup(n);
	mrl_itree_init(&t);
	for (i = 0; i < n; i++) {
		if (i && below(16) == 0) { /* some duplicates */
			pool[i] = pool[below(i)];
		} else {
			random_range(space, maxlen, false, &pool[i].start, &pool[i].end);
		}
		CHECK(mrl_itree_insert(&t, &pool[i]) == 0, "insert failed");
		in_tree[i] = true;
	}
	model_count = n;
	bound = lg2((double)n) / 2 + 2; /* fanout >= 4 below the root */
	CHECK(t.root && t.height <= bound, "height %u at n=%zu exceeds %.1f", t.height, n, bound);
	check_tree(&t, "after large insert");

	perm = malloc(n * sizeof(*perm));
	CHECK(perm, "out of memory");
	for (i = 0; i < n; i++)
		perm[i] = i;
	for (i = n - 1; i > 0; i--) {
		size_t j = below(i + 1), x = perm[i];

		perm[i] = perm[j];
		perm[j] = x;
	}
	for (i = 0; i < n / 2; i++) {
		mrl_itree_remove(&t, &pool[perm[i]]);
		in_tree[perm[i]] = false;
	}
	model_count = n - n / 2;
	bound = lg2((double)model_count) / 2 + 2;
	CHECK(t.root && t.height <= bound, "height %u at n=%zu exceeds %.1f", t.height,
	      model_count, bound);
	/* nodes under a quarter full merge or borrow: half the entries gone must
	 * not leave the index holding more than 4x a packed one's bytes */
	CHECK(t.bytes <= 4 * packed_bytes_per_entry * model_count + 4096,
	      "after removing half: %zu bytes for %zu entries (packed: %.1f per entry)", t.bytes,
	      model_count, packed_bytes_per_entry);
	check_tree(&t, "after large remove");

	snap_start = malloc(model_count * sizeof(*snap_start));
	snap_end = malloc(model_count * sizeof(*snap_end));
	snap_node = malloc(model_count * sizeof(*snap_node));
	CHECK(snap_start && snap_end && snap_node, "out of memory");
	for (i = 0; i < n; i++)
		if (in_tree[i])
			snap_node[snap_n++] = &pool[i];
	qsort(snap_node, snap_n, sizeof(*snap_node), cmp_key);
	snap_maxlen = 0;
	for (i = 0; i < snap_n; i++) {
		snap_start[i] = snap_node[i]->start;
		snap_end[i] = snap_node[i]->end;
		if (snap_end[i] - snap_start[i] > snap_maxlen)
			snap_maxlen = snap_end[i] - snap_start[i];
	}
	for (int q = 0; q < 300; q++) {
		uint64_t s, e;

		if (q < 5) { /* wide queries: tens of thousands of hits */
			s = below(space);
			e = s + (space >> 6);
		} else {
			random_range(space, maxlen * 4, false, &s, &e);
		}
		check_query(&t, s, e);
	}
	snap_n = 0;
	mrl_itree_destroy(&t);
	free(snap_start);
	free(snap_end);
	free(snap_node);
	free(perm);
	teardown();
}

int main(void)
{
	rng_state = 0x6d726c6561736531ull;
	fixed_cases();
	for (uint64_t seed = 1; seed <= 8; seed++) {
		rng_state = 0x6d726c6561736531ull * seed;
		small_run(64, 4000, 256, 32, false);         /* dense, many duplicates */
		small_run(200, 3000, 64, 1 << 20, false);    /* nearly all nested or overlapping */
		small_run(500, 6000, 1 << 16, 1 << 10, false);
		small_run(300, 3000, 1 << 12, 1 << 8, true); /* ends up against UINT64_MAX */
	}
	small_run(2000, 10000, 1 << 20, 1 << 12, false);
	ordered_runs();
	large_run(500000);
	printf("t_itree: all checks passed\n");
	return 0;
}
