#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
# mrlease serve and mrlease client on two hosts: network namespaces joined by
# a veth pair (TEST-NET-2 addresses, made and removed here). A hole punch on
# the served file pauses and restores with the client streaming across. The
# server writes a new secret (--secret-file), the client proves it; a client
# without it, or with another, is refused.
set -u
bin=${MRL_BIN:-build}/mrlease
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root for ip netns"; exit 77; }
command -v ip >/dev/null || { echo "SKIP: iproute2 (ip) not installed"; exit 77; }
a=mrl-a-$$ b=mrl-b-$$ va=mrlva$$ vb=mrlvb$$
dir=$(mktemp -d /var/tmp/mrl-netns-XXXXXX)
cleanup() {
	[ -n "${spid:-}" ] && kill "$spid" 2>/dev/null
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

unset MRLEASE_SECRET MRLEASE_SECRET_FILE
ip netns exec "$a" "$bin" serve "$dir/f" --addr 198.51.100.1 --port 7411 --size 8388608 --mrs 4 --deadline-ms 10000 \
	--seconds 300 --secret-file "$dir/secret" > "$dir/server.out" 2>&1 &
spid=$!
# waits are for events; their bounds (30 s) only detect a hang
for i in $(seq 300); do grep -q serving "$dir/server.out" && break; sleep 0.1; done
grep -q serving "$dir/server.out" || { echo "server did not start:"; cat "$dir/server.out"; exit 1; }
fail=0
[ "$(stat -c %a "$dir/secret")" = 600 ] || { echo "FAIL: the secret file is not mode 600"; fail=1; }
grep -q "wrote a new secret to $dir/secret" "$dir/server.out" || { echo "FAIL: serve did not say where the secret is"; fail=1; }
# strangers: no secret, another secret; each refused, exit 2, nothing streamed
ip netns exec "$b" "$bin" client 198.51.100.1:7411 --insecure --machine --seconds 1 > "$dir/c0.out" 2>&1
[ $? = 2 ] && grep -q "owner requires a secret" "$dir/c0.out" || { echo "FAIL: a client with no secret was not refused:"; cat "$dir/c0.out"; fail=1; }
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$dir/other"; chmod 600 "$dir/other"
ip netns exec "$b" "$bin" client 198.51.100.1:7411 --secret-file "$dir/other" --machine --seconds 1 > "$dir/c1.out" 2>&1
[ $? = 2 ] && grep -q "Permission denied" "$dir/c1.out" || { echo "FAIL: a client with a wrong secret was not refused:"; cat "$dir/c1.out"; fail=1; }
grep -q '^stats' "$dir/c0.out" "$dir/c1.out" && { echo "FAIL: a refused client streamed"; fail=1; }
ip netns exec "$b" "$bin" client 198.51.100.1:7411 --secret-file "$dir/secret" --machine --seconds 6 > "$dir/client.out" 2>&1 &
cpid=$!
# punch once the client reports transfers (a "stats N ..." line, N > 0)
for i in $(seq 300); do grep -Eq '^stats [1-9]' "$dir/client.out" && break; sleep 0.1; done
grep -Eq '^stats [1-9]' "$dir/client.out" || { echo "client did not stream:"; cat "$dir/client.out"; exit 1; }
fallocate --punch-hole -o 65536 -l 65536 "$dir/f" || { echo "punch failed"; exit 1; }
cat "$dir/f" > /dev/null
wait "$cpid"; crc=$?
kill -TERM "$spid"; wait "$spid"; spid=
echo "client: $(grep final "$dir/client.out")"
echo "server: $(grep final "$dir/server.out")"
[ "$crc" = 0 ] || { echo "FAIL: client exit $crc (failed or mismatched transfers)"; fail=1; }
grep -q '"failed":0,"mismatches":0' "$dir/client.out" || { echo "FAIL: client saw failures"; fail=1; }
grep -q '"transfers":[1-9]' "$dir/client.out" || { echo "FAIL: nothing transferred"; fail=1; }
grep -Eq '"breaks":[1-9]' "$dir/server.out" || { echo "FAIL: the punch was not seen as a break"; fail=1; }
grep -Eq '"restores":[1-9]' "$dir/server.out" || { echo "FAIL: no restore"; fail=1; }
exit $fail
