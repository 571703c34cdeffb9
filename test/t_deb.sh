#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
# The Debian packages (`make test-deb`; minutes, so not in `make test`):
# dpkg-buildpackage -us -uc -b builds libmrlease0, libmrlease-dev and
# mrlease from a copy of the tree; lintian finds no error in them; unpacked
# into a scratch root they hold what each should (real name and links, the
# symbols file, header, .pc, pages with .so pages as links); a program built
# with the unpacked `pkg-config --cflags --libs mrlease` registers, queries
# and deregisters an MR; the unpacked CLI runs and has no RUNPATH.
set -u
cd "$(dirname "$0")/.." || exit 1
src=$(pwd)
need="debhelper dpkg-dev fakeroot lintian build-essential pkg-config libfabric-dev liburing-dev groff-base"
missing=
for p in $need; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
	sudo=
	[ "$(id -u)" = 0 ] || sudo="sudo -n"
	echo "installing$missing"
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing >/dev/null 2>&1 ||
		{ echo "skip: cannot install$missing (needs root or sudo, and apt)"; exit 77; }
fi
fail=0
work=$(mktemp -d /var/tmp/mrl-deb-XXXXXX)
trap 'rm -rf "$work"' EXIT
ver=$(dpkg-parsechangelog -l debian/changelog -S Version)
ma=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
arch=$(dpkg-architecture -qDEB_HOST_ARCH)

# a copy of the tree as it is now (tracked and new files, not ignored ones)
mkdir -p "$work/mrlease-$ver"
if git rev-parse --show-toplevel >/dev/null 2>&1; then
	git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf - | tar -xf - -C "$work/mrlease-$ver"
else
	tar --exclude='./build*' --exclude=./results -cf - . | tar -xf - -C "$work/mrlease-$ver"
fi
echo "dpkg-buildpackage -us -uc -b (log: build.log)"
if ! (cd "$work/mrlease-$ver" && dpkg-buildpackage -us -uc -b) > "$work/build.log" 2>&1; then
	echo "FAIL: dpkg-buildpackage"; tail -n 40 "$work/build.log"; exit 1
fi
grep -E "^dpkg-(shlibdeps|gensymbols): (warning|error)" "$work/build.log" && { echo "FAIL: symbols or shlibs warnings above"; fail=1; }
debs=()
for p in libmrlease0 libmrlease-dev mrlease; do
	d="$work/${p}_${ver}_${arch}.deb"
	[ -f "$d" ] || { echo "FAIL: $p was not built"; ls "$work"; exit 1; }
	debs+=("$d")
done

# lintian: no errors (warnings are printed, not fatal)
lintian --fail-on error --tag-display-limit 0 "${debs[@]}" > "$work/lintian.log" 2>&1
lrc=$?
sed 's/^/    lintian: /' "$work/lintian.log"
[ $lrc = 0 ] || { echo "FAIL: lintian reports errors"; fail=1; }

# what each package holds
has() { # DEB PATH-REGEX
	dpkg-deb -c "$1" | awk '{print $6}' | grep -qE "$2" || { echo "FAIL: $(basename "$1") lacks $2"; fail=1; }
}
L="\./usr/lib/$ma"
has "${debs[0]}" "^$L/libmrlease\.so\.0\.1\.0$"
has "${debs[0]}" "^$L/libmrlease\.so\.0$"
has "${debs[0]}" "^$L/libmrlease-preload\.so$"
has "${debs[1]}" "^\./usr/include/mrlease\.h$"
has "${debs[1]}" "^$L/libmrlease\.so$"
has "${debs[1]}" "^$L/libmrlease\.a$"
has "${debs[1]}" "^$L/pkgconfig/mrlease\.pc$"
has "${debs[1]}" "^\./usr/share/man/man3/mrl_mr_reg\.3\.gz$"
has "${debs[2]}" "^\./usr/bin/mrlease$"
has "${debs[2]}" "^\./usr/share/man/man1/mrlease\.1\.gz$"
has "${debs[2]}" "^\./usr/share/man/man7/mrlease\.7\.gz$"
dpkg-deb --ctrl-tarfile "${debs[0]}" | tar -tf - | grep -q '^\./symbols$' || { echo "FAIL: libmrlease0 has no symbols file"; fail=1; }
dpkg-deb -f "${debs[2]}" Depends | grep -q "libmrlease0 (= $ver)" || { echo "FAIL: mrlease does not depend on libmrlease0 (= $ver)"; fail=1; }

root=$work/root
for d in "${debs[@]}"; do dpkg -x "$d" "$root"; done
lib=$root/usr/lib/$ma
[ "$(readlink "$lib/libmrlease.so")" = libmrlease.so.0 ] || [ "$(readlink "$lib/libmrlease.so")" = libmrlease.so.0.1.0 ] ||
	{ echo "FAIL: libmrlease.so -> $(readlink "$lib/libmrlease.so")"; fail=1; }
[ "$(readlink "$lib/libmrlease.so.0")" = libmrlease.so.0.1.0 ] || { echo "FAIL: libmrlease.so.0 -> $(readlink "$lib/libmrlease.so.0")"; fail=1; }
# dh_installman turned the .so pages into links
[ -L "$root/usr/share/man/man3/mrl_mr_dereg.3.gz" ] || { echo "FAIL: mrl_mr_dereg.3 is not a link to its page"; fail=1; }
out=$(MANWIDTH=80 man -l "$root/usr/share/man/man3/mrl_mr_dereg.3.gz" 2>&1)
echo "$out" | grep -q "mrl_mr_dereg" && echo "$out" | grep -q "RETURN VALUE" || { echo "FAIL: man mrl_mr_dereg does not show the page"; fail=1; }

# a program built against the unpacked package, through pkg-config
export PKG_CONFIG_SYSROOT_DIR=$root
export PKG_CONFIG_LIBDIR=$lib/pkgconfig:/usr/lib/$ma/pkgconfig:/usr/share/pkgconfig
flags=$(pkg-config --cflags --libs mrlease) || { echo "FAIL: pkg-config mrlease"; fail=1; }
echo "pkg-config --cflags --libs mrlease: $flags"
[ "$(pkg-config --modversion mrlease)" = 0.1.0 ] || { echo "FAIL: pkg-config --modversion: $(pkg-config --modversion mrlease)"; fail=1; }
[ "$(pkg-config --variable=libdir mrlease)" = "$lib" ] || { echo "FAIL: libdir $(pkg-config --variable=libdir mrlease), expected $lib"; fail=1; }
cat > "$work/use.c" <<'C'
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <mrlease.h>
#define CHECK(c) do { if (!(c)) { fprintf(stderr, "FAIL: %s (%s)\n", #c, mrl_last_error()); return 1; } } while (0)
int main(void)
{
	struct mrl_ctx_opts o = {.size = sizeof(o), .provider = "mock"};
	mrl_ctx *ctx;
	mrl_mr_t mr;
	size_t len = 1 << 16;
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(p != MAP_FAILED);
	CHECK(mrl_ctx_create(&o, &ctx) == 0);
	CHECK(mrl_mr_reg(ctx, p, len, MRL_ACCESS_REMOTE_READ, NULL, &mr) == 0);
	struct mrl_mr_info info = {.size = sizeof(info)};
	CHECK(mrl_mr_query(ctx, mr, &info) == 0);
	CHECK(info.state == MRL_STATE_ACTIVE && info.kind == MRL_KIND_ANON && info.length == len);
	CHECK(mrl_mr_dereg(ctx, mr) == 0);
	CHECK(mrl_mr_dereg(ctx, mr) == -ESTALE);
	CHECK(mrl_mr_reg(ctx, NULL, len, 0, NULL, &mr) == -EINVAL);
	printf("registered %zu bytes (%s), watchers %#x; then %s\n", len, mrl_kind_str(info.kind),
	       (unsigned)mrl_ctx_watchers(ctx), mrl_strerror(-ESTALE));
	CHECK(mrl_ctx_destroy(ctx) == 0);
	return 0;
}
C
# shellcheck disable=SC2086 # word splitting of the flags is meant
if cc -Wall -Wextra -Werror -o "$work/use" "$work/use.c" $flags; then
	readelf -d "$work/use" | grep -q 'NEEDED.*\[libmrlease\.so\.0\]' || { echo "FAIL: the program does not need libmrlease.so.0"; fail=1; }
	LD_LIBRARY_PATH=$lib "$work/use" || { echo "FAIL: the program built against the package"; fail=1; }
else
	echo "FAIL: cannot build a program with pkg-config's flags"; fail=1
fi

# the CLI from the package: no RUNPATH, finds the preload library in LIBDIR
cli=$root/usr/bin/mrlease
readelf -d "$cli" | grep -qE 'RUNPATH|RPATH' && { echo "FAIL: the packaged mrlease has a RUNPATH"; fail=1; }
readelf -d "$cli" | grep -q 'NEEDED.*libmrlease-preload\.so' || { echo "FAIL: mrlease does not need libmrlease-preload.so"; fail=1; }
LD_LIBRARY_PATH=$lib "$cli" demo --help | grep -q "usage: mrlease" || { echo "FAIL: mrlease demo --help"; fail=1; }
LD_LIBRARY_PATH=$lib "$cli" coverage > "$work/cov" 2>&1 || { echo "FAIL: mrlease coverage exits $?"; cat "$work/cov"; fail=1; }
grep -q "coverage now" "$work/cov" || { echo "FAIL: mrlease coverage printed no table"; cat "$work/cov"; fail=1; }
LD_LIBRARY_PATH=$lib "$cli" serve 2>/dev/null; [ $? = 2 ] || { echo "FAIL: mrlease serve without FILE should exit 2"; fail=1; }

[ $fail = 0 ] && echo "ok: 3 packages built, lintian clean of errors, a pkg-config program and the CLI run from them"
exit $fail
