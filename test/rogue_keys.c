/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* A stranger on the network, built from plain libfabric and nothing of
 * mrlease: it knows the owner's fabric address (on the command line, as a
 * port scan or a packet capture would give it) and tries remote keys.
 * Used by t_rogue_keys; every line it prints is one finding.
 *
 *   rogue_keys ADDRHEX try KIND KEY LEN   one read (r) or write (w) of LEN
 *                                         bytes at offset 0 under KEY
 *   rogue_keys ADDRHEX count KEY LEN N    counting: KEY+-1..N, 0x10000.. and
 *                                         N random keys, a read of each
 *
 * "try" prints: try KIND KEY status=S nonzero=Z (nonzero: bytes read that
 * are not 0, i.e. that came from somewhere). "count" prints: count tried=T
 * completed=C nonzero=Z. A write sends 0x5a bytes. Exit 0 unless the rogue
 * itself could not run. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>

static struct fi_info *info;
static struct fid_fabric *fab;
static struct fid_domain *dom;
static struct fid_ep *ep;
static struct fid_av *av;
static struct fid_cq *cq;
static fi_addr_t owner;
static unsigned char oname[256];
static size_t onamelen;

static void die(const char *what, int ret)
{
	fprintf(stderr, "rogue: %s: %s\n", what, fi_strerror(ret < 0 ? -ret : ret));
	exit(2);
}

static void ep_close(void)
{
	if (ep)
		fi_close(&ep->fid);
	if (av)
		fi_close(&av->fid);
	if (cq)
		fi_close(&cq->fid);
	ep = NULL, av = NULL, cq = NULL;
}

/* a fresh endpoint: after a refusal the provider has dropped the connection */
static void ep_open(void)
{
	struct fi_cq_attr ca = {.format = FI_CQ_FORMAT_CONTEXT, .size = 64};
	struct fi_av_attr aa = {.type = FI_AV_TABLE};
	int ret;
	if ((ret = fi_endpoint(dom, info, &ep, NULL)))
		die("fi_endpoint", ret);
	if ((ret = fi_cq_open(dom, &ca, &cq, NULL)))
		die("fi_cq_open", ret);
	if ((ret = fi_av_open(dom, &aa, &av, NULL)))
		die("fi_av_open", ret);
	if ((ret = fi_ep_bind(ep, &cq->fid, FI_TRANSMIT | FI_RECV)) ||
	    (ret = fi_ep_bind(ep, &av->fid, 0)) || (ret = fi_enable(ep)))
		die("endpoint setup", ret);
	if (fi_av_insert(av, oname, 1, &owner, 0, NULL) != 1)
		die("fi_av_insert", -FI_EINVAL);
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* One RMA under key; 0 when the provider completed it, else -errno. */
static int attempt(char kind, uint64_t key, void *buf, size_t len)
{
	struct fi_context2 fctx;
	ssize_t ret;
	double hang = now() + 60; /* a bound for a hang, not a measurement */
	do {
		ret = kind == 'w' ? fi_write(ep, buf, len, NULL, owner, 0, key, &fctx)
				  : fi_read(ep, buf, len, NULL, owner, 0, key, &fctx);
		if (ret == -FI_EAGAIN)
			fi_cq_read(cq, NULL, 0);
	} while (ret == -FI_EAGAIN && now() < hang);
	if (ret)
		return (int)ret;
	for (;;) {
		struct fi_cq_entry e;
		ssize_t n = fi_cq_read(cq, &e, 1);
		if (n == 1)
			return 0;
		if (n == -FI_EAVAIL) {
			struct fi_cq_err_entry ee;
			memset(&ee, 0, sizeof(ee));
			fi_cq_readerr(cq, &ee, 0);
			ep_close();
			ep_open();
			return -(ee.err ? ee.err : FI_EIO);
		}
		if (now() > hang) {
			ep_close();
			ep_open();
			return -FI_ETIMEDOUT;
		}
	}
}

static size_t nonzero(const unsigned char *b, size_t len)
{
	size_t z = 0;
	for (size_t i = 0; i < len; i++)
		z += b[i] != 0;
	return z;
}

int main(int argc, char **argv)
{
	if (argc < 6) {
		fprintf(stderr, "usage: rogue_keys ADDRHEX try r|w KEY LEN | count KEY LEN N\n");
		return 2;
	}
	const char *hex = argv[1];
	onamelen = strlen(hex) / 2;
	if (onamelen > sizeof(oname))
		return 2;
	for (size_t i = 0; i < onamelen; i++)
		sscanf(hex + 2 * i, "%2hhx", &oname[i]);

	struct fi_info *hints = fi_allocinfo();
	hints->ep_attr->type = FI_EP_RDM;
	hints->caps = FI_MSG | FI_RMA | FI_READ | FI_WRITE;
	hints->mode = FI_CONTEXT | FI_CONTEXT2;
	hints->domain_attr->mr_mode = FI_MR_LOCAL | FI_MR_VIRT_ADDR | FI_MR_ALLOCATED | FI_MR_PROV_KEY;
	hints->fabric_attr->prov_name = strdup("tcp;ofi_rxm");
	int ret = fi_getinfo(FI_VERSION(1, 9), "127.0.0.1", NULL, FI_SOURCE, hints, &info);
	fi_freeinfo(hints);
	if (ret)
		die("fi_getinfo", ret);
	if ((ret = fi_fabric(info->fabric_attr, &fab, NULL)) || (ret = fi_domain(fab, info, &dom, NULL)))
		die("fabric/domain", ret);
	if (info->domain_attr->mr_mode & FI_MR_LOCAL) {
		fprintf(stderr, "rogue: this provider wants local registrations; not written for it\n");
		return 2;
	}
	ep_open();

	if (!strcmp(argv[2], "try") && argc >= 6) {
		char kind = argv[3][0];
		uint64_t key = strtoull(argv[4], NULL, 0);
		size_t len = strtoull(argv[5], NULL, 0);
		unsigned char *b = malloc(len);
		memset(b, kind == 'w' ? 0x5a : 0, len);
		int st = attempt(kind, key, b, len);
		if (kind == 'w') { /* the target handles a read after the write: it is done */
			unsigned char one;
			attempt('r', key, &one, 1);
		}
		printf("try %c %#" PRIx64 " status=%d nonzero=%zu\n", kind, key, st,
		       kind == 'r' ? nonzero(b, len) : 0);
		free(b);
	} else if (!strcmp(argv[2], "count") && argc >= 6) {
		uint64_t known = strtoull(argv[3], NULL, 0);
		size_t len = strtoull(argv[4], NULL, 0);
		int n = atoi(argv[5]);
		unsigned char *b = malloc(len);
		int tried = 0, done = 0;
		size_t nz = 0;
		for (int i = 0; i < 4 * n; i++) {
			uint64_t key;
			if (i < n)
				key = known + 1 + (uint64_t)i; /* the ones after a key it was given */
			else if (i < 2 * n)
				key = known - 1 - (uint64_t)(i - n); /* and before */
			else if (i < 3 * n)
				key = 0x10000 + (uint64_t)(i - 2 * n); /* counting from a base */
			else if (getrandom(&key, sizeof(key), 0) != sizeof(key))
				die("getrandom", -FI_EIO);
			memset(b, 0, len);
			tried++;
			if (attempt('r', key, b, len) == 0)
				done++;
			nz += nonzero(b, len);
		}
		printf("count tried=%d completed=%d nonzero=%zu\n", tried, done, nz);
		free(b);
	} else {
		fprintf(stderr, "rogue: unknown command %s\n", argv[2]);
		return 2;
	}
	fflush(stdout);
	ep_close();
	fi_close(&dom->fid);
	fi_close(&fab->fid);
	fi_freeinfo(info);
	return 0;
}
