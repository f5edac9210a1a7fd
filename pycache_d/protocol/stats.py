"""The ``stats`` command and its subcommands, as memcached 1.6 words them.

``stats`` merges three sources into memcached's order: the server (:class:`ServerContext`), the
store's counters, and the server-wide counters sessions keep in the context. Names memcached does
not know (``limit_maxitems``) follow in the order they came. memcached's slab allocator has no
counterpart here: ``stats items`` and ``stats slabs`` describe the whole cache as one class, so
tools that read them see plausible totals.
"""

from __future__ import annotations

from typing import Any

from . import wire
from .context import ServerContext

#: The order of memcached 1.6.18's ``stats`` (the names we have).
GENERAL_ORDER = (
    "pid uptime time version libevent pointer_size rusage_user rusage_system max_connections "
    "curr_connections total_connections rejected_connections connection_structures reserved_fds "
    "cmd_get cmd_set cmd_flush cmd_touch cmd_meta get_hits get_misses get_expired get_flushed "
    "delete_misses delete_hits incr_misses incr_hits decr_misses decr_hits cas_misses cas_hits "
    "cas_badval touch_hits touch_misses store_too_large store_no_memory auth_cmds auth_errors "
    "idle_kicks bytes_read bytes_written limit_maxbytes accepting_conns listen_disabled_num "
    "time_in_listen_disabled_us threads conn_yields hash_power_level hash_bytes hash_is_expanding "
    "ssl_handshake_errors time_since_server_cert_refresh bytes curr_items total_items "
    "expired_unfetched evicted_unfetched evicted_active evictions reclaimed"
).split()
_RANK = {name: i for i, name in enumerate(GENERAL_ORDER)}

# The per-class counters of ``stats items``, after number (memcached 1.6.18's list).
_ITEMS_ZERO = (
    "number_hot number_warm number_cold age_hot age_warm age mem_requested evicted evicted_nonzero "
    "evicted_time outofmemory tailrepairs reclaimed expired_unfetched evicted_unfetched evicted_active "
    "crawler_reclaimed crawler_items_checked lrutail_reflocked moves_to_cold moves_to_warm "
    "moves_within_lru direct_reclaims hits_to_hot hits_to_warm hits_to_cold hits_to_temp"
).split()


def _lines(pairs: list[tuple[str, object]]) -> bytes:
    """Render ``STAT name value`` lines and the closing END."""
    return "".join(f"STAT {name} {value}\r\n" for name, value in pairs).encode() + wire.END


def general(store: Any, ctx: ServerContext) -> list[tuple[str, object]]:
    """Return the ``stats`` pairs in memcached's order."""
    merged: dict[str, object] = dict(ctx.general_stats())
    merged.update(store.stats())
    merged.update(ctx.counters)
    ranked = sorted(merged, key=lambda name: _RANK.get(name, len(_RANK)))
    return [(name, merged[name]) for name in ranked]


def items(store: Any) -> list[tuple[str, object]]:
    """Return ``stats items``: the whole cache as slab class 1 (nothing when it is empty)."""
    st = store.stats()
    if not st["curr_items"]:
        return []
    values: dict[str, object] = dict.fromkeys(_ITEMS_ZERO, 0)
    values.update(
        number_cold=st["curr_items"],
        mem_requested=st["bytes"],
        evicted=st["evictions"],
        reclaimed=st["reclaimed"],
        expired_unfetched=st["expired_unfetched"],
        evicted_unfetched=st["evicted_unfetched"],
    )
    return [("items:1:number", st["curr_items"])] + [(f"items:1:{k}", v) for k, v in values.items()]


def slabs(store: Any) -> list[tuple[str, object]]:
    """Return ``stats slabs``: one class holding every item, sized by their average."""
    st = store.stats()
    n = st["curr_items"]
    if not n:
        return [("active_slabs", 0), ("total_malloced", 0)]
    chunk = -(-st["bytes"] // n)
    return [
        ("1:chunk_size", chunk),
        ("1:chunks_per_page", max(1, (1024 * 1024) // chunk)),
        ("1:total_pages", -(-st["bytes"] // (1024 * 1024))),
        ("1:total_chunks", n),
        ("1:used_chunks", n),
        ("1:free_chunks", 0),
        ("1:free_chunks_end", 0),
        ("1:get_hits", st["get_hits"]),
        ("1:cmd_set", st["cmd_set"]),
        ("1:delete_hits", st["delete_hits"]),
        ("1:incr_hits", st["incr_hits"]),
        ("1:decr_hits", st["decr_hits"]),
        ("1:cas_hits", st["cas_hits"]),
        ("1:cas_badval", st["cas_badval"]),
        ("1:touch_hits", st["touch_hits"]),
        ("active_slabs", 1),
        ("total_malloced", st["bytes"]),
    ]


def reply(store: Any, ctx: ServerContext, toks: list[bytes]) -> bytes:
    """Answer ``stats [<subcommand> ...]``; unknown subcommands get ``ERROR`` as in memcached."""
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
        # We keep no per-prefix statistics: on/off are accepted, and a dump is empty.
        if len(toks) < 3 or toks[2] not in (b"on", b"off", b"dump"):
            return wire.DETAIL_USAGE
        return wire.END if toks[2] == b"dump" else wire.OK
    return wire.ERROR
