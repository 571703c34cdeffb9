#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
# `mrlease demo --device mpi`: an unmodified Open MPI one-sided job (test/mpi_win)
# under FI_HOOK=mrlease with a hole punched in, then a truncate of, rank 1's
# window in the middle. Asserted from its summary (--json): the job started
# and ended normally, no error, no block lost below the cut, blocks past the
# cut read back as zeroes (the hook discarded operations there), the hook
# logged the breaks and the fence; exit 0. Without the hook (--no-lease) the
# same job does not end normally (SIGBUS, or spinning until killed) and the
# demo still exits 0, saying so.
set -u
B=${MRL_BIN:-build}
command -v mpirun >/dev/null || { echo "SKIP: Open MPI not installed (scripts/setup.sh installs it)"; exit 77; }
[ "$(id -u)" = 0 ] || { echo "SKIP: fanotify pre-content events need root"; exit 77; }
[ -x "$B/mrlease" ] && [ -x "$B/test/mpi_win" ] || { echo "no $B/mrlease or $B/test/mpi_win (make tests builds them)"; exit 1; }
num() { echo "$1" | sed -n "s/.*\"$2\":\([0-9]*\).*/\1/p"; }
str() { echo "$1" | sed -n "s/.*\"$2\":\"\([^\"]*\)\".*/\1/p"; }
fail=0
js=$("$B/mrlease" demo --device mpi --json --quiet); rc=$?
echo "hooked: $js"
[ $rc = 0 ] || { echo "the demo with the hook exited $rc"; fail=1; }
echo "$js" | grep -q '"leases":true,.*"started":true,.*"normal":true' || { echo "the hooked job did not start and end normally"; fail=1; }
[ "$(num "$js" errors)" = 0 ] && [ "$(num "$js" lost_below_cut)" = 0 ] || { echo "errors or lost blocks with the hook"; fail=1; }
[ "$(num "$js" past_cut)" -gt 0 ] && [ "$(num "$js" discarded)" -gt 0 ] || { echo "nothing was cut or discarded past the end"; fail=1; }
[ "$(num "$js" breaks)" -ge 1 ] && [ "$(num "$js" fences)" -ge 1 ] || { echo "the hook logged no break or no fence"; fail=1; }
js=$("$B/mrlease" demo --device mpi --json --quiet --no-lease); rc=$?
echo "unhooked: $js"
[ $rc = 0 ] || { echo "the demo without the hook exited $rc"; fail=1; }
echo "$js" | grep -q '"leases":false,.*"started":true,.*"normal":false' ||
	{ echo "without the hook the job was expected to end badly"; fail=1; }
[ "$(str "$js" job)" != "ended normally" ] || fail=1
exit $fail
