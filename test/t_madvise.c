/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* madvise(MADV_DONTNEED) by the owner on an anonymous MR under a peer
 * streaming verified writes and reads: the interposer pauses the peer (it
 * holds new operations, drains, answers), the pages go, the MR resumes on
 * the same object (same key, new generation, cause "madvised"). The peer
 * sees zero failed transfers; a read returns what was written unless the
 * generation moved in between, and then only zeros the owner discarded. */
#include <stdatomic.h>
#include <sys/mman.h>

#include "rig_pair.h"

#define LEN (1u << 20)
#define BLK 4096u
#define NADV 25
/* Paced by events: the owner madvises once the peer has verified EVERY more
 * blocks; the peer streams until the owner is done, then AFTER more. */
#define EVERY 4
#define AFTER 50

struct owner {
	char *mem;
	atomic_int stop, done;
	atomic_ulong verified;
	int errors;
};

static void *owner_main(void *a)
{
	struct owner *o = a;
	uint64_t rng = 12345;
	unsigned long next = EVERY;
	while (o->done < NADV && !atomic_load(&o->stop)) {
		if (atomic_load(&o->verified) < next) {
			usleep(100);
			continue;
		}
		next = atomic_load(&o->verified) + EVERY;
		rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
		size_t off = (rng % (LEN / BLK - 16)) * BLK;
		if (madvise(o->mem + off, 16 * BLK, MADV_DONTNEED))
			o->errors++;
		o->done++;
	}
	return NULL;
}

static void fill(unsigned char *b, unsigned blk, unsigned seq)
{
	for (unsigned i = 0; i < BLK; i += 4) {
		uint32_t v = (blk * 2654435761u) ^ (seq * 40503u) ^ i ^ 0x5a5a5a5au;
		memcpy(b + i, &v, 4);
	}
}

int main(void)
{
	struct pair p;
	pair_open(&p);
	if (!(mrl_ctx_watchers(p.sctx) & MRL_WATCH_INTERPOSE))
		t_skip("the interposer is not what callers reach in this build");
	struct owner o = {.mem = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)};
	mrl_mr_t mr;
	REQUIRE(mrl_mr_reg(p.sctx, o.mem, LEN, MRL_ACCESS_REMOTE_READ | MRL_ACCESS_REMOTE_WRITE, NULL, &mr) == 0,
		"register");
	uint64_t key = t_query(p.sctx, mr).key;
	mrl_rmr *r;
	REQUIRE(mrl_rmr_open(p.cpeer, mr, T_HANG_MS, &r) == 0, "open");
	pthread_t th;
	pthread_create(&th, NULL, owner_main, &o);

	unsigned char wbuf[BLK], rbuf[BLK], want[BLK];
	unsigned long transfers = 0, failed = 0, discarded = 0, corrupt = 0, unannounced = 0;
	unsigned long after = 0;
	uint64_t rng = 999, hang = t_now_ns() + 4ull * T_HANG_MS * 1000000ull;
	unsigned seq = 0;
	while ((o.done < NADV || after < AFTER) && t_now_ns() < hang) {
		after += o.done == NADV;
		rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
		unsigned blk = (unsigned)(rng % (LEN / BLK));
		fill(wbuf, blk, ++seq);
		struct mrl_completion c;
		if (mrl_write(r, (uint64_t)blk * BLK, wbuf, BLK, NULL) || pair_wait(&p, &c, T_HANG_MS) || c.status) {
			failed++;
			continue;
		}
		uint32_t wgen = c.generation;
		memset(rbuf, 0xee, BLK);
		if (mrl_read(r, (uint64_t)blk * BLK, rbuf, BLK, NULL) || pair_wait(&p, &c, T_HANG_MS) || c.status) {
			failed++;
			continue;
		}
		transfers += 2;
		atomic_store(&o.verified, transfers / 2);
		fill(want, blk, seq);
		if (memcmp(want, rbuf, BLK)) {
			/* only the owner's discarding may differ: zero pages */
			bool zeros = true;
			for (unsigned i = 0; i < BLK && zeros; i++)
				zeros = rbuf[i] == 0;
			if (!zeros)
				corrupt++;
			else if (c.generation == wgen)
				unannounced++; /* changed with no new generation: the pause failed */
			else
				discarded++;
		}
	}
	atomic_store(&o.stop, 1);
	pthread_join(th, NULL);
	struct mrl_mr_info in = t_query(p.sctx, mr);
	printf("transfers %lu, failed %lu, reads of discarded pages %lu (after a new generation), corrupt %lu, "
	       "unannounced %lu, restores %u\n",
	       transfers, failed, discarded, corrupt, unannounced, in.restores);
	CHECK(o.errors == 0 && o.done == NADV, "owner's madvise calls succeeded");
	CHECK(failed == 0, "zero failed transfers (%lu)", failed);
	CHECK(corrupt == 0, "no read returned foreign bytes (%lu)", corrupt);
	CHECK(unannounced == 0, "no discarded page without a new generation (%lu)", unannounced);
	struct mrl_stats st = {.size = sizeof(st)};
	CHECK(mrl_ctx_stats(p.sctx, &st) == 0 && st.peer_timeouts == 0 && st.pauses >= NADV,
	      "the peer answered every pause (%llu pauses, %llu timeouts)", (unsigned long long)st.pauses,
	      (unsigned long long)st.peer_timeouts);
	CHECK(after >= AFTER, "the peer streamed through every madvise and after (%lu transfers)", transfers);
	CHECK(in.state == MRL_STATE_ACTIVE && in.key == key, "same MR, same key, active");
	CHECK(in.restores == NADV && in.cause == MRL_CAUSE_MADVISED, "each madvise seen (%u restores, cause %s)",
	      in.restores, mrl_cause_str(in.cause));
	CHECK(in.generation > NADV, "generation moved with every madvise (%u)", in.generation);
	mrl_rmr_close(r);
	mrl_mr_dereg(p.sctx, mr);
	munmap(o.mem, LEN);
	pair_close(&p);
	return t_done("t_madvise");
}
