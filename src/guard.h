/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The table the owner shares with its guardian process (guardian.c, the
 * owner's side; guard_loop.c, the guardian's): one MAP_SHARED page set made
 * before the guardian is forked. Only these two files include it. */
#ifndef MRL_GUARD_H
#define MRL_GUARD_H

#include <stdint.h>
#include <sys/types.h>

/* How long past a break's deadline the guardian waits before it lets the
 * actor go itself: the owner, when it runs, always answers first. */
#define GUARD_MARGIN_NS 100000000ull
/* How often the guardian looks at held leases (F_GETLEASE) for a break the
 * owner has not read: half the margin, so a break it finds late still ends
 * by deadline + margin. */
#define GUARD_LEASE_POLL_NS (GUARD_MARGIN_NS / 2)

#define GUARD_FAN_SLOTS 1024
#define GUARD_LEASE_SLOTS 256
#define GUARD_RECS 256
#define GUARD_LINE 112
/* What the guardian answers a call that would shrink the file under the
 * owner's MRs (a truncate below its size, a collapse, an O_TRUNC open): let
 * through, the owner's own mapping past the new end would take SIGBUS the
 * moment its transport wrote there, before it could fence. */
#define GUARD_DENY_ERRNO EBUSY

/* A slot's state. Who may move it: O = the owner, G = the guardian; every
 * move is a compare-and-swap, so exactly one side answers each actor. */
enum guard_state {
	GS_FREE = 0,  /* O: unused (fan) */
	GS_IDLE,      /* lease: the guardian has the fd, no lease held on it */
	GS_ARMED,     /* O: lease held; G watches it for a break the owner has not read */
	GS_PENDING,   /* O: held event / lease break with a deadline the owner keeps */
	GS_OWNED,     /* O: the owner is answering it (G keeps off) */
	GS_CLAIMED,   /* G: the guardian is answering it */
	GS_DONE,      /* G: the guardian let the actor go (at acted_ns); O reaps it */
	GS_CLOSE,     /* O: lease: the guardian closes its fd, then GS_FREE */
};

struct guard_slot {
	uint32_t state;        /* enum guard_state, atomic */
	int32_t fd;            /* fan: the owner's event fd (the answer's key) */
	uint32_t lease_type;   /* lease: the type held (F_WRLCK/F_RDLCK); after G: the target seen.
			        * fan, after G: 1 = refused (a shrink), 0 = let go */
	uint32_t pad;          /* lease: bumped by O at every arm */
	uint64_t deadline_ns;  /* GS_PENDING: CLOCK_MONOTONIC */
	uint64_t acted_ns;
	uint64_t size;         /* fan: the file's size when read (a truncate below it shrinks) */
	int32_t tid;           /* fan: the actor */
	int32_t pad2;
};

/* An event the guardian read and let go itself (the owner was not reading). */
struct guard_rec {
	uint32_t full;         /* atomic: 1 = written by G, 0 = reaped by O */
	uint32_t mask;
	int32_t tid;
	int32_t denied;        /* 1: refused (a shrink), not let go */
	uint64_t dev, ino, lo, hi, at;
	char line[GUARD_LINE]; /* the actor's /proc/TID/syscall when let go */
};

struct guard_shm {
	/* set before the fork, read-only after */
	uint64_t deadline_ns;      /* the context's deadline: for breaks the owner never saw */
	int owner_nofile;          /* the owner's fds are below this */
	/* fanotify reading: an owner in read(2)..publish, and the guardian
	 * reading, keep out of each other (event fd numbers are per process but
	 * the kernel matches answers by number alone) */
	uint64_t owner_reading;    /* atomic: CLOCK_MONOTONIC when it began, 0 none */
	uint64_t owner_reads;      /* atomic: bumped per read by the owner */
	uint32_t guard_reading;    /* atomic: 1 while the guardian reads and answers */
	/* atomic: 1 while the guardian sleeps with no timeout. The owner
	 * publishes held events without waking it (a few stores); an owner
	 * that begins a read and finds this set wakes it (the socket), so an
	 * event it read and published is never left to an idle guardian. */
	uint32_t guard_idle;
	uint64_t alive;            /* atomic: bumped by every turn of the owner's monitor loop */
	uint64_t sweeps;           /* atomic: times G answered every number of an owner stuck in a read */
	uint64_t acts;             /* atomic: actors the guardian let go */
	uint64_t rec_head;         /* atomic: G's next record (index % GUARD_RECS) */
	uint64_t rec_lost;         /* atomic: records that found the ring full */
	struct guard_slot fan[GUARD_FAN_SLOTS];
	struct guard_slot lease[GUARD_LEASE_SLOTS];
	struct guard_rec rec[GUARD_RECS];
};

/* guard_loop.c: the guardian's whole life; never returns. Raw system calls
 * only: it runs in a forked copy of a multithreaded process. */
void mrl_guard_loop(struct guard_shm *g, int sock, int fan_fd, int wake_fd, int owner_pidfd,
		    pid_t owner) __attribute__((noreturn));

#endif
