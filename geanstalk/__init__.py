"""geanstalk: a beanstalkd-compatible work queue with a compiled core.

The package root exports the core data structures only, so that importing
geanstalk stays cheap (no asyncio); the server lives in its own modules.
"""

from ._version import __version__
from .core import (
    BURIED,
    COMPILED,
    DELAYED,
    READY,
    RESERVED,
    STATE_NAMES,
    Job,
    JobHeap,
    JobTable,
    TubeHeap,
    less,
)

__all__ = [
    "BURIED",
    "COMPILED",
    "DELAYED",
    "READY",
    "RESERVED",
    "STATE_NAMES",
    "Job",
    "JobHeap",
    "JobTable",
    "TubeHeap",
    "__version__",
    "less",
]
