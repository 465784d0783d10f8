"""A geanstalk cluster on a 3-member etcd, beside single-node servers, in one run.

    python -m benchmarks.cluster_bench [--seconds 5] [--conns 50] [--batch 100] [--kills 10]
    python -m benchmarks.cluster_bench --markdown benchmarks/results/cluster.md

Everything runs on loopback on this machine: three etcd members (Debian's
etcd-server, ``--max-txn-ops 1024``), three ``geanstalk serve --etcd``
nodes, and the client processes, so the figures include all of them sharing
the cores. Measured, in this order:

- puts: acknowledged puts/s at ``--conns`` connections to the leader, one
  put in flight per connection (latency = put sent to INSERTED read), then
  ``--batch`` puts pipelined per write; the same loads against single-node
  ``geanstalk -b DIR -f 0`` and ``beanstalkd -b DIR -f 0`` started fresh.
- standby lag during the cluster's loads: ``geanstalk cluster status``'s
  reading (records and ms behind, per standby), sampled twice a second.
- failover: ``--kills`` times, kill -9 of the leader, then the time until a
  put is acknowledged by any surviving node (a standby relays to the new
  leader once it is known; the new leader answers directly); the killed
  node is restarted and has rejoined as a standby before the next kill.

Every reply is checked: a put counts only when it read ``INSERTED``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import platform
import selectors
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.cluster.cluster_nodes import Nodes, start_nodes
from tests.cluster.etcd_harness import ETCD, SKIP_NO_ETCD, EtcdCluster, start_cluster
from tests.servers import BEANSTALKD, ServerProcess, beanstalkd_server, geanstalk_server

_MP = mp.get_context("fork")
BODY = b"x" * 100
CLUSTER = "bench"


# --- the load -------------------------------------------------------------------------


@dataclass
class LoadResult:
    ops: int
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    dropped: int = 0  # connections the server closed during the run

    @property
    def rate(self) -> float:
        return self.ops / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        values = sorted(self.latencies_ms)
        return values[min(len(values) - 1, int(q * len(values)))]


def _worker(
    address: tuple[str, int],
    conns: int,
    batch: int,
    go: mp.synchronize.Event,
    start_at: mp.sharedctypes.Synchronized,  # type: ignore[name-defined]
    seconds: float,
    out: mp.queues.Queue,  # type: ignore[name-defined]
) -> None:
    """conns connections, each: batch puts in one write, wait for all INSERTED, again."""
    request = b"put 0 0 60 %d\r\n%s\r\n" % (len(BODY), BODY) * batch
    socks = []
    try:
        for _ in range(conns):
            s = socket.create_connection(address, timeout=10)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.setblocking(False)
            socks.append(s)
    except OSError as exc:
        out.put(("error", f"connect: {exc}"))
        return
    out.put(("ready", None))
    go.wait()
    deadline = start_at.value + seconds
    sel = selectors.DefaultSelector()
    pending: dict[socket.socket, tuple[float, bytes]] = {}
    ops = 0
    errors = 0
    dropped = 0
    lat: list[float] = []
    now = time.monotonic()
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
        s.sendall(request)
        pending[s] = (now, b"")
    try:
        while pending:
            for key, _ in sel.select(0.5):
                s = key.fileobj  # type: ignore[assignment]
                sent, buf = pending[s]
                data = s.recv(262144)
                if not data:
                    # The server dropped it (a leader stepping down does): what
                    # was not acknowledged is not counted, the rest goes on.
                    dropped += 1
                    sel.unregister(s)
                    del pending[s]
                    continue
                before = buf.count(b"\r\n")
                buf += data
                lines = buf.count(b"\r\n")
                now = time.monotonic()
                if now <= deadline:
                    # Each reply counts when it arrives, so a slow batch still counts
                    # the part of it answered within the run.
                    ops += lines - before
                if lines < batch:
                    pending[s] = (sent, buf)
                    continue
                good = buf.count(b"INSERTED ")
                if good != batch:
                    errors += batch - good
                    if now <= deadline:
                        ops -= batch - good
                if now <= deadline:
                    lat.append((now - sent) * 1000.0)
                if now < deadline:
                    s.sendall(request)
                    pending[s] = (now, b"")
                else:
                    sel.unregister(s)
                    del pending[s]
            if time.monotonic() > deadline + 30:
                raise TimeoutError("replies still missing 30 s after the end")
    except (OSError, ConnectionError, TimeoutError) as exc:
        out.put(("error", repr(exc)))
        return
    finally:
        for s in socks:
            s.close()
    out.put(("done", (ops, errors, dropped, lat)))


def run_puts(
    address: tuple[str, int], conns: int, batch: int, seconds: float, procs: int = 2
) -> LoadResult:
    """conns connections split over procs client processes, all released at once."""
    go = _MP.Event()
    start_at = _MP.Value("d", 0.0)
    out: mp.queues.Queue = _MP.Queue()  # type: ignore[name-defined]
    shares = [conns // procs + (1 if i < conns % procs else 0) for i in range(procs)]
    workers = [
        _MP.Process(target=_worker, args=(address, n, batch, go, start_at, seconds, out))
        for n in shares
        if n
    ]
    for w in workers:
        w.start()
    try:
        for _ in workers:
            kind, value = out.get(timeout=60)
            if kind == "error":
                raise RuntimeError(value)
        start_at.value = time.monotonic()
        go.set()
        result = LoadResult(0, seconds)
        for _ in workers:
            kind, value = out.get(timeout=seconds + 90)
            if kind == "error":
                raise RuntimeError(value)
            ops, errors, dropped, lat = value
            result.ops += ops
            result.errors += errors
            result.dropped += dropped
            result.latencies_ms.extend(lat)
        return result
    finally:
        for w in workers:
            w.join(10)
            if w.is_alive():
                w.kill()


# --- CPU per process ---------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


class CpuMeter:
    """CPU seconds each named process used between enter and exit."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.used: dict[str, float] = {}

    def __enter__(self) -> CpuMeter:
        self._start = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        return self

    def __exit__(self, *exc: object) -> None:
        self.used = {name: cpu_seconds(pid) - self._start[name] for name, pid in self.pids.items()}


def cluster_pids(etcd: EtcdCluster, nodes: Nodes) -> dict[str, int]:
    leader = nodes.wait_leader()
    pids = {}
    standby = 0
    for n in nodes.nodes:
        if n is leader:
            pids["leader node"] = n.proc.pid  # type: ignore[union-attr]
        else:
            standby += 1
            pids[f"standby node {standby}"] = n.proc.pid  # type: ignore[union-attr]
    # The nodes send every request to the first endpoint while it answers:
    # that member also runs the JSON gateway's work for them.
    etcd_leader = etcd.leader()
    for i, m in enumerate(etcd.members):
        role = "leader" if m is etcd_leader else "follower"
        pids[f"etcd {m.name} ({role}{', endpoint' if i == 0 else ''})"] = m.pid
    return pids


# --- standby lag ------------------------------------------------------------------------


class LagSampler:
    """Reads the cluster's status twice a second in a thread, keeping the standbys' lag."""

    def __init__(self, endpoints: str) -> None:
        self.endpoints = endpoints
        self.records: list[int] = []
        self.ms: list[float] = []
        self.unknown = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.run(self._sample())

    async def _sample(self) -> None:
        from geanstalk.cluster.etcd import EtcdClient, EtcdError
        from geanstalk.cluster.status import read_status

        async with EtcdClient(self.endpoints, timeout=5.0) as client:
            while not self._stop.is_set():
                try:
                    status = await read_status(client, CLUSTER)
                except EtcdError:
                    self.unknown += 1
                else:
                    for m in status.members:
                        if m.role == "leader":
                            continue
                        if m.lag_records is None:
                            self.unknown += 1
                            continue
                        self.records.append(m.lag_records)
                        if m.lag_ms is not None:
                            self.ms.append(m.lag_ms)
                await asyncio.sleep(0.5)

    def __enter__(self) -> LagSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


# --- the cluster ----------------------------------------------------------------------------


def put_once(address: tuple[str, int], timeout: float) -> bool:
    """One put on a fresh connection; True if it was acknowledged."""
    try:
        with socket.create_connection(address, timeout=timeout) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.sendall(b"put 0 0 60 4\r\nping\r\n")
            reply = b""
            while not reply.endswith(b"\r\n"):
                chunk = s.recv(256)
                if not chunk:
                    return False
                reply += chunk
    except OSError:
        return False
    return reply.startswith(b"INSERTED ")


def wait_standbys(nodes: Nodes, count: int, timeout: float = 60.0) -> None:
    """Until count nodes report themselves as standbys on the members keys."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        roles = []
        for n in nodes.nodes:
            with contextlib.suppress(RuntimeError, ValueError):
                info = nodes.member_info(n.name)
                if info is not None and n.running:
                    roles.append(info.get("role"))
        if roles.count("standby") >= count and roles.count("leader") == 1:
            return
        time.sleep(0.05)
    raise TimeoutError(f"{count} standbys did not report within {timeout}s:\n{nodes.logs()}")


def measure_failover(nodes: Nodes, kills: int) -> list[float]:
    """Seconds from kill -9 of the leader to the first acknowledged put after it."""
    times = []
    for _ in range(kills):
        wait_standbys(nodes, len(nodes.nodes) - 1)
        leader = nodes.wait_leader()
        survivors = [n for n in nodes.nodes if n is not leader]
        killed_at = time.monotonic()
        leader.kill()
        acked_at = None
        i = 0
        while acked_at is None:
            if time.monotonic() - killed_at > 60:
                raise TimeoutError("no put acknowledged 60 s after the kill:\n" + nodes.logs())
            node = survivors[i % len(survivors)]
            i += 1
            if put_once(node.address, timeout=5.0):
                acked_at = time.monotonic()
            else:
                time.sleep(0.01)
        times.append(acked_at - killed_at)
        leader.start()  # same port and name: it rejoins as a standby
    wait_standbys(nodes, len(nodes.nodes) - 1)
    return times


@contextlib.contextmanager
def cluster(tmp: Path) -> Iterator[tuple[EtcdCluster, Nodes]]:
    etcd = start_cluster(tmp / "etcd", size=3)
    nodes: Nodes | None = None
    try:
        nodes = start_nodes(etcd, CLUSTER, tmp)
        nodes.wait_leader(60)
        wait_standbys(nodes, 2)
        yield etcd, nodes
        if os.environ.get("CLUSTER_BENCH_LOGS"):
            print(nodes.logs(), file=sys.stderr)
    finally:
        if nodes is not None:
            nodes.stop()
        etcd.stop()


@contextlib.contextmanager
def single(kind: str, tmp: Path) -> Iterator[ServerProcess]:
    binlog = tmp / f"{kind}-binlog"
    binlog.mkdir()
    make = geanstalk_server if kind == "geanstalk" else beanstalkd_server
    server = make("-b", str(binlog), "-f", "0").start()
    try:
        yield server
    finally:
        server.stop()


# --- the report -------------------------------------------------------------------------------


@dataclass
class Report:
    rows: dict[str, dict[str, LoadResult]] = field(default_factory=dict)
    lag: dict[str, LagSampler] = field(default_factory=dict)
    cpu: dict[str, dict[str, float]] = field(default_factory=dict)
    failover: list[float] = field(default_factory=list)
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    settings: argparse.Namespace | None = None


def _f(x: float, digits: int = 0) -> str:
    return "-" if x != x else f"{x:,.{digits}f}"


def _med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def render(report: Report) -> str:
    s = report.settings
    assert s is not None
    out = []
    kinds = list(report.rows)
    out.append(f"Loads: {s.conns} connections, {s.seconds:g} s each, 100-byte bodies.")
    out.append("")
    out.append("| load | " + " | ".join(kinds) + " |")
    out.append("|---|" + "---:|" * len(kinds))
    for load, label in (("one", "one at a time"), ("pipelined", f"{s.batch} pipelined")):
        cells = [_f(report.rows[k][load].rate) for k in kinds]
        out.append(f"| puts/s, {label} | " + " | ".join(cells) + " |")
        for q in (0.5, 0.99):
            cells = [_f(report.rows[k][load].pct(q), 2) for k in kinds]
            out.append(f"| p{int(q * 100)} ms, {label} | " + " | ".join(cells) + " |")
    errors = {k: sum(r.errors for r in report.rows[k].values()) for k in kinds}
    if any(errors.values()):
        out.append("")
        out.append(f"Replies other than INSERTED: {errors}")
    dropped = {
        f"{k} {load}": r.dropped for k in kinds for load, r in report.rows[k].items() if r.dropped
    }
    if dropped:
        out.append("")
        out.append(f"Connections the server closed during the run: {dropped}")
    if "cluster" in report.rows:
        base = report.rows["cluster"]
        for other in kinds[1:]:
            ratios = ", ".join(
                f"{load} {base[load].rate / report.rows[other][load].rate:.2f}x"
                for load in ("one", "pipelined")
                if report.rows[other][load].rate
            )
            out.append("")
            out.append(f"Cluster puts/s over {other}: {ratios}.")
    out.append("")
    for load, sampler in report.lag.items():
        rec = sampler.records
        ms = sampler.ms
        out.append(
            f"Standby lag during the {load} load ({len(rec)} readings, {sampler.unknown} "
            f"unknown): records median {_f(_med(rec))}, max {_f(max(rec) if rec else float('nan'))}; "
            f"ms median {_f(_med(ms), 1)}, max {_f(max(ms) if ms else float('nan'), 1)}."
        )
    if report.cpu:
        out.append("")
        out.append(
            "CPU per 1,000 acknowledged puts in the cluster (ms; user + system, "
            "each process over its load's run):"
        )
        out.append("")
        names = list(next(iter(report.cpu.values())))
        out.append("| load | " + " | ".join(names) + " |")
        out.append("|---|" + "---:|" * len(names))
        for load, used in report.cpu.items():
            ops = report.rows["cluster"][load].ops or 1
            cells = [_f(used[n] / ops * 1e6, 1) for n in names]
            out.append(f"| {load} | " + " | ".join(cells) + " |")
    if report.failover:
        f = report.failover
        out.append("")
        out.append(
            f"Failover over {len(f)} kill -9 of the leader (kill to first acknowledged put): "
            f"median {_med(f):.2f} s, max {max(f):.2f} s "
            f"(all: {', '.join(f'{x:.2f}' for x in f)})."
        )
    out.append("")
    lb, la = report.load_before, report.load_after
    out.append(
        f"Load average before {lb[0]:.2f} {lb[1]:.2f} {lb[2]:.2f}, "
        f"after {la[0]:.2f} {la[1]:.2f} {la[2]:.2f}."
    )
    return "\n".join(out) + "\n"


def describe_machine() -> str:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    etcd_version = subprocess.run(
        [ETCD or "etcd", "--version"], capture_output=True, text=True, check=False
    ).stdout.splitlines()
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return (
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, geanstalk at commit "
        f"{commit or '?'}, {etcd_version[0] if etcd_version else 'etcd ?'}, "
        f"Python {platform.python_version()}, {os.cpu_count()} cores ({cpu or '?'})."
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.cluster_bench", description=__doc__)
    p.add_argument("--seconds", type=float, default=5.0, help="length of each load")
    p.add_argument("--conns", type=int, default=50)
    p.add_argument("--batch", type=int, default=100, help="puts per write, pipelined load")
    p.add_argument("--kills", type=int, default=10, help="leader kills for the failover time")
    p.add_argument("--procs", type=int, default=2, help="client processes")
    p.add_argument("--no-single", action="store_true", help="skip the single-node servers")
    p.add_argument("--markdown", metavar="FILE", help="also write the report there")
    s = p.parse_args(argv)
    if ETCD is None:
        print(SKIP_NO_ETCD, file=sys.stderr)
        return 2
    report = Report(settings=s, load_before=os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="geanstalk-cluster-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        with cluster(tmp) as (etcd, nodes):
            leader = nodes.wait_leader()
            rows: dict[str, LoadResult] = {}
            pids = cluster_pids(etcd, nodes)
            for load, batch in (("one", 1), ("pipelined", s.batch)):
                with LagSampler(etcd.endpoints) as sampler, CpuMeter(pids) as meter:
                    rows[load] = run_puts(leader.address, s.conns, batch, s.seconds, s.procs)
                report.lag[load] = sampler
                report.cpu[load] = meter.used
                print(f"cluster {load}: {rows[load].rate:,.0f} puts/s", file=sys.stderr)
            report.rows["cluster"] = rows
            if s.kills:
                report.failover = measure_failover(nodes, s.kills)
                print(f"failover: {report.failover}", file=sys.stderr)
        if not s.no_single:
            kinds = ["geanstalk"] + (["beanstalkd"] if BEANSTALKD else [])
            for kind in kinds:
                label = f"{kind} -b -f 0"
                with single(kind, tmp) as server:
                    report.rows[label] = {
                        load: run_puts(server.address, s.conns, batch, s.seconds, s.procs)
                        for load, batch in (("one", 1), ("pipelined", s.batch))
                    }
                print(f"{label}: {report.rows[label]['one'].rate:,.0f} puts/s", file=sys.stderr)
    report.load_after = os.getloadavg()
    text = render(report)
    sys.stdout.write(text)
    if s.markdown:
        command = "python -m benchmarks.cluster_bench " + " ".join(argv or sys.argv[1:])
        Path(s.markdown).write_text(
            "# A cluster on a 3-member etcd, beside single-node servers\n\n"
            f"{describe_machine()}\n\nCommand: `{command.strip()}`\n\n"
            "Three etcd members, three geanstalk nodes and the client processes all on "
            "this machine, on loopback.\n\n" + text
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
