/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* MRL_POLICY_REDIRECT over libfabric (tcp;ofi_rxm on loopback). The owner
 * serves a file as one MR, on tmpfs (the lease sees the punch's open) and on
 * ext4 (fanotify, where it runs, holds the punch itself); a peer streams
 * verified writes and reads while another process punches a hole in the
 * file (fallocate):
 * - no operation of the peer's fails, before, during or after the break;
 * - the owner gets MRL_EVENT_REDIRECTED with the cause; the remote key
 *   stays the same;
 * - after it, a peer's write completes and lands in scratch: no byte of it
 *   reaches the file (its old bytes, and zeros in the hole); a read of
 *   bytes nobody wrote since returns zeros;
 * - mrl_mr_restore moves the key back onto the file: the peer's next
 *   writes reach it, its reads return the file's bytes;
 * - a truncate (truncate(1)) into the MR, redirected: the peer's operations
 *   past the new end complete too (scratch), the file does not grow; the
 *   restore then fences the part past the end (cause truncated: operations
 *   there are refused cleanly) and serves the rest from the file. */
#include <sys/mman.h>
#include <sys/wait.h>

#include "rig_pair.h"

#define MB (1u << 20)
#define PG 4096u
#define HOLE_OFF (MB / 2)
#define HOLE_LEN (64 * PG)

struct peer {
	struct pair *p;
	mrl_rmr *r;
	unsigned char w[PG], rd[PG];
	uint64_t ops, failed;
	int last_err;
};

static int op_wait(struct peer *v)
{
	struct mrl_completion c;
	if (pair_wait(v->p, &c, T_HANG_MS))
		return -ETIMEDOUT;
	return c.status;
}

/* An operation the peer posted (ret: what the post returned), waited for
 * and counted. */
static int peer_done(struct peer *v, int ret)
{
	if (!ret)
		ret = op_wait(v);
	v->ops++;
	if (ret) {
		v->failed++;
		v->last_err = ret;
	}
	return ret;
}

static int peer_write(struct peer *v, uint64_t off, int byte)
{
	memset(v->w, byte, PG);
	return peer_done(v, mrl_write(v->r, off, v->w, PG, NULL));
}

static int peer_read(struct peer *v, uint64_t off)
{
	return peer_done(v, mrl_read(v->r, off, v->rd, PG, NULL));
}

static bool all(const unsigned char *b, int c, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (b[i] != c)
			return false;
	return true;
}

/* Peer operations (away from the hole) until an event of type for mr
 * comes on the owner: the peer answers the owner's pause meanwhile. */
static int stream_until(struct peer *v, mrl_ctx *sctx, mrl_mr_t mr, uint32_t type,
			struct mrl_event *ev)
{
	for (uint64_t until = t_now_ns() + T_HANG_MS * 1000000ull; t_now_ns() < until;) {
		while (mrl_event_get(sctx, ev) == 0) {
			bool hit = ev->mr == mr && ev->type == type;
			mrl_event_ack(sctx, ev);
			if (hit)
				return 0;
		}
		uint64_t off = (v->ops % 8) * PG;
		if (!peer_write(v, off, 0x10 + (int)(v->ops % 7)))
			peer_read(v, off);
	}
	return -ETIMEDOUT;
}

/* The exit status of pid, the peer streaming meanwhile: a breaker that
 * retries may break the file again, and that break waits for the peer. */
static int stream_wait(struct peer *v, pid_t pid)
{
	int st = 0;
	while (waitpid(pid, &st, WNOHANG) == 0) {
		uint64_t off = (v->ops % 8) * PG;
		if (!peer_write(v, off, 0x20))
			peer_read(v, off);
	}
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* mrl_mr_restore, again while a change to the file is still landing
 * (-EAGAIN: a breaker that retried after the lease was taken back breaks it
 * once more); the peer keeps going meanwhile. */
static int restore(struct peer *v, mrl_ctx *sctx, mrl_mr_t mr)
{
	int ret;
	while ((ret = mrl_mr_restore(sctx, mr)) == -EAGAIN)
		if (!peer_write(v, 0, 0x11))
			peer_read(v, 0);
	return ret;
}

static void run(struct pair *pp, const char *fs)
{
	struct pair p = *pp;
	char dir[256], path[300];
	t_scratch(fs, dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/f", dir);
	t_make_file(path, MB);
	void *v;
	REQUIRE(mrl_file_map(p.sctx, path, 0, MB, PROT_READ | PROT_WRITE, &v) == 0, "map");
	unsigned char *fp = v;
	memset(fp, 0x3c, MB);
	struct mrl_reg_opts o = {.size = sizeof(o), .policy = MRL_POLICY_REDIRECT};
	mrl_mr_t mr;
	REQUIRE(mrl_mr_reg(p.sctx, fp, MB, MRL_ACCESS_REMOTE_READ | MRL_ACCESS_REMOTE_WRITE, &o, &mr) == 0,
		"register with policy redirect: %s", mrl_last_error());
	struct mrl_mr_info in = t_query(p.sctx, mr);
	uint64_t key = in.key;
	struct peer pe = {.p = &p};
	REQUIRE(mrl_rmr_open(p.cpeer, mr, T_HANG_MS, &pe.r) == 0, "the peer opens the MR");

	/* control: the peer's bytes reach the file */
	REQUIRE(peer_write(&pe, 20 * PG, 0x61) == 0 && all(fp + 20 * PG, 0x61, PG),
		"control: a write reaches the file");
	memset(fp + 20 * PG, 0x3c, PG);

	/* the break, under the peer's operations */
	pid_t punch = t_sh_bg("fallocate --punch-hole -o %u -l %u %s", HOLE_OFF, HOLE_LEN, path);
	struct mrl_event ev = {0};
	int got = stream_until(&pe, p.sctx, mr, MRL_EVENT_REDIRECTED, &ev);
	CHECK(stream_wait(&pe, punch) == 0, "the hole punch ran");
	REQUIRE(got == 0, "the owner is told the MR was redirected");
	printf("%s: redirected: cause %s, range %llu+%llu; peer: %llu operations, %llu failed\n",
	       fs, mrl_cause_str(ev.cause), (unsigned long long)ev.offset, (unsigned long long)ev.length,
	       (unsigned long long)pe.ops, (unsigned long long)pe.failed);
	CHECK(ev.cause != MRL_CAUSE_NONE, "the event names a cause");
	in = t_query(p.sctx, mr);
	CHECK(in.redirected == 1 && in.key == key && in.state == MRL_STATE_ACTIVE,
	      "redirected, active, the remote key unchanged (%#llx -> %#llx)", (unsigned long long)key,
	      (unsigned long long)in.key);
	/* the file as the punch left it: 0x3c (and whatever the stream wrote
	 * before the break, in its first 8 pages), zeros in the hole */
	CHECK(all(fp + 8 * PG, 0x3c, HOLE_OFF - 8 * PG) && all(fp + HOLE_OFF, 0, HOLE_LEN),
	      "the file holds its bytes and the hole");

	/* after the break: writes complete into scratch, reads see zeros */
	uint64_t failed0 = pe.failed;
	int wr = peer_write(&pe, 100 * PG, 0x5a);
	int wr2 = peer_write(&pe, HOLE_OFF, 0x5b);
	CHECK(wr == 0 && wr2 == 0, "the peer's writes after the break complete (%d, %d)", wr, wr2);
	CHECK(all(fp + 100 * PG, 0x3c, PG), "... and none of their bytes reach the file");
	CHECK(all(fp + HOLE_OFF, 0, PG), "... nor the file's new pages in the hole");
	int rd = peer_read(&pe, 200 * PG);
	CHECK(rd == 0 && all(pe.rd, 0, PG), "a read after the break returns zeros (%d, first byte %#x)",
	      rd, pe.rd[0]);
	rd = peer_read(&pe, HOLE_OFF + PG);
	CHECK(rd == 0 && all(pe.rd, 0, PG), "a read in the hole returns zeros");
	CHECK(pe.failed == failed0, "no operation failed on the redirected MR");

	/* back onto the file: the peer answers the restore's pause */
	int ret = restore(&pe, p.sctx, mr);
	REQUIRE(ret == 0, "mrl_mr_restore: %s", mrl_last_error());
	REQUIRE(stream_until(&pe, p.sctx, mr, MRL_EVENT_RESTORED, &ev) == 0, "restored");
	in = t_query(p.sctx, mr);
	CHECK(in.redirected == 0 && in.key == key && in.state == MRL_STATE_ACTIVE,
	      "back on the file under the same key (%d, %#llx)", in.redirected, (unsigned long long)in.key);
	CHECK(peer_write(&pe, 100 * PG, 0x6d) == 0 && all(fp + 100 * PG, 0x6d, PG),
	      "after the restore a write reaches the file");
	fp[150 * PG] = 0x42;
	CHECK(peer_read(&pe, 150 * PG) == 0 && pe.rd[0] == 0x42, "and a read returns the file's bytes");
	printf("%s: peer: %llu operations, %llu failed (last %d)\n", fs, (unsigned long long)pe.ops,
	       (unsigned long long)pe.failed, pe.last_err);
	CHECK(pe.failed == 0, "the peer saw 0 failed operations");
	struct mrl_stats st = {.size = sizeof(st)};
	CHECK(mrl_ctx_stats(p.sctx, &st) == 0 && st.redirects >= 1, "counted (%llu redirects)",
	      (unsigned long long)st.redirects);

	/* a truncate to half the MR, the system's tool (it retries while a
	 * lease makes it wait) */
	pid_t tr = t_sh_bg("until truncate -s %u %s 2>/dev/null; do sleep 0.005; done", MB / 2, path);
	got = stream_until(&pe, p.sctx, mr, MRL_EVENT_REDIRECTED, &ev);
	CHECK(stream_wait(&pe, tr) == 0, "the truncate ran");
	REQUIRE(got == 0, "truncate: redirected");
	printf("%s: truncate: redirected, cause %s\n", fs, mrl_cause_str(ev.cause));
	struct stat sb;
	CHECK(stat(path, &sb) == 0 && sb.st_size == MB / 2, "the file is half the MR now");
	failed0 = pe.failed;
	wr = peer_write(&pe, 3 * MB / 4, 0x77);
	rd = peer_read(&pe, 7 * MB / 8);
	CHECK(wr == 0 && rd == 0 && all(pe.rd, 0, PG),
	      "past the new end: the write completes, the read returns zeros (%d, %d)", wr, rd);
	CHECK(peer_write(&pe, 10 * PG, 0x78) == 0 && all(fp + 10 * PG, 0x3c, PG),
	      "before it: a write completes into scratch, the file keeps its bytes");
	CHECK(stat(path, &sb) == 0 && sb.st_size == MB / 2, "the file did not grow");
	CHECK(pe.failed == failed0, "no operation failed on the redirected MR");
	REQUIRE(restore(&pe, p.sctx, mr) == 0, "mrl_mr_restore: %s", mrl_last_error());
	got = stream_until(&pe, p.sctx, mr, MRL_EVENT_FENCED, &ev);
	CHECK(got == 0 && ev.cause == MRL_CAUSE_TRUNCATED && ev.offset == MB / 2,
	      "the restore fences past the new end: cause %s at %llu", mrl_cause_str(ev.cause),
	      (unsigned long long)ev.offset);
	REQUIRE(stream_until(&pe, p.sctx, mr, MRL_EVENT_RESTORED, &ev) == 0, "restored after the truncate");
	in = t_query(p.sctx, mr);
	CHECK(in.redirected == 0 && in.key == key && in.valid_length == MB / 2,
	      "back on the file, same key, half served (%llu)", (unsigned long long)in.valid_length);
	failed0 = pe.failed;
	CHECK(peer_write(&pe, 3 * MB / 4, 0x79) == -EKEYREVOKED, "past the end: refused, -EKEYREVOKED");
	CHECK(peer_write(&pe, 10 * PG, 0x7a) == 0 && all(fp + 10 * PG, 0x7a, PG),
	      "before it: a write reaches the file");
	CHECK(pe.failed == failed0 + 1, "only the refused one failed");

	mrl_rmr_close(pe.r);
	mrl_mr_dereg(p.sctx, mr);
	mrl_file_unmap(p.sctx, fp, MB);
	unlink(path);
	rmdir(dir);
}

int main(void)
{
	struct pair p;
	pair_open(&p);
	run(&p, "tmpfs");
	run(&p, "ext4");
	struct mrl_reg_opts o = {.size = sizeof(o), .policy = MRL_POLICY_REDIRECT};

	/* a provider that cannot: mock registrar, refused at registration */
	mrl_ctx *m = t_ctx("mock", 1000);
	void *a = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	mrl_mr_t x;
	CHECK(mrl_mr_reg(m, a, PG, 0, &o, &x) == -EOPNOTSUPP, "a device that cannot redirect: -EOPNOTSUPP (%s)",
	      mrl_last_error());
	o.policy = 99;
	CHECK(mrl_mr_reg(m, a, PG, 0, &o, &x) == -EINVAL, "an unknown policy: -EINVAL");
	munmap(a, PG);
	mrl_ctx_destroy(m);
	pair_close(&p);
	return t_done("t_redirect_fabric");
}
