/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* An owner whose monitor is deadlocked (a thread busy with the context's
 * lock held) holds nobody past its deadline: events the monitor published
 * before it blocked, events it never read and lease breaks it never saw
 * are let go by the guardian at deadline + margin; once the lock is let go
 * the owner announces every change that went through. */
#include "guard_rig.h"

static void rig_hold(struct owner *o)
{
	say(o->cmd, 'h'); /* a thread of the owner takes the context's lock and keeps it */
	REQUIRE(hear(o->res) == 'l', "owner holds its lock");
	CHECK(proc_state(o->pid) != 'T' && (o->guard < 0 || proc_state(o->guard) != 'T'),
	      "the owner runs (only its monitor is stuck), and so does its guardian");
}

static void rig_release(struct owner *o)
{
	say(o->cmd, 'u'); /* the lock goes: the monitor announces what went through */
}

int main(void)
{
	return rig_main("t_guardian_hung", HOLD_LOCK);
}
