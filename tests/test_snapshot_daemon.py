"""Warm restart of the real daemon: items saved on SIGTERM come back on the next start."""

from __future__ import annotations

import base64
import os
import re
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

pytest.register_assert_rewrite("daemon")
pytest_plugins = ["daemon"]

from pycache_d.daemon import snapshot  # noqa: E402
from pycache_d.store import PyStore  # noqa: E402

from daemon import Daemon, stats  # noqa: E402

Factory = Callable[..., Daemon]


def gets(d: Daemon, *keys: str) -> dict[str, tuple[int, bytes, int]]:
    """``gets`` the keys; return ``key -> (flags, value, cas)`` of the ones found."""
    reply = d.request(f"gets {' '.join(keys)}\r\n".encode(), until=b"END\r\n")
    out = {}
    for m in re.finditer(rb"VALUE (\S+) (\d+) (\d+) (\d+)\r\n", reply):
        start = m.end()
        out[m[1].decode()] = (int(m[2]), reply[start : start + int(m[3])], int(m[4]))
    return out


def test_items_cas_and_lru_order_survive_a_restart(
    daemon_factory: Factory, daemon_backend: str, tmp_path: Path
) -> None:
    snap = str(tmp_path / "pycache-d.snapshot")
    first = daemon_factory("--snapshot", snap, backend=daemon_backend)
    keys = [f"k{i}" for i in range(10)]
    for i, key in enumerate(keys):
        assert first.request(f"set {key} {i} 0 2\r\nv{i}\r\n".encode()) == b"STORED\r\n"
    before = gets(first, *keys)  # reads k0..k9 in turn...
    first.request(b"get k0\r\n", until=b"END\r\n")  # ...then k0 again: the order is k1..k9, k0
    assert first.stop() == 0
    assert first.wait_for_log(r"saved 10 items to ")

    # A smaller item limit keeps the three most recent: the LRU order came back too.
    again = daemon_factory("--snapshot", snap, "--max-items", "3", backend=daemon_backend)
    again.wait_for_log(
        r"loaded 3 items from .* \(skipped 0 expired or too large, evicted 7 for lack of room\) in \d"
    )
    after = gets(again, *keys)
    assert sorted(after) == ["k0", "k8", "k9"]
    assert after == {k: before[k] for k in after}  # values, flags and CAS
    # The CAS counter carried over: a new write gets a CAS no client has seen.
    again.request(b"set new 0 0 1\r\nn\r\n")
    assert gets(again, "new")["new"][2] > max(cas for _, _, cas in before.values())


def test_meta_state_survives_a_restart(daemon_factory: Factory, daemon_backend: str, tmp_path: Path) -> None:
    """An invalidated item is still stale after a warm restart (it used to come back fresh), and
    a base64 key is still shown in base64 (it used to come back raw, CR LF and all)."""
    snap = str(tmp_path / "pycache-d.snapshot")
    first = daemon_factory("--snapshot", snap, backend=daemon_backend)
    assert first.request(b"ms k 2 T100\r\nhi\r\n") == b"HD\r\n"
    assert first.request(b"md k I\r\n") == b"HD\r\n"
    assert first.request(b"ms w 2 T100\r\nhi\r\nmg w R200\r\n", until=b"W\r\n").endswith(b"HD W\r\n")
    key = base64.b64encode(b"x\r\nEN\r\n")
    assert first.request(b"ms %s 2 b\r\nhi\r\n" % key) == b"HD\r\n"
    cas = int(first.request(b"me k\r\n").split(b" cas=")[1].split()[0])  # me reads without a fetch
    assert first.stop() == 0
    again = daemon_factory("--snapshot", snap, backend=daemon_backend)
    again.wait_for_log(r"loaded 3 items from ")
    reply = again.request(b"mg k v c t\r\n", until=b"hi\r\n")
    # as memcached answers: stale (X), so this first reader wins (W); the TTL left, the CAS kept.
    # The TTL ran on through the restart; a busy machine may take many seconds over it.
    match = re.fullmatch(rb"VA 2 c%d t(\d+) X W\r\nhi\r\n" % cas, reply)
    assert match and 40 <= int(match[1]) <= 100, reply
    assert again.request(b"mg k\r\n") == b"HD Z X\r\n"
    assert again.request(b"mg w\r\n") == b"HD Z\r\n"  # the win token that went out before
    assert again.request(b"mg %s b k\r\n" % key) == b"HD k%s b\r\n" % key


def test_corrupt_snapshot_starts_empty_and_is_moved_aside(
    daemon_factory: Factory, daemon_backend: str, tmp_path: Path
) -> None:
    snap = tmp_path / "pycache-d.snapshot"
    snap.write_bytes(b"PYCDSNAP\x01\x00\x00\x00" + b"\x00" * 100)  # our magic, then garbage
    d = daemon_factory("--snapshot", str(snap), backend=daemon_backend)
    m = d.wait_for_log(
        r"error: snapshot .* is unusable \((.*)\); moved it to (\S+corrupt-\d{8}T\d{6}); starting empty"
    )
    assert "checksum mismatch" in m[1]
    assert Path(m[2]).read_bytes().startswith(b"PYCDSNAP")
    assert stats(d)["curr_items"] == "0"
    d.request(b"set x 0 0 1\r\n1\r\n")
    assert d.stop() == 0
    assert snap.read_bytes().startswith(b"PYCDSNAP")  # a fresh, good snapshot took its place
    assert d.wait_for_log("saved 1 items")


def test_state_directory_is_the_default_and_no_snapshot_turns_it_off(
    daemon_factory: Factory, tmp_path: Path
) -> None:
    env = {"STATE_DIRECTORY": str(tmp_path)}
    off = daemon_factory("--no-snapshot", backend="python", env=env)
    off.request(b"set x 0 0 1\r\n1\r\n")
    assert off.stop() == 0
    assert os.listdir(tmp_path) == []
    on = daemon_factory(backend="python", env=env)
    on.request(b"set x 0 0 1\r\n1\r\n")
    assert on.stop() == 0
    assert os.listdir(tmp_path) == ["pycache-d.snapshot"]


def start_on_a_busy_port(snap: Path) -> subprocess.CompletedProcess[str]:
    """Run a daemon on ``snap`` whose listener's port is taken; return how it ended."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        argv = [sys.executable, "-m", "pycache_d", "-l", f"127.0.0.1:{port}", "--snapshot", str(snap)]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def test_a_daemon_that_cannot_listen_puts_back_the_snapshot_it_consumed(tmp_path: Path) -> None:
    snap = tmp_path / "pycache-d.snapshot"
    with Daemon("--snapshot", str(snap), backend="python") as d:
        d.request(b"set x 0 0 1\r\n1\r\n")
    proc = start_on_a_busy_port(snap)
    assert proc.returncode == 1, proc.stderr
    assert "loaded 1 items" in proc.stderr
    back = PyStore()
    result = snapshot.load(back, str(snap))
    assert (result.status, result.consumed) == ("loaded", False)
    assert back.get(b"x") == b"1"


def test_a_daemon_that_cannot_listen_leaves_a_consumed_file_alone(tmp_path: Path) -> None:
    snap = tmp_path / "pycache-d.snapshot"
    d = Daemon("--snapshot", str(snap), backend="python").start()
    d.request(b"set x 0 0 1\r\n1\r\n")
    d.kill()  # what is left is the consumed file its start wrote
    before = PyStore()
    assert snapshot.load(before, str(snap)).consumed
    proc = start_on_a_busy_port(snap)
    assert proc.returncode == 1, proc.stderr
    assert "holds no snapshot" in proc.stderr
    after = PyStore()
    result = snapshot.load(after, str(snap))
    assert (result.status, result.loaded, result.consumed) == ("loaded", 0, True)
    assert after.cas_counter > before.cas_counter  # only its own, higher, CAS mark went in


def test_full_disk_at_shutdown_is_logged_and_exits_0(daemon_factory: Factory, tiny_tmpfs: Path) -> None:
    snap = tiny_tmpfs / "pycache-d.snapshot"
    small = daemon_factory("--snapshot", str(snap), backend="python")
    small.request(b"set old 0 0 1\r\n1\r\n")
    assert small.stop() == 0
    big = daemon_factory("--snapshot", str(snap), backend="python")
    big.wait_for_log("loaded 1 items")
    consumed = snap.read_bytes()
    sets = b"".join(b"set k%d 0 0 100 noreply\r\n%s\r\n" % (i, b"v" * 100) for i in range(1000))
    assert big.request(sets + b"set last 0 0 1\r\n1\r\n") == b"STORED\r\n"  # ~130 KB: twice the disk
    assert big.stop() == 0  # the shutdown itself was clean; the error is in the log
    big.wait_for_log(r"error: cannot write snapshot \S+: no space left on device; the items will not survive")
    assert snap.read_bytes() == consumed  # what big's start wrote: no items
    assert os.listdir(tiny_tmpfs) == ["pycache-d.snapshot"]
    after = daemon_factory("--snapshot", str(snap), backend="python")
    after.wait_for_log("holds no snapshot: the last run ended without saving one")
    assert stats(after)["curr_items"] == "0"  # not "old" from before big


def test_unreadable_snapshot_starts_empty(daemon_factory: Factory, tmp_path: Path) -> None:
    snap = tmp_path / "pycache-d.snapshot"
    snap.mkdir()  # not a file: reading fails, and nothing is moved
    d = daemon_factory("--snapshot", str(snap), backend="python")
    d.wait_for_log(r"error: cannot read snapshot \S+: is a directory; starting empty")
    assert stats(d)["curr_items"] == "0"
    assert d.stop() == 0
    d.wait_for_log(r"error: cannot rename \S+\.tmp to \S+: is a directory; the items will not survive")
    assert snap.is_dir() and os.listdir(tmp_path) == ["pycache-d.snapshot"]
