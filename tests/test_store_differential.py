"""Drive the native and python backends with the same random operations; demand identical results.

Tiny memory and item-count limits keep eviction constant; a shared fake clock moves between
operations so items expire, flushes land and the reclaimer finds work.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pycache_d.store.errors import StoreError

from conftest import FakeClock, backend_class

pytestmark = pytest.mark.asan

KEYS = st.sampled_from([b"a", b"b", b"c", b"d", b"e", b"f", b"key-%d" % 7, b"x" * 40])
VALUES = st.one_of(
    st.binary(max_size=60),
    st.sampled_from([b"0", b"1", b"9", b"99", b"18446744073709551615", b" 7", b"12 ", b"-1", b"abc"]),
)
FLAGS = st.sampled_from([0, 1, 2**32 - 1])
EXPTIMES = st.one_of(st.sampled_from([0, 0, -1, 1, 2, 5]), st.integers(-3, 8))
DELTAS = st.one_of(st.integers(0, 20), st.just(2**64 - 1))

OPS = st.one_of(
    st.tuples(st.just("set"), KEYS, VALUES, FLAGS, EXPTIMES),
    st.tuples(st.just("add"), KEYS, VALUES, FLAGS, EXPTIMES),
    st.tuples(st.just("replace"), KEYS, VALUES, FLAGS, EXPTIMES),
    st.tuples(st.just("append"), KEYS, VALUES),
    st.tuples(st.just("prepend"), KEYS, VALUES),
    st.tuples(st.just("cas"), KEYS, VALUES, FLAGS, EXPTIMES, st.integers(0, 40)),
    st.tuples(st.just("get"), KEYS),
    st.tuples(st.just("get_item"), KEYS),
    st.tuples(st.just("get_many"), st.lists(KEYS, max_size=4)),
    st.tuples(st.just("gat"), KEYS, EXPTIMES),
    st.tuples(st.just("touch"), KEYS, EXPTIMES),
    st.tuples(st.just("delete"), KEYS),
    st.tuples(st.just("incr"), KEYS, DELTAS),
    st.tuples(st.just("decr"), KEYS, DELTAS),
    st.tuples(st.just("flush_all"), st.sampled_from([0, 0, -1, 1, 2, 3])),
    st.tuples(st.just("reclaim"), st.integers(0, 3)),
    st.tuples(st.just("tick"), st.integers(0, 3)),
    st.tuples(st.just("max_bytes"), st.integers(60, 400)),
)

# Gauges of the hash table are the native backend's own; everything else must match.
SHARED_STATS = lambda stats: {k: v for k, v in stats.items() if not k.startswith("hash_")}  # noqa: E731


def apply(store, clock, op):
    name, *args = op
    if name == "tick":
        clock.advance(args[0])
        return None
    if name == "max_bytes":
        store.max_bytes = args[0]
        return None
    try:
        return getattr(store, name)(*args)
    except StoreError as exc:
        return type(exc).__name__


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ops=st.lists(OPS, min_size=1, max_size=80),
    max_bytes=st.integers(60, 600),
    max_items=st.sampled_from([0, 0, 1, 3]),
    max_item_size=st.sampled_from([100, 1024 * 1024]),
)
def test_backends_agree(ops, max_bytes, max_items, max_item_size):
    clock = FakeClock()
    kwargs = dict(max_items=max_items, max_item_size=max_item_size, clock=clock)
    native = backend_class("native")(max_bytes, **kwargs)
    python = backend_class("python")(max_bytes, **kwargs)
    for step, op in enumerate(ops):
        got_native = apply(native, clock, op)
        got_python = apply(python, clock, op)
        assert got_native == got_python, f"step {step}: {op}"
        assert SHARED_STATS(native.stats()) == SHARED_STATS(python.stats()), f"step {step}: {op}"
    assert list(native.items()) == list(python.items())
    assert native.cas_counter == python.cas_counter
