"""Job bodies with -b: a bounded cache in memory, the binlog on disk behind it.

Every body is in the log anyway, so memory holds only those likely to be
needed soon: up to ``limit`` bytes (``--body-cache``), filled by puts and by
reads back from the log, the least recently filled going first. A job whose
body is not cached has ``job.body == b""`` and is found through its index
entry in the binlog (file, offset, size); the record is read back with a
positional read on a descriptor of its own, and checked against its CRC, so
a damaged body is an error that names the file and offset, never a wrong
reply.

Reads never block the event loop for long. On Linux ``preadv`` with
``RWF_NOWAIT`` reads what the page cache holds without waiting for the disk
(it fails with EAGAIN otherwise); a read it cannot do goes to a helper
thread and its caller is called back on the loop when the bytes are here.
A read takes the records after the one it wants as well (read-ahead), and
the reserve path reads ahead the new head of a tube's ready heap, so the
next reserve finds its body in memory.

Records never change once written and a file's descriptor stays open while
a read on it is in flight (even after compaction deleted the file), so a
read that started before compaction moved a job still gets that job's bytes.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from . import binlog_format as fmt
from .errors import BinlogCorrupt

if TYPE_CHECKING:
    from .binlog import Binlog, _File

log = logging.getLogger("geanstalk.binlog")

# What a cached body costs besides its bytes (the LRU's node, dict slot, the
# bytes object's header): charged to the limit so that tiny bodies cannot
# make the cache's bookkeeping outgrow it.
ENTRY_COST = 120
# A read takes up to this much of the file after the record it wants (and
# at most a quarter of the cache).
READ_AHEAD = 256 * 1024
# Read descriptors kept open; idle ones beyond this are closed oldest first.
MAX_READ_FDS = 128
READ_THREADS = 4
# How often the cache's figures go to the log at -V (seconds).
REPORT_EVERY = 60.0
# Cached jobs are queued in lists of at most this many (see BodyStore).
GENERATION = 4096

_NOWAIT = getattr(os, "RWF_NOWAIT", 0)
_preadv = getattr(os, "preadv", None)

# callback(body, error): exactly one of them is None.
BodyCallback = Callable[[bytes | None, BaseException | None], None]


def default_cache_size() -> int:
    """An eighth of physical memory (64 MiB when it cannot be told)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 8
    except (AttributeError, OSError, ValueError):
        return 64 * 1024 * 1024


def _tube_len(job: Any) -> int:
    tube = job.tube
    name = tube if tube.__class__ is bytes else getattr(tube, "name", tube)
    return len(name)


class BodyStore:
    """The bodies of one binlog's jobs; see the module docstring."""

    def __init__(self, binlog: Binlog, limit: int, loop: asyncio.AbstractEventLoop) -> None:
        self._log = binlog
        self.limit = limit
        self._loop = loop
        self._ahead = min(READ_AHEAD, limit // 4)
        # Cached jobs, least recently filled first, for eviction: a queue of
        # lists ("generations") of up to GENERATION jobs each, the oldest
        # first, rather than one ordered dict, which would copy itself whole
        # each time it doubled (a tenth of a second at three million bodies,
        # with the event loop, or the GIL during the start-up warm-up, held).
        # A live job's non-empty body is in memory exactly when the job is
        # queued here once; a deleted job's body is dropped (forget) and its
        # entry, now stale, is skipped when reached and swept out of the
        # generations a few at a time once stale entries outnumber live ones.
        # (The binlog's put and delete do admit's and forget's work inline.)
        self.newest: list[Any] = []
        self._generations: deque[list[Any]] = deque([self.newest])
        self._head = 0  # entries before this in the oldest generation have gone
        self._sweep = 0  # the generation the next sweep step cleans
        self.count = 0  # bodies cached
        self.stale = 0  # queued entries whose body has gone
        self.size = 0  # bytes charged: bodies plus ENTRY_COST each
        # job -> callbacks waiting for a read already in flight
        self._inflight: dict[Any, list[BodyCallback]] = {}
        self._open: OrderedDict[Any, None] = OrderedDict()  # files with a read descriptor
        self._pool: ThreadPoolExecutor | None = None
        self._futures: set[asyncio.Future[Any]] = set()
        self._nowait = bool(_NOWAIT) and _preadv is not None
        self._reported: tuple[int, ...] = ()
        self._report: asyncio.TimerHandle | None = None
        # Counters, for the log at -V and the metrics endpoint.
        self.hits = 0  # bodies asked for and found in memory
        self.misses = 0  # bodies asked for that had to be read back
        self.reads = 0  # read-backs (one may bring many bodies)
        self.reads_inline = 0  # ... of which the page cache served on the loop
        self.read_bytes = 0
        self.read_ahead = 0  # bodies brought into memory before anyone asked
        self.errors = 0  # records that failed their check or could not be read
        self.evictions = 0
        # on_resize(delta): told the bytes of bodies evicted (< 0) or read back
        # into memory (> 0), for --max-memory's count; puts and deletes are
        # counted by the storage itself.
        self.on_resize: Callable[[int], None] | None = None
        if log.isEnabledFor(logging.INFO):
            self._report = loop.call_later(REPORT_EVERY, self._report_now)

    # --- the cache -------------------------------------------------------------

    def admit(self, job: Any) -> None:
        """A body in memory (a put) joins the cache, or is dropped if it does not fit."""
        body = job.body
        if not body:
            return
        cost = len(body) + ENTRY_COST
        if cost > self.limit:
            job.body = b""
            return
        newest = self.newest
        newest.append(job)
        if len(newest) >= GENERATION:
            self.new_generation()
        self.count += 1
        size = self.size = self.size + cost
        if size > self.limit:
            self.evict()

    def new_generation(self) -> None:
        self.newest = []
        self._generations.append(self.newest)

    def forget(self, job: Any) -> None:
        """The job is gone from the log: its body leaves memory (and the cache)."""
        body = job.body
        if body:
            job.body = b""
            self.size -= len(body) + ENTRY_COST
            self.count -= 1
            self.stale += 1
            if self.stale > self.count + GENERATION:
                self.sweep_step()

    def _oldest(self) -> Any:
        """The queue's oldest entry, taken out; None when it is empty."""
        generations = self._generations
        while True:
            gen = generations[0]
            head = self._head
            if head < len(gen):
                job = gen[head]
                gen[head] = None
                self._head = head + 1
                return job
            self._head = 0
            if len(generations) == 1:
                gen.clear()
                return None
            generations.popleft()
            self._sweep = max(0, self._sweep - 1)

    def evict(self) -> None:
        limit = self.limit
        size = self.size
        n = 0
        freed = 0
        while size > limit and self.count:
            job = self._oldest()
            body = job.body
            if not body:  # deleted since it was queued
                self.stale -= 1
                continue
            size -= len(body) + ENTRY_COST
            freed += len(body)
            job.body = b""
            self.count -= 1
            n += 1
        self.size = size
        self.evictions += n
        if self.on_resize is not None:
            self.on_resize(-freed)

    def sweep_step(self) -> None:
        """Drop the stale entries of one generation (order kept): at most
        GENERATION entries looked at, so no step holds the loop for long."""
        generations = self._generations
        i = self._sweep if self._sweep < len(generations) else 0
        gen = generations[i]
        start = self._head if i == 0 else 0
        kept = [job for job in gen[start:] if job.body]  # no None after the head
        self.stale -= len(gen) - start - len(kept)
        if i == 0:
            self._head = 0
        if kept or len(generations) == 1 or i == len(generations) - 1:
            generations[i] = kept
            if i == len(generations) - 1:
                self.newest = kept
            self._sweep = i + 1
        else:
            del generations[i]
            self._sweep = i

    def _fill(self, job: Any, body: bytes) -> None:
        """A body read back: keep it if the job still lives and the cache has room."""
        if not self.limit or job.body or self._log.locate(job) is None:
            return
        job.body = body
        self.admit(job)
        if job.body and self.on_resize is not None:
            self.on_resize(len(body))

    def warm(self, files: list[_File]) -> None:
        """At start-up: fill the cache with the bodies of the oldest live jobs.

        A log whose bodies fit in the cache is then served from memory as
        before; a bigger one starts with the jobs a reserve is likely to want
        first. Reads whole stretches of each file (replay just read them, so
        they are usually in the page cache). Runs on the replay's helper
        thread, before the binlog adopts ``files``: nothing else uses the
        cache yet.
        """
        room = self.limit
        for f in files:
            jobs, offsets, sizes = f.jobs, f.offsets, f.sizes
            tag, n = 0, len(jobs)
            while tag < n and room > 0:
                while tag < n and jobs[tag] is None:
                    tag += 1
                if tag == n:
                    break
                start = offsets[tag]
                end = tag
                while end < n and offsets[end] + sizes[end] - start <= 4 * READ_AHEAD:
                    end += 1
                end = max(end, tag + 1)
                stop = offsets[end - 1] + sizes[end - 1]
                # Nothing is written before recovery ends: no buffered records to flush.
                data = memoryview(os.pread(self._fd(f), stop - start, start))
                for t in range(tag, end):
                    job = jobs[t]
                    if job is None:
                        continue
                    at = offsets[t] - start
                    try:
                        body = fmt.job_record_body(data[at : at + sizes[t]], job.id)
                    except fmt.FormatError:
                        continue  # reported when the body is asked for
                    if not body:
                        continue
                    cost = len(body) + ENTRY_COST
                    if cost > room:
                        room = 0
                        break
                    room -= cost
                    job.body = body
                    self.admit(job)
                tag = end
            if room <= 0:
                break

    # --- asking for a body ------------------------------------------------------

    def get(self, job: Any) -> bytes | None:
        """The body now: from memory, or read inline when the page cache has it.

        None means the read would wait for the disk: fetch() it. Raises
        BinlogCorrupt when the record fails its check.
        """
        body = job.body
        if body:
            self.hits += 1
            return body  # type: ignore[no-any-return]
        return self._miss(job)

    def take(self, job: Any) -> bytes | None:
        """get() for a reserve: also reads ahead the new head of the job's tube."""
        body = job.body
        if body:
            self.hits += 1
        else:
            body = self._miss(job)
        if self._ahead:
            ready = job.tube.ready
            if len(ready):
                head = ready.peek()
                if not head.body and head not in self._inflight:
                    self._prefetch(head)
        return body  # type: ignore[no-any-return]

    def fetch(self, job: Any, callback: BodyCallback) -> None:
        """Read the body on a helper thread; callback(body, error) on the loop."""
        waiting = self._inflight.get(job)
        if waiting is not None:
            waiting.append(callback)
            return
        where = self._log.locate(job)
        if where is None:
            self._loop.call_soon(callback, None, _not_live(job))
            return
        self._inflight[job] = [callback]
        self._read(where[0], job, inline=False)

    def load(self, job: Any) -> bytes:
        """The body, waiting for the disk if need be (tests and tools, not the loop)."""
        body = job.body
        if body:
            return body  # type: ignore[no-any-return]
        where = self._log.locate(job)
        if where is None:
            raise _not_live(job)
        f, offset, size = where
        self._log.make_readable(f, offset + size)
        data = os.pread(self._fd(f), size, offset)
        return self._body_of(f, offset, data, job)

    def _miss(self, job: Any) -> bytes | None:
        where = self._log.locate(job)
        if where is None:
            raise _not_live(job)
        f, _, size = where
        if size == fmt.JOB_FIXED + _tube_len(job):
            self.hits += 1
            return b""  # an empty body: nothing to read
        self.misses += 1
        if job in self._inflight:
            return None
        got = self._read(f, job, inline=True)
        return got

    def _prefetch(self, job: Any) -> None:
        """Bring job's body (and the ready ones after it) into memory; nobody waits."""
        where = self._log.locate(job)
        if where is None or job in self._inflight:
            return
        try:
            if self._read(where[0], job, inline=True) is not None or job in self._inflight:
                return
        except BinlogCorrupt:
            return  # logged; the reserve that gets this job will answer the error
        self._inflight[job] = []
        self._read(where[0], job, inline=False)

    # --- reading ------------------------------------------------------------------

    def _span(self, f: _File, job: Any) -> tuple[int, int, list[tuple[int, Any]]]:
        """What one read takes: (offset, length, [(tag, job)]) from job's record on."""
        tag = job.tag
        start = f.offsets[tag]
        end = start + f.sizes[tag]
        wanted = [(tag, job)]
        if self._ahead:
            jobs, offsets, sizes = f.jobs, f.offsets, f.sizes
            stop = start + max(self._ahead, end - start)
            n = len(jobs)
            t = tag + 1
            while t < n:
                at = offsets[t]
                if at + sizes[t] > stop:
                    break
                other = jobs[t]
                if other is not None and not other.body and other.state == 0:
                    wanted.append((t, other))
                    end = at + sizes[t]
                t += 1
        return start, end - start, wanted

    def _read(self, f: _File, job: Any, inline: bool) -> bytes | None:
        """Read job's record (and the ready bodies after it).

        inline: try the page cache on the loop; job's body, or None if the
        read would block (nothing started). Otherwise start a thread read
        whose end calls the callbacks in _inflight[job].
        """
        start, length, wanted = self._span(f, job)
        self._log.make_readable(f, start + length)
        fd = self._fd(f)
        if inline:
            data = self._read_nowait(fd, start, length)
            if data is None or len(data) < f.sizes[job.tag] + f.offsets[job.tag] - start:
                return None
            self.reads += 1
            self.reads_inline += 1
            self.read_bytes += len(data)
            return self._landed(f, start, wanted, data, None)
        for _, other in wanted[1:]:
            self._inflight.setdefault(other, [])
        f.reads += 1
        future = self._loop.run_in_executor(self._executor(), os.pread, fd, length, start)
        self._futures.add(future)
        future.add_done_callback(lambda fut: self._thread_done(fut, f, start, wanted))
        return None

    def _read_nowait(self, fd: int, offset: int, length: int) -> bytes | None:
        if not self._nowait:
            return None
        buf = bytearray(length)
        try:
            n = _preadv(fd, [buf], offset, _NOWAIT)  # type: ignore[misc]
        except BlockingIOError:
            return None
        except OSError:
            self._nowait = False  # not supported here (EOPNOTSUPP): threads only
            return None
        if n < length:
            del buf[n:]
        return bytes(buf)

    def _thread_done(
        self, future: asyncio.Future[bytes], f: _File, start: int, wanted: list[tuple[int, Any]]
    ) -> None:
        self._futures.discard(future)
        self._done_reading(f)
        if future.cancelled():
            return
        exc = future.exception()
        data = None if exc is not None else future.result()
        if data is not None:
            self.reads += 1
            self.read_bytes += len(data)
        self._landed(f, start, wanted, data, exc)

    def _landed(
        self,
        f: _File,
        start: int,
        wanted: list[tuple[int, Any]],
        data: bytes | None,
        exc: BaseException | None,
    ) -> bytes | None:
        """Cut the bodies out of a read; fill the cache, answer the waiters.

        Returns the first wanted job's body (for an inline read).
        """
        first = None
        view = memoryview(data) if data is not None else None
        for i, (tag, job) in enumerate(wanted):
            offset = f.offsets[tag]
            size = f.sizes[tag]
            body: bytes | None = None
            err: BaseException | None = None
            if view is None or offset + size - start > len(view):
                if i:  # read-ahead that did not arrive: no one is owed it yet
                    self._answer(job, None, None)
                    continue
                err = self._failed(f, offset, exc)
            else:
                try:
                    body = self._body_of(
                        f, offset, view[offset - start : offset - start + size], job
                    )
                except BinlogCorrupt as bad:
                    err = bad
            if i == 0:
                first = body
                if err is not None and job not in self._inflight:
                    raise err
            elif body is not None:
                self.read_ahead += 1
            if body is not None:
                self._fill(job, body)
            self._answer(job, body, err)
        return first

    def _answer(self, job: Any, body: bytes | None, err: BaseException | None) -> None:
        waiting = self._inflight.pop(job, None)
        if not waiting:
            return
        if body is None and err is None:
            # Read ahead for a job someone asked for meanwhile, but cut short:
            # read it on its own.
            self._inflight[job] = waiting
            where = self._log.locate(job)
            if where is not None:
                self._read(where[0], job, inline=False)
                return
            self._inflight.pop(job)
            err = _not_live(job)
        for callback in waiting:
            try:
                callback(body, err)
            except Exception as cb_exc:
                self._loop.call_exception_handler(
                    {"message": "body read callback failed", "exception": cb_exc}
                )

    def _body_of(self, f: _File, offset: int, record: Any, job: Any) -> bytes:
        try:
            return fmt.job_record_body(record, job.id)
        except fmt.FormatError as exc:
            self.errors += 1
            err = BinlogCorrupt(self._log.path_of(f), offset, f"job {job.id}: {exc}")
            log.error("binlog: body of job %d cannot be read back: %s", job.id, err)
            raise err from None

    def _failed(self, f: _File, offset: int, exc: BaseException | None) -> BaseException:
        self.errors += 1
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else "short read"
        err = BinlogCorrupt(self._log.path_of(f), offset, f"cannot read the record back: {why}")
        log.error("binlog: %s", err)
        return err

    def read_span(
        self,
        f: _File,
        offset: int,
        length: int,
        done: Callable[[bytes | None, BaseException | None], None],
    ) -> None:
        """Raw bytes of f (compaction): done(data, error), inline if the page cache has them."""
        self._log.make_readable(f, offset + length)
        try:
            fd = self._fd(f)
        except OSError as exc:
            done(None, exc)
            return
        data = self._read_nowait(fd, offset, length)
        if data is not None and len(data) == length:
            done(data, None)
            return
        f.reads += 1
        future = self._loop.run_in_executor(self._executor(), os.pread, fd, length, offset)
        self._futures.add(future)

        def landed(fut: asyncio.Future[bytes]) -> None:
            self._futures.discard(fut)
            self._done_reading(f)
            if fut.cancelled():
                return
            error = fut.exception()
            done(None if error is not None else fut.result(), error)

        future.add_done_callback(landed)

    # --- descriptors ----------------------------------------------------------------

    def _fd(self, f: _File) -> int:
        if f.rfd >= 0:
            self._open.move_to_end(f)
            return f.rfd  # type: ignore[no-any-return]
        f.rfd = os.open(self._log.path_of(f), os.O_RDONLY | os.O_CLOEXEC)
        self._open[f] = None
        if len(self._open) > MAX_READ_FDS:
            for old in list(self._open):
                if len(self._open) <= MAX_READ_FDS:
                    break
                if old is not f and not old.reads:
                    self._close_fd(old)
        return f.rfd  # type: ignore[no-any-return]

    def _close_fd(self, f: _File) -> None:
        if f.rfd >= 0:
            os.close(f.rfd)
            f.rfd = -1
        self._open.pop(f, None)

    def _done_reading(self, f: _File) -> None:
        f.reads -= 1
        if f.gone and not f.reads:
            self._close_fd(f)

    def file_gone(self, f: _File) -> None:
        """The log deleted f: close its descriptor once no read needs it."""
        f.gone = True
        if not f.reads:
            self._close_fd(f)

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="binlog-read")
        return self._pool

    # --- reporting and shutdown ------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """The cache's figures (not in `stats`: the reference has no such keys)."""
        return {
            "body-cache-limit-bytes": self.limit,
            "body-cache-bytes": self.size,
            "body-cache-bodies": self.count,
            "body-cache-hits": self.hits,
            "body-cache-misses": self.misses,
            "body-cache-evictions": self.evictions,
            "body-reads": self.reads,
            "body-reads-inline": self.reads_inline,
            "body-read-bytes": self.read_bytes,
            "body-read-ahead": self.read_ahead,
            "body-read-errors": self.errors,
        }

    def describe(self) -> str:
        asked = self.hits + self.misses
        rate = 100.0 * self.hits / asked if asked else 100.0
        return (
            f"body cache: {self.count} bodies, {self.size} of {self.limit} bytes; "
            f"hit rate {rate:.1f}% ({self.hits} hits, {self.misses} misses); "
            f"{self.reads} reads ({self.reads_inline} from the page cache on the loop, "
            f"{self.read_bytes} bytes), {self.read_ahead} bodies read ahead, "
            f"{self.errors} errors"
        )

    def _report_now(self) -> None:
        figures = (self.hits, self.misses, self.reads, self.size)
        if figures != self._reported:
            self._reported = figures
            log.info("%s", self.describe())
        self._report = self._loop.call_later(REPORT_EVERY, self._report_now)

    def busy(self) -> bool:
        return bool(self._futures)

    async def close(self) -> None:
        """Let reads in flight end, then close every descriptor."""
        if self._report is not None:
            self._report.cancel()
            self._report = None
            if self.hits or self.misses:
                log.info("%s", self.describe())
        if self._futures:
            await asyncio.wait(list(self._futures))
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None
        for f in list(self._open):
            self._close_fd(f)


def _not_live(job: Any) -> BinlogCorrupt:
    return BinlogCorrupt("binlog", 0, f"job {job.id} has no record in the log")
