"""The Server facade: wires the services, owns drain mode, ids and signals.

protocol.py calls only this class; storage, waiting, timers and statistics
stay behind it. ``serve()`` runs a server on a socket that cli.py has
already bound and put into listening state (so a client can connect before
this module is even imported).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from geanstalk.errors import DeadlineSoon, Draining, NoJobReady, NotFound
from geanstalk.journal import Journal, NullJournal
from geanstalk.stats import StatisticsService
from geanstalk.storage import Client, StorageService, WakeFn
from geanstalk.timers import TimerService
from geanstalk.waiters import LockService

if TYPE_CHECKING:
    from geanstalk.core import Job
    from geanstalk.protocol import Connection

log = logging.getLogger("geanstalk")

DEFAULT_MAX_JOB_SIZE = 65535
# Replies a client has not read yet, beyond the transport's high-water mark,
# after which it is disconnected.
DEFAULT_OUTPUT_CAP = 4 * 1024 * 1024


class Server:
    """Everything a connection may ask of the server."""

    def __init__(
        self,
        loop: Any,
        journal: Journal | None = None,
        max_job_size: int = DEFAULT_MAX_JOB_SIZE,
        output_cap: int = DEFAULT_OUTPUT_CAP,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.loop = loop
        self.journal: Journal = journal if journal is not None else NullJournal()
        # Without a log every change is "durable" at once: no reply gate.
        self.gated = not isinstance(self.journal, NullJournal)
        self.max_job_size = max_job_size
        self.output_cap = output_cap
        self.clock = clock
        self.storage = StorageService(self.journal, clock)
        self.lock = LockService(self.storage, clock)
        self.timers = TimerService(loop, self.storage, self.lock, clock)
        self.stats = StatisticsService(self.storage, self.lock, self.journal, max_job_size, clock)
        self.storage.lock = self.lock
        self.storage.schedule = self.timers.schedule
        self.lock.schedule = self.timers.schedule
        self.connections: set[Connection] = set()
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

    # --- connections ---------------------------------------------------------

    def new_client(self, wake: WakeFn) -> Client:
        client = Client(wake)
        self.storage.attach(client)
        return client

    def connected(self, conn: Connection) -> None:
        self.connections.add(conn)
        self.stats.connected()
        log.info("accept %s", conn.peer)

    def disconnected(self, conn: Connection) -> None:
        if conn not in self.connections:
            return
        self.connections.discard(conn)
        client = conn.client
        self.lock.stop_waiting(client)
        self.storage.detach(client)
        self.stats.disconnected(client.producer, client.worker)
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

    # --- recovery -------------------------------------------------------------

    def restore(self, jobs: list[Job], next_id: int) -> None:
        """Take back the jobs a binlog recovered, then continue its ids."""
        for job in jobs:
            self.storage.restore(job)
        self.storage.next_id = max(self.storage.next_id, next_id, 1)
        self.timers.rearm()


async def _serve(
    sock: socket.socket,
    journal_factory: Callable[[Any], Journal] | None,
    max_job_size: int,
    output_cap: int,
    early_signals: list[int],
) -> int:
    from geanstalk.protocol import Connection

    loop = asyncio.get_running_loop()
    # Every job is a GC-tracked object that lives long: collect the young
    # generation less often and leave the start-up objects out of full passes.
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    journal: Journal | None = None
    if journal_factory is not None:
        journal = journal_factory(loop)
    server = Server(loop, journal, max_job_size, output_cap)
    if journal is not None and hasattr(journal, "recover"):
        jobs, next_id = journal.recover()  # type: ignore[attr-defined]
        server.restore(jobs, next_id)
        log.info("recovered %d jobs from the binlog", len(jobs))

    stop = loop.create_future()

    def on_stop(signame: str) -> None:
        log.info("%s: stopping", signame)
        if not stop.done():
            stop.set_result(signame)

    loop.add_signal_handler(signal.SIGUSR1, server.drain)
    loop.add_signal_handler(signal.SIGTERM, on_stop, "SIGTERM")
    loop.add_signal_handler(signal.SIGINT, on_stop, "SIGINT")
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    # Signals that came before the loop was running (see cli.py).
    for signum in early_signals:
        if signum == signal.SIGUSR1:
            server.drain()
        else:
            on_stop(signal.Signals(signum).name)

    listener = await loop.create_server(lambda: Connection(server), sock=sock, backlog=1024)
    try:
        await stop
    finally:
        await _shutdown(server, listener)
    return 0


async def _shutdown(server: Server, listener: Any) -> None:
    """Graceful stop: no new connections or commands, every reply already
    earned goes out (after the log is synced), then the connections close."""
    listener.close()
    for conn in list(server.connections):
        conn.stop_reading()
    server.timers.close()
    await server.journal.close()
    for conn in list(server.connections):
        t = conn.transport
        if t is not None and not t.is_closing():
            t.close()
    # Closing transports flush what they hold; give them a bounded moment.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 2.0
    while server.connections and loop.time() < deadline:
        await asyncio.sleep(0.01)


def serve(
    sock: socket.socket,
    journal_factory: Callable[[Any], Journal] | None = None,
    max_job_size: int = DEFAULT_MAX_JOB_SIZE,
    output_cap: int = DEFAULT_OUTPUT_CAP,
    use_uvloop: bool = True,
    early_signals: list[int] | None = None,
) -> int:
    """Run until SIGTERM/SIGINT; returns the exit status."""
    coro = _serve(sock, journal_factory, max_job_size, output_cap, early_signals or [])
    if use_uvloop:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.run(coro)
    return asyncio.run(coro)
