"""A tube: its ready heap, delay heap, buried FIFO, pause state and counters.

A tube is plain data; storage.py performs every change to it so the
counters can never drift from the heaps. The buried list is an OrderedDict
(id -> job) because kick takes from the head and delete/kick-job remove
from the middle, both O(1).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

from geanstalk.core import JobHeap

if TYPE_CHECKING:
    from geanstalk.core import Job

# Jobs with a priority below this count as "urgent" in the stats.
URGENT_THRESHOLD = 1024

DEFAULT_TUBE = b"default"


class Tube:
    """One named queue. ``waiters`` holds blocked clients in arrival order."""

    __slots__ = (
        "buried",
        "cmd_delete",
        "cmd_pause",
        "delay",
        "index",
        "name",
        "pause",
        "ready",
        "reserved",
        "total_jobs",
        "unpause_at",
        "urgent",
        "using",
        "waiters",
        "watching",
    )

    def __init__(self, name: bytes) -> None:
        self.name = name
        # Jobs are found by id in the storage's JobTable, never in a tube's
        # heaps, so the heaps keep no id index (no upkeep on push and pop).
        self.ready = JobHeap(indexed=False)
        self.delay = JobHeap(indexed=False)
        self.buried: OrderedDict[int, Job] = OrderedDict()
        # Position in the server's tube list: list-tubes shows the reference's
        # order, which a swap-with-last removal produces.
        self.index = -1
        # pause: the requested pause in whole seconds, as stats-tube shows it;
        # unpause_at: the monotonic time it ends, 0.0 when the tube is not
        # paused (a "pause-tube t 0" still pauses, for an instant).
        self.pause = 0
        self.unpause_at = 0.0
        self.using = 0
        self.watching = 0
        self.waiters: dict[object, None] = {}
        self.urgent = 0
        self.reserved = 0
        self.total_jobs = 0
        self.cmd_delete = 0
        self.cmd_pause = 0

    def is_unused(self) -> bool:
        """True when nothing refers to the tube any more, so it must disappear."""
        return not (
            self.using
            or self.watching
            or self.reserved
            or len(self.ready)
            or len(self.delay)
            or self.buried
            or self.name == DEFAULT_TUBE
        )

    def __repr__(self) -> str:
        return f"Tube({self.name!r})"
