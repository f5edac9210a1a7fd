"""Key validation and the serialiser, without a server."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pycache_client import InvalidKeyError, JsonSerde, RawSerde, SerializationError, encode_key
from pycache_client.address import Address, parse_address
from pycache_client.serde import FLAG_BYTES, FLAG_INT, FLAG_JSON, FLAG_TEXT


def test_key_limits() -> None:
    assert encode_key("a" * 250) == b"a" * 250
    assert encode_key("clé") == "clé".encode()
    assert encode_key(b"\xff\x80") == b"\xff\x80"
    with pytest.raises(InvalidKeyError, match="250"):
        encode_key("a" * 251)
    # 125 two-byte characters are 250 bytes; one more is over, though only 126 characters.
    encode_key("é" * 125)
    with pytest.raises(InvalidKeyError):
        encode_key("é" * 126)


@pytest.mark.parametrize("key", ["", "a b", "a\tb", "a\r\nb", "a\x00", "a\x7f", "\n", 12, None])
def test_invalid_keys_rejected(key: object) -> None:
    with pytest.raises(InvalidKeyError):
        encode_key(key)  # type: ignore[arg-type]


def test_invalid_key_is_also_a_value_error() -> None:
    with pytest.raises(ValueError):
        encode_key("a b")


@pytest.mark.parametrize(
    ("value", "flags"),
    [
        (b"\x00raw", FLAG_BYTES),
        ("text é", FLAG_TEXT),
        (-12, FLAG_INT),
        (2**70, FLAG_INT),
        (True, FLAG_JSON),
        (None, FLAG_JSON),
        (1.5, FLAG_JSON),
        ({"a": [1, "b", None]}, FLAG_JSON),
    ],
)
def test_json_serde_roundtrips_type(value: object, flags: int) -> None:
    serde = JsonSerde()
    data, got_flags = serde.serialize(value)
    assert got_flags == flags
    back = serde.deserialize(data, got_flags)
    assert back == value and type(back) is type(value)


def test_int_is_stored_as_decimal_so_incr_works() -> None:
    assert JsonSerde().serialize(42) == (b"42", FLAG_INT)


def test_unknown_flags_read_as_bytes() -> None:
    assert JsonSerde().deserialize(b"abc", 1) == b"abc"  # e.g. pymemcache's pickle flag


def test_no_pickle_for_arbitrary_objects() -> None:
    with pytest.raises(SerializationError):
        JsonSerde().serialize(object())
    with pytest.raises(TypeError):
        JsonSerde().serialize({1, 2})


def test_raw_serde_only_bytes() -> None:
    assert RawSerde().serialize(b"x") == (b"x", 0)
    assert RawSerde().deserialize(b"5", FLAG_INT) == b"5"
    with pytest.raises(SerializationError):
        RawSerde().serialize("x")


@given(
    st.recursive(
        st.none() | st.booleans() | st.text() | st.integers() | st.binary(),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(), c, max_size=3),
        max_leaves=8,
    )
)
def test_serde_roundtrip_property(value: object) -> None:
    if isinstance(value, list | dict) and "b'" in repr(value):
        return  # bytes nested in JSON are not serialisable; covered above
    serde = JsonSerde()
    try:
        data, flags = serde.serialize(value)
    except SerializationError:
        return
    assert serde.deserialize(data, flags) == value


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("127.0.0.1:11311", Address("127.0.0.1", 11311)),
        ("localhost", Address("localhost", 11211)),
        ("[::1]:5000", Address("::1", 5000)),
        ("unix:/tmp/c.sock", Address(path="/tmp/c.sock")),
    ],
)
def test_parse_address(spec: str, expected: Address) -> None:
    assert parse_address(spec) == expected
    assert parse_address(expected.name) == expected


@pytest.mark.parametrize("spec", ["", "h:x", "h:70000", "unix:", "[::1", "[::1]x"])
def test_parse_bad_address(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_address(spec)
