"""What the three contract suites share: rules, the trace of operations, and failures.

A contract test does not just assert: every call it makes on the object under
test goes through a :class:`Traced` wrapper that writes the call and its
result into a :class:`Trace`, and a failed check raises
:class:`ContractViolation` naming the :class:`Rule` that broke, what was
expected, what happened, and the operations that led there. Someone whose
implementation fails reads which rule to fix and how to reproduce it, instead
of an ``assert x == y`` deep inside a helper.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest

# How many of the latest operations a failure message shows.
TRACE_LINES = 40


class ContractViolation(AssertionError):
    """An implementation broke one of the contract's rules."""

    def __init__(self, rule: Rule, detail: str, trace: Trace | None = None) -> None:
        self.rule = rule
        self.detail = detail
        self.trace = trace
        lines = [f"contract rule broken: {rule}", *(f"  {line}" for line in detail.splitlines())]
        if trace is not None:
            lines.append(trace.render())
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class Rule:
    """One rule of a contract: a short key to search for and the sentence it stands for."""

    key: str
    text: str

    def __str__(self) -> str:
        return f"[{self.key}] {self.text}"


def show(value: Any) -> str:
    """A job as its ordering key, anything else as its repr (for traces)."""
    if hasattr(value, "priority") and hasattr(value, "runnable_at") and hasattr(value, "id"):
        return f"Job(id={value.id}, priority={value.priority}, runnable_at={value.runnable_at!r})"
    if isinstance(value, tuple):
        return "(" + ", ".join(show(v) for v in value) + ")"
    if isinstance(value, list):
        return "[" + ", ".join(show(v) for v in value) + "]"
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


class Trace:
    """The operations done so far on the object(s) under test, in order."""

    def __init__(self, setup: str) -> None:
        self.setup = setup
        self.lines: list[str] = []

    def record(self, line: str) -> None:
        self.lines.append(line)

    def render(self) -> str:
        shown = self.lines[-TRACE_LINES:]
        skipped = len(self.lines) - len(shown)
        out = [f"operations that led there ({self.setup}):"]
        if skipped:
            out.append(f"  ... {skipped} earlier operations")
        first = skipped + 1
        out += [f"  {n:>3}. {line}" for n, line in enumerate(shown, start=first)]
        return "\n".join(out)

    def fail(self, rule: Rule, detail: str) -> ContractViolation:
        """The exception to raise for ``rule``; the caller raises it (so tracebacks point there)."""
        return ContractViolation(rule, detail, self)

    def check(self, ok: bool, rule: Rule, detail: str | Callable[[], str]) -> None:
        __tracebackhide__ = True
        if not ok:
            raise self.fail(rule, detail() if callable(detail) else detail)


_MISSING = object()


class Traced:
    """Calls on ``target`` that land in ``trace``.

    ``call`` is for operations the rules say must succeed: an exception there
    is itself a violation of ``rule``. ``call_raising`` is for operations that
    must raise one given exception class.
    """

    def __init__(self, target: Any, trace: Trace, name: str) -> None:
        self.target = target
        self.trace = trace
        self.name = name

    def _text(self, method: str, args: Sequence[Any]) -> str:
        if method == "__contains__":
            return f"{show(args[0])} in {self.name}"
        if method == "__len__":
            return f"len({self.name})"
        if method == "__iter__":
            return f"list({self.name})"
        if method == "__getitem__":
            return f"{self.name}[{show(args[0])}]"
        return f"{self.name}.{method}(" + ", ".join(show(a) for a in args) + ")"

    def _invoke(self, method: str, args: Sequence[Any]) -> Any:
        if method == "__contains__":
            return args[0] in self.target
        if method == "__len__":
            return len(self.target)
        if method == "__iter__":
            return list(self.target)
        if method == "__getitem__":
            return self.target[args[0]]
        return getattr(self.target, method)(*args)

    def call(self, rule: Rule, method: str, *args: Any) -> Any:
        __tracebackhide__ = True
        text = self._text(method, args)
        try:
            result = self._invoke(method, args)
        except Exception as exc:
            self.trace.record(f"{text} -> raised {type(exc).__name__}: {exc}")
            raise self.trace.fail(
                rule, f"{text} raised {type(exc).__name__}: {exc}; it must succeed here"
            ) from exc
        if method != "__len__":  # a wrong len is reported by its own check
            self.trace.record(f"{text} -> {show(result)}")
        return result

    def call_raising(self, rule: Rule, error: type[BaseException], method: str, *args: Any) -> None:
        __tracebackhide__ = True
        text = self._text(method, args)
        try:
            result = self._invoke(method, args)
        except error as exc:
            self.trace.record(f"{text} -> raised {type(exc).__name__}")
            return
        except Exception as exc:
            self.trace.record(f"{text} -> raised {type(exc).__name__}: {exc}")
            raise self.trace.fail(
                rule,
                f"{text} raised {type(exc).__name__}: {exc}; expected {error.__name__}",
            ) from exc
        self.trace.record(f"{text} -> {show(result)}")
        raise self.trace.fail(
            rule, f"{text} returned {show(result)}; expected it to raise {error.__name__}"
        )


# --- random operation programs -----------------------------------------------------

# Pick the seeded run even when hypothesis is installed (set by the tests of
# the fallback itself, and by anyone who wants a deterministic run).
NO_HYPOTHESIS_ENV = "GEANSTALK_CONTRACT_NO_HYPOTHESIS"


def hypothesis_available() -> bool:
    if os.environ.get(NO_HYPOTHESIS_ENV):
        return False
    try:
        import hypothesis  # noqa: F401
    except ImportError:
        return False
    return True


def run_programs(
    execute: Callable[[list[tuple]], None],
    draw_op: Callable[[random.Random], tuple],
    op_strategy: Callable[[], Any],
    *,
    use_hypothesis: bool | None,
    examples: int,
    length: int,
) -> None:
    """Run random operation programs through ``execute``.

    With hypothesis (when installed and not turned off) the programs come from
    ``op_strategy()`` and a failing one is shrunk before it is reported; without
    it, ``examples`` programs drawn by ``draw_op`` from seeds 0, 1, 2, ... run,
    and a failure names its seed.
    """
    if use_hypothesis is None:
        use_hypothesis = hypothesis_available()
    if use_hypothesis:
        from hypothesis import HealthCheck, given, settings
        from hypothesis import strategies as st

        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(st.lists(op_strategy(), max_size=length))
        def program(ops: list[tuple]) -> None:
            execute(ops)

        program()
        return
    for seed in range(examples):
        rng = random.Random(seed)
        ops = [draw_op(rng) for _ in range(rng.randrange(length + 1))]
        try:
            execute(ops)
        except ContractViolation as exc:
            exc.args = (f"{exc.args[0]}\n(seeded random program, seed {seed})",)
            raise


class ContractTests:
    """What the three contract classes share: the random-program settings
    (see JobPriorityQueueTests) and the default ``make_job`` fixture."""

    random_examples: ClassVar[int] = 100
    random_length: ClassVar[int] = 60
    use_hypothesis: ClassVar[bool | None] = None

    @pytest.fixture
    def make_job(self) -> Callable[..., Any]:
        from geanstalk.core import Job

        return Job
