#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
# Data written by another process into a served file is shared memory
# (README, "Data written by others"): `dd conv=notrunc` into the file while
# `mrlease client` streams gives the same outcome under the lease watcher
# and under fanotify: no silent mismatch (the client counts the other
# writer's bytes as foreign), no failed transfer, the server survives; under
# fanotify no new generation either (the lease, which sees only the open,
# may announce one when its layout comparison cannot be sure). (The peer keeps writing: dd's bytes are soon its again.)
set -u
bin=${MRL_BIN:-build}/mrlease
# serve and client authenticate with a shared secret (t_netns.sh: a file serve writes)
export MRLEASE_SECRET=mrlease-test-secret-6b1f0c9e
command -v dd >/dev/null || { echo "SKIP: dd (coreutils) not installed"; exit 77; }
fail=0 port=$((18000 + $$ % 1000))
d=$(mktemp -d /var/tmp/mrl-datawrite-XXXXXX)
trap 'rm -rf "$d"' EXIT
head -c 65536 /dev/urandom > "$d/src"
run() { # name serve-flags
	local name=$1 flags=$2 f=$d/f spid cpid
	head -c 4194304 /dev/urandom > "$f" && sync "$f" # allocated: a write moves no block
	"$bin" serve "$f" --port $port --mrs 4 --deadline-ms 1000 --seconds 300 $flags > "$d/server.out" 2>&1 &
	spid=$!
	# waits are for events; their bounds (30 s) only detect a hang
	for i in $(seq 300); do grep -q serving "$d/server.out" && break; sleep 0.1; done
	"$bin" client 127.0.0.1:$port --machine --seconds 3 > "$d/client.out" 2>&1 &
	cpid=$!
	for i in $(seq 300); do grep -Eq '^stats [1-9]' "$d/client.out" && break; sleep 0.1; done
	for k in 1 2 3 4 5; do
		dd if="$d/src" of="$f" bs=65536 seek=$((k * 7)) count=1 conv=notrunc status=none ||
			{ echo "FAIL $name: dd"; fail=1; }
	done
	wait $cpid; local crc=$?
	local js; js=$(grep final "$d/client.out")
	echo "$name: client: $js"
	kill -0 $spid 2>/dev/null || { echo "FAIL $name: the server died"; fail=1; }
	kill -TERM $spid 2>/dev/null; wait $spid
	[ $crc = 0 ] || { echo "FAIL $name: client exit $crc"; fail=1; }
	echo "$js" | grep -q '"failed":0,"mismatches":0,' || { echo "FAIL $name: mismatches or failed transfers"; fail=1; }
	# fanotify tells a write from a layout change; the lease sees only the
	# open and compares the layout across the break, announcing when it
	# cannot be sure (README, "Data written by others"): safe, never silent
	if [ "$name" = fanotify ]; then
		echo "$js" | grep -q '"gen_changes":0,' || { echo "FAIL $name: a data write gave a new generation"; fail=1; }
	fi
	port=$((port + 1))
}
run "lease (--no-fanotify)" --no-fanotify
if [ "$(id -u)" = 0 ]; then run "fanotify" ""; else echo "fanotify case skipped: needs root"; fi
[ $fail = 0 ] && echo "t_datawrite: ok"
exit $fail
