"""The running daemon: listeners, connections, the reclaimer, signals and live reloads.

Each client is a :class:`~pycache_d.net.connection.Connection` (bytes in, bytes out, bounded); the
protocol is the session's business. :class:`Server` owns what they share: the store, the
:class:`DaemonContext` that ``stats`` and ``verbosity`` see, the connection limit, and the
lifecycle:

* a background task frees dead items (``store.reclaim``) in slices that never stall the loop;
* SIGTERM/SIGINT: stop accepting and reading, answer what every client had sent, deliver it
  and close (a client that takes none of its replies for ``SHUTDOWN_STALL`` is cut, and the
  whole takes at most ``SHUTDOWN_GRACE``), exit 0;
* SIGHUP: re-read the config file and apply the settings that can change live (and the TLS
  certificate files, re-read at the same paths);
* ``--idle-timeout``: one loop timer sweeps the connections now and then and closes those the
  client left idle (no per-connection timers: idle clients cost nothing);
* stalls: another looks at every connection every ``STALL_TIMEOUT`` / 4 and disconnects a client
  that has taken none of its waiting replies for ``STALL_TIMEOUT``
  (:meth:`~pycache_d.net.connection.Connection.check_stall`).

TLS (see :mod:`pycache_d.net.tls`): with a certificate, every TCP listener but the ``notls:`` ones
speaks TLS; unix sockets stay plain. A plain listener that other hosts can reach is warned about
at start, since without ``--auth-file`` the memcached protocol has no authentication.

Authentication (see :mod:`pycache_d.protocol.auth`): ``--auth-file`` loads the credentials into
the context every session reads them from; SIGHUP re-reads the file.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import ipaddress
import os
import signal
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any

from .. import log as logmod
from ..log import log, notice
from ..net import connection as netconn
from ..net import tls
from ..net.connection import Connection
from ..net.handshake import TLSServer
from ..net.listeners import Endpoint, ListenError, bind_tcp, bind_unix, raise_fd_limit
from ..net.streams import READ_SIZE, PlainServer, Poller
from ..protocol import auth, new_session, watch
from ..protocol.context import ServerContext
from . import systemd
from .config import LIVE_SETTINGS, TLS_SETTINGS, Config, ConfigError, ConfigSource, describe_size
from .wallclock import WallClockWatch

__all__ = ["DaemonContext", "ListenError", "Server", "run"]

#: The reclaimer frees at most this many dead items per slice (~2 ms on the python backend)...
RECLAIM_SLICE = 500
#: ...and sleeps this long between slices unless the last one was full.
RECLAIM_INTERVAL = 0.1

#: The listen() backlog of every listener.
BACKLOG = 1024

#: On SIGTERM, how long delivering the replies to what clients had sent may take at most: the
#: bound for clients that read, however slowly (one that reads nothing is cut after
#: connection.SHUTDOWN_STALL). Far below systemd's TimeoutStopSec=90, which the snapshot needs.
SHUTDOWN_GRACE = 30.0

#: Rejected connections are logged at most once per this many seconds (a flood must not
#: become a flood of log lines).
REJECT_LOG_INTERVAL = 1.0

#: The idle sweep runs every max(IDLE_SWEEP_MIN, timeout / 8) seconds, so a client is closed
#: between timeout and timeout + 2 x that after its last complete command (one interval to see
#: that its count of commands moved, one to find it due).
IDLE_SWEEP_MIN = 1.0

#: On SIGTERM, a closing TLS client with nothing left to encrypt gets this long to read the
#: last bytes and the close_notify before its connection ends (see serve_until_stopped).
TLS_CLOSE_WAIT = 0.2


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

    @property
    def dump_enabled(self) -> bool:  # type: ignore[override]
        return not self._server.config.disable_dumping

    @property
    def shutdown_enabled(self) -> bool:  # type: ignore[override]
        return self._server.config.enable_shutdown

    def traffic(self) -> tuple[int, int, int]:
        s = self._server
        read = s.closed_read + sum(c.read_bytes for c in s.connections)
        written = s.closed_written + sum(c.written for c in s.connections)
        base_read, base_written, base_yields = s.traffic_base
        return read - base_read, written - base_written, s.conn_yields - base_yields

    def attach_watcher(self, session: Any, watcher: Any) -> None:
        s = self._server
        for conn in s.connections:
            if conn.session is session or getattr(conn.session, "slow", None) is session:
                conn.watching = True
                watcher.wake = functools.partial(s.loop.call_soon, conn.send_watched)
                return

    def shutdown(self, graceful: bool) -> bool:
        # memcached: SIGINT, or SIGUSR1 for graceful; both stop this daemon the way SIGTERM does.
        notice("shutdown requested by a client%s", " (graceful)" if graceful else "")
        self._server.loop.call_soon(self._server.stop, "shutdown command")
        return True

    def general_stats(self) -> list[tuple[str, object]]:
        s = self._server
        ours: list[tuple[str, object]] = [
            ("max_connections", s.max_connections),
            ("curr_connections", len(s.connections) + len(s.handshakes)),
            ("total_connections", s.total_connections),
            ("rejected_connections", s.rejected_connections),
            ("connection_structures", len(s.connections) + len(s.handshakes)),
            ("idle_kicks", s.idle_kicks),
            ("accepting_conns", 0 if s._stopping.is_set() else 1),
        ]
        if s.tls_context is not None:
            ours.append(("ssl_handshake_errors", s.handshake_errors))
            ours.append(("time_since_server_cert_refresh", int(time.monotonic() - s.certs_loaded_at)))
        return _merge(super().general_stats(), ours)

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
                ("idle_timeout", s.idle_timeout),
                ("maxitems", s.store.max_items),
                ("backend", s.store.backend),
                # memcached 1.6's TLS settings, those that apply here.
                ("ssl_enabled", "yes" if cfg.tls else "no"),
                ("ssl_chain_cert", cfg.tls_cert or "NULL"),
                ("ssl_key", cfg.tls_key or "NULL"),
                ("ssl_verify_mode", 2 if cfg.tls_ca else 0),  # 2: a client certificate is required
                ("ssl_ciphers", "NULL"),  # OpenSSL's defaults
                ("ssl_ca_cert", cfg.tls_ca or "NULL"),
                ("ssl_min_version", tls.MIN_VERSION_NAME),
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
                (f"{c.fd}:secs_since_last_cmd", int(now - c.last_command_at())),
            ]
        return out

    def reset_stats(self) -> None:
        super().reset_stats()
        # memcached zeroes both (its stats_reset clears the whole counter struct).
        self._server.total_connections = 0
        self._server.rejected_connections = 0
        self._server.idle_kicks = 0
        self._server.handshake_errors = 0
        read, written, _ = self.traffic()
        base_read, base_written, _ = self._server.traffic_base
        self._server.traffic_base = (base_read + read, base_written + written, self._server.conn_yields)


def _endpoint_of(sock: socket.socket) -> Endpoint:
    """The address a passed listening socket is bound to (``@name`` for an abstract unix socket)."""
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        return Endpoint(path="@" + name[1:].decode(errors="replace") if isinstance(name, bytes) else name)
    return Endpoint(host=name[0], port=name[1])


def _is_loopback(host: str) -> bool:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:  # not an address: cannot tell, so assume it is reachable
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


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
        session_factory: ``(store, ctx) -> session``; :func:`pycache_d.protocol.new_session`
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
        self.handshakes: dict[Connection, asyncio.Task[None]] = {}
        self.handshake_errors = 0
        self.total_connections = 0
        self.rejected_connections = 0
        self.closed_read = 0
        self.closed_written = 0
        self.conn_yields = 0
        #: The traffic counts at the last ``stats reset`` (bytes_read, bytes_written, conn_yields).
        self.traffic_base = (0, 0, 0)
        self.bound: list[Endpoint] = []
        #: The bound addresses that speak TLS (a subset of ``bound``).
        self.tls_bound: list[Endpoint] = []
        self.listening_fds: dict[int, Endpoint] = {}
        #: Every TLS listener shares this context (None: no TLS); SIGHUP reloads it in place.
        self.tls_context: ssl.SSLContext | None = None
        self.certs_loaded_at = time.monotonic()
        self.idle_timeout = config.idle_timeout
        self.idle_kicks = 0
        self._idle_timer: asyncio.TimerHandle | None = None
        self._stall_timer: asyncio.TimerHandle | None = None
        # A step of the wall clock is logged, and absolute expiry times follow it (clock.py).
        self._clock_watch = WallClockWatch(on_step=self._set_wall_skew)
        self._servers: list[Any] = []  # asyncio servers and PlainServers
        self._poller: Any = None  # the compiled stream transport's epoll set, once one is used
        self._unix_sockets: list[tuple[str, int]] = []  # (path, inode) to remove on exit
        self._stopping = asyncio.Event()
        self._reclaimer: asyncio.Task[None] | None = None
        self._rejects_unlogged = 0
        self._last_rejected_peer = ""
        self._reject_log_timer: asyncio.TimerHandle | None = None
        self.notifier = systemd.Notifier.from_environ()
        if config.auth_file is not None:
            self.ctx.auth_file = config.auth_file
            self.ctx.auth = auth.load(config.auth_file)  # validated with the config: it loads
            self._warn_if_readable(config.auth_file)

    def new_session(self) -> Any:
        return self.session_factory(self.store, self.ctx)

    # -- listening -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Open every listener (or serve the sockets systemd passed) and start the reclaimer.

        Raises:
            ListenError: an address cannot be bound; listeners already open are closed again.
        """
        raise_fd_limit(self.max_connections)
        cfg = self.config
        if cfg.tls_cert is not None:
            try:
                self.tls_context = tls.server_context(cfg.tls_cert, cfg.tls_key, cfg.tls_ca)
            except tls.TLSError as e:  # validated already: the file changed since
                raise ListenError(f"TLS: {e}") from None
            self.certs_loaded_at = time.monotonic()
        self.notifier.status("starting: opening listeners")
        try:
            activated = systemd.listen_fds()
        except ValueError as e:
            raise ListenError(f"socket activation: {e}") from None
        try:
            for sock, name in activated:
                endpoint = _endpoint_of(sock)
                notice("socket activation: fd %d named %s is %s", sock.fileno(), name, endpoint)
                await self._listen(endpoint, sock)
            # NOTE: with socket activation the unit's sockets replace the configured listeners.
            for endpoint in () if activated else self.config.endpoints:
                await self._listen(endpoint)
        except BaseException:
            self._close_listeners()
            raise
        self._warn_if_exposed()
        self._reclaimer = self.loop.create_task(self._reclaim_forever())
        self._schedule_idle_sweep(self.idle_timeout)
        self._sweep_stalls()
        self._clock_watch.start(self.loop)

    async def _listen(self, endpoint: Endpoint, sock: socket.socket | None = None) -> None:
        def factory(e: Endpoint = endpoint) -> Connection:
            return Connection(self, e)

        secure = self._secure(endpoint)
        try:
            if secure:
                # NOTE: accepted here, not by the loop's TLS server, so that a client counts
                # (and has a deadline) from its connect, not from the end of its handshake.
                srv: Any = self._serve_tls(endpoint, sock)
            elif Poller is not None:
                srv = self._serve_plain(endpoint, sock, factory)
            elif sock is not None:  # passed by systemd, which owns (and removes) a unix socket file
                if endpoint.is_unix:
                    srv = await self.loop.create_unix_server(factory, sock=sock, backlog=BACKLOG)
                else:
                    srv = await self.loop.create_server(factory, sock=sock, backlog=BACKLOG)
            elif endpoint.is_unix:
                sock = self._bind_unix(endpoint)
                srv = await self.loop.create_unix_server(factory, sock=sock, backlog=BACKLOG)
            else:
                srv = await self.loop.create_server(
                    factory, endpoint.host, endpoint.port, reuse_address=True, backlog=BACKLOG
                )
        except OSError as e:
            # NOTE: the errno's text, not the loop's message, which differs between uvloop and
            # asyncio; name lookups fail with negative (gai) codes and carry their own text.
            if e.errno and not isinstance(e, socket.gaierror):
                reason = os.strerror(e.errno)
            else:
                reason = e.strerror or str(e)
            reason = reason.lower()
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
            if secure:
                self.tls_bound.append(bound)
                # NOTE: tests/daemon.py finds the addresses by "listening on ADDR" at the line's end.
                notice("TLS listening on %s", bound)
            else:
                notice("listening on %s", bound)

    def _serve_plain(
        self, endpoint: Endpoint, sock: socket.socket | None, factory: Callable[[], asyncio.Protocol]
    ) -> PlainServer:
        """Listen on ``endpoint`` (or serve ``sock``) with the compiled stream transport."""
        socks = self._listening(endpoint, sock)
        if self._poller is None:
            self._poller = Poller(self.loop, READ_SIZE)
        return PlainServer(self.loop, self._poller, socks, factory)

    def _serve_tls(self, endpoint: Endpoint, sock: socket.socket | None) -> TLSServer:
        """Listen on ``endpoint`` (or serve ``sock``) for TLS clients (net/handshake.py)."""
        assert self.tls_context is not None
        return TLSServer(self, self._listening(endpoint, sock), endpoint, self.tls_context)

    def _listening(self, endpoint: Endpoint, sock: socket.socket | None) -> list[socket.socket]:
        """The listening sockets of ``endpoint``: ``sock`` if systemd passed it, else bound here."""
        if sock is None and endpoint.is_unix:
            sock = self._bind_unix(endpoint)
        if sock is not None:
            sock.listen(BACKLOG)  # (one systemd passed listens already: this sets our backlog)
            return [sock]
        return bind_tcp(endpoint.host, endpoint.port, BACKLOG)

    def _bind_unix(self, endpoint: Endpoint) -> socket.socket:
        sock = bind_unix(endpoint.path, self.config.unix_mode)
        self._unix_sockets.append((endpoint.path, os.stat(endpoint.path).st_ino))
        return sock

    def _secure(self, listener: Endpoint) -> bool:
        """True if clients of ``listener`` speak TLS."""
        return self.tls_context is not None and not listener.is_unix and not listener.notls

    def _warn_if_exposed(self) -> None:
        """Warn (one line) about plain-text TCP listeners that other hosts can reach."""
        exposed = [
            str(e)
            for e in self.bound
            if not e.is_unix and e not in self.tls_bound and not _is_loopback(e.host)
        ]
        if exposed and self.ctx.auth is not None:
            # APPSEC: authenticated, but passwords and items cross the network in the clear.
            log.warning(
                "plain-text listener(s) reachable beyond this host: %s; passwords and items cross the "
                "network in the clear: prefer TLS (--tls-cert)",
                ", ".join(exposed),
            )
        elif exposed:
            # APPSEC: without --auth-file the protocol has no authentication: anyone who can
            # connect can read, change and flush every item.
            log.warning(
                "plain-text listener(s) reachable beyond this host: %s; the memcached protocol has no "
                "authentication: prefer TLS (--tls-cert, --tls-ca for client certificates) or loopback",
                ", ".join(exposed),
            )

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
        """Count a client refused for max_connections, and log it (at most once a second)."""
        self.rejected_connections += 1
        self._rejects_unlogged += 1
        self._last_rejected_peer = peer
        if self._reject_log_timer is None:
            self._log_rejects()

    def _log_rejects(self) -> None:
        self._reject_log_timer = None
        if not self._rejects_unlogged:
            return
        notice(
            "rejected %d connection(s), latest from %s: max_connections (%d) reached",
            self._rejects_unlogged,
            self._last_rejected_peer,
            self.max_connections,
        )
        self._rejects_unlogged = 0
        # Later rejections in this interval are summed into one line when it ends.
        self._reject_log_timer = self.loop.call_later(REJECT_LOG_INTERVAL, self._log_rejects)

    # -- background work -----------------------------------------------------------------------

    def _set_wall_skew(self, skew: int) -> None:
        self.store.wall_skew = skew

    def _schedule_idle_sweep(self, delay: float) -> None:
        """(Re)start the idle sweep ``delay`` seconds from now; none at all when the timeout is 0."""
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        if self.idle_timeout and not self._stopping.is_set():
            self._idle_timer = self.loop.call_later(delay, self._sweep_idle)

    def _sweep_idle(self) -> None:
        """Close the connections idle for ``idle_timeout`` seconds; look again in a while.

        Idle means no complete command for that long, as memcached measures it (its
        last_cmd_time): bytes trickled onto a command line are not a command, so a slowloris
        cannot hold its slot. A client still being sent replies (paused, continuing or with
        unsent bytes) is left alone, as memcached does; the stall check watches it instead.
        NOTE: unlike memcached, a client in the middle of a data block is not spared (memcached
        never kicks one in conn_nread, so a value trickled a byte at a time holds a slot for
        days): a command's data block must arrive within the timeout of the command before it.
        """
        self._idle_timer = None
        timeout = self.idle_timeout
        if not timeout:
            return
        now = time.monotonic()
        for c in list(self.connections):
            if c.watching:
                continue  # memcached spares a watcher (conn_watch): it sends, it never asks
            last = c.last_command_at()
            if last + timeout > now:
                continue
            if c.state() == "conn_parse_cmd" and not c.transport.get_write_buffer_size():
                self.idle_kicks += 1
                c.close_reason = watch.REASON_IDLE
                log.info("conn %d: closing %s: idle for %d s (idle_timeout)", c.fd, c.peer, now - last)
                c.close()
                if self._secure(c.listener):
                    # NOTE: a TLS close then waits (up to 30 s) for the client's close_notify,
                    # which an idle client does not send. Ours went out at once (nothing was
                    # unsent), so end the connection now and free its slot.
                    c.transport.abort()
        # NOTE: one timer for all connections, at a fixed pace: idle clients do not make the
        # loop spin, however many there are.
        self._schedule_idle_sweep(max(IDLE_SWEEP_MIN, timeout / 8))

    def _sweep_stalls(self) -> None:
        """Let every connection check that its client still takes its replies; look again soon."""
        now = time.monotonic()
        for c in list(self.connections):
            c.check_stall(now)
        # NOTE: patchable for tests (read at each sweep); 4 looks per timeout bound the delay.
        self._stall_timer = self.loop.call_later(netconn.STALL_TIMEOUT / 4, self._sweep_stalls)

    async def _reclaim_forever(self) -> None:
        """Free dead (expired or flushed) items a slice at a time, never stalling the loop."""
        while True:
            try:
                freed = self.store.reclaim(RECLAIM_SLICE)
                if self.ctx.watchers:
                    # what a lowered limit evicted here, or a client's command since the last look
                    watch.evictions(self.ctx, self.store)
            except Exception:  # a store bug must not silently end reclaiming for good
                log.exception("reclaim failed; retrying in 1 s")
                await asyncio.sleep(1.0)
                continue
            # A full slice means more is probably waiting: yield to clients, then go on.
            await asyncio.sleep(0 if freed >= RECLAIM_SLICE else RECLAIM_INTERVAL)

    # -- lifecycle -----------------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        self.loop.add_signal_handler(signal.SIGTERM, self.stop, "SIGTERM")
        self.loop.add_signal_handler(signal.SIGINT, self.stop, "SIGINT")
        self.loop.add_signal_handler(signal.SIGHUP, self._sighup)

    def _sighup(self) -> None:
        self.notifier.reloading()
        try:
            self.reload()
            self.reload_auth()
        finally:
            self.notifier.reloaded()

    def reload_auth(self) -> None:
        """SIGHUP: re-read the auth file (memcached does too); a bad one keeps the old entries."""
        path = self.ctx.auth_file
        if path is None:
            return
        try:
            creds = auth.load(path)
        except auth.AuthFileError as e:
            log.error("reload: keeping the current credentials: %s", e)
            return
        self.ctx.auth = creds
        self._warn_if_readable(path)
        notice("reloaded the auth file %s: %d entries", path, len(creds.entries))

    @staticmethod
    def _warn_if_readable(path: str) -> None:
        if auth.exposed(path):
            log.warning("the auth file %s is readable by its group or others (chmod 600 it)", path)

    def stop(self, why: str = "stop requested") -> None:
        if not self._stopping.is_set():
            notice("%s: shutting down", why)
            self.notifier.stopping()
            self._stopping.set()

    async def serve_until_stopped(self) -> None:
        """Run until :meth:`stop`; then stop accepting and reading, and deliver what was asked.

        A restart under load takes the time the clients need to receive the replies to what
        they had sent, not a fixed grace: every connection stops reading at once, answers what
        it holds (and what its kernel buffer holds), and closes once that is delivered.
        """
        await self._stopping.wait()
        self._close_listeners()
        self._schedule_idle_sweep(0)  # stopping: cancels it
        if self._stall_timer is not None:
            self._stall_timer.cancel()
        for task in list(self.handshakes.values()):  # nothing was asked yet: nothing to finish
            task.cancel()
        self._clock_watch.stop()
        if self._reclaimer is not None:
            self._reclaimer.cancel()
        deadline = self.loop.time() + SHUTDOWN_GRACE
        flushed_at: dict[Connection, float] = {}
        while self.connections and self.loop.time() < deadline:
            now = time.monotonic()
            for c in list(self.connections):
                try:
                    c.stop_reading()  # at the first look (or for one accepted meanwhile)
                    c.finish(now)
                except Exception:  # one connection's bug must not stop the shutdown
                    log.exception("conn %d: cannot finish; closing it", c.fd)
                    c.transport.abort()
                    continue
                # NOTE: a closing TLS connection lingers until the client answers our close_notify,
                # which a pooled client that is not reading never does. Once everything is
                # encrypted and handed on, give it TLS_CLOSE_WAIT to go out, then end it.
                if c._closing and self._secure(c.listener) and not c.transport.get_write_buffer_size():
                    if now - flushed_at.setdefault(c, now) >= TLS_CLOSE_WAIT:
                        c.transport.abort()
            await asyncio.sleep(0.02)
        if self.connections:
            notice(
                "%d connection(s) still busy after %g s; closing them", len(self.connections), SHUTDOWN_GRACE
            )
            for c in list(self.connections):
                c.transport.abort()
            await asyncio.sleep(0)
        if self._poller is not None:
            self._poller.close()

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
        applied = {}
        for name in LIVE_SETTINGS:
            before, after = getattr(old, name), getattr(new, name)
            if before == after:
                continue
            try:
                self._apply(name, after)
            except ValueError as e:  # the store refused it: keep the old value
                log.error("reload: cannot set %s to %s: %s", name, after, e)
                continue
            applied[name] = after
            if name in ("memory_limit", "max_item_size"):
                before, after = describe_size(before), describe_size(after)
            changes.append(f"{name} {before} -> {after}")
        path = self.source.path
        for name in ("port", "listen", "unix_mode", "backend", "auth_file"):
            if getattr(old, name) != getattr(new, name):
                log.warning("reload: %s changed in %s; restart the daemon to apply it", name, path)
        applied.update(self._reload_tls(old, new, changes))
        # Only what was applied: ``stats settings`` must show what the daemon really does.
        self.config = dataclasses.replace(old, **applied)
        notice("reloaded %s: %s", path, "; ".join(changes) or "no live setting changed")

    def _reload_tls(self, old: Config, new: Config, changes: list[str]) -> dict[str, str | None]:
        """Re-read the certificate files (new ones at the same paths, memcached's refresh_certs).

        Returns the TLS settings now in effect where they changed; turning TLS or client
        certificates on or off needs a restart (the listeners are made with or without it).
        """
        if self.tls_context is None or new.tls_cert is None or (old.tls_ca is None) != (new.tls_ca is None):
            for name in TLS_SETTINGS:
                if getattr(old, name) != getattr(new, name):
                    log.warning(
                        "reload: %s changed in %s; restart the daemon to turn TLS or client "
                        "certificates on or off",
                        name,
                        self.source.path if self.source else None,
                    )
            return {}
        try:
            tls.reload_context(self.tls_context, new.tls_cert, new.tls_key, new.tls_ca)
        except tls.TLSError as e:
            log.error("reload: keeping the current TLS certificate: %s: %s", e.option, e)
            return {}
        self.certs_loaded_at = time.monotonic()
        changes.append(f"TLS certificate re-read from {new.tls_cert}")
        return {name: getattr(new, name) for name in TLS_SETTINGS}

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
            raise_fd_limit(value)
        elif name == "idle_timeout":
            self.idle_timeout = value
            self._schedule_idle_sweep(0)  # at once: a shorter timeout may already be due


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
    server.notifier.ready(server)  # READY=1 only now that startup is complete
    try:
        await server.serve_until_stopped()
    finally:
        server.notifier.close()
