"""Invariant checks shared by the core tests (a plain module, not a test file).

Iterating a heap yields its array in slot order (a documented detail both
implementations share), which is what lets a test check the heap property.
"""

from __future__ import annotations

from typing import Any


def sort_key(job: Any) -> tuple:
    """The order less() defines, as a tuple, for models to sort by."""
    return (job.runnable_at is not None, job.runnable_at or 0.0, job.priority, job.id)


def check_heap(impl: Any, heap: Any) -> list:
    """Assert the heap property, the stored slots and the id index; return the array.

    A heap made with indexed=False has no id index to check, and may hold
    two jobs with one id.
    """
    items = list(heap)
    assert len(items) == len(heap)
    assert bool(heap) == bool(items)
    for pos, job in enumerate(items):
        assert job.heap_index == pos
        assert job in heap
        if heap.indexed:
            assert heap.get(job.id) is job
            assert job.id in heap
        if pos:
            assert not impl.less(job, items[(pos - 1) // 2])
    if heap.indexed:
        assert len({job.id for job in items}) == len(items)
    return items
