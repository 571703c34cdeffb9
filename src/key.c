/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Remote keys. A key is the only thing standing between a stranger who can
 * reach the owner's endpoint and an MR's bytes, so it is drawn from the
 * kernel's CSPRNG over the whole key space the provider takes
 * (domain_attr->mr_key_size), and a context never hands out the same key
 * twice: a key, once given, names one registration for ever (a peer
 * holding a stale key can never reach a different object through it).
 * Every key ever handed out is kept in a set (8 bytes per key at most
 * half full: 16 bytes per registration the context ever made). ctx->lock. */
#include <errno.h>
#include <stdlib.h>
#include <sys/random.h>

#include <rdma/fabric.h>

#include "mrl_int.h"
#include "fabric.h"

/* bits of key the provider carries: all 64 where it does not say, or where
 * it chooses keys itself (ours are then only asked for, never used) */
static unsigned key_bits(const struct mrl_ctx *ctx)
{
	if (!ctx->fab || ctx->fab->prov_key || !ctx->fab->info)
		return 64;
	size_t bytes = ctx->fab->info->domain_attr->mr_key_size;
	return bytes && bytes < 8 ? (unsigned)bytes * 8 : 64;
}

static size_t slot_of(uint64_t key, size_t cap)
{
	/* keys are random already; the multiply only spreads small key spaces */
	return (size_t)((key * 0x9e3779b97f4a7c15ull) >> 17) & (cap - 1);
}

static bool keys_has(const struct mrl_keys *k, uint64_t key)
{
	if (!k->cap)
		return false;
	for (size_t i = slot_of(key, k->cap);; i = (i + 1) & (k->cap - 1)) {
		if (k->slot[i] == key)
			return true;
		if (!k->slot[i])
			return false;
	}
}

static void keys_put(struct mrl_keys *k, uint64_t key)
{
	size_t i = slot_of(key, k->cap);
	while (k->slot[i])
		i = (i + 1) & (k->cap - 1);
	k->slot[i] = key;
	k->n++;
}

static int keys_grow(struct mrl_keys *k)
{
	size_t cap = k->cap ? k->cap * 2 : 1024;
	uint64_t *old = k->slot;
	size_t ocap = k->cap;
	if (!(k->slot = calloc(cap, sizeof(*k->slot)))) {
		k->slot = old;
		return -ENOMEM;
	}
	k->cap = cap;
	k->n = 0;
	for (size_t i = 0; i < ocap; i++)
		if (old[i])
			keys_put(k, old[i]);
	free(old);
	return 0;
}

static int draw(struct mrl_keys *k, uint64_t *r)
{
	if (!k->npool) {
		ssize_t got = getrandom(k->pool, sizeof(k->pool), 0);
		if (got != (ssize_t)sizeof(k->pool))
			return mrl_err(got < 0 ? errno : EIO, "getrandom: no key material");
		k->npool = ARRAY_SIZE(k->pool);
	}
	*r = k->pool[--k->npool];
	k->pool[k->npool] = 0; /* not left lying about */
	return 0;
}

int mrl_key_new(struct mrl_ctx *ctx, uint64_t *key)
{
	struct mrl_keys *k = &ctx->keys;
	if ((k->n + 1) * 2 > k->cap) {
		int ret = keys_grow(k);
		if (ret)
			return mrl_err(ret, "remote keys: no memory for the set of keys used");
	}
	unsigned bits = key_bits(ctx);
	uint64_t mask = bits == 64 ? UINT64_MAX : (1ull << bits) - 1;
	/* a small key space filling up: refuse rather than loop or reuse */
	if (bits < 64 && k->n >= mask / 2)
		return mrl_err(ENOSPC, "remote keys: %zu of the provider's %u-bit keys used", k->n, bits);
	for (;;) {
		uint64_t r = 0;
		int ret = draw(k, &r);
		if (ret)
			return ret;
		r &= mask;
		/* 0 marks a free slot; all ones is FI_KEY_NOTAVAIL */
		if (r == 0 || r == mask || keys_has(k, r)) {
			k->collisions++;
			continue;
		}
		keys_put(k, r);
		*key = r;
		return 0;
	}
}

bool mrl_key_used(const struct mrl_ctx *ctx, uint64_t key)
{
	return key && keys_has(&ctx->keys, key);
}

void mrl_keys_free(struct mrl_keys *k)
{
	free(k->slot);
	k->slot = NULL;
	k->cap = k->n = 0;
}
