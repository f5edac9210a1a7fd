"""Key dumps: ``lru_crawler metadump all|hash|<ids>`` and ``stats cachedump <id> <limit>``.

memcached walks its LRUs on a crawler thread for these; here a dump is a cursor over the store
(``store.dump_cursor()``, which survives writes between its steps) that the session answers a
slice at a time::

    command ──> Dump ──slice()──> at most SLICE_BYTES of lines, or SLICE_STEPS cursor steps
                 │                 then session.more: the connection lets every other client
                 │                 in (call_soon) and feeds again once the slice went out
                 └─ done ──> END; input that came meanwhile is answered after it

So a dump of millions of keys costs other clients at most one slice of waiting at a time,
and the slice waits for its client to read it (backpressure) like any reply.

Lines, as memcached 1.6.18 writes them:

* metadump: ``key=<%-encoded> exp=<unix time or -1> la=<unix time> cas=<n> fetch=<yes|no>
  cls=<class> size=<bytes>`` ended by ``\\n`` alone; ``END\\r\\n`` after the last.
* cachedump: ``ITEM <key> [<value bytes> b; <unix time or 0> s]\\r\\n`` for the items of one
  size class, at most ``limit`` of them (0: all) and at most 2 MiB of lines, then ``END``;
  items stored under a base64 key are skipped, as memcached does.

Invariants: at most one metadump runs per server (``ctx.dumps``; memcached answers ``BUSY``
to a second); a dump's session ends it when it completes or its connection closes
(:meth:`Dump.close`), so the count never leaks.
"""

from __future__ import annotations

from typing import Any

from ..store.semantics import BINARY_KEY, FETCHED, SLAB_SIZES
from . import wire
from .wire import parse_u32

#: A slice ends once it holds this many bytes of lines...
SLICE_BYTES = 64 * 1024
#: ...or after this many cursor steps of STEP_ITEMS entries (a sparse or filtered walk).
SLICE_STEPS = 4
STEP_ITEMS = 1024
#: memcached's bound on a cachedump reply (item_cachedump's memlimit).
CACHEDUMP_MAX = 2 * 1024 * 1024

#: Class ids memcached accepts (MAX_NUMBER_OF_SLAB_CLASSES is 64; 0 is no class).
_MAX_CLASS = 63

# memcached's uriencode(): letters, digits and -._~ stay, every other byte is %XX.
_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_ENCODED = [bytes((b,)) if b in _SAFE else b"%%%02X" % b for b in range(256)]


def uriencode(key: bytes) -> bytes:
    """%-encode a key as memcached's metadump and watch lines do."""
    if all(b in _SAFE for b in key):
        return key
    return b"".join(_ENCODED[b] for b in key)


def _plain(key: bytes) -> bytes:
    """A key as cachedump shows it: as is, but APPSEC: a control byte (a key may hold \\r or
    \\t) is %-escaped so that it cannot split the reply line (memcached writes it raw)."""
    if all(0x20 < b < 0x7F for b in key):
        return key
    return b"".join(bytes((b,)) if 0x20 < b < 0x7F and b != 0x25 else b"%%%02X" % b for b in key)


class Dump:
    """One dump in progress on a session: call :meth:`slice` until it says it is done.

    Args:
        store: the store to walk.
        ctx: the server context (its crawler counters).
        classes: the size classes to list, None for all.
        metadump: metadump lines (and counted as a crawl) or cachedump lines.
        limit: cachedump's most items (0: no limit).
    """

    def __init__(self, store: Any, ctx: Any, classes: frozenset[int] | None, metadump: bool, limit: int = 0):
        self._store = store
        self._ctx = ctx
        self._cursor = store.dump_cursor()
        self._classes = classes
        self._metadump = metadump
        self._limit = limit
        self._shown = 0
        self._bytes = 0
        self._open = True
        if metadump:
            ctx.dumps += 1
            ctx.counters["lru_crawler_starts"] += 1

    def close(self) -> None:
        """End the dump (done, or its connection closed)."""
        if self._open:
            self._open = False
            self._cursor = None
            if self._metadump:
                self._ctx.dumps -= 1

    def slice(self) -> tuple[bytes, bool]:
        """Return the next lines of the dump, and True once they end with END."""
        if not self._open:
            return b"", True
        out: list[bytes] = []
        size = 0
        skew = self._store.wall_skew
        classes = self._classes
        meta = self._metadump
        checked = 0
        done = False
        for _ in range(SLICE_STEPS):
            entries = self._cursor.next(STEP_ITEMS)
            if entries is None:  # nothing to give yet, the walk goes on
                continue
            if not entries:
                done = True
                break
            checked += len(entries)
            for key, exptime, atime, cas, bits, chunk, nbytes, cls in entries:
                if classes is not None and cls not in classes:
                    continue
                if meta:
                    line = b"key=%s exp=%d la=%d cas=%d fetch=%s cls=%d size=%d\n" % (
                        uriencode(key),
                        exptime + skew if exptime else -1,
                        atime + skew,
                        cas,
                        b"yes" if bits & FETCHED else b"no",
                        cls,
                        chunk,
                    )
                else:
                    if bits & BINARY_KEY:
                        continue
                    line = b"ITEM %s [%d b; %d s]\r\n" % (
                        _plain(key),
                        nbytes,
                        exptime + skew if exptime else 0,
                    )
                    if self._bytes + len(line) + 5 > CACHEDUMP_MAX:
                        done = True
                        break
                    self._bytes += len(line)
                    self._shown += 1
                out.append(line)
                size += len(line)
                if not meta and self._limit and self._shown >= self._limit:
                    done = True
                    break
            if done or size >= SLICE_BYTES:
                break
        self._ctx.counters["crawler_items_checked"] += checked
        if done:
            out.append(wire.END)
            self.close()
        return b"".join(out), done


def _class_list(arg: bytes) -> frozenset[int] | None | bool:
    """Parse metadump's and crawl's ``all``, ``hash`` or comma-separated class ids: the ids,
    None for every class, or False for a bad id (memcached: BADCLASS)."""
    if arg in (b"all", b"hash"):
        return None
    ids = set()
    for part in arg.split(b","):
        if not part:
            continue  # strtok skips empty fields
        n = parse_u32(part)
        if n is None or not 1 <= n <= _MAX_CLASS:
            return False
        ids.add(n)
    return frozenset(ids)


def metadump(session: Any, toks: list[bytes]) -> bytes:
    """Start ``lru_crawler metadump <arg>`` on ``session`` (4 tokens checked by the caller)."""
    ctx = session.ctx
    if ctx.tunables["lru_crawler"] != "yes":
        return wire.CRAWLER_DISABLED
    if not ctx.dump_enabled:
        return wire.METADUMP_NOT_ALLOWED
    classes = _class_list(toks[2])
    if classes is False:
        return wire.BADCLASS
    if ctx.dumps:
        return wire.CRAWLER_BUSY
    return session.start_dump(Dump(session.store, ctx, classes, True))  # type: ignore[arg-type]


def cachedump(session: Any, toks: list[bytes]) -> bytes:
    """Start ``stats cachedump <class> <limit>`` on ``session``."""
    ctx = session.ctx
    if not ctx.dump_enabled:
        return wire.CACHEDUMP_NOT_ALLOWED
    if len(toks) < 4:
        return wire.BAD_COMMAND_LINE
    cls = parse_u32(toks[2])
    limit = parse_u32(toks[3])
    if cls is None or limit is None:
        return wire.BAD_FORMAT
    if cls > _MAX_CLASS:
        return wire.ILLEGAL_SLAB
    if not 1 <= cls <= len(SLAB_SIZES):
        return wire.END  # a class that holds nothing here
    return session.start_dump(Dump(session.store, ctx, frozenset((cls,)), False, limit))
