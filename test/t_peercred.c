/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Same-host peers proven by the kernel (MRL_EP_PEERCRED, issue 16): with no
 * secret anywhere, an owner listening on unix:PATH serves a peer of its own
 * uid (verified writes and reads over the fabric); a process of another uid
 * that can reach the socket is refused and counted, and learns nothing; a
 * connector refuses a socket served by another uid (a rogue listener at
 * the expected path); a TCP bootstrap with the flag, an empty or too long
 * path are refused with -EINVAL; the socket file is mode 0600, a stale one
 * left by a dead owner is taken over, and destroy removes it. */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "ep_int.h"
#include "rig_pair.h"

#define LEN (64 * 1024)
#define NOBODY 65534

static char dir[64], sock[100];

static mrl_ep *ep_new(mrl_ctx *ctx, unsigned flags)
{
	struct mrl_ep_opts eo = {.size = sizeof(eo), .flags = flags};
	mrl_ep *ep = NULL;
	int ret = mrl_ep_create(ctx, &eo, &ep);
	REQUIRE(ret == 0, "endpoint with flags %#x and no secret: %d (%s)", flags, ret, mrl_last_error());
	return ep;
}

/* a process of uid nobody connects with the flag: its exit status is the
 * negated errno it got (0: it was let in) */
static int stranger_connects(void)
{
	pid_t pid = fork();
	if (pid == 0) {
		if (setgid(NOBODY) || setuid(NOBODY))
			_exit(100);
		mrl_ctx *c = t_ctx("tcp;ofi_rxm", 10000);
		mrl_ep *ep = ep_new(c, MRL_EP_PEERCRED);
		mrl_peer *p;
		char where[128];
		snprintf(where, sizeof(where), "unix:%s", sock);
		int ret = mrl_ep_connect(ep, where, 0, T_HANG_MS, &p);
		printf("   the stranger's connect: %d (%s)\n", ret, ret ? mrl_last_error() : "let in");
		_exit(-ret);
	}
	return pid;
}

/* a listener of uid nobody at path, no mrlease in it: it accepts and holds */
static pid_t rogue_listener(const char *path, int ready[2])
{
	pid_t pid = fork();
	if (pid == 0) {
		if (setgid(NOBODY) || setuid(NOBODY))
			_exit(100);
		struct sockaddr_un sa = {.sun_family = AF_UNIX};
		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
		int s = socket(AF_UNIX, SOCK_STREAM, 0);
		if (s < 0 || bind(s, (struct sockaddr *)&sa, sizeof(sa)) || chmod(path, 0666) || listen(s, 4))
			_exit(101);
		(void)!write(ready[1], "r", 1);
		for (;;) {
			int c = accept(s, NULL, NULL);
			if (c >= 0)
				(void)!write(c, "hello", 5); /* anything: it must not be believed */
		}
	}
	close(ready[1]);
	char b;
	REQUIRE(read(ready[0], &b, 1) == 1, "the rogue listener is up");
	close(ready[0]);
	return pid;
}

int main(void)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	if (geteuid() != 0)
		t_skip("the refusals need a second uid (root to switch to nobody)");
	unsetenv("MRLEASE_SECRET");
	unsetenv("MRLEASE_SECRET_FILE");
	snprintf(dir, sizeof(dir), "/var/tmp/mrl-peercred-XXXXXX");
	REQUIRE(mkdtemp(dir), "scratch dir");
	REQUIRE(chmod(dir, 0711) == 0, "others may pass through the dir");
	snprintf(sock, sizeof(sock), "%s/boot", dir);
	char where[128];
	snprintf(where, sizeof(where), "unix:%s", sock);

	mrl_ctx *sctx = t_ctx("tcp;ofi_rxm", 10000), *cctx = t_ctx("tcp;ofi_rxm", 10000);
	mrl_ep *sep = ep_new(sctx, MRL_EP_AUTO_PROGRESS | MRL_EP_PEERCRED);
	mrl_ep *cep = ep_new(cctx, MRL_EP_PEERCRED);

	/* bad input */
	uint16_t port = 1;
	CHECK(mrl_ep_listen(sep, "127.0.0.1", 0, &port) == -EINVAL, "a TCP bootstrap with the flag: -EINVAL");
	CHECK(strstr(mrl_last_error(), "unix:PATH") != NULL, "and the message says why: %s", mrl_last_error());
	CHECK(mrl_ep_listen(sep, "unix:", 0, NULL) == -EINVAL, "an empty path: -EINVAL");
	char longp[200];
	memset(longp, 'x', sizeof(longp));
	memcpy(longp, "unix:/", 6);
	longp[sizeof(longp) - 1] = 0;
	CHECK(mrl_ep_listen(sep, longp, 0, NULL) == -EINVAL, "a path too long for sun_path: -EINVAL");
	mrl_peer *p;
	CHECK(mrl_ep_connect(cep, "127.0.0.1", 1, 100, &p) == -EINVAL, "connecting over TCP with the flag: -EINVAL");

	/* a stale socket left by a dead owner is taken over */
	int st = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
	REQUIRE(st >= 0 && bind(st, (struct sockaddr *)&sa, sizeof(sa)) == 0, "a stale socket file");
	close(st);
	port = 1;
	REQUIRE(mrl_ep_listen(sep, where, 0, &port) == 0, "listen on %s over a stale socket: %s", where,
		mrl_last_error());
	CHECK(port == 0, "no port for a unix: bootstrap");
	struct stat sst;
	CHECK(stat(sock, &sst) == 0 && S_ISSOCK(sst.st_mode) && (sst.st_mode & 0777) == 0600,
	      "the socket file is mode 0600 (%o)", sst.st_mode & 0777);

	/* our own uid: served, with no secret */
	char *mem = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	mrl_mr_t mr;
	REQUIRE(mrl_mr_reg(sctx, mem, LEN, MRL_ACCESS_REMOTE_READ | MRL_ACCESS_REMOTE_WRITE, NULL, &mr) == 0,
		"register");
	p = pair_connect_to(sep, cep, where, 0, NULL); /* a peer of our uid, no secret */
	mrl_rmr *r;
	REQUIRE(mrl_rmr_open(p, mr, T_HANG_MS, &r) == 0, "and opens the MR");
	char w[4096], back[4096];
	for (int i = 0; i < 4096; i++)
		w[i] = (char)(i * 7 + 3);
	struct mrl_completion c;
	struct pair pw = {.cep = cep};
	CHECK(mrl_write(r, 8192, w, sizeof(w), NULL) == 0 && pair_wait(&pw, &c, T_HANG_MS) == 0 &&
		      c.status == 0,
	      "a write over the fabric completes");
	CHECK(!memcmp(mem + 8192, w, sizeof(w)), "and is in the owner's memory");
	CHECK(mrl_read(r, 8192, back, sizeof(back), NULL) == 0 && pair_wait(&pw, &c, T_HANG_MS) == 0 &&
		      c.status == 0 && !memcmp(back, w, sizeof(w)),
	      "a read returns it");

	/* another uid that can reach the socket: refused by the owner */
	REQUIRE(chmod(sock, 0666) == 0, "the socket opened to everyone: the uid check alone stands");
	uint64_t failed0 = mrl_ep_auth_failed(sep);
	pid_t s = stranger_connects();
	mrl_peer *sp = NULL;
	int sret = 0;
	for (uint64_t hang = t_now_ns() + T_HANG_MS * 1000000ull;
	     mrl_ep_auth_failed(sep) == failed0 && t_now_ns() < hang;) {
		sret = mrl_ep_accept(sep, 100, &sp);
		if (sret == 0)
			break;
	}
	int sst2 = t_wait_child(s, T_HANG_MS);
	CHECK(sret != 0, "the owner let no stranger in (accept %d)", sret);
	CHECK(mrl_ep_auth_failed(sep) == failed0 + 1, "the refusal is counted (%llu)",
	      (unsigned long long)(mrl_ep_auth_failed(sep) - failed0));
	CHECK(sst2 == EACCES, "the stranger's connect failed -EACCES (exit %d)", sst2);
	uint32_t pending = mrl_ep_boot_pending(sep);
	CHECK(pending == 0, "nothing of the stranger's is left in the bootstrap (%u)", pending);

	/* a listener of another uid where the owner should be: not believed */
	mrl_rmr_close(r);
	mrl_ep_destroy(sep);
	struct stat gone;
	CHECK(stat(sock, &gone) < 0 && errno == ENOENT, "destroy removed the socket file");
	/* a directory anyone may put a socket in, as /tmp */
	REQUIRE(chmod(dir, 01777) == 0, "the dir opened to everyone");
	int ready[2];
	REQUIRE(pipe(ready) == 0, "pipe");
	pid_t rogue = rogue_listener(sock, ready);
	mrl_ep *cep2 = ep_new(cctx, MRL_EP_PEERCRED);
	int rr = mrl_ep_connect(cep2, where, 0, T_HANG_MS, &p);
	CHECK(rr == -EACCES, "a connector refuses an owner of another uid (%d)", rr);
	CHECK(strstr(mrl_last_error(), "uid 65534") != NULL, "naming its uid: %s", mrl_last_error());
	kill(rogue, SIGKILL);
	waitpid(rogue, NULL, 0);
	unlink(sock);

	mrl_ep_destroy(cep2);
	mrl_ep_destroy(cep);
	mrl_mr_dereg(sctx, mr);
	munmap(mem, LEN);
	mrl_ctx_destroy(cctx);
	mrl_ctx_destroy(sctx);
	rmdir(dir);
	return t_done("t_peercred");
}
