/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Shared pieces of the benchmarks: time, percentiles, the JSON writer, the
 * terminal table, and the raw libfabric baseline (the same fi_getinfo hints
 * as src/reg_fabric.c, the same CQ/AV/endpoint setup as src/ep.c). */
#ifndef MRL_BENCH_COMMON_H
#define MRL_BENCH_COMMON_H

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>

#include "mrlease.h"

#define KiB 1024ull
#define MiB (1024ull * 1024)
#define GiB (1024ull * 1024 * 1024)

struct bench_opts {
	bool smoke;          /* tiny sizes: proves the benchmark works, measures nothing */
	const char *outdir;  /* where bench.json, *.dat and *.png go */
	const char *self;    /* argv[0], for the callgrind re-run */
};
extern struct bench_opts B;
extern FILE *J;            /* the run's JSON file */
extern int bench_errors;   /* anything that went wrong: the run exits 1 */

static inline uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* A run narrowed by the environment (e.g. MRL_BENCH_MRS=10000 to profile
 * one configuration): true when var is unset or names this one (the string
 * s, or the number n when s is NULL). */
static inline bool bench_pick(const char *var, const char *s, long n)
{
	const char *v = getenv(var);
	if (!v || !*v)
		return true;
	return s ? !strcmp(v, s) : strtol(v, NULL, 10) == n;
}

/* p-th percentile (0..100) of v[0..n), sorting v. */
static inline double pctl(uint64_t *v, size_t n, double p)
{
	if (!n)
		return 0;
	qsort(v, n, sizeof(*v), cmp_u64);
	size_t i = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);
	return (double)v[i < n ? i : n - 1];
}

static inline void fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "bench: ");
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	if (*mrl_last_error())
		fprintf(stderr, " [%s]", mrl_last_error());
	fputc('\n', stderr);
	bench_errors++;
}

#define DIE_IF(cond, ...)                                                                  \
	do {                                                                               \
		if (cond) {                                                                \
			fail(__VA_ARGS__);                                                 \
			exit(1);                                                           \
		}                                                                          \
	} while (0)

/* JSON: the file is {"meta": {...}, "<part>": [ {...}, ... ], ...}.
 * json_part opens a part's array, json_row adds one object (the caller
 * writes its members), json_part_end closes it. */
void json_part(const char *name);
void json_row(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void json_part_end(void);

/* Accept one peer on a thread while the caller connects (the bootstrap
 * exchange is symmetric). */
struct acc {
	mrl_ep *ep;
	mrl_peer *peer;
	int ret;
};
static inline void *acc_main(void *a)
{
	struct acc *x = a;
	x->ret = mrl_ep_accept(x->ep, 10000, &x->peer);
	return NULL;
}

/* The raw libfabric side of a comparison. */
struct raw_node {
	struct fi_info *info;
	struct fid_fabric *fabric;
	struct fid_domain *domain;
	struct fid_ep *ep;
	struct fid_av *av;
	struct fid_cq *cq;
	int cq_fd;
	bool mr_local, virt_addr, prov_key;
	unsigned char name[64];
	size_t namelen;
};
int raw_open(struct raw_node *n);
void raw_close(struct raw_node *n);
/* Insert b's address into a's AV. */
int raw_connect(struct raw_node *a, struct raw_node *b, fi_addr_t *out);

/* parts */
int bench_fastpath(void);
int bench_callgrind(void);
int bench_callgrind_inner(void);
int bench_fihook(void);
int bench_fihook_inner(void);
int bench_reg(void);
int bench_ureg(void);
int bench_ureg_inner(void);
int bench_breaks(void);
int bench_breaker_inner(const char *path);
int bench_scale(void);
int bench_churn(void);
int bench_interpose(void);
int bench_index(void);
int bench_index_inner(void);
int bench_eofcheck(void);

/* A scratch directory on ext4 (/var/tmp) or tmpfs (/dev/shm); 0 or -errno. */
int scratch_dir(const char *fs, char *dir, size_t sz);
/* a file of size bytes (sparse) */
int make_sparse(const char *path, uint64_t size);
/* A callgrind run's counts by label: each "LABEL POLLS" line of pollf, with
 * the instructions of the dump in dir (cg.out.N) its client request LABEL
 * triggered (0 if none). The number of rows, or -ENOENT without pollf. */
struct cg_row {
	char label[64];
	uint64_t ir, polls;
};
int cg_rows(const char *dir, const char *pollf, struct cg_row *rows, int max);

#endif
