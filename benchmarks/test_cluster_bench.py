"""The cluster benchmark's load driver and report, on a small single-node run."""

from __future__ import annotations

import argparse
import os

from benchmarks.cluster_bench import LoadResult, Report, cpu_seconds, render, run_puts
from tests.servers import geanstalk_server, recv_until


def test_run_puts_counts_only_acknowledged_puts() -> None:
    with geanstalk_server().start() as server:
        one = run_puts(server.address, conns=4, batch=1, seconds=0.3, procs=2)
        piped = run_puts(server.address, conns=3, batch=7, seconds=0.3, procs=1)
        with server.connect() as sock:
            sock.sendall(b"stats\r\n")
            stats = recv_until(sock)
    assert one.ops > 0 and one.errors == 0 and len(one.latencies_ms) > 0
    assert piped.ops > 0 and piped.errors == 0
    # Every counted put was a job the server made (some more may land after a run's end).
    assert one.ops + piped.ops <= int(stats.split(b"total-jobs: ")[1].split(b"\n")[0])
    assert cpu_seconds(os.getpid()) > 0


def test_render_puts_the_loads_side_by_side() -> None:
    settings = argparse.Namespace(conns=50, seconds=5.0, batch=100)
    report = Report(settings=settings)
    report.rows["cluster"] = {
        "one": LoadResult(5000, 5.0, [1.0, 2.0, 3.0]),
        "pipelined": LoadResult(20000, 5.0, [10.0]),
    }
    report.rows["geanstalk -b -f 0"] = {
        "one": LoadResult(10000, 5.0, [0.5]),
        "pipelined": LoadResult(40000, 5.0, [5.0]),
    }
    report.failover = [1.5, 2.5, 2.0]
    text = render(report)
    assert "| puts/s, one at a time | 1,000 | 2,000 |" in text
    assert "| p50 ms, one at a time | 2.00 | 0.50 |" in text
    assert "Cluster puts/s over geanstalk -b -f 0: one 0.50x, pipelined 0.50x." in text
    assert "median 2.00 s, max 2.50 s" in text
