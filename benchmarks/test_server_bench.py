"""Server benchmarks through pytest-benchmark, and a correctness test of the load generator.

`pytest benchmarks --benchmark-only` runs a short version of the load
generator's scenarios (about a second each) on both servers and records
ops/s, CPU per operation and the geanstalk/beanstalkd ratio in extra_info.
The full comparison is `python -m benchmarks.loadgen` (see README.md here).

The plain tests below run in the normal suite: they check that the load
generator counts what the server did, which every figure it prints relies on.
"""

from __future__ import annotations

import socket

import loadgen
import pytest
from loadgen_run import Load, RunResult, fill, run_load

from tests.servers import BEANSTALKD, SKIP_NO_REFERENCE, recv_until, running

needs_reference = pytest.mark.skipif(BEANSTALKD is None, reason=SKIP_NO_REFERENCE)
KINDS = [
    pytest.param("beanstalkd", marks=[needs_reference, pytest.mark.reference]),
    "geanstalk",
]


def stats(address: tuple[str, int]) -> dict[str, str]:
    with socket.create_connection(address, timeout=5) as s:
        s.sendall(b"stats\r\n")
        reply = recv_until(s)
    head, _, body = reply.partition(b"\r\n")
    assert head.startswith(b"OK "), reply[:100]
    out = {}
    for line in body.decode().splitlines()[1:]:
        key, _, value = line.partition(": ")
        out[key] = value
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_loadgen_counts_every_put_it_reports(kind: str) -> None:
    with running(kind) as server:
        result = run_load(server.address, server.pid, Load("put", 1, 100), seconds=0.3)
        st = stats(server.address)
    assert result.ops > 0
    assert int(st["cmd-put"]) == result.ops
    assert int(st["current-jobs-ready"]) == result.ops
    assert result.server_cpu >= 0


@pytest.mark.parametrize("kind", KINDS)
def test_loadgen_pipelined_puts_and_reserve_delete_balance(kind: str) -> None:
    with running(kind) as server:
        put = run_load(server.address, None, Load("put", 3, 100, batch=100, max_ops=900), 10.0)
        assert put.ops == 900  # the count bound, reached long before the time bound
        # more connections than jobs to spare: the queue runs dry, every connection notices
        drained = run_load(server.address, None, Load("reserve", 4, 100), seconds=10.0)
        st = stats(server.address)
    assert drained.ops == 900
    assert drained.exhausted == 4
    assert int(st["cmd-delete"]) == 900
    assert int(st["current-jobs-ready"]) == 0


@pytest.mark.parametrize("kind", KINDS)
def test_loadgen_fill_and_producer_consumer_latency(kind: str) -> None:
    with running(kind) as server:
        assert fill(server.address, 1234, 100) == 1234
        assert int(stats(server.address)["current-jobs-ready"]) == 1234
        assert run_load(server.address, None, Load("reserve", 2, 100), seconds=10.0).ops == 1234
        pc = run_load(server.address, None, Load("prodcons", 2, 100, rate=400.0), seconds=0.3)
        st = stats(server.address)
    assert pc.ops > 0
    assert len(pc.latencies_ns) == pc.ops
    assert all(ns > 0 for ns in pc.latencies_ns)
    assert int(st["cmd-delete"]) == 1234 + pc.ops


BENCH = ["put-single/c10/b100", "put-pipelined/c10/b100", "reserve-delete/c10/b100"]
_reference_rates: dict[str, RunResult] = {}


def _scenario(name: str) -> loadgen.Scenario:
    settings = loadgen.Settings(seconds=1.0, conns=(10,), bodies=(100,), patterns=(name,))
    (sc,) = loadgen.scenarios(settings)
    return sc


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", BENCH)
def test_server_throughput(benchmark, kind: str, name: str) -> None:  # type: ignore[no-untyped-def]
    sc = _scenario(name)
    settings = loadgen.Settings(seconds=1.0)
    result: RunResult = benchmark.pedantic(
        loadgen.run_scenario_once, args=(kind, sc, settings), rounds=1, iterations=1
    )
    benchmark.extra_info.update(
        server=kind,
        scenario=name,
        ops=result.ops,
        ops_per_s=round(result.ops_per_s),
        cpu_us_per_op=round(result.cpu_us_per_op, 2),
    )
    if kind == "beanstalkd":
        _reference_rates[name] = result
    elif BEANSTALKD is None:
        benchmark.extra_info["ratio"] = f"not measured: {SKIP_NO_REFERENCE}"
    else:
        ref = _reference_rates.get(name) or loadgen.run_scenario_once("beanstalkd", sc, settings)
        benchmark.extra_info["beanstalkd_ops_per_s"] = round(ref.ops_per_s)
        benchmark.extra_info["ratio"] = round(result.ops_per_s / ref.ops_per_s, 3)
        benchmark.extra_info["cpu_per_op_ratio"] = round(
            result.cpu_us_per_op / ref.cpu_us_per_op, 3
        )
    assert result.ops > 0
