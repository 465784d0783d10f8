"""The Python cost per command with the HTTP endpoint's instrumentation on
(InstrumentedConnection: every command timed into its histogram), beside the
plain Connection in the same run, without sockets. The figures to compare
are the two rows of each scenario.

    pytest benchmarks/test_instrumented_bench.py --benchmark-only
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from test_protocol_bench import PUT, ROUND, Bench, CollectingTransport, _feeds, _run

from geanstalk.instrumented import OP_NAMES, connection_class, instrument_storage
from geanstalk.metrics import Instruments, build_registry


class InstrumentedBench(Bench):
    def __init__(self) -> None:
        super().__init__()
        ins = Instruments(OP_NAMES)
        build_registry(self.server, instruments=ins)
        instrument_storage(self.server, ins)
        n = len(self.conns)
        cls = connection_class(ins)
        self.conns, self.transports = [], []
        for _ in range(n):
            conn = cls(self.server)
            t = CollectingTransport()
            conn.connection_made(t)
            self.conns.append(conn)
            self.transports.append(t)


@pytest.fixture(params=["plain", "instrumented"])
def any_bench(request: pytest.FixtureRequest) -> Iterator[Bench]:
    b = Bench() if request.param == "plain" else InstrumentedBench()
    yield b
    b.close()


def test_put_one_per_chunk(benchmark, any_bench: Bench) -> None:  # type: ignore[no-untyped-def]
    feeds = _feeds(any_bench, [PUT] * ROUND)
    benchmark.pedantic(_run, args=(feeds,), rounds=20, iterations=1, warmup_rounds=1)
    replies = any_bench.replies()
    assert len(replies) == ROUND * 21
    assert all(r.startswith(b"INSERTED ") for r in replies)


def test_put_pipelined(benchmark, any_bench: Bench) -> None:  # type: ignore[no-untyped-def]
    feeds = _feeds(any_bench, [PUT * 100] * (ROUND // 100))
    benchmark.pedantic(_run, args=(feeds,), rounds=20, iterations=1, warmup_rounds=1)
    replies = any_bench.replies()
    assert all(r.count(b"INSERTED ") == 100 for r in replies)


def test_reserve_then_delete(benchmark, any_bench: Bench) -> None:  # type: ignore[no-untyped-def]
    rounds = 10
    for _ in range(rounds * ROUND // 100):
        any_bench.conns[0].data_received(PUT * 100)
    any_bench.replies()
    reserve = b"reserve-with-timeout 0\r\n"
    next_id = [1]
    conns = any_bench.conns

    def setup():  # type: ignore[no-untyped-def]
        feeds = []
        for first in range(next_id[0], next_id[0] + ROUND, len(conns)):
            feeds += [(c.data_received, reserve) for c in conns]
            feeds += [
                (c.data_received, b"delete %d\r\n" % (first + i)) for i, c in enumerate(conns)
            ]
        next_id[0] += ROUND
        return (feeds,), {}

    benchmark.pedantic(_run, setup=setup, rounds=rounds, iterations=1)
    replies = any_bench.replies()
    assert replies.count(b"DELETED\r\n") == ROUND * rounds


def _per_command_ns(kind: str, scenario: str) -> float:
    """Process CPU time per command of one round, on a fresh bench."""
    import time

    b = Bench() if kind == "plain" else InstrumentedBench()
    commands = ROUND
    if scenario == "put-pipelined":
        feeds = _feeds(b, [PUT * 100] * (ROUND // 100))
    elif scenario == "put-single":
        feeds = _feeds(b, [PUT] * ROUND)
    else:
        for _ in range(ROUND // 100):
            b.conns[0].data_received(PUT * 100)
        b.replies()
        feeds = []
        for first in range(1, 1 + ROUND, len(b.conns)):
            feeds += [(c.data_received, b"reserve-with-timeout 0\r\n") for c in b.conns]
            feeds += [
                (c.data_received, b"delete %d\r\n" % (first + i)) for i, c in enumerate(b.conns)
            ]
        commands = 2 * ROUND
    started = time.process_time()
    _run(feeds)
    took = time.process_time() - started
    b.close()
    return took / commands * 1e9


def main(rounds: int = 30) -> None:
    """`python benchmarks/test_instrumented_bench.py`: the minimum over
    interleaved rounds, plain against instrumented, per scenario."""
    for scenario in ("put-pipelined", "put-single", "reserve-delete"):
        best = {"plain": float("inf"), "instrumented": float("inf")}
        for i in range(rounds):
            order = ("plain", "instrumented") if i % 2 else ("instrumented", "plain")
            for kind in order:
                best[kind] = min(best[kind], _per_command_ns(kind, scenario))
        p, q = best["plain"], best["instrumented"]
        print(f"| {scenario} | {p:.0f} | {q:.0f} | {q / p:.2f} |")


if __name__ == "__main__":
    main()
