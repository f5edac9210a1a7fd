"""The model behind benchmarks/loadtest.py: what one connection's keys must hold, and its commands.

:class:`Owned` draws a random command on the keys of one connection, updates its model of them as
the server must (memcached 1.6's semantics), and returns the request with a check of its reply:
most replies are predicted byte for byte; those carrying CAS values are parsed, and each CAS must
stay the same while the item is not written and grow with every write (memcached's CAS counter is
global and increasing).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

U64 = 1 << 64
#: Owned keys per connection: ordinary ones (values are letters) and counters (values are digits).
KEYS = 120
COUNTERS = 16
#: Appends turn into sets past this length, so values stay within -I and memory stays small.
MAX_VALUE = 200_000
NON_NUMERIC = b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"
_LETTERS_RNG = random.Random(7)
LETTERS = bytes(_LETTERS_RNG.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(1 << 18))

#: A check returns None when the reply is right, else what was wrong.
Check = Callable[[bytes], "str | None"]


class Wrong(Exception):
    """A reply that is not the one the model predicts (or is malformed)."""


@dataclass
class Item:
    value: bytes
    flags: int


@dataclass
class Planned:
    """One command, its reply's framing, and how to check the reply."""

    name: str
    request: bytes
    kind: str  # none | line | values | meta | mn (meta replies up to MN)
    check: Check


def exact(expected: bytes) -> Check:
    return lambda got: None if got == expected else difference(expected, got)


def difference(expected: bytes, got: bytes) -> str:
    """Say where ``got`` departs from ``expected``."""
    at = next(
        (i for i, (a, b) in enumerate(zip(expected, got, strict=False)) if a != b),
        min(len(expected), len(got)),
    )
    lo = max(0, at - 60)
    return (
        f"expected {len(expected)} bytes, got {len(got)}; first difference at byte {at}: "
        f"expected ...{expected[lo : at + 60]!r}, got ...{got[lo : at + 60]!r}"
    )


def value_reply(key: bytes, item: Item | None) -> bytes:
    if item is None:
        return b""
    return b"VALUE %s %d %d\r\n%s\r\n" % (key, item.flags, len(item.value), item.value)


def parse_values(reply: bytes) -> list[tuple[bytes, int, bytes, int | None]]:
    """Split a get/gets reply into (key, flags, data, cas); raise Wrong when it is malformed."""
    out: list[tuple[bytes, int, bytes, int | None]] = []
    pos = 0
    while True:
        eol = reply.find(b"\r\n", pos)
        if eol < 0:
            raise Wrong("reply does not end in END")
        line = reply[pos:eol]
        if line == b"END":
            if eol + 2 != len(reply):
                raise Wrong("bytes after END")
            return out
        parts = line.split(b" ")
        if parts[0] != b"VALUE" or len(parts) not in (4, 5):
            raise Wrong(f"bad line {line[:100]!r}")
        size = int(parts[3])
        data = reply[eol + 2 : eol + 2 + size]
        if len(data) != size or reply[eol + 2 + size : eol + 4 + size] != b"\r\n":
            raise Wrong("data block of the wrong length")
        out.append((parts[1], int(parts[2]), data, int(parts[4]) if len(parts) == 5 else None))
        pos = eol + 4 + size


def counter_after(old: bytes, result: int) -> bytes:
    """What a counter holds after incr/decr: memcached writes a shorter result in place, padded."""
    text = b"%d" % result
    return text + b" " * (len(old) - len(text)) if len(text) <= len(old) else text


class Owned:
    """The keys one connection owns and the model of what they hold."""

    def __init__(self, prefix: bytes, rng: random.Random, loose_counters: bool = False) -> None:
        self.rng = rng
        self.loose_counters = loose_counters
        #: loose_counters: counters memcached may hold differently from the model (a shrunk
        #: result it did not pad, or a value of 2^63 or more it may call non-numeric); they are
        #: left alone until set again.
        self.unsure: set[bytes] = set()
        self.keys = [b"%sk%d" % (prefix, i) for i in range(KEYS)]
        self.counters = [b"%sn%d" % (prefix, i) for i in range(COUNTERS)]
        self.items: dict[bytes, Item] = {}
        self.version: Counter[bytes] = Counter()  # bumped by every write (and delete)
        self.cas_seen: dict[bytes, tuple[int, int]] = {}  # key -> (version, cas) last observed

    # -- the model -------------------------------------------------------------------------------

    def sure_counters(self) -> list[bytes]:
        return [k for k in self.counters if k not in self.unsure]

    def write(self, key: bytes, item: Item | None) -> None:
        self.version[key] += 1
        self.unsure.discard(key)
        if item is None:
            self.items.pop(key, None)
        else:
            self.items[key] = item

    def observe_cas(self, key: bytes, version: int, cas: int | None) -> str | None:
        """Check a CAS value seen for ``key`` as of ``version`` against the ones seen before."""
        if cas is None:
            return "no CAS in the reply"
        prev = self.cas_seen.get(key)
        if prev is not None:
            pver, pcas = prev
            if pver == version and pcas != cas:
                return f"CAS of {key!r} changed from {pcas} to {cas} without a write"
            if pver < version and cas <= pcas:
                return f"CAS of {key!r} did not advance past {pcas} after a write (got {cas})"
            if pver > version:
                return None
        self.cas_seen[key] = (version, cas)
        return None

    def known_cas(self, key: bytes) -> int | None:
        seen = self.cas_seen.get(key)
        return seen[1] if seen and seen[0] == self.version[key] else None

    def stale_cas(self, key: bytes) -> int | None:
        seen = self.cas_seen.get(key)
        return seen[1] if seen and seen[0] < self.version[key] else None

    # -- generating values -------------------------------------------------------------------------

    def value(self) -> bytes:
        r = self.rng.random()
        size = (
            self.rng.randint(1, 100)
            if r < 0.7
            else self.rng.randint(100, 2000)
            if r < 0.95
            else self.rng.randint(2000, 20_000)
            if r < 0.99
            else self.rng.randint(20_000, MAX_VALUE // 2)
        )
        start = self.rng.randrange(len(LETTERS) - size)
        return LETTERS[start : start + size]

    def flags(self) -> int:
        return self.rng.getrandbits(32) if self.rng.random() < 0.3 else self.rng.randint(0, 100)

    def number(self) -> int:
        r = self.rng.random()
        return self.rng.randint(0, 100) if r < 0.5 else U64 - self.rng.randint(1, 50) if r < 0.6 else 10**15

    def delta(self) -> int:
        r = self.rng.random()
        return self.rng.randint(0, 10) if r < 0.8 else self.rng.randint(0, U64 - 1)

    # -- commands ----------------------------------------------------------------------------------

    def plan(self) -> Planned:
        """A random command on the owned keys, its effect already applied to the model."""
        return self.rng.choices(OPS, WEIGHTS)[0](self)

    def values_check(self, keys: list[bytes], with_cas: bool) -> Check:
        """Check a get/gets/gat reply: the hits the model predicts, in order, and their CAS."""
        expected = [(k, self.items[k]) for k in keys if k in self.items]
        versions = {k: self.version[k] for k in keys}

        def check(got: bytes) -> str | None:
            entries = parse_values(got)
            if [(k, f, d) for k, f, d, _ in entries] != [(k, i.flags, i.value) for k, i in expected]:
                want = b"".join(value_reply(k, i) for k, i in expected) + b"END\r\n"
                seen = b"".join(value_reply(k, Item(d, f)) for k, f, d, _ in entries) + b"END\r\n"
                return "(CAS values left out) " + difference(want, seen)
            for k, _, _, cas in entries:
                if with_cas:
                    wrong = self.observe_cas(k, versions[k], cas)
                    if wrong:
                        return wrong
                elif cas is not None:
                    return "a CAS value in a get reply"
            return None

        return check

    def op_set(self) -> Planned:
        key, value, flags = self.rng.choice(self.keys), self.value(), self.flags()
        head = b"set %s %d %%d %d" % (key, flags, len(value))
        r = self.rng.random()
        if r < 0.03:  # a negative exptime stores an item that is already expired
            self.write(key, None)
            return Planned("set", head % -1 + b"\r\n%s\r\n" % value, "line", exact(b"STORED\r\n"))
        self.write(key, Item(value, flags))
        if r < 0.15:
            return Planned("set", head % 0 + b" noreply\r\n%s\r\n" % value, "none", exact(b""))
        return Planned("set", head % 0 + b"\r\n%s\r\n" % value, "line", exact(b"STORED\r\n"))

    def op_add_replace(self) -> Planned:
        key, value, flags = self.rng.choice(self.keys), self.value(), self.flags()
        cmd = self.rng.choice((b"add", b"replace"))
        stored = (key in self.items) == (cmd == b"replace")
        if stored:
            self.write(key, Item(value, flags))
        reply = b"STORED\r\n" if stored else b"NOT_STORED\r\n"
        req = b"%s %s %d 0 %d\r\n%s\r\n" % (cmd, key, flags, len(value), value)
        return Planned(cmd.decode(), req, "line", exact(reply))

    def concat(self, key: bytes, old: Item | None, value: bytes, at_end: bool) -> None:
        """Model an append (``at_end``) or prepend: it changes only an existing item, flags kept."""
        if old is not None:
            self.write(key, Item(old.value + value if at_end else value + old.value, old.flags))

    def op_append_prepend(self) -> Planned:
        key, value = self.rng.choice(self.keys), self.value()
        old = self.items.get(key)
        if old is not None and len(old.value) + len(value) > MAX_VALUE:
            return self.op_set()
        cmd = self.rng.choice((b"append", b"prepend"))
        self.concat(key, old, value, cmd == b"append")
        reply = b"STORED\r\n" if old is not None else b"NOT_STORED\r\n"
        req = b"%s %s %d 0 %d\r\n%s\r\n" % (cmd, key, self.flags(), len(value), value)
        return Planned(cmd.decode(), req, "line", exact(reply))

    def op_get(self) -> Planned:
        key = self.rng.choice(self.keys + self.sure_counters())
        want = value_reply(key, self.items.get(key)) + b"END\r\n"
        return Planned("get", b"get %s\r\n" % key, "values", exact(want))

    def op_multiget(self) -> Planned:
        keys = self.rng.sample(self.keys + self.sure_counters(), self.rng.randint(2, 12))
        want = b"".join(value_reply(k, self.items.get(k)) for k in keys) + b"END\r\n"
        return Planned("multi-get", b"get %s\r\n" % b" ".join(keys), "values", exact(want))

    def op_gets(self) -> Planned:
        keys = self.rng.sample(self.keys + self.sure_counters(), self.rng.randint(1, 6))
        req = b"gets %s\r\n" % b" ".join(keys)
        return Planned("gets", req, "values", self.values_check(keys, True))

    def op_gat(self) -> Planned:
        keys = self.rng.sample(self.keys, self.rng.randint(1, 4))
        cmd = self.rng.choice((b"gat", b"gats"))
        req = b"%s %d %s\r\n" % (cmd, self.rng.choice((0, 3600)), b" ".join(keys))
        return Planned(cmd.decode(), req, "values", self.values_check(keys, cmd == b"gats"))

    def compare_and_swap(
        self, key: bytes, value: bytes, flags: int, replies: tuple[bytes, bytes, bytes]
    ) -> tuple[int, bytes] | None:
        """Plan a compare-and-swap of ``key`` to ``value``: the CAS to send and the reply due.

        ``replies`` are the not-found, stored and exists replies (cas and ms word them apart).
        Mostly the current CAS, sometimes a stale one; None when no CAS of the key is known yet.
        """
        known, stale = self.known_cas(key), self.stale_cas(key)
        if key not in self.items:
            return (stale or self.rng.randint(1, 1 << 40)), replies[0]
        if known is not None and (stale is None or self.rng.random() < 0.8):
            self.write(key, Item(value, flags))
            return known, replies[1]
        if stale is not None:
            return stale, replies[2]
        return None

    def op_cas(self) -> Planned:
        key, value, flags = self.rng.choice(self.keys), self.value(), self.flags()
        swap = self.compare_and_swap(key, value, flags, (b"NOT_FOUND\r\n", b"STORED\r\n", b"EXISTS\r\n"))
        if swap is None:  # no CAS known for it yet: learn one
            return self.op_gets()
        use, reply = swap
        req = b"cas %s %d 0 %d %d\r\n%s\r\n" % (key, flags, len(value), use, value)
        return Planned("cas", req, "line", exact(reply))

    def op_delete(self) -> Planned:
        key = self.rng.choice(self.keys + self.sure_counters())
        present = key in self.items
        self.write(key, None)
        if present and self.rng.random() < 0.2:
            return Planned("delete", b"delete %s noreply\r\n" % key, "none", exact(b""))
        reply = b"DELETED\r\n" if present else b"NOT_FOUND\r\n"
        return Planned("delete", b"delete %s\r\n" % key, "line", exact(reply))

    def op_touch(self) -> Planned:
        key = self.rng.choice(self.keys + self.sure_counters())
        reply = b"TOUCHED\r\n" if key in self.items else b"NOT_FOUND\r\n"
        return Planned("touch", b"touch %s %d\r\n" % (key, self.rng.choice((0, 3600))), "line", exact(reply))

    def _arith(self, key: bytes, incr: bool, delta: int) -> bytes:
        """Apply incr/decr to the model; return memcached's reply line."""
        item = self.items.get(key)
        if item is None:
            return b"NOT_FOUND\r\n"
        text = item.value.rstrip(b" ")
        if not text.isdigit() or int(text) >= U64:
            return NON_NUMERIC
        result = (int(text) + delta) % U64 if incr else max(int(text) - delta, 0)
        self.write(key, Item(counter_after(item.value, result), item.flags))
        if self.loose_counters and (len(b"%d" % result) < len(item.value) or result >= 1 << 63):
            self.unsure.add(key)
        return b"%d\r\n" % result

    def op_counter_set(self) -> Planned:
        key, flags = self.rng.choice(self.counters), self.flags()
        value = b"%d" % self.number()
        self.write(key, Item(value, flags))
        if self.loose_counters and int(value) >= 1 << 63:
            self.unsure.add(key)
        req = b"set %s %d 0 %d\r\n%s\r\n" % (key, flags, len(value), value)
        return Planned("set", req, "line", exact(b"STORED\r\n"))

    def op_incr_decr(self) -> Planned:
        # Mostly counters; now and then an ordinary key, whose letters are not a number.
        key = self.rng.choice((self.rng.random() < 0.9 and self.sure_counters()) or self.keys)
        incr, delta = self.rng.random() < 0.6, self.delta()
        reply = self._arith(key, incr, delta)
        req = b"%s %s %d\r\n" % (b"incr" if incr else b"decr", key, delta)
        return Planned("incr" if incr else "decr", req, "line", exact(reply))

    def op_ma(self) -> Planned:
        key = self.rng.choice((self.rng.random() < 0.9 and self.sure_counters()) or self.keys)
        incr, delta = self.rng.random() < 0.6, self.rng.choice((1, self.delta()))
        line = self._arith(key, incr, delta)
        flags = b"" if incr else b" MD"
        flags += b"" if delta == 1 else b" D%d" % delta
        if self.rng.random() < 0.5:
            reply = line if not line[:1].isdigit() else b"VA %d\r\n%s" % (len(line) - 2, line)
            reply = b"NF\r\n" if line == b"NOT_FOUND\r\n" else reply
            return Planned("ma", b"ma %s%s v\r\n" % (key, flags), "meta", exact(reply))
        reply = b"HD\r\n" if line[:1].isdigit() else b"NF\r\n" if line == b"NOT_FOUND\r\n" else line
        return Planned("ma", b"ma %s%s\r\n" % (key, flags), "meta", exact(reply))

    def op_mg(self) -> Planned:
        key = self.rng.choice(self.keys + self.sure_counters())
        item = self.items.get(key)
        form = self.rng.randrange(5)
        if form == 4:  # quiet: a miss says nothing, so mn comes back alone
            want = b"MN\r\n"
            if item is not None:
                want = b"VA %d f%d\r\n%s\r\n" % (len(item.value), item.flags, item.value) + want
            return Planned("mg", b"mg %s q v f\r\nmn\r\n" % key, "mn", exact(want))
        if form == 3:  # with the CAS value
            version = self.version[key]

            def check(got: bytes) -> str | None:
                if item is None:
                    return None if got == b"EN\r\n" else "expected EN"
                head, _, data = got.partition(b"\r\n")
                parts = head.split(b" ")
                if len(parts) != 4 or parts[:2] != [b"VA", b"%d" % len(item.value)]:
                    return f"bad mg line {head[:100]!r}"
                if parts[3] != b"f%d" % item.flags or data != item.value + b"\r\n":
                    return f"expected value {item.value[:100]!r} flags {item.flags}"
                if not parts[2].startswith(b"c") or not parts[2][1:].isdigit():
                    return "no c flag"
                return self.observe_cas(key, version, int(parts[2][1:]))

            return Planned("mg", b"mg %s c v f\r\n" % key, "meta", check)
        if item is None:
            return Planned("mg", b"mg %s v\r\n" % key, "meta", exact(b"EN\r\n"))
        if form == 0:
            return Planned("mg", b"mg %s\r\n" % key, "meta", exact(b"HD\r\n"))
        if form == 1:
            want = b"VA %d s%d f%d\r\n%s\r\n" % (len(item.value), len(item.value), item.flags, item.value)
            return Planned("mg", b"mg %s s f v\r\n" % key, "meta", exact(want))
        want = b"VA %d k%s\r\n%s\r\n" % (len(item.value), key, item.value)
        return Planned("mg", b"mg %s v k\r\n" % key, "meta", exact(want))

    def op_ms(self) -> Planned:
        key, value, flags = self.rng.choice(self.keys), self.value(), self.flags()
        item = self.items.get(key)
        form = self.rng.randrange(5)
        head = b"ms %s %d" % (key, len(value))
        if form == 0:  # set, sometimes quietly (then only mn answers)
            self.write(key, Item(value, flags))
            if self.rng.random() < 0.3:
                req = head + b" F%d q\r\n%s\r\nmn\r\n" % (flags, value)
                return Planned("ms", req, "mn", exact(b"MN\r\n"))
            return Planned("ms", head + b" F%d\r\n%s\r\n" % (flags, value), "meta", exact(b"HD\r\n"))
        if form == 1:  # add (ME) or replace (MR)
            mode = self.rng.choice((b"E", b"R"))
            stored = (item is not None) == (mode == b"R")
            if stored:
                self.write(key, Item(value, flags))
            req = head + b" F%d M%s\r\n%s\r\n" % (flags, mode, value)
            return Planned("ms", req, "meta", exact(b"HD\r\n" if stored else b"NS\r\n"))
        if form == 2:  # append (MA) or prepend (MP): the flags stay
            if item is not None and len(item.value) + len(value) > MAX_VALUE:
                return self.op_set()
            mode = self.rng.choice((b"A", b"P"))
            self.concat(key, item, value, mode == b"A")
            req = head + b" M%s\r\n%s\r\n" % (mode, value)
            return Planned("ms", req, "meta", exact(b"HD\r\n" if item is not None else b"NS\r\n"))
        # compare and swap
        swap = self.compare_and_swap(key, value, flags, (b"NF\r\n", b"HD\r\n", b"EX\r\n"))
        if swap is None:
            return self.op_mg()
        use, reply = swap
        req = head + b" C%d F%d\r\n%s\r\n" % (use, flags, value)
        return Planned("ms", req, "meta", exact(reply))

    def op_md(self) -> Planned:
        key = self.rng.choice(self.keys + self.sure_counters())
        present = key in self.items
        known, stale = self.known_cas(key), self.stale_cas(key)
        if present and stale is not None and self.rng.random() < 0.3:
            return Planned("md", b"md %s C%d\r\n" % (key, stale), "meta", exact(b"EX\r\n"))
        self.write(key, None)
        if present and known is not None and self.rng.random() < 0.3:
            return Planned("md", b"md %s C%d\r\n" % (key, known), "meta", exact(b"HD\r\n"))
        if present and self.rng.random() < 0.3:
            return Planned("md", b"md %s q\r\nmn\r\n" % key, "mn", exact(b"MN\r\n"))
        return Planned("md", b"md %s\r\n" % key, "meta", exact(b"HD\r\n" if present else b"NF\r\n"))


OP_WEIGHTS: list[tuple[Callable[[Owned], Planned], int]] = [
    (Owned.op_get, 14),
    (Owned.op_multiget, 8),
    (Owned.op_gets, 5),
    (Owned.op_gat, 3),
    (Owned.op_set, 12),
    (Owned.op_counter_set, 3),
    (Owned.op_add_replace, 5),
    (Owned.op_append_prepend, 5),
    (Owned.op_cas, 5),
    (Owned.op_delete, 5),
    (Owned.op_touch, 3),
    (Owned.op_incr_decr, 7),
    (Owned.op_ma, 5),
    (Owned.op_mg, 8),
    (Owned.op_ms, 7),
    (Owned.op_md, 3),
]
OPS = [op for op, _ in OP_WEIGHTS]
WEIGHTS = [w for _, w in OP_WEIGHTS]
