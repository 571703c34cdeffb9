/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* MR handles: a chunked table, so a stale or forged handle is caught (slot
 * generation) rather than followed. Depends on nothing else in the library. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "mrl_int.h"

/* ---- handle table: index+1 in the low 32 bits, slot generation above ---- */
int mrl_ht_add(struct mrl_htable *t, struct mrl_mr *mr, mrl_mr_t *h)
{
	uint32_t idx;
	if (t->free_head) {
		idx = t->free_head - 1;
	} else {
		uint32_t n = t->nchunks * MRL_HT_CHUNK;
		if (n >= UINT32_MAX - MRL_HT_CHUNK)
			return -ENOSPC;
		if (t->nchunks == t->cap_chunks) {
			uint32_t cap = t->cap_chunks ? t->cap_chunks * 2 : 16;
			struct mrl_ht_slot **c = realloc(t->chunks, cap * sizeof(*c));
			if (!c)
				return -ENOMEM;
			t->chunks = c;
			t->cap_chunks = cap;
		}
		struct mrl_ht_slot *chunk = calloc(MRL_HT_CHUNK, sizeof(*chunk));
		if (!chunk)
			return -ENOMEM;
		t->chunks[t->nchunks++] = chunk;
		/* thread the new slots onto the free list, lowest index first */
		for (uint32_t i = 0; i < MRL_HT_CHUNK; i++) {
			chunk[i].next_free = i + 1 < MRL_HT_CHUNK ? n + i + 2 : 0;
			chunk[i].gen = 1;
		}
		idx = n;
	}
	struct mrl_ht_slot *s = &t->chunks[idx / MRL_HT_CHUNK][idx % MRL_HT_CHUNK];
	t->free_head = s->next_free;
	s->mr = mr;
	t->used++;
	*h = ((uint64_t)s->gen << 32) | (idx + 1);
	return 0;
}

static struct mrl_ht_slot *ht_slot(struct mrl_htable *t, mrl_mr_t h)
{
	uint32_t low = (uint32_t)h;
	if (!low)
		return NULL;
	uint32_t idx = low - 1;
	if (idx / MRL_HT_CHUNK >= t->nchunks)
		return NULL;
	struct mrl_ht_slot *s = &t->chunks[idx / MRL_HT_CHUNK][idx % MRL_HT_CHUNK];
	if (!s->mr || s->gen != (uint32_t)(h >> 32))
		return NULL;
	return s;
}

struct mrl_mr *mrl_ht_get(struct mrl_htable *t, mrl_mr_t h)
{
	struct mrl_ht_slot *s = ht_slot(t, h);
	/* an MR still being registered (mrl_mr_reg) is nobody's yet */
	return s && s->mr && !s->mr->registering ? s->mr : NULL;
}

void mrl_ht_del(struct mrl_htable *t, mrl_mr_t h)
{
	struct mrl_ht_slot *s = ht_slot(t, h);
	if (!s)
		return;
	s->mr = NULL;
	if (++s->gen == 0)
		s->gen = 1;
	s->next_free = t->free_head;
	t->free_head = (uint32_t)h; /* index+1 */
	t->used--;
}

void mrl_ht_free(struct mrl_htable *t)
{
	for (uint32_t i = 0; i < t->nchunks; i++)
		free(t->chunks[i]);
	free(t->chunks);
	memset(t, 0, sizeof(*t));
}

