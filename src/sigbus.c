/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The owner's own faults past a file's end. A change seen only after it
 * lands (no lease: another process held the file open first; inotify
 * alone) leaves a window: a truncate has cut the file, the owner has not
 * seen it yet, and a transport copies a peer's write into the MR's pages
 * past the new end. The kernel answers that store with SIGBUS, which kills
 * the process. It is the library's to catch: a SIGBUS handler, installed
 * while a context watches (opt-out: MRL_CTX_NO_SIGBUS), looks the faulting
 * address up among the MRs of file mappings without a lock; on an MR it
 * maps an anonymous page over the faulting one (the copy then completes
 * into scratch, nothing reaches the file) and hands the MR to its
 * context's monitor, which fences it from that page on (FENCED, cause
 * truncated: a scratch page is never served as the file's). Faults
 * anywhere else go to the handler that was there before (or the default
 * action: the process dies as it would have). A handler installed over
 * ours later (libfabric installs one as it starts; an application may) is
 * put behind ours at the next MR registration.
 *
 * A remote read there raises no signal: the transport's send fails with
 * EFAULT in the kernel (README, "Not covered yet").
 *
 * Everything the handler touches is a lock-free table of slots (atomics),
 * one per watched MR; it calls mmap and write(2) (an eventfd) only. */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "mrl_int.h"

#define SB_SLOTS 4096

struct sb_slot {
	_Atomic uintptr_t lo, hi;    /* the MR's range; lo == hi: free */
	_Atomic int wake_fd;         /* its context's monitor */
	_Atomic pid_t pid;           /* the process that owns the MR (not a forked child) */
	_Atomic uint64_t fault;      /* lowest faulting page's offset in the MR, + 1; 0 none */
	struct mrl_mr *mr;           /* under its ctx->lock only */
	struct mrl_ctx *ctx;         /* identity only (never read by the handler) */
};

static struct sb_slot g_slot[SB_SLOTS];
static _Atomic int g_top;              /* slots in use are below this */
static _Atomic int g_in;               /* handlers looking at the table now */
static _Atomic uint64_t g_faults;      /* faults caught, all contexts */
static pthread_mutex_t g_install = PTHREAD_MUTEX_INITIALIZER;
static int g_users;                    /* contexts with the handler, under g_install */
static struct sigaction g_prev;        /* what was there before us */
static uintptr_t g_ps;                 /* the page size, read before any handler runs */

#define CTX_LD(s) __atomic_load_n(&(s)->ctx, __ATOMIC_SEQ_CST)

static _Atomic pid_t g_chaining;       /* a thread in the previous handler (it may chain back) */

static void chain(int sig, siginfo_t *si, void *uc, pid_t tid)
{
	struct sigaction p = g_prev;
	if (atomic_load(&g_chaining) == tid) { /* it called us back: the default */
		p.sa_flags = 0;
		p.sa_handler = SIG_DFL;
	}
	if (p.sa_flags & SA_SIGINFO) {
		if (p.sa_sigaction) {
			atomic_store(&g_chaining, tid);
			p.sa_sigaction(sig, si, uc);
			atomic_store(&g_chaining, 0);
			return;
		}
	} else if (p.sa_handler != SIG_DFL && p.sa_handler != SIG_IGN) {
		atomic_store(&g_chaining, tid);
		p.sa_handler(sig);
		atomic_store(&g_chaining, 0);
		return;
	}
	/* the default: a fault runs again and kills as it would have; a
	 * signal sent by someone is raised again (ignored, if it was) */
	struct sigaction dfl = {.sa_handler = p.sa_handler == SIG_IGN && si->si_code <= 0 ? SIG_IGN : SIG_DFL};
	sigemptyset(&dfl.sa_mask);
	sigaction(SIGBUS, &dfl, NULL);
	if (si->si_code <= 0 && dfl.sa_handler == SIG_DFL)
		raise(SIGBUS);
}

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
	int saved = errno;
	if (si->si_code == BUS_ADRERR) {
		uintptr_t a = (uintptr_t)si->si_addr;
		uintptr_t ps = g_ps;
		pid_t me = (pid_t)syscall(SYS_getpid);
		atomic_fetch_add(&g_in, 1);
		int top = atomic_load(&g_top);
		for (int i = 0; i < top; i++) {
			struct sb_slot *s = &g_slot[i];
			uintptr_t lo = atomic_load(&s->lo), hi = atomic_load(&s->hi);
			if (a < lo || a >= hi || atomic_load(&s->pid) != me)
				continue;
			uintptr_t page = a & ~(ps - 1);
			/* raw: the preload library's mmap would take it for a
			 * MAP_FIXED over an MR and wait for the monitor; the
			 * offset (ignored here) lets the seccomp filter pass it */
			long r = syscall(SYS_mmap, page, ps, PROT_READ | PROT_WRITE,
					 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1,
					 MRL_SCRATCH_MMAP_OFF);
			if (r == -1)
				break; /* cannot: as if we were not here */
			uint64_t off = (page > lo ? page - lo : 0) + 1;
			uint64_t cur = atomic_load(&s->fault);
			while ((!cur || off < cur) && !atomic_compare_exchange_weak(&s->fault, &cur, off))
				;
			atomic_fetch_add(&g_faults, 1);
			uint64_t one = 1;
			if (write(atomic_load(&s->wake_fd), &one, sizeof(one)) < 0) {
			}
			atomic_fetch_sub(&g_in, 1);
			errno = saved;
			return;
		}
		atomic_fetch_sub(&g_in, 1);
	}
	errno = saved;
	chain(sig, si, uc, (pid_t)syscall(SYS_gettid));
}

/* g_install held: ours is the handler, in front of whatever is there now
 * (libfabric installs its own as it starts; an application may too) */
static int sb_install(void)
{
	struct sigaction cur;
	if (sigaction(SIGBUS, NULL, &cur) < 0)
		return -errno;
	if ((cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == on_sigbus)
		return 0;
	struct sigaction sa = {.sa_sigaction = on_sigbus, .sa_flags = SA_SIGINFO | SA_ONSTACK};
	sigemptyset(&sa.sa_mask);
	g_prev = cur;
	return sigaction(SIGBUS, &sa, NULL) < 0 ? -errno : 0;
}

static int sb_start(struct mrl_ctx *ctx)
{
	if (ctx->opts.flags & MRL_CTX_NO_SIGBUS)
		return -EPERM;
	int ret = 0;
	pthread_mutex_lock(&g_install);
	if (!g_users) {
		g_ps = (uintptr_t)sysconf(_SC_PAGESIZE);
		ret = sb_install();
	}
	if (!ret)
		g_users++;
	pthread_mutex_unlock(&g_install);
	return ret;
}

/* no handler is looking at what was just taken out of the table */
static void sb_quiesce(void)
{
	while (atomic_load(&g_in))
		sched_yield();
}

static void sb_clear(struct sb_slot *s)
{
	atomic_store(&s->lo, 0);
	atomic_store(&s->hi, 0);
	sb_quiesce();
	atomic_store(&s->fault, 0);
	s->mr = NULL;
	__atomic_store_n(&s->ctx, NULL, __ATOMIC_SEQ_CST); /* free for any context */
}

static void sb_stop(struct mrl_ctx *ctx)
{
	int top = atomic_load(&g_top);
	for (int i = 0; i < top; i++)
		if (CTX_LD(&g_slot[i]) == ctx) {
			if (g_slot[i].mr)
				g_slot[i].mr->sigbus = 0;
			sb_clear(&g_slot[i]);
		}
	pthread_mutex_lock(&g_install);
	if (--g_users == 0) {
		/* put back what was there, unless someone replaced us since */
		struct sigaction cur;
		if (sigaction(SIGBUS, NULL, &cur) == 0 && (cur.sa_flags & SA_SIGINFO) &&
		    cur.sa_sigaction == on_sigbus)
			sigaction(SIGBUS, &g_prev, NULL);
	}
	pthread_mutex_unlock(&g_install);
}

/* ctx->lock held. The slots are shared by every context: taken by a
 * compare-and-swap of ctx (NULL -> ctx). */
static void sb_mr_attach(struct mrl_ctx *ctx, struct mrl_mr *mr)
{
	if (!mr->file || mr->uffd || !mr->len)
		return;
	for (int i = 0; i < SB_SLOTS; i++) {
		struct sb_slot *s = &g_slot[i];
		struct mrl_ctx *none = NULL;
		if (!__atomic_compare_exchange_n(&s->ctx, &none, ctx, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
			continue;
		s->mr = mr;
		atomic_store(&s->fault, 0);
		atomic_store(&s->wake_fd, ctx->wake_fd);
		atomic_store(&s->pid, getpid());
		atomic_store(&s->lo, (uintptr_t)mr->addr);
		atomic_store(&s->hi, (uintptr_t)mr->addr + mr->len);
		int top = atomic_load(&g_top);
		while (top < i + 1 && !atomic_compare_exchange_weak(&g_top, &top, i + 1))
			;
		mr->sigbus = (uint16_t)(i + 1);
		pthread_mutex_lock(&g_install);
		if (sb_install() < 0)
			mrl_log("cannot install the SIGBUS handler: %s", strerror(errno));
		pthread_mutex_unlock(&g_install);
		return;
	}
	static _Atomic bool told;
	if (!atomic_exchange(&told, true))
		mrl_log("more than %d file MRs: a fault past a file's end on the others is not caught", SB_SLOTS);
}

static void sb_mr_detach(struct mrl_ctx *ctx, struct mrl_mr *mr)
{
	(void)ctx;
	if (!mr->sigbus)
		return;
	sb_clear(&g_slot[mr->sigbus - 1]);
	mr->sigbus = 0;
}

/* ctx->lock held, every monitor turn: fence what the handler caught. */
static void sb_tick(struct mrl_ctx *ctx, uint64_t now)
{
	uint64_t n = atomic_load(&g_faults);
	if (n == ctx->sigbus_seen)
		return;
	ctx->sigbus_seen = n;
	int top = atomic_load(&g_top);
	for (int i = 0; i < top; i++) {
		struct sb_slot *s = &g_slot[i];
		if (CTX_LD(s) != ctx || !s->mr || !atomic_load(&s->fault))
			continue;
		uint64_t off = atomic_exchange(&s->fault, 0) - 1;
		struct mrl_mr *mr = s->mr;
		mrl_log("a store past the end of %s (offset %llu of an MR of %llu bytes) was caught: it went to a "
			"scratch page; the MR is fenced from there", mr->file && mr->file->path ? mr->file->path : "?",
			(unsigned long long)off, (unsigned long long)mr->len);
		ctx->st.sigbus_caught++;
		mrl_mr_fence_locked(ctx, mr, MRL_CAUSE_TRUNCATED, off, mr->len - off, 0, now);
	}
}

const struct mrl_watcher_ops mrl_watch_sigbus = {
	.name = "sigbus",
	.bit = MRL_WATCH_SIGBUS,
	.start = sb_start,
	.stop = sb_stop,
	.tick = sb_tick,
	.mr_attach = sb_mr_attach,
	.mr_detach = sb_mr_detach,
};
