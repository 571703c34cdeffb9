/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* t_preload's plugin: a shared object linked with libmrlease.so that a
 * program without mrlease loads; it registers ranges and judges fences. */
#include <sys/mman.h>

#include "../helpers.h"
#include "plugin.h"

#define EXPORT __attribute__((visibility("default")))

static mrl_ctx *ctx;
static mrl_mr_t last;
static char dir[256];
static int nfile;

EXPORT unsigned pl_open(void)
{
	ctx = t_ctx("mock", 1000);
	t_scratch("tmpfs", dir, sizeof(dir));
	return mrl_ctx_watchers(ctx);
}

EXPORT void *pl_map_reg(size_t len)
{
	char path[300];
	void *p;
	snprintf(path, sizeof(path), "%s/f%d", dir, nfile++);
	t_make_file(path, len);
	if (mrl_file_map(ctx, path, 0, len, PROT_READ | PROT_WRITE, &p)) {
		fprintf(stderr, "mrl_file_map %s: %s\n", path, mrl_last_error());
		return NULL;
	}
	if (mrl_mr_reg(ctx, p, len, MRL_ACCESS_REMOTE_WRITE, NULL, &last)) {
		fprintf(stderr, "mrl_mr_reg: %s\n", mrl_last_error());
		return NULL;
	}
	return p;
}

EXPORT int pl_fenced_before(const char *what, uint64_t t_inside)
{
	int failures = t_failures;
	/* synchronously: the fence is done when munmap returns */
	struct mrl_mr_info in = t_query(ctx, last);
	CHECK(in.state == MRL_STATE_FENCED && in.cause == MRL_CAUSE_UNMAPPED, "%s: fenced, cause unmapped (%s, %s)",
	      what, mrl_state_str(in.state), mrl_cause_str(in.cause));
	struct mrl_event ev;
	bool fenced = false, after = false;
	uint64_t t_fence = 0;
	while (mrl_event_get(ctx, &ev) == 0) {
		if (ev.mr == last && ev.type == MRL_EVENT_FENCED && ev.cause == MRL_CAUSE_UNMAPPED &&
		    ev.pid == getpid()) {
			fenced = true;
			t_fence = ev.time_ns;
		}
		after |= ev.mr == last && ev.type == MRL_EVENT_CHANGED;
		mrl_event_ack(ctx, &ev);
	}
	CHECK(fenced, "%s: a FENCED event in this process's name", what);
	CHECK(!after, "%s: not merely seen after it landed", what);
	if (t_inside)
		CHECK(fenced && t_fence <= t_inside, "%s: fenced (%llu) before the call reached the next munmap (%llu)",
		      what, (unsigned long long)t_fence, (unsigned long long)t_inside);
	mrl_mr_dereg(ctx, last);
	return t_failures != failures;
}

EXPORT int pl_self_unmap(void)
{
	size_t len = 1 << 20;
	void *p = pl_map_reg(len);
	if (!p)
		return 1;
	if (munmap(p, len)) {
		perror("munmap");
		return 1;
	}
	return pl_fenced_before("the plugin's own munmap", 0);
}

EXPORT int pl_cov_munmap(void)
{
	struct mrl_mr_info in = t_query(ctx, last);
	return in.coverage[MRL_CHG_OWNER_MUNMAP];
}

EXPORT void pl_close(void)
{
	mrl_ctx_destroy(ctx);
	t_sh("rm -rf %s", dir);
}
