/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Silent bootstrap connections (a port scan) cost the owner nothing: with
 * idle TCP connections open on its port, a real peer connects and streams,
 * the owner answers a NOTIFY break in time (not fenced), and once the idle
 * handshakes pass their deadline they are dropped with nothing left behind. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include "ep_int.h"
#include "helpers.h"

#define MB (1u << 20)
#define NIDLE 5

struct peer_arg {
	uint16_t port;
	mrl_mr_t mr;
	atomic_bool stop;
	atomic_bool connected;
	int ret, posted, done, failed;
};

static void *peer_main(void *a)
{
	struct peer_arg *x = a;
	mrl_ctx *ctx = t_ctx("tcp;ofi_rxm", 10000);
	mrl_ep *ep;
	mrl_peer *peer;
	mrl_rmr *r = NULL;
	static char buf[8192];
	memset(buf, 0x3c, sizeof(buf));
	x->ret = mrl_ep_create(ctx, NULL, &ep);
	if (!x->ret)
		x->ret = mrl_ep_connect(ep, "127.0.0.1", x->port, T_HANG_MS, &peer);
	if (!x->ret)
		x->ret = mrl_rmr_open(peer, x->mr, T_HANG_MS, &r);
	atomic_store(&x->connected, true);
	struct mrl_completion c[8];
	while (!x->ret && (!atomic_load(&x->stop) || x->done < x->posted)) {
		if (!atomic_load(&x->stop) && x->posted - x->done < 4 &&
		    mrl_write(r, (uint64_t)(x->posted % 64) * 8192, buf, sizeof(buf), NULL) == 0)
			x->posted++;
		int n = mrl_ep_poll(ep, c, 8);
		for (int i = 0; i < n; i++) {
			x->done++;
			x->failed += c[i].status != 0;
		}
		if (n <= 0)
			usleep(200);
	}
	if (r)
		mrl_rmr_close(r);
	mrl_ep_destroy(ep);
	mrl_ctx_destroy(ctx);
	return NULL;
}

static int idle_connect(uint16_t port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	REQUIRE(s >= 0 && connect(s, (struct sockaddr *)&sa, sizeof(sa)) == 0, "idle connection");
	return s;
}

int main(void)
{
	char dir[256], path[300];
	t_scratch("tmpfs", dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/f", dir);
	t_make_file(path, 2 * MB);

	/* the lease watcher: a punch by another process is a break the owner answers */
	mrl_ctx *sctx = t_ctx_flags("tcp;ofi_rxm", 10000, MRL_CTX_NO_FANOTIFY);
	void *p;
	REQUIRE(mrl_file_map(sctx, path, 0, 2 * MB, PROT_READ | PROT_WRITE, &p) == 0, "map");
	/* a deadline a busy machine cannot miss, shorter than what the idle
	 * connections would have cost (NIDLE x 5 s) */
	struct mrl_reg_opts ro = {.size = sizeof(ro), .policy = MRL_POLICY_NOTIFY, .deadline_ms = 10000};
	mrl_mr_t mr;
	REQUIRE(mrl_mr_reg(sctx, p, 2 * MB, MRL_ACCESS_REMOTE_READ | MRL_ACCESS_REMOTE_WRITE, &ro, &mr) == 0,
		"register");
	mrl_ep *sep;
	struct mrl_ep_opts eo = {.size = sizeof(eo), .flags = MRL_EP_AUTO_PROGRESS};
	REQUIRE(mrl_ep_create(sctx, &eo, &sep) == 0, "owner ep");
	uint16_t port;
	REQUIRE(mrl_ep_listen(sep, "127.0.0.1", 0, &port) == 0, "listen");

	int idle[NIDLE];
	for (int i = 0; i < NIDLE; i++)
		idle[i] = idle_connect(port);

	/* the owner's loop, as `mrlease serve` runs it: accept without waiting,
	 * answer breaks; the peer connects and the break comes while the idle
	 * connections are there */
	struct peer_arg pa = {.port = port, .mr = mr};
	pthread_t th;
	pthread_create(&th, NULL, peer_main, &pa);
	pid_t punch = -1;
	mrl_peer *speer = NULL;
	int breaks = 0, fences = 0, answered_fail = 0, accepted = 0;
	bool punched = false;
	uint64_t hang = t_now_ns() + 3ull * T_HANG_MS * 1000000ull;
	while (t_now_ns() < hang) {
		mrl_peer *np;
		if (mrl_ep_accept(sep, 0, &np) == 0) {
			accepted++;
			speer = np;
		}
		if (atomic_load(&pa.connected) && punch < 0) {
			CHECK(mrl_ep_boot_pending(sep) > 0, "the idle connections are still pending");
			punch = t_sh_bg("fallocate --punch-hole -o 65536 -l 4096 %s", path);
		}
		struct pollfd pf = {.fd = mrl_event_fd(sctx), .events = POLLIN};
		poll(&pf, 1, 20);
		struct mrl_event ev;
		while (mrl_event_get(sctx, &ev) == 0) {
			if (ev.mr == mr && ev.type == MRL_EVENT_BREAK) {
				breaks++;
				answered_fail += mrl_mr_restore(sctx, mr) != 0;
			}
			if (ev.mr == mr && ev.type == MRL_EVENT_FENCED)
				fences++;
			mrl_event_ack(sctx, &ev);
		}
		if (punch > 0 && !punched) {
			int st;
			if (waitpid(punch, &st, WNOHANG) == punch) {
				punched = true;
				CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the punch went through");
			}
		}
		if (punched && breaks && t_query(sctx, mr).state == MRL_STATE_ACTIVE)
			break;
		if (atomic_load(&pa.connected) && pa.ret) /* ret is written before connected */
			break;
	}
	REQUIRE(pa.ret == 0, "the real peer connected and opened the MR (%d)", pa.ret);
	CHECK(accepted == 1 && speer, "one peer accepted");
	CHECK(punched, "the breaker finished");
	CHECK(breaks >= 1 && answered_fail == 0, "the break reached the owner and was answered");
	struct mrl_mr_info in = t_query(sctx, mr);
	CHECK(fences == 0 && in.state == MRL_STATE_ACTIVE && in.fences == 0,
	      "not fenced (state %u, cause %s)", in.state, mrl_cause_str(in.cause));
	atomic_store(&pa.stop, true);
	pthread_join(th, NULL);
	CHECK(pa.posted > 0 && pa.failed == 0, "the peer streamed: %d posted, %d failed", pa.posted,
	      pa.failed);

	/* the idle handshakes pass their deadline and are dropped: each costs
	 * no peer entry */
	for (uint64_t until = t_now_ns() + T_HANG_MS * 1000000ull;
	     mrl_ep_boot_pending(sep) && t_now_ns() < until;) {
		mrl_peer *np;
		CHECK(mrl_ep_accept(sep, 100, &np) == -ETIMEDOUT, "nothing else accepted");
	}
	CHECK(mrl_ep_boot_pending(sep) == 0, "idle handshakes dropped");
	pthread_mutex_lock(&sep->lock);
	uint32_t live = 0;
	for (uint32_t i = 0; i < sep->npeers; i++)
		live += sep->peers[i] != NULL;
	pthread_mutex_unlock(&sep->lock);
	CHECK(live == 1, "one peer entry (the real peer), got %u", live);
	for (int i = 0; i < NIDLE; i++) {
		char b;
		CHECK(recv(idle[i], &b, 1, 0) == 0, "idle connection %d closed by the owner", i);
		close(idle[i]);
	}

	mrl_ep_destroy(sep);
	mrl_mr_dereg(sctx, mr);
	mrl_file_unmap(sctx, p, 2 * MB);
	mrl_ctx_destroy(sctx);
	unlink(path);
	rmdir(dir);
	return t_done("t_boot_silent");
}
