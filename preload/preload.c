/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* libmrlease-preload.so: unversioned munmap, mremap, madvise,
 * process_madvise, mmap/mmap64, shmdt, brk and sbrk that every object in the process reaches (LD_PRELOAD
 * or linked first). Each tells the attached libmrlease copies (hooks) and
 * then calls the next definition, so other interposers and libc's own
 * hooks (UCX ucm, libfabric memhooks, Open MPI's patcher) still see the
 * call. With nothing attached it is a pure pass-through. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <limits.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "mrlease_preload.h"

#define EXPORT __attribute__((visibility("default")))

#if defined(__x86_64__)
#define LIBC_BASE "GLIBC_2.2.5"
#elif defined(__aarch64__)
#define LIBC_BASE "GLIBC_2.17"
#else
#define LIBC_BASE NULL
#endif

static _Atomic long pl_mrs;
static _Atomic uintptr_t pl_probe;
static _Atomic long pl_probe_seen;
static const struct mrlease_preload_hooks_v1 *_Atomic pl_hooks[MRLEASE_PRELOAD_MAX];
/* calls inside slot k's hooks: counted before the pointer is loaded, so a
 * detach that cleared the slot and then saw zero has no caller left */
static _Atomic int pl_users[MRLEASE_PRELOAD_MAX];

/* ---- the next definitions, resolved once ---- */

enum { N_MUNMAP, N_MREMAP, N_MADVISE, N_MMAP, N_MMAP64, N_SHMDT, N_BRK, N_SBRK, N_PMADV, N_MAX };
static const char *const next_name[N_MAX] = {"munmap", "mremap", "madvise", "mmap",
					     "mmap64", "shmdt",  "brk",     "sbrk",
					     "process_madvise"};
static void *_Atomic next_fn[N_MAX];
/* this thread is inside dlsym: its allocator may map and unmap meanwhile */
static __thread int resolving __attribute__((tls_model("initial-exec")));

static void *next(int n)
{
	void *p = atomic_load_explicit(&next_fn[n], memory_order_acquire);
	if (__builtin_expect(p != NULL, 1) || resolving)
		return p;
	resolving = 1;
	/* the unversioned lookup first: dlvsym never returns an unversioned
	 * definition from an object that has versions, which is what another
	 * interposer after us is, so it would skip it and break its chain */
	p = dlsym(RTLD_NEXT, next_name[n]);
	if (!p && LIBC_BASE)
		p = dlvsym(RTLD_NEXT, next_name[n], LIBC_BASE);
	resolving = 0;
	if (p)
		atomic_store_explicit(&next_fn[n], p, memory_order_release);
	return p;
}

__attribute__((constructor)) static void resolve_all(void)
{
	for (int n = 0; n < N_MAX; n++)
		next(n);
}

static inline bool armed(void)
{
	return atomic_load_explicit(&pl_mrs, memory_order_relaxed) != 0;
}

/* Run f on every attached hook table. */
#define EACH_HOOK(h, body)                                                              \
	for (int k_ = 0; k_ < MRLEASE_PRELOAD_MAX; k_++) {                              \
		atomic_fetch_add(&pl_users[k_], 1);                                      \
		const struct mrlease_preload_hooks_v1 *h = atomic_load(&pl_hooks[k_]);   \
		if (h) {                                                                 \
			body;                                                            \
		}                                                                        \
		atomic_fetch_sub(&pl_users[k_], 1);                                      \
	}

static void before(int op, uintptr_t a, size_t len)
{
	int err = errno; /* the hooks must not disturb what the caller sees */
	EACH_HOOK(h, h->before(op, a, len));
	errno = err;
}

/* ---- attachment ---- */

static const struct mrlease_preload_info_v1 pl_info;

EXPORT int mrlease_preload_attach_v1(const struct mrlease_preload_hooks_v1 *h,
				     const struct mrlease_preload_info_v1 **info)
{
	if (!h || h->size < sizeof(*h))
		return -EINVAL;
	for (int k = 0; k < MRLEASE_PRELOAD_MAX; k++) {
		const struct mrlease_preload_hooks_v1 *expect = NULL;
		if (atomic_compare_exchange_strong(&pl_hooks[k], &expect, h)) {
			*info = &pl_info;
			return 0;
		}
	}
	return -ENOSPC;
}

EXPORT void mrlease_preload_detach_v1(const struct mrlease_preload_hooks_v1 *h)
{
	for (int k = 0; k < MRLEASE_PRELOAD_MAX; k++) {
		const struct mrlease_preload_hooks_v1 *expect = h;
		if (atomic_compare_exchange_strong(&pl_hooks[k], &expect, NULL))
			while (atomic_load(&pl_users[k]))
				sched_yield();
	}
}

/* ---- the calls ---- */

EXPORT int munmap(void *addr, size_t len)
{
	if (armed()) {
		/* an attacher asking whether callers reach us arms us first */
		if (atomic_load_explicit(&pl_probe, memory_order_relaxed) == (uintptr_t)addr && addr)
			atomic_fetch_add(&pl_probe_seen, 1);
		before(MRLEASE_PRELOAD_UNMAP, (uintptr_t)addr, len);
	}
	int (*f)(void *, size_t) = (int (*)(void *, size_t))next(N_MUNMAP);
	if (f)
		return f(addr, len);
	return (int)syscall(SYS_munmap, addr, len);
}

static const struct mrlease_preload_info_v1 pl_info = {
	.size = sizeof(pl_info),
	.mrs = &pl_mrs,
	.munmap = (void *)munmap,
	.probe = &pl_probe,
	.probe_seen = &pl_probe_seen,
};

EXPORT void *mremap(void *old, size_t old_len, size_t new_len, int flags, ...)
{
	void *new_addr = NULL;
	if (flags & MREMAP_FIXED) {
		va_list ap;
		va_start(ap, flags);
		new_addr = va_arg(ap, void *);
		va_end(ap);
	}
	if (armed()) {
		before(MRLEASE_PRELOAD_MOVE, (uintptr_t)old, old_len);
		if (flags & MREMAP_FIXED) /* whatever was at the target is replaced */
			before(MRLEASE_PRELOAD_REPLACE, (uintptr_t)new_addr, new_len);
	}
	void *(*f)(void *, size_t, size_t, int, ...) = (void *(*)(void *, size_t, size_t, int, ...))next(N_MREMAP);
	if (f)
		return f(old, old_len, new_len, flags, new_addr);
	return (void *)syscall(SYS_mremap, old, old_len, new_len, flags, new_addr);
}

/* The attachers' pause over [a, a+len) around call(arg): every attacher's
 * pause first, then the call, then the resumes. */
static long madv_around(uintptr_t a, size_t len, int advice, long (*call)(void *), void *arg)
{
	int err = errno;
	void *tok[MRLEASE_PRELOAD_MAX] = {0};
	const struct mrlease_preload_hooks_v1 *hs[MRLEASE_PRELOAD_MAX];
	for (int k = 0; k < MRLEASE_PRELOAD_MAX; k++) {
		atomic_fetch_add(&pl_users[k], 1);
		const struct mrlease_preload_hooks_v1 *h = hs[k] = atomic_load(&pl_hooks[k]);
		if (h)
			tok[k] = h->madv_before(a, len, advice);
		/* stays counted until after: the attacher is inside a break */
	}
	errno = err;
	long ret = call(arg);
	err = errno;
	for (int k = 0; k < MRLEASE_PRELOAD_MAX; k++) {
		const struct mrlease_preload_hooks_v1 *h = hs[k];
		if (h)
			h->madv_after(tok[k], a, len, advice, ret < 0 ? -1 : 0);
		atomic_fetch_sub(&pl_users[k], 1);
	}
	errno = err;
	return ret;
}

struct madv_args {
	void *addr;
	size_t len;
	int advice;
};

static long call_madvise(void *arg)
{
	struct madv_args *m = arg;
	int (*f)(void *, size_t, int) = (int (*)(void *, size_t, int))next(N_MADVISE);
	return f ? f(m->addr, m->len, m->advice) : syscall(SYS_madvise, m->addr, m->len, m->advice);
}

EXPORT int madvise(void *addr, size_t len, int advice)
{
	struct madv_args m = {addr, len, advice};
	if (!armed())
		return (int)call_madvise(&m);
	return (int)madv_around((uintptr_t)addr, len, advice, call_madvise, &m);
}

/* process_madvise on the process itself zaps pages as madvise does
 * (MADV_DONTNEED, MADV_FREE on Linux 6.18). The pause covers the hull of
 * its ranges (never less than they touch). A pidfd of another process,
 * told by PIDFD_GET_INFO (Linux 6.13), is let through; one that cannot be
 * told is treated as this process (a pause too many, never one too few). */
struct mrl_pidfd_info {
	uint64_t mask, cgroupid;
	uint32_t pid, tgid, ppid, ruid, rgid, euid, egid, suid, sgid, fsuid, fsgid;
	int32_t exit_code;
};
#define MRL_PIDFD_GET_INFO _IOWR(0xFF, 11, struct mrl_pidfd_info)

struct pmadv_args {
	int pidfd;
	const struct iovec *iov;
	size_t vlen;
	int advice;
	unsigned flags;
};

static long call_pmadv(void *arg)
{
	struct pmadv_args *m = arg;
	ssize_t (*f)(int, const struct iovec *, size_t, int, unsigned) =
		(ssize_t (*)(int, const struct iovec *, size_t, int, unsigned))next(N_PMADV);
	return f ? f(m->pidfd, m->iov, m->vlen, m->advice, m->flags)
		 : syscall(SYS_process_madvise, m->pidfd, m->iov, m->vlen, m->advice, m->flags);
}

EXPORT ssize_t process_madvise(int pidfd, const struct iovec *iov, size_t vlen, int advice,
			       unsigned flags)
{
	struct pmadv_args m = {pidfd, iov, vlen, advice, flags};
	if (!armed() || !iov || !vlen || vlen > IOV_MAX)
		return call_pmadv(&m);
	int err = errno;
	struct mrl_pidfd_info pi = {.mask = 1 /* PIDFD_INFO_PID */};
	bool other = ioctl(pidfd, MRL_PIDFD_GET_INFO, &pi) == 0 && pi.tgid != (uint32_t)getpid();
	errno = err;
	if (other)
		return call_pmadv(&m);
	uintptr_t lo = UINTPTR_MAX, hi = 0;
	for (size_t i = 0; i < vlen; i++) {
		uintptr_t b = (uintptr_t)iov[i].iov_base, e = b + iov[i].iov_len;
		if (!iov[i].iov_len || e < b)
			continue;
		lo = b < lo ? b : lo;
		hi = e > hi ? e : hi;
	}
	if (lo >= hi)
		return call_pmadv(&m);
	return madv_around(lo, hi - lo, advice, call_pmadv, &m);
}

EXPORT void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	if ((flags & MAP_FIXED) && !(flags & MAP_FIXED_NOREPLACE) && armed())
		before(MRLEASE_PRELOAD_REPLACE, (uintptr_t)addr, len);
	void *(*f)(void *, size_t, int, int, int, off_t) =
		(void *(*)(void *, size_t, int, int, int, off_t))next(N_MMAP);
	if (f)
		return f(addr, len, prot, flags, fd, off);
	return (void *)syscall(SYS_mmap, addr, len, prot, flags, fd, off);
}

EXPORT void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	if ((flags & MAP_FIXED) && !(flags & MAP_FIXED_NOREPLACE) && armed())
		before(MRLEASE_PRELOAD_REPLACE, (uintptr_t)addr, len);
	void *(*f)(void *, size_t, int, int, int, off_t) =
		(void *(*)(void *, size_t, int, int, int, off_t))next(N_MMAP64);
	if (f)
		return f(addr, len, prot, flags, fd, off);
	return (void *)syscall(SYS_mmap, addr, len, prot, flags, fd, off);
}

EXPORT int shmdt(const void *addr)
{
	if (armed())
		before(MRLEASE_PRELOAD_SHMDT, (uintptr_t)addr, 0);
	int (*f)(const void *) = (int (*)(const void *))next(N_SHMDT);
	if (f)
		return f(addr);
	return (int)syscall(SYS_shmdt, addr);
}

/* brk/sbrk: shrinking the heap unmaps [new break, old break). Only libc's
 * own calls keep its idea of the break current, so there is no raw
 * fallback. */
EXPORT int brk(void *addr)
{
	if (armed()) {
		uintptr_t cur = (uintptr_t)syscall(SYS_brk, 0);
		if ((uintptr_t)addr < cur)
			before(MRLEASE_PRELOAD_UNMAP, (uintptr_t)addr, cur - (uintptr_t)addr);
	}
	int (*f)(void *) = (int (*)(void *))next(N_BRK);
	if (f)
		return f(addr);
	errno = ENOSYS;
	return -1;
}

EXPORT void *sbrk(intptr_t inc)
{
	if (inc < 0 && armed()) {
		uintptr_t cur = (uintptr_t)syscall(SYS_brk, 0);
		before(MRLEASE_PRELOAD_UNMAP, cur - (uintptr_t)-inc, (uintptr_t)-inc);
	}
	void *(*f)(intptr_t) = (void *(*)(intptr_t))next(N_SBRK);
	if (f)
		return f(inc);
	errno = ENOSYS;
	return (void *)-1;
}
