"""memcached's rules that both store backends share: limits, expiry times, keys, counters.

The native backend implements the same rules in C (``csrc/store.c``); the differential tests
hold the two to identical results, so change both together.
"""

from __future__ import annotations

import bisect

#: The longest key memcached accepts.
MAX_KEY_LENGTH = 250

#: Fixed charge per item, on top of its key and value, against the memory limit. It stands for
#: the item header, the hash-table slot and allocator slack of the native backend; both backends
#: charge exactly ``len(key) + len(value) + ITEM_OVERHEAD`` so they evict at the same moments.
ITEM_OVERHEAD = 48

#: A lowered memory or item limit evicts at most this many items at once; the reclaimer evicts
#: the rest a slice at a time (PERF: 1M evictions take 2.3 s in Python, 0.55 s in C).
SHRINK_SLICE = 1000
#: Entries the eviction log (``watch evictions``) holds until taken (csrc/store.h's
#: STORE_EVLOG_SIZE); evictions past it are only counted.
EVLOG_SIZE = 1024

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_ITEM_SIZE = 1024 * 1024

#: protocol.txt: an expiration time of up to 30 days is relative, above that a Unix time.
REALTIME_MAXDELTA = 60 * 60 * 24 * 30

#: Expiry values the protocol accepts (memcached parses them as a signed 32-bit integer).
EXPTIME_MIN = -(2**31)
EXPTIME_MAX = 2**31 - 1

U32_MAX = 2**32 - 1
U64_MAX = 2**64 - 1
#: The largest CAS a snapshot may bring back: far from 2**64, so the counter can never wrap
#: (a wrapped counter would make new items look older than a flush_all).
CAS_MAX = 2**63 - 1

#: Storage modes of a write (``csrc/store.h``'s ``enum store_mode`` numbers them alike).
MODE_SET, MODE_ADD, MODE_REPLACE, MODE_APPEND, MODE_PREPEND, MODE_CAS = range(6)

#: The state an item carries besides its data, as memcached keeps it in ``it_flags``
#: (memcached.h). Both backends keep these bits per item, and a snapshot saves them.
#:
#: * FETCHED (ITEM_FETCHED): read since it was written (mg ``h``, me ``fetch``, the
#:   ``*_unfetched`` counters). The first fetch sets it; later fetches set the last-access time.
#: * WON (ITEM_TOKEN_SENT): a win token (mg ``W``) went out for this item; later readers see ``Z``.
#: * STALE (ITEM_STALE): invalidated by ``md I`` or ``ms I`` (mg ``X``).
#: * BINARY_KEY (ITEM_KEY_BINARY): written by ms under a base64 (``b``) key, so ``k`` and me show
#:   the key in base64.
FETCHED = 0x01
WON = 0x02
STALE = 0x04
BINARY_KEY = 0x08
STATE_BITS = FETCHED | WON | STALE | BINARY_KEY

# isspace() in the C locale, which is what memcached's safe_strtoull() relies on.
_C_SPACE = b" \t\n\v\f\r"


def is_valid_key(key: bytes) -> bool:
    """Return True if the store can hold ``key``: 1 to 250 bytes of any value.

    protocol.txt asks clients for keys without whitespace or control characters, but memcached
    itself stores any bytes: the text protocol only splits on spaces (memaslap's keys carry
    control bytes) and meta commands take binary keys in base64. The store follows memcached;
    the client library applies protocol.txt's stricter rule before sending.
    """
    return 0 < len(key) <= MAX_KEY_LENGTH


def absolute_expiry(exptime: int, now: int, wall_skew: int) -> int:
    """Turn a protocol expiration time into an absolute time on the store's clock (0 = never).

    0 never expires; a negative value is already expired; up to 30 days is relative to ``now``;
    anything larger is an absolute Unix time on the wall clock, which is ``wall_skew`` seconds
    ahead of the store's clock if it was stepped since (in the past means already expired).
    """
    if exptime == 0:
        return 0
    if exptime < 0:
        return 1  # long gone: any clock reading is later
    if exptime > REALTIME_MAXDELTA:
        return max(exptime - wall_skew, 1)
    return now + exptime


def scan_decimal(data: bytes) -> tuple[bool, int] | None:
    """Scan a number as memcached's ``safe_strto*`` helpers do: return ``(negative, magnitude)``.

    Optional leading C whitespace and one sign, at least one decimal digit, then the end of
    ``data``, a whitespace byte or a NUL. Anything else (nothing parsed included: memcached 1.6
    rejects a whitespace-only number) is None. Range checks are the caller's.
    """
    n = len(data)
    i = 0
    while i < n and data[i] in _C_SPACE:
        i += 1
    negative = False
    if i < n and data[i] in b"+-":
        negative = data[i] == 0x2D
        i += 1
    start = i
    while i < n and 0x30 <= data[i] <= 0x39:
        i += 1
    if i == start or (i < n and data[i] not in _C_SPACE and data[i] != 0):
        return None
    return negative, int(data[start:i])


def parse_counter(value: bytes) -> int | None:
    """Parse a stored value as incr/decr see it, or return None if it is not a number.

    Mirrors memcached's ``safe_strtoull``: decr pads shorter results with spaces, so ``b"9 "``
    is a number. Values above 2**64-1 and negative numbers are not numbers.
    """
    scanned = scan_decimal(value)
    if scanned is None:
        return None
    negative, number = scanned
    if number > U64_MAX:
        return None
    if negative and number:
        # strtoull() negates in unsigned arithmetic; memcached rejects the result if it reads as
        # a negative signed number and the text holds a '-'.
        number = (-number) & U64_MAX
        if number >= 2**63:
            return None
    return number


def counter_bytes(number: int, old_length: int) -> bytes:
    """Return the new value of a counter, padded with spaces to the old length if shorter.

    memcached rewrites a counter in place when the new digits fit, padding with spaces.
    """
    digits = b"%d" % number
    if len(digits) < old_length:
        return digits + b" " * (old_length - len(digits))
    return digits


# -- size classes (the native allocator's, csrc/slabs.h; the python backend derives the same) --

#: The native item's header before its key (csrc/item.h, offsetof(item, data)); client flags
#: other than 0 take 4 more bytes.
ITEM_HEADER = 38
#: The native allocator's chunks: 8-byte steps up to SMALL_CHUNK_MAX in 64 KiB pages; larger
#: items are one allocation each, of their exact size.
CHUNK_UNIT = 8
SMALL_CHUNK_MAX = 4096
PAGE_SIZE = 64 * 1024


def _report_sizes() -> tuple[int, ...]:
    """memcached's default size classes (-n 48 plus its 48-byte header, -f 1.25, 8-byte
    alignment, slab_chunk_max 512 KiB): the classes ``stats items`` and ``stats slabs`` name,
    the same table as csrc/slabs.c's."""
    sizes = []
    size = 96
    while size <= 524288 / 1.25:
        sizes.append(size)
        size = int(size * 1.25)
        size += -size % 8
    sizes.append(524288)
    return tuple(sizes)


#: Class id (1-based) - 1 -> its chunk size.
SLAB_SIZES = _report_sizes()


def chunk_size(nkey: int, nbytes: int, flags: int) -> int:
    """The bytes the native allocator gives an item of these key and value lengths."""
    size = ITEM_HEADER + (4 if flags else 0) + nkey + nbytes
    return size + (-size % CHUNK_UNIT) if size <= SMALL_CHUNK_MAX else size


def report_class(chunk: int) -> int:
    """The reported size class (1..len(SLAB_SIZES)) of a chunk of ``chunk`` bytes."""
    return min(bisect.bisect_left(SLAB_SIZES, chunk), len(SLAB_SIZES) - 1) + 1
