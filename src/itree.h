/* Intrusive interval tree (AVL, augmented with each subtree's max end) used to
 * find registrations overlapping a byte range without allocating. */
#ifndef MRL_ITREE_H
#define MRL_ITREE_H
#include <stddef.h>
#include <stdint.h>

struct mrl_itree_node {
	struct mrl_itree_node *left, *right;
	/* Half-open [start, end); the caller sets these before insert and must not
	 * change them while inserted, since they are the sort key and feed max_end. */
	uint64_t start, end;
	uint64_t max_end; /* max end in this subtree, lets queries prune */
	int32_t height;
};
struct mrl_itree {
	struct mrl_itree_node *root;
	size_t count;
};
void mrl_itree_init(struct mrl_itree *t);
/* Duplicates (same start/end) are allowed: ties are ordered by node address. */
void mrl_itree_insert(struct mrl_itree *t, struct mrl_itree_node *n);
/* n must be in t. */
void mrl_itree_remove(struct mrl_itree *t, struct mrl_itree_node *n);
/* Visit every node with n->start < end && n->end > start, in ascending
 * (start, address) order. cb returns 0 to continue, nonzero to stop; that value
 * is returned. The tree must not be modified from cb. */
typedef int (*mrl_itree_cb)(struct mrl_itree_node *n, void *arg);
int mrl_itree_overlap(const struct mrl_itree *t, uint64_t start, uint64_t end, mrl_itree_cb cb,
		      void *arg);
/* First node (lowest start) overlapping [start, end), or NULL. */
struct mrl_itree_node *mrl_itree_first_overlap(const struct mrl_itree *t, uint64_t start,
					       uint64_t end);
#endif
