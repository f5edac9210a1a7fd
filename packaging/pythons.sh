#!/bin/bash
# pythons.sh -- print the CPython interpreters the wheels are built for, one path a line.
#
# Supported: CPython 3.11, 3.12 and 3.13 (requires-python in pyproject.toml says the same).
# $DIST_PYTHONS (paths, space-separated) overrides the search; otherwise each version is looked
# for in pyenv (the newest patch release of it), then on PATH (python3.X). A version found
# nowhere is named on stderr ("missing: CPython 3.X") and skipped; exit 1 when none is found.
set -euo pipefail

SUPPORTED="3.11 3.12 3.13"

if [ -n "${DIST_PYTHONS:-}" ]; then
    for p in $DIST_PYTHONS; do echo "$p"; done
    exit 0
fi

pyenv_root=$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")
found=0
for v in $SUPPORTED; do
    python=
    for dir in $(ls -d "$pyenv_root/versions/$v".* 2>/dev/null | sort -V -r); do
        [ -x "$dir/bin/python$v" ] && { python=$dir/bin/python$v; break; }
    done
    [ -n "$python" ] || python=$(command -v "python$v" 2>/dev/null || true)
    if [ -n "$python" ] && "$python" -c 'import sys; sys.exit(sys.implementation.name != "cpython")' 2>/dev/null; then
        echo "$python"
        found=$((found + 1))
    else
        echo "missing: CPython $v (no cp${v/./} wheel; pyenv install $v to add it)" >&2
    fi
done
[ "$found" -gt 0 ]
