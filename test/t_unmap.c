/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The owner unmaps a registered range and maps something else at the same
 * address while a peer writes into it: the interposed munmap fences the MR
 * (cause "unmapped") before the unmap lands, so the new memory never
 * receives a byte and the peer's operations fail cleanly naming the cause.
 * Writes in flight around the unmap never complete silently into the
 * key's tombstone: the unmap waits until the peer drained the MR, and
 * every write it saw succeed is in the memory (a second mapping of the
 * same memfd shows it), every other one failed naming the cause.
 * MAP_FIXED over an MR and mremap fence it too ("replaced", "moved"). A raw
 * syscall(SYS_munmap) bypasses the interposer: userfaultfd sees it for
 * anonymous memory, mrl_verify for anything (on demand or periodically),
 * both reporting it as seen after (CHANGED, never BREAK). */
#include <sys/mman.h>
#include <sys/syscall.h>

#include "inflight.h"

#define LEN (1u << 20)

static int write_and_wait(struct pair *p, mrl_rmr *r, const char *buf, struct mrl_completion *c)
{
	int ret = mrl_write(r, 4096, buf, 4096, (void *)1);
	if (ret)
		return ret;
	if (pair_wait(p, c, T_HANG_MS))
		return -ETIMEDOUT;
	return c->status;
}

struct unmap_arg {
	char *a;
	int ret;
};

static void *unmap_act(void *arg)
{
	struct unmap_arg *u = arg;
	u->ret = munmap(u->a, LEN);
	return NULL;
}

int main(void)
{
	struct pair p;
	pair_open(&p);
	if (!(mrl_ctx_watchers(p.sctx) & MRL_WATCH_INTERPOSE))
		t_skip("the interposer is not what callers reach in this build");
	char buf[4096];
	memset(buf, 0x77, sizeof(buf));
	struct mrl_completion c;

	/* 1. munmap, a peer's writes in flight around it, then a new anonymous
	 * mapping at the same address */
	int mfd = memfd_create("t_unmap", 0);
	REQUIRE(mfd >= 0 && ftruncate(mfd, LEN) == 0, "memfd");
	char *view = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	char *a = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	REQUIRE(view != MAP_FAILED && a != MAP_FAILED, "two mappings of the memfd");
	mrl_mr_t mr;
	REQUIRE(mrl_mr_reg(p.sctx, a, LEN, MRL_ACCESS_REMOTE_WRITE, NULL, &mr) == 0, "register");
	CHECK(t_query(p.sctx, mr).coverage[MRL_CHG_OWNER_MUNMAP] == MRL_SEEN_BEFORE, "munmap covered before");
	mrl_rmr *r;
	REQUIRE(mrl_rmr_open(p.cpeer, mr, T_HANG_MS, &r) == 0, "peer opens the MR");
	CHECK(write_and_wait(&p, r, buf, &c) == 0, "a write lands before the unmap");
	CHECK(a[4096] == 0x77, "and is in the memory");
	struct unmap_arg ua = {.a = a};
	struct inflight w;
	inflight_run(&p, r, &w, LEN / IF_SLOT, 0, unmap_act, &ua);
	CHECK(ua.ret == 0, "owner unmaps");
	struct inflight_counts ic = {0};
	inflight_check(&w, view, MRL_CAUSE_UNMAPPED, true, "writes around the unmap", &ic);
	printf("writes around the unmap: %ld succeeded (all in the memory), %ld refused\n", ic.ok, ic.refused);
	CHECK(ic.ok > 0, "some writes landed before the unmap");
	char *b = mmap(a, LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	REQUIRE(b == a, "something else mapped at the same address");
	struct mrl_mr_info in = t_query(p.sctx, mr);
	CHECK(in.state == MRL_STATE_FENCED && in.cause == MRL_CAUSE_UNMAPPED, "fenced, cause unmapped (%s)",
	      mrl_cause_str(in.cause));
	struct mrl_event ev;
	CHECK(t_wait_event(p.sctx, MRL_EVENT_FENCED, mr, T_HANG_MS, &ev) == 0 && ev.cause == MRL_CAUSE_UNMAPPED &&
	      ev.pid == getpid(), "FENCED event names the cause and the owner");
	/* the unmap waited for the peer's ack: it had the notice before */
	struct mrl_rmr_info ri = {.size = sizeof(ri)};
	CHECK(mrl_rmr_query(r, &ri) == 0 && ri.state == MRL_STATE_FENCED && ri.cause == MRL_CAUSE_UNMAPPED,
	      "the peer knows why: %s", mrl_cause_str(ri.cause));
	CHECK(!(ri.flags & MRL_RMR_SEEN_AFTER), "seen before: drained, not marked as seen after");
	int refused = 0;
	for (int i = 0; i < 20; i++) {
		int ret = mrl_write(r, 4096, buf, 4096, (void *)2);
		if (ret == -EKEYREVOKED) {
			refused++;
		} else if (ret == 0) {
			CHECK(pair_wait(&p, &c, T_HANG_MS) == 0, "completes");
			CHECK(c.status != 0, "a write after the unmap fails (%d)", c.status);
			refused += c.status != 0;
		}
	}
	CHECK(refused == 20, "every later write refused (%d of 20)", refused);
	size_t nonzero = 0;
	for (size_t i = 0; i < LEN; i++)
		nonzero += b[i] != 0;
	CHECK(nonzero == 0, "the new memory never received a byte (%zu nonzero)", nonzero);
	mrl_rmr_close(r);
	mrl_mr_dereg(p.sctx, mr);
	munmap(b, LEN);
	munmap(view, LEN);
	close(mfd);

	/* 2. MAP_FIXED over an MR: replaced */
	a = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(mrl_mr_reg(p.sctx, a, LEN, MRL_ACCESS_REMOTE_WRITE, NULL, &mr) == 0, "register");
	REQUIRE(mmap(a + 8192, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == a + 8192,
		"MAP_FIXED over the middle");
	in = t_query(p.sctx, mr);
	CHECK(in.state == MRL_STATE_FENCED && in.cause == MRL_CAUSE_REPLACED, "fenced, cause replaced (%s)",
	      mrl_cause_str(in.cause));
	mrl_mr_dereg(p.sctx, mr);

	/* 3. mremap: moved */
	mrl_mr_t m2;
	REQUIRE(mrl_mr_reg(p.sctx, a + LEN / 2, LEN / 2, MRL_ACCESS_REMOTE_WRITE, NULL, &m2) == 0, "register");
	char *moved = mremap(a + LEN / 2, LEN / 2, LEN, MREMAP_MAYMOVE);
	REQUIRE(moved != MAP_FAILED, "mremap");
	in = t_query(p.sctx, m2);
	CHECK(in.state == MRL_STATE_FENCED && in.cause == MRL_CAUSE_MOVED, "fenced, cause moved (%s)",
	      mrl_cause_str(in.cause));
	mrl_mr_dereg(p.sctx, m2);
	munmap(a, LEN / 2);
	munmap(moved, LEN);

	/* 4a. a raw munmap of anonymous memory: the interposer cannot see it;
	 * userfaultfd's UNMAP event does, after it landed */
	a = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(mrl_mr_reg(p.sctx, a, LEN, MRL_ACCESS_REMOTE_WRITE, NULL, &mr) == 0, "register");
	bool uffd = t_query(p.sctx, mr).watchers & MRL_WATCH_UFFD;
	REQUIRE(mrl_rmr_open(p.cpeer, mr, T_HANG_MS, &r) == 0, "peer opens the MR");
	while (mrl_event_get(p.sctx, &ev) == 0)
		mrl_event_ack(p.sctx, &ev);
	CHECK(syscall(SYS_munmap, a, LEN) == 0, "raw munmap");
	bool changed = false, brk = false;
	if (uffd) {
		CHECK(t_wait_state(p.sctx, mr, MRL_STATE_FENCED, T_HANG_MS) == 0, "userfaultfd: fenced");
		while (mrl_event_get(p.sctx, &ev) == 0) {
			changed |= ev.mr == mr && ev.type == MRL_EVENT_CHANGED && ev.cause == MRL_CAUSE_UNMAPPED;
			brk |= ev.mr == mr && ev.type == MRL_EVENT_BREAK;
			mrl_event_ack(p.sctx, &ev);
		}
		CHECK(changed && !brk, "userfaultfd: reported as seen after (CHANGED), never before (BREAK)");
	} else {
		printf("userfaultfd unavailable here: the raw munmap is left to verify\n");
		CHECK(mrl_verify(p.sctx, 0) == 1, "verify fences it");
	}
	/* the peer's notice says the fence came after the change: its writes
	 * that completed before it are not known to have reached the memory */
	ri = (struct mrl_rmr_info){.size = sizeof(ri)};
	for (uint64_t until = t_now_ns() + T_HANG_MS * 1000000ull; t_now_ns() < until; usleep(500)) {
		mrl_ep_poll(p.cep, &c, 0);
		if (mrl_rmr_query(r, &ri) == 0 && ri.state == MRL_STATE_FENCED)
			break;
	}
	CHECK(ri.state == MRL_STATE_FENCED && ri.cause == MRL_CAUSE_UNMAPPED && (ri.flags & MRL_RMR_SEEN_AFTER),
	      "the peer: fenced, unmapped, marked as seen after (flags %#x)", ri.flags);
	ri.size = offsetof(struct mrl_rmr_info, flags);
	CHECK(mrl_rmr_query(r, &ri) == 0 && ri.size == offsetof(struct mrl_rmr_info, flags),
	      "a caller built before the flags still gets the rest");
	mrl_rmr_close(r);
	mrl_mr_dereg(p.sctx, mr);

	/* 4c. a raw madvise(DONTNEED): userfaultfd's REMOVE names the MR; same
	 * object, so it stays active under a new generation */
	if (uffd) {
		a = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		REQUIRE(mrl_mr_reg(p.sctx, a, LEN, MRL_ACCESS_REMOTE_WRITE, NULL, &mr) == 0, "register");
		uint32_t gen = t_query(p.sctx, mr).generation;
		CHECK(syscall(SYS_madvise, a, 4096, MADV_DONTNEED) == 0, "raw madvise");
		CHECK(t_wait_event(p.sctx, MRL_EVENT_CHANGED, mr, T_HANG_MS, &ev) == 0 && ev.cause == MRL_CAUSE_MADVISED,
		      "userfaultfd REMOVE reported");
		in = t_query(p.sctx, mr);
		CHECK(in.state == MRL_STATE_ACTIVE && in.generation > gen, "still active, new generation");
		mrl_mr_dereg(p.sctx, mr);
		munmap(a, LEN);
	}

	/* 4b. a raw munmap of a file mapping (no userfaultfd for files): unseen
	 * until mrl_verify, which reports it after, never before */
	char dir[256], path[300];
	t_scratch("ext4", dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/f", dir);
	t_make_file(path, LEN);
	int fd = open(path, O_RDWR);
	a = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	REQUIRE(a != MAP_FAILED && mrl_mr_reg(p.sctx, a, LEN, MRL_ACCESS_REMOTE_WRITE, NULL, &mr) == 0,
		"register the application's file mapping");
	while (mrl_event_get(p.sctx, &ev) == 0)
		mrl_event_ack(p.sctx, &ev);
	CHECK(syscall(SYS_munmap, a, LEN) == 0, "raw munmap");
	in = t_query(p.sctx, mr);
	CHECK(in.state == MRL_STATE_ACTIVE, "the raw call went unseen (state %s)", mrl_state_str(in.state));
	CHECK(mrl_verify(p.sctx, 0) == 1, "verify fences one MR");
	CHECK(mrl_verify(p.sctx, 0) == 0, "and only once");
	changed = brk = false;
	while (mrl_event_get(p.sctx, &ev) == 0) {
		if (ev.mr == mr && ev.type == MRL_EVENT_CHANGED && ev.cause == MRL_CAUSE_UNMAPPED)
			changed = true;
		brk |= ev.mr == mr && ev.type == MRL_EVENT_BREAK;
		mrl_event_ack(p.sctx, &ev);
	}
	CHECK(changed && !brk, "reported as seen after (CHANGED), never as before (BREAK)");
	in = t_query(p.sctx, mr);
	CHECK(in.state == MRL_STATE_FENCED && in.cause == MRL_CAUSE_UNMAPPED, "fenced, cause unmapped");
	CHECK(mrl_verify(p.sctx, 7) == -EINVAL && mrl_verify(NULL, 0) == -EINVAL, "bad input");
	mrl_mr_dereg(p.sctx, mr);
	close(fd);
	unlink(path);
	rmdir(dir);

	/* 5. the same, with the monitor verifying every 20 ms on its own */
	struct mrl_ctx_opts vo = {.size = sizeof(vo), .provider = "mock", .verify_ms = 20};
	mrl_ctx *vctx;
	REQUIRE(mrl_ctx_create(&vo, &vctx) == 0, "context with periodic verify");
	t_scratch("ext4", dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/f", dir);
	t_make_file(path, LEN);
	fd = open(path, O_RDWR);
	a = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	REQUIRE(mrl_mr_reg(vctx, a, LEN, MRL_ACCESS_REMOTE_WRITE, NULL, &mr) == 0, "register");
	CHECK(syscall(SYS_munmap, a, LEN) == 0, "raw munmap");
	CHECK(t_wait_event(vctx, MRL_EVENT_CHANGED, mr, T_HANG_MS, &ev) == 0 && ev.cause == MRL_CAUSE_UNMAPPED,
	      "the periodic verify reports it, after");
	CHECK(t_wait_state(vctx, mr, MRL_STATE_FENCED, T_HANG_MS) == 0, "and fences the MR");
	mrl_mr_dereg(vctx, mr);
	mrl_ctx_destroy(vctx);
	close(fd);
	unlink(path);
	rmdir(dir);

	pair_close(&p);
	return t_done("t_unmap");
}
