/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Registration reads the address space with PROCMAP_QUERY where the kernel
 * has it (Linux 6.11+, one ioctl per mapping on a kept fd) and walks the
 * text of /proc/self/maps once per registration where it does not. Both
 * must decide alike: this test makes one context of each (MRL_PROCMAP_TEXT
 * forces the text) and registers the same layouts, each on memory of its
 * own: an anonymous mapping, a tmpfs file mapped as two consecutive halves
 * (one MR across both), the same file at non-consecutive offsets, a hole,
 * PROT_NONE, an anonymous mapping split by mprotect (not the library's
 * split), a memfd. Same answer, same kind, same file offset. */
#include <fcntl.h>
#include <sys/mman.h>

#include "helpers.h"
#include "mrl_int.h"

static size_t pg;
static char path[300];

struct res {
	int ret;
	unsigned kind;
	uint64_t foff;
	unsigned state, gen;
};

static struct res try_reg(mrl_ctx *ctx, void *p, size_t len, unsigned acc)
{
	struct res r = {0};
	mrl_mr_t mr;
	r.ret = mrl_mr_reg(ctx, p, len, acc, NULL, &mr);
	if (!r.ret) {
		struct mrl_mr_info in = t_query(ctx, mr);
		r.kind = in.kind;
		r.foff = in.file_offset;
		r.state = in.state;
		r.gen = in.generation;
		CHECK(mrl_mr_dereg(ctx, mr) == 0, "dereg");
	}
	return r;
}

/* one layout, made afresh for the context: the registration's answer */
static struct res layout(mrl_ctx *ctx, int which)
{
	struct res r = {.ret = 1};
	int fd = -1;
	char *p = mmap(NULL, 4 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(p != MAP_FAILED, "mmap");
	memset(p, 1, 4 * pg);
	switch (which) {
	case 0: /* anonymous */
		r = try_reg(ctx, p, 4 * pg, MRL_ACCESS_REMOTE_WRITE);
		break;
	case 1: /* a file in two consecutive halves */
	case 2: /* the same file, the second half at another offset */
		fd = open(path, O_RDWR);
		REQUIRE(fd >= 0, "open");
		REQUIRE(mmap(p, 2 * pg, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, pg) == p &&
				mmap(p + 2 * pg, 2 * pg, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd,
				     (off_t)(which == 1 ? 3 * pg : 6 * pg)) == p + 2 * pg,
			"two file mappings");
		r = try_reg(ctx, p + pg / 2, 3 * pg, MRL_ACCESS_REMOTE_WRITE);
		break;
	case 3: /* a hole */
		munmap(p + pg, pg);
		r = try_reg(ctx, p, 3 * pg, MRL_ACCESS_REMOTE_READ);
		break;
	case 4: /* PROT_NONE */
		mprotect(p, 4 * pg, PROT_NONE);
		r = try_reg(ctx, p, 2 * pg, MRL_ACCESS_REMOTE_READ);
		break;
	case 5: /* split by mprotect: two mappings, not the library's split */
		mprotect(p + 2 * pg, 2 * pg, PROT_READ);
		r = try_reg(ctx, p, 4 * pg, MRL_ACCESS_REMOTE_READ);
		break;
	case 6: { /* a memfd */
		int m = memfd_create("t_reg_text", MFD_CLOEXEC);
		REQUIRE(m >= 0 && ftruncate(m, (off_t)(4 * pg)) == 0, "memfd");
		REQUIRE(mmap(p, 4 * pg, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, m, 0) == p, "map it");
		close(m);
		r = try_reg(ctx, p + pg, 2 * pg, MRL_ACCESS_REMOTE_WRITE);
		break;
	}
	}
	munmap(p, 4 * pg);
	if (fd >= 0)
		close(fd);
	return r;
}

int main(void)
{
	pg = (size_t)sysconf(_SC_PAGESIZE);
	char dir[256];
	t_scratch("tmpfs", dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/f", dir);
	t_make_file(path, 8 * pg);

	mrl_ctx *q = t_ctx("mock", 1000);
	REQUIRE(layout(q, 0).ret == 0, "a first registration (the context's way to read is chosen)");
	setenv("MRL_PROCMAP_TEXT", "1", 1);
	mrl_ctx *t = t_ctx("mock", 1000);
	static const char *const names[] = {"anonymous", "a file in two consecutive halves",
					    "a file at non-consecutive offsets", "a hole", "PROT_NONE",
					    "an mprotect split", "a memfd"};
	static const int want[] = {0, 0, -EINVAL, -EFAULT, -EACCES, -EINVAL, 0};
	for (int i = 0; i < 7; i++) {
		struct res a = layout(q, i), b = layout(t, i);
		CHECK(a.ret == want[i], "%s, PROCMAP_QUERY: %d (want %d)", names[i], a.ret, want[i]);
		CHECK(b.ret == want[i], "%s, text: %d (want %d)", names[i], b.ret, want[i]);
		CHECK(a.kind == b.kind && a.foff == b.foff, "%s: the same kind (%u, %u) and file offset (%llu, %llu)",
		      names[i], a.kind, b.kind, (unsigned long long)a.foff, (unsigned long long)b.foff);
		if (!want[i])
			CHECK(b.state == MRL_STATE_ACTIVE && b.gen == 1,
			      "%s, text: active, generation 1 after its second look (%u, %u)", names[i], b.state,
			      b.gen);
	}
	CHECK(layout(q, 1).foff == pg + pg / 2, "the file offset of the range");
	CHECK(layout(q, 6).kind == MRL_KIND_MEMFD && layout(q, 0).kind == MRL_KIND_ANON &&
		      layout(q, 1).kind == MRL_KIND_TMPFS, "kinds: memfd, anonymous, tmpfs");
	/* which path each took */
	CHECK(t->procmaps_fd == -2, "the forced context read the text");
	if (q->procmaps_fd == -2)
		printf("this kernel has no PROCMAP_QUERY (Linux 6.11+): text against text\n");
	else
		CHECK(q->procmaps_fd >= 0, "the other used PROCMAP_QUERY (%d)", q->procmaps_fd);
	mrl_ctx_destroy(q);
	mrl_ctx_destroy(t);
	unlink(path);
	rmdir(dir);
	return t_done("t_reg_text");
}
