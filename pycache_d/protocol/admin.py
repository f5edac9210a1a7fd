"""memcached's admin commands: ``lru_crawler``, ``lru``, ``slabs``, ``watch``, ``shutdown``.

Each is answered as memcached 1.6.18 answers it, word for word, including its replies to bad
arguments (proto_text.c). Where memcached tunes machinery we do not have (a segmented LRU, a
slab page mover, a crawler thread's pace) the setting is accepted, kept in ``ctx.tunables``
and reported by ``stats settings``; it changes nothing else. ``lru_crawler crawl`` is accepted
(the reclaimer frees expired items all the time anyway); ``lru_crawler metadump`` starts a key
dump (:mod:`.dump`); ``lru_crawler disable`` refuses later crawls and dumps, as memcached does.
"""

from __future__ import annotations

from typing import Any

from ..store.semantics import SLAB_SIZES
from . import dump, wire
from .wire import parse_i32, parse_u32


def _float(tok: bytes) -> float | None:
    """Parse a number as strtod does for these settings (a plain decimal)."""
    try:
        return float(tok)
    except ValueError:
        return None


def lru_crawler(session: Any, toks: list[bytes]) -> bytes:
    """Answer ``lru_crawler crawl|metadump|tocrawl|sleep <arg>`` and ``enable|disable``."""
    ctx = session.ctx
    t = ctx.tunables
    n = len(toks)
    sub = toks[1] if n > 1 else b""
    if n == 3 and sub == b"crawl":
        if t["lru_crawler"] != "yes":
            return wire.CRAWLER_DISABLED
        classes = dump._class_list(toks[2])
        if classes is False:
            return wire.BADCLASS
        if ctx.dumps:
            return wire.CRAWLER_BUSY
        ctx.counters["lru_crawler_starts"] += 1
        return wire.OK
    if n == 3 and sub == b"metadump":
        return dump.metadump(session, toks)
    if n == 3 and sub == b"tocrawl":
        value = parse_u32(toks[2])
        if value is None:
            return wire.BAD_FORMAT
        t["lru_crawler_tocrawl"] = value
        return wire.OK
    if n == 3 and sub == b"sleep":
        value = parse_u32(toks[2])
        if value is None:
            return wire.BAD_FORMAT
        if value > 1_000_000:
            return wire.CRAWLER_SLEEP_TOO_LONG
        t["lru_crawler_sleep"] = value
        return wire.OK
    if n == 2 and sub == b"enable":
        if t["lru_crawler"] == "yes":
            return wire.CRAWLER_START_FAILED  # memcached: its thread is running already
        t["lru_crawler"] = "yes"
        return wire.OK
    if n == 2 and sub == b"disable":
        t["lru_crawler"] = "no"
        return wire.OK
    return wire.ERROR


def lru(session: Any, toks: list[bytes]) -> bytes | None:
    """Answer ``lru tune|mode|temp_ttl ...`` (None: noreply)."""
    t = session.ctx.tunables
    n = len(toks)
    noreply = toks[-1] == b"noreply"
    sub = toks[1]
    reply = wire.ERROR
    if sub == b"tune" and n >= 6:
        hot, warm = parse_u32(toks[2]), parse_u32(toks[3])
        hot_factor, factor = _float(toks[4]), _float(toks[5])
        if hot is None or warm is None or hot_factor is None or factor is None:
            reply = wire.ERROR
        elif hot + warm > 80:
            reply = wire.LRU_PCTS
        elif factor <= 0 or hot_factor <= 0:
            reply = wire.LRU_FACTORS
        else:
            t.update(hot_lru_pct=hot, warm_lru_pct=warm)
            t.update(hot_max_factor=f"{hot_factor:.2f}", warm_max_factor=f"{factor:.2f}")
            reply = wire.OK
    elif sub == b"mode" and n >= 3:
        if toks[2] in (b"flat", b"segmented"):
            t["lru_segmented"] = "yes" if toks[2] == b"segmented" else "no"
            reply = wire.OK
    elif sub == b"temp_ttl" and n >= 3:
        ttl = parse_i32(toks[2])
        if ttl is not None:
            if ttl < 0:
                t["temp_lru"] = "no"
            else:
                t.update(temp_lru="yes", temporary_ttl=ttl)
            reply = wire.OK
    return None if noreply else reply


def _class_id(tok: bytes) -> int | None:
    """A signed class id as safe_strtol parses it (slabs reassign: -1 is any class)."""
    if tok.startswith(b"-"):
        value = parse_i32(tok[1:])
        return None if value is None else -value
    return parse_i32(tok)


def slabs(session: Any, toks: list[bytes]) -> bytes | None:
    """Answer ``slabs reassign <src> <dst>`` and ``slabs automove <0|1|2>|ratio <r>``."""
    t = session.ctx.tunables
    n = len(toks)
    if n == 4 and toks[1] == b"reassign":
        src, dst = _class_id(toks[2]), _class_id(toks[3])
        if src is None or dst is None:
            return wire.BAD_FORMAT
        top = len(SLAB_SIZES)
        if src == dst:  # memcached looks at this first
            return wire.REASSIGN_SAME
        if not 0 <= src <= top or not 0 <= dst <= top:  # 0: the global page pool
            return wire.REASSIGN_BADCLASS
        # NOTE: pages here are 64 KiB and go back to the system once empty (compaction empties
        # the ones a class does not need), so no class ever has a spare page to hand over.
        return wire.REASSIGN_NOSPARE
    if n >= 3 and toks[1] == b"automove":
        noreply = toks[-1] == b"noreply"
        if toks[2] == b"ratio":
            ratio = _float(toks[3]) if n >= 4 else None
            if ratio is None:
                reply = wire.ERROR
            else:
                t["slab_automove_ratio"] = f"{ratio:.2f}"
                reply = wire.OK
        else:
            level = parse_u32(toks[2])
            if level is None:
                reply = wire.BAD_FORMAT
            elif level > 2:
                reply = wire.ERROR
            else:
                t["slab_automove"] = level
                reply = wire.OK
        return None if noreply else reply
    return wire.ERROR


def shutdown(session: Any, toks: list[bytes]) -> bytes:
    """Answer ``shutdown [graceful]``: refused unless the server allows it (memcached's -A)."""
    ctx = session.ctx
    if not ctx.shutdown_enabled:
        return wire.SHUTDOWN_DISABLED
    if len(toks) == 1 or (len(toks) == 2 and toks[1] == b"graceful"):
        ctx.shutdown(len(toks) == 2)
        session.closing = True  # memcached closes the asking connection at once
        return b""
    return wire.SHUTDOWN_BAD_MODE
