"""What an idle connection holds: no buffer in its session, no dict, nothing cached by its transport.

Structural properties, not RSS figures (benchmarks/idle_connections.py measures those, beside
memcached's): after every kind of traffic, once a client is idle again, its session's buffers
are given back and the objects that stay per connection are of a fixed, small size.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Iterator

import pytest
import uvloop

from pycache_d.daemon.config import load
from pycache_d.daemon.server import Server
from pycache_d.net import streams
from pycache_d.protocol.session import REPLY_BUDGET, Session
from pycache_d.store import BACKENDS, NO_EXTENSIONS

pytestmark = pytest.mark.asan

MiB = 1024 * 1024
BIG = b"v" * (MiB - 1024)


def traffic() -> Iterator[bytes]:
    """Feeds that exercise every buffer: split commands, a large value in pieces, a cut multi-get,
    lines the compiled session hands to the Python one, and a partial line completed later."""
    yield b"set big 0 0 %d\r\n" % len(BIG)
    for i in range(0, len(BIG), 100_000):  # a value that arrives in many reads
        yield BIG[i : i + 100_000]
    yield b"\r\nset k 0 0 5\r\nhel"
    yield b"lo\r\nget k big\r\n"
    yield b"get" + b" big" * (2 * REPLY_BUDGET // len(BIG) + 2) + b"\r\n"  # cut at the budget
    yield b"stats settings\r\nmn\r\nms m 2 T0\r\nhi\r\nmg m v\r\n"  # the Python session's
    yield b"delete k\r\nincr n 1\r\nget nothing\r\n"


def run(session: object) -> None:
    for chunk in traffic():
        session.feed(chunk)  # type: ignore[attr-defined]
        while session.more:  # type: ignore[attr-defined]
            session.feed(b"")  # type: ignore[attr-defined]


@pytest.mark.skipif(NO_EXTENSIONS or "native" not in BACKENDS, reason="compiled session not built")
def test_an_idle_compiled_session_holds_no_buffer() -> None:
    from pycache_d.protocol._csession import NativeSession

    store = BACKENDS["native"](64 * MiB, max_item_size=2 * MiB)
    fresh = NativeSession(store)
    assert fresh.buffered == 0
    session = NativeSession(store)
    run(session)
    assert session.idle and not session.more
    assert session.buffered == 0  # input and reply buffers given back
    # The object itself is a fixed C struct, however much it answered.
    assert sys.getsizeof(session) == sys.getsizeof(fresh) < 320
    # Another session replies in the shared buffer: nobody kept it borrowed.
    other = NativeSession(store)
    assert other.feed(b"get k\r\nget big\r\n").endswith(b"END\r\n")
    assert other.buffered == 0


@pytest.mark.parametrize(
    "backend",
    [
        "python",
        pytest.param(
            "native", marks=pytest.mark.skipif("native" not in BACKENDS, reason="native backend not built")
        ),
    ],
)
def test_an_idle_python_session_keeps_an_empty_buffer(backend: str) -> None:
    session = Session(BACKENDS[backend](64 * MiB, max_item_size=2 * MiB))
    run(session)
    assert session.idle
    assert sys.getsizeof(session._buf) == sys.getsizeof(bytearray())


@pytest.fixture(autouse=True)
def _log_level() -> Iterator[None]:
    logger = logging.getLogger("pycache_d")
    level = logger.level  # a Server sets it from its verbosity: give it back to other tests
    yield
    logger.setLevel(level)


LOOPS = [pytest.param(uvloop.new_event_loop, id="uvloop"), pytest.param(asyncio.new_event_loop, id="asyncio")]


@pytest.mark.parametrize("loop_factory", LOOPS)
@pytest.mark.parametrize(
    "backend",
    [
        "python",
        pytest.param(
            "native", marks=pytest.mark.skipif("native" not in BACKENDS, reason="native backend not built")
        ),
    ],
)
def test_an_idle_connection_is_a_few_fixed_size_objects(loop_factory: object, backend: str) -> None:
    async def body() -> None:
        _, cfg = load(["-p", "0", "-l", "127.0.0.1", "--backend", backend, "-I", "2m"], {})
        store = BACKENDS[backend](cfg.memory_limit, max_item_size=cfg.max_item_size)
        srv = Server(cfg, store)
        await srv.start()
        try:
            reader, writer = await asyncio.open_connection(
                srv.bound[0].host, srv.bound[0].port, limit=1 << 26
            )
            for chunk in traffic():
                writer.write(chunk)
            writer.write(b"mn\r\n")
            await writer.drain()
            await asyncio.wait_for(reader.readuntil(b"MN\r\n"), 30)  # everything answered
            (conn,) = srv.connections
            if not NO_EXTENSIONS:
                # Its fields are C ones (and a few slots): no per-instance dict.
                assert not hasattr(conn, "__dict__")
                assert sys.getsizeof(conn) < 400
            if streams.Poller is not None and os.environ.get("PYCACHE_D_STREAMS") != "uvloop":
                # The compiled transport caches nothing of get_extra_info, holds nothing unsent.
                assert type(conn.transport).__name__ == "StreamTransport"
                assert sys.getsizeof(conn.transport) < 200
                assert conn.transport.get_write_buffer_size() == 0
            if type(conn.session).__name__ == "NativeSession":
                assert conn.session.buffered == 0
            else:
                assert sys.getsizeof(conn.session._buf) == sys.getsizeof(bytearray())
            writer.close()
        finally:
            srv.stop()
            await srv.serve_until_stopped()

    with asyncio.Runner(loop_factory=loop_factory) as runner:  # type: ignore[arg-type]
        runner.run(body())
