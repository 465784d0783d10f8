"""geanstalk.testing: reusable contract suites and the pytest plugin's server fixtures.

The contract suites are pytest test classes to subclass (see each class)::

    from geanstalk.testing import JobPriorityQueueTests

    class TestMyQueue(JobPriorityQueueTests):
        @pytest.fixture
        def make_queue(self):
            return MyQueue

The server classes behind the fixtures (InProcessServer, ServerProcess,
ExternalServer) and AdvanceUnavailable are here too. The names are imported
on first use, so that the pytest plugin
(``geanstalk.testing.plugin``), which lives in this package, costs a pytest
run that never uses it next to nothing.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from geanstalk.testing._contract import ContractViolation, Rule
    from geanstalk.testing.external import AdvanceUnavailable, ExternalServer, ExternalServerError
    from geanstalk.testing.inprocess import InProcessServer
    from geanstalk.testing.process import ServerProcess
    from geanstalk.testing.queue_contract import JobPriorityQueueTests, QueueRules
    from geanstalk.testing.registry_contract import JobRegistryTests, RegistryRules
    from geanstalk.testing.tube_contract import TubePriorityQueueTests, TubeRules

_WHERE = {
    "AdvanceUnavailable": "external",
    "ExternalServer": "external",
    "ExternalServerError": "external",
    "InProcessServer": "inprocess",
    "ServerProcess": "process",
    "ContractViolation": "_contract",
    "Rule": "_contract",
    "JobPriorityQueueTests": "queue_contract",
    "QueueRules": "queue_contract",
    "TubePriorityQueueTests": "tube_contract",
    "TubeRules": "tube_contract",
    "JobRegistryTests": "registry_contract",
    "RegistryRules": "registry_contract",
}

__all__ = [
    "AdvanceUnavailable",
    "ContractViolation",
    "ExternalServer",
    "ExternalServerError",
    "InProcessServer",
    "JobPriorityQueueTests",
    "JobRegistryTests",
    "QueueRules",
    "RegistryRules",
    "Rule",
    "ServerProcess",
    "TubePriorityQueueTests",
    "TubeRules",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'geanstalk.testing' has no attribute {name!r}")
    value = getattr(import_module(f"geanstalk.testing.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
