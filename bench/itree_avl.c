/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The AVL interval tree the library used before its B+-tree (src/itree.c),
 * kept here only as the benchmark's baseline. Keys are (start, node address). */
#include "itree_avl.h"

static inline int32_t height(const struct avl_node *n) { return n ? n->height : 0; }
static inline uint64_t max_end(const struct avl_node *n) { return n ? n->max_end : 0; }

/* Every structural change ends in fix() bottom-up, so height and max_end of a
 * node only ever depend on already-correct children. */
static void fix(struct avl_node *n)
{
	int32_t hl = height(n->left), hr = height(n->right);
	uint64_t m = n->end;

	n->height = 1 + (hl > hr ? hl : hr);
	if (max_end(n->left) > m)
		m = max_end(n->left);
	if (max_end(n->right) > m)
		m = max_end(n->right);
	n->max_end = m;
}

static struct avl_node *rot_right(struct avl_node *n)
{
	struct avl_node *l = n->left;

	n->left = l->right;
	l->right = n;
	fix(n); /* n is now l's child: fix it first */
	fix(l);
	return l;
}

static struct avl_node *rot_left(struct avl_node *n)
{
	struct avl_node *r = n->right;

	n->right = r->left;
	r->left = n;
	fix(n);
	fix(r);
	return r;
}

/* Children are balanced and differ in height by at most 2. */
static struct avl_node *rebalance(struct avl_node *n)
{
	int32_t b = height(n->left) - height(n->right);

	if (b > 1) {
		if (height(n->left->left) < height(n->left->right))
			n->left = rot_left(n->left);
		return rot_right(n);
	}
	if (b < -1) {
		if (height(n->right->right) < height(n->right->left))
			n->right = rot_right(n->right);
		return rot_left(n);
	}
	fix(n);
	return n;
}

static int less(const struct avl_node *a, const struct avl_node *b)
{
	if (a->start != b->start)
		return a->start < b->start;
	return (uintptr_t)a < (uintptr_t)b;
}

static struct avl_node *ins(struct avl_node *root, struct avl_node *n)
{
	if (!root)
		return n;
	if (less(n, root))
		root->left = ins(root->left, n);
	else
		root->right = ins(root->right, n);
	return rebalance(root);
}

static struct avl_node *pop_min(struct avl_node *root, struct avl_node **min)
{
	if (!root->left) {
		*min = root;
		return root->right;
	}
	root->left = pop_min(root->left, min);
	return rebalance(root);
}

static struct avl_node *del(struct avl_node *root, struct avl_node *n)
{
	if (root == n) {
		struct avl_node *m, *r;

		if (!n->right)
			return n->left;
		/* Splice in the in-order successor so the key order is preserved. */
		r = pop_min(n->right, &m);
		m->left = n->left;
		m->right = r;
		return rebalance(m);
	}
	if (less(n, root))
		root->left = del(root->left, n);
	else
		root->right = del(root->right, n);
	return rebalance(root);
}

void avl_init(struct avl_tree *t)
{
	t->root = NULL;
	t->count = 0;
}

void avl_insert(struct avl_tree *t, struct avl_node *n)
{
	n->left = n->right = NULL;
	n->height = 1;
	n->max_end = n->end;
	t->root = ins(t->root, n);
	t->count++;
}

void avl_remove(struct avl_tree *t, struct avl_node *n)
{
	t->root = del(t->root, n);
	t->count--;
	n->left = n->right = NULL; /* don't leave dangling links into the tree */
}

static int walk(struct avl_node *c, uint64_t s, uint64_t e, avl_cb cb,
		void *arg)
{
	/* The right spine is a loop so only left descents use stack. */
	while (c && c->max_end > s) {
		int r = walk(c->left, s, e, cb, arg);

		if (r)
			return r;
		if (c->start >= e)
			return 0; /* everything further right starts later still */
		if (c->end > s && (r = cb(c, arg)))
			return r;
		c = c->right;
	}
	return 0;
}

int avl_overlap(const struct avl_tree *t, uint64_t start, uint64_t end, avl_cb cb,
		      void *arg)
{
	return walk(t->root, start, end, cb, arg);
}

struct avl_node *avl_first_overlap(const struct avl_tree *t, uint64_t start,
					       uint64_t end)
{
	struct avl_node *c = t->root;

	while (c) {
		/* If anything on the left reaches past start, either it overlaps or it
		 * starts at/after end, and then so does everything from c rightwards. */
		if (c->left && c->left->max_end > start)
			c = c->left;
		else if (c->start >= end)
			return NULL;
		else if (c->end > start)
			return c;
		else
			c = c->right;
	}
	return NULL;
}
