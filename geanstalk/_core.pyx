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
job's, where a job's heap slot changes); a TubeHeap reads its member heaps'
top jobs without their locks, so their owner serialises changes to them with
the TubeHeap's use. ``cython.critical_section`` needs Cython 3.1 or newer.
"""

cimport cython
from cpython.exc cimport PyErr_Clear
from cpython.mem cimport PyMem_Calloc, PyMem_Free
from cpython.object cimport PyObject
from libc.math cimport isnan
cdef extern from *:
    void __builtin_prefetch(const void*) noexcept nogil

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
    cdef unsigned long long result
    _check_int(value, name)
    try:
        result = value  # C conversion: OverflowError below 0 or above 2**64 - 1
    except OverflowError:
        result = 0xFFFFFFFFFFFFFFFF
    if result > 0xFFFFFFFF:
        raise _range_error(name, 0, _U32, value)
    return <uint32_t>result


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


cdef extern from "Python.h":
    ctypedef struct PyListObject:
        PyObject** ob_item


cdef inline PyObject** _array(list items) noexcept:
    # the list's own array: sifting moves pointers inside it, which leaves every
    # reference count as it was (re-read it after any append or pop)
    return (<PyListObject*>items).ob_item


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
    cdef Py_ssize_t grandchild
    while True:
        child = 2 * pos + 1
        if child >= n:
            break
        # the next level's jobs are scattered in memory: ask for all four now,
        # so their cache misses overlap with this level's comparisons
        grandchild = 2 * child + 1
        if grandchild + 3 < n:
            __builtin_prefetch(items[grandchild])
            __builtin_prefetch(items[grandchild + 1])
            __builtin_prefetch(items[grandchild + 2])
            __builtin_prefetch(items[grandchild + 3])
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
    # the parent and both children are compared next and lie far apart in
    # memory: fetch them together so the misses overlap
    if pos:
        __builtin_prefetch(items[(pos - 1) >> 1])
    if 2 * pos + 2 < n:
        __builtin_prefetch(items[2 * pos + 1])
        __builtin_prefetch(items[2 * pos + 2])
    _sift_up(items, pos)
    if (<Job>items[pos])._pos == pos:
        _sift_down(items, n, pos)


# The id index: open addressing with linear probing. A server hands ids out
# one by one, so the home slot is the id itself (masked): a window of live ids
# fills the table without a single collision and a run of pushes walks memory
# in order. Ids that cluster under that rule (multiples of a power of two, say)
# make some insert probe far; the table then switches, for good, to mixing
# each id before masking.

cdef enum:
    _MIN_TABLE = 16
    _LONG_PROBE = 32


cdef inline size_t _home(JobHeap heap, uint64_t id) noexcept:
    if heap._mixed:
        id ^= id >> 31
        id *= <uint64_t>0x9E3779B97F4A7C15
        id ^= id >> 29
    return <size_t>id & heap._mask


cdef PyObject* _DELETED = <PyObject*>1


cdef inline IdSlot* _find(JobHeap heap, uint64_t id) noexcept:
    """The slot holding id, or NULL when id is not in the table."""
    cdef size_t mask = heap._mask
    cdef size_t i = _home(heap, id)
    cdef IdSlot* table = heap._table
    while table[i].job != NULL:
        if table[i].id == id and table[i].job != _DELETED:
            return &table[i]
        i = (i + 1) & mask
    return NULL


cdef inline IdSlot* _free_slot(JobHeap heap, uint64_t id) noexcept:
    """Where id goes: the first deleted or free slot from its home (id is absent)."""
    cdef size_t mask = heap._mask
    cdef size_t i = _home(heap, id)
    cdef IdSlot* table = heap._table
    while table[i].job != NULL and table[i].job != _DELETED:
        i = (i + 1) & mask
    return &table[i]


cdef inline size_t _probes(JobHeap heap, uint64_t id, IdSlot* slot) noexcept:
    return (<size_t>(slot - heap._table) - _home(heap, id)) & heap._mask


cdef inline PyObject* _lookup(JobHeap heap, uint64_t id) noexcept:
    cdef IdSlot* slot = _find(heap, id)
    return NULL if slot == NULL else slot.job


cdef int _rehash(JobHeap heap, size_t size) except -1:
    """Move every live entry into a fresh table of size slots; tombstones vanish."""
    cdef IdSlot* table = <IdSlot*>PyMem_Calloc(size, sizeof(IdSlot))
    if table == NULL:
        raise MemoryError()
    cdef IdSlot* old = heap._table
    cdef size_t old_size = heap._mask + 1
    cdef size_t i
    heap._table = table
    heap._mask = size - 1
    heap._deleted = 0
    for i in range(old_size):
        if old[i].job != NULL and old[i].job != _DELETED:
            _free_slot(heap, old[i].id)[0] = old[i]
    PyMem_Free(old)
    return 0


cdef inline void _forget(JobHeap heap, uint64_t id) noexcept:
    """Drop id from the index (it must be there), leaving a tombstone.

    Backward-shift deletion would keep the table free of tombstones, but with
    consecutive ids the table is one long run and every deletion would scan to
    its end; a tombstone costs nothing, is reused by inserts, and the next
    rehash clears it.
    """
    _find(heap, id).job = _DELETED
    heap._deleted += 1
    # shrink a table that a burst left mostly empty (failure just keeps it big)
    cdef size_t count = <size_t>PyList_GET_SIZE(heap._items)
    if heap._mask + 1 > 4 * _MIN_TABLE and count * 8 < heap._mask + 1:
        try:
            _rehash(heap, (heap._mask + 1) // 4)
        except MemoryError:
            PyErr_Clear()


cdef inline int _check_job(object value) except -1:
    if not isinstance(value, Job):
        raise TypeError(f"JobHeap holds Job objects, not {type(value).__name__}")
    return 0


cdef inline int _id_of(object value, uint64_t* out) except -1:
    """1 and the id in out, or 0 for an int no job can have; TypeError for non-ints."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"job id must be an int, not {type(value).__name__}")
    if value < 0:
        return 0
    try:
        out[0] = <uint64_t>value
    except OverflowError:
        return 0
    return 1


cdef inline bint _holds(JobHeap heap, Job job) noexcept:
    cdef Py_ssize_t pos = job._pos
    return 0 <= pos < PyList_GET_SIZE(heap._items) and PyList_GET_ITEM(heap._items, pos) == <PyObject*>job


cdef inline void _take_out(JobHeap heap, Job job):
    """Remove a job the heap holds; afterwards the heap is consistent again.

    The caller holds its own reference to job, so the list's reference, which
    is dropped here, is never the last one: no destructor can run mid-way.
    """
    cdef list items = heap._items
    cdef Py_ssize_t pos = job._pos
    cdef Py_ssize_t last = PyList_GET_SIZE(items) - 1
    cdef PyObject** array = _array(items)
    cdef PyObject* moved = array[last]
    array[last] = <PyObject*>job
    array[pos] = moved
    items.pop()
    job._pos = -1
    _forget(heap, job._id)
    if pos < last:
        array = _array(items)
        (<Job>moved)._pos = <int32_t>pos
        _resift(array, last, pos)


@cython.final
@cython.no_gc_clear
@cython.auto_pickle(False)
cdef class JobHeap:
    """An indexed binary min-heap of Jobs under ``less``.

    Each job records its own slot, so update and remove are O(log n) without a
    search, and an id index makes remove_by_id O(log n) too. A job lives in at
    most one JobHeap at a time. Iteration walks a snapshot in slot order, so
    mutating the heap while iterating is safe (the loop sees the jobs present
    when it began).

    Changing a job's priority or runnable_at and then calling update() are two
    steps: threads that share a heap must not change the key of a job that is
    in it while others use the heap, or must serialise the pair themselves.
    """

    def __cinit__(self):
        self._items = []
        self._table = <IdSlot*>PyMem_Calloc(_MIN_TABLE, sizeof(IdSlot))
        if self._table == NULL:
            raise MemoryError()
        self._mask = _MIN_TABLE - 1

    def __del__(self):
        # a dropped heap frees its jobs' slots, so jobs that outlive it can go
        # into another heap (this runs before the GC clears anything)
        cdef Py_ssize_t i
        items = self._items
        for i in range(PyList_GET_SIZE(items)):
            (<Job>PyList_GET_ITEM(items, i))._pos = -1

    def __dealloc__(self):
        # the table's pointers are borrowed from _items, which releases them
        PyMem_Free(self._table)
        self._table = NULL

    def push(self, job):
        _check_job(job)
        cdef Job j = <Job>job
        cdef IdSlot* slot
        cdef Py_ssize_t n
        with cython.critical_section(self, j):
            if j._pos >= 0:
                raise JobAlreadyExists(f"job {j._id} is already in a heap")
            n = PyList_GET_SIZE(self._items)
            if n >= <Py_ssize_t>INT32_MAX:
                raise OverflowError("a JobHeap holds at most 2**31 - 1 jobs")
            if n:
                # sift_up reads the parent first; start fetching it now
                __builtin_prefetch(PyList_GET_ITEM(self._items, (n - 1) >> 1))
            if _find(self, j._id) != NULL:
                raise JobAlreadyExists(f"a job with id {j._id} is already in this heap")
            if (<size_t>n + self._deleted + 1) * 2 > self._mask + 1:
                # full of live entries: double; full of tombstones: sweep them
                _rehash(self, (self._mask + 1) * (2 if <size_t>n * 4 >= self._mask + 1 else 1))
            slot = _free_slot(self, j._id)
            if not self._mixed and _probes(self, j._id, slot) > _LONG_PROBE:
                self._mixed = True
                try:
                    _rehash(self, self._mask + 1)
                except MemoryError:
                    self._mixed = False
                    raise
                slot = _free_slot(self, j._id)
            self._items.append(j)
            if slot.job == _DELETED:
                self._deleted -= 1
            slot.id = j._id
            slot.job = <PyObject*>j
            _sift_up(_array(self._items), n)

    def pop(self):
        cdef Job top
        with cython.critical_section(self):
            if PyList_GET_SIZE(self._items) == 0:
                raise EmptyQueue("pop from an empty JobHeap")
            top = <Job>PyList_GET_ITEM(self._items, 0)
            _take_out(self, top)
            return top

    def peek(self):
        with cython.critical_section(self):
            if PyList_GET_SIZE(self._items) == 0:
                raise EmptyQueue("peek at an empty JobHeap")
            return <Job>PyList_GET_ITEM(self._items, 0)

    def update(self, job):
        _check_job(job)
        cdef Job j = <Job>job
        with cython.critical_section(self, j):
            if not _holds(self, j):
                raise JobMissing(f"{j!r} is not in this heap")
            _resift(_array(self._items), PyList_GET_SIZE(self._items), j._pos)

    def remove(self, job):
        _check_job(job)
        cdef Job j = <Job>job
        with cython.critical_section(self, j):
            if not _holds(self, j):
                raise JobMissing(f"{j!r} is not in this heap")
            _take_out(self, j)

    def remove_by_id(self, id):
        cdef uint64_t key = 0
        cdef PyObject* found = NULL
        cdef Job j
        valid = _id_of(id, &key)
        with cython.critical_section(self):
            if valid:
                found = _lookup(self, key)
            if found == NULL:
                raise JobMissing(f"no job with id {id} in this heap")
            j = <Job>found
            _take_out(self, j)
            return j

    def get(self, id, default=None):
        cdef uint64_t key = 0
        cdef PyObject* found = NULL
        valid = _id_of(id, &key)
        with cython.critical_section(self):
            if valid:
                found = _lookup(self, key)
            if found == NULL:
                return default
            return <Job>found

    def clear(self):
        cdef Py_ssize_t i
        cdef list old
        cdef IdSlot* table = <IdSlot*>PyMem_Calloc(_MIN_TABLE, sizeof(IdSlot))
        if table == NULL:
            raise MemoryError()
        with cython.critical_section(self):
            old = self._items
            for i in range(PyList_GET_SIZE(old)):
                (<Job>PyList_GET_ITEM(old, i))._pos = -1
            PyMem_Free(self._table)
            self._table = table
            self._mask = _MIN_TABLE - 1
            self._deleted = 0
            self._mixed = False
            self._items = []
        # the jobs are released here, after the heap is consistent again
        del old

    def __len__(self):
        return PyList_GET_SIZE(self._items)

    def __bool__(self):
        return PyList_GET_SIZE(self._items) != 0

    def __contains__(self, item):
        cdef uint64_t key = 0
        if isinstance(item, Job):
            with cython.critical_section(self):
                return _holds(self, <Job>item)
        if not isinstance(item, int) or isinstance(item, bool) or not _id_of(item, &key):
            return False
        with cython.critical_section(self):
            return _lookup(self, key) != NULL

    def __iter__(self):
        cdef list snapshot
        with cython.critical_section(self):
            snapshot = list(self._items)
        return iter(snapshot)

    def __repr__(self):
        return f"<JobHeap of {PyList_GET_SIZE(self._items)} jobs>"


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
            if not self._slots or heap_top((<_Slot>self._slots[0]).heap) == NULL:
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
