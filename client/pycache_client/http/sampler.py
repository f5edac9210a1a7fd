"""One stats round per cache node, at most once a second, shared by every viewer and scraper.

The dashboard's JSON route, ``/metrics`` and ``/scrape`` all read :meth:`StatsSampler.sample`.
A round sends ``stats``, ``stats slabs``, ``stats items`` and ``stats settings`` to every node at
once (one pipelined exchange per node) within the client's whole-call timeout, so a dead or
silent node costs at most that long and shows as down while the others answer.

Invariant: at most one round is in flight per app (per uvicorn worker); callers that arrive
while it runs await the same task (shielded, so a viewer going away cancels nothing), and a
round younger than ``max_age`` is answered from memory without touching the daemons.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..client import AsyncClient
from ..errors import CacheError
from ..protocol import stats as stats_command
from .middleware import CacheHandle

#: Seconds a round's item size limits are trusted (they change only with a daemon restart).
LIMITS_MAX_AGE = 60.0
#: The stats groups of one round, in the order they are pipelined.
GROUPS = ("", "slabs", "items", "settings")


@dataclass(frozen=True)
class NodeSample:
    """What one node answered in a round (empty dicts when it did not)."""

    name: str
    up: bool
    error: str | None = None
    stats: Mapping[str, str] = field(default_factory=dict)
    slabs: Mapping[str, str] = field(default_factory=dict)
    items: Mapping[str, str] = field(default_factory=dict)
    settings: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Sample:
    """One round: when it was taken (Unix time) and every configured node, in config order."""

    taken: float
    nodes: list[NodeSample]

    def node(self, name: str) -> NodeSample | None:
        """Return the node called ``name`` (``host:port`` or ``unix:/path``), or None."""
        return next((n for n in self.nodes if n.name == name), None)


class StatsSampler:
    """Take stats rounds on demand, no more often than every ``max_age`` seconds."""

    def __init__(self, cache: CacheHandle, max_age: float = 1.0) -> None:
        self._cache = cache
        self.max_age = max_age
        self._client: AsyncClient | None = None  # the client the state below belongs to
        self._last: Sample | None = None
        self._last_at = 0.0  # time.monotonic() when _last was taken
        self._round: asyncio.Task[Sample] | None = None
        #: Rounds taken (tests and the bound: it grows by at most one per max_age).
        self.rounds = 0

    async def sample(self) -> Sample:
        """Return a round at most ``max_age`` old, taking one if needed.

        Raises:
            CacheConnectionError: the app's cache client is not started.
        """
        client = self._cache.client
        if client is not self._client:  # a new lifespan (and event loop): forget the old one
            self._client, self._last, self._round = client, None, None
        if self._last is not None and time.monotonic() - self._last_at < self.max_age:
            return self._last
        if self._round is None:
            self._round = asyncio.ensure_future(self._take(client))
        return await asyncio.shield(self._round)

    async def item_size_limit(self) -> int | None:
        """Return the smallest ``item_size_max`` the nodes gave (None if none did).

        A round at most :data:`LIMITS_MAX_AGE` old is used as it is; otherwise one is taken.
        """
        last = self._last
        if (
            self._cache.client is not self._client
            or last is None
            or (time.monotonic() - self._last_at > LIMITS_MAX_AGE)
        ):
            last = await self.sample()
        limits = [
            int(n.settings["item_size_max"])
            for n in last.nodes
            if n.settings.get("item_size_max", "").isdigit()
        ]
        return min(limits) if limits else None

    async def _take(self, client: AsyncClient) -> Sample:
        try:
            deadline = client.deadline()
            commands = [stats_command(group or None) for group in GROUPS]
            addresses = client.servers.addresses
            replies = await asyncio.gather(
                *(client.run_on(a, commands, deadline) for a in addresses), return_exceptions=True
            )
            nodes = [_node(a.name, r) for a, r in zip(addresses, replies, strict=True)]
            sample = Sample(time.time(), nodes)
            self._last, self._last_at = sample, time.monotonic()
            self.rounds += 1
            return sample
        finally:
            self._round = None


def _node(name: str, reply: object) -> NodeSample:
    if isinstance(reply, BaseException):
        if not isinstance(reply, CacheError):
            raise reply
        return NodeSample(name, False, str(reply))
    assert isinstance(reply, list)
    groups: list[Mapping[str, str]] = []
    for one in reply:
        # A server without a group (an old memcached, a proxy) answers ERROR for it: empty.
        groups.append(one if isinstance(one, dict) else {})
    general, slabs, items, settings = groups
    if not general:
        return NodeSample(name, False, f"{name} answered no stats")
    return NodeSample(name, True, None, general, slabs, items, settings)
