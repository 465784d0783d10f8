"""Fixtures for the wire tests: one long-lived server per kind, started on first use.

Every wire test runs against geanstalk and against the reference beanstalkd,
so each expectation is proven on the reference in the same run. The
beanstalkd case is skipped when the binary is absent; the geanstalk case
never is.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from wire_runner import STEP_COUNTER

from tests.servers import (
    BEANSTALKD,
    SKIP_NO_REFERENCE,
    ServerProcess,
    make_server,
)

KINDS = [
    "geanstalk",
    pytest.param(
        "beanstalkd", marks=pytest.mark.skipif(BEANSTALKD is None, reason=SKIP_NO_REFERENCE)
    ),
]


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


class SharedServers:
    """Servers started lazily, one per kind, stopped at the end of the session."""

    def __init__(self) -> None:
        self.servers: dict[str, ServerProcess] = {}

    def get(self, kind: str) -> ServerProcess:
        server = self.servers.get(kind)
        if server is None or server.proc is None or server.proc.poll() is not None:
            server = make_server(kind).start()
            self.servers[kind] = server
        return server

    def stop_all(self) -> None:
        for server in self.servers.values():
            server.stop()


@pytest.fixture(scope="session")
def shared_servers() -> Iterator[SharedServers]:
    servers = SharedServers()
    try:
        yield servers
    finally:
        servers.stop_all()


@pytest.fixture
def server(kind: str, shared_servers: SharedServers) -> ServerProcess:
    """The shared server of this kind: use unique tube names, never assume ids."""
    return shared_servers.get(kind)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for name, count in sorted(STEP_COUNTER.items()):
        terminalreporter.write_line(f"wire: {count} {name}")
