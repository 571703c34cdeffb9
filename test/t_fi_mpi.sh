#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
# The MPI proof: unmodified Open MPI one-sided (osc/rdma over btl/ofi), both
# ranks with FI_HOOK=mrlease, run on sockets with btl/ofi's scalable
# endpoints (its default) and without them (btl_ofi_disable_sep), and on
# udp;ofi_rxd; the hook's summary proves which endpoints it wrapped. Each
# rank maps a file (ext4, where fanotify holds a change back) MAP_SHARED and
# exposes it with MPI_Win_create; the ranks stream verified MPI_Put/MPI_Get
# at each other (test/mpi_win.c) while this script punches holes in rank 1's
# file with fallocate. Asserted: every break is resolved (logged, restored
# under the same key), rank 0's operations keep succeeding (none fails, none
# reads back other than it wrote in the half nobody punches), no abort.
# Then a truncate of rank 1's file below its window's end: under an MPI
# launcher the hook discards operations wholly past the new end (a Put lands
# nowhere, a Get reads zeroes, both complete: Open MPI's btl/ofi aborts the
# job on any error, so a refusal would end it). Asserted: the tail is fenced
# and logged, the job goes on (no abort, no SIGBUS), rank 0 still sees no
# error and no lost byte below the cut, the blocks past it read back what
# they are (zeroes: counted as other_bad), and the job ends normally.
set -u
B=${MRL_BIN:-build}
command -v mpirun >/dev/null || { echo "SKIP: Open MPI not installed (scripts/setup.sh installs it)"; exit 77; }
[ "$(id -u)" = 0 ] || { echo "SKIP: fanotify pre-content events need root"; exit 77; }
top=$(mktemp -d /var/tmp/mrl-fimpi-XXXXXX)
[ "$(stat -f -c %T "$top")" != tmpfs ] || { rm -rf "$top"; echo "SKIP: /var/tmp is tmpfs"; exit 77; }
mpid=
cleanup() { [ -n "$mpid" ] && kill $mpid 2>/dev/null; wait $mpid 2>/dev/null; rm -rf "$top"; }
trap cleanup EXIT
trap 'exit 1' TERM INT
SIZE=65536 STRICT=32768 CUT=49152
. "$(dirname "$0")/fi_mpi_rig.sh"

fail=0
for c in "sockets 0" "sockets 1" "udp;ofi_rxd 1"; do
	one ${c% *} ${c#* } || fail=1
	if [ -n "$mpid" ]; then kill $mpid 2>/dev/null; wait $mpid 2>/dev/null; mpid=; fi
done
exit $fail
