"""JobRegistryTests: the rules of a registry of live jobs by id (the JobTable surface).

Subclass it with a ``make_registry`` fixture (a callable making a fresh, empty
registry; ``make_job``, default ``geanstalk.Job``, makes its jobs)::

    class TestMyRegistry(JobRegistryTests):
        @pytest.fixture
        def make_registry(self):
            return MyRegistry

Ids are unsigned 64-bit, 0 included. ``largest_id()`` is the largest id held
(None when empty): what a server continues its ids from after a recovery.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from geanstalk.errors import JobAlreadyExists, JobMissing
from geanstalk.testing._contract import ContractTests, Rule, Trace, Traced, run_programs, show

U64 = 2**64 - 1


class RegistryRules:
    """The rules of JobRegistryTests, by key (a failure message names one)."""

    ADD = Rule("registry.add", "add(job) of an id not held stores it (len grows by one)")
    DUPLICATE = Rule(
        "registry.duplicate",
        "add(job) of an id already held raises JobAlreadyExists and keeps the job held",
    )
    GET = Rule(
        "registry.get",
        "get(id) and registry[id] return the job held with that id; for an id not held "
        "get() gives the default (None) and registry[id] raises KeyError",
    )
    POP = Rule("registry.pop", "pop(id) returns the job with that id and forgets it")
    POP_MISSING = Rule("registry.pop.missing", "pop(id) of an id not held raises JobMissing")
    REMOVE = Rule("registry.remove", "remove(job) forgets the job")
    REMOVE_MISSING = Rule(
        "registry.remove.missing", "remove(job) of a job not held raises JobMissing"
    )
    IDS = Rule(
        "registry.ids",
        "every id 0 .. 2**64-1 is an ordinary id (0 and 2**64-1 included); "
        "ids outside that range are never held",
    )
    LARGEST = Rule("registry.largest-id", "largest_id() is the largest id held, None when empty")
    CONTAINS = Rule(
        "registry.contains", "`id in registry` and `job in registry` are true exactly for held jobs"
    )
    LEN = Rule("registry.len", "len(registry) is the number of jobs held")
    ITER = Rule("registry.iter", "iterating yields every held job exactly once (any order)")


G = RegistryRules


class RegistryChecker:
    """A registry under test beside a dict of the jobs it should hold."""

    def __init__(self, make_registry: Callable[[], Any]) -> None:
        self.trace = Trace("registry = make_registry()")
        self.registry = Traced(make_registry(), self.trace, "registry")
        self.model: dict[int, Any] = {}

    def add(self, job: Any, rule: Rule = G.ADD) -> None:
        __tracebackhide__ = True
        if job.id in self.model:
            self.registry.call_raising(G.DUPLICATE, JobAlreadyExists, "add", job)
            self.check_len(G.DUPLICATE)
            self.check_lookup(job.id, G.DUPLICATE)
            return
        self.registry.call(rule, "add", job)
        self.model[job.id] = job
        self.check_len(rule)

    def pop(self, job_id: int) -> None:
        __tracebackhide__ = True
        if job_id not in self.model:
            self.registry.call_raising(G.POP_MISSING, JobMissing, "pop", job_id)
            self.check_len(G.POP_MISSING)
            return
        got = self.registry.call(G.POP, "pop", job_id)
        self.trace.check(
            getattr(got, "id", None) == job_id, G.POP, lambda: f"pop({job_id}) returned {show(got)}"
        )
        del self.model[job_id]
        self.check_len(G.POP)
        self.check_lookup(job_id, G.POP)

    def remove(self, job: Any) -> None:
        __tracebackhide__ = True
        if job.id not in self.model:
            self.registry.call_raising(G.REMOVE_MISSING, JobMissing, "remove", job)
            self.check_len(G.REMOVE_MISSING)
            return
        self.registry.call(G.REMOVE, "remove", self.model[job.id])
        del self.model[job.id]
        self.check_len(G.REMOVE)
        self.check_lookup(job.id, G.REMOVE)

    def check_len(self, rule: Rule) -> None:
        __tracebackhide__ = True
        n = self.registry.call(G.LEN, "__len__")
        self.trace.check(
            n == len(self.model), rule, lambda: f"len(registry) is {n}; it holds {len(self.model)}"
        )

    def check_lookup(self, job_id: int, rule: Rule = G.GET) -> None:
        """``in``, get() and ``[]`` agree with the model about one id; a wrong
        answer for an id not held breaks ``rule``, for a held one the lookup's
        own rule (or ``rule`` itself when it is the id-range rule)."""
        __tracebackhide__ = True
        held = self.model.get(job_id)
        held_contains = G.IDS if rule is G.IDS else G.CONTAINS
        held_get = G.IDS if rule is G.IDS else G.GET
        inside = self.registry.call(held_contains, "__contains__", job_id)
        self.trace.check(
            inside == (held is not None),
            rule if held is None else held_contains,
            f"`{job_id} in registry` is {inside}",
        )
        got = self.registry.call(held_get, "get", job_id)
        if held is None:
            self.trace.check(got is None, rule, f"get({job_id}) returned {show(got)}, not None")
            self.registry.call_raising(rule, KeyError, "__getitem__", job_id)
            return
        inside = self.registry.call(held_contains, "__contains__", held)
        self.trace.check(inside, held_contains, f"`job in registry` is False for {show(held)}")
        self.trace.check(
            getattr(got, "id", None) == job_id, held_get, f"get({job_id}) returned {show(got)}"
        )
        got = self.registry.call(held_get, "__getitem__", job_id)
        self.trace.check(
            getattr(got, "id", None) == job_id, held_get, f"registry[{job_id}] returned {show(got)}"
        )

    def check_largest(self) -> None:
        __tracebackhide__ = True
        got = self.registry.call(G.LARGEST, "largest_id")
        want = max(self.model, default=None)
        self.trace.check(
            got == want, G.LARGEST, f"largest_id() returned {got!r}; expected {want!r}"
        )

    def check_iteration(self) -> None:
        __tracebackhide__ = True
        items = self.registry.call(G.ITER, "__iter__")
        ids = sorted(getattr(j, "id", -1) for j in items)
        self.trace.check(
            ids == sorted(self.model),
            G.ITER,
            lambda: f"iteration gave ids {ids}; the registry holds {sorted(self.model)}",
        )


class JobRegistryTests(ContractTests):
    """The contract of a registry of live jobs by id.

    Fixtures: ``make_registry`` (required) returns a callable making a fresh,
    empty registry; ``make_job`` (default ``geanstalk.Job``) makes its jobs.
    ``random_examples``, ``random_length`` and ``use_hypothesis`` tune the
    random-program test as in JobPriorityQueueTests.
    """

    def test_a_fresh_registry_is_empty(self, make_registry: Any) -> None:
        c = RegistryChecker(make_registry)
        c.check_len(G.LEN)
        c.check_iteration()
        c.check_lookup(1)
        c.check_largest()
        c.pop(1)

    def test_add_get_pop_remove(self, make_registry: Any, make_job: Any) -> None:
        c = RegistryChecker(make_registry)
        jobs = [make_job(i) for i in (3, 1, 2)]
        for job in jobs:
            c.add(job)
            c.check_lookup(job.id)
        got = c.registry.call(G.GET, "get", 9, "default")
        c.trace.check(got == "default", G.GET, f"get(9, 'default') returned {show(got)}")
        c.check_iteration()
        c.pop(1)
        c.remove(jobs[0])
        c.check_iteration()
        c.add(make_job(1))  # a forgotten id may come back
        c.check_lookup(1)

    def test_duplicate_and_missing_ids_raise(self, make_registry: Any, make_job: Any) -> None:
        c = RegistryChecker(make_registry)
        job = make_job(7)
        c.add(job)
        c.add(job)  # the same object again
        c.add(make_job(7))  # another object with the id
        c.pop(8)
        c.remove(make_job(8))
        c.pop(7)
        c.pop(7)  # twice
        c.remove(job)
        c.check_lookup(7)

    def test_ids_over_the_whole_unsigned_64_bit_range(
        self, make_registry: Any, make_job: Any
    ) -> None:
        c = RegistryChecker(make_registry)
        ids = [0, 1, 2**32, 2**63 - 1, 2**63, U64 - 1, U64]
        for job_id in ids:
            c.add(make_job(job_id), G.IDS)
        for job_id in ids:
            c.check_lookup(job_id, G.IDS)
        for outside in (-1, 2**64, -(2**64)):
            c.check_lookup(outside, G.IDS)
            c.registry.call_raising(G.IDS, JobMissing, "pop", outside)
        c.check_largest()
        c.pop(0)
        c.pop(U64)
        c.check_largest()
        c.check_iteration()

    def test_largest_id_follows_adds_and_removals(self, make_registry: Any, make_job: Any) -> None:
        c = RegistryChecker(make_registry)
        c.check_largest()
        for job_id in (5, 2, 9, 2**40, 7):
            c.add(make_job(job_id))
            c.check_largest()
        for job_id in (2**40, 2, 9, 7, 5):  # the largest first, then not
            c.pop(job_id)
            c.check_largest()
        c.add(make_job(0))
        c.check_largest()

    def test_random_operations_match_a_dict(self, make_registry: Any, make_job: Any) -> None:
        ids = [*range(0, 12), 2**63, U64 - 1, U64, 1 << 40, 2 << 40]

        def execute(ops: list[tuple]) -> None:
            c = RegistryChecker(make_registry)
            for kind, job_id in ops:
                if kind == "add":
                    c.add(make_job(job_id))
                elif kind == "pop":
                    c.pop(job_id)
                elif kind == "remove":
                    c.remove(c.model.get(job_id) or make_job(job_id))
                elif kind == "get":
                    c.check_lookup(job_id)
                else:
                    c.check_largest()
            c.check_iteration()
            c.check_largest()

        kinds = ["add", "add", "pop", "remove", "get", "largest"]

        def draw(rng: random.Random) -> tuple:
            return (rng.choice(kinds), rng.choice(ids))

        def strategy() -> Any:
            from hypothesis import strategies as st

            return st.tuples(st.sampled_from(kinds), st.sampled_from(ids))

        run_programs(
            execute,
            draw,
            strategy,
            use_hypothesis=self.use_hypothesis,
            examples=self.random_examples,
            length=self.random_length,
        )
