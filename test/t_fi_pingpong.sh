#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
# Non-regression of the libfabric hook: unmodified fi_pingpong (msg over tcp,
# rdm over tcp;ofi_rxm, sockets and udp;ofi_rxd) with data checks gives the same
# transfers with FI_HOOK=mrlease as without, and the hook really ran: each
# process logs exactly one hooked (application-facing) domain, leasing on,
# and its summary. ofi_rxm's inner tcp domain is not leased.
set -u
so=${MRL_BIN:-build}/fi/libmrlease-fi.so
[ -f "$so" ] || { echo "no $so (make builds it)"; exit 1; }
command -v fi_pingpong >/dev/null || { echo "SKIP: fi_pingpong not installed (libfabric-bin)"; exit 77; }
dir=$(mktemp -d /tmp/mrl-fipp-XXXXXX)
trap 'kill $spid 2>/dev/null; rm -rf "$dir"' EXIT
spid=
port=$((20000 + $$ % 20000))

# wait (for an event, bounded only to detect a hang) until port listens
listening() {
	for i in $(seq 600); do
		ss -ltnH "sport = :$1" 2>/dev/null | grep -q . && return 0
		kill -0 "$spid" 2>/dev/null || return 1
		sleep 0.05
	done
	return 1
}

# run EP PROV TAG [hook]: server and client, their outputs in $dir/TAG.{s,c};
# a control port someone else holds is skipped
run() {
	local ep=$1 prov=$2 tag=$3 hook=${4:-} try
	local env=()
	[ -n "$hook" ] && env=(FI_PROVIDER_PATH="$(dirname "$so")" FI_HOOK=mrlease MRLEASE_LOG="$dir/$tag.log")
	for try in $(seq 20); do
		port=$((port + 1))
		ss -ltnH "sport = :$port" 2>/dev/null | grep -q . && continue
		rm -f "$dir/$tag.log"
		env "${env[@]}" fi_pingpong -B $port -p "$prov" -e "$ep" -I 10 -c > "$dir/$tag.s" 2>&1 &
		spid=$!
		listening $port && break
		wait $spid
		grep -q "Address already in use" "$dir/$tag.s" || { echo "$tag: server did not listen"; cat "$dir/$tag.s"; return 1; }
	done
	env "${env[@]}" fi_pingpong -P $port -p "$prov" -e "$ep" -I 10 -c 127.0.0.1 > "$dir/$tag.c" 2>&1
	local crc=$?
	wait $spid
	local src=$?
	spid=
	[ $crc = 0 ] && [ $src = 0 ] || { echo "$tag: client exit $crc, server exit $src"; cat "$dir/$tag.c" "$dir/$tag.s"; return 1; }
}

# the transfers a run made: size, sent, acked (times vary)
transfers() { awk 'NR>1 {print $1, $2, $3}' "$1"; }

fail=0
for combo in "msg tcp" "rdm tcp;ofi_rxm" "rdm sockets" "rdm udp;ofi_rxd"; do
	ep=${combo%% *} prov=${combo#* }
	tag=$(echo "$ep-$prov" | tr ';' '_')
	run "$ep" "$prov" "$tag-plain" || { fail=1; continue; }
	run "$ep" "$prov" "$tag-hook" hook || { fail=1; continue; }
	for side in s c; do
		if ! diff <(transfers "$dir/$tag-plain.$side") <(transfers "$dir/$tag-hook.$side") > "$dir/diff"; then
			echo "$tag ($side): transfers differ with the hook:"; cat "$dir/diff"; fail=1
		fi
		[ "$(transfers "$dir/$tag-hook.$side" | wc -l)" -ge 1 ] || { echo "$tag ($side): no transfers"; fail=1; }
	done
	log=$dir/$tag-hook.log
	[ -f "$log" ] || { echo "$tag: the hook wrote no log (not loaded?)"; fail=1; continue; }
	pids=$(sed -n 's/^mrlease\[\([0-9]*\)\].*/\1/p' "$log" | sort -u)
	[ "$(echo "$pids" | wc -w)" = 2 ] || { echo "$tag: expected 2 hooked processes, log:"; cat "$log"; fail=1; }
	for p in $pids; do
		n=$(grep -c "^mrlease\[$p\]: hooked domain on $prov: leasing on" "$log")
		[ "$n" = 1 ] || { echo "$tag: process $p hooked $n application domains on $prov (want 1):"; cat "$log"; fail=1; }
		grep -q "^mrlease\[$p\]: summary: domain on $prov" "$log" || { echo "$tag: process $p: no summary"; cat "$log"; fail=1; }
	done
	[ $fail = 0 ] && echo "$tag: same transfers with and without the hook; hook loaded in $(echo $pids)"
done
exit $fail
