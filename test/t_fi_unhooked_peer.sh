#!/bin/bash
# A peer without the hook is safe (FI_HOOK=mrlease in the owner only): a plain
# libfabric owner serves a MAP_SHARED file window (ext4, where fanotify holds
# a change back until it is let in) as one MR; a plain libfabric peer streams
# verified 4 KiB writes and read-backs at it over sockets while the test punches a
# hole (fallocate --punch-hole) and truncates the file (truncate). With the
# hook: each break is logged before it lands (key, file, cause, actor pid)
# and restored under the same key (the peer's transfers succeed again), the
# truncated tail is fenced (its transfers fail cleanly), nothing the peer read
# back in the untouched first half differs from what it wrote, the owner
# lives. Without it, the same run kills the owner with SIGBUS.
set -u
B=${MRL_BIN:-build}
so=$B/fi/libmrlease-fi.so rma=$B/test/fi_rma
[ -f "$so" ] && [ -x "$rma" ] || { echo "no $so or $rma (make tests builds them)"; exit 1; }
[ "$(id -u)" = 0 ] || { echo "SKIP: fanotify pre-content events need root"; exit 77; }
dir=$(mktemp -d /var/tmp/mrl-fiup-XXXXXX) # /var/tmp: a disk filesystem (fanotify)
[ "$(stat -f -c %T "$dir")" != tmpfs ] || { echo "SKIP: /var/tmp is tmpfs"; exit 77; }
opid= ppid=
trap 'kill $opid $ppid 2>/dev/null; rm -rf "$dir"' EXIT
port=$((30000 + $$ % 20000))
export FI_RMA_PROV=sockets
SIZE=1048576 STRICT=524288 CUT=786432

# bounded only to detect a hang: every wait is for an event
wait_for() { for i in $(seq 1200); do eval "$1" && return 0; sleep 0.1; done; echo "timed out: $1"; return 1; }
stat_field() { grep '^stats' "$dir/peer.out" | tail -1 | awk -v f="$1" '{for (i = 1; i < NF; i++) if ($i == f) print $(i + 1)}'; }
passes() { grep -c '^stats' "$dir/peer.out"; }

# start HOOK: owner (hooked or not) and peer on a fresh file
start() {
	port=$((port + 1))
	rm -f "$dir/f" "$dir/stop" "$dir/log"
	head -c $SIZE /dev/urandom > "$dir/f"
	local env=()
	[ "$1" = hook ] && env=(FI_PROVIDER_PATH="$(dirname "$so")" FI_HOOK=mrlease MRLEASE_LOG="$dir/log")
	env "${env[@]}" "$rma" owner "$dir/f" $port > "$dir/owner.out" 2>&1 &
	opid=$!
	wait_for 'grep -q listening "$dir/owner.out"' || { cat "$dir/owner.out"; return 1; }
	"$rma" peer 127.0.0.1 $port "$dir/stop" $STRICT > "$dir/peer.out" 2>&1 &
	ppid=$!
	wait_for '[ "$(stat_field ok)" -gt 0 ] 2>/dev/null' || { cat "$dir/peer.out"; return 1; }
}

fail=0
# ---- with the hook ----
start hook || exit 1
key=$(sed -n 's/.*leased key \(0x[0-9a-f]*\|0\) .*/\1/p' "$dir/log")
[ -n "$key" ] || { echo "the window was not leased:"; cat "$dir/log"; exit 1; }
grep -q "leased key $key .*($dir/f)" "$dir/log" || { echo "lease line does not name the file"; cat "$dir/log"; fail=1; }

fallocate --punch-hole -o 600000 -l 100000 "$dir/f" & apid=$!
wait_for 'grep -q "^mrlease.*restore: key $key file $dir/f .*cause punch-hole.*same key" "$dir/log"' || fail=1
wait $apid
grep -Eq "break: key $key file $dir/f bytes 600000\+100000 cause punch-hole pid $apid;.*peers without the hook cannot be paused" "$dir/log" ||
	{ echo "no break line naming key, file, cause and actor pid $apid:"; cat "$dir/log"; fail=1; }
ok=$(stat_field ok)
wait_for '[ "$(stat_field ok)" -gt "$ok" ]' || { echo "no transfer succeeded after the restore"; fail=1; }

truncate -s $CUT "$dir/f" & tpid=$!
wait_for 'grep -q "restore: key $key file $dir/f bytes 0+$CUT cause truncated" "$dir/log"' || fail=1
wait $tpid
grep -Eq "break: key $key file $dir/f bytes $CUT\+$((SIZE - CUT)) cause truncated pid $tpid;" "$dir/log" ||
	{ echo "no break line for the truncate by $tpid:"; cat "$dir/log"; fail=1; }
grep -Eq "fence: key $key file $dir/f bytes $CUT\+$((SIZE - CUT)) cause truncated" "$dir/log" ||
	{ echo "the truncated tail was not fenced:"; cat "$dir/log"; fail=1; }
# two more passes: one whole pass over the window after the restore
ok=$(stat_field ok) errs=$(stat_field errors) p=$(passes)
wait_for '[ "$(passes)" -ge $((p + 2)) ]' || fail=1
[ "$(stat_field ok)" -gt "$ok" ] || { echo "the first three quarters refused transfers after the restore"; fail=1; }
[ "$(stat_field errors)" -gt "$errs" ] || { echo "transfers to the truncated tail did not fail"; fail=1; }
touch "$dir/stop"
wait $ppid; ppid=
wait_for '! kill -0 $opid 2>/dev/null'
wait $opid; orc=$?; opid=
final=$(grep '^final' "$dir/peer.out")
echo "hooked owner: exit $orc; peer: $final"
[ $orc = 0 ] || { echo "the hooked owner died:"; cat "$dir/owner.out"; fail=1; }
case "$final" in *" strict_bad 0 "*) ;; *) echo "the peer read back data it did not write in the untouched half"; fail=1;; esac
grep -q "summary: domain on sockets: 1 MRs (1 leased, 0 registered as they are), 2 breaks, 2 restores, 1 fences" "$dir/log" ||
	{ echo "summary:"; grep summary "$dir/log"; fail=1; }
sed 's/^/  | /' "$dir/log"

# ---- without it: the truncated tail is written, the owner gets SIGBUS ----
start plain || exit 1
truncate -s $CUT "$dir/f"
wait_for '! kill -0 $opid 2>/dev/null' || fail=1
wait $opid; orc=$?; opid=
touch "$dir/stop"; wait $ppid; ppid=
if grep -q "signal 7" "$dir/owner.out" || [ $orc = 135 ]; then
	echo "unhooked owner: killed by SIGBUS (exit $orc), as expected"
else
	echo "unhooked owner: exit $orc without SIGBUS:"; cat "$dir/owner.out"; fail=1
fi
exit $fail
