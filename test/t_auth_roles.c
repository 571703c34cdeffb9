/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Roles among authenticated peers: a second peer that knows the secret
 * (so its messages pass the tag) answers and closes in the victim's place:
 *  - PAUSE_ACK for every pause number while the owner waits for the
 *    victim's ack: the break goes on waiting (the MR stays paused) until
 *    the victim itself acks;
 *  - CLOSE of the MR the victim holds: only its own (absent) hold goes; the
 *    victim is still paused by the next break.
 * The victim's I/O before and after is whole and verified. */
#include <pthread.h>
#include <sys/mman.h>

#include "ep_int.h"
#include "rig_pair.h"

#define MRSZ (256 * 1024)

static mrl_ep *ep_no_ka(mrl_ctx *ctx, unsigned flags)
{
	/* no keep-alive: the victim stays quiet on purpose while a break waits */
	struct mrl_ep_opts eo = {.size = sizeof(eo), .flags = flags, .ka_ms = MRL_EP_KA_OFF};
	mrl_ep *ep;
	REQUIRE(mrl_ep_create(ctx, &eo, &ep) == 0, "endpoint");
	return ep;
}

static mrl_peer *connect_to(mrl_ep *sep, mrl_ep *cep, uint16_t port)
{
	return pair_connect(sep, cep, port, NULL);
}

static int mr_state(mrl_ctx *ctx, mrl_mr_t mr)
{
	struct mrl_mr_info in = {.size = sizeof(in)};
	return mrl_mr_query(ctx, mr, &in) ? -1 : (int)in.state;
}

static bool wait_state(mrl_ctx *ctx, mrl_mr_t mr, int st)
{
	for (uint64_t until = t_now_ns() + T_HANG_MS * 1000000ull; t_now_ns() < until; usleep(1000))
		if (mr_state(ctx, mr) == st)
			return true;
	return false;
}

static int rw_verified(mrl_ep *ep, mrl_rmr *r, uint32_t seq)
{
	unsigned char w[4096], rd[4096];
	struct mrl_completion c;
	for (int i = 0; i < 4096; i++)
		w[i] = (unsigned char)(seq * 17 + (uint32_t)i);
	for (int k = 0; k < 2; k++) {
		int ret = k ? mrl_read(r, 0, rd, sizeof(rd), NULL) : mrl_write(r, 0, w, sizeof(w), NULL);
		if (ret)
			return ret;
		uint64_t until = t_now_ns() + T_HANG_MS * 1000000ull;
		while (mrl_ep_poll(ep, &c, 1) != 1)
			if (t_now_ns() > until)
				return -ETIMEDOUT;
		if (c.status)
			return c.status;
	}
	return memcmp(w, rd, sizeof(w)) ? -EILSEQ : 0;
}

/* a punch by another process, past the victim's block: a break on the MR */
static pid_t punch(const char *path, int off)
{
	return t_sh_bg("fallocate --punch-hole -o %d -l 4096 %s", off, path);
}

int main(void)
{
	mrl_ctx *sctx = t_ctx("tcp;ofi_rxm", 60000), *vctx = t_ctx("tcp;ofi_rxm", 60000),
		*bctx = t_ctx("tcp;ofi_rxm", 60000);
	mrl_ep *sep = ep_no_ka(sctx, MRL_EP_AUTO_PROGRESS), *vep = ep_no_ka(vctx, 0),
	       *bep = ep_no_ka(bctx, MRL_EP_AUTO_PROGRESS);
	uint16_t port;
	REQUIRE(mrl_ep_listen(sep, "127.0.0.1", 0, &port) == 0, "listen");
	mrl_peer *victim = connect_to(sep, vep, port), *other = connect_to(sep, bep, port);
	char dir[256], path[300];
	t_scratch("ext4", dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/served", dir);
	t_make_file(path, MRSZ);
	void *base;
	mrl_mr_t mr;
	REQUIRE(mrl_file_map(sctx, path, 0, MRSZ, PROT_READ | PROT_WRITE, &base) == 0, "map");
	REQUIRE(mrl_mr_reg(sctx, base, MRSZ, MRL_ACCESS_REMOTE_READ | MRL_ACCESS_REMOTE_WRITE, NULL, &mr) == 0,
		"register");
	mrl_rmr *vr;
	/* the victim's open needs the owner's answer: the owner progresses itself */
	REQUIRE(mrl_rmr_open(victim, mr, T_HANG_MS, &vr) == 0, "victim opens the MR");
	CHECK(rw_verified(vep, vr, 1) == 0, "victim I/O before");

	/* 1. a break waits for the victim, which does not progress; the other
	 * peer acks every pause number in its place */
	uint64_t x, ain0, ain1, vin0, vout0, vin1, vout1;
	mrl_ep_pause_counts(sep, &x, &x, &ain0);
	mrl_ep_pause_counts(vep, &vin0, &vout0, &x);
	pid_t pp = punch(path, MRSZ - 4096);
	REQUIRE(wait_state(sctx, mr, MRL_STATE_PAUSED), "the break pauses the MR");
	enum { NACK = 500 };
	for (uint32_t s = 1; s <= NACK; s++) {
		struct msg_hdr a;
		mrl_ep_init_hdr(&a, MSG_PAUSE_ACK, sizeof(a), s);
		REQUIRE(mrl_ep_send_raw(other, &a, sizeof(a)) == 0, "send a PAUSE_ACK as the other peer");
	}
	/* the owner has taken every one of them (they pass the tag: they are
	 * the other peer's own) ... */
	for (uint64_t until = t_now_ns() + T_HANG_MS * 1000000ull; t_now_ns() < until; usleep(1000)) {
		mrl_ep_pause_counts(sep, &x, &x, &ain1);
		if (ain1 >= ain0 + NACK)
			break;
	}
	CHECK(ain1 == ain0 + NACK, "the owner received the other peer's %d acks (%llu)", NACK,
	      (unsigned long long)(ain1 - ain0));
	/* ... and still waits for the victim's */
	CHECK(mr_state(sctx, mr) == MRL_STATE_PAUSED, "the break still waits for the victim (state %d)",
	      mr_state(sctx, mr));
	/* the victim progresses: it is paused, acks, and is resumed */
	struct mrl_completion c;
	for (uint64_t until = t_now_ns() + T_HANG_MS * 1000000ull;
	     mr_state(sctx, mr) != MRL_STATE_ACTIVE && t_now_ns() < until;)
		mrl_ep_poll(vep, &c, 1);
	mrl_ep_pause_counts(vep, &vin1, &vout1, &x);
	CHECK(vin1 == vin0 + 1 && vout1 == vout0 + 1, "the victim was paused once and acked once");
	CHECK(mr_state(sctx, mr) == MRL_STATE_ACTIVE, "the break completed on the victim's ack");
	CHECK(t_wait_status(pp) == 0, "the punch landed");
	CHECK(rw_verified(vep, vr, 2) == 0, "victim I/O after the break");

	/* 2. CLOSE of the victim's MR in the other peer's message */
	struct msg_id cl;
	memset(&cl, 0, sizeof(cl));
	mrl_ep_init_hdr(&cl.h, MSG_CLOSE, sizeof(cl), 0);
	cl.id = mr;
	CHECK(mrl_ep_send_raw(other, &cl, sizeof(cl)) == 0, "the other peer closes the victim's MR");
	/* a request after it: once its answer is back, the owner has handled
	 * the close (one connection, in order) */
	mrl_mr_t ids[2];
	CHECK(mrl_peer_list(other, ids, 2, T_HANG_MS) == 1, "the other peer's own request works");
	/* the victim is still a holder: the next break pauses it */
	mrl_ep_pause_counts(vep, &vin0, &vout0, &x);
	pp = punch(path, MRSZ - 8192);
	REQUIRE(wait_state(sctx, mr, MRL_STATE_PAUSED), "the second break pauses the MR");
	for (uint64_t until = t_now_ns() + T_HANG_MS * 1000000ull;
	     mr_state(sctx, mr) != MRL_STATE_ACTIVE && t_now_ns() < until;)
		mrl_ep_poll(vep, &c, 1);
	mrl_ep_pause_counts(vep, &vin1, &vout1, &x);
	CHECK(t_wait_status(pp) == 0, "the second punch landed");
	CHECK(vin1 == vin0 + 1 && vout1 == vout0 + 1,
	      "the victim is still paused after a close in its place (%llu, %llu)",
	      (unsigned long long)(vin1 - vin0), (unsigned long long)(vout1 - vout0));
	CHECK(rw_verified(vep, vr, 3) == 0, "victim I/O after the second break");

	mrl_rmr_close(vr);
	mrl_ep_destroy(vep);
	mrl_ep_destroy(bep);
	mrl_ep_destroy(sep);
	mrl_mr_dereg(sctx, mr);
	mrl_file_unmap(sctx, base, MRSZ);
	mrl_ctx_destroy(vctx);
	mrl_ctx_destroy(bctx);
	mrl_ctx_destroy(sctx);
	unlink(path);
	rmdir(dir);
	return t_done("t_auth_roles");
}
