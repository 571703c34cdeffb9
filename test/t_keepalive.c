/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Keep-alive on the control channel, on loopback, with the other process
 * SIGSTOPped (silent, its sockets still open: no hang-up tells anyone):
 * 1. the owner declares a stopped peer lost and lets go of its holds, so a
 *    break that waits on that peer's ack resolves without a peer timeout;
 * 2. a peer declares a stopped owner lost: operations in flight complete with
 *    -ENOTCONN and MRL_CAUSE_PEER_LOST, the remote MR says why, new posts fail. */
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "helpers.h"

#define MB (1u << 20)
#define KA_MS 200
#define KA_TIMEOUT_MS 2000

static void xwrite(int fd, const void *b, size_t n)
{
	if (write(fd, b, n) != (ssize_t)n)
		_exit(3);
}

static int xread(int fd, void *b, size_t n)
{
	return read(fd, b, n) == (ssize_t)n ? 0 : -1;
}

/* The application is told: one MRL_EVENT_PEER_LOST naming the peer's
 * handle (mr_context, no MR), cause peer-lost. */
static void peer_lost_told(mrl_ctx *ctx, mrl_peer *peer, const char *who)
{
	struct mrl_event ev = {0};
	int r = t_wait_event(ctx, MRL_EVENT_PEER_LOST, 0, T_HANG_MS, &ev);
	printf("%s: event %s, cause %s, mr %#llx, peer %s\n", who, r ? "none" : mrl_event_str(ev.type),
	       mrl_cause_str(ev.cause), (unsigned long long)ev.mr, ev.mr_context == peer ? "ours" : "other");
	CHECK(r == 0, "%s is told the peer was lost (MRL_EVENT_PEER_LOST)", who);
	CHECK(ev.mr_context == peer && ev.mr == 0 && ev.cause == MRL_CAUSE_PEER_LOST,
	      "%s: the event names the peer's handle, no MR, cause peer-lost (%s)", who, mrl_cause_str(ev.cause));
}

static mrl_ep *ka_ep(mrl_ctx *ctx, unsigned flags)
{
	struct mrl_ep_opts eo = {.size = sizeof(eo), .flags = flags, .ka_ms = KA_MS,
				 .ka_timeout_ms = KA_TIMEOUT_MS};
	mrl_ep *ep;
	REQUIRE(mrl_ep_create(ctx, &eo, &ep) == 0, "endpoint with keep-alive");
	return ep;
}

/* child of part 1: a peer that opens every MR, says so, and waits */
static void peer_child(int rfd, int wfd)
{
	uint16_t port;
	if (xread(rfd, &port, sizeof(port)))
		_exit(2);
	mrl_ctx *ctx = t_ctx("tcp;ofi_rxm", T_HANG_MS);
	struct mrl_ep_opts eo = {.size = sizeof(eo), .flags = MRL_EP_AUTO_PROGRESS};
	mrl_ep *ep;
	mrl_peer *peer;
	mrl_mr_t id;
	mrl_rmr *r;
	if (mrl_ep_create(ctx, &eo, &ep) || mrl_ep_connect(ep, "127.0.0.1", port, T_HANG_MS, &peer) ||
	    mrl_peer_list(peer, &id, 1, T_HANG_MS) != 1 || mrl_rmr_open(peer, id, T_HANG_MS, &r))
		_exit(4);
	xwrite(wfd, "R", 1);
	for (;;)
		pause();
}

static void owner_loses_peer(void)
{
	int to[2], from[2];
	REQUIRE(pipe(to) == 0 && pipe(from) == 0, "pipes");
	pid_t child = fork();
	REQUIRE(child >= 0, "fork");
	if (child == 0) {
		close(to[1]);
		close(from[0]);
		peer_child(to[0], from[1]);
	}
	close(to[0]);
	close(from[1]);
	/* a deadline the test never reaches: only the keep-alive can end the wait */
	mrl_ctx *ctx = t_ctx("tcp;ofi_rxm", T_HANG_MS);
	mrl_ep *ep = ka_ep(ctx, MRL_EP_AUTO_PROGRESS);
	char dir[256], path[300];
	t_scratch("tmpfs", dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/f", dir);
	t_make_file(path, MB);
	void *fp;
	REQUIRE(mrl_file_map(ctx, path, 0, MB, PROT_READ | PROT_WRITE, &fp) == 0, "map");
	mrl_mr_t mr;
	REQUIRE(mrl_mr_reg(ctx, fp, MB, MRL_ACCESS_REMOTE_READ | MRL_ACCESS_REMOTE_WRITE, NULL, &mr) == 0,
		"register the file MR");
	uint16_t port;
	REQUIRE(mrl_ep_listen(ep, "127.0.0.1", 0, &port) == 0, "listen");
	xwrite(to[1], &port, sizeof(port));
	mrl_peer *peer;
	REQUIRE(mrl_ep_accept(ep, T_HANG_MS, &peer) == 0, "accept");
	char c;
	REQUIRE(xread(from[0], &c, 1) == 0, "the peer holds the MR");
	kill(child, SIGSTOP);

	/* another process changes the file: the break waits for the stopped
	 * peer's ack until the keep-alive gives up on it */
	pid_t pid = t_sh_bg("fallocate --punch-hole -o 0 -l 65536 %s", path);
	int st = t_wait_status(pid);
	CHECK(st == 0, "the punch went through (status %d)", st);
	struct mrl_stats s = {.size = sizeof(s)};
	for (uint64_t hang = t_now_ns() + T_HANG_MS * 1000000ull; t_now_ns() < hang; usleep(10000)) {
		mrl_ctx_stats(ctx, &s);
		if (s.breaks && s.restores + s.fences >= s.breaks)
			break;
	}
	printf("breaks %llu restores %llu fences %llu peer_timeouts %llu\n", (unsigned long long)s.breaks,
	       (unsigned long long)s.restores, (unsigned long long)s.fences,
	       (unsigned long long)s.peer_timeouts);
	CHECK(s.breaks > 0 && s.restores >= s.breaks, "the break resolved: the lost peer's hold was let go");
	CHECK(s.peer_timeouts == 0 && s.fences == 0, "not by a pause timeout or a fence");
	peer_lost_told(ctx, peer, "the owner");
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	mrl_ep_destroy(ep);
	struct mrl_event ev;
	int more = 0;
	while (mrl_event_get(ctx, &ev) == 0) {
		more += ev.type == MRL_EVENT_PEER_LOST;
		mrl_event_ack(ctx, &ev);
	}
	CHECK(more == 0, "the owner: told once, and not again as its endpoint goes (%d more)", more);
	mrl_mr_dereg(ctx, mr);
	mrl_file_unmap(ctx, fp, MB);
	mrl_ctx_destroy(ctx);
	unlink(path);
	rmdir(dir);
}

/* child of part 2: an owner of one anonymous MR that serves until killed */
static void owner_child(int wfd, size_t len)
{
	mrl_ctx *ctx = t_ctx("tcp;ofi_rxm", T_HANG_MS);
	struct mrl_ep_opts eo = {.size = sizeof(eo), .flags = MRL_EP_AUTO_PROGRESS};
	mrl_ep *ep;
	mrl_peer *peer;
	mrl_mr_t mr;
	uint16_t port;
	void *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED || mrl_ep_create(ctx, &eo, &ep) ||
	    mrl_mr_reg(ctx, mem, len, MRL_ACCESS_REMOTE_READ | MRL_ACCESS_REMOTE_WRITE, NULL, &mr) ||
	    mrl_ep_listen(ep, "127.0.0.1", 0, &port))
		_exit(4);
	xwrite(wfd, &port, sizeof(port));
	if (mrl_ep_accept(ep, T_HANG_MS, &peer))
		_exit(5);
	for (;;)
		pause();
}

static void peer_loses_owner(void)
{
	const size_t len = 64 * MB, blk = MB;
	int from[2];
	REQUIRE(pipe(from) == 0, "pipe");
	pid_t child = fork();
	REQUIRE(child >= 0, "fork");
	if (child == 0) {
		close(from[0]);
		owner_child(from[1], len);
	}
	close(from[1]);
	uint16_t port;
	REQUIRE(xread(from[0], &port, sizeof(port)) == 0, "the owner listens");
	mrl_ctx *ctx = t_ctx("tcp;ofi_rxm", T_HANG_MS);
	mrl_ep *ep = ka_ep(ctx, 0); /* manual progress: the check runs in mrl_ep_poll */
	mrl_peer *peer;
	mrl_mr_t id;
	mrl_rmr *r;
	REQUIRE(mrl_ep_connect(ep, "127.0.0.1", port, T_HANG_MS, &peer) == 0, "connect");
	REQUIRE(mrl_peer_list(peer, &id, 1, T_HANG_MS) == 1, "list");
	REQUIRE(mrl_rmr_open(peer, id, T_HANG_MS, &r) == 0, "open");
	char *buf = malloc(blk);
	memset(buf, 7, blk);
	kill(child, SIGSTOP);
	/* more than the sockets' buffers take: most of it stays in flight */
	int posted = 0, done = 0, lost = 0, other = 0;
	for (size_t off = 0; off < len; off += blk)
		if (mrl_write(r, off, buf, blk, (void *)(uintptr_t)(off + 1)) == 0)
			posted++;
	CHECK(posted > 0, "writes posted to the stopped owner (%d)", posted);
	struct mrl_rmr_info ri = {.size = sizeof(ri)};
	uint64_t hang = t_now_ns() + T_HANG_MS * 1000000ull;
	while (done < posted && t_now_ns() < hang) {
		struct mrl_completion c[16];
		int n = mrl_ep_poll(ep, c, 16);
		for (int i = 0; i < n; i++) {
			done++;
			if (c[i].status == -ENOTCONN && c[i].cause == MRL_CAUSE_PEER_LOST)
				lost++;
			else if (c[i].status)
				other++;
		}
		if (!n)
			usleep(1000);
	}
	mrl_rmr_query(r, &ri);
	printf("posted %d, completed %d, lost %d, other failures %d; state %s cause %s\n", posted, done,
	       lost, other, mrl_state_str(ri.state), mrl_cause_str(ri.cause));
	CHECK(done == posted, "every operation completed: nothing hangs");
	CHECK(lost > 0 && other == 0, "operations in flight failed with -ENOTCONN and cause peer-lost");
	CHECK(ri.state == MRL_STATE_FENCED && ri.cause == MRL_CAUSE_PEER_LOST,
	      "mrl_rmr_query says why: fenced, peer-lost");
	CHECK(mrl_write(r, 0, buf, blk, NULL) == -ENOTCONN, "a new write is refused: not connected");
	peer_lost_told(ctx, peer, "the peer");
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	mrl_rmr_close(r);
	mrl_ep_destroy(ep);
	mrl_ctx_destroy(ctx);
	free(buf);
}

int main(void)
{
	owner_loses_peer();
	peer_loses_owner();
	return t_done("t_keepalive");
}
