"""The event-loop glue (server, connection) in-process, on uvloop and on asyncio, with a stand-in session.

These tests drive :class:`pycache_d.daemon.server.Server` directly so its bounds (backpressure, the
stall and unsent-bytes limits, max connections, shutdown) can be provoked with small numbers
and checked from inside. The real daemon, with the real session, is tested in test_server.py.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvloop

from pycache_d.daemon import server
from pycache_d.daemon.config import ConfigSource, load
from pycache_d.daemon.server import Server
from pycache_d.net import connection
from pycache_d.net.connection import TOO_MANY_CONNECTIONS
from pycache_d.protocol.session import REPLY_BUDGET
from pycache_d.store import BACKENDS

MiB = 1024 * 1024
BIG = 1 * MiB


class StandInSession:
    """A stand-in for the protocol session: ``ping`` -> ``pong``, ``big`` -> 1 MiB, ``quit``, ``boom``.

    Counts the requests it has answered so tests can see when the server stopped feeding it.
    """

    instances: list[StandInSession] = []
    budget = REPLY_BUDGET

    def __init__(self, store: Any, ctx: Any = None) -> None:
        self.store, self.ctx = store, ctx
        self.closing = False
        self.more = False
        self.buf = b""
        self.answered = 0
        StandInSession.instances.append(self)

    @property
    def commands(self) -> int:
        """Commands completed (what --idle-timeout counts from), as the real sessions have it."""
        return self.answered

    def feed(self, data: bytes) -> bytes:
        self.buf += data
        out: list[bytes] = []
        # Like the real session: stop once the reply passes the budget, and say so.
        while b"\n" in self.buf and not self.closing and sum(map(len, out)) < self.budget:
            line, self.buf = self.buf.split(b"\n", 1)
            line = line.rstrip(b"\r")
            self.answered += 1
            if line == b"ping":
                out.append(b"pong\r\n")
            elif line == b"big":
                out.append(b"B" * (BIG - 2) + b"\r\n")
            elif line == b"quit":
                self.closing = True
            elif line == b"boom":
                raise RuntimeError("stand-in session failure")
            else:
                out.append(b"ERROR\r\n")
        self.more = b"\n" in self.buf and not self.closing
        return b"".join(out)


SERVERS: list[Server] = []
WRITERS: list[asyncio.StreamWriter] = []

LOOPS = [pytest.param(uvloop.new_event_loop, id="uvloop"), pytest.param(asyncio.new_event_loop, id="asyncio")]


@pytest.fixture(params=LOOPS)
def run(request: pytest.FixtureRequest) -> Iterator[Callable[[Callable[[], Awaitable[None]]], None]]:
    """Run an async test body on each event loop."""
    logger = logging.getLogger("pycache_d")
    level = logger.level  # a Server sets it from its verbosity: give it back to other tests

    def runner(body: Callable[[], Awaitable[None]]) -> None:
        StandInSession.instances.clear()
        SERVERS.clear()
        WRITERS.clear()

        async def guarded() -> None:
            try:
                await asyncio.wait_for(body(), 30)
            finally:  # also when the body failed: an open server makes the loop unclosable
                for w in WRITERS:
                    w.close()
                for srv in SERVERS:
                    await shut(srv)

        with asyncio.Runner(loop_factory=request.param) as r:
            r.run(guarded())

    yield runner
    logger.setLevel(level)


async def started(*argv: str, source: ConfigSource | None = None) -> Server:
    _, cfg = load(["-p", "0", "-l", "127.0.0.1", "--backend", "python", *argv], {})
    store = BACKENDS["python"](cfg.memory_limit, max_item_size=cfg.max_item_size)
    srv = Server(cfg, store, source=source, session_factory=StandInSession)
    await srv.start()
    SERVERS.append(srv)
    return srv


async def connect(srv: Server) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(srv.bound[0].host, srv.bound[0].port)
    WRITERS.append(writer)
    return reader, writer


async def paused(srv: Server) -> None:
    """Wait until some client of ``srv`` is paused by backpressure."""
    await until(lambda: any(c.state() == "conn_mwrite" for c in srv.connections))


async def shut(srv: Server) -> None:
    if not srv._stopping.is_set():
        srv.stop()
        await srv.serve_until_stopped()


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def test_moves_bytes_and_closes_when_the_session_says(run: Any) -> None:
    async def body() -> None:
        srv = await started()
        r, w = await connect(srv)
        w.write(b"ping\r\nping\r\nquit\r\nping\r\n")
        assert await r.read() == b"pong\r\npong\r\n"  # then EOF: nothing after quit
        await until(lambda: not srv.connections)
        assert srv.total_connections == 1

    run(body)


def test_client_that_does_not_read_is_paused_and_others_are_served(run: Any) -> None:
    async def body() -> None:
        srv = await started()
        r1, w1 = await connect(srv)
        w1.write(b"big\r\n" * 200)  # 200 MiB of replies, never read
        await paused(srv)
        hog = StandInSession.instances[0]
        # Reading and feeding stopped long before all 200 requests were answered.
        await asyncio.sleep(0.2)
        assert hog.answered < 100
        r2, w2 = await connect(srv)
        for _ in range(3):
            w2.write(b"ping\r\n")
            assert await asyncio.wait_for(r2.readline(), 2) == b"pong\r\n"
        # The hog's unsent replies stay bounded.
        hog_conn = next(c for c in srv.connections if c.session is hog)
        assert hog_conn.transport.get_write_buffer_size() <= connection.MAX_UNSENT

    run(body)


def test_paused_client_gets_every_reply_in_order_once_it_reads(run: Any) -> None:
    async def body() -> None:
        srv = await started()
        r, w = await connect(srv)
        w.write(b"big\r\n" * 20 + b"ping\r\n")
        await paused(srv)
        data = await r.readexactly(20 * BIG + 6)
        assert data.count(b"\r\n") == 21
        assert data.endswith(b"B\r\npong\r\n")

    run(body)


def test_stalled_client_is_disconnected(run: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connection, "STALL_TIMEOUT", 0.2)

    async def body() -> None:
        srv = await started()
        _r, w = await connect(srv)
        w.write(b"big\r\n" * 50)
        _r2, w2 = await connect(srv)
        w2.write(b"big\r\n" * 12 + b"quit\r\n")  # closing, but its replies can never be flushed
        await paused(srv)
        await until(lambda: not srv.connections, timeout=3)

    run(body)


def test_client_over_the_unsent_bound_is_disconnected(run: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connection, "MAX_UNSENT", 4 * MiB)
    monkeypatch.setattr(StandInSession, "budget", 1 << 40)  # a session that answers it all at once

    async def body() -> None:
        srv = await started()
        r, w = await connect(srv)
        w.write(b"big\r\n" * 64)  # the first slice alone (MAX_LINES gets) passes the bound
        await until(lambda: not srv.connections, timeout=5)
        received = 0
        try:
            while chunk := await r.read(1 << 20):
                received += len(chunk)
        except ConnectionError:
            pass
        assert received < 64 * BIG

    run(body)


def test_max_connections_refuses_like_memcached(run: Any) -> None:
    async def body() -> None:
        srv = await started("-c", "2")
        _, first = await connect(srv)
        await connect(srv)
        await until(lambda: len(srv.connections) == 2)
        r3, _ = await connect(srv)
        assert await r3.read() == TOO_MANY_CONNECTIONS
        assert srv.rejected_connections == 1
        assert srv.total_connections == 2
        first.close()
        await until(lambda: len(srv.connections) == 1)
        r4, w4 = await connect(srv)
        w4.write(b"ping\r\n")
        assert await r4.readline() == b"pong\r\n"

    run(body)


def test_session_failure_is_contained(run: Any, caplog: pytest.LogCaptureFixture) -> None:
    async def body() -> None:
        srv = await started()
        r, w = await connect(srv)
        w.write(b"ping\r\n")
        assert await r.readline() == b"pong\r\n"
        w.write(b"boom\r\nping\r\n")  # the failing read's replies are lost; the client is told
        assert await r.read() == b"SERVER_ERROR internal error\r\n"
        r2, w2 = await connect(srv)
        w2.write(b"ping\r\n")
        assert await r2.readline() == b"pong\r\n"

    run(body)
    assert "session failed" in caplog.text


def test_shutdown_finishes_in_flight_replies_then_closes(run: Any) -> None:
    async def body() -> None:
        srv = await started()
        r, w = await connect(srv)
        w.write(b"big\r\n" * 8 + b"ping\r\n")
        await paused(srv)
        srv.stop()
        stopping = asyncio.ensure_future(srv.serve_until_stopped())
        await asyncio.sleep(0.05)
        # No new clients once stopping...
        with pytest.raises(OSError):
            await connect(srv)
        # ...but every reply already asked for arrives, then EOF.
        data = await r.read(-1)
        assert len(data) == 8 * BIG + 6
        assert data.endswith(b"pong\r\n")
        await stopping

    run(body)


def test_reclaimer_frees_expired_items_in_the_background(run: Any) -> None:
    async def body() -> None:
        srv = await started()
        for i in range(3 * server.RECLAIM_SLICE):
            srv.store.set(b"k%d" % i, b"v", 0, -1)  # already expired
        srv.store.set(b"live", b"v")
        await until(lambda: len(srv.store) == 1, timeout=3)
        assert srv.store.stats()["reclaimed"] == 3 * server.RECLAIM_SLICE

    run(body)


def test_reclaiming_many_items_never_stalls_the_loop(run: Any) -> None:
    async def body() -> None:
        srv = await started()
        n = 150 * server.RECLAIM_SLICE  # about 0.3 s of work if done in one go
        for i in range(n):
            srv.store.set(b"k%d" % i, b"v", 0, -1)
        # Between two turns of this task the loop turned once: what was freed meanwhile is
        # what one turn may cost (counted, not timed: a busy machine stretches any time).
        most, turns = 0, 0
        before = srv.store.stats()["reclaimed"]
        while len(srv.store):
            await asyncio.sleep(0)
            now = srv.store.stats()["reclaimed"]
            most, before, turns = max(most, now - before), now, turns + 1
        assert srv.store.stats()["reclaimed"] == n
        assert 0 < most <= server.RECLAIM_SLICE  # one slice at a time: the loop keeps turning
        assert turns >= n // server.RECLAIM_SLICE

    run(body)


def test_context_reports_the_daemon(run: Any) -> None:
    async def body() -> None:
        srv = await started("-c", "7", "-m", "5")
        r, w = await connect(srv)
        w.write(b"ping\r\n")
        await r.readline()
        settings = dict(srv.ctx.settings_stats())
        assert settings["maxconns"] == 7
        assert settings["maxbytes"] == 5 * MiB
        assert settings["tcpport"] == srv.bound[0].port
        assert settings["backend"] == "python"
        general = dict(srv.ctx.general_stats())
        assert (general["curr_connections"], general["total_connections"]) == (1, 1)
        conns = dict(srv.ctx.conns_stats())
        states = [v for k, v in conns.items() if k.endswith(":state")]
        assert sorted(states) == ["conn_listening", "conn_parse_cmd"]
        assert any(str(v).startswith("tcp:127.0.0.1:") for k, v in conns.items() if k.endswith(":addr"))

    run(body)


def test_verbosity_sets_the_log_level(run: Any) -> None:
    async def body() -> None:
        srv = await started()
        logger = logging.getLogger("pycache_d")
        srv.ctx.verbosity = 2
        assert logger.getEffectiveLevel() == logging.DEBUG
        assert dict(srv.ctx.settings_stats())["verbosity"] == 2
        srv.ctx.verbosity = 0
        assert not logger.isEnabledFor(logging.INFO)

    run(body)


def test_reload_applies_live_settings_and_survives_a_bad_file(
    run: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "c.toml"
    path.write_text("memory_limit = 8\nmax_connections = 5\n")
    source, _ = load(["--config", str(path)], {})

    async def body() -> None:
        srv = await started("--config", str(path), source=source)
        assert srv.store.max_bytes == 8 * MiB
        path.write_text("memory_limit = 16\nmax_connections = 6\nmax_items = 3\nport = 1\nunix_mode = 0o7\n")
        srv.reload()
        assert (srv.store.max_bytes, srv.max_connections, srv.store.max_items) == (16 * MiB, 6, 3)
        # Settings that need a restart are reported, not pretended.
        assert (srv.config.port, srv.config.unix_mode) == (0, 0o700)
        assert dict(srv.ctx.settings_stats())["umask"] == "700"
        path.write_text("memory_limit = 'lots'\n")
        srv.reload()
        assert srv.store.max_bytes == 16 * MiB

    caplog.set_level(logging.INFO, logger="pycache_d")
    run(body)
    assert "memory_limit 8m -> 16m" in caplog.text
    assert "port changed" in caplog.text
    assert "reload failed, keeping the current settings" in caplog.text


def test_plain_asyncio_when_uvloop_is_missing(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from pycache_d.daemon import main as main_module

    monkeypatch.setitem(sys.modules, "uvloop", None)  # makes ``import uvloop`` fail
    factory, name = main_module._loop_factory()
    assert (factory, name) == (asyncio.new_event_loop, "asyncio")
    assert "uvloop is not installed" in caplog.text
