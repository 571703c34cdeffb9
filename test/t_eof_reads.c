/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Reads and writes past a file's new end, before the owner has seen it. A
 * peer streams RMA reads and writes (tcp;ofi_rxm, loopback) over a whole
 * file MR and an anonymous MR while truncate(1) cuts the file in half;
 * another process keeps the file open (no lease: the owner sees the
 * truncate only after it landed). tcp sends a read's bytes straight from
 * the owner's pages: past the new end that send would fail inside the
 * kernel (EFAULT, no signal) and the provider would drop the connection.
 * Every read that completes with success returns, byte for byte, zeros,
 * the file's first content or the peer's own writes there (never someone
 * else's bytes, never a stream out of step); every operation on the file's
 * first half and on the anonymous MR succeeds; those past the new end
 * succeed or fail alone with -EKEYREVOKED and the owner's cause. */
#include "rma_stream.h"
#include "ep_int.h"

static const char *const cname[] = {"head", "tail", "anon"};

int main(void)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	char dir[256], path[300];
	t_scratch("tmpfs", dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/f", dir);
	t_make_file(path, MB);
	struct rs g = {.reads = true, .tail_reads = true};
	rs_hold(&g, path);

	struct pair p;
	pair_open(&p);
	rs_open(&g, &p, path);
	CHECK(!t_query(p.sctx, g.mr[0]).lease_held, "no lease on the file (another opener)");

	/* MRL_TEST_NO_PRECHECK=1: without the owner's size check (shows what it prevents) */
	mrl_sb_test_no_precheck = getenv("MRL_TEST_NO_PRECHECK") != NULL;
	struct st s = {0};
	struct mrl_mr_info mi;
	uint64_t checks0 = mrl_sb_checks;
	CHECK(rs_truncate_stream(&g, path, &s, 3000, &mi) == 0, "truncate ran");
	for (int i = 0; i < NCLASS; i++)
		printf("%s: %d ok (%d reads looked at, %d with foreign bytes), %d revoked, %d refused at post, "
		       "%d other\n", cname[i], s.ok[i], s.reads_ok[i], s.bad_reads[i], s.revoked[i], s.refused[i],
		       s.other[i]);
	printf("owner: file MR valid %llu, cause %s; size checks %llu; peer: ops posted again after a drop "
	       "%llu\n", (unsigned long long)mi.valid_length, mrl_cause_str(mi.cause),
	       (unsigned long long)(mrl_sb_checks - checks0), (unsigned long long)p.cep->op_retries);
	CHECK(s.reads_ok[HEAD] > 100 && s.reads_ok[TAIL] > 10 && s.reads_ok[ANON] > 100, "reads were looked at");
	CHECK(s.bad_reads[HEAD] + s.bad_reads[TAIL] + s.bad_reads[ANON] == 0,
	      "no read returned a byte that is neither zero, the file's, nor the peer's own (first: %s offset "
	      "%llu byte %#x)", cname[s.bad_class], (unsigned long long)s.bad_off, s.bad_byte);
	CHECK(mi.valid_length == MB / 2 && mi.state == MRL_STATE_ACTIVE && mi.cause != MRL_CAUSE_NONE,
	      "the owner fenced the tail and kept the head");
	CHECK(s.other[HEAD] + s.other[TAIL] + s.other[ANON] == 0, "no operation failed but with -EKEYREVOKED "
	      "(last %d)", s.other_err);
	CHECK(s.revoked[HEAD] + s.refused[HEAD] + s.revoked[ANON] + s.refused[ANON] == 0,
	      "no operation on the head or the anonymous MR was refused");
	uint32_t owner_causes = 1u << MRL_CAUSE_TRUNCATED | 1u << mi.cause;
	CHECK(!(s.causes & ~owner_causes), "the tail's were refused with the owner's causes (mask %#x, owner %s)",
	      s.causes, mrl_cause_str(mi.cause));
	CHECK(s.anon_after >= 3000, "the anonymous MR went on (%d ok)", s.anon_after);
	CHECK(s.inflight[HEAD] + s.inflight[TAIL] + s.inflight[ANON] == 0, "every operation completed");

	rs_close(&g);
	t_sh("rm -rf %s", dir);
	return t_done("t_eof_reads");
}
