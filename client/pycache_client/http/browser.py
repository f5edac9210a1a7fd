"""The key browser's daemon side: a bounded walk of ``lru_crawler metadump`` and ``mg`` details.

``lru_crawler metadump all`` streams one line per item (``key=<url-encoded> exp=<unix time or
-1> la=<unix time> cas=<n> fetch=<yes|no> cls=<class> size=<bytes>``, ended by a bare LF) then
``END``. memcached
runs it on its crawler thread and refuses anything pipelined before it on the connection, and
one walk at a time (``BUSY ...``), so each page opens its own connection, reads only what it
needs and closes it, which ends the walk on the daemon too.

Bounds of one page (APPSEC: a cache of millions of keys blocks neither the daemon nor the app):
at most ``limit`` (<= :data:`MAX_PAGE`) matches are returned; at most :data:`MAX_SCAN` dump
lines are read, the ones skipped to reach the cursor included; the whole page takes at most the
client's timeout; one walk per node at a time in this app (others wait within their timeout).
A page that stopped on a bound says which (``stopped``) and gives the ``cursor`` (lines read)
to continue from. The dump's order is the daemon's LRU order, so a page may miss or repeat
keys stored or bumped in between.
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote_from_bytes, unquote_to_bytes

from ..address import Address
from ..errors import CacheConnectionError, CacheServerError, CacheTimeoutError, error_for_line
from ..keys import encode_key

#: Most matches on one page.
MAX_PAGE = 200
#: Most dump lines read for one page, the skipped ones included.
MAX_SCAN = 100_000
#: Longest dump line accepted (a 250-byte key url-encoded is 750 bytes).
MAX_LINE = 4096
#: Largest value shown by the detail view; the rest is cut (the size says how much there is).
MAX_SHOWN = 64 * 1024

DUMP = b"lru_crawler metadump all\r\n"


class CrawlerBusy(CacheServerError):
    """Raised when the daemon is already running a crawler walk (memcached answers ``BUSY``)."""


@dataclass
class Page:
    """One page of the walk."""

    keys: list[dict[str, Any]] = field(default_factory=list)
    scanned: int = 0  # dump lines read in all (the cursor to continue from)
    complete: bool = False  # the dump reached END: nothing more to read
    stopped: str | None = None  # "page", "scan_limit" or "time_limit" when not complete


def _parse_line(line: bytes) -> dict[str, Any] | None:
    fields: dict[str, bytes] = {}
    for part in line.split(b" "):
        name, sep, value = part.partition(b"=")
        if sep:
            fields[name.decode("ascii", "replace")] = value
    if "key" not in fields:
        return None
    raw = unquote_to_bytes(fields["key"])
    entry: dict[str, Any] = _key_fields(raw)
    for field_name in ("exp", "la", "cas", "cls", "size"):
        if field_name in fields:
            try:
                entry[field_name] = int(fields[field_name])
            except ValueError:
                pass
    if "fetch" in fields:
        entry["fetched"] = fields["fetch"] == b"yes"
    return entry


def _key_fields(raw: bytes) -> dict[str, Any]:
    """Return how the page names a key: text when it is UTF-8, and always base64 (exact bytes)."""
    try:
        text: str | None = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    return {
        "key": text,
        "key_b64": base64.b64encode(raw).decode("ascii"),
        "key_url": quote_from_bytes(raw, safe=""),
    }


async def _open(address: Address) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    try:
        if address.path is not None:
            return await asyncio.open_unix_connection(address.path, limit=MAX_LINE * 2)
        assert address.host is not None
        return await asyncio.open_connection(address.host, address.port, limit=MAX_LINE * 2)
    except OSError as exc:
        raise CacheConnectionError(f"cannot connect to {address}: {exc.strerror or exc}") from None


class Browser:
    """Walk the dump of one node at a time (a lock per node) within a deadline."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}

    async def page(self, address: Address, prefix: bytes, cursor: int, limit: int, deadline: float) -> Page:
        """Return up to ``limit`` keys starting with ``prefix`` after ``cursor`` dump lines.

        Raises:
            CacheConnectionError: the node cannot be reached (CacheTimeoutError: nothing by the
                deadline, not even the lock).
            CrawlerBusy: another walk ran on the daemon until the deadline.
            CacheServerError: the daemon has no metadump (an error line).
        """
        lock = self._locks.setdefault(address.name, asyncio.Lock())
        page = Page()
        busy: CrawlerBusy | None = None
        try:
            async with asyncio.timeout_at(deadline):
                async with lock:
                    pause = 0.02
                    while True:
                        try:
                            await self._walk(address, prefix, cursor, max(1, min(limit, MAX_PAGE)), page)
                            break
                        except CrawlerBusy as exc:
                            # memcached's crawler thread ends a walk closed mid-dump (the last
                            # page's, say) only at its next write: BUSY right after it is
                            # transient, so ask again until the deadline.
                            busy = exc
                            await asyncio.sleep(pause)
                            pause = min(pause * 2, 0.5)
        except TimeoutError:
            if page.scanned == 0 and not page.keys:
                if busy is not None:
                    raise busy from None
                raise CacheTimeoutError(f"no dump from {address} within the timeout") from None
            page.stopped = "time_limit"
        return page

    async def _walk(self, address: Address, prefix: bytes, cursor: int, limit: int, page: Page) -> None:
        reader, writer = await _open(address)
        try:
            writer.write(DUMP)
            first = True
            while True:
                try:
                    # NOTE: memcached ends the item lines with a bare "\n" and only END with "\r\n".
                    line = (await reader.readuntil(b"\n")).rstrip(b"\r\n")
                except asyncio.IncompleteReadError:
                    raise CacheConnectionError(f"{address} closed the connection during the dump") from None
                except asyncio.LimitOverrunError:
                    raise CacheConnectionError(f"{address} sent a dump line over {MAX_LINE} bytes") from None
                if line == b"END":
                    page.complete = True
                    return
                if first:
                    first = False
                    if line.startswith(b"BUSY"):
                        raise CrawlerBusy(f"{address} is already walking its keys; try again")
                    if not line.startswith(b"key="):
                        error = error_for_line(line)
                        raise CacheServerError(f"{address} has no key dump (lru_crawler metadump): {error}")
                page.scanned += 1
                if page.scanned > cursor:
                    key = unquote_to_bytes(line[4 : line.find(b" ") if b" " in line else len(line)])
                    if key.startswith(prefix):
                        entry = _parse_line(line)
                        if entry is not None:
                            page.keys.append(entry)
                            if len(page.keys) >= limit:
                                page.stopped = "page"
                                return
                if page.scanned >= MAX_SCAN:
                    page.stopped = "scan_limit"
                    return
        finally:
            # NOTE: closing mid-dump is how the walk is stopped: the daemon's crawler sees the
            # connection gone and ends it.
            writer.transport.abort()


def meta_get_command(key: bytes) -> bytes:
    """Return ``mg`` asking for the value, size, TTL, client flags, CAS, last access and hit."""
    return b"mg " + encode_key(key) + b" s v t f c l h\r\n"


async def meta_get(address: Address, key: bytes, deadline: float) -> dict[str, Any] | None:
    """Return a key's value and meta fields on ``address``, or None if it is not there.

    Raises:
        CacheConnectionError: unreachable, or no complete reply by the deadline (CacheTimeoutError).
        CacheError: the daemon answered an error line (e.g. an old one without ``mg``).
    """
    command = meta_get_command(key)
    try:
        async with asyncio.timeout_at(deadline):
            reader, writer = await _open(address)
            try:
                writer.write(command)
                head = (await reader.readuntil(b"\r\n"))[:-2]
                if head in (b"EN", b"NF"):
                    return None
                if not head.startswith(b"VA "):
                    raise (
                        error_for_line(head)
                        if head.startswith((b"ERROR", b"CLIENT_", b"SERVER_"))
                        else (CacheServerError(f"unexpected mg reply {head[:80]!r}"))
                    )
                parts = head.split(b" ")
                size = int(parts[1])
                data = await reader.readexactly(size + 2)
            finally:
                writer.transport.abort()
    except TimeoutError:
        raise CacheTimeoutError(f"no reply from {address} within the timeout") from None
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, IndexError):
        raise CacheConnectionError(f"{address} sent a malformed mg reply") from None
    value = data[:size]
    fields: dict[str, int] = {}
    for flag in parts[2:]:
        if len(flag) > 1 and flag[:1] in b"stfclh":
            try:
                fields[flag[:1].decode()] = int(flag[1:])
            except ValueError:
                pass
    return {
        **_key_fields(key),
        "size": len(value),
        "ttl": fields.get("t"),  # -1: never expires
        "flags": fields.get("f"),
        "cas": fields.get("c"),
        "last_access": fields.get("l"),  # seconds since
        "fetched_before": None if "h" not in fields else bool(fields["h"]),
        "value_b64": base64.b64encode(value[:MAX_SHOWN]).decode("ascii"),
        "truncated": len(value) > MAX_SHOWN,
    }
