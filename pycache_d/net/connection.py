"""One client connection: a Protocol that moves bytes between a socket and a session, within bounds.

The memcached protocol lives in :mod:`pycache_d.protocol.session` (sans-IO); nothing here parses a
command. A :class:`Connection` feeds what it reads to its session and writes back what the session
returns, and it is where the per-client bounds are enforced:

* Backpressure: once a client's unsent replies pass ``HIGH_WATER`` the transport calls
  ``pause_writing`` and we stop reading from that client (and stop feeding its session) until
  they drain below ``LOW_WATER``. A client that pipelines requests without reading its replies
  therefore stalls itself, not the daemon. Input is fed to the session ``MAX_LINES`` (32) lines
  at a time, fewer when replies are large (:meth:`Connection._cut`), so the pause takes effect
  between slices rather than after a whole read's worth of replies.
* Hard bounds, past which the client is disconnected: more than ``MAX_UNSENT`` (64 MiB, or
  2 x ``-I`` + 256 KiB if larger) of unsent replies, or replies waiting in our buffer while the
  client takes none of them for ``STALL_TIMEOUT`` (30 s; also while closing). With the sessions'
  reply budget (below) the first cannot happen; it stays as a backstop for a session that
  answers too much at once.
* Stalls are judged by progress, never by pace: the client took a byte of our replies when
  its TCP stack acknowledged one (``tcp_info``'s ``bytes_acked``), or, on a unix socket, when
  fewer are queued than we wrote. The kernel's send buffer (up to 4 MiB on loopback) only asks
  for more once a third of it drained, so our own buffer can sit unchanged for minutes while a
  slow client reads steadily: that is not a stall. One server timer looks at every connection
  every ``STALL_TIMEOUT`` / 4 (:meth:`Connection.check_stall`), so a client that reads nothing
  is cut 30 to 45 s after the last byte it took; one that reads, however slowly, never is.
* A session answers at most about ``REPLY_BUDGET`` (256 KiB) of values per feed and sets
  ``session.more`` when complete input is left (a long multi-get): we stop reading, let the
  loop serve everyone else (``call_soon``), and feed it again once the reply went out, so
  ``get k k k ...`` with a 1 MiB value per key streams at the client's pace instead of being
  built in memory, and never monopolises the loop. A key dump (``lru_crawler metadump``) goes
  the same way, a slice per feed.
* Input held back while paused or continuing is at most one read (the transport stops reading
  at once); the session bounds its own buffer (line length, item size).

Per-connection memory is therefore bounded by: input, one read (256 KiB) plus the session's
buffer (a partial line of at most 1 MiB, or one data block of at most ``-I`` + 2 bytes and its
line); output, ``HIGH_WATER`` plus one feed's reply (``REPLY_BUDGET`` + one item + small
replies), so about 2 x ``-I`` + 1.5 MiB with every limit reached at once.
* ``--max-connections``: like memcached 1.6, a client over the limit is sent
  ``ERROR Too many open connections`` and closed.

Idle clients cost no timer: one server timer checks stalls for all connections (and one the idle
timeout), never one per connection.

The transport is the compiled stream transport for plain sockets (:mod:`pycache_d.net.streams`),
which hands reads to ``ConnectionBase.received`` without making bytes, or the loop's own
transport (TLS, or without the extensions); the bounds above hold the same with either.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import re
import socket
import sys
import termios
import time
from typing import TYPE_CHECKING, Any, Protocol

from ..log import log, notice
from ..protocol import watch
from ..store import NO_EXTENSIONS
from .listeners import Endpoint


class Host(Protocol):
    """What a connection uses of the server that accepted it (``pycache_d.daemon.server.Server``).

    The server hands itself to every connection it makes; this is the whole of what the
    connection may touch, so the net layer never imports the daemon's.
    """

    #: The event loop every timer of the connection runs on.
    loop: asyncio.AbstractEventLoop
    #: The shared item store (the connection reads only ``max_item_size``).
    store: Any
    #: The open connections (a connection adds and removes itself), the limit, and the count
    #: of every connection accepted.
    connections: set[Any]
    max_connections: int
    total_connections: int
    #: What closed connections read and wrote, and how often one stopped to let the others
    #: in (``stats``: bytes_read, bytes_written, conn_yields; the open ones count their own).
    closed_read: int
    closed_written: int
    conn_yields: int
    #: TLS clients still in their handshake, each with the task that runs it
    #: (:mod:`pycache_d.net.handshake`): they count against the limit too; and the count of
    #: handshakes that failed or ran out of time.
    handshakes: dict[Any, asyncio.Task[None]]
    handshake_errors: int

    def new_session(self) -> Any:
        """Return a protocol session for a new client."""
        ...

    def note_rejected(self, peer: str) -> None:
        """Count (and log) a client refused for the connection limit."""
        ...


#: Unsent reply bytes above which reading from a client pauses, and below which it resumes.
HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024
#: A client with more unsent reply bytes than this is disconnected.
MAX_UNSENT = 64 * 1024 * 1024
#: A client with replies waiting that takes none of them for this long is disconnected (the
#: server checks every STALL_TIMEOUT / 4).
STALL_TIMEOUT = 30.0
#: Input is fed to the session in slices of at most this many bytes (a whole uvloop read)...
FEED_SLICE = 256 * 1024
#: ...and at most this many lines (memcached, too, answers at most 20 requests of a client per
#: event, its -R); fewer once replies are large, see Connection._cut().
MAX_LINES = 32
#: Replies up to this many bytes per line keep slices at MAX_LINES (HIGH_WATER / MAX_LINES).
SMALL_REPLY = HIGH_WATER // MAX_LINES
# _UP_TO[n] matches up to n whole lines: one C call finds where a slice of n lines ends.
_UP_TO = [re.compile(rb"(?:[^\n]*\n){1,%d}" % max(n, 1)) for n in range(MAX_LINES + 1)]
#: struct tcp_info (linux/tcp.h): the u64 tcpi_bytes_acked sits at this offset, just before
#: the end of the part read here.
_BYTES_ACKED = 120
_TCP_INFO_SIZE = _BYTES_ACKED + 8
#: During shutdown, a client that takes none of its replies for this long is cut.
SHUTDOWN_STALL = 1.0

#: memcached 1.6's reply to a client over the connection limit (memcached.c, conn_listening).
TOO_MANY_CONNECTIONS = b"ERROR Too many open connections\r\n"
#: Sent when the session raises: a bug, but one client's request must not take the daemon down.
INTERNAL_ERROR = b"SERVER_ERROR internal error\r\n"


class _ConnectionBase:
    """The pure twin of _cconnection.ConnectionBase: data_received's hot path."""

    transport: Any
    session: Any
    _closing: bool
    _paused: bool
    _continuing: bool
    _eof: bool
    _pending: bytes
    _lines: int
    last_active: float
    written: int
    read_bytes: int

    def data_received(self, data: bytes) -> None:
        self.read_bytes += len(data)  # stats bytes_read
        if self._closing:
            return
        self.last_active = time.monotonic()
        if self._paused or self._pending or self._continuing:
            # Read before the pause took effect: keep it in order behind what is waiting.
            self._pending += data
            return
        # PERF: the usual read, a few requests whose replies are small, is fed whole and
        # answered with one write; _feed() would cut it into the same single slice, slower.
        lines = data.count(b"\n")
        if lines > self._lines or len(data) > FEED_SLICE or log.isEnabledFor(logging.DEBUG):
            self._feed(data)  # type: ignore[attr-defined]
            return
        try:
            reply = self.session.feed(data)
        except Exception:
            self._session_failed([])  # type: ignore[attr-defined]
            return
        if reply:
            self.transport.write(reply)
            self.written += len(reply)
        if len(reply) > SMALL_REPLY * (lines or 1):
            self._learn(data, len(reply))  # type: ignore[attr-defined]
        else:
            self._lines = MAX_LINES  # what _learn() makes of small replies
        if self.session.closing:
            self.close_for_session()  # type: ignore[attr-defined]
        elif self.session.more:  # a large reply, or a dump's slice
            self._continue_later()  # type: ignore[attr-defined]
        elif self._eof:
            self.close()  # type: ignore[attr-defined]


ConnectionBase: Any = _ConnectionBase
if not NO_EXTENSIONS:
    try:
        from ._cconnection import ConnectionBase
    except ImportError:  # not built: the pure twin serves
        pass


class Connection(ConnectionBase, asyncio.Protocol):
    """One client: moves bytes between its transport and its session, within bounds."""

    # PERF: no __dict__ (with the compiled base, whose fields are C ones): an idle connection
    # is a few hundred bytes, and there may be tens of thousands. (Hidden from mypy, which
    # cannot see the compiled base's fields.)
    if not TYPE_CHECKING:
        __slots__ = (
            "server",
            "listener",
            "fd",
            "last_command",
            "_commands_seen",
            "_stopping",
            "_sock",
            "_stall_drained",
            "_stall_since",
            "watching",
            "close_reason",
            "_peer",
        )

    def __init__(self, server: Host, listener: Endpoint) -> None:
        self.server = server
        self.listener = listener
        self.transport: Any = None
        self.session: Any = None
        self.fd = -1
        self.last_active = time.monotonic()
        # When the last complete command came (see last_command_at), and the session's count
        # of commands then.
        self.last_command = self.last_active
        self._commands_seen = 0
        self._paused = False
        self._continuing = False  # the session has more to answer; reading stops meanwhile
        self._pending = b""  # input read but not yet fed, held while paused or continuing
        self._eof = False
        self._closing = False
        self._stopping = False  # shutting down: nothing more is read (stop_reading)
        self.written = 0  # reply bytes handed to the transport
        self.read_bytes = 0  # bytes read from the client
        self.watching = False  # a watch client: the server sends it event lines (send_watched)
        #: Why it closes, for ``watch connevents`` (watch.REASON_*): normal unless told.
        self.close_reason = watch.REASON_NORMAL
        # The peer's address, kept for watch's conn_close only while someone watches
        # connections (the transport forgets it once closed).
        self._peer: Any = None
        self._sock: Any = None
        # The client's progress at the stall check that last saw it move, and when (0: no reply
        # of ours was waiting then).
        self._stall_drained = 0
        self._stall_since = 0.0
        self._lines = MAX_LINES  # lines per slice fed to the session, see _cut()
        # What the compiled hot path needs to know of this module (see _cconnection.pyx).
        self.feed_slice = FEED_SLICE
        self.max_lines = MAX_LINES
        self.small_reply = SMALL_REPLY
        self.high_water = HIGH_WATER
        self.write: Any = None
        self.writev: Any = None

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        self._attach(transport)
        server = self.server
        if server.handshakes.pop(self, None) is not None:
            self._open()  # a TLS client, counted since it connected: its handshake is done
            return
        if is_full(server):
            # NOTE: memcached answers before reading anything and does not count the client
            # in curr/total_connections, only in rejected_connections.
            self._closing = True
            transport.write(TOO_MANY_CONNECTIONS)
            transport.close()
            server.note_rejected(self.peer)
            return
        server.total_connections += 1
        self._open()

    def _attach(self, transport: Any) -> None:
        self.transport = transport
        self.write = transport.write
        # The compiled stream transport sends large values from the items (_cconnection.pyx).
        self.writev = getattr(transport, "write_parts", None)
        sock = self._sock = transport.get_extra_info("socket")
        self.fd = sock.fileno() if sock is not None else -1

    @property
    def peer(self) -> str:
        """The client's address, for the log and ``stats conns`` (made when asked: it is rarely)."""
        if self.transport is None:
            return "?"
        return peer_name(self.transport.get_extra_info("peername"), self.listener)

    def _open(self) -> None:
        server = self.server
        server.connections.add(self)
        transport = self.transport
        transport.set_write_buffer_limits(high=HIGH_WATER, low=LOW_WATER)
        self.session = server.new_session()
        try:
            self.session.cfd = self.fd  # named in watch lines
        except AttributeError:  # a test's stand-in session
            pass
        if log.isEnabledFor(logging.INFO):  # PERF: the peer's name is made only to be logged
            log.info("conn %d: opened from %s", self.fd, self.peer)
        ctx = getattr(self.session, "ctx", None)
        if ctx is not None and ctx.watchers:
            self._peer = transport.get_extra_info("peername")
            watch.conn_new(ctx, self._peer, self.fd)

    def keep_peer(self) -> None:
        """Closing: keep the peer's address for the conn_close line if someone may want it."""
        if self._peer is None and self.transport is not None:
            ctx = getattr(self.session, "ctx", None)
            if ctx is not None and ctx.watchers:
                self._peer = self.transport.get_extra_info("peername")

    def eof_received(self) -> bool:
        self.keep_peer()
        self._eof = True
        # Keep the transport open while input is waiting to be fed or answered; _feed() closes
        # it after.
        return bool(self._pending) or self._continuing

    def connection_lost(self, exc: Exception | None) -> None:
        self.keep_peer()
        self._closing = True
        if self.session is not None:
            server = self.server
            if self in server.connections:
                server.connections.discard(self)
                server.closed_read += self.read_bytes
                server.closed_written += self.written
            close = getattr(self.session, "close", None)
            if close is not None:
                close()  # a dump or a watch it runs ends with it
            log.info("conn %d: closed%s", self.fd, f" ({exc})" if exc else "")
            ctx = getattr(self.session, "ctx", None)
            if ctx is not None and ctx.watchers:
                reason = self.close_reason
                if exc is not None and reason == watch.REASON_NORMAL:
                    reason = watch.REASON_ERROR
                watch.conn_close(ctx, self._peer, reason, self.fd)

    def pause_writing(self) -> None:
        # The transport's buffer passed HIGH_WATER: stop reading until the client catches up.
        self._paused = True
        if not self._closing:
            self.transport.pause_reading()
        log.info("conn %d: paused, %d bytes unsent", self.fd, self.transport.get_write_buffer_size())

    def resume_writing(self) -> None:
        self._paused = False
        log.info("conn %d: resumed", self.fd)
        self._go_on()
        if self.watching:
            self.send_watched()

    def send_watched(self) -> None:
        """Send the lines waiting for this ``watch`` client (the loop calls it soon after an
        event; while the client is slow, its buffer fills and drops lines instead)."""
        if self._closing or self._paused:
            return  # resume_writing() goes on; meanwhile the watcher's bound holds
        reply = self.session.feed(b"")
        if reply:
            self._write_all([reply])

    def _continue_later(self) -> None:
        """The session stopped at its reply budget: go on in a later loop iteration."""
        if not self._continuing:
            self._continuing = True
            self.server.conn_yields += 1
            if not self._paused:
                self.transport.pause_reading()  # bounds _pending to the read in flight
            self.server.loop.call_soon(self._continue)

    def _continue(self) -> None:
        self._continuing = False
        if not self._paused:  # paused: resume_writing() goes on once the client catches up
            self._go_on()

    def _go_on(self) -> None:
        """Answer what waits (input held back, the rest of a cut multi-get), then read again."""
        if self._closing:
            return
        if self._pending or self.session.more:
            pending, self._pending = self._pending, b""
            self._feed(pending)
        if not (self._paused or self._closing or self._continuing or self._stopping):
            self.transport.resume_reading()

    # -- internals -----------------------------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        """Feed ``data`` to the session slice by slice, stopping early if the client pauses."""
        debug = log.isEnabledFor(logging.DEBUG)
        out: list[bytes] = []  # PERF: replies of several slices go out in one write (syscall)
        out_len = 0
        pos, end = 0, len(data)
        session = self.session
        while pos < end or session.more:
            if session.more:
                chunk = b""  # answer what the session holds before anything new
            else:
                cut = self._cut(data, pos, end)
                chunk = data if pos == 0 and cut == end else data[pos:cut]
                pos = cut
            if debug:
                if getattr(session, "loggable", True):
                    log.debug("conn %d: > %d bytes %r", self.fd, len(chunk), bytes(chunk[:80]))
                else:  # APPSEC: it may carry a password (see Session.loggable)
                    log.debug("conn %d: > %d bytes (not shown: authentication)", self.fd, len(chunk))
            try:
                reply = self.session.feed(chunk)
            except Exception:
                self._session_failed(out)
                return
            if reply:
                if debug:
                    log.debug("conn %d: < %d bytes %r", self.fd, len(reply), reply[:80])
                out.append(reply)
                out_len += len(reply)
            if chunk:
                self._learn(chunk, len(reply))
            if session.closing:
                self._write_all(out)
                self.close_for_session()
                return
            if session.more:
                # Stopped at the reply budget: let other clients in before answering more.
                self._write_all(out)
                self._pending = data[pos:] if pos < end else b""
                self._continue_later()
                return
            if out_len >= HIGH_WATER:
                # Enough to matter: hand it over, and the transport pauses us if it cannot send.
                self._write_all(out)
                out.clear()
                out_len = 0
                if self._paused:
                    # One feed may answer a whole item, so a huge -I raises the bound.
                    bound = max(MAX_UNSENT, 2 * self.server.store.max_item_size + HIGH_WATER)
                    if self.transport.get_write_buffer_size() > bound:
                        self._disconnect(f"more than {bound >> 20} MiB of replies unsent")
                        return
                    if pos < end:
                        self._pending = data[pos:]
                    return
        if out:
            self._write_all(out)
        if self._eof and not self._pending:
            self.close()

    def _session_failed(self, out: list[bytes]) -> None:
        """Answer what was answered, then SERVER_ERROR, and close: one client's bug stays its own."""
        log.exception("conn %d: session failed; closing the connection", self.fd)
        out.append(INTERNAL_ERROR)
        self._write_all(out)
        self.close()

    def _write_all(self, out: list[bytes]) -> None:
        self.transport.writelines(out)
        self.written += sum(map(len, out))

    def _cut(self, data: bytes, pos: int, end: int) -> int:
        """Return where the next slice of input to feed ends.

        APPSEC: a session answers everything complete in what it is fed, and a few bytes of
        ``get`` can ask for megabytes, so a slice holds at most ``_lines`` lines: MAX_LINES, or
        as many as made about HIGH_WATER bytes of replies at the size replies had last time.
        Backpressure can then stop a client between slices, and one slice asks for at most
        MAX_LINES x the largest reply a line can get. (Where the input is cut never changes the
        replies: the session handles a request split anywhere.)
        """
        stop = min(end, pos + FEED_SLICE)
        lines = self._lines
        if stop - pos <= lines:
            return stop  # cannot hold more lines than bytes
        match = _UP_TO[lines].match(data, pos, stop)
        if match is None:
            return stop  # no newline: part of a line or of a data block
        at = match.end()
        # A tail without a newline (an incomplete request) goes along rather than alone.
        return at if data.find(b"\n", at, stop) >= 0 else stop

    def _learn(self, chunk: bytes, reply_len: int) -> None:
        """Size the next slice from the reply bytes per input line of this one."""
        per_line = reply_len // max(1, chunk.count(b"\n"))
        self._lines = max(1, min(MAX_LINES, HIGH_WATER // max(1, per_line)))

    def close_for_session(self) -> None:
        """close(), as the session asked: the client's quit, or a protocol error (as watch's
        conn_close tells them apart)."""
        if not getattr(self.session, "quit", True):
            self.close_reason = watch.REASON_ERROR
        self.close()

    def close(self) -> None:
        """Close after the buffered replies are written (the transport flushes first)."""
        self.keep_peer()
        self._closing = True
        self._pending = b""
        self.transport.close()

    def _disconnect(self, why: str) -> None:
        notice("conn %d: disconnecting %s: %s", self.fd, self.peer, why)
        self.close_reason = watch.REASON_SHUTDOWN if self._stopping else watch.REASON_ERROR
        self.keep_peer()
        self._closing = True
        self._pending = b""
        self.transport.abort()

    def check_stall(self, now: float) -> None:
        """Disconnect the client if replies wait for it and it took none for ``STALL_TIMEOUT``.

        Called by the server's stall sweep every ``STALL_TIMEOUT`` / 4 for every connection.
        NOTE: a closing connection counts too: its transport is still flushing to the client.
        """
        size = self.transport.get_write_buffer_size() if self.transport is not None else 0
        if not (size or self._paused):
            self._stall_since = 0.0  # nothing of ours waits for the client
            return
        if self._stalled(now, STALL_TIMEOUT):
            self._disconnect(f"read nothing of {size} unsent bytes in {now - self._stall_since:.0f} s")

    def _stalled(self, now: float, limit: float) -> bool:
        """True if the client took no byte of its replies in the last ``limit`` seconds of looks."""
        drained = self.drained()
        if not self._stall_since or drained != self._stall_drained:
            self._stall_drained, self._stall_since = drained, now
            return False
        return now - self._stall_since >= limit

    def drained(self) -> int:
        """How many bytes of its replies the client has taken (only ever grows).

        Over TCP, the bytes its TCP stack acknowledged (``tcp_info``), TLS records included;
        on a unix socket, what we wrote minus what waits in our buffer and in the kernel's.
        """
        sock = self._sock
        if sock is None or sock.fileno() < 0:  # closed meanwhile: nothing more can drain
            return self._stall_drained
        try:
            if not self.listener.is_unix:
                info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_SIZE)
                if len(info) >= _TCP_INFO_SIZE:  # Linux >= 4.1
                    return int.from_bytes(info[_BYTES_ACKED:_TCP_INFO_SIZE], sys.byteorder)
            queued = _queued(sock.fileno(), termios.TIOCOUTQ)
        except OSError:
            return self._stall_drained
        return self.written - self.transport.get_write_buffer_size() - queued

    def last_command_at(self) -> float:
        """When the client's last complete command arrived, as far as this look can tell.

        PERF: the session only counts commands (no clock per command); when the count moved
        since the last look, the command came with a read no later than the last one, so the
        answer errs late by up to the time between looks (never early: nobody is cut sooner).
        """
        n = self.session.commands
        if n != self._commands_seen:
            self._commands_seen = n
            self.last_command = self.last_active
        return self.last_command

    def stop_reading(self) -> None:
        """Shutting down: read nothing more, but answer all the client sent before.

        "Before" is what our buffers hold and, on a plain socket, what the kernel had received
        (FIONREAD), read here at once: a batch that was arriving is answered whole, and a client
        pipelining without pause cannot hold the shutdown. :meth:`finish` closes once it is all
        delivered.
        """
        if self._stopping or self._closing:
            return
        self._stopping = True
        self.transport.pause_reading()
        data = b""
        # NOTE: the socket's own descriptor (-1 once closed), never the number it had: that
        # may belong to another client by now.
        fd = self._sock.fileno() if self._sock is not None else -1
        if fd >= 0 and self.transport.get_extra_info("sslcontext") is None:
            try:
                waiting = _queued(fd, termios.FIONREAD)
                data = os.read(fd, waiting) if waiting else b""
            except OSError:  # reset: the transport hears it too
                pass
        if data:
            self.data_received(data)  # held behind what waits already, if anything does

    def finish(self, now: float) -> None:
        """Shutting down: close once every reply is delivered; cut a client that takes none.

        Delivered means answered, out of our buffer and out of the kernel's (TIOCOUTQ: acknowledged
        by the client): closing a socket with unread input resets it, and a reset drops what the
        kernel still had to send. A client that takes none of its replies for
        ``SHUTDOWN_STALL`` is disconnected; one that reads, however slowly, is waited for (the
        server bounds the whole shutdown).
        """
        if not self._closing and not (self._pending or self._continuing or self.session.more):
            fd = self._sock.fileno() if self._sock is not None else -1
            try:
                unsent = self.transport.get_write_buffer_size() or fd >= 0 and _queued(fd, termios.TIOCOUTQ)
            except OSError:
                unsent = 0
            if not unsent:
                self.close_reason = watch.REASON_SHUTDOWN
                self.close()
                return
        if self._stalled(now, SHUTDOWN_STALL):
            self._disconnect(f"shutting down: took none of its replies in {SHUTDOWN_STALL:g} s")

    def state(self) -> str:
        """The memcached-style state name shown in ``stats conns``."""
        if self._closing:
            return "conn_closing"
        return "conn_mwrite" if self._paused or self._continuing else "conn_parse_cmd"


def _queued(fd: int, request: int) -> int:
    """Bytes waiting in a socket's receive (FIONREAD) or send (TIOCOUTQ) queue in the kernel."""
    return int.from_bytes(fcntl.ioctl(fd, request, bytes(4)), sys.byteorder)


def is_full(server: Host) -> bool:
    """True if a new client would pass ``--max-connections`` (handshakes hold slots too)."""
    return len(server.connections) + len(server.handshakes) >= server.max_connections


def peer_name(peer: Any, listener: Endpoint) -> str:
    if listener.is_unix:
        return f"unix:{listener.path}"
    if isinstance(peer, tuple) and len(peer) >= 2:
        return str(Endpoint(host=str(peer[0]), port=int(peer[1])))
    return str(peer)
