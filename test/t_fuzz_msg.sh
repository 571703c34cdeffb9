#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
# A short bounded libFuzzer run over the control-message parser
# (test/fuzz_msg.c: the real receive path of a connected owner and peer):
# 20000 inputs, sealed as an authenticated sender's and raw as a stranger's;
# any crash, sanitizer report, leak or stranger's message accepted fails.
# `make fuzz` runs it for longer.
set -u
bin=${MRL_FUZZ_BIN:-build-fuzz/fuzz_msg}
[ -x "$bin" ] || { echo "SKIP: $bin not built (make fuzz-build: needs clang and libFuzzer)"; exit 77; }
dir=$(mktemp -d /var/tmp/mrl-fuzz-XXXXXX)
trap 'rm -rf "$dir"' EXIT
export MRLEASE_SECRET=mrlease-test-secret-6b1f0c9e
mkdir -p "$dir/corpus" "$dir/found"
"$bin" -runs=20000 -len_control=0 -max_len=1025 -seed=1 -artifact_prefix="$dir/found/" "$dir/corpus" > "$dir/log" 2>&1
st=$?
if [ $st != 0 ] || ! grep -q "^Done 20000 runs" "$dir/log"; then
	keep=$(mktemp -d /var/tmp/mrl-fuzz-found-XXXXXX)
	cp -r "$dir/found/." "$keep/" 2>/dev/null
	echo "FAIL: fuzz_msg exit $st (the input that failed, if any, is kept in $keep)"; tail -40 "$dir/log"; exit 1
fi
grep -E "DONE" "$dir/log"
echo "t_fuzz_msg: ok"
