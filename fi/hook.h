/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* libmrlease-fi.so, the libfabric hooking provider (FI_HOOK=mrlease): the
 * wrapper objects its files share. Written against libfabric's public ops
 * tables only (Debian ships no ofi_hook.h). */
#ifndef MRL_FI_HOOK_H
#define MRL_FI_HOOK_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include <rdma/fabric.h>
#include <rdma/fi_atomic.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_eq.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>
#include <rdma/fi_tagged.h>
#include <rdma/providers/fi_prov.h>

#include "mrlease.h"

#define HOOK_NAME "ofi_hook_mrlease"

/* A fabric the hook sits on. An inner one (the core fabric a utility
 * provider such as ofi_rxm opens for itself) hands out the provider's own
 * objects untouched: only what the application opens is leased. */
struct hook_fabric {
	struct fid_fabric fabric;
	struct fid_fabric *hfabric;
	const struct fi_provider *prov;   /* the provider of the hooked fabric */
	atomic_bool inner;
	atomic_int domains;               /* domains opened on it (an inner one has none yet) */
	struct hook_fabric *live_next;    /* hook.c: the open ones */
};

struct hook_counts {
	atomic_ullong mrs, leased, unleased, breaks, restores, fences, changed, errors;
	atomic_ullong eps, seps, txctxs;    /* endpoints wrapped: plain, scalable, their tx contexts */
	atomic_ullong regs;                 /* registrations made with the provider (restores included) */
};

/* An application-facing domain: one mrlease context, its event thread. */
struct hook_domain {
	struct fid_domain domain;
	struct hook_domain *next;         /* domain.c: the open ones */
	struct fid_domain *hdomain;
	struct hook_fabric *fab;
	uint64_t mr_mode;                 /* what the application was given */
	bool keys_ours;                   /* the application expects provider keys; the hook picks them */
	size_t key_size;                  /* the provider's key size in bytes (0: unsaid) */
	bool strict_keys;                 /* MRLEASE_FI_STRICT_KEYS: a fresh provider key per
					   * registration under a stable virtual key */
	const char *prov_name;
	mrl_ctx *ctx;                     /* NULL: leasing off (could not start; logged) */
	unsigned policy;                  /* enum mrl_policy for its MRs */
	unsigned tail;                    /* enum board_tail for its MRs (MRLEASE_FI_TAIL) */
	unsigned rx_bits;                 /* its address vector's receive context bits */
	pthread_t ev_thread;
	int stop_fd;                      /* eventfd: wakes the event thread */
	atomic_bool stopping;             /* it ends when woken */
	bool ev_running;
	struct hook_counts n;
	pthread_mutex_t mrs_lock;         /* leaf */
	struct hook_mr *mrs;              /* its leased MRs, for the event thread */
	/* pauses waiting for hooked initiators' operations to drain (reg.c) */
	pthread_mutex_t q_lock;           /* leaf */
	struct hook_quiesce *quiescing;
};
struct hook_quiesce {
	struct hook_quiesce *next;
	struct hook_mr *hm;
	uint32_t seq;
};
/* reg.c: the pauses whose operations have drained, told to the break
 * engine; returns whether some still wait */
bool hook_quiesce_poll(struct hook_domain *d);
void hook_quiesce_forget(struct hook_domain *d, struct hook_mr *hm);

#define HOOK_MR_BINDS 4
/* The application's MR. Its key and descriptor (this struct) never change;
 * the provider registration under it (hmr) comes and goes with breaks. */
struct hook_mr {
	struct fid_mr mr;
	struct hook_mr *next;             /* hook_domain.mrs, mrs_lock */
	struct fid_mr *_Atomic hmr;       /* NULL while fenced or revoked */
	_Atomic uint64_t pkey;            /* fi_mr_key(hmr): the application's key but in strict mode */
	bool virt_key;                    /* strict mode, leased: mr.key is virtual */
	void *_Atomic hdesc;              /* fi_mr_desc(hmr), NULL with it */
	struct hook_domain *dom;
	mrl_mr_t lease;                   /* 0: not leased (passed through) */
	struct fi_mr_attr attr;           /* what the application asked, for re-registration */
	struct iovec iov;                 /* attr.mr_iov when leased (one range) */
	uint64_t flags;
	struct { struct fid *fid; uint64_t flags; } binds[HOOK_MR_BINDS];
	int nbinds;
	bool enabled;
	struct board_ent *bent;           /* its entry on the state board, NULL if none */
	char path[256];                   /* the backing, for the log */
};

struct hook_ep {
	struct fid_ep ep;
	struct fid_ep *hep;
	struct hook_domain *dom;
	bool selective;                   /* FI_SELECTIVE_COMPLETION on its transmit queue */
	struct fid *txcq;                 /* the hook's CQ of its transmit side, NULL if none */
	uint64_t txflags;                 /* its transmit side's default operation flags */
	struct fid_cntr *wcntr, *rcntr;   /* the hook's write/read counters bound to it */
	struct fid_av *av;                /* the provider's address vector bound to it */
	bool fast;                        /* every plain RMA completes on a CQ of the hook's,
					   * no counter bound: ep.c's fast path */
};

struct hook_pep {
	struct fid_pep pep;
	struct fid_pep *hpep;
};

struct hook_eq {
	struct fid_eq eq;
	struct fid_eq *heq;
};

/* ---- hook.c ---- */
extern struct fi_provider hook_prov;
struct fi_provider *fi_prov_ini(void);
/* The provider object under one of the hook's (or fid itself). */
struct fid *hook_unwrap(struct fid *fid);
/* The hook's object wrapping the provider's object fid, NULL if none. */
struct fid *hook_wrapper_of(const struct fid *fid);
void hook_track(struct fid *under, struct fid *ours);
void hook_untrack(struct fid *under);
extern struct fi_ops hook_fabric_fid_ops, hook_eq_fid_ops;
/* the same call on the provider's object (binding the provider's object
 * under bfid where it is the hook's) */
int hook_fwd_bind(struct fid *fid, struct fid *bfid, uint64_t flags);
int hook_fwd_control(struct fid *fid, int command, void *arg);
int hook_fwd_ops_open(struct fid *fid, const char *name, uint64_t flags, void **ops, void *context);
int hook_fwd_tostr(const struct fid *fid, char *buf, size_t len);
int hook_fwd_ops_set(struct fid *fid, const char *name, uint64_t flags, void *ops, void *context);
#define HOOK_FID_OPS(closefn)                                                                \
	{                                                                                    \
		.size = sizeof(struct fi_ops), .close = closefn, .bind = hook_fwd_bind,      \
		.control = hook_fwd_control, .ops_open = hook_fwd_ops_open,                  \
		.tostr = hook_fwd_tostr, .ops_set = hook_fwd_ops_set,                        \
	}

/* ---- domain.c ---- */
int hook_domain_open(struct hook_fabric *fab, struct fi_info *info, struct fid_domain **out,
		     void *context);
extern struct fi_ops hook_domain_fid_ops;

/* ---- mr.c ---- */
/* an unguessable key to ask the provider for (0: no key material) */
uint64_t hook_new_key(struct hook_domain *d);
extern struct fi_ops_mr hook_mr_ops;
extern struct fi_ops hook_mr_fid_ops;
static inline void *hook_desc(void *desc)
{
	return desc ? atomic_load_explicit(&((struct hook_mr *)desc)->hdesc, memory_order_acquire)
		    : NULL;
}

/* ---- cq.c: completion queues, and operations counted in flight ---- */
struct board_ent;
/* An operation the hook posts with its own context (cq.c). */
struct hook_op {
	struct fi_context2 prov;   /* first: FI_CONTEXT/FI_CONTEXT2 providers use it */
	void *app;
	struct board_ent *e;
	struct hook_op *next;
	bool silent;               /* an inject posted with a completion only the hook reads */
	void *bounce;              /* its operand's copy, freed with it (malloc) */
};
/* Each thread's free operations: thread-local in the initial-exec model (a
 * load from the thread pointer; the general model of a dlopened object
 * calls __tls_get_addr at each use). */
#define HOOK_TLS __attribute__((tls_model("initial-exec")))
extern __thread struct hook_op *hook_local_free HOOK_TLS;
extern __thread unsigned hook_nlocal HOOK_TLS;
struct hook_op *hook_op_get_slow(struct board_ent *e, void *app);
/* an operation context counted on e for the application's context app
 * (NULL: none left) */
static inline struct hook_op *hook_op_get(struct board_ent *e, void *app)
{
	struct hook_op *op = hook_local_free;
	if (!op)
		return hook_op_get_slow(e, app);
	hook_local_free = op->next;
	hook_nlocal--;
	op->app = app; /* op->prov is the provider's to fill */
	op->e = e;
	op->silent = false;
	op->bounce = NULL;
	return op;
}
void hook_op_put(struct hook_op *op);
/* its completion is the hook's alone: taken out of what the application
 * reads; bounce (malloc, or NULL): freed with it */
void hook_op_silence(struct hook_op *op, void *bounce);
/* whether fid is a CQ of the hook's (it can take its own entries out) */
bool hook_cq_ours(const struct fid *fid);
/* an operation the provider refused: counted out again */
void hook_op_cancel(struct hook_op *op);
int hook_cq_open(struct fid_domain *hdomain, struct fi_cq_attr *attr, struct fid_cq **out,
		 void *context);
struct fid *hook_cq_under(struct fid *fid);
/* a successful completion of ctx the hook gives itself on the hook's CQ
 * fid (0, or -FI_ENOSYS when fid is not one of the hook's) */
int hook_cq_synth(struct fid *fid, void *ctx, uint64_t flags);
extern struct fi_ops hook_cq_fid_ops;

/* ---- cntr.c: counters, and operations counted out through them ---- */
int hook_cntr_open(struct fid_domain *hdomain, struct fi_cntr_attr *attr, struct fid_cntr **out,
		   void *context);
struct fid *hook_cntr_under(struct fid *fid);
extern struct fi_ops hook_cntr_fid_ops;
/* an operation posted that will bump the hook's counter cn; e: its board
 * entry, counted out once the counter shows everything posted done */
void hook_cntr_issue(struct fid_cntr *cn, struct board_ent *e);
/* operations counted out when their counter showed them done */
extern atomic_ullong hook_by_cntr;
/* an operation the hook completed itself: the counter bumped for it */
void hook_cntr_synth(struct fid_cntr *cn);

/* ---- ep.c ---- */
/* txflags: the transmit side's default operation flags (FI_COMPLETION) */
int hook_ep_wrap(struct hook_domain *dom, struct fid_ep *hep, uint64_t txflags,
		 struct fid_ep **out, void *context);
int hook_pep_wrap(struct fid_pep *hpep, struct fid_pep **out, void *context);
extern struct fi_ops hook_ep_fid_ops, hook_pep_fid_ops;
/* posts to a paused MR of another hooked process answered -FI_EAGAIN (held
 * back), and to what it no longer serves answered -FI_EKEYREJECTED */
extern atomic_ullong hook_held, hook_refused, hook_discarded;

/* ---- reg.c: the registrar whose device is the provider's domain ---- */
struct mrl_registrar_ops;
extern const struct mrl_registrar_ops hook_registrar;
/* The MR the next registration on this thread is made for (mrl_mr_reg
 * calls the registrar inline). */
void hook_reg_request(struct hook_mr *hm);
int hook_mr_under_reg(struct hook_mr *hm);
void hook_mr_under_close(struct hook_mr *hm);

/* ---- log.c ---- */
void hook_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
bool hook_log_on(void);
int hook_events_start(struct hook_domain *dom);
void hook_events_stop(struct hook_domain *dom);
void hook_summary(struct hook_domain *dom);

#endif
