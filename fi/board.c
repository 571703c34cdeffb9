/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The state board: how hooked processes on one host tell each other the
 * state of their remotely accessible MRs without the application's help.
 * Each owner publishes a shared-memory table (/dev/shm/mrlease-fi/board.PID)
 * with one entry per MR: key, state, the bytes still served, and a count of
 * operations other hooked processes have in flight to it. An initiator finds
 * a key there at post time: it counts its operation in, then reads the
 * state (both sequentially consistent, as the owner's pause writes the state
 * and then reads the count), so an owner that sees no operation in flight
 * after pausing knows every later one will see the pause and hold back.
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
#define BOARD_MAGIC 0x6d726c6662643031ull /* "mrlfbd01" */

/* ---- the owner's board ---- */
static pthread_mutex_t own_lock = PTHREAD_MUTEX_INITIALIZER;
static struct board *own;
static char own_path[64];

static void own_unlink(void)
{
	if (*own_path)
		unlink(own_path);
}

static struct board *map_board(const char *path, bool create)
{
	int fd = open(path, create ? O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC : O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0)
		return NULL;
	if (create && ftruncate(fd, sizeof(struct board))) {
		close(fd);
		return NULL;
	}
	struct stat st;
	if (fstat(fd, &st) || (size_t)st.st_size < sizeof(struct board)) {
		close(fd);
		return NULL;
	}
	struct board *b = mmap(NULL, sizeof(*b), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	return b == MAP_FAILED ? NULL : b;
}

/* boards left by processes that died without unlinking theirs */
static void reap_dead(void)
{
	DIR *d = opendir(BOARD_DIR);
	if (!d)
		return;
	struct dirent *de;
	while ((de = readdir(d))) {
		int pid;
		char path[300];
		if (sscanf(de->d_name, "board.%d", &pid) == 1 && kill(pid, 0) && errno == ESRCH) {
			snprintf(path, sizeof(path), BOARD_DIR "/%s", de->d_name);
			unlink(path);
		}
	}
	closedir(d);
}

struct board_ent *board_publish(uint64_t key, uint64_t base, uint64_t len)
{
	mrl_lock(&own_lock);
	if (!own) {
		mkdir(BOARD_DIR, 01777);
		snprintf(own_path, sizeof(own_path), BOARD_DIR "/board.%d", (int)getpid());
		own = map_board(own_path, true);
		if (!own) {
			hook_log("no state board (%s: %s): hooked peers cannot hold their operations",
				 own_path, strerror(errno));
			*own_path = 0;
			mrl_unlock(&own_lock);
			return NULL;
		}
		own->pid = getpid();
		atomic_store(&own->magic, BOARD_MAGIC);
		atexit(own_unlink);
		reap_dead();
	}
	struct board_ent *e = NULL;
	for (unsigned i = 0; i < BOARD_ENTS && !e; i++)
		if (atomic_load(&own->ent[i].state) == BS_FREE)
			e = &own->ent[i];
	if (e) {
		e->base = base;
		e->len = len;
		atomic_store(&e->valid, len);
		atomic_store(&e->inflight, 0);
		atomic_store(&e->key, key);
		atomic_store(&e->state, BS_ACTIVE);
		unsigned idx = (unsigned)(e - own->ent) + 1;
		if (idx > atomic_load(&own->used))
			atomic_store(&own->used, idx);
	}
	mrl_unlock(&own_lock);
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

/* ---- the initiator's view: every board on the host ---- */
#define MAX_BOARDS 64
static pthread_mutex_t view_lock = PTHREAD_MUTEX_INITIALIZER;
static struct { pid_t pid; struct board *b; } boards[MAX_BOARDS];
static int nboards;
static uint64_t last_scan_ns;

/* (view_lock) map the boards of live processes not mapped yet; unmap the dead */
static void rescan(void)
{
	for (int i = 0; i < nboards;) {
		if (kill(boards[i].pid, 0) && errno == ESRCH) {
			munmap(boards[i].b, sizeof(struct board));
			boards[i] = boards[--nboards];
		} else {
			i++;
		}
	}
	DIR *d = opendir(BOARD_DIR);
	if (!d)
		return;
	struct dirent *de;
	while ((de = readdir(d)) && nboards < MAX_BOARDS) {
		int pid;
		if (sscanf(de->d_name, "board.%d", &pid) != 1)
			continue;
		bool have = false;
		for (int i = 0; i < nboards && !have; i++)
			have = boards[i].pid == pid;
		if (have || (kill(pid, 0) && errno == ESRCH))
			continue;
		char path[300];
		snprintf(path, sizeof(path), BOARD_DIR "/%s", de->d_name);
		struct board *b = map_board(path, false);
		if (!b)
			continue;
		if (atomic_load(&b->magic) != BOARD_MAGIC || b->pid != pid) {
			munmap(b, sizeof(*b));
			continue;
		}
		boards[nboards].pid = pid;
		boards[nboards++].b = b;
	}
	closedir(d);
}

/* a small cache of keys found: key -> entry (checked again at each use) */
#define CACHE 256
static struct { _Atomic uint64_t key; struct board_ent *_Atomic e; } cache[CACHE];

static inline unsigned slot(uint64_t key)
{
	return (unsigned)((key * 0x9e3779b97f4a7c15ull) >> 56) % CACHE;
}

struct board_ent *board_find(uint64_t key)
{
	unsigned s = slot(key);
	struct board_ent *e = atomic_load_explicit(&cache[s].e, memory_order_acquire);
	if (e && atomic_load_explicit(&cache[s].key, memory_order_relaxed) == key &&
	    atomic_load_explicit(&e->key, memory_order_relaxed) == key)
		return e;
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
		unsigned used = atomic_load(&b->used);
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
