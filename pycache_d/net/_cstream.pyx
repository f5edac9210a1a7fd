# cython: language_level=3, boundscheck=False, wraparound=False
"""Plain client sockets driven from C: one epoll set holds them all, and the loop watches it.

PERF: for every read of every connection, uvloop takes the GIL back, enters the protocol's
context, makes a bytes object and calls data_received. Here the loop watches a single file
descriptor, an epoll set with every plain client socket in it; when it is ready, one callback
reads each ready socket into one shared buffer and hands the bytes, as they are, to the
compiled connection (_cconnection.ConnectionBase.received), whose reply goes back through
write(), which sends it at once. Under memaslap's 16 connections a wakeup finds about a dozen
sockets ready, so the loop's per-callback cost is shared by all of them. uvloop stays the
event loop: timers, signals, accepts, TLS clients and everything else are its own.

::

    uvloop ──(epfd readable)──> Poller._ready: epoll_wait(epfd, 64 events, no wait)
                                   │ for each ready socket
                                   ▼
    StreamTransport ── read ──> ConnectionBase.received(buf, n)  (or data_received(bytes))
         │  write(): send at once; what the kernel refuses waits in ``wbuf``
         └─ EPOLLIN while reading, EPOLLOUT while ``wbuf`` is not empty

Invariants:

* A transport is registered in the epoll set exactly while its socket is open (``fd >= 0``) and
  its connection_made has returned; ``mask`` is the event set the kernel holds for it:
  EPOLLIN while ``reading``, EPOLLOUT while ``wbuf`` holds bytes. Level-triggered, so input left
  unread (a paused client) is reported again once reading resumes.
* The epoll set points at transports without owning them: ``Poller.live`` holds every
  registered one. A transport closed while a batch of events is handled stays alive until the
  batch ends (its connection_lost call, scheduled on the loop, holds it), and its remaining
  events are skipped because ``fd`` is -1.
* connection_lost is called once, from the loop (call_soon), after the socket is closed, as
  asyncio's transports do; after it the transport holds no protocol.
* Unsent bytes wait in ``wbuf`` (copied) or, once a reply with pinned values came
  (write_parts), in ``zq``: a list of bytes and store._native.PinnedValue parts, sent with
  sendmsg from ``zq_off`` in its first part; ``zq_bytes`` counts what is unsent in it. At most one
  of the two holds bytes: while ``zq`` is not None every write joins it, in order, and ``wbuf``
  is empty. A part leaves ``zq`` the moment its last byte is taken by the kernel, and dropping
  a PinnedValue unpins its item (csrc/store.h, "Pins"), so an item stays pinned exactly while
  some of its bytes are unsent here; closing drops them all.

The transport offers what net.connection.Connection and daemon.server.Server use of an asyncio
transport (write, writelines, close, abort, pause/resume_reading, get_write_buffer_size,
set_write_buffer_limits, get_extra_info, ...) and calls the protocol as asyncio does.
"""

from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.errno cimport EAGAIN, EINTR, errno
from libc.stdint cimport uint32_t, uint64_t
from libc.stdlib cimport free, malloc

from pycache_d.store._native cimport PinnedValue

from ._cconnection cimport ConnectionBase

import os
import socket

from pycache_d.log import log

cdef extern from "<sys/epoll.h>" nogil:
    ctypedef union epoll_data_t:
        void *ptr
        int fd
        uint32_t u32
        uint64_t u64

    cdef struct epoll_event:
        uint32_t events
        epoll_data_t data

    int epoll_create1(int flags)
    int epoll_ctl(int epfd, int op, int fd, epoll_event *event)
    int epoll_wait(int epfd, epoll_event *events, int maxevents, int timeout)
    enum:
        EPOLLIN
        EPOLLOUT
        EPOLLERR
        EPOLLHUP
        EPOLL_CTL_ADD
        EPOLL_CTL_MOD
        EPOLL_CTL_DEL
        EPOLL_CLOEXEC

cdef extern from "<sys/socket.h>" nogil:
    Py_ssize_t recv(int fd, void *buf, size_t n, int flags)
    Py_ssize_t send(int fd, const void *buf, size_t n, int flags)
    int MSG_DONTWAIT
    int MSG_NOSIGNAL

cdef extern from "<sys/uio.h>" nogil:
    cdef struct iovec:
        void *iov_base
        size_t iov_len

cdef extern from "<sys/socket.h>" nogil:
    cdef struct msghdr:
        void *msg_name
        unsigned msg_namelen
        iovec *msg_iov
        size_t msg_iovlen
        void *msg_control
        size_t msg_controllen
        int msg_flags
    Py_ssize_t sendmsg(int fd, const msghdr *msg, int flags)

cdef extern from "<unistd.h>" nogil:
    int close(int fd)

cdef enum:
    MAX_EVENTS = 64  # sockets handled per wakeup; more wait for the next one (level-triggered)
    MAX_IOV = 64     # parts sent per sendmsg (a reply budget's worth of large values and more)

#: asyncio's default write buffer limits, until the protocol sets its own.
cdef Py_ssize_t DEFAULT_HIGH = 64 * 1024


cdef inline bint would_block(int err) noexcept:
    return err == EAGAIN or err == EINTR  # EWOULDBLOCK is EAGAIN on Linux


cdef object os_error(int err):
    # OSError picks the subclass (ConnectionResetError, BrokenPipeError, ...) from the errno.
    return OSError(err, os.strerror(err))


cdef class Poller:
    """The epoll set of the plain client sockets, watched by ``loop`` as one reader.

    Args:
        loop: the running event loop (uvloop's, or asyncio's: only add_reader is used).
        read_size: bytes read from a socket at most per wakeup (the shared read buffer's size).
    """

    cdef int epfd
    cdef readonly object loop
    cdef readonly set live
    cdef char *buf
    cdef Py_ssize_t buf_size
    cdef epoll_event events[MAX_EVENTS]

    def __cinit__(self):
        self.epfd = -1
        self.buf = NULL

    def __init__(self, loop, Py_ssize_t read_size):
        self.buf = <char *>malloc(read_size)
        if self.buf == NULL:
            raise MemoryError()
        self.buf_size = read_size
        self.epfd = epoll_create1(EPOLL_CLOEXEC)
        if self.epfd < 0:
            raise os_error(errno)
        self.loop = loop
        self.live = set()
        loop.add_reader(self.epfd, self._ready)

    def __dealloc__(self):
        free(self.buf)
        if self.epfd >= 0:
            close(self.epfd)

    def close(self):
        """Stop watching; the transports still open are aborted (their connection_lost follows).

        NOTE: no event could reach them any more: they would never flush nor close, and their
        next change of events would fail on the closed epoll set.
        """
        cdef StreamTransport t
        for t in list(self.live):
            t._force_close(None)
        if self.epfd >= 0:
            self.loop.remove_reader(self.epfd)
            close(self.epfd)
            self.epfd = -1

    def open(self, sock, protocol, peername):
        """Drive ``sock`` (connected, non-blocking) with a new transport for ``protocol``.

        ``peername`` (what accept() returned) is not kept: the transport asks the socket.
        """
        cdef StreamTransport t = StreamTransport(self, sock, protocol, peername)
        t._start()
        return t

    cdef int _ctl(self, int op, StreamTransport t, uint32_t mask) except -1:
        cdef epoll_event ev
        ev.events = mask
        ev.data.ptr = <void *>t
        if epoll_ctl(self.epfd, op, t.fd, &ev) < 0:
            raise os_error(errno)
        return 0

    def _ready(self):
        cdef int i, n, fd
        cdef uint32_t ev
        cdef StreamTransport t
        if self.epfd < 0:
            return
        n = epoll_wait(self.epfd, self.events, MAX_EVENTS, 0)
        if n < 0:
            if errno == EINTR:
                return
            raise os_error(errno)
        for i in range(n):
            t = <StreamTransport>self.events[i].data.ptr
            fd = t.fd
            if fd < 0:
                continue  # closed earlier in this batch
            ev = self.events[i].events
            try:
                t._handle(ev, self.buf, self.buf_size)
            except Exception as e:  # a protocol bug: that client goes, everyone else stays
                log.error("conn %d: unexpected error; closing it", fd, exc_info=True)
                t._force_close(e)


cdef class StreamTransport:
    """An asyncio-style transport over one plain stream socket, driven by a :class:`Poller`."""

    cdef readonly int fd
    cdef Poller poller
    cdef object sock
    cdef object protocol
    cdef ConnectionBase fast  # the protocol, when it is the compiled connection
    cdef bytearray wbuf
    cdef Py_ssize_t high
    cdef Py_ssize_t low
    cdef uint32_t mask
    cdef bint registered
    cdef bint reading
    cdef bint closing
    cdef bint eof
    cdef bint protocol_paused
    cdef list zq           # see the invariants: parts waiting, with pinned values
    cdef Py_ssize_t zq_off
    cdef Py_ssize_t zq_bytes

    def __cinit__(self):
        self.fd = -1

    def __init__(self, Poller poller, sock, protocol, peername):
        self.poller = poller
        self.sock = sock
        self.protocol = protocol
        self.fast = protocol if isinstance(protocol, ConnectionBase) else None
        # PERF: nothing of get_extra_info is kept (the peer's address is asked of the socket
        # when someone wants it, rarely): an idle connection costs less.
        self.wbuf = bytearray()
        self.high = DEFAULT_HIGH
        self.low = DEFAULT_HIGH // 4
        self.reading = True
        self.fd = sock.fileno()

    def __repr__(self):
        state = "closed" if self.fd < 0 else "closing" if self.closing else "open"
        return f"<StreamTransport fd={self.fd} {state}>"

    cdef int _start(self) except -1:
        try:
            self.protocol.connection_made(self)
        except BaseException as e:
            # Closed here, so that nothing can write to the descriptor once the caller has
            # dropped the socket and the kernel has given its number to someone else.
            self._force_close(e)
            raise
        if self.fd < 0:
            return 0  # closed by connection_made (over the connection limit)
        self.mask = self._wanted()
        try:
            self.poller._ctl(EPOLL_CTL_ADD, self, self.mask)
        except OSError as e:
            # The protocol has seen connection_made: it must hear connection_lost too (or a
            # Connection would hold its slot of --max-connections for good).
            self._force_close(e)
            raise
        self.registered = True
        self.poller.live.add(self)
        return 0

    cdef inline uint32_t _wanted(self) noexcept:
        cdef uint32_t want = 0
        if self.reading:
            want |= EPOLLIN
        if PyByteArray_GET_SIZE(self.wbuf) or self.zq is not None:
            want |= EPOLLOUT
        return want

    cdef inline Py_ssize_t _unsent(self) noexcept:
        return PyByteArray_GET_SIZE(self.wbuf) + self.zq_bytes

    cdef int _update(self) except -1:
        cdef uint32_t want
        if not self.registered:
            return 0
        want = self._wanted()
        if want != self.mask:
            self.poller._ctl(EPOLL_CTL_MOD, self, want)
            self.mask = want
        return 0

    # -- events --------------------------------------------------------------------------------

    cdef int _handle(self, uint32_t ev, char *buf, Py_ssize_t buf_size) except -1:
        cdef bint got = False
        if ev & (EPOLLIN | EPOLLHUP | EPOLLERR) and self.reading:
            got = self._read(buf, buf_size)
            if got and ev & (EPOLLHUP | EPOLLERR):
                # NOTE: the peer reset or closed, but what it sent before is still queued (a
                # client may send noreply requests and close at once): read it all, one read
                # per wakeup, as uvloop and memcached do; the wakeup that reads nothing ends it.
                return 0
        if self.fd < 0:
            return 0
        if ev & EPOLLERR:
            err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            self._force_close(os_error(err) if err else ConnectionResetError("connection reset"))
            return 0
        if ev & (EPOLLOUT | EPOLLHUP) and self._unsent():
            self._flush()
        if ev & EPOLLHUP and self.fd >= 0:
            # Both directions are shut: nothing more can arrive or leave, and level-triggered
            # epoll would report it again on every wakeup. After the client's EOF that is the
            # usual end of a unix connection, not an error.
            self._force_close(None if self.eof else ConnectionResetError("connection closed by peer"))
        return 0

    cdef bint _read(self, char *buf, Py_ssize_t buf_size) except -1:
        """Read once; return True if bytes were delivered to the protocol."""
        cdef Py_ssize_t n, room = 0
        cdef int err
        cdef char *block = self.fast.block_room(&room) if self.fast is not None else NULL
        if block != NULL:
            # PERF: the rest of a large set's data block goes straight to its buffer.
            n = recv(self.fd, block, room, MSG_DONTWAIT)
            if n > 0:
                self.fast.block_received(n)
                return True
        else:
            n = recv(self.fd, buf, buf_size, MSG_DONTWAIT)
        if n > 0:
            if self.fast is not None:
                self.fast.received(buf, n, None)
            else:
                self.protocol.data_received(PyBytes_FromStringAndSize(buf, n))
            return True
        elif n == 0:
            self.eof = True
            self.reading = False
            self._update()
            if not self.protocol.eof_received():
                self.close()
        else:
            err = errno
            if not would_block(err):
                self._force_close(os_error(err))
        return 0

    cdef int _flush(self) except -1:
        if self.zq is not None:
            self._flush_parts()
            if self.fd < 0:
                return 0
            self._maybe_resume_protocol()
            if self.fd >= 0 and not self._unsent():
                if self.closing:
                    self._force_close(None)
                else:
                    self._update()
            return 0
        cdef Py_ssize_t n = send(
            self.fd, PyByteArray_AS_STRING(self.wbuf), PyByteArray_GET_SIZE(self.wbuf),
            MSG_DONTWAIT | MSG_NOSIGNAL)
        cdef int err
        if n < 0:
            err = errno
            if not would_block(err):
                self._force_close(os_error(err))
            return 0
        del self.wbuf[:n]
        self._maybe_resume_protocol()
        if self.fd >= 0 and not PyByteArray_GET_SIZE(self.wbuf):
            if self.closing:
                self._force_close(None)
            else:
                self._update()
        return 0

    cdef int _flush_parts(self) except -1:
        """Send what ``zq`` holds, as far as the kernel takes it (see the invariants)."""
        cdef iovec iov[MAX_IOV]
        cdef msghdr msg
        cdef Py_ssize_t n, asked, left, i, count
        cdef object part
        cdef int err
        while self.zq is not None:
            count = min(len(self.zq), MAX_IOV)
            asked = 0
            for i in range(count):
                part = self.zq[i]
                if type(part) is bytes:
                    iov[i].iov_base = <void *>PyBytes_AS_STRING(part)
                    iov[i].iov_len = <size_t>PyBytes_GET_SIZE(part)
                else:
                    iov[i].iov_base = <void *>(<PinnedValue>part).ptr
                    iov[i].iov_len = <size_t>(<PinnedValue>part).size
                if i == 0:
                    iov[0].iov_base = <char *>iov[0].iov_base + self.zq_off
                    iov[0].iov_len -= <size_t>self.zq_off
                asked += <Py_ssize_t>iov[i].iov_len
            msg.msg_name = NULL
            msg.msg_namelen = 0
            msg.msg_iov = iov
            msg.msg_iovlen = <size_t>count
            msg.msg_control = NULL
            msg.msg_controllen = 0
            msg.msg_flags = 0
            n = sendmsg(self.fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL)
            if n < 0:
                err = errno
                if not would_block(err):
                    self._force_close(os_error(err))
                return 0
            self.zq_bytes -= n
            left = n
            i = 0
            while i < count and left >= <Py_ssize_t>iov[i].iov_len:
                left -= <Py_ssize_t>iov[i].iov_len
                i += 1
            del self.zq[:i]  # NOTE: unpins the values now sent in full
            self.zq_off = left if i else self.zq_off + left
            if not self.zq:
                self.zq = None
                self.zq_off = 0
            if n < asked:
                return 0  # the kernel's buffer is full: EPOLLOUT says when to go on
        return 0

    def write_parts(self, list parts):
        """write() of bytes and PinnedValue parts, in order, without copying them."""
        cdef Py_ssize_t size = 0
        cdef object part
        if self.fd < 0:
            return  # lost: dropping ``parts`` unpins their items
        for part in parts:
            if type(part) is not bytes and type(part) is not PinnedValue:
                raise TypeError(f"write_parts takes bytes and pinned values, not {type(part)}")
            size += len(part)
        if self.zq is not None:
            self.zq.extend(parts)
            self.zq_bytes += size
        else:
            if PyByteArray_GET_SIZE(self.wbuf):
                # keep the order: what waits in wbuf goes first
                parts = [bytes(self.wbuf)] + parts
                size += PyByteArray_GET_SIZE(self.wbuf)
                self.wbuf = bytearray()
            self.zq = parts
            self.zq_off = 0
            self.zq_bytes = size
            self._flush_parts()
            if self.fd < 0:
                return
            self._update()
        self._maybe_pause_protocol()

    cdef int _maybe_pause_protocol(self) except -1:
        if not self.protocol_paused and self._unsent() > self.high:
            self.protocol_paused = True
            self.protocol.pause_writing()
        return 0

    cdef int _maybe_resume_protocol(self) except -1:
        if self.protocol_paused and self._unsent() <= self.low:
            self.protocol_paused = False
            self.protocol.resume_writing()
        return 0

    cdef int _force_close(self, exc) except -1:
        """Close the socket now (unsent bytes are dropped) and tell the protocol soon."""
        if self.fd < 0:
            return 0
        self.closing = True
        self.reading = False
        if self.registered:
            # NOTE: closing the socket removes it from the epoll set, but only once no other
            # descriptor refers to it; deleting it first is exact.
            epoll_ctl(self.poller.epfd, EPOLL_CTL_DEL, self.fd, NULL)
            self.registered = False
            self.poller.live.discard(self)
        self.fd = -1
        self.wbuf = bytearray()
        self.zq = None  # unpins what was unsent
        self.zq_bytes = self.zq_off = 0
        keep_peer = getattr(self.protocol, "keep_peer", None)
        if keep_peer is not None:
            keep_peer()  # while getpeername() still answers: watch's conn_close names the peer
        try:
            self.sock.close()
        except OSError:
            pass
        self.poller.loop.call_soon(self._connection_lost, exc)
        return 0

    def _connection_lost(self, exc):
        protocol, self.protocol, self.fast = self.protocol, None, None
        protocol.connection_lost(exc)

    # -- the asyncio transport interface -------------------------------------------------------

    def write(self, data):
        """Send ``data`` now as far as the kernel takes it; keep the rest, in order."""
        cdef Py_ssize_t n, size
        cdef int err
        if self.fd < 0:
            return  # lost: asyncio drops such writes too
        if type(data) is not bytes:
            data = bytes(data)
        size = PyBytes_GET_SIZE(data)
        if size == 0:
            return
        if self.zq is not None:
            self.zq.append(data)  # behind the parts waiting (see the invariants)
            self.zq_bytes += size
        elif PyByteArray_GET_SIZE(self.wbuf):
            self.wbuf += data
        else:
            n = send(self.fd, PyBytes_AS_STRING(data), size, MSG_DONTWAIT | MSG_NOSIGNAL)
            if n == size:
                return
            if n < 0:
                err = errno
                if not would_block(err):
                    self._force_close(os_error(err))
                    return
                n = 0
            self.wbuf += memoryview(data)[n:]
            self._update()
        self._maybe_pause_protocol()

    def writelines(self, list_of_data):
        self.write(b"".join(list_of_data))

    def close(self):
        """Stop reading; close once everything written has been sent."""
        if self.closing:
            return
        self.closing = True
        self.reading = False
        if self.fd >= 0 and not self._unsent():
            self._force_close(None)
        else:
            self._update()

    def abort(self):
        """Close at once, dropping what is unsent."""
        self._force_close(None)

    def is_closing(self):
        return self.closing

    def pause_reading(self):
        if self.closing or not self.reading:
            return
        self.reading = False
        self._update()

    def resume_reading(self):
        if self.closing or self.reading or self.eof:
            return
        self.reading = True
        self._update()

    def is_reading(self):
        return self.reading

    def get_write_buffer_size(self):
        return self._unsent()

    def get_write_buffer_limits(self):
        return (self.low, self.high)

    def set_write_buffer_limits(self, high=None, low=None):
        if high is None:
            high = DEFAULT_HIGH if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self.high = high
        self.low = low
        self._maybe_pause_protocol()

    def get_extra_info(self, name, default=None):
        if name == "socket":
            return self.sock
        if name == "peername" or name == "sockname":
            try:
                return self.sock.getpeername() if name == "peername" else self.sock.getsockname()
            except OSError:  # closed
                return default
        if name == "sslcontext":
            return None
        return default

    def get_protocol(self):
        return self.protocol

    def set_protocol(self, protocol):
        self.protocol = protocol
        self.fast = protocol if isinstance(protocol, ConnectionBase) else None
