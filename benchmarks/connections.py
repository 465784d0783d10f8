"""Many connections and connect storms: geanstalk against beanstalkd, side by side.

    python -m benchmarks.connections [--idle 10000] [--storm 8000] [--repeat 3]
    python -m benchmarks.connections --markdown benchmarks/results/connections.md

Two measurements, each against a freshly started server of each kind (the
kinds interleaved, the order turned round on every repeat; figures are
medians of the repeats):

- idle: N connections are opened in batches, each sends one ``use`` and
  reads its reply (so every one has been accepted and served), then the
  server's VmRSS growth is divided by N. A client that connects after them
  then times its first round trip (``list-tube-used``): it must be served at
  once, not after some sweep over the idle ones.
- storm: N connections are opened back to back with non-blocking connects,
  as every worker of a fleet does after a restart. The figure is the time
  from the first connect until the server's ``stats`` shows all of them as
  current connections, and the server's CPU time over that span divided by
  N. A server that spends too long per accept lets its listen backlog
  overflow: the kernel then drops SYNs and those clients wait for a
  retransmit a second later, which is what the elapsed time shows.

Client sockets are closed with SO_LINGER 0 (a reset), so repeated runs do not
leave tens of thousands of sockets in TIME_WAIT.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import select
import socket
import statistics
import struct
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_HERE = Path(__file__).resolve().parent
for _p in (str(_HERE), str(_HERE.parent)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import loadgen  # noqa: E402
import loadgen_procfs as procfs  # noqa: E402
from loadgen_clients import wait_until_serving  # noqa: E402

from tests.servers import BEANSTALKD, ServerProcess, free_port  # noqa: E402

SERVERS = ("geanstalk", "beanstalkd")
LINGER_RESET = struct.pack("ii", 1, 0)
BATCH = 250  # idle connections opened before their replies are read


@dataclass
class IdleResult:
    conns: int
    rss_per_conn: float  # bytes
    late_client_ms: float  # first round trip of a client connecting after them


@dataclass
class StormResult:
    conns: int
    seconds: float  # first connect to all counted by the server
    cpu_us_per_conn: float


def _reset_close(socks: list[socket.socket]) -> None:
    for s in socks:
        with contextlib.suppress(OSError):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
        s.close()
    socks.clear()


def _read_line(s: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionResetError("server closed the connection")
        data += chunk
    return data


def _ask(s: socket.socket, command: bytes) -> bytes:
    s.sendall(command)
    return _read_line(s)


def _stats_value(control: socket.socket, key: bytes) -> int:
    control.sendall(b"stats\r\n")
    head = _read_line(control)
    if not head.startswith(b"OK "):
        raise RuntimeError(f"stats answered {head!r}")
    first, _, rest = head.partition(b"\r\n")
    size = int(first.split()[1]) + 2
    while len(rest) < size:
        chunk = control.recv(65536)
        if not chunk:
            raise ConnectionResetError("server closed the stats connection")
        rest += chunk
    for line in rest.split(b"\n"):
        if line.startswith(key + b":"):
            return int(line.split(b":")[1])
    raise RuntimeError(f"no {key!r} in stats")


def measure_idle(server: ServerProcess, conns: int) -> IdleResult:
    """RSS per idle connection (after one use), and a late client's first round trip."""
    held: list[socket.socket] = []
    try:
        warm = server.connect()
        held.append(warm)
        _ask(warm, b"use idle\r\n")
        time.sleep(0.2)
        before = procfs.rss_bytes(server.pid)
        while len(held) - 1 < conns:
            batch = [server.connect() for _ in range(min(BATCH, conns + 1 - len(held)))]
            held.extend(batch)
            for s in batch:
                s.sendall(b"use idle\r\n")
            for s in batch:
                reply = _read_line(s)
                if reply != b"USING idle\r\n":
                    raise RuntimeError(f"use answered {reply!r}")
        time.sleep(0.5)
        after = procfs.rss_bytes(server.pid)
        start = time.perf_counter()
        with server.connect() as late:
            reply = _ask(late, b"list-tube-used\r\n")
        late_ms = (time.perf_counter() - start) * 1e3
        if reply != b"USING default\r\n":
            raise RuntimeError(f"list-tube-used answered {reply!r}")
        return IdleResult(conns, (after - before) / conns, late_ms)
    finally:
        _reset_close(held)


def measure_storm(server: ServerProcess, conns: int, timeout: float = 60.0) -> StormResult:
    """Open conns connections back to back; time until the server counts them all."""
    control = server.connect()
    socks: list[socket.socket] = []
    ep = select.epoll()
    try:
        base = _stats_value(control, b"current-connections")
        cpu0 = procfs.cpu_seconds(server.pid)
        start = time.perf_counter()
        pending = 0
        for _ in range(conns):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            err = s.connect_ex(server.address)
            if err not in (0, errno.EINPROGRESS):
                s.close()
                raise OSError(err, f"connect: {errno.errorcode.get(err, err)}")
            socks.append(s)
            ep.register(s.fileno(), select.EPOLLOUT)
            pending += 1
        deadline = start + timeout
        # Every connect completes (the kernel's handshake), then the server
        # must also have accepted every one of them.
        while pending:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{pending} connects still pending after {timeout}s")
            for fd, _ in ep.poll(0.1):
                ep.unregister(fd)
                pending -= 1
        while _stats_value(control, b"current-connections") < base + conns:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"server did not count {conns} connections in {timeout}s")
            time.sleep(0.002)
        elapsed = time.perf_counter() - start
        cpu = procfs.cpu_seconds(server.pid) - cpu0
        for s in socks:
            with contextlib.suppress(OSError):
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    raise OSError(err, "a storm connection failed")
        return StormResult(conns, elapsed, cpu / conns * 1e6)
    finally:
        ep.close()
        _reset_close(socks)
        control.close()


def _start(kind: str, extra: Sequence[str]) -> ServerProcess:
    port = free_port()
    argv = loadgen.server_argv(kind, port)
    if kind == "geanstalk":
        argv = [*argv, *extra]
    server = ServerProcess(kind, argv, port).start()
    wait_until_serving(server.address)
    return server


def run(
    servers: Sequence[str], idle: int, storm: int, repeat: int, extra: Sequence[str] = ()
) -> tuple[dict[str, list[IdleResult]], dict[str, list[StormResult]]]:
    idles: dict[str, list[IdleResult]] = {k: [] for k in servers}
    storms: dict[str, list[StormResult]] = {k: [] for k in servers}
    for r in range(repeat):
        order = list(servers) if r % 2 == 0 else list(reversed(servers))
        for kind in order:
            if idle:
                with _start(kind, extra) as server:
                    res = measure_idle(server, idle)
                idles[kind].append(res)
                print(
                    f"idle  {kind:10} {res.conns} conns: {res.rss_per_conn:7.0f} B/conn, "
                    f"late client {res.late_client_ms:.1f} ms",
                    flush=True,
                )
            if storm:
                with _start(kind, extra) as server:
                    sres = measure_storm(server, storm)
                storms[kind].append(sres)
                print(
                    f"storm {kind:10} {sres.conns} conns: {sres.seconds:6.3f} s, "
                    f"{sres.cpu_us_per_conn:5.1f} us CPU/conn",
                    flush=True,
                )
    return idles, storms


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "-"


def render(
    idles: dict[str, list[IdleResult]], storms: dict[str, list[StormResult]], idle: int, storm: int
) -> list[str]:
    g, b = "geanstalk", "beanstalkd"
    out: list[str] = []

    def med(results: dict, kind: str, attr: str) -> float:
        return _median([getattr(x, attr) for x in results.get(kind, [])])

    if idle:
        out += [
            f"Idle connections ({idle}, each after one `use`): server RSS growth per connection, "
            "and the first round trip of a client connecting after them.",
            "",
            "| | geanstalk | beanstalkd | ratio | target |",
            "|---|---:|---:|---:|---|",
        ]
        gr, br = med(idles, g, "rss_per_conn"), med(idles, b, "rss_per_conn")
        gl, bl = med(idles, g, "late_client_ms"), med(idles, b, "late_client_ms")
        out.append(
            f"| RSS per connection (B) | {gr:.0f} | {br:.0f} | {_ratio(gr, br)} | "
            f"<= 2048 B: {'met' if gr <= 2048 else 'MISSED'} |"
        )
        out.append(f"| late client round trip (ms) | {gl:.1f} | {bl:.1f} | {_ratio(gl, bl)} | |")
        out.append("")
    if storm:
        gs, bs = med(storms, g, "seconds"), med(storms, b, "seconds")
        gc, bc = med(storms, g, "cpu_us_per_conn"), med(storms, b, "cpu_us_per_conn")
        out += [
            f"Connect storm ({storm} connections opened back to back): time until the server "
            "counts them all, and its CPU per accepted connection.",
            "",
            "| | geanstalk | beanstalkd | ratio | target |",
            "|---|---:|---:|---:|---|",
            f"| all accepted (s) | {gs:.3f} | {bs:.3f} | {_ratio(gs, bs)} | "
            f"<= 2x beanstalkd: {'met' if bs and gs <= 2 * bs else 'MISSED'} |",
            f"| server CPU per connection (us) | {gc:.1f} | {bc:.1f} | {_ratio(gc, bc)} | "
            f"<= 20 us: {'met' if gc <= 20 else 'MISSED'} |",
            "",
        ]
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--idle", type=int, default=10000, help="idle connections (0 skips)")
    ap.add_argument("--storm", type=int, default=8000, help="storm connections (0 skips)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--servers", default=",".join(SERVERS))
    ap.add_argument("--geanstalk-arg", action="append", default=[], help="extra serve flag")
    ap.add_argument("--markdown", help="write the tables (with the machine) to this file")
    a = ap.parse_args(argv)
    servers = [s for s in a.servers.split(",") if s]
    if "beanstalkd" in servers and BEANSTALKD is None:
        print("beanstalkd not on PATH: geanstalk only, no ratios", file=sys.stderr)
        servers.remove("beanstalkd")
    load_before = os.getloadavg()[0]
    idles, storms = run(servers, a.idle, a.storm, a.repeat, a.geanstalk_arg)
    load_after = os.getloadavg()[0]
    settings = loadgen.Settings()
    settings.repeat = a.repeat
    lines = render(idles, storms, a.idle, a.storm)
    print("\n".join(lines))
    if a.markdown:
        head = loadgen.describe_machine(settings).split(". ")[0] + "."
        cmd = "python -m benchmarks.connections " + " ".join(
            "FILE" if x.endswith(".md") else x for x in (argv if argv is not None else sys.argv[1:])
        )
        Path(a.markdown).write_text(
            "# Connections: geanstalk vs beanstalkd\n\n"
            f"{head} Median of {a.repeat} runs per server, interleaved. Load average "
            f"(1 min) {load_before:.1f} at the start, {load_after:.1f} at the end: clients and "
            "servers share the cores, compare the ratios.\n\n"
            f"Command: `{cmd.strip()}`\n\n" + "\n".join(lines) + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
