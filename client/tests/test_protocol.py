"""The sans-IO protocol core: encoding, parsing at every split point, errors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pycache_client import protocol
from pycache_client.errors import CacheClientError, CacheServerError, ValueTooLargeError
from pycache_client.protocol import NEED_DATA, Expect, Item, ProtocolError, ReplyParser


def parse_all(data: bytes, expects: list[Expect], chunks: list[int] | None = None) -> list[object]:
    """Feed ``data`` in pieces (sizes from ``chunks``, else one byte at a time) and collect replies."""
    parser = ReplyParser()
    replies: list[object] = []
    pos = 0
    sizes = iter(chunks or [])
    while len(replies) < len(expects):
        reply = parser.next_reply(expects[len(replies)])
        if reply is NEED_DATA:
            assert pos < len(data), "parser wants more data than the stream has"
            n = next(sizes, 1) or 1
            parser.feed(data[pos : pos + n])
            pos = min(pos + n, len(data))
        else:
            replies.append(reply)
    assert pos == len(data) and parser.buffered == 0
    return replies


def test_encode_storage_with_cas_and_data_block() -> None:
    cmd = protocol.storage(b"cas", b"k", 16, 60, b"a\r\nb", cas=42)
    assert cmd.data == b"cas k 16 60 4 42\r\na\r\nb\r\n"
    assert cmd.expect is Expect.STATUS


def test_encode_other_commands() -> None:
    assert protocol.retrieval(b"get", [b"a", b"b"]).data == b"get a b\r\n"
    assert protocol.retrieval(b"gat", [b"a"], 10).data == b"gat 10 a\r\n"
    assert protocol.delete(b"k").data == b"delete k\r\n"
    assert protocol.arithmetic(b"incr", b"k", 2**64 - 1).data == b"incr k 18446744073709551615\r\n"
    assert protocol.touch(b"k", 5).data == b"touch k 5\r\n"
    assert protocol.flush_all().data == b"flush_all\r\n"
    assert protocol.flush_all(3).data == b"flush_all 3\r\n"
    assert protocol.stats("items").data == b"stats items\r\n"
    assert protocol.version().data == b"version\r\n"
    with pytest.raises(ValueError):
        protocol.arithmetic(b"incr", b"k", 2**64)


def test_values_reply_parsed_at_every_split_point() -> None:
    # A value containing CRLF and "END" must be read by length, never by scanning for lines.
    stream = b"VALUE a 0 8 12\r\nx\r\nEND\r\n\r\nVALUE b 16 0\r\n\r\nEND\r\nSTORED\r\n"
    expected = [[Item(b"a", 0, b"x\r\nEND\r\n", 12), Item(b"b", 16, b"", None)], b"STORED"]
    for cut in range(len(stream) + 1):
        parser = ReplyParser()
        parser.feed(stream[:cut])
        first = parser.next_reply(Expect.VALUES)
        parser.feed(stream[cut:])
        if first is NEED_DATA:
            first = parser.next_reply(Expect.VALUES)
        assert [first, parser.next_reply(Expect.STATUS)] == expected, cut
    assert parse_all(stream, [Expect.VALUES, Expect.STATUS]) == expected


def test_number_stats_version_replies() -> None:
    stream = b"42\r\nNOT_FOUND\r\nSTAT pid 1\r\nSTAT version 1.6 x\r\nEND\r\nVERSION 1.6.18\r\n"
    replies = parse_all(stream, [Expect.NUMBER, Expect.NUMBER, Expect.STATS, Expect.VERSION])
    assert replies == [42, None, {"pid": "1", "version": "1.6 x"}, "1.6.18"]


def test_error_lines_are_returned_in_order_not_raised() -> None:
    stream = b"SERVER_ERROR object too large for cache\r\nCLIENT_ERROR bad data chunk\r\nERROR\r\nSTORED\r\n"
    replies = parse_all(stream, [Expect.STATUS] * 4)
    assert type(replies[0]) is ValueTooLargeError
    assert replies[0].wire == b"SERVER_ERROR object too large for cache"
    assert type(replies[1]) is CacheClientError and "bad data chunk" in str(replies[1])
    assert type(replies[2]) is CacheClientError
    assert replies[3] == b"STORED"


def test_unknown_server_error_text_maps_by_prefix() -> None:
    (reply,) = parse_all(b"SERVER_ERROR something new\r\n", [Expect.VALUES])
    assert type(reply) is CacheServerError


@pytest.mark.parametrize(
    ("stream", "expect"),
    [
        (b"VALUE k x 1\r\na\r\nEND\r\n", Expect.VALUES),
        (b"VALUE k 0 1\r\nab\r\nEND\r\n", Expect.VALUES),
        (b"BOGUS\r\n", Expect.STATUS),
        (b"STORED\r\n", Expect.NUMBER),
        (b"OK\r\n", Expect.VERSION),
        (b"x" * (protocol.MAX_LINE + 1), Expect.STATUS),
    ],
)
def test_malformed_replies_raise(stream: bytes, expect: Expect) -> None:
    parser = ReplyParser()
    parser.feed(stream)
    with pytest.raises(ProtocolError):
        parser.next_reply(expect)


@given(
    items=st.lists(
        st.tuples(
            st.binary(min_size=1, max_size=20).filter(
                lambda k: b" " not in k and b"\r" not in k and b"\n" not in k
            ),
            st.integers(0, 2**32 - 1),
            st.binary(max_size=300),
            st.none() | st.integers(0, 2**64 - 1),
        ),
        max_size=5,
    ),
    chunks=st.lists(st.integers(1, 64), max_size=50),
)
def test_values_roundtrip_any_chunking(
    items: list[tuple[bytes, int, bytes, int | None]], chunks: list[int]
) -> None:
    stream = b""
    for key, flags, value, cas in items:
        stream += b"VALUE %s %d %d" % (key, flags, len(value))
        stream += (b" %d" % cas if cas is not None else b"") + b"\r\n" + value + b"\r\n"
    stream += b"END\r\n"
    (reply,) = parse_all(stream, [Expect.VALUES], chunks)
    assert reply == [Item(*item) for item in items]
