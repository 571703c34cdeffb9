/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* An application-facing domain: the provider's domain under it, one
 * mrlease context leasing its MRs, and the endpoints that carry their
 * descriptors. Queues, counters and address vectors are the provider's own. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "board.h"
#include "hook.h"
#include "mrl_int.h"

static int dom_av_open(struct fid_domain *domain, struct fi_av_attr *attr, struct fid_av **av,
		       void *context)
{
	struct hook_domain *d = (struct hook_domain *)domain;
	if (attr) /* fi_rx_addr's bits, for the board relay's address lookups */
		d->rx_bits = (unsigned)attr->rx_ctx_bits;
	return fi_av_open(d->hdomain, attr, av, context);
}

static int dom_cq_open(struct fid_domain *domain, struct fi_cq_attr *attr, struct fid_cq **cq,
		       void *context)
{
	return hook_cq_open(((struct hook_domain *)domain)->hdomain, attr, cq, context);
}

static int dom_cntr_open(struct fid_domain *domain, struct fi_cntr_attr *attr,
			 struct fid_cntr **cntr, void *context)
{
	return hook_cntr_open(((struct hook_domain *)domain)->hdomain, attr, cntr, context);
}

static int dom_poll_open(struct fid_domain *domain, struct fi_poll_attr *attr,
			 struct fid_poll **pollset)
{
	return fi_poll_open(((struct hook_domain *)domain)->hdomain, attr, pollset);
}

static int dom_stx_ctx(struct fid_domain *domain, struct fi_tx_attr *attr, struct fid_stx **stx,
		       void *context)
{
	return fi_stx_context(((struct hook_domain *)domain)->hdomain, attr, stx, context);
}

static int dom_endpoint2(struct fid_domain *domain, struct fi_info *info, struct fid_ep **ep,
			 uint64_t flags, void *context)
{
	struct hook_domain *d = (struct hook_domain *)domain;
	struct fid_ep *h;
	int ret = flags ? fi_endpoint2(d->hdomain, info, &h, flags, context)
			: fi_endpoint(d->hdomain, info, &h, context);
	return ret ? ret : hook_ep_wrap(d, h, info && info->tx_attr ? info->tx_attr->op_flags : 0, ep, context);
}

static int dom_endpoint(struct fid_domain *domain, struct fi_info *info, struct fid_ep **ep,
			void *context)
{
	return dom_endpoint2(domain, info, ep, 0, context);
}

static int dom_scalable_ep(struct fid_domain *domain, struct fi_info *info, struct fid_ep **sep,
			   void *context)
{
	struct hook_domain *d = (struct hook_domain *)domain;
	struct fid_ep *h;
	int ret = fi_scalable_ep(d->hdomain, info, &h, context);
	return ret ? ret : hook_ep_wrap(d, h, info && info->tx_attr ? info->tx_attr->op_flags : 0, sep, context);
}

static int dom_srx_ctx(struct fid_domain *domain, struct fi_rx_attr *attr, struct fid_ep **rx,
		       void *context)
{
	struct hook_domain *d = (struct hook_domain *)domain;
	struct fid_ep *h;
	int ret = fi_srx_context(d->hdomain, attr, &h, context);
	return ret ? ret : hook_ep_wrap(d, h, 0, rx, context);
}

static int dom_query_atomic(struct fid_domain *domain, enum fi_datatype dt, enum fi_op op,
			    struct fi_atomic_attr *attr, uint64_t flags)
{
	return fi_query_atomic(((struct hook_domain *)domain)->hdomain, dt, op, attr, flags);
}

static int dom_query_collective(struct fid_domain *domain, enum fi_collective_op coll,
				struct fi_collective_attr *attr, uint64_t flags)
{
	(void)domain, (void)coll, (void)attr, (void)flags;
	return -FI_ENOSYS; /* collectives are not carried through the hook */
}

static struct fi_ops_domain hook_domain_ops = {
	.size = sizeof(struct fi_ops_domain),
	.av_open = dom_av_open,
	.cq_open = dom_cq_open,
	.endpoint = dom_endpoint,
	.scalable_ep = dom_scalable_ep,
	.cntr_open = dom_cntr_open,
	.poll_open = dom_poll_open,
	.stx_ctx = dom_stx_ctx,
	.srx_ctx = dom_srx_ctx,
	.query_atomic = dom_query_atomic,
	.query_collective = dom_query_collective,
	.endpoint2 = dom_endpoint2,
};

/* the domains open now: their summary at exit if never closed */
static pthread_mutex_t open_lock = PTHREAD_MUTEX_INITIALIZER;
static struct hook_domain *open_doms;

static void open_del(struct hook_domain *d)
{
	mrl_lock(&open_lock);
	for (struct hook_domain **p = &open_doms; *p; p = &(*p)->next)
		if (*p == d) {
			*p = d->next;
			break;
		}
	mrl_unlock(&open_lock);
}

__attribute__((destructor)) static void summary_at_exit(void)
{
	if (pthread_mutex_trylock(&open_lock))
		return; /* exiting from inside the hook: no summary rather than a deadlock */
	for (struct hook_domain *d = open_doms; d; d = d->next)
		hook_summary(d);
	pthread_mutex_unlock(&open_lock);
}

static int dom_close(struct fid *fid)
{
	struct hook_domain *d = (struct hook_domain *)fid;
	open_del(d);
	hook_events_stop(d);
	if (d->ctx)
		mrl_ctx_destroy(d->ctx); /* deregisters what the application left */
	d->ctx = NULL;
	int ret = fi_close(&d->hdomain->fid);
	if (ret)
		return ret;
	hook_summary(d);
	pthread_mutex_destroy(&d->mrs_lock);
	pthread_mutex_destroy(&d->q_lock);
	free((char *)d->prov_name);
	free(d);
	return 0;
}
struct fi_ops hook_domain_fid_ops = HOOK_FID_OPS(dom_close);

/* MRLEASE_FI_TAIL=refuse|discard; unset: discard under an MPI launcher
 * (Open MPI's btl/ofi aborts the job on any error an operation meets),
 * refuse otherwise */
static unsigned tail_from_env(void)
{
	const char *t = getenv("MRLEASE_FI_TAIL");
	if (t && !strcmp(t, "discard"))
		return BT_DISCARD;
	if (t && strcmp(t, "refuse"))
		hook_log("MRLEASE_FI_TAIL=%s unknown (refuse, discard): refuse", t);
	if (t)
		return BT_REFUSE;
	return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK") ? BT_DISCARD
											  : BT_REFUSE;
}

static unsigned policy_from_env(void)
{
	const char *p = getenv("MRLEASE_POLICY");
	if (!p || !strcmp(p, "notify"))
		return MRL_POLICY_NOTIFY; /* the hook answers: the breaker's pid is found */
	if (!strcmp(p, "restore"))
		return MRL_POLICY_RESTORE;
	if (!strcmp(p, "fence"))
		return MRL_POLICY_FENCE;
	hook_log("MRLEASE_POLICY=%s unknown (notify, restore, fence): notify", p);
	return MRL_POLICY_NOTIFY;
}

/* The provider's domain, with the keys the hook chooses where the
 * application was promised provider keys and the provider also takes
 * requested ones: a restore then keeps the key. */
static int open_under(struct hook_domain *d, struct hook_fabric *fab, struct fi_info *info,
		      void *context)
{
	if ((d->mr_mode & FI_MR_PROV_KEY) && !getenv("MRLEASE_PROV_KEYS")) {
		struct fi_info *dup = fi_dupinfo(info);
		if (dup) {
			dup->domain_attr->mr_mode &= ~(uint64_t)FI_MR_PROV_KEY;
			int ret = fi_domain(fab->hfabric, dup, &d->hdomain, context);
			fi_freeinfo(dup);
			if (!ret) {
				d->keys_ours = true;
				return 0;
			}
		}
	}
	return fi_domain(fab->hfabric, info, &d->hdomain, context);
}

int hook_domain_open(struct hook_fabric *fab, struct fi_info *info, struct fid_domain **out,
		     void *context)
{
	if (!info || !info->domain_attr || !info->fabric_attr)
		return -FI_EINVAL;
	struct hook_domain *d = calloc(1, sizeof(*d));
	if (!d)
		return -FI_ENOMEM;
	d->fab = fab;
	d->mr_mode = info->domain_attr->mr_mode;
	d->stop_fd = -1;
	d->key_size = info->domain_attr ? info->domain_attr->mr_key_size : 0;
	const char *sk = getenv("MRLEASE_FI_STRICT_KEYS");
	d->strict_keys = sk && *sk == '1';
	pthread_mutex_init(&d->mrs_lock, NULL);
	pthread_mutex_init(&d->q_lock, NULL);
	int ret = open_under(d, fab, info, context);
	if (ret) {
		pthread_mutex_destroy(&d->mrs_lock);
		pthread_mutex_destroy(&d->q_lock);
		free(d);
		return ret;
	}
	const char *pn = info->fabric_attr->prov_name;
	if (!pn) /* an info from a connection request may not name it */
		pn = fab->prov && fab->prov->name ? fab->prov->name : "?";
	d->prov_name = strdup(pn);
	d->policy = policy_from_env();
	d->tail = tail_from_env();
	d->domain.fid.fclass = FI_CLASS_DOMAIN;
	d->domain.fid.context = context;
	d->domain.fid.ops = &hook_domain_fid_ops;
	d->domain.ops = &hook_domain_ops;
	d->domain.mr = &hook_mr_ops;

	struct mrl_ctx_opts o = {.size = sizeof(o), .provider = d->prov_name};
	const char *dl = getenv("MRLEASE_DEADLINE_MS");
	if (dl)
		o.deadline_ms = (unsigned)strtoul(dl, NULL, 0);
	ret = mrl_ctx_create_dev(&o, &hook_registrar, d, &d->ctx);
	if (ret) {
		hook_log("domain on %s: leasing off, MRs registered as they are: %s", d->prov_name,
			 mrl_last_error());
		d->ctx = NULL;
	} else if ((ret = hook_events_start(d))) {
		hook_log("domain on %s: no event thread (%s): leasing off", d->prov_name,
			 strerror(-ret));
		mrl_ctx_destroy(d->ctx);
		d->ctx = NULL;
	}
	if (d->ctx) {
		char w[128] = "";
		int bits = mrl_ctx_watchers(d->ctx);
		for (unsigned b = 1; b <= MRL_WATCH_VERIFY; b <<= 1)
			if (bits > 0 && (bits & (int)b))
				snprintf(w + strlen(w), sizeof(w) - strlen(w), "%s%s", *w ? "," : "",
					 mrl_watcher_str(b));
		hook_log("hooked domain on %s: leasing on (watchers %s; mr_mode %#llx; keys %s; policy %s; "
			 "truncated tails %s)",
			 d->prov_name, *w ? w : "none", (unsigned long long)d->mr_mode,
			 d->strict_keys ? "strict (a fresh provider key per registration, translated)"
			 : d->keys_ours ? "chosen by the hook" : "the provider's",
			 d->policy == MRL_POLICY_NOTIFY ? "notify" :
			 d->policy == MRL_POLICY_FENCE ? "fence" : "restore",
			 d->tail == BT_DISCARD ? "discard" : "refuse");
	}
	mrl_lock(&open_lock);
	d->next = open_doms;
	open_doms = d;
	mrl_unlock(&open_lock);
	*out = &d->domain;
	return 0;
}
