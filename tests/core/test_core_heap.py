"""JobHeap behaviour the contract suite (test_core_contracts.py) does not cover, on both
implementations: remove(job), one heap per job, slots, unindexed heaps, bulk methods, GC."""

from __future__ import annotations

import gc
import random
import weakref
from types import ModuleType

import pytest
from heap_checks import check_heap

from geanstalk.errors import EmptyQueue, JobAlreadyExists, JobMissing


def keys(jobs: list) -> list[tuple]:
    return [(j.runnable_at is not None, j.runnable_at or 0.0, j.priority, j.id) for j in jobs]


def drain(heap) -> list:
    out = []
    while heap:
        out.append(heap.pop())
    return out


def test_remove_and_remove_by_id(impl: ModuleType) -> None:
    heap = impl.JobHeap()
    jobs = [impl.Job(i, priority=i % 4) for i in range(1, 50)]
    for job in jobs:
        heap.push(job)
    heap.remove(jobs[10])
    assert heap.remove_by_id(20) is jobs[19]
    assert jobs[10] not in heap and 20 not in heap and jobs[10].heap_index == -1
    assert len(heap) == 47
    rest = [j for j in jobs if j.id not in (11, 20)]
    assert keys(drain(heap)) == sorted(keys(rest))


def test_remove_last_and_only(impl: ModuleType) -> None:
    heap = impl.JobHeap()
    job = impl.Job(1)
    heap.push(job)
    heap.remove(job)
    assert len(heap) == 0 and not heap
    with pytest.raises(EmptyQueue):
        heap.peek()


def test_remove_and_one_heap_per_job(impl: ModuleType) -> None:
    heap = impl.JobHeap()
    job = impl.Job(1)
    with pytest.raises(JobMissing):
        heap.remove(job)
    heap.push(job)
    with pytest.raises(JobAlreadyExists):
        heap.push(impl.Job(1))  # same id, another object
    assert impl.Job(1) not in heap  # an impostor with the id
    other = impl.JobHeap()
    with pytest.raises(JobAlreadyExists):
        other.push(job)  # a job lives in one heap at a time
    with pytest.raises(JobMissing):
        other.update(job)
    with pytest.raises(JobMissing):
        other.remove(job)
    assert len(heap) == 1 and len(other) == 0


def test_errors_are_the_documented_base_classes(impl: ModuleType) -> None:
    heap = impl.JobHeap()
    with pytest.raises(IndexError):
        heap.pop()
    with pytest.raises(KeyError):
        heap.remove_by_id(3)


def test_wrong_types_are_type_errors(impl: ModuleType) -> None:
    heap = impl.JobHeap()
    for call in (heap.push, heap.update, heap.remove):
        with pytest.raises(TypeError):
            call(object())
    for bad in ("1", 1.0, True, None):
        with pytest.raises(TypeError):
            heap.remove_by_id(bad)
        with pytest.raises(TypeError):
            heap.get(bad)


def test_lookups_of_odd_keys(impl: ModuleType) -> None:
    heap = impl.JobHeap()
    job = impl.Job(42)
    heap.push(job)
    assert heap.get(-1) is None and heap.get(2**70) is None
    assert "42" not in heap and None not in heap and True not in heap


def test_a_popped_job_can_move_to_another_heap(impl: ModuleType) -> None:
    a, b = impl.JobHeap(), impl.JobHeap()
    job = impl.Job(1)
    a.push(job)
    b.push(a.pop())
    assert b.peek() is job and job not in a
    b.remove_by_id(1)
    a.push(job)
    assert a.peek() is job


def test_iteration_is_a_snapshot(impl: ModuleType) -> None:
    heap = impl.JobHeap()
    jobs = [impl.Job(i) for i in range(10)]
    for job in jobs:
        heap.push(job)
    seen = []
    for job in heap:
        seen.append(job)
        heap.remove(job)
    assert sorted(j.id for j in seen) == list(range(10))
    assert len(heap) == 0


def test_clear(impl: ModuleType) -> None:
    heap = impl.JobHeap()
    jobs = [impl.Job(i) for i in range(100)]
    for job in jobs:
        heap.push(job)
    heap.clear()
    assert len(heap) == 0 and list(heap) == [] and 5 not in heap
    assert all(j.heap_index == -1 for j in jobs)
    heap.push(jobs[3])
    assert heap.pop() is jobs[3]


@pytest.mark.parametrize(
    "make_id",
    [
        lambda i: i + 1,  # consecutive, as a server hands them out
        lambda i: (i + 1) << 20,  # multiples of a power of two
        lambda i: 2**64 - 1 - i,  # the top of the range
        lambda i: random.Random(i).getrandbits(64),  # anywhere
    ],
    ids=["consecutive", "strided", "top", "random"],
)
def test_id_index_through_growth_and_shrinking(impl: ModuleType, make_id) -> None:
    rng = random.Random(3)
    heap = impl.JobHeap()
    ids = list(dict.fromkeys(make_id(i) for i in range(3000)))
    jobs = {i: impl.Job(i, priority=rng.randrange(4)) for i in ids}
    for job in jobs.values():
        heap.push(job)
    rng.shuffle(ids)
    gone, kept = ids[:2900], ids[2900:]
    for n, job_id in enumerate(gone):
        assert heap.remove_by_id(job_id) is jobs[job_id]
        if n % 500 == 0:  # spot checks while the table shrinks
            assert all(heap.get(i) is jobs[i] for i in kept)
    assert all(heap.get(i) is None and i not in heap for i in gone)
    assert sorted(j.id for j in heap) == sorted(kept)
    assert [j.id for j in drain(heap)] == [
        j.id for j in sorted((jobs[i] for i in kept), key=lambda j: (j.priority, j.id))
    ]
    for job_id in gone[:100]:  # and it grows again
        heap.push(jobs[job_id])
    assert all(heap.get(i) is jobs[i] for i in gone[:100])


def test_id_index_under_a_sliding_window_of_ids(impl: ModuleType) -> None:
    """A server's pattern: new ids keep arriving while old ones leave."""
    rng = random.Random(5)
    heap = impl.JobHeap()
    live: dict[int, object] = {}
    for job_id in range(1, 20001):
        job = impl.Job(job_id, priority=rng.randrange(3))
        heap.push(job)
        live[job_id] = job
        if len(live) > 300:
            victim = rng.choice(list(live)[:50])  # one of the oldest
            if rng.random() < 0.5:
                heap.remove(live.pop(victim))
            else:
                assert heap.remove_by_id(victim) is live.pop(victim)
        if job_id % 5000 == 0:
            assert all(heap.get(i) is job for i, job in live.items())
            assert heap.get(victim) is None and victim not in heap
    assert sorted(j.id for j in heap) == sorted(live)


def test_a_dropped_heap_releases_its_jobs(impl: ModuleType) -> None:
    heap = impl.JobHeap()
    jobs = [impl.Job(i) for i in range(5)]
    for job in jobs:
        heap.push(job)
    del heap
    gc.collect()
    assert all(job.heap_index == -1 for job in jobs)
    other = impl.JobHeap()
    for job in jobs:
        other.push(job)
    assert len(other) == 5


def test_reference_cycles_through_a_heap_are_collected(impl: ModuleType) -> None:
    class Tube:
        """Weak-referenceable, like a server's tube object holding its heap."""

    tube = Tube()
    tube.heap = impl.JobHeap()  # type: ignore[attr-defined]
    survivor = impl.Job(2)
    for job in (impl.Job(1), survivor):
        job.tube = tube  # the cycle: tube -> heap -> job -> tube
        tube.heap.push(job)  # type: ignore[attr-defined]
    alive = weakref.ref(tube)
    del tube, job
    survivor.tube = None
    gc.collect()
    assert alive() is None
    assert survivor.heap_index == -1


# --- JobHeap(indexed=False) ----------------------------------------------------------


def test_an_unindexed_heap_orders_updates_and_removes_as_usual(impl: ModuleType) -> None:
    rng = random.Random(11)
    heap = impl.JobHeap(indexed=False)
    assert heap.indexed is False and impl.JobHeap().indexed is True
    jobs = [impl.Job(i, priority=rng.randrange(50)) for i in range(500)]
    for job in jobs:
        heap.push(job)
    for job in rng.sample(jobs, 100):
        job.priority = rng.randrange(50)
        heap.update(job)
    removed = rng.sample(jobs, 100)
    for job in removed:
        heap.remove(job)
        assert job.heap_index == -1 and job not in heap
    assert all(job in heap for job in jobs if job not in removed)
    kept = sorted((j for j in jobs if j not in removed), key=lambda j: (j.priority, j.id))
    assert drain(heap) == kept


def test_an_unindexed_heap_refuses_id_lookups(impl: ModuleType) -> None:
    heap = impl.JobHeap(indexed=False)
    job = impl.Job(1)
    heap.push(job)
    for call in (
        lambda: heap.remove_by_id(1),
        lambda: heap.remove_many_by_id([1]),
        lambda: heap.get(1),
        lambda: 1 in heap,
    ):
        with pytest.raises(TypeError):
            call()
    assert job in heap and "x" not in heap
    with pytest.raises(JobAlreadyExists):
        heap.push(job)  # the job itself knows it is in a heap
    heap.push(impl.Job(1))  # another job with the same id is not noticed
    assert len(heap) == 2
    heap.clear()
    assert len(heap) == 0 and job.heap_index == -1


# --- reprioritize and remove_many_by_id ---------------------------------------------


def test_reprioritize_matches_one_update_at_a_time(impl: ModuleType) -> None:
    rng = random.Random(12)
    for _trial in range(30):
        one, many = impl.JobHeap(), impl.JobHeap()
        n = rng.randrange(1, 120)
        pairs = [(impl.Job(i), impl.Job(i)) for i in range(n)]
        for a, b in pairs:
            a.priority = b.priority = rng.randrange(10)
            one.push(a)
            many.push(b)
        work = [(i, rng.randrange(10)) for i in rng.choices(range(n), k=rng.randrange(n + 1))]
        for i, priority in work:
            pairs[i][0].priority = priority
            one.update(pairs[i][0])
        many.reprioritize((pairs[i][1], priority) for i, priority in work)  # any iterable
        check_heap(impl, many)
        assert [j.id for j in one] == [j.id for j in many]


def test_reprioritize_stops_at_the_first_bad_pair(impl: ModuleType) -> None:
    heap = impl.JobHeap()
    jobs = [impl.Job(i, priority=10) for i in range(5)]
    for job in jobs:
        heap.push(job)
    with pytest.raises(JobMissing):
        heap.reprioritize([(jobs[3], 0), (impl.Job(9), 0), (jobs[4], 0)])
    assert heap.peek() is jobs[3] and jobs[4].priority == 10  # done, not reached
    with pytest.raises(OverflowError):
        heap.reprioritize([(jobs[2], 1), (jobs[1], 2**32)])
    assert jobs[2].priority == 1 and jobs[1].priority == 10
    for bad in ([(jobs[0], 1, 2)], [jobs[0]], [("job", 1)]):
        with pytest.raises(TypeError):
            heap.reprioritize(bad)
    assert jobs[0].priority == 10  # refused before any change
    heap.reprioritize([])
    check_heap(impl, heap)
    assert [j.id for j in drain(heap)] == [3, 2, 0, 1, 4]


def test_remove_many_by_id(impl: ModuleType) -> None:
    heap = impl.JobHeap()
    jobs = {i: impl.Job(i, priority=i % 7) for i in range(50)}
    for job in jobs.values():
        heap.push(job)
    got = heap.remove_many_by_id(iter([7, 3, 40]))
    assert got == [jobs[7], jobs[3], jobs[40]]
    assert all(job.heap_index == -1 for job in got) and 3 not in heap
    with pytest.raises(JobMissing):
        heap.remove_many_by_id([5, 3, 6])  # 3 is gone already
    assert 5 not in heap and 6 in heap
    with pytest.raises(TypeError):
        heap.remove_many_by_id([6, "8"])
    assert 6 not in heap and 8 in heap  # removed before the bad id
    assert heap.remove_many_by_id([]) == []
    assert len(heap) == 50 - 5
    check_heap(impl, heap)
