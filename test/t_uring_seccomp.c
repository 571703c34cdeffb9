/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The io_uring-on-tmpfs hole, closed by MRL_CTX_SECCOMP: a tmpfs file is a
 * fixed buffer of an io_uring; the owner punches a hole (a raw
 * syscall(SYS_fallocate)) and truncates-then-extends it (raw ftruncate)
 * through the very fd it mapped with and handed to the library -- which
 * breaks no lease, so without the option it is seen only after it landed
 * and what READ_FIXED wrote meanwhile is lost (t_uring_hazard). With it,
 * each call is held at entry, the slot is paused and refilled with the
 * file's pages after the change: zero bytes lost, the same slot, and
 * coverage says "before". */
#include <linux/falloc.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include "uring_rig.h"

#define SIZE (16 * PG)
#define PUNCH_OFF (2 * PG)
#define PUNCH_LEN (4 * PG)

static int read_round(mrl_ctx *ctx, struct rig *r, mrl_mr_t mr, uint8_t *p, unsigned round)
{
	for (uint64_t off = 0; off < SIZE; off += PG) {
		unsigned idx;
		int ret = mrl_uring_get(ctx, mr, 5000, &idx);
		if (ret)
			return ret;
		ret = rig_read_fixed(r, p, off, idx, round);
		CHECK(mrl_uring_put(ctx, mr) == 0, "put");
		if (ret != PG)
			return ret < 0 ? ret : -EIO;
	}
	return 0;
}

int main(void)
{
	char dir[256], path[300];
	t_scratch("tmpfs", dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/buf", dir);
	struct rig r;
	rig_open(&r);
	t_make_file(path, SIZE);
	mrl_ctx *ctx = t_ctx_flags("uring", 5000, MRL_CTX_SECCOMP);
	REQUIRE(mrl_uring_attach(ctx, &r.ring, 4) == 0, "attach");
	int fd = open(path, O_RDWR | O_CLOEXEC);
	uint8_t *p = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	REQUIRE(p != MAP_FAILED && mrl_file_adopt(ctx, fd) == 0, "map and adopt");
	mrl_mr_t mr;
	REQUIRE(mrl_mr_reg(ctx, p, SIZE, MRL_ACCESS_REMOTE_WRITE, NULL, &mr) == 0, "register: %s",
		mrl_last_error());
	struct mrl_mr_info in = t_query(ctx, mr);
	CHECK(in.coverage[MRL_CHG_OWNER_LAYOUT] == MRL_SEEN_BEFORE &&
		      in.coverage[MRL_CHG_OWNER_TRUNCATE] == MRL_SEEN_BEFORE,
	      "the owner's punch and truncate claimed before");
	REQUIRE(read_round(ctx, &r, mr, p, 1) == 0, "round 1");
	CHECK(rig_lost(path, 1, SIZE) == 0, "round 1 reached the file");

	/* raw punch through the adopted fd */
	CHECK(syscall(SYS_fallocate, fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, PUNCH_OFF,
		      PUNCH_LEN) == 0, "raw punch");
	struct mrl_event ev;
	CHECK(t_wait_event(ctx, MRL_EVENT_BREAK, mr, T_HANG_MS, &ev) == 0 &&
		      ev.cause == MRL_CAUSE_PUNCH_HOLE,
	      "the punch was a break (cause %s)", mrl_cause_str(ev.cause));
	CHECK(t_wait_event(ctx, MRL_EVENT_RESTORED, mr, T_HANG_MS, &ev) == 0, "restored");
	REQUIRE(read_round(ctx, &r, mr, p, 2) == 0, "round 2");
	uint64_t lost = rig_lost(path, 2, SIZE);
	printf("  raw hole punch by the owner through its own fd: %llu bytes lost\n",
	       (unsigned long long)lost);
	CHECK(lost == 0, "no byte lost to the punch");

	/* raw truncate to 0 and extend again: the truncate fences the MR (the
	 * pages are gone); re-registered over the new pages, nothing is lost */
	CHECK(syscall(SYS_ftruncate, fd, 0) == 0 && syscall(SYS_ftruncate, fd, SIZE) == 0,
	      "raw truncate then extend");
	CHECK(t_wait_state(ctx, mr, MRL_STATE_FENCED, T_HANG_MS) == 0 &&
		      t_query(ctx, mr).cause == MRL_CAUSE_TRUNCATED,
	      "the truncate (slot paused before it landed) fenced the MR: its pages are gone (cause %s)",
	      mrl_cause_str(t_query(ctx, mr).cause));
	mrl_mr_dereg(ctx, mr);
	REQUIRE(mrl_mr_reg(ctx, p, SIZE, MRL_ACCESS_REMOTE_WRITE, NULL, &mr) == 0, "register again");
	REQUIRE(read_round(ctx, &r, mr, p, 3) == 0, "round 3");
	lost = rig_lost(path, 3, SIZE);
	printf("  raw truncate-then-extend by the owner through its own fd: %llu bytes lost\n",
	       (unsigned long long)lost);
	CHECK(lost == 0, "no byte lost to the truncate");
	mrl_mr_dereg(ctx, mr);
	mrl_ctx_destroy(ctx);
	munmap(p, SIZE);
	rig_close(&r);
	unlink(path);
	rmdir(dir);
	/* a normal exit: LeakSanitizer's tracer makes its calls from the
	 * runtime's own code, which the filter lets go (seccomp_filter.c) */
	return t_done("t_uring_seccomp");
}
