"""Value serialisation: the client flags record the Python type so values round-trip.

The default :class:`JsonSerde` stores, by flags (compatible with pymemcache's default serde for
bytes, str and int, so both clients read each other's values):

====================  =====  =====================================================
Python value          flags  bytes on the wire
====================  =====  =====================================================
``bytes``             0      as-is (also what unknown flags decode to)
``int`` (not bool)    2      ASCII decimal, so ``incr``/``decr`` work on it
``str``               16     UTF-8
anything else         32     ``json.dumps`` (dict, list, float, bool, None, ...)
====================  =====  =====================================================

Pickle is deliberately absent: unpickling cache contents lets whoever can write to the cache
run code in every reader (APPSEC). Pass ``serde=RawSerde()`` to store bytes only, or any object
with the two :class:`Serde` methods.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from .errors import SerializationError

FLAG_BYTES = 0
FLAG_INT = 1 << 1
FLAG_TEXT = 1 << 4
FLAG_JSON = 1 << 5


class Serde(Protocol):
    """What a client needs from a serialiser."""

    def serialize(self, value: Any) -> tuple[bytes, int]:
        """Return the bytes to store and the flags that say how to read them back."""
        ...

    def deserialize(self, data: bytes, flags: int) -> Any:
        """Return the value ``serialize`` was given, from its bytes and flags."""
        ...


class JsonSerde:
    """The default serialiser: bytes, str and int natively, other values as JSON."""

    def serialize(self, value: Any) -> tuple[bytes, int]:
        """Serialise ``value``; raise :class:`SerializationError` if JSON cannot encode it."""
        if isinstance(value, bytes | bytearray | memoryview):
            return bytes(value), FLAG_BYTES
        if isinstance(value, str):
            return value.encode("utf-8"), FLAG_TEXT
        # NOTE: bool is an int subclass; it goes through JSON so it reads back as a bool.
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value).encode("ascii"), FLAG_INT
        try:
            return json.dumps(value, separators=(",", ":")).encode("utf-8"), FLAG_JSON
        except (TypeError, ValueError) as exc:
            raise SerializationError(f"cannot serialise {type(value).__name__}: {exc}") from exc

    def deserialize(self, data: bytes, flags: int) -> Any:
        """Deserialise by flags; unknown flags give the bytes unchanged."""
        if flags == FLAG_TEXT:
            return data.decode("utf-8")
        if flags == FLAG_INT:
            return int(data)
        if flags == FLAG_JSON:
            return json.loads(data)
        return data


class RawSerde:
    """A serialiser for bytes only: values must be bytes and always read back as bytes."""

    def serialize(self, value: Any) -> tuple[bytes, int]:
        """Return ``value`` unchanged with flags 0; anything but bytes is an error."""
        if not isinstance(value, bytes | bytearray | memoryview):
            raise SerializationError(f"RawSerde stores bytes only, not {type(value).__name__}")
        return bytes(value), FLAG_BYTES

    def deserialize(self, data: bytes, flags: int) -> Any:
        """Return the stored bytes whatever the flags."""
        return data
