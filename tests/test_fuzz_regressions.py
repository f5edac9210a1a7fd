"""Replay the fuzzers' seed corpus and every crash they found through the fuzz checks, without atheris.

Each file of fuzz/corpus/ and fuzz/crashes/ goes through fuzz/harness.py's two checks: the
pure-Python session's invariants (well-formed replies, bounded buffering, split-invariance) and
the differential one (the compiled session on the native store answers as the Python session on
the python store). ``make fuzz`` finds new inputs; this keeps the ones committed passing in CI,
and under AddressSanitizer in ``make test-asan``.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.asan

FUZZ = Path(__file__).resolve().parent.parent / "fuzz"

# Reproducers of bugs found by fuzzing and not fixed yet: (check, file name) -> what is wrong.
KNOWN_BUGS: dict[tuple[str, str], str] = {}


def _load_harness():
    spec = importlib.util.spec_from_file_location("fuzz_harness", FUZZ / "harness.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


harness = _load_harness()


def _inputs(check: str) -> list:
    params = []
    for folder in ("corpus", "crashes"):
        for path in sorted((FUZZ / folder).glob("*")) if (FUZZ / folder).is_dir() else []:
            reason = KNOWN_BUGS.get((check, path.name))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            params.append(pytest.param(path, id=f"{folder}/{path.name}", marks=marks))
    return params


INPUTS = _inputs("python")


def test_the_corpus_covers_every_command_family():
    streams = b"".join(harness.decode(p.values[0].read_bytes()).stream for p in INPUTS)
    for word in (b"get", b"gets", b"gat", b"gats", b"set", b"add", b"replace", b"append", b"prepend", b"cas"):
        assert b"\n%s " % word in streams or streams.startswith(word + b" "), word
    for word in (b"delete", b"incr", b"decr", b"touch", b"flush_all", b"stats", b"version", b"verbosity"):
        assert b"\n" + word in streams, word
    for word in (b"mg", b"ms", b"md", b"ma", b"mn", b"me", b"cache_memlimit", b"shutdown", b"quit"):
        assert b"\n" + word in streams, word


#: The opcodes memcached 1.6.18 answers (verbosity, 0x1b, is an unknown one there).
ANSWERED = frozenset((*range(0x00, 0x1B), 0x1C, 0x1D, 0x1E, *range(0x20, 0x25)))


def _opcodes(stream: bytes) -> set[int]:
    """The opcodes of the well-framed binary requests at the start of ``stream``."""
    seen, pos = set(), 0
    while len(stream) - pos >= 24 and stream[pos] == 0x80:
        op, keylen, extlen = (
            stream[pos + 1],
            int.from_bytes(stream[pos + 2 : pos + 4], "big"),
            stream[pos + 4],
        )
        seen.add(op)
        pos += 24 + int.from_bytes(stream[pos + 8 : pos + 12], "big")
        if op not in ANSWERED:
            pos += extlen + keylen  # the filler memcached's over-swallow eats (fuzz/seeds.py)
    return seen


def test_the_corpus_covers_every_binary_opcode():
    seen = set()
    for p in INPUTS:
        stream = harness.decode(p.values[0].read_bytes()).stream
        if harness.is_binary(stream):
            seen |= _opcodes(stream)
    assert seen >= {*ANSWERED, 0x1B, 0x44}, sorted(ANSWERED - seen)


@pytest.mark.parametrize("path", INPUTS)
def test_python_session(path: Path):
    harness.check_python(path.read_bytes())


@pytest.mark.parametrize("path", _inputs("native"))
def test_native_session_matches_python_session(path: Path):
    if os.environ.get("PYCACHE_D_NO_EXTENSIONS"):
        pytest.skip("extensions disabled on purpose")
    from pycache_d.protocol._csession import NativeSession

    harness.check_differential(path.read_bytes(), NativeSession)


def test_the_checks_catch_a_broken_reply():
    """The reply check is not vacuous: a short data block or an unknown line fails it."""
    harness.check_replies(b"VALUE a 0 2\r\nhi\r\nEND\r\nHD c1 kab\r\nVA 1 t-1\r\nx\r\n12\r\n")
    for bad in (b"VALUE a 0 3\r\nhi\r\nEND\r\n", b"WHAT\r\n", b"END\r\nSTORED", b"VA x\r\n"):
        with pytest.raises(AssertionError):
            harness.check_replies(bad)


def test_inputs_decode_as_documented():
    data = harness.encode(b"get a\r\n", (2, 3), memory=1, item_size=3, tick=True)
    case = harness.decode(data)
    assert case == harness.Case(b"get a\r\n", (2, 3), 1500, 1 << 20, True)
    assert case.pieces() == [b"ge", b"t a", b"\r\n"]
    assert harness.decode(b"").pieces() == []
