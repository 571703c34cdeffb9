/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The owner's own fallocate(PUNCH_HOLE) and ftruncate on ext4, seen by
 * fanotify before they land, under a peer streaming verified RMA writes and
 * reads over tcp;ofi_rxm. The owner's thread that makes the calls is also the
 * only thread driving the owner's endpoint: while it is held in the kernel the
 * monitor drives progress itself, so the peer's pause answer still arrives
 * (no deadlock, no peer cut off). Zero failed transfers on restored MRs, every
 * byte written under the final generation is in the file, and each punch
 * pauses exactly the one MR it touches. */
#include <linux/falloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>

#include "vstream.h"

#define NMR 8
#define MRSZ (512u * 1024)
#define BLK VS_BLK
#define NBLK (MRSZ / BLK)
#define NPUNCH 12
/* Pacing by events, not the clock: the owner makes its next change once the
 * peer has verified EVERY more transfers; the peer streams until the owner
 * has made every change, then AFTER more verified transfers. */
#define EVERY 40
#define AFTER 300

struct owner {
	mrl_ctx *ctx;
	mrl_ep *ep;
	const char *path;
	atomic_int stop, changes_done, accepted;
	atomic_ulong verified; /* the peer's verified transfers so far */
	mrl_peer *peer;
	int punched[NMR];
	int tries, punches, truncated, errors;
	uint16_t port;
};

static void *owner_main(void *a)
{
	struct owner *o = a;
	int ret = mrl_ep_accept(o->ep, T_HANG_MS, &o->peer);
	atomic_store(&o->accepted, ret ? -1 : 1);
	if (ret) {
		o->errors++;
		atomic_store(&o->changes_done, 1);
		return NULL;
	}
	int fd = open(o->path, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		o->errors++;
		atomic_store(&o->changes_done, 1);
		return NULL;
	}
	unsigned long next = EVERY;
	uint64_t rng = 88172645463325252ull;
	/* this thread alone drives the owner's endpoint, also while it waits */
	while (!atomic_load(&o->stop)) {
		mrl_ep_progress(o->ep);
		if (o->truncated || atomic_load(&o->verified) < next)
			continue;
		next = atomic_load(&o->verified) + EVERY;
		if (o->tries++ < NPUNCH) {
			rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
			int m = (int)(rng % (NMR - 1)); /* the last MR is the truncate's */
			uint64_t off = (uint64_t)m * MRSZ + ((rng >> 20) % (NBLK - 4)) * BLK;
			if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, 2 * BLK))
				o->errors++;
			else
				o->punched[m]++, o->punches++;
		} else {
			/* cut the last MR in half */
			if (ftruncate(fd, (off_t)((NMR - 1) * MRSZ + MRSZ / 2)))
				o->errors++;
			o->truncated = 1;
			atomic_store(&o->changes_done, 1);
		}
	}
	close(fd);
	return NULL;
}

int main(void)
{
	char dir[256], path[300];
	t_scratch("ext4", dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/f", dir);
	t_make_file(path, NMR * MRSZ);

	/* a break deadline a busy machine cannot miss: the peer must answer */
	mrl_ctx *sctx = t_ctx("tcp;ofi_rxm", 10000), *cctx = t_ctx("tcp;ofi_rxm", 10000);
	if (!(mrl_ctx_watchers(sctx) & MRL_WATCH_FANOTIFY))
		t_skip("fanotify pre-content events unavailable (needs Linux >= 6.14 and CAP_SYS_ADMIN)");
	void *base;
	REQUIRE(mrl_file_map(sctx, path, 0, NMR * MRSZ, PROT_READ | PROT_WRITE, &base) == 0, "map");
	mrl_mr_t mr[NMR];
	for (int i = 0; i < NMR; i++)
		REQUIRE(mrl_mr_reg(sctx, (char *)base + i * MRSZ, MRSZ,
				   MRL_ACCESS_REMOTE_READ | MRL_ACCESS_REMOTE_WRITE, NULL, &mr[i]) == 0,
			"register");
	if (!(t_query(sctx, mr[0]).watchers & MRL_WATCH_FANOTIFY))
		t_skip("the file is not watched by fanotify here");
	struct owner o = {.ctx = sctx, .path = path};
	mrl_ep *cep;
	REQUIRE(mrl_ep_create(sctx, NULL, &o.ep) == 0, "owner ep, manual progress");
	REQUIRE(mrl_ep_create(cctx, NULL, &cep) == 0, "peer ep");
	REQUIRE(mrl_ep_listen(o.ep, "127.0.0.1", 0, &o.port) == 0, "listen");
	pthread_t th;
	pthread_create(&th, NULL, owner_main, &o);
	mrl_peer *peer;
	REQUIRE(mrl_ep_connect(cep, "127.0.0.1", o.port, T_HANG_MS, &peer) == 0, "connect");
	/* ask only once the owner's accept has returned: a request sent while
	 * the owner is still inside its handshake is dropped (src/ep.c) */
	while (!atomic_load(&o.accepted))
		usleep(100);
	REQUIRE(atomic_load(&o.accepted) == 1, "owner accepted");
	mrl_rmr *r[NMR];
	for (int i = 0; i < NMR; i++)
		REQUIRE(mrl_rmr_open(peer, mr[i], T_HANG_MS, &r[i]) == 0, "open remote MR %d", i);

	/* stream: write a block, read it back, compare; the generation the
	 * operation ran under says whether the owner's change may lie between */
	struct vstream s;
	vs_init(&s, cep, r, NMR, MRSZ);
	uint64_t hang = t_now_ns() + 4ull * T_HANG_MS * 1000000ull;
	bool hung = false;
	for (;;) {
		bool more = !atomic_load(&o.changes_done) || s.posted_after < AFTER;
		if (!more && !vs_busy(&s))
			break;
		if (t_now_ns() > hang) {
			hung = true;
			break;
		}
		if (more)
			vs_post(&s, atomic_load(&o.changes_done));
		vs_reap(&s);
		atomic_store(&o.verified, s.verified);
	}
	atomic_store(&o.stop, 1);
	pthread_join(th, NULL);

	CHECK(o.errors == 0, "owner's calls all succeeded (%d errors)", o.errors);
	CHECK(o.punches == NPUNCH && o.truncated, "owner made %d punches and a truncate", o.punches);
	CHECK(s.failed == 0, "zero failed transfers (%lu of %lu)", s.failed, s.transfers);
	CHECK(s.mismatches == 0, "zero mismatches (%lu)", s.mismatches);
	CHECK(!hung, "the stream went on through every change (%lu verified, %d punches, %d truncate)",
	      s.verified, o.punches, o.truncated);
	CHECK(s.after > 0, "verified transfers after the last change (%lu)", s.after);
	struct mrl_stats st = {.size = sizeof(st)};
	mrl_ctx_stats(sctx, &st);
	CHECK(st.peer_timeouts == 0, "the peer answered every pause (no cut-off): %llu timeouts",
	      (unsigned long long)st.peer_timeouts);
	for (int i = 0; i < NMR - 1; i++) {
		struct mrl_mr_info in = t_query(sctx, mr[i]);
		CHECK(in.breaks == (uint32_t)o.punched[i], "MR %d paused exactly for its own %d punches (%u)",
		      i, o.punched[i], in.breaks);
		CHECK(in.state == MRL_STATE_ACTIVE && in.valid_length == MRSZ, "MR %d restored whole", i);
	}
	struct mrl_mr_info last = t_query(sctx, mr[NMR - 1]);
	CHECK(last.breaks == 1 && last.valid_length == MRSZ / 2 && last.cause == MRL_CAUSE_TRUNCATED,
	      "the last MR paused once, for the truncate, its tail fenced (%u, %llu)", last.breaks,
	      (unsigned long long)last.valid_length);

	/* every block written under the MR's final generation is in the file */
	unsigned long checked, lost = vs_lost(&s, sctx, mr, path, &checked);
	CHECK(checked > 0 && lost == 0, "written bytes are in the file: %lu blocks checked, %lu lost",
	      checked, lost);
	printf("transfers %lu, refused past the end %lu, rewritten after a change %lu, pauses %llu, "
	       "breaker held p50 %.0f us p99 %.0f us\n",
	       s.transfers, s.refused, s.regen, (unsigned long long)st.pauses, st.pause_ns_p50 / 1e3,
	       st.pause_ns_p99 / 1e3);

	vs_free(&s);
	for (int i = 0; i < NMR; i++)
		mrl_rmr_close(r[i]);
	mrl_ep_destroy(cep);
	mrl_ep_destroy(o.ep);
	for (int i = 0; i < NMR; i++)
		mrl_mr_dereg(sctx, mr[i]);
	mrl_file_unmap(sctx, base, NMR * MRSZ);
	mrl_ctx_destroy(cctx);
	mrl_ctx_destroy(sctx);
	unlink(path);
	rmdir(dir);
	return t_done("t_fan_stream");
}
