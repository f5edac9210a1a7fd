"""Binary-protocol helpers for the tests: build requests, split replies into packets, normalise them."""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

from pycache_d.protocol import binary as b

HEADER = struct.Struct(">BBHBBHIIQ")
#: The opaque of the NOOP that ends each exchange (no generated request uses it).
SYNC = 0xFFFFFFFF
SYNC_NOOP = b.request(b.NOOP, opaque=SYNC)


@dataclass
class Packet:
    """One response packet."""

    magic: int
    opcode: int
    status: int
    opaque: int
    cas: int
    extras: bytes
    key: bytes
    value: bytes

    def row(self) -> tuple:
        return (
            self.magic,
            self.opcode,
            self.status,
            self.opaque,
            self.cas,
            self.extras,
            self.key,
            self.value,
        )


def packets(data: bytes) -> tuple[list[Packet], bytes]:
    """Split ``data`` into whole response packets; return them and the bytes left over."""
    out = []
    pos = 0
    while len(data) - pos >= 24:
        magic, opcode, keylen, extlen, _dt, status, bodylen, opaque, cas = HEADER.unpack_from(data, pos)
        if len(data) - pos < 24 + bodylen:
            break
        body = data[pos + 24 : pos + 24 + bodylen]
        out.append(
            Packet(
                magic,
                opcode,
                status,
                opaque,
                cas,
                body[:extlen],
                body[extlen : extlen + keylen],
                body[extlen + keylen :],
            )
        )
        pos += 24 + bodylen
    return out, data[pos:]


def ends_with_sync(data: bytes) -> bool:
    """True once ``data`` holds whole packets, the last one the answer to SYNC_NOOP."""
    got, rest = packets(data)
    return not rest and bool(got) and got[-1].opcode == b.NOOP and got[-1].opaque == SYNC


class Conn:
    """A blocking binary client connection (to memcached or to our daemon)."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 5.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)

    def ask(self, data: bytes) -> tuple[bytes, bool]:
        """Send ``data`` + SYNC_NOOP; return the reply up to the sync answer and whether the
        server closed the connection (a timeout counts as neither: the reply is marked)."""
        self.sock.sendall(data + SYNC_NOOP)
        buf = b""
        while not ends_with_sync(buf):
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                return buf + b"<timeout>", False
            except ConnectionResetError:
                return buf, True
            if not chunk:
                return buf, True
            buf += chunk
        return buf, False

    def call(self, data: bytes) -> list[Packet]:
        """ask(), as packets without the sync answer."""
        reply, _closed = self.ask(data)
        got, _rest = packets(reply)
        return [p for p in got if p.opaque != SYNC]

    def close(self) -> None:
        self.sock.close()


class CasNames:
    """Rename CAS values by order of first appearance (0 stays 0)."""

    def __init__(self) -> None:
        self.names: dict[int, int] = {0: 0}

    def __call__(self, cas: int) -> int:
        return self.names.setdefault(cas, len(self.names))


def normalise(reply: bytes, names: CasNames) -> list[tuple]:
    """The packets of ``reply`` with what legitimately differs from memcached renamed.

    Only these: CAS values (by order of first appearance), the VERSION body, and the stats
    fields of a STAT reply (left out: memcached has more, and its slab classes differ; the
    terminator, opaque and errors are compared).
    """
    got, rest = packets(reply)
    rows: list[tuple] = []
    for p in got:
        if p.opcode == b.VERSION and p.status == 0:
            p.value = b"<version>"
        if p.opcode == b.STAT and p.status == 0 and p.key:
            if p.key == b"detailed":
                p.value = b"<dump>"
            else:
                continue  # a stats field: which ones and how many depend on the server
        p.cas = names(p.cas)
        rows.append(p.row())
    if rest:
        rows.append(("<partial>", rest))
    return rows
