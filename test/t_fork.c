/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* fork: a child may not use anything of its parent's. Every public call
 * that takes a library object (context, MR handle, endpoint, peer, remote
 * MR, file mapping, event, io_uring attachment) says -EPERM and why in a
 * forked child, none hangs, and the parent goes on unharmed; the child can
 * make its own context. The mock and tcp registrars pin nothing, so the
 * registered ranges are copied into the child like any other memory. */
#include <liburing.h>
#include <pthread.h>
#include <sys/mman.h>

#include "rig_pair.h"

#define LEN (64u << 10)

static int bad, ncalls;

#define EPERM_OK(call)                                                                      \
	do {                                                                                \
		int r_ = (call);                                                            \
		ncalls++;                                                                   \
		if (r_ != -EPERM || !strstr(mrl_last_error(), "parent")) {                  \
			fprintf(stderr, "child: %s -> %d [%s]\n", #call, r_, mrl_last_error()); \
			bad++;                                                              \
		}                                                                           \
	} while (0)

/* every call on a context (fa: a mapping made by mrl_file_map on it) */
static void ctx_calls(mrl_ctx *ctx, mrl_mr_t mr, struct mrl_event *ev, void *fa, void *spare)
{
	mrl_mr_t m2;
	struct mrl_mr_info in = {.size = sizeof(in)};
	struct mrl_stats st = {.size = sizeof(st)};
	struct mrl_event e2;
	void *a2;
	mrl_ep *ep;
	unsigned idx;
	struct io_uring ring;
	memset(&ring, 0, sizeof(ring));
	EPERM_OK(mrl_ctx_watchers(ctx));
	EPERM_OK(mrl_event_fd(ctx));
	EPERM_OK(mrl_event_get(ctx, &e2));
	EPERM_OK(mrl_event_ack(ctx, ev));
	EPERM_OK(mrl_ctx_stats(ctx, &st));
	EPERM_OK(mrl_mr_reg(ctx, spare, 4096, 0, NULL, &m2));
	EPERM_OK(mrl_mr_query(ctx, mr, &in));
	EPERM_OK(mrl_mr_restore(ctx, mr));
	EPERM_OK(mrl_mr_release(ctx, mr));
	EPERM_OK(mrl_mr_fence(ctx, mr));
	EPERM_OK(mrl_verify(ctx, 0));
	EPERM_OK(mrl_file_map(ctx, "/dev/null", 0, 4096, PROT_READ, &a2));
	EPERM_OK(mrl_file_unmap(ctx, fa ? fa : spare, 4096));
	EPERM_OK(mrl_file_adopt(ctx, 0));
	EPERM_OK(mrl_ep_create(ctx, NULL, &ep));
	EPERM_OK(mrl_uring_attach(ctx, &ring, 4));
	EPERM_OK(mrl_uring_get(ctx, mr, 0, &idx));
	EPERM_OK(mrl_uring_put(ctx, mr));
	EPERM_OK(mrl_uring_detach(ctx));
	EPERM_OK(mrl_mr_dereg(ctx, mr));
}

static void ep_calls(mrl_ep *ep, mrl_peer *peer)
{
	struct mrl_completion c[4];
	mrl_peer *p2;
	mrl_rmr *r2;
	mrl_mr_t ids[4];
	uint16_t port;
	EPERM_OK(mrl_ep_poll(ep, c, 4));
	EPERM_OK(mrl_ep_progress(ep));
	EPERM_OK(mrl_ep_listen(ep, "127.0.0.1", 0, &port));
	EPERM_OK(mrl_ep_accept(ep, 0, &p2));
	EPERM_OK(mrl_ep_connect(ep, "127.0.0.1", 1, 100, &p2));
	EPERM_OK(mrl_peer_list(peer, ids, 4, 100));
	EPERM_OK(mrl_rmr_open(peer, 1, 100, &r2));
}

static void rmr_calls(mrl_rmr *r, char *buf)
{
	struct mrl_rmr_info ri = {.size = sizeof(ri)};
	EPERM_OK(mrl_rmr_query(r, &ri));
	EPERM_OK(mrl_write(r, 0, buf, 64, NULL));
	EPERM_OK(mrl_read(r, 0, buf, 64, NULL));
	EPERM_OK(mrl_rmr_close(r));
}

int main(void)
{
	char dir[256], path[300];
	t_scratch("tmpfs", dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/f", dir);
	t_make_file(path, 1 << 16);

	struct pair p;
	pair_open(&p);
	char *a = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *spare = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *b2 = malloc(LEN);
	memset(a, 1, LEN);
	memset(spare, 2, LEN);
	memset(b2, 3, LEN);
	mrl_mr_t mr, mr2;
	REQUIRE(mrl_mr_reg(p.sctx, a, LEN, MRL_ACCESS_REMOTE_WRITE | MRL_ACCESS_REMOTE_READ, NULL,
			   &mr) == 0, "register");
	REQUIRE(mrl_mr_reg(p.sctx, b2, 4096, 0, NULL, &mr2) == 0, "register a second MR");
	mrl_rmr *rmr;
	REQUIRE(mrl_rmr_open(p.cpeer, mr, 5000, &rmr) == 0, "open the remote MR");
	void *fa;
	REQUIRE(mrl_file_map(p.sctx, path, 0, 4096, PROT_READ | PROT_WRITE, &fa) == 0, "map a file");
	/* an event got but not acked yet: the child tries to ack it */
	REQUIRE(mrl_mr_fence(p.sctx, mr2) == 0, "fence the second MR");
	struct mrl_event ev = {0};
	for (int i = 0; i < 10000; i++) {
		if (mrl_event_get(p.sctx, &ev) != 0) {
			usleep(1000);
			continue;
		}
		if (ev.type == MRL_EVENT_FENCED && ev.mr == mr2)
			break; /* kept unacked */
		mrl_event_ack(p.sctx, &ev);
	}
	REQUIRE(ev.internal && ev.mr == mr2, "an unacked event");

	/* an io_uring context too, when the kernel lets us */
	struct io_uring ring;
	mrl_ctx *uctx = NULL;
	mrl_mr_t umr = 0;
	char *ubuf = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (io_uring_queue_init(4, &ring, 0) == 0) {
		struct mrl_ctx_opts o = {.size = sizeof(o), .provider = "uring"};
		REQUIRE(mrl_ctx_create(&o, &uctx) == 0, "uring context");
		REQUIRE(mrl_uring_attach(uctx, &ring, 4) == 0, "attach");
		REQUIRE(mrl_mr_reg(uctx, ubuf, 4096, 0, NULL, &umr) == 0, "fixed buffer");
	} else {
		fprintf(stderr, "no io_uring here: its calls are checked on the other contexts only\n");
	}

	pid_t c = fork();
	if (c == 0) {
		if (!(a[0] == 1 && a[LEN - 1] == 1 && b2[100] == 3))
			bad += 1000; /* nothing pins here: the registered memory is copied as usual */
		ctx_calls(p.sctx, mr, &ev, fa, spare);
		ctx_calls(p.cctx, mr, &ev, NULL, spare);
		if (uctx)
			ctx_calls(uctx, umr, &ev, NULL, spare);
		ep_calls(p.sep, p.speer);
		ep_calls(p.cep, p.cpeer);
		rmr_calls(rmr, spare);
		EPERM_OK(mrl_ep_destroy(p.sep));
		EPERM_OK(mrl_ep_destroy(p.cep));
		EPERM_OK(mrl_ctx_destroy(p.sctx));
		EPERM_OK(mrl_ctx_destroy(p.cctx));
		if (uctx)
			EPERM_OK(mrl_ctx_destroy(uctx));
		/* the child's own context works */
		mrl_ctx *mine;
		mrl_mr_t m2;
		struct mrl_ctx_opts o = {.size = sizeof(o), .provider = "mock"};
		if (mrl_ctx_create(&o, &mine) || mrl_mr_reg(mine, spare, 4096, 0, NULL, &m2) ||
		    mrl_mr_dereg(mine, m2) || mrl_ctx_destroy(mine))
			bad += 100000;
		/* munmap of the parent's range in the child does not touch the parent's MR */
		munmap(a, LEN);
		fprintf(stderr, "child: %d calls, %d wrong\n", ncalls, bad);
		_exit(bad ? 1 : 0);
	}
	int st = t_wait_child(c, 4 * T_HANG_MS);
	CHECK(st != -2, "no call hangs in the child");
	CHECK(st == 0, "every call in the child says EPERM and why (status %d)", st);

	/* the parent is unharmed: its MR, connection, mapping and event */
	struct mrl_mr_info in = t_query(p.sctx, mr);
	CHECK(in.state == MRL_STATE_ACTIVE && a[100] == 1, "the parent's MR and memory are untouched");
	char msg[64];
	memset(msg, 9, sizeof(msg));
	struct mrl_completion cpl;
	CHECK(mrl_write(rmr, 0, msg, sizeof(msg), NULL) == 0, "the parent's peer still writes");
	CHECK(pair_wait(&p, &cpl, 10000) == 0 && cpl.status == 0, "and it completes");
	CHECK(a[0] == 9, "into the owner's memory");
	CHECK(mrl_event_ack(p.sctx, &ev) == 0, "the parent acks its event");
	CHECK(mrl_file_unmap(p.sctx, fa, 4096) == 0, "and unmaps its file");
	if (uctx) {
		unsigned idx;
		CHECK(mrl_uring_get(uctx, umr, 0, &idx) == 0 && mrl_uring_put(uctx, umr) == 0,
		      "the io_uring MR still works");
		mrl_mr_dereg(uctx, umr);
		mrl_ctx_destroy(uctx);
		io_uring_queue_exit(&ring);
	}
	mrl_rmr_close(rmr);
	mrl_mr_dereg(p.sctx, mr);
	mrl_mr_dereg(p.sctx, mr2);
	pair_close(&p);
	free(b2);
	unlink(path);
	rmdir(dir);
	return t_done("t_fork");
}
