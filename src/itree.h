/* Intrusive interval tree (AVL, augmented with each subtree's max end):
 * O(log n) insert/remove, O(log n + k) overlap queries. No allocation. */
#ifndef MRL_ITREE_H
#define MRL_ITREE_H
#include <stddef.h>
#include <stdint.h>

struct mrl_itree_node {
	struct mrl_itree_node *left, *right;
	uint64_t start, end; /* [start, end); fixed while inserted */
	uint64_t max_end;
	int32_t height;
};
struct mrl_itree {
	struct mrl_itree_node *root;
	size_t count;
};
void mrl_itree_init(struct mrl_itree *t);
void mrl_itree_insert(struct mrl_itree *t, struct mrl_itree_node *n);
void mrl_itree_remove(struct mrl_itree *t, struct mrl_itree_node *n);
/* Visit nodes with start < end && node end > start in (start, address) order;
 * a nonzero return from cb stops the walk and is returned. Do not modify the tree from cb. */
typedef int (*mrl_itree_cb)(struct mrl_itree_node *n, void *arg);
int mrl_itree_overlap(const struct mrl_itree *t, uint64_t start, uint64_t end, mrl_itree_cb cb,
		      void *arg);
struct mrl_itree_node *mrl_itree_first_overlap(const struct mrl_itree *t, uint64_t start,
					       uint64_t end);
#endif
