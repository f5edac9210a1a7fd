"""TLS clients before their handshake: counted against ``--max-connections``, and given a deadline.

The loop's own TLS server (``create_server(ssl=...)``) shows a client to its protocol only once
the handshake is done, so a client that connects and never sends its ClientHello was nobody's:
not in ``curr_connections``, not under ``-c``, holding a file descriptor until the loop's
handshake timeout. Enough of them exhaust the descriptors while ``-c`` is never reached.

Here a TLS listener accepts in Python (:class:`TLSServer`, the accept loop of the plain
listeners) and takes each client as memcached does (``conn_new`` before ``SSL_accept``): over
the limit it is answered ``ERROR Too many open connections`` in plain text and closed, before
any TLS; otherwise it is counted in ``curr_connections`` and ``total_connections`` at once and
handed to ``loop.connect_accepted_socket`` with ``ssl_handshake_timeout=HANDSHAKE_TIMEOUT``
(10 s). Nothing reads the socket until the loop's TLS protocol does, so no byte of the
ClientHello can be lost on the way. At the deadline the loop aborts the TCP connection (its
SSL protocol raises ConnectionAbortedError); that, and any failed handshake, counts in
``ssl_handshake_errors`` (memcached's stat) and frees the slot. A handshake that succeeds hands
its slot to the :class:`~pycache_d.net.connection.Connection` it becomes.

A stalled handshake therefore costs a slot of ``-c``, a descriptor and the loop's TLS objects
for at most HANDSHAKE_TIMEOUT.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from typing import Any

from ..log import log
from . import tls
from .connection import TOO_MANY_CONNECTIONS, Connection, Host, is_full, peer_name
from .listeners import Endpoint
from .streams import PlainServer


class TLSServer(PlainServer):
    """Accept TLS clients on ``sockets`` for ``server``: counted from their connect (see above)."""

    def __init__(
        self,
        server: Host,
        sockets: list[socket.socket],
        listener: Endpoint,
        context: ssl.SSLContext,
    ) -> None:
        super().__init__(server.loop, None, sockets, lambda: Connection(server, listener))
        self._server = server
        self._listener = listener
        self._context = context

    def _serve(self, sock: socket.socket, peer: Any) -> None:
        server = self._server
        if is_full(server):
            # NOTE: memcached rejects before SSL_accept, so the client reads plain text.
            try:
                sock.send(TOO_MANY_CONNECTIONS)
            except OSError:
                pass
            sock.close()
            server.note_rejected(peer_name(peer, self._listener))
            return
        conn = Connection(server, self._listener)
        server.total_connections += 1
        server.handshakes[conn] = server.loop.create_task(self._handshake(conn, sock, peer))

    async def _handshake(self, conn: Connection, sock: socket.socket, peer: Any) -> None:
        server = self._server
        try:
            # The loop calls conn.connection_made once the handshake is done, which takes the
            # slot over from server.handshakes.
            await server.loop.connect_accepted_socket(
                lambda: conn, sock, ssl=self._context, ssl_handshake_timeout=tls.HANDSHAKE_TIMEOUT
            )
        except asyncio.CancelledError:  # shutting down
            sock.close()
            raise
        except Exception as e:  # a failed handshake (ssl.SSLError), the deadline, a reset
            server.handshake_errors += 1
            log.info(
                "TLS handshake with %s failed: %s", peer_name(peer, self._listener), e or type(e).__name__
            )
            sock.close()
        finally:
            server.handshakes.pop(conn, None)
