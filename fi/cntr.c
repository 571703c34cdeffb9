/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Counters of an application-facing domain. An operation to another
 * hooked process's leased MR that completes only through a counter (no
 * completion queue entry: selective completion, or no transmit CQ) is
 * counted in flight on the owner's board like any other; a counter does
 * not say which operations completed, so the hook counts them out when the
 * counter shows every operation posted through it done (its value and
 * error count, less the application's own sets and adds, reach what the
 * hook posted). It looks each time the application reads or waits on the
 * counter, which it does to learn of its completions; an owner's pause
 * then ends as soon as the initiator's operations are in, not at its
 * deadline. Operations the hook does not post (messages and atomics on the
 * same counter) can make it count out early: counters are best kept to RMA. */
#include <stdlib.h>
#include <string.h>

#include "board.h"
#include "hook.h"
#include "mrl_int.h"

struct hook_cntr {
	struct fid_cntr cntr;
	struct fid_cntr *hcntr;
	pthread_mutex_t lock;       /* leaf: issued, adj, pend */
	uint64_t issued;            /* operations the hook posted that bump it */
	int64_t adj;                /* the application's own sets and adds */
	atomic_size_t npend;
	size_t cap;
	struct board_ent **pend;    /* guarded operations not counted out yet */
};

#define HC(c) ((struct hook_cntr *)(c))

atomic_ullong hook_by_cntr;

/* (c->lock) count every pending operation out if all it was told of are done */
static void sweep_locked(struct hook_cntr *c)
{
	size_t n = atomic_load(&c->npend);
	if (!n)
		return;
	uint64_t done = fi_cntr_read(c->hcntr) + fi_cntr_readerr(c->hcntr);
	if ((int64_t)done - c->adj < (int64_t)c->issued)
		return;
	for (size_t i = 0; i < n; i++)
		atomic_fetch_sub(&c->pend[i]->inflight, 1);
	atomic_store(&c->npend, 0);
	atomic_fetch_add_explicit(&hook_by_cntr, n, memory_order_relaxed);
}

static inline void sweep(struct hook_cntr *c)
{
	if (!atomic_load_explicit(&c->npend, memory_order_relaxed))
		return;
	mrl_lock(&c->lock);
	sweep_locked(c);
	mrl_unlock(&c->lock);
}

void hook_cntr_issue(struct fid_cntr *cn, struct board_ent *e)
{
	struct hook_cntr *c = HC(cn);
	mrl_lock(&c->lock);
	c->issued++;
	size_t n = atomic_load(&c->npend);
	if (e && n == c->cap) {
		size_t cap = c->cap ? 2 * c->cap : 64;
		struct board_ent **p = realloc(c->pend, cap * sizeof(*p));
		if (p) {
			c->pend = p;
			c->cap = cap;
		}
	}
	if (e && n < c->cap) {
		c->pend[n] = e;
		atomic_store(&c->npend, n + 1);
	} else if (e) { /* no room: counted out now (the owner's pause may then close early) */
		atomic_fetch_sub(&e->inflight, 1);
	}
	mrl_unlock(&c->lock);
}

void hook_cntr_synth(struct fid_cntr *cn)
{
	struct hook_cntr *c = HC(cn);
	mrl_lock(&c->lock);
	c->issued++;
	fi_cntr_add(c->hcntr, 1);
	mrl_unlock(&c->lock);
}

static uint64_t cntr_read(struct fid_cntr *cn)
{
	sweep(HC(cn));
	return fi_cntr_read(HC(cn)->hcntr);
}

static uint64_t cntr_readerr(struct fid_cntr *cn)
{
	sweep(HC(cn));
	return fi_cntr_readerr(HC(cn)->hcntr);
}

/* the application's own changes, kept out of what counts as done */
static int change(struct fid_cntr *cn, bool err, bool set, uint64_t v)
{
	struct hook_cntr *c = HC(cn);
	mrl_lock(&c->lock);
	uint64_t cur = err ? fi_cntr_readerr(c->hcntr) : fi_cntr_read(c->hcntr);
	int ret = err ? (set ? fi_cntr_seterr(c->hcntr, v) : fi_cntr_adderr(c->hcntr, v))
		      : (set ? fi_cntr_set(c->hcntr, v) : fi_cntr_add(c->hcntr, v));
	if (!ret)
		c->adj += set ? (int64_t)(v - cur) : (int64_t)v;
	mrl_unlock(&c->lock);
	return ret;
}

static int cntr_add(struct fid_cntr *cn, uint64_t v) { return change(cn, false, false, v); }
static int cntr_set(struct fid_cntr *cn, uint64_t v) { return change(cn, false, true, v); }
static int cntr_adderr(struct fid_cntr *cn, uint64_t v) { return change(cn, true, false, v); }
static int cntr_seterr(struct fid_cntr *cn, uint64_t v) { return change(cn, true, true, v); }

static int cntr_wait(struct fid_cntr *cn, uint64_t threshold, int timeout)
{
	int ret = fi_cntr_wait(HC(cn)->hcntr, threshold, timeout);
	sweep(HC(cn));
	return ret;
}

static struct fi_ops_cntr hook_cntr_ops = {
	.size = sizeof(struct fi_ops_cntr),
	.read = cntr_read,
	.readerr = cntr_readerr,
	.add = cntr_add,
	.set = cntr_set,
	.wait = cntr_wait,
	.adderr = cntr_adderr,
	.seterr = cntr_seterr,
};

static int cntr_close(struct fid *fid)
{
	struct hook_cntr *c = HC(fid);
	int ret = fi_close(&c->hcntr->fid);
	if (ret)
		return ret;
	/* what is still pending can no longer be seen done: counted out */
	for (size_t i = 0; i < atomic_load(&c->npend); i++)
		atomic_fetch_sub(&c->pend[i]->inflight, 1);
	pthread_mutex_destroy(&c->lock);
	free(c->pend);
	free(c);
	return 0;
}
struct fi_ops hook_cntr_fid_ops = HOOK_FID_OPS(cntr_close);

struct fid *hook_cntr_under(struct fid *fid)
{
	return &HC(fid)->hcntr->fid;
}

int hook_cntr_open(struct fid_domain *hdomain, struct fi_cntr_attr *attr, struct fid_cntr **out,
		   void *context)
{
	struct hook_cntr *c = calloc(1, sizeof(*c));
	if (!c)
		return -FI_ENOMEM;
	int ret = fi_cntr_open(hdomain, attr, &c->hcntr, context);
	if (ret) {
		free(c);
		return ret;
	}
	pthread_mutex_init(&c->lock, NULL);
	c->cntr.fid.fclass = FI_CLASS_CNTR;
	c->cntr.fid.context = context;
	c->cntr.fid.ops = &hook_cntr_fid_ops;
	c->cntr.ops = &hook_cntr_ops;
	*out = &c->cntr;
	return 0;
}
