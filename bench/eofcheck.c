/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The owner's size check (issue 13; src/sigbus.c mrl_sb_precheck): before
 * its endpoint drives the provider, the owner fstat()s each file whose MRs
 * another process can cut without being seen first ("at risk": no lease,
 * no fanotify), so that what lies past a new end goes to scratch pages
 * before tcp copies into or out of it. What it costs, side by side in the
 * same run:
 *  - one call, on an at-risk file with 1 and with 16 MRs (one fstat: the
 *    MRs share it), against the call switched off (mrl_sb_test_no_precheck);
 *  - 4 KiB RMA writes and reads at depth 16 from a peer to an at-risk file
 *    MR (tcp;ofi_rxm on loopback, the owner's progress in its own thread),
 *    check on against check off, interleaved blocks;
 *  - a leased file (no other opener): the check stays off (files looked at
 *    per progress call: 0).
 * The file is on tmpfs (no fanotify there); another process holds it open
 * for the at-risk half. */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"

/* library internals (linked statically) */
void mrl_sb_precheck(mrl_ctx *ctx);
extern _Atomic uint64_t mrl_sb_checks;
extern _Atomic bool mrl_sb_test_no_precheck;

#define FILE_LEN (1u << 20)
#define OPLEN 4096
#define QD 16

struct ec {
	mrl_ctx *sctx, *cctx;
	mrl_ep *sep, *cep;
	mrl_peer *cpeer;
	void *fmap;
	mrl_mr_t mr[16];
	int nmr;
	mrl_rmr *rmr;
	char *lbuf;
	atomic_bool stop;
	atomic_uint_fast64_t progress_calls;
};

static void *owner_progress(void *a)
{
	struct ec *e = a;
	while (!atomic_load(&e->stop)) {
		mrl_ep_progress(e->sep);
		atomic_fetch_add(&e->progress_calls, 1);
	}
	return NULL;
}

static int ec_open(struct ec *e, const char *path, int nmr)
{
	int ret;
	memset(e, 0, sizeof(*e));
	struct mrl_ctx_opts o = {.size = sizeof(o), .provider = "tcp;ofi_rxm"};
	if ((ret = mrl_ctx_create(&o, &e->sctx)) || (ret = mrl_ctx_create(&o, &e->cctx)))
		return ret;
	if ((ret = mrl_file_map(e->sctx, path, 0, FILE_LEN, PROT_READ | PROT_WRITE, &e->fmap)))
		return ret;
	e->nmr = nmr;
	size_t each = FILE_LEN / (size_t)nmr;
	for (int i = 0; i < nmr; i++)
		if ((ret = mrl_mr_reg(e->sctx, (char *)e->fmap + (size_t)i * each, each,
				      MRL_ACCESS_REMOTE_READ | MRL_ACCESS_REMOTE_WRITE, NULL, &e->mr[i])))
			return ret;
	e->lbuf = aligned_alloc(4096, QD * OPLEN);
	if (!e->lbuf)
		return -ENOMEM;
	memset(e->lbuf, 0x3c, QD * OPLEN);
	if ((ret = mrl_ep_create(e->sctx, NULL, &e->sep)) || (ret = mrl_ep_create(e->cctx, NULL, &e->cep)))
		return ret;
	uint16_t port;
	if ((ret = mrl_ep_listen(e->sep, "127.0.0.1", 0, &port)))
		return ret;
	struct acc a = {.ep = e->sep};
	pthread_t th, pt;
	pthread_create(&th, NULL, acc_main, &a);
	ret = mrl_ep_connect(e->cep, "127.0.0.1", port, 10000, &e->cpeer);
	pthread_join(th, NULL);
	if (ret || a.ret)
		return ret ? ret : a.ret;
	atomic_store(&e->stop, false);
	pthread_create(&pt, NULL, owner_progress, e);
	ret = mrl_rmr_open(e->cpeer, e->mr[0], 10000, &e->rmr);
	atomic_store(&e->stop, true);
	pthread_join(pt, NULL);
	return ret;
}

static void ec_close(struct ec *e)
{
	if (e->rmr)
		mrl_rmr_close(e->rmr);
	if (e->cep)
		mrl_ep_destroy(e->cep);
	if (e->sep)
		mrl_ep_destroy(e->sep);
	for (int i = 0; i < e->nmr; i++)
		if (e->mr[i])
			mrl_mr_dereg(e->sctx, e->mr[i]);
	if (e->fmap)
		mrl_file_unmap(e->sctx, e->fmap, FILE_LEN);
	if (e->cctx)
		mrl_ctx_destroy(e->cctx);
	if (e->sctx)
		mrl_ctx_destroy(e->sctx);
	free(e->lbuf);
}

/* ns per mrl_sb_precheck call, n calls */
static double per_call(mrl_ctx *ctx, int n)
{
	uint64_t t0 = now_ns();
	for (int i = 0; i < n; i++)
		mrl_sb_precheck(ctx);
	return (double)(now_ns() - t0) / n;
}

/* ops completed in ms milliseconds at depth QD (reads if rd) */
static uint64_t stream(struct ec *e, bool rd, unsigned ms)
{
	struct mrl_completion c[QD];
	uint64_t done = 0, until = now_ns() + ms * 1000000ull;
	int inflight = 0, n = 0;
	size_t mrlen = FILE_LEN / (size_t)e->nmr;
	while (now_ns() < until || inflight) {
		while (now_ns() < until && inflight < QD) {
			uint64_t off = (uint64_t)(n % (int)(mrlen / OPLEN)) * OPLEN;
			char *b = e->lbuf + (size_t)(n % QD) * OPLEN;
			int r = rd ? mrl_read(e->rmr, off, b, OPLEN, NULL) : mrl_write(e->rmr, off, b, OPLEN, NULL);
			if (r) {
				fail("eofcheck: post: %s", mrl_strerror(r));
				return done;
			}
			inflight++, n++;
		}
		int got = mrl_ep_poll(e->cep, c, QD);
		for (int k = 0; k < got; k++) {
			if (c[k].status)
				fail("eofcheck: an op failed: %s", mrl_strerror(c[k].status));
			done++;
		}
		inflight -= got > 0 ? got : 0;
	}
	return done;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_d);
	return v[n / 2];
}

/* Throughput with the check on and off, in interleaved blocks; on/off ratio
 * of the medians. */
static void side_by_side(struct ec *e, const char *label)
{
	int blocks = B.smoke ? 2 : 8;
	unsigned ms = B.smoke ? 50 : 400;
	pthread_t pt;
	atomic_store(&e->stop, false);
	pthread_create(&pt, NULL, owner_progress, e);
	for (int rd = 0; rd < 2; rd++) {
		double on[8], off[8], calls = 0, checks = 0;
		for (int b = 0; b < blocks; b++) {
			mrl_sb_test_no_precheck = false;
			uint64_t checks0 = mrl_sb_checks, calls0 = atomic_load(&e->progress_calls);
			on[b] = (double)stream(e, rd, ms) * 1000.0 / ms;
			calls += (double)(atomic_load(&e->progress_calls) - calls0);
			checks += (double)(mrl_sb_checks - checks0);
			mrl_sb_test_no_precheck = true;
			off[b] = (double)stream(e, rd, ms) * 1000.0 / ms;
		}
		mrl_sb_test_no_precheck = false;
		double mon = median(on, blocks), moff = median(off, blocks);
		printf("  %-22s %-5s check on %9.0f ops/s, off %9.0f ops/s: x%.3f; files looked at per owner "
		       "progress call %.2f\n", label, rd ? "read" : "write", mon, moff, moff > 0 ? mon / moff : 0,
		       calls > 0 ? checks / calls : 0);
		json_row("\"file\": \"%s\", \"op\": \"%s\", \"ops_s_check\": %.0f, \"ops_s_nocheck\": %.0f, "
			 "\"ratio\": %.4f, \"checks_per_progress\": %.3f",
			 label, rd ? "read" : "write", mon, moff, moff > 0 ? mon / moff : 0,
			 calls > 0 ? checks / calls : 0);
	}
	atomic_store(&e->stop, true);
	pthread_join(pt, NULL);
}

int bench_eofcheck(void)
{
	json_part("eofcheck");
	char dir[] = "/dev/shm/mrl-bench-eof.XXXXXX", path[64];
	if (!mkdtemp(dir)) {
		fail("eofcheck: mkdtemp: %s", strerror(errno));
		json_part_end();
		return 0;
	}
	snprintf(path, sizeof(path), "%s/f", dir);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || ftruncate(fd, FILE_LEN) < 0) {
		fail("eofcheck: %s: %s", path, strerror(errno));
		json_part_end();
		return 0;
	}
	close(fd);
	printf("eofcheck: the owner's size check before each progress turn (tmpfs file, %u KiB ops, depth %d)\n",
	       OPLEN / 1024, QD);
	/* another opener, from before registration: no lease, the file is at risk */
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "exec sleep 600 < %s", path);
	char *argv[] = {"sh", "-c", cmd, NULL};
	extern char **environ;
	pid_t holder;
	if (posix_spawnp(&holder, "sh", NULL, NULL, argv, environ)) {
		fail("eofcheck: cannot start a process holding %s", path);
		json_part_end();
		return 0;
	}
	usleep(200000); /* it opens before the owner registers (not a measurement) */
	int n = B.smoke ? 1000 : 200000;
	for (int nmr = 1; nmr <= 16; nmr *= 16) {
		struct ec e;
		int ret = ec_open(&e, path, nmr);
		if (ret) {
			fail("eofcheck: setup with %d MRs: %s", nmr, mrl_strerror(ret));
			ec_close(&e);
			break;
		}
		struct mrl_mr_info mi = {.size = sizeof(mi)};
		if (mrl_mr_query(e.sctx, e.mr[0], &mi) == 0 && mi.lease_held)
			printf("  (the file is leased: the holder was not in time; the check is off)\n");
		mrl_sb_test_no_precheck = false;
		uint64_t c0 = mrl_sb_checks;
		double on = per_call(e.sctx, n);
		double looked = (double)(mrl_sb_checks - c0) / n;
		mrl_sb_test_no_precheck = true;
		double off = per_call(e.sctx, n);
		mrl_sb_test_no_precheck = false;
		/* an idle progress call of the owner's endpoint, with and without */
		double pon[5], poff[5];
		int pn = n / 10 > 0 ? n / 10 : 1;
		for (int b = 0; b < 5; b++) {
			uint64_t t0 = now_ns();
			for (int i = 0; i < pn; i++)
				mrl_ep_progress(e.sep);
			pon[b] = (double)(now_ns() - t0) / pn;
			mrl_sb_test_no_precheck = true;
			t0 = now_ns();
			for (int i = 0; i < pn; i++)
				mrl_ep_progress(e.sep);
			poff[b] = (double)(now_ns() - t0) / pn;
			mrl_sb_test_no_precheck = false;
		}
		double mpon = median(pon, 5), mpoff = median(poff, 5);
		printf("  at risk, %2d MR(s): one check %.0f ns (files looked at %.2f), switched off %.1f ns; an idle "
		       "progress call %.0f ns with it, %.0f ns without\n", nmr, on, looked, off, mpon, mpoff);
		json_row("\"file\": \"at-risk\", \"mrs\": %d, \"ns_per_check\": %.1f, \"ns_off\": %.1f, "
			 "\"files_per_check\": %.2f, \"ns_progress_check\": %.1f, \"ns_progress_nocheck\": %.1f",
			 nmr, on, off, looked, mpon, mpoff);
		if (nmr == 1)
			side_by_side(&e, "at risk (no lease)");
		ec_close(&e);
	}
	kill(holder, SIGKILL);
	waitpid(holder, NULL, 0);
	/* no other opener: the library leases the file, the check stays off */
	struct ec e;
	int ret = ec_open(&e, path, 1);
	if (!ret) {
		struct mrl_mr_info mi = {.size = sizeof(mi)};
		for (uint64_t hang = now_ns() + 10000000000ull; now_ns() < hang; usleep(10000))
			if (mrl_mr_query(e.sctx, e.mr[0], &mi) == 0 && mi.lease_held)
				break;
		usleep(120000); /* the monitor works the MR's risk out again (every 50 ms at most) */
		if (!mi.lease_held)
			printf("  (no lease taken here: the leased case is not measured)\n");
		else
			side_by_side(&e, "leased");
	} else {
		fail("eofcheck: leased setup: %s", mrl_strerror(ret));
	}
	ec_close(&e);
	unlink(path);
	rmdir(dir);
	json_part_end();
	return 0;
}
