"""Many clients on a few hot keys, every reply recorded and the whole history checked.

CLIENTS threads, each with its own blocking socket speaking the text protocol, make OPS requests
each on VALUE_KEYS value keys (set, append, get, gets then cas, delete; a tenth of the values
20-100 KiB) and two counters (one incr only, one incr and decr; both read), all released at
once. Every request is recorded with its reply and
the monotonic time around it, and tests/history.py checks that what each key went through is
explainable by some order: values whole (never torn, mixed or invented), appends once each and
in order, one cas winner per token, counter totals exact (see its docstring for all of it). The
run is bounded by counts, not time; every wait has a generous deadline (WAIT) for busy machines.

It runs against the daemon on both backends and both socket drivers (single-threaded today, but
its clients interleave; once it has worker threads, run it with them here too), and against
memcached with 4 worker threads, to show that the checker accepts the histories of a truly
multi-threaded server. The checker's own tests show that it fails on made-up histories
of each kind of wrong, accepts a correct one made by hand, and accepts many made by a model of a
correct server with overlapping requests (it must never reject a valid history).
"""

from __future__ import annotations

import dataclasses
import random
import socket
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import pytest

# The daemon fixtures (daemon, daemon_backend, daemon_factory) live in tests/daemon.py, loaded as
# a plugin; registered for assertion rewriting first because this module imports it too.
pytest.register_assert_rewrite("daemon")
pytest_plugins = ["daemon"]

from daemon import TRANSPORT_LOG, Daemon, memcached  # noqa: E402
from history import (  # noqa: E402
    HistoryError,
    Op,
    Result,
    check_counters,
    check_history,
    describe,
    make_token,
    make_value,
)

#: Client threads in a run, and requests each makes.
CLIENTS = 32
OPS = 300
#: The hot value keys (few, so clients collide on them) and the counters.
VALUE_KEYS = 3
COUNTER, UPDOWN = "counter", "updown"
#: The counters start far from 0 and from a change of digit count: no decr clamps at 0 or makes
#: the number shorter (which memcached pads with spaces, only when no other thread holds it).
COUNTER_START = 5_000_000_000_000
#: A set or cas writes a large value (sent by the daemon from the pinned item, with sendmsg) this
#: often; the others are small.
LARGE_SHARE = 0.1
LARGE = (20 * 1024, 100 * 1024)
#: Seconds any one wait may take: a reply, the start barrier, a client thread's whole run.
WAIT = 30.0
RUN_WAIT = 300.0


# -- what clients ask -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    kind: str
    key: str
    arg: bytes | int | None = None
    token: int | None = None


class Chooser:
    """One client's requests: a mix on the hot keys, a cas right after most gets hits.

    Used by the real clients and by the model server of the checker's self-test alike, so the
    model's histories have the same shape as the real ones.
    """

    def __init__(
        self, client: int, seed: int, keys: list[str], counters: tuple[str, str], large_share: float
    ) -> None:
        self.client = client
        self.rng = random.Random(seed * 1000 + client)
        self.keys = keys
        self.counter, self.updown = counters
        self.large_share = large_share
        self.seq = 0
        self.pending: Request | None = None  # the cas to make after a gets hit

    def value(self, seq: int) -> bytes:
        size = self.rng.randint(*LARGE) if self.rng.random() < self.large_share else self.rng.randint(0, 300)
        return make_value(self.client, seq, size)

    def next(self) -> tuple[int, Request]:
        """The next request and its issue number (``seq``)."""
        self.seq += 1
        seq = self.seq
        if self.pending is not None:
            req, self.pending = self.pending, None
            return seq, Request("cas", req.key, self.value(seq), req.token)
        rng = self.rng
        roll = rng.random()
        if roll < 0.12:
            return seq, Request("incr", self.counter, rng.randint(1, 1000))
        if roll < 0.14:
            return seq, Request("get", self.counter)
        if roll < 0.20:
            return seq, Request(rng.choice(["incr", "decr"]), self.updown, rng.randint(1, 1000))
        if roll < 0.21:
            return seq, Request("get", self.updown)
        key = rng.choice(self.keys)
        kind = rng.choices(["set", "append", "get", "gets", "delete"], [15, 25, 20, 30, 5])[0]
        if kind == "set":
            return seq, Request("set", key, self.value(seq))
        if kind == "append":
            return seq, Request("append", key, make_token(self.client, seq))
        return seq, Request(kind, key)

    def saw(self, req: Request, result: Result, token: int | None) -> None:
        """Note a reply: a gets hit is followed by a cas with its token (mostly)."""
        if req.kind == "gets" and isinstance(result, bytes) and self.rng.random() < 0.85:
            self.pending = Request("cas", req.key, token=token)


# -- the wire -------------------------------------------------------------------------------------


class ProtocolError(AssertionError):
    """A reply that is not memcached's text protocol (framing, key, flags)."""


class Conn:
    """A blocking text-protocol connection that sends a :class:`Request` and parses its reply."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.sock = socket.create_connection(address, timeout=WAIT)
        self.buf = bytearray()

    def close(self) -> None:
        self.sock.close()

    def _fill(self) -> None:
        chunk = self.sock.recv(1 << 18)
        if not chunk:
            raise ProtocolError("the server closed the connection")
        self.buf += chunk

    def line(self) -> bytes:
        while (i := self.buf.find(b"\r\n")) < 0:
            self._fill()
        out = bytes(self.buf[:i])
        del self.buf[: i + 2]
        return out

    def exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def do(self, req: Request) -> tuple[Result, int | None]:
        """Send ``req``; return its result (as history.Op records it) and a gets hit's token."""
        key = req.key.encode()
        if req.kind in ("get", "gets"):
            self.sock.sendall(b"%s %s\r\n" % (req.kind.encode(), key))
            return self.value(key, req.kind == "gets")
        if req.kind in ("incr", "decr"):
            assert isinstance(req.arg, int)
            self.sock.sendall(b"%s %s %d\r\n" % (req.kind.encode(), key, req.arg))
            line = self.line()
            return (int(line) if line.isdigit() else line.decode(errors="replace")), None
        if req.kind == "delete":
            self.sock.sendall(b"delete %s\r\n" % key)
        else:
            assert isinstance(req.arg, bytes)
            cas = b" %d" % req.token if req.kind == "cas" and req.token is not None else b""
            head = b"%s %s 0 0 %d%s\r\n" % (req.kind.encode(), key, len(req.arg), cas)
            self.sock.sendall(head + req.arg + b"\r\n")
        return self.line().decode(errors="replace"), None

    def value(self, key: bytes, with_cas: bool) -> tuple[Result, int | None]:
        line = self.line()
        if line == b"END":
            return None, None
        parts = line.split(b" ")
        if len(parts) != 4 + with_cas or parts[0] != b"VALUE" or parts[1] != key or parts[2] != b"0":
            raise ProtocolError(f"not the VALUE line of {key!r}: {line[:200]!r}")
        data = self.exact(int(parts[3]))
        if self.exact(2) != b"\r\n" or self.line() != b"END":
            raise ProtocolError(f"{key!r}: a value of {int(parts[3])} bytes not followed by END")
        return data, int(parts[4]) if with_cas else None


def timed(conn: Conn, client: int, seq: int, req: Request) -> Op:
    """Make ``req`` on ``conn`` and record it with the monotonic times around it."""
    start = time.monotonic()
    result, token = conn.do(req)
    end = time.monotonic()
    return Op(
        client, seq, req.kind, req.key, req.arg, req.token if token is None else token, result, start, end
    )


# -- a run ----------------------------------------------------------------------------------------


def hot_key_run(address: tuple[str, int], seed: int) -> list[Op]:
    """Set the counters, release CLIENTS clients of OPS requests each, read every key at the end."""
    prefix = f"hot{seed}:"
    keys = [f"{prefix}v{i}" for i in range(VALUE_KEYS)]
    counters = (prefix + COUNTER, prefix + UPDOWN)
    setup = Conn(address)
    history: list[Op] = []
    seq = 0
    for name in counters:
        seq += 1
        op = timed(setup, 0, seq, Request("set", name, b"%d" % COUNTER_START))
        assert op.result == "STORED", op
        history.append(op)

    # Each client's history is its own list (no lock in the hot path); merged at the end.
    recorded: list[list[Op]] = [[] for _ in range(CLIENTS)]
    failures: list[tuple[int, BaseException]] = []
    go = threading.Barrier(CLIENTS)

    def client(n: int) -> None:
        mine = recorded[n]
        chooser = Chooser(n + 1, seed, keys, counters, LARGE_SHARE)
        try:
            conn = Conn(address)
            try:
                go.wait(WAIT)  # all connected: start together, so the requests interleave
                for _ in range(OPS):
                    s, req = chooser.next()
                    op = timed(conn, n + 1, s, req)
                    mine.append(op)
                    chooser.saw(req, op.result, op.token)
            finally:
                conn.close()
        except BaseException as e:  # a timeout, a reset, bad framing: reported below
            go.abort()
            failures.append((n, e))

    threads = [threading.Thread(target=client, args=(n,), name=f"client {n + 1}") for n in range(CLIENTS)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + RUN_WAIT
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), f"clients still running after {RUN_WAIT} s"
    if failures:
        n, e = failures[0]
        last = "\n".join(describe(op) for op in recorded[n][-3:]) or "(none)"
        raise AssertionError(f"client {n + 1} failed: {e!r}; its last requests:\n{last}") from e
    for mine in recorded:
        history += mine

    for key in [*keys, *counters]:  # the final state, after every client
        seq += 1
        history.append(timed(setup, 0, seq, Request("gets" if key in keys else "get", key)))
    setup.sock.sendall(b"stats\r\n")
    stats = {}
    while (line := setup.line()) != b"END":
        _, name, value = line.decode().split(" ", 2)
        stats[name] = value
    setup.close()
    # The checker takes a miss for a delete: nothing may have been evicted.
    assert stats.get("evictions") == "0", stats.get("evictions")
    return history


def coverage(history: list[Op]) -> Counter[str]:
    """What the run exercised, to show that it did collide (and for the failure message)."""
    seen: Counter[str] = Counter()
    for op in history:
        if isinstance(op.result, bytes):
            seen[f"{op.kind} hit"] += 1
            if len(op.result) >= LARGE[0]:
                seen[f"{op.kind} hit, large"] += 1
            if op.result.endswith(b"]"):
                seen[f"{op.kind} hit, with appends"] += 1
        else:
            word = "miss" if op.result is None else "ok" if isinstance(op.result, int) else op.result
            seen[f"{op.kind} {word}"] += 1
    return seen


def check_run(history: list[Op]) -> None:
    check_history(history)
    seen = coverage(history)
    # That the clients really collided: cas lost to other writers, appends were read back and
    # found no key, and large values were read. Each happens dozens to hundreds of times a run.
    for what in ("cas STORED", "cas EXISTS", "gets hit, with appends", "get hit, large", "append NOT_STORED"):
        assert seen[what] > 0, (what, seen)


def test_hot_keys_on_the_daemon(both_transports: str, daemon: Daemon) -> None:
    """Both backends, on the compiled socket driver and on uvloop's transports."""
    assert TRANSPORT_LOG[both_transports] in daemon.log
    check_run(hot_key_run(daemon.address, seed=1))


def test_hot_keys_on_memcached_with_threads() -> None:
    """The checker accepts what a truly multi-threaded server does (4 worker threads)."""
    with memcached("-t", "4", "-m", "64") as port:
        check_run(hot_key_run(("127.0.0.1", port), seed=2))


# -- the checker's own tests ----------------------------------------------------------------------


class Made:
    """A history made by hand: each op at the next instants (one after the other), or ``at``."""

    def __init__(self) -> None:
        self.ops: list[Op] = []
        self.seqs: dict[int, int] = defaultdict(int)
        self.t = 0.0

    def add(
        self,
        client: int,
        kind: str,
        key: str,
        arg: bytes | int | None = None,
        result: Result = None,
        token: int | None = None,
        at: tuple[float, float] | None = None,
    ) -> Op:
        self.seqs[client] += 1
        if at is None:
            at = (self.t + 1, self.t + 2)
        self.t = max(self.t, at[1])
        op = Op(client, self.seqs[client], kind, key, arg, token, result, *at)
        self.ops.append(op)
        return op

    def set(self, client: int, key: str, size: int = 12, at: tuple[float, float] | None = None) -> Op:
        return self.add(client, "set", key, make_value(client, self.seqs[client] + 1, size), "STORED", at=at)

    def append(
        self, client: int, key: str, result: str = "STORED", at: tuple[float, float] | None = None
    ) -> Op:
        return self.add(client, "append", key, make_token(client, self.seqs[client] + 1), result, at=at)

    def cas(
        self, client: int, key: str, token: int, result: str, at: tuple[float, float] | None = None
    ) -> Op:
        return self.add(
            client, "cas", key, make_value(client, self.seqs[client] + 1, 12), result, token, at=at
        )


def value_of(base: Op, *appends: Op) -> bytes:
    """What a key holds after ``base`` and ``appends``."""
    data = base.arg
    assert isinstance(data, bytes)
    for a in appends:
        assert isinstance(a.arg, bytes)
        data += a.arg
    return data


def good_history() -> Made:
    """A correct history with overlaps: reads concurrent with writes see either side, a cas wins
    and one loses, appends interleave, a delete is seen, counters move concurrently."""
    h = Made()
    k = "k"
    a = h.set(1, k, size=40)
    b = h.set(2, k, at=(3, 6))
    h.add(3, "get", k, result=value_of(a), at=(4, 5))  # b still under way: a is current
    h.add(1, "get", k, result=value_of(b), at=(7, 8))
    t1 = h.append(1, k, at=(9, 12))
    t2 = h.append(3, k, at=(10, 11))  # t2 before t1, though t1 began first
    h.add(2, "gets", k, result=value_of(b, t2), token=7, at=(10.5, 10.8))
    h.add(2, "gets", k, result=value_of(b, t2, t1), token=8, at=(13, 14))
    h.add(4, "gets", k, result=value_of(b, t2, t1), token=8, at=(13, 14))
    h.cas(2, k, token=8, result="STORED", at=(15, 17))
    h.cas(4, k, token=8, result="EXISTS", at=(16, 18))
    h.add(3, "delete", k, result="DELETED", at=(19, 20))
    h.add(1, "get", k, result=None, at=(21, 22))
    h.append(2, k, result="NOT_STORED", at=(21, 22))
    h.add(4, "delete", k, result="NOT_FOUND", at=(21, 22))
    h.add(5, "set", "n", b"100", "STORED", at=(0, 1))
    h.add(5, "incr", "n", 5, 112, at=(2, 6))  # took effect after the other's 7
    h.add(6, "incr", "n", 7, 107, at=(3, 4))
    h.add(6, "get", "n", result=b"107", at=(4.5, 5))
    h.add(6, "get", "n", result=b"112", at=(7, 8))
    h.add(5, "set", "m", b"1000", "STORED", at=(7, 8))
    h.add(5, "decr", "m", 3, 997, at=(9, 12))
    h.add(6, "incr", "m", 10, 1007, at=(10, 11))  # the decr (997) took effect first
    h.add(6, "get", "m", result=b"1007", at=(13, 14))
    return h


def test_checker_accepts_a_correct_history() -> None:
    check_history(good_history().ops)


def _two_cas_winners(h: Made) -> None:
    a = h.set(1, "k")
    h.add(2, "gets", "k", result=value_of(a), token=5)
    h.add(3, "gets", "k", result=value_of(a), token=5)
    h.cas(2, "k", token=5, result="STORED", at=(10, 12))
    h.cas(3, "k", token=5, result="STORED", at=(11, 13))


def _total_off_by_one(h: Made) -> None:
    h.add(1, "set", "n", b"100", "STORED")
    h.add(2, "incr", "n", 5, 105)
    h.add(3, "incr", "n", 7, 112)
    h.add(1, "get", "n", result=b"113")


def _incr_chain_broken(h: Made) -> None:
    h.add(1, "set", "n", b"100", "STORED")
    h.add(2, "incr", "n", 5, 105, at=(3, 6))
    h.add(3, "incr", "n", 7, 111, at=(4, 5))


def _incr_replies_twice(h: Made) -> None:
    h.add(1, "set", "n", b"100", "STORED")
    h.add(2, "incr", "n", 1, 101, at=(3, 6))
    h.add(3, "incr", "n", 1, 101, at=(4, 5))


def _incr_against_time(h: Made) -> None:
    h.add(1, "set", "n", b"100", "STORED")
    h.add(2, "incr", "n", 5, 112)  # over before the next began, yet its value came last
    h.add(3, "incr", "n", 7, 107)


def _counter_stale_read(h: Made) -> None:
    h.add(1, "set", "n", b"100", "STORED")
    h.add(2, "incr", "n", 5, 105)
    h.add(2, "incr", "n", 5, 110, at=(5, 8))
    h.add(3, "get", "n", result=b"100", at=(6, 7))


def _updown_replies_do_not_chain(h: Made) -> None:
    h.add(1, "set", "m", b"1000", "STORED")
    h.add(2, "incr", "m", 10, 1010, at=(3, 6))
    h.add(3, "decr", "m", 3, 1008, at=(4, 7))  # 1007 after the incr, 997 before it


def _updown_read_out_of_reach(h: Made) -> None:
    h.add(1, "set", "m", b"1000", "STORED")
    h.add(2, "incr", "m", 10, 1010)
    h.add(3, "decr", "m", 3, 1007)
    h.add(1, "get", "m", result=b"1010")  # a value it had, but before the decr surely done


def _torn_value(h: Made) -> None:
    a = h.set(1, "k", size=30_000)
    h.add(2, "get", "k", result=value_of(a)[:16_384])


def _two_sets_mixed(h: Made) -> None:
    a = h.set(1, "k", size=100)
    b = h.set(2, "k", size=100)
    va, vb = value_of(a), value_of(b)
    h.add(3, "get", "k", result=va[:60] + vb[60:])


def _two_sets_joined(h: Made) -> None:
    a = h.set(1, "k")
    b = h.set(2, "k")
    h.add(3, "get", "k", result=value_of(a) + value_of(b))


def _token_twice(h: Made) -> None:
    a = h.set(1, "k")
    t = h.append(2, "k")
    h.add(3, "get", "k", result=value_of(a, t, t))


def _token_never_sent(h: Made) -> None:
    a = h.set(1, "k")
    h.add(3, "get", "k", result=value_of(a) + make_token(9, 9))


def _token_of_failed_append(h: Made) -> None:
    a = h.set(1, "k")
    t = h.append(2, "k", result="NOT_STORED")
    h.add(3, "get", "k", result=value_of(a, t))


def _appends_out_of_order(h: Made) -> None:
    a = h.set(1, "k")
    t1 = h.append(2, "k")
    t2 = h.append(2, "k")
    h.add(3, "get", "k", result=value_of(a, t2, t1))


def _token_after_two_values(h: Made) -> None:
    a = h.set(1, "k")
    t = h.append(2, "k", at=(3, 8))
    h.add(3, "get", "k", result=value_of(a, t), at=(4, 9))
    b = h.set(1, "k", at=(5, 7))
    h.add(4, "get", "k", result=value_of(b, t), at=(6, 10))


def _stale_read(h: Made) -> None:
    a = h.set(1, "k")
    h.set(2, "k")
    h.add(3, "get", "k", result=value_of(a))


def _lost_append(h: Made) -> None:
    a = h.set(1, "k")
    h.append(2, "k")
    h.add(3, "get", "k", result=value_of(a))


def _resurrected(h: Made) -> None:
    a = h.set(1, "k")
    h.add(2, "delete", "k", result="DELETED")
    h.add(3, "get", "k", result=value_of(a))


def _miss_while_present(h: Made) -> None:
    h.set(1, "k")
    h.add(2, "get", "k", result=None)


def _hit_before_any_set(h: Made) -> None:
    h.add(2, "append", "k", make_token(2, 1), "STORED")


def _value_of_other_key(h: Made) -> None:
    a = h.set(1, "other")
    h.add(2, "get", "k", result=value_of(a))


def _value_of_losing_cas(h: Made) -> None:
    a = h.set(1, "k")
    h.add(2, "gets", "k", result=value_of(a), token=3)
    h.set(1, "k")
    c = h.cas(2, "k", token=3, result="EXISTS")
    h.add(3, "get", "k", result=value_of(c))


def _fewer_appends_later(h: Made) -> None:
    a = h.set(1, "k")
    t = h.append(2, "k")
    h.add(3, "get", "k", result=value_of(a, t))
    h.add(3, "get", "k", result=value_of(a))


def _token_without_write(h: Made) -> None:
    a = h.set(1, "k")
    h.add(2, "gets", "k", result=value_of(a), token=5)
    h.add(3, "gets", "k", result=value_of(a), token=6)


def _token_names_two_values(h: Made) -> None:
    a = h.set(1, "k")
    h.add(2, "gets", "k", result=value_of(a), token=5)
    b = h.set(1, "k")
    h.add(3, "gets", "k", result=value_of(b), token=5)


def _cas_over_a_write(h: Made) -> None:
    a = h.set(1, "k")
    h.add(2, "gets", "k", result=value_of(a), token=5)
    h.set(3, "k")
    h.cas(2, "k", token=5, result="STORED")


def _exists_unexplained(h: Made) -> None:
    a = h.set(1, "k")
    h.add(2, "gets", "k", result=value_of(a), token=5)
    h.cas(2, "k", token=5, result="EXISTS")


def _server_error(h: Made) -> None:
    h.add(1, "set", "k", make_value(1, 1, 10), "SERVER_ERROR out of memory storing object")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_two_cas_winners, "two cas won with one token 5"),
        (_total_off_by_one, "counter total is 113 after every incr ended; it must be 112"),
        (_incr_chain_broken, "incr by 7 answered 111, but the value before it can only have been 105"),
        (_incr_replies_twice, "two updates answered the same value"),
        (_incr_against_time, "an incr surely before another answered the larger value"),
        (_counter_stale_read, "read a stale value"),
        (_updown_replies_do_not_chain, "the incr/decr replies do not chain"),
        (_updown_read_out_of_reach, "read 1010, out of reach: 1007"),
        (_torn_value, "shorter than the 30000-byte body"),
        (_two_sets_mixed, "the body of 1.1's value differs from byte"),
        (_two_sets_joined, "is not an append token"),
        (_token_twice, "twice in one value"),
        (_token_never_sent, "read a token no append sent (9.9)"),
        (_token_of_failed_append, "an append that answered 'NOT_STORED'"),
        (_appends_out_of_order, "client 2's appends out of its issue order"),
        (_token_after_two_values, "one append's token after two different values"),
        (_stale_read, "a stale value: overwritten"),
        (_lost_append, "a lost append"),
        (_resurrected, "a stale value: deleted"),
        (_miss_while_present, "reported absent, though no delete can have come"),
        (_hit_before_any_set, "found an item, though no set can have come"),
        (_value_of_other_key, "read a value written to key 'other'"),
        (_value_of_losing_cas, "read the value of a cas that answered 'EXISTS'"),
        (_fewer_appends_later, "a read saw fewer appends than a read surely before it"),
        (_token_without_write, "one value read with two cas tokens"),
        (_token_names_two_values, "one cas token 5 named two values"),
        (_cas_over_a_write, "a stale value: overwritten"),
        (_exists_unexplained, "cas answered EXISTS, but nothing can have replaced token 5"),
        (_server_error, "unexpected reply"),
    ],
    ids=lambda v: v.__name__.strip("_") if callable(v) else "",
)
def test_checker_rejects(make: Callable[[Made], None], message: str) -> None:
    h = Made()
    make(h)
    with pytest.raises(AssertionError, match="key '.*': ") as e:
        check_history(h.ops)
    assert message in str(e.value)


def test_checker_refuses_what_it_cannot_judge() -> None:
    h = Made()
    h.add(1, "get", "k", at=(1, 3))
    h.add(1, "get", "k", at=(2, 4))  # one client, two requests at once
    with pytest.raises(HistoryError, match="overlap"):
        check_history(h.ops)
    h = Made()
    h.add(1, "set", "n", b"10", "STORED", at=(1, 3))
    h.add(2, "incr", "n", 1, 11, at=(2, 4))  # before the counter's set ended
    with pytest.raises(HistoryError, match="after its set ended"):
        check_counters(h.ops, "n")


# -- a model of a correct server ------------------------------------------------------------------


class Model:
    """memcached's semantics for these commands, one request at a time: what a linearizable
    server answers when each request takes effect at the instant :meth:`apply` is called."""

    def __init__(self) -> None:
        self.items: dict[str, tuple[bytes, int]] = {}
        self.cas = 0

    def _store(self, key: str, value: bytes) -> None:
        self.cas += 1
        self.items[key] = (value, self.cas)

    def apply(self, req: Request) -> tuple[Result, int | None]:
        item = self.items.get(req.key)
        if req.kind in ("get", "gets"):
            return (None, None) if item is None else (item[0], item[1] if req.kind == "gets" else None)
        if req.kind == "delete":
            return ("NOT_FOUND" if self.items.pop(req.key, None) is None else "DELETED"), None
        if req.kind in ("incr", "decr"):
            if item is None:
                return "NOT_FOUND", None
            assert isinstance(req.arg, int)
            n = int(item[0]) + (req.arg if req.kind == "incr" else -req.arg)
            self._store(req.key, b"%d" % n)
            return n, None
        assert isinstance(req.arg, bytes)
        if req.kind == "set":
            self._store(req.key, req.arg)
            return "STORED", None
        if item is None:
            return ("NOT_STORED" if req.kind == "append" else "NOT_FOUND"), None
        if req.kind == "append":
            self._store(req.key, item[0] + req.arg)
            return "STORED", None
        if req.token != item[1]:
            return "EXISTS", None
        self._store(req.key, req.arg)
        return "STORED", None


def model_run(seed: int, clients: int = 8, ops: int = 80) -> list[Op]:
    """A history of the model with the clients' requests overlapping at random.

    Time is a step counter. At each step one client moves on: it sends its next request (start),
    or that request takes effect (the model applies it), or its reply arrives (end). So requests
    overlap in every way, and every reply is what a linearizable server may give.
    """
    rng = random.Random(seed)
    model = Model()
    keys = [f"v{i}" for i in range(2)]
    history: list[Op] = []
    for seq, name in enumerate((COUNTER, UPDOWN), 1):
        result, _ = model.apply(Request("set", name, b"%d" % COUNTER_START))
        history.append(Op(0, seq, "set", name, b"%d" % COUNTER_START, None, result, seq - 0.5, seq))
    choosers = [Chooser(c + 1, seed, keys, (COUNTER, UPDOWN), large_share=0.0) for c in range(clients)]
    # per client: (seq, request, start, result, token, applied?) while one is under way
    pending: dict[int, tuple[int, Request, float, Result, int | None, bool]] = {}
    left = {c: ops for c in range(clients)}
    t = 3.0
    while left:
        c = rng.choice(list(left))
        t += 1
        if c not in pending:
            seq, req = choosers[c].next()
            pending[c] = (seq, req, t, None, None, False)
        elif not pending[c][5]:
            seq, req, start, _, _, _ = pending[c]
            result, token = model.apply(req)
            pending[c] = (seq, req, start, result, token, True)
        else:
            seq, req, start, result, token, _ = pending.pop(c)
            history.append(
                Op(
                    c + 1,
                    seq,
                    req.kind,
                    req.key,
                    req.arg,
                    req.token if token is None else token,
                    result,
                    start,
                    t,
                )
            )
            choosers[c].saw(req, result, token)
            left[c] -= 1
            if not left[c]:
                del left[c]
    for seq, key in enumerate([*keys, COUNTER, UPDOWN], 3):
        t += 1
        req = Request("gets" if key in keys else "get", key)
        result, token = model.apply(req)
        history.append(Op(0, seq, req.kind, key, None, token, result, t, t + 0.5))
    return history


@pytest.mark.parametrize("seed", range(40))
def test_checker_accepts_every_history_of_a_correct_server(seed: int) -> None:
    """Soundness: the checker must pass whatever a linearizable server may answer."""
    check_history(model_run(seed))


def test_checker_catches_a_wrong_reply_in_a_model_history() -> None:
    """A model history with one reply changed fails: the final counter read off by one."""
    history = model_run(0)
    last = history[-2]  # the final read of the incr-only counter
    assert last.key == COUNTER and isinstance(last.result, bytes)
    history[-2] = dataclasses.replace(last, result=b"%d" % (int(last.result) + 1))
    with pytest.raises(AssertionError, match="counter total is"):
        check_history(history)
