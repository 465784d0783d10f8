"""Start-up of the pytest plugin's in-process server (geanstalk_server), beside beanstalkd's.

`pytest benchmarks/test_testing_bench.py --benchmark-only`. The target is a
median start-up (bind, loop thread, Runner started, accepting) of at most
20 ms; the benchmark fails when the median is above it. Against it, the time a
test would otherwise spend per test: starting a beanstalkd process until it
answers (the ratio goes to extra_info).
"""

from __future__ import annotations

import socket
import statistics
import subprocess
import time

import pytest

from geanstalk.testing.inprocess import InProcessServer
from geanstalk.testing.options import to_config
from tests.servers import BEANSTALKD, SKIP_NO_REFERENCE, beanstalkd_command, free_port

TARGET_MEDIAN = 0.020
ROUNDS = 40


def test_in_process_server_start_up(benchmark) -> None:
    started: list[InProcessServer] = []

    def setup():
        while started:
            started.pop().stop()  # the previous round's, outside the timing
        return (InProcessServer(to_config({})),), {}

    def start(server: InProcessServer) -> None:
        server.start()
        started.append(server)

    benchmark.pedantic(start, setup=setup, rounds=ROUNDS, warmup_rounds=3)
    for server in started:
        server.stop()
    median = benchmark.stats.stats.median
    benchmark.extra_info["median_ms"] = round(median * 1000, 2)
    assert median <= TARGET_MEDIAN, f"median start-up {median * 1000:.1f} ms > 20 ms"


def _beanstalkd_start() -> float:
    port = free_port()
    began = time.perf_counter()
    proc = subprocess.Popen(beanstalkd_command("-l", "127.0.0.1", "-p", str(port)))
    try:
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    s.sendall(b"list-tubes-watched\r\n")
                    if s.recv(64).startswith(b"OK "):
                        return time.perf_counter() - began
            except OSError:
                time.sleep(0.0005)
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.skipif(BEANSTALKD is None, reason=SKIP_NO_REFERENCE)
def test_start_up_beside_a_beanstalkd_process(benchmark) -> None:
    def once() -> None:
        server = InProcessServer(to_config({})).start()
        server.stop()

    benchmark.pedantic(once, rounds=ROUNDS, warmup_rounds=3)
    ours = benchmark.stats.stats.median
    theirs = statistics.median(_beanstalkd_start() for _ in range(ROUNDS))
    benchmark.extra_info["geanstalk_start_stop_median_ms"] = round(ours * 1000, 2)
    benchmark.extra_info["beanstalkd_process_start_median_ms"] = round(theirs * 1000, 2)
    benchmark.extra_info["ratio_geanstalk_over_beanstalkd"] = round(ours / theirs, 3)
