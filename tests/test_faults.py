"""Faults around the daemon: clients vanishing mid-command, a snapshot directory that is read-only
or full, and the wall clock being stepped.

Each fault is tested on a real daemon where it can be staged (a tmpfs remounted read-only needs
root; stepping the daemon's wall clock needs libfaketime, Debian package ``libfaketime``) and
asserts the log line an operator would read. The clock's own logic is also tested in process,
with the clocks it reads replaced.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytest.register_assert_rewrite("daemon")
pytest_plugins = ["daemon"]

from pycache_d.daemon import snapshot, wallclock  # noqa: E402
from pycache_d.store import PyStore, clock  # noqa: E402

from conftest import mount_tmpfs  # noqa: E402
from daemon import Daemon, backend_params, native_built, read_until, stats  # noqa: E402

Factory = Callable[..., Daemon]

#: A log line at warning level or above, or a traceback: none may follow a client's misbehaviour.
TROUBLE = re.compile(r": (warning|error|critical): |Traceback")


def wait_until(predicate: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll ``predicate`` until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


# -- the clock, in process -------------------------------------------------------------------------


class FakeTime:
    """Stands in for ``time`` in store.clock and daemon.wallclock: both clocks move on command."""

    def __init__(self) -> None:
        self.wall = 1_700_000_000.0
        self.mono = 1000.0

    def time(self) -> float:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def elapse(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds


@pytest.fixture
def fake_time(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    t = FakeTime()
    monkeypatch.setattr(clock, "time", t)
    monkeypatch.setattr(wallclock, "time", t)
    monkeypatch.setattr(clock, "_BASE", t.wall - t.mono)
    return t


def jump_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "wall clock jumped" in r.getMessage()]


def test_relative_time_ignores_wall_clock_steps(fake_time: FakeTime) -> None:
    now = clock.MonotonicClock()
    start = now()
    deadline = start + 60  # what a TTL of 60 s becomes
    fake_time.wall += 86_400  # the clock is set a day ahead...
    fake_time.elapse(30)
    assert now() == start + 30 < deadline  # ...yet only 30 s have passed for expiry
    fake_time.wall -= 2 * 86_400  # ...and a day behind
    fake_time.elapse(31)
    assert now() == start + 61 > deadline
    assert clock.wall_skew() == -86_400


def test_each_step_is_logged_once(fake_time: FakeTime, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pycache_d")
    watch = wallclock.WallClockWatch()
    fake_time.elapse(1)
    assert watch.check() == 0.0
    fake_time.wall += 3600
    fake_time.elapse(1)
    assert watch.check() == 3600
    fake_time.elapse(1)
    assert watch.check() == 0.0  # the same step is not reported again
    fake_time.wall -= 7200
    fake_time.elapse(1)
    assert watch.check() == -7200
    assert jump_lines(caplog) == [
        "wall clock jumped forward by 3600 s (now +3600 s from the clock the daemon started with): "
        "relative expiry times are unaffected; absolute ones from now on follow the wall clock",
        "wall clock jumped back by 7200 s (now -3600 s from the clock the daemon started with): "
        "relative expiry times are unaffected; absolute ones from now on follow the wall clock",
    ]
    assert all(r.levelname == "WARNING" for r in caplog.records)
    assert watch.jumps == 2


def test_slow_drift_is_not_a_step(fake_time: FakeTime, caplog: pytest.LogCaptureFixture) -> None:
    watch = wallclock.WallClockWatch()
    for _ in range(100):  # NTP slewing: 0.5 s a check, 50 s in all
        fake_time.wall += 0.5
        fake_time.elapse(1)
        assert watch.check() == 0.0
    assert jump_lines(caplog) == [] and watch.jumps == 0
    assert clock.wall_skew() == 50


def test_the_watch_runs_on_the_event_loop(fake_time: FakeTime, caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> int:
        watch = wallclock.WallClockWatch()
        watch.start(asyncio.get_running_loop(), interval=0.01)
        fake_time.wall -= 120
        for _ in range(500):  # at most 5 s
            if watch.jumps:
                break
            await asyncio.sleep(0.01)
        watch.stop()
        watch.stop()  # idempotent
        fake_time.wall += 120
        await asyncio.sleep(0.05)  # stopped: this step goes unseen
        return watch.jumps

    assert asyncio.run(main()) == 1
    assert [m.split(" (")[0] for m in jump_lines(caplog)] == ["wall clock jumped back by 120 s"]


def test_the_store_is_told_every_skew_small_steps_and_steps_before_start(
    fake_time: FakeTime, caplog: pytest.LogCaptureFixture
) -> None:
    told: list[int] = []
    watch = wallclock.WallClockWatch(on_step=told.append)
    fake_time.wall += 3600  # e.g. NTP stepped the clock while a snapshot was loading
    loop = asyncio.new_event_loop()
    try:
        watch.start(loop)
    finally:
        watch.stop()
        loop.close()
    assert told == [3600]
    for _ in range(3):  # steps too small to log, but they add up
        fake_time.wall += 1.5
        fake_time.elapse(1)
        watch.check()
    assert told == [3600, 3602, 3603, 3604] and jump_lines(caplog) == []


# -- snapshots across a step, in process -----------------------------------------------------------


class StepClock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def test_save_moves_expiry_times_to_the_wall_clock(tmp_path: Path) -> None:
    path = str(tmp_path / "s")
    old = StepClock(1_700_000_000)
    src = PyStore(clock=old)
    src.set(b"ttl", b"1", 0, 100)
    src.set(b"never", b"2", 0, 0)
    src.set(b"soon", b"3", 0, 10)
    # The wall clock was stepped 3600 s ahead while the daemon ran; the next daemon starts on it.
    assert snapshot.save(src, path, skew=3600).skew == 3600
    new = StepClock(old.now + 3600)
    dst = PyStore(clock=new)
    assert snapshot.load(dst, path).loaded == 3
    assert {k: e for k, _, _, e, _ in dst.items()} == {
        b"ttl": new.now + 100,
        b"never": 0,
        b"soon": new.now + 10,
    }
    # Set back a day: everything with an expiry time is long gone, never-expiring items stay.
    snapshot.save(src, path, skew=-86_400)
    back = PyStore(clock=StepClock(old.now - 86_400 + 200))
    result = snapshot.load(back, path)
    assert (result.loaded, result.skipped) == (1, 2)


def test_persist_says_when_it_moved_expiry_times(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pycache_d")
    store = PyStore()
    store.set(b"k", b"v", 0, 100)
    monkeypatch.setattr(clock, "wall_skew", lambda: -42)
    assert snapshot.persist(store, str(tmp_path / "s"))
    assert re.search(
        r"saved 1 items to \S+ in \d+\.\d\d s \(expiry times moved -42 s: the wall clock was stepped "
        r"while the daemon ran\)",
        caplog.text,
    )
    monkeypatch.setattr(clock, "wall_skew", lambda: 0)
    caplog.clear()
    assert snapshot.persist(store, str(tmp_path / "s"))
    assert "moved" not in caplog.text


# -- the daemon's wall clock stepped (libfaketime) -------------------------------------------------

LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
needs_faketime = pytest.mark.skipif(
    not os.path.exists(LIBFAKETIME),
    reason=f"libfaketime not installed ({LIBFAKETIME}; apt-get install libfaketime)",
)


class WallClock:
    """The daemon's wall clock offset, through libfaketime's file (read on every time call)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.set(0)

    def env(self) -> dict[str, str]:
        return {
            "LD_PRELOAD": LIBFAKETIME,
            "FAKETIME_TIMESTAMP_FILE": str(self.path),
            "FAKETIME_NO_CACHE": "1",  # see each change at once
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",  # the step is in the wall clock only
            "FAKETIME_DISABLE_SHM": "1",  # no shared memory left behind by a killed daemon
        }

    def set(self, offset: int) -> None:
        tmp = self.path.with_suffix(".new")
        tmp.write_text(f"{offset:+d}\n")
        tmp.rename(self.path)  # atomic: the daemon never reads half a line
        self.offset = offset

    def faked_now(self) -> float:
        """The wall time a process started with :meth:`env` reads now."""
        argv = [sys.executable, "-c", "import time; print(time.time())"]
        env = {**os.environ, **self.env()}
        return float(
            subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30, check=True).stdout
        )


@pytest.fixture
def wall(tmp_path: Path) -> WallClock:
    """The wall clock of the daemons the test starts with ``env=wall.env()``.

    NOTE: a change is seen by the next time() call of the daemon (the file is re-read on every
    call and replaced atomically), so a test need not wait for it.
    """
    w = WallClock(tmp_path / "faketime.rc")
    w.set(86_400)
    ahead = w.faked_now() - time.time()
    if not 86_400 - 60 < ahead < 86_400 + 60:
        pytest.skip(f"libfaketime does not move the wall clock here (off by {ahead:.0f} s, not a day)")
    w.set(0)
    return w


def present(d: Daemon, *keys: str) -> list[str]:
    reply = d.request(f"get {' '.join(keys)}\r\n".encode(), until=b"END\r\n")
    return [m.decode() for m in re.findall(rb"^VALUE (\S+) ", reply, re.M)]


@needs_faketime
@pytest.mark.parametrize("backend", backend_params())
def test_daemon_expiry_ignores_wall_clock_steps(
    daemon_factory: Factory, wall: WallClock, backend: str
) -> None:
    d = daemon_factory(backend=backend, env=wall.env())
    assert d.request(b"set survivor 0 30 1\r\n1\r\n") == b"STORED\r\n"
    wall.set(86_400)  # a day ahead: on a wall-clock store, survivor would be long expired
    assert present(d, "survivor") == ["survivor"]
    assert d.request(b"set short 0 3 1\r\n1\r\n") == b"STORED\r\n"
    wall.set(-86_400)  # a day behind: on a wall-clock store, short would live another day
    assert present(d, "survivor", "short") == ["survivor", "short"]
    wait_until(lambda: present(d, "short") == [], timeout=20, what="short (TTL 3 s) to expire")
    assert present(d, "survivor") == ["survivor"]
    after_start = d.log.split("started: ", 1)[1].partition("\n")[2].splitlines()
    assert not [line for line in after_start if TROUBLE.search(line) and "wall clock jumped" not in line], (
        d.log
    )


@needs_faketime
def test_daemon_logs_each_wall_clock_step(daemon_factory: Factory, wall: WallClock) -> None:
    d = daemon_factory(backend="python", env=wall.env())
    wall.set(3600)
    d.wait_for_log(r"warning: wall clock jumped forward by 3600 s \(now \+3600 s from the clock", timeout=10)
    wall.set(0)
    d.wait_for_log(r"warning: wall clock jumped back by 3600 s \(now \+0 s from the clock", timeout=10)


@needs_faketime
@pytest.mark.parametrize("backend", backend_params())
@pytest.mark.parametrize("step", [3600, -3600], ids=["forward", "back"])
def test_absolute_expiry_follows_the_stepped_wall_clock(
    daemon_factory: Factory, wall: WallClock, backend: str, step: int
) -> None:
    d = daemon_factory(backend=backend, env=wall.env())
    wall.set(step)
    d.wait_for_log(r"warning: wall clock jumped", timeout=10)
    # A client's "in 3 s", in Unix time on the (stepped) wall clock it shares with the daemon.
    at = int(wall.faked_now()) + 3
    assert d.request(b"set abs 0 %d 1\r\n1\r\nset rel 0 60 1\r\n1\r\n" % at) == b"STORED\r\nSTORED\r\n"
    assert present(d, "abs", "rel") == ["abs", "rel"]
    wait_until(lambda: present(d, "abs") == [], timeout=20, what="abs (3 s from the wall clock's now)")
    assert present(d, "rel") == ["rel"]


@needs_faketime
@pytest.mark.parametrize("direction", [3600, -3600], ids=["forward", "back"])
def test_snapshot_keeps_remaining_ttls_across_a_step(
    daemon_factory: Factory, wall: WallClock, tmp_path: Path, direction: int
) -> None:
    snap = str(tmp_path / "pycache-d.snapshot")
    first = daemon_factory("--snapshot", snap, backend="python", env=wall.env())
    # NOTE: a TTL that outlasts a stop and a start on a busy machine (4 s did not, with both
    # cores busy), and is still far from the hour of the step.
    assert first.request(b"set k 0 20 1\r\n1\r\nset never 0 0 1\r\n1\r\n") == b"STORED\r\nSTORED\r\n"
    wall.set(direction)
    assert first.stop() == 0
    first.wait_for_log(
        rf"saved 2 items to \S+ in \d+\.\d\d s \(expiry times moved {re.escape(f'{direction:+d}')} s: "
    )
    # The next daemon starts on the stepped clock. Unconverted, k would be an hour expired on
    # load (forward), or live an hour too long (back).
    again = daemon_factory("--snapshot", snap, backend="python", env=wall.env())
    again.wait_for_log(r"loaded 2 items from \S+ \(skipped 0 expired or too large\)")
    wait_until(lambda: present(again, "k") == [], timeout=60, what="k (TTL 20 s) to expire")
    assert present(again, "never") == ["never"]


# -- the snapshot directory read-only, full or missing ---------------------------------------------


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs for the test, which it may remount read-only (skips unless we may mount)."""
    with mount_tmpfs(tmp_path / "fs", "2m") as mnt:
        yield mnt


def remount(mnt: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(mnt)], check=True, capture_output=True)


def test_read_only_directory_is_reported_at_start_and_at_shutdown(
    daemon_factory: Factory, small_fs: Path
) -> None:
    snap = small_fs / "pycache-d.snapshot"
    remount(small_fs, "ro")
    ro = daemon_factory("--snapshot", str(snap), "-m", "1", backend="python")
    ro.wait_for_log(r"notice: no snapshot at ")
    ro.wait_for_log(
        rf"warning: the snapshot cannot be saved to {re.escape(str(snap))}: cannot create files in "
        rf"{re.escape(str(small_fs))}: read-only file system; the items will not survive a restart"
    )
    assert ro.request(b"set new 0 0 3\r\nnew\r\n") == b"STORED\r\n"
    assert ro.stop() == 0  # the shutdown itself was clean (see __main__): the error is logged
    ro.wait_for_log(
        rf"error: cannot write snapshot {re.escape(str(snap))}\.tmp: read-only file system; "
        r"the items will not survive the restart"
    )
    assert [line for line in ro.lines if ": error: " in line or ": warning: " in line] == [
        line for line in ro.lines if "read-only file system" in line
    ]
    remount(small_fs, "rw")
    assert os.listdir(small_fs) == []


def test_a_snapshot_that_cannot_be_consumed_is_not_served(daemon_factory: Factory, small_fs: Path) -> None:
    snap = small_fs / "pycache-d.snapshot"
    first = daemon_factory("--snapshot", str(snap), "-m", "1", backend="python")
    assert first.request(b"set old 0 0 3\r\nold\r\n") == b"STORED\r\n"
    assert first.stop() == 0
    saved = snap.read_bytes()

    # Read-only, the snapshot loads but cannot be replaced, removed or emptied: served, its
    # items would come back at the next start after a remount, under whatever this daemon wrote.
    remount(small_fs, "ro")
    argv = [sys.executable, "-m", "pycache_d", "-p", "0", "--snapshot", str(snap), "--backend", "python"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert "loaded 1 items from " in proc.stderr
    assert re.search(
        rf"error: cannot write snapshot {re.escape(str(snap))}\.tmp: read-only file system; nor can it be "
        r"removed or emptied \(read-only file system\): refusing to start",
        proc.stderr,
    ), proc.stderr
    assert "listening on" not in proc.stderr

    remount(small_fs, "rw")  # fixed: the snapshot is still good, as nothing was served
    assert snap.read_bytes() == saved and os.listdir(small_fs) == ["pycache-d.snapshot"]
    again = daemon_factory("--snapshot", str(snap), "-m", "1", backend="python")
    again.wait_for_log(r"loaded 1 items from ")
    assert present(again, "old") == ["old"]
    assert not any(": warning: " in line for line in again.lines)


def test_a_full_disk_at_shutdown_means_an_empty_next_start(daemon_factory: Factory, small_fs: Path) -> None:
    snap = small_fs / "pycache-d.snapshot"
    # A memory limit larger than the file system is worth a word at start.
    first = daemon_factory("--snapshot", str(snap), "-m", "4", backend="python")
    first.wait_for_log(
        rf"warning: only 2m free beside {re.escape(str(snap))}: a full store \(memory limit 4m\) may not fit"
    )
    assert first.request(b"set old 0 0 3\r\nold\r\n") == b"STORED\r\n"
    assert first.stop() == 0
    big = daemon_factory("--snapshot", str(snap), "-m", "4", backend="native" if native_built() else "python")
    assert present(big, "old") == ["old"]
    assert big.request(b"set old 0 0 3\r\nnew\r\n") == b"STORED\r\n"
    value = os.urandom(100_000)  # incompressible, not that tmpfs compresses
    for i in range(25):  # 2.5 MB: more than the file system holds
        assert big.request(b"set big%d 0 0 %d\r\n%s\r\n" % (i, len(value), value)) == b"STORED\r\n"
    assert big.stop() == 0
    big.wait_for_log(r"error: cannot write snapshot \S+\.tmp: no space left on device; the items will not")
    assert os.listdir(small_fs) == ["pycache-d.snapshot"]
    # What is left is what big's start wrote over the snapshot: the old value cannot come back.
    again = daemon_factory("--snapshot", str(snap), backend="python")
    again.wait_for_log(r"holds no snapshot: the last run ended without saving one")
    assert present(again, "old", "big0") == []


def test_missing_directory_is_reported_at_start(daemon_factory: Factory, tmp_path: Path) -> None:
    snap = tmp_path / "missing" / "pycache-d.snapshot"
    d = daemon_factory("--snapshot", str(snap), backend="python")
    d.wait_for_log(rf"notice: no snapshot at {re.escape(str(snap))} yet: starting empty")
    d.wait_for_log(
        rf"warning: the snapshot cannot be saved to {re.escape(str(snap))}: cannot create files in "
        rf"{re.escape(str(snap.parent))}: no such file or directory; the items will not survive"
    )
    assert d.stop() == 0
    d.wait_for_log(r"error: cannot write snapshot \S+\.tmp: no such file or directory; the items will")
    assert not snap.parent.exists()  # the daemon does not invent directories


def test_probe_leaves_nothing_behind(tmp_path: Path) -> None:
    path = str(tmp_path / "s")
    assert snapshot.check_writable(path) is None
    assert os.listdir(tmp_path) == []
    os.mkdir(path)
    assert snapshot.check_writable(path) == f"{path} is a directory"


# -- clients that vanish mid-command ---------------------------------------------------------------


def connections(d: Daemon) -> int:
    """curr_connections, not counting the connection that asks."""
    return int(stats(d)["curr_connections"]) - 1


def reset(sock: socket.socket) -> None:
    """Close with an RST (SO_LINGER 0) instead of a FIN, dropping anything unsent or unread."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def assert_quiet_and_released(d: Daemon, before: int) -> None:
    """Every faulty client's connection was released, and nothing worse than a notice was logged."""
    wait_until(lambda: connections(d) == before, what="the connections to be released")
    assert d.request(b"version\r\n").startswith(b"VERSION ")
    after_start = d.log.split("started: ", 1)[1].partition("\n")[2]
    assert not TROUBLE.search(after_start), d.log


@pytest.mark.parametrize("close", [socket.socket.close, reset], ids=["fin", "rst"])
@pytest.mark.parametrize(
    "head",
    [b"set k 0 0 100000\r\n", b"ms k 100000 T0\r\n", b"cas k 0 0 100000 1\r\n", b"append k 0 0 100000\r\n"],
    ids=["set", "ms", "cas", "append"],
)
def test_client_gone_mid_value_stores_nothing(
    daemon: Daemon, head: bytes, close: Callable[..., None]
) -> None:
    assert daemon.request(b"set k 0 0 3\r\nold\r\n") == b"STORED\r\n"
    keeper = daemon.connect()  # another client, served throughout
    before = connections(daemon)
    for _ in range(3):
        sock = daemon.connect()
        sock.sendall(head + b"x" * 50_000)
        close(sock)
    keeper.sendall(b"get k\r\n")
    assert read_until(keeper, b"END\r\n") == b"VALUE k 0 3\r\nold\r\nEND\r\n"
    keeper.close()
    assert_quiet_and_released(daemon, before - 1)
    assert daemon.request(b"get k\r\n", until=b"END\r\n") == b"VALUE k 0 3\r\nold\r\nEND\r\n"


@pytest.mark.parametrize("close", [socket.socket.close, reset], ids=["fin", "rst"])
def test_client_gone_mid_reply(
    daemon_factory: Factory, daemon_backend: str, close: Callable[..., None]
) -> None:
    d = daemon_factory("-m", "64", backend=daemon_backend)
    value = b"v" * 1_000_000
    for i in range(8):
        assert d.request(b"set big%d 0 0 %d\r\n%s\r\n" % (i, len(value), value)) == b"STORED\r\n"
    before = connections(d)
    keys = b" ".join(b"big%d" % i for i in range(8))
    for n in range(3):
        sock = d.connect()
        sock.sendall(b"get " + b" ".join([keys] * 8) + b"\r\n")  # 64 MB of reply
        if n:
            read_until(sock, None, limit=n * 300_000)  # read some of it first
        close(sock)
    assert_quiet_and_released(d, before)
    assert present(d, "big0", "big7") == ["big0", "big7"]


@pytest.mark.parametrize("close", [socket.socket.close, reset], ids=["fin", "rst"])
def test_client_gone_mid_pipeline(daemon: Daemon, close: Callable[..., None]) -> None:
    before = connections(daemon)
    batch = b"".join(b"set p%d 0 0 4 noreply\r\nv%03d\r\n" % (i, i) for i in range(500))
    sock = daemon.connect()
    sock.sendall(batch + b"get p0 p499\r\n" * 200 + b"set cut 0 0 10\r\nhalf")
    close(sock)
    assert_quiet_and_released(daemon, before)
    if close is socket.socket.close:
        # Everything the client finished sending before its FIN was carried out (an RST may
        # discard what the kernel had not yet handed to the daemon).
        reply = daemon.request(b"get p0 p250 p499 cut\r\n", until=b"END\r\n")
        assert reply == b"VALUE p0 0 4\r\nv000\r\nVALUE p250 0 4\r\nv250\r\nVALUE p499 0 4\r\nv499\r\nEND\r\n"
    assert present(daemon, "cut") == []
