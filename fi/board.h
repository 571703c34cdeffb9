/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The state board shared by hooked processes on one host (board.c). */
#ifndef MRL_FI_BOARD_H
#define MRL_FI_BOARD_H

#include <stdatomic.h>
#include <stdbool.h>
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
	uint32_t tail;              /* enum board_tail: past `valid`, what initiators do */
	uint32_t pad;
	_Atomic uint64_t pkey;      /* the provider's key under `key` (strict keys: each
				     * registration's own), written before the state turns active */
};
/* An operation wholly past what the owner still serves (a truncated tail):
 * refused (-FI_EKEYREJECTED), or discarded: a write dropped, a read given
 * zeroes, both completed successfully (for programs that end on any error:
 * Open MPI's btl/ofi). */
enum board_tail { BT_REFUSE = 0, BT_DISCARD };

#define BOARD_MAGIC 0x6d726c6662643033ull /* "mrlfbd03" */
#define BOARD_SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)
#define BOARD_ENTS 4096
/* The owner's endpoint addresses as fi_getname gives them (what its peers
 * insert in their address vectors): an initiator finds the board of the
 * process its operation goes to by the destination's address, since keys
 * alone repeat across owners (a provider's keys are small integers). */
#define BOARD_NAMES 16
#define BOARD_NAME_MAX 56
struct board_name {
	_Atomic uint32_t len;       /* 0: unused; written last */
	uint8_t a[BOARD_NAME_MAX];
};
struct board {
	_Atomic uint64_t magic;
	pid_t pid;
	_Atomic unsigned used;      /* entries ever used: searches stop there */
	_Atomic unsigned nnames;
	struct board_name names[BOARD_NAMES];
	struct board_ent ent[BOARD_ENTS];
};

/* owner: an entry for a remotely accessible MR (NULL: no board) */
struct board_ent *board_publish(uint64_t key, uint64_t base, uint64_t len, uint32_t tail);
void board_retract(struct board_ent *e);
/* owner: an endpoint of this process, by its address (fi_getname) */
void board_add_name(const void *name, size_t len);
/* initiator: the entry for key on the board of the process at dest (its
 * address looked up in av; dest without receive-context bits), or NULL:
 * no hooked owner on this host there, or the key twice on its board. A
 * small cache of what was found ((av, dest, key) -> entry, checked again at
 * each use) answers inline; a miss looks on the boards. */
#define BOARD_CACHE 256
struct fid_av;
struct board_cache {
	struct board_ent *_Atomic e;
	_Atomic uint64_t key, dest;
	struct fid_av *_Atomic av;
};
extern struct board_cache board_cache[BOARD_CACHE];
static inline unsigned board_slot(struct fid_av *av, uint64_t dest, uint64_t key)
{
	uint64_t h = (key ^ (dest * 0xff51afd7ed558ccdull) ^ (uint64_t)(uintptr_t)av) * 0x9e3779b97f4a7c15ull;
	return (unsigned)(h >> 56) % BOARD_CACHE;
}
struct board_ent *board_find_slow(struct fid_av *av, uint64_t dest, uint64_t key);
static inline struct board_ent *board_find(struct fid_av *av, uint64_t dest, uint64_t key)
{
	struct board_cache *c = &board_cache[board_slot(av, dest, key)];
	struct board_ent *e = atomic_load_explicit(&c->e, memory_order_acquire);
	/* each field after the entry, and the entry again after them: a
	 * slot rewritten meanwhile is not taken for the new one's */
	if (e && atomic_load_explicit(&c->key, memory_order_acquire) == key &&
	    atomic_load_explicit(&c->dest, memory_order_acquire) == dest &&
	    atomic_load_explicit(&c->av, memory_order_acquire) == av &&
	    atomic_load_explicit(&c->e, memory_order_relaxed) == e &&
	    atomic_load_explicit(&e->key, memory_order_relaxed) == key)
		return e;
	return board_find_slow(av, dest, key);
}
/* the relay (serving another host's initiators, which name the host, not
 * the process): the one entry naming key on any board here, or NULL */
struct board_ent *board_find_key(uint64_t key);

/* relay.c (MRLEASE_FI_RELAY=PORT): the board carried between hosts.
 * relay_find: a private mirror of the entry for key at the host dest
 * resolves to through av (rx_bits: the av's receive context bits), held
 * until its relay answers; NULL when the relay is off, the address is not
 * IP, or that host has no relay (post as it is). relay_start: serve this
 * host's boards (an owner that publishes). */
struct fid_av;
bool relay_on(void);
struct board_ent *relay_find(struct fid_av *av, unsigned rx_bits, uint64_t dest, uint64_t key);
void relay_start(void);

/* the directory of markers (MRLEASE_FI_BOARD_DIR or /dev/shm/mrlease-fi) */
const char *board_dir(void);
/* it opened and checked (ours or root's; sticky if others may write): fd or -1 */
int board_dir_open(bool create);
/* PID's board at its descriptor FD, mapped if this process may believe it */
struct board *board_open(int pid, int fd);
/* boards found in the directory and refused (not ours, not sealed, forged) */
unsigned long long board_refused(void);

#endif
