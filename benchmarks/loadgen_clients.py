"""Client connections of the load generator: one small state machine per kind of load.

Each worker process drives many connections from one epoll loop, so that 50
connections do not need 50 processes on a 2-core machine. A connection keeps
exactly the requests a real client would have in flight (one, or one batch of
pipelined puts) and checks every reply it counts: a benchmark that counts
error replies as work would flatter the server that fails fastest.

Sockets stay blocking: we only call recv() on a socket epoll says is readable,
and sendall() never stalls for long because every reply the server has to
write back while reading our requests is small.
"""

from __future__ import annotations

import selectors
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

# The send timestamp rides in the body, so latency needs no shared state
# between producer and consumer processes: CLOCK_MONOTONIC is system-wide.
STAMP_LEN = 20


class ProtocolMismatch(RuntimeError):
    """The server answered something the load generator did not expect."""


def put_command(body_size: int, stamp: int | None = None, ttr: int = 60) -> bytes:
    if stamp is None:
        body = b"x" * body_size
    else:
        head = b"%020d" % stamp
        body = head[:body_size] + b"x" * max(0, body_size - STAMP_LEN)
    return b"put 0 0 %d %d\r\n%s\r\n" % (ttr, body_size, body)


@dataclass
class Conn:
    """One client connection; subclasses decide what to send and how to read replies."""

    sock: socket.socket
    deadline: float
    max_ops: int
    ops: int = 0
    done: bool = False
    buf: bytes = b""

    def begin(self, now: float) -> None:
        raise NotImplementedError

    def feed(self, data: bytes, now: float) -> None:
        raise NotImplementedError

    @property
    def timed(self) -> bool:
        """Whether the loop must call tick() at wakeup() times, not only on replies."""
        return False

    def wakeup(self) -> float | None:
        """When this connection wants to act without a reply (pacing); None if not now."""
        return None

    def tick(self, now: float) -> None:
        """Called when the loop wakes up; only paced connections use it."""

    def _more(self, now: float) -> bool:
        return now < self.deadline and self.ops < self.max_ops


@dataclass
class PutConn(Conn):
    """`batch` puts per write, then wait for all their INSERTED replies (batch=1: one at a time)."""

    body_size: int = 100
    batch: int = 1
    request: bytes = b""

    def begin(self, now: float) -> None:
        self.request = put_command(self.body_size) * self.batch
        self.sock.sendall(self.request)

    def feed(self, data: bytes, now: float) -> None:
        buf = self.buf + data
        if buf.count(b"\r\n") < self.batch:
            self.buf = buf
            return
        if buf.count(b"INSERTED ") != self.batch or not buf.endswith(b"\r\n"):
            raise ProtocolMismatch(f"expected {self.batch} x INSERTED, got {buf[:200]!r}")
        self.buf = b""
        self.ops += self.batch
        if self._more(now):
            self.sock.sendall(self.request)
        else:
            self.done = True


@dataclass
class ReserveDeleteConn(Conn):
    """reserve-with-timeout 0, then delete the job; TIMED_OUT means the pre-fill ran out."""

    timeout: int = 0
    latencies: list[int] | None = None
    exhausted: bool = False
    deleting: bool = False

    def begin(self, now: float) -> None:
        self.sock.sendall(b"reserve-with-timeout %d\r\n" % self.timeout)

    @property
    def timed(self) -> bool:
        return self.latencies is not None

    def wakeup(self) -> float | None:
        # a consumer blocked in reserve stops at the deadline instead of waiting out its timeout
        return self.deadline if self.latencies is not None and not self.done else None

    def tick(self, now: float) -> None:
        if self.latencies is not None and now >= self.deadline and not self.deleting:
            self.done = True

    def feed(self, data: bytes, now: float) -> None:
        self.buf += data
        while not self.done:
            end = self.buf.find(b"\r\n")
            if end < 0:
                return
            line = self.buf[:end]
            if self.deleting:
                if line != b"DELETED":
                    raise ProtocolMismatch(f"expected DELETED, got {line[:200]!r}")
                self.buf = self.buf[end + 2 :]
                self.deleting = False
                self.ops += 1
                if self._more(time.monotonic()):
                    self.begin(now)
                else:
                    self.done = True
            elif line.startswith(b"RESERVED "):
                _, job_id, size = line.split(b" ")
                total = end + 2 + int(size) + 2
                if len(self.buf) < total:
                    return
                if self.latencies is not None:
                    sent = int(self.buf[end + 2 : end + 2 + STAMP_LEN])
                    self.latencies.append(time.monotonic_ns() - sent)
                self.buf = self.buf[total:]
                self.deleting = True
                self.sock.sendall(b"delete %s\r\n" % job_id)
            elif line == b"TIMED_OUT":
                self.buf = self.buf[end + 2 :]
                if self.latencies is not None and self._more(time.monotonic()):
                    self.begin(now)  # a consumer just waits again
                else:
                    self.exhausted = self.latencies is None
                    self.done = True
            else:
                raise ProtocolMismatch(f"expected RESERVED or TIMED_OUT, got {line[:200]!r}")


@dataclass
class ProducerConn(Conn):
    """Puts at a fixed pace (one request in flight), each body stamped with its send time.

    The first put goes out `phase` seconds after the start.
    """

    body_size: int = 100
    interval: float = 0.01
    phase: float = 0.0
    next_at: float = 0.0
    waiting: bool = False

    def begin(self, now: float) -> None:
        self.next_at = now + self.phase
        self.tick(now)

    @property
    def timed(self) -> bool:
        return True

    def wakeup(self) -> float | None:
        return None if self.waiting or self.done else self.next_at

    def tick(self, now: float) -> None:
        if self.waiting or self.done or now < self.next_at:
            return
        if not self._more(now):
            self.done = True
            return
        self.sock.sendall(put_command(self.body_size, time.monotonic_ns()))
        self.waiting = True
        self.next_at += self.interval

    def feed(self, data: bytes, now: float) -> None:
        self.buf += data
        if not self.buf.endswith(b"\r\n"):
            return
        if not self.buf.startswith(b"INSERTED "):
            raise ProtocolMismatch(f"expected INSERTED, got {self.buf[:200]!r}")
        self.buf = b""
        self.ops += 1
        self.waiting = False
        self.tick(now)


@dataclass
class WorkerReport:
    """What one worker process sends back to the coordinator."""

    ops: int = 0
    started: float = 0.0
    finished: float = 0.0
    exhausted: int = 0
    latencies_ns: list[int] = field(default_factory=list)
    error: str | None = None


def drive(conns: list[Conn], hard_stop: float) -> None:
    """Run every connection until all are done; raise if hard_stop passes first."""
    sel = selectors.DefaultSelector()
    try:
        now = time.monotonic()
        for c in conns:
            sel.register(c.sock, selectors.EVENT_READ, c)
            c.begin(now)
        active = sum(1 for c in conns if not c.done)
        paced = [c for c in conns if c.timed]
        while active:
            now = time.monotonic()
            if now > hard_stop:
                raise TimeoutError(f"{active} connections still busy at the hard stop")
            timeout = 0.25
            for c in paced:
                when = c.wakeup()
                if when is not None:
                    timeout = min(timeout, max(0.0, when - now))
            for key, _ in sel.select(timeout):
                c = key.data
                data = c.sock.recv(262144)
                if not data:
                    raise ProtocolMismatch("server closed the connection")
                c.feed(data, time.monotonic())
                if c.done:
                    sel.unregister(c.sock)
                    active -= 1
            if paced:
                now = time.monotonic()
                for c in paced:
                    if not c.done:
                        c.tick(now)
                        if c.done:
                            sel.unregister(c.sock)
                            active -= 1
    finally:
        sel.close()


def connect(address: tuple[str, int]) -> socket.socket:
    s = socket.create_connection(address, timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.settimeout(None)
    return s


def wait_until_serving(
    address: tuple[str, int], timeout: float = 30.0, alive: Callable[[], bool] | None = None
) -> None:
    """Return once the server answers a command, not merely accepts connections.

    A connection refused or reset is retried until the timeout: a server
    still starting up may drop the first connections it accepted.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            reply = _ask(address, b"list-tube-used\r\n", timeout)
            break
        except (ConnectionError, TimeoutError):
            if time.monotonic() > deadline or (alive is not None and not alive()):
                raise
            time.sleep(0.01)
    if not reply.startswith(b"USING "):
        raise ProtocolMismatch(f"expected USING, got {reply[:200]!r}")


def _ask(address: tuple[str, int], command: bytes, timeout: float) -> bytes:
    with socket.create_connection(address, timeout=timeout) as s:
        s.sendall(command)
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = s.recv(256)
            if not chunk:
                raise ConnectionResetError("closed before a reply")
            reply += chunk
    return reply
