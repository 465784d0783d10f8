"""The command path with measurements, used only while the HTTP endpoint is on.

protocol.Connection stays as it is: a server without ``--http`` runs the
exact code it always ran. With the endpoint on, the connection factory
builds InstrumentedConnection instead, whose handler tables (chosen once,
when the connection is made) time each command with perf_counter_ns and
put the time in that command's histogram. The storage's one reservation
step is wrapped the same way, once per server, to measure how long a job
waited.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from typing import TYPE_CHECKING, Any

from geanstalk.protocol import _ARG_AT, _WORDS, Connection
from geanstalk.stats import _CMD_KEYS, OP_KICKJOB, OP_PUT, OP_QUIT, OP_RESERVE_JOB

if TYPE_CHECKING:
    from geanstalk.core import Job
    from geanstalk.metrics import Histogram, Instruments
    from geanstalk.server import Server
    from geanstalk.storage import Client

# op -> the command's name, as the cmd label shows it.
OP_NAMES: dict[int, str] = {op: key[4:] for key, op in _CMD_KEYS}
OP_NAMES.update({OP_KICKJOB: "kick-job", OP_RESERVE_JOB: "reserve-job", OP_QUIT: "quit"})

_now = time.perf_counter_ns


def _timed(handler: Any, hist: Histogram) -> Any:
    """handler, timed into hist (Histogram.observe written inline: this runs
    once per command)."""
    counts, bounds = hist.counts, hist.bounds

    def timed(line: bytes, at: int) -> Any:
        started = _now()
        try:
            return handler(line, at)
        finally:
            took = _now() - started
            counts[bisect_left(bounds, took)] += 1
            hist.sum += took

    return timed


class InstrumentedConnection(Connection):
    """A Connection whose commands are timed; everything else is inherited.

    A put is timed from its line to the store of its body (the two happen in
    one read for all but bodies split across reads): one observation, with
    two clock reads, as for every other command.
    """

    def __init__(self, server: Server, listener: str = "beanstalk") -> None:
        super().__init__(server)
        self.listener = listener
        ins: Instruments = server.metrics.instruments
        hists = ins.commands
        handlers = {
            op: _timed(h, hists[op]) if op in hists and op != OP_PUT else h
            for op, h in self._handlers.items()
        }
        handlers[OP_PUT] = self._timed_put_line
        self._handlers = handlers
        self._spaced = {word: (handlers[op], _ARG_AT[op]) for word, (op, _) in _WORDS.items()}
        self._bare = {
            word: (handlers[op], _ARG_AT[op])
            for word, (op, needs_space) in _WORDS.items()
            if not needs_space
        }
        put = hists[OP_PUT]
        self._put_counts, self._put_bounds = put.counts, put.bounds
        self._put_hist = put
        self._put_started = 0
        self._untimed_put_line = super()._put
        self._untimed_store = self._put_job
        self._put_job = self._timed_store

    def _timed_put_line(self, line: bytes, at: int) -> bytes | None:
        started = _now()
        reply = self._untimed_put_line(line, at)
        if reply is None:
            self._put_started = started  # finished by _timed_store
        else:
            took = _now() - started  # refused at the line
            self._put_counts[bisect_left(self._put_bounds, took)] += 1
            self._put_hist.sum += took
        return reply

    def _timed_store(self, job: Job) -> None:
        try:
            self._untimed_store(job)
        finally:
            took = _now() - self._put_started
            self._put_counts[bisect_left(self._put_bounds, took)] += 1
            self._put_hist.sum += took


def instrument_storage(server: Server, ins: Instruments) -> None:
    """Measure each job's wait from ready to its first reservation.

    Every reservation (reserve, a blocked reserve woken, reserve-job) goes
    through the storage's _reserve(); the wrapper is set on the instance,
    so the class's code, and every server without the endpoint, is untouched.
    A job reserved before, or kicked, has no record of when it last became
    ready, and is not measured.
    """
    storage = server.storage
    reserve = storage._reserve
    wait_histogram = ins.wait_histogram

    def measured(client: Client, job: Job, now: float) -> None:
        if not job.reserves and not job.kicks:
            h = wait_histogram(job.tube.name)
            if h is not None:
                h.observe(max(now - job.created_at - job.delay, 0.0))
        reserve(client, job, now)

    storage._reserve = measured  # type: ignore[method-assign]
