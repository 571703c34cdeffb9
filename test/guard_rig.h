/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The rig of the guardian tests: an owner process serving a file as MRs
 * (fanotify on ext4; the lease on tmpfs; the lease on ext4 with fanotify
 * off; the lease on a memfd's /proc/self/fd reopen), made unable to answer by the test (stopped, or its
 * monitor deadlocked), while the system's own tools act on the file (a
 * memfd: through /proc/OWNER/fd/N). Each actor
 * must be let go by the guardian within the deadline plus a margin; once
 * the owner runs again it must announce what went through (an event, a new
 * generation or a fence), never nothing. */
#ifndef MRL_GUARD_RIG_H
#define MRL_GUARD_RIG_H

#include <dirent.h>
#include <sys/mman.h>

#include "helpers.h"
#include "mrl_int.h"

#define MB (1u << 20)
#define NMR 4
#define DEADLINE_MS 1000
/* A liveness bound, not a speed: the guardian acts at deadline + 100 ms;
 * this leaves a loaded 2-core machine two seconds more. Without it an actor
 * waits for ever (fanotify) or lease-break-time (45 s, a lease). */
#define BOUND_MS (DEADLINE_MS + 2000)

enum setup { FAN_EXT4, LEASE_TMPFS, LEASE_EXT4, LEASE_MEMFD, NSETUPS };
static const char *const setup_name[] = {"fanotify/ext4", "lease/tmpfs", "lease/ext4 (fanotify off)",
					 "lease/memfd"};

/* how the test keeps the owner from answering */
enum hold { HOLD_STOP, HOLD_LOCK };

struct owner {
	pid_t pid;
	int cmd, res; /* pipes: commands to it, its reports */
	pid_t guard;
};

static char rig_path[300]; /* the file; a memfd: /proc/OWNER/fd/N */

/* the memfd's lease held: another process's opens claimed before */
static bool o_memfd_leased(mrl_mr_t mr);

static void say(int fd, char c)
{
	if (write(fd, &c, 1) != 1)
		exit(2);
}

static char hear(int fd)
{
	char c = 0;
	if (read(fd, &c, 1) != 1)
		return 0;
	return c;
}

/* ---- the owner (a forked child) ---- */
static mrl_ctx *o_ctx;
static mrl_mr_t o_mr[NMR];

/* Wait for an event on MR i whose type is in the mask (1u << type); every
 * other event is drained. */
static int o_wait_event(int i, uint32_t mask, uint32_t *type, uint32_t *cause)
{
	uint64_t until = t_now_ns() + T_HANG_MS * 1000000ull;
	while (t_now_ns() < until) {
		struct mrl_event ev;
		while (mrl_event_get(o_ctx, &ev) == 0) {
			struct mrl_event c = ev;
			mrl_event_ack(o_ctx, &ev);
			if (c.mr == o_mr[i] && c.type < 32 && (mask & 1u << c.type)) {
				*type = c.type;
				*cause = c.cause;
				return 0;
			}
		}
		struct pollfd p = {.fd = mrl_event_fd(o_ctx), .events = POLLIN};
		poll(&p, 1, 50);
	}
	return -ETIMEDOUT;
}

/* The announcement of a change on MR i: CHANGED or FENCED (a truncate's
 * lost tail). */
static int o_wait_announced(int i, uint32_t *type, uint32_t *cause)
{
	return o_wait_event(i, 1u << MRL_EVENT_CHANGED | 1u << MRL_EVENT_FENCED, type, cause);
}

static int o_wait_type(int i, uint32_t want, uint32_t *cause)
{
	uint32_t type;
	return o_wait_event(i, 1u << want, &type, cause);
}

static void o_drain(void)
{
	struct mrl_event ev;
	while (mrl_event_get(o_ctx, &ev) == 0)
		mrl_event_ack(o_ctx, &ev);
}

/* The owner's checks after it runs again, per setup (see rig_actors). */
static void o_check(enum setup s, uint32_t gen0[NMR], int round)
{
	uint32_t type, cause;
	if (s == FAN_EXT4) {
		/* round 0: a punch over MR 0 and a truncate into MR 3; round 1:
		 * a punch over MR 1 */
		int punched = round == 0 ? 0 : 1;
		CHECK(o_wait_announced(punched, &type, &cause) == 0, "MR %d: the punch let go is announced", punched);
		CHECK(type == MRL_EVENT_CHANGED && cause == MRL_CAUSE_PUNCH_HOLE,
		      "MR %d: CHANGED punch-hole, got %s %s", punched, mrl_event_str(type), mrl_cause_str(cause));
		CHECK(t_query(o_ctx, o_mr[punched]).generation != gen0[punched], "MR %d: a new generation", punched);
		if (round == 0) {
			CHECK(o_wait_type(3, MRL_EVENT_DENIED, &cause) == 0, "MR 3: the refused truncate is reported");
			CHECK(cause == MRL_CAUSE_TRUNCATED, "MR 3: denied, truncated; got %s", mrl_cause_str(cause));
			struct mrl_mr_info in = t_query(o_ctx, o_mr[3]);
			CHECK(in.valid_length == MB && in.state == MRL_STATE_ACTIVE && in.denials == 1,
			      "MR 3: whole and live (%llu bytes, %u denials)", (unsigned long long)in.valid_length,
			      in.denials);
			struct stat st;
			CHECK(stat(rig_path, &st) == 0 && st.st_size == NMR * MB, "the file kept its size");
		}
		CHECK(t_query(o_ctx, o_mr[2]).generation == gen0[2], "MR 2: nothing touched it, same generation");
	} else {
		/* a writer was let in: every MR of the file, announced */
		for (int i = 0; i < NMR; i++) {
			CHECK(o_wait_announced(i, &type, &cause) == 0, "MR %d: the writer let in is announced", i);
			struct mrl_mr_info in = t_query(o_ctx, o_mr[i]);
			if (in.state == MRL_STATE_FENCED)
				continue; /* past the truncate's new end */
			CHECK(in.generation != gen0[i], "MR %d: a new generation after the writer went in (gen %u)",
			      i, in.generation);
		}
	}
}

static void owner_main(enum setup s, enum hold hold, int cmd, int res)
{
	unsigned flags = s == LEASE_EXT4 ? MRL_CTX_NO_FANOTIFY : 0;
	/* by hand only: how long actors wait without a guardian (these tests
	 * then fail: that is what they are for) */
	bool off = mrl_guard_off = getenv("MRL_TEST_NO_GUARDIAN") != NULL;
	o_ctx = t_ctx_flags("mock", DEADLINE_MS, flags);
	void *base;
	int mfd = -1;
	if (s == LEASE_MEMFD) {
		mfd = memfd_create("guard_rig", MFD_CLOEXEC);
		REQUIRE(mfd >= 0 && ftruncate(mfd, NMR * MB) == 0, "memfd");
		base = mmap(NULL, NMR * MB, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
		REQUIRE(base != MAP_FAILED, "map the memfd");
	} else {
		REQUIRE(mrl_file_map(o_ctx, rig_path, 0, NMR * MB, PROT_READ | PROT_WRITE, &base) == 0, "map");
	}
	for (int i = 0; i < NMR; i++)
		REQUIRE(mrl_mr_reg(o_ctx, (char *)base + i * MB, MB, MRL_ACCESS_REMOTE_WRITE, NULL, &o_mr[i]) == 0,
			"register MR %d", i);
	struct mrl_mr_info in = t_query(o_ctx, o_mr[0]);
	bool fan = in.watchers & MRL_WATCH_FANOTIFY;
	if (s == FAN_EXT4 && !fan)
		_exit(77);
	if (s == LEASE_MEMFD && !o_memfd_leased(o_mr[0]))
		_exit(77);
	if (s != FAN_EXT4 && s != LEASE_MEMFD && (fan || !in.lease_held))
		_exit(77);
	REQUIRE(off || mrl_guard_pid(o_ctx) > 0, "a guardian runs beside the owner");
	pid_t gp = off ? -1 : mrl_guard_pid(o_ctx);
	if (write(res, &gp, sizeof(gp)) != sizeof(gp) || write(res, &mfd, sizeof(mfd)) != sizeof(mfd))
		_exit(2);
	for (int round = 0; round < 2; round++) {
		uint32_t gen0[NMR];
		o_drain();
		for (int i = 0; i < NMR; i++)
			gen0[i] = t_query(o_ctx, o_mr[i]).generation;
		uint64_t acts0 = mrl_guard_acts(o_ctx);
		say(res, 'r'); /* ready: hold me */
		if (hold == HOLD_LOCK) {
			REQUIRE(hear(cmd) == 'h', "told to hang");
			/* a deadlocked monitor: this thread keeps the lock the
			 * monitor needs, busy, until told */
			mrl_lock(&o_ctx->lock);
			say(res, 'l');
			int fl = fcntl(cmd, F_GETFL);
			fcntl(cmd, F_SETFL, fl | O_NONBLOCK);
			char c;
			while (read(cmd, &c, 1) != 1)
				;
			fcntl(cmd, F_SETFL, fl);
			mrl_unlock(&o_ctx->lock);
		} else {
			REQUIRE(hear(cmd) == 'c', "told to check");
		}
		CHECK(mrl_guard_acts(o_ctx) > acts0, "the guardian let actors go (%llu acts)",
		      (unsigned long long)(mrl_guard_acts(o_ctx) - acts0));
		o_check(s, gen0, round);
		if (s == LEASE_MEMFD) {
			uint64_t until = t_now_ns() + T_HANG_MS * 1000000ull;
			while (!o_memfd_leased(o_mr[0]) && t_now_ns() < until)
				usleep(2000);
			CHECK(o_memfd_leased(o_mr[0]), "memfd lease taken back");
		} else if (s != FAN_EXT4) { /* the lease comes back once the breakers are gone */
			uint64_t until = t_now_ns() + T_HANG_MS * 1000000ull;
			while (!t_query(o_ctx, o_mr[0]).lease_held && t_now_ns() < until)
				usleep(2000);
			CHECK(t_query(o_ctx, o_mr[0]).lease_held, "lease taken back");
		}
	}
	CHECK(mrl_ctx_destroy(o_ctx) == 0, "destroy");
	CHECK(off || (kill(gp, 0) < 0 && errno == ESRCH), "the guardian is gone with its context");
	_exit(t_failures ? 1 : 0);
}

static struct owner owner_start(enum setup s, enum hold hold)
{
	int c[2], r[2];
	REQUIRE(pipe(c) == 0 && pipe(r) == 0, "pipes");
	struct owner o = {.cmd = c[1], .res = r[0]};
	o.pid = fork();
	REQUIRE(o.pid >= 0, "fork");
	if (o.pid == 0) {
		close(c[1]);
		close(r[0]);
		owner_main(s, hold, c[0], r[1]);
	}
	close(c[0]);
	close(r[1]);
	int mfd = -1;
	if (read(o.res, &o.guard, sizeof(o.guard)) != sizeof(o.guard) ||
	    read(o.res, &mfd, sizeof(mfd)) != sizeof(mfd))
		o.guard = 0;
	if (s == LEASE_MEMFD)
		snprintf(rig_path, sizeof(rig_path), "/proc/%d/fd/%d", (int)o.pid, mfd);
	return o;
}

static bool o_memfd_leased(mrl_mr_t mr)
{
	return t_query(o_ctx, mr).coverage[MRL_CHG_OTHER_OPEN_WRITE] == MRL_SEEN_BEFORE;
}

/* 0 pass, 77 the owner could not watch this way here, else fail */
static int owner_end(struct owner *o)
{
	close(o->cmd);
	close(o->res);
	return t_wait_status(o->pid);
}

static char task_state(pid_t pid, pid_t tid)
{
	char p[64], buf[512];
	snprintf(p, sizeof(p), "/proc/%d/task/%d/stat", (int)pid, (int)tid);
	int fd = open(p, O_RDONLY);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	char *e = strrchr(buf, ')');
	return e && e[1] ? e[2] : 0;
}

/* 'T' once every thread of pid is stopped (the monitor too), else the
 * state of one that is not */
static char proc_state(pid_t pid)
{
	char p[64];
	snprintf(p, sizeof(p), "/proc/%d/task", (int)pid);
	DIR *d = opendir(p);
	if (!d)
		return 0;
	char st = 'T';
	struct dirent *de;
	while ((de = readdir(d)))
		if (de->d_name[0] != '.' && (st = task_state(pid, atoi(de->d_name))) != 'T')
			break;
	closedir(d);
	return st;
}

/* Run an actor; wait for it to exit, at most the bound plus a hang limit;
 * return how long it took (ms), or -1 if it was still held (killed). */
static long run_actor(const char *what, char *const argv[], int *status)
{
	uint64_t t0 = t_now_ns();
	pid_t a = fork();
	if (a == 0) {
		int null = open("/dev/null", O_WRONLY);
		dup2(null, 1);
		execvp(argv[0], argv);
		_exit(127);
	}
	uint64_t give_up = t0 + (uint64_t)(BOUND_MS + 10000) * 1000000ull;
	for (;;) {
		int st;
		pid_t w = waitpid(a, &st, WNOHANG);
		if (w == a) {
			long ms = (long)((t_now_ns() - t0) / 1000000ull);
			*status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
			printf("  %-34s exit %d after %ld ms\n", what, *status, ms);
			return ms;
		}
		if (t_now_ns() > give_up) {
			kill(a, SIGKILL);
			waitpid(a, &st, 0);
			printf("  %-34s still held after %d ms: killed\n", what, BOUND_MS + 10000);
			return -1;
		}
		usleep(2000);
	}
}

/* ok: the actor is to succeed (let through), else to fail (refused) */
static void check_actor(const char *what, char *const argv[], bool ok)
{
	int st = -1;
	long ms = run_actor(what, argv, &st);
	CHECK(ms >= 0 && ms <= BOUND_MS, "%s: let go within deadline + margin (%d ms), took %ld ms", what,
	      BOUND_MS, ms);
	if (ok)
		CHECK(st == 0, "%s: succeeded (exit %d)", what, st);
	else
		CHECK(st > 0 && st < 128, "%s: refused (exit %d)", what, st);
}

/* What the actors do while the owner cannot answer. Round 0: the fanotify
 * file gets a read (cat), a punch over MR 0 and a truncate into MR 3; a
 * leased file a writer first (the punch: the guardian lets it in), then
 * the reader and a truncate (dd: coreutils truncate opens O_NONBLOCK and
 * gives up at a lease). Round 1 (after the owner ran again): one punch,
 * over MR 1. */
static void rig_actors(enum setup s, int round)
{
	char *cat[] = {"cat", rig_path, NULL};
	char punch0[] = "0", punch1[32], len[] = "65536";
	snprintf(punch1, sizeof(punch1), "%u", MB + 8192);
	char *punch[] = {"fallocate", "--punch-hole", "--offset", round ? punch1 : punch0,
			 "--length", len, rig_path, NULL};
	char size[32], of[320];
	snprintf(size, sizeof(size), "%u", 3 * MB + MB / 2);
	snprintf(of, sizeof(of), "of=%s", rig_path);
	char *trunc[] = {"truncate", "-s", size, rig_path, NULL};
	char *dd[] = {"dd", "if=/dev/null", of, "bs=512K", "seek=7", "status=none", NULL};
	char *dd_w[] = {"dd", "if=/dev/zero", of, "bs=4096", "count=1", "conv=notrunc", "status=none", NULL};
	if (s == LEASE_MEMFD) {
		/* through /proc/OWNER/fd/N: an opener for writing (its open is
		 * what the lease holds), then a reader */
		check_actor("dd conv=notrunc (a writer)", dd_w, true);
		if (!round)
			check_actor("cat (a reader)", cat, true);
	} else if (round) {
		check_actor("fallocate --punch-hole (MR 1)", punch, true);
	} else if (s == FAN_EXT4) {
		check_actor("cat (a read held by fanotify)", cat, true);
		check_actor("fallocate --punch-hole (MR 0)", punch, true);
		/* a shrink under an MR is refused while the owner cannot
		 * fence: its own mapping would take SIGBUS */
		check_actor("truncate -s 3.5M (refused: EBUSY)", trunc, false);
	} else {
		check_actor("fallocate --punch-hole (a writer)", punch, true);
		check_actor("cat (a reader)", cat, true);
		check_actor("dd seek=3.5M (truncates)", dd, true);
	}
}

/* Each test's own part (t_guardian_stop.c, t_guardian_hung.c): make the
 * running owner unable to answer, and let it go again once the actors are
 * through. */
static void rig_hold(struct owner *o);
static void rig_release(struct owner *o);

/* Run one setup with the owner held as hold says; 77 if it cannot run here. */
static int rig_run(enum setup s, enum hold hold)
{
	char dir[256];
	t_scratch(s == LEASE_TMPFS ? "tmpfs" : "ext4", dir, sizeof(dir));
	snprintf(rig_path, sizeof(rig_path), "%s/f", dir);
	if (s != LEASE_MEMFD)
		t_make_file(rig_path, NMR * MB);
	printf("%s, owner %s:\n", setup_name[s], hold == HOLD_STOP ? "stopped (SIGSTOP)" : "with its monitor deadlocked");
	struct owner o = owner_start(s, hold);
	int rc = 77;
	if (!o.guard)
		goto out;
	for (int round = 0; round < 2; round++) {
		REQUIRE(hear(o.res) == 'r', "owner ready (round %d)", round);
		rig_hold(&o);
		rig_actors(s, round);
		rig_release(&o);
	}
out:
	rc = owner_end(&o);
	t_sh("rm -rf %s", dir);
	if (rc == 77)
		printf("  skipped: this machine cannot watch %s\n", setup_name[s]);
	else
		CHECK(rc == 0, "%s: the owner's checks passed (exit %d)", setup_name[s], rc);
	return rc;
}

static int rig_main(const char *name, enum hold hold)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	int ran = 0;
	for (int s = 0; s < NSETUPS; s++)
		ran += rig_run((enum setup)s, hold) != 77;
	if (!ran)
		t_skip("neither fanotify pre-content events nor leases are available here");
	return t_done(name);
}

#endif
