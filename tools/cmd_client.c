/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* `mrlease client HOST:PORT`: stream verified RMA reads and writes at every MR
 * a server exports, then write and read back every byte still served.
 * A read that does not return the block's last write is judged:
 *  - announced: a new generation lies between the write and the read, or
 *    arrives after the read (a change seen only after it landed is announced
 *    once the owner sees it): the owner told us, not a loss;
 *  - foreign: bytes that are neither zeros nor any of our own recent writes
 *    of that block: another process wrote into the file, which is shared
 *    memory (README, "Data written by others"), not the library's loss;
 *  - a mismatch (silent loss): zeros or our own older bytes with no new
 *    generation before the run ends. A foreign writer of zeros, or of a copy
 *    of our own older bytes, is counted here: the client cannot tell.
 * The final pass (write every block, read it back) judges the same way
 * (final_mismatches, or foreign). */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include "mrlease.h"
#include "cli.h"

struct slot {
	bool busy, is_write;
	uint32_t mr, blk;
	uint64_t posted;
	uint8_t *buf;
};

struct cstats {
	uint64_t transfers, failed, mismatches, refused, held_max, final_mismatches;
	uint64_t announced, foreign, gen_changes, bytes;
};

#define HIST 4 /* our last writes of a block the verifier recognises */

/* Per MR: reads that looked lost under the generation they ran in, waiting
 * for a new generation to announce them (gen only grows). */
struct suspects {
	uint32_t gen;
	uint64_t n;
};

/* Move suspects a new generation has announced since. */
static void settle(struct suspects *sp, uint32_t cur, struct cstats *cs)
{
	if (sp->n && cur != sp->gen) {
		cs->announced += sp->n;
		sp->n = 0;
	}
}

/* Does the block differ from our write seq? */
static bool memcmp_pattern(const uint8_t *buf, uint64_t l, uint32_t m, uint64_t off, uint32_t seq)
{
	for (uint64_t k = 0; k < l; k++)
		if (buf[k] != cli_pattern(m, off + k, seq))
			return true;
	return false;
}

/* Are the mismatching bytes of a block all zeros or our own earlier writes
 * (what a loss leaves), rather than someone else's bytes? */
static bool looks_lost(const uint8_t *buf, uint64_t l, uint32_t m, uint64_t off, const uint32_t *hist)
{
	uint64_t odd = 0, bad = 0;
	for (uint64_t k = 0; k < l; k++) {
		uint8_t want = cli_pattern(m, off + k, hist[0]);
		if (buf[k] == want)
			continue;
		bad++;
		bool ours = buf[k] == 0;
		for (int h = 1; h < HIST && !ours; h++)
			ours = hist[h] && buf[k] == cli_pattern(m, off + k, hist[h]);
		odd += !ours;
	}
	/* another writer's bytes match one of ours now and then, by chance */
	return odd * 4 < bad;
}

/* The bytes of a block at off, the last one short at end. */
static uint64_t block_len(uint64_t end, uint64_t off, uint64_t block)
{
	return end - off < block ? end - off : block;
}

static int client_run(const struct cli_opts *o, const char *host, unsigned port, const char *addr)
{
	struct mrl_ctx_opts co = {.size = sizeof(co), .addr = addr};
	mrl_ctx *ctx;
	mrl_ep *ep;
	mrl_peer *peer;
	int ret;
	bool unix_boot = !strncmp(host, "unix:", 5);
	if ((ret = cli_secret(o, "client", false, unix_boot)))
		return ret;
	if ((ret = mrl_ctx_create(&co, &ctx)))
		cli_die("context", ret);
	struct mrl_ep_opts eo = {.size = sizeof(eo),
				 .flags = (o->insecure ? MRL_EP_INSECURE : 0) | (unix_boot ? MRL_EP_PEERCRED : 0)};
	if ((ret = mrl_ep_create(ctx, &eo, &ep)))
		cli_die("endpoint", ret);
	if ((ret = mrl_ep_connect(ep, host, (uint16_t)port, 5000, &peer)))
		cli_die("connect", ret);
	mrl_mr_t ids[MAX_MRS];
	int nmr = mrl_peer_list(peer, ids, MAX_MRS, 5000);
	if (nmr <= 0)
		cli_die("list MRs", nmr ? nmr : -ENOENT);
	if (nmr > MAX_MRS)
		nmr = MAX_MRS;
	mrl_rmr *rmr[MAX_MRS];
	uint64_t len[MAX_MRS];
	uint32_t nblk[MAX_MRS];
	uint32_t *known[MAX_MRS];  /* per block: generation its content is known under, 0 = unknown */
	uint32_t *seqs[MAX_MRS];   /* per block: sequences of the last HIST completed writes, newest first */
	struct suspects sus[MAX_MRS] = {{0}};
	uint8_t *busy[MAX_MRS];
	uint32_t gen0[MAX_MRS];    /* generation when opened */
	for (int i = 0; i < nmr; i++) {
		if ((ret = mrl_rmr_open(peer, ids[i], 5000, &rmr[i])))
			cli_die("open remote MR", ret);
		struct mrl_rmr_info ri = {.size = sizeof(ri)};
		mrl_rmr_query(rmr[i], &ri);
		len[i] = ri.length;
		gen0[i] = ri.generation;
		nblk[i] = (uint32_t)((len[i] + o->block - 1) / o->block);
		known[i] = calloc(nblk[i], sizeof(uint32_t));
		seqs[i] = calloc((size_t)nblk[i] * HIST, sizeof(uint32_t));
		busy[i] = calloc(nblk[i], 1);
	}
	struct slot *slots = calloc(o->depth, sizeof(*slots));
	for (unsigned s = 0; s < o->depth; s++)
		slots[s].buf = aligned_alloc(4096, o->block);
	struct cstats cs = {0};
	uint64_t start = cli_now_ns(), until = start + (uint64_t)o->seconds * 1000000000ull;
	uint64_t last_print = 0, rng = 0x12345678;
	uint32_t seq = 1;
	signal(SIGTERM, cli_on_stop);
	signal(SIGPIPE, SIG_IGN);
	unsigned inflight = 0;
	bool draining = false;

	for (;;) {
		bool time_up = cli_stop || cli_now_ns() >= until;
		if (time_up)
			draining = true;
		/* post into free slots */
		for (unsigned s = 0; s < o->depth && !draining; s++) {
			if (slots[s].busy)
				continue;
			cli_rand(&rng);
			uint32_t m = (uint32_t)((rng >> 33) % (uint64_t)nmr);
			uint32_t b = (uint32_t)((rng >> 13) % nblk[m]);
			struct mrl_rmr_info ri = {.size = sizeof(ri)};
			mrl_rmr_query(rmr[m], &ri);
			uint64_t off = (uint64_t)b * o->block;
			uint64_t l = block_len(len[m], off, o->block);
			if (ri.state == MRL_STATE_FENCED &&
			    (ri.cause == MRL_CAUSE_DISCONNECTED || ri.cause == MRL_CAUSE_PEER_LOST)) {
				fprintf(stderr, "mrlease client: the server is gone (%s)\n", mrl_cause_str(ri.cause));
				draining = true; /* nothing more can be done */
				until = cli_now_ns();
				break;
			}
			if (busy[m][b] || ri.state == MRL_STATE_FENCED || off + l > ri.valid_length)
				continue; /* fenced parts are known to be gone: do not aim at them */
			bool wr = !known[m][b] || (rng & 0x100);
			struct slot *sl = &slots[s];
			sl->is_write = wr;
			sl->mr = m;
			sl->blk = b;
			if (wr) {
				for (uint64_t i = 0; i < l; i++)
					sl->buf[i] = cli_pattern(m, off + i, seq);
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
				until = cli_now_ns();
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
			uint64_t l = block_len(len[m], off, o->block);
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
			uint32_t *hist = &seqs[m][(size_t)b * HIST];
			if (sl->is_write) {
				known[m][b] = c[i].generation;
				memmove(hist + 1, hist, (HIST - 1) * sizeof(*hist));
				hist[0] = (uint32_t)sl->posted;
			} else if (known[m][b] && known[m][b] == c[i].generation) {
				/* no new generation since our write: the bytes must be ours */
				if (memcmp_pattern(sl->buf, l, m, off, hist[0])) {
					known[m][b] = 0;
					if (!looks_lost(sl->buf, l, m, off, hist)) {
						cs.foreign++;
					} else {
						struct mrl_rmr_info ri = {.size = sizeof(ri)};
						mrl_rmr_query(rmr[m], &ri);
						settle(&sus[m], ri.generation, &cs);
						if (ri.generation != c[i].generation) {
							cs.announced++;
						} else {
							sus[m].gen = c[i].generation;
							sus[m].n++;
						}
					}
				}
			} else {
				known[m][b] = 0; /* the owner told us it may have changed */
			}
		}
		for (int m = 0; m < nmr; m++)
			if (sus[m].n) {
				struct mrl_rmr_info ri = {.size = sizeof(ri)};
				mrl_rmr_query(rmr[m], &ri);
				settle(&sus[m], ri.generation, &cs);
			}
		if (o->machine && cli_now_ns() - last_print > 200000000ull) {
			printf("stats %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 "\n", cs.transfers,
			       cs.failed, cs.mismatches, cs.refused);
			fflush(stdout);
			last_print = cli_now_ns();
		}
		if (draining && !inflight)
			break;
		if (draining && cli_now_ns() > until + 10000000000ull) {
			cs.failed += inflight; /* never completed */
			break;
		}
	}

	/* A change the owner sees after it landed is announced once it sees it:
	 * give suspects that long (a bound for a hung owner, not a measure). */
	for (uint64_t t0 = cli_now_ns(); !cli_stop && cli_now_ns() - t0 < 5000000000ull;) {
		uint64_t left = 0;
		for (int m = 0; m < nmr; m++) {
			struct mrl_rmr_info ri = {.size = sizeof(ri)};
			mrl_rmr_query(rmr[m], &ri);
			settle(&sus[m], ri.generation, &cs);
			left += sus[m].n;
		}
		if (!left)
			break;
		struct mrl_completion c1;
		mrl_ep_poll(ep, &c1, 0);
		usleep(1000);
	}
	for (int m = 0; m < nmr; m++) {
		cs.mismatches += sus[m].n; /* never announced: silent loss */
		struct mrl_rmr_info ri = {.size = sizeof(ri)};
		mrl_rmr_query(rmr[m], &ri);
		cs.gen_changes += ri.generation - gen0[m];
	}

	/* Final pass: write every still-served byte with the final pattern and
	 * read it back; the orchestrator then checks the file itself. */
	for (int m = 0; m < nmr && !cli_stop; m++) {
		struct mrl_rmr_info ri = {.size = sizeof(ri)};
		mrl_rmr_query(rmr[m], &ri);
		if (ri.state == MRL_STATE_FENCED)
			continue;
		for (uint64_t off = 0; off < ri.valid_length; off += o->block) {
			uint64_t l = block_len(ri.valid_length, off, o->block);
			/* a change announced between the write and the read back (a new
			 * generation) explains a difference: write the block again */
			uint32_t wgen = 0;
			for (int pass = 0, tries = 0; pass < 2; pass++) {
				uint8_t *buf = slots[0].buf;
				if (pass == 0)
					for (uint64_t i = 0; i < l; i++)
						buf[i] = cli_pattern((uint32_t)m, off + i, CLI_FINAL_SEQ);
				ret = pass == 0 ? mrl_write(rmr[m], off, buf, l, buf)
						: mrl_read(rmr[m], off, buf, l, buf);
				struct mrl_completion c1 = {.status = ret};
				uint64_t t0 = cli_now_ns();
				while (!ret && mrl_ep_poll(ep, &c1, 1) == 0 && cli_now_ns() - t0 < 10000000000ull)
					;
				if (c1.status == -EKEYREVOKED) {
					cs.refused++;
					break;
				}
				if (c1.status || (cli_now_ns() - t0 >= 10000000000ull)) {
					cs.failed++;
					break;
				}
				cs.transfers++;
				if (pass == 0) {
					wgen = c1.generation;
					continue;
				}
				bool same = true;
				for (uint64_t i = 0; i < l && same; i++)
					same = buf[i] == cli_pattern((uint32_t)m, off + i, CLI_FINAL_SEQ);
				if (same)
					continue;
				/* another process's bytes (shared memory), not a loss */
				uint32_t fh[HIST] = {CLI_FINAL_SEQ};
				memcpy(fh + 1, &seqs[m][(size_t)(off / o->block) * HIST], (HIST - 1) * sizeof(*fh));
				if (!looks_lost(buf, l, (uint32_t)m, off, fh)) {
					cs.foreign++;
					continue;
				}
				/* the announcement may still be on its way (as in the
				 * stream above: up to 5 s) */
				uint32_t gen = c1.generation;
				for (uint64_t t1 = cli_now_ns(); gen == wgen && cli_now_ns() - t1 < 5000000000ull;) {
					struct mrl_completion c2;
					struct mrl_rmr_info gi = {.size = sizeof(gi)};
					mrl_ep_poll(ep, &c2, 0);
					mrl_rmr_query(rmr[m], &gi);
					gen = gi.generation;
					if (gen == wgen)
						usleep(1000);
				}
				if (gen != wgen && ++tries < 8) {
					cs.announced++;
					pass = -1; /* again, from the write */
					continue;
				}
				cs.final_mismatches++;
			}
		}
	}
	double secs = (cli_now_ns() - start) / 1e9;
	printf("%s{\"transfers\":%" PRIu64 ",\"failed\":%" PRIu64 ",\"mismatches\":%" PRIu64
	       ",\"refused\":%" PRIu64 ",\"final_mismatches\":%" PRIu64 ",\"announced\":%" PRIu64
	       ",\"foreign\":%" PRIu64 ",\"gen_changes\":%" PRIu64 ",\"mib_s\":%.1f,\"mrs\":%d}\n",
	       o->machine ? "final " : "", cs.transfers, cs.failed, cs.mismatches, cs.refused,
	       cs.final_mismatches, cs.announced, cs.foreign, cs.gen_changes, cs.bytes / secs / 1048576.0, nmr);
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

int cmd_client(const struct cli_opts *o)
{
	if (!o->nargs)
		return CLI_USAGE;
	/* HOST:PORT or HOST --port PORT, or unix:PATH (serve --unix PATH) */
	char host[256], local[64];
	const char *addr = o->addr;
	unsigned port = o->port;
	if (!strncmp(o->args[0], "unix:", 5)) {
		if (o->insecure) {
			fprintf(stderr, "mrlease client: --insecure and unix:PATH: the socket's uid check is "
					"the credential; drop --insecure\n");
			return 2;
		}
		return client_run(o, o->args[0], 0, addr);
	}
	snprintf(host, sizeof(host), "%s", o->args[0]);
	char *colon = strrchr(host, ':');
	if (colon) {
		*colon = 0;
		port = (unsigned)cli_num(colon + 1, "port", 1, 65535);
	}
	if (!port || port > 65535) {
		fprintf(stderr, "mrlease client: give the server as HOST:PORT\n");
		return 2;
	}
	if (!o->addr_given && local_addr_for(host, port, local, sizeof(local)) == 0)
		addr = local;
	return client_run(o, host, port, addr);
}
