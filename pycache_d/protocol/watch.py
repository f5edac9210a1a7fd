"""``watch [fetchers|mutations|evictions|connevents|...]``: a live feed of events, as memcached's
logger.c writes it.

::

    sessions ──event──> Watcher.lines (bounded: WATCHER_BUFFER bytes) ──wake()──> its connection
                        full: the line is dropped and counted; the next one that fits is
                        preceded by ``skipped=<n>``, as memcached's logger does

A watching connection reads nothing more (memcached stops reading it too); its session answers
``feed(b"")`` with the lines waiting, so a sans-IO caller pulls them and the daemon's connection
is woken (``wake``) to do the same when it can write. Lines, in memcached 1.6.18's format:

* ``ts=<s>.<us> gid=<n> type=item_get key=<%-encoded> status=<found|not_found> clsid=<class>
  cfd=<fd> size=<value bytes>`` (fetchers: get, gets, gat, gats)
* ``ts=<s>.<us> gid=<n> type=item_store key=<%-encoded> status=<stored|not_stored|exists|
  not_found|too_large|no_memory> cmd=<set|add|...> ttl=<s> clsid=<class> cfd=<fd>
  size=<value bytes>`` (mutations: the classic storage commands)

``evictions``, ``connevents``, ``sysevents`` and ``rawcmds`` are accepted; no event of theirs
is reported here (the store evicts in C without telling anyone, see the README).
"""

from __future__ import annotations

import time
from typing import Any

from ..store.semantics import chunk_size, report_class
from . import wire
from .context import WATCHER_BUFFER
from .dump import uriencode

#: memcached's WATCHER_LIMIT.
MAX_WATCHERS = 20

FETCHERS = 1
MUTATIONS = 2
EVICTIONS = 4
CONNEVENTS = 8
SYSEVENTS = 16
RAWCMDS = 32
PROXY = 64
_KINDS = {
    b"fetchers": FETCHERS,
    b"mutations": MUTATIONS,
    b"evictions": EVICTIONS,
    b"connevents": CONNEVENTS,
    b"sysevents": SYSEVENTS,
    b"rawcmds": RAWCMDS,
    b"proxyreqs": PROXY,
    b"proxyevents": PROXY,
    b"proxyuser": PROXY,
}

_gid = 0


class Watcher:
    """One watching connection's buffer of lines."""

    def __init__(self, ctx: Any, kinds: int) -> None:
        self.ctx = ctx
        self.kinds = kinds
        self._lines: list[bytes] = []
        self._size = 0
        self._skipped = 0
        #: Set by the server: called (at most once until the lines are taken) when lines wait.
        self.wake: Any = None
        self._woken = False

    def push(self, line: bytes) -> None:
        if self._size + len(line) > WATCHER_BUFFER:
            self._skipped += 1
            self.ctx.counters["log_watcher_skipped"] += 1
            return
        if self._skipped:
            note = b"skipped=%d\n" % self._skipped
            self._lines.append(note)
            self._size += len(note)
            self._skipped = 0
        self._lines.append(line)
        self._size += len(line)
        self.ctx.counters["log_watcher_sent"] += 1
        if not self._woken and self.wake is not None:
            self._woken = True
            self.wake()

    @property
    def waiting(self) -> bool:
        return bool(self._lines)

    def take(self) -> bytes:
        """The lines waiting, at once (at most WATCHER_BUFFER bytes)."""
        out = b"".join(self._lines)
        self._lines.clear()
        self._size = 0
        self._woken = False
        return out

    def close(self) -> None:
        if self in self.ctx.watchers:
            self.ctx.watchers.remove(self)
            self.ctx.set_observed()


def command(session: Any, toks: list[bytes]) -> tuple[bytes, Watcher | None]:
    """Answer ``watch ...``: the reply, and the watcher the session becomes (or None)."""
    kinds = 0
    for word in toks[1:]:
        kind = _KINDS.get(word)
        if kind is None:
            return wire.ERROR, None
        kinds |= kind
    ctx = session.ctx
    if len(ctx.watchers) >= MAX_WATCHERS:
        return wire.WATCHER_TOO_MANY, None
    watcher = Watcher(ctx, kinds or FETCHERS)
    ctx.watchers.append(watcher)
    ctx.set_observed()
    ctx.attach_watcher(session, watcher)
    return wire.OK, watcher


def _head() -> bytes:
    global _gid
    _gid += 1
    now = time.time()
    whole = int(now)
    # NOTE: memcached prints the microseconds with %d: not zero-padded.
    return b"ts=%d.%d gid=%d " % (whole, int((now - whole) * 1_000_000), _gid)


def item_get(ctx: Any, key: bytes, found: tuple[bytes, int, int] | None, cfd: int) -> None:
    """Report a fetch to the watchers of fetchers (``found``: the item's value, flags, cas)."""
    line = None
    for w in ctx.watchers:
        if w.kinds & FETCHERS:
            if line is None:
                if found is None:
                    status, cls, size = b"not_found", 0, 0
                else:
                    size = len(found[0])
                    status, cls = b"found", report_class(chunk_size(len(key), size, found[1]))
                line = _head() + b"type=item_get key=%s status=%s clsid=%d cfd=%d size=%d\n" % (
                    uriencode(key),
                    status,
                    cls,
                    cfd,
                    size,
                )
            w.push(line)


_STORE_STATUS = {
    "STORED": b"stored",
    "NOT_STORED": b"not_stored",
    "EXISTS": b"exists",
    "NOT_FOUND": b"not_found",
}


def item_store(
    ctx: Any, key: bytes, cmd: bytes, status: bytes, exptime: int, flags: int, nbytes: int, cfd: int
) -> None:
    """Report a storage command's outcome to the watchers of mutations."""
    line = None
    for w in ctx.watchers:
        if w.kinds & MUTATIONS:
            if line is None:
                cls = report_class(chunk_size(len(key), nbytes, flags)) if status == b"stored" else 0
                line = (
                    _head()
                    + b"type=item_store key=%s status=%s cmd=%s ttl=%d clsid=%d cfd=%d size=%d\n"
                    % (
                        uriencode(key),
                        status,
                        cmd,
                        max(exptime, 0),
                        cls,
                        cfd,
                        nbytes,
                    )
                )
            w.push(line)


def store_status(result: Any) -> bytes:
    """The watch word for a store Result or StoreError."""
    name = getattr(result, "name", None)
    if name in _STORE_STATUS:
        return _STORE_STATUS[name]
    return b"no_memory" if type(result).__name__ == "OutOfMemory" else b"too_large"
