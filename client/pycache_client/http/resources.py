"""The HTTP resources, one small class per route (see :mod:`pycache_client.http.app` for the map)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import falcon
import falcon.asgi

from ..errors import CacheClientError, CacheError, ValueTooLargeError
from ..keys import encode_key
from . import exporter
from .metrics import HttpMetrics, render
from .middleware import CacheHandle
from .sampler import StatsSampler
from .values import Stored, decode_body, encode_body, to_json

Req = falcon.asgi.Request
Resp = falcon.asgi.Response
#: The documented template of StorageItem's routes (metrics label them with it).
ITEM_ROUTE = "/api/storage/{key}"


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


#: What memcached adds to a key and value in an item (its header, CAS, flags, CRLF); a pair
#: bigger than the item size minus this is refused (memcached 1.6: 63 bytes on 64-bit).
ITEM_OVERHEAD = 64


class StorageCollection:
    """``/api/storage/``: store several pairs (form or JSON), read several keys as JSON."""

    def __init__(self, cache: CacheHandle, sampler: StatsSampler) -> None:
        self._cache = cache
        self._sampler = sampler

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
        # The whole request is checked before anything is stored: a pair over the daemon's item
        # size would otherwise be refused after the ones before it were stored.
        limit = await self._sampler.item_size_limit()
        serde = self._cache.client.serde
        if limit is not None:
            for key, value in pairs.items():
                data, _flags = serde.serialize(value)
                if len(key.encode()) + len(data) + ITEM_OVERHEAD > limit:
                    raise falcon.HTTPContentTooLarge(
                        description=f"value of {key!r} is too large for the cache's {limit}-byte items; "
                        "nothing was stored"
                    )
        try:
            failed = await self._cache.client.set_many(pairs, ttl=ttl)
        except ValueTooLargeError as exc:
            # Only when the daemon's limit changed since we learnt it; say what happened.
            raise falcon.HTTPContentTooLarge(
                description=f"{exc}; the pairs before it may have been stored"
            ) from None
        if failed:
            raise falcon.HTTPInternalServerError(description=f"not stored: {', '.join(map(str, failed))}")
        resp.status = falcon.HTTP_201
        resp.media = {"stored": list(pairs)}


def _counter_of(path_key: str) -> tuple[str, str] | None:
    """Return ``(key, "incr"|"decr")`` when the path names a counter, else None."""
    base, sep, verb = path_key.rpartition("/")
    if sep and base and verb in ("incr", "decr"):
        return base, verb
    return None


class StorageItem:
    """``/api/storage/{key}``: the raw value, with the Content-Type it was stored with.

    The key is the whole rest of the path, ``/`` included (``/api/storage/a/b`` is key ``a/b``,
    as is ``/api/storage/a%2Fb``), except that a path ending in ``/incr`` or ``/decr`` is the
    counter of the key before it (``POST /api/storage/a/b/incr`` adds to ``a/b``) and takes POST
    only; a key itself ending so is reached through ``?key=`` and ``POST /api/storage/``.
    """

    def __init__(self, cache: CacheHandle, counter: Counter) -> None:
        self._cache = cache
        self._counter = counter

    def _key_route(self, req: Req, key: str) -> str:
        """Return ``key`` after checking the path is not a counter's (405 then)."""
        if _counter_of(key) is not None:
            raise falcon.HTTPMethodNotAllowed(["POST"])
        req.context.route = ITEM_ROUTE
        return key

    async def on_options(self, req: Req, resp: Resp, key: str) -> None:
        """Answer the methods this path takes in ``Allow``."""
        counter = _counter_of(key)
        req.context.route = ITEM_ROUTE if counter is None else f"{ITEM_ROUTE}/{counter[1]}"
        resp.set_header("Allow", "POST" if counter else "DELETE, GET, HEAD, PUT")
        resp.status = falcon.HTTP_200

    async def _fetch(self, key: str) -> tuple[bytes, str]:
        stored = await self._cache.client.get(check_key(key))
        if stored is None:
            raise falcon.HTTPNotFound(description=f"no such key: {key}")
        assert isinstance(stored, Stored)
        return decode_body(stored)

    async def on_get(self, req: Req, resp: Resp, key: str) -> None:
        """Answer the stored bytes; 404 if missing."""
        resp.data, resp.content_type = await self._fetch(self._key_route(req, key))

    async def on_post(self, req: Req, resp: Resp, key: str) -> None:
        """Route ``{key}/incr`` and ``{key}/decr`` to the counter; 405 for any other POST."""
        counter = _counter_of(key)
        if counter is None:
            raise falcon.HTTPMethodNotAllowed(["DELETE", "GET", "HEAD", "PUT"])
        base, verb = counter
        req.context.route = f"{ITEM_ROUTE}/{verb}"
        await self._counter.apply(req, resp, base, verb)

    async def on_head(self, req: Req, resp: Resp, key: str) -> None:
        """Answer GET's headers (Content-Type, Content-Length) without the body."""
        body, resp.content_type = await self._fetch(self._key_route(req, key))
        resp.content_length = len(body)

    async def on_put(self, req: Req, resp: Resp, key: str) -> None:
        """Store the body under ``key`` (``?ttl=`` seconds); 204. 413 over the item size.

        The body is stored as sent; ``?keep_type=true`` also keeps a Content-Type other than
        text/plain and application/json (see :mod:`.values`).
        """
        check_key(self._key_route(req, key))
        ttl = get_ttl(req)
        keep_type = bool(req.get_param_as_bool("keep_type", default=False))
        body = await read_body(req, self._cache.config.max_body)
        try:
            stored = encode_body(body, req.content_type, keep_type)
        except ValueError as exc:
            raise falcon.HTTPBadRequest(description=str(exc)) from None
        await self._cache.client.set(key, stored, ttl=ttl)
        resp.status = falcon.HTTP_204

    async def on_delete(self, req: Req, resp: Resp, key: str) -> None:
        """Delete ``key``; 204, or 404 if it did not exist."""
        if not await self._cache.client.delete(check_key(self._key_route(req, key))):
            raise falcon.HTTPNotFound(description=f"no such key: {key}")
        resp.status = falcon.HTTP_204


class Counter:
    """``POST /api/storage/{key}/incr`` and ``/decr`` (``?by=N``, default 1): ``{"key", "value"}``.

    Add ``by`` (decr: subtract, clamped at 0); 404 if missing; 409 if not a decimal number.
    """

    def __init__(self, cache: CacheHandle) -> None:
        self._cache = cache

    async def apply(self, req: Req, resp: Resp, key: str, verb: str) -> None:
        """Apply ``incr`` or ``decr`` to ``key`` and answer the new value."""
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
    """``GET /metrics``: Prometheus text: HTTP metrics (every worker), the nodes' stats twice:
    under memcached_exporter's names (:mod:`.exporter`) and as ``pycache_<stat>``."""

    def __init__(self, sampler: StatsSampler, metrics: HttpMetrics) -> None:
        self._sampler = sampler
        self._metrics = metrics

    async def on_get(self, req: Req, resp: Resp) -> None:
        """Answer the exposition; a node that does not answer shows as ``memcached_up 0``."""
        sample = await self._sampler.sample()
        snapshot = {n.name: (dict(n.stats) if n.up else None) for n in sample.nodes}
        resp.data = render(self._metrics, snapshot, exporter.collect(sample.nodes))
        resp.content_type = "text/plain; version=0.0.4; charset=utf-8"


class OpenAPI:
    """``GET /openapi.json``: the OpenAPI 3 description of every route."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self._spec = spec

    async def on_get(self, req: Req, resp: Resp) -> None:
        """Answer the document."""
        resp.media = self._spec
