"""Middleware: the cache client's lifespan, and per-request metrics."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import falcon.asgi

from ..client import AsyncClient, call_deadline
from ..errors import CacheConnectionError
from .config import Config
from .metrics import HttpMetrics
from .values import PassthroughSerde


class CacheHandle:
    """Holds the app's pooled :class:`AsyncClient` between startup and shutdown."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._client: AsyncClient | None = None

    @property
    def client(self) -> AsyncClient:
        """Return the open client.

        Raises:
            CacheConnectionError: the app was not started (no ASGI lifespan startup yet).
        """
        if self._client is None:
            raise CacheConnectionError("cache client not started (ASGI lifespan startup has not run)")
        return self._client

    @property
    def started(self) -> bool:
        """Return True between startup and shutdown."""
        return self._client is not None

    def open(self) -> None:
        """Create the pooled client; connections open lazily on the running loop."""
        c = self.config
        self._client = AsyncClient(
            c.servers,
            serde=PassthroughSerde(),
            max_pool_size=c.pool_size,
            timeout=c.timeout,
            connect_timeout=c.connect_timeout,
            # NOTE: reads are retried once so a daemon restart costs no failed request. The
            # whole call, connect and retry included, ends within the timeout (total_timeout),
            # and RequestDeadline makes every call of one request share that one budget.
            retries=1,
            total_timeout=c.timeout,
        )

    async def close(self) -> None:
        """Close the client's connections."""
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()


class CacheLifespan:
    """Open the cache client on ASGI startup and close it on shutdown."""

    def __init__(self, handle: CacheHandle) -> None:
        self._handle = handle

    async def process_startup(self, scope: dict[str, Any], event: dict[str, Any]) -> None:
        """Open the pooled client on the server's event loop."""
        self._handle.open()

    async def process_shutdown(self, scope: dict[str, Any], event: dict[str, Any]) -> None:
        """Close every pooled connection."""
        await self._handle.close()


class RequestDeadline:
    """Give each request one deadline, the configured timeout from its start, for all its cache calls."""

    def __init__(self, config: Config) -> None:
        self._timeout = config.timeout

    async def process_request(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        """Set :data:`~pycache_client.client.call_deadline` for the responder."""
        req.context.deadline_token = call_deadline.set(asyncio.get_running_loop().time() + self._timeout)

    async def process_response(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, resource: object, req_succeeded: bool
    ) -> None:
        """Drop the deadline again."""
        token = getattr(req.context, "deadline_token", None)
        if token is not None:
            try:
                call_deadline.reset(token)
            except ValueError:
                pass  # another context (cannot happen in falcon's ASGI app; never fail a response)


class RequestMetrics:
    """Count every request and time it, labelled by route template (not raw path: bounded)."""

    def __init__(self, metrics: HttpMetrics) -> None:
        self._metrics = metrics

    async def process_request(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        """Note when the request started."""
        req.context.started = time.perf_counter()

    async def process_response(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, resource: object, req_succeeded: bool
    ) -> None:
        """Record the request once the status is known (also for errors)."""
        started = getattr(req.context, "started", None)
        if started is None:
            return
        # A resource may name its route itself (one template serving several documented ones).
        route = getattr(req.context, "route", None) or req.uri_template or "unmatched"
        self._metrics.observe(req.method, route, resp.status_code, time.perf_counter() - started)
