/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The data path's private structures (endpoint, peers, remote MRs, ops) and
 * the calls its files (ep.c, ep_boot.c, ep_rma.c, ep_owner.c, ep_peer.c) share. */
#ifndef MRL_EP_INT_H
#define MRL_EP_INT_H

#include <rdma/fabric.h>

#include "mrl_int.h"
#include "proto.h"

#define RMR_SLOW 1u
#define MRL_NONCE_LEN 32
#define MRL_HMAC_LEN 32
/* the shared secret, in bytes (MRL_SECRET_MIN: mrlease.h) */
#define MRL_SECRET_MAX 256

enum op_kind { OP_WRITE = 1, OP_READ, OP_RECV, OP_SEND };

struct op_head {
	struct fi_context2 fictx; /* must be first: the provider's context */
	uint8_t kind;
};

struct mrl_op {
	struct op_head h;
	struct mrl_op *next;
	struct mrl_op *iprev, *inext; /* ep->inflight list while the provider has it */
	bool orphan;                  /* reported already: the peer died under it */
	uint8_t retries;              /* posted again after the provider dropped it */
	struct mrl_rmr *rmr;
	uint64_t off;
	void *buf;
	size_t len;
	void *uctx;
	uint32_t gen;
};

struct mrl_rbuf {
	struct op_head h;
	unsigned char data[MRL_MSG_MAX];
};

/* a control message too big to inject lives until its send completes */
struct mrl_sbuf {
	struct op_head h;
	struct mrl_sbuf *prev, *next; /* ep->sbufs while the provider has it */
	unsigned char data[MRL_MSG_MAX];
};

struct pause_rec {
	struct pause_rec *next;
	uint32_t seq;
	uint32_t n;
	uint32_t drained; /* rmrs[0..drained) have nothing in flight (held: stays so) */
	struct mrl_rmr **rmrs;
};

struct mrl_rmr {
	_Atomic uint32_t ctl; /* 0: active and whole; anything else takes the slow path */
	uint8_t state, cause;
	uint8_t access;       /* MRL_ACCESS_REMOTE_* the owner granted (0: not said) */
	bool closed;
	struct mrl_peer *peer;
	uint64_t id, key, base, len, valid_len;
	uint32_t gen;
	uint64_t inflight, nheld;
	/* pauses naming it not acked yet (ep_peer.c): the owner keeps the
	 * device on its pages until they are, so what was in flight when one
	 * came lands there, fenced meanwhile or not (ep_rma.c: mrl_ep_op_done) */
	uint32_t draining;
	bool cut;             /* cut off by the owner (cause peer timeout): it did not wait */
	bool seen_after;      /* fenced for a change seen after it landed (MRL_SF_AFTER) */
	struct mrl_op *held, **held_tail;
	/* ops held after a connection drop wait for the owner's word on this
	 * MR (its answer to our probe, or any state for it): posted before,
	 * one that caused the drop would cause it again (ep_rma.c) */
	bool resync_due;
	uint64_t probe_ns;    /* when we last asked; 0: not yet */
	struct mrl_rmr *next, *hnext;
};

extern const struct mrl_transport_ops mrl_ep_transport;

struct mrl_peer {
	struct mrl_tpeer tp;      /* first: the core knows the peer by it */
	struct mrl_ep *ep;
	uint32_t idx, remote_idx;
	fi_addr_t addr;
	int sock;
	bool dead;
	bool heard;               /* a message came in since the last keep-alive check */
	uint64_t last_rx_ns;      /* keep-alive: when we last heard from it (check resolution) */
	uint64_t ping_ns;         /* when we last asked it for a sign of life */
	uint32_t nparked;         /* ops held after a connection drop (ep_rma.c) */
	bool probe_due;           /* ... to go again once it answers a ping */
	struct mrl_rmr *rmrs;
	struct mrl_rmr **hash;
	uint32_t hcap, hn;
	struct pause_rec *pauses;
	/* agreed at the handshake (src/auth.c): each direction's tag key (in
	 * a keyed libcrypto HMAC context), our count of messages sent, the
	 * window of numbers received */
	struct evp_mac_ctx_st *mac_tx, *mac_rx;
	uint64_t tx_seq, rx_top, rx_win;
};

/* The bootstrap handshake (ep_boot.c), over the TCP connection:
 *   connector -> owner  hello:     its fabric address, index, nonce
 *   owner -> connector  challenge: its fabric address, nonce, proof
 *   connector -> owner  proof
 *   owner -> connector  ready:     the owner's index (or a refusal)
 * A proof is HMAC(secret, role || transcript): each side shows it knows the
 * secret without sending it, bound to both nonces and both addresses. */
#define MRL_BOOT_MAGIC 0x4d524c42u /* "MRLB" */
#define MRL_BOOT_INSECURE 0x1u     /* flags: the sender has no secret */

struct boot_hello {
	uint32_t magic, flags;
	uint32_t idx;     /* the connector's index for the owner */
	uint32_t namelen;
	unsigned char name[64];
	unsigned char nonce[MRL_NONCE_LEN];
};

struct boot_challenge {
	uint32_t magic, flags, namelen, pad;
	unsigned char name[64];
	unsigned char nonce[MRL_NONCE_LEN];
	unsigned char proof[MRL_HMAC_LEN];
};

struct boot_proof {
	uint32_t magic, pad;
	unsigned char proof[MRL_HMAC_LEN];
};

struct boot_ready {
	uint32_t magic;
	int32_t status;   /* 0, or -EACCES: the proof was wrong */
	uint32_t idx;     /* the owner's index for the connector */
	uint32_t pad;
};

struct mrl_boot_transcript {
	unsigned char nonce_c[MRL_NONCE_LEN], nonce_o[MRL_NONCE_LEN];
	uint32_t namelen_c, namelen_o;
	unsigned char name_c[64], name_o[64];
};

/* A bootstrap connection accepted but not yet through its handshake: it
 * costs the owner nothing until its hello is in (or its deadline passes),
 * then a challenge, and a peer entry only once its proof is right. */
struct boot_conn {
	struct boot_conn *next;
	int fd;
	bool challenged;  /* hello in, challenge sent: waiting for the proof */
	uint64_t deadline_ns;
	size_t got;
	union {
		struct boot_hello hello;
		struct boot_proof proof;
	} in;
	uint32_t their_idx;
	struct mrl_boot_transcript t;
};

struct mrl_iov {
	const void *p;
	size_t len;
};

/* auth.c */
int mrl_auth_random(void *buf, size_t len);
int mrl_auth_hmac(const void *key, size_t keylen, const struct mrl_iov *iov, int n,
		  unsigned char out[MRL_HMAC_LEN]);
bool mrl_auth_eq(const void *a, const void *b, size_t len);
/* the endpoint's secret: given, else $MRLEASE_SECRET_FILE, else
 * $MRLEASE_SECRET; none: 0 with *len 0 if insecure_ok, else -EACCES */
int mrl_auth_secret(const void *secret, size_t secret_len, bool insecure_ok, unsigned char *out,
		    size_t *len);
int mrl_auth_proof(const unsigned char *secret, size_t slen, bool owner,
		   const struct mrl_boot_transcript *t, unsigned char out[MRL_HMAC_LEN]);
/* the peer's keys for both directions; owner: we are the accepting side */
int mrl_auth_keys(const unsigned char *secret, size_t slen, bool owner,
		  const struct mrl_boot_transcript *t, struct mrl_peer *p);
/* number and tag a message to p; check one from p (0, -EBADMSG: not from
 * p or altered, -EALREADY: a replay) */
int mrl_auth_seal(struct mrl_peer *p, void *msg, size_t len);
/* a peer entry's HMAC contexts, when it is freed */
void mrl_auth_peer_free(struct mrl_peer *p);
int mrl_auth_open(struct mrl_peer *p, const void *msg, size_t len);

struct waiter {
	struct waiter *next;
	struct mrl_peer *peer;        /* only its answer fills it */
	uint32_t req;
	bool done;
	unsigned char msg[MRL_MSG_MAX];
};

struct mrl_ep {
	struct mrl_ctx *ctx;
	struct mrl_ep *next;
	pthread_mutex_t lock;
	struct fid_ep *ep;
	struct fid_av *av;
	struct fid_cq *cq;
	int cq_fd;
	struct mrl_sbuf *sbufs;   /* sends posted and not completed: freed at destroy if never */
	size_t inject_size;
	unsigned char name[64];
	size_t namelen;
	struct mrl_peer **peers;
	uint32_t npeers, cap;
	int lsock;
	char *unix_path;              /* a unix: bootstrap's socket, removed at destroy */
	bool peercred;                /* MRL_EP_PEERCRED: peers proven by their uid (SO_PEERCRED) */
	unsigned char secret[MRL_SECRET_MAX];
	size_t secret_len;            /* 0: insecure (MRL_EP_INSECURE), keys from the nonces alone */
	uint64_t auth_failed;         /* handshakes refused for a wrong or missing secret */
	pthread_mutex_t boot_lock;    /* the handshakes in progress; never held with lock */
	struct boot_conn *boots;
	uint32_t nboots;
	struct mrl_rbuf *rbufs;
	struct mrl_op *free_ops;
	struct mrl_op *backlog, **backlog_tail;
	struct mrl_op inflight;       /* list head of ops the provider holds */
	struct mrl_completion *lcq;
	size_t lcq_head, lcq_n, lcq_cap;
	struct waiter *waiters;
	uint32_t next_req;
	uint64_t polls, bad_msgs;
	uint64_t op_retries;          /* ops posted again after a connection drop (ep_rma.c) */
	uint32_t probes_due;          /* peers with probe_due set */
	bool resync_any;              /* some MR may wait for the owner's word (ep_rma.c) */
	uint64_t resync_next_ns;      /* when to ask again those whose answer never came */
	uint64_t ka_ns, ka_timeout_ns; /* keep-alive: 0 = off */
	uint64_t ka_next_ns;           /* the next keep-alive check */
	uint64_t peers_lost;           /* declared lost by the keep-alive */
	/* pause protocol, for tests: pauses received and acks sent (peer
	 * side), acks received (owner side); one ack per pause, never two */
	_Atomic uint64_t pauses_in, pause_acks_out, pause_acks_in;
	bool acks_owed;                /* a pause ack found the queue full: progress retries it */
	pthread_t prog;
	bool prog_running;
	atomic_bool stop;
};

/* ep_boot.c: a handshake's budget from accept (tests shorten it); the
 * handshakes still in progress; free them (mrl_ep_destroy) */
extern int mrl_ep_boot_deadline_ms;
uint32_t mrl_ep_boot_pending(struct mrl_ep *ep);
/* handshakes the owner refused: wrong, missing or malformed proof */
uint64_t mrl_ep_auth_failed(struct mrl_ep *ep);
void mrl_ep_boot_free(struct mrl_ep *ep);
/* ep.c: a peer entry that never became usable, ep->lock held */
void mrl_ep_peer_free_locked(struct mrl_ep *ep, struct mrl_peer *p);

/* ep.c, ep->lock held: a control message received (checked: its tag, then
 * its fields); one from an authenticated peer (exposed for the fuzzer) */
void mrl_ep_handle_msg(struct mrl_ep *ep, const unsigned char *buf, size_t len);
void mrl_ep_dispatch(struct mrl_ep *ep, struct mrl_peer *p, const unsigned char *buf, size_t len);
/* ep.c, ep->lock held: drive progress; send a control message */
int mrl_ep_progress_locked(struct mrl_ep *ep);
int mrl_ep_send_locked(struct mrl_ep *ep, struct mrl_peer *p, void *msg, size_t len);
/* one try, never driving progress: -EAGAIN when the queue is full */
int mrl_ep_send_nowait_locked(struct mrl_ep *ep, struct mrl_peer *p, void *msg, size_t len);
/* a control message's header (mrl_ep_send_locked fills in the rest) */
void mrl_ep_init_hdr(struct msg_hdr *h, int type, size_t len, uint32_t req);

/* ep_rma.c, ep->lock held: ops and the caller's completions */
void mrl_ep_op_put(struct mrl_ep *ep, struct mrl_op *op);
void mrl_ep_inflight_del(struct mrl_op *op);
void mrl_ep_lcq_push(struct mrl_ep *ep, void *uctx, int status, uint32_t cause, uint32_t gen);
void mrl_ep_fail_op(struct mrl_ep *ep, struct mrl_op *op, int status, uint32_t cause);
int mrl_ep_post_op(struct mrl_ep *ep, struct mrl_op *op);
int mrl_ep_post_op_now(struct mrl_ep *ep, struct mrl_op *op);
/* an op the provider completed (err: its error, 0 if none) */
void mrl_ep_op_done(struct mrl_ep *ep, struct mrl_op *op, int err);
/* ops held after a connection drop: ask the peer for a sign of life (end of
 * progress), post them again when a message from it is in (end of handle_msg) */
void mrl_ep_retry_probe(struct mrl_ep *ep);
/* progress, while some wait: ask again for the MRs whose answer was lost */
void mrl_ep_resync_tick(struct mrl_ep *ep);
void mrl_ep_retry_flush(struct mrl_ep *ep, struct mrl_peer *p);
/* the owner's answer (MSG_OPEN_REP, req 0) to the probe of an MR held already */
void mrl_ep_resync_reply(struct mrl_ep *ep, struct mrl_peer *p, const struct msg_state *m);

/* ep_owner.c, ep->lock held: requests from peers to the MRs' owner */
void mrl_ep_owner_open(struct mrl_ep *ep, struct mrl_peer *p, const struct msg_id *m);
void mrl_ep_owner_close(struct mrl_ep *ep, struct mrl_peer *p, const struct msg_id *m);
void mrl_ep_owner_list(struct mrl_ep *ep, struct mrl_peer *p, const struct msg_list_req *m);
/* forget a peer's holds on every MR, ctx->lock held */
void mrl_peer_release_holders(struct mrl_ctx *ctx, struct mrl_peer *peer);

/* ep_peer.c, ep->lock held: remote MRs, as the owner's messages change them */
struct mrl_rmr *mrl_ep_rmr_find(struct mrl_peer *p, uint64_t id);
void mrl_ep_pause_check(struct mrl_ep *ep, struct mrl_peer *p);
void mrl_ep_peer_pause(struct mrl_ep *ep, struct mrl_peer *p, const struct msg_pause *m);
bool mrl_pause_valid(const struct msg_pause *m, size_t len);
bool mrl_state_runs_valid(const struct msg_state_runs *m, size_t len);
void mrl_ep_peer_state_runs(struct mrl_ep *ep, struct mrl_peer *p, const struct msg_state_runs *m);
void mrl_ep_rmr_fail_held(struct mrl_ep *ep, struct mrl_rmr *r, int status);
void mrl_ep_rmr_post_held(struct mrl_ep *ep, struct mrl_rmr *r);
void mrl_ep_rmr_apply_state(struct mrl_ep *ep, struct mrl_rmr *r, const struct msg_state *m);

#endif
