"""The snapshot file (pycache_d/daemon/snapshot.py) on both store backends.

Round trips keep every item, its flags, expiry and CAS, its state (last access and the meta
commands' marks), the CAS counter and the LRU order; a version 1 file, written before the state
was kept, still loads; a file that is truncated, damaged, foreign or of another version is moved
aside and nothing is loaded; a writer killed mid-way or a full disk leaves the previous snapshot
as it was. Tests marked ``asan`` (the native items/load/flush paths) also run under
``make test-asan``.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import signal
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from pycache_d.daemon import snapshot
from pycache_d.daemon.snapshot import (
    HEADER_SIZE,
    MAGIC,
    RECORD_SIZE,
    RECORD_SIZE_V1,
    TRAILER_SIZE,
    SnapshotError,
    default_path,
    load,
    persist,
    restore,
    save,
)

MOVED = re.compile(r"\.snapshot\.corrupt-\d{8}T\d{6}(-\d+)?$")


def fill(store, clock) -> None:
    """Items with flags, expiry, a later delete (the counter passes the last CAS) and reads
    that reorder the LRU."""
    store.set(b"a", b"alpha", 1, 0)
    store.set(b"b", b"beta" * 100, 2**32 - 1, clock.now + 100)
    store.set(b"c", b"", 0, 0)
    store.set(b"\x00 bin\xff", bytes(range(256)), 7, clock.now + 5000)
    store.set(b"gone", b"x", 0, 0)
    store.delete(b"gone")
    store.get(b"a")  # a becomes the most recent
    store.touch(b"c", 0)  # and then c


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "pycache-d.snapshot")


@pytest.mark.asan
def test_round_trip_keeps_items_lru_order_and_cas_counter(make_store, clock, path) -> None:
    src = make_store()
    fill(src, clock)
    result = save(src, path)
    assert result.items == 4 and result.bytes == os.path.getsize(path)

    dst = make_store()
    loaded = load(dst, path)
    assert (loaded.status, loaded.loaded, loaded.skipped) == ("loaded", 4, 0)
    assert list(dst.items()) == list(src.items())
    assert [k for k, *_ in dst.items()] == [b"b", b"\x00 bin\xff", b"a", b"c"]
    assert dst.cas_counter == src.cas_counter > max(cas for *_, cas in src.items())
    # New writes continue the counter rather than reuse a CAS a client may still hold.
    dst.set(b"new", b"v")
    assert dst.get_item(b"new")[2] == src.cas_counter + 1


@pytest.mark.asan
def test_round_trip_keeps_each_items_state(make_store, clock, path) -> None:
    """Last access and the meta marks (fetched 1, win token 2, stale 4, binary key 8) come back."""
    src = make_store()
    fill(src, clock)
    clock.advance(3)
    src.meta_update(0, b"\x01\r\n", b"m", binary=True)  # a base64-keyed ms
    src.meta_delete(b"\x01\r\n", stale=True)  # md I
    src.mark(b"b", 2)  # a win token went out for b
    src.get(b"c")  # c's second fetch: its last access moves
    save(src, path)
    clock.advance(7)  # the daemon was down for 7 s
    dst = make_store()
    assert load(dst, path).loaded == 5
    assert list(dst.records()) == list(src.records())
    assert {k: (clock.now - a, bits) for k, *_, a, bits in dst.records()} == {
        b"b": (10, 2),
        b"\x00 bin\xff": (10, 0),
        b"a": (10, 1),
        b"\x01\r\n": (7, 4 | 8),
        b"c": (7, 1),
    }


@pytest.mark.asan
def test_lru_order_decides_evictions_after_load(make_store, clock, path) -> None:
    src = make_store()
    for i in range(10):
        src.set(b"k%d" % i, b"v")
    src.get(b"k0")  # recently used: survives the smaller store below
    save(src, path)
    dst = make_store(max_items=3)
    result = load(dst, path)
    assert (result.loaded, result.skipped, result.evicted) == (3, 0, 7)
    assert sorted(k for k, *_ in dst.items()) == [b"k0", b"k8", b"k9"]


@pytest.mark.asan
@pytest.mark.parametrize("chunk", [7, 64, snapshot.CHUNK])
def test_records_across_chunk_boundaries(make_store, clock, path, monkeypatch, chunk) -> None:
    monkeypatch.setattr(snapshot, "CHUNK", chunk)
    src = make_store(max_item_size=4 * 1024 * 1024)
    for i in range(200):
        src.set(b"key%d" % i, b"v" * (i * 7), i, 0)
    src.set(b"big", os.urandom(3 * 1024 * 1024 // 2))  # larger than a default chunk
    src.set(b"after", b"z")
    save(src, path)
    dst = make_store(max_item_size=4 * 1024 * 1024)
    assert load(dst, path).loaded == 202
    assert list(dst.items()) == list(src.items())


@pytest.mark.asan
def test_items_that_expired_meanwhile_are_skipped(make_store, clock, path) -> None:
    src = make_store()
    src.set(b"soon", b"1", 0, clock.now + 10)
    src.set(b"later", b"2", 0, clock.now + 100)
    src.set(b"never", b"3", 0, 0)
    save(src, path)
    clock.advance(50)  # the daemon was down for 50 s
    dst = make_store()
    result = load(dst, path)
    assert (result.loaded, result.skipped) == (2, 1)
    assert [k for k, *_ in dst.items()] == [b"later", b"never"]
    assert dst.get_item(b"later") == (b"2", 0, src.get_item(b"later")[2])
    clock.advance(50)
    assert dst.get(b"later") is None  # the absolute expiry survived the restart


def test_empty_store_round_trips(make_store, path) -> None:
    src = make_store()
    src.set(b"x", b"1")
    src.delete(b"x")
    save(src, path)
    dst = make_store()
    assert load(dst, path).status == "loaded"
    assert len(dst) == 0 and dst.cas_counter == src.cas_counter


def test_missing_file_is_a_first_start(make_store, path) -> None:
    assert load(make_store(), path).status == "missing"
    assert not os.path.exists(path)


# -- bad files -------------------------------------------------------------------------------------


def good_file(make_store, clock, path) -> bytes:
    src = make_store()
    fill(src, clock)
    save(src, path)
    return Path(path).read_bytes()


def assert_moved_aside(make_store, path: str, content: bytes, reason: str) -> None:
    Path(path).write_bytes(content)
    store = make_store()
    result = load(store, path)
    assert result.status == "corrupt", result
    assert re.search(reason, result.reason), result.reason
    assert len(store) == 0 and list(store.items()) == []
    assert result.moved_to is not None and MOVED.search(result.moved_to)
    assert not os.path.exists(path)
    assert Path(result.moved_to).read_bytes() == content  # kept for a post-mortem


def test_truncated_files_are_moved_aside(make_store, clock, path) -> None:
    data = good_file(make_store, clock, path)
    record_end = HEADER_SIZE + RECORD_SIZE + 1 + 5  # inside the first record ("a" -> "alpha")
    for cut in (3, 8, HEADER_SIZE - 1, HEADER_SIZE, record_end, len(data) // 2, len(data) - 1):
        assert_moved_aside(make_store, path, data[:cut], "truncated|checksum")


def test_flipped_bytes_are_detected(make_store, clock, path) -> None:
    data = good_file(make_store, clock, path)
    for at in (
        HEADER_SIZE + 2,
        HEADER_SIZE + RECORD_SIZE,
        len(data) // 2,
        len(data) - TRAILER_SIZE,
        len(data) - 1,
    ):
        damaged = bytearray(data)
        damaged[at] ^= 0x01
        assert_moved_aside(make_store, path, bytes(damaged), "checksum")


def test_foreign_file_is_moved_aside(make_store, path) -> None:
    assert_moved_aside(make_store, path, b"[settings]\nport = 11211\n" * 10, "not a pycache-d snapshot")


def test_other_version_is_moved_aside(make_store, clock, path) -> None:
    data = bytearray(good_file(make_store, clock, path))
    struct.pack_into("<I", data, len(MAGIC), 3)
    assert_moved_aside(make_store, path, bytes(data), "version 3 is not supported")


def test_empty_file_is_moved_aside(make_store, path) -> None:
    assert_moved_aside(make_store, path, b"", "empty file")


def test_two_bad_files_in_one_second_are_both_kept(make_store, path) -> None:
    moved = []
    for content in (b"one", b"two"):
        Path(path).write_bytes(content)
        moved.append(load(make_store(), path).moved_to)
    assert moved[0] != moved[1]
    assert sorted(Path(m).read_bytes() for m in moved if m) == [b"one", b"two"]


def checksummed(records: list[tuple[bytes, bytes, int, int, int]], count: int | None = None) -> bytes:
    """A version 1 file with a valid checksum around whatever records we like (a buggy writer)."""
    body = bytearray(struct.pack("<8sIIQ", MAGIC, 1, 0, 0))
    for key, value, flags, exptime, cas in records:
        body += struct.pack("<HIIIQ", len(key), len(value), flags, exptime, cas) + key + value
    body += bytes(RECORD_SIZE_V1) + struct.pack("<QQ", len(records) if count is None else count, 9)
    return bytes(body) + struct.pack("<I", zlib.crc32(body))


def write_v1(store, path: str) -> None:
    """Write ``store`` as the version 1 writer did (snapshot.py before the item state was kept:
    22-byte records of key and value length, flags, expiry and CAS)."""
    buf = bytearray(struct.pack("<8sIIQ", MAGIC, 1, 0, 1_700_000_000))
    count = 0
    for key, value, flags, exptime, cas in store.items():
        buf += struct.pack("<HIIIQ", len(key), len(value), flags, exptime, cas) + key + value
        count += 1
    buf += bytes(22) + struct.pack("<QQ", count, store.cas_counter)
    Path(path).write_bytes(bytes(buf) + struct.pack("<I", zlib.crc32(buf)))


@pytest.mark.asan
def test_a_version_1_snapshot_still_loads(make_store, clock, path) -> None:
    src = make_store()
    fill(src, clock)
    write_v1(src, path)
    clock.advance(10)
    dst = make_store()
    result = load(dst, path)
    assert (result.status, result.loaded, result.skipped) == ("loaded", 4, 0)
    assert list(dst.items()) == list(src.items())
    assert dst.cas_counter == src.cas_counter
    # no state in the file: accessed at the load, no marks
    assert {(a, bits) for *_, a, bits in dst.records()} == {(clock.now, 0)}
    # and the next save is a version 2 file that keeps what happens from now on
    dst.mark(b"a", 4)
    save(dst, path)
    assert Path(path).read_bytes()[8:12] == struct.pack("<I", 2)
    again = make_store()
    load(again, path)
    assert list(again.records()) == list(dst.records())


@pytest.mark.asan
def test_checksummed_but_unsound_file_leaves_the_store_empty(make_store, path) -> None:
    good = [(b"k%d" % i, b"v", 0, 0, i + 1) for i in range(50)]
    # A CAS of 0 is out of range: the store refuses it after inserting the 50 before it.
    assert_moved_aside(make_store, path, checksummed([*good, (b"bad", b"v", 0, 0, 0)]), "cas")
    assert_moved_aside(make_store, path, checksummed(good, count=49), "do not end where")
    # The well-formed control loads.
    Path(path).write_bytes(checksummed(good))
    store = make_store()
    assert load(store, path).loaded == 50 and store.cas_counter == 50


# -- failures while writing ------------------------------------------------------------------------

SLOW_WRITER = """
import os, sys, time
from pycache_d.daemon import snapshot
from pycache_d.store import BACKENDS

store = BACKENDS[sys.argv[1]](64 << 20)
for i in range(2000):
    store.set(b"new%d" % i, b"n" * 100)
snapshot.CHUNK = 4096
real_write = os.write

def slow_write(fd, data):
    n = real_write(fd, data)
    print("wrote", n, flush=True)
    time.sleep(60)  # killed here
    return n

os.write = slow_write
snapshot.save(store, sys.argv[2])
"""


def test_kill_during_write_leaves_the_old_snapshot(make_store, clock, path, backend) -> None:
    old = good_file(make_store, clock, path)
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_WRITER, backend, path], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("wrote")
        assert os.path.getsize(path + ".tmp") > 0  # the writer is mid-way
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]
    assert Path(path).read_bytes() == old
    store = make_store()
    assert load(store, path).loaded == 4
    # The next save writes over the dead writer's temporary file.
    save(store, path)
    assert not os.path.exists(path + ".tmp")
    assert load(make_store(), path).loaded == 4


@pytest.mark.parametrize(("call", "fails_at"), [("write", 2), ("fsync", 1)])
def test_full_disk_keeps_the_old_snapshot(
    make_store, clock, path, monkeypatch, caplog, call, fails_at
) -> None:
    old = good_file(make_store, clock, path)
    store = make_store()
    for i in range(3000):
        store.set(b"k%d" % i, b"v" * 100)
    monkeypatch.setattr(snapshot, "CHUNK", 4096)
    real = getattr(os, call)
    calls = []

    def full(fd, *args):
        calls.append(fd)
        if len(calls) >= fails_at:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, *args)

    monkeypatch.setattr(os, call, full)
    with pytest.raises(SnapshotError, match="no space left on device"):
        save(store, path)
    assert Path(path).read_bytes() == old
    assert not os.path.exists(path + ".tmp")
    caplog.set_level(logging.INFO, logger="pycache_d")
    assert persist(store, path) is False
    assert "no space left on device; the items will not survive the restart (the next start is" in caplog.text


def test_full_tmpfs_keeps_the_old_snapshot(make_store, tiny_tmpfs: Path) -> None:
    path = str(tiny_tmpfs / "pycache-d.snapshot")
    small = make_store()
    small.set(b"old", b"kept")
    save(small, path)
    old = Path(path).read_bytes()
    big = make_store()
    for i in range(1000):
        big.set(b"k%d" % i, b"v" * 100)  # ~130 KB: more than the file system holds
    with pytest.raises(SnapshotError, match="no space left on device"):
        save(big, path)
    assert Path(path).read_bytes() == old
    assert os.listdir(tiny_tmpfs) == ["pycache-d.snapshot"]


def test_unwritable_directory_is_a_clear_error(make_store, tmp_path) -> None:
    with pytest.raises(SnapshotError, match=r"cannot write snapshot .*missing/s\.tmp: no such file"):
        save(make_store(), str(tmp_path / "missing" / "s"))


# -- the daemon's calls ----------------------------------------------------------------------------


def test_restore_and_persist_log_what_happened(make_store, clock, path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="pycache_d")
    src = make_store()
    fill(src, clock)
    assert persist(src, path) is True
    assert re.search(r"saved 4 items to .* in \d+\.\d\d s", caplog.text)
    assert restore(make_store(), path).loaded == 4  # type: ignore[union-attr]
    assert re.search(r"loaded 4 items from .* \(skipped 0 expired or too large\) in \d+\.\d\d s", caplog.text)
    Path(path).write_bytes(b"garbage")
    assert restore(make_store(), path).status == "corrupt"  # type: ignore[union-attr]
    assert re.search(
        r"snapshot .* is unusable \(not a pycache-d snapshot.*\); moved it to .*corrupt-", caplog.text
    )
    assert restore(make_store(), None) is None and persist(make_store(), None) is True


def test_default_path() -> None:
    assert default_path("/x/s", {"STATE_DIRECTORY": "/var/lib/p"}) == "/x/s"
    assert default_path(False, {"STATE_DIRECTORY": "/var/lib/p"}) is None
    assert default_path(None, {"STATE_DIRECTORY": "/var/lib/p:/var/lib/q"}) == "/var/lib/p/pycache-d.snapshot"
    assert default_path(None, {}) is None


def test_snapshot_settings(tmp_path: Path) -> None:
    from pycache_d.daemon import config

    assert config.load(["--snapshot", "/s"], {})[1].snapshot == "/s"
    assert config.load(["--no-snapshot"], {"PYCACHE_D_SNAPSHOT": "/e"})[1].snapshot is False
    assert config.load([], {"PYCACHE_D_SNAPSHOT": "/e"})[1].snapshot == "/e"
    assert config.load([], {})[1].snapshot is None
    toml = tmp_path / "c.toml"
    toml.write_text("snapshot = false\n")
    assert config.load(["--config", str(toml)], {})[1].snapshot is False
    toml.write_text("snapshot = true\n")
    with pytest.raises(config.ConfigError, match=r"snapshot: expected a file name \(or false for none\)"):
        config.load(["--config", str(toml)], {})
    with pytest.raises(config.ConfigError, match="--snapshot: expected a file name"):
        config.load(["--snapshot", ""], {})
