"""The single timer: armed for the earliest deadline only, re-armed after firing."""

from __future__ import annotations

from typing import Any

from server_harness import Clock, talk

from geanstalk.server import Server


class Handle:
    def __init__(self, delay: float, callback: Any) -> None:
        self.delay = delay
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class RecordingLoop:
    """Records call_later; runs nothing by itself."""

    def __init__(self) -> None:
        self.handles: list[Handle] = []

    def call_later(self, delay: float, callback: Any) -> Handle:
        h = Handle(delay, callback)
        self.handles.append(h)
        return h

    def call_soon(self, callback: Any, *args: Any) -> None:
        callback(*args)

    def live(self) -> list[Handle]:
        return [h for h in self.handles if not h.cancelled]


def make() -> tuple[Server, RecordingLoop, Clock]:
    loop = RecordingLoop()
    clock = Clock()
    return Server(loop, clock=clock), loop, clock


def test_only_an_earlier_deadline_rearms_the_timer() -> None:
    server, loop, clock = make()
    timers = server.timers
    timers.schedule(clock.now + 10)
    timers.schedule(clock.now + 20)
    assert len(loop.handles) == 1
    timers.schedule(clock.now + 5)
    assert len(loop.live()) == 1
    assert loop.handles[0].cancelled
    assert 5 <= loop.live()[0].delay < 5.01


def test_an_idle_server_has_no_timer() -> None:
    server, loop, _ = make()
    server.timers.rearm()
    assert loop.handles == []
    assert server.timers.armed_at == float("inf")


def test_firing_handles_what_is_due_and_arms_for_the_next_deadline() -> None:
    from server_harness import FakeTransport

    from geanstalk.protocol import Connection

    server, loop, clock = make()
    conn = Connection(server)
    t = FakeTransport()
    conn.connection_made(t)
    sent = b"put 0 3 60 1\r\na\r\nput 0 7 60 1\r\nb\r\nreserve-with-timeout 5\r\n"
    assert talk(conn, t, sent) == b"INSERTED 1\r\nINSERTED 2\r\n"
    assert server.timers.armed_at == clock.now + 3
    clock.advance(3)
    (due,) = loop.live()
    due.cancelled = True  # consumed: it runs now
    due.callback()
    # Job 1 woke and went straight to the blocked reserve; its TTR is now
    # the latest deadline, job 2's wake (4 s from now) the earliest.
    assert t.take() == b"RESERVED 1 1\r\na\r\n"
    assert server.timers.armed_at == clock.now + 4
    assert len(loop.live()) == 1
