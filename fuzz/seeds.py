"""Write the seed corpus, fuzz/corpus/: one real protocol stream per command family.

Run it after changing a stream below (``.venv/bin/python fuzz/seeds.py``); the files are
committed, so the fuzzers and tests/test_fuzz_regressions.py need nothing generated. Each
stream is written whole and split into feeds of a few odd lengths (see harness.py's format).
"""

from __future__ import annotations

import struct
from pathlib import Path

from harness import encode

CORPUS = Path(__file__).resolve().parent / "corpus"

STREAMS = {
    "storage": b"set a 0 0 5\r\nhello\r\nadd a 0 0 1\r\nx\r\nadd b 7 0 2\r\nhi\r\n"
    b"replace a 3 100 3\r\nnew\r\n"
    b"replace zz 0 0 1\r\nx\r\nappend a 0 0 1\r\n!\r\nprepend a 0 0 1\r\n<\r\nappend none 0 0 1\r\nx\r\n"
    b"get a b zz\r\ngets a\r\ncas a 0 0 1 999\r\nx\r\ncas a 0 0 1 3\r\ny\r\ncas none 0 0 1 1\r\nx\r\n"
    b"set q 0 0 1 noreply\r\nq\r\nget q\r\n",
    "retrieval": b"set a 0 0 1\r\n1\r\nset b 4294967295 0 3\r\nbbb\r\nget a\r\nget a b c a\r\n"
    b"gets a b\r\nget\r\ngets\r\nget " + b"k" * 250 + b"\r\nget " + b"k" * 251 + b" a\r\n"
    b"gat 100 a b\r\ngats 0 a\r\ngat\r\ngat x a\r\nget a\x00junk\r\n",
    "delete_touch": b"set a 0 0 1\r\nx\r\ndelete a\r\ndelete a\r\nset b 0 0 1\r\ny\r\ndelete b 0\r\n"
    b"delete b 1\r\ndelete b noreply\r\ndelete b 0 noreply\r\ndelete\r\nset c 0 0 1\r\nz\r\n"
    b"touch c 10\r\ntouch d 10\r\ntouch c x\r\ntouch c 0 noreply\r\n",
    "arith": b"set n 0 0 2\r\n10\r\nincr n 5\r\ndecr n 100\r\nincr n 18446744073709551615\r\n"
    b"incr n x\r\nincr none 1\r\nset s 0 0 3\r\nabc\r\nincr s 1\r\ndecr n 1 noreply\r\nget n\r\n"
    b"incr n +3\r\nincr n 007\r\nincr n -1\r\nincr\r\n",
    "expiry": b"set a 0 1 1\r\nx\r\nset b 0 -1 1\r\ny\r\nset c 0 2592001 1\r\nz\r\nget a b c\r\n"
    b"get a b c\r\nflush_all 2\r\nget a b c\r\nget a\r\nflush_all\r\nget a\r\nflush_all x\r\n"
    b"flush_all 0 noreply\r\n",
    "meta_get": b"ms a 2 T100 F5\r\nhi\r\nmg a v\r\nmg a v f t c s k O123 q\r\nmg miss v\r\n"
    b"mg miss v q\r\nmn\r\nmg a k v h l\r\nmg a N30 v\r\nmg new N30 v c\r\nmg a R30 T60 v\r\n"
    b"mg a E5\r\nmg a zz\r\nmg a v v\r\nmg\r\nmg YQ== b v k\r\n",
    "meta_set": b"ms a 2\r\nhi\r\nms a 1 MA\r\n!\r\nms a 1 MP\r\n<\r\nms b 1 ME\r\nx\r\nms b 1 ME\r\ny\r\n"
    b"ms c 1 MR\r\nx\r\nms a 3 MS C1 c k O9\r\nnew\r\nms a 2 I\r\nzz\r\nms a 2 q\r\nqq\r\nms a 2 MX\r\nxx\r\n"
    b"ms a x\r\nms a 2 S2\r\nab\r\nms dGVzdA== 2 b\r\nbb\r\nmg test v\r\nms a 2\r\nabxx",
    "meta_delete_arith": b"ms a 1\r\nx\r\nmd a\r\nmd a q\r\nmd a\r\nms b 1\r\ny\r\nmd b I T30\r\nmg b v c\r\n"
    b"md b C1\r\nma n\r\nma n N0 J10 v\r\nma n v\r\nma n MD D3 v t c\r\nma n M+ D18446744073709551615 v\r\n"
    b"ma n MI q\r\nma n Mx\r\nma b v\r\nma n D-1\r\nmd\r\n",
    "meta_debug": b"ms a 5 T30\r\nhello\r\nme a\r\nme miss\r\nme\r\nmg a v\r\nme a\r\nmn\r\n",
    "server": b"version\r\nverbosity 1\r\nverbosity x\r\nverbosity 1 noreply\r\nstats\r\nstats settings\r\n"
    b"stats items\r\nstats slabs\r\nstats sizes\r\nstats conns\r\nstats detail on\r\nstats detail dump\r\n"
    b"stats detail\r\nstats bogus\r\nstats reset\r\ncache_memlimit 1\r\ncache_memlimit 8\r\n"
    b"cache_memlimit 2000000000\r\ncache_memlimit x\r\nshutdown\r\nquit\r\nget never\r\n",
    "errors": b"bogus\r\n\r\nGET a\r\nx\r\nset a 0 0 3\r\nabcde\r\nset a 0 0 x\r\nset a 0\r\n"
    b"set a 0 0 -1\r\nset a 0 0 5000\r\n" + b"y" * 5000 + b"\r\nget a\r\nset a x 0 1\r\nz\r\n"
    b"set " + b"k" * 251 + b" 0 0 1\r\nz\r\nget a\x00b\r\nget a\ttab\r\n",
    "long_lines": b"get " + b"k " * 1500 + b"\r\nset a 0 0 1\r\nx\r\n" + b" " * 2100 + b"\r\nget a\r\n",
    "http": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "budget": b"set a 0 0 1900\r\n"
    + b"a" * 1900
    + b"\r\nset b 0 0 1900\r\n"
    + b"b" * 1900
    + b"\r\nset c 0 0 1900\r\n"
    + b"c" * 1900
    + b"\r\nget "
    + b"a b c " * 45
    + b"\r\ngets "
    + b"c b a " * 45
    + b"\r\nmn\r\n",
    "eviction": b"".join(b"set key%d 0 0 50\r\n%s\r\n" % (i, b"v" * 50) for i in range(20))
    + b"get key0 key10 key19\r\nset huge 0 0 900\r\n"
    + b"h" * 900
    + b"\r\nget huge\r\n",
    "pipelined_noreply": b"set a 0 0 1 noreply\r\n1\r\nadd a 0 0 1 noreply\r\n2\r\nincr a 5 noreply\r\n"
    b"append a 0 0 1 noreply\r\n0\r\nprepend a 0 0 1 noreply\r\n9\r\ndelete b noreply\r\n"
    b"touch a 5 noreply\r\nget a\r\nmn\r\n",
}


def _req(
    opcode: int, key: bytes = b"", extras: bytes = b"", value: bytes = b"", opaque: int = 0, cas: int = 0
) -> bytes:
    """One binary request (binary.py's request(), spelt out so the seeds need no import)."""
    body = len(extras) + len(key) + len(value)
    return (
        struct.pack(">BBHBBHIIQ", 0x80, opcode, len(key), len(extras), 0, 0, body, opaque, cas)
        + extras
        + key
        + value
    )


_FE = struct.pack(">II", 5, 0)  # flags, exptime
_INCR = struct.pack(">QQI", 3, 10, 0)
_NO_CREATE = struct.pack(">QQI", 1, 0, 0xFFFFFFFF)

# Binary-protocol streams (the first byte, 0x80, makes the session binary). After an unknown
# opcode (0x1b, verbosity, among them) memcached discards as many bytes again as its extras and
# key: a filler of that length follows each.
STREAMS.update(
    {
        "binary_storage": b"".join(
            [
                _req(0x01, b"a", _FE, b"hello\r\nflush_all\r\n", 1),
                _req(0x02, b"a", _FE, b"x", 2),
                _req(0x12, b"b", _FE, b"hi", 3),
                _req(0x03, b"zz", _FE, b"x", 4),
                _req(0x13, b"a", _FE, b"new", 5),
                _req(0x0E, b"a", b"", b"!", 6),
                _req(0x0F, b"a", b"", b"<", 7),
                _req(0x19, b"none", b"", b"x", 8),
                _req(0x1A, b"a", b"", b"x", 9),
                _req(0x01, b"a", _FE, b"cas", 10, cas=999),
                _req(0x01, b"c", _FE, b"", 11),
                _req(0x11, b"q", _FE, b"q", 12),
                _req(0x00, b"a", opaque=13),
            ]
        ),
        "binary_retrieval": b"".join(
            [
                _req(0x01, b"a", _FE, b"1"),
                _req(0x00, b"a", opaque=1),
                _req(0x09, b"a", opaque=2),
                _req(0x09, b"miss", opaque=3),
                _req(0x0C, b"a", opaque=4),
                _req(0x0C, b"miss", opaque=5),
                _req(0x0D, b"a", opaque=6),
                _req(0x0D, b"miss", opaque=7),
                _req(0x1C, b"a", b"\0\0\0\x64", opaque=8),
                _req(0x1D, b"a", b"\0\0\0\0", opaque=9),
                _req(0x1E, b"miss", b"\0\0\0\0", opaque=10),
                _req(0x23, b"a", b"\0\0\0\0", opaque=11),
                _req(0x24, b"a", b"\0\0\0\0", opaque=12),
                _req(0x0A, opaque=13),
            ]
        ),
        "binary_delete_arith": b"".join(
            [
                _req(0x01, b"n", _FE, b"10"),
                _req(0x05, b"n", _INCR, opaque=1),
                _req(0x06, b"n", _INCR, opaque=2),
                _req(0x15, b"n", _INCR, opaque=3),
                _req(0x05, b"new", _INCR, opaque=4),
                _req(0x05, b"absent", _NO_CREATE, opaque=5),
                _req(0x01, b"s", _FE, b"abc"),
                _req(0x05, b"s", _INCR, opaque=6),
                _req(0x04, b"n", opaque=7),
                _req(0x04, b"n", opaque=8),
                _req(0x14, b"s", opaque=9),
                _req(0x04, b"new", opaque=10, cas=1),
                _req(0x16, b"n", _INCR, opaque=11),
                _req(0x0A, opaque=12),
            ]
        ),
        "binary_server": b"".join(
            [
                _req(0x0A, opaque=1),
                _req(0x0B, opaque=2),
                _req(0x10, opaque=3),
                _req(0x10, b"settings", opaque=4),
                _req(0x10, b"items"),
                _req(0x10, b"slabs"),
                _req(0x10, b"detail on"),
                _req(0x10, b"detail dump"),
                _req(0x10, b"bogus"),
                _req(0x10, b"reset"),
                _req(0x1B, b"", b"\0\0\0\x01") + b"\0" * 4,
                _req(0x20),
                _req(0x21, b"PLAIN", b"", b"\0u\0p"),
                _req(0x22, b"PLAIN", b"", b"x"),
                _req(0x08, opaque=5),
                _req(0x18, b"", b"\0\0\0\x02"),
                _req(0x44, b"k", b"", b"zz") + b"\0",
                _req(0x07, opaque=6),
                _req(0x0A),
            ]
        ),
        "binary_errors": b"".join(
            [
                _req(0x01, b"big", _FE, b"v" * 3000),
                _req(0x00, b"big"),
                _req(0x17),
                _req(0x0A),
            ]
        ),
        "binary_budget": b"".join([_req(0x11, b"k%d" % i, _FE, b"v" * 1900) for i in range(3)])
        + b"".join(_req(0x0D, b"k%d" % (i % 3), opaque=i) for i in range(150))
        + _req(0x0A, opaque=999),
        "binary_bad_lengths": _req(0x0A)
        + struct.pack(">BBHBBHIIQ", 0x80, 0x00, 5, 0, 0, 0, 2, 0, 0)
        + b"kkkkk",
        "binary_bad_magic": _req(0x0A) + b"\x81" + b"\0" * 23 + _req(0x0A),
        "binary_bad_body": _req(0x0A) + _req(0x0A, b"", b"", b"x") + _req(0x0A),
    }
)
MEMORY_BINARY = {"binary_budget": 2}

# (feed lengths, memory index, item size index, tick) for each file of a stream: small memory
# limits (harness.MEMORY_LIMITS), so the streams evict as they go.
VARIANTS = {
    "whole": ((), 1, 2, False),
    "split": ((1, 7, 3, 64), 0, 2, True),
}
# Streams that need more room: the budget ones must hold three values of 1900 bytes.
MEMORY = {"budget": 2, **MEMORY_BINARY}


def main() -> None:
    CORPUS.mkdir(exist_ok=True)
    for name, stream in STREAMS.items():
        for variant, (lengths, memory, item_size, tick) in VARIANTS.items():
            data = encode(stream, lengths, MEMORY.get(name, memory), item_size, tick)
            (CORPUS / f"{name}-{variant}").write_bytes(data)


if __name__ == "__main__":
    main()
