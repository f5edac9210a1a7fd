"""Drive the native and python backends with the same random operations; demand identical results.

Tiny memory and item-count limits keep eviction constant; a shared fake clock moves between
operations so items expire, flushes land and the reclaimer finds work. The meta operations
(peek, meta_get, mark, meta_update, meta_delete, meta_delta, vivify) are mixed in, and every
step compares each item's state too (last access, fetched, win token, stale, binary key:
``records()``), so both backends keep memcached's per-item state alike.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pycache_d.store.errors import StoreError
from pycache_d.store.semantics import MODE_CAS, MODE_SET, STATE_BITS

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
OPT_EXPTIMES = st.one_of(st.none(), EXPTIMES)
CAS_UNIQUES = st.one_of(st.integers(0, 40), st.just(2**64 - 1))
BITS = st.integers(0, STATE_BITS)

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
    # meta commands
    st.tuples(st.just("peek"), KEYS),
    st.tuples(st.just("meta_get"), KEYS, OPT_EXPTIMES, st.booleans(), OPT_EXPTIMES),
    st.tuples(st.just("mark"), KEYS, BITS, BITS, OPT_EXPTIMES),
    st.tuples(
        st.just("meta_update"),
        st.integers(MODE_SET, MODE_CAS),
        KEYS,
        VALUES,
        FLAGS,
        EXPTIMES,
        CAS_UNIQUES,
        st.fixed_dictionaries({"binary": st.booleans(), "stale": st.booleans()}),
    ),
    st.tuples(st.just("meta_delete"), KEYS, st.one_of(st.none(), CAS_UNIQUES), st.booleans(), OPT_EXPTIMES),
    st.tuples(st.just("meta_delta"), KEYS, st.booleans(), DELTAS, CAS_UNIQUES, st.booleans(), OPT_EXPTIMES),
    st.tuples(st.just("vivify"), KEYS, VALUES, EXPTIMES, BITS),
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
    kwargs = args.pop() if args and isinstance(args[-1], dict) else {}
    try:
        return getattr(store, name)(*args, **kwargs)
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
        assert list(native.records()) == list(python.records()), f"step {step}: {op}"
        assert native.now == python.now
    assert list(native.items()) == list(python.items())
    assert native.cas_counter == python.cas_counter


# Few keys, long-lived items and no memory pressure: the same items are read, written and
# marked again and again while the clock moves, which is what their state (last access,
# fetched, win token, stale) is about.
STATE_KEYS = st.sampled_from([b"a", b"b", b"c"])
LONG_EXPTIMES = st.sampled_from([0, 0, 0, 100, 5])
STATE_OPS = st.one_of(
    st.tuples(st.just("set"), STATE_KEYS, VALUES, FLAGS, LONG_EXPTIMES),
    st.tuples(st.just("add"), STATE_KEYS, VALUES, FLAGS, LONG_EXPTIMES),
    st.tuples(st.just("append"), STATE_KEYS, VALUES),
    st.tuples(st.just("get"), STATE_KEYS),
    st.tuples(st.just("get_many"), st.lists(STATE_KEYS, max_size=3)),
    st.tuples(st.just("gat"), STATE_KEYS, LONG_EXPTIMES),
    st.tuples(st.just("touch"), STATE_KEYS, LONG_EXPTIMES),
    st.tuples(st.just("incr"), STATE_KEYS, DELTAS),
    st.tuples(st.just("tick"), st.integers(1, 3)),
    st.tuples(st.just("tick"), st.integers(1, 3)),
    st.tuples(st.just("peek"), STATE_KEYS),
    st.tuples(st.just("meta_get"), STATE_KEYS, st.one_of(st.none(), LONG_EXPTIMES), st.booleans(), st.none()),
    st.tuples(st.just("meta_get"), STATE_KEYS, st.none(), st.booleans(), LONG_EXPTIMES),
    st.tuples(st.just("mark"), STATE_KEYS, BITS, BITS, st.one_of(st.none(), LONG_EXPTIMES)),
    st.tuples(
        st.just("meta_update"),
        st.integers(MODE_SET, MODE_CAS),
        STATE_KEYS,
        VALUES,
        FLAGS,
        LONG_EXPTIMES,
        st.integers(0, 12),
        st.fixed_dictionaries({"binary": st.booleans(), "stale": st.booleans()}),
    ),
    st.tuples(
        st.just("meta_delete"), STATE_KEYS, st.one_of(st.none(), st.integers(0, 12)), st.booleans(), st.none()
    ),
    st.tuples(
        st.just("meta_delta"),
        STATE_KEYS,
        st.booleans(),
        DELTAS,
        st.integers(0, 12),
        st.booleans(),
        st.one_of(st.none(), LONG_EXPTIMES),
    ),
    st.tuples(st.just("vivify"), STATE_KEYS, VALUES, LONG_EXPTIMES, BITS),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(STATE_OPS, min_size=1, max_size=60))
def test_backends_agree_on_item_state(ops):
    clock = FakeClock()
    native = backend_class("native")(1 << 20, clock=clock)
    python = backend_class("python")(1 << 20, clock=clock)
    for step, op in enumerate(ops):
        got_native = apply(native, clock, op)
        got_python = apply(python, clock, op)
        assert got_native == got_python, f"step {step}: {op}"
        assert list(native.records()) == list(python.records()), f"step {step}: {op}"
    assert SHARED_STATS(native.stats()) == SHARED_STATS(python.stats())
