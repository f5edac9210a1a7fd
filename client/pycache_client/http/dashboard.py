"""The dashboard at ``/``, its JSON route, the key browser's routes, and ``/scrape``.

Routes (JSON unless said otherwise)::

    GET    /                       the page (HTML; its script and style under /static/)
    GET    /api/dashboard          one stats round of every node (see :mod:`.sampler`)
    GET    /api/keys?server=S&prefix=P&cursor=N&limit=L    a page of the key dump
    GET    /api/keys/value?server=S&key=B64                 value and meta fields of one key
    DELETE /api/keys/value?server=S&key=B64                 204, 404 if missing
    POST   /api/keys/touch?server=S&key=B64&ttl=T           204, 404 if missing
    GET    /scrape?target=S        memcached_exporter's metrics of one node (text)

``server``/``target`` must be one of the configured nodes (APPSEC: the app never connects
anywhere else). Keys travel base64-encoded (any bytes, ``/`` included). The page itself is
plain HTML, CSS and JavaScript of our own, packaged with the app: nothing is fetched from
anywhere else at run time (the Content-Security-Policy says so to the browser too).
"""

from __future__ import annotations

import base64
import binascii
from importlib import resources as importlib_resources
from typing import Any

import falcon
import falcon.asgi

from .. import protocol
from ..address import Address
from ..errors import CacheError
from ..keys import encode_key
from . import browser, exporter
from .auth import AccessPolicy
from .metrics import render_families
from .middleware import CacheHandle
from .sampler import NodeSample, StatsSampler

Req = falcon.asgi.Request
Resp = falcon.asgi.Response

STATIC = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def _asset(name: str) -> bytes:
    return importlib_resources.files(__package__).joinpath("static", name).read_bytes()


class Page:
    """``GET /``: the dashboard page."""

    def __init__(self) -> None:
        self._html = _asset("index.html")

    async def on_get(self, req: Req, resp: Resp) -> None:
        """Answer the HTML."""
        resp.data = self._html
        resp.content_type = falcon.MEDIA_HTML
        resp.set_header("Content-Security-Policy", CSP)
        resp.set_header("Cache-Control", "no-cache")


class Static:
    """``GET /static/{name}``: the page's script and style (a fixed list: nothing else is read)."""

    def __init__(self) -> None:
        self._files = {name: _asset(name) for name in STATIC}

    async def on_get(self, req: Req, resp: Resp, name: str) -> None:
        """Answer one asset; 404 for any other name."""
        if name not in self._files:
            raise falcon.HTTPNotFound()
        resp.data, resp.content_type = self._files[name], STATIC[name]
        resp.set_header("Cache-Control", "no-cache")


_CLASS_FIELDS = (
    "chunk_size chunks_per_page total_pages total_chunks used_chunks free_chunks get_hits cmd_set "
    "delete_hits number age mem_requested evicted evicted_time outofmemory reclaimed expired_unfetched "
    "evicted_unfetched"
).split()


def _number(text: str) -> int | float | None:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return None


def node_view(node: NodeSample) -> dict[str, Any]:
    """Return what the page shows of one node: identity, numeric stats and size classes."""
    view: dict[str, Any] = {"name": node.name, "up": node.up, "error": node.error}
    if not node.up:
        return view
    s = node.stats
    numbers = {k: v for k, v in ((k, _number(t)) for k, t in s.items()) if v is not None}
    classes: dict[str, dict[str, Any]] = {}
    for flat, prefix in ((node.slabs, ""), (node.items, "items:")):
        for cls, fields in exporter.split_classes(flat, prefix).items():
            merged = classes.setdefault(cls, {"id": int(cls)})
            for name in _CLASS_FIELDS:
                if name in fields and name not in merged:
                    merged[name] = _number(fields[name])
    view.update(
        version=s.get("version"),
        backend=node.settings.get("backend", "memcached" if "libevent" in s else None),
        threads=numbers.get("threads"),
        item_size_max=_number(node.settings.get("item_size_max", "")),
        stats=numbers,
        total_malloced=_number(node.slabs.get("total_malloced", "")),
        classes=sorted(classes.values(), key=lambda c: int(c["id"])),
    )
    return view


class DashboardData:
    """``GET /api/dashboard``: the latest stats round (at most one per second, shared)."""

    def __init__(self, sampler: StatsSampler, policy: AccessPolicy) -> None:
        self._sampler = sampler
        self._policy = policy

    async def on_get(self, req: Req, resp: Resp) -> None:
        """Answer ``{"taken", "interval", "access", "nodes": [...]}``; a down node has ``up: false``."""
        sample = await self._sampler.sample()
        p = self._policy
        resp.media = {
            "taken": sample.taken,
            "interval": self._sampler.max_age,
            "access": {
                "writes": p.writes,
                "browser": p.writes,
                "auth": p.credentials.enabled,
                "reason": p.reason,
            },
            "nodes": [node_view(n) for n in sample.nodes],
        }
        resp.set_header("Cache-Control", "no-store")


def _server(req: Req, cache: CacheHandle, param: str = "server") -> Address:
    name = req.get_param(param, required=True)
    for address in cache.client.servers.addresses:
        if address.name == name:
            return address
    raise falcon.HTTPBadRequest(description=f"{param} must be one of the configured nodes: {name!r} is not")


def _key(req: Req, param: str = "key") -> bytes:
    text = req.get_param(param, required=True)
    try:
        raw = base64.b64decode(text, altchars=b"-_" if ("-" in text or "_" in text) else None, validate=True)
    except (binascii.Error, ValueError):
        raise falcon.HTTPBadRequest(description=f"{param} must be base64") from None
    return encode_key(raw)  # InvalidKeyError -> 400


class Keys:
    """``GET /api/keys``: a bounded page of one node's key dump (see :mod:`.browser`)."""

    def __init__(self, cache: CacheHandle, walker: browser.Browser) -> None:
        self._cache = cache
        self._walker = walker

    async def on_get(self, req: Req, resp: Resp) -> None:
        """Answer ``{"keys": [...], "cursor", "complete", "stopped", "bounds"}``; 503 if busy."""
        address = _server(req, self._cache)
        prefix = (req.get_param("prefix") or "").encode("utf-8")
        cursor = req.get_param_as_int("cursor", min_value=0, default=0) or 0
        limit = req.get_param_as_int("limit", min_value=1, max_value=browser.MAX_PAGE, default=50) or 50
        client = self._cache.client
        deadline = client.deadline()
        assert deadline is not None  # the app's client always has a total timeout
        try:
            page = await self._walker.page(address, prefix, cursor, limit, deadline)
        except browser.CrawlerBusy as exc:
            raise falcon.HTTPServiceUnavailable(description=str(exc), retry_after=1) from None
        resp.media = {
            "server": address.name,
            "prefix": prefix.decode("utf-8"),
            "keys": page.keys,
            "cursor": page.scanned,
            "complete": page.complete,
            "stopped": page.stopped,
            "bounds": {"page": limit, "scan": browser.MAX_SCAN, "seconds": client.total_timeout},
        }


class KeyValue:
    """``/api/keys/value``: one key on one node: read (``mg``), delete; ``/api/keys/touch``."""

    def __init__(self, cache: CacheHandle) -> None:
        self._cache = cache

    async def on_get(self, req: Req, resp: Resp) -> None:
        """Answer the value (base64, the first 64 KiB) with size, TTL, flags, CAS, last access."""
        address, key = _server(req, self._cache), _key(req)
        deadline = self._cache.client.deadline()
        assert deadline is not None
        found = await browser.meta_get(address, key, deadline)
        if found is None:
            raise falcon.HTTPNotFound(description="no such key on that node")
        resp.media = {"server": address.name, **found}

    async def _status(self, address: Address, command: protocol.Command) -> bytes:
        client = self._cache.client
        (reply,) = await client.run_on(address, [command], client.deadline())
        if isinstance(reply, CacheError):
            raise reply
        assert isinstance(reply, bytes)
        return reply

    async def on_delete(self, req: Req, resp: Resp) -> None:
        """Delete the key on that node; 204, or 404 if it was not there."""
        address, key = _server(req, self._cache), _key(req)
        if await self._status(address, protocol.delete(key)) != b"DELETED":
            raise falcon.HTTPNotFound(description="no such key on that node")
        resp.status = falcon.HTTP_204

    async def on_post_touch(self, req: Req, resp: Resp) -> None:
        """Set a new TTL (``ttl`` seconds, 0: never expires); 204, or 404 if it was not there."""
        address, key = _server(req, self._cache), _key(req)
        ttl = req.get_param_as_int("ttl", required=True, min_value=0, max_value=2**31 - 1)
        assert ttl is not None
        if await self._status(address, protocol.touch(key, ttl)) != b"TOUCHED":
            raise falcon.HTTPNotFound(description="no such key on that node")
        resp.status = falcon.HTTP_204


class Scrape:
    """``GET /scrape?target=S``: the exporter's multi-target endpoint, for configured nodes only."""

    def __init__(self, cache: CacheHandle, sampler: StatsSampler) -> None:
        self._cache = cache
        self._sampler = sampler

    async def on_get(self, req: Req, resp: Resp) -> None:
        """Answer one node's memcached_* metrics, unlabelled (``memcached_up 0`` when down)."""
        address = _server(req, self._cache, "target")
        sample = await self._sampler.sample()
        node = sample.node(address.name)
        assert node is not None
        resp.data = render_families(exporter.collect([node], node_label=False))
        resp.content_type = "text/plain; version=0.0.4; charset=utf-8"
