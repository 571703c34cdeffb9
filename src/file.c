/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Files that back MRs: one object per (dev, inode), holding the library's
 * own fd when it has one (mrl_file_map, mrl_file_adopt) so a lease can be taken. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "mrl_int.h"

#ifndef TMPFS_MAGIC
#define TMPFS_MAGIC 0x01021994
#endif

/* dev is either of the file's two device numbers: stat's (fanotify's event
 * fds, the path) or the superblock's (/proc/self/maps). Both come from the
 * one pool of device numbers, so neither can name another filesystem. */
struct mrl_file *mrl_file_find(struct mrl_ctx *ctx, dev_t dev, ino_t ino)
{
	for (struct mrl_file *f = ctx->files; f; f = f->next)
		if (f->ino == ino && (f->dev == dev || f->st_dev == dev))
			return f;
	return NULL;
}

/* The superblock's device number of the mount fd lies on, as
 * /proc/self/maps reports it; 0 if unknown. */
static dev_t mount_dev(int fd)
{
	struct statx sx;
	if (statx(fd, "", AT_EMPTY_PATH, STATX_MNT_ID, &sx) < 0 || !(sx.stx_mask & STATX_MNT_ID))
		return 0;
	FILE *mi = fopen("/proc/self/mountinfo", "re");
	if (!mi)
		return 0;
	char line[512];
	dev_t dev = 0;
	while (fgets(line, sizeof(line), mi)) {
		unsigned long long id;
		unsigned maj, min;
		if (sscanf(line, "%llu %*u %u:%u", &id, &maj, &min) == 3 && id == sx.stx_mnt_id) {
			dev = makedev(maj, min);
			break;
		}
	}
	fclose(mi);
	return dev;
}

/* Learn both device numbers of (dev, ino) -- on btrfs stat reports the
 * subvolume's anonymous device, /proc/self/maps the superblock's, and a
 * file known by one must be found by the other -- and keep an O_PATH fd on
 * it, so its size and links can be read while the library holds no fd of
 * its own (an O_PATH fd is no opener: no lease breaks, no fanotify open). */
static void file_ident(struct mrl_file *f, dev_t dev, ino_t ino, const char *path)
{
	struct stat st;
	f->dev = f->st_dev = dev;
	f->ino = ino;
	f->path_fd = path && path[0] ? open(path, O_PATH | O_CLOEXEC) : -1;
	if (f->path_fd < 0)
		return;
	dev_t sb = mount_dev(f->path_fd);
	if (fstat(f->path_fd, &st) == 0 && st.st_ino == ino && st.st_dev == dev) {
		if (sb)
			f->dev = sb;
	} else if (fstat(f->path_fd, &st) == 0 && st.st_ino == ino && sb == dev) {
		f->st_dev = st.st_dev;
	} else {
		close(f->path_fd); /* the path names another file now */
		f->path_fd = -1;
	}
}

int mrl_file_get(struct mrl_ctx *ctx, dev_t dev, ino_t ino, const char *path, int kind,
		 struct mrl_file **out)
{
	struct mrl_file *f = mrl_file_find(ctx, dev, ino);
	if (f) {
		f->refs++;
		*out = f;
		return 0;
	}
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->path = strdup(path ? path : "");
	if (!f->path) {
		free(f);
		return -ENOMEM;
	}
	file_ident(f, dev, ino, path);
	f->fd = -1;
	f->wd = -1;
	f->kind = kind;
	f->refs = 1;
	f->lease = LEASE_OFF;
	f->lease_errno = EBADF;
	f->fan_errno = EOPNOTSUPP;
	mrl_itree_init(&f->mrs);
	MRL_WATCHERS_EACH(ctx, file_attach, f);
	f->next = ctx->files;
	ctx->files = f;
	*out = f;
	return 0;
}

/* One mapping mrl_file_map made: mrl_file_unmap unmaps exactly these and
 * nothing else, so a wrong length never takes a neighbour with it. */
struct mrl_fmap {
	struct mrl_fmap *next;
	uintptr_t addr;
	size_t len;
};

void mrl_file_put(struct mrl_ctx *ctx, struct mrl_file *f)
{
	if (--f->refs > 0)
		return;
	while (f->fmaps) {
		struct mrl_fmap *m = f->fmaps;
		f->fmaps = m->next;
		free(m);
	}
	if (f->brk)
		mrl_brk_free(ctx, f->brk);
	MRL_WATCHERS_EACH(ctx, file_detach, f);
	for (struct mrl_file **p = &ctx->files; *p; p = &(*p)->next)
		if (*p == f) {
			*p = f->next;
			break;
		}
	if (f->fd >= 0)
		close(f->fd);
	if (f->path_fd >= 0)
		close(f->path_fd);
	free(f->path);
	free(f);
}

static int fs_kind(int fd)
{
	struct statfs sfs;
	if (fstatfs(fd, &sfs) == 0 && sfs.f_type == TMPFS_MAGIC)
		return MRL_KIND_TMPFS;
	return MRL_KIND_FILE;
}

MRL_EXPORT int mrl_file_map(mrl_ctx *ctx, const char *path, uint64_t offset, size_t len, int prot,
			    void **addr)
{
	struct stat st;
	int ret = 0, fd = -1;

	if (!ctx || !path || !addr)
		return mrl_err(EINVAL, "mrl_file_map: NULL %s", !ctx ? "context" : !path ? "path" : "addr");
	MRL_CHILD_CHECK(ctx, "mrl_file_map");
	*addr = NULL;
	if (!len)
		return mrl_err(EINVAL, "mrl_file_map: zero length");
	if (offset + len < offset)
		return mrl_err(EOVERFLOW, "mrl_file_map: offset %llu + length %zu overflows",
			       (unsigned long long)offset, len);
	if (offset % (uint64_t)sysconf(_SC_PAGESIZE))
		return mrl_err(EINVAL, "mrl_file_map: offset %llu is not page aligned",
			       (unsigned long long)offset);
	if (prot & ~(PROT_READ | PROT_WRITE))
		return mrl_err(EINVAL, "mrl_file_map: prot %#x: only PROT_READ|PROT_WRITE", prot);

	mrl_guard_settle(ctx); /* a file just let go is nobody's opener any more */
	mrl_lock(&ctx->lock);
	/* Reuse our own fd: a second open would break our own lease. */
	struct mrl_file *f = NULL;
	if (stat(path, &st) < 0) {
		ret = mrl_err(errno, "mrl_file_map: %s: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		ret = mrl_err(S_ISDIR(st.st_mode) ? EISDIR : EINVAL,
			      "mrl_file_map: %s is not a regular file", path);
		goto out;
	}
	f = mrl_file_find(ctx, st.st_dev, st.st_ino);
	if (f && f->fd >= 0) {
		fd = f->fd;
		if ((prot & PROT_WRITE) && (fcntl(fd, F_GETFL) & O_ACCMODE) == O_RDONLY) {
			ret = mrl_err(EACCES, "mrl_file_map: %s is held read-only by the library", path);
			goto out;
		}
		f->refs++;
	} else {
		/* The file object first: a fanotify mark must predate our open
		 * for our own fd's fallocate/write to be seen. */
		if (f) {
			f->refs++;
		} else {
			char rp[PATH_MAX];
			struct statfs sfs;
			int kind = statfs(path, &sfs) == 0 && sfs.f_type == TMPFS_MAGIC ? MRL_KIND_TMPFS
										 : MRL_KIND_FILE;
			ret = mrl_file_get(ctx, st.st_dev, st.st_ino, realpath(path, rp) ? rp : path,
					   kind, &f);
			if (ret) {
				f = NULL;
				goto out;
			}
		}
		/* an open of a marked file waits for the monitor: not under ctx->lock */
		mrl_unlock(&ctx->lock);
		fd = open(path, ((prot & PROT_WRITE) ? O_RDWR : O_RDONLY) | O_CLOEXEC);
		int err = errno;
		struct stat fst;
		bool same = fd >= 0 && fstat(fd, &fst) == 0 && fst.st_dev == st.st_dev &&
			    fst.st_ino == st.st_ino;
		mrl_lock(&ctx->lock);
		if (!same) {
			ret = fd < 0 ? mrl_err(err, "mrl_file_map: open %s: %s", path, strerror(err))
				     : mrl_err(ESTALE, "mrl_file_map: %s was replaced while opening it", path);
			if (fd >= 0)
				close(fd);
			mrl_file_put(ctx, f);
			goto out;
		}
		if (f->fd >= 0) {
			/* another thread gave the file its fd meanwhile: use that one */
			close(fd);
			fd = f->fd;
		} else {
			f->fd = fd;
			MRL_WATCHERS_EACH(ctx, file_opened, f);
		}
		st = fst;
	}
	if ((uint64_t)st.st_size < offset + len) {
		ret = mrl_err(ENXIO, "mrl_file_map: %s is %lld bytes, range ends at %llu", path,
			      (long long)st.st_size, (unsigned long long)(offset + len));
		mrl_file_put(ctx, f);
		goto out;
	}
	struct mrl_fmap *rec = malloc(sizeof(*rec));
	if (!rec) {
		ret = mrl_err(ENOMEM, "mrl_file_map: out of memory");
		mrl_file_put(ctx, f);
		goto out;
	}
	f->maps++; /* keeps f and its fd while we map without the lock */
	mrl_unlock(&ctx->lock);
	/* mmap of a fanotify-marked file waits for the monitor: never under ctx->lock */
	void *p = mmap(NULL, len, prot ? prot : PROT_READ, MAP_SHARED, fd, (off_t)offset);
	int err = errno;
	mrl_lock(&ctx->lock);
	if (p == MAP_FAILED) {
		ret = mrl_err(err, "mrl_file_map: mmap %s: %s", path, strerror(err));
		free(rec);
		f->maps--;
		mrl_file_put(ctx, f);
		goto out;
	}
	*rec = (struct mrl_fmap){.next = f->fmaps, .addr = (uintptr_t)p, .len = len};
	f->fmaps = rec;
	MRL_WATCHERS_EACH(ctx, file_arm, f);
	*addr = p;
out:
	mrl_unlock(&ctx->lock);
	return ret;
}

MRL_EXPORT int mrl_file_unmap(mrl_ctx *ctx, void *addr, size_t len)
{
	int ret = 0;
	if (!ctx || !addr)
		return mrl_err(EINVAL, "mrl_file_unmap: NULL %s", !ctx ? "context" : "address");
	MRL_CHILD_CHECK(ctx, "mrl_file_unmap");
	if (!len || (uintptr_t)addr + len < (uintptr_t)addr)
		return mrl_err(EINVAL, "mrl_file_unmap: bad length %zu", len);
	/* exactly one mapping mrl_file_map made, still there: munmap would
	 * take whatever else lies in the range. What is mapped at a mapping's
	 * first and last page is read with no lock held (/proc takes the
	 * kernel's mmap lock), then matched against the table under it: a
	 * mapping other than the one read for is read for again. */
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);
	struct { uintptr_t a, last; int r; dev_t dev[2]; ino_t ino[2]; } seen;
	seen.a = (uintptr_t)addr;
	seen.last = ((uintptr_t)addr + len - 1) & ~(uintptr_t)(pg - 1);
	int reads = 0;
	bool stale = false;
reread:
	seen.r = mrl_vma_ident(ctx, seen.a, &seen.dev[0], &seen.ino[0]) ||
		 mrl_vma_ident(ctx, seen.last, &seen.dev[1], &seen.ino[1]);
	reads++;
	mrl_lock(&ctx->lock);
	if (mrl_itree_first_overlap(&ctx->va_index, (uintptr_t)addr, (uintptr_t)addr + len)) {
		ret = mrl_err(EBUSY, "mrl_file_unmap: registered MRs lie in %p+%zu; deregister them first",
			      addr, len);
		goto out;
	}
	struct mrl_file *f;
	struct mrl_fmap **pm, *near;
again:
	f = NULL;
	pm = NULL;
	near = NULL;
	for (struct mrl_file *g = ctx->files; g && !near; g = g->next)
		for (struct mrl_fmap **q = &g->fmaps; *q; q = &(*q)->next) {
			struct mrl_fmap *m = *q;
			if ((uintptr_t)addr < m->addr || (uintptr_t)addr >= m->addr + m->len)
				continue;
			near = m;
			pm = q;
			f = g;
			break;
		}
	if (near) {
		/* the caller may have unmapped or replaced it (wholly or in
		 * part) behind our back: forget it, it is not ours to unmap */
		uintptr_t last = (near->addr + near->len - 1) & ~(uintptr_t)(pg - 1);
		if (seen.a != near->addr || seen.last != last) {
			if (reads == 8) {
				ret = mrl_err(EAGAIN, "mrl_file_unmap: the mappings at %p keep changing", addr);
				goto out;
			}
			mrl_unlock(&ctx->lock); /* not the mapping read for */
			seen.a = near->addr;
			seen.last = last;
			goto reread;
		}
		if (seen.r || seen.dev[0] != f->dev ||
		    seen.ino[0] != f->ino || seen.dev[1] != f->dev || seen.ino[1] != f->ino) {
			*pm = near->next;
			free(near);
			f->maps--;
			mrl_file_put(ctx, f);
			stale = true;
			goto again;
		}
	}
	if (!near) {
		ret = mrl_err(EINVAL, "mrl_file_unmap: %p+%zu was not mapped by mrl_file_map%s", addr, len,
			      stale ? " (its mapping there was unmapped or replaced by someone else)" : "");
		goto out;
	}
	if ((uintptr_t)addr != near->addr ||
	    (len != near->len && len != ((near->len + pg - 1) & ~(pg - 1)))) {
		ret = mrl_err(EINVAL, "mrl_file_unmap: %p+%zu is not a whole mapping: mrl_file_map mapped %p+%zu",
			      addr, len, (void *)near->addr, near->len);
		goto out;
	}
	if (munmap(addr, len) < 0) {
		ret = mrl_err(errno, "mrl_file_unmap: munmap: %s", strerror(errno));
		goto out;
	}
	struct mrl_fmap *m = *pm;
	*pm = m->next;
	free(m);
	f->maps--;
	mrl_file_put(ctx, f);
out:
	mrl_unlock(&ctx->lock);
	return ret;
}

MRL_EXPORT int mrl_file_adopt(mrl_ctx *ctx, int fd)
{
	struct stat st;
	char link[64], path[PATH_MAX];
	int ret = 0;
	if (!ctx)
		return mrl_err(EINVAL, "mrl_file_adopt: NULL context");
	MRL_CHILD_CHECK(ctx, "mrl_file_adopt");
	if (fd < 0 || fcntl(fd, F_GETFD) < 0)
		return mrl_err(EBADF, "mrl_file_adopt: %d is not an open fd", fd);
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
		return mrl_err(EINVAL, "mrl_file_adopt: fd %d is not a regular file", fd);
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, path, sizeof(path) - 1);
	path[n > 0 ? n : 0] = 0;
	char *del = strstr(path, " (deleted)");
	if (del)
		*del = 0;
	mrl_guard_settle(ctx);
	mrl_lock(&ctx->lock);
	struct mrl_file *f = mrl_file_find(ctx, st.st_dev, st.st_ino);
	if (f && f->fd >= 0) {
		ret = mrl_err(EEXIST, "mrl_file_adopt: the library already holds an fd for %s", f->path);
		goto out;
	}
	if (f)
		f->refs++;
	else if ((ret = mrl_file_get(ctx, st.st_dev, st.st_ino, path, fs_kind(fd), &f)))
		goto out;
	f->fd = fd;
	f->maps++; /* the adopted fd lives until mrl_ctx_destroy */
	fcntl(fd, F_SETFD, FD_CLOEXEC);
	/* not file_opened: the fd is older than any mark */
	MRL_WATCHERS_EACH(ctx, file_arm, f);
out:
	mrl_unlock(&ctx->lock);
	return ret;
}
