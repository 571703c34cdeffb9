/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Deny policy: a change under a deny MR is refused with the errno the owner
 * chose, the actor sees that errno, and nothing in the file changes. Changes
 * outside the deny MR's range go on. Deny is refused at registration where
 * no watcher can refuse (tmpfs, anonymous memory, fanotify off). */
#include <sys/mman.h>
#include <linux/falloc.h>

#include "helpers.h"

#define MB (1u << 20)

static uint64_t sum_file(const char *path, uint64_t *size)
{
	int fd = open(path, O_RDONLY);
	uint64_t h = 1469598103934665603ull;
	unsigned char buf[65536];
	ssize_t n;
	*size = 0;
	if (fd < 0)
		return 0;
	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		for (ssize_t i = 0; i < n; i++)
			h = (h ^ buf[i]) * 1099511628211ull;
		*size += (uint64_t)n;
	}
	close(fd);
	return h;
}

int main(void)
{
	char dir[256], path[300], out[400];
	t_scratch("ext4", dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/f", dir);
	snprintf(out, sizeof(out), "%s/stderr", dir);
	t_make_file(path, 2 * MB);

	mrl_ctx *ctx = t_ctx("mock", 1000);
	if (!(mrl_ctx_watchers(ctx) & MRL_WATCH_FANOTIFY))
		t_skip("fanotify pre-content events unavailable here (needs Linux >= 6.14 and CAP_SYS_ADMIN)");
	void *base;
	REQUIRE(mrl_file_map(ctx, path, 0, 2 * MB, PROT_READ | PROT_WRITE, &base) == 0, "map");
	mrl_mr_t deny, plain;
	struct mrl_reg_opts ro = {.size = sizeof(ro), .policy = MRL_POLICY_DENY, .deny_errno = ETXTBSY};
	REQUIRE(mrl_mr_reg(ctx, base, MB, MRL_ACCESS_REMOTE_WRITE, &ro, &deny) == 0, "register deny MR: %s",
		mrl_last_error());
	REQUIRE(mrl_mr_reg(ctx, (char *)base + MB, MB, MRL_ACCESS_REMOTE_WRITE, NULL, &plain) == 0,
		"register restore MR");
	CHECK(t_query(ctx, deny).deny_errno == ETXTBSY, "deny errno recorded");

	uint64_t size0, sum0 = sum_file(path, &size0), size1, sum1;

	/* other process: truncate and punch over the deny MR fail with ETXTBSY */
	int st = t_sh("truncate -s 0 %s 2>%s", path, out);
	CHECK(st != 0, "truncate over a deny MR fails (exit %d)", st);
	CHECK(t_sh("grep -q 'Text file busy' %s", out) == 0, "truncate reports ETXTBSY");
	st = t_sh("fallocate --punch-hole --offset 4096 --length 8192 %s 2>%s", path, out);
	CHECK(st != 0, "punch over a deny MR fails (exit %d)", st);
	CHECK(t_sh("grep -q 'Text file busy' %s", out) == 0, "fallocate reports ETXTBSY");
	sum1 = sum_file(path, &size1);
	CHECK(size1 == size0 && sum1 == sum0, "the file is unchanged (size %llu -> %llu)",
	      (unsigned long long)size0, (unsigned long long)size1);

	struct mrl_event ev;
	CHECK(t_wait_event(ctx, MRL_EVENT_DENIED, deny, 2000, &ev) == 0, "DENIED event on the deny MR");
	struct mrl_mr_info in = t_query(ctx, deny);
	CHECK(in.denials == 2, "two refusals counted, got %u", in.denials);
	CHECK(in.state == MRL_STATE_ACTIVE && in.breaks == 0, "the deny MR never paused");

	/* outside the deny MR: the change goes on (and pauses the other MR) */
	st = t_sh("fallocate --punch-hole --offset %u --length 4096 %s", MB + 4096, path);
	CHECK(st == 0, "punch outside the deny MR succeeds");
	CHECK(t_wait_event(ctx, MRL_EVENT_RESTORED, plain, 3000, NULL) == 0, "other MR restored");
	CHECK(t_query(ctx, deny).denials == 2, "no refusal for a change outside the deny MR");

	/* the owner's own ftruncate gets the errno too, on this thread */
	int fd = open(path, O_RDWR);
	REQUIRE(fd >= 0, "open");
	errno = 0;
	CHECK(ftruncate(fd, MB / 2) < 0 && errno == ETXTBSY, "owner ftruncate refused with ETXTBSY (%s)",
	      strerror(errno));
	errno = 0;
	CHECK(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096) < 0 && errno == ETXTBSY,
	      "owner punch refused (%s)", strerror(errno));
	CHECK(pwrite(fd, "x", 1, 10) == 1, "a plain write is not a layout change: allowed");
	close(fd);
	sum_file(path, &size1);
	CHECK(size1 == size0, "size unchanged");

	/* default errno is EBUSY */
	mrl_mr_dereg(ctx, deny);
	struct mrl_reg_opts rd = {.size = sizeof(rd), .policy = MRL_POLICY_DENY};
	REQUIRE(mrl_mr_reg(ctx, base, MB, MRL_ACCESS_REMOTE_WRITE, &rd, &deny) == 0, "register deny");
	st = t_sh("truncate -s 4096 %s 2>%s", path, out);
	CHECK(st != 0 && t_sh("grep -q 'busy' %s", out) == 0, "default refusal is EBUSY");

	/* refused at registration where nothing can refuse */
	mrl_mr_t bad;
	struct mrl_reg_opts rbad = {.size = sizeof(rbad), .policy = MRL_POLICY_DENY, .deny_errno = ENOENT};
	CHECK(mrl_mr_reg(ctx, (char *)base + MB, 4096, 0, &rbad, &bad) == -EINVAL,
	      "an errno the kernel cannot pass is refused");
	void *anon = mmap(NULL, MB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(mrl_mr_reg(ctx, anon, MB, 0, &rd, &bad) == -EOPNOTSUPP, "deny on anonymous memory: EOPNOTSUPP");
	char tdir[256], tpath[300];
	t_scratch("tmpfs", tdir, sizeof(tdir));
	snprintf(tpath, sizeof(tpath), "%s/t", tdir);
	t_make_file(tpath, MB);
	void *tb;
	REQUIRE(mrl_file_map(ctx, tpath, 0, MB, PROT_READ | PROT_WRITE, &tb) == 0, "map tmpfs");
	CHECK(mrl_mr_reg(ctx, tb, MB, 0, &rd, &bad) == -EOPNOTSUPP, "deny on tmpfs: EOPNOTSUPP");
	CHECK(strstr(mrl_last_error(), "deny") != NULL, "the message says why: %s", mrl_last_error());
	mrl_file_unmap(ctx, tb, MB);
	munmap(anon, MB);

	mrl_ctx *lctx = t_ctx_flags("mock", 1000, MRL_CTX_NO_FANOTIFY);
	void *lb;
	REQUIRE(mrl_file_map(lctx, path, 0, MB, PROT_READ | PROT_WRITE, &lb) == 0, "map, leases only");
	CHECK(mrl_mr_reg(lctx, lb, MB, 0, &rd, &bad) == -EOPNOTSUPP, "deny with fanotify off: EOPNOTSUPP");
	mrl_file_unmap(lctx, lb, MB);
	mrl_ctx_destroy(lctx);

	mrl_mr_dereg(ctx, deny);
	mrl_mr_dereg(ctx, plain);
	mrl_file_unmap(ctx, base, 2 * MB);
	mrl_ctx_destroy(ctx);
	unlink(out);
	unlink(path);
	rmdir(dir);
	unlink(tpath);
	rmdir(tdir);
	return t_done("t_deny");
}
