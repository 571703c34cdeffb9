/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Truncates by open(O_TRUNC) and truncate(1) from another process, under a
 * peer streaming verified RMA writes and reads: `: > FILE`, `cp OTHER FILE`,
 * `truncate -s 0 FILE`, on ext4 (fanotify: the O_TRUNC open is held at its
 * FAN_OPEN_PERM) and tmpfs (the lease). The owner lives (no SIGBUS), every MR
 * is fenced past the new end with cause truncated and the peer knows it, no
 * transfer fails except into a fenced range, and no read returns bytes the
 * peer did not write under the generation it wrote them in. */
#include <sys/mman.h>

#include "rig_pair.h"

#define MB (1u << 20)
#define NMR 4
#define BLK 4096u
#define WARM 40   /* verified transfers before the change */
#define AFTER 40  /* transfers after the change's process is done */

struct tally {
	int ok, refused, fenced_fail, bad, mismatch, checked;
	uint64_t fail_off[NMR]; /* lowest offset a transfer failed at, per MR */
};

/* one write then, if it went through, a read of the same block; verified
 * when both ran under one generation */
static void transfer(struct pair *p, mrl_rmr **r, int k, struct tally *t)
{
	int i = k % NMR;
	uint64_t off = (uint64_t)((k / NMR) % 64) * BLK;
	static char buf[BLK], rd[BLK];
	for (size_t j = 0; j < BLK; j++)
		buf[j] = (char)(k * 31 + j);
	struct mrl_completion c;
	int ret = mrl_write(r[i], off, buf, BLK, (void *)1);
	if (ret == -EKEYREVOKED) {
		t->refused++;
		return;
	}
	if (ret) {
		t->bad++;
		fprintf(stderr, "write post MR %d +%llu: %d\n", i, (unsigned long long)off, ret);
		return;
	}
	REQUIRE(pair_wait(p, &c, T_HANG_MS) == 0, "write completed");
	if (c.status) {
		if (c.status == -EKEYREVOKED) {
			t->fenced_fail++;
			if (off < t->fail_off[i])
				t->fail_off[i] = off;
		} else {
			t->bad++;
			fprintf(stderr, "write MR %d +%llu: status %d cause %s\n", i, (unsigned long long)off,
				c.status, mrl_cause_str(c.cause));
		}
		return;
	}
	uint32_t gen = c.generation;
	ret = mrl_read(r[i], off, rd, BLK, (void *)2);
	if (ret == -EKEYREVOKED) {
		t->refused++;
		return;
	}
	REQUIRE(ret == 0, "read posted (%d)", ret);
	REQUIRE(pair_wait(p, &c, T_HANG_MS) == 0, "read completed");
	if (c.status) {
		if (c.status == -EKEYREVOKED) {
			t->fenced_fail++;
			if (off < t->fail_off[i])
				t->fail_off[i] = off;
		} else {
			t->bad++;
		}
		return;
	}
	t->ok++;
	if (c.generation == gen) {
		t->checked++;
		if (memcmp(rd, buf, BLK))
			t->mismatch++;
	}
}

static void run(const char *fs, const char *what)
{
	char dir[256], path[300], other[300];
	t_scratch(fs, dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/f", dir);
	snprintf(other, sizeof(other), "%s/other", dir);
	t_make_file(path, NMR * MB);
	t_make_file(other, 100 * 1024);
	struct pair p;
	pair_open(&p);
	bool fan = !strcmp(fs, "ext4") && (mrl_ctx_watchers(p.sctx) & MRL_WATCH_FANOTIFY);
	printf("-- %s (%s): %s\n", fs, fan ? "fanotify" : "lease", what);
	void *a;
	mrl_mr_t mr[NMR];
	mrl_rmr *r[NMR];
	pair_serve_file(&p, path, NMR, MB, &a, mr);
	struct mrl_mr_info in = t_query(p.sctx, mr[0]);
	int row = strncmp(what, "truncate", 8) ? MRL_CHG_OTHER_OPEN_TRUNC : MRL_CHG_OTHER_TRUNCATE;
	CHECK(in.coverage[row] == MRL_SEEN_BEFORE, "'%s' claimed before (%s)", mrl_change_str(row),
	      mrl_seen_str(in.coverage[row]));
	CHECK(in.watchers & (fan ? MRL_WATCH_FANOTIFY : MRL_WATCH_LEASE), "watchers %#x", in.watchers);
	for (int i = 0; i < NMR; i++)
		REQUIRE(mrl_rmr_open(p.cpeer, mr[i], T_HANG_MS, &r[i]) == 0, "open remote MR %d", i);

	struct tally t = {0};
	for (int i = 0; i < NMR; i++)
		t.fail_off[i] = UINT64_MAX;
	int k = 0;
	for (; k < WARM; k++)
		transfer(&p, r, k, &t);
	CHECK(t.ok == WARM && t.mismatch == 0, "warm-up: %d of %d verified", t.ok, WARM);

	pid_t pid;
	if (!strcmp(what, ": > FILE"))
		pid = t_sh_bg(": > %s", path);
	else if (!strcmp(what, "cp OTHER FILE"))
		pid = t_sh_bg("cp %s %s", other, path);
	else /* coreutils opens O_NONBLOCK: against a lease it retries */
		pid = t_sh_bg("for i in $(seq 300); do truncate -s 0 %s 2>/dev/null && exit 0; "
			      "sleep 0.1; done; exit 1", path);
	int st = 0;
	while (waitpid(pid, &st, WNOHANG) == 0)
		transfer(&p, r, k++, &t);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "'%s' ran (status %#x)", what, st);
	for (int n = 0; n < AFTER; n++)
		transfer(&p, r, k++, &t);

	/* the owner's view, once the monitor has resolved it: every MR fenced
	 * past the file's end (all of it under fanotify: the new end was 0) */
	struct stat fst;
	REQUIRE(stat(path, &fst) == 0, "stat");
	uint64_t size = (uint64_t)fst.st_size, end = fan ? 0 : size;
	bool settled = false;
	for (uint64_t until = t_now_ns() + T_HANG_MS * 1000000ull; !settled && t_now_ns() < until;) {
		settled = true;
		for (int i = 0; i < NMR; i++) {
			in = t_query(p.sctx, mr[i]);
			uint64_t avail = end > (uint64_t)i * MB ? end - (uint64_t)i * MB : 0;
			settled &= in.state != MRL_STATE_PAUSED && in.valid_length <= avail &&
				   in.cause == MRL_CAUSE_TRUNCATED;
		}
		if (!settled)
			usleep(1000);
	}
	CHECK(settled, "every MR fenced past the new end (%llu) with cause truncated",
	      (unsigned long long)end);
	for (int i = 0; i < NMR; i++) {
		in = t_query(p.sctx, mr[i]);
		printf("   MR %d: %s valid %llu cause %s gen %u\n", i, mrl_state_str(in.state),
		       (unsigned long long)in.valid_length, mrl_cause_str(in.cause), in.generation);
		CHECK(t.fail_off[i] == UINT64_MAX || t.fail_off[i] + BLK > in.valid_length,
		      "MR %d: a transfer failed at %llu, inside the %llu bytes still served", i,
		      (unsigned long long)t.fail_off[i], (unsigned long long)in.valid_length);
	}
	bool fenced_ev = false;
	struct mrl_event ev;
	while (mrl_event_get(p.sctx, &ev) == 0) {
		fenced_ev |= ev.type == MRL_EVENT_FENCED && ev.cause == MRL_CAUSE_TRUNCATED;
		mrl_event_ack(p.sctx, &ev);
	}
	CHECK(fenced_ev, "the owner got a fenced event, cause truncated");
	/* the peer's view: the last MR lies wholly past the end */
	struct mrl_rmr_info ri = {.size = sizeof(ri)};
	struct mrl_completion c;
	for (uint64_t until = t_now_ns() + T_HANG_MS * 1000000ull; t_now_ns() < until;) {
		mrl_ep_poll(p.cep, &c, 1);
		mrl_rmr_query(r[NMR - 1], &ri);
		if (ri.state == MRL_STATE_FENCED)
			break;
		usleep(1000);
	}
	CHECK(ri.state == MRL_STATE_FENCED && ri.cause == MRL_CAUSE_TRUNCATED,
	      "the peer knows the last MR is fenced, cause truncated (%s, %s)", mrl_state_str(ri.state),
	      mrl_cause_str(ri.cause));
	char buf[BLK];
	CHECK(mrl_read(r[NMR - 1], 0, buf, BLK, NULL) == -EKEYREVOKED, "a read past the end is refused");
	printf("   %d verified transfers (%d compared), %d refused, %d failed in fenced ranges, "
	       "%d bad, %d mismatched\n", t.ok, t.checked, t.refused, t.fenced_fail, t.bad, t.mismatch);
	CHECK(t.bad == 0, "%d transfers failed other than into a fenced range", t.bad);
	CHECK(t.mismatch == 0, "%d reads returned bytes not written under their generation", t.mismatch);

	pair_unserve_file(&p, NMR, MB, a, mr, r);
	unlink(path);
	unlink(other);
	rmdir(dir);
}

int main(void)
{
	static const char *const what[] = {": > FILE", "cp OTHER FILE", "truncate -s 0 FILE"};
	for (size_t i = 0; i < 3; i++) {
		run("ext4", what[i]);
		run("tmpfs", what[i]);
	}
	return t_done("t_otrunc");
}
