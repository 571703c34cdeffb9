/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* A call held at its break under MRL_POLICY_NOTIFY: the answerer thread
 * takes the BREAK event, notes, while the call is still held, whether it
 * has returned and whether what it changes is intact, then answers. */
#ifndef MRL_TEST_HELD_H
#define MRL_TEST_HELD_H

#include <stdatomic.h>

#include "helpers.h"

struct held {
	mrl_ctx *ctx;
	mrl_mr_t mr;
	volatile char *p[2]; /* bytes the change will clear ('A' until then); p[1] may be NULL */
	int fd;              /* with size: the object ... */
	off_t size;          /* ... whose size must still be this (0: none) */
	atomic_int returned; /* set by the caller once the call returned */
	int got, intact, still_held;
	uint32_t cause;
};

static inline void *answerer(void *arg)
{
	struct held *h = arg;
	struct mrl_event ev;
	h->got = t_wait_event(h->ctx, MRL_EVENT_BREAK, h->mr, T_HANG_MS, &ev) == 0;
	if (h->got) {
		struct stat st;
		h->cause = ev.cause;
		h->still_held = !atomic_load(&h->returned);
		h->intact = *h->p[0] == 'A' && (!h->p[1] || *h->p[1] == 'A') &&
			    (!h->size || (fstat(h->fd, &st) == 0 && st.st_size == h->size));
	}
	mrl_mr_restore(h->ctx, h->mr);
	return NULL;
}

#endif
