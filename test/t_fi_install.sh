#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
# `make install` puts the libfabric hook under PREFIX like everything else
# ($(LIBDIR)/libfabric/, inside DESTDIR), never in the system's directory;
# PREFIX=/usr with Debian's multiarch LIBDIR (what debian/rules passes) is
# libfabric's own provider directory; and libfabric loads the installed
# hook from there (fi_info with FI_PROVIDER_PATH pointing at it).
set -u
cd "$(dirname "$0")/.." || exit 1
[ -f build/fi/libmrlease-fi.so ] || { echo "skip: build/fi/libmrlease-fi.so not built (make)"; exit 77; }
work=$(mktemp -d /tmp/mrl-fi-inst-XXXXXX)
trap 'rm -rf "$work"' EXIT
fail=0

make --no-print-directory -s install PREFIX=/opt/mrl DESTDIR="$work/a" >"$work/a.log" 2>&1 ||
	{ echo "FAIL: make install PREFIX=/opt/mrl"; tail "$work/a.log"; exit 1; }
hook=$(find "$work/a" -name libmrlease-fi.so)
n=$(printf '%s\n' "$hook" | grep -c .)
[ "$n" = 1 ] || { echo "FAIL: $n installed hooks: $hook"; fail=1; }
case "$hook" in
"$work/a/opt/mrl/lib/"*libfabric/libmrlease-fi.so) echo "ok: PREFIX=/opt/mrl -> ${hook#"$work/a"}" ;;
*) echo "FAIL: hook not under the prefix: ${hook#"$work/a"}"; fail=1 ;;
esac
outside=$(find "$work/a" -type f ! -path "$work/a/opt/mrl/*" | head -3)
[ -z "$outside" ] || { echo "FAIL: files outside the prefix: $outside"; fail=1; }

if command -v dpkg-architecture >/dev/null; then
	ma=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
	make --no-print-directory -s install PREFIX=/usr LIBDIR=/usr/lib/$ma DESTDIR="$work/b" >"$work/b.log" 2>&1 ||
		{ echo "FAIL: make install PREFIX=/usr (debian/rules' variables)"; tail "$work/b.log"; exit 1; }
	if [ -f "$work/b/usr/lib/$ma/libfabric/libmrlease-fi.so" ]; then
		echo "ok: debian layout -> /usr/lib/$ma/libfabric/libmrlease-fi.so"
	else
		echo "FAIL: debian layout: $(find "$work/b" -name libmrlease-fi.so)"; fail=1
	fi
fi

# the installed copy is a provider libfabric loads (a hook lists no fabrics of
# its own: fi_info -l names it)
if command -v fi_info >/dev/null && [ -n "$hook" ]; then
	if FI_PROVIDER_PATH=$(dirname "$hook") fi_info -l 2>&1 | grep -q mrlease; then
		echo "ok: libfabric loads the installed hook"
	else
		echo "FAIL: fi_info -l does not list the installed hook"; fail=1
	fi
fi
exit $fail
