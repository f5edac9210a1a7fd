"""Warm restart's life cycle: load the snapshot, see that it can never load twice, save it again.

A snapshot is the state of the cache at one moment, so it is valid only while nothing has been
written since. The daemon therefore consumes the snapshot when it loads it, before it serves
anyone, and only a clean stop writes one with items again (the file format is
:mod:`pycache_d.daemon.snapshot`'s)::

    start (before listening)           serving                          clean stop
    ---------------------------------  -------------------------------  ----------------------
    remove the PATH.tmp a killed save  the CAS counter stays below H:   save every item and the
      left (never a live writer's)     once it comes within             CAS counter to PATH
    load PATH                          CAS_RESERVE / 2 of H, H moves    (tmp, fsync, rename)
    write the consumed file over PATH  on and the consumed file is
      (no items, CAS high-water H;     rewritten
      tmp, fsync, rename, fsync dir)

An unclean exit (kill -9, OOM kill, watchdog, stop timeout, a save that failed) leaves the
consumed file, so the next start is empty, as memcached's always is: no overwritten, deleted or
flushed item can come back. A daemon that cannot listen saves what it consumed back to PATH
(what it holds then is the current state; it may have served writes on the listeners it did
open). A snapshot that can be neither replaced, removed nor emptied would load again later, so
then the daemon refuses to start.

CAS values never repeat across restarts: a client may still hold one from before and must not
see it match a different item. The counter starts at the larger of

* the counter in the file: after a clean stop the last CAS handed out; after an unclean exit H,
  which is above every CAS the dead daemon handed out, because H reaches the disk (fsynced)
  before the counter may come near it. (PostgreSQL logs its sequences ahead the same way: a
  crash skips values and never repeats one.)
* the wall clock in microseconds. It covers what the file cannot: no snapshot file at all
  (``--no-snapshot``, no state directory), a wiped or unwritable state directory, a file of
  another version. It holds as long as the previous run handed out less than one CAS per
  microsecond on average (a tenth of that is more than we can write) and the wall clock did not
  go back across the restart, which is why it is not the only rule.

Each rule alone fails somewhere (the file can be gone, the wall clock can step back); they fail
only together. CAS values stay below 2**53, which clients that keep numbers as doubles need,
for centuries: the Unix time in microseconds is 1.7e15.

Large snapshots take time, and the unit's TimeoutStartSec=/TimeoutStopSec= do not wait: while
loading and saving make progress, systemd hears ``EXTEND_TIMEOUT_USEC=`` and a ``STATUS=`` with a
percentage (at most every :data:`NOTIFY_INTERVAL`), and the log says where it is every
:data:`LOG_INTERVAL`.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import time
from collections.abc import Callable
from typing import Any

from ..log import log, notice
from . import snapshot
from .snapshot import LoadResult, SnapshotError
from .systemd import Notifier

__all__ = ["CAS_RESERVE", "WarmStart", "cas_floor"]

#: H is kept this far ahead of the CAS counter: an unclean exit skips at most this many values.
CAS_RESERVE = 1 << 32
#: Seconds between two looks at the counter while serving (it cannot move CAS_RESERVE / 2 meanwhile).
CAS_CHECK_INTERVAL = 1.0

#: While loading or saving, systemd hears of the progress at most this often (seconds)...
NOTIFY_INTERVAL = 1.0
#: ...each time granting this many seconds until the next message: a load or save that makes
#: no progress for that long (beyond the unit's own timeout) is killed.
EXTEND_TIMEOUT = 30.0
#: The fsync that ends a save is granted EXTEND_TIMEOUT plus its size at this rate (bytes/s).
SYNC_RATE = 20 * 1024 * 1024
#: The log shows the progress of a load or save at most this often (seconds).
LOG_INTERVAL = 5.0


def _size(n: int) -> str:
    """A size for people: ``812 B``, ``64.0 KiB``, ``1.4 GiB``."""
    for unit, name in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if n >= unit:
            return f"{n / unit:.1f} {name}"
    return f"{n} B"


def cas_floor() -> int:
    """Return the lowest CAS counter a start may use by the wall clock: the Unix time in µs."""
    return time.time_ns() // 1000


class WarmStart:
    """The snapshot of one daemon, from its start to its stop (see the module's picture).

    Args:
        store: the daemon's store, empty.
        path: the snapshot file, or None (no snapshot: only the CAS floor applies).
        notifier: where progress goes under systemd.
        clock: seconds, for pacing the progress reports.
    """

    def __init__(
        self, store: Any, path: str | None, notifier: Notifier, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.store = store
        self.path = path
        self.progress = Reporter(notifier, clock)
        #: The CAS high-water mark on disk (None: none written).
        self.high: int | None = None
        self._loaded = False  # a clean snapshot was loaded (so put_back has something to give)
        self._failing = False  # the last write of H failed (logged once until one succeeds)

    def begin(self) -> LoadResult | None:
        """Before serving: clean up, load the snapshot, consume it and set the CAS counter.

        Raises:
            SnapshotError: the snapshot (or an unreadable file in its place) can be neither
                replaced, removed nor emptied, so it would load again at a later start.
        """
        result = None
        if self.path is not None:
            for name, size in snapshot.clean_temporaries(self.path):
                notice("removed %s (%s) that a save which did not finish left", name, _size(size))
            result = snapshot.restore(self.store, self.path, self.progress)
            assert result is not None
            self._loaded = result.status == "loaded" and not result.consumed
        self.store.load((), max(self.store.cas_counter, cas_floor()))
        if self.path is not None:
            assert result is not None
            may_hold_items = self._loaded or result.status == "unreadable"
            self._consume(self.path, may_hold_items)
        return result

    def _consume(self, path: str, may_hold_items: bool) -> None:
        high = self.store.cas_counter + CAS_RESERVE
        try:
            snapshot.write_consumed(path, high)
            self.high = high
            return
        except SnapshotError as e:
            problem = str(e)
        if not may_hold_items or not os.path.isfile(path):
            log.warning("%s; CAS values after a crash rely on the wall clock alone", problem)
            return
        # NOTE: a full disk refuses even the small consumed file; removing or emptying the
        # snapshot needs no space and still keeps it from loading again.
        try:
            os.unlink(path)
        except OSError:
            try:
                os.truncate(path, 0)
            except OSError as e:
                raise SnapshotError(
                    f"{problem}; nor can it be removed or emptied ({os.strerror(e.errno or 0).lower()}): "
                    "refusing to start, since a later start would load it again, with items this "
                    "daemon may have overwritten or deleted meanwhile"
                ) from None
        snapshot.fsync_dir(os.path.dirname(path) or ".")
        log.warning(
            "%s; removed the snapshot instead (CAS values after a crash rely on the wall clock)", problem
        )

    async def keep_ahead(self) -> None:
        """While serving: keep the CAS high-water mark on disk ahead of the counter."""
        while True:
            await asyncio.sleep(CAS_CHECK_INTERVAL)
            self.check()

    def check(self) -> None:
        """Move H on (and write it) if the counter has come within CAS_RESERVE / 2 of it."""
        if self.path is None:
            return
        counter = self.store.cas_counter
        if self.high is not None and counter + CAS_RESERVE // 2 <= self.high:
            return
        high = counter + CAS_RESERVE
        try:
            snapshot.write_consumed(self.path, high)
        except SnapshotError as e:
            if not self._failing:
                log.error("%s; CAS values after a crash rely on the wall clock alone", e)
            self._failing = True
            return
        self.high = high
        self._failing = False

    def put_back(self) -> bool:
        """The daemon could not start serving: save the snapshot it consumed (if it loaded one)."""
        if not self._loaded:
            return True
        return snapshot.persist(self.store, self.path, self.progress)

    def end(self) -> bool:
        """Clean stop: save every item and the CAS counter; return False if that failed."""
        return snapshot.persist(self.store, self.path, self.progress)

    async def serve(self, run: Callable[[], Any]) -> Any:
        """Await ``run()`` with :meth:`keep_ahead` beside it; stop that before returning."""
        keeper = asyncio.get_running_loop().create_task(self.keep_ahead())
        try:
            return await run()
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper


class Reporter(snapshot.Progress):
    """Tell systemd (``EXTEND_TIMEOUT_USEC=``, ``STATUS=``) and the log how far a load or save got."""

    def __init__(self, notifier: Notifier, clock: Callable[[], float] = time.monotonic) -> None:
        self.notifier = notifier
        self.clock = clock
        self._action = ""
        self._notified = self._logged = -math.inf

    def begin(self, action: str, path: str, size: int, items: int) -> None:
        if action == "loading":
            notice("loading snapshot %s: %s, %d items", path, _size(size), items)
        else:
            notice("saving %d items to %s", items, path)
        self._action = ""
        self._logged = self.clock()  # the progress lines follow LOG_INTERVAL after this one

    def step(self, action: str, done: int, total: int) -> None:
        now = self.clock()
        first = action != self._action or done >= total  # (each phase's first and last step)
        if not first and now - self._notified < NOTIFY_INTERVAL and now - self._logged < LOG_INTERVAL:
            return  # PERF: called every 100,000 records and every MiB checksummed
        self._action = action
        percent = 100 * done // total if total else 100
        if action == "checking":
            text = f"checking snapshot: {percent}% ({_size(done)} of {_size(total)})"
        else:
            text = f"{action} snapshot: {percent}% ({done} of {total} items)"
        if first or now - self._notified >= NOTIFY_INTERVAL:
            self._notified = now
            self.notifier.extend_timeout(EXTEND_TIMEOUT, text)
        if now - self._logged >= LOG_INTERVAL:
            self._logged = now
            notice("%s", text)

    def syncing(self, size: int) -> None:
        self.notifier.extend_timeout(
            EXTEND_TIMEOUT + size / SYNC_RATE, f"saving snapshot: writing {_size(size)} to disk"
        )
