/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* t_preload's second interposer: an unrelated munmap that counts the bytes
 * it sees and chains to the next definition, as UCX or a profiler would.
 * It also notes when it first saw a watched address (before chaining). */
#include <dlfcn.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

EXPORT _Atomic unsigned long second_bytes;
EXPORT void *_Atomic second_watch;
EXPORT _Atomic uint64_t second_watch_ns;

EXPORT int munmap(void *addr, size_t len)
{
	static int (*_Atomic next)(void *, size_t);
	int (*f)(void *, size_t) = atomic_load(&next);
	if (!f) {
		f = (int (*)(void *, size_t))dlsym(RTLD_NEXT, "munmap");
		atomic_store(&next, f);
	}
	if (addr && addr == atomic_load(&second_watch) && !atomic_load(&second_watch_ns)) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		atomic_store(&second_watch_ns, (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec);
	}
	atomic_fetch_add(&second_bytes, len);
	return f ? f(addr, len) : (int)syscall(SYS_munmap, addr, len);
}
