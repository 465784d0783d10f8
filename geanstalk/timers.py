"""DelayService + TTRService: everything the clock does, driven by ONE timer.

The earliest of four deadlines arms a single loop.call_later handle: the
next delayed job's wake time (the storage's TubeHeap of delay heaps), the
next TTR deadline (the storage's heap of reserved jobs), the next pause end,
and the next blocked reserve's timeout or safety margin (the lock service).
Scheduling an earlier deadline re-arms the handle; a later one is left for
the re-arm that follows every firing, so the hot path (a reserve pushing a
TTR deadline far in the future) costs one comparison. There is no periodic
tick: an idle server has no timer armed at all.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from geanstalk.storage import INF

if TYPE_CHECKING:
    from geanstalk.storage import StorageService
    from geanstalk.waiters import LockService

log = logging.getLogger("geanstalk")

# Fire a little late rather than early: a TTR deadline must be strictly
# passed, and uvloop's timers have millisecond resolution.
SLACK = 0.001


class TimerService:
    """The single timer behind delays, TTR expiry, pauses and reserve timeouts."""

    def __init__(
        self,
        loop: Any,
        storage: StorageService,
        lock: LockService,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.loop = loop
        self.storage = storage
        self.lock = lock
        self.clock = clock
        self._handle: Any = None
        self._when = INF

    @property
    def armed_at(self) -> float:
        """When the timer fires next (inf: not armed); for tests and stats."""
        return self._when

    def schedule(self, when: float) -> None:
        """Make sure the timer fires no later than ``when``."""
        if when >= self._when:
            return
        if self._handle is not None:
            self._handle.cancel()
        self._when = when
        self._handle = self.loop.call_later(max(0.0, when - self.clock()) + SLACK, self.fire)

    def fire(self) -> None:
        """Do everything that is due, in the reference's order, then re-arm."""
        self._handle = None
        self._when = INF
        try:
            now = self.clock()
            storage = self.storage
            storage.wake_delayed(now)
            storage.unpause_due(now)
            self.lock.expire(now)
            storage.expire_ttr(now)
        except Exception:
            log.exception("timer: unexpected error")
        finally:
            self.rearm()

    def next_wake(self) -> float:
        """The earliest of the four deadlines (inf: none)."""
        storage = self.storage
        return min(
            storage.next_delay(),
            storage.next_pause(),
            self.lock.next_wake(),
            storage.next_ttr(),
        )

    def rearm(self) -> None:
        nxt = self.next_wake()
        if nxt < INF:
            self.schedule(nxt)

    def catch_up(self) -> None:
        """After the clock jumped forward: do at once what is due, and re-arm
        from the new time (the armed handle was computed from the old one)."""
        self.close()
        self.fire()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = None
        self._when = INF
