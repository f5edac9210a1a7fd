"""One client's memcached text-protocol session: bytes in, bytes out, a store behind it (sans-IO).

The session knows nothing of sockets or event loops (the h11 idea): the server hands it whatever it
read with :meth:`Session.feed` and sends back what it returns, and closes the connection once
:attr:`Session.closing` is set. Everything is decided on the bytes alone, so a request split at any
byte boundary, or many requests pipelined into one read, produce exactly the same replies.

Framing, as memcached 1.6 does it (``proto_text.c``, ``try_read_command_ascii``):

* A command line ends at ``\\n``; one ``\\r`` before it is dropped. The line stops at its first NUL
  byte (memcached works on C strings) and is split on spaces only; a tab is part of a token.
* A line longer than :data:`MAX_LINE` bytes closes the connection without a reply, unless it is a
  ``get``/``gets`` (multi-gets may be long); those are bounded by :data:`MAX_GET_LINE` here.
* A storage command is followed by a data block of exactly ``<bytes>`` + 2 bytes. If its last two
  bytes are not ``\\r\\n`` the reply is ``CLIENT_ERROR bad data chunk`` and parsing resumes right
  after those bytes, as memcached does (the rest usually reads as a bad command: ``ERROR``).
* A block too large for the store (``-I``) is swallowed as it streams in, never buffered, and
  answered ``SERVER_ERROR object too large for cache``.

APPSEC: a reply is bounded too. ``get k k k ...`` is a few bytes per key and may ask for ``-I``
bytes per key, so one feed answers at most about :data:`REPLY_BUDGET` bytes of values: a multi-get
that passes it stops after the key that did, the keys left (re-spelt as a shorter command of the
same kind) and the input after them stay buffered, and :attr:`Session.more` asks the caller to
feed again (``feed(b"")``) once the reply has gone out. A feed's reply is therefore at most
``REPLY_BUDGET`` + one item + small replies, however large the multi-get; the bytes and their
order are the same as if it had been answered at once.

APPSEC: the input buffer is bounded. Between feeds it holds at most one incomplete command line
(<= :data:`MAX_GET_LINE` bytes) or one incomplete data block (<= the store's ``max_item_size`` + 2
bytes plus its command line); anything longer is either swallowed or closes the connection.

``noreply`` is honoured where memcached honours it, and, as in memcached, it also silences the
errors of a command whose line was well-formed enough to be recognised.

Meta commands (``mg``, ``ms``, ``md``, ``ma``, ``mn``, ``me``) live in :mod:`pycache_d.protocol.meta`.

The first byte of a connection chooses its protocol, as memcached decides: 0x80 makes it a
binary one, whose every byte goes to a :class:`~pycache_d.protocol.binary.BinarySession`. With an
auth file (``ctx.auth``), a text client first passes memcached's ASCII auth
(:class:`~pycache_d.protocol.auth.TextAuth`); until then nothing reaches the commands above.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn

from ..store.errors import InvalidKey, ItemTooLarge, OutOfMemory, Result, StoreError
from ..store.semantics import ITEM_OVERHEAD, MAX_KEY_LENGTH
from . import admin, auth, binary, meta, stats, watch, wire
from .context import ServerContext
from .wire import parse_i32, parse_u32, parse_u64

#: memcached closes a connection whose buffered input holds no ``\n`` within 2048 bytes.
MAX_LINE = 2048
#: Our bound on a ``get``/``gets`` line (memcached grows its buffer without limit for them).
MAX_GET_LINE = 1024 * 1024
#: ``<bytes>`` above this is a bad command line (memcached: ``vlen > INT_MAX - 2``).
_MAX_VLEN = 2**31 - 1 - 2
#: A feed stops answering multi-gets once its reply holds this many bytes of values (see above).
REPLY_BUDGET = 256 * 1024
#: Replies of fewer value bytes than this are not counted against the budget (PERF: nothing
#: to count on the usual get); a feed is at most 32 lines, so they stay small together.
_BIG_REPLY = 16 * 1024


class _Yield(Exception):
    """Raised by a command that started a dump: the feed ends with its first slice (args[0])."""


class _BudgetSpent(Exception):
    """Raised by a retrieval command that spent the feed's REPLY_BUDGET: the feed stops there.

    PERF: an exception (free in CPython 3.11 until raised), so a feed checks nothing per command.
    """


#: Only these prefixes may exceed MAX_LINE, after at most 100 leading spaces (memcached's rule).
_LONG_OK = (b"get ", b"gets ")

_NOT_FOUND = Result.NOT_FOUND.wire
_END = wire.END
#: PERF: Result.wire, without the property call.
_RESULT_WIRE = {result: result.wire for result in Result}

# Storage modes of a pending data block.
_SET, _ADD, _REPLACE, _APPEND, _PREPEND, _CAS = range(6)
_STORAGE = {
    b"set": _SET,
    b"add": _ADD,
    b"replace": _REPLACE,
    b"append": _APPEND,
    b"prepend": _PREPEND,
    b"cas": _CAS,
}


class Session:
    """A memcached text-protocol session over ``store`` (any :data:`~pycache_d.store.BACKENDS` class).

    Args:
        store: the item store; only its public API is used.
        ctx: the server this session runs in; sessions of one server share one context.
    """

    def __init__(self, store: Any, ctx: ServerContext | None = None) -> None:
        self.store = store
        self.ctx = ctx if ctx is not None else ServerContext(store)
        #: True once the connection must be closed after the bytes last returned are sent.
        self.closing = False
        #: True when it closes because the client said ``quit`` (not for a protocol error).
        self.quit = False
        #: Commands completed so far (a line, with its data block if it has one): --idle-timeout
        #: measures idleness from the last one, as memcached does, not from the last byte, which
        #: a client can trickle.
        self.commands = 0
        self._buf = bytearray()  # unprocessed input: an incomplete line or data block
        self._need = 0  # length of the pending data block (<bytes> + 2), when _pending is set
        self._pending: tuple[Any, ...] | None = None  # the storage command awaiting its data block
        self._swallow = 0  # bytes of a rejected data block still to discard
        #: True when input is buffered that can be answered without more from the client: a
        #: feed stopped at REPLY_BUDGET. Send the reply, then call ``feed(b"")``.
        self.more = False
        self._spent = 0  # value bytes answered in this feed
        self._rest: bytes | None = None  # the unanswered keys of a multi-get cut at the budget
        # PERF: the python store answers a get's keys in one call (native: one call per key).
        self._get_values: Callable[..., tuple[int, int]] | None = getattr(store, "get_values", None)
        #: True while every byte goes through _gated_feed(): until the first byte has chosen
        #: text or binary, while a text client has not authenticated, and for good once binary.
        #: The compiled session takes no shortcut while it is set.
        self.gated = True
        self._binary: binary.BinarySession | None = None
        self._auth: auth.TextAuth | None = None
        #: A key dump in progress (stats cachedump, lru_crawler metadump): answered a slice per
        #: feed, with ``more`` set until it is done (see dump.py).
        self._dump: Any = None
        #: Set by ``watch``: from then on the session reads nothing and answers the event lines.
        self.watcher: watch.Watcher | None = None
        #: The client's socket, for watch lines (cfd=); -1 when unknown.
        self.cfd = -1

    # -- framing ------------------------------------------------------------------------------

    @property
    def idle(self) -> bool:
        """True when no partial command or data block is held between feeds."""
        if self._binary is not None:
            return self._binary.idle
        if self._auth is not None and not self._auth.idle:
            return False
        return (
            not self._buf
            and self._pending is None
            and not self._swallow
            and self._dump is None
            and self.watcher is None
        )

    def close(self) -> None:
        """The connection is gone: end what the session ran for it (a dump, a watch)."""
        if self._dump is not None:
            self._dump.close()
            self._dump = None
        if self.watcher is not None:
            self.watcher.close()
        self.more = False

    def start_dump(self, dump: Any) -> bytes:
        """Run a key dump: its first slice now, the rest in later feeds (see dump.py)."""
        chunk, done = dump.slice()
        if not done:
            self._dump = dump
            self.more = True
            raise _Yield(chunk)
        return chunk

    @property
    def authenticated(self) -> bool:
        """False while the server wants credentials this client has not given."""
        if self._binary is not None:
            return self._binary.authenticated
        return self.ctx.auth is None or (self._auth is None and not self.gated)

    @property
    def binary_ready(self) -> bool:
        """True when this is an authenticated binary connection with nothing held: the
        compiled session may then answer the hot binary requests itself."""
        b = self._binary
        return b is not None and b.authenticated and b.idle

    @property
    def loggable(self) -> bool:
        """True when the client's bytes may be logged (-vv): never what may carry a password,
        that is before authentication, and a binary client's when SASL is on (it may
        authenticate again at any time)."""
        return self.ctx.auth is None or (self._binary is None and self.authenticated)

    def feed(self, data: bytes) -> bytes:
        """Consume bytes read from the client; return the reply bytes to send (possibly b"")."""
        if self.closing:
            return b""
        if self.gated:
            return self._gated_feed(data)
        if self.watcher is not None:
            # memcached reads nothing more from a watching client; the lines are the reply.
            return self.watcher.take()
        if self._dump is not None:
            return self._dump_feed(data)
        if type(data) is not bytes:
            data = bytes(data)  # a bytearray or memoryview from the transport
        if self._buf:
            # APPSEC: an incomplete line or block grows by appending, and is only looked at again
            # once it may be complete, so a client dribbling bytes costs linear time, not quadratic.
            self._buf += data
            if self.more:
                self.more = False  # complete input is waiting: answer it
            elif self._pending is not None:
                if len(self._buf) < self._need:
                    return b""
            elif b"\n" not in data:
                if len(self._buf) > MAX_LINE and self._too_long(self._buf, 0, len(self._buf)):
                    self.closing = True
                    self._buf = bytearray()
                return b""
            buf = bytes(self._buf)
            self._buf = bytearray()
        else:
            buf = data
        self._spent = 0
        out: list[bytes] = []
        pos = 0
        end = len(buf)
        done = 0  # PERF: a local, added to self.commands once per feed
        try:
            while pos < end and not self.closing:
                if self._swallow:
                    taken = min(self._swallow, end - pos)
                    self._swallow -= taken
                    pos += taken
                    continue
                if self._pending is not None:
                    need = self._need
                    if end - pos < need:
                        break
                    self._complete(buf, pos, out)
                    pos += need
                    done += 1
                    continue
                eol = buf.find(b"\n", pos)
                if eol < 0:
                    if end - pos > MAX_LINE and self._too_long(buf, pos, end):
                        self.closing = True
                    break
                if eol - pos > MAX_LINE and self._too_long(buf, pos, eol):
                    # NOTE: memcached only notices when the line arrives in pieces; we decide on the
                    # line alone so the outcome never depends on how the bytes were split.
                    self.closing = True
                    break
                line = buf[pos:eol] if eol - pos < 2 or buf[eol - 1] != 13 else buf[pos : eol - 1]
                pos = eol + 1
                self._command(line, out)
                if self._pending is None:  # else it completes with its data block
                    done += 1
        except _Yield as stop:
            # A dump started: its first slice is this feed's last reply; what follows waits.
            out.append(stop.args[0])
            done += 1
            self.more = self._dump is not None and not self.closing
        except _BudgetSpent:
            # The budget is spent: keep the rest, the multi-get's unanswered keys first.
            if self._rest is not None:
                buf = self._rest + buf[pos:]
                self._rest = None
                pos = 0
            end = len(buf)
            self.more = pos < end and not self.closing
        self.commands += done
        if pos < end and not self.closing:
            self._buf = bytearray(memoryview(buf)[pos:])
        if self.ctx.observed:
            self.observe_feed()
        return b"".join(out)

    def _dump_feed(self, data: bytes) -> bytes:
        """feed() while a dump runs: its next slice; input waits behind it (the connection
        reads little meanwhile: it feeds b"" while ``more`` is set)."""
        if data:
            self._buf += data
        chunk, done = self._dump.slice()
        if not done:
            self.more = True
            return chunk
        self._dump = None
        self.more = False
        if not self._buf:
            return chunk
        rest = bytes(self._buf)
        self._buf = bytearray()
        return chunk + self.feed(rest)

    def _gated_feed(self, data: bytes) -> bytes:
        """feed() while gated: choose the protocol on the first byte, as memcached does, then
        speak binary, or hold a text client at memcached's ASCII auth until it has passed."""
        b = self._binary
        if b is not None:
            reply = b.feed(data)
            self.closing = b.closing
            self.quit = b.quit
            self.more = b.more
            if self.ctx.observed:
                self.observe_feed()
            return reply
        gate = self._auth
        if gate is None:
            if not data:
                return b""
            if data[0] == binary.REQUEST_MAGIC:
                self._binary = binary.BinarySession(self.store, self.ctx, REPLY_BUDGET)
                self._binary.cfd = self.cfd
                return self._gated_feed(data)
            if self.ctx.auth is None:
                self.gated = False
                return self.feed(data)
            gate = self._auth = auth.TextAuth()
        if type(data) is not bytes:
            data = bytes(data)
        out: list[bytes] = []
        rest, closing = gate.feed(data, self.ctx, out)
        if closing:
            self.closing = True
        elif rest is not None:
            self._auth = None
            self.gated = False
            if rest:
                out.append(self.feed(rest))
        return b"".join(out)

    def push(self, data: bytes) -> None:
        """Buffer complete input to answer on the next ``feed`` (an idle session only).

        The compiled session hands over the rest of a multi-get it cut at the budget this way.
        """
        assert self.idle
        self._buf = bytearray(data)
        self.more = True

    def _stop(self, head: list[bytes], rest: list[bytes], out: list[bytes]) -> NoReturn:
        """The feed's budget is spent: leave the keys of ``rest`` to the next feed, as the
        command ``head`` + rest, or end this reply if none is left; stop the feed."""
        if rest:
            self._rest = b" ".join(head + rest) + b"\n"
        else:
            out.append(wire.END)
        raise _BudgetSpent

    @staticmethod
    def _too_long(buf: bytes | bytearray, pos: int, end: int) -> bool:
        """Return True if the over-long line at ``pos`` must close the connection."""
        head = buf[pos : min(end, pos + 110)]  # PERF: never copy the whole (possibly huge) line
        body = head.lstrip(b" ")
        if len(head) - len(body) > 100 or not body.startswith(_LONG_OK):
            return True
        return end - pos > MAX_GET_LINE

    def _command(self, line: bytes, out: list[bytes]) -> None:
        """Tokenise one command line and run it."""
        nul = line.find(b"\0")
        if nul >= 0:
            line = line[:nul]
        toks = line.split(b" ")
        if b"" in toks:
            toks = [t for t in toks if t]
        if not toks or len(toks[0]) < 2:
            out.append(wire.ERROR)
            return
        handler = _DISPATCH.get(toks[0])
        if handler is None:
            # memcached drops HTTP requests silently, but only those whose command word matched
            # none of its command families (first letters m?, g, s, a, c, i, d, t).
            first = toks[0][0]
            if (
                toks[-1].startswith(b"HTTP/")
                and first not in b"gsacidt"
                and not (first == 0x6D and len(toks[0]) == 2)
            ):
                self.closing = True
                return
            out.append(wire.ERROR)
            return
        handler(self, toks, out)

    # -- retrieval ----------------------------------------------------------------------------

    def _gets(self, toks: list[bytes], out: list[bytes]) -> None:
        self._get(toks, out, True)

    def _get(self, toks: list[bytes], out: list[bytes], with_cas: bool = False) -> None:
        """Answer get, or gets (``with_cas``): the hot path, over a store with ``get_values``."""
        get_values = self._get_values
        if get_values is None or len(toks) < 2 or self.ctx.observed:
            self._retrieve(toks, 1, out, with_cas, None)  # it reports each key (watch, detail)
            return
        keys = toks[1:]
        mark = len(out)
        try:
            looked_up, spent = get_values(keys, REPLY_BUDGET, out, with_cas)
        except InvalidKey:
            # Tokens are never empty, so the store refused a key longer than MAX_KEY_LENGTH,
            # after fetching the keys before it; memcached, too, stops there and drops the
            # values it had gathered.
            del out[mark:]
            out.append(wire.BAD_FORMAT)
            return
        if spent >= _BIG_REPLY and self._spend(spent, toks[:1], keys[looked_up:], out, mark):
            return
        out.append(_END)

    def _spend(self, spent: int, head: list[bytes], rest: list[bytes], out: list[bytes], mark: int) -> bool:
        """Count a large multi-get reply against the budget; stop the feed once it is spent.

        ``rest`` holds the keys get_values did not look up (it stopped at the budget): they are
        left to the next feed, unless one of them is too long, which drops this whole reply,
        ``out[mark:]`` (then it returns True: the reply is complete).

        Raises:
            _BudgetSpent: the feed's budget is spent.
        """
        if rest and max(map(len, rest)) > MAX_KEY_LENGTH:
            del out[mark:]  # not sent yet
            try:
                self._get_values(rest, None, [])  # type: ignore[misc]
            except InvalidKey:
                pass
            out.append(wire.BAD_FORMAT)
            return True
        self._spent += spent
        if rest or self._spent >= REPLY_BUDGET:
            self._stop(head, rest, out)
        return False

    def _gat(self, toks: list[bytes], out: list[bytes]) -> None:
        self._touch_retrieve(toks, out, False)

    def _gats(self, toks: list[bytes], out: list[bytes]) -> None:
        self._touch_retrieve(toks, out, True)

    def _touch_retrieve(self, toks: list[bytes], out: list[bytes], with_cas: bool) -> None:
        if len(toks) < 2:
            out.append(wire.ERROR)
            return
        exptime = parse_i32(toks[1])
        if exptime is None:
            out.append(wire.BAD_EXPTIME)
            return
        self._retrieve(toks, 2, out, with_cas, exptime)

    def _retrieve(
        self, toks: list[bytes], first: int, out: list[bytes], with_cas: bool, exptime: int | None
    ) -> None:
        """Answer get/gets (``exptime`` None) or gat/gats for the keys from ``toks[first]`` on."""
        if len(toks) < 2:
            out.append(wire.ERROR)
            return
        store = self.store
        observed = self.ctx.observed
        # memcached stops at a key that is too long and drops what it had gathered for this
        # command; so nothing is answered before every key is known to be good.
        bad = max(map(len, toks[first:]), default=0) > MAX_KEY_LENGTH
        for i in range(first, len(toks)):
            key = toks[i]
            if len(key) > MAX_KEY_LENGTH:
                out.append(wire.BAD_FORMAT)
                return
            item = store.get_item(key) if exptime is None else store.gat(key, exptime)
            if observed:
                self._observe_get(key, item)
            if item is not None:
                if bad:
                    continue
                value, flags, cas = item
                if with_cas:
                    out.append(b"VALUE %s %d %d %d\r\n" % (key, flags, len(value), cas))
                else:
                    out.append(b"VALUE %s %d %d\r\n" % (key, flags, len(value)))
                out += (value, b"\r\n")
                self._spent += len(value)
                if self._spent >= REPLY_BUDGET:
                    self._stop(toks[:first], toks[i + 1 :], out)
        out.append(wire.END)

    def _observe_store(self, key: bytes, mode: int, result: Any, exptime: int, flags: int, size: int) -> None:
        """Report a store command to the watchers (``stats detail`` counted it before)."""
        ctx = self.ctx
        if ctx.watchers:
            watch.item_store(ctx, self.store, key, mode, result, exptime, flags, size, self.cfd)

    def observe_lookup(self, key: bytes) -> None:
        """Report the item lookup inside a store, touch, delta or delete to the watchers of
        fetchers, as memcached logs it (call it before the command changes the item)."""
        if self.ctx.watchers:
            watch.lookup(self.ctx, self.store, key, self.cfd)

    def observe_feed(self) -> None:
        """After a feed while observed: report what the store evicted meanwhile."""
        if self.ctx.watchers:
            watch.evictions(self.ctx, self.store)

    def _observe_get(self, key: bytes, item: tuple[bytes, int, int] | None) -> None:
        """Report a fetch to ``stats detail`` and the watchers."""
        ctx = self.ctx
        if ctx.detail is not None:
            ctx.detail.get(key, item is not None)
        if ctx.watchers:
            watch.item_get(ctx, key, item, self.cfd)

    # -- storage ------------------------------------------------------------------------------

    def _storage(self, toks: list[bytes], out: list[bytes]) -> None:
        """Check a storage command line and wait for its data block (or swallow it)."""
        mode = _STORAGE[toks[0]]
        has_cas = mode == _CAS
        if not 5 + has_cas <= len(toks) <= 6 + has_cas:
            out.append(wire.ERROR)
            return
        noreply = toks[-1] == b"noreply"
        key = toks[1]
        if len(key) > MAX_KEY_LENGTH:
            if not noreply:
                out.append(wire.BAD_FORMAT)
            return
        flags = parse_u32(toks[2])
        exptime = parse_i32(toks[3])
        vlen = parse_i32(toks[4])
        cas_unique = parse_u64(toks[5]) if has_cas else 0
        if (
            flags is None
            or exptime is None
            or vlen is None
            or cas_unique is None
            or not 0 <= vlen <= _MAX_VLEN
        ):
            if not noreply:
                out.append(wire.BAD_FORMAT)
            return
        if self.ctx.detail is not None:
            self.ctx.detail.set(key)  # memcached counts it here, before the value arrives
        if len(key) + vlen + ITEM_OVERHEAD > self.store.max_item_size:
            self.ctx.counters["store_too_large"] += 1
            if mode == _SET:
                self._drop(key)
            self._swallow = vlen + 2
            if not noreply:
                out.append(ItemTooLarge.wire)
            return
        self._need = vlen + 2
        self._pending = (mode, key, flags, exptime, cas_unique, noreply)

    def _drop(self, key: bytes) -> None:
        """Make the store forget ``key`` after a too-large set, as memcached does."""
        wire.forget(self.store, key)

    def _complete(self, buf: bytes, start: int, out: list[bytes]) -> None:
        """Finish the pending storage command with its data block (value + b"\\r\\n") at ``start``."""
        pending = self._pending
        assert pending is not None
        self._pending = None
        stop = start + self._need
        if pending[0] == meta.PENDING_MS:
            meta.complete_ms(self, pending, buf[start:stop], out)
            return
        mode, key, flags, exptime, cas_unique, noreply = pending
        if not buf.startswith(b"\r\n", stop - 2):
            reply = wire.BAD_DATA_CHUNK
        else:
            value = buf[start : stop - 2]
            store = self.store
            observed = self.ctx.observed
            if observed:
                self.observe_lookup(key)
            try:
                if mode == _SET:
                    result = store.set(key, value, flags, exptime)
                elif mode == _ADD:
                    result = store.add(key, value, flags, exptime)
                elif mode == _REPLACE:
                    result = store.replace(key, value, flags, exptime)
                elif mode == _APPEND:
                    result = store.append(key, value)
                elif mode == _PREPEND:
                    result = store.prepend(key, value)
                else:
                    result = store.cas(key, value, flags, exptime, cas_unique)
                reply = _RESULT_WIRE[result]
            except StoreError as exc:
                self.count_error(exc)
                result = exc
                reply = exc.wire
            if observed:
                self._observe_store(key, mode, result, exptime, flags, len(value))
        if not noreply:
            out.append(reply)

    def count_error(self, exc: StoreError) -> None:
        """Count a rejected store in the server-wide counters memcached keeps for them."""
        if isinstance(exc, OutOfMemory):
            self.ctx.counters["store_no_memory"] += 1
        elif isinstance(exc, ItemTooLarge):
            self.ctx.counters["store_too_large"] += 1

    # -- other item commands ------------------------------------------------------------------

    def _delete(self, toks: list[bytes], out: list[bytes]) -> None:
        n = len(toks)
        if not 2 <= n <= 4:
            out.append(wire.ERROR)
            return
        noreply = n > 2 and toks[-1] == b"noreply"  # "delete noreply": a key named noreply
        if n > 2:
            # The legacy "delete <key> 0" (a hold time of zero) is still accepted, nothing else.
            zero = toks[2] == b"0"
            if not ((n == 3 and (zero or noreply)) or (n == 4 and zero and noreply)):
                if not noreply:
                    out.append(wire.DELETE_USAGE)
                return
        key = toks[1]
        if len(key) > MAX_KEY_LENGTH:
            reply = wire.BAD_FORMAT
        else:
            if self.ctx.observed:
                if self.ctx.detail is not None:
                    self.ctx.detail.delete(key)
                self.observe_lookup(key)
            reply = self.store.delete(key).wire
        if not noreply:
            out.append(reply)

    def _arith(self, toks: list[bytes], out: list[bytes]) -> None:
        if len(toks) not in (3, 4):
            out.append(wire.ERROR)
            return
        noreply = toks[-1] == b"noreply"
        key = toks[1]
        delta = parse_u64(toks[2])
        if len(key) > MAX_KEY_LENGTH:
            reply = wire.BAD_FORMAT
        elif delta is None:
            reply = wire.BAD_DELTA
        else:
            if self.ctx.observed:
                self.observe_lookup(key)
            try:
                number = self.store.incr(key, delta) if toks[0] == b"incr" else self.store.decr(key, delta)
                reply = _NOT_FOUND if number is None else b"%d\r\n" % number
            except (ItemTooLarge, OutOfMemory):
                # memcached: any failure to allocate the longer number is "out of memory".
                reply = OutOfMemory.wire
            except StoreError as exc:
                reply = exc.wire
        if not noreply:
            out.append(reply)

    def _touch(self, toks: list[bytes], out: list[bytes]) -> None:
        if len(toks) not in (3, 4):
            out.append(wire.ERROR)
            return
        noreply = toks[-1] == b"noreply"
        key = toks[1]
        exptime = parse_i32(toks[2])
        if len(key) > MAX_KEY_LENGTH:
            reply = wire.BAD_FORMAT
        elif exptime is None:
            reply = wire.BAD_EXPTIME
        else:
            if self.ctx.observed:
                self.observe_lookup(key)
            reply = self.store.touch(key, exptime).wire
        if not noreply:
            out.append(reply)

    # -- server commands ----------------------------------------------------------------------

    def _flush_all(self, toks: list[bytes], out: list[bytes]) -> None:
        n = len(toks)
        if n > 3:
            out.append(wire.ERROR)
            return
        noreply = toks[-1] == b"noreply"
        delay = 0
        if n != (2 if noreply else 1):
            parsed = parse_i32(toks[1])
            if parsed is None:
                if not noreply:
                    out.append(wire.BAD_EXPTIME)
                return
            delay = parsed
        self.store.flush_all(delay)
        if not noreply:
            out.append(wire.OK)

    def _version(self, toks: list[bytes], out: list[bytes]) -> None:
        out.append(b"VERSION %s\r\n" % self.ctx.version.encode())

    def _verbosity(self, toks: list[bytes], out: list[bytes]) -> None:
        n = len(toks)
        if n not in (2, 3):
            out.append(wire.ERROR)
            return
        noreply = toks[-1] == b"noreply"
        level = parse_u32(toks[1])
        if level is None:
            reply = wire.BAD_FORMAT
        else:
            self.ctx.verbosity = min(level, 2)
            reply = wire.OK
        if not noreply:
            out.append(reply)

    def _quit(self, toks: list[bytes], out: list[bytes]) -> None:
        self.closing = True
        self.quit = True

    def _cache_memlimit(self, toks: list[bytes], out: list[bytes]) -> None:
        """Set the memory limit, in megabytes (protocol.txt, "cache_memlimit")."""
        if len(toks) not in (2, 3):
            out.append(wire.ERROR)
            return
        noreply = toks[-1] == b"noreply"
        megabytes = parse_u32(toks[1])
        if megabytes is None:
            reply = wire.ERROR
        elif megabytes < 8:
            reply = wire.MEMLIMIT_TOO_SMALL
        elif megabytes > 1_000_000_000:
            reply = wire.MEMLIMIT_NOT_BYTES
        else:
            self.store.max_bytes = megabytes * 1024 * 1024
            reply = wire.OK
        if not noreply:
            out.append(reply)

    def _shutdown(self, toks: list[bytes], out: list[bytes]) -> None:
        out.append(admin.shutdown(self, toks))

    def _stats(self, toks: list[bytes], out: list[bytes]) -> None:
        out.append(stats.reply(self.store, self.ctx, toks, self))

    def _lru_crawler(self, toks: list[bytes], out: list[bytes]) -> None:
        out.append(admin.lru_crawler(self, toks))

    def _lru(self, toks: list[bytes], out: list[bytes]) -> None:
        if len(toks) < 2:
            out.append(wire.ERROR)
            return
        reply = admin.lru(self, toks)
        if reply is not None:
            out.append(reply)

    def _slabs(self, toks: list[bytes], out: list[bytes]) -> None:
        reply = admin.slabs(self, toks)
        if reply is not None:
            out.append(reply)

    def _watch(self, toks: list[bytes], out: list[bytes]) -> None:
        reply, watcher = watch.command(self, toks)
        if watcher is not None:
            self.watcher = watcher
            raise _Yield(reply)  # nothing after it is read, as in memcached
        out.append(reply)

    def _meta(self, toks: list[bytes], out: list[bytes]) -> None:
        meta.dispatch(self, toks, out)


#: Command word -> handler. PERF: one dict lookup per command; a Cython port keeps the shape.
_DISPATCH: dict[bytes, Callable[[Session, list[bytes], list[bytes]], None]] = {
    b"get": Session._get,
    b"gets": Session._gets,
    b"gat": Session._gat,
    b"gats": Session._gats,
    b"set": Session._storage,
    b"add": Session._storage,
    b"replace": Session._storage,
    b"append": Session._storage,
    b"prepend": Session._storage,
    b"cas": Session._storage,
    b"delete": Session._delete,
    b"incr": Session._arith,
    b"decr": Session._arith,
    b"touch": Session._touch,
    b"flush_all": Session._flush_all,
    b"version": Session._version,
    b"verbosity": Session._verbosity,
    b"quit": Session._quit,
    b"cache_memlimit": Session._cache_memlimit,
    b"shutdown": Session._shutdown,
    b"stats": Session._stats,
    b"lru_crawler": Session._lru_crawler,
    b"lru": Session._lru,
    b"slabs": Session._slabs,
    b"watch": Session._watch,
    b"mg": Session._meta,
    b"ms": Session._meta,
    b"md": Session._meta,
    b"ma": Session._meta,
    b"mn": Session._meta,
    b"me": Session._meta,
}
