/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The registrars by name, and the stubs that answer for what a device does
 * not have (as libibverbs' dummy ops do): callers never test an entry. */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "mrl_int.h"

static void *stub_desc(void *handle)
{
	(void)handle;
	return NULL;
}

static bool stub_pins(void *dev)
{
	(void)dev;
	return false;
}

static int stub_quiesce(void *dev, void *handle, uint32_t seq)
{
	(void)dev, (void)handle, (void)seq;
	return -EOPNOTSUPP;
}

static int stub_revoke(void *dev, void *handle)
{
	(void)dev, (void)handle;
	return -EOPNOTSUPP;
}

static int stub_restore(void *dev, void *handle, void *addr, size_t len)
{
	(void)dev, (void)handle, (void)addr, (void)len;
	return -EOPNOTSUPP;
}

static int stub_redirect(void *dev, void *handle)
{
	(void)dev, (void)handle;
	return -EOPNOTSUPP;
}

/* the last one takes every name the others do not: libfabric providers */
static const struct mrl_registrar_ops *const registrars[] = {
	&mrl_reg_mock_ops, &mrl_reg_uring_ops, &mrl_reg_fabric_ops,
};
static const char *const names[] = {"mock", "uring", NULL};
static struct mrl_registrar_ops filled[sizeof(registrars) / sizeof(registrars[0])];

static void fill(void)
{
	for (size_t i = 0; i < ARRAY_SIZE(registrars); i++) {
		struct mrl_registrar_ops o = *registrars[i];
		o.desc = o.desc ? o.desc : stub_desc;
		o.pins = o.pins ? o.pins : stub_pins;
		o.quiesce = o.quiesce ? o.quiesce : stub_quiesce;
		o.revoke = o.revoke ? o.revoke : stub_revoke;
		o.restore = o.restore ? o.restore : stub_restore;
		o.redirect = o.redirect ? o.redirect : stub_redirect;
		filled[i] = o;
	}
}

const struct mrl_registrar_ops *mrl_registrar_find(const char *provider)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, fill);
	size_t i = 0;
	while (names[i] && strcmp(names[i], provider))
		i++;
	return &filled[i];
}
