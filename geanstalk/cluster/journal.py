"""The leader's journal in etcd: group commit of job records, fenced by its epoch.

It implements the Journal protocol of geanstalk/journal.py, so storage.py
calls it exactly where the binlog is called (put, release with a delay,
bury, kick, kick-job, delete) and protocol.py holds every reply until
``durable()`` has caught up with ``pending()``: a reply goes out only once
its change is committed in etcd (on a majority of members, fsynced).

Each change becomes a put (the job's record) or a delete of its job key.
What is queued when the loop comes round goes out in one transaction whose
only compare is "the leader key's create_revision is my epoch", so a
deposed leader's write fails instead of landing. Two changes of one job
waiting together are merged into the last one (a put and a delete of a job
that never reached etcd is just the delete). Several transactions may be in
flight, never two touching one job, so their order cannot matter. Limits per
transaction follow etcd's defaults (128 operations, 1.5 MiB per request).

Job ids: ``next-id`` is raised in blocks inside the same fenced transaction
as the first put at or past the committed mark, one such raise in flight at
a time, so no id an acknowledged put returned is ever below it.

Failure: a write that may or may not have been applied (timeout, broken
connection, an answer other than "no leader") is not retried: etcd could
still apply the first attempt after a later change of the same job. The
journal is *fenced* instead: nothing it holds is ever made durable, and the
node steps down and rebuilds from etcd. Errors that prove nothing was
applied are retried until the lease deadline. Past the lease deadline
(``lease.deadline`` on the monotonic clock) nothing more is acknowledged:
``pending()`` checks it, so a leader paused past its lease answers nothing
when it runs again, not even a reply that needs no write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from geanstalk.cluster import etcd
from geanstalk.cluster.keys import Keys, encode_job, encode_next_id
from geanstalk.journal import DurabilityWaiters

if TYPE_CHECKING:
    from geanstalk.core import Job

log = logging.getLogger("geanstalk.cluster")

# etcd's defaults: --max-txn-ops 128, --max-request-bytes 1.5 MiB. One
# operation of each transaction is the fencing compare's partner, the
# next-id raise, so a batch holds at most MAX_OPS - 1 job records.
MAX_OPS = 128
MAX_REQUEST_BYTES = 1536 * 1024
# Room for the JSON envelope, keys and the next-id put around the records.
REQUEST_OVERHEAD = 16 * 1024
# The largest record a job may have (a job bigger than this could never commit).
MAX_RECORD_BYTES = MAX_REQUEST_BYTES - REQUEST_OVERHEAD
MAX_INFLIGHT = 8
# A batch with room left goes out only while fewer than this many are in
# flight; otherwise it waits and grows. Measured on a loaded 2-core VM with a
# 3-member etcd (50 clients, one put at a time): 1 gave 3.4k puts/s, 2 gave
# 2.9k, 8 gave 3.0k, as etcd's cost is mostly per transaction.
PARTIAL_INFLIGHT = 1
ID_BLOCK = 10_000
# Waits between retries of a write that etcd refused without applying it.
RETRY_DELAY = 0.05

# Messages from etcd that prove the request was not applied.
_NOT_APPLIED = ("no leader", "too many requests", "not capable", "connection refused")


class LeaseClock(Protocol):
    """What the journal needs of the leader's lease (leader.Lease)."""

    deadline: float


class _Txn:
    __slots__ = ("bump", "jobs", "min_seq", "ops")

    def __init__(self) -> None:
        self.ops: list[dict[str, Any]] = []
        self.jobs: list[int] = []
        self.min_seq = 0
        self.bump = 0  # the next-id this transaction raises to, 0 if none


class EtcdJournal:
    """One leadership's journal; made unarmed for a standby's engine, armed at takeover."""

    def __init__(
        self,
        client: etcd.EtcdClient,
        keys: Keys,
        loop: asyncio.AbstractEventLoop,
        *,
        max_ops: int = MAX_OPS,
        max_bytes: int = MAX_REQUEST_BYTES,
        max_inflight: int = MAX_INFLIGHT,
        partial_inflight: int = PARTIAL_INFLIGHT,
        id_block: int = ID_BLOCK,
        max_size: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_ops < 2:
            raise ValueError("max_ops must leave room for a record and the next-id raise")
        self._client = client
        self._keys = keys
        self._loop = loop
        self._max_records = max_ops - 1
        self._max_bytes = max_bytes - REQUEST_OVERHEAD
        self._max_inflight = max_inflight
        self._partial_inflight = partial_inflight
        self._id_block = id_block
        self._max_size = max_size  # -s, printed by stats as binlog-max-size
        self._clock = clock
        self._leader_key = keys.leader
        self._job_key = keys.job

        self._armed = False
        self._fenced = False
        self._closing = False
        self.fence_reason = ""
        self._epoch = 0
        self._lease: LeaseClock | None = None
        self._deadline = float("-inf")  # until armed: nothing is acknowledged
        # Called once when the journal is fenced (the node steps down).
        self.on_fenced: Callable[[str], None] | None = None

        self._seq = 0
        self._durable = 0
        # job id -> [first seq, record or None for a delete]; dict order is
        # first-seq order, so the first entry holds the lowest waiting seq.
        self._queue: dict[int, list[Any]] = {}
        self._inflight: list[_Txn] = []
        self._inflight_jobs: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._hw = 0  # committed next-id: every id below it may have been handed out
        self._hw_raising = False
        self._max_id = 0  # highest id journaled by this leader
        self._off: float | None = None
        self._flush_handle: asyncio.Handle | None = None
        self._waiters = DurabilityWaiters(loop, "cluster journal")
        self._idle: asyncio.Event | None = None

        self.records_written = 0
        self.txns_committed = 0
        self.last_revision = 0

    # --- leadership ------------------------------------------------------------

    def arm(self, epoch: int, lease: LeaseClock, next_id: int) -> None:
        """Start journaling as the leader of epoch, whose lease is lease."""
        self._epoch = epoch
        self._lease = lease
        self._hw = next_id
        self._armed = True

    @property
    def epoch(self) -> int:
        return self._epoch

    @property
    def fenced(self) -> bool:
        return self._fenced

    def fence(self, reason: str) -> None:
        """Never acknowledge anything more; tell the node (once)."""
        if self._fenced:
            return
        self._fenced = True
        self.fence_reason = reason
        log.warning("cluster journal fenced (epoch %d): %s", self._epoch, reason)
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if self._idle is not None:
            self._idle.set()
        callback = self.on_fenced
        if callback is not None:
            self._loop.call_soon(callback, reason)

    def _lease_ok(self) -> bool:
        lease = self._lease
        if lease is None:
            return False
        if self._clock() < lease.deadline:
            return True
        self.fence("the lease deadline passed")
        return False

    # --- the Journal protocol -------------------------------------------------------

    def put(self, job: Job) -> None:
        off = self._off
        if off is None:
            off = self._off = time.time() - self._clock()
        job_id = job.id
        if job_id > self._max_id:
            self._max_id = job_id
        self._enqueue(job_id, encode_job(job, off))

    def update(self, job: Job) -> None:
        self.put(job)

    def delete(self, job: Job) -> None:
        self._enqueue(job if isinstance(job, int) else job.id, None)

    def _enqueue(self, job_id: int, record: bytes | None) -> None:
        seq = self._seq = self._seq + 1
        if self._fenced:
            return
        entry = self._queue.get(job_id)
        if entry is None:
            self._queue[job_id] = [seq, record]
        else:
            entry[1] = record
        if self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self._flush)

    def pending(self) -> int:
        # Every reply asks this first: past the lease nothing goes out.
        if self._fenced or not self._lease_ok():
            return self._seq + 1
        return self._seq

    def durable(self) -> int:
        return self._durable

    def wait_durable(self, seq: int, callback: Callable[[], object]) -> None:
        if seq <= self._durable:
            self._loop.call_soon(callback)
            return
        self._waiters.add(seq, callback)

    def stats(self) -> dict[str, int]:
        # The binlog's fields, so `stats` prints what the reference prints.
        return {
            "binlog-oldest-index": 0,
            "binlog-current-index": 0,
            "binlog-records-migrated": 0,
            "binlog-records-written": self.records_written,
            "binlog-max-size": self._max_size,
        }

    async def close(self) -> None:
        """Commit what is queued and wait for what is in flight (bounded by the lease)."""
        self._closing = True
        if not self._armed:
            return
        while not self._fenced and (self._queue or self._inflight):
            self._flush()
            self._idle = asyncio.Event()
            lease = self._lease
            left = (lease.deadline if lease is not None else 0) - self._clock()
            if left <= 0:
                self.fence("the lease deadline passed while closing")
                break
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._idle.wait(), left)
        for task in list(self._tasks):
            task.cancel()

    # --- group commit ---------------------------------------------------------------

    def _flush(self) -> None:
        self._flush_handle = None
        self._off = None
        if self._fenced or not self._armed:
            return
        if not self._lease_ok():
            return
        while self._queue and len(self._inflight) < self._max_inflight:
            if (
                len(self._inflight) >= self._partial_inflight
                and len(self._queue) < self._max_records
            ):
                # Group commit: while a few transactions are in flight, a
                # partial batch waits for one of them to finish and grows
                # meanwhile (etcd's cost is per transaction, not per record).
                return
            txn = self._batch()
            if txn is None:
                return
            self._inflight.append(txn)
            self._inflight_jobs.update(txn.jobs)
            task = self._loop.create_task(self._commit(txn))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _batch(self) -> _Txn | None:
        """The next transaction from the queue: waiting changes whose job is not in flight."""
        txn = _Txn()
        size = 0
        taken: list[int] = []
        hw = self._hw
        new_max = 0
        job_key = self._job_key
        inflight = self._inflight_jobs
        for job_id, (seq, record) in self._queue.items():
            if job_id in inflight:
                continue
            if job_id >= hw and self._hw_raising:
                # Past the committed mark: this change must carry a raise of
                # next-id, and one raise at a time is in flight (a retried
                # older raise could otherwise lower the mark).
                continue
            rsize = len(record) if record is not None else 0
            if txn.ops and (len(txn.ops) >= self._max_records or size + rsize > self._max_bytes):
                break
            key = job_key(job_id)
            txn.ops.append(etcd.op_put(key, record) if record is not None else etcd.op_delete(key))
            size += rsize + len(key)
            taken.append(job_id)
            if not txn.min_seq or seq < txn.min_seq:
                txn.min_seq = seq
            if job_id >= hw and job_id > new_max:
                new_max = job_id
        if not taken:
            return None
        queue = self._queue
        for job_id in taken:
            del queue[job_id]
        txn.jobs = taken
        if new_max:
            txn.bump = max(new_max, self._max_id) + self._id_block
            txn.ops.append(etcd.op_put(self._keys.next_id, encode_next_id(txn.bump)))
            self._hw_raising = True
        return txn

    async def _commit(self, txn: _Txn) -> None:
        compare = [etcd.compare_create(self._leader_key, self._epoch)]
        while True:
            if self._fenced:
                return
            lease = self._lease
            assert lease is not None
            left = lease.deadline - self._clock()
            if left <= 0:
                self.fence("the lease deadline passed before a write committed")
                return
            try:
                result = await self._client.txn(compare, txn.ops, timeout=left)
            except etcd.EtcdError as exc:
                text = str(exc).lower()
                if any(word in text for word in _NOT_APPLIED):
                    await asyncio.sleep(RETRY_DELAY)
                    continue
                self.fence(f"a write failed and may or may not have been applied: {exc}")
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug: stop acknowledging rather than guess
                log.exception("cluster journal: transaction failed")
                self.fence(f"unexpected error: {exc!r}")
                return
            if not result.succeeded:
                self.fence(f"epoch {self._epoch} is no longer the leader's")
                return
            self._committed(txn, result.revision)
            return

    def _committed(self, txn: _Txn, revision: int) -> None:
        if self._fenced:
            return
        self._inflight.remove(txn)
        self._inflight_jobs.difference_update(txn.jobs)
        if txn.bump:
            self._hw = max(self._hw, txn.bump)
            self._hw_raising = False
        self.records_written += len(txn.jobs)
        self.txns_committed += 1
        if revision > self.last_revision:
            self.last_revision = revision
        # A paused leader whose answer arrives after its lease ends says nothing.
        if not self._lease_ok():
            return
        low = self._seq + 1
        for t in self._inflight:
            if t.min_seq < low:
                low = t.min_seq
        if self._queue:
            first = next(iter(self._queue.values()))[0]
            if first < low:
                low = first
        if low - 1 > self._durable:
            self._set_durable(low - 1)
        if self._queue and self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self._flush)
        if self._idle is not None and not self._queue and not self._inflight:
            self._idle.set()

    def _set_durable(self, seq: int) -> None:
        self._durable = seq
        if self._waiters:
            self._waiters.release(seq)

    # --- for the node and tests -----------------------------------------------------

    def busy(self) -> bool:
        return bool(self._queue or self._inflight)

    @property
    def next_id(self) -> int:
        """The committed next-id mark."""
        return self._hw
