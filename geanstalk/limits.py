"""The resource bounds' counters, and a log that speaks at most once a second.

Each bound (--max-connections, --max-memory, --idle-timeout, and the accept
loop's pause when file descriptors run out) counts every time it is hit in a
``BoundCounters`` the Server facade owns (``server.bounds``), so the metrics
endpoint can read them. Hitting a bound is logged, but a flood of refused
connections must not turn into a flood of log lines (beanstalkd 1.12 logs
``accept(): Too many open files`` about a million times in five seconds):
``RateLimitedLog`` writes the first occurrence at once and then at most one
line per interval, saying how many it left out.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger("geanstalk")


class BoundCounters:
    """How often each resource bound was hit since the server started."""

    __slots__ = ("accept_pauses", "connections_refused", "idle_closed", "puts_out_of_memory")

    def __init__(self) -> None:
        # Accepting paused because file descriptors (or kernel memory) ran out.
        self.accept_pauses = 0
        # Connections accepted and closed at once by --max-connections.
        self.connections_refused = 0
        # Connections closed by --idle-timeout.
        self.idle_closed = 0
        # Puts answered OUT_OF_MEMORY by --max-memory.
        self.puts_out_of_memory = 0

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


class RateLimitedLog:
    """A warning that is written at most once per interval."""

    __slots__ = ("_clock", "_interval", "_last", "_suppressed")

    def __init__(self, interval: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = interval
        self._clock = clock
        self._last = -interval - 1.0
        self._suppressed = 0

    def warning(self, msg: str, *args: object) -> bool:
        """Log msg % args unless a line went out less than interval ago; True if it did."""
        now = self._clock()
        if now - self._last < self._interval:
            self._suppressed += 1
            return False
        self._last = now
        if self._suppressed:
            log.warning(msg + " (%d more since the last such line)", *args, self._suppressed)
            self._suppressed = 0
        else:
            log.warning(msg, *args)
        return True
