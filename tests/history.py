"""A checker for concurrent histories of memcached commands on a few hot keys.

A history is a list of :class:`Op`: one request each, made by one client (a connection whose
requests are strictly sequential), with what it sent, what the server answered, and the real-time
interval ``[start, end]`` around it (``time.monotonic()`` just before the request was sent and
just after its reply was read). A correct server is linearizable per key: each request took
effect at one instant inside its interval, and every reply is what memcached's sequential
semantics give for the requests in that order. The checks never reject such a history (they are
sound); they do not search all orders (that is exponential), so a wrong history can pass. Real
time is used only as "X was surely before Y" (``X.end < Y.start``) and "X cannot have been
before Y" (``X.start > Y.end``). A failure is an AssertionError naming the key and the ops that
no order explains; a history the checker cannot judge (broken assumptions, below) is a
:class:`HistoryError`.

What a pass proves, per key.

Values (:func:`check_values`). Sets and cas write self-describing values (:func:`make_value`: a
header naming the writer and the length, then a body derived from the writer), appends add
unique tokens (:func:`make_token`). So a read can be taken apart (:func:`parse_value`) into the
write it sees and the appends after it, and must be:

* whole: one value a set or a successful cas wrote to this key, byte for byte, followed by
  tokens of successful appends to this key only, each at most once, one client's in the order it
  issued them (else it is torn, mixed with another value or key, or invented);
* possible in time: that write and those appends began before the read ended, the appends in
  the order seen did not surely happen the other way round, and after the set they follow;
* the same story for every read: a token follows one set only, the reads of one set see its
  appends as prefixes of one sequence, and a later read never sees fewer of them;
* current: nothing surely between the write it sees and the read overwrote or deleted the key,
  nor appended a token missing from it, nor read another value or a miss;
* present or absent when it must be: a miss (or NOT_STORED append, NOT_FOUND cas or delete)
  needs a delete that may have come after the last sign of the key; a hit (or STORED append,
  EXISTS cas, DELETED delete) needs a set that may have come after the last sign of absence.

CAS (:func:`check_cas`). A token names one value and a value has one token (every write gives a
new token, nothing else changes it); at most one cas wins per token; nothing changes the item
between two sightings of its token, nor between the value a winning cas replaced and the cas; a
token is not seen after the cas that replaced it; EXISTS needs a write that may have come after
the token was last seen before it, and is impossible between two sightings of that token.

Counters (:func:`check_counters`): one set, then incr/decr/get only. With incr only (positive
deltas) the replies are distinct and, sorted, form the one possible chain: each reply minus its
delta is the previous reply (the first: the initial value), so every increment took effect
exactly once and the total is exact; real time must not contradict the chain, and a read sees a
value of the chain that was current some time during it (after every incr, the exact total).
With decr too, each reply and read must lie within what the updates surely before it, plus any
subset of those that may have been, give.

Assumptions (the tests arrange them): every key starts absent; nothing expires, is evicted or
flushed (no exptime; memory to spare; the test checks the evictions counter); no other command
touches the keys; an op's ``seq`` is its client's issue number, so ``(client, seq)`` is unique;
sets, cas and appends send :func:`make_value` / :func:`make_token` of their own ``(client, seq)``;
a cas sends a token a gets of that key returned; counters stay within (0, 2**64): no clamp at 0,
no wrap.
"""

from __future__ import annotations

import hashlib
import re
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import accumulate
from typing import NoReturn

#: What an op's result is: a reply word (``STORED``, ``NOT_FOUND``...), a read's value (None: a
#: miss), or an incr/decr's new value.
Result = str | bytes | int | None

#: The reply words each storage/delete command may get; anything else fails the check.
REPLIES: dict[str, frozenset[str]] = {
    "set": frozenset({"STORED"}),
    "append": frozenset({"STORED", "NOT_STORED"}),
    "cas": frozenset({"STORED", "EXISTS", "NOT_FOUND"}),
    "delete": frozenset({"DELETED", "NOT_FOUND"}),
}
READS = frozenset({"get", "gets"})
COUNTS = frozenset({"incr", "decr"})
KINDS = frozenset(REPLIES) | READS | COUNTS


@dataclass(frozen=True, eq=False)  # eq=False: an op is one event, equal only to itself
class Op:
    """One request and its reply.

    Attributes:
        client: which connection sent it.
        seq: the client's issue number (increasing in its order; unique per client).
        kind: ``set``, ``append``, ``cas``, ``delete``, ``get``, ``gets``, ``incr`` or ``decr``.
        key: the key.
        arg: the data a set/append/cas sent, or the delta of an incr/decr.
        token: the cas unique a cas sent, or the one a gets hit returned.
        result: see :data:`Result`.
        start: time.monotonic() before the request was sent.
        end: time.monotonic() after its reply was read.
    """

    client: int
    seq: int
    kind: str
    key: str
    arg: bytes | int | None = None
    token: int | None = None
    result: Result = None
    start: float = 0.0
    end: float = 0.0

    @property
    def id(self) -> tuple[int, int]:
        return (self.client, self.seq)


class HistoryError(ValueError):
    """The history breaks an assumption of the checker (see the module docstring): not judged."""


class Unparsable(ValueError):
    """A value that is not a set's value followed by append tokens; the message says where."""


# -- the values ---------------------------------------------------------------------------------

_NUM = rb"(0|[1-9][0-9]*)"
_HEAD = re.compile(rb"\{" + _NUM + rb"\." + _NUM + rb"\." + _NUM + rb":")
_TOKEN = re.compile(rb"\[" + _NUM + rb"\." + _NUM + rb"\]")


@lru_cache(maxsize=512)
def _body(client: int, seq: int, size: int) -> bytes:
    # Hex of a hash of the writer: no two writers share a stretch, so a value spliced from two
    # (or shifted) differs from both, and no delimiter ({}[]) can occur inside.
    return hashlib.shake_128(b"%d.%d" % (client, seq)).hexdigest((size + 1) // 2)[:size].encode()


def make_value(client: int, seq: int, size: int) -> bytes:
    """The value op ``(client, seq)`` sets: ``{client.seq.size:`` + ``size`` body bytes + ``}``."""
    return b"{%d.%d.%d:%s}" % (client, seq, size, _body(client, seq, size))


def make_token(client: int, seq: int) -> bytes:
    """The token op ``(client, seq)`` appends: ``[client.seq]``."""
    return b"[%d.%d]" % (client, seq)


@dataclass(frozen=True)
class Parsed:
    """A value taken apart: the set it starts with and the appends after it, in order."""

    base: tuple[int, int]
    size: int
    tokens: tuple[tuple[int, int], ...]


def parse_value(data: bytes) -> Parsed:
    """Take ``data`` apart into one :func:`make_value` and zero or more :func:`make_token`.

    Raises:
        Unparsable: anything else (torn, mixed, padded, invented); the message says where.
    """
    head = _HEAD.match(data)
    if head is None:
        raise Unparsable(f"does not start with a set's header: {_clip(data)}")
    client, seq, size = (int(g) for g in head.groups())
    body_end = head.end() + size
    if len(data) <= body_end:
        raise Unparsable(f"{len(data)} bytes: shorter than the {size}-byte body of {client}.{seq}'s value")
    want = _body(client, seq, size)
    got = data[head.end() : body_end]
    if got != want:
        at = next(i for i, (a, b) in enumerate(zip(got, want, strict=True)) if a != b)
        raise Unparsable(
            f"the body of {client}.{seq}'s value differs from byte {at} of {size}: {_clip(got[at:])}"
        )
    if data[body_end] != ord("}"):
        raise Unparsable(f"no '}}' after the {size}-byte body of {client}.{seq}'s value")
    tokens = []
    pos = body_end + 1
    while pos < len(data):
        tok = _TOKEN.match(data, pos)
        if tok is None:
            raise Unparsable(
                f"after {client}.{seq}'s value, offset {pos} is not an append token: {_clip(data[pos:])}"
            )
        tokens.append((int(tok[1]), int(tok[2])))
        pos = tok.end()
    return Parsed((client, seq), size, tuple(tokens))


# -- messages -----------------------------------------------------------------------------------


def _clip(data: bytes, limit: int = 48) -> str:
    return repr(data[:limit]) + ("..." if len(data) > limit else "")


def _ids(ids: Sequence[tuple[int, int]], limit: int = 8) -> str:
    shown = [f"{c}.{s}" for c, s in ids]
    if len(shown) > limit:
        shown = shown[: limit // 2] + [f"...({len(shown) - limit} more)..."] + shown[-limit // 2 :]
    return " ".join(shown)


def show_value(data: bytes) -> str:
    """``data`` in a line: whose value, with which appends, or why it does not parse."""
    try:
        p = parse_value(data)
    except Unparsable as e:
        return f"{_clip(data)} ({len(data)} B; {e})"
    text = f"value of {p.base[0]}.{p.base[1]} ({len(data)} B)"
    return text + (f" + appends {_ids(p.tokens)}" if p.tokens else "")


def describe(op: Op) -> str:
    """One line per op for failure messages: who, what, the reply, when."""
    sent = ""
    if isinstance(op.arg, bytes):
        sent = " " + (show_value(op.arg) if op.kind != "append" else op.arg.decode(errors="replace"))
    elif op.arg is not None:
        sent = f" {op.arg}"
    if op.kind == "cas":
        sent += f" token {op.token}"
    if isinstance(op.result, bytes):
        got = show_value(op.result) + (f" token {op.token}" if op.kind == "gets" else "")
    else:
        got = "miss" if op.result is None else str(op.result)
    return (
        f"client {op.client} #{op.seq}: {op.kind} {op.key}{sent} -> {got}   [{op.start:.6f} .. {op.end:.6f}]"
    )


def _fail(key: str, what: str, *ops: Op) -> NoReturn:
    raise AssertionError("\n".join([f"key {key!r}: {what}", *("    " + describe(op) for op in ops)]))


# -- checks shared by every key -----------------------------------------------------------------


def _check_clients(ops: Sequence[Op]) -> None:
    """``(client, seq)`` is unique and a client's requests do not overlap in time."""
    by_client: dict[int, list[Op]] = defaultdict(list)
    for op in ops:
        if op.kind not in KINDS:
            raise HistoryError(f"unknown kind {op.kind!r}: {describe(op)}")
        if op.start > op.end:
            raise HistoryError(f"ends before it starts: {describe(op)}")
        by_client[op.client].append(op)
    for mine in by_client.values():
        mine.sort(key=lambda o: o.seq)
        for a, b in zip(mine, mine[1:], strict=False):
            if a.seq == b.seq:
                raise HistoryError(f"two ops with one (client, seq):\n{describe(a)}\n{describe(b)}")
            if b.start < a.end:
                raise HistoryError(f"one client's ops overlap in time:\n{describe(a)}\n{describe(b)}")


def _check_reply(op: Op) -> None:
    """The reply is one this command can get (a SERVER_ERROR, ERROR... fails here)."""
    r = op.result
    if op.kind in REPLIES:
        ok = isinstance(r, str) and r in REPLIES[op.kind]
    elif op.kind in READS:
        ok = r is None or (isinstance(r, bytes) and (op.kind == "get" or isinstance(op.token, int)))
    else:
        ok = (isinstance(r, int) and r >= 0) or r == "NOT_FOUND"
    if not ok:
        _fail(op.key, "unexpected reply", op)


def _is_hit(op: Op) -> bool:
    return op.kind in READS and isinstance(op.result, bytes)


def _is_absent(op: Op) -> bool:
    """The reply says the key held nothing when the op took effect."""
    return (
        (op.kind in READS and op.result is None)
        or (op.kind == "append" and op.result == "NOT_STORED")
        or (op.kind in ("cas", "delete") and op.result == "NOT_FOUND")
    )


def _is_present(op: Op) -> bool:
    """The reply says the key held an item when the op took effect (for a delete: just before)."""
    return (
        _is_hit(op)
        or (op.kind in ("append", "cas") and op.result in ("STORED", "EXISTS"))
        or (op.kind == "delete" and op.result == "DELETED")
    )


def _replaces(op: Op) -> bool:
    """A write that leaves a new value (not after an existing one): set, or cas that won."""
    return op.kind in ("set", "cas") and op.result == "STORED"


def _modifies(op: Op) -> bool:
    """Changes the item (and so its cas token): a winning set/cas/append, or a delete that deleted."""
    return (op.kind in ("set", "cas", "append") and op.result == "STORED") or (
        op.kind == "delete" and op.result == "DELETED"
    )


class _Latest:
    """Among some ops, of those that ended before a time, the one with the greatest ``by`` (by
    default the latest start): prefix maxima in the order of their ends."""

    def __init__(self, ops: Sequence[Op], by: Callable[[Op], float] = lambda o: o.start) -> None:
        self.ops = sorted(ops, key=lambda o: o.end)
        self.ends = [o.end for o in self.ops]
        best: list[Op] = []
        for o in self.ops:
            best.append(o if not best or by(o) > by(best[-1]) else best[-1])
        self.best = best

    def ended_before(self, t: float) -> Op | None:
        i = bisect_left(self.ends, t)
        return self.best[i - 1] if i else None


class _LastEnd:
    """Among some ops, the latest end of those that started by a time (prefix maxima by start)."""

    def __init__(self, ops: Sequence[Op]) -> None:
        self.ops = sorted(ops, key=lambda o: o.start)
        self.starts = [o.start for o in self.ops]
        best: list[Op] = []
        for o in self.ops:
            best.append(o if not best or o.end > best[-1].end else best[-1])
        self.best = best

    def started_by(self, t: float) -> Op | None:
        i = bisect_right(self.starts, t)
        return self.best[i - 1] if i else None


# -- value keys ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _State:
    """What a read saw: the write whose value it starts with, then the appends after it."""

    base: Op
    appends: tuple[Op, ...]


class _ValueKey:
    """One value key's history: its ops by start, and what each read saw."""

    def __init__(self, ops: Sequence[Op], key: str) -> None:
        _check_clients(ops)
        self.key = key
        self.ops = sorted((op for op in ops if op.key == key), key=lambda o: o.start)
        self.starts = [op.start for op in self.ops]
        for op in self.ops:
            if op.kind in COUNTS:
                raise HistoryError(f"incr/decr on a value key: {describe(op)}")
            _check_reply(op)
        writes = {op.id: op for op in ops if op.kind in ("set", "cas", "append")}
        for op in self.ops:
            if op.kind in ("set", "cas", "append"):
                _check_write(op)
        #: What each read hit saw.
        self.states = {op: self._explain(op, writes) for op in self.ops if _is_hit(op)}
        #: The reads of each write's value.
        self.reads_of: dict[Op, list[Op]] = defaultdict(list)
        for op, st in self.states.items():
            self.reads_of[st.base].append(op)
        #: The latest time each write (that was read) surely took effect by.
        self.done_by = {b: min([b.end, *(r.end for r in reads)]) for b, reads in self.reads_of.items()}

    def _explain(self, read: Op, writes: dict[tuple[int, int], Op]) -> _State:
        """Which write and appends ``read`` saw; fails if they cannot be (see the docstring)."""
        key = self.key
        assert isinstance(read.result, bytes)
        try:
            parsed = parse_value(read.result)
        except Unparsable as e:
            _fail(key, f"read a torn or mixed value: {e}", read)
        base = writes.get(parsed.base)
        if base is None or base.kind == "append" or not isinstance(base.arg, bytes):
            _fail(key, f"read a value no set or cas wrote ({parsed.base[0]}.{parsed.base[1]})", read)
        if base.key != key:
            _fail(key, f"read a value written to key {base.key!r}", read, base)
        if parse_value(base.arg).size != parsed.size:
            _fail(key, "read a value whose header gives another length than its writer's", read, base)
        if base.result != "STORED":
            _fail(key, f"read the value of a {base.kind} that answered {base.result!r}", read, base)
        if base.start > read.end:
            _fail(key, "read a value whose write began only after the read ended", base, read)
        appends: list[Op] = []
        seen: set[tuple[int, int]] = set()
        last_of: dict[int, Op] = {}  # each client's latest token so far in this value
        latest = base  # of the write and the appends so far, the one that started last
        for tid in parsed.tokens:
            a = writes.get(tid)
            if a is None or a.kind != "append":
                _fail(key, f"read a token no append sent ({tid[0]}.{tid[1]})", read)
            if a.key != key:
                _fail(key, f"read a token appended to key {a.key!r}", read, a)
            if a.result != "STORED":
                _fail(key, f"read the token of an append that answered {a.result!r}", read, a)
            if tid in seen:
                _fail(key, f"read token {tid[0]}.{tid[1]} twice in one value", read, a)
            seen.add(tid)
            prev = last_of.get(a.client)
            if prev is not None and prev.seq > a.seq:
                _fail(key, f"read client {a.client}'s appends out of its issue order", read, a, prev)
            last_of[a.client] = a
            if a.start > read.end:
                _fail(key, "read a token whose append began only after the read ended", a, read)
            if latest.start > a.end:
                # ``latest`` precedes ``a`` in the value, so it took effect first: impossible if
                # it began only after ``a`` had ended.
                _fail(key, "read a value whose parts surely happened in the other order", latest, a, read)
            if a.start > latest.start:
                latest = a
            appends.append(a)
        return _State(base, tuple(appends))

    def between(self, lo: float, hi: float) -> Iterator[Op]:
        """The ops surely after ``lo`` and surely before ``hi``."""
        for i in range(bisect_right(self.starts, lo), len(self.ops)):
            op = self.ops[i]
            if op.start >= hi:
                return
            if op.end < hi:
                yield op

    def check_current(self, op: Op, st: _State) -> None:
        """Nothing surely between ``st.base`` and ``op`` (which saw ``st``) contradicts ``st``."""
        key = self.key
        mine = set(st.appends)
        for h in self.between(self.done_by.get(st.base, st.base.end), op.start):
            if h is st.base:
                continue
            if _replaces(h):
                _fail(key, "a stale value: overwritten after its write and before this", st.base, h, op)
            if h.kind == "delete" and h.result == "DELETED":
                _fail(key, "a stale value: deleted after its write and before this", st.base, h, op)
            if h.kind == "append" and h.result == "STORED" and h not in mine:
                _fail(key, "a lost append: after the write and before this, not in the value", st.base, h, op)
            if _is_absent(h):
                _fail(key, "the key was absent after the write of the value and before this", st.base, h, op)
            seen = self.states.get(h)
            if seen is not None and seen.base is not st.base:
                _fail(key, "a read between the write of the value and this saw another", st.base, h, op)


def _check_write(op: Op) -> None:
    want = make_token(op.client, op.seq) if op.kind == "append" else None
    if want is not None and op.arg != want:
        raise HistoryError(f"an append must send make_token(client, seq): {describe(op)}")
    if want is None:
        ok = isinstance(op.arg, bytes)
        if isinstance(op.arg, bytes):
            try:
                p = parse_value(op.arg)
                ok = p.base == op.id and not p.tokens
            except Unparsable:
                ok = False
        if not ok:
            raise HistoryError(f"a set/cas must send make_value(client, seq, size): {describe(op)}")


def check_values(ops: Sequence[Op], key: str) -> None:
    """Check what ``key`` went through, as sets, appends, deletes and reads (module docstring).

    Raises:
        AssertionError: no order of the ops explains what was read; the message names them.
        HistoryError: the history breaks the checker's assumptions.
    """
    vk = _ValueKey(ops, key)

    # One story for all reads: a token follows one set; one set's reads are prefixes of one
    # sequence of appends; a read surely after another of the same set sees no fewer of them.
    owner: dict[Op, Op] = {}  # append -> a read that saw it
    for read, st in vk.states.items():
        for a in st.appends:
            first = owner.setdefault(a, read)
            if vk.states[first].base is not st.base:
                _fail(key, "one append's token after two different values", first, read, a)
    for reads in vk.reads_of.values():
        longest = max(reads, key=lambda r: len(vk.states[r].appends))
        full = vk.states[longest].appends
        for r in reads:
            seen = vk.states[r].appends
            if full[: len(seen)] != seen:
                _fail(key, "two reads of one value saw its appends in different orders", longest, r)
        # The reads that ended before each read started: the one that saw the most appends.
        ahead = _Latest(reads, by=lambda r: len(vk.states[r].appends))
        for r in reads:
            most = ahead.ended_before(r.start)
            if most is not None and len(vk.states[most].appends) > len(vk.states[r].appends):
                _fail(key, "a read saw fewer appends than a read surely before it", most, r)

    for read, st in vk.states.items():
        vk.check_current(read, st)

    # Absent when something surely showed the key present: a delete must fit between the two.
    # (A delete that deleted shows the key present just before it, but is itself the delete.)
    present = _Latest([op for op in vk.ops if (_is_present(op) and op.kind != "delete") or _replaces(op)])
    deletes = _LastEnd([op for op in vk.ops if op.kind == "delete" and op.result == "DELETED"])
    for op in vk.ops:
        if not _is_absent(op):
            continue
        p = present.ended_before(op.start)
        if p is None:
            continue
        d = deletes.started_by(op.end)
        if d is None or d.end <= p.start:
            _fail(
                key,
                "reported absent, though no delete can have come since the key surely held a value",
                p,
                op,
            )
    # And present after a sign of absence (or none yet: keys start absent): a set must fit between.
    absent = _Latest(
        [op for op in vk.ops if _is_absent(op) or (op.kind == "delete" and op.result == "DELETED")]
    )
    sets = _LastEnd([op for op in vk.ops if op.kind == "set"])
    for op in vk.ops:
        if not _is_present(op):
            continue
        gone = absent.ended_before(op.start)
        s = sets.started_by(op.end)
        if s is None or (gone is not None and s.end <= gone.start):
            _fail(
                key,
                "found an item, though no set can have come since the key was surely absent",
                *([gone] if gone else []),
                op,
            )


# -- cas ----------------------------------------------------------------------------------------


def check_cas(ops: Sequence[Op], key: str) -> None:
    """Check ``key``'s cas tokens against its values and writes (module docstring).

    Raises:
        AssertionError: no order of the ops explains the tokens seen and the cas replies.
        HistoryError: the history breaks the checker's assumptions.
    """
    vk = _ValueKey(ops, key)
    sightings: dict[int, list[Op]] = defaultdict(list)  # token -> gets hits that returned it
    token_of: dict[bytes, Op] = {}  # value -> a gets that returned it
    for op in vk.ops:
        if op.kind != "gets" or not isinstance(op.result, bytes):
            continue
        assert op.token is not None
        sightings[op.token].append(op)
        other = token_of.setdefault(op.result, op)
        if other.token != op.token:
            _fail(key, "one value read with two cas tokens (a token changed without a write)", other, op)
    for token, seen in sightings.items():
        first = seen[0]
        for op in seen:
            if op.result != first.result:
                _fail(key, f"one cas token {token} named two values", first, op)

    modifications = [op for op in vk.ops if _modifies(op)]
    winners: dict[int, Op] = {}
    for op in vk.ops:
        if op.kind != "cas":
            continue
        if op.token not in sightings:
            raise HistoryError(f"a cas with a token no gets of {key!r} returned: {describe(op)}")
        seen = sightings[op.token]
        if op.result == "STORED":
            other = winners.setdefault(op.token, op)
            if other is not op:
                _fail(key, f"two cas won with one token {op.token}", other, op)
            later = [s for s in seen if s.start > op.end]
            if later:
                _fail(key, f"token {op.token} read after the cas that replaced it", op, later[0])
            st = vk.states[seen[0]]
            vk.check_current(op, st)
            continue
        before = [s for s in seen if s.end < op.start]
        after = [s for s in seen if s.start > op.end]
        if before and after:
            _fail(
                key,
                f"cas answered {op.result!r} while its token was current before and after",
                before[0],
                op,
                after[0],
            )
        if op.result == "EXISTS" and before:
            last = max(before, key=lambda s: s.start)
            if not any(
                m is not op and m.kind != "delete" and m.end > last.start and m.start < op.end
                for m in modifications
            ):
                _fail(
                    key,
                    f"cas answered EXISTS, but nothing can have replaced token {op.token} since it was read",
                    last,
                    op,
                )

    # Between two sightings of a token the item did not change (a change gives a new token).
    points: dict[int, list[Op]] = {t: list(s) for t, s in sightings.items()}
    for t, w in winners.items():
        points[t].append(w)
    for token, pts in points.items():
        lo = min(pts, key=lambda p: p.end)
        hi = max(pts, key=lambda p: p.start)
        for m in vk.between(lo.end, hi.start):
            if _modifies(m):
                _fail(key, f"the item changed while token {token} stayed current", lo, m, hi)


# -- counters -----------------------------------------------------------------------------------


def _number(op: Op) -> int:
    """A counter read's value as a number (memcached pads a shrunk counter with spaces)."""
    assert isinstance(op.result, bytes)
    text = op.result.rstrip(b" ")
    if not text.isdigit():
        _fail(op.key, "a counter read as no number", op)
    return int(text)


def check_counters(ops: Sequence[Op], key: str) -> None:
    """Check counter ``key``: one set, then incr/decr/get (module docstring).

    Raises:
        AssertionError: no order of the updates explains the replies and reads.
        HistoryError: not a counter history of that shape.
    """
    _check_clients(ops)
    mine = sorted((op for op in ops if op.key == key), key=lambda o: o.start)
    sets = [op for op in mine if op.kind == "set"]
    first = sets[0] if len(sets) == 1 else None
    if first is None or not isinstance(first.arg, bytes) or not first.arg.isdigit():
        raise HistoryError(f"counter {key!r} needs exactly one set, of a number")
    _check_reply(first)
    initial = int(first.arg)
    rest = [op for op in mine if op is not first]
    for op in rest:
        if op.kind not in COUNTS and op.kind not in READS:
            raise HistoryError(f"counter {key!r} takes only incr, decr and reads: {describe(op)}")
        if op.start <= first.end:
            raise HistoryError(f"counter {key!r}: ops must start after its set ended: {describe(op)}")
        if op.kind in COUNTS and (not isinstance(op.arg, int) or op.arg <= 0):
            raise HistoryError(f"counter deltas must be positive: {describe(op)}")
        _check_reply(op)
        if op.result == "NOT_FOUND":
            _fail(key, f"{op.kind} found no counter (it was set and never deleted)", first, op)
    updates = [op for op in rest if op.kind in COUNTS]
    reads = [op for op in rest if _is_hit(op)]
    for op in rest:
        if op.kind in READS and op.result is None:
            _fail(key, "a counter read missed (it was set and never deleted)", first, op)
    ups = sum(int(op.arg) for op in updates if op.kind == "incr" and isinstance(op.arg, int))
    downs = sum(int(op.arg) for op in updates if op.kind == "decr" and isinstance(op.arg, int))
    if initial - downs <= 0 or initial + ups >= 2**64:
        raise HistoryError(f"counter {key!r} may clamp at 0 or wrap: the checker cannot judge it")
    if downs:
        _check_walk(key, initial, first, updates, reads)
        _check_bounds(key, initial, updates, reads)
    else:
        _check_chain(key, initial, first, updates, reads)


def _check_chain(key: str, initial: int, first: Op, incrs: list[Op], reads: list[Op]) -> None:
    """Incr only: the replies, sorted, are the one chain initial -> ... -> initial + sum."""
    chain = sorted(incrs, key=lambda o: int(o.result or 0))
    prev: Op = first
    value = initial
    for op in chain:
        assert isinstance(op.result, int) and isinstance(op.arg, int)
        if op.result == value:
            _fail(key, "two updates answered the same value", prev, op)
        if op.result - op.arg != value:
            _fail(
                key,
                f"incr by {op.arg} answered {op.result}, but the value before it can only have been "
                f"{value} (each reply minus its delta must be the reply just below it)",
                prev,
                op,
            )
        value = op.result
        prev = op
    # Real time: the chain's order is the order they took effect; none may surely precede an
    # earlier link.
    latest: Op | None = None
    for op in chain:
        if latest is not None and latest.start > op.end:
            _fail(key, "an incr surely before another answered the larger value", op, latest)
        if latest is None or op.start > latest.start:
            latest = op
    # A read sees a link that was current some time during it.
    index = {int(op.result or 0): i for i, op in enumerate(chain)}
    last_end = max((op.end for op in chain), default=first.end)
    for r in reads:
        v = _number(r)
        if r.start > last_end and v != value:
            _fail(
                key,
                f"counter total is {v} after every incr ended; it must be {value} = {initial} + "
                f"{value - initial} (the sum of {len(chain)} incrs)",
                r,
            )
        i = -1 if v == initial else index.get(v)
        if i is None:
            _fail(key, f"read {v}, which no incr answered (nor the initial {initial})", r)
        made = chain[i] if i >= 0 else first
        if made.start > r.end:
            _fail(key, "read a value whose incr began only after the read", made, r)
        if i + 1 < len(chain) and chain[i + 1].end < r.start:
            _fail(key, "read a stale value: the next incr had surely been done", chain[i + 1], r)


def _signed(op: Op) -> int:
    assert isinstance(op.arg, int)
    return op.arg if op.kind == "incr" else -op.arg


def _check_walk(key: str, initial: int, first: Op, updates: list[Op], reads: list[Op]) -> None:
    """incr and decr: the replies are one walk from the initial value through every update.

    Each update is a step from (its reply - its signed delta) to its reply; taken in the order
    they took effect, the steps join end to start, from the initial value on. So the steps must
    form a trail through all of them (every value left as often as it is reached, but the
    initial value left once more and the last reached once more; all of them connected), and
    each read must see the initial value or a reply.
    """
    balance: dict[int, int] = defaultdict(int)  # times left - times reached
    step_at: dict[int, Op] = {}  # a step that reaches or leaves each value (for the message)
    linked: dict[int, int] = {}  # union-find over the values, to see they are all connected

    def root(v: int) -> int:
        linked.setdefault(v, v)
        while linked[v] != v:
            linked[v] = linked[linked[v]]
            v = linked[v]
        return v

    root(initial)
    for op in updates:
        assert isinstance(op.result, int)
        before = op.result - _signed(op)
        balance[before] += 1
        balance[op.result] -= 1
        step_at.setdefault(before, op)
        step_at.setdefault(op.result, op)
        linked[root(before)] = root(op.result)
    final = initial + sum(_signed(op) for op in updates)
    for v, b in sorted(balance.items()):
        want = (v == initial) - (v == final)
        if b != want:
            _fail(
                key,
                f"the incr/decr replies do not chain: no order of them goes from {initial} through "
                f"every reply to {final} (value {v} is left {b - want:+d} times more than it can be)",
                step_at[v],
            )
    for v in step_at:
        if root(v) != root(initial):
            _fail(key, f"the incr/decr replies do not chain: {v} is never reached from {initial}", step_at[v])
    for r in reads:
        v = _number(r)
        if v != initial and v not in step_at:
            _fail(key, f"read {v}, which no incr or decr answered (nor the initial {initial})", first, r)


def _check_bounds(key: str, initial: int, updates: list[Op], reads: list[Op]) -> None:
    """incr and decr: each reply and read within reach of the updates that may precede it."""
    signed = _signed
    by_end = sorted(updates, key=lambda o: o.end)
    ends = [o.end for o in by_end]
    by_start = sorted(updates, key=lambda o: o.start)
    starts = [o.start for o in by_start]
    # prefix sums of the increments and of the decrements, in each order
    up_end = [0, *accumulate(max(signed(o), 0) for o in by_end)]
    down_end = [0, *accumulate(max(-signed(o), 0) for o in by_end)]
    up_start = [0, *accumulate(max(signed(o), 0) for o in by_start)]
    down_start = [0, *accumulate(max(-signed(o), 0) for o in by_start)]
    for op in [*updates, *reads]:
        done = bisect_left(ends, op.start)  # surely before op
        begun = bisect_right(starts, op.end)  # may be before op (op itself among them)
        own = signed(op) if op.kind in COUNTS else 0
        sure = initial + up_end[done] - down_end[done] + own
        maybe_up = up_start[begun] - up_end[done] - max(own, 0)
        maybe_down = down_start[begun] - down_end[done] - max(-own, 0)
        v = op.result if isinstance(op.result, int) else _number(op)
        if not sure - maybe_down <= v <= sure + maybe_up:
            what = "answered" if op.kind in COUNTS else "read"
            _fail(
                key,
                f"{what} {v}, out of reach: {sure} from the updates surely before it (and its own), "
                f"-{maybe_down}..+{maybe_up} from those that may have been",
                op,
            )


# -- a whole history ----------------------------------------------------------------------------


def check_history(ops: Sequence[Op]) -> None:
    """Run the checks that fit each key: counters where there are incr/decr, else values and cas."""
    _check_clients(ops)
    for key in sorted({op.key for op in ops}):
        if any(op.kind in COUNTS for op in ops if op.key == key):
            check_counters(ops, key)
        else:
            check_values(ops, key)
            check_cas(ops, key)
