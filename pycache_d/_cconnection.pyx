# cython: language_level=3, boundscheck=False, wraparound=False
"""The compiled hot path of a client connection: data_received for the usual read.

pycache_d.connection.Connection derives from this class when it is built (and from its pure
twin, connection._ConnectionBase, otherwise). Only the common case runs here: a read of at
most ``lines`` requests and FEED_SLICE bytes, while not paused, not logging each request. It
is fed to the session whole and answered with one write. Everything else (pausing, slicing,
logging, errors) is Connection's, in Python: this class calls back into it.

The compiled stream transport (_cstream.pyx) calls ``feed_ptr`` instead of data_received: the
same path for bytes still in its read buffer, with the reply sent from the session's buffer,
so a usual request makes no Python object at all.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_GetItem
from cpython.object cimport PyObject
from libc.string cimport memchr
from posix.time cimport clock_gettime, timespec

from ._csession cimport NativeSession

import logging

from .log import log
from .session import REPLY_BUDGET as _REPLY_BUDGET

cdef extern from "<sys/socket.h>" nogil:
    Py_ssize_t send(int fd, const void *buf, size_t n, int flags)
    int MSG_DONTWAIT
    int MSG_NOSIGNAL

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


cdef class ConnectionBase:
    """State the hot path reads, and the hot path itself (see the module docstring).

    Its attributes are declared in _cconnection.pxd. Set by the subclass: ``feed_slice``,
    ``max_lines``, ``small_reply`` and ``high_water`` (its limits) and ``write``
    (transport.write, looked up once).

    PERF: while the transport holds nothing unsent (``_direct``), a reply is sent on the socket
    here, skipping the transport's write path; ``direct_fd`` is -1 where that is not allowed
    (TLS). Whatever the kernel does not take goes to transport.write, in order, and direct sends
    wait until the transport has sent it all. Any other write clears ``_direct`` first.
    """

    cdef int _send(self, bytes reply, Py_ssize_t size) except -1:
        cdef Py_ssize_t sent
        if self._direct:
            sent = send(self.direct_fd, PyBytes_AS_STRING(reply), size, MSG_DONTWAIT | MSG_NOSIGNAL)
            if sent == size:
                return 0
            # The kernel took part or nothing (or the socket failed: the transport finds out).
            self._direct = False
            self.write(reply[sent:] if sent > 0 else reply)
            return 0
        self.write(reply)
        if self.direct_fd >= 0:
            self._direct = self.transport.get_write_buffer_size() == 0
        return 0

    cdef int _send_ptr(self, const char *reply, Py_ssize_t size) except -1:
        """_send() of bytes the session holds: a bytes object only for what the kernel refuses."""
        cdef Py_ssize_t sent
        if self._direct:
            sent = send(self.direct_fd, reply, size, MSG_DONTWAIT | MSG_NOSIGNAL)
            if sent == size:
                return 0
            if sent < 0:
                sent = 0
            self._direct = False
            self.write(PyBytes_FromStringAndSize(reply + sent, size - sent))
            return 0
        return self._send(PyBytes_FromStringAndSize(reply, size), size)

    def data_received(self, data):
        cdef Py_ssize_t lines, size
        if self._closing:
            return
        self.last_active = monotonic()
        if self._paused or self._pending or self._continuing:
            # Read before the pause took effect: keep it in order behind what is waiting.
            self._pending = self._pending + bytes(data)
            return
        if type(data) is not bytes:
            data = bytes(data)
        lines = count_lines(PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))
        size = PyBytes_GET_SIZE(data)
        if lines > self._lines or size > self.feed_slice or debug_enabled():
            self._feed(data)
            return
        session = self.session
        cdef bint native = type(session) is NativeSession
        try:
            if native:  # PERF: a C call, not a Python method call
                reply = (<NativeSession>session).feed_bytes(data)
            else:
                reply = session.feed(data)
        except Exception:
            self._session_failed([])
            return
        size = len(reply)
        if size:
            self._send(reply, size)
        self._answered(session, native, lines, size)

    cdef int feed_ptr(self, const char *data, Py_ssize_t size) except -1:
        """data_received() of ``size`` bytes at ``data``, for the compiled stream transport.

        Returns 1 when done, 0 when declined: the caller then passes the bytes to
        data_received(), which knows every other case (the Python session among them).
        """
        cdef Py_ssize_t lines, n
        cdef NativeSession session
        if self._closing:
            return 1  # dropped, as data_received() drops them
        if self._paused or self._pending or self._continuing or type(self.session) is not NativeSession:
            return 0
        lines = count_lines(data, size)
        if lines > self._lines or size > self.feed_slice or debug_enabled():
            return 0
        self.last_active = monotonic()
        session = <NativeSession>self.session
        try:
            reply = session.feed_ptr(data, <size_t>size)
        except Exception:
            self._session_failed([])
            return 1
        if reply is None:  # PERF: the reply is sent from the session's buffer
            n = <Py_ssize_t>session.out.len
            try:
                if n:
                    self._send_ptr(session.out.data, n)
            finally:
                session.out_sent()
        else:
            n = len(reply)
            if n:
                self._send(reply, n)
        self._answered(session, True, lines, n)
        return 1

    cdef int _answered(self, object session, bint native, Py_ssize_t lines, Py_ssize_t size) except -1:
        """After a reply of ``size`` bytes to ``lines`` lines: size the next slice, then close,
        continue a cut multi-get, or close after the client's EOF."""
        cdef bint closing
        cdef Py_ssize_t per_line
        if size > self.small_reply * (lines or 1):
            # Connection._learn(), on the line count we have: about HIGH_WATER bytes per slice.
            per_line = max(1, size // max(1, lines))
            self._lines = max(1, min(self.max_lines, self.high_water // per_line))
        else:
            self._lines = self.max_lines  # what _learn() makes of small replies
        closing = (<NativeSession>session)._closing if native else session.closing
        if closing:
            self.close()
        elif size >= REPLY_BUDGET and session.more:  # only a large reply stops early
            self._continue_later()
        elif self._eof:
            self.close()
        return 0
