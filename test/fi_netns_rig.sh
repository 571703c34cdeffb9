# SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
# Sourced by test/t_fi_mpi_netns.sh and t_fi_mpi_relay.sh: two network
# namespaces joined by a veth pair (TEST-NET-2 addresses, made and removed
# here), an rsh agent that starts a host's command in its namespace
# (AGENT_ENV: assignments for that side only), mpirun's prefix and
# arguments for a job with rank 0 in A and rank 1 in B, and the MPI rig
# (test/fi_mpi_rig.sh) with on_start checking where the ranks run (and,
# with BOARD_B set, that rank 1's board is on its side alone).
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
	# BOARD_B: rank 1's board is in its own directory, which rank 0 never reads
	[ -z "${BOARD_B:-}" ] || ls "$BOARD_B"/board.$p1.* > /dev/null 2>&1 ||
		{ echo "rank 1 did not publish its board on its own side ($BOARD_B)"; return 1; }
	[ -z "${BOARD_B:-}" ] || ! ls /dev/shm/mrlease-fi/board.$p1.* > /dev/null 2>&1 ||
		{ echo "rank 1's board is on rank 0's side too"; return 1; }
}

