/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The hook's same-host state board under attack (fi/board.c, linked in as
 * in t_fi_hook so it runs under the sanitizers). A plain process running as
 * `nobody` cannot open, shrink or unlink a root owner's board, and the
 * boards it forges (a sealed board claiming the owner's keys as paused, and
 * markers naming descriptors of the owner's own process that are no board)
 * are refused: the owner's keys still resolve to the one real entry, a key
 * only the forgery names resolves to nothing. Directories another user
 * owns, or that anyone may write without the sticky bit, are refused. A
 * board its own uid corrupts (every field garbage) is read without a
 * crash, and cannot be shrunk under the reader (sealed); one a same-uid
 * process leaves unsealed is refused, then truncated (no SIGBUS); a dead
 * owner's board is buried: its entries read as zeroes, never unmapped. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../fi/board.h"
#include "../fi/hook.h"
#include "helpers.h"

#define NOBODY 65534
#define K_OWN 0x5eed00000001ull   /* published before the forgery */
#define K_LATE 0x5eed00000002ull  /* published after it (found by a scan) */
#define K_FORGED 0x5eed00000003ull /* on the forged board only */
#define K_CORRUPT 0x5eed00000004ull
#define K_UNSEALED 0x5eed00000005ull

static char dir[64];

/* found is the entry e through another mapping of the same board */
static bool same(struct board_ent *found, struct board_ent *e)
{
	if (!found || !e)
		return false;
	uint64_t v = atomic_load(&e->valid);
	atomic_store(&e->valid, 0xabcdef12345ull);
	bool ok = atomic_load(&found->valid) == 0xabcdef12345ull && atomic_load(&found->key) == atomic_load(&e->key);
	atomic_store(&e->valid, v);
	return ok;
}

/* our own marker's descriptor for pid, or -1 */
static int marker_fd(int pid)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int p, fd = -1;
	while (d && (de = readdir(d)))
		if (sscanf(de->d_name, "board.%d.%d", &p, &fd) == 2 && p == pid)
			break;
		else
			fd = -1;
	if (d)
		closedir(d);
	return fd;
}

/* a board in a memfd, sealed or not, with a marker for it; returns it */
static struct board *forge(bool seal, int *fdp)
{
	int fd = memfd_create("forged", MFD_ALLOW_SEALING);
	if (fd < 0 || ftruncate(fd, sizeof(struct board)))
		return NULL;
	if (seal && fcntl(fd, F_ADD_SEALS, BOARD_SEALS))
		return NULL;
	struct board *b = mmap(NULL, sizeof(*b), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (b == MAP_FAILED)
		return NULL;
	b->pid = getpid();
	atomic_store(&b->magic, BOARD_MAGIC);
	char m[128];
	snprintf(m, sizeof(m), "%s/board.%d.%d", dir, (int)getpid(), fd);
	int mf = open(m, O_CREAT | O_EXCL | O_WRONLY, 0644);
	if (mf < 0)
		return NULL;
	close(mf);
	*fdp = fd;
	return b;
}

static void ent(struct board *b, unsigned i, uint64_t key, uint32_t st)
{
	atomic_store(&b->ent[i].key, key);
	b->ent[i].base = 0;
	b->ent[i].len = 1 << 20;
	atomic_store(&b->ent[i].valid, 0);
	atomic_store(&b->ent[i].state, st);
	if (atomic_load(&b->used) < i + 1)
		atomic_store(&b->used, i + 1);
}

/* The rogue, as nobody: every attempt's errno (0 = it worked) on out,
 * then a forged board and forged markers; stays alive until told. */
static void rogue(int out, int go, pid_t owner, int owner_fd)
{
	int res[4];
	if (setgroups(0, NULL) || setresgid(NOBODY, NOBODY, NOBODY) || setresuid(NOBODY, NOBODY, NOBODY))
		_exit(3);
	char p[128];
	snprintf(p, sizeof(p), "/proc/%d/fd/%d", (int)owner, owner_fd);
	int f = open(p, O_RDWR);
	res[0] = f < 0 ? errno : 0;
	snprintf(p, sizeof(p), "%s/board.%d.%d", dir, (int)owner, owner_fd);
	res[1] = unlink(p) ? errno : 0;
	f = open(p, O_RDWR);
	res[2] = f < 0 ? errno : 0;
	int ffd;
	struct board *b = forge(true, &ffd);
	res[3] = b ? 0 : errno ? errno : EINVAL;
	if (b) {
		ent(b, 0, K_OWN, BS_PAUSED);
		ent(b, 1, K_LATE, BS_PAUSED);
		ent(b, 2, K_FORGED, BS_PAUSED);
	}
	/* markers naming the owner's descriptors that are no board, and junk */
	const char *junk[] = {"board.%d.0", "board.%d.999", "board.-5.3", "board.x", "board.%d.-1"};
	for (unsigned i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
		char n[64];
		snprintf(n, sizeof(n), junk[i], (int)owner);
		snprintf(p, sizeof(p), "%s/%s", dir, n);
		close(open(p, O_CREAT | O_WRONLY, 0644));
	}
	if (write(out, res, sizeof(res)) != sizeof(res))
		_exit(4);
	char c;
	(void)!read(go, &c, 1);
	_exit(0);
}

/* look until cond holds, rescanning (a scan comes at most every 50 ms) */
#define UNTIL(cond)                                                                          \
	do {                                                                                 \
		uint64_t t0_ = t_now_ns();                                                   \
		while (!(cond) && t_now_ns() - t0_ < T_HANG_MS * 1000000ull) {              \
			board_find_key(0x1234);                                                  \
			usleep(5000);                                                        \
		}                                                                            \
	} while (0)

static void dir_checks(void)
{
	char bad[128];
	snprintf(bad, sizeof(bad), "%s/other", dir);
	REQUIRE(mkdir(bad, 0755) == 0 && chown(bad, NOBODY, NOBODY) == 0, "a directory nobody owns");
	setenv("MRLEASE_FI_BOARD_DIR", bad, 1);
	CHECK(board_dir_open(true) < 0, "a directory another user owns is refused");
	snprintf(bad, sizeof(bad), "%s/open", dir);
	REQUIRE(mkdir(bad, 0777) == 0 && chmod(bad, 0777) == 0, "a world-writable directory");
	setenv("MRLEASE_FI_BOARD_DIR", bad, 1);
	CHECK(board_dir_open(true) < 0, "a world-writable directory without the sticky bit is refused");
	snprintf(bad, sizeof(bad), "%s/new", dir);
	setenv("MRLEASE_FI_BOARD_DIR", bad, 1);
	int d = board_dir_open(true);
	struct stat st;
	CHECK(d >= 0 && fstat(d, &st) == 0 && (st.st_mode & 07777) == 01777,
	      "a directory the hook makes is sticky and shared (mode %o)", (unsigned)st.st_mode);
	if (d >= 0)
		close(d);
	snprintf(bad, sizeof(bad), "%s/link", dir);
	CHECK(symlink(dir, bad) == 0, "symlink");
	setenv("MRLEASE_FI_BOARD_DIR", bad, 1);
	CHECK(board_dir_open(true) < 0, "a symlink in place of the directory is refused");
	setenv("MRLEASE_FI_BOARD_DIR", dir, 1);
}

int main(void)
{
	if (geteuid() != 0)
		t_skip("acting as another user (nobody) needs root");
	setenv("MRLEASE_LOG", "/dev/null", 1);
	snprintf(dir, sizeof(dir), "/tmp/mrl-board-XXXXXX");
	REQUIRE(mkdtemp(dir) && chmod(dir, 01777) == 0, "a board directory");
	dir_checks();

	/* the owner's board: marker 0600, the memfd sealed */
	struct board_ent *e = board_publish(K_OWN, 0, 1 << 20, BT_REFUSE);
	REQUIRE(e, "published");
	int ofd = marker_fd(getpid());
	REQUIRE(ofd >= 0, "the owner's marker is in %s", dir);
	char p[128];
	struct stat st;
	snprintf(p, sizeof(p), "%s/board.%d.%d", dir, (int)getpid(), ofd);
	CHECK(lstat(p, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0777) == 0600 && st.st_size == 0,
	      "the marker is an empty file of mode 0600");
	snprintf(p, sizeof(p), "/proc/self/fd/%d", ofd);
	int f = open(p, O_RDWR);
	CHECK(f >= 0 && ftruncate(f, 0) < 0 && errno == EPERM, "the board cannot be shrunk");
	CHECK(f >= 0 && ftruncate(f, 2 * sizeof(struct board)) < 0 && errno == EPERM,
	      "the board cannot be grown");
	if (f >= 0)
		close(f);
	CHECK(same(board_find_key(K_OWN), e), "the owner's key is found on its board");

	/* the rogue */
	int res_p[2], go_p[2];
	REQUIRE(pipe(res_p) == 0 && pipe(go_p) == 0, "pipes");
	unsigned long long refused0 = board_refused();
	pid_t r = fork();
	REQUIRE(r >= 0, "fork");
	if (r == 0)
		rogue(res_p[1], go_p[0], getppid(), ofd);
	int res[4];
	REQUIRE(read(res_p[0], res, sizeof(res)) == sizeof(res), "the rogue reports");
	CHECK(res[0] == EACCES, "nobody cannot open the owner's board (%s)", strerror(res[0]));
	CHECK(res[1] == EPERM || res[1] == EACCES, "nobody cannot unlink the owner's marker (%s)",
	      strerror(res[1]));
	CHECK(res[2] == EACCES, "nobody cannot open the owner's marker (%s)", strerror(res[2]));
	CHECK(res[3] == 0, "the rogue forged a sealed board (%s)", strerror(res[3]));

	/* the forged board and the markers naming our descriptors are refused */
	UNTIL(board_refused() >= refused0 + 3);
	CHECK(board_refused() >= refused0 + 3, "forged board and markers refused (%llu)",
	      board_refused() - refused0);
	struct board_ent *late = board_publish(K_LATE, 0, 1 << 20, BT_REFUSE);
	REQUIRE(late, "published after the forgery");
	CHECK(same(board_find_key(K_LATE), late), "a key the forgery also claims resolves to the owner's entry");
	CHECK(board_find_key(K_FORGED) == NULL, "a key only the forgery names resolves to nothing");
	CHECK(same(board_find_key(K_OWN), e) && atomic_load(&e->state) == BS_ACTIVE,
	      "the owner's MR is not paused by the forgery");
	CHECK(write(go_p[1], "x", 1) == 1, "release the rogue");
	int ws = t_wait_status(r);
	CHECK(ws == 0, "the rogue ran as nobody (status %d)", ws);

	/* a board its own uid corrupts, and one left unsealed */
	int c_p[2], cgo_p[2];
	REQUIRE(pipe(c_p) == 0 && pipe(cgo_p) == 0, "pipes");
	pid_t c = fork();
	REQUIRE(c >= 0, "fork");
	if (c == 0) {
		struct board_ent *ce = board_publish(K_CORRUPT, 0, 4096, BT_REFUSE); /* a fresh board: forked */
		int cfd = marker_fd(getpid());
		int ufd;
		struct board *u = forge(false, &ufd);
		if (!ce || cfd < 0 || !u)
			_exit(2);
		ent(u, 0, K_UNSEALED, BS_ACTIVE);
		char q[64], ch;
		snprintf(q, sizeof(q), "/proc/self/fd/%d", cfd);
		int rw = open(q, O_RDWR);
		struct board *b = mmap(NULL, sizeof(*b), PROT_READ | PROT_WRITE, MAP_SHARED, rw, 0);
		if (rw < 0 || b == MAP_FAILED || write(c_p[1], "r", 1) != 1 || read(cgo_p[0], &ch, 1) != 1)
			_exit(2);
		/* every field garbage but the magic and pid the reader checked at open */
		srandom(7);
		for (size_t i = 0; i < sizeof(b->ent); i++)
			((unsigned char *)b->ent)[i] = (unsigned char)random();
		atomic_store(&b->used, 0xffffffffu);
		ent(b, 0, K_CORRUPT, 77);
		int shrink = ftruncate(rw, 0) < 0 && errno == EPERM;
		/* the unsealed one shrinks under anyone who mapped it */
		int ut = ftruncate(ufd, 0) == 0;
		if (write(c_p[1], shrink && ut ? "y" : "n", 1) != 1)
			_exit(2);
		(void)!read(cgo_p[0], &ch, 1);
		_exit(0);
	}
	char ch = 0;
	REQUIRE(read(c_p[0], &ch, 1) == 1 && ch == 'r', "the same-uid owner is ready");
	struct board_ent *ce = NULL;
	UNTIL((ce = board_find_key(K_CORRUPT)) != NULL);
	REQUIRE(ce, "the same-uid owner's key is found");
	CHECK(board_find_key(K_UNSEALED) == NULL, "an unsealed board is refused");
	CHECK(write(cgo_p[1], "g", 1) == 1 && read(c_p[0], &ch, 1) == 1, "corrupt it");
	CHECK(ch == 'y', "the sealed board could not be shrunk; the unsealed one could");
	/* the reader over garbage: lookups of every kind, no crash */
	unsigned hits = 0;
	for (uint64_t k = 0; k < 20000; k++)
		hits += board_find_key(k * 0x9e3779b97f4a7c15ull) != NULL;
	CHECK(board_find_key(K_UNSEALED) == NULL, "still refused after its truncate (no SIGBUS)");
	CHECK(atomic_load(&ce->state) == 77, "the corrupted entry reads as it was written (%u)",
	      atomic_load(&ce->state));
	printf("lookups over a corrupted board: %u of 20000 random keys matched garbage\n", hits);

	/* its owner dies: the board is buried, never unmapped under the reader */
	CHECK(write(cgo_p[1], "q", 1) == 1, "release");
	CHECK(t_wait_status(c) == 0, "the same-uid owner did its part");
	UNTIL(atomic_load(&ce->key) == 0);
	CHECK(atomic_load(&ce->key) == 0 && atomic_load(&ce->state) == 0,
	      "a dead owner's entry reads as zeroes");
	CHECK(board_find_key(K_CORRUPT) == NULL, "a dead owner's key resolves to nothing");

	board_retract(late);
	board_retract(e);
	snprintf(p, sizeof(p), "rm -rf %s", dir);
	t_sh("%s", p);
	return t_done("t_fi_board_rogue");
}
