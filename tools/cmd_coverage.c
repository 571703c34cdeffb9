/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* `mrlease coverage [FILE]`: when each kind of change is seen (before, after,
 * never), per kind of memory and the watchers running over it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mrlease.h"
#include "cli.h"

/* One column of the coverage table: an MR over FILE (or anonymous memory
 * when FILE is NULL) in a context of its own with the given flags. */
struct cov_col {
	char title[40], watchers[96];
	struct mrl_mr_info in;
	int ctx_watchers; /* its context's (mrl_ctx_watchers) */
};

/* Memory without a file name: private or shared anonymous, a memfd (its
 * fd kept open, as an application keeps it), a hugetlb memfd. */
enum { MEM_ANON = 0, MEM_SHMEM, MEM_MEMFD, MEM_HUGETLB };

static void cov_column_mem(const char *file, int mem, size_t len, unsigned flags, const char *title,
			   struct cov_col *col)
{
	mrl_ctx *ctx;
	struct mrl_ctx_opts co = {.size = sizeof(co), .provider = "mock", .flags = flags};
	void *p = MAP_FAILED;
	mrl_mr_t mr;
	int mfd = -1;
	int ret = mrl_ctx_create(&co, &ctx);
	if (ret)
		cli_die("context", ret);
	if (file) {
		ret = mrl_file_map(ctx, file, 0, len, PROT_READ | PROT_WRITE, &p);
	} else if (mem == MEM_MEMFD || mem == MEM_HUGETLB) {
		mfd = memfd_create("mrlease-coverage",
				   MFD_CLOEXEC | (mem == MEM_HUGETLB ? MFD_HUGETLB : MFD_ALLOW_SEALING));
		if (mfd < 0 || ftruncate(mfd, (off_t)len) < 0 ||
		    (p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0)) == MAP_FAILED)
			ret = -errno;
	} else if ((p = mmap(NULL, len, PROT_READ | PROT_WRITE,
			     (mem == MEM_SHMEM ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS, -1, 0)) == MAP_FAILED) {
		ret = -errno;
	}
	if (ret && mem == MEM_HUGETLB) { /* no huge pages set aside here: no column */
		if (mfd >= 0)
			close(mfd);
		mrl_ctx_destroy(ctx);
		col->title[0] = 0;
		return;
	}
	if (ret)
		cli_die(file ? file : "memory", ret);
	if ((ret = mrl_mr_reg(ctx, p, len, MRL_ACCESS_REMOTE_WRITE, NULL, &mr)))
		cli_die("register", ret);
	col->in.size = sizeof(col->in);
	mrl_mr_query(ctx, mr, &col->in);
	col->ctx_watchers = mrl_ctx_watchers(ctx);
	snprintf(col->title, sizeof(col->title), "%s", title);
	cli_watcher_names(col->in.watchers, col->watchers, sizeof(col->watchers));
	mrl_mr_dereg(ctx, mr);
	if (file)
		mrl_file_unmap(ctx, p, len);
	else
		munmap(p, len);
	if (mfd >= 0)
		close(mfd);
	mrl_ctx_destroy(ctx);
}

static void cov_column(const char *file, size_t len, unsigned flags, const char *title, struct cov_col *col)
{
	cov_column_mem(file, MEM_ANON, len, flags, title, col);
}

static int scratch_file(char *tmpl)
{
	int fd = mkstemp(tmpl);
	if (fd < 0 || ftruncate(fd, 1 << 20) < 0)
		return -1;
	close(fd); /* the library's fd must be the only one */
	return 0;
}

int cmd_coverage(const struct cli_opts *o)
{
	const char *file = o->nargs ? o->args[0] : NULL;
	struct cov_col col[8];
	int n = 0;
	unsigned flags = (o->no_lease ? MRL_CTX_NO_LEASES : 0) | (o->no_fanotify ? MRL_CTX_NO_FANOTIFY : 0);
	char ext4[] = "/var/tmp/mrlease-cov-XXXXXX", shm[] = "/dev/shm/mrlease-cov-XXXXXX";
	if (file) {
		struct stat st;
		if (stat(file, &st) < 0) {
			fprintf(stderr, "mrlease coverage: %s: %s\n", file, strerror(errno));
			return 2;
		}
		if (!S_ISREG(st.st_mode) || st.st_size == 0) {
			fprintf(stderr, "mrlease coverage: %s: %s\n", file,
				S_ISREG(st.st_mode) ? "empty: nothing to register" : "not a regular file");
			return 2;
		}
		/* the whole file, whatever its size (one page or less included) */
		cov_column(file, (size_t)st.st_size, flags, file, &col[n++]);
	} else {
		if (scratch_file(ext4) == 0) {
			cov_column(ext4, 1 << 20, flags, "ext4 file", &col[n++]);
			cov_column(ext4, 1 << 20, flags | MRL_CTX_NO_FANOTIFY, "ext4, no fanotify", &col[n++]);
			unlink(ext4);
		}
		if (scratch_file(shm) == 0) {
			cov_column(shm, 1 << 20, flags, "tmpfs file", &col[n++]);
			unlink(shm);
		}
		cov_column_mem(NULL, MEM_MEMFD, 1 << 20, flags, "memfd", &col[n++]);
		cov_column_mem(NULL, MEM_SHMEM, 1 << 20, flags, "shared anonymous", &col[n++]);
		cov_column_mem(NULL, MEM_HUGETLB, 2 << 20, flags, "hugetlb memfd", &col[n]);
		n += col[n].title[0] != 0;
		cov_column(NULL, 1 << 20, flags, "anonymous", &col[n++]);
	}
	printf("coverage now: when each change is seen, per kind of memory and watchers running\n");
	printf("(each column is a fresh registration made by this command, in its own context;\n"
	       " a process serving the file sees it through its own watchers and openers: ask it)\n\n");
	printf("  %-36s", "");
	for (int i = 0; i < n; i++)
		printf(" %-20.20s", col[i].title);
	printf("\n  %-36s", "watchers");
	for (int i = 0; i < n; i++)
		printf(" %-20.20s", col[i].watchers);
	printf("\n");
	for (int c = 0; c < MRL_CHG_MAX; c++) {
		printf("  %-36s", mrl_change_str(c));
		for (int i = 0; i < n; i++)
			printf(" %-20s", mrl_seen_str(col[i].in.coverage[c]));
		printf("\n");
	}
	/* detected per context, used by none: said so, never counted in a cell */
	printf("\n  fcntl delegations (F_SETDELEG, Linux 6.19+): %s\n",
	       n && (col[0].ctx_watchers & MRL_WATCH_DELEG)
		       ? "present in this kernel, not used yet (no cell above comes from them)"
		       : "unavailable in this kernel");
	return 0;
}
