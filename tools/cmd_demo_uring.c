/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* `mrlease demo --device uring`: the orphaned-page hazard of a pinned device,
 * shown with io_uring fixed buffers. A producer process streams known pages
 * over a socket; the owner READ_FIXEDs them into a tmpfs file registered as
 * a fixed buffer; an adversary process punches holes and truncates then
 * extends the file with fallocate(1) and truncate(1). After every page the
 * owner reads the file back (pread): a page the kernel said it wrote, that
 * the file does not hold, with no change by the adversary in between, is
 * lost. Leases off: the application pins the buffer itself. Leases on: the
 * buffer is an MR of the library's "uring" registrar. --policy redirect: a
 * change points the slot at scratch; the pages read in meanwhile are
 * discarded (counted, never READ_FIXED errors) and the owner moves the MR
 * back onto the file (mrl_mr_restore) as soon as the change has landed. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <liburing.h>

#include "mrlease.h"
#include "cli.h"

#define PG 4096u

/* Page seq of the stream; never 0, so a hole never passes for data. */
static uint8_t ubyte(uint64_t seq, unsigned i)
{
	return (uint8_t)(((seq * 0x9e3779b97f4a7c15ull) >> 32) + i * 13) | 1;
}

/* Shared with the adversary: odd while one of its changes is under way. */
struct shared {
	_Atomic uint64_t epoch;
	_Atomic int stop;
	unsigned punches, truncates, retries, tool_errors;
};

static void producer(int sock)
{
	uint8_t page[PG];
	signal(SIGPIPE, SIG_IGN);
	for (uint64_t seq = 0;; seq++) {
		for (unsigned i = 0; i < PG; i++)
			page[i] = ubyte(seq, i);
		for (size_t done = 0; done < PG;) {
			ssize_t n = write(sock, page + done, PG - done);
			if (n <= 0)
				_exit(0); /* the owner hung up */
			done += (size_t)n;
		}
	}
}

static void adversary(struct shared *sh, const char *path, uint64_t size)
{
	uint64_t rng = 0x5eed;
	char a1[32], a2[32], sz[32];
	usleep(300000);
	while (!atomic_load(&sh->stop)) {
		cli_rand(&rng);
		atomic_fetch_add(&sh->epoch, 1);
		if ((rng >> 33) % 4 == 0) {
			/* truncate to zero, then back */
			for (int k = 0; k < 2; k++) {
				snprintf(sz, sizeof(sz), "%" PRIu64, k ? size : 0);
				char *argv[] = {"truncate", "-s", sz, (char *)path, NULL};
				sh->tool_errors += cli_run_tool_retry(argv, 400, &sh->retries, NULL) != 0;
			}
			sh->truncates++;
		} else {
			uint64_t pages = size / PG;
			uint64_t off = ((rng >> 8) % pages) * PG;
			uint64_t len = (1 + (rng >> 24) % 8) * PG;
			snprintf(a1, sizeof(a1), "%" PRIu64, off);
			snprintf(a2, sizeof(a2), "%" PRIu64, len);
			char *argv[] = {"fallocate", "--punch-hole", "-o", a1, "-l", a2, (char *)path, NULL};
			sh->tool_errors += cli_run_tool(argv, NULL) != 0;
			sh->punches++;
		}
		atomic_fetch_add(&sh->epoch, 1);
		usleep(100000 + (unsigned)((rng >> 40) % 150000));
	}
}

struct owner {
	const struct cli_opts *o;
	uint64_t size;
	struct io_uring ring;
	int sock, fd;
	uint8_t *buf;
	mrl_ctx *ctx;
	mrl_mr_t mr;
	uint64_t pages, bytes, lost, lost_pages, verified, raced, refused, rereg;
	uint64_t scratch_pages, failed; /* redirect: pages read into scratch; READ_FIXED errors */
	bool redirect;
};

/* READ_FIXED one whole page (a stream socket may return less). */
static int read_page(struct owner *w, uint8_t *dst, unsigned idx)
{
	for (unsigned done = 0; done < PG;) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);
		struct io_uring_cqe *cqe;
		io_uring_prep_read_fixed(sqe, w->sock, dst + done, PG - done, 0, (int)idx);
		io_uring_submit(&w->ring);
		int ret = io_uring_wait_cqe(&w->ring, &cqe);
		if (ret)
			return ret;
		ret = cqe->res;
		io_uring_cqe_seen(&w->ring, cqe);
		if (ret <= 0)
			return ret ? ret : -EPIPE;
		done += (unsigned)ret;
	}
	return 0;
}

/* A fenced MR (truncated away) comes back once the file is long enough. */
static void reregister(struct owner *w)
{
	if (w->mr) {
		mrl_mr_dereg(w->ctx, w->mr);
		w->mr = 0;
	}
	struct mrl_reg_opts ro = {.size = sizeof(ro),
				  .policy = w->redirect ? MRL_POLICY_REDIRECT : MRL_POLICY_RESTORE};
	if (mrl_mr_reg(w->ctx, w->buf, w->size, MRL_ACCESS_REMOTE_WRITE, &ro, &w->mr) == 0)
		w->rereg++;
	else
		w->mr = 0;
}

static void skip_page(struct owner *w)
{
	uint8_t junk[PG];
	for (size_t done = 0; done < PG;) {
		ssize_t n = read(w->sock, junk + done, PG - done);
		if (n <= 0)
			return;
		done += (size_t)n;
	}
}

static void stream(struct owner *w, struct shared *sh)
{
	uint64_t npages = w->size / PG, until = cli_now_ns() + (uint64_t)w->o->seconds * 1000000000ull;
	uint8_t back[PG];
	for (uint64_t seq = 0; cli_now_ns() < until; seq++) {
		uint64_t off = (seq % npages) * PG;
		uint64_t e1 = atomic_load(&sh->epoch);
		unsigned idx = 0;
		uint8_t *base = w->buf;
		if (w->ctx) {
			int ret = w->mr ? mrl_uring_get_buf(w->ctx, w->mr, -1, &idx, (void **)&base)
					: -EKEYREVOKED;
			if (ret) {
				/* fenced: the page is refused, knowingly; it never reaches old pages */
				w->refused++;
				skip_page(w);
				reregister(w);
				continue;
			}
		}
		int ret = read_page(w, base + off, idx);
		if (w->ctx)
			mrl_uring_put(w->ctx, w->mr);
		if (ret) {
			fprintf(stderr, "mrlease demo: READ_FIXED: %s\n", strerror(-ret));
			w->failed++;
			break;
		}
		w->pages++;
		w->bytes += PG;
		if (base != w->buf) {
			/* redirected: the page went to scratch, as the policy says;
			 * back onto the file once the change has landed */
			w->scratch_pages++;
			(void)mrl_mr_restore(w->ctx, w->mr); /* -EAGAIN: still landing, next page */
			continue;
		}
		ssize_t n = pread(w->fd, back, PG, (off_t)off);
		uint64_t e2 = atomic_load(&sh->epoch);
		if (e1 != e2 || (e1 & 1)) {
			w->raced++; /* the adversary may have changed it legitimately */
			continue;
		}
		w->verified++;
		uint64_t bad = 0;
		for (unsigned i = 0; i < PG; i++)
			bad += (n <= 0 || (size_t)i >= (size_t)n) || back[i] != ubyte(seq, i);
		w->lost += bad;
		w->lost_pages += bad != 0;
	}
}

int cmd_demo_uring(const struct cli_opts *o)
{
	char dir[] = "/dev/shm/mrlease-uring-XXXXXX", path[64];
	/* the fabric demo's default size is far more than a page stream needs */
	uint64_t size = o->size_given ? o->size : 1u << 20;
	if (size < 4096 || size % 4096 || size > (1u << 30)) {
		fprintf(stderr, "mrlease: --size: a multiple of 4096, at most 1 GiB\n");
		return 2;
	}
	struct owner w = {.o = o, .size = size, .fd = -1,
			  .redirect = !strcmp(o->policy_name, "redirect")};
	if (strcmp(o->policy_name, "restore") && !w.redirect) {
		fprintf(stderr, "mrlease demo: --device uring takes --policy restore or redirect\n");
		return 2;
	}
	int sv[2];
	if (!mkdtemp(dir)) {
		fprintf(stderr, "mrlease demo: mkdtemp %s: %s\n", dir, strerror(errno));
		return 2;
	}
	snprintf(path, sizeof(path), "%s/buf", dir);
	struct shared *sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		perror("mrlease demo");
		return 2;
	}
	memset(sh, 0, sizeof(*sh));
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || ftruncate(fd, (off_t)size) < 0) {
		perror(path);
		return 2;
	}
	close(fd);
	/* the children first: they hold no descriptor of the file */
	pid_t prod = fork();
	if (prod == 0) {
		close(sv[0]);
		producer(sv[1]);
	}
	close(sv[1]);
	pid_t adv = fork();
	if (adv == 0) {
		close(sv[0]);
		adversary(sh, path, size);
		_exit(0);
	}
	w.sock = sv[0];
	int ret = io_uring_queue_init(8, &w.ring, 0);
	if (ret) {
		fprintf(stderr, "mrlease demo: io_uring_queue_init: %s\n", strerror(-ret));
		goto out;
	}
	w.fd = open(path, O_RDWR | O_CLOEXEC);
	w.buf = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, w.fd, 0);
	if (w.fd < 0 || w.buf == MAP_FAILED) {
		perror(path);
		ret = -errno;
		goto out;
	}
	if (o->no_lease) {
		struct iovec iov = {w.buf, size};
		ret = io_uring_register_buffers(&w.ring, &iov, 1);
		if (ret)
			fprintf(stderr, "mrlease demo: io_uring_register_buffers: %s\n", strerror(-ret));
	} else {
		struct mrl_ctx_opts co = {.size = sizeof(co), .provider = "uring",
					  .deadline_ms = o->deadline_ms};
		ret = mrl_ctx_create(&co, &w.ctx);
		if (!ret)
			ret = mrl_uring_attach(w.ctx, &w.ring, 4);
		/* the library leases the fd the file was mapped with; the owner
		 * reads back through it (pread breaks no lease) */
		if (!ret)
			ret = mrl_file_adopt(w.ctx, w.fd);
		if (!ret)
			reregister(&w);
		if (!ret && !w.mr)
			ret = -EIO;
		if (ret)
			fprintf(stderr, "mrlease demo: %s (%s)\n", mrl_strerror(ret), mrl_last_error());
	}
	if (!ret)
		stream(&w, sh);
out:
	atomic_store(&sh->stop, 1);
	shutdown(sv[0], SHUT_RDWR);
	waitpid(adv, NULL, 0);
	waitpid(prod, NULL, 0);
	struct mrl_stats st = {.size = sizeof(st)};
	if (w.ctx) {
		mrl_ctx_stats(w.ctx, &st);
		if (w.mr)
			mrl_mr_dereg(w.ctx, w.mr);
		mrl_ctx_destroy(w.ctx); /* closes the adopted fd */
		w.fd = -1;
	}
	if (w.ring.ring_fd > 0)
		io_uring_queue_exit(&w.ring);
	if (w.buf && w.buf != MAP_FAILED)
		munmap(w.buf, size);
	if (w.fd >= 0)
		close(w.fd);
	close(sv[0]);
	unlink(path);
	rmdir(dir);
	double mib_s = (double)w.bytes / (1 << 20) / (o->seconds ? o->seconds : 1);
	if (o->json) {
		printf("{\"device\":\"uring\",\"leases\":%s,\"fs\":\"tmpfs\",\"seconds\":%u,\"size\":%" PRIu64
		       ",\"pages\":%" PRIu64 ",\"mib_s\":%.1f,\"verified\":%" PRIu64 ",\"raced\":%" PRIu64
		       ",\"lost_bytes\":%" PRIu64 ",\"lost_pages\":%" PRIu64 ",\"refused\":%" PRIu64
		       ",\"reregistered\":%" PRIu64 ",\"punches\":%u,\"truncates\":%u,\"truncate_retries\":%u"
		       ",\"tool_errors\":%u,\"breaks\":%" PRIu64 ",\"restores\":%" PRIu64 ",\"fences\":%" PRIu64
		       ",\"pause_us_p50\":%.1f,\"pause_us_p99\":%.1f,\"error\":%d"
		       ",\"policy\":\"%s\",\"redirects\":%" PRIu64 ",\"scratch_pages\":%" PRIu64
		       ",\"failed\":%" PRIu64 "}\n",
		       o->no_lease ? "false" : "true", o->seconds, size, w.pages, mib_s, w.verified,
		       w.raced, w.lost, w.lost_pages, w.refused, w.rereg ? w.rereg - 1 : 0, sh->punches,
		       sh->truncates, sh->retries, sh->tool_errors, st.breaks, st.restores, st.fences,
		       st.pause_ns_p50 / 1e3, st.pause_ns_p99 / 1e3, ret, o->policy_name, st.redirects,
		       w.scratch_pages, w.failed);
	} else {
		printf("\nmrlease demo: io_uring READ_FIXED into a tmpfs file, %u s, %" PRIu64
		       " bytes, leases %s, policy %s\n\n", o->seconds, size, o->no_lease ? "OFF" : "ON",
		       o->policy_name);
		printf("  %-30s %u fallocate --punch-hole, %u truncate to 0 and back (%u EAGAIN retries)\n",
		       "adversary", sh->punches, sh->truncates, sh->retries);
		printf("  %-30s %" PRIu64 " pages (%.1f MiB/s)\n", "READ_FIXED completed", w.pages, mib_s);
		printf("  %-30s %" PRIu64 "\n", "READ_FIXED failed", w.failed);
		if (w.redirect)
			printf("  %-30s %" PRIu64 " pages (%" PRIu64 " redirects), discarded by the policy\n",
			       "into scratch", w.scratch_pages, st.redirects);
		printf("  %-30s %" PRIu64 " (%" PRIu64 " more raced a change: not judged)\n",
		       "pages read back", w.verified, w.raced);
		printf("  %-30s %" PRIu64 " bytes in %" PRIu64 " pages\n", "LOST (written, not in file)",
		       w.lost, w.lost_pages);
		printf("  %-30s %" PRIu64 " pages, %" PRIu64 " re-registrations\n",
		       "refused (fenced, known)", w.refused, w.rereg ? w.rereg - 1 : 0);
		if (!o->no_lease) {
			printf("  %-30s %" PRIu64 " breaks, %" PRIu64 " restores, %" PRIu64 " fences\n",
			       "library", st.breaks, st.restores, st.fences);
			printf("  %-30s p50 %.1f us, p99 %.1f us\n", "breaker held (pause)",
			       st.pause_ns_p50 / 1e3, st.pause_ns_p99 / 1e3);
		}
		printf("\n");
	}
	munmap(sh, sizeof(*sh));
	if (ret)
		return 2;
	return o->no_lease ? 0 : w.lost || w.failed ? 1 : 0;
}
