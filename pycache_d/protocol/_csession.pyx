# cython: language_level=3, boundscheck=False, wraparound=False, always_allow_keywords=False
"""The compiled memcached session: hot commands parsed and answered in C, the rest in Python.

Text and binary (:mod:`pycache_d.protocol.binary`) alike: on a binary connection, once it is
authenticated (or needs no authentication), get/getq/getk/getkq, gat/gatq/gatk/gatkq,
set/add/replace and their quiet forms without a CAS, delete(q) without a CAS and noop are
answered here when they are well formed; anything else goes to the Python binary session, from
that request on, until it is idle again.

The fast path handles the commands that make up nearly all traffic (get, gets, gat, gats, set,
add, replace, append, prepend, cas, delete, incr, decr, and mg/ms with their common flags) when
their line is plainly well formed:
single-space-separated tokens, legal keys, plain decimal numbers, a complete data block ending
in \\r\\n and an item within the size limit. It drives the C store directly and writes replies
into one C buffer, so a command creates no Python object; one bytes object is returned per feed.

Everything else (other commands, any oddity, any error path) is handed, from the start of its
line onwards, to a pure-Python :class:`~pycache_d.protocol.session.Session` over the same store and
context, which then owns the connection's input until it is idle again. That session is the
definition of the protocol; this one only takes the shortcuts it can prove equal, and the
differential tests feed both the same bytes and demand the same replies.

APPSEC: input kept between feeds is bounded like the Python session's: one partial line of at
most MAX_LINE bytes, or one storage command with its partial data block, whose item is known to
fit within the store's max_item_size.

Memory: an idle session holds no buffer. Input is kept (``pending``) only while a command is
incomplete, and freed once it is answered. Replies are built in one output buffer that all
sessions share (``SHARED_OUT``): a feed borrows it and the caller gives it back once it has
copied the reply out (``out_sent``), before any other session can run; the Python session is
never called while it is borrowed. A feed that finds it borrowed (a session fed from inside
another's feed, or after another's feed raised) builds in a buffer of its own, freed after. The Python
session a line can be handed to is made the first time one is.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memchr, memcmp, memcpy, memmove

from pycache_d.store._native cimport PinnedValue, Store, pin_value
from pycache_d.store._store_c cimport *

from . import binary as _binary
from . import context as _context
from . import session as _session
from .context import ServerContext
from pycache_d.store.errors import ItemTooLarge, NonNumericValue, OutOfMemory
from base64 import b64encode as _b64encode

cdef size_t MAX_LINE = _session.MAX_LINE
cdef size_t REPLY_BUDGET = _session.REPLY_BUDGET
cdef size_t MAX_TOKENS = 8  # longest fast-path command: cas <key> <flags> <exptime> <bytes> <cas> noreply

cdef enum:
    NEED_MORE = -1  # the command's data block is not complete yet
    DELEGATE = -2   # hand this line and all after it to the Python session
    CUT = -4        # a multi-get reached REPLY_BUDGET: its other keys go to the Python session

cdef int buf_reserve(buffer *b, size_t extra) except -1:
    cdef size_t cap
    cdef char *grown
    if b.len + extra <= b.cap:
        return 0
    cap = b.cap * 2 if b.cap else 4096
    if cap < b.len + extra:
        cap = b.len + extra
    grown = <char *>realloc(b.data, cap)
    if grown == NULL:
        raise MemoryError()
    b.data = grown
    b.cap = cap
    return 0


cdef inline void release(buffer *b) noexcept:
    """Give a buffer back entirely."""
    free(b.data)
    b.data = NULL
    b.len = 0
    b.cap = 0


cdef inline void shrink(buffer *b, size_t keep=65536):
    """Give back a buffer that grew past ``keep`` for one large reply or request."""
    cdef char *smaller
    if b.cap > keep and b.len <= 4096:
        smaller = <char *>realloc(b.data, 4096)
        if smaller != NULL:
            b.data = smaller
            b.cap = 4096


# -- data blocks of large storage commands ---------------------------------------------------------
# PERF: a set whose data block spans reads is kept in a buffer reserved for the whole command at
# once (no growth by doubling, no realloc/mremap per request), taken from and given back to a
# small pool that all sessions share: BLOCK_POOL_N buffers of at most BLOCK_POOL_MAX bytes
# each, so the pool holds at most 8 x 2 MiB while no set is in flight, and a connection between
# requests holds none.
DEF BLOCK_POOL_N = 8
cdef size_t BLOCK_POOL_MAX = 2 * 1024 * 1024
cdef size_t BLOCK_MIN = 65536  # smaller blocks grow as any kept input does
cdef buffer BLOCK_POOL[BLOCK_POOL_N]
cdef int BLOCK_POOLED = 0


cdef int block_take(buffer *b, size_t size) except -1:
    """Make the empty ``b`` a buffer of at least ``size`` bytes: a pooled one if one is large
    enough, else a new one rounded up to 64 KiB (so that similar sizes reuse it)."""
    cdef int i, best = -1
    global BLOCK_POOLED
    for i in range(BLOCK_POOLED):
        if BLOCK_POOL[i].cap >= size and (best < 0 or BLOCK_POOL[i].cap < BLOCK_POOL[best].cap):
            best = i
    free(b.data)
    if best >= 0:
        b.data = BLOCK_POOL[best].data
        b.cap = BLOCK_POOL[best].cap
        BLOCK_POOLED -= 1
        BLOCK_POOL[best] = BLOCK_POOL[BLOCK_POOLED]
    else:
        size = (size + 65535) & ~(<size_t>65535)
        b.data = <char *>malloc(size)
        if b.data == NULL:
            b.cap = 0
            raise MemoryError()
        b.cap = size
    b.len = 0
    return 0


cdef void block_give(buffer *b) noexcept:
    """Give back the (empty) buffer of ``b``: to the pool if it is a block buffer and there is
    room, replacing a smaller one if the pool is full."""
    cdef int i, smallest = 0
    global BLOCK_POOLED
    if b.cap >= BLOCK_MIN and b.cap <= BLOCK_POOL_MAX:
        if BLOCK_POOLED < BLOCK_POOL_N:
            BLOCK_POOL[BLOCK_POOLED].data = b.data
            BLOCK_POOL[BLOCK_POOLED].cap = b.cap
            BLOCK_POOLED += 1
            b.data = NULL
        else:
            for i in range(1, BLOCK_POOL_N):
                if BLOCK_POOL[i].cap < BLOCK_POOL[smallest].cap:
                    smallest = i
            if BLOCK_POOL[smallest].cap < b.cap:
                BLOCK_POOL[smallest].data, b.data = b.data, BLOCK_POOL[smallest].data
                BLOCK_POOL[smallest].cap = b.cap
    release(b)


cdef inline int buf_put(buffer *b, const char *p, size_t n) except -1:
    buf_reserve(b, n)
    memcpy(b.data + b.len, p, n)
    b.len += n
    return 0


cdef inline int buf_u64(buffer *b, uint64_t v) except -1:
    cdef char tmp[24]
    cdef int i = 24
    while True:
        i -= 1
        tmp[i] = <char>(48 + v % 10)
        v //= 10
        if v == 0:
            break
    return buf_put(b, tmp + i, 24 - i)


cdef inline bint plain_number(const char *p, size_t n, size_t max_digits, uint64_t *out):
    """Parse a token of 1..max_digits ASCII digits; anything else is left to the slow path,
    whose C-exact parser accepts more (signs, whitespace, wrap-around)."""
    cdef uint64_t v = 0
    cdef size_t i
    if n == 0 or n > max_digits:
        return False
    for i in range(n):
        if p[i] < 48 or p[i] > 57:
            return False
        v = v * 10 + <uint64_t>(p[i] - 48)
    out[0] = v
    return True


cdef inline bint plain_key(const char *p, size_t n):
    # Tokens hold no spaces; the store takes any other byte, as memcached does.
    return 0 < n <= STORE_MAX_KEY


cdef inline size_t skip_spaces(const char *p, size_t i, size_t end):
    while i < end and p[i] == 32:
        i += 1
    return i


cdef inline size_t token_end(const char *p, size_t i, size_t end):
    while i < end and p[i] != 32:
        i += 1
    return i


cdef cmd_kind classify(const char *p, size_t n):
    if n == 2:
        if p[0] == 109 and p[1] == 103:  # mg
            return C_MG
        if p[0] == 109 and p[1] == 115:  # ms
            return C_MS
    elif n == 3:
        if memcmp(p, b"get", 3) == 0:
            return C_GET
        if memcmp(p, b"set", 3) == 0:
            return C_SET
        if memcmp(p, b"add", 3) == 0:
            return C_ADD
        if memcmp(p, b"cas", 3) == 0:
            return C_CAS
        if memcmp(p, b"gat", 3) == 0:
            return C_GAT
    elif n == 4:
        if memcmp(p, b"gets", 4) == 0:
            return C_GETS
        if memcmp(p, b"gats", 4) == 0:
            return C_GATS
        if memcmp(p, b"incr", 4) == 0:
            return C_INCR
        if memcmp(p, b"decr", 4) == 0:
            return C_DECR
    elif n == 6:
        if memcmp(p, b"delete", 6) == 0:
            return C_DELETE
        if memcmp(p, b"append", 6) == 0:
            return C_APPEND
    elif n == 7:
        if memcmp(p, b"replace", 7) == 0:
            return C_REPLACE
        if memcmp(p, b"prepend", 7) == 0:
            return C_PREPEND
    return C_OTHER


# The meta flags the compiled mg and ms answer themselves, as bits of meta_flags()'s result.
cdef enum:
    MF_O = 1 << 0   # opaque, echoed whole
    MF_V = 1 << 1
    MF_K = 1 << 2
    MF_F = 1 << 3   # mg: return the client flags
    MF_S = 1 << 4
    MF_C = 1 << 5
    MF_LT = 1 << 6  # mg: t, the TTL left
    MF_Q = 1 << 7
    MF_T = 1 << 8   # ms: T<seconds>
    MF_FN = 1 << 9  # ms: F<client flags>


cdef inline uint32_t meta_flag(char o, bint with_arg) noexcept:
    """The bit of one meta flag the fast paths know (with_arg: the token has more than the
    letter), or 0."""
    if with_arg:
        return MF_O if o == 79 else MF_T if o == 84 else MF_FN if o == 70 else 0
    if o == 118:
        return MF_V
    if o == 107:
        return MF_K
    if o == 102:
        return MF_F
    if o == 115:
        return MF_S
    if o == 99:
        return MF_C
    if o == 116:
        return MF_LT
    if o == 113:
        return MF_Q
    return MF_O if o == 79 else 0


cdef int64_t meta_flags(const char **tok, size_t *tlen, size_t start, size_t ntok, uint32_t allowed,
                        uint64_t *ttl, uint64_t *client_flags) noexcept:
    """The flags tok[start:ntok] of an mg or ms, as MF_* bits, if each is among ``allowed``,
    comes once and is well-formed for the fast path (an O token of at most meta.py's
    _MAX_OPAQUE bytes, T and F with plain numbers); else -1, and meta.py decides (and names
    any error). T's and F's numbers go to ``ttl`` and ``client_flags``."""
    cdef uint32_t seen = 0, bit
    cdef size_t i
    for i in range(start, ntok):
        bit = meta_flag(tok[i][0], tlen[i] > 1) & allowed
        if bit == 0 or seen & bit:
            return -1
        if bit == MF_O and tlen[i] > 32:
            return -1
        if bit == MF_T and not plain_number(tok[i] + 1, tlen[i] - 1, 9, ttl):
            return -1
        if bit == MF_FN and not plain_number(tok[i] + 1, tlen[i] - 1, 9, client_flags):
            return -1
        seen |= bit
    return seen


cdef tuple STORE_REPLIES = ()  # Result -> reply line, filled in at import

# -- the binary protocol's hot requests (binary.py is the specification) ------------------------

cdef enum:
    B_GET = 0x00
    B_SET = 0x01
    B_ADD = 0x02
    B_REPLACE = 0x03
    B_DELETE = 0x04
    B_GETQ = 0x09
    B_NOOP = 0x0A
    B_GETK = 0x0C
    B_GETKQ = 0x0D
    B_SETQ = 0x11
    B_ADDQ = 0x12
    B_REPLACEQ = 0x13
    B_GAT = 0x1D
    B_GATQ = 0x1E
    B_GATK = 0x23
    B_GATKQ = 0x24
    B_DELETEQ = 0x14

cdef bytes NOT_FOUND_TEXT = _binary.ERROR_TEXT[_binary.KEY_ENOENT]
cdef bytes EXISTS_TEXT = _binary.ERROR_TEXT[_binary.KEY_EEXISTS]
cdef bytes TOO_LARGE_TEXT = _binary.ERROR_TEXT[_binary.E2BIG]
cdef bytes NOT_STORED_TEXT = _binary.ERROR_TEXT[_binary.NOT_STORED]
cdef bytes NO_MEMORY_TEXT = _binary.NO_MEMORY_ITEM
cdef int64_t EXPTIME_MAX = 2 ** 31 - 1


cdef inline int64_t bin_exptime(uint32_t raw) noexcept:
    """A binary request's expiry as the store takes it (binary.py's _exptime): unsigned, and
    past 2**31 - 1 held there."""
    return raw if raw <= EXPTIME_MAX else EXPTIME_MAX


cdef inline uint32_t be32(const char *p) noexcept:
    cdef const uint8_t *u = <const uint8_t *>p
    return (<uint32_t>u[0] << 24) | (<uint32_t>u[1] << 16) | (<uint32_t>u[2] << 8) | u[3]


cdef inline uint64_t be64(const char *p) noexcept:
    return (<uint64_t>be32(p) << 32) | be32(p + 4)


cdef inline void put_be32(char *p, uint32_t v) noexcept:
    p[0] = <char>(v >> 24)
    p[1] = <char>(v >> 16)
    p[2] = <char>(v >> 8)
    p[3] = <char>v


cdef int bin_header(buffer *out, const char *request, uint16_t keylen, uint8_t extlen, uint16_t status,
                    uint32_t bodylen, uint64_t cas) except -1:
    """Append a response header answering the request header at ``request`` (its opcode and
    opaque are echoed, as memcached does)."""
    cdef char *h
    buf_reserve(out, 24)
    h = out.data + out.len
    h[0] = <char>0x81
    h[1] = request[1]
    h[2] = <char>(keylen >> 8)
    h[3] = <char>keylen
    h[4] = <char>extlen
    h[5] = 0
    h[6] = <char>(status >> 8)
    h[7] = <char>status
    put_be32(h + 8, bodylen)
    memcpy(h + 12, request + 12, 4)
    put_be32(h + 16, <uint32_t>(cas >> 32))
    put_be32(h + 20, <uint32_t>cas)
    out.len += 24
    return 0


# True while some server has watchers or ``stats detail on`` (context.OBSERVE_HOOKS): every
# command then goes to the Python session, which reports them. PERF: a C global, read per feed.
cdef bint OBSERVED = False


def _set_observed(bint on):
    global OBSERVED
    OBSERVED = on


_context.OBSERVE_HOOKS.append(_set_observed)

# The reply buffer every session builds its replies in (see the module docstring), and the
# session whose feed has it now (NULL: nobody's).
cdef buffer SHARED_OUT
cdef void *SHARED_OUT_OWNER = NULL


cdef class NativeSession:
    """A memcached text-protocol session over a native store, with the same API as Session."""

    # Fields: see _csession.pxd.

    def __cinit__(self, *args, **kwargs):
        self.out = &self.own
        self.cfd = -1

    def __init__(self, Store store not None, ctx=None):
        self.store = store
        self.s = &store._s
        self.ctx = ctx if ctx is not None else ServerContext(store)

    def __dealloc__(self):
        global SHARED_OUT_OWNER
        if SHARED_OUT_OWNER == <void *>self:
            SHARED_OUT_OWNER = NULL
        free(self.pending.data)
        free(self.own.data)
        self.parts = None  # unpins what a feed that raised left

    @property
    def buffered(self):
        """Bytes of memory the session's own buffers hold (0 when idle): kept input, and replies."""
        return self.pending.cap + self.own.cap

    @property
    def closing(self):
        """True once the connection must be closed after the bytes last returned are sent."""
        return self._closing

    @property
    def quit(self):
        """True when it closes because the client said quit (the Python session ran it)."""
        return self.slow is not None and self.slow.quit

    @property
    def more(self):
        """True when buffered input can be answered without more from the client (a feed
        stopped at REPLY_BUDGET): send the reply, then call ``feed(b"")``."""
        return self._more or (self.slow_active and self.slow.more)

    @property
    def commands(self):
        """Commands completed so far (a line, with its data block if it has one); see Session."""
        return self.done + (self.slow.commands if self.slow is not None else 0)

    @property
    def idle(self):
        """True when no partial command or data block is held between feeds."""
        return self.pending.len == 0 and (not self.slow_active or self.slow.idle)

    @property
    def authenticated(self):
        """False while the server wants credentials this client has not given."""
        if self.slow is None:  # plain text that needed none, or nothing read yet
            return self.ctx.auth is None or (self.chosen and not self.gated)
        return self.slow.authenticated

    @property
    def loggable(self):
        """True when the client's bytes may be logged (see Session.loggable)."""
        if self.slow is None:
            return self.ctx.auth is None
        return self.slow.loggable

    def close(self):
        """The connection is gone: end what the Python session ran for it (dump, watch)."""
        if self.slow is not None:
            self.slow.close()

    def feed(self, data):
        """Consume bytes read from the client; return the reply bytes to send (possibly b"")."""
        if type(data) is not bytes:
            data = bytes(data)
        if self._closing:
            return b""
        if not self.chosen and data:
            self._choose(<uint8_t>PyBytes_AS_STRING(data)[0])
        if self.slow_active or (OBSERVED and self.chosen and self.pending.len == 0):
            return self._to_slow(data)  # PERF: before feed_ptr, which would copy ``data``
        reply = self.feed_ptr(PyBytes_AS_STRING(data), <size_t>PyBytes_GET_SIZE(data))
        return self._take_out() if reply is None else reply

    cdef object feed_ptr(self, const char *data, size_t size):
        """feed() of ``size`` bytes at ``data``, which need not outlive the call.

        Returns None when the whole reply was built in ``out`` (the caller sends
        ``out.data[:out.len]`` and then calls ``out_sent()``); else the reply as bytes.
        """
        if self._closing:
            return b""
        if not self.chosen and size:
            self._choose(<uint8_t>data[0])
        if self.slow_active or (OBSERVED and self.chosen and self.pending.len == 0):
            return self._to_slow(PyBytes_FromStringAndSize(data, size))
        self.store._tick()
        self._borrow_out()
        return self._feed_ptr(data, size)

    cdef object _feed_ptr(self, const char *data, size_t size):
        cdef const char *p
        cdef size_t n
        cdef Py_ssize_t pos
        if self.pending.len:
            buf_put(&self.pending, data, size)
            p = self.pending.data
            n = self.pending.len
        else:
            p = data
            n = size
        self.cut_at = 0
        self._more = False
        self.want = 0
        pos = self._run_binary(p, n) if self.binary else self._run(p, n)
        if pos < 0:
            if self.cut_at:
                return self._flush_and_cut(p, n)
            # Delegated: everything from -pos - 1 on went to the Python session.
            return self._flush_and_delegate(p, n, <size_t>(-pos - 1))
        self._keep(p, <size_t>pos, n)
        return None

    cdef int _keep(self, const char *p, size_t pos, size_t n) except -1:
        """Keep p[pos:n], the start of a command not complete yet, for the next feed."""
        cdef size_t rest = n - pos
        cdef buffer old
        if rest and self.want >= BLOCK_MIN and self.pending.cap < self.want:
            # PERF: a large data block to come: a buffer for all of it, once (see block_take)
            old = self.pending
            self.pending.data = NULL
            self.pending.len = self.pending.cap = 0
            if p != old.data:
                block_give(&old)
            try:
                block_take(&self.pending, self.want)
                buf_put(&self.pending, p + pos, rest)
            finally:
                if p == old.data:
                    old.len = 0
                    block_give(&old)
            return 0
        if p == self.pending.data:
            memmove(self.pending.data, self.pending.data + pos, rest)
            self.pending.len = rest
        elif rest:
            self.pending.len = 0
            buf_put(&self.pending, p + pos, rest)
        if self.pending.len:
            if not self.want:
                shrink(&self.pending)  # (a block buffer stays until its command is answered)
        elif self.pending.data != NULL:
            block_give(&self.pending)  # idle: no buffer kept
        return 0

    cdef inline void _borrow_out(self) noexcept:
        # NOTE: a feed that raised keeps it until this session feeds again or goes (its
        # connection is closed then): meanwhile others build in buffers of their own.
        global SHARED_OUT_OWNER
        if SHARED_OUT_OWNER == NULL or SHARED_OUT_OWNER == <void *>self:
            SHARED_OUT_OWNER = <void *>self
            self.out = &SHARED_OUT
        else:
            self.out = &self.own
        self.out.len = 0
        self.parts = None
        self.pinned = 0

    cdef void out_sent(self) noexcept:
        """``out`` was sent: give the buffer back (see the module docstring)."""
        global SHARED_OUT_OWNER
        self.out.len = 0
        self.parts = None  # the caller holds what it sends
        self.pinned = 0
        if self.out == &SHARED_OUT:
            # PERF: one buffer for the whole process: it keeps what a full reply budget needs,
            # so replies of many small values do not realloc it up and down every feed.
            shrink(&SHARED_OUT, 2 * REPLY_BUDGET)
            SHARED_OUT_OWNER = NULL
            self.out = &self.own
        elif self.own.data != NULL:
            release(&self.own)

    cdef bytes _take_out(self):
        """The reply built in ``out``, as bytes; ``out`` is emptied and, if it grew for a
        large reply, given back, so an idle connection keeps no more than 4 KiB of it."""
        if self.parts is not None:
            return b"".join(self.take_parts())  # a copy: the caller wants bytes
        reply = PyBytes_FromStringAndSize(self.out.data, self.out.len)
        self.out_sent()
        return reply

    cdef list take_parts(self):
        """The reply built in ``out`` and ``parts``, as bytes and pinned values in order, to be
        sent with one sendmsg; ``out`` is given back as by out_sent."""
        cdef list parts = self.parts
        cdef list reply = []
        cdef Py_ssize_t i, at, start = 0
        for i in range(0, len(parts), 2):
            at = parts[i]
            if at > start:
                reply.append(PyBytes_FromStringAndSize(self.out.data + start, at - start))
            reply.append(parts[i + 1])
            start = at
        if <size_t>start < self.out.len:
            reply.append(PyBytes_FromStringAndSize(self.out.data + start, self.out.len - start))
        self.out_sent()
        return reply

    cdef char *block_room(self, Py_ssize_t *room) noexcept:
        """Where the rest of a large data block being kept may be read straight to (the
        socket's bytes then land in the block buffer, copied once more into the item), or
        NULL. ``room`` is what the command still lacks: no byte of the next one goes there."""
        if self.want < BLOCK_MIN or self.slow_active or self._closing or self.pending.len >= self.want:
            return NULL
        if self.pending.cap < self.want:
            return NULL
        room[0] = <Py_ssize_t>(self.want - self.pending.len)
        return self.pending.data + self.pending.len

    cdef void block_filled(self, Py_ssize_t n) noexcept:
        """``n`` bytes were read to block_room(): they are kept input now (feed b"" next)."""
        self.pending.len += <size_t>n

    cdef int _value(self, item *it) except -1:
        """Append ``it``'s value to the reply: by reference (pinned) when it is large and the
        pin limit allows, else copied."""
        cdef PinnedValue v
        if it.nbytes >= STORE_PIN_MIN:
            v = pin_value(self.store, it)
            if v is not None:
                if self.parts is None:
                    self.parts = []
                self.parts.append(<Py_ssize_t>self.out.len)
                self.parts.append(v)
                self.pinned += it.nbytes
                return 0
        return buf_put(self.out, item_value(it), it.nbytes)

    cdef bytes _flush_and_delegate(self, const char *p, size_t n, size_t start):
        head = self._take_out()
        rest = PyBytes_FromStringAndSize(p + start, n - start)
        release(&self.pending)
        return head + self._to_slow(rest)

    cdef bytes _flush_and_cut(self, const char *p, size_t n):
        """Answer what the fast path answered; leave the rest of the multi-get it cut at the
        budget, and the input after it, to the Python session's next feed."""
        head = self._take_out()
        # The same command (get, gets, or gat/gats with its exptime) for the keys left.
        rest = (PyBytes_FromStringAndSize(p + self.cut_cmd, self.cut_keys - self.cut_cmd) + b" "
                + PyBytes_FromStringAndSize(p + self.cut_at, n - self.cut_at))
        release(&self.pending)
        self._slow().push(rest)
        self.slow_active = True
        return head

    cdef void _choose(self, uint8_t first) noexcept:
        """The connection's first byte chooses, as memcached's does: binary (0x80), or a text
        client the server wants credentials from, are the Python session's from the start
        (APPSEC: it checks the credentials, and no shortcut here may bypass it; it hands an
        authenticated client back, see _to_slow); plain text stays here, and costs no Python
        session until a line needs one."""
        self.chosen = True
        self.gated = first == 0x80 or self.ctx.auth is not None
        self.slow_active = self.gated

    cdef object _slow(self):
        """The Python session that lines the fast path does not take go to (made at first use)."""
        if self.slow is None:
            self.slow = _session.Session(self.store, self.ctx)
            self.slow.cfd = self.cfd
            if not self.gated:
                # Text, chosen here with no credentials wanted: what reaches the Python session
                # is a command line, never a first byte to choose by.
                self.slow.gated = False
        return self.slow

    cdef bytes _to_slow(self, data):
        slow = self._slow()
        cdef bytes reply = slow.feed(data)
        self._closing = slow.closing
        if slow.gated:
            # APPSEC: the binary fast path only once the Python session says it is authenticated.
            self.binary = slow.binary_ready
            self.slow_active = not self.binary
        else:
            self.slow_active = not slow.idle
        return reply

    cdef Py_ssize_t _run_binary(self, const char *p, size_t n) except? -3:
        """Answer the hot binary requests at the start of p[:n]; return where the unconsumed
        input starts, or -(start + 1) when the input from start on must go to the Python session."""
        cdef size_t pos = 0
        cdef Py_ssize_t r
        while pos < n:
            r = self._bin_request(p, pos, n)
            if r == NEED_MORE:
                break
            if r == DELEGATE:
                return -<Py_ssize_t>pos - 1
            pos = <size_t>r
            if self.out.len + self.pinned >= REPLY_BUDGET:
                self._more = pos < n  # the rest waits for the next feed (see REPLY_BUDGET)
                break
        return <Py_ssize_t>pos

    cdef Py_ssize_t _bin_request(self, const char *p, size_t pos, size_t n) except? -3:
        """Answer the request at p[pos:] if it is a hot one and complete; see binary.py for
        what each check stands for (any request failing one is the Python session's)."""
        cdef const char *h = p + pos
        cdef uint8_t op
        cdef uint16_t keylen
        cdef uint8_t extlen
        cdef uint32_t bodylen, flags
        cdef uint64_t cas, new_cas = 0
        cdef size_t vlen, total
        cdef const char *key
        cdef item *it
        cdef buffer *out = self.out
        cdef bint quiet, with_key, touch
        cdef int rc, mode
        if n - pos < 24:
            return NEED_MORE
        if <uint8_t>h[0] != 0x80:
            return DELEGATE
        op = <uint8_t>h[1]
        keylen = (<uint16_t><uint8_t>h[2] << 8) | <uint8_t>h[3]
        extlen = <uint8_t>h[4]
        bodylen = be32(h + 8)
        cas = be64(h + 16)
        if op == B_NOOP:
            if keylen or extlen or bodylen:
                return DELEGATE
            bin_header(out, h, 0, 0, 0, 0, 0)
            return <Py_ssize_t>(pos + 24)
        if keylen == 0 or keylen > STORE_MAX_KEY or <uint32_t>keylen + extlen > bodylen:
            return DELEGATE
        total = 24 + <size_t>bodylen
        key = h + 24 + extlen
        touch = op == B_GAT or op == B_GATQ or op == B_GATK or op == B_GATKQ
        if op == B_GET or op == B_GETQ or op == B_GETK or op == B_GETKQ or touch:
            # gat's 4 bytes of extras are its expiry; surplus body bytes (read as the next
            # request, as memcached does) are the Python session's.
            if extlen != (4 if touch else 0) or bodylen != <uint32_t>keylen + extlen:
                return DELEGATE
            if n - pos < total:
                return NEED_MORE
            quiet = op == B_GETQ or op == B_GETKQ or op == B_GATQ or op == B_GATKQ
            with_key = op == B_GETK or op == B_GETKQ or op == B_GATK or op == B_GATKQ
            if touch:
                it = store_gat(self.s, key, keylen, bin_exptime(be32(h + 24)))
            else:
                it = store_get(self.s, key, keylen)
            if it != NULL:
                if not with_key:
                    keylen = 0
                bin_header(out, h, keylen, 4, 0, 4 + keylen + it.nbytes, it.cas)
                buf_reserve(out, 4)
                put_be32(out.data + out.len, item_flags(it))
                out.len += 4
                buf_put(out, key, keylen)
                self._value(it)
            elif not quiet:
                if with_key:
                    bin_header(out, h, keylen, 0, 0x01, keylen, 0)
                    buf_put(out, key, keylen)
                else:
                    self._bin_error(h, 0x01, NOT_FOUND_TEXT)
            return <Py_ssize_t>(pos + total)
        if op == B_SET or op == B_SETQ or op == B_ADD or op == B_ADDQ or op == B_REPLACE or op == B_REPLACEQ:
            if extlen != 8 or cas != 0:
                return DELEGATE
            vlen = bodylen - keylen - 8
            if keylen + vlen + STORE_ITEM_OVERHEAD > self.s.max_item_size:
                return DELEGATE  # the Python session swallows the value as it streams in
            if n - pos < total:
                self.want = total
                return NEED_MORE
            flags = be32(h + 24)
            mode = STORE_SET
            if op == B_ADD or op == B_ADDQ:
                mode = STORE_ADD
            elif op == B_REPLACE or op == B_REPLACEQ:
                mode = STORE_REPLACE
            rc = store_update(self.s, mode, key, keylen, key + keylen, vlen, flags,
                              bin_exptime(be32(h + 28)), 0, &new_cas)
            if rc == STORE_STORED:
                if op < 0x10:  # not a quiet form
                    bin_header(out, h, 0, 0, 0, 0, new_cas)
            elif rc == STORE_NOT_STORED:
                if mode == STORE_ADD:
                    self._bin_error(h, 0x02, EXISTS_TEXT)
                elif mode == STORE_REPLACE:
                    self._bin_error(h, 0x01, NOT_FOUND_TEXT)
                else:
                    self._bin_error(h, 0x05, NOT_STORED_TEXT)
            elif rc == STORE_NO_MEMORY:
                self.ctx.counters["store_no_memory"] += 1
                self._bin_error(h, 0x82, NO_MEMORY_TEXT)
            else:
                self.ctx.counters["store_too_large"] += 1
                self._bin_error(h, 0x03, TOO_LARGE_TEXT)
            return <Py_ssize_t>(pos + total)
        if op == B_DELETE or op == B_DELETEQ:
            if extlen != 0 or bodylen != keylen or cas != 0:
                return DELEGATE
            if n - pos < total:
                return NEED_MORE
            if store_delete(self.s, key, keylen) == STORE_DELETED:
                if op == B_DELETE:
                    bin_header(out, h, 0, 0, 0, 0, 0)
            else:
                self._bin_error(h, 0x01, NOT_FOUND_TEXT)
            return <Py_ssize_t>(pos + total)
        return DELEGATE

    cdef int _bin_error(self, const char *h, int status, bytes text) except -1:
        """An error response (sent for quiet requests too, as memcached does)."""
        cdef Py_ssize_t size = PyBytes_GET_SIZE(text)
        bin_header(self.out, h, 0, 0, <uint16_t>status, <uint32_t>size, 0)
        return buf_put(self.out, PyBytes_AS_STRING(text), <size_t>size)

    cdef Py_ssize_t _run(self, const char *p, size_t n) except? -3:
        """Answer complete commands in p[:n]; return where the unconsumed input starts, or
        -(start + 1) when the input from start on must go to the Python session."""
        cdef size_t pos = 0, eol, lend
        cdef const char *nl
        cdef Py_ssize_t r
        while pos < n:
            nl = <const char *>memchr(p + pos, 10, n - pos)
            if nl == NULL:
                if n - pos > MAX_LINE:
                    return -<Py_ssize_t>pos - 1
                break
            eol = <size_t>(nl - p)
            if eol - pos > MAX_LINE:
                return -<Py_ssize_t>pos - 1
            lend = eol
            if lend > pos and p[lend - 1] == 13:
                lend -= 1
            self.want_end = 0
            r = self._line(p, pos, lend, eol + 1, n)
            if r == NEED_MORE:
                if self.want_end:
                    self.want = self.want_end - pos  # the whole command, from its line
                break
            if r == DELEGATE or r == CUT:
                return -<Py_ssize_t>pos - 1
            pos = <size_t>r
            self.done += 1  # PERF: the idle timeout's whole cost per command (Session.commands)
            if self.out.len + self.pinned >= REPLY_BUDGET:
                self._more = pos < n  # the rest waits for the next feed (see REPLY_BUDGET)
                break
        return <Py_ssize_t>pos

    cdef Py_ssize_t _line(self, const char *p, size_t start, size_t lend, size_t next_pos,
                          size_t n) except? -3:
        """Run the command on p[start:lend]; its data block, if any, starts at next_pos."""
        cdef const char *tok[8]
        cdef size_t tlen[8]
        cdef size_t ntok = 0, i = start, j
        cdef cmd_kind kind
        cdef uint64_t exptime
        if memchr(p + start, 0, lend - start) != NULL:
            return DELEGATE  # the Python session truncates at the NUL, as memcached does
        # Tokenise on runs of spaces; get/gets lines are walked again below, key by key.
        while i < lend and ntok < MAX_TOKENS:
            i = skip_spaces(p, i, lend)
            if i == lend:
                break
            j = token_end(p, i, lend)
            tok[ntok] = p + i
            tlen[ntok] = j - i
            ntok += 1
            i = j
        if ntok == 0:
            return DELEGATE
        kind = classify(tok[0], tlen[0])
        if kind == C_GET or kind == C_GETS:
            return self._get(p, <size_t>(tok[0] - p), <size_t>(tok[0] - p) + tlen[0], lend,
                             kind == C_GETS, next_pos, False, 0)
        if kind == C_GAT or kind == C_GATS:
            # gat/gats <exptime> <key>*: a plain exptime here (signs and the rest: the Python
            # session's parse_i32); the keys are walked by _get, as get's.
            if ntok < 3 or not plain_number(tok[1], tlen[1], 9, &exptime):
                return DELEGATE
            return self._get(p, <size_t>(tok[0] - p), <size_t>(tok[1] - p) + tlen[1], lend,
                             kind == C_GATS, next_pos, True, <int64_t>exptime)
        if skip_spaces(p, i, lend) < lend:
            return DELEGATE  # more tokens than any fast command takes
        if kind == C_DELETE:
            return self._delete(tok, tlen, ntok, next_pos)
        if kind == C_MG:
            return self._mg(tok, tlen, ntok, next_pos)
        if kind == C_MS:
            return self._ms(tok, tlen, ntok, p, next_pos, n)
        if kind == C_INCR or kind == C_DECR:
            return self._arith(tok, tlen, ntok, kind == C_INCR, next_pos)
        if kind == C_OTHER:
            return DELEGATE
        return self._storage(kind, tok, tlen, ntok, p, next_pos, n)

    cdef Py_ssize_t _get(self, const char *p, size_t cmd, size_t i, size_t lend, bint with_cas,
                         size_t next_pos, bint touch, int64_t exptime) except? -3:
        """get/gets, or gat/gats (``touch``: each hit gets ``exptime``): the keys are
        p[i:lend], the command p[cmd:i]."""
        cdef size_t j, k, nkeys = 0
        cdef item *it
        cdef buffer *out = self.out
        # First pass: every key must be plain, or the slow path decides what to answer.
        k = skip_spaces(p, i, lend)
        while k < lend:
            j = token_end(p, k, lend)
            if not plain_key(p + k, j - k):
                return DELEGATE
            nkeys += 1
            k = skip_spaces(p, j, lend)
        if nkeys == 0:
            return DELEGATE
        k = skip_spaces(p, i, lend)
        while k < lend:
            j = token_end(p, k, lend)
            if touch:
                it = store_gat(self.s, p + k, j - k, exptime)
            else:
                it = store_get(self.s, p + k, j - k)
            if it != NULL:
                buf_put(out, b"VALUE ", 6)
                buf_put(out, p + k, j - k)
                buf_put(out, b" ", 1)
                buf_u64(out, item_flags(it))
                buf_put(out, b" ", 1)
                buf_u64(out, it.nbytes)
                if with_cas:
                    buf_put(out, b" ", 1)
                    buf_u64(out, it.cas)
                buf_put(out, b"\r\n", 2)
                self._value(it)
                buf_put(out, b"\r\n", 2)
                if out.len + self.pinned >= REPLY_BUDGET:
                    k = skip_spaces(p, j, lend)
                    if k < lend:  # keys are left: see REPLY_BUDGET in session.py
                        self.cut_at = k
                        self.cut_cmd = cmd
                        self.cut_keys = i
                        return CUT
                    break
            k = skip_spaces(p, j, lend)
        buf_put(out, b"END\r\n", 5)
        return <Py_ssize_t>next_pos

    cdef Py_ssize_t _mg(self, const char **tok, size_t *tlen, size_t ntok, size_t next_pos) except? -3:
        """mg whose flags are among v, k, f, s, c, t, q and O, each once (meta.py's _mg is the
        definition; anything else goes to it): a large value leaves from the item, as get's."""
        cdef size_t i
        cdef char o
        cdef int64_t seen
        cdef uint64_t unused
        cdef item *it
        cdef item_state before
        cdef buffer *out = self.out
        cdef uint8_t bits
        cdef int64_t left
        cdef bytes shown
        cdef bint won
        if ntok < 2 or not plain_key(tok[1], tlen[1]):
            return DELEGATE
        seen = meta_flags(tok, tlen, 2, ntok, MF_O | MF_V | MF_K | MF_F | MF_S | MF_C | MF_LT | MF_Q,
                          &unused, &unused)
        if seen < 0:
            return DELEGATE
        it = store_meta_get(self.s, tok[1], tlen[1], 0, 0, 1, 0, 0, &before)
        if it == NULL:
            if not seen & MF_Q:
                buf_put(out, b"EN", 2)
                for i in range(2, ntok):
                    if tok[i][0] == 79:
                        buf_put(out, b" ", 1)
                        buf_put(out, tok[i], tlen[i])
                    elif tok[i][0] == 107:
                        buf_put(out, b" k", 2)
                        buf_put(out, tok[1], tlen[1])
                buf_put(out, b"\r\n", 2)
            return <Py_ssize_t>next_pos
        bits = before.state
        if seen & MF_V:
            buf_put(out, b"VA ", 3)
            buf_u64(out, it.nbytes)
        else:
            buf_put(out, b"HD", 2)
        for i in range(2, ntok):
            o = tok[i][0]
            if o == 115:
                buf_put(out, b" s", 2)
                buf_u64(out, it.nbytes)
            elif o == 116:
                buf_put(out, b" t", 2)
                if before.exptime == 0:
                    buf_put(out, b"-1", 2)
                else:
                    left = <int64_t>before.exptime - <int64_t>self.s.now
                    if left < 0:
                        buf_put(out, b"-1", 2)
                    else:
                        buf_u64(out, <uint64_t>left)
            elif o == 99:
                buf_put(out, b" c", 2)
                buf_u64(out, it.cas)
            elif o == 102:
                buf_put(out, b" f", 2)
                buf_u64(out, item_flags(it))
            elif o == 79:
                buf_put(out, b" ", 1)
                buf_put(out, tok[i], tlen[i])
            elif o == 107:
                buf_put(out, b" k", 2)
                if bits & ITEM_KEY_BINARY:  # stored under a base64 key: shown so (meta.py)
                    shown = _b64encode(PyBytes_FromStringAndSize(tok[1], tlen[1]))
                    buf_put(out, PyBytes_AS_STRING(shown), <size_t>PyBytes_GET_SIZE(shown))
                    buf_put(out, b" b", 2)
                else:
                    buf_put(out, tok[1], tlen[1])
        if bits & ITEM_TOKEN_SENT:
            buf_put(out, b" Z", 2)
        if bits & ITEM_STALE:
            buf_put(out, b" X", 2)
        # A stale item's first reader wins the recache (no R or N here to win it otherwise).
        won = (bits & ITEM_STALE) != 0 and (bits & ITEM_TOKEN_SENT) == 0
        if won:
            buf_put(out, b" W", 2)
        buf_put(out, b"\r\n", 2)
        if seen & MF_V:
            self._value(it)
            buf_put(out, b"\r\n", 2)
        if won:
            # NOTE: after the value is taken: marking may compact, and move a small item.
            store_mark(self.s, tok[1], tlen[1], ITEM_TOKEN_SENT, 0, 0, 0)
        return <Py_ssize_t>next_pos

    cdef Py_ssize_t _ms(self, const char **tok, size_t *tlen, size_t ntok, const char *p,
                        size_t next_pos, size_t n) except? -3:
        """ms in set mode whose flags are among T, F, q, k, c and O, each once, with plain
        numbers (meta.py's _ms is the definition; anything else goes to it): its data block is
        kept as a set's is and copied once, into the item."""
        cdef size_t i
        cdef char o
        cdef int64_t seen
        cdef uint64_t vlen, flags = 0, exptime = 0, cas = 0
        cdef int rc
        cdef bytes line
        if ntok < 3 or not plain_key(tok[1], tlen[1]) or not plain_number(tok[2], tlen[2], 9, &vlen):
            return DELEGATE
        seen = meta_flags(tok, tlen, 3, ntok, MF_T | MF_FN | MF_O | MF_Q | MF_K | MF_C, &exptime, &flags)
        if seen < 0:
            return DELEGATE
        if tlen[1] + vlen + STORE_ITEM_OVERHEAD > self.s.max_item_size:
            return DELEGATE  # the Python session swallows the block as it streams in
        if n - next_pos < vlen + 2:
            self.want_end = next_pos + vlen + 2
            return NEED_MORE
        if p[next_pos + vlen] != 13 or p[next_pos + vlen + 1] != 10:
            return DELEGATE  # bad data chunk
        rc = store_meta_update(self.s, STORE_SET, tok[1], tlen[1], p + next_pos, vlen, <uint32_t>flags,
                               <int64_t>exptime, 0, 0, 0, &cas)
        if rc < 0:
            line = self._count_error(rc)
            buf_put(self.out, PyBytes_AS_STRING(line), PyBytes_GET_SIZE(line))
            return <Py_ssize_t>(next_pos + vlen + 2)
        if rc == STORE_STORED and seen & MF_Q:
            return <Py_ssize_t>(next_pos + vlen + 2)
        if rc == STORE_STORED:
            buf_put(self.out, b"HD", 2)
        elif rc == STORE_NOT_STORED:
            buf_put(self.out, b"NS", 2)
        elif rc == STORE_EXISTS:
            buf_put(self.out, b"EX", 2)
        else:
            buf_put(self.out, b"NF", 2)
        for i in range(3, ntok):
            o = tok[i][0]
            if o == 79:
                buf_put(self.out, b" ", 1)
                buf_put(self.out, tok[i], tlen[i])
            elif o == 107:
                buf_put(self.out, b" k", 2)
                buf_put(self.out, tok[1], tlen[1])
            elif o == 99:
                buf_put(self.out, b" c", 2)
                buf_u64(self.out, cas if rc == STORE_STORED else 0)
        buf_put(self.out, b"\r\n", 2)
        return <Py_ssize_t>(next_pos + vlen + 2)

    cdef Py_ssize_t _storage(self, cmd_kind kind, const char **tok, size_t *tlen, size_t ntok,
                             const char *p, size_t next_pos, size_t n) except? -3:
        cdef bint has_cas = kind == C_CAS
        cdef size_t base = 6 if has_cas else 5
        cdef bint noreply
        cdef uint64_t flags, exptime, vlen, cas_in = 0
        cdef int rc, mode
        if ntok != base and ntok != base + 1:
            return DELEGATE
        noreply = ntok == base + 1
        if noreply and not (tlen[base] == 7 and memcmp(tok[base], b"noreply", 7) == 0):
            return DELEGATE
        if not plain_key(tok[1], tlen[1]):
            return DELEGATE
        if not (plain_number(tok[2], tlen[2], 9, &flags) and plain_number(tok[3], tlen[3], 9, &exptime)
                and plain_number(tok[4], tlen[4], 9, &vlen)):
            return DELEGATE
        if has_cas and not plain_number(tok[5], tlen[5], 19, &cas_in):
            return DELEGATE
        if tlen[1] + vlen + STORE_ITEM_OVERHEAD > self.s.max_item_size:
            return DELEGATE  # the Python session swallows the block as it streams in
        if n - next_pos < vlen + 2:
            self.want_end = next_pos + vlen + 2
            return NEED_MORE
        if p[next_pos + vlen] != 13 or p[next_pos + vlen + 1] != 10:
            return DELEGATE  # bad data chunk
        mode = STORE_SET
        if kind == C_ADD:
            mode = STORE_ADD
        elif kind == C_REPLACE:
            mode = STORE_REPLACE
        elif kind == C_APPEND:
            mode = STORE_APPEND
        elif kind == C_PREPEND:
            mode = STORE_PREPEND
        elif kind == C_CAS:
            mode = STORE_CAS
        rc = store_update(self.s, mode, tok[1], tlen[1], p + next_pos, vlen, <uint32_t>flags,
                          <int64_t>exptime, cas_in, NULL)
        if not noreply:
            self._reply(rc)
        elif rc < 0:
            self._count_error(rc)
        return <Py_ssize_t>(next_pos + vlen + 2)

    cdef int _reply(self, int rc) except -1:
        cdef bytes line
        if rc >= 0:
            line = <bytes>STORE_REPLIES[rc]
        else:
            line = self._count_error(rc)
        return buf_put(self.out, PyBytes_AS_STRING(line), PyBytes_GET_SIZE(line))

    cdef bytes _count_error(self, int rc):
        """Count a rejected store as the Python session does and return memcached's reply."""
        if rc == STORE_NO_MEMORY:
            self.ctx.counters["store_no_memory"] += 1
            return OutOfMemory.wire
        if rc == STORE_TOO_LARGE:
            self.ctx.counters["store_too_large"] += 1
            return ItemTooLarge.wire
        return NonNumericValue.wire

    cdef Py_ssize_t _delete(self, const char **tok, size_t *tlen, size_t ntok, size_t next_pos) except? -3:
        cdef bint noreply = ntok == 3
        if ntok != 2 and not (noreply and tlen[2] == 7 and memcmp(tok[2], b"noreply", 7) == 0):
            return DELEGATE
        if not plain_key(tok[1], tlen[1]):
            return DELEGATE
        cdef int rc = store_delete(self.s, tok[1], tlen[1])
        if not noreply:
            self._reply(rc)
        return <Py_ssize_t>next_pos

    cdef Py_ssize_t _arith(self, const char **tok, size_t *tlen, size_t ntok, bint incr,
                           size_t next_pos) except? -3:
        cdef uint64_t delta, result = 0
        cdef bint noreply = ntok == 4
        if ntok != 3 and not (noreply and tlen[3] == 7 and memcmp(tok[3], b"noreply", 7) == 0):
            return DELEGATE
        if not plain_key(tok[1], tlen[1]) or not plain_number(tok[2], tlen[2], 19, &delta):
            return DELEGATE
        cdef int rc = store_delta(self.s, tok[1], tlen[1], incr, delta, &result)
        cdef bytes line
        if not noreply:
            if rc == STORE_STORED:
                buf_u64(self.out, result)
                buf_put(self.out, b"\r\n", 2)
            elif rc == STORE_NOT_FOUND:
                self._reply(rc)
            else:
                # As the Python session: memcached's texts, nothing counted (any failure to
                # allocate the longer number is "out of memory" there).
                line = OutOfMemory.wire if rc == STORE_NO_MEMORY or rc == STORE_TOO_LARGE else (
                    NonNumericValue.wire)
                buf_put(self.out, PyBytes_AS_STRING(line), PyBytes_GET_SIZE(line))
        return <Py_ssize_t>next_pos


def _init_replies():
    global STORE_REPLIES
    from pycache_d.store.errors import Result

    STORE_REPLIES = tuple(r.wire for r in sorted(Result))


_init_replies()

