"""Outcomes and errors of store operations, each with the memcached wire text it maps to.

This is the one table of reply strings the store can produce; the protocol session adds the
command-level errors (``ERROR``, ``CLIENT_ERROR bad command line format``, ...) on top.
Both backends return :class:`Result` members and raise these exceptions, never bare strings.
"""

from __future__ import annotations

import enum


class Result(enum.IntEnum):
    """The outcome of a storage, delete or touch command (protocol.txt, "Storage commands").

    The integer values are shared with the C store (``csrc/store.h``, ``enum store_result``).
    """

    STORED = 0
    NOT_STORED = 1
    EXISTS = 2
    NOT_FOUND = 3
    DELETED = 4
    TOUCHED = 5

    @property
    def wire(self) -> bytes:
        """Return the reply line memcached sends for this outcome."""
        return _RESULT_WIRE[self]


_RESULT_WIRE = {r: r.name.encode() + b"\r\n" for r in Result}


class StoreError(Exception):
    """Base class of the errors the store raises; ``wire`` is memcached's reply line."""

    wire: bytes = b"SERVER_ERROR\r\n"


class InvalidKey(StoreError, ValueError):
    """Raised when a key is empty or longer than 250 bytes (any byte value is allowed, as in memcached)."""

    wire = b"CLIENT_ERROR bad command line format\r\n"


class ItemTooLarge(StoreError):
    """Raised when an item's charged size exceeds the maximum item size (``-I``)."""

    wire = b"SERVER_ERROR object too large for cache\r\n"


class OutOfMemory(StoreError):
    """Raised when an item cannot fit even in an empty cache (larger than the memory limit)."""

    wire = b"SERVER_ERROR out of memory storing object\r\n"


class NonNumericValue(StoreError):
    """Raised by incr/decr when the stored value is not a decimal unsigned 64-bit number."""

    wire = b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"
