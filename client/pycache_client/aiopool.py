"""asyncio connections and a pool of them, one pool per server (the twin of :mod:`.pool`)."""

from __future__ import annotations

import asyncio

from .address import Address
from .errors import CacheConnectionError, CacheTimeoutError, PoolExhaustedError
from .pool import PIPELINE_WINDOW, READ_SIZE
from .protocol import NEED_DATA, Command, Reply, ReplyParser


class AsyncConnection:
    """One asyncio stream to a server, with its reply parser; closed on any failure."""

    def __init__(self, address: Address, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Wrap an open stream; use :meth:`open`."""
        self.address = address
        self._reader = reader
        self._writer: asyncio.StreamWriter | None = writer
        self._parser = ReplyParser()

    @classmethod
    async def open(cls, address: Address, connect_timeout: float) -> AsyncConnection:
        """Connect to ``address``.

        Raises:
            CacheTimeoutError: the connect took longer than ``connect_timeout``.
            CacheConnectionError: the connect failed.
        """
        try:
            async with asyncio.timeout(connect_timeout):
                if address.path is not None:
                    reader, writer = await asyncio.open_unix_connection(address.path)
                else:
                    reader, writer = await asyncio.open_connection(address.host, address.port)
        except TimeoutError:
            raise CacheTimeoutError(f"timed out connecting to {address} after {connect_timeout}s") from None
        except OSError as exc:
            raise CacheConnectionError(f"cannot connect to {address}: {exc.strerror or exc}") from None
        return cls(address, reader, writer)

    @property
    def closed(self) -> bool:
        """Return True once the connection was closed."""
        return self._writer is None

    def close(self) -> None:
        """Close the stream without waiting; idempotent."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def is_stale(self) -> bool:
        """Return True if the server closed this idle connection or it holds stray bytes."""
        return (
            self._writer is None
            or self._writer.is_closing()
            or self._reader.at_eof()
            or self._parser.buffered > 0
        )

    async def request(self, commands: list[Command], timeout: float) -> list[Reply]:
        """Send ``commands`` and return their replies in order, all within ``timeout`` seconds.

        Raises:
            CacheTimeoutError: the whole exchange took longer than ``timeout``.
            CacheConnectionError: the connection broke.
            ProtocolError: the server's reply was malformed.
        """
        writer = self._writer
        if writer is None:
            raise CacheConnectionError(f"connection to {self.address} is closed")
        replies: list[Reply] = []
        try:
            async with asyncio.timeout(timeout):
                for start in range(0, len(commands), PIPELINE_WINDOW):
                    window = commands[start : start + PIPELINE_WINDOW]
                    writer.write(b"".join(c.data for c in window))
                    await writer.drain()
                    for command in window:
                        while (reply := self._parser.next_reply(command.expect)) is NEED_DATA:
                            data = await self._reader.read(READ_SIZE)
                            if not data:
                                raise CacheConnectionError(f"{self.address} closed the connection")
                            self._parser.feed(data)
                        replies.append(reply)
        except TimeoutError:
            self.close()
            raise CacheTimeoutError(f"no reply from {self.address} within {timeout}s") from None
        except OSError as exc:
            self.close()
            raise CacheConnectionError(
                f"connection to {self.address} failed: {exc.strerror or exc}"
            ) from None
        except BaseException:
            # Includes cancellation: a half-read reply leaves the stream out of sync.
            self.close()
            raise
        return replies


class AsyncConnectionPool:
    """At most ``max_size`` connections to one server, shared by tasks of one event loop."""

    def __init__(
        self,
        address: Address,
        max_size: int = 10,
        connect_timeout: float = 1.0,
        timeout: float = 1.0,
        pool_timeout: float | None = None,
    ) -> None:
        """Configure the pool; connections open lazily, on the loop that first uses the pool."""
        if max_size < 1:
            raise ValueError("max_size must be >= 1")
        self.address = address
        self.max_size = max_size
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self.pool_timeout = timeout if pool_timeout is None else pool_timeout
        self._slots = asyncio.Semaphore(max_size)
        self._idle: list[AsyncConnection] = []
        self._closed = False
        #: Connections opened so far (for tests and metrics: shows the pool really bounds them).
        self.opened = 0

    @property
    def idle(self) -> int:
        """Return how many open connections wait in the pool."""
        return len(self._idle)

    async def run(self, commands: list[Command]) -> list[Reply]:
        """Send ``commands`` on a pooled connection and return their replies.

        Raises:
            PoolExhaustedError: no connection became free within ``pool_timeout``.
            CacheConnectionError: connecting or the exchange failed (the connection is dropped).
        """
        try:
            async with asyncio.timeout(self.pool_timeout):
                await self._slots.acquire()
        except TimeoutError:
            raise PoolExhaustedError(
                f"all {self.max_size} connections to {self.address} busy for {self.pool_timeout}s"
            ) from None
        try:
            conn = await self._checkout()
            replies = await conn.request(commands, self.timeout)
            if self._closed:
                conn.close()
            else:
                self._idle.append(conn)
            return replies
        finally:
            self._slots.release()

    async def _checkout(self) -> AsyncConnection:
        while True:
            if self._closed:
                raise CacheConnectionError("client is closed")
            if not self._idle:
                conn = await AsyncConnection.open(self.address, self.connect_timeout)
                self.opened += 1
                return conn
            conn = self._idle.pop()
            if not conn.is_stale():
                return conn
            conn.close()

    def close(self) -> None:
        """Close every idle connection; busy ones are closed when they come back."""
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
