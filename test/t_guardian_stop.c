/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* A stopped owner (SIGSTOP while serving) holds nobody past its deadline:
 * the guardian process lets a read, a punch and a truncate by the system's
 * tools go at deadline + margin -- fanotify on ext4, the lease on tmpfs and
 * on ext4, the lease on a memfd's reopen (a writer and a reader opening
 * /proc/OWNER/fd/N) -- and once continued the owner announces every change that went
 * through (new generation, or a fence past the new end). A second round
 * proves the guardian watches again what the owner took back. */
#include "guard_rig.h"

static void rig_hold(struct owner *o)
{
	REQUIRE(kill(o->pid, SIGSTOP) == 0, "stop the owner");
	uint64_t until = t_now_ns() + T_HANG_MS * 1000000ull;
	while (proc_state(o->pid) != 'T' && t_now_ns() < until)
		usleep(1000);
	REQUIRE(proc_state(o->pid) == 'T', "owner stopped");
	/* the guardian is a process of its own: SIGSTOP of the owner leaves it */
	CHECK(o->guard < 0 || proc_state(o->guard) != 'T', "its guardian runs");
}

static void rig_release(struct owner *o)
{
	REQUIRE(kill(o->pid, SIGCONT) == 0, "continue the owner");
	say(o->cmd, 'c');
}

int main(void)
{
	return rig_main("t_guardian_stop", HOLD_STOP);
}
