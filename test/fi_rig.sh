# SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
# Sourced by test/t_fi_*.sh: a plain libfabric owner serving a file window
# and a peer streaming verified transfers at it (test/fi_rma), either side
# run with or without FI_HOOK=mrlease. Needs B and dir set by the caller.
so=$B/fi/libmrlease-fi.so rma=$B/test/fi_rma
[ -f "$so" ] && [ -x "$rma" ] || { echo "no $so or $rma (make tests builds them)"; exit 1; }
opid= ppid=
: ${SIZE:=1048576} ${STRICT:=524288} ${CUT:=786432}

# bounded only to detect a hang: every wait is for an event
wait_for() { local i; for i in $(seq 1200); do eval "$1" && return 0; sleep 0.1; done; echo "timed out: $1"; return 1; }
stat_field() { grep '^stats' "$dir/peer.out" | tail -1 | awk -v f="$1" '{for (i = 1; i < NF; i++) if ($i == f) print $(i + 1)}'; }
passes() { grep -c '^stats' "$dir/peer.out"; }
hook_env() { echo FI_PROVIDER_PATH="$(dirname "$so")" FI_HOOK=mrlease MRLEASE_LOG="$dir/log"; }

# rig_start OWNER_HOOK PEER_HOOK (hook|plain): owner and peer on a fresh file
# (OWNER_ENV, PEER_ENV: more assignments for a hooked side)
rig_start() {
	# the last run's outputs too: a wait could read its "listening" line
	# before the new owner's redirection truncates the file
	rm -f "$dir/f" "$dir/stop" "$dir/log" "$dir/owner.out" "$dir/peer.out"
	head -c $SIZE /dev/urandom > "$dir/f"
	local oenv=() penv=()
	[ "$1" = hook ] && oenv=($(hook_env) ${OWNER_ENV:-})
	[ "$2" = hook ] && penv=($(hook_env) ${PEER_ENV:-})
	env "${oenv[@]}" "$rma" owner "$dir/f" 0 > "$dir/owner.out" 2>&1 &
	opid=$!
	wait_for 'grep -q listening "$dir/owner.out"' || { cat "$dir/owner.out"; return 1; }
	local port=$(sed -n 's/^listening port \([0-9]*\) .*/\1/p' "$dir/owner.out")
	env "${penv[@]}" "$rma" peer 127.0.0.1 $port "$dir/stop" $STRICT > "$dir/peer.out" 2>&1 &
	ppid=$!
	wait_for '[ "$(stat_field ok)" -gt 0 ] 2>/dev/null' || { cat "$dir/peer.out"; return 1; }
}

# the owner's leased window's key, from the log
rig_key() { sed -n 's/.*\]: leased key \(0x[0-9a-f]*\|0\) .*('"${dir//\//\\/}"'\/f)$/\1/p' "$dir/log"; }

# rig_stop: stop the peer, wait for both; sets orc (the owner's exit) and final
rig_stop() {
	touch "$dir/stop"
	wait $ppid; ppid=
	wait_for '! kill -0 $opid 2>/dev/null'
	wait $opid; orc=$?; opid=
	final=$(grep '^final' "$dir/peer.out")
}
