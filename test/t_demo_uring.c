/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* `mrlease demo --device uring` end to end: a producer process, the owner's
 * READ_FIXED into a tmpfs file, an adversary running fallocate --punch-hole
 * and truncate. Leases off: bytes the kernel wrote never reach the file.
 * Leases on: zero lost, every punch a break, the truncates fenced.
 * --policy redirect: zero lost, zero READ_FIXED failed, pages read into
 * scratch while changes landed, every redirect moved back. */
#include "helpers.h"

static double num(const char *js, const char *key)
{
	char k[64];
	snprintf(k, sizeof(k), "\"%s\":", key);
	const char *p = strstr(js, k);
	return p ? strtod(p + strlen(k), NULL) : -1;
}

static int run(const char *bin, const char *args, char *out, size_t outsz)
{
	char cmd[768];
	snprintf(cmd, sizeof(cmd), "%s/mrlease demo --device uring --json %s", bin, args);
	return t_capture(cmd, out, outsz);
}

int main(int argc, char **argv)
{
	char js[4096], bin[512] = "build";
	(void)argc;
	/* the CLI of this test's own build tree */
	snprintf(bin, sizeof(bin), "%s", argv[0]);
	char *slash = strrchr(bin, '/');
	if (slash && slash - bin >= 5 && !strncmp(slash - 5, "/test", 5))
		slash[-5] = 0;
	else
		snprintf(bin, sizeof(bin), "build");

	int st = run(bin, "--no-lease --seconds 3", js, sizeof(js));
	if (st == 2 && num(js, "error") != 0)
		t_skip("io_uring refused here (error %.0f): nothing to show", num(js, "error"));
	CHECK(st == 0, "leases off: demo ran (%d)", st);
	CHECK(num(js, "pages") > 0, "leases off: the stream flowed");
	CHECK(num(js, "punches") > 0, "leases off: the adversary punched");
	CHECK(num(js, "lost_bytes") > 0, "leases off: the hazard shows (bytes written into orphaned pages)");

	st = run(bin, "--seconds 3", js, sizeof(js));
	CHECK(st == 0, "leases on: demo exits 0 (%d)", st);
	CHECK(num(js, "pages") > 0, "leases on: the stream flowed");
	CHECK(num(js, "verified") > 0, "leases on: pages were read back");
	CHECK(num(js, "lost_bytes") == 0, "leases on: zero bytes lost");
	CHECK(num(js, "punches") > 0 && num(js, "breaks") >= num(js, "punches"),
	      "leases on: every punch was a break");
	CHECK(num(js, "restores") > 0, "leases on: restores happened");
	CHECK(num(js, "truncates") == 0 || num(js, "fences") >= num(js, "truncates"),
	      "leases on: each truncate to zero fenced the MR");
	CHECK(num(js, "tool_errors") == 0, "the adversary's tools all succeeded");

	st = run(bin, "--policy redirect --seconds 3", js, sizeof(js));
	CHECK(st == 0, "redirect: demo exits 0 (%d)", st);
	CHECK(num(js, "pages") > 0 && num(js, "verified") > 0, "redirect: the stream flowed, pages read back");
	CHECK(num(js, "failed") == 0, "redirect: no READ_FIXED failed");
	CHECK(num(js, "lost_bytes") == 0, "redirect: zero bytes lost");
	CHECK(num(js, "punches") > 0 && num(js, "redirects") > 0,
	      "redirect: the changes redirected the slot (%.0f redirects)", num(js, "redirects"));
	CHECK(num(js, "restores") > 0, "redirect: moved back onto the file");
	return t_done("t_demo_uring");
}
