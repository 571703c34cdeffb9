/* munmap of a registered range from a signal handler that interrupted a
 * thread inside malloc: the call completes (the interposer does no
 * allocation and takes no lock the interrupted code may hold: it hands the
 * range to the monitor and waits on a futex), and the MR is fenced with
 * cause "unmapped" before the range is gone. Run in a child so a deadlock
 * fails the test instead of hanging the suite. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>

#include "helpers.h"

#define NMR 64

static char *addr[NMR];
static atomic_int target = -1, handled, stop;
static int results[NMR];

static void on_sig(int sig)
{
	(void)sig;
	int k = atomic_load(&target);
	if (k < 0)
		return;
	results[k] = munmap(addr[k], 4096);
	atomic_store(&target, -1);
	atomic_fetch_add(&handled, 1);
}

/* lives in malloc and free, so the signal lands inside them */
static void *churn(void *arg)
{
	(void)arg;
	void *keep[64] = {0};
	for (unsigned i = 0; !atomic_load(&stop); i++) {
		unsigned s = i % 64;
		free(keep[s]);
		keep[s] = malloc(16 + (i * 2654435761u) % 70000);
	}
	for (unsigned s = 0; s < 64; s++)
		free(keep[s]);
	return NULL;
}

static int child(void)
{
	mrl_ctx *ctx = t_ctx("mock", 1000);
	if (!(mrl_ctx_watchers(ctx) & MRL_WATCH_INTERPOSE))
		t_skip("the preload library is not what callers of munmap reach here");
	mrl_mr_t mr[NMR];
	for (int k = 0; k < NMR; k++) {
		addr[k] = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		REQUIRE(addr[k] != MAP_FAILED, "mmap");
		REQUIRE(mrl_mr_reg(ctx, addr[k], 4096, MRL_ACCESS_REMOTE_WRITE, NULL, &mr[k]) == 0,
			"register %d", k);
	}
	struct sigaction sa = {.sa_handler = on_sig};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	pthread_t th;
	pthread_create(&th, NULL, churn, NULL);
	for (int k = 0; k < NMR; k++) {
		atomic_store(&target, k);
		/* until the handler ran with a target (a signal may land between
		 * two mallocs: it still must complete) */
		while (atomic_load(&handled) == k) {
			pthread_kill(th, SIGUSR1);
			for (int spin = 0; spin < 100000 && atomic_load(&handled) == k; spin++)
				;
		}
	}
	atomic_store(&stop, 1);
	pthread_join(th, NULL);
	int fenced = 0;
	for (int k = 0; k < NMR; k++) {
		CHECK(results[k] == 0, "munmap %d from the handler succeeded", k);
		struct mrl_mr_info in = t_query(ctx, mr[k]);
		fenced += in.state == MRL_STATE_FENCED && in.cause == MRL_CAUSE_UNMAPPED;
	}
	CHECK(fenced == NMR, "every MR fenced, cause unmapped (%d of %d)", fenced, NMR);
	for (int k = 0; k < NMR; k++)
		mrl_mr_dereg(ctx, mr[k]);
	mrl_ctx_destroy(ctx);
	printf("%d munmaps from a handler inside malloc, %d MRs fenced\n", NMR, fenced);
	return t_done("t_intp_signal child");
}

int main(void)
{
	pid_t pid = fork();
	if (pid == 0)
		_exit(child());
	/* a generous bound, only to tell a deadlock from a slow machine */
	int st = 0;
	for (int i = 0; i < 1200 && waitpid(pid, &st, WNOHANG) == 0; i++)
		usleep(100000);
	if (waitpid(pid, &st, WNOHANG) == 0) {
		kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
		CHECK(0, "the child deadlocked (munmap from a handler inside malloc never returned)");
		return t_done("t_intp_signal");
	}
	if (WIFEXITED(st) && WEXITSTATUS(st) == 77)
		return 77;
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child passed (status %#x)", st);
	return t_done("t_intp_signal");
}
