/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* MR registration, the MR state machine (active/paused/fenced/deregistered)
 * and coverage. The library finds each range's backing object itself. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "mrl_int.h"
#include "proto.h"

#ifndef TMPFS_MAGIC
#define TMPFS_MAGIC 0x01021994
#endif

/* PROCMAP_QUERY (Linux 6.11): O(log n) lookup of the VMA at an address.
 * Debian 12's headers predate it. */
struct mrl_procmap_query {
	uint64_t size, query_flags, query_addr;
	uint64_t vma_start, vma_end, vma_flags, vma_page_size, vma_offset, inode;
	uint32_t dev_major, dev_minor, vma_name_size, build_id_size;
	uint64_t vma_name_addr, build_id_addr;
};
#define MRL_PROCMAP_QUERY _IOWR('f', 17, struct mrl_procmap_query)
#define PMQ_READABLE 0x01
#define PMQ_WRITABLE 0x02
#define PMQ_EXECUTABLE 0x04
#define PMQ_SHARED 0x08

struct mrl_vma {
	uint64_t start, end, off, ino;
	dev_t dev;
	bool readable, writable, executable, shared;
	char name[512];
};

/* One line of /proc/self/maps into *v: 0, or -1 if it does not parse. */
static int vma_line(const char *line, struct mrl_vma *v)
{
	unsigned long s, e, off, ino;
	unsigned maj, min;
	char perm[8];
	int pos = 0;
	if (sscanf(line, "%lx-%lx %7s %lx %x:%x %lu %n", &s, &e, perm, &off, &maj, &min, &ino,
		   &pos) < 7)
		return -1;
	v->start = s;
	v->end = e;
	v->off = off;
	v->ino = ino;
	v->dev = makedev(maj, min);
	v->readable = perm[0] == 'r';
	v->writable = perm[1] == 'w';
	v->executable = perm[2] == 'x';
	v->shared = perm[3] == 's';
	snprintf(v->name, sizeof(v->name), "%s", pos ? line + pos : "");
	v->name[strcspn(v->name, "\n")] = 0;
	return 0;
}

/* The text, from f's position on: the mapping holding addr (read in
 * address order, so a walk up the address space reads the file once). */
static int vma_text_next(FILE *f, uint64_t addr, struct mrl_vma *v)
{
	char line[1024];
	while (fgets(line, sizeof(line), f)) {
		if (vma_line(line, v) || v->end <= addr)
			continue;
		return v->start <= addr ? 0 : -ENOENT; /* past it: a hole */
	}
	return -ENOENT;
}

static int vma_parse_maps(uint64_t addr, struct mrl_vma *v)
{
	FILE *f = fopen("/proc/self/maps", "re");
	if (!f)
		return -errno;
	int ret = vma_text_next(f, addr, v);
	fclose(f);
	return ret;
}

/* PROCMAP_QUERY on fd: 0, -ENOENT (nothing mapped there), or another
 * -errno (the kernel cannot answer: read the text instead) */
static int vma_query(int fd, uint64_t addr, struct mrl_vma *v)
{
	struct mrl_procmap_query q = {.size = sizeof(q), .query_addr = addr};
	q.vma_name_addr = (uintptr_t)v->name;
	q.vma_name_size = sizeof(v->name);
	if (ioctl(fd, MRL_PROCMAP_QUERY, &q))
		return -errno;
	v->start = q.vma_start;
	v->end = q.vma_end;
	v->off = q.vma_offset;
	v->ino = q.inode;
	v->dev = makedev(q.dev_major, q.dev_minor);
	v->readable = q.vma_flags & PMQ_READABLE;
	v->writable = q.vma_flags & PMQ_WRITABLE;
	v->executable = q.vma_flags & PMQ_EXECUTABLE;
	v->shared = q.vma_flags & PMQ_SHARED;
	if (!q.vma_name_size)
		v->name[0] = 0;
	return 0;
}

/* The context's fd for PROCMAP_QUERY (Linux 6.11+), opened and tried on
 * first use and kept: a look at one mapping is then one ioctl, from any
 * thread, with or without ctx->lock (no lock is taken here). -2 where
 * the kernel has no such ioctl (or MRL_PROCMAP_TEXT is set, which tests
 * use to walk the text path): the text is read instead. */
static int procmaps_fd(struct mrl_ctx *ctx)
{
	int fd = __atomic_load_n(&ctx->procmaps_fd, __ATOMIC_ACQUIRE);
	if (fd != -1)
		return fd;
	bool text = getenv("MRL_PROCMAP_TEXT") != NULL;
	int nfd = text ? -2 : open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
	if (text)
		mrl_log("MRL_PROCMAP_TEXT set: the address space is read as text");
	if (nfd >= 0) {
		struct mrl_vma v;
		int r = vma_query(nfd, (uintptr_t)&v, &v); /* the stack is always mapped */
		if (r) {
			mrl_log("PROCMAP_QUERY: %s: the address space is read as text", strerror(-r));
			close(nfd);
			nfd = -2;
		}
	} else {
		nfd = -2;
	}
	int expect = -1;
	if (!__atomic_compare_exchange_n(&ctx->procmaps_fd, &expect, nfd, false, __ATOMIC_ACQ_REL,
					 __ATOMIC_ACQUIRE)) {
		if (nfd >= 0)
			close(nfd); /* another thread's is in place */
		return expect;
	}
	return nfd;
}

/* A walk up the address space, mapping by mapping: PROCMAP_QUERY on the
 * context's fd, else one pass over the text. */
struct vma_walk {
	int fd;
	FILE *f;
};

static void walk_open(struct mrl_ctx *ctx, struct vma_walk *w)
{
	w->fd = procmaps_fd(ctx);
	w->f = NULL;
}

static int walk_at(struct vma_walk *w, uint64_t addr, struct mrl_vma *v)
{
	if (w->fd >= 0) {
		int r = vma_query(w->fd, addr, v);
		if (r != -ENOENT && r)
			w->fd = -2; /* cannot answer (it did when tried): the text */
		else
			return r;
	}
	if (!w->f && !(w->f = fopen("/proc/self/maps", "re")))
		return -errno;
	return vma_text_next(w->f, addr, v);
}

static void walk_close(struct vma_walk *w)
{
	if (w->f)
		fclose(w->f);
}

/* A look through a caller's own fd *fd for PROCMAP_QUERY (opened on first
 * use, -1; -2 once the text is read instead). */
static int vma_at_fd(int *fd, uint64_t addr, struct mrl_vma *v)
{
	if (*fd == -1 && (getenv("MRL_PROCMAP_TEXT") ||
			  (*fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC)) < 0))
		*fd = -2;
	if (*fd >= 0) {
		int r = vma_query(*fd, addr, v);
		if (!r || r == -ENOENT)
			return r;
		close(*fd); /* an older kernel: the text from now on */
		*fd = -2;
	}
	return vma_parse_maps(addr, v);
}

/* One look at the mapping holding addr, the kernel's (any lock or none). */
static int vma_at(struct mrl_ctx *ctx, uint64_t addr, struct mrl_vma *v)
{
	struct vma_walk w;
	walk_open(ctx, &w);
	int ret = walk_at(&w, addr, v);
	walk_close(&w);
	return ret;
}

int mrl_vma_range(uintptr_t addr, uintptr_t *start, uintptr_t *end)
{
	struct mrl_vma v;
	if (vma_parse_maps(addr, &v) || v.start > addr || v.end <= addr)
		return -ENOENT;
	*start = v.start;
	*end = v.end;
	return 0;
}

int mrl_vma_ident(struct mrl_ctx *ctx, uintptr_t addr, dev_t *dev, ino_t *ino)
{
	struct mrl_vma v;
	if (vma_at(ctx, addr, &v) || v.start > addr || v.end <= addr || !v.ino)
		return -ENOENT;
	*dev = v.dev;
	*ino = v.ino;
	return 0;
}

/* ctx->lock held (a watcher's attach): the mapping mrl_mr_reg read if
 * that is the MR being attached now (ctx->vma_known), else the kernel's */
int mrl_vma_file(struct mrl_ctx *ctx, uintptr_t addr, dev_t *dev, ino_t *ino, uint64_t *off,
		 uintptr_t *start, uintptr_t *end)
{
	struct mrl_vma v;
	const struct mrl_vma *k = ctx->vma_known;
	if (k && k->start <= addr && addr < k->end)
		v = *k;
	else if (vma_at(ctx, addr, &v))
		return -ENOENT;
	if (v.start > addr || v.end <= addr || !v.ino)
		return -ENOENT;
	*dev = v.dev;
	*ino = v.ino;
	*off = v.off + (addr - v.start);
	*start = v.start;
	*end = v.end;
	return 0;
}

static int classify(const struct mrl_vma *v, char *path, size_t pathsz)
{
	if (!v->ino)
		return MRL_KIND_ANON;
	if (!strncmp(v->name, "/memfd:", 7))
		return MRL_KIND_MEMFD;
	if (!strncmp(v->name, "/dev/zero", 9) || !strncmp(v->name, "/SYSV", 5) || !v->name[0])
		return MRL_KIND_SHMEM;
	snprintf(path, pathsz, "%s", v->name);
	char *del = strstr(path, " (deleted)");
	if (del)
		*del = 0;
	struct statfs sfs;
	if (statfs(path, &sfs) == 0 && sfs.f_type == TMPFS_MAGIC)
		return MRL_KIND_TMPFS;
	if (del && !strncmp(path, "/dev/shm/", 9))
		return MRL_KIND_TMPFS;
	return MRL_KIND_FILE;
}

static const char *vma_perm(const struct mrl_vma *v, char buf[5])
{
	buf[0] = v->readable ? 'r' : '-';
	buf[1] = v->writable ? 'w' : '-';
	buf[2] = v->executable ? 'x' : '-';
	buf[3] = v->shared ? 's' : 'p';
	buf[4] = 0;
	return buf;
}

struct split_probe {
	uint64_t at, pg;
	bool ours;
};

static int split_cb(struct mrl_itree_node *n, void *p)
{
	struct split_probe *sp = p;
	const struct mrl_mr *mr = (const struct mrl_mr *)n; /* va is the first member */
	uint64_t a0 = (uintptr_t)mr->addr & ~(sp->pg - 1),
		 a1 = ((uintptr_t)mr->addr + mr->len + sp->pg - 1) & ~(sp->pg - 1);
	if ((mr->uffd || mr->dontfork) && (a0 == sp->at || a1 == sp->at) &&
	    mr->vma_lo < sp->at && sp->at < mr->vma_hi)
		sp->ours = true;
	return sp->ours;
}

/* Two anonymous mappings meet at at. The kernel merges neighbours that
 * could be one, so a boundary means they differ: a different mmap (another
 * allocation, a guard, a neighbour registered elsewhere) or a split of one.
 * Only the splits this library makes itself prove it is one object: the
 * userfaultfd registration and MADV_DONTFORK of an MR cut at its page
 * boundaries, inside the mappings it lay in then. (A neighbour registered
 * whole has its boundary at the edge of its mappings, not inside.) */
static bool split_is_ours(struct mrl_ctx *ctx, uint64_t at)
{
	struct split_probe sp = {.at = at, .pg = (uint64_t)sysconf(_SC_PAGESIZE)};
	mrl_itree_overlap(&ctx->va_index, at > sp.pg ? at - sp.pg : 0, at + sp.pg, split_cb, &sp);
	return sp.ours || mrl_uffd_kept_split(ctx, at);
}

/* Boundaries between two anonymous mappings inside a range being
 * registered: one object only if the split is this library's own
 * (split_is_ours, which needs ctx->lock). */
struct bounds {
	uint64_t *at;
	size_t n, cap;
};

static int bounds_push(struct bounds *b, uint64_t at)
{
	if (b->n == b->cap) {
		size_t cap = b->cap ? 2 * b->cap : 8;
		uint64_t *n = realloc(b->at, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		b->at = n;
		b->cap = cap;
	}
	b->at[b->n++] = at;
	return 0;
}

/* Find what backs [addr, addr+len): one object, mapped without gaps, with
 * the protection the access needs. Anything else would hand a peer memory
 * the owner never offered (a neighbour mapping), or memory the device and
 * the library cannot touch (PROT_NONE). No lock held: /proc/self/maps
 * takes the kernel's mmap lock, which a thread unmapping or faulting may
 * hold while it waits for the monitor. Anonymous boundaries go to *anon,
 * for splits_ours under ctx->lock. */
static int find_backing(struct mrl_ctx *ctx, uint64_t addr, uint64_t len, unsigned access,
			struct mrl_vma *first, uint64_t *vma_hi, int *kind, char *path, size_t pathsz,
			struct bounds *anon)
{
	uint64_t cur = addr, end = addr + len;
	struct mrl_vma v = {0}, prev = {0};
	char pb[5], qb[5];
	int ret = 0;
	struct vma_walk w;
	walk_open(ctx, &w);
	while (cur < end) {
		ret = walk_at(&w, cur, &v);
		if (ret == -ENOENT || (!ret && (v.start > cur || v.end <= cur))) {
			ret = mrl_err(EFAULT, "mrl_mr_reg: range %#llx+%llu: address %#llx is not mapped%s",
				      (unsigned long long)addr, (unsigned long long)len,
				      (unsigned long long)cur, cur == addr ? "" : " (a hole after a mapping)");
			break;
		}
		if (ret) {
			ret = mrl_err(-ret, "mrl_mr_reg: cannot read the address space: %s", strerror(-ret));
			break;
		}
		ret = -1; /* the checks below */
		if (!v.readable)
			ret = mrl_err(EACCES,
				       "mrl_mr_reg: range %#llx+%llu: memory %#llx-%#llx is %s (%s): nothing can be served from it",
				       (unsigned long long)addr, (unsigned long long)len,
				       (unsigned long long)v.start, (unsigned long long)v.end,
				       v.writable || v.executable ? "not readable" : "PROT_NONE",
				       vma_perm(&v, pb));
		else if ((access & MRL_ACCESS_REMOTE_WRITE) && !v.writable)
			ret = mrl_err(EACCES,
				       "mrl_mr_reg: range %#llx+%llu: remote write asked on read-only memory %#llx-%#llx (%s)",
				       (unsigned long long)addr, (unsigned long long)len,
				       (unsigned long long)v.start, (unsigned long long)v.end,
				       vma_perm(&v, pb));
		if (ret != -1)
			break;
		ret = 0;
		if (cur == addr) {
			*first = v;
			*kind = classify(&v, path, pathsz);
		} else {
			const char *why = NULL;
			if (v.ino != first->ino || v.dev != first->dev)
				why = "a different object";
			else if (v.ino && v.off + (cur - v.start) != first->off + (cur - first->start))
				why = "the same file at a non-consecutive offset";
			else if (v.shared != first->shared)
				why = "a mapping with different sharing";
			else if (!v.ino && strcmp(v.name, prev.name))
				why = "a differently named anonymous mapping";
			else if (!v.ino && bounds_push(anon, cur))
				why = "another anonymous mapping (no memory to check)";
			if (why) {
				ret = mrl_err(EINVAL,
					       "mrl_mr_reg: range %#llx+%llu runs past the end of its mapping %#llx-%#llx (%s%s%s) into %s %#llx-%#llx (%s%s%s); register each mapping separately",
					       (unsigned long long)addr, (unsigned long long)len,
					       (unsigned long long)prev.start, (unsigned long long)prev.end,
					       vma_perm(&prev, pb), prev.name[0] ? " " : "", prev.name, why,
					       (unsigned long long)v.start, (unsigned long long)v.end,
					       vma_perm(&v, qb), v.name[0] ? " " : "", v.name);
				break;
			}
		}
		prev = v;
		cur = v.end;
	}
	walk_close(&w);
	*vma_hi = cur;
	return ret;
}

/* ctx->lock held: every anonymous boundary find_backing met is a split of
 * this library's own (else the range runs into another mapping) */
static int splits_ours(struct mrl_ctx *ctx, uint64_t addr, uint64_t len, const struct bounds *b)
{
	for (size_t i = 0; i < b->n; i++)
		if (!split_is_ours(ctx, b->at[i]))
			return mrl_err(EINVAL,
				       "mrl_mr_reg: range %#llx+%llu runs past the end of its mapping at %#llx into another anonymous mapping; register each mapping separately",
				       (unsigned long long)addr, (unsigned long long)len,
				       (unsigned long long)b->at[i]);
	return 0;
}

/* Does [addr, addr+len) still map the object find_backing found, mapped
 * without holes, with the access asked? 0 if so, else the cause
 * (unmapped, replaced). No lock held: a second look once the MR is indexed
 * and its watchers armed (a change between the first look and then was
 * seen by no watcher). One PROCMAP_QUERY per mapping on the context's fd
 * (one for a range in one mapping), the first look's objects compared,
 * not classified again; the library's own splits of a mapping
 * (userfaultfd's, MADV_DONTFORK's) move its edges: not compared. */
static int backing_cause(struct mrl_ctx *ctx, uint64_t addr, uint64_t len, unsigned access,
			 const struct mrl_vma *first)
{
	uint64_t cur = addr, end = addr + len;
	struct mrl_vma v;
	struct vma_walk w;
	int cause = 0;
	walk_open(ctx, &w);
	while (cur < end && !cause) {
		int r = walk_at(&w, cur, &v);
		if (r == -ENOENT || (!r && (v.start > cur || v.end <= cur)))
			cause = MRL_CAUSE_UNMAPPED;
		else if (r || !v.readable || ((access & MRL_ACCESS_REMOTE_WRITE) && !v.writable) ||
			 v.ino != first->ino || v.dev != first->dev || v.shared != first->shared ||
			 (v.ino && v.off + (cur - v.start) != first->off + (cur - first->start)))
			cause = MRL_CAUSE_REPLACED;
		cur = v.end;
	}
	walk_close(&w);
	return cause;
}

/* The one place an MR's state changes. Only a paused MR can be part of a
 * break (in_brk): leaving PAUSED leaves the break. */
void mrl_mr_set_state(struct mrl_mr *mr, int state)
{
	mr->state = (uint8_t)state;
	if (state != MRL_STATE_PAUSED)
		mr->in_brk = mr->changed = mr->data_only = 0;
	if (state == MRL_STATE_FENCED || state == MRL_STATE_DEREGISTERED)
		mr->redirected = 0;
}

/* Tell the peers holding mr (or only one) its state: its own, or the one
 * given (a peer cut off from an MR that lives on for the others). */
static void send_state(struct mrl_ctx *ctx, struct mrl_mr *mr, struct mrl_tpeer *only, int state,
		       int cause)
{
	/* (the holders hear of a fence at once, before the device applies it;
	 * the owner is told once it is applied. A fence seen before its change
	 * lands first drains the holders (brk.c, fence mode: PAUSE ahead of
	 * this notice, the device swaps to the key's tombstone only once each
	 * has acked): no operation a peer reports done reached the tombstone.
	 * One seen after (mrl_mr_changed_after) swaps at once: a peer cannot
	 * tell its operations that completed before this notice from ones the
	 * tombstone took; README, "What a peer can know".) */
	struct state_ent e;
	memset(&e, 0, sizeof(e));
	e.id = mr->handle;
	e.key = mr->key;
	e.valid_len = state == MRL_STATE_ACTIVE || state == MRL_STATE_PAUSED ? mr->valid_len : 0;
	e.gen = mr->gen;
	e.state = (uint8_t)state;
	e.cause = (uint8_t)cause;
	e.flags = state != MRL_STATE_ACTIVE && state != MRL_STATE_PAUSED && mr->fenced_after ? MRL_SF_AFTER : 0;
	for (struct mrl_holder *h = mr->holders; h; h = h->next)
		if (!only || h->peer == only)
			mrl_queue_state(ctx, h, &e, mr->len);
}

void mrl_send_state(struct mrl_ctx *ctx, struct mrl_mr *mr, struct mrl_tpeer *only)
{
	send_state(ctx, mr, only, mr->state, mr->cause);
}

/* A peer that did not answer a pause: fenced for it alone. */
void mrl_send_cut_off(struct mrl_ctx *ctx, struct mrl_mr *mr, struct mrl_tpeer *peer)
{
	send_state(ctx, mr, peer, MRL_STATE_FENCED, MRL_CAUSE_PEER_TIMEOUT);
}

/* ---- the device: calls are queued under ctx->lock and made by the
 * device worker with no lock held (devq.c); the results land in the
 * *_done callbacks below, under ctx->lock again ---- */

/* Let go of mr's registration. While the worker is in a call on it
 * (dev_busy) the handle is the worker's: it lets go when the call ends and
 * finds the MR fenced or deregistered. */
static void dev_dereg(struct mrl_ctx *ctx, struct mrl_mr *mr)
{
	if (mr->dev_mr && !mr->dev_busy && !mr->drain) { /* draining: mrl_mr_drained */
		mrl_dev_dereg(ctx, mr->dev_mr, mr);
		mr->dev_mr = NULL;
		mr->dev_len = 0;
	}
}

static void repin_done(struct mrl_ctx *ctx, struct mrl_mr *mr, int ret, void *arg)
{
	uint64_t now = mrl_now_ns();
	if (ret == -ECANCELED)
		return; /* paused, fenced or gone meanwhile: that path re-points it */
	if (ret) {
		mrl_mr_fence_locked(ctx, mr, MRL_CAUSE_MODIFIED, 0, mr->len, 0, now);
		return;
	}
	if (mr->state != MRL_STATE_ACTIVE)
		return; /* paused while the call ran: its break restores it */
	mr->gen++;
	mr->restores++;
	ctx->st.restores++;
	mrl_post_event(ctx, mr, MRL_EVENT_RESTORED, MRL_CAUSE_MODIFIED, 0, mr->valid_len, 0, 0, now);
	mr->cause = (uint8_t)(uintptr_t)arg;
	mrl_send_state(ctx, mr, NULL);
}

/* Point a pinning device at the pages the range has now, same key, with a
 * new generation (RESTORED): the old pages may no longer be the file's.
 * Returns whether it will (the re-pin's end then moves the MR to its new
 * generation, cause `cause', and tells every holder; it fences if the device
 * cannot). 0 for a device that does not pin. The after-path below and the
 * interposer's file madvise use it. */
int mrl_mr_repin_locked(struct mrl_ctx *ctx, struct mrl_mr *mr, int cause)
{
	if (!ctx->rops->pins(ctx->dev) || !mr->dev_mr || mr->state != MRL_STATE_ACTIVE ||
	    !mr->valid_len || mr->redirected) /* redirected: on scratch, nothing stale */
		return 0;
	mrl_dev_rereg(ctx, mr, MRL_REREG_SAME, repin_done, (void *)(uintptr_t)cause);
	return 1;
}

/* A change was seen only after it landed (inotify, userfaultfd, verify):
 * the bytes a peer wrote there may
 * be gone, and a peer may already have read what replaced them. Nothing can
 * be held back any more, so the change is announced: the owner gets CHANGED,
 * a pinning device is pointed at the pages the range has now (same key;
 * RESTORED), and the MR moves to a new generation that every holder is told
 * of (a state message). A peer that read between the landing and that
 * message sees the new generation arrive after its read and knows the
 * bytes may not be its own. Fenced instead: a range that no longer maps
 * what was registered (unmapped, moved, replaced), an MR under
 * MRL_POLICY_FENCE (any change fences it), and one whose device cannot be
 * re-pinned. A paused MR is left to its break: the restore moves it to a new
 * generation (mr->changed keeps it from treating the break as a plain data
 * write). Fencing past a new end of file is the caller's (it has the size). */
void mrl_mr_changed_after(struct mrl_ctx *ctx, struct mrl_mr *mr, int cause, uint64_t off,
			  uint64_t len, uint64_t seen)
{
	if (mr->state != MRL_STATE_ACTIVE && mr->state != MRL_STATE_PAUSED)
		return;
	mrl_post_event(ctx, mr, MRL_EVENT_CHANGED, (uint32_t)cause, off, len, 0, 0, seen);
	if (cause == MRL_CAUSE_UNMAPPED || cause == MRL_CAUSE_MOVED || cause == MRL_CAUSE_REPLACED ||
	    mr->policy == MRL_POLICY_FENCE) {
		mr->fenced_after = 1; /* (the peers' notice says: nothing was drained) */
		mrl_mr_fence_locked(ctx, mr, cause, 0, mr->len, 0, seen);
		return;
	}
	if (mr->state == MRL_STATE_PAUSED) {
		mr->changed = 1;
		return;
	}
	if (mrl_mr_repin_locked(ctx, mr, cause))
		return; /* its end: new generation, holders told (or fenced) */
	mr->gen++;
	mr->cause = (uint8_t)cause;
	mrl_send_state(ctx, mr, NULL);
}

void mrl_mr_quiesce_locked(struct mrl_ctx *ctx, struct mrl_brk *b, struct mrl_mr *mr)
{
	static _Atomic uint32_t seq;
	if (!mr->dev_mr)
		return;
	struct mrl_brk_ack *a = calloc(1, sizeof(*a));
	if (!a)
		return; /* not waited for: the unpin below finds ops in flight and fences */
	a->seq = ++seq;
	if (ctx->rops->quiesce(ctx->dev, mr->dev_mr, a->seq) <= 0) { /* none in flight, or no such thing */
		free(a);
		return;
	}
	/* a local ack (peer NULL): the break waits for it as for a peer's */
	a->next = b->acks;
	b->acks = a;
	b->acks_pending++;
}

static void unpin_done(struct mrl_ctx *ctx, struct mrl_mr *mr, int ret, void *arg)
{
	if (ret == -EBUSY) /* operations still in flight would reach the old pages */
		mrl_mr_fence_locked(ctx, mr, MRL_CAUSE_DEADLINE, 0, mr->len, (pid_t)(intptr_t)arg,
				    mrl_now_ns());
}

/* Cut the device off the pages (revoke and keep the handle, else
 * deregister: the restore registers anew). Queued: the break lets the
 * change land once it is done (brk.c). */
void mrl_mr_unpin_locked(struct mrl_ctx *ctx, struct mrl_mr *mr, pid_t pid, uint64_t seen)
{
	(void)seen;
	if (!mr->dev_mr && !mr->dev_busy)
		return;
	mrl_dev_revoke(ctx, mr, unpin_done, (void *)(intptr_t)pid);
}

/* The tail could not be cut off the registration: all of it goes. */
static void tail_done(struct mrl_ctx *ctx, struct mrl_mr *mr, int ret, void *arg)
{
	(void)arg;
	if (ret && ret != -ECANCELED)
		mrl_mr_fence_locked(ctx, mr, mr->cause, 0, mr->len, mr->cause_pid, mrl_now_ns());
}

/* A fence told: the owner's event, the counters (the holders' state is
 * send_state's). */
static void fence_told(struct mrl_ctx *ctx, struct mrl_mr *mr, int cause, uint64_t off,
		       uint64_t len, pid_t pid, uint64_t seen)
{
	mr->fences++;
	ctx->st.fences++;
	mrl_post_event(ctx, mr, MRL_EVENT_FENCED, (uint32_t)cause, off, len, pid, 0, seen);
}

/* A fence waiting for the device to apply it (a reference on mr). */
struct fence_note {
	struct mrl_mr *mr;
	int cause;
	pid_t pid;
	uint64_t off, len, seen;
};

/* The device has made every call queued before the fence (its dereg or
 * shrink among them): now it may be told. */
static void fence_applied(struct mrl_ctx *ctx, struct mrl_mr *unused, int ret, void *arg)
{
	(void)unused, (void)ret;
	struct fence_note *n = arg;
	struct mrl_mr *mr = n->mr;
	/* A tail's shrink may have been dropped (the MR moved on: a break's
	 * end, whose restore registers only what is served): the registration
	 * then still gives the device more than is served. Shrink it now (at
	 * the front of the queue) and look again after. */
	if ((mr->state == MRL_STATE_ACTIVE || mr->state == MRL_STATE_PAUSED) && mr->dev_mr &&
	    !mr->dev_busy && mr->dev_len > mr->valid_len) {
		mrl_dev_rereg(ctx, mr, MRL_REREG_SHRINK, tail_done, NULL);
		mrl_dev_after(ctx, fence_applied, n);
		return;
	}
	fence_told(ctx, mr, n->cause, n->off, n->len, n->pid, n->seen);
	mr->unapplied--;
	free(n);
	mrl_mr_put(ctx, mr);
}

/* Fence mr from off on (0: all of it). The decision is made here and the
 * holders are told at once; the owner is told (FENCED event, counters,
 * mrl_mr_query) only once the device applied it: before, a peer that has
 * not heard still reaches the old registration, and an owner told
 * "fenced" would let the change under it go on (a write past a new end of
 * file: SIGBUS in the owner). hold (off 0 only): the device keeps the
 * pages until mrl_mr_drained (the holders drain first: brk.c). */
static void fence(struct mrl_ctx *ctx, struct mrl_mr *mr, int cause, uint64_t off, uint64_t len,
		  pid_t pid, uint64_t seen, bool hold)
{
	if (mr->state == MRL_STATE_FENCED || mr->state == MRL_STATE_DEREGISTERED)
		return;
	if (off >= mr->valid_len)
		return; /* that part is fenced already */
	if (off && mr->redirected)
		return; /* on scratch of its whole length: mrl_mr_restore fences the tail */
	mr->cause = cause;
	mr->cause_off = off;
	mr->cause_len = len;
	mr->cause_pid = pid;
	mr->gen++;
	/* the device has something to let go of: a registration, or one the
	 * worker is making or changing now (it lets go of it, or shrinks it,
	 * when the call ends: mrl_dev_dereg/rereg at the front of the queue).
	 * A registration mrl_mr_reg is still making is nobody's yet: no peer
	 * has its key, and it is let go of when the call returns. */
	bool device = mr->dev_mr || mr->dev_busy;
	if (off == 0) {
		if (!hold || !mr->dev_mr || mr->dev_busy)
			mr->drain = NULL; /* (its break set it: the device cannot wait) */
		dev_dereg(ctx, mr);
		mrl_mr_set_state(mr, MRL_STATE_FENCED);
		mr->valid_len = 0;
	} else {
		/* Fence the tail only: shrink the registration, same key. */
		mr->valid_len = off;
		if (mr->dev_mr && !mr->dev_busy) /* busy: the worker shrinks it when its call ends */
			mrl_dev_rereg(ctx, mr, MRL_REREG_SHRINK, tail_done, NULL);
	}
	struct fence_note *n = device ? malloc(sizeof(*n)) : NULL;
	if (n) {
		*n = (struct fence_note){.mr = mr, .cause = cause, .pid = pid, .off = off,
					 .len = mr->len - off, .seen = seen};
		mr->refs++;
		mr->unapplied++;
		mrl_send_state(ctx, mr, NULL);
		if (mr->drain)
			mr->drain_note = n; /* mrl_mr_drained queues it */
		else
			mrl_dev_after(ctx, fence_applied, n);
		return;
	}
	/* nothing for the device to do (or no memory to wait with): told now */
	fence_told(ctx, mr, cause, off, mr->len - off, pid, seen);
	mrl_send_state(ctx, mr, NULL);
}

void mrl_mr_fence_locked(struct mrl_ctx *ctx, struct mrl_mr *mr, int cause, uint64_t off,
			 uint64_t len, pid_t pid, uint64_t seen)
{
	fence(ctx, mr, cause, off, len, pid, seen, false);
}

void mrl_mr_fence_held(struct mrl_ctx *ctx, struct mrl_mr *mr, int cause, pid_t pid, uint64_t seen)
{
	fence(ctx, mr, cause, 0, mr->len, pid, seen, true);
}

/* Every holder drained mr (or was cut off): its device lets go now (the
 * key goes to its tombstone), and the fence, if one waits, is told once
 * that is done. */
void mrl_mr_drained(struct mrl_ctx *ctx, struct mrl_mr *mr)
{
	if (!mr->drain)
		return;
	mr->drain = NULL;
	dev_dereg(ctx, mr);
	if (mr->drain_note) {
		mrl_dev_after(ctx, fence_applied, mr->drain_note);
		mr->drain_note = NULL;
	}
}

static void restore_done(struct mrl_ctx *ctx, struct mrl_mr *mr, int ret, void *arg)
{
	uint64_t now = mrl_now_ns();
	if (ret == -ECANCELED)
		return; /* fenced, deregistered or paused again meanwhile */
	if (ret) {
		mrl_mr_fence_locked(ctx, mr, MRL_CAUSE_DEADLINE, 0, mr->len, 0, now);
		return;
	}
	if (mr->state != MRL_STATE_PAUSED || mr->in_brk)
		return; /* fenced, or a new break took it while the call ran */
	/* a break its watcher found to be a plain data write by another process
	 * (shared memory: README, "Data written by others") keeps the generation */
	bool rekey = arg != NULL;
	bool keep_gen = mr->data_only && !mr->changed && !rekey;
	mrl_mr_set_state(mr, MRL_STATE_ACTIVE);
	if (!keep_gen)
		mr->gen++;
	mr->restores++;
	ctx->st.restores++;
	mrl_post_event(ctx, mr, MRL_EVENT_RESTORED, mr->cause, 0, mr->valid_len, 0, 0, now);
	mrl_send_state(ctx, mr, NULL);
}

/* Re-register a paused MR on the pages its backing has now. The MR stays
 * paused until the device has them (restore_done): no holder is told it is
 * live before it is. */
int mrl_mr_restore_locked(struct mrl_ctx *ctx, struct mrl_mr *mr, uint64_t seen)
{
	if (mr->state != MRL_STATE_PAUSED)
		return mr->state == MRL_STATE_ACTIVE ? 0 : -EKEYREVOKED;
	int sfd = mr->file ? mrl_file_stat_fd(mr->file) : -1;
	if (sfd >= 0) {
		struct stat st;
		if (fstat(sfd, &st) == 0) {
			mr->settled_seq = mrl_file_settled(mr->file, &st);
			uint64_t size = (uint64_t)st.st_size;
			uint64_t avail = size > mr->fnode.start ? size - mr->fnode.start : 0;
			if (avail < mr->valid_len) {
				mrl_mr_fence_locked(ctx, mr, MRL_CAUSE_TRUNCATED, avail,
						    mr->len - avail, mr->cause_pid, seen);
				if (mr->state == MRL_STATE_FENCED)
					return -EKEYREVOKED;
			}
		}
	}
	bool rekey = mr->rekey;
	if (mr->rekey) {
		if (mrl_key_new(ctx, &mr->key)) { /* no key material: cannot come back */
			mrl_mr_fence_locked(ctx, mr, MRL_CAUSE_DEADLINE, 0, mr->len, 0, seen);
			return -EKEYREVOKED;
		}
		mr->rekey = 0;
	}
	mrl_dev_rereg(ctx, mr, rekey ? MRL_REREG_REKEY : MRL_REREG_SAME, restore_done,
		      rekey ? (void *)1 : NULL);
	return 0;
}

/* The best any watcher claims for each change (never more than one sees);
 * returns the MRL_WATCH_* bits of the watchers that watch mr now. */
unsigned mrl_mr_coverage(struct mrl_ctx *ctx, struct mrl_mr *mr, uint8_t *cov)
{
	for (int i = 0; i < MRL_CHG_MAX; i++)
		cov[i] = MRL_SEEN_NEVER;
	if (!mr->file && mr->kind == MRL_KIND_ANON) {
		/* no file behind it: no file can change under it */
		static const int file_rows[] = {
			MRL_CHG_OTHER_OPEN_READ, MRL_CHG_OTHER_OPEN_WRITE, MRL_CHG_OTHER_TRUNCATE,
			MRL_CHG_OTHER_LAYOUT,    MRL_CHG_OTHER_WRITE,      MRL_CHG_OWNER_TRUNCATE,
			MRL_CHG_OWNER_LAYOUT,    MRL_CHG_OWNER_OPEN,       MRL_CHG_OWNER_WRITE,
			MRL_CHG_OTHER_OPEN_TRUNC, MRL_CHG_OTHER_RENAME,    MRL_CHG_OTHER_UNLINK,
		};
		for (size_t i = 0; i < ARRAY_SIZE(file_rows); i++)
			cov[file_rows[i]] = MRL_SEEN_NA;
	}
	unsigned bits = 0;
	for (const struct mrl_watcher_ops *const *w = ctx->wtab; w && *w; w++)
		if ((ctx->watchers & (*w)->bit) && (*w)->coverage)
			bits |= (*w)->coverage(ctx, mr, cov);
	return bits;
}

/* ---- public calls ---- */

static struct mrl_mr *mr_lookup(struct mrl_ctx *ctx, mrl_mr_t h, const char *fn, int *ret)
{
	struct mrl_mr *mr = mrl_ht_get(&ctx->ht, h);
	if (!mr)
		*ret = mrl_err(ESTALE, "%s: MR handle %#llx is not registered (stale or never valid)",
			       fn, (unsigned long long)h);
	return mr;
}

/* ---- fork ----
 * After fork both processes share the registered pages copy-on-write; the
 * first write by the parent would move it to a new page while a pinning
 * device keeps the old one, now the child's. ibv_dontfork_range's answer is
 * MADV_DONTFORK (the child gets no mapping there at all), which kills a
 * child touching anything else on those pages (a malloc'd buffer's heap
 * neighbours). So mark pages only when all of these hold:
 *  - the device pins (rops->pins): tcp, sockets, shm and the mock register
 *    nothing physical, so copy-on-write cannot strand them;
 *  - the mapping is private: shared pages are never copied at fork;
 *  - the kernel does not already copy pinned private pages into the child
 *    at fork (Linux 5.9+ for FOLL_PIN, probed once: mrl_fork_copies_pinned).
 * Then whole pages are marked, rounding out like ibv_dontfork_range: the
 * device pins whole pages anyway, and a parent whose DMA silently goes to
 * the child's page is worse than a child that cannot read the neighbours. */
/* No lock held: should the pages be marked (see above)? (The probe, a
 * fork, runs once per process, at the first pinning registration.) */
static bool fork_wanted(struct mrl_ctx *ctx, const struct mrl_vma *v)
{
	return ctx->rops->pins(ctx->dev) && !v->shared && !mrl_fork_copies_pinned();
}

/* Marking and unmarking are made with no library lock held (madvise takes
 * the kernel's mmap lock), one at a time in the process (fork_mx, taken
 * before ctx->lock, never under it): an unmark decided before a new MR
 * marked the same pages must not land after its mark. */
static pthread_mutex_t fork_mx = PTHREAD_MUTEX_INITIALIZER;

static void page_span(const void *addr, uint64_t len, uintptr_t *a0, uintptr_t *a1)
{
	uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
	*a0 = (uintptr_t)addr & ~(pg - 1);
	*a1 = ((uintptr_t)addr + len + pg - 1) & ~(pg - 1);
}

/* No lock held: mark the pages; whether it did. */
static bool fork_protect(const uint8_t *addr, uint64_t len)
{
	uintptr_t a0, a1;
	page_span(addr, len, &a0, &a1);
	mrl_lock(&fork_mx);
	/* raw call: the interposer has nothing to do with it */
	int r = (int)syscall(SYS_madvise, a0, a1 - a0, MADV_DONTFORK);
	int err = errno;
	mrl_unlock(&fork_mx);
	if (r) {
		mrl_log("MADV_DONTFORK %p+%llu: %s", (const void *)addr, (unsigned long long)len,
			strerror(err));
		return false;
	}
	if (a0 != (uintptr_t)addr || a1 != (uintptr_t)addr + len)
		mrl_log("MADV_DONTFORK %p+%llu rounded to whole pages %#lx-%#lx: a forked child has "
			"no memory there", (const void *)addr, (unsigned long long)len,
			(unsigned long)a0, (unsigned long)a1);
	return true;
}

static int dontfork_cb(struct mrl_itree_node *n, void *p)
{
	(void)p;
	return ((struct mrl_mr *)n)->dontfork; /* va is the first member */
}

/* No lock held: mr's pages, marked, left the VA index (mr_remove gave
 * [a0, a1)): fork copies them again unless another marked MR covers them
 * by the time the unmark is made. */
static void fork_unprotect(struct mrl_ctx *ctx, uintptr_t a0, uintptr_t a1)
{
	if (a0 == a1)
		return;
	mrl_lock(&fork_mx);
	mrl_lock(&ctx->lock);
	bool still = mrl_itree_overlap(&ctx->va_index, a0, a1, dontfork_cb, NULL);
	mrl_unlock(&ctx->lock);
	if (!still)
		syscall(SYS_madvise, a0, a1 - a0, MADV_DOFORK);
	mrl_unlock(&fork_mx);
}

static void mr_remove(struct mrl_ctx *ctx, struct mrl_mr *mr, bool here, uintptr_t undo[2]);

MRL_EXPORT int mrl_mr_reg(mrl_ctx *ctx, void *addr, size_t len, unsigned access,
			  const struct mrl_reg_opts *opts, mrl_mr_t *out)
{
	struct mrl_vma v = {0};
	char path[512] = "";
	int kind = 0, ret;
	uint64_t vma_hi = 0;
	uintptr_t undo[2] = {0, 0};

	if (!ctx || !addr || !out)
		return mrl_err(EINVAL, "mrl_mr_reg: NULL %s", !ctx ? "context" : !addr ? "address" : "out");
	MRL_CHILD_CHECK(ctx, "mrl_mr_reg");
	*out = 0;
	if (!len)
		return mrl_err(EINVAL, "mrl_mr_reg: zero length");
	if ((uintptr_t)addr + len < (uintptr_t)addr)
		return mrl_err(EOVERFLOW, "mrl_mr_reg: %p + %zu overflows", addr, len);
	if (access & ~(MRL_ACCESS_REMOTE_READ | MRL_ACCESS_REMOTE_WRITE))
		return mrl_err(EINVAL, "mrl_mr_reg: unknown access bits %#x", access);
	if (opts && opts->size < offsetof(struct mrl_reg_opts, context) + sizeof(void *))
		return mrl_err(EINVAL, "mrl_mr_reg: opts->size %zu too small", opts->size);
	if (opts && opts->policy > MRL_POLICY_REDIRECT)
		return mrl_err(EINVAL, "mrl_mr_reg: unknown policy %u", opts->policy);
	int deny_errno = 0;
	if (opts && opts->policy == MRL_POLICY_DENY) {
		deny_errno = opts->size >= offsetof(struct mrl_reg_opts, deny_errno) + sizeof(int) &&
				     opts->deny_errno ? opts->deny_errno : EBUSY;
		/* the errnos the kernel lets a fanotify answer carry */
		switch (deny_errno) {
		case EBUSY: case ETXTBSY: case EPERM: case EAGAIN: case EIO: case ENOSPC: case EDQUOT:
			break;
		default:
			return mrl_err(EINVAL, "mrl_mr_reg: deny_errno %d: the kernel passes only EBUSY, ETXTBSY, EPERM, EAGAIN, EIO, ENOSPC, EDQUOT",
				       deny_errno);
		}
	}

	/* redirect: the device must be able to take scratch under the same key
	 * (a registrar handed to mrl_ctx_create_dev, the hook's, may have no
	 * such entry: nothing else ever calls it for an MR refused here) */
	if (opts && opts->policy == MRL_POLICY_REDIRECT &&
	    (!ctx->rops->redirect || ctx->rops->redirect(ctx->dev, NULL)))
		return mrl_err(EOPNOTSUPP, "mrl_mr_reg: policy redirect: the %s device cannot put "
					   "scratch under an MR's key (io_uring can; libfabric where keys "
					   "are the library's and addresses offsets)", ctx->rops->name);

	mrl_guard_settle(ctx); /* a file just let go is nobody's opener any more */
	uint64_t uffd_look = mrl_uffd_seq(ctx); /* before the first look */
	struct bounds anon = {0};
	ret = find_backing(ctx, (uintptr_t)addr, len, access, &v, &vma_hi, &kind, path, sizeof(path),
			   &anon);
	bool dontfork = !ret && fork_wanted(ctx, &v);
	mrl_lock(&ctx->lock);
	if (!ret)
		ret = splits_ours(ctx, (uintptr_t)addr, len, &anon);
	free(anon.at);
	if (ret)
		goto out;
	struct mrl_mr *mr = calloc(1, sizeof(*mr));
	if (!mr) {
		ret = -ENOMEM;
		goto out;
	}
	mr->addr = addr;
	mr->len = mr->valid_len = len;
	mr->access = access;
	mr->kind = kind;
	mr->vma_lo = v.start;
	mr->vma_hi = vma_hi;
	mr->policy = opts ? opts->policy : MRL_POLICY_RESTORE;
	mr->deadline_ms = opts && opts->deadline_ms ? opts->deadline_ms : ctx->opts.deadline_ms;
	mr->context = opts ? opts->context : NULL;
	mr->deny_errno = (uint8_t)deny_errno;
	mrl_mr_set_state(mr, MRL_STATE_ACTIVE);
	mr->gen = 1;
	mr->refs = 1;
	if ((ret = mrl_key_new(ctx, &mr->key))) {
		free(mr);
		goto out;
	}
	if (kind == MRL_KIND_FILE || kind == MRL_KIND_TMPFS) {
		mr->fnode.start = v.off + ((uintptr_t)addr - v.start);
		ret = mrl_file_get(ctx, v.dev, v.ino, path, kind, &mr->file);
		if (ret) {
			free(mr);
			goto out;
		}
		if (mr->file->fd >= 0) {
			struct stat st;
			if (fstat(mr->file->fd, &st) == 0 &&
			    (uint64_t)st.st_size < mr->fnode.start + len) {
				ret = mrl_err(ENXIO, "mrl_mr_reg: range ends at file offset %llu, past end of file (%lld)",
					      (unsigned long long)(mr->fnode.start + len),
					      (long long)st.st_size);
				mrl_file_put(ctx, mr->file);
				free(mr);
				goto out;
			}
		}
	}
	const char *seal_why = NULL;
	if (mr->policy == MRL_POLICY_DENY && !(mr->file && mr->file->fan) &&
	    !(kind == MRL_KIND_MEMFD && mrl_memfd_seal(ctx, v.dev, v.ino, &seal_why) == 0)) {
		/* a refusal needs a watcher that holds the change back and can say no,
		 * or seals on a memfd (memfd.c) */
		ret = mrl_err(EOPNOTSUPP, "mrl_mr_reg: policy deny needs fanotify pre-content events on the backing file, or seals on a memfd: %s",
			      seal_why ? seal_why : !mr->file ? "the memory is not a file"
			      : ctx->fan_fd < 0 ? (ctx->opts.flags & MRL_CTX_NO_FANOTIFY ? "disabled by MRL_CTX_NO_FANOTIFY"
						   : ctx->fan_errno ? strerror(ctx->fan_errno) : "watchers off")
			      : strerror(mr->file->fan_errno ? mr->file->fan_errno : EOPNOTSUPP));
		if (mr->file)
			mrl_file_put(ctx, mr->file);
		free(mr);
		goto out;
	}
	mr->reg_ns = mrl_now_ns();
	ret = mrl_ht_add(&ctx->ht, mr, &mr->handle);
	if (ret) {
		if (mr->file)
			mrl_file_put(ctx, mr->file);
		free(mr);
		goto out;
	}
	/* in place before the device call, so every watcher sees a change to
	 * the range while it runs; nobody else finds it by its handle yet */
	mr->registering = 1;
	mr->va.start = (uintptr_t)addr;
	mr->va.end = (uintptr_t)addr + len;
	mr->fnode.end = mr->fnode.start + len;
	/* the indexes allocate as they grow */
	ret = mrl_itree_insert(&ctx->va_index, &mr->va);
	if (!ret && mr->file && (ret = mrl_itree_insert(&mr->file->mrs, &mr->fnode)))
		mrl_itree_remove(&ctx->va_index, &mr->va);
	if (ret) {
		mrl_ht_del(&ctx->ht, mr->handle);
		if (mr->file)
			mrl_file_put(ctx, mr->file);
		free(mr);
		ret = mrl_err(ENOMEM, "mrl_mr_reg: out of memory for the MR index");
		goto out;
	}
	ctx->vma_known = &v; /* what the watchers ask of the mapping, known already */
	MRL_WATCHERS_EACH(ctx, mr_attach, mr);
	ctx->vma_known = NULL;
	/* every unmap or move of the range since before the first look would
	 * have reached the userfaultfd and dropped its kept registration: no
	 * second look needed (uffd.c) */
	bool watched = mr->uffd && mr->uffd_since && mr->uffd_since <= uffd_look;
	mr->dontfork = dontfork; /* before the split exists: splits_ours may meet it */
	if (mr->file)
		MRL_WATCHERS_EACH(ctx, file_arm, mr->file);
	/* the device call (pinning a large range takes long), MADV_DONTFORK
	 * and the second look at the address space with no lock held */
	uint64_t key = mr->key;
	void *dh = NULL;
	mrl_unlock(&ctx->lock);
	if (dontfork)
		dontfork = fork_protect(mr->addr, mr->len);
	int changed = watched ? 0 : backing_cause(ctx, (uintptr_t)addr, len, access, &v);
	ret = ctx->rops->reg(ctx->dev, addr, len, access, &key, &dh);
	mrl_lock(&ctx->lock);
	mr->registering = 0;
	mr->dontfork = dontfork;
	if (ret) {
		mr_remove(ctx, mr, false, undo);
		goto out;
	}
	mr->dev_mr = dh;
	mr->dev_len = len;
	mr->key = key;
	*out = mr->handle;
	/* changed between the first look and the MR's entry in the index,
	 * where no watcher could see it: as if seen after it landed */
	if (changed)
		mrl_mr_changed_after(ctx, mr, changed, 0, len, mrl_now_ns());
	/* What changed while the call ran was resolved on an MR with nothing
	 * registered; the registration may hold what was there before. */
	if (mr->state == MRL_STATE_FENCED) {
		dev_dereg(ctx, mr);
	} else if (mr->state == MRL_STATE_PAUSED && !mr->in_brk) {
		mrl_mr_restore_locked(ctx, mr, mrl_now_ns()); /* its break ended meanwhile */
	} else if (mr->state == MRL_STATE_ACTIVE && (mr->gen != 1 || mr->valid_len < len)) {
		/* changed after the fact, or its tail fenced: onto what is there now */
		mrl_dev_rereg(ctx, mr, MRL_REREG_SAME, tail_done, NULL);
	}
	/* (a break still under way has it paused: its unpin and restore do it) */
out:
	mrl_unlock(&ctx->lock);
	fork_unprotect(ctx, undo[0], undo[1]);
	mrl_flush_outbox(ctx);
	return ret;
}

/* ctx->lock held: mr leaves the table, the indexes and its watchers; the
 * device lets go (queued: mrl_dev_sync waits for it). here: the caller
 * waits for the device right after (mrl_mr_dereg): an active MR's
 * registration is let go by this thread when the worker has nothing to do,
 * once mr is out of every table (the lock drops around the call). */
static void mr_remove(struct mrl_ctx *ctx, struct mrl_mr *mr, bool here, uintptr_t undo[2])
{
	bool in_brk = mr->in_brk;
	void *dh = NULL;
	if (here && mr->state == MRL_STATE_ACTIVE && !in_brk && mr->dev_mr && !mr->dev_busy &&
	    !mr->drain) { /* (draining: mrl_mr_drained lets it go) */
		dh = mr->dev_mr;
		mr->dev_mr = NULL;
		mr->dev_len = 0;
	}
	dev_dereg(ctx, mr);
	mrl_mr_set_state(mr, MRL_STATE_DEREGISTERED);
	mr->cause = MRL_CAUSE_DEREGISTERED;
	mr->gen++;
	mrl_send_state(ctx, mr, NULL);
	mrl_ht_del(&ctx->ht, mr->handle);
	mrl_itree_remove(&ctx->va_index, &mr->va);
	MRL_WATCHERS_EACH(ctx, mr_detach, mr);
	undo[0] = undo[1] = 0;
	if (mr->dontfork) /* unmarked by the caller, unlocked (fork_unprotect) */
		page_span(mr->addr, mr->len, &undo[0], &undo[1]);
	mr->dontfork = 0;
	if (mr->file) {
		mrl_itree_remove(&mr->file->mrs, &mr->fnode);
		if (in_brk) /* the break stops waiting for it */
			mrl_brk_owner_answered(ctx, mr);
		mrl_file_put(ctx, mr->file);
		mr->file = NULL;
	}
	if (dh)
		mrl_dev_dereg_here(ctx, dh, mr);
	mrl_mr_put(ctx, mr);
}

MRL_EXPORT int mrl_mr_dereg(mrl_ctx *ctx, mrl_mr_t h)
{
	int ret = 0;
	uintptr_t undo[2] = {0, 0};
	if (!ctx)
		return mrl_err(EINVAL, "mrl_mr_dereg: NULL context");
	MRL_CHILD_CHECK(ctx, "mrl_mr_dereg");
	mrl_lock(&ctx->lock);
	struct mrl_mr *mr = mr_lookup(ctx, h, "mrl_mr_dereg", &ret);
	if (mr) {
		/* peers holding it drain it first: their notice follows the
		 * PAUSE, the device lets go once they acked (brk.c) */
		bool landed = false;
		struct mrl_brk *b = mrl_brk_fence_one(ctx, mr, MRL_CAUSE_DEREGISTERED, &landed);
		mr_remove(ctx, mr, true, undo);
		if (b)
			mrl_brk_wait_landed(ctx, &landed);
		/* the memory is the application's again on return: the device
		 * must be done with it */
		mrl_dev_sync(ctx);
	}
	mrl_unlock(&ctx->lock);
	fork_unprotect(ctx, undo[0], undo[1]); /* once the device let go */
	mrl_flush_outbox(ctx);
	return ret;
}

static int owner_answer(mrl_ctx *ctx, mrl_mr_t h, int answer, const char *fn)
{
	int ret = 0;
	if (!ctx)
		return mrl_err(EINVAL, "%s: NULL context", fn);
	MRL_CHILD_CHECK(ctx, fn);
	mrl_lock(&ctx->lock);
	struct mrl_mr *mr = mr_lookup(ctx, h, fn, &ret);
	if (!mr)
		goto out;
	if (mr->state == MRL_STATE_FENCED) {
		ret = mrl_err(EKEYREVOKED, "%s: MR is fenced (%s)", fn, mrl_cause_str(mr->cause));
		goto out;
	}
	if (!mr->in_brk && (answer == ANSWER_FENCE || (answer == ANSWER_RELEASE && !mr->redirected))) {
		/* the holders drain it before the device lets go (brk.c) */
		int cause = answer == ANSWER_FENCE ? MRL_CAUSE_OWNER : MRL_CAUSE_RELEASED;
		bool landed = false;
		if (mrl_brk_fence_one(ctx, mr, cause, &landed))
			mrl_brk_wait_landed(ctx, &landed);
		else
			mrl_mr_fence_locked(ctx, mr, cause, 0, mr->len, 0, mrl_now_ns());
		goto out;
	}
	if (!mr->in_brk && mr->redirected && answer == ANSWER_RESTORE) {
		ret = mrl_brk_unredirect(ctx, mr); /* off its scratch, back onto the file */
		goto out;
	}
	if (!mr->in_brk) {
		if (answer == ANSWER_RESTORE)
			ret = 0; /* nothing to resolve: already live */
		else
			mrl_mr_fence_locked(ctx, mr, MRL_CAUSE_RELEASED, 0, mr->len, 0, mrl_now_ns());
		goto out;
	}
	mr->owner_answer = answer;
	mrl_brk_owner_answered(ctx, mr);
out:
	/* fenced or released: the device lets go before the owner goes on */
	mrl_dev_sync(ctx);
	mrl_unlock(&ctx->lock);
	mrl_flush_outbox(ctx);
	mrl_wake_monitor(ctx);
	return ret;
}

MRL_EXPORT int mrl_mr_restore(mrl_ctx *ctx, mrl_mr_t h)
{
	return owner_answer(ctx, h, ANSWER_RESTORE, "mrl_mr_restore");
}

MRL_EXPORT int mrl_mr_release(mrl_ctx *ctx, mrl_mr_t h)
{
	return owner_answer(ctx, h, ANSWER_RELEASE, "mrl_mr_release");
}

MRL_EXPORT int mrl_mr_fence(mrl_ctx *ctx, mrl_mr_t h)
{
	return owner_answer(ctx, h, ANSWER_FENCE, "mrl_mr_fence");
}

MRL_EXPORT int mrl_mr_query(mrl_ctx *ctx, mrl_mr_t h, struct mrl_mr_info *info)
{
	int ret = 0;
	if (!ctx || !info)
		return mrl_err(EINVAL, "mrl_mr_query: NULL %s", !ctx ? "context" : "info");
	MRL_CHILD_CHECK(ctx, "mrl_mr_query");
	if (info->size < sizeof(*info))
		return mrl_err(EINVAL, "mrl_mr_query: info->size %zu too small (set it to sizeof)",
			       info->size);
	mrl_lock(&ctx->lock);
	struct mrl_mr *mr = mr_lookup(ctx, h, "mrl_mr_query", &ret);
	/* a fence is reported once the device applied it */
	while (mr && mr->unapplied) {
		mr->refs++;
		mrl_dev_wait_applied(ctx, mr);
		mrl_mr_put(ctx, mr);
		mr = mr_lookup(ctx, h, "mrl_mr_query", &ret);
	}
	if (mr) {
		memset(info, 0, sizeof(*info));
		info->size = sizeof(*info);
		info->state = mr->state;
		info->generation = mr->gen;
		info->policy = mr->policy;
		info->kind = mr->kind;
		info->cause = mr->cause;
		info->cause_pid = mr->cause_pid;
		info->cause_offset = mr->cause_off;
		info->cause_length = mr->cause_len;
		info->addr = mr->addr;
		info->length = mr->len;
		info->valid_length = mr->valid_len;
		info->key = mr->key;
		info->file_offset = mr->fnode.start;
		info->dev = mr->file ? mr->file->dev : 0;
		info->ino = mr->file ? mr->file->ino : 0;
		info->lease_held = mr->file && mr->file->lease == LEASE_HELD;
		info->breaks = mr->breaks;
		info->restores = mr->restores;
		info->fences = mr->fences;
		info->denials = mr->denials;
		info->deny_errno = mr->deny_errno;
		info->redirected = mr->redirected;
		info->watchers = mrl_mr_coverage(ctx, mr, info->coverage);
	}
	mrl_unlock(&ctx->lock);
	return ret;
}

/* ---- for the verify watcher (verify.c) ---- */

/* Does [b->addr, +len) still map what was registered (b: the MR as the
 * caller saw it under ctx->lock)? 0 if so, else the cause: unmapped, or
 * replaced by another object. No lock needed: it reads /proc/self/maps
 * through *maps_fd, the caller's own (opened on first use, -1). */
int mrl_backing_changed(int *maps_fd, const struct mrl_backing *b)
{
	uint64_t cur = b->addr, end = cur + b->len;
	while (cur < end) {
		struct mrl_vma v;
		if (vma_at_fd(maps_fd, cur, &v) || v.start > cur || v.end <= cur)
			return MRL_CAUSE_UNMAPPED;
		char path[8];
		int kind = classify(&v, path, sizeof(path));
		bool file = b->kind == MRL_KIND_FILE || b->kind == MRL_KIND_TMPFS;
		if (kind != b->kind && !(file && (kind == MRL_KIND_FILE || kind == MRL_KIND_TMPFS)))
			return MRL_CAUSE_REPLACED;
		if (b->file && (v.dev != b->dev || v.ino != b->ino ||
				v.off + (cur - v.start) != b->off + (cur - b->addr)))
			return MRL_CAUSE_REPLACED;
		cur = v.end;
	}
	return 0;
}

