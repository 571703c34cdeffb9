/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* An owner context with an auto-progress endpoint and a peer context in the
 * same process, connected over tcp;ofi_rxm on loopback. */
#ifndef MRL_RIG_PAIR_H
#define MRL_RIG_PAIR_H
#include <pthread.h>
#include <sys/mman.h>

#include "helpers.h"

struct pair {
	mrl_ctx *sctx, *cctx;
	mrl_ep *sep, *cep;
	mrl_peer *speer, *cpeer; /* the owner's view of the peer, the peer's view of the owner */
};

struct pair_acc {
	mrl_ep *ep;
	mrl_peer *peer;
	int ret;
};

static void *pair_acc_main(void *a)
{
	struct pair_acc *x = a;
	x->ret = mrl_ep_accept(x->ep, T_HANG_MS, &x->peer);
	return NULL;
}

/* Connect peer to owner (listening at host, port) while the owner accepts
 * on a thread of its own: the peer's view of the owner; *speer (if asked)
 * gets the owner's view of the peer. */
static inline mrl_peer *pair_connect_to(mrl_ep *owner, mrl_ep *peer, const char *host, uint16_t port,
					mrl_peer **speer)
{
	struct pair_acc aa = {.ep = owner};
	pthread_t th;
	mrl_peer *cpeer = NULL;
	pthread_create(&th, NULL, pair_acc_main, &aa);
	int cr = mrl_ep_connect(peer, host, port, T_HANG_MS, &cpeer);
	pthread_join(th, NULL);
	REQUIRE(cr == 0 && aa.ret == 0, "connected to %s (%d, %d): %s", host, cr, aa.ret, mrl_last_error());
	if (speer)
		*speer = aa.peer;
	return cpeer;
}

static inline mrl_peer *pair_connect(mrl_ep *owner, mrl_ep *peer, uint16_t port, mrl_peer **speer)
{
	return pair_connect_to(owner, peer, "127.0.0.1", port, speer);
}

static inline void pair_open(struct pair *p)
{
	/* a break deadline a busy machine cannot miss: the peer must answer */
	p->sctx = t_ctx("tcp;ofi_rxm", 10000);
	p->cctx = t_ctx("tcp;ofi_rxm", 10000);
	struct mrl_ep_opts eo = {.size = sizeof(eo), .flags = MRL_EP_AUTO_PROGRESS};
	REQUIRE(mrl_ep_create(p->sctx, &eo, &p->sep) == 0, "owner ep");
	REQUIRE(mrl_ep_create(p->cctx, NULL, &p->cep) == 0, "peer ep");
	uint16_t port;
	REQUIRE(mrl_ep_listen(p->sep, "127.0.0.1", 0, &port) == 0, "listen");
	p->cpeer = pair_connect(p->sep, p->cep, port, &p->speer);
}

static inline void pair_close(struct pair *p)
{
	mrl_ep_destroy(p->cep);
	mrl_ep_destroy(p->sep);
	mrl_ctx_destroy(p->cctx);
	mrl_ctx_destroy(p->sctx);
}

/* Wait for one completion on the peer's endpoint, up to ms (a hang bound). */
/* The owner serves the first n * mrsz bytes of path as n MRs, mapped through
 * the library (so it can lease the file); *base is the mapping. */
static inline void pair_serve_file(struct pair *p, const char *path, int n, size_t mrsz,
				   void **base, mrl_mr_t *mr)
{
	REQUIRE(mrl_file_map(p->sctx, path, 0, (size_t)n * mrsz, PROT_READ | PROT_WRITE, base) == 0,
		"map %s", path);
	for (int i = 0; i < n; i++)
		REQUIRE(mrl_mr_reg(p->sctx, (char *)*base + (size_t)i * mrsz, mrsz,
				   MRL_ACCESS_REMOTE_READ | MRL_ACCESS_REMOTE_WRITE, NULL, &mr[i]) == 0,
			"register MR %d", i);
}

/* ... and lets it go: the peer's remote MRs, the MRs, the mapping, the pair */
static inline void pair_unserve_file(struct pair *p, int n, size_t mrsz, void *base, mrl_mr_t *mr,
				     mrl_rmr **r)
{
	for (int i = 0; i < n; i++) {
		mrl_rmr_close(r[i]);
		mrl_mr_dereg(p->sctx, mr[i]);
	}
	mrl_file_unmap(p->sctx, base, (size_t)n * mrsz);
	pair_close(p);
}

static inline int pair_wait(struct pair *p, struct mrl_completion *c, int ms)
{
	for (uint64_t until = t_now_ns() + (uint64_t)ms * 1000000ull; t_now_ns() < until;) {
		if (mrl_ep_poll(p->cep, c, 1) == 1)
			return 0;
		usleep(100);
	}
	return -ETIMEDOUT;
}
#endif
