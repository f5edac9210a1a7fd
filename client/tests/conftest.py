"""Fixtures: a real daemon per backend (pycache-d native and python, else memcached) and clients."""

from __future__ import annotations

import asyncio
import inspect
import sys
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from daemon_procs import FALLBACKS, Daemon, note_fallback, start_daemon  # noqa: E402

from pycache_client import AsyncClient, Client  # noqa: E402

BACKENDS = ["native", "python"]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FALLBACKS:
        terminalreporter.section("daemon fallbacks")
        for reason in FALLBACKS:
            terminalreporter.write_line(reason)


@pytest.fixture(scope="session", params=BACKENDS)
def daemon(request: pytest.FixtureRequest) -> Iterator[Daemon]:
    """A daemon shared by a session, one per backend; tests flush it through ``client``."""
    proc, reason = start_daemon(request.param)
    note_fallback(reason)
    yield proc
    proc.stop()


@pytest.fixture
def start(request: pytest.FixtureRequest) -> Iterator[Callable[..., Daemon]]:
    """Start extra daemons for one test (own options, to kill or restart); stopped afterwards."""
    started: list[Daemon] = []

    def _start(backend: str = "python", extra: list[str] | None = None, port: int = 0) -> Daemon:
        proc, reason = start_daemon(backend, extra, port)
        note_fallback(reason)
        started.append(proc)
        return proc

    yield _start
    for proc in started:
        proc.stop()


@pytest.fixture
def client(daemon: Daemon) -> Iterator[Client]:
    """A blocking client on the session daemon, which it flushes first."""
    with Client(daemon.address) as c:
        c.flush_all()
        yield c


class AsyncAdapter:
    """Run an AsyncClient's coroutines on a private loop, so one test body covers both clients."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client
        self._loop = asyncio.new_event_loop()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not inspect.iscoroutinefunction(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._loop.run_until_complete(attr(*args, **kwargs))

        return call

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return self._loop.run_until_complete(coro)

    def shutdown(self) -> None:
        self._loop.run_until_complete(self._client.close())
        self._loop.close()


@pytest.fixture(params=["sync", "async"])
def any_client(request: pytest.FixtureRequest, daemon: Daemon) -> Iterator[Any]:
    """The blocking client and the asyncio one behind the same blocking calls."""
    if request.param == "sync":
        with Client(daemon.address) as c:
            c.flush_all()
            yield c
    else:
        adapter = AsyncAdapter(AsyncClient(daemon.address))
        adapter.flush_all()
        try:
            yield adapter
        finally:
            adapter.shutdown()
