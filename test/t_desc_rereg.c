/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The data path's local descriptors against the device worker (issue 10).
 * A provider that wants local descriptors (FI_MR_LOCAL: verbs, and so
 * ofi_rxm over it) gets, with each RMA, the descriptor of the MR that holds
 * the local buffer. Meanwhile the device worker may be closing that very
 * registration (a break revokes it, the restore registers anew) with no
 * library lock held. Before, the post read the registration while the
 * worker freed it (use after free: ASan, TSan). Now a post holds the MR's
 * registration for the length of its call and the worker waits for it.
 * tcp wants no descriptors: the test makes the data path act as if it did
 * (mrl_ep_test_mr_local), and rxm takes the descriptor it is given. The
 * peer streams reads and writes from a local buffer that is itself an MR,
 * while another thread breaks that MR again and again (madvise DONTNEED:
 * paused, registration closed, made anew, restored). Every operation
 * completes; the MR ends active with one restore per break. Run under ASan
 * and TSan. */
#include <sys/mman.h>

#include "rig_pair.h"
#include "mrl_int.h"

#define LEN (64u * 1024u)
#define OPLEN 4096u
#define DEPTH 8
#define BREAKS 200

static char *lbuf;
static atomic_int breaks_done, stop;

static void *breaker(void *arg)
{
	(void)arg;
	for (int i = 0; i < BREAKS && !atomic_load(&stop); i++) {
		CHECK(madvise(lbuf, LEN, MADV_DONTNEED) == 0, "madvise %d", i);
		atomic_fetch_add(&breaks_done, 1);
	}
	return NULL;
}

int main(void)
{
	struct pair p;
	pair_open(&p);
	if (!(mrl_ctx_watchers(p.cctx) & MRL_WATCH_INTERPOSE))
		t_skip("the preload library is not what callers of madvise reach here");
	char *rbuf = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	lbuf = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(rbuf != MAP_FAILED && lbuf != MAP_FAILED, "mmap");
	memset(rbuf, 1, LEN);
	memset(lbuf, 2, LEN);
	mrl_mr_t rmr_h, lmr;
	REQUIRE(mrl_mr_reg(p.sctx, rbuf, LEN, MRL_ACCESS_REMOTE_READ | MRL_ACCESS_REMOTE_WRITE, NULL,
			   &rmr_h) == 0, "the owner's MR");
	/* the peer's local buffer, registered in its own context */
	REQUIRE(mrl_mr_reg(p.cctx, lbuf, LEN, 0, NULL, &lmr) == 0, "the peer's local MR: %s",
		mrl_last_error());
	mrl_rmr *r;
	REQUIRE(mrl_rmr_open(p.cpeer, rmr_h, T_HANG_MS, &r) == 0, "open the owner's MR");
	mrl_ep_test_mr_local = true;

	pthread_t th;
	pthread_create(&th, NULL, breaker, NULL);
	int inflight = 0, ok = 0, failed = 0, last_err = 0, n = 0;
	uint64_t hang = t_now_ns() + T_HANG_MS * 1000000ull;
	while ((atomic_load(&breaks_done) < BREAKS || inflight) && t_now_ns() < hang) {
		while (atomic_load(&breaks_done) < BREAKS && inflight < DEPTH) {
			uint64_t off = (uint64_t)(n % (LEN / OPLEN)) * OPLEN;
			char *b = lbuf + off;
			int ret = n & 1 ? mrl_read(r, off, b, OPLEN, NULL) : mrl_write(r, off, b, OPLEN, NULL);
			n++;
			if (ret) {
				failed++, last_err = ret;
				break;
			}
			inflight++;
		}
		struct mrl_completion c[DEPTH];
		int got = mrl_ep_poll(p.cep, c, DEPTH);
		for (int k = 0; k < got; k++) {
			inflight--;
			if (c[k].status)
				failed++, last_err = c[k].status;
			else
				ok++;
		}
	}
	atomic_store(&stop, 1);
	pthread_join(th, NULL);
	mrl_ep_test_mr_local = false;
	printf("%d operations completed, %d failed (last %d), beside %d breaks of the local MR\n", ok,
	       failed, last_err, atomic_load(&breaks_done));
	CHECK(atomic_load(&breaks_done) == BREAKS, "every break ran (%d)", atomic_load(&breaks_done));
	CHECK(inflight == 0, "every operation completed (%d still in flight)", inflight);
	CHECK(failed == 0 && ok > 0, "every operation succeeded (%d ok, %d failed, last %d)", ok,
	      failed, last_err);
	struct mrl_mr_info in = t_query(p.cctx, lmr);
	CHECK(in.state == MRL_STATE_ACTIVE && in.breaks == BREAKS && in.restores == BREAKS,
	      "the local MR is active after %u breaks, %u restores (%s)", in.breaks, in.restores,
	      mrl_state_str(in.state));
	mrl_rmr_close(r);
	mrl_mr_dereg(p.cctx, lmr);
	mrl_mr_dereg(p.sctx, rmr_h);
	pair_close(&p);
	munmap(rbuf, LEN);
	munmap(lbuf, LEN);
	return t_done("t_desc_rereg");
}
