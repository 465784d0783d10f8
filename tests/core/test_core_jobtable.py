"""JobTable beyond its contract suite (test_core_contracts.py), on both implementations:
impostors, value types, the hashing under many id patterns, equality, GC support."""

from __future__ import annotations

import gc
import random
import weakref
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geanstalk import _core_py
from geanstalk.errors import JobAlreadyExists, JobMissing

# Both implementations (the compiled one when built: the ``impl`` tests
# report it missing), for the hypothesis tests, which cannot take the
# function-scoped ``impl`` fixture.
IMPLS: list[ModuleType] = [_core_py]
try:
    from geanstalk import _core as _compiled_core
except ImportError:
    pass
else:
    IMPLS.insert(0, _compiled_core)


class Holder:
    """Weak-referenceable, like a server's tube or connection that a job points to."""


def test_repr(impl: ModuleType) -> None:
    table = impl.JobTable()
    assert repr(table) == "<JobTable of 0 jobs>"
    table.add(impl.Job(1))
    assert repr(table) == "<JobTable of 1 jobs>"


def test_an_impostor_with_a_held_id_is_not_held(impl: ModuleType) -> None:
    table = impl.JobTable()
    job = impl.Job(7)
    table.add(job)
    with pytest.raises(JobMissing):
        table.remove(impl.Job(7))  # the id is there, this job is not
    assert impl.Job(7) not in table
    assert table.get(7) is job


def test_wrong_types(impl: ModuleType) -> None:
    table = impl.JobTable()
    table.add(impl.Job(1))
    for bad in ("1", 1.0, None, True):
        with pytest.raises(TypeError):
            table.get(bad)
        with pytest.raises(TypeError):
            table.pop(bad)
        with pytest.raises(TypeError):
            table[bad]
        assert bad not in table
    for bad in (1, "job", None):
        with pytest.raises(TypeError):
            table.add(bad)
        with pytest.raises(TypeError):
            table.remove(bad)


@pytest.mark.parametrize(
    "make_id",
    [
        lambda i: i + 1,  # a server's ids
        lambda i: i << 32,  # all in one home slot under identity hashing
        lambda i: 2**64 - 1 - i,  # the top of the range
        lambda i: random.Random(i).getrandbits(64),  # anywhere
    ],
    ids=["consecutive", "strided", "top", "random"],
)
def test_growth_and_shrinking(impl: ModuleType, make_id) -> None:
    rng = random.Random(3)
    table = impl.JobTable()
    ids = list(dict.fromkeys(make_id(i) for i in range(3000)))
    jobs = {i: impl.Job(i) for i in ids}
    for job in jobs.values():
        table.add(job)
    assert len(table) == len(ids)
    rng.shuffle(ids)
    gone, kept = ids[:2950], ids[2950:]
    for n, job_id in enumerate(gone):
        if n % 2:
            assert table.pop(job_id) is jobs[job_id]
        else:
            table.remove(jobs[job_id])
        if n % 500 == 0:  # spot checks while the table shrinks
            assert all(table.get(i) is jobs[i] for i in kept)
    assert all(table.get(i) is None and i not in table for i in gone)
    assert sorted(j.id for j in table) == sorted(kept)
    for job_id in gone[:200]:  # and it grows again
        table.add(jobs[job_id])
    assert all(table[i] is jobs[i] for i in gone[:200] + kept)
    assert len(table) == 200 + len(kept)


def test_a_sliding_window_of_ids(impl: ModuleType) -> None:
    """A server's pattern: new ids keep arriving while old ones leave."""
    rng = random.Random(5)
    table = impl.JobTable()
    live: dict[int, object] = {}
    for job_id in range(1, 20001):
        job = impl.Job(job_id)
        table.add(job)
        live[job_id] = job
        if len(live) > 300:
            victim = rng.choice(list(live)[:50])
            assert table.pop(victim) is live.pop(victim)
        if job_id % 5000 == 0:
            assert table == live
            assert victim not in table


def test_iteration_is_a_snapshot(impl: ModuleType) -> None:
    table = impl.JobTable()
    for i in range(10):
        table.add(impl.Job(i))
    seen = []
    for job in table:
        seen.append(job.id)
        table.pop(job.id)
    assert sorted(seen) == list(range(10)) and not table


def test_clear_and_reuse(impl: ModuleType) -> None:
    table = impl.JobTable()
    jobs = [impl.Job(i) for i in range(100)]
    for job in jobs:
        table.add(job)
    table.clear()
    assert len(table) == 0 and list(table) == [] and 5 not in table
    table.add(jobs[5])
    assert table[5] is jobs[5] and len(table) == 1


def test_equality_with_dicts_and_tables(impl: ModuleType) -> None:
    a, b = impl.JobTable(), impl.JobTable()
    job = impl.Job(3)
    assert a == {} and a == b
    a.add(job)
    assert a == {3: job} and a != {} and a != {3: impl.Job(3)} and a != b
    b.add(job)
    assert a == b
    assert a != [job] and a != 3
    with pytest.raises(TypeError):
        hash(a)


def test_a_dropped_table_releases_its_jobs(impl: ModuleType) -> None:
    holder = Holder()
    table = impl.JobTable()
    job = impl.Job(1)
    job.tube = holder
    table.add(job)
    alive = weakref.ref(holder)
    del holder, job, table  # no cycle: reference counting alone frees it all
    assert alive() is None


def test_reference_cycles_through_a_table_are_collected(impl: ModuleType) -> None:
    """storage -> table -> job -> client -> ... -> storage is the server's usual cycle."""
    holder = Holder()
    holder.table = impl.JobTable()  # type: ignore[attr-defined]
    for i in range(3):
        job = impl.Job(i)
        job.reserver = holder  # holder -> table -> job -> holder
        holder.table.add(job)  # type: ignore[attr-defined]
    alive = weakref.ref(holder)
    del holder, job
    gc.collect()
    assert alive() is None


def test_a_job_in_a_table_can_be_in_a_heap_too(impl: ModuleType) -> None:
    """The server's layout: every job in the registry, and in one heap."""
    table, heap = impl.JobTable(), impl.JobHeap()
    jobs = [impl.Job(i, priority=9 - i) for i in range(10)]
    for job in jobs:
        table.add(job)
        heap.push(job)
    assert heap.pop() is jobs[9] and table[9] is jobs[9]
    heap.remove(table.pop(4))
    assert len(heap) == 8 and len(table) == 9


@settings(max_examples=150, deadline=None)
@given(
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("add"), st.integers(0, 2**64 - 1)),
            st.tuples(st.just("add"), st.integers(1, 400)),
            st.tuples(st.just("remove"), st.integers(0, 50)),
            st.tuples(st.just("reserve"), st.integers(0, 5000)),
        ),
        max_size=120,
    )
)
def test_reserve_changes_nothing_but_room(ops: list[tuple[str, int]]) -> None:
    """reserve(n) at any point, of any size, against a dict model: the table
    holds exactly the model's jobs afterwards, and grows or shrinks as before."""
    for impl in IMPLS:
        table = impl.JobTable()
        model: dict[int, object] = {}
        for op, arg in ops:
            if op == "add":
                if arg in model:
                    with pytest.raises(JobAlreadyExists):
                        table.add(impl.Job(arg))
                else:
                    model[arg] = job = impl.Job(arg)
                    table.add(job)
            elif op == "remove":
                if model:
                    victim = sorted(model)[arg % len(model)]
                    assert table.pop(victim) is model.pop(victim)
            else:
                table.reserve(len(table) + arg)
            assert len(table) == len(model)
        assert table == model
        assert all(table[i] is job for i, job in model.items())


def test_reserve_refuses_nonsense(impl: ModuleType) -> None:
    table = impl.JobTable()
    table.add(impl.Job(5))
    with pytest.raises(ValueError):
        table.reserve(-1)
    with pytest.raises(OverflowError):
        table.reserve(1 << 41)
    table.reserve(0)  # never shrinks: the job is still there
    table.reserve(100_000)
    assert table.get(5) is not None and len(table) == 1
