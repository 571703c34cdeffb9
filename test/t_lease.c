/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The lease watcher against the system's own tools, on ext4 and tmpfs:
 * a reader pauses nothing; a hole punch pauses then restores with the same key;
 * a truncate fences what lies past the new end and restores the rest;
 * memory the application mapped itself is registered, with honest coverage. */
#include <sys/mman.h>

#include "helpers.h"
#include "mrl_int.h"

#define MB (1u << 20)

static void run(const char *fs)
{
	char dir[256], path[300];
	t_scratch(fs, dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/f", dir);
	t_make_file(path, 4 * MB);
	printf("-- %s (%s)\n", fs, path);

	mrl_ctx *ctx = t_ctx_flags("mock", 1000, MRL_CTX_NO_FANOTIFY);
	void *p;
	REQUIRE(mrl_file_map(ctx, path, 0, 4 * MB, PROT_READ | PROT_WRITE, &p) == 0, "map");
	mrl_mr_t mr[4];
	for (int i = 0; i < 4; i++)
		REQUIRE(mrl_mr_reg(ctx, (char *)p + i * MB, MB, MRL_ACCESS_REMOTE_WRITE, NULL, &mr[i]) == 0,
			"register MR %d", i);
	struct mrl_mr_info in = t_query(ctx, mr[1]);
	CHECK(in.kind == (strcmp(fs, "tmpfs") ? MRL_KIND_FILE : MRL_KIND_TMPFS), "kind %s",
	      mrl_kind_str(in.kind));
	CHECK(in.file_offset == MB, "file offset found from the address alone: %llu",
	      (unsigned long long)in.file_offset);
	CHECK(in.lease_held == 1, "the library's own fd is leased");
	CHECK(in.coverage[MRL_CHG_OTHER_OPEN_WRITE] == MRL_SEEN_BEFORE, "open-for-write seen before");
	CHECK(in.coverage[MRL_CHG_OTHER_LAYOUT] == MRL_SEEN_BEFORE, "punch by another process seen before");
	CHECK(in.coverage[MRL_CHG_OWNER_MUNMAP] ==
		      (in.watchers & MRL_WATCH_INTERPOSE ? MRL_SEEN_BEFORE : MRL_SEEN_AFTER),
	      "munmap claimed before only where the interposer runs");
	uint64_t key1 = in.key;

	/* 1. a reader: nothing paused, lease back once it closes */
	CHECK(t_sh("cat %s > /dev/null", path) == 0, "cat completes");
	struct mrl_event ev;
	CHECK(t_wait_event(ctx, MRL_EVENT_BREAK, 0, 200, &ev) == -ETIMEDOUT, "no break event for a reader");
	uint64_t until = t_now_ns() + T_HANG_MS * 1000000ull;
	while (!t_query(ctx, mr[0]).lease_held && t_now_ns() < until)
		usleep(1000);
	CHECK(t_query(ctx, mr[0]).lease_held, "lease retaken after the reader closed");
	CHECK(t_query(ctx, mr[0]).state == MRL_STATE_ACTIVE, "MR stayed active through a read");

	/* 2. a hole punch by another process: break, pause, restore, same key */
	pid_t pid = t_sh_bg("fallocate --punch-hole -o %u -l 8192 %s", MB + 4096, path);
	CHECK(t_wait_event(ctx, MRL_EVENT_BREAK, mr[1], T_HANG_MS, &ev) == 0, "break event for MR 1");
	CHECK(ev.cause == MRL_CAUSE_OPEN_WRITE, "cause open-write, got %s", mrl_cause_str(ev.cause));
	CHECK(ev.deadline_ns > ev.time_ns, "break carries a deadline");
	CHECK(ev.pid == 0 || ev.pid > 1, "actor pid plausible (%d)", ev.pid);
	CHECK(t_wait_status(pid) == 0, "fallocate succeeded");
	CHECK(t_wait_state(ctx, mr[1], MRL_STATE_ACTIVE, T_HANG_MS) == 0, "MR 1 restored");
	in = t_query(ctx, mr[1]);
	CHECK(in.key == key1, "restore kept the key (%#llx vs %#llx)", (unsigned long long)in.key,
	      (unsigned long long)key1);
	CHECK(in.restores >= 1, "restore counted");
	CHECK(in.generation > 1, "generation bumped by the restore");
	void *a;
	size_t l;
	CHECK(mrl_mock_lookup(((struct mrl_ctx *)ctx)->dev, in.key, &a, &l) == 0 && a == in.addr &&
		      l == MB,
	      "the device has the MR registered again over the same range");
	CHECK(((unsigned char *)p)[MB + 4096] == 0, "the punch landed (hole reads zero)");

	/* 3. truncate into MR 2: MR 3 fenced, MR 2 fenced past the new end, others live */
	uint64_t newsize = 2 * MB + 100000;
	int st = 1;
	for (int i = 0; i < 100 && st; i++) { /* coreutils opens O_NONBLOCK: EAGAIN once */
		st = t_sh("truncate -s %llu %s 2>/dev/null", (unsigned long long)newsize, path);
		if (st)
			usleep(10000);
	}
	CHECK(st == 0, "truncate eventually succeeded");
	CHECK(t_wait_state(ctx, mr[3], MRL_STATE_FENCED, T_HANG_MS) == 0, "MR 3 (past the end) fenced");
	CHECK(t_wait_state(ctx, mr[2], MRL_STATE_ACTIVE, T_HANG_MS) == 0, "MR 2 restored");
	in = t_query(ctx, mr[3]);
	CHECK(in.cause == MRL_CAUSE_TRUNCATED, "MR 3 cause truncated, got %s", mrl_cause_str(in.cause));
	in = t_query(ctx, mr[2]);
	CHECK(in.valid_length == 100000, "MR 2 served up to the new end: %llu",
	      (unsigned long long)in.valid_length);
	CHECK(in.cause == MRL_CAUSE_TRUNCATED, "MR 2 tail cause truncated");
	CHECK(mrl_mock_lookup(((struct mrl_ctx *)ctx)->dev, in.key, &a, &l) == 0 && l == 100000,
	      "device registration shrunk to the live part (%zu)", l);
	CHECK(t_query(ctx, mr[0]).state == MRL_STATE_ACTIVE, "MR 0 live");

	for (int i = 0; i < 4; i++)
		CHECK(mrl_mr_dereg(ctx, mr[i]) == 0, "dereg %d", i);
	CHECK(mrl_mr_dereg(ctx, mr[0]) == -ESTALE, "double dereg is -ESTALE");
	CHECK(mrl_file_unmap(ctx, p, 4 * MB) == 0, "unmap");

	/* 4. memory the application mapped itself, fd kept open: no lease possible */
	int fd = open(path, O_RDWR);
	void *q = mmap(NULL, MB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	REQUIRE(q != MAP_FAILED, "mmap");
	mrl_mr_t m2;
	REQUIRE(mrl_mr_reg(ctx, q, MB, MRL_ACCESS_REMOTE_WRITE, NULL, &m2) == 0, "register app mapping");
	in = t_query(ctx, m2);
	CHECK(!in.lease_held, "no lease without the library's own fd");
	CHECK(in.coverage[MRL_CHG_OTHER_OPEN_WRITE] == MRL_SEEN_NEVER, "opens not claimed as seen");
	CHECK(in.coverage[MRL_CHG_OTHER_TRUNCATE] == MRL_SEEN_AFTER, "truncate seen after (inotify)");
	/* handing the fd over makes a lease possible once no one else has the file open */
	CHECK(mrl_file_adopt(ctx, fd) == 0, "adopt fd");
	CHECK(t_query(ctx, m2).lease_held, "adopted fd is leased");
	CHECK(mrl_file_adopt(ctx, fd) == -EEXIST, "adopting twice is -EEXIST");
	CHECK(mrl_mr_dereg(ctx, m2) == 0, "dereg");
	munmap(q, MB);
	mrl_ctx_destroy(ctx);
	unlink(path);
	rmdir(dir);
}

int main(void)
{
	run("ext4");
	run("tmpfs");
	return t_done("t_lease");
}
