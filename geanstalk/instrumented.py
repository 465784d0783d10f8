"""The command path with measurements, used only while the HTTP endpoint is on.

protocol.Connection stays as it is: a server without ``--http`` runs the
exact code it always ran. With the endpoint on, the connection factory is a
subclass made for that server (``connection_class``) whose dispatch tables
hold timed handlers: each command is timed with two perf_counter_ns reads
into its histogram. The tables are chosen once, when the class is made.

protocol.py keeps its tables (``_HANDLERS``, ``_SPACED``, ``_BARE``) as
module globals that ``data_received`` and ``_by_prefix`` read directly
(a global lookup per command, no attribute). The subclass therefore runs
those two functions' own code objects with a globals dict in which the
tables are the timed ones: the same bytecode, other tables, and nothing
added to the plain class. tests/http/test_instrumented.py checks that both
classes answer every command stream byte for byte alike.

The storage's one reservation step is wrapped the same way, per server, to
measure how long a job waited to be reserved.
"""

from __future__ import annotations

import time
import types
from bisect import bisect_left
from typing import TYPE_CHECKING, Any

from geanstalk import protocol
from geanstalk.protocol import _ARG_AT, _WORDS, S_DATA, Connection
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

# The Connection functions that read the dispatch tables as globals.
_TABLE_READERS = ("data_received", "_by_prefix")


def _timed(handler: Any, hist: Histogram) -> Any:
    """handler, timed into hist (Histogram.observe written inline: this runs
    once per command)."""
    counts, bounds = hist.counts, hist.bounds

    def timed(conn: Any, line: bytes, at: int) -> Any:
        started = _now()
        try:
            return handler(conn, line, at)
        finally:
            took = _now() - started
            counts[bisect_left(bounds, took)] += 1
            hist.sum += took

    return timed


def _timed_put(handler: Any, hist: Histogram) -> tuple[Any, Any]:
    """A put is timed from its line to the store of its body (one read for
    all but bodies split across reads): the line handler notes the start,
    the store observes; a put refused at its line (BAD_FORMAT, JOB_TOO_BIG)
    is observed there. A body refused (EXPECTED_CRLF, DRAINING) stores
    nothing and is not observed."""
    counts, bounds = hist.counts, hist.bounds

    def put_line(conn: Any, line: bytes, at: int) -> Any:
        started = _now()
        reply = handler(conn, line, at)
        if reply is None and conn._state == S_DATA:
            conn._put_started = started
        else:
            took = _now() - started
            counts[bisect_left(bounds, took)] += 1
            hist.sum += took
        return reply

    def store(conn: Any, job: Job) -> None:
        try:
            conn.server.store_job(job)
        finally:
            took = _now() - conn._put_started
            counts[bisect_left(bounds, took)] += 1
            hist.sum += took

    return put_line, store


def connection_class(ins: Instruments, listener: str = "beanstalk") -> type[Connection]:
    """A Connection subclass whose commands feed ins' histograms."""
    hists = ins.commands
    plain = protocol._HANDLERS
    handlers = {op: _timed(h, hists[op]) if op in hists else h for op, h in plain.items()}
    handlers[OP_PUT], store = _timed_put(plain[OP_PUT], hists[OP_PUT])
    spaced = {word: (handlers[op], _ARG_AT[op]) for word, (op, _) in _WORDS.items()}
    bare = {
        word: (handlers[op], _ARG_AT[op])
        for word, (op, needs_space) in _WORDS.items()
        if not needs_space
    }
    scope = dict(vars(protocol))
    scope.update(_HANDLERS=handlers, _SPACED=spaced, _BARE=bare)

    def rebound(name: str) -> Any:
        fn = getattr(Connection, name)
        assert not fn.__code__.co_freevars, f"Connection.{name} needs its closure"
        new = types.FunctionType(fn.__code__, scope, fn.__name__, fn.__defaults__)
        new.__qualname__ = f"InstrumentedConnection.{name}"
        new.__doc__ = fn.__doc__
        return new

    def __init__(self: Any, server: Server) -> None:
        Connection.__init__(self, server)
        self._put_started = 0
        self._put_job = types.MethodType(store, self)

    namespace: dict[str, Any] = {
        "__slots__": ("_put_started",),
        "__init__": __init__,
        "__doc__": "A Connection whose commands are timed (see geanstalk.instrumented).",
        "__module__": __name__,
        "listener": listener,
    }
    for name in _TABLE_READERS:
        namespace[name] = rebound(name)
    return type("InstrumentedConnection", (Connection,), namespace)


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
    by_tube = ins.job_wait

    def measured(client: Client, job: Job, now: float) -> None:
        if not job.reserves and not job.kicks:
            name = job.tube.name
            h = by_tube.get(name) or wait_histogram(name)
            if h is not None:
                waited = now - job.created_at - job.delay
                if waited < 0.0:
                    waited = 0.0
                h.counts[bisect_left(h.bounds, waited)] += 1
                h.sum += waited
        reserve(client, job, now)

    storage._reserve = measured  # type: ignore[method-assign]
