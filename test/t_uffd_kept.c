/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The userfaultfd watcher keeps an anonymous range registered after its
 * last MR goes, so a reg/dereg cycle of the same range costs no
 * UFFDIO_REGISTER/UNREGISTER. That must never cost coverage. With a
 * pinning device (io_uring), a raw munmap (no interposer) is seen, the MR
 * fenced "unmapped":
 *  1. after reg, dereg, reg of the same range (the kept registration);
 *  2. after reg, dereg, a raw munmap of the kept range (its actor goes on
 *     once the monitor read the event), a new mapping at the same address,
 *     reg: the new mapping is registered afresh (a stale kept entry would
 *     leave it unwatched and this would wait for ever);
 *  3. the same with mremap moving the kept range away;
 *  4. a range running over the edges of a kept one (the split is the
 *     library's own) registers, and is watched, also once the kept range
 *     was registered again (its mapping then ends at the split);
 *  5. more cycles than the watcher keeps: the oldest range, let go, and
 *     the newest, kept, are both watched when registered again. */

#include <sys/mman.h>
#include <sys/syscall.h>

#include "uring_rig.h"

#define LEN (16u * 4096u)
#define MANY 40

static size_t pg;

static void fenced_by_raw_munmap(mrl_ctx *ctx, mrl_mr_t mr, void *addr, size_t len, const char *what)
{
	CHECK(t_query(ctx, mr).watchers & MRL_WATCH_UFFD, "%s: watched by userfaultfd", what);
	REQUIRE(syscall(SYS_munmap, addr, len) == 0, "%s: raw munmap", what);
	CHECK(t_wait_state(ctx, mr, MRL_STATE_FENCED, T_HANG_MS) == 0, "%s: fenced (%s)", what,
	      mrl_state_str(t_query(ctx, mr).state));
	CHECK(t_query(ctx, mr).cause == MRL_CAUSE_UNMAPPED, "%s: cause unmapped (%s)", what,
	      mrl_cause_str(t_query(ctx, mr).cause));
	CHECK(mrl_mr_dereg(ctx, mr) == 0, "%s: dereg", what);
}

static char *anon(void *at, size_t len)
{
	char *p = mmap(at, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | (at ? MAP_FIXED_NOREPLACE : 0), -1, 0);
	if (p == MAP_FAILED || (at && p != at))
		return NULL;
	memset(p, 0x42, len);
	return p;
}

static mrl_mr_t reg(mrl_ctx *ctx, void *p, size_t len, const char *what)
{
	mrl_mr_t mr;
	REQUIRE(mrl_mr_reg(ctx, p, len, MRL_ACCESS_REMOTE_WRITE, NULL, &mr) == 0, "%s: register: %s",
		what, mrl_last_error());
	return mr;
}

int main(void)
{
	pg = (size_t)sysconf(_SC_PAGESIZE);
	struct rig r;
	rig_open(&r);
	mrl_ctx *ctx = t_ctx("uring", 5000);
	REQUIRE(mrl_uring_attach(ctx, &r.ring, 4) == 0, "attach");
	if (!(mrl_ctx_watchers(ctx) & MRL_WATCH_UFFD))
		t_skip("userfaultfd events are not available here");

	/* 1. reg, dereg, reg */
	char *a = anon(NULL, LEN);
	REQUIRE(a, "mmap");
	mrl_mr_t mr = reg(ctx, a, LEN, "1");
	REQUIRE(mrl_mr_dereg(ctx, mr) == 0, "1: dereg");
	mr = reg(ctx, a, LEN, "1 again");
	fenced_by_raw_munmap(ctx, mr, a, LEN, "1. reg/dereg/reg");

	/* 2. kept, unmapped raw, mapped again at the same address */
	char *b = anon(NULL, LEN);
	REQUIRE(b, "mmap");
	mr = reg(ctx, b, LEN, "2");
	REQUIRE(mrl_mr_dereg(ctx, mr) == 0, "2: dereg");
	REQUIRE(syscall(SYS_munmap, b, LEN) == 0, "2: raw munmap of the kept range returns");
	if (!anon(b, LEN))
		t_skip("the address was taken by another mapping meanwhile");
	mr = reg(ctx, b, LEN, "2 new mapping");
	fenced_by_raw_munmap(ctx, mr, b, LEN, "2. a new mapping where a kept range was unmapped");

	/* 3. kept, moved away by mremap, mapped again */
	char *c = anon(NULL, LEN);
	REQUIRE(c, "mmap");
	mr = reg(ctx, c, LEN, "3");
	REQUIRE(mrl_mr_dereg(ctx, mr) == 0, "3: dereg");
	char *far = mmap(NULL, LEN, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(far != MAP_FAILED, "a place to move to");
	REQUIRE(syscall(SYS_mremap, c, LEN, LEN, MREMAP_MAYMOVE | MREMAP_FIXED, far) == (long)far,
		"3: raw mremap of the kept range");
	if (!anon(c, LEN))
		t_skip("the address was taken by another mapping meanwhile");
	mr = reg(ctx, c, LEN, "3 new mapping");
	fenced_by_raw_munmap(ctx, mr, c, LEN, "3. a new mapping where a kept range moved from");
	munmap(far, LEN);

	/* 4. over the edges of a kept range */
	char *d = anon(NULL, 3 * pg);
	REQUIRE(d, "mmap");
	mr = reg(ctx, d + pg, pg, "4 middle page");
	REQUIRE(mrl_mr_dereg(ctx, mr) == 0, "4: dereg");
	mr = reg(ctx, d, 3 * pg, "4. the whole mapping, over the kept page's edges");
	fenced_by_raw_munmap(ctx, mr, d, 3 * pg, "4. over a kept range's edges");

	/* 4b. a page at a mapping's start, kept, registered again (its mapping
	 * now ends at the page: the watcher's split), then the whole mapping */
	char *e = anon(NULL, 64 * pg);
	REQUIRE(e, "mmap");
	for (int i = 0; i < 3; i++) {
		mr = reg(ctx, e, pg, "4b first page");
		REQUIRE(mrl_mr_dereg(ctx, mr) == 0, "4b: dereg");
	}
	mr = reg(ctx, e, 64 * pg, "4b. the whole mapping after its first page was kept twice");
	fenced_by_raw_munmap(ctx, mr, e, 64 * pg, "4b. over a twice-kept range's edge");

	/* 5. more than are kept */
	char *m[MANY];
	for (int i = 0; i < MANY; i++) {
		REQUIRE((m[i] = anon(NULL, pg)), "mmap %d", i);
		mr = reg(ctx, m[i], pg, "5");
		REQUIRE(mrl_mr_dereg(ctx, mr) == 0, "5: dereg %d", i);
	}
	mr = reg(ctx, m[0], pg, "5 oldest");
	fenced_by_raw_munmap(ctx, mr, m[0], pg, "5. the oldest range, let go");
	mr = reg(ctx, m[MANY - 1], pg, "5 newest");
	fenced_by_raw_munmap(ctx, mr, m[MANY - 1], pg, "5. the newest range, kept");
	for (int i = 1; i < MANY - 1; i++)
		CHECK(munmap(m[i], pg) == 0, "5: munmap %d (kept or not) returns", i);

	mrl_uring_detach(ctx);
	mrl_ctx_destroy(ctx);
	rig_close(&r);
	return t_done("t_uffd_kept");
}
