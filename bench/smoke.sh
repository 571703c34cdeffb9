#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
# make test: a tiny run of every benchmark (no timing assertions): proves each
# still runs end to end, writes its JSON, and that the churn run saw no failed
# transfer and no mismatched byte. Exit 0 pass, 1 fail, 77 skip.
here=$(cd "$(dirname "$0")" && pwd)
bin=$here/mrl_bench
[ -x "$bin" ] || { echo "SKIP: $bin not built"; exit 77; }
out=$(mktemp -d /tmp/mrl-bench-smoke.XXXXXX)
trap 'rm -rf "$out"' EXIT
"$bin" --smoke --out "$out" 2>"$out/stderr" || {
	cat "$out/stderr"
	echo "mrl_bench --smoke failed; its errors:"
	grep '^bench:' "$out/stderr"
	exit 1
}
cat "$out/stderr" >&2
j=$out/bench.json
[ -s "$j" ] || { echo "no $j"; exit 1; }
for part in fastpath callgrind registration breaks scale churn index eofcheck ureg; do
	grep -q "\"$part\": \[" "$j" || { echo "part $part missing from the JSON"; exit 1; }
done
if command -v python3 >/dev/null; then
	python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$j" || { echo "bench.json is not valid JSON"; exit 1; }
fi
echo "bench smoke: ok"
