"""Listening addresses and sockets: unix-socket binding with permissions, TCP binding, the open-file limit.

TLS listeners (and all of them when the compiled stream transport is not in use) are
``loop.create_server`` calls in :mod:`pycache_d.daemon.server`; the plain ones are bound here and
served by :mod:`pycache_d.net.streams`.
"""

from __future__ import annotations

import os
import resource
import socket
import stat
from dataclasses import dataclass

from ..log import log, notice

#: File descriptors kept for listeners, logs and the loop on top of --max-connections.
RESERVED_FDS = 64


@dataclass(frozen=True)
class Endpoint:
    """One listening address: TCP ``host``/``port``, or a unix socket ``path``."""

    host: str = ""
    port: int = 0
    path: str = ""
    #: Written ``notls:host:port``: stays plain text when TLS is on (memcached's prefix).
    notls: bool = False

    @property
    def is_unix(self) -> bool:
        return bool(self.path)

    def __str__(self) -> str:
        if self.path:
            return f"unix:{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'notls:' if self.notls else ''}{host}:{self.port}"


class ListenError(Exception):
    """Raised when a listening socket cannot be opened (address in use, permission, ...)."""


def bind_unix(path: str, mode: int) -> socket.socket:
    """Bind a unix stream socket at ``path`` with permissions ``mode``, replacing a stale one.

    Raises:
        ListenError: ``path`` is something else than a socket, or a live daemon listens on it.
        OSError: binding failed (no such directory, permission denied, ...).
    """
    in_use = ListenError(f"cannot listen on unix:{path}: address already in use")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(st.st_mode):
            raise ListenError(f"cannot listen on unix:{path}: the file exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1.0)  # a live daemon with a full backlog still counts as in use
        try:
            probe.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            os.unlink(path)  # stale: left behind by a daemon that did not exit cleanly
        except OSError:
            raise in_use from None
        else:
            raise in_use
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


def raise_fd_limit(max_connections: int) -> int:
    """Raise the soft open-file limit to the hard limit, so ``max_connections`` fits now and
    after a SIGHUP raises it (memcached raises it only as far as its -c needs).

    What it got is logged, and a warning says so when that is not enough. With no hard limit,
    the soft one goes up to what the connections need (the kernel caps it at fs.nr_open).

    Returns:
        The soft limit now in effect (``resource.RLIM_INFINITY`` for none).
    """
    want = max_connections + RESERVED_FDS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft == hard or (hard == resource.RLIM_INFINITY and soft >= want):
        if soft != resource.RLIM_INFINITY and soft < want:
            _warn_short(max_connections, want, soft)
        return soft
    new = max(want, soft) if hard == resource.RLIM_INFINITY else hard
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    except (ValueError, OSError) as e:
        log.warning("cannot raise the open-file limit from %d to %d: %s", soft, new, e)
        new = soft
    else:
        hard_text = "unlimited" if hard == resource.RLIM_INFINITY else str(hard)
        notice("raised the open-file limit from %d to %d (hard limit %s)", soft, new, hard_text)
    if new < want:
        _warn_short(max_connections, want, new)
    return new


def _warn_short(max_connections: int, want: int, limit: int) -> None:
    log.warning(
        "max_connections %d needs %d file descriptors but the limit is %d; "
        "accepting may fail before the limit is reached",
        max_connections,
        want,
        limit,
    )


def bind_tcp(host: str, port: int, backlog: int) -> list[socket.socket]:
    """Bind and listen on every address ``host`` resolves to ("": all interfaces), as
    ``loop.create_server`` does: ``SO_REUSEADDR``, and IPv6 sockets only for IPv6.

    Raises:
        OSError: resolving or binding failed (nothing is left open).
    """
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    socks: list[socket.socket] = []
    try:
        for family, kind, proto, _, addr in dict.fromkeys(infos):  # resolvers repeat some
            sock = socket.socket(family, kind, proto)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(addr)
            sock.listen(backlog)
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks
