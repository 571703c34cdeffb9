/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Private structures shared by the library's sources. The locks and their
 * order are written down beside struct mrl_ctx. */
#ifndef MRL_INT_H
#define MRL_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "mrlease.h"
#include "itree.h"

#define MRL_EXPORT __attribute__((visibility("default")))
#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* ---- locks: a failure is a bug in the library (a thread locking what it
 * holds, a lock destroyed under a user): say which and stop, never go on
 * unprotected ---- */
void mrl_lock_failed(const char *what, int err) __attribute__((noreturn, cold));
static inline void mrl_lock(pthread_mutex_t *m)
{
	int err = pthread_mutex_lock(m);
	if (__builtin_expect(err != 0, 0))
		mrl_lock_failed("lock", err);
}
static inline void mrl_unlock(pthread_mutex_t *m)
{
	int err = pthread_mutex_unlock(m);
	if (__builtin_expect(err != 0, 0))
		mrl_lock_failed("unlock", err);
}

/* ---- errors and time ---- */
int mrl_err(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void mrl_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline uint64_t mrl_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- registrar: the device behind an MR ----
 * One ops table per device (reg_fabric.c, reg_uring.c, reg_mock.c), found by
 * name in registrar.c. Every entry but open/close/reg/dereg is optional:
 * mrl_registrar_find fills the missing ones with stubs that answer
 * -EOPNOTSUPP (or "no", "nothing"), so callers never test for NULL. */
struct mrl_registrar_ops {
	size_t size;
	const char *name;
	/* open the device for ctx (ctx->opts.provider, ctx->opts.addr) */
	int (*open)(struct mrl_ctx *ctx, void **dev);
	void (*close)(void *dev);
	/* Register [addr, addr+len) asking for key *key; a provider that picks
	 * its own keys overwrites *key. */
	int (*reg)(void *dev, void *addr, size_t len, unsigned access, uint64_t *key, void **handle);
	int (*dereg)(void *dev, void *handle);
	/* Local descriptor for the data path (stub: NULL, the device needs none). */
	void *(*desc)(void *handle);
	/* Does a registration pin the pages (the device keeps their physical
	 * addresses: io_uring fixed buffers, RDMA NICs)? Stub: no. Pinned pages
	 * must be re-pinned when the memory under them changes, and protected
	 * from copy-on-write after fork. */
	bool (*pins)(void *dev);
	/* For devices the library quiesces itself (io_uring fixed buffers):
	 * quiesce: hold new device operations on handle; 0 when none is in
	 *   flight, 1 when some are: the registrar calls
	 *   mrl_brk_device_idle(ctx, seq) once the last one ends. restore or
	 *   dereg ends the hold. Stub: -EOPNOTSUPP (nothing to wait for).
	 * revoke: cut the device off the pages but keep handle and key, so a
	 *   restore can refill it; -EBUSY if operations are still in flight.
	 *   Stub: -EOPNOTSUPP (the caller deregisters).
	 * restore: point handle (same key) at the pages [addr, addr+len) has
	 *   now. Stub: -EOPNOTSUPP (the caller registers anew). */
	int (*quiesce)(void *dev, void *handle, uint32_t seq);
	int (*revoke)(void *dev, void *handle);
	int (*restore)(void *dev, void *handle, void *addr, size_t len);
	/* redirect (MRL_POLICY_REDIRECT): point handle, same key, at zeroed
	 *   scratch memory of its length that belongs to this registration
	 *   alone, so the device's writes are discarded and its reads see
	 *   zeros while the change lands and after; restore moves it back.
	 *   -EBUSY if operations are still in flight. handle NULL: 0 when the
	 *   device can redirect at all. Stub: -EOPNOTSUPP. */
	int (*redirect)(void *dev, void *handle);
};
extern const struct mrl_registrar_ops mrl_reg_fabric_ops, mrl_reg_uring_ops, mrl_reg_mock_ops;
/* registrar.c: the registrar for a provider name ("mock", "uring", else a
 * libfabric provider), every entry filled */
const struct mrl_registrar_ops *mrl_registrar_find(const char *provider);
/* ctx.c: a context over a device its caller opened (the libfabric hook) */
int mrl_ctx_create_dev(const struct mrl_ctx_opts *opts, const struct mrl_registrar_ops *rops,
		       void *dev, struct mrl_ctx **out);
/* reg_fabric.c: does a provider stack ("verbs;ofi_rxm") pin what it registers? */
bool mrl_prov_pins(const char *stack);
/* Used by tests through the mock: is a key registered now, and where. */
int mrl_mock_lookup(void *dev, uint64_t key, void **addr, size_t *len);
/* and: registrations of addr block until mrl_mock_block(dev, NULL) */
void mrl_mock_block(void *dev, void *addr);
void mrl_mock_wait_blocked(void *dev);
/* The libfabric objects the data path (ep.c) shares with its registrar:
 * src/fabric.h. NULL for other registrars. */
struct mrl_fabric;

/* ---- transports: how the core reaches a peer ----
 * The break engine and the outbox know a peer only by this header, the first
 * member of every transport's own peer: the native data path's struct
 * mrl_peer (ep_int.h), and so any other carrier of the same control
 * protocol (the libfabric hook). */
struct mrl_tpeer;
struct mrl_transport_ops {
	const char *name;
	/* Send one control message (src/proto.h) to peer: waiting (bounded by
	 * the transport) for room when wait, else -EAGAIN at once when another
	 * thread has the channel or its queue is full (the monitor's case). */
	int (*send)(struct mrl_tpeer *peer, const void *msg, size_t len, bool wait);
};
struct mrl_tpeer {
	const struct mrl_transport_ops *t;
};

/* ---- files backing MRs ---- */
enum lease_state {
	LEASE_OFF = 0,      /* never possible (no fd of ours, or watcher off) */
	LEASE_HELD,
	LEASE_BREAKING,     /* break signalled, not yet released */
	LEASE_RELEASED,     /* released for a breaker; retake on close / timer */
	LEASE_BLOCKED,      /* could not take it: someone else has the file open */
};

struct mrl_brk;
struct lease_layout;

/* A change announced by fanotify, waiting for its answer or its landing. */
enum fan_op { FOP_DATA = 0, FOP_TRUNCATE, FOP_PUNCH, FOP_ZERO, FOP_COLLAPSE, FOP_INSERT,
	      FOP_ALLOC, FOP_LAYOUT };
struct mrl_fan_ev {
	struct mrl_fan_ev *next;
	int fd;                /* the event's fd: the answer names it */
	pid_t tid, pid;        /* the actor's thread and process */
	int op, cause;         /* enum fan_op, enum mrl_cause */
	uint64_t lo, hi;       /* file bytes the change touches, hi exclusive */
	uint64_t target;       /* truncate: the new size */
	uint64_t seen;
	bool answered, modified;
	char line[160];        /* the actor's /proc/TID/syscall when seen */
	/* fan.c: landing. id names it to the monitor's unlocked look (never
	 * its pointer, which a deregistration may free meanwhile); line_gen
	 * moves with line, and a look read against an older one is dropped */
	uint64_t id;
	uint32_t line_gen, look_gen;
	uint8_t look;          /* a line read since the last check: 1 = look_line, 2 = gone */
	char look_line[160];
	/* read by the monitor before it locks (fan.c: fan_read), handled after */
	uint32_t mask;         /* FAN_PRE_ACCESS, FAN_MODIFY, FAN_OPEN_PERM */
	dev_t dev;
	ino_t ino;
	bool on_mr;            /* fell on an MR when read: classify before locking */
	bool classified;       /* op and args[] are the actor's call */
	uint64_t args[3];
	uint64_t classify_ns;
	/* the guardian (guardian.c): its slot + 1 while published, 0 if none */
	unsigned gslot;
	struct mrl_guard *guard;
	bool gdone;            /* the guardian let it go: a change seen after */
	bool gzombie;          /* freed by the owner, kept until the guardian's act is reaped */
	bool gapplied;         /* that change was announced (mrl_fan_guard_let) */
	bool gdenied;          /* the guardian refused it (a shrink), not let go */
	uint64_t size;         /* the file's size when read */
};

struct mrl_file {
	struct mrl_file *next;
	dev_t dev;            /* the superblock's, as /proc/self/maps and /proc/locks say */
	dev_t st_dev;         /* what stat says: differs on btrfs (a subvolume's anonymous dev) */
	ino_t ino;
	int fd;               /* the library's own fd, -1 if none */
	int path_fd;          /* O_PATH fd on the inode, to fstat it when fd is -1; -1 if none */
	int name_cause;       /* the path no longer names it: MRL_CAUSE_REPLACED_FILE/UNLINKED, 0 */
	int kind;             /* enum mrl_kind */
	char *path;
	int wd;               /* inotify watch, -1 if none */
	int lease;            /* enum lease_state */
	int lease_errno;      /* why the lease could not be taken */
	int refs;             /* MRs + mappings made through mrl_file_map */
	int maps;             /* live mrl_file_map mappings */
	struct mrl_fmap *fmaps; /* the mrl_file_map mappings made through the library's fd (file.c) */
	struct mrl_itree mrs; /* MRs by file offset */
	struct mrl_brk *brk;  /* break being resolved, or NULL */
	uint64_t relock_at;   /* when to retry the lease without a close event */
	bool brk_unmet;       /* the last breaker missed its window: wait for the next one */
	uint64_t last_change_ev;
	/* the file as the last restore of one of its MRs found it, and a
	 * number for that state: an inotify event that finds the file so is
	 * the echo of the change those MRs were restored over (inotify.c) */
	struct {
		uint64_t size, blocks;
		struct timespec ctime;
		uint32_t seq;
	} settled;
	struct lease_layout *layout; /* lease.c: its layout when a write break began, or NULL */
	/* fanotify */
	bool fan;             /* marked: pre-content events replace the lease */
	bool fan_fd_young;    /* the library's fd was opened after the mark */
	bool fan_complete;    /* every open file description is younger than the mark */
	int fan_errno;        /* why the file could not be marked */
	struct mrl_fan_ev *fan_q; /* layout changes waiting for the current break */
	unsigned gslot;       /* the guardian's lease slot + 1, 0 if none */
};

/* ---- MRs ---- */
struct mrl_holder {
	struct mrl_holder *next;
	struct mrl_tpeer *peer;
	uint64_t told_key; /* the remote key this peer was last told (outbox.c: runs keep it) */
};

struct mrl_mr {
	struct mrl_itree_node va;    /* [addr, addr+len) */
	struct mrl_itree_node fnode; /* [file_off, file_off+len) within file */
	mrl_mr_t handle;
	uint8_t *addr;
	uint64_t len, valid_len;
	/* the file offset is fnode.start (0 for anonymous memory) */
	struct mrl_file *file;       /* NULL for anonymous memory */
	void *dev_mr;                /* registrar handle, NULL when deregistered */
	uint64_t dev_len;            /* bytes dev_mr gives the device (0: cut off) */
	uint64_t key;
	void *context;
	struct mrl_holder *holders;
	uint64_t cause_off, cause_len;
	pid_t cause_pid;
	uint32_t gen;
	uint32_t refs;               /* table + unacked events */
	uint32_t breaks, restores, fences, denials;
	unsigned deadline_ms;
	uint8_t deny_errno;
	uint8_t access, policy, state, kind, cause;
	uint8_t owner_answer;        /* enum owner_answer */
	uint8_t rekey;               /* a peer was cut off: restore with a new key */
	uint8_t in_brk;
	uint8_t redirected;          /* MRL_POLICY_REDIRECT: the device points at scratch (brk.c);
				      * cleared when fenced or deregistered */
	uint8_t counted;             /* in mrl_intp_count */
	uint8_t dontfork;            /* its pages were marked MADV_DONTFORK (see mr.c) */
	uint8_t uffd;                /* its pages are registered with ctx->uffd */
	uint64_t uffd_seq;           /* uffd.c: its place in the order of registrations there */
	uint64_t uffd_since;         /* uffd.c: that order when its range became registered
				      * (earlier than uffd_seq when it was kept registered) */
	uint64_t uffd_unmaps;        /* uffd.c: the watcher's unmap events read by then */
	uint64_t reg_ns;             /* when it joined its file (a break seen before it is not its) */
	uint32_t settled_seq;        /* the file's settled state it was last restored on, 0 none */
	uint8_t changed;             /* paused: a change was seen after it landed meanwhile */
	uint8_t data_only;           /* paused: its break was a plain data write (lease.c) */
	uint8_t registering;         /* mrl_mr_reg's device call runs (unlocked): not in the handle
				      * table's answers yet, and no device op is queued for it */
	uint8_t dev_busy;            /* the device worker calls the device on it now (devq.c):
				      * dev_mr is the worker's until it ends */
	/* fences decided whose device change (dereg, shrink) is not made yet:
	 * until it is, nobody is told (no event, no state to the holders,
	 * mrl_mr_query waits): a fence reported is a fence the device applied */
	uint16_t unapplied;
	/* posts holding the local descriptor of dev_mr (ep_rma.c: local_desc to
	 * the end of the post call): the device worker closes or replaces no
	 * registration of the MR until they are done (devq.c) */
	uint16_t desc_users;
	uint64_t vma_lo, vma_hi;     /* the mappings it lay in when registered (mr.c) */
	uint16_t sigbus;             /* its slot in the fault table + 1 (sigbus.c), 0 none */
	/* fenced or deregistered before the change landed, its device still
	 * on its pages until every holder drained it: the break draining it
	 * (brk.c), NULL if none; mr.c: mrl_mr_drained lets the device go */
	struct mrl_brk *drain;
	struct fence_note *drain_note; /* the fence to tell once the device let go */
	uint8_t fenced_after;        /* fenced by mrl_mr_changed_after: its notices say so (MRL_SF_AFTER) */
};

/* What the owner said about a break (mrl_mr_restore/release/fence). */
enum owner_answer { ANSWER_NONE = 0, ANSWER_RESTORE, ANSWER_RELEASE, ANSWER_FENCE };

/* An array of MRs the caller frees (v). */
struct mrl_mr_vec {
	struct mrl_mr **v;
	size_t n, cap;
};

/* A break being resolved: on one file, or on the owner's address space. */
struct mrl_brk_ack {
	struct mrl_brk_ack *next;
	struct mrl_tpeer *peer;
	uint32_t seq;
	bool done;
	bool indexed; /* in its break's ack_hash (brk.c) */
};
/* QUIESCE: waiting for acks and answers; NOTIFY: peers were cut off, their
 * notices are sent before the device moves (brk.c); UNPIN: the device lets
 * go of the pages (queued device calls, devq.c); LANDING: the watcher lets
 * the change in */
enum brk_phase { BRK_QUIESCE = 1, BRK_NOTIFY, BRK_UNPIN, BRK_LANDING };
struct mrl_brk {
	struct mrl_brk *next;      /* ctx->brks */
	struct mrl_file *file;     /* NULL: the owner's address space (madvise) */
	int phase;
	int cause;
	pid_t pid;
	uint64_t seen_ns, deadline_ns, landing_deadline_ns;
	uint64_t notify_until;     /* BRK_NOTIFY: the device moves by then, sent or not */
	struct mrl_brk_ack *acks;
	int acks_pending;
	struct mrl_brk_ack **ack_hash; /* acks by (peer, seq), open addressing (brk.c) */
	size_t ack_hcap, ack_hn;
	uint64_t lo, hi;           /* file range paused, hi exclusive */
	struct mrl_fan_ev *fev;    /* fanotify break: the change held in the kernel; NULL = lease */
	uint64_t poll_at;          /* fanotify landing: next look at the actor */
	const struct mrl_watcher_ops *src; /* the watcher that saw it: lets it land */
	struct mrl_mr_vec mrs;     /* the MRs it paused, a reference each */
	bool unredirect;           /* the owner's restore of redirected MRs (brk.c) */
	void *actor;               /* fence mode: who waits for it to land (its source's) */
};

/* ---- control messages queued by the monitor, sent outside ctx->lock ---- */
struct mrl_out {
	struct mrl_out *next;
	struct mrl_tpeer *peer;
	size_t len;
	unsigned char buf[];
};
/* MSG_STATES batches still open for appending, one per peer: closed when
 * anything else is queued to that peer (order is kept) or the outbox is sent. */
#define MRL_OPEN_BATCHES 16

/* ---- events ---- */
/* One event: queued (ctx->evq_head list), then, once got, outstanding in
 * ctx->evo (chained by next in its bucket) until acked. Either way it
 * holds a reference on mr, so the MR's memory outlives the event. */
struct mrl_evq_item {
	struct mrl_evq_item *next;
	struct mrl_mr *mr;
	struct mrl_event ev;     /* ev.internal: the event's sequence number */
};
/* A sequence number's top bits tag its context, so an event acked on the
 * wrong context is told apart from one acked twice. */
#define MRL_EV_TAG_SHIFT 44
#define MRL_EV_SEQ_MASK ((1ull << MRL_EV_TAG_SHIFT) - 1)

/* ---- handle table ---- */
#define MRL_HT_CHUNK 4096
struct mrl_ht_slot {
	uint32_t gen;
	uint32_t next_free;
	struct mrl_mr *mr;
};
struct mrl_htable {
	struct mrl_ht_slot **chunks;
	uint32_t nchunks, cap_chunks;
	uint32_t free_head;    /* index+1, 0 = none */
	uint32_t used;
};
int mrl_ht_add(struct mrl_htable *t, struct mrl_mr *mr, mrl_mr_t *h);
struct mrl_mr *mrl_ht_get(struct mrl_htable *t, mrl_mr_t h);
void mrl_ht_del(struct mrl_htable *t, mrl_mr_t h);
void mrl_ht_free(struct mrl_htable *t);

/* ---- device calls, made outside ctx->lock (devq.c) ----
 * Under ctx->lock the state machine only queues what the device must do;
 * the context's device worker thread makes the calls in queue order with no
 * lock held and publishes each result under ctx->lock (the done callback).
 * An op on an MR is dropped (done gets -ECANCELED) when the MR moved on
 * meanwhile (its generation, state or break changed). A barrier
 * (mrl_dev_after) runs its callback once every op queued before it is done:
 * a change lands only after the device let go of the pages (brk.c, the
 * interposer). Ops queued from a done callback run before anything queued
 * earlier. */
typedef void mrl_dev_done_fn(struct mrl_ctx *ctx, struct mrl_mr *mr, int ret, void *arg);
int mrl_dev_start(struct mrl_ctx *ctx);
void mrl_dev_stop(struct mrl_ctx *ctx);
/* ctx->lock held, for all of these */
/* handle: a registration nobody else has any more; mr (or NULL): the MR it
 * was, whose descriptor users (desc_users) the call waits for */
void mrl_dev_dereg(struct mrl_ctx *ctx, void *handle, struct mrl_mr *mr);
/* the same, by a caller about to wait for the device anyway (mrl_mr_dereg):
 * when nothing is queued or running it makes the call itself, ctx->lock
 * dropped around it (no hand-over to the worker and back); counted in
 * dev_active, and a barrier queued meanwhile waits for it. mr (a reference
 * held) must be out of every table already. */
void mrl_dev_dereg_here(struct mrl_ctx *ctx, void *handle, struct mrl_mr *mr);
/* ctx->lock held: a post is done with the descriptor it took from mr */
void mrl_dev_desc_put(struct mrl_ctx *ctx, struct mrl_mr *mr);
/* point mr's registration (or a new one, same key) at the pages its
 * [addr, addr+valid_len) has when the call is made; REKEY: a new
 * registration under mr->key (new already); SHRINK: only an existing one
 * (its tail was fenced) */
enum { MRL_REREG_SAME = 0, MRL_REREG_REKEY, MRL_REREG_SHRINK };
void mrl_dev_rereg(struct mrl_ctx *ctx, struct mrl_mr *mr, int how, mrl_dev_done_fn *done,
		   void *arg);
/* cut the device off mr's pages (rops->revoke, else deregister) */
void mrl_dev_revoke(struct mrl_ctx *ctx, struct mrl_mr *mr, mrl_dev_done_fn *done, void *arg);
/* point the device at mr's scratch, same key (rops->redirect) */
void mrl_dev_redirect(struct mrl_ctx *ctx, struct mrl_mr *mr, mrl_dev_done_fn *done, void *arg);
/* done(ctx, NULL, 0, arg) once all queued before is done: at once if nothing is */
void mrl_dev_after(struct mrl_ctx *ctx, mrl_dev_done_fn *done, void *arg);
void mrl_dev_cancel(struct mrl_ctx *ctx, void *arg); /* barriers with arg: dropped */
/* until every op queued so far is done (ctx->lock dropped while waiting) */
void mrl_dev_sync(struct mrl_ctx *ctx);
/* until mr's fences are applied (mr->unapplied is 0); the caller holds a
 * reference on mr (ctx->lock dropped while waiting) */
void mrl_dev_wait_applied(struct mrl_ctx *ctx, struct mrl_mr *mr);
struct mrl_devop;

/* ---- remote keys (key.c), ctx->lock: random over the provider's key
 * space, never handed out twice by one context ---- */
struct mrl_keys {
	uint64_t *slot;        /* open addressing, 0 = free */
	size_t cap, n;
	uint64_t collisions;   /* draws refused: in use before, 0 or all ones */
	uint64_t pool[32];     /* getrandom's output not yet used */
	unsigned npool;
};
struct mrl_ctx;
int mrl_key_new(struct mrl_ctx *ctx, uint64_t *key);
bool mrl_key_used(const struct mrl_ctx *ctx, uint64_t key);
void mrl_keys_free(struct mrl_keys *k);

/* Locks, outer first; a thread takes them only in this order:
 *  ctx->flush_lock  held while the outbox is sent (mrl_flush_outbox) and
 *                   while the monitor drives progress: keeps mrl_ep_destroy
 *                   from freeing a peer being sent to.
 *  ep->lock         (ep*.c) one endpoint: its provider calls, peers, ops in
 *                   flight. The monitor only ever try-locks these two: what
 *                   it cannot send now stays queued (mrl_flush_outbox_nowait).
 *  ctx->lock        MRs, files, breaks, watchers' state, the outbox list,
 *                   the device queue (devq). Error-checking: an interposed
 *                   munmap by a thread that holds it already (inside the
 *                   library) gets EDEADLK and passes through. ctx->as_cv and
 *                   ctx->dev_cv (device op done; io_uring users wait for an
 *                   MR to leave PAUSED on it) wait with it. No device call
 *                   is made under it: the device worker (devq.c),
 *                   mrl_mr_reg and mrl_mr_dereg (mrl_dev_dereg_here, the
 *                   worker idle) call the registrar with no lock held. Nor
 *                   does registration read /proc/self/maps (find_backing,
 *                   and its second look once the MR is indexed; the
 *                   watchers' attach gets the first look's mapping,
 *                   ctx->vma_known) or mark MADV_DONTFORK / DOFORK under
 *                   it: both take the kernel's mmap lock, which a faulting
 *                   or unmapping thread may hold while it waits for the
 *                   monitor. mr.c's fork_mx orders the marks and unmarks
 *                   of the process; it is taken before ctx->lock (an unmark
 *                   looks at the VA index), never under it. Nor does verify
 *                   (verify.c: the MRs are copied under it, the maps read
 *                   with none, the result acted on under it against each
 *                   MR's generation), nor fanotify (its actors' /proc
 *                   lines are read in fan_read and fan_look with none; a
 *                   landing's line is published to its event by id and
 *                   line generation). The data path holds
 *                   an MR's registration (desc_users) only across one
 *                   provider call; the worker waits for that on dev_cv.
 *  ctx->evq_lock    the event queue; leaf (nothing is taken under it).
 *  mrl_sc.lock     (seccomp*.c) the supervisor's copy of the registered
 *                   ranges and objects and each context's held call; taken
 *                   under ctx->lock (tables, the monitor's side of a held
 *                   call) and alone by the supervisor threads, which never
 *                   take ctx->lock; no call the filter holds is made under it.
 *  fab->lock, the mock's lock, the io_uring registrar's u->lock (its slot
 *                   table and in-flight counts; taken under ctx->lock by
 *                   mrl_uring_get/put and quiesce, never held across a
 *                   system call): leaves of their registrar.
 *  the userfaultfd reader's take and lock (uffd.c): take pairs a
 *                   non-blocking read of the userfaultfd with its stamp,
 *                   against a registration's count (under ctx->lock in
 *                   registration, alone in the reader and the monitor);
 *                   lock guards the reader's queue. Leaves.
 * Kernel waits that sit outside all of them: a fanotify actor waits for the
 * monitor's answer; a userfaultfd actor waits until the monitor reads its
 * event (read before any lock is taken); a lease breaker waits for F_UNLCK
 * or lease-break-time. The monitor therefore never blocks on a lock that an
 * application thread may hold while it waits on one of those. Control
 * messages are queued under ctx->lock and sent after it is dropped.
 * Those kernel waits are bounded from outside the owner too: the guardian
 * process (guardian.c) answers a held fanotify event, or lets go of a
 * broken lease, at the break's deadline + GUARD_MARGIN_NS when the owner
 * has not. It shares no lock with the owner: a table of slots moved by
 * compare-and-swap only; the guardian never waits for the owner. The
 * owner waits for it in one place, with no lock held, bounded (100 ms):
 * before a lease may be taken (mrl_file_map, mrl_file_adopt, mrl_mr_reg)
 * mrl_guard_settle waits for the guardian to close its dups of files that
 * left the lease watcher (one wake-up of it), so the next lease on such a
 * file finds no other opener. */
struct mrl_ctx {
	pthread_mutex_t lock;
	pthread_mutex_t flush_lock;
	const struct mrl_registrar_ops *rops;
	void *dev;
	struct mrl_fabric *fab;      /* the libfabric registrar's device, else NULL */
	struct mrl_ctx_opts opts;
	bool leases;                 /* the lease watcher runs */
	unsigned watchers;           /* MRL_WATCH_* that can run here */
	/* the watcher table (watch.c: mrl_watchers), reached through the
	 * context so the core's files do not name the watchers */
	const struct mrl_watcher_ops *const *wtab;

	struct mrl_htable ht;
	struct mrl_itree va_index;
	struct mrl_file *files;
	struct mrl_keys keys;        /* every remote key handed out (key.c) */
	int procmaps_fd;             /* mr.c: /proc/self/maps for PROCMAP_QUERY, opened on first
				      * use (-1), -2 where the kernel has no such ioctl; atomic */
	/* mr.c: the mapping mrl_mr_reg read (unlocked) for the MR whose
	 * watchers it attaches now, under ctx->lock: mrl_vma_file answers
	 * from it instead of asking the kernel under the lock; NULL else
	 * (and once a watcher split the mapping: uffd.c) */
	const struct mrl_vma *vma_known;

	/* monitor */
	pthread_t monitor;
	bool monitor_running;
	pid_t monitor_tid;
	int sig_fd, ino_fd, wake_fd, timer_fd;
	/* broken leases read by the monitor before it locks (lease.c) */
#define MRL_LEASE_SIGS 16
	struct mrl_lease_sig {
		int fd;
		pid_t pid;      /* the breaker, where an owner is asked; else 0 */
		dev_t dev;
		ino_t ino;
		uint64_t seen;
	} lease_sigs[MRL_LEASE_SIGS];
	int nlease_sigs;
	int fan_fd, fan_errno;       /* fanotify pre-content group, -1 if none */
	/* fan.c: the last actors' /proc/TID/syscall files, kept open (fd + 1;
	 * 0 = empty); fan_sys_lock is a leaf, only ever tried (trylock) */
#define MRL_FAN_SYS_CACHE 4
	struct {
		pid_t tid;
		int fd1;
	} fan_sys[MRL_FAN_SYS_CACHE];
	unsigned fan_sys_next;
	pthread_mutex_t fan_sys_lock;
	struct mrl_fan_ev *fan_read_q; /* events read (and classified) without the lock */
	struct mrl_fan_ev *fan_later;  /* an MR came under them after they were read: to
					* classify with no lock held (fan.c: fan_look); the monitor's */
	uint64_t fan_ids;              /* the last mrl_fan_ev id given (the monitor's) */
	int uffd;                    /* userfaultfd for anonymous/shmem MRs, -1 if none */
	struct uffd_msg *uffd_msgs;  /* read by the monitor before it locks (uffd.c) */
	int uffd_nmsgs;
	atomic_bool stop;
	struct mrl_out *outbox, **outbox_tail;
	uint64_t outbox_since;       /* when the outbox last went from empty to not (outbox.c) */
	struct mrl_out *open_batch[MRL_OPEN_BATCHES];
	struct mrl_ep *eps;          /* endpoints on this context */

	/* events: queued, and got but not acked (evo), both under evq_lock */
	pthread_mutex_t evq_lock;
	struct mrl_evq_item *evq_head, **evq_tail;
	unsigned evq_len;
	int ev_fd;
	uint64_t ev_seq;             /* last sequence number given (tag | count) */
	struct mrl_evq_item **evo;   /* outstanding events hashed by sequence number */
	uint32_t evo_cap, evo_n;     /* buckets (a power of two, 0 = none yet), events */
	struct mrl_evq_item *ev_pool; /* acked items kept for reuse (event.c) */
	uint32_t ev_npool;

	struct mrl_stats st;
	int intp_slot;               /* the interposer's slot for this context, -1 if none */
	long intp_nmrs;              /* its MRs the preload library counts */
	struct mrl_intp_req *intp_reqs; /* interposed calls waiting for the monitor */
	struct mrl_intp_req *as_req; /* the madvise pause waiting for as_brk to quiesce */
	bool intp_inline;            /* no monitor to wait for: resolve in the caller */
	unsigned fork_gen;           /* mrl_fork_gen when created: differs in a forked child */
	uint64_t verify_at;          /* next periodic verify (opts.verify_ms), 0 = none; the monitor's */
	struct mrl_brk *brks;        /* breaks being resolved (brk.c) */
	struct mrl_brk *as_brk;      /* the address-space one (madvise), one at a time */
	pthread_cond_t as_cv;        /* with ctx->lock: it may land, or it ended */
	/* device calls (devq.c), under ctx->lock */
	struct mrl_devop *devq, **devq_tail;
	struct mrl_devop **devq_front; /* a done callback runs: its ops go here */
	unsigned dev_active;         /* device calls in progress, lock dropped: the worker's,
				      * and deregistrations made by their caller (dev_inline) */
	unsigned dev_inline;         /* mrl_dev_dereg_here calls in progress */
	bool dev_stop, dev_running;
	pthread_t dev_thread;
	pthread_cond_t dev_cv;       /* with ctx->lock: op queued, op done */
	pthread_cond_t dev_work_cv;  /* with ctx->lock: the idle worker's (op queued, stop) */
	uint64_t pause_ns[4096];     /* ring of recent pause durations */
	uint64_t npause;
	struct mrl_guard *guard;     /* the guardian process (guardian.c), NULL if none */
	uint64_t sigbus_seen;        /* faults caught (sigbus.c) this monitor has looked at */
	uint64_t sb_risk_ns, sb_risk_due; /* sigbus.c: MRs' risk worked out last; again at (0: no need) */
	struct mrl_mfd *mfds;        /* memfd/shmem objects under MRs (memfd.c), ctx->lock */
	struct mrl_mfd *mfd_starting; /* memfd.c: the object whose break is being begun */
};

/* ---- watchers: how a break is seen ----
 * One ops table per watcher, one file each (lease.c, inotify.c, fan.c,
 * uffd.c, interpose.c, verify.c), listed in mrl_watchers (watch.c). The
 * context starts them, the monitor polls the fds they give it, files and MRs
 * are attached to each, and coverage is the best any of them claims. Adding a
 * watcher is one file and one line in the table. Every op is optional. */
struct mrl_watcher_ops {
	const char *name;
	unsigned bit;      /* MRL_WATCH_* */
	/* mrl_ctx_create, before the monitor runs: 0 = it runs here (its bit
	 * joins ctx->watchers), -errno = not here (logged, not an error) */
	int (*start)(struct mrl_ctx *ctx);
	/* in the monitor thread, before its loop (per-thread state: signal masks) */
	int (*thread_start)(struct mrl_ctx *ctx);
	void (*stop)(struct mrl_ctx *ctx);   /* after the monitor stopped */
	int (*poll_fd)(struct mrl_ctx *ctx); /* what the monitor polls, -1 none */
	/* no lock held: actors that wait until their event is read (uffd) */
	void (*read)(struct mrl_ctx *ctx);
	void (*drain)(struct mrl_ctx *ctx);  /* ctx->lock held: poll_fd was readable */
	/* no lock held, in the monitor every round, before drain and tick:
	 * the reads a watcher may not make under ctx->lock (/proc). It takes
	 * the lock itself, briefly, to see what to read and to publish what
	 * it read, checked against a stamp taken with the first look so that
	 * a change in between is read again, never lost */
	void (*look)(struct mrl_ctx *ctx, uint64_t now);
	uint64_t (*next_timer)(struct mrl_ctx *ctx);       /* ctx->lock held; UINT64_MAX none */
	void (*tick)(struct mrl_ctx *ctx, uint64_t now);   /* ctx->lock held */
	/* ctx->lock held: a break this watcher began (mrl_brk_begin) is
	 * quiesced: let the change land; say when it has (mrl_brk_finish) */
	void (*let_land)(struct mrl_ctx *ctx, struct mrl_brk *b, uint64_t now);
	/* ctx->lock held: a break this watcher began is being freed (landed,
	 * or its file went away): let go of what it holds for it */
	void (*brk_done)(struct mrl_ctx *ctx, struct mrl_brk *b);
	/* ctx->lock held, in the monitor thread as it leaves: serve whatever
	 * waits for it, and never wait for it again */
	void (*monitor_gone)(struct mrl_ctx *ctx);
	/* ctx->lock held: a file backs MRs now / no more; the library holds an
	 * fd of its own for it now; its mapping and MRs are in place (arm) */
	void (*file_attach)(struct mrl_ctx *ctx, struct mrl_file *f);
	void (*file_detach)(struct mrl_ctx *ctx, struct mrl_file *f);
	void (*file_opened)(struct mrl_ctx *ctx, struct mrl_file *f);
	void (*file_arm)(struct mrl_ctx *ctx, struct mrl_file *f);
	void (*mr_attach)(struct mrl_ctx *ctx, struct mrl_mr *mr);
	void (*mr_detach)(struct mrl_ctx *ctx, struct mrl_mr *mr); /* out of the VA index already */
	/* ctx->lock held: raise the cells of cov this watcher sees for mr (never
	 * lower one); return bit if it watches mr now, else 0 */
	unsigned (*coverage)(struct mrl_ctx *ctx, struct mrl_mr *mr, uint8_t *cov);
};
extern const struct mrl_watcher_ops mrl_watch_lease, mrl_watch_inotify, mrl_watch_fan,
	mrl_watch_uffd, mrl_watch_interpose, mrl_watch_sigbus, mrl_watch_verify, mrl_watch_memfd,
	mrl_watch_seccomp;
/* watch.c */
int mrl_watchers_start(struct mrl_ctx *ctx);
void mrl_watchers_stop(struct mrl_ctx *ctx);
/* call op on every watcher running in ctx that has it */
#define MRL_WATCHERS_EACH(ctx, op, ...)                                                      \
	do {                                                                                 \
		for (const struct mrl_watcher_ops *const *w_ = (ctx)->wtab; w_ && *w_; w_++) \
			if (((ctx)->watchers & (*w_)->bit) && (*w_)->op)                     \
				(*w_)->op(ctx, ##__VA_ARGS__);                               \
	} while (0)
extern const struct mrl_watcher_ops *const mrl_watchers[];
/* coverage: raise a cell (NEVER < AFTER < BEFORE; NA stays) */
static inline void mrl_cov_raise(uint8_t *cov, int row, int seen)
{
	if (cov[row] != MRL_SEEN_NA && seen != MRL_SEEN_NA && seen > cov[row])
		cov[row] = (uint8_t)seen;
}

/* event.c */
void mrl_events_init(struct mrl_ctx *ctx);
void mrl_events_release(struct mrl_ctx *ctx);
void mrl_post_event(struct mrl_ctx *ctx, struct mrl_mr *mr, uint32_t type, uint32_t cause,
		    uint64_t off, uint64_t len, pid_t pid, uint64_t deadline, uint64_t seen);
void mrl_post_peer_event(struct mrl_ctx *ctx, void *peer, uint32_t cause, uint64_t seen);
/* the monitor looks again (its wake eventfd; inline: everything calls it,
 * and the monitor's file should not be everyone's neighbour) */
static inline void mrl_wake_monitor(struct mrl_ctx *ctx)
{
	uint64_t one = 1;
	if (ctx->wake_fd >= 0 && write(ctx->wake_fd, &one, sizeof(one)) < 0) {
	}
}
/* A reference on mr dropped (the table's, an event's, a queued device
 * op's): the last frees it. Inline: every holder of a reference calls it,
 * and the MR state machine's file should not be everyone's neighbour. */
static inline void mrl_mr_put(struct mrl_ctx *ctx, struct mrl_mr *mr)
{
	(void)ctx;
	if (--mr->refs)
		return;
	while (mr->holders) {
		struct mrl_holder *h = mr->holders;
		mr->holders = h->next;
		free(h);
	}
	free(mr);
}
/* outbox.c */
void mrl_queue_out(struct mrl_ctx *ctx, struct mrl_tpeer *peer, const void *msg, size_t len);
struct state_ent;
void mrl_queue_state(struct mrl_ctx *ctx, struct mrl_holder *h, const struct state_ent *e, uint64_t len);
void mrl_outbox_close_batches(struct mrl_ctx *ctx);
void mrl_flush_outbox(struct mrl_ctx *ctx);
bool mrl_flush_outbox_nowait(struct mrl_ctx *ctx);
void mrl_outbox_forget(struct mrl_ctx *ctx, bool (*match)(struct mrl_tpeer *, void *), void *arg);

/* mr.c: state transitions, all with ctx->lock held */
void mrl_mr_set_state(struct mrl_mr *mr, int state);
/* served, or about to be again: active, or paused by a break that ended
 * (its restore waits for the device) */
static inline bool mrl_mr_live(const struct mrl_mr *mr)
{
	return mr->state == MRL_STATE_ACTIVE || (mr->state == MRL_STATE_PAUSED && !mr->in_brk);
}
void mrl_send_cut_off(struct mrl_ctx *ctx, struct mrl_mr *mr, struct mrl_tpeer *peer);
void mrl_mr_fence_locked(struct mrl_ctx *ctx, struct mrl_mr *mr, int cause, uint64_t off,
			 uint64_t len, pid_t pid, uint64_t seen);
int mrl_mr_restore_locked(struct mrl_ctx *ctx, struct mrl_mr *mr, uint64_t seen);
/* A fence decided before the change lands, on an MR whose holders must
 * drain first (brk.c, fence mode): decided and told now (state, holders),
 * the device keeps the pages until mrl_mr_drained, which lets it go (then
 * the owner is told, as for any fence: once applied). */
void mrl_mr_fence_held(struct mrl_ctx *ctx, struct mrl_mr *mr, int cause, pid_t pid, uint64_t seen);
void mrl_mr_drained(struct mrl_ctx *ctx, struct mrl_mr *mr);
/* Break hooks for registrars that quiesce locally (rops->quiesce/revoke):
 * quiesce right after an MR is paused (may add a local ack to mr->brk);
 * unpin before the change lands (fences with cause deadline if the device
 * still has operations in flight). */
void mrl_mr_quiesce_locked(struct mrl_ctx *ctx, struct mrl_brk *b, struct mrl_mr *mr);
/* 1 if it will be re-pinned (then: new generation, RESTORED, cause, state
 * to every holder; fenced when it cannot) */
int mrl_mr_repin_locked(struct mrl_ctx *ctx, struct mrl_mr *mr, int cause);
/* The one path for a change seen only after it landed: CHANGED, re-pin,
 * new generation, state to every holder (or fence); see mr.c. */
void mrl_mr_changed_after(struct mrl_ctx *ctx, struct mrl_mr *mr, int cause, uint64_t off,
			  uint64_t len, uint64_t seen);
void mrl_mr_unpin_locked(struct mrl_ctx *ctx, struct mrl_mr *mr, pid_t pid, uint64_t seen);
unsigned mrl_mr_coverage(struct mrl_ctx *ctx, struct mrl_mr *mr, uint8_t *cov);
void mrl_send_state(struct mrl_ctx *ctx, struct mrl_mr *mr, struct mrl_tpeer *only);

/* mr.c: the (dev, inode) of the mapping at addr; -ENOENT for anonymous or
 * unmapped. A /proc look: call it with no lock held (file.c does). */
int mrl_vma_ident(struct mrl_ctx *ctx, uintptr_t addr, dev_t *dev, ino_t *ino);
/* uffd.c, ctx->lock held: a split at `at' is the edge of an anonymous range
 * the userfaultfd watcher keeps registered after its MR went (mr.c's
 * split_is_ours) */
bool mrl_uffd_kept_split(struct mrl_ctx *ctx, uint64_t at);
/* uffd.c, any lock or none: the count of registrations with the
 * userfaultfd so far (0 without one). An MR whose uffd_since is at most a
 * count taken before a look at its mapping was watched since before it. */
uint64_t mrl_uffd_seq(struct mrl_ctx *ctx);

/* file.c */
struct mrl_file *mrl_file_find(struct mrl_ctx *ctx, dev_t dev, ino_t ino);
int mrl_file_get(struct mrl_ctx *ctx, dev_t dev, ino_t ino, const char *path, int kind,
		 struct mrl_file **out);
void mrl_file_put(struct mrl_ctx *ctx, struct mrl_file *f);

/* The MRs of a file over [lo, hi): the break engine changes MRs while
 * walking them, which a tree walk does not allow. */
#define MR_OF_FNODE(n) ((struct mrl_mr *)((char *)(n) - offsetof(struct mrl_mr, fnode)))
void mrl_file_mrs_range(struct mrl_file *f, uint64_t lo, uint64_t hi, struct mrl_mr_vec *vec);
int mrl_mr_vec_push(struct mrl_mr_vec *vec, struct mrl_mr *mr);
static inline void mrl_file_mrs(struct mrl_file *f, struct mrl_mr_vec *vec)
{
	mrl_file_mrs_range(f, 0, UINT64_MAX, vec);
}

/* lease.c: the lease watcher; all with ctx->lock held */
void mrl_lease_take(struct mrl_ctx *ctx, struct mrl_file *f);
/* lease.c: the kernel has fcntl delegations (F_SETDELEG, Linux 6.19+) */
bool mrl_lease_deleg_present(void);
void mrl_lease_drop(struct mrl_ctx *ctx, struct mrl_file *f);
void mrl_lease_file_closed(struct mrl_ctx *ctx, struct mrl_file *f);

/* memfd.c: the memfd/shmem watcher; ctx->lock held. A lease signal for an
 * fd that is no file's (lease.c) may be one of its leases. Deny on a memfd:
 * seal it (0), or -errno and why not. */
void mrl_memfd_lease_signal(struct mrl_ctx *ctx, int fd, uint64_t seen);
int mrl_memfd_seal(struct mrl_ctx *ctx, dev_t dev, ino_t ino, const char **why);
int mrl_memfd_ident(struct mrl_ctx *ctx, struct mrl_mr *mr, dev_t *dev, ino_t *ino);
/* memfd.c: 1 if fds a and b share one open file description (F_DUPFD_QUERY,
 * Linux 6.10+), 0 if not, -EOPNOTSUPP if the kernel cannot tell */
int mrl_fd_same_desc(int a, int b);
void mrl_memfd_mrs(struct mrl_ctx *ctx, dev_t dev, ino_t ino, uint64_t lo, uint64_t hi,
		   struct mrl_mr_vec *vec);
void mrl_memfd_fence_past_end(struct mrl_ctx *ctx, struct mrl_brk *b, uint64_t now);
/* memfd.c: free the address-space breaks src began (its stop; takes ctx->lock) */
void mrl_brks_free_of(struct mrl_ctx *ctx, const struct mrl_watcher_ops *src);
/* The offset the SIGBUS handler (sigbus.c) passes to its raw
 * mmap(MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED) of a scratch page over an MR: the
 * kernel ignores it for private anonymous memory (page aligned, as it must
 * be), and the seccomp filter (seccomp_filter.c) lets that call go unheld --
 * held, it would wait for a monitor that may wait for the faulting thread. */
#define MRL_SCRATCH_MMAP_OFF 0x4d524c000000ull
/* seccomp_loop.c: the filter and its supervisor (MRL_CTX_SECCOMP), from
 * mrl_ctx_create once the library's threads run */
int mrl_seccomp_install(struct mrl_ctx *ctx);
/* mr.c: the (dev, inode), file offset and extent of the mapping at addr;
 * under ctx->lock in a watcher's mr_attach it answers from what
 * mrl_mr_reg read (ctx->vma_known) and asks the kernel nothing */
int mrl_vma_file(struct mrl_ctx *ctx, uintptr_t addr, dev_t *dev, ino_t *ino, uint64_t *off,
		 uintptr_t *start, uintptr_t *end);

/* brk.c: the break engine; all with ctx->lock held */
struct mrl_brk *mrl_brk_begin(struct mrl_ctx *ctx, struct mrl_file *f,
			      const struct mrl_watcher_ops *src, int cause, pid_t pid, uint64_t lo,
			      uint64_t hi, uint64_t seen, struct mrl_fan_ev *fev);
struct mrl_brk *mrl_brk_begin_mrs(struct mrl_ctx *ctx, const struct mrl_watcher_ops *src,
				  struct mrl_mr_vec *vec, int cause, pid_t pid, uint64_t seen);
void mrl_brk_finish(struct mrl_ctx *ctx, struct mrl_brk *b);
void mrl_brk_tick(struct mrl_ctx *ctx, uint64_t now);
uint64_t mrl_brk_next_timer(struct mrl_ctx *ctx);
void mrl_brk_ack(struct mrl_ctx *ctx, struct mrl_tpeer *peer, uint32_t seq);
void mrl_brk_device_idle(struct mrl_ctx *ctx, uint32_t seq);
void mrl_brk_forget_peer(struct mrl_ctx *ctx, struct mrl_tpeer *peer);
void mrl_brk_owner_answered(struct mrl_ctx *ctx, struct mrl_mr *mr);
void mrl_brk_free(struct mrl_ctx *ctx, struct mrl_brk *b);
bool mrl_brk_waiting_acks(struct mrl_ctx *ctx);
/* Fence the MRs in vec (taken over) with cause, before the change lands:
 * those with holders and a registration are fenced at once for everyone
 * but their device lets go only once every holder drained them (PAUSE,
 * ack, deadline, cut-off: the break engine's); src->let_land is called
 * then, with b->actor = actor. NULL: nothing had to wait
 * (all fenced at once; the device calls are queued). Cause
 * MRL_CAUSE_DEREGISTERED: the caller deregisters them right after. */
bool mrl_mr_drains(struct mrl_ctx *ctx, const struct mrl_mr *mr);
struct mrl_brk *mrl_brk_fence_mrs(struct mrl_ctx *ctx, const struct mrl_watcher_ops *src,
				  struct mrl_mr_vec *vec, int cause, pid_t pid, uint64_t seen,
				  void *actor);
/* The same for one MR, for a caller that waits (mrl_mr_fence,
 * mrl_mr_dereg): NULL if nothing is to be drained (the caller fences or
 * deregisters as before); else *landed turns true, under ctx->lock with
 * dev_cv broadcast, once its device let go (mrl_brk_wait_landed). */
struct mrl_brk *mrl_brk_fence_one(struct mrl_ctx *ctx, struct mrl_mr *mr, int cause, bool *landed);
void mrl_brk_wait_landed(struct mrl_ctx *ctx, bool *landed);
/* mrl_mr_restore of a redirected MR: back onto its file, same key */
int mrl_brk_unredirect(struct mrl_ctx *ctx, struct mrl_mr *mr);
/* an fd to fstat the file with (the library's own, its O_PATH one, or a
 * held event's), -1 if none */
int mrl_file_stat_fd(struct mrl_file *f);
/* inotify.c: the file is as st says for a restore: its settled state's number */
struct stat;
uint32_t mrl_file_settled(struct mrl_file *f, const struct stat *st);

/* fan.c: the fanotify pre-content watcher; ctx->lock held */
void mrl_fan_on_close(struct mrl_ctx *ctx, struct mrl_file *f);
void mrl_fan_answer(struct mrl_ctx *ctx, struct mrl_fan_ev *e, int deny_errno);
void mrl_fan_ev_free(struct mrl_fan_ev *e);
void mrl_fan_check_landed(struct mrl_ctx *ctx, struct mrl_file *f);

/* guardian.c: the process that keeps other processes' waits bounded when
 * the owner cannot (stopped, hung); see the file's head */
struct mrl_guard;
extern bool mrl_guard_off;
int mrl_guard_start(struct mrl_ctx *ctx);
void mrl_guard_stop(struct mrl_ctx *ctx);
pid_t mrl_guard_pid(struct mrl_ctx *ctx);
uint64_t mrl_guard_acts(struct mrl_ctx *ctx);
void mrl_guard_reap(struct mrl_ctx *ctx);
bool mrl_guard_read_begin(struct mrl_ctx *ctx, uint64_t *mark);
bool mrl_guard_read_end(struct mrl_ctx *ctx, uint64_t mark);
void mrl_guard_fan_hold(struct mrl_ctx *ctx, struct mrl_fan_ev *e, uint64_t deadline);
void mrl_guard_fan_deadline(struct mrl_fan_ev *e, uint64_t deadline);
bool mrl_guard_fan_take(struct mrl_fan_ev *e);
void mrl_guard_fan_answered(struct mrl_fan_ev *e);
bool mrl_guard_fan_free(struct mrl_fan_ev *e);
/* a lease by its slot (the owner's unsigned gslot: slot + 1, 0 none);
 * kind says who is told when the guardian lets go of it */
enum mrl_guard_kind { GUARD_FILE = 1, GUARD_MEMFD };
void mrl_guard_slot_arm(struct mrl_ctx *ctx, unsigned *gslot, int fd, int type, int kind, void *obj,
			const char *what);
void mrl_guard_slot_pending(struct mrl_ctx *ctx, const unsigned *gslot, uint64_t deadline);
void mrl_guard_slot_idle(struct mrl_ctx *ctx, const unsigned *gslot);
void mrl_guard_slot_detach(struct mrl_ctx *ctx, unsigned *gslot);
/* the same for a file's lease (lease.c) */
void mrl_guard_lease_arm(struct mrl_ctx *ctx, struct mrl_file *f, int type);
void mrl_guard_lease_pending(struct mrl_ctx *ctx, struct mrl_file *f, uint64_t deadline);
void mrl_guard_lease_idle(struct mrl_ctx *ctx, struct mrl_file *f);
void mrl_guard_lease_detach(struct mrl_ctx *ctx, struct mrl_file *f);
void mrl_guard_settle(struct mrl_ctx *ctx);
/* the watchers' part of the reap (ctx->lock held): what the guardian let go */
void mrl_fan_guard_let(struct mrl_ctx *ctx, struct mrl_fan_ev *e, uint64_t at);
void mrl_fan_guard_rec(struct mrl_ctx *ctx, uint64_t dev, uint64_t ino, uint32_t mask, pid_t tid,
		       uint64_t lo, uint64_t hi, const char *line, uint64_t at, bool denied);
void mrl_lease_guard_let(struct mrl_ctx *ctx, struct mrl_file *f, int target, uint64_t at);
struct mrl_mfd;
void mrl_memfd_guard_let(struct mrl_ctx *ctx, struct mrl_mfd *m, int target, uint64_t at);

/* interpose.c: the owner's munmap/mremap/madvise/mmap/shmdt */
int mrl_intp_add(struct mrl_ctx *ctx);
void mrl_intp_del(struct mrl_ctx *ctx);
bool mrl_intp_active(void);
void mrl_intp_grow(struct mrl_ctx *ctx, uintptr_t a, uintptr_t b);
/* mr.c: the mapping around addr, from /proc/self/maps (no context needed) */
int mrl_vma_range(uintptr_t addr, uintptr_t *start, uintptr_t *end);
/* mr.c, for verify.c: the cause of a change under one MR, 0 if none,
 * read with no lock held from what the MR was (copied under ctx->lock) */
struct mrl_backing {
	uintptr_t addr;
	uint64_t len;     /* its valid_len */
	uint64_t off;     /* its file offset */
	dev_t dev;
	ino_t ino;
	int kind;
	bool file;
};
int mrl_backing_changed(int *maps_fd, const struct mrl_backing *b);
/* verify.c: tests hold a pass here, with no lock held, before it reads */
typedef void (*mrl_test_hook)(struct mrl_ctx *ctx);
extern _Atomic mrl_test_hook mrl_verify_read_hook;
/* fan.c: tests hold the monitor here, no lock held, before it reads a
 * landing actor's /proc/TID/syscall */
extern _Atomic mrl_test_hook mrl_fan_look_hook;
/* fork.c: the fork generation, bumped in every forked child by the handler
 * mrl_fork_watch installs (once per process, whatever the context's flags) */
extern _Atomic unsigned mrl_fork_gen;
void mrl_fork_watch(void);
int mrl_child_err(const char *fn) __attribute__((cold));
/* Every public call taking a library object, first thing after its NULL
 * checks and before any lock: a forked child may not use its parent's
 * objects (their locks may be held for ever there by threads that do not
 * exist in the child; their connections and devices are the parent's).
 * Inequality, not order. */
static inline bool mrl_forked(const struct mrl_ctx *ctx)
{
	return ctx->fork_gen != atomic_load_explicit(&mrl_fork_gen, memory_order_relaxed);
}
#define MRL_CHILD_CHECK(ctx, fn)                                                             \
	do {                                                                                 \
		if (unlikely(mrl_forked(ctx)))                                                \
			return mrl_child_err(fn);                                            \
	} while (0)
/* fork.c: does fork give the child a copy of pinned private pages, so
 * the parent keeps the pinned ones (Linux 5.9+: early COW of FOLL_PIN'd
 * anonymous pages)? Probed once, on first use; false when it cannot tell. */
bool mrl_fork_copies_pinned(void);

/* monitor.c */
int mrl_monitor_start(struct mrl_ctx *ctx);
void mrl_monitor_stop(struct mrl_ctx *ctx);

/* The data path (ep*.c; what only its files share: ep_int.h). It is the
 * core's transport for its peers (mrl_transport_ops).
 * tests: a raw control message to one of its peers (takes ep->lock) */
int mrl_ep_send_raw(struct mrl_peer *peer, const void *msg, size_t len);
/* ep.c: the monitor drives progress on every endpoint not busy elsewhere
 * (no lock held) */
void mrl_ep_progress_all(struct mrl_ctx *ctx);
/* sigbus.c: an owner's endpoint, before it drives its provider (no lock):
 * the part of an at-risk file MR past its file's end goes to scratch pages
 * and the monitor fences it; mrl_sb_cut: the same for mr from off on,
 * ctx->lock held (its fence is the caller's); files the check fstat'ed */
void mrl_sb_precheck(struct mrl_ctx *ctx);
void mrl_sb_cut(struct mrl_mr *mr, uint64_t off);
extern _Atomic uint64_t mrl_sb_checks;
/* tests, bench: no size check (what it costs; what it prevents) */
extern _Atomic bool mrl_sb_test_no_precheck;
/* ep.c, tests: the send queue is full while RMA operations are in flight */
extern bool mrl_ep_test_full_txq;
/* ep_rma.c, tests: local descriptors as if the provider wanted them
 * (FI_MR_LOCAL; tcp does not) */
extern bool mrl_ep_test_mr_local;
/* tests: pause messages received, pause acks sent, pause acks received */
void mrl_ep_pause_counts(struct mrl_ep *ep, uint64_t *pauses_in, uint64_t *acks_out,
			 uint64_t *acks_in);

#endif
