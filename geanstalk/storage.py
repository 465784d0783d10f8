"""StorageService: the job registry, the tubes, and every job state transition.

Rule of the house 1: each change of a job's state happens here and nowhere
else, so the counters the stats commands print, the heaps, and the journal
always agree. The journal is called exactly where beanstalkd 1.12 writes its
binlog (put, delete, bury, kick, kick-job, release with a delay); reserve,
touch, plain release, TTR expiry and delay expiry are not journaled, which
is why a job reserved at a crash comes back ready.

Times are time.monotonic() seconds throughout; only restore() sees wall-clock
times, from the binlog.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from geanstalk.core import BURIED, DELAYED, READY, RESERVED, Job, JobHeap, JobTable, TubeHeap
from geanstalk.errors import NotFound, NotIgnored
from geanstalk.journal import NullJournal
from geanstalk.tube import DEFAULT_TUBE, URGENT_THRESHOLD, Tube

if TYPE_CHECKING:
    from geanstalk.journal import Journal

INF = float("inf")

# What a stored job costs beyond its body, for --max-memory: the Job object,
# its heap and table slots, and the body's bytes-object header (measured:
# 290 B of RSS per ready job of 100 B; benchmarks/results/server.md). With
# -b the log's index of the job adds JOURNAL_JOB_OVERHEAD (573 B per job).
JOB_OVERHEAD = 200
JOURNAL_JOB_OVERHEAD = 300

# wake(job, word): a blocked reserve ends. word is b"RESERVED" (with the job),
# b"TIMED_OUT" or b"DEADLINE_SOON" (job None).
WakeFn = Callable[[Job | None, bytes], None]


class Client:
    """The server's view of one connection: tubes, reservations, waiting state."""

    __slots__ = (
        "halfclosed",
        "producer",
        "reserved",
        "use",
        "wait_timeout_at",
        "wait_token",
        "waiting",
        "wake",
        "watch",
        "worker",
    )

    def __init__(self, wake: WakeFn) -> None:
        self.wake = wake
        self.use: Tube | None = None
        # The watch list keeps the reference's order (list-tubes-watched).
        self.watch: list[Tube] = []
        self.reserved: dict[int, Job] = {}
        self.waiting = False
        self.wait_token = 0
        self.wait_timeout_at = INF
        self.producer = False
        self.worker = False
        self.halfclosed = False

    def soonest_deadline(self) -> float:
        """The earliest TTR deadline among this client's reservations."""
        return min((j.runnable_at for j in self.reserved.values()), default=INF)


class StorageService:
    """Jobs and tubes.

    Storage never calls up into the layers above it: the lock service, which
    sits on top, subscribes ``on_waiters_ready(tube)`` (a tube with blocked
    reserves got a ready job), and the timer service ``schedule(when)``.
    """

    def __init__(self, journal: Journal, clock: Callable[[], float] = time.monotonic) -> None:
        self.journal = journal
        # Without -b the journal's methods do nothing: the hot transitions
        # skip the call altogether.
        self.journaled = not isinstance(journal, NullJournal)
        self.clock = clock
        # Every live job by id; a C table costs a quarter of a dict of int keys.
        self.jobs = JobTable()
        self.tubes: dict[bytes, Tube] = {}
        self.tube_list: list[Tube] = []
        self.next_id = 1
        # Every reserved job, ordered by TTR deadline (runnable_at); never
        # looked up by id, so it keeps no id index.
        self.ttr = JobHeap(indexed=False)
        # The tubes whose delay heap is not empty, ordered by their first wake.
        self.delayed_tubes = TubeHeap()
        # Pause ends, (unpause_at, tube); stale entries are skipped lazily.
        self._pauses: list[tuple[float, int, Tube]] = []
        self._pause_seq = 0
        self.on_waiters_ready: Callable[[Tube], None] = lambda tube: None
        self.schedule: Callable[[float], None] = lambda when: None
        self.ready_ct = 0
        self.urgent_ct = 0
        self.reserved_ct = 0
        self.buried_ct = 0
        self.delayed_ct = 0
        self.total_jobs = 0
        self.timeouts = 0
        # --max-memory: 0 is no bound. body_bytes is kept by put_counted,
        # delete_counted and restore, which the Server swaps in with a bound.
        self.max_memory = 0
        self.body_bytes = 0
        self.job_overhead = JOB_OVERHEAD + (JOURNAL_JOB_OVERHEAD if self.journaled else 0)
        self.default = self.tube(DEFAULT_TUBE)

    # --- tubes -------------------------------------------------------------

    def tube(self, name: bytes) -> Tube:
        """The tube called name, made if it does not exist yet."""
        t = self.tubes.get(name)
        if t is None:
            t = Tube(name)
            t.index = len(self.tube_list)
            self.tube_list.append(t)
            self.tubes[name] = t
        return t

    def _maybe_drop(self, t: Tube) -> None:
        if not t.is_unused():
            return
        del self.tubes[t.name]
        last = self.tube_list.pop()
        if last is not t:
            self.tube_list[t.index] = last
            last.index = t.index
        t.index = -1

    def attach(self, client: Client) -> None:
        """A new connection uses and watches default."""
        t = self.default
        client.use = t
        t.using += 1
        client.watch = [t]  # sized for one (an append would make room for four)
        t.watching += 1

    def use(self, client: Client, name: bytes) -> Tube:
        t = self.tube(name)
        old = client.use
        client.use = t
        t.using += 1
        if old is not None:
            old.using -= 1
            self._maybe_drop(old)
        return t

    def watch(self, client: Client, name: bytes) -> int:
        t = self.tube(name)
        if t not in client.watch:
            client.watch.append(t)
            t.watching += 1
        return len(client.watch)

    def ignore(self, client: Client, name: bytes) -> int:
        watch = client.watch
        for i, t in enumerate(watch):
            if t.name == name:
                if len(watch) < 2:
                    raise NotIgnored(name)
                # The reference removes by moving the last entry into the hole.
                last = watch.pop()
                if i < len(watch):
                    watch[i] = last
                t.watching -= 1
                self._maybe_drop(t)
                break
        return len(watch)

    def detach(self, client: Client) -> None:
        """A connection closed: its reservations go back to ready, its tubes may go."""
        if client.reserved:
            jobs = list(client.reserved.values())
            client.reserved.clear()
            for job in jobs:
                self._unreserve(job)
                self._make_ready(job)
                self._kick_waiters(job.tube)
        # 1.12 empties the watch list by taking out its first entry and moving
        # the last one into the hole, and only then lets go of the used tube;
        # tubes that go leave list-tubes by the same swap, so the order in
        # which they go decides the order of the tubes that stay.
        watch, client.watch = client.watch, []
        while watch:
            t = watch[0]
            last = watch.pop()
            if watch:
                watch[0] = last
            t.watching -= 1
            self._maybe_drop(t)
        used, client.use = client.use, None
        if used is not None:
            used.using -= 1
            self._maybe_drop(used)

    # --- pause -------------------------------------------------------------

    def pause_tube(self, name: bytes, seconds: int) -> None:
        t = self.tubes.get(name)
        if t is None:
            raise NotFound(name)
        now = self.clock()
        t.pause = seconds
        # As the reference does, a pause of 0 still pauses for an instant so
        # that waiting clients are woken when it ends.
        t.unpause_at = now + (seconds if seconds else 1e-9)
        t.cmd_pause += 1
        self._pause_seq += 1
        heapq.heappush(self._pauses, (t.unpause_at, self._pause_seq, t))
        self.schedule(t.unpause_at)

    def paused(self, t: Tube) -> bool:
        """Whether t is paused now; a pause that has ended is cleared here."""
        if not t.unpause_at:
            return False
        if self.clock() < t.unpause_at:
            return True
        t.unpause_at = 0.0
        t.pause = 0
        return False

    def unpause_due(self, now: float) -> None:
        pauses = self._pauses
        while pauses and pauses[0][0] <= now:
            when, _, t = heapq.heappop(pauses)
            if t.unpause_at == when:
                t.unpause_at = 0.0
                t.pause = 0
                self._kick_waiters(t)

    def next_pause(self) -> float:
        pauses = self._pauses
        while pauses and pauses[0][2].unpause_at != pauses[0][0]:
            heapq.heappop(pauses)
        return pauses[0][0] if pauses else INF

    # --- internal moves between the heaps -----------------------------------

    def _make_ready(self, job: Job) -> None:
        job.runnable_at = None
        job.state = READY
        job.reserver = None
        t = job.tube
        t.ready.push(job)
        self.ready_ct += 1
        if job.priority < URGENT_THRESHOLD:
            self.urgent_ct += 1
            t.urgent += 1

    def _make_delayed(self, job: Job, delay: float, now: float) -> None:
        when = now + delay
        job.runnable_at = when
        job.state = DELAYED
        job.reserver = None
        t = job.tube
        t.delay.push(job)
        self.delayed_ct += 1
        self._delay_changed(t)
        self.schedule(when)

    def _make_buried(self, job: Job) -> None:
        job.runnable_at = None
        job.state = BURIED
        job.reserver = None
        job.buries += 1
        job.tube.buried[job.id] = job
        self.buried_ct += 1

    def _delay_changed(self, t: Tube) -> None:
        name = t.name
        dt = self.delayed_tubes
        if len(t.delay):
            if name in dt:
                dt.fix(name)
            else:
                dt.push(name, t.delay)
        elif name in dt:
            dt.remove(name)

    def _unwait(self, job: Job) -> None:
        """Take a ready, delayed or buried job out of its tube's structure."""
        state = job.state
        if state == READY:
            self._unready(job)
        elif state == DELAYED:
            self._undelay(job)
        else:
            self._unbury(job)

    def _unready(self, job: Job) -> None:
        t = job.tube
        t.ready.remove(job)
        self.ready_ct -= 1
        if job.priority < URGENT_THRESHOLD:
            self.urgent_ct -= 1
            t.urgent -= 1

    def _undelay(self, job: Job) -> None:
        t = job.tube
        t.delay.remove(job)
        self.delayed_ct -= 1
        self._delay_changed(t)

    def _unbury(self, job: Job) -> None:
        del job.tube.buried[job.id]
        self.buried_ct -= 1

    def _unreserve(self, job: Job) -> None:
        """Take a reserved job out of the TTR heap (the caller unlinks its client)."""
        self.ttr.remove(job)
        self.reserved_ct -= 1
        job.tube.reserved -= 1
        job.reserver = None

    def _reserve(self, client: Client, job: Job, now: float) -> None:
        t = job.tube
        t.reserved += 1
        self.reserved_ct += 1
        job.reserves += 1
        job.state = RESERVED
        job.reserver = client
        deadline = now + job.ttr
        job.runnable_at = deadline
        ttr = self.ttr
        ttr.push(job)
        client.reserved[job.id] = job
        # The timer is never armed later than the TTR heap's first deadline,
        # so only a new first deadline can need it sooner.
        if ttr.peek() is job:
            self.schedule(deadline)

    def _kick_waiters(self, t: Tube) -> None:
        if t.waiters and len(t.ready):
            self.on_waiters_ready(t)

    # --- the transitions ----------------------------------------------------

    def new_job(self, priority: int, delay: int, ttr: int, tube: Tube, size: int = 0) -> Job:
        """A job for a put whose line parsed; it consumes an id even if never stored.

        size, the body's announced length, matters only to the memory bound.
        """
        jid = self.next_id
        self.next_id = jid + 1
        job = Job(jid, priority, None, ttr, b"", delay, self.clock())
        job.tube = tube
        return job

    def put(self, job: Job) -> None:
        """Store a job made by new_job(), which is ready, with no runnable_at
        and no reserver, as _make_ready() would leave it."""
        t = job.tube
        self.jobs.add(job)
        self.total_jobs += 1
        t.total_jobs += 1
        if job.delay:
            self._make_delayed(job, job.delay, self.clock())
        else:
            t.ready.push(job)
            self.ready_ct += 1
            if job.priority < URGENT_THRESHOLD:
                self.urgent_ct += 1
                t.urgent += 1
        if self.journaled:
            self.journal.put(job)
        if t.waiters and len(t.ready):
            self.on_waiters_ready(t)

    # --- job memory (--max-memory) ----------------------------------------------

    def job_memory(self) -> int:
        """Bytes the stored jobs take, as --max-memory counts them."""
        return self.body_bytes + len(self.jobs) * self.job_overhead

    def memory_allows(self, size: int) -> bool:
        """Whether a job with a body of size bytes fits under max_memory."""
        return self.body_bytes + size + (len(self.jobs) + 1) * self.job_overhead <= self.max_memory

    def adjust_body_bytes(self, delta: int) -> None:
        """With -b: bodies left memory (delta < 0) or were read back into it."""
        self.body_bytes += delta

    def put_counted(self, job: Job) -> None:
        """put(), counting the body toward the job memory."""
        self.put(job)
        self.body_bytes += len(job.body)

    def delete_counted(self, client: Client, jid: int) -> None:
        """delete(), taking the body off the job memory."""
        job = client.reserved.get(jid) or self.jobs.get(jid)
        size = len(job.body) if job is not None else 0
        self.delete(client, jid)  # with -b the log lets go of the body
        self.body_bytes -= size

    def find_ready(self, client: Client) -> Job | None:
        """The job a reserve by client would get now: least (priority, id) over
        the watched tubes that are not paused."""
        best = None
        for t in client.watch:
            if len(t.ready):
                if t.unpause_at and self.paused(t):
                    continue
                j = t.ready.peek()
                if (
                    best is None
                    or j.priority < best.priority
                    or (j.priority == best.priority and j.id < best.id)
                ):
                    best = j
        return best

    def reserve_next(self, client: Client) -> Job | None:
        """Reserve for client the job find_ready picks; None if there is none.

        One tube watched is the common case: its top job, taken off directly.
        """
        watch = client.watch
        if len(watch) == 1:
            t = watch[0]
            ready = t.ready
            if not len(ready) or (t.unpause_at and self.paused(t)):
                return None
            job = ready.pop()
            self.ready_ct -= 1
            if job.priority < URGENT_THRESHOLD:
                self.urgent_ct -= 1
                t.urgent -= 1
        else:
            job = self.find_ready(client)
            if job is None:
                return None
            self._unready(job)
        self._reserve(client, job, self.clock())
        return job

    def any_ready(self, client: Client) -> bool:
        """The reference's conn_ready: a watched tube has ready jobs, paused or not."""
        return any(len(t.ready) for t in client.watch)

    def reserve_ready(self, client: Client, job: Job) -> Job:
        """Reserve a job that find_ready (or the lock service) picked."""
        self._unready(job)
        self._reserve(client, job, self.clock())
        return job

    def reserve_job(self, client: Client, jid: int) -> Job:
        job = self.jobs.get(jid)
        if job is None:
            raise NotFound(jid)
        if job.state == RESERVED:
            raise NotFound(jid)
        self._unwait(job)
        self._reserve(client, job, self.clock())
        return job

    def delete(self, client: Client, jid: int) -> None:
        job = client.reserved.pop(jid, None)
        if job is not None:  # reserved by this client: _unreserve(), inline
            self.ttr.remove(job)
            self.reserved_ct -= 1
            t = job.tube
            t.reserved -= 1
            job.reserver = None
        else:
            job = self.jobs.get(jid)
            if job is None or job.state == RESERVED:  # missing, or another's
                raise NotFound(jid)
            self._unwait(job)
            t = job.tube
        t.cmd_delete += 1
        self.jobs.remove(job)
        if self.journaled:
            self.journal.delete(job)
        if not (t.using or t.watching):  # otherwise the tube stays, no need to ask
            self._maybe_drop(t)

    def release(self, client: Client, jid: int, priority: int, delay: int) -> None:
        job = client.reserved.pop(jid, None)
        if job is None:
            raise NotFound(jid)
        self._unreserve(job)
        job.priority = priority
        job.delay = delay
        job.releases += 1
        if delay:
            self._make_delayed(job, delay, self.clock())
            self.journal.update(job)
        else:
            self._make_ready(job)
            self._kick_waiters(job.tube)

    def bury(self, client: Client, jid: int, priority: int) -> None:
        job = client.reserved.pop(jid, None)
        if job is None:
            raise NotFound(jid)
        self._unreserve(job)
        job.priority = priority
        self._make_buried(job)
        self.journal.update(job)

    def touch(self, client: Client, jid: int) -> None:
        job = client.reserved.get(jid)
        if job is None:
            raise NotFound(jid)
        job.runnable_at = self.clock() + job.ttr
        self.ttr.update(job)

    def _kick_one(self, job: Job) -> None:
        job.kicks += 1
        self._make_ready(job)
        self.journal.update(job)
        self._kick_waiters(job.tube)

    def kick(self, t: Tube, bound: int) -> int:
        """Kick up to bound buried jobs of t, or if it has none, delayed ones."""
        n = 0
        if t.buried:
            buried = t.buried
            while n < bound and buried:
                _, job = buried.popitem(last=False)
                self.buried_ct -= 1
                self._kick_one(job)
                n += 1
        else:
            delay = t.delay
            while n < bound and len(delay):
                job = delay.pop()
                self.delayed_ct -= 1
                self._delay_changed(t)
                self._kick_one(job)
                n += 1
        return n

    def kick_job(self, jid: int) -> None:
        job = self.jobs.get(jid)
        if job is None:
            raise NotFound(jid)
        if job.state == BURIED:
            self._unbury(job)
        elif job.state == DELAYED:
            self._undelay(job)
        else:
            raise NotFound(jid)
        self._kick_one(job)

    def peek(self, jid: int) -> Job:
        job = self.jobs.get(jid)
        if job is None:
            raise NotFound(jid)
        return job

    # --- the clock's transitions (called by the timer service) ---------------

    def wake_delayed(self, now: float) -> None:
        """Delayed jobs whose time has come (deadline <= now) become ready."""
        dt = self.delayed_tubes
        while len(dt):
            _, heap = dt.peek()
            job = heap.peek()
            if job.runnable_at > now:
                break
            heap.pop()
            self.delayed_ct -= 1
            t = job.tube
            self._delay_changed(t)
            self._make_ready(job)
            self._kick_waiters(t)

    def next_delay(self) -> float:
        dt = self.delayed_tubes
        if not len(dt):
            return INF
        return dt.peek()[1].peek().runnable_at

    def expire_ttr(self, now: float) -> None:
        """Reserved jobs whose TTR deadline has strictly passed go back to ready."""
        heap = self.ttr
        while len(heap):
            job = heap.peek()
            if job.runnable_at >= now:
                break
            heap.pop()
            client = job.reserver
            if client is not None:
                client.reserved.pop(job.id, None)
            self.reserved_ct -= 1
            t = job.tube
            t.reserved -= 1
            job.timeouts += 1
            self.timeouts += 1
            self._make_ready(job)
            self._kick_waiters(t)

    def next_ttr(self) -> float:
        heap = self.ttr
        return heap.peek().runnable_at if len(heap) else INF

    # --- binlog replay, and a standby following a leader's journal -------------

    def forget(self, jid: int) -> None:
        """Drop a job deleted (or about to be restored anew) by the journal being
        followed: not a delete of this server's, so nothing is counted or journaled."""
        job = self.jobs.get(jid)
        if job is None:
            return
        if job.state == RESERVED:
            client = job.reserver
            if client is not None:
                client.reserved.pop(jid, None)
            self._unreserve(job)
        else:
            self._unwait(job)
        self.jobs.remove(job)
        self.body_bytes -= len(job.body)  # restore() counted it
        t = job.tube
        if not (t.using or t.watching):
            self._maybe_drop(t)

    def make_room(self, n: int) -> None:
        """n jobs are about to be restored: grow the id table once, now,
        rather than in steps that each hold the loop (see JobTable.reserve)."""
        self.jobs.reserve(len(self.jobs) + n)

    def restore(self, job: Job) -> None:
        """Take back a job recovered from the binlog (times in wall-clock seconds).

        The job arrives with tube = its tube's name; it is attached as ready,
        delayed (its remaining delay keeps counting across the downtime) or
        buried (in the order given), and is not journaled again.
        """
        name = job.tube
        t = self.tube(name if isinstance(name, bytes) else name.name)
        job.tube = t
        offset = self.clock() - time.time()
        job.created_at = job.created_at + offset
        if job.id in self.jobs:
            raise ValueError(f"job {job.id} restored twice")
        self.jobs.add(job)
        self.body_bytes += len(job.body)
        if job.id >= self.next_id:
            self.next_id = job.id + 1
        if job.state == BURIED:
            # _make_buried counts a bury; replay is not one (and the count
            # may be at either end of its range in the log).
            buries = job.buries
            job.buries = 0
            self._make_buried(job)
            job.buries = buries
        elif job.state == DELAYED and job.runnable_at is not None:
            now = self.clock()
            when = job.runnable_at + offset
            self._make_delayed(job, max(0.0, when - now), now)
        else:
            self._make_ready(job)
