# The native Store's C-level fields, shared with the compiled session (_csession.pyx), which
# drives the C store directly on its hot path.
from libc.stdint cimport uint64_t

from ._store_c cimport item, store


cdef class Store:
    cdef store _s
    cdef object _clock
    cdef double _clock_base
    cdef uint64_t _version  # bumped by every call, so an items() walk can tell it must stop
    cdef readonly str backend

    cdef void _tick(self) except *
    cdef object _update(self, int mode, object key, object value, object flags, object exptime,
                        object cas_unique)
    cdef object _delta(self, object key, object delta, int incr)


cdef class PinnedValue:
    cdef Store store
    cdef item *it
    cdef const char *ptr
    cdef Py_ssize_t size


cdef PinnedValue pin_value(Store store, item *it)
