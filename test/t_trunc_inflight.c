/* A truncate seen only after it lands (another process keeps the file open,
 * so no lease can be taken: coverage "after") while a peer streams RMA to
 * the whole file MR (reads; writes to the part that stays, see below) and
 * to an anonymous MR on the same connection: the operations past the new
 * end fail alone (-EKEYREVOKED, cause truncated),
 * those to the anonymous MR all succeed, none fails with ENOTCONN or
 * ECANCELED, the connection and the owner stay up. (Issue 13 item 3, the
 * data path half.) */
#include <sys/mman.h>

#include "rig_pair.h"
#include "ep_int.h"

#define MB (1u << 20)
#define DEPTH 16
#define OPLEN 16384

struct st {
	int ok[2], revoked[2], other[2], other_err, refused;
	uint32_t cause;
};

int main(void)
{
	char dir[256], path[300];
	t_scratch("tmpfs", dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/f", dir);
	t_make_file(path, MB);
	/* an opener from before registration: the owner cannot lease the file */
	pid_t reader = t_sh_bg("exec sleep 600 < %s", path);
	/* wait (event, not time) until the reader holds it open */
	for (uint64_t hang = t_now_ns() + T_HANG_MS * 1000000ull; t_now_ns() < hang;)
		if (t_sh("ls -l /proc/%d/fd 2>/dev/null | grep -q %s", reader, path) == 0)
			break;

	struct pair p;
	pair_open(&p);
	void *fp;
	REQUIRE(mrl_file_map(p.sctx, path, 0, MB, PROT_READ | PROT_WRITE, &fp) == 0, "map");
	char *anon = mmap(NULL, MB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(anon != MAP_FAILED, "mmap");
	unsigned rw = MRL_ACCESS_REMOTE_READ | MRL_ACCESS_REMOTE_WRITE;
	mrl_mr_t mr[2];
	REQUIRE(mrl_mr_reg(p.sctx, fp, MB, rw, NULL, &mr[0]) == 0, "file MR: %s", mrl_last_error());
	REQUIRE(mrl_mr_reg(p.sctx, anon, MB, rw, NULL, &mr[1]) == 0, "anonymous MR");
	struct mrl_mr_info mi = {.size = sizeof(mi)};
	mrl_mr_query(p.sctx, mr[0], &mi);
	printf("file MR: lease held %d\n", mi.lease_held);

	mrl_rmr *r[2];
	for (int i = 0; i < 2; i++)
		REQUIRE(mrl_rmr_open(p.cpeer, mr[i], T_HANG_MS, &r[i]) == 0, "open %d", i);
	static char buf[DEPTH * 2][OPLEN];
	struct st s = {0};
	int inflight[2] = {0}, n = 0;
	bool cut = false;
	pid_t tr = -1;
	int after_cut = 0;
	uint64_t hang = t_now_ns() + T_HANG_MS * 1000000ull;
	/* stream until the truncate is in and 3000 more ops completed on the anonymous MR */
	int mark = -1;
	while (t_now_ns() < hang && (mark < 0 || s.ok[1] < mark + 3000)) {
		for (int i = 0; i < 2; i++)
			while (inflight[i] < DEPTH) {
				/* MR 0: reads all over the file, tail included; writes to
				 * the head only: a write past the new end that reaches
				 * the owner before it has seen the truncate is copied into
				 * a page past EOF by the provider (ofi_bsock's memcpy) and
				 * the owner dies of SIGBUS, the other half of issue 13
				 * item 3 (catching SIGBUS on an MR's pages), not the data
				 * path's. A read there fails in the kernel (EFAULT from
				 * sendmsg) and costs the connection: the data path's. */
				uint64_t off = (uint64_t)((n * 37) % (MB / OPLEN)) * OPLEN;
				if (i == 0 && !(n & 1))
					off %= MB / 2;
				void *b = buf[i * DEPTH + inflight[i]];
				void *uc = (void *)(uintptr_t)(i + 1);
				int ret = n & 1 ? mrl_read(r[i], off, b, OPLEN, uc) : mrl_write(r[i], off, b, OPLEN, uc);
				n++;
				if (ret == -EKEYREVOKED) {
					s.refused++;
					continue;
				}
				if (ret) {
					s.other[i]++;
					s.other_err = ret;
					break;
				}
				inflight[i]++;
				if (s.refused > 100000)
					break;
			}
		struct mrl_completion c[16];
		int got = mrl_ep_poll(p.cep, c, 16);
		for (int k = 0; k < got; k++) {
			int i = (int)(uintptr_t)c[k].op_context - 1;
			inflight[i]--;
			if (!c[k].status)
				s.ok[i]++;
			else if (c[k].status == -EKEYREVOKED)
				s.revoked[i]++, s.cause = c[k].cause;
			else
				s.other[i]++, s.other_err = c[k].status;
		}
		if (!cut && s.ok[0] + s.ok[1] > 400) {
			tr = t_sh_bg("truncate -s %d %s", MB / 2, path);
			cut = true;
		}
		if (cut && mark < 0) {
			mrl_mr_query(p.sctx, mr[0], &mi);
			if (mi.valid_length <= MB / 2) /* the owner has seen it */
				mark = s.ok[1];
		}
		after_cut += cut;
	}
	while (inflight[0] + inflight[1] > 0 && t_now_ns() < hang) {
		struct mrl_completion c[16];
		int got = mrl_ep_poll(p.cep, c, 16);
		for (int k = 0; k < got; k++) {
			int i = (int)(uintptr_t)c[k].op_context - 1;
			inflight[i]--;
			if (!c[k].status)
				s.ok[i]++;
			else if (c[k].status == -EKEYREVOKED)
				s.revoked[i]++, s.cause = c[k].cause;
			else
				s.other[i]++, s.other_err = c[k].status;
		}
	}
	struct mrl_rmr_info q0 = {.size = sizeof(q0)}, q1 = {.size = sizeof(q1)};
	mrl_rmr_query(r[0], &q0);
	mrl_rmr_query(r[1], &q1);
	printf("peer's view: file MR %s valid %llu, %llu in flight %llu held; anon MR %llu in flight; "
	       "last in flight %d/%d\n", mrl_state_str(q0.state), (unsigned long long)q0.valid_length,
	       (unsigned long long)q0.inflight, (unsigned long long)q0.held,
	       (unsigned long long)q1.inflight, inflight[0], inflight[1]);
	CHECK(tr > 0 && t_wait_status(tr) == 0, "truncate ran");
	mrl_mr_query(p.sctx, mr[0], &mi);
	printf("file MR: %s, valid %llu; ops: file %d ok %d revoked, anon %d ok %d revoked; refused at post %d; "
	       "other %d/%d (last %d)\n",
	       mrl_state_str(mi.state), (unsigned long long)mi.valid_length, s.ok[0], s.revoked[0], s.ok[1],
	       s.revoked[1], s.refused, s.other[0], s.other[1], s.other_err);
	CHECK(mark >= 0 && mi.valid_length == MB / 2, "the owner saw the truncate: the tail is fenced");
	CHECK(s.ok[1] >= (mark < 0 ? 0 : mark) + 3000 && s.revoked[1] == 0 && s.other[1] == 0,
	      "every operation on the anonymous MR succeeded");
	CHECK(s.other[0] == 0, "no operation on the file MR failed other than -EKEYREVOKED (%d, last %d)",
	      s.other[0], s.other_err);
	CHECK(s.refused > 0 || s.revoked[0] > 0, "operations past the new end were refused");
	printf("ops posted again after the provider dropped the connection: %llu\n",
	       (unsigned long long)p.cep->op_retries);
	struct mrl_rmr_info ri = {.size = sizeof(ri)};
	mrl_rmr_query(r[1], &ri);
	CHECK(ri.state == MRL_STATE_ACTIVE, "the anonymous MR is still active");

	kill(reader, SIGTERM);
	t_wait_status(reader);
	for (int i = 0; i < 2; i++) {
		mrl_rmr_close(r[i]);
		mrl_mr_dereg(p.sctx, mr[i]);
	}
	mrl_file_unmap(p.sctx, fp, MB);
	pair_close(&p);
	munmap(anon, MB);
	unlink(path);
	rmdir(dir);
	return t_done("t_trunc_inflight");
}
