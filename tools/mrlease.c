/* mrlease: the command-line tool. `demo` runs a server exporting a file, a
 * client streaming verified RMA at it and an adversary using the system's own
 * truncate/fallocate/cat, with leases on (or off, to show what they prevent). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mrlease.h"
#include "demo_uring.h"

#define MAX_MRS 256
#define MAX_SAMPLES 4096

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what, int err)
{
	fprintf(stderr, "mrlease: %s: %s", what, mrl_strerror(err));
	if (*mrl_last_error())
		fprintf(stderr, " (%s)", mrl_last_error());
	fputc('\n', stderr);
	exit(2);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static uint64_t pct(uint64_t *v, size_t n, int p)
{
	if (!n)
		return 0;
	qsort(v, n, sizeof(*v), cmp_u64);
	size_t i = n * (size_t)p / 100;
	return v[i < n ? i : n - 1];
}

static volatile sig_atomic_t stop_flag;
static void on_stop(int sig)
{
	(void)sig;
	stop_flag = 1;
}

/* Deterministic content: the verifier and the final read-back agree on it. */
static inline uint8_t pattern(uint32_t mr, uint64_t off, uint32_t seq)
{
	uint64_t x = ((uint64_t)mr << 40) ^ off ^ ((uint64_t)seq * 0x9e3779b97f4a7c15ull);
	x ^= x >> 29;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 32;
	return (uint8_t)x;
}
#define FINAL_SEQ 0xfffffffu

/* ------------------------------------------------------------------ */
/* serve                                                               */

struct serve_opts {
	const char *file, *addr;
	unsigned port, mrs, seconds, deadline_ms, policy;
	uint64_t size;
	bool no_lease, no_fanotify, machine;
};

static int cmd_serve(struct serve_opts *o)
{
	struct mrl_ctx_opts co = {.size = sizeof(co), .addr = o->addr, .deadline_ms = o->deadline_ms};
	mrl_ctx *ctx;
	mrl_ep *ep;
	int ret;
	if (o->no_lease)
		co.flags |= MRL_CTX_NO_LEASES;
	if (o->no_fanotify)
		co.flags |= MRL_CTX_NO_FANOTIFY;
	struct stat st;
	if (stat(o->file, &st) < 0) {
		int fd = open(o->file, O_RDWR | O_CREAT, 0644);
		if (fd < 0 || ftruncate(fd, (off_t)o->size) < 0) {
			fprintf(stderr, "mrlease serve: create %s: %s\n", o->file, strerror(errno));
			return 2;
		}
		close(fd);
	} else {
		o->size = (uint64_t)st.st_size;
	}
	if ((ret = mrl_ctx_create(&co, &ctx)))
		die("context", ret);
	void *base;
	if ((ret = mrl_file_map(ctx, o->file, 0, o->size, PROT_READ | PROT_WRITE, &base)))
		die("map file", ret);
	mrl_mr_t mrs[MAX_MRS];
	uint64_t each = o->size / o->mrs;
	for (unsigned i = 0; i < o->mrs; i++) {
		struct mrl_reg_opts ro = {.size = sizeof(ro), .policy = o->policy};
		if ((ret = mrl_mr_reg(ctx, (char *)base + i * each, each,
				      MRL_ACCESS_REMOTE_READ | MRL_ACCESS_REMOTE_WRITE, &ro, &mrs[i])))
			die("register", ret);
	}
	struct mrl_ep_opts eo = {.size = sizeof(eo), .flags = MRL_EP_AUTO_PROGRESS};
	if ((ret = mrl_ep_create(ctx, &eo, &ep)))
		die("endpoint", ret);
	uint16_t port;
	if ((ret = mrl_ep_listen(ep, o->addr, (uint16_t)o->port, &port)))
		die("listen", ret);
	if (o->machine)
		printf("port %u\n", port);
	else
		printf("mrlease: serving %s (%" PRIu64 " bytes, %u MRs) on %s:%u\n", o->file, o->size,
		       o->mrs, o->addr, port);
	fflush(stdout);
	signal(SIGTERM, on_stop);
	signal(SIGINT, on_stop);
	/* libfabric installs a handler that turns a crash into exit(1); we want
	 * the truth: a SIGBUS from a truncated mapping is what leases prevent */
	signal(SIGBUS, SIG_DFL);
	signal(SIGSEGV, SIG_DFL);

	uint64_t until = o->seconds ? now_ns() + (uint64_t)o->seconds * 1000000000ull : UINT64_MAX;
	uint64_t ev_lat[MAX_SAMPLES], last_seen = 0, last_print = 0;
	size_t nev = 0;
	uint64_t evcount[8] = {0};
	int npeers = 0;
	while (!stop_flag && now_ns() < until) {
		mrl_peer *peer;
		if (mrl_ep_accept(ep, 0, &peer) == 0)
			npeers++;
		struct pollfd p = {.fd = mrl_event_fd(ctx), .events = POLLIN};
		poll(&p, 1, 20);
		struct mrl_event ev;
		while (mrl_event_get(ctx, &ev) == 0) {
			uint64_t t = now_ns();
			if (ev.type < 8)
				evcount[ev.type]++;
			/* one sample per break: the first MR event it produced */
			if (ev.type == MRL_EVENT_BREAK && ev.time_ns != last_seen) {
				last_seen = ev.time_ns;
				if (o->machine)
					printf("break %" PRIu64 " %" PRIu64 "\n", ev.time_ns, t);
				if (nev < MAX_SAMPLES)
					ev_lat[nev++] = t - ev.time_ns;
			}
			if (!o->machine && ev.type != MRL_EVENT_BREAK)
				printf("mrlease: MR %#" PRIx64 ": %s (%s) bytes %" PRIu64 "+%" PRIu64 "\n",
				       ev.mr, mrl_event_str(ev.type), mrl_cause_str(ev.cause), ev.offset,
				       ev.length);
			mrl_event_ack(ctx, &ev);
		}
		if (o->machine && now_ns() - last_print > 200000000ull) {
			struct mrl_stats s = {.size = sizeof(s)};
			mrl_ctx_stats(ctx, &s);
			printf("stats %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 "\n", s.breaks, s.pauses,
			       s.restores, s.fences);
			last_print = now_ns();
		}
		fflush(stdout);
	}
	struct mrl_stats s = {.size = sizeof(s)};
	mrl_ctx_stats(ctx, &s);
	/* which watchers watched the MRs, and how many MRs no break ever touched */
	unsigned watchers = 0, untouched = 0;
	for (unsigned i = 0; i < o->mrs; i++) {
		struct mrl_mr_info in = {.size = sizeof(in)};
		if (mrl_mr_query(ctx, mrs[i], &in) == 0) {
			watchers |= in.watchers;
			untouched += in.breaks == 0 && in.denials == 0;
		}
	}
	printf("%sfinal {\"breaks\":%" PRIu64 ",\"pauses\":%" PRIu64 ",\"restores\":%" PRIu64
	       ",\"fences\":%" PRIu64 ",\"lease_breaks\":%" PRIu64 ",\"peer_timeouts\":%" PRIu64
	       ",\"pause_us_p50\":%.1f,\"pause_us_p99\":%.1f,\"ev_us_p50\":%.1f,\"ev_us_p99\":%.1f,\"peers\":%d"
	       ",\"watchers\":%u,\"untouched\":%u,\"fan_events\":%" PRIu64 ",\"fan_layout\":%" PRIu64
	       ",\"fan_pass_data\":%" PRIu64 ",\"fan_pass_range\":%" PRIu64 ",\"denials\":%" PRIu64
	       ",\"classify_us\":%.2f}\n",
	       o->machine ? "" : "mrlease: ", s.breaks, s.pauses, s.restores, s.fences,
	       s.lease_breaks, s.peer_timeouts, s.pause_ns_p50 / 1e3, s.pause_ns_p99 / 1e3,
	       pct(ev_lat, nev, 50) / 1e3, pct(ev_lat, nev, 99) / 1e3, npeers, watchers, untouched,
	       s.fan_events, s.fan_layout, s.fan_pass_data, s.fan_pass_range, s.denials,
	       s.classify_count ? (double)s.classify_ns_total / (double)s.classify_count / 1e3 : 0.0);
	fflush(stdout);
	mrl_ep_destroy(ep);
	for (unsigned i = 0; i < o->mrs; i++)
		mrl_mr_dereg(ctx, mrs[i]);
	mrl_file_unmap(ctx, base, o->size);
	mrl_ctx_destroy(ctx);
	return 0;
}

/* ------------------------------------------------------------------ */
/* client                                                              */

struct client_opts {
	const char *host, *addr;
	unsigned port, seconds, depth, block;
	bool machine, json;
};

struct slot {
	bool busy, is_write;
	uint32_t mr, blk;
	uint64_t posted;
	uint8_t *buf;
};

struct cstats {
	uint64_t transfers, failed, mismatches, refused, held_max, final_mismatches;
	uint64_t bytes;
};

static int cmd_client(struct client_opts *o)
{
	struct mrl_ctx_opts co = {.size = sizeof(co), .addr = o->addr};
	mrl_ctx *ctx;
	mrl_ep *ep;
	mrl_peer *peer;
	int ret;
	if ((ret = mrl_ctx_create(&co, &ctx)))
		die("context", ret);
	struct mrl_ep_opts eo = {.size = sizeof(eo)};
	if ((ret = mrl_ep_create(ctx, &eo, &ep)))
		die("endpoint", ret);
	if ((ret = mrl_ep_connect(ep, o->host, (uint16_t)o->port, 5000, &peer)))
		die("connect", ret);
	mrl_mr_t ids[MAX_MRS];
	int nmr = mrl_peer_list(peer, ids, MAX_MRS, 5000);
	if (nmr <= 0)
		die("list MRs", nmr ? nmr : -ENOENT);
	if (nmr > MAX_MRS)
		nmr = MAX_MRS;
	mrl_rmr *rmr[MAX_MRS];
	uint64_t len[MAX_MRS];
	uint32_t nblk[MAX_MRS];
	uint32_t *known[MAX_MRS];  /* per block: generation its content is known under, 0 = unknown */
	uint32_t *seqs[MAX_MRS];   /* per block: sequence of the last completed write */
	uint8_t *busy[MAX_MRS];
	for (int i = 0; i < nmr; i++) {
		if ((ret = mrl_rmr_open(peer, ids[i], 5000, &rmr[i])))
			die("open remote MR", ret);
		struct mrl_rmr_info ri = {.size = sizeof(ri)};
		mrl_rmr_query(rmr[i], &ri);
		len[i] = ri.length;
		nblk[i] = (uint32_t)((len[i] + o->block - 1) / o->block);
		known[i] = calloc(nblk[i], sizeof(uint32_t));
		seqs[i] = calloc(nblk[i], sizeof(uint32_t));
		busy[i] = calloc(nblk[i], 1);
	}
	struct slot *slots = calloc(o->depth, sizeof(*slots));
	for (unsigned s = 0; s < o->depth; s++)
		slots[s].buf = aligned_alloc(4096, o->block);
	struct cstats cs = {0};
	uint64_t start = now_ns(), until = start + (uint64_t)o->seconds * 1000000000ull;
	uint64_t last_print = 0, rng = 0x12345678;
	uint32_t seq = 1;
	signal(SIGTERM, on_stop);
	signal(SIGPIPE, SIG_IGN);
	unsigned inflight = 0;
	bool draining = false;

	for (;;) {
		bool time_up = stop_flag || now_ns() >= until;
		if (time_up)
			draining = true;
		/* post into free slots */
		for (unsigned s = 0; s < o->depth && !draining; s++) {
			if (slots[s].busy)
				continue;
			rng = rng * 6364136223846793005ull + 1442695040888963407ull;
			uint32_t m = (uint32_t)((rng >> 33) % (uint64_t)nmr);
			uint32_t b = (uint32_t)((rng >> 13) % nblk[m]);
			struct mrl_rmr_info ri = {.size = sizeof(ri)};
			mrl_rmr_query(rmr[m], &ri);
			uint64_t off = (uint64_t)b * o->block;
			uint64_t l = len[m] - off < o->block ? len[m] - off : o->block;
			if (busy[m][b] || ri.state == MRL_STATE_FENCED || off + l > ri.valid_length)
				continue; /* fenced parts are known to be gone: do not aim at them */
			bool wr = !known[m][b] || (rng & 0x100);
			struct slot *sl = &slots[s];
			sl->is_write = wr;
			sl->mr = m;
			sl->blk = b;
			if (wr) {
				for (uint64_t i = 0; i < l; i++)
					sl->buf[i] = pattern(m, off + i, seq);
				ret = mrl_write(rmr[m], off, sl->buf, l, sl);
			} else {
				ret = mrl_read(rmr[m], off, sl->buf, l, sl);
			}
			if (ret == -EKEYREVOKED) {
				cs.refused++;
				continue;
			}
			if (ret == -ENOTCONN) {
				cs.failed++;
				if (!o->machine)
					fprintf(stderr, "mrlease client: the server is gone\n");
				draining = true; /* nothing more can be done */
				until = now_ns();
				break;
			}
			if (ret) {
				cs.failed++;
				continue;
			}
			sl->busy = true;
			sl->posted = seq++;
			busy[m][b] = 1;
			inflight++;
			if (ri.held > cs.held_max)
				cs.held_max = ri.held;
		}
		struct mrl_completion c[16];
		int n = mrl_ep_poll(ep, c, 16);
		for (int i = 0; i < n; i++) {
			struct slot *sl = c[i].op_context;
			uint32_t m = sl->mr, b = sl->blk;
			uint64_t off = (uint64_t)b * o->block;
			uint64_t l = len[m] - off < o->block ? len[m] - off : o->block;
			sl->busy = false;
			busy[m][b] = 0;
			inflight--;
			if (c[i].status == -EKEYREVOKED) {
				cs.refused++;
				known[m][b] = 0;
				continue;
			}
			if (c[i].status) {
				cs.failed++;
				if (!o->machine)
					fprintf(stderr, "mrlease client: transfer failed: %s\n",
						mrl_strerror(c[i].status));
				known[m][b] = 0;
				continue;
			}
			cs.transfers++;
			cs.bytes += l;
			if (sl->is_write) {
				known[m][b] = c[i].generation;
				seqs[m][b] = (uint32_t)sl->posted;
			} else if (known[m][b] && known[m][b] == c[i].generation) {
				/* no restore since our write: the bytes must be ours */
				for (uint64_t k = 0; k < l; k++)
					if (sl->buf[k] != pattern(m, off + k, seqs[m][b])) {
						cs.mismatches++;
						break;
					}
			} else {
				known[m][b] = 0; /* the owner told us it may have changed */
			}
		}
		if (o->machine && now_ns() - last_print > 200000000ull) {
			printf("stats %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 "\n", cs.transfers,
			       cs.failed, cs.mismatches, cs.refused);
			fflush(stdout);
			last_print = now_ns();
		}
		if (draining && !inflight)
			break;
		if (draining && now_ns() > until + 10000000000ull) {
			cs.failed += inflight; /* never completed */
			break;
		}
	}

	/* Final pass: write every still-served byte with the final pattern and
	 * read it back; the orchestrator then checks the file itself. */
	for (int m = 0; m < nmr && !stop_flag; m++) {
		struct mrl_rmr_info ri = {.size = sizeof(ri)};
		mrl_rmr_query(rmr[m], &ri);
		if (ri.state == MRL_STATE_FENCED)
			continue;
		for (uint64_t off = 0; off < ri.valid_length; off += o->block) {
			uint64_t l = ri.valid_length - off < o->block ? ri.valid_length - off : o->block;
			for (int pass = 0; pass < 2; pass++) {
				uint8_t *buf = slots[0].buf;
				if (pass == 0)
					for (uint64_t i = 0; i < l; i++)
						buf[i] = pattern((uint32_t)m, off + i, FINAL_SEQ);
				ret = pass == 0 ? mrl_write(rmr[m], off, buf, l, buf)
						: mrl_read(rmr[m], off, buf, l, buf);
				struct mrl_completion c1 = {.status = ret};
				uint64_t t0 = now_ns();
				while (!ret && mrl_ep_poll(ep, &c1, 1) == 0 && now_ns() - t0 < 10000000000ull)
					;
				if (c1.status == -EKEYREVOKED) {
					cs.refused++;
					break;
				}
				if (c1.status || (now_ns() - t0 >= 10000000000ull)) {
					cs.failed++;
					break;
				}
				cs.transfers++;
				if (pass == 1)
					for (uint64_t i = 0; i < l; i++)
						if (buf[i] != pattern((uint32_t)m, off + i, FINAL_SEQ)) {
							cs.final_mismatches++;
							break;
						}
			}
		}
	}
	double secs = (now_ns() - start) / 1e9;
	printf("%s{\"transfers\":%" PRIu64 ",\"failed\":%" PRIu64 ",\"mismatches\":%" PRIu64
	       ",\"refused\":%" PRIu64 ",\"final_mismatches\":%" PRIu64 ",\"mib_s\":%.1f,\"mrs\":%d}\n",
	       o->machine ? "final " : "", cs.transfers, cs.failed, cs.mismatches, cs.refused,
	       cs.final_mismatches, cs.bytes / secs / 1048576.0, nmr);
	fflush(stdout);
	for (int i = 0; i < nmr; i++) {
		mrl_rmr_close(rmr[i]);
		free(known[i]);
		free(seqs[i]);
		free(busy[i]);
	}
	for (unsigned s = 0; s < o->depth; s++)
		free(slots[s].buf);
	free(slots);
	mrl_ep_destroy(ep);
	mrl_ctx_destroy(ctx);
	return cs.failed || cs.mismatches || cs.final_mismatches ? 1 : 0;
}

/* ------------------------------------------------------------------ */
/* demo                                                                */

struct child {
	pid_t pid;
	FILE *out;
	int fd;
	char line[512];
	size_t len;
};

static int spawn(struct child *c, char *const argv[])
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	c->pid = fork();
	if (c->pid < 0)
		return -errno;
	if (c->pid == 0) {
		dup2(p[1], 1);
		execv("/proc/self/exe", argv);
		_exit(127);
	}
	close(p[1]);
	c->fd = p[0];
	fcntl(c->fd, F_SETFL, O_NONBLOCK);
	c->len = 0;
	return 0;
}

/* Read complete lines from a child; calls fn for each. */
static void pump(struct child *c, void (*fn)(const char *line, void *arg), void *arg)
{
	for (;;) {
		ssize_t n = read(c->fd, c->line + c->len, sizeof(c->line) - 1 - c->len);
		if (n <= 0)
			return;
		c->len += (size_t)n;
		c->line[c->len] = 0;
		char *nl;
		while ((nl = strchr(c->line, '\n'))) {
			*nl = 0;
			fn(c->line, arg);
			size_t rest = c->len - (size_t)(nl + 1 - c->line);
			memmove(c->line, nl + 1, rest);
			c->len = rest;
			c->line[c->len] = 0;
		}
		if (c->len == sizeof(c->line) - 1)
			c->len = 0; /* overlong line: drop */
	}
}

struct demo_state {
	uint64_t c_transfers, c_failed, c_mismatches, c_refused, c_final_mis;
	uint64_t s_breaks, s_pauses, s_restores, s_fences;
	char s_final[512], c_final[512];
	uint64_t breaks_seen[MAX_SAMPLES]; /* server: (seen, read) pairs */
	uint64_t breaks_read[MAX_SAMPLES];
	size_t nbreaks;
	unsigned port;
};

static void on_server_line(const char *l, void *arg)
{
	struct demo_state *d = arg;
	uint64_t a, b, c, e;
	if (sscanf(l, "port %u", &d->port) == 1)
		return;
	if (sscanf(l, "break %" SCNu64 " %" SCNu64, &a, &b) == 2 && d->nbreaks < MAX_SAMPLES) {
		d->breaks_seen[d->nbreaks] = a;
		d->breaks_read[d->nbreaks++] = b;
	} else if (sscanf(l, "stats %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64, &a, &b, &c, &e) == 4) {
		d->s_breaks = a, d->s_pauses = b, d->s_restores = c, d->s_fences = e;
	} else if (!strncmp(l, "final ", 6)) {
		snprintf(d->s_final, sizeof(d->s_final), "%s", l + 6);
	}
}

static void on_client_line(const char *l, void *arg)
{
	struct demo_state *d = arg;
	uint64_t a, b, c, e;
	if (sscanf(l, "stats %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64, &a, &b, &c, &e) == 4)
		d->c_transfers = a, d->c_failed = b, d->c_mismatches = c, d->c_refused = e;
	else if (!strncmp(l, "final ", 6))
		snprintf(d->c_final, sizeof(d->c_final), "%s", l + 6);
}

static double json_num(const char *js, const char *key)
{
	char k[64];
	snprintf(k, sizeof(k), "\"%s\":", key);
	const char *p = strstr(js, k);
	return p ? strtod(p + strlen(k), NULL) : 0;
}

/* Run a real tool; return its exit status. The entry time is recorded. */
int cli_run_tool(char *const argv[], uint64_t *t0)
{
	if (t0)
		*t0 = now_ns();
	pid_t pid = fork();
	if (pid == 0) {
		int dn = open("/dev/null", O_WRONLY);
		dup2(dn, 1);
		dup2(dn, 2);
		execvp(argv[0], argv);
		_exit(127);
	}
	int st;
	if (pid < 0 || waitpid(pid, &st, 0) < 0)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

struct adv_result {
	unsigned punches, truncates, cats, truncate_retries, tool_errors;
	uint64_t t0[MAX_SAMPLES];
	size_t nt0;
};

/* The adversary: the system's own tools against the served file. */
static void adversary(const char *file, uint64_t size, unsigned seconds, const char *actions,
		      struct adv_result *r, volatile int *server_dead)
{
	uint64_t start = now_ns(), until = start + (uint64_t)seconds * 1000000000ull;
	uint64_t rng = 0xfeedbeef;
	bool truncated = false;
	char a1[32], a2[32], sz[32];
	memset(r, 0, sizeof(*r));
	usleep(300000); /* let the stream get going */
	while (now_ns() < until - 300000000ull && !*server_dead) {
		rng = rng * 6364136223846793005ull + 1442695040888963407ull;
		unsigned pick = (unsigned)(rng >> 40) % 3;
		uint64_t t0;
		bool late = now_ns() > start + (until - start) * 2 / 3;
		if (strstr(actions, "truncate") && late && !truncated) {
			/* cut into the last MR at a non-page boundary */
			snprintf(sz, sizeof(sz), "%" PRIu64, size - size / 16 - 1000);
			char *argv[] = {"truncate", "-s", sz, (char *)file, NULL};
			int st;
			uint64_t first = 0;
			/* coreutils opens O_NONBLOCK: a leased file says EAGAIN once, then lets it in */
			for (int i = 0; i < 200 && (st = cli_run_tool(argv, &t0)) != 0; i++) {
				first = first ? first : t0;
				r->truncate_retries++;
				usleep(5000);
			}
			t0 = first ? first : t0; /* the break began with the first attempt */
			if (r->nt0 < MAX_SAMPLES)
				r->t0[r->nt0++] = t0;
			r->tool_errors += st != 0;
			r->truncates++;
			truncated = true;
		} else if (pick == 0 && strstr(actions, "punch")) {
			uint64_t pages = size / 4096;
			uint64_t off = ((rng >> 8) % pages) * 4096;
			uint64_t len = (1 + (rng >> 20) % 8) * 4096;
			if (truncated && off + len > size - size / 16 - 1000)
				continue;
			snprintf(a1, sizeof(a1), "%" PRIu64, off);
			snprintf(a2, sizeof(a2), "%" PRIu64, len);
			char *argv[] = {"fallocate", "--punch-hole", "-o", a1, "-l", a2, (char *)file, NULL};
			r->tool_errors += cli_run_tool(argv, &t0) != 0;
			if (r->nt0 < MAX_SAMPLES)
				r->t0[r->nt0++] = t0;
			r->punches++;
		} else if (pick == 1 && strstr(actions, "cat")) {
			char cmd[600];
			snprintf(cmd, sizeof(cmd), "cat '%s' > /dev/null", file);
			char *argv[] = {"sh", "-c", cmd, NULL};
			r->tool_errors += cli_run_tool(argv, &t0) != 0;
			r->cats++;
		} else {
			continue;
		}
		usleep(150000 + (unsigned)((rng >> 30) % 200000));
	}
}

struct demo_opts {
	unsigned seconds, mrs, deadline_ms;
	uint64_t size;
	const char *fs, *actions, *policy, *device;
	bool no_lease, no_fanotify, json, quiet;
};

/* "fanotify+inotify" from a MRL_WATCH_* mask */
static const char *watcher_names(unsigned mask, char *buf, size_t n)
{
	buf[0] = 0;
	for (unsigned bit = 1; bit <= MRL_WATCH_VERIFY; bit <<= 1)
		if (mask & bit)
			snprintf(buf + strlen(buf), n - strlen(buf), "%s%s", buf[0] ? "+" : "",
				 mrl_watcher_str(bit));
	if (!buf[0])
		snprintf(buf, n, "none");
	return buf;
}

static int cmd_demo(struct demo_opts *o)
{
	char dir[256], file[300], port_s[16], mrs_s[16], size_s[32], secs_s[16], dl_s[16];
	const char *base = !strcmp(o->fs, "tmpfs") ? "/dev/shm" : "/var/tmp";
	snprintf(dir, sizeof(dir), "%s/mrlease-demo-XXXXXX", base);
	if (!mkdtemp(dir)) {
		fprintf(stderr, "mrlease demo: mkdtemp in %s: %s\n", base, strerror(errno));
		return 2;
	}
	snprintf(file, sizeof(file), "%s/exported", dir);
	snprintf(mrs_s, sizeof(mrs_s), "%u", o->mrs);
	snprintf(size_s, sizeof(size_s), "%" PRIu64, o->size);
	snprintf(secs_s, sizeof(secs_s), "%u", o->seconds + 30);
	snprintf(dl_s, sizeof(dl_s), "%u", o->deadline_ms);
	struct demo_state *d = calloc(1, sizeof(*d));
	struct child srv, cli;
	char *sargv[20] = {"mrlease", "serve", file, "--machine", "--mrs", mrs_s, "--size", size_s,
			   "--seconds", secs_s, "--deadline-ms", dl_s, "--policy", (char *)o->policy};
	int sargc = 14;
	if (o->no_lease)
		sargv[sargc++] = "--no-lease";
	if (o->no_fanotify)
		sargv[sargc++] = "--no-fanotify";
	sargv[sargc] = NULL;
	signal(SIGPIPE, SIG_IGN);
	if (spawn(&srv, sargv)) {
		fprintf(stderr, "mrlease demo: cannot start the server\n");
		return 2;
	}
	uint64_t t_start = now_ns();
	while (!d->port && now_ns() - t_start < 10000000000ull) {
		struct pollfd p = {.fd = srv.fd, .events = POLLIN};
		poll(&p, 1, 100);
		pump(&srv, on_server_line, d);
		if (waitpid(srv.pid, NULL, WNOHANG) == srv.pid) {
			fprintf(stderr, "mrlease demo: the server exited before listening\n");
			return 2;
		}
	}
	if (!d->port) {
		fprintf(stderr, "mrlease demo: the server did not start listening\n");
		kill(srv.pid, SIGKILL);
		return 2;
	}
	snprintf(port_s, sizeof(port_s), "%u", d->port);
	snprintf(secs_s, sizeof(secs_s), "%u", o->seconds);
	char hostport[64];
	snprintf(hostport, sizeof(hostport), "127.0.0.1:%s", port_s);
	char *cargv[] = {"mrlease", "client", hostport, "--machine", "--seconds", secs_s, NULL};
	if (spawn(&cli, cargv)) {
		fprintf(stderr, "mrlease demo: cannot start the client\n");
		kill(srv.pid, SIGKILL);
		return 2;
	}
	/* the adversary runs in its own process and reports through shared memory */
	struct adv_result *adv = mmap(NULL, sizeof(*adv) + sizeof(int), PROT_READ | PROT_WRITE,
				      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	volatile int *server_dead = (int *)(adv + 1);
	pid_t apid = fork();
	if (apid == 0) {
		adversary(file, o->size, o->seconds, o->actions, adv, server_dead);
		_exit(0);
	}
	bool tty = isatty(2) && !o->quiet;
	uint64_t last = 0;
	int srv_status = -1, cli_status = -1;
	bool srv_done = false, cli_done = false, adv_done = false;
	while (!cli_done || !adv_done) {
		struct pollfd p[2] = {{.fd = srv.fd, .events = POLLIN}, {.fd = cli.fd, .events = POLLIN}};
		poll(p, 2, 100);
		pump(&srv, on_server_line, d);
		pump(&cli, on_client_line, d);
		int st;
		if (!srv_done && waitpid(srv.pid, &st, WNOHANG) == srv.pid) {
			srv_done = true;
			srv_status = st;
			*server_dead = 1;
		}
		if (!cli_done && waitpid(cli.pid, &st, WNOHANG) == cli.pid) {
			cli_done = true;
			cli_status = st;
			pump(&cli, on_client_line, d);
		}
		if (!adv_done && waitpid(apid, &st, WNOHANG) == apid)
			adv_done = true;
		if (now_ns() - t_start > (uint64_t)(o->seconds + 60) * 1000000000ull) {
			kill(cli.pid, SIGKILL);
			kill(apid, SIGKILL);
		}
		uint64_t t = now_ns();
		if (!o->quiet && t - last > (tty ? 200000000ull : 1000000000ull)) {
			fprintf(stderr, "%s[%5.1fs] transfers %-9" PRIu64 " failed %-5" PRIu64
				" mismatched %-4" PRIu64 " breaks %-4" PRIu64 " restores %-5" PRIu64
				" fences %-3" PRIu64 "%s%s",
				tty ? "\r" : "", (t - t_start) / 1e9, d->c_transfers, d->c_failed,
				d->c_mismatches, d->s_breaks, d->s_restores, d->s_fences,
				srv_done ? " SERVER DIED" : "", tty ? "" : "\n");
			last = t;
		}
	}
	if (tty)
		fputc('\n', stderr);
	/* a third process reads the file back: every byte the client's final pass
	 * wrote after the last resume must be there */
	uint64_t readback_mis = 0, fsize = 0;
	if (d->c_final[0]) {
		int fd = open(file, O_RDONLY);
		struct stat st;
		if (fd >= 0 && fstat(fd, &st) == 0) {
			fsize = (uint64_t)st.st_size;
			uint64_t each = o->size / o->mrs;
			uint8_t *buf = malloc(1 << 16);
			for (uint64_t off = 0; off < fsize && off < each * o->mrs; off += 1 << 16) {
				ssize_t n = pread(fd, buf, 1 << 16, (off_t)off);
				for (ssize_t i = 0; i < n; i++) {
					uint64_t fo = off + (uint64_t)i;
					if (buf[i] != pattern((uint32_t)(fo / each), fo % each, FINAL_SEQ)) {
						readback_mis++;
						break;
					}
				}
			}
			free(buf);
			close(fd);
		}
	}
	if (!srv_done) {
		kill(srv.pid, SIGTERM);
		waitpid(srv.pid, &srv_status, 0);
		pump(&srv, on_server_line, d);
	}
	/* final numbers */
	/* a client that never reported its end: count what it said while running,
	 * plus one failure for the end it never reached */
	double transfers = d->c_final[0] ? json_num(d->c_final, "transfers") : (double)d->c_transfers;
	double failed = d->c_final[0] ? json_num(d->c_final, "failed") : (double)d->c_failed + 1;
	double mism = (d->c_final[0] ? json_num(d->c_final, "mismatches") : (double)d->c_mismatches) +
		      json_num(d->c_final, "final_mismatches") + (double)readback_mis;
	double refused = json_num(d->c_final, "refused");
	double mib_s = json_num(d->c_final, "mib_s");
	double breaks = json_num(d->s_final, "breaks"), pauses = json_num(d->s_final, "pauses");
	double restores = json_num(d->s_final, "restores"), fences = json_num(d->s_final, "fences");
	double p50 = json_num(d->s_final, "pause_us_p50"), p99 = json_num(d->s_final, "pause_us_p99");
	double untouched = json_num(d->s_final, "untouched");
	double fan_ev = json_num(d->s_final, "fan_events"), fan_lay = json_num(d->s_final, "fan_layout");
	double fan_data = json_num(d->s_final, "fan_pass_data"), fan_out = json_num(d->s_final, "fan_pass_range");
	double classify_us = json_num(d->s_final, "classify_us");
	char wbuf[96];
	const char *watchers = watcher_names((unsigned)json_num(d->s_final, "watchers"), wbuf, sizeof(wbuf));
	/* break -> event: from the tool's start (fork+exec included) to the
	 * server reading the MR event */
	uint64_t lat[MAX_SAMPLES];
	size_t nl = 0;
	for (size_t i = 0; i < adv->nt0; i++)
		for (size_t k = 0; k < d->nbreaks; k++)
			if (d->breaks_read[k] >= adv->t0[i]) {
				if (d->breaks_seen[k] >= adv->t0[i] && nl < MAX_SAMPLES)
					lat[nl++] = d->breaks_read[k] - adv->t0[i];
				break;
			}
	double e50 = pct(lat, nl, 50) / 1e3, e99 = pct(lat, nl, 99) / 1e3;
	bool server_crashed = srv_done && !(WIFEXITED(srv_status) && WEXITSTATUS(srv_status) == 0);
	if (o->json) {
		printf("{\"leases\":%s,\"fs\":\"%s\",\"seconds\":%u,\"mrs\":%u,\"transfers\":%.0f,"
		       "\"failed\":%.0f,\"mismatches\":%.0f,\"refused\":%.0f,\"readback_mismatches\":%" PRIu64
		       ",\"breaks\":%.0f,\"pauses\":%.0f,\"restores\":%.0f,\"fences\":%.0f,"
		       "\"pause_us_p50\":%.1f,\"pause_us_p99\":%.1f,\"event_us_p50\":%.1f,\"event_us_p99\":%.1f,"
		       "\"punches\":%u,\"truncates\":%u,\"cats\":%u,\"truncate_retries\":%u,"
		       "\"server_crashed\":%s,\"server_signal\":%d,\"mib_s\":%.1f,\"file_size\":%" PRIu64
		       ",\"watchers\":\"%s\",\"untouched_mrs\":%.0f,\"fan_events\":%.0f,\"fan_layout\":%.0f"
		       ",\"fan_data\":%.0f,\"fan_outside\":%.0f,\"classify_us\":%.2f}\n",
		       o->no_lease ? "false" : "true", o->fs, o->seconds, o->mrs, transfers, failed, mism,
		       refused, readback_mis, breaks, pauses, restores, fences, p50, p99, e50, e99,
		       adv->punches, adv->truncates, adv->cats, adv->truncate_retries,
		       server_crashed ? "true" : "false",
		       srv_done && WIFSIGNALED(srv_status) ? WTERMSIG(srv_status) : 0, mib_s, fsize,
		       watchers, untouched, fan_ev, fan_lay, fan_data, fan_out, classify_us);
	} else {
		printf("\nmrlease demo: %s on %s, %u s, %u MRs over %" PRIu64 " bytes, leases %s\n\n",
		       "tcp;ofi_rxm loopback", o->fs, o->seconds, o->mrs, o->size,
		       o->no_lease ? "OFF" : "ON");
		printf("  %-28s %s\n", "watchers", watchers);
		if (fan_ev > 0)
			printf("  %-28s %.0f: %.0f layout, %.0f read/write, %.0f outside every MR; %.1f us to classify\n",
			       "  fanotify events", fan_ev, fan_lay, fan_data, fan_out, classify_us);
		printf("  %-28s %s\n", "adversary", "");
		printf("  %-28s %u fallocate --punch-hole, %u truncate (%u EAGAIN retries), %u cat\n",
		       "  actions", adv->punches, adv->truncates, adv->truncate_retries, adv->cats);
		printf("  %-28s %.0f (%.1f MiB/s)\n", "transfers", transfers, mib_s);
		printf("  %-28s %.0f\n", "failed", failed);
		printf("  %-28s %.0f\n", "mismatched (silent changes)", mism);
		printf("  %-28s %.0f\n", "refused (fenced, clean)", refused);
		printf("  %-28s %.0f\n", "breaks", breaks);
		printf("  %-28s %.0f\n", "pauses (MRs)", pauses);
		printf("  %-28s %.0f of %u\n", "MRs never paused", untouched, o->mrs);
		printf("  %-28s %.0f\n", "restores", restores);
		printf("  %-28s %.0f\n", "fences", fences);
		printf("  %-28s p50 %.1f us, p99 %.1f us\n", "breaker held (pause)", p50, p99);
		printf("  %-28s p50 %.1f us, p99 %.1f us\n", "tool start -> MR event", e50, e99);
		if (server_crashed)
			printf("  %-28s %s\n", "server",
			       WIFSIGNALED(srv_status) ? strsignal(WTERMSIG(srv_status)) : "exited with error");
		printf("\n");
	}
	/* tidy up */
	unlink(file);
	rmdir(dir);
	(void)cli_status;
	free(d);
	bool ok = !o->no_lease && failed == 0 && mism == 0 && !server_crashed;
	return o->no_lease ? 0 : ok ? 0 : 1;
}

/* ------------------------------------------------------------------ */
/* coverage                                                            */

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
		die("context", ret);
	if (file)
		ret = mrl_file_map(ctx, file, 0, len, PROT_READ | PROT_WRITE, &p);
	else if ((p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)) == MAP_FAILED)
		ret = -errno;
	if (ret)
		die(file ? file : "anonymous memory", ret);
	if ((ret = mrl_mr_reg(ctx, p, len, MRL_ACCESS_REMOTE_WRITE, NULL, &mr)))
		die("register", ret);
	col->in.size = sizeof(col->in);
	mrl_mr_query(ctx, mr, &col->in);
	snprintf(col->title, sizeof(col->title), "%s", title);
	watcher_names(col->in.watchers, col->watchers, sizeof(col->watchers));
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

static int cmd_coverage(const char *file)
{
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

/* ------------------------------------------------------------------ */

/* The local address the kernel would use to reach host: the fabric must bind there. */
static int local_addr_for(const char *host, unsigned port, char *out, size_t outsz)
{
	struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_DGRAM}, *ai;
	if (getaddrinfo(host, NULL, &hints, &ai))
		return -1;
	struct sockaddr_in sa = *(struct sockaddr_in *)ai->ai_addr, me;
	freeaddrinfo(ai);
	sa.sin_port = htons((uint16_t)port);
	socklen_t ml = sizeof(me);
	int s = socket(AF_INET, SOCK_DGRAM, 0);
	int ret = s < 0 || connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
		  getsockname(s, (struct sockaddr *)&me, &ml) < 0;
	if (s >= 0)
		close(s);
	if (ret || !inet_ntop(AF_INET, &me.sin_addr, out, (socklen_t)outsz))
		return -1;
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: mrlease demo [--seconds N] [--fs ext4|tmpfs] [--no-lease] [--no-fanotify] [--json]\n"
		"                    [--device fabric|uring]: uring streams READ_FIXED into a tmpfs file\n"
		"                    [--mrs N] [--size BYTES] [--actions punch,truncate,cat]\n"
		"                    [--policy restore|notify|fence|deny]\n"
		"       mrlease serve FILE [--addr A] [--port P] [--mrs N] [--size BYTES] [--no-lease]\n"
		"                    [--no-fanotify] [--policy P] [--deadline-ms MS]\n"
		"       mrlease client HOST:PORT [--addr A] [--seconds N] [--depth N] [--block BYTES]\n"
		"       mrlease coverage [FILE]\n");
}

static unsigned policy_of(const char *s)
{
	if (!strcmp(s, "restore"))
		return MRL_POLICY_RESTORE;
	if (!strcmp(s, "notify"))
		return MRL_POLICY_NOTIFY;
	if (!strcmp(s, "fence"))
		return MRL_POLICY_FENCE;
	if (!strcmp(s, "deny"))
		return MRL_POLICY_DENY;
	fprintf(stderr, "mrlease: unknown policy '%s' (restore, notify, fence, deny)\n", s);
	exit(2);
}

static unsigned long long num(const char *s, const char *what)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 0);
	if (errno || *end || end == s) {
		fprintf(stderr, "mrlease: %s: '%s' is not a number\n", what, s);
		exit(2);
	}
	return v;
}

/* --device uring: the pinned-device demo (tools/demo_uring.c) */
static int demo_device(const struct demo_opts *dm, bool size_given)
{
	if (strcmp(dm->device, "uring")) {
		fprintf(stderr, "mrlease: --device fabric or uring\n");
		return 2;
	}
	struct uring_demo_opts uo = {.seconds = dm->seconds, .deadline_ms = dm->deadline_ms,
				     .size = size_given ? dm->size : 1u << 20,
				     .no_lease = dm->no_lease, .json = dm->json};
	if (uo.size < 4096 || uo.size % 4096 || uo.size > (1u << 30)) {
		fprintf(stderr, "mrlease: --size: a multiple of 4096, at most 1 GiB\n");
		return 2;
	}
	return cmd_demo_uring(&uo);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	const char *cmd = argv[1];
	bool addr_given = false, size_given = false;
	static char local[64];
	static struct option lo[] = {
		{"seconds", 1, 0, 's'}, {"fs", 1, 0, 'f'},      {"no-lease", 0, 0, 'n'},
		{"json", 0, 0, 'j'},    {"mrs", 1, 0, 'm'},     {"size", 1, 0, 'z'},
		{"actions", 1, 0, 'a'}, {"policy", 1, 0, 'P'},  {"addr", 1, 0, 'A'},
		{"port", 1, 0, 'p'},    {"machine", 0, 0, 'M'}, {"depth", 1, 0, 'd'},
		{"block", 1, 0, 'b'},   {"quiet", 0, 0, 'q'},   {"deadline-ms", 1, 0, 'D'},
		{"help", 0, 0, 'h'},    {"no-fanotify", 0, 0, 'F'}, {"device", 1, 0, 'V'},
		{0, 0, 0, 0},
	};
	struct demo_opts dm = {.seconds = 5, .mrs = 16, .size = 16 << 20, .fs = "ext4",
			       .actions = "punch,truncate,cat", .policy = "restore", .deadline_ms = 1000};
	struct serve_opts so = {.addr = "127.0.0.1", .mrs = 16, .size = 16 << 20, .deadline_ms = 1000};
	struct client_opts cl = {.addr = "127.0.0.1", .seconds = 5, .depth = 8, .block = 4096};
	int c;
	optind = 2;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 's': dm.seconds = so.seconds = cl.seconds = (unsigned)num(optarg, "--seconds"); break;
		case 'f': dm.fs = optarg; break;
		case 'n': dm.no_lease = so.no_lease = true; break;
		case 'F': dm.no_fanotify = so.no_fanotify = true; break;
		case 'j': dm.json = cl.json = true; break;
		case 'm': dm.mrs = so.mrs = (unsigned)num(optarg, "--mrs"); break;
		case 'z': dm.size = so.size = num(optarg, "--size"); size_given = true; break;
		case 'a': dm.actions = optarg; break;
		case 'P': dm.policy = optarg; so.policy = policy_of(optarg); break;
		case 'A': so.addr = cl.addr = optarg; addr_given = true; break;
		case 'p': so.port = cl.port = (unsigned)num(optarg, "--port"); break;
		case 'M': so.machine = cl.machine = true; break;
		case 'd': cl.depth = (unsigned)num(optarg, "--depth"); break;
		case 'b': cl.block = (unsigned)num(optarg, "--block"); break;
		case 'q': dm.quiet = true; break;
		case 'D': dm.deadline_ms = so.deadline_ms = (unsigned)num(optarg, "--deadline-ms"); break;
		case 'V': dm.device = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (dm.mrs == 0 || dm.mrs > MAX_MRS || dm.size < (uint64_t)dm.mrs * 65536) {
		fprintf(stderr, "mrlease: --mrs must be 1..%d with at least 64 KiB each\n", MAX_MRS);
		return 2;
	}
	if (cl.depth == 0 || cl.depth > 1024 || cl.block == 0 || cl.block > (1u << 24)) {
		fprintf(stderr, "mrlease: --depth 1..1024, --block 1..16 MiB\n");
		return 2;
	}
	if (!strcmp(cmd, "demo") && dm.device && strcmp(dm.device, "fabric"))
		return demo_device(&dm, size_given);
	if (!strcmp(cmd, "demo")) {
		if (strcmp(dm.fs, "ext4") && strcmp(dm.fs, "tmpfs")) {
			fprintf(stderr, "mrlease: --fs ext4 or tmpfs\n");
			return 2;
		}
		policy_of(dm.policy);
		return cmd_demo(&dm);
	}
	if (!strcmp(cmd, "serve")) {
		if (optind >= argc) {
			usage(stderr);
			return 2;
		}
		so.file = argv[optind];
		return cmd_serve(&so);
	}
	if (!strcmp(cmd, "client")) {
		if (optind >= argc) {
			usage(stderr);
			return 2;
		}
		/* HOST:PORT or HOST --port PORT */
		static char host[256];
		snprintf(host, sizeof(host), "%s", argv[optind]);
		char *colon = strrchr(host, ':');
		if (colon) {
			*colon = 0;
			cl.port = (unsigned)num(colon + 1, "port");
		}
		if (!cl.port || cl.port > 65535) {
			fprintf(stderr, "mrlease client: give the server as HOST:PORT\n");
			return 2;
		}
		cl.host = host;
		if (!addr_given && local_addr_for(host, cl.port, local, sizeof(local)) == 0)
			cl.addr = local;
		return cmd_client(&cl);
	}
	if (!strcmp(cmd, "coverage"))
		return cmd_coverage(optind < argc ? argv[optind] : NULL);
	usage(stderr);
	return 2;
}
