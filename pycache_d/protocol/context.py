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
import weakref
from collections.abc import Callable
from typing import Any

from .._version import __version__
from ..store.clock import MonotonicClock
from ..store.semantics import DEFAULT_MAX_BYTES, DEFAULT_MAX_ITEM_SIZE

#: Server-wide counters the session increments and ``stats reset`` clears (the crawler's and
#: the watchers' too: memcached's stats_reset clears its whole counter struct).
COUNTER_NAMES = (
    "cmd_meta",
    "store_too_large",
    "store_no_memory",
    "auth_cmds",
    "auth_errors",
    "lru_crawler_starts",
    "crawler_items_checked",
    "log_watcher_skipped",
    "log_watcher_sent",
)

#: The LRU and crawler tunables ``lru``, ``lru_crawler`` and ``slabs automove`` set, with
#: memcached 1.6's defaults. They are accepted and reported (``stats settings``); the one LRU
#: here is not segmented, so only ``lru_crawler enable|disable`` changes what happens.
TUNABLE_DEFAULTS: dict[str, object] = {
    "slab_reassign": "yes",
    "slab_automove": 1,
    "slab_automove_ratio": "0.80",
    "lru_crawler": "yes",
    "lru_crawler_sleep": 100,
    "lru_crawler_tocrawl": 0,
    "lru_segmented": "yes",
    "hot_lru_pct": 20,
    "warm_lru_pct": 40,
    "hot_max_factor": "0.20",
    "warm_max_factor": "2.00",
    "temp_lru": "no",
    "temporary_ttl": 61,
}

# How many contexts have watchers or ``stats detail on``: while any has, the compiled session
# hands every command to the Python session, which is the one that reports them (see observe()).
_observing = 0
#: Called with True when the first context starts observing and False when the last stops
#: (the compiled session registers itself here when it is imported).
OBSERVE_HOOKS: list[Callable[[bool], None]] = []


def _observe(delta: int) -> None:
    global _observing
    before = _observing
    _observing += delta
    if (before == 0) != (_observing == 0):
        for hook in OBSERVE_HOOKS:
            hook(_observing > 0)


#: Bytes a ``watch`` client's lines may wait to be sent before new ones are skipped
#: (memcached's watcher_logbuf_size, 256 KiB).
WATCHER_BUFFER = 256 * 1024

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

    #: memcached's -X turns this off: ``stats cachedump`` and ``lru_crawler metadump`` refused.
    dump_enabled: bool = True
    #: memcached's -A turns this on: the ``shutdown`` command stops the server.
    shutdown_enabled: bool = False

    def __init__(self, store: Any = None, clock: Callable[[], int] | None = None) -> None:
        self._store = store
        self._started = time.monotonic()
        self.counters: dict[str, int] = dict.fromkeys(COUNTER_NAMES, 0)
        self.clock: Callable[[], int] = clock if clock is not None else MonotonicClock()
        self.tunables: dict[str, object] = dict(TUNABLE_DEFAULTS)
        #: The per-prefix counters (:class:`~.detail.PrefixStats`) once ``stats detail on`` made
        #: them, and ``detail``, the same while they count (None after ``stats detail off``).
        self.prefixes: Any = None
        self.detail: Any = None
        #: Key dumps in progress (``lru_crawler metadump``): memcached runs one at a time.
        self.dumps = 0
        #: The ``watch`` connections' buffers (:class:`~.watch.Watcher`).
        self.watchers: list[Any] = []
        #: True while a client watches or ``stats detail`` is on (set_observed keeps it): the
        #: Python session then reports every command it answers.
        self.observed = False
        self._unobserve: Any = None

    def set_observed(self) -> None:
        """Tell the compiled sessions whether this server's commands must all be seen by the
        Python session: while a client watches, or ``stats detail`` is on."""
        observed = bool(self.watchers) or self.detail is not None
        if observed != self.observed:
            self.observed = observed
            if observed:
                _observe(1)
                # A context dropped while observing (a test's) must not keep every compiled
                # session on the slow path: its count goes with it.
                self._unobserve = weakref.finalize(self, _observe, -1)
            else:
                self._unobserve.detach()
                _observe(-1)

    def traffic(self) -> tuple[int, int, int]:
        """Return ``(bytes_read, bytes_written, conn_yields)`` since start or ``stats reset``
        (a standalone session has no sockets: zeros)."""
        return 0, 0, 0

    def attach_watcher(self, session: Any, watcher: Any) -> None:
        """A session became a ``watch`` connection: the server sets ``watcher.wake`` to have
        it send the lines that wait (a standalone session's caller pulls them itself)."""

    def shutdown(self, graceful: bool) -> bool:
        """Stop the server, as ``shutdown [graceful]`` asks (``-A``); False if it cannot."""
        return False

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
            ("accepting_conns", 1),
            ("listen_disabled_num", 0),
            ("time_in_listen_disabled_us", 0),
            ("threads", 1),
        ]

    def settings_stats(self) -> list[tuple[str, object]]:
        """Return ``stats settings``, in memcached's order (ours last)."""
        store = self._store
        t = self.tunables
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
            ("shutdown_command", "yes" if self.shutdown_enabled else "no"),
            ("num_threads", 1),
            ("stat_key_prefix", ":"),
            ("detail_enabled", "no" if self.detail is None else "yes"),
            ("cas_enabled", "yes"),
            ("tcp_backlog", 1024),
            ("binding_protocol", "auto-negotiate"),
            ("auth_enabled_sasl", "yes" if self.auth is not None else "no"),
            ("auth_enabled_ascii", self.auth_file if self.auth is not None else "no"),
            ("item_size_max", store.max_item_size if store is not None else DEFAULT_MAX_ITEM_SIZE),
            ("maxconns_fast", "yes"),
            ("slab_reassign", t["slab_reassign"]),
            ("slab_automove", t["slab_automove"]),
            ("slab_automove_ratio", t["slab_automove_ratio"]),
            ("slab_chunk_max", 524288),
            ("lru_crawler", t["lru_crawler"]),
            ("lru_crawler_sleep", t["lru_crawler_sleep"]),
            ("lru_crawler_tocrawl", t["lru_crawler_tocrawl"]),
            ("flush_enabled", "yes"),
            ("dump_enabled", "yes" if self.dump_enabled else "no"),
            ("lru_segmented", t["lru_segmented"]),
            ("hot_lru_pct", t["hot_lru_pct"]),
            ("warm_lru_pct", t["warm_lru_pct"]),
            ("hot_max_factor", t["hot_max_factor"]),
            ("warm_max_factor", t["warm_max_factor"]),
            ("temp_lru", t["temp_lru"]),
            ("temporary_ttl", t["temporary_ttl"]),
            ("idle_timeout", 0),
            ("watcher_logbuf_size", WATCHER_BUFFER),
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
        if self.prefixes is not None:
            self.prefixes.clear()
