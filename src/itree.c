/* AVL interval tree: balance by height, keep max_end current through rotations.
 * Keys are (start, node address) so equal ranges are distinct and ordered. */
#include "itree.h"

static inline int32_t h(const struct mrl_itree_node *n) { return n ? n->height : 0; }
static inline uint64_t mx(const struct mrl_itree_node *n) { return n ? n->max_end : 0; }

static void fix(struct mrl_itree_node *n)
{
	int32_t hl = h(n->left), hr = h(n->right);
	n->height = 1 + (hl > hr ? hl : hr);
	uint64_t m = n->end;
	if (mx(n->left) > m)
		m = mx(n->left);
	if (mx(n->right) > m)
		m = mx(n->right);
	n->max_end = m;
}

static struct mrl_itree_node *rot_right(struct mrl_itree_node *n)
{
	struct mrl_itree_node *l = n->left;
	n->left = l->right;
	l->right = n;
	fix(n);
	fix(l);
	return l;
}

static struct mrl_itree_node *rot_left(struct mrl_itree_node *n)
{
	struct mrl_itree_node *r = n->right;
	n->right = r->left;
	r->left = n;
	fix(n);
	fix(r);
	return r;
}

static struct mrl_itree_node *balance(struct mrl_itree_node *n)
{
	fix(n);
	int32_t b = h(n->left) - h(n->right);
	if (b > 1) {
		if (h(n->left->left) < h(n->left->right))
			n->left = rot_left(n->left);
		return rot_right(n);
	}
	if (b < -1) {
		if (h(n->right->right) < h(n->right->left))
			n->right = rot_right(n->right);
		return rot_left(n);
	}
	return n;
}

static int less(const struct mrl_itree_node *a, const struct mrl_itree_node *b)
{
	return a->start < b->start || (a->start == b->start && (uintptr_t)a < (uintptr_t)b);
}

static struct mrl_itree_node *ins(struct mrl_itree_node *root, struct mrl_itree_node *n)
{
	if (!root)
		return n;
	if (less(n, root))
		root->left = ins(root->left, n);
	else
		root->right = ins(root->right, n);
	return balance(root);
}

static struct mrl_itree_node *pop_min(struct mrl_itree_node *root, struct mrl_itree_node **min)
{
	if (!root->left) {
		*min = root;
		return root->right;
	}
	root->left = pop_min(root->left, min);
	return balance(root);
}

static struct mrl_itree_node *del(struct mrl_itree_node *root, struct mrl_itree_node *n)
{
	if (!root)
		return NULL; /* not in the tree: caller's bug, tree unchanged */
	if (root == n) {
		struct mrl_itree_node *l = n->left, *r = n->right, *m;
		if (!r)
			return l;
		r = pop_min(r, &m);
		m->left = l;
		m->right = r;
		return balance(m);
	}
	if (less(n, root))
		root->left = del(root->left, n);
	else
		root->right = del(root->right, n);
	return balance(root);
}

void mrl_itree_init(struct mrl_itree *t)
{
	t->root = NULL;
	t->count = 0;
}

void mrl_itree_insert(struct mrl_itree *t, struct mrl_itree_node *n)
{
	n->left = n->right = NULL;
	n->height = 1;
	n->max_end = n->end;
	t->root = ins(t->root, n);
	t->count++;
}

void mrl_itree_remove(struct mrl_itree *t, struct mrl_itree_node *n)
{
	t->root = del(t->root, n);
	t->count--;
	n->left = n->right = NULL;
}

static int walk(struct mrl_itree_node *n, uint64_t s, uint64_t e, mrl_itree_cb cb, void *arg)
{
	while (n) {
		if (n->max_end <= s)
			return 0; /* nothing below reaches s */
		if (n->left) {
			int r = walk(n->left, s, e, cb, arg);
			if (r)
				return r;
		}
		if (n->start >= e)
			return 0; /* everything to the right starts later still */
		if (n->end > s) {
			int r = cb(n, arg);
			if (r)
				return r;
		}
		n = n->right;
	}
	return 0;
}

int mrl_itree_overlap(const struct mrl_itree *t, uint64_t start, uint64_t end, mrl_itree_cb cb,
		      void *arg)
{
	return walk(t->root, start, end, cb, arg);
}

static int first_cb(struct mrl_itree_node *n, void *arg)
{
	*(struct mrl_itree_node **)arg = n;
	return 1;
}

struct mrl_itree_node *mrl_itree_first_overlap(const struct mrl_itree *t, uint64_t start,
					       uint64_t end)
{
	struct mrl_itree_node *found = NULL;
	walk(t->root, start, end, first_cb, &found);
	return found;
}
