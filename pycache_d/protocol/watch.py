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
  cfd=<fd> size=<value bytes>`` (fetchers): every lookup memcached's ``do_item_get`` logs, in
  every protocol: the fetches of get/gets/gat/gats, mg and the binary gets, and the lookup
  inside a store (set, add, ..., ms and the binary stores), touch, incr/decr, delete, md and ma.
* ``ts=<s>.<us> gid=<n> type=item_store key=<%-encoded> status=<stored|not_stored|exists|
  not_found|too_large|no_memory> cmd=<set|add|replace|append|prepend|cas> ttl=<s left>
  clsid=<class> cfd=<fd> size=<value bytes>`` (mutations: classic, meta and binary stores; a
  stored append shows the whole new value, as memcached's new item)
* ``ts=<s>.<us> gid=<n> type=eviction key=<%-encoded> fetch=<yes|no> ttl=<s left|-1>
  la=<s since last access> clsid=<class> size=<value bytes>`` (evictions: the store keeps a
  bounded log of what it evicted while someone watches; sessions drain it)
* ``ts=<s>.<us> gid=<n> type=conn_new rip=<ip|unix> rport=<port> transport=<tcp|local>
  cfd=<fd>`` and ``type=conn_close ... reason=<normal|error|idle_timeout|shutdown> cfd=<fd>``
  (connevents, from the server's connections)

``sysevents`` is accepted and reports nothing (memcached's are its LRU crawler's and slab
mover's runs, which have no counterpart here); ``rawcmds`` reports nothing in memcached 1.6.18
either.
"""

from __future__ import annotations

import time
from typing import Any

from ..store.errors import StoreError
from ..store.semantics import absolute_expiry, chunk_size, report_class
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

    def __init__(self, ctx: Any, kinds: int, store: Any = None) -> None:
        self.ctx = ctx
        self.kinds = kinds
        self.store = store
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

    def skip(self, n: int) -> None:
        """Count ``n`` lines lost before they reached this watcher (told as ``skipped=``)."""
        if n:
            self._skipped += n
            self.ctx.counters["log_watcher_skipped"] += n

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
            _log_evictions(self.ctx, self.store)


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
    watcher = Watcher(ctx, kinds or FETCHERS, session.store)
    ctx.watchers.append(watcher)
    ctx.set_observed()
    _log_evictions(ctx, session.store)
    ctx.attach_watcher(session, watcher)
    return wire.OK, watcher


def _log_evictions(ctx: Any, store: Any) -> None:
    """Have the store log its evictions exactly while someone watches them."""
    on = wants(ctx, EVICTIONS)
    if store is not None and store.eviction_log != on:
        store.eviction_log = on


def _head() -> bytes:
    global _gid
    _gid += 1
    now = time.time()
    whole = int(now)
    # NOTE: memcached prints the microseconds with %d: not zero-padded.
    return b"ts=%d.%d gid=%d " % (whole, int((now - whole) * 1_000_000), _gid)


def wants(ctx: Any, kind: int) -> bool:
    """True if some watcher of ``ctx`` takes lines of ``kind``."""
    for w in ctx.watchers:
        if w.kinds & kind:
            return True
    return False


def _push(ctx: Any, kind: int, line: bytes) -> None:
    for w in ctx.watchers:
        if w.kinds & kind:
            w.push(line)


def item_get(ctx: Any, key: bytes, found: tuple[bytes, int, int] | None, cfd: int) -> None:
    """Report a fetch to the watchers of fetchers (``found``: the item's value and flags first)."""
    if not wants(ctx, FETCHERS):
        return
    if found is None:
        status, cls, size = b"not_found", 0, 0
    else:
        size = len(found[0])
        status, cls = b"found", report_class(chunk_size(len(key), size, found[1]))
    _push(
        ctx,
        FETCHERS,
        _head()
        + b"type=item_get key=%s status=%s clsid=%d cfd=%d size=%d\n"
        % (uriencode(key), status, cls, cfd, size),
    )


def lookup(ctx: Any, store: Any, key: bytes, cfd: int) -> None:
    """Report the lookup memcached logs inside a store, touch, delta or delete command (its
    ``do_item_get`` with DONT_UPDATE): the item as it is before the command, seen without a
    fetch (nothing counted, marked or moved)."""
    if not wants(ctx, FETCHERS):
        return
    try:
        got = store.peek(key)
    except StoreError:  # a key the store refuses: the command answers its own error
        return
    item_get(ctx, key, got, cfd)


_STORE_STATUS = {
    "STORED": b"stored",
    "NOT_STORED": b"not_stored",
    "EXISTS": b"exists",
    "NOT_FOUND": b"not_found",
}

#: The ``cmd=`` words, by store mode (semantics.MODE_*, the order memcached's cmd_map has).
CMD_NAMES = (b"set", b"add", b"replace", b"append", b"prepend", b"cas")


def item_store(
    ctx: Any, store: Any, key: bytes, mode: int, result: Any, exptime: int, flags: int, nbytes: int, cfd: int
) -> None:
    """Report a storage command's outcome to the watchers of mutations.

    ``exptime`` is the command's (protocol) expiration time and ``nbytes`` its value's length;
    once stored, the line shows the item as stored (an append's whole value, a kept TTL), as
    memcached logs its new item.
    """
    if not wants(ctx, MUTATIONS):
        return
    status = store_status(result)
    now = store.now
    expires = absolute_expiry(exptime, now, store.wall_skew)
    if status == b"stored":
        try:
            got = store.peek(key)
        except StoreError:
            got = None
        if got is not None:
            nbytes, flags, expires = len(got[0]), got[1], got[3]
    ttl = max(expires - now, 0) if expires else 0
    _push(
        ctx,
        MUTATIONS,
        _head()
        + b"type=item_store key=%s status=%s cmd=%s ttl=%d clsid=%d cfd=%d size=%d\n"
        % (
            uriencode(key),
            status,
            CMD_NAMES[mode],
            ttl,
            report_class(chunk_size(len(key), nbytes, flags)),
            cfd,
            nbytes,
        ),
    )


def evictions(ctx: Any, store: Any) -> None:
    """Report what the store evicted since the last call (its log holds at most
    EVICTION_LOG entries; what it dropped shows as ``skipped=``)."""
    taken = store.take_evictions()
    if taken is None:
        return
    events, dropped = taken
    for w in ctx.watchers:
        if w.kinds & EVICTIONS:
            w.skip(dropped)
    for key, nbytes, flags, ttl, idle, fetched in events:
        _push(
            ctx,
            EVICTIONS,
            _head()
            + b"type=eviction key=%s fetch=%s ttl=%d la=%d clsid=%d size=%d\n"
            % (
                uriencode(key),
                b"yes" if fetched else b"no",
                ttl,
                idle,
                report_class(chunk_size(len(key), nbytes, flags)),
                nbytes,
            ),
        )


_TRANSPORTS = (b"local", b"tcp")
#: The close reasons of conn_close, as memcached's reason_map names them.
REASON_ERROR, REASON_NORMAL, REASON_IDLE, REASON_SHUTDOWN = range(4)
_REASONS = (b"error", b"normal", b"idle_timeout", b"shutdown")


def _endpoint(peer: Any) -> tuple[bytes, int, int]:
    """``(rip, rport, transport)`` of a socket's peer name (a unix socket's is a str or bytes)."""
    if isinstance(peer, tuple) and peer:
        return str(peer[0]).encode("ascii", "replace"), int(peer[1]), 1
    return b"unix", 0, 0


def conn_new(ctx: Any, peer: Any, cfd: int) -> None:
    """Report an accepted connection to the watchers of connevents."""
    _conn_event(ctx, b"conn_new", peer, b"", cfd)


def conn_close(ctx: Any, peer: Any, reason: int, cfd: int) -> None:
    """Report a closed connection (``reason``: REASON_*) to the watchers of connevents."""
    _conn_event(ctx, b"conn_close", peer, b" reason=" + _REASONS[reason], cfd)


def _conn_event(ctx: Any, kind: bytes, peer: Any, reason: bytes, cfd: int) -> None:
    if not wants(ctx, CONNEVENTS):
        return
    rip, rport, transport = _endpoint(peer)
    _push(
        ctx,
        CONNEVENTS,
        _head()
        + b"type=%s rip=%s rport=%d transport=%s%s cfd=%d\n"
        % (kind, rip, rport, _TRANSPORTS[transport], reason, cfd),
    )


def store_status(result: Any) -> bytes:
    """The watch word for a store Result or StoreError."""
    name = getattr(result, "name", None)
    if name in _STORE_STATUS:
        return _STORE_STATUS[name]
    return b"no_memory" if type(result).__name__ == "OutOfMemory" else b"too_large"
