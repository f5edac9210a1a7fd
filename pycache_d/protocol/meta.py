"""memcached's meta commands (protocol.txt, "Meta Commands"): mg, ms, md, ma, mn, me.

Each command follows memcached 1.6.18's ``proto_text.c`` (``process_mget_command`` and its
siblings) step for step, over the store's meta API (``peek``, ``meta_get``, ``mark``,
``meta_update``, ``meta_delete``, ``meta_delta``, ``vivify``). The store keeps memcached's
per-item state (``pycache_d/store/semantics.py``): the TTL whichever command set it, the last
access (``l``, me's ``la``), and the fetched (``h``), win-token (``W``/``Z``), stale (``X``) and
binary-key marks; it is saved in the snapshot with the item.

Flags are parsed as ``_meta_flag_preparse`` parses them: every known flag is accepted by every
command, a repeated flag is ``CLIENT_ERROR duplicate flag``, an unknown one ``CLIENT_ERROR
invalid flag``; md and ma answer any flag error with ``CLIENT_ERROR invalid or duplicate flag``.
A base64 key (``b``) is decoded as leniently as memcached decodes it
(:func:`~pycache_d.protocol.wire.decode_base64_key`). Return flags come back in request order,
then ``Z``, ``X`` and ``W``. ``q`` hides ``EN`` for mg, ``HD`` for ms and md, and any success of
ma but a vivification; never an error. An opaque (``O``) longer than 32 bytes is refused where
memcached checks it, while it writes the reply: what the flags before it did is done.

What a command reads or marks is what memcached's does: mg fetches the item (``u``: it does
not: no LRU move, no fetched mark, no last access), and counts as a get or, with ``T``, a touch;
me, and the CAS comparisons of ms, md and ma, look the item up without a fetch.

APPSEC: no client byte reaches a reply line unescaped. ``k`` and me show a key in base64 (``k``
followed by ``b``) when the item was stored under a base64 key, and, unlike memcached, also
whenever a key reached through ``b`` holds a space, CR, LF or NUL (memcached writes such a key
raw if mg/ma N vivified it, so its author could forge the reply lines another client reads).
Every other key or opaque echoed is the request's own token: the session splits the line on
spaces, ends it at LF and cuts it at NUL, so it adds no token and no line to the reply.
"""

from __future__ import annotations

import base64
from typing import Any, Protocol

from ..store.errors import InvalidKey, ItemTooLarge, NonNumericValue, OutOfMemory, Result, StoreError
from ..store.semantics import (
    BINARY_KEY,
    FETCHED,
    ITEM_OVERHEAD,
    MAX_KEY_LENGTH,
    MODE_ADD,
    MODE_APPEND,
    MODE_CAS,
    MODE_PREPEND,
    MODE_REPLACE,
    MODE_SET,
    STALE,
    WON,
    absolute_expiry,
    chunk_size,
    report_class,
)
from . import watch, wire
from .context import ServerContext
from .wire import decode_base64_key, parse_i32, parse_u32, parse_u64


class Session(Protocol):
    """What meta commands use of the session that dispatches them (:mod:`.session`).

    The session calls into this module, never the other way round: a meta command reads the
    store and the server context, and asks for an ms data block through ``_need`` and
    ``_pending`` (or for one to be skipped through ``_swallow``); the session calls
    :func:`complete_ms` once the block has arrived.
    """

    store: Any
    ctx: ServerContext
    cfd: int
    _need: int
    _swallow: int
    _pending: Any

    def _drop(self, key: bytes) -> None: ...

    def count_error(self, exc: StoreError) -> None: ...

    def observe_lookup(self, key: bytes) -> None: ...


#: Marker in ``Session._pending`` for an ms awaiting its data block.
PENDING_MS = -1
#: memcached: ``ntokens > MFLAG_MAX_OPT_LENGTH`` (20, counting its terminal token) is refused.
_MAX_TOKENS = 19
#: memcached's tokenizer keeps at most 23 tokens (MAX_TOKENS - 1); the rest of the line is ignored.
_TOKEN_CAP = 23
#: MFLAG_MAX_OPAQUE_LENGTH: the longest O token, its O included.
_MAX_OPAQUE = 32
_KNOWN = frozenset(b"bNTRlOPLkstcfvhuqFCMJDI")
#: Bytes no text-protocol token holds: a key holding one is only ever shown in base64.
_NOT_IN_TOKENS = frozenset(b" \r\n\0")

# Flag bytes.
_b, _c, _f, _h, _k, _l, _q, _s, _t, _u, _v = b"bcfhklqstuv"
_C, _D, _F, _I, _J, _M, _N, _O, _R, _T = b"CDFIJMNORT"

_HD = b"HD"
_MS_CODES = {Result.STORED: b"HD", Result.NOT_STORED: b"NS", Result.EXISTS: b"EX", Result.NOT_FOUND: b"NF"}
_MD_CODES = {Result.DELETED: b"HD", Result.NOT_FOUND: b"NF", Result.EXISTS: b"EX"}
_NON_NUMERIC = NonNumericValue.wire


class _Flags:
    """The parsed flags of one meta command."""

    __slots__ = ("order", "tok", "key", "binary", "error", "long_opaque")

    def __init__(self) -> None:
        self.order: list[bytes] = []  # the flag tokens, in request order
        self.tok: dict[int, bytes] = {}  # flag byte -> its token argument
        self.key = b""
        self.binary = False
        self.error: bytes | None = None
        #: Index in ``order`` of an O token too long to answer (memcached refuses it late).
        self.long_opaque: int | None = None


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
        if o == _b:
            fl.key = decode_base64_key(toks[1])
            if not fl.key:
                fl.error = wire.META_KEY_DECODE
            fl.binary = True
        elif o in (_N, _T, _R):
            if parse_i32(arg) is None:
                fl.error = wire.META_BAD_TOKEN
        elif o == _F:
            if parse_u32(arg) is None and fl.error is None:
                fl.error = default_error  # F sets no message of its own: an earlier one stays
        elif o == _C:
            if parse_u64(arg) is None:
                fl.error = wire.META_BAD_TOKEN
        elif o == _M:
            if len(tok) != 2:
                fl.error = wire.META_M_LENGTH
        elif o == _J:
            if parse_u64(arg) is None:
                fl.error = wire.META_BAD_INITIAL
        elif o == _D:
            if parse_u64(arg) is None:
                fl.error = wire.META_BAD_DELTA
        elif o == _O and len(tok) > _MAX_OPAQUE:
            fl.long_opaque = len(fl.order) - 1
    return fl


def _ttl(arg: bytes) -> int:
    """Return a checked N/T/R token as an expiration time."""
    value = parse_i32(arg)
    assert value is not None  # _parse refused the command otherwise
    return value


def _ttl_of(fl: _Flags, flag_bytes: bytes, upto: int | None = None) -> int | None:
    """The expiration time of the last of the given flags (N, T) in request order, or None.

    With ``upto``, only the flags before that index of ``fl.order`` count.
    """
    found = None
    for tok in fl.order[:upto]:
        if tok[0] in flag_bytes:
            found = _ttl(tok[1:])
    return found


def dispatch(session: Session, toks: list[bytes], out: list[bytes]) -> None:
    """Run one meta command (``toks[0]`` is ``mg``, ``ms``, ``md``, ``ma``, ``mn`` or ``me``)."""
    cmd = toks[0][1]
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
        out.append(wire.META_TOO_MANY_FLAGS if cmd == 0x67 else wire.META_TOO_MANY_FLAGS_MSDA)
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


# -- what replies show ------------------------------------------------------------------------


def _key_flag(key: bytes, binary: bool) -> bytes:
    """The ``k`` return flag: the key, or its base64 followed by ``b``."""
    return b" k" + base64.b64encode(key) + b" b" if binary else b" k" + key


def _in_base64(bits: int, via_b: bool, key: bytes) -> bool:
    """True if a found item's key is shown in base64 (see the module's APPSEC note): it was
    stored under a base64 key, or it was reached through one and holds a byte no token can."""
    return bool(bits & BINARY_KEY) or (via_b and not _NOT_IN_TOKENS.isdisjoint(key))


def _echo(fl: _Flags) -> bytes:
    """The O and k return flags of a reply without an item (k shows the key as requested)."""
    parts = []
    for tok in fl.order:
        o = tok[0]
        if o == _O:
            parts.append(b" " + tok)
        elif o == _k:
            parts.append(_key_flag(fl.key, fl.binary))
    return b"".join(parts)


def _remaining(exptime: int, now: int) -> bytes:
    """The t flag's value: -1 for no TTL, else the seconds left.

    NOTE: a TTL made negative by T in the same command shows as -1; memcached prints the
    difference as an unsigned number, which depends on its uptime.
    """
    return b"-1" if exptime == 0 else b"%d" % max(exptime - now, -1)


# -- mg ---------------------------------------------------------------------------------------


def _mg(session: Session, toks: list[bytes], out: list[bytes]) -> None:
    fl = _parse(toks, 2, wire.BAD_FORMAT)
    if fl.error is not None:
        out.append(fl.error)
        return
    store = session.store
    args = fl.tok
    key = fl.key
    ttl = _ttl(args[_T]) if _T in args else None
    if fl.long_opaque is not None:
        _mg_long_opaque(session, fl, ttl, out)
        return
    # N: on a miss, an empty item whose TTL is set by N and T in request order (the last wins)
    vivify = _ttl_of(fl, b"NT") if _N in args else None
    try:
        got = store.meta_get(key, ttl, _u not in args, vivify)
    except InvalidKey:
        got = None
    if session.ctx.observed:
        # memcached logs its lookup: a miss even when N then makes the item
        watch.item_get(session.ctx, key, None if got is None or got[6] else got, session.cfd)
    if got is None:
        if _q not in args:
            out.append(b"EN" + _echo(fl) + b"\r\n")
        return
    value, flags, cas, exptime, atime, bits, created = got
    now = store.now
    if created:
        exptime = 0  # what memcached's loop starts from: N and T below set it
    won = False
    parts = [b"VA %d" % len(value) if _v in args else _HD]
    for tok in fl.order:
        o = tok[0]
        if o == _T:  # the TTL changed here; later t flags see it
            exptime = absolute_expiry(_ttl(tok[1:]), now, store.wall_skew)
        elif o == _N:
            if created:
                exptime = absolute_expiry(_ttl(tok[1:]), now, store.wall_skew)
                won = True
        elif o == _R:  # win the recache if the TTL left is below the token
            recache = absolute_expiry(_ttl(tok[1:]), now, store.wall_skew)
            if not bits & WON and not created and exptime and exptime < recache:
                won = True
        elif o == _s:
            parts.append(b" s%d" % len(value))
        elif o == _t:
            parts.append(b" t" + _remaining(exptime, now))
        elif o == _c:
            parts.append(b" c%d" % cas)
        elif o == _f:
            parts.append(b" f%d" % flags)
        elif o == _l:
            parts.append(b" l%d" % (now - atime))
        elif o == _h:
            parts.append(b" h1" if bits & FETCHED else b" h0")
        elif o == _O:
            parts.append(b" " + tok)
        elif o == _k:
            parts.append(_key_flag(key, _in_base64(bits, fl.binary, key)))
    if bits & WON:
        parts.append(b" Z")
    if bits & STALE:
        parts.append(b" X")
        if not bits & WON:
            won = True  # a stale item's first reader wins the recache
    if won:
        parts.append(b" W")
        if not created:  # a vivified item was marked when it was made
            store.mark(key, WON)
    parts.append(b"\r\n")
    if _v in args:
        parts.append(value)
        parts.append(b"\r\n")
    out.append(b"".join(parts))


def _mg_long_opaque(session: Session, fl: _Flags, ttl: int | None, out: list[bytes]) -> None:
    """mg with an O token too long: memcached finds it while writing the reply.

    By then the item was looked up (or vivified), and the T or N flags before the O have set
    its TTL; nothing after happens: no fetch, no win token, and a hit is not counted (a miss is).
    """
    store = session.store
    key = fl.key
    before = fl.long_opaque
    out.append(wire.META_OPAQUE_TOO_LONG)
    try:
        if session.ctx.observed:  # memcached logs its lookup before it finds the long O
            watch.lookup(session.ctx, store, key, session.cfd)
        if store.peek(key) is not None:
            if _ttl_of(fl, b"T", before) is not None:
                store.mark(key, exptime=ttl)
            return
        if _N in fl.tok:
            try:
                # a new item's TTL starts at 0; only the N and T before the O set it
                if store.vivify(key, b"", _ttl_of(fl, b"NT", before) or 0):
                    return
            except (ItemTooLarge, OutOfMemory):
                pass
        store.meta_get(key, ttl, False)  # the miss is counted before the EN line fails
    except InvalidKey:
        pass


# -- ms ---------------------------------------------------------------------------------------

_MS_MODES = {
    None: MODE_SET,
    b"S": MODE_SET,
    b"E": MODE_ADD,
    b"A": MODE_APPEND,
    b"P": MODE_PREPEND,
    b"R": MODE_REPLACE,
}


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
    mode = _MS_MODES.get(fl.tok.get(_M))
    if error is None:
        # memcached notes a long opaque, then checks the mode (whose error wins), then fails
        if mode is None:
            error = wire.META_MS_MODE
        elif fl.long_opaque is not None:
            error = wire.META_OPAQUE_TOO_LONG
    if error is None and len(fl.key) + vlen + ITEM_OVERHEAD > session.store.max_item_size:
        session.ctx.counters["store_too_large"] += 1
        session._drop(fl.key)  # memcached drops the old value whatever the mode
        error = ItemTooLarge.wire
    if error is not None:
        session._swallow = vlen + 2
        out.append(error)
        return
    session._need = vlen + 2
    session._pending = (PENDING_MS, fl, mode)


def complete_ms(session: Session, pending: tuple[Any, ...], block: bytes, out: list[bytes]) -> None:
    """Store the data block of an ms and answer it."""
    _tag, fl, mode = pending
    if block[-2:] != b"\r\n":
        out.append(wire.BAD_DATA_CHUNK)  # meta commands always report errors
        return
    args = fl.tok
    flags = parse_u32(args[_F]) if _F in args else 0
    exptime = _ttl(args[_T]) if _T in args else 0
    compare = parse_u64(args[_C]) if _C in args else 0
    assert flags is not None and compare is not None
    if _C in args and mode in (MODE_SET, MODE_REPLACE):
        mode = MODE_CAS  # C makes set and replace a cas; add ignores it; append compares it
    stale = _I in args and mode == MODE_CAS
    observed = session.ctx.observed
    if observed:
        session.observe_lookup(fl.key)
    try:
        result, cas = session.store.meta_update(
            mode, fl.key, block[:-2], flags, exptime, compare, binary=fl.binary, stale=stale
        )
    except StoreError as exc:
        session.count_error(exc)
        out.append(exc.wire)
        if observed:
            watch.item_store(
                session.ctx, session.store, fl.key, mode, exc, exptime, flags, len(block) - 2, session.cfd
            )
        return
    if observed:
        watch.item_store(
            session.ctx, session.store, fl.key, mode, result, exptime, flags, len(block) - 2, session.cfd
        )
    if result is Result.STORED and _q in args:
        return
    parts = [_MS_CODES[result]]
    for tok in fl.order:
        o = tok[0]
        if o == _O:
            parts.append(b" " + tok)
        elif o == _k:
            parts.append(_key_flag(fl.key, fl.binary))
        elif o == _c:
            parts.append(b" c%d" % cas)
    parts.append(b"\r\n")
    out.append(b"".join(parts))


# -- md ---------------------------------------------------------------------------------------


def _md(session: Session, toks: list[bytes], out: list[bytes]) -> None:
    fl = _parse(toks, 2, wire.BAD_FORMAT)
    if fl.error is not None:
        out.append(wire.META_INVALID_OR_DUPLICATE)
        return
    if fl.long_opaque is not None:
        out.append(wire.META_OPAQUE_TOO_LONG)
        return
    args = fl.tok
    # I: keep the item but make it stale under a new CAS (and T's TTL); the next mg wins it
    if session.ctx.observed:
        session.observe_lookup(fl.key)
    try:
        result = session.store.meta_delete(
            fl.key,
            parse_u64(args[_C]) if _C in args else None,
            _I in args,
            _ttl(args[_T]) if _T in args and _I in args else None,
        )
    except InvalidKey:
        result = Result.NOT_FOUND
    code = _MD_CODES[result]
    if code == _HD and _q in args:
        return  # q hides success only
    out.append(code + _echo(fl) + b"\r\n")


# -- ma ---------------------------------------------------------------------------------------

_MA_MODES = {b"I": True, b"+": True, b"D": False, b"-": False}


def _ma(session: Session, toks: list[bytes], out: list[bytes]) -> None:
    fl = _parse(toks, 2, wire.BAD_FORMAT)
    if fl.error is not None:
        out.append(wire.META_INVALID_OR_DUPLICATE)
        return
    args = fl.tok
    incr = _MA_MODES.get(args[_M]) if _M in args else True
    if incr is None:
        out.append(wire.META_MA_MODE)
        return
    key = fl.key
    store = session.store
    delta = parse_u64(args[_D]) if _D in args else 1
    compare = parse_u64(args[_C]) if _C in args else 0
    assert delta is not None and compare is not None
    # T and N act while memcached writes the reply, which stops at an O token too long
    upto = fl.long_opaque
    ttl = _ttl_of(fl, b"T", upto)
    created = False
    if session.ctx.observed:
        session.observe_lookup(key)
    try:
        try:
            result, number, cas, exptime = store.meta_delta(key, incr, delta, compare, _N not in args, ttl)
        except InvalidKey:
            result, number, cas, exptime = Result.NOT_FOUND, 0, 0, 0
        if result is Result.NOT_FOUND and _N in args:
            initial = parse_u64(args[_J]) if _J in args else 0
            assert initial is not None
            number_bytes = b"%d" % initial
            vivify_ttl = _ttl_of(fl, b"NT", upto) or 0
            if session.ctx.observed:
                session.observe_lookup(key)  # memcached stores the new counter as an add
            try:
                cas = store.vivify(key, number_bytes, vivify_ttl)
            except (ItemTooLarge, OutOfMemory) as exc:
                if session.ctx.observed:
                    watch.item_store(
                        session.ctx, store, key, MODE_ADD, exc, vivify_ttl, 0, len(number_bytes), session.cfd
                    )
                out.append(wire.META_VIVIFY_NO_MEMORY)  # reported even under q
                return
            if session.ctx.observed:
                watch.item_store(
                    session.ctx,
                    store,
                    key,
                    MODE_ADD,
                    Result.STORED,
                    vivify_ttl,
                    0,
                    len(number_bytes),
                    session.cfd,
                )
            result, number, exptime, created = Result.STORED, initial, 0, True
    except NonNumericValue:
        out.append(_NON_NUMERIC)
        return
    except (ItemTooLarge, OutOfMemory):
        out.append(wire.META_DELTA_NO_MEMORY)  # the longer number did not fit (-I or -m)
        return
    if upto is not None:
        out.append(wire.META_OPAQUE_TOO_LONG)
        return
    if result is not Result.STORED:
        out.append((b"NF" if result is Result.NOT_FOUND else b"EX") + _echo(fl) + b"\r\n")
        return
    if _q in args and not created:
        return  # q hides success (HD or VA), but memcached still answers a vivification
    now = store.now
    digits = b"%d" % number
    parts = [b"VA %d" % len(digits) if _v in args else _HD]
    for tok in fl.order:
        o = tok[0]
        if o == _c:
            parts.append(b" c%d" % cas)
        elif o == _t:
            parts.append(b" t" + _remaining(exptime, now))
        elif o == _T:
            exptime = absolute_expiry(_ttl(tok[1:]), now, store.wall_skew)
        elif o == _N:
            if created:
                exptime = absolute_expiry(_ttl(tok[1:]), now, store.wall_skew)
        elif o == _O:
            parts.append(b" " + tok)
        elif o == _k:
            parts.append(_key_flag(key, fl.binary))
    parts.append(b"\r\n")
    if _v in args:
        parts.append(digits + b"\r\n")
    out.append(b"".join(parts))


# -- me ---------------------------------------------------------------------------------------


def _me(session: Session, toks: list[bytes], out: list[bytes]) -> None:
    key = toks[1]
    binary = len(toks) > 2 and toks[2] == b"b"
    if binary:
        key = decode_base64_key(key)
        if not key:
            out.append(wire.BAD_FORMAT)
            return
    try:
        got = session.store.peek(key)
    except InvalidKey:
        got = None
    if session.ctx.observed:
        watch.item_get(session.ctx, key, got, session.cfd)
    session.ctx.counters["cmd_meta"] += 1  # memcached's meta_cmds counts me only
    if got is None:
        out.append(wire.EN)
        return
    value, flags, cas, exptime, atime, bits = got
    now = session.store.now
    shown = base64.b64encode(key) if _in_base64(bits, binary, key) else key
    # NOTE: as memcached prints them: exp is now - exptime (negative while the item lives), and
    # size is memcached's item size (48-byte header, 8-byte CAS, 4 bytes of client flags unless
    # they are 0, key + NUL, value + CRLF).
    size = len(key) + len(value) + 59 + (4 if flags else 0)
    out.append(
        b"ME %s exp=%d la=%d cas=%d fetch=%s cls=%d size=%d\r\n"
        % (
            shown,
            -1 if exptime == 0 else now - exptime,
            now - atime,
            cas,
            b"yes" if bits & FETCHED else b"no",
            report_class(chunk_size(len(key), len(value), flags)),  # stats items' class
            size,
        )
    )
