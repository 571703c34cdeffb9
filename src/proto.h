/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Wire format of the control messages between an MR's owner and its peers.
 * Fixed-size little structs; every field is checked on receipt. Every
 * message carries its sender's sequence number and a tag (HMAC-SHA256
 * under the connection's key for that direction, agreed at the bootstrap
 * handshake: src/auth.c): the receiver knows the sender by the tag, never
 * by a field the sender fills in. */
#ifndef MRL_PROTO_H
#define MRL_PROTO_H
#include <stddef.h>
#include <stdint.h>

#define MRL_MAGIC 0x4d524c33u /* "MRL3": tagged messages, PAUSE by runs of ids */
#define MRL_TAG_LEN 16
#define MRL_MSG_MAX 1024
#define MRL_LIST_IDS 28

enum mrl_msg_type {
	MSG_OPEN_REQ = 1, /* peer -> owner: I want to use MR id */
	MSG_OPEN_REP,     /* owner -> peer: struct msg_state */
	MSG_LIST_REQ,
	MSG_LIST_REP,
	MSG_PAUSE,        /* owner -> peer: hold operations to these MRs, drain, ack */
	MSG_PAUSE_ACK,
	MSG_STATE,        /* owner -> peer: resume / fence / update of one MR */
	MSG_CLOSE,        /* peer -> owner: no longer using MR id */
	MSG_STATES,       /* owner -> peer: resume / fence / update of many MRs */
	MSG_PING,         /* either way: nothing heard from you for a while; answer */
	MSG_PONG,         /* the answer: I am alive */
	MSG_STATE_RUNS,   /* owner -> peer: runs of MRs to a new state, key and length kept */
	MSG_TYPE_MAX
};

struct msg_hdr {
	uint32_t magic;
	uint8_t type;
	uint8_t pad;
	uint16_t len;   /* whole message */
	uint32_t peer;  /* the receiver's index for the sender: a hint, the tag decides */
	uint32_t req;   /* request id, or pause sequence */
	uint64_t seq;   /* the sender's count on this connection, from 1: no replays */
	uint8_t tag[MRL_TAG_LEN]; /* HMAC-SHA256(direction key, message with tag zeroed), truncated */
};

struct msg_id {
	struct msg_hdr h;
	uint64_t id;
};

struct msg_state {
	struct msg_hdr h;
	int32_t status;
	uint8_t state, cause;
	uint8_t access; /* MRL_ACCESS_REMOTE_*: what the MR may be used for (0: not said) */
	uint8_t flags;  /* MRL_SF_* (was padding: a peer that ignores it loses only the hint) */
	uint64_t id, key, base, len, valid_len;
	uint32_t gen, pad2;
};

struct msg_list_req {
	struct msg_hdr h;
	uint32_t start; /* table index to continue from */
	uint32_t pad;
};

struct msg_list_rep {
	struct msg_hdr h;
	uint32_t next;  /* 0 = done */
	uint32_t n;
	uint64_t ids[MRL_LIST_IDS];
};

/* PAUSE names its MRs as runs of consecutive ids: a file's MRs registered
 * in order have consecutive handles, so one message pauses thousands of
 * them (one ack each way per peer per break, not one per 28 MRs). */
struct pause_run {
	uint64_t first; /* the run's first MR id */
	uint32_t n;     /* ids first, first+1, ..., first+n-1; n >= 1 */
	uint32_t pad;
};
#define MRL_PAUSE_RUNS ((MRL_MSG_MAX - sizeof(struct msg_hdr) - 8) / sizeof(struct pause_run))
#define MRL_PAUSE_MAX_IDS (1u << 22) /* ids in one PAUSE, all runs together */
struct msg_pause {
	struct msg_hdr h;
	uint32_t n;     /* runs */
	uint32_t total; /* ids in all runs: the sum of their n */
	struct pause_run runs[MRL_PAUSE_RUNS];
};

/* A state's flags: MRL_SF_AFTER, a fence decided for a change seen only
 * after it landed (mrl_mr_changed_after): completions before this notice
 * may not have reached the memory (mrl_rmr_info.flags, MRL_RMR_SEEN_AFTER). */
#define MRL_SF_AFTER 0x01u

/* One MR's new state inside MSG_STATES (its base and length never change). */
struct state_ent {
	uint64_t id, key, valid_len;
	uint32_t gen;
	uint8_t state, cause, flags, pad;
};
#define MRL_STATES_MAX ((MRL_MSG_MAX - sizeof(struct msg_hdr) - 8) / sizeof(struct state_ent))
struct msg_states {
	struct msg_hdr h;
	uint32_t n, pad;
	struct state_ent e[MRL_STATES_MAX];
};

/* MSG_STATE_RUNS: every MR of a run (consecutive ids) takes the run's
 * state, cause and generation, keeps the remote key the peer was last
 * told, and serves its whole length (ACTIVE, PAUSED) or nothing (FENCED,
 * DEREGISTERED): a hitless restore of a file's 10,000 MRs is one message. */
struct state_run {
	uint64_t first;
	uint32_t n, gen;
	uint8_t state, cause, flags, pad[5];
};
#define MRL_STATE_RUNS_MAX ((MRL_MSG_MAX - sizeof(struct msg_hdr) - 8) / sizeof(struct state_run))
struct msg_state_runs {
	struct msg_hdr h;
	uint32_t n, pad;
	struct state_run r[MRL_STATE_RUNS_MAX];
};

_Static_assert(sizeof(struct msg_state_runs) <= MRL_MSG_MAX, "state runs fit");
_Static_assert(offsetof(struct msg_state_runs, r) == offsetof(struct msg_states, e), "batch heads alike");
_Static_assert(sizeof(struct msg_hdr) == 40, "header layout");
_Static_assert(sizeof(struct msg_pause) <= MRL_MSG_MAX, "pause fits");
_Static_assert(sizeof(struct msg_states) <= MRL_MSG_MAX, "states fit");
_Static_assert(sizeof(struct msg_list_rep) <= MRL_MSG_MAX, "list fits");
#endif
