#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
# The demo's server stopped while a client streams (issue 13, item 7): with
# `mrlease serve FILE` under SIGSTOP, `cat FILE`, a punch and a truncate by
# other processes return within the deadline plus a margin (the guardian);
# once continued the server survives, no transfer fails, nothing mismatches
# silently, and the punch reaches the client as a new generation.
#  fanotify, ext4 (root): cat and the punch are let go, the truncate (a
#    shrink under the MRs) is refused with EBUSY;
#  lease, tmpfs: the punch (a writer) is let in, then cat.
set -u
bin=${MRL_BIN:-build}/mrlease
# serve and client authenticate with a shared secret
export MRLEASE_SECRET=mrlease-test-secret-6b1f0c9e
command -v fallocate >/dev/null || { echo "SKIP: fallocate (util-linux) not installed"; exit 77; }
deadline_ms=1000
bound_ms=$((deadline_ms + 2000)) # a liveness bound for a loaded machine, not a speed
fail=0 port=$((18000 + $$ % 1000))
. "$(dirname "$0")/serve_rig.sh"
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
# act NAME WANT_RC CMD...: run CMD (bounded by a hang limit), check its time and exit
act() {
	local name=$1 want=$2 t0 rc ms
	shift 2
	t0=$(now_ms)
	timeout 15 "$@" >/dev/null 2>&1
	rc=$?
	ms=$(( $(now_ms) - t0 ))
	echo "  $name: exit $rc after $ms ms"
	[ $rc != 124 ] && [ $ms -le $bound_ms ] || { echo "FAIL $name: held $ms ms (bound $bound_ms)"; fail=1; }
	if [ "$want" = 0 ]; then
		[ $rc = 0 ] || { echo "FAIL $name: exit $rc, expected success"; fail=1; }
	else
		[ $rc != 0 ] && [ $rc != 124 ] || { echo "FAIL $name: exit $rc, expected refusal"; fail=1; }
	fi
}
run() { # name dir serve-flags
	local name=$1 d=$2 flags=$3 f=$2/f
	echo "$name:"
	head -c 4194304 /dev/urandom > "$f"
	rig_start "$name" "$f" "$d" 6 $flags || return
	kill -STOP $spid
	for i in $(seq 300); do [ "$(awk '{print $3}' /proc/$spid/stat)" = T ] && break; sleep 0.01; done
	if [ "$flags" = "" ] && [ "$(stat -f -c %T "$d")" != tmpfs ]; then
		act "cat" 0 cat "$f"
		act "fallocate --punch-hole" 0 fallocate --punch-hole -o 0 -l 65536 "$f"
		act "truncate -s 3M (refused)" 1 truncate -s 3M "$f"
	else
		act "fallocate --punch-hole" 0 fallocate --punch-hole -o 0 -l 65536 "$f"
		act "cat" 0 cat "$f"
	fi
	kill -CONT $spid
	rig_finish "$name" "$d"
	echo "$js" | grep -Eq '"gen_changes":[1-9]' || { echo "FAIL $name: the punch never reached the peer"; fail=1; }
}
ext=$(mktemp -d /var/tmp/mrl-guardserve-XXXXXX)
shm=$(mktemp -d /dev/shm/mrl-guardserve-XXXXXX)
trap 'rm -rf "$ext" "$shm"' EXIT
run "lease, tmpfs" "$shm" ""
if [ "$(id -u)" != 0 ]; then
	echo "fanotify case skipped: needs root (CAP_SYS_ADMIN) for a fanotify mark"
else
	run "fanotify, ext4" "$ext" ""
fi
[ $fail = 0 ] && echo "t_guardian_serve: ok"
exit $fail
