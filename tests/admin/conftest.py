"""Fixtures for the admin CLI tests: a fresh server of each kind, and the CLI run in-process.

Every admin command is proven against geanstalk and against the reference
beanstalkd (skipped with a reason when it is not on PATH), over a real
socket. The CLI runs in this process through geanstalk.cli.main (the same
entry point as the console script) with stdin/stdout swapped for buffers,
which keeps the tests fast; the tests that need a real process (a terminal,
the console script) start one.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from tests.servers import BEANSTALKD, SKIP_NO_REFERENCE, ServerProcess, make_server

KINDS = [
    "geanstalk",
    pytest.param(
        "beanstalkd", marks=pytest.mark.skipif(BEANSTALKD is None, reason=SKIP_NO_REFERENCE)
    ),
]


@pytest.fixture(params=KINDS)
def server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    proc = make_server(request.param).start()
    try:
        yield proc
    finally:
        proc.stop()


@dataclass
class Result:
    code: int
    out: bytes
    err: str

    @property
    def text(self) -> str:
        return self.out.decode("utf-8", "replace")


def run_cli(argv: list[str], stdin: bytes = b"") -> Result:
    """`geanstalk ARGV` in this process: exit code, stdout bytes, stderr text."""
    from geanstalk.cli import main

    out = io.BytesIO()
    err = io.StringIO()
    saved = sys.stdin, sys.stdout, sys.stderr
    fake_in = io.TextIOWrapper(io.BytesIO(stdin))
    fake_out = io.TextIOWrapper(out, write_through=True)
    sys.stdin, sys.stdout, sys.stderr = fake_in, fake_out, err
    try:
        code = main(argv)
        fake_out.flush()
        written = out.getvalue()
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved
    return Result(code, written, err.getvalue())


@pytest.fixture
def cli(server: ServerProcess) -> Callable[..., Result]:
    """cli("stats", "--json") runs `geanstalk stats --json -a <server>`."""

    def _run(*args: str, stdin: bytes = b"") -> Result:
        return run_cli([*args, "-a", f"127.0.0.1:{server.port}"], stdin)

    return _run
