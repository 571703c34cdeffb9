/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Churn: a peer streams verified transfers (write a 4 KiB block with a fresh
 * pattern, read it back, compare) into the first half of a 4 MiB MR on an
 * ext4 file, while the owner changes the file's layout in the second half at
 * 10, 100 and 1000 changes per second: open the file (which breaks the
 * library's lease: the change is seen before it lands), punch a 64 KiB hole,
 * write the hole's data back, close. Versus no changes, in the same run
 * (slices of every rate interleaved round by round). Counted: transfers/s, failed transfers, mismatched bytes
 * (both must be 0), changes made, breaks the library saw. */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common.h"

#define FILESZ (4u << 20)
#define BLK 4096u
#define NBLK ((FILESZ / 2) / BLK)
#define HOLE (64u << 10)
#define HOLE_OFF (3u << 20)
#define SLOTS 8


struct churner {
	const char *path;
	int rate;
	atomic_bool stop, done;
	uint64_t changes, errors;
	uint64_t *blocked;
	size_t nblocked, cap;
	unsigned char data[HOLE];
};

static void *churn_main(void *a)
{
	struct churner *c = a;
	uint64_t period = 1000000000ull / (uint64_t)c->rate, next = now_ns();
	while (!atomic_load(&c->stop)) {
		next += period;
		uint64_t now = now_ns();
		if (next > now) {
			struct timespec ts = {.tv_sec = (time_t)(next / 1000000000ull),
					      .tv_nsec = (long)(next % 1000000000ull)};
			clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
		} else {
			next = now; /* behind: do not try to catch up in a burst */
		}
		uint64_t t0 = now_ns();
		int fd = open(c->path, O_RDWR); /* breaks the lease: seen before it lands */
		uint64_t t1 = now_ns();
		if (fd < 0 || fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, HOLE_OFF, HOLE) ||
		    pwrite(fd, c->data, HOLE, HOLE_OFF) != HOLE)
			c->errors++;
		if (fd >= 0)
			close(fd);
		c->changes++;
		if (c->nblocked < c->cap)
			c->blocked[c->nblocked++] = t1 - t0;
	}
	atomic_store(&c->done, true);
	return NULL;
}

struct stream {
	mrl_ep *cep;
	mrl_rmr *rmr;
	unsigned char *wbuf, *rbuf; /* SLOTS blocks each */
	uint64_t seq[SLOTS];
	uint32_t blk[SLOTS];
	uint64_t next_seq, transfers, failed, mismatched;
};

static void fill(unsigned char *p, uint64_t seq)
{
	uint64_t *w = (uint64_t *)(void *)p;
	for (size_t i = 0; i < BLK / 8; i++)
		w[i] = seq * 0x9E3779B97F4A7C15ull + i;
}

static int start_slot(struct stream *s, int i)
{
	s->seq[i] = ++s->next_seq;
	s->blk[i] = (uint32_t)((s->next_seq * 7) % NBLK);
	fill(s->wbuf + (size_t)i * BLK, s->seq[i]);
	return mrl_write(s->rmr, (uint64_t)s->blk[i] * BLK, s->wbuf + (size_t)i * BLK, BLK,
			 (void *)(uintptr_t)(i * 2 + 1));
}

/* run for ns nanoseconds; returns 0 or -errno of a refused post */
static int stream_for(struct stream *s, uint64_t ns)
{
	uint64_t end = now_ns() + ns;
	int active = 0, ret = 0;
	for (int i = 0; i < SLOTS; i++) {
		int r = start_slot(s, i);
		if (r) {
			s->failed++;
			ret = r;
		} else {
			active++;
		}
	}
	uint64_t idle_since = 0;
	while (active) {
		struct mrl_completion c[16];
		int n = mrl_ep_poll(s->cep, c, 16);
		if (n <= 0) {
			uint64_t t = now_ns();
			if (!idle_since)
				idle_since = t;
			else if (t - idle_since > 10000000000ull)
				return -ETIMEDOUT; /* nothing completed for 10 s */
			continue;
		}
		idle_since = 0;
		for (int k = 0; k < n; k++) {
			uintptr_t tag = (uintptr_t)c[k].op_context - 1;
			int i = (int)(tag / 2), rd = (int)(tag % 2);
			int r = 0;
			if (c[k].status) {
				s->failed++;
			} else if (!rd) {
				r = mrl_read(s->rmr, (uint64_t)s->blk[i] * BLK, s->rbuf + (size_t)i * BLK, BLK,
					     (void *)(uintptr_t)(i * 2 + 2));
				if (!r)
					continue;
				s->failed++;
			} else {
				const unsigned char *a = s->wbuf + (size_t)i * BLK, *b = s->rbuf + (size_t)i * BLK;
				if (memcmp(a, b, BLK))
					for (size_t j = 0; j < BLK; j++)
						s->mismatched += a[j] != b[j];
				s->transfers++;
			}
			if (now_ns() < end && !(r = start_slot(s, i)))
				continue;
			if (r)
				s->failed++;
			active--;
		}
	}
	return ret;
}

int bench_churn(void)
{
	static const int rates_full[] = {0, 10, 100, 1000}, rates_smoke[] = {0, 100};
	const int *rates = B.smoke ? rates_smoke : rates_full;
	int nr = B.smoke ? 2 : 4;
	/* slices of each rate, interleaved round by round so drift in the
	 * machine's load hits every rate alike */
	int rounds = B.smoke ? 1 : 6;
	uint64_t dur = B.smoke ? 300000000ull : 750000000ull;
	char dir[256], path[300];
	int ret = scratch_dir("ext4", dir, sizeof(dir));
	if (ret) {
		printf("== churn: no ext4 scratch directory under /var/tmp, skipped\n");
		json_part("churn");
		json_row("\"skipped\": \"no ext4 under /var/tmp\"");
		json_part_end();
		return 0;
	}
	snprintf(path, sizeof(path), "%s/f", dir);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return -errno;
	static struct churner ch;
	memset(&ch, 0, sizeof(ch));
	for (size_t i = 0; i < HOLE; i++)
		ch.data[i] = (unsigned char)(i * 13 + 5);
	ret = ftruncate(fd, FILESZ) || pwrite(fd, ch.data, HOLE, HOLE_OFF) != HOLE ? -EIO : 0;
	close(fd);
	if (ret)
		return ret;

	mrl_ctx *sctx = NULL, *cctx = NULL;
	mrl_ep *sep = NULL;
	void *map = NULL;
	mrl_mr_t mr = 0, lw = 0, lr = 0;
	struct stream s = {0};
	struct mrl_ctx_opts o = {.size = sizeof(o), .provider = "tcp;ofi_rxm", .relock_ms = 5};
	struct mrl_ep_opts eo = {.size = sizeof(eo), .flags = MRL_EP_AUTO_PROGRESS};
	uint16_t port;
	s.wbuf = mmap(NULL, 2 * SLOTS * BLK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	s.rbuf = s.wbuf + SLOTS * BLK;
	if ((ret = mrl_ctx_create(&o, &sctx)) || (ret = mrl_ctx_create(&o, &cctx)) ||
	    (ret = mrl_file_map(sctx, path, 0, FILESZ, PROT_READ | PROT_WRITE, &map)) ||
	    (ret = mrl_mr_reg(sctx, map, FILESZ, MRL_ACCESS_REMOTE_READ | MRL_ACCESS_REMOTE_WRITE, NULL, &mr)) ||
	    (ret = mrl_mr_reg(cctx, s.wbuf, SLOTS * BLK, 0, NULL, &lw)) ||
	    (ret = mrl_mr_reg(cctx, s.rbuf, SLOTS * BLK, 0, NULL, &lr)) ||
	    (ret = mrl_ep_create(sctx, &eo, &sep)) || (ret = mrl_ep_create(cctx, NULL, &s.cep)) ||
	    (ret = mrl_ep_listen(sep, "127.0.0.1", 0, &port)))
		goto out;
	struct acc a = {.ep = sep};
	pthread_t th;
	mrl_peer *cpeer;
	pthread_create(&th, NULL, acc_main, &a);
	ret = mrl_ep_connect(s.cep, "127.0.0.1", port, 10000, &cpeer);
	pthread_join(th, NULL);
	if (ret || (ret = a.ret) || (ret = mrl_rmr_open(cpeer, mr, 10000, &s.rmr)))
		goto out;

	printf("== churn: verified 4 KiB write+read-back transfers (%d in flight) while the owner punches and rewrites\n"
	       "   a 64 KiB hole elsewhere in the same MR (ext4, lease watcher, policy restore)\n", SLOTS);
	printf("%8s %8s | %11s %6s | %7s %8s | %8s %7s | %10s %10s\n", "rate/s", "achieved", "transfers/s",
	       "ratio", "failed", "mismatch", "changes", "breaks", "block p50", "block p99");
	json_part("churn");
	struct acc_rate {
		uint64_t transfers, failed, mismatched, changes, errors, breaks, restores, fences, ns;
		uint64_t *blocked;
		size_t nblocked;
	} A[4] = {0};
	double base_rate = 0, rate_val[4] = {0}, achieved[4] = {0};
	uint64_t tot_fail = 0, tot_mis = 0;
	ch.path = path;
	ch.cap = 1u << 16;
	for (int k = 0; k < nr; k++)
		A[k].blocked = calloc(ch.cap, 8);
	for (int r = 0; r < rounds && !ret; r++)
		for (int kk = 0; kk < nr && !ret; kk++) {
			int k = (kk + r) % nr;
			s.transfers = s.failed = s.mismatched = 0;
			ch.changes = ch.errors = 0;
			ch.blocked = A[k].blocked + A[k].nblocked;
			ch.nblocked = 0;
			ch.cap = (1u << 16) - A[k].nblocked;
			ch.rate = rates[k];
			atomic_store(&ch.stop, false);
			atomic_store(&ch.done, false);
			struct mrl_stats st0 = {.size = sizeof(st0)}, st1 = {.size = sizeof(st1)};
			mrl_ctx_stats(sctx, &st0);
			pthread_t ct;
			if (rates[k])
				pthread_create(&ct, NULL, churn_main, &ch);
			uint64_t t0 = now_ns();
			ret = stream_for(&s, dur);
			uint64_t el = now_ns() - t0;
			atomic_store(&ch.stop, true);
			/* the peer keeps answering pauses until the last change has landed:
			 * a silent peer is cut off by design (new key, never told) */
			while (rates[k] && !atomic_load(&ch.done))
				mrl_ep_progress(s.cep);
			if (rates[k])
				pthread_join(ct, NULL);
			mrl_ctx_stats(sctx, &st1);
			A[k].transfers += s.transfers;
			A[k].failed += s.failed;
			A[k].mismatched += s.mismatched;
			A[k].changes += ch.changes;
			A[k].errors += ch.errors;
			A[k].nblocked += ch.nblocked;
			A[k].breaks += st1.breaks - st0.breaks;
			A[k].restores += st1.restores - st0.restores;
			A[k].fences += st1.fences - st0.fences;
			A[k].ns += el;
		}
	for (int k = 0; k < nr && !ret; k++) {
		struct acc_rate *a = &A[k];
		double tps = (double)a->transfers * 1e9 / (double)a->ns;
		rate_val[k] = tps;
		achieved[k] = (double)a->changes * 1e9 / (double)a->ns;
		double b50 = pctl(a->blocked, a->nblocked, 50) / 1e3, b99 = pctl(a->blocked, a->nblocked, 99) / 1e3;
		tot_fail += a->failed + a->errors;
		tot_mis += a->mismatched;
		if (k == 0)
			base_rate = tps;
		printf("%8d %8.0f | %11.0f %6.3f | %7llu %8llu | %8llu %7llu | %8.1fus %8.1fus\n", rates[k], achieved[k],
		       tps, tps / base_rate, (unsigned long long)a->failed, (unsigned long long)a->mismatched,
		       (unsigned long long)a->changes, (unsigned long long)a->breaks, b50, b99);
		json_row("\"rate\": %d, \"achieved_rate\": %.1f, \"seconds\": %.2f, \"transfers\": %llu, "
			 "\"transfers_per_s\": %.1f, \"ratio_vs_none\": %.4f, \"failed\": %llu, \"mismatched_bytes\": %llu, "
			 "\"changes\": %llu, \"change_errors\": %llu, \"breaks_seen\": %llu, \"restores\": %llu, "
			 "\"fences\": %llu, \"owner_blocked_p50_us\": %.1f, \"owner_blocked_p99_us\": %.1f",
			 rates[k], achieved[k], (double)a->ns / 1e9, (unsigned long long)a->transfers, tps, tps / base_rate,
			 (unsigned long long)a->failed, (unsigned long long)a->mismatched, (unsigned long long)a->changes,
			 (unsigned long long)a->errors, (unsigned long long)a->breaks, (unsigned long long)a->restores,
			 (unsigned long long)a->fences, b50, b99);
	}
	for (int k = 0; k < nr; k++)
		free(A[k].blocked);
	json_part_end();
	if (!ret) {
		printf("ratio vs no changes (%.0f/s; %d interleaved slices of %.2f s per rate):", base_rate, rounds,
		       (double)dur / 1e9);
		for (int k = 0; k < nr; k++)
			if (rates[k])
				printf(" %d/s -> %.3f", rates[k], rate_val[k] / base_rate);
		printf("\n");
		char dpath[600];
		snprintf(dpath, sizeof(dpath), "%s/churn.dat", B.outdir);
		FILE *d = fopen(dpath, "w");
		if (d) {
			fprintf(d, "# rate achieved transfers_per_s ratio\n");
			for (int k = 0; k < nr; k++)
				if (rates[k])
					fprintf(d, "%d %.1f %.1f %.4f\n", rates[k], achieved[k], rate_val[k],
						rate_val[k] / base_rate);
			fclose(d);
		}
	}
	if (tot_fail || tot_mis) {
		fail("churn: %llu failed transfers or changes, %llu mismatched bytes (must be 0)",
		     (unsigned long long)tot_fail, (unsigned long long)tot_mis);
		if (!ret)
			ret = -EIO;
	}
out:
	if (s.rmr)
		mrl_rmr_close(s.rmr);
	if (s.cep)
		mrl_ep_destroy(s.cep);
	if (sep)
		mrl_ep_destroy(sep);
	if (cctx)
		mrl_ctx_destroy(cctx);
	if (mr)
		mrl_mr_dereg(sctx, mr);
	if (map)
		mrl_file_unmap(sctx, map, FILESZ);
	if (sctx)
		mrl_ctx_destroy(sctx);
	munmap(s.wbuf, 2 * SLOTS * BLK);
	(void)lw, (void)lr, (void)mr;
	unlink(path);
	rmdir(dir);
	return ret;
}
