/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* A rename over a served file (mv OTHER FILE, sed -i) and its removal (rm
 * FILE), on ext4 and tmpfs, under a peer streaming verified RMA writes and
 * reads. Nothing can hold them (no watcher sees a rename or an unlink before
 * it lands); inotify sees them after: the owner gets CHANGED with cause
 * replaced-file or unlinked, the peer a new generation with that cause. The
 * MRs keep serving the file they registered (now nameless): no transfer
 * fails, and the peer's bytes land in that file, never in the one that took
 * its name. */
#include <sys/mman.h>

#include "rig_pair.h"

#define MB (1u << 20)
#define NMR 2
#define BLK 4096u

struct tally {
	int ok, bad, mismatch;
	uint32_t last_gen;
	uint64_t last_off;
	int last_i;
	char last[BLK];
};

static void transfer(struct pair *p, mrl_rmr **r, int k, struct tally *t)
{
	int i = k % NMR;
	uint64_t off = (uint64_t)((k / NMR) % 64) * BLK;
	char buf[BLK], rd[BLK];
	for (size_t j = 0; j < BLK; j++)
		buf[j] = (char)(k * 13 + j);
	struct mrl_completion c;
	if (mrl_write(r[i], off, buf, BLK, NULL) || pair_wait(p, &c, T_HANG_MS) || c.status) {
		t->bad++;
		return;
	}
	uint32_t gen = c.generation;
	if (mrl_read(r[i], off, rd, BLK, NULL) || pair_wait(p, &c, T_HANG_MS) || c.status) {
		t->bad++;
		return;
	}
	t->ok++;
	if (c.generation == gen && memcmp(rd, buf, BLK))
		t->mismatch++;
	t->last_gen = c.generation;
	t->last_i = i;
	t->last_off = off;
	memcpy(t->last, buf, BLK);
}

static void run(const char *fs, const char *what)
{
	char dir[256], path[300], other[300];
	t_scratch(fs, dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/f", dir);
	snprintf(other, sizeof(other), "%s/other", dir);
	t_make_file(path, NMR * MB);
	int ofd = open(other, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	REQUIRE(ofd >= 0 && write(ofd, "other\n", 6) == 6, "make the other file");
	close(ofd);
	struct pair p;
	pair_open(&p);
	printf("-- %s: %s\n", fs, what);
	void *a;
	mrl_mr_t mr[NMR];
	mrl_rmr *r[NMR];
	pair_serve_file(&p, path, NMR, MB, &a, mr);
	int row = strcmp(what, "rm FILE") ? MRL_CHG_OTHER_RENAME : MRL_CHG_OTHER_UNLINK;
	int want = strcmp(what, "rm FILE") ? MRL_CAUSE_REPLACED_FILE : MRL_CAUSE_UNLINKED;
	struct mrl_mr_info in = t_query(p.sctx, mr[0]);
	CHECK(in.coverage[row] == MRL_SEEN_AFTER, "'%s' claimed after (%s)", mrl_change_str(row),
	      mrl_seen_str(in.coverage[row]));
	for (int i = 0; i < NMR; i++)
		REQUIRE(mrl_rmr_open(p.cpeer, mr[i], T_HANG_MS, &r[i]) == 0, "open remote MR %d", i);
	struct tally t = {0};
	int k = 0;
	for (; k < 20; k++)
		transfer(&p, r, k, &t);
	struct mrl_rmr_info ri = {.size = sizeof(ri)};
	mrl_rmr_query(r[0], &ri);
	uint32_t gen0 = ri.generation;

	pid_t pid;
	if (!strcmp(what, "mv OTHER FILE"))
		pid = t_sh_bg("mv %s %s", other, path);
	else if (!strcmp(what, "sed -i"))
		pid = t_sh_bg("sed -i -e '1s/^/x/' %s", path);
	else
		pid = t_sh_bg("rm %s", path);
	int st = 0;
	while (waitpid(pid, &st, WNOHANG) == 0)
		transfer(&p, r, k++, &t);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "'%s' ran (status %#x)", what, st);

	/* the owner hears of it; stream on meanwhile */
	bool changed[NMR] = {0};
	int nchanged = 0;
	for (uint64_t until = t_now_ns() + T_HANG_MS * 1000000ull; nchanged < NMR && t_now_ns() < until;) {
		struct mrl_event ev;
		while (mrl_event_get(p.sctx, &ev) == 0) {
			for (int i = 0; i < NMR; i++)
				if (ev.mr == mr[i] && ev.type == MRL_EVENT_CHANGED && ev.cause == (uint32_t)want &&
				    !changed[i]) {
					changed[i] = true;
					nchanged++;
				}
			mrl_event_ack(p.sctx, &ev);
		}
		transfer(&p, r, k++, &t);
	}
	CHECK(nchanged == NMR, "the owner got CHANGED, cause %s, on %d of %d MRs", mrl_cause_str(want),
	      nchanged, NMR);
	/* the peer learns it: a new generation, with the cause */
	for (uint64_t until = t_now_ns() + T_HANG_MS * 1000000ull; t_now_ns() < until;) {
		transfer(&p, r, k++, &t);
		mrl_rmr_query(r[0], &ri);
		if (ri.cause == (uint32_t)want && ri.generation != gen0)
			break;
	}
	CHECK(ri.cause == (uint32_t)want && ri.generation != gen0,
	      "the peer sees cause %s (%s) under a new generation (%u, was %u)", mrl_cause_str(want),
	      mrl_cause_str(ri.cause), ri.generation, gen0);
	for (int n = 0; n < 40; n++)
		transfer(&p, r, k++, &t);
	printf("   %d verified transfers, %d failed, %d mismatched; peer generation %u -> %u\n", t.ok,
	       t.bad, t.mismatch, gen0, ri.generation);
	CHECK(t.bad == 0, "%d transfers failed", t.bad);
	CHECK(t.mismatch == 0, "%d reads returned other bytes under one generation", t.mismatch);
	/* the last bytes the peer wrote are in the registered (now nameless)
	 * file, and the file that took the name never saw them */
	CHECK(!memcmp((char *)a + (size_t)t.last_i * MB + t.last_off, t.last, BLK),
	      "the peer's last write is in the registered file");
	if (!strcmp(what, "mv OTHER FILE")) {
		char now[64] = "";
		int fd = open(path, O_RDONLY);
		ssize_t n = fd >= 0 ? read(fd, now, sizeof(now)) : -1;
		if (fd >= 0)
			close(fd);
		CHECK(n == 6 && !memcmp(now, "other\n", 6), "the file that took the name is untouched");
	}
	pair_unserve_file(&p, NMR, MB, a, mr, r);
	unlink(path);
	unlink(other);
	rmdir(dir);
}

int main(void)
{
	static const char *const what[] = {"mv OTHER FILE", "sed -i", "rm FILE"};
	for (size_t i = 0; i < 3; i++) {
		run("ext4", what[i]);
		run("tmpfs", what[i]);
	}
	return t_done("t_rename");
}
