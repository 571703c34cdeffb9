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
# 3. A board per side again, carried by the board relay
#    (MRLEASE_FI_RELAY=PORT on both sides, fi/relay.c): each side's hook
#    serves its host's boards and asks the other's about keys it finds on no
#    board of its own. Rank 1's board is only on its side; the same proof as
#    1 holds (punches held, the truncated tail discarded by the initiator in
#    namespace A through its mirror of B's entry, no abort, 0 lost below the
#    cut), with scalable endpoints off and on.
set -u
B=${MRL_BIN:-build}
command -v mpirun >/dev/null || { echo "SKIP: Open MPI not installed (scripts/setup.sh installs it)"; exit 77; }
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root for ip netns (and fanotify)"; exit 77; }
command -v ip >/dev/null || { echo "SKIP: iproute2 (ip) not installed"; exit 77; }
top=$(mktemp -d /var/tmp/mrl-fimpins-XXXXXX)
[ "$(stat -f -c %T "$top")" != tmpfs ] || { rm -rf "$top"; echo "SKIP: /var/tmp is tmpfs"; exit 77; }
a=mrl-mpa-$$ b=mrl-mpb-$$ va=mrlma$$ vb=mrlmb$$
A=198.51.100.1 Bip=198.51.100.2
mpid= BOARD_B=
cleanup() {
	[ -n "$mpid" ] && kill $mpid 2>/dev/null && wait $mpid 2>/dev/null
	# a rank left behind in a namespace (the job killed under it)
	for ns in "$a" "$b"; do
		for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
		ip netns del "$ns" 2>/dev/null
	done
	rm -rf "$top"
}
trap cleanup EXIT
trap 'exit 1' TERM INT
ip netns add "$a" && ip netns add "$b" || { echo "SKIP: cannot create network namespaces"; exit 77; }
ip link add "$va" type veth peer name "$vb" || { echo "SKIP: cannot create a veth pair"; exit 77; }
ip link set "$va" netns "$a" && ip link set "$vb" netns "$b" || exit 1
ip -n "$a" addr add $A/24 dev "$va" && ip -n "$b" addr add $Bip/24 dev "$vb" || exit 1
ip -n "$a" link set "$va" up && ip -n "$b" link set "$vb" up || exit 1
ip -n "$a" link set lo up && ip -n "$b" link set lo up

# the rsh agent: HOST COMMAND... run by a shell in HOST's namespace
# (AGENT_ENV: assignments for that side only)
cat > "$top/agent" <<EOF
#!/bin/sh
host=\$1; shift
case \$host in
$A) ns=$a;;
$Bip) ns=$b;;
*) echo "agent: unknown host \$host" >&2; exit 1;;
esac
exec ip netns exec "\$ns" env \${AGENT_ENV:-} /bin/sh -c "\$*"
EOF
chmod 755 "$top/agent"
SIZE=65536 STRICT=32768 CUT=49152
MPI_PRE="ip netns exec $a"
MPI_EXTRA="--host $A,$Bip --mca plm_rsh_agent $top/agent -x FI_PROVIDER_PATH -x FI_HOOK -x MRLEASE_LOG
 --mca oob_tcp_if_include 198.51.100.0/24 --mca btl_tcp_if_include 198.51.100.0/24"
. "$(dirname "$0")/fi_mpi_rig.sh"

# the ranks run in the two namespaces: rank 1 (the owner of win.1) in B, rank 0 in A
on_start() {
	local p1 p0
	p1=$(sed -n 's/^mrlease\[\([0-9]*\)\]: leased key .*\/win\.1)$/\1/p' "$dir/log" | head -1)
	p0=$(sed -n 's/^mrlease\[\([0-9]*\)\]: leased key .*\/win\.0)$/\1/p' "$dir/log" | head -1)
	[ -n "$p0" ] && [ -n "$p1" ] || { echo "no window leased in one of the ranks"; return 1; }
	[ "$(ip netns identify "$p0")" = "$a" ] && [ "$(ip netns identify "$p1")" = "$b" ] ||
		{ echo "rank 0 ($p0) in '$(ip netns identify "$p0")', rank 1 ($p1) in '$(ip netns identify "$p1")': want $a and $b"; return 1; }
	echo "rank 0 (pid $p0) in namespace $a, rank 1 (pid $p1) in namespace $b"
	# part 3: rank 1's board is in its own directory, which rank 0 never reads
	[ -z "${BOARD_B:-}" ] || ls "$BOARD_B"/board.$p1.* > /dev/null 2>&1 ||
		{ echo "rank 1 did not publish its board on its own side ($BOARD_B)"; return 1; }
	[ -z "${BOARD_B:-}" ] || ! ls /dev/shm/mrlease-fi/board.$p1.* > /dev/null 2>&1 ||
		{ echo "rank 1's board is on rank 0's side too"; return 1; }
}

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

echo "== 3. a board per side, carried by the board relay (MRLEASE_FI_RELAY)"
# each side's hook relays its host's boards on this port and asks the
# other side's relay about keys it finds on no board of its own
export MRLEASE_FI_RELAY=7431
export AGENT_ENV="MRLEASE_FI_BOARD_DIR=$top/relay-b MRLEASE_FI_RELAY=7431"
MPI_EXTRA="$MPI_EXTRA -x MRLEASE_FI_RELAY"
top0=$top
top=$top/relay
mkdir -p "$top"
BOARD_B=$top0/relay-b
for nosep in 1 0; do
	one sockets $nosep || fail=1
	if [ -n "$mpid" ]; then kill $mpid 2>/dev/null; wait $mpid 2>/dev/null; mpid=; fi
	[ "$(grep -c "relay: serving this host's state boards on port 7431" "$dir/log")" = 2 ] ||
		{ echo "not both sides relayed their boards"; fail=1; }
done
top=$top0
exit $fail
