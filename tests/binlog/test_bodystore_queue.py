"""The body cache's queue of cached jobs (generations of lists, stale entries
skipped and swept) against a model: an ordered dict evicted oldest first."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geanstalk import bodystore
from geanstalk.bodystore import ENTRY_COST, BodyStore
from geanstalk.core import Job

LIMIT = 2000

ops = st.lists(
    st.one_of(
        st.tuples(st.just("admit"), st.integers(0, 900)),  # a new job's body length
        st.tuples(st.just("forget"), st.integers(0, 10**6)),  # which job, by position
        st.tuples(st.just("sweep"), st.just(0)),
    ),
    max_size=200,
)


class Model:
    def __init__(self) -> None:
        self.cached: OrderedDict[Any, None] = OrderedDict()
        self.size = 0
        self.lengths: dict[int, int] = {}

    def admit(self, job: Any, length: int) -> None:
        self.lengths[job.id] = length
        cost = length + ENTRY_COST
        if not length or cost > LIMIT:
            return
        self.cached[job] = None
        self.size += cost
        while self.size > LIMIT:
            old = next(iter(self.cached))
            del self.cached[old]
            self.size -= self.lengths[old.id] + ENTRY_COST

    def forget(self, job: Any) -> None:
        if job in self.cached:
            del self.cached[job]
            self.size -= self.lengths[job.id] + ENTRY_COST


@pytest.fixture(params=[3, 4096], ids=["tiny-generations", "real-generations"])
def generation(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(bodystore, "GENERATION", request.param)
    return request.param


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(program=ops)
def test_the_queue_evicts_as_an_ordered_dict_would(generation: int, program: list) -> None:
    loop = asyncio.new_event_loop()
    try:
        store = BodyStore(None, LIMIT, loop)  # type: ignore[arg-type]
        model = Model()
        jobs: list[Any] = []
        for op, arg in program:
            if op == "admit":
                job = Job(len(jobs) + 1, body=b"b" * arg)
                jobs.append(job)
                store.admit(job)
                model.admit(job, arg)
            elif op == "forget" and jobs:
                job = jobs[arg % len(jobs)]
                store.forget(job)
                model.forget(job)
            else:
                store.sweep_step()
            # Which bodies are in memory says which were evicted: at every
            # step the same as the model's, so in the model's order.
            assert [bool(j.body) for j in jobs] == [j in model.cached for j in jobs]
            assert (store.count, store.size) == (len(model.cached), model.size)
        # A full round of sweeping leaves no stale entry; the queue still
        # holds the model's jobs, oldest first.
        for _ in range(len(store._generations) + 1):
            store.sweep_step()
        assert store.stale == 0
        for job in list(model.cached):
            store.limit = store.size - 1  # room for all but the oldest
            store.evict()
            model.forget(job)
            assert not job.body
            assert [bool(j.body) for j in jobs] == [j in model.cached for j in jobs]
        assert store.count == store.size == 0
    finally:
        loop.close()
