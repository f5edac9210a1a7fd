"""Choose the session implementation for a store: compiled for the native store, else Python.

The compiled session (``_csession``) drives the C store directly, so it only pairs with the
native store; ``PYCACHE_D_NO_EXTENSIONS`` or a missing build leaves the Python session.
"""

from __future__ import annotations

from typing import Any

from .context import ServerContext
from .session import Session
from .store import NO_EXTENSIONS, NativeStore

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
