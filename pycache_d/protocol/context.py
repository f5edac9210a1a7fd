"""What a protocol session may ask of the server it runs in.

A :class:`~pycache_d.protocol.session.Session` knows nothing of sockets; for ``stats``, ``version`` and
``verbosity`` it asks a :class:`ServerContext`. The defaults here serve a standalone session (tests,
fuzzing, benchmarks); the daemon subclasses it and overrides what it knows better (connections,
ports). Every session of one server shares one context, so the server-wide counters kept here
(``cmd_meta``, ``store_too_large``, ``store_no_memory``) add up across connections.
"""

from __future__ import annotations

import os
import resource
import struct
import time
from collections.abc import Callable
from typing import Any

from .._version import __version__
from ..store.clock import MonotonicClock
from ..store.semantics import DEFAULT_MAX_BYTES, DEFAULT_MAX_ITEM_SIZE

#: Server-wide counters the session increments and ``stats reset`` clears.
COUNTER_NAMES = ("cmd_meta", "store_too_large", "store_no_memory", "auth_cmds", "auth_errors")

#: The memcached release whose behaviour we follow.
MEMCACHED_VERSION = "1.6.18"
#: What ``version`` and ``stats`` answer. NOTE: libmemcached (memcping, memcstat, PHP's
#: Memcached) reads a major.minor.micro prefix and refuses a major version of 0, so ours alone
#: (0.x) made them report a healthy server as down; this names memcached's version first, then ours.
VERSION_REPLY = f"{MEMCACHED_VERSION}-pycache-d-{__version__}"


def _rusage(seconds: float) -> str:
    """Format CPU time as memcached does: seconds.microseconds."""
    whole = int(seconds)
    return f"{whole}.{int((seconds - whole) * 1_000_000):06d}"


class ServerContext:
    """What a session may ask of the server it runs in; the defaults serve a standalone session.

    Args:
        store: when given, ``stats settings`` reports its backend and limits.
        clock: the server's clock in whole Unix-scale seconds (the stores read the same one; meta
            commands take the time their items' TTL and last access are on from the store,
            ``store.now``).

    Subclasses must call ``super().__init__()``: it sets the start time and the counters.
    """

    #: The version string of ``version`` and ``stats`` (``pycache-d --version`` prints ours alone).
    version: str = VERSION_REPLY
    #: The ``--auth-file`` credentials (:class:`pycache_d.protocol.auth.Credentials`), or None:
    #: no authentication. Sessions read it at each attempt, so a reload applies at once.
    auth: Any = None
    #: The auth file's path, for ``stats settings``.
    auth_file: str | None = None
    #: Set by the ``verbosity`` command (memcached caps it at 2). A class attribute, so a subclass
    #: may make it a property without the base ``__init__`` writing to it.
    verbosity: int = 0

    def __init__(self, store: Any = None, clock: Callable[[], int] | None = None) -> None:
        self._store = store
        self._started = time.monotonic()
        self.counters: dict[str, int] = dict.fromkeys(COUNTER_NAMES, 0)
        self.clock: Callable[[], int] = clock if clock is not None else MonotonicClock()

    def general_stats(self) -> list[tuple[str, object]]:
        """Return the server part of ``stats``, in memcached's order."""
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return [
            ("pid", os.getpid()),
            ("uptime", int(time.monotonic() - self._started)),
            ("time", int(time.time())),
            ("version", self.version),
            ("pointer_size", struct.calcsize("P") * 8),
            ("rusage_user", _rusage(usage.ru_utime)),
            ("rusage_system", _rusage(usage.ru_stime)),
            ("max_connections", 1024),
            ("curr_connections", 1),
            ("total_connections", 1),
            ("rejected_connections", 0),
            ("connection_structures", 1),
            ("threads", 1),
        ]

    def settings_stats(self) -> list[tuple[str, object]]:
        """Return ``stats settings``, in memcached's order (ours last)."""
        store = self._store
        return [
            ("maxbytes", store.max_bytes if store is not None else DEFAULT_MAX_BYTES),
            ("maxconns", 1024),
            ("tcpport", 0),
            ("udpport", 0),
            ("inter", "NULL"),
            ("verbosity", self.verbosity),
            ("oldest", 0),
            ("evictions", "on"),
            ("domain_socket", "NULL"),
            ("umask", "700"),
            ("shutdown_command", "no"),
            ("num_threads", 1),
            ("stat_key_prefix", ":"),
            ("detail_enabled", "no"),
            ("cas_enabled", "yes"),
            ("tcp_backlog", 1024),
            ("binding_protocol", "auto-negotiate"),
            ("auth_enabled_sasl", "yes" if self.auth is not None else "no"),
            ("auth_enabled_ascii", self.auth_file if self.auth is not None else "no"),
            ("item_size_max", store.max_item_size if store is not None else DEFAULT_MAX_ITEM_SIZE),
            ("maxconns_fast", "yes"),
            ("flush_enabled", "yes"),
            ("dump_enabled", "no"),
            ("lru_segmented", "no"),
            ("idle_timeout", 0),
            ("track_sizes", "no"),
            ("maxitems", store.max_items if store is not None else 0),
            ("backend", store.backend if store is not None else "python"),
        ]

    def conns_stats(self) -> list[tuple[str, object]]:
        """Return ``stats conns`` (a standalone session has no connections to show)."""
        return []

    def reset_stats(self) -> None:
        """Clear the server-side counters, the part of ``stats reset`` the store does not do."""
        for name in self.counters:
            self.counters[name] = 0
