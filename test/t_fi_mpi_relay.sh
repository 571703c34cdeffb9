#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
# The MPI proof across two network namespaces, as on two hosts, the state
# board carried by the board relay (MRLEASE_FI_RELAY=PORT on both sides,
# fi/relay.c): unmodified Open MPI one-sided (osc/rdma over btl/ofi,
# sockets) with FI_HOOK=mrlease, rank 0 in namespace A, rank 1 in B (their
# daemons started through an rsh agent running `ip netns exec`), each side
# with its own board directory (two hosts share none; t_fi_mpi_netns.sh
# shows the job ending without the relay). Each side's hook serves its
# host's boards and asks the other's about keys it finds on no board of its
# own. Asserted: rank 1's board is on its side alone, both sides relay, and
# the proof of test/fi_mpi_rig.sh holds: punches under streaming verified
# MPI_Put/MPI_Get resolved under the same key, then a truncate: the tail is
# fenced, the initiator in A discards operations past the cut through its
# copy of B's entry, no abort, no SIGBUS, 0 errors and 0 lost bytes below
# the cut. With btl/ofi's scalable endpoints off and on.
set -u
. "$(dirname "$0")/fi_netns_rig.sh"

fail=0
# each side's hook relays its host's boards on this port and asks the
# other side's relay about keys it finds on no board of its own
export MRLEASE_FI_RELAY=7431
BOARD_B=$top/boards-b
export AGENT_ENV="MRLEASE_FI_BOARD_DIR=$BOARD_B MRLEASE_FI_RELAY=7431"
MPI_EXTRA="$MPI_EXTRA -x MRLEASE_FI_RELAY"
for nosep in 1 0; do
	one sockets $nosep || fail=1
	if [ -n "$mpid" ]; then kill $mpid 2>/dev/null; wait $mpid 2>/dev/null; mpid=; fi
	[ "$(grep -c "relay: serving this host's state boards on port 7431" "$dir/log")" = 2 ] ||
		{ echo "not both sides relayed their boards"; fail=1; }
done
exit $fail
