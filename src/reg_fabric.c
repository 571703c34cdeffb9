/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* libfabric registrar: fabric + domain shared with the endpoints; MRs with
 * keys the library chooses, so a restore keeps them (unless FI_MR_PROV_KEY). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <rdma/fabric.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_errno.h>

#include "mrl_int.h"
#include "fabric.h"

/* Does a provider stack ("verbs;ofi_rxm") pin what it registers? Only the
 * ones known to copy through the kernel or shared memory are said not to;
 * an unknown one (verbs, efa, psm3, opx, cxi, ucx, ...) is taken to pin. */
bool mrl_prov_pins(const char *stack)
{
	static const char *const copying[] = {"tcp", "sockets", "udp", "shm", "sm2", "net",
					       "ofi_rxm", "ofi_rxd", "ofi_mrail", "rxm", "rxd"};
	if (!stack)
		return true;
	for (const char *p = stack; *p;) {
		size_t n = strcspn(p, ";");
		bool known = !strncmp(p, "ofi_hook", 8) && n >= 8;
		for (size_t i = 0; !known && i < ARRAY_SIZE(copying); i++)
			known = strlen(copying[i]) == n && !strncmp(p, copying[i], n);
		if (!known)
			return true;
		p += n;
		p += *p == ';';
	}
	return false;
}

static bool fab_pins(void *dev)
{
	return ((struct mrl_fabric *)dev)->pins;
}

static int fab_open(struct mrl_ctx *ctx, void **dev)
{
	const char *provider = ctx->opts.provider, *addr = ctx->opts.addr;
	struct fi_info *hints = fi_allocinfo(), *info = NULL;
	struct mrl_fabric *f = calloc(1, sizeof(*f));
	int ret;
	if (!hints || !f) {
		fi_freeinfo(hints);
		free(f);
		return -ENOMEM;
	}
	hints->ep_attr->type = FI_EP_RDM;
	hints->caps = FI_MSG | FI_RMA | FI_READ | FI_WRITE | FI_REMOTE_READ | FI_REMOTE_WRITE |
		      FI_SEND | FI_RECV;
	hints->mode = FI_CONTEXT | FI_CONTEXT2;
	hints->domain_attr->mr_mode =
		FI_MR_LOCAL | FI_MR_VIRT_ADDR | FI_MR_ALLOCATED | FI_MR_PROV_KEY;
	hints->domain_attr->threading = FI_THREAD_SAFE;
	hints->fabric_attr->prov_name = strdup(provider);
	ret = fi_getinfo(FI_VERSION(1, 9), addr, NULL, FI_SOURCE,
			 hints, &info);
	fi_freeinfo(hints);
	if (ret) {
		free(f);
		return mrl_err(ret, "fi_getinfo(%s on %s): %s", provider,
			       addr, fi_strerror(-ret));
	}
	f->info = info;
	ret = fi_fabric(info->fabric_attr, &f->fabric, NULL);
	if (ret) {
		ret = mrl_err(ret, "fi_fabric: %s", fi_strerror(-ret));
		goto fail;
	}
	ret = fi_domain(f->fabric, info, &f->domain, NULL);
	if (ret) {
		ret = mrl_err(ret, "fi_domain: %s", fi_strerror(-ret));
		goto fail;
	}
	f->prov_key = info->domain_attr->mr_mode & FI_MR_PROV_KEY;
	f->virt_addr = info->domain_attr->mr_mode & FI_MR_VIRT_ADDR;
	f->mr_local = info->domain_attr->mr_mode & FI_MR_LOCAL;
	f->pins = mrl_prov_pins(info->fabric_attr->prov_name);
	pthread_mutex_init(&f->lock, NULL);
	pthread_rwlock_init(&f->gate, NULL);
	*dev = f;
	return 0;
fail:
	if (f->domain)
		fi_close(&f->domain->fid);
	if (f->fabric)
		fi_close(&f->fabric->fid);
	fi_freeinfo(info);
	free(f);
	return ret;
}

/* Scratch memory standing in for a registration's pages: its own private
 * anonymous mapping, zero until a late operation writes it. NORESERVE: it
 * costs nothing until touched. Never shared between keys, so what one
 * key's late writer leaves there no other key's reader can see. */
static void *scratch_new(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

/* A registration and what its tombstone needs. */
struct fab_mr {
	struct fid_mr *mr;  /* NULL: its key was lost in a failed swap */
	uint64_t key, acc;
	size_t len;
	void *scratch;      /* redirected: mr registers this, not the MR's pages */
};

/* A deregistered key kept alive over scratch memory. tcp (and verbs: a
 * remote access error) tears down the whole connection when an RMA names
 * a key it does not know, so one fenced MR would cost every other MR on
 * that connection the operations in flight. Keeping the key over a sink
 * lets a late operation complete harmlessly, never reaching the MR's pages;
 * the peer, told of the fence, reports it failed (-EKEYREVOKED). Possible
 * only where remote addresses are offsets and keys ours (no VIRT_ADDR,
 * no PROV_KEY). Each tomb has scratch of its own (scratch_new): a stale
 * key's reader sees zeros or what was written through that same key,
 * never another key's late bytes. */
struct fab_tomb {
	struct fab_tomb *older, *newer; /* age order */
	struct fab_tomb *hnext;         /* same hash bucket */
	struct fid_mr *mr;
	uint64_t key;
	void *scratch;
	size_t len;
};
#define MAX_TOMBS 4096
#define TOMB_BUCKETS 8192 /* a power of two, > MAX_TOMBS: chains stay short */

static struct fab_tomb **tomb_bucket(struct mrl_fabric *f, uint64_t key)
{
	return &f->tomb_hash[(key * 0x9e3779b97f4a7c15ull) >> 51 & (TOMB_BUCKETS - 1)];
}

/* f->lock held: unlink t from the age list and its bucket */
static void tomb_unlink(struct mrl_fabric *f, struct fab_tomb *t)
{
	for (struct fab_tomb **pp = tomb_bucket(f, t->key); *pp; pp = &(*pp)->hnext)
		if (*pp == t) {
			*pp = t->hnext;
			break;
		}
	*(t->older ? &t->older->newer : &f->tomb_old) = t->newer;
	*(t->newer ? &t->newer->older : &f->tomb_new) = t->older;
	f->ntombs--;
}

/* an unlinked tombstone's scratch goes once its key is closed */
static void tomb_drop(struct fab_tomb *t)
{
	if (t->scratch)
		munmap(t->scratch, t->len);
	free(t);
}

/* an unlinked tombstone: its key goes (no lock of the library's held) */
static void tomb_free(struct fab_tomb *t)
{
	fi_close(&t->mr->fid);
	tomb_drop(t);
}

/* f->lock held: a key about to be registered again leaves its tombstone
 * (unlinked, still registered: the caller swaps it under the gate) */
static struct fab_tomb *tomb_take(struct mrl_fabric *f, uint64_t key)
{
	if (!f->tomb_hash)
		return NULL;
	for (struct fab_tomb *t = *tomb_bucket(f, key); t; t = t->hnext)
		if (t->key == key) {
			tomb_unlink(f, t);
			return t;
		}
	return NULL;
}

/* f->lock held: t (registered) joins the tombstones; the oldest one that
 * makes room is returned for the caller to free */
static struct fab_tomb *tomb_insert(struct mrl_fabric *f, struct fab_tomb *t)
{
	struct fab_tomb *old = NULL;
	if (f->ntombs == MAX_TOMBS) { /* the oldest goes: its peers were told long ago */
		old = f->tomb_old;
		tomb_unlink(f, old);
	}
	t->older = f->tomb_new;
	t->newer = NULL;
	*(f->tomb_new ? &f->tomb_new->newer : &f->tomb_old) = t;
	f->tomb_new = t;
	struct fab_tomb **b = tomb_bucket(f, t->key);
	t->hnext = *b;
	*b = t;
	f->ntombs++;
	return old;
}

static uint64_t fab_acc(unsigned access)
{
	/* local access for RMA only: FI_SEND/FI_RECV would have ofi_rxm add
	 * FI_REMOTE_READ for its rendezvous, and a write-only MR (libfabric
	 * 1.17) could then be read by anyone holding its key */
	uint64_t acc = FI_READ | FI_WRITE;
	if (access & MRL_ACCESS_REMOTE_READ)
		acc |= FI_REMOTE_READ;
	if (access & MRL_ACCESS_REMOTE_WRITE)
		acc |= FI_REMOTE_WRITE;
	return acc;
}

/* The provider calls are made under no lock of the library's: f->lock
 * guards the tombstones only. The gate is taken exclusive only while a
 * key moves between an MR's pages and scratch (both calls inside it),
 * which holds every endpoint's progress for that long: a fresh key needs
 * none. */
static int fab_reg(void *dev, void *addr, size_t len, unsigned access, uint64_t *key, void **h)
{
	struct mrl_fabric *f = dev;
	struct fab_mr *m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	uint64_t acc = fab_acc(access);
	struct fab_tomb *t = NULL;
	if (!f->prov_key) {
		mrl_lock(&f->lock);
		t = tomb_take(f, *key);
		mrl_unlock(&f->lock);
	}
	if (t) {
		pthread_rwlock_wrlock(&f->gate);
		fi_close(&t->mr->fid);
	}
	int ret = fi_mr_reg(f->domain, addr, len, acc, 0, f->prov_key ? 0 : *key, 0, &m->mr, NULL);
	if (t) {
		pthread_rwlock_unlock(&f->gate);
		tomb_drop(t);
	}
	if (ret) {
		free(m);
		return mrl_err(ret, "fi_mr_reg(%p, %zu, key %#llx): %s", addr, len,
			       (unsigned long long)*key, fi_strerror(-ret));
	}
	m->key = *key = fi_mr_key(m->mr);
	m->acc = acc;
	m->len = len;
	*h = m;
	return 0;
}

/* Move m's key onto [addr, +len) in one step under the gate: no RMA meets
 * the key unregistered. The key is lost (m->mr NULL) if the new
 * registration fails. */
static int key_swap(struct mrl_fabric *f, struct fab_mr *m, void *addr, size_t len)
{
	pthread_rwlock_wrlock(&f->gate);
	int ret = m->mr ? fi_close(&m->mr->fid) : 0;
	m->mr = NULL;
	if (!ret)
		ret = fi_mr_reg(f->domain, addr, len, m->acc, 0, m->key, 0, &m->mr, NULL);
	pthread_rwlock_unlock(&f->gate);
	if (ret) {
		m->mr = NULL;
		return mrl_err(ret, "fi_mr_reg(%p, %zu, key %#llx): %s", addr, len,
			       (unsigned long long)m->key, fi_strerror(-ret));
	}
	m->len = len;
	return 0;
}

static bool swaps_keys(struct mrl_fabric *f)
{
	return !f->prov_key && !f->virt_addr;
}

/* Same key, the pages [addr, +len) has now (back from scratch too). */
static int fab_restore(void *dev, void *h, void *addr, size_t len)
{
	struct mrl_fabric *f = dev;
	struct fab_mr *m = h;
	if (f->prov_key) /* a new key: the caller registers anew */
		return -EOPNOTSUPP;
	int ret = key_swap(f, m, addr, len);
	if (!ret && m->scratch) {
		munmap(m->scratch, m->len);
		m->scratch = NULL;
	}
	return ret;
}

/* MRL_POLICY_REDIRECT: the key over fresh scratch of the MR's length. */
static int fab_redirect(void *dev, void *h)
{
	struct mrl_fabric *f = dev;
	struct fab_mr *m = h;
	if (!swaps_keys(f))
		return mrl_err(EOPNOTSUPP, "libfabric: redirect needs keys the library chooses and "
					   "offset addressing (this provider has %s)",
			       f->prov_key ? "FI_MR_PROV_KEY" : "FI_MR_VIRT_ADDR");
	if (!m || m->scratch)
		return 0;
	void *s = scratch_new(m->len);
	if (!s)
		return mrl_err(ENOMEM, "libfabric: no scratch of %zu bytes to redirect to", m->len);
	int ret = key_swap(f, m, s, m->len);
	if (ret)
		munmap(s, m->len);
	else
		m->scratch = s;
	return ret;
}

static int fab_dereg(void *dev, void *h)
{
	struct mrl_fabric *f = dev;
	struct fab_mr *m = h;
	struct fab_tomb *t = NULL, *old = NULL;
	if (swaps_keys(f) && m->mr && (m->acc & (FI_REMOTE_READ | FI_REMOTE_WRITE))) {
		mrl_lock(&f->lock);
		bool hash = f->tomb_hash || (f->tomb_hash = calloc(TOMB_BUCKETS, sizeof(*f->tomb_hash)));
		mrl_unlock(&f->lock);
		t = hash ? calloc(1, sizeof(*t)) : NULL;
		if (t && !(t->scratch = scratch_new(m->len))) {
			free(t);
			t = NULL;
		}
	}
	if (t)
		pthread_rwlock_wrlock(&f->gate);
	int ret = m->mr ? fi_close(&m->mr->fid) : 0;
	if (t && (ret || fi_mr_reg(f->domain, t->scratch, m->len, m->acc, 0, m->key, 0, &t->mr, NULL))) {
		pthread_rwlock_unlock(&f->gate);
		munmap(t->scratch, m->len);
		free(t);
		t = NULL;
	} else if (t) {
		pthread_rwlock_unlock(&f->gate);
		t->key = m->key;
		t->len = m->len;
		mrl_lock(&f->lock);
		old = tomb_insert(f, t);
		mrl_unlock(&f->lock);
		if (old)
			tomb_free(old);
	}
	if (m->scratch)
		munmap(m->scratch, m->len);
	free(m);
	return ret ? mrl_err(ret, "fi_close(mr): %s", fi_strerror(-ret)) : 0;
}

static void *fab_desc(void *h)
{
	struct fab_mr *m = h;
	return m->mr ? fi_mr_desc(m->mr) : NULL;
}

static void fab_close(void *dev)
{
	struct mrl_fabric *f = dev;
	while (f->tomb_old) {
		struct fab_tomb *t = f->tomb_old;
		tomb_unlink(f, t);
		tomb_free(t);
	}
	free(f->tomb_hash);
	fi_close(&f->domain->fid);
	fi_close(&f->fabric->fid);
	fi_freeinfo(f->info);
	pthread_mutex_destroy(&f->lock);
	free(f);
}

const struct mrl_registrar_ops mrl_reg_fabric_ops = {
	.size = sizeof(struct mrl_registrar_ops),
	.name = "libfabric",
	.open = fab_open,
	.reg = fab_reg,
	.dereg = fab_dereg,
	.desc = fab_desc,
	.close = fab_close,
	.pins = fab_pins,
	.restore = fab_restore,
	.redirect = fab_redirect,
};
