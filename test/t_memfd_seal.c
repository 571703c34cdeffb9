/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* MRL_POLICY_DENY on a memfd: seals. Made with MFD_ALLOW_SEALING, the memfd
 * is sealed at registration (shrink, grow, future write); the owner's own
 * truncate, punch and write then fail EPERM while its existing mapping keeps
 * working, the MR stays active, and the seals outlive the MR and the
 * context (they are permanent). A memfd that cannot be sealed, and shared
 * anonymous memory, are refused deny (-EOPNOTSUPP), and left unsealed. */
#include <linux/falloc.h>
#include <sys/mman.h>

#include "helpers.h"

#define SZ (64u * 1024)

int main(void)
{
	mrl_ctx *ctx = t_ctx("mock", 1000);
	struct mrl_reg_opts deny = {.size = sizeof(deny), .policy = MRL_POLICY_DENY};
	mrl_mr_t mr;

	int plain = memfd_create("t_memfd_seal-plain", MFD_CLOEXEC);
	REQUIRE(plain >= 0 && ftruncate(plain, SZ) == 0, "memfd");
	char *p = mmap(NULL, SZ, PROT_READ | PROT_WRITE, MAP_SHARED, plain, 0);
	REQUIRE(p != MAP_FAILED, "map");
	CHECK(mrl_mr_reg(ctx, p, SZ, MRL_ACCESS_REMOTE_WRITE, &deny, &mr) == -EOPNOTSUPP,
	      "deny refused on a memfd made without MFD_ALLOW_SEALING");
	printf("refused: %s\n", mrl_last_error());
	CHECK(ftruncate(plain, SZ) == 0, "and it is left as it was");
	munmap(p, SZ);
	close(plain);

	p = mmap(NULL, SZ, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	CHECK(mrl_mr_reg(ctx, p, SZ, MRL_ACCESS_REMOTE_WRITE, &deny, &mr) == -EOPNOTSUPP,
	      "deny refused on shared anonymous memory");
	munmap(p, SZ);

	int m = memfd_create("t_memfd_seal", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	REQUIRE(m >= 0 && ftruncate(m, SZ) == 0, "sealable memfd");
	p = mmap(NULL, SZ, PROT_READ | PROT_WRITE, MAP_SHARED, m, 0);
	REQUIRE(p != MAP_FAILED, "map");
	memset(p, 'A', SZ);
	REQUIRE(mrl_mr_reg(ctx, p, SZ, MRL_ACCESS_REMOTE_WRITE, &deny, &mr) == 0, "deny on a memfd: %s",
		mrl_last_error());
	int seals = fcntl(m, F_GET_SEALS);
	CHECK(seals >= 0 && (seals & (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_FUTURE_WRITE)) ==
				    (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_FUTURE_WRITE),
	      "sealed: shrink, grow, future write (%#x)", seals);
	struct mrl_mr_info in = t_query(ctx, mr);
	CHECK(in.watchers & MRL_WATCH_MEMFD, "watched by the memfd watcher");
	CHECK(in.coverage[MRL_CHG_OWNER_TRUNCATE] == MRL_SEEN_NA &&
		      in.coverage[MRL_CHG_OTHER_LAYOUT] == MRL_SEEN_NA,
	      "truncate and punch cannot happen (n/a)");
	errno = 0;
	CHECK(ftruncate(m, SZ / 2) < 0 && errno == EPERM, "the owner's truncate: EPERM");
	errno = 0;
	CHECK(fallocate(m, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096) < 0 && errno == EPERM,
	      "the owner's punch: EPERM");
	errno = 0;
	CHECK(pwrite(m, "x", 1, 0) < 0 && errno == EPERM, "the owner's write(2): EPERM");
	p[5] = 'B';
	CHECK(p[5] == 'B' && p[0] == 'A', "the existing mapping still writes");
	in = t_query(ctx, mr);
	CHECK(in.state == MRL_STATE_ACTIVE && in.generation == 1, "the MR untouched");
	mrl_mr_dereg(ctx, mr);
	mrl_ctx_destroy(ctx);
	CHECK(ftruncate(m, SZ / 2) < 0 && errno == EPERM,
	      "the seals outlive the MR and the context (permanent)");
	munmap(p, SZ);
	close(m);
	return t_done("t_memfd_seal");
}
