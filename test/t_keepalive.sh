#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
# A silent network cut between mrlease serve and mrlease client (network
# namespaces joined by a veth pair, the link set down mid-stream): both sides
# declare the other lost by the keep-alive (default 5 s), the client's
# transfers in flight fail and it exits, and the server goes on serving another client.
set -u
bin=${MRL_BIN:-build}/mrlease
# serve and client authenticate with a shared secret (t_netns.sh: a file serve writes)
export MRLEASE_SECRET=mrlease-test-secret-6b1f0c9e
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root for ip netns"; exit 77; }
command -v ip >/dev/null || { echo "SKIP: iproute2 (ip) not installed"; exit 77; }
a=mrl-ka-a-$$ b=mrl-ka-b-$$ va=mrlka$$ vb=mrlkb$$
dir=$(mktemp -d /var/tmp/mrl-ka-XXXXXX)
cleanup() {
	[ -n "${spid:-}" ] && kill "$spid" 2>/dev/null
	[ -n "${cpid:-}" ] && kill "$cpid" 2>/dev/null
	ip netns del "$a" 2>/dev/null; ip netns del "$b" 2>/dev/null
	rm -rf "$dir"
}
trap cleanup EXIT
ip netns add "$a" && ip netns add "$b" || { echo "SKIP: cannot create network namespaces"; exit 77; }
ip link add "$va" type veth peer name "$vb" || { echo "SKIP: cannot create a veth pair"; exit 77; }
ip link set "$va" netns "$a" && ip link set "$vb" netns "$b" || exit 1
ip -n "$a" addr add 198.51.100.1/24 dev "$va" && ip -n "$b" addr add 198.51.100.2/24 dev "$vb" || exit 1
ip -n "$a" link set "$va" up && ip -n "$b" link set "$vb" up || exit 1
ip -n "$a" link set lo up && ip -n "$b" link set lo up

# MRL_DEBUG: the library logs a peer it declares lost
MRL_DEBUG=1 ip netns exec "$a" "$bin" serve "$dir/f" --addr 198.51.100.1 --port 7412 --size 8388608 --mrs 4 \
	--seconds 300 > "$dir/server.out" 2> "$dir/server.err" &
spid=$!
# waits are for events; their bounds (60 s) only detect a hang
for i in $(seq 600); do grep -q serving "$dir/server.out" && break; sleep 0.1; done
grep -q serving "$dir/server.out" || { echo "server did not start:"; cat "$dir/server.out"; exit 1; }
ip netns exec "$b" "$bin" client 198.51.100.1:7412 --machine --seconds 120 > "$dir/client.out" 2>&1 &
cpid=$!
for i in $(seq 600); do grep -Eq '^stats [1-9]' "$dir/client.out" && break; sleep 0.1; done
grep -Eq '^stats [1-9]' "$dir/client.out" || { echo "client did not stream:"; cat "$dir/client.out"; exit 1; }
ip -n "$b" link set "$vb" down || { echo "cannot set the link down"; exit 1; }
# the client ends by itself once the server is lost (well before its 120 s)
for i in $(seq 600); do kill -0 "$cpid" 2>/dev/null || break; sleep 0.1; done
fail=0
if kill -0 "$cpid" 2>/dev/null; then
	echo "FAIL: the client still runs 60 s after the cut"; fail=1
	kill "$cpid"
fi
wait "$cpid"; crc=$?; cpid=
for i in $(seq 600); do grep -q 'peer [0-9]* lost' "$dir/server.err" && break; sleep 0.1; done
echo "client: $(grep final "$dir/client.out") (exit $crc)"
echo "server: $(grep 'lost' "$dir/server.err" | head -1)"
grep -q 'peer [0-9]* lost' "$dir/server.err" || { echo "FAIL: the server did not declare the client lost"; fail=1; }
# ... and its application was told (MRL_EVENT_PEER_LOST, which serve prints)
for i in $(seq 100); do grep -q 'a client is gone (peer-lost)' "$dir/server.out" && break; sleep 0.1; done
grep -q 'a client is gone (peer-lost)' "$dir/server.out" ||
	{ echo "FAIL: the server's application was not told (MRL_EVENT_PEER_LOST)"; fail=1; }
grep -Eq '"failed":[1-9]' "$dir/client.out" || { echo "FAIL: the client's operations in flight did not fail"; fail=1; }
[ "$crc" != 0 ] || { echo "FAIL: the client exited 0 after losing the server"; fail=1; }
# the server serves another client (inside its own namespace)
ip netns exec "$a" "$bin" client 198.51.100.1:7412 --machine --seconds 2 > "$dir/client2.out" 2>&1
rc2=$?
echo "second client: $(grep final "$dir/client2.out") (exit $rc2)"
[ "$rc2" = 0 ] && grep -q '"failed":0,"mismatches":0' "$dir/client2.out" && grep -q '"transfers":[1-9]' "$dir/client2.out" ||
	{ echo "FAIL: the server did not serve another client"; fail=1; }
kill -TERM "$spid"; wait "$spid"; spid=
exit $fail
