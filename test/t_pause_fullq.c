/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* A peer whose send queue is full when it acks a pause (issue 10): the
 * ack must go exactly once, and late rather than never. The ack is first
 * tried while the peer handles the batch of completions that brought the
 * PAUSE; the completions of its writes often sit later in that batch, so an
 * ack that waited for room there (driving progress) timed out and the owner
 * cut the peer off; one that drove progress re-entered the ack path for the
 * same record (duplicate ack, use after free). Counted at both ends: acks
 * sent and acks the owner received each equal the pauses, no timeout. */
/* One ack per pause, every break completes, no write fails.
 * tcp;ofi_rxm never reports its queue full for a control message (it queues
 * them itself), so the library's test knob makes the queue full exactly
 * while the peer has writes in flight. The writes go to other MRs of the same
 * owner, whose endpoint progress the test holds until the peer has the
 * pause: the pause reaches the peer before the writes complete. */
#include <pthread.h>
#include <sys/mman.h>

#include "mrl_int.h"
#include "rig_pair.h"

#define MB (1u << 20)
#define ROUNDS 8
#define NB 2 /* busy MRs, one write in flight on each */
#define WLEN 4096u

/* The owner's endpoint progress is the test's (and its monitor's while a
 * break waits for acks), so the peer's writes stay uncompleted (and the
 * peer's queue full) until the peer has the pause. */
struct busy {
	mrl_ep *ep;
	mrl_ep *peer_ep;          /* whose pause count releases the owner */
	_Atomic uint64_t release_at; /* run while the peer's pause count >= this */
	_Atomic bool parked, stop;
};

static void *busy_main(void *a)
{
	struct busy *b = a;
	while (!atomic_load(&b->stop)) {
		uint64_t pin, x, y;
		mrl_ep_pause_counts(b->peer_ep, &pin, &x, &y);
		if (pin < atomic_load(&b->release_at)) {
			atomic_store(&b->parked, true);
			usleep(200);
			continue;
		}
		atomic_store(&b->parked, false);
		mrl_ep_progress(b->ep);
	}
	return NULL;
}

static void connect_to(mrl_ep *owner, mrl_ep *peer, mrl_peer **out)
{
	uint16_t port;
	REQUIRE(mrl_ep_listen(owner, "127.0.0.1", 0, &port) == 0, "listen");
	*out = pair_connect(owner, peer, port, NULL);
}

int main(void)
{
	char dir[256], path[300];
	t_scratch("ext4", dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/f", dir);
	t_make_file(path, MB);

	/* the owner: a file MR the breaks pause, anonymous MRs that keep the peer's queue full */
	mrl_ctx *actx = t_ctx_flags("tcp;ofi_rxm", 10000, MRL_CTX_NO_FANOTIFY);
	mrl_ctx *pctx = t_ctx_flags("tcp;ofi_rxm", 10000, MRL_CTX_NO_LEASES);
	mrl_ep *aep, *pep;
	REQUIRE(mrl_ep_create(actx, NULL, &aep) == 0, "owner ep");
	REQUIRE(mrl_ep_create(pctx, NULL, &pep) == 0, "peer ep");
	struct busy busy = {.ep = aep, .peer_ep = pep};
	pthread_t bth;
	pthread_create(&bth, NULL, busy_main, &busy);
	mrl_peer *to_a;
	connect_to(aep, pep, &to_a);

	void *fmap;
	REQUIRE(mrl_file_map(actx, path, 0, MB, PROT_READ | PROT_WRITE, &fmap) == 0, "map");
	char *anon = mmap(NULL, NB * MB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(anon != MAP_FAILED, "mmap");
	memset(anon, 0, NB * MB);
	unsigned acc = MRL_ACCESS_REMOTE_READ | MRL_ACCESS_REMOTE_WRITE;
	mrl_mr_t ma, mb[NB];
	mrl_rmr *ra, *rb[NB];
	REQUIRE(mrl_mr_reg(actx, fmap, MB, acc, NULL, &ma) == 0, "register the file MR");
	REQUIRE(mrl_rmr_open(to_a, ma, 5000, &ra) == 0, "open the file MR");
	for (int i = 0; i < NB; i++) {
		REQUIRE(mrl_mr_reg(actx, anon + (size_t)i * MB, MB, acc, NULL, &mb[i]) == 0, "register");
		REQUIRE(mrl_rmr_open(to_a, mb[i], 5000, &rb[i]) == 0, "open");
	}

	char *src = aligned_alloc(4096, WLEN);
	REQUIRE(src, "buffer");
	memset(src, 0x5a, WLEN);
	uint64_t posted = 0, done = 0, failed = 0;
	struct mrl_completion c[32];
	mrl_ep_test_full_txq = true;
	for (int round = 0; round < ROUNDS; round++) {
		uint64_t pin, x, y;
		mrl_ep_pause_counts(pep, &pin, &x, &y);
		/* park the owner, then fill the peer's queue with one write per busy MR:
		 * each MR's last completion looks for pauses to ack, and the ack
		 * for this round's pause waits (driving progress) until they end */
		atomic_store(&busy.release_at, pin + 1);
		while (!atomic_load(&busy.parked))
			usleep(100);
		for (int i = 0; i < NB; i++) {
			int ret = mrl_write(rb[i], 0, src, WLEN, NULL);
			CHECK(ret == 0, "write posted (%d)", ret);
			posted += ret == 0;
		}
		pid_t pid = t_sh_bg("fallocate --punch-hole -o %u -l 4096 %s", (round % 64) * 8192u, path);
		int st = -1;
		bool exited = false;
		for (;;) {
			int n = mrl_ep_poll(pep, c, 32);
			for (int i = 0; i < n; i++) {
				done++;
				if (c[i].status) {
					failed++;
					fprintf(stderr, "write failed: %d cause %s\n", c[i].status,
						mrl_cause_str(c[i].cause));
				}
			}
			if (!exited && waitpid(pid, &st, WNOHANG) == pid) {
				exited = true;
				/* a break that never paused the peer must not leave the writes parked */
				atomic_store(&busy.release_at, 0);
			}
			if (exited && done == posted)
				break;
		}
		mrl_ep_pause_counts(pep, &x, &y, &y);
		CHECK(x == pin + 1, "round %d: the peer was paused (%llu pauses)", round,
		      (unsigned long long)(x - pin));
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "round %d: the breaker completed", round);
		CHECK(t_wait_state(actx, ma, MRL_STATE_ACTIVE, 10000) == 0, "round %d: restored", round);
	}
	mrl_ep_test_full_txq = false;
	uint64_t pin, aout, ain, x0, x1, x2;
	mrl_ep_pause_counts(pep, &pin, &aout, &x2);
	/* the owner counts acks as its endpoint progresses: wait until it has every
	 * ack the peer sent (duplicates included) */
	for (;;) {
		mrl_ep_pause_counts(aep, &x0, &x1, &ain);
		if (ain >= aout)
			break;
		mrl_ep_poll(pep, c, 0);
		usleep(1000);
	}
	struct mrl_stats sst = {.size = sizeof(sst)};
	mrl_ctx_stats(actx, &sst);
	printf("rounds %d: writes %llu, pauses %llu, acks sent %llu, acks received %llu, "
	       "breaks %llu, timeouts %llu\n",
	       ROUNDS, (unsigned long long)posted, (unsigned long long)pin, (unsigned long long)aout,
	       (unsigned long long)ain, (unsigned long long)sst.breaks,
	       (unsigned long long)sst.peer_timeouts);
	CHECK(pin >= ROUNDS, "the peer was paused every round (%llu)", (unsigned long long)pin);
	CHECK(aout == pin, "one ack sent per pause (%llu acks, %llu pauses)", (unsigned long long)aout,
	      (unsigned long long)pin);
	CHECK(ain == pin, "the owner received one ack per pause (%llu acks, %llu pauses)",
	      (unsigned long long)ain, (unsigned long long)pin);
	CHECK(sst.peer_timeouts == 0, "the peer always answered (%llu timeouts)",
	      (unsigned long long)sst.peer_timeouts);
	CHECK(failed == 0, "no write failed (%llu)", (unsigned long long)failed);

	atomic_store(&busy.release_at, 0);
	atomic_store(&busy.stop, true);
	pthread_join(bth, NULL);
	mrl_rmr_close(ra);
	for (int i = 0; i < NB; i++)
		mrl_rmr_close(rb[i]);
	free(src);
	mrl_ep_destroy(pep);
	mrl_ep_destroy(aep);
	mrl_ctx_destroy(pctx);
	mrl_ctx_destroy(actx);
	munmap(anon, NB * MB);
	unlink(path);
	rmdir(dir);
	return t_done("t_pause_fullq");
}
