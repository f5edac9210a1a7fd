"""The binary session and authentication, sans-IO, on both backends and both sessions.

memcached's own answers are pinned by test_binary_oracle.py; here: what the oracle cannot show
(authentication, which memcached cannot offer to text and binary clients at once), the bounds
(the reply budget, dribbled input) and that a stream's replies never depend on where it is split.
"""

from __future__ import annotations

import struct

import pytest
from binproto import packets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pycache_d.protocol import auth, new_session
from pycache_d.protocol import binary as b
from pycache_d.protocol.context import ServerContext
from pycache_d.protocol.session import REPLY_BUDGET, Session
from pycache_d.store import BACKENDS

from conftest import backend_class

#: (store backend, session): the Python session over each store, the compiled one over the native.
COMBOS = [("native", "compiled"), ("native", "python"), ("python", "python")]


@pytest.fixture(params=COMBOS, ids=["-".join(c) for c in COMBOS])
def make(request, clock):
    """make(creds=None, **store_kwargs) -> a session of this kind over a fresh store."""
    backend, kind = request.param

    def build(creds: auth.Credentials | None = None, **kwargs):
        store = backend_class(backend)(clock=clock, **kwargs)
        ctx = ServerContext(store, clock=clock)
        ctx.auth = creds
        session = new_session(store, ctx) if kind == "compiled" else Session(store, ctx)
        assert (type(session).__name__ == "NativeSession") == (kind == "compiled")
        return session

    return build


def flags_exptime(flags: int = 0, exptime: int = 0) -> bytes:
    return struct.pack(">II", flags, exptime)


def rows(reply: bytes) -> list[tuple]:
    got, rest = packets(reply)
    assert rest == b""
    return [(p.opcode, p.status, p.opaque, p.extras, p.key, p.value) for p in got]


def drain(s, data: bytes) -> list[bytes]:
    """Feed ``data`` as a connection does; return each feed's reply."""
    out = [s.feed(data)]
    while s.more:
        out.append(s.feed(b""))
    return out


# -- the value is data, never commands ------------------------------------------------------------


def test_a_value_holding_text_commands_is_stored_not_run(make):
    s = make()
    value = b"x\r\nflush_all\r\nset a 0 0 1\r\nb\r\n"
    reply = s.feed(b.request(b.SET, b"k", flags_exptime(), value) + b.request(b.GET, b"k", opaque=7))
    assert rows(reply)[1] == (b.GET, 0, 7, b"\0\0\0\0", b"", value)
    assert s.store.get(b"a") is None


# -- splitting never changes the replies ----------------------------------------------------------

requests = st.lists(
    st.one_of(
        st.tuples(
            st.sampled_from([b.SET, b.SETQ, b.ADD, b.APPENDQ]),
            st.sampled_from([b"a", b"bb"]),
            st.binary(max_size=40),
        ).map(lambda t: b.request(t[0], t[1], b"" if t[0] == b.APPENDQ else flags_exptime(1, 0), t[2])),
        st.tuples(
            st.sampled_from([b.GET, b.GETQ, b.GETK, b.GETKQ, b.DELETEQ]), st.sampled_from([b"a", b"bb"])
        ).map(lambda t: b.request(t[0], t[1])),
        st.sampled_from(
            [
                b.request(b.NOOP),
                b.request(b.VERSION),
                b.request(b.STAT, b"settings"),
                b.request(b.INCREMENT, b"n", struct.pack(">QQI", 1, 5, 0)),
            ]
        ),
    ),
    max_size=12,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stream=requests)
def test_every_split_answers_the_same(make, stream):
    data = b"".join(stream) + b.request(b.NOOP, opaque=9)
    whole = b"".join(drain(make(), data))
    assert whole.endswith(b.response(b.NOOP, 0, 9))
    version = rows(whole)
    for cut in range(1, len(data)):
        s = make()
        got = b"".join(drain(s, data[:cut]) + drain(s, data[cut:]))
        assert rows(got) == version, cut
    s = make()
    assert b"".join(b"".join(drain(s, data[i : i + 1])) for i in range(len(data))) == whole


@pytest.mark.parametrize("op", [b.SET, b.ADD, b.APPEND, b.SASL_AUTH])
def test_an_empty_value_completes_the_request_at_once(make, op):
    # libmemcached's memcached_exist() sends an ADD of an empty value and waits for the answer.
    s = make()
    s.feed(b.request(b.SET, b"k", flags_exptime(), b"v"))
    extras = b"" if op in (b.APPEND, b.SASL_AUTH) else flags_exptime(0, 2678400)
    got = rows(s.feed(b.request(op, b"k", extras, opaque=4)))
    assert len(got) == 1 and got[0][0] == op and got[0][2] == 4


def test_byte_by_byte_value_is_not_quadratic(make):
    # Each byte of a large value is only appended: nothing is answered until it is whole.
    s = make(max_item_size=1024 * 1024)
    data = b.request(b.SET, b"k", flags_exptime(), b"v" * 200_000)
    last = len(data) - 1
    for i in range(0, last, 1000):
        assert s.feed(data[i : min(i + 1000, last)]) == b""
    assert rows(s.feed(data[last:]))[0][:2] == (b.SET, 0)
    assert s.store.get(b"k") == b"v" * 200_000


# -- bounds ---------------------------------------------------------------------------------------


def test_a_quiet_getkq_batch_streams_within_the_budget(make):
    s = make(max_item_size=1024 * 1024)
    value = b"v" * (200 * 1024)
    s.feed(b.request(b.SETQ, b"big", flags_exptime(), value))
    batch = b"".join(b.request(b.GETKQ, b"big", opaque=i) for i in range(40)) + b.request(b.NOOP, opaque=99)
    feeds = drain(s, batch)
    assert len(feeds) > 10  # one feed never answers the whole batch
    for reply in feeds:
        assert len(reply) <= REPLY_BUDGET + len(value) + 1024
    got = rows(b"".join(feeds))
    assert [r[2] for r in got] == [*range(40), 99]
    assert all(r[4:] == (b"big", value) for r in got[:-1])


def test_too_large_value_is_swallowed_not_buffered(make):
    s = make(max_item_size=4096)
    s.feed(b.request(b.SET, b"k", flags_exptime(), b"old"))
    head = b.request(b.SET, b"k", flags_exptime(), b"v" * 100_000)[: 24 + 8 + 1]
    reply = s.feed(head)
    assert rows(reply) == [(b.SET, b.E2BIG, 0, b"", b"", b"Too large.")]
    for _ in range(10):
        assert s.feed(b"v" * 10_000) == b""
    assert s.idle
    assert rows(s.feed(b.request(b.GET, b"k"))) == [(b.GET, b.KEY_ENOENT, 0, b"", b"", b"Not found")]


def test_stat_groups_are_the_text_ones_reframed(make):
    s = make()
    got = rows(s.feed(b.request(b.STAT, opaque=3)))
    fields = {r[4]: r[5] for r in got[:-1]}
    assert got[-1] == (b.STAT, 0, 3, b"", b"", b"")
    assert (
        fields[b"version"].startswith(b"1.6.18-pycache-d-") and b"pid" in fields and b"curr_items" in fields
    )
    assert all(r[:3] == (b.STAT, 0, 3) for r in got)
    settings = {r[4]: r[5] for r in rows(s.feed(b.request(b.STAT, b"settings")))[:-1]}
    assert settings[b"binding_protocol"] == b"auto-negotiate" and settings[b"auth_enabled_sasl"] == b"no"
    assert rows(s.feed(b.request(b.STAT, b"conns", opaque=4))) == [
        (b.STAT, b.KEY_ENOENT, 4, b"", b"", b"Not found")
    ]


def test_bad_magic_closes_silently(make):
    s = make()
    assert s.feed(b.request(b.NOOP)) != b""
    assert s.feed(b"\x81" + b"\0" * 23) == b""
    assert s.closing


# -- SASL ------------------------------------------------------------------------------------------

CREDS = auth.parse(b"alice:s3cret\nbob:pw:with:colons\n")


def sasl(user: bytes, password: bytes, mech: bytes = b"PLAIN", authzid: bytes = b"") -> bytes:
    return b.request(b.SASL_AUTH, mech, value=authzid + b"\0" + user + b"\0" + password, opaque=5)


def test_sasl_list_mechs_says_plain(make):
    s = make(CREDS)
    assert rows(s.feed(b.request(b.SASL_LIST_MECHS))) == [(b.SASL_LIST_MECHS, 0, 0, b"", b"", b"PLAIN")]


def test_sasl_before_auth_only_version_and_sasl_are_answered(make):
    s = make(CREDS)
    assert rows(s.feed(b.request(b.VERSION)))[0][:2] == (b.VERSION, 0)
    reply = s.feed(b.request(b.GET, b"k", opaque=3) + b.request(b.NOOP))
    assert rows(reply) == [(b.GET, b.AUTH_ERROR, 3, b"", b"", b"Auth failure.")]
    assert s.closing


@pytest.mark.parametrize(
    "user, password, authzid, mech",
    [
        (b"alice", b"wrong", b"", b"PLAIN"),
        (b"alice", b"s3cre", b"", b"PLAIN"),
        (b"eve", b"s3cret", b"", b"PLAIN"),
        (b"alice", b"s3cret", b"bob", b"PLAIN"),
        (b"alice", b"s3cret", b"", b"CRAM-MD5"),
    ],
)
def test_sasl_bad_credentials_fail_and_keep_the_connection(make, user, password, authzid, mech):
    s = make(CREDS)
    assert rows(s.feed(sasl(user, password, mech, authzid))) == [
        (b.SASL_AUTH, b.AUTH_ERROR, 5, b"", b"", b"Auth failure.")
    ]
    assert not s.closing and not s.authenticated
    assert s.ctx.counters["auth_errors"] == 1
    assert rows(s.feed(sasl(b"bob", b"pw:with:colons")))[0][1] == 0


def test_sasl_plain_authenticates_then_everything_is_served(make):
    s = make(CREDS)
    assert not s.loggable
    reply = s.feed(
        sasl(b"alice", b"s3cret", authzid=b"alice")
        + b.request(b.SET, b"k", flags_exptime(), b"v")
        + b.request(b.GET, b"k", opaque=8)
    )
    got = rows(reply)
    assert got[0] == (b.SASL_AUTH, 0, 5, b"", b"", b"Authenticated")
    assert got[2] == (b.GET, 0, 8, b"\0\0\0\0", b"", b"v")
    assert s.authenticated and not s.loggable  # a binary client may authenticate again
    assert s.ctx.counters["auth_cmds"] == 1


def test_sasl_step_without_a_start_fails(make):
    s = make(CREDS)
    reply = s.feed(b.request(b.SASL_STEP, b"PLAIN", value=b"\0alice\0s3cret"))
    assert rows(reply)[0][:2] == (b.SASL_STEP, b.AUTH_ERROR)


def test_without_auth_sasl_is_an_unknown_command(make):
    s = make()
    reply = s.feed(sasl(b"alice", b"s3cret") + b.request(b.NOOP, opaque=1))
    assert rows(reply) == [
        (b.SASL_AUTH, b.UNKNOWN_COMMAND, 5, b"", b"", b"Unknown command"),
        (b.NOOP, 0, 1, b"", b"", b""),
    ]


# -- memcached's ASCII auth -----------------------------------------------------------------------


def test_text_before_auth_is_refused_line_by_line(make):
    s = make(CREDS)
    assert s.feed(b"get k\r\nversion\r\n") == auth.UNAUTHENTICATED * 2
    assert not s.closing and not s.loggable


def test_text_auth_failure_then_success(make):
    s = make(CREDS)
    assert s.feed(b"set x 0 0 12\r\nalice wrong!\r\n") == auth.AUTH_FAILURE
    assert s.feed(b"set x 0 0 2\r\nab\r\n") == auth.BAD_TOKEN_FORMAT
    assert s.feed(b"set x 0 0 3\r\nabcde") == auth.BAD_TERMINATION
    assert s.feed(b"set whatever 5 6 12\r\nalice s3cret\r\nset k 0 0 1\r\nv\r\nget k\r\n") == (
        b"STORED\r\nSTORED\r\nVALUE k 0 1\r\nv\r\nEND\r\n"
    )
    assert s.authenticated and s.loggable
    assert s.ctx.counters["auth_cmds"] == 2 and s.ctx.counters["auth_errors"] == 1
    assert s.store.get(b"x") is None and s.store.get(b"whatever") is None


def test_text_auth_split_at_every_byte(make):
    data = b"set a 0 0 18\r\nbob pw:with:colons\r\nget a\r\n"
    for cut in range(1, len(data)):
        s = make(CREDS)
        assert s.feed(data[:cut]) + s.feed(data[cut:]) == b"STORED\r\nEND\r\n", cut


def test_text_auth_payload_too_large_is_not_buffered(make):
    s = make(CREDS)
    assert s.feed(b"set a 0 0 1000000\r\n") == b""
    for _ in range(100):
        assert s.feed(b"x" * 10_000) == b""
    assert s.feed(b"\r\n") == auth.AUTH_FAILURE
    assert s.feed(b"get a\r\n") == auth.UNAUTHENTICATED


def test_text_junk_without_newline_closes(make):
    s = make(CREDS)
    s.feed(b"x" * 3000)
    assert s.closing


def test_a_reload_applies_to_the_next_attempt(make):
    s = make(CREDS)
    s.ctx.auth = auth.parse(b"carol:new\n")
    assert s.feed(b"set a 0 0 12\r\nalice s3cret\r\n") == auth.AUTH_FAILURE
    assert s.feed(b"set a 0 0 9\r\ncarol new\r\n") == b"STORED\r\n"


# -- the auth file ------------------------------------------------------------------------------


def test_auth_file_format_as_memcached():
    creds = auth.parse(b"a:1\r\n:empty-user\nc:\nd:x\0ignored\ne:f:g")
    assert creds.entries == ((b"a", b"1"), (b"", b"empty-user"), (b"c", b""), (b"d", b"x"), (b"e", b"f:g"))
    assert creds.check(b"e", b"f:g") and not creds.check(b"e", b"f") and not creds.check(b"a", b"1\r")
    assert len(auth.parse(b"".join(b"u%d:p\n" % i for i in range(20))).entries) == 20


@pytest.mark.parametrize("data", [b"nocolon\n", b"a:b\n\nc:d\n", b"a:" + b"p" * 300 + b"\n"])
def test_bad_auth_file_names_the_line_never_its_text(data):
    with pytest.raises(auth.AuthFileError) as e:
        auth.parse(data)
    assert "line" in str(e.value) and b"p" * 10 not in str(e.value).encode() and "nocolon" not in str(e.value)


# -- the compiled session against the Python one ------------------------------------------------

HOT_KEYS = [b"a", b"bb", b"k" * 250, b"k" * 251]
any_request = st.one_of(
    st.tuples(
        st.sampled_from(
            [
                b.GET,
                b.GETQ,
                b.GETK,
                b.GETKQ,
                b.SET,
                b.SETQ,
                b.ADD,
                b.ADDQ,
                b.REPLACE,
                b.REPLACEQ,
                b.DELETE,
                b.DELETEQ,
                b.NOOP,
                b.INCREMENT,
                b.APPEND,
                b.TOUCH,
                b.GAT,
                b.GATQ,
                b.GATK,
                b.GATKQ,
                b.VERSION,
                b.QUITQ,
                0x55,
            ]
        ),
        st.sampled_from(HOT_KEYS),
        st.sampled_from(
            [
                b"",
                flags_exptime(3, 0),
                flags_exptime(0, 2**32 - 1),
                b"\0" * 20,
                b"\0" * 4,
                b"\0\0\0\x05",
                b"\xff" * 4,
            ]
        ),
        st.binary(max_size=30),
        st.integers(0, 2**32 - 1),
        st.sampled_from([0, 0, 0, 1, 2**64 - 1]),
    ).map(lambda t: b.request(*t)),
    st.binary(min_size=1, max_size=30).map(lambda junk: b"\x80" + junk),  # a header of any lengths
)


needs_native = pytest.mark.skipif("native" not in BACKENDS, reason="the native store is not built")


@pytest.mark.asan
@needs_native
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    stream=st.lists(any_request, max_size=20),
    cuts=st.lists(st.integers(0, 4000), max_size=6),
    item_size=st.sampled_from([1024, 1024 * 1024]),
)
def test_compiled_binary_session_answers_as_the_python_one(clock, stream, cuts, item_size):
    data = b.request(b.NOOP) + b"".join(stream)
    sessions = []
    for compiled in (True, False):
        store = backend_class("native")(clock=clock, max_item_size=item_size)
        ctx = ServerContext(store, clock=clock)
        sessions.append(new_session(store, ctx) if compiled else Session(store, ctx))
    replies = []
    for s in sessions:
        out = []
        prev = 0
        for cut in [*sorted(c % (len(data) + 1) for c in cuts), len(data)]:
            out += drain(s, data[prev:cut])
            prev = cut
        replies.append((b"".join(out), s.closing, s.idle))
    assert type(sessions[0]).__name__ == "NativeSession"
    assert replies[0] == replies[1]
    assert sorted(sessions[0].store.items()) == sorted(sessions[1].store.items())


@pytest.mark.asan
@needs_native
@pytest.mark.parametrize("creds", [None, CREDS])
def test_compiled_session_answers_hot_binary_requests_itself(clock, creds):
    store = backend_class("native")(clock=clock)
    ctx = ServerContext(store, clock=clock)
    ctx.auth = creds
    s = new_session(store, ctx)
    assert type(s).__name__ == "NativeSession"
    s.feed(b.request(b.NOOP) if creds is None else sasl(b"alice", b"s3cret"))
    assert s.authenticated
    python_feeds = []
    binary_session = s.slow._binary
    real = binary_session.feed
    binary_session.feed = lambda data: python_feeds.append(data) or real(data)
    hot = b"".join(
        [
            b.request(b.SETQ, b"k", flags_exptime(), b"v"),
            b.request(b.GETK, b"k"),
            b.request(b.GETQ, b"x"),
            b.request(b.GATK, b"k", b"\0\0\0\x05"),
            b.request(b.GATQ, b"x", b"\0\0\0\x05"),
            b.request(b.DELETE, b"k"),
            b.request(b.NOOP),
        ]
    )
    got = rows(s.feed(hot * 50))
    assert len(got) == 200 and python_feeds == []
    assert rows(s.feed(b.request(b.VERSION)))[0][:2] == (b.VERSION, 0)  # not hot: the Python session
    assert len(python_feeds) == 1
    assert len(rows(s.feed(hot))) == 4 and len(python_feeds) == 1  # and back to the compiled path


@pytest.mark.asan
@needs_native
def test_compiled_session_sends_an_unauthenticated_client_through_the_check(clock):
    store = backend_class("native")(clock=clock)
    ctx = ServerContext(store, clock=clock)
    ctx.auth = CREDS
    s = new_session(store, ctx)
    store.set(b"k", b"secret")
    assert rows(s.feed(b.request(b.GET, b"k")))[0][1] == b.AUTH_ERROR and s.closing
    t = new_session(store, ctx)
    assert t.feed(b"get k\r\n") == auth.UNAUTHENTICATED
