/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Remote keys are unguessable and never rebound: 10,000 register/deregister
 * cycles on tcp;ofi_rxm never reuse a key or an MR id; the keys are spread
 * over the provider's whole key space (no counting from a base: no two
 * consecutive keys a small step apart, about half the bits set), and a
 * key still in use is never handed out again. */
#include <sys/mman.h>

#include "helpers.h"

#define CYCLES 10000

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static size_t dups(uint64_t *v, size_t n)
{
	qsort(v, n, sizeof(*v), cmp_u64);
	size_t d = 0;
	for (size_t i = 1; i < n; i++)
		d += v[i] == v[i - 1];
	return d;
}

int main(void)
{
	mrl_ctx *ctx = t_ctx("tcp;ofi_rxm", 10000);
	size_t pg = 4096;
	char *mem = mmap(NULL, 2 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(mem != MAP_FAILED, "mmap");
	mem[0] = mem[pg] = 1;

	/* one MR held the whole time: its key must never come back */
	mrl_mr_t held;
	REQUIRE(mrl_mr_reg(ctx, mem + pg, pg, MRL_ACCESS_REMOTE_READ, NULL, &held) == 0, "held MR: %s",
		mrl_last_error());
	struct mrl_mr_info hi = {.size = sizeof(hi)};
	REQUIRE(mrl_mr_query(ctx, held, &hi) == 0, "query held");

	uint64_t *keys = calloc(CYCLES + 1, sizeof(*keys)), *ids = calloc(CYCLES, sizeof(*ids));
	REQUIRE(keys && ids, "calloc");
	int failed = 0, near = 0, held_again = 0;
	double bits = 0;
	for (int i = 0; i < CYCLES; i++) {
		mrl_mr_t mr;
		int acc = i & 1 ? MRL_ACCESS_REMOTE_WRITE : MRL_ACCESS_REMOTE_READ;
		if (mrl_mr_reg(ctx, mem, pg, (unsigned)acc, NULL, &mr)) {
			failed++;
			continue;
		}
		struct mrl_mr_info in = {.size = sizeof(in)};
		mrl_mr_query(ctx, mr, &in);
		keys[i] = in.key;
		ids[i] = mr;
		held_again += in.key == hi.key;
		bits += __builtin_popcountll(in.key);
		if (i) {
			uint64_t d = keys[i] > keys[i - 1] ? keys[i] - keys[i - 1] : keys[i - 1] - keys[i];
			near += d < (1ull << 32);
		}
		if (mrl_mr_dereg(ctx, mr))
			failed++;
	}
	keys[CYCLES] = hi.key;
	printf("%d cycles: first keys %#llx %#llx %#llx; mean bits set %.2f of 64\n", CYCLES,
	       (unsigned long long)keys[0], (unsigned long long)keys[1], (unsigned long long)keys[2],
	       bits / CYCLES);
	CHECK(failed == 0, "every registration and deregistration succeeded (%d failed: %s)", failed,
	      mrl_last_error());
	CHECK(held_again == 0, "the key of an MR in use was never handed out again (%d)", held_again);
	CHECK(near == 0, "no key follows the one before within 2^32 (%d did): not counted from a base",
	      near);
	/* popcount of a uniform 64-bit key: mean 32, sd 4; over 10,000 keys the
	 * mean's sd is 0.04, so [31, 33] is 25 sd wide: a counter sits near 16 */
	CHECK(bits / CYCLES > 31 && bits / CYCLES < 33, "keys use the whole 64-bit key space (%.2f bits)",
	      bits / CYCLES);
	size_t kd = dups(keys, CYCLES + 1), id = dups(ids, CYCLES);
	CHECK(kd == 0, "no key was ever handed out twice (%zu repeats)", kd);
	CHECK(id == 0, "no MR id was ever handed out twice (%zu repeats)", id);
	/* a deregistered id stays dead */
	struct mrl_mr_info x = {.size = sizeof(x)};
	CHECK(mrl_mr_query(ctx, ids[CYCLES - 1], &x) < 0, "a deregistered MR's id is refused");

	mrl_mr_dereg(ctx, held);
	free(keys);
	free(ids);
	munmap(mem, 2 * pg);
	mrl_ctx_destroy(ctx);
	return t_done("t_keys");
}
