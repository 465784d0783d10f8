"""The core data structures in pure Python: the fallback and the test oracle.

This module mirrors ``geanstalk._core`` (the Cython build) name for name,
error for error, so that ``geanstalk.core`` can pick either and the test suite
can run every test on both and compare them step by step. It favours being
obviously correct over being fast; where speed matters the compiled module is
used.

Value rules shared by both implementations (a test checks they agree):

* Integer fields (``id``, ``priority``, ``ttr``, ``delay``, the counters,
  ``file``, ``state``) take an ``int`` (``bool`` is refused): anything else is
  a ``TypeError``, an int outside the field's C range is an ``OverflowError``
  (``state``'s range is 0..3).
* ``runnable_at`` takes ``None`` or a real number (``int`` or ``float``, not
  ``bool``) stored as a float; NaN is a ``ValueError`` because it would break
  the heap's ordering. ``created_at`` takes a real number.
* ``body`` takes ``bytes``.

Thread safety: each heap method takes the heap's lock, so every method is
atomic with respect to the others, as the compiled methods are under the GIL.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

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

COMPILED = False

READY = 0
DELAYED = 1
RESERVED = 2
BURIED = 3
STATE_NAMES = ("ready", "delayed", "reserved", "buried")

_U64 = (1 << 64) - 1
_U32 = (1 << 32) - 1
_I32_MIN = -(1 << 31)
_I32_MAX = (1 << 31) - 1


def _int_field(value: object, name: str, lo: int, hi: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < lo or value > hi:
        raise OverflowError(f"{name} must be in {lo}..{hi}, got {value}")
    return int(value)


def _real(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number, not {type(value).__name__}")
    return float(value)


def _runnable(value: object) -> float | None:
    if value is None:
        return None
    result = _real(value, "runnable_at")
    if math.isnan(result):
        raise ValueError("runnable_at must not be NaN")
    return result


def _bytes(value: object) -> bytes:
    if not isinstance(value, bytes):
        raise TypeError(f"body must be bytes, not {type(value).__name__}")
    return value


def _uint32_property(slot: str, name: str) -> property:
    def fget(self: Job) -> int:
        return getattr(self, slot)  # type: ignore[no-any-return]

    def fset(self: Job, value: int) -> None:
        setattr(self, slot, _int_field(value, name, 0, _U32))

    return property(fget, fset, doc=f"{name} (unsigned 32-bit)")


class Job:
    """One job: its ordering key, its beanstalkd attributes and its counters.

    ``heap_index`` is the job's slot in the one JobHeap holding it, -1 when
    none; the heap keeps it so update and remove need no search.
    """

    __slots__ = (
        "_body",
        "_buries",
        "_created_at",
        "_delay",
        "_file",
        "_id",
        "_kicks",
        "_pos",
        "_priority",
        "_releases",
        "_reserves",
        "_runnable_at",
        "_state",
        "_tag",
        "_timeouts",
        "_ttr",
        "reserver",
        "tube",
    )

    def __init__(
        self,
        id: int,
        priority: int = 0,
        runnable_at: float | None = None,
        ttr: int = 1,
        body: bytes = b"",
        delay: int = 0,
        created_at: float = 0.0,
    ) -> None:
        self._id = _int_field(id, "id", 0, _U64)
        self._priority = _int_field(priority, "priority", 0, _U32)
        self._runnable_at = _runnable(runnable_at)
        self._ttr = _int_field(ttr, "ttr", 0, _U32)
        self._body = _bytes(body)
        self._delay = _int_field(delay, "delay", 0, _U32)
        self._created_at = _real(created_at, "created_at")
        self._state = READY
        self._reserves = self._timeouts = self._releases = self._buries = self._kicks = 0
        self._file = 0
        self._tag = 0
        self._pos = -1
        self.tube: Any = None
        self.reserver: Any = None

    @property
    def id(self) -> int:
        """The job id (unsigned 64-bit); fixed for the job's life."""
        return self._id

    priority = _uint32_property("_priority", "priority")
    ttr = _uint32_property("_ttr", "ttr")
    delay = _uint32_property("_delay", "delay")
    reserves = _uint32_property("_reserves", "reserves")
    timeouts = _uint32_property("_timeouts", "timeouts")
    releases = _uint32_property("_releases", "releases")
    buries = _uint32_property("_buries", "buries")
    kicks = _uint32_property("_kicks", "kicks")
    # An unsigned 32-bit number for the job's owner; the core never reads it.
    tag = _uint32_property("_tag", "tag")

    @property
    def runnable_at(self) -> float | None:
        """When the clock next moves this job: ready time if delayed, TTR deadline if reserved."""
        return self._runnable_at

    @runnable_at.setter
    def runnable_at(self, value: float | None) -> None:
        self._runnable_at = _runnable(value)

    @property
    def created_at(self) -> float:
        return self._created_at

    @created_at.setter
    def created_at(self, value: float) -> None:
        self._created_at = _real(value, "created_at")

    @property
    def body(self) -> bytes:
        return self._body

    @body.setter
    def body(self, value: bytes) -> None:
        self._body = _bytes(value)

    @property
    def state(self) -> int:
        return self._state

    @state.setter
    def state(self, value: int) -> None:
        self._state = _int_field(value, "state", READY, BURIED)

    @property
    def file(self) -> int:
        """Binlog file number holding the job's latest record; 0 when none."""
        return self._file

    @file.setter
    def file(self, value: int) -> None:
        self._file = _int_field(value, "file", _I32_MIN, _I32_MAX)

    @property
    def heap_index(self) -> int:
        return self._pos

    def __repr__(self) -> str:
        return (
            f"Job(id={self._id}, state={STATE_NAMES[self._state]}, priority={self._priority}, "
            f"runnable_at={self._runnable_at!r}, ttr={self._ttr}, delay={self._delay}, "
            f"body=<{len(self._body)} bytes>)"
        )


def less(a: Job, b: Job) -> bool:
    """Strict order on (runnable_at, priority, id); no runnable_at sorts first."""
    if not isinstance(a, Job) or not isinstance(b, Job):
        raise TypeError("less() compares two Job objects")
    return _less(a, b)


def _less(a: Job, b: Job) -> bool:
    ra = a._runnable_at
    rb = b._runnable_at
    if ra is None:
        if rb is not None:
            return True
    elif rb is None:
        return False
    elif ra != rb:
        return ra < rb  # type: ignore[no-any-return]
    if a._priority != b._priority:
        return a._priority < b._priority  # type: ignore[no-any-return]
    return a._id < b._id  # type: ignore[no-any-return]


def _sift_up(items: list[Job], pos: int) -> None:
    job = items[pos]
    while pos > 0:
        parent = (pos - 1) >> 1
        above = items[parent]
        if not _less(job, above):
            break
        items[pos] = above
        above._pos = pos
        pos = parent
    items[pos] = job
    job._pos = pos


def _sift_down(items: list[Job], pos: int) -> None:
    n = len(items)
    job = items[pos]
    while True:
        child = 2 * pos + 1
        if child >= n:
            break
        right = child + 1
        if right < n and _less(items[right], items[child]):
            child = right
        below = items[child]
        if not _less(below, job):
            break
        items[pos] = below
        below._pos = pos
        pos = child
    items[pos] = job
    job._pos = pos


def _check_job(value: object) -> None:
    if not isinstance(value, Job):
        raise TypeError(f"JobHeap holds Job objects, not {type(value).__name__}")


def _key(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"job id must be an int, not {type(value).__name__}")
    return value


class JobHeap:
    """An indexed binary min-heap of Jobs under ``less``.

    Each job records its own slot, so update and remove are O(log n) without a
    search, and an id index makes remove_by_id O(log n) too. A job lives in at
    most one JobHeap at a time. Iteration walks a snapshot in slot order, so
    mutating the heap while iterating is safe (the loop sees the jobs present
    when it began).

    ``JobHeap(indexed=False)`` keeps no id index, which saves its memory and
    its upkeep on every push and pop. Such a heap refuses the id lookups
    (remove_by_id, remove_many_by_id, get, ``id in heap``) with TypeError
    rather than answer them by an O(n) scan nobody would expect, and does not
    notice two different Job objects with the same id; push, pop, peek,
    update, remove(job) and ``job in heap`` work as usual.

    Changing a job's priority or runnable_at and then calling update() are two
    steps: threads that share a heap must not change the key of a job that is
    in it while others use the heap, or must serialise the pair themselves.
    """

    __slots__ = ("_index", "_items", "_lock")

    def __init__(self, indexed: bool = True) -> None:
        self._items: list[Job] = []
        self._index: dict[int, Job] | None = {} if indexed else None
        self._lock = threading.Lock()

    @property
    def indexed(self) -> bool:
        """Whether the heap keeps an id index (see the class docstring)."""
        return self._index is not None

    def _need_index(self) -> dict[int, Job]:
        if self._index is None:
            raise TypeError("this JobHeap has no id index (made with indexed=False)")
        return self._index

    def __del__(self) -> None:
        # a dropped heap frees its jobs' slots, so jobs that outlive it can go
        # into another heap (this runs before the GC clears anything)
        for job in self._items:
            job._pos = -1

    def _holds(self, job: Job) -> bool:
        pos = job._pos
        items = self._items
        return 0 <= pos < len(items) and items[pos] is job

    def push(self, job: Job) -> None:
        _check_job(job)
        with self._lock:
            if job._pos >= 0:
                raise JobAlreadyExists(f"job {job._id} is already in a heap")
            index = self._index
            if index is not None:
                if job._id in index:
                    raise JobAlreadyExists(f"a job with id {job._id} is already in this heap")
                index[job._id] = job
            self._items.append(job)
            _sift_up(self._items, len(self._items) - 1)

    def pop(self) -> Job:
        with self._lock:
            items = self._items
            if not items:
                raise EmptyQueue("pop from an empty JobHeap")
            top = items[0]
            last = items.pop()
            if items:
                items[0] = last
                _sift_down(items, 0)
            top._pos = -1
            if self._index is not None:
                del self._index[top._id]
            return top

    def peek(self) -> Job:
        with self._lock:
            if not self._items:
                raise EmptyQueue("peek at an empty JobHeap")
            return self._items[0]

    def update(self, job: Job) -> None:
        _check_job(job)
        with self._lock:
            if not self._holds(job):
                raise JobMissing(f"{job!r} is not in this heap")
            self._resift(job)

    def reprioritize(self, pairs: Iterable[tuple[Job, int]]) -> None:
        """For each (job, priority) of an iterable, in order: set the job's
        priority and update() it; the bulk form of ``job.priority = p;
        heap.update(job)``.

        The keys change one at a time on purpose: re-sifting jobs whose keys
        were all changed beforehand does not restore a heap. It stops at the
        first pair whose job the heap does not hold (JobMissing) or whose
        priority is not a uint32 (TypeError, OverflowError), leaving that job
        as it was; the pairs before it stay done.
        """
        work = list(pairs)
        for pair in work:
            if not isinstance(pair, tuple) or len(pair) != 2:
                raise TypeError("reprioritize takes (job, priority) pairs")
            _check_job(pair[0])
        with self._lock:
            for job, priority in work:
                if not self._holds(job):
                    raise JobMissing(f"{job!r} is not in this heap")
                job.priority = priority
                self._resift(job)

    def _resift(self, job: Job) -> None:
        pos = job._pos
        _sift_up(self._items, pos)
        if job._pos == pos:
            _sift_down(self._items, pos)

    def _remove_at(self, job: Job) -> None:
        items = self._items
        pos = job._pos
        last = items.pop()
        if last is not job:
            items[pos] = last
            last._pos = pos
            _sift_up(items, pos)
            if last._pos == pos:
                _sift_down(items, pos)
        job._pos = -1
        if self._index is not None:
            del self._index[job._id]

    def remove(self, job: Job) -> None:
        _check_job(job)
        with self._lock:
            if not self._holds(job):
                raise JobMissing(f"{job!r} is not in this heap")
            self._remove_at(job)

    def remove_by_id(self, id: int) -> Job:
        key = _key(id)
        with self._lock:
            job = self._need_index().get(key)
            if job is None:
                raise JobMissing(f"no job with id {key} in this heap")
            self._remove_at(job)
            return job

    def remove_many_by_id(self, ids: Iterable[int]) -> list[Job]:
        """remove_by_id() each id of an iterable, in order; the removed jobs, in that order.

        The bulk form of remove_by_id, for the same reason as reprioritize. It
        stops at the first id the heap does not hold, raising JobMissing; the
        jobs removed before it stay removed.
        """
        work = list(ids)
        removed: list[Job] = []
        with self._lock:
            index = self._need_index()
            for id in work:
                job = index.get(_key(id))
                if job is None:
                    raise JobMissing(f"no job with id {id} in this heap")
                removed.append(job)
                self._remove_at(job)
        return removed

    def get(self, id: int, default: Job | None = None) -> Job | None:
        key = _key(id)
        with self._lock:
            return self._need_index().get(key, default)

    def clear(self) -> None:
        with self._lock:
            items = self._items
            for job in items:
                job._pos = -1
            self._items = []
            if self._index is not None:
                self._index = {}

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

    def __contains__(self, item: object) -> bool:
        with self._lock:
            if isinstance(item, Job):
                return self._holds(item)
            if isinstance(item, int) and not isinstance(item, bool):
                return item in self._need_index()
            return False

    def __iter__(self) -> Iterator[Job]:
        with self._lock:
            return iter(list(self._items))

    def __repr__(self) -> str:
        return f"<JobHeap of {len(self._items)} jobs>"


class JobTable:
    """A map from job id to Job: the registry of every live job.

    ``add`` refuses a second job with an id already present (JobAlreadyExists);
    ``pop`` and ``remove`` of an absent job raise JobMissing; ``table[id]``
    raises KeyError like a dict; iteration yields the jobs (a snapshot, in no
    particular order). Every id 0..2**64-1 is allowed, 0 included. Each method
    takes the table's lock, so each is atomic.
    """

    __slots__ = ("_jobs", "_lock")

    def __init__(self) -> None:
        self._jobs: dict[int, Job] = {}
        self._lock = threading.Lock()

    def add(self, job: Job) -> None:
        _check_job(job)
        with self._lock:
            if job._id in self._jobs:
                raise JobAlreadyExists(f"a job with id {job._id} is already in this table")
            self._jobs[job._id] = job

    def reserve(self, n: int) -> None:
        """Room for n jobs in all. A dict cannot be sized ahead: this checks
        the count as the compiled table does, and otherwise does nothing."""
        if n < 0:
            raise ValueError("reserve() needs a count >= 0")
        if n > 1 << 40:
            raise OverflowError(f"cannot reserve room for {n} jobs")

    def get(self, id: int, default: Job | None = None) -> Job | None:
        key = _key(id)
        with self._lock:
            return self._jobs.get(key, default)

    def __getitem__(self, id: int) -> Job:
        key = _key(id)
        with self._lock:
            return self._jobs[key]

    def pop(self, id: int) -> Job:
        key = _key(id)
        with self._lock:
            job = self._jobs.pop(key, None)
            if job is None:
                raise JobMissing(f"no job with id {id} in this table")
            return job

    def remove(self, job: Job) -> None:
        _check_job(job)
        with self._lock:
            if self._jobs.get(job._id) is not job:
                raise JobMissing(f"{job!r} is not in this table")
            del self._jobs[job._id]

    def clear(self) -> None:
        with self._lock:
            old = self._jobs
            self._jobs = {}
        old.clear()

    def __contains__(self, item: object) -> bool:
        with self._lock:
            if isinstance(item, Job):
                return self._jobs.get(item._id) is item
            if isinstance(item, int) and not isinstance(item, bool):
                return item in self._jobs
            return False

    def __len__(self) -> int:
        return len(self._jobs)

    def __bool__(self) -> bool:
        return bool(self._jobs)

    def __iter__(self) -> Iterator[Job]:
        with self._lock:
            return iter(list(self._jobs.values()))

    def as_dict(self) -> dict[int, Job]:
        """A new dict of id -> job with the table's content."""
        with self._lock:
            return dict(self._jobs)

    def largest_id(self) -> int | None:
        """The largest id held, None when empty (the design's GetLargestID).

        A scan, O(n): it is asked rarely (to continue ids after a recovery),
        so add and remove keep no running maximum for it.
        """
        with self._lock:
            return max(self._jobs, default=None)

    def __eq__(self, other: object) -> bool:
        # equal to a table or dict with the same ids mapped to the same jobs,
        # so code written against the dict this replaces keeps working
        if isinstance(other, JobTable):
            other = other.as_dict()
        elif not isinstance(other, Mapping):
            return NotImplemented
        return self.as_dict() == dict(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<JobTable of {len(self._jobs)} jobs>"


class _Slot:
    """A named heap's place inside a TubeHeap."""

    __slots__ = ("heap", "name", "pos")

    def __init__(self, name: object, heap: JobHeap, pos: int) -> None:
        self.name = name
        self.heap = heap
        self.pos = pos


def _heap_less(a: JobHeap, b: JobHeap) -> bool:
    if not a._items:
        return False
    if not b._items:
        return True
    return _less(a._items[0], b._items[0])


class TubeHeap:
    """A heap of named JobHeaps ordered by each one's top job; empty heaps sort last.

    The caller calls ``fix(name)`` after changing a member heap's top. ``peek``
    raises EmptyQueue both when there are no heaps and when every heap is empty,
    so what it returns always has a job to look at.
    """

    __slots__ = ("_by_name", "_lock", "_slots")

    def __init__(self) -> None:
        self._slots: list[_Slot] = []
        self._by_name: dict[object, _Slot] = {}
        self._lock = threading.Lock()

    def _up(self, pos: int) -> int:
        slots = self._slots
        slot = slots[pos]
        while pos > 0:
            parent = (pos - 1) >> 1
            above = slots[parent]
            if not _heap_less(slot.heap, above.heap):
                break
            slots[pos] = above
            above.pos = pos
            pos = parent
        slots[pos] = slot
        slot.pos = pos
        return pos

    def _down(self, pos: int) -> None:
        slots = self._slots
        n = len(slots)
        slot = slots[pos]
        while True:
            child = 2 * pos + 1
            if child >= n:
                break
            right = child + 1
            if right < n and _heap_less(slots[right].heap, slots[child].heap):
                child = right
            below = slots[child]
            if not _heap_less(below.heap, slot.heap):
                break
            slots[pos] = below
            below.pos = pos
            pos = child
        slots[pos] = slot
        slot.pos = pos

    def _fix(self, pos: int) -> None:
        if self._up(pos) == pos:
            self._down(pos)

    def push(self, name: object, heap: JobHeap) -> None:
        if not isinstance(heap, JobHeap):
            raise TypeError(f"TubeHeap holds JobHeap objects, not {type(heap).__name__}")
        with self._lock:
            if name in self._by_name:
                raise QueueAlreadyExists(f"{name!r} is already in this TubeHeap")
            slot = _Slot(name, heap, len(self._slots))
            self._by_name[name] = slot
            self._slots.append(slot)
            self._up(slot.pos)

    def peek(self) -> tuple[object, JobHeap]:
        with self._lock:
            if not self._slots or not self._slots[0].heap._items:
                raise EmptyQueue("no heap in this TubeHeap has a job")
            top = self._slots[0]
            return top.name, top.heap

    def fix(self, name: object) -> None:
        with self._lock:
            slot = self._by_name.get(name)
            if slot is None:
                raise QueueMissing(f"{name!r} is not in this TubeHeap")
            self._fix(slot.pos)

    def remove(self, name: object) -> JobHeap:
        with self._lock:
            slot = self._by_name.pop(name, None)
            if slot is None:
                raise QueueMissing(f"{name!r} is not in this TubeHeap")
            slots = self._slots
            last = slots.pop()
            if last is not slot:
                slots[slot.pos] = last
                last.pos = slot.pos
                self._fix(last.pos)
            return slot.heap

    def get(self, name: object, default: JobHeap | None = None) -> JobHeap | None:
        with self._lock:
            slot = self._by_name.get(name)
            return default if slot is None else slot.heap

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __len__(self) -> int:
        return len(self._slots)

    def __bool__(self) -> bool:
        return bool(self._slots)

    def __iter__(self) -> Iterator[object]:
        with self._lock:
            return iter([slot.name for slot in self._slots])

    def __repr__(self) -> str:
        return f"<TubeHeap of {len(self._slots)} heaps>"
