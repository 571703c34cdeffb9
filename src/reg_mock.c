/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Mock registrar: a device that only remembers which key maps which range.
 * Lets the state machine be tested without a fabric. Tests can make its
 * registration of one address block until they let it go (a device call
 * that takes as long as pinning a large range does). */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "mrl_int.h"

struct mock_mr {
	struct mock_mr *next;
	void *addr;
	size_t len;
	uint64_t key;
};
struct mock_dev {
	pthread_mutex_t lock;
	struct mock_mr *mrs;
	pthread_cond_t cv;    /* with lock: block_addr or blocked changed */
	void *block_addr;     /* a registration of this address waits while set */
	int blocked;          /* registrations waiting now */
};

static int mock_open(struct mrl_ctx *ctx, void **dev)
{
	(void)ctx;
	struct mock_dev *d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	pthread_mutex_init(&d->lock, NULL);
	pthread_cond_init(&d->cv, NULL);
	*dev = d;
	return 0;
}

static int mock_reg(void *dev, void *addr, size_t len, unsigned access, uint64_t *key, void **h)
{
	struct mock_dev *d = dev;
	(void)access;
	mrl_lock(&d->lock);
	while (d->block_addr && d->block_addr == addr) {
		d->blocked++;
		pthread_cond_broadcast(&d->cv);
		pthread_cond_wait(&d->cv, &d->lock);
		d->blocked--;
	}
	for (struct mock_mr *m = d->mrs; m; m = m->next)
		if (m->key == *key) {
			mrl_unlock(&d->lock);
			return -EEXIST; /* a real domain refuses a key in use too */
		}
	struct mock_mr *m = calloc(1, sizeof(*m));
	if (!m) {
		mrl_unlock(&d->lock);
		return -ENOMEM;
	}
	m->addr = addr;
	m->len = len;
	m->key = *key;
	m->next = d->mrs;
	d->mrs = m;
	mrl_unlock(&d->lock);
	*h = m;
	return 0;
}

static int mock_dereg(void *dev, void *h)
{
	struct mock_dev *d = dev;
	mrl_lock(&d->lock);
	for (struct mock_mr **p = &d->mrs; *p; p = &(*p)->next)
		if (*p == h) {
			*p = ((struct mock_mr *)h)->next;
			free(h);
			mrl_unlock(&d->lock);
			return 0;
		}
	mrl_unlock(&d->lock);
	return -ENOENT;
}

int mrl_mock_lookup(void *dev, uint64_t key, void **addr, size_t *len)
{
	struct mock_dev *d = dev;
	int ret = -ENOENT;
	mrl_lock(&d->lock);
	for (struct mock_mr *m = d->mrs; m; m = m->next)
		if (m->key == key) {
			*addr = m->addr;
			*len = m->len;
			ret = 0;
		}
	mrl_unlock(&d->lock);
	return ret;
}

/* Tests: registrations of addr wait from now on (NULL: none waits, and
 * those waiting go on). */
void mrl_mock_block(void *dev, void *addr)
{
	struct mock_dev *d = dev;
	mrl_lock(&d->lock);
	d->block_addr = addr;
	pthread_cond_broadcast(&d->cv);
	mrl_unlock(&d->lock);
}

/* Tests: until a registration waits in mrl_mock_block's address. */
void mrl_mock_wait_blocked(void *dev)
{
	struct mock_dev *d = dev;
	mrl_lock(&d->lock);
	while (!d->blocked)
		pthread_cond_wait(&d->cv, &d->lock);
	mrl_unlock(&d->lock);
}

static void *mock_desc(void *h)
{
	(void)h;
	return NULL;
}

static void mock_close(void *dev)
{
	struct mock_dev *d = dev;
	while (d->mrs) {
		struct mock_mr *n = d->mrs->next;
		free(d->mrs);
		d->mrs = n;
	}
	pthread_cond_destroy(&d->cv);
	pthread_mutex_destroy(&d->lock);
	free(d);
}

const struct mrl_registrar_ops mrl_reg_mock_ops = {
	.size = sizeof(struct mrl_registrar_ops),
	.name = "mock",
	.open = mock_open,
	.reg = mock_reg,
	.dereg = mock_dereg,
	.desc = mock_desc,
	.close = mock_close,
	/* no pins: it holds addresses only, copy-on-write cannot strand it */
};
