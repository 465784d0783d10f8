# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: freethreading_compatible=True
"""The core data structures, compiled: Job, less(), JobHeap and TubeHeap.

A general module with no knowledge of the server: an indexed binary heap of
jobs ordered by (runnable_at, priority, id), whose positions live in the jobs,
so update and remove are O(log n) with no search. ``geanstalk._core_py`` is
the same API in pure Python; the two share one test suite, and the value rules
(which errors a bad value raises) are written down there.

Atomicity: comparisons read C fields only, so no Python code runs while a
heap is being rearranged; under the GIL every method is atomic. On
free-threaded CPython each method holds the heap's critical section (and the
job's, where a job's heap slot changes).
"""

cimport cython
from cpython.mem cimport PyMem_Free, PyMem_Realloc
from cpython.object cimport PyObject
from libc.math cimport isnan
from libc.stdint cimport INT32_MAX, int32_t, uint8_t, uint32_t, uint64_t

from .errors import EmptyQueue, JobAlreadyExists, JobMissing, QueueAlreadyExists, QueueMissing

__all__ = [
    "BURIED",
    "COMPILED",
    "DELAYED",
    "READY",
    "RESERVED",
    "STATE_NAMES",
    "Job",
    "JobHeap",
    "TubeHeap",
    "less",
]

COMPILED = True

READY = 0
DELAYED = 1
RESERVED = 2
BURIED = 3
STATE_NAMES = ("ready", "delayed", "reserved", "buried")

cdef object _U64 = (1 << 64) - 1
cdef object _U32 = (1 << 32) - 1
cdef object _I32_MIN = -(1 << 31)
cdef object _I32_MAX = (1 << 31) - 1


# --- value rules (identical to _core_py's) ---------------------------------------


cdef inline int _check_int(object value, str name) except -1:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    return 0


cdef object _range_error(str name, object lo, object hi, object value):
    return OverflowError(f"{name} must be in {lo}..{hi}, got {value}")


cdef uint64_t _u64(object value, str name) except? 0xFFFFFFFFFFFFFFFF:
    _check_int(value, name)
    if value < 0 or value > _U64:
        raise _range_error(name, 0, _U64, value)
    return <uint64_t>value


cdef uint32_t _u32(object value, str name) except? 0xFFFFFFFF:
    _check_int(value, name)
    if value < 0 or value > _U32:
        raise _range_error(name, 0, _U32, value)
    return <uint32_t>value


cdef int32_t _i32(object value, str name) except? -1:
    _check_int(value, name)
    if value < _I32_MIN or value > _I32_MAX:
        raise _range_error(name, _I32_MIN, _I32_MAX, value)
    return <int32_t>value


cdef double _real(object value, str name) except? -1.0:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number, not {type(value).__name__}")
    return float(value)


cdef object _bytes(object value):
    if not isinstance(value, bytes):
        raise TypeError(f"body must be bytes, not {type(value).__name__}")
    return value


cdef inline int _set_runnable(Job job, object value) except -1:
    cdef double when
    if value is None:
        job._has_runnable_at = 0
        job._runnable_at = 0.0
        return 0
    when = _real(value, "runnable_at")
    if isnan(when):
        raise ValueError("runnable_at must not be NaN")
    job._runnable_at = when
    job._has_runnable_at = 1
    return 0


# --- Job -------------------------------------------------------------------------


@cython.final
@cython.auto_pickle(False)
cdef class Job:
    """One job: its ordering key, its beanstalkd attributes and its counters.

    ``heap_index`` is the job's slot in the one JobHeap holding it, -1 when
    none; the heap keeps it so update and remove need no search.
    """

    def __cinit__(self):
        self._pos = -1
        self._body = b""

    def __init__(
        self,
        id,
        priority=0,
        runnable_at=None,
        ttr=1,
        body=b"",
        delay=0,
        created_at=0.0,
    ):
        self._id = _u64(id, "id")
        self._priority = _u32(priority, "priority")
        _set_runnable(self, runnable_at)
        self._ttr = _u32(ttr, "ttr")
        self._body = _bytes(body)
        self._delay = _u32(delay, "delay")
        self._created_at = _real(created_at, "created_at")

    @property
    def id(self):
        """The job id (unsigned 64-bit); fixed for the job's life."""
        return self._id

    @property
    def priority(self):
        return self._priority

    @priority.setter
    def priority(self, value):
        self._priority = _u32(value, "priority")

    @property
    def runnable_at(self):
        """When the clock next moves this job: ready time if delayed, TTR deadline if reserved."""
        if self._has_runnable_at:
            return self._runnable_at
        return None

    @runnable_at.setter
    def runnable_at(self, value):
        _set_runnable(self, value)

    @property
    def ttr(self):
        return self._ttr

    @ttr.setter
    def ttr(self, value):
        self._ttr = _u32(value, "ttr")

    @property
    def delay(self):
        return self._delay

    @delay.setter
    def delay(self, value):
        self._delay = _u32(value, "delay")

    @property
    def body(self):
        return self._body

    @body.setter
    def body(self, value):
        self._body = _bytes(value)

    @property
    def state(self):
        return self._state

    @state.setter
    def state(self, value):
        _check_int(value, "state")
        if value < READY or value > BURIED:
            raise _range_error("state", READY, BURIED, value)
        self._state = <uint8_t>value

    @property
    def created_at(self):
        return self._created_at

    @created_at.setter
    def created_at(self, value):
        self._created_at = _real(value, "created_at")

    @property
    def reserves(self):
        return self._reserves

    @reserves.setter
    def reserves(self, value):
        self._reserves = _u32(value, "reserves")

    @property
    def timeouts(self):
        return self._timeouts

    @timeouts.setter
    def timeouts(self, value):
        self._timeouts = _u32(value, "timeouts")

    @property
    def releases(self):
        return self._releases

    @releases.setter
    def releases(self, value):
        self._releases = _u32(value, "releases")

    @property
    def buries(self):
        return self._buries

    @buries.setter
    def buries(self, value):
        self._buries = _u32(value, "buries")

    @property
    def kicks(self):
        return self._kicks

    @kicks.setter
    def kicks(self, value):
        self._kicks = _u32(value, "kicks")

    @property
    def file(self):
        """Binlog file number holding the job's latest record; 0 when none."""
        return self._file

    @file.setter
    def file(self, value):
        self._file = _i32(value, "file")

    @property
    def heap_index(self):
        return self._pos

    def __repr__(self):
        return (
            f"Job(id={self._id}, state={STATE_NAMES[self._state]}, priority={self._priority}, "
            f"runnable_at={self.runnable_at!r}, ttr={self._ttr}, delay={self._delay}, "
            f"body=<{len(self._body)} bytes>)"
        )


def less(a, b):
    """Strict order on (runnable_at, priority, id); no runnable_at sorts first."""
    if not isinstance(a, Job) or not isinstance(b, Job):
        raise TypeError("less() compares two Job objects")
    return job_less(<Job>a, <Job>b)


# --- JobHeap ---------------------------------------------------------------------


cdef inline void _sift_up(PyObject** items, Py_ssize_t pos) noexcept:
    cdef PyObject* moving = items[pos]
    cdef PyObject* above
    cdef Py_ssize_t parent
    while pos > 0:
        parent = (pos - 1) >> 1
        above = items[parent]
        if not job_less(<Job>moving, <Job>above):
            break
        items[pos] = above
        (<Job>above)._pos = <int32_t>pos
        pos = parent
    items[pos] = moving
    (<Job>moving)._pos = <int32_t>pos


cdef inline void _sift_down(PyObject** items, Py_ssize_t n, Py_ssize_t pos) noexcept:
    cdef PyObject* moving = items[pos]
    cdef PyObject* below
    cdef Py_ssize_t child
    while True:
        child = 2 * pos + 1
        if child >= n:
            break
        if child + 1 < n and job_less(<Job>items[child + 1], <Job>items[child]):
            child += 1
        below = items[child]
        if not job_less(<Job>below, <Job>moving):
            break
        items[pos] = below
        (<Job>below)._pos = <int32_t>pos
        pos = child
    items[pos] = moving
    (<Job>moving)._pos = <int32_t>pos


cdef inline void _resift(PyObject** items, Py_ssize_t n, Py_ssize_t pos) noexcept:
    _sift_up(items, pos)
    if (<Job>items[pos])._pos == pos:
        _sift_down(items, n, pos)


cdef inline bint _holds(JobHeap heap, Job job) noexcept:
    cdef Py_ssize_t pos = job._pos
    return 0 <= pos < heap._n and heap._items[pos] == <PyObject*>job


cdef int _grow(JobHeap heap) except -1:
    cdef Py_ssize_t cap = heap._cap * 2 if heap._cap else 16
    if cap > <Py_ssize_t>INT32_MAX:
        cap = <Py_ssize_t>INT32_MAX
        if heap._n >= cap:
            raise OverflowError("a JobHeap holds at most 2**31 - 1 jobs")
    cdef PyObject** items = <PyObject**>PyMem_Realloc(heap._items, cap * sizeof(PyObject*))
    if items == NULL:
        raise MemoryError()
    heap._items = items
    heap._cap = cap
    return 0


cdef inline int _check_job(object value) except -1:
    if not isinstance(value, Job):
        raise TypeError(f"JobHeap holds Job objects, not {type(value).__name__}")
    return 0


cdef inline int _check_key(object value) except -1:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"job id must be an int, not {type(value).__name__}")
    return 0


cdef inline void _remove_at(JobHeap heap, Job job) noexcept:
    """Take job out of the array; the caller then drops it from the index."""
    cdef Py_ssize_t pos = job._pos
    heap._n -= 1
    cdef PyObject* last = heap._items[heap._n]
    if last != <PyObject*>job:
        heap._items[pos] = last
        (<Job>last)._pos = <int32_t>pos
        _resift(heap._items, heap._n, pos)
    job._pos = -1


@cython.final
@cython.no_gc_clear
@cython.auto_pickle(False)
cdef class JobHeap:
    """An indexed binary min-heap of Jobs under ``less``.

    Each job records its own slot, so update and remove are O(log n) without a
    search, and an id index makes remove_by_id O(log n) too. A job lives in at
    most one JobHeap at a time. Iteration walks a snapshot, so mutating the
    heap while iterating is safe (the loop sees the jobs present when it began).
    """

    def __cinit__(self):
        self._items = NULL
        self._n = 0
        self._cap = 0
        self._index = {}

    def __dealloc__(self):
        # the array's pointers are borrowed: _index owns the references
        PyMem_Free(self._items)
        self._items = NULL

    def push(self, job):
        _check_job(job)
        cdef Job j = <Job>job
        with cython.critical_section(self, j):
            if j._pos >= 0:
                raise JobAlreadyExists(f"job {j._id} is already in a heap")
            if self._n == self._cap:
                _grow(self)
            key = j._id
            if key in self._index:
                raise JobAlreadyExists(f"a job with id {j._id} is already in this heap")
            self._index[key] = j
            self._items[self._n] = <PyObject*>j
            self._n += 1
            _sift_up(self._items, self._n - 1)

    def pop(self):
        cdef Job top
        with cython.critical_section(self):
            if self._n == 0:
                raise EmptyQueue("pop from an empty JobHeap")
            top = <Job>self._items[0]
            self._n -= 1
            if self._n:
                self._items[0] = self._items[self._n]
                _sift_down(self._items, self._n, 0)
            top._pos = -1
            del self._index[top._id]
            return top

    def peek(self):
        with cython.critical_section(self):
            if self._n == 0:
                raise EmptyQueue("peek at an empty JobHeap")
            return <Job>self._items[0]

    def update(self, job):
        _check_job(job)
        cdef Job j = <Job>job
        with cython.critical_section(self, j):
            if not _holds(self, j):
                raise JobMissing(f"{j!r} is not in this heap")
            _resift(self._items, self._n, j._pos)

    def remove(self, job):
        _check_job(job)
        cdef Job j = <Job>job
        with cython.critical_section(self, j):
            if not _holds(self, j):
                raise JobMissing(f"{j!r} is not in this heap")
            _remove_at(self, j)
            del self._index[j._id]

    def remove_by_id(self, id):
        _check_key(id)
        cdef Job j
        with cython.critical_section(self):
            found = self._index.get(id)
            if found is None:
                raise JobMissing(f"no job with id {id} in this heap")
            j = <Job>found
            _remove_at(self, j)
            del self._index[j._id]
            return j

    def get(self, id, default=None):
        _check_key(id)
        with cython.critical_section(self):
            return self._index.get(id, default)

    def clear(self):
        cdef Py_ssize_t i
        with cython.critical_section(self):
            old = self._index
            for i in range(self._n):
                (<Job>self._items[i])._pos = -1
            self._n = 0
            self._index = {}
        # the jobs are released here, after the heap is consistent again
        del old

    def __len__(self):
        return self._n

    def __bool__(self):
        return self._n != 0

    def __contains__(self, item):
        with cython.critical_section(self):
            if isinstance(item, Job):
                return _holds(self, <Job>item)
            if isinstance(item, int) and not isinstance(item, bool):
                return item in self._index
            return False

    def __iter__(self):
        cdef Py_ssize_t i
        cdef list snapshot
        with cython.critical_section(self):
            snapshot = [<Job>self._items[i] for i in range(self._n)]
        return iter(snapshot)

    def __repr__(self):
        return f"<JobHeap of {self._n} jobs>"


# --- TubeHeap --------------------------------------------------------------------


@cython.final
@cython.auto_pickle(False)
cdef class _Slot:
    """A named heap's place inside a TubeHeap."""

    cdef object name
    cdef JobHeap heap
    cdef Py_ssize_t pos


cdef Py_ssize_t _slot_up(list slots, Py_ssize_t pos):
    cdef _Slot slot = <_Slot>slots[pos]
    cdef _Slot above
    cdef Py_ssize_t parent
    while pos > 0:
        parent = (pos - 1) >> 1
        above = <_Slot>slots[parent]
        if not heap_less(slot.heap, above.heap):
            break
        slots[pos] = above
        above.pos = pos
        pos = parent
    slots[pos] = slot
    slot.pos = pos
    return pos


cdef void _slot_down(list slots, Py_ssize_t pos):
    cdef Py_ssize_t n = len(slots)
    cdef _Slot slot = <_Slot>slots[pos]
    cdef _Slot below
    cdef Py_ssize_t child
    while True:
        child = 2 * pos + 1
        if child >= n:
            break
        if child + 1 < n and heap_less((<_Slot>slots[child + 1]).heap, (<_Slot>slots[child]).heap):
            child += 1
        below = <_Slot>slots[child]
        if not heap_less(below.heap, slot.heap):
            break
        slots[pos] = below
        below.pos = pos
        pos = child
    slots[pos] = slot
    slot.pos = pos


cdef inline void _slot_fix(list slots, Py_ssize_t pos):
    if _slot_up(slots, pos) == pos:
        _slot_down(slots, pos)


@cython.final
@cython.auto_pickle(False)
cdef class TubeHeap:
    """A heap of named JobHeaps ordered by each one's top job; empty heaps sort last.

    The caller calls ``fix(name)`` after changing a member heap's top. ``peek``
    raises EmptyQueue both when there are no heaps and when every heap is empty,
    so what it returns always has a job to look at.
    """

    def __cinit__(self):
        self._slots = []
        self._by_name = {}

    def push(self, name, heap):
        if not isinstance(heap, JobHeap):
            raise TypeError(f"TubeHeap holds JobHeap objects, not {type(heap).__name__}")
        cdef _Slot slot
        with cython.critical_section(self):
            if name in self._by_name:
                raise QueueAlreadyExists(f"{name!r} is already in this TubeHeap")
            slot = _Slot.__new__(_Slot)
            slot.name = name
            slot.heap = <JobHeap>heap
            slot.pos = len(self._slots)
            self._by_name[name] = slot
            self._slots.append(slot)
            _slot_up(self._slots, slot.pos)

    def peek(self):
        cdef _Slot top
        with cython.critical_section(self):
            if not self._slots or (<_Slot>self._slots[0]).heap._n == 0:
                raise EmptyQueue("no heap in this TubeHeap has a job")
            top = <_Slot>self._slots[0]
            return top.name, top.heap

    def fix(self, name):
        with cython.critical_section(self):
            found = self._by_name.get(name)
            if found is None:
                raise QueueMissing(f"{name!r} is not in this TubeHeap")
            _slot_fix(self._slots, (<_Slot>found).pos)

    def remove(self, name):
        cdef _Slot slot
        cdef _Slot last
        with cython.critical_section(self):
            found = self._by_name.pop(name, None)
            if found is None:
                raise QueueMissing(f"{name!r} is not in this TubeHeap")
            slot = <_Slot>found
            last = <_Slot>self._slots.pop()
            if last is not slot:
                self._slots[slot.pos] = last
                last.pos = slot.pos
                _slot_fix(self._slots, last.pos)
            return slot.heap

    def get(self, name, default=None):
        with cython.critical_section(self):
            found = self._by_name.get(name)
            return default if found is None else (<_Slot>found).heap

    def __contains__(self, name):
        return name in self._by_name

    def __len__(self):
        return len(self._slots)

    def __bool__(self):
        return len(self._slots) != 0

    def __iter__(self):
        with cython.critical_section(self):
            names = [(<_Slot>slot).name for slot in self._slots]
        return iter(names)

    def __repr__(self):
        return f"<TubeHeap of {len(self._slots)} heaps>"
