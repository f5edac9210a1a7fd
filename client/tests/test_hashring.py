"""Ketama ring: distribution, remapping on add/remove, weights; ejection and revival."""

from __future__ import annotations

from collections import Counter

import pytest

from pycache_client import CacheConnectionError, HashRing
from pycache_client.address import parse_address
from pycache_client.servers import ServerSet

KEYS = [f"user:{i}".encode() for i in range(20000)]


def ring(names: list[str], weights: dict[str, int] | None = None) -> HashRing[str]:
    return HashRing((n, n, (weights or {}).get(n, 1)) for n in names)


def owners(r: HashRing[str]) -> list[str]:
    return [r.get(k) for k in KEYS]


def test_160_points_per_server() -> None:
    assert len(ring(["a:1"])) == 160
    assert len(ring(["a:1", "b:1"], {"b:1": 3})) == 160 * 4


def test_keys_spread_evenly() -> None:
    names = [f"10.0.0.{i}:11211" for i in range(1, 6)]
    counts = Counter(owners(ring(names)))
    assert set(counts) == set(names)
    share = len(KEYS) / len(names)
    for name in names:
        # 160 points per server keep every share within ~20% of the mean.
        assert 0.75 * share < counts[name] < 1.25 * share, counts


def test_weights_scale_the_share() -> None:
    counts = Counter(owners(ring(["a:1", "b:1"], {"b:1": 3})))
    assert 2.4 < counts["b:1"] / counts["a:1"] < 3.8, counts


def test_adding_a_server_moves_about_one_nth_and_only_to_it() -> None:
    names = [f"10.0.0.{i}:11211" for i in range(1, 5)]
    before = owners(ring(names))
    after = owners(ring([*names, "10.0.0.9:11211"]))
    moved = [(b, a) for b, a in zip(before, after, strict=True) if b != a]
    assert all(a == "10.0.0.9:11211" for _, a in moved)
    assert 0.12 < len(moved) / len(KEYS) < 0.28  # ideal 1/5


def test_removing_a_server_moves_only_its_keys() -> None:
    names = [f"10.0.0.{i}:11211" for i in range(1, 5)]
    before = owners(ring(names))
    after = owners(ring(names[:2] + names[3:]))
    for b, a in zip(before, after, strict=True):
        assert (b == a) if b != names[2] else (a != names[2])


def test_ring_is_deterministic_and_empty_ring_raises() -> None:
    assert owners(ring(["x:1", "y:1"]))[:100] == owners(ring(["y:1", "x:1"]))[:100]
    with pytest.raises(LookupError):
        ring([]).get(b"k")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_failed_server_is_ejected_then_retried() -> None:
    clock = FakeClock()
    servers = ServerSet(["10.0.0.1:1", "10.0.0.2:1", "10.0.0.3:1"], dead_timeout=30, clock=clock)
    dead = parse_address("10.0.0.2:1")
    before = [servers.server_for(k) for k in KEYS[:3000]]
    servers.mark_failed(dead)
    during = [servers.server_for(k) for k in KEYS[:3000]]
    assert dead not in during
    # Only the dead server's keys moved; the others kept their owner.
    assert all(b == d for b, d in zip(before, during, strict=True) if b != dead)
    assert servers.live() == [parse_address("10.0.0.1:1"), parse_address("10.0.0.3:1")]
    clock.now += 31
    assert [servers.server_for(k) for k in KEYS[:3000]] == before


def test_all_ejected_raises_connection_error() -> None:
    servers = ServerSet(["a:1", "b:1"], dead_timeout=30, clock=FakeClock())
    for a in servers.addresses:
        servers.mark_failed(a)
    with pytest.raises(CacheConnectionError, match="no server available"):
        servers.server_for(b"k")


def test_single_server_is_never_ejected() -> None:
    servers = ServerSet(["a:1"], clock=FakeClock())
    servers.mark_failed(servers.addresses[0])
    assert servers.server_for(b"k") == servers.addresses[0]


def test_server_set_rejects_empty_and_duplicates() -> None:
    with pytest.raises(ValueError):
        ServerSet([])
    with pytest.raises(ValueError):
        ServerSet(["a:1", "a:1"])
