#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
# Installs what mrlease needs to build, test and run its demo on Debian/Ubuntu.
# Quiet and quick when everything is already there.
set -e
pkgs="build-essential pkg-config libfabric-dev libfabric-bin liburing-dev libssl-dev libucx-dev clang libclang-rt-dev util-linux coreutils iproute2 procps gnuplot-nox valgrind xfsprogs btrfs-progs groff-base binutils openmpi-bin libopenmpi-dev"
missing=
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "setup: installing$missing"
sudo=
[ "$(id -u)" = 0 ] || sudo=sudo
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq $missing >/dev/null
