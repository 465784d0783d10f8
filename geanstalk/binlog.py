"""The write-ahead log behind `-b DIR`: append, fsync policy, replay, compaction.

The server calls put/update/delete as jobs change, then holds the reply
until wait_durable() says the record is stored per the fsync policy, so no
acknowledged change can be lost. Appends are buffered and written with one
os.write per event-loop iteration; fsync runs on a helper thread so the loop
keeps serving, and with `-f 0` the records that arrive while one fsync is in
flight are committed together by the next (group commit).

Space: each live job is anchored in the file holding its latest full job
record; files are deleted oldest first once no live job is anchored there.
When the directory grows past twice the live data plus one file, live jobs
of the oldest file are copied forward in small steps until it can go.
docs/BINLOG.md has the byte layout and the algorithm.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import math
import os
import sys
import threading
import time
import zlib
from array import array
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from . import binlog_format as fmt
from .binlog_replay import LOCATION, file_name, replay
from .bodystore import ENTRY_COST, GENERATION, BodyStore, default_cache_size
from .errors import BinlogError
from .journal import DurabilityWaiters

log = logging.getLogger("geanstalk.binlog")

# One compaction step copies at most this much before yielding to the loop.
_STEP_RECORDS = 256
_STEP_BYTES = 256 * 1024
# ... and reads at most this far into the file for it (dead records between live ones).
_STEP_SPAN = 1024 * 1024

_JOB_FIELDS = fmt.JOB_FIELDS
_JOB_FIXED = fmt.JOB_FIELDS.size
_LOCATION = LOCATION
_PREFIX_PACK = fmt.PREFIX.pack
_PREFIX_SIZE = fmt.PREFIX_SIZE
_MAX_TUBE = fmt.MAX_TUBE
_NAN = math.nan
_DELAYED = fmt.DELAYED
_crc32 = zlib.crc32
_length_crc = fmt.length_crc
_DELETE_PACK = fmt.DELETE_FIELDS.pack
_DELETE_LEN = fmt.DELETE_FIELDS.size
_DELETE_CRC = _length_crc(_DELETE_LEN)
_ENTRY_COST = ENTRY_COST
_GENERATION = GENERATION
# Python's thread switch interval while replay runs on a helper thread: how
# long the event loop may wait for the GIL before it answers anything.
LOADING_SWITCH_INTERVAL = 0.0005
# ... and the niceness of that thread (Linux sets it per thread).
LOADING_NICE = 10


class _File:
    """One binlog file and the index of the job records it anchors.

    A job anchored here is ``jobs[tag]`` (its Job has ``file`` = number and
    ``tag`` = that index); ``offsets[tag]`` and ``sizes[tag]`` say where its
    record lies. A slot is set to None when the job goes (deleted, or copied
    forward by compaction) and never reused, so (file, tag) names one record
    for the file's whole life. About 20 bytes per job, instead of a dict
    entry and an image per job.
    """

    __slots__ = (
        "cursor",
        "gone",
        "jobs",
        "live",
        "number",
        "offsets",
        "reads",
        "release_seq",
        "rfd",
        "size",
        "sizes",
        "stuck",
    )

    def __init__(self, number: int, size: int) -> None:
        self.number = number
        self.size = size
        self.live = 0  # how many of jobs are not None
        self.release_seq = 0  # the file may go once records up to this are synced
        self.jobs: list[Any] = []
        self.offsets = array("Q")
        self.sizes = array("I")
        self.cursor = 0  # compaction has moved (or seen gone) every slot below this
        self.stuck = False  # a live record here failed its checksum: never compacted
        self.rfd = -1  # read descriptor, opened on the first read-back
        self.reads = 0  # read-backs in flight on rfd
        self.gone = False  # deleted from the directory; rfd closes after the last read


def _tube_name(tube: Any) -> bytes:
    if tube.__class__ is bytes:
        return tube  # type: ignore[no-any-return]
    name = getattr(tube, "name", tube)
    if isinstance(name, str):
        return name.encode("ascii")
    if not isinstance(name, bytes):
        raise TypeError(f"job.tube must be a tube or its name, not {type(tube).__name__}")
    return name


def _first(pair: tuple[int, Any]) -> int:
    return pair[0]


class RecoveredJobs:
    """The jobs a replay found, in the order the server takes them back,
    kept in many short lists; sized, and iterable once: each list is let go
    as soon as it has been gone through (dropping ten million references at
    the end, in one step, would hold the loop for tens of ms)."""

    __slots__ = ("_chunks", "_count")

    def __init__(self, chunks: list[list[Any]], count: int) -> None:
        self._chunks: deque[list[Any]] = deque(chunks)
        self._count = count

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[Any]:
        chunks = self._chunks
        while chunks:
            yield from chunks.popleft()


class _Loaded:
    """What Binlog._load() found and made, for _commit() to adopt."""

    __slots__ = (
        "chunks",
        "count",
        "disk_bytes",
        "files",
        "last_number",
        "live_bytes",
        "max_id",
        "max_order",
        "updates",
    )

    def __init__(self, max_id: int, max_order: int, last_number: int) -> None:
        self.max_id = max_id
        self.max_order = max_order
        self.last_number = last_number
        self.files: dict[int, _File] = {}  # oldest first
        # The jobs in the order of their job records (buried ones among them
        # in journal order), in one list per segment of the log: a single list
        # of ten million would be copied whole as it grows, holding the GIL.
        self.chunks: list[list[Any]] = []
        self.count = 0
        self.updates: dict[int, bytes] = {}
        self.disk_bytes = 0
        self.live_bytes = 0


def _sync_files(closing: list[int], current: int | None, directory: int | None) -> None:
    """Runs on the helper thread: fsync everything written, close rotated-away files."""
    for fd in closing:
        os.fsync(fd)
        os.close(fd)
    if current is not None:
        os.fsync(current)
    if directory is not None:
        os.fsync(directory)


class Binlog:
    """One binlog directory, held under an exclusive lock for the process's life."""

    def __init__(
        self,
        directory: str,
        fsync_ms: int | None,
        file_size: int,
        loop: asyncio.AbstractEventLoop,
        lock_fd: int,
        dir_fd: int,
        body_cache: int | None = None,
    ) -> None:
        self._dir = directory
        self._fsync_ms = fsync_ms
        self._file_size = file_size
        self._loop = loop
        self._lock_fd = lock_fd
        self._dir_fd = dir_fd
        self._recovered = False
        self._closed = False
        self._blocked = True  # closed, or not recovered yet: one test on the hot path

        self._files: dict[int, _File] = {}  # oldest first
        self._cur: _File | None = None
        self._fd = -1
        # Each live job is anchored in the file holding its latest job record
        # (job.file), at index job.tag of that file's index (see _File). The
        # last journaled state of a job changed since that record (bury, kick,
        # release with a delay) is its latest UPDATE record, kept here whole:
        # compaction writes it into the job's copy.
        self._updates: dict[int, bytes] = {}
        self._live_bytes = 0
        self._disk_bytes = 0
        self._max_id = 0
        self._order = 0

        self._buf = bytearray()  # records not yet handed to the kernel
        self._seq = 0  # last appended record
        self._written = 0  # last record handed to the kernel
        self._synced = 0  # last record covered by an fsync (or written, with -F)
        self._durable = 0
        self._waiters = DurabilityWaiters(loop, "binlog")
        self._off: float | None = None  # wall - monotonic, taken once per flush

        self._flush_handle: asyncio.Handle | None = None
        self._compact_handle: asyncio.Handle | None = None
        self._sync_timer: asyncio.TimerHandle | None = None
        self._sync_future: asyncio.Future[None] | None = None
        self._last_sync = 0.0
        self._unsynced_fds: list[int] = []  # rotated-away files awaiting their fsync
        self._dir_dirty = False
        self._executor: ThreadPoolExecutor | None = None

        self._records_written = 0
        self._records_migrated = 0
        self._compaction_steps = 0
        self._files_removed = 0
        # Set by the HTTP endpoint's metrics (metrics.Instruments): told the
        # time of each write and fsync. None costs one test per batch.
        self.observer: Any = None
        self._sync_started = 0
        self._sync_from = 0
        self._compacting = False  # a compaction step's read-back is in flight

        # Bodies live in the log: in memory only while the cache holds them.
        self.bodies = BodyStore(
            self, default_cache_size() if body_cache is None else body_cache, loop
        )

    # --- opening and recovery ------------------------------------------------------

    @classmethod
    def open(
        cls,
        directory: str,
        fsync_ms: int | None,
        file_size: int,
        loop: asyncio.AbstractEventLoop,
        body_cache: int | None = None,
    ) -> Binlog:
        """Lock and open directory; ``body_cache`` bounds the bytes of bodies
        kept in memory (None: a share of physical memory; 0: none)."""
        if fsync_ms is not None and fsync_ms < 0:
            raise BinlogError(f"fsync interval must be >= 0 ms, got {fsync_ms}")
        if file_size <= 0:
            raise BinlogError(f"binlog file size must be positive, got {file_size}")
        if body_cache is not None and body_cache < 0:
            raise BinlogError(f"body cache size must be >= 0 bytes, got {body_cache}")
        if not os.path.isdir(directory):
            why = "is not a directory" if os.path.exists(directory) else "does not exist"
            raise BinlogError(f"binlog directory {directory} {why}")
        if not os.access(directory, os.R_OK | os.W_OK | os.X_OK):
            raise BinlogError(f"binlog directory {directory} is not readable and writable")
        lock_path = os.path.join(directory, "lock")
        try:
            lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise BinlogError(
                f"cannot create binlog lock file {lock_path}: {exc.strerror}"
            ) from exc
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(lock_fd)
            raise BinlogError(
                f"binlog directory {directory} is in use by another server "
                f"(cannot lock {lock_path}: {exc.strerror})"
            ) from exc
        try:
            dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            os.close(lock_fd)
            raise BinlogError(f"cannot open binlog directory {directory}: {exc.strerror}") from exc
        return cls(directory, fsync_ms, file_size, loop, lock_fd, dir_fd, body_cache)

    def recover(self) -> tuple[list[Any], int]:
        """Every live job as last journaled (wall-clock times), and the next job id."""
        if self._recovered:
            raise BinlogError("recover() may be called only once")
        jobs, next_id = self._commit(self._load())
        return list(jobs), next_id

    async def recover_async(self) -> tuple[RecoveredJobs, int]:
        """recover(), doing the reading, the decoding and the making of the
        jobs on a helper thread, so the event loop keeps answering meanwhile
        (``stats`` on the beanstalk port, /healthz on the HTTP endpoint).
        The jobs come as an iterable with a length, not one list (see
        RecoveredJobs).

        The loop thread needs the GIL for each answer: while the helper
        thread runs, it is handed over after at most LOADING_SWITCH_INTERVAL
        (Python's default, 5 ms, would make each answer wait that long).
        """
        if self._recovered:
            raise BinlogError("recover() may be called only once")
        previous = sys.getswitchinterval()
        sys.setswitchinterval(min(previous, LOADING_SWITCH_INTERVAL))
        # A thread of its own, at a lower priority (Linux): when it and the
        # loop want the same CPU, the loop's answers go first.
        loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="binlog-load")
        try:
            loaded = await self._loop.run_in_executor(loader, self._load_in_background)
        finally:
            loader.shutdown(wait=False)
            sys.setswitchinterval(previous)
        return self._commit(loaded)

    def _load_in_background(self) -> _Loaded:
        with contextlib.suppress(AttributeError, OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LOADING_NICE)
        return self._load()

    def _load(self) -> _Loaded:
        """Read the directory and make its live jobs, touching nothing the
        loop thread reads: the files' indexes and the jobs are new objects
        that _commit() adopts. Runs on a helper thread with recover_async().

        Nothing here holds the GIL for long in one C call (the loop thread
        must get it every millisecond or so): the replay's index is many
        small dicts (see binlog_replay), each emptied once its jobs are made.
        """
        from .core import BURIED, DELAYED, READY, Job

        found = replay(self._dir, with_bodies=False)
        loaded = _Loaded(found.max_id, found.max_order, found.last_number)
        files = loaded.files
        for number, size in found.files:
            files[number] = _File(number, size)
            loaded.disk_bytes += size
        states = {fmt.READY: READY, fmt.DELAYED: DELAYED, fmt.RESERVED: READY, fmt.BURIED: BURIED}
        chunks = loaded.chunks
        buried: list[tuple[int, int, int]] = []  # (journal order, chunk, place in it)
        updates = loaded.updates
        tubes: dict[bytes, bytes] = {}
        unpack_fields = _JOB_FIELDS.unpack_from
        unpack_where = _LOCATION.unpack_from
        live_bytes = 0
        # Segments and their entries are in the order of the job records,
        # so each file's jobs get their tags front to back.
        for entries in found.segments.values():
            if not entries:
                continue
            jobs: list[Any] = []
            for job_id, entry in entries.items():
                f = unpack_fields(entry, 0)
                number, offset, size, updated = unpack_where(entry, _JOB_FIXED)
                name = entry[_JOB_FIXED + _LOCATION.size :]
                name = tubes.setdefault(name, name)
                state = states[f[6]]
                runnable_at = f[8]
                job = Job(
                    job_id,
                    priority=f[3],
                    runnable_at=runnable_at
                    if state == DELAYED and runnable_at == runnable_at
                    else None,
                    ttr=f[4],
                    delay=f[5],
                    created_at=f[7],
                )
                job.state = state
                job.tube = name
                job.reserves, job.timeouts, job.releases, job.buries, job.kicks = f[9:14]
                anchor = files[number]
                job.file = number
                job.tag = len(anchor.jobs)
                anchor.jobs.append(job)
                anchor.offsets.append(offset)
                anchor.sizes.append(size)
                anchor.live += 1
                live_bytes += size
                if updated:
                    updates[job_id] = fmt.encode_update_fields(
                        job_id,
                        f[2],
                        f[3],
                        f[4],
                        f[5],
                        f[6],
                        None if runnable_at != runnable_at else runnable_at,
                        f[9:14],
                    )
                if state == BURIED:
                    buried.append((f[2], len(chunks), len(jobs)))
                jobs.append(job)
            entries.clear()
            chunks.append(jobs)
            loaded.count += len(jobs)
        for shard in found.where.values():
            shard.clear()
        loaded.live_bytes = live_bytes
        # The server takes buried jobs back in journal order (a kick takes
        # the oldest first): they keep their places in the list, in that order.
        if buried:
            places = [(c, i) for _, c, i in buried]  # in list order: appended so
            in_order = [chunks[c][i] for _, c, i in sorted(buried, key=_first)]
            for (c, i), job in zip(places, in_order, strict=True):
                chunks[c][i] = job
        self.bodies.warm(list(files.values()))
        return loaded

    def _commit(self, loaded: _Loaded) -> tuple[RecoveredJobs, int]:
        """Adopt what _load() made (on the loop thread): files, jobs, the current file."""
        self._files = loaded.files
        self._disk_bytes = loaded.disk_bytes
        self._live_bytes = loaded.live_bytes
        self._updates = loaded.updates
        self._max_id = loaded.max_id
        self._order = loaded.max_order
        if self._files:
            self._cur = self._files[max(self._files)]
            path = self._path(self._cur.number)
            try:
                self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
            except OSError as exc:
                raise BinlogError(f"cannot open binlog file {path}: {exc.strerror}") from exc
        else:
            self._new_file(loaded.last_number + 1, during_open=True)
        self._recovered = True
        self._blocked = False
        self._maybe_compact()
        return RecoveredJobs(loaded.chunks, loaded.count), self._max_id + 1

    # --- appending -----------------------------------------------------------------

    def put(self, job: Any) -> None:
        """Journal a job's full image; the hot path of every put, so packed inline."""
        if self._blocked:
            self._check_open()
        off = self._off
        if off is None:
            off = self._off = time.time() - time.monotonic()
        job_id = job.id
        tube = job.tube
        name = tube if tube.__class__ is bytes else getattr(tube, "name", None)
        if name.__class__ is not bytes:
            name = _tube_name(tube)
        body = job.body
        # Put again while live (not the server's way: it journals changes as
        # updates): the body is cached already, or is read from the log and
        # stays there. A new job (file 0, every put of the server) is admitted.
        again = job.file and self._anchored(job)
        if again and not body:
            body = self.bodies.load(job)
        order = self._order = self._order + 1
        priority = job.priority
        ttr = job.ttr
        delay = job.delay
        state = job.state
        created_at = job.created_at + off
        runnable_at = job.runnable_at
        runnable_at = None if state != _DELAYED or runnable_at is None else runnable_at + off
        tube_len = len(name)
        if tube_len > _MAX_TUBE:
            raise ValueError(f"tube name longer than {_MAX_TUBE} bytes")
        # Every field is range-checked by the Job's setters (and the tube name
        # above), so this pack cannot fail.
        payload = (
            _JOB_FIELDS.pack(
                fmt.JOB,
                job_id,
                order,
                priority,
                ttr,
                delay,
                state,
                created_at,
                _NAN if runnable_at is None else runnable_at,
                job.reserves,
                job.timeouts,
                job.releases,
                job.buries,
                job.kicks,
                tube_len,
                len(body),
            )
            + name
            + body
        )
        length = len(payload)
        size = length + _PREFIX_SIZE
        cur = self._cur
        assert cur is not None
        if cur.size + size > self._file_size and cur.size > fmt.HEADER_SIZE:
            self._rotate()
            cur = self._cur
            assert cur is not None
        offset = cur.size
        buf = self._buf
        buf += _PREFIX_PACK(length, _crc32(payload, _length_crc(length)))
        buf += payload
        cur.size = offset + size
        self._disk_bytes += size
        seq = self._seq = self._seq + 1
        self._records_written += 1
        if self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self._flush)
        if job_id > self._max_id:
            self._max_id = job_id
        if job.file:  # journaled before: this record is its new anchor
            self._unanchor(job, seq)
            self._updates.pop(job_id, None)
        jobs = cur.jobs
        job.tag = len(jobs)
        jobs.append(job)
        cur.offsets.append(offset)
        cur.sizes.append(size)
        cur.live += 1
        self._live_bytes += size
        job.file = cur.number
        # The body joins the cache (BodyStore.admit, inline: this is every put).
        if body and not again:
            bodies = self.bodies
            cost = len(body) + _ENTRY_COST
            if cost > bodies.limit:
                job.body = b""
            else:
                newest = bodies.newest
                newest.append(job)
                if len(newest) >= _GENERATION:
                    bodies.new_generation()
                bodies.count += 1
                bodies.size += cost
                if bodies.size > bodies.limit:
                    bodies.evict()

    def update(self, job: Any) -> None:
        self._check_open()
        if not self._anchored(job):
            self.put(job)
            return
        off = self._off
        if off is None:
            off = self._off = time.time() - time.monotonic()
        record = fmt.encode_update_fields(
            job.id,
            self._next_order(),
            job.priority,
            job.ttr,
            job.delay,
            job.state,
            self._wall_runnable(job, off),
            (job.reserves, job.timeouts, job.releases, job.buries, job.kicks),
        )
        self._updates[job.id] = record
        self._append(record)

    def delete(self, job: Any) -> None:
        """Journal a job's end; the hot path of every delete, so inline."""
        if self._blocked:
            self._check_open()
        f = self._files.get(job.file)
        if f is None:
            return
        tag = job.tag
        jobs = f.jobs
        if tag >= len(jobs) or jobs[tag] is not job:
            return  # not live here
        job_id = job.id
        payload = _DELETE_PACK(fmt.DELETE, job_id)
        seq, _ = self._append(_PREFIX_PACK(_DELETE_LEN, _crc32(payload, _DELETE_CRC)) + payload)
        jobs[tag] = None
        f.live -= 1
        if seq > f.release_seq:
            f.release_seq = seq
        self._live_bytes -= f.sizes[tag]
        if self._updates:
            self._updates.pop(job_id, None)
        if job.body:
            self.bodies.forget(job)

    def _anchored(self, job: Any) -> bool:
        """Whether job is live in this log (its index slot holds it)."""
        f = self._files.get(job.file)
        if f is None:
            return False
        tag = job.tag
        return tag < len(f.jobs) and f.jobs[tag] is job

    def _unanchor(self, job: Any, seq: int) -> None:
        """The job no longer needs its file once the record at seq is synced."""
        old = self._files.get(job.file)
        tag = job.tag
        if old is None or tag >= len(old.jobs) or old.jobs[tag] is not job:
            return
        old.jobs[tag] = None
        old.live -= 1
        if seq > old.release_seq:
            old.release_seq = seq
        self._live_bytes -= old.sizes[tag]

    @staticmethod
    def _wall_runnable(job: Any, off: float) -> float | None:
        if job.state == fmt.DELAYED and job.runnable_at is not None:
            return float(job.runnable_at + off)
        return None

    def _next_order(self) -> int:
        # (put bumps self._order inline)
        self._order += 1
        return self._order

    def _check_open(self) -> None:
        """Raises unless appends are allowed (the slow half of put's one-flag test)."""
        if self._closed:
            raise BinlogError("binlog is closed")
        if not self._recovered:
            raise BinlogError("binlog: recover() must run before the first append")

    def _append(self, record: bytes) -> tuple[int, int]:
        """Buffer one record; its seq and the number of the file it lands in."""
        cur = self._cur
        assert cur is not None
        if cur.size + len(record) > self._file_size and cur.size > fmt.HEADER_SIZE:
            self._rotate()
            cur = self._cur
            assert cur is not None
        self._buf += record
        cur.size += len(record)
        self._disk_bytes += len(record)
        self._seq += 1
        self._records_written += 1
        if self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self._flush)
        return self._seq, cur.number

    def _rotate(self) -> None:
        assert self._cur is not None
        self._write_buffer()
        if self._fsync_ms is None:
            os.close(self._fd)
        else:
            self._unsynced_fds.append(self._fd)
        self._new_file(self._cur.number + 1, during_open=False)

    def _new_file(self, number: int, during_open: bool) -> None:
        path = self._path(number)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC
        try:
            self._fd = os.open(path, flags, 0o644)
        except OSError as exc:
            if during_open:
                raise BinlogError(f"cannot create binlog file {path}: {exc.strerror}") from exc
            self._fatal("create", path, exc)
        self._buf += fmt.encode_header(self._max_id)
        self._cur = self._files[number] = _File(number, fmt.HEADER_SIZE)
        self._disk_bytes += fmt.HEADER_SIZE
        self._dir_dirty = True
        if self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self._flush)

    def _path(self, number: int) -> str:
        return os.path.join(self._dir, file_name(number))

    # --- writing and syncing -------------------------------------------------------

    def _flush(self) -> None:
        self._flush_handle = None
        self._off = None  # the next batch takes the clocks' offset afresh
        self._write_buffer()
        if self._fsync_ms != 0 and self._written > self._durable:
            self._set_durable(self._written)
        if self._fsync_ms is None:
            self._synced = self._written
            self._release_files()
        elif self._written > self._synced or self._unsynced_fds:
            self._want_sync()
        self._maybe_compact()

    def _write_buffer(self) -> None:
        data = self._buf
        if not data:
            return
        self._buf = bytearray()
        observer = self.observer
        if observer is not None:
            started = time.perf_counter_ns()
        view = memoryview(data)
        while view:
            try:
                n = os.write(self._fd, view)
            except OSError as exc:
                assert self._cur is not None
                self._fatal("write", self._path(self._cur.number), exc)
            view = view[n:]
        self._written = self._seq
        if observer is not None:
            observer.binlog_written(time.perf_counter_ns() - started)

    def _want_sync(self) -> None:
        if self._sync_future is not None or self._sync_timer is not None or self._closed:
            return
        if self._fsync_ms == 0:
            self._start_sync()
            return
        assert self._fsync_ms is not None
        delay = self._last_sync + self._fsync_ms / 1000 - time.monotonic()
        self._sync_timer = self._loop.call_later(max(delay, 0.0), self._start_sync)

    def _start_sync(self) -> None:
        self._sync_timer = None
        if self._sync_future is not None or self._closed:
            return
        target = self._written
        closing, self._unsynced_fds = self._unsynced_fds, []
        dir_fd = self._dir_fd if self._dir_dirty else None
        self._dir_dirty = False
        self._sync_started = time.perf_counter_ns()
        self._sync_from = self._synced
        future = self._loop.run_in_executor(self._helper(), _sync_files, closing, self._fd, dir_fd)
        self._sync_future = future
        future.add_done_callback(lambda f: self._sync_done(f, target))

    def _sync_done(self, future: asyncio.Future[None], target: int) -> None:
        self._sync_future = None
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            assert self._cur is not None
            self._fatal("fsync", self._path(self._cur.number), exc)
        self._last_sync = time.monotonic()
        self._synced = max(self._synced, target)
        if self.observer is not None:
            self.observer.binlog_synced(
                time.perf_counter_ns() - self._sync_started, target - self._sync_from
            )
        if self._fsync_ms == 0:
            self._set_durable(self._synced)
        self._release_files()
        if self._written > self._synced or self._unsynced_fds:
            self._want_sync()
        self._maybe_compact()

    def _helper(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="binlog-fsync")
        return self._executor

    def _fatal(self, op: str, path: str, exc: BaseException) -> None:
        """Stop at once: a reply for a record that is not stored must never go out."""
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        with contextlib.suppress(Exception):
            sys.stderr.write(
                f"geanstalk: binlog {op} failed on {path}: {detail}; "
                "stopping so that no unlogged change is acknowledged\n"
            )
            sys.stderr.flush()
        os._exit(1)

    # --- durability ----------------------------------------------------------------

    def pending(self) -> int:
        return self._seq

    def durable(self) -> int:
        return self._durable

    def wait_durable(self, seq: int, callback: Callable[[], object]) -> None:
        if seq <= self._durable:
            self._loop.call_soon(callback)
        else:
            self._waiters.add(seq, callback)

    def _set_durable(self, seq: int) -> None:
        self._durable = seq
        if self._waiters:
            self._waiters.release(seq)

    # --- reclaiming space ----------------------------------------------------------

    def _release_files(self) -> None:
        """Delete the oldest files while no live job needs them and their successors are synced."""
        while self._files:
            oldest = next(iter(self._files.values()))
            if oldest is self._cur or oldest.live or oldest.release_seq > self._synced:
                return
            try:
                os.unlink(self._path(oldest.number))
            except FileNotFoundError:
                pass
            except OSError as exc:
                sys.stderr.write(f"geanstalk: cannot remove old binlog file: {exc}\n")
                return
            del self._files[oldest.number]
            self._files_removed += 1
            self._disk_bytes -= oldest.size
            self._dir_dirty = True
            self.bodies.file_gone(oldest)

    def _compaction_target(self) -> _File | None:
        """The oldest file with live jobs, if the directory is over its budget."""
        waiting = 0
        target = None
        for f in self._files.values():
            if f is self._cur or f.stuck:
                return None
            if f.live:
                target = f
                break
            waiting += f.size  # goes as soon as the records that emptied it are synced
        if target is None:
            return None
        if self._disk_bytes - waiting <= 2 * self._live_bytes + self._file_size:
            return None
        return target

    def _maybe_compact(self) -> None:
        if self._compact_handle is not None or self._closed or not self._recovered:
            return
        if self._compaction_target() is not None:
            self._compact_handle = self._loop.call_soon(self._compact_step)

    def _compact_step(self) -> None:
        """Copy a bounded batch of the oldest file's live jobs to the current file.

        The batch's records are read back from the file (inline when the page
        cache has them, else on a helper thread); the copies are appended when
        the bytes are here, so a job's location moves in one loop step, and a
        read-back that started before the move still reads the old record,
        which stays readable through its descriptor until that read is done.
        """
        self._compact_handle = None
        if self._compacting or self._closed:
            return
        target = self._compaction_target()
        if target is None:
            return
        self._compaction_steps += 1
        jobs, offsets, sizes = target.jobs, target.offsets, target.sizes
        tag, n = target.cursor, len(jobs)
        while tag < n and jobs[tag] is None:
            tag += 1
        target.cursor = tag
        if tag == n:
            raise AssertionError("binlog: a file counts live jobs it does not index")
        start = offsets[tag]
        picked: list[int] = []
        total = 0
        while (
            tag < n
            and len(picked) < _STEP_RECORDS
            and total < _STEP_BYTES
            and offsets[tag] - start < _STEP_SPAN
        ):
            if jobs[tag] is not None:
                picked.append(tag)
                total += sizes[tag]
            tag += 1
        end = offsets[picked[-1]] + sizes[picked[-1]]
        self._compacting = True
        self.bodies.read_span(
            target,
            start,
            end - start,
            lambda data, exc: self._compact_copy(target, picked, start, data, exc),
        )

    def _compact_copy(
        self,
        target: _File,
        picked: list[int],
        base: int,
        data: bytes | None,
        exc: BaseException | None,
    ) -> None:
        """The second half of a compaction step: append the copies, move the anchors."""
        self._compacting = False
        if self._closed:
            return
        if data is None or len(data) < target.offsets[picked[-1]] + target.sizes[picked[-1]] - base:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            log.error(
                "binlog: cannot read %s back for compaction: %s; compaction stops",
                self._path(target.number),
                why or "short read",
            )
            target.stuck = True
            return
        view = memoryview(data)
        for tag in picked:
            job = target.jobs[tag]
            if job is None:  # deleted while the batch was read
                continue
            at = target.offsets[tag]
            size = target.sizes[tag]
            record = view[at - base : at - base + size]
            try:
                fmt.check_job_record(record, job.id)
            except fmt.FormatError as err:
                log.error(
                    "binlog: %s: corrupt record at offset %d (job %d): %s; "
                    "this file is no longer compacted",
                    self._path(target.number),
                    at,
                    job.id,
                    err,
                )
                target.stuck = True
                break
            update = self._updates.pop(job.id, None)
            copy = bytes(record) if update is None else fmt.job_record_with_update(record, update)
            seq, number = self._append(copy)
            new = self._files[number]
            target.jobs[tag] = None
            target.live -= 1
            if seq > target.release_seq:
                target.release_seq = seq
            job.tag = len(new.jobs)
            new.jobs.append(job)
            new.offsets.append(new.size - size)
            new.sizes.append(size)
            new.live += 1
            job.file = number
            self._records_migrated += 1
        self._maybe_compact()

    # --- reading records back (for the body store) -----------------------------------

    def locate(self, job: Any) -> tuple[_File, int, int] | None:
        """The file, offset and size of a live job's record; None when not live here."""
        f = self._files.get(job.file)
        if f is None:
            return None
        tag = job.tag
        if tag >= len(f.jobs) or f.jobs[tag] is not job:
            return None
        return f, f.offsets[tag], f.sizes[tag]

    def make_readable(self, f: _File, end: int) -> None:
        """Hand buffered records to the kernel if bytes before ``end`` of f are among them."""
        if f is self._cur and end > f.size - len(self._buf) and not self._closed:
            self._write_buffer()

    def path_of(self, f: _File) -> str:
        return self._path(f.number)

    def files(self) -> list[_File]:
        return list(self._files.values())

    # --- reporting and shutdown ----------------------------------------------------

    def stats(self) -> dict[str, int]:
        return {
            "binlog-oldest-index": next(iter(self._files), 0),
            "binlog-current-index": self._cur.number if self._cur is not None else 0,
            "binlog-records-migrated": self._records_migrated,
            "binlog-records-written": self._records_written,
            "binlog-max-size": self._file_size,
        }

    def figures(self) -> dict[str, int]:
        """What the metrics endpoint shows beside the stats keys."""
        return {
            "disk-bytes": self._disk_bytes,
            "live-bytes": self._live_bytes,
            "compaction-steps": self._compaction_steps,
            "files-removed": self._files_removed,
        }

    async def close(self) -> None:
        """Write what is buffered, fsync it (unless -F), release the lock."""
        if self._closed:
            return
        self._closed = True
        self._blocked = True
        for handle in (self._flush_handle, self._compact_handle, self._sync_timer):
            if handle is not None:
                handle.cancel()
        self._flush_handle = self._compact_handle = self._sync_timer = None
        if self._cur is not None:
            self._write_buffer()
        while self._sync_future is not None:
            await asyncio.wait([self._sync_future])
        if self._fd >= 0:
            if self._fsync_ms is not None:
                closing, self._unsynced_fds = self._unsynced_fds, []
                try:
                    await self._loop.run_in_executor(
                        self._helper(), _sync_files, closing, self._fd, self._dir_fd
                    )
                except OSError as exc:
                    assert self._cur is not None
                    self._fatal("fsync", self._path(self._cur.number), exc)
            self._synced = self._written
            self._release_files()
            os.close(self._fd)
            self._fd = -1
        self._set_durable(self._written)
        if self._executor is not None:
            self._executor.shutdown(wait=False)
        await self.bodies.close()
        os.close(self._dir_fd)
        with contextlib.suppress(OSError):
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        os.close(self._lock_fd)

    # --- for tests and tools -------------------------------------------------------

    def busy(self) -> bool:
        """Whether a write, fsync or compaction step is still to come."""
        return any(
            (
                self._buf,
                self._flush_handle,
                self._compact_handle,
                self._compacting,
                self._sync_timer,
                self._sync_future,
            )
        )

    def disk_bytes(self) -> int:
        """Bytes the log's files take (including what is buffered)."""
        return self._disk_bytes

    def live_bytes(self) -> int:
        """Bytes of the live jobs' full records: the floor compaction aims at."""
        return self._live_bytes

    def live_jobs(self) -> int:
        """How many jobs the log holds."""
        return sum(f.live for f in self._files.values())
