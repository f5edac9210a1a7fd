"""The pure-Python store backend: an exact LRU cache on ``collections.OrderedDict``.

::

    OrderedDict  key -> record            record = header (21 bytes) + value
      first ............................. last
      LRU tail (evicted first)            MRU head (last read or written)

    header  = cas u64 | flags u32 | exptime u32 | atime u32 | bits u8   (little endian)

    atime   last access on the store's clock (memcached's it->time); bits are the item state of
            semantics.py (FETCHED, WON, STALE, BINARY_KEY), memcached's it_flags.

    _expiry  min-heap of (exptime, cas, key), lazily deleted: an entry is live only while the
             key's record still has that exptime and cas.

Invariants (the native backend keeps the same ones, see ``csrc/store.h``):

* ``bytes`` is the sum of ``charge(key, value)`` over every record in the dict, and after any
  store ``bytes <= room_bytes`` and (if set) ``len(dict) <= room_items``. The room is the
  limit (``max_bytes``, ``max_items``) except while a lowered limit is being reached: setting it
  evicts at most ``SHRINK_SLICE`` items, the room stays at what is then held, and each
  :meth:`reclaim` evicts another slice and lowers the room until it meets the limit (a lower
  ``-m`` on SIGHUP must not stall the daemon for seconds).
* Every record with ``exptime != 0`` has a live heap entry.
* An item is *dead* when it has expired (``0 < exptime <= now``) or was flushed
  (``cas < flush_cas``; in the second a delayed ``flush_all`` takes effect, ``flush_cas`` is
  above every CAS: see ``_settle_flush``). Dead items are never returned; they are freed on
  access, when they reach the LRU tail while making room, or by :meth:`reclaim`.
* Flushed items never move (any access frees them), so they all sit at the LRU tail, behind every
  item written after the flush: freeing them is a walk from the tail.
* A fetch (memcached's ``do_item_bump``) marks an unfetched item FETCHED and leaves its atime;
  a fetch of an item already FETCHED sets its atime. Writing an item sets its atime and clears
  its bits, except what the command carries over (see :meth:`Store.meta_update`).

Keeping the item in one ``bytes`` record (rather than a small object and an int for the CAS) is
what holds the python backend near 300 bytes per small item. PERF: a fetch rebuilds the record
only when it changes something (the first fetch, or the first of a new second), so a hot item
is copied at most once a second.

PERF: one method speaks the text protocol, :meth:`Store.get_values`: the python session's gets
append their ``VALUE`` lines from inside the lookup loop, the way the compiled session writes
them from C for the native store.
"""

from __future__ import annotations

import heapq
import struct
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from . import clock as clockmod
from .errors import InvalidKey, ItemTooLarge, NonNumericValue, OutOfMemory, Result
from .semantics import (
    BINARY_KEY,
    CAS_MAX,
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_ITEM_SIZE,
    EVLOG_SIZE,
    EXPTIME_MAX,
    EXPTIME_MIN,
    FETCHED,
    ITEM_HEADER,
    ITEM_OVERHEAD,
    MAX_KEY_LENGTH,
    MODE_ADD,
    MODE_APPEND,
    MODE_CAS,
    MODE_PREPEND,
    MODE_REPLACE,
    MODE_SET,
    PAGE_SIZE,
    SHRINK_SLICE,
    SLAB_SIZES,
    SMALL_CHUNK_MAX,
    STALE,
    STATE_BITS,
    U32_MAX,
    U64_MAX,
    WON,
    absolute_expiry,
    chunk_size,
    counter_bytes,
    is_valid_key,
    parse_counter,
    report_class,
)

_HEADER = struct.Struct("<QIIIB")
_HSIZE = _HEADER.size
_pack = _HEADER.pack
_unpack = _HEADER.unpack_from
_monotonic = time.monotonic

STORED = Result.STORED
NOT_STORED = Result.NOT_STORED
EXISTS = Result.EXISTS
NOT_FOUND = Result.NOT_FOUND
DELETED = Result.DELETED
TOUCHED = Result.TOUCHED

#: PERF: the end of a get's VALUE line for flags 0 and each small value size (get_values), and
#: the same before a gets' CAS: only the CAS is formatted.
_SUFFIXES = 1024
_SUFFIX = [b" 0 %d\r\n" % size for size in range(_SUFFIXES)]
_CAS_INFIX = [b" 0 %d " % size for size in range(_SUFFIXES)]

#: flush_cas while a delayed flush_all's own second lasts: above every CAS, so every item is dead.
_FLUSH_ALL = U64_MAX

_SET, _ADD, _REPLACE, _APPEND, _PREPEND, _CAS = (
    MODE_SET,
    MODE_ADD,
    MODE_REPLACE,
    MODE_APPEND,
    MODE_PREPEND,
    MODE_CAS,
)

STAT_NAMES = (
    "curr_items",
    "total_items",
    "bytes",
    "limit_maxbytes",
    "limit_maxitems",
    "evictions",
    "expired_unfetched",
    "evicted_unfetched",
    "reclaimed",
    "get_hits",
    "get_misses",
    "get_expired",
    "get_flushed",
    "cmd_get",
    "cmd_set",
    "cmd_touch",
    "cmd_flush",
    "delete_hits",
    "delete_misses",
    "incr_hits",
    "incr_misses",
    "decr_hits",
    "decr_misses",
    "cas_hits",
    "cas_misses",
    "cas_badval",
    "touch_hits",
    "touch_misses",
    "hash_power_level",
    "hash_bytes",
    "hash_is_expanding",
)

# Counters that "stats reset" clears (memcached keeps curr_items, bytes and limits).
_RESETTABLE = frozenset(STAT_NAMES) - {
    "curr_items",
    "bytes",
    "limit_maxbytes",
    "limit_maxitems",
    "hash_power_level",
    "hash_bytes",
    "hash_is_expanding",
}


def _check_key(key: bytes) -> None:
    if not is_valid_key(key):
        raise InvalidKey(f"invalid key {key[:40]!r}")


def _check_range(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value}")


class Store:
    """An exact LRU cache with memcached's semantics, in pure Python.

    Args:
        max_bytes: memory limit; items are charged ``len(key) + len(value) + ITEM_OVERHEAD``.
        max_items: limit on the number of items, 0 for none.
        max_item_size: largest charged item size accepted (memcached's ``-I``).
        clock: zero-argument callable returning the time in whole Unix-scale seconds; by
            default the monotonic clock on a Unix-time scale (see :mod:`pycache_d.store.clock`).
    """

    backend = "python"

    def __init__(
        self,
        max_bytes: int = DEFAULT_MAX_BYTES,
        *,
        max_items: int = 0,
        max_item_size: int = DEFAULT_MAX_ITEM_SIZE,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self._data: OrderedDict[bytes, bytes] = OrderedDict()
        self._stats = dict.fromkeys(_RESETTABLE, 0)
        self._expiry: list[tuple[int, int, bytes]] = []
        self._ttl_items = 0
        self._clock = clock
        # Without a clock, the store reads the monotonic clock on a Unix-time scale itself, as
        # clock.MonotonicClock does (and the native backend): PERF, one call fewer per command.
        self._clock_base = clockmod.origin()
        self._time = 0  # the clock reading of the last call (see the now property)
        self._cas = 0
        self._flush_cas = 0  # items with cas < this are flushed (_FLUSH_ALL: every item)
        self._flush_at = 0  # pending delayed flush_all: its second (oldest_live), 0 for none
        self._wall_skew = 0  # see the wall_skew property
        self._bytes = 0
        # Items per size class of the native allocator (see size_classes): per 8-byte chunk
        # size up to SMALL_CHUNK_MAX, then count and bytes per reported class.
        self._small = [0] * (SMALL_CHUNK_MAX // 8)
        self._large_n = [0] * (len(SLAB_SIZES) + 1)
        self._large_b = [0] * (len(SLAB_SIZES) + 1)
        self._max_items = 0
        self._room_bytes = self._room_items = 0  # see the module's invariants
        # The eviction log (``watch evictions``): None unless someone watches; at most
        # EVLOG_SIZE entries until taken, the rest only counted (as csrc/store.h's).
        self._evlog: list[tuple[bytes, int, int, int, int, bool]] | None = None
        self._evlog_dropped = 0
        # What freed items per reported size class: see class_stats.
        self._class_stats: dict[int, list[int]] = {}
        self.max_bytes = max_bytes
        self.max_items = max_items
        self.max_item_size = max_item_size

    # -- limits -------------------------------------------------------------------------------

    @property
    def wall_skew(self) -> int:
        """Seconds the wall clock is ahead of the store's clock (it was stepped): absolute
        expiry times from the protocol are read against the wall clock (pycache_d/store/clock.py)."""
        return self._wall_skew

    @wall_skew.setter
    def wall_skew(self, value: int) -> None:
        _check_range("wall_skew", value, -(2**31) + 1, 2**31 - 1)
        self._wall_skew = value

    @property
    def max_bytes(self) -> int:
        return self._max_bytes

    @max_bytes.setter
    def max_bytes(self, value: int) -> None:
        _check_range("max_bytes", value, 1, 2**63 - 1)
        self._max_bytes = value
        self._reduce(SHRINK_SLICE, self._now())

    @property
    def max_items(self) -> int:
        return self._max_items

    @max_items.setter
    def max_items(self, value: int) -> None:
        _check_range("max_items", value, 0, 2**63 - 1)
        self._max_items = value
        self._reduce(SHRINK_SLICE, self._now())

    @property
    def max_item_size(self) -> int:
        return self._max_item_size

    @max_item_size.setter
    def max_item_size(self, value: int) -> None:
        _check_range("max_item_size", value, 1, 2**31 - 1)
        self._max_item_size = value

    # -- time and liveness --------------------------------------------------------------------

    @property
    def now(self) -> int:
        """The store's clock as the last call read it: the time its expiry and access times are on."""
        return self._time

    def _now(self) -> int:
        clock = self._clock
        now = int(self._clock_base + _monotonic()) if clock is None else int(clock())
        self._time = now
        if self._flush_at and now >= self._flush_at:
            self._settle_flush(now)
        return now

    def _settle_flush(self, now: int) -> None:
        """Apply the pending flush_all whose second (``_flush_at``) has come.

        memcached flushes every item whose time is at or before ``oldest_live`` once its clock
        reaches it, so what is stored *during* that second is flushed as well: all of it is
        dead until the clock moves on, and then exactly what was stored up to there.
        """
        if now > self._flush_at:
            self._flush_at = 0
            self._flush_cas = self._cas + 1
        else:
            self._flush_cas = _FLUSH_ALL

    def _alive(self, rec: bytes, now: int) -> int:
        """Return 0 if alive, 1 if expired, 2 if flushed."""
        cas, _flags, exptime, _atime, _bits = _unpack(rec)
        if cas < self._flush_cas:
            return 2
        if exptime and exptime <= now:
            return 1
        return 0

    def _lookup(self, key: bytes, now: int) -> bytes | None:
        """Return the live record of ``key`` or None, freeing it if it is dead.

        As in memcached, any lookup that finds a dead item counts get_expired or get_flushed.
        """
        rec = self._data.get(key)
        if rec is None:
            return None
        cas, _flags, exptime, _atime, _bits = _unpack(rec)  # PERF: _alive(), inlined
        if cas < self._flush_cas or 0 < exptime <= now:
            self._stats["get_flushed" if cas < self._flush_cas else "get_expired"] += 1
            self._unlink(key, rec, reclaimed=True)
            return None
        return rec

    # -- linking ------------------------------------------------------------------------------

    def _count(self, nkey: int, nbytes: int, flags: int, n: int) -> None:
        """Count an item in (n=1) or out of (n=-1) its native size class."""
        size = ITEM_HEADER + (4 if flags else 0) + nkey + nbytes
        if size <= SMALL_CHUNK_MAX:
            self._small[(size + 7) // 8 - 1] += n
        else:
            r = report_class(size)
            self._large_n[r] += n
            self._large_b[r] += n * size

    def _unlink(self, key: bytes, rec: bytes, *, reclaimed: bool = False, evicted: bool = False) -> None:
        del self._data[key]
        self._bytes -= len(key) + len(rec) - _HSIZE + ITEM_OVERHEAD
        _c, flags, exptime, _a, _b = _unpack(rec)
        self._count(len(key), len(rec) - _HSIZE, flags, -1)
        if exptime:
            self._ttl_items -= 1
        if reclaimed or evicted:
            unfetched = not rec[_HSIZE - 1] & FETCHED
            cls = report_class(chunk_size(len(key), len(rec) - _HSIZE, flags))
            row = self._class_stats.get(cls)
            if row is None:
                row = self._class_stats[cls] = [0] * 6
            if reclaimed:
                self._stats["reclaimed"] += 1
                self._stats["expired_unfetched"] += unfetched
                row[4] += 1
                row[5] += unfetched
            else:
                self._stats["evictions"] += 1
                self._stats["evicted_unfetched"] += unfetched
                row[0] += 1
                row[1] += exptime != 0
                row[2] = self._time - _a
                row[3] += unfetched
                log = self._evlog
                if log is not None:
                    if len(log) < EVLOG_SIZE:
                        now = self._time
                        ttl = exptime - now if exptime else -1
                        log.append((key, len(rec) - _HSIZE, flags, ttl, now - _a, not unfetched))
                    else:
                        self._evlog_dropped += 1

    def _shrink(self, need_bytes: int, need_items: int, now: int) -> None:
        """Free LRU-tail items until ``need_bytes`` more bytes and ``need_items`` more fit the room."""
        data = self._data
        while data and (
            self._bytes + need_bytes > self._room_bytes
            or (self._room_items and len(data) + need_items > self._room_items)
        ):
            self._evict_tail(now)

    def _evict_tail(self, now: int) -> None:
        """Free the LRU-tail item: ``reclaimed`` if it was dead, an eviction if it was alive."""
        key = next(iter(self._data))
        rec = self._data[key]
        if self._alive(rec, now):
            self._unlink(key, rec, reclaimed=True)
        else:
            self._unlink(key, rec, evicted=True)

    def _reduce(self, limit: int, now: int) -> int:
        """Evict up to ``limit`` LRU-tail items while more is held than the limits allow, then
        lower the room to what is held (never below the limits); return how many were freed."""
        data = self._data
        freed = 0
        while (
            freed < limit
            and data
            and (self._bytes > self._max_bytes or (self._max_items and len(data) > self._max_items))
        ):
            self._evict_tail(now)
            freed += 1
        self._room_bytes = max(self._max_bytes, self._bytes)
        self._room_items = max(self._max_items, len(data)) if self._max_items else 0
        return freed

    def _link(self, key: bytes, value: bytes, flags: int, exptime: int, now: int, bits: int = 0) -> int:
        """Insert a new item at the MRU head, making room first; return its CAS.

        Its last access is now; ``bits`` is its state (semantics.py), none for a plain write.
        """
        size = len(key) + len(value) + ITEM_OVERHEAD
        data = self._data
        if self._bytes + size > self._room_bytes or (self._room_items and len(data) >= self._room_items):
            self._shrink(size, 1, now)  # PERF: only called when it has something to do
        self._cas += 1
        cas = self._cas
        data[key] = _pack(cas, flags, exptime, now, bits) + value
        self._bytes += size
        self._count(len(key), len(value), flags, 1)
        if exptime:
            self._ttl_items += 1
            self._push_expiry(exptime, cas, key)
        return cas

    def _push_expiry(self, exptime: int, cas: int, key: bytes) -> None:
        heap = self._expiry
        heapq.heappush(heap, (exptime, cas, key))
        if len(heap) > 2 * self._ttl_items + 1024:
            # Drop the entries of items that were since overwritten, touched or freed.
            live = []
            for k, rec in self._data.items():
                c, _f, e, _a, _b = _unpack(rec)
                if e:
                    live.append((e, c, k))
            heapq.heapify(live)
            self._expiry = live

    def _fits(self, size: int) -> None:
        if size > self._max_item_size:
            raise ItemTooLarge(f"item of {size} bytes exceeds the maximum item size")
        if size > self._max_bytes:
            raise OutOfMemory(f"item of {size} bytes exceeds the memory limit")

    # -- reads --------------------------------------------------------------------------------

    def _fetch(self, key: bytes, now: int) -> bytes | None:
        """Look up ``key`` for a get: count the hit or miss, mark fetched, make it MRU."""
        stats = self._stats
        stats["cmd_get"] += 1
        rec = self._lookup(key, now)
        if rec is None:
            stats["get_misses"] += 1
            return None
        stats["get_hits"] += 1
        return self._bump(key, rec, now)

    def _bump(self, key: bytes, rec: bytes, now: int) -> bytes:
        """A fetch of a live item (memcached's do_item_bump): mark it, make it MRU; return it.

        The first fetch since the item was written marks it FETCHED; a later one sets its last
        access (memcached's segmented LRU sets it on the second fetch and then whenever the
        item is fetched once its ACTIVE mark is cleared; we keep no ACTIVE mark: every fetch
        after the first counts).
        """
        cas, flags, exptime, atime, bits = _unpack(rec)
        if not bits & FETCHED or atime != now:
            rec = _pack(cas, flags, exptime, now if bits & FETCHED else atime, bits | FETCHED) + rec[_HSIZE:]
            self._data[key] = rec
        self._data.move_to_end(key)
        return rec

    def get(self, key: bytes) -> bytes | None:
        """Return the value of ``key``, or None on a miss."""
        _check_key(key)
        rec = self._fetch(key, self._now())
        return None if rec is None else rec[_HSIZE:]

    def get_item(self, key: bytes) -> tuple[bytes, int, int] | None:
        """Return ``(value, flags, cas)`` of ``key``, or None on a miss."""
        return self.get_items((key,))[0]

    def get_items(
        self, keys: Iterable[bytes], budget: int | None = None
    ) -> list[tuple[bytes, int, int] | None]:
        """Return ``(value, flags, cas)`` or None for each key in turn, as :meth:`get_item` would.

        The keys are looked up one after the other (a repeated key counts twice, an invalid key
        raises once the keys before it are done), at one reading of the clock: a multi-get
        happens at one instant. The session's gets use :meth:`get_values`, the same lookups
        writing their replies; the native backend has neither, its session drives C directly.

        With a ``budget`` (bytes), it stops after the hit that brings the values' total to it,
        so the list may be shorter than ``keys``; the keys after it are not looked up.
        """
        now = self._now()
        data = self._data
        lookup = data.get
        bump = data.move_to_end
        flush_cas = self._flush_cas
        found: list[tuple[bytes, int, int] | None] = []
        put = found.append
        hits = misses = 0
        left = (1 << 62) if budget is None else budget
        try:
            for key in keys:
                if type(key) is not bytes or not 0 < len(key) <= MAX_KEY_LENGTH:
                    _check_key(key)
                    rec = self._fetch(key, now)  # e.g. a bytes subclass: the careful path
                    put(None if rec is None else self._triple(rec))
                    if rec is not None:
                        left -= len(rec) - _HSIZE
                        if left <= 0:
                            break
                    continue
                # PERF: the common case written out, with one header unpack and the counters
                # kept in locals; what it does is _fetch()'s, step for step.
                rec = lookup(key)
                if rec is not None:
                    cas, flags, exptime, atime, bits = _unpack(rec)
                    if cas >= flush_cas and not 0 < exptime <= now:
                        hits += 1
                        if not bits & 1 or atime != now:  # _bump(), inlined
                            rec = (
                                _pack(cas, flags, exptime, now if bits & 1 else atime, bits | 1)
                                + rec[_HSIZE:]
                            )
                            data[key] = rec
                        bump(key)
                        value = rec[_HSIZE:]
                        put((value, flags, cas))
                        left -= len(value)
                        if left <= 0:
                            break
                        continue
                    self._lookup(key, now)  # dead: frees it, counting get_expired or get_flushed
                misses += 1
                put(None)
        finally:
            stats = self._stats
            stats["cmd_get"] += hits + misses
            if hits:
                stats["get_hits"] += hits
            if misses:
                stats["get_misses"] += misses
        return found

    def get_values(
        self, keys: Iterable[bytes], budget: int | None, out: list[bytes], with_cas: bool = False
    ) -> tuple[int, int]:
        """Look up ``keys`` as :meth:`get_items` does; append the hits' text-protocol replies.

        For each hit, in key order, ``out`` gets the ``VALUE <key> <flags> <bytes>[ <cas>]``
        line, the value and ``\\r\\n`` (``get``/``gets``, without the closing ``END``). The
        python session's get path: PERF, one loop and no tuple per hit, about a sixth of a 10-key
        get's CPU over :meth:`get_items` and a second loop in the session.

        Args:
            keys: the command's keys, non-empty ``bytes``.
            budget: as for :meth:`get_items`; None for none.
            out: the reply parts so far.
            with_cas: ``gets``: each VALUE line ends with the item's CAS.

        Returns:
            ``(looked_up, spent)``: how many keys were looked up (fewer than ``keys`` when the
            budget stopped it) and the value bytes appended.

        Raises:
            InvalidKey: at a key the store refuses, once the keys before it are done; their
                parts stay in ``out`` (memcached drops them: the caller trims ``out``).
        """
        now = self._now()
        data = self._data
        lookup = data.get
        bump = data.move_to_end
        flush_cas = self._flush_cas
        suffix = _SUFFIX
        limit = (1 << 62) if budget is None else budget
        spent = hits = misses = 0  # PERF: one count per key; looked up = hits + misses
        try:
            for key in keys:
                if not 0 < len(key) <= MAX_KEY_LENGTH:
                    _check_key(key)  # raises
                # What _fetch() does, step for step (as in get_items).
                rec = lookup(key)
                if rec is not None:
                    cas, flags, exptime, atime, bits = _unpack(rec)
                    if cas >= flush_cas and not 0 < exptime <= now:
                        hits += 1
                        if not bits & 1 or atime != now:  # _bump(), inlined
                            rec = (
                                _pack(cas, flags, exptime, now if bits & 1 else atime, bits | 1)
                                + rec[_HSIZE:]
                            )
                            data[key] = rec
                        bump(key)
                        value = rec[_HSIZE:]
                        size = len(value)
                        if flags or size >= _SUFFIXES:
                            if with_cas:
                                out.append(b"VALUE %s %d %d %d\r\n" % (key, flags, size, cas))
                            else:
                                out.append(b"VALUE %s %d %d\r\n" % (key, flags, size))
                            out += (value, b"\r\n")
                        elif with_cas:
                            out += (b"VALUE ", key, _CAS_INFIX[size], b"%d\r\n" % cas, value, b"\r\n")
                        else:
                            out += (b"VALUE ", key, suffix[size], value, b"\r\n")
                        spent += size
                        if spent >= limit:
                            break
                        continue
                    self._lookup(key, now)  # dead: frees it, counting get_expired or get_flushed
                misses += 1
        finally:
            stats = self._stats
            stats["cmd_get"] += hits + misses
            if hits:
                stats["get_hits"] += hits
            if misses:
                stats["get_misses"] += misses
        return hits + misses, spent

    @staticmethod
    def _triple(rec: bytes) -> tuple[bytes, int, int]:
        cas, flags, _e, _a, _b = _unpack(rec)
        return rec[_HSIZE:], flags, cas

    def get_many(self, keys: Iterable[bytes]) -> dict[bytes, tuple[bytes, int, int]]:
        """Return ``{key: (value, flags, cas)}`` for the keys that hit, in request order."""
        out = {}
        for key in keys:
            item = self.get_item(key)
            if item is not None:
                out[key] = item
        return out

    def gat(self, key: bytes, exptime: int) -> tuple[bytes, int, int] | None:
        """Get and touch: return ``(value, flags, cas)`` and set a new expiry, or None."""
        _check_key(key)
        _check_range("exptime", exptime, EXPTIME_MIN, EXPTIME_MAX)
        now = self._now()
        stats = self._stats
        # memcached counts a gat as a touch only (cmd_touch and touch_hits/touch_misses).
        stats["cmd_touch"] += 1
        rec = self._lookup(key, now)
        if rec is None:
            stats["touch_misses"] += 1
            return None
        stats["touch_hits"] += 1
        rec = self._retime(key, rec, absolute_expiry(exptime, now, self._wall_skew), now)
        return self._triple(rec)

    def _retime(self, key: bytes, rec: bytes, exptime: int, now: int) -> bytes:
        """Give a live item a new expiry and fetch it (memcached's do_item_touch); return it."""
        return self._bump(key, self._restate(key, rec, exptime=exptime), now)

    def _restate(
        self, key: bytes, rec: bytes, *, exptime: int | None = None, bits: int | None = None, cas: int = 0
    ) -> bytes:
        """Rewrite a live item's expiry (absolute), state bits or CAS in place; return it.

        Neither its LRU place nor its last access change.
        """
        old_cas, flags, old_exptime, atime, old_bits = _unpack(rec)
        new_exptime = old_exptime if exptime is None else exptime
        new_cas = cas or old_cas
        rec = _pack(new_cas, flags, new_exptime, atime, old_bits if bits is None else bits) + rec[_HSIZE:]
        self._data[key] = rec
        self._ttl_items += bool(new_exptime) - bool(old_exptime)
        if new_exptime and (new_exptime != old_exptime or new_cas != old_cas):
            self._push_expiry(new_exptime, new_cas, key)
        return rec

    def touch(self, key: bytes, exptime: int) -> Result:
        """Set a new expiry on ``key``: TOUCHED or NOT_FOUND."""
        _check_key(key)
        _check_range("exptime", exptime, EXPTIME_MIN, EXPTIME_MAX)
        now = self._now()
        self._stats["cmd_touch"] += 1
        rec = self._lookup(key, now)
        if rec is None:
            self._stats["touch_misses"] += 1
            return NOT_FOUND
        self._stats["touch_hits"] += 1
        self._retime(key, rec, absolute_expiry(exptime, now, self._wall_skew), now)
        return TOUCHED

    # -- writes -------------------------------------------------------------------------------

    def _update(
        self,
        mode: int,
        key: bytes,
        value: bytes,
        flags: int,
        exptime: int,
        cas_unique: int = 0,
        bits: int = 0,
        stale: bool = False,
    ) -> Result:
        # PERF: every set of the daemon passes here; the checks only call out to raise.
        if not 0 < len(key) <= MAX_KEY_LENGTH:  # is_valid_key()
            _check_key(key)
        if type(value) is not bytes:
            value = bytes(value)
        if not 0 <= flags <= U32_MAX:
            _check_range("flags", flags, 0, U32_MAX)
        if not EXPTIME_MIN <= exptime <= EXPTIME_MAX:
            _check_range("exptime", exptime, EXPTIME_MIN, EXPTIME_MAX)
        now = self._now()
        size = len(key) + len(value) + ITEM_OVERHEAD
        if size > self._max_item_size or size > self._max_bytes:
            if mode == _SET:
                # memcached drops the old value rather than keep serving stale data.
                old = self._data.get(key)
                if old is not None:
                    self._unlink(key, old)
            self._fits(size)  # raises
        self._stats["cmd_set"] += 1
        old = self._lookup(key, now)
        if mode == _SET:
            pass
        elif mode == _ADD:
            if old is not None:
                # memcached bumps the item a failed add found (do_item_update): LRU and last access.
                if _unpack(old)[3] != now:
                    self._data[key] = _pack(*_unpack(old)[:3], now, old[_HSIZE - 1]) + old[_HSIZE:]
                self._data.move_to_end(key)
                return NOT_STORED
        elif mode == _REPLACE:
            if old is None:
                return NOT_STORED
        elif mode == _CAS:
            if old is None:
                self._stats["cas_misses"] += 1
                return NOT_FOUND
            old_cas, _f, old_exptime, _a, old_bits = _unpack(old)
            if old_cas != cas_unique:
                if not (stale and 0 < cas_unique < old_cas):
                    self._stats["cas_badval"] += 1
                    return EXISTS
                # ms I: an older CAS still stores, as a stale value that keeps the item's TTL and
                # its win-token mark (memcached's CAS_STALE).
                self._stats["cas_hits"] += 1
                self._unlink(key, old)
                self._link(key, value, flags, old_exptime, now, bits | STALE | (old_bits & WON))
                self._stats["total_items"] += 1
                return STORED
            self._stats["cas_hits"] += 1
        else:  # append, prepend: keep the old flags and expiry; a fresh item (no state bits)
            if old is None:
                return NOT_STORED
            old_cas, flags, old_exptime, _a, _b = _unpack(old)
            if cas_unique and cas_unique != old_cas:
                return EXISTS  # ms MA/MP with C compare a nonzero CAS
            if mode == _APPEND:
                value = old[_HSIZE:] + value
            else:
                value = value + old[_HSIZE:]
            size = len(key) + len(value) + ITEM_OVERHEAD
            if size > self._max_item_size or size > self._max_bytes:
                return NOT_STORED
            self._unlink(key, old)
            self._link(key, value, flags, old_exptime, now)
            self._stats["total_items"] += 1
            return STORED
        if old is not None:
            self._unlink(key, old)
        self._link(
            key, value, flags, absolute_expiry(exptime, now, self._wall_skew) if exptime else 0, now, bits
        )
        self._stats["total_items"] += 1
        return STORED

    def set(self, key: bytes, value: bytes, flags: int = 0, exptime: int = 0) -> Result:
        """Store ``value`` under ``key`` unconditionally."""
        return self._update(_SET, key, value, flags, exptime)

    def add(self, key: bytes, value: bytes, flags: int = 0, exptime: int = 0) -> Result:
        """Store only if ``key`` holds no live item."""
        return self._update(_ADD, key, value, flags, exptime)

    def replace(self, key: bytes, value: bytes, flags: int = 0, exptime: int = 0) -> Result:
        """Store only if ``key`` holds a live item."""
        return self._update(_REPLACE, key, value, flags, exptime)

    def append(self, key: bytes, value: bytes) -> Result:
        """Add ``value`` after the existing value, keeping its flags and expiry."""
        return self._update(_APPEND, key, value, 0, 0)

    def prepend(self, key: bytes, value: bytes) -> Result:
        """Add ``value`` before the existing value, keeping its flags and expiry."""
        return self._update(_PREPEND, key, value, 0, 0)

    def cas(self, key: bytes, value: bytes, flags: int, exptime: int, cas_unique: int) -> Result:
        """Store only if the item's CAS is still ``cas_unique``: STORED, EXISTS or NOT_FOUND."""
        _check_range("cas_unique", cas_unique, 0, U64_MAX)
        return self._update(_CAS, key, value, flags, exptime, cas_unique)

    def delete(self, key: bytes) -> Result:
        """Remove ``key``: DELETED or NOT_FOUND."""
        _check_key(key)
        rec = self._lookup(key, self._now())
        if rec is None:
            self._stats["delete_misses"] += 1
            return NOT_FOUND
        self._stats["delete_hits"] += 1
        self._unlink(key, rec)
        return DELETED

    def _delta(
        self,
        key: bytes,
        delta: int,
        incr: bool,
        cas_unique: int = 0,
        count_miss: bool = True,
        new_exptime: int | None = None,
    ) -> tuple[Result, int]:
        """incr/decr as memcached's do_add_delta: ``(STORED, number)``, NOT_FOUND or EXISTS.

        The lookup neither fetches nor marks the item (memcached's DONT_UPDATE). An empty
        value is not a number before the CAS (if nonzero) is compared.
        """
        _check_key(key)
        _check_range("delta", delta, 0, U64_MAX)
        _check_range("cas_unique", cas_unique, 0, U64_MAX)
        name = "incr" if incr else "decr"
        now = self._now()
        rec = self._lookup(key, now)
        if rec is None:
            if count_miss:
                self._stats[name + "_misses"] += 1
            return NOT_FOUND, 0
        old_value = rec[_HSIZE:]
        old_cas, flags, exptime, _a, bits = _unpack(rec)
        if old_value and cas_unique and cas_unique != old_cas:
            return EXISTS, 0
        number = parse_counter(old_value)
        if number is None:
            raise NonNumericValue(f"{name} on a non-numeric value")
        self._stats[name + "_hits"] += 1
        number = (number + delta) & U64_MAX if incr else max(number - delta, 0)
        value = counter_bytes(number, len(old_value))
        if len(value) == len(old_value):
            # In place, as memcached does: same size, same position rules, new CAS, its state
            # kept; the access counts (do_item_update) but is no fetch.
            self._cas += 1
            if new_exptime is not None:  # ma T (see meta_delta)
                new_exptime = absolute_expiry(new_exptime, now, self._wall_skew)
                self._ttl_items += bool(new_exptime) - bool(exptime)
                exptime = new_exptime
            self._data[key] = _pack(self._cas, flags, exptime, now, bits) + value
            self._data.move_to_end(key)
            if exptime:
                self._push_expiry(exptime, self._cas, key)
        else:
            self._fits(len(key) + len(value) + ITEM_OVERHEAD)
            self._unlink(key, rec)
            self._link(key, value, flags, exptime, now)
        return STORED, number

    def incr(self, key: bytes, delta: int = 1) -> int | None:
        """Add ``delta`` (wrapping at 2**64); return the new value or None if missing."""
        result, number = self._delta(key, delta, True)
        return number if result is STORED else None

    def decr(self, key: bytes, delta: int = 1) -> int | None:
        """Subtract ``delta`` (stopping at 0); return the new value or None if missing."""
        result, number = self._delta(key, delta, False)
        return number if result is STORED else None

    def flush_all(self, delay: int = 0) -> None:
        """Invalidate every item now, or at ``delay`` (an expiration time) from now."""
        _check_range("delay", delay, EXPTIME_MIN, EXPTIME_MAX)
        now = self._now()
        self._stats["cmd_flush"] += 1
        if self._flush_cas == _FLUSH_ALL:
            # Inside an earlier flush's second: what it flushed stays flushed (memcached would
            # bring those items back by moving oldest_live later; we never do).
            self._flush_cas = self._cas + 1
        if delay > 0:
            # memcached's oldest_live is realtime(delay) - 1: the flush takes effect then
            # (_settle_flush), at once for a delay of 1.
            self._flush_at = max(absolute_expiry(delay, now, self._wall_skew) - 1, 1)
            if self._flush_at <= now:
                self._settle_flush(now)
        else:
            self._flush_at = 0
            self._flush_cas = self._cas + 1

    # -- meta commands (proto_text.c's mg, ms, md, ma, me) ---------------------------------------

    def _state(self, rec: bytes) -> tuple[bytes, int, int, int, int, int]:
        cas, flags, exptime, atime, bits = _unpack(rec)
        return rec[_HSIZE:], flags, cas, exptime, atime, bits

    def peek(self, key: bytes) -> tuple[bytes, int, int, int, int, int] | None:
        """Return ``(value, flags, cas, exptime, atime, bits)`` of a live item, or None.

        No fetch: nothing is counted, marked or moved (memcached's DONT_UPDATE lookup, as me,
        md and ma read an item). A dead item found is freed (counted get_expired/get_flushed).
        ``exptime`` and ``atime`` are on the store's clock (:attr:`now`); ``bits`` are the
        state bits of semantics.py.
        """
        _check_key(key)
        rec = self._lookup(key, self._now())
        return None if rec is None else self._state(rec)

    def meta_get(
        self, key: bytes, exptime: int | None = None, bump: bool = True, vivify: int | None = None
    ) -> tuple[bytes, int, int, int, int, int, bool] | None:
        """mg's lookup: return the item's state as :meth:`peek` does, before this call changed
        it, and whether it was created; or None on a miss.

        Args:
            exptime: T: a new expiration time (protocol value) for a found item; a hit then
                counts as a touch (cmd_touch, touch_hits), else as a get; a miss always as a
                get (get_misses), as memcached counts them.
            bump: fetch the item (False for u): make it MRU and mark it (see :meth:`_bump`).
            vivify: N: on a miss, create an empty item with this expiration time, marked WON
                (its first reader won the right to recache it). It counts as a hit, and no set
                (memcached links it directly). If it cannot be allocated the miss stands.
        """
        _check_key(key)
        if exptime is not None:
            _check_range("exptime", exptime, EXPTIME_MIN, EXPTIME_MAX)
        if vivify is not None:
            _check_range("vivify", vivify, EXPTIME_MIN, EXPTIME_MAX)
        now = self._now()
        stats = self._stats
        touch = exptime is not None
        rec = self._lookup(key, now)
        created = False
        if rec is None and vivify is not None:
            try:
                created = bool(self.vivify(key, b"", vivify, WON))
            except (ItemTooLarge, OutOfMemory):
                pass  # memcached: an item it cannot allocate is not vivified; the miss stands
            rec = self._data.get(key)
        if rec is None:
            stats["cmd_get"] += 1  # memcached counts a miss as a get, T or not
            stats["get_misses"] += 1
            return None
        stats["cmd_touch" if touch else "cmd_get"] += 1
        stats["touch_hits" if touch else "get_hits"] += 1
        cas, flags, old_exptime, atime, bits = _unpack(rec)
        if created:
            bits = 0  # the state the command saw: WON is its own win
        elif touch:
            assert exptime is not None
            rec = self._restate(key, rec, exptime=absolute_expiry(exptime, now, self._wall_skew))
        if bump:
            self._bump(key, rec, now)
        return rec[_HSIZE:], flags, cas, old_exptime, atime, bits, created

    def mark(self, key: bytes, set_bits: int = 0, clear_bits: int = 0, exptime: int | None = None) -> bool:
        """Change a live item's state bits, or give it a new expiration time (protocol value),
        in place: no fetch, nothing counted. Return False if there is no such item."""
        _check_key(key)
        _check_range("set_bits", set_bits, 0, STATE_BITS)
        _check_range("clear_bits", clear_bits, 0, STATE_BITS)
        if exptime is not None:
            _check_range("exptime", exptime, EXPTIME_MIN, EXPTIME_MAX)
        now = self._now()
        rec = self._lookup(key, now)
        if rec is None:
            return False
        bits = (rec[_HSIZE - 1] | set_bits) & ~clear_bits
        new_exptime = None if exptime is None else absolute_expiry(exptime, now, self._wall_skew)
        self._restate(key, rec, exptime=new_exptime, bits=bits)
        return True

    def meta_update(
        self,
        mode: int,
        key: bytes,
        value: bytes,
        flags: int = 0,
        exptime: int = 0,
        cas_unique: int = 0,
        *,
        binary: bool = False,
        stale: bool = False,
    ) -> tuple[Result, int]:
        """ms: store as set/add/replace/append/prepend/cas (``mode``); return the outcome and the
        new item's CAS (0 unless STORED).

        Args:
            cas_unique: for CAS, the CAS to compare; for append/prepend a nonzero one is
                compared too (a mismatch is EXISTS, a miss NOT_STORED).
            binary: the key came in base64: the item is marked BINARY_KEY (not for
                append/prepend, whose new item memcached builds without it).
            stale: I: a CAS older than the item's stores anyway, as a STALE item that keeps the
                old TTL and WON mark (memcached's CAS_STALE).
        """
        _check_range("mode", mode, _SET, _CAS)
        _check_range("cas_unique", cas_unique, 0, U64_MAX)
        result = self._update(
            mode, key, value, flags, exptime, cas_unique, BINARY_KEY if binary else 0, stale
        )
        return result, (self._cas if result is STORED else 0)

    def meta_delete(
        self, key: bytes, cas_unique: int | None = None, stale: bool = False, exptime: int | None = None
    ) -> Result:
        """md: DELETED (or, with ``stale``, invalidated), NOT_FOUND, or EXISTS (CAS mismatch).

        Invalidating (I) keeps the item but marks it STALE, clears WON (so the next reader
        wins) and gives it a new CAS, and ``exptime`` (T) if given; nothing else changes.
        The lookup is no fetch; a miss or mismatch counts delete_misses, a delete delete_hits.
        """
        _check_key(key)
        if cas_unique is not None:
            _check_range("cas_unique", cas_unique, 0, U64_MAX)
        if exptime is not None:
            _check_range("exptime", exptime, EXPTIME_MIN, EXPTIME_MAX)
        now = self._now()
        rec = self._lookup(key, now)
        if rec is None or (cas_unique is not None and _unpack(rec)[0] != cas_unique):
            self._stats["delete_misses"] += 1
            return NOT_FOUND if rec is None else EXISTS
        if stale:
            self._cas += 1
            bits = (rec[_HSIZE - 1] | STALE) & ~WON
            new_exptime = None if exptime is None else absolute_expiry(exptime, now, self._wall_skew)
            self._restate(key, rec, exptime=new_exptime, bits=bits, cas=self._cas)
            return DELETED
        self._stats["delete_hits"] += 1
        self._unlink(key, rec)
        return DELETED

    def meta_delta(
        self,
        key: bytes,
        incr: bool,
        delta: int,
        cas_unique: int = 0,
        count_miss: bool = True,
        exptime: int | None = None,
    ) -> tuple[Result, int, int, int]:
        """ma: return ``(result, number, cas, exptime)``.

        ``result`` is STORED (``number`` is the new value, ``cas`` the item's afterwards and
        ``exptime`` its expiry before this call), NOT_FOUND (a miss, counted unless not
        ``count_miss``: ma N vivifies instead) or EXISTS (a nonzero ``cas_unique`` did not
        match). The lookup is no fetch. ``exptime`` (T, a protocol value) becomes the item's
        when the number is rewritten in place: memcached sets it on the item its
        do_add_delta returns, which for a longer number is the replaced one, so a counter
        that grows keeps its TTL.

        Raises:
            NonNumericValue: the value is not a counter.
            ItemTooLarge, OutOfMemory: the longer number does not fit.
        """
        if exptime is not None:
            _check_range("exptime", exptime, EXPTIME_MIN, EXPTIME_MAX)
        rec = self._data.get(key)
        before = 0 if rec is None else _unpack(rec)[2]
        result, number = self._delta(key, delta, incr, cas_unique, count_miss, exptime)
        if result is not STORED:
            return result, 0, 0, 0
        return result, number, _unpack(self._data[key])[0], before

    def vivify(self, key: bytes, value: bytes, exptime: int = 0, bits: int = 0) -> int:
        """mg N, ma N: create an item (client flags 0) if ``key`` holds none; return its CAS,
        or 0 if a live item is there. memcached links it directly: no set is counted.

        Raises:
            ItemTooLarge, OutOfMemory: it does not fit.
        """
        _check_key(key)
        _check_range("exptime", exptime, EXPTIME_MIN, EXPTIME_MAX)
        _check_range("bits", bits, 0, STATE_BITS)
        value = bytes(value)
        now = self._now()
        if self._lookup(key, now) is not None:
            return 0
        self._fits(len(key) + len(value) + ITEM_OVERHEAD)
        cas = self._link(key, value, 0, absolute_expiry(exptime, now, self._wall_skew), now, bits)
        self._stats["total_items"] += 1
        return cas

    # -- background work, stats, snapshots --------------------------------------------------

    def reclaim(self, limit: int = 1000) -> int:
        """Free up to ``limit`` items: dead ones (flushed from the LRU tail, then expired soonest
        first), then, while a lowered limit is being reached, live ones from the LRU tail; return
        how many were freed. Call it periodically in small slices."""
        now = self._now()
        data = self._data
        freed = 0
        while freed < limit and data:
            key = next(iter(data))
            rec = data[key]
            if _unpack(rec)[0] >= self._flush_cas:
                break
            self._unlink(key, rec, reclaimed=True)
            freed += 1
        heap = self._expiry
        while freed < limit and heap and heap[0][0] <= now:
            exptime, cas, key = heapq.heappop(heap)
            found = data.get(key)
            if found is None:
                continue
            c, _f, e, _a, _b = _unpack(found)
            if c != cas or e != exptime:
                continue  # stale entry: the item was rewritten or touched since
            self._unlink(key, found, reclaimed=True)
            freed += 1
        return freed + self._reduce(limit - freed, now)

    def stats(self) -> dict[str, int]:
        """Return memcached-named counters and gauges."""
        out = dict(self._stats)
        out["curr_items"] = len(self._data)
        out["bytes"] = self._bytes
        out["limit_maxbytes"] = self._max_bytes
        out["limit_maxitems"] = self._max_items
        out["hash_power_level"] = 0
        out["hash_bytes"] = 0
        out["hash_is_expanding"] = 0
        return {name: out[name] for name in STAT_NAMES}

    @property
    def eviction_log(self) -> bool:
        """True while the store keeps a log of what it evicts (``watch evictions``)."""
        return self._evlog is not None

    @eviction_log.setter
    def eviction_log(self, on: bool) -> None:
        self._evlog = [] if on else None
        self._evlog_dropped = 0

    def take_evictions(self) -> tuple[list[tuple[bytes, int, int, int, int, bool]], int] | None:
        """What was evicted since the last call, and how many evictions the full log dropped:
        ``([(key, nbytes, flags, ttl, idle, fetched)], dropped)``; None if nothing (or no log).
        ttl is the seconds it had left (-1: none) and idle the seconds since its last access,
        both as of its eviction."""
        log = self._evlog
        if not log and not self._evlog_dropped:
            return None
        assert log is not None
        dropped = self._evlog_dropped
        self._evlog = []
        self._evlog_dropped = 0
        return log, dropped

    def reset_stats(self) -> None:
        """Zero the counters that memcached's ``stats reset`` clears."""
        self._stats = dict.fromkeys(_RESETTABLE, 0)
        self._class_stats = {}

    def class_stats(self) -> dict[int, tuple[int, int, int, int, int, int]]:
        """What freed items per reported size class, for ``stats items``: ``{class id:
        (evicted, evicted_nonzero, evicted_time, evicted_unfetched, reclaimed,
        expired_unfetched)}`` for the classes where any is not 0."""
        return {c: (r[0], r[1], r[2], r[3], r[4], r[5]) for c, r in sorted(self._class_stats.items())}

    def size_classes(self) -> dict[int, list[int]]:
        """Return what the native allocator would hold per reported size class (see the
        native twin): ``{class id: [used chunks, chunks, pages, bytes]}``, derived from the
        items' sizes as if its pages were filled in order."""
        out: dict[int, list[int]] = {}
        for i, n in enumerate(self._small):
            if n:
                chunk = (i + 1) * 8
                per_page = PAGE_SIZE // chunk
                pages = -(-n // per_page)
                row = out.setdefault(report_class(chunk), [0, 0, 0, 0])
                row[0] += n
                row[1] += pages * per_page
                row[2] += pages
                row[3] += n * chunk
        for r, n in enumerate(self._large_n):
            if n:
                row = out.setdefault(r, [0, 0, 0, 0])
                row[0] += n
                row[1] += n
                row[2] += n
                row[3] += self._large_b[r]
        return dict(sorted(out.items()))

    def oldest_atime(self) -> int | None:
        """The last access (store clock) of the LRU tail, or None when empty."""
        for rec in self._data.values():
            return int(_unpack(rec)[3])
        return None

    def dump_cursor(self) -> _DumpCursor:
        """Return a cursor over every item, as the native twin's (see there).

        It walks a copy of the keys taken now (8 bytes per item, for the walk's length): an
        item deleted meanwhile is skipped, one stored meanwhile is not listed.
        """
        return _DumpCursor(self)

    def __len__(self) -> int:
        return len(self._data)

    @property
    def cas_counter(self) -> int:
        """The last CAS unique handed out."""
        return self._cas

    def items(self) -> Iterator[tuple[bytes, bytes, int, int, int]]:
        """Yield ``(key, value, flags, exptime, cas)`` of every live item, LRU tail first.

        ``exptime`` is absolute on the store's clock (0 = never). The store must not be
        modified while the iterator is in use.
        """
        for key, value, flags, exptime, cas, _atime, _bits in self.records():
            yield key, value, flags, exptime, cas

    def records(self) -> Iterator[tuple[bytes, bytes, int, int, int, int, int]]:
        """Yield :meth:`items` with each item's state: ``(key, value, flags, exptime, cas,
        atime, bits)`` (``atime`` on the store's clock, ``bits`` of semantics.py), as
        :meth:`load` takes them back. The store must not be modified during the walk."""
        now = self._now()
        for key, rec in self._data.items():
            if not self._alive(rec, now):
                cas, flags, exptime, atime, bits = _unpack(rec)
                yield key, rec[_HSIZE:], flags, exptime, cas, atime, bits

    def reserve(self, n: int) -> None:
        """Prepare an empty store for ``n`` items: nothing to do for a dict (native sizes its table)."""
        _check_range("n", n, 0, 2**63 - 1)

    def load(self, items: Iterable[tuple[Any, ...]], cas_counter: int = 0) -> int:
        """Insert items as :meth:`items` or :meth:`records` yield them, each becoming the most
        recent; return how many were kept (dead ones are skipped). The CAS counter moves past
        every CAS seen. Without a state (5-tuples, or atime 0) an item was last accessed now;
        an atime in the future is now.
        """
        now = self._now()
        kept = 0
        for rec in items:
            if len(rec) == 5:
                key, value, flags, exptime, cas = rec
                atime = bits = 0
            else:
                key, value, flags, exptime, cas, atime, bits = rec
            _check_key(key)
            _check_range("flags", flags, 0, U32_MAX)
            _check_range("exptime", exptime, 0, U32_MAX)
            _check_range("cas", cas, 1, CAS_MAX)
            _check_range("atime", atime, 0, U32_MAX)
            _check_range("bits", bits, 0, STATE_BITS)
            atime = min(atime or now, now)
            value = bytes(value)
            if (exptime and exptime <= now) or cas < self._flush_cas:
                continue
            size = len(key) + len(value) + ITEM_OVERHEAD
            if size > self._max_item_size or size > self._max_bytes:
                continue
            old = self._data.get(key)
            if old is not None:
                self._unlink(key, old)
            self._shrink(size, 1, now)
            self._data[key] = _pack(cas, flags, exptime, atime, bits) + value
            self._bytes += size
            self._count(len(key), len(value), flags, 1)
            if exptime:
                self._ttl_items += 1
                self._push_expiry(exptime, cas, key)
            self._cas = max(self._cas, cas)
            self._stats["total_items"] += 1
            kept += 1
        _check_range("cas_counter", cas_counter, 0, CAS_MAX)
        self._cas = max(self._cas, cas_counter)
        return kept


class _DumpCursor:
    """A walk of a copy of the python store's keys (see Store.dump_cursor)."""

    def __init__(self, owner: Store) -> None:
        self._owner = owner
        self._keys: list[bytes] | None = list(owner._data)
        self._pos = 0

    def next(self, count: int) -> list[tuple[bytes, int, int, int, int, int, int, int]] | None:
        """Return up to ``count`` entries, [] once the walk is over (never None here)."""
        keys = self._keys
        if keys is None:
            return []
        owner = self._owner
        data = owner._data
        now = owner._now()
        out = []
        end = min(len(keys), self._pos + count)
        for i in range(self._pos, end):
            key = keys[i]
            rec = data.get(key)
            if rec is None or owner._alive(rec, now):
                continue
            cas, flags, exptime, atime, bits = _unpack(rec)
            size = ITEM_HEADER + (4 if flags else 0) + len(key) + len(rec) - _HSIZE
            if size <= SMALL_CHUNK_MAX:
                size += -size % 8
            out.append((key, exptime, atime, cas, bits, size, len(rec) - _HSIZE, report_class(size)))
        self._pos = end
        if end >= len(keys):
            self._keys = None  # the copy goes as soon as the walk is over
            return out
        return out or None
