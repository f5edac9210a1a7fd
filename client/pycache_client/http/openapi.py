"""The OpenAPI 3.0 description served at ``/openapi.json`` (and fuzzed by schemathesis in the tests)."""

from __future__ import annotations

from typing import Any

from .. import __version__

# Printable ASCII without space or "/", and not only dots: what a path segment can carry
# unchanged. The API accepts any valid memcached key (UTF-8, up to 250 bytes) percent-encoded.
KEY_PATTERN = r"^[\x21-\x2e\x30-\x7e]*[\x21-\x2d\x30-\x7e][\x21-\x2e\x30-\x7e]*$"

_ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "invalid key, ttl or body",
        404: "no such key",
        409: "the stored value is not a decimal number",
        413: "value larger than the daemon's item size or the body limit",
        415: "unsupported Content-Type",
        503: "cache daemon unreachable or timed out",
    }
    return {str(code): _json(_ERROR, text[code]) for code in codes}


_KEY_PARAM = {
    "name": "key",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "minLength": 1, "maxLength": 250, "pattern": KEY_PATTERN},
}
_TTL_PARAM = {
    "name": "ttl",
    "in": "query",
    "required": False,
    "description": "seconds to live; 0 (default) never expires",
    "schema": {"type": "integer", "minimum": 0, "maximum": 2**31 - 1},
}
_KEEP_TYPE_PARAM = {
    "name": "keep_type",
    "in": "query",
    "required": False,
    "description": "also keep a Content-Type other than text/plain and application/json",
    "schema": {"type": "boolean", "default": False},
}
_BY_PARAM = {
    "name": "by",
    "in": "query",
    "required": False,
    "schema": {"type": "integer", "minimum": 0, "maximum": 2**64 - 1, "default": 1},
}
_ANY_BODY = {
    "description": "the stored value, with the Content-Type it was stored with",
    "content": {"*/*": {}},
}


# Explicit key names via patternProperties + additionalProperties false: schema-valid bodies
# then only hold valid keys (propertyNames is not honoured by every generator).
def _pairs(value: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "minProperties": 1,
        "patternProperties": {KEY_PATTERN: value},
        "additionalProperties": False,
    }


_COUNTER = {
    "parameters": [_KEY_PARAM, _BY_PARAM],
    "responses": {
        "200": _json({"$ref": "#/components/schemas/Counter"}, "the new value"),
        **_errors(400, 404, 409, 503),
    },
}


def build_spec() -> dict[str, Any]:
    """Return the OpenAPI document."""
    values = {"type": "object", "additionalProperties": {}}
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "pycache HTTP API",
            "version": __version__,
            "description": "Key/value storage over a pycache-d (or memcached) cache.",
        },
        "paths": {
            "/api/storage/": {
                "get": {
                    "summary": "Read several keys",
                    "parameters": [
                        {
                            "name": "key",
                            "in": "query",
                            "required": True,
                            "style": "form",
                            "explode": True,
                            "schema": {"type": "array", "minItems": 1, "items": _KEY_PARAM["schema"]},
                        }
                    ],
                    "responses": {
                        "200": _json(values, "the keys found and their values"),
                        **_errors(400, 404, 503),
                    },
                },
                "post": {
                    "summary": "Store several pairs (form fields or a JSON object)",
                    "parameters": [_TTL_PARAM],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/x-www-form-urlencoded": {"schema": _pairs({"type": "string"})},
                            "application/json": {"schema": _pairs({})},
                        },
                    },
                    "responses": {
                        "201": _json(
                            {
                                "type": "object",
                                "required": ["stored"],
                                "properties": {"stored": {"type": "array", "items": {"type": "string"}}},
                            },
                            "the keys stored",
                        ),
                        **_errors(400, 413, 415, 503),
                    },
                },
            },
            "/api/storage/{key}": {
                "get": {
                    "parameters": [_KEY_PARAM],
                    "summary": "Read one value",
                    "responses": {"200": _ANY_BODY, **_errors(400, 404, 503)},
                },
                "head": {
                    "summary": "Headers of one value",
                    "parameters": [_KEY_PARAM],
                    "responses": {
                        "200": {"description": "exists"},
                        "400": {"description": "invalid key"},
                        "404": {"description": "no such key"},
                        "503": {"description": "unreachable"},
                    },
                },
                "put": {
                    "summary": "Store one value (the body as sent; ?keep_type=true keeps another type)",
                    "parameters": [_KEY_PARAM, _TTL_PARAM, _KEEP_TYPE_PARAM],
                    "requestBody": {
                        # An empty body is a valid (empty) value.
                        "required": False,
                        "content": {"application/octet-stream": {}, "text/plain": {}},
                    },
                    "responses": {"204": {"description": "stored"}, **_errors(400, 413, 503)},
                },
                "delete": {
                    "summary": "Delete one key",
                    "parameters": [_KEY_PARAM],
                    "responses": {"204": {"description": "deleted"}, **_errors(400, 404, 503)},
                },
            },
            "/api/storage/{key}/incr": {"post": {"summary": "Increment a decimal value", **_COUNTER}},
            "/api/storage/{key}/decr": {"post": {"summary": "Decrement (clamped at 0)", **_COUNTER}},
            "/api/stats": {
                "get": {
                    "summary": "Daemon statistics",
                    "responses": {
                        "200": _json(
                            {"type": "object", "required": ["servers"], "properties": {"servers": values}},
                            "stats per server",
                        ),
                        **_errors(503),
                    },
                }
            },
            "/healthz": {
                "get": {
                    "summary": "The app is alive",
                    "responses": {"200": _json({"$ref": "#/components/schemas/Status"}, "alive")},
                }
            },
            "/readyz": {
                "get": {
                    "summary": "The cache daemon answers",
                    "responses": {
                        "200": _json({"$ref": "#/components/schemas/Status"}, "ready"),
                        "503": _json({"$ref": "#/components/schemas/Status"}, "daemon unreachable"),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {
                        "200": {
                            "description": "text exposition format 0.0.4",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {"200": _json({"type": "object"}, "OpenAPI 3.0 document")},
                }
            },
        },
        "components": {
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["title"],
                    "properties": {"title": {"type": "string"}, "description": {"type": "string"}},
                },
                "Counter": {
                    "type": "object",
                    "required": ["key", "value"],
                    "properties": {"key": {"type": "string"}, "value": {"type": "integer", "minimum": 0}},
                },
                "Status": {
                    "type": "object",
                    "required": ["status"],
                    "properties": {
                        "status": {"type": "string"},
                        "error": {"type": "string"},
                        "servers": values,
                    },
                },
            }
        },
    }
