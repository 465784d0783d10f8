# cython: language_level=3
"""C-level layout of the core classes, for projects that cimport them.

Job's fields are ordered widest first so the struct has no holes: with the
GC header and object header it is 128 bytes on a 64-bit CPython 3.11. Job has
no cdef methods on purpose: that would add a vtable pointer to every job.
"""

from cpython.object cimport PyObject


cdef extern from "Python.h":
    # borrowed-reference macros, declared here because cpython.list returns owned ones
    Py_ssize_t PyList_GET_SIZE(object) noexcept
    PyObject* PyList_GET_ITEM(object, Py_ssize_t) noexcept
from libc.stdint cimport int32_t, uint8_t, uint32_t, uint64_t


cdef class Job:
    cdef object _body
    cdef public object tube
    cdef public object reserver
    cdef double _runnable_at
    cdef double _created_at
    cdef uint64_t _id
    cdef uint32_t _priority
    cdef uint32_t _ttr
    cdef uint32_t _delay
    cdef uint32_t _reserves
    cdef uint32_t _timeouts
    cdef uint32_t _releases
    cdef uint32_t _buries
    cdef uint32_t _kicks
    cdef int32_t _file
    # slot in the one JobHeap holding this job; -1 when in none
    cdef int32_t _pos
    cdef uint8_t _state
    # 0 when runnable_at is None (the job sorts before every timed job)
    cdef uint8_t _has_runnable_at
    # the owner's number (Job.tag); sits in what was tail padding, so it is free
    cdef uint32_t _tag


ctypedef struct IdTable:
    # open addressing, linear probing, a power-of-two size: each slot is a Job,
    # NULL (free) or 1 (deleted); the id is read from the job itself
    PyObject** slots
    size_t mask
    size_t used         # live entries
    size_t deleted      # tombstones
    # 0: an id's home slot is id & mask (consecutive ids, the usual case, never
    # collide and stay cache-local); 1: ids are mixed first, after an insert
    # found a long cluster (strided or adversarial ids)
    bint mixed


cdef class JobHeap:
    # the binary heap, in slot order; owns the references and is what the GC traverses
    cdef list _items
    # id -> job index over borrowed pointers; slots is NULL when not _indexed
    cdef IdTable _index
    cdef bint _indexed


cdef class JobTable:
    # id -> job, owning its references (its tp_traverse walks the slots)
    cdef IdTable _table
    # unused: an object field makes Cython give the class GC support at all
    cdef object _gc


cdef class TubeHeap:
    cdef list _slots
    cdef dict _by_name


cdef inline bint job_less(Job a, Job b) noexcept:
    """Strict (runnable_at, priority, id) order; a job with no runnable_at sorts first."""
    if a._has_runnable_at != b._has_runnable_at:
        return a._has_runnable_at == 0
    if a._has_runnable_at and a._runnable_at != b._runnable_at:
        return a._runnable_at < b._runnable_at
    if a._priority != b._priority:
        return a._priority < b._priority
    return a._id < b._id


cdef inline PyObject* heap_top(JobHeap heap) noexcept:
    """The heap's least job (borrowed), or NULL when it is empty."""
    if PyList_GET_SIZE(heap._items) == 0:
        return NULL
    return PyList_GET_ITEM(heap._items, 0)


cdef inline bint heap_less(JobHeap a, JobHeap b) noexcept:
    """Order of heaps by their top jobs; an empty heap sorts after every other."""
    cdef PyObject* top_a = heap_top(a)
    cdef PyObject* top_b = heap_top(b)
    if top_a == NULL:
        return False
    if top_b == NULL:
        return True
    return job_less(<Job>top_a, <Job>top_b)
