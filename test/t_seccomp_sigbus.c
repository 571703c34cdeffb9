/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* MRL_CTX_SECCOMP and the SIGBUS watcher together: the handler's raw
 * mmap(MAP_FIXED) of a scratch page over a file MR past the file's new end
 * is the library's own, and the filter lets it go (MRL_SCRATCH_MMAP_OFF).
 * Held, it would wait for the monitor -- here the faulting thread holds the
 * very lock the monitor needs (as in t_sigbus), so the store would never
 * complete. Instead: the store completes into scratch, the file keeps its
 * new size, and the MR is fenced from there, cause truncated (not
 * "replaced": the filter did not take it for the owner's MAP_FIXED). */
#include <sys/mman.h>

#include "helpers.h"
#include "mrl_int.h"

#define MB (1u << 20)

int main(void)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	char dir[256], path[300];
	t_scratch("tmpfs", dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/f", dir);
	t_make_file(path, 2 * MB);
	/* an opener from before registration: no lease, the truncate is seen
	 * only after it lands */
	pid_t reader = t_hold_open(path);

	struct mrl_ctx_opts o = {.size = sizeof(o), .provider = "mock", .deadline_ms = 1000,
				 .flags = MRL_CTX_SECCOMP};
	mrl_ctx *ctx;
	int ret = mrl_ctx_create(&o, &ctx);
	if (ret == -EOPNOTSUPP || ret == -ENOSYS)
		t_skip("seccomp user notification unavailable: %s", mrl_last_error());
	REQUIRE(ret == 0, "context with MRL_CTX_SECCOMP: %s", mrl_last_error());
	if (!(mrl_ctx_watchers(ctx) & MRL_WATCH_SIGBUS))
		t_skip("the context runs no SIGBUS watcher here (watchers %#x)", mrl_ctx_watchers(ctx));
	void *base;
	REQUIRE(mrl_file_map(ctx, path, 0, 2 * MB, PROT_READ | PROT_WRITE, &base) == 0, "map");
	char *p = base;
	mrl_mr_t mr;
	REQUIRE(mrl_mr_reg(ctx, p + MB, MB, MRL_ACCESS_REMOTE_WRITE, NULL, &mr) == 0, "register");
	struct mrl_mr_info in = t_query(ctx, mr);
	CHECK(!in.lease_held && (in.watchers & MRL_WATCH_SECCOMP),
	      "no lease (another opener), seccomp watching (watchers %#x)", in.watchers);

	/* truncate to 1.5 MiB and store into the MR past it while this thread
	 * holds the lock the monitor needs */
	mrl_lock(&ctx->lock);
	int tr = t_sh("truncate -s %u %s", 3 * MB / 2, path);
	memset(p + MB + 3 * MB / 4, 0x5a, 8192);
	mrl_unlock(&ctx->lock);
	CHECK(tr == 0, "truncate ran");
	CHECK(p[MB + 3 * MB / 4] == 0x5a && p[MB + 3 * MB / 4 + 8191] == 0x5a,
	      "the store past the end completed, into scratch");
	struct stat st;
	CHECK(stat(path, &st) == 0 && st.st_size == 3 * MB / 2, "the file kept its new size (%lld)",
	      (long long)st.st_size);
	struct mrl_event ev = {0};
	CHECK(t_wait_event(ctx, MRL_EVENT_FENCED, mr, T_HANG_MS, &ev) == 0 &&
		      ev.cause == MRL_CAUSE_TRUNCATED,
	      "FENCED, cause truncated (%s)", mrl_cause_str(ev.cause));
	in = t_query(ctx, mr);
	CHECK(in.state == MRL_STATE_ACTIVE && in.valid_length <= MB / 2,
	      "its head stays, fenced from the new end at the latest (valid %llu)",
	      (unsigned long long)in.valid_length);
	mrl_mr_dereg(ctx, mr);
	mrl_file_unmap(ctx, base, 2 * MB);
	mrl_ctx_destroy(ctx);
	kill(reader, SIGKILL);
	t_wait_status(reader);
	t_sh("rm -rf %s", dir);
	return t_done("t_seccomp_sigbus");
}
