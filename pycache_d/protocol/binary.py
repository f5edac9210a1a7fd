"""One client's memcached binary-protocol session: bytes in, bytes out (sans-IO), the specification.

memcached 1.6 decides per connection: a first byte of 0x80 makes it binary for good
(``try_read_command_negotiate``). :class:`~pycache_d.protocol.session.Session` does the same and
hands every byte of a binary connection to a :class:`BinarySession`; the compiled session answers
the hot opcodes itself and hands the rest here (see ``_csession.pyx``).

A request, as memcached 1.6.18 reads it (``proto_bin.c``)::

    0      1       2-3      4       5         6-7      8-11     12-15    16-23
    +------+-------+--------+-------+---------+--------+--------+--------+--------+
    | 0x80 | opcode| keylen | extlen| datatype| vbucket| bodylen| opaque | cas    |  big endian
    +------+-------+--------+-------+---------+--------+--------+--------+--------+
    body = extras (extlen) | key (keylen) | value (bodylen - extlen - keylen)

* A bad magic byte closes the connection without a reply.
* The header, extras and key are read first (up to 24 + 255 + 65535 bytes); the command is then
  checked and run. Only the commands that carry a value (set, add, replace, append, prepend, the
  SASL ones) read it; for the others, memcached's checks demand that there is none, except
  stat, touch and gat, whose surplus body bytes are read as the next request, as memcached does.
* ``keylen + extlen > bodylen``: ``Unknown command``, then close. A key over 250 bytes, or
  extras, key or body lengths a command does not take: ``Invalid arguments``, then close.
  An unknown opcode: ``Unknown command``, and memcached then discards ``bodylen`` bytes
  *after* the extras and key (it had read them already), so the next request loses its first
  ``extlen + keylen`` bytes; we do the same, byte for byte.
* A value too large for ``-I`` is discarded as it streams in (never buffered): ``Too large.``
  (a ``set`` also drops the old value, as memcached does).
* Quiet opcodes (getq, setq, ...) send nothing for a miss (gets) or a success (the rest); errors
  are always sent. The replies of a pipeline come out in request order; memcached holds quiet
  replies until a non-quiet command or a noop, which changes when bytes leave, not which.
* Every reply echoes the request's opcode and opaque; its CAS is the item's (get hits, stored
  items, counters) or 0.

APPSEC: bounds as in the text session. Between feeds the buffer holds at most one incomplete
header, extras and key (<= 65,814 bytes) or one incomplete value of an item that fits ``-I``;
a feed answers about :data:`~pycache_d.protocol.session.REPLY_BUDGET` bytes at most, then sets
:attr:`BinarySession.more` and keeps the rest, so a long quiet ``getkq`` batch of large hits
streams at the client's pace. Nothing the client sends is buffered before authentication beyond
one request; SASL payloads are bounded like values.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from ..store.errors import ItemTooLarge, NonNumericValue, OutOfMemory, Result, StoreError
from ..store.semantics import (
    EXPTIME_MAX,
    ITEM_OVERHEAD,
    MAX_KEY_LENGTH,
    MODE_ADD,
    MODE_APPEND,
    MODE_CAS,
    MODE_PREPEND,
    MODE_REPLACE,
    MODE_SET,
)
from . import auth, stats, watch, wire
from .context import ServerContext

#: The 24-byte header of a request and of a response (``protocol_binary.h``).
HEADER = struct.Struct(">BBHBBHIIQ")
HEADER_SIZE = HEADER.size
_unpack = HEADER.unpack_from
_pack = HEADER.pack
REQUEST_MAGIC = 0x80
RESPONSE_MAGIC = 0x81

# -- opcodes (protocol_binary.h) -------------------------------------------------------------------
GET, SET, ADD, REPLACE, DELETE, INCREMENT, DECREMENT, QUIT, FLUSH = range(0x09)
GETQ, NOOP, VERSION, GETK, GETKQ, APPEND, PREPEND, STAT = range(0x09, 0x11)
SETQ, ADDQ, REPLACEQ, DELETEQ, INCREMENTQ, DECREMENTQ, QUITQ, FLUSHQ, APPENDQ, PREPENDQ = range(0x11, 0x1B)
VERBOSITY, TOUCH, GAT, GATQ = range(0x1B, 0x1F)
SASL_LIST_MECHS, SASL_AUTH, SASL_STEP, GATK, GATKQ = range(0x20, 0x25)

#: A quiet opcode -> the command it is a quiet form of.
QUIET = {
    GETQ: GET,
    GETKQ: GETK,
    SETQ: SET,
    ADDQ: ADD,
    REPLACEQ: REPLACE,
    DELETEQ: DELETE,
    INCREMENTQ: INCREMENT,
    DECREMENTQ: DECREMENT,
    QUITQ: QUIT,
    FLUSHQ: FLUSH,
    APPENDQ: APPEND,
    PREPENDQ: PREPEND,
    GATQ: GAT,
    GATKQ: GATK,
}

# -- status codes and memcached's error bodies (write_bin_error) ----------------------------------
SUCCESS = 0x00
KEY_ENOENT = 0x01
KEY_EEXISTS = 0x02
E2BIG = 0x03
EINVAL = 0x04
NOT_STORED = 0x05
DELTA_BADVAL = 0x06
AUTH_ERROR = 0x20
AUTH_CONTINUE = 0x21
UNKNOWN_COMMAND = 0x81
ENOMEM = 0x82

#: The body memcached sends with each error status (proto_bin.c, write_bin_error).
ERROR_TEXT = {
    ENOMEM: b"Out of memory",
    UNKNOWN_COMMAND: b"Unknown command",
    KEY_ENOENT: b"Not found",
    EINVAL: b"Invalid arguments",
    KEY_EEXISTS: b"Data exists for key.",
    E2BIG: b"Too large.",
    DELTA_BADVAL: b"Non-numeric server-side value for incr or decr",
    NOT_STORED: b"Not stored.",
    AUTH_ERROR: b"Auth failure.",
}
# The ENOMEM texts of out_of_memory() callers, less their "SERVER_ERROR " prefix.
NO_MEMORY_ITEM = b"Out of memory allocating item"
NO_MEMORY_INCR = b"Out of memory incrementing value"
NO_MEMORY_NEW_ITEM = b"Out of memory allocating new item"
SASL_OK = b"Authenticated"

#: incr/decr with this expiration never create the counter (protocol_binary.h, "incr").
NO_CREATE = 0xFFFFFFFF
#: The longest SASL mechanism name memcached takes (sasl_defs.h).
MAX_SASL_MECH_LEN = 32
#: The stats groups of a binary STAT whose key must match exactly (memcached.c, get_stats).
_STAT_GROUPS = frozenset((b"items", b"slabs", b"sizes", b"sizes_enable", b"sizes_disable"))
#: Commands an unauthenticated client may send (proto_bin.c, authenticated()).
_BEFORE_AUTH = frozenset((SASL_LIST_MECHS, SASL_AUTH, SASL_STEP, VERSION))

_I32 = struct.Struct(">I")
_FLAGS_EXPTIME = struct.Struct(">II")
_INCR = struct.Struct(">QQI")
_U64 = struct.Struct(">Q")


def response(
    opcode: int,
    status: int,
    opaque: int,
    cas: int = 0,
    extras: bytes = b"",
    key: bytes = b"",
    value: bytes = b"",
) -> bytes:
    """Return one response packet."""
    body = len(extras) + len(key) + len(value)
    return (
        _pack(RESPONSE_MAGIC, opcode, len(key), len(extras), 0, status, body, opaque, cas)
        + extras
        + key
        + value
    )


def request(
    opcode: int, key: bytes = b"", extras: bytes = b"", value: bytes = b"", opaque: int = 0, cas: int = 0
) -> bytes:
    """Return one request packet (for tests, fuzzing and clients)."""
    body = len(extras) + len(key) + len(value)
    return _pack(REQUEST_MAGIC, opcode, len(key), len(extras), 0, 0, body, opaque, cas) + extras + key + value


def _exptime(raw: int) -> int:
    """A binary expiration (an unsigned 32-bit number) as the store takes it.

    NOTE: memcached reads it unsigned, so it is never negative; values past 2**31 - 1 are
    absolute times after 2038, which the store holds as 2**31 - 1.
    """
    return raw if raw <= EXPTIME_MAX else EXPTIME_MAX


class BinarySession:
    """A memcached binary-protocol session over ``store``, with the text session's API.

    Args:
        store: the item store.
        ctx: the server this session runs in.
        budget: reply bytes after which a feed stops (the text session's REPLY_BUDGET).
    """

    def __init__(self, store: Any, ctx: ServerContext, budget: int) -> None:
        self.store = store
        self.ctx = ctx
        self.budget = budget
        #: True once the connection must be closed after the bytes last returned are sent.
        self.closing = False
        #: True when it closes because the client sent a quit (not for a protocol error).
        self.quit = False
        #: True when buffered input can be answered without more from the client: a feed
        #: stopped at REPLY_BUDGET. Send the reply, then call ``feed(b"")``.
        self.more = False
        #: False while the server wants SASL and this client has not authenticated.
        self.authenticated = ctx.auth is None
        self._buf = bytearray()
        self._need = 0  # bytes _buf must hold before anything in it can be answered
        # A command awaiting its value: (handler, cmd, quiet, opcode, opaque, cas, extras, key, vlen).
        self._pending: tuple[Any, ...] | None = None
        self._swallow = 0  # bytes of a refused value still to discard
        self._close_after = False  # close once this feed's reply is out
        #: The client's socket, for watch lines (cfd=); -1 when unknown.
        self.cfd = -1

    @property
    def idle(self) -> bool:
        """True when no partial request is held between feeds."""
        return not self._buf and self._pending is None and not self._swallow

    def feed(self, data: bytes) -> bytes:
        """Consume bytes read from the client; return the reply bytes to send (possibly b"")."""
        if self.closing:
            return b""
        if self._buf:
            self._buf += data
            if self.more:
                self.more = False
            elif len(self._buf) < self._need:
                return b""  # APPSEC: a dribbling client costs linear time, not quadratic
            buf = bytes(self._buf)
            self._buf = bytearray()
        else:
            buf = bytes(data)
            self.more = False
        out: list[bytes] = []
        spent = 0
        pos = 0
        end = len(buf)
        self._need = 0
        # NOTE: not "while pos < end": a value of zero bytes completes with no input left.
        while True:
            if self._swallow:
                if pos == end:
                    break
                taken = min(self._swallow, end - pos)
                self._swallow -= taken
                pos += taken
                continue
            mark = len(out)
            pending = self._pending
            if pending is not None:
                vlen = pending[-1]
                if end - pos < vlen:
                    self._need = vlen
                    break
                self._pending = None
                pending[0](self, pending, buf[pos : pos + vlen], out)
                pos += vlen
            else:
                if end - pos < HEADER_SIZE:
                    self._need = HEADER_SIZE if pos < end else 0
                    break
                magic, opcode, keylen, extlen, _dt, _vb, bodylen, opaque, cas = _unpack(buf, pos)
                if magic != REQUEST_MAGIC:
                    self.closing = True  # memcached closes without a word
                    break
                head = HEADER_SIZE + extlen + keylen
                if end - pos < head:
                    self._need = head
                    break
                start = pos + HEADER_SIZE
                extras = buf[start : start + extlen]
                key = buf[start + extlen : pos + head]
                pos += head
                self._dispatch(opcode, keylen, extlen, bodylen, opaque, cas, extras, key, out)
            if self._close_after:
                self.closing = True
                break
            for part in out[mark:]:
                spent += len(part)
            if spent >= self.budget and pos < end:
                self.more = True  # the rest waits for feed(b"") (see REPLY_BUDGET)
                break
        if pos < end and not self.closing:
            self._buf = bytearray(memoryview(buf)[pos:])
        return b"".join(out)

    # -- dispatch (proto_bin.c, dispatch_bin_command) ----------------------------------------

    def _dispatch(
        self,
        opcode: int,
        keylen: int,
        extlen: int,
        bodylen: int,
        opaque: int,
        cas: int,
        extras: bytes,
        key: bytes,
        out: list[bytes],
    ) -> None:
        if keylen > bodylen or keylen + extlen > bodylen:
            self._error(out, opcode, opaque, UNKNOWN_COMMAND)
            self._close_after = True
            return
        if not self.authenticated and opcode not in _BEFORE_AUTH:
            self._error(out, opcode, opaque, AUTH_ERROR)
            self._close_after = True
            return
        if keylen > MAX_KEY_LENGTH:
            self._protocol_error(out, opcode, opaque)
            return
        quiet = opcode in QUIET
        cmd = QUIET[opcode] if quiet else opcode
        vlen = bodylen - keylen - extlen
        handler = _HANDLERS.get(cmd)
        if handler is None:
            # NOTE: bodylen, not vlen: memcached discards as many bytes again as the extras
            # and key it had already read (see the module docstring).
            self._error(out, opcode, opaque, UNKNOWN_COMMAND)
            self._swallow = bodylen
            return
        check, run = handler
        if not check(keylen, extlen, bodylen):
            self._protocol_error(out, opcode, opaque)
            return
        run(self, cmd, quiet, opcode, opaque, cas, extras, key, vlen, out)

    def _error(
        self, out: list[bytes], opcode: int, opaque: int, status: int, text: bytes | None = None
    ) -> None:
        """Append an error response (sent even for a quiet command, as memcached does)."""
        out.append(response(opcode, status, opaque, value=ERROR_TEXT[status] if text is None else text))

    def _protocol_error(self, out: list[bytes], opcode: int, opaque: int) -> None:
        """``Invalid arguments``, then close (handle_binary_protocol_error)."""
        self._error(out, opcode, opaque, EINVAL)
        self._close_after = True

    # -- retrieval ---------------------------------------------------------------------------

    def _get(
        self,
        cmd: int,
        quiet: bool,
        opcode: int,
        opaque: int,
        cas: int,
        extras: bytes,
        key: bytes,
        vlen: int,
        out: list[bytes],
    ) -> None:
        """get, getk, touch, gat, gatk and their quiet forms (process_bin_get_or_touch)."""
        with_key = cmd == GETK or cmd == GATK
        if cmd == GET or cmd == GETK:
            item = self.store.get_item(key)
        else:
            exptime = _exptime(_I32.unpack(extras)[0])
            item = self.store.gat(key, exptime)
        ctx = self.ctx
        if ctx.observed:
            if ctx.detail is not None:
                ctx.detail.get(key, item is not None)
            watch.item_get(ctx, key, item, self.cfd)
        if item is None:
            if quiet:
                return
            if with_key:
                out.append(response(opcode, KEY_ENOENT, opaque, key=key))  # the key, no text
            else:
                self._error(out, opcode, opaque, KEY_ENOENT)
            return
        value, flags, item_cas = item
        if cmd == TOUCH:
            value = b""
        out.append(
            response(opcode, SUCCESS, opaque, item_cas, _I32.pack(flags), key if with_key else b"", value)
        )

    # -- storage -----------------------------------------------------------------------------

    def _update(
        self,
        cmd: int,
        quiet: bool,
        opcode: int,
        opaque: int,
        cas: int,
        extras: bytes,
        key: bytes,
        vlen: int,
        out: list[bytes],
    ) -> None:
        """set, add, replace, append, prepend (process_bin_update, process_bin_append_prepend):
        check the size, then wait for the value."""
        if self.ctx.detail is not None:
            self.ctx.detail.set(key)  # memcached counts it here, before the value arrives
        if len(key) + vlen + ITEM_OVERHEAD > self.store.max_item_size:
            self.ctx.counters["store_too_large"] += 1
            if cmd == SET:
                self._drop(key)
            self._error(out, opcode, opaque, E2BIG)
            self._swallow = vlen
            return
        self._pending = (BinarySession._store, cmd, quiet, opcode, opaque, cas, extras, key, vlen)

    def _drop(self, key: bytes) -> None:
        """A set too large for the cache drops the old value, as memcached does."""
        wire.forget(self.store, key)

    def _store(self, pending: tuple[Any, ...], value: bytes, out: list[bytes]) -> None:
        """Store a complete value (complete_update_bin)."""
        _h, cmd, quiet, opcode, opaque, cas, extras, key, _vlen = pending
        store = self.store
        ctx = self.ctx
        flags, exptime = 0, 0
        if cmd == APPEND or cmd == PREPEND:
            mode = MODE_APPEND if cmd == APPEND else MODE_PREPEND
        else:
            flags, raw_exptime = _FLAGS_EXPTIME.unpack(extras)
            exptime = _exptime(raw_exptime)
            # any of set, add and replace with a CAS is a cas (NREAD_CAS)
            mode = MODE_CAS if cas else MODE_SET if cmd == SET else MODE_ADD if cmd == ADD else MODE_REPLACE
        if ctx.observed and ctx.watchers:
            watch.lookup(ctx, store, key, self.cfd)
        try:
            if mode == MODE_APPEND or mode == MODE_PREPEND:
                if cas:
                    item = store.get_item(key)
                    if item is not None and item[2] != cas:
                        self._error(out, opcode, opaque, KEY_EEXISTS)
                        self._observe_store(key, mode, Result.EXISTS, exptime, flags, len(value))
                        return
                result = store.append(key, value) if cmd == APPEND else store.prepend(key, value)
            elif mode == MODE_CAS:
                result = store.cas(key, value, flags, exptime, cas)
            elif mode == MODE_SET:
                result = store.set(key, value, flags, exptime)
            elif mode == MODE_ADD:
                result = store.add(key, value, flags, exptime)
            else:
                result = store.replace(key, value, flags, exptime)
        except OutOfMemory as exc:
            self.ctx.counters["store_no_memory"] += 1
            self._error(out, opcode, opaque, ENOMEM, NO_MEMORY_ITEM)
            self._observe_store(key, mode, exc, exptime, flags, len(value))
            return
        except ItemTooLarge as exc:
            self.ctx.counters["store_too_large"] += 1
            self._error(out, opcode, opaque, E2BIG)
            self._observe_store(key, mode, exc, exptime, flags, len(value))
            return
        self._observe_store(key, mode, result, exptime, flags, len(value))
        if result is Result.STORED:
            if not quiet:
                out.append(response(opcode, SUCCESS, opaque, store.cas_counter))
        elif result is Result.EXISTS:
            self._error(out, opcode, opaque, KEY_EEXISTS)
        elif result is Result.NOT_FOUND:
            self._error(out, opcode, opaque, KEY_ENOENT)
        elif cmd == ADD:
            self._error(out, opcode, opaque, KEY_EEXISTS)
        elif cmd == REPLACE:
            self._error(out, opcode, opaque, KEY_ENOENT)
        else:
            self._error(out, opcode, opaque, NOT_STORED)

    def _observe_store(self, key: bytes, mode: int, result: Any, exptime: int, flags: int, size: int) -> None:
        ctx = self.ctx
        if ctx.observed and ctx.watchers:
            watch.item_store(ctx, self.store, key, mode, result, exptime, flags, size, self.cfd)

    def _observe_lookup(self, key: bytes) -> None:
        ctx = self.ctx
        if ctx.observed and ctx.watchers:
            watch.lookup(ctx, self.store, key, self.cfd)

    # -- other item commands -----------------------------------------------------------------

    def _delete(
        self,
        cmd: int,
        quiet: bool,
        opcode: int,
        opaque: int,
        cas: int,
        extras: bytes,
        key: bytes,
        vlen: int,
        out: list[bytes],
    ) -> None:
        if self.ctx.detail is not None:
            self.ctx.detail.delete(key)
        self._observe_lookup(key)
        if cas:
            item = self.store.get_item(key)
            if item is not None and item[2] != cas:
                self._error(out, opcode, opaque, KEY_EEXISTS)
                return
        if self.store.delete(key) is Result.DELETED:
            if not quiet:
                out.append(response(opcode, SUCCESS, opaque))
        else:
            self._error(out, opcode, opaque, KEY_ENOENT)

    def _arith(
        self,
        cmd: int,
        quiet: bool,
        opcode: int,
        opaque: int,
        cas: int,
        extras: bytes,
        key: bytes,
        vlen: int,
        out: list[bytes],
    ) -> None:
        """increment, decrement (complete_incr_bin)."""
        delta, initial, raw_exptime = _INCR.unpack(extras)
        store = self.store
        self._observe_lookup(key)
        if cas:
            item = store.get_item(key)
            if item is not None and item[2] != cas:
                if not item[0]:  # NOTE: memcached finds an empty value non-numeric first
                    self._error(out, opcode, opaque, DELTA_BADVAL)
                else:
                    self._error(out, opcode, opaque, KEY_EEXISTS)
                return
        try:
            number = store.incr(key, delta) if cmd == INCREMENT else store.decr(key, delta)
        except NonNumericValue:
            self._error(out, opcode, opaque, DELTA_BADVAL)
            return
        except (ItemTooLarge, OutOfMemory):
            self._error(out, opcode, opaque, ENOMEM, NO_MEMORY_INCR)
            return
        if number is None:
            if raw_exptime == NO_CREATE:
                self._error(out, opcode, opaque, KEY_ENOENT)
                return
            self._observe_lookup(key)  # memcached stores the new counter as an add
            exptime = _exptime(raw_exptime)
            initial_value = b"%d" % initial
            try:
                result = store.add(key, initial_value, 0, exptime)
            except StoreError as exc:
                self._error(out, opcode, opaque, ENOMEM, NO_MEMORY_NEW_ITEM)
                self._observe_store(key, MODE_ADD, exc, exptime, 0, len(initial_value))
                return
            self._observe_store(key, MODE_ADD, result, exptime, 0, len(initial_value))
            if result is not Result.STORED:
                self._error(out, opcode, opaque, NOT_STORED)
                return
            number = initial
        if not quiet:
            out.append(response(opcode, SUCCESS, opaque, store.cas_counter, value=_U64.pack(number)))

    # -- server commands ---------------------------------------------------------------------

    def _flush(
        self,
        cmd: int,
        quiet: bool,
        opcode: int,
        opaque: int,
        cas: int,
        extras: bytes,
        key: bytes,
        vlen: int,
        out: list[bytes],
    ) -> None:
        self.store.flush_all(_exptime(_I32.unpack(extras)[0]) if extras else 0)
        if not quiet:
            out.append(response(opcode, SUCCESS, opaque))

    def _noop(
        self,
        cmd: int,
        quiet: bool,
        opcode: int,
        opaque: int,
        cas: int,
        extras: bytes,
        key: bytes,
        vlen: int,
        out: list[bytes],
    ) -> None:
        out.append(response(opcode, SUCCESS, opaque))

    def _version(
        self,
        cmd: int,
        quiet: bool,
        opcode: int,
        opaque: int,
        cas: int,
        extras: bytes,
        key: bytes,
        vlen: int,
        out: list[bytes],
    ) -> None:
        out.append(response(opcode, SUCCESS, opaque, value=self.ctx.version.encode()))

    def _quit(
        self,
        cmd: int,
        quiet: bool,
        opcode: int,
        opaque: int,
        cas: int,
        extras: bytes,
        key: bytes,
        vlen: int,
        out: list[bytes],
    ) -> None:
        if not quiet:
            out.append(response(opcode, SUCCESS, opaque))
        self._close_after = True
        self.quit = True

    def _stat(
        self,
        cmd: int,
        quiet: bool,
        opcode: int,
        opaque: int,
        cas: int,
        extras: bytes,
        key: bytes,
        vlen: int,
        out: list[bytes],
    ) -> None:
        """stat [group] (process_bin_stat): one packet per STAT line, then an empty one.

        The groups are the text protocol's (:mod:`pycache_d.protocol.stats` answers them); the
        text reply is re-framed, so both protocols always show the same fields.
        """
        store, ctx = self.store, self.ctx
        end = response(opcode, SUCCESS, opaque)
        if not key:
            text = stats.reply(store, ctx, [b"stats"])
        elif key.startswith(b"reset"):
            stats.reply(store, ctx, [b"stats", b"reset"])
            out.append(end)
            return
        elif key.startswith(b"settings"):
            text = stats.reply(store, ctx, [b"stats", b"settings"])
        elif key.startswith(b"detail"):
            sub = key[6:]
            if sub.startswith(b" dump"):
                dump = stats.reply(store, ctx, [b"stats", b"detail", b"dump"])
                out.append(response(opcode, SUCCESS, opaque, key=b"detailed", value=dump))
            elif sub.startswith(b" on") or sub.startswith(b" off"):
                stats.reply(store, ctx, [b"stats", b"detail", sub[1:3] if sub[1:3] == b"on" else b"off"])
            else:
                self._error(out, opcode, opaque, KEY_ENOENT)
                return
            out.append(end)
            return
        elif key in _STAT_GROUPS:
            text = stats.reply(store, ctx, [b"stats", key])
        else:
            self._error(out, opcode, opaque, KEY_ENOENT)
            return
        packets = _stat_packets(text, opcode, opaque)
        if packets is None:  # a group the text protocol does not answer (yet)
            self._error(out, opcode, opaque, KEY_ENOENT)
            return
        out += packets
        out.append(end)

    # -- SASL (PLAIN, against the --auth-file credentials) -------------------------------------

    def _sasl_list(
        self,
        cmd: int,
        quiet: bool,
        opcode: int,
        opaque: int,
        cas: int,
        extras: bytes,
        key: bytes,
        vlen: int,
        out: list[bytes],
    ) -> None:
        if self.ctx.auth is None:
            self._error(out, opcode, opaque, UNKNOWN_COMMAND)
            return
        out.append(response(opcode, SUCCESS, opaque, value=auth.MECHANISMS))

    def _sasl_auth(
        self,
        cmd: int,
        quiet: bool,
        opcode: int,
        opaque: int,
        cas: int,
        extras: bytes,
        key: bytes,
        vlen: int,
        out: list[bytes],
    ) -> None:
        if self.ctx.auth is None:
            self._error(out, opcode, opaque, UNKNOWN_COMMAND)
            self._swallow = vlen + len(extras)  # NOTE: memcached: bodylen - keylen
            return
        if len(key) > MAX_SASL_MECH_LEN:
            self._error(out, opcode, opaque, EINVAL)
            self._swallow = vlen
            return
        if vlen + len(key) + ITEM_OVERHEAD > self.store.max_item_size:
            self._error(out, opcode, opaque, ENOMEM)  # memcached could not allocate it either
            self._swallow = vlen
            return
        self._pending = (BinarySession._sasl_complete, cmd, quiet, opcode, opaque, cas, extras, key, vlen)

    def _sasl_complete(self, pending: tuple[Any, ...], payload: bytes, out: list[bytes]) -> None:
        """Check a SASL PLAIN exchange (process_bin_complete_sasl_auth)."""
        _h, cmd, _q, opcode, opaque, _cas, _extras, mech, _vlen = pending
        ok = False
        if cmd == SASL_AUTH:
            ok = auth.check_sasl(self.ctx.auth, mech, payload)
        # SASL_STEP: PLAIN is done in one step, so a step always fails, as Cyrus answers it.
        counters = self.ctx.counters
        counters["auth_cmds"] += 1
        if ok:
            self.authenticated = True
            out.append(response(opcode, SUCCESS, opaque, value=SASL_OK))
        else:
            counters["auth_errors"] += 1
            self._error(out, opcode, opaque, AUTH_ERROR)


def _stat_packets(text: bytes, opcode: int, opaque: int) -> list[bytes] | None:
    """Re-frame a text ``STAT name value`` reply as binary stat packets; None if it is not one."""
    if not text.endswith(b"END\r\n"):
        return None
    packets = []
    for line in text[:-5].split(b"\r\n")[:-1]:
        if not line.startswith(b"STAT "):
            return None
        name, _, value = line[5:].partition(b" ")
        packets.append(response(opcode, SUCCESS, opaque, key=name, value=value))
    return packets


def _no_body(keylen: int, extlen: int, bodylen: int) -> bool:
    return extlen == 0 and keylen == 0 and bodylen == 0


#: Command -> (memcached's check of the extras, key and body lengths, handler).
_HANDLERS: dict[int, tuple[Callable[[int, int, int], bool], Callable[..., None]]] = {
    GET: (lambda k, e, b: e == 0 and b == k and k > 0, BinarySession._get),
    GETK: (lambda k, e, b: e == 0 and b == k and k > 0, BinarySession._get),
    TOUCH: (lambda k, e, b: e == 4 and k != 0, BinarySession._get),
    GAT: (lambda k, e, b: e == 4 and k != 0, BinarySession._get),
    GATK: (lambda k, e, b: e == 4 and k != 0, BinarySession._get),
    SET: (lambda k, e, b: e == 8 and k != 0 and b >= k + 8, BinarySession._update),
    ADD: (lambda k, e, b: e == 8 and k != 0 and b >= k + 8, BinarySession._update),
    REPLACE: (lambda k, e, b: e == 8 and k != 0 and b >= k + 8, BinarySession._update),
    APPEND: (lambda k, e, b: k > 0 and e == 0, BinarySession._update),
    PREPEND: (lambda k, e, b: k > 0 and e == 0, BinarySession._update),
    DELETE: (lambda k, e, b: k > 0 and e == 0 and b == k, BinarySession._delete),
    INCREMENT: (lambda k, e, b: k > 0 and e == 20 and b == k + e, BinarySession._arith),
    DECREMENT: (lambda k, e, b: k > 0 and e == 20 and b == k + e, BinarySession._arith),
    FLUSH: (lambda k, e, b: k == 0 and b == e and e in (0, 4), BinarySession._flush),
    NOOP: (_no_body, BinarySession._noop),
    VERSION: (_no_body, BinarySession._version),
    QUIT: (_no_body, BinarySession._quit),
    STAT: (lambda k, e, b: e == 0, BinarySession._stat),
    SASL_LIST_MECHS: (_no_body, BinarySession._sasl_list),
    SASL_AUTH: (lambda k, e, b: e == 0 and k != 0, BinarySession._sasl_auth),
    SASL_STEP: (lambda k, e, b: e == 0 and k != 0, BinarySession._sasl_auth),
}
