/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* truncate -s SMALLER (coreutils) under a peer, ext4 and tmpfs: the part of
 * each MR past the new end is fenced with cause "truncated", the rest restored;
 * no SIGBUS; an operation held across the pause completes; operations past the
 * end fail cleanly (-EKEYREVOKED) and the peer can ask why. */
#include <pthread.h>
#include <sys/mman.h>

#include "helpers.h"

#define MB (1u << 20)

struct acc_arg {
	mrl_ep *ep;
	mrl_peer *peer;
	int ret;
};

static void *acc_main(void *a)
{
	struct acc_arg *x = a;
	x->ret = mrl_ep_accept(x->ep, T_HANG_MS, &x->peer);
	return NULL;
}

static int drain(mrl_ep *ep, int want, struct mrl_completion *out, int ms)
{
	int got = 0;
	uint64_t until = t_now_ns() + (uint64_t)ms * 1000000ull;
	while (got < want && t_now_ns() < until) {
		int n = mrl_ep_poll(ep, out + got, want - got);
		if (n > 0)
			got += n;
		else
			usleep(100);
	}
	return got;
}

static void run(const char *fs)
{
	char dir[256], path[300];
	t_scratch(fs, dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/f", dir);
	t_make_file(path, 4 * MB);
	printf("-- %s\n", fs);

	/* owner and peer in one process, each with its own context */
	/* a break deadline a busy machine cannot miss: the peer must answer */
	mrl_ctx *sctx = t_ctx("tcp;ofi_rxm", 10000), *cctx = t_ctx("tcp;ofi_rxm", 10000);
	void *p;
	REQUIRE(mrl_file_map(sctx, path, 0, 4 * MB, PROT_READ | PROT_WRITE, &p) == 0, "map");
	mrl_mr_t mr[2];
	for (int i = 0; i < 2; i++)
		REQUIRE(mrl_mr_reg(sctx, (char *)p + i * 2 * MB, 2 * MB,
				   MRL_ACCESS_REMOTE_READ | MRL_ACCESS_REMOTE_WRITE, NULL, &mr[i]) == 0,
			"register");
	mrl_ep *sep, *cep;
	struct mrl_ep_opts eo = {.size = sizeof(eo), .flags = MRL_EP_AUTO_PROGRESS};
	REQUIRE(mrl_ep_create(sctx, &eo, &sep) == 0, "server ep");
	REQUIRE(mrl_ep_create(cctx, NULL, &cep) == 0, "client ep");
	uint16_t port;
	REQUIRE(mrl_ep_listen(sep, "127.0.0.1", 0, &port) == 0, "listen");
	mrl_peer *cpeer;
	/* the bootstrap exchange is symmetric: accept on a thread while we connect */
	struct acc_arg aa = {.ep = sep};
	pthread_t th;
	pthread_create(&th, NULL, acc_main, &aa);
	int cr = mrl_ep_connect(cep, "127.0.0.1", port, T_HANG_MS, &cpeer);
	pthread_join(th, NULL);
	REQUIRE(cr == 0 && aa.ret == 0, "connected (%d, %d)", cr, aa.ret);

	mrl_rmr *r[2];
	for (int i = 0; i < 2; i++)
		REQUIRE(mrl_rmr_open(cpeer, mr[i], T_HANG_MS, &r[i]) == 0, "open remote MR %d", i);
	char buf[8192], rd[8192];
	memset(buf, 0x5a, sizeof(buf));
	struct mrl_completion c[8];
	CHECK(mrl_write(r[1], 2 * MB - 8192, buf, 8192, (void *)1) == 0, "write near the end");
	CHECK(drain(cep, 1, c, T_HANG_MS) == 1 && c[0].status == 0, "completed");

	/* truncate into the middle of MR 1, from another process, with coreutils.
	 * It opens O_NONBLOCK: refused while the lease is held, it retries. It
	 * retries slower than the lease's relock_ms (50 ms) on purpose: however
	 * slow the breaker (a busy machine), it must get in. */
	uint64_t newsize = 3 * MB + 12345;
	pid_t tr = t_sh_bg("for i in $(seq 100); do truncate -s %llu %s 2>/dev/null && exit 0; "
			   "sleep 0.2; done; exit 1", (unsigned long long)newsize, path);
	/* keep the peer progressing so it answers the pause; post as we go */
	int posted = 0, done = 0, failed = 0, st = 0;
	while (waitpid(tr, &st, WNOHANG) == 0) {
		if (posted - done < 4 && mrl_write(r[0], (uint64_t)(posted % 64) * 8192, buf, 8192,
						   (void *)2) == 0)
			posted++;
		int n = mrl_ep_poll(cep, c, 8);
		for (int i = 0; i < n; i++) {
			done++;
			failed += c[i].status != 0;
		}
	}
	REQUIRE(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the truncate got through (status %#x)", st);
	done += drain(cep, posted - done, c, T_HANG_MS);
	CHECK(done == posted && failed == 0, "MR 0 traffic across the break: %d posted, %d done, %d failed",
	      posted, done, failed);
	/* the monitor sees the change in its own time: wait for MR 1 to be
	 * live again and no longer whole (or a hang) */
	struct mrl_mr_info in = t_query(sctx, mr[1]);
	for (uint64_t until = t_now_ns() + T_HANG_MS * 1000000ull;
	     (in.state != MRL_STATE_ACTIVE || in.valid_length == 2 * MB) && t_now_ns() < until;
	     in = t_query(sctx, mr[1]))
		usleep(1000);
	CHECK(in.state == MRL_STATE_ACTIVE, "MR 1 restored (its head): state %u", in.state);
	CHECK(in.valid_length == MB + 12345, "MR 1 valid up to the new end (%llu)",
	      (unsigned long long)in.valid_length);
	CHECK(in.cause == MRL_CAUSE_TRUNCATED, "owner sees cause truncated (%s)", mrl_cause_str(in.cause));

	/* the peer's view: let the resume arrive */
	struct mrl_rmr_info ri = {.size = sizeof(ri)};
	for (uint64_t until = t_now_ns() + T_HANG_MS * 1000000ull; t_now_ns() < until;) {
		mrl_ep_poll(cep, c, 8);
		mrl_rmr_query(r[1], &ri);
		if (ri.state == MRL_STATE_ACTIVE && ri.valid_length != 2 * MB)
			break;
		usleep(1000);
	}
	CHECK(ri.valid_length == MB + 12345 && ri.cause == MRL_CAUSE_TRUNCATED,
	      "peer knows the live length and the cause (%llu, %s)", (unsigned long long)ri.valid_length,
	      mrl_cause_str(ri.cause));
	/* past the end: refused cleanly, no SIGBUS in the owner */
	CHECK(mrl_write(r[1], 2 * MB - 8192, buf, 8192, NULL) == -EKEYREVOKED,
	      "write past the new end refused");
	CHECK(mrl_read(r[1], MB + 12345 - 100, rd, 200, NULL) == -EKEYREVOKED,
	      "read straddling the end refused");
	/* before the end: served, and the bytes reach the file */
	CHECK(mrl_write(r[1], 4096, buf, 8192, (void *)3) == 0, "write before the end");
	CHECK(drain(cep, 1, c, T_HANG_MS) == 1 && c[0].status == 0, "completed");
	CHECK(mrl_read(r[1], 4096, rd, 8192, (void *)4) == 0, "read it back");
	CHECK(drain(cep, 1, c, T_HANG_MS) == 1 && c[0].status == 0 && !memcmp(rd, buf, 8192),
	      "read back what was written");
	int fd = open(path, O_RDONLY);
	CHECK(pread(fd, rd, 8192, 2 * MB + 4096) == 8192 && !memcmp(rd, buf, 8192),
	      "the bytes are in the file");
	close(fd);

	for (int i = 0; i < 2; i++)
		mrl_rmr_close(r[i]);
	mrl_ep_destroy(cep);
	mrl_ep_destroy(sep);
	for (int i = 0; i < 2; i++)
		mrl_mr_dereg(sctx, mr[i]);
	mrl_file_unmap(sctx, p, 4 * MB);
	mrl_ctx_destroy(cctx);
	mrl_ctx_destroy(sctx);
	unlink(path);
	rmdir(dir);
}

int main(void)
{
	run("ext4");
	run("tmpfs");
	return t_done("t_truncate");
}
