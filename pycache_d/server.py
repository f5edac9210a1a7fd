"""Event-loop glue: listeners, one byte-moving Protocol per client, and the daemon's lifecycle.

The memcached protocol itself lives in :mod:`pycache_d.session` (sans-IO); nothing here parses
a command. A :class:`Connection` feeds what it reads to its session and writes back what the
session returns, and it is where the per-client bounds are enforced:

* Backpressure: once a client's unsent replies pass ``HIGH_WATER`` the transport calls
  ``pause_writing`` and we stop reading from that client (and stop feeding its session) until
  they drain below ``LOW_WATER``. A client that pipelines requests without reading its replies
  therefore stalls itself, not the daemon.
* Hard bounds, past which the client is disconnected: more than ``MAX_UNSENT`` (64 MiB) of
  unsent replies (one read can ask for far more than the high-water mark, e.g. thousands of
  ``get`` of a large item), or ``STALL_TIMEOUT`` (30 s) paused without reading a single byte.
* Input held back while paused is at most one read (the transport stops reading at once);
  the session bounds its own buffer (line length, item size).
* ``--max-connections``: like memcached 1.6, a client over the limit is sent
  ``ERROR Too many open connections`` and closed.

Idle clients cost nothing: no timers run for a connection unless it is paused.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import resource
import signal
import socket
import stat
import time
from collections.abc import Callable
from typing import Any

from . import log as logmod
from .config import LIVE_SETTINGS, Config, ConfigError, ConfigSource, Endpoint, describe_size
from .context import ServerContext
from .log import log, notice

#: Unsent reply bytes above which reading from a client pauses, and below which it resumes.
HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024
#: A client with more unsent reply bytes than this is disconnected.
MAX_UNSENT = 64 * 1024 * 1024
#: A paused client that drains nothing for this long is disconnected (checked at this interval).
STALL_TIMEOUT = 30.0
#: Input is fed to the session in slices of at most this many bytes (a whole uvloop read)...
FEED_SLICE = 256 * 1024
#: ...and of at most as many lines as, at the replies' recent size, make HIGH_WATER bytes of
#: replies (at least one line, at first this many): see Connection._cut().
FIRST_LINES = 16

#: memcached 1.6's reply to a client over the connection limit (memcached.c, conn_listening).
TOO_MANY_CONNECTIONS = b"ERROR Too many open connections\r\n"
#: Sent when the session raises: a bug, but one client's request must not take the daemon down.
INTERNAL_ERROR = b"SERVER_ERROR internal error\r\n"

#: The reclaimer frees at most this many dead items per slice (~2 ms on the python backend)...
RECLAIM_SLICE = 500
#: ...and sleeps this long between slices unless the last one was full.
RECLAIM_INTERVAL = 0.1

#: On SIGTERM, how long in-flight replies may take to flush before connections are cut.
SHUTDOWN_GRACE = 5.0
#: A draining connection is done once it has received nothing for this long.
SHUTDOWN_QUIET = 0.1

#: File descriptors kept for listeners, logs and the loop on top of --max-connections.
RESERVED_FDS = 64

#: Rejected connections are logged at most once per this many seconds (a flood must not
#: become a flood of log lines).
REJECT_LOG_INTERVAL = 1.0


class ListenError(Exception):
    """Raised when a listening socket cannot be opened (address in use, permission, ...)."""


class Connection(asyncio.Protocol):
    """One client: moves bytes between its transport and its session, within bounds."""

    def __init__(self, server: Server, listener: Endpoint) -> None:
        self.server = server
        self.listener = listener
        self.transport: Any = None
        self.session: Any = None
        self.fd = -1
        self.peer = "?"
        self.last_active = time.monotonic()
        self._paused = False
        self._pending = b""  # input read but not yet fed, held while paused
        self._eof = False
        self._closing = False
        self._stall_timer: asyncio.TimerHandle | None = None
        self._stall_size = 0
        self._lines = FIRST_LINES  # lines per slice fed to the session, see _cut()

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        self.transport = transport
        sock = transport.get_extra_info("socket")
        self.fd = sock.fileno() if sock is not None else -1
        self.peer = _peer_name(transport.get_extra_info("peername"), self.listener)
        server = self.server
        if len(server.connections) >= server.max_connections:
            # NOTE: memcached answers before reading anything and does not count the client
            # in curr/total_connections, only in rejected_connections.
            self._closing = True
            transport.write(TOO_MANY_CONNECTIONS)
            transport.close()
            server.note_rejected(self.peer)
            return
        server.connections.add(self)
        server.total_connections += 1
        transport.set_write_buffer_limits(high=HIGH_WATER, low=LOW_WATER)
        self.session = server.new_session()
        log.info("conn %d: opened from %s", self.fd, self.peer)

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        self.last_active = time.monotonic()
        if self._paused or self._pending:
            # Read before the pause took effect: keep it in order behind what is waiting.
            self._pending += data
            return
        self._feed(data)

    def eof_received(self) -> bool:
        self._eof = True
        log.info("conn %d: client closed its end", self.fd)
        # Keep the transport open while input is waiting to be fed; _feed() closes it after.
        return bool(self._pending)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._cancel_stall_timer()
        if self.session is not None:
            self.server.connections.discard(self)
            log.info("conn %d: closed%s", self.fd, f" ({exc})" if exc else "")

    def pause_writing(self) -> None:
        # The transport's buffer passed HIGH_WATER: stop reading until the client catches up.
        self._paused = True
        if not self._closing:
            self.transport.pause_reading()
        self._stall_size = self.transport.get_write_buffer_size()
        self._stall_timer = self.server.loop.call_later(STALL_TIMEOUT, self._check_stall)
        log.info("conn %d: paused, %d bytes unsent", self.fd, self._stall_size)

    def resume_writing(self) -> None:
        self._paused = False
        self._cancel_stall_timer()
        log.info("conn %d: resumed", self.fd)
        if self._closing:
            return
        if self._pending:
            pending, self._pending = self._pending, b""
            self._feed(pending)
        if not self._paused and not self._closing:
            self.transport.resume_reading()

    # -- internals -----------------------------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        """Feed ``data`` to the session slice by slice, stopping early if the client pauses."""
        debug = log.isEnabledFor(logging.DEBUG)
        pos, end = 0, len(data)
        while pos < end:
            cut = self._cut(data, pos, end)
            chunk = data if pos == 0 and cut == end else data[pos:cut]
            pos = cut
            if debug:
                log.debug("conn %d: > %d bytes %r", self.fd, len(chunk), bytes(chunk[:80]))
            try:
                reply = self.session.feed(chunk)
            except Exception:
                log.exception("conn %d: session failed; closing the connection", self.fd)
                self.transport.write(INTERNAL_ERROR)
                self.close()
                return
            if reply:
                if debug:
                    log.debug("conn %d: < %d bytes %r", self.fd, len(reply), reply[:80])
                self.transport.write(reply)
            self._learn(chunk, len(reply))
            if self.session.closing:
                self.close()
                return
            if self._paused:
                if self.transport.get_write_buffer_size() > MAX_UNSENT:
                    self._disconnect(f"more than {MAX_UNSENT >> 20} MiB of replies unsent")
                    return
                if pos < end:
                    self._pending = data[pos:]
                    return
        if self._eof and not self._pending:
            self.close()

    def _cut(self, data: bytes, pos: int, end: int) -> int:
        """Return where the next slice of input to feed ends.

        PERF/APPSEC: a session answers everything complete in what it is fed, and a few bytes of
        ``get`` can ask for megabytes, so the slice is bounded in lines as well as bytes: at most
        ``_lines`` newlines, the number that made about HIGH_WATER bytes of replies at the size
        replies have had lately. Cheap traffic is fed in whole reads; a client pipelining gets
        of large items is fed a few at a time, so backpressure can stop it between slices. (The
        split point never changes the replies: the session handles a request cut anywhere.)
        """
        stop = min(end, pos + FEED_SLICE)
        lines = self._lines
        if data.count(b"\n", pos, stop) <= lines:
            return stop
        at = pos
        for _ in range(lines):
            at = data.index(b"\n", at) + 1
        return at

    def _learn(self, chunk: bytes, reply_len: int) -> None:
        """Size the next slice from the reply bytes per input line of this one."""
        per_line = reply_len // max(1, chunk.count(b"\n"))
        self._lines = max(1, min(FEED_SLICE, HIGH_WATER // max(1, per_line)))

    def close(self) -> None:
        """Close after the buffered replies are written (the transport flushes first)."""
        self._closing = True
        self._pending = b""
        self.transport.close()

    def _disconnect(self, why: str) -> None:
        notice("conn %d: disconnecting %s: %s", self.fd, self.peer, why)
        self._closing = True
        self._pending = b""
        self.transport.abort()

    def _check_stall(self) -> None:
        self._stall_timer = None
        if not self._paused or self._closing:
            return
        size = self.transport.get_write_buffer_size()
        if size >= self._stall_size:
            self._disconnect(f"read nothing of {size} unsent bytes in {STALL_TIMEOUT:g} s")
            return
        self._stall_size = size
        self._stall_timer = self.server.loop.call_later(STALL_TIMEOUT, self._check_stall)

    def _cancel_stall_timer(self) -> None:
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None

    def finish_if_idle(self, now: float) -> None:
        """During shutdown: close once the client is quiet and nothing is waiting to be fed."""
        if not self._closing and not self._pending and now - self.last_active >= SHUTDOWN_QUIET:
            self.close()

    def state(self) -> str:
        """The memcached-style state name shown in ``stats conns``."""
        if self._closing:
            return "conn_closing"
        return "conn_mwrite" if self._paused else "conn_parse_cmd"


def _peer_name(peer: Any, listener: Endpoint) -> str:
    if listener.is_unix:
        return f"unix:{listener.path}"
    if isinstance(peer, tuple) and len(peer) >= 2:
        return str(Endpoint(host=str(peer[0]), port=int(peer[1])))
    return str(peer)


class DaemonContext(ServerContext):
    """What the session's ``stats``/``verbosity`` commands see of the running daemon."""

    def __init__(self, server: Server) -> None:
        super().__init__(server.store)
        self._server = server

    @property  # type: ignore[override]
    def verbosity(self) -> int:
        return self._server.verbosity

    @verbosity.setter
    def verbosity(self, value: int) -> None:
        self._server.verbosity = value
        logmod.set_verbosity(value)

    def general_stats(self) -> list[tuple[str, object]]:
        s = self._server
        return _merge(
            super().general_stats(),
            [
                ("max_connections", s.max_connections),
                ("curr_connections", len(s.connections)),
                ("total_connections", s.total_connections),
                ("rejected_connections", s.rejected_connections),
                ("connection_structures", len(s.connections)),
            ],
        )

    def settings_stats(self) -> list[tuple[str, object]]:
        s = self._server
        cfg = s.config
        tcp = [e for e in s.bound if not e.is_unix]
        unix = [e for e in s.bound if e.is_unix]
        return _merge(
            super().settings_stats(),
            [
                ("maxbytes", s.store.max_bytes),
                ("maxconns", s.max_connections),
                ("tcpport", tcp[0].port if tcp else 0),
                ("inter", ",".join(str(e) for e in tcp) or "NULL"),
                ("verbosity", s.verbosity),
                ("domain_socket", unix[0].path if unix else "NULL"),
                ("umask", f"{cfg.unix_mode:o}"),
                ("item_size_max", s.store.max_item_size),
                ("maxitems", s.store.max_items),
                ("backend", s.store.backend),
            ],
        )

    def conns_stats(self) -> list[tuple[str, object]]:
        now = time.monotonic()
        out: list[tuple[str, object]] = []
        for fd, endpoint in sorted(self._server.listening_fds.items()):
            out += [(f"{fd}:addr", _wire_addr(endpoint)), (f"{fd}:state", "conn_listening")]
        for c in sorted(self._server.connections, key=lambda c: c.fd):
            out += [
                (f"{c.fd}:addr", "unix:" + c.listener.path if c.listener.is_unix else "tcp:" + c.peer),
                (f"{c.fd}:listen_addr", _wire_addr(c.listener)),
                (f"{c.fd}:state", c.state()),
                (f"{c.fd}:secs_since_last_cmd", int(now - c.last_active)),
            ]
        return out

    def reset_stats(self) -> None:
        super().reset_stats()
        self._server.total_connections = len(self._server.connections)
        self._server.rejected_connections = 0


def _wire_addr(e: Endpoint) -> str:
    return f"unix:{e.path}" if e.is_unix else f"tcp:{e}"


def _merge(base: list[tuple[str, object]], ours: list[tuple[str, object]]) -> list[tuple[str, object]]:
    """Replace the base class's placeholder values with ours, keeping its order; append the rest."""
    mine = dict(ours)
    out = [(k, mine.pop(k, v)) for k, v in base]
    return out + [(k, v) for k, v in ours if k in mine]


class Server:
    """The running daemon: its listeners, connections, reclaimer, signals and live settings.

    Args:
        config: the validated settings it starts with.
        store: the item store every session shares.
        source: where ``config`` came from, re-read on SIGHUP (None: SIGHUP only logs).
        session_factory: ``(store, ctx) -> session``; :func:`pycache_d.sessions.new_session`
            (the compiled session for the native store) unless a test passes a stand-in.

    Create it inside the running event loop.
    """

    def __init__(
        self,
        config: Config,
        store: Any,
        *,
        source: ConfigSource | None = None,
        session_factory: Callable[[Any, Any], Any] | None = None,
    ) -> None:
        if session_factory is None:
            from .sessions import new_session

            session_factory = new_session
        self.config = config
        self.store = store
        self.source = source
        self.session_factory = session_factory
        self.loop = asyncio.get_running_loop()
        self.verbosity = config.verbose
        self.ctx = DaemonContext(self)
        self.ctx.verbosity = config.verbose
        self.max_connections = config.max_connections
        self.connections: set[Connection] = set()
        self.total_connections = 0
        self.rejected_connections = 0
        self.bound: list[Endpoint] = []
        self.listening_fds: dict[int, Endpoint] = {}
        self._servers: list[asyncio.AbstractServer] = []
        self._unix_sockets: list[tuple[str, int]] = []  # (path, inode) to remove on exit
        self._stopping = asyncio.Event()
        self._reclaimer: asyncio.Task[None] | None = None
        self._rejects_unlogged = 0
        self._last_reject_log = 0.0

    def new_session(self) -> Any:
        return self.session_factory(self.store, self.ctx)

    # -- listening -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Open every listener and start the reclaimer.

        Raises:
            ListenError: an address cannot be bound; listeners already open are closed again.
        """
        _raise_fd_limit(self.max_connections)
        try:
            for endpoint in self.config.endpoints:
                await self._listen(endpoint)
        except BaseException:
            self._close_listeners()
            raise
        self._reclaimer = self.loop.create_task(self._reclaim_forever())

    async def _listen(self, endpoint: Endpoint) -> None:
        def factory(e: Endpoint = endpoint) -> Connection:
            return Connection(self, e)

        try:
            if endpoint.is_unix:
                sock = _bind_unix(endpoint.path, self.config.unix_mode)
                self._unix_sockets.append((endpoint.path, os.stat(endpoint.path).st_ino))
                srv = await self.loop.create_unix_server(factory, sock=sock, backlog=1024)
            else:
                srv = await self.loop.create_server(
                    factory, endpoint.host, endpoint.port, reuse_address=True, backlog=1024
                )
        except OSError as e:
            reason = os.strerror(e.errno).lower() if e.errno else str(e)
            raise ListenError(f"cannot listen on {endpoint}: {reason}") from None
        self._servers.append(srv)
        for sock in srv.sockets:
            if endpoint.is_unix:
                bound = endpoint
            else:
                host, port = sock.getsockname()[:2]
                bound = Endpoint(host=host, port=port)
            self.bound.append(bound)
            self.listening_fds[sock.fileno()] = bound
            notice("listening on %s", bound)

    def _close_listeners(self) -> None:
        for srv in self._servers:
            srv.close()
        self._servers.clear()
        for path, inode in self._unix_sockets:
            # NOTE: only our own socket file: a newer daemon may have replaced it.
            try:
                if os.stat(path).st_ino == inode:
                    os.unlink(path)
            except OSError:
                pass
        self._unix_sockets.clear()

    def note_rejected(self, peer: str) -> None:
        self.rejected_connections += 1
        self._rejects_unlogged += 1
        now = time.monotonic()
        if now - self._last_reject_log >= REJECT_LOG_INTERVAL:
            notice(
                "rejected %d connection(s), latest from %s: max_connections (%d) reached",
                self._rejects_unlogged,
                peer,
                self.max_connections,
            )
            self._rejects_unlogged = 0
            self._last_reject_log = now

    # -- background work -----------------------------------------------------------------------

    async def _reclaim_forever(self) -> None:
        """Free dead (expired or flushed) items a slice at a time, never stalling the loop."""
        while True:
            freed = self.store.reclaim(RECLAIM_SLICE)
            # A full slice means more is probably waiting: yield to clients, then go on.
            await asyncio.sleep(0 if freed >= RECLAIM_SLICE else RECLAIM_INTERVAL)

    # -- lifecycle -----------------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        self.loop.add_signal_handler(signal.SIGTERM, self.stop, "SIGTERM")
        self.loop.add_signal_handler(signal.SIGINT, self.stop, "SIGINT")
        self.loop.add_signal_handler(signal.SIGHUP, self.reload)

    def stop(self, why: str = "stop requested") -> None:
        if not self._stopping.is_set():
            notice("%s: shutting down", why)
            self._stopping.set()

    async def serve_until_stopped(self) -> None:
        """Run until :meth:`stop`; then stop accepting and let in-flight replies flush."""
        await self._stopping.wait()
        self._close_listeners()
        if self._reclaimer is not None:
            self._reclaimer.cancel()
        deadline = self.loop.time() + SHUTDOWN_GRACE
        while self.connections and self.loop.time() < deadline:
            now = time.monotonic()
            for c in list(self.connections):
                c.finish_if_idle(now)
            await asyncio.sleep(0.02)
        if self.connections:
            notice(
                "%d connection(s) still busy after %g s; closing them", len(self.connections), SHUTDOWN_GRACE
            )
            for c in list(self.connections):
                c.transport.abort()
            await asyncio.sleep(0)

    def reload(self) -> None:
        """SIGHUP: re-read the config file and apply what can change while running."""
        if self.source is None or self.source.path is None:
            notice("SIGHUP: no config file to reload")
            return
        try:
            new = self.source.resolve()
        except ConfigError as e:
            log.error("reload failed, keeping the current settings: %s", e)
            return
        old = self.config
        changes = []
        for name in LIVE_SETTINGS:
            before, after = getattr(old, name), getattr(new, name)
            if before != after:
                self._apply(name, after)
                if name in ("memory_limit", "max_item_size"):
                    before, after = describe_size(before), describe_size(after)
                changes.append(f"{name} {before} -> {after}")
        for name in ("port", "listen", "unix_mode", "backend"):
            if getattr(old, name) != getattr(new, name):
                log.warning("reload: %s changed in %s; restart the daemon to apply it", name, new.config)
        self.config = new
        notice("reloaded %s: %s", self.source.path, "; ".join(changes) or "no live setting changed")

    def _apply(self, name: str, value: int) -> None:
        if name == "memory_limit":
            self.store.max_bytes = value
        elif name == "max_items":
            self.store.max_items = value
        elif name == "max_item_size":
            self.store.max_item_size = value
        elif name == "verbose":
            self.ctx.verbosity = value
        elif name == "max_connections":
            self.max_connections = value
            _raise_fd_limit(value)


def _bind_unix(path: str, mode: int) -> socket.socket:
    """Bind a unix stream socket at ``path`` with permissions ``mode``, replacing a stale one."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(st.st_mode):
            raise OSError(errno.EEXIST, f"{path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)  # stale: left behind by a daemon that did not exit cleanly
        else:
            raise OSError(errno.EADDRINUSE, "in use")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # APPSEC: the umask makes the socket file born with at most ``mode``, so it is never
    # reachable more widely, even for the instant before the chmod.
    old_umask = os.umask(~mode & 0o777)
    try:
        sock.bind(path)
    except BaseException:
        sock.close()
        raise
    finally:
        os.umask(old_umask)
    os.chmod(path, mode)
    return sock


def _raise_fd_limit(max_connections: int) -> None:
    """Raise the soft open-file limit to fit ``max_connections`` (memcached does the same)."""
    want = max_connections + RESERVED_FDS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= want:
        return
    new = want if hard == resource.RLIM_INFINITY else min(want, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    except (ValueError, OSError):
        new = soft
    if new < want:
        log.warning(
            "max_connections %d needs %d file descriptors but the limit is %d; "
            "accepting may fail before the limit is reached",
            max_connections,
            want,
            new,
        )


async def run(server: Server, on_started: Callable[[], None] | None = None) -> None:
    """Start ``server``, serve until SIGTERM/SIGINT, and shut down cleanly.

    Args:
        on_started: called once every listener is open (the daemon logs its settings there, so
            a failed start prints only the reason).

    Raises:
        ListenError: a listener could not be opened (nothing is left listening).
    """
    await server.start()
    server.install_signal_handlers()
    if on_started is not None:
        on_started()
    await server.serve_until_stopped()
