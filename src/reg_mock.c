/* Mock registrar: a device that only remembers which key maps which range.
 * Lets the state machine be tested without a fabric. */
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
};

static int mock_open(struct mrl_ctx *ctx, void **dev)
{
	(void)ctx;
	struct mock_dev *d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	pthread_mutex_init(&d->lock, NULL);
	*dev = d;
	return 0;
}

static int mock_reg(void *dev, void *addr, size_t len, unsigned access, uint64_t *key, void **h)
{
	struct mock_dev *d = dev;
	(void)access;
	mrl_lock(&d->lock);
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
