/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* fcntl delegations (F_SETDELEG, Linux 6.19+) are detected per context and
 * reported for what they are: MRL_WATCH_DELEG in mrl_ctx_watchers exactly
 * when the kernel answers F_GETDELEG on a regular file (here, on 6.18: not),
 * never in an MR's watchers, and no coverage cell changes with it (they are
 * not used yet). Nothing here claims a delegation works. */
#include <sys/mman.h>

#include "helpers.h"

#ifndef F_GETDELEG
#define F_GETDELEG (1024 + 15)
#endif

int main(void)
{
	char dir[256], path[300];
	t_scratch("ext4", dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/f", dir);
	t_make_file(path, 65536);
	int fd = open(path, O_RDONLY);
	REQUIRE(fd >= 0, "open");
	struct {
		uint32_t d_flags;
		uint16_t d_type, pad;
	} d = {0};
	int present = fcntl(fd, F_GETDELEG, &d) == 0;
	int err = present ? 0 : errno;
	close(fd);
	printf("F_GETDELEG here: %s\n", present ? "present" : strerror(err));
	CHECK(present || err == EINVAL, "absent means an unknown command (EINVAL), not %s",
	      strerror(err));

	mrl_ctx *ctx = t_ctx("mock", T_HANG_MS);
	int w = mrl_ctx_watchers(ctx);
	CHECK(!!(w & MRL_WATCH_DELEG) == present, "the context reports delegations %s",
	      present ? "present" : "absent");
	CHECK(strstr(mrl_watcher_str(MRL_WATCH_DELEG), "not used") != NULL,
	      "named as detected, not used (%s)", mrl_watcher_str(MRL_WATCH_DELEG));
	void *p;
	mrl_mr_t mr;
	REQUIRE(mrl_file_map(ctx, path, 0, 65536, PROT_READ | PROT_WRITE, &p) == 0, "map: %s",
		mrl_last_error());
	REQUIRE(mrl_mr_reg(ctx, p, 65536, MRL_ACCESS_REMOTE_WRITE, NULL, &mr) == 0, "register: %s",
		mrl_last_error());
	struct mrl_mr_info in = t_query(ctx, mr);
	CHECK(!(in.watchers & MRL_WATCH_DELEG), "no MR is watched by it");
	mrl_mr_dereg(ctx, mr);
	mrl_file_unmap(ctx, p, 65536);
	mrl_ctx_destroy(ctx);
	unlink(path);
	rmdir(dir);
	return t_done("t_deleg");
}
