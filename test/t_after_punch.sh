#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
# A change seen only after it lands still reaches the peer: another process
# holds the served file open from before registration (so the lease cannot
# be held, or fanotify's mark does not cover its fd) and punches holes while
# `mrlease client` streams verified writes and reads. Every read that lost
# its bytes must be announced by a new generation (0 silent mismatches), the
# generation must move, and the server must survive.
#  lease, ext4 (--no-fanotify) and tmpfs: punches by fallocate(1);
#  fanotify, ext4: punches through the fd that predates the mark.
set -u
bin=${MRL_BIN:-build}/mrlease
# serve and client authenticate with a shared secret (t_netns.sh: a file serve writes)
export MRLEASE_SECRET=mrlease-test-secret-6b1f0c9e
command -v fallocate >/dev/null || { echo "SKIP: fallocate (util-linux) not installed"; exit 77; }
case $(uname -m) in x86_64) nr=285;; aarch64) nr=47;; *) nr=;; esac
fail=0 port=$((17000 + $$ % 1000))
. "$(dirname "$0")/serve_rig.sh"
run() { # name dir serve-flags how
	local name=$1 d=$2 flags=$3 how=$4 f=$2/f n=0
	head -c 4194304 /dev/urandom > "$f" && sync "$f"
	exec 7<>"$f" # opened before registration, held to the end
	rig_start "$name" "$f" "$d" 4 $flags || { exec 7>&-; return; }
	while kill -0 $cpid 2>/dev/null && [ $n -lt 400 ]; do
		local o=$(( (RANDOM % 1000) * 4096 )) l=$(( (1 + RANDOM % 4) * 4096 ))
		if [ "$how" = fd ]; then
			perl -e 'open(my $h, "+<&=7") or die; syscall('$nr', fileno($h), 3, '$o', '$l') == 0 or die "fallocate: $!"' || { echo "FAIL $name: punch through the old fd"; fail=1; break; }
		else
			fallocate --punch-hole -o $o -l $l "$f" || { echo "FAIL $name: fallocate"; fail=1; break; }
		fi
		n=$((n+1))
	done
	echo "$name: $n punches"
	rig_finish "$name" "$d"
	exec 7>&-
	echo "$js" | grep -Eq '"gen_changes":[1-9]' || { echo "FAIL $name: no new generation reached the peer"; fail=1; }
}
ext=$(mktemp -d /var/tmp/mrl-afterpunch-XXXXXX)
shm=$(mktemp -d /dev/shm/mrl-afterpunch-XXXXXX)
trap 'rm -rf "$ext" "$shm"' EXIT
[ "$(stat -f -c %T "$ext")" = ext2/ext3 ] || echo "note: $ext is $(stat -f -c %T "$ext"), not ext4"
run "lease, ext4" "$ext" --no-fanotify path
run "lease, tmpfs" "$shm" "" path
if [ "$(id -u)" != 0 ]; then
	echo "fanotify case skipped: needs root (CAP_SYS_ADMIN) for a fanotify mark"
elif [ -z "$nr" ] || ! command -v perl >/dev/null; then
	echo "fanotify case skipped: no way to punch through an inherited fd here (perl, x86_64/aarch64)"
else
	run "fanotify, ext4, fd older than the mark" "$ext" "" fd
fi
[ $fail = 0 ] && echo "t_after_punch: ok"
exit $fail
