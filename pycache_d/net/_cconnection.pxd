# The compiled connection's C-level interface, shared with the compiled stream transport
# (_cstream.pyx), which hands it what it reads without making a bytes object.
from pycache_d.protocol._csession cimport NativeSession


cdef class ConnectionBase:
    cdef public object transport
    cdef public object session
    cdef public bint _closing
    cdef public bint _paused
    cdef public bint _continuing
    cdef public bint _eof
    cdef public bytes _pending
    cdef public Py_ssize_t _lines
    cdef public double last_active
    cdef public Py_ssize_t written
    cdef public Py_ssize_t read_bytes
    cdef public Py_ssize_t feed_slice
    cdef public Py_ssize_t max_lines
    cdef public Py_ssize_t small_reply
    cdef public Py_ssize_t high_water
    cdef public object write
    cdef public object writev

    cdef int received(self, const char *p, Py_ssize_t size, object data) except -1
    cdef char *block_room(self, Py_ssize_t *room) except? NULL
    cdef int block_received(self, Py_ssize_t n) except -1
