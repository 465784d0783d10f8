"""Random operation sequences, with hypothesis state machines.

The contract suites (test_core_contracts.py) run random programs against
models for JobHeap, TubeHeap and JobTable. Here: JobHeap with its slots and id
index checked after every step (and the unindexed heap, outside the contract),
and the compiled JobHeap against the pure one on the same sequence.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest
from heap_checks import check_heap, sort_key
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from geanstalk import _core_py
from geanstalk.errors import EmptyQueue, JobAlreadyExists, JobMissing

SETTINGS = settings(
    max_examples=120,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# Few distinct values, so ties (equal times, equal priorities) are common.
priorities = st.sampled_from([0, 1, 2, 1024, 2**32 - 1])
times = st.one_of(st.none(), st.sampled_from([0.0, 1.0, 1.5, 2.0, 1e9]))


def jobheap_machine(impl: ModuleType, indexed: bool = True) -> type[RuleBasedStateMachine]:
    class JobHeapMachine(RuleBasedStateMachine):
        """A JobHeap against a model: the set of jobs it should hold."""

        jobs = Bundle("jobs")

        def __init__(self) -> None:
            super().__init__()
            self.heap = impl.JobHeap(indexed=indexed)
            self.model: dict[int, Any] = {}
            self.next_id = 1

        def least(self) -> Any:
            return min(self.model.values(), key=sort_key)

        @rule(target=jobs, pri=priorities, when=times)
        def push(self, pri: int, when: float | None) -> Any:
            job = impl.Job(self.next_id, priority=pri, runnable_at=when)
            self.next_id += 1
            self.heap.push(job)
            self.model[job.id] = job
            return job

        @rule(job=jobs)
        def push_again(self, job: Any) -> None:
            if job.id in self.model:
                with pytest.raises(JobAlreadyExists):
                    self.heap.push(job)
                if indexed:  # an unindexed heap cannot see a second job with the id
                    with pytest.raises(JobAlreadyExists):
                        self.heap.push(impl.Job(job.id))
            else:
                self.heap.push(job)
                self.model[job.id] = job

        @rule()
        def pop(self) -> None:
            if not self.model:
                with pytest.raises(EmptyQueue):
                    self.heap.pop()
                return
            expected = self.least()
            assert self.heap.pop() is expected
            assert expected.heap_index == -1
            del self.model[expected.id]

        @rule()
        def peek(self) -> None:
            if not self.model:
                with pytest.raises(EmptyQueue):
                    self.heap.peek()
            else:
                assert self.heap.peek() is self.least()

        @rule(job=jobs, pri=priorities, when=times)
        def update(self, job: Any, pri: int, when: float | None) -> None:
            job.priority = pri
            job.runnable_at = when
            if job.id in self.model:
                self.heap.update(job)
            else:
                with pytest.raises(JobMissing):
                    self.heap.update(job)

        @rule(job=jobs)
        def remove(self, job: Any) -> None:
            if job.id in self.model:
                self.heap.remove(job)
                del self.model[job.id]
                assert job.heap_index == -1
            else:
                with pytest.raises(JobMissing):
                    self.heap.remove(job)

        @rule(job=consumes(jobs))
        def remove_by_id(self, job: Any) -> None:
            if not indexed:
                with pytest.raises(TypeError):
                    self.heap.remove_by_id(job.id)
            elif job.id in self.model:
                assert self.heap.remove_by_id(job.id) is job
                del self.model[job.id]
            else:
                with pytest.raises(JobMissing):
                    self.heap.remove_by_id(job.id)

        @precondition(lambda self: len(self.model) > 10)
        @rule()
        def clear(self) -> None:
            self.heap.clear()
            self.model.clear()

        @invariant()
        def matches_model(self) -> None:
            items = check_heap(impl, self.heap)
            assert {job.id for job in items} == set(self.model)

    return JobHeapMachine


def twin_machine(compiled: ModuleType) -> type[RuleBasedStateMachine]:
    class TwinMachine(RuleBasedStateMachine):
        """The compiled heap and the pure heap, fed the same operations, agree."""

        def __init__(self) -> None:
            super().__init__()
            self.heaps = (compiled.JobHeap(), _core_py.JobHeap())
            self.jobs: dict[int, tuple[Any, Any]] = {}
            self.next_id = 1

        def both(self, method: str, *args_per_heap: tuple) -> list:
            results = []
            for heap, args in zip(self.heaps, args_per_heap or ((), ()), strict=True):
                try:
                    results.append(("ok", getattr(heap, method)(*args)))
                except Exception as exc:  # the exception type is the result
                    results.append(("error", type(exc)))
            kinds = [r[0] for r in results]
            assert kinds[0] == kinds[1], results
            if kinds[0] == "error":
                assert results[0][1] is results[1][1], results
            return results

        @rule(pri=priorities, when=times)
        def push(self, pri: int, when: float | None) -> None:
            pair = tuple(
                m.Job(self.next_id, priority=pri, runnable_at=when) for m in (compiled, _core_py)
            )
            self.jobs[self.next_id] = pair  # type: ignore[assignment]
            self.next_id += 1
            self.both("push", (pair[0],), (pair[1],))

        @rule()
        def pop(self) -> None:
            results = self.both("pop")
            if results[0][0] == "ok":
                assert results[0][1].id == results[1][1].id

        @rule(job_id=st.integers(1, 60), pri=priorities, when=times)
        def update(self, job_id: int, pri: int, when: float | None) -> None:
            pair = self.jobs.get(job_id)
            if pair is not None:
                for job in pair:
                    job.priority, job.runnable_at = pri, when
                self.both("update", (pair[0],), (pair[1],))

        @rule(job_id=st.integers(0, 60))
        def remove_by_id(self, job_id: int) -> None:
            results = self.both("remove_by_id", (job_id,), (job_id,))
            if results[0][0] == "ok":
                assert results[0][1].id == results[1][1].id == job_id

        @invariant()
        def same_array(self) -> None:
            arrays = [[job.id for job in heap] for heap in self.heaps]
            assert arrays[0] == arrays[1]

    return TwinMachine


def test_unindexed_jobheap_against_model(impl: ModuleType) -> None:
    run_state_machine_as_test(jobheap_machine(impl, indexed=False), settings=SETTINGS)


def test_indexed_jobheap_slots_and_index(impl: ModuleType) -> None:
    """The contract's random test checks behaviour; this one also the slots and the index."""
    run_state_machine_as_test(jobheap_machine(impl), settings=SETTINGS)


def test_compiled_matches_pure(compiled: ModuleType) -> None:
    run_state_machine_as_test(twin_machine(compiled), settings=SETTINGS)
