/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The hook's objects in one process, under the sanitizers (libfabric loads
 * libmrlease-fi.so only into unsanitized programs, so this test links the
 * hook's sources itself and installs it over a tcp;ofi_rxm fabric as
 * libfabric would). An MR over a file on a disk filesystem, written through
 * a hooked endpoint to itself: a hole punched under it (another process,
 * fanotify) is a break that keeps the application's key and descriptor and
 * re-registers the provider's MR under them (writes succeed again); a
 * truncate fences the tail: a write there is refused at post
 * (-FI_EKEYREJECTED), one below it still lands; an owner that discards its
 * tail completes a write past the end without landing it and a read there
 * with zeroes, and atomics there likewise (a fetch or compare returns
 * zeroes; one across the end is refused). An inject write and an inject
 * atomic give the application no completion yet stay counted in flight
 * until delivered (the hook reads their completions itself). Run twice: then in strict key mode (MRLEASE_FI_STRICT_KEYS=1,
 * a fresh provider key per registration, as providers that choose their
 * own keys give): the application's key stays, the provider's changes at
 * the restore, and the hooked writer's posts are translated (invisible). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "../fi/board.h"
#include "../fi/hook.h"
#include "helpers.h"

#define LEN (256 * 1024)
#define BLK 4096

static struct fid_ep *ep;
static struct fid_cq *cq;
static fi_addr_t self;

/* The next completion on the hook's CQ: 0 if its context is ctx, -EPROTO
 * if another's, or the error it carries (negated). */
static int cq_wait(void *ctx)
{
	for (;;) {
		struct fi_cq_entry e;
		ssize_t n = fi_cq_read(cq, &e, 1);
		if (n == 1)
			return e.op_context == ctx ? 0 : -EPROTO;
		if (n == -FI_EAVAIL) {
			struct fi_cq_err_entry err = {0};
			fi_cq_readerr(cq, &err, 0);
			return -err.err;
		}
	}
}

/* one write (or read) of BLK at off of the MR, waited for: 0 or -errno
 * (post or completion) */
static int rma_blk(bool wr, void *buf, void *desc, uint64_t base, uint64_t off, uint64_t key)
{
	ssize_t r;
	do {
		r = wr ? fi_write(ep, buf, BLK, desc, self, base + off, key, buf)
		       : fi_read(ep, buf, BLK, desc, self, base + off, key, buf);
		if (r == -FI_EAGAIN) {
			struct fi_cq_entry e;
			fi_cq_read(cq, &e, 0);
		}
	} while (r == -FI_EAGAIN);
	if (r)
		return (int)r;
	int w = cq_wait(buf);
	CHECK(w != -EPROTO, "completion gives back the application's context");
	return w == -EPROTO ? 0 : w;
}

static int write_blk(void *buf, void *desc, uint64_t base, uint64_t off, uint64_t key)
{
	return rma_blk(true, buf, desc, base, off, key);
}

/* an operation that gives the application no completion (an inject) was
 * posted to a hooked owner's MR e: it stays counted in flight until its
 * completion, which only the hook reads, says it was delivered. 0 once
 * counted out; -1 if the application was handed an entry for it, or an error. */
static int silent_done(struct board_ent *e)
{
	if (atomic_load(&e->inflight) != 1)
		return -1; /* counted out at post: nothing would hold a pause for it */
	while (atomic_load(&e->inflight) != 0) {
		struct fi_cq_entry ce;
		ssize_t n = fi_cq_read(cq, &ce, 1);
		if (n != -FI_EAGAIN)
			return -1;
	}
	return 0;
}

/* one atomic (op on uint64 elements at off), waited for: 0 or -errno;
 * kind 0 plain, 1 fetch (into *res), 2 compare (with *cmp, into *res) */
static int atomic_blk(int kind, uint64_t *val, size_t n, uint64_t *cmp, uint64_t *res,
		      uint64_t base, uint64_t off, uint64_t key, enum fi_op aop)
{
	ssize_t r;
	do {
		r = kind == 0 ? fi_atomic(ep, val, n, NULL, self, base + off, key, FI_UINT64, aop, val)
		    : kind == 1 ? fi_fetch_atomic(ep, val, n, NULL, res, NULL, self, base + off, key,
						 FI_UINT64, aop, val)
				: fi_compare_atomic(ep, val, n, NULL, cmp, NULL, res, NULL, self, base + off,
						    key, FI_UINT64, aop, val);
		if (r == -FI_EAGAIN) {
			struct fi_cq_entry e;
			fi_cq_read(cq, &e, 0);
		}
	} while (r == -FI_EAGAIN);
	if (r)
		return (int)r;
	return cq_wait(val);
}

static char dir[] = "/var/tmp/mrl-fihook-XXXXXX";
static char logp[256];

/* the log has a line holding both a and b */
static bool log_has2(const char *a, const char *b)
{
	char line[1024];
	FILE *f = fopen(logp, "r");
	bool found = false;
	while (f && !found && fgets(line, sizeof(line), f))
		found = strstr(line, a) && strstr(line, b);
	if (f)
		fclose(f);
	return found;
}

static void scenario(bool strict)
{
	char path[256], cmd[600];
	snprintf(path, sizeof(path), "%s/f%s", dir, strict ? ".strict" : "");
	if (strict)
		setenv("MRLEASE_FI_STRICT_KEYS", "1", 1);
	else
		unsetenv("MRLEASE_FI_STRICT_KEYS");
	int fd = open(path, O_RDWR | O_CREAT, 0600);
	CHECK(fd >= 0 && ftruncate(fd, LEN) == 0, "file");
	uint8_t *win = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	CHECK(win != MAP_FAILED, "mmap");
	close(fd);
	memset(win, 0x5a, LEN);

	/* a fabric as the application opens it, then the hook over it */
	struct fi_info *hints = fi_allocinfo(), *info;
	hints->ep_attr->type = FI_EP_RDM;
	hints->caps = FI_RMA | FI_MSG | FI_ATOMIC;
	hints->domain_attr->mr_mode = FI_MR_VIRT_ADDR | FI_MR_ALLOCATED | FI_MR_PROV_KEY | FI_MR_LOCAL;
	hints->domain_attr->threading = FI_THREAD_SAFE;
	hints->fabric_attr->prov_name = strdup("tcp;ofi_rxm");
	CHECK(fi_getinfo(FI_VERSION(1, 9), "127.0.0.1", NULL, FI_SOURCE, hints, &info) == 0,
	      "fi_getinfo tcp;ofi_rxm");
	fi_freeinfo(hints);
	struct fid_fabric *hfab, *fab;
	CHECK(fi_fabric(info->fabric_attr, &hfab, NULL) == 0, "fi_fabric");
	struct fi_provider rxm = {.name = "ofi_rxm"};
	struct fi_fabric_attr fa = {.fabric = hfab};
	CHECK(fi_prov_ini() == &hook_prov && hook_prov.getinfo == NULL, "a hooking provider");
	CHECK(hook_prov.fabric(&fa, &fab, &rxm) == 0 && fab != hfab, "the hook wraps the fabric");
	struct fid_domain *dom;
	CHECK(fi_domain(fab, info, &dom, NULL) == 0, "fi_domain through the hook");
	struct fi_cq_attr ca = {.format = FI_CQ_FORMAT_CONTEXT, .size = 64};
	CHECK(fi_cq_open(dom, &ca, &cq, NULL) == 0, "cq");
	struct fid_av *av;
	struct fi_av_attr aa = {.type = FI_AV_TABLE};
	CHECK(fi_av_open(dom, &aa, &av, NULL) == 0, "av");
	CHECK(fi_endpoint(dom, info, &ep, NULL) == 0, "endpoint");
	CHECK(fi_ep_bind(ep, &cq->fid, FI_TRANSMIT | FI_RECV) == 0, "bind the hook's cq");
	CHECK(fi_ep_bind(ep, &av->fid, 0) == 0, "bind av");
	CHECK(fi_enable(ep) == 0, "enable");
	char name[128];
	size_t nl = sizeof(name);
	CHECK(fi_getname(&ep->fid, name, &nl) == 0 && fi_av_insert(av, name, 1, &self, 0, NULL) == 1,
	      "own address");

	struct fid_mr *mr, *lmr;
	/* a random key: the state board tells owners apart by key, and other
	 * programs on the host (other runs of this test) ask for small ones too */
	uint64_t rk = 0;
	size_t ks = info->domain_attr->mr_key_size;
	while (!rk && getrandom(&rk, sizeof(rk), 0) == (ssize_t)sizeof(rk))
		rk &= ks && ks < 8 ? (1ull << (8 * ks)) - 1 : ~0ull >> 16;
	CHECK(fi_mr_reg(dom, win, LEN, FI_REMOTE_READ | FI_REMOTE_WRITE | FI_READ | FI_WRITE, 0, rk, 0,
			&mr, NULL) == 0, "register the window");
	uint8_t *buf = aligned_alloc(BLK, BLK);
	CHECK(fi_mr_reg(dom, buf, BLK, FI_READ | FI_WRITE, 0, 1, 0, &lmr, NULL) == 0, "register a buffer");
	struct hook_mr *hm = (struct hook_mr *)mr;
	uint64_t key = fi_mr_key(mr);
	void *desc = fi_mr_desc(mr);
	CHECK(hm->lease != 0 && hm->bent != NULL, "the window is leased and on the board");
	CHECK(desc == hm && hook_desc(desc) != NULL, "the descriptor is the hook's, over the provider's");
	char kstr[64];
	snprintf(kstr, sizeof(kstr), "key %#llx ", (unsigned long long)key);
	uint64_t pkey0 = atomic_load(&hm->pkey);
	CHECK(!strict || pkey0 != key, "strict keys: the application's key is not the provider's");
	uint64_t base = info->domain_attr->mr_mode & FI_MR_VIRT_ADDR ? (uintptr_t)win : 0;

	memset(buf, 1, BLK);
	CHECK(write_blk(buf, fi_mr_desc(lmr), base, 0, key) == 0 && win[0] == 1, "a write lands");
	unsigned long long regs0 = atomic_load(&hm->dom->n.regs);

	snprintf(cmd, sizeof(cmd), "fallocate --punch-hole -o 131072 -l 16384 %s", path);
	CHECK(system(cmd) == 0, "punch");
	/* the punch returned: its break landed; the restore follows at once */
	const char *restored = strict ? "now over provider key" : "same key";
	for (int i = 0; i < 100000 && !log_has2(kstr, restored); i++)
		usleep(1000);
	CHECK(log_has2(kstr, "cause punch-hole"), "the break is logged with its cause");
	CHECK(log_has2(kstr, restored), "restored");
	CHECK(!strict || (atomic_load(&hm->pkey) != pkey0 && atomic_load(&hm->bent->pkey) == atomic_load(&hm->pkey)),
	      "strict keys: the restore got a new provider key, on the board");
	CHECK(fi_mr_key(mr) == key && fi_mr_desc(mr) == desc, "key and descriptor unchanged");
	CHECK(atomic_load(&hm->hmr) != NULL && atomic_load(&hm->dom->n.regs) > regs0,
	      "the provider's registration was made anew");
	memset(buf, 2, BLK);
	CHECK(write_blk(buf, fi_mr_desc(lmr), base, 8192, key) == 0 && win[8192] == 2,
	      "a write after the restore lands, same key");
	/* an atomic after the restore (translated too in strict mode) */
	uint64_t *acc = (uint64_t *)(win + 12288), before = *acc, one = 5;
	ssize_t ar;
	do {
		ar = fi_atomic(ep, &one, 1, NULL, self, base + 12288, key, FI_UINT64, FI_SUM, &one);
		if (ar == -FI_EAGAIN) {
			struct fi_cq_entry e;
			fi_cq_read(cq, &e, 0);
		}
	} while (ar == -FI_EAGAIN);
	int aerr = ar ? (int)ar : cq_wait(&one);
	CHECK(aerr == 0 && *acc == before + 5, "an atomic after the restore lands (%d)", aerr);

	/* injects: no completion for the application, yet counted in flight
	 * until delivered (the owner's pause waits for them) */
	uint8_t small[64];
	memset(small, 7, sizeof(small));
	ssize_t ir;
	while ((ir = fi_inject_write(ep, small, sizeof(small), self, base + 16384, key)) == -FI_EAGAIN) {
		struct fi_cq_entry e;
		fi_cq_read(cq, &e, 0);
	}
	memset(small, 0, sizeof(small)); /* the inject's buffer is free on return */
	CHECK(ir == 0 && silent_done(hm->bent) == 0 && win[16384] == 7 && win[16384 + 63] == 7,
	      "an inject write is counted in flight until delivered, gives no completion, lands (%zd)", ir);
	uint64_t *acc2 = (uint64_t *)(win + 20480), before2 = *acc2, three = 3;
	while ((ir = fi_inject_atomic(ep, &three, 1, self, base + 20480, key, FI_UINT64, FI_SUM)) == -FI_EAGAIN) {
		struct fi_cq_entry e;
		fi_cq_read(cq, &e, 0);
	}
	CHECK(ir == 0 && silent_done(hm->bent) == 0 && *acc2 == before2 + 3,
	      "an inject atomic is counted in flight until delivered, gives no completion, lands (%zd)", ir);

	snprintf(cmd, sizeof(cmd), "truncate -s 196608 %s", path);
	CHECK(system(cmd) == 0, "truncate");
	for (int i = 0; i < 100000 && !log_has2(kstr, "bytes 0+196608 cause truncated"); i++)
		usleep(1000);
	CHECK(log_has2(kstr, "fence: key"), "the tail is fenced");
	CHECK(atomic_load(&hm->bent->valid) == 196608, "the board says what is still served");
	memset(buf, 3, BLK);
	CHECK(write_blk(buf, fi_mr_desc(lmr), base, 200000, key) == -FI_EKEYREJECTED,
	      "a write past the new end is refused at post");
	CHECK(write_blk(buf, fi_mr_desc(lmr), base, 4096, key) == 0 && win[4096] == 3,
	      "a write below it lands");
	/* an owner whose tail is discarded (MRLEASE_FI_TAIL=discard, or under
	 * an MPI launcher): wholly past the end, a write completes and lands
	 * nowhere, a read completes with zeroes; one across the end is refused */
	hm->bent->tail = BT_DISCARD;
	unsigned long long dis0 = atomic_load(&hook_discarded);
	CHECK(write_blk(buf, fi_mr_desc(lmr), base, 200704, key) == 0,
	      "a write past the new end completes (discarded)");
	memset(buf, 0xee, BLK);
	CHECK(rma_blk(false, buf, fi_mr_desc(lmr), base, 204800, key) == 0 && buf[0] == 0 &&
	      buf[BLK - 1] == 0, "a read past the new end completes with zeroes");
	/* atomics past the end: completed by the hook, nothing changed, a
	 * fetch or compare returns zeroes; one across the end is refused */
	uint64_t v[2] = {9, 9}, cmpv[2] = {0, 0}, res[2] = {~0ull, ~0ull};
	CHECK(atomic_blk(0, v, 2, NULL, NULL, base, 200704 + 64, key, FI_SUM) == 0,
	      "an atomic past the new end completes (discarded)");
	CHECK(atomic_blk(1, v, 2, NULL, res, base, 204800 + 64, key, FI_SUM) == 0 && res[0] == 0 && res[1] == 0,
	      "a fetching atomic past the new end completes, fetching zeroes");
	res[0] = res[1] = ~0ull;
	CHECK(atomic_blk(2, v, 1, cmpv, res, base, 208896, key, FI_CSWAP) == 0 && res[0] == 0 && res[1] == ~0ull,
	      "a compare atomic past the new end completes, its old value zero");
	CHECK(atomic_load(&hook_discarded) == dis0 + 5, "all five counted as discarded");
	CHECK(atomic_blk(0, v, 2, NULL, NULL, base, 196608 - 8, key, FI_SUM) == -FI_EKEYREJECTED,
	      "an atomic across the new end is refused");
	uint64_t below = *(uint64_t *)(win + 196608 - 64);
	CHECK(atomic_blk(1, v, 1, NULL, res, base, 196608 - 64, key, FI_SUM) == 0 && res[0] == below &&
	      *(uint64_t *)(win + 196608 - 64) == below + 9, "a fetching atomic below the end lands");
	CHECK(write_blk(buf, fi_mr_desc(lmr), base, 196608 - 2048, key) == -FI_EKEYREJECTED,
	      "a write across the new end is still refused");
	struct stat fst;
	CHECK(stat(path, &fst) == 0 && fst.st_size == 196608, "nothing reached the file past its end");
	CHECK(rma_blk(false, buf, fi_mr_desc(lmr), base, 4096, key) == 0 && buf[0] == 3,
	      "a read below the end reads the file");

	CHECK(fi_close(&mr->fid) == 0 && fi_close(&lmr->fid) == 0, "close MRs");
	CHECK(fi_close(&ep->fid) == 0, "close ep");
	CHECK(fi_close(&av->fid) == 0 && fi_close(&cq->fid) == 0, "close av, cq");
	CHECK(fi_close(&dom->fid) == 0, "close domain");
	CHECK(log_has2("summary: domain on tcp;ofi_rxm: 2 MRs (2 leased", ""), "summary at close");
	CHECK(fi_close(&fab->fid) == 0, "close fabric");
	fi_freeinfo(info);
	munmap(win, LEN);
	free(buf);
}

int main(void)
{
	if (geteuid() != 0)
		t_skip("fanotify pre-content events need root");
	CHECK(mkdtemp(dir), "mkdtemp");
	struct statfs sf;
	if (statfs(dir, &sf) == 0 && sf.f_type == 0x01021994) /* TMPFS_MAGIC */
		t_skip("/var/tmp is tmpfs: no fanotify pre-content events");
	snprintf(logp, sizeof(logp), "%s/log", dir);
	setenv("MRLEASE_LOG", logp, 1);
	scenario(false);
	scenario(true);
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd)) {
	}
	printf("hook in-process: key and descriptor kept across a punch (also with a fresh provider key under it), "
	       "tail refused (or discarded) after a truncate\n");
	return t_done("t_fi_hook");
}
