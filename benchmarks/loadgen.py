"""Load generator: geanstalk against beanstalkd, side by side, on this machine.

    python -m benchmarks.loadgen --quick
    python -m benchmarks.loadgen --scenario put-pipelined --markdown benchmarks/results/server.md

Every scenario runs against a freshly started server of each kind, the kinds
interleaved and the order turned round on every repeat (A B, B A, A B, ...):
a machine that slows down over the run hurts both alike, and neither kind
always goes first into a scenario (on a VM, the first run to touch a new
high-water mark of memory pays for the host backing it). Each figure is the
median of the repeats. The client
processes run on the same cores as the server: on a small machine the figures
measure the pair, which is why only the ratio is worth quoting.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

_HERE = Path(__file__).resolve().parent
for _p in (str(_HERE), str(_HERE.parent)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import loadgen_procfs as procfs  # noqa: E402
import loadgen_readme  # noqa: E402
from loadgen_clients import wait_until_serving  # noqa: E402
from loadgen_run import Load, RunResult, fill, run_load  # noqa: E402

from tests.servers import (  # noqa: E402
    BEANSTALKD,
    ServerProcess,
    beanstalkd_command,
    free_port,
    geanstalk_command,
    make_server,
)

SERVERS = ("geanstalk", "beanstalkd")


@dataclass(frozen=True)
class Scenario:
    """One row of the results table."""

    group: str
    load: Load
    flags: tuple[str, ...] = ()  # server flags, the same for both servers
    binlog: bool = False
    prefill: int = 0
    procs: int = 2  # client processes, unless --procs says otherwise

    @property
    def name(self) -> str:
        return f"{self.group}/c{self.load.conns}/b{self.load.body}"


@dataclass
class Settings:
    seconds: float = 3.0
    repeat: int = 3
    procs: int | None = None  # None: each scenario's own choice
    conns: tuple[int, ...] = (1, 10, 50)
    bodies: tuple[int, ...] = (100, 4096)
    rate: float = 1000.0  # well under what one consumer connection can take, on a busy machine too
    prefill_per_second: int = 60_000
    memory_jobs: int = 1_000_000
    startup_runs: int = 7
    servers: tuple[str, ...] = SERVERS
    patterns: tuple[str, ...] = ()
    tmp_dir: str | None = None
    failures: list[str] = field(default_factory=list)
    log: Callable[[str], None] = field(
        default=lambda line: print(line, file=sys.stderr, flush=True)
    )


def max_ops(body: int) -> int:
    """Count bound for a run: at most ~1 GiB of job bodies left in a server."""
    return min(2_000_000, (1 << 30) // (body + 64))


def scenarios(s: Settings) -> list[Scenario]:
    out: list[Scenario] = []
    for body in s.bodies:
        for c in s.conns:
            cap = max_ops(body)
            out.append(Scenario("put-single", Load("put", c, body, batch=1, max_ops=cap)))
            # one client process: pipelining makes the client cheap, and on 2 cores a
            # second client process only takes CPU away from the server it measures
            pipelined = Load("put", c, body, batch=100, max_ops=cap)
            out.append(Scenario("put-pipelined", pipelined, procs=1))
            prefill = min(cap, int(s.prefill_per_second * s.seconds))
            out.append(
                Scenario(
                    "reserve-delete", Load("reserve", c, body, max_ops=prefill), prefill=prefill
                )
            )
            out.append(Scenario("prodcons", Load("prodcons", c, body, rate=s.rate, max_ops=cap)))
    for fsync in ("50", "0"):
        load = Load("put", 50, 100, batch=1, max_ops=max_ops(100))
        out.append(Scenario(f"binlog-f{fsync}", load, flags=("-f", fsync), binlog=True))
    return [sc for sc in out if selected(sc.name, s.patterns)]


def selected(name: str, patterns: Sequence[str]) -> bool:
    if not patterns:
        return True
    return any(fnmatch.fnmatch(name, p) or name.startswith(p) for p in patterns)


@contextlib.contextmanager
def fresh_server(kind: str, sc: Scenario | None, tmp_dir: str | None) -> Iterator[ServerProcess]:
    """A new server for every run: no jobs, memory or log left over from the last one."""
    flags = list(sc.flags) if sc else []
    logdir = None
    if sc is not None and sc.binlog:
        logdir = tempfile.mkdtemp(prefix=f"loadgen-{kind}-", dir=tmp_dir)
        flags = ["-b", logdir, *flags]
    server = make_server(kind, *flags)
    try:
        server.start()
        # listening is not serving: geanstalk binds first and imports the rest
        # after, and a run must not time those imports as part of the load
        wait_until_serving(server.address, alive=lambda: server.proc.poll() is None)  # type: ignore[union-attr]
        yield server
    finally:
        server.stop()
        if logdir:
            shutil.rmtree(logdir, ignore_errors=True)


def run_scenario_once(kind: str, sc: Scenario, s: Settings) -> RunResult:
    procs = s.procs or sc.procs
    with fresh_server(kind, sc, s.tmp_dir) as server:
        if sc.prefill:
            filled = fill(server.address, sc.prefill, sc.load.body, procs=procs)
            if filled < sc.prefill:
                raise RuntimeError(f"pre-fill stopped at {filled} of {sc.prefill}")
        return run_load(server.address, server.pid, sc.load, s.seconds, procs)


def percentile(values: Sequence[int], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Row:
    """Medians over the repeats of one scenario on one server."""

    ops_per_s: float
    cpu_us_per_op: float
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")
    runs: list[RunResult] = field(default_factory=list)


def summarise(runs: list[RunResult]) -> Row:
    def med(xs: list[float]) -> float:
        return statistics.median(xs) if xs else float("nan")

    lat = [r for r in runs if r.latencies_ns]
    return Row(
        ops_per_s=med([r.ops_per_s for r in runs]),
        cpu_us_per_op=med([r.cpu_us_per_op for r in runs]),
        p50_ms=med([percentile(r.latencies_ns, 0.50) / 1e6 for r in lat]),
        p99_ms=med([percentile(r.latencies_ns, 0.99) / 1e6 for r in lat]),
        runs=runs,
    )


def run_order(servers: Sequence[str], rep: int) -> list[str]:
    """The kinds in the order repeat number rep (from 0) runs them: A B, B A, A B, ..."""
    return list(servers) if rep % 2 == 0 else list(reversed(servers))


def run_throughput(s: Settings) -> dict[str, dict[str, Row]]:
    table: dict[str, dict[str, Row]] = {}
    for sc in scenarios(s):
        runs: dict[str, list[RunResult]] = {k: [] for k in s.servers}
        for rep in range(s.repeat):
            for kind in run_order(s.servers, rep):
                try:
                    r = run_scenario_once(kind, sc, s)
                except Exception as exc:  # one failed run must not sink the others
                    why = str(exc).strip().splitlines()[-1:] or [type(exc).__name__]
                    s.failures.append(f"{sc.name} {kind} rep {rep + 1}: {why[0][:200]}")
                    s.log(f"{sc.name:28} {kind:10} rep {rep + 1}: FAILED {exc!r}")
                    continue
                runs[kind].append(r)
                extra = f" exhausted={r.exhausted}" if r.exhausted else ""
                if r.latencies_ns:
                    p50, p99 = (percentile(r.latencies_ns, q) / 1e6 for q in (0.5, 0.99))
                    extra += f" p50 {p50:.3f} ms p99 {p99:.3f} ms"
                s.log(
                    f"{sc.name:28} {kind:10} rep {rep + 1}: {r.ops:>8} ops "
                    f"{r.ops_per_s:>10.0f}/s  cpu {r.cpu_us_per_op:6.1f} us/op{extra}"
                )
        table[sc.name] = {k: summarise(v) for k, v in runs.items()}
    return table


# The floor under geanstalk's start-up: this interpreter starting, binding,
# accepting one connection and answering one line, with nothing imported.
BARE_PYTHON = "python"
_BARE_SERVER = (
    "import socket,sys\n"
    "s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
    "s.bind(('127.0.0.1',int(sys.argv[1])));s.listen()\n"
    "c,_=s.accept();c.recv(64);c.sendall(b'USING default\\r\\n');c.recv(64)\n"
)


def server_argv(kind: str, port: int) -> list[str]:
    args = ["-l", "127.0.0.1", "-p", str(port)]
    if kind == BARE_PYTHON:
        return [sys.executable, "-c", _BARE_SERVER, str(port)]
    return geanstalk_command(*args) if kind == "geanstalk" else beanstalkd_command(*args)


def measure_startup(s: Settings) -> dict[str, tuple[float, float]]:
    """Median ms from exec to first accepted connection, and to first reply."""
    kinds = [*s.servers, BARE_PYTHON] if "geanstalk" in s.servers else list(s.servers)
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in kinds}
    for _ in range(s.startup_runs):
        for kind in kinds:
            port = free_port()
            conn, reply, proc = procfs.time_to_first_connection(server_argv(kind, port), port)
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            times[kind].append((conn * 1e3, reply * 1e3))
    out = {}
    for kind, ts in times.items():
        out[kind] = (statistics.median(t[0] for t in ts), statistics.median(t[1] for t in ts))
        s.log(
            f"startup {kind:10} connect {out[kind][0]:6.1f} ms  first reply {out[kind][1]:6.1f} ms"
        )
    return out


def measure_memory(s: Settings, binlog: bool = False) -> dict[str, float]:
    """Bytes of RSS per ready job of 100 B after filling with memory_jobs jobs
    (with binlog: both servers run with -b and their default fsync policy)."""
    sc = Scenario("memory-binlog", Load("put", 1, 100), binlog=True) if binlog else None
    label = "memory-b" if binlog else "memory"
    out = {}
    for kind in s.servers:
        with fresh_server(kind, sc, s.tmp_dir) as server:
            before = procfs.rss_bytes(server.pid)
            t0 = time.monotonic()
            filled = fill(server.address, s.memory_jobs, 100, procs=s.procs or 2)
            took = time.monotonic() - t0
            time.sleep(0.2)
            after = procfs.rss_bytes(server.pid)
        out[kind] = (after - before) / filled
        s.log(
            f"{label:8} {kind:10} {filled} jobs in {took:.1f} s: RSS {before >> 20} -> "
            f"{after >> 20} MiB = {out[kind]:.0f} B/job"
        )
    return out


def as_json(
    table: dict[str, dict[str, Row]],
    startup: dict[str, tuple[float, float]],
    memory: dict[str, float],
    memory_binlog: dict[str, float] | None = None,
) -> dict[str, object]:
    """Medians and the runs behind them, for tools that build their own tables."""

    def num(x: float) -> float | None:
        return None if x != x else x  # JSON has no NaN

    def run(r: RunResult) -> dict[str, float]:
        return {"ops": r.ops, "seconds": r.seconds, "server_cpu_s": r.server_cpu}

    return {
        "scenarios": {
            name: {
                kind: {
                    "ops_per_s": num(row.ops_per_s),
                    "cpu_us_per_op": num(row.cpu_us_per_op),
                    "p50_ms": num(row.p50_ms),
                    "p99_ms": num(row.p99_ms),
                    "runs": [run(r) for r in row.runs],
                }
                for kind, row in rows.items()
            }
            for name, rows in table.items()
        },
        "startup_ms": {k: {"accept": v[0], "first_reply": v[1]} for k, v in startup.items()},
        "rss_bytes_per_job": memory,
        "rss_bytes_per_job_binlog": memory_binlog or {},
    }


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def fmt(x: float, digits: int = 0) -> str:
    return "-" if x != x else f"{x:,.{digits}f}"


def render(
    s: Settings,
    table: dict[str, dict[str, Row]],
    startup: dict[str, tuple[float, float]],
    memory: dict[str, float],
    memory_binlog: dict[str, float] | None = None,
) -> str:
    g, b = "geanstalk", "beanstalkd"
    lines = [
        "| scenario | conns | body | geanstalk ops/s | beanstalkd ops/s | ratio | "
        "geanstalk CPU us/op | beanstalkd CPU us/op |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    if not table:  # only memory or start-up was asked for
        lines = ["No throughput scenario was selected."]
    for name, rows in table.items():
        group, c, body = name.split("/")
        gr, br = rows.get(g), rows.get(b)
        lines.append(
            f"| {group} | {c[1:]} | {body[1:]} | {fmt(gr.ops_per_s) if gr else '-'} | "
            f"{fmt(br.ops_per_s) if br else '-'} | "
            f"{fmt(ratio(gr.ops_per_s, br.ops_per_s), 2) if gr and br else '-'} | "
            f"{fmt(gr.cpu_us_per_op, 1) if gr else '-'} | {fmt(br.cpu_us_per_op, 1) if br else '-'} |"
        )
    lat = [(n, r) for n, r in table.items() if n.startswith("prodcons")]
    if lat:
        lines += [
            "",
            f"Put-to-reserve latency at {s.rate:.0f} jobs/s offered (producer/consumer pairs):",
            "",
            "| conns (pairs) | body | geanstalk p50 ms | geanstalk p99 ms | "
            "beanstalkd p50 ms | beanstalkd p99 ms |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        for name, rows in lat:
            _, c, body = name.split("/")
            gr, br = rows.get(g), rows.get(b)
            lines.append(
                f"| {c[1:]} | {body[1:]} | {fmt(gr.p50_ms, 3) if gr else '-'} | "
                f"{fmt(gr.p99_ms, 3) if gr else '-'} | {fmt(br.p50_ms, 3) if br else '-'} | "
                f"{fmt(br.p99_ms, 3) if br else '-'} |"
            )
    if s.failures:
        lines += ["", "Runs that failed (left out of the medians above):", ""]
        lines += [f"- {f}" for f in s.failures]
    for title, mem in (("", memory), (", both servers with -b (default fsync)", memory_binlog)):
        if not mem:
            continue
        lines += ["", f"Memory, RSS per ready job of 100 B ({s.memory_jobs:,} jobs){title}:", ""]
        lines += [f"- {k}: {v:,.0f} B/job" for k, v in mem.items()]
        if g in mem and b in mem:
            lines.append(f"- ratio geanstalk/beanstalkd: {ratio(mem[g], mem[b]):.2f}")
    if startup:
        lines += [
            "",
            f"Start-up, exec to first accepted connection (median of {s.startup_runs}):",
            "",
        ]
        lines += [
            f"- {k}: {v[0]:.1f} ms to accept, {v[1]:.1f} ms to first reply"
            for k, v in startup.items()
            if k != BARE_PYTHON
        ]
        if BARE_PYTHON in startup:
            v = startup[BARE_PYTHON]
            lines.append(
                f"- for scale, a bare Python interpreter that only binds, accepts and answers "
                f"one line: {v[0]:.1f} ms to accept, {v[1]:.1f} ms to first reply"
            )
    return "\n".join(lines) + "\n"


# (table row label, scenario name), in the order the README shows them
README_ROWS = [
    ("put, pipelined 100 per write", "put-pipelined/c1/b100"),
    ("put, pipelined 100 per write", "put-pipelined/c10/b100"),
    ("put, pipelined 100 per write", "put-pipelined/c50/b100"),
    ("put, one at a time", "put-single/c1/b100"),
    ("put, one at a time", "put-single/c50/b100"),
    ("reserve + delete", "reserve-delete/c1/b100"),
    ("reserve + delete", "reserve-delete/c50/b100"),
    ("put with `-b -f 50`", "binlog-f50/c50/b100"),
    ("put with `-b -f 0`", "binlog-f0/c50/b100"),
]


def readme_summary(
    when: str,
    table: dict[str, dict[str, Row]],
    startup: dict[str, tuple[float, float]],
    memory: dict[str, float],
    memory_binlog: dict[str, float],
) -> str:
    """Markdown for the block: the headline rows that were measured, then memory and start-up."""
    G, B = "geanstalk", "beanstalkd"
    lines = [
        f"Run of {when}.",
        "",
        "| scenario (100 B bodies) | conns | geanstalk ops/s | beanstalkd ops/s | ratio "
        "| CPU µs/op geanstalk / beanstalkd |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, name in README_ROWS:
        rows = table.get(name, {})
        g, b = rows.get(G), rows.get(B)
        if g is None or b is None:
            continue
        conns = name.split("/")[1][1:]
        lines.append(
            f"| {label} | {conns} | {fmt(g.ops_per_s)} | {fmt(b.ops_per_s)} "
            f"| {fmt(ratio(g.ops_per_s, b.ops_per_s), 2)} "
            f"| {fmt(g.cpu_us_per_op, 1)} / {fmt(b.cpu_us_per_op, 1)} |"
        )
    other = []
    for label, mem in (
        ("RSS per ready job (10^6 jobs of 100 B)", memory),
        ("RSS per ready job with `-b`", memory_binlog),
    ):
        if G in mem and B in mem:
            other.append(
                f"| {label} | {mem[G]:,.0f} B | {mem[B]:,.0f} B | {ratio(mem[G], mem[B]):.2f} |"
            )
    if G in startup and B in startup:
        other.append(
            f"| start-up, exec to first accepted connection | {startup[G][0]:.0f} ms "
            f"| {startup[B][0]:.0f} ms | |"
        )
    if other:
        lines += ["", "| other measure | geanstalk | beanstalkd | ratio |", "|---|---:|---:|---:|"]
        lines += other
    return "\n".join(lines) + "\n"


def targets(
    table: dict[str, dict[str, Row]],
    startup: dict[str, tuple[float, float]],
    memory: dict[str, float],
) -> list[str]:
    """The issue-5 targets, each marked met or missed from this run's figures."""

    def r(name: str) -> float | None:
        rows = table.get(name, {})
        if "geanstalk" in rows and "beanstalkd" in rows:
            return ratio(rows["geanstalk"].ops_per_s, rows["beanstalkd"].ops_per_s)
        return None

    checks: list[tuple[str, float | None, float]] = []
    for body in (100, 4096):
        for c in (1, 10, 50):
            checks.append((f"put-pipelined/c{c}/b{body}", r(f"put-pipelined/c{c}/b{body}"), 2.0))
        for group in ("put-single", "reserve-delete"):
            checks.append((f"{group}/c50/b{body}", r(f"{group}/c50/b{body}"), 1.0))
            checks.append((f"{group}/c1/b{body}", r(f"{group}/c1/b{body}"), 0.8))
    checks.append(("binlog-f50/c50/b100", r("binlog-f50/c50/b100"), 1.0))
    checks.append(("binlog-f0/c50/b100", r("binlog-f0/c50/b100"), 3.0))
    out = []
    for name, value, want in checks:
        if value is not None and value != value:
            out.append(f"- {name}: not measured (its runs failed)")
        elif value is not None:
            verdict = "met" if value >= want else "MISSED"
            out.append(f"- {name}: ratio {value:.2f}, target >= {want:.1f}x: {verdict}")
    if "geanstalk" in memory and "beanstalkd" in memory:
        m = ratio(memory["geanstalk"], memory["beanstalkd"])
        out.append(
            f"- memory per ready job: ratio {m:.2f}, target <= 1.0x: {'met' if m <= 1 else 'MISSED'}"
        )
    if "geanstalk" in startup:
        ms = startup["geanstalk"][0]
        out.append(f"- start-up: {ms:.1f} ms, target <= 100 ms: {'met' if ms <= 100 else 'MISSED'}")
    return out


def describe_machine(s: Settings) -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    commit = "unknown"
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=_HERE.parent,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "geanstalk"],
            capture_output=True,
            text=True,
            check=True,
            cwd=_HERE.parent,
        ).stdout.strip()
        if dirty:
            commit += " plus uncommitted changes in geanstalk/"
    ref = "absent"
    if BEANSTALKD:
        with contextlib.suppress(OSError, subprocess.CalledProcessError):
            ref = subprocess.run(
                [BEANSTALKD, "-v"], capture_output=True, text=True, check=True
            ).stdout.strip()
    return (
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, geanstalk at commit {commit}, "
        f"{ref}, Python {platform.python_version()}, {os.cpu_count()} cores ({cpu}). "
        f"{s.seconds:g} s per run, median of {s.repeat} runs per server, servers interleaved (order turned round each repeat), "
        f"{s.procs or 'two (one for pipelined puts)'} client processes. Server and clients share the same cores, so "
        "absolute rates are those of the pair; compare the ratios."
    )


def command_line(argv: Sequence[str] | None) -> str:
    """The options of this run as typed, with output files (local paths) shown as FILE."""
    out: list[str] = []
    skip = False
    for arg in list(sys.argv[1:] if argv is None else argv):
        if skip:
            out.append("FILE")
            skip = False
        elif arg in ("--markdown", "--json"):
            out.append(arg)
            skip = True
        elif arg.startswith(("--markdown=", "--json=")):
            out.append(arg.split("=", 1)[0] + "=FILE")
        else:
            out.append(arg)
    return " ".join(out)


def parse_args(argv: Sequence[str] | None) -> tuple[Settings, argparse.Namespace]:
    ap = argparse.ArgumentParser(prog="loadgen", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="short version: 1 s, 1 run, fewer rows")
    ap.add_argument("--seconds", type=float, help="seconds per run (default 3)")
    ap.add_argument("--repeat", type=int, help="runs per server per scenario (default 3)")
    ap.add_argument("--procs", type=int, help="client processes (default 2; 1 for pipelined puts)")
    ap.add_argument("--conns", help="comma list of connection counts (default 1,10,50)")
    ap.add_argument("--bodies", help="comma list of body sizes (default 100,4096)")
    ap.add_argument("--rate", type=float, help="producer/consumer offered jobs/s (default 1000)")
    ap.add_argument(
        "--scenario",
        action="append",
        default=[],
        help="name or glob, repeatable; e.g. put-pipelined, 'put-*/c50/*', memory, startup",
    )
    ap.add_argument("--servers", default=",".join(SERVERS), help="comma list (default both)")
    ap.add_argument("--memory-jobs", type=int, help="jobs for the memory test (default 10^6)")
    ap.add_argument("--startup-runs", type=int, help="start-ups per server (default 7)")
    ap.add_argument("--tmp-dir", help="where binlog directories go (default: system temp)")
    ap.add_argument("--markdown", help="write the results table to this file")
    ap.add_argument("--json", help="write every run's figures to this file")
    ap.add_argument("--readme", help="rewrite the summary between the markers in this README")
    a = ap.parse_args(argv)
    s = Settings()
    if a.quick:
        s.seconds, s.repeat, s.conns, s.bodies = 1.0, 1, (1, 10), (100,)
        s.memory_jobs, s.startup_runs = 100_000, 3
    if a.seconds:
        s.seconds = a.seconds
    if a.repeat:
        s.repeat = a.repeat
    s.procs = a.procs
    if a.conns:
        s.conns = tuple(int(x) for x in a.conns.split(","))
    if a.bodies:
        s.bodies = tuple(int(x) for x in a.bodies.split(","))
    if a.rate:
        s.rate = a.rate
    if a.memory_jobs:
        s.memory_jobs = a.memory_jobs
    if a.startup_runs:
        s.startup_runs = a.startup_runs
    s.servers = tuple(x for x in a.servers.split(",") if x)
    if BEANSTALKD is None and "beanstalkd" in s.servers:
        print("beanstalkd is not on PATH: running geanstalk alone", file=sys.stderr)
        s.servers = tuple(x for x in s.servers if x != "beanstalkd")
    s.patterns = tuple(a.scenario)
    s.tmp_dir = a.tmp_dir
    return s, a


def main(argv: Sequence[str] | None = None) -> int:
    s, a = parse_args(argv)
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    table = run_throughput(s)
    startup = measure_startup(s) if selected("startup", s.patterns) else {}
    memory = measure_memory(s) if selected("memory", s.patterns) else {}
    memory_binlog = measure_memory(s, binlog=True) if selected("memory-binlog", s.patterns) else {}
    body = render(s, table, startup, memory, memory_binlog)
    # other work on the machine skews every figure; say how much there was
    body += (
        f"\nRun took {time.monotonic() - started:.0f} s; 1-minute load average "
        f"{load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end "
        f"(this load generator alone accounts for about 2).\n"
    )
    checks = targets(table, startup, memory)
    print(body)
    if checks:
        print("Targets:\n" + "\n".join(checks))
    if a.json:
        Path(a.json).write_text(
            json.dumps(as_json(table, startup, memory, memory_binlog), indent=1) + "\n"
        )
    if a.markdown:
        text = (
            "# Server benchmarks: geanstalk vs beanstalkd\n\n"
            f"{describe_machine(s)}\n\n"
            f"Command: `python -m benchmarks.loadgen {command_line(argv)}`\n\n"
            f"{body}"
        )
        if checks:
            text += "\nTargets (issue 5):\n\n" + "\n".join(checks) + "\n"
        Path(a.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(a.markdown).write_text(text)
    if a.readme:
        when = describe_machine(s).split(". ")[0]
        block = readme_summary(when, table, startup, memory, memory_binlog)
        loadgen_readme.replace_block(Path(a.readme), block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
