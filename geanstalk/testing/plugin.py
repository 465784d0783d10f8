"""The pytest plugin (entry point ``pytest11: geanstalk``): server fixtures.

Fixtures:

``geanstalk_server``
    A fresh server for one test, inside the test's process (its event loop in a
    background thread), on a free 127.0.0.1 port; ``.host``, ``.port``,
    ``.address`` and ``.advance(seconds)``. Accepting when the test starts;
    stopped, its connections closed and its thread ended at teardown.
``geanstalk_server_factory``
    ``factory(**options)`` starts another such server with options named as
    ``geanstalk serve``'s long flags (``max_job_size=``, ``binlog_dir=``,
    ``fsync_ms=``, ``no_fsync=True``, ``binlog_size=``, ``listen="unix:PATH"``);
    every server it started is stopped at teardown.
``geanstalk_process`` / ``geanstalk_process_factory``
    The same as a real ``geanstalk serve`` subprocess (``.pid``, ``.kill()``,
    ``.terminate()``, ``.restart()``), for tests that kill or signal it.

``--geanstalk-host HOST[:PORT]`` (or the ini setting ``geanstalk_host``)
points ``geanstalk_server`` and its factory at a server you run yourself
(beanstalkd, say); ``advance`` then raises AdvanceUnavailable and the process
fixtures skip. ``-p no:geanstalk`` turns the plugin off.

This module imports nothing of the server: a test run that never asks for a
fixture pays for none of it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("geanstalk", "geanstalk server fixtures")
    group.addoption(
        "--geanstalk-host",
        dest="geanstalk_host",
        default=None,
        metavar="HOST[:PORT]",
        help="run the geanstalk_server fixtures against this external beanstalkd-compatible "
        "server instead of one in-process (advance() is then unavailable)",
    )
    parser.addini(
        "geanstalk_host",
        "HOST[:PORT] of an external server for the geanstalk_server fixtures (as --geanstalk-host)",
        default="",
    )


def _external(request: pytest.FixtureRequest) -> Any:
    from geanstalk.testing.external import external_server

    return external_server(request.config)


@pytest.fixture
def geanstalk_server_factory(request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """Start in-process servers by keyword options; all are stopped at teardown."""
    started: list[Any] = []
    external = _external(request)

    def factory(**options: Any) -> Any:
        if external is not None:
            from geanstalk.testing.external import check_no_options

            check_no_options(options, external)
            started.append(external)
            return external
        from geanstalk.testing.inprocess import InProcessServer
        from geanstalk.testing.options import to_config

        server = InProcessServer(to_config(options))
        server.start()
        started.append(server)
        return server

    yield factory
    errors = []
    for server in reversed(started):
        try:
            server.stop()
        except Exception as exc:  # stop the others first, then report
            errors.append(exc)
    if errors:
        raise errors[0]


@pytest.fixture
def geanstalk_server(geanstalk_server_factory: Callable[..., Any]) -> Any:
    """A fresh in-process server on a free loopback port, for this test only."""
    return geanstalk_server_factory()


@pytest.fixture
def geanstalk_process_factory(request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """Start `geanstalk serve` subprocesses by keyword options; all stopped at teardown."""
    if _external(request) is not None:
        pytest.skip("geanstalk_process starts a local server; --geanstalk-host is set")
    started: list[Any] = []

    def factory(**options: Any) -> Any:
        from geanstalk.testing.options import to_argv
        from geanstalk.testing.process import ServerProcess

        listen = str(options.get("listen", "127.0.0.1"))
        proc = ServerProcess(to_argv(options), listen, int(options.get("port", 0)))
        started.append(proc)
        return proc.start()

    yield factory
    for proc in reversed(started):
        proc.stop()


@pytest.fixture
def geanstalk_process(geanstalk_process_factory: Callable[..., Any]) -> Any:
    """A fresh `geanstalk serve` subprocess on a free loopback port, for this test only."""
    return geanstalk_process_factory()
