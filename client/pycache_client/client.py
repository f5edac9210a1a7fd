"""The public clients: :class:`Client` (blocking, thread-safe) and :class:`AsyncClient` (asyncio).

Both are thin: each method builds a :class:`~pycache_client.ops.Plan` (validation,
serialisation, reply interpretation) and the client only routes its commands to servers, runs
them on a pooled connection and retries idempotent reads. The two have the same methods with
the same arguments and results; :class:`Client`'s docstrings describe both.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from contextvars import ContextVar
from typing import Any, TypeVar

from . import ops
from .address import Address
from .aiopool import AsyncConnectionPool
from .errors import CacheConnectionError, CacheTimeoutError, PoolExhaustedError
from .ops import Key, KeyMapping, Plan
from .pool import ConnectionPool
from .protocol import Command, Reply
from .serde import JsonSerde, Serde
from .servers import ServerSet

T = TypeVar("T")
#: Seconds past a call's deadline at which its connect is cut (see AsyncClient.run_on).
_BACKSTOP = 0.01
#: When set (the event loop's clock), every AsyncClient call made in this context ends by then,
#: so several calls can share one budget (the HTTP app sets it per request).
call_deadline: ContextVar[float | None] = ContextVar("pycache_client_call_deadline", default=None)
Servers = str | Address | Sequence[str | Address]


class _ClientBase:
    """Configuration and routing shared by both clients."""

    def __init__(
        self,
        servers: Servers = "127.0.0.1:11211",
        *,
        serde: Serde | None = None,
        max_pool_size: int = 10,
        connect_timeout: float = 1.0,
        timeout: float = 1.0,
        pool_timeout: float | None = None,
        retries: int = 0,
        dead_timeout: float = 30.0,
        total_timeout: float | None = None,
    ) -> None:
        """Configure a client; connections are opened lazily.

        Args:
            servers: ``"host:port"``, ``"unix:/path"``, an :class:`Address` or a list of them
                (a list is sharded by ketama consistent hashing; weights via :class:`Address`).
            serde: the value serialiser, :class:`~pycache_client.serde.JsonSerde` by default.
            max_pool_size: most connections open to one server at once. A blocking connection
                serves one request at a time; an asyncio one pipelines many (see :mod:`.aiopool`).
            connect_timeout: seconds to wait for a connection.
            timeout: seconds for one request/reply exchange.
            pool_timeout: seconds to wait for a free connection (blocking client) or for one
                that another task is opening (asyncio client) before ``PoolExhaustedError``
                (default: ``timeout``).
            retries: extra attempts for idempotent reads (get, get_many, gets, gat, stats,
                version) after a connection error or timeout; writes are never retried.
            dead_timeout: seconds a failed server stays ejected from the ring (several servers only).
            total_timeout: asyncio client only: seconds one call may take in all, connects and
                retries included (None: each attempt has its own ``connect_timeout`` and
                ``timeout``). A retry starts only while time is left.
        """
        if isinstance(servers, str | Address):
            servers = [servers]
        if retries < 0:
            raise ValueError("retries must be >= 0")
        if total_timeout is not None and not total_timeout > 0:
            raise ValueError("total_timeout must be > 0")
        self.total_timeout = total_timeout
        self.servers = ServerSet(servers, dead_timeout=dead_timeout)
        self.serde: Serde = serde if serde is not None else JsonSerde()
        self.max_pool_size = max_pool_size
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self.pool_timeout = pool_timeout
        self.retries = retries
        self._names = [a.name for a in self.servers.addresses]
        self._make_pools()

    def _make_pools(self) -> None:
        raise NotImplementedError

    def _attempts(self, plan: Plan[Any]) -> int:
        return 1 + (self.retries if plan.idempotent else 0)

    def _groups(self, plan: Plan[Any]) -> dict[Address, list[int]]:
        """Return, per server, the indexes of the plan's commands it owns."""
        if plan.broadcast:
            return {address: [0] for address in self.servers.addresses}
        groups: dict[Address, list[int]] = {}
        for i, route in enumerate(plan.routes):
            groups.setdefault(self.servers.server_for(route), []).append(i)
        return groups

    def _failed(self, address: Address, exc: CacheConnectionError) -> None:
        # A busy pool says nothing about the server's health: only real failures eject it.
        if not isinstance(exc, PoolExhaustedError):
            self.servers.mark_failed(address)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(self._names)})"


def _gather(plan: Plan[Any], results: list[tuple[list[int], list[Reply]]]) -> list[Reply]:
    if plan.broadcast:
        return [replies[0] for _, replies in results]
    ordered: list[Reply] = [None] * len(plan.commands)
    for indexes, replies in results:
        for i, reply in zip(indexes, replies, strict=True):
            ordered[i] = reply
    return ordered


def _commands(plan: Plan[Any], indexes: list[int]) -> list[Command]:
    return [plan.commands[i] for i in indexes]


class Client(_ClientBase):
    """A blocking memcached/pycache-d client, safe to share between threads.

    Use as a context manager or call :meth:`close`. Keys are str (UTF-8 encoded) or bytes;
    values go through the serialiser (see :mod:`pycache_client.serde`). Every method may raise
    :class:`~pycache_client.errors.CacheConnectionError` (incl. timeouts),
    :class:`~pycache_client.errors.CacheClientError` (invalid key, ttl or value) or
    :class:`~pycache_client.errors.CacheServerError`.
    """

    def _make_pools(self) -> None:
        self._pools = {
            a: ConnectionPool(a, self.max_pool_size, self.connect_timeout, self.timeout, self.pool_timeout)
            for a in self.servers.addresses
        }

    def pool(self, address: Address | str) -> ConnectionPool:
        """Return the connection pool of one server (by :class:`Address` or name)."""
        for a, p in self._pools.items():
            if a == address or a.name == address:
                return p
        raise KeyError(address)

    def close(self) -> None:
        """Close all pooled connections; the client cannot be used afterwards."""
        for p in self._pools.values():
            p.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _execute(self, plan: Plan[T]) -> T:
        attempts = self._attempts(plan)
        for attempt in range(attempts):
            try:
                results = []
                for address, indexes in self._groups(plan).items():
                    try:
                        results.append((indexes, self._pools[address].run(_commands(plan, indexes))))
                    except CacheConnectionError as exc:
                        self._failed(address, exc)
                        raise
                return plan.finish(_gather(plan, results))
            except CacheConnectionError:
                if attempt + 1 >= attempts:
                    raise
        raise AssertionError("unreachable")

    # -- commands (AsyncClient mirrors these one for one) ----------------------------------------

    def get(self, key: Key, default: Any = None) -> Any:
        """Return the value of ``key``, or ``default`` if it is missing."""
        return self._execute(ops.get(self.serde, key, default))

    def get_many(self, keys: Iterable[Key]) -> dict[Key, Any]:
        """Return ``{key: value}`` for the keys found (missing keys are absent)."""
        return self._execute(ops.get_many(self.serde, keys))

    def gets(self, key: Key, default: Any = None) -> tuple[Any, int | None]:
        """Return ``(value, cas_unique)`` for use with :meth:`cas`, or ``(default, None)``."""
        return self._execute(ops.gets(self.serde, key, default))

    def set(self, key: Key, value: Any, ttl: int = 0) -> bool:
        """Store ``value`` under ``key`` for ``ttl`` seconds (0: no expiry); return True."""
        return self._execute(ops.store(b"set", self.serde, key, value, ttl))

    def set_many(self, mapping: KeyMapping, ttl: int = 0) -> list[Key]:
        """Store every pair; return the keys that were not stored (empty on success)."""
        return self._execute(ops.set_many(self.serde, mapping, ttl))

    def add(self, key: Key, value: Any, ttl: int = 0) -> bool:
        """Store only if ``key`` is missing; return whether it was stored."""
        return self._execute(ops.store(b"add", self.serde, key, value, ttl))

    def replace(self, key: Key, value: Any, ttl: int = 0) -> bool:
        """Store only if ``key`` exists; return whether it was stored."""
        return self._execute(ops.store(b"replace", self.serde, key, value, ttl))

    def append(self, key: Key, value: Any) -> bool:
        """Append the serialised ``value`` to an existing item; False if it is missing."""
        return self._execute(ops.store(b"append", self.serde, key, value))

    def prepend(self, key: Key, value: Any) -> bool:
        """Prepend the serialised ``value`` to an existing item; False if it is missing."""
        return self._execute(ops.store(b"prepend", self.serde, key, value))

    def cas(self, key: Key, value: Any, cas_unique: int, ttl: int = 0) -> bool | None:
        """Store if unchanged since :meth:`gets`: True stored, False changed, None missing."""
        return self._execute(ops.cas(self.serde, key, value, cas_unique, ttl))

    def delete(self, key: Key) -> bool:
        """Delete ``key``; return whether it existed."""
        return self._execute(ops.delete(key))

    def delete_many(self, keys: Iterable[Key]) -> int:
        """Delete every key; return how many existed."""
        return self._execute(ops.delete_many(keys))

    def incr(self, key: Key, delta: int = 1) -> int | None:
        """Add ``delta`` to a decimal value; return the new value, or None if missing."""
        return self._execute(ops.arithmetic(b"incr", key, delta))

    def decr(self, key: Key, delta: int = 1) -> int | None:
        """Subtract ``delta`` (clamped at 0); return the new value, or None if missing."""
        return self._execute(ops.arithmetic(b"decr", key, delta))

    def touch(self, key: Key, ttl: int) -> bool:
        """Set a new TTL on ``key``; return whether it existed."""
        return self._execute(ops.touch(key, ttl))

    def gat(self, key: Key, ttl: int, default: Any = None) -> Any:
        """Get ``key`` and set its TTL in one command; ``default`` if missing."""
        return self._execute(ops.gat(self.serde, key, ttl, default))

    def flush_all(self, delay: int = 0) -> None:
        """Invalidate every item on every server (after ``delay`` seconds)."""
        return self._execute(ops.flush_all(delay))

    def stats(self, group: str | None = None) -> dict[str, dict[str, str]]:
        """Return ``{server name: {stat: value}}`` for ``stats [group]`` on every server."""
        return self._execute(ops.stats(self._names, group))

    def version(self) -> dict[str, str]:
        """Return ``{server name: version string}``."""
        return self._execute(ops.version(self._names))


class AsyncClient(_ClientBase):
    """The asyncio twin of :class:`Client`: the same methods, as coroutines.

    Bound to the event loop that first uses it. Many tasks can share one client: each request
    takes a pooled connection (at most ``max_pool_size`` per server) for its exchange only.
    Commands for several servers (get_many, ...) run concurrently. Close with ``await close()``.
    """

    def _make_pools(self) -> None:
        self._pools = {
            a: AsyncConnectionPool(
                a, self.max_pool_size, self.connect_timeout, self.timeout, self.pool_timeout
            )
            for a in self.servers.addresses
        }

    def pool(self, address: Address | str) -> AsyncConnectionPool:
        """Return the connection pool of one server (by :class:`Address` or name)."""
        for a, p in self._pools.items():
            if a == address or a.name == address:
                return p
        raise KeyError(address)

    async def close(self) -> None:
        """Close all pooled connections; the client cannot be used afterwards."""
        for p in self._pools.values():
            p.close()
        # Let the transports finish closing so no ResourceWarning fires at loop shutdown.
        await asyncio.sleep(0)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def deadline(self) -> float | None:
        """Return when a call starting now must end (the loop's clock), or None without a bound.

        That is ``total_timeout`` from now, or the context's :data:`call_deadline` if sooner.
        """
        shared = call_deadline.get()
        if self.total_timeout is None:
            return shared
        own = asyncio.get_running_loop().time() + self.total_timeout
        return own if shared is None else min(own, shared)

    async def run_on(self, address: Address, commands: list[Command], deadline: float | None) -> list[Reply]:
        """Run raw ``commands`` on one server's pool, by ``deadline`` (see :meth:`deadline`).

        Raises:
            CacheConnectionError: as the pool's ``run``; CacheTimeoutError once the deadline passed.
        """
        pool = self._pools[address]
        if deadline is None:
            return await pool.run(commands)
        try:
            # NOTE: the exchange itself is given the deadline, so its own timeout fires first and
            # drops the connection (whose place in the reply stream is lost); this outer bound,
            # a moment later, only cuts a connect that would outlast the deadline, which is
            # safe to cancel. Cancelling a written request instead would leave it queued.
            async with asyncio.timeout_at(deadline + _BACKSTOP):
                return await pool.run(commands, deadline)
        except CacheConnectionError:
            raise
        except TimeoutError:
            raise CacheTimeoutError(f"no reply from {address} within {self.total_timeout}s") from None

    async def _run(self, address: Address, commands: list[Command], deadline: float | None) -> list[Reply]:
        try:
            return await self.run_on(address, commands, deadline)
        except CacheConnectionError as exc:
            self._failed(address, exc)
            raise

    async def _execute(self, plan: Plan[T]) -> T:
        attempts = self._attempts(plan)
        deadline = self.deadline()
        for attempt in range(attempts):
            try:
                groups = self._groups(plan)
                if len(groups) == 1:
                    ((address, indexes),) = groups.items()
                    results = [(indexes, await self._run(address, _commands(plan, indexes), deadline))]
                else:
                    replies = await asyncio.gather(
                        *(self._run(a, _commands(plan, ix), deadline) for a, ix in groups.items())
                    )
                    results = list(zip(groups.values(), replies, strict=True))
                return plan.finish(_gather(plan, results))
            except CacheConnectionError:
                out_of_time = deadline is not None and asyncio.get_running_loop().time() >= deadline
                if attempt + 1 >= attempts or out_of_time:
                    raise
        raise AssertionError("unreachable")

    async def get(self, key: Key, default: Any = None) -> Any:
        """See :meth:`Client.get`."""
        return await self._execute(ops.get(self.serde, key, default))

    async def get_many(self, keys: Iterable[Key]) -> dict[Key, Any]:
        """See :meth:`Client.get_many`."""
        return await self._execute(ops.get_many(self.serde, keys))

    async def gets(self, key: Key, default: Any = None) -> tuple[Any, int | None]:
        """See :meth:`Client.gets`."""
        return await self._execute(ops.gets(self.serde, key, default))

    async def set(self, key: Key, value: Any, ttl: int = 0) -> bool:
        """See :meth:`Client.set`."""
        return await self._execute(ops.store(b"set", self.serde, key, value, ttl))

    async def set_many(self, mapping: KeyMapping, ttl: int = 0) -> list[Key]:
        """See :meth:`Client.set_many`."""
        return await self._execute(ops.set_many(self.serde, mapping, ttl))

    async def add(self, key: Key, value: Any, ttl: int = 0) -> bool:
        """See :meth:`Client.add`."""
        return await self._execute(ops.store(b"add", self.serde, key, value, ttl))

    async def replace(self, key: Key, value: Any, ttl: int = 0) -> bool:
        """See :meth:`Client.replace`."""
        return await self._execute(ops.store(b"replace", self.serde, key, value, ttl))

    async def append(self, key: Key, value: Any) -> bool:
        """See :meth:`Client.append`."""
        return await self._execute(ops.store(b"append", self.serde, key, value))

    async def prepend(self, key: Key, value: Any) -> bool:
        """See :meth:`Client.prepend`."""
        return await self._execute(ops.store(b"prepend", self.serde, key, value))

    async def cas(self, key: Key, value: Any, cas_unique: int, ttl: int = 0) -> bool | None:
        """See :meth:`Client.cas`."""
        return await self._execute(ops.cas(self.serde, key, value, cas_unique, ttl))

    async def delete(self, key: Key) -> bool:
        """See :meth:`Client.delete`."""
        return await self._execute(ops.delete(key))

    async def delete_many(self, keys: Iterable[Key]) -> int:
        """See :meth:`Client.delete_many`."""
        return await self._execute(ops.delete_many(keys))

    async def incr(self, key: Key, delta: int = 1) -> int | None:
        """See :meth:`Client.incr`."""
        return await self._execute(ops.arithmetic(b"incr", key, delta))

    async def decr(self, key: Key, delta: int = 1) -> int | None:
        """See :meth:`Client.decr`."""
        return await self._execute(ops.arithmetic(b"decr", key, delta))

    async def touch(self, key: Key, ttl: int) -> bool:
        """See :meth:`Client.touch`."""
        return await self._execute(ops.touch(key, ttl))

    async def gat(self, key: Key, ttl: int, default: Any = None) -> Any:
        """See :meth:`Client.gat`."""
        return await self._execute(ops.gat(self.serde, key, ttl, default))

    async def flush_all(self, delay: int = 0) -> None:
        """See :meth:`Client.flush_all`."""
        return await self._execute(ops.flush_all(delay))

    async def stats(self, group: str | None = None) -> dict[str, dict[str, str]]:
        """See :meth:`Client.stats`."""
        return await self._execute(ops.stats(self._names, group))

    async def version(self) -> dict[str, str]:
        """See :meth:`Client.version`."""
        return await self._execute(ops.version(self._names))
