"""The write-ahead journal as the storage sees it, and the journal used without -b.

Storage calls the journal at the same transitions the reference logs (put,
delete, bury, kick, release with a delay) and never waits for it: the
protocol layer holds a connection's replies until ``durable()`` has caught
up with ``pending()`` (see protocol.py), which is how "nothing acknowledged
is lost" costs nothing when there is no log.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from geanstalk.core import Job


class Journal(Protocol):
    """What storage.py writes through; geanstalk.binlog.Binlog implements it."""

    def put(self, job: Job) -> None: ...

    def update(self, job: Job) -> None: ...

    def delete(self, job: Job) -> None: ...

    def pending(self) -> int: ...

    def durable(self) -> int: ...

    def wait_durable(self, seq: int, callback: Callable[[], None]) -> None: ...

    def stats(self) -> dict[str, int]: ...

    async def close(self) -> None: ...


class NullJournal:
    """No -b: every record is "durable" at once, so no reply is ever held."""

    __slots__ = ("max_size",)

    def __init__(self, max_size: int = 10485760) -> None:
        # binlog-max-size is printed by the reference even without -b.
        self.max_size = max_size

    def put(self, job: Job) -> None:
        pass

    def update(self, job: Job) -> None:
        pass

    def delete(self, job: Job) -> None:
        pass

    def pending(self) -> int:
        return 0

    def durable(self) -> int:
        return 0

    def wait_durable(self, seq: int, callback: Callable[[], None]) -> None:
        callback()

    def stats(self) -> dict[str, int]:
        return {
            "binlog-oldest-index": 0,
            "binlog-current-index": 0,
            "binlog-records-migrated": 0,
            "binlog-records-written": 0,
            "binlog-max-size": self.max_size,
        }

    async def close(self) -> None:
        pass
