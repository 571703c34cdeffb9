#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
# build/mrlease on bad input: every numeric option range-checked (no wrap, no
# trailing text), options a command does not take, MRs under a page: each
# exits 2 with a message naming the problem. And the paths that used to fail:
# coverage of a small file, serve of a file that is not a multiple of the MR
# count, demo --policy notify (serve answers the breaks), demo --policy
# redirect (0 failed transfers, MRs redirected and moved back).
set -u
bin=${MRL_BIN:-build}/mrlease
[ -x "$bin" ] || { echo "no $bin"; exit 1; }
dir=$(mktemp -d /var/tmp/mrl-cli-XXXXXX)
trap 'rm -rf "$dir"' EXIT
fail=0
# hang-only bound: a command that does not return in 60 s is broken anyway
T="timeout 60"

# bad CMD... -- WORDS: exit 2, stderr has every word
bad() {
	local args=() words=()
	while [ "$1" != -- ]; do args+=("$1"); shift; done
	shift
	$T "$bin" "${args[@]}" > "$dir/out" 2> "$dir/err"
	local st=$?
	if [ $st != 2 ]; then
		echo "FAIL: mrlease ${args[*]}: exit $st, expected 2"; cat "$dir/err"; fail=1; return
	fi
	for w in "$@"; do
		grep -qF -- "$w" "$dir/err" || { echo "FAIL: mrlease ${args[*]}: message lacks '$w':"; cat "$dir/err"; fail=1; }
	done
}

head -c 100 /dev/urandom > "$dir/tiny"
head -c $((3 * 4096)) /dev/urandom > "$dir/three"
head -c $((64 * 1024)) /dev/urandom > "$dir/f64k"
head -c $((6 * 4096 + 100)) /dev/urandom > "$dir/odd"
: > "$dir/empty"

# authentication: serve and client need a secret or an explicit --insecure
unset MRLEASE_SECRET MRLEASE_SECRET_FILE
bad serve "$dir/f64k" -- "no secret" "--secret-file" "--insecure"
bad client 127.0.0.1:1 -- "no secret" "--insecure"
bad serve "$dir/f64k" --insecure --secret-file "$dir/s" -- "choose one"
bad coverage "$dir/f64k" --insecure -- "--insecure is not an option of coverage"
printf 'a-secret-others-can-read\n' > "$dir/s644"; chmod 644 "$dir/s644"
bad serve "$dir/f64k" --secret-file "$dir/s644" -- "mode 0644" "chmod 600"
printf 'short\n' > "$dir/s600"; chmod 600 "$dir/s600"
bad serve "$dir/f64k" --secret-file "$dir/s600" -- "at least 16"
export MRLEASE_SECRET=mrlease-test-secret-6b1f0c9e
bad serve "$dir/f64k" --port 70000 -- --port 70000 "out of range" 0..65535
bad serve "$dir/f64k" --port 65536 -- "out of range"
bad serve "$dir/f64k" --port -1 -- --port negative
bad serve "$dir/f64k" --port 80x -- --port "trailing 'x'"
bad serve "$dir/f64k" --port "" -- --port "not a number"
bad serve "$dir/f64k" --deadline-ms 0 -- --deadline-ms "out of range"
bad serve "$dir/f64k" --mrs 0 -- --mrs "out of range" 1..256
bad serve "$dir/f64k" --mrs 257 -- --mrs "out of range"
bad serve "$dir/f64k" --size 1Q -- --size "trailing 'Q'"
bad serve "$dir/f64k" --port -- "needs a value"
bad serve "$dir/f64k" --depth 4 -- "--depth is not an option of serve"
bad serve "$dir/f64k" "$dir/three" -- "unexpected operand"
bad serve "$dir/tiny" -- "100 bytes" "at least one page"
bad serve "$dir/three" --mrs 16 -- "under one page" "--mrs 3 or fewer"
bad serve "$dir/empty" -- "at least one page"
bad client 127.0.0.1:99999 -- port "out of range"
bad client 127.0.0.1:0x10 -- port "trailing 'x10'"
bad client 127.0.0.1:1 --mrs 4 -- "--mrs is not an option of client"
bad client 127.0.0.1:1 --depth 0 -- --depth "out of range"
bad client 127.0.0.1:1 --block 32M -- --block "out of range"
bad demo --seconds 0 -- --seconds "out of range"
bad demo --seconds 4294967297 -- --seconds "out of range"
bad demo --seconds 99999999999999999999999 -- --seconds "too large"
bad demo --mrs 300 -- --mrs "out of range"
bad demo --mrs 64 --size 1M -- "at least 64 KiB per MR"
bad demo --actions punch,bogus -- "unknown action 'bogus'"
bad demo --policy sometimes -- "unknown policy 'sometimes'"
bad demo --fs btrfs -- "--fs ext4 or tmpfs"
bad demo --device uring --mrs 4 -- "--mrs does not apply to --device uring"
bad demo --port 5 -- "--port is not an option of demo"
bad demo --bogus -- "unknown option '--bogus'"
bad frobnicate -- "unknown command 'frobnicate'"
bad coverage "$dir/empty" -- "empty"
bad coverage "$dir/nosuch" -- "No such file"

# coverage of a 64 KiB file (and of one under a page): a table, and it says
# whose view it is
for f in f64k tiny; do
	$T "$bin" coverage "$dir/$f" > "$dir/out" 2> "$dir/err"
	st=$?
	if [ $st != 0 ] || ! grep -q "fresh registration" "$dir/out" || ! grep -q "truncate" "$dir/out"; then
		echo "FAIL: coverage of $f: exit $st"; cat "$dir/out" "$dir/err"; fail=1
	fi
done
# delegations: detected and said for what they are (t_deleg checks the
# library's answer against the kernel's)
if ! grep -Eq "fcntl delegations \(F_SETDELEG, Linux 6.19\+\): (unavailable in this kernel|present in this kernel, not used yet)" "$dir/out"; then
	echo "FAIL: coverage does not say whether delegations exist"; cat "$dir/out"; fail=1
fi

# serve: 6 pages and 100 bytes over 4 MRs: whole pages, the last to the end
$T "$bin" serve "$dir/odd" --mrs 4 --seconds 1 > "$dir/out" 2> "$dir/err"
st=$?
if [ $st != 0 ] || ! grep -q "MRs of 4096 bytes (whole pages), the last one 12388 bytes" "$dir/out" ||
   ! grep -q "final" "$dir/out"; then
	echo "FAIL: serve of a 24676-byte file over 4 MRs: exit $st"; cat "$dir/out" "$dir/err"; fail=1
fi

# demo --policy notify: serve answers every break; nothing fails or mismatches
$T "$bin" demo --policy notify --seconds 2 --json --quiet > "$dir/out" 2> "$dir/err"
st=$?
if [ $st = 2 ] && grep -q provider "$dir/out" "$dir/err"; then
	echo "SKIP: libfabric tcp provider unavailable"; exit 77
fi
if [ $st != 0 ]; then
	echo "FAIL: demo --policy notify exits $st"; cat "$dir/out" "$dir/err"; fail=1
fi
grep -q '"restores":0,' "$dir/out" && grep -q '"breaks":[1-9]' "$dir/out" &&
	{ echo "FAIL: breaks under notify were never restored"; cat "$dir/out"; fail=1; }

# demo --policy redirect: the MRs go onto scratch while each change lands
# and serve moves them back; no transfer fails, no byte mismatches
$T "$bin" demo --policy redirect --fs tmpfs --seconds 3 --json --quiet > "$dir/out" 2> "$dir/err"
st=$?
if [ $st != 0 ]; then
	echo "FAIL: demo --policy redirect exits $st"; cat "$dir/out" "$dir/err"; fail=1
fi
grep -q '"failed":0,' "$dir/out" && grep -q '"mismatches":0,' "$dir/out" &&
	grep -q '"readback_mismatches":0,' "$dir/out" ||
	{ echo "FAIL: demo --policy redirect: failed or mismatched transfers"; cat "$dir/out"; fail=1; }
grep -q '"breaks":[1-9]' "$dir/out" && grep -q '"redirects":0}' "$dir/out" &&
	{ echo "FAIL: breaks under redirect were never redirected"; cat "$dir/out"; fail=1; }

[ $fail = 0 ] && echo "t_cli: ok"
exit $fail
