/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* mrlease: leases for long-term memory registrations (RDMA MRs, pinned buffers).
 * The one installed header. Every call returns 0 (or a count) or -errno. */
#ifndef MRLEASE_H
#define MRLEASE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MRL_VERSION_MAJOR 0
#define MRL_VERSION_MINOR 1

typedef struct mrl_ctx mrl_ctx;
typedef struct mrl_ep mrl_ep;
typedef struct mrl_peer mrl_peer;
typedef struct mrl_rmr mrl_rmr;

/* A local MR is named by a 64-bit handle, never a pointer: a stale or
 * doubly-deregistered handle is detected (-ESTALE) instead of touching freed
 * memory. The same value is the MR's id on the wire. 0 is never valid. */
typedef uint64_t mrl_mr_t;

/* ------------------------------------------------------------------ */
/* Enumerations                                                        */

enum mrl_policy {
	MRL_POLICY_RESTORE = 0, /* default: pause peers, let the change land, re-register, resume */
	MRL_POLICY_NOTIFY = 1,  /* owner answers with mrl_mr_restore()/mrl_mr_release() before the deadline */
	MRL_POLICY_FENCE = 2,   /* revoke device access at once */
	MRL_POLICY_DENY = 3,    /* refuse the change with deny_errno (needs a watcher that can:
	                           fanotify pre-content events), or, on a memfd made with
	                           MFD_ALLOW_SEALING, seals: F_SEAL_SHRINK|F_SEAL_GROW|
	                           F_SEAL_FUTURE_WRITE are added at registration. Seals are
	                           PERMANENT (they outlive the MR, the context and the process)
	                           and refuse everyone, the owner included (EPERM, whatever
	                           deny_errno says); existing writable mappings keep working.
	                           -EOPNOTSUPP at registration where neither can */
	MRL_POLICY_REDIRECT = 4, /* on a break of the backing file, point the device (same key) at
	                           zeroed scratch of the MR's length: the change lands, the device's
	                           writes are discarded and its reads see zeros, never an error;
	                           MRL_EVENT_REDIRECTED says so. mrl_mr_restore() moves it back onto
	                           the file, same key. Changes to the address space (munmap, madvise)
	                           are resolved as under RESTORE. -EOPNOTSUPP at registration where
	                           the device cannot (libfabric providers with FI_MR_PROV_KEY or
	                           FI_MR_VIRT_ADDR) */
};

enum mrl_state {
	MRL_STATE_ACTIVE = 1,
	MRL_STATE_PAUSED = 2,      /* a break is being resolved; peers hold their operations */
	MRL_STATE_FENCED = 3,      /* device access revoked; cause recorded */
	MRL_STATE_DEREGISTERED = 4,
};

enum mrl_cause {
	MRL_CAUSE_NONE = 0,
	MRL_CAUSE_OPEN_READ,    /* another opener wants to read the file */
	MRL_CAUSE_OPEN_WRITE,   /* another opener wants to write or truncate the file */
	MRL_CAUSE_TRUNCATED,    /* the range lies past the file's new end */
	MRL_CAUSE_MODIFIED,     /* the file changed while no lease was held (seen after) */
	MRL_CAUSE_UNMAPPED,
	MRL_CAUSE_MOVED,
	MRL_CAUSE_DEADLINE,     /* the break was not resolved by its deadline */
	MRL_CAUSE_PEER_TIMEOUT, /* this peer did not answer a pause in time */
	MRL_CAUSE_RELEASED,     /* the owner released the MR in answer to a break */
	MRL_CAUSE_OWNER,        /* the owner fenced it (mrl_mr_fence) */
	MRL_CAUSE_DEREGISTERED, /* the owner deregistered it */
	MRL_CAUSE_DISCONNECTED, /* the connection to the owner is gone */
	MRL_CAUSE_PUNCH_HOLE,   /* fallocate(PUNCH_HOLE) over the range */
	MRL_CAUSE_ZERO_RANGE,   /* fallocate(ZERO_RANGE) over the range */
	MRL_CAUSE_COLLAPSE_RANGE, /* fallocate(COLLAPSE_RANGE) at or before the range */
	MRL_CAUSE_INSERT_RANGE, /* fallocate(INSERT_RANGE) at or before the range */
	MRL_CAUSE_LAYOUT,       /* a layout change the watcher could not classify further */
	MRL_CAUSE_MADVISED,     /* madvise(DONTNEED/REMOVE/FREE): same object, new pages */
	MRL_CAUSE_REPLACED,     /* mmap(MAP_FIXED) or shmat over the range: a different object */
	MRL_CAUSE_REPLACED_FILE, /* the file's path now names another file (rename over it, sed -i);
	                            the MR still serves the old, now nameless, file */
	MRL_CAUSE_UNLINKED,     /* the file's last name was removed (rm); the MR still serves it */
	MRL_CAUSE_PEER_LOST,    /* nothing heard from the other side for mrl_ep_opts.ka_timeout_ms
	                           (network cut, process stopped or hung); on a peer: the owner's MRs */
	MRL_CAUSE_MAX
};

enum mrl_event_type {
	MRL_EVENT_BREAK = 1,     /* a change is about to land; for NOTIFY, answer before deadline */
	MRL_EVENT_RESTORED,      /* re-registered on the current pages, same key unless noted */
	MRL_EVENT_FENCED,        /* all or part (offset/length) of the MR was fenced */
	MRL_EVENT_LEASE_LOST,    /* the lease covering this MR is no longer held */
	MRL_EVENT_LEASE_HELD,    /* the lease covering this MR is held again */
	MRL_EVENT_CHANGED,       /* a change was seen after it landed */
	MRL_EVENT_DENIED,        /* a change was refused under MRL_POLICY_DENY; nothing changed */
	/* a peer of one of the context's endpoints is gone: mr is 0 and
	 * mr_context its mrl_peer handle; cause MRL_CAUSE_PEER_LOST (the
	 * keep-alive heard nothing for ka_timeout_ms) or MRL_CAUSE_DISCONNECTED
	 * (its connection hung up); time_ns when that was found. Its
	 * operations have failed and an owner has let go of its holds. Once
	 * per peer; none for the peers of an endpoint being destroyed. */
	MRL_EVENT_PEER_LOST,
	MRL_EVENT_REDIRECTED,    /* MRL_POLICY_REDIRECT: the change landed and the device, same key,
	                            points at scratch (writes discarded, reads zeros) until
	                            mrl_mr_restore(); cause, offset and length: the break's */
};

/* Memory kinds, as found by the library from the address alone. */
enum mrl_kind {
	MRL_KIND_ANON = 1,  /* private anonymous */
	MRL_KIND_SHMEM,     /* shared anonymous, SysV shm */
	MRL_KIND_MEMFD,
	MRL_KIND_TMPFS,     /* regular file on tmpfs */
	MRL_KIND_FILE,      /* regular file on a disk filesystem (ext4, xfs, ...) */
};

/* The changes coverage is reported for. "Other" = another process. */
enum mrl_change {
	MRL_CHG_OTHER_OPEN_READ = 0,
	MRL_CHG_OTHER_OPEN_WRITE,
	MRL_CHG_OTHER_TRUNCATE,
	MRL_CHG_OTHER_LAYOUT,   /* punch, zero, collapse, insert range */
	MRL_CHG_OTHER_WRITE,
	MRL_CHG_OWNER_TRUNCATE, /* the owning process, through an fd of its own */
	MRL_CHG_OWNER_LAYOUT,
	MRL_CHG_OWNER_MUNMAP,
	MRL_CHG_OWNER_MREMAP,
	MRL_CHG_OWNER_MADVISE,
	MRL_CHG_OWNER_OPEN,     /* the owning process opens the file again */
	MRL_CHG_OWNER_WRITE,    /* the owning process write(2)s the file */
	MRL_CHG_OWNER_MAP_FIXED, /* mmap(MAP_FIXED)/shmat over the range */
	MRL_CHG_OTHER_OPEN_TRUNC, /* open(O_TRUNC): `: > FILE`, cp OTHER FILE */
	MRL_CHG_OTHER_RENAME,   /* a rename over the file's path: mv OTHER FILE, sed -i */
	MRL_CHG_OTHER_UNLINK,   /* the file's name removed: rm FILE */
	MRL_CHG_MAX
};

enum mrl_seen {
	MRL_SEEN_NEVER = 0,
	MRL_SEEN_AFTER = 1,   /* noticed once it has landed */
	MRL_SEEN_BEFORE = 2,  /* the actor waits until the library lets it land */
	MRL_SEEN_NA = 3,      /* cannot happen to this kind of memory */
};

/* Remote access rights of an MR. */
#define MRL_ACCESS_REMOTE_READ  0x1u
#define MRL_ACCESS_REMOTE_WRITE 0x2u

/* ------------------------------------------------------------------ */
/* Context                                                             */

/* Option structs begin with their own size so they can grow. */
struct mrl_ctx_opts {
	size_t size;               /* sizeof(struct mrl_ctx_opts) */
	const char *provider;      /* libfabric provider, default "tcp;ofi_rxm"; "mock" = no device;
	                              "uring" = io_uring fixed buffers (mrl_uring_attach) */
	const char *addr;          /* local fabric address (interface), default "127.0.0.1" */
	unsigned deadline_ms;      /* default break deadline, default 2000 (well under lease-break-time) */
	unsigned relock_ms;        /* after a break, retake the lease after this long if nobody opened, default 50 */
	int signo;                 /* realtime signal used for lease breaks, default SIGRTMIN+4 */
	unsigned flags;            /* MRL_CTX_* */
	unsigned verify_ms;        /* run mrl_verify every this many ms in the monitor; 0 = on demand only */
};
#define MRL_CTX_NO_LEASES 0x1u     /* register without any watcher (shows what leases prevent) */
#define MRL_CTX_NO_FANOTIFY 0x2u   /* do not use fanotify pre-content events (leases only) */
/* do not catch the process's own SIGBUS on a file MR's pages past the file's
 * end (a truncate seen only after it landed); see MRL_WATCH_SIGBUS */
#define MRL_CTX_NO_SIGBUS 0x4u
/* Hold the owner's own ftruncate, fallocate (punch/zero/collapse/insert),
 * madvise/process_madvise (DONTNEED, FREE, REMOVE), munmap and mremap --
 * raw syscall(2)s included -- before they land, with a seccomp
 * user-notification filter (MRL_WATCH_SECCOMP). Opt-in, because a filter is
 * for ever: it stays after mrl_ctx_destroy, covers the thread that creates
 * the context and every thread and process it starts afterwards (fork and
 * exec inherit it; threads started before are not covered), costs every
 * matching call of the process and its descendants a round trip to a
 * supervisor thread, and makes a descendant's matching calls fail ENOSYS
 * once this process has exited. Without CAP_SYS_ADMIN it sets no_new_privs.
 * See mrl_ctx_create(3). */
#define MRL_CTX_SECCOMP 0x40u

/* Watchers, as a bit mask (mrl_ctx_watchers, mrl_mr_info.watchers). */
#define MRL_WATCH_LEASE      0x01u /* fcntl lease on the backing file */
#define MRL_WATCH_FANOTIFY   0x02u /* fanotify pre-content events, byte-range precise */
#define MRL_WATCH_INOTIFY    0x04u /* inotify: changes seen after they land */
#define MRL_WATCH_UFFD       0x08u /* userfaultfd non-cooperative events */
#define MRL_WATCH_INTERPOSE  0x10u /* interposed libc calls of the owner */
#define MRL_WATCH_VERIFY     0x20u /* verify: backing compared with what was registered */
/* A SIGBUS handler (process-wide while a context runs it; others' faults go
 * to the handler that was there before): a store by this process (a
 * transport copying a peer's write) into a file MR's pages past the file's
 * end lands in a scratch page instead of killing the process, and the MR is
 * fenced from that page (FENCED, cause truncated). */
#define MRL_WATCH_SIGBUS     0x40u
#define MRL_WATCH_MEMFD      0x80u /* lease on a /proc/self/fd reopen of a memfd or shmem object */
#define MRL_WATCH_SECCOMP    0x100u /* the owner's system calls held by seccomp (MRL_CTX_SECCOMP) */
/* Detected only: the kernel has fcntl delegations (F_SETDELEG, Linux 6.19+;
 * a lease that metadata changes break too). In mrl_ctx_watchers where the
 * kernel has them; no MR is watched by it and no coverage cell comes from
 * it (not used yet). */
#define MRL_WATCH_DELEG      0x200u

int mrl_ctx_create(const struct mrl_ctx_opts *opts, mrl_ctx **out);
int mrl_ctx_destroy(mrl_ctx *ctx);

/* The watchers this context can run on this machine (MRL_WATCH_* mask). */
int mrl_ctx_watchers(mrl_ctx *ctx);
const char *mrl_watcher_str(unsigned bit);

/* Non-blocking fd, readable while events are queued. */
int mrl_event_fd(mrl_ctx *ctx);

struct mrl_event {
	uint32_t type;          /* enum mrl_event_type */
	uint32_t cause;         /* enum mrl_cause */
	mrl_mr_t mr;
	void *mr_context;       /* the context given at registration */
	uint64_t offset;        /* byte range within the MR */
	uint64_t length;
	pid_t pid;              /* the actor, 0 when unknown (found for NOTIFY MRs only:
	                           the lookup holds the breaker ~10 ms longer) */
	uint32_t generation;    /* MR generation after the event */
	uint64_t deadline_ns;   /* CLOCK_MONOTONIC; 0 when nothing is awaited */
	uint64_t time_ns;       /* CLOCK_MONOTONIC when the break was seen */
	uint64_t internal;      /* the event's sequence number in its context, for
	                           mrl_event_ack (never a pointer) */
};

/* -EAGAIN when none is queued. Every event got must be acked; an MR's
 * memory is not freed while an event naming it is unacked.
 * An ack is matched by value (mr and internal) against the events got and
 * not yet acked on ctx: a copy is the same event, so it can be acked once.
 * Acking again, or an event altered, made up or got on another context,
 * gives -EINVAL and changes nothing. */
int mrl_event_get(mrl_ctx *ctx, struct mrl_event *ev);
int mrl_event_ack(mrl_ctx *ctx, struct mrl_event *ev);

/* ------------------------------------------------------------------ */
/* Files mapped through the library (MAP_DIRECT-style)                 */

/* Open and map [offset, offset+len) of path MAP_SHARED through a file
 * description only the library holds, so a lease can be taken on it.
 * The file must already cover the range. Unmap with mrl_file_unmap. */
int mrl_file_map(mrl_ctx *ctx, const char *path, uint64_t offset, size_t len,
		 int prot, void **addr);
int mrl_file_unmap(mrl_ctx *ctx, void *addr, size_t len);

/* Hand over the fd an application mapped a file with. The library owns it
 * from now on (closes it at mrl_ctx_destroy). A lease is possible only if
 * no other open file description of the file exists. */
int mrl_file_adopt(mrl_ctx *ctx, int fd);

/* ------------------------------------------------------------------ */
/* Registration                                                        */

struct mrl_reg_opts {
	size_t size;              /* sizeof(struct mrl_reg_opts) */
	uint32_t policy;          /* enum mrl_policy */
	unsigned deadline_ms;     /* 0 = the context default */
	void *context;            /* returned in events */
	int deny_errno;           /* MRL_POLICY_DENY: errno the actor gets, default EBUSY;
	                             one of EBUSY, ETXTBSY, EPERM, EAGAIN, EIO, ENOSPC, EDQUOT */
};

/* Data written by others is shared memory. Bytes another process writes
 * into a file an MR serves (write, pwrite, dd conv=notrunc, stores through
 * its own mapping, copy_file_range, splice, a write into a hole or past the
 * end) are what the peers read next: no new generation, no MRL_EVENT_CHANGED,
 * no fence, no failed transfer, under every watcher that can tell a write
 * from a layout change. fanotify tells by the writer's call: no pause, no
 * event. The lease sees the open, not the write: the file's MRs pause while
 * the writer has it open (MRL_EVENT_BREAK then MRL_EVENT_RESTORED, cause
 * open-write; peers' operations wait, none fails) and resume under the same
 * generation when the file's layout shows only data changed. A layout change
 * (truncate, punch, zero, collapse, insert, reflink) always brings a new
 * generation or a fence. Where no watcher can tell (inotify alone: an opener
 * older than the lease or mark, the owner's own fd; a writer let in by the
 * guardian past the deadline) the write is announced as a change: safe,
 * never silent. O_DIRECT writes bypass the page cache: a device pinning the
 * cached pages may keep serving their old bytes, unannounced. */
int mrl_mr_reg(mrl_ctx *ctx, void *addr, size_t len, unsigned access,
	       const struct mrl_reg_opts *opts, mrl_mr_t *out);
/* Peers holding mr drain it first (see mrl_write): may wait up to its
 * deadline for a peer nobody progresses. */
int mrl_mr_dereg(mrl_ctx *ctx, mrl_mr_t mr);

/* Answers to a break under MRL_POLICY_NOTIFY (also allowed for others). */
int mrl_mr_restore(mrl_ctx *ctx, mrl_mr_t mr);
int mrl_mr_release(mrl_ctx *ctx, mrl_mr_t mr);
/* Fence now, for the owner's own reasons. */
int mrl_mr_fence(mrl_ctx *ctx, mrl_mr_t mr);

struct mrl_mr_info {
	size_t size;              /* sizeof(struct mrl_mr_info), set by caller */
	uint32_t state;           /* enum mrl_state */
	uint32_t generation;
	uint32_t policy;
	uint32_t kind;            /* enum mrl_kind */
	uint32_t cause;           /* last cause, enum mrl_cause */
	pid_t cause_pid;
	uint64_t cause_offset, cause_length;
	void *addr;
	uint64_t length;
	uint64_t valid_length;    /* bytes from the start still served; the rest fenced */
	uint64_t key;
	uint64_t file_offset;
	uint64_t dev, ino;
	int lease_held;           /* 1 if a lease covers the backing file now */
	uint32_t breaks, restores, fences;
	uint8_t coverage[MRL_CHG_MAX]; /* enum mrl_seen per enum mrl_change */
	uint32_t watchers;        /* MRL_WATCH_* watching this MR now */
	uint32_t denials;         /* changes refused under MRL_POLICY_DENY */
	int deny_errno;
	int redirected;           /* MRL_POLICY_REDIRECT: 1 while the device points at scratch */
};
int mrl_mr_query(mrl_ctx *ctx, mrl_mr_t mr, struct mrl_mr_info *info);

/* Compare every MR's current backing (mapped? same object and offset?)
 * with what was registered; fence what changed, reported as seen after
 * (MRL_EVENT_CHANGED, then MRL_EVENT_FENCED, cause unmapped or replaced).
 * Catches what the interposer cannot see: raw system calls. flags: 0.
 * Returns the number of MRs fenced. */
int mrl_verify(mrl_ctx *ctx, unsigned flags);

/* Counters of the whole context. */
struct mrl_stats {
	size_t size;
	uint64_t mrs, breaks, pauses, restores, fences, events_dropped, peer_timeouts;
	uint64_t lease_breaks, lease_retakes;
	/* time a breaking process was held (break seen -> lease released),
	 * over the last 4096 breaks */
	uint64_t pause_ns_p50, pause_ns_p99, pause_ns_max;
	/* fanotify pre-content events: all, let through at once because they
	 * touch no MR's range, let through after classification as plain
	 * reads/writes, layout changes (paused or denied), refused */
	uint64_t fan_events, fan_pass_range, fan_pass_data, fan_layout, denials;
	uint64_t classify_ns_total, classify_count; /* cost of telling a layout change apart */
	uint64_t fan_opens;       /* opens of watched files seen (and let through) */
	uint64_t bad_msgs;        /* malformed control messages dropped */
	uint64_t uffd_events;     /* userfaultfd events that named an MR (raw syscalls included) */
	uint64_t sigbus_caught;   /* stores past a file's end caught (MRL_WATCH_SIGBUS) */
	uint64_t redirects;       /* MRs moved onto scratch under MRL_POLICY_REDIRECT */
};
int mrl_ctx_stats(mrl_ctx *ctx, struct mrl_stats *st);

/* ------------------------------------------------------------------ */
/* Data path over libfabric RDM endpoints                              */

struct mrl_ep_opts {
	size_t size;
	unsigned flags;          /* MRL_EP_* */
	/* Keep-alive on the control channel (read only when size covers both):
	 * a side that has heard nothing from a peer for ka_ms asks it for a
	 * sign of life; after ka_timeout_ms of silence the peer is lost: its
	 * operations in flight or held complete with -ENOTCONN and
	 * MRL_CAUSE_PEER_LOST, its remote MRs are fenced with that cause, an
	 * owner lets go of the peer's holds, and the context queues an
	 * MRL_EVENT_PEER_LOST event naming the peer. Any message counts as life; the
	 * check runs in progress (the caller's, the progress thread's, and the
	 * monitor's while a break waits), so a manual-progress side must call
	 * progress more often than the other side's ka_timeout_ms.
	 * 0 = default (1000 and 5000 ms); MRL_EP_KA_OFF in ka_ms = no keep-alive. */
	unsigned ka_ms;
	unsigned ka_timeout_ms;
	/* Authentication (read only when size covers both): the secret both
	 * sides of a connection share, MRL_SECRET_MIN..256 bytes. Each side
	 * proves it knows it at the bootstrap handshake (challenge-response,
	 * HMAC-SHA256; the secret never crosses the wire) before any MR id or
	 * key is told, and every control message after carries a tag under a
	 * key of that connection. NULL: $MRLEASE_SECRET_FILE (a file only its
	 * owner may read), else $MRLEASE_SECRET; no secret at all makes
	 * mrl_ep_create fail with -EACCES unless flags has MRL_EP_INSECURE. */
	const void *secret;
	size_t secret_len;
};
#define MRL_SECRET_MIN 16
#define MRL_EP_AUTO_PROGRESS 0x1u  /* a thread of the library drives progress */
/* No secret: anyone who reaches the endpoint may connect and use its MRs.
 * Messages are still bound to their connection (by its nonces). */
#define MRL_EP_INSECURE 0x2u
/* Same-host peers proven by the kernel: the bootstrap is a Unix-domain
 * socket ("unix:PATH" for mrl_ep_listen and mrl_ep_connect; the socket file
 * is made mode 0600) and each side checks the other's uid (SO_PEERCRED): an
 * owner accepts only its own effective uid and root, a connector only an
 * owner of its own uid or root. No secret is needed (one given is still
 * proven as well); the per-connection keys come from nonces that crossed
 * only that socket. A TCP bootstrap with this flag is refused (-EINVAL). */
#define MRL_EP_PEERCRED 0x4u
#define MRL_EP_KA_OFF 0xffffffffu  /* mrl_ep_opts.ka_ms: no keep-alive (the bootstrap socket's hang-up only) */

int mrl_ep_create(mrl_ctx *ctx, const struct mrl_ep_opts *opts, mrl_ep **out);
int mrl_ep_destroy(mrl_ep *ep);

/* Bootstrap over TCP: exchange fabric addresses. port 0 picks one. */
int mrl_ep_listen(mrl_ep *ep, const char *host, uint16_t port, uint16_t *bound_port);
int mrl_ep_accept(mrl_ep *ep, int timeout_ms, mrl_peer **out);
int mrl_ep_connect(mrl_ep *ep, const char *host, uint16_t port, int timeout_ms, mrl_peer **out);

/* Ids of the MRs the peer exports (all its remotely accessible MRs). */
int mrl_peer_list(mrl_peer *peer, mrl_mr_t *ids, size_t max, int timeout_ms);

/* Remote MR handle; its state is kept current by the owner's messages. */
int mrl_rmr_open(mrl_peer *peer, mrl_mr_t id, int timeout_ms, mrl_rmr **out);
int mrl_rmr_close(mrl_rmr *rmr);

struct mrl_rmr_info {
	size_t size;
	uint32_t state;           /* enum mrl_state */
	uint32_t generation;      /* bumps when the MR's pages may have changed under it
	                             (a layout change, seen before or after it landed);
	                             never for data written by others (see mrl_mr_reg) */
	uint32_t cause;
	uint64_t length, valid_length, key;
	uint64_t held, inflight;  /* operations now held by a pause / posted */
	uint32_t flags;           /* MRL_RMR_SEEN_AFTER (filled when size covers it) */
};
/* Fenced for a change the owner saw only after it landed: an operation that
 * completed successfully before the peer heard of it may not have reached
 * the memory (see mrl_write). Without it, a fence seen before its change
 * was drained: a success means the bytes arrived first. */
#define MRL_RMR_SEEN_AFTER 0x1u
int mrl_rmr_query(mrl_rmr *rmr, struct mrl_rmr_info *info);

/* One-sided operations; complete through mrl_ep_poll. An operation to a
 * paused MR is held and posted on resume; to a fenced range it completes
 * with status -EKEYREVOKED and the cause.
 * The guarantee: for an MR fenced before its change landed (an interposed
 * munmap/mremap/mmap(MAP_FIXED), a MRL_POLICY_FENCE MR's break,
 * mrl_mr_fence, mrl_mr_release, mrl_mr_dereg), a completion the peer
 * reports with status 0 means the bytes reached the memory before the
 * change: the owner's device lets go only once every holder has drained
 * the MR (refused new operations, seen those in flight complete, acked),
 * or, silent past the MR's deadline, was cut off (its notice goes out
 * before the key moves: what completes after it is -EKEYREVOKED, cause
 * peer-timeout).
 * For a change seen only after it landed (coverage MRL_SEEN_AFTER) no such
 * promise: an operation that completed before the peer heard of it may have
 * reached memory no longer the MR's (README, "What a peer can know"). */
int mrl_write(mrl_rmr *rmr, uint64_t offset, const void *buf, size_t len, void *op_context);
int mrl_read(mrl_rmr *rmr, uint64_t offset, void *buf, size_t len, void *op_context);

struct mrl_completion {
	void *op_context;
	int status;               /* 0 or -errno */
	uint32_t cause;           /* enum mrl_cause when status != 0 */
	uint32_t generation;      /* remote MR generation the operation ran under */
	uint32_t pad;
};
/* Drive progress and return up to n completions (0 if none). */
int mrl_ep_poll(mrl_ep *ep, struct mrl_completion *c, int n);
/* Drive progress only. */
int mrl_ep_progress(mrl_ep *ep);

/* ------------------------------------------------------------------ */
/* io_uring fixed buffers: a registrar that pins (provider "uring")     */

/* With mrl_ctx_opts.provider = "uring", an MR is a fixed buffer of the
 * application's own ring: mrlease owns the ring's buffer table (made
 * sparse, slots nr) and nothing else. Attach before the first mrl_mr_reg;
 * the ring must have no buffer table yet and must outlive the context (or
 * mrl_uring_detach, which needs every MR deregistered).
 * Kinds the kernel lets you pin: anonymous, shmem/memfd, tmpfs files,
 * hugetlbfs. A MAP_SHARED mapping of an ext4/xfs/btrfs file is refused
 * (-EFAULT, the message names the filesystem). */
struct io_uring;
int mrl_uring_attach(mrl_ctx *ctx, struct io_uring *ring, unsigned nr);
int mrl_uring_detach(mrl_ctx *ctx);

/* Bracket every fixed-buffer operation on an MR: get before submitting
 * (gives the buffer index to put in the SQE), put once its completion is
 * reaped. While a break is resolved the MR is paused: get waits up to
 * timeout_ms (-1 = no limit, 0 = not at all) and then says -EAGAIN; the
 * change lands only after every got operation is put, so nothing reaches
 * the old pages. A fenced MR gives -EKEYREVOKED (mrl_mr_query says why);
 * its slot is empty, so a READ_FIXED that skipped get fails in the kernel. */
int mrl_uring_get(mrl_ctx *ctx, mrl_mr_t mr, int timeout_ms, unsigned *buf_index);
/* The same, also giving the address the slot registers now, to put in the
 * SQE (base + offset): the MR's own address, or its scratch while it is
 * redirected (MRL_POLICY_REDIRECT; the kernel checks SQE addresses against
 * the slot). Needed by an application whose MRs may be redirected. */
int mrl_uring_get_buf(mrl_ctx *ctx, mrl_mr_t mr, int timeout_ms, unsigned *buf_index,
		      void **base);
int mrl_uring_put(mrl_ctx *ctx, mrl_mr_t mr);

/* ------------------------------------------------------------------ */
/* Names                                                               */

const char *mrl_cause_str(unsigned cause);
const char *mrl_state_str(unsigned state);
const char *mrl_kind_str(unsigned kind);
const char *mrl_change_str(unsigned change);
const char *mrl_seen_str(unsigned seen);
const char *mrl_event_str(unsigned type);
/* strerror for -errno values, with the library's meaning where it has one. */
const char *mrl_strerror(int err);
/* The last error message of the calling thread, "" if none. */
const char *mrl_last_error(void);

#ifdef __cplusplus
}
#endif
#endif
