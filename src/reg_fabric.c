/* libfabric registrar: fabric + domain shared with the endpoints; MRs with
 * keys the library chooses, so a restore keeps them (unless FI_MR_PROV_KEY). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <rdma/fabric.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_errno.h>

#include "mrl_int.h"
#include "fabric.h"

/* Does a provider stack ("verbs;ofi_rxm") pin what it registers? Only the
 * ones known to copy through the kernel or shared memory are said not to;
 * an unknown one (verbs, efa, psm3, opx, cxi, ucx, ...) is taken to pin. */
static bool prov_pins(const char *stack)
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
	f->pins = prov_pins(info->fabric_attr->prov_name);
	pthread_mutex_init(&f->lock, NULL);
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

static int fab_reg(void *dev, void *addr, size_t len, unsigned access, uint64_t *key, void **h)
{
	struct mrl_fabric *f = dev;
	struct fid_mr *mr;
	uint64_t acc = FI_READ | FI_WRITE | FI_SEND | FI_RECV;
	if (access & MRL_ACCESS_REMOTE_READ)
		acc |= FI_REMOTE_READ;
	if (access & MRL_ACCESS_REMOTE_WRITE)
		acc |= FI_REMOTE_WRITE;
	int ret = fi_mr_reg(f->domain, addr, len, acc, 0, f->prov_key ? 0 : *key, 0, &mr, NULL);
	if (ret)
		return mrl_err(ret, "fi_mr_reg(%p, %zu, key %#llx): %s", addr, len,
			       (unsigned long long)*key, fi_strerror(-ret));
	*key = fi_mr_key(mr);
	*h = mr;
	return 0;
}

static int fab_dereg(void *dev, void *h)
{
	(void)dev;
	int ret = fi_close(&((struct fid_mr *)h)->fid);
	return ret ? mrl_err(ret, "fi_close(mr): %s", fi_strerror(-ret)) : 0;
}

static void *fab_desc(void *h) { return fi_mr_desc((struct fid_mr *)h); }

static void fab_close(void *dev)
{
	struct mrl_fabric *f = dev;
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
