"""What the fuzz targets feed and check; tests/test_fuzz_regressions.py replays with it too.

An input is one header byte, up to seven feed lengths, then the client's byte stream::

    header  bit 7    advance the clock one second between feeds
            bits 5-6 the store's max_item_size, from ITEM_SIZES
            bits 3-4 the store's max_bytes, from MEMORY_LIMITS
            bits 0-2 n, the number of feed-length bytes that follow (0: the stream in one feed)
    n bytes each b gives a feed of b + 1 bytes; they are used in turn until the stream runs out
    stream  the rest

The header keeps every input a plain protocol stream after a few bytes, so a seed is readable
and libFuzzer's dictionary tokens land in the stream, while the fuzzer still picks the splits.
A stream whose first byte is 0x80 is a binary-protocol one, as memcached decides; the checks
then read the replies as binary response packets (:func:`check_binary_replies`).

Checks (each raises AssertionError, which atheris reports as a crash):

* :func:`check_python`: the pure-Python session on the python store. No exception escapes
  ``feed``; every feed returns whole, well-formed memcached replies; what it keeps buffered
  between feeds stays within the bounds session.py promises, and the store within its memory
  limit; the replies and the store after are the same as when the whole stream arrives in one
  feed.
* :func:`check_differential`: the Python session on the python store and the compiled session on
  the native store, fed the same pieces at the same clock, answer the same bytes (``STAT`` lines
  aside, as in tests/test_csession.py), close together and leave the same items and counters.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import Any

from pycache_d.protocol.context import ServerContext
from pycache_d.protocol.session import MAX_GET_LINE, MAX_LINE, Session
from pycache_d.store import BACKENDS

# A few small items fill the smaller ones, so eviction is common.
MEMORY_LIMITS = (600, 1500, 6000, 1 << 20)
ITEM_SIZES = (100, 1024, 2048, 1 << 20)
START_TIME = 1_700_000_000


@dataclass(frozen=True)
class Case:
    """One decoded fuzz input."""

    stream: bytes
    lengths: tuple[int, ...]  # feed lengths, used in turn; () means one feed
    max_bytes: int
    max_item_size: int
    tick: bool

    def pieces(self) -> list[bytes]:
        """Return the stream cut into the feeds the client makes."""
        stream = self.stream
        if not self.lengths:
            return [stream] if stream else []
        out = []
        pos = i = 0
        while pos < len(stream):
            n = self.lengths[i % len(self.lengths)]
            out.append(stream[pos : pos + n])
            pos += n
            i += 1
        return out


def decode(data: bytes) -> Case:
    """Decode a fuzz input (see the module docstring)."""
    header = data[0] if data else 0
    n = header & 7
    return Case(
        stream=data[1 + n :],
        lengths=tuple(b + 1 for b in data[1 : 1 + n]),
        max_bytes=MEMORY_LIMITS[(header >> 3) & 3],
        max_item_size=ITEM_SIZES[(header >> 5) & 3],
        tick=bool(header & 0x80),
    )


def encode(
    stream: bytes, lengths: tuple[int, ...] = (), memory: int = 2, item_size: int = 2, tick: bool = False
) -> bytes:
    """Return the fuzz input for ``stream``; ``memory`` and ``item_size`` index the tables above."""
    assert len(lengths) <= 7 and all(1 <= n <= 256 for n in lengths)
    header = len(lengths) | memory << 3 | item_size << 5 | (0x80 if tick else 0)
    return bytes([header, *(n - 1 for n in lengths)]) + stream


class FakeClock:
    """A clock that moves only when told (the stores and the meta side table read it)."""

    def __init__(self) -> None:
        self.now = START_TIME

    def __call__(self) -> int:
        return self.now


def new_session(session_cls: Any, backend: str, case: Case, clock: FakeClock) -> Any:
    """Return a session of ``session_cls`` over a fresh store of ``backend`` sized for ``case``."""
    store = BACKENDS[backend](case.max_bytes, max_item_size=case.max_item_size, clock=clock)
    # The context gets the same clock, so the TTLs meta commands report do not follow real time.
    return session_cls(store, ServerContext(store, clock))


def feed(session: Any, piece: bytes, limit: int) -> bytes:
    """Feed one piece, then keep feeding b"" while the session says more input is answerable."""
    reply = [session.feed(piece)]
    rounds = 0
    while session.more:
        rounds += 1
        # Each extra round answers at least one key, so a stream of n bytes needs fewer than n.
        assert rounds <= limit, "session.more never cleared"
        reply.append(session.feed(b""))
    return b"".join(reply)


# -- replies --------------------------------------------------------------------------------

_WORDS = frozenset(
    b"STORED NOT_STORED EXISTS NOT_FOUND DELETED TOUCHED END OK RESET ERROR MN HD EN NF NS EX".split()
)
_TOKEN = rb"[^ \n]+"
_LINE = re.compile(
    rb"(?:CLIENT_ERROR|SERVER_ERROR|ERROR:|MEMLIMIT_TOO_SMALL|MEMLIMIT_ADJUST_FAILED) [^\n]+"
    rb"|VERSION " + _TOKEN + rb"|STAT " + _TOKEN + rb" [^\n]*"
    rb"|[0-9]+"  # incr/decr
    rb"|(?:HD|EN|NF|NS|EX|ME)(?: " + _TOKEN + rb")+"
)
# Lines followed by a data block; the group is its length.
_VALUE = re.compile(rb"VALUE " + _TOKEN + rb" [0-9]+ ([0-9]+)(?: [0-9]+)?")
_VA = re.compile(rb"VA ([0-9]+)(?: " + _TOKEN + rb")*")


#: The status codes a binary response may carry (binary.py).
_STATUSES = frozenset((0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x20, 0x21, 0x81, 0x82))


def is_binary(stream: bytes) -> bool:
    """True when ``stream`` speaks the binary protocol (its first byte is 0x80)."""
    return stream[:1] == b"\x80"


def check_binary_replies(reply: bytes) -> None:
    """Assert ``reply`` is a sequence of whole binary response packets, each well formed."""
    pos, end = 0, len(reply)
    while pos < end:
        assert end - pos >= 24, f"a truncated response header {reply[pos:]!r}"
        magic, _op, keylen, extlen, datatype, status, bodylen = struct.unpack_from(">BBHBBHI", reply, pos)
        assert magic == 0x81 and datatype == 0, f"bad response header {reply[pos : pos + 24]!r}"
        assert status in _STATUSES, f"unknown status {status:#x}"
        assert keylen + extlen <= bodylen, f"key and extras longer than the body {reply[pos : pos + 24]!r}"
        assert end - pos - 24 >= bodylen, "a response body is cut short"
        pos += 24 + bodylen


def check_any_replies(reply: bytes, binary: bool) -> None:
    """check_binary_replies() or check_replies(), as the stream speaks."""
    (check_binary_replies if binary else check_replies)(reply)


def check_replies(reply: bytes) -> None:
    """Assert ``reply`` is a sequence of whole memcached reply lines, each data block complete."""
    pos, end = 0, len(reply)
    while pos < end:
        # Tokens hold no \n, so the first \r\n ends the line even if a key ends in \r.
        eol = reply.find(b"\r\n", pos)
        assert eol >= 0, f"unterminated reply line {reply[pos : pos + 80]!r}"
        line = reply[pos:eol]
        pos = eol + 2
        block = _VALUE.fullmatch(line) or _VA.fullmatch(line)
        if block:
            size = int(block.group(1))
            assert reply.startswith(b"\r\n", pos + size), f"data block of {line!r} is not {size} bytes"
            pos += size + 2
        else:
            assert line in _WORDS or _LINE.fullmatch(line), f"malformed reply line {line[:80]!r}"


def normalise(reply: bytes, binary: bool = False) -> bytes:
    """Drop ``STAT`` lines (binary: stat packets with a key): they carry times, a pid and each
    session's own counters."""
    if not binary:
        return b"\r\n".join(line for line in reply.split(b"\r\n") if not line.startswith(b"STAT "))
    out = []
    pos = 0
    while len(reply) - pos >= 24:
        opcode, keylen, status, bodylen = struct.unpack_from(">xBHxxHI", reply, pos)
        size = 24 + bodylen
        if not (opcode == 0x10 and status == 0 and keylen):
            out.append(reply[pos : pos + size])
        pos += size
    out.append(reply[pos:])
    return b"".join(out)


def shared_stats(store: Any) -> dict[str, int]:
    """The store's counters both backends keep (the hash table's gauges are the native one's)."""
    return {k: v for k, v in store.stats().items() if not k.startswith("hash_")}


# -- the checks -------------------------------------------------------------------------------


def check_buffer(session: Session) -> None:
    """Assert the Python session holds no more input than its module docstring promises."""
    if session.closing or session.more:
        return  # closed: nothing is read again; more: complete input waits, at most one read
    # NOTE: white-box: the bound is on private state, the only place it can be seen.
    b = session._binary
    if b is not None:
        if b._pending is not None:
            assert len(b._buf) < b._pending[-1], "a complete value was left unanswered"
        elif b._swallow:
            assert not b._buf, "input kept while a refused value is being swallowed"
        else:
            assert len(b._buf) < 24 + 255 + 65535, "more than one request header buffered"
            assert not b._buf or len(b._buf) < b._need, "a complete request was left unanswered"
        return
    buf = session._buf
    if session._pending is not None:
        assert len(buf) < session._need, "a complete data block was left unanswered"
    elif session._swallow:
        assert not buf, "input kept while a rejected block is being swallowed"
    else:
        assert b"\n" not in buf, "a complete command line was left unanswered"
        assert len(buf) <= MAX_GET_LINE, f"{len(buf)} bytes of one command line buffered"
        if len(buf) > MAX_LINE:
            assert not session._too_long(buf, 0, len(buf)), "an over-long line was kept"


def check_python(data: bytes) -> None:
    """The pure-Python session's invariants, for one fuzz input."""
    case = decode(data)
    limit = len(case.stream) + 2
    binary = is_binary(case.stream)
    split = new_session(Session, "python", case, FakeClock())
    replies = []
    for piece in case.pieces():
        reply = feed(split, piece, limit)
        check_any_replies(reply, binary)
        check_buffer(split)
        assert split.store.stats()["bytes"] <= split.store.max_bytes, "the store outgrew its memory limit"
        replies.append(reply)
        if split.closing:
            break
    whole = new_session(Session, "python", case, FakeClock())
    expected = feed(whole, case.stream, limit)
    assert normalise(b"".join(replies), binary) == normalise(expected, binary), (
        "replies depend on how the input was split"
    )
    assert split.closing == whole.closing
    assert list(split.store.items()) == list(whole.store.items())
    assert shared_stats(split.store) == shared_stats(whole.store)


def check_differential(data: bytes, native_session_cls: Any) -> None:
    """The compiled session on the native store answers as the Python one on the python store."""
    case = decode(data)
    limit = len(case.stream) + 2
    clock = FakeClock()
    slow = new_session(Session, "python", case, clock)
    fast = new_session(native_session_cls, "native", case, clock)
    binary = is_binary(case.stream)
    for i, piece in enumerate(case.pieces()):
        expected = feed(slow, piece, limit)
        got = feed(fast, piece, limit)
        assert normalise(got, binary) == normalise(expected, binary), (
            f"feed {i}: native {got!r} != python {expected!r}"
        )
        assert fast.closing == slow.closing, f"feed {i}: closing differs"
        if slow.closing:
            break
        if case.tick:
            clock.now += 1
    assert list(fast.store.items()) == list(slow.store.items()), "the stores hold different items"
    assert shared_stats(fast.store) == shared_stats(slow.store), "the stores' counters differ"
