/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* End to end through the CLI, real processes and real tools: a server exports
 * a file over tcp;ofi_rxm, a client streams verified RMA writes and reads, an
 * adversary runs fallocate --punch-hole, truncate and cat. With leases: zero
 * failed transfers, zero mismatched bytes, and the final bytes are in the file.
 * Without: the hazard shows (failures, silent changes, or a dead server). */
#include "helpers.h"

static double num(const char *js, const char *key)
{
	char k[64];
	snprintf(k, sizeof(k), "\"%s\":", key);
	const char *p = strstr(js, k);
	return p ? strtod(p + strlen(k), NULL) : -1;
}

static int run(const char *args, char *out, size_t outsz)
{
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "%s/mrlease demo --json --quiet %s", getenv("MRL_BIN") ? getenv("MRL_BIN") : "build", args);
	return t_capture(cmd, out, outsz);
}

int main(int argc, char **argv)
{
	char js[4096];
	(void)argc;
	/* find the CLI next to this test's build tree */
	char bin[512];
	snprintf(bin, sizeof(bin), "%s", argv[0]);
	char *slash = strrchr(bin, '/');
	if (slash && slash - bin >= 5 && !strncmp(slash - 5, "/test", 5)) {
		slash[-5] = 0;
		setenv("MRL_BIN", bin, 0);
	}
	struct mrl_ctx_opts fo = {.size = sizeof(fo), .provider = "mock"};
	mrl_ctx *fctx;
	bool fan = false;
	if (mrl_ctx_create(&fo, &fctx) == 0) {
		fan = mrl_ctx_watchers(fctx) & MRL_WATCH_FANOTIFY;
		mrl_ctx_destroy(fctx);
	}
	for (int i = 0; i < 2; i++) {
		const char *fs = i ? "tmpfs" : "ext4";
		char args[128];
		snprintf(args, sizeof(args), "--fs %s --seconds 4", fs);
		int st = run(args, js, sizeof(js));
		if (strstr(js, "provider") && st == 2)
			t_skip("libfabric tcp provider unavailable");
		CHECK(st == 0, "%s: demo with leases exits 0 (got %d)", fs, st);
		CHECK(num(js, "transfers") > 0, "%s: transfers flowed", fs);
		CHECK(num(js, "failed") == 0, "%s: zero failed transfers", fs);
		CHECK(num(js, "mismatches") == 0, "%s: zero mismatched bytes", fs);
		CHECK(num(js, "readback_mismatches") == 0, "%s: the file holds the final bytes", fs);
		CHECK(num(js, "punches") > 0 && num(js, "truncates") == 1 && num(js, "cats") >= 0,
		      "%s: the adversary ran", fs);
		CHECK(num(js, "breaks") >= num(js, "punches"), "%s: every punch was a break", fs);
		CHECK(num(js, "restores") > 0, "%s: restores happened", fs);
		CHECK(num(js, "fences") >= 1, "%s: the truncate fenced the tail", fs);
		CHECK(num(js, "refused") >= 0, "%s: refused reported", fs);
		CHECK(strstr(js, "\"server_crashed\":false") != NULL, "%s: server alive", fs);
		/* the demo says which watchers ran: fanotify on ext4 where the
		 * kernel allows, pausing only the MRs a change touches; the lease
		 * on tmpfs, pausing the whole file */
		if (i == 0 && fan) {
			CHECK(strstr(js, "\"watchers\":\"fanotify") != NULL, "ext4: fanotify ran");
			CHECK(num(js, "pauses") < num(js, "breaks") * 16,
			      "ext4: range-precise, %.0f MR pauses for %.0f breaks over 16 MRs",
			      num(js, "pauses"), num(js, "breaks"));
		}
		if (i == 1)
			CHECK(strstr(js, "\"watchers\":\"lease") != NULL, "tmpfs: the lease ran");
	}
	/* the same without leases: what the leases prevent */
	int st = run("--fs ext4 --seconds 4 --no-lease", js, sizeof(js));
	CHECK(st == 0, "no-lease demo reports (exit %d)", st);
	CHECK(num(js, "failed") > 0 || num(js, "mismatches") > 0 ||
		      strstr(js, "\"server_crashed\":true") != NULL,
	      "without leases the hazard shows");
	CHECK(num(js, "breaks") == 0, "without leases nothing is seen");
	return t_done("t_demo");
}
