/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Layout changes fanotify cannot classify from the actor's call (xfs_io's
 * reflink and dedupe within the file, XFS_IOC_ZERO_RANGE, unshare), and
 * classified ones beside them, made by another process on an xfs loop image
 * under a peer streaming verified RMA writes and reads: each is resolved as
 * soon as the peer has answered (its MRs come back: RESTORED or FENCED), the
 * peer is never cut off, and no transfer fails outside a fenced range. A
 * reflink within the file asks for two ranges in one call: the second must
 * not wait behind the first's break. */
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/mount.h>

#include "rig_pair.h"
#include "vstream.h"

#define NMR 4
#define MRSZ (1024u * 1024)

static char mnt[256], img[300];

static void cleanup(void)
{
	if (mnt[0]) {
		umount2(mnt, MNT_DETACH);
		rmdir(mnt);
	}
	if (img[0])
		unlink(img);
}

static void xfs_dir(void)
{
	if (geteuid() != 0)
		t_skip("loop mounts and fanotify need root");
	if (t_sh("command -v mkfs.xfs >/dev/null 2>&1 || test -x /usr/sbin/mkfs.xfs") ||
	    t_sh("command -v xfs_io >/dev/null 2>&1 || test -x /usr/sbin/xfs_io"))
		t_skip("mkfs.xfs or xfs_io is not installed (xfsprogs; scripts/setup.sh installs it)");
	if (access("/dev/loop-control", F_OK))
		t_skip("no loop devices here");
	snprintf(mnt, sizeof(mnt), "/var/tmp/mrl-unclass-XXXXXX");
	if (!mkdtemp(mnt)) {
		mnt[0] = 0;
		t_skip("mkdtemp: %s", strerror(errno));
	}
	snprintf(img, sizeof(img), "%.250s.img", mnt);
	if (t_sh("truncate -s 320M %s && PATH=$PATH:/usr/sbin:/sbin mkfs.xfs -q -m reflink=1 %s "
		 ">/dev/null 2>&1", img, img) ||
	    t_sh("mount -o loop %s %s", img, mnt)) {
		rmdir(mnt);
		mnt[0] = 0;
		t_skip("cannot make or mount an xfs loop image with reflink");
	}
}

/* The other process's changes; %1$s is the served file, %2$s another. */
static const char *const ops[] = {
	"reflink %1$s 0 1114112 65536",       /* within the file, forwards */
	"reflink %1$s 2162688 65536 65536",   /* within the file, backwards */
	"dedupe %1$s 0 3145728 4096",         /* three ranges in one call */
	"zero 20480 4096",                    /* XFS_IOC_ZERO_RANGE */
	"funshare 0 131072",                  /* FALLOC_FL_UNSHARE_RANGE */
	"reflink %2$s 0 1310720 65536",       /* from another file */
	"fpunch 8192 4096",
	"fzero 16384 4096",
	"fcollapse 3670016 65536",            /* the last MR's tail goes */
	"finsert 3670016 65536",
};
#define NOPS (sizeof(ops) / sizeof(ops[0]))

struct actor {
	mrl_ctx *ctx;
	mrl_mr_t mr[NMR];
	const char *path, *other;
	atomic_ulong verified;
	atomic_int done;
	int resolved[NOPS], ran[NOPS];
};

static bool settled(struct actor *a)
{
	for (int i = 0; i < NMR; i++)
		if (t_query(a->ctx, a->mr[i]).state == MRL_STATE_PAUSED)
			return false;
	return true;
}

/* Each change once the peer has verified more transfers; then wait for its
 * MRs to come back, by their events. */
static void *actor_main(void *p)
{
	struct actor *a = p;
	for (size_t k = 0; k < NOPS; k++) {
		unsigned long want = atomic_load(&a->verified) + 50;
		uint64_t hang = t_now_ns() + T_HANG_MS * 1000000ull;
		while (atomic_load(&a->verified) < want && t_now_ns() < hang)
			usleep(200);
		struct mrl_stats st = {.size = sizeof(st)};
		mrl_ctx_stats(a->ctx, &st);
		uint64_t breaks = st.breaks;
		struct mrl_event ev;
		while (t_wait_event(a->ctx, 0, 0, 0, &ev) == 0)
			;
		char cmd[160], sh[512];
		snprintf(cmd, sizeof(cmd), ops[k], a->path, a->other);
		snprintf(sh, sizeof(sh), "PATH=$PATH:/usr/sbin:/sbin xfs_io -c '%s' %s >/dev/null 2>&1", cmd,
			 a->path);
		a->ran[k] = t_sh("%s", sh);
		int broke = 0, back = 0;
		hang = t_now_ns() + T_HANG_MS * 1000000ull;
		for (;;) {
			mrl_ctx_stats(a->ctx, &st);
			if (st.breaks > breaks && back >= broke && broke > 0 && settled(a))
				break;
			if (t_now_ns() > hang)
				break;
			if (t_wait_event(a->ctx, 0, 0, 100, &ev))
				continue;
			broke += ev.type == MRL_EVENT_BREAK;
			back += ev.type == MRL_EVENT_RESTORED || ev.type == MRL_EVENT_FENCED;
		}
		a->resolved[k] = st.breaks > breaks && broke > 0 && back >= broke;
		printf("   %-34s exit %d, %d MRs paused, %d back\n", cmd, a->ran[k], broke, back);
	}
	atomic_store(&a->done, 1);
	return NULL;
}

int main(void)
{
	atexit(cleanup);
	xfs_dir();
	char path[300], other[300];
	snprintf(path, sizeof(path), "%s/f", mnt);
	snprintf(other, sizeof(other), "%s/g", mnt);
	t_make_file(path, NMR * MRSZ);
	t_make_file(other, NMR * MRSZ);

	struct pair p;
	pair_open(&p);
	if (!(mrl_ctx_watchers(p.sctx) & MRL_WATCH_FANOTIFY))
		t_skip("fanotify pre-content events unavailable (needs Linux >= 6.14 and CAP_SYS_ADMIN)");
	struct actor a = {.ctx = p.sctx, .path = path, .other = other};
	void *base;
	REQUIRE(mrl_file_map(p.sctx, path, 0, NMR * MRSZ, PROT_READ | PROT_WRITE, &base) == 0, "map");
	for (int i = 0; i < NMR; i++)
		REQUIRE(mrl_mr_reg(p.sctx, (char *)base + i * MRSZ, MRSZ,
				   MRL_ACCESS_REMOTE_READ | MRL_ACCESS_REMOTE_WRITE, NULL, &a.mr[i]) == 0,
			"register");
	if (!(t_query(p.sctx, a.mr[0]).watchers & MRL_WATCH_FANOTIFY))
		t_skip("the file on xfs is not watched by fanotify here");
	mrl_rmr *r[NMR];
	for (int i = 0; i < NMR; i++)
		REQUIRE(mrl_rmr_open(p.cpeer, a.mr[i], T_HANG_MS, &r[i]) == 0, "open remote MR %d", i);

	pthread_t th;
	pthread_create(&th, NULL, actor_main, &a);
	struct vstream s;
	vs_init(&s, p.cep, r, NMR, MRSZ);
	uint64_t hang = t_now_ns() + 4ull * T_HANG_MS * 1000000ull;
	bool hung = false;
	for (;;) {
		bool more = !atomic_load(&a.done);
		if (!more && !vs_busy(&s))
			break;
		if (t_now_ns() > hang) {
			hung = true;
			break;
		}
		if (more)
			vs_post(&s, 0);
		int n = vs_reap(&s);
		atomic_store(&a.verified, s.verified);
		if (!n)
			usleep(50);
	}
	pthread_join(th, NULL);

	for (size_t k = 0; k < NOPS; k++)
		CHECK(a.resolved[k], "'%s': its MRs were paused and came back (restored or fenced)", ops[k]);
	struct mrl_stats st = {.size = sizeof(st)};
	mrl_ctx_stats(p.sctx, &st);
	CHECK(st.peer_timeouts == 0, "the answering peer was never cut off (%llu timeouts)",
	      (unsigned long long)st.peer_timeouts);
	CHECK(!hung, "the stream went on through every change (%lu verified)", s.verified);
	CHECK(s.failed == 0, "zero failed transfers outside fenced ranges (%lu of %lu)", s.failed, s.transfers);
	CHECK(s.mismatches == 0, "zero mismatches under one generation (%lu)", s.mismatches);
	printf("transfers %lu, verified %lu, refused past the end %lu, rewritten after a change %lu, "
	       "breaks %llu, breaker held p50 %.0f us p99 %.0f us\n",
	       s.transfers, s.verified, s.refused, s.regen, (unsigned long long)st.breaks, st.pause_ns_p50 / 1e3,
	       st.pause_ns_p99 / 1e3);

	for (int i = 0; i < NMR; i++)
		mrl_rmr_close(r[i]);
	for (int i = 0; i < NMR; i++)
		mrl_mr_dereg(p.sctx, a.mr[i]);
	mrl_file_unmap(p.sctx, base, NMR * MRSZ);
	vs_free(&s);
	pair_close(&p);
	unlink(path);
	unlink(other);
	return t_done("t_unclassified");
}
