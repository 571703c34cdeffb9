/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* libFuzzer over the control-message parser: the real receive path
 * (mrl_ep_handle_msg: header, tag, replay window, then every type's fields
 * and handler) of a real owner and a real peer connected over tcp;ofi_rxm
 * on loopback, with MRs registered and opened so the handlers have
 * something to act on.
 *
 * Input: byte 0 chooses the receiver (bit 0: the peer, else the owner) and
 * whether the rest is sealed as the other side would send it (bit 1:
 * magic, length, peer index, sequence number and tag filled in, so the
 * fuzzer explores what an authenticated sender can send) or delivered as
 * it is (what a stranger can send: it must never get past the tag). Bit 2:
 * MR ids 0..3 in the id fields stand for the MRs registered (the fuzzer
 * cannot guess an id; the parser still sees only real bytes).
 * Built by `make fuzz` (clang -fsanitize=fuzzer,address,undefined). */
#include <pthread.h>
#include <stdint.h>
#include <sys/mman.h>

#include "ep_int.h"
#include "rig_pair.h"

#define NMR 4

static struct {
	mrl_ctx *sctx, *cctx;
	mrl_ep *sep, *cep;
	mrl_peer *speer, *cpeer;
	mrl_mr_t mr[NMR];
	mrl_rmr *rmr[NMR];
	void *mem;
	uint64_t stranger_passed;
} F;

/* both sides' messages in flight (answers, acks, pongs) are handled */
static void settle(void)
{
	for (int i = 0; i < 4; i++) {
		mrl_ep_progress(F.sep);
		mrl_ep_progress(F.cep);
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	F.sctx = t_ctx("tcp;ofi_rxm", 10000);
	F.cctx = t_ctx("tcp;ofi_rxm", 10000);
	REQUIRE(mrl_ep_create(F.sctx, NULL, &F.sep) == 0 && mrl_ep_create(F.cctx, NULL, &F.cep) == 0,
		"endpoints");
	uint16_t port;
	REQUIRE(mrl_ep_listen(F.sep, "127.0.0.1", 0, &port) == 0, "listen");
	F.cpeer = pair_connect(F.sep, F.cep, port, &F.speer);
	F.mem = mmap(NULL, NMR * 65536, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	for (int i = 0; i < NMR; i++)
		REQUIRE(mrl_mr_reg(F.sctx, (char *)F.mem + i * 65536, 65536,
				   MRL_ACCESS_REMOTE_READ | MRL_ACCESS_REMOTE_WRITE, NULL, &F.mr[i]) == 0,
			"register");
	return 0;
}

static void *owner_progress(void *a)
{
	atomic_bool *stop = a;
	while (!atomic_load(stop))
		mrl_ep_progress(F.sep);
	return NULL;
}

static void open_all(void)
{
	static bool done;
	if (done)
		return;
	done = true;
	atomic_bool stop = false;
	pthread_t t;
	pthread_create(&t, NULL, owner_progress, &stop);
	for (int i = 0; i < NMR; i++)
		REQUIRE(mrl_rmr_open(F.cpeer, F.mr[i], T_HANG_MS, &F.rmr[i]) == 0, "open MR %d", i);
	atomic_store(&stop, true);
	pthread_join(t, NULL);
}

static void map_id(unsigned char *buf, size_t len, size_t off)
{
	uint64_t id;
	if (off + 8 > len)
		return;
	memcpy(&id, buf + off, 8);
	if (id < NMR)
		memcpy(buf + off, &F.mr[id], 8);
}

static void map_ids(unsigned char *buf, size_t len)
{
	switch (((struct msg_hdr *)buf)->type) {
	case MSG_OPEN_REQ:
	case MSG_CLOSE: map_id(buf, len, offsetof(struct msg_id, id)); break;
	case MSG_OPEN_REP:
	case MSG_STATE: map_id(buf, len, offsetof(struct msg_state, id)); break;
	case MSG_PAUSE:
		for (size_t i = 0; i < MRL_PAUSE_RUNS; i++)
			map_id(buf, len, offsetof(struct msg_pause, runs) + i * sizeof(struct pause_run));
		break;
	case MSG_STATE_RUNS:
		for (size_t i = 0; i < MRL_STATE_RUNS_MAX; i++)
			map_id(buf, len, offsetof(struct msg_state_runs, r) + i * sizeof(struct state_run));
		break;
	case MSG_STATES:
		for (size_t i = 0; i < MRL_STATES_MAX; i++)
			map_id(buf, len, offsetof(struct msg_states, e) + i * sizeof(struct state_ent));
		break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	open_all();
	if (size < 1 || size - 1 > MRL_MSG_MAX)
		return 0;
	bool to_peer = data[0] & 1, seal = data[0] & 2;
	size_t len = size - 1;
	/* an aligned copy, as the receive buffers are */
	static unsigned char buf[MRL_MSG_MAX] __attribute__((aligned(8)));
	memcpy(buf, data + 1, len);
	mrl_ep *rx = to_peer ? F.cep : F.sep;
	mrl_peer *sender = to_peer ? F.speer : F.cpeer; /* the sending side's view */
	uint64_t bad0 = rx->bad_msgs;
	if (seal && len >= sizeof(struct msg_hdr)) {
		struct msg_hdr *h = (struct msg_hdr *)buf;
		h->magic = MRL_MAGIC;
		h->len = (uint16_t)len;
		h->peer = sender->remote_idx;
		if (data[0] & 4)
			map_ids(buf, len);
		mrl_lock(&sender->ep->lock);
		mrl_auth_seal(sender, buf, len);
		mrl_unlock(&sender->ep->lock);
	}
	mrl_lock(&rx->lock);
	mrl_ep_handle_msg(rx, buf, len);
	uint64_t bad1 = rx->bad_msgs;
	mrl_unlock(&rx->lock);
	/* a stranger's bytes (unsealed) never get past the tag */
	if (!seal && bad1 == bad0) {
		fprintf(stderr, "an unsealed message was accepted\n");
		abort();
	}
	settle();
	return 0;
}
