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
so=$B/fi/libmrlease-fi.so prog=$B/test/mpi_win
command -v mpirun >/dev/null || { echo "SKIP: Open MPI not installed (scripts/setup.sh installs it)"; exit 77; }
[ -f "$so" ] && [ -x "$prog" ] || { echo "no $so or $prog (make tests builds them)"; exit 1; }
[ "$(id -u)" = 0 ] || { echo "SKIP: fanotify pre-content events need root"; exit 77; }
top=$(mktemp -d /var/tmp/mrl-fimpi-XXXXXX)
[ "$(stat -f -c %T "$top")" != tmpfs ] || { rm -rf "$top"; echo "SKIP: /var/tmp is tmpfs"; exit 77; }
dir=$top
mpid=
cleanup() { [ -n "$mpid" ] && kill $mpid 2>/dev/null; wait $mpid 2>/dev/null; rm -rf "$top"; }
trap cleanup EXIT
trap 'exit 1' TERM INT
SIZE=65536 STRICT=32768 CUT=49152

wait_for() { local i; for i in $(seq 1800); do eval "$1" && return 0; sleep 0.1; done; echo "timed out: $1"; return 1; }
passes0() { cat "$dir/out" 2>/dev/null | grep -c '^stats rank 0'; }
field0() { grep '^stats rank 0' "$dir/out" | tail -1 | awk -v f="$1" '{for (i = 1; i < NF; i++) if ($i == f) print $(i + 1)}'; }
alive() { kill -0 $mpid 2>/dev/null; }

# one PROV NOSEP: the whole run in its own directory; sets fail, returns 1 when it cannot go on
one() {
	prov=$1 nosep=$2
	dir=$top/$(echo "$prov-sep$((1 - nosep))" | tr ';' '_')
	mkdir -p "$dir"
	echo "== $prov, scalable endpoints $([ "$nosep" = 0 ] && echo on || echo off)"
	for r in 0 1; do head -c $SIZE /dev/urandom > "$dir/win.$r"; done
	FI_PROVIDER_PATH="$(dirname "$so")" FI_HOOK=mrlease MRLEASE_LOG="$dir/log" \
		mpirun --allow-run-as-root --oversubscribe -np 2 --mca pml ob1 --mca btl self,tcp,ofi \
		--mca btl_ofi_provider_include "$prov" --mca btl_ofi_disable_sep $nosep --mca osc rdma --mca osc_rdma_btls ofi \
		"$prog" "$dir" $STRICT "$dir/stop" > "$dir/out" 2>&1 &
	mpid=$!
	wait_for '[ "$(passes0)" -ge 1 ] || ! alive' && alive || { echo "the job did not start:"; cat "$dir/out"; return 1; }
	key=$(sed -n 's/.*\]: leased key \(0x[0-9a-f]*\) .*('"${dir//\//\\/}"'\/win.1)$/\1/p' "$dir/log")
	[ -n "$key" ] || { echo "rank 1's window was not leased:"; cat "$dir/log"; return 1; }
	i=0
	for hole in 40960 53248 36864; do
		i=$((i + 1))
		fallocate --punch-hole -o $hole -l 4096 "$dir/win.1"
		wait_for "[ \$(grep -c 'restore: key $key file $dir/win.1 .*same key' '$dir/log') -ge $i ] || ! alive" || fail=1
		p=$(passes0)
		wait_for '[ "$(passes0)" -gt "$p" ] || ! alive' || fail=1
		alive || { echo "the job ended after punch $i:"; cat "$dir/out"; return 1; }
	done
	grep -q "break: key $key file $dir/win.1 bytes 40960+4096 cause punch-hole pid [1-9]" "$dir/log" ||
		{ echo "no break line naming key, file, cause and actor"; fail=1; }
	echo "after 3 punches: rank 0 $(grep '^stats rank 0' "$dir/out" | tail -1)"
	[ "$(field0 errors)" = 0 ] && [ "$(field0 strict_bad)" = 0 ] || { echo "rank 0 lost operations or bytes"; fail=1; }
	
	truncate -s $CUT "$dir/win.1"
	wait_for "grep -q 'fence: key $key file $dir/win.1 bytes $CUT+$((SIZE - CUT)) cause truncated' '$dir/log' || ! alive" ||
		fail=1
	grep -q "fence: key $key file $dir/win.1 bytes $CUT+$((SIZE - CUT)) cause truncated" "$dir/log" ||
		{ echo "the truncated tail was not fenced"; fail=1; }
	# two whole passes after the fence: each put and got every block past the cut
	p=$(passes0)
	wait_for '[ "$(passes0)" -ge $((p + 2)) ] || ! alive' || fail=1
	alive || { echo "the job ended after the truncate:"; cat "$dir/out"; return 1; }
	echo "after the truncate: rank 0 $(grep '^stats rank 0' "$dir/out" | tail -1)"
	[ "$(field0 errors)" = 0 ] && [ "$(field0 strict_bad)" = 0 ] ||
		{ echo "rank 0 lost operations or bytes below the cut"; fail=1; }
	[ "$(field0 other_bad)" -gt 0 ] || { echo "blocks past the cut read back as written (nothing was cut?)"; fail=1; }
	touch "$dir/stop"
	wait $mpid; rc=$?; mpid=
	if grep -qi "bus error\|signal 7" "$dir/out"; then
		echo "SIGBUS with the hook:"; cat "$dir/out"; fail=1
	fi
	[ $rc = 0 ] || { echo "the job did not end normally (exit $rc):"; tail -20 "$dir/out"; fail=1; }
	grep -q "^final rank 0 .* errors 0 strict_bad 0" "$dir/out" || { echo "rank 0's final line:"; grep final "$dir/out"; fail=1; }
	grep -q "truncated tails discard" "$dir/log" || { echo "the hook did not discard tails under mpirun"; fail=1; }
	grep -Eq "summary: .* [1-9][0-9]* discarded past a truncated end" "$dir/log" ||
		{ echo "no operation was discarded past the end"; fail=1; }
	echo "truncate: operations past the new end discarded (puts dropped, gets zeroes), no abort, no SIGBUS (exit $rc)"
	# which endpoints the hook wrapped: scalable ones (and their tx contexts) or plain
	seps=$(sed -n 's/.*summary: domain on .*endpoints: [0-9]*, scalable \([0-9]*\) .*/\1/p' "$dir/log" | sort -n | tail -1)
	if [ "$nosep" = 0 ] && [ "$prov" = sockets ]; then
		[ "${seps:-0}" -ge 1 ] || { echo "btl/ofi opened no scalable endpoint through the hook"; fail=1; }
	else
		[ "${seps:-0}" = 0 ] || { echo "scalable endpoints were opened though disabled"; fail=1; }
	fi
	grep -E "summary|fence: key $key" "$dir/log" | sed 's/^/  | /'
}

fail=0
for c in "sockets 0" "sockets 1" "udp;ofi_rxd 1"; do
	one ${c% *} ${c#* } || fail=1
	if [ -n "$mpid" ]; then kill $mpid 2>/dev/null; wait $mpid 2>/dev/null; mpid=; fi
done
exit $fail
