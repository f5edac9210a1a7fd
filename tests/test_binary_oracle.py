"""Differential test of the binary protocol: the same random request streams to memcached and to a
session (the compiled one on the native store), reply by reply, both backends, our side fed split
at random byte boundaries and again at every byte boundary.

memcached (``/usr/bin/memcached``) is the oracle, started as in test_memcached_oracle.py. Each
exchange (one request, or a batch of quiet ones) is followed by a NOOP whose answer marks its
end, so requests that answer nothing (quiet hits and misses) are compared too. What may differ
is normalised in tests/binproto.py, narrowly: CAS values are renamed by order of first
appearance, the VERSION body and the fields of STAT replies are not compared (the framing,
status, opaque and terminator are). A request may carry "the last CAS this server returned",
so CAS-guarded set, delete, append and incr succeed as well as fail.

Not generated, because they cannot agree by design: TTLs that run out during the run, values
near the size limit (memcached's slab classes decide), and ``stat`` groups' contents. Requests
that close the connection (bad magic, wrong lengths, quit) end the stream.
"""

from __future__ import annotations

import os
import struct

import pytest
from binproto import SYNC_NOOP, CasNames, Conn, ends_with_sync, normalise
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_memcached_oracle import _QUIET, MEMCACHED, _memcached

from pycache_d.protocol import binary as b
from pycache_d.protocol import new_session
from pycache_d.protocol.context import ServerContext
from pycache_d.store import BACKENDS

pytestmark = pytest.mark.skipif(MEMCACHED is None, reason="memcached is not installed (make apt installs it)")

EXAMPLES = int(os.environ.get("PYCACHE_D_ORACLE_EXAMPLES", "300"))
KEYS = [b"a", b"b", b"foo", b"c\x10\x7f\td"]
VALUES = [b"", b"x", b"0", b"10", b"99", b"abc", b"18446744073709551615", b"\r\nflush_all\r\n", b"7 "]
LAST = -1  # a CAS field: the last CAS this server returned
NO_CAS = 2**64 - 1
EXPTIMES = [0, 1000, 2**31 - 1]


@pytest.fixture(scope="module")
def memcached_port():
    yield from _memcached(*_QUIET)


@pytest.fixture(scope="module")
def small_items_port():
    yield from _memcached("-I", "2k", "-o", "no_lru_crawler,no_lru_maintainer,slab_chunk_max=1024")


keys = st.sampled_from(KEYS)
values = st.sampled_from(VALUES)
cases = st.sampled_from([0, 0, LAST, NO_CAS])
opaques = st.integers(0, 2**32 - 2)
flags = st.sampled_from([0, 1, 2**32 - 1])
exptimes = st.sampled_from(EXPTIMES)


@st.composite
def storage(draw):
    op = draw(st.sampled_from([b.SET, b.ADD, b.REPLACE, b.SETQ, b.ADDQ, b.REPLACEQ]))
    extras = struct.pack(">II", draw(flags), draw(exptimes))
    return (op, draw(keys), extras, draw(values), draw(opaques), draw(cases))


@st.composite
def concat(draw):
    op = draw(st.sampled_from([b.APPEND, b.PREPEND, b.APPENDQ, b.PREPENDQ]))
    return (op, draw(keys), b"", draw(values), draw(opaques), draw(cases))


@st.composite
def retrieval(draw):
    op = draw(st.sampled_from([b.GET, b.GETQ, b.GETK, b.GETKQ]))
    return (op, draw(keys), b"", b"", draw(opaques), 0)


@st.composite
def touching(draw):
    op = draw(st.sampled_from([b.TOUCH, b.GAT, b.GATQ, b.GATK, b.GATKQ]))
    return (op, draw(keys), struct.pack(">I", draw(exptimes)), b"", draw(opaques), 0)


@st.composite
def deleting(draw):
    op = draw(st.sampled_from([b.DELETE, b.DELETEQ]))
    return (op, draw(keys), b"", b"", draw(opaques), draw(cases))


@st.composite
def arith(draw):
    op = draw(st.sampled_from([b.INCREMENT, b.DECREMENT, b.INCREMENTQ, b.DECREMENTQ]))
    delta = draw(st.sampled_from([0, 1, 5, 2**64 - 1]))
    initial = draw(st.sampled_from([0, 7, 2**64 - 1]))
    expiration = draw(st.sampled_from([0, 1000, b.NO_CREATE]))
    return (op, draw(keys), struct.pack(">QQI", delta, initial, expiration), b"", draw(opaques), draw(cases))


@st.composite
def server(draw):
    kind = draw(st.integers(0, 7))
    opaque = draw(opaques)
    if kind == 0:
        return (b.NOOP, b"", b"", b"", opaque, 0)
    if kind == 1:
        return (b.VERSION, b"", b"", b"", opaque, 0)
    if kind == 2:
        return (
            draw(st.sampled_from([b.FLUSH, b.FLUSHQ])),
            b"",
            draw(st.sampled_from([b"", b"\0\0\0\0"])),
            b"",
            opaque,
            0,
        )
    if kind == 3:
        group = draw(
            st.sampled_from(
                [
                    b"",
                    b"settings",
                    b"items",
                    b"slabs",
                    b"reset",
                    b"bogus",
                    b"conns",
                    b"detail on",
                    b"detail off",
                    b"detail x",
                ]
            )
        )
        return (b.STAT, group, b"", b"", opaque, 0)
    if kind == 4:
        return (b.SASL_LIST_MECHS, b"", b"", b"", opaque, 0)
    if kind == 5:
        return (draw(st.sampled_from([b.SASL_AUTH, b.SASL_STEP])), b"PLAIN", b"", b"\0u\0p", opaque, 0)
    # Unknown opcodes (verbosity among them): memcached discards bodylen bytes after the extras
    # and key, so a filler as long as those follows, which both must discard.
    op = draw(st.sampled_from([b.VERBOSITY, 0x1F, 0x30, 0x44, 0xFF]))
    extras = draw(st.sampled_from([b"", b"\0\0\0\x01"]))
    key = draw(st.sampled_from([b"", b"k"]))
    return (op, key, extras, draw(st.sampled_from([b"", b"zz"])), opaque, 0, b"\0" * (len(extras) + len(key)))


@st.composite
def closing(draw):
    """A request that ends the connection (after an answer or not)."""
    kind = draw(st.integers(0, 6))
    opaque = draw(opaques)
    if kind == 0:
        return ("raw", b"\x81" + b"\0" * 23)  # bad magic
    if kind == 1:
        return (draw(st.sampled_from([b.QUIT, b.QUITQ])), b"", b"", b"", opaque, 0)
    if kind == 2:
        return (b.GET, b"k" * 251, b"", b"", opaque, 0)  # key too long
    if kind == 3:
        return (b.GET, b"k", b"\0\0\0\0", b"", opaque, 0)  # extras a get does not take
    if kind == 4:
        return (b.SET, b"k", b"\0\0\0\0", b"v", opaque, 0)  # 4 bytes of extras, not 8
    if kind == 5:
        return (
            "raw",
            struct.pack(">BBHBBHIIQ", 0x80, b.GET, 5, 0, 0, 0, 2, opaque, 0) + b"kkkkk",
        )  # key > body
    return (b.NOOP, b"", b"", b"x", opaque, 0)  # a body a noop does not take


one = st.one_of(storage(), concat(), retrieval(), touching(), deleting(), arith(), server())
#: A quiet batch: several quiet requests in one exchange, as clients pipeline multi-gets.
batch = st.lists(
    st.one_of(storage(), retrieval(), deleting(), arith()).filter(lambda r: r[0] in b.QUIET),
    min_size=2,
    max_size=6,
).map(lambda rs: ("batch", rs))
exchange = st.one_of(one, one, one, batch)
streams = st.tuples(st.lists(exchange, max_size=25), st.one_of(st.none(), closing()))


def build(req: tuple, cas: int) -> bytes:
    """The bytes of one generated exchange (without the SYNC_NOOP)."""
    if req[0] == "raw":
        return req[1]
    if req[0] == "batch":
        return b"".join(build(r, cas) for r in req[1])
    op, key, extras, value, opaque, want_cas = req[:6]
    filler = req[6] if len(req) > 6 else b""
    return b.request(op, key, extras, value, opaque, cas if want_cas == LAST else want_cas) + filler


def last_cas(reply: bytes, previous: int) -> int:
    from binproto import packets

    got, _rest = packets(reply)
    seen = [p.cas for p in got if p.cas]
    return seen[-1] if seen else previous


class Ours:
    """A session fed like a connection, each exchange split where hypothesis says, or at every
    byte boundary (``bytewise``)."""

    def __init__(self, backend: str, cuts, bytewise: bool = False) -> None:
        self.session = new_session(BACKENDS[backend](), ServerContext())  # native: the compiled one
        self.cuts = cuts
        self.bytewise = bytewise
        self.session.feed(b.request(b.FLUSH))  # as memcached's connection starts: binary

    def ask(self, data: bytes) -> tuple[bytes, bool]:
        data += SYNC_NOOP
        if self.bytewise:
            points = list(range(1, len(data)))
        else:
            drawn = self.cuts.draw(st.lists(st.integers(0, 2**16), max_size=4))
            points = sorted({c % (len(data) + 1) for c in drawn})
        out = []
        prev = 0
        for p in [*points, len(data)]:
            out.append(self.session.feed(data[prev:p]))
            prev = p
            while self.session.more:
                out.append(self.session.feed(b""))
        reply = b"".join(out)
        if self.session.closing:
            return reply, True
        return (reply if ends_with_sync(reply) else reply + b"<timeout>"), False


def run(side, stream) -> list:
    """Play ``stream`` against ``side``; return the normalised replies, exchange by exchange."""
    exchanges, end = stream
    names = CasNames()
    cas = 0
    rows = []
    for req in [*exchanges, *([end] if end is not None else [])]:
        reply, closed = side.ask(build(req, cas))
        cas = last_cas(reply, cas)
        rows.append((req[0] if isinstance(req[0], str) else hex(req[0]), normalise(reply, names), closed))
        if closed:
            break
    return rows


BACKEND_NAMES = [n for n in ("native", "python") if n in BACKENDS]


@pytest.mark.parametrize("backend", BACKEND_NAMES)
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(stream=streams, cuts=st.data())
def test_binary_streams_match_memcached(memcached_port, backend, stream, cuts):
    theirs = Conn(memcached_port)
    try:
        theirs.ask(b.request(b.FLUSH))
        expected = run(theirs, stream)
    finally:
        theirs.close()
    assert run(Ours(backend, cuts), stream) == expected
    assert run(Ours(backend, cuts, bytewise=True), stream) == expected


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_too_large_values_match_memcached(small_items_port, backend):
    """Values well over -I 2k: refused, discarded as they stream in, a set's old value dropped."""
    store = BACKENDS[backend](max_item_size=2048)
    ours = new_session(store, ServerContext(store))
    big = b"v" * 5000
    stream = b"".join(
        [
            b.request(b.SET, b"k", b"\0" * 8, b"old"),
            b.request(b.SET, b"k", b"\0" * 8, big, opaque=1),
            b.request(b.GET, b"k", opaque=2),
            b.request(b.SET, b"j", b"\0" * 8, b"old"),
            b.request(b.ADDQ, b"j", b"\0" * 8, big, opaque=3),
            b.request(b.APPEND, b"j", b"", big, opaque=4),
            b.request(b.GET, b"j", opaque=5),
        ]
    )
    theirs = Conn(small_items_port)
    try:
        theirs.ask(b.request(b.FLUSH))
        expected, _ = theirs.ask(stream)
    finally:
        theirs.close()
    got = b"".join(ours.feed(stream[i : i + 7]) for i in range(0, len(stream), 7)) + ours.feed(SYNC_NOOP)
    assert normalise(got, CasNames()) == normalise(expected, CasNames())
