"""Binlog size under churn: geanstalk against beanstalkd, same workload, same flags.

    python -m benchmarks.binlog_churn                  # 200k commands, ~1000 live jobs
    python -m benchmarks.binlog_churn --ops 20000 --servers geanstalk

The workload keeps about --live jobs alive while it puts new jobs, deletes old
ones and releases random live jobs with a long delay (reserve-job + release),
the mix that makes a log grow: every live job's records stay somewhere in
the directory. The figure is the directory's size (binlog files only): the
largest seen while the churn ran, and at the end. Both servers get the same
-b/-s/-F flags and run on loopback; the run is bounded in commands and time.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from tests.servers import BEANSTALKD, make_server, recv_until  # noqa: E402


@dataclass
class Result:
    server: str
    commands: int
    seconds: float
    live: int
    live_bytes: int
    max_bytes: int
    final_bytes: int


def binlog_bytes(directory: str) -> int:
    total = 0
    for name in os.listdir(directory):
        if name.startswith("binlog."):
            with contextlib.suppress(FileNotFoundError):  # deleted since listdir
                total += os.path.getsize(os.path.join(directory, name))
    return total


def _send(sock: socket.socket, commands: list[bytes], expected: int) -> list[bytes]:
    sock.sendall(b"".join(commands))
    data = recv_until(sock, expected, timeout=60)
    lines = []
    pos = 0
    while len(lines) < expected:
        end = data.index(b"\r\n", pos)
        line = data[pos:end]
        pos = end + 2
        if line.startswith(b"RESERVED "):
            pos += int(line.split()[2]) + 2
        lines.append(line)
    return lines


def churn(
    kind: str, ops: int, live_target: int, body_size: int, flags: list[str], time_limit: float
) -> Result:
    rng = random.Random(20261128)
    directory = tempfile.mkdtemp(prefix=f"churn-{kind}-")
    server = make_server(kind, "-b", directory, *flags).start()
    try:
        sock = server.connect(timeout=60)
        body = b"b" * body_size
        put = b"put 100 0 60 %d\r\n%s\r\n" % (body_size, body)
        live: list[int] = []
        for start in range(0, live_target, 200):
            n = min(200, live_target - start)
            for line in _send(sock, [put] * n, n):
                live.append(int(line.split()[1]))
        commands = live_target
        peak = binlog_bytes(directory)
        began = time.monotonic()
        while commands < ops and time.monotonic() - began < time_limit:
            batch: list[bytes] = []
            kinds: list[str] = []
            touched: set[int] = set()
            for _ in range(50):
                i = rng.randrange(len(live))
                jid = live[i]
                if jid in touched:
                    continue
                touched.add(jid)
                if rng.random() < 0.5:  # replace a job: put a new one, delete an old one
                    live[i] = live[-1]
                    live.pop()
                    batch += [put, b"delete %d\r\n" % jid]
                    kinds += ["put", "delete"]
                else:  # release a live job with a long delay
                    batch += [b"reserve-job %d\r\n" % jid, b"release %d 100 3600\r\n" % jid]
                    kinds += ["reserve", "release"]
            for k, line in zip(kinds, _send(sock, batch, len(batch)), strict=True):
                if k == "put":
                    live.append(int(line.split()[1]))
                elif not line.startswith((b"DELETED", b"RESERVED", b"RELEASED")):
                    raise RuntimeError(f"{kind}: unexpected reply {line!r} to {k}")
            commands += len(batch)
            peak = max(peak, binlog_bytes(directory))
        seconds = time.monotonic() - began
        sock.close()
        time.sleep(0.2)  # let a background compaction step or timer fsync land
        final = binlog_bytes(directory)
        return Result(
            kind,
            commands,
            seconds,
            len(live),
            len(live) * body_size,
            max(peak, final),
            final,
        )
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", type=int, default=200_000, help="protocol commands in all")
    parser.add_argument("--live", type=int, default=1000, help="jobs kept alive")
    parser.add_argument("--body", type=int, default=100, help="job body size in bytes")
    parser.add_argument("--size", type=int, default=1 << 20, help="-s: binlog file size")
    parser.add_argument("--fsync", default="-F", help="-F, or e.g. '-f 50'")
    parser.add_argument("--time-limit", type=float, default=240.0, help="seconds per server")
    parser.add_argument("--servers", default="geanstalk,beanstalkd")
    args = parser.parse_args(argv)
    flags = ["-s", str(args.size), *args.fsync.split()]
    kinds = [k for k in args.servers.split(",") if k]
    if "beanstalkd" in kinds and BEANSTALKD is None:
        print("beanstalkd is not on PATH; measuring geanstalk only", file=sys.stderr)
        kinds.remove("beanstalkd")
    results = [churn(k, args.ops, args.live, args.body, flags, args.time_limit) for k in kinds]
    print(f"flags: -b DIR {' '.join(flags)}; {args.live} live jobs of {args.body} bytes")
    print(
        f"{'server':<11} {'commands':>9} {'s':>6} {'live data':>10} {'max dir':>12} {'final dir':>12}"
    )
    for r in results:
        print(
            f"{r.server:<11} {r.commands:>9} {r.seconds:>6.1f} {r.live_bytes:>10} "
            f"{r.max_bytes:>12} {r.final_bytes:>12}"
        )
    if len(results) == 2:
        g, b = results
        print(
            f"ratio {g.server}/{b.server}: max {g.max_bytes / max(b.max_bytes, 1):.3f}, "
            f"final {g.final_bytes / max(b.final_bytes, 1):.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
