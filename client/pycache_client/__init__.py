"""pycache_client: blocking and asyncio clients for pycache-d and memcached (text protocol).

Quick start::

    from pycache_client import Client
    with Client("127.0.0.1:11211") as cache:
        cache.set("greeting", "hello", ttl=60)
        cache.get("greeting")  # 'hello'

The HTTP API and its dependencies live in :mod:`pycache_client.http` (``pip install
'pycache-client[http]'``); this package itself needs nothing beyond the standard library.
"""

from .address import Address, parse_address
from .client import AsyncClient, Client
from .errors import (
    CacheClientError,
    CacheConnectionError,
    CacheError,
    CacheServerError,
    CacheTimeoutError,
    InvalidKeyError,
    PoolExhaustedError,
    SerializationError,
    ValueTooLargeError,
)
from .hashring import HashRing
from .keys import MAX_KEY_LENGTH, encode_key
from .serde import JsonSerde, RawSerde, Serde

__version__ = "0.1.0"

__all__ = [
    "Address",
    "AsyncClient",
    "CacheClientError",
    "CacheConnectionError",
    "CacheError",
    "CacheServerError",
    "CacheTimeoutError",
    "Client",
    "HashRing",
    "InvalidKeyError",
    "JsonSerde",
    "MAX_KEY_LENGTH",
    "PoolExhaustedError",
    "RawSerde",
    "SerializationError",
    "Serde",
    "ValueTooLargeError",
    "encode_key",
    "parse_address",
]
