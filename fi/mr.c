/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The application's memory registrations on a hooked domain (fi_mr_reg,
 * fi_mr_regv, fi_mr_regattr): each becomes an mrlease MR over the provider's
 * registration, so a change under its pages is seen, the provider's
 * registration fenced before it lands and restored under the same key
 * after. What mrlease cannot lease (several ranges, device memory, a
 * context that did not start) is registered as it is, and counted. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <string.h>
#include <unistd.h>

#include "board.h"
#include "hook.h"
#include "mrl_int.h"

/* The file (or kind of memory) under addr, for the log. */
static void backing_name(const void *addr, char *buf, size_t len)
{
	uintptr_t a = (uintptr_t)addr;
	snprintf(buf, len, "anonymous");
	FILE *f = fopen("/proc/self/maps", "re");
	if (!f)
		return;
	char line[512];
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;
		int pos = 0;
		if (sscanf(line, "%lx-%lx %*s %*s %*s %*s %n", &lo, &hi, &pos) < 2)
			continue;
		if (a < lo || a >= hi)
			continue;
		char *p = line + pos;
		p[strcspn(p, "\n")] = 0;
		if (*p)
			snprintf(buf, len, "%s", p);
		break;
	}
	fclose(f);
}

static unsigned remote_access(uint64_t access)
{
	unsigned a = 0;
	if (!access || (access & FI_REMOTE_READ))
		a |= MRL_ACCESS_REMOTE_READ;
	if (!access || (access & FI_REMOTE_WRITE))
		a |= MRL_ACCESS_REMOTE_WRITE;
	return a;
}

static int mr_close(struct fid *fid)
{
	struct hook_mr *hm = (struct hook_mr *)fid;
	struct hook_domain *d = hm->dom;
	if (hm->lease) {
		mrl_lock(&d->mrs_lock);
		for (struct hook_mr **p = &d->mrs; *p; p = &(*p)->next)
			if (*p == hm) {
				*p = hm->next;
				break;
			}
		mrl_unlock(&d->mrs_lock);
		int ret = mrl_mr_dereg(d->ctx, hm->lease); /* closes the provider's MR */
		hook_quiesce_forget(d, hm);
		board_retract(hm->bent);
		if (ret)
			hook_log("deregistering key %#llx: %s", (unsigned long long)hm->mr.key,
				 mrl_last_error());
	} else {
		hook_mr_under_close(hm);
	}
	free(hm);
	return 0;
}

static int mr_bind(struct fid *fid, struct fid *bfid, uint64_t flags)
{
	struct hook_mr *hm = (struct hook_mr *)fid;
	struct fid *b = hook_unwrap(bfid);
	struct fid_mr *m = atomic_load(&hm->hmr);
	if (!m)
		return -FI_EKEYREJECTED;
	int ret = fi_mr_bind(m, b, flags);
	if (!ret && hm->nbinds < HOOK_MR_BINDS) { /* replayed on every re-registration */
		hm->binds[hm->nbinds].fid = b;
		hm->binds[hm->nbinds++].flags = flags;
	}
	return ret;
}

static int mr_control(struct fid *fid, int command, void *arg)
{
	struct hook_mr *hm = (struct hook_mr *)fid;
	struct fid_mr *m = atomic_load(&hm->hmr);
	if (!m)
		return -FI_EKEYREJECTED;
	int ret = m->fid.ops->control(&m->fid, command, arg);
	if (!ret && command == FI_ENABLE)
		hm->enabled = true;
	return ret;
}

static int mr_ops_open(struct fid *fid, const char *name, uint64_t flags, void **ops, void *context)
{
	struct fid_mr *m = atomic_load(&((struct hook_mr *)fid)->hmr);
	return m ? m->fid.ops->ops_open(&m->fid, name, flags, ops, context) : -FI_EKEYREJECTED;
}

struct fi_ops hook_mr_fid_ops = {
	.size = sizeof(struct fi_ops),
	.close = mr_close,
	.bind = mr_bind,
	.control = mr_control,
	.ops_open = mr_ops_open,
};

/* A key the hook asks the provider for, where the application was promised
 * provider keys: unguessable (the kernel's CSPRNG, through the library's
 * key set, so a domain never hands out one twice), within the provider's
 * key size. */
uint64_t hook_new_key(struct hook_domain *d)
{
	uint64_t k = 0, mask = d->key_size && d->key_size < 8 ? (1ull << (8 * d->key_size)) - 1 : UINT64_MAX;
	for (int i = 0; i < 64 && (!k || k == mask); i++) {
		int ret = -1;
		if (d->ctx) {
			mrl_lock(&d->ctx->lock);
			ret = mrl_key_new(d->ctx, &k);
			mrl_unlock(&d->ctx->lock);
		}
		if (ret && getrandom(&k, sizeof(k), 0) != (ssize_t)sizeof(k))
			k = 0;
		k &= mask;
	}
	return k;
}

static int mr_regattr_common(struct hook_domain *d, const struct fi_mr_attr *attr, uint64_t flags,
			     struct fid_mr **out)
{
	if (!attr || !out || (attr->iov_count && !attr->mr_iov))
		return -FI_EINVAL;
	struct hook_mr *hm = calloc(1, sizeof(*hm));
	if (!hm)
		return -FI_ENOMEM;
	hm->dom = d;
	hm->attr = *attr;
	hm->flags = flags;
	if (d->keys_ours && !(hm->attr.requested_key = hook_new_key(d))) {
		free(hm);
		return -FI_ENOKEY; /* no key material */
	}
	hm->mr.fid.fclass = FI_CLASS_MR;
	hm->mr.fid.context = attr->context;
	hm->mr.fid.ops = &hook_mr_fid_ops;
	hm->mr.mem_desc = hm;
	atomic_fetch_add(&d->n.mrs, 1);

	bool leasable = d->ctx && attr->iov_count == 1 && attr->mr_iov[0].iov_len &&
			attr->iface == FI_HMEM_SYSTEM;
	if (leasable) {
		void *addr = attr->mr_iov[0].iov_base;
		size_t len = attr->mr_iov[0].iov_len;
		if (hook_log_on()) /* for the log only: the library finds the backing itself */
			backing_name(addr, hm->path, sizeof(hm->path));
		struct mrl_reg_opts o = {.size = sizeof(o), .policy = d->policy, .context = hm};
		hook_reg_request(hm);
		int ret = mrl_mr_reg(d->ctx, addr, len, remote_access(attr->access), &o, &hm->lease);
		hook_reg_request(NULL);
		if (!ret) {
			atomic_fetch_add(&d->n.leased, 1);
			if (remote_access(attr->access)) /* hooked initiators find its state */
				hm->bent = board_publish(hm->mr.key,
							 d->mr_mode & FI_MR_VIRT_ADDR ? (uint64_t)(uintptr_t)addr
										    : attr->offset,
							 len, d->tail);
			if (hm->bent) /* strict keys: initiators post with the provider's */
				atomic_store(&hm->bent->pkey, atomic_load(&hm->pkey));
			mrl_lock(&d->mrs_lock);
			hm->next = d->mrs;
			d->mrs = hm;
			mrl_unlock(&d->mrs_lock);
			hook_log("leased key %#llx %p+%zu (%s)", (unsigned long long)hm->mr.key, addr,
				 len, hm->path);
			*out = &hm->mr;
			return 0;
		}
		hook_log("not leased (%p+%zu, %s): %s", addr, len, hm->path, mrl_last_error());
		hm->lease = 0;
		if (hm->attr.mr_iov == &hm->iov) /* the registrar set it */
			hm->attr.mr_iov = attr->mr_iov;
	}
	/* as it is: the provider's registration for the MR's whole life */
	int ret = hook_mr_under_reg(hm);
	hm->attr.mr_iov = NULL; /* the caller's array is not ours to keep */
	if (ret) {
		free(hm);
		return ret;
	}
	hm->mr.key = fi_mr_key(atomic_load(&hm->hmr));
	atomic_fetch_add(&d->n.unleased, 1);
	*out = &hm->mr;
	return 0;
}

static int mr_regattr(struct fid *fid, const struct fi_mr_attr *attr, uint64_t flags,
		      struct fid_mr **mr)
{
	return mr_regattr_common((struct hook_domain *)fid, attr, flags, mr);
}

static int mr_regv(struct fid *fid, const struct iovec *iov, size_t count, uint64_t access,
		   uint64_t offset, uint64_t requested_key, uint64_t flags, struct fid_mr **mr,
		   void *context)
{
	struct fi_mr_attr attr = {.mr_iov = iov, .iov_count = count, .access = access,
				  .offset = offset, .requested_key = requested_key,
				  .context = context, .iface = FI_HMEM_SYSTEM};
	return mr_regattr_common((struct hook_domain *)fid, &attr, flags, mr);
}

static int mr_reg(struct fid *fid, const void *buf, size_t len, uint64_t access, uint64_t offset,
		  uint64_t requested_key, uint64_t flags, struct fid_mr **mr, void *context)
{
	struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
	return mr_regv(fid, &iov, 1, access, offset, requested_key, flags, mr, context);
}

struct fi_ops_mr hook_mr_ops = {
	.size = sizeof(struct fi_ops_mr),
	.reg = mr_reg,
	.regv = mr_regv,
	.regattr = mr_regattr,
};
