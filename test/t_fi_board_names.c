/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Two hooked owners on one host with the same key (a provider's keys are
 * small integers, so this is the common case): an initiator finds the
 * entry of the process its operation goes to, by the destination's address
 * as the owner wrote it on its board when its endpoint was enabled, never
 * the other owner's; an address no board names, or a key an owner has
 * twice, resolves to nothing (the operation is posted as it is); a cached
 * answer follows the entry's retraction. Before the boards carried their
 * owners' addresses, the key alone decided: two owners with key 0 made the
 * lookup ambiguous (unguarded) or, cached, the other owner's (t_fi_hook
 * beside a second hooked process: writes past a truncated end went to the
 * provider and dropped the connection). fi/board.c linked in. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/wait.h>

#include <rdma/fabric.h>
#include <rdma/fi_domain.h>

#include "../fi/board.h"
#include "../fi/hook.h"
#include "helpers.h"

#define KEY 0ull

static struct sockaddr_in addr_of(uint16_t port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return a;
}

int main(void)
{
	static char dir[] = "/tmp/mrl-boardnames-XXXXXX";
	REQUIRE(mkdtemp(dir) && chmod(dir, 01777) == 0, "a board directory");
	setenv("MRLEASE_FI_BOARD_DIR", dir, 1);
	setenv("MRLEASE_LOG", "/dev/null", 1);

	/* an address vector as an initiator has one: three owners' addresses */
	struct fi_info *hints = fi_allocinfo(), *info;
	hints->ep_attr->type = FI_EP_RDM;
	hints->caps = FI_RMA | FI_MSG;
	hints->fabric_attr->prov_name = strdup("tcp;ofi_rxm");
	if (fi_getinfo(FI_VERSION(1, 9), "127.0.0.1", NULL, FI_SOURCE, hints, &info))
		t_skip("no tcp;ofi_rxm provider here");
	fi_freeinfo(hints);
	struct fid_fabric *fab;
	struct fid_domain *dom;
	struct fid_av *av;
	struct fi_av_attr aa = {.type = FI_AV_TABLE};
	REQUIRE(fi_fabric(info->fabric_attr, &fab, NULL) == 0 && fi_domain(fab, info, &dom, NULL) == 0 &&
			fi_av_open(dom, &aa, &av, NULL) == 0,
		"fabric, domain, address vector");
	struct sockaddr_in a = addr_of(41001), b = addr_of(41002), c = addr_of(41003);
	fi_addr_t fa, fb, fc;
	REQUIRE(fi_av_insert(av, &a, 1, &fa, 0, NULL) == 1 && fi_av_insert(av, &b, 1, &fb, 0, NULL) == 1 &&
			fi_av_insert(av, &c, 1, &fc, 0, NULL) == 1,
		"three addresses inserted");

	/* owner A: this process, key 0 over 1 MiB; owner B: a child, key 0
	 * over 64 KiB (and, later, key 7 twice) */
	board_add_name(&a, sizeof(a));
	struct board_ent *ea = board_publish(KEY, 0, 1 << 20, BT_REFUSE);
	REQUIRE(ea, "A published key 0");
	int go[2], ready[2];
	REQUIRE(pipe(go) == 0 && pipe(ready) == 0, "pipes");
	pid_t pid = fork();
	if (pid == 0) {
		char ch;
		board_add_name(&b, sizeof(b));
		struct board_ent *eb = board_publish(KEY, 0, 64 << 10, BT_REFUSE);
		(void)!write(ready[1], eb ? "p" : "x", 1);
		(void)!read(go[0], &ch, 1); /* retract key 0, publish key 7 twice */
		board_retract(eb);
		board_publish(7, 0, 4096, BT_REFUSE);
		board_publish(7, 8192, 4096, BT_REFUSE);
		(void)!write(ready[1], "r", 1);
		(void)!read(go[0], &ch, 1);
		_exit(0);
	}
	char ch = 0;
	REQUIRE(read(ready[0], &ch, 1) == 1 && ch == 'p', "B published key 0");

	/* each destination its own owner's entry (a scan comes at most every
	 * 50 ms: look until B's board is seen) */
	struct board_ent *fb0 = NULL;
	for (uint64_t t0 = t_now_ns(); !(fb0 = board_find(av, fb, KEY)) && t_now_ns() - t0 < T_HANG_MS * 1000000ull;)
		usleep(5000);
	struct board_ent *fa0 = board_find(av, fa, KEY);
	CHECK(fa0 && fa0->len == 1 << 20, "to A, key 0 is A's MR (len %llu)",
	      fa0 ? (unsigned long long)fa0->len : 0ull);
	CHECK(fb0 && fb0->len == 64 << 10, "to B, key 0 is B's MR (len %llu)",
	      fb0 ? (unsigned long long)fb0->len : 0ull);
	CHECK(board_find(av, fa, KEY) == fa0 && board_find(av, fb, KEY) == fb0,
	      "and again (cached): each its own");
	CHECK(board_find(av, fc, KEY) == NULL, "an address no board names: nothing (posted as it is)");
	CHECK(board_find(NULL, fa, KEY) == NULL, "no address vector: nothing");
	CHECK(board_find_key(KEY) == NULL, "the key alone is ambiguous: the relay's lookup says nothing");

	/* B retracts key 0 and has key 7 twice */
	REQUIRE(write(go[1], "g", 1) == 1 && read(ready[0], &ch, 1) == 1 && ch == 'r', "B changed");
	CHECK(board_find(av, fb, KEY) == NULL, "to B, key 0 is gone: the cached answer is not kept");
	CHECK(board_find(av, fa, KEY) == fa0, "to A, key 0 is still A's");
	CHECK(board_find(av, fb, 7) == NULL, "a key B has twice: nothing");
	CHECK(board_find_key(KEY) == fa0, "now the key alone names one entry: A's");

	REQUIRE(write(go[1], "g", 1) == 1, "B may go");
	CHECK(t_wait_status(pid) == 0, "B exited");
	board_retract(ea);
	fi_close(&av->fid);
	fi_close(&dom->fid);
	fi_close(&fab->fid);
	fi_freeinfo(info);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd)) {
	}
	return t_done("t_fi_board_names");
}
