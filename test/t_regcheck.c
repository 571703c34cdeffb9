/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Registration refuses what it cannot serve (PROT_NONE, remote write on
 * read-only memory, ranges running into a neighbouring mapping, holes), with
 * a message naming the problem and nothing registered; valid neighbours
 * still register. mrl_file_unmap unmaps only a whole mrl_file_map mapping.
 * A munmap made on the monitor thread itself (an application signal handler
 * there) of userfaultfd-watched memory never waits for the monitor, and
 * mrl_ctx_destroy returns. */
#include <dirent.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include "helpers.h"

static size_t pg;

static uint64_t n_mrs(mrl_ctx *ctx)
{
	struct mrl_stats st = {.size = sizeof(st)};
	return mrl_ctx_stats(ctx, &st) == 0 ? st.mrs : ~0ull;
}

/* refused with err, a message naming what (each of the words), nothing registered */
#define REFUSED(ctx, expr, err, ...)                                                          \
	do {                                                                                  \
		uint64_t before_ = n_mrs(ctx);                                                \
		mrl_mr_t h_ = 12345;                                                          \
		int r_ = (expr);                                                              \
		CHECK(r_ == -(err), "%s returned %d (%s), expected -%s", #expr, r_,           \
		      mrl_strerror(r_), #err);                                                \
		const char *words_[] = {__VA_ARGS__, NULL};                                   \
		for (int w_ = 0; words_[w_]; w_++)                                            \
			CHECK(strstr(mrl_last_error(), words_[w_]), "%s: message lacks \"%s\"",  \
			      #expr, words_[w_]);                                             \
		CHECK(n_mrs(ctx) == before_, "%s registered something", #expr);               \
		(void)h_;                                                                     \
	} while (0)

static char hex[64];
static const char *hx(const void *p)
{
	snprintf(hex, sizeof(hex), "%#lx", (unsigned long)(uintptr_t)p);
	return hex;
}

static void reg_checks(mrl_ctx *ctx)
{
	mrl_mr_t mr;
	/* PROT_NONE */
	char *none = mmap(NULL, 4 * pg, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(none != MAP_FAILED, "mmap");
	REFUSED(ctx, mrl_mr_reg(ctx, none, 4 * pg, MRL_ACCESS_REMOTE_READ, NULL, &mr), EACCES, "PROT_NONE",
		"---p", hx(none));
	REFUSED(ctx, mrl_mr_reg(ctx, none, pg, 0, NULL, &mr), EACCES, "PROT_NONE");
	/* a readable page followed by PROT_NONE (a guard): refused at the guard */
	REQUIRE(mprotect(none, pg, PROT_READ | PROT_WRITE) == 0, "mprotect");
	REFUSED(ctx, mrl_mr_reg(ctx, none, 2 * pg, MRL_ACCESS_REMOTE_READ, NULL, &mr), EACCES, "PROT_NONE",
		hx(none + pg));
	CHECK(mrl_mr_reg(ctx, none, pg, MRL_ACCESS_REMOTE_READ | MRL_ACCESS_REMOTE_WRITE, NULL, &mr) == 0,
	      "the readable page alone registers");
	CHECK(mrl_mr_dereg(ctx, mr) == 0, "dereg");
	munmap(none, 4 * pg);

	/* read-only memory: remote write refused, remote read fine */
	char *ro = mmap(NULL, 2 * pg, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REFUSED(ctx, mrl_mr_reg(ctx, ro, 2 * pg, MRL_ACCESS_REMOTE_WRITE, NULL, &mr), EACCES, "read-only",
		"r--p");
	CHECK(mrl_mr_reg(ctx, ro, 2 * pg, MRL_ACCESS_REMOTE_READ, NULL, &mr) == 0, "read-only for remote read");
	CHECK(mrl_mr_dereg(ctx, mr) == 0, "dereg");
	munmap(ro, 2 * pg);

	/* holes */
	char *h = mmap(NULL, 3 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	munmap(h + pg, pg);
	REFUSED(ctx, mrl_mr_reg(ctx, h, 3 * pg, MRL_ACCESS_REMOTE_READ, NULL, &mr), EFAULT, "not mapped",
		hx(h + pg));
	REFUSED(ctx, mrl_mr_reg(ctx, h + pg, pg, MRL_ACCESS_REMOTE_READ, NULL, &mr), EFAULT, "not mapped");
	munmap(h, 3 * pg);

	/* anonymous memory running into a different anonymous mapping */
	char *two = mmap(NULL, 4 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(mprotect(two + 2 * pg, 2 * pg, PROT_READ) == 0, "mprotect");
	REFUSED(ctx, mrl_mr_reg(ctx, two, 4 * pg, MRL_ACCESS_REMOTE_READ, NULL, &mr), EINVAL,
		"runs past the end", "another anonymous mapping", hx(two + 2 * pg));
	munmap(two, 4 * pg);

	/* the neighbour of the report: registered whole (so watched by
	 * userfaultfd), then memory mapped right below it; a range from the
	 * new memory into it is refused, each alone registers */
	char *area = mmap(NULL, 8 * pg, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *nb = mmap(area + 4 * pg, 4 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
			-1, 0);
	mrl_mr_t mnb;
	REQUIRE(mrl_mr_reg(ctx, nb, 4 * pg, MRL_ACCESS_REMOTE_READ | MRL_ACCESS_REMOTE_WRITE, NULL, &mnb) == 0,
		"the neighbour registers");
	char *own = mmap(area, 4 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	REQUIRE(own == area, "mmap below");
	bool watched = mrl_ctx_watchers(ctx) & MRL_WATCH_UFFD;
	if (watched) /* without userfaultfd the kernel merges the two: one mapping */
		REFUSED(ctx, mrl_mr_reg(ctx, own, 6 * pg, MRL_ACCESS_REMOTE_READ | MRL_ACCESS_REMOTE_WRITE, NULL, &mr),
			EINVAL, "runs past the end", hx(nb));
	CHECK(mrl_mr_reg(ctx, own, 4 * pg, MRL_ACCESS_REMOTE_READ | MRL_ACCESS_REMOTE_WRITE, NULL, &mr) == 0,
	      "the memory below alone registers");
	/* MRs over part of one mapping split it (userfaultfd): a range across
	 * such a split is still one object */
	mrl_mr_t m2;
	CHECK(mrl_mr_reg(ctx, own + pg, 2 * pg, MRL_ACCESS_REMOTE_READ, NULL, &m2) == 0, "a part of it");
	mrl_mr_t m3;
	CHECK(mrl_mr_reg(ctx, own + 2 * pg, 2 * pg, MRL_ACCESS_REMOTE_READ, NULL, &m3) == 0,
	      "a range across the library's own split registers");
	CHECK(mrl_mr_dereg(ctx, m3) == 0 && mrl_mr_dereg(ctx, m2) == 0 && mrl_mr_dereg(ctx, mr) == 0 &&
	      mrl_mr_dereg(ctx, mnb) == 0, "dereg");
	munmap(area, 8 * pg);
}

static void file_checks(mrl_ctx *ctx, const char *dir)
{
	char path[512], other[512];
	snprintf(path, sizeof(path), "%s/regcheck", dir);
	snprintf(other, sizeof(other), "%s/regcheck2", dir);
	t_make_file(path, 16 * pg);
	t_make_file(other, 16 * pg);
	mrl_mr_t mr;

	/* a file mapping followed by another file, and by the same file at a
	 * non-consecutive offset */
	char *area = mmap(NULL, 4 * pg, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int fd = open(path, O_RDWR), fd2 = open(other, O_RDWR);
	REQUIRE(fd >= 0 && fd2 >= 0, "open");
	REQUIRE(mmap(area, 2 * pg, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0) == area, "map");
	REQUIRE(mmap(area + 2 * pg, 2 * pg, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd2, 0) == area + 2 * pg,
		"map");
	REFUSED(ctx, mrl_mr_reg(ctx, area, 4 * pg, MRL_ACCESS_REMOTE_READ, NULL, &mr), EINVAL, "runs past the end",
		"a different object", "regcheck2");
	REQUIRE(mmap(area + 2 * pg, 2 * pg, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 8 * pg) ==
			area + 2 * pg, "map");
	REFUSED(ctx, mrl_mr_reg(ctx, area, 4 * pg, MRL_ACCESS_REMOTE_READ, NULL, &mr), EINVAL, "non-consecutive");
	/* consecutive offsets of the same file, mapped twice: one object */
	REQUIRE(mmap(area + 2 * pg, 2 * pg, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 2 * pg) ==
			area + 2 * pg, "map");
	CHECK(mrl_mr_reg(ctx, area, 4 * pg, MRL_ACCESS_REMOTE_READ, NULL, &mr) == 0,
	      "consecutive offsets of one file register");
	CHECK(mrl_mr_dereg(ctx, mr) == 0, "dereg");
	munmap(area, 4 * pg);
	close(fd);
	close(fd2);

	/* mrl_file_unmap: only what mrl_file_map made, whole */
	void *p;
	REQUIRE(mrl_file_map(ctx, path, 0, 2 * pg, PROT_READ | PROT_WRITE, &p) == 0, "mrl_file_map");
	char *after = mmap((char *)p + 2 * pg, pg, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	bool ours = after == (char *)p + 2 * pg;
	if (ours)
		after[0] = 0x5a;
	int r = mrl_file_unmap(ctx, p, 3 * pg);
	CHECK(r == -EINVAL && strstr(mrl_last_error(), "not a whole mapping"), "a longer length refused (%d: %s)", r,
	      mrl_last_error());
	r = mrl_file_unmap(ctx, (char *)p + pg, pg);
	CHECK(r == -EINVAL && strstr(mrl_last_error(), "not a whole mapping"), "a part refused (%d)", r);
	r = mrl_file_unmap(ctx, p, pg);
	CHECK(r == -EINVAL, "a shorter length refused (%d)", r);
	unsigned char vec[1];
	CHECK(mincore(p, 2 * pg, (unsigned char[2]){0}) == 0, "the mapping is still there");
	if (ours)
		CHECK(mincore(after, pg, vec) == 0 && after[0] == 0x5a, "the memory after it is still there");
	CHECK(mrl_file_unmap(ctx, p, 2 * pg) == 0, "the whole mapping unmaps: %s", mrl_last_error());
	CHECK(mincore(p, 2 * pg, (unsigned char[2]){0}) == -1 && errno == ENOMEM, "and is gone");
	if (ours)
		CHECK(mincore(after, pg, vec) == 0 && after[0] == 0x5a, "the neighbour survives");
	r = mrl_file_unmap(ctx, p, 2 * pg);
	CHECK(r == -EINVAL, "a second unmap refused (%d)", r);
	if (ours)
		munmap(after, pg);
	/* a mapping the caller unmapped and replaced behind the library's back */
	REQUIRE(mrl_file_map(ctx, path, 0, pg, PROT_READ, &p) == 0, "mrl_file_map");
	munmap(p, pg);
	char *repl = mmap(p, pg, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (repl == p) {
		r = mrl_file_unmap(ctx, p, pg);
		CHECK(r == -EINVAL && strstr(mrl_last_error(), "replaced by someone else"), "a replaced mapping refused (%d: %s)",
		      r, mrl_last_error());
		CHECK(mincore(repl, pg, vec) == 0, "the replacement is untouched");
		munmap(repl, pg);
	}
	unlink(path);
	unlink(other);
	rmdir(dir);
}

/* ---- a munmap on the monitor thread ---- */
static char *g_victim;
static atomic_int g_done;
static atomic_int g_tid;

static void on_usr1(int sig)
{
	(void)sig;
	if (atomic_exchange(&g_done, 1))
		return;
	atomic_store(&g_tid, (int)syscall(SYS_gettid));
	syscall(SYS_munmap, g_victim, 4 * pg); /* raw: past any interposer */
}

/* the threads of this process now, into t[] (at most n) */
static int threads(pid_t *t, int n)
{
	int k = 0;
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	while (d && (e = readdir(d)))
		if (atoi(e->d_name) > 0 && k < n)
			t[k++] = (pid_t)atoi(e->d_name);
	if (d)
		closedir(d);
	return k;
}

static bool thread_named(pid_t t, const char *name)
{
	char p[64], comm[32] = "";
	snprintf(p, sizeof(p), "/proc/self/task/%d/comm", t);
	FILE *f = fopen(p, "r");
	if (f) {
		if (!fgets(comm, sizeof(comm), f))
			comm[0] = 0;
		fclose(f);
	}
	return !strncmp(comm, name, strlen(name));
}

static int monitor_unmaps(void)
{
	/* the monitor: the thread the context brings that is not the
	 * userfaultfd reader nor the device worker (sanitizers run threads of
	 * their own) */
	pid_t before[64], after[64], target = 0;
	int nb = threads(before, 64);
	mrl_ctx *ctx = t_ctx("mock", 500);
	if (!(mrl_ctx_watchers(ctx) & MRL_WATCH_UFFD)) {
		mrl_ctx_destroy(ctx);
		return 77;
	}
	int na = threads(after, 64), candidates = 0;
	for (int i = 0; i < na; i++) {
		bool old = false;
		for (int j = 0; j < nb; j++)
			old |= after[i] == before[j];
		if (!old && !thread_named(after[i], "mrl-uffd") && !thread_named(after[i], "mrl-dev")) {
			target = after[i];
			candidates++;
		}
	}
	REQUIRE(candidates == 1, "one monitor thread to signal (%d candidates)", candidates);
	g_victim = mmap(NULL, 4 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	mrl_mr_t mr;
	REQUIRE(mrl_mr_reg(ctx, g_victim, 4 * pg, MRL_ACCESS_REMOTE_READ, NULL, &mr) == 0, "register");
	signal(SIGUSR1, on_usr1);
	syscall(SYS_tgkill, getpid(), target, SIGUSR1);
	/* the uffd event fences the MR: the monitor went on */
	struct mrl_event ev;
	CHECK(t_wait_event(ctx, MRL_EVENT_CHANGED, mr, T_HANG_MS, &ev) == 0 && ev.cause == MRL_CAUSE_UNMAPPED,
	      "the unmap made on the monitor is reported");
	CHECK(atomic_load(&g_tid) == target, "the handler ran on the monitor");
	CHECK(t_query(ctx, mr).state == MRL_STATE_FENCED, "fenced");
	CHECK(mrl_ctx_destroy(ctx) == 0, "destroy returns");
	return t_failures ? 1 : 0;
}

int main(void)
{
	pg = (size_t)sysconf(_SC_PAGESIZE);
	mrl_ctx *ctx = t_ctx("mock", 500);
	reg_checks(ctx);
	char dir[256];
	t_scratch("ext4", dir, sizeof(dir));
	file_checks(ctx, dir);
	t_scratch("tmpfs", dir, sizeof(dir));
	file_checks(ctx, dir);
	CHECK(n_mrs(ctx) == 0, "nothing left registered");
	CHECK(mrl_ctx_destroy(ctx) == 0, "destroy");

	/* in a child, with a deadline that only detects the hang */
	pid_t pid = fork();
	REQUIRE(pid >= 0, "fork");
	if (pid == 0)
		_exit(monitor_unmaps());
	int st = t_wait_child(pid, T_HANG_MS);
	if (st == -2) {
		CHECK(0, "a munmap on the monitor thread hung the context (no exit in %d ms)", T_HANG_MS);
	} else if (st == 77) {
		fprintf(stderr, "note: userfaultfd events unavailable: the monitor case was not run\n");
	} else {
		CHECK(st == 0, "the monitor case (status %d)", st);
	}
	return t_done("t_regcheck");
}
