/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* t_preload's program: knows nothing of mrlease (not linked with it). It
 * dlopen()s a plugin that is, lets the plugin register ranges, and unmaps
 * them itself. Modes: "preloaded" (LD_PRELOAD=libmrlease-preload.so),
 * "plain" (no preload), "second" (LD_PRELOAD=ours:second.so). */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "mrlease.h"
#include "plugin.h"

static int failures;
#define EXPECT(cond, ...)                                                                \
	do {                                                                             \
		if (!(cond)) {                                                           \
			fprintf(stderr, "%s:%d: %s: ", __FILE__, __LINE__, #cond);       \
			fprintf(stderr, __VA_ARGS__);                                    \
			fputc('\n', stderr);                                             \
			failures++;                                                      \
		}                                                                        \
	} while (0)

static void *sym(void *h, const char *name)
{
	void *p = dlsym(h ? h : RTLD_DEFAULT, name);
	if (!p) {
		fprintf(stderr, "%s: %s\n", name, dlerror());
		exit(1);
	}
	return p;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: main preloaded|plain|second plugin.so\n");
		return 2;
	}
	const char *mode = argv[1];
	void *h = dlopen(argv[2], RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		fprintf(stderr, "dlopen %s: %s\n", argv[2], dlerror());
		return 1;
	}
	pl_open_fn *open_ = sym(h, "pl_open");
	pl_map_reg_fn *map_reg = sym(h, "pl_map_reg");
	pl_fenced_before_fn *fenced_before = sym(h, "pl_fenced_before");
	pl_self_unmap_fn *self_unmap = sym(h, "pl_self_unmap");
	pl_cov_munmap_fn *cov_munmap = sym(h, "pl_cov_munmap");
	pl_close_fn *close_ = sym(h, "pl_close");

	unsigned w = open_();
	size_t len = 1 << 20;
	if (!strcmp(mode, "plain")) {
		EXPECT(!(w & MRL_WATCH_INTERPOSE), "no preload library: no interposition claimed (watchers %#x)", w);
		void *p = map_reg(len);
		EXPECT(p != NULL, "map and register");
		if (p) {
			int cov = cov_munmap();
			EXPECT(cov != MRL_SEEN_BEFORE, "the owner's munmap is not claimed 'before' (%d)", cov);
			munmap(p, len);
		}
	} else if (!strcmp(mode, "preloaded")) {
		EXPECT(w & MRL_WATCH_INTERPOSE, "watchers %#x include MRL_WATCH_INTERPOSE", w);
		void *p = map_reg(len);
		EXPECT(p != NULL && cov_munmap() == MRL_SEEN_BEFORE, "munmap claimed 'before'");
		EXPECT(p && munmap(p, len) == 0, "the program's munmap");
		EXPECT(p && fenced_before("the program's munmap", 0) == 0, "fenced before it landed");
		EXPECT(self_unmap() == 0, "the plugin's own munmap fenced before it landed");
	} else if (!strcmp(mode, "second")) {
		_Atomic unsigned long *bytes = sym(NULL, "second_bytes");
		void *_Atomic *watch = sym(NULL, "second_watch");
		_Atomic uint64_t *watch_ns = sym(NULL, "second_watch_ns");
		EXPECT(w & MRL_WATCH_INTERPOSE, "ours first: watchers %#x include MRL_WATCH_INTERPOSE", w);
		/* 10 MiB the program maps, in 1 MiB pieces, one of them registered */
		size_t big = 10u << 20;
		char *a = mmap(NULL, big, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		EXPECT(a != MAP_FAILED, "map 10 MiB");
		unsigned long b0 = *bytes;
		for (size_t off = 0; off < big; off += len)
			munmap(a + off, len);
		EXPECT(*bytes - b0 == big, "the second interposer saw every byte (%lu of %zu)", *bytes - b0, big);
		void *p = map_reg(len);
		*watch = p;
		b0 = *bytes;
		EXPECT(p && munmap(p, len) == 0, "unmap the registered range");
		EXPECT(*bytes - b0 == len, "and saw the registered range go too (%lu)", *bytes - b0);
		EXPECT(*watch_ns != 0, "the second interposer was reached for it");
		EXPECT(p && fenced_before("munmap under a second interposer", *watch_ns) == 0,
		       "ours fenced before the call went on to the next definition");
	} else {
		fprintf(stderr, "unknown mode %s\n", mode);
		return 2;
	}
	close_();
	if (failures) {
		fprintf(stderr, "t_preload %s: %d check(s) failed\n", mode, failures);
		return 1;
	}
	printf("t_preload %s: ok\n", mode);
	return 0;
}
