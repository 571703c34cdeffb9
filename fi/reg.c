/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The hook's registrar: mrlease's device calls for an application-facing
 * domain go to the provider's domain under it. The handle is the
 * application's MR (struct hook_mr), which outlives every provider
 * registration under it: a revoke closes the provider's MR, a restore
 * registers it again under the same key, and the application's key and
 * descriptor never change. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "board.h"
#include "hook.h"
#include "mrl_int.h"

/* the MR being registered by this thread (mrl_mr_reg calls reg inline) */
static __thread struct hook_mr *pending;

void hook_reg_request(struct hook_mr *hm)
{
	pending = hm;
}

/* Register hm's range with the provider, asking for its key. */
int hook_mr_under_reg(struct hook_mr *hm)
{
	struct hook_domain *d = hm->dom;
	struct fid_mr *m;
	if (hm->virt_key && !(hm->attr.requested_key = hook_new_key(d)))
		return -FI_ENOKEY;
	int ret = fi_mr_regattr(d->hdomain, &hm->attr, hm->flags, &m);
	if (ret)
		return ret;
	for (int i = 0; i < hm->nbinds && !ret; i++)
		ret = fi_mr_bind(m, hm->binds[i].fid, hm->binds[i].flags);
	if (!ret && hm->enabled)
		ret = fi_mr_enable(m);
	if (ret) {
		fi_close(&m->fid);
		return ret;
	}
	atomic_store(&hm->pkey, fi_mr_key(m));
	atomic_fetch_add_explicit(&d->n.regs, 1, memory_order_relaxed);
	atomic_store_explicit(&hm->hdesc, fi_mr_desc(m), memory_order_release);
	atomic_store_explicit(&hm->hmr, m, memory_order_release);
	return 0;
}

/* Take the provider's registration away: a remote access now meets an
 * unknown key (a clean error at the initiator) instead of the pages. */
void hook_mr_under_close(struct hook_mr *hm)
{
	struct fid_mr *m = atomic_exchange(&hm->hmr, NULL);
	atomic_store_explicit(&hm->hdesc, NULL, memory_order_release);
	if (m) {
		int ret = fi_close(&m->fid);
		if (ret)
			hook_log("fi_close(key %#llx) under %s: %s", (unsigned long long)hm->mr.key,
				 hm->path, fi_strerror(-ret));
	}
}

static int hreg_open(struct mrl_ctx *ctx, void **dev)
{
	(void)ctx, (void)dev;
	return -EINVAL; /* the hook opens the device itself (mrl_ctx_create_dev) */
}

static void hreg_close(void *dev)
{
	(void)dev; /* the application closes its domain */
}

static int hreg_reg(void *dev, void *addr, size_t len, unsigned access, uint64_t *key, void **h)
{
	(void)dev, (void)access;
	struct hook_mr *hm = pending;
	pending = NULL;
	if (!hm) /* only the application registers: a new key would be one it never saw */
		return mrl_err(EOPNOTSUPP, "libfabric hook: no registration under a new key");
	hm->iov.iov_base = addr;
	hm->iov.iov_len = len;
	hm->attr.mr_iov = &hm->iov;
	hm->attr.iov_count = 1;
	struct hook_domain *d = hm->dom;
	hm->virt_key = d->strict_keys; /* a fresh provider key each time, a virtual one for the application */
	int ret = hook_mr_under_reg(hm);
	if (ret)
		return mrl_err(ret, "fi_mr_regattr(%p, %zu): %s", addr, len, fi_strerror(-ret));
	if (d->strict_keys) {
		if (!(hm->mr.key = hook_new_key(d))) {
			hook_mr_under_close(hm);
			return mrl_err(ENOKEY, "no key material for a virtual key");
		}
		*key = hm->mr.key;
		*h = hm;
		return 0;
	}
	*key = hm->mr.key = fi_mr_key(atomic_load(&hm->hmr));
	hm->attr.requested_key = hm->mr.key;
	*h = hm;
	return 0;
}

static void board_state(struct hook_mr *hm, uint32_t st)
{
	if (hm->bent)
		atomic_store(&hm->bent->state, st);
}

/* fenced, or deregistered: hooked initiators refuse operations to it */
static int hreg_dereg(void *dev, void *h)
{
	(void)dev;
	board_state(h, BS_FENCED);
	hook_mr_under_close(h);
	return 0;
}

static void *hreg_desc(void *h)
{
	return atomic_load(&((struct hook_mr *)h)->hdesc);
}

static bool hreg_pins(void *dev)
{
	return mrl_prov_pins(((struct hook_domain *)dev)->prov_name);
}

/* A pause: hooked initiators see it on the board and hold new operations
 * (-FI_EAGAIN); those already in flight are waited for (the event thread
 * watches the count and tells the break engine: mrl_brk_device_idle). A
 * peer without the hook cannot be asked: the revoke below keeps it off the
 * pages. Called by the break engine with ctx->lock held. */
static int hreg_quiesce(void *dev, void *h, uint32_t seq)
{
	struct hook_domain *d = dev;
	struct hook_mr *hm = h;
	if (!hm->bent)
		return 0;
	atomic_store(&hm->bent->state, BS_PAUSED);
	if (atomic_load(&hm->bent->inflight) <= 0)
		return 0;
	struct hook_quiesce *q = calloc(1, sizeof(*q));
	if (!q)
		return 0; /* not waited for: what is still in flight meets the revoke */
	q->hm = hm;
	q->seq = seq;
	mrl_lock(&d->q_lock);
	q->next = d->quiescing;
	d->quiescing = q;
	mrl_unlock(&d->q_lock);
	uint64_t one = 1;
	if (write(d->stop_fd, &one, sizeof(one)) < 0) {
		/* the event thread looks at the list on its next turn anyway */
	}
	return 1;
}

bool hook_quiesce_poll(struct hook_domain *d)
{
	uint32_t seqs[64];
	int n = 0;
	bool more = false;
	mrl_lock(&d->q_lock);
	for (struct hook_quiesce **p = &d->quiescing; *p;) {
		struct hook_quiesce *q = *p;
		if (n < 64 && (atomic_load(&q->hm->bent->inflight) <= 0 ||
			       atomic_load(&q->hm->bent->state) != BS_PAUSED)) {
			seqs[n++] = q->seq;
			*p = q->next;
			free(q);
		} else {
			p = &q->next;
		}
	}
	more = d->quiescing != NULL;
	mrl_unlock(&d->q_lock);
	if (n) {
		mrl_lock(&d->ctx->lock);
		for (int i = 0; i < n; i++)
			mrl_brk_device_idle(d->ctx, seqs[i]);
		mrl_unlock(&d->ctx->lock);
		mrl_flush_outbox(d->ctx);
		mrl_wake_monitor(d->ctx);
	}
	return more;
}

/* An MR's pending pause goes with it (ctx->lock or the MR's close). */
void hook_quiesce_forget(struct hook_domain *d, struct hook_mr *hm)
{
	mrl_lock(&d->q_lock);
	for (struct hook_quiesce **p = &d->quiescing; *p;) {
		struct hook_quiesce *q = *p;
		if (q->hm == hm) {
			*p = q->next;
			free(q);
		} else {
			p = &q->next;
		}
	}
	mrl_unlock(&d->q_lock);
}

static int hreg_revoke(void *dev, void *h)
{
	(void)dev;
	board_state(h, BS_PAUSED);
	hook_mr_under_close(h);
	return 0;
}

/* Before a live registration is replaced: hooked initiators hold new
 * operations and the ones in flight finish (bounded: an initiator that
 * stopped progressing does not hold the monitor; what it still has in
 * flight then meets the closed key). */
static void drain(struct hook_mr *hm)
{
	if (!hm->bent)
		return;
	atomic_store(&hm->bent->state, BS_PAUSED);
	for (int i = 0; i < 2000 && atomic_load(&hm->bent->inflight) > 0; i++)
		usleep(100);
}

static int hreg_restore(void *dev, void *h, void *addr, size_t len)
{
	(void)dev;
	struct hook_mr *hm = h;
	if (atomic_load(&hm->hmr) && hm->iov.iov_base == addr && hm->iov.iov_len == len) {
		/* already registered there (a fenced tail's shrink just did it) */
		if (hm->bent) {
			atomic_store(&hm->bent->valid, len);
			atomic_store(&hm->bent->state, BS_ACTIVE);
		}
		return 0;
	}
	if (atomic_load(&hm->hmr)) /* a shrink (a fenced tail) re-registers a live MR */
		drain(hm);
	else
		board_state(hm, BS_PAUSED);
	hook_mr_under_close(hm);
	hm->iov.iov_base = addr;
	hm->iov.iov_len = len;
	struct hook_domain *d = hm->dom;
	uint64_t old = atomic_load(&hm->pkey);
	if (!d->strict_keys)
		hm->attr.requested_key = hm->mr.key;
	int ret = hook_mr_under_reg(hm);
	if (ret)
		return mrl_err(ret, "fi_mr_regattr(%p, %zu, key %#llx) to restore: %s", addr, len,
			       (unsigned long long)hm->mr.key, fi_strerror(-ret));
	uint64_t k = fi_mr_key(atomic_load(&hm->hmr));
	if (d->strict_keys) { /* the application's key stays; hooked initiators translate */
		hook_log("restore: key %#llx now over provider key %#llx (was %#llx)",
			 (unsigned long long)hm->mr.key, (unsigned long long)k, (unsigned long long)old);
		if (hm->bent)
			atomic_store(&hm->bent->pkey, k);
	} else if (k != hm->mr.key) { /* a provider that picks its keys: the application's is stale */
		hook_mr_under_close(hm);
		return mrl_err(EKEYREJECTED, "restore of key %#llx: the provider gave key %#llx",
			       (unsigned long long)hm->mr.key, (unsigned long long)k);
	}
	if (hm->bent) {
		atomic_store(&hm->bent->valid, len);
		atomic_store(&hm->bent->state, BS_ACTIVE);
	}
	return 0;
}

const struct mrl_registrar_ops hook_registrar = {
	.size = sizeof(struct mrl_registrar_ops),
	.name = "libfabric hook",
	.open = hreg_open,
	.close = hreg_close,
	.reg = hreg_reg,
	.dereg = hreg_dereg,
	.desc = hreg_desc,
	.pins = hreg_pins,
	.quiesce = hreg_quiesce,
	.revoke = hreg_revoke,
	.restore = hreg_restore,
};
