#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
# Test runner: one program per behaviour; exit 0 pass, 77 skip, else fail.
# Each gets a time limit; the last line is the summary CI reads.
#   MRL_TEST_TIMEOUT  seconds per test (default 180)
#   MRL_TEST_JOBS     tests run at once (default 1). Shell tests and those
#                     named in MRL_TEST_ALONE (whole-machine ones: loop
#                     mounts, network namespaces, the demo, the benchmark)
#                     still run with nothing beside them.
limit=${MRL_TEST_TIMEOUT:-180}
jobs=${MRL_TEST_JOBS:-1}
alone=${MRL_TEST_ALONE:-"t_fs_matrix t_demo t_demo_uring smoke"}
pass=0 fail=0 skip=0
failed=()
res=$(mktemp -d)
trap 'rm -rf "$res"' EXIT
mkfifo "$res/done" && exec 3<>"$res/done"   # each finished test writes its number here

# run one test into $res/N.{log,rc,secs}
run_one() {
	local n=$1 t=$2 start
	start=$(date +%s.%N)
	timeout -k 5 "$limit" "$t" >"$res/$n.log" 2>&1 3>&-
	echo $? >"$res/$n.rc"
	awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}' >"$res/$n.secs"
}

# report test N (named t) once it has finished
report() {
	local n=$1 t=$2 rc secs
	rc=$(cat "$res/$n.rc") secs=$(cat "$res/$n.secs")
	case $rc in
	0) pass=$((pass+1)); echo "PASS $t (${secs}s)";;
	77) skip=$((skip+1)); echo "SKIP $t: $(grep -m1 -i 'skip' "$res/$n.log" || tail -n1 "$res/$n.log")";;
	*) fail=$((fail+1)); failed+=("$t")
	   [ "$rc" = 124 ] && echo "FAIL $t (timed out after ${limit}s)" || echo "FAIL $t (exit $rc, ${secs}s)"
	   sed 's/^/    | /' "$res/$n.log" | tail -n 40;;
	esac
	rm -f "$res/$n".*
}

runs_alone() {
	case $1 in *.sh) return 0;; esac
	local b=${1##*/} a
	for a in $alone; do [ "$b" = "$a" ] && return 0; done
	return 1
}

names=()
declare -A running=()
# wait for running tests to finish and report them: all of them ("all"),
# or until fewer than $jobs run
reap() {
	local n
	while [ ${#running[@]} -gt 0 ]; do
		[ "$1" = all ] || [ ${#running[@]} -ge "$jobs" ] || return
		read -r -u 3 n || return
		wait "${running[$n]}" 2>/dev/null
		unset "running[$n]"
		report "$n" "${names[$n]}"
	done
}

n=0
for t in "$@"; do
	n=$((n+1))
	[ -x "$t" ] || { echo "MISSING $t"; fail=$((fail+1)); failed+=("$t"); continue; }
	names[$n]=$t
	if [ "$jobs" -le 1 ]; then
		run_one $n "$t"
		report $n "$t"
	elif runs_alone "$t"; then
		reap all
		run_one $n "$t"
		report $n "$t"
	else
		reap some
		{ run_one $n "$t"; echo $n >&3; } &
		running[$n]=$!
	fi
done
reap all
[ ${#failed[@]} -gt 0 ] && echo "failed: ${failed[*]}"
echo "$pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]
