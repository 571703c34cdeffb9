/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Which memory the kernel lets io_uring pin for the long term, walked as a
 * table of kinds (like the kernel's gup_longterm selftest): anonymous,
 * shared anonymous, memfd, tmpfs file, hugetlb, and files on ext4 - shared
 * (refused: -EFAULT and a message naming ext4) and private (copy-on-write
 * pages: pinnable). Each pinned row takes a READ_FIXED into its slot. */
#include <sys/mman.h>

#include "uring_rig.h"

#define LEN (4 * PG)

struct row {
	const char *name;
	uint32_t kind;  /* expected enum mrl_kind */
	bool pinnable;
};

static void try_row(mrl_ctx *ctx, struct rig *r, const struct row *w, uint8_t *p)
{
	mrl_mr_t mr;
	int ret = mrl_mr_reg(ctx, p, LEN, MRL_ACCESS_REMOTE_WRITE, NULL, &mr);
	printf("  %-22s %s%s%s\n", w->name, ret ? "refused: " : "pinned",
	       ret ? mrl_strerror(ret) : "", "");
	if (ret)
		printf("  %-22s   \"%s\"\n", "", mrl_last_error());
	if (!w->pinnable) {
		CHECK(ret == -EFAULT, "%s: refused with -EFAULT (%d)", w->name, ret);
		CHECK(strstr(mrl_last_error(), "ext4") && strstr(mrl_last_error(), "MAP_SHARED"),
		      "%s: the message names the kind", w->name);
		return;
	}
	CHECK(ret == 0, "%s: pinned", w->name);
	if (ret)
		return;
	struct mrl_mr_info in = {.size = sizeof(in)};
	mrl_mr_query(ctx, mr, &in);
	CHECK(in.kind == w->kind, "%s: kind %s", w->name, mrl_kind_str(in.kind));
	unsigned idx;
	REQUIRE(mrl_uring_get(ctx, mr, 0, &idx) == 0, "get");
	CHECK(rig_read_fixed(r, p, PG, idx, 5) == PG && p[PG] == rig_byte(5, PG),
	      "%s: READ_FIXED lands in the buffer", w->name);
	CHECK(mrl_uring_put(ctx, mr) == 0, "put");
	CHECK(mrl_mr_dereg(ctx, mr) == 0, "dereg");
}

static uint8_t *file_map(const char *dir, const char *name, int flags, int *fd)
{
	char path[400];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	t_make_file(path, LEN);
	*fd = open(path, O_RDWR | O_CLOEXEC);
	uint8_t *p = mmap(NULL, LEN, PROT_READ | PROT_WRITE, flags, *fd, 0);
	return p == MAP_FAILED ? NULL : p;
}

int main(void)
{
	struct rig r;
	rig_open(&r);
	mrl_ctx *ctx = t_ctx("uring", 2000);
	REQUIRE(mrl_uring_attach(ctx, &r.ring, 4) == 0, "attach: %s", mrl_last_error());
	char tdir[256], edir[256];
	t_scratch("tmpfs", tdir, sizeof(tdir));
	t_scratch("ext4", edir, sizeof(edir));
	int fds[4];

	static const struct row anon = {"anonymous", MRL_KIND_ANON, true};
	uint8_t *p = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	try_row(ctx, &r, &anon, p);
	munmap(p, LEN);

	static const struct row shm = {"shared anonymous", MRL_KIND_SHMEM, true};
	p = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	try_row(ctx, &r, &shm, p);
	munmap(p, LEN);

	static const struct row memfd = {"memfd", MRL_KIND_MEMFD, true};
	fds[0] = memfd_create("mrl-kinds", MFD_CLOEXEC);
	REQUIRE(fds[0] >= 0 && ftruncate(fds[0], LEN) == 0, "memfd");
	p = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED, fds[0], 0);
	try_row(ctx, &r, &memfd, p);
	munmap(p, LEN);
	close(fds[0]);

	static const struct row tmpfs = {"tmpfs file, shared", MRL_KIND_TMPFS, true};
	p = file_map(tdir, "t", MAP_SHARED, &fds[1]);
	REQUIRE(p, "map tmpfs file");
	try_row(ctx, &r, &tmpfs, p);
	munmap(p, LEN);
	close(fds[1]);

	static const struct row ext4s = {"ext4 file, shared", MRL_KIND_FILE, false};
	p = file_map(edir, "s", MAP_SHARED, &fds[2]);
	REQUIRE(p, "map ext4 file");
	try_row(ctx, &r, &ext4s, p);
	munmap(p, LEN);
	close(fds[2]);

	static const struct row ext4p = {"ext4 file, private", MRL_KIND_FILE, true};
	p = file_map(edir, "p", MAP_PRIVATE, &fds[3]);
	REQUIRE(p, "map ext4 file private");
	try_row(ctx, &r, &ext4p, p);
	munmap(p, LEN);
	close(fds[3]);

	/* hugetlb needs huge pages set aside (t_hugepages, as root); where none
	 * can be had the row, not the test, is skipped */
	size_t hlen = 2u << 20;
	t_hugepages(2);
	p = mmap(NULL, hlen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
	if (p == MAP_FAILED) {
		printf("  %-22s skipped: no huge pages reserved (%s; vm.nr_hugepages)\n", "hugetlb",
		       strerror(errno));
	} else {
		mrl_mr_t mr;
		int ret = mrl_mr_reg(ctx, p, hlen, MRL_ACCESS_REMOTE_WRITE, NULL, &mr);
		printf("  %-22s %s\n", "hugetlb", ret ? mrl_last_error() : "pinned");
		CHECK(ret == 0, "hugetlb pinned");
		if (!ret)
			mrl_mr_dereg(ctx, mr);
		munmap(p, hlen);
	}
	mrl_ctx_destroy(ctx);
	rig_close(&r);
	t_sh("rm -rf %s %s", tdir, edir);
	return t_done("t_uring_kinds");
}
