"""TubeHeap: named heaps ordered by their top jobs, empty heaps last."""

from __future__ import annotations

from types import ModuleType

import pytest

from geanstalk.errors import EmptyQueue, QueueAlreadyExists, QueueMissing


def test_peek_follows_the_earliest_top_job(impl: ModuleType) -> None:
    tubes = impl.TubeHeap()
    heaps = {name: impl.JobHeap() for name in ("a", "b", "c")}
    for name, heap in heaps.items():
        tubes.push(name, heap)
    with pytest.raises(EmptyQueue):
        tubes.peek()  # heaps exist but none has a job
    heaps["b"].push(impl.Job(1, runnable_at=30.0))
    tubes.fix("b")
    heaps["c"].push(impl.Job(2, runnable_at=10.0))
    tubes.fix("c")
    assert tubes.peek() == ("c", heaps["c"])
    heaps["c"].pop()
    tubes.fix("c")
    assert tubes.peek()[0] == "b"
    job = heaps["b"].peek()
    job.runnable_at = 50.0
    heaps["b"].update(job)
    heaps["a"].push(impl.Job(3, runnable_at=40.0))
    tubes.fix("a")
    tubes.fix("b")
    assert tubes.peek()[0] == "a"


def test_empty_tubeheap(impl: ModuleType) -> None:
    tubes = impl.TubeHeap()
    assert len(tubes) == 0 and not tubes and list(tubes) == []
    with pytest.raises(EmptyQueue):
        tubes.peek()


def test_errors(impl: ModuleType) -> None:
    tubes = impl.TubeHeap()
    tubes.push("x", impl.JobHeap())
    with pytest.raises(QueueAlreadyExists):
        tubes.push("x", impl.JobHeap())
    for call in (tubes.fix, tubes.remove):
        with pytest.raises(QueueMissing):
            call("y")
    with pytest.raises(TypeError):
        tubes.push("z", [])
    assert len(tubes) == 1


def test_remove_get_contains_iter(impl: ModuleType) -> None:
    tubes = impl.TubeHeap()
    heaps = [impl.JobHeap() for _ in range(6)]
    for i, heap in enumerate(heaps):
        heap.push(impl.Job(i, runnable_at=float(10 - i)))
        tubes.push(f"t{i}", heap)
    assert sorted(tubes) == [f"t{i}" for i in range(6)]
    assert "t3" in tubes and "t9" not in tubes
    assert tubes.get("t2") is heaps[2] and tubes.get("t9") is None
    assert tubes.get("t9", heaps[0]) is heaps[0]
    assert tubes.remove("t5") is heaps[5]
    assert tubes.peek()[0] == "t4"
    assert tubes.remove("t0") is heaps[0]
    order = []
    while tubes:
        name, heap = tubes.peek()
        order.append(name)
        tubes.remove(name)
    assert order == ["t4", "t3", "t2", "t1"]


def test_any_hashable_name(impl: ModuleType) -> None:
    tubes = impl.TubeHeap()
    heap = impl.JobHeap()
    heap.push(impl.Job(1))
    tubes.push(b"bytes-name", heap)
    tubes.push(("tuple", 1), impl.JobHeap())
    assert tubes.peek() == (b"bytes-name", heap)


def test_ready_jobs_beat_timed_jobs_across_heaps(impl: ModuleType) -> None:
    tubes = impl.TubeHeap()
    timed, ready = impl.JobHeap(), impl.JobHeap()
    timed.push(impl.Job(1, runnable_at=0.0))
    ready.push(impl.Job(2, priority=2**32 - 1))
    tubes.push("timed", timed)
    tubes.push("ready", ready)
    assert tubes.peek()[0] == "ready"
