/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* A stopped owner (SIGSTOP while serving) holds nobody past its deadline:
 * the guardian process lets a read, a punch and a truncate by the system's
 * tools go at deadline + margin -- fanotify on ext4, the lease on tmpfs and
 * on ext4 -- and once continued the owner announces every change that went
 * through (new generation, or a fence past the new end). A second round
 * proves the guardian watches again what the owner took back. */
#include "guard_rig.h"

int main(void)
{
	return rig_main("t_guardian_stop", HOLD_STOP);
}
