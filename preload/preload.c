/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* libmrlease-preload.so: unversioned munmap, mremap, madvise, mmap/mmap64,
 * shmdt, brk and sbrk that every object in the process reaches (LD_PRELOAD
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
#include <sys/mman.h>
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

enum { N_MUNMAP, N_MREMAP, N_MADVISE, N_MMAP, N_MMAP64, N_SHMDT, N_BRK, N_SBRK, N_MAX };
static const char *const next_name[N_MAX] = {"munmap", "mremap", "madvise", "mmap",
					     "mmap64", "shmdt",  "brk",     "sbrk"};
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

EXPORT int madvise(void *addr, size_t len, int advice)
{
	int (*f)(void *, size_t, int) = (int (*)(void *, size_t, int))next(N_MADVISE);
	if (!armed())
		return f ? f(addr, len, advice) : (int)syscall(SYS_madvise, addr, len, advice);
	int err = errno;
	void *tok[MRLEASE_PRELOAD_MAX] = {0};
	const struct mrlease_preload_hooks_v1 *hs[MRLEASE_PRELOAD_MAX];
	/* every attacher's pause first, then the call, then the resumes */
	for (int k = 0; k < MRLEASE_PRELOAD_MAX; k++) {
		atomic_fetch_add(&pl_users[k], 1);
		const struct mrlease_preload_hooks_v1 *h = hs[k] = atomic_load(&pl_hooks[k]);
		if (h)
			tok[k] = h->madv_before((uintptr_t)addr, len, advice);
		/* stays counted until after: the attacher is inside a break */
	}
	errno = err;
	int ret = f ? f(addr, len, advice) : (int)syscall(SYS_madvise, addr, len, advice);
	err = errno;
	for (int k = 0; k < MRLEASE_PRELOAD_MAX; k++) {
		const struct mrlease_preload_hooks_v1 *h = hs[k];
		if (h)
			h->madv_after(tok[k], (uintptr_t)addr, len, advice, ret);
		atomic_fetch_sub(&pl_users[k], 1);
	}
	errno = err;
	return ret;
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
