/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* UCX's memory hooks (libucm) beside mrlease: with the preload library in
 * and an MR registered, a UCM_EVENT_VM_UNMAPPED handler still sees every
 * byte of 10 MiB the program unmaps, the registered range included, and
 * mrlease has fenced that range before UCX is told (before the unmap). */
#include <dlfcn.h>
#include <stdatomic.h>
#include <sys/mman.h>

#include "helpers.h"

#if __has_include(<ucm/api/ucm.h>)
#include <ucm/api/ucm.h>
#define HAVE_UCM_H 1
#endif

#define MIB (1u << 20)
#define BIG (10u * MIB)

#ifdef HAVE_UCM_H
static char *area;
static atomic_ulong seen;      /* bytes of area reported unmapped */
static atomic_ullong mr_seen_ns; /* when the registered piece was reported */
static char *mr_piece;
static pid_t unmapper; /* the thread that unmaps area: other threads may map
			  and unmap inside it once pieces are free (a new
			  malloc arena trims its mapping) */

static void on_unmapped(ucm_event_type_t type, ucm_event_t *ev, void *arg)
{
	(void)arg;
	if (type != UCM_EVENT_VM_UNMAPPED || gettid() != unmapper)
		return;
	uintptr_t a = (uintptr_t)ev->vm_unmapped.address, b = a + ev->vm_unmapped.size;
	uintptr_t lo = (uintptr_t)area, hi = lo + BIG;
	if (b <= lo || a >= hi)
		return;
	a = a < lo ? lo : a;
	b = b > hi ? hi : b;
	atomic_fetch_add(&seen, b - a);
	if (a <= (uintptr_t)mr_piece && (uintptr_t)mr_piece < b && !atomic_load(&mr_seen_ns))
		atomic_store(&mr_seen_ns, t_now_ns());
}
#endif

int main(void)
{
#ifndef HAVE_UCM_H
	t_skip("ucm/api/ucm.h not installed (libucx-dev)");
#else
	/* libucm names no libucs it needs (ucs_load_modules): load that first */
	dlopen("libucs.so.0", RTLD_NOW | RTLD_GLOBAL);
	void *lib = dlopen("libucm.so.0", RTLD_NOW | RTLD_GLOBAL);
	if (!lib)
		t_skip("libucm not installed (libucx-dev): %s", dlerror());
	ucs_status_t (*set_handler)(int, int, ucm_event_callback_t, void *) =
		(ucs_status_t(*)(int, int, ucm_event_callback_t, void *))dlsym(lib, "ucm_set_event_handler");
	REQUIRE(set_handler != NULL, "ucm_set_event_handler in libucm");

	mrl_ctx *ctx = t_ctx("mock", 1000);
	REQUIRE(mrl_ctx_watchers(ctx) & MRL_WATCH_INTERPOSE, "the preload library is what callers reach");
	ucs_status_t st = set_handler(UCM_EVENT_VM_UNMAPPED, 0, on_unmapped, NULL);
	REQUIRE(st == UCS_OK, "UCX installs its unmap hooks beside ours (status %d)", (int)st);

	area = mmap(NULL, BIG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(area != MAP_FAILED, "map 10 MiB");
	memset(area, 7, BIG);
	mr_piece = area + 4 * MIB;
	unmapper = gettid();
	mrl_mr_t mr;
	REQUIRE(mrl_mr_reg(ctx, mr_piece, MIB, MRL_ACCESS_REMOTE_WRITE, NULL, &mr) == 0, "register 1 MiB of it");
	for (unsigned i = 0; i < 10; i++)
		CHECK(munmap(area + (size_t)i * MIB, MIB) == 0, "munmap piece %u", i);
	unsigned long got = atomic_load(&seen);
	printf("UCX saw %lu of %u bytes unmapped\n", got, BIG);
	CHECK(got == BIG, "UCX's handler saw every byte (%lu of %u)", got, BIG);

	struct mrl_mr_info in = t_query(ctx, mr);
	CHECK(in.state == MRL_STATE_FENCED && in.cause == MRL_CAUSE_UNMAPPED, "the MR is fenced, cause unmapped (%s)",
	      mrl_cause_str(in.cause));
	struct mrl_event ev;
	uint64_t t_fence = 0;
	while (mrl_event_get(ctx, &ev) == 0) {
		if (ev.mr == mr && ev.type == MRL_EVENT_FENCED && ev.pid == getpid() && !t_fence)
			t_fence = ev.time_ns;
		mrl_event_ack(ctx, &ev);
	}
	CHECK(t_fence && atomic_load(&mr_seen_ns) && t_fence <= atomic_load(&mr_seen_ns),
	      "mrlease fenced (%llu) before UCX heard of the unmap (%llu)", (unsigned long long)t_fence,
	      (unsigned long long)atomic_load(&mr_seen_ns));
	mrl_mr_dereg(ctx, mr);
	mrl_ctx_destroy(ctx);
	return t_done("t_ucm");
#endif
}
