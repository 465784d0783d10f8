"""The Python cost of one command, without sockets: Connection.data_received
on a transport that only collects the replies.

The load generator's figures are mostly kernel time (a loopback write costs
more than all of our Python), and they move with whatever else the machine
is doing. These benchmarks isolate the part we write: parsing, dispatch, the
storage transition and the reply, per command, for the commands the load
generator's scenarios send. Each round checks every reply, so an error path
can never pass for a fast one.

    pytest benchmarks/test_protocol_bench.py --benchmark-only
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from geanstalk.protocol import Connection
from geanstalk.server import Server

CONNECTIONS = 50  # as in the load generator's c50 rows
ROUND = 5_000  # commands per round
BODY = b"x" * 100
PUT = b"put 0 0 60 %d\r\n%b\r\n" % (len(BODY), BODY)


class CollectingTransport:
    """Just enough of an asyncio transport for a Connection: writes are kept."""

    def __init__(self) -> None:
        self.replies: list[bytes] = []
        self.write = self.replies.append

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 0) if name == "peername" else None

    def get_write_buffer_size(self) -> int:
        return 0

    def set_write_buffer_limits(self, high: int | None = None) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass


class Bench:
    """A server without a listener and CONNECTIONS connections to it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.server = Server(self.loop)
        self.conns: list[Connection] = []
        self.transports: list[CollectingTransport] = []
        for _ in range(CONNECTIONS):
            conn = Connection(self.server)
            t = CollectingTransport()
            conn.connection_made(t)
            self.conns.append(conn)
            self.transports.append(t)

    def replies(self) -> list[bytes]:
        out = [r for t in self.transports for r in t.replies]
        for t in self.transports:
            t.replies.clear()
        return out

    def close(self) -> None:
        self.loop.close()


@pytest.fixture
def bench() -> Iterator[Bench]:
    b = Bench()
    yield b
    b.close()


def _feeds(bench: Bench, chunks: list[bytes]) -> list[tuple[Any, bytes]]:
    """(data_received, chunk) pairs, the connections taking turns."""
    conns = bench.conns
    return [(conns[i % len(conns)].data_received, c) for i, c in enumerate(chunks)]


def _run(feeds: list[tuple[Any, bytes]]) -> None:
    for data_received, chunk in feeds:
        data_received(chunk)


def test_put_one_per_chunk(benchmark, bench: Bench) -> None:  # type: ignore[no-untyped-def]
    """put-single: a put line and its body in one read, one INSERTED back."""
    feeds = _feeds(bench, [PUT] * ROUND)
    benchmark.pedantic(_run, args=(feeds,), rounds=20, iterations=1, warmup_rounds=1)
    replies = bench.replies()
    assert len(replies) == ROUND * 21
    assert all(r.startswith(b"INSERTED ") for r in replies)
    benchmark.extra_info["commands_per_round"] = ROUND


def test_put_pipelined(benchmark, bench: Bench) -> None:  # type: ignore[no-untyped-def]
    """put-pipelined: 100 puts in one read, their replies in one write."""
    feeds = _feeds(bench, [PUT * 100] * (ROUND // 100))
    benchmark.pedantic(_run, args=(feeds,), rounds=20, iterations=1, warmup_rounds=1)
    replies = bench.replies()
    assert len(replies) == (ROUND // 100) * 21
    assert all(r.count(b"INSERTED ") == 100 for r in replies)
    benchmark.extra_info["commands_per_round"] = ROUND


def test_reserve_then_delete(benchmark, bench: Bench) -> None:  # type: ignore[no-untyped-def]
    """reserve-delete: reserve-with-timeout 0, then delete the job it got."""
    rounds = 10
    for _ in range(rounds * ROUND // 100):
        bench.conns[0].data_received(PUT * 100)
    bench.replies()
    # Each connection reserves ids in turn: connection i gets jobs i+1, i+1+50, ...
    # so the deletes can be written before the reserves run.
    reserve = b"reserve-with-timeout 0\r\n"
    next_id = [1]

    def one_round() -> list[tuple[Any, bytes]]:
        conns = bench.conns
        feeds: list[tuple[Any, bytes]] = []
        for first in range(next_id[0], next_id[0] + ROUND, CONNECTIONS):
            feeds += [(c.data_received, reserve) for c in conns]
            feeds += [
                (c.data_received, b"delete %d\r\n" % (first + i)) for i, c in enumerate(conns)
            ]
        next_id[0] += ROUND
        return feeds

    def setup() -> tuple[tuple[list[tuple[Any, bytes]]], dict[str, Any]]:
        return (one_round(),), {}

    benchmark.pedantic(_run, setup=setup, rounds=rounds, iterations=1)
    replies = bench.replies()
    assert len(replies) == 2 * ROUND * rounds
    assert sum(r.startswith(b"RESERVED ") for r in replies) == ROUND * rounds
    assert replies.count(b"DELETED\r\n") == ROUND * rounds
    benchmark.extra_info["commands_per_round"] = 2 * ROUND
