/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The pause protocol across processes over tcp;ofi_rxm: a well-behaved peer
 * streams verified RMA through a hole punch without a failed transfer; a peer
 * that stops answering is cut off by the deadline (the MR it held comes back
 * under a new key, its operations fail with the cause) and the breaker is let
 * go by that deadline, not the kernel's. */
#include <sys/mman.h>
#include <sys/socket.h>

#include "helpers.h"

#define MB (1u << 20)

static long lease_break_time(void)
{
	long secs = 45;
	FILE *f = fopen("/proc/sys/fs/lease-break-time", "re");
	if (f) {
		if (fscanf(f, "%ld", &secs) != 1)
			secs = 45;
		fclose(f);
	}
	return secs;
}

static uint16_t read_port(int fd)
{
	uint16_t port = 0;
	if (read(fd, &port, sizeof(port)) != sizeof(port))
		_exit(3);
	return port;
}

/* A peer that opens MR id, then goes silent (no progress) until the parent
 * says the breaker got through, i.e. the deadline cut it off. */
static int silent_peer(int pfd, mrl_mr_t id)
{
	uint16_t port = read_port(pfd);
	mrl_ctx *ctx;
	mrl_ep *ep;
	mrl_peer *peer;
	mrl_rmr *r;
	struct mrl_ctx_opts o = {.size = sizeof(o), .flags = MRL_CTX_NO_FANOTIFY};
	char go;
	/* open only once the owner's accept has returned: a request sent while
	 * the owner is still inside its handshake is dropped (src/ep.c) */
	if (mrl_ctx_create(&o, &ctx) || mrl_ep_create(ctx, NULL, &ep) ||
	    mrl_ep_connect(ep, "127.0.0.1", port, T_HANG_MS, &peer) || read(pfd, &go, 1) != 1 ||
	    mrl_rmr_open(peer, id, T_HANG_MS, &r)) {
		fprintf(stderr, "silent peer setup: %s\n", mrl_last_error());
		return 10;
	}
	if (write(pfd, "k", 1) != 1) /* tell the parent we hold the MR */
		return 11;
	if (read(pfd, &go, 1) != 1) /* the owner pauses us now; we do not answer */
		return 14;
	struct mrl_completion c[4];
	struct mrl_rmr_info ri = {.size = sizeof(ri)};
	for (uint64_t until = t_now_ns() + T_HANG_MS * 1000000ull; t_now_ns() < until;) {
		mrl_ep_poll(ep, c, 4);
		mrl_rmr_query(r, &ri);
		if (ri.state == MRL_STATE_FENCED)
			break;
		usleep(1000);
	}
	if (ri.state != MRL_STATE_FENCED || ri.cause != MRL_CAUSE_PEER_TIMEOUT) {
		fprintf(stderr, "silent peer: state %s cause %s, expected fenced/peer-timeout\n",
			mrl_state_str(ri.state), mrl_cause_str(ri.cause));
		return 12;
	}
	char b[64] = {0};
	int ret = mrl_write(r, 0, b, sizeof(b), NULL);
	if (ret != -EKEYREVOKED) {
		fprintf(stderr, "silent peer: write after cut-off returned %d\n", ret);
		return 13;
	}
	mrl_ep_destroy(ep);
	mrl_ctx_destroy(ctx);
	return 0;
}

int main(int argc, char **argv)
{
	char dir[256], path[300], bin[512];
	(void)argc;
	snprintf(bin, sizeof(bin), "%s", argv[0]);
	char *slash = strrchr(bin, '/');
	if (slash && slash - bin >= 5 && !strncmp(slash - 5, "/test", 5))
		strcpy(slash - 5, "/mrlease");
	t_scratch("ext4", dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/f", dir);
	t_make_file(path, 4 * MB);

	/* children first: they must not inherit the server's threads */
	int p1[2];
	REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, p1) == 0, "socketpair");
	pid_t silent = fork();
	if (silent == 0) {
		close(p1[0]);
		mrl_mr_t id;
		if (read(p1[1], &id, sizeof(id)) != sizeof(id))
			_exit(3);
		_exit(silent_peer(p1[1], id));
	}
	close(p1[1]);

	/* a deadline the well-behaved peer cannot miss on a busy machine; the
	 * silent peer's MR gets a short one of its own below */
	struct mrl_ctx_opts o = {.size = sizeof(o), .deadline_ms = 10000, .flags = MRL_CTX_NO_FANOTIFY};
	mrl_ctx *ctx;
	int ret = mrl_ctx_create(&o, &ctx);
	if (ret) {
		kill(silent, SIGKILL);
		t_skip("tcp;ofi_rxm unavailable: %s", mrl_last_error());
	}
	void *p;
	REQUIRE(mrl_file_map(ctx, path, 0, 4 * MB, PROT_READ | PROT_WRITE, &p) == 0, "map");
	mrl_mr_t mr[2];
	for (int i = 0; i < 2; i++)
		REQUIRE(mrl_mr_reg(ctx, (char *)p + i * 2 * MB, 2 * MB,
				   MRL_ACCESS_REMOTE_READ | MRL_ACCESS_REMOTE_WRITE, NULL, &mr[i]) == 0,
			"register %d", i);
	mrl_ep *ep;
	struct mrl_ep_opts eo = {.size = sizeof(eo), .flags = MRL_EP_AUTO_PROGRESS};
	REQUIRE(mrl_ep_create(ctx, &eo, &ep) == 0, "endpoint");
	uint16_t port;
	REQUIRE(mrl_ep_listen(ep, "127.0.0.1", 0, &port) == 0, "listen");

	/* 1. the well-behaved peer: the CLI client streaming verified RMA */
	pid_t good = t_sh_bg("%s client 127.0.0.1 --port %u --seconds 5 > /dev/null", bin, port);
	mrl_peer *peers[2];
	REQUIRE(mrl_ep_accept(ep, T_HANG_MS, &peers[0]) == 0, "accept the streaming client");
	/* punch once the stream is going: its first write has landed */
	int fd0 = open(path, O_RDONLY);
	char *orig = malloc(4 * MB);
	REQUIRE(fd0 >= 0 && orig && pread(fd0, orig, 4 * MB, 0) == 4 * MB, "read the file");
	close(fd0);
	/* through the file, not the mapping: the provider's progress thread
	 * writes the mapping (a device's DMA, as far as this thread knows) */
	bool going = false;
	char *now = malloc(4 * MB);
	fd0 = open(path, O_RDONLY);
	REQUIRE(fd0 >= 0 && now, "reopen the file");
	for (uint64_t until = t_now_ns() + T_HANG_MS * 1000000ull; !going && t_now_ns() < until;) {
		going = pread(fd0, now, 4 * MB, 0) == 4 * MB && memcmp(now, orig, 4 * MB) != 0;
		usleep(1000);
	}
	close(fd0);
	free(now);
	free(orig);
	CHECK(going, "the client streams");
	/* this thread's reads broke the lease (a reader); the punch below is
	 * seen before it lands only once the lease is held again, which on a
	 * busy machine may be after the reads */
	CHECK(t_wait_lease(ctx, mr[0], T_HANG_MS) == 0, "the lease is held again after this thread's reads");
	struct mrl_stats st = {.size = sizeof(st)};
	uint64_t key0 = t_query(ctx, mr[0]).key, key1 = t_query(ctx, mr[1]).key;
	CHECK(t_sh("fallocate --punch-hole -o 4096 -l 8192 %s", path) == 0, "punch under load");
	CHECK(t_wait_state(ctx, mr[0], MRL_STATE_ACTIVE, T_HANG_MS) == 0, "restored after the punch");
	mrl_ctx_stats(ctx, &st);
	CHECK(st.breaks == 1 && st.pauses == 2 && st.peer_timeouts == 0,
	      "one break, both MRs paused, the peer answered (breaks %llu pauses %llu timeouts %llu)",
	      (unsigned long long)st.breaks, (unsigned long long)st.pauses,
	      (unsigned long long)st.peer_timeouts);
	CHECK(t_query(ctx, mr[0]).key == key0, "key kept when every peer answered");
	CHECK(t_wait_status(good) == 0, "the streaming client saw no failed or mismatched transfer");

	/* 2. the silent peer, on MR 1 registered again with a short deadline:
	 * a whole-file break waits for the shortest deadline of the file's MRs */
	REQUIRE(mrl_mr_dereg(ctx, mr[1]) == 0, "deregister MR 1");
	struct mrl_reg_opts ro = {.size = sizeof(ro), .deadline_ms = 700};
	REQUIRE(mrl_mr_reg(ctx, (char *)p + 2 * MB, 2 * MB,
			   MRL_ACCESS_REMOTE_READ | MRL_ACCESS_REMOTE_WRITE, &ro, &mr[1]) == 0,
		"register MR 1 with a 700 ms deadline");
	key1 = t_query(ctx, mr[1]).key;
	if (write(p1[0], &mr[1], sizeof(mr[1])) != sizeof(mr[1]) ||
	    write(p1[0], &port, sizeof(port)) != sizeof(port))
		REQUIRE(0, "talk to the silent peer");
	REQUIRE(mrl_ep_accept(ep, T_HANG_MS, &peers[1]) == 0, "accept the silent peer");
	REQUIRE(write(p1[0], "a", 1) == 1, "tell the silent peer it is accepted");
	char k;
	REQUIRE(read(p1[0], &k, 1) == 1, "silent peer holds the MR");
	uint64_t t0 = t_now_ns();
	CHECK(t_sh("fallocate --punch-hole -o %u -l 4096 %s", 2 * MB, path) == 0, "punch");
	uint64_t held_ms = (t_now_ns() - t0) / 1000000;
	/* let go by our deadline, not by the kernel's lease-break-time (a
	 * bound only a hang can reach, never a measure of speed) */
	CHECK(held_ms < (uint64_t)lease_break_time() * 1000 / 2,
	      "the breaker was not held until the kernel's timeout (%llu ms)", (unsigned long long)held_ms);
	CHECK(write(p1[0], "g", 1) == 1, "tell the silent peer to look");
	CHECK(t_wait_state(ctx, mr[1], MRL_STATE_ACTIVE, T_HANG_MS) == 0, "MR 1 restored for the others");
	mrl_ctx_stats(ctx, &st);
	CHECK(st.peer_timeouts == 1, "the silent peer timed out (%llu)",
	      (unsigned long long)st.peer_timeouts);
	CHECK(t_query(ctx, mr[1]).key != key1, "MR 1 comes back under a new key the silent peer never gets");
	CHECK(t_wait_status(silent) == 0, "the silent peer saw fenced/peer-timeout and -EKEYREVOKED");

	mrl_ep_destroy(ep);
	for (int i = 0; i < 2; i++)
		mrl_mr_dereg(ctx, mr[i]);
	mrl_file_unmap(ctx, p, 4 * MB);
	mrl_ctx_destroy(ctx);
	unlink(path);
	rmdir(dir);
	return t_done("t_pause");
}
