#!/bin/bash
# boot.sh -- boot a real systemd as PID 1 of a throw-away container made of plain namespaces, for
# the system tests (conftest.py drives it). Needs root, unshare/nsenter (util-linux) and a cgroup2
# hierarchy; the technique (and its measurements) is the team's sdboot recipe, reduced to what the
# tests use.
#
# The container's / is an overlay: the host / below, a tmpfs on top, so host binaries, the
# interpreter and this checkout are visible at the same paths and nothing written inside reaches
# the host disk. /tmp, /run and /dev are fresh. Its network namespace has only loopback: run
# clients inside with `boot.sh exec NAME CMD...`. It boots sysinit + sockets only, so the host's
# enabled services stay off.
#
# Usage (root):
#   boot.sh up NAME        boot; print the host pid of the container's systemd when it is running
#   boot.sh exec NAME CMD  run CMD in the container's namespaces
#   boot.sh down NAME      power off (SIGKILL fallback), remove its cgroup and work dir
#   boot.sh list           names of containers with a work dir (stale ones included)
#
# Env: PYCACHE_SYSTEST_WORK (work dir, /tmp/pycache-systest), PYCACHE_SYSTEST_LIFETIME (hard kill
# after N s, 900), PYCACHE_SYSTEST_BOOT_TIMEOUT (60).
set -euo pipefail

SELF=$(readlink -f "$0")
WORKBASE=${PYCACHE_SYSTEST_WORK:-/tmp/pycache-systest}
LIFETIME=${PYCACHE_SYSTEST_LIFETIME:-900}
BOOT_TIMEOUT=${PYCACHE_SYSTEST_BOOT_TIMEOUT:-60}

die() { echo "boot.sh: $*" >&2; exit 1; }

cgroot() {  # the host's cgroup2 mount (pure v2, or the v2 part of a hybrid host)
    if [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ]; then echo /sys/fs/cgroup
    elif [ "$(stat -fc %T /sys/fs/cgroup/unified 2>/dev/null)" = cgroup2fs ]; then echo /sys/fs/cgroup/unified
    else die "no cgroup2 hierarchy mounted"; fi
}

pid1_of() { cat "$WORKBASE/$1/pid1" 2>/dev/null || die "container $1 is not running"; }

# On the host, under `script` (its pty becomes the container's console): enter our own cgroup and
# unshare. --kill-child: when unshare dies (or `timeout` kills it) the container's PID 1 is
# SIGKILLed, which ends the whole pid namespace.
_launch() {
    local name=$1 cg; cg="$(cgroot)/pycache-systest-$name"
    mkdir -p "$cg"
    echo $$ > "$cg/cgroup.procs"
    trap '' HUP  # a getty's vhangup() on the console must not kill unshare
    exec setsid --wait timeout -s KILL "$LIFETIME" \
        unshare --pid --fork --kill-child --mount --uts --ipc --cgroup --net --propagation private \
        "$SELF" _inner "$name"
}

# PID 1 of the new pid namespace, in a private mount namespace: build the root, exec systemd.
_inner() {
    local name=$1 W="$WORKBASE/$1"
    export LIBMOUNT_UTAB="$W/utab"
    local hostpid _comm _state hostppid _rest
    read -r hostpid _comm _state hostppid _rest < /proc/self/stat  # the host /proc: host pids
    echo "$hostppid" > "$W/unshare.pid"
    echo "$hostpid" > "$W/pid1"
    mount --make-rprivate /
    mount -t tmpfs -o mode=755 stage /run
    local S=/run/stage R=/run/stage/root
    mkdir -p $S/rw $R
    mount -t tmpfs -o mode=755 rw $S/rw
    mkdir -p $S/rw/upper $S/rw/work
    mount -t overlay root -o lowerdir=${PYCACHE_SYSTEST_ROOTFS:-/},upperdir=$S/rw/upper,workdir=$S/rw/work $R
    # API file systems as systemd-nspawn sets them up; /proc/sys and /sys read-only so nothing in
    # the container can change the host kernel's settings.
    mount -t proc -o nosuid,nodev,noexec proc $R/proc
    mount --bind $R/proc/sys $R/proc/sys; mount -o remount,bind,ro,nosuid,nodev,noexec $R/proc/sys
    if [ -e $R/proc/sysrq-trigger ]; then
        mount --bind $R/proc/sysrq-trigger $R/proc/sysrq-trigger; mount -o remount,bind,ro $R/proc/sysrq-trigger
    fi
    mount -t sysfs -o ro,nosuid,nodev,noexec sysfs $R/sys
    mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 $R/sys/fs/cgroup
    mount -t tmpfs -o mode=755,nosuid dev $R/dev
    local n; for n in null zero full random urandom tty; do touch $R/dev/$n; mount --bind /dev/$n $R/dev/$n; done
    mkdir -p $R/dev/pts $R/dev/shm
    mount -t devpts -o newinstance,ptmxmode=0666,mode=620,gid=5 devpts $R/dev/pts
    ln -s pts/ptmx $R/dev/ptmx
    ln -s /proc/self/fd $R/dev/fd
    ln -s /proc/self/fd/0 $R/dev/stdin; ln -s /proc/self/fd/1 $R/dev/stdout; ln -s /proc/self/fd/2 $R/dev/stderr
    mount -t tmpfs -o mode=1777,nosuid,nodev shm $R/dev/shm
    touch $R/dev/console
    local con; con=$(tty 2>/dev/null || true)
    if [ -c "$con" ]; then mount --bind "$con" $R/dev/console; else mount --bind /dev/null $R/dev/console; fi
    mount -t tmpfs -o mode=755,nosuid,nodev run $R/run
    mount -t tmpfs -o mode=1777,nosuid,nodev tmp $R/tmp
    # A checkout under /tmp (as CI's clone may be) would be hidden by the fresh /tmp: bind the
    # directories named in PYCACHE_SYSTEST_BIND (colon-separated) back at their own paths.
    local d; local IFS=:
    for d in ${PYCACHE_SYSTEST_BIND:-}; do
        [ -d "$d" ] || continue
        mkdir -p "$R$d"; mount --bind "$d" "$R$d"
    done
    unset IFS
    echo "pycache-systest-$name" > $R/etc/hostname
    ln -sf /dev/null $R/etc/systemd/system/console-getty.service
    tr -d - < /proc/sys/kernel/random/uuid > $R/etc/machine-id
    cat > $R/etc/systemd/system/systest.target <<'T'
[Unit]
Description=pycache-d system tests: sysinit and sockets only
Requires=sysinit.target sockets.target
After=sysinit.target sockets.target
AllowIsolate=yes
T
    cd $R; mkdir -p .oldroot; pivot_root . .oldroot; cd /
    umount -l /.oldroot; rmdir /.oldroot
    exec env -i container=pycache-systest TERM=dumb \
        setpriv --bounding-set=-sys_module,-sys_rawio,-sys_time,-syslog,-mac_admin,-mac_override,-wake_alarm,-block_suspend,-sys_pacct \
        /lib/systemd/systemd --unit=systest.target --show-status=no
}

up() {
    local name=$1 W="$WORKBASE/$1"
    [ "$(id -u)" = 0 ] || die "must be root"
    rm -rf "$W"; mkdir -p "$W"
    setsid script -qfec "$SELF _launch $name" "$W/console.log" </dev/null >/dev/null 2>&1 &
    echo $! > "$W/launcher.pid"
    local deadline=$(( $(date +%s) + BOOT_TIMEOUT )) pid1= state=
    while [ "$(date +%s)" -lt $deadline ]; do
        kill -0 "$(cat "$W/launcher.pid")" 2>/dev/null || { cat "$W/console.log" >&2; die "launcher exited during boot"; }
        pid1=$(cat "$W/pid1" 2>/dev/null || true)
        if [ -n "$pid1" ] && [ -S "/proc/$pid1/root/run/systemd/private" ]; then
            state=$(timeout 30 nsenter -t "$pid1" -a systemctl is-system-running --wait 2>/dev/null || true)
            [ -n "$state" ] && break
        fi
        sleep 0.1
    done
    case "$state" in
        running|degraded) ;;
        *) cat "$W/console.log" >&2; down "$name" || true; die "boot failed or timed out (state '$state')" ;;
    esac
    echo "$pid1"
}

sd_exec() { local name=$1; shift; exec nsenter -t "$(pid1_of "$name")" -a "$@"; }

down() {
    local name=$1 W="$WORKBASE/$1"
    local pid1 launcher upid cg; cg="$(cgroot)/pycache-systest-$name"
    pid1=$(cat "$W/pid1" 2>/dev/null || true); launcher=$(cat "$W/launcher.pid" 2>/dev/null || true)
    upid=$(cat "$W/unshare.pid" 2>/dev/null || true)
    if [ -n "$pid1" ] && kill -0 "$pid1" 2>/dev/null && grep -q systemd "/proc/$pid1/comm" 2>/dev/null; then
        kill -s RTMIN+4 "$pid1"  # systemctl poweroff; PID 1 exits at the end
        for _ in $(seq 1 150); do kill -0 "$pid1" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid1" 2>/dev/null && kill -s KILL "$pid1" 2>/dev/null || true
    fi
    if [ -n "$upid" ]; then for _ in $(seq 1 30); do kill -0 "$upid" 2>/dev/null || break; sleep 0.1; done; fi
    if [ -n "$upid" ] && kill -0 "$upid" 2>/dev/null && grep -q unshare "/proc/$upid/cmdline" 2>/dev/null; then
        kill -s KILL "$upid" || true  # --kill-child then kills PID 1 and so the namespace
    fi
    if [ -n "$launcher" ]; then for _ in $(seq 1 50); do kill -0 "$launcher" 2>/dev/null || break; sleep 0.1; done; fi
    if [ -d "$cg" ]; then
        for _ in $(seq 1 100); do grep -q '^populated 0' "$cg/cgroup.events" && break; sleep 0.1; done
        grep -q '^populated 0' "$cg/cgroup.events" || { echo 1 > "$cg/cgroup.kill" 2>/dev/null || true; sleep 1; }
        find "$cg" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    fi
    rm -rf "$W"
}

list() { [ -d "$WORKBASE" ] && ls "$WORKBASE" || true; }

cmd=${1:-}; shift || true
case "$cmd" in
    up) up "$@" ;;
    down) down "$@" ;;
    exec) sd_exec "$@" ;;
    list) list ;;
    _launch) _launch "$@" ;;
    _inner) _inner "$@" ;;
    *) sed -n '2,/^set -euo/p' "$SELF" | sed '$d'; exit 2 ;;
esac
