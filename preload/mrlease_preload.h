/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The contract between libmrlease-preload.so (which defines the libc
 * address-space calls) and each libmrlease copy that attaches to it. */
#ifndef MRLEASE_PRELOAD_H
#define MRLEASE_PRELOAD_H

#include <stddef.h>
#include <stdint.h>

enum mrlease_preload_op {
	MRLEASE_PRELOAD_UNMAP,   /* [a, a+len) is about to be unmapped */
	MRLEASE_PRELOAD_MOVE,    /* ... moved away (mremap) */
	MRLEASE_PRELOAD_REPLACE, /* ... replaced (MAP_FIXED, MREMAP_FIXED target) */
	MRLEASE_PRELOAD_SHMDT,   /* the segment attached at a is about to go (len 0) */
};

/* Given by an attacher; lives as long as it is attached. Called on every
 * thread, possibly from a signal handler, before the next definition runs. */
struct mrlease_preload_hooks_v1 {
	size_t size;
	void (*before)(int op, uintptr_t a, size_t len);
	/* around madvise: before returns a token (NULL: nothing to finish) */
	void *(*madv_before)(uintptr_t a, size_t len, int advice);
	void (*madv_after)(void *tok, uintptr_t a, size_t len, int advice, int ret);
};

/* Given back to the attacher. */
struct mrlease_preload_info_v1 {
	size_t size;
	/* the attachers' registered ranges: the hooks run only while this is
	 * not zero (each attacher adds and removes its own) */
	_Atomic long *mrs;
	void *munmap; /* the preload's own munmap, to see what callers reach */
	/* set to an address just before calling munmap on it (with *mrs
	 * raised): the preload's munmap counts calls that reach it with that
	 * address in *probe_seen */
	_Atomic uintptr_t *probe;
	_Atomic long *probe_seen;
};

#define MRLEASE_PRELOAD_MAX 4
/* 0, or -ENOSPC when MRLEASE_PRELOAD_MAX attachers are in already. */
typedef int mrlease_preload_attach_v1_fn(const struct mrlease_preload_hooks_v1 *h,
					 const struct mrlease_preload_info_v1 **info);
/* Returns once no call is inside h's hooks any more. */
typedef void mrlease_preload_detach_v1_fn(const struct mrlease_preload_hooks_v1 *h);

#endif
