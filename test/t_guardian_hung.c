/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* An owner whose monitor is deadlocked (a thread busy with the context's
 * lock held) holds nobody past its deadline: events the monitor published
 * before it blocked, events it never read and lease breaks it never saw
 * are let go by the guardian at deadline + margin; once the lock is let go
 * the owner announces every change that went through. */
#include "guard_rig.h"

int main(void)
{
	return rig_main("t_guardian_hung", HOLD_LOCK);
}
