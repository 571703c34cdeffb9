/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The state board: how hooked processes on one host tell each other the
 * state of their remotely accessible MRs without the application's help.
 * Each owner keeps a table in a sealed memfd (it can neither shrink nor
 * grow, so no reader ever meets SIGBUS) with one entry per MR: key, state,
 * the bytes still served, and a count of operations other hooked processes
 * have in flight to it. An initiator finds a key there at post time: it
 * counts its operation in, then reads the state (both sequentially
 * consistent, as the owner's pause writes the state and then reads the
 * count), so an owner that sees no operation in flight after pausing knows
 * every later one will see the pause and hold back.
 *
 * Finding boards: the owner leaves an empty marker board.PID.FD (mode 0600,
 * O_EXCL) in a sticky directory (/dev/shm/mrlease-fi, or
 * MRLEASE_FI_BOARD_DIR). A marker is only a hint: the reader opens the board
 * through /proc/PID/fd/FD, which the kernel lets only the owner's uid (or
 * root) do, and maps it only if it is a sealed regular file of the board's
 * size, owned by the reader's uid or root, carrying the magic and the pid
 * the marker names. So a local user of another uid can neither forge a
 * pause nor redirect an operation (their boards are never believed, and
 * ours are not theirs to open), and a board corrupted by its own uid can
 * make the reader hold or refuse but never read out of bounds: entry
 * counts are bounded here, and addresses are only compared (ep.c).
 * Keys alone repeat across owners (a provider's keys are small integers),
 * so an initiator finds the board by the destination's address, which the
 * owner writes on its board as each endpoint is enabled. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <rdma/fabric.h>
#include <rdma/fi_domain.h>

#include "board.h"
#include "hook.h"
#include "mrl_int.h"

#define BOARD_DIR "/dev/shm/mrlease-fi"

const char *board_dir(void)
{
	const char *d = getenv("MRLEASE_FI_BOARD_DIR");
	return d && *d ? d : BOARD_DIR;
}

/* The directory, opened (O_DIRECTORY, no symlink) and checked: ours or
 * root's, and sticky if others may write it (else another user could
 * replace our markers). create: make it (mode 01777) if missing. -1 and a
 * log line if it cannot be trusted. */
int board_dir_open(bool create)
{
	const char *dir = board_dir();
	bool made = create && mkdir(dir, 0700) == 0;
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -1;
	struct stat st;
	if (made)
		fchmod(fd, 01777); /* shared by every user's hooked processes, as /tmp */
	if (fstat(fd, &st) || !S_ISDIR(st.st_mode) || (st.st_uid != 0 && st.st_uid != geteuid()) ||
	    ((st.st_mode & 022) && !(st.st_mode & S_ISVTX))) {
		static atomic_bool said;
		if (!atomic_exchange(&said, true))
			hook_log("state board directory %s refused (owner uid %u, mode %o): it must be "
				 "ours or root's, and sticky if others may write it",
				 dir, (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777));
		close(fd);
		errno = EPERM;
		return -1;
	}
	return fd;
}

/* ---- the owner's board ---- */
static pthread_mutex_t own_lock = PTHREAD_MUTEX_INITIALIZER;
static struct board *own;
static pid_t own_pid;
static int own_fd = -1;
static char own_marker[64];
/* this process's endpoint addresses, kept for a board made later */
static struct {
	uint32_t len;
	uint8_t a[BOARD_NAME_MAX];
} own_names[BOARD_NAMES];
static unsigned own_nnames;
static pid_t names_pid;

/* (own_lock) name i onto the board: the bytes, then the length */
static void name_put(unsigned i)
{
	memcpy(own->names[i].a, own_names[i].a, own_names[i].len);
	atomic_store_explicit(&own->names[i].len, own_names[i].len, memory_order_release);
	if (i + 1 > atomic_load(&own->nnames))
		atomic_store(&own->nnames, i + 1);
}

void board_add_name(const void *name, size_t len)
{
	if (!len || len > BOARD_NAME_MAX) {
		hook_log("an endpoint address of %zu bytes: over %d, hooked peers on this host will not "
			 "find this process's board by it", len, BOARD_NAME_MAX);
		return;
	}
	mrl_lock(&own_lock);
	if (names_pid != getpid()) { /* a forked child: the parent's endpoints are the parent's */
		own_nnames = 0;
		names_pid = getpid();
	}
	bool have = false;
	for (unsigned i = 0; i < own_nnames && !have; i++)
		have = own_names[i].len == len && !memcmp(own_names[i].a, name, len);
	if (!have && own_nnames < BOARD_NAMES) {
		own_names[own_nnames].len = (uint32_t)len;
		memcpy(own_names[own_nnames].a, name, len);
		if (own && own_pid == getpid())
			name_put(own_nnames);
		own_nnames++;
	} else if (!have) {
		hook_log("over %d endpoints: hooked peers on this host will not find this process's "
			 "board by the later ones", BOARD_NAMES);
	}
	mrl_unlock(&own_lock);
}

static void own_unlink(void)
{
	if (*own_marker && own_pid == getpid()) {
		int d = board_dir_open(false);
		if (d >= 0) {
			unlinkat(d, own_marker, 0);
			close(d);
		}
	}
}

/* markers left by processes that died without removing theirs (the sticky
 * directory lets us remove only our uid's) */
static void reap_dead(int dfd)
{
	DIR *d = fdopendir(dup(dfd));
	if (!d)
		return;
	struct dirent *de;
	while ((de = readdir(d))) {
		int pid;
		if (sscanf(de->d_name, "board.%d", &pid) == 1 && pid > 0 && kill(pid, 0) && errno == ESRCH)
			unlinkat(dfd, de->d_name, 0);
	}
	closedir(d);
}

/* (own_lock) the sealed board and its marker; false (logged) if none */
static bool own_create(void)
{
	int dfd = board_dir_open(true);
	if (dfd < 0)
		goto fail;
	int fd = memfd_create("mrlease-board", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0 || ftruncate(fd, sizeof(struct board)) || fcntl(fd, F_ADD_SEALS, BOARD_SEALS)) {
		if (fd >= 0)
			close(fd);
		close(dfd);
		goto fail;
	}
	struct board *b = mmap(NULL, sizeof(*b), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (b == MAP_FAILED) {
		close(fd);
		close(dfd);
		goto fail;
	}
	b->pid = getpid();
	atomic_store(&b->magic, BOARD_MAGIC);
	/* the marker names the descriptor: if another user squats the name
	 * (it is predictable), move the descriptor and try another */
	int m = -1;
	for (int tries = 0; tries < 8 && m < 0; tries++) {
		snprintf(own_marker, sizeof(own_marker), "board.%d.%d", (int)getpid(), fd);
		m = openat(dfd, own_marker, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (m < 0 && errno == EEXIST && unlinkat(dfd, own_marker, 0) == 0)
			m = openat(dfd, own_marker, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (m < 0 && errno == EEXIST) {
			int fd2 = fcntl(fd, F_DUPFD_CLOEXEC, fd + 1);
			if (fd2 < 0)
				break;
			close(fd);
			fd = fd2;
		} else if (m < 0) {
			break;
		}
	}
	if (m < 0) {
		int e = errno;
		munmap(b, sizeof(*b));
		close(fd);
		close(dfd);
		*own_marker = 0;
		errno = e;
		goto fail;
	}
	close(m);
	reap_dead(dfd);
	close(dfd);
	own = b;
	own_fd = fd;
	own_pid = getpid();
	for (unsigned i = 0; names_pid == own_pid && i < own_nnames; i++)
		name_put(i);
	static atomic_bool registered;
	if (!atomic_exchange(&registered, true))
		atexit(own_unlink);
	return true;
fail:
	hook_log("no state board (%s: %s): hooked peers cannot hold their operations", board_dir(),
		 strerror(errno));
	return false;
}

struct board_ent *board_publish(uint64_t key, uint64_t base, uint64_t len, uint32_t tail)
{
	mrl_lock(&own_lock);
	if (own && own_pid != getpid()) { /* a forked child: the parent's board is the parent's */
		own = NULL;
		own_fd = -1;
		*own_marker = 0;
	}
	if (!own && !own_create()) {
		mrl_unlock(&own_lock);
		return NULL;
	}
	struct board_ent *e = NULL;
	for (unsigned i = 0; i < BOARD_ENTS && !e; i++)
		if (atomic_load(&own->ent[i].state) == BS_FREE)
			e = &own->ent[i];
	if (e) {
		e->base = base;
		e->len = len;
		e->tail = tail;
		atomic_store(&e->pkey, key);
		atomic_store(&e->valid, len);
		atomic_store(&e->inflight, 0);
		atomic_store(&e->key, key);
		atomic_store(&e->state, BS_ACTIVE);
		unsigned idx = (unsigned)(e - own->ent) + 1;
		if (idx > atomic_load(&own->used))
			atomic_store(&own->used, idx);
	}
	mrl_unlock(&own_lock);
	if (e)
		relay_start(); /* MRLEASE_FI_RELAY: remote initiators ask here */
	return e;
}

void board_retract(struct board_ent *e)
{
	if (!e)
		return;
	atomic_store(&e->state, BS_FENCED);
	atomic_store(&e->key, 0);
	atomic_store(&e->state, BS_FREE);
}

/* ---- the initiator's view: every board on the host it may trust ---- */
#define MAX_BOARDS 64
static pthread_mutex_t view_lock = PTHREAD_MUTEX_INITIALIZER;
static struct { pid_t pid; int fd; struct board *b; } boards[MAX_BOARDS];
static int nboards;
static uint64_t last_scan_ns;
static atomic_ullong refused_boards;

unsigned long long board_refused(void)
{
	return atomic_load(&refused_boards);
}

/* The board PID keeps at descriptor FD, mapped, or NULL if it is not one
 * this process may believe. */
struct board *board_open(int pid, int fd)
{
	char path[64];
	struct stat st, st2;
	snprintf(path, sizeof(path), "/proc/%d/fd/%d", pid, fd);
	/* what it is before opening it (a FIFO or device is never opened) */
	if (stat(path, &st) || !S_ISREG(st.st_mode) || (st.st_uid != 0 && st.st_uid != geteuid()) ||
	    (size_t)st.st_size != sizeof(struct board))
		return NULL;
	int f = open(path, O_RDWR | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (f < 0)
		return NULL;
	int seals = fcntl(f, F_GET_SEALS);
	struct board *b = MAP_FAILED;
	if (!fstat(f, &st2) && st2.st_dev == st.st_dev && st2.st_ino == st.st_ino &&
	    S_ISREG(st2.st_mode) && (size_t)st2.st_size == sizeof(struct board) &&
	    (st2.st_uid == 0 || st2.st_uid == geteuid()) && seals >= 0 &&
	    (seals & (F_SEAL_SHRINK | F_SEAL_SEAL)) == (F_SEAL_SHRINK | F_SEAL_SEAL))
		b = mmap(NULL, sizeof(*b), PROT_READ | PROT_WRITE, MAP_SHARED, f, 0);
	close(f);
	if (b == MAP_FAILED)
		return NULL;
	if (atomic_load(&b->magic) != BOARD_MAGIC || b->pid != pid) {
		munmap(b, sizeof(*b));
		return NULL;
	}
	return b;
}

/* A dead owner's board: its entries may still be named by operations in
 * flight (cq.c) or by the key cache, read without a lock; so its memory is
 * replaced by zeroes at the same address (no key matches) and kept. */
static void board_bury(struct board *b)
{
	void *p = mmap(b, sizeof(*b), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
		       -1, 0);
	(void)p;
}

/* (view_lock) map the boards of live processes not mapped yet; bury the dead */
static void rescan(void)
{
	for (int i = 0; i < nboards;) {
		if (kill(boards[i].pid, 0) && errno == ESRCH) {
			board_bury(boards[i].b);
			boards[i] = boards[--nboards];
		} else {
			i++;
		}
	}
	int dfd = board_dir_open(false);
	if (dfd < 0)
		return;
	DIR *d = fdopendir(dfd);
	if (!d) {
		close(dfd);
		return;
	}
	struct dirent *de;
	while ((de = readdir(d)) && nboards < MAX_BOARDS) {
		int pid, fd;
		if (sscanf(de->d_name, "board.%d.%d", &pid, &fd) != 2 || pid <= 0 || fd < 0)
			continue;
		bool have = false;
		for (int i = 0; i < nboards && !have; i++)
			have = boards[i].pid == pid && boards[i].fd == fd;
		if (have || (kill(pid, 0) && errno == ESRCH))
			continue;
		struct board *b = board_open(pid, fd);
		if (!b) {
			atomic_fetch_add_explicit(&refused_boards, 1, memory_order_relaxed);
			continue;
		}
		boards[nboards].pid = pid;
		boards[nboards].fd = fd;
		boards[nboards++].b = b;
	}
	closedir(d);
}

struct board_cache board_cache[BOARD_CACHE];

/* (view_lock) boards of live processes, looked for again at most every 50 ms */
static void view_fresh(void)
{
	uint64_t now = mrl_now_ns();
	if (now - last_scan_ns > 50000000ull) {
		rescan();
		last_scan_ns = now;
	}
}

/* (view_lock) the one live entry for key on b, or NULL; *hits counts them */
static struct board_ent *key_on(struct board *b, uint64_t key, int *hits)
{
	struct board_ent *found = NULL;
	unsigned used = atomic_load(&b->used); /* the board's word: bounded here */
	for (unsigned j = 0; j < used && j < BOARD_ENTS; j++)
		if (atomic_load(&b->ent[j].state) != BS_FREE && atomic_load(&b->ent[j].key) == key) {
			found = &b->ent[j];
			(*hits)++;
		}
	return found;
}

/* (view_lock) b names an endpoint at this address */
static bool names_addr(struct board *b, const uint8_t *a, size_t len)
{
	unsigned n = atomic_load(&b->nnames);
	for (unsigned i = 0; i < n && i < BOARD_NAMES; i++) /* the board's word: bounded */
		if (atomic_load_explicit(&b->names[i].len, memory_order_acquire) == len &&
		    !memcmp(b->names[i].a, a, len))
			return true;
	return false;
}

struct board_ent *board_find_slow(struct fid_av *av, uint64_t dest, uint64_t key)
{
	uint8_t a[BOARD_NAME_MAX + 8];
	size_t len = sizeof(a);
	if (!av || fi_av_lookup(av, dest, a, &len) || !len || len > BOARD_NAME_MAX)
		return NULL; /* not an address any board can name */
	struct board_ent *found = NULL;
	int hits = 0;
	mrl_lock(&view_lock);
	view_fresh();
	for (int i = 0; i < nboards; i++)
		if (names_addr(boards[i].b, a, len)) {
			struct board_ent *e = key_on(boards[i].b, key, &hits);
			found = e ? e : found;
		}
	mrl_unlock(&view_lock);
	if (hits != 1) /* no hooked owner there, or the key twice: cannot tell which */
		return NULL;
	struct board_cache *c = &board_cache[board_slot(av, dest, key)];
	atomic_store(&c->e, NULL);
	atomic_store_explicit(&c->key, key, memory_order_release);
	atomic_store_explicit(&c->dest, dest, memory_order_release);
	atomic_store_explicit(&c->av, av, memory_order_release);
	atomic_store_explicit(&c->e, found, memory_order_release);
	return found;
}

struct board_ent *board_find_key(uint64_t key)
{
	struct board_ent *found = NULL;
	int hits = 0;
	mrl_lock(&view_lock);
	view_fresh();
	for (int i = 0; i < nboards; i++) {
		struct board_ent *e = key_on(boards[i].b, key, &hits);
		found = e ? e : found;
	}
	mrl_unlock(&view_lock);
	return hits == 1 ? found : NULL;
}
