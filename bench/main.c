/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* mrl_bench: what the leases cost, side by side with raw libfabric, and how
 * the library scales. `mrl_bench [--smoke] [--out DIR] [part...]`, parts:
 * fastpath callgrind reg breaks scale churn interpose index fihook eofcheck ureg (default: all). Every figure is
 * measured next to its baseline in the same run. */
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "common.h"

struct bench_opts B;
FILE *J;
int bench_errors;
static bool json_first_part = true, json_first_row;

void json_part(const char *name)
{
	fprintf(J, ",\n\"%s\": [", name);
	json_first_row = true;
	(void)json_first_part;
}

void json_row(const char *fmt, ...)
{
	va_list ap;
	fprintf(J, "%s\n  {", json_first_row ? "" : ",");
	json_first_row = false;
	va_start(ap, fmt);
	vfprintf(J, fmt, ap);
	va_end(ap);
	fputc('}', J);
	fflush(J);
}

void json_part_end(void)
{
	fprintf(J, "\n]");
	fflush(J);
}

/* ---- raw libfabric baseline ---- */

int raw_open(struct raw_node *n)
{
	memset(n, 0, sizeof(*n));
	n->cq_fd = -1;
	struct fi_info *hints = fi_allocinfo();
	if (!hints)
		return -ENOMEM;
	/* exactly what src/reg_fabric.c asks for */
	hints->ep_attr->type = FI_EP_RDM;
	hints->caps = FI_MSG | FI_RMA | FI_READ | FI_WRITE | FI_REMOTE_READ | FI_REMOTE_WRITE |
		      FI_SEND | FI_RECV;
	hints->mode = FI_CONTEXT | FI_CONTEXT2;
	hints->domain_attr->mr_mode = FI_MR_LOCAL | FI_MR_VIRT_ADDR | FI_MR_ALLOCATED | FI_MR_PROV_KEY;
	hints->domain_attr->threading = FI_THREAD_SAFE;
	hints->fabric_attr->prov_name = strdup("tcp;ofi_rxm");
	int ret = fi_getinfo(FI_VERSION(1, 9), "127.0.0.1", NULL, FI_SOURCE, hints, &n->info);
	fi_freeinfo(hints);
	if (ret)
		return ret;
	n->mr_local = n->info->domain_attr->mr_mode & FI_MR_LOCAL;
	n->virt_addr = n->info->domain_attr->mr_mode & FI_MR_VIRT_ADDR;
	n->prov_key = n->info->domain_attr->mr_mode & FI_MR_PROV_KEY;
	if ((ret = fi_fabric(n->info->fabric_attr, &n->fabric, NULL)) ||
	    (ret = fi_domain(n->fabric, n->info, &n->domain, NULL)))
		return ret;
	/* as src/ep.c: a CQ with a wait fd if the provider has one */
	struct fi_cq_attr cqa = {.format = FI_CQ_FORMAT_MSG, .wait_obj = FI_WAIT_FD, .size = 1024};
	ret = fi_cq_open(n->domain, &cqa, &n->cq, NULL);
	if (ret) {
		cqa.wait_obj = FI_WAIT_NONE;
		ret = fi_cq_open(n->domain, &cqa, &n->cq, NULL);
	} else if (fi_control(&n->cq->fid, FI_GETWAIT, &n->cq_fd)) {
		n->cq_fd = -1;
	}
	if (ret)
		return ret;
	struct fi_av_attr ava = {.type = FI_AV_TABLE};
	if ((ret = fi_av_open(n->domain, &ava, &n->av, NULL)) ||
	    (ret = fi_endpoint(n->domain, n->info, &n->ep, NULL)) ||
	    (ret = fi_ep_bind(n->ep, &n->cq->fid, FI_TRANSMIT | FI_RECV)) ||
	    (ret = fi_ep_bind(n->ep, &n->av->fid, 0)) || (ret = fi_enable(n->ep)))
		return ret;
	n->namelen = sizeof(n->name);
	return fi_getname(&n->ep->fid, n->name, &n->namelen);
}

void raw_close(struct raw_node *n)
{
	if (n->ep)
		fi_close(&n->ep->fid);
	if (n->av)
		fi_close(&n->av->fid);
	if (n->cq)
		fi_close(&n->cq->fid);
	if (n->domain)
		fi_close(&n->domain->fid);
	if (n->fabric)
		fi_close(&n->fabric->fid);
	fi_freeinfo(n->info);
	memset(n, 0, sizeof(*n));
}

int raw_connect(struct raw_node *a, struct raw_node *b, fi_addr_t *out)
{
	int ret = fi_av_insert(a->av, b->name, 1, out, 0, NULL);
	return ret == 1 ? 0 : ret < 0 ? ret : -EIO;
}

/* ---- scratch files ---- */

int scratch_dir(const char *fs, char *dir, size_t sz)
{
	const char *base = !strcmp(fs, "tmpfs") ? "/dev/shm" : "/var/tmp";
	struct statfs s;
	snprintf(dir, sz, "%s/mrl-bench-XXXXXX", base);
	if (!mkdtemp(dir))
		return -errno;
	if (statfs(dir, &s) < 0 || (!strcmp(fs, "tmpfs") && s.f_type != 0x01021994) ||
	    (!strcmp(fs, "ext4") && s.f_type != 0xEF53)) {
		rmdir(dir);
		return -ENOTSUP;
	}
	return 0;
}

int make_sparse(const char *path, uint64_t size)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return -errno;
	int ret = ftruncate(fd, (off_t)size) ? -errno : 0;
	close(fd);
	return ret;
}

static void usage(void)
{
	fprintf(stderr, "usage: mrl_bench [--smoke] [--out DIR] [fastpath|callgrind|reg|breaks|scale|churn|interpose|index|fihook|eofcheck|ureg ...]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fn)(void);
	} parts[] = {
		{"fastpath", bench_fastpath}, {"callgrind", bench_callgrind}, {"reg", bench_reg},
		{"breaks", bench_breaks},     {"scale", bench_scale},         {"churn", bench_churn},
		{"interpose", bench_interpose}, {"index", bench_index},     {"fihook", bench_fihook},
		{"eofcheck", bench_eofcheck},
		{"ureg", bench_ureg},
	};
	const size_t nparts = sizeof(parts) / sizeof(parts[0]);
	bool want[16] = {0}, any = false;
	B.self = argv[0];
	if (argc == 3 && !strcmp(argv[1], "--breaker"))
		return bench_breaker_inner(argv[2]); /* before anything is set up or written */
	/* the endpoints authenticate as a real deployment's do */
	setenv("MRLEASE_SECRET", "mrlease-bench-secret-51c2a7d0", 0);
	B.outdir = "results";
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--smoke")) {
			B.smoke = true;
		} else if (!strcmp(argv[i], "--out") && i + 1 < argc) {
			B.outdir = argv[++i];
		} else if (!strcmp(argv[i], "--callgrind-inner")) {
			/* the re-run of this program under valgrind */
			return bench_callgrind_inner();
		} else if (!strcmp(argv[i], "--fihook-inner")) {
			return bench_fihook_inner(); /* the fihook part's re-run under valgrind */
		} else if (!strcmp(argv[i], "--ureg-inner")) {
			return bench_ureg_inner(); /* the ureg part's re-run under valgrind */
		} else if (!strcmp(argv[i], "--index-inner")) {
			return bench_index_inner(); /* the index part's re-run under valgrind */
		} else {
			size_t k;
			for (k = 0; k < nparts && strcmp(argv[i], parts[k].name); k++)
				;
			if (k == nparts)
				usage();
			want[k] = any = true;
		}
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	char mk[512];
	snprintf(mk, sizeof(mk), "%s", B.outdir);
	for (char *q = mk + 1; *q; q++) /* mkdir -p */
		if (*q == '/') {
			*q = 0;
			mkdir(mk, 0755);
			*q = '/';
		}
	mkdir(mk, 0755);
	char jpath[512];
	snprintf(jpath, sizeof(jpath), "%s/bench.json", B.outdir);
	J = fopen(jpath, "w");
	DIE_IF(!J, "cannot write %s: %s", jpath, strerror(errno));
	struct utsname u;
	uname(&u);
	time_t t = time(NULL);
	char stamp[64];
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
	double load[3] = {0};
	getloadavg(load, 3);
	fprintf(J, "{\"meta\": {\"time\": \"%s\", \"kernel\": \"%s\", \"cpus\": %ld, "
		   "\"loadavg_start\": %.2f, \"smoke\": %s, \"provider\": \"tcp;ofi_rxm\", "
		   "\"libfabric\": \"%u.%u\"}",
		stamp, u.release, sysconf(_SC_NPROCESSORS_ONLN), load[0], B.smoke ? "true" : "false",
		FI_MAJOR(fi_version()), FI_MINOR(fi_version()));
	printf("mrl_bench%s: %s, Linux %s, %ld CPUs, load %.2f; results in %s\n",
	       B.smoke ? " (smoke: tiny sizes, the numbers mean nothing)" : "", stamp, u.release,
	       sysconf(_SC_NPROCESSORS_ONLN), load[0], B.outdir);
	for (size_t k = 0; k < nparts; k++) {
		if (any && !want[k])
			continue;
		uint64_t t0 = now_ns();
		int ret = parts[k].fn();
		if (ret < 0)
			fail("%s: %s", parts[k].name, mrl_strerror(ret));
		printf("(%s: %.1f s)\n\n", parts[k].name, (double)(now_ns() - t0) / 1e9);
	}
	getloadavg(load, 3);
	fprintf(J, ",\n\"meta_end\": {\"loadavg_end\": %.2f, \"errors\": %d}\n}\n", load[0],
		bench_errors);
	fclose(J);
	printf("wrote %s%s\n", jpath, bench_errors ? " (with errors)" : "");
	return bench_errors ? 1 : 0;
}
