"""A geanstalk server inside the test's own process, its event loop in a background thread.

The loop runs in a thread so that blocking clients (greenstalk, pystalk) can
talk to it from the test body. Its clock is ``time.monotonic()`` plus an
offset that :meth:`InProcessServer.advance` moves: every deadline the server
keeps (delays, TTRs, pauses, reserve timeouts, the DEADLINE_SOON margin) and
every time it reports (``age``, ``time-left``, ``pause-time-left``,
``uptime``) follows that clock, so advancing it is the same, to the client, as
waiting. The binlog stores wall-clock times: a record written after an
advance carries the advanced time (a server restarted on that log, on the real
clock, sees it that much later).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

# advance() stops at each deadline on the way, so a job reserved again at a
# TTR's end gets its new deadline from that moment; this many stops at most.
MAX_STEPS = 1_000_000
# A TTR has ended once its deadline has strictly passed: a stop lands this
# much after the deadline (the server's own timer fires 1 ms late too).
STEP_SLACK = 0.001
START_TIMEOUT = 30.0
# Loop iterations advance() lets pass first (each polls the sockets once).
SETTLE_ITERATIONS = 3


class OffsetClock:
    """time.monotonic() plus the seconds advance() has added."""

    __slots__ = ("offset",)

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset


class InProcessServer:
    """One server on a loopback port (or a unix socket) in this process.

    ``host``, ``port`` and ``address`` (the ``(host, port)`` tuple clients
    take; the path for a unix socket) say where it listens. Start it with
    :meth:`start` (the fixtures do), stop it with :meth:`stop`; after stop no
    thread of it is left and its port is closed.
    """

    def __init__(self, config: Any) -> None:
        self.config = config
        self.clock = OffsetClock()
        self.runner: Any = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.unix_path: str | None = None
        self.host: str | None = None
        self.port: int | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    @property
    def address(self) -> Any:
        """``(host, port)``, or the socket path for a unix socket."""
        return self.unix_path if self.unix_path is not None else (self.host, self.port)

    def __repr__(self) -> str:
        return f"<InProcessServer {self.address!r}>"

    # --- start and stop ---------------------------------------------------------

    def _bind(self) -> socket.socket:
        cfg = self.config
        if cfg.listen.startswith("unix:"):
            path = cfg.listen[len("unix:") :]
            if os.path.exists(path):
                os.unlink(path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(path)
            self.unix_path = path
        else:
            family = socket.AF_INET6 if ":" in cfg.listen else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((cfg.listen, cfg.port))
            self.host, self.port = sock.getsockname()[:2]
        sock.listen(1024)
        sock.setblocking(False)
        return sock

    def start(self) -> InProcessServer:
        """Bind, start the loop thread, and return once the server accepts."""
        from geanstalk.runner import Runner

        sock = self._bind()
        try:
            self.loop = self._new_loop()
            self.runner = Runner(self.config, [sock], clock=self.clock, install_signals=False)
        except BaseException:
            sock.close()
            raise
        self._thread = threading.Thread(
            target=self._run, name=f"geanstalk-server-{self.port or self.unix_path}", daemon=True
        )
        self._thread.start()
        self._started.wait(START_TIMEOUT)
        if self._error is not None:
            self._thread.join(START_TIMEOUT)
            raise RuntimeError(f"geanstalk server did not start: {self._error!r}") from self._error
        if not self._started.is_set():
            raise RuntimeError("geanstalk server did not start within 30 s")
        return self

    def _new_loop(self) -> asyncio.AbstractEventLoop:
        if self.config.uvloop:
            try:
                import uvloop
            except ImportError:
                pass
            else:
                return uvloop.new_event_loop()  # type: ignore[no-any-return]
        return asyncio.new_event_loop()

    def _run(self) -> None:
        loop = self.loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._main())
            loop.run_until_complete(loop.shutdown_asyncgens())
        except BaseException as exc:
            if not self._started.is_set():
                self._error = exc
        finally:
            self._started.set()
            for sock in self.runner.sockets:
                sock.close()
            loop.close()

    async def _main(self) -> None:
        runner = self.runner
        try:
            await runner.start()
            self._started.set()
            await runner.wait()
        finally:
            await runner.stop()

    def stop(self) -> None:
        """Stop accepting, close every connection and the port, end the thread."""
        thread = self._thread
        if thread is None:
            return
        if thread.is_alive() and self.loop is not None and not self.loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                self.loop.call_soon_threadsafe(self.runner.request_stop, "test teardown")
        thread.join(START_TIMEOUT)
        if thread.is_alive():
            raise RuntimeError(f"{self!r}: the server thread did not stop")
        self._thread = None
        if self.unix_path is not None and os.path.exists(self.unix_path):
            os.unlink(self.unix_path)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # --- inside the loop --------------------------------------------------------

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn()`` in the server's loop thread and return its result."""
        if threading.current_thread() is self._thread:
            return fn()
        if not self.running or self.loop is None:
            raise RuntimeError(f"{self!r} is not running")
        done: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                done.set_result(fn())
            except BaseException as exc:
                done.set_exception(exc)

        self.loop.call_soon_threadsafe(run)
        return done.result(START_TIMEOUT)

    @property
    def server(self) -> Any:
        """The Server facade (for white-box tests; touch it through call())."""
        return self.runner.server

    def advance(self, seconds: float) -> None:
        """Move the server's clock ``seconds`` forward, as if that time had passed.

        Delays end, TTRs run out (the jobs come back ready), paused tubes
        resume, blocked reserves time out or answer DEADLINE_SOON, and ``age``
        and ``time-left`` move; in order, each at its own moment (a job that a
        TTR's end hands to a waiting client gets its new deadline from that
        moment). Nothing sleeps. Commands that clients sent before the call
        are read first; the replies the jump causes are written to the
        connections before advance returns.
        """
        if seconds < 0:
            raise ValueError("advance() moves the clock forward only")
        if threading.current_thread() is self._thread:
            self._advance(float(seconds))
            return
        if not self.running or self.loop is None:
            raise RuntimeError(f"{self!r} is not running")
        done = asyncio.run_coroutine_threadsafe(
            self._settle_then_advance(float(seconds)), self.loop
        )
        done.result(START_TIMEOUT)

    async def _settle_then_advance(self, seconds: float) -> None:
        # Let the loop poll its sockets first, so that a command a client sent
        # before advance() (a blocking reserve from another thread, say) is
        # read, and waits, at the time it was sent rather than after the jump.
        for _ in range(SETTLE_ITERATIONS):
            await asyncio.sleep(0)
        self._advance(seconds)

    def _advance(self, seconds: float) -> None:
        server = self.runner.server
        clock = self.clock
        target = clock() + seconds
        for _ in range(MAX_STEPS):
            nxt = server.next_timer()
            if nxt + STEP_SLACK >= target:
                break
            clock.offset += max(0.0, nxt + STEP_SLACK - clock())
            server.clock_moved()
        else:
            raise RuntimeError(f"advance({seconds}): more than {MAX_STEPS} timer stops")
        clock.offset += max(0.0, target - clock())
        server.clock_moved()
