/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The watcher table: which watchers exist, in the order they start, and the
 * one place that starts and stops them for a context. */
#include <errno.h>
#include <string.h>

#include "mrl_int.h"

const struct mrl_watcher_ops *const mrl_watchers[] = {
	&mrl_watch_lease, &mrl_watch_inotify, &mrl_watch_fan, &mrl_watch_uffd,
	&mrl_watch_interpose, &mrl_watch_sigbus, &mrl_watch_verify, &mrl_watch_memfd,
	&mrl_watch_seccomp, NULL,
};

MRL_EXPORT const char *mrl_watcher_str(unsigned bit)
{
	for (const struct mrl_watcher_ops *const *w = mrl_watchers; *w; w++)
		if ((*w)->bit == bit)
			return (*w)->name;
	return bit == MRL_WATCH_DELEG ? "delegation (detected, not used)" : "unknown";
}

/* A watcher the machine cannot run is not an error: coverage says so. */
int mrl_watchers_start(struct mrl_ctx *ctx)
{
	ctx->wtab = mrl_watchers;
	ctx->watchers = 0;
	if (!ctx->leases)
		return 0;
	for (const struct mrl_watcher_ops *const *w = mrl_watchers; *w; w++) {
		int ret = (*w)->start ? (*w)->start(ctx) : 0;
		if (ret == 0)
			ctx->watchers |= (*w)->bit;
		else
			mrl_log("watcher %s does not run here: %s", (*w)->name, strerror(-ret));
	}
	/* reported, not used: no MR is watched by it (mrlease.h) */
	if (mrl_lease_deleg_present())
		ctx->watchers |= MRL_WATCH_DELEG;
	return 0;
}

/* Reverse order: the interposer lets go of the context before the fds the
 * others hold are closed. */
void mrl_watchers_stop(struct mrl_ctx *ctx)
{
	size_t n = 0;
	while (mrl_watchers[n])
		n++;
	while (n--) {
		const struct mrl_watcher_ops *w = mrl_watchers[n];
		if ((ctx->watchers & w->bit) && w->stop)
			w->stop(ctx);
	}
	ctx->watchers = 0;
}
