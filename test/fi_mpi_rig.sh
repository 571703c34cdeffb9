# SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
# Sourced by test/t_fi_mpi*.sh: one run of the MPI proof (test/mpi_win.c
# under mpirun with FI_HOOK=mrlease, punches then a truncate of rank 1's
# window file, everything asserted). Needs B, top, SIZE, STRICT, CUT set,
# and mpid (the job's pid, for the caller's cleanup). MPI_PRE: a command
# mpirun runs under (ip netns exec NS); MPI_EXTRA: more mpirun arguments.
so=$B/fi/libmrlease-fi.so prog=$B/test/mpi_win
[ -f "$so" ] && [ -x "$prog" ] || { echo "no $so or $prog (make tests builds them)"; exit 1; }
: ${MPI_PRE:=} ${MPI_EXTRA:=}
mpid= dir=$top

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
	FI_PROVIDER_PATH="$(realpath "$(dirname "$so")")" FI_HOOK=mrlease MRLEASE_LOG="$dir/log" \
		$MPI_PRE mpirun $MPI_EXTRA --allow-run-as-root --oversubscribe -np 2 --mca pml ob1 --mca btl self,tcp,ofi \
		--mca btl_ofi_provider_include "$prov" --mca btl_ofi_disable_sep $nosep --mca osc rdma --mca osc_rdma_btls ofi \
		"$prog" "$dir" $STRICT "$dir/stop" > "$dir/out" 2>&1 &
	mpid=$!
	wait_for '[ "$(passes0)" -ge 1 ] || ! alive' && alive || { echo "the job did not start:"; cat "$dir/out"; return 1; }
	key=$(sed -n 's/.*\]: leased key \(0x[0-9a-f]*\) .*('"${dir//\//\\/}"'\/win.1)$/\1/p' "$dir/log")
	[ -n "$key" ] || { echo "rank 1's window was not leased:"; cat "$dir/log"; return 1; }
	# the caller's own check of the running job (on_start, if it has one)
	if declare -F on_start >/dev/null; then on_start || fail=1; fi
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

