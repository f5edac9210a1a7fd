"""The server list of a client: routing keys over the ring, ejecting and reviving servers."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from .address import Address, parse_address
from .errors import CacheConnectionError
from .hashring import HashRing


class ServerSet:
    """Route keys to live servers; a server that failed is left out for ``dead_timeout`` seconds.

    While a server is ejected its keys go to the next server on the ring (ketama's behaviour), so
    only its share of keys moves. When the timeout passes it is put back and tried again; if it
    fails again it is ejected again. A single server is never ejected: there is nowhere else to go,
    so every request tries it (and fails fast with connection refused while it is down).
    """

    def __init__(
        self,
        servers: Sequence[str | Address],
        dead_timeout: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Parse ``servers`` (see :func:`parse_address`) and build the ring."""
        if isinstance(servers, str | Address):
            servers = [servers]
        self.addresses: tuple[Address, ...] = tuple(parse_address(s) for s in servers)
        if not self.addresses:
            raise ValueError("a client needs at least one server")
        if len({a.name for a in self.addresses}) != len(self.addresses):
            raise ValueError("duplicate server address")
        self.dead_timeout = dead_timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._dead_until: dict[Address, float] = {}
        self._single = self.addresses[0] if len(self.addresses) == 1 else None
        self._ring = self._build(self.addresses)

    @staticmethod
    def _build(addresses: Sequence[Address]) -> HashRing[Address]:
        return HashRing((a.name, a, a.weight) for a in addresses)

    def server_for(self, key: bytes) -> Address:
        """Return the live server that owns ``key``.

        Raises:
            CacheConnectionError: every server is currently ejected.
        """
        if self._single is not None:
            return self._single
        if self._dead_until:
            self._revive_due()
        try:
            return self._ring.get(key)
        except LookupError:
            raise CacheConnectionError("no server available: all are ejected after failures") from None

    def live(self) -> list[Address]:
        """Return the servers not currently ejected, in configuration order."""
        if self._dead_until:
            self._revive_due()
        return [a for a in self.addresses if a not in self._dead_until]

    def mark_failed(self, address: Address) -> None:
        """Eject ``address`` for ``dead_timeout`` seconds after a connection error or timeout."""
        if self._single is not None or self.dead_timeout <= 0:
            return
        with self._lock:
            self._dead_until[address] = self._clock() + self.dead_timeout
            self._ring = self._build([a for a in self.addresses if a not in self._dead_until])

    def _revive_due(self) -> None:
        now = self._clock()
        with self._lock:
            due = [a for a, t in self._dead_until.items() if t <= now]
            if due:
                for a in due:
                    del self._dead_until[a]
                self._ring = self._build([a for a in self.addresses if a not in self._dead_until])
