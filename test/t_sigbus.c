/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* A store into a file MR's pages past the file's new end, made before the
 * owner has seen the truncate (another process keeps the file open, so no
 * lease: seen after, by inotify), does not kill the owner: it lands in a
 * scratch page, the file is not touched, and the MR is fenced from there
 * (FENCED, cause truncated) while the MR before it stays active. A fault
 * outside every MR still reaches the handler that was installed before the
 * context; MRL_CTX_NO_SIGBUS leaves every fault to it; destroying the
 * context puts it back. (Issue 13 item 3.) */
#include <setjmp.h>
#include <sys/mman.h>

#include "helpers.h"
#include "mrl_int.h"

#define MB (1u << 20)

static sigjmp_buf g_jb;
static volatile sig_atomic_t g_prev_calls;

static void prev_handler(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)si;
	(void)uc;
	g_prev_calls++;
	siglongjmp(g_jb, 1);
}

/* a store of n bytes of c at p; false if it faulted through to the test's
 * own handler */
static bool store(void *p, int c, size_t n)
{
	if (sigsetjmp(g_jb, 1))
		return false;
	memset(p, c, n);
	return true;
}

static bool prev_installed(void)
{
	struct sigaction cur;
	return sigaction(SIGBUS, NULL, &cur) == 0 && (cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == prev_handler;
}

static void truncate_to(const char *path, unsigned size)
{
	CHECK(t_sh("truncate -s %u %s", size, path) == 0, "truncate -s %u ran", size);
}

int main(void)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	struct sigaction sa = {.sa_sigaction = prev_handler, .sa_flags = SA_SIGINFO};
	sigemptyset(&sa.sa_mask);
	REQUIRE(sigaction(SIGBUS, &sa, NULL) == 0, "install the test's own SIGBUS handler");

	char dir[256], path[300];
	t_scratch("tmpfs", dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/f", dir);
	t_make_file(path, 2 * MB);
	/* an opener from before registration: no lease, the truncate is seen
	 * only after it lands */
	pid_t reader = t_hold_open(path);

	mrl_ctx *ctx = t_ctx("mock", 1000);
	if (!(mrl_ctx_watchers(ctx) & MRL_WATCH_SIGBUS))
		t_skip("the context runs no SIGBUS watcher here (watchers %#x)", mrl_ctx_watchers(ctx));
	void *base;
	REQUIRE(mrl_file_map(ctx, path, 0, 2 * MB, PROT_READ | PROT_WRITE, &base) == 0, "map");
	char *p = base;
	mrl_mr_t mr[2];
	for (int i = 0; i < 2; i++)
		REQUIRE(mrl_mr_reg(ctx, p + i * MB, MB, MRL_ACCESS_REMOTE_WRITE, NULL, &mr[i]) == 0, "register MR %d",
			i);
	struct mrl_mr_info in = t_query(ctx, mr[1]);
	printf("MR 1: lease held %d, watchers %#x\n", in.lease_held, in.watchers);
	CHECK(!in.lease_held, "no lease (another opener): a truncate is seen only after it lands");
	/* a plain mapping of the same file, no MR on it */
	int fd = open(path, O_RDWR);
	REQUIRE(fd >= 0, "open");
	char *plain = mmap(NULL, 2 * MB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	REQUIRE(plain != MAP_FAILED, "mmap");

	/* 1. truncate to 1.5 MiB and store into MR 1 past it before the owner
	 * can look (its monitor waits for the lock the test holds) */
	mrl_lock(&ctx->lock);
	truncate_to(path, 3 * MB / 2);
	bool stored = store(p + MB + 3 * MB / 4, 0x5a, 8192);
	mrl_unlock(&ctx->lock);
	CHECK(stored && g_prev_calls == 0, "the store past the end completed (in scratch), nothing reached the "
	      "process's own handler (%d calls)", (int)g_prev_calls);
	CHECK(stored && p[MB + 3 * MB / 4] == 0x5a && p[MB + 3 * MB / 4 + 8191] == 0x5a,
	      "what was stored is in the scratch pages");
	struct stat st;
	CHECK(stat(path, &st) == 0 && st.st_size == 3 * MB / 2, "the file kept its new size (%lld)",
	      (long long)st.st_size);
	struct mrl_event ev = {0};
	CHECK(t_wait_event(ctx, MRL_EVENT_FENCED, mr[1], T_HANG_MS, &ev) == 0, "MR 1: FENCED");
	CHECK(ev.cause == MRL_CAUSE_TRUNCATED, "MR 1: cause truncated, got %s", mrl_cause_str(ev.cause));
	in = t_query(ctx, mr[1]);
	CHECK(in.state == MRL_STATE_ACTIVE && in.valid_length <= MB / 2,
	      "MR 1: its head stays, fenced from the new end at the latest (valid %llu)",
	      (unsigned long long)in.valid_length);
	in = t_query(ctx, mr[0]);
	CHECK(in.state == MRL_STATE_ACTIVE && in.valid_length == MB, "MR 0: whole and active");
	struct mrl_stats s = {.size = sizeof(s)};
	CHECK(mrl_ctx_stats(ctx, &s) == 0 && s.sigbus_caught >= 1, "the context counted the caught fault (%llu)",
	      (unsigned long long)s.sigbus_caught);

	/* 2. a store past the end outside every MR: the process's own handler */
	CHECK(!store(plain + MB + 7 * MB / 8, 1, 16) && g_prev_calls == 1,
	      "a fault outside every MR reaches the handler installed before (%d calls)", (int)g_prev_calls);

	/* 3. after the context: the handler is the test's again */
	for (int i = 0; i < 2; i++)
		mrl_mr_dereg(ctx, mr[i]);
	mrl_file_unmap(ctx, base, 2 * MB);
	CHECK(mrl_ctx_destroy(ctx) == 0, "destroy");
	CHECK(prev_installed(), "the handler from before the context is back");

	/* 4. opted out: every fault is the process's own */
	truncate_to(path, 2 * MB);
	ctx = t_ctx_flags("mock", 1000, MRL_CTX_NO_SIGBUS);
	CHECK(!(mrl_ctx_watchers(ctx) & MRL_WATCH_SIGBUS), "MRL_CTX_NO_SIGBUS: no SIGBUS watcher");
	REQUIRE(mrl_file_map(ctx, path, 0, 2 * MB, PROT_READ | PROT_WRITE, &base) == 0, "map");
	p = base;
	REQUIRE(mrl_mr_reg(ctx, p + MB, MB, MRL_ACCESS_REMOTE_WRITE, NULL, &mr[1]) == 0, "register");
	truncate_to(path, MB);
	CHECK(!store(p + MB + MB / 2, 2, 16) && g_prev_calls == 2,
	      "opted out: the fault on the MR reaches the process's handler (%d calls)", (int)g_prev_calls);
	mrl_mr_dereg(ctx, mr[1]);
	mrl_file_unmap(ctx, base, 2 * MB);
	CHECK(mrl_ctx_destroy(ctx) == 0, "destroy");
	CHECK(prev_installed(), "still the test's handler");

	munmap(plain, 2 * MB);
	close(fd);
	kill(reader, SIGTERM);
	t_wait_status(reader);
	t_sh("rm -rf %s", dir);
	return t_done("t_sigbus");
}
