"""LockService: connections blocked in reserve / reserve-with-timeout.

A blocked client sits in the ``waiters`` dict of every tube it watches, in
arrival order; when a job becomes ready in one of those tubes the client
that has waited longest gets it (beanstalkd serves waiters roughly in
arrival order too). A blocked client is also woken by the clock: with
TIMED_OUT when its reserve-with-timeout runs out, or with DEADLINE_SOON when
one of its own reservations enters the last second before its TTR deadline.
Those wake-ups live in one heap whose stale entries are skipped lazily, and
the timer service asks ``next_wake`` for the earliest.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import TYPE_CHECKING

from geanstalk.storage import INF, Client

if TYPE_CHECKING:
    from geanstalk.storage import StorageService
    from geanstalk.tube import Tube

# The last second before a reservation's TTR deadline.
SAFETY_MARGIN = 1.0

RESERVED = b"RESERVED"
TIMED_OUT = b"TIMED_OUT"
DEADLINE_SOON = b"DEADLINE_SOON"


class LockService:
    """Blocked reserves: who waits, in which order, and until when."""

    def __init__(self, storage: StorageService, clock: Callable[[], float]) -> None:
        self.storage = storage
        # Storage tells us when a tube with waiters gets a ready job.
        storage.on_waiters_ready = self.process_queue
        self.clock = clock
        self.schedule: Callable[[float], None] = lambda when: None
        self.waiting = 0
        self._wakes: list[tuple[float, int, Client]] = []
        self._seq = 0

    @staticmethod
    def deadline_soon(client: Client, now: float) -> bool:
        """The reference's conndeadlinesoon: a reservation is inside its safety margin."""
        return bool(client.reserved) and now >= client.soonest_deadline() - SAFETY_MARGIN

    def wait(self, client: Client, timeout: float | None) -> None:
        """Block client until a job, its timeout, or its DEADLINE_SOON."""
        now = self.clock()
        client.waiting = True
        self.waiting += 1
        for t in client.watch:
            t.waiters[client] = None
        timeout_at = INF if timeout is None else now + timeout
        client.wait_timeout_at = timeout_at
        wake = min(timeout_at, client.soonest_deadline() - SAFETY_MARGIN)
        self._seq += 1
        client.wait_token = self._seq
        if wake < INF:
            heapq.heappush(self._wakes, (wake, self._seq, client))
            self.schedule(wake)
        # A job may already be ready in a watched tube (the caller checks
        # first, so normally none is); serve in the reference's order.
        for t in client.watch:
            if client.waiting and len(t.ready):
                self.process_queue(t)

    def stop_waiting(self, client: Client) -> None:
        if not client.waiting:
            return
        client.waiting = False
        client.wait_token = 0
        self.waiting -= 1
        for t in client.watch:
            t.waiters.pop(client, None)

    def process_queue(self, t: Tube) -> None:
        """Hand t's ready jobs to t's waiters, longest-waiting first."""
        storage = self.storage
        ready = t.ready
        waiters = t.waiters
        while waiters and len(ready):
            if t.unpause_at and storage.paused(t):
                return
            client = next(iter(waiters))
            self.stop_waiting(client)
            job = storage.reserve_ready(client, ready.peek())
            client.wake(job, RESERVED)

    def expire(self, now: float) -> None:
        """Wake the blocked clients whose timeout or safety margin has come."""
        wakes = self._wakes
        while wakes and wakes[0][0] <= now:
            _, seq, client = heapq.heappop(wakes)
            if not client.waiting or client.wait_token != seq:
                continue
            word = DEADLINE_SOON if self.deadline_soon(client, now) else TIMED_OUT
            self.stop_waiting(client)
            client.wake(None, word)

    def cancel(self, client: Client, word: bytes = TIMED_OUT) -> None:
        """End a wait early (the client half-closed its connection)."""
        if client.waiting:
            self.stop_waiting(client)
            client.wake(None, word)

    def next_wake(self) -> float:
        wakes = self._wakes
        while wakes:
            when, seq, client = wakes[0]
            if client.waiting and client.wait_token == seq:
                return when
            heapq.heappop(wakes)
        return INF
