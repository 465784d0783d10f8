"""The Server facade: wires the services, owns drain mode and the connections.

protocol.py calls only this class; storage, waiting, timers and statistics
stay behind it. The facade knows nothing of sockets or of the wire format:
it is handed the factory of its connections (protocol.Connection, or a
subclass a listener needs), and runner.py puts it on the network.
Layers, each only calling down: Server -> LockService -> StorageService.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sized
from itertools import islice
from typing import TYPE_CHECKING, Any, Protocol

from geanstalk.config import DEFAULT_MAX_JOB_SIZE, DEFAULT_OUTPUT_CAP
from geanstalk.errors import DeadlineSoon, Draining, NoJobReady, NotFound, OutOfMemory
from geanstalk.journal import Journal, NullJournal
from geanstalk.limits import BoundCounters, RateLimitedLog
from geanstalk.stats import StatisticsService
from geanstalk.storage import Client, StorageService, WakeFn
from geanstalk.timers import TimerService
from geanstalk.waiters import LockService

if TYPE_CHECKING:
    from geanstalk.core import Job

log = logging.getLogger("geanstalk")

# Jobs restored per step of Server.restoring(): about half a millisecond.
RESTORE_BATCH = 1000

__all__ = ["DEFAULT_MAX_JOB_SIZE", "DEFAULT_OUTPUT_CAP", "Peer", "Server"]


class Peer(Protocol):
    """What the facade needs of a connection (protocol.Connection is one)."""

    client: Client
    peer: str

    def stop_reading(self) -> None: ...

    def loaded(self) -> None: ...


class Server:
    """Everything a connection may ask of the server."""

    def __init__(
        self,
        loop: Any,
        journal: Journal | None = None,
        max_job_size: int = DEFAULT_MAX_JOB_SIZE,
        output_cap: int = DEFAULT_OUTPUT_CAP,
        clock: Callable[[], float] = time.monotonic,
        connection_factory: Callable[[Server], Any] | None = None,
    ) -> None:
        self.loop = loop
        # Makes the asyncio protocol object of a new connection: listeners
        # call server.connection_factory(server).
        self.connection_factory = connection_factory
        self.journal: Journal = journal if journal is not None else NullJournal()
        # Without a log every change is "durable" at once: no reply gate.
        self.gated = not isinstance(self.journal, NullJournal)
        # With -b, the store that keeps bodies in memory or reads them back
        # (geanstalk.bodystore.BodyStore); None when bodies are simply in memory.
        self.bodies: Any = getattr(self.journal, "bodies", None)
        self.max_job_size = max_job_size
        self.output_cap = output_cap
        self.clock = clock
        self.storage = StorageService(self.journal, clock)
        self.lock = LockService(self.storage, clock)
        self.timers = TimerService(loop, self.storage, self.lock, clock)
        self.stats = StatisticsService(self.storage, self.lock, self.journal, max_job_size, clock)
        self.storage.schedule = self.timers.schedule
        self.lock.schedule = self.timers.schedule
        self.connections: set[Peer] = set()
        # True while the journal loads at start-up (runner.py): connections
        # made meanwhile get `stats` answered and hold their other commands
        # until loaded().
        self.loading = False
        # How often each resource bound was hit (read by the metrics endpoint).
        self.bounds = BoundCounters()
        self._memory_log = RateLimitedLog()
        # --max-connections as configured (0: none); the listeners enforce it.
        self.max_connections = 0
        # The metrics registry (geanstalk.metrics.Registry) while the HTTP
        # endpoint is on; None otherwise (then nothing measures anything).
        self.metrics: Any = None
        # The storage's transitions that need no translation are the facade's
        # methods as they are (one call less on the hot path).
        s = self.storage
        self.delete = s.delete
        self.release = s.release
        self.bury = s.bury
        self.touch = s.touch
        self.kick_job = s.kick_job
        self.peek = s.peek
        # new_job(priority, delay, ttr, tube) for a put whose line parsed, and
        # store_job(job) once its body came; the caller checks drain mode.
        self.new_job = s.new_job
        self.store_job = s.put
        # reserve_next(client): the job a reserve gets at once, reserved, or
        # None; reserve() does the rest (first-reserve bookkeeping, waiting).
        self.reserve_next = s.reserve_next

    # --- drain mode --------------------------------------------------------

    @property
    def draining(self) -> bool:
        return self.stats.draining

    def drain(self) -> None:
        """SIGUSR1: refuse new jobs from now on."""
        if not self.stats.draining:
            log.info("entering drain mode")
        self.stats.draining = True

    # --- memory bound (--max-memory) ------------------------------------------

    def limit_memory(self, max_bytes: int) -> None:
        """Refuse puts that would take the job memory past max_bytes.

        Call before the first connection (connections keep the put path's
        callables). With no limit the put and delete paths count nothing: the
        counting variants are swapped in here only.
        """
        s = self.storage
        s.max_memory = max_bytes
        self.new_job = self._new_job_within_memory
        self.store_job = s.put_counted
        self.delete = s.delete_counted
        if self.bodies is not None:
            # With -b only the bodies in memory count: the store reports the
            # ones it drops from memory or reads back in.
            self.bodies.on_resize = s.adjust_body_bytes

    def _new_job_within_memory(
        self, priority: int, delay: int, ttr: int, tube: Any, size: int = 0
    ) -> Job:
        s = self.storage
        if not s.memory_allows(size):
            self.bounds.puts_out_of_memory += 1
            self._memory_log.warning(
                "put of %d bytes refused: job memory %d of --max-memory %d; %d puts refused so far",
                size,
                s.job_memory(),
                s.max_memory,
                self.bounds.puts_out_of_memory,
            )
            raise OutOfMemory(size)
        return s.new_job(priority, delay, ttr, tube)

    # --- connections ---------------------------------------------------------

    def new_client(self, wake: WakeFn) -> Client:
        client = Client(wake)
        self.storage.attach(client)
        return client

    def connected(self, conn: Peer) -> None:
        self.connections.add(conn)
        self.stats.connected()
        if log.isEnabledFor(logging.INFO):  # formatting the peer costs; only at -V
            log.info("accept %s", conn.peer)

    def disconnected(self, conn: Peer) -> None:
        if conn not in self.connections:
            return
        self.connections.discard(conn)
        client = conn.client
        self.lock.stop_waiting(client)
        self.storage.detach(client)
        self.stats.disconnected(client.producer, client.worker)
        if log.isEnabledFor(logging.INFO):
            log.info("close %s", conn.peer)

    # --- jobs -------------------------------------------------------------------

    def put(self, job: Job) -> None:
        if self.stats.draining:
            raise Draining()
        self.storage.put(job)

    def reserve(self, client: Client, timeout: int | None) -> Job | None:
        """A job at once, or None when client now waits (the lock service will
        wake it). Raises DeadlineSoon, or NoJobReady for TIMED_OUT."""
        if not client.worker:
            client.worker = True
            self.stats.workers += 1
        job = self.storage.reserve_next(client)
        if job is not None:
            return job
        if client.reserved and self.lock.deadline_soon(client, self.clock()):
            raise DeadlineSoon()
        if timeout == 0 or client.halfclosed:
            raise NoJobReady()
        self.lock.wait(client, timeout)
        if client.waiting:
            return None
        # wait() found a job after all and woke the client itself.
        return None

    def reserve_job(self, client: Client, jid: int) -> Job:
        job = self.storage.reserve_job(client, jid)
        # 1.12 counts the worker once the job is found (NOT_FOUND leaves it be).
        if not client.worker:
            client.worker = True
            self.stats.workers += 1
        return job

    def kick(self, client: Client, bound: int) -> int:
        return self.storage.kick(client.use, bound)  # type: ignore[arg-type]

    def peek_in_use(self, client: Client, which: str) -> Job | None:
        t = client.use
        assert t is not None
        if which == "ready":
            return t.ready.peek() if len(t.ready) else None
        if which == "delayed":
            return t.delay.peek() if len(t.delay) else None
        return next(iter(t.buried.values()), None)

    # --- tubes --------------------------------------------------------------

    def use(self, client: Client, name: bytes) -> None:
        self.storage.use(client, name)

    def watch(self, client: Client, name: bytes) -> int:
        return self.storage.watch(client, name)

    def ignore(self, client: Client, name: bytes) -> int:
        return self.storage.ignore(client, name)

    def pause_tube(self, name: bytes, seconds: int) -> None:
        self.storage.pause_tube(name, seconds)

    # --- stats --------------------------------------------------------------

    def stats_doc(self) -> bytes:
        return self.stats.stats()

    def body_cache_stats(self) -> dict[str, int]:
        """The -b body cache's figures (hits, misses, bytes, reads...) for metrics;
        empty without -b. Not in `stats`: the reference has no such keys."""
        return self.bodies.stats() if self.bodies is not None else {}

    def stats_job(self, jid: int) -> bytes:
        return self.stats.stats_job(self.storage.peek(jid))

    def stats_tube(self, name: bytes) -> bytes:
        t = self.storage.tubes.get(name)
        if t is None:
            raise NotFound(name)
        return self.stats.stats_tube(t)

    def list_tubes(self) -> bytes:
        return self.stats.list_tubes(self.storage.tube_list)

    def list_tubes_watched(self, client: Client) -> bytes:
        return self.stats.list_tubes(client.watch)

    # --- figures for the HTTP endpoint (read-only) ----------------------------

    def stats_values(self) -> dict[str, Any]:
        return self.stats.server_values()

    def tube_values(self, limit: int | None = None) -> list[dict[str, Any]]:
        """stats-tube of the first limit tubes, in list-tubes order."""
        tubes = self.storage.tube_list
        if limit is not None:
            tubes = tubes[:limit]
        return [self.stats.tube_values(t) for t in tubes]

    def tube_count(self) -> int:
        return len(self.storage.tube_list)

    def connection_listeners(self) -> list[str]:
        """The listener each open connection came through: "tls" for one
        with a TLS transport, else its class's listener ("beanstalk")."""
        names = []
        for c in self.connections:
            t = getattr(c, "transport", None)
            if t is not None and t.get_extra_info("ssl_object") is not None:
                names.append("tls")
            else:
                names.append(getattr(c, "listener", "beanstalk"))
        return names

    def bound_figures(self) -> dict[str, int]:
        """The resource bounds as configured (0: off), the job memory counted
        against --max-memory (0 without it: nothing is counted then), and how
        often each bound was hit."""
        s = self.storage
        return {
            "max-connections": self.max_connections,
            "max-memory": s.max_memory,
            "job-memory": s.job_memory() if s.max_memory else 0,
            **self.bounds.as_dict(),
        }

    def journal_figures(self) -> dict[str, int]:
        figures = getattr(self.journal, "figures", None)
        return figures() if figures is not None else {}

    # --- the clock ----------------------------------------------------------------

    def next_timer(self) -> float:
        """When the clock next has something to do: a delay, TTR, pause or
        reserve timeout ending (inf: nothing)."""
        return self.timers.next_wake()

    def clock_moved(self) -> None:
        """The injected clock jumped forward (geanstalk.testing's advance()):
        do now what became due, exactly as the timer would have."""
        self.timers.catch_up()

    # --- recovery -------------------------------------------------------------

    def forget(self, jid: int) -> None:
        """A standby: the leader's journal deleted (or rewrote) job jid."""
        self.storage.forget(jid)

    def restore(self, jobs: Iterable[Job], next_id: int) -> None:
        """Take back the jobs a binlog recovered, then continue its ids."""
        for _ in self.restoring(jobs, next_id):
            pass

    def restoring(
        self, jobs: Iterable[Job], next_id: int, batch: int = RESTORE_BATCH
    ) -> Iterator[int]:
        """restore(), a batch of jobs per step: yields how many are back so
        far, so that the caller can let the event loop answer in between
        (ten million jobs take seconds). The ids continue once it is done."""
        if isinstance(jobs, Sized):
            self.storage.make_room(len(jobs))
        restore = self.storage.restore
        pending = iter(jobs)
        done = 0
        while True:
            before = done
            for job in islice(pending, batch):
                restore(job)
                done += 1
            if done == before:
                break
            yield done
        self.storage.next_id = max(self.storage.next_id, next_id, 1)
        self.timers.rearm()

    def loaded(self) -> None:
        """The journal is loaded: the commands held meanwhile go on, in order."""
        self.loading = False
        for conn in list(self.connections):
            conn.loaded()
