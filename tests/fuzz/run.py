"""Run one fuzz target under atheris: ``python -m tests.fuzz.run TARGET [libFuzzer flags]``.

For example, a million inputs of the framing target, starting from (and
adding to) a scratch copy of its checked-in corpus::

    python -m tests.fuzz.run framing -runs=1000000 -max_len=4096

Needs the ``fuzz`` extra (``pip install -e '.[fuzz]'``). libFuzzer's flags
pass through: ``-runs=N``, ``-max_len=N``, ``-timeout=S`` (an input that
takes longer is reported as a hang), ``-jobs=N``, ``-print_final_stats=1``.
With no directory among the flags, the run reads the checked-in corpus and
writes new inputs to tests/fuzz/scratch/TARGET (see docs/SECURITY.md for
folding them back with ``-merge=1``); a crashing input is saved as
tests/fuzz/scratch/TARGET-crash-*. TARGET.dict beside this file, if there
is one, is passed as the libFuzzer dictionary.
"""

from __future__ import annotations

import os
import shlex
import sys

import atheris

HERE = os.path.dirname(os.path.abspath(__file__))
TARGET_NAMES = ("framing", "binlog", "tls_auth")
TARGET_VARIABLE = "GEANSTALK_FUZZ_TARGET"


def main(argv: list[str]) -> int:
    # libFuzzer runs this command again for -merge, -fork and -jobs, with
    # its own flags and without the target's name: that comes by environment.
    if len(argv) >= 2 and argv[1] in TARGET_NAMES:
        name, flags = argv[1], argv[2:]
        os.environ[TARGET_VARIABLE] = name
    elif os.environ.get(TARGET_VARIABLE) in TARGET_NAMES:
        name, flags = os.environ[TARGET_VARIABLE], argv[1:]
    else:
        print(__doc__, file=sys.stderr)
        return 2
    with atheris.instrument_imports(include=["geanstalk"]):
        import geanstalk.auth
        import geanstalk.binlog
        import geanstalk.binlog_format
        import geanstalk.binlog_replay
        import geanstalk.protocol
        import geanstalk.server
        import geanstalk.storage
        import geanstalk.tls  # noqa: F401
    from tests.fuzz import targets

    target = targets.TARGETS[name]
    dictionary = os.path.join(HERE, f"{name}.dict")
    if os.path.exists(dictionary) and not any(f.startswith("-dict=") for f in flags):
        flags = [*flags, f"-dict={dictionary}"]
    if not any(f.startswith("-artifact_prefix=") for f in flags):
        os.makedirs(os.path.join(HERE, "scratch"), exist_ok=True)
        flags = [*flags, f"-artifact_prefix={os.path.join(HERE, 'scratch', name)}-"]
    if not any(not f.startswith("-") for f in flags):
        scratch = os.path.join(HERE, "scratch", name)
        os.makedirs(scratch, exist_ok=True)
        flags = [*flags, scratch, os.path.join(HERE, "corpus", name)]
    # The command libFuzzer's child processes run (it goes through sh).
    command = f"{shlex.quote(sys.executable)} -m tests.fuzz.run"
    atheris.Setup([command, *flags], target)
    try:
        atheris.Fuzz()
    finally:
        targets.remove_scratch()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
