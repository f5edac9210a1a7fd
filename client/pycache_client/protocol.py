"""Sans-IO memcached text protocol: encode requests, parse replies. No sockets, no event loop.

Both clients use only this module for the wire format: they write :attr:`Command.data`, feed
every byte they read to a :class:`ReplyParser`, and ask it for the reply each command expects,
in order (memcached answers pipelined commands in order, protocol.txt "Commands").

Error lines (``ERROR``, ``CLIENT_ERROR ...``, ``SERVER_ERROR ...``) are *returned* as exception
instances, not raised, so that a pipeline keeps reading the replies after a failed command and
the connection stays in sync. A reply the parser cannot make sense of is *raised*
(:class:`ProtocolError`): the stream is out of sync and the connection must be dropped.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .errors import CacheError, CacheServerError, error_for_line

CRLF = b"\r\n"

#: Longest line other than a data block the parser accepts before calling the stream corrupt.
MAX_LINE = 8192


class ProtocolError(CacheServerError):
    """Raised by the parser when a reply does not follow the protocol; drop the connection."""


class Expect(enum.Enum):
    """The kind of reply a command gets."""

    VALUES = "values"  # get, gets, gat, gats: VALUE blocks then END
    STATUS = "status"  # set/add/.../cas, delete, touch, flush_all: one word
    NUMBER = "number"  # incr, decr: the new value or NOT_FOUND
    STATS = "stats"  # STAT lines then END
    VERSION = "version"  # VERSION <text>


@dataclass(frozen=True, slots=True)
class Command:
    """One encoded request and the kind of reply it expects."""

    data: bytes
    expect: Expect


@dataclass(frozen=True, slots=True)
class Item:
    """One ``VALUE`` block: the key, client flags, raw value and CAS unique (``gets``/``gats``)."""

    key: bytes
    flags: int
    value: bytes
    cas: int | None = None


#: What :meth:`ReplyParser.next_reply` returns, by :class:`Expect`: a list of Item, a status
#: word (``b"STORED"``...), an int or None (NOT_FOUND), a stats dict, a version str; or an error.
Reply = list[Item] | bytes | int | None | dict[str, str] | str | CacheError

STATUS_WORDS = frozenset({b"STORED", b"NOT_STORED", b"EXISTS", b"NOT_FOUND", b"DELETED", b"TOUCHED", b"OK"})
_ERROR_PREFIXES = (b"CLIENT_ERROR", b"SERVER_ERROR")


class NeedData(enum.Enum):
    """The type of :data:`NEED_DATA`."""

    NEED_DATA = "need data"


#: Returned by :meth:`ReplyParser.next_reply` when the reply has not fully arrived.
NEED_DATA = NeedData.NEED_DATA


# -- requests ------------------------------------------------------------------------------------


def retrieval(verb: bytes, keys: list[bytes], exptime: int | None = None) -> Command:
    """Encode ``get``/``gets`` (``exptime`` None) or ``gat``/``gats`` for already-valid keys."""
    head = verb if exptime is None else verb + b" " + str(exptime).encode()
    return Command(head + b" " + b" ".join(keys) + CRLF, Expect.VALUES)


def storage(
    verb: bytes, key: bytes, flags: int, exptime: int, value: bytes, cas: int | None = None
) -> Command:
    """Encode ``set``/``add``/``replace``/``append``/``prepend``/``cas`` with its data block."""
    line = b"%s %s %d %d %d" % (verb, key, flags, exptime, len(value))
    if cas is not None:
        line += b" %d" % cas
    return Command(line + CRLF + value + CRLF, Expect.STATUS)


def delete(key: bytes) -> Command:
    """Encode ``delete <key>``."""
    return Command(b"delete " + key + CRLF, Expect.STATUS)


def arithmetic(verb: bytes, key: bytes, delta: int) -> Command:
    """Encode ``incr``/``decr``; ``delta`` is an unsigned 64-bit integer (protocol.txt)."""
    if not 0 <= delta < 2**64:
        raise ValueError(f"incr/decr delta must be in 0..2**64-1, not {delta}")
    return Command(b"%s %s %d\r\n" % (verb, key, delta), Expect.NUMBER)


def touch(key: bytes, exptime: int) -> Command:
    """Encode ``touch <key> <exptime>``."""
    return Command(b"touch %s %d\r\n" % (key, exptime), Expect.STATUS)


def flush_all(delay: int = 0) -> Command:
    """Encode ``flush_all [delay]``."""
    return Command(b"flush_all %d\r\n" % delay if delay else b"flush_all\r\n", Expect.STATUS)


def stats(group: str | None = None) -> Command:
    """Encode ``stats [group]`` (``items``, ``slabs``, ``settings``, ...)."""
    if group and any(c.isspace() for c in group):
        raise ValueError(f"bad stats group {group!r}")
    return Command(b"stats " + group.encode() + CRLF if group else b"stats\r\n", Expect.STATS)


def version() -> Command:
    """Encode ``version``."""
    return Command(b"version\r\n", Expect.VERSION)


# -- replies -------------------------------------------------------------------------------------


class ReplyParser:
    """Incremental reply parser: :meth:`feed` bytes, then take replies with :meth:`next_reply`."""

    def __init__(self) -> None:
        self._buf = bytearray()
        # Progress through a VALUES or STATS reply that has not fully arrived yet.
        self._items: list[Item] = []
        self._stats: dict[str, str] = {}

    def feed(self, data: bytes) -> None:
        """Append bytes read from the connection."""
        self._buf += data

    @property
    def buffered(self) -> int:
        """Return how many bytes are waiting to be parsed."""
        return len(self._buf)

    def next_reply(self, expect: Expect) -> Reply | NeedData:
        """Return the next complete reply of kind ``expect``, or :data:`NEED_DATA`.

        Returns:
            The reply (see :data:`Reply`), or :data:`NEED_DATA` when more bytes are needed; the
            parser keeps its progress, so call again with the same ``expect`` after :meth:`feed`.

        Raises:
            ProtocolError: the bytes are not a valid reply of that kind.
        """
        while True:
            end = self._buf.find(CRLF)
            if end < 0:
                if len(self._buf) > MAX_LINE:
                    raise ProtocolError(f"reply line longer than {MAX_LINE} bytes")
                return NEED_DATA
            line = bytes(self._buf[:end])
            if expect is Expect.VALUES and line.startswith(b"VALUE "):
                item = self._value_block(line, end)
                if item is None:
                    return NEED_DATA
                self._items.append(item)
                continue
            if expect is Expect.STATS and line.startswith(b"STAT "):
                del self._buf[: end + 2]
                parts = line.split(b" ", 2)
                if len(parts) < 2:
                    raise ProtocolError(f"bad STAT line {line!r}")
                self._stats[parts[1].decode()] = parts[2].decode("utf-8", "replace") if len(parts) > 2 else ""
                continue
            del self._buf[: end + 2]
            return self._finish(expect, line)

    def _value_block(self, line: bytes, end: int) -> Item | None:
        # protocol.txt: "VALUE <key> <flags> <bytes> [<cas unique>]\r\n<data block>\r\n"
        parts = line.split(b" ")
        try:
            if len(parts) not in (4, 5):
                raise ValueError
            flags, size = int(parts[2]), int(parts[3])
            cas = int(parts[4]) if len(parts) == 5 else None
        except ValueError:
            raise ProtocolError(f"bad VALUE line {line[:100]!r}") from None
        start = end + 2
        if len(self._buf) < start + size + 2:
            return None
        if self._buf[start + size : start + size + 2] != CRLF:
            raise ProtocolError("data block not terminated by CRLF")
        value = bytes(self._buf[start : start + size])
        del self._buf[: start + size + 2]
        return Item(parts[1], flags, value, cas)

    def _finish(self, expect: Expect, line: bytes) -> Reply:
        if line == b"ERROR" or line.startswith(_ERROR_PREFIXES):
            self._items, self._stats = [], {}
            return error_for_line(line)
        if expect is Expect.VALUES:
            if line != b"END":
                raise ProtocolError(f"expected VALUE or END, got {line[:100]!r}")
            items, self._items = self._items, []
            return items
        if expect is Expect.STATUS:
            if line not in STATUS_WORDS:
                raise ProtocolError(f"unexpected reply {line[:100]!r}")
            return line
        if expect is Expect.NUMBER:
            if line == b"NOT_FOUND":
                return None
            try:
                return int(line)
            except ValueError:
                raise ProtocolError(f"expected a number, got {line[:100]!r}") from None
        if expect is Expect.STATS:
            if line != b"END":
                raise ProtocolError(f"expected STAT or END, got {line[:100]!r}")
            result, self._stats = self._stats, {}
            return result
        if not line.startswith(b"VERSION "):
            raise ProtocolError(f"expected VERSION, got {line[:100]!r}")
        return line[len(b"VERSION ") :].decode("utf-8", "replace")
