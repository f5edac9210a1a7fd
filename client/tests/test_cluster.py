"""Scaling out in the client: three real daemons sharded by pycache-client's ketama ring.

The same checks as the daemon's twemproxy test (tests/test_cluster.py), with the client library
doing the sharding: 10,000 keys written and read back, every node holding its share; one node
stopped, ejected at its first failure while the others go on serving; the node back after
``dead_timeout`` and its keys routed to it again. Each test runs on both daemon backends and with
the blocking and the asyncio client.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import BACKENDS, AsyncAdapter
from daemon_procs import Daemon

from pycache_client import AsyncClient, CacheConnectionError, Client

KEYS = 10_000
#: A node's least share: a third on average; 160 ketama points per node keep it near that.
MIN_SHARE = 0.20

Start = Callable[..., Daemon]
MakeClient = Callable[..., Any]


def item(i: int) -> tuple[str, str]:
    """Return key ``i`` and its value (lengths vary)."""
    key = f"cluster:{i}"
    return key, f"{key}={i * 7919}" * (1 + i % 7)


VALUES = dict(item(i) for i in range(KEYS))
KEY_LIST = list(VALUES)
GENEROUS = 30.0  # seconds: a bound on a wait that a healthy daemon answers in milliseconds


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each pycache-d backend in turn (memcached when pycache-d cannot start; conftest says why)."""
    return str(request.param)


@pytest.fixture
def nodes(backend: str, start: Start) -> list[Daemon]:
    """Three daemons on one backend."""
    return [start(backend) for _ in range(3)]


@pytest.fixture(params=["sync", "async"])
def make_client(request: pytest.FixtureRequest) -> Iterator[MakeClient]:
    """Build a client over several servers: the blocking one, or the asyncio one run to completion."""
    made: list[Any] = []

    def make(servers: list[str], **options: Any) -> Any:
        # A stopped node refuses connections at once, so the tests need no short timeout; a
        # generous one keeps a busy machine (a daemon not scheduled for a second) from failing them.
        options.setdefault("timeout", GENEROUS)
        options.setdefault("connect_timeout", GENEROUS)
        c = (
            Client(servers, **options)
            if request.param == "sync"
            else AsyncAdapter(AsyncClient(servers, **options))
        )
        made.append(c)
        return c

    yield make
    for c in made:
        if isinstance(c, Client):
            c.close()
        else:
            c.shutdown()


def held_by(node: Daemon, keys: list[str]) -> dict[str, Any]:
    """Ask one node directly which of ``keys`` it holds."""
    with Client(node.address, timeout=GENEROUS, connect_timeout=GENEROUS) as single:
        return single.get_many(keys)


def shares(nodes: list[Daemon], keys: list[str]) -> list[set[str]]:
    """Return the keys each node holds, checking every value and that no key is on two nodes."""
    held = []
    for node in nodes:
        found = held_by(node, keys)
        assert all(VALUES[k] == v for k, v in found.items())
        held.append(set(found))
    assert sum(len(h) for h in held) == len(set().union(*held))
    return held


def load(c: Any, nodes: list[Daemon]) -> list[set[str]]:
    """Write every key through the client and read it back; return which node holds which."""
    assert c.set_many(VALUES) == []
    assert c.get_many(KEY_LIST) == VALUES
    held = shares(nodes, KEY_LIST)
    assert set().union(*held) == set(KEY_LIST)
    return held


def test_keys_spread_over_every_node(nodes: list[Daemon], make_client: MakeClient) -> None:
    c = make_client([n.address for n in nodes])
    held = load(c, nodes)
    for node, h in zip(nodes, held, strict=True):
        assert len(h) >= MIN_SHARE * KEYS, [len(h) for h in held]
        # The ring the client routes by is the one it documents.
        assert {c.servers.server_for(k.encode()).name for k in h} == {node.address}
        assert c.stats()[node.address]["curr_items"] == str(len(h))


def test_a_stopped_node_is_ejected_and_the_others_keep_serving(
    nodes: list[Daemon], make_client: MakeClient
) -> None:
    # dead_timeout far beyond the test, so the node stays ejected throughout; one retry lets a
    # read that met the dead node succeed on the ring without it.
    c = make_client([n.address for n in nodes], dead_timeout=300, retries=1)
    held = load(c, nodes)
    dead, live = nodes[1], [nodes[0], nodes[2]]
    lost = sorted(held[1])
    dead.stop()

    # The first read to meet the stopped node ejects it; its retry is served by the others.
    assert c.get_many(KEY_LIST) == {k: VALUES[k] for k in held[0] | held[2]}
    assert [a.name for a in c.servers.live()] == [n.address for n in live]
    # From now on nothing reaches the dead node: writes too succeed, and its keys move.
    assert c.get(lost[0]) is None
    assert c.set_many({k: VALUES[k] for k in lost}) == []
    assert c.get_many(KEY_LIST) == VALUES
    moved = shares(live, lost)
    assert set().union(*moved) == set(lost) and all(moved), [len(m) for m in moved]


def test_a_node_back_after_dead_timeout_gets_its_keys_again(
    nodes: list[Daemon], make_client: MakeClient, start: Start, backend: str
) -> None:
    dead_timeout = 1.0
    c = make_client([n.address for n in nodes], dead_timeout=dead_timeout)
    held = load(c, nodes)
    key = sorted(held[1])[0]
    port = nodes[1].port
    nodes[1].stop()
    with pytest.raises(CacheConnectionError):
        c.set(key, VALUES[key])  # a write is not retried: the failure ejects the node and surfaces
    assert len(c.servers.live()) == 2
    back = start(backend, port=port)  # empty, on the same address

    # Once dead_timeout has passed the client tries it again (bounded wait).
    deadline = time.monotonic() + dead_timeout + 10
    while len(c.servers.live()) < 3:
        assert time.monotonic() < deadline, "the node was not taken back"
        time.sleep(0.05)
    assert c.set_many(VALUES) == []
    assert c.get_many(KEY_LIST) == VALUES
    # Exactly the keys it held before: the ring is the same again.
    assert set(held_by(back, KEY_LIST)) == held[1]
