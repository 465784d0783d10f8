"""In-process harness for the server's tests.

Connection objects run against a real Server facade on an event loop that is
never started, with a clock the test moves by hand and a fake transport that
records what would have been sent. That makes timing behaviour (TTR, delays,
pauses, timeouts) testable without sleeping; the socket tests beside it
check the same things over real bytes.
"""

from __future__ import annotations

import asyncio
from typing import Any

from geanstalk.protocol import Connection
from geanstalk.server import Server


class Clock:
    """A monotonic clock that only moves when the test says so."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeTransport:
    """Enough of an asyncio transport for Connection: records writes."""

    def __init__(self, high_water: int = 64 * 1024) -> None:
        self.sent = bytearray()
        self.unsent = 0  # bytes "the peer has not read"; tests set it
        self.closed = False
        self.aborted = False
        self.reading = True
        self.on_close: Any = None  # called once, as the loop would call connection_lost

    def write(self, data: bytes) -> None:
        assert not self.closed
        self.sent += data

    def get_write_buffer_size(self) -> int:
        return self.unsent

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 4242) if name == "peername" else default

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        if not self.closed and self.on_close is not None:
            self.on_close()
        self.closed = True

    def abort(self) -> None:
        self.closed = self.aborted = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def take(self) -> bytes:
        data = bytes(self.sent)
        self.sent.clear()
        return data


class Harness:
    """A Server plus helpers to open connections and run the loop's callbacks."""

    def __init__(self, **kw: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.clock = Clock()
        self.server = Server(self.loop, clock=self.clock, **kw)

    def connect(self) -> tuple[Connection, FakeTransport]:
        conn = Connection(self.server)
        transport = FakeTransport()
        transport.on_close = lambda: self.loop.call_soon(conn.connection_lost, None)
        conn.connection_made(transport)
        return conn, transport

    def run_callbacks(self) -> None:
        """Run what the connections scheduled with call_soon (not timers)."""
        self.loop.call_soon(self.loop.stop)
        self.loop.run_forever()

    def advance(self, seconds: float) -> None:
        """Move the clock and fire the server's timer if it is due by now."""
        self.clock.advance(seconds)
        timers = self.server.timers
        if timers.armed_at <= self.clock.now:
            timers.fire()
        self.run_callbacks()

    def close(self) -> None:
        self.server.timers.close()
        self.loop.close()


def talk(conn: Connection, transport: FakeTransport, data: bytes) -> bytes:
    conn.data_received(data)
    return transport.take()
