"""The contract suites run as a user runs them: pytester, a module that subclasses them.

A correct implementation passes every contract test; each deliberately broken
one fails, and the failure message names the rule it broke.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from geanstalk.testing import JobPriorityQueueTests, JobRegistryTests, TubePriorityQueueTests

HERE = Path(__file__).parent
IMPLS = (HERE / "list_queues.py").read_text()

QUEUE_MODULE = """
import pytest
from geanstalk.testing import JobPriorityQueueTests
from list_queues import {name}

class TestIt(JobPriorityQueueTests):
    use_hypothesis = {hypothesis}
    random_examples = 40
    thread_ops = 200

    @pytest.fixture
    def make_queue(self):
        return {name}
"""


def contract_tests(cls: type) -> int:
    """How many tests one subclass of a contract class collects."""
    count = 0
    for name in dir(cls):
        if name.startswith("test_"):
            marks = getattr(getattr(cls, name), "pytestmark", [])
            params = [m for m in marks if m.name == "parametrize"]
            count += len(params[0].args[1]) if params else 1
    return count


def run_queue(
    pytester: pytest.Pytester, name: str, hypothesis: str = "None", *args: str
) -> pytest.RunResult:
    pytester.makepyfile(list_queues=IMPLS)
    pytester.makepyfile(test_it=QUEUE_MODULE.format(name=name, hypothesis=hypothesis))
    return pytester.runpytest("-p", "no:cacheprovider", "-q", "--tb=short", *args)


def test_a_correct_queue_passes_every_contract_test(pytester: pytest.Pytester) -> None:
    result = run_queue(pytester, "ListQueue")
    result.assert_outcomes(passed=contract_tests(JobPriorityQueueTests))


BROKEN = ["WrongTieBreak", "UpdateDoesNothing", "StaleIndex", "PopNone", "DuplicateAccepted"]


@pytest.mark.parametrize("name", BROKEN)
def test_a_broken_queue_fails_naming_the_rule(pytester: pytest.Pytester, name: str) -> None:
    from list_queues import BREAKS

    result = run_queue(pytester, name, "False")  # seeded: no shrinking to wait for
    out = result.stdout.str()
    assert result.ret == 1, out
    rule = BREAKS[name]
    assert f"contract rule broken: [{rule}]" in out, out
    assert "operations that led there (queue = make_queue()):" in out
    # every failed test names some rule, and the one named in the class docs is among them
    failed = re.findall(r"^FAILED .*", out, re.M)
    assert failed and len(re.findall(r"contract rule broken: \[", out)) >= len(failed)


def test_the_failure_message_shows_the_operations(pytester: pytest.Pytester) -> None:
    result = run_queue(pytester, "WrongTieBreak", "False", "-k", "lower_id")
    out = result.stdout.str()
    assert (
        "test_equal_keys_go_to_the_lower_id FAILED" in out
        or "test_equal_keys_go_to_the_lower_id" in out
    )
    block = out[out.index("[order.tie-break]") :]
    assert "expected pop() -> Job(id=1, priority=4, runnable_at=None)" in block
    assert "got pop() -> Job(id=18446744073709551615, priority=4, runnable_at=None)" in block
    assert "1. queue.push(Job(id=5, priority=4, runnable_at=None)) -> None" in block


def test_hypothesis_shrinks_a_failing_program(pytester: pytest.Pytester) -> None:
    result = run_queue(pytester, "WrongTieBreak", "True", "-k", "random")
    out = result.stdout.str()
    assert "[order.tie-break]" in out and "program(" in out, out
    # the shrunk program: two pushes of equal keys, then the pop that shows the order
    block = out[out.index("operations that led there") :]
    assert len(re.findall(r"^E +\d+\. ", block, re.M)) <= 6, block


def test_the_seeded_run_without_hypothesis_names_the_rule_and_seed(
    pytester: pytest.Pytester,
) -> None:
    result = run_queue(pytester, "WrongTieBreak", "False", "-k", "random")
    out = result.stdout.str()
    random_block = out[out.index("test_random_operations_match_a_sorted_list_model") :]
    assert "[order.tie-break]" in random_block
    assert re.search(r"seeded random program, seed \d+", random_block)


def test_the_correct_queue_passes_the_seeded_run(pytester: pytest.Pytester) -> None:
    result = run_queue(pytester, "ListQueue", hypothesis="False")
    result.assert_outcomes(passed=contract_tests(JobPriorityQueueTests))


REGISTRY_MODULE = """
import pytest
from geanstalk.testing import JobRegistryTests
from list_queues import {name}

class TestIt(JobRegistryTests):
    random_examples = 40
    use_hypothesis = False

    @pytest.fixture
    def make_registry(self):
        return {name}
"""


def test_a_correct_registry_passes_and_a_wrong_largest_id_fails(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(list_queues=IMPLS)
    pytester.makepyfile(test_good=REGISTRY_MODULE.format(name="ListRegistry"))
    pytester.makepyfile(test_bad=REGISTRY_MODULE.format(name="LargestIdNeverShrinks"))
    result = pytester.runpytest("-p", "no:cacheprovider", "-q", "--tb=short", "test_good.py")
    result.assert_outcomes(passed=contract_tests(JobRegistryTests))
    result = pytester.runpytest("-p", "no:cacheprovider", "-q", "--tb=short", "test_bad.py")
    assert result.ret == 1
    assert "contract rule broken: [registry.largest-id]" in result.stdout.str()
    pytester.makepyfile(test_zero=REGISTRY_MODULE.format(name="ZeroIsNoId"))
    result = pytester.runpytest(
        "-p", "no:cacheprovider", "-q", "--tb=short", "test_zero.py", "-k", "unsigned_64"
    )
    assert result.ret == 1
    assert "contract rule broken: [registry.ids]" in result.stdout.str()


TUBES_MODULE = """
import pytest
from geanstalk import _core_py
from geanstalk.testing import TubePriorityQueueTests

class NoFix(_core_py.TubeHeap):
    def fix(self, name):
        if name not in self:
            super().fix(name)

class PureTubes(TubePriorityQueueTests):
    random_examples = 40

    @pytest.fixture
    def make_queue(self):
        return _core_py.JobHeap

    @pytest.fixture
    def make_job(self):
        return _core_py.Job

class TestGood(PureTubes):
    @pytest.fixture
    def make_tubes(self):
        return _core_py.TubeHeap

class TestNoFix(PureTubes):
    use_hypothesis = False

    @pytest.fixture
    def make_tubes(self):
        return NoFix
"""


def test_tube_queues_good_and_one_whose_fix_does_nothing(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_tubes=TUBES_MODULE)
    result = pytester.runpytest("-p", "no:cacheprovider", "-q", "--tb=short", "-k", "TestGood")
    result.assert_outcomes(passed=contract_tests(TubePriorityQueueTests))
    result = pytester.runpytest("-p", "no:cacheprovider", "-q", "--tb=short", "-k", "TestNoFix")
    assert result.ret == 1
    assert "contract rule broken: [tubes.fix]" in result.stdout.str()
