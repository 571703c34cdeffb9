#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
# Test runner: one program per behaviour; exit 0 pass, 77 skip, else fail.
# Each gets a time limit; the last line is the summary CI reads.
limit=${MRL_TEST_TIMEOUT:-180}
pass=0 fail=0 skip=0
failed=()
for t in "$@"; do
	[ -x "$t" ] || { echo "MISSING $t"; fail=$((fail+1)); failed+=("$t"); continue; }
	log=$(mktemp)
	start=$(date +%s.%N)
	timeout -k 5 "$limit" "$t" >"$log" 2>&1
	rc=$?
	secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
	case $rc in
	0) pass=$((pass+1)); echo "PASS $t (${secs}s)";;
	77) skip=$((skip+1)); echo "SKIP $t: $(grep -m1 -i 'skip' "$log" || tail -n1 "$log")";;
	*) fail=$((fail+1)); failed+=("$t")
	   [ $rc = 124 ] && echo "FAIL $t (timed out after ${limit}s)" || echo "FAIL $t (exit $rc, ${secs}s)"
	   sed 's/^/    | /' "$log" | tail -n 40;;
	esac
	rm -f "$log"
done
[ ${#failed[@]} -gt 0 ] && echo "failed: ${failed[*]}"
echo "$pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]
