# Type stubs for the compiled connection hot path (pycache_d/net/_cconnection.pyx).
from typing import Any

class ConnectionBase:
    transport: Any
    session: Any
    _closing: bool
    _paused: bool
    _continuing: bool
    _eof: bool
    _pending: bytes
    _lines: int
    last_active: float
    written: int
    read_bytes: int
    feed_slice: int
    max_lines: int
    small_reply: int
    high_water: int
    write: Any
    writev: Any
    def data_received(self, data: bytes) -> None: ...
