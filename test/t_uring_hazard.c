/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The orphaned-page hazard of pinned devices, and its cure. A tmpfs file is
 * a fixed buffer of an io_uring; a hole punch or a truncate-then-extend
 * lands, then READ_FIXED streams a new round into the buffer:
 * - without mrlease the pinned pages are no longer the file's: the bytes
 *   never reach it (the hazard is real on this kernel: the test fails if not);
 * - with mrlease the break pauses the slot, the change lands, the slot is
 *   refilled with the file's current pages (or fenced past a new end): zero
 *   bytes lost. Each by another process and by the owner opening the file.
 * - an operation in flight when the break comes holds the change until it
 *   is put; then the change lands and the next one reaches the new pages.
 * - an operation never put: the break's deadline fences the MR before the
 *   change lands, and the put reports it.
 * Not cured, and said so: the owner changing the file through an fd it
 * already holds (lease watcher: seen after it landed, at best). */
#include <sys/mman.h>

#include "uring_rig.h"
#include "mrl_int.h"

#define SIZE (16 * PG)
#define PUNCH_OFF (2 * PG)
#define PUNCH_LEN (4 * PG)

enum action { PUNCH, TRUNC_EXTEND };
enum actor { OTHER, OWNER };
static const char *const action_s[] = {"hole punch", "truncate-then-extend"};
static const char *const actor_s[] = {"another process", "the owner"};

/* The change, by the actor. Another process: the system's tools (coreutils
 * truncate opens O_NONBLOCK: a leased file says EAGAIN, then lets it in).
 * The owner: a new open of the path, as any code of the owner's would. */
static void change(const char *path, enum action a, enum actor who)
{
	if (who == OTHER && a == PUNCH) {
		CHECK(t_sh("fallocate --punch-hole -o %u -l %u %s", PUNCH_OFF, PUNCH_LEN, path) == 0,
		      "fallocate --punch-hole");
		return;
	}
	if (who == OTHER) {
		for (unsigned sz = 0; sz <= SIZE; sz += SIZE) {
			int st = 1;
			for (int i = 0; i < 200 && st; i++) {
				st = t_sh("truncate -s %u %s 2>/dev/null", sz, path);
				if (st)
					usleep(5000);
			}
			CHECK(st == 0, "truncate -s %u", sz);
		}
		return;
	}
	int fd = open(path, O_RDWR | O_CLOEXEC); /* waits while the library holds a lease */
	REQUIRE(fd >= 0, "owner opens %s: %s", path, strerror(errno));
	if (a == PUNCH)
		CHECK(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, PUNCH_OFF, PUNCH_LEN) == 0,
		      "owner punch: %s", strerror(errno));
	else
		CHECK(ftruncate(fd, 0) == 0 && ftruncate(fd, SIZE) == 0, "owner truncate+extend: %s",
		      strerror(errno));
	close(fd);
}

static uint64_t expected_raw_loss(enum action a)
{
	return a == PUNCH ? PUNCH_LEN : SIZE;
}

/* Without mrlease: the application registers the buffer itself. */
static void raw(const char *path, enum action a, enum actor who)
{
	struct rig r;
	rig_open(&r);
	t_make_file(path, SIZE);
	int fd = open(path, O_RDWR | O_CLOEXEC);
	uint8_t *p = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	REQUIRE(p != MAP_FAILED, "mmap");
	struct iovec iov = {p, SIZE};
	int ret = io_uring_register_buffers(&r.ring, &iov, 1);
	if (ret == -EFAULT || ret == -EOPNOTSUPP)
		t_skip("the kernel refuses to pin a tmpfs MAP_SHARED mapping (%s): no hazard to show",
		       strerror(-ret));
	REQUIRE(ret == 0, "io_uring_register_buffers: %s", strerror(-ret));
	for (uint64_t off = 0; off < SIZE; off += PG)
		REQUIRE(rig_read_fixed(&r, p, off, 0, 1) == PG, "round 1 READ_FIXED");
	CHECK(rig_lost(path, 1, SIZE) == 0, "round 1 reached the file");
	change(path, a, who);
	for (uint64_t off = 0; off < SIZE; off += PG)
		REQUIRE(rig_read_fixed(&r, p, off, 0, 2) == PG, "round 2 READ_FIXED completes");
	uint64_t lost = rig_lost(path, 2, SIZE);
	printf("  without mrlease, %s by %s: %llu of %u bytes lost\n", action_s[a], actor_s[who],
	       (unsigned long long)lost, SIZE);
	CHECK(lost == expected_raw_loss(a),
	      "the hazard: every byte of the changed range went to orphaned pages (%llu, expected %llu)",
	      (unsigned long long)lost, (unsigned long long)expected_raw_loss(a));
	io_uring_unregister_buffers(&r.ring);
	munmap(p, SIZE);
	close(fd);
	rig_close(&r);
}

/* One page through mrlease: get, READ_FIXED, put. A fenced MR is
 * registered again over the file as it is now (the producer's answer). */
static int lib_read_fixed(mrl_ctx *ctx, struct rig *r, mrl_mr_t *mr, uint8_t *p, uint64_t off,
			  unsigned round, unsigned *refused)
{
	unsigned idx;
	int ret = mrl_uring_get(ctx, *mr, 5000, &idx);
	if (ret == -EKEYREVOKED) {
		(*refused)++;
		CHECK(mrl_mr_dereg(ctx, *mr) == 0, "dereg fenced MR");
		REQUIRE(mrl_mr_reg(ctx, p, SIZE, MRL_ACCESS_REMOTE_WRITE, NULL, mr) == 0,
			"register again after the fence");
		ret = mrl_uring_get(ctx, *mr, 5000, &idx);
	}
	if (ret)
		return ret;
	ret = rig_read_fixed(r, p, off, idx, round);
	CHECK(mrl_uring_put(ctx, *mr) == 0, "put");
	return ret;
}

static void with_mrlease(const char *path, enum action a, enum actor who)
{
	struct rig r;
	void *v;
	mrl_ctx *ctx = rig_file(&r, path, SIZE, 5000, &v);
	uint8_t *p = v;
	mrl_mr_t mr;
	REQUIRE(mrl_mr_reg(ctx, p, SIZE, MRL_ACCESS_REMOTE_WRITE, NULL, &mr) == 0, "register: %s",
		mrl_last_error());
	struct mrl_mr_info in = t_query(ctx, mr);
	CHECK(in.kind == MRL_KIND_TMPFS && in.lease_held, "tmpfs file, leased");
	CHECK(in.coverage[MRL_CHG_OTHER_LAYOUT] == MRL_SEEN_BEFORE, "another's punch seen before");
	uint64_t key = in.key;
	unsigned refused = 0;
	for (uint64_t off = 0; off < SIZE; off += PG)
		REQUIRE(lib_read_fixed(ctx, &r, &mr, p, off, 1, &refused) == PG, "round 1");
	CHECK(rig_lost(path, 1, SIZE) == 0, "round 1 reached the file");
	/* the read-back let the lease go for a reader; it comes back on close */
	REQUIRE(rig_wait_lease(ctx, mr), "lease held again before the change");
	change(path, a, who);
	/* the change has landed (the actor returned); the restore follows the close */
	struct mrl_event ev = {0};
	/* Another process's truncate then extend: two breakers. The lease lets
	 * the first in; when the library retakes the lease before the second
	 * opens, the restore finds the file empty and fences (truncated). On a
	 * busy machine the second may open while the lease is still let go:
	 * both land in one window, and the restore finds the file whole again
	 * (new pages): the MR comes back on them under a new generation, which
	 * tells its users the change happened. Either way it is announced. */
	bool two = a == TRUNC_EXTEND && who == OTHER, fenced = false;
	for (;;) {
		if (t_wait_event(ctx, 0, mr, T_HANG_MS, &ev)) {
			CHECK(0, "a fenced or restored event");
			break;
		}
		if (ev.type == MRL_EVENT_RESTORED || (two && ev.type == MRL_EVENT_FENCED))
			break;
	}
	fenced = ev.type == MRL_EVENT_FENCED;
	if (two && fenced)
		CHECK(ev.cause == MRL_CAUSE_TRUNCATED, "fenced as truncated, got %s", mrl_cause_str(ev.cause));
	if (two && !fenced)
		CHECK(ev.type == MRL_EVENT_RESTORED && ev.generation > in.generation,
		      "restored onto the new pages under a new generation (%u -> %u)", in.generation,
		      ev.generation);
	for (uint64_t off = 0; off < SIZE; off += PG)
		REQUIRE(lib_read_fixed(ctx, &r, &mr, p, off, 2, &refused) == PG, "round 2");
	uint64_t lost = rig_lost(path, 2, SIZE);
	in = t_query(ctx, mr);
	printf("  with mrlease, %s by %s: %llu bytes lost, %u refused (fenced) gets, breaks %u "
	       "restores %u, slot %llu -> %llu\n",
	       action_s[a], actor_s[who], (unsigned long long)lost, refused, in.breaks, in.restores,
	       (unsigned long long)key, (unsigned long long)in.key);
	CHECK(lost == 0, "no byte lost");
	if (two && fenced) {
		/* the first open landed a size-0 file, which fenced the MR */
		CHECK(refused == 1, "the truncate fenced the MR once, the producer re-registered");
	} else {
		CHECK(refused == 0, "hitless: no get refused");
		CHECK(in.restores >= 1, "restored");
		CHECK(in.key == key, "restore kept the slot (%llu vs %llu)", (unsigned long long)in.key,
		      (unsigned long long)key);
	}
	CHECK(mrl_mr_dereg(ctx, mr) == 0, "dereg");
	CHECK(mrl_file_unmap(ctx, p, SIZE) == 0, "unmap");
	mrl_ctx_destroy(ctx);
	rig_close(&r);
}

/* An operation in flight when the break comes: the change waits for its put. */
static void inflight(const char *path)
{
	struct rig r;
	void *v;
	mrl_ctx *ctx = rig_file(&r, path, SIZE, 5000, &v);
	uint8_t *p = v;
	mrl_mr_t mr;
	REQUIRE(mrl_mr_reg(ctx, p, SIZE, MRL_ACCESS_REMOTE_WRITE, NULL, &mr) == 0, "register");
	unsigned idx;
	REQUIRE(mrl_uring_get(ctx, mr, 0, &idx) == 0, "get");
	rig_submit(&r, p + PUNCH_OFF, PG, idx); /* waits in the kernel for data */
	pid_t pid = t_sh_bg("fallocate --punch-hole -o %u -l %u %s", PUNCH_OFF, PUNCH_LEN, path);
	struct mrl_event ev;
	REQUIRE(t_wait_event(ctx, MRL_EVENT_BREAK, mr, T_HANG_MS, &ev) == 0, "break");
	unsigned idx2;
	CHECK(mrl_uring_get(ctx, mr, 0, &idx2) == -EAGAIN, "a new get is held while paused");
	rig_send(&r, 3, PUNCH_OFF, PG);
	CHECK(rig_reap(&r) == PG, "the in-flight READ_FIXED completes");
	/* the lease is ours until the put, so the punch cannot have landed */
	CHECK(waitpid(pid, NULL, WNOHANG) == 0, "the puncher is still held");
	CHECK(p[PUNCH_OFF] == rig_byte(3, PUNCH_OFF), "the in-flight data reached the file's page");
	CHECK(mrl_uring_put(ctx, mr) == 0, "put: the break goes on");
	CHECK(t_wait_status(pid) == 0, "the punch landed after the put");
	REQUIRE(mrl_uring_get(ctx, mr, 5000, &idx2) == 0, "get waits for the restore");
	CHECK(idx2 == idx, "same slot");
	CHECK(t_query(ctx, mr).restores == 1, "restored once");
	CHECK(rig_read_fixed(&r, p, PUNCH_OFF, idx2, 4) == PG, "READ_FIXED after the restore");
	CHECK(mrl_uring_put(ctx, mr) == 0, "put");
	uint8_t b;
	int fd = open(path, O_RDONLY);
	CHECK(pread(fd, &b, 1, PUNCH_OFF) == 1 && b == rig_byte(4, PUNCH_OFF),
	      "the new data is in the file");
	close(fd);
	CHECK(mrl_uring_put(ctx, mr) == -EINVAL, "a put without a get is refused");
	mrl_mr_dereg(ctx, mr);
	mrl_file_unmap(ctx, p, SIZE);
	mrl_ctx_destroy(ctx);
	rig_close(&r);
}

/* An operation got and never put: the break runs out of time, the MR is
 * fenced (cause deadline) before the change lands, and the put says so. */
static void deadline(const char *path)
{
	struct rig r;
	void *v;
	mrl_ctx *ctx = rig_file(&r, path, SIZE, 300, &v);
	mrl_mr_t mr;
	REQUIRE(mrl_mr_reg(ctx, v, SIZE, MRL_ACCESS_REMOTE_WRITE, NULL, &mr) == 0, "register");
	unsigned idx;
	REQUIRE(mrl_uring_get(ctx, mr, 0, &idx) == 0, "get");
	rig_submit(&r, (uint8_t *)v + PUNCH_OFF, PG, idx);
	CHECK(t_sh("fallocate --punch-hole -o %u -l %u %s", PUNCH_OFF, PUNCH_LEN, path) == 0,
	      "the punch lands once the deadline passed");
	struct mrl_mr_info in = t_query(ctx, mr);
	CHECK(in.state == MRL_STATE_FENCED && in.cause == MRL_CAUSE_DEADLINE,
	      "fenced for the deadline before the punch landed (%s, %s)", mrl_state_str(in.state),
	      mrl_cause_str(in.cause));
	rig_send(&r, 5, PUNCH_OFF, PG);
	CHECK(rig_reap(&r) == PG, "the in-flight read completes (into the old page)");
	CHECK(mrl_uring_put(ctx, mr) == -EKEYREVOKED, "put reports the fence: data may be lost");
	struct mrl_stats st = {.size = sizeof(st)};
	CHECK(mrl_ctx_stats(ctx, &st) == 0 && st.peer_timeouts == 0 && st.fences == 1,
	      "a local timeout is a fence, not a peer timeout (%llu, %llu)",
	      (unsigned long long)st.peer_timeouts, (unsigned long long)st.fences);
	CHECK(mrl_uring_get(ctx, mr, 0, &idx) == -EKEYREVOKED, "no further get");
	rig_send(&r, 6, PUNCH_OFF, PG);
	rig_submit(&r, (uint8_t *)v + PUNCH_OFF, PG, idx);
	CHECK(rig_reap(&r) < 0, "a READ_FIXED that skips get finds the slot empty");
	mrl_mr_dereg(ctx, mr);
	mrl_file_unmap(ctx, v, SIZE);
	mrl_ctx_destroy(ctx);
	rig_close(&r);
}

/* The owner punching through an fd it already holds: no lease break. */
static void owner_own_fd(const char *path)
{
	struct rig r;
	rig_open(&r);
	t_make_file(path, SIZE);
	mrl_ctx *ctx = rig_ctx(&r, 5000);
	int fd = open(path, O_RDWR | O_CLOEXEC);
	uint8_t *p = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	REQUIRE(p != MAP_FAILED, "mmap");
	REQUIRE(mrl_file_adopt(ctx, fd) == 0, "adopt");
	mrl_mr_t mr;
	unsigned refused = 0;
	REQUIRE(mrl_mr_reg(ctx, p, SIZE, MRL_ACCESS_REMOTE_WRITE, NULL, &mr) == 0, "register");
	struct mrl_mr_info in = t_query(ctx, mr);
	for (uint64_t off = 0; off < SIZE; off += PG)
		REQUIRE(lib_read_fixed(ctx, &r, &mr, p, off, 1, &refused) == PG, "round 1");
	CHECK(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, PUNCH_OFF, PUNCH_LEN) == 0,
	      "owner punch through its own fd");
	for (uint64_t off = 0; off < SIZE; off += PG)
		REQUIRE(lib_read_fixed(ctx, &r, &mr, p, off, 2, &refused) == PG, "round 2");
	uint64_t lost = rig_lost(path, 2, SIZE);
	printf("  with mrlease, hole punch by the owner through an fd it holds: %llu bytes lost, "
	       "coverage says \"%s\"\n",
	       (unsigned long long)lost, mrl_seen_str(in.coverage[MRL_CHG_OWNER_LAYOUT]));
	CHECK(in.coverage[MRL_CHG_OWNER_LAYOUT] != MRL_SEEN_BEFORE,
	      "coverage must not claim the owner's fallocate is seen before");
	CHECK(lost == 0 || in.coverage[MRL_CHG_OWNER_LAYOUT] != MRL_SEEN_BEFORE,
	      "a loss under a claim of before");
	mrl_mr_dereg(ctx, mr);
	mrl_ctx_destroy(ctx);
	munmap(p, SIZE);
	rig_close(&r);
}

int main(void)
{
	char dir[256], path[300];
	t_scratch("tmpfs", dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/buf", dir);
	for (int a = PUNCH; a <= TRUNC_EXTEND; a++)
		for (int who = OTHER; who <= OWNER; who++) {
			raw(path, a, who);
			with_mrlease(path, a, who);
		}
	inflight(path);
	deadline(path);
	owner_own_fd(path);
	unlink(path);
	rmdir(dir);
	return t_done("t_uring_hazard");
}
