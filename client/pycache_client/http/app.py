"""``create_app(config)``: the Falcon ASGI app of the HTTP API.

Routes (JSON unless said otherwise; errors are ``{"title", "description"}`` with the status)::

    POST   /api/storage/              form or JSON object -> 201 {"stored": [keys]}   (?ttl=)
    GET    /api/storage/?key=K[&key=K2]                   -> 200 {"K": value, ...} (404: none found)
    GET    /api/storage/{key}         raw body, stored Content-Type (HEAD: headers only)
    PUT    /api/storage/{key}         raw body (?ttl=)    -> 204
    DELETE /api/storage/{key}                             -> 204 (404: missing)
    POST   /api/storage/{key}/incr    (?by=N)             -> 200 {"key": K, "value": n}; also /decr
                                                             (409: stored value not a number)
    GET    /api/stats                                     -> 200 {"servers": {server: {stat: v}}}
    GET    /healthz | /readyz | /metrics | /openapi.json

Errors: 400 invalid key/ttl/body, 404 missing key, 413 value too large, 415 bad Content-Type,
503 daemon unreachable or timed out (after at most the client timeout), 502 other daemon errors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import falcon
import falcon.asgi
from falcon.asgi import Request, Response

from ..errors import CacheClientError, CacheConnectionError, CacheError, ValueTooLargeError
from . import resources
from .config import Config
from .metrics import HttpMetrics
from .middleware import CacheHandle, CacheLifespan, RequestMetrics
from .openapi import build_spec


class App(falcon.asgi.App[Request, Response]):
    """The Falcon ASGI app, also holding its config, cache handle and metrics for tests and tools."""

    config: Config
    cache: CacheHandle
    metrics: HttpMetrics


# The one table from client exceptions to HTTP errors; the most specific class wins (falcon
# picks handlers by the exception's MRO).
_ERROR_STATUS: list[tuple[type[CacheError], Callable[..., falcon.HTTPError]]] = [
    (CacheError, falcon.HTTPBadGateway),
    (CacheConnectionError, falcon.HTTPServiceUnavailable),
    (CacheClientError, falcon.HTTPBadRequest),
    (ValueTooLargeError, falcon.HTTPContentTooLarge),
]


def _handler(http_error: Callable[..., falcon.HTTPError]) -> Any:
    async def handle(req: Request, resp: Response, ex: Exception, params: Any) -> None:
        # The title stays falcon's status line, like the errors falcon raises itself.
        raise http_error(description=str(ex))

    return handle


def create_app(config: Config | None = None) -> App:
    """Build the app; the cache client opens on ASGI lifespan startup and closes on shutdown."""
    config = config or Config()
    cache = CacheHandle(config)
    metrics = HttpMetrics()
    middleware: list[Any] = [CacheLifespan(cache), RequestMetrics(metrics)]
    app = App(middleware=middleware)
    app.config, app.cache, app.metrics = config, cache, metrics
    app.req_options.auto_parse_qs_csv = False  # ?key=a,b is one key "a,b", not two
    app.resp_options.default_media_type = falcon.MEDIA_JSON

    collection = resources.StorageCollection(cache)
    app.add_route("/api/storage/", collection)
    app.add_route("/api/storage", collection)
    app.add_route("/api/storage/{key}", resources.StorageItem(cache))
    counter = resources.Counter(cache)
    app.add_route("/api/storage/{key}/incr", counter, suffix="incr")
    app.add_route("/api/storage/{key}/decr", counter, suffix="decr")
    app.add_route("/api/stats", resources.Stats(cache))
    app.add_route("/healthz", resources.Health())
    app.add_route("/readyz", resources.Ready(cache))
    app.add_route("/metrics", resources.Metrics(cache, metrics))
    app.add_route("/openapi.json", resources.OpenAPI(build_spec()))

    for exc_type, http_error in _ERROR_STATUS:
        app.add_error_handler(exc_type, _handler(http_error))
    return app


def app_from_env() -> App:
    """Factory for uvicorn (``--factory``) and its worker processes: config from PYCACHE_HTTP_*."""
    return create_app(Config.from_env())
