#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
# Both sides hooked (FI_HOOK=mrlease), plain libfabric programs over
# tcp;ofi_rxm on one host: the owner's pause reaches the peer through the
# state board, so while a hole is punched under the owner's window (ext4,
# fanotify) the peer's posts to it are held (-FI_EAGAIN, retried) instead of
# meeting the closed key, which costs a tcp connection. Then a truncate:
# posts past the new end are refused at once (-FI_EKEYREJECTED), the rest
# keep flowing. Asserted: no transfer to the untouched first half fails or
# reads back other than written, the connection survives, the tail is
# refused after the truncate, both processes end cleanly.
# Run twice: the peer learning of completions from its CQ, then from a
# counter only (FI_RMA_CNTR=1: selective completion, no CQ entries) with a
# break deadline far past the test's waits, so a pause is over only because
# the hook counted the peer's operations out when its counter showed them done.
# Then with a board directory each, as on two hosts, the board carried by
# the relay (MRLEASE_FI_RELAY): the same assertions hold.
set -u
B=${MRL_BIN:-build}
[ "$(id -u)" = 0 ] || { echo "SKIP: fanotify pre-content events need root"; exit 77; }
dir=$(mktemp -d /var/tmp/mrl-fihp-XXXXXX)
[ "$(stat -f -c %T "$dir")" != tmpfs ] || { echo "SKIP: /var/tmp is tmpfs"; exit 77; }
trap 'kill $opid $ppid 2>/dev/null; [ -n "${KEEP:-}" ] || rm -rf "$dir"' EXIT
export FI_RMA_PROV="tcp;ofi_rxm"
. "$(dirname "$0")/fi_rig.sh"

# pair cq|cntr|relay
pair() {
	echo "== $([ "$1" = relay ] && echo "a board each, carried by the relay; completions by cq" || echo "completions by $1")"
	if [ "$1" = cntr ]; then export FI_RMA_CNTR=1 MRLEASE_DEADLINE_MS=600000; else unset FI_RMA_CNTR MRLEASE_DEADLINE_MS; fi
	OWNER_ENV= PEER_ENV=
	if [ "$1" = relay ]; then
		local port=$((20000 + $$ % 20000))
		while ss -ltnH "sport = :$port" | grep -q .; do port=$((port + 1)); done
		OWNER_ENV="MRLEASE_FI_BOARD_DIR=$dir/boards-owner MRLEASE_FI_RELAY=$port"
		PEER_ENV="MRLEASE_FI_BOARD_DIR=$dir/boards-peer MRLEASE_FI_RELAY=$port"
	fi
	rig_start hook hook || return 1
	key=$(rig_key)
	[ -n "$key" ] || { echo "the window was not leased:"; cat "$dir/log"; return 1; }
	if [ "$1" = relay ]; then
		ls "$dir/boards-owner"/board.$opid.* > /dev/null 2>&1 && ! ls "$dir/boards-peer"/board.$opid.* > /dev/null 2>&1 ||
			{ echo "the owner's board is not on its side alone"; fail=1; }
		grep -q "^mrlease\[$opid\]: relay: serving this host's state boards" "$dir/log" ||
			{ echo "the owner does not relay its board:"; cat "$dir/log"; fail=1; }
	fi
	i=0
	for hole in 600000 700000 650000; do
		i=$((i + 1))
		fallocate --punch-hole -o $hole -l 50000 "$dir/f" & apid=$!
		wait_for "grep -q 'break: key $key file $dir/f bytes $hole+50000 cause punch-hole pid $apid;' '$dir/log'" || fail=1
		wait $apid
		wait_for "[ \$(grep -c 'restore: key $key file $dir/f .*same key' '$dir/log') -ge $i ]" || fail=1
		ok=$(stat_field ok)
		wait_for '[ "$(stat_field ok)" -gt "$ok" ]' || { echo "no transfer succeeded after the restore"; fail=1; }
	done
	[ "$(stat_field errors)" = 0 ] || { echo "transfers failed around the punches:"; tail -3 "$dir/peer.out"; fail=1; }
	
	truncate -s $CUT "$dir/f" & tpid=$!
	wait_for 'grep -q "restore: key $key file $dir/f bytes 0+$CUT cause truncated" "$dir/log"' || fail=1
	wait $tpid
	p=$(passes)
	wait_for '[ "$(passes)" -ge $((p + 2)) ]' || fail=1
	rig_stop
	echo "owner exit $orc; peer: $final"
	[ $orc = 0 ] || { echo "the owner died:"; cat "$dir/owner.out"; fail=1; }
	case "$final" in
	*" strict_errors 0 strict_bad 0 "*) ;; # other_bad: a punch may zero a block between its write and read-back
	*) echo "transfers to the untouched half failed or read back wrong (or the connection was lost)"; fail=1;;
	esac
	e=$(echo "$final" | awk '{print $5}')
	[ "$e" -gt 0 ] || { echo "no transfer to the truncated tail was refused"; fail=1; }
	grep -q "last_error Key was rejected" "$dir/peer.out" || { echo "the tail was not refused as a rejected key"; fail=1; }
	grep -q "summary: .*as initiator: [0-9]* posts held by a pause, [1-9][0-9]* refused" "$dir/log" ||
		{ echo "the peer's hook refused nothing:"; grep summary "$dir/log"; fail=1; }
	if [ "$1" = cntr ]; then
		grep -Eq "summary: .* [1-9][0-9]* counted out by a counter" "$dir/log" ||
			{ echo "no operation was counted out by the peer's counter"; fail=1; }
	fi
	grep summary "$dir/log" | sed 's/^/  | /'
}

fail=0
pair cq || fail=1
pair cntr || fail=1
pair relay || fail=1
exit $fail
