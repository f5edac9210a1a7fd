"""memcached's meta commands (protocol.txt, "Meta Commands"): mg, ms, md, ma, mn, me.

Flags are parsed as memcached 1.6.18 parses them (``_meta_flag_preparse``): every known flag is
accepted by every command, a repeated flag is ``CLIENT_ERROR duplicate flag``, an unknown one
``CLIENT_ERROR invalid flag``; md and ma answer any flag error with ``CLIENT_ERROR invalid or
duplicate flag``. Return flags come back in request order, then ``Z``, ``X`` and ``W``. On a hit
``k`` shows the key as the item was stored: base64 followed by ``b`` if an ms stored it under
``b``, plain otherwise. ``q`` hides ``EN`` for mg, ``HD`` for ms and md, and any success of ma but
a vivification; never an error.

APPROXIMATIONS (the store API keeps no per-item meta state and has no side-effect-free lookup):

* Stale (``X``), win-token-sent (``Z``/``W``), TTL (``t``, ``R``, me's ``exp``), hit-before
  (``h``) and last access (``l``, me's ``la``) live in a side table, ``ServerContext.marks``:
  key -> [cas, exptime, bits, last_access]. An entry only counts while the item's CAS is the one
  it recorded, so a rewrite by any command voids it. Meta commands keep it up to date (ma carries
  it over to the counter's new CAS), and so do classic touch/gat for entries that exist. An item
  written with a TTL by a classic command, or rewritten by classic incr/decr/append/prepend,
  reports ``t-1`` until a meta command sets its TTL. ``h`` and ``l`` reflect meta gets only.
  The table is bounded by :data:`MAX_MARKS` (oldest entries dropped first).
* ``u`` (no LRU bump) is accepted but the item is bumped: the store has no such read.
* Reading an item's CAS for ``C`` with append/prepend/ma/md, and ``me``, goes through
  ``get_item``, which counts a get and marks the item fetched.
* ``b`` keys decode to binary, and the store holds any bytes, as memcached does.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Protocol

from ..store.errors import InvalidKey, ItemTooLarge, NonNumericValue, OutOfMemory, Result, StoreError
from ..store.semantics import ITEM_OVERHEAD, MAX_KEY_LENGTH, absolute_expiry
from . import wire
from .context import ServerContext
from .wire import parse_i32, parse_u32, parse_u64


class Session(Protocol):
    """What meta commands use of the session that dispatches them (:mod:`.session`).

    The session calls into this module, never the other way round: a meta command reads the
    store and the server context, and asks for an ms data block through ``_need`` and
    ``_pending`` (or for one to be skipped through ``_swallow``); the session calls
    :func:`complete_ms` once the block has arrived.
    """

    store: Any
    ctx: ServerContext
    _need: int
    _swallow: int
    _pending: Any

    def _drop(self, key: bytes) -> None: ...

    def count_error(self, exc: StoreError) -> None: ...


#: Marker in ``Session._pending`` for an ms awaiting its data block.
PENDING_MS = -1
#: Bound on the side table of meta state (see the module docstring).
MAX_MARKS = 65536
#: memcached: ``ntokens > MFLAG_MAX_OPT_LENGTH`` (20, counting its terminal token) is refused.
_MAX_TOKENS = 19
#: memcached's tokenizer keeps at most 23 tokens (MAX_TOKENS - 1); the rest of the line is ignored.
_TOKEN_CAP = 23
_MAX_OPAQUE = 32
_KNOWN = frozenset(b"bNTRlOPLkstcfvhuqFCMJDI")

# Bits of a mark.
_STALE = 1
_WON = 2  # a win token (W) was handed out for this version of the item
_FETCHED = 4
_BINARY = 8  # stored under a base64 (b) key: k returns it encoded, followed by b

_HD = b"HD"
_MS_CODES = {Result.STORED: b"HD", Result.NOT_STORED: b"NS", Result.EXISTS: b"EX", Result.NOT_FOUND: b"NF"}
_NON_NUMERIC = NonNumericValue.wire


class _Flags:
    """The parsed flags of one meta command."""

    __slots__ = ("order", "tok", "key", "binary", "error")

    def __init__(self) -> None:
        self.order: list[bytes] = []  # the flag tokens, in request order
        self.tok: dict[int, bytes] = {}  # flag byte -> its token argument
        self.key = b""
        self.binary = False
        self.error: bytes | None = None


def _parse(toks: list[bytes], start: int, default_error: bytes) -> _Flags:
    """Parse the flags from ``toks[start]`` on, and decode the key if ``b`` is among them."""
    fl = _Flags()
    fl.key = toks[1]
    seen = fl.tok
    for i in range(start, len(toks)):
        tok = toks[i]
        o = tok[0]
        if o >= 127 or o in seen:
            fl.error = wire.META_DUPLICATE_FLAG
            return fl
        if o not in _KNOWN:
            fl.error = wire.META_INVALID_FLAG
            return fl
        arg = tok[1:]
        seen[o] = arg
        fl.order.append(tok)
        if o == 0x62:  # b
            try:
                fl.key = binascii.a2b_base64(toks[1], strict_mode=True)
            except binascii.Error:
                fl.key = b""
            if not fl.key:
                fl.error = wire.META_KEY_DECODE
            fl.binary = True
        elif o in b"NTR":
            if parse_i32(arg) is None:
                fl.error = wire.META_BAD_TOKEN
        elif o == 0x46:  # F
            if parse_u32(arg) is None and fl.error is None:
                fl.error = default_error  # F sets no message of its own: an earlier one stays
        elif o == 0x43:  # C
            if parse_u64(arg) is None:
                fl.error = wire.META_BAD_TOKEN
        elif o == 0x4D:  # M
            if len(tok) != 2:
                fl.error = wire.META_M_LENGTH
        elif o == 0x4A:  # J
            if parse_u64(arg) is None:
                fl.error = wire.META_BAD_INITIAL
        elif o == 0x44:  # D
            if parse_u64(arg) is None:
                fl.error = wire.META_BAD_DELTA
        elif o == 0x4F and len(tok) > _MAX_OPAQUE:  # O
            fl.error = wire.META_OPAQUE_TOO_LONG
    return fl


def _ttl(arg: bytes) -> int:
    """Return a checked N/T/R token as an expiration time."""
    value = parse_i32(arg)
    assert value is not None  # _parse refused the command otherwise
    return value


def dispatch(session: Session, toks: list[bytes], out: list[bytes]) -> None:
    """Run one meta command (``toks[0]`` is ``mg``, ``ms``, ``md``, ``ma``, ``mn`` or ``me``)."""
    cmd = toks[0][1]
    session.ctx.counters["cmd_meta"] += 1
    if cmd == 0x6E:  # mn
        out.append(wire.MN)
        return
    if len(toks) < 2:
        out.append(wire.BAD_FORMAT if cmd == 0x65 else wire.ERROR)
        return
    if len(toks[1]) > MAX_KEY_LENGTH:
        out.append(wire.BAD_FORMAT)
        return
    if len(toks) > _TOKEN_CAP:
        toks = toks[:_TOKEN_CAP]
    if len(toks) > _MAX_TOKENS and cmd != 0x65:
        out.append(wire.META_TOO_MANY_FLAGS)
        return
    if cmd == 0x67:
        _mg(session, toks, out)
    elif cmd == 0x73:
        _ms(session, toks, out)
    elif cmd == 0x64:
        _md(session, toks, out)
    elif cmd == 0x61:
        _ma(session, toks, out)
    else:
        _me(session, toks, out)


# -- the side table ---------------------------------------------------------------------------


def _mark(session: Session, key: bytes, cas: int) -> list[int] | None:
    """Return the live mark of ``key`` at ``cas``, or None."""
    m = session.ctx.marks.get(key)
    if m is not None and m[0] != cas:
        return None
    return m


def _set_mark(session: Session, key: bytes, cas: int, exptime: int, bits: int, last: int) -> None:
    marks = session.ctx.marks
    if key not in marks and len(marks) >= MAX_MARKS:
        del marks[next(iter(marks))]  # the oldest entry
    marks[key] = [cas, exptime, bits, last]


def retime(session: Session, key: bytes, exptime: int) -> None:
    """Record a TTL change made by a classic touch/gat on an item that has a mark."""
    m = session.ctx.marks.get(key)
    if m is not None:
        m[1] = _expires(session, exptime, session.ctx.clock())


def _expires(session: Session, exptime: int, now: int) -> int:
    """A command's expiration time as a time on the store's clock (see absolute_expiry)."""
    return absolute_expiry(exptime, now, session.store.wall_skew)


def _remaining(exptime: int, now: int) -> int:
    """Return the TTL flag value: -1 for none, else seconds left."""
    return -1 if exptime == 0 else max(exptime - now, -1)


def _echo(fl: _Flags, key_token: bytes) -> list[bytes]:
    """Return the O and k return flags, in request order (what every reply may carry)."""
    parts = []
    for tok in fl.order:
        o = tok[0]
        if o == 0x4F:
            parts.append(b" " + tok)
        elif o == 0x6B:
            parts.append(b" k" + key_token + (b" b" if fl.binary else b""))
    return parts


# -- mg ---------------------------------------------------------------------------------------


def _mg(session: Session, toks: list[bytes], out: list[bytes]) -> None:
    fl = _parse(toks, 2, wire.BAD_FORMAT)
    if fl.error is not None:
        out.append(fl.error)
        return
    store = session.store
    args = fl.tok
    key = fl.key
    now = session.ctx.clock()
    created = False
    try:
        item = store.gat(key, _ttl(args[0x54])) if 0x54 in args else store.get_item(key)
        if item is None and 0x4E in args:
            # N: vivify on miss, an empty item whose first reader wins the right to recache it.
            viv = _ttl(args[0x4E])
            if store.add(key, b"", 0, viv) is Result.STORED:
                created = True
                item = (b"", 0, store.cas_counter)
                # NOTE: memcached does not flag a vivified item's key as binary, even under b.
                _set_mark(session, key, item[2], _expires(session, viv, now), 0, now)
                # T and N both set the new item's TTL, in request order: the last one wins.
                last_ttl = [tok for tok in fl.order if tok[0] in b"NT"][-1]
                if last_ttl[0] == 0x54:
                    store.touch(key, _ttl(last_ttl[1:]))
    except InvalidKey:
        item = None
    except (ItemTooLarge, OutOfMemory):
        item = None  # memcached: an item it cannot allocate is not vivified; the miss stands
    if item is None:
        if 0x71 not in args:  # q hides a miss
            out.append(b"EN" + b"".join(_echo(fl, toks[1])) + b"\r\n")
        return
    value, flags, cas = item
    m = _mark(session, key, cas)
    exptime = m[1] if m is not None else 0
    bits = m[2] if m is not None else 0
    last = m[3] if m is not None else now
    won = False
    parts = [b"VA %d" % len(value) if 0x76 in args else _HD]
    for tok in fl.order:
        o = tok[0]
        if o == 0x54:  # T: the TTL changed here (gat above); later t flags see it
            exptime = _expires(session, _ttl(tok[1:]), now)
        elif o == 0x4E:
            if created:
                won = True
        elif o == 0x52:  # R: win the recache if the TTL left is below the token
            if (
                not bits & _WON
                and not created
                and exptime
                and exptime < _expires(session, _ttl(tok[1:]), now)
            ):
                won = True
        elif o == 0x73:
            parts.append(b" s%d" % len(value))
        elif o == 0x74:
            parts.append(b" t%d" % _remaining(exptime, now))
        elif o == 0x63:
            parts.append(b" c%d" % cas)
        elif o == 0x66:
            parts.append(b" f%d" % flags)
        elif o == 0x6C:
            parts.append(b" l%d" % (now - last))
        elif o == 0x68:
            parts.append(b" h1" if bits & _FETCHED else b" h0")
        elif o == 0x4F:
            parts.append(b" " + tok)
        elif o == 0x6B:
            # memcached shows the key as the item was stored, whatever form this request used.
            parts.append(b" k" + base64.b64encode(key) + b" b" if bits & _BINARY else b" k" + key)
    if bits & _WON:
        parts.append(b" Z")
    if bits & _STALE:
        parts.append(b" X")
        if not bits & _WON:
            won = True
    if won:
        parts.append(b" W")
        bits |= _WON
    if m is not None or won or 0x54 in args or 0x68 in args or 0x6C in args:
        _set_mark(session, key, cas, exptime, bits | _FETCHED, now)
    parts.append(b"\r\n")
    if 0x76 in args:
        parts.append(value)
        parts.append(b"\r\n")
    out.append(b"".join(parts))


# -- ms ---------------------------------------------------------------------------------------

_MS_MODES = {None: 0, b"S": 0, b"E": 1, b"A": 2, b"P": 3, b"R": 4}


def _ms(session: Session, toks: list[bytes], out: list[bytes]) -> None:
    if len(toks) < 3:
        out.append(wire.BAD_FORMAT)
        return
    vlen = parse_i32(toks[2])
    if vlen is None or not 0 <= vlen <= 2**31 - 3:
        out.append(wire.BAD_FORMAT)
        return
    fl = _parse(toks, 3, wire.BAD_FORMAT)
    error = fl.error
    mode = _MS_MODES.get(fl.tok.get(0x4D))
    if error is None and mode is None:
        error = wire.META_MS_MODE
    if error is None and len(fl.key) + vlen + ITEM_OVERHEAD > session.store.max_item_size:
        session.ctx.counters["store_too_large"] += 1
        session._drop(fl.key)  # memcached drops the old value whatever the mode
        error = ItemTooLarge.wire
    if error is not None:
        session._swallow = vlen + 2
        out.append(error)
        return
    session._need = vlen + 2
    session._pending = (PENDING_MS, fl, mode, toks[1])


def complete_ms(session: Session, pending: tuple[Any, ...], block: bytes, out: list[bytes]) -> None:
    """Store the data block of an ms and answer it."""
    _tag, fl, mode, key_token = pending
    if block[-2:] != b"\r\n":
        out.append(wire.BAD_DATA_CHUNK)  # meta commands always report errors
        return
    value = block[:-2]
    args = fl.tok
    key = fl.key
    store = session.store
    flags = parse_u32(args[0x46]) if 0x46 in args else 0
    exptime = _ttl(args[0x54]) if 0x54 in args else 0
    compare = parse_u64(args[0x43]) if 0x43 in args else None
    stale = False
    try:
        if compare is not None and mode in (0, 4):
            result = store.cas(key, value, flags, exptime, compare)
            if result is Result.EXISTS and 0x49 in args:
                # I: a CAS older than the item's still stores, but the new value is stale.
                item = store.get_item(key)
                if item is not None and 0 < compare < item[2]:  # C0 is never "older" (observed)
                    result = store.cas(key, value, flags, exptime, item[2])
                    stale = result is Result.STORED
        elif compare and mode in (2, 3):  # append/prepend compare a nonzero CAS only
            item = store.get_item(key)
            if item is None:
                result = Result.NOT_STORED
            elif item[2] != compare:
                result = Result.EXISTS
            else:
                result = store.append(key, value) if mode == 2 else store.prepend(key, value)
        elif mode == 0:
            result = store.set(key, value, flags, exptime)
        elif mode == 1:
            result = store.add(key, value, flags, exptime)
        elif mode == 2:
            result = store.append(key, value)
        elif mode == 3:
            result = store.prepend(key, value)
        else:
            result = store.replace(key, value, flags, exptime)
    except StoreError as exc:
        session.count_error(exc)
        out.append(exc.wire)
        return
    stored = result is Result.STORED
    cas = store.cas_counter if stored else 0
    if stored and (exptime or stale or fl.binary):
        now = session.ctx.clock()
        bits = (_STALE if stale else 0) | (_BINARY if fl.binary else 0)
        _set_mark(session, key, cas, _expires(session, exptime, now), bits, now)
    if stored and 0x71 in args:
        return
    parts = [_MS_CODES[result]]
    for tok in fl.order:
        o = tok[0]
        if o == 0x4F:
            parts.append(b" " + tok)
        elif o == 0x6B:
            parts.append(b" k" + key_token + (b" b" if fl.binary else b""))
        elif o == 0x63:
            parts.append(b" c%d" % cas)
    parts.append(b"\r\n")
    out.append(b"".join(parts))


# -- md ---------------------------------------------------------------------------------------


def _md(session: Session, toks: list[bytes], out: list[bytes]) -> None:
    fl = _parse(toks, 2, wire.BAD_FORMAT)
    if fl.error is not None:
        out.append(wire.META_INVALID_OR_DUPLICATE)
        return
    args = fl.tok
    key = fl.key
    store = session.store
    try:
        if 0x43 in args or 0x49 in args:
            item = store.get_item(key)
            if item is None:
                code = b"NF"
            elif 0x43 in args and parse_u64(args[0x43]) != item[2]:
                code = b"EX"
            elif 0x49 in args:
                # I: keep the item but make it stale under a new CAS (append b"" rewrites it with
                # its flags and expiry), optionally with a new TTL; the next mg wins the recache.
                store.append(key, b"")
                now = session.ctx.clock()
                m = _mark(session, key, item[2])
                exptime = m[1] if m is not None else 0
                bits = _STALE | (m[2] & _BINARY if m is not None else 0)
                if 0x54 in args:
                    store.touch(key, _ttl(args[0x54]))
                    exptime = _expires(session, _ttl(args[0x54]), now)
                _set_mark(session, key, store.cas_counter, exptime, bits, now)
                code = _HD
            else:
                code = b"HD" if store.delete(key) is Result.DELETED else b"NF"
        else:
            code = b"HD" if store.delete(key) is Result.DELETED else b"NF"
    except InvalidKey:
        code = b"NF"
    if code == _HD and 0x71 in args:
        return  # q hides success only
    out.append(code + b"".join(_echo(fl, toks[1])) + b"\r\n")


# -- ma ---------------------------------------------------------------------------------------

_MA_MODES = {None: True, b"I": True, b"+": True, b"D": False, b"-": False}


def _ma(session: Session, toks: list[bytes], out: list[bytes]) -> None:
    fl = _parse(toks, 2, wire.BAD_FORMAT)
    if fl.error is not None:
        out.append(wire.META_INVALID_OR_DUPLICATE)
        return
    args = fl.tok
    incr = _MA_MODES.get(args.get(0x4D), None) if 0x4D in args else True
    if incr is None:
        out.append(wire.META_MA_MODE)
        return
    key = fl.key
    store = session.store
    delta = parse_u64(args[0x44]) if 0x44 in args else 1
    assert delta is not None
    now = session.ctx.clock()
    number: int | None = None
    vivified = vivifying = False
    code = b"HD"
    carried: list[int] | None = None
    try:
        if key in session.ctx.marks:
            # The counter gets a new CAS, which would void the item's mark: carry it over (this
            # read costs a counted get, and only items with meta state pay it).
            item = store.get_item(key)
            carried = _mark(session, key, item[2]) if item is not None else None
        if 0x43 in args:
            # memcached's do_add_delta: an empty value is non-numeric before the CAS is compared,
            # and a CAS of 0 compares nothing.
            item = store.get_item(key)
            compare = parse_u64(args[0x43])
            if item is None:
                code = b"HD" if 0x4E in args else b"NF"  # a miss still vivifies
            elif not item[0]:
                raise NonNumericValue("empty value")
            elif compare and item[2] != compare:
                code = b"EX"
        if code == b"HD":
            number = store.incr(key, delta) if incr else store.decr(key, delta)
            if number is None:
                if 0x4E in args:
                    initial = parse_u64(args[0x4A]) if 0x4A in args else 0
                    assert initial is not None
                    viv = _ttl(args[0x4E])
                    vivifying = True
                    if store.add(key, b"%d" % initial, 0, viv) is Result.STORED:
                        number = initial
                        vivified = True
                        # NOTE: as with mg, a vivified item's key is not flagged binary.
                        _set_mark(session, key, store.cas_counter, _expires(session, viv, now), 0, now)
                    else:
                        code = b"NS"
                else:
                    code = b"NF"
            elif 0x54 in args:
                ttl = _ttl(args[0x54])
                store.touch(key, ttl)
                bits = carried[2] if carried is not None else 0
                _set_mark(session, key, store.cas_counter, _expires(session, ttl, now), bits, now)
            elif carried is not None:
                _set_mark(session, key, store.cas_counter, carried[1], carried[2], now)
    except InvalidKey:
        code = b"NF"
    except NonNumericValue:
        out.append(_NON_NUMERIC)
        return
    except (ItemTooLarge, OutOfMemory):
        # memcached's failed allocation (-I or -m), reported even under q.
        out.append(wire.META_VIVIFY_NO_MEMORY if vivifying else wire.META_DELTA_NO_MEMORY)
        return
    if number is None:
        out.append(code + b"".join(_echo(fl, toks[1])) + b"\r\n")
        return
    cas = store.cas_counter
    m = _mark(session, key, cas)
    exptime = m[1] if m is not None else 0
    with_value = 0x76 in args
    if 0x71 in args and not vivified:
        return  # q hides success (HD or VA), but memcached still answers a vivification
    digits = b"%d" % number
    parts = [b"VA %d" % len(digits) if with_value else _HD]
    for tok in fl.order:
        o = tok[0]
        if o == 0x4F:
            parts.append(b" " + tok)
        elif o == 0x6B:
            parts.append(b" k" + toks[1] + (b" b" if fl.binary else b""))
        elif o == 0x74:
            parts.append(b" t%d" % _remaining(exptime, now))
        elif o == 0x63:
            parts.append(b" c%d" % cas)
    parts.append(b"\r\n")
    if with_value:
        parts.append(digits + b"\r\n")
    out.append(b"".join(parts))


# -- me ---------------------------------------------------------------------------------------


def _me(session: Session, toks: list[bytes], out: list[bytes]) -> None:
    key = toks[1]
    if len(toks) > 2 and toks[2] == b"b":
        try:
            key = binascii.a2b_base64(key, strict_mode=True)
        except binascii.Error:
            key = b""
        if not key:
            out.append(wire.BAD_FORMAT)
            return
    try:
        item = session.store.get_item(key)
    except InvalidKey:
        item = None
    if item is None:
        out.append(wire.EN)
        return
    value, _flags, cas = item
    now = session.ctx.clock()
    m = _mark(session, key, cas)
    exptime = m[1] if m is not None else 0
    last = m[3] if m is not None else now
    fetched = b"yes" if m is not None and m[2] & _FETCHED else b"no"
    # NOTE: as memcached prints them: exp is now - exptime (negative while the item lives), and
    # size is memcached's item size (48-byte header, 8-byte CAS, key + NUL, value + CRLF).
    out.append(
        b"ME %s exp=%d la=%d cas=%d fetch=%s cls=1 size=%d\r\n"
        % (key, -1 if exptime == 0 else now - exptime, now - last, cas, fetched, len(key) + len(value) + 59)
    )
