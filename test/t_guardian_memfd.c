/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* A stopped owner (SIGSTOP while serving a memfd as MRs) holds nobody past
 * its deadline: another process opening /proc/OWNER/fd/N for writing is
 * let in by the guardian at deadline + margin (the memfd's lease is on the
 * library's reopen; the guardian holds a dup of it), a reader goes through
 * after it, and once continued the owner announces the writer on every MR
 * (a new generation) and takes the lease back. A second round proves the
 * guardian watches the lease it took back. */
#include "guard_rig.h"

int main(void)
{
	return rig_main_memfd("t_guardian_memfd", HOLD_STOP);
}
