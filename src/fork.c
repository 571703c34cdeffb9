/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* fork: every forked child bumps the fork generation (pthread_atfork), so a
 * public call can tell a child using its parent's objects (MRL_CHILD_CHECK)
 * before it touches a lock the parent's threads may have held at fork. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <liburing.h>

#include "mrl_int.h"

_Atomic unsigned mrl_fork_gen;

static void fork_child(void)
{
	atomic_fetch_add(&mrl_fork_gen, 1);
}

static void fork_watch_once(void)
{
	pthread_atfork(NULL, NULL, fork_child);
}

void mrl_fork_watch(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, fork_watch_once);
}

int mrl_child_err(const char *fn)
{
	return mrl_err(EPERM, "%s: this object belongs to the parent process (the caller is a "
			      "forked child); a child must create its own context", fn);
}

/* ---- fork and pinned pages ----
 * Pin a private page as a fixed buffer, fork a child that stays alive,
 * write the page in the parent, then have the kernel read the buffer
 * (WRITE_FIXED to a pipe). A kernel that copies pinned pages into the child
 * at fork leaves the parent on the pinned page: the device sees the new
 * byte. One that does not breaks copy-on-write in the parent: the device
 * still sees the old byte, on what is now the child's page. */
static bool fork_copies;

static void fork_probe(void)
{
	if (getenv("MRL_FORK_DONTFORK")) { /* tests: the older kernels' way, here too */
		mrl_log("fork and pinned pages: MRL_FORK_DONTFORK set: MADV_DONTFORK on pinned private ranges");
		return;
	}
	long pg = sysconf(_SC_PAGESIZE);
	int pfd[2] = {-1, -1}, gate[2] = {-1, -1};
	struct io_uring ring;
	const char *why = NULL;
	/* raw calls: nothing of the interposer's business */
	char *page = (char *)syscall(SYS_mmap, NULL, pg, PROT_READ | PROT_WRITE,
				     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (page == MAP_FAILED)
		return;
	if (io_uring_queue_init(2, &ring, 0)) {
		why = "no io_uring";
		goto unmap;
	}
	page[0] = 'A';
	struct iovec iov = {.iov_base = page, .iov_len = (size_t)pg};
	if (io_uring_register_buffers(&ring, &iov, 1)) {
		why = "cannot register a fixed buffer";
		goto ring;
	}
	if (pipe2(pfd, O_CLOEXEC) || pipe2(gate, O_CLOEXEC)) {
		why = "no pipe";
		goto fds;
	}
	/* raw clone, no exit signal: no atfork handler of the application runs,
	 * and its SIGCHLD reaper (waitpid without __WALL) cannot take the child */
	pid_t pid = (pid_t)syscall(SYS_clone, 0, NULL, NULL, NULL, NULL);
	if (pid == 0) {
		char c;
		while (read(gate[0], &c, 1) < 0 && errno == EINTR)
			;
		syscall(SYS_exit_group, 0);
	}
	if (pid < 0) {
		why = "cannot fork";
		goto fds;
	}
	page[0] = 'B';
	char got = 0;
	struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
	struct io_uring_cqe *cqe;
	io_uring_prep_write_fixed(sqe, pfd[1], page, 1, 0, 0);
	if (io_uring_submit_and_wait(&ring, 1) == 1 && io_uring_wait_cqe(&ring, &cqe) == 0) {
		if (cqe->res == 1 && read(pfd[0], &got, 1) == 1)
			fork_copies = got == 'B';
		else
			why = "fixed-buffer write failed";
		io_uring_cqe_seen(&ring, cqe);
	} else {
		why = "fixed-buffer write failed";
	}
	if (write(gate[1], "x", 1) < 0) {
		/* the child then ends with the pipe's last writer, below */
	}
	close(gate[1]);
	gate[1] = -1;
	while (waitpid(pid, NULL, __WALL) < 0 && errno == EINTR)
		;
fds:
	for (int i = 0; i < 2; i++) {
		if (pfd[i] >= 0)
			close(pfd[i]);
		if (gate[i] >= 0)
			close(gate[i]);
	}
	io_uring_unregister_buffers(&ring);
ring:
	io_uring_queue_exit(&ring);
unmap:
	syscall(SYS_munmap, page, pg);
	mrl_log("fork and pinned pages: %s", why ? why : fork_copies ?
		"the kernel copies them into the child (no MADV_DONTFORK needed)" :
		"the kernel does not copy them: MADV_DONTFORK on pinned private ranges");
}

bool mrl_fork_copies_pinned(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, fork_probe);
	return fork_copies;
}
