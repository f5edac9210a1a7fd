"""Warm restart's life cycle (pycache_d/daemon/warmstart.py): a snapshot loads once, CAS never repeats.

In-process on both backends: the snapshot is consumed at load, the CAS high-water mark stays on
disk ahead of the counter, stale temporary files go and live writers' stay, the progress of a
load reaches systemd and the log at its pace. Then the real daemon: an unclean exit after a warm
restart brings nothing back, and CAS values after ``kill -9`` exceed every one handed out before,
with a snapshot (the wall clock stepped back, libfaketime) and without.
"""

# The wall fixture imported from test_faults is used as a parameter, which ruff reads as a
# redefinition.
# ruff: noqa: F811

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

pytest.register_assert_rewrite("daemon")
pytest_plugins = ["daemon"]

from test_faults import WallClock, needs_faketime, wall  # noqa: E402, F401
from test_snapshot import SLOW_WRITER  # noqa: E402

from pycache_d.daemon import snapshot, warmstart  # noqa: E402
from pycache_d.daemon.snapshot import SnapshotError  # noqa: E402
from pycache_d.daemon.systemd import Notifier  # noqa: E402
from pycache_d.daemon.warmstart import CAS_RESERVE, WarmStart, cas_floor  # noqa: E402
from pycache_d.store import PyStore  # noqa: E402

from daemon import Daemon, backend_params, stats  # noqa: E402

Factory = Callable[..., Daemon]
QUIET = Notifier(None)


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "pycache-d.snapshot")


def on_disk(path: str) -> tuple[snapshot.LoadResult, PyStore]:
    store = PyStore()
    return snapshot.load(store, path), store


def saved(make_store, path: str, n: int = 5):
    src = make_store()
    for i in range(n):
        src.set(b"k%d" % i, b"v%d" % i)
    snapshot.save(src, path)
    return src


# -- consumed at load ---------------------------------------------------------------------------


def test_begin_loads_the_snapshot_and_consumes_it(make_store, path) -> None:
    src = saved(make_store, path)
    store = make_store()
    warm = WarmStart(store, path, QUIET)
    floor = cas_floor()
    assert warm.begin().loaded == 5  # type: ignore[union-attr]
    assert store.get(b"k4") == b"v4"
    assert store.cas_counter >= max(floor, src.cas_counter)
    result, back = on_disk(path)  # what a start after an unclean exit finds
    assert (result.status, result.loaded, result.consumed) == ("loaded", 0, True)
    assert back.cas_counter == warm.high == store.cas_counter + CAS_RESERVE
    assert os.listdir(os.path.dirname(path)) == ["pycache-d.snapshot"]


def test_a_consumed_file_starts_empty_above_its_mark(make_store, path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="pycache_d")
    snapshot.write_consumed(path, 2**60)
    store = make_store()
    result = WarmStart(store, path, QUIET).begin()
    assert result is not None and result.consumed and len(store) == 0
    assert store.cas_counter == 2**60
    store.set(b"k", b"v")
    assert store.get_item(b"k")[2] == 2**60 + 1  # type: ignore[index]
    assert "holds no snapshot: the last run ended without saving one" in caplog.text


def test_no_snapshot_file_still_sets_the_cas_floor(make_store) -> None:
    store = make_store()
    floor = cas_floor()
    assert WarmStart(store, None, QUIET).begin() is None
    assert store.cas_counter >= floor


def test_the_mark_moves_ahead_of_the_counter(make_store, path) -> None:
    store = make_store()
    warm = WarmStart(store, path, QUIET)
    warm.begin()
    first = warm.high
    assert first is not None
    before = Path(path).read_bytes()
    store.load((), first - CAS_RESERVE // 2)  # the counter came near, not within half
    warm.check()
    assert warm.high == first and Path(path).read_bytes() == before
    store.load((), first - CAS_RESERVE // 2 + 1)
    warm.check()
    assert warm.high == store.cas_counter + CAS_RESERVE
    assert on_disk(path)[1].cas_counter == warm.high


def test_serve_keeps_the_mark_ahead_and_stops_with_the_server(make_store, path, monkeypatch) -> None:
    monkeypatch.setattr(warmstart, "CAS_CHECK_INTERVAL", 0.01)
    store = make_store()
    warm = WarmStart(store, path, QUIET)
    warm.begin()
    assert warm.high is not None
    target = warm.high

    async def server() -> str:
        store.load((), target)  # a burst of writes: the counter reaches the mark
        while warm.high == target:  # the keeper moves it on (bounded by the test's timeout)
            await asyncio.sleep(0.01)
        return "stopped"

    assert asyncio.run(asyncio.wait_for(warm.serve(server), 60)) == "stopped"
    assert on_disk(path)[1].cas_counter == warm.high == target + CAS_RESERVE


def test_a_mark_that_cannot_be_written_falls_back_to_removing_the_snapshot(
    make_store, path, monkeypatch, caplog
) -> None:
    saved(make_store, path)

    def refused(path: str, cas_counter: int) -> None:
        raise SnapshotError(f"cannot write snapshot {path}.tmp: no space left on device")

    monkeypatch.setattr(snapshot, "write_consumed", refused)
    store = make_store()
    WarmStart(store, path, QUIET).begin()
    assert len(store) == 5  # served: the snapshot is gone, it cannot load again
    assert not os.path.exists(path)
    assert "removed the snapshot instead" in caplog.text


def test_an_unreadable_snapshot_is_moved_aside(make_store, path, monkeypatch, caplog) -> None:
    saved(make_store, path)
    content = Path(path).read_bytes()

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(snapshot, "open", denied, raising=False)  # root reads every file
    store = make_store()
    result = WarmStart(store, path, QUIET).begin()
    monkeypatch.undo()
    assert result is not None and result.status == "unreadable" and len(store) == 0
    assert result.moved_to is not None and Path(result.moved_to).read_bytes() == content
    assert on_disk(path)[0].consumed  # the file that could not be read will not load later either
    assert re.search(r"cannot read snapshot \S+: permission denied; moved it to \S+corrupt-", caplog.text)


def test_put_back_saves_only_what_was_consumed(make_store, path) -> None:
    saved(make_store, path)
    store = make_store()
    warm = WarmStart(store, path, QUIET)
    warm.begin()
    assert warm.put_back()
    result, back = on_disk(path)
    assert (result.loaded, result.consumed) == (5, False) and back.get(b"k0") == b"v0"

    empty = WarmStart(make_store(), path + "2", QUIET)
    empty.begin()
    assert empty.put_back()
    assert on_disk(path + "2")[0].consumed  # nothing was loaded: nothing to put back


# -- stale temporary files (a save killed mid-way) ----------------------------------------------


def test_clean_temporaries_removes_ours_and_spares_a_live_writer(path) -> None:
    tmp, probe, other = path + ".tmp", path + ".probe-x1y2", path + ".tmpfoo"
    for name in (tmp, probe, other):
        Path(name).write_bytes(b"x" * 100)
    assert snapshot.clean_temporaries(path) == [(probe, 100), (tmp, 100)]
    assert sorted(os.listdir(os.path.dirname(path))) == [os.path.basename(other)]

    Path(tmp).write_bytes(b"being written")
    writer = os.open(tmp, os.O_RDWR)  # another daemon saving: it holds the lock
    try:
        fcntl.flock(writer, fcntl.LOCK_EX)
        assert snapshot.clean_temporaries(path) == []
        assert Path(tmp).read_bytes() == b"being written"
        with pytest.raises(SnapshotError, match="another process is writing it"):
            snapshot.save(PyStore(), path)
        assert Path(tmp).read_bytes() == b"being written"  # not truncated under the writer
    finally:
        os.close(writer)
    os.unlink(tmp)
    os.symlink("/etc/hostname", tmp)  # never followed
    os.mkdir(probe)
    assert snapshot.clean_temporaries(path) == []
    assert os.path.islink(tmp) and os.path.isdir(probe)


def test_a_save_survives_a_start_removing_its_tmp_before_it_locks(path, monkeypatch) -> None:
    real = fcntl.flock
    raced = []

    def cleaner_first(fd: int, op: int) -> None:
        if not raced:  # between the writer's open and its lock, a start cleans up
            raced.append(True)
            assert snapshot.clean_temporaries(path) == [(path + ".tmp", 0)]
        real(fd, op)

    monkeypatch.setattr(fcntl, "flock", cleaner_first)
    store = PyStore()
    store.set(b"k", b"v")
    assert snapshot.save(store, path).items == 1
    monkeypatch.undo()
    assert raced and on_disk(path)[1].get(b"k") == b"v"
    assert os.listdir(os.path.dirname(path)) == ["pycache-d.snapshot"]


def test_the_daemon_removes_the_tmp_a_killed_save_left(daemon_factory: Factory, path: str) -> None:
    argv = [sys.executable, "-c", SLOW_WRITER, "python", path]  # a save that hangs mid-way
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("wrote")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]
    assert os.path.getsize(path + ".tmp") > 0
    d = daemon_factory("--snapshot", path, backend="python")
    d.wait_for_log(
        rf"notice: removed {re.escape(path)}\.tmp \(\d+\.\d KiB\) that a save which did not finish"
    )
    assert not os.path.exists(path + ".tmp")
    assert d.stop() == 0
    assert os.listdir(os.path.dirname(path)) == ["pycache-d.snapshot"]


# -- progress of a long load, for systemd and the log ---------------------------------------------


class Recorder(Notifier):
    """A notifier that keeps what it would send to ``$NOTIFY_SOCKET`` (test_systemd.py has the socket)."""

    def __init__(self) -> None:
        super().__init__("@unused")
        self.sent: list[dict[str, str]] = []

    def send(self, *lines: str) -> bool:
        self.sent.append(dict(line.split("=", 1) for line in lines))
        return True


class Ticks:
    """A clock that moves ``step`` seconds at every reading."""

    def __init__(self, step: float) -> None:
        self.now = 0.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_progress_reaches_systemd_and_the_log_at_their_pace(make_store, path, monkeypatch, caplog) -> None:
    caplog.set_level(logging.INFO, logger="pycache_d")
    monkeypatch.setattr(snapshot, "PROGRESS_EVERY", 10)
    monkeypatch.setattr(snapshot, "CHUNK", 512)
    saved(make_store, path, 300)
    notifier = Recorder()
    store = make_store()
    WarmStart(store, path, notifier, Ticks(0.3)).begin()  # every report 0.3 s after the last
    assert len(store) == 300
    sent = notifier.sent
    assert sent and all(m["EXTEND_TIMEOUT_USEC"] == str(int(warmstart.EXTEND_TIMEOUT * 1e6)) for m in sent)
    statuses = [m["STATUS"] for m in sent]
    loading = [s for s in statuses if s.startswith("loading snapshot: ")]
    assert statuses[0].startswith("checking snapshot: ")
    assert loading[0] == "loading snapshot: 0% (0 of 300 items)"
    assert loading[-1] == "loading snapshot: 100% (300 of 300 items)"
    percents = [int(re.search(r"(\d+)%", s)[1]) for s in loading]  # type: ignore[index]
    assert percents == sorted(percents) and len(set(percents)) > 3
    # 30 steps 0.3 s apart: at most one message a second (and each phase's first and last).
    assert 4 <= len(loading) <= 30 * 0.3 / warmstart.NOTIFY_INTERVAL + 3
    lines = [r.getMessage() for r in caplog.records]
    assert re.match(rf"loading snapshot {re.escape(path)}: \d+\.\d KiB, 300 items$", lines[0])
    progress = [line for line in lines if line.startswith("loading snapshot: ")]
    assert 1 <= len(progress) <= 30 * 0.3 / warmstart.LOG_INTERVAL + 1, lines


# -- the real daemon: kill -9 after a warm restart -------------------------------------------------


def gets(d: Daemon, *keys: str) -> dict[str, tuple[bytes, int]]:
    reply = d.request(f"gets {' '.join(keys)}\r\n".encode(), until=b"END\r\n")
    out = {}
    for m in re.finditer(rb"VALUE (\S+) \d+ (\d+) (\d+)\r\n", reply):
        out[m[1].decode()] = (reply[m.end() : m.end() + int(m[2])], int(m[3]))
    return out


@pytest.mark.parametrize("backend", backend_params())
def test_an_unclean_exit_after_a_warm_restart_brings_nothing_back(
    daemon_factory: Factory, backend: str, path: str
) -> None:
    keys = [f"k{i}" for i in range(30)]
    first = daemon_factory("--snapshot", path, backend=backend)
    for key in keys:
        assert first.request(f"set {key} 0 0 3\r\nold\r\n".encode()) == b"STORED\r\n"
    assert first.stop() == 0  # a clean stop: the snapshot holds the 30 old values

    warm = daemon_factory("--snapshot", path, backend=backend)
    warm.wait_for_log("loaded 30 items from ")
    handed_out = [cas for _, cas in gets(warm, *keys).values()]
    assert len(handed_out) == 30
    for key in keys[:10]:
        assert warm.request(f"set {key} 0 0 3\r\nnew\r\n".encode()) == b"STORED\r\n"
    for key in keys[10:20]:
        assert warm.request(f"delete {key}\r\n".encode()) == b"DELETED\r\n"
    handed_out += [cas for _, cas in gets(warm, *keys).values()]
    assert warm.request(b"flush_all\r\n") == b"OK\r\n"
    assert warm.request(b"set after 0 0 1\r\nx\r\n") == b"STORED\r\n"
    handed_out += [cas for _, cas in gets(warm, "after").values()]
    warm.kill()  # kill -9: no snapshot of this run

    again = daemon_factory("--snapshot", path, backend=backend)
    again.wait_for_log("holds no snapshot: the last run ended without saving one")
    assert gets(again, *keys, "after") == {}  # no old, overwritten, deleted or flushed value
    assert stats(again)["curr_items"] == "0"
    assert again.request(b"set fresh 0 0 1\r\ny\r\n") == b"STORED\r\n"
    assert gets(again, "fresh")["fresh"][1] > max(handed_out)  # the CAS counter did not go back


@needs_faketime
@pytest.mark.parametrize("backend", backend_params())
def test_cas_after_kill_9_exceeds_all_before_with_the_clock_stepped_back(
    daemon_factory: Factory, backend: str, path: str, wall: WallClock
) -> None:
    first = daemon_factory("--snapshot", path, backend=backend, env=wall.env())
    sets = b"".join(b"set k%d 0 0 1 noreply\r\nv\r\n" % i for i in range(20_000))
    assert first.request(sets + b"set last 0 0 1\r\nv\r\n") == b"STORED\r\n"
    before = gets(first, "last", "k0", "k19999")
    first.kill()
    wall.set(-86_400)  # the wall clock now says a day earlier: its microseconds alone would repeat
    again = daemon_factory("--snapshot", path, backend=backend, env=wall.env())
    assert again.request(b"set new 0 0 1\r\nn\r\n") == b"STORED\r\n"
    assert gets(again, "new")["new"][1] > max(cas for _, cas in before.values())


@pytest.mark.parametrize("backend", backend_params())
def test_cas_after_kill_9_exceeds_all_before_without_a_snapshot(
    daemon_factory: Factory, backend: str
) -> None:
    first = daemon_factory("--no-snapshot", backend=backend)
    assert first.request(b"set a 0 0 1\r\nv\r\nset b 0 0 1\r\nv\r\n") == b"STORED\r\nSTORED\r\n"
    before = gets(first, "a", "b")
    first.kill()
    again = daemon_factory("--no-snapshot", backend=backend)
    assert again.request(b"set a 0 0 1\r\nw\r\n") == b"STORED\r\n"
    assert gets(again, "a")["a"][1] > max(cas for _, cas in before.values())
