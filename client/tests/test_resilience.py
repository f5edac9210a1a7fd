"""Failures: refused and silent servers, restarts, retries, ejection, pool bounds, unix sockets."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from daemon_procs import Daemon, DaemonUnavailable, free_port, note_fallback, start_unix, wait_for_port

from pycache_client import (
    AsyncClient,
    CacheConnectionError,
    CacheTimeoutError,
    Client,
    PoolExhaustedError,
)
from pycache_client.aiopool import AsyncConnection
from pycache_client.hashring import HashRing


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A TCP port that accepts connections (kernel backlog) but never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        yield f"127.0.0.1:{s.getsockname()[1]}"


def scripted_server(replies: list[bytes | None]) -> str:
    """Serve one connection per entry: read a request, then send the bytes (None: just close)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)

    def serve() -> None:
        with srv:
            for reply in replies:
                conn, _ = srv.accept()
                with conn:
                    conn.recv(65536)
                    if reply is not None:
                        conn.sendall(reply)
                        conn.recv(65536)  # wait until the client is done with it

    threading.Thread(target=serve, daemon=True).start()
    return f"127.0.0.1:{srv.getsockname()[1]}"


def test_connection_refused_is_a_connection_error() -> None:
    address = f"127.0.0.1:{free_port()}"
    with Client(address) as c, pytest.raises(CacheConnectionError, match=address):
        c.get("k")

    async def main() -> None:
        async with AsyncClient(address) as ac:
            with pytest.raises(CacheConnectionError, match="cannot connect"):
                await ac.get("k")

    asyncio.run(main())


def test_silent_server_times_out_within_the_timeout(silent_server: str) -> None:
    with Client(silent_server, timeout=0.3) as c:
        t0 = time.monotonic()
        with pytest.raises(CacheTimeoutError):
            c.get("k")
        assert time.monotonic() - t0 < 1.0

    async def main() -> float:
        async with AsyncClient(silent_server, timeout=0.3) as ac:
            t0 = time.monotonic()
            with pytest.raises(TimeoutError):  # CacheTimeoutError is also a TimeoutError
                await ac.set("k", "v")
            return time.monotonic() - t0

    assert asyncio.run(main()) < 1.0


@pytest.fixture
def unconnectable_server() -> Iterator[str]:
    """A loopback port whose accept queue is full, so a new connect hangs until it times out."""
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(0)
        address = srv.getsockname()
        fillers = []
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(address)
            fillers.append(filler)
        time.sleep(0.05)
        yield f"127.0.0.1:{address[1]}"
        for filler in fillers:
            filler.close()


def test_connect_timeout(unconnectable_server: str) -> None:
    with Client(unconnectable_server, connect_timeout=0.3) as c:
        t0 = time.monotonic()
        with pytest.raises(CacheTimeoutError, match="timed out connecting"):
            c.get("k")
        assert time.monotonic() - t0 < 1.0

    async def main() -> None:
        async with AsyncClient(unconnectable_server, connect_timeout=0.3) as ac:
            with pytest.raises(CacheTimeoutError, match="timed out connecting"):
                await ac.get("k")

    t0 = time.monotonic()
    asyncio.run(main())
    assert time.monotonic() - t0 < 1.0


def test_blocking_pool_exhausted_when_every_connection_is_busy(silent_server: str) -> None:
    with Client(silent_server, timeout=0.5, max_pool_size=1, pool_timeout=0.1) as c:
        errors: list[BaseException] = []

        def get() -> None:
            try:
                c.get("a")
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=get) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(type(e).__name__ for e in errors) == ["CacheTimeoutError", "PoolExhaustedError"]


def test_async_requests_queue_on_a_pipelined_connection(silent_server: str) -> None:
    async def main() -> tuple[list[BaseException | None], int]:
        async with AsyncClient(silent_server, timeout=0.3, max_pool_size=1) as ac:
            results = await asyncio.gather(*(ac.get(f"k{i}") for i in range(5)), return_exceptions=True)
            return [r if isinstance(r, BaseException) else None for r in results], ac.pool(
                silent_server
            ).opened

    results, opened = asyncio.run(main())
    # All five shared the pool's one connection; its timeout failed every request on it.
    assert opened == 1
    assert [type(r) for r in results] == [CacheTimeoutError] * 5


def test_reads_are_retried_writes_are_not() -> None:
    # The first connection is closed without a reply, the second answers.
    address = scripted_server([None, b"END\r\n"])
    with Client(address, retries=1) as c:
        assert c.get("k", "miss") == "miss"
    address = scripted_server([None, b"STORED\r\n"])
    with Client(address, retries=1) as c, pytest.raises(CacheConnectionError, match="closed"):
        c.set("k", "v")
    address = scripted_server([None, b"END\r\n"])
    with Client(address, retries=0) as c, pytest.raises(CacheConnectionError):
        c.get("k")


def test_reconnects_after_daemon_restart(start: Callable[..., Daemon]) -> None:
    first = start()
    port = first.port
    with Client(first.address, retries=1) as c:
        c.set("k", "v1")
        assert c.get("k") == "v1"
        first.stop()
        with pytest.raises(CacheConnectionError):
            c.set("k", "v2")
        second = start(port=port)
        assert c.get("k") is None  # a new, empty daemon: the stale connection was replaced
        assert c.set("k", "v3") is True
        assert c.get("k") == "v3"
        assert second.proc.poll() is None

    async def main() -> None:
        async with AsyncClient(second.address) as ac:
            assert await ac.get("k") == "v3"
            second.stop()
            await asyncio.sleep(0.1)
            with pytest.raises(CacheConnectionError):
                await ac.get("k")
            third = start(port=port)
            assert third.port == port
            assert await ac.get("k") is None
            assert await ac.set("k", 1) is True

    asyncio.run(main())


def test_several_servers_shard_by_ketama(start: Callable[..., Daemon]) -> None:
    daemons = [start(), start(), start()]
    names = [d.address for d in daemons]
    ring = HashRing((n, n, 1) for n in names)
    keys = [f"key{i}" for i in range(300)]
    with Client(names) as c:
        assert c.set_many({k: k for k in keys}) == []
        assert c.get_many(keys) == {k: k for k in keys}
        assert set(c.version()) == set(names)
    for d in daemons:
        with Client(d.address) as single:
            mine = [k for k in keys if ring.get(k.encode()) == d.address]
            assert 50 < len(mine) < 150
            assert single.get_many(keys) == {k: k for k in mine}


def test_dead_server_is_ejected_and_its_keys_remapped(start: Callable[..., Daemon]) -> None:
    live = [start(), start()]
    dead = f"127.0.0.1:{free_port()}"
    keys = [f"key{i}" for i in range(200)]
    with Client([live[0].address, dead, live[1].address], dead_timeout=60) as c:
        with pytest.raises(CacheConnectionError):
            c.set_many({k: k for k in keys})  # the keys owned by the dead server fail once
        assert dead not in [a.name for a in c.servers.live()]
        assert c.set_many({k: k for k in keys}) == []
        assert c.get_many(keys) == {k: k for k in keys}


def test_ejected_server_comes_back_after_dead_timeout(start: Callable[..., Daemon]) -> None:
    a = start()
    port = free_port()
    with Client([a.address, f"127.0.0.1:{port}"], dead_timeout=0.3, retries=1) as c:
        keys = [f"k{i}" for i in range(100)]
        c.get_many(keys)  # the failure ejects the dead server; the retry goes to the live one
        assert len(c.servers.live()) == 1
        b = start(port=port)
        time.sleep(0.35)
        assert len(c.servers.live()) == 2
        assert c.set_many({k: 1 for k in keys}) == []
        with Client(b.address) as only_b:
            assert only_b.get_many(keys)  # some keys went back to the revived server


def test_async_client_under_load_shares_a_bounded_pool(daemon: Daemon) -> None:
    tasks, ops_per_task, pool_size = 300, 20, 8

    async def worker(ac: AsyncClient, n: int) -> int:
        ok = 0
        for i in range(ops_per_task):
            key = f"load:{n}:{i % 5}"
            await ac.set(key, {"n": n, "i": i})
            ok += (await ac.get(key)) == {"n": n, "i": i}
            ok += (await ac.incr(f"load:counter:{n % 10}")) is None or True
        return ok

    async def main() -> tuple[list[int], int, int]:
        async with AsyncClient(daemon.address, max_pool_size=pool_size, timeout=10) as ac:
            await ac.set_many({f"load:counter:{i}": 0 for i in range(10)})
            results = await asyncio.gather(*(worker(ac, n) for n in range(tasks)))
            counters = await ac.get_many([f"load:counter:{i}" for i in range(10)])
            pool = ac.pool(daemon.address)
            assert pool.size <= pool_size
            return results, sum(counters.values()), pool.opened

    results, total_incr, opened = asyncio.run(main())
    assert results == [2 * ops_per_task] * tasks
    assert total_incr == tasks * ops_per_task  # no lost increments under concurrency
    assert 1 <= opened <= pool_size


def test_waiting_for_another_tasks_connect_is_waiting_for_the_pool(
    start: Callable[..., Daemon], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Connections open one at a time: a task that waits for the ones before it has not timed out
    connecting (300 tasks, 3 connections, each connect 0.6 s of a 1 s connect_timeout)."""
    d = start()
    real_open = AsyncConnection.open
    opened: list[AsyncConnection] = []

    async def slow_open(address: Any, connect_timeout: float) -> AsyncConnection:
        await asyncio.sleep(0.6)  # a slow network, well within connect_timeout (not timed here)
        conn = await real_open(address, connect_timeout)
        opened.append(conn)
        return conn

    monkeypatch.setattr(AsyncConnection, "open", staticmethod(slow_open))
    tasks, pool_size = 300, 3

    async def main() -> list[Any]:
        async with AsyncClient(d.address, max_pool_size=pool_size, connect_timeout=1.0, timeout=60) as ac:
            # The daemon holds its replies, so requests stay in flight and the pool must open
            # every connection it may: the tasks beyond the first 32 wait for the second one.
            os.kill(d.proc.pid, signal.SIGSTOP)
            try:
                running = [asyncio.ensure_future(ac.get(f"k{i}")) for i in range(tasks)]
                deadline = time.monotonic() + 60
                while len(opened) < pool_size and not any(t.done() for t in running):
                    assert time.monotonic() < deadline, f"only {len(opened)} connections opened"
                    await asyncio.sleep(0.05)
            finally:
                os.kill(d.proc.pid, signal.SIGCONT)
            return await asyncio.gather(*running)

    assert asyncio.run(main()) == [None] * tasks
    assert len(opened) == pool_size


def test_a_connection_never_opened_in_pool_timeout_is_pool_exhaustion(
    silent_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = asyncio.Event()  # the first connect never finishes

    async def stuck_open(address: Any, connect_timeout: float) -> AsyncConnection:
        await gate.wait()
        raise AssertionError("unreachable")

    monkeypatch.setattr(AsyncConnection, "open", staticmethod(stuck_open))

    async def main() -> list[Any]:
        async with AsyncClient(silent_server, connect_timeout=1.0, timeout=5.0, pool_timeout=0.2) as ac:
            first = asyncio.ensure_future(ac.get("a"))
            await asyncio.sleep(0)  # the first task holds the pool's connect
            waiter = await asyncio.gather(ac.get("b"), return_exceptions=True)
            first.cancel()
            return waiter

    [error] = asyncio.run(main())
    assert isinstance(error, PoolExhaustedError), error
    assert "waited 0.2s for a connection to" in str(error)


def test_threads_share_a_blocking_client(daemon: Daemon) -> None:
    errors: list[BaseException] = []
    with Client(daemon.address, max_pool_size=3, timeout=5) as c:
        c.set("counter", 0)

        def work() -> None:
            try:
                for _ in range(200):
                    c.incr("counter")
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert c.get("counter") == 1200
        assert c.pool(daemon.address).idle <= 3


def test_unix_socket_address() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "cache.sock")
        d, reason = start_unix(path)
        note_fallback(reason)
        try:
            with Client(f"unix:{path}") as c:
                assert c.set("u", "unix") is True
                assert c.get("u") == "unix"
                assert list(c.version()) == [f"unix:{path}"]

            async def main() -> Any:
                async with AsyncClient(f"unix:{path}") as ac:
                    return await ac.get("u")

            assert asyncio.run(main()) == "unix"
        finally:
            d.stop()


def test_wait_for_port_reports_dead_process() -> None:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    proc.wait()
    with pytest.raises(DaemonUnavailable, match="status 3"):
        wait_for_port(free_port(), 1.0, proc)


def test_async_client_on_uvloop(daemon: Daemon) -> None:
    # uvicorn runs the HTTP API on uvloop when it is installed; its transports differ from asyncio's.
    uvloop = pytest.importorskip("uvloop")

    async def main() -> Any:
        async with AsyncClient(daemon.address) as ac:
            await ac.set_many({f"u{i}": i for i in range(50)})
            results = await asyncio.gather(*(ac.get(f"u{i}") for i in range(50)))
            return results, ac.pool(daemon.address).opened

    results, opened = uvloop.run(main())
    # 50 requests in flight at once, 32 per connection before another opens: two connections.
    assert results == list(range(50)) and opened == 2


def test_cancelled_request_does_not_desync_the_pipeline(daemon: Daemon) -> None:
    async def main() -> tuple[Any, Any, int]:
        async with AsyncClient(daemon.address) as ac:
            await ac.set_many({"a": "A", "b": "B"})
            task = asyncio.create_task(ac.get("a"))
            await asyncio.sleep(0)  # the request is queued on the connection...
            task.cancel()  # ...and abandoned before its reply arrives
            with pytest.raises(asyncio.CancelledError):
                await task
            # The reply to the cancelled get is parsed and dropped, so this one gets its own.
            b = await ac.get("b")
            a = await ac.get("a")
            return a, b, ac.pool(daemon.address).opened

    assert asyncio.run(main()) == ("A", "B", 1)
