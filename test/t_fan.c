/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The fanotify pre-content watcher on ext4, against the system's own tools
 * and the owner's own calls:
 * - range precision: a punch pauses only the MR it touches; a truncate only
 *   what lies past the new end; a collapse everything after its offset;
 * - classification: plain reads and writes (dd) pause nothing;
 * - the owner's own ftruncate/fallocate is seen before it lands, no deadlock;
 * - the actor's pid is reported;
 * - every coverage row claimed "before" is exercised here;
 * - a file opened before the mark makes writes/fallocate "after", honestly,
 *   until that opener closes. */
#include <sys/mman.h>
#include <linux/falloc.h>

#include "helpers.h"

#define MB (1u << 20)
#define NMR 4

static mrl_ctx *ctx;
static mrl_mr_t mr[NMR];

static uint32_t breaks_of(int i)
{
	return t_query(ctx, mr[i]).breaks;
}

/* Wait for a RESTORED or FENCED event on MR i; return the BREAK event seen before it. */
static int wait_resolved(int i, struct mrl_event *brk, uint32_t *final_type)
{
	uint64_t until = t_now_ns() + T_HANG_MS * 1000000ull;
	bool got_brk = false;
	while (t_now_ns() < until) {
		struct mrl_event ev;
		while (mrl_event_get(ctx, &ev) == 0) {
			struct mrl_event c = ev;
			mrl_event_ack(ctx, &ev);
			if (c.mr != mr[i])
				continue;
			if (c.type == MRL_EVENT_BREAK) {
				*brk = c;
				got_brk = true;
			} else if (got_brk && (c.type == MRL_EVENT_RESTORED || c.type == MRL_EVENT_FENCED)) {
				*final_type = c.type;
				return 0;
			}
		}
		struct pollfd p = {.fd = mrl_event_fd(ctx), .events = POLLIN};
		poll(&p, 1, 50);
	}
	return -ETIMEDOUT;
}

static pid_t run_tool(char *const argv[])
{
	pid_t pid = fork();
	if (pid == 0) {
		execvp(argv[0], argv);
		_exit(127);
	}
	return pid;
}

int main(void)
{
	char dir[256], path[300];
	t_scratch("ext4", dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/f", dir);
	t_make_file(path, NMR * MB);

	ctx = t_ctx("mock", 1000);
	if (!(mrl_ctx_watchers(ctx) & MRL_WATCH_FANOTIFY))
		t_skip("fanotify pre-content events unavailable here (needs Linux >= 6.14 and CAP_SYS_ADMIN): %s",
		       mrl_last_error());
	void *base;
	REQUIRE(mrl_file_map(ctx, path, 0, NMR * MB, PROT_READ | PROT_WRITE, &base) == 0, "map");
	for (int i = 0; i < NMR; i++)
		REQUIRE(mrl_mr_reg(ctx, (char *)base + i * MB, MB, MRL_ACCESS_REMOTE_WRITE, NULL, &mr[i]) == 0,
			"register MR %d", i);
	struct mrl_mr_info in = t_query(ctx, mr[0]);
	if (!(in.watchers & MRL_WATCH_FANOTIFY))
		t_skip("ext4 file not marked: fanotify refused (%s)", mrl_last_error());
	CHECK(!in.lease_held, "no lease is needed under fanotify");
	CHECK(in.coverage[MRL_CHG_OTHER_TRUNCATE] == MRL_SEEN_BEFORE, "other truncate: before");
	CHECK(in.coverage[MRL_CHG_OTHER_LAYOUT] == MRL_SEEN_BEFORE, "other fallocate: before (no older opener)");
	CHECK(in.coverage[MRL_CHG_OTHER_WRITE] == MRL_SEEN_BEFORE, "other write: before");
	CHECK(in.coverage[MRL_CHG_OWNER_TRUNCATE] == MRL_SEEN_BEFORE, "owner truncate: before");
	CHECK(in.coverage[MRL_CHG_OWNER_LAYOUT] == MRL_SEEN_BEFORE, "owner fallocate: before");
	CHECK(in.coverage[MRL_CHG_OWNER_WRITE] == MRL_SEEN_BEFORE, "owner write: before");
	uint64_t key1 = in.key;

	/* 1. another process punches a hole at the start: only MR 0 pauses */
	struct mrl_event brk;
	uint32_t fin = 0;
	char *punch[] = {"fallocate", "--punch-hole", "--offset", "4096", "--length", "65536", path, NULL};
	pid_t tool = run_tool(punch);
	CHECK(t_wait_status(tool) == 0, "fallocate --punch-hole succeeds");
	REQUIRE(wait_resolved(0, &brk, &fin) == 0, "MR 0 paused and resolved");
	CHECK(brk.cause == MRL_CAUSE_PUNCH_HOLE, "cause punch-hole, got %s", mrl_cause_str(brk.cause));
	CHECK(brk.offset == 4096 && brk.length == 65536, "break names the punched bytes, got %llu+%llu",
	      (unsigned long long)brk.offset, (unsigned long long)brk.length);
	CHECK(brk.pid == tool, "actor pid %d, got %d", (int)tool, (int)brk.pid);
	CHECK(fin == MRL_EVENT_RESTORED, "restored, got %s", mrl_event_str(fin));
	CHECK(t_query(ctx, mr[0]).key == key1 && t_query(ctx, mr[0]).state == MRL_STATE_ACTIVE,
	      "same key, active");
	for (int i = 1; i < NMR; i++)
		CHECK(breaks_of(i) == 0, "MR %d outside the punch never paused (%u breaks)", i, breaks_of(i));

	/* 2. plain reads and writes by another process pause nothing */
	struct mrl_stats s0 = {.size = sizeof(s0)}, s1 = {.size = sizeof(s1)};
	mrl_ctx_stats(ctx, &s0);
	CHECK(t_sh("dd if=%s of=/dev/null bs=64k count=32 status=none", path) == 0, "dd read");
	CHECK(t_sh("dd if=/dev/zero of=%s bs=4k count=4 seek=300 conv=notrunc status=none", path) == 0,
	      "dd write");
	mrl_ctx_stats(ctx, &s1);
	CHECK(s1.breaks == s0.breaks, "reads and writes are not breaks (%llu -> %llu)",
	      (unsigned long long)s0.breaks, (unsigned long long)s1.breaks);
	CHECK(s1.fan_pass_data >= s0.fan_pass_data + 2, "seen before and let through as data (%llu -> %llu)",
	      (unsigned long long)s0.fan_pass_data, (unsigned long long)s1.fan_pass_data);
	CHECK(s1.classify_count > s0.classify_count, "classification ran");

	/* 3. the owner's own calls, through an fd it opens now */
	int fd = open(path, O_RDWR | O_CLOEXEC);
	REQUIRE(fd >= 0, "owner opens the file");
	uint32_t b0 = breaks_of(0), b2 = breaks_of(2), b3 = breaks_of(3);
	CHECK(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, MB + 8192, 4096) == 0,
	      "owner punch: %s", strerror(errno));
	REQUIRE(wait_resolved(1, &brk, &fin) == 0, "MR 1 paused and resolved for the owner's punch");
	CHECK(brk.pid == getpid(), "actor is the owner (%d), got %d", (int)getpid(), (int)brk.pid);
	CHECK(fin == MRL_EVENT_RESTORED, "restored");
	CHECK(breaks_of(0) == b0 && breaks_of(2) == b2 && breaks_of(3) == b3, "others untouched");

	CHECK(fallocate(fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, 2 * MB, 4096) == 0,
	      "owner zero-range: %s", strerror(errno));
	REQUIRE(wait_resolved(2, &brk, &fin) == 0, "MR 2 paused for zero-range");
	CHECK(brk.cause == MRL_CAUSE_ZERO_RANGE, "cause zero-range, got %s", mrl_cause_str(brk.cause));

	mrl_ctx_stats(ctx, &s0);
	CHECK(pwrite(fd, "owner", 5, 3 * MB + 100) == 5, "owner pwrite");
	mrl_ctx_stats(ctx, &s1);
	CHECK(s1.fan_pass_data > s0.fan_pass_data && s1.breaks == s0.breaks,
	      "owner write seen and let through, no break");

	/* 4. truncate by another process: only what lies past the new end */
	b0 = breaks_of(0);
	uint32_t b1 = breaks_of(1);
	char size_s[32];
	snprintf(size_s, sizeof(size_s), "%u", 3 * MB + MB / 2);
	char *trunc[] = {"truncate", "-s", size_s, path, NULL};
	tool = run_tool(trunc);
	CHECK(t_wait_status(tool) == 0, "truncate succeeds");
	REQUIRE(wait_resolved(3, &brk, &fin) == 0, "MR 3 paused for the truncate");
	CHECK(brk.cause == MRL_CAUSE_TRUNCATED, "cause truncated, got %s", mrl_cause_str(brk.cause));
	CHECK(brk.offset == MB / 2, "break starts at the new end, got %llu", (unsigned long long)brk.offset);
	/* the tail's FENCED may come first: the head's restore follows it */
	t_wait_state(ctx, mr[3], MRL_STATE_ACTIVE, T_HANG_MS);
	in = t_query(ctx, mr[3]);
	CHECK(in.valid_length == MB / 2 && in.state == MRL_STATE_ACTIVE,
	      "head restored, tail fenced (valid %llu)", (unsigned long long)in.valid_length);
	CHECK(breaks_of(0) == b0 && breaks_of(1) == b1, "MRs below the new end never paused");

	/* 5. the owner's own ftruncate, on this thread: seen before, no deadlock */
	CHECK(ftruncate(fd, 3 * MB) == 0, "owner ftruncate: %s", strerror(errno));
	REQUIRE(t_wait_state(ctx, mr[3], MRL_STATE_FENCED, T_HANG_MS) == 0, "MR 3 wholly past the end: fenced");
	CHECK(t_query(ctx, mr[3]).cause == MRL_CAUSE_TRUNCATED, "cause truncated");
	CHECK(t_query(ctx, mr[2]).state == MRL_STATE_ACTIVE, "MR 2 still whole");

	/* 6. collapse moves everything after its offset: MR 2 only (MR 3 is fenced) */
	b0 = breaks_of(0);
	b1 = breaks_of(1);
	int cr = fallocate(fd, FALLOC_FL_COLLAPSE_RANGE, 2 * MB + 512 * 1024, 64 * 1024);
	if (cr == 0) {
		REQUIRE(wait_resolved(2, &brk, &fin) == 0, "MR 2 paused for the collapse");
		CHECK(brk.cause == MRL_CAUSE_COLLAPSE_RANGE, "cause collapse-range, got %s",
		      mrl_cause_str(brk.cause));
		CHECK(breaks_of(0) == b0 && breaks_of(1) == b1, "MRs before the collapse untouched");
	} else {
		printf("collapse-range refused by the filesystem (%s); not checked\n", strerror(errno));
	}
	close(fd);

	/* 7. an opener older than the mark escapes write/fallocate events: say so */
	char path2[320];
	snprintf(path2, sizeof(path2), "%s/g", dir);
	t_make_file(path2, MB);
	int old = open(path2, O_RDWR);
	void *b2p;
	mrl_mr_t m2;
	REQUIRE(mrl_file_map(ctx, path2, 0, MB, PROT_READ | PROT_WRITE, &b2p) == 0, "map g");
	REQUIRE(mrl_mr_reg(ctx, b2p, MB, MRL_ACCESS_REMOTE_WRITE, NULL, &m2) == 0, "register g");
	in = t_query(ctx, m2);
	CHECK(in.coverage[MRL_CHG_OTHER_LAYOUT] == MRL_SEEN_AFTER,
	      "with an older opener, fallocate is only seen after (got %s)",
	      mrl_seen_str(in.coverage[MRL_CHG_OTHER_LAYOUT]));
	CHECK(in.coverage[MRL_CHG_OTHER_TRUNCATE] == MRL_SEEN_BEFORE, "truncate is still seen before");
	close(old);
	uint64_t until = t_now_ns() + T_HANG_MS * 1000000ull;
	while (t_query(ctx, m2).coverage[MRL_CHG_OTHER_LAYOUT] != MRL_SEEN_BEFORE && t_now_ns() < until)
		usleep(2000);
	CHECK(t_query(ctx, m2).coverage[MRL_CHG_OTHER_LAYOUT] == MRL_SEEN_BEFORE,
	      "once the older opener closes, fallocate is seen before");

	/* 8. memory the application mapped itself, keeping its own fd (opened
	 * before the mark): truncates are still seen before, by range */
	char path3[320];
	snprintf(path3, sizeof(path3), "%s/h", dir);
	t_make_file(path3, MB);
	int afd = open(path3, O_RDWR);
	void *ap = mmap(NULL, MB, PROT_READ | PROT_WRITE, MAP_SHARED, afd, 0);
	REQUIRE(ap != MAP_FAILED, "application maps h");
	mrl_mr_t m3[2];
	REQUIRE(mrl_mr_reg(ctx, ap, MB / 2, MRL_ACCESS_REMOTE_WRITE, NULL, &m3[0]) == 0 &&
		mrl_mr_reg(ctx, (char *)ap + MB / 2, MB / 2, MRL_ACCESS_REMOTE_WRITE, NULL, &m3[1]) == 0,
		"register the application's mapping");
	in = t_query(ctx, m3[1]);
	CHECK(in.watchers & MRL_WATCH_FANOTIFY, "fanotify watches it (no lease is possible here)");
	CHECK(in.coverage[MRL_CHG_OTHER_TRUNCATE] == MRL_SEEN_BEFORE &&
	      in.coverage[MRL_CHG_OTHER_LAYOUT] == MRL_SEEN_AFTER,
	      "truncate before, fallocate after (the application's fd predates the mark)");
	CHECK(t_sh("truncate -s %u %s", MB - 4096, path3) == 0, "truncate h");
	REQUIRE(t_wait_event(ctx, MRL_EVENT_FENCED, m3[1], T_HANG_MS, &brk) == 0, "tail of the second MR fenced");
	/* the head comes back once the device has it again (a RESTORED after the FENCED) */
	CHECK(brk.offset == MB / 2 - 4096 && t_wait_state(ctx, m3[1], MRL_STATE_ACTIVE, T_HANG_MS) == 0,
	      "only the last page fenced (offset %llu)", (unsigned long long)brk.offset);
	CHECK(t_query(ctx, m3[0]).breaks == 0, "the first MR, below the new end, never paused");
	mrl_mr_dereg(ctx, m3[0]);
	mrl_mr_dereg(ctx, m3[1]);
	munmap(ap, MB);
	close(afd);
	unlink(path3);

	mrl_ctx_stats(ctx, &s1);
	if (s1.classify_count)
		printf("classification: %llu events, %.1f us each\n",
		       (unsigned long long)s1.classify_count,
		       (double)s1.classify_ns_total / (double)s1.classify_count / 1e3);
	mrl_mr_dereg(ctx, m2);
	mrl_file_unmap(ctx, b2p, MB);
	for (int i = 0; i < NMR; i++)
		mrl_mr_dereg(ctx, mr[i]);
	mrl_ctx_destroy(ctx);
	unlink(path);
	unlink(path2);
	rmdir(dir);
	return t_done("t_fan");
}
