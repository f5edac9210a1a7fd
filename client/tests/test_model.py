"""Random command sequences on both clients against a real daemon, checked against a dict model."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

KEYS = st.sampled_from(["a", "b", "c", "ключ"])
VALUES = st.one_of(st.text(max_size=20), st.integers(0, 1000), st.binary(max_size=20))
COMMANDS = st.lists(
    st.one_of(
        st.tuples(st.just("set"), KEYS, VALUES),
        st.tuples(st.just("add"), KEYS, VALUES),
        st.tuples(st.just("replace"), KEYS, VALUES),
        st.tuples(st.just("delete"), KEYS),
        st.tuples(st.just("get"), KEYS),
        st.tuples(st.just("incr"), KEYS, st.integers(0, 100)),
        st.tuples(st.just("get_many"), st.lists(KEYS, max_size=4)),
    ),
    max_size=25,
)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(commands=COMMANDS)
def test_client_matches_a_dict(any_client: Any, commands: list[tuple[Any, ...]]) -> None:
    any_client.flush_all()
    model: dict[str, Any] = {}
    for name, key, *args in commands:
        if name == "set":
            assert any_client.set(key, args[0]) is True
            model[key] = args[0]
        elif name == "add":
            assert any_client.add(key, args[0]) is (key not in model)
            model.setdefault(key, args[0])
        elif name == "replace":
            assert any_client.replace(key, args[0]) is (key in model)
            if key in model:
                model[key] = args[0]
        elif name == "delete":
            assert any_client.delete(key) is (model.pop(key, None) is not None)
        elif name == "get":
            assert any_client.get(key) == model.get(key)
        elif name == "incr":
            current = model.get(key)
            if isinstance(current, int):
                model[key] = (current + args[0]) % 2**64
                assert any_client.incr(key, args[0]) == model[key]
            elif current is None:
                assert any_client.incr(key, args[0]) is None
        elif name == "get_many":
            assert any_client.get_many(key) == {k: model[k] for k in key if k in model}
