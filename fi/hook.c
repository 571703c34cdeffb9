/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The hooking provider itself: fi_prov_ini, the fabric and event-queue
 * wrappers, and the table that tells the hook's objects from the
 * provider's. libfabric installs a provider whose getinfo is NULL over every
 * fabric the application opens when FI_HOOK names it. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "hook.h"
#include "mrl_int.h"

/* ---- the provider's objects the hook wraps, to translate what the
 * provider reports (an event naming its endpoint) into the hook's ---- */
static pthread_mutex_t track_lock = PTHREAD_MUTEX_INITIALIZER;
static struct { struct fid *under, *ours; } *tracked;
static size_t ntracked, cap_tracked;

void hook_track(struct fid *under, struct fid *ours)
{
	mrl_lock(&track_lock);
	if (ntracked == cap_tracked) {
		size_t cap = cap_tracked ? cap_tracked * 2 : 32;
		void *t = realloc(tracked, cap * sizeof(*tracked));
		if (!t) {
			mrl_unlock(&track_lock);
			hook_log("out of memory tracking an endpoint: its events keep the provider's name");
			return;
		}
		tracked = t;
		cap_tracked = cap;
	}
	tracked[ntracked].under = under;
	tracked[ntracked++].ours = ours;
	mrl_unlock(&track_lock);
}

void hook_untrack(struct fid *under)
{
	mrl_lock(&track_lock);
	for (size_t i = 0; i < ntracked; i++)
		if (tracked[i].under == under) {
			tracked[i] = tracked[--ntracked];
			break;
		}
	mrl_unlock(&track_lock);
}

struct fid *hook_wrapper_of(const struct fid *fid)
{
	struct fid *ours = NULL;
	mrl_lock(&track_lock);
	for (size_t i = 0; i < ntracked && !ours; i++)
		if (tracked[i].under == fid)
			ours = tracked[i].ours;
	mrl_unlock(&track_lock);
	return ours;
}

/* An object is the hook's when its fid ops are one of the hook's tables. */
struct fid *hook_unwrap(struct fid *fid)
{
	if (!fid)
		return NULL;
	if (fid->ops == &hook_fabric_fid_ops)
		return &((struct hook_fabric *)fid)->hfabric->fid;
	if (fid->ops == &hook_domain_fid_ops)
		return &((struct hook_domain *)fid)->hdomain->fid;
	if (fid->ops == &hook_ep_fid_ops)
		return &((struct hook_ep *)fid)->hep->fid;
	if (fid->ops == &hook_pep_fid_ops)
		return &((struct hook_pep *)fid)->hpep->fid;
	if (fid->ops == &hook_cq_fid_ops)
		return hook_cq_under(fid);
	if (fid->ops == &hook_cntr_fid_ops)
		return hook_cntr_under(fid);
	if (fid->ops == &hook_eq_fid_ops)
		return &((struct hook_eq *)fid)->heq->fid;
	if (fid->ops == &hook_mr_fid_ops) {
		struct fid_mr *m = atomic_load(&((struct hook_mr *)fid)->hmr);
		return m ? &m->fid : NULL;
	}
	return fid;
}

/* ---- generic fid calls: the same call on the provider's object ---- */
int hook_fwd_bind(struct fid *fid, struct fid *bfid, uint64_t flags)
{
	struct fid *u = hook_unwrap(fid), *b = hook_unwrap(bfid);
	return u->ops->bind(u, b, flags);
}

int hook_fwd_control(struct fid *fid, int command, void *arg)
{
	struct fid *u = hook_unwrap(fid);
	return u->ops->control(u, command, arg);
}

int hook_fwd_ops_open(struct fid *fid, const char *name, uint64_t flags, void **ops,
			void *context)
{
	struct fid *u = hook_unwrap(fid);
	return u->ops->ops_open(u, name, flags, ops, context);
}

int hook_fwd_tostr(const struct fid *fid, char *buf, size_t len)
{
	struct fid *u = hook_unwrap((struct fid *)fid);
	if (!FI_CHECK_OP(u->ops, struct fi_ops, tostr))
		return -FI_ENOSYS;
	return u->ops->tostr(u, buf, len);
}

int hook_fwd_ops_set(struct fid *fid, const char *name, uint64_t flags, void *ops, void *context)
{
	struct fid *u = hook_unwrap(fid);
	if (!FI_CHECK_OP(u->ops, struct fi_ops, ops_set))
		return -FI_ENOSYS;
	return u->ops->ops_set(u, name, flags, ops, context);
}


/* ---- event queues: events naming an endpoint name the hook's ---- */
static void eq_fix_fid(fid_t *fid)
{
	struct fid *ours = *fid ? hook_wrapper_of(*fid) : NULL;
	if (ours)
		*fid = ours;
}

static ssize_t eq_read(struct fid_eq *eq, uint32_t *event, void *buf, size_t len, uint64_t flags)
{
	struct fid_eq *u = ((struct hook_eq *)eq)->heq;
	ssize_t ret = u->ops->read(u, event, buf, len, flags);
	if (ret >= (ssize_t)sizeof(fid_t))
		eq_fix_fid((fid_t *)buf); /* every entry begins with the fid */
	return ret;
}

static ssize_t eq_sread(struct fid_eq *eq, uint32_t *event, void *buf, size_t len, int timeout,
			uint64_t flags)
{
	struct fid_eq *u = ((struct hook_eq *)eq)->heq;
	ssize_t ret = u->ops->sread(u, event, buf, len, timeout, flags);
	if (ret >= (ssize_t)sizeof(fid_t))
		eq_fix_fid((fid_t *)buf);
	return ret;
}

static ssize_t eq_readerr(struct fid_eq *eq, struct fi_eq_err_entry *buf, uint64_t flags)
{
	struct fid_eq *u = ((struct hook_eq *)eq)->heq;
	ssize_t ret = u->ops->readerr(u, buf, flags);
	if (ret > 0)
		eq_fix_fid(&buf->fid);
	return ret;
}

static ssize_t eq_write(struct fid_eq *eq, uint32_t event, const void *buf, size_t len,
			uint64_t flags)
{
	struct fid_eq *u = ((struct hook_eq *)eq)->heq;
	return u->ops->write(u, event, buf, len, flags);
}

static const char *eq_strerror(struct fid_eq *eq, int prov_errno, const void *err_data, char *buf,
			       size_t len)
{
	struct fid_eq *u = ((struct hook_eq *)eq)->heq;
	return u->ops->strerror(u, prov_errno, err_data, buf, len);
}

static struct fi_ops_eq hook_eq_ops = {
	.size = sizeof(struct fi_ops_eq),
	.read = eq_read,
	.readerr = eq_readerr,
	.write = eq_write,
	.sread = eq_sread,
	.strerror = eq_strerror,
};

static int eq_close(struct fid *fid)
{
	struct hook_eq *e = (struct hook_eq *)fid;
	int ret = fi_close(&e->heq->fid);
	if (!ret)
		free(e);
	return ret;
}
struct fi_ops hook_eq_fid_ops = HOOK_FID_OPS(eq_close);

/* ---- fabric ---- */
/* the open ones: a thread's last hooked fabric may have been closed since
 * (by any thread), and is only looked at while it is still here */
static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
static struct hook_fabric *live;

static int fab_close(struct fid *fid)
{
	struct hook_fabric *f = (struct hook_fabric *)fid;
	int ret = fi_close(&f->hfabric->fid);
	if (!ret) {
		mrl_lock(&live_lock);
		for (struct hook_fabric **p = &live; *p; p = &(*p)->live_next)
			if (*p == f) {
				*p = f->live_next;
				break;
			}
		mrl_unlock(&live_lock);
		free(f);
	}
	return ret;
}
struct fi_ops hook_fabric_fid_ops = HOOK_FID_OPS(fab_close);

/* a domain opened from inside the hook's own domain open is a utility
 * provider's inner one */
static __thread int in_domain_open;

static int fab_domain2(struct fid_fabric *fabric, struct fi_info *info, struct fid_domain **dom,
		       uint64_t flags, void *context)
{
	struct hook_fabric *f = (struct hook_fabric *)fabric;
	if (flags || atomic_load(&f->inner) || in_domain_open) {
		if (!flags)
			return fi_domain(f->hfabric, info, dom, context);
		return fi_domain2(f->hfabric, info, dom, flags, context);
	}
	atomic_fetch_add(&f->domains, 1);
	in_domain_open++;
	int ret = hook_domain_open(f, info, dom, context);
	in_domain_open--;
	return ret;
}

static int fab_domain(struct fid_fabric *fabric, struct fi_info *info, struct fid_domain **dom,
		      void *context)
{
	return fab_domain2(fabric, info, dom, 0, context);
}

static int fab_passive_ep(struct fid_fabric *fabric, struct fi_info *info, struct fid_pep **pep,
			  void *context)
{
	struct hook_fabric *f = (struct hook_fabric *)fabric;
	struct fid_pep *hpep;
	if (atomic_load(&f->inner))
		return fi_passive_ep(f->hfabric, info, pep, context);
	int ret = fi_passive_ep(f->hfabric, info, &hpep, context);
	if (ret)
		return ret;
	return hook_pep_wrap(hpep, pep, context);
}

static int fab_eq_open(struct fid_fabric *fabric, struct fi_eq_attr *attr, struct fid_eq **eq,
		       void *context)
{
	struct hook_fabric *f = (struct hook_fabric *)fabric;
	if (atomic_load(&f->inner))
		return fi_eq_open(f->hfabric, attr, eq, context);
	struct hook_eq *e = calloc(1, sizeof(*e));
	if (!e)
		return -FI_ENOMEM;
	int ret = fi_eq_open(f->hfabric, attr, &e->heq, context);
	if (ret) {
		free(e);
		return ret;
	}
	e->eq.fid.fclass = FI_CLASS_EQ;
	e->eq.fid.context = context;
	e->eq.fid.ops = &hook_eq_fid_ops;
	e->eq.ops = &hook_eq_ops;
	*eq = &e->eq;
	return 0;
}

static int fab_wait_open(struct fid_fabric *fabric, struct fi_wait_attr *attr,
			 struct fid_wait **waitset)
{
	struct hook_fabric *f = (struct hook_fabric *)fabric;
	return fi_wait_open(f->hfabric, attr, waitset);
}

static int fab_trywait(struct fid_fabric *fabric, struct fid **fids, int count)
{
	struct hook_fabric *f = (struct hook_fabric *)fabric;
	struct fid *u[64];
	if (count < 0 || count > 64)
		return -FI_EINVAL;
	for (int i = 0; i < count; i++)
		u[i] = hook_unwrap(fids[i]);
	return fi_trywait(f->hfabric, u, count);
}

static struct fi_ops_fabric hook_fabric_ops = {
	.size = sizeof(struct fi_ops_fabric),
	.domain = fab_domain,
	.passive_ep = fab_passive_ep,
	.eq_open = fab_eq_open,
	.wait_open = fab_wait_open,
	.trywait = fab_trywait,
	.domain2 = fab_domain2,
};

/* The last fabric this thread hooked: a utility provider (ofi_rxm,
 * ofi_rxd) opens its core fabric just before libfabric hooks the utility's. */
static __thread struct hook_fabric *last_hooked;

static bool is_utility(const char *name)
{
	return name && !strncmp(name, "ofi_", 4) && strncmp(name, "ofi_hook", 8);
}

/* libfabric's call: attr->fabric is the fabric being hooked, context the
 * provider that opened it. */
static int hook_fabric(struct fi_fabric_attr *attr, struct fid_fabric **fabric, void *context)
{
	const struct fi_provider *prov = context;
	if (!attr || !attr->fabric)
		return -FI_EINVAL;
	struct hook_fabric *f = calloc(1, sizeof(*f));
	if (!f)
		return -FI_ENOMEM;
	f->hfabric = attr->fabric;
	f->prov = prov;
	f->fabric.fid.fclass = FI_CLASS_FABRIC;
	f->fabric.fid.context = attr->fabric->fid.context;
	f->fabric.fid.ops = &hook_fabric_fid_ops;
	f->fabric.ops = &hook_fabric_ops;
	f->fabric.api_version = attr->fabric->api_version;
	mrl_lock(&live_lock);
	if (prov && is_utility(prov->name) && last_hooked) {
		bool open = false;
		for (struct hook_fabric *l = live; l && !open; l = l->live_next)
			open = l == last_hooked;
		if (open && !atomic_load(&last_hooked->domains))
			atomic_store(&last_hooked->inner, true);
	}
	f->live_next = live;
	live = f;
	mrl_unlock(&live_lock);
	last_hooked = f;
	*fabric = &f->fabric;
	return 0;
}

static void hook_cleanup(void)
{
	free(tracked);
	tracked = NULL;
	ntracked = cap_tracked = 0;
}

struct fi_provider hook_prov = {
	.version = FI_VERSION(MRL_VERSION_MAJOR, MRL_VERSION_MINOR),
	.fi_version = FI_VERSION(1, 17),
	.name = HOOK_NAME,
	.getinfo = NULL, /* NULL: a hooking provider */
	.fabric = hook_fabric,
	.cleanup = hook_cleanup,
};

__attribute__((visibility("default"))) struct fi_provider *fi_prov_ini(void)
{
	return &hook_prov;
}
