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

from collections.abc import Mapping

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
    "JobTable",
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
    def tag(self):
        """An unsigned 32-bit number for the job's owner; the core never reads it."""
        return self._tag

    @tag.setter
    def tag(self, value):
        self._tag = _u32(value, "tag")

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


# The id table: open addressing with linear probing over an array of job
# pointers (a slot holds a Job, NULL when free, or _DELETED). A slot has no id
# of its own: the probe reads it from the job, which the caller is about to use
# anyway, and that halves the table (8 bytes a slot instead of 16). A server
# hands ids out one by one, so the home slot is the id itself (masked): a
# window of live ids fills the table without a single collision and a run of
# inserts walks memory in order. Ids that cluster under that rule (multiples of
# a power of two, say) make some insert probe far; the table then switches, for
# good, to mixing each id before masking. Every id 0..2**64-1 is allowed: free
# and deleted slots are told apart by pointer, never by id.
#
# JobHeap uses it as its id index (borrowed pointers: the heap's list owns the
# jobs) and JobTable as its whole content (owned pointers).

cdef enum:
    _MIN_TABLE = 16
    _LONG_PROBE = 32


cdef PyObject* _DELETED = <PyObject*>1


cdef inline size_t _home(IdTable* t, uint64_t id) noexcept:
    if t.mixed:
        id ^= id >> 31
        id *= <uint64_t>0x9E3779B97F4A7C15
        id ^= id >> 29
    return <size_t>id & t.mask


cdef int _table_init(IdTable* t) except -1:
    t.slots = <PyObject**>PyMem_Calloc(_MIN_TABLE, sizeof(PyObject*))
    if t.slots == NULL:
        raise MemoryError()
    t.mask = _MIN_TABLE - 1
    t.used = 0
    t.deleted = 0
    t.mixed = False
    return 0


cdef inline PyObject** _find(IdTable* t, uint64_t id) noexcept:
    """The slot holding the job with this id, or NULL when there is none."""
    cdef size_t mask = t.mask
    cdef size_t i = _home(t, id)
    cdef PyObject** slots = t.slots
    cdef PyObject* p = slots[i]
    while p != NULL:
        if p != _DELETED and (<Job>p)._id == id:
            return &slots[i]
        i = (i + 1) & mask
        p = slots[i]
    return NULL


cdef inline PyObject** _free_slot(IdTable* t, uint64_t id) noexcept:
    """Where id goes: the first deleted or free slot from its home (id is absent)."""
    cdef size_t mask = t.mask
    cdef size_t i = _home(t, id)
    cdef PyObject** slots = t.slots
    while slots[i] != NULL and slots[i] != _DELETED:
        i = (i + 1) & mask
    return &slots[i]


cdef int _rehash(IdTable* t, size_t size) except -1:
    """Move every live entry into a fresh table of size slots; tombstones vanish."""
    cdef PyObject** fresh = <PyObject**>PyMem_Calloc(size, sizeof(PyObject*))
    if fresh == NULL:
        raise MemoryError()
    cdef PyObject** old = t.slots
    cdef size_t old_size = t.mask + 1
    cdef size_t i
    cdef PyObject* p
    t.slots = fresh
    t.mask = size - 1
    t.deleted = 0
    for i in range(old_size):
        p = old[i]
        if p != NULL and p != _DELETED:
            _free_slot(t, (<Job>p)._id)[0] = p
    PyMem_Free(old)
    return 0


cdef PyObject** _make_room(IdTable* t, uint64_t id) except NULL:
    """The slot where id (absent) goes, growing or sweeping the table first.

    Nothing is stored yet: the caller finishes whatever else can fail, then
    calls _fill, so a failure leaves the table as it was.
    """
    cdef size_t size = t.mask + 1
    cdef PyObject** slot
    if (t.used + t.deleted + 1) * 2 > size:
        # full of live entries: double; full of tombstones: sweep them
        _rehash(t, size * 2 if t.used * 4 >= size else size)
    slot = _free_slot(t, id)
    if not t.mixed and ((<size_t>(slot - t.slots) - _home(t, id)) & t.mask) > _LONG_PROBE:
        t.mixed = True
        try:
            _rehash(t, t.mask + 1)
        except MemoryError:
            t.mixed = False
            raise
        slot = _free_slot(t, id)
    return slot


cdef inline void _fill(IdTable* t, PyObject** slot, PyObject* job) noexcept:
    if slot[0] == _DELETED:
        t.deleted -= 1
    slot[0] = job
    t.used += 1


cdef inline void _discard(IdTable* t, PyObject** slot) noexcept:
    """Empty a live slot, leaving a tombstone.

    Backward-shift deletion would keep the table free of tombstones, but with
    consecutive ids the table is one long run and every deletion would scan to
    its end; a tombstone costs nothing, is reused by inserts, and the next
    rehash clears it.
    """
    slot[0] = _DELETED
    t.deleted += 1
    t.used -= 1
    # shrink a table that a burst left mostly empty (failure just keeps it big)
    if t.mask + 1 > 4 * _MIN_TABLE and t.used * 8 < t.mask + 1:
        try:
            _rehash(t, (t.mask + 1) // 4)
        except MemoryError:
            PyErr_Clear()


cdef inline void _table_free(IdTable* t) noexcept:
    PyMem_Free(t.slots)
    t.slots = NULL
    t.mask = 0
    t.used = 0
    t.deleted = 0


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


cdef inline int _need_index(JobHeap heap) except -1:
    if not heap._indexed:
        raise TypeError("this JobHeap has no id index (made with indexed=False)")
    return 0


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
    if heap._indexed:
        _discard(&heap._index, _find(&heap._index, job._id))
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

    ``JobHeap(indexed=False)`` keeps no id index, which saves its memory (about
    17 bytes a job) and its upkeep on every push and pop. Such a heap refuses
    the id lookups (remove_by_id, get, ``id in heap``) with TypeError rather
    than answer them by an O(n) scan nobody would expect, and does not notice
    two different Job objects with the same id; push, pop, peek, update,
    remove(job) and ``job in heap`` work as usual.

    Changing a job's priority or runnable_at and then calling update() are two
    steps: threads that share a heap must not change the key of a job that is
    in it while others use the heap, or must serialise the pair themselves.
    """

    def __cinit__(self, indexed=True):
        self._items = []
        self._indexed = bool(indexed)
        if self._indexed:
            _table_init(&self._index)

    def __del__(self):
        # a dropped heap frees its jobs' slots, so jobs that outlive it can go
        # into another heap (this runs before the GC clears anything)
        cdef Py_ssize_t i
        items = self._items
        for i in range(PyList_GET_SIZE(items)):
            (<Job>PyList_GET_ITEM(items, i))._pos = -1

    def __dealloc__(self):
        # the table's pointers are borrowed from _items, which releases them
        _table_free(&self._index)

    @property
    def indexed(self):
        """Whether the heap keeps an id index (see the class docstring)."""
        return self._indexed

    def push(self, job):
        _check_job(job)
        cdef Job j = <Job>job
        cdef PyObject** slot = NULL
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
            if self._indexed:
                if _find(&self._index, j._id) != NULL:
                    raise JobAlreadyExists(f"a job with id {j._id} is already in this heap")
                slot = _make_room(&self._index, j._id)
            self._items.append(j)
            if slot != NULL:
                _fill(&self._index, slot, <PyObject*>j)
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

    def reprioritize(self, pairs):
        """For each (job, priority) of an iterable, in order: set the job's
        priority and update() it; the bulk form of ``job.priority = p;
        heap.update(job)``, as a keyed queue's ``q[key] = priority`` is.

        It exists for callers that change many priorities at once: one call
        saves the per-call cost, which in a warm heap is most of an update.
        The keys change one at a time on purpose: re-sifting jobs whose keys
        were all changed beforehand does not restore a heap. It stops at the
        first pair whose job the heap does not hold (JobMissing) or whose
        priority is not a uint32 (TypeError, OverflowError), leaving that
        job as it was; the pairs before it stay done.
        """
        cdef Job j
        cdef uint32_t priority
        cdef Py_ssize_t i
        cdef list work = list(pairs)
        for i in range(PyList_GET_SIZE(work)):
            pair = <object>PyList_GET_ITEM(work, i)
            if not isinstance(pair, tuple) or len(<tuple>pair) != 2:
                raise TypeError("reprioritize takes (job, priority) pairs")
            _check_job((<tuple>pair)[0])
        with cython.critical_section(self):
            for i in range(PyList_GET_SIZE(work)):
                pair = <object>PyList_GET_ITEM(work, i)
                j = <Job>(<tuple>pair)[0]
                if not _holds(self, j):
                    raise JobMissing(f"{j!r} is not in this heap")
                priority = _u32((<tuple>pair)[1], "priority")
                j._priority = priority
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
        cdef PyObject** slot = NULL
        cdef Job j
        valid = _id_of(id, &key)
        with cython.critical_section(self):
            _need_index(self)
            if valid:
                slot = _find(&self._index, key)
            if slot == NULL:
                raise JobMissing(f"no job with id {id} in this heap")
            j = <Job>slot[0]
            _take_out(self, j)
            return j

    def remove_many_by_id(self, ids):
        """remove_by_id() each id of an iterable, in order; the removed jobs, in that order.

        The bulk form of remove_by_id, for the same reason as reprioritize. It
        stops at the first id the heap does not hold, raising JobMissing; the
        jobs removed before it stay removed (they are lost to the caller, who
        asked for them gone).
        """
        cdef uint64_t key = 0
        cdef PyObject** slot
        cdef Job j
        cdef list work = list(ids)
        cdef list removed = []
        cdef Py_ssize_t i
        with cython.critical_section(self):
            _need_index(self)
            for i in range(PyList_GET_SIZE(work)):
                id = <object>PyList_GET_ITEM(work, i)
                slot = NULL
                if _id_of(id, &key):
                    slot = _find(&self._index, key)
                if slot == NULL:
                    raise JobMissing(f"no job with id {id} in this heap")
                j = <Job>slot[0]
                removed.append(j)
                _take_out(self, j)
        return removed

    def get(self, id, default=None):
        cdef uint64_t key = 0
        cdef PyObject** slot = NULL
        valid = _id_of(id, &key)
        with cython.critical_section(self):
            _need_index(self)
            if valid:
                slot = _find(&self._index, key)
            if slot == NULL:
                return default
            return <Job>slot[0]

    def clear(self):
        cdef Py_ssize_t i
        cdef list old
        cdef IdTable fresh
        fresh.slots = NULL
        fresh.mask = fresh.used = fresh.deleted = 0
        fresh.mixed = False
        if self._indexed:
            _table_init(&fresh)
        with cython.critical_section(self):
            old = self._items
            for i in range(PyList_GET_SIZE(old)):
                (<Job>PyList_GET_ITEM(old, i))._pos = -1
            _table_free(&self._index)
            self._index = fresh
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
        if not isinstance(item, int) or isinstance(item, bool):
            return False
        _need_index(self)
        if not _id_of(item, &key):
            return False
        with cython.critical_section(self):
            return _find(&self._index, key) != NULL

    def __iter__(self):
        cdef list snapshot
        with cython.critical_section(self):
            snapshot = list(self._items)
        return iter(snapshot)

    def __repr__(self):
        return f"<JobHeap of {PyList_GET_SIZE(self._items)} jobs>"


# --- JobTable --------------------------------------------------------------------


cdef extern from "Python.h":
    ctypedef int (*visitproc)(PyObject*, void*) noexcept
    ctypedef struct _TypeGcSlots "PyTypeObject":
        int (*tp_traverse)(PyObject*, visitproc, void*) noexcept
        int (*tp_clear)(PyObject*) noexcept
    void* Py_TYPE_ptr "Py_TYPE"(PyObject*) noexcept
    bint PyType_HasFeature(void*, unsigned long) noexcept
    unsigned long Py_TPFLAGS_HEAPTYPE
    void Py_INCREF_ptr "Py_INCREF"(PyObject*) noexcept
    void Py_DECREF_ptr "Py_DECREF"(PyObject*) noexcept


cdef void _release_all(IdTable* t) noexcept:
    """Empty t and drop its references, leaving an empty (slot-less) table.

    The table is detached before the first release, so a job's destructor
    that reaches back into the table sees it already empty.
    """
    cdef PyObject** slots = t.slots
    cdef size_t size = t.mask + 1 if slots != NULL else 0
    cdef size_t i
    t.slots = NULL
    t.mask = 0
    t.used = 0
    t.deleted = 0
    for i in range(size):
        if slots[i] != NULL and slots[i] != _DELETED:
            Py_DECREF_ptr(slots[i])
    PyMem_Free(slots)


@cython.final
@cython.auto_pickle(False)
cdef class JobTable:
    """A map from job id to Job, held in C: the registry of every live job.

    A dict of int -> Job spends about 75 bytes a job on its entry and the int
    key object; this open-addressing table spends 16 to 32 bytes (one pointer
    a slot, the table at most half full), the id being read from the job.
    ``add`` refuses a second job with an id already present (JobAlreadyExists);
    ``pop`` and ``remove`` of an absent job raise JobMissing; ``table[id]``
    raises KeyError like a dict; iteration yields the jobs (a snapshot, in no
    particular order). Every id 0..2**64-1 is allowed, 0 included. Each method
    is atomic, as JobHeap's are.

    The table owns its references and shows them to the cyclic GC (a job's
    tube or reserver often refers back to whatever holds the table).
    """

    def __cinit__(self):
        _table_init(&self._table)

    def __dealloc__(self):
        _release_all(&self._table)

    def add(self, job):
        _check_job(job)
        cdef Job j = <Job>job
        cdef PyObject** slot
        with cython.critical_section(self):
            if self._table.slots == NULL:
                _table_init(&self._table)
            if _find(&self._table, j._id) != NULL:
                raise JobAlreadyExists(f"a job with id {j._id} is already in this table")
            slot = _make_room(&self._table, j._id)
            Py_INCREF_ptr(<PyObject*>j)
            _fill(&self._table, slot, <PyObject*>j)

    def get(self, id, default=None):
        cdef uint64_t key = 0
        cdef PyObject** slot = NULL
        valid = _id_of(id, &key)
        with cython.critical_section(self):
            if valid and self._table.slots != NULL:
                slot = _find(&self._table, key)
            if slot == NULL:
                return default
            return <Job>slot[0]

    def __getitem__(self, id):
        cdef uint64_t key = 0
        cdef PyObject** slot = NULL
        valid = _id_of(id, &key)
        with cython.critical_section(self):
            if valid and self._table.slots != NULL:
                slot = _find(&self._table, key)
            if slot == NULL:
                raise KeyError(id)
            return <Job>slot[0]

    def pop(self, id):
        cdef uint64_t key = 0
        cdef PyObject** slot = NULL
        cdef Job j
        valid = _id_of(id, &key)
        with cython.critical_section(self):
            if valid and self._table.slots != NULL:
                slot = _find(&self._table, key)
            if slot == NULL:
                raise JobMissing(f"no job with id {id} in this table")
            j = <Job>slot[0]  # our own reference, for the caller
            _discard(&self._table, slot)
            Py_DECREF_ptr(<PyObject*>j)  # the table's
            return j

    def remove(self, job):
        _check_job(job)
        cdef Job j = <Job>job
        cdef PyObject** slot = NULL
        with cython.critical_section(self):
            if self._table.slots != NULL:
                slot = _find(&self._table, j._id)
            if slot == NULL or slot[0] != <PyObject*>j:
                raise JobMissing(f"{j!r} is not in this table")
            _discard(&self._table, slot)
            Py_DECREF_ptr(<PyObject*>j)  # the caller's argument keeps it alive

    def reserve(self, n):
        """Make room for n jobs in all, so that adding up to that many does
        not grow the table again; never shrinks it.

        Growing moves every job into a table twice the size in one step (a
        tenth of a second at ten million jobs, with nothing else running);
        a caller about to add very many, like the binlog's replay at
        start-up, moves the ones already here once, now, instead.
        """
        cdef Py_ssize_t want = n
        cdef size_t size
        cdef size_t target
        if want < 0:
            raise ValueError("reserve() needs a count >= 0")
        if want > (<Py_ssize_t>1 << 40):
            raise OverflowError(f"cannot reserve room for {want} jobs")
        with cython.critical_section(self):
            if self._table.slots == NULL:
                _table_init(&self._table)
            size = self._table.mask + 1
            target = size
            while target < 2 * <size_t>want:
                target *= 2
            if target > size:
                _rehash(&self._table, target)

    def clear(self):
        cdef IdTable old
        cdef IdTable fresh
        _table_init(&fresh)
        with cython.critical_section(self):
            old = self._table
            self._table = fresh
        _release_all(&old)

    def __contains__(self, item):
        cdef uint64_t key = 0
        cdef PyObject** slot = NULL
        if isinstance(item, Job):
            with cython.critical_section(self):
                if self._table.slots != NULL:
                    slot = _find(&self._table, (<Job>item)._id)
                return slot != NULL and slot[0] == <PyObject*>item
        if not isinstance(item, int) or isinstance(item, bool) or not _id_of(item, &key):
            return False
        with cython.critical_section(self):
            return self._table.slots != NULL and _find(&self._table, key) != NULL

    def __len__(self):
        return self._table.used

    def __bool__(self):
        return self._table.used != 0

    def __iter__(self):
        cdef list snapshot = []
        cdef size_t i
        cdef PyObject* p
        with cython.critical_section(self):
            if self._table.slots != NULL:
                for i in range(self._table.mask + 1):
                    p = self._table.slots[i]
                    if p != NULL and p != _DELETED:
                        snapshot.append(<Job>p)
        return iter(snapshot)

    def as_dict(self):
        """A new dict of id -> job with the table's content."""
        return {(<Job>job)._id: job for job in self}

    def largest_id(self):
        """The largest id held, None when empty (the design's GetLargestID).

        A scan of the slots, O(capacity): it is asked rarely (to continue ids
        after a recovery), so add and remove keep no running maximum for it.
        """
        cdef size_t i
        cdef PyObject* p
        cdef uint64_t largest = 0
        cdef bint found = False
        with cython.critical_section(self):
            if self._table.slots != NULL:
                for i in range(self._table.mask + 1):
                    p = self._table.slots[i]
                    if p != NULL and p != _DELETED and (not found or (<Job>p)._id > largest):
                        largest = (<Job>p)._id
                        found = True
        return largest if found else None

    def __eq__(self, other):
        # equal to a table or dict with the same ids mapped to the same jobs,
        # so code written against the dict this replaces keeps working
        if isinstance(other, JobTable):
            other = (<JobTable>other).as_dict()
        elif not isinstance(other, Mapping):
            return NotImplemented
        return len(self) == len(other) and self.as_dict() == dict(other)

    __hash__ = None

    def __repr__(self):
        return f"<JobTable of {self._table.used} jobs>"


cdef int _job_table_traverse(PyObject* o, visitproc visit, void* arg) noexcept:
    # borrowed pointers only: a traversal must not change reference counts
    cdef IdTable* t = &(<JobTable>o)._table
    cdef size_t i
    cdef int err
    cdef PyObject* p
    if PyType_HasFeature(Py_TYPE_ptr(o), Py_TPFLAGS_HEAPTYPE):
        err = visit(<PyObject*>Py_TYPE_ptr(o), arg)
        if err:
            return err
    if t.slots == NULL:
        return 0
    for i in range(t.mask + 1):
        p = t.slots[i]
        if p != NULL and p != _DELETED:
            err = visit(p, arg)
            if err:
                return err
    return 0


cdef int _job_table_clear(PyObject* o) noexcept:
    _release_all(&(<JobTable>o)._table)
    return 0


# Cython makes a class collectable only when it has object fields, and then
# traverses just those. JobTable's references sit in a C array, so it declares
# one unused object field (_gc) to get the GC flag, and its traverse and clear
# are replaced by ones that walk the table.
(<_TypeGcSlots*><void*>JobTable).tp_traverse = _job_table_traverse
(<_TypeGcSlots*><void*>JobTable).tp_clear = _job_table_clear


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
