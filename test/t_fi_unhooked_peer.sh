#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
# A peer without the hook is safe (FI_HOOK=mrlease in the owner only): a plain
# libfabric owner serves a MAP_SHARED file window (ext4, where fanotify holds
# a change back until it is let in) as one MR; a plain libfabric peer streams
# verified 4 KiB writes and read-backs at it over sockets while the test punches a
# hole (fallocate --punch-hole) and truncates the file (truncate). With the
# hook: each break is logged before it lands (key, file, cause, actor pid)
# and restored under the same key (the peer's transfers succeed again), the
# truncated tail is fenced (its transfers fail cleanly), nothing the peer read
# back in the untouched first half differs from what it wrote, the owner
# lives. (Without it the owner's provider meets the truncated tail: SIGBUS
# when it copies there, or a recv() into it failing EFAULT for ever: a hang.)
set -u
B=${MRL_BIN:-build}
[ "$(id -u)" = 0 ] || { echo "SKIP: fanotify pre-content events need root"; exit 77; }
dir=$(mktemp -d /var/tmp/mrl-fiup-XXXXXX) # /var/tmp: a disk filesystem (fanotify)
[ "$(stat -f -c %T "$dir")" != tmpfs ] || { echo "SKIP: /var/tmp is tmpfs"; exit 77; }
trap 'kill $opid $ppid 2>/dev/null; rm -rf "$dir"' EXIT
export FI_RMA_PROV=sockets
SIZE=262144 STRICT=131072 CUT=196608 # sockets is slow: a small window
. "$(dirname "$0")/fi_rig.sh"

fail=0
# ---- with the hook ----
rig_start hook plain || exit 1
key=$(rig_key)
[ -n "$key" ] || { echo "the window was not leased:"; cat "$dir/log"; exit 1; }
grep -q "leased key $key .*($dir/f)" "$dir/log" || { echo "lease line does not name the file"; cat "$dir/log"; fail=1; }

fallocate --punch-hole -o 150000 -l 25000 "$dir/f" & apid=$!
wait_for 'grep -q "^mrlease.*restore: key $key file $dir/f .*cause punch-hole.*same key" "$dir/log"' || fail=1
wait $apid
grep -Eq "break: key $key file $dir/f bytes 150000\+25000 cause punch-hole pid $apid;.*peers without the hook cannot be paused" "$dir/log" ||
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
rig_stop
echo "hooked owner: exit $orc; peer: $final"
[ $orc = 0 ] || { echo "the hooked owner died:"; cat "$dir/owner.out"; fail=1; }
case "$final" in *" strict_bad 0 "*) ;; *) echo "the peer read back data it did not write in the untouched half"; fail=1;; esac
grep -q "summary: domain on sockets: 1 MRs (1 leased, 0 registered as they are), 2 breaks, 2 restores, 1 fences" "$dir/log" ||
	{ echo "summary:"; grep summary "$dir/log"; fail=1; }
sed 's/^/  | /' "$dir/log"

exit $fail
