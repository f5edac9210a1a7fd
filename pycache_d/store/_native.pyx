# cython: language_level=3, always_allow_keywords=False
"""The native store backend: a Python face on the C store in csrc/.

Items live in C memory (csrc/item.h), so a stored item costs no Python object. This class
only validates arguments, reads the clock and converts results; its behaviour is defined by
pycache_d/store/_pystore.py, which the differential tests hold it to.
"""

import os

cimport cython

from cpython.buffer cimport PyBuffer_FillInfo
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t
from posix.time cimport clock_gettime, timespec

from ._store_c cimport *

from . import clock as clockmod
from .errors import InvalidKey, ItemTooLarge, NonNumericValue, OutOfMemory, Result
from .semantics import CAS_MAX, DEFAULT_MAX_BYTES, DEFAULT_MAX_ITEM_SIZE, MODE_CAS, STATE_BITS
from ._pystore import STAT_NAMES

cdef extern from "<time.h>":
    # Coarse is enough for a clock read in whole seconds, and several times cheaper.
    int CLOCK_MONOTONIC_COARSE

cdef object _RESULTS = tuple(Result)
cdef int64_t EXPTIME_MIN = -(2 ** 31)
cdef int64_t EXPTIME_MAX = 2 ** 31 - 1


cdef inline bytes _key(object key):
    """Return key as bytes if the store can hold it (1..250 bytes), else raise InvalidKey."""
    if type(key) is not bytes:
        key = bytes(key)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(key)
    if n == 0 or n > STORE_MAX_KEY:
        raise InvalidKey(f"invalid key {key[:40]!r}")
    return key


cdef inline int64_t _exptime(object exptime, str name="exptime") except? -1:
    if not EXPTIME_MIN <= exptime <= EXPTIME_MAX:
        raise ValueError(f"{name} must be in [{EXPTIME_MIN}, {EXPTIME_MAX}], got {exptime}")
    return exptime


cdef inline void _check_range(str name, object value, object low, object high) except *:
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value}")


cdef object _raise(int rc):
    if rc == STORE_TOO_LARGE:
        raise ItemTooLarge("item exceeds the maximum item size")
    if rc == STORE_NO_MEMORY:
        raise OutOfMemory("item does not fit in the memory limit")
    if rc == STORE_NON_NUMERIC:
        raise NonNumericValue("incr/decr on a non-numeric value")
    return _RESULTS[rc]


cdef inline tuple _triple(item *it):
    return (PyBytes_FromStringAndSize(item_value(it), it.nbytes), item_flags(it), it.cas)


cdef inline tuple _state(item *it, uint32_t exptime, uint32_t atime, uint8_t state):
    return (PyBytes_FromStringAndSize(item_value(it), it.nbytes), item_flags(it), it.cas, exptime,
            atime, state)


cdef inline int _opt_exptime(object exptime, int64_t *out) except -1:
    """1 and the checked value in out if exptime is not None, else 0."""
    if exptime is None:
        return 0
    out[0] = _exptime(exptime)
    return 1


cdef class Store:
    """An exact LRU cache with memcached's semantics, in C. Same API as the python backend.

    Its C fields are declared in _native.pxd, so the compiled session can drive the C store
    directly without going through Python calls.
    """

    def __init__(self, max_bytes=DEFAULT_MAX_BYTES, *, max_items=0,
                 max_item_size=DEFAULT_MAX_ITEM_SIZE, clock=None):
        _check_range("max_bytes", max_bytes, 1, 2 ** 63 - 1)
        _check_range("max_items", max_items, 0, 2 ** 63 - 1)
        _check_range("max_item_size", max_item_size, 1, 2 ** 31 - 1)
        seed = os.urandom(16)
        if store_init(&self._s, max_bytes, max_items, max_item_size,
                      <const uint8_t *>PyBytes_AS_STRING(seed)) != 0:
            raise MemoryError()
        self.backend = "native"
        self._clock = clock
        self._clock_base = clockmod.origin()  # the process's clock (clock.py)
        self._tick()

    def __dealloc__(self):
        store_destroy(&self._s)

    cdef void _tick(self) except *:
        cdef timespec ts
        self._version += 1
        if self._clock is None:
            clock_gettime(CLOCK_MONOTONIC_COARSE, &ts)
            store_set_time(&self._s, <uint32_t>(self._clock_base + ts.tv_sec + ts.tv_nsec * 1e-9))
        else:
            store_set_time(&self._s, <uint32_t>int(self._clock()))

    # -- limits ----------------------------------------------------------------------------

    @property
    def max_bytes(self):
        return self._s.max_bytes

    @max_bytes.setter
    def max_bytes(self, value):
        _check_range("max_bytes", value, 1, 2 ** 63 - 1)
        self._tick()
        store_set_limits(&self._s, value, self._s.max_items)

    @property
    def wall_skew(self):
        """Seconds the wall clock is ahead of the store's clock (it was stepped): absolute
        expiry times from the protocol are read against the wall clock (pycache_d/store/clock.py)."""
        return self._s.wall_skew

    @wall_skew.setter
    def wall_skew(self, value):
        _check_range("wall_skew", value, -2 ** 31 + 1, 2 ** 31 - 1)  # keeps times in uint32
        self._s.wall_skew = value

    @property
    def max_items(self):
        return self._s.max_items

    @max_items.setter
    def max_items(self, value):
        _check_range("max_items", value, 0, 2 ** 63 - 1)
        self._tick()
        store_set_limits(&self._s, self._s.max_bytes, value)

    @property
    def max_item_size(self):
        return self._s.max_item_size

    @max_item_size.setter
    def max_item_size(self, value):
        _check_range("max_item_size", value, 1, 2 ** 31 - 1)
        self._s.max_item_size = value

    # -- reads -----------------------------------------------------------------------------

    def get(self, key):
        """Return the value of ``key``, or None on a miss."""
        key = _key(key)
        self._tick()
        cdef item *it = store_get(&self._s, PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key))
        if it == NULL:
            return None
        return PyBytes_FromStringAndSize(item_value(it), it.nbytes)

    def get_item(self, key):
        """Return ``(value, flags, cas)`` of ``key``, or None on a miss."""
        key = _key(key)
        self._tick()
        cdef item *it = store_get(&self._s, PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key))
        if it == NULL:
            return None
        return _triple(it)

    def get_many(self, keys):
        """Return ``{key: (value, flags, cas)}`` for the keys that hit, in request order."""
        out = {}
        for key in keys:
            hit = self.get_item(key)
            if hit is not None:
                out[key] = hit
        return out

    def gat(self, key, exptime):
        """Get and touch: return ``(value, flags, cas)`` and set a new expiry, or None."""
        key = _key(key)
        cdef int64_t e = _exptime(exptime)
        self._tick()
        cdef item *it = store_gat(&self._s, PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key), e)
        if it == NULL:
            return None
        return _triple(it)

    def touch(self, key, exptime):
        """Set a new expiry on ``key``: TOUCHED or NOT_FOUND."""
        key = _key(key)
        cdef int64_t e = _exptime(exptime)
        self._tick()
        return _raise(store_touch(&self._s, PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key), e))

    # -- writes ----------------------------------------------------------------------------

    cdef object _update(self, int mode, object key, object value, object flags, object exptime,
                        object cas_unique):
        key = _key(key)
        if type(value) is not bytes:
            value = bytes(value)
        _check_range("flags", flags, 0, 2 ** 32 - 1)
        cdef int64_t e = _exptime(exptime)
        _check_range("cas_unique", cas_unique, 0, 2 ** 64 - 1)
        self._tick()
        return _raise(store_update(&self._s, mode, PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key),
                                   PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value),
                                   flags, e, cas_unique, NULL))

    def set(self, key, value, flags=0, exptime=0):
        """Store ``value`` under ``key`` unconditionally."""
        return self._update(STORE_SET, key, value, flags, exptime, 0)

    def add(self, key, value, flags=0, exptime=0):
        """Store only if ``key`` holds no live item."""
        return self._update(STORE_ADD, key, value, flags, exptime, 0)

    def replace(self, key, value, flags=0, exptime=0):
        """Store only if ``key`` holds a live item."""
        return self._update(STORE_REPLACE, key, value, flags, exptime, 0)

    def append(self, key, value):
        """Add ``value`` after the existing value, keeping its flags and expiry."""
        return self._update(STORE_APPEND, key, value, 0, 0, 0)

    def prepend(self, key, value):
        """Add ``value`` before the existing value, keeping its flags and expiry."""
        return self._update(STORE_PREPEND, key, value, 0, 0, 0)

    def cas(self, key, value, flags, exptime, cas_unique):
        """Store only if the item's CAS is still ``cas_unique``: STORED, EXISTS or NOT_FOUND."""
        return self._update(STORE_CAS, key, value, flags, exptime, cas_unique)

    def delete(self, key):
        """Remove ``key``: DELETED or NOT_FOUND."""
        key = _key(key)
        self._tick()
        return _raise(store_delete(&self._s, PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key)))

    cdef object _delta(self, object key, object delta, int incr):
        key = _key(key)
        _check_range("delta", delta, 0, 2 ** 64 - 1)
        self._tick()
        cdef uint64_t result = 0
        cdef int rc = store_delta(&self._s, PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key), incr,
                                  delta, &result)
        if rc == STORE_STORED:
            return result
        if rc == STORE_NOT_FOUND:
            return None
        return _raise(rc)

    def incr(self, key, delta=1):
        """Add ``delta`` (wrapping at 2**64); return the new value or None if missing."""
        return self._delta(key, delta, 1)

    def decr(self, key, delta=1):
        """Subtract ``delta`` (stopping at 0); return the new value or None if missing."""
        return self._delta(key, delta, 0)

    def flush_all(self, delay=0):
        """Invalidate every item now, or at ``delay`` (an expiration time) from now."""
        cdef int64_t d = _exptime(delay, "delay")
        self._tick()
        store_flush_all(&self._s, d)

    # -- meta commands (see the python backend's methods for what each does) -------------

    def peek(self, key):
        """Return ``(value, flags, cas, exptime, atime, bits)`` of a live item without a fetch,
        or None."""
        key = _key(key)
        self._tick()
        cdef item *it = store_peek(&self._s, PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key))
        if it == NULL:
            return None
        return _state(it, it.exptime, it.atime, it.iflags & ITEM_STATE_BITS)

    def pin(self, key):
        """The live value of ``key`` pinned in place (a PinnedValue, as a reply being sent holds
        it), found without a fetch; None on a miss or when it cannot be pinned (small, or the
        pin limit is reached). For tests and tools: the sessions pin what they send."""
        key = _key(key)
        self._tick()
        cdef item *it = store_peek(&self._s, PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key))
        if it == NULL:
            return None
        return pin_value(self, it)

    def meta_get(self, key, exptime=None, bump=True, vivify=None):
        """mg's lookup: the item's state before this call, and whether it was created; or None."""
        key = _key(key)
        cdef int64_t e = 0, viv = 0
        cdef int touch = _opt_exptime(exptime, &e)
        cdef int vivify_on_miss = _opt_exptime(vivify, &viv)
        cdef item_state before
        self._tick()
        cdef item *it = store_meta_get(&self._s, PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key),
                                       touch, e, bool(bump), vivify_on_miss, viv, &before)
        if it == NULL:
            return None
        return _state(it, before.exptime, before.atime, before.state) + (bool(before.created),)

    def mark(self, key, set_bits=0, clear_bits=0, exptime=None):
        """Change a live item's state bits or expiry in place; False if there is none."""
        key = _key(key)
        _check_range("set_bits", set_bits, 0, STATE_BITS)
        _check_range("clear_bits", clear_bits, 0, STATE_BITS)
        cdef int64_t e = 0
        cdef int touch = _opt_exptime(exptime, &e)
        self._tick()
        return store_mark(&self._s, PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key), set_bits,
                          clear_bits, touch, e) != STORE_NOT_FOUND

    def meta_update(self, mode, key, value, flags=0, exptime=0, cas_unique=0, *, binary=False,
                    stale=False):
        """ms: store in ``mode``; return the outcome and the new item's CAS (0 unless STORED)."""
        _check_range("mode", mode, 0, MODE_CAS)
        key = _key(key)
        if type(value) is not bytes:
            value = bytes(value)
        _check_range("flags", flags, 0, 2 ** 32 - 1)
        cdef int64_t e = _exptime(exptime)
        _check_range("cas_unique", cas_unique, 0, 2 ** 64 - 1)
        cdef uint64_t cas = 0
        self._tick()
        result = _raise(store_meta_update(&self._s, mode, PyBytes_AS_STRING(key),
                                          PyBytes_GET_SIZE(key), PyBytes_AS_STRING(value),
                                          PyBytes_GET_SIZE(value), flags, e, cas_unique,
                                          bool(binary), bool(stale), &cas))
        return result, (cas if result is Result.STORED else 0)

    def meta_delete(self, key, cas_unique=None, stale=False, exptime=None):
        """md: DELETED (or invalidated, with ``stale``), NOT_FOUND or EXISTS."""
        key = _key(key)
        cdef uint64_t c = 0
        if cas_unique is not None:
            _check_range("cas_unique", cas_unique, 0, 2 ** 64 - 1)
            c = cas_unique
        cdef int64_t e = 0
        cdef int touch = _opt_exptime(exptime, &e)
        self._tick()
        return _raise(store_meta_delete(&self._s, PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key),
                                        cas_unique is not None, c, bool(stale), touch, e))

    def meta_delta(self, key, incr, delta, cas_unique=0, count_miss=True, exptime=None):
        """ma: ``(result, number, cas, exptime before)``; result STORED, NOT_FOUND or EXISTS."""
        key = _key(key)
        _check_range("delta", delta, 0, 2 ** 64 - 1)
        _check_range("cas_unique", cas_unique, 0, 2 ** 64 - 1)
        cdef int64_t e = 0
        cdef int touch = _opt_exptime(exptime, &e)
        cdef uint64_t number = 0, cas = 0
        cdef uint32_t before = 0
        self._tick()
        cdef int rc = store_meta_delta(&self._s, PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key),
                                       bool(incr), delta, cas_unique, bool(count_miss), touch, e,
                                       &number, &cas, &before)
        if rc == STORE_STORED:
            return Result.STORED, number, cas, before
        if rc == STORE_NOT_FOUND or rc == STORE_EXISTS:
            return _RESULTS[rc], 0, 0, 0
        return _raise(rc)

    def vivify(self, key, value, exptime=0, bits=0):
        """mg N, ma N: create an item if ``key`` holds none; its CAS, or 0 if one is there."""
        key = _key(key)
        if type(value) is not bytes:
            value = bytes(value)
        cdef int64_t e = _exptime(exptime)
        _check_range("bits", bits, 0, STATE_BITS)
        cdef uint64_t cas = 0
        self._tick()
        cdef int rc = store_vivify(&self._s, PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key),
                                   PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value), e, bits, &cas)
        if rc == STORE_NOT_STORED:
            return 0
        _raise(rc)
        return cas

    # -- background work, stats, snapshots ----------------------------------------------

    def reclaim(self, limit=1000):
        """Free up to ``limit`` dead items; return how many were freed."""
        _check_range("limit", limit, 0, 2 ** 64 - 1)
        self._tick()
        return store_reclaim(&self._s, limit)

    def stats(self):
        """Return memcached-named counters and gauges."""
        cdef store_stats *st = &self._s.stats
        out = {
            "curr_items": self._s.curr_items,
            "total_items": st.total_items,
            "bytes": self._s.bytes,
            "limit_maxbytes": self._s.max_bytes,
            "limit_maxitems": self._s.max_items,
            "evictions": st.evictions,
            "expired_unfetched": st.expired_unfetched,
            "evicted_unfetched": st.evicted_unfetched,
            "reclaimed": st.reclaimed,
            "get_hits": st.get_hits,
            "get_misses": st.get_misses,
            "get_expired": st.get_expired,
            "get_flushed": st.get_flushed,
            "cmd_get": st.cmd_get,
            "cmd_set": st.cmd_set,
            "cmd_touch": st.cmd_touch,
            "cmd_flush": st.cmd_flush,
            "delete_hits": st.delete_hits,
            "delete_misses": st.delete_misses,
            "incr_hits": st.incr_hits,
            "incr_misses": st.incr_misses,
            "decr_hits": st.decr_hits,
            "decr_misses": st.decr_misses,
            "cas_hits": st.cas_hits,
            "cas_misses": st.cas_misses,
            "cas_badval": st.cas_badval,
            "touch_hits": st.touch_hits,
            "touch_misses": st.touch_misses,
            "hash_power_level": self._s.table.hashpower,
            "hash_bytes": assoc_bytes(&self._s.table),
            "hash_is_expanding": int(self._s.table.old != NULL),
        }
        return {name: out[name] for name in STAT_NAMES}

    def memory(self):
        """What the items occupy: ``slab_bytes`` (pages and large chunks held), ``hash_bytes``,
        ``pages_compacted`` (slab pages emptied by moving their items; see csrc/slabs.h), and
        the pins of values being sent (csrc/store.h): ``pinned_items``, ``pinned_bytes`` (at
        most ``pin_limit``) and ``pin_refused`` (values copied because the limit was reached)."""
        return {
            "slab_bytes": self._s.mem.bytes_held,
            "hash_bytes": assoc_bytes(&self._s.table),
            "pages_compacted": self._s.pages_compacted,
            "pinned_items": self._s.npins,
            "pinned_bytes": self._s.pinned_bytes,
            "pin_limit": self._s.pin_limit,
            "pin_refused": self._s.pin_refused,
        }

    @property
    def pin_limit(self):
        """Bytes of items that replies being sent may pin at most (csrc/store.h, "Pins"):
        past it a large value is copied into the reply instead."""
        return self._s.pin_limit

    @pin_limit.setter
    def pin_limit(self, value):
        _check_range("pin_limit", value, 0, 2 ** 63 - 1)
        self._s.pin_limit = value

    @property
    def eviction_log(self):
        """True while the store keeps a log of what it evicts (``watch evictions``)."""
        return self._s.evlog != NULL

    @eviction_log.setter
    def eviction_log(self, on):
        if store_evlog_enable(&self._s, 1 if on else 0) != 0:
            raise MemoryError()

    def take_evictions(self):
        """What was evicted since the last call, and how many evictions the full log dropped:
        ``([(key, nbytes, flags, ttl, idle, fetched)], dropped)``; None if nothing (or no log).
        ttl is the seconds it had left (-1: none) and idle the seconds since its last access,
        both as of its eviction."""
        cdef store_evicted *e
        cdef uint32_t i
        if self._s.evlog == NULL or (self._s.evlog_n == 0 and self._s.evlog_dropped == 0):
            return None
        events = []
        for i in range(self._s.evlog_n):
            e = &self._s.evlog[i]
            events.append((PyBytes_FromStringAndSize(e.key, e.nkey), e.nbytes, e.flags,
                           <int64_t>e.exptime - <int64_t>e.at if e.exptime else -1,
                           <int64_t>e.at - <int64_t>e.atime, bool(e.fetched)))
        dropped = self._s.evlog_dropped
        self._s.evlog_n = 0
        self._s.evlog_dropped = 0
        return events, dropped

    def reset_stats(self):
        """Zero the counters that memcached's ``stats reset`` clears."""
        store_reset_stats(&self._s)

    def class_stats(self):
        """What freed items per reported size class, for ``stats items``: ``{class id:
        (evicted, evicted_nonzero, evicted_time, evicted_unfetched, reclaimed,
        expired_unfetched)}`` for the classes where any is not 0."""
        cdef store_stats *st = &self._s.stats
        out = {}
        for c in range(1, SLAB_REPORT_CLASSES + 1):
            row = (st.cls_evicted[c], st.cls_evicted_nonzero[c], st.cls_evicted_time[c],
                   st.cls_evicted_unfetched[c], st.cls_reclaimed[c], st.cls_expired_unfetched[c])
            if any(row):
                out[c] = row
        return out

    def size_classes(self):
        """Return the allocator's use per reported size class (csrc/slabs.h), for ``stats
        slabs`` and ``stats items``: ``{class id: [used chunks, chunks, pages, bytes]}``, the
        classes holding memory only. Small chunks sit in 64 KiB pages; a large chunk is a page
        of its own; bytes are the chunks' sizes."""
        cdef slabs *m = &self._s.mem
        cdef int c, r
        cdef uint32_t chunk
        out = {}
        for c in range(SLAB_CLASSES):
            if m.cls_pages[c] == 0:
                continue
            chunk = (c + 1) * SLAB_UNIT
            r = slabs_report_class(chunk)
            row = out.setdefault(r, [0, 0, 0, 0])
            row[0] += m.cls_live[c]
            row[1] += m.cls_pages[c] * (SLAB_PAGE_SIZE // chunk)
            row[2] += m.cls_pages[c]
            row[3] += <uint64_t>m.cls_live[c] * chunk
        for r in range(1, SLAB_REPORT_CLASSES + 1):
            if m.large_live[r]:
                row = out.setdefault(r, [0, 0, 0, 0])
                row[0] += m.large_live[r]
                row[1] += m.large_live[r]
                row[2] += m.large_live[r]
                row[3] += m.large_bytes[r]
        return dict(sorted(out.items()))

    def oldest_atime(self):
        """The last access (store clock) of the LRU tail, or None when empty."""
        cdef item *it = store_oldest(&self._s)
        return None if it == NULL else it.atime

    def dump_cursor(self):
        """Return a cursor over every item for ``lru_crawler metadump`` and ``stats
        cachedump``: ``next(count)`` gives the next entries, each ``(key, exptime, atime, cas,
        bits, size, value length, class)`` (times on the store clock, ``size`` the chunk's,
        ``class`` the reported one), an empty list at the end.

        The store may change between calls: the cursor is a hash bucket, so an item present for
        the whole walk is listed once, or twice if the table grew meanwhile; one stored or
        deleted during it may or may not be.
        """
        return _DumpCursor(self)


    def __len__(self):
        return self._s.curr_items

    @property
    def now(self):
        """The store's clock as the last call read it: the time its expiry and access times are on."""
        return self._s.now

    @property
    def cas_counter(self):
        """The last CAS unique handed out."""
        return self._s.cas

    def items(self):
        """Yield ``(key, value, flags, exptime, cas)`` of every live item, LRU tail first.

        Raises RuntimeError if the store is used while the walk is in progress.
        """
        return self._walk(False)

    def records(self):
        """Yield items() with each item's state: ``(key, value, flags, exptime, cas, atime,
        bits)``, as load() takes them back.

        Raises RuntimeError if the store is used while the walk is in progress.
        """
        return self._walk(True)

    def _walk(self, state):
        self._tick()
        cdef uint64_t version = self._version
        cdef item *it = store_oldest(&self._s)
        cdef item *newer
        while it != NULL:
            newer = store_newer(&self._s, it)
            if not store_item_dead(&self._s, it):
                entry = (PyBytes_FromStringAndSize(item_key(it), it.nkey),
                         PyBytes_FromStringAndSize(item_value(it), it.nbytes),
                         item_flags(it), it.exptime, it.cas)
                if state:
                    entry += (it.atime, it.iflags & ITEM_STATE_BITS)
                yield entry
                if self._version != version:
                    raise RuntimeError("store changed during the walk of its items")
            it = newer

    def reserve(self, n):
        """Prepare an empty store for ``n`` items (sizes the hash table once, up front)."""
        _check_range("n", n, 0, 2 ** 63 - 1)
        if assoc_reserve(&self._s.table, n) != 0:
            raise MemoryError()

    def load(self, items, cas_counter=0):
        """Insert items as :meth:`items` or :meth:`records` yield them, each becoming the most
        recent; return how many were kept (dead ones are skipped). The CAS counter moves past
        every CAS seen. Without a state (5-tuples, or atime 0) an item was last accessed now;
        an atime in the future is now.
        """
        self._tick()
        cdef int rc
        kept = 0
        for rec in items:
            if len(rec) == 5:
                key, value, flags, exptime, cas = rec
                atime = bits = 0
            else:
                key, value, flags, exptime, cas, atime, bits = rec
            key = _key(key)
            _check_range("flags", flags, 0, 2 ** 32 - 1)
            _check_range("exptime", exptime, 0, 2 ** 32 - 1)
            _check_range("cas", cas, 1, CAS_MAX)
            _check_range("atime", atime, 0, 2 ** 32 - 1)
            _check_range("bits", bits, 0, STATE_BITS)
            if type(value) is not bytes:
                value = bytes(value)
            self._version += 1  # each insert may evict: an items() walk feeding us must stop
            rc = store_load(&self._s, PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key),
                            PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value), flags, exptime, cas,
                            atime, bits)
            if rc < 0:
                _raise(rc)
            kept += rc
        _check_range("cas_counter", cas_counter, 0, CAS_MAX)
        if cas_counter > self._s.cas:
            self._s.cas = cas_counter
        return kept


@cython.no_gc_clear  # NOTE: __dealloc__ needs self.store to unpin
cdef class PinnedValue:
    """A live item's value, read in place while a reply carrying it is sent.

    The item stays pinned (csrc/store.h, "Pins": it is neither freed nor changed, even if it is
    deleted, overwritten, evicted or flushed meanwhile) until this object goes; it holds the
    store, so the store outlives it. It exposes the value through the buffer protocol
    (read-only), so ``bytes(v)`` or ``b"".join`` copy it where a copy is wanted (TLS).
    """

    def __len__(self):
        return self.size

    def __getbuffer__(self, Py_buffer *view, int flags):
        PyBuffer_FillInfo(view, self, <void *>self.ptr, self.size, 1, flags)

    def __releasebuffer__(self, Py_buffer *view):
        pass

    def __dealloc__(self):
        if self.it != NULL:
            store_unpin(&self.store._s, self.it)
            self.it = NULL


cdef PinnedValue pin_value(Store store, item *it):
    """``it``'s value pinned, or None when it cannot be (small, or the pin limit is reached)."""
    cdef PinnedValue v
    if store_pin(&store._s, it) != 0:
        return None
    v = PinnedValue.__new__(PinnedValue)
    v.store = store
    v.it = it
    v.ptr = item_value(it)
    v.size = it.nbytes
    return v


cdef class _DumpCursor:
    """A walk of the native hash table, bucket by bucket (see Store.dump_cursor)."""

    cdef Store owner
    cdef uint64_t bucket
    cdef bint done

    def __init__(self, Store owner):
        self.owner = owner

    def next(self, Py_ssize_t count):
        """Return up to about ``count`` entries (whole buckets): [] once the walk is over, None
        when there is nothing to give yet (the table is growing: call again later)."""
        cdef store *s = &self.owner._s
        cdef uint64_t size
        cdef item_ref ref
        cdef item *it
        cdef size_t chunk
        cdef uint64_t stop
        out = []
        if self.done:
            return out
        self.owner._tick()
        if s.table.old != NULL and assoc_step(&s.table, 65536):
            # NOTE: growing; buckets move between the tables. PERF: each call moves a bounded
            # share, the walk goes on once the table is whole again (at most a few calls).
            return None
        size = (<uint64_t>1) << s.table.hashpower
        # PERF: a sparse table is walked a bounded stretch at a time too.
        stop = self.bucket + 4 * <uint64_t>count + 1024
        while self.bucket < size and self.bucket < stop and len(out) < count:
            ref = s.table.primary[self.bucket]
            self.bucket += 1
            while ref != 0:
                it = <item *>slabs_ptr(&s.mem, ref)
                ref = it.h_next
                if store_item_dead(s, it):
                    continue
                chunk = item_size(it)
                if chunk <= 4096:
                    chunk = (chunk + 7) & ~(<size_t>7)
                out.append((PyBytes_FromStringAndSize(item_key(it), it.nkey), it.exptime, it.atime,
                            it.cas, it.iflags & ITEM_STATE_BITS, chunk, it.nbytes,
                            slabs_report_class(chunk)))
        if self.bucket >= size:
            self.done = True
            return out
        return out or None
