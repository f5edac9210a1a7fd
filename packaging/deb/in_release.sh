#!/bin/bash
# in_release.sh RELEASE rootfs        print the path of a debootstrapped root of Debian RELEASE
#                                     (bookworm = 12, trixie = 13), made on first use
# in_release.sh RELEASE build DIST    build the .deb for RELEASE inside that root (a chroot on an
#                                     overlay, so the cached root stays pristine): the package
#                                     then runs with RELEASE's own /usr/bin/python3
#
# Root only (debootstrap, mount, chroot). The roots are cached in $PYCACHE_ROOTFS_CACHE
# (/var/cache/pycache-d-rootfs): a debootstrap takes 4-5 minutes, a build in the root well under
# one. Each root holds what the package and its tests need from that release: systemd (the
# tests boot it as PID 1 of a container), python3 and python3-venv (the package's venv).
# Network: Debian's mirror for debootstrap, PyPI for the build's `pip download`.
set -euo pipefail

RELEASE=${1:?usage: in_release.sh RELEASE rootfs|build DIST}
ACTION=${2:?usage: in_release.sh RELEASE rootfs|build DIST}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=${PYCACHE_ROOTFS_CACHE:-/var/cache/pycache-d-rootfs}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
INCLUDE=systemd,python3,python3-venv,dbus

die() { echo "in_release.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot)"

rootfs() {
    local dir=$CACHE/$RELEASE
    if [ ! -x "$dir/usr/bin/python3" ]; then
        command -v debootstrap >/dev/null || die "debootstrap not installed (apt-get install debootstrap)"
        mkdir -p "$CACHE"
        rm -rf "$dir.tmp"
        echo "in_release.sh: debootstrap $RELEASE into $dir (4-5 minutes)" >&2
        debootstrap --variant=minbase --include=$INCLUDE "$RELEASE" "$dir.tmp" "$MIRROR" >"$CACHE/$RELEASE.log" 2>&1 \
            || { tail -20 "$CACHE/$RELEASE.log" >&2; die "debootstrap $RELEASE failed (log: $CACHE/$RELEASE.log)"; }
        mv "$dir.tmp" "$dir"
    fi
    echo "$dir"
}

build() {
    local dist lower
    dist=$(cd "${1:?usage: in_release.sh RELEASE build DIST}" && pwd)
    lower=$(rootfs)
    # NOTE: a private mount namespace: every mount below vanishes with it, on any exit.
    unshare --mount --propagation private --fork bash -euo pipefail -c '
        lower=$1 src=$2 dist=$3 cert=${4:-}
        W=$(mktemp -d /tmp/pycache-deb-root.XXXXXX)
        trap "umount -R $W/root 2>/dev/null; umount $W 2>/dev/null; rm -rf $W" EXIT
        mount -t tmpfs tmpfs $W
        mkdir -p $W/upper $W/work $W/root
        mount -t overlay overlay -o lowerdir=$lower,upperdir=$W/upper,workdir=$W/work $W/root
        R=$W/root
        mkdir -p $R/src $R/dist
        mount --bind $src $R/src
        mount --bind $dist $R/dist
        mount -t proc proc $R/proc
        mount --bind /dev $R/dev
        mount -t tmpfs tmpfs $R/tmp
        cp /etc/resolv.conf $R/etc/resolv.conf
        env=(PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8)
        if [ -n "$cert" ] && [ -r "$cert" ]; then
            cp "$cert" $R/etc/pycache-build-ca.pem; env+=(PIP_CERT=/etc/pycache-build-ca.pem)
        fi
        chroot $R env -i "${env[@]}" /src/packaging/deb/build.sh /dist
    ' in_release "$lower" "$ROOT" "$dist" "${PIP_CERT:-}"
}

case $ACTION in
    rootfs) rootfs ;;
    build) build "${3:-}" ;;
    *) die "unknown action $ACTION" ;;
esac
