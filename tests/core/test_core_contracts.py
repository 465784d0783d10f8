"""The public contract suites (geanstalk.testing) on both implementations of the core.

These classes are the core's behavioural tests: order, update, remove by id,
errors, a random program against a model, threads. The other test modules
here keep what the contracts do not say (the Job type's value rules, heap
slots, unindexed heaps, bulk methods, the registry's hashing, GC support).
"""

from __future__ import annotations

from types import ModuleType

import pytest

from geanstalk.testing import JobPriorityQueueTests, JobRegistryTests, TubePriorityQueueTests


class TestJobHeapContract(JobPriorityQueueTests):
    @pytest.fixture
    def make_queue(self, impl: ModuleType) -> type:
        return impl.JobHeap

    @pytest.fixture
    def make_job(self, impl: ModuleType) -> type:
        return impl.Job


class TestTubeHeapContract(TubePriorityQueueTests):
    @pytest.fixture
    def make_tubes(self, impl: ModuleType) -> type:
        return impl.TubeHeap

    @pytest.fixture
    def make_queue(self, impl: ModuleType) -> type:
        return impl.JobHeap

    @pytest.fixture
    def make_job(self, impl: ModuleType) -> type:
        return impl.Job


class TestJobTableContract(JobRegistryTests):
    @pytest.fixture
    def make_registry(self, impl: ModuleType) -> type:
        return impl.JobTable

    @pytest.fixture
    def make_job(self, impl: ModuleType) -> type:
        return impl.Job
