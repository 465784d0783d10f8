"""The write-ahead journal as the storage sees it, and the journal used without -b.

Storage calls the journal at the same transitions the reference logs (put,
delete, bury, kick, release with a delay) and never waits for it: the
protocol layer holds a connection's replies until ``durable()`` has caught
up with ``pending()`` (see protocol.py), which is how "nothing acknowledged
is lost" costs nothing when there is no log.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

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


def _seq_of(waiter: tuple[int, Callable[[], object]]) -> int:
    return waiter[0]


class DurabilityWaiters:
    """Callbacks held until the journal's durable mark reaches their record.

    Both journals (the binlog and the cluster's etcd journal) release held
    replies this way: in record order, at most one waiter per held
    connection, so a scan on release is cheap; usually waiters arrive in
    order and all are released at once, which needs no sort.
    """

    __slots__ = ("_loop", "_max", "_sorted", "_waiters", "_what")

    def __init__(self, loop: Any, what: str) -> None:
        self._loop = loop
        self._what = what  # named in the error a failing callback logs
        self._waiters: list[tuple[int, Callable[[], object]]] = []
        self._max = 0  # highest seq waited for
        self._sorted = True  # appended in seq order (the usual case)

    def __bool__(self) -> bool:
        return bool(self._waiters)

    def __len__(self) -> int:
        return len(self._waiters)

    def add(self, seq: int, callback: Callable[[], object]) -> None:
        self._waiters.append((seq, callback))
        if seq >= self._max:
            self._max = seq
        else:
            self._sorted = False

    def release(self, seq: int) -> None:
        """Run, in record order, the callbacks waiting for records up to seq."""
        waiters = self._waiters
        if not waiters:
            return
        if self._max <= seq:  # the usual case: everyone is released
            self._waiters = []
            self._max = 0
            due = waiters
            if not self._sorted:
                due.sort(key=_seq_of)
                self._sorted = True
        else:
            due = [w for w in waiters if w[0] <= seq]
            if not due:
                return
            self._waiters = [w for w in waiters if w[0] > seq]
            due.sort(key=_seq_of)
        for _, callback in due:
            try:
                callback()
            except Exception as exc:
                self._loop.call_exception_handler(
                    {"message": f"{self._what} durability callback failed", "exception": exc}
                )


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
