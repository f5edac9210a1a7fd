"""Every command of both clients against a real daemon (pycache-d native and python backends)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from pycache_client import CacheClientError, Client, InvalidKeyError, RawSerde, ValueTooLargeError


def test_set_get_roundtrips_types(any_client: Any) -> None:
    values = {"b": b"\x00\xffbytes", "s": "héllo", "i": 12345, "j": {"a": [1, 2.5, None, True]}, "n": None}
    for key, value in values.items():
        assert any_client.set(key, value) is True
    for key, value in values.items():
        got = any_client.get(key)
        assert got == value and type(got) is type(value)
    assert any_client.get("missing") is None
    assert any_client.get("missing", "dflt") == "dflt"


def test_get_many_and_set_many(any_client: Any) -> None:
    assert any_client.set_many({"a": 1, "b": "two", b"c": b"3"}) == []
    assert any_client.get_many(["a", "b", b"c", "zz", "a"]) == {"a": 1, "b": "two", b"c": b"3"}
    assert any_client.get_many([]) == {}
    assert any_client.delete_many(["a", "b", "zz"]) == 2
    assert any_client.get_many(["a", "b", b"c"]) == {b"c": b"3"}


def test_add_replace_append_prepend(any_client: Any) -> None:
    assert any_client.add("k", "v") is True
    assert any_client.add("k", "w") is False
    assert any_client.replace("k", "x") is True
    assert any_client.replace("nope", "x") is False
    assert any_client.append("k", "yz") is True
    assert any_client.prepend("k", "<") is True
    assert any_client.get("k") == "<xyz"
    assert any_client.append("nope", "a") is False


def test_gets_and_cas(any_client: Any) -> None:
    assert any_client.gets("k") == (None, None)
    any_client.set("k", "v1")
    value, token = any_client.gets("k")
    assert value == "v1" and isinstance(token, int)
    assert any_client.cas("k", "v2", token) is True
    assert any_client.cas("k", "v3", token) is False  # token is stale now
    assert any_client.get("k") == "v2"
    assert any_client.cas("gone", "x", 1) is None


def test_delete(any_client: Any) -> None:
    any_client.set("k", 1)
    assert any_client.delete("k") is True
    assert any_client.delete("k") is False
    assert any_client.get("k") is None


def test_incr_decr(any_client: Any) -> None:
    assert any_client.incr("n") is None
    any_client.set("n", 10)
    assert any_client.incr("n") == 11
    assert any_client.incr("n", 5) == 16
    assert any_client.decr("n", 100) == 0  # clamped at zero (protocol.txt)
    assert any_client.get("n") == 0
    any_client.set("big", 2**64 - 1)
    assert any_client.incr("big") == 0  # wraps at 2**64
    any_client.set("s", "abc")
    with pytest.raises(CacheClientError):
        any_client.incr("s")
    # The error reply left the connection in sync.
    assert any_client.get("s") == "abc"


def test_touch_and_gat(any_client: Any) -> None:
    any_client.set("t", "v", ttl=1)
    assert any_client.touch("t", 100) is True
    assert any_client.touch("nope", 10) is False
    assert any_client.gat("t", 1) == "v"
    assert any_client.gat("nope", 1, "d") == "d"


def test_expiry(client: Client) -> None:
    # One client only: the daemon's clock ticks in seconds, so this test must sleep 2 s.
    client.set("short", "v", ttl=1)
    client.set("long", "v", ttl=100)
    client.set("t", "v", ttl=100)
    assert client.gat("t", 1) == "v"
    time.sleep(2.05)
    assert client.get("short") is None
    assert client.get("t") is None  # gat set its TTL to 1 s
    assert client.get("long") == "v"


def test_flush_all_version_stats(any_client: Any) -> None:
    any_client.set("a", 1)
    assert any_client.flush_all() is None
    assert any_client.get("a") is None
    (version,) = any_client.version().values()
    assert version and version[0].isdigit()
    ((name, stats),) = any_client.stats().items()
    assert name.startswith("127.0.0.1:")
    assert int(stats["cmd_get"]) >= 1 and "curr_items" in stats


def test_invalid_key_raises_before_sending(any_client: Any) -> None:
    for bad in ["", "a b", "k\n", "x" * 251]:
        with pytest.raises(InvalidKeyError):
            any_client.set(bad, "v")
    with pytest.raises(InvalidKeyError):
        any_client.get_many(["ok", "not ok"])
    with pytest.raises(CacheClientError):
        any_client.set("k", "v", ttl=-1)
    assert any_client.get("ok") is None


def test_unicode_key_roundtrip(any_client: Any) -> None:
    any_client.set("ключ", "значение")
    assert any_client.get("ключ") == "значение"
    assert any_client.get("ключ".encode()) == "значение"


def test_value_too_large_keeps_connection_usable(any_client: Any) -> None:
    with pytest.raises(ValueTooLargeError):
        any_client.set("huge", b"x" * (2 * 1024 * 1024))
    assert any_client.set("small", "ok") is True
    assert any_client.get("small") == "ok"


def test_large_pipeline_of_big_values(any_client: Any) -> None:
    # More than one pipeline window, and values bigger than one socket read.
    mapping = {f"k{i}": bytes([i % 256]) * 70_000 for i in range(150)}
    assert any_client.set_many(mapping) == []
    assert any_client.get_many(mapping) == mapping


def test_raw_serde(daemon: Any) -> None:
    with Client(daemon.address, serde=RawSerde()) as c:
        c.set("r", b"5")
        assert c.incr("r", 1) == 6
        assert c.get("r") == b"6"
