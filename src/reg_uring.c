/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* io_uring registrar: an MR is one slot of the application's ring's fixed
 * buffer table, pinned by the kernel for the long term (FOLL_LONGTERM).
 * The slot number is the MR's key; restore refills the same slot in place.
 * Operations are counted between mrl_uring_get and mrl_uring_put so a break
 * waits for the in-flight ones and holds new ones (the local quiesce).
 * The slot table and the counts are under the registrar's own u->lock (a
 * leaf, taken under ctx->lock by get/put/quiesce); the buffer updates
 * (system calls that pin and unpin) are made with no lock held, by the
 * device worker (devq.c) or mrl_mr_reg. Users waiting for a paused MR sleep
 * on ctx->dev_cv with ctx->lock. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <liburing.h>

#include "mrl_int.h"

struct ubuf {
	unsigned slot;
	void *addr;
	size_t len;
	unsigned inflight;  /* got, not yet put */
	uint32_t ack_seq;   /* a break waits for inflight to reach 0; 0 = none */
	bool revoked;       /* slot emptied while a change lands */
	void *scratch;      /* redirected: the slot holds this (len bytes), not addr */
};

struct udev {
	struct mrl_ctx *ctx;
	pthread_mutex_t lock;
	struct io_uring *ring;
	unsigned nr;
	struct ubuf **slots;  /* nr entries, NULL = free (a slot being filled is taken) */
	bool attaching;       /* mrl_uring_attach/detach is in its system call */
};

static int ur_open(struct mrl_ctx *ctx, void **dev)
{
	struct udev *u = calloc(1, sizeof(*u));
	if (!u)
		return -ENOMEM;
	u->ctx = ctx;
	pthread_mutex_init(&u->lock, NULL);
	*dev = u;
	return 0;
}

static const char *fs_name(long type)
{
	switch ((unsigned long)type) {
	case 0xEF53: return "ext4";
	case 0x58465342: return "xfs";
	case 0x9123683E: return "btrfs";
	case 0x6969: return "nfs";
	case 0x2FC12FC1: return "zfs";
	case 0x65735546: return "fuse";
	default: return NULL;
	}
}

/* The kernel refuses long-term pins of some memory with EFAULT: say which. */
static int pin_refused(void *addr, size_t len, int err)
{
	FILE *f = fopen("/proc/self/maps", "re");
	char line[1024], path[512] = "", link[64] = "";
	bool shared = false;
	while (f && fgets(line, sizeof(line), f)) {
		unsigned long s, e;
		char perm[8];
		int pos = 0;
		if (sscanf(line, "%lx-%lx %7s %*x %*x:%*x %*u %n", &s, &e, perm, &pos) < 3)
			continue;
		if ((uintptr_t)addr < s || (uintptr_t)addr >= e)
			continue;
		shared = perm[3] == 's';
		/* the mapping's own file, even once unlinked */
		snprintf(link, sizeof(link), "/proc/self/map_files/%lx-%lx", s, e);
		if (pos)
			snprintf(path, sizeof(path), "%s", line + pos);
		path[strcspn(path, "\n")] = 0;
		break;
	}
	if (f)
		fclose(f);
	struct statfs sfs;
	if (path[0] == '/' && shared && (statfs(link, &sfs) == 0 || statfs(path, &sfs) == 0)) {
		const char *fs = fs_name(sfs.f_type);
		char fsbuf[32];
		if (!fs) {
			snprintf(fsbuf, sizeof(fsbuf), "f_type %#lx", (unsigned long)sfs.f_type);
			fs = fsbuf;
		}
		return mrl_err(err,
			       "io_uring: the kernel refuses a long-term pin of a MAP_SHARED file "
			       "mapping on %s (%s): fixed buffers can be anonymous, shmem/memfd, "
			       "tmpfs or hugetlbfs memory",
			       fs, path);
	}
	return mrl_err(err, "io_uring: cannot pin %p+%zu%s%s: %s", addr, len,
		       path[0] ? " of " : "", path, strerror(err));
}

/* no lock held: the system call pins (or unpins) the pages */
static int slot_set(struct io_uring *ring, unsigned slot, void *addr, size_t len)
{
	struct iovec iov = {.iov_base = addr, .iov_len = addr ? len : 0};
	__u64 tag = 0;
	int ret = io_uring_register_buffers_update_tag(ring, slot, &iov, &tag, 1);
	if (ret == 1)
		return 0;
	if (ret >= 0)
		return mrl_err(EIO, "io_uring: buffer update of slot %u did nothing", slot);
	if (!addr)
		return mrl_err(ret, "io_uring: clearing slot %u: %s", slot, strerror(-ret));
	if (ret == -EFAULT || ret == -EOPNOTSUPP)
		return pin_refused(addr, len, -ret);
	if (ret == -ENOMEM)
		return mrl_err(ret, "io_uring: cannot pin %zu bytes: over RLIMIT_MEMLOCK?", len);
	return mrl_err(ret, "io_uring: pinning %p+%zu into slot %u: %s", addr, len, slot,
		       strerror(-ret));
}

static int ur_reg(void *dev, void *addr, size_t len, unsigned access, uint64_t *key, void **h)
{
	struct udev *u = dev;
	(void)access;
	struct ubuf *b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	mrl_lock(&u->lock);
	if (!u->ring) {
		mrl_unlock(&u->lock);
		free(b);
		return mrl_err(ENXIO, "io_uring registrar: no ring attached (mrl_uring_attach first)");
	}
	/* the slot asked for when free (a re-registration keeps its key), else the lowest free */
	unsigned slot = *key < u->nr && !u->slots[*key] ? (unsigned)*key : u->nr;
	for (unsigned i = 0; i < u->nr && slot == u->nr; i++)
		if (!u->slots[i])
			slot = i;
	if (slot == u->nr) {
		mrl_unlock(&u->lock);
		free(b);
		return mrl_err(ENOSPC, "io_uring: all %u buffer slots are in use", u->nr);
	}
	b->slot = slot;
	b->addr = addr;
	b->len = len;
	b->revoked = true; /* nothing in it yet */
	u->slots[slot] = b; /* taken while it is filled */
	struct io_uring *ring = u->ring;
	mrl_unlock(&u->lock);
	int ret = slot_set(ring, slot, addr, len);
	mrl_lock(&u->lock);
	if (ret)
		u->slots[slot] = NULL;
	else
		b->revoked = false;
	mrl_unlock(&u->lock);
	if (ret) {
		free(b);
		return ret;
	}
	*key = slot;
	*h = b;
	return 0;
}

static int ur_dereg(void *dev, void *h)
{
	struct udev *u = dev;
	struct ubuf *b = h;
	int ret = 0;
	mrl_lock(&u->lock);
	if (!b || b->slot >= u->nr || u->slots[b->slot] != b) {
		mrl_unlock(&u->lock);
		return mrl_err(EINVAL, "io_uring: dereg of a buffer that is not registered");
	}
	bool filled = !b->revoked;
	struct io_uring *ring = u->ring;
	mrl_unlock(&u->lock);
	if (filled) /* the slot stays taken until it is empty */
		ret = slot_set(ring, b->slot, NULL, 0);
	mrl_lock(&u->lock);
	u->slots[b->slot] = NULL;
	mrl_unlock(&u->lock);
	if (b->scratch) /* (pages a request still holds outlive the mapping) */
		munmap(b->scratch, b->len);
	free(b);
	return ret;
}

/* ctx->lock held (the break engine): counts only, no system call */
static int ur_quiesce(void *dev, void *h, uint32_t seq)
{
	struct udev *u = dev;
	struct ubuf *b = h;
	mrl_lock(&u->lock);
	int ret = b->inflight ? 1 : 0;
	if (ret)
		b->ack_seq = seq;
	mrl_unlock(&u->lock);
	return ret;
}

/* The MR is paused: mrl_uring_get hands out no new operation meanwhile. */
static int ur_revoke(void *dev, void *h)
{
	struct udev *u = dev;
	struct ubuf *b = h;
	mrl_lock(&u->lock);
	b->ack_seq = 0;
	/* emptying the slot with operations in flight would not stop them:
	 * they hold the old pages until they complete */
	int ret = b->revoked ? 0 : b->inflight ? -EBUSY : 1;
	struct io_uring *ring = u->ring;
	mrl_unlock(&u->lock);
	if (ret <= 0)
		return ret;
	ret = slot_set(ring, b->slot, NULL, 0);
	if (!ret) {
		mrl_lock(&u->lock);
		b->revoked = true;
		mrl_unlock(&u->lock);
	}
	return ret;
}

static int ur_restore(void *dev, void *h, void *addr, size_t len)
{
	struct udev *u = dev;
	struct ubuf *b = h;
	mrl_lock(&u->lock);
	struct io_uring *ring = u->ring;
	mrl_unlock(&u->lock);
	/* one update replaces the slot: never a moment with no buffer, and the
	 * old pages are unpinned by the kernel once no request holds them */
	int ret = slot_set(ring, b->slot, addr, len);
	if (!ret) {
		mrl_lock(&u->lock);
		void *scratch = b->scratch;
		size_t slen = b->len;
		b->addr = addr;
		b->len = len;
		b->revoked = false;
		b->ack_seq = 0;
		b->scratch = NULL;
		mrl_unlock(&u->lock);
		if (scratch)
			munmap(scratch, slen);
	}
	return ret;
}

/* MRL_POLICY_REDIRECT: one update puts fresh zeroed pages of the buffer's
 * length in the slot (the MR is paused and quiesced: no request was handed
 * the old address and not yet submitted). Requests then name the scratch
 * address (mrl_uring_get_buf): the kernel checks addresses against what
 * the slot registered. */
static int ur_redirect(void *dev, void *h)
{
	struct udev *u = dev;
	struct ubuf *b = h;
	if (!b)
		return 0;
	mrl_lock(&u->lock);
	int ret = b->scratch ? 0 : b->inflight ? -EBUSY : 1;
	size_t len = b->len;
	struct io_uring *ring = u->ring;
	mrl_unlock(&u->lock);
	if (ret <= 0)
		return ret;
	void *s = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (s == MAP_FAILED)
		return mrl_err(ENOMEM, "io_uring: no scratch of %zu bytes to redirect to", len);
	ret = slot_set(ring, b->slot, s, len);
	if (ret) {
		munmap(s, len);
		return ret;
	}
	mrl_lock(&u->lock);
	b->scratch = s;
	b->revoked = false;
	b->ack_seq = 0;
	mrl_unlock(&u->lock);
	return 0;
}

static void *ur_desc(void *h)
{
	(void)h;
	return NULL;
}

static void ur_close(void *dev)
{
	struct udev *u = dev;
	for (unsigned i = 0; i < u->nr; i++) {
		if (u->slots[i] && u->slots[i]->scratch)
			munmap(u->slots[i]->scratch, u->slots[i]->len);
		free(u->slots[i]);
	}
	if (u->ring)
		io_uring_unregister_buffers(u->ring);
	free(u->slots);
	pthread_mutex_destroy(&u->lock);
	free(u);
}

static bool ur_pins(void *dev)
{
	(void)dev;
	return true; /* fixed buffers are pinned for the ring's lifetime */
}

const struct mrl_registrar_ops mrl_reg_uring_ops = {
	.size = sizeof(struct mrl_registrar_ops),
	.name = "io_uring",
	.open = ur_open,
	.reg = ur_reg,
	.dereg = ur_dereg,
	.desc = ur_desc,
	.close = ur_close,
	.quiesce = ur_quiesce,
	.revoke = ur_revoke,
	.restore = ur_restore,
	.redirect = ur_redirect,
	.pins = ur_pins,
};

/* ---- public calls ---- */

static struct udev *udev_of(mrl_ctx *ctx, const char *fn, int *ret)
{
	if (!ctx) {
		*ret = mrl_err(EINVAL, "%s: NULL context", fn);
		return NULL;
	}
	if (unlikely(mrl_forked(ctx))) {
		*ret = mrl_child_err(fn);
		return NULL;
	}
	if (ctx->rops->open != mrl_reg_uring_ops.open) {
		*ret = mrl_err(EOPNOTSUPP, "%s: the context's registrar is %s, not io_uring "
				      "(create it with provider \"uring\")", fn, ctx->rops->name);
		return NULL;
	}
	return ctx->dev;
}

MRL_EXPORT int mrl_uring_attach(mrl_ctx *ctx, struct io_uring *ring, unsigned nr)
{
	int ret = 0;
	struct udev *u = udev_of(ctx, "mrl_uring_attach", &ret);
	if (!u)
		return ret;
	if (!ring)
		return mrl_err(EINVAL, "mrl_uring_attach: NULL ring");
	if (!nr || nr > 16384)
		return mrl_err(EINVAL, "mrl_uring_attach: %u slots (1..16384)", nr);
	struct ubuf **slots = calloc(nr, sizeof(*slots));
	if (!slots)
		return -ENOMEM;
	mrl_lock(&u->lock);
	if (u->ring || u->attaching) {
		mrl_unlock(&u->lock);
		free(slots);
		return mrl_err(EBUSY, "mrl_uring_attach: a ring is attached already");
	}
	u->attaching = true;
	mrl_unlock(&u->lock);
	ret = io_uring_register_buffers_sparse(ring, nr); /* no lock held: a system call */
	mrl_lock(&u->lock);
	u->attaching = false;
	if (!ret) {
		u->ring = ring;
		u->nr = nr;
		u->slots = slots;
	}
	mrl_unlock(&u->lock);
	if (ret) {
		free(slots);
		ret = mrl_err(ret, "mrl_uring_attach: io_uring_register_buffers_sparse(%u): %s%s", nr,
			      strerror(-ret),
			      ret == -EBUSY ? " (the ring has a buffer table already)" : "");
	}
	return ret;
}

MRL_EXPORT int mrl_uring_detach(mrl_ctx *ctx)
{
	int ret = 0;
	struct udev *u = udev_of(ctx, "mrl_uring_detach", &ret);
	if (!u)
		return ret;
	mrl_lock(&u->lock);
	if (!u->ring || u->attaching) {
		mrl_unlock(&u->lock);
		return mrl_err(ENXIO, "mrl_uring_detach: no ring attached");
	}
	for (unsigned i = 0; i < u->nr; i++)
		if (u->slots[i]) {
			mrl_unlock(&u->lock);
			return mrl_err(EBUSY, "mrl_uring_detach: slot %u still holds an MR; deregister it first", i);
		}
	struct io_uring *ring = u->ring;
	struct ubuf **slots = u->slots;
	u->slots = NULL;
	u->ring = NULL;
	u->nr = 0;
	u->attaching = true;
	mrl_unlock(&u->lock);
	io_uring_unregister_buffers(ring);
	free(slots);
	mrl_lock(&u->lock);
	u->attaching = false;
	mrl_unlock(&u->lock);
	return 0;
}

static int uring_get(mrl_ctx *ctx, mrl_mr_t h, int timeout_ms, unsigned *buf_index, void **base,
		     const char *fn)
{
	int ret = 0;
	struct udev *u = udev_of(ctx, fn, &ret);
	if (!u)
		return ret;
	if (!buf_index)
		return mrl_err(EINVAL, "%s: NULL buf_index", fn);
	struct timespec until;
	clock_gettime(CLOCK_MONOTONIC, &until);
	if (timeout_ms > 0) {
		until.tv_sec += timeout_ms / 1000;
		until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
	}
	mrl_lock(&ctx->lock);
	for (;;) {
		struct mrl_mr *mr = mrl_ht_get(&ctx->ht, h);
		if (!mr) {
			ret = mrl_err(ESTALE, "%s: MR handle %#llx is not registered", fn,
				      (unsigned long long)h);
			break;
		}
		struct ubuf *b = mr->dev_mr;
		bool got = false;
		if (mr->state == MRL_STATE_ACTIVE && b) {
			mrl_lock(&u->lock);
			if ((got = !b->revoked)) {
				b->inflight++;
				*buf_index = b->slot;
				if (base)
					*base = b->scratch ? b->scratch : b->addr;
			}
			mrl_unlock(&u->lock);
		}
		if (got)
			break;
		if (mr->state != MRL_STATE_PAUSED) {
			ret = mrl_err(EKEYREVOKED, "%s: MR is %s (%s)", fn,
				      mrl_state_str(mr->state), mrl_cause_str(mr->cause));
			break;
		}
		if (timeout_ms == 0) {
			ret = -EAGAIN; /* paused: the change is landing */
			break;
		}
		/* the device worker signals as each call ends (a restore among them) */
		int w = timeout_ms < 0 ? pthread_cond_wait(&ctx->dev_cv, &ctx->lock)
				       : pthread_cond_timedwait(&ctx->dev_cv, &ctx->lock, &until);
		if (w == ETIMEDOUT) {
			timeout_ms = 0; /* one last look */
		}
	}
	mrl_unlock(&ctx->lock);
	return ret;
}

MRL_EXPORT int mrl_uring_get(mrl_ctx *ctx, mrl_mr_t h, int timeout_ms, unsigned *buf_index)
{
	return uring_get(ctx, h, timeout_ms, buf_index, NULL, "mrl_uring_get");
}

MRL_EXPORT int mrl_uring_get_buf(mrl_ctx *ctx, mrl_mr_t h, int timeout_ms, unsigned *buf_index,
				 void **base)
{
	if (!base)
		return mrl_err(EINVAL, "mrl_uring_get_buf: NULL base");
	return uring_get(ctx, h, timeout_ms, buf_index, base, "mrl_uring_get_buf");
}

MRL_EXPORT int mrl_uring_put(mrl_ctx *ctx, mrl_mr_t h)
{
	int ret = 0;
	uint32_t seq = 0;
	struct udev *u = udev_of(ctx, "mrl_uring_put", &ret);
	if (!u)
		return ret;
	mrl_lock(&ctx->lock);
	struct mrl_mr *mr = mrl_ht_get(&ctx->ht, h);
	struct ubuf *b = mr ? mr->dev_mr : NULL;
	if (!mr) {
		ret = mrl_err(ESTALE, "mrl_uring_put: MR handle %#llx is not registered",
			      (unsigned long long)h);
	} else if (!b && mr->state == MRL_STATE_FENCED) {
		/* fenced with the operation in flight (its break ran out of time):
		 * what it wrote may have gone to pages that are no longer the file's */
		ret = mrl_err(EKEYREVOKED, "mrl_uring_put: the MR was fenced (%s) while this "
					   "operation was in flight: its data may not be in the file",
			      mrl_cause_str(mr->cause));
	} else {
		bool none = !b;
		if (b) {
			mrl_lock(&u->lock);
			none = !b->inflight;
			if (!none && --b->inflight == 0 && b->ack_seq) {
				seq = b->ack_seq;
				b->ack_seq = 0;
			}
			mrl_unlock(&u->lock);
		}
		if (none)
			ret = mrl_err(EINVAL, "mrl_uring_put: no operation of this MR is in flight (put without get)");
		else if (seq)
			mrl_brk_device_idle(ctx, seq); /* the last one: the break may go on */
	}
	mrl_unlock(&ctx->lock);
	if (seq) {
		mrl_flush_outbox(ctx);
		mrl_wake_monitor(ctx);
	}
	return ret;
}
