"""No client byte reaches a reply line unescaped (issue 13): keys holding CR, LF, NUL or space.

A key given in base64 (meta ``b``) may decode to any bytes. Before, ``me <key> b`` wrote the
decoded key raw into its reply line, and so did ``mg <key> b k`` for an item whose base64 mark
was lost: whoever wrote the key chose what the next reader parsed as the following replies.
memcached 1.6.18 has the same hole for keys that mg/ma ``N`` vivified; we show every such key in
base64. A classic command's key is the request's own token (split on spaces, ended by LF, cut at
NUL), so echoing it cannot add a line or a token either.

Every command that echoes a key is fed such keys, on both backends, through the python and the
compiled session, and the reply stream must parse, as a client parses it, into exactly the
replies expected: a line per reply, each data block where its header says. A real daemon is fed
the issue's reproducer, and its -vv log must keep the key's bytes escaped.
"""

from __future__ import annotations

import base64
import re

import pytest

from pycache_d.protocol.context import ServerContext
from pycache_d.protocol.session import Session
from pycache_d.store import BACKENDS

from conftest import FakeClock, backend_class

pytest.register_assert_rewrite("daemon")
pytest_plugins = ["daemon"]

from daemon import Daemon  # noqa: E402

#: Keys that would break a reply line if written raw: the issue's reproducer first.
NASTY = [
    b"x\r\nEN\r\nVA 4 kfake\r\n",
    b"a b",
    b"\x00",
    b"\r\n",
    b"\n",
    b"k\r",
    b" HD",
    b"k\x00v\x00",
    b"VALUE x 0 1",
    b"\r\nEND\r\n",
]


@pytest.fixture(params=["python/python", "python/native", "compiled/native"])
def make_session(request):
    """Build sessions of one kind over a fresh store: ``session/backend`` (the compiled session
    drives the native store only)."""
    kind, backend = request.param.split("/")
    cls = backend_class(backend)

    def make():
        store = cls(clock=FakeClock())
        ctx = ServerContext(store)
        if kind == "compiled":
            from pycache_d.protocol._csession import NativeSession

            return NativeSession(store, ctx)
        return Session(store, ctx)

    return make


def replies(stream: bytes) -> list[tuple[bytes, bytes | None]]:
    """Split a reply stream as a client does: ``(line, data block or None)`` per line.

    A ``VALUE`` or ``VA`` line is followed by the data block of the length it states, then CRLF.
    """
    out: list[tuple[bytes, bytes | None]] = []
    pos = 0
    while pos < len(stream):
        eol = stream.index(b"\r\n", pos)
        line = stream[pos:eol]
        pos = eol + 2
        toks = line.split(b" ")
        data = None
        if toks[0] in (b"VALUE", b"VA"):
            n = int(toks[3] if toks[0] == b"VALUE" else toks[1])
            data = stream[pos : pos + n]
            assert stream[pos + n : pos + n + 2] == b"\r\n", stream
            pos += n + 2
        out.append((line, data))
    return out


def ask(session, data: bytes) -> list[tuple[bytes, bytes | None]]:
    reply = session.feed(data)
    while session.more:
        reply += session.feed(b"")
    return replies(reply)


@pytest.mark.parametrize("key", NASTY, ids=repr)
def test_meta_commands_show_a_binary_key_in_base64(make_session, key):
    b64 = base64.b64encode(key)
    s = make_session()
    assert ask(s, b"ms %s 2 b k c O1 T0\r\nhi\r\n" % b64) == [(b"HD k%s b c1 O1" % b64, None)]
    assert ask(s, b"mg %s b k v c f s t\r\n" % b64) == [(b"VA 2 k%s b c1 f0 s2 t-1" % b64, b"hi")]
    assert ask(s, b"me %s b\r\n" % b64) == [
        (b"ME %s exp=-1 la=0 cas=1 fetch=yes cls=1 size=%d" % (b64, len(key) + 61), None)
    ]
    assert ask(s, b"md %s b k q\r\nmg %s b k O2\r\nmd %s b k\r\n" % (b64, b64, b64)) == [
        (b"EN k%s b O2" % b64, None),
        (b"NF k%s b" % b64, None),
    ]
    # Vivified items carry no base64 mark (memcached writes their keys raw): still base64 here.
    assert ask(s, b"mg %s b N30 k\r\nmg %s b k\r\nme %s b\r\n" % (b64, b64, b64)) == [
        (b"HD k%s b W" % b64, None),
        (b"HD k%s b Z" % b64, None),
        (b"ME %s exp=-30 la=0 cas=2 fetch=yes cls=1 size=%d" % (b64, len(key) + 59), None),
    ]
    assert ask(s, b"md %s b\r\nma %s b N0 J5 k v\r\nma %s b k c\r\nmg %s b k v\r\n" % ((b64,) * 4)) == [
        (b"HD", None),
        (b"VA 1 k%s b" % b64, b"5"),
        (b"HD k%s b c4" % b64, None),
        (b"VA 1 k%s b" % b64, b"6"),
    ]
    # an append builds a fresh item (no base64 mark either)
    assert ask(s, b"ms %s 1 b MA k\r\nx\r\nmg %s b k v\r\n" % (b64, b64)) == [
        (b"HD k%s b" % b64, None),
        (b"VA 2 k%s b" % b64, b"6x"),
    ]
    assert ask(s, b"ma %s b MX k\r\nmd %s b I k\r\nmg %s b k\r\n" % ((b64,) * 3)) == [
        (b"CLIENT_ERROR invalid mode for ma M token", None),
        (b"HD k%s b" % b64, None),
        (b"HD k%s b X W" % b64, None),
    ]


def test_the_issues_reproducer(make_session):
    s = make_session()
    got = ask(s, b"ms eA0KRU4NClZBIDQga2Zha2UNCg== 2 b\r\nhi\r\nme eA0KRU4NClZBIDQga2Zha2UNCg== b\r\n")
    assert got == [
        (b"HD", None),
        (b"ME eA0KRU4NClZBIDQga2Zha2UNCg== exp=-1 la=0 cas=1 fetch=no cls=1 size=80", None),
    ]


def test_a_plain_key_reached_through_base64_is_shown_as_memcached_shows_it(make_session):
    """A key a token could hold, stored by a classic set, is shown plain (memcached does too)."""
    s = make_session()
    assert ask(s, b"set foo 0 0 1\r\nx\r\nmg Zm9v b k\r\nme Zm9v b\r\n") == [
        (b"STORED", None),
        (b"HD kfoo", None),
        (b"ME foo exp=-1 la=0 cas=1 fetch=yes cls=1 size=63", None),
    ]


CR_KEYS = [b"a\rb", b"c\r", b"\x1b[31mred", b"\tk"]  # what a classic token may hold


@pytest.mark.parametrize("key", CR_KEYS, ids=repr)
def test_classic_commands_echo_only_the_requests_own_token(make_session, key):
    s = make_session()
    got = ask(
        s,
        b"set %s 5 0 2\r\nhi\r\nget %s\r\ngets %s %s\r\ngat 0 %s\r\ngats 0 %s\r\n"
        b"append %s 0 0 1\r\n!\r\ntouch %s 0\r\nincr %s 1\r\ndelete %s\r\nget %s\r\n" % ((key,) * 11),
    )
    assert got == [
        (b"STORED", None),
        (b"VALUE %s 5 2" % key, b"hi"),
        (b"END", None),
        (b"VALUE %s 5 2 1" % key, b"hi"),
        (b"VALUE %s 5 2 1" % key, b"hi"),
        (b"END", None),
        (b"VALUE %s 5 2" % key, b"hi"),
        (b"END", None),
        (b"VALUE %s 5 2 1" % key, b"hi"),
        (b"END", None),
        (b"STORED", None),
        (b"TOUCHED", None),
        (b"CLIENT_ERROR cannot increment or decrement non-numeric value", None),
        (b"DELETED", None),
        (b"END", None),
    ]
    # meta commands name it by its token too
    assert ask(s, b"ms %s 1 k\r\nx\r\nmg %s k v\r\nme %s\r\n" % ((key,) * 3)) == [
        (b"HD k%s" % key, None),
        (b"VA 1 k%s" % key, b"x"),
        (b"ME %s exp=-1 la=0 cas=3 fetch=yes cls=1 size=%d" % (key, len(key) + 60), None),
    ]


def test_lf_space_and_nul_cannot_be_part_of_a_classic_key(make_session):
    """They end the line, split the tokens or end the line's text, as in memcached: the replies
    are those of the commands the bytes spell, never a forged line."""
    s = make_session()
    assert ask(s, b"set k 0 0 1\r\nv\r\n") == [(b"STORED", None)]
    assert ask(s, b"get k\nEND\r\n") == [(b"VALUE k 0 1", b"v"), (b"END", None), (b"ERROR", None)]
    assert ask(s, b"get k\x00\r\nVALUE x 0 1\r\n") == [
        (b"VALUE k 0 1", b"v"),
        (b"END", None),
        (b"ERROR", None),
    ]
    assert ask(s, b"get nope k\r\n") == [(b"VALUE k 0 1", b"v"), (b"END", None)]
    assert ask(s, b"set a\nb 0 0 1\r\nx\r\n") == [(b"ERROR", None), (b"ERROR", None), (b"ERROR", None)]
    assert ask(s, b"mg k\nEN k\r\n") == [(b"HD", None), (b"ERROR", None)]


@pytest.mark.parametrize("backend", ["native", "python"])
def test_a_daemon_answers_and_logs_binary_keys_safely(backend):
    if backend not in BACKENDS:
        pytest.skip("native backend is not built")
    with Daemon("-vv", backend=backend) as d:
        assert d.request(b"set a\r\x1bb 0 0 1\r\nx\r\n") == b"STORED\r\n"
        reply = d.request(
            b"ms eA0KRU4NClZBIDQga2Zha2UNCg== 2 b\r\nhi\r\nme eA0KRU4NClZBIDQga2Zha2UNCg== b\r\n"
            b"get a\r\x1bb\r\n",
            until=b"END\r\n",
        )
        # a daemon's CAS values start at its epoch (they never repeat across restarts): mask it
        assert replies(re.sub(rb" cas=\d+ ", b" cas=N ", reply)) == [
            (b"HD", None),
            (b"ME eA0KRU4NClZBIDQga2Zha2UNCg== exp=-1 la=0 cas=N fetch=no cls=1 size=80", None),
            (b"VALUE a\r\x1bb 0 1", b"x"),
            (b"END", None),
        ]
        d.wait_for_log(r"> 19 bytes b'set a\\r\\x1bb 0 0 1")  # the -vv lines show bytes escaped
    # Every log line is one line of printable text: no CR or escape byte got into it.
    assert not re.search(r"[\r\x1b\x00]", d.log)
