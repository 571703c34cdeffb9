/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Coverage is honest: for every watcher set this machine runs (fanotify on
 * ext4, the lease on ext4, the lease on tmpfs), every change an MR's coverage
 * claims to see "before" is made here, by another process with the system's
 * own tools or by the owner itself, and the library must have seen it: a
 * break (pause), a lease break, or a fanotify event let through as plain
 * data. Each row runs on a fresh file so one change cannot hide another.
 * memfds are changed by path through /proc/PID/fd/N (the only way another
 * process reaches one it was not handed) and, for the owner's rows,
 * through the owner's own memfd fd; a sealed memfd (policy deny) claims
 * its refused rows "n/a", and each refused change must fail and leave the
 * MR untouched. A hugetlb memfd (huge pages set aside for the test, as
 * root) is changed a huge page at a time, the least hugetlbfs takes. */
#include <linux/capability.h>
#include <linux/falloc.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include "helpers.h"

#define SZ (256u * 1024)

struct config {
	const char *name, *fs;
	unsigned flags;
	unsigned want;   /* watcher the MR must report */
	int memfd;       /* 0: a file on fs; MEMFD_PLAIN, MEMFD_SEALED (policy deny) */
};
enum { MEMFD_PLAIN = 1, MEMFD_SEALED, SHMEM_ANON, MEMFD_HUGE };
#define HSZ (4u << 20) /* a hugetlb memfd: two 2 MiB pages */

/* The object's size and the unit each change moves (a page; a huge page
 * on hugetlbfs, which takes nothing smaller) */
static size_t obj_sz = SZ, unit = 4096;

/* The owner's fd for its own changes: the fd it handed the library
 * (mrl_file_adopt), or -1 to open one (which a lease sees). */
static int owner_fd = -1;
static char *mr_addr; /* the MR's first byte, for the owner's address-space rows */

static int act(int row, const char *path)
{
	int fd, ret = 0;
	if (!path) /* only: is there an action for this row? */
		return row == MRL_CHG_OTHER_OPEN_READ || row == MRL_CHG_OTHER_OPEN_WRITE ||
			       row == MRL_CHG_OTHER_TRUNCATE || row == MRL_CHG_OTHER_LAYOUT ||
			       row == MRL_CHG_OTHER_WRITE || row == MRL_CHG_OWNER_OPEN ||
			       row == MRL_CHG_OWNER_TRUNCATE || row == MRL_CHG_OWNER_LAYOUT ||
			       row == MRL_CHG_OWNER_WRITE || row == MRL_CHG_OWNER_MUNMAP ||
			       row == MRL_CHG_OWNER_MREMAP || row == MRL_CHG_OWNER_MADVISE ||
			       row == MRL_CHG_OWNER_MAP_FIXED || row == MRL_CHG_OTHER_OPEN_TRUNC ||
			       row == MRL_CHG_OTHER_RENAME || row == MRL_CHG_OTHER_UNLINK
		       ? 0 : -2;
	switch (row) {
	case MRL_CHG_OTHER_OPEN_READ:
		return t_sh("cat %s > /dev/null", path);
	case MRL_CHG_OTHER_OPEN_WRITE:
		return t_sh("sh -c ': >> %s'", path);
	case MRL_CHG_OTHER_TRUNCATE:
		/* coreutils opens O_NONBLOCK: against a lease the first try says EAGAIN */
		return t_sh("for i in $(seq 200); do truncate -s %u %s 2>/dev/null && exit 0; "
			    "sleep 0.01; done; exit 1", (unsigned)(obj_sz - unit), path);
	case MRL_CHG_OTHER_LAYOUT:
		return t_sh("fallocate --punch-hole --offset %zu --length %zu %s", unit == 4096 ? 8192 : 0, unit,
			    path);
	case MRL_CHG_OTHER_WRITE:
		return t_sh("dd if=/dev/zero of=%s bs=4096 count=1 seek=3 conv=notrunc status=none", path);
	case MRL_CHG_OTHER_OPEN_TRUNC:
		return t_sh("sh -c ': > %s'", path);
	case MRL_CHG_OTHER_RENAME:
		return t_sh("echo other > %s.new && mv %s.new %s", path, path, path);
	case MRL_CHG_OTHER_UNLINK:
		return t_sh("rm %s", path);
	case MRL_CHG_OWNER_OPEN:
		fd = open(path, O_RDONLY);
		if (fd < 0)
			return -1;
		close(fd);
		return 0;
	case MRL_CHG_OWNER_TRUNCATE:
	case MRL_CHG_OWNER_LAYOUT:
	case MRL_CHG_OWNER_WRITE:
		fd = owner_fd >= 0 ? dup(owner_fd) : open(path, O_RDWR);
		if (fd < 0)
			return -1;
		if (row == MRL_CHG_OWNER_TRUNCATE)
			ret = ftruncate(fd, (off_t)(obj_sz - unit));
		else if (row == MRL_CHG_OWNER_LAYOUT)
			ret = fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, unit == 4096 ? 8192 : 0,
					(off_t)unit);
		else
			ret = pwrite(fd, "x", 1, 100) == 1 ? 0 : -1;
		close(fd);
		return ret;
	case MRL_CHG_OWNER_MUNMAP:
		return munmap(mr_addr, unit);
	case MRL_CHG_OWNER_MREMAP: /* shrink in place */
		return mremap(mr_addr, obj_sz, obj_sz / 2, 0) == MAP_FAILED ? -1 : 0;
	case MRL_CHG_OWNER_MADVISE:
		return madvise(mr_addr, unit, MADV_DONTNEED);
	case MRL_CHG_OWNER_MAP_FIXED:
		return mmap(mr_addr, unit, PROT_READ | PROT_WRITE, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS,
			    -1, 0) == MAP_FAILED ? -1 : 0;
	default:
		return -2; /* no action for this row here */
	}
}

static uint64_t seen_count(mrl_ctx *ctx)
{
	struct mrl_stats s = {.size = sizeof(s)};
	mrl_ctx_stats(ctx, &s);
	return s.pauses + s.lease_breaks + s.fan_pass_data + s.fan_layout + s.denials + s.fan_opens +
	       s.fences + s.restores;
}

static int run(const struct config *c)
{
	char dir[256], path[300];
	int claimed = 0;
	t_scratch(c->fs, dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/f", dir);
	printf("-- %s\n", c->name);
	obj_sz = c->memfd == MEMFD_HUGE ? HSZ : SZ;
	unit = c->memfd == MEMFD_HUGE ? 2u << 20 : 4096;
	for (int row = 0; row < MRL_CHG_MAX; row++) {
		snprintf(path, sizeof(path), "%s/f", dir);
		if (!c->memfd)
			t_make_file(path, SZ);
		mrl_ctx *ctx = t_ctx_flags("mock", 1000, c->flags);
		void *p;
		mrl_mr_t mr;
		owner_fd = -1;
		int mfd = -1;
		if (c->memfd == SHMEM_ANON) {
			/* reached by others through /proc/PID/map_files (CAP_SYS_ADMIN) */
			p = mmap(NULL, SZ, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
			REQUIRE(p != MAP_FAILED, "shared anonymous memory");
			snprintf(path, sizeof(path), "/proc/%d/map_files/%lx-%lx", (int)getpid(),
				 (unsigned long)p, (unsigned long)p + SZ);
		} else if (c->memfd) {
			mfd = memfd_create("t_coverage", MFD_CLOEXEC | (c->memfd == MEMFD_HUGE ? MFD_HUGETLB
											 : MFD_ALLOW_SEALING));
			REQUIRE(mfd >= 0 && ftruncate(mfd, (off_t)obj_sz) == 0, "memfd");
			p = mmap(NULL, obj_sz, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
			REQUIRE(p != MAP_FAILED, "map the memfd");
			snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)getpid(), mfd);
			owner_fd = mfd;
		} else if (c->want & MRL_WATCH_LEASE) {
			/* the weakest case the lease claims: the owner keeps using
			 * the fd it mapped with and handed to the library */
			int fd = open(path, O_RDWR);
			p = mmap(NULL, SZ, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
			REQUIRE(p != MAP_FAILED && mrl_file_adopt(ctx, fd) == 0, "map and adopt");
			owner_fd = fd;
		} else {
			REQUIRE(mrl_file_map(ctx, path, 0, SZ, PROT_READ | PROT_WRITE, &p) == 0, "map");
		}
		struct mrl_reg_opts ro = {.size = sizeof(ro), .policy = MRL_POLICY_DENY};
		REQUIRE(mrl_mr_reg(ctx, p, obj_sz, MRL_ACCESS_REMOTE_WRITE,
				   c->memfd == MEMFD_SEALED ? &ro : NULL, &mr) == 0, "register");
		mr_addr = p;
		struct mrl_mr_info in = t_query(ctx, mr);
		if (row == 0)
			CHECK((in.watchers & c->want) == c->want, "%s: watchers %#x include %#x", c->name,
			      in.watchers, c->want);
		if ((c->want & MRL_WATCH_LEASE) && in.watchers & MRL_WATCH_LEASE)
			CHECK(!(in.watchers & MRL_WATCH_FANOTIFY), "lease configuration runs no fanotify");
		if (in.coverage[row] == MRL_SEEN_BEFORE) {
			uint64_t before = seen_count(ctx);
			struct mrl_stats s0 = {.size = sizeof(s0)};
			mrl_ctx_stats(ctx, &s0);
			int r = act(row, path);
			if (r == -2) {
				CHECK(0, "%s: row '%s' claimed before but no test action exists", c->name,
				      mrl_change_str(row));
			} else {
				CHECK(r == 0, "%s: '%s' action ran (%d)", c->name, mrl_change_str(row), r);
				uint64_t until = t_now_ns() + T_HANG_MS * 1000000ull;
				while (seen_count(ctx) == before && t_now_ns() < until)
					usleep(1000);
				CHECK(seen_count(ctx) > before, "%s: '%s' claimed before, and seen", c->name,
				      mrl_change_str(row));
				/* the owner's own truncate or punch through its own fd breaks
				 * no lease and no open: only a held call (seccomp, fanotify)
				 * pauses for it */
				if ((row == MRL_CHG_OWNER_TRUNCATE || row == MRL_CHG_OWNER_LAYOUT) &&
				    (c->want & MRL_WATCH_SECCOMP)) {
					struct mrl_stats s1 = {.size = sizeof(s1)};
					mrl_ctx_stats(ctx, &s1);
					CHECK(s1.pauses > s0.pauses, "%s: '%s' held as a pause", c->name,
					      mrl_change_str(row));
				}
				/* an open seen is not yet its truncate seen: the truncate
				 * must have been held as one (a pause), and fenced the MR */
				if (row == MRL_CHG_OTHER_OPEN_TRUNC) {
					struct mrl_stats s = {.size = sizeof(s)};
					mrl_ctx_stats(ctx, &s);
					CHECK(s.pauses > 0, "%s: the O_TRUNC open paused the MR", c->name);
					CHECK(t_wait_state(ctx, mr, MRL_STATE_FENCED, T_HANG_MS) == 0 &&
						      t_query(ctx, mr).cause == MRL_CAUSE_TRUNCATED,
					      "%s: the O_TRUNC open fenced the MR, cause truncated (%s)",
					      c->name, mrl_cause_str(t_query(ctx, mr).cause));
				}
				/* the owner's address space is watched after the fact too
				 * (userfaultfd, verify): a "before" claim must not be met by
				 * an after-the-fact report */
				if (row == MRL_CHG_OWNER_MUNMAP || row == MRL_CHG_OWNER_MREMAP ||
				    row == MRL_CHG_OWNER_MADVISE || row == MRL_CHG_OWNER_MAP_FIXED) {
					struct mrl_event ev;
					bool after = false;
					while (mrl_event_get(ctx, &ev) == 0) {
						after |= ev.mr == mr && ev.type == MRL_EVENT_CHANGED;
						mrl_event_ack(ctx, &ev);
					}
					CHECK(!after, "%s: '%s' was seen only after it landed", c->name,
					      mrl_change_str(row));
				}
				printf("   %-36s before: seen\n", mrl_change_str(row));
				claimed++;
			}
		} else if (in.coverage[row] == MRL_SEEN_AFTER && act(row, NULL) != -2) {
			/* claimed after: the change lands, then the owner hears of it */
			int r = act(row, path);
			CHECK(r == 0, "%s: '%s' action ran (%d)", c->name, mrl_change_str(row), r);
			struct mrl_event ev;
			int got = -1;
			uint64_t until = t_now_ns() + T_HANG_MS * 1000000ull;
			while (got && t_now_ns() < until) {
				if (t_wait_event(ctx, 0, mr, 100, &ev) == 0 &&
				    (ev.type == MRL_EVENT_CHANGED || ev.type == MRL_EVENT_FENCED))
					got = 0;
			}
			CHECK(got == 0, "%s: '%s' claimed after, and seen after", c->name, mrl_change_str(row));
			printf("   %-36s after: seen\n", mrl_change_str(row));
		} else if (c->memfd == MEMFD_SEALED && in.coverage[row] == MRL_SEEN_NA &&
			   row != MRL_CHG_OTHER_RENAME && row != MRL_CHG_OTHER_UNLINK &&
			   act(row, NULL) != -2) {
			/* n/a because sealed: the change is refused, nothing moves */
			((volatile char *)p)[SZ - 1] = 7;
			int r = act(row, path);
			struct stat st;
			CHECK(r != 0, "%s: '%s' refused by the seals", c->name, mrl_change_str(row));
			CHECK(fstat(mfd, &st) == 0 && st.st_size == SZ &&
				      ((volatile char *)p)[SZ - 1] == 7,
			      "%s: '%s' left the memfd as it was", c->name, mrl_change_str(row));
			struct mrl_mr_info now = t_query(ctx, mr);
			CHECK(now.state == MRL_STATE_ACTIVE && now.generation == in.generation,
			      "%s: '%s' left the MR active, same generation", c->name,
			      mrl_change_str(row));
			printf("   %-36s n/a: refused\n", mrl_change_str(row));
		} else {
			printf("   %-36s %s\n", mrl_change_str(row), mrl_seen_str(in.coverage[row]));
		}
		mrl_mr_dereg(ctx, mr);
		if (c->memfd) {
			munmap(p, obj_sz);
			if (mfd >= 0)
				close(mfd);
			owner_fd = -1;
		} else if (owner_fd >= 0 || mrl_file_unmap(ctx, p, SZ) < 0)
			munmap(p, SZ); /* adopted fd (the library closes it), or a row changed the mapping */
		mrl_ctx_destroy(ctx);
		if (!c->memfd)
			unlink(path);
	}
	rmdir(dir);
	return claimed;
}

/* Drop CAP_SYS_ADMIN (fanotify pre-content needs it); keep the rest. */
static int drop_sys_admin(void)
{
	struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct d[2];
	if (syscall(SYS_capget, &h, d) < 0)
		return -1;
	d[CAP_SYS_ADMIN / 32].effective &= ~(1u << (CAP_SYS_ADMIN % 32));
	d[CAP_SYS_ADMIN / 32].permitted &= ~(1u << (CAP_SYS_ADMIN % 32));
	d[CAP_SYS_ADMIN / 32].inheritable &= ~(1u << (CAP_SYS_ADMIN % 32));
	return (int)syscall(SYS_capset, &h, d);
}

int main(void)
{
	/* without CAP_SYS_ADMIN the library falls back to the lease on ext4 */
	pid_t child = fork();
	if (child == 0) {
		if (drop_sys_admin() < 0)
			t_skip("capset: %s", strerror(errno));
		static const struct config unpriv = {"ext4, no CAP_SYS_ADMIN", "ext4", 0, MRL_WATCH_LEASE};
		mrl_ctx *ctx = t_ctx("mock", 1000);
		CHECK(!(mrl_ctx_watchers(ctx) & MRL_WATCH_FANOTIFY), "no fanotify without CAP_SYS_ADMIN");
		mrl_ctx_destroy(ctx);
		CHECK(run(&unpriv) >= 3, "unprivileged: lease rows claimed and seen");
		exit(t_failures ? 1 : 0);
	}
	int cst = t_wait_status(child);
	CHECK(cst == 0 || cst == 77, "the unprivileged run passed (exit %d)", cst);

	static const struct config cfg[] = {
		{"ext4, fanotify", "ext4", 0, MRL_WATCH_FANOTIFY},
		{"ext4, lease only", "ext4", MRL_CTX_NO_FANOTIFY, MRL_WATCH_LEASE},
		{"tmpfs (lease)", "tmpfs", 0, MRL_WATCH_LEASE},
		{"memfd (lease on a reopen)", "tmpfs", 0, MRL_WATCH_MEMFD, MEMFD_PLAIN},
		{"memfd, sealed (deny)", "tmpfs", 0, MRL_WATCH_MEMFD, MEMFD_SEALED},
		{"shared anonymous (lease on map_files)", "tmpfs", 0, MRL_WATCH_MEMFD, SHMEM_ANON},
		{"hugetlb memfd (lease on a reopen)", "tmpfs", 0, MRL_WATCH_MEMFD, MEMFD_HUGE},
		/* in a child of their own (the filter stays on a process for good),
		 * which leaves by _exit: LeakSanitizer's exit check stops every
		 * thread, the supervisor included, and its own munmap then waits */
		{"tmpfs, seccomp", "tmpfs", MRL_CTX_SECCOMP, MRL_WATCH_LEASE | MRL_WATCH_SECCOMP},
		{"memfd, seccomp", "tmpfs", MRL_CTX_SECCOMP, MRL_WATCH_MEMFD | MRL_WATCH_SECCOMP,
		 MEMFD_PLAIN},
	};
	for (size_t i = 0; i < sizeof(cfg) / sizeof(cfg[0]); i++) {
		if (cfg[i].want == MRL_WATCH_FANOTIFY) {
			mrl_ctx *ctx = t_ctx("mock", 1000);
			int have = mrl_ctx_watchers(ctx) & MRL_WATCH_FANOTIFY;
			mrl_ctx_destroy(ctx);
			if (!have) {
				printf("-- %s: fanotify unavailable here, not checked\n", cfg[i].name);
				continue;
			}
		}
		if (cfg[i].memfd == MEMFD_HUGE && t_hugepages(4) < 2) {
			printf("-- %s: no huge pages can be set aside here (vm.nr_hugepages, root), not "
			       "checked\n", cfg[i].name);
			continue;
		}
		if (cfg[i].flags & MRL_CTX_SECCOMP) {
			fflush(stdout);
			pid_t sc = fork();
			if (sc == 0) {
				int n = run(&cfg[i]);
				CHECK(n >= 3, "%s: at least three rows claimed before (%d)", cfg[i].name, n);
				fflush(stdout);
				_exit(t_failures ? 1 : 0);
			}
			CHECK(t_wait_status(sc) == 0, "%s: passed", cfg[i].name);
			continue;
		}
		int n = run(&cfg[i]);
		CHECK(n >= 3, "%s: at least three rows claimed before (%d)", cfg[i].name, n);
	}
	return t_done("t_coverage");
}
