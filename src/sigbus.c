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
 * A transport's kernel copy raises no signal at all: tcp receives a write
 * straight into the MR (recv into pages past the end: EFAULT, and the
 * provider drops the connection) and sends a read from it (sendmsg:
 * EFAULT). So, for the MRs whose files another process can cut without
 * being seen first (no lease, no fanotify: "at risk"), the owner's
 * endpoint looks at each such file's size before it drives its provider
 * (mrl_sb_precheck, one fstat per file) and puts what lies past the end on
 * scratch pages at once; the monitor then fences the MR from the end on.
 * The handler does the same for every MR of the file as a store faults,
 * and the inotify watcher as it sees a shrink. What is left is a truncate
 * landing between that fstat and the provider's copy (README, "Not covered
 * yet").
 *
 * Everything the handler touches is a lock-free table of slots (atomics),
 * one per watched MR; it calls mmap and write(2) (an eventfd) only. */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "mrl_int.h"

#define SB_SLOTS 4096
#define SB_KEPT 16
#define SB_RISK_NS 50000000ull /* an MR's risk is worked out again at most this often */

struct sb_slot {
	_Atomic uintptr_t lo, hi;    /* the MR's range; lo == hi: free */
	_Atomic int wake_fd;         /* its context's monitor */
	_Atomic pid_t pid;           /* the process that owns the MR (not a forked child) */
	_Atomic uint64_t fault;      /* lowest faulting page's offset in the MR, + 1; 0 none */
	struct mrl_mr *mr;           /* under its ctx->lock only */
	struct mrl_ctx *ctx;         /* identity only (never read by the handler) */
	/* the size check (mrl_sb_precheck), without the context's lock */
	_Atomic int stat_fd;         /* fstat-able fd of the MR's file, -1 none */
	_Atomic uint64_t foff;       /* the MR's offset in the file */
	_Atomic bool at_risk;        /* a truncate by another process is seen only after it lands */
	_Atomic uint64_t cut;        /* for the monitor: the file ends here (offset in the MR) + 1; 0 none */
	_Atomic uint64_t end;        /* the lowest end of file seen so far + 1; 0 none */
	_Atomic uintptr_t scratch;   /* scratch pages from this address to hi (hi: none) */
	_Atomic int users;           /* size checks looking at this slot now */
	_Atomic uintptr_t kept[SB_KEPT]; /* pages the handler put on scratch (kept by sb_scratch_tail) */
	_Atomic int nkept;
};

static struct sb_slot g_slot[SB_SLOTS];
static _Atomic int g_top;              /* slots in use are below this */
static _Atomic int g_in;               /* handlers looking at the table now */
static _Atomic uint64_t g_faults;      /* faults caught, all contexts */
static _Atomic uint64_t g_cuts;        /* ends of file the size check found, all contexts */
static _Atomic int g_risky;            /* slots at risk, all contexts */
_Atomic uint64_t mrl_sb_checks;        /* files the size check looked at (tests, bench) */
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

/* The last few files the size check looked at in one pass, and their size. */
struct sb_seen {
	int n;
	struct {
		int fd;
		uint64_t size;
	} f[4];
};

static void sb_check_slot(struct sb_slot *s, struct mrl_ctx *ctx, int only_fd, pid_t me,
			  struct sb_seen *seen);

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
			/* kept by a size check's remap of the tail (first) */
			int kn = atomic_fetch_add(&s->nkept, 1);
			if (kn < SB_KEPT)
				atomic_store(&s->kept[kn], page);
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
			/* the file was cut: the faulting thread (a transport's,
			 * usually) puts every MR's part past the end on scratch
			 * now, before its next copy from or to there fails in the
			 * kernel with no signal (mrl_sb_precheck) */
			int fd = atomic_load(&s->stat_fd);
			if (fd >= 0) {
				struct sb_seen seen = {0};
				for (int j = 0; j < top; j++)
					sb_check_slot(&g_slot[j], NULL, fd, me, &seen);
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

static void sb_set_risk(struct sb_slot *s, bool risk)
{
	if (atomic_exchange(&s->at_risk, risk) != risk)
		atomic_fetch_add(&g_risky, risk ? 1 : -1);
}

static void sb_clear(struct sb_slot *s)
{
	sb_set_risk(s, false);
	atomic_store(&s->lo, 0);
	atomic_store(&s->hi, 0);
	sb_quiesce();
	while (atomic_load(&s->users))
		sched_yield();
	atomic_store(&s->fault, 0);
	atomic_store(&s->cut, 0);
	atomic_store(&s->end, 0);
	atomic_store(&s->nkept, 0);
	atomic_store(&s->stat_fd, -1);
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

static void sb_risk(struct mrl_ctx *ctx, struct sb_slot *s);

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
		atomic_store(&s->cut, 0);
		atomic_store(&s->end, 0);
		atomic_store(&s->nkept, 0);
		atomic_store(&s->wake_fd, ctx->wake_fd);
		atomic_store(&s->pid, getpid());
		atomic_store(&s->stat_fd, mrl_file_stat_fd(mr->file));
		atomic_store(&s->foff, mr->fnode.start);
		atomic_store(&s->scratch, (uintptr_t)mr->addr + mr->len);
		atomic_store(&s->lo, (uintptr_t)mr->addr);
		atomic_store(&s->hi, (uintptr_t)mr->addr + mr->len);
		/* worked out now, and again soon (a lease may be taken after) */
		sb_risk(ctx, s);
		uint64_t soon = mrl_now_ns() + SB_RISK_NS / 5;
		if (!ctx->sb_risk_due || soon < ctx->sb_risk_due)
			ctx->sb_risk_due = soon;
		ctx->sb_risk_ns = 0;
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

/* Anonymous pages over [a, a + len): raw mmap with the offset the seccomp
 * filter lets go unheld, as in the handler (this runs in the handler, in
 * a transport's thread and in the monitor: held, it would wait for one) */
static void sb_map_scratch(uintptr_t a, size_t len)
{
	if (len)
		syscall(SYS_mmap, a, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1,
			MRL_SCRATCH_MMAP_OFF);
}

static bool sb_kept(struct sb_slot *s, uintptr_t page)
{
	int n = atomic_load(&s->nkept);
	for (int i = 0; i < n && i < SB_KEPT; i++)
		if (atomic_load(&s->kept[i]) == page)
			return true;
	return false;
}

/* Put [off, end) of slot s's MR on scratch pages (off rounded up to a page:
 * the page the end of file falls in is still the file's), once: the range
 * is claimed by a compare-and-swap of s->scratch. The pages the handler
 * put on scratch already are kept, with what was stored into them (the
 * first SB_KEPT of them: past that, a store past the end may read back as
 * zeros). (mincore cannot tell them apart: a truncate publishes the new
 * size before it takes the pages out of the page cache.) */
static void sb_scratch_tail(struct sb_slot *s, uintptr_t lo, uintptr_t hi, uint64_t off)
{
	uintptr_t ps = g_ps;
	if (off >= hi - lo)
		return;
	uintptr_t from = (lo + off + ps - 1) & ~(ps - 1);
	uintptr_t cur = atomic_load(&s->scratch);
	do {
		if (from >= cur)
			return;
	} while (!atomic_compare_exchange_weak(&s->scratch, &cur, from));
	uintptr_t run = from; /* start of the pages not yet mapped over */
	if (atomic_load(&s->nkept))
		for (uintptr_t a = from; a < cur; a += ps)
			if (sb_kept(s, a)) {
				sb_map_scratch(run, a - run);
				run = a + ps;
			}
	sb_map_scratch(run, cur - run);
}

/* Lower *v (an offset + 1, 0: none) to off + 1; true if it was higher. */
static bool sb_lower(_Atomic uint64_t *v, uint64_t off)
{
	uint64_t cur = atomic_load(v);
	while (!cur || off + 1 < cur)
		if (atomic_compare_exchange_weak(v, &cur, off + 1))
			return true;
	return false;
}

/* Slot s's file ends at off (in the MR): tell the monitor, once per end. */
static void sb_note_cut(struct sb_slot *s, uint64_t off)
{
	if (!sb_lower(&s->end, off))
		return;
	sb_lower(&s->cut, off);
	atomic_fetch_add(&g_cuts, 1);
	uint64_t one = 1;
	if (write(atomic_load(&s->wake_fd), &one, sizeof(one)) < 0) {
	}
}

/* tests, bench: no size check before progress (what it prevents, costs) */
_Atomic bool mrl_sb_test_no_precheck;

/* Size check of slot s for ctx (ctx NULL: any context), fd only if >= 0:
 * async-signal-safe (the handler runs it too). */
static void sb_check_slot(struct sb_slot *s, struct mrl_ctx *ctx, int only_fd, pid_t me,
			  struct sb_seen *seen)
{
	atomic_fetch_add(&s->users, 1);
	uintptr_t lo = atomic_load(&s->lo), hi = atomic_load(&s->hi);
	int fd = atomic_load(&s->stat_fd);
	if (lo >= hi || fd < 0 || (only_fd >= 0 && fd != only_fd) || !atomic_load(&s->at_risk) ||
	    (ctx && CTX_LD(s) != ctx) || atomic_load(&s->pid) != me) {
		atomic_fetch_sub(&s->users, 1);
		return;
	}
	int k = 0;
	while (k < seen->n && seen->f[k].fd != fd)
		k++;
	if (k == seen->n) {
		struct stat st;
		atomic_fetch_add_explicit(&mrl_sb_checks, 1, memory_order_relaxed);
		if (fstat(fd, &st) < 0) {
			atomic_fetch_sub(&s->users, 1);
			return;
		}
		k = seen->n < (int)ARRAY_SIZE(seen->f) ? seen->n++ : 0;
		seen->f[k].fd = fd;
		seen->f[k].size = (uint64_t)st.st_size;
	}
	uint64_t foff = atomic_load(&s->foff);
	uint64_t avail = seen->f[k].size > foff ? seen->f[k].size - foff : 0;
	uint64_t end = atomic_load(&s->end);
	if (avail < hi - lo && (!end || avail + 1 < end)) {
		sb_scratch_tail(s, lo, hi, avail);
		sb_note_cut(s, avail);
	}
	atomic_fetch_sub(&s->users, 1);
}

/* The owner's endpoint, before it drives its provider (any thread, no
 * lock of the context's): each at-risk file MR of ctx whose file ends
 * before the MR does gets the part past the end on scratch pages now, and
 * the monitor fences it from there. One fstat per file (the last few
 * looked at are remembered for the MRs that share them). */
void mrl_sb_precheck(struct mrl_ctx *ctx)
{
	if (likely(!atomic_load_explicit(&g_risky, memory_order_relaxed)) ||
	    unlikely(atomic_load_explicit(&mrl_sb_test_no_precheck, memory_order_relaxed)))
		return;
	struct sb_seen seen = {0};
	pid_t me = getpid();
	int top = atomic_load(&g_top);
	for (int i = 0; i < top; i++) {
		struct sb_slot *s = &g_slot[i];
		if (atomic_load_explicit(&s->at_risk, memory_order_relaxed) && CTX_LD(s) == ctx)
			sb_check_slot(s, ctx, -1, me, &seen);
	}
}

/* ctx->lock held (the inotify watcher, seeing a shrink): mr's pages from
 * off on to scratch before it is fenced there (the device may still reach
 * them until the fence is applied). */
void mrl_sb_cut(struct mrl_mr *mr, uint64_t off)
{
	if (!mr->sigbus)
		return;
	struct sb_slot *s = &g_slot[mr->sigbus - 1];
	uintptr_t lo = atomic_load(&s->lo), hi = atomic_load(&s->hi);
	if (lo < hi && off < hi - lo) {
		sb_scratch_tail(s, lo, hi, off);
		sb_lower(&s->end, off); /* fenced by the caller: nothing to tell the monitor */
	}
}

/* ctx->lock held: is slot s's MR at risk (a truncate by another process
 * seen only once it has landed)? */
static void sb_risk(struct mrl_ctx *ctx, struct sb_slot *s)
{
	uint8_t cov[MRL_CHG_MAX];
	mrl_mr_coverage(ctx, s->mr, cov);
	atomic_store(&s->stat_fd, s->mr->file ? mrl_file_stat_fd(s->mr->file) : -1);
	sb_set_risk(s, cov[MRL_CHG_OTHER_TRUNCATE] != MRL_SEEN_BEFORE);
}

/* ctx->lock held, a monitor turn (a lease taken or broken comes with one):
 * every MR's risk again, at most every 50 ms (a timer for the turns that
 * come sooner) */
static void sb_risk_all(struct mrl_ctx *ctx, uint64_t now)
{
	if (ctx->sb_risk_ns && now - ctx->sb_risk_ns < SB_RISK_NS) {
		ctx->sb_risk_due = ctx->sb_risk_ns + SB_RISK_NS;
		return;
	}
	ctx->sb_risk_ns = now;
	ctx->sb_risk_due = 0;
	int top = atomic_load(&g_top);
	for (int i = 0; i < top; i++) {
		struct sb_slot *s = &g_slot[i];
		if (CTX_LD(s) == ctx && s->mr)
			sb_risk(ctx, s);
	}
}

static uint64_t sb_next_timer(struct mrl_ctx *ctx)
{
	return ctx->sb_risk_due ? ctx->sb_risk_due : UINT64_MAX;
}

/* ctx->lock held, every monitor turn: fence what the handler caught and
 * what the size check found. */
static void sb_tick(struct mrl_ctx *ctx, uint64_t now)
{
	sb_risk_all(ctx, now);
	int top = atomic_load(&g_top);
	uint64_t n = atomic_load(&g_faults) + atomic_load(&g_cuts);
	if (n == ctx->sigbus_seen)
		return;
	ctx->sigbus_seen = n;
	for (int i = 0; i < top; i++) {
		struct sb_slot *s = &g_slot[i];
		if (CTX_LD(s) != ctx || !s->mr || !(atomic_load(&s->fault) || atomic_load(&s->cut)))
			continue;
		struct mrl_mr *mr = s->mr;
		const char *path = mr->file && mr->file->path ? mr->file->path : "?";
		uint64_t off = mr->len;
		if (atomic_load(&s->fault)) {
			off = atomic_exchange(&s->fault, 0) - 1;
			mrl_log("a store past the end of %s (offset %llu of an MR of %llu bytes) was caught: it went "
				"to a scratch page; the MR is fenced from there", path, (unsigned long long)off,
				(unsigned long long)mr->len);
			ctx->st.sigbus_caught++;
		}
		if (atomic_load(&s->cut)) {
			uint64_t c = atomic_exchange(&s->cut, 0) - 1;
			if (c < mr->valid_len)
				mrl_log("%s ends at offset %llu of an MR of %llu bytes (seen before the provider "
					"ran): the rest is on scratch pages, the MR is fenced from there", path,
					(unsigned long long)c, (unsigned long long)mr->len);
			off = c < off ? c : off;
		}
		uintptr_t lo = atomic_load(&s->lo), hi = atomic_load(&s->hi);
		if (lo < hi)
			sb_scratch_tail(s, lo, hi, off);
		mrl_mr_fence_locked(ctx, mr, MRL_CAUSE_TRUNCATED, off, mr->len - off, 0, now);
	}
}

const struct mrl_watcher_ops mrl_watch_sigbus = {
	.name = "sigbus",
	.bit = MRL_WATCH_SIGBUS,
	.start = sb_start,
	.stop = sb_stop,
	.tick = sb_tick,
	.next_timer = sb_next_timer,
	.mr_attach = sb_mr_attach,
	.mr_detach = sb_mr_detach,
};
