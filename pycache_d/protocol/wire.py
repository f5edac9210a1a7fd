"""The memcached text protocol's vocabulary: the session-level reply table and C-exact number parsing.

The store's outcomes and errors carry their own reply lines (:mod:`pycache_d.store.errors`); this module
holds the ones only the protocol layer produces, so every reply string lives in one of two tables.

Numbers are parsed as memcached 1.6 parses them (``util.c``: ``safe_strtoul``, ``safe_strtol``,
``safe_strtoull``), because clients do send ``+5``, ``05`` or ``4294967296`` and expect what
memcached does with them: leading C whitespace and a sign are accepted, the number must end at the
end of the token or at a whitespace byte, values are truncated to the C type after the range check
of the wider C ``long``. Python's ``int()`` differs (it accepts ``1_000`` and trailing spaces), so
it is only used once the token is known to be plain digits.
"""

from __future__ import annotations

from typing import Any

from ..store.errors import StoreError
from ..store.semantics import ITEM_OVERHEAD, scan_decimal

# -- replies the session produces (protocol.txt, "Error strings" and the command sections) ---------

ERROR = b"ERROR\r\n"
END = b"END\r\n"
OK = b"OK\r\n"
RESET = b"RESET\r\n"
MN = b"MN\r\n"
EN = b"EN\r\n"
BAD_FORMAT = b"CLIENT_ERROR bad command line format\r\n"
BAD_DATA_CHUNK = b"CLIENT_ERROR bad data chunk\r\n"
BAD_EXPTIME = b"CLIENT_ERROR invalid exptime argument\r\n"
BAD_DELTA = b"CLIENT_ERROR invalid numeric delta argument\r\n"
DELETE_USAGE = b"CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n"
DETAIL_USAGE = b"CLIENT_ERROR usage: stats detail on|off|dump\r\n"
MEMLIMIT_TOO_SMALL = b"MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m\r\n"
MEMLIMIT_NOT_BYTES = b"MEMLIMIT_ADJUST_FAILED input value is megabytes not bytes\r\n"
SHUTDOWN_DISABLED = b"ERROR: shutdown not enabled\r\n"
SHUTDOWN_BAD_MODE = b"CLIENT_ERROR invalid shutdown mode\r\n"
# Admin commands (proto_text.c: process_stat, process_lru_crawler_command, ...).
BAD_COMMAND_LINE = b"CLIENT_ERROR bad command line\r\n"
CACHEDUMP_NOT_ALLOWED = b"CLIENT_ERROR stats cachedump not allowed\r\n"
ILLEGAL_SLAB = b"CLIENT_ERROR Illegal slab id\r\n"
METADUMP_NOT_ALLOWED = b"ERROR metadump not allowed\r\n"
CRAWLER_DISABLED = b"CLIENT_ERROR lru crawler disabled\r\n"
CRAWLER_BUSY = b"BUSY currently processing crawler request\r\n"
BADCLASS = b"BADCLASS invalid class id\r\n"
CRAWLER_START_FAILED = b"ERROR failed to start lru crawler thread\r\n"
CRAWLER_SLEEP_TOO_LONG = b"CLIENT_ERROR sleep must be one second or less\r\n"
LRU_PCTS = b"ERROR hot and warm pcts must not exceed 80\r\n"
LRU_FACTORS = b"ERROR hot/warm age factors must be greater than 0\r\n"
REASSIGN_NOSPARE = b"NOSPARE source class has no spare pages\r\n"
REASSIGN_SAME = b"SAME src and dst class are identical\r\n"
REASSIGN_BADCLASS = b"BADCLASS invalid src or dst class id\r\n"
WATCH_NOT_ALLOWED = b"CLIENT_ERROR watch commands not allowed\r\n"
WATCHER_TOO_MANY = b"WATCHER_TOO_MANY log watcher limit reached\r\n"
# Meta commands (proto_text.c, process_m*_command and _meta_flag_preparse).
META_KEY_DECODE = b"CLIENT_ERROR error decoding key\r\n"
META_OPAQUE_TOO_LONG = b"CLIENT_ERROR opaque token too long\r\n"
META_INVALID_FLAG = b"CLIENT_ERROR invalid flag\r\n"
META_DUPLICATE_FLAG = b"CLIENT_ERROR duplicate flag\r\n"
META_INVALID_OR_DUPLICATE = b"CLIENT_ERROR invalid or duplicate flag\r\n"
META_BAD_TOKEN = b"CLIENT_ERROR bad token in command line format\r\n"
META_MS_MODE = b"CLIENT_ERROR invalid mode for ms M token\r\n"
META_MA_MODE = b"CLIENT_ERROR invalid mode for ma M token\r\n"
META_M_LENGTH = b"CLIENT_ERROR incorrect length for M token\r\n"
META_BAD_INITIAL = b"CLIENT_ERROR invalid numeric initial value\r\n"
META_BAD_DELTA = b"CLIENT_ERROR invalid numeric delta value\r\n"
META_TOO_MANY_FLAGS = b"CLIENT_ERROR options flags are too long\r\n"  # mg's wording
META_TOO_MANY_FLAGS_MSDA = b"CLIENT_ERROR options flags too long\r\n"  # ms, md and ma say it so
# ma when the counter's longer value, or the item it vivifies, cannot be allocated (-I, -m).
META_DELTA_NO_MEMORY = b"SERVER_ERROR out of memory\r\n"
META_VIVIFY_NO_MEMORY = b"SERVER_ERROR Out of memory allocating new item\r\n"

# -- C-compatible number parsing ------------------------------------------------------------------

_U64 = 2**64
_I64_MAX = 2**63 - 1


def parse_u32(tok: bytes) -> int | None:
    """Parse a 32-bit unsigned number as ``safe_strtoul`` does (client flags, verbosity)."""
    if tok.isdigit() and len(tok) < 10:
        return int(tok)
    # NOTE: memcached range-checks the 64-bit unsigned long and then stores it in a uint32_t.
    value = parse_u64(tok)
    return None if value is None else value & 0xFFFFFFFF


def parse_i32(tok: bytes) -> int | None:
    """Parse a 32-bit signed number as ``safe_strtol`` does (expiration times, lengths)."""
    if tok.isdigit() and len(tok) < 10:
        return int(tok)
    parsed = scan_decimal(tok)
    if parsed is None:
        return None
    negative, value = parsed
    if negative:
        value = -value
    if not -(2**63) <= value <= _I64_MAX:
        return None  # ERANGE on the 64-bit long
    # NOTE: the long is then truncated into an int32_t, as memcached does.
    value &= 0xFFFFFFFF
    return value - 2**32 if value >= 2**31 else value


def parse_u64(tok: bytes) -> int | None:
    """Parse a 64-bit unsigned number as ``safe_strtoull`` does (CAS uniques, deltas)."""
    if tok.isdigit() and len(tok) < 20:
        return int(tok)
    parsed = scan_decimal(tok)
    if parsed is None:
        return None
    negative, value = parsed
    if value >= _U64:
        return None
    if negative:
        value = -value % _U64
        if value > _I64_MAX:
            return None
    return value


# -- a refused set ----------------------------------------------------------------------------------

#: Largest value forget() builds to make the store refuse a set (see there).
_MAX_DROP_PROBE = 4 * 1024 * 1024


def forget(store: Any, key: bytes) -> None:
    """Make the store forget ``key`` after a too-large set, as memcached does (text and binary).

    The store drops the old value itself when a set is too large, without counting a delete;
    we hand it the smallest such value rather than buffer the client's block. APPSEC: with a
    huge ``-I`` that value would be a huge allocation per request, so then we delete instead.
    """
    size = store.max_item_size - len(key) - ITEM_OVERHEAD + 1
    try:
        if size <= _MAX_DROP_PROBE:
            store.set(key, bytes(size))
        else:
            store.delete(key)
    except (StoreError, ValueError):
        pass  # refused, as intended (or the key itself was: nothing to drop)


# -- base64 keys (meta commands' b flag) -------------------------------------------------------

#: Value of each byte in base64 (``=`` counts as 0, as in memcached's table); 0x80: not base64.
_B64_VALUE = bytes(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".find(bytes([c]))
    if bytes([c]) in b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    else (0 if c == 0x3D else 0x80)
    for c in range(256)
)


def decode_base64_key(token: bytes) -> bytes:
    """Decode a base64 key as memcached's ``base64_decode`` does; b"" if it refuses it.

    memcached is lenient: bytes outside the alphabet are skipped, the rest must be a nonzero
    multiple of 4, and decoding stops after the first group of four holding a ``=`` (one or
    two of them drop that many bytes; more refuse the key). So ``YQ==!``, ``Y!Q==`` and
    ``YQ==YQ==`` all decode to ``a``, while ``YQ`` and ``A===`` are refused.
    """
    values = _B64_VALUE
    count = sum(1 for c in token if values[c] != 0x80)
    if count == 0 or count % 4:
        return b""
    out = bytearray()
    block: list[int] = []
    pad = 0
    for c in token:
        v = values[c]
        if v == 0x80:
            continue
        if c == 0x3D:
            pad += 1
        block.append(v)
        if len(block) == 4:
            a, b, d, e = block
            out += bytes(((a << 2 | b >> 4) & 0xFF, (b << 4 | d >> 2) & 0xFF, (d << 6 | e) & 0xFF))
            block = []
            if pad:
                if pad > 2:
                    return b""
                del out[-pad:]
                break
    return bytes(out)
