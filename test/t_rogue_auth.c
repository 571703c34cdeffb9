/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* A stranger on the network, as a program written against plain libfabric
 * and sockets (the rogue_* functions: no mrlease code, its own copy of the
 * wire format), attacks an owner while a victim peer streams verified
 * writes and reads at the owner's file:
 *  - bootstrap without the secret (a guessed proof) and with garbage: each
 *    refused, no peer entry;
 *  - every control message type forged in the victim's name to the owner
 *    and in the owner's name to the victim (every peer index it might
 *    carry): each dropped and counted in bad_msgs, exactly;
 *  - 100 idle bootstrap connections (past the owner's cap of 64) while a
 *    second real client connects: it gets in.
 * The victim sees 0 failed operations and 0 wrong bytes, goes on streaming
 * after the forgeries, and is still paused (and resumed) by a real break
 * after a forged CLOSE in its name. A replayed message of the victim's own
 * is dropped too. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>

#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_errno.h>

#include "ep_int.h"
#include "rig_pair.h"

/* ---------------- the rogue: plain libfabric, no mrlease ---------------- */

#define R_MAGIC 0x4d524c33u      /* control messages */
#define R_BOOT_MAGIC 0x4d524c42u /* bootstrap */
#define R_NTYPES 12              /* OPEN_REQ .. STATE_RUNS */
#define R_NIDX 4                 /* peer indexes it tries */

struct r_hdr {
	uint32_t magic;
	uint8_t type, pad;
	uint16_t len;
	uint32_t peer, req;
	uint64_t seq;
	uint8_t tag[16];
};

struct r_hello {
	uint32_t magic, flags, idx, namelen;
	unsigned char name[64], nonce[32];
};
struct r_challenge {
	uint32_t magic, flags, namelen, pad;
	unsigned char name[64], nonce[32], proof[32];
};
struct r_proof {
	uint32_t magic, pad;
	unsigned char proof[32];
};
struct r_ready {
	uint32_t magic;
	int32_t status;
	uint32_t idx, pad;
};

/* what the test tells the rogue, and what the rogue reports */
struct r_cmd {
	uint16_t port;
	uint32_t victim_namelen;
	unsigned char victim_name[64];
	uint64_t mr_ids[4];
};
struct r_report {
	int refused_guess, refused_garbage, owner_name_ok;
	int sent_owner, sent_victim;
	int idle_open;
};

struct rogue_fab {
	struct fi_info *info;
	struct fid_fabric *fabric;
	struct fid_domain *domain;
	struct fid_cq *cq;
	struct fid_av *av;
	struct fid_ep *ep;
	unsigned char name[64];
	size_t namelen;
};

static int rogue_connect(uint16_t port)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	struct timeval tv = {.tv_sec = 30}; /* a hang bound: the owner answers at once */
	if (s >= 0)
		setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (s >= 0 && connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(s);
		return -1;
	}
	return s;
}

static int rogue_fab_open(struct rogue_fab *f)
{
	struct fi_info *hints = fi_allocinfo();
	hints->ep_attr->type = FI_EP_RDM;
	hints->caps = FI_MSG | FI_RMA;
	hints->mode = FI_CONTEXT | FI_CONTEXT2;
	hints->domain_attr->mr_mode = FI_MR_LOCAL | FI_MR_VIRT_ADDR | FI_MR_ALLOCATED | FI_MR_PROV_KEY;
	hints->fabric_attr->prov_name = strdup("tcp;ofi_rxm");
	int r = fi_getinfo(FI_VERSION(1, 9), "127.0.0.1", NULL, FI_SOURCE, hints, &f->info);
	fi_freeinfo(hints);
	if (r)
		return r;
	struct fi_cq_attr cqa = {.format = FI_CQ_FORMAT_CONTEXT, .size = 256};
	struct fi_av_attr ava = {.type = FI_AV_TABLE};
	if ((r = fi_fabric(f->info->fabric_attr, &f->fabric, NULL)) ||
	    (r = fi_domain(f->fabric, f->info, &f->domain, NULL)) ||
	    (r = fi_cq_open(f->domain, &cqa, &f->cq, NULL)) ||
	    (r = fi_av_open(f->domain, &ava, &f->av, NULL)) ||
	    (r = fi_endpoint(f->domain, f->info, &f->ep, NULL)) ||
	    (r = fi_ep_bind(f->ep, &f->cq->fid, FI_TRANSMIT | FI_RECV)) ||
	    (r = fi_ep_bind(f->ep, &f->av->fid, 0)) || (r = fi_enable(f->ep)))
		return r;
	f->namelen = sizeof(f->name);
	return fi_getname(&f->ep->fid, f->name, &f->namelen);
}

static void rogue_fab_close(struct rogue_fab *f)
{
	fi_close(&f->ep->fid);
	fi_close(&f->av->fid);
	fi_close(&f->cq->fid);
	fi_close(&f->domain->fid);
	fi_close(&f->fabric->fid);
	fi_freeinfo(f->info);
}

/* Bootstrap with a guessed proof: the owner's fabric address comes with
 * its challenge; 1 if the owner then refused us. */
static int rogue_boot_guess(uint16_t port, const struct rogue_fab *f, unsigned char *owner_name,
			    uint32_t *owner_namelen)
{
	int s = rogue_connect(port);
	struct r_hello h = {.magic = R_BOOT_MAGIC, .flags = 1, .namelen = (uint32_t)f->namelen};
	struct r_challenge c;
	struct r_proof pf = {.magic = R_BOOT_MAGIC};
	struct r_ready rdy;
	memcpy(h.name, f->name, f->namelen);
	for (size_t i = 0; i < sizeof(pf.proof); i++)
		pf.proof[i] = (unsigned char)(i * 37 + 11);
	int ok = s >= 0 && send(s, &h, sizeof(h), 0) == sizeof(h) &&
		 recv(s, &c, sizeof(c), MSG_WAITALL) == sizeof(c) && c.magic == R_BOOT_MAGIC &&
		 c.namelen <= 64;
	if (ok) {
		memcpy(owner_name, c.name, c.namelen);
		*owner_namelen = c.namelen;
	}
	ok = ok && send(s, &pf, sizeof(pf), 0) == sizeof(pf) &&
	     recv(s, &rdy, sizeof(rdy), MSG_WAITALL) == sizeof(rdy) && rdy.status == -EACCES;
	char x;
	ok = ok && recv(s, &x, 1, 0) == 0; /* and hung up */
	if (s >= 0)
		close(s);
	return ok;
}

/* Bootstrap with garbage: 1 if the owner hung up without a challenge. */
static int rogue_boot_garbage(uint16_t port)
{
	int s = rogue_connect(port);
	unsigned char junk[sizeof(struct r_hello)];
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (unsigned char)(i * 13 + 7);
	char x;
	int ok = s >= 0 && send(s, junk, sizeof(junk), 0) == sizeof(junk) && recv(s, &x, 1, 0) == 0;
	if (s >= 0)
		close(s);
	return ok;
}

static size_t r_msg_len(int type)
{
	/* the sizes of mrlease's messages, as a sniffer would learn them */
	static const size_t len[R_NTYPES + 1] = {0, 48, 96, 48, 272, 1024, 40, 96, 48, 176, 40, 40, 72};
	return len[type];
}

/* Every message type, in the name of every peer index, to dest. */
static int rogue_forge(struct rogue_fab *f, fi_addr_t dest, const struct r_cmd *cmd, uint32_t *seq)
{
	static unsigned char bufs[R_NTYPES * R_NIDX][1024];
	static struct fi_context2 ctxs[R_NTYPES * R_NIDX];
	int n = 0;
	for (int type = 1; type <= R_NTYPES; type++)
		for (uint32_t idx = 0; idx < R_NIDX; idx++, n++) {
			unsigned char *b = bufs[n];
			size_t len = r_msg_len(type);
			memset(b, 0, len);
			struct r_hdr *h = (struct r_hdr *)b;
			*h = (struct r_hdr){.magic = R_MAGIC, .type = (uint8_t)type, .len = (uint16_t)len,
					    .peer = idx, .req = ++*seq, .seq = *seq};
			for (int i = 0; i < 16; i++)
				h->tag[i] = (uint8_t)(*seq * 31 + (uint32_t)i);
			/* a body that would do harm if believed: name the MRs */
			uint64_t *body = (uint64_t *)(b + sizeof(*h));
			if (type == 5) { /* PAUSE: 4 runs of one id each */
				((uint32_t *)body)[0] = 4;
				((uint32_t *)body)[1] = 4;
				for (int i = 0; i < 4; i++) {
					body[1 + 2 * i] = cmd->mr_ids[i];
					body[2 + 2 * i] = 1;
				}
			} else if (type == 12) { /* STATE_RUNS: fence the 4 MRs, one run each */
				((uint32_t *)body)[0] = 1;
				body[1] = cmd->mr_ids[0];
				body[2] = 1;
				body[3] = 3; /* state 3: fenced */
			} else if (type == 9) { /* STATES: n = 4, then ids */
				((uint32_t *)body)[0] = 4;
				for (int i = 0; i < 4; i++)
					body[1 + i * 4] = cmd->mr_ids[i];
			} else if (type == 1 || type == 8) { /* OPEN_REQ, CLOSE */
				body[0] = cmd->mr_ids[idx];
			} else if (type == 2 || type == 7) { /* OPEN_REP, STATE: fence MR idx */
				body[0] = 3ull << 32; /* status 0, state 3 (fenced) */
				body[1] = cmd->mr_ids[idx];
			}
			ssize_t r;
			do {
				r = fi_send(f->ep, b, len, NULL, dest, &ctxs[n]);
				if (r == -FI_EAGAIN) {
					struct fi_cq_entry e[8];
					fi_cq_read(f->cq, e, 8);
				}
			} while (r == -FI_EAGAIN);
			if (r)
				return -1;
		}
	/* wait for every send to complete: the messages are out (a hang
	 * bound of 30 s: a send that never completes fails the count) */
	time_t until = time(NULL) + 30;
	for (int done = 0; done < n;) {
		if (time(NULL) > until)
			return -1;
		struct fi_cq_entry e[16];
		ssize_t got = fi_cq_read(f->cq, e, 16);
		if (got > 0)
			done += (int)got;
		else if (got == -FI_EAVAIL) {
			struct fi_cq_err_entry ee = {0};
			fi_cq_readerr(f->cq, &ee, 0);
			done++;
		}
	}
	return n;
}

/* The rogue's life: read what to attack, attack, report; then hold idle
 * bootstrap connections until told to let go. */
static int rogue_main(int in, int out)
{
	struct r_cmd cmd;
	struct r_report rep = {0};
	struct rogue_fab f;
	memset(&f, 0, sizeof(f));
	if (read(in, &cmd, sizeof(cmd)) != sizeof(cmd) || rogue_fab_open(&f))
		return 1;
	unsigned char owner_name[64];
	uint32_t owner_namelen = 0, seq = 0;
	rep.refused_guess = rogue_boot_guess(cmd.port, &f, owner_name, &owner_namelen);
	rep.refused_garbage = rogue_boot_garbage(cmd.port);
	fi_addr_t owner, victim;
	rep.owner_name_ok = owner_namelen > 0 &&
			    fi_av_insert(f.av, owner_name, 1, &owner, 0, NULL) == 1 &&
			    fi_av_insert(f.av, cmd.victim_name, 1, &victim, 0, NULL) == 1;
	if (rep.owner_name_ok) {
		rep.sent_owner = rogue_forge(&f, owner, &cmd, &seq);
		rep.sent_victim = rogue_forge(&f, victim, &cmd, &seq);
	}
	if (write(out, &rep, sizeof(rep)) != sizeof(rep))
		return 1;
	/* phase 2: idle connections, past the owner's cap */
	char go;
	if (read(in, &go, 1) != 1)
		return 1;
	int idle[100];
	for (int i = 0; i < 100; i++)
		rep.idle_open += (idle[i] = rogue_connect(cmd.port)) >= 0;
	if (write(out, &rep, sizeof(rep)) != sizeof(rep))
		return 1;
	if (read(in, &go, 1) != 1)
		return 1;
	for (int i = 0; i < 100; i++)
		if (idle[i] >= 0)
			close(idle[i]);
	rogue_fab_close(&f);
	return 0;
}

/* ---------------- the test: owner and victim are mrlease ---------------- */

#define NMR 4
#define MRSZ (256 * 1024)
#define BLK 4096
#define NBLK 32 /* the victim streams over the first 128 KiB of each MR */

struct victim {
	mrl_ep *ep;
	mrl_rmr *r[NMR];
	atomic_bool stop;
	atomic_ullong ops, failed, wrong;
};

static int wait_one(mrl_ep *ep, struct mrl_completion *c)
{
	for (uint64_t until = t_now_ns() + T_HANG_MS * 1000000ull; t_now_ns() < until;)
		if (mrl_ep_poll(ep, c, 1) == 1)
			return 0;
	return -ETIMEDOUT;
}

static void *victim_main(void *a)
{
	struct victim *v = a;
	unsigned char w[BLK], rd[BLK];
	for (uint32_t seq = 1; !atomic_load(&v->stop); seq++) {
		int m = (int)(seq % NMR);
		uint64_t off = (uint64_t)(seq / NMR % NBLK) * BLK;
		for (int i = 0; i < BLK; i++)
			w[i] = (unsigned char)(seq * 131 + (uint32_t)i * 7);
		struct mrl_completion c;
		if (mrl_write(v->r[m], off, w, BLK, NULL) || wait_one(v->ep, &c) || c.status) {
			atomic_fetch_add(&v->failed, 1);
			continue;
		}
		if (mrl_read(v->r[m], off, rd, BLK, NULL) || wait_one(v->ep, &c) || c.status) {
			atomic_fetch_add(&v->failed, 1);
			continue;
		}
		for (int i = 0; i < BLK; i++)
			if (rd[i] != w[i])
				atomic_fetch_add(&v->wrong, 1);
		atomic_fetch_add(&v->ops, 2);
	}
	return NULL;
}

static uint64_t bad_of(mrl_ctx *ctx)
{
	struct mrl_stats s = {.size = sizeof(s)};
	mrl_ctx_stats(ctx, &s);
	return s.bad_msgs;
}

/* until the victim has done n more operations (it goes on streaming) */
static bool victim_advances(struct victim *v, uint64_t n)
{
	uint64_t want = atomic_load(&v->ops) + n;
	for (uint64_t until = t_now_ns() + T_HANG_MS * 1000000ull; t_now_ns() < until;) {
		if (atomic_load(&v->ops) >= want)
			return true;
		usleep(1000);
	}
	return false;
}

static bool wait_count(mrl_ctx *ctx, uint64_t want)
{
	for (uint64_t until = t_now_ns() + T_HANG_MS * 1000000ull; t_now_ns() < until;) {
		if (bad_of(ctx) >= want)
			return true;
		usleep(1000);
	}
	return false;
}

/* A sealed message of the victim's to the owner, sent twice by hand: the
 * first is taken, the copy is a replay. */
static void test_replay(struct pair *pr)
{
	struct msg_hdr ping;
	mrl_ep_init_hdr(&ping, MSG_PING, sizeof(ping), 0);
	mrl_lock(&pr->cep->lock);
	ping.magic = MRL_MAGIC;
	ping.peer = pr->cpeer->remote_idx;
	mrl_auth_seal(pr->cpeer, &ping, sizeof(ping));
	mrl_unlock(&pr->cep->lock);
	uint64_t bad = bad_of(pr->sctx);
	mrl_lock(&pr->sep->lock);
	mrl_ep_handle_msg(pr->sep, (unsigned char *)&ping, sizeof(ping));
	uint64_t after_first = bad_of(pr->sctx);
	mrl_ep_handle_msg(pr->sep, (unsigned char *)&ping, sizeof(ping));
	mrl_unlock(&pr->sep->lock);
	CHECK(after_first == bad, "the victim's own message is taken once");
	CHECK(bad_of(pr->sctx) == bad + 1, "its replay is dropped and counted");
	/* altered by one bit: not the victim's any more */
	ping.req ^= 1;
	mrl_lock(&pr->sep->lock);
	mrl_ep_handle_msg(pr->sep, (unsigned char *)&ping, sizeof(ping));
	mrl_unlock(&pr->sep->lock);
	CHECK(bad_of(pr->sctx) == bad + 2, "an altered message is dropped and counted");
}

static void *accept_one(void *a)
{
	struct pair_acc *x = a;
	x->ret = mrl_ep_accept(x->ep, T_HANG_MS, &x->peer);
	return NULL;
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	int to_rogue[2], from_rogue[2];
	REQUIRE(pipe(to_rogue) == 0 && pipe(from_rogue) == 0, "pipes");
	/* the rogue is its own process, started before any mrlease call */
	pid_t rpid = fork();
	REQUIRE(rpid >= 0, "fork");
	if (rpid == 0) {
		close(to_rogue[1]);
		close(from_rogue[0]);
		_exit(rogue_main(to_rogue[0], from_rogue[1]));
	}
	close(to_rogue[0]);
	close(from_rogue[1]);

	struct pair pr;
	pair_open(&pr);
	char dir[256], path[300];
	t_scratch("ext4", dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/served", dir);
	t_make_file(path, NMR * MRSZ);
	void *base;
	mrl_mr_t mr[NMR];
	pair_serve_file(&pr, path, NMR, MRSZ, &base, mr);
	struct victim v = {.ep = pr.cep};
	for (int i = 0; i < NMR; i++)
		REQUIRE(mrl_rmr_open(pr.cpeer, mr[i], T_HANG_MS, &v.r[i]) == 0, "victim opens MR %d", i);
	pthread_t vt;
	pthread_create(&vt, NULL, victim_main, &v);
	REQUIRE(victim_advances(&v, 100), "the victim streams");

	/* phase 1: the rogue's bootstrap tries and forgeries */
	struct r_cmd cmd = {0};
	/* the rogue's copy of the wire format is mrlease's */
	REQUIRE(r_msg_len(MSG_OPEN_REQ) == sizeof(struct msg_id) &&
			r_msg_len(MSG_STATE) == sizeof(struct msg_state) &&
			r_msg_len(MSG_LIST_REP) == sizeof(struct msg_list_rep) &&
			r_msg_len(MSG_PAUSE) == sizeof(struct msg_pause) &&
			r_msg_len(MSG_STATE_RUNS) == offsetof(struct msg_state_runs, r) + sizeof(struct state_run) &&
			r_msg_len(MSG_PONG) == sizeof(struct msg_hdr) &&
			sizeof(struct r_hdr) == sizeof(struct msg_hdr) &&
			sizeof(struct r_challenge) == sizeof(struct boot_challenge) &&
			sizeof(struct r_hello) == sizeof(struct boot_hello),
		"the rogue speaks mrlease's wire format");
	/* the pair's owner listens already: find its port */
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	REQUIRE(getsockname(pr.sep->lsock, (struct sockaddr *)&sa, &sl) == 0, "owner's port");
	cmd.port = ntohs(sa.sin_port);
	cmd.victim_namelen = (uint32_t)pr.cep->namelen; /* a sniffer sees it on the wire */
	memcpy(cmd.victim_name, pr.cep->name, pr.cep->namelen);
	for (int i = 0; i < NMR; i++)
		cmd.mr_ids[i] = mr[i];
	uint64_t owner_bad = bad_of(pr.sctx), victim_bad = bad_of(pr.cctx);
	uint32_t owner_peers = pr.sep->npeers;
	/* the owner's loop accepts while the rogue tries */
	struct pair_acc acc = {.ep = pr.sep};
	REQUIRE(write(to_rogue[1], &cmd, sizeof(cmd)) == sizeof(cmd), "brief the rogue");
	uint64_t until = t_now_ns() + T_HANG_MS * 1000000ull;
	struct pollfd rp = {.fd = from_rogue[0], .events = POLLIN};
	while (poll(&rp, 1, 0) == 0 && t_now_ns() < until)
		mrl_ep_accept(pr.sep, 10, &acc.peer);
	struct r_report rep;
	REQUIRE(read(from_rogue[0], &rep, sizeof(rep)) == sizeof(rep), "the rogue's report");
	CHECK(rep.refused_guess, "a guessed proof: refused (EACCES) and hung up");
	CHECK(rep.refused_garbage, "a garbage hello: hung up without a challenge");
	CHECK(mrl_ep_auth_failed(pr.sep) == 2, "both counted as refused (%llu)",
	      (unsigned long long)mrl_ep_auth_failed(pr.sep));
	CHECK(pr.sep->npeers == owner_peers, "no peer entry for the rogue");
	REQUIRE(rep.owner_name_ok, "the rogue reached the owner's and the victim's fabric addresses");
	CHECK(rep.sent_owner == R_NTYPES * R_NIDX && rep.sent_victim == R_NTYPES * R_NIDX,
	      "the rogue sent every forgery (%d, %d)", rep.sent_owner, rep.sent_victim);
	/* every forgery is dropped and counted, exactly */
	CHECK(wait_count(pr.sctx, owner_bad + (uint64_t)rep.sent_owner),
	      "the owner dropped the forgeries in the victim's name");
	CHECK(wait_count(pr.cctx, victim_bad + (uint64_t)rep.sent_victim),
	      "the victim dropped the forgeries in the owner's name");
	CHECK(victim_advances(&v, 200), "the victim goes on streaming after the forgeries");
	CHECK(bad_of(pr.sctx) == owner_bad + (uint64_t)rep.sent_owner &&
		      bad_of(pr.cctx) == victim_bad + (uint64_t)rep.sent_victim,
	      "no more, no fewer dropped (owner %llu of %d, victim %llu of %d)",
	      (unsigned long long)(bad_of(pr.sctx) - owner_bad), rep.sent_owner,
	      (unsigned long long)(bad_of(pr.cctx) - victim_bad), rep.sent_victim);
	for (int i = 0; i < NMR; i++) {
		struct mrl_rmr_info in = {.size = sizeof(in)};
		mrl_rmr_query(v.r[i], &in);
		CHECK(in.state == MRL_STATE_ACTIVE, "victim's MR %d still active (state %u)", i, in.state);
	}

	/* a real break after the forged CLOSE and PAUSE_ACK in the victim's
	 * name: the owner still pauses the victim and waits for its own ack */
	uint64_t pin0, aout0, ain0, pin1, aout1, ain1, x;
	mrl_ep_pause_counts(pr.cep, &pin0, &aout0, &x);
	mrl_ep_pause_counts(pr.sep, &x, &x, &ain0);
	REQUIRE(t_sh("fallocate --punch-hole -o %d -l 65536 %s", (NMR - 1) * MRSZ + 192 * 1024, path) == 0,
		"another process punches the file outside the victim's blocks");
	for (until = t_now_ns() + T_HANG_MS * 1000000ull; t_now_ns() < until;) {
		mrl_ep_pause_counts(pr.sep, &x, &x, &ain1);
		if (ain1 > ain0)
			break;
		usleep(1000);
	}
	mrl_ep_pause_counts(pr.cep, &pin1, &aout1, &x);
	CHECK(pin1 > pin0 && aout1 > aout0, "the victim was paused and acked (%llu, %llu)",
	      (unsigned long long)(pin1 - pin0), (unsigned long long)(aout1 - aout0));
	CHECK(ain1 > ain0, "the owner received the victim's ack");
	CHECK(victim_advances(&v, 200), "the victim streams after the break");
	test_replay(&pr);

	/* phase 2: 100 idle connections while a real client connects; the
	 * owner accepts throughout, as serve does, until a peer is in */
	acc = (struct pair_acc){.ep = pr.sep};
	pthread_t at;
	pthread_create(&at, NULL, accept_one, &acc);
	REQUIRE(write(to_rogue[1], "g", 1) == 1, "idle phase");
	REQUIRE(read(from_rogue[0], &rep, sizeof(rep)) == sizeof(rep), "idle connections open");
	CHECK(rep.idle_open == 100, "the rogue holds %d idle connections", rep.idle_open);
	mrl_ctx *c2 = t_ctx("tcp;ofi_rxm", 10000);
	mrl_ep *ep2;
	mrl_peer *p2;
	REQUIRE(mrl_ep_create(c2, NULL, &ep2) == 0, "second client");
	int cr = mrl_ep_connect(ep2, "127.0.0.1", cmd.port, T_HANG_MS, &p2);
	pthread_join(at, NULL);
	CHECK(cr == 0 && acc.ret == 0, "a real client gets in past 100 idle connections (%d, %d)", cr,
	      acc.ret);
	CHECK(mrl_ep_boot_pending(pr.sep) <= 64, "the owner holds at most 64 handshakes (%u)",
	      mrl_ep_boot_pending(pr.sep));
	mrl_mr_t ids[NMR];
	CHECK(cr || mrl_peer_list(p2, ids, NMR, T_HANG_MS) == NMR, "and is served");
	REQUIRE(write(to_rogue[1], "x", 1) == 1, "let go");
	int st;
	waitpid(rpid, &st, 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the rogue ran to its end (%#x)", st);

	atomic_store(&v.stop, true);
	pthread_join(vt, NULL);
	printf("victim: %llu operations, %llu failed, %llu wrong bytes; owner dropped %llu, victim %llu\n",
	       (unsigned long long)v.ops, (unsigned long long)v.failed, (unsigned long long)v.wrong,
	       (unsigned long long)(bad_of(pr.sctx) - owner_bad),
	       (unsigned long long)(bad_of(pr.cctx) - victim_bad));
	CHECK(v.failed == 0, "the victim saw %llu failed operations", (unsigned long long)v.failed);
	CHECK(v.wrong == 0, "the victim read %llu wrong bytes", (unsigned long long)v.wrong);
	mrl_ep_destroy(ep2);
	mrl_ctx_destroy(c2);
	pair_unserve_file(&pr, NMR, MRSZ, base, mr, v.r);
	unlink(path);
	rmdir(dir);
	return t_done("t_rogue_auth");
}
