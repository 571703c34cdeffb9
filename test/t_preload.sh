#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
# A program that knows nothing of mrlease, run with LD_PRELOAD of
# libmrlease-preload.so, loads a plugin linked with libmrlease.so: the
# program's munmap and the plugin's own are seen (fenced) before they land;
# with a second interposer after ours, both see every call; without the
# preload library nothing claims interposition.
set -u
b=${MRL_BIN:-build}
pl=$(realpath "$b/libmrlease-preload.so") || exit 1
t=$b/test/pl
for f in main plugin.so second.so; do
	[ -e "$t/$f" ] || { echo "missing $t/$f (make tests)"; exit 1; }
done
rc=0
LD_PRELOAD=$pl "$t/main" preloaded "$t/plugin.so" || rc=1
LD_PRELOAD="$pl:$(realpath "$t/second.so")" "$t/main" second "$t/plugin.so" || rc=1
"$t/main" plain "$t/plugin.so" || rc=1
exit $rc
