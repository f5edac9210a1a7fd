"""Warm restart: write every live item to a snapshot file, and load it back.

File format, version 2 (all integers little endian)::

    offset 0  +-------------------------------------------------------------------+
              | header (24 B)  magic "PYCDSNAP" (8) | version u32 | flags u32         |
              |                | saved_at u64 (Unix seconds, informational)        |
              +-------------------------------------------------------------------+
              | record         klen u16 | vlen u32 | flags u32 | exptime u32 |      |
              |  (27 B + key   cas u64 | atime u32 | bits u8 |                      |
              |   + value)     key (klen B) | value (vlen B)                        |
              |                ... one per live item, LRU tail (oldest) first ...   |
              +-------------------------------------------------------------------+
              | end record     27 zero bytes (klen 0 marks it: keys are never empty)|
              +-------------------------------------------------------------------+
              | trailer (20 B) count u64 (records) | cas_counter u64 | crc32 u32     |
    size      +-------------------------------------------------------------------+

Invariants: ``crc32`` (zlib) covers every byte before it; the end record sits exactly at
``size - 20 - 27``; there are ``count`` records. ``exptime`` is a Unix time on the wall clock of
the save (0 = never), so items that expired while the daemon was down are skipped on load.
``atime`` (the item's last access) is a Unix time on the same clock, and ``bits`` its state
(``pycache_d/store/semantics.py``: fetched, win token sent, stale, binary key), so the meta
commands see an item after a restart as they saw it before.

Version 1, written before the item state was kept, is still loaded: its records are the first
22 bytes of version 2's (no atime, no bits; its end record is 22 bytes), and its items come
back accessed at the load, with no state bits.

``flags`` bit 0 (:data:`FLAG_CONSUMED`) marks the file a start writes over the snapshot it has
just loaded (:func:`write_consumed`): no records, and ``cas_counter`` is a high-water mark above
every CAS the daemon may hand out. Only a clean stop writes a file with items again, so a file
with items is always the state of a cache at its last moment (see
:mod:`pycache_d.daemon.warmstart`). Readers that predate the flag see an empty snapshot.

Clock steps: the store keeps expiry times on its own clock, the wall clock at start plus
monotonic time (see :mod:`pycache_d.store.clock`). If the wall clock was stepped while the daemon ran,
the two differ by the step, and saving adds the difference to every expiry time: each item keeps
its remaining time across the restart instead of losing (or gaining) the step. A clock that is
wrong at the *next* start (stepped while the daemon was down) shifts every expiry by that error;
nothing in the file can tell, so it is not corrected.

Writing is atomic: the records go to ``PATH.tmp`` in the same directory, which is fsynced,
renamed over ``PATH``, and the directory fsynced. A crash, ``kill -9`` or full disk at any point
leaves the previous file as it was. The writer holds an exclusive ``flock`` on ``PATH.tmp``
while it writes, so :func:`clean_temporaries` (at start) removes the one a killed writer left
and never the one a live daemon on the same path is writing.

Faults are logged in one line each: at start, a snapshot that cannot be read (moved aside like
a corrupt one; the daemon starts empty) and a directory where no snapshot could be written
(found by creating and removing a probe file, so the operator learns of a read-only or missing
directory before the shutdown that would need it); at shutdown, a save that fails (read-only,
full disk), which removes its temporary file and leaves the file at ``PATH`` as it was (under
the daemon, the consumed one: the next start is empty). The one fault that stops a start, a
loaded snapshot that cannot be consumed, is :mod:`pycache_d.daemon.warmstart`'s.

Loading reads the file twice: first to check the magic, version and checksum (nothing is
inserted yet), then to insert. Memory stays bounded by one read chunk (or one large value),
whatever the item count. A file that fails any check is renamed to
``PATH.corrupt-YYYYmmddTHHMMSS`` and the daemon starts empty.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import stat
import struct
import tempfile
import time
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

from ..log import log, notice
from ..store import clock
from ..store.errors import StoreError
from .config import describe_size

MAGIC = b"PYCDSNAP"
VERSION = 2
#: Header flag: the file stands for a snapshot that was consumed at load (no items).
FLAG_CONSUMED = 1

_HEADER = struct.Struct("<8sIIQ")
_RECORD = struct.Struct("<HIIIQIB")
#: Version 1's record: version 2's without atime and bits.
_RECORD_V1 = struct.Struct("<HIIIQ")
_TRAILER = struct.Struct("<QQI")
HEADER_SIZE = _HEADER.size
RECORD_SIZE = _RECORD.size
RECORD_SIZE_V1 = _RECORD_V1.size
TRAILER_SIZE = _TRAILER.size
_END_RECORD = bytes(RECORD_SIZE)
#: The record layout of each version this code loads.
_RECORDS = {1: _RECORD_V1, 2: _RECORD}
#: The smallest well-formed file: a header, the end record and the trailer.
MIN_SIZE = HEADER_SIZE + RECORD_SIZE + TRAILER_SIZE

#: PERF: records are packed into a buffer and written (and checksummed) this much at a time.
CHUNK = 1 << 20

#: File name of the snapshot under ``$STATE_DIRECTORY`` (systemd's ``StateDirectory=``).
DEFAULT_NAME = "pycache-d.snapshot"


class SnapshotError(Exception):
    """Raised by :func:`save` when the snapshot cannot be written; the old file is untouched."""


class Progress:
    """What a long load or save tells as it goes; this one tells nothing (the daemon's tells
    systemd and the log, see :mod:`pycache_d.daemon.warmstart`)."""

    def begin(self, action: str, path: str, size: int, items: int) -> None:
        """A load (``loading``: the file's bytes and records) or save (``saving``: items) starts."""

    def step(self, action: str, done: int, total: int) -> None:
        """``checking`` (bytes checksummed), ``loading`` or ``saving`` (records) got to ``done``."""

    def syncing(self, size: int) -> None:
        """A save is about to fsync ``size`` bytes (no steps until it returns)."""


_QUIET = Progress()


class _Corrupt(Exception):
    """The file is not a sound snapshot; the message says why (for the log)."""


@dataclass(frozen=True)
class SaveResult:
    """What :func:`save` wrote."""

    items: int
    bytes: int
    seconds: float
    skew: int = 0  # seconds added to expiry times: the wall clock's step while the daemon ran


@dataclass(frozen=True)
class LoadResult:
    """What :func:`load` found.

    ``status`` is ``loaded``, ``missing`` (no file: a first start), ``corrupt`` (moved aside to
    ``moved_to``, or left in place if even that failed) or ``unreadable`` (an I/O error, file
    left in place; :func:`restore` moves it aside). Only ``loaded`` puts items in the store;
    ``consumed`` says the file was a consumed one (see :func:`write_consumed`).
    """

    status: str
    loaded: int = 0  # items in the store afterwards
    skipped: int = 0  # expired since the save, or larger than the store now accepts
    evicted: int = 0  # pushed out (oldest first) by a smaller memory or item limit than before
    seconds: float = 0.0
    reason: str = ""
    moved_to: str | None = None
    consumed: bool = False  # the file was written at a start (FLAG_CONSUMED): no clean stop since


def default_path(setting: str | bool | None, environ: Mapping[str, str]) -> str | None:
    """Return the snapshot file for a ``snapshot`` setting, or None for no snapshot.

    A path is used as given; False (``--no-snapshot``) disables it; None (not configured) means
    ``$STATE_DIRECTORY/pycache-d.snapshot`` under systemd, else no snapshot.
    """
    if isinstance(setting, str):
        return setting
    if setting is False:
        return None
    state = environ.get("STATE_DIRECTORY", "")
    # NOTE: systemd passes a colon-separated list when several StateDirectory= are set.
    first = state.split(":")[0]
    return os.path.join(first, DEFAULT_NAME) if first else None


# -- saving ----------------------------------------------------------------------------------------


def save(store: Any, path: str, skew: int | None = None, progress: Progress = _QUIET) -> SaveResult:
    """Write every live item of ``store`` and its CAS counter to ``path``, atomically.

    Args:
        skew: seconds to add to expiry times to put them on the wall clock; by default
            :func:`pycache_d.store.clock.wall_skew` (the stores run on the process's clock).
        progress: told how far the save has got.

    Raises:
        SnapshotError: the file could not be written (full disk, permissions, missing
            directory, another process writing ``PATH.tmp``); the temporary file is removed and
            the file at ``path`` is as it was.
    """
    if skew is None:
        skew = clock.wall_skew()
    progress.begin("saving", path, 0, len(store))
    return _save(store, path, skew, 0, progress)


def write_consumed(path: str, cas_counter: int) -> SaveResult:
    """Replace the file at ``path``, atomically, with one that holds no items (FLAG_CONSUMED)
    and ``cas_counter`` as the CAS high-water mark.

    Raises:
        SnapshotError: as :func:`save`.
    """
    return _save(_NoItems(cas_counter), path, 0, FLAG_CONSUMED, _QUIET)


class _NoItems:
    """A store with no items and a given CAS counter (what :func:`write_consumed` writes)."""

    def __init__(self, cas_counter: int) -> None:
        self.cas_counter = cas_counter

    def __len__(self) -> int:
        return 0

    def records(self) -> Iterator[tuple[Any, ...]]:
        return iter(())


def _save(store: Any, path: str, skew: int, header_flags: int, progress: Progress) -> SaveResult:
    start = time.perf_counter()
    tmp = path + ".tmp"
    fd = _open_locked(tmp)
    try:
        count, size = _write_records(fd, store, skew, header_flags, progress)
        progress.syncing(size)
        os.fsync(fd)  # the data must be on disk before the rename makes it the snapshot
    except BaseException as e:
        _unlink_quietly(tmp)  # (still locked: nobody else's by now)
        os.close(fd)
        if isinstance(e, OSError):
            raise SnapshotError(f"cannot write snapshot {tmp}: {_reason(e)}") from None
        raise
    try:
        os.rename(tmp, path)
    except OSError as e:
        _unlink_quietly(tmp)
        raise SnapshotError(f"cannot rename {tmp} to {path}: {_reason(e)}") from None
    finally:
        os.close(fd)  # NOTE: only now: the lock keeps clean_temporaries off the file until here
    fsync_dir(os.path.dirname(path) or ".")
    return SaveResult(count, size, time.perf_counter() - start, skew)


def _open_locked(tmp: str) -> int:
    """Open ``tmp`` for writing, empty, under an exclusive flock; return the descriptor.

    Raises:
        SnapshotError: it cannot be opened, or another process holds the lock (it is writing).
    """
    for _ in range(3):
        try:
            # NOTE: 0600: the snapshot holds every cached value. O_NOFOLLOW: never write through
            # a symlink someone planted at the temporary name. No O_TRUNC: the file may be
            # another daemon's, being written; it is emptied once it is ours (locked).
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        except OSError as e:
            raise SnapshotError(f"cannot write snapshot {tmp}: {_reason(e)}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if _is_at(fd, tmp):
                os.ftruncate(fd, 0)
                return fd
            # A start's clean_temporaries removed it between our open and our lock: again.
        except BlockingIOError:
            os.close(fd)
            raise SnapshotError(
                f"cannot write snapshot {tmp}: another process is writing it (two daemons on one snapshot?)"
            ) from None
        except OSError as e:
            os.close(fd)
            raise SnapshotError(f"cannot write snapshot {tmp}: {_reason(e)}") from None
        os.close(fd)
    raise SnapshotError(f"cannot write snapshot {tmp}: it keeps being removed")


def _is_at(fd: int, path: str) -> bool:
    """True if the open file ``fd`` is the one named ``path`` (not removed or replaced since)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


def clean_temporaries(path: str) -> list[tuple[str, int]]:
    """Remove the temporary files a killed writer left beside ``path``; return (name, size) of each.

    Only our names (``PATH.tmp``, ``PATH.probe-*``), and never one a live writer holds locked:
    another daemon on the same path may be saving this very moment.
    """
    directory = os.path.dirname(path) or "."
    base = os.path.basename(path)
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    removed = []
    for name in sorted(names):
        if name != base + ".tmp" and not name.startswith(base + ".probe-"):
            continue
        stale = os.path.join(directory, name)
        try:
            fd = os.open(stale, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            continue  # gone already, or not a file we may read: leave it
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # a live writer has it
            if _is_at(fd, stale):  # still the file we locked (not renamed into place meanwhile)
                size = os.fstat(fd).st_size
                os.unlink(stale)
                removed.append((stale, size))
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed


def _write_records(
    fd: int, store: Any, skew: int, header_flags: int = 0, progress: Progress = _QUIET
) -> tuple[int, int]:
    """Write header, records, end record and trailer to ``fd``; return (records, bytes)."""
    cas_counter = store.cas_counter
    buf = bytearray(_HEADER.pack(MAGIC, VERSION, header_flags, int(time.time())))
    crc = 0
    size = 0
    count = 0
    pack = _RECORD.pack
    items = store.records()
    if skew:
        items = _shifted(items, skew)
    if progress is not _QUIET:
        items = _reporting(items, "saving", len(store), progress)
    for key, value, flags, exptime, cas, atime, bits in items:
        buf += pack(len(key), len(value), flags, exptime, cas, atime, bits)
        buf += key
        buf += value
        count += 1
        if len(buf) >= CHUNK:
            crc = zlib.crc32(buf, crc)
            _write_all(fd, buf)
            size += len(buf)
            buf.clear()
    buf += _END_RECORD
    buf += _TRAILER.pack(count, cas_counter, 0)[:-4]
    crc = zlib.crc32(buf, crc)
    buf += struct.pack("<I", crc)
    _write_all(fd, buf)
    return count, size + len(buf)


def _shifted(
    items: Iterator[tuple[bytes, bytes, int, int, int, int, int]], skew: int
) -> Iterator[tuple[bytes, bytes, int, int, int, int, int]]:
    """Pass ``items`` through with every expiry time (but 0, never) and access time moved by
    ``skew`` seconds."""
    for key, value, flags, exptime, cas, atime, bits in items:
        if exptime:
            # 1 is long past (0 would mean never); a record holds a u32.
            exptime = min(max(exptime + skew, 1), 0xFFFFFFFF)
        yield key, value, flags, exptime, cas, min(max(atime + skew, 1), 0xFFFFFFFF), bits


def _write_all(fd: int, data: bytearray) -> None:
    # os.write may write less than asked (a signal, a nearly full disk): loop until all is out.
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def check_writable(path: str) -> str | None:
    """Return why a snapshot could not be saved at ``path`` now, or None if it could.

    Creates and removes a probe file beside ``path``: a name of its own, never the ``.tmp`` that
    a daemon shutting down may be writing this very moment.
    """
    directory = os.path.dirname(path) or "."
    if os.path.isdir(path):
        return f"{path} is a directory"
    try:
        fd, probe = tempfile.mkstemp(prefix=os.path.basename(path) + ".probe-", dir=directory)
    except OSError as e:
        return f"cannot create files in {directory}: {_reason(e)}"
    os.close(fd)
    _unlink_quietly(probe)
    return None


def free_space(path: str) -> int | None:
    """Return the bytes an unprivileged writer may still use beside ``path`` (None: unknown)."""
    try:
        st = os.statvfs(os.path.dirname(path) or ".")
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def fsync_dir(directory: str) -> None:
    """Make the rename durable. Best effort: some file systems refuse fsync on a directory."""
    try:
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


# -- loading ---------------------------------------------------------------------------------------


#: Loading and saving report their progress every this many records (and the checksum pass
#: every CHUNK): systemd shows it as the unit's status (see warmstart.py).
PROGRESS_EVERY = 100_000


def load(store: Any, path: str, progress: Progress = _QUIET) -> LoadResult:
    """Insert the items of the snapshot at ``path`` into the empty ``store``, LRU order kept.

    Items that expired since the save (and any too large for the store's current limits) are
    skipped. A file that is truncated, corrupt, foreign or of another version is moved aside
    (``PATH.corrupt-<UTC timestamp>``) and nothing is inserted. Never raises for a bad file.
    """
    start = time.perf_counter()
    try:
        f = open(path, "rb", buffering=0)
    except FileNotFoundError:
        return LoadResult("missing")
    except OSError as e:
        return LoadResult("unreadable", reason=_reason(e))
    with f:
        try:
            if progress is not _QUIET:
                progress.begin("loading", path, *_peek(f))
            count, cas_counter, header_flags, version = _verify(f, progress)
        except _Corrupt as e:
            return LoadResult("corrupt", reason=str(e), moved_to=_move_aside(path))
        except OSError as e:
            return LoadResult("unreadable", reason=_reason(e))
        before = len(store)
        try:
            store.reserve(count)  # PERF: size the hash table once instead of growing it 10 times
            f.seek(HEADER_SIZE)
            records = _records(f, count, version)
            if progress is not _QUIET:
                records = _reporting(records, "loading", count, progress)
            kept = store.load(records, cas_counter)
        except OSError as e:  # the disk failed between the two passes
            _empty(store)
            return LoadResult("unreadable", reason=_reason(e))
        except (_Corrupt, ValueError, StoreError) as e:
            # NOTE: only reachable when a file passed its checksum yet is unsound (a writer bug):
            # undo the partial load.
            _empty(store)
            return LoadResult("corrupt", reason=str(e), moved_to=_move_aside(path))
    loaded = len(store) - before
    consumed = bool(header_flags & FLAG_CONSUMED)
    return LoadResult(
        "loaded", loaded, count - kept, kept - loaded, time.perf_counter() - start, consumed=consumed
    )


def _peek(f: BinaryIO) -> tuple[int, int]:
    """Return the file's size and the record count its trailer claims (not checked yet)."""
    size = os.fstat(f.fileno()).st_size
    count = 0
    if size >= MIN_SIZE:
        f.seek(size - TRAILER_SIZE)
        count = _TRAILER.unpack(f.read(TRAILER_SIZE))[0]
        f.seek(0)
    return size, count


def _verify(f: BinaryIO, progress: Progress = _QUIET) -> tuple[int, int, int, int]:
    """Check magic, version, size and checksum; return the trailer's (count, cas_counter), the
    header's flags and the file's version.

    Raises:
        _Corrupt: the file is empty, truncated, foreign, of another version or damaged.
    """
    head = f.read(HEADER_SIZE)
    if not head:
        raise _Corrupt("empty file")
    if not (head[:8] == MAGIC or MAGIC.startswith(head[:8])):
        raise _Corrupt("not a pycache-d snapshot (bad magic)")
    if len(head) < HEADER_SIZE:
        raise _Corrupt("truncated (no complete header)")
    _magic, version, header_flags, _saved_at = _HEADER.unpack(head)
    if version not in _RECORDS:
        raise _Corrupt(f"snapshot format version {version} is not supported (expected {VERSION} or 1)")
    size = os.fstat(f.fileno()).st_size
    if size < HEADER_SIZE + _RECORDS[version].size + TRAILER_SIZE:
        raise _Corrupt(f"truncated ({size} bytes)")
    crc = zlib.crc32(head)
    left = size - HEADER_SIZE - 4
    while left:
        chunk = f.read(min(CHUNK, left))
        if not chunk:
            raise _Corrupt("truncated while reading")
        crc = zlib.crc32(chunk, crc)
        left -= len(chunk)
        progress.step("checking", size - left, size)
    tail = f.read(4)
    if len(tail) != 4:
        raise _Corrupt("truncated while reading")
    f.seek(size - TRAILER_SIZE)
    count, cas_counter, stored_crc = _TRAILER.unpack(f.read(TRAILER_SIZE))
    if stored_crc != crc:
        raise _Corrupt(
            f"checksum mismatch (truncated or damaged): crc32 {crc:08x}, expected {stored_crc:08x}"
        )
    return count, cas_counter, header_flags, version


def _reporting(
    records: Iterator[tuple[Any, ...]], action: str, total: int, progress: Progress
) -> Iterator[tuple[Any, ...]]:
    """Pass ``records`` through, telling ``progress`` at the start, every so often and at the end."""
    progress.step(action, 0, total)
    done = 0
    for done, record in enumerate(records, 1):
        yield record
        if done % PROGRESS_EVERY == 0:
            progress.step(action, done, total)
    progress.step(action, done, done)  # (a save's total counted dead items too)


def _records(f: BinaryIO, count: int, version: int = VERSION) -> Iterator[tuple[Any, ...]]:
    """Yield the ``count`` records that follow the header, then check the end record.

    A record is ``(key, value, flags, exptime, cas, atime, bits)`` as the store's ``load``
    takes it; a version 1 record has no atime and bits (a 5-tuple: accessed at the load).

    Raises:
        _Corrupt: the records do not end where the trailer starts.
    """
    layout = _RECORDS[version]
    unpack = layout.unpack_from
    record_size = layout.size
    v1 = version == 1
    buf = b""
    pos = 0
    seen = 0
    while True:
        end = len(buf)
        need = CHUNK
        # PERF: the hot loop slices records out of one chunk; only a record that straddles a
        # chunk boundary costs a copy (and a value larger than a chunk, one read of its size).
        while pos + record_size <= end:
            if v1:
                klen, vlen, flags, exptime, cas = unpack(buf, pos)
                atime = bits = 0
            else:
                klen, vlen, flags, exptime, cas, atime, bits = unpack(buf, pos)
            if not klen:
                tail = buf[pos + record_size :] + f.read(TRAILER_SIZE + 1)
                if (
                    vlen
                    or flags
                    or exptime
                    or cas
                    or atime
                    or bits
                    or seen != count
                    or len(tail) != TRAILER_SIZE
                ):
                    raise _Corrupt(f"records do not end where the trailer starts ({seen} of {count} read)")
                return
            kstart = pos + record_size
            vstart = kstart + klen
            vend = vstart + vlen
            if vend > end:
                need = max(CHUNK, vend - pos)
                break
            if v1:
                yield buf[kstart:vstart], buf[vstart:vend], flags, exptime, cas
            else:
                yield buf[kstart:vstart], buf[vstart:vend], flags, exptime, cas, atime, bits
            pos = vend
            seen += 1
        chunk = f.read(need)
        if not chunk:
            raise _Corrupt(f"truncated after {seen} of {count} records")
        buf = buf[pos:] + chunk
        pos = 0


def _empty(store: Any) -> None:
    """Drop everything a failed load inserted, so the daemon starts empty."""
    store.flush_all()
    while store.reclaim(100_000):
        pass
    store.reset_stats()


def _move_aside(path: str) -> str | None:
    """Rename a bad snapshot to ``PATH.corrupt-<UTC timestamp>``; return the new name or None."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    target = f"{path}.corrupt-{stamp}"
    n = 1
    while os.path.lexists(target):  # two bad starts within a second: keep both files
        target = f"{path}.corrupt-{stamp}-{n}"
        n += 1
    try:
        os.rename(path, target)
    except OSError as e:
        log.error("cannot move the bad snapshot %s aside: %s", path, _reason(e))
        return None
    return target


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _reason(e: OSError) -> str:
    """The errno's text in lower case ("no space left on device"), as the daemon logs errors."""
    return (os.strerror(e.errno) if e.errno else str(e)).lower()


# -- the daemon's two calls ------------------------------------------------------------------------


def restore(store: Any, path: str | None, progress: Progress = _QUIET) -> LoadResult | None:
    """Load the snapshot at startup and log the outcome (None: snapshots are off).

    A file that cannot be read (but is one) is moved aside like a corrupt one: it must not load
    at a later start, after this daemon has served writes.
    """
    if path is None:
        return None
    result = load(store, path, progress)
    if result.status == "unreadable" and os.path.lexists(path) and not os.path.isdir(path):
        result = dataclasses.replace(result, moved_to=_move_aside(path))
    if result.consumed:
        log.warning(
            "%s holds no snapshot: the last run ended without saving one (killed, crashed, or "
            "its save failed); starting empty",
            path,
        )
    elif result.status == "loaded":
        notice(
            "loaded %d items from %s (skipped %d expired or too large%s) in %.2f s",
            result.loaded,
            path,
            result.skipped,
            f", evicted {result.evicted} for lack of room" if result.evicted else "",
            result.seconds,
        )
    elif result.status == "missing":
        notice("no snapshot at %s yet: starting empty", path)
    elif result.status == "corrupt":
        where = f"moved it to {result.moved_to}" if result.moved_to else "could not move it aside"
        log.error("snapshot %s is unusable (%s); %s; starting empty", path, result.reason, where)
    else:
        where = f"; moved it to {result.moved_to}" if result.moved_to else ""
        log.error("cannot read snapshot %s: %s%s; starting empty", path, result.reason, where)
    _warn_if_unsaveable(store, path)
    return result


def _warn_if_unsaveable(store: Any, path: str) -> None:
    """Say now, not at shutdown, when the snapshot will not be saved (or may not fit)."""
    problem = check_writable(path)
    if problem is not None:
        log.warning(
            "the snapshot cannot be saved to %s: %s; the items will not survive a restart "
            "unless this is fixed before the daemon stops",
            path,
            problem,
        )
        return
    free = free_space(path)
    limit = getattr(store, "max_bytes", 0)
    # A record is its key and value plus 27 bytes; the store charges 48 per item: a full store's
    # snapshot is smaller than the memory limit.
    if free is not None and free < limit:
        log.warning(
            "only %s free beside %s: a full store (memory limit %s) may not fit, and after a "
            "save that does not fit the next start is empty",
            describe_size(free),
            path,
            describe_size(limit),
        )


def persist(store: Any, path: str | None, progress: Progress = _QUIET) -> bool:
    """Save the snapshot at shutdown and log the outcome; return False if it failed."""
    if path is None:
        return True
    try:
        result = save(store, path, progress=progress)
    except SnapshotError as e:
        log.error("%s; the items will not survive the restart (the next start is empty)", e)
        return False
    notice(
        "saved %d items to %s in %.2f s%s",
        result.items,
        path,
        result.seconds,
        f" (expiry times moved {result.skew:+d} s: the wall clock was stepped while the daemon ran)"
        if result.skew
        else "",
    )
    return True
