"""TubePriorityQueueTests: the rules of a priority queue of job queues (the TubeHeap surface).

A tube queue holds named job queues and orders them by their head jobs, so
"the next job to wake in any tube" is one peek. The caller changes a held
queue and then calls ``fix(name)``. Subclass it with a ``make_tubes`` fixture
(a callable making a fresh, empty tube queue); ``make_queue`` (default
``geanstalk.JobHeap``) makes the job queues it holds and ``make_job`` (default
``geanstalk.Job``) their jobs::

    class TestMyTubes(TubePriorityQueueTests):
        @pytest.fixture
        def make_tubes(self):
            return MyTubeQueue
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

from geanstalk.errors import EmptyQueue, QueueAlreadyExists, QueueMissing
from geanstalk.testing._contract import ContractTests, Rule, Trace, Traced, run_programs, show
from geanstalk.testing.queue_contract import sort_key

U32 = 2**32 - 1


class TubeRules:
    """The rules of TubePriorityQueueTests, by key (a failure message names one)."""

    PUSH = Rule(
        "tubes.push.adds", "push(name, queue) of a new name adds the queue (len grows by one)"
    )
    DUPLICATE = Rule(
        "tubes.push.duplicate",
        "push(name, queue) of a name already held raises QueueAlreadyExists and changes nothing",
    )
    EMPTY = Rule(
        "tubes.peek.empty",
        "peek() raises EmptyQueue when no queue is held or every held queue is empty",
    )
    ORDER = Rule(
        "tubes.order",
        "peek() returns (name, queue) of the queue whose head job is least "
        "(the job order: no runnable_at first, then runnable_at, priority, id)",
    )
    EMPTY_LAST = Rule("tubes.empty-last", "an empty queue comes after every queue that has a job")
    FIX = Rule(
        "tubes.fix",
        "after a held queue changed (push, pop, update of its jobs), fix(name) "
        "puts it where its new head belongs",
    )
    FIX_MISSING = Rule("tubes.fix.missing", "fix(name) of a name not held raises QueueMissing")
    REMOVE = Rule(
        "tubes.remove",
        "remove(name) returns the queue held under that name and forgets the name",
    )
    REMOVE_MISSING = Rule(
        "tubes.remove.missing", "remove(name) of a name not held raises QueueMissing"
    )
    GET = Rule("tubes.get", "get(name) returns the queue held under name, else the default (None)")
    CONTAINS = Rule("tubes.contains", "`name in tubes` is true exactly for held names")
    LEN = Rule("tubes.len", "len(tubes) is the number of queues held, empty ones included")
    ITER = Rule("tubes.iter", "iterating yields every held name exactly once (any order)")


T = TubeRules


class TubesChecker:
    """A tube queue under test beside a model: a dict of name -> the queue it should hold."""

    def __init__(self, make_tubes: Callable[[], Any], make_queue: Callable[[], Any]) -> None:
        self.trace = Trace("tubes = make_tubes(); queues made by make_queue()")
        self.tubes = Traced(make_tubes(), self.trace, "tubes")
        self.make_queue = make_queue
        self.model: dict[Any, Any] = {}
        self.fixed: set[Any] = set()  # names fixed after a change of their head

    def add(self, name: Any) -> Any:
        __tracebackhide__ = True
        queue = self.make_queue()
        if name in self.model:
            self.tubes.call_raising(T.DUPLICATE, QueueAlreadyExists, "push", name, queue)
            self.check_len(T.DUPLICATE)
            self.check_get(name, T.DUPLICATE)
            return self.model[name]
        self.tubes.call(T.PUSH, "push", name, queue)
        self.model[name] = queue
        self.check_len(T.PUSH)
        return queue

    def change(self, name: Any, what: str, *args: Any) -> None:
        """Change a held queue (``push``, ``pop`` or ``update`` of a job), then fix(name)."""
        __tracebackhide__ = True
        queue = self.model[name]
        result = getattr(queue, what)(*args)
        self.trace.record(
            f"queues[{name!r}].{what}(" + ", ".join(show(a) for a in args) + f") -> {show(result)}"
        )
        self.fix(name)

    def fix(self, name: Any) -> None:
        __tracebackhide__ = True
        if name not in self.model:
            self.tubes.call_raising(T.FIX_MISSING, QueueMissing, "fix", name)
            self.check_len(T.FIX_MISSING)
            return
        self.tubes.call(T.FIX, "fix", name)
        self.fixed.add(name)

    def remove(self, name: Any) -> None:
        __tracebackhide__ = True
        if name not in self.model:
            self.tubes.call_raising(T.REMOVE_MISSING, QueueMissing, "remove", name)
            self.check_len(T.REMOVE_MISSING)
            return
        got = self.tubes.call(T.REMOVE, "remove", name)
        queue = self.model.pop(name)
        self.fixed.discard(name)
        self.trace.check(got is queue, T.REMOVE, f"remove({name!r}) returned {show(got)}")
        self.check_len(T.REMOVE)
        self.check_get(name, T.REMOVE)

    def peek(self) -> None:
        __tracebackhide__ = True
        heads = {name: q.peek() for name, q in self.model.items() if len(q)}
        if not heads:
            self.tubes.call_raising(T.EMPTY, EmptyQueue, "peek")
            return
        got = self.tubes.call(T.ORDER, "peek")
        want = min(heads, key=lambda name: sort_key(heads[name]))
        ok_shape = isinstance(got, tuple) and len(got) == 2
        self.trace.check(ok_shape, T.ORDER, f"peek() returned {show(got)}, not (name, queue)")
        name, queue = got
        if name == want and queue is self.model[want]:
            return
        if name not in self.model:
            raise self.trace.fail(T.REMOVE, f"peek() returned {name!r}, removed before")
        if queue is not self.model[name]:
            raise self.trace.fail(T.ORDER, f"peek() returned ({name!r}, a queue not held as it)")
        if name not in heads:
            raise self.trace.fail(
                T.EMPTY_LAST, f"peek() returned the empty queue {name!r}; {want!r} has a job"
            )
        detail = (
            f"expected peek() -> {want!r} (head {show(heads[want])})\n"
            f"     got peek() -> {name!r} (head {show(heads[name])})"
        )
        raise self.trace.fail(T.FIX if {name, want} & self.fixed else T.ORDER, detail)

    def check_len(self, rule: Rule) -> None:
        __tracebackhide__ = True
        n = self.tubes.call(T.LEN, "__len__")
        self.trace.check(
            n == len(self.model), rule, lambda: f"len(tubes) is {n}; it holds {len(self.model)}"
        )

    def check_get(self, name: Any, rule: Rule = T.GET) -> None:
        __tracebackhide__ = True
        held = self.model.get(name)
        inside = self.tubes.call(T.CONTAINS, "__contains__", name)
        self.trace.check(
            inside == (held is not None),
            rule if held is None else T.CONTAINS,
            f"`{name!r} in tubes` is {inside}",
        )
        got = self.tubes.call(T.GET, "get", name)
        self.trace.check(
            got is held,
            rule if held is None else T.GET,
            lambda: f"get({name!r}) returned {show(got)}; expected {show(held)}",
        )

    def check_iteration(self) -> None:
        __tracebackhide__ = True
        names = self.tubes.call(T.ITER, "__iter__")
        self.trace.check(
            sorted(map(repr, names)) == sorted(map(repr, self.model)),
            T.ITER,
            lambda: f"iteration gave {names!r}; held: {list(self.model)!r}",
        )


class TubePriorityQueueTests(ContractTests):
    """The contract of a priority queue of named job queues, ordered by their head jobs.

    Fixtures: ``make_tubes`` (required) returns a callable making a fresh, empty
    tube queue; ``make_queue`` (default ``geanstalk.JobHeap``) makes the queues
    it holds; ``make_job`` (default ``geanstalk.Job``) their jobs.
    ``random_examples``, ``random_length`` and ``use_hypothesis`` tune the
    random-program test as in JobPriorityQueueTests.
    """

    @pytest.fixture
    def make_queue(self) -> Callable[[], Any]:
        from geanstalk.core import JobHeap

        return JobHeap

    def test_a_fresh_tube_queue_is_empty(self, make_tubes: Any, make_queue: Any) -> None:
        c = TubesChecker(make_tubes, make_queue)
        c.check_len(T.LEN)
        c.check_iteration()
        c.check_get("a")
        c.peek()

    def test_push_get_contains_len_and_iteration(self, make_tubes: Any, make_queue: Any) -> None:
        c = TubesChecker(make_tubes, make_queue)
        for name in ("a", b"bytes", ("tuple", 1)):
            c.add(name)
            c.check_get(name)
        c.check_get("absent")
        default = make_queue()
        got = c.tubes.call(T.GET, "get", "absent", default)
        c.trace.check(got is default, T.GET, f"get('absent', default) returned {show(got)}")
        c.check_iteration()

    def test_a_second_push_of_a_held_name_raises_queue_already_exists(
        self, make_tubes: Any, make_queue: Any
    ) -> None:
        c = TubesChecker(make_tubes, make_queue)
        c.add("x")
        c.add("y")
        c.add("x")
        c.check_iteration()

    def test_peek_is_empty_while_every_queue_is_empty(
        self, make_tubes: Any, make_queue: Any, make_job: Any
    ) -> None:
        c = TubesChecker(make_tubes, make_queue)
        for name in "abc":
            c.add(name)
        c.peek()
        c.change("b", "push", make_job(1))
        c.peek()
        c.change("b", "pop")
        c.peek()

    def test_the_queue_with_the_least_head_comes_first(
        self, make_tubes: Any, make_queue: Any, make_job: Any
    ) -> None:
        c = TubesChecker(make_tubes, make_queue)
        spec = {
            "late": (1, 0, 50.0),
            "early": (2, 9, 10.0),
            "ready-low": (3, 7, None),
            "ready-high": (4, 8, None),
            "tie-low-id": (5, 7, 10.0),
            "tie-high-id": (6, 9, 10.0),
        }
        for name in spec:
            c.add(name)
        for name, (job_id, pri, when) in spec.items():
            c.change(name, "push", make_job(job_id, priority=pri, runnable_at=when))
            c.peek()
        for name in ["ready-low", "ready-high", "tie-low-id", "early", "tie-high-id", "late"]:
            c.peek()
            c.remove(name)
        c.peek()

    def test_an_empty_queue_comes_after_every_queue_with_a_job(
        self, make_tubes: Any, make_queue: Any, make_job: Any
    ) -> None:
        c = TubesChecker(make_tubes, make_queue)
        for i, name in enumerate("abcdefg"):
            c.add(name)
            if i % 3 == 0:
                c.change(name, "push", make_job(i, priority=U32, runnable_at=1e12))
        for name in "adg":
            c.peek()
            c.change(name, "pop")
        c.peek()

    def test_fix_after_the_held_queue_changes(
        self, make_tubes: Any, make_queue: Any, make_job: Any
    ) -> None:
        c = TubesChecker(make_tubes, make_queue)
        jobs = {}
        for i, name in enumerate("abcde"):
            c.add(name)
            jobs[name] = make_job(i + 1, priority=10 * (i + 1), runnable_at=5.0)
            c.change(name, "push", jobs[name])
        c.peek()
        c.change("e", "push", make_job(10, priority=0))  # a new head moves e to the top
        c.peek()
        c.change("e", "pop")  # and back
        c.peek()
        jobs["c"].runnable_at = 1.0  # a head's key changes: c to the top
        c.change("c", "update", jobs["c"])
        c.peek()
        jobs["c"].runnable_at = 9.0  # and to the bottom
        c.change("c", "update", jobs["c"])
        c.peek()
        c.change("a", "pop")  # the top empties: after all others
        c.peek()
        c.fix("zzz")
        c.remove("zzz")
        for name in "bdec":
            c.peek()
            c.remove(name)
        c.peek()

    def test_remove_forgets_the_name(self, make_tubes: Any, make_queue: Any, make_job: Any) -> None:
        c = TubesChecker(make_tubes, make_queue)
        for i, name in enumerate("abcdef"):
            c.add(name)
            c.change(name, "push", make_job(i, runnable_at=float(10 - i)))
        for name in ("f", "a", "c"):  # the top, the bottom, a middle one
            c.remove(name)
            c.peek()
        c.remove("c")
        c.check_iteration()
        c.add("c")  # the name may come back
        c.peek()

    def test_random_operations_match_a_model(
        self, make_tubes: Any, make_queue: Any, make_job: Any
    ) -> None:
        names = ["a", "b", "c", "d", "e"]
        priorities = [0, 1, 2**31, U32]
        times = [None, 0.0, 1.0, 1e9]

        def execute(ops: list[tuple]) -> None:
            c = TubesChecker(make_tubes, make_queue)
            next_id = 1
            for op in ops:
                kind, name = op[0], op[1]
                if kind == "add":
                    c.add(name)
                elif kind == "put":
                    if name in c.model:
                        c.change(name, "push", make_job(next_id, priority=op[2], runnable_at=op[3]))
                        next_id += 1
                elif kind == "take":
                    if name in c.model and len(c.model[name]):
                        c.change(name, "pop")
                    elif name not in c.model:
                        c.fix(name)
                elif kind == "drop":
                    c.remove(name)
                else:
                    c.check_get(name)
                c.peek()
            c.check_len(T.LEN)
            c.check_iteration()

        def draw(rng: random.Random) -> tuple:
            kind = rng.choice(["add", "put", "put", "take", "drop", "get"])
            return (kind, rng.choice(names), rng.choice(priorities), rng.choice(times))

        def strategy() -> Any:
            from hypothesis import strategies as st

            return st.tuples(
                st.sampled_from(["add", "put", "take", "drop", "get"]),
                st.sampled_from(names),
                st.sampled_from(priorities),
                st.sampled_from(times),
            )

        run_programs(
            execute,
            draw,
            strategy,
            use_hypothesis=self.use_hypothesis,
            examples=self.random_examples,
            length=self.random_length,
        )
