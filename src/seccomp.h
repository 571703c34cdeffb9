/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The seccomp watcher (opt-in: MRL_CTX_SECCOMP): the owner's own raw
 * ftruncate, fallocate (punch, zero, collapse, insert), madvise and
 * process_madvise (advice that drops pages), munmap, mremap, mmap(MAP_FIXED)
 * and shmat(SHM_REMAP) are held at system-call entry by a seccomp
 * user-notification filter and seen before they land, whatever the memory
 * kind and however they are called (libc, syscall(2); io_uring is not a
 * system call of the owner: not seen here). Four files, one header:
 *  - seccomp_filter.c builds the BPF filter and installs it;
 *  - seccomp_loop.c runs the supervisor (reads notifications, answers or
 *    hands them over) and the caller (makes a held call once it may land);
 *  - seccomp_match.c keeps each context's copy of its registered ranges and
 *    objects and matches a call against them without ctx->lock;
 *  - seccomp_held.c is the watcher: the monitor's side of a held call.
 *
 * How: mrl_ctx_create installs one filter (once per process) on the calling
 * thread; every thread and process that thread starts afterwards inherits
 * it. The library's own threads started before (the monitor, the device
 * worker, the userfaultfd reader, the supervisor and caller) are not
 * filtered, so nothing the library must do to resolve a break waits for
 * itself. Calls made by a sanitizer runtime's own code (LeakSanitizer's
 * exit-time tracer, a clone sharing the address space that ptrace-stops
 * every thread, the supervisor included, then unmaps its own memory) are
 * not the application's: the filter lets them go by instruction pointer.
 * The supervisor:
 *  - a call from another process (a child: filters are inherited across
 *    fork and exec) is let go at once (SECCOMP_USER_NOTIF_FLAG_CONTINUE);
 *  - a call of this process that touches no registered range or object is
 *    let go at once (the lookup takes only the leaf lock mrl_sc.lock);
 *  - a call that does is handed to the monitor of the context that has it
 *    (ctx->lock, tick): munmap, mremap and mmap/shmat over a range fence the
 *    MRs they take away (cause unmapped/moved/replaced), the others pause
 *    them through the break engine (brk.c) and, once peers and device have
 *    let go, the caller thread makes the very call itself (same address
 *    space, same fd table) and answers with its result: the change has
 *    landed exactly then, and the MRs are restored on what is there now
 *    (past a new end: fenced, truncated).
 * Files marked by fanotify are left to it (it sees the owner's calls too).
 *
 * Costs and inheritance (mrl_ctx_create(3), README): a filter cannot be
 * removed; it stays after mrl_ctx_destroy and so does the supervisor,
 * answering "go on". Unrelated system calls pay the filter (a few BPF
 * instructions); every matching call of the process and its descendants
 * makes a round trip to the supervisor. Children get no copy of the
 * listener (closed in the child at fork): once the owner process has
 * exited, their matching calls fail with ENOSYS (seccomp's answer when
 * nobody listens) instead of hanging. Without CAP_SYS_ADMIN the process
 * gets no_new_privs (setuid programs it runs keep their caller's rights). */
#ifndef MRL_SECCOMP_H
#define MRL_SECCOMP_H

#include <linux/seccomp.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include "mrl_int.h"

#ifndef SYS_process_madvise
#define SYS_process_madvise 440
#endif
#ifndef MADV_DONTNEED_LOCKED
#define MADV_DONTNEED_LOCKED 24
#endif

#define SC_CTXS 8
#define SC_RANGES 1024
#define SC_OBJS 256

/* One context's registered ranges (page-rounded) and objects, copied here
 * so the supervisor can match without ctx->lock. */
struct sc_obj {
	dev_t dev, st_dev;
	ino_t ino;
};
/* PENDING: for the monitor; HELD: its break runs; GO: may land (the caller
 * thread makes it: CALLING); DONE: it returned, the monitor finishes */
enum { REQ_NONE = 0, REQ_PENDING, REQ_HELD, REQ_GO, REQ_CALLING, REQ_DONE };
struct sc_req {
	int state;
	struct seccomp_notif n;
	dev_t dev;
	ino_t ino;
	uint64_t seg;     /* shmat: the segment's size */
	uint64_t seen;
	struct mrl_brk *brk;
};
struct sc_ctx {
	struct mrl_ctx *ctx;
	uint64_t id;      /* never reused: a context destroyed meanwhile is told apart */
	uintptr_t lo[SC_RANGES], hi[SC_RANGES];
	unsigned nranges;
	struct sc_obj obj[SC_OBJS];
	unsigned nobjs;
	bool overflow;    /* more than fits: every call of the process goes to the monitor */
	struct sc_req req; /* the one call held for this context */
};

struct mrl_sc {
	pthread_mutex_t lock; /* leaf: no system call is made under it */
	pthread_cond_t cv;    /* a request moved on */
	struct sc_ctx *ctxs[SC_CTXS];
	int notify_fd;        /* -1: no filter in this process; -2: none, threads leave */
	bool started;
	pid_t pid;            /* the process that installed it */
	uint64_t next_id;
	uint64_t held, passed, lost; /* statistics */
};
extern struct mrl_sc mrl_sc;

/* seccomp_filter.c: install the filter on the calling thread; the
 * listener fd or -errno */
int mrl_sc_filter_install(void);

/* seccomp_match.c (mrl_sc.lock held) */
struct sc_ctx *mrl_sc_of(struct mrl_ctx *ctx);
struct sc_ctx *mrl_sc_by_id(uint64_t id);
/* the context whose MRs the call touches, NULL if none; st: the fd's
 * (ftruncate, fallocate), iov: process_madvise's ranges, seg: shmat's
 * segment size */
struct sc_ctx *mrl_sc_match_locked(const struct seccomp_notif *n, const struct stat *st,
				   const struct iovec *iov, size_t niov, uint64_t seg);
/* seccomp_match.c: refresh ctx's copy (ctx->lock held; takes mrl_sc.lock) */
void mrl_sc_rebuild(struct mrl_ctx *ctx);

/* seccomp_loop.c */
void mrl_sc_respond(const struct seccomp_notif *n, bool go_on, int64_t val, int err);
void mrl_sc_kick(void); /* a slot freed: dispatch the backlog */

#endif
