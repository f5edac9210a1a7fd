"""Plain listeners whose clients the compiled stream transport drives (see _cstream.pyx).

This module binds the choice once: :data:`Poller` is the compiled epoll driver, or None when it
is not built, when ``PYCACHE_D_NO_EXTENSIONS`` is set, or when ``PYCACHE_D_STREAMS=uvloop`` asks
for the event loop's own transports (the way the daemon ran before; tests run both). With None,
or for TLS listeners, the server uses ``loop.create_server``.

:class:`PlainServer` accepts on listening sockets and gives each client to the poller. Accepting
is not the hot path: it runs in Python, a bounded batch per wakeup.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
from collections.abc import Callable
from typing import Any

from ..log import log, notice
from ..store import NO_EXTENSIONS

__all__ = ["ACCEPT_BATCH", "READ_SIZE", "PlainServer", "Poller"]

Poller: Any = None
if not NO_EXTENSIONS and os.environ.get("PYCACHE_D_STREAMS", "") != "uvloop":
    try:
        from ._cstream import Poller
    except ImportError:  # not built: the loop's transports serve
        pass

#: Bytes read from one socket per wakeup at most (uvloop reads 256 KiB too).
READ_SIZE = 256 * 1024
#: Connections accepted per wakeup of a listener at most; more wait for the next one.
ACCEPT_BATCH = 64
#: accept() failed for the daemon's own reasons (out of file descriptors or memory, ...):
#: accepting pauses this long, then tries again.
ACCEPT_RETRY = 0.1
#: accept() errors about one client only (accept(2): the network errors Linux passes on for a
#: pending connection, and a firewall's EPERM): that client is skipped and accepting goes on.
_CLIENT_GONE = {
    errno.ECONNABORTED,
    errno.EPROTO,
    errno.ENETDOWN,
    errno.ENOPROTOOPT,
    errno.EHOSTDOWN,
    errno.ENONET,
    errno.EHOSTUNREACH,
    errno.EOPNOTSUPP,
    errno.ENETUNREACH,
    errno.EPERM,
}


class PlainServer:
    """Accept clients on ``sockets`` (bound, listening) and drive each with ``poller``.

    Offers what the server uses of an asyncio server: ``sockets`` and ``close()``. A subclass
    may serve its clients otherwise (:meth:`_serve`): TLS listeners do (net/handshake.py).
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        poller: Any,
        sockets: list[socket.socket],
        protocol_factory: Callable[[], asyncio.Protocol],
    ) -> None:
        self._loop = loop
        self._poller = poller
        self._factory = protocol_factory
        self.sockets = list(sockets)
        self._starved = False
        for sock in self.sockets:
            sock.setblocking(False)
            loop.add_reader(sock.fileno(), self._accept, sock)

    def close(self) -> None:
        """Stop accepting and close the listening sockets (clients stay connected)."""
        for sock in self.sockets:
            if sock.fileno() >= 0:
                self._loop.remove_reader(sock.fileno())
                sock.close()

    def _accept(self, listener: socket.socket) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                sock, peer = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                if e.errno in _CLIENT_GONE:
                    continue
                # EMFILE, ENFILE, ENOBUFS, ENOMEM, or anything unexpected: back off, never spin.
                self._starve(listener, e)
                return
            if self._starved:
                self._starved = False
                notice("accepting connections again")
            try:
                sock.setblocking(False)
                if sock.family in (socket.AF_INET, socket.AF_INET6):
                    # Replies are whole: send each at once (uvloop's transports do the same).
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._serve(sock, peer)
            except Exception:  # one client's failure must not stop the listener
                log.exception("cannot serve a new connection; closing it")
                sock.close()

    def _serve(self, sock: socket.socket, peer: Any) -> None:
        """Serve a client just accepted (``sock`` is non-blocking)."""
        self._poller.open(sock, self._factory(), peer)

    def _starve(self, listener: socket.socket, e: OSError) -> None:
        # NOTE: the pending connection stays in the backlog: retrying at once would spin.
        if not self._starved:
            self._starved = True
            reason = os.strerror(e.errno or 0)
            log.warning("cannot accept connections: %s; retrying every %g s", reason, ACCEPT_RETRY)
        self._loop.remove_reader(listener.fileno())
        self._loop.call_later(ACCEPT_RETRY, self._resume, listener)

    def _resume(self, listener: socket.socket) -> None:
        if listener.fileno() >= 0:
            self._loop.add_reader(listener.fileno(), self._accept, listener)
