# SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
# Sourced by shell tests that change a file `mrlease serve` serves while
# `mrlease client` streams verified writes and reads against it. The caller
# sets bin, port and fail (and may set deadline_ms); every wait is for an
# event, its 30 s bound only detects a hang.

# rig_start NAME FILE DIR CLIENT_SECONDS [SERVE FLAGS...]: the server (spid)
# serves FILE as 4 MRs, the client (cpid) streams until it has transfers
# (to rig_target if set, else 127.0.0.1:$port); returns 1 (failure noted)
# if the server did not start.
rig_start() {
	local name=$1 f=$2 d=$3 secs=$4
	shift 4
	# emptied here, not by the background redirects: a dir used before
	# must not answer the waits below with the last run's lines
	: > "$d/server.out"
	: > "$d/client.out"
	"$bin" serve "$f" --port $port --mrs 4 --deadline-ms ${deadline_ms:-1000} --seconds 300 "$@" \
		> "$d/server.out" 2>&1 &
	spid=$!
	for i in $(seq 300); do grep -q serving "$d/server.out" && break; sleep 0.1; done
	if ! grep -q serving "$d/server.out"; then
		echo "FAIL $name: server did not start"; cat "$d/server.out"
		fail=1; kill $spid 2>/dev/null; wait $spid
		return 1
	fi
	"$bin" client "${rig_target:-127.0.0.1:$port}" --machine --seconds $secs > "$d/client.out" 2>&1 &
	cpid=$!
	for i in $(seq 300); do grep -Eq '^stats [1-9]' "$d/client.out" && break; sleep 0.1; done
}

# rig_finish NAME DIR: waits for the client and stops the server; fails
# unless the server lived, both exited 0, no transfer failed or mismatched
# silently and the final read-back matched. The client's summary is in js.
rig_finish() {
	local name=$1 d=$2 crc src
	wait $cpid; crc=$?
	js=$(grep final "$d/client.out")
	echo "  $name: client: $js"
	[ -n "$js" ] || { echo "  (client exit $crc, $(wc -c < "$d/client.out") bytes of output)"; tail -5 "$d/client.out"; }
	kill -0 $spid 2>/dev/null || { echo "FAIL $name: the server died"; tail -5 "$d/server.out"; fail=1; }
	kill -TERM $spid 2>/dev/null; wait $spid; src=$?
	[ $src = 0 ] || { echo "FAIL $name: server exit $src"; fail=1; }
	[ $crc = 0 ] || { echo "FAIL $name: client exit $crc"; fail=1; }
	echo "$js" | grep -q '"failed":0,"mismatches":0,' ||
		{ echo "FAIL $name: silent mismatches or failed transfers"; fail=1; }
	echo "$js" | grep -q '"final_mismatches":0,' || { echo "FAIL $name: final read-back mismatched"; fail=1; }
	port=$((port + 1))
}
