"""Pick the compiled core when it can be used, else its pure-Python twin.

GEANSTALK_NO_EXTENSIONS=1 forces the pure twin (for debugging, and for the
test that the fallback works); so does a non-CPython interpreter, where the C
extension cannot help, and an install whose extension was not built.
"""

from __future__ import annotations

import os
import platform

if os.environ.get("GEANSTALK_NO_EXTENSIONS") or platform.python_implementation() != "CPython":
    from . import _core_py as _impl
else:
    try:
        from . import _core as _impl  # type: ignore[no-redef]
    except ImportError:
        from . import _core_py as _impl  # type: ignore[no-redef]

Job = _impl.Job
JobHeap = _impl.JobHeap
JobTable = _impl.JobTable
TubeHeap = _impl.TubeHeap
less = _impl.less
READY, DELAYED, RESERVED, BURIED = _impl.READY, _impl.DELAYED, _impl.RESERVED, _impl.BURIED
STATE_NAMES: tuple[str, ...] = _impl.STATE_NAMES
COMPILED: bool = _impl.COMPILED
IMPLEMENTATION: str = _impl.__name__  # which module was picked, for tests and bug reports

__all__ = ["BURIED", "COMPILED", "DELAYED", "IMPLEMENTATION", "READY", "RESERVED"]
__all__ += ["STATE_NAMES", "Job", "JobHeap", "JobTable", "TubeHeap", "less"]
