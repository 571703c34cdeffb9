/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* A stranger with plain libfabric (test/rogue_keys.c, no mrlease code) and
 * the owner's fabric address tries remote keys while a real peer streams
 * verified RMA to an MR of its own:
 *  - control: with a key it was given it does read the MR (the attack path
 *    works, so a refusal below means something);
 *  - counting: keys after and before the one it was given, keys from the
 *    old base 0x10000 and random keys reach nothing;
 *  - access rights: a write-only MR cannot be read, a read-only one cannot
 *    be written (the owner's provider refuses);
 *  - a stale key: the key of an MR whose silent holder was cut off (it
 *    came back under a new key) reaches none of its bytes either way;
 *  - stale keys do not share their scratch: after a late write through one
 *    stale key, a read through another stale key (an MR of the same size,
 *    deregistered) sees only zeros, never the late writer's bytes.
 * The victim peer sees 0 failed operations and 0 wrong bytes throughout. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "rig_pair.h"
#include "ep_int.h"

#define MB (1u << 20)
#define LEN 4096
#define NSERVED 8

static char rogue_bin[512], owner_hex[300];

/* the victim: write a fresh pattern, read it back, compare */
struct victim {
	struct pair *p;
	mrl_rmr *r;
	unsigned char w[LEN], rd[LEN];
	uint64_t seq, ok, failed, wrong;
	int last_err;
};

static int victim_wait(struct victim *v)
{
	struct mrl_completion c;
	if (pair_wait(v->p, &c, T_HANG_MS))
		return -ETIMEDOUT;
	return c.status;
}

static void victim_step(struct victim *v)
{
	uint64_t off = (v->seq % 16) * LEN;
	memset(v->w, (int)(v->seq % 251) + 1, LEN);
	memcpy(v->w, &v->seq, sizeof(v->seq));
	v->seq++;
	int ret = mrl_write(v->r, off, v->w, LEN, NULL);
	if (!ret)
		ret = victim_wait(v);
	if (!ret)
		ret = mrl_read(v->r, off, v->rd, LEN, NULL);
	if (!ret)
		ret = victim_wait(v);
	if (ret) {
		v->failed++;
		v->last_err = ret;
		return;
	}
	if (memcmp(v->w, v->rd, LEN))
		v->wrong++;
	else
		v->ok++;
}

/* Run the rogue with args while the victim streams; its output in out. */
static void rogue(struct victim *v, char *out, size_t outsz, const char *fmt, ...)
{
	char args[256], cmd[1400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(args, sizeof(args), fmt, ap);
	va_end(ap);
	snprintf(cmd, sizeof(cmd), "%s %s %s", rogue_bin, owner_hex, args);
	int pfd[2];
	REQUIRE(pipe(pfd) == 0, "pipe");
	pid_t pid = fork();
	REQUIRE(pid >= 0, "fork");
	if (pid == 0) {
		dup2(pfd[1], 1);
		close(pfd[0]);
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	int st = 0;
	uint64_t steps = 0, t0 = t_now_ns();
	/* the victim keeps going until the rogue is done, and a little past */
	while (waitpid(pid, &st, WNOHANG) == 0 || steps < 20) {
		victim_step(v);
		steps++;
	}
	ssize_t n = read(pfd[0], out, outsz - 1);
	close(pfd[0]);
	out[n > 0 ? n : 0] = 0;
	REQUIRE(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the rogue ran (%s): status %#x, said %s", args,
		st, out);
	printf("rogue %s (%.1f s) -> %s", args, (double)(t_now_ns() - t0) / 1e9, out);
}

static long field(const char *out, const char *name)
{
	const char *s = strstr(out, name);
	return s ? strtol(s + strlen(name), NULL, 0) : -999;
}

static uint64_t key_of(mrl_ctx *ctx, mrl_mr_t mr)
{
	struct mrl_mr_info in = {.size = sizeof(in)};
	REQUIRE(mrl_mr_query(ctx, mr, &in) == 0, "query");
	return in.key;
}

static bool all(const unsigned char *b, int c, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (b[i] != c)
			return false;
	return true;
}

int main(int argc, char **argv)
{
	(void)argc;
	snprintf(rogue_bin, sizeof(rogue_bin), "%s", argv[0]);
	char *slash = strrchr(rogue_bin, '/');
	snprintf(slash ? slash + 1 : rogue_bin, sizeof(rogue_bin) - (size_t)(slash ? slash + 1 - rogue_bin : 0),
		 "rogue_keys");
	REQUIRE(access(rogue_bin, X_OK) == 0, "the rogue program %s is built", rogue_bin);

	struct pair p;
	pair_open(&p);
	for (size_t i = 0; i < p.sep->namelen; i++)
		sprintf(owner_hex + 2 * i, "%02x", p.sep->name[i]);

	unsigned char *mem = mmap(NULL, 16 * MB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(mem != MAP_FAILED, "mmap");
	/* MR 0: the victim's; 1: the rogue was given its key; 2..: never given;
	 * then a write-only and a read-only MR whose keys it was given */
	mrl_mr_t vmr, given, served[NSERVED], wo, ro;
	unsigned rw = MRL_ACCESS_REMOTE_READ | MRL_ACCESS_REMOTE_WRITE;
	REQUIRE(mrl_mr_reg(p.sctx, mem, 16 * LEN, rw, NULL, &vmr) == 0, "victim MR");
	memset(mem + MB, 0xc3, LEN);
	REQUIRE(mrl_mr_reg(p.sctx, mem + MB, LEN, rw, NULL, &given) == 0, "given MR");
	for (int i = 0; i < NSERVED; i++) {
		memset(mem + (2 + i) * MB, 0xa0 + i, LEN);
		REQUIRE(mrl_mr_reg(p.sctx, mem + (2 + i) * MB, LEN, rw, NULL, &served[i]) == 0, "served %d", i);
	}
	unsigned char *wom = mem + 12 * MB, *rom = mem + 13 * MB;
	memset(wom, 0x77, LEN);
	memset(rom, 0x66, LEN);
	REQUIRE(mrl_mr_reg(p.sctx, wom, LEN, MRL_ACCESS_REMOTE_WRITE, NULL, &wo) == 0, "write-only MR");
	REQUIRE(mrl_mr_reg(p.sctx, rom, LEN, MRL_ACCESS_REMOTE_READ, NULL, &ro) == 0, "read-only MR");

	struct victim v = {.p = &p};
	REQUIRE(mrl_rmr_open(p.cpeer, vmr, T_HANG_MS, &v.r) == 0, "victim opens its MR");
	char out[512];

	/* control: the path works with a key the rogue was given */
	rogue(&v, out, sizeof(out), "try r %#llx %d", (unsigned long long)key_of(p.sctx, given), LEN);
	CHECK(field(out, "status=") == 0 && field(out, "nonzero=") == LEN,
	      "control: with a key it was given the rogue reads the MR (%s)", out);

	/* counting */
	rogue(&v, out, sizeof(out), "count %#llx %d 32", (unsigned long long)key_of(p.sctx, given), LEN);
	CHECK(field(out, "tried=") == 128 && field(out, "nonzero=") == 0,
	      "counting: 128 keys near a given one, from 0x10000 and at random reach no byte");
	CHECK(field(out, "completed=") == 0, "counting: every attempt refused (%ld completed)",
	      field(out, "completed="));
	for (int i = 0; i < NSERVED; i++)
		CHECK(all(mem + (2 + i) * MB, 0xa0 + i, LEN), "served MR %d untouched", i);

	/* access rights, enforced by the owner's provider */
	rogue(&v, out, sizeof(out), "try r %#llx %d", (unsigned long long)key_of(p.sctx, wo), LEN);
	CHECK(field(out, "status=") != 0 && field(out, "nonzero=") == 0,
	      "a write-only MR cannot be read remotely (%s)", out);
	rogue(&v, out, sizeof(out), "try w %#llx %d", (unsigned long long)key_of(p.sctx, ro), LEN);
	/* a write completes at the rogue once sent (no delivery-complete asked):
	 * what counts is that no byte landed */
	CHECK(all(rom, 0x66, LEN), "a read-only MR cannot be written remotely (%s; first byte %#x)",
	      out, rom[0]);
	rogue(&v, out, sizeof(out), "try w %#llx %d", (unsigned long long)key_of(p.sctx, wo), LEN);
	CHECK(field(out, "status=") == 0 && all(wom, 0x5a, LEN),
	      "control: the write-only MR is written with its key (%s)", out);

	/* a real peer is told the rights and refused before anything is sent
	 * (the owner's provider would refuse by dropping the connection) */
	mrl_rmr *wr, *rr;
	REQUIRE(mrl_rmr_open(p.cpeer, wo, T_HANG_MS, &wr) == 0 && mrl_rmr_open(p.cpeer, ro, T_HANG_MS, &rr) == 0,
		"the peer opens the write-only and the read-only MR");
	unsigned char tmp[64];
	CHECK(mrl_read(wr, 0, tmp, sizeof(tmp), NULL) == -EACCES, "a peer's read of a write-only MR: -EACCES");
	CHECK(mrl_write(rr, 0, tmp, sizeof(tmp), NULL) == -EACCES, "a peer's write to a read-only MR: -EACCES");
	memset(tmp, 0x11, sizeof(tmp));
	REQUIRE(mrl_write(wr, 0, tmp, sizeof(tmp), NULL) == 0, "a peer's write to the write-only MR");
	struct mrl_completion wc;
	CHECK(pair_wait(&p, &wc, T_HANG_MS) == 0 && wc.status == 0 && all(wom, 0x11, sizeof(tmp)),
	      "... lands (status %d)", wc.status);
	mrl_rmr_close(wr);
	mrl_rmr_close(rr);

	/* a stale key: a file MR held by a peer that stops answering; a hole
	 * punch breaks it, the deadline cuts the peer off and the MR comes
	 * back under a new key */
	char dir[256], path[300];
	t_scratch("tmpfs", dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/f", dir);
	t_make_file(path, MB);
	void *fp;
	REQUIRE(mrl_file_map(p.sctx, path, 0, MB, PROT_READ | PROT_WRITE, &fp) == 0, "map");
	memset(fp, 0x3c, MB);
	struct mrl_reg_opts so = {.size = sizeof(so), .deadline_ms = 300};
	mrl_mr_t smr;
	REQUIRE(mrl_mr_reg(p.sctx, fp, MB, rw, &so, &smr) == 0, "file MR");
	mrl_ctx *qctx = t_ctx("tcp;ofi_rxm", 10000);
	mrl_ep *qep;
	mrl_peer *qpeer;
	mrl_rmr *qr;
	REQUIRE(mrl_ep_create(qctx, NULL, &qep) == 0, "silent peer's ep");
	/* the pair's owner is listening already: the port from its socket */
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	REQUIRE(getsockname(p.sep->lsock, (struct sockaddr *)&sa, &sl) == 0, "owner's port");
	uint16_t port = ntohs(sa.sin_port);
	qpeer = pair_connect(p.sep, qep, port, NULL); /* the silent peer */
	REQUIRE(mrl_rmr_open(qpeer, smr, T_HANG_MS, &qr) == 0, "the silent peer holds the file MR");
	uint64_t old = key_of(p.sctx, smr);
	rogue(&v, out, sizeof(out), "try r %#llx %d", (unsigned long long)old, LEN);
	CHECK(field(out, "status=") == 0 && field(out, "nonzero=") == LEN,
	      "control: the file MR's key reads it before the cut-off (%s)", out);
	/* from here on the silent peer never drives progress: it cannot answer */
	pid_t punch = t_sh_bg("fallocate -p -o %d -l %d %s", MB / 2, LEN, path);
	struct mrl_mr_info si = {.size = sizeof(si)};
	for (uint64_t hang = t_now_ns() + T_HANG_MS * 1000000ull; t_now_ns() < hang;) {
		victim_step(&v);
		mrl_mr_query(p.sctx, smr, &si);
		if (si.key != old && si.state == MRL_STATE_ACTIVE)
			break;
	}
	CHECK(t_wait_status(punch) == 0, "the hole punch ran");
	printf("file MR after the cut-off: %s, key %#llx (was %#llx), generation %u\n",
	       mrl_state_str(si.state), (unsigned long long)si.key, (unsigned long long)old, si.generation);
	REQUIRE(si.key != old && si.state == MRL_STATE_ACTIVE,
		"the cut-off peer's MR came back under a new key");
	rogue(&v, out, sizeof(out), "try r %#llx %d", (unsigned long long)old, LEN);
	CHECK(field(out, "nonzero=") == 0, "the stale key reads none of the MR's bytes (%s)", out);
	rogue(&v, out, sizeof(out), "try w %#llx %d", (unsigned long long)old, LEN);
	/* the rogue read after its write on the same connection: the owner
	 * has handled the write */
	CHECK(all(fp, 0x3c, LEN), "the stale key writes none of the MR's bytes (%s)", out);
	rogue(&v, out, sizeof(out), "try r %#llx %d", (unsigned long long)si.key, LEN);
	CHECK(field(out, "status=") == 0 && field(out, "nonzero=") == LEN,
	      "control: the new key reads it (%s)", out);
	/* another stale key of the same size: an MR deregistered; the late
	 * write above (0x5a through the old key) is not what it reads */
	unsigned char *om = mem + 14 * MB;
	memset(om, 0x4b, MB);
	mrl_mr_t omr;
	REQUIRE(mrl_mr_reg(p.sctx, om, MB, rw, NULL, &omr) == 0, "another MR of the same size");
	uint64_t okey = key_of(p.sctx, omr);
	REQUIRE(mrl_mr_dereg(p.sctx, omr) == 0, "deregistered: its key is stale");
	rogue(&v, out, sizeof(out), "try r %#llx %d", (unsigned long long)okey, LEN);
	CHECK(field(out, "status=") == 0 && field(out, "nonzero=") == 0,
	      "a stale key's read after another stale key's late write sees only zeros (%s)", out);

	mrl_rmr_close(qr);
	mrl_ep_destroy(qep);
	mrl_ctx_destroy(qctx);
	mrl_mr_dereg(p.sctx, smr);
	mrl_file_unmap(p.sctx, fp, MB);
	unlink(path);
	rmdir(dir);

	printf("victim: %llu ok, %llu failed (last %d), %llu wrong\n", (unsigned long long)v.ok,
	       (unsigned long long)v.failed, v.last_err, (unsigned long long)v.wrong);
	CHECK(v.ok > 0 && v.failed == 0 && v.wrong == 0,
	      "the victim peer: every operation succeeded with its own bytes");
	mrl_rmr_close(v.r);
	mrl_mr_dereg(p.sctx, vmr);
	mrl_mr_dereg(p.sctx, given);
	mrl_mr_dereg(p.sctx, wo);
	mrl_mr_dereg(p.sctx, ro);
	for (int i = 0; i < NSERVED; i++)
		mrl_mr_dereg(p.sctx, served[i]);
	pair_close(&p);
	munmap(mem, 16 * MB);
	return t_done("t_rogue_keys");
}
