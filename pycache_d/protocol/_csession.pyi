# Type stubs for the compiled session (pycache_d/protocol/_csession.pyx); same API as session.Session.
from typing import Any

from ..store._native import Store

class NativeSession:
    store: Store
    ctx: Any
    @property
    def closing(self) -> bool: ...
    def __init__(self, store: Store, ctx: Any = ...) -> None: ...
    def feed(self, data: bytes) -> bytes: ...
