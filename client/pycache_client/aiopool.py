"""asyncio connections that pipeline concurrent requests, and a bounded pool of them.

Unlike the blocking pool, where a connection serves one request at a time, an asyncio
connection is shared: every task appends its commands to the connection's queue, the writes of
one event-loop iteration leave in a single ``send`` and the replies, which memcached sends in
request order (protocol.txt, "Commands"), resolve the waiting tasks in that order.

PERF: this coalescing is what keeps a cache-backed HTTP route near the speed of one that does no
I/O: 32 concurrent requests cost one write and usually one read syscall instead of 32 each,
and the daemon, too, parses them from one read.

Invariant: ``_queue`` holds, in write order, every request whose replies have not all been
parsed, including cancelled ones (their replies are still parsed, then dropped), so the parser
and the queue always agree on which reply comes next. Anything that breaks that agreement
(a timeout, a malformed reply, EOF) closes the connection and fails every queued request.
"""

from __future__ import annotations

import asyncio
from collections import deque
from operator import attrgetter
from typing import cast

from .address import Address
from .errors import CacheConnectionError, CacheError, CacheTimeoutError, PoolExhaustedError
from .protocol import NEED_DATA, Command, ProtocolError, Reply, ReplyParser

#: Requests in flight on a connection before the pool opens another one (up to max_size).
PIPELINE_DEPTH = 32


class _Pending:
    __slots__ = ("commands", "future", "replies")

    def __init__(self, commands: list[Command], future: asyncio.Future[list[Reply]]) -> None:
        self.commands = commands
        self.future = future
        self.replies: list[Reply] = []


class AsyncConnection(asyncio.Protocol):
    """One connection to a server, shared by any number of concurrent requests."""

    def __init__(self, address: Address) -> None:
        """Prepare the protocol; use :meth:`open`."""
        self.address = address
        self._transport: asyncio.Transport | None = None
        self._parser = ReplyParser()
        self._queue: deque[_Pending] = deque()
        self._wbuf: list[bytes] = []
        self._flush_handle: asyncio.Handle | None = None
        self._error: CacheError | None = None

    @classmethod
    async def open(cls, address: Address, connect_timeout: float) -> AsyncConnection:
        """Connect to ``address``.

        Raises:
            CacheTimeoutError: the connect took longer than ``connect_timeout``.
            CacheConnectionError: the connect failed.
        """
        loop = asyncio.get_running_loop()
        conn = cls(address)
        try:
            async with asyncio.timeout(connect_timeout):
                if address.path is not None:
                    await loop.create_unix_connection(lambda: conn, address.path)
                else:
                    assert address.host is not None
                    await loop.create_connection(lambda: conn, address.host, address.port)
        except TimeoutError:
            raise CacheTimeoutError(f"timed out connecting to {address} after {connect_timeout}s") from None
        except OSError as exc:
            raise CacheConnectionError(f"cannot connect to {address}: {exc.strerror or exc}") from None
        return conn

    # -- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # noqa: D102
        # NOTE: uvloop's transports are not asyncio.Transport subclasses, only duck-typed ones.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:  # noqa: D102
        self._parser.feed(data)
        try:
            while self._queue:
                pending = self._queue[0]
                while len(pending.replies) < len(pending.commands):
                    reply = self._parser.next_reply(pending.commands[len(pending.replies)].expect)
                    if reply is NEED_DATA:
                        return
                    pending.replies.append(reply)
                self._queue.popleft()
                if not pending.future.done():  # a cancelled request's replies are dropped
                    pending.future.set_result(pending.replies)
            if self._parser.buffered:
                raise ProtocolError("reply bytes with no request waiting for them")
        except ProtocolError as exc:
            self._fail(CacheConnectionError(f"{self.address}: {exc}; connection dropped"))

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: D102
        self._fail(CacheConnectionError(f"{self.address} closed the connection"))

    # -- API -------------------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Return how many requests wait for replies."""
        return len(self._queue)

    @property
    def closed(self) -> bool:
        """Return True once the connection failed or was closed."""
        return self._error is not None

    def is_stale(self) -> bool:
        """Return True if this connection cannot take requests any more."""
        return self._error is not None or self._transport is None or self._transport.is_closing()

    def close(self) -> None:
        """Close the connection; requests still waiting fail with CacheConnectionError."""
        self._fail(CacheConnectionError(f"connection to {self.address} closed by the client"))

    def _fail(self, error: CacheError) -> None:
        if self._error is None:
            self._error = error
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if self._transport is not None:
            self._transport.close()
        queue, self._queue = self._queue, deque()
        for pending in queue:
            if not pending.future.done():
                # A fresh instance per waiter: one exception raised in many tasks would collect
                # all their tracebacks.
                pending.future.set_exception(type(error)(str(error)))

    def _flush(self) -> None:
        self._flush_handle = None
        if self._wbuf and self._transport is not None and self._error is None:
            data = b"".join(self._wbuf)
            self._wbuf.clear()
            self._transport.write(data)

    async def request(self, commands: list[Command], timeout: float) -> list[Reply]:
        """Queue ``commands`` and return their replies in order, within ``timeout`` seconds.

        Raises:
            CacheTimeoutError: no complete reply within ``timeout``; the connection is closed
                (its position in the stream is unknown) and its other requests fail too.
            CacheConnectionError: the connection broke or replied with garbage.
        """
        if self._error is not None:
            raise type(self._error)(str(self._error))
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Reply]] = loop.create_future()
        self._queue.append(_Pending(commands, future))
        self._wbuf.extend(c.data for c in commands)
        if self._flush_handle is None:
            # PERF: one write per loop iteration for everything queued in it.
            self._flush_handle = loop.call_soon(self._flush)
        try:
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            self._fail(CacheTimeoutError(f"no reply from {self.address} within {timeout}s"))
            raise CacheTimeoutError(f"no reply from {self.address} within {timeout}s") from None


class AsyncConnectionPool:
    """Up to ``max_size`` pipelined connections to one server, for the tasks of one event loop.

    A request goes to the open connection with the fewest requests in flight; a new connection
    is opened only when every open one has ``pipeline_depth`` in flight (so light load stays on
    one connection and coalesces best). Connections are opened one at a time: a request that
    waits while another one's connection is being opened is waiting for the pool, bounded by
    ``pool_timeout``; only its own connect counts against ``connect_timeout``.
    """

    def __init__(
        self,
        address: Address,
        max_size: int = 10,
        connect_timeout: float = 1.0,
        timeout: float = 1.0,
        pool_timeout: float | None = None,
        pipeline_depth: int = PIPELINE_DEPTH,
    ) -> None:
        """Configure the pool; connections open lazily, on the loop that first uses the pool.

        ``pool_timeout`` (default: ``timeout``) bounds the wait for a connection that another
        request is opening; requests never wait for a free connection, they queue on one.
        """
        if max_size < 1:
            raise ValueError("max_size must be >= 1")
        self.address = address
        self.max_size = max_size
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self.pool_timeout = timeout if pool_timeout is None else pool_timeout
        self.pipeline_depth = pipeline_depth
        self._conns: list[AsyncConnection] = []
        self._open_lock: asyncio.Lock | None = None
        self._closed = False
        #: Connections opened so far (for tests and metrics: shows the pool really bounds them).
        self.opened = 0

    @property
    def size(self) -> int:
        """Return how many connections are open."""
        return sum(not c.is_stale() for c in self._conns)

    async def run(self, commands: list[Command], deadline: float | None = None) -> list[Reply]:
        """Send ``commands`` on a pooled connection and return their replies.

        ``deadline`` (the loop's clock) ends the exchange's wait sooner than the pool's timeout
        would: it is the caller's whole budget, measured once the connection is there.

        Raises:
            CacheConnectionError: connecting or the exchange failed (also CacheTimeoutError).
        """
        conn = self._usable()
        if conn is None:
            conn = await self._open()
        timeout = self.timeout
        if deadline is not None:
            timeout = min(timeout, deadline - asyncio.get_running_loop().time())
            if timeout <= 0:
                raise CacheTimeoutError(f"no time left for a request to {self.address}")
        return await conn.request(commands, timeout)

    def _usable(self) -> AsyncConnection | None:
        if self._closed:
            raise CacheConnectionError("client is closed")
        if any(c.is_stale() for c in self._conns):
            self._conns = [c for c in self._conns if not c.is_stale()]
        best = min(self._conns, key=attrgetter("pending"), default=None)
        if best is not None and (best.pending < self.pipeline_depth or len(self._conns) >= self.max_size):
            return best
        return None

    async def _open(self) -> AsyncConnection:
        if self._open_lock is None:
            self._open_lock = asyncio.Lock()
        lock = self._open_lock
        # NOTE: waiting here is waiting for the pool (another request is connecting, which may
        # take up to connect_timeout, and many may be queued), not connecting: a burst of tasks
        # on a busy machine must not fail with "timed out connecting" while the server is fine.
        try:
            async with asyncio.timeout(self.pool_timeout):
                await lock.acquire()
        except TimeoutError:
            raise PoolExhaustedError(
                f"waited {self.pool_timeout}s for a connection to {self.address} (another request "
                "was opening one)"
            ) from None
        try:
            # Another task may have opened one while this one waited.
            conn = self._usable()
            if conn is not None:
                return conn
            conn = await AsyncConnection.open(self.address, self.connect_timeout)  # its own timeout
        finally:
            lock.release()
        if self._closed:
            conn.close()
            raise CacheConnectionError("client is closed")
        self._conns.append(conn)
        self.opened += 1
        return conn

    def close(self) -> None:
        """Close every connection; requests in flight fail with CacheConnectionError."""
        self._closed = True
        conns, self._conns = self._conns, []
        for conn in conns:
            conn.close()
