"""pycache-d: a memcached-compatible LRU cache daemon with a compiled core.

The package is four layers, each a subpackage that imports only from the layers below it
(``tests/test_layers.py`` reads every module's imports and fails on an upward one or a circle):

* :mod:`pycache_d.store`: the cache itself (the compiled store, its pure twin, item semantics);
* :mod:`pycache_d.protocol`: memcached's protocols, sans-IO (bytes in, bytes out);
* :mod:`pycache_d.net`: sockets and the I/O engine (connections, the epoll driver, TLS);
* :mod:`pycache_d.daemon`: the lifecycle (config, server, snapshot, systemd).

Beneath them all, :mod:`pycache_d.log` and :mod:`pycache_d._version` import nothing of ours.
Here, the public names: the store users embed (``pycache_d.Store``) and its errors.
"""

from ._version import __version__
from .store import BACKENDS, Store, store_class
from .store.errors import InvalidKey, ItemTooLarge, NonNumericValue, OutOfMemory, Result, StoreError

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
