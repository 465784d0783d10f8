"""JobPriorityQueueTests: the rules every priority queue of jobs keeps (the JobHeap surface).

Subclass it in a test module, with a ``make_queue`` fixture that returns a
callable making a fresh, empty queue (and, if your queue holds its own job
type, a ``make_job`` fixture returning a callable ``make_job(id, priority=0,
runnable_at=None)``)::

    class TestMyQueue(JobPriorityQueueTests):
        @pytest.fixture
        def make_queue(self):
            return MyQueue

The order is geanstalk's: a job without ``runnable_at`` before any job with
one, then earlier ``runnable_at``, then lower priority, then lower id. Jobs are
told apart by id: a queue may hand back another object for the same job.
A job's key is changed by setting ``priority`` / ``runnable_at`` on it and then
calling ``update(job)``.
"""

from __future__ import annotations

import random
import sys
import threading
from collections.abc import Callable
from typing import Any, ClassVar

import pytest

from geanstalk.errors import EmptyQueue, JobAlreadyExists, JobMissing
from geanstalk.testing._contract import ContractTests, Rule, Trace, Traced, run_programs, show

U32 = 2**32 - 1


def sort_key(job: Any) -> tuple:
    """geanstalk's order as a tuple: (has runnable_at, runnable_at, priority, id)."""
    return (job.runnable_at is not None, job.runnable_at or 0.0, job.priority, job.id)


class QueueRules:
    """The rules of JobPriorityQueueTests, by key (a failure message names one)."""

    EMPTY_POP = Rule("pop.empty", "pop() of an empty queue raises EmptyQueue")
    EMPTY_PEEK = Rule("peek.empty", "peek() of an empty queue raises EmptyQueue")
    PUSH = Rule(
        "push.adds", "push(job) of an id the queue does not hold adds it (len grows by one)"
    )
    DUPLICATE = Rule(
        "push.duplicate",
        "push(job) of an id the queue already holds raises JobAlreadyExists and changes nothing",
    )
    READY_FIRST = Rule(
        "order.ready-first", "a job without runnable_at comes before any job with one"
    )
    RUNNABLE_AT = Rule("order.runnable-at", "between two timed jobs, the earlier runnable_at first")
    PRIORITY = Rule(
        "order.priority",
        "with equal runnable_at, the lower priority first (unsigned 32-bit: 0 .. 2**32-1)",
    )
    TIE_BREAK = Rule("order.tie-break", "with equal runnable_at and priority, the lower id first")
    POP = Rule("pop.removes", "pop() returns the head and the queue holds it no more")
    PEEK = Rule("peek.keeps", "peek() returns the head and leaves it in the queue")
    UPDATE = Rule(
        "update.moves",
        "after a job's priority or runnable_at changed, update(job) moves it to where its new key belongs",
    )
    UPDATE_MISSING = Rule(
        "update.missing", "update(job) of a job the queue does not hold raises JobMissing"
    )
    REMOVE = Rule("remove.returns", "remove_by_id(id) returns the job with that id")
    REMOVE_FORGETS = Rule(
        "remove.forgets",
        "after remove_by_id(id) the queue forgets the job: not `in`, get() gives the default, "
        "len shrinks, pop never returns it, the id may be pushed again",
    )
    REMOVE_MISSING = Rule(
        "remove.missing", "remove_by_id(id) of an id the queue does not hold raises JobMissing"
    )
    GET = Rule("get.finds", "get(id) returns the held job with that id, else the default (None)")
    CONTAINS = Rule("contains", "`id in queue` and `job in queue` are true exactly for held jobs")
    LEN = Rule("len", "len(queue) is the number of jobs held")
    ITER = Rule("iter", "iterating the queue yields every held job exactly once (any order)")
    THREADS = Rule(
        "threads",
        "with threads pushing, updating and popping at once, no job is lost or comes out twice",
    )

    @classmethod
    def for_order(cls, expected: Any, got: Any) -> Rule:
        """The ordering rule that puts ``expected`` before ``got``."""
        if (expected.runnable_at is None) != (got.runnable_at is None):
            return cls.READY_FIRST
        if expected.runnable_at != got.runnable_at:
            return cls.RUNNABLE_AT
        if expected.priority != got.priority:
            return cls.PRIORITY
        return cls.TIE_BREAK


R = QueueRules


class QueueChecker:
    """A queue under test beside a model (a dict of the jobs it should hold).

    Every method does one operation on the queue, checks its result against
    the model, and names the broken rule when they disagree.
    """

    def __init__(self, make_queue: Callable[[], Any]) -> None:
        self.trace = Trace("queue = make_queue()")
        self.queue = Traced(make_queue(), self.trace, "queue")
        self.model: dict[int, Any] = {}
        self.popped: set[int] = set()
        self.removed: set[int] = set()
        self.updated: set[int] = set()

    # --- reading the model ---------------------------------------------------------

    def head(self) -> Any:
        __tracebackhide__ = True
        return min(self.model.values(), key=sort_key)

    def ordered(self) -> list[Any]:
        __tracebackhide__ = True
        return sorted(self.model.values(), key=sort_key)

    # --- operations ---------------------------------------------------------------------

    def push(self, job: Any) -> None:
        __tracebackhide__ = True
        if job.id in self.model:
            self.queue.call_raising(R.DUPLICATE, JobAlreadyExists, "push", job)
            self.check_len(R.DUPLICATE)
            return
        self.queue.call(R.PUSH, "push", job)
        self.model[job.id] = job
        self.popped.discard(job.id)
        self.removed.discard(job.id)
        self.check_len(R.PUSH)

    def pop(self) -> Any:
        __tracebackhide__ = True
        if not self.model:
            self.queue.call_raising(R.EMPTY_POP, EmptyQueue, "pop")
            return None
        got = self.queue.call(R.POP, "pop")
        self.check_head(got, "pop()")
        del self.model[got.id]
        self.popped.add(got.id)
        self.check_len(R.POP)
        return got

    def peek(self) -> Any:
        __tracebackhide__ = True
        if not self.model:
            self.queue.call_raising(R.EMPTY_PEEK, EmptyQueue, "peek")
            return None
        got = self.queue.call(R.PEEK, "peek")
        self.check_head(got, "peek()")
        self.check_len(R.PEEK)
        return got

    def update(self, job: Any, priority: int | None = None, runnable_at: Any = ...) -> None:
        """Change the job's key (when given) and update() it."""
        __tracebackhide__ = True
        if priority is not None and priority != job.priority:
            self.trace.record(f"job {job.id}: priority {job.priority} -> {priority}")
            job.priority = priority
        if runnable_at is not ... and runnable_at != job.runnable_at:
            self.trace.record(f"job {job.id}: runnable_at {job.runnable_at!r} -> {runnable_at!r}")
            job.runnable_at = runnable_at
        held = self.model.get(job.id)
        if held is job:
            self.queue.call(R.UPDATE, "update", job)
            self.updated.add(job.id)
        else:
            self.queue.call_raising(R.UPDATE_MISSING, JobMissing, "update", job)
        self.check_len(R.UPDATE if held is job else R.UPDATE_MISSING)

    def remove(self, job_id: int) -> Any:
        __tracebackhide__ = True
        if job_id not in self.model:
            self.queue.call_raising(R.REMOVE_MISSING, JobMissing, "remove_by_id", job_id)
            self.check_len(R.REMOVE_MISSING)
            return None
        got = self.queue.call(R.REMOVE, "remove_by_id", job_id)
        self.trace.check(
            getattr(got, "id", None) == job_id,
            R.REMOVE,
            lambda: f"remove_by_id({job_id}) returned {show(got)}",
        )
        del self.model[job_id]
        self.removed.add(job_id)
        self.check_len(R.REMOVE_FORGETS)
        self.check_lookup(job_id, R.REMOVE_FORGETS, got)
        return got

    # --- checks ----------------------------------------------------------------------

    def check_head(self, got: Any, what: str) -> None:
        __tracebackhide__ = True
        expected = self.head()
        got_id = getattr(got, "id", None)
        if got_id == expected.id:
            return
        if got_id in self.removed:
            raise self.trace.fail(R.REMOVE_FORGETS, f"{what} returned job {got_id}, removed before")
        if got_id in self.popped:
            raise self.trace.fail(R.POP, f"{what} returned job {got_id}, popped before")
        held = self.model.get(got_id) if isinstance(got_id, int) else None
        if held is None:
            raise self.trace.fail(
                R.POP, f"{what} returned {show(got)}, which is not a job the queue holds"
            )
        rule = R.for_order(expected, held)
        detail = f"expected {what} -> {show(expected)}\n     got {what} -> {show(held)}"
        if {expected.id, got_id} & self.updated:
            detail += f"\n(the order rule that decides: {rule})"
            rule = R.UPDATE
        raise self.trace.fail(rule, detail)

    def check_len(self, rule: Rule) -> None:
        __tracebackhide__ = True
        n = self.queue.call(R.LEN, "__len__")
        self.trace.check(
            n == len(self.model),
            rule,
            lambda: f"len(queue) is {n}; it holds {len(self.model)} jobs",
        )

    def check_lookup(self, job_id: int, rule: Rule = R.GET, job: Any = None) -> None:
        """``in`` and get() agree with the model about one id (and one job object)."""
        __tracebackhide__ = True
        held = self.model.get(job_id)
        inside = self.queue.call(R.CONTAINS, "__contains__", job_id)
        self.trace.check(
            inside == (held is not None),
            rule if held is None else R.CONTAINS,
            f"`{job_id} in queue` is {inside}",
        )
        if job is not None:
            inside = self.queue.call(R.CONTAINS, "__contains__", job)
            self.trace.check(
                inside == (held is not None),
                rule if held is None else R.CONTAINS,
                f"`job in queue` is {inside} for {show(job)}",
            )
        got = self.queue.call(R.GET, "get", job_id)
        if held is None:
            self.trace.check(got is None, rule, f"get({job_id}) returned {show(got)}, not None")
        else:
            self.trace.check(
                getattr(got, "id", None) == job_id,
                R.GET,
                f"get({job_id}) returned {show(got)}",
            )

    def check_iteration(self) -> None:
        __tracebackhide__ = True
        items = self.queue.call(R.ITER, "__iter__")
        ids = sorted(getattr(j, "id", None) for j in items)  # type: ignore[type-var]
        self.trace.check(
            ids == sorted(self.model),
            R.ITER,
            lambda: f"iteration gave ids {ids}; the queue holds {sorted(self.model)}",
        )

    def drain(self) -> list[Any]:
        """Pop everything, each pop checked against the model's order; then pop of empty."""
        __tracebackhide__ = True
        out = []
        while self.model:
            out.append(self.pop())
        self.pop()
        return out


class JobPriorityQueueTests(ContractTests):
    """The contract of a priority queue of jobs with O(log n) update and remove by id.

    Fixtures: ``make_queue`` (required) returns a callable making a fresh, empty
    queue; ``make_job`` returns a callable ``make_job(id, priority=0,
    runnable_at=None)`` (default: ``geanstalk.Job``).

    Class attributes tune the random-program test: ``random_examples`` programs
    of at most ``random_length`` operations, drawn by hypothesis when it is
    installed (``use_hypothesis = None``; derandomized, so every run tries the
    same programs, and a failing one is shrunk before it is shown), else by
    ``random.Random(seed)`` for seeds 0, 1, 2, ... (the failure names the seed);
    ``thread_ops`` operations per thread in the thread test.
    """

    thread_ops: ClassVar[int] = 2000

    # --- empty queue, push, lookups ----------------------------------------------------

    def test_a_fresh_queue_is_empty(self, make_queue: Any) -> None:
        c = QueueChecker(make_queue)
        c.check_len(R.LEN)
        c.check_iteration()
        c.check_lookup(1)
        c.pop()
        c.peek()

    def test_pop_and_peek_of_an_emptied_queue_raise_empty_queue(
        self, make_queue: Any, make_job: Any
    ) -> None:
        c = QueueChecker(make_queue)
        c.push(make_job(1))
        c.push(make_job(2))
        c.drain()
        c.peek()

    def test_push_then_len_in_get_and_iteration(self, make_queue: Any, make_job: Any) -> None:
        c = QueueChecker(make_queue)
        jobs = [make_job(i, priority=i % 3) for i in (4, 9, 1, 7)]
        for job in jobs:
            c.push(job)
        for job in jobs:
            c.check_lookup(job.id, R.GET, job)
        for absent in (0, 2, 10, 2**64 - 1):
            c.check_lookup(absent)
        got = c.queue.call(R.GET, "get", 3, jobs[0])
        c.trace.check(
            getattr(got, "id", None) == jobs[0].id,
            R.GET,
            f"get(3, default) returned {show(got)}, not the default",
        )
        c.check_iteration()

    def test_a_second_push_of_a_held_id_raises_job_already_exists(
        self, make_queue: Any, make_job: Any
    ) -> None:
        c = QueueChecker(make_queue)
        first = make_job(5, priority=3)
        c.push(first)
        c.push(make_job(6))
        c.push(first)  # the same object again
        c.push(make_job(5, priority=0))  # another object with the held id
        c.check_iteration()
        c.drain()

    # --- order -----------------------------------------------------------------------

    def test_a_job_without_runnable_at_comes_first(self, make_queue: Any, make_job: Any) -> None:
        c = QueueChecker(make_queue)
        c.push(make_job(1, priority=0, runnable_at=0.0))
        c.push(make_job(2, priority=U32, runnable_at=-1e9))
        c.push(make_job(3, priority=U32))
        c.drain()

    def test_earlier_runnable_at_first(self, make_queue: Any, make_job: Any) -> None:
        c = QueueChecker(make_queue)
        for job_id, when in [(1, 30.0), (2, 10.0), (3, 20.5), (4, 20.25), (5, -5.0)]:
            c.push(make_job(job_id, priority=9 - job_id, runnable_at=when))
        c.drain()

    def test_lower_priority_first(self, make_queue: Any, make_job: Any) -> None:
        c = QueueChecker(make_queue)
        for job_id, pri in [(1, 30), (2, 10), (3, 20), (4, 0), (5, 1)]:
            c.push(make_job(job_id, priority=pri))
        for job_id, pri in [(6, 7), (7, 3)]:
            c.push(make_job(job_id, priority=pri, runnable_at=5.0))
        c.drain()

    def test_equal_keys_go_to_the_lower_id(self, make_queue: Any, make_job: Any) -> None:
        # neither arrival order nor its reverse matches the id order
        c = QueueChecker(make_queue)
        for job_id in (5, 3, 9, 1, 7, 2**64 - 1, 2**63):
            c.push(make_job(job_id, priority=4))
        for job_id in (8, 6):
            c.push(make_job(job_id, priority=4, runnable_at=2.0))
        c.drain()

    def test_priorities_over_the_whole_unsigned_32_bit_range(
        self, make_queue: Any, make_job: Any
    ) -> None:
        c = QueueChecker(make_queue)
        priorities = [U32, 2**31, 0, 2**31 - 1, 1, U32 - 1, 2**16, 2**31 + 1]
        for job_id, pri in enumerate(priorities, start=1):
            c.push(make_job(job_id, priority=pri))
        c.drain()

    # --- update ------------------------------------------------------------------------

    def _ten(
        self, make_queue: Any, make_job: Any, timed: bool = False
    ) -> tuple[QueueChecker, list]:
        c = QueueChecker(make_queue)
        jobs = [
            make_job(i, priority=10 * i, runnable_at=100.0 + i if timed else None)
            for i in range(1, 11)
        ]
        for job in jobs:
            c.push(job)
        return c, jobs

    def test_update_after_a_priority_change_both_ways(self, make_queue: Any, make_job: Any) -> None:
        c, jobs = self._ten(make_queue, make_job)
        c.update(jobs[9], priority=0)  # the last goes to the head
        c.peek()
        c.update(jobs[9], priority=U32)  # and back to the tail
        c.peek()
        c.update(jobs[0], priority=55)  # the head goes to the middle
        c.peek()
        c.update(jobs[5], priority=5)  # a middle one up
        c.peek()
        c.update(jobs[3], priority=95)  # a middle one down
        c.update(jobs[2], priority=jobs[2].priority)  # no change at all
        c.drain()

    def test_update_after_a_runnable_at_change_both_ways(
        self, make_queue: Any, make_job: Any
    ) -> None:
        c, jobs = self._ten(make_queue, make_job, timed=True)
        c.update(jobs[9], runnable_at=1.0)  # later to earliest
        c.peek()
        c.update(jobs[9], runnable_at=1e9)  # and to the latest
        c.peek()
        c.update(jobs[4], runnable_at=None)  # timed to untimed: to the head
        c.peek()
        c.update(jobs[4], runnable_at=105.5)  # and back
        c.peek()
        c.update(jobs[0], runnable_at=106.0)  # the head to the middle
        c.drain()

    def test_update_of_a_job_not_held_raises_job_missing(
        self, make_queue: Any, make_job: Any
    ) -> None:
        c = QueueChecker(make_queue)
        c.update(make_job(1))  # empty queue
        c.push(make_job(2))
        c.update(make_job(3))  # another id
        popped = c.pop()
        c.update(popped, priority=1)  # popped already
        c.push(make_job(4))
        c.remove(4)
        c.update(make_job(4))
        c.drain()

    # --- remove_by_id ----------------------------------------------------------------

    @pytest.mark.parametrize("which", ["head", "middle", "last", "only"])
    def test_remove_by_id(self, make_queue: Any, make_job: Any, which: str) -> None:
        c = QueueChecker(make_queue)
        count = 1 if which == "only" else 9
        for i in range(count):
            c.push(make_job(i + 1, priority=(i * 7) % 5))
        ordered = c.ordered()
        victim = {"head": 0, "middle": len(ordered) // 2, "last": -1, "only": 0}[which]
        c.remove(ordered[victim].id)
        c.check_iteration()
        c.drain()

    def test_a_removed_id_is_forgotten_and_can_be_pushed_again(
        self, make_queue: Any, make_job: Any
    ) -> None:
        c = QueueChecker(make_queue)
        for i in range(1, 8):
            c.push(make_job(i, priority=i))
        c.remove(1)
        c.remove(4)
        c.remove(7)
        c.check_iteration()
        c.push(make_job(4, priority=0))
        c.push(make_job(7, priority=100))
        c.check_lookup(4)
        c.drain()

    def test_remove_by_id_of_an_id_not_held_raises_job_missing(
        self, make_queue: Any, make_job: Any
    ) -> None:
        c = QueueChecker(make_queue)
        c.remove(1)
        c.push(make_job(1))
        c.push(make_job(2))
        c.remove(3)
        c.remove(1)
        c.remove(1)  # twice
        c.pop()
        c.remove(2)  # popped
        c.drain()

    # --- everything at once ---------------------------------------------------------

    def test_random_operations_match_a_sorted_list_model(
        self, make_queue: Any, make_job: Any
    ) -> None:
        ids = list(range(1, 13))
        priorities = [0, 1, 2, 2**31, U32]
        times = [None, 0.0, 1.0, 1.5, 1e9]

        def execute(ops: list[tuple]) -> None:
            c = QueueChecker(make_queue)
            latest: dict[int, Any] = {}  # the last job object made for each id
            for op in ops:
                name = op[0]
                if name == "push":
                    job = make_job(op[1], priority=op[2], runnable_at=op[3])
                    if op[1] not in c.model:  # a refused duplicate is no job to follow
                        latest[op[1]] = job
                    c.push(job)
                elif name == "pop":
                    c.pop()
                elif name == "peek":
                    c.peek()
                elif name == "update":
                    job = latest.get(op[1])
                    if job is None:
                        job = latest[op[1]] = make_job(op[1])
                    c.update(job, priority=op[2], runnable_at=op[3])
                elif name == "remove":
                    c.remove(op[1])
                elif name == "lookup":
                    c.check_lookup(op[1], R.GET, latest.get(op[1]))
                else:
                    c.check_iteration()
            c.check_iteration()
            c.drain()

        def draw(rng: random.Random) -> tuple:
            name = rng.choice(["push", "push", "push", "pop", "peek", "update", "remove", "lookup"])
            if name in ("pop", "peek"):
                return (name,)
            if name in ("remove", "lookup"):
                return (name, rng.choice(ids))
            return (name, rng.choice(ids), rng.choice(priorities), rng.choice(times))

        def strategy() -> Any:
            from hypothesis import strategies as st

            key = (st.sampled_from(ids), st.sampled_from(priorities), st.sampled_from(times))
            return st.one_of(
                st.tuples(st.just("push"), *key),
                st.tuples(st.sampled_from(["pop", "peek", "iter"])),
                st.tuples(st.just("update"), *key),
                st.tuples(st.sampled_from(["remove", "lookup"]), st.sampled_from(ids)),
            )

        run_programs(
            execute,
            draw,
            strategy,
            use_hypothesis=self.use_hypothesis,
            examples=self.random_examples,
            length=self.random_length,
        )

    def test_four_threads_lose_and_duplicate_nothing(self, make_queue: Any, make_job: Any) -> None:
        """4 threads push, update and pop at once.

        A thread changes the key only of a job it holds outside the queue (one
        it popped) before pushing it back: changing a key and calling update()
        are two steps, which the callers must serialise themselves.
        """
        queue = make_queue()
        threads_n = 4
        start = threading.Barrier(threads_n)
        pushed: list[list[int]] = [[] for _ in range(threads_n)]
        taken: list[list[int]] = [[] for _ in range(threads_n)]
        errors: list[str] = []
        wrong: list[str] = []  # pop() gave None: the queue seemed empty and did not say so

        def worker(n: int) -> None:
            rng = random.Random(n)
            mine: list[Any] = []
            next_id = n * 1_000_000 + 1
            try:
                start.wait()
                for _ in range(self.thread_ops):
                    op = rng.random()
                    if op < 0.4 or not mine:
                        job = make_job(next_id, priority=rng.randrange(8))
                        next_id += 1
                        queue.push(job)
                        mine.append(job)
                        pushed[n].append(job.id)
                    elif op < 0.7:
                        try:
                            job = queue.pop()
                        except EmptyQueue:
                            continue
                        if job is None:
                            wrong.append(f"thread {n}: pop() returned None")
                            return
                        if rng.random() < 0.5:  # back in, with a new key
                            job.priority = rng.randrange(8)
                            job.runnable_at = rng.choice([None, 1.0, 2.0])
                            queue.push(job)
                        else:
                            taken[n].append(job.id)
                    else:
                        job = rng.choice(mine)
                        try:
                            queue.update(job)
                        except JobMissing:
                            mine.remove(job)  # someone popped it
            except BaseException as exc:
                errors.append(f"thread {n}: {type(exc).__name__}: {exc}")

        old = sys.getswitchinterval()
        sys.setswitchinterval(1e-6)
        try:
            threads = [threading.Thread(target=worker, args=(n,)) for n in range(threads_n)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=300)
        finally:
            sys.setswitchinterval(old)
        trace = Trace(f"{threads_n} threads, {self.thread_ops} operations each, seeds 0..3")
        trace.check(not any(t.is_alive() for t in threads), R.THREADS, "a thread never finished")
        trace.check(not wrong, R.EMPTY_POP, lambda: "\n".join(wrong))
        trace.check(not errors, R.THREADS, lambda: "\n".join(errors))
        rest = []
        last = None
        while True:
            try:
                job = queue.pop()
            except EmptyQueue:
                break
            trace.check(job is not None, R.EMPTY_POP, "pop() returned None after the threads")
            if last is not None:
                trace.check(
                    sort_key(last) < sort_key(job),
                    R.for_order(job, last),
                    lambda job=job, last=last: (
                        f"after the threads, pop() gave {show(last)} before {show(job)}"
                    ),
                )
            last = job
            rest.append(job.id)
        everything = [i for ids in taken for i in ids] + rest
        duplicates = len(everything) - len(set(everything))
        trace.check(duplicates == 0, R.THREADS, f"{duplicates} jobs came out twice")
        want = sorted(i for ids in pushed for i in ids)
        trace.check(
            sorted(everything) == want,
            R.THREADS,
            lambda: (
                f"{len(set(want) - set(everything))} jobs were lost, "
                f"{len(set(everything) - set(want))} invented"
            ),
        )
