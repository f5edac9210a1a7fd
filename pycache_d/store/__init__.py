"""The store layer: the cache itself, bytes keys to items, with no notion of a client or a socket.

It owns the two twins with one behaviour, the compiled :mod:`._native` (C items, hash table and
LRU list in ``csrc/``, its declarations in ``_store_c.pxd``) and the pure :mod:`._pystore` (an
``OrderedDict``, the executable specification), and what both share: memcached's item semantics
(:mod:`.semantics`), the errors with their wire text (:mod:`.errors`) and the process's clock
(:mod:`.clock`). It is the bottom layer: it imports nothing of pycache_d's other layers, and
every one of them may import it.

This module is the chooser: the compiled store unless told or forced otherwise.
``PYCACHE_D_NO_EXTENSIONS=1`` (read here at import and by setup.py at build time) skips the
native backend; so does a build without a C compiler. Both classes stay reachable by name
(:data:`BACKENDS`) so tests and ``--backend`` can pick one explicitly.
"""

from __future__ import annotations

import os
from typing import Any

from ._pystore import Store as PyStore

NO_EXTENSIONS = bool(os.environ.get("PYCACHE_D_NO_EXTENSIONS"))

NativeStore: Any = None
if not NO_EXTENSIONS:
    try:
        from ._native import Store as NativeStore
    except ImportError:  # not built: fall back, and let callers see NativeStore is None
        pass

#: Every backend this process can use, by its ``--backend`` name.
BACKENDS: dict[str, Any] = {"python": PyStore}
if NativeStore is not None:
    BACKENDS["native"] = NativeStore

#: The default store class: native when available.
Store: Any = NativeStore if NativeStore is not None else PyStore


def store_class(backend: str = "auto") -> Any:
    """Return the store class for ``auto``, ``native`` or ``python``.

    Raises:
        ValueError: the backend is unknown or (``native``) not built into this installation.
    """
    if backend == "auto":
        return Store
    try:
        return BACKENDS[backend]
    except KeyError:
        if backend == "native":
            raise ValueError(
                "the native backend is not built (PYCACHE_D_NO_EXTENSIONS or no compiler)"
            ) from None
        raise ValueError(f"unknown backend {backend!r}: expected auto, native or python") from None
