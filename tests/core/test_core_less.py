"""The comparator: strict lexicographic (runnable_at, priority, id), None first."""

from __future__ import annotations

import itertools
import math
from types import ModuleType

import pytest

U32 = 2**32 - 1
U64 = 2**64 - 1


def key(job) -> tuple:
    return (job.runnable_at is not None, job.runnable_at or 0.0, job.priority, job.id)


def test_none_sorts_before_any_time(impl: ModuleType) -> None:
    ready = impl.Job(9, priority=U32)
    timed = impl.Job(1, priority=0, runnable_at=-math.inf)
    assert impl.less(ready, timed)
    assert not impl.less(timed, ready)


def test_equal_times_fall_through_to_priority_then_id(impl: ModuleType) -> None:
    a = impl.Job(2, priority=1, runnable_at=5.0)
    b = impl.Job(1, priority=2, runnable_at=5.0)
    c = impl.Job(3, priority=1, runnable_at=5.0)
    assert impl.less(a, b) and not impl.less(b, a)
    assert impl.less(a, c) and not impl.less(c, a)


def test_priority_decides_before_id(impl: ModuleType) -> None:
    # The Go seed fell through to the id even when a's priority was larger.
    big_pri_small_id = impl.Job(1, priority=10)
    small_pri_big_id = impl.Job(2, priority=5)
    assert not impl.less(big_pri_small_id, small_pri_big_id)
    assert impl.less(small_pri_big_id, big_pri_small_id)


def test_priority_extremes(impl: ModuleType) -> None:
    lo, hi = impl.Job(5, priority=0), impl.Job(1, priority=U32)
    assert impl.less(lo, hi) and not impl.less(hi, lo)


def test_id_ties_and_extremes(impl: ModuleType) -> None:
    a, b = impl.Job(U64 - 1), impl.Job(U64)
    assert impl.less(a, b) and not impl.less(b, a)
    same = impl.Job(4)
    assert not impl.less(same, same)
    twin = impl.Job(4)
    assert not impl.less(same, twin) and not impl.less(twin, same)


def test_times_compare_as_floats(impl: ModuleType) -> None:
    early = impl.Job(2, runnable_at=1.0)
    late = impl.Job(1, runnable_at=1.0000000001)
    inf = impl.Job(0, runnable_at=math.inf)
    zero, minus_zero = impl.Job(2, runnable_at=0.0), impl.Job(1, runnable_at=-0.0)
    assert impl.less(early, late) and impl.less(late, inf) and not impl.less(inf, late)
    assert impl.less(minus_zero, zero)  # -0.0 == 0.0, so the id decides


def test_is_a_strict_total_order(impl: ModuleType) -> None:
    jobs = [
        impl.Job(i, priority=p, runnable_at=t)
        for i, (p, t) in enumerate(itertools.product([0, 1, U32], [None, 0.0, 2.5]))
    ]
    for a, b in itertools.product(jobs, repeat=2):
        assert impl.less(a, b) == (key(a) < key(b))


def test_less_rejects_non_jobs(impl: ModuleType) -> None:
    with pytest.raises(TypeError):
        impl.less(impl.Job(1), (0, 1))
    with pytest.raises(TypeError):
        impl.less(None, impl.Job(1))


def test_mutated_key_is_seen(impl: ModuleType) -> None:
    a, b = impl.Job(1, priority=5), impl.Job(2, priority=5)
    assert impl.less(a, b)
    a.priority = 6
    assert impl.less(b, a)
    b.runnable_at = 1.0
    assert impl.less(a, b)
