"""The protocol layer: memcached's protocols, sans-IO: bytes in, bytes out, a store behind them.

It owns the session (:mod:`.session`: framing and the classic text commands, the pure twin and
the specification), the binary protocol (:mod:`.binary`), authentication (:mod:`.auth`), the
meta commands (:mod:`.meta`), ``stats`` (:mod:`.stats`), the wire helpers (:mod:`.wire`), what a
session may ask of the server it runs in (:mod:`.context`) and the compiled session for the
native store (:mod:`._csession`). It knows nothing of sockets or
event loops, so it is tested and fuzzed without a network. It may import :mod:`pycache_d.store`
and :mod:`pycache_d.log`, never :mod:`pycache_d.net` or :mod:`pycache_d.daemon`.

This module is the chooser: the compiled session for the native store, else the Python one;
``PYCACHE_D_NO_EXTENSIONS`` or a missing build leaves the Python session.
"""

from __future__ import annotations

from typing import Any

from ..store import NO_EXTENSIONS, NativeStore
from .context import ServerContext
from .session import Session

NativeSession: Any = None
if not NO_EXTENSIONS and NativeStore is not None:
    try:
        from ._csession import NativeSession
    except ImportError:  # not built: the Python session serves every store
        pass


def new_session(store: Any, ctx: ServerContext | None = None) -> Any:
    """Return a session over ``store``: the compiled one when the store is the native one."""
    if NativeSession is not None and isinstance(store, NativeStore):
        return NativeSession(store, ctx)
    return Session(store, ctx)
