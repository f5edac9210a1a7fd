"""Running under systemd: readiness and status notifications, the watchdog, socket activation.

Pure Python, no libsystemd: the protocols are a few lines each (sd_notify(3), sd_listen_fds(3)).

* :class:`Notifier` sends ``KEY=VALUE`` lines as one datagram to ``$NOTIFY_SOCKET`` (a path, or
  ``@name`` for an abstract socket). Without the variable every call is a no-op, so the daemon
  behaves the same outside systemd.
* ``READY=1`` is sent once every listener is open and startup is complete (:func:`server.run`),
  ``STOPPING=1`` on SIGTERM/SIGINT, ``RELOADING=1`` (with ``MONOTONIC_USEC=``) ... ``READY=1``
  around a SIGHUP reload. ``STATUS=`` says what the daemon is doing: starting, then items, memory,
  hit ratio and connections, refreshed every :data:`STATUS_INTERVAL` seconds.
* ``EXTEND_TIMEOUT_USEC=`` while a snapshot loads or saves and makes progress (with ``STATUS=``
  and a percentage, see :mod:`pycache_d.daemon.warmstart`): a large one may take longer than the
  unit's start or stop timeout without being killed, while a stuck one still is.
* ``WATCHDOG=1`` every half ``$WATCHDOG_USEC``, from a timer on the event loop: a loop stuck in
  a callback stops pinging, and systemd restarts the daemon.
* :func:`listen_fds` returns the sockets systemd passed (``$LISTEN_FDS``, ``$LISTEN_PID``,
  ``$LISTEN_FDNAMES``) and removes the variables so child processes don't inherit them.

The journald log format (``<N>`` priority prefixes) lives in :mod:`pycache_d.log`.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import time
from collections.abc import Mapping, MutableMapping
from typing import Any

from ..log import log

__all__ = ["STATUS_INTERVAL", "Notifier", "listen_fds", "status_line"]

#: Seconds between ``STATUS=`` refreshes while serving (more often when the watchdog pings faster).
STATUS_INTERVAL = 5.0

#: sd_listen_fds(3): passed descriptors start here.
LISTEN_FDS_START = 3

_LISTEN_VARS = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


class Notifier:
    """Send sd_notify(3) messages to the service manager, and keep the watchdog and status fresh.

    Args:
        address: ``$NOTIFY_SOCKET`` (a path or ``@abstract``); None or empty disables every message.
        watchdog_usec: ``$WATCHDOG_USEC``; 0 disables the watchdog pings.
    """

    def __init__(self, address: str | None, watchdog_usec: int = 0) -> None:
        self.address: str | bytes | None = None
        if address:
            # NOTE: an abstract socket name is spelled with a leading "@" in the variable.
            self.address = b"\0" + address[1:].encode() if address.startswith("@") else address
        self.watchdog_interval = watchdog_usec / 2e6 if self.address and watchdog_usec > 0 else 0.0
        self.address_text = address or ""
        self._failed = False
        self._timer: asyncio.TimerHandle | None = None
        self._server: Any = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        """Build the notifier the environment asks for (``NOTIFY_SOCKET``, ``WATCHDOG_USEC/_PID``)."""
        env = os.environ if environ is None else environ
        usec = 0
        pid = env.get("WATCHDOG_PID", "")
        # sd_watchdog_enabled(3): WATCHDOG_PID, when set, names the process that must ping.
        if not pid or pid == str(os.getpid()):
            try:
                usec = int(env.get("WATCHDOG_USEC", "0"))
            except ValueError:
                log.warning("ignoring WATCHDOG_USEC=%r: not a number", env.get("WATCHDOG_USEC"))
        return cls(env.get("NOTIFY_SOCKET"), usec)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *lines: str) -> bool:
        """Send ``lines`` as one notification; return False when disabled or the send failed."""
        if self.address is None:
            return False
        try:
            # NOTE: a socket per message (one every few seconds) leaves nothing open to leak; and
            # MSG_DONTWAIT: never block the event loop on a receiver that does not read.
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto("\n".join(lines).encode(), socket.MSG_DONTWAIT, self.address)
        except OSError as e:
            # The first failure is worth an operator's eye (a wrong NOTIFY_SOCKET); later ones
            # would repeat it every few seconds.
            log.log(
                logging.DEBUG if self._failed else logging.WARNING,
                "cannot notify %s: %s",
                self.address_text,
                os.strerror(e.errno or errno.EIO),
            )
            self._failed = True
            return False
        return True

    def status(self, text: str) -> bool:
        """Set the one-line status ``systemctl status`` shows."""
        return self.send(f"STATUS={text}")

    def extend_timeout(self, seconds: float, text: str) -> bool:
        """Making progress: the start or stop may take ``seconds`` more from now (``EXTEND_TIMEOUT_USEC``,
        systemd 236+), beyond the unit's TimeoutStartSec=/TimeoutStopSec=; and the status."""
        return self.send(f"EXTEND_TIMEOUT_USEC={int(seconds * 1e6)}", f"STATUS={text}")

    # -- lifecycle ---------------------------------------------------------------------------------

    def ready(self, server: Any) -> None:
        """Startup is complete: send ``READY=1`` and start the status and watchdog timer."""
        if not self.enabled:
            return
        self._server = server
        self.send("READY=1", f"STATUS={status_line(server)}")
        if self._timer is None:
            self._schedule(server.loop)

    def reloading(self) -> None:
        """A reload begins (``RELOADING=1``; systemd 253+ wants the monotonic time with it)."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send("RELOADING=1", f"MONOTONIC_USEC={usec}", "STATUS=reloading the configuration")

    def reloaded(self) -> None:
        """The reload is over (applied or refused): ``READY=1`` again."""
        self.send("READY=1", f"STATUS={status_line(self._server)}" if self._server else "STATUS=reloaded")

    def stopping(self) -> None:
        """Shutdown begins: ``STOPPING=1``."""
        self.send("STOPPING=1", "STATUS=shutting down")

    def close(self) -> None:
        """Stop the status and watchdog timer."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        interval = STATUS_INTERVAL
        if self.watchdog_interval:
            interval = min(interval, self.watchdog_interval)
        self._timer = loop.call_later(interval, self._tick, loop)

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        # NOTE: a timer on the loop, not a thread: if a callback hogs the loop, the pings stop
        # and systemd's watchdog fires, which is the point.
        lines = [f"STATUS={status_line(self._server)}"]
        if self.watchdog_interval:
            lines.insert(0, "WATCHDOG=1")
        self.send(*lines)
        self._schedule(loop)


def status_line(server: Any) -> str:
    """Describe a serving daemon in one line: items, memory, hit ratio, connections."""
    st = server.store.stats()
    lookups = st["get_hits"] + st["get_misses"]
    ratio = f"{100 * st['get_hits'] / lookups:.1f}%" if lookups else "n/a"
    return (
        f"serving: {st['curr_items']} items, {_mib(st['bytes'])} of {_mib(st['limit_maxbytes'])} MiB, "
        f"hit ratio {ratio}, {len(server.connections)} connections"
    )


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f}".removesuffix(".0")


def listen_fds(environ: MutableMapping[str, str] | None = None) -> list[tuple[socket.socket, str]]:
    """Return the listening sockets passed by socket activation, with their names, and unset the variables.

    Follows sd_listen_fds(3): only when ``$LISTEN_PID`` is our pid; descriptors 3 .. 3+N-1;
    ``$LISTEN_FDNAMES`` is a colon-separated list ("unknown" where it names none).

    Raises:
        ValueError: a passed descriptor is not a listening TCP or unix stream socket.
    """
    env = os.environ if environ is None else environ
    values = {name: env.get(name, "") for name in _LISTEN_VARS}
    for name in _LISTEN_VARS:
        env.pop(name, None)  # whether or not they were meant for us: no child may inherit them
    if values["LISTEN_PID"] != str(os.getpid()):
        return []
    try:
        count = int(values["LISTEN_FDS"])
    except ValueError:
        return []
    names = values["LISTEN_FDNAMES"].split(":") if values["LISTEN_FDNAMES"] else []
    out = []
    for i in range(max(count, 0)):
        fd = LISTEN_FDS_START + i
        try:
            os.set_inheritable(fd, False)
            sock = socket.socket(fileno=fd)
        except OSError as e:  # not open, or not a socket (LISTEN_FDS counts more than were passed)
            reason = os.strerror(e.errno or errno.EBADF).lower()
            raise ValueError(
                f"passed fd {fd} is not a usable socket (LISTEN_FDS={count}): {reason}"
            ) from None
        name = names[i] if i < len(names) and names[i] else "unknown"
        if sock.family not in (socket.AF_INET, socket.AF_INET6, socket.AF_UNIX) or (
            sock.type != socket.SOCK_STREAM or not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        ):
            sock.detach()
            raise ValueError(f"passed fd {fd} ({name}) is not a listening TCP or unix stream socket")
        out.append((sock, name))
    return out
