"""The client's exception hierarchy and the one table of server error lines it maps.

::

    CacheError                      base of everything this package raises
    ├── CacheConnectionError        cannot connect, connection lost, or no server available
    │   └── CacheTimeoutError       connect or operation timed out (also a TimeoutError)
    │       └── PoolExhaustedError  no pooled connection became free within pool_timeout
    ├── CacheClientError            the request is wrong: rejected locally or by ``CLIENT_ERROR``
    │   ├── InvalidKeyError         key empty, > 250 bytes, or with whitespace/control bytes
    │   └── SerializationError      value of a type the serialiser cannot store
    └── CacheServerError            the server failed: ``SERVER_ERROR`` or an unparseable reply
        └── ValueTooLargeError      ``SERVER_ERROR object too large for cache``

A connection that raised :class:`CacheConnectionError` is closed and never reused; the other
errors leave the connection in sync and reusable.
"""

from __future__ import annotations


class CacheError(Exception):
    """Base class of every exception raised by pycache_client.

    ``wire`` is the server's reply line (without CRLF) when the error is the server's answer,
    and None when the client raised it itself (bad key, timeout, ...).
    """

    wire: bytes | None = None


class CacheConnectionError(CacheError):
    """Raised when a server cannot be reached or the connection broke mid-request.

    Also raised when every server of a multi-server client is ejected.
    """


class CacheTimeoutError(CacheConnectionError, TimeoutError):
    """Raised when connecting or waiting for a reply took longer than the configured timeout."""


class PoolExhaustedError(CacheTimeoutError):
    """Raised when all ``max_pool_size`` connections to a server stayed busy for ``pool_timeout``
    (blocking pool), or the one another task was opening did not come within it (asyncio pool).

    The server is not at fault, so it is not ejected.
    """


class CacheClientError(CacheError):
    """Raised when the request itself is invalid: checked before sending, or ``CLIENT_ERROR``."""


class InvalidKeyError(CacheClientError, ValueError):
    """Raised before anything is sent when a key is empty, longer than 250 bytes once UTF-8
    encoded, or contains whitespace or control characters (protocol.txt, "Keys")."""


class SerializationError(CacheClientError, TypeError):
    """Raised when a value cannot be serialised (not bytes, str, int or JSON-serialisable)."""


class CacheServerError(CacheError):
    """Raised on ``SERVER_ERROR``, a bare ``ERROR`` or a reply the client cannot parse."""


class ValueTooLargeError(CacheServerError):
    """Raised when the value exceeds the server's maximum item size (``-I``, 1 MiB by default)."""


# The error lines memcached (and pycache-d, whose store mirrors them) can answer with. A line not
# in the table falls back on its prefix: CLIENT_ERROR -> CacheClientError, others -> server error.
_EXACT: dict[bytes, type[CacheError]] = {
    b"SERVER_ERROR object too large for cache": ValueTooLargeError,
    b"SERVER_ERROR out of memory storing object": CacheServerError,
    b"CLIENT_ERROR cannot increment or decrement non-numeric value": CacheClientError,
    b"CLIENT_ERROR bad data chunk": CacheClientError,
    b"CLIENT_ERROR bad command line format": CacheClientError,
    # protocol.txt: "ERROR\r\n means the client sent a nonexistent command name".
    b"ERROR": CacheClientError,
}


def error_for_line(line: bytes) -> CacheError:
    """Return the exception for one error reply line (without ``\\r\\n``)."""
    cls = _EXACT.get(line)
    if cls is None:
        cls = CacheClientError if line.startswith(b"CLIENT_ERROR") else CacheServerError
    error = cls(line.decode("utf-8", "replace"))
    error.wire = line
    return error
