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

/* A registration and what its tombstone needs. */
struct fab_mr {
	struct fid_mr *mr;
	uint64_t key, acc;
	size_t len;
};

/* A deregistered key kept alive over scratch memory. tcp (and verbs: a
 * remote access error) tears down the whole connection when an RMA names
 * a key it does not know, so one fenced MR would cost every other MR on
 * that connection the operations in flight. Keeping the key over a sink
 * lets a late operation complete harmlessly, never reaching the MR's pages;
 * the peer, told of the fence, reports it failed (-EKEYREVOKED). Possible
 * only where remote addresses are offsets and keys ours (no VIRT_ADDR,
 * no PROV_KEY). */
struct fab_tomb {
	struct fab_tomb *next;
	struct fid_mr *mr;
	uint64_t key;
	void *sink;
	size_t len;
};
#define MAX_TOMBS 4096

static void tomb_free(struct fab_tomb *t)
{
	fi_close(&t->mr->fid);
	munmap(t->sink, t->len);
	free(t);
}

/* f->lock held: a key about to be registered again leaves its tombstone */
static void tomb_take(struct mrl_fabric *f, uint64_t key)
{
	for (struct fab_tomb **pp = &f->tombs; *pp; pp = &(*pp)->next)
		if ((*pp)->key == key) {
			struct fab_tomb *t = *pp;
			*pp = t->next;
			f->ntombs--;
			tomb_free(t);
			return;
		}
}

static void tomb_add(struct mrl_fabric *f, const struct fab_mr *m)
{
	if (f->prov_key || f->virt_addr || !(m->acc & (FI_REMOTE_READ | FI_REMOTE_WRITE)))
		return;
	struct fab_tomb *t = calloc(1, sizeof(*t));
	if (!t)
		return;
	/* NORESERVE: costs nothing until a late write touches it */
	t->sink = mmap(NULL, m->len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (t->sink == MAP_FAILED ||
	    fi_mr_reg(f->domain, t->sink, m->len, m->acc, 0, m->key, 0, &t->mr, NULL)) {
		if (t->sink != MAP_FAILED)
			munmap(t->sink, m->len);
		free(t);
		return;
	}
	t->key = m->key;
	t->len = m->len;
	if (f->ntombs == MAX_TOMBS) { /* the oldest goes: its peers were told long ago */
		struct fab_tomb **pp = &f->tombs;
		while ((*pp)->next)
			pp = &(*pp)->next;
		tomb_free(*pp);
		*pp = NULL;
		f->ntombs--;
	}
	t->next = f->tombs;
	f->tombs = t;
	f->ntombs++;
}

static int fab_reg(void *dev, void *addr, size_t len, unsigned access, uint64_t *key, void **h)
{
	struct mrl_fabric *f = dev;
	struct fab_mr *m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	uint64_t acc = FI_READ | FI_WRITE | FI_SEND | FI_RECV;
	if (access & MRL_ACCESS_REMOTE_READ)
		acc |= FI_REMOTE_READ;
	if (access & MRL_ACCESS_REMOTE_WRITE)
		acc |= FI_REMOTE_WRITE;
	mrl_lock(&f->lock);
	pthread_rwlock_wrlock(&f->gate);
	if (!f->prov_key)
		tomb_take(f, *key);
	int ret = fi_mr_reg(f->domain, addr, len, acc, 0, f->prov_key ? 0 : *key, 0, &m->mr, NULL);
	pthread_rwlock_unlock(&f->gate);
	mrl_unlock(&f->lock);
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

static int fab_dereg(void *dev, void *h)
{
	struct mrl_fabric *f = dev;
	struct fab_mr *m = h;
	mrl_lock(&f->lock);
	pthread_rwlock_wrlock(&f->gate);
	int ret = fi_close(&m->mr->fid);
	if (!ret)
		tomb_add(f, m);
	pthread_rwlock_unlock(&f->gate);
	mrl_unlock(&f->lock);
	free(m);
	return ret ? mrl_err(ret, "fi_close(mr): %s", fi_strerror(-ret)) : 0;
}

static void *fab_desc(void *h) { return fi_mr_desc(((struct fab_mr *)h)->mr); }

static void fab_close(void *dev)
{
	struct mrl_fabric *f = dev;
	while (f->tombs) {
		struct fab_tomb *t = f->tombs;
		f->tombs = t->next;
		tomb_free(t);
	}
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
};
