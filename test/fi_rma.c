/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* A plain libfabric program (it knows nothing of mrlease) for the hook's
 * tests: an owner serving a MAP_SHARED file window as one MR, and a peer
 * streaming verified writes and reads at it over RDM endpoints.
 *   fi_rma owner FILE PORT         map FILE (its whole size), serve until the peer leaves
 *                                  (PORT 0: any; "listening port N" says which)
 *   fi_rma peer HOST PORT STOPFILE STRICT
 *       write then read back 4 KiB blocks round the window until STOPFILE
 *       exists; a block below byte STRICT must read back what was written
 *       (nothing there is punched or truncated by the tests)
 * Provider: $FI_RMA_PROV (default "tcp;ofi_rxm"). FI_RMA_CNTR=1: the peer
 * learns of its operations' completion from a counter only (its transmit
 * CQ is selective and its operations ask for no entry). The peer prints one
 * "stats ..." line per pass and a final "final ..." line. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>

#define BLK 4096

struct wire {
	uint64_t key, base, len;
	uint32_t namelen;
	char name[128];
};

static struct fid_fabric *fab;
static struct fid_domain *dom;
static struct fid_ep *ep;
static struct fid_av *av;
static struct fid_cq *cq;
static struct fid_cntr *cntr; /* FI_RMA_CNTR: completions counted only */
static uint64_t cntr_posted;
static struct fi_info *info;

#define CHECK(call)                                                                          \
	do {                                                                                 \
		int r_ = (call);                                                             \
		if (r_) {                                                                    \
			fprintf(stderr, "%s: %s\n", #call, fi_strerror(-r_));                \
			exit(2);                                                             \
		}                                                                            \
	} while (0)

static void open_fabric(void)
{
	struct fi_info *hints = fi_allocinfo();
	const char *prov = getenv("FI_RMA_PROV");
	hints->ep_attr->type = FI_EP_RDM;
	hints->caps = FI_RMA | FI_MSG;
	hints->domain_attr->mr_mode = FI_MR_VIRT_ADDR | FI_MR_ALLOCATED | FI_MR_PROV_KEY | FI_MR_LOCAL;
	hints->domain_attr->threading = FI_THREAD_SAFE;
	hints->fabric_attr->prov_name = strdup(prov ? prov : "tcp;ofi_rxm");
	CHECK(fi_getinfo(FI_VERSION(1, 9), "127.0.0.1", NULL, FI_SOURCE, hints, &info));
	fi_freeinfo(hints);
	CHECK(fi_fabric(info->fabric_attr, &fab, NULL));
	CHECK(fi_domain(fab, info, &dom, NULL));
	struct fi_cq_attr ca = {.format = FI_CQ_FORMAT_CONTEXT, .wait_obj = FI_WAIT_UNSPEC, .size = 64};
	CHECK(fi_cq_open(dom, &ca, &cq, NULL));
	struct fi_av_attr aa = {.type = FI_AV_TABLE};
	CHECK(fi_av_open(dom, &aa, &av, NULL));
	const char *cn = getenv("FI_RMA_CNTR");
	if (cn && *cn == '1') {
		struct fi_cntr_attr na = {.events = FI_CNTR_EVENTS_COMP, .wait_obj = FI_WAIT_UNSPEC};
		CHECK(fi_cntr_open(dom, &na, &cntr, NULL));
		info->tx_attr->op_flags &= ~FI_COMPLETION;
	}
	CHECK(fi_endpoint(dom, info, &ep, NULL));
	if (cntr) {
		CHECK(fi_ep_bind(ep, &cq->fid, FI_TRANSMIT | FI_RECV | FI_SELECTIVE_COMPLETION));
		CHECK(fi_ep_bind(ep, &cntr->fid, FI_WRITE | FI_READ));
	} else {
		CHECK(fi_ep_bind(ep, &cq->fid, FI_TRANSMIT | FI_RECV));
	}
	CHECK(fi_ep_bind(ep, &av->fid, 0));
	CHECK(fi_enable(ep));
}

/* what open_fabric opened, closed (each side's MRs first) */
static void close_fabric(void)
{
	fi_close(&ep->fid);
	fi_close(&av->fid);
	fi_close(&cq->fid);
	if (cntr)
		fi_close(&cntr->fid);
	fi_close(&dom->fid);
	fi_close(&fab->fid);
	fi_freeinfo(info);
}

static void xfer(int fd, void *p, size_t n, bool out)
{
	for (size_t d = 0; d < n;) {
		ssize_t r = out ? write(fd, (char *)p + d, n - d) : read(fd, (char *)p + d, n - d);
		if (r <= 0) {
			fprintf(stderr, "bootstrap %s: %s\n", out ? "write" : "read", r ? strerror(errno) : "closed");
			exit(2);
		}
		d += (size_t)r;
	}
}

static int owner(const char *path, int port)
{
	int fd = open(path, O_RDWR);
	struct stat st;
	if (fd < 0 || fstat(fd, &st)) {
		perror(path);
		return 2;
	}
	size_t len = (size_t)st.st_size;
	uint8_t *win = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (win == MAP_FAILED) {
		perror("mmap");
		return 2;
	}
	close(fd); /* the mapping is all the owner keeps */
	open_fabric();
	struct fid_mr *mr;
	/* a random key: the state board tells owners apart by key, and other
	 * programs on the host ask for small ones too */
	uint64_t rk = 0;
	size_t ks = info->domain_attr->mr_key_size;
	while (!rk && getrandom(&rk, sizeof(rk), 0) == (ssize_t)sizeof(rk))
		rk &= ks && ks < 8 ? (1ull << (8 * ks)) - 1 : ~0ull >> 16;
	CHECK(fi_mr_reg(dom, win, len, FI_REMOTE_READ | FI_REMOTE_WRITE | FI_READ | FI_WRITE, 0, rk, 0, &mr, NULL));
	struct wire w = {.key = fi_mr_key(mr), .len = len, .namelen = sizeof(w.name)};
	w.base = info->domain_attr->mr_mode & FI_MR_VIRT_ADDR ? (uint64_t)(uintptr_t)win : 0;
	size_t nl = sizeof(w.name);
	CHECK(fi_getname(&ep->fid, w.name, &nl));
	w.namelen = (uint32_t)nl;

	int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	if (bind(ls, (struct sockaddr *)&sa, sizeof(sa)) || listen(ls, 1)) {
		perror("bind/listen");
		return 2;
	}
	socklen_t sl = sizeof(sa);
	getsockname(ls, (struct sockaddr *)&sa, &sl);
	printf("listening port %d key %#llx len %zu\n", ntohs(sa.sin_port), (unsigned long long)w.key, len);
	fflush(stdout);
	int s = accept(ls, NULL, NULL);
	struct wire pw;
	xfer(s, &w, sizeof(w), true);
	xfer(s, &pw, sizeof(pw), false);
	fi_addr_t pa;
	if (fi_av_insert(av, pw.name, 1, &pa, 0, NULL) != 1)
		return 2;
	/* progress (the provider serves the peer's RMA here) until it leaves */
	for (;;) {
		struct fi_cq_entry e;
		fi_cq_sread(cq, &e, 1, NULL, 50);
		struct pollfd p = {.fd = s, .events = POLLIN};
		if (poll(&p, 1, 0) > 0)
			break;
	}
	printf("owner done\n");
	fi_close(&mr->fid);
	close_fabric();
	return 0;
}

/* one operation, waited for: 0, or the completion's error */
static int wait_op(void)
{
	if (cntr) { /* the counter (or its error count) moves past what was posted */
		uint64_t errs0 = fi_cntr_readerr(cntr);
		cntr_posted++;
		for (;;) {
			if (fi_cntr_readerr(cntr) != errs0) {
				cntr_posted--; /* the failed one is on the error count */
				return FI_EIO;
			}
			if (fi_cntr_read(cntr) >= cntr_posted)
				return 0;
			fi_cntr_wait(cntr, cntr_posted, 100);
		}
	}
	for (;;) {
		struct fi_cq_entry e;
		ssize_t r = fi_cq_sread(cq, &e, 1, NULL, 100);
		if (r == 1)
			return 0;
		if (r == -FI_EAVAIL) {
			struct fi_cq_err_entry err = {0};
			fi_cq_readerr(cq, &err, 0);
			return err.err ? err.err : FI_EOTHER;
		}
	}
}

static int post(bool wr, void *buf, void *desc, fi_addr_t pa, uint64_t addr, uint64_t key)
{
	for (;;) {
		ssize_t r = wr ? fi_write(ep, buf, BLK, desc, pa, addr, key, NULL)
			       : fi_read(ep, buf, BLK, desc, pa, addr, key, NULL);
		if (r == 0)
			return wait_op();
		if (r != -FI_EAGAIN)
			return (int)-r;
		struct fi_cq_entry e;
		fi_cq_read(cq, &e, 0);
		if (cntr) /* progress, and the hook counts out what the counter shows done */
			fi_cntr_read(cntr);
	}
}

static int peer(const char *host, int port, const char *stop, uint64_t strict)
{
	open_fabric();
	uint8_t *out = aligned_alloc(BLK, BLK), *in = aligned_alloc(BLK, BLK);
	struct fid_mr *omr, *imr;
	CHECK(fi_mr_reg(dom, out, BLK, FI_WRITE | FI_READ, 0, 1, 0, &omr, NULL));
	CHECK(fi_mr_reg(dom, in, BLK, FI_WRITE | FI_READ, 0, 2, 0, &imr, NULL));
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	inet_pton(AF_INET, host, &sa.sin_addr);
	if (connect(s, (struct sockaddr *)&sa, sizeof(sa))) {
		perror("connect");
		return 2;
	}
	struct wire w, me = {.namelen = sizeof(me.name)};
	size_t nl = sizeof(me.name);
	CHECK(fi_getname(&ep->fid, me.name, &nl));
	xfer(s, &w, sizeof(w), false);
	xfer(s, &me, sizeof(me), true);
	fi_addr_t pa;
	if (fi_av_insert(av, w.name, 1, &pa, 0, NULL) != 1)
		return 2;
	uint64_t nblk = w.len / BLK, seq = 0;
	uint64_t ok = 0, errs = 0, strict_errs = 0, strict_bad = 0, other_bad = 0, passes = 0;
	int last_err = 0;
	printf("streaming key %#llx blocks %llu\n", (unsigned long long)w.key, (unsigned long long)nblk);
	fflush(stdout);
	while (access(stop, F_OK) != 0) {
		for (uint64_t b = 0; b < nblk; b++) {
			uint64_t off = b * BLK;
			seq++;
			for (size_t i = 0; i < BLK / 8; i++)
				((uint64_t *)out)[i] = seq * 1000003 + i;
			int e1 = post(true, out, fi_mr_desc(omr), pa, w.base + off, w.key);
			memset(in, 0, BLK);
			int e2 = e1 ? 0 : post(false, in, fi_mr_desc(imr), pa, w.base + off, w.key);
			if (e1 || e2) {
				errs++;
				last_err = e1 ? e1 : e2;
				if (off + BLK <= strict)
					strict_errs++;
				continue;
			}
			ok++;
			if (memcmp(in, out, BLK)) {
				if (off + BLK <= strict)
					strict_bad++;
				else
					other_bad++;
			}
		}
		passes++;
		printf("stats pass %llu ok %llu errors %llu strict_errors %llu strict_bad %llu other_bad %llu last_error %s\n",
		       (unsigned long long)passes, (unsigned long long)ok, (unsigned long long)errs,
		       (unsigned long long)strict_errs, (unsigned long long)strict_bad,
		       (unsigned long long)other_bad, last_err ? fi_strerror(last_err) : "none");
		fflush(stdout);
	}
	printf("final ok %llu errors %llu strict_errors %llu strict_bad %llu other_bad %llu\n",
	       (unsigned long long)ok, (unsigned long long)errs, (unsigned long long)strict_errs,
	       (unsigned long long)strict_bad, (unsigned long long)other_bad);
	close(s);
	fi_close(&omr->fid);
	fi_close(&imr->fid);
	close_fabric();
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 4 && !strcmp(argv[1], "owner"))
		return owner(argv[2], atoi(argv[3]));
	if (argc == 6 && !strcmp(argv[1], "peer"))
		return peer(argv[2], atoi(argv[3]), argv[4], strtoull(argv[5], NULL, 0));
	fprintf(stderr, "usage: fi_rma owner FILE PORT | fi_rma peer HOST PORT STOPFILE STRICT\n");
	return 2;
}
