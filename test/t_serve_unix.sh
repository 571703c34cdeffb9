#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
# Same host, no secret (issue 16): `mrlease serve FILE --unix PATH` and
# `mrlease client unix:PATH` with no secret anywhere stream verified I/O
# (0 failed, 0 mismatched); the socket is mode 0600 and gone after the
# server; a client of another uid (nobody), even with the socket opened to
# it, is refused and told why; --insecure with --unix is refused as input.
set -u
bin=${MRL_BIN:-build}/mrlease
unset MRLEASE_SECRET MRLEASE_SECRET_FILE
fail=0 port=0
. "$(dirname "$0")/serve_rig.sh"
d=$(mktemp -d /dev/shm/mrl-serveunix-XXXXXX)
trap 'kill $spid 2>/dev/null; rm -rf "$d"' EXIT
head -c 4194304 /dev/urandom > "$d/f"
rig_target=unix:$d/boot
# MRL_DEBUG: the server logs each refused handshake
MRL_DEBUG=1 rig_start "unix, no secret" "$d/f" "$d" 3 --unix "$d/boot" || exit 1
mode=$(stat -c %a "$d/boot")
[ "$mode" = 600 ] || { echo "FAIL: the socket is mode $mode, not 600"; fail=1; }
if [ "$(id -u)" = 0 ] && id nobody >/dev/null 2>&1; then
	chmod 711 "$d"; chmod 666 "$d/boot"
	out=$(su nobody -s /bin/sh -c "'$PWD/$bin' client unix:$d/boot --seconds 1" 2>&1); rc=$?
	echo "  nobody: exit $rc: $out"
	[ $rc != 0 ] || { echo "FAIL: a client of uid nobody got in"; fail=1; }
	echo "$out" | grep -q "uid" || { echo "FAIL: the refusal does not say why"; fail=1; }
	grep -q "refused a peer of uid $(id -u nobody)" "$d/server.out" ||
		{ echo "FAIL: the server did not report the refusal"; cat "$d/server.out"; fail=1; }
else
	echo "note: the other-uid case needs root and a user nobody: not run"
fi
rig_finish "unix, no secret" "$d"
[ -e "$d/boot" ] && { echo "FAIL: the socket outlived the server"; fail=1; }
"$bin" serve "$d/f" --unix "$d/boot" --insecure > "$d/bad.out" 2>&1; rc=$?
[ $rc = 2 ] && grep -q -- "--insecure and --unix" "$d/bad.out" ||
	{ echo "FAIL: --insecure with --unix was not refused as input (exit $rc)"; cat "$d/bad.out"; fail=1; }
[ $fail = 0 ] && echo "t_serve_unix: ok"
exit $fail
