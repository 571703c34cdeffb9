#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
# The MPI proof across two network namespaces joined by a veth pair
# (TEST-NET-2 addresses, made and removed here): mpirun runs in namespace A
# with rank 0, and starts rank 1's daemon in namespace B through an rsh
# agent that runs `ip netns exec B` (--host by address, no /etc/hosts), so
# every byte between the ranks crosses the veth. Unmodified Open MPI
# one-sided (osc/rdma over btl/ofi, sockets) with FI_HOOK=mrlease.
#
# 1. As on one host: namespaces share the host's /dev/shm and pids, so the
#    initiator's hook finds the target's state board. Punches and a
#    truncate of rank 1's window file (test/fi_mpi_rig.sh): every break
#    resolved under the same key, no abort, no SIGBUS, 0 errors and 0 lost
#    bytes below the cut, operations past the cut discarded by the
#    initiator in namespace A (which it can only do from B's board).
# 2. As across hosts: each side gets its own board directory
#    (MRLEASE_FI_BOARD_DIR), which is what two hosts have today (the board
#    is same-host; no cross-host carrier yet). What is true then, asserted:
#    the target's hook still sees the truncate before it lands and fences
#    the tail (logged: key, file, cause, actor), the initiator's hook finds
#    no board, so it can neither hold nor discard, and its puts past the
#    end meet the fence's remote error; Open MPI's btl/ofi ends the job on
#    it (no SIGBUS, no lost byte below the cut before the end).
# (t_fi_mpi_relay.sh: a board per side carried by the board relay.)
set -u
. "$(dirname "$0")/fi_netns_rig.sh"

fail=0
echo "== 1. one host's state board, two network namespaces"
export AGENT_ENV=
one sockets 0 || fail=1
if [ -n "$mpid" ]; then kill $mpid 2>/dev/null; wait $mpid 2>/dev/null; mpid=; fi

echo "== 2. a board per side, as on two hosts"
dir=$top/hosts
mkdir -p "$dir"
export AGENT_ENV="MRLEASE_FI_BOARD_DIR=$dir/boards-b"
for r in 0 1; do head -c $SIZE /dev/urandom > "$dir/win.$r"; done
FI_PROVIDER_PATH="$(realpath "$(dirname "$so")")" FI_HOOK=mrlease MRLEASE_LOG="$dir/log" \
	$MPI_PRE mpirun $MPI_EXTRA --allow-run-as-root -np 2 --mca pml ob1 --mca btl self,tcp,ofi \
	--mca btl_ofi_provider_include sockets --mca osc rdma --mca osc_rdma_btls ofi \
	"$prog" "$dir" $STRICT "$dir/stop" > "$dir/out" 2>&1 &
mpid=$!
wait_for '[ "$(passes0)" -ge 1 ] || ! alive' && alive || { echo "the job did not start:"; cat "$dir/out"; exit 1; }
on_start || fail=1
key=$(sed -n 's/.*\]: leased key \(0x[0-9a-f]*\) .*('"${dir//\//\\/}"'\/win.1)$/\1/p' "$dir/log")
ls "$dir/boards-b"/board.* > /dev/null 2>&1 || { echo "rank 1 published no board in its own directory"; fail=1; }
echo "before the truncate: rank 0 $(grep '^stats rank 0' "$dir/out" | tail -1)"
truncate -s $CUT "$dir/win.1"
# the job ends by itself: rank 0's next put past the cut meets the fence
wait $mpid; rc=$?; mpid=
grep -q "break: key $key file $dir/win.1 bytes $CUT+$((SIZE - CUT)) cause truncated pid [1-9]" "$dir/log" &&
	grep -q "fence: key $key file $dir/win.1 bytes $CUT+$((SIZE - CUT)) cause truncated" "$dir/log" ||
	{ echo "the target's hook did not see and fence the truncate:"; cat "$dir/log"; fail=1; }
grep -q "restore: key $key file $dir/win.1 bytes 0+$CUT cause truncated .*same key" "$dir/log" ||
	{ echo "the head below the cut was not restored under the same key"; fail=1; }
[ $rc != 0 ] && grep -q "BTL OFI will now abort" "$dir/out" ||
	{ echo "expected btl/ofi to end the job on the fence's error (exit $rc):"; tail -20 "$dir/out"; fail=1; }
! grep -qi "bus error\|signal 7" "$dir/out" || { echo "SIGBUS:"; cat "$dir/out"; fail=1; }
[ "$(field0 errors)" = 0 ] && [ "$(field0 strict_bad)" = 0 ] ||
	{ echo "rank 0 lost operations or bytes below the cut before the end"; fail=1; }
# the job is killed, so a summary is not promised; where there is one, nothing was held or discarded
if grep -Eq "summary: .* [1-9][0-9]* posts held|summary: .* [1-9][0-9]* discarded" "$dir/log"; then
	echo "an initiator held or discarded operations without the other side's board"; fail=1
fi
echo "across boards: truncate seen and fenced by the target's hook, the initiator not told; btl/ofi ended the job (exit $rc), no SIGBUS, 0 lost below the cut"

exit $fail
