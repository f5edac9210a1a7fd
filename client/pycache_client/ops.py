"""Every client command as a :class:`Plan`: the wire commands plus how to turn replies into a result.

This is the part of the client both :class:`~pycache_client.Client` and
:class:`~pycache_client.AsyncClient` share: validation, serialisation and reply interpretation
happen here, once; the clients only route each command to a server, do the I/O and call
:meth:`Plan.finish`. Multi-key commands are one command per key, which the clients pipeline per
server (one write, replies read in order), so routing stays per key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from . import protocol
from .errors import CacheClientError, CacheError
from .keys import encode_key
from .protocol import Command, Item, Reply
from .serde import Serde

T = TypeVar("T")
Key = str | bytes
#: set_many accepts a mapping keyed by str, by bytes, or by both.
KeyMapping = Mapping[str, Any] | Mapping[bytes, Any] | Mapping[Key, Any]

#: protocol.txt: an exptime over 30 days is a unix timestamp, not a relative number of seconds.
MAX_RELATIVE_TTL = 60 * 60 * 24 * 30


@dataclass(slots=True)
class Plan(Generic[T]):
    """The commands of one client call and the function that makes the result of their replies.

    ``routes[i]`` is the key whose server gets ``commands[i]``; a ``broadcast`` plan has one command
    sent to every server and ``finish`` gets one reply per server, in configuration order.
    ``idempotent`` plans may be retried on a connection error.
    """

    commands: list[Command]
    finish: Callable[[list[Reply]], T]
    routes: list[bytes] = field(default_factory=list)
    idempotent: bool = False
    broadcast: bool = False


def check(reply: Reply) -> Reply:
    """Return ``reply``, raising it if it is an error reply."""
    if isinstance(reply, CacheError):
        raise reply
    return reply


def check_all(replies: list[Reply]) -> None:
    """Raise the first error among ``replies`` (all were read, so the connection is in sync)."""
    for reply in replies:
        check(reply)


def ttl_value(ttl: int) -> int:
    """Validate a TTL in seconds (0 = never expires) and return it.

    Raises:
        CacheClientError: not a non-negative int.
    """
    if not isinstance(ttl, int) or isinstance(ttl, bool) or ttl < 0:
        raise CacheClientError(f"ttl must be a non-negative number of seconds, not {ttl!r}")
    return ttl


def _unique(keys: Iterable[Key]) -> tuple[list[Key], list[bytes]]:
    originals: list[Key] = []
    encoded: list[bytes] = []
    seen: set[bytes] = set()
    for key in keys:
        raw = encode_key(key)
        if raw not in seen:
            seen.add(raw)
            originals.append(key)
            encoded.append(raw)
    return originals, encoded


def _items(reply: Reply) -> list[Item]:
    result = check(reply)
    assert isinstance(result, list)
    return result


# -- retrieval -----------------------------------------------------------------------------------


def get(serde: Serde, key: Key, default: Any = None) -> Plan[Any]:
    """Plan ``get``: the value, or ``default`` on a miss."""
    raw = encode_key(key)

    def finish(replies: list[Reply]) -> Any:
        items = _items(replies[0])
        return serde.deserialize(items[0].value, items[0].flags) if items else default

    return Plan([protocol.retrieval(b"get", [raw])], finish, [raw], idempotent=True)


def get_many(serde: Serde, keys: Iterable[Key]) -> Plan[dict[Key, Any]]:
    """Plan a multi-get: ``{key: value}`` for the keys found, keyed as the caller spelt them."""
    originals, encoded = _unique(keys)

    def finish(replies: list[Reply]) -> dict[Key, Any]:
        check_all(replies)
        found: dict[Key, Any] = {}
        for key, reply in zip(originals, replies, strict=True):
            items = _items(reply)
            if items:
                found[key] = serde.deserialize(items[0].value, items[0].flags)
        return found

    commands = [protocol.retrieval(b"get", [raw]) for raw in encoded]
    return Plan(commands, finish, encoded, idempotent=True)


def gets(serde: Serde, key: Key, default: Any = None) -> Plan[tuple[Any, int | None]]:
    """Plan ``gets``: ``(value, cas)``, or ``(default, None)`` on a miss."""
    raw = encode_key(key)

    def finish(replies: list[Reply]) -> tuple[Any, int | None]:
        items = _items(replies[0])
        if not items:
            return default, None
        return serde.deserialize(items[0].value, items[0].flags), items[0].cas

    return Plan([protocol.retrieval(b"gets", [raw])], finish, [raw], idempotent=True)


def gat(serde: Serde, key: Key, ttl: int, default: Any = None) -> Plan[Any]:
    """Plan ``gat`` (get and touch): the value with its TTL reset, or ``default`` on a miss."""
    raw = encode_key(key)

    def finish(replies: list[Reply]) -> Any:
        items = _items(replies[0])
        return serde.deserialize(items[0].value, items[0].flags) if items else default

    # NOTE: re-sending gat after a lost reply only sets the same TTL again: safe to retry.
    return Plan([protocol.retrieval(b"gat", [raw], ttl_value(ttl))], finish, [raw], idempotent=True)


# -- storage -------------------------------------------------------------------------------------


def _stored(replies: list[Reply]) -> bool:
    return check(replies[0]) == b"STORED"


def store(verb: bytes, serde: Serde, key: Key, value: Any, ttl: int = 0) -> Plan[bool]:
    """Plan ``set``/``add``/``replace``/``append``/``prepend``: True when the server stored it.

    ``append``/``prepend`` keep the existing item's flags (protocol.txt), so appending a str to
    a str works, while appending to an int or JSON value gives whatever the bytes decode to.
    """
    raw = encode_key(key)
    data, flags = serde.serialize(value)
    return Plan([protocol.storage(verb, raw, flags, ttl_value(ttl), data)], _stored, [raw])


def set_many(serde: Serde, mapping: KeyMapping, ttl: int = 0) -> Plan[list[Key]]:
    """Plan one ``set`` per pair: returns the keys that were *not* stored (empty on success)."""
    keys: list[Key] = list(mapping)
    exptime = ttl_value(ttl)
    commands, routes = [], []
    for key in keys:
        raw = encode_key(key)
        data, flags = serde.serialize(mapping[key])  # type: ignore[index]
        commands.append(protocol.storage(b"set", raw, flags, exptime, data))
        routes.append(raw)

    def finish(replies: list[Reply]) -> list[Key]:
        check_all(replies)
        return [key for key, reply in zip(keys, replies, strict=True) if reply != b"STORED"]

    return Plan(commands, finish, routes)


def cas(serde: Serde, key: Key, value: Any, cas_unique: int, ttl: int = 0) -> Plan[bool | None]:
    """Plan ``cas``: True stored, False if modified since ``gets`` (EXISTS), None if missing."""
    raw = encode_key(key)
    data, flags = serde.serialize(value)
    if not isinstance(cas_unique, int) or not 0 <= cas_unique < 2**64:
        raise CacheClientError(f"cas unique must be an unsigned 64-bit int, not {cas_unique!r}")

    def finish(replies: list[Reply]) -> bool | None:
        reply = check(replies[0])
        return None if reply == b"NOT_FOUND" else reply == b"STORED"

    return Plan([protocol.storage(b"cas", raw, flags, ttl_value(ttl), data, cas_unique)], finish, [raw])


# -- others --------------------------------------------------------------------------------------


def delete(key: Key) -> Plan[bool]:
    """Plan ``delete``: True if the key existed."""
    raw = encode_key(key)
    return Plan([protocol.delete(raw)], lambda r: check(r[0]) == b"DELETED", [raw])


def delete_many(keys: Iterable[Key]) -> Plan[int]:
    """Plan one ``delete`` per key: returns how many existed."""
    _, encoded = _unique(keys)

    def finish(replies: list[Reply]) -> int:
        check_all(replies)
        return sum(reply == b"DELETED" for reply in replies)

    return Plan([protocol.delete(raw) for raw in encoded], finish, encoded)


def arithmetic(verb: bytes, key: Key, delta: int) -> Plan[int | None]:
    """Plan ``incr``/``decr``: the new value, or None if the key is missing.

    memcached wraps incr at 2**64 and clamps decr at 0 (protocol.txt, "Increment/Decrement").
    """
    raw = encode_key(key)
    if not isinstance(delta, int) or isinstance(delta, bool) or not 0 <= delta < 2**64:
        raise CacheClientError(f"delta must be an unsigned 64-bit int, not {delta!r}")

    def finish(replies: list[Reply]) -> int | None:
        reply = check(replies[0])
        assert reply is None or isinstance(reply, int)
        return reply

    return Plan([protocol.arithmetic(verb, raw, delta)], finish, [raw])


def touch(key: Key, ttl: int) -> Plan[bool]:
    """Plan ``touch``: True if the key existed and got the new TTL."""
    raw = encode_key(key)
    return Plan([protocol.touch(raw, ttl_value(ttl))], lambda r: check(r[0]) == b"TOUCHED", [raw])


def flush_all(delay: int = 0) -> Plan[None]:
    """Plan ``flush_all`` on every server."""
    return Plan([protocol.flush_all(ttl_value(delay))], check_all, broadcast=True)


def stats(names: Sequence[str], group: str | None = None) -> Plan[dict[str, dict[str, str]]]:
    """Plan ``stats [group]`` on every server: ``{server name: {stat: value}}``."""
    if group is not None and (not group or any(c.isspace() or not c.isprintable() for c in group)):
        raise CacheClientError(f"bad stats group {group!r}")

    def finish(replies: list[Reply]) -> dict[str, dict[str, str]]:
        check_all(replies)
        return {name: reply for name, reply in zip(names, replies, strict=True) if isinstance(reply, dict)}

    return Plan([protocol.stats(group)], finish, idempotent=True, broadcast=True)


def version(names: Sequence[str]) -> Plan[dict[str, str]]:
    """Plan ``version`` on every server: ``{server name: version}``."""

    def finish(replies: list[Reply]) -> dict[str, str]:
        check_all(replies)
        return {name: str(reply) for name, reply in zip(names, replies, strict=True)}

    return Plan([protocol.version()], finish, idempotent=True, broadcast=True)
