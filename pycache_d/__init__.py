"""pycache-d: a memcached-compatible LRU cache daemon with a compiled core."""

from .errors import InvalidKey, ItemTooLarge, NonNumericValue, OutOfMemory, Result, StoreError
from .store import BACKENDS, Store, store_class

__version__ = "0.1.0"

__all__ = [
    "BACKENDS",
    "InvalidKey",
    "ItemTooLarge",
    "NonNumericValue",
    "OutOfMemory",
    "Result",
    "Store",
    "StoreError",
    "store_class",
    "__version__",
]
