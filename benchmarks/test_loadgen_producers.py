"""The producer/consumer load offers its rate evenly, not in bursts."""

from __future__ import annotations

import itertools
import socket
import time

import loadgen_clients as clients
from loadgen_run import producer_phase


def test_producers_start_one_rate_step_apart_over_one_interval() -> None:
    rate, producers = 1000.0, 50
    phases = [producer_phase(i, rate) for i in range(producers)]
    interval = producers / rate
    assert phases[0] == 0.0
    steps = [b - a for a, b in itertools.pairwise(phases)]
    assert all(abs(step - 1 / rate) < 1e-12 for step in steps)
    assert phases[-1] < interval  # every producer's first put falls within one interval


def test_a_producer_sends_its_first_put_at_its_phase_then_every_interval() -> None:
    a, b = socket.socketpair()
    with a, b:
        b.setblocking(False)
        now = time.monotonic()
        p = clients.ProducerConn(a, now + 60, 10, interval=0.5, phase=0.2)
        p.begin(now)
        assert p.wakeup() == now + 0.2
        p.tick(now + 0.1)
        assert _pending(b) == b""  # not yet
        p.tick(now + 0.2)
        assert _pending(b).startswith(b"put ")
        p.feed(b"INSERTED 1\r\n", now + 0.21)
        assert p.wakeup() == now + 0.7
        assert _pending(b) == b""


def _pending(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except BlockingIOError:
        return b""
