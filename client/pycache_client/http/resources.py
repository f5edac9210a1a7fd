"""The HTTP resources, one small class per route (see :mod:`pycache_client.http.app` for the map)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import falcon
import falcon.asgi

from ..errors import CacheClientError, CacheConnectionError, CacheError
from ..keys import encode_key
from ..protocol import stats as stats_command
from .metrics import HttpMetrics, render
from .middleware import CacheHandle
from .values import Stored, decode_body, encode_body, to_json

Req = falcon.asgi.Request
Resp = falcon.asgi.Response


async def read_body(req: Req, limit: int) -> bytes:
    """Read the whole body, refusing more than ``limit`` bytes with 413 (APPSEC: bounded memory)."""
    if req.content_length is not None and req.content_length > limit:
        raise falcon.HTTPContentTooLarge(description=f"request body over {limit} bytes")
    body = await req.stream.read(limit + 1)
    if len(body) > limit:
        raise falcon.HTTPContentTooLarge(description=f"request body over {limit} bytes")
    return bytes(body)


def get_ttl(req: Req) -> int:
    """Return ``?ttl=`` (seconds, 0 = no expiry); 400 if not a non-negative integer."""
    ttl = req.get_param_as_int("ttl", min_value=0, max_value=2**31 - 1, default=0)
    assert ttl is not None
    return ttl


def check_key(key: str) -> str:
    """Validate a key now so the error names it (InvalidKeyError -> 400 via the app's handler)."""
    encode_key(key)
    return key


class StorageCollection:
    """``/api/storage/``: store several pairs (form or JSON), read several keys as JSON."""

    def __init__(self, cache: CacheHandle) -> None:
        self._cache = cache

    async def on_get(self, req: Req, resp: Resp) -> None:
        """``GET /api/storage/?key=k1&key=k2``: ``{"k1": value, ...}`` for the keys found.

        404 when none of the keys exists; 400 without a ``key`` parameter.
        """
        keys = req.get_param_as_list("key") or []
        if not keys:
            raise falcon.HTTPBadRequest(description="give at least one ?key= parameter")
        client = self._cache.client
        if len(keys) == 1:
            # PERF: the common case (the documented curl call) skips the multi-key plan.
            value = await client.get(keys[0])
            found: dict[Any, Any] = {} if value is None else {keys[0]: value}
        else:
            found = await client.get_many(keys)
        if not found:
            raise falcon.HTTPNotFound(description=f"no such key: {', '.join(keys)}")
        resp.media = {str(k): to_json(v) for k, v in found.items()}

    async def on_post(self, req: Req, resp: Resp) -> None:
        """``POST /api/storage/``: store every pair of a form or JSON object; 201 ``{"stored": [...]}``.

        Form values are stored as text; JSON values keep their type (str, int, other JSON).
        """
        body = await read_body(req, self._cache.config.max_body)
        media = (req.content_type or "").split(";", 1)[0].strip().lower()
        pairs: dict[str, Any]
        if media in ("", "application/x-www-form-urlencoded"):
            try:
                text = body.decode("utf-8")
                pairs = {}
                for k, v in parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text)):
                    pairs[k] = v  # a repeated name keeps its last value, as most form parsers
            except (UnicodeDecodeError, ValueError):
                raise falcon.HTTPBadRequest(description="body is not a valid urlencoded form") from None
        elif media == "application/json":
            try:
                pairs = json.loads(body)
            except ValueError:
                raise falcon.HTTPBadRequest(description="body is not valid JSON") from None
            if not isinstance(pairs, dict):
                raise falcon.HTTPBadRequest(description="JSON body must be an object of key: value")
        else:
            raise falcon.HTTPUnsupportedMediaType(
                description="send application/x-www-form-urlencoded or application/json"
            )
        if not pairs:
            raise falcon.HTTPBadRequest(description="nothing to store: give at least one key=value")
        ttl = get_ttl(req)
        for key in pairs:
            check_key(key)
        failed = await self._cache.client.set_many(pairs, ttl=ttl)
        if failed:
            raise falcon.HTTPInternalServerError(description=f"not stored: {', '.join(map(str, failed))}")
        resp.status = falcon.HTTP_201
        resp.media = {"stored": list(pairs)}


class StorageItem:
    """``/api/storage/{key}``: the raw value, with the Content-Type it was stored with."""

    def __init__(self, cache: CacheHandle) -> None:
        self._cache = cache

    async def _fetch(self, key: str) -> tuple[bytes, str]:
        stored = await self._cache.client.get(check_key(key))
        if stored is None:
            raise falcon.HTTPNotFound(description=f"no such key: {key}")
        assert isinstance(stored, Stored)
        return decode_body(stored)

    async def on_get(self, req: Req, resp: Resp, key: str) -> None:
        """Answer the stored bytes; 404 if missing."""
        resp.data, resp.content_type = await self._fetch(key)

    async def on_head(self, req: Req, resp: Resp, key: str) -> None:
        """Answer GET's headers (Content-Type, Content-Length) without the body."""
        body, resp.content_type = await self._fetch(key)
        resp.content_length = len(body)

    async def on_put(self, req: Req, resp: Resp, key: str) -> None:
        """Store the body under ``key`` (``?ttl=`` seconds); 204. 413 over the item size."""
        check_key(key)
        ttl = get_ttl(req)
        body = await read_body(req, self._cache.config.max_body)
        try:
            stored = encode_body(body, req.content_type)
        except ValueError as exc:
            raise falcon.HTTPBadRequest(description=str(exc)) from None
        await self._cache.client.set(key, stored, ttl=ttl)
        resp.status = falcon.HTTP_204

    async def on_delete(self, req: Req, resp: Resp, key: str) -> None:
        """Delete ``key``; 204, or 404 if it did not exist."""
        if not await self._cache.client.delete(check_key(key)):
            raise falcon.HTTPNotFound(description=f"no such key: {key}")
        resp.status = falcon.HTTP_204


class Counter:
    """``POST /api/storage/{key}/incr`` and ``/decr`` (``?by=N``, default 1): ``{"key", "value"}``."""

    def __init__(self, cache: CacheHandle) -> None:
        self._cache = cache

    async def _apply(self, req: Req, resp: Resp, key: str, verb: str) -> None:
        check_key(key)
        by = req.get_param_as_int("by", min_value=0, max_value=2**64 - 1, default=1)
        assert by is not None
        client = self._cache.client
        op: Callable[[str, int], Any] = client.incr if verb == "incr" else client.decr
        try:
            value = await op(key, by)
        except CacheClientError as exc:
            # The request was fine; the stored value is not a number: a conflict with its state.
            raise falcon.HTTPConflict(description=str(exc)) from None
        if value is None:
            raise falcon.HTTPNotFound(description=f"no such key: {key}")
        resp.media = {"key": key, "value": value}

    async def on_post_incr(self, req: Req, resp: Resp, key: str) -> None:
        """Add ``by``; 404 if missing; 409 if the value is not a decimal number."""
        await self._apply(req, resp, key, "incr")

    async def on_post_decr(self, req: Req, resp: Resp, key: str) -> None:
        """Subtract ``by`` (clamped at 0); 404 if missing; 409 if not a decimal number."""
        await self._apply(req, resp, key, "decr")


def _number(text: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


class Stats:
    """``GET /api/stats``: ``{"servers": {"host:port": {stat: number or string}}}``."""

    def __init__(self, cache: CacheHandle) -> None:
        self._cache = cache

    async def on_get(self, req: Req, resp: Resp) -> None:
        """Answer every server's ``stats``; 503 if one is unreachable."""
        stats = await self._cache.client.stats()
        resp.media = {"servers": {s: {k: _number(v) for k, v in st.items()} for s, st in stats.items()}}


class Health:
    """``GET /healthz``: the app is alive (never touches the cache)."""

    async def on_get(self, req: Req, resp: Resp) -> None:
        """Answer ``{"status": "ok"}``."""
        resp.media = {"status": "ok"}


class Ready:
    """``GET /readyz``: every cache server answers ``version`` within the timeout."""

    def __init__(self, cache: CacheHandle) -> None:
        self._cache = cache

    async def on_get(self, req: Req, resp: Resp) -> None:
        """200 ``{"status": "ready", "servers": {...}}``, else 503 ``{"status": "unavailable", ...}``."""
        try:
            versions = await self._cache.client.version()
        except CacheError as exc:
            resp.status = falcon.HTTP_503
            resp.media = {"status": "unavailable", "error": str(exc)}
            return
        resp.media = {"status": "ready", "servers": versions}


class Metrics:
    """``GET /metrics``: Prometheus text; the daemon is asked for stats on every scrape."""

    def __init__(self, cache: CacheHandle, metrics: HttpMetrics) -> None:
        self._cache = cache
        self._metrics = metrics

    async def on_get(self, req: Req, resp: Resp) -> None:
        """Answer the exposition; a server that does not answer shows as ``pycache_up 0``."""
        snapshot: dict[str, dict[str, str] | None]
        client = self._cache.client
        try:
            snapshot = dict(await client.stats())
        except CacheConnectionError:
            # NOTE: stats() is all-or-nothing; ask each server alone to tell which ones are up.
            snapshot = {}
            for address in client.servers.addresses:
                try:
                    (reply,) = await client.pool(address).run([stats_command()])
                except CacheError:
                    reply = None
                snapshot[address.name] = reply if isinstance(reply, dict) else None
        resp.data = render(self._metrics, snapshot)
        resp.content_type = "text/plain; version=0.0.4; charset=utf-8"


class OpenAPI:
    """``GET /openapi.json``: the OpenAPI 3 description of every route."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self._spec = spec

    async def on_get(self, req: Req, resp: Resp) -> None:
        """Answer the document."""
        resp.media = self._spec
