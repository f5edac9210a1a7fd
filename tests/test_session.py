"""The classic text protocol of Session, byte for byte, on both store backends.

The expected replies are memcached 1.6.18's, as observed on the wire (test_memcached_oracle.py
checks the same against a live memcached where one is installed). A fresh store hands out CAS
uniques from 1, so they appear literally.
"""

# The fixtures imported from session_fixtures are used as parameters, which ruff reads as
# redefinitions.
# ruff: noqa: F811

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pycache_d.protocol.context import ServerContext
from pycache_d.protocol.session import MAX_GET_LINE, MAX_LINE, Session

from session_fixtures import ctx, feed_split, make_session, session  # noqa: F401


def test_set_then_get_and_gets(session):
    assert session.feed(b"set k 5 0 3\r\nabc\r\n") == b"STORED\r\n"
    assert session.feed(b"get k\r\n") == b"VALUE k 5 3\r\nabc\r\nEND\r\n"
    assert session.feed(b"gets k\r\n") == b"VALUE k 5 3 1\r\nabc\r\nEND\r\n"


def test_get_many_keys_in_request_order_with_repeats_and_misses(session):
    session.feed(b"set a 0 0 1\r\n1\r\nset b 0 0 1\r\n2\r\n")
    assert session.feed(b"get b nope a b\r\n") == (
        b"VALUE b 0 1\r\n2\r\nVALUE a 0 1\r\n1\r\nVALUE b 0 1\r\n2\r\nEND\r\n"
    )


def test_empty_value_and_binary_value(session):
    assert session.feed(b"set e 0 0 0\r\n\r\nget e\r\n") == b"STORED\r\nVALUE e 0 0\r\n\r\nEND\r\n"
    data = bytes(range(256))
    assert session.feed(b"set b 0 0 256\r\n" + data + b"\r\nget b\r\n") == (
        b"STORED\r\nVALUE b 0 256\r\n" + data + b"\r\nEND\r\n"
    )


@pytest.mark.parametrize(
    ("flags", "stored"),
    [(b"4294967295", b"4294967295"), (b"4294967296", b"0"), (b"+5", b"5"), (b"007", b"7"), (b"5\t", b"5")],
)
def test_flags_parse_like_strtoul(session, flags, stored):
    """memcached range-checks flags as an unsigned long, then keeps 32 bits."""
    assert (
        session.feed(b"set k %s 0 1\r\nx\r\nget k\r\n" % flags)
        == b"STORED\r\nVALUE k %s 1\r\nx\r\nEND\r\n" % stored
    )


@pytest.mark.parametrize(
    "bad", [b"set k -1 0 1", b"set k x 0 1", b"set k 0 x 1", b"set k 0 0 x", b"set k 0 0 -1"]
)
def test_bad_numbers_are_a_bad_command_line_and_the_data_reads_as_a_command(session, bad):
    assert session.feed(bad + b"\r\nx\r\n") == b"CLIENT_ERROR bad command line format\r\nERROR\r\n"


def test_storage_commands_outcomes(session):
    assert session.feed(b"add k 0 0 1\r\na\r\n") == b"STORED\r\n"
    assert session.feed(b"add k 0 0 1\r\nb\r\n") == b"NOT_STORED\r\n"
    assert session.feed(b"replace nope 0 0 1\r\nb\r\n") == b"NOT_STORED\r\n"
    assert session.feed(b"replace k 3 0 1\r\nb\r\n") == b"STORED\r\n"
    assert session.feed(b"append k 9 0 2\r\ncd\r\nprepend k 9 0 1\r\nz\r\n") == b"STORED\r\nSTORED\r\n"
    assert session.feed(b"append nope 0 0 1\r\nx\r\n") == b"NOT_STORED\r\n"
    # append/prepend keep the flags of the item
    assert session.feed(b"get k\r\n") == b"VALUE k 3 4\r\nzbcd\r\nEND\r\n"


def test_cas(session):
    session.feed(b"set k 0 0 1\r\na\r\n")
    assert session.feed(b"cas nope 0 0 1 1\r\nx\r\n") == b"NOT_FOUND\r\n"
    assert session.feed(b"cas k 0 0 1 99\r\nx\r\n") == b"EXISTS\r\n"
    assert session.feed(b"cas k 2 0 1 1\r\nx\r\n") == b"STORED\r\n"
    assert session.feed(b"gets k\r\n") == b"VALUE k 2 1 2\r\nx\r\nEND\r\n"
    assert session.feed(b"cas k 0 0 1 abc\r\nx\r\n") == b"CLIENT_ERROR bad command line format\r\nERROR\r\n"
    assert session.feed(b"cas k 0 0 1\r\nx\r\n") == b"ERROR\r\nERROR\r\n"


def test_noreply_silences_storage_replies_and_their_errors(session):
    assert session.feed(b"set k 0 0 1 noreply\r\nx\r\nadd k 0 0 1 noreply\r\ny\r\n") == b""
    assert session.feed(b"cas k 0 0 1 77 noreply\r\nz\r\nget k\r\n") == b"VALUE k 0 1\r\nx\r\nEND\r\n"
    # the line's error is silenced too; the data block then reads as a command
    assert session.feed(b"set k x 0 1 noreply\r\nx\r\n") == b"ERROR\r\n"
    assert session.feed(b"set k 0 0 1 noreply\r\nxyz\r\n") == b"ERROR\r\n"  # bad data chunk, silent


def test_a_word_that_is_not_noreply_is_ignored(session):
    assert session.feed(b"set k 0 0 1 garbage\r\nx\r\n") == b"STORED\r\n"


def test_bad_data_chunk_resynchronises_after_the_declared_length(session):
    session.feed(b"set k 0 0 1\r\nx\r\n")
    # <bytes>+2 bytes are consumed ("abcde"), the rest ("\r\n") is an empty command line
    assert session.feed(b"set k 0 0 3\r\nabcde\r\nget k\r\n") == (
        b"CLIENT_ERROR bad data chunk\r\nERROR\r\nVALUE k 0 1\r\nx\r\nEND\r\n"
    )
    assert session.feed(b"set k 0 0 1\r\nxy\r\n") == b"CLIENT_ERROR bad data chunk\r\nERROR\r\n"


def test_too_large_value_is_swallowed_and_drops_the_old_value(store, session):
    session.feed(b"set k 0 0 1\r\nx\r\n")
    size = store.max_item_size
    stream = b"set k 0 0 %d\r\n" % size + b"v" * size + b"\r\nget k\r\n"
    assert session.feed(stream) == b"SERVER_ERROR object too large for cache\r\nEND\r\n"
    assert session.ctx.counters["store_too_large"] == 1
    # noreply silences it; add keeps the old value
    session.feed(b"set k 0 0 1\r\nx\r\n")
    assert session.feed(b"add k 0 0 %d noreply\r\n" % size + b"v" * size + b"\r\nget k\r\n") == (
        b"VALUE k 0 1\r\nx\r\nEND\r\n"
    )


def test_a_swallowed_block_is_never_buffered(session):
    size = 50 * 1024 * 1024
    assert session.feed(b"set k 0 0 %d\r\n" % size) == b"SERVER_ERROR object too large for cache\r\n"
    chunk = b"v" * 65536
    for _ in range(size // len(chunk)):
        assert session.feed(chunk) == b""
        assert len(session._buf) == 0
    assert session.feed(b"\r\nget k\r\n") == b"END\r\n"


def test_out_of_memory_value(make_store, clock):
    store = make_store(max_bytes=1000)
    s = Session(store, ServerContext(store, clock=clock))
    assert (
        s.feed(b"set k 0 0 2000\r\n" + b"v" * 2000 + b"\r\n")
        == b"SERVER_ERROR out of memory storing object\r\n"
    )
    assert s.ctx.counters["store_no_memory"] == 1


def test_key_length_limit(session):
    long_key = b"k" * 251
    assert session.feed(b"set %s 0 0 1\r\nx\r\n" % (b"k" * 250)) == b"STORED\r\n"
    assert (
        session.feed(b"set %s 0 0 1\r\nx\r\n" % long_key)
        == b"CLIENT_ERROR bad command line format\r\nERROR\r\n"
    )
    assert session.feed(b"get %s\r\n" % long_key) == b"CLIENT_ERROR bad command line format\r\n"
    # memcached drops what it gathered for the command, and stops at the long key
    session.feed(b"set a 0 0 1\r\nx\r\n")
    assert session.feed(b"get a %s a\r\n" % long_key) == b"CLIENT_ERROR bad command line format\r\n"
    for cmd in (b"delete %s", b"incr %s 1", b"decr %s 1", b"touch %s 1"):
        assert session.feed(cmd % long_key + b"\r\n") == b"CLIENT_ERROR bad command line format\r\n"


def test_keys_with_control_bytes_are_ordinary_keys(session):
    """As in memcached (and memaslap relies on it): only spaces end a key."""
    assert session.feed(b"get a\tb\r\n") == b"END\r\n"
    assert session.feed(b"set a\tb 0 0 1\r\nx\r\nset \x10\x7f 0 0 1\r\ny\r\n") == b"STORED\r\n" * 2
    assert (
        session.feed(b"get a\tb \x10\x7f\r\n") == b"VALUE a\tb 0 1\r\nx\r\nVALUE \x10\x7f 0 1\r\ny\r\nEND\r\n"
    )
    assert session.feed(b"delete a\tb\r\nincr a\tb 1\r\ntouch \x10\x7f 0\r\n") == (
        b"DELETED\r\nNOT_FOUND\r\nTOUCHED\r\n"
    )


def test_delete_and_its_legacy_forms(session):
    session.feed(b"set k 0 0 1\r\nx\r\n")
    assert session.feed(b"delete k 0\r\ndelete k\r\n") == b"DELETED\r\nNOT_FOUND\r\n"
    usage = b"CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n"
    assert session.feed(b"delete k 1\r\ndelete k x\r\ndelete k 0 0\r\n") == usage * 3
    assert session.feed(b"delete k noreply\r\ndelete k 0 noreply\r\ndelete k 1 noreply\r\n") == b""
    assert session.feed(b"delete\r\ndelete k 0 noreply x\r\n") == b"ERROR\r\nERROR\r\n"
    # A key named noreply is a key (memcached looks for the flag only after one); found by fuzzing.
    assert session.feed(b"set noreply 0 0 1\r\nx\r\ndelete noreply\r\ndelete noreply\r\n") == (
        b"STORED\r\nDELETED\r\nNOT_FOUND\r\n"
    )


def test_incr_decr(session):
    assert session.feed(b"incr n 1\r\n") == b"NOT_FOUND\r\n"
    session.feed(b"set n 3 0 2\r\n99\r\n")
    assert session.feed(b"incr n 1\r\nget n\r\n") == b"100\r\nVALUE n 3 3\r\n100\r\nEND\r\n"
    # decr stops at 0 and pads the shorter number with spaces, as memcached rewrites in place
    assert session.feed(b"decr n 95\r\nget n\r\n") == b"5\r\nVALUE n 3 3\r\n5  \r\nEND\r\n"
    assert session.feed(b"decr n 100\r\n") == b"0\r\n"
    assert session.feed(b"incr n 18446744073709551615\r\nincr n 2\r\n") == b"18446744073709551615\r\n1\r\n"
    # the counter grew to 20 digits and keeps that length, padded
    assert session.feed(b"incr n 1 noreply\r\nget n\r\n") == b"VALUE n 3 20\r\n2" + b" " * 19 + b"\r\nEND\r\n"


@pytest.mark.parametrize("delta", [b"-1", b"abc", b"18446744073709551616", b"1x"])
def test_incr_invalid_delta(session, delta):
    session.feed(b"set n 0 0 1\r\n1\r\n")
    assert session.feed(b"incr n %s\r\n" % delta) == b"CLIENT_ERROR invalid numeric delta argument\r\n"


def test_incr_non_numeric_and_wrong_arity(session):
    session.feed(b"set s 0 0 1\r\nx\r\nset e 0 0 0\r\n\r\n")
    err = b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"
    assert session.feed(b"incr s 1\r\ndecr e 1\r\n") == err * 2
    # Whitespace only: memcached usually says the same (it may parse on past the value's end).
    session.feed(b"set w 0 0 2\r\n \t\r\n")
    assert session.feed(b"incr w 1\r\n") == err
    assert session.feed(b"incr s\r\nincr s 1 2 3\r\n") == b"ERROR\r\nERROR\r\n"
    # a fourth word that is not noreply is ignored
    session.feed(b"set n 0 0 1\r\n1\r\n")
    assert session.feed(b"incr n 1 2\r\n") == b"2\r\n"


def test_touch_gat_gats_and_expiry(session, clock):
    session.feed(b"set k 1 10 1\r\nx\r\n")
    assert session.feed(b"touch k 100\r\ntouch nope 1\r\n") == b"TOUCHED\r\nNOT_FOUND\r\n"
    clock.advance(50)
    assert session.feed(b"get k\r\n") == b"VALUE k 1 1\r\nx\r\nEND\r\n"
    assert session.feed(b"gat 10 k nope\r\n") == b"VALUE k 1 1\r\nx\r\nEND\r\n"
    assert session.feed(b"gats 20 k\r\n") == b"VALUE k 1 1 1\r\nx\r\nEND\r\n"
    clock.advance(21)
    assert session.feed(b"get k\r\n") == b"END\r\n"
    assert session.feed(b"touch k abc\r\ngat abc k\r\n") == b"CLIENT_ERROR invalid exptime argument\r\n" * 2
    assert session.feed(b"gat 0\r\ntouch k\r\ngat\r\n") == b"END\r\nERROR\r\nERROR\r\n"


def test_negative_and_absolute_exptimes(session, clock):
    assert session.feed(b"set k 0 -1 1\r\nx\r\nget k\r\n") == b"STORED\r\nEND\r\n"
    # above 30 days an exptime is a Unix time; it is truncated to 32 bits like memcached's strtol
    assert (
        session.feed(b"set k 0 %d 1\r\nx\r\nget k\r\n" % (clock.now + 5))
        == b"STORED\r\nVALUE k 0 1\r\nx\r\nEND\r\n"
    )
    assert session.feed(b"set k 0 99999999999 1\r\nx\r\nget k\r\n") == b"STORED\r\nEND\r\n"


def test_flush_all(session, clock):
    session.feed(b"set a 0 0 1\r\nx\r\n")
    assert session.feed(b"flush_all\r\nget a\r\n") == b"OK\r\nEND\r\n"
    session.feed(b"set a 0 0 1\r\nx\r\n")
    assert session.feed(b"flush_all 10\r\nget a\r\n") == b"OK\r\nVALUE a 0 1\r\nx\r\nEND\r\n"
    clock.advance(10)
    assert session.feed(b"get a\r\n") == b"END\r\n"
    assert session.feed(b"flush_all noreply\r\nflush_all 0 noreply\r\nflush_all x noreply\r\n") == b""
    assert session.feed(b"flush_all x\r\nflush_all -1\r\nflush_all 0 0\r\n") == (
        b"CLIENT_ERROR invalid exptime argument\r\nOK\r\nOK\r\n"
    )
    assert session.feed(b"flush_all 0 0 0\r\n") == b"ERROR\r\n"


def test_flush_all_takes_effect_at_memcacheds_moment(session, clock):
    # What memcached 1.6.18 answers: flush_all N flushes, once its clock reaches realtime(N) - 1,
    # every item stored up to the end of that second, those stored after the command included.
    assert session.feed(b"set a 0 0 1\r\nx\r\nflush_all 1\r\nset b 0 0 1\r\ny\r\nget a b\r\n") == (
        b"STORED\r\nOK\r\nSTORED\r\nEND\r\n"
    )
    clock.advance(1)
    assert session.feed(b"set c 0 0 1\r\nz\r\nget b c\r\n") == b"STORED\r\nVALUE c 0 1\r\nz\r\nEND\r\n"
    assert session.feed(b"flush_all 2\r\nget c\r\n") == b"OK\r\nVALUE c 0 1\r\nz\r\nEND\r\n"
    clock.advance(1)
    assert session.feed(b"set d 0 0 1\r\nw\r\nget c d\r\n") == b"STORED\r\nEND\r\n"
    clock.advance(1)
    assert session.feed(b"set e 0 0 1\r\nv\r\nget d e\r\n") == b"STORED\r\nVALUE e 0 1\r\nv\r\nEND\r\n"


def test_version_verbosity_quit(session):
    assert session.feed(b"version\r\nversion x\r\n") == b"VERSION %s\r\n" % session.ctx.version.encode() * 2
    assert session.feed(b"verbosity 1\r\n") == b"OK\r\n"
    assert session.ctx.verbosity == 1
    assert session.feed(b"verbosity 5 noreply\r\n") == b""
    assert session.ctx.verbosity == 2  # memcached's maximum
    # "noreply" silences even the error of its own missing level
    assert session.feed(b"verbosity noreply\r\nverbosity x\r\nverbosity\r\n") == (
        b"CLIENT_ERROR bad command line format\r\nERROR\r\n"
    )
    assert not session.closing
    assert session.feed(b"get a\r\nquit\r\nget a\r\n") == b"END\r\n"
    assert session.closing
    assert session.feed(b"get a\r\n") == b""


def test_cache_memlimit_and_shutdown(session):
    assert session.feed(b"cache_memlimit 100\r\n") == b"OK\r\n"
    assert session.store.max_bytes == 100 * 1024 * 1024
    assert session.feed(b"cache_memlimit 64 noreply\r\n") == b""
    assert session.store.max_bytes == 64 * 1024 * 1024
    too_small = b"MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m\r\n"
    assert session.feed(b"cache_memlimit 7\r\n") == too_small
    assert session.feed(b"cache_memlimit 1000000001\r\n") == (
        b"MEMLIMIT_ADJUST_FAILED input value is megabytes not bytes\r\n"
    )
    assert session.feed(b"cache_memlimit x\r\ncache_memlimit\r\n") == b"ERROR\r\nERROR\r\n"
    assert session.store.max_bytes == 64 * 1024 * 1024
    assert session.feed(b"shutdown\r\n") == b"ERROR: shutdown not enabled\r\n"
    assert not session.closing


@pytest.mark.parametrize(
    "line",
    [b"", b" ", b"x", b"xx", b"GET a", b"Set a 0 0 1", b"gett a", b"mz a", b"mget a v", b"get", b"set a 0 0"],
)
def test_unknown_or_malformed_commands_are_error(session, line):
    assert session.feed(line + b"\r\n") == b"ERROR\r\n"
    assert not session.closing


def test_line_framing(session):
    session.feed(b"set a 0 0 1\r\nx\r\n")
    hit = b"VALUE a 0 1\r\nx\r\nEND\r\n"
    assert session.feed(b"get a\n") == hit  # a bare \n ends a line too
    assert session.feed(b"  get   a  \r\n") == hit  # runs of spaces separate tokens
    assert session.feed(b"get a\0junk\r\n") == hit  # memcached stops at a NUL byte
    assert session.feed(b"get a\r\r\n") == b"END\r\n"  # only one \r is dropped: key "a\r"


def test_http_request_closes_silently(session):
    assert session.feed(b"GET / HTTP/1.1\r\nget a\r\n") == b""
    assert session.closing


def test_over_long_line_closes_the_connection(session):
    assert session.feed(b"get a\r\n" + b"set " + b"k" * MAX_LINE) == b"END\r\n"
    assert session.closing


@pytest.mark.parametrize("pieces", [1, 2])
def test_over_long_line_closes_however_it_arrives(session, pieces):
    line = b"x" * (MAX_LINE + 1) + b"\r\n"
    cut = len(line) // pieces
    out = session.feed(line[:cut]) + session.feed(line[cut:])
    assert out == b""
    assert session.closing


def test_a_line_of_max_length_is_fine(session):
    """The bound counts every byte before the \n, the \r too (memcached: no \n in 2048 bytes)."""
    line = b"set k 0 0 1" + b" " * (MAX_LINE - 12) + b"\r"
    assert len(line) == MAX_LINE
    assert session.feed(line[:1000]) == b""
    assert session.feed(line[1000:] + b"\nx\r\n") == b"STORED\r\n"
    assert session.feed(b" " + line + b"\nx\r\n") == b""
    assert session.closing


def test_long_multiget_is_allowed_up_to_its_bound(session):
    session.feed(b"set a 0 0 1\r\nx\r\n")
    keys = b" a" * 3000
    assert session.feed(b"get" + keys[:4000]) == b""
    assert session.feed(keys[4000:] + b"\r\n") == b"VALUE a 0 1\r\nx\r\n" * 3000 + b"END\r\n"
    assert not session.closing
    session.feed(b"gets " + b"a " * (MAX_GET_LINE // 2))
    assert session.closing


def test_the_input_buffer_holds_at_most_one_command(session):
    session.feed(b"set k 0 0 100000\r\n")
    for _ in range(99):
        session.feed(b"v" * 1000)
    assert len(session._buf) == 99000
    assert session.feed(b"v" * 1000 + b"\r\nget" + b" k" * 10) == b"STORED\r\n"
    assert session._buf == b"get" + b" k" * 10


def test_stats_merges_server_store_and_session_counters(session):
    session.feed(b"set a 0 0 1\r\nx\r\nget a\r\nget b\r\nmn\r\nme a\r\n")
    reply = session.feed(b"stats\r\n")
    assert reply.endswith(b"END\r\n")
    lines = reply.split(b"\r\n")[:-2]
    stats = dict(line.split(b" ", 2)[1:] for line in lines)
    assert stats[b"version"] == session.ctx.version.encode()
    assert stats[b"cmd_get"] == b"2" and stats[b"get_hits"] == b"1" and stats[b"get_misses"] == b"1"
    assert stats[b"curr_items"] == b"1" and stats[b"total_items"] == b"1"
    assert stats[b"limit_maxbytes"] == b"%d" % session.store.max_bytes
    assert stats[b"cmd_meta"] == b"1"  # memcached counts me only, not mn or the other meta commands
    names = [line.split(b" ")[1] for line in lines]
    # memcached's order: server first, then command counters, then the item gauges
    assert names[:4] == [b"pid", b"uptime", b"time", b"version"]
    assert (
        names.index(b"cmd_get")
        < names.index(b"get_hits")
        < names.index(b"limit_maxbytes")
        < names.index(b"bytes")
    )


def test_stats_reset_clears_counters(session):
    session.feed(b"set a 0 0 1\r\nx\r\nget a\r\nme a\r\n")
    assert session.feed(b"stats reset\r\n") == b"RESET\r\n"
    reply = session.feed(b"stats\r\n")
    assert b"STAT cmd_get 0\r\n" in reply and b"STAT cmd_meta 0\r\n" in reply
    assert b"STAT curr_items 1\r\n" in reply


def test_stats_settings_names_the_backend(session, backend):
    reply = session.feed(b"stats settings\r\n")
    assert b"STAT backend %s\r\n" % backend.encode() in reply
    assert b"STAT maxbytes %d\r\n" % session.store.max_bytes in reply
    assert b"STAT item_size_max %d\r\n" % session.store.max_item_size in reply
    assert b"STAT evictions on\r\nSTAT" in reply and b"STAT cas_enabled yes\r\n" in reply
    assert reply.startswith(b"STAT maxbytes ") and reply.endswith(b"END\r\n")


def test_stats_items_and_slabs(session):
    assert session.feed(b"stats items\r\n") == b"END\r\n"
    assert session.feed(b"stats slabs\r\n") == b"STAT active_slabs 0\r\nSTAT total_malloced 0\r\nEND\r\n"
    session.feed(b"set a 0 0 1\r\nx\r\n")
    items = session.feed(b"stats items\r\n")
    assert items.startswith(b"STAT items:1:number 1\r\n") and b"STAT items:1:evicted 0\r\n" in items
    assert b"STAT active_slabs 1\r\n" in session.feed(b"stats slabs\r\n")


def test_stats_subcommands(session):
    assert session.feed(b"stats sizes\r\n") == b"STAT sizes_status disabled\r\nEND\r\n"
    assert session.feed(b"stats conns\r\n") == b"END\r\n"
    usage = b"CLIENT_ERROR usage: stats detail on|off|dump\r\n"
    assert session.feed(b"stats detail\r\nstats detail x\r\n") == usage * 2
    assert session.feed(b"stats detail on\r\nstats detail dump\r\n") == b"OK\r\nEND\r\n"
    assert session.feed(b"stats nonsense\r\nstats noreply\r\n") == b"ERROR\r\nERROR\r\n"


def test_sessions_of_one_server_share_the_store(make_session):
    one, two = make_session(), make_session()
    assert one.feed(b"set k 0 0 1\r\nx\r\n") == b"STORED\r\n"
    assert two.feed(b"get k\r\n") == b"VALUE k 0 1\r\nx\r\nEND\r\n"


# -- a pipelined stream split at every byte boundary ------------------------------------------

PIPELINE = (
    b"set a 1 0 3\r\nabc\r\n"
    b"get a b\r\n"
    b"gets a\r\n"
    b"add a 0 0 1 noreply\r\nz\r\n"
    b"append a 0 0 2\r\nde\r\n"
    b"set n 0 0 2\r\n10\r\n"
    b"incr n 5\r\ndecr n 20\r\n"
    b"touch a 100\r\ngat 0 a n\r\n"
    b"set a 0 0 2\r\nxyz\r\n"  # a bad data chunk in the middle
    b"BOGUS\r\n"
    b"delete n 0\r\n"
    b"mg a v k c O9\r\n"
    b"ms m 2 T0 c\r\nhi\r\n"
    b"ma cnt N0 J5 v\r\n"
    b"mn\r\n"
    b"version\r\n"
)


@pytest.fixture
def fresh_session(make_store, clock):
    return lambda: Session(store := make_store(), ServerContext(store, clock=clock))


def test_pipeline_reference_output(fresh_session):
    out = fresh_session().feed(PIPELINE)
    assert out.startswith(b"STORED\r\nVALUE a 1 3\r\nabc\r\nEND\r\nVALUE a 1 3 1\r\nabc\r\nEND\r\nSTORED\r\n")
    assert b"15\r\n0\r\n" in out and b"CLIENT_ERROR bad data chunk\r\nERROR\r\nERROR\r\nDELETED\r\n" in out
    assert out.endswith(b"VA 1\r\n5\r\nMN\r\nVERSION %s\r\n" % ServerContext.version.encode())


def test_pipeline_split_at_every_boundary(fresh_session):
    whole = fresh_session().feed(PIPELINE)
    for cut in range(1, len(PIPELINE)):
        assert feed_split(fresh_session(), PIPELINE, [cut]) == whole, f"split at {cut}"


def test_pipeline_fed_one_byte_at_a_time(fresh_session):
    whole = fresh_session().feed(PIPELINE)
    assert feed_split(fresh_session(), PIPELINE, [1] * len(PIPELINE)) == whole


def test_pipeline_split_in_three(fresh_session):
    whole = fresh_session().feed(PIPELINE)
    n = len(PIPELINE)
    for a in range(1, n, 7):
        for b in range(a, n, 13):
            assert feed_split(fresh_session(), PIPELINE, [a, b - a]) == whole, f"split at {a}, {b}"


def test_feed_accepts_any_bytes_like(session):
    assert session.feed(bytearray(b"set k 0 0 1\r\n")) == b""
    assert session.feed(memoryview(b"x\r\nget k\r\n")) == b"STORED\r\nVALUE k 0 1\r\nx\r\nEND\r\n"


# -- C-exact number parsing -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tok", "u32", "i32", "u64"),
    [
        (b"0", 0, 0, 0),
        (b"42", 42, 42, 42),
        (b"+7", 7, 7, 7),
        (b"-0", 0, 0, 0),
        (b"-1", None, -1, None),
        (b"4294967296", 0, 0, 4294967296),  # truncated to the C type after the range check
        (b"2147483648", 2147483648, -2147483648, 2147483648),
        (b"18446744073709551615", 4294967295, None, 18446744073709551615),
        (b"18446744073709551616", None, None, None),  # ERANGE
        (b"9223372036854775808", 0, None, 9223372036854775808),
        (b"5\t", 5, 5, 5),  # a number may end at any C whitespace
        (b"\t5", 5, 5, 5),
        (b"5x", None, None, None),
        (b"", None, None, None),
        (b"+", None, None, None),
        (b"1_000", None, None, None),  # Python's int() would take it
        (b"\xd9\xa3", None, None, None),  # a non-ASCII digit
    ],
)
def test_numbers_parse_like_memcached(tok, u32, i32, u64):
    from pycache_d.protocol.wire import parse_i32, parse_u32, parse_u64

    assert (parse_u32(tok), parse_i32(tok), parse_u64(tok)) == (u32, i32, u64)


# -- robustness: any bytes, split anyhow ------------------------------------------------------

# (No plain "stats": its rusage and time lines differ from one run to the next.)

_FUZZ_TOKENS = (
    b"get |gets |gat |set |add |cas |append |incr |decr |delete |touch |flush_all|stats settings|"
    b"stats slabs|verbosity |version|mg |ms |md |ma |mn|me |a|b|YQ==| |  |\r\n|\n|\r|\0|\t|0|1|2|-1|+|"
    b"99999999999999999999|noreply| q| v| k| b| c| t| s| f| h| l| u| I| T| N1| C1| D| J| MA| ME| MD| O|"
    b" F| R| x"
).split(b"|") + [b"k" * 251]


@pytest.mark.parametrize("backend_name", ["native", "python"])
@settings(max_examples=300, deadline=None)
@given(
    parts=st.lists(st.sampled_from(_FUZZ_TOKENS), max_size=60),
    cuts=st.lists(st.integers(0, 400), max_size=6),
)
def test_any_input_is_answered_the_same_however_it_is_split(backend_name, parts, cuts):
    from pycache_d.store import BACKENDS

    if backend_name not in BACKENDS:
        pytest.skip("native backend is not built")
    data = b"".join(parts)

    def fresh() -> Session:
        store = BACKENDS[backend_name](clock=lambda: 1_700_000_000)
        return Session(store, ServerContext(store, clock=lambda: 1_700_000_000))

    one = fresh()
    whole = one.feed(data)
    pieces = fresh()
    bounds = [0, *sorted(cuts), len(data)]
    split = b"".join(pieces.feed(data[a:b]) for a, b in zip(bounds, bounds[1:], strict=False))
    assert split == whole
    assert pieces.closing == one.closing
