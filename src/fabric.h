/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The libfabric objects the libfabric registrar (reg_fabric.c) opens and
 * the native data path (ep.c) uses: private to those two. */
#ifndef MRL_FABRIC_H
#define MRL_FABRIC_H

#include <pthread.h>
#include <stdbool.h>

struct fi_info;
struct fid_fabric;
struct fid_domain;
struct mrl_lbuf;
struct fab_tomb;
struct mrl_fabric {
	struct fi_info *info;
	struct fid_fabric *fabric;
	struct fid_domain *domain;
	bool prov_key;   /* FI_MR_PROV_KEY: keys change on restore */
	bool virt_addr;  /* FI_MR_VIRT_ADDR: remote addresses are virtual */
	bool mr_local;   /* FI_MR_LOCAL: local buffers need descriptors */
	bool pins;       /* the provider pins registered pages (verbs, efa, ...) */
	pthread_mutex_t lock;
	/* Provider progress (which looks up the keys of incoming RMA) holds it
	 * shared; swapping a key between an MR and its scratch stand-in holds
	 * it exclusive, so no RMA ever meets the key unregistered (tcp drops
	 * the whole connection then). Taken with nothing of the library's
	 * locks needed inside it: leaf. */
	pthread_rwlock_t gate;
	struct mrl_lbuf *lbufs;   /* cached local-buffer registrations */
	/* deregistered keys kept over scratch (reg_fabric.c), under lock: oldest
	 * first (the first to go when there are too many), and hashed by key */
	struct fab_tomb *tomb_old, *tomb_new;
	struct fab_tomb **tomb_hash;
	unsigned ntombs;
};

#endif
