/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Every filesystem gets a working watcher or says "never": on ext4, tmpfs,
 * and xfs and btrfs loop images made here, with fanotify and with the lease
 * alone, another process truncates, punches, writes, truncates by O_TRUNC,
 * renames over and removes an MR's file with the system's tools. A cell that
 * claims "before" must be met by the library holding the change (a pause,
 * or the lease/fanotify seeing it), "after" by an event; a truncate must
 * fence past the new end. On btrfs stat's device number is not the one
 * /proc/self/maps shows: the watchers must still find the file. */
#include <sys/mman.h>
#include <sys/mount.h>

#include "helpers.h"

#define SZ (256u * 1024)

static char mnt[4][256], img[4][300];

static void cleanup(void)
{
	for (int i = 0; i < 4; i++) {
		if (mnt[i][0]) {
			umount2(mnt[i], MNT_DETACH);
			rmdir(mnt[i]);
		}
		if (img[i][0])
			unlink(img[i]);
	}
}

/* A scratch directory on fs; false (with the reason printed) if this
 * machine cannot make one. */
static bool fs_dir(int i, const char *fs, char *dir, size_t dirsz)
{
	if (!strcmp(fs, "ext4") || !strcmp(fs, "tmpfs")) {
		t_scratch(fs, dir, dirsz);
		return true;
	}
	char tool[32];
	snprintf(tool, sizeof(tool), "mkfs.%s", fs);
	if (t_sh("command -v %s >/dev/null 2>&1 || test -x /usr/sbin/%s || test -x /sbin/%s", tool, tool,
		 tool)) {
		printf("-- %s: skipped, %s is not installed (scripts/setup.sh installs it)\n", fs, tool);
		return false;
	}
	if (access("/dev/loop-control", F_OK)) {
		printf("-- %s: skipped, no loop devices here\n", fs);
		return false;
	}
	snprintf(mnt[i], sizeof(mnt[i]), "/var/tmp/mrl-fs-%s-XXXXXX", fs);
	if (!mkdtemp(mnt[i])) {
		mnt[i][0] = 0;
		printf("-- %s: skipped, mkdtemp: %s\n", fs, strerror(errno));
		return false;
	}
	snprintf(img[i], sizeof(img[i]), "%.250s.img", mnt[i]);
	if (t_sh("truncate -s 320M %s && PATH=$PATH:/usr/sbin:/sbin %s -q %s >/dev/null 2>&1", img[i], tool,
		 img[i]) ||
	    t_sh("mount -o loop %s %s", img[i], mnt[i])) {
		printf("-- %s: skipped, cannot make or mount a loop image of it\n", fs);
		rmdir(mnt[i]);
		mnt[i][0] = 0;
		unlink(img[i]);
		img[i][0] = 0;
		return false;
	}
	snprintf(dir, dirsz, "%.250s", mnt[i]);
	return true;
}

enum { A_TRUNCATE, A_PUNCH, A_WRITE, A_OTRUNC, A_RENAME, A_UNLINK, A_MAX };
static const int act_row[A_MAX] = {MRL_CHG_OTHER_TRUNCATE, MRL_CHG_OTHER_LAYOUT, MRL_CHG_OTHER_WRITE,
				   MRL_CHG_OTHER_OPEN_TRUNC, MRL_CHG_OTHER_RENAME,
				   MRL_CHG_OTHER_UNLINK};

static int act(int a, const char *path)
{
	switch (a) {
	case A_TRUNCATE: /* coreutils opens O_NONBLOCK: against a lease it retries */
		return t_sh("for i in $(seq 300); do truncate -s %u %s 2>/dev/null && exit 0; "
			    "sleep 0.01; done; exit 1", SZ - 4096, path);
	case A_PUNCH:
		return t_sh("fallocate --punch-hole --offset 8192 --length 4096 %s", path);
	case A_WRITE:
		return t_sh("dd if=/dev/zero of=%s bs=4096 count=1 seek=3 conv=notrunc status=none", path);
	case A_OTRUNC:
		return t_sh(": > %s", path);
	case A_RENAME:
		return t_sh("echo other > %s.new && mv %s.new %s", path, path, path);
	default:
		return t_sh("rm %s", path);
	}
}

static uint64_t seen_count(mrl_ctx *ctx, bool breaks_only)
{
	struct mrl_stats s = {.size = sizeof(s)};
	mrl_ctx_stats(ctx, &s);
	if (breaks_only)
		return s.pauses + s.denials;
	return s.pauses + s.lease_breaks + s.fan_pass_data + s.fan_layout + s.denials + s.fences +
	       s.restores;
}

static void run(const char *fs, const char *dir, unsigned flags)
{
	char path[300];
	snprintf(path, sizeof(path), "%s/f", dir);
	printf("-- %s%s\n", fs, flags & MRL_CTX_NO_FANOTIFY ? ", no fanotify" : "");
	for (int a = 0; a < A_MAX; a++) {
		int row = act_row[a];
		t_make_file(path, SZ);
		mrl_ctx *ctx = t_ctx_flags("mock", 1000, flags);
		void *p;
		mrl_mr_t mr;
		REQUIRE(mrl_file_map(ctx, path, 0, SZ, PROT_READ | PROT_WRITE, &p) == 0, "map");
		REQUIRE(mrl_mr_reg(ctx, p, SZ, MRL_ACCESS_REMOTE_WRITE, NULL, &mr) == 0, "register");
		struct mrl_mr_info in = t_query(ctx, mr);
		if (a == 0) {
			char names[96] = "";
			for (unsigned b = 1; b <= MRL_WATCH_VERIFY; b <<= 1)
				if (in.watchers & b)
					snprintf(names + strlen(names), sizeof(names) - strlen(names), "%s%s",
						 names[0] ? "+" : "", mrl_watcher_str(b));
			printf("   watchers: %s\n", names);
			/* a disk filesystem gets fanotify wherever the context runs it */
			if (strcmp(fs, "tmpfs") && (mrl_ctx_watchers(ctx) & MRL_WATCH_FANOTIFY))
				CHECK(in.watchers & MRL_WATCH_FANOTIFY, "%s: fanotify watches the file (%#x)",
				      fs, in.watchers);
		}
		int seen = in.coverage[row];
		bool layout = a == A_TRUNCATE || a == A_PUNCH || a == A_OTRUNC;
		uint64_t before = seen_count(ctx, layout);
		int r = act(a, path);
		CHECK(r == 0, "%s: '%s' ran (%d)", fs, mrl_change_str(row), r);
		const char *res = "not claimed";
		if (seen == MRL_SEEN_BEFORE) {
			/* a layout change claimed before is held as a break */
			uint64_t until = t_now_ns() + T_HANG_MS * 1000000ull;
			while (seen_count(ctx, layout) == before && t_now_ns() < until)
				usleep(1000);
			CHECK(seen_count(ctx, layout) > before, "%s: '%s' claimed before, and held", fs,
			      mrl_change_str(row));
			res = layout ? "before: held" : "before: seen";
		} else if (seen == MRL_SEEN_AFTER) {
			struct mrl_event ev;
			int got = -1;
			uint64_t until = t_now_ns() + T_HANG_MS * 1000000ull;
			while (got && t_now_ns() < until)
				if (t_wait_event(ctx, 0, mr, 100, &ev) == 0 &&
				    (ev.type == MRL_EVENT_CHANGED || ev.type == MRL_EVENT_FENCED))
					got = 0;
			CHECK(got == 0, "%s: '%s' claimed after, and an event came", fs, mrl_change_str(row));
			res = "after: event";
		}
		if (seen != MRL_SEEN_NEVER && (a == A_TRUNCATE || a == A_OTRUNC)) {
			/* the part past the new end is fenced, whoever saw it */
			uint64_t end = a == A_TRUNCATE ? SZ - 4096 : 0;
			uint64_t until = t_now_ns() + T_HANG_MS * 1000000ull;
			while ((in = t_query(ctx, mr)).valid_length > end && t_now_ns() < until)
				usleep(1000);
			CHECK(in.valid_length <= end && in.cause == MRL_CAUSE_TRUNCATED,
			      "%s: '%s' fenced past %llu (valid %llu, %s)", fs, mrl_change_str(row),
			      (unsigned long long)end, (unsigned long long)in.valid_length,
			      mrl_cause_str(in.cause));
		}
		if ((a == A_RENAME || a == A_UNLINK) && seen != MRL_SEEN_NEVER) {
			in = t_query(ctx, mr);
			int want = a == A_RENAME ? MRL_CAUSE_REPLACED_FILE : MRL_CAUSE_UNLINKED;
			CHECK(in.cause == (uint32_t)want, "%s: '%s' cause %s", fs, mrl_change_str(row),
			      mrl_cause_str(in.cause));
		}
		printf("   %-36s %-8s %s\n", mrl_change_str(row), mrl_seen_str(seen), res);
		mrl_mr_dereg(ctx, mr);
		mrl_file_unmap(ctx, p, SZ);
		mrl_ctx_destroy(ctx);
		unlink(path);
	}
}

int main(void)
{
	static const char *const fss[] = {"ext4", "tmpfs", "xfs", "btrfs"};
	atexit(cleanup);
	if (geteuid() != 0)
		t_skip("loop mounts and fanotify need root");
	for (int i = 0; i < 4; i++) {
		char dir[256];
		if (!fs_dir(i, fss[i], dir, sizeof(dir)))
			continue;
		run(fss[i], dir, 0);
		run(fss[i], dir, MRL_CTX_NO_FANOTIFY);
		if (!mnt[i][0])
			rmdir(dir);
	}
	return t_done("t_fs_matrix");
}
