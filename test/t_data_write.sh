#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
# Data written by another process into a served file is shared memory
# (README, "Data written by others"; mrlease.h): no new generation, no
# CHANGED event, no fence, no failed or mismatched transfer -- under
# fanotify and under the lease (--no-fanotify), on ext4 and on tmpfs (lease
# only: fanotify cannot mark tmpfs). Writers are the system's own tools:
# `dd conv=notrunc` (MRL_DATA_WRITES times, 50 by default; then one into a
# hole and one past the end, which allocate blocks), and with
# xfsprogs `xfs_io` pwrite, a store through its own shared mapping (mmap +
# mwrite) and copy_file_range (copy_range), all while `mrlease client`
# streams verified reads and writes. The client counts the writers' bytes as
# foreign, never as mismatches; its gen_changes must stay 0 and the server
# must announce nothing ("changed"). Then a punch right after (util-linux
# fallocate) must still be seen as before: the server resolves it and a new
# client sees a new generation. Waits are for events (log lines), their
# bounds only tell a hang.
set -u
bin=${MRL_BIN:-build}/mrlease
export MRLEASE_SECRET=mrlease-test-secret-6b1f0c9e
command -v dd >/dev/null || { echo "SKIP: dd (coreutils) not installed"; exit 77; }
command -v fallocate >/dev/null || { echo "SKIP: fallocate (util-linux) not installed"; exit 77; }
xfs_io=$(command -v xfs_io || true)
[ -n "$xfs_io" ] || echo "note: xfs_io (xfsprogs, scripts/setup.sh) missing: dd only"
. "$(dirname "$0")/serve_rig.sh"
n=${MRL_DATA_WRITES:-50}
fail=0 port=$((18000 + $$ % 1000)) deadline_ms=2000 spid= cpid=
ext=$(mktemp -d /var/tmp/mrl-data-write-XXXXXX)
shm=$(mktemp -d /dev/shm/mrl-data-write-XXXXXX)
cleanup() {
	[ -n "$cpid" ] && kill -TERM $cpid 2>/dev/null
	[ -n "$spid" ] && kill -TERM $spid 2>/dev/null
	wait 2>/dev/null
	rm -rf "$ext" "$shm"
}
trap cleanup EXIT
head -c 65536 /dev/urandom > "$ext/src"
MB=1048576

# wait (bounded only to tell a hang) until grep -E $2 matches file $1 at least $3 times
wait_for() {
	local i
	for i in $(seq 600); do
		[ "$(grep -Ec "$2" "$1")" -ge "${3:-1}" ] && return 0
		sleep 0.05
	done
	return 1
}
jnum() { echo "$1" | sed -n "s/.*\"$2\":\([0-9]*\).*/\1/p"; }

run() { # name dir serve-flags
	local name=$1 dir=$2 flags=$3 f=$2/f out=$2/server.out js k
	# allocated (written and synced): a write moves no block
	head -c $((4 * MB)) /dev/urandom > "$f" && sync "$f"
	cp "$ext/src" "$dir/src.copy" # copy_file_range stays within one filesystem
	# a hole for a write to fill: a data write that allocates blocks
	fallocate -p -o $((3 * MB + 524288)) -l 65536 "$f" || { echo "FAIL $name: fallocate -p (setup)"; fail=1; }

	# 1. data writes while a client streams (until told to stop)
	rig_start "$name" "$f" "$dir" 600 $flags || return
	for k in $(seq $n); do
		dd if="$ext/src" of="$f" bs=65536 seek=$(((k * 7) % 64)) count=1 conv=notrunc status=none ||
			{ echo "FAIL $name: dd"; fail=1; }
	done
	# into the hole, and past the end (the MRs' bytes stay where they are)
	dd if="$ext/src" of="$f" bs=65536 seek=$(((3 * MB + 524288) / 65536)) count=1 conv=notrunc status=none ||
		{ echo "FAIL $name: dd into a hole"; fail=1; }
	dd if="$ext/src" of="$f" bs=65536 seek=64 count=1 conv=notrunc status=none ||
		{ echo "FAIL $name: dd past the end"; fail=1; }
	if [ -n "$xfs_io" ]; then
		"$xfs_io" -c "pwrite -q -S 0x5a $((MB + 8192)) 65536" "$f" ||
			{ echo "FAIL $name: xfs_io pwrite"; fail=1; }
		"$xfs_io" -c "mmap -w $((2 * MB)) 65536" -c "mwrite -S 0x6b $((2 * MB)) 65536" -c "munmap" "$f" ||
			{ echo "FAIL $name: xfs_io mmap store"; fail=1; }
		"$xfs_io" -c "copy_range -s 0 -d $((3 * MB + 4096)) -l 65536 $dir/src.copy" "$f" ||
			{ echo "FAIL $name: xfs_io copy_range"; fail=1; }
	fi
	kill -TERM $cpid
	rig_finish "$name" "$dir"
	local pauses changed
	pauses=$(grep -c 'restored (open-write)' "$out")
	changed=$(grep -c ': changed (' "$out")
	echo "  $name: $n + 2 dd ${xfs_io:++ 3 xfs_io }writes: $changed announced, $(jnum "$js" gen_changes) new generations, $pauses lease pauses (MR x open)"
	[ "$(jnum "$js" gen_changes)" = 0 ] || { echo "FAIL $name: a data write gave a new generation"; fail=1; }
	[ "$changed" = 0 ] || { echo "FAIL $name: the server announced a data write"; fail=1; }
	grep -q ': fenced (' "$out" && { echo "FAIL $name: a data write fenced an MR"; fail=1; }

	# 2. a punch right after is seen as before: resolved, a new generation
	rig_start "$name, punch" "$f" "$dir" 600 $flags || return
	fallocate -p -o $((MB + 65536)) -l 65536 "$f" || { echo "FAIL $name: fallocate -p"; fail=1; }
	wait_for "$out" 'restored \((punch-hole|open-write)\)' ||
		{ echo "FAIL $name: the punch was not resolved"; fail=1; }
	kill -TERM $cpid
	rig_finish "$name, punch" "$dir"
	[ "$(jnum "$js" gen_changes)" -ge 1 ] 2>/dev/null || { echo "FAIL $name: the punch brought no new generation"; fail=1; }
	spid= cpid=
}
run "ext4 lease (--no-fanotify)" "$ext" --no-fanotify
if [ "$(id -u)" = 0 ]; then run "ext4 fanotify" "$ext" ""; else echo "fanotify case skipped: needs root"; fi
run "tmpfs lease" "$shm" ""
[ $fail = 0 ] && echo "t_data_write: ok"
exit $fail
