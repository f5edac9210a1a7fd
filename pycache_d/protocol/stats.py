"""The ``stats`` command and its subcommands, as memcached 1.6 words them.

``stats`` merges the server (:class:`ServerContext`), the store's counters and the server-wide
counters sessions keep in the context into memcached 1.6.18's order (:data:`GENERAL_ORDER`);
names memcached does not know (``limit_maxitems``) follow in the order they came. A field with
no counterpart here (libevent's version, memcached's response objects and read buffers, its
segmented LRU's moves) is left out rather than shown as a made-up zero.

``stats items`` and ``stats slabs`` name memcached's default size classes (ids 1..39, factor
1.25 from 96 bytes: what ``stats cachedump`` tools walk), each holding the native allocator's
8-byte classes that fall in it (csrc/slabs.h); the python backend derives the same figures
from its items' sizes. There is one LRU, not one per class: every class's ``age`` is the LRU
tail's, and its items count as cold (memcached's ``lru mode flat``).
"""

from __future__ import annotations

from typing import Any

from ..store.semantics import PAGE_SIZE, SLAB_SIZES, SMALL_CHUNK_MAX
from . import detail, dump, wire
from .context import ServerContext

#: The order of memcached 1.6.18's ``stats`` (server_stats(), then the slab and LRU totals).
GENERAL_ORDER = (
    "pid uptime time version libevent pointer_size rusage_user rusage_system max_connections "
    "curr_connections total_connections rejected_connections connection_structures "
    "response_obj_oom response_obj_count response_obj_bytes read_buf_count read_buf_bytes "
    "read_buf_bytes_free read_buf_oom reserved_fds "
    "cmd_get cmd_set cmd_flush cmd_touch cmd_meta get_hits get_misses get_expired get_flushed "
    "delete_misses delete_hits incr_misses incr_hits decr_misses decr_hits cas_misses cas_hits "
    "cas_badval touch_hits touch_misses store_too_large store_no_memory auth_cmds auth_errors "
    "idle_kicks bytes_read bytes_written limit_maxbytes accepting_conns listen_disabled_num "
    "time_in_listen_disabled_us threads conn_yields hash_power_level hash_bytes hash_is_expanding "
    "slab_reassign_rescues slab_reassign_chunk_rescues slab_reassign_evictions_nomem "
    "slab_reassign_inline_reclaim slab_reassign_busy_items slab_reassign_busy_deletes "
    "slab_reassign_running slabs_moved lru_crawler_running lru_crawler_starts "
    "lru_maintainer_juggles malloc_fails log_worker_dropped log_worker_written "
    "log_watcher_skipped log_watcher_sent log_watchers "
    "ssl_handshake_errors time_since_server_cert_refresh unexpected_napi_ids round_robin_fallback "
    "bytes curr_items total_items slab_global_page_pool expired_unfetched evicted_unfetched "
    "evicted_active evictions reclaimed crawler_reclaimed crawler_items_checked lrutail_reflocked "
    "moves_to_cold moves_to_warm moves_within_lru direct_reclaims lru_bumps_dropped"
).split()
_RANK = {name: i for i, name in enumerate(GENERAL_ORDER)}

# The per-class counters of ``stats items`` after number, age and mem_requested (memcached
# 1.6.18's list): kept for the whole cache only (``stats``), so 0 per class.
_ITEMS_ORDER = (
    "number number_hot number_warm number_cold age_hot age_warm age mem_requested evicted "
    "evicted_nonzero evicted_time outofmemory tailrepairs reclaimed expired_unfetched "
    "evicted_unfetched evicted_active crawler_reclaimed crawler_items_checked lrutail_reflocked "
    "moves_to_cold moves_to_warm moves_within_lru direct_reclaims hits_to_hot hits_to_warm "
    "hits_to_cold hits_to_temp"
).split()

# Per-class counters of ``stats slabs`` memcached keeps per class and we for the whole cache.
_SLAB_COUNTERS = "get_hits cmd_set delete_hits incr_hits decr_hits cas_hits cas_badval touch_hits".split()


def _lines(pairs: list[tuple[str, object]]) -> bytes:
    """Render ``STAT name value`` lines and the closing END."""
    return "".join(f"STAT {name} {value}\r\n" for name, value in pairs).encode() + wire.END


def general(store: Any, ctx: ServerContext) -> list[tuple[str, object]]:
    """Return the ``stats`` pairs in memcached's order."""
    merged: dict[str, object] = dict(ctx.general_stats())
    merged.update(store.stats())
    counters = ctx.counters
    merged.update(counters)
    bytes_read, bytes_written, yields = ctx.traffic()
    memory = getattr(store, "memory", None)
    merged.update(
        bytes_read=bytes_read,
        bytes_written=bytes_written,
        conn_yields=yields,
        # The slab mover: native compaction empties pages by moving their items (slabs.h).
        slab_reassign_rescues=0,
        slab_reassign_chunk_rescues=0,
        slab_reassign_evictions_nomem=0,
        slab_reassign_inline_reclaim=0,
        slab_reassign_busy_items=0,
        slab_reassign_busy_deletes=0,
        slab_reassign_running=0,
        slabs_moved=memory()["pages_compacted"] if memory is not None else 0,
        lru_crawler_running=int(ctx.dumps > 0),
        log_worker_dropped=0,
        log_worker_written=counters["log_watcher_sent"],
        log_watchers=len(ctx.watchers),
        slab_global_page_pool=0,  # emptied pages go back to the system at once
        evicted_active=0,
        crawler_reclaimed=0,
    )
    ranked = sorted(merged, key=lambda name: _RANK.get(name, len(_RANK)))
    return [(name, merged[name]) for name in ranked]


def _age(store: Any) -> int:
    oldest = store.oldest_atime()
    return 0 if oldest is None else max(0, store.now - oldest)


def items(store: Any) -> list[tuple[str, object]]:
    """Return ``stats items``: one block per size class holding items."""
    age = _age(store)
    freed = store.class_stats()
    out: list[tuple[str, object]] = []
    for cls, (used, _chunks, _pages, mem) in store.size_classes().items():
        if not used:
            continue  # memcached too shows only the classes that hold items
        values: dict[str, object] = dict.fromkeys(_ITEMS_ORDER, 0)
        values.update(number=used, number_cold=used, age=age, mem_requested=mem)
        row = freed.get(cls)
        if row is not None:
            evicted, nonzero, evicted_time, unfetched, reclaimed, expired_unfetched = row
            values.update(
                evicted=evicted,
                evicted_nonzero=nonzero,
                evicted_time=evicted_time,
                evicted_unfetched=unfetched,
                reclaimed=reclaimed,
                expired_unfetched=expired_unfetched,
            )
        out += [(f"items:{cls}:{name}", value) for name, value in values.items()]
    return out


def slabs(store: Any) -> list[tuple[str, object]]:
    """Return ``stats slabs``: the pages and chunks of each size class that holds memory."""
    out: list[tuple[str, object]] = []
    total = 0
    classes = store.size_classes()
    for cls, (used, chunks, pages, mem) in classes.items():
        size = SLAB_SIZES[cls - 1]
        per_page = PAGE_SIZE // size if size <= SMALL_CHUNK_MAX else 1
        out += [
            (f"{cls}:chunk_size", size),
            (f"{cls}:chunks_per_page", per_page),
            (f"{cls}:total_pages", pages),
            (f"{cls}:total_chunks", chunks),
            (f"{cls}:used_chunks", used),
            (f"{cls}:free_chunks", chunks - used),
            (f"{cls}:free_chunks_end", 0),
        ]
        out += [(f"{cls}:{name}", 0) for name in _SLAB_COUNTERS]
        total += pages * PAGE_SIZE if size <= SMALL_CHUNK_MAX else mem
    out += [("active_slabs", len(classes)), ("total_malloced", total)]
    return out


def reply(store: Any, ctx: ServerContext, toks: list[bytes], session: Any = None) -> bytes:
    """Answer ``stats [<subcommand> ...]``; unknown subcommands get ``ERROR`` as in memcached.

    ``stats cachedump`` starts a sliced dump on ``session`` (see :mod:`.dump`) and answers b"".
    """
    if len(toks) == 1:
        return _lines(general(store, ctx))
    sub = toks[1]
    if sub == b"reset":
        store.reset_stats()
        ctx.reset_stats()
        return wire.RESET
    if sub == b"settings":
        return _lines(ctx.settings_stats())
    if sub == b"items":
        return _lines(items(store))
    if sub == b"slabs":
        return _lines(slabs(store))
    if sub == b"sizes":
        return _lines([("sizes_status", "disabled")])
    if sub == b"conns":
        return _lines(ctx.conns_stats())
    if sub == b"detail":
        return detail.command(ctx, toks)
    if sub == b"cachedump":
        return dump.cachedump(session, toks)
    return wire.ERROR
