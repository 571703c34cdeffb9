/* Private structures shared by the library's sources.
 * Lock order (outer first): ctx->flush_lock, ep->lock, ctx->lock, ctx->evq_lock.
 * The monitor never takes an ep->lock while holding ctx->lock: it queues
 * control messages in ctx->outbox and sends them after dropping ctx->lock. */
#ifndef MRL_INT_H
#define MRL_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "mrlease.h"
#include "itree.h"

#define MRL_EXPORT __attribute__((visibility("default")))
#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* ---- errors and time ---- */
int mrl_err(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void mrl_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline uint64_t mrl_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- registrar: the device behind an MR ---- */
struct mrl_registrar_ops {
	size_t size;
	const char *name;
	/* Register [addr, addr+len) asking for key *key; a provider that picks
	 * its own keys overwrites *key. */
	int (*reg)(void *dev, void *addr, size_t len, unsigned access, uint64_t *key, void **handle);
	int (*dereg)(void *dev, void *handle);
	/* Local descriptor for the data path (NULL when the device needs none). */
	void *(*desc)(void *handle);
	void (*close)(void *dev);
	/* Optional (NULL where the device has no such thing), for devices the
	 * library quiesces itself (io_uring fixed buffers):
	 * quiesce: hold new device operations on handle; 0 when none is in
	 *   flight, 1 when some are: the registrar calls mrl_brk_ack(ctx, NULL,
	 *   seq) once the last one ends. restore or dereg ends the hold.
	 * revoke: cut the device off the pages but keep handle and key, so a
	 *   restore can refill it; -EBUSY if operations are still in flight.
	 * restore: point handle (same key) at the pages [addr, addr+len) has now. */
	int (*quiesce)(void *dev, void *handle, uint32_t seq);
	int (*revoke)(void *dev, void *handle);
	int (*restore)(void *dev, void *handle, void *addr, size_t len);
	/* Does a registration pin the pages (the device keeps their physical
	 * addresses: io_uring fixed buffers, RDMA NICs)? NULL = never. Only
	 * pinned pages need protecting from copy-on-write after fork. */
	bool (*pins)(void *dev);
};
extern const struct mrl_registrar_ops mrl_reg_fabric_ops;
extern const struct mrl_registrar_ops mrl_reg_uring_ops;
int mrl_reg_uring_open(struct mrl_ctx *ctx, void **dev);
extern const struct mrl_registrar_ops mrl_reg_mock_ops;
int mrl_reg_fabric_open(const char *provider, const char *addr, void **dev);
int mrl_reg_mock_open(void **dev);
/* Used by tests through the mock: is a key registered now, and where. */
int mrl_mock_lookup(void *dev, uint64_t key, void **addr, size_t *len);

/* libfabric objects shared by the registrar and the endpoints. */
struct fi_info;
struct fid_fabric;
struct fid_domain;
struct mrl_fabric {
	struct fi_info *info;
	struct fid_fabric *fabric;
	struct fid_domain *domain;
	bool prov_key;   /* FI_MR_PROV_KEY: keys change on restore */
	bool virt_addr;  /* FI_MR_VIRT_ADDR: remote addresses are virtual */
	bool mr_local;   /* FI_MR_LOCAL: local buffers need descriptors */
	bool pins;       /* the provider pins registered pages (verbs, efa, ...) */
	pthread_mutex_t lock;
	struct mrl_lbuf *lbufs;   /* cached local-buffer registrations */
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
};

struct mrl_file {
	struct mrl_file *next;
	dev_t dev;
	ino_t ino;
	int fd;               /* the library's own fd, -1 if none */
	int kind;             /* enum mrl_kind */
	char *path;
	int wd;               /* inotify watch, -1 if none */
	int lease;            /* enum lease_state */
	int lease_errno;      /* why the lease could not be taken */
	int refs;             /* MRs + mappings made through mrl_file_map */
	int maps;             /* live mrl_file_map mappings */
	struct mrl_itree mrs; /* MRs by file offset */
	struct mrl_brk *brk;  /* break being resolved, or NULL */
	uint64_t relock_at;   /* when to retry the lease without a close event */
	bool brk_unmet;       /* the last breaker missed its window: wait for the next one */
	uint64_t last_change_ev;
	/* fanotify */
	bool fan;             /* marked: pre-content events replace the lease */
	bool fan_fd_young;    /* the library's fd was opened after the mark */
	bool fan_complete;    /* every open file description is younger than the mark */
	int fan_errno;        /* why the file could not be marked */
	struct mrl_fan_ev *fan_q; /* layout changes waiting for the current break */
};

/* ---- MRs ---- */
struct mrl_holder {
	struct mrl_holder *next;
	struct mrl_peer *peer;
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
	uint8_t counted;             /* in mrl_intp_count */
	uint8_t dontfork;            /* its pages were marked MADV_DONTFORK (see mr.c) */
	uint8_t uffd;                /* its pages are registered with ctx->uffd */
};

/* What the owner said about a break (mrl_mr_restore/release/fence). */
enum owner_answer { ANSWER_NONE = 0, ANSWER_RESTORE, ANSWER_RELEASE, ANSWER_FENCE };

/* A break being resolved on one file. */
struct mrl_brk_ack {
	struct mrl_brk_ack *next;
	struct mrl_peer *peer;
	uint32_t seq;
	bool done;
};
enum brk_phase { BRK_QUIESCE = 1, BRK_LANDING };
struct mrl_brk {
	struct mrl_file *file;
	int phase;
	int cause;
	pid_t pid;
	uint64_t seen_ns, deadline_ns, landing_deadline_ns;
	struct mrl_brk_ack *acks;
	int acks_pending;
	uint64_t lo, hi;           /* file range paused, hi exclusive */
	struct mrl_fan_ev *fev;    /* fanotify break: the change held in the kernel; NULL = lease */
	uint64_t poll_at;          /* fanotify landing: next look at the actor */
};

/* ---- control messages queued by the monitor, sent outside ctx->lock ---- */
struct mrl_out {
	struct mrl_out *next;
	struct mrl_peer *peer;
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

struct mrl_ctx {
	pthread_mutex_t lock;
	pthread_mutex_t flush_lock;  /* held while the outbox is sent; outermost */
	const struct mrl_registrar_ops *rops;
	void *dev;
	struct mrl_fabric *fab;      /* NULL with the mock registrar */
	struct mrl_ctx_opts opts;
	bool leases;                 /* the lease watcher runs */
	unsigned watchers;           /* MRL_WATCH_* that can run here */

	struct mrl_htable ht;
	struct mrl_itree va_index;
	struct mrl_file *files;
	uint64_t next_key;
	int procmaps_fd;

	/* monitor */
	pthread_t monitor;
	bool monitor_running;
	pid_t monitor_tid;
	int sig_fd, ino_fd, wake_fd, timer_fd;
	int fan_fd, fan_errno;       /* fanotify pre-content group, -1 if none */
	int uffd;                    /* userfaultfd for anonymous/shmem MRs, -1 if none */
	atomic_bool stop;
	struct mrl_out *outbox, **outbox_tail;
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

	struct mrl_stats st;
	int intp_slot;               /* the interposer's slot for this context, -1 if none */
	unsigned fork_gen;           /* mrl_fork_gen when created: differs in a forked child */
	uint64_t verify_at;          /* next periodic verify (opts.verify_ms), 0 = none */
	struct mrl_brk *as_brk;      /* an address-space pause (madvise) waiting for acks */
	pthread_cond_t as_cv;        /* with ctx->lock: its acks arrived, or it ended */
	uint64_t pause_ns[4096];     /* ring of recent pause durations */
	uint64_t npause;
};

/* ctx.c */
void mrl_post_event(struct mrl_ctx *ctx, struct mrl_mr *mr, uint32_t type, uint32_t cause,
		    uint64_t off, uint64_t len, pid_t pid, uint64_t deadline, uint64_t seen);
void mrl_mr_put(struct mrl_ctx *ctx, struct mrl_mr *mr);
void mrl_wake_monitor(struct mrl_ctx *ctx);
void mrl_queue_out(struct mrl_ctx *ctx, struct mrl_peer *peer, const void *msg, size_t len);
struct state_ent;
void mrl_queue_state(struct mrl_ctx *ctx, struct mrl_peer *peer, const struct state_ent *e);
void mrl_outbox_close_batches(struct mrl_ctx *ctx);
void mrl_flush_outbox(struct mrl_ctx *ctx);

/* mr.c: state transitions, all with ctx->lock held */
void mrl_mr_fence_locked(struct mrl_ctx *ctx, struct mrl_mr *mr, int cause, uint64_t off,
			 uint64_t len, pid_t pid, uint64_t seen);
int mrl_mr_restore_locked(struct mrl_ctx *ctx, struct mrl_mr *mr, uint64_t seen);
/* Break hooks for registrars that quiesce locally (rops->quiesce/revoke):
 * quiesce right after an MR is paused (may add a local ack to mr->brk);
 * unpin before the change lands (fences with cause deadline if the device
 * still has operations in flight). */
void mrl_mr_quiesce_locked(struct mrl_ctx *ctx, struct mrl_mr *mr);
void mrl_mr_repin_locked(struct mrl_ctx *ctx, struct mrl_mr *mr, uint64_t seen);
void mrl_mr_unpin_locked(struct mrl_ctx *ctx, struct mrl_mr *mr, pid_t pid, uint64_t seen);
void mrl_mr_coverage(struct mrl_ctx *ctx, struct mrl_mr *mr, uint8_t *cov);
void mrl_send_state(struct mrl_ctx *ctx, struct mrl_mr *mr, struct mrl_peer *only);

/* mr.c: the (dev, inode) of the mapping at addr; -ENOENT for anonymous or unmapped */
int mrl_vma_ident(struct mrl_ctx *ctx, uintptr_t addr, dev_t *dev, ino_t *ino);

/* file.c */
struct mrl_file *mrl_file_find(struct mrl_ctx *ctx, dev_t dev, ino_t ino);
int mrl_file_get(struct mrl_ctx *ctx, dev_t dev, ino_t ino, const char *path, int kind,
		 struct mrl_file **out);
void mrl_file_put(struct mrl_ctx *ctx, struct mrl_file *f);

/* lease.c: the lease watcher; all with ctx->lock held */
void mrl_lease_take(struct mrl_ctx *ctx, struct mrl_file *f);
void mrl_lease_drop(struct mrl_ctx *ctx, struct mrl_file *f);
void mrl_lease_on_signal(struct mrl_ctx *ctx, int fd);
void mrl_lease_on_inotify(struct mrl_ctx *ctx, int wd, uint32_t mask);
void mrl_brk_tick(struct mrl_ctx *ctx, uint64_t now);
void mrl_brk_ack(struct mrl_ctx *ctx, struct mrl_peer *peer, uint32_t seq);
void mrl_brk_forget_peer(struct mrl_ctx *ctx, struct mrl_peer *peer);
void mrl_brk_owner_answered(struct mrl_ctx *ctx, struct mrl_mr *mr);
uint64_t mrl_brk_next_timer(struct mrl_ctx *ctx);
void mrl_brk_free(struct mrl_ctx *ctx, struct mrl_file *f);
bool mrl_brk_begin_range(struct mrl_ctx *ctx, struct mrl_file *f, struct mrl_fan_ev *e);
void mrl_brk_finish(struct mrl_ctx *ctx, struct mrl_file *f);
bool mrl_brk_waiting_acks(struct mrl_ctx *ctx);
void mrl_brk_send_pauses(struct mrl_ctx *ctx, struct mrl_brk *b, struct mrl_mr **mrs, size_t n);
/* an fd to fstat the file with (the library's own, or a held event's), -1 if none */
int mrl_file_stat_fd(struct mrl_file *f);

/* fan.c: the fanotify pre-content watcher; ctx->lock held except init/fini */
int mrl_fan_init(struct mrl_ctx *ctx);
void mrl_fan_fini(struct mrl_ctx *ctx);
int mrl_fan_watch(struct mrl_ctx *ctx, struct mrl_file *f);
void mrl_fan_fd_opened(struct mrl_ctx *ctx, struct mrl_file *f);
void mrl_fan_unwatch(struct mrl_ctx *ctx, struct mrl_file *f);
void mrl_fan_on_close(struct mrl_ctx *ctx, struct mrl_file *f);
void mrl_fan_drain(struct mrl_ctx *ctx);
void mrl_fan_answer(struct mrl_ctx *ctx, struct mrl_fan_ev *e, int deny_errno);
void mrl_fan_ev_free(struct mrl_fan_ev *e);
void mrl_fan_check_landed(struct mrl_ctx *ctx, struct mrl_file *f);
void mrl_fan_landing_timeout(struct mrl_ctx *ctx, struct mrl_file *f);

/* interpose.c: the owner's munmap/mremap/madvise/mmap/shmdt */
void mrl_intp_count(long d);
extern _Atomic unsigned mrl_fork_gen;
int mrl_intp_add(struct mrl_ctx *ctx);
void mrl_intp_del(struct mrl_ctx *ctx);
bool mrl_intp_active(void);
void mrl_intp_grow(struct mrl_ctx *ctx, uintptr_t a, uintptr_t b);
/* mr.c: the mapping around addr, from /proc/self/maps (no context needed) */
int mrl_vma_range(uintptr_t addr, uintptr_t *start, uintptr_t *end);
int mrl_verify_locked(struct mrl_ctx *ctx);
/* ctx.c: install the fork watcher (pthread_atfork child handler bumping
 * mrl_fork_gen) once per process, whatever the context's flags. */
void mrl_fork_watch(void);
int mrl_child_err(const char *fn) __attribute__((cold));
/* Every public call taking a library object, first thing after its NULL
 * checks and before any lock: a forked child may not use its parent's
 * objects (their locks may be held for ever there by threads that do not
 * exist in the child; their connections and devices are the parent's).
 * Inequality, not order: one fork may bump the generation more than once
 * (ctx.c's handler and the interposer's). */
static inline bool mrl_forked(const struct mrl_ctx *ctx)
{
	return ctx->fork_gen != atomic_load_explicit(&mrl_fork_gen, memory_order_relaxed);
}
#define MRL_CHILD_CHECK(ctx, fn)                                                             \
	do {                                                                                 \
		if (unlikely(mrl_forked(ctx)))                                                \
			return mrl_child_err(fn);                                            \
	} while (0)
/* reg_uring.c: does fork give the child a copy of pinned private pages, so
 * the parent keeps the pinned ones (Linux 5.9+: early COW of FOLL_PIN'd
 * anonymous pages)? Probed once, on first use; false when it cannot tell. */
bool mrl_fork_copies_pinned(void);

/* uffd.c: the userfaultfd watcher */
struct uffd_msg;
int mrl_uffd_init(struct mrl_ctx *ctx);
void mrl_uffd_fini(struct mrl_ctx *ctx);
bool mrl_uffd_watch(struct mrl_ctx *ctx, struct mrl_mr *mr);
void mrl_uffd_unwatch(struct mrl_ctx *ctx, struct mrl_mr *mr);
int mrl_uffd_read(struct mrl_ctx *ctx, struct uffd_msg *msgs, int max);
void mrl_uffd_handle(struct mrl_ctx *ctx, const struct uffd_msg *msgs, int n);

/* monitor.c */
int mrl_monitor_start(struct mrl_ctx *ctx);
void mrl_monitor_stop(struct mrl_ctx *ctx);

/* ep.c: owner side hooks, ctx->lock held */
int mrl_ep_send_raw(struct mrl_peer *peer, const void *msg, size_t len);
void mrl_peer_release_holders(struct mrl_ctx *ctx, struct mrl_peer *peer);
/* monitor: drive progress on every endpoint not busy elsewhere (no lock held) */
void mrl_ep_progress_all(struct mrl_ctx *ctx);
/* tests: the send queue is full while RMA operations are in flight */
extern bool mrl_ep_test_full_txq;
/* tests: pause messages received, pause acks sent, pause acks received */
void mrl_ep_pause_counts(struct mrl_ep *ep, uint64_t *pauses_in, uint64_t *acks_out,
			 uint64_t *acks_in);

#endif
