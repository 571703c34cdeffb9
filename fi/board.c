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
 * Across hosts this needs a carrier (later work): a key found on no board
 * is posted as it is. */
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

struct board_ent *board_find_slow(uint64_t key)
{
	unsigned s = board_slot(key);
	struct board_cache *cache = board_cache;
	/* a miss: look on every board; look for new boards at most every 50 ms */
	mrl_lock(&view_lock);
	uint64_t now = mrl_now_ns();
	if (now - last_scan_ns > 50000000ull) {
		rescan();
		last_scan_ns = now;
	}
	struct board_ent *found = NULL;
	int hits = 0;
	for (int i = 0; i < nboards; i++) {
		struct board *b = boards[i].b;
		unsigned used = atomic_load(&b->used); /* the board's word: bounded here */
		for (unsigned j = 0; j < used && j < BOARD_ENTS; j++)
			if (atomic_load(&b->ent[j].state) != BS_FREE && atomic_load(&b->ent[j].key) == key) {
				found = &b->ent[j];
				hits++;
			}
	}
	mrl_unlock(&view_lock);
	if (hits != 1) /* nowhere, or the same key on two owners: cannot tell which */
		return NULL;
	atomic_store(&cache[s].e, NULL);
	atomic_store(&cache[s].key, key);
	atomic_store_explicit(&cache[s].e, found, memory_order_release);
	return found;
}
