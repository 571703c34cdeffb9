/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* fork with only MRL_CTX_NO_LEASES contexts (no watcher, no interposer): the
 * child still gets EPERM from every call on the parent's context. The fork
 * watcher is installed at context creation, not by a watcher. */
#include <sys/mman.h>

#include "helpers.h"

int main(void)
{
	mrl_ctx *ctx = t_ctx_flags("mock", 1000, MRL_CTX_NO_LEASES);
	char *buf = mmap(NULL, 1 << 16, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	mrl_mr_t mr;
	REQUIRE(mrl_mr_reg(ctx, buf, 1 << 15, MRL_ACCESS_REMOTE_WRITE, NULL, &mr) == 0, "register");
	pid_t c = fork();
	if (c == 0) {
		int bad = 0;
		struct mrl_mr_info in = {.size = sizeof(in)};
		struct mrl_stats st = {.size = sizeof(st)};
		struct mrl_event ev = {.internal = 1};
		mrl_mr_t m2;
		void *fa;
		mrl_ep *ep;
		bad += mrl_mr_query(ctx, mr, &in) != -EPERM;
		bad += !strstr(mrl_last_error(), "parent");
		bad += mrl_ctx_stats(ctx, &st) != -EPERM;
		bad += mrl_ctx_watchers(ctx) != -EPERM;
		bad += mrl_event_fd(ctx) != -EPERM;
		bad += mrl_event_get(ctx, &ev) != -EPERM;
		bad += mrl_event_ack(ctx, &ev) != -EPERM;
		bad += mrl_mr_reg(ctx, buf + (1 << 15), 4096, 0, NULL, &m2) != -EPERM;
		bad += mrl_mr_restore(ctx, mr) != -EPERM;
		bad += mrl_mr_release(ctx, mr) != -EPERM;
		bad += mrl_mr_fence(ctx, mr) != -EPERM;
		bad += mrl_verify(ctx, 0) != -EPERM;
		bad += mrl_file_map(ctx, "/dev/null", 0, 4096, PROT_READ, &fa) != -EPERM;
		bad += mrl_file_unmap(ctx, buf, 4096) != -EPERM;
		bad += mrl_file_adopt(ctx, 0) != -EPERM;
		bad += mrl_ep_create(ctx, NULL, &ep) != -EPERM;
		bad += mrl_mr_dereg(ctx, mr) != -EPERM;
		bad += mrl_ctx_destroy(ctx) != -EPERM;
		_exit(bad);
	}
	int st = t_wait_status(c);
	CHECK(st == 0, "every call in the child says EPERM and why (%d did not)", st);
	CHECK(t_query(ctx, mr).state == MRL_STATE_ACTIVE, "the parent's MR is untouched");
	CHECK(mrl_mr_dereg(ctx, mr) == 0 && mrl_ctx_destroy(ctx) == 0, "the parent cleans up");
	return t_done("t_fork_noleases");
}
