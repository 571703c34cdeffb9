#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
# Non-regression of the libfabric hook under unmodified Open MPI two-sided
# messaging (pml cm over mtl ofi, on tcp;ofi_rxm and on sockets): the ranks
# exchange verified tagged messages of 0 B .. 4 MiB, from the heap and from
# a MAP_SHARED file, then a broadcast and an allreduce (test/mpi_msg.c).
# Asserted: the run prints the same results with FI_HOOK=mrlease as
# without (every message verified, same checksums), the job ends normally,
# the hook sat on exactly one application-facing domain per rank and
# wrapped its endpoint, and it had nothing to do: no MR registered through
# it, no break, restore, fence, no operation held, refused or discarded,
# no error line in its log.
set -u
B=${MRL_BIN:-build}
so=$B/fi/libmrlease-fi.so prog=$B/test/mpi_msg
command -v mpirun >/dev/null || { echo "SKIP: Open MPI not installed (scripts/setup.sh installs it)"; exit 77; }
ompi_info 2>/dev/null | grep -q "MCA mtl: ofi" ||
	{ echo "SKIP: this Open MPI has no mtl/ofi component (built without libfabric)"; exit 77; }
[ -f "$so" ] && [ -x "$prog" ] || { echo "no $so or $prog (make tests builds them)"; exit 1; }
dir=$(mktemp -d /tmp/mrl-fimpi2-XXXXXX)
trap 'rm -rf "$dir"' EXIT
ROUNDS=3

# run PROV TAG [hook]: the job's output in $dir/TAG.out, its exit status returned
run() {
	local prov=$1 tag=$2 env=()
	[ -n "${3:-}" ] && env=(FI_PROVIDER_PATH="$(dirname "$so")" FI_HOOK=mrlease MRLEASE_LOG="$dir/$tag.log")
	mkdir -p "$dir/$tag"
	env "${env[@]}" mpirun --allow-run-as-root --oversubscribe -np 2 --mca pml cm --mca mtl ofi \
		--mca mtl_ofi_provider_include "$prov" --mca btl self \
		"$prog" "$dir/$tag" $ROUNDS > "$dir/$tag.out" 2>&1
}
results() { grep -E '^(result|allreduce) ' "$1" | sort; }

fail=0
for prov in "tcp;ofi_rxm" sockets; do
	tag=$(echo "$prov" | tr ';' '_')
	run "$prov" "$tag-plain" || { echo "$prov: the job failed without the hook:"; cat "$dir/$tag-plain.out"; fail=1; continue; }
	run "$prov" "$tag-hook" hook || { echo "$prov: the job failed with the hook:"; cat "$dir/$tag-hook.out"; fail=1; continue; }
	[ "$(results "$dir/$tag-plain.out" | grep -c '^result rank [01] msgs [1-9][0-9]* bytes [1-9][0-9]* bad 0 ')" = 2 ] ||
		{ echo "$prov: without the hook, not every message verified:"; cat "$dir/$tag-plain.out"; fail=1; }
	if ! diff <(results "$dir/$tag-plain.out") <(results "$dir/$tag-hook.out") > "$dir/diff"; then
		echo "$prov: results differ with the hook:"; cat "$dir/diff"; fail=1
	fi
	log=$dir/$tag-hook.log
	[ -f "$log" ] || { echo "$prov: the hook wrote no log (not loaded?)"; fail=1; continue; }
	pids=$(sed -n 's/^mrlease\[\([0-9]*\)\].*/\1/p' "$log" | sort -u)
	[ "$(echo "$pids" | wc -w)" = 2 ] || { echo "$prov: expected 2 hooked ranks, log:"; cat "$log"; fail=1; }
	for p in $pids; do
		n=$(grep -c "^mrlease\[$p\]: hooked domain on $prov: leasing on" "$log")
		[ "$n" = 1 ] || { echo "$prov: rank process $p hooked $n application domains (want 1)"; fail=1; }
		grep -Eq "^mrlease\[$p\]: summary: domain on $prov: 0 MRs \(0 leased, 0 registered as they are\), 0 breaks, 0 restores, 0 fences, 0 changed after; as initiator: 0 posts held by a pause, 0 refused, 0 discarded past a truncated end, 0 counted out by a counter; endpoints: [1-9]" "$log" ||
			{ echo "$prov: process $p: the hook did something (or wrapped no endpoint):"; grep "^mrlease\[$p\]" "$log"; fail=1; }
	done
	if grep -v -E ': (hooked domain on|summary: domain on) ' "$log" | grep -q .; then
		echo "$prov: the hook logged more than its domains and summaries:"; cat "$log"; fail=1
	fi
	[ $fail = 0 ] && echo "$prov: pml cm + mtl ofi, same results with and without the hook ($(results "$dir/$tag-hook.out" | head -1)); hook idle in $(echo $pids)"
done
exit $fail
