/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The state board shared by hooked processes on one host (board.c). */
#ifndef MRL_FI_BOARD_H
#define MRL_FI_BOARD_H

#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

enum board_state { BS_FREE = 0, BS_ACTIVE, BS_PAUSED, BS_FENCED };

struct board_ent {
	_Atomic uint64_t key;
	_Atomic uint32_t state;     /* enum board_state */
	_Atomic int32_t inflight;   /* operations of hooked initiators not yet completed */
	_Atomic uint64_t valid;     /* bytes from the start still served */
	uint64_t base;              /* the remote address of byte 0 (VA, or the MR's offset) */
	uint64_t len;               /* bytes registered */
};

#define BOARD_ENTS 4096
struct board {
	_Atomic uint64_t magic;
	pid_t pid;
	_Atomic unsigned used;      /* entries ever used: searches stop there */
	struct board_ent ent[BOARD_ENTS];
};

/* owner: an entry for a remotely accessible MR (NULL: no board) */
struct board_ent *board_publish(uint64_t key, uint64_t base, uint64_t len);
void board_retract(struct board_ent *e);
/* initiator: the one entry naming key on any board of the host, or NULL */
struct board_ent *board_find(uint64_t key);

#endif
