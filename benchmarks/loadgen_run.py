"""Run one load against one running server from several client processes.

The coordinator starts the worker processes, waits until every connection is
open, reads the server's CPU time, releases all workers at once and reads the
CPU time again when the last one reports. Connection setup and process start
therefore stay out of both the rate and the CPU-per-operation figures.
"""

from __future__ import annotations

import multiprocessing as mp
import time
import traceback
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

# benchmarks/ is on sys.path: loadgen.py puts it there, and so does pytest's rootdir insertion.
import loadgen_clients as clients
import loadgen_procfs as procfs

# fork: the workers need nothing re-imported, and start in milliseconds.
_MP = mp.get_context("fork")


@dataclass(frozen=True)
class Load:
    """What the clients do. kind: put | reserve | prodcons."""

    kind: str
    conns: int
    body: int = 100
    batch: int = 1  # puts per write (put)
    rate: float = 0.0  # jobs/s over all producers (prodcons)
    max_ops: int = 1_000_000  # count bound over all connections


@dataclass
class RunResult:
    ops: int
    seconds: float
    server_cpu: float  # seconds of server CPU during the run
    exhausted: int = 0  # reserve connections that found the queue empty
    latencies_ns: list[int] = field(default_factory=list)

    @property
    def ops_per_s(self) -> float:
        return self.ops / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_us_per_op(self) -> float:
        return self.server_cpu / self.ops * 1e6 if self.ops else float("nan")


def _build(
    load: Load, socks: list, deadline: float, roles: list[str], share: int, phases: list[float]
) -> list:
    conns: list[clients.Conn] = []
    producers = max(1, load.conns)
    phase_of = iter(phases)
    for sock, role in zip(socks, roles, strict=True):
        if role == "put":
            conns.append(
                clients.PutConn(sock, deadline, share, body_size=load.body, batch=load.batch)
            )
        elif role == "reserve":
            conns.append(clients.ReserveDeleteConn(sock, deadline, share))
        elif role == "consumer":
            conns.append(
                clients.ReserveDeleteConn(sock, deadline, 1 << 62, timeout=1, latencies=[])
            )
        elif role == "producer":
            interval = producers / load.rate
            conns.append(
                clients.ProducerConn(
                    sock,
                    deadline,
                    share,
                    body_size=load.body,
                    interval=interval,
                    phase=next(phase_of),
                )
            )
    # consumers first, so they are waiting before the first put goes out
    conns.sort(key=lambda c: not isinstance(c, clients.ReserveDeleteConn))
    return conns


def _worker(
    address: tuple[str, int],
    load: Load,
    roles: list[str],
    phases: list[float],
    share: int,
    go: object,
    deadline_cell: object,
    ready: object,
    out: Connection,
) -> None:
    report = clients.WorkerReport()
    try:
        socks = [clients.connect(address) for _ in roles]
        ready.put(len(socks))  # type: ignore[attr-defined]
        if not go.wait(60):  # type: ignore[attr-defined]
            raise TimeoutError("coordinator never said go")
        deadline = deadline_cell.value  # type: ignore[attr-defined]
        conns = _build(load, socks, deadline, roles, share, phases)
        report.started = time.monotonic()
        clients.drive(conns, hard_stop=deadline + 30)
        report.finished = time.monotonic()
        # prodcons counts jobs that made the whole trip, the others every reply
        counted = [c for c in conns if _is_consumer(c)] if load.kind == "prodcons" else conns
        report.ops = sum(c.ops for c in counted)
        report.exhausted = sum(
            1 for c in conns if isinstance(c, clients.ReserveDeleteConn) and c.exhausted
        )
        for c in conns:
            if _is_consumer(c):
                report.latencies_ns.extend(c.latencies)  # type: ignore[attr-defined]
        for s in socks:
            s.close()
    except BaseException:
        report.error = traceback.format_exc()
        ready.put(0)  # type: ignore[attr-defined]
    out.send(report)
    out.close()


def _is_consumer(c: object) -> bool:
    return isinstance(c, clients.ReserveDeleteConn) and c.latencies is not None


def _roles(load: Load) -> list[str]:
    if load.kind == "put":
        return ["put"] * load.conns
    if load.kind == "reserve":
        return ["reserve"] * load.conns
    if load.kind == "prodcons":
        return ["consumer", "producer"] * load.conns
    raise ValueError(f"unknown load kind {load.kind!r}")


def producer_phase(index: int, rate: float) -> float:
    """When producer number index sends its first put, after the start.

    Every producer puts once per interval (producers / rate); starting them
    1 / rate apart spreads the offered rate evenly over time, so the latency
    measured is that of jobs arriving at that rate and not of all producers
    firing in the same instant (a burst of N puts every interval).
    """
    return index / rate if rate > 0 else 0.0


def run_load(
    address: tuple[str, int], pid: int | None, load: Load, seconds: float, procs: int = 2
) -> RunResult:
    """Apply load for `seconds` (or until max_ops) and measure it; pid is the server's, for CPU."""
    roles = _roles(load)
    nprocs = max(1, min(procs, len(roles)))
    # pairs stay together in prodcons, so every process produces and consumes
    per_proc: list[list[str]] = [[] for _ in range(nprocs)]
    phases: list[list[float]] = [[] for _ in range(nprocs)]
    step = 2 if load.kind == "prodcons" else 1
    for i in range(0, len(roles), step):
        per_proc[(i // step) % nprocs].extend(roles[i : i + step])
        if load.kind == "prodcons":
            phases[(i // step) % nprocs].append(producer_phase(i // step, load.rate))
    per_conn_cap = max(1, load.max_ops // max(1, load.conns))
    go = _MP.Event()
    ready = _MP.Queue()
    deadline_cell = _MP.Value("d", 0.0)
    workers = []
    pipes = []
    for part, part_phases in zip(per_proc, phases, strict=True):
        if not part:
            continue
        rx, tx = _MP.Pipe(duplex=False)
        p = _MP.Process(
            target=_worker,
            args=(address, load, part, part_phases, per_conn_cap, go, deadline_cell, ready, tx),
            daemon=True,
        )
        p.start()
        tx.close()
        workers.append(p)
        pipes.append(rx)
    try:
        opened = sum(ready.get(timeout=60) for _ in workers)
        if opened != len(roles):
            raise RuntimeError(f"only {opened} of {len(roles)} connections opened")
        cpu0 = procfs.cpu_seconds(pid) if pid else 0.0
        start = time.monotonic()
        deadline_cell.value = start + seconds
        go.set()
        reports: list[clients.WorkerReport] = [rx.recv() for rx in pipes]
        cpu1 = procfs.cpu_seconds(pid) if pid else 0.0
    finally:
        for p in workers:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join()
    errors = [r.error for r in reports if r.error]
    if errors:
        raise RuntimeError("load worker failed:\n" + errors[0])
    latencies: list[int] = []
    for r in reports:
        latencies.extend(r.latencies_ns)
    return RunResult(
        ops=sum(r.ops for r in reports),
        seconds=max(r.finished for r in reports) - start,
        server_cpu=cpu1 - cpu0,
        exhausted=sum(r.exhausted for r in reports),
        latencies_ns=latencies,
    )


def fill(address: tuple[str, int], jobs: int, body: int, conns: int = 4, procs: int = 2) -> int:
    """Put exactly `jobs` ready jobs, 100 per write, as fast as the server takes them.

    Whole batches go out over `conns` connections; the remainder that does
    not divide evenly follows as one last write on one connection.
    """
    conns = max(1, min(conns, jobs // 100))
    bulk = jobs // (100 * conns) * 100 * conns
    done = 0
    if bulk:
        load = Load("put", conns, body=body, batch=100, max_ops=bulk)
        done += run_load(address, None, load, seconds=600.0, procs=procs).ops
    rest = jobs - bulk
    if rest:
        load = Load("put", 1, body=body, batch=rest, max_ops=rest)
        done += run_load(address, None, load, seconds=600.0, procs=1).ops
    return done
