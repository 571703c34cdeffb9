/* `mrlease coverage [FILE]`: when each kind of change is seen (before, after,
 * never), per kind of memory and the watchers running over it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "mrlease.h"
#include "cli.h"

/* One column of the coverage table: an MR over FILE (or anonymous memory
 * when FILE is NULL) in a context of its own with the given flags. */
struct cov_col {
	char title[40], watchers[96];
	struct mrl_mr_info in;
};

static void cov_column(const char *file, unsigned flags, const char *title, struct cov_col *col)
{
	mrl_ctx *ctx;
	struct mrl_ctx_opts co = {.size = sizeof(co), .provider = "mock", .flags = flags};
	size_t len = 1 << 20;
	void *p;
	mrl_mr_t mr;
	int ret = mrl_ctx_create(&co, &ctx);
	if (ret)
		cli_die("context", ret);
	if (file)
		ret = mrl_file_map(ctx, file, 0, len, PROT_READ | PROT_WRITE, &p);
	else if ((p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)) == MAP_FAILED)
		ret = -errno;
	if (ret)
		cli_die(file ? file : "anonymous memory", ret);
	if ((ret = mrl_mr_reg(ctx, p, len, MRL_ACCESS_REMOTE_WRITE, NULL, &mr)))
		cli_die("register", ret);
	col->in.size = sizeof(col->in);
	mrl_mr_query(ctx, mr, &col->in);
	snprintf(col->title, sizeof(col->title), "%s", title);
	cli_watcher_names(col->in.watchers, col->watchers, sizeof(col->watchers));
	mrl_mr_dereg(ctx, mr);
	if (file)
		mrl_file_unmap(ctx, p, len);
	else
		munmap(p, len);
	mrl_ctx_destroy(ctx);
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
	struct cov_col col[4];
	int n = 0;
	char ext4[] = "/var/tmp/mrlease-cov-XXXXXX", shm[] = "/dev/shm/mrlease-cov-XXXXXX";
	if (file) {
		cov_column(file, 0, file, &col[n++]);
	} else {
		if (scratch_file(ext4) == 0) {
			cov_column(ext4, 0, "ext4 file", &col[n++]);
			cov_column(ext4, MRL_CTX_NO_FANOTIFY, "ext4, no fanotify", &col[n++]);
			unlink(ext4);
		}
		if (scratch_file(shm) == 0) {
			cov_column(shm, 0, "tmpfs file", &col[n++]);
			unlink(shm);
		}
		cov_column(NULL, 0, "anonymous", &col[n++]);
	}
	printf("coverage now: when each change is seen, per kind of memory and watchers running\n\n");
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
	return 0;
}
