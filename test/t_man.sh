#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
# The man pages: every page in man/ formats without a warning (groff -man
# -ww), names itself in .TH as its file is named, and a section-3 page has a
# SYNOPSIS and a RETURN VALUE; a `.so` page points at a real page that
# describes that function; every function the library exports
# (nm -D build/libmrlease.so) and every function include/mrlease.h declares
# has a page and a line in debian/libmrlease0.symbols; every mrl_*(3) or
# mrlease(1/7) page referred to exists.
set -u
cd "$(dirname "$0")/.." || exit 1
b=${MRL_BIN:-build}
lib=$b/libmrlease.so
command -v groff >/dev/null || { echo "skip: no groff (scripts/setup.sh installs groff-base)"; exit 77; }
[ -e "$lib" ] || { echo "FAIL: no $lib (make first)"; exit 1; }
fail=0
pages=$(ls man/*.[137] 2>/dev/null)
[ -n "$pages" ] || { echo "FAIL: no pages in man/"; exit 1; }

target() { # the page a file stands for: itself, or what its .so names
	local so
	so=$(grep -v '^\.\\"' "$1" | head -n 1 | sed -n 's/^\.so  *man[1-8]\///p')
	if [ -n "$so" ]; then echo "man/$so"; else echo "$1"; fi
}

full=0 stubs=0
for p in $pages; do
	t=$(target "$p")
	if [ "$t" != "$p" ]; then
		stubs=$((stubs + 1))
		[ -f "$t" ] || { echo "FAIL: $p: .so names $t, which does not exist"; fail=1; continue; }
		[ "$(target "$t")" = "$t" ] || { echo "FAIL: $p: .so names $t, itself a .so page"; fail=1; }
		[ "$(grep -cv '^\.\\"' "$p")" = 1 ] || { echo "FAIL: $p: a .so page holds only the .so line"; fail=1; }
		head -n 1 "$p" | grep -q '^\.so ' || { echo "FAIL: $p: the .so line is not the first (dh_installman links only such pages)"; fail=1; }
		continue
	fi
	full=$((full + 1))
	out=$(LC_ALL=C.UTF-8 groff -man -ww -z "$p" 2>&1)
	[ -z "$out" ] || { echo "FAIL: $p: groff warns:"; echo "$out" | sed 's/^/    /'; fail=1; }
	base=$(basename "$p"); name=${base%.*}; sec=${base##*.}
	th=$(grep -m1 '^\.TH ' "$p" | awk '{print $2, $3}')
	want="$(echo "$name" | tr a-z A-Z) $sec"
	[ "$th" = "$want" ] || { echo "FAIL: $p: .TH says '$th', expected '$want'"; fail=1; }
	for s in NAME DESCRIPTION "SEE ALSO"; do
		grep -q "^\.SH \"\{0,1\}$s" "$p" || { echo "FAIL: $p: no $s section"; fail=1; }
	done
	if [ "$sec" = 3 ]; then
		for s in SYNOPSIS "RETURN VALUE"; do
			grep -q "^\.SH \"\{0,1\}$s" "$p" || { echo "FAIL: $p: no $s section"; fail=1; }
		done
	fi
done

# a function has a page when man/FN.3 exists and the page it stands for names
# FN in NAME and declares it in SYNOPSIS
has_page() {
	local fn=$1 f=man/$1.3 t
	[ -f "$f" ] || { echo "FAIL: $2 $fn has no page (man/$fn.3)"; fail=1; return; }
	t=$(target "$f")
	[ -f "$t" ] || return # reported above
	sed -n '/^\.SH NAME/,/^\.SH/p' "$t" | grep -qw "$fn" ||
		{ echo "FAIL: $t: NAME does not name $fn"; fail=1; }
	sed -n '/^\.SH SYNOPSIS/,/^\.SH DESCRIPTION/p' "$t" | grep -q "$fn(" ||
		{ echo "FAIL: $t: SYNOPSIS does not declare $fn"; fail=1; }
}

exports=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TtWiV]$/ {sub(/@.*/, "", $3); print $3}' | sort -u)
nexp=$(echo "$exports" | grep -c .)
[ "$nexp" -gt 0 ] || { echo "FAIL: nm found no functions in $lib"; fail=1; }
for fn in $exports; do has_page "$fn" "exported"; done
declared=$(grep -oE '^[a-z].*[ *](mrl_[a-z0-9_]+)\(' include/mrlease.h | grep -oE 'mrl_[a-z0-9_]+\($' | tr -d '(' | sort -u)
for fn in $declared; do has_page "$fn" "declared"; done
for fn in $declared; do echo "$exports" | grep -qx "$fn" || { echo "FAIL: include/mrlease.h declares $fn, $lib does not export it"; fail=1; }; done
# and the Debian symbols file lists every export (dpkg-gensymbols fails
# `make test-deb` on one it does not know)
if [ -f debian/libmrlease0.symbols ]; then
	for fn in $exports; do
		grep -q "^ $fn@" debian/libmrlease0.symbols || { echo "FAIL: $fn is not in debian/libmrlease0.symbols"; fail=1; }
	done
	pre=$b/libmrlease-preload.so
	for fn in $(nm -D --defined-only "$pre" 2>/dev/null | awk '$2 ~ /^[TtWiV]$/ {sub(/@.*/, "", $3); print $3}' | sort -u); do
		grep -q "^ $fn@Base" debian/libmrlease0.symbols || { echo "FAIL: $fn ($pre) is not in debian/libmrlease0.symbols"; fail=1; }
	done
fi

# mrlease(1) documents every long option of the CLI (tools/cli.c) and
# every command (tools/main.c)
# the page as text, one paragraph a line (no hyphenation across lines)
text=$(LC_ALL=C groff -man -Tascii -rLL=2000n -rHY=0 -P-cbou man/mrlease.1 2>/dev/null)
opts=$(grep -oE '\{"[a-z][a-z-]*", [01], 0,' tools/cli.c | sed -E 's/\{"([^"]*)".*/\1/' | sort -u)
[ -n "$opts" ] || { echo "FAIL: found no options in tools/cli.c"; fail=1; }
for o in $opts; do
	echo "$text" | grep -qE -- "(^|[^a-z-])--$o([^a-z-]|\$)" || { echo "FAIL: man/mrlease.1 does not document --$o"; fail=1; }
done
cmds=$(grep -oE '^\s*\{"[a-z]+", cmd_' tools/main.c | grep -oE '"[a-z]+"' | tr -d '"')
[ -n "$cmds" ] || { echo "FAIL: found no commands in tools/main.c"; fail=1; }
for c in $cmds; do
	echo "$text" | grep -qE "^ +mrlease $c( |\$)" && echo "$text" | grep -qE "^ +$c( |\$)" ||
		{ echo "FAIL: man/mrlease.1 does not document the command $c"; fail=1; }
done

# cross references to this project's pages resolve
for p in $pages; do
	grep -oE '^\.BR (mrl_[a-z0-9_]+|mrlease) \([137]\)' "$p" | while read -r _ ref sec; do
		sec=${sec//[()]/}
		[ -f "man/$ref.$sec" ] || echo "FAIL: $p refers to $ref($sec), which has no page"
	done
done > "${TMPDIR:-/tmp}/t_man.$$"
if [ -s "${TMPDIR:-/tmp}/t_man.$$" ]; then sort -u "${TMPDIR:-/tmp}/t_man.$$"; fail=1; fi
rm -f "${TMPDIR:-/tmp}/t_man.$$"

[ $fail = 0 ] && echo "ok: $full pages lint clean, $stubs .so pages, $nexp exported functions and $(echo "$declared" | wc -w) declared ones each have a page"
exit $fail
