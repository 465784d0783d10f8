"""--idle-timeout: close connections that have done nothing for too long.

A connection counts as idle while it sends no command, holds no reserved job
and has no reserve blocked; the reference has no such timeout (and it is off
by default here too), so a forgotten client holds its socket, its buffers and
its tubes for ever. One timer sweeps every connection a few times per
timeout, instead of a timer per connection that every command would have to
push back: the command path only sets a flag (Connection.close_if_idle says
how the sweep reads it). A connection is closed between timeout and
timeout plus one sweep interval after it went quiet.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from geanstalk.server import Server

log = logging.getLogger("geanstalk")

# Sweeps per timeout, and the bounds on the interval between sweeps.
SWEEPS_PER_TIMEOUT = 4
MIN_INTERVAL = 0.25
MAX_INTERVAL = 5.0


class IdleSweeper:
    """Closes the server's idle connections; start() it, stop() it."""

    def __init__(self, server: Server, timeout: float) -> None:
        self.server = server
        self.timeout = timeout
        self.interval = min(MAX_INTERVAL, max(MIN_INTERVAL, timeout / SWEEPS_PER_TIMEOUT))
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        log.info("idle timeout %g s (swept every %g s)", self.timeout, self.interval)
        self._handle = self.server.loop.call_later(self.interval, self._sweep)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def sweep(self) -> int:
        """One pass over the connections; returns how many it closed."""
        now = self.server.clock()
        timeout = self.timeout
        closed = 0
        for conn in list(self.server.connections):
            close_if_idle = getattr(conn, "close_if_idle", None)
            if close_if_idle is not None and close_if_idle(now, timeout):
                closed += 1
        if closed:
            self.server.bounds.idle_closed += closed
            log.warning(
                "closed %d idle connections (--idle-timeout %g s); %d so far",
                closed,
                timeout,
                self.server.bounds.idle_closed,
            )
        return closed

    def _sweep(self) -> None:
        try:
            self.sweep()
        finally:
            if self._handle is not None:
                self._handle = self.server.loop.call_later(self.interval, self._sweep)
