/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The old AVL interval tree, a baseline for bench/index.c only: nodes embedded
 * in the indexed objects, augmented with each subtree's max end. */
#ifndef BENCH_ITREE_AVL_H
#define BENCH_ITREE_AVL_H
#include <stddef.h>
#include <stdint.h>

struct avl_node {
	struct avl_node *left, *right;
	/* Half-open [start, end); the caller sets these before insert and must not
	 * change them while inserted, since they are the sort key and feed max_end. */
	uint64_t start, end;
	uint64_t max_end; /* max end in this subtree, lets queries prune */
	int32_t height;
};
struct avl_tree {
	struct avl_node *root;
	size_t count;
};
void avl_init(struct avl_tree *t);
/* Duplicates (same start/end) are allowed: ties are ordered by node address. */
void avl_insert(struct avl_tree *t, struct avl_node *n);
/* n must be in t. */
void avl_remove(struct avl_tree *t, struct avl_node *n);
/* Visit every node with n->start < end && n->end > start, in ascending
 * (start, address) order. cb returns 0 to continue, nonzero to stop; that value
 * is returned. The tree must not be modified from cb. */
typedef int (*avl_cb)(struct avl_node *n, void *arg);
int avl_overlap(const struct avl_tree *t, uint64_t start, uint64_t end, avl_cb cb,
		      void *arg);
/* First node (lowest start) overlapping [start, end), or NULL. */
struct avl_node *avl_first_overlap(const struct avl_tree *t, uint64_t start,
					       uint64_t end);
#endif
