"""Key validation: every key is checked and encoded here before a byte is sent."""

from __future__ import annotations

import re

from .errors import InvalidKeyError

#: protocol.txt, "Keys": "the length limit of a key is set at 250 characters".
MAX_KEY_LENGTH = 250

# protocol.txt: keys "must not include control characters or whitespace". Non-ASCII bytes are
# allowed by memcached, so a UTF-8 encoded str key is fine as long as these bytes are absent.
_FORBIDDEN = re.compile(rb"[\x00-\x20\x7f]")


def encode_key(key: str | bytes) -> bytes:
    """Return ``key`` as wire bytes (str keys are UTF-8 encoded).

    Raises:
        InvalidKeyError: empty, longer than 250 bytes, or containing whitespace/control bytes.
    """
    if isinstance(key, str):
        raw = key.encode("utf-8")
    elif isinstance(key, bytes | bytearray | memoryview):
        raw = bytes(key)
    else:
        raise InvalidKeyError(f"key must be str or bytes, not {type(key).__name__}")
    if not raw:
        raise InvalidKeyError("key must not be empty")
    if len(raw) > MAX_KEY_LENGTH:
        raise InvalidKeyError(f"key is {len(raw)} bytes long, the limit is {MAX_KEY_LENGTH}")
    bad = _FORBIDDEN.search(raw)
    if bad is not None:
        raise InvalidKeyError(f"key contains whitespace or a control character ({bad.group()!r}): {raw!r}")
    return raw
