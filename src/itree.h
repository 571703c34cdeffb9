/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Interval index: a B+-tree keyed by (start, node address) whose wide nodes
 * hold their keys, ends and per-child max end in contiguous arrays, so a point
 * query is one root-to-leaf descent touching a few cache lines per level and
 * never the indexed objects until the answer. The node embedded in the
 * caller's object carries only its range. */
#ifndef MRL_ITREE_H
#define MRL_ITREE_H
#include <stddef.h>
#include <stdint.h>

struct mrl_itree_node {
	/* Half-open [start, end), start < end; the caller sets these before insert
	 * and must not change them while inserted: they are the key. */
	uint64_t start, end;
};
struct mrl_itree {
	void *root;      /* a leaf when height == 1, NULL when empty */
	size_t count;    /* nodes inserted */
	size_t bytes;    /* heap bytes the index holds (its tree nodes) */
	uint32_t height; /* levels, leaves included; 0 when empty */
};
void mrl_itree_init(struct mrl_itree *t);
/* Frees the index's own memory; the inserted nodes are the caller's. */
void mrl_itree_destroy(struct mrl_itree *t);
/* Duplicates (same start/end) are allowed: ties are ordered by node address.
 * 0, or -ENOMEM with the tree unchanged. */
int mrl_itree_insert(struct mrl_itree *t, struct mrl_itree_node *n);
/* n must be in t. Never fails. */
void mrl_itree_remove(struct mrl_itree *t, struct mrl_itree_node *n);
/* Visit every node with n->start < end && n->end > start, in ascending
 * (start, address) order. cb returns 0 to continue, nonzero to stop; that value
 * is returned. The tree must not be modified from cb. */
typedef int (*mrl_itree_cb)(struct mrl_itree_node *n, void *arg);
int mrl_itree_overlap(const struct mrl_itree *t, uint64_t start, uint64_t end, mrl_itree_cb cb,
		      void *arg);
/* First node (lowest (start, address)) overlapping [start, end), or NULL. */
struct mrl_itree_node *mrl_itree_first_overlap(const struct mrl_itree *t, uint64_t start,
					       uint64_t end);
/* Tests: walk the whole tree checking order, bounds, max ends, fill and
 * counts. 0, or -EUCLEAN with what is wrong in why. */
int mrl_itree_check(const struct mrl_itree *t, char *why, size_t len);
#endif
