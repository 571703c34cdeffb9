#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
# Every tracked source file (C, headers, version script, shell, Makefiles,
# man pages, shebang scripts) names its license, GPL-2.0-only OR
# BSD-2-Clause, in an SPDX line within its first 3 lines. And
# scripts/spdx-add, which puts the line there, does it right: in the file's
# own comment syntax, after a shebang, once.
set -u
cd "$(dirname "$0")/.." || exit 1
git rev-parse --show-toplevel >/dev/null 2>&1 || { echo "skip: not a git checkout (the test reads tracked files)"; exit 77; }
fail=0
expr='SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause'

# scripts/spdx-add on scratch files of each kind
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
printf '#include <stdio.h>\nint x;\n' > "$dir/a.c"
printf '#!/bin/bash\necho hi\n' > "$dir/b.sh"
printf 'all:\n\ttrue\n' > "$dir/Makefile"
printf 'V_1 {\n\tlocal: *;\n};\n' > "$dir/v.map"
printf '.TH X 3\n' > "$dir/x.3"
printf '.so man3/x.3\n' > "$dir/y.3"
chmod 755 "$dir/b.sh"
scripts/spdx-add "$dir/a.c" "$dir/b.sh" "$dir/Makefile" "$dir/v.map" "$dir/x.3" "$dir/y.3" >/dev/null || { echo "FAIL: spdx-add failed"; fail=1; }
want() { # FILE LINE-NUMBER EXPECTED-LINE
	local got
	got=$(sed -n "$2p" "$1")
	[ "$got" = "$3" ] || { echo "FAIL: $(basename "$1") line $2: '$got', expected '$3'"; fail=1; }
}
want "$dir/a.c" 1 "/* $expr */"
want "$dir/a.c" 2 "#include <stdio.h>"
want "$dir/b.sh" 1 "#!/bin/bash"
want "$dir/b.sh" 2 "# $expr"
want "$dir/b.sh" 3 "echo hi"
want "$dir/Makefile" 1 "# $expr"
want "$dir/v.map" 1 "/* $expr */"
want "$dir/x.3" 1 ".\\\" $expr"
want "$dir/y.3" 1 ".so man3/x.3"
want "$dir/y.3" 2 ".\\\" $expr"
[ -x "$dir/b.sh" ] || { echo "FAIL: spdx-add lost the executable bit"; fail=1; }
# idempotent: a second run changes nothing
sums=$(md5sum "$dir"/*)
scripts/spdx-add "$dir/a.c" "$dir/b.sh" "$dir/Makefile" "$dir/v.map" "$dir/x.3" >/dev/null
[ "$sums" = "$(md5sum "$dir"/*)" ] || { echo "FAIL: a second spdx-add changed the files"; fail=1; }
# the result still compiles / runs
cc -c -o "$dir/a.o" "$dir/a.c" || { echo "FAIL: a.c does not compile after spdx-add"; fail=1; }
[ "$("$dir/b.sh")" = hi ] || { echo "FAIL: b.sh does not run after spdx-add"; fail=1; }
make -s -C "$dir" || { echo "FAIL: Makefile broken by spdx-add"; fail=1; }
scripts/spdx-add --check "$dir/a.c" >/dev/null || { echo "FAIL: --check rejects a file with the line"; fail=1; }
printf 'int y;\n' > "$dir/c.c"
scripts/spdx-add --check "$dir/c.c" >/dev/null && { echo "FAIL: --check accepts a file without the line"; fail=1; }

# the tree: every tracked source file has the line, with this license
n=$(scripts/spdx-add --list | wc -l)
[ "$n" -gt 0 ] || { echo "FAIL: no tracked source files found"; fail=1; }
missing=$(scripts/spdx-add --check) || { echo "FAIL: source files without an SPDX line (run scripts/spdx-add):"; echo "$missing"; fail=1; }
while IFS= read -r f; do
	l=$(head -n 3 "$f" | grep 'SPDX-License-Identifier:')
	[ -z "$l" ] || case $l in *"$expr"*) ;; *) echo "FAIL: $f: wrong license expression: $l"; fail=1;; esac
done < <(scripts/spdx-add --list)
[ $fail = 0 ] && echo "ok: $n tracked source files carry '$expr'"
exit $fail
