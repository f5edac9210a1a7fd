"""Fixtures and helpers of the session tests (tests/conftest.py belongs to the store's tests).

Import the fixtures into a test module to use them: ``from session_fixtures import session``.
"""

from __future__ import annotations

import pytest

from pycache_d.protocol.context import ServerContext
from pycache_d.protocol.session import Session


@pytest.fixture
def ctx(store, clock) -> ServerContext:
    """A server context for conftest's ``store`` (each backend in turn), on the same fake clock."""
    return ServerContext(store, clock=clock)


@pytest.fixture
def session(store, ctx) -> Session:
    """A session over the current backend's store."""
    return Session(store, ctx)


@pytest.fixture
def make_session(store, ctx):
    """Build further sessions on the same store and context (another client of one server)."""
    return lambda: Session(store, ctx)


def feed_split(s: Session, data: bytes, sizes: list[int]) -> bytes:
    """Feed ``data`` to ``s`` in pieces of the given sizes (the rest in one piece)."""
    out = []
    pos = 0
    for size in [*sizes, len(data)]:
        out.append(s.feed(data[pos : pos + size]))
        while s.more:  # what a connection does once the reply went out
            out.append(s.feed(b""))
        pos += size
    return b"".join(out)
