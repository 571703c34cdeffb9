/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* t_preload: what the plugin (linked with libmrlease.so) offers the main
 * program (which knows nothing of mrlease and dlopen()s it). */
#ifndef T_PRELOAD_PLUGIN_H
#define T_PRELOAD_PLUGIN_H
#include <stddef.h>
#include <stdint.h>

/* A lease-watched mock context; returns mrl_ctx_watchers(). */
typedef unsigned pl_open_fn(void);
/* A file-backed MAP_SHARED range of len bytes (userfaultfd does not watch
 * it), registered; returns its address. */
typedef void *pl_map_reg_fn(size_t len);
/* The last registered MR was fenced, cause "unmapped", in this process's
 * name and not merely seen after the change (no CHANGED event); when
 * t_inside is not 0, the fence is no later than that. 0 if so. */
typedef int pl_fenced_before_fn(const char *what, uint64_t t_inside);
/* The plugin maps, registers and unmaps a range itself, then checks it. */
typedef int pl_self_unmap_fn(void);
/* Coverage the last MR claims for the owner's munmap (MRL_SEEN_*). */
typedef int pl_cov_munmap_fn(void);
typedef void pl_close_fn(void);
#endif
