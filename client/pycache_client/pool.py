"""Blocking connections and a thread-safe pool of them, one pool per server."""

from __future__ import annotations

import select
import socket
import threading
import time

from .address import Address
from .errors import CacheConnectionError, CacheTimeoutError, PoolExhaustedError
from .protocol import NEED_DATA, Command, Reply, ReplyParser

#: Commands written before their replies are read. PERF: pipelining saves round trips, but an
#: unbounded pipeline can deadlock when both socket buffers fill (we block writing while the
#: server blocks writing replies nobody reads), so big batches go out in windows.
PIPELINE_WINDOW = 100
READ_SIZE = 65536


class Connection:
    """One blocking socket to a server, with its reply parser.

    Any exception out of :meth:`request` except an error *reply* leaves the connection closed:
    after a timeout or a half-read reply the stream position is unknown.
    """

    def __init__(self, address: Address, connect_timeout: float, timeout: float) -> None:
        """Connect to ``address``.

        Raises:
            CacheTimeoutError: the connect took longer than ``connect_timeout``.
            CacheConnectionError: the connect failed (refused, no such socket, ...).
        """
        self.address = address
        self.timeout = timeout
        self._parser = ReplyParser()
        try:
            if address.path is not None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(connect_timeout)
                try:
                    sock.connect(address.path)
                except BaseException:
                    sock.close()
                    raise
            else:
                assert address.host is not None
                sock = socket.create_connection((address.host, address.port), timeout=connect_timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except TimeoutError:
            raise CacheTimeoutError(f"timed out connecting to {address} after {connect_timeout}s") from None
        except OSError as exc:
            raise CacheConnectionError(f"cannot connect to {address}: {exc.strerror or exc}") from None
        self._sock: socket.socket | None = sock

    @property
    def closed(self) -> bool:
        """Return True once the connection was closed."""
        return self._sock is None

    def close(self) -> None:
        """Close the socket; idempotent."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def is_stale(self) -> bool:
        """Return True if an idle connection was closed by the server (or holds stray bytes).

        An idle connection should have nothing to read; readable means EOF or garbage, so it
        cannot be reused (a restarted daemon closes idle connections this way).
        """
        if self._sock is None:
            return True
        # NOTE: poll, not select: select fails on descriptors >= 1024 (FD_SETSIZE).
        poller = select.poll()
        poller.register(self._sock, select.POLLIN)
        return bool(poller.poll(0)) or self._parser.buffered > 0

    def request(self, commands: list[Command]) -> list[Reply]:
        """Send ``commands`` and return their replies in order, all within ``timeout`` seconds.

        Raises:
            CacheTimeoutError: the whole exchange took longer than ``timeout``.
            CacheConnectionError: the connection broke.
            ProtocolError: the server's reply was malformed.
        """
        if self._sock is None:
            raise CacheConnectionError(f"connection to {self.address} is closed")
        sock = self._sock
        deadline = time.monotonic() + self.timeout
        replies: list[Reply] = []
        try:
            for start in range(0, len(commands), PIPELINE_WINDOW):
                window = commands[start : start + PIPELINE_WINDOW]
                sock.settimeout(max(deadline - time.monotonic(), 1e-6))
                sock.sendall(b"".join(c.data for c in window))
                for command in window:
                    while (reply := self._parser.next_reply(command.expect)) is NEED_DATA:
                        sock.settimeout(max(deadline - time.monotonic(), 1e-6))
                        data = sock.recv(READ_SIZE)
                        if not data:
                            raise CacheConnectionError(f"{self.address} closed the connection")
                        self._parser.feed(data)
                    replies.append(reply)
        except TimeoutError:
            self.close()
            raise CacheTimeoutError(f"no reply from {self.address} within {self.timeout}s") from None
        except OSError as exc:
            self.close()
            raise CacheConnectionError(
                f"connection to {self.address} failed: {exc.strerror or exc}"
            ) from None
        except BaseException:
            self.close()
            raise
        return replies


class ConnectionPool:
    """At most ``max_size`` connections to one server, shared by threads, reused LIFO."""

    def __init__(
        self,
        address: Address,
        max_size: int = 10,
        connect_timeout: float = 1.0,
        timeout: float = 1.0,
        pool_timeout: float | None = None,
    ) -> None:
        """Configure the pool; no connection is opened until the first request."""
        if max_size < 1:
            raise ValueError("max_size must be >= 1")
        self.address = address
        self.max_size = max_size
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self.pool_timeout = timeout if pool_timeout is None else pool_timeout
        self._slots = threading.BoundedSemaphore(max_size)
        self._idle: list[Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    @property
    def idle(self) -> int:
        """Return how many open connections wait in the pool."""
        return len(self._idle)

    def run(self, commands: list[Command]) -> list[Reply]:
        """Send ``commands`` on a pooled connection and return their replies.

        Raises:
            PoolExhaustedError: no connection became free within ``pool_timeout``.
            CacheConnectionError: connecting or the exchange failed (the connection is dropped).
        """
        if not self._slots.acquire(timeout=self.pool_timeout):
            raise PoolExhaustedError(
                f"all {self.max_size} connections to {self.address} busy for {self.pool_timeout}s"
            )
        try:
            conn = self._checkout()
            replies = conn.request(commands)
            with self._lock:
                if self._closed:
                    conn.close()
                else:
                    self._idle.append(conn)
            return replies
        finally:
            self._slots.release()

    def _checkout(self) -> Connection:
        while True:
            with self._lock:
                if self._closed:
                    raise CacheConnectionError("client is closed")
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return Connection(self.address, self.connect_timeout, self.timeout)
            if not conn.is_stale():
                return conn
            conn.close()

    def close(self) -> None:
        """Close every idle connection; busy ones are closed when they come back."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
