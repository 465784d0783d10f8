"""Small list-based implementations of the core's interfaces, correct and broken.

The contract tests copy this file into a pytester directory and run the public
suites against each class, as a user with their own implementation would.
Each broken class carries one bug, and the rule it breaks in ``BREAKS``.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

from geanstalk.errors import EmptyQueue, JobAlreadyExists, JobMissing


def order_key(job: Any) -> tuple:
    return (job.runnable_at is not None, job.runnable_at or 0.0, job.priority, job.id)


def atomic(cls: type) -> type:
    """Every public method of cls (and __len__, __contains__, __iter__) under one lock."""
    for name, fn in list(vars(cls).items()):
        if callable(fn) and (
            not name.startswith("_") or name in ("__len__", "__contains__", "__iter__")
        ):

            def locked(self: Any, *args: Any, __fn: Any = fn) -> Any:
                with self.lock:
                    return __fn(self, *args)

            setattr(cls, name, functools.wraps(fn)(locked))
    return cls


@atomic
class ListQueue:
    """A correct queue: each job beside the key it had when pushed or last updated."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.keys: dict[int, tuple] = {}
        self.jobs: dict[int, Any] = {}

    def _key(self, job: Any) -> tuple:
        return order_key(job)

    def push(self, job: Any) -> None:
        if job.id in self.jobs:
            raise JobAlreadyExists(job.id)
        self.jobs[job.id] = job
        self.keys[job.id] = self._key(job)

    def _head_id(self) -> int:
        return min(self.keys, key=self.keys.__getitem__)

    def pop(self) -> Any:
        if not self.keys:
            raise EmptyQueue("empty")
        job_id = self._head_id()
        del self.keys[job_id]
        return self.jobs.pop(job_id)

    def peek(self) -> Any:
        if not self.keys:
            raise EmptyQueue("empty")
        return self.jobs[self._head_id()]

    def update(self, job: Any) -> None:
        if self.jobs.get(job.id) is not job:
            raise JobMissing(job.id)
        self.keys[job.id] = self._key(job)

    def remove_by_id(self, job_id: int) -> Any:
        if job_id not in self.jobs:
            raise JobMissing(job_id)
        del self.keys[job_id]
        return self.jobs.pop(job_id)

    def get(self, job_id: int, default: Any = None) -> Any:
        return self.jobs.get(job_id, default)

    def __len__(self) -> int:
        return len(self.keys)

    def __contains__(self, item: Any) -> bool:
        if isinstance(item, int):
            return item in self.jobs
        return self.jobs.get(getattr(item, "id", None)) is item

    def __iter__(self):
        return iter(list(self.jobs.values()))


class WrongTieBreak(ListQueue):
    """Equal keys go to the higher id."""

    def _key(self, job: Any) -> tuple:
        return (*order_key(job)[:3], -job.id)


class UpdateDoesNothing(ListQueue):
    def update(self, job: Any) -> None:
        if self.jobs.get(job.id) is not job:
            raise JobMissing(job.id)


class StaleIndex(ListQueue):
    """remove_by_id takes the job out of the order but not out of the id index."""

    def remove_by_id(self, job_id: int) -> Any:
        if job_id not in self.jobs:
            raise JobMissing(job_id)
        del self.keys[job_id]
        return self.jobs[job_id]

    def push(self, job: Any) -> None:
        if job.id in self.jobs and job.id in self.keys:
            raise JobAlreadyExists(job.id)
        if job.id in self.jobs:
            raise JobAlreadyExists(job.id)  # the stale entry refuses the id
        super().push(job)


class PopNone(ListQueue):
    def pop(self) -> Any:
        if not self.keys:
            return None
        return super().pop()


class DuplicateAccepted(ListQueue):
    def push(self, job: Any) -> None:
        self.jobs[job.id] = job
        self.keys[job.id] = self._key(job)


BREAKS = {
    "WrongTieBreak": "order.tie-break",
    "UpdateDoesNothing": "update.moves",
    "StaleIndex": "remove.forgets",
    "PopNone": "pop.empty",
    "DuplicateAccepted": "push.duplicate",
}


class ListRegistry:
    """A correct registry over a dict."""

    def __init__(self) -> None:
        self.jobs: dict[int, Any] = {}

    def add(self, job: Any) -> None:
        if job.id in self.jobs:
            raise JobAlreadyExists(job.id)
        self.jobs[job.id] = job

    def get(self, job_id: Any, default: Any = None) -> Any:
        return self.jobs.get(job_id, default)

    def __getitem__(self, job_id: Any) -> Any:
        return self.jobs[job_id]

    def pop(self, job_id: Any) -> Any:
        if job_id not in self.jobs:
            raise JobMissing(job_id)
        return self.jobs.pop(job_id)

    def remove(self, job: Any) -> None:
        if self.jobs.get(job.id) is not job:
            raise JobMissing(job.id)
        del self.jobs[job.id]

    def largest_id(self) -> int | None:
        return max(self.jobs, default=None)

    def __len__(self) -> int:
        return len(self.jobs)

    def __contains__(self, item: Any) -> bool:
        if isinstance(item, int):
            return item in self.jobs
        return self.jobs.get(getattr(item, "id", None)) is item

    def __iter__(self):
        return iter(list(self.jobs.values()))


class LargestIdNeverShrinks(ListRegistry):
    """Keeps a running maximum that removals do not lower."""

    def __init__(self) -> None:
        super().__init__()
        self.largest: int | None = None

    def add(self, job: Any) -> None:
        super().add(job)
        if self.largest is None or job.id > self.largest:
            self.largest = job.id

    def largest_id(self) -> int | None:
        return self.largest if self.jobs else None


class ZeroIsNoId(ListRegistry):
    """Takes id 0 for "no job", as a C table keyed by id might."""

    def get(self, job_id: Any, default: Any = None) -> Any:
        return self.jobs.get(job_id, default) if job_id else default

    def __contains__(self, item: Any) -> bool:
        return bool(item) and super().__contains__(item)
