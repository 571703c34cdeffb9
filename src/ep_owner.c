/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The owner side of the control protocol: peers open, close and list this
 * context's MRs; a peer's holds are let go when it is gone. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ep_int.h"
#include "fabric.h"

void mrl_ep_owner_open(struct mrl_ep *ep, struct mrl_peer *p, const struct msg_id *m)
{
	struct mrl_ctx *ctx = ep->ctx;
	struct msg_state r;
	memset(&r, 0, sizeof(r));
	mrl_ep_init_hdr(&r.h, MSG_OPEN_REP, sizeof(r), m->h.req);
	r.id = m->id;
	mrl_lock(&ctx->lock);
	struct mrl_mr *mr = mrl_ht_get(&ctx->ht, m->id);
	if (!mr || !(mr->access & (MRL_ACCESS_REMOTE_READ | MRL_ACCESS_REMOTE_WRITE))) {
		r.status = -ENOENT;
	} else {
		bool have = false;
		for (struct mrl_holder *h = mr->holders; h && !have; h = h->next)
			have = h->peer == &p->tp;
		/* req 0: a peer that holds the MR asks for its state again after a
		 * drop (ep_rma.c: mrl_ep_retry_probe). One that is no holder any
		 * more was cut off (its notice may have been lost in the drop): it
		 * is told so again, and never made a holder, nor told the key
		 * the MR came back under. */
		bool resync = m->h.req == 0;
		struct mrl_holder *h = have || resync ? NULL : calloc(1, sizeof(*h));
		if (resync && !have) {
			r.state = MRL_STATE_FENCED;
			r.cause = MRL_CAUSE_PEER_TIMEOUT;
			r.len = mr->len;
			r.gen = mr->gen;
		} else if (!have && !h) {
			r.status = -ENOMEM;
		} else {
			if (h) {
				h->peer = &p->tp;
				h->told_key = mr->key; /* the reply tells it */
				h->next = mr->holders;
				mr->holders = h;
			}
			r.state = mr->state;
			r.cause = mr->cause;
			r.key = mr->key;
			r.base = ctx->fab && ctx->fab->virt_addr ? (uintptr_t)mr->addr : 0;
			r.len = mr->len;
			r.valid_len = mr->state == MRL_STATE_FENCED ? 0 : mr->valid_len;
			r.gen = mr->gen;
			r.access = (uint8_t)(mr->access & (MRL_ACCESS_REMOTE_READ | MRL_ACCESS_REMOTE_WRITE));
			r.flags = mr->state == MRL_STATE_FENCED && mr->fenced_after ? MRL_SF_AFTER : 0;
		}
	}
	mrl_unlock(&ctx->lock);
	mrl_ep_send_locked(ep, p, &r, sizeof(r));
}

void mrl_ep_owner_close(struct mrl_ep *ep, struct mrl_peer *p, const struct msg_id *m)
{
	struct mrl_ctx *ctx = ep->ctx;
	mrl_lock(&ctx->lock);
	struct mrl_mr *mr = mrl_ht_get(&ctx->ht, m->id);
	if (mr)
		for (struct mrl_holder **hp = &mr->holders; *hp; hp = &(*hp)->next)
			if ((*hp)->peer == &p->tp) {
				struct mrl_holder *h = *hp;
				*hp = h->next;
				free(h);
				break;
			}
	mrl_unlock(&ctx->lock);
}

void mrl_ep_owner_list(struct mrl_ep *ep, struct mrl_peer *p, const struct msg_list_req *m)
{
	struct mrl_ctx *ctx = ep->ctx;
	struct msg_list_rep r;
	memset(&r, 0, sizeof(r));
	mrl_ep_init_hdr(&r.h, MSG_LIST_REP, sizeof(r), m->h.req);
	mrl_lock(&ctx->lock);
	uint32_t total = ctx->ht.nchunks * MRL_HT_CHUNK, i;
	for (i = m->start; i < total && r.n < MRL_LIST_IDS; i++) {
		struct mrl_ht_slot *s = &ctx->ht.chunks[i / MRL_HT_CHUNK][i % MRL_HT_CHUNK];
		if (s->mr && (s->mr->access & (MRL_ACCESS_REMOTE_READ | MRL_ACCESS_REMOTE_WRITE)))
			r.ids[r.n++] = s->mr->handle;
	}
	r.next = i < total ? i : 0;
	mrl_unlock(&ctx->lock);
	mrl_ep_send_locked(ep, p, &r, sizeof(r));
}

void mrl_peer_release_holders(struct mrl_ctx *ctx, struct mrl_peer *peer)
{
	for (uint32_t c = 0; c < ctx->ht.nchunks; c++)
		for (uint32_t i = 0; i < MRL_HT_CHUNK; i++) {
			struct mrl_mr *mr = ctx->ht.chunks[c][i].mr;
			if (!mr)
				continue;
			for (struct mrl_holder **hp = &mr->holders; *hp;)
				if ((*hp)->peer == &peer->tp) {
					struct mrl_holder *h = *hp;
					*hp = h->next;
					free(h);
				} else {
					hp = &(*hp)->next;
				}
		}
	mrl_brk_forget_peer(ctx, &peer->tp);
}
