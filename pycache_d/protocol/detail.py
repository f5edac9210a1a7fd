"""``stats detail on|off|dump``: gets, hits, sets and deletes counted per key prefix.

As memcached's stats_prefix.c: the prefix is a key's bytes before its first ``:`` (a key
without one is not counted); ``get`` counts every key looked up by get/gets/gat/gats and
``hit`` the ones found, ``set`` every storage command, ``del`` every delete. ``dump`` answers
``PREFIX <prefix> get <n> hit <n> set <n> del <n>`` per prefix, then ``END``.

APPSEC: the table is bounded: at most :data:`MAX_PREFIXES` prefixes are kept (memcached keeps
any number); the keys of new prefixes past that are not counted. A prefix's bytes below 0x21
or from 0x7f on are %-escaped in the dump, so no client byte can break a reply line.
"""

from __future__ import annotations

from typing import Any

from . import wire

#: Most prefixes counted at once (each costs about 200 bytes).
MAX_PREFIXES = 10_000

_GET, _HIT, _SET, _DEL = range(4)


def escape(raw: bytes) -> bytes:
    """%-escape the bytes of ``raw`` that could end or split a reply line (others stay)."""
    if all(0x20 < b < 0x7F for b in raw):
        return raw
    return b"".join(bytes((b,)) if 0x20 < b < 0x7F and b != 0x25 else b"%%%02X" % b for b in raw)


class PrefixStats:
    """The per-prefix counters while ``stats detail`` is on."""

    def __init__(self) -> None:
        self._table: dict[bytes, list[int]] = {}

    def _row(self, key: bytes) -> list[int] | None:
        cut = key.find(b":")
        if cut < 0:
            return None
        prefix = key[:cut]
        row = self._table.get(prefix)
        if row is None:
            if len(self._table) >= MAX_PREFIXES:
                return None
            row = self._table[prefix] = [0, 0, 0, 0]
        return row

    def get(self, key: bytes, hit: bool) -> None:
        row = self._row(key)
        if row is not None:
            row[_GET] += 1
            row[_HIT] += hit

    def set(self, key: bytes) -> None:
        row = self._row(key)
        if row is not None:
            row[_SET] += 1

    def delete(self, key: bytes) -> None:
        row = self._row(key)
        if row is not None:
            row[_DEL] += 1

    def clear(self) -> None:
        self._table.clear()

    def dump(self) -> bytes:
        lines = [
            b"PREFIX %s get %d hit %d set %d del %d\r\n" % (escape(prefix), row[0], row[1], row[2], row[3])
            for prefix, row in self._table.items()
        ]
        return b"".join(lines) + wire.END


def command(ctx: Any, toks: list[bytes]) -> bytes:
    """Answer ``stats detail ...`` (memcached reads the word after ``detail``, ignoring more).

    ``off`` stops counting but keeps the counts: ``dump`` still shows them (as memcached).
    """
    word = toks[2] if len(toks) >= 3 else b""
    if word == b"dump":
        return ctx.prefixes.dump() if ctx.prefixes is not None else wire.END
    if word == b"on":
        if ctx.prefixes is None:
            ctx.prefixes = PrefixStats()
        ctx.detail = ctx.prefixes
    elif word == b"off":
        ctx.detail = None
    else:
        return wire.DETAIL_USAGE
    ctx.set_observed()
    return wire.OK
