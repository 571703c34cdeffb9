/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Registration: mrl_mr_reg + mrl_mr_dereg versus fi_mr_reg + fi_close on
 * the same provider, at 4 KiB, 1 MiB and 1 GiB, for anonymous memory and for
 * files on ext4 and tmpfs. Two rows per file: the registration alone (the
 * library's mapping already holds the lease), and the whole cycle with the
 * lease taken and dropped (mrl_file_map + reg + dereg + mrl_file_unmap versus
 * open + mmap + fi_mr_reg + fi_close + munmap + close). Interleaved pairs. */
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common.h"

#define RW (MRL_ACCESS_REMOTE_READ | MRL_ACCESS_REMOTE_WRITE)
static const uint64_t rsizes[] = {4 * KiB, 1 * MiB, 1 * GiB};

struct regb {
	mrl_ctx *ctx;
	struct raw_node rn;
	uint64_t key;
};

static int raw_reg(struct regb *r, void *p, size_t len, struct fid_mr **mr)
{
	uint64_t acc = FI_READ | FI_WRITE | FI_SEND | FI_RECV | FI_REMOTE_READ | FI_REMOTE_WRITE;
	return fi_mr_reg(r->rn.domain, p, len, acc, 0, r->rn.prov_key ? 0 : r->key++, 0, mr, NULL);
}

/* one sample of each: t[0] raw reg, t[1] raw dereg, t[2] mrl reg, t[3] mrl dereg */
static int pair_mapped(struct regb *r, void *p, size_t len, int first, uint64_t *t)
{
	int ret = 0;
	for (int j = 0; j < 2 && !ret; j++) {
		int m = (first + j) & 1;
		uint64_t t0 = now_ns(), t1, t2;
		if (!m) {
			struct fid_mr *mr;
			ret = raw_reg(r, p, len, &mr);
			t1 = now_ns();
			if (!ret)
				ret = fi_close(&mr->fid);
		} else {
			mrl_mr_t h;
			ret = mrl_mr_reg(r->ctx, p, len, RW, NULL, &h);
			t1 = now_ns();
			if (!ret)
				ret = mrl_mr_dereg(r->ctx, h);
		}
		t2 = now_ns();
		t[m * 2] = t1 - t0;
		t[m * 2 + 1] = t2 - t1;
	}
	return ret;
}

/* the whole cycle on a file, lease taken and dropped: t[0] raw, t[1] mrl */
static int pair_cycle(struct regb *r, const char *path, size_t len, int first, uint64_t *t)
{
	int ret = 0;
	for (int j = 0; j < 2 && !ret; j++) {
		int m = (first + j) & 1;
		uint64_t t0 = now_ns();
		if (!m) {
			int fd = open(path, O_RDWR);
			void *p = fd < 0 ? MAP_FAILED : mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
			struct fid_mr *mr;
			if (p == MAP_FAILED)
				return -errno;
			ret = raw_reg(r, p, len, &mr);
			if (!ret)
				ret = fi_close(&mr->fid);
			munmap(p, len);
			close(fd);
		} else {
			void *p;
			mrl_mr_t h;
			ret = mrl_file_map(r->ctx, path, 0, len, PROT_READ | PROT_WRITE, &p);
			if (ret)
				return ret;
			ret = mrl_mr_reg(r->ctx, p, len, RW, NULL, &h);
			if (!ret)
				ret = mrl_mr_dereg(r->ctx, h);
			mrl_file_unmap(r->ctx, p, len);
		}
		t[m] = now_ns() - t0;
	}
	return ret;
}

static void report(const char *mem, const char *what, uint64_t size, uint64_t *v[], int nv, int n)
{
	double p[4];
	for (int i = 0; i < nv; i++)
		p[i] = pctl(v[i], (size_t)n, 50) / 1e3;
	char sz[16];
	snprintf(sz, sizeof(sz), size >= GiB ? "%llu GiB" : size >= MiB ? "%llu MiB" : "%llu KiB",
		 (unsigned long long)(size >= GiB ? size >> 30 : size >= MiB ? size >> 20 : size >> 10));
	if (nv == 4) {
		printf("%-6s %-7s %-8s %9.2f %9.2f %7.2f | %9.2f %9.2f %7.2f\n", mem, what, sz, p[0], p[2],
		       p[2] / p[0], p[1], p[3], p[3] / p[1]);
		json_row("\"memory\": \"%s\", \"what\": \"%s\", \"size\": %llu, \"samples\": %d, "
			 "\"raw_reg_p50_us\": %.3f, \"mrl_reg_p50_us\": %.3f, \"reg_ratio\": %.3f, "
			 "\"raw_dereg_p50_us\": %.3f, \"mrl_dereg_p50_us\": %.3f, \"dereg_ratio\": %.3f",
			 mem, what, (unsigned long long)size, n, p[0], p[2], p[2] / p[0], p[1], p[3], p[3] / p[1]);
	} else {
		printf("%-6s %-7s %-8s %9.2f %9.2f %7.2f |\n", mem, what, sz, p[0], p[1], p[1] / p[0]);
		json_row("\"memory\": \"%s\", \"what\": \"%s\", \"size\": %llu, \"samples\": %d, "
			 "\"raw_cycle_p50_us\": %.3f, \"mrl_cycle_p50_us\": %.3f, \"cycle_ratio\": %.3f",
			 mem, what, (unsigned long long)size, n, p[0], p[1], p[1] / p[0]);
	}
}

int bench_reg(void)
{
	struct regb r = {.key = 0x100000};
	struct mrl_ctx_opts o = {.size = sizeof(o), .provider = "tcp;ofi_rxm"};
	int ret = mrl_ctx_create(&o, &r.ctx);
	if (ret)
		return ret;
	if ((ret = raw_open(&r.rn))) {
		mrl_ctx_destroy(r.ctx);
		return ret;
	}
	int n = B.smoke ? 4 : 400;
	printf("== registration: mrl_mr_reg/dereg vs fi_mr_reg/fi_close (p50, us; ratio = mrl/raw)\n");
	printf("%-6s %-7s %-8s %9s %9s %7s | %9s %9s %7s\n", "memory", "what", "size", "raw reg",
	       "mrl reg", "ratio", "raw dereg", "mrl dereg", "ratio");
	json_part("registration");
	uint64_t *v[4];
	for (int i = 0; i < 4; i++)
		v[i] = calloc((size_t)n, 8);
	/* anonymous: one reserved GiB, never touched (tcp does not pin) */
	void *anon = mmap(NULL, GiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (anon == MAP_FAILED) {
		ret = -errno;
		goto out;
	}
	for (int s = 0; s < 3 && !ret; s++) {
		uint64_t t[4];
		for (int i = 0; i < n && !ret; i++) {
			ret = pair_mapped(&r, anon, rsizes[s], i & 1, t);
			for (int k = 0; k < 4; k++)
				v[k][i] = t[k];
		}
		if (!ret)
			report("anon", "reg", rsizes[s], v, 4, n);
	}
	munmap(anon, GiB);
	static const char *fss[] = {"ext4", "tmpfs"};
	for (int fsi = 0; fsi < 2 && !ret; fsi++) {
		char dir[256], path[300];
		if (scratch_dir(fss[fsi], dir, sizeof(dir))) {
			printf("%s: no scratch directory, skipped\n", fss[fsi]);
			continue;
		}
		snprintf(path, sizeof(path), "%s/f", dir);
		if ((ret = make_sparse(path, GiB)))
			break;
		void *p;
		ret = mrl_file_map(r.ctx, path, 0, GiB, PROT_READ | PROT_WRITE, &p);
		for (int s = 0; s < 3 && !ret; s++) {
			uint64_t t[4];
			for (int i = 0; i < n && !ret; i++) {
				ret = pair_mapped(&r, p, rsizes[s], i & 1, t);
				for (int k = 0; k < 4; k++)
					v[k][i] = t[k];
			}
			if (!ret)
				report(fss[fsi], "reg", rsizes[s], v, 4, n);
		}
		if (p)
			mrl_file_unmap(r.ctx, p, GiB);
		for (int s = 0; s < 3 && !ret; s++) {
			uint64_t t[2];
			for (int i = 0; i < n && !ret; i++) {
				ret = pair_cycle(&r, path, rsizes[s], i & 1, t);
				v[0][i] = t[0];
				v[1][i] = t[1];
			}
			if (!ret)
				report(fss[fsi], "cycle", rsizes[s], v, 2, n);
		}
		unlink(path);
		rmdir(dir);
	}
out:
	json_part_end();
	printf("reg: the file is mapped once (mrl_file_map holds the lease); cycle: map + reg + dereg + unmap,\n"
	       "     the library's lease taken and dropped each time, vs open + mmap + fi_mr_reg + fi_close + munmap + close\n");
	for (int i = 0; i < 4; i++)
		free(v[i]);
	raw_close(&r.rn);
	mrl_ctx_destroy(r.ctx);
	return ret;
}
