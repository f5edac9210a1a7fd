# cython: language_level=3, boundscheck=False, wraparound=False
"""The compiled hot path of a client connection: data_received for the usual read.

pycache_d.net.connection.Connection derives from this class when it is built (and from its pure
twin, connection._ConnectionBase, otherwise). Only the common case runs here: a read of at
most ``lines`` requests and FEED_SLICE bytes, while not paused, not logging each request. It
is fed to the session whole and answered with one write. Everything else (pausing, slicing,
logging, errors) is Connection's, in Python: this class calls back into it.

data_received and the compiled stream transport (_cstream.pyx) both go through ``received``;
the transport hands it bytes still in its read buffer, and the compiled session's reply is
copied once, into the bytes object handed to transport.write (which sends it at once). Values of
STORE_PIN_MIN (16 KiB) and more are not copied: the session returns them as pinned views of the
items (store._native.PinnedValue) between the bytes of the rest, and the compiled stream
transport sends them all with one sendmsg (``writev``, its write_parts), keeping what the
kernel refuses, pins and all, until it is sent; other transports get one joined copy.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_GetItem
from cpython.object cimport PyObject
from libc.string cimport memchr
from posix.time cimport clock_gettime, timespec

from pycache_d.protocol._csession cimport NativeSession

import logging

from pycache_d.log import log
from pycache_d.protocol.session import REPLY_BUDGET as _REPLY_BUDGET

cdef extern from "<time.h>":
    int CLOCK_MONOTONIC_COARSE

cdef Py_ssize_t REPLY_BUDGET = _REPLY_BUDGET
# The logger's level cache (logging.Logger._cache, cleared whenever a level changes): one dict
# lookup per read tells whether requests are logged, instead of a call to isEnabledFor.
cdef object LOG_CACHE = getattr(log, "_cache", None)
cdef object DEBUG = logging.DEBUG


cdef inline bint debug_enabled() except -1:
    cdef PyObject *cached
    if LOG_CACHE is not None:
        cached = PyDict_GetItem(LOG_CACHE, DEBUG)
        if cached != NULL:
            return <object>cached is True
    return log.isEnabledFor(DEBUG)


cdef inline double monotonic() noexcept:
    # PERF: the coarse clock (a few ms) is plenty for idle times, and cheaper per read.
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


cdef inline Py_ssize_t count_lines(const char *p, Py_ssize_t size):
    cdef const char *end = p + size
    cdef const char *nl
    cdef Py_ssize_t n = 0
    while p < end:
        nl = <const char *>memchr(p, 10, end - p)
        if nl == NULL:
            break
        n += 1
        p = nl + 1
    return n


cdef inline object as_bytes(const char *p, Py_ssize_t size, object data):
    """``data`` if the caller has the read as bytes already, else a copy of it."""
    return PyBytes_FromStringAndSize(p, size) if data is None else data


cdef class ConnectionBase:
    """State the hot path reads, and the hot path itself (see the module docstring).

    Its attributes are declared in _cconnection.pxd; ``written`` counts the reply bytes
    handed to the transport and ``read_bytes`` the bytes read (``stats``: bytes_written,
    bytes_read). Set by the subclass: ``feed_slice``, ``max_lines``, ``small_reply`` and
    ``high_water`` (its limits), ``write`` (transport.write, looked up once) and ``writev`` (the
    transport's write_parts, or None).
    """

    def data_received(self, data):
        if type(data) is not bytes:
            data = bytes(data)
        self.received(PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data), data)

    cdef int received(self, const char *p, Py_ssize_t size, object data) except -1:
        """A read of ``size`` bytes at ``p``; ``data`` is the same bytes as an object, or None
        (the compiled stream transport's buffer: a bytes object is made only where needed)."""
        cdef Py_ssize_t lines, n
        cdef bint native, closing
        cdef NativeSession ns
        self.read_bytes += size  # PERF: one add per read (stats bytes_read)
        if self._closing:
            return 0
        self.last_active = monotonic()
        if self._paused or self._pending or self._continuing:
            # Read before the pause took effect: keep it in order behind what is waiting.
            self._pending = self._pending + as_bytes(p, size, data)
            return 0
        lines = count_lines(p, size)
        if lines > self._lines or size > self.feed_slice or debug_enabled():
            self._feed(as_bytes(p, size, data))
            return 0
        session = self.session
        native = type(session) is NativeSession
        try:
            if native:  # PERF: a C call, not a Python method call
                reply = (<NativeSession>session).feed_ptr(p, <size_t>size)
            else:
                reply = session.feed(as_bytes(p, size, data))
        except Exception:
            self._session_failed([])
            return 0
        if reply is None:  # the reply is in the session's buffer
            ns = <NativeSession>session
            n = <Py_ssize_t>(ns.out.len + ns.pinned)
            if ns.parts is not None:
                # Large values by reference, pinned until sent (see the module docstring).
                parts = ns.take_parts()
                if self.writev is not None:
                    self.writev(parts)
                else:
                    self.write(b"".join(parts))  # TLS, asyncio's transports: one copy
            else:
                try:
                    if n:
                        self.write(PyBytes_FromStringAndSize(ns.out.data, n))
                finally:
                    ns.out_sent()
        else:
            n = len(reply)
            if n:
                self.write(reply)
        self.written += n  # the stall check's measure of progress (Connection.drained)
        # Size the next slice, then close, continue a cut multi-get, or close after the EOF.
        if n > self.small_reply * (lines or 1):
            # Connection._learn(), on the line count we have: about HIGH_WATER bytes per slice.
            self._lines = max(1, min(self.max_lines, self.high_water // max(1, n // max(1, lines))))
        else:
            self._lines = self.max_lines  # what _learn() makes of small replies
        closing = (<NativeSession>session)._closing if native else session.closing
        if closing:
            self.close_for_session()
        elif (n >= REPLY_BUDGET or not native or (<NativeSession>session).slow_active) and session.more:
            # PERF: a large reply, or a Python session's (a dump goes a slice at a time).
            self._continue_later()
        elif self._eof:
            self.close()
        return 0

    cdef char *block_room(self, Py_ssize_t *room) except? NULL:
        """Where the transport may read the rest of a large data block to, or NULL: the
        compiled session's block buffer, when this read would take the usual path anyway."""
        if self._closing or self._paused or self._pending or self._continuing:
            return NULL
        if type(self.session) is not NativeSession or debug_enabled():
            return NULL
        return (<NativeSession>self.session).block_room(room)

    cdef int block_received(self, Py_ssize_t n) except -1:
        """``n`` bytes were read to block_room(): answer as for any read."""
        self.read_bytes += n  # read straight into the set's buffer: received() sees 0 of them
        (<NativeSession>self.session).block_filled(n)
        return self.received(<const char *>b"", 0, None)

