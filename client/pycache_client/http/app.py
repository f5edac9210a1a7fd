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
    GET    /  (the dashboard), /api/dashboard, /api/keys..., /scrape   (see .dashboard)

A key in the path may hold ``/`` (``/api/storage/a/b`` is key ``a/b``); see StorageItem.

Errors: 400 invalid key/ttl/body, 401 no credential (with an auth file), 403 a write refused
(beyond loopback without an auth file, see .auth), 404 missing key, 413 value too large, 415 bad
Content-Type, 503 daemon unreachable or timed out (every cache wait of one request together
takes at most the configured timeout, retries included), 502 other daemon errors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import falcon
import falcon.asgi
from falcon.asgi import Request, Response

from ..errors import CacheClientError, CacheConnectionError, CacheError, ValueTooLargeError
from . import browser, dashboard, resources
from .auth import AccessControl, AccessPolicy
from .config import Config
from .metrics import HttpMetrics
from .middleware import CacheHandle, CacheLifespan, RequestDeadline, RequestMetrics
from .openapi import build_spec
from .sampler import StatsSampler


class App(falcon.asgi.App[Request, Response]):
    """The Falcon ASGI app, also holding its config, cache handle and metrics for tests and tools."""

    config: Config
    cache: CacheHandle
    metrics: HttpMetrics
    sampler: StatsSampler
    policy: AccessPolicy


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
    """Build the app; the cache client opens on ASGI lifespan startup and closes on shutdown.

    Raises:
        AuthFileError: ``config.auth_file`` is set and unusable.
    """
    config = config or Config()
    policy = AccessPolicy.for_config(config.host, config.auth_file)
    cache = CacheHandle(config)
    metrics = HttpMetrics()
    sampler = StatsSampler(cache)
    middleware: list[Any] = [
        RequestMetrics(metrics),  # first: it also counts the 401s and 403s
        AccessControl(policy),
        CacheLifespan(cache),
        RequestDeadline(config),
    ]
    app = App(middleware=middleware)
    app.config, app.cache, app.metrics, app.sampler, app.policy = config, cache, metrics, sampler, policy
    app.req_options.auto_parse_qs_csv = False  # ?key=a,b is one key "a,b", not two
    app.resp_options.default_media_type = falcon.MEDIA_JSON

    collection = resources.StorageCollection(cache, sampler)
    app.add_route("/api/storage/", collection)
    app.add_route("/api/storage", collection)
    app.add_route("/api/storage/{key:path}", resources.StorageItem(cache, resources.Counter(cache)))
    app.add_route("/api/stats", resources.Stats(cache))
    app.add_route("/healthz", resources.Health())
    app.add_route("/readyz", resources.Ready(cache))
    app.add_route("/metrics", resources.Metrics(sampler, metrics))
    app.add_route("/openapi.json", resources.OpenAPI(build_spec()))

    app.add_route("/", dashboard.Page())
    app.add_route("/static/{name}", dashboard.Static())
    app.add_route("/api/dashboard", dashboard.DashboardData(sampler, policy))
    app.add_route("/api/keys", dashboard.Keys(cache, browser.Browser()))
    key_value = dashboard.KeyValue(cache)
    app.add_route("/api/keys/value", key_value)
    app.add_route("/api/keys/touch", key_value, suffix="touch")
    app.add_route("/scrape", dashboard.Scrape(cache, sampler))

    for exc_type, http_error in _ERROR_STATUS:
        app.add_error_handler(exc_type, _handler(http_error))
    return app


def app_from_env() -> App:
    """Factory for uvicorn (``--factory``) and its worker processes: config from PYCACHE_HTTP_*."""
    return create_app(Config.from_env())
