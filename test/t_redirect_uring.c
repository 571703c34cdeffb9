/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* MRL_POLICY_REDIRECT on io_uring fixed buffers. A tmpfs file is one slot
 * of a ring; another process punches a hole in it, or truncates it to 0
 * and extends it again, with the system's own tools:
 * - the owner gets MRL_EVENT_REDIRECTED with the cause; the slot (same
 *   index, the MR's key) now holds scratch pages of the MR's length;
 * - the device never errors: every READ_FIXED and WRITE_FIXED through the
 *   slot completes in full; a WRITE_FIXED out of it sends zeros;
 * - nothing it reads in reaches the file: the file holds its old bytes
 *   and zeros where the change left holes, none of the new round;
 * - mrl_mr_restore moves the slot back onto the file's current pages
 *   (RESTORED, same key), and the next round reaches the file whole;
 * - an owner that answers the break itself (mrl_mr_restore on
 *   MRL_EVENT_BREAK, whenever that lands: before the device moved, while
 *   the change lands, or after) gets the MR back on the file, not left on
 *   scratch. */
#include <sys/mman.h>

#include "uring_rig.h"

#define SIZE (16 * PG)
#define PUNCH_OFF (2 * PG)
#define PUNCH_LEN (4 * PG)

enum action { PUNCH, TRUNC_EXTEND };
static const char *const action_s[] = {"hole punch", "truncate-then-extend"};

/* One page through the slot: get (with the address the slot has now),
 * READ_FIXED, put. The completion's result. */
static int page_in(mrl_ctx *ctx, struct rig *r, mrl_mr_t mr, uint64_t off, unsigned round,
		   uint8_t **basep)
{
	unsigned idx;
	uint8_t *base;
	int ret = mrl_uring_get_buf(ctx, mr, 5000, &idx, (void **)&base);
	if (ret)
		return ret;
	*basep = base;
	rig_send(r, round, off, PG);
	rig_submit(r, base + off, PG, idx);
	ret = rig_reap(r);
	CHECK(mrl_uring_put(ctx, mr) == 0, "put");
	return ret;
}

/* One page out of the slot (WRITE_FIXED to the socket): what the device
 * reads there, in out. */
static int page_out(mrl_ctx *ctx, struct rig *r, mrl_mr_t mr, uint64_t off, uint8_t *out)
{
	unsigned idx;
	uint8_t *base;
	int ret = mrl_uring_get_buf(ctx, mr, 5000, &idx, (void **)&base);
	if (ret)
		return ret;
	struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
	io_uring_prep_write_fixed(sqe, r->sv[0], base + off, PG, 0, (int)idx);
	REQUIRE(io_uring_submit(&r->ring) == 1, "submit");
	ret = rig_reap(r);
	CHECK(mrl_uring_put(ctx, mr) == 0, "put");
	if (ret == PG)
		REQUIRE(read(r->sv[1], out, PG) == PG, "read what WRITE_FIXED sent");
	return ret;
}

static void change(const char *path, enum action a)
{
	if (a == PUNCH) {
		CHECK(t_sh("fallocate --punch-hole -o %u -l %u %s", PUNCH_OFF, PUNCH_LEN, path) == 0,
		      "fallocate --punch-hole");
		return;
	}
	/* coreutils truncate opens O_NONBLOCK: a leased file says EAGAIN and
	 * lets it in once the break has let go */
	for (unsigned sz = 0; sz <= SIZE; sz += SIZE) {
		int st = 1;
		for (int i = 0; i < 2000 && st; i++) {
			st = t_sh("truncate -s %u %s 2>/dev/null", sz, path);
			if (st)
				usleep(5000);
		}
		CHECK(st == 0, "truncate -s %u", sz);
	}
}

/* Bytes of the file that hold round `round` (none may, after a redirect). */
static uint64_t file_has_round(const char *path, unsigned round)
{
	return SIZE - rig_lost(path, round, SIZE);
}

/* The file's MR, whole, under MRL_POLICY_REDIRECT. */
static mrl_mr_t reg_redirect(mrl_ctx *ctx, void *p)
{
	struct mrl_reg_opts o = {.size = sizeof(o), .policy = MRL_POLICY_REDIRECT};
	mrl_mr_t mr;
	REQUIRE(mrl_mr_reg(ctx, p, SIZE, MRL_ACCESS_REMOTE_WRITE, &o, &mr) == 0, "register: %s",
		mrl_last_error());
	return mr;
}

static void run(const char *path, enum action a)
{
	struct rig r;
	void *v;
	mrl_ctx *ctx = rig_file(&r, path, SIZE, 5000, &v);
	uint8_t *p = v, *base = NULL;
	mrl_mr_t mr = reg_redirect(ctx, p);
	struct mrl_mr_info in = t_query(ctx, mr);
	REQUIRE(in.lease_held, "tmpfs file, leased");
	uint64_t key = in.key;
	for (uint64_t off = 0; off < SIZE; off += PG)
		REQUIRE(page_in(ctx, &r, mr, off, 1, &base) == PG && base == p, "round 1");
	CHECK(rig_lost(path, 1, SIZE) == 0, "round 1 reached the file");
	REQUIRE(rig_wait_lease(ctx, mr), "lease held again before the change");

	change(path, a);
	struct mrl_event ev = {0};
	REQUIRE(t_wait_event(ctx, MRL_EVENT_REDIRECTED, mr, T_HANG_MS, &ev) == 0,
		"the owner is told the MR was redirected");
	printf("  %s: redirected, cause %s, range %llu+%llu\n", action_s[a], mrl_cause_str(ev.cause),
	       (unsigned long long)ev.offset, (unsigned long long)ev.length);
	CHECK(ev.cause != MRL_CAUSE_NONE, "the event names a cause");
	/* a truncate then extend is two breakers: wait for both to be over
	 * (the file whole again) before the device goes on */
	if (a == TRUNC_EXTEND) {
		struct stat st = {0};
		while (stat(path, &st) == 0 && st.st_size != SIZE)
			usleep(1000);
	}
	/* (the second truncate's break, if the lease was back for it, ends) */
	CHECK(t_wait_state(ctx, mr, MRL_STATE_ACTIVE, T_HANG_MS) == 0, "active again");
	in = t_query(ctx, mr);
	CHECK(in.redirected == 1 && in.state == MRL_STATE_ACTIVE && in.key == key,
	      "redirected, active, same slot (%d, %s, %llu -> %llu)", in.redirected,
	      mrl_state_str(in.state), (unsigned long long)key, (unsigned long long)in.key);


	/* the device, redirected: reads out zeros, every operation completes */
	uint8_t out[PG];
	unsigned zero_pages = 0, failed = 0;
	for (uint64_t off = 0; off < SIZE; off += PG) {
		int ret = page_out(ctx, &r, mr, off, out);
		failed += ret != PG;
		bool z = true;
		for (unsigned i = 0; i < PG; i++)
			z = z && out[i] == 0;
		zero_pages += ret == PG && z;
	}
	CHECK(failed == 0 && zero_pages == SIZE / PG,
	      "WRITE_FIXED from the redirected slot: all %u complete, all zeros (%u failed, %u zero pages)",
	      SIZE / PG, failed, zero_pages);
	for (uint64_t off = 0; off < SIZE; off += PG) {
		int ret = page_in(ctx, &r, mr, off, 2, &base);
		failed += ret != PG;
		if (ret != PG)
			printf("  READ_FIXED at %llu: %d\n", (unsigned long long)off, ret);
	}
	CHECK(failed == 0, "READ_FIXED into the redirected slot: none failed (%u)", failed);
	CHECK(base != p, "the slot's address is its scratch, not the file's mapping");
	uint64_t leaked = file_has_round(path, 2);
	printf("  %s: %u READ_FIXED into scratch, %llu of their bytes in the file\n", action_s[a],
	       SIZE / PG, (unsigned long long)leaked);
	CHECK(leaked == 0, "no byte of the redirected round reached the file");
	if (a == PUNCH) {
		/* the file: round 1 outside the hole, zeros in it */
		uint64_t kept = SIZE - rig_lost(path, 1, SIZE);
		CHECK(kept == SIZE - PUNCH_LEN, "the file keeps round 1 outside the hole (%llu bytes)",
		      (unsigned long long)kept);
	}

	/* back onto the file */
	int ret;
	while ((ret = mrl_mr_restore(ctx, mr)) == -EAGAIN) /* the second truncate's break lands */
		usleep(1000);
	REQUIRE(ret == 0, "mrl_mr_restore: %s", mrl_last_error());
	REQUIRE(t_wait_event(ctx, MRL_EVENT_RESTORED, mr, T_HANG_MS, &ev) == 0, "restored");
	in = t_query(ctx, mr);
	CHECK(in.redirected == 0 && in.state == MRL_STATE_ACTIVE && in.key == key,
	      "back on the file, active, same slot (%d, %s)", in.redirected, mrl_state_str(in.state));
	for (uint64_t off = 0; off < SIZE; off += PG)
		REQUIRE(page_in(ctx, &r, mr, off, 3, &base) == PG && base == p, "round 3");
	uint64_t lost = rig_lost(path, 3, SIZE);
	printf("  %s: after the restore %llu bytes lost\n", action_s[a], (unsigned long long)lost);
	CHECK(lost == 0, "after the restore every byte reaches the file");

	CHECK(mrl_mr_dereg(ctx, mr) == 0, "dereg");
	CHECK(mrl_file_unmap(ctx, p, SIZE) == 0, "unmap");
	mrl_ctx_destroy(ctx);
	rig_close(&r);
}

/* The owner answers restore as soon as it hears of the break. */
static void answer_restore(const char *path)
{
	struct rig r;
	void *v;
	mrl_ctx *ctx = rig_file(&r, path, SIZE, 5000, &v);
	uint8_t *p = v, *base = NULL;
	mrl_mr_t mr = reg_redirect(ctx, p);
	REQUIRE(rig_wait_lease(ctx, mr), "leased");
	pid_t pid = t_sh_bg("fallocate --punch-hole -o %u -l %u %s", PUNCH_OFF, PUNCH_LEN, path);
	struct mrl_event ev;
	REQUIRE(t_wait_event(ctx, MRL_EVENT_BREAK, mr, T_HANG_MS, &ev) == 0, "break event");
	int ret;
	while ((ret = mrl_mr_restore(ctx, mr)) == -EAGAIN)
		usleep(1000);
	CHECK(ret == 0, "the owner answers restore: %s", mrl_last_error());
	CHECK(t_wait_status(pid) == 0, "the punch ran");
	/* an answer that came after the MR went onto scratch moves it back
	 * (RESTORED follows REDIRECTED); one before leaves it on the file */
	CHECK(t_wait_event(ctx, MRL_EVENT_RESTORED, mr, T_HANG_MS, &ev) == 0, "restored");
	CHECK(t_wait_state(ctx, mr, MRL_STATE_ACTIVE, T_HANG_MS) == 0, "active");
	struct mrl_mr_info in = t_query(ctx, mr);
	CHECK(in.redirected == 0, "on the file, not on scratch");
	for (uint64_t off = 0; off < SIZE; off += PG)
		REQUIRE(page_in(ctx, &r, mr, off, 4, &base) == PG && base == p, "round 4");
	CHECK(rig_lost(path, 4, SIZE) == 0, "every byte reaches the file");
	CHECK(mrl_mr_dereg(ctx, mr) == 0, "dereg");
	CHECK(mrl_file_unmap(ctx, p, SIZE) == 0, "unmap");
	mrl_ctx_destroy(ctx);
	rig_close(&r);
}

int main(void)
{
	char dir[256], path[300];
	t_scratch("tmpfs", dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/f", dir);
	run(path, PUNCH);
	unlink(path);
	run(path, TRUNC_EXTEND);
	unlink(path);
	answer_restore(path);
	unlink(path);
	rmdir(dir);
	return t_done("t_redirect_uring");
}
