# The compiled session's C-level interface, shared with the compiled connection
# (_cconnection.pyx), which calls feed_ptr() without a Python method call.
from libc.stdint cimport int64_t, uint8_t

from pycache_d.store._native cimport Store
from pycache_d.store._store_c cimport item, store


cdef struct buffer:
    char *data
    size_t len
    size_t cap


cdef enum cmd_kind:
    C_GET, C_GETS, C_GAT, C_GATS, C_SET, C_ADD, C_REPLACE, C_APPEND, C_PREPEND, C_CAS, C_DELETE, C_INCR, C_DECR, C_MG, C_MS, C_OTHER


cdef class NativeSession:
    cdef readonly Store store
    cdef store *s
    cdef readonly object ctx
    cdef readonly object slow  # the Python session it hands over to (readable for tests)
    cdef bint slow_active
    cdef bint _closing
    cdef buffer pending  # input kept between feeds (none when idle)
    cdef buffer *out     # where this feed builds its reply: SHARED_OUT, or own (see the .pyx)
    cdef buffer own
    cdef size_t cut_at  # where the unanswered keys of a multi-get cut at the budget start
    cdef size_t cut_cmd, cut_keys  # ... and where its command (get, gets, gat T, gats T) and keys start
    cdef bint _more     # the last feed stopped at REPLY_BUDGET with complete input left
    cdef bint binary    # an authenticated binary connection: _run_binary() reads its input
    cdef bint chosen    # the first byte has chosen text or binary (see _choose)
    cdef bint gated     # ... binary, or text with credentials wanted: the Python session's at first
    cdef size_t done    # commands answered here (the Python session counts its own)
    cdef readonly list parts  # pinned values of this feed's reply: [offset in out, value, ...]
    cdef readonly size_t pinned  # ... and their bytes (counted in the reply budget)
    cdef size_t want_end  # where the data block of the command being parsed ends (in its input)
    cdef size_t want      # bytes the kept input must reach to complete its command (0: unknown)
    cdef public int cfd  # the client's socket, for watch lines (-1: unknown)

    cdef object feed_ptr(self, const char *data, size_t size)
    cdef object _feed_ptr(self, const char *data, size_t size)
    cdef void _borrow_out(self) noexcept
    cdef void out_sent(self) noexcept
    cdef void _choose(self, uint8_t first) noexcept
    cdef object _slow(self)
    cdef bytes _take_out(self)
    cdef list take_parts(self)
    cdef char *block_room(self, Py_ssize_t *room) noexcept
    cdef void block_filled(self, Py_ssize_t n) noexcept
    cdef int _value(self, item *it) except -1
    cdef int _keep(self, const char *p, size_t pos, size_t n) except -1
    cdef bytes _flush_and_delegate(self, const char *p, size_t n, size_t start)
    cdef bytes _flush_and_cut(self, const char *p, size_t n)
    cdef bytes _to_slow(self, data)
    cdef Py_ssize_t _run(self, const char *p, size_t n) except? -3
    cdef Py_ssize_t _run_binary(self, const char *p, size_t n) except? -3
    cdef Py_ssize_t _bin_request(self, const char *p, size_t pos, size_t n) except? -3
    cdef int _bin_error(self, const char *h, int status, bytes text) except -1
    cdef Py_ssize_t _line(self, const char *p, size_t start, size_t lend, size_t next_pos,
                          size_t n) except? -3
    cdef Py_ssize_t _get(self, const char *p, size_t cmd, size_t i, size_t lend, bint with_cas,
                         size_t next_pos, bint touch, int64_t exptime) except? -3
    cdef Py_ssize_t _mg(self, const char **tok, size_t *tlen, size_t ntok, size_t next_pos) except? -3
    cdef Py_ssize_t _ms(self, const char **tok, size_t *tlen, size_t ntok, const char *p,
                        size_t next_pos, size_t n) except? -3
    cdef Py_ssize_t _storage(self, cmd_kind kind, const char **tok, size_t *tlen, size_t ntok,
                             const char *p, size_t next_pos, size_t n) except? -3
    cdef int _reply(self, int rc) except -1
    cdef bytes _count_error(self, int rc)
    cdef Py_ssize_t _delete(self, const char **tok, size_t *tlen, size_t ntok,
                            size_t next_pos) except? -3
    cdef Py_ssize_t _arith(self, const char **tok, size_t *tlen, size_t ntok, bint incr,
                           size_t next_pos) except? -3
