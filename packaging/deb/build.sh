#!/bin/bash
# build.sh -- build DIST/pycache-d_<version>_amd64.deb from the wheels `make dist` left in DIST.
#
# Usage: packaging/deb/build.sh [DIST]        (DIST defaults to ./dist; `make deb` runs it, and
#        packaging/deb/in_release.sh runs it inside a debootstrapped root of each Debian release)
# Env:   DEB_PYTHON     the interpreter the package runs with (/usr/bin/python3: Debian's, never pyenv)
#        DEB_WHEELHOUSE where the dependency wheels are downloaded (a temporary dir unless set;
#                       set it to keep them between builds)
#
# The package is a self-contained virtual environment at /opt/pycache-d made from DEB_PYTHON, with
# the daemon wheel and pycache-client[http] installed offline from DIST plus the dependency wheels
# `pip download` fetched here, symlinks in /usr/bin, the systemd units in /lib/systemd/system and
# the default config as a conffile in /etc/pycache-d.
#
# NOTE: why the venv is built in a staging dir and then relocated. A venv records its own path in
# the shebangs of bin/* (and in pyvenv.cfg and the activate scripts), so a venv made in
# $STAGE/opt/pycache-d and packaged as is would run $STAGE/... on the target. We create it at
# $STAGE/opt/pycache-d, install with --no-compile, rewrite every "$STAGE/opt/pycache-d" in bin/ and
# pyvenv.cfg to "/opt/pycache-d", then byte-compile with compileall -s/-p so the .pyc files name
# /opt/pycache-d too. bin/python stays an absolute symlink to DEB_PYTHON, which is where it points
# on the target as well. This needs no root and no mount namespace (the alternative: bind a
# scratch dir on /opt/pycache-d in `unshare -m` and build in place, root only). The build fails if
# the staging path is left anywhere in the tree.
#
# The venv is tied to the interpreter's minor version (lib/python3.X, the cp3X wheel), hence
# Depends: python3 (>= 3.X), python3 (<< 3.X+1), and one package per Debian release: built on
# Debian N (/etc/os-release), the version gets "+debN" (0.1.0+deb12, 0.1.0+deb13).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE=$ROOT/packaging/deb
DIST=$(cd "${1:-$ROOT/dist}" && pwd)
PYTHON=${DEB_PYTHON:-/usr/bin/python3}
PREFIX=/opt/pycache-d

die() { echo "build.sh: $*" >&2; exit 1; }
command -v dpkg-deb >/dev/null || die "dpkg-deb not found"
[ -x "$PYTHON" ] || die "$PYTHON not found (apt-get install python3 python3-venv)"
"$PYTHON" -c 'import ensurepip, venv' 2>/dev/null || die "$PYTHON has no venv/ensurepip (apt-get install python3-venv)"

shopt -s nullglob
tag=$("$PYTHON" -c 'import sys; print("cp%d%d" % sys.version_info[:2])')
daemon=("$DIST"/pycache_d-*-$tag-$tag-manylinux*.whl)
client=("$DIST"/pycache_client-*-py3-none-any.whl)
[ ${#daemon[@]} = 1 ] || die "want one manylinux $tag pycache_d wheel in $DIST (run make dist with that CPython): ${daemon[*]:-none}"
[ ${#client[@]} = 1 ] || die "want one pycache_client wheel in $DIST (run make dist): ${client[*]:-none}"
version=$(basename "${daemon[0]}" | cut -d- -f2)
if [ -r /etc/os-release ] && [ "$(. /etc/os-release; echo "${ID:-}")" = debian ]; then
    release=$(. /etc/os-release; echo "${VERSION_ID:-}")
    [ -n "$release" ] && version="$version+deb$release"
fi
pyver=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
pynext=$("$PYTHON" -c 'import sys; print("%d.%d" % (sys.version_info[0], sys.version_info[1] + 1))')

WORK=$(mktemp -d "${TMPDIR:-/tmp}/pycache-deb.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
STAGE=$WORK/root
VENV=$STAGE$PREFIX
WHEELS=${DEB_WHEELHOUSE:-$WORK/wheels}
mkdir -p "$STAGE" "$WHEELS"

# The shipped venv gets no pip or setuptools: a pip in a scratch venv of the same interpreter
# installs into it (pip --python). First the dependency wheels for this interpreter (the only
# use of the index), then an offline install of exactly those wheels.
"$PYTHON" -m venv "$WORK/tools"
"$PYTHON" -m venv --without-pip "$VENV"
pip=("$WORK/tools/bin/python" -m pip --disable-pip-version-check --python "$VENV/bin/python")
"${pip[@]}" download --quiet --dest "$WHEELS" "${daemon[0]}" "${client[0]}[http]"
"${pip[@]}" install --quiet --no-compile --no-index --find-links "$WHEELS" --find-links "$DIST" \
    "${daemon[0]}" "${client[0]}[http]"

# Relocate: $VENV -> $PREFIX in the scripts and pyvenv.cfg, then byte-compile under the final path.
grep -rlIF "$VENV" "$VENV/bin" "$VENV/pyvenv.cfg" | xargs -r sed -i "s#$VENV#$PREFIX#g"
"$VENV/bin/python" -m compileall -q -j 0 -s "$STAGE" -p / "$VENV/lib" >/dev/null
leaked=$(grep -rlF "$STAGE" "$STAGE" || true)
[ -z "$leaked" ] || die "staging path left in: $(echo "$leaked" | head -5)"

# The rest of the tree.
install -d "$STAGE/usr/bin"
for cmd in pycache-d pycache-cli pycache-http; do
    [ -x "$VENV/bin/$cmd" ] || die "$cmd missing from the venv"
    ln -s "$PREFIX/bin/$cmd" "$STAGE/usr/bin/$cmd"
done
for unit in "$ROOT"/packaging/systemd/*.service "$ROOT"/packaging/systemd/*.socket; do
    install -D -m 644 "$unit" "$STAGE/lib/systemd/system/$(basename "$unit")"
done
install -D -m 644 "$ROOT/packaging/pycache-d.toml" "$STAGE/etc/pycache-d/pycache-d.toml"

# Man pages (from the wheels' share/man, written by packaging/manpage.py), bash completion, and
# what Debian puts in /usr/share/doc/<package>: the copyright (the MIT license) and the changelog.
# The wheels' share/ lands in the venv (data files); moved to /usr/share/man where man finds it.
install -d "$STAGE/usr/share/man/man1"
for cmd in pycache-d pycache-cli pycache-http; do
    page="$VENV/share/man/man1/$cmd.1"
    [ -f "$page" ] || die "$page missing (the wheels carry the man pages)"
    gzip -9n -c "$page" > "$STAGE/usr/share/man/man1/$cmd.1.gz"
done
rm -rf "$VENV/share/man"
rmdir "$VENV/share" 2>/dev/null || true
install -D -m 644 "$ROOT/packaging/completion/pycache.bash" "$STAGE/usr/share/bash-completion/completions/pycache-d"
ln -s pycache-d "$STAGE/usr/share/bash-completion/completions/pycache-cli"
ln -s pycache-d "$STAGE/usr/share/bash-completion/completions/pycache-http"
DOC=$STAGE/usr/share/doc/pycache-d
install -d "$DOC"
{
    echo "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/"
    echo "Upstream-Name: pycache-d"
    echo "Source: packaging/deb/build.sh of the pycache-d source"
    echo
    echo "Files: *"
    echo "Copyright: $(grep -m1 '^Copyright' "$ROOT/LICENSE" | sed 's/^Copyright (c) //')"
    echo "License: MIT"
    sed -e '1,/^Copyright/d' -e 's/^$/./' -e 's/^/ /' "$ROOT/LICENSE"
} > "$DOC/copyright"
gzip -9n -c "$ROOT/CHANGELOG.md" > "$DOC/changelog.gz"
chmod 644 "$DOC/copyright" "$DOC/changelog.gz"

install -d "$STAGE/DEBIAN"
install -m 644 "$HERE/conffiles" "$STAGE/DEBIAN/conffiles"
for script in postinst prerm postrm; do install -m 755 "$HERE/$script" "$STAGE/DEBIAN/$script"; done
size=$(du -sk --exclude=DEBIAN "$STAGE" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@PYVER@/$pyver/" -e "s/@PYNEXT@/$pynext/" -e "s/@SIZE@/$size/" \
    "$HERE/control.in" > "$STAGE/DEBIAN/control"

out="$DIST/pycache-d_${version}_amd64.deb"
dpkg-deb --root-owner-group -Zxz --build "$STAGE" "$out" >/dev/null
echo "$out"
