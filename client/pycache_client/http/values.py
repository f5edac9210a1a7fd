"""How the HTTP API stores values: the body as sent; flags say its type; an envelope only on request.

A ``PUT`` body is stored byte for byte. Its Content-Type only chooses the client flags, which
``GET /api/storage/{key}`` turns back into a Content-Type, except when the client asks for its
own type to be kept (``?keep_type=true``): then, and only then, the type is stored in front of
the body (the envelope, flags 256), because memcached has nowhere else to keep it.

========================================  ======  ===========================================
``PUT`` Content-Type                       flags   stored bytes
========================================  ======  ===========================================
``text/plain`` (UTF-8 body)               16      the body (read back as a str by the library)
``application/json`` (valid JSON)         32      the body (read back as the JSON value)
any other, or none (curl's form default)  0       the body
any other with ``?keep_type=true``        256     ``<content-type>\\n<body>`` (the envelope)
========================================  ======  ===========================================

NOTE: ``curl --data-binary @file -X PUT`` sends ``application/x-www-form-urlencoded`` unless
told otherwise, and other tools send what they like; keeping every type by default stored
that type in front of the bytes every other client of the cache then read.

Flags 0, 2, 16 and 32 are :class:`~pycache_client.serde.JsonSerde`'s, so values written through
the API and through the library read back the same either way; 256 is the API's own. ``GET
/api/storage/{key}`` answers with the Content-Type these flags stand for (an int stored by the
library is ``text/plain``; flags 0 are ``application/octet-stream``). In the JSON answers of
``GET /api/storage/?key=`` a value is its decoded form: str, number, JSON value; bytes that are
UTF-8 become a string, others ``{"base64": "..."}``.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from ..serde import FLAG_BYTES, FLAG_INT, FLAG_JSON, FLAG_TEXT, JsonSerde

FLAG_ENVELOPE = 1 << 8
MAX_CONTENT_TYPE = 255
TEXT = "text/plain; charset=utf-8"
OCTETS = "application/octet-stream"
JSON_TYPE = "application/json"


@dataclass(frozen=True, slots=True)
class Stored:
    """A value as the cache holds it: raw bytes and flags."""

    data: bytes
    flags: int


class PassthroughSerde(JsonSerde):
    """Store :class:`Stored` values as they are, and read every value back as :class:`Stored`."""

    def serialize(self, value: Any) -> tuple[bytes, int]:
        """Return a :class:`Stored` unchanged; other values as :class:`JsonSerde` does."""
        if isinstance(value, Stored):
            return value.data, value.flags
        return super().serialize(value)

    def deserialize(self, data: bytes, flags: int) -> Any:
        """Return the raw :class:`Stored`; the resources decide how to render it."""
        return Stored(data, flags)


class BadBody(ValueError):
    """Raised when a body does not match its Content-Type (invalid UTF-8 text or JSON)."""


def encode_body(body: bytes, content_type: str | None, keep_type: bool = False) -> Stored:
    """Return how to store a ``PUT`` body sent with ``content_type`` (see the module docstring).

    Raises:
        BadBody: text that is not UTF-8, JSON that does not parse, or an overlong content type.
    """
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media in ("", OCTETS) or (media not in ("text/plain", JSON_TYPE) and not keep_type):
        return Stored(body, FLAG_BYTES)
    if media == "text/plain":
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            raise BadBody("text/plain body is not valid UTF-8") from None
        return Stored(body, FLAG_TEXT)
    if media == JSON_TYPE:
        try:
            json.loads(body)
        except ValueError:
            raise BadBody("application/json body is not valid JSON") from None
        return Stored(body, FLAG_JSON)
    assert content_type is not None
    if len(content_type) > MAX_CONTENT_TYPE or "\n" in content_type or "\r" in content_type:
        raise BadBody(f"Content-Type longer than {MAX_CONTENT_TYPE} characters")
    return Stored(content_type.encode("latin-1") + b"\n" + body, FLAG_ENVELOPE)


def decode_body(stored: Stored) -> tuple[bytes, str]:
    """Return the body and Content-Type to answer ``GET /api/storage/{key}`` with."""
    if stored.flags in (FLAG_TEXT, FLAG_INT):
        return stored.data, TEXT
    if stored.flags == FLAG_JSON:
        return stored.data, JSON_TYPE
    if stored.flags == FLAG_ENVELOPE:
        content_type, sep, body = stored.data.partition(b"\n")
        if sep:
            return body, content_type.decode("latin-1")
    return stored.data, OCTETS


def to_json(stored: Stored) -> Any:
    """Return the JSON-friendly form of a stored value (see the module docstring)."""
    if stored.flags == FLAG_TEXT:
        return stored.data.decode("utf-8", "replace")
    if stored.flags == FLAG_INT:
        try:
            return int(stored.data)
        except ValueError:
            pass
    if stored.flags == FLAG_JSON:
        try:
            return json.loads(stored.data)
        except ValueError:
            pass
    body, _ = decode_body(stored)
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(body).decode("ascii")}
