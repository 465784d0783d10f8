"""The Runner and the config: a server started and stopped on a loop of the
test's own, over a real socket; the flag tables; the module layering."""

from __future__ import annotations

import ast
import asyncio
import pathlib

import pytest

import geanstalk
from geanstalk.cli import COMMANDS, LONG_OPTIONS, UsageError, main, parse_args
from geanstalk.config import ServerConfig
from geanstalk.runner import Runner
from tests.servers import listening_socket

PACKAGE = pathlib.Path(geanstalk.__file__).parent


async def _talk(port: int, data: bytes, expect: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    out = b""
    while out.count(b"\r\n") < expect:
        chunk = await reader.read(4096)
        if not chunk:
            break
        out += chunk
    writer.close()
    return out


def test_runner_serves_then_stops_and_runs_its_hooks() -> None:
    events: list[str] = []

    async def scenario() -> None:
        sock = listening_socket()
        port = sock.getsockname()[1]
        runner = Runner(ServerConfig(), [sock], install_signals=False)
        runner.on_ready.append(lambda r: events.append(f"ready {r.ready}"))

        async def on_stopping(r: Runner) -> None:
            events.append(f"stopping {r.ready}")

        runner.on_stopping.append(on_stopping)
        await runner.start()
        assert await _talk(port, b"put 0 0 10 2\r\nhi\r\n", 1) == b"INSERTED 1\r\n"
        runner.request_stop("test")
        assert await runner.wait() == "test"
        await runner.stop()
        await runner.stop()  # a second stop does nothing
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", port)

    asyncio.run(scenario())
    assert events == ["ready True", "stopping False"]


def test_runner_with_a_binlog_recovers_jobs(tmp_path: pathlib.Path) -> None:
    cfg = ServerConfig(binlog_dir=str(tmp_path), fsync_ms=0)

    async def session(body: bytes | None) -> bytes:
        sock = listening_socket()
        runner = Runner(cfg, [sock], install_signals=False)
        await runner.start()
        try:
            port = sock.getsockname()[1]
            if body is not None:
                return await _talk(port, b"put 5 0 10 %d\r\n%s\r\n" % (len(body), body), 1)
            return await _talk(port, b"peek-ready\r\n", 2)
        finally:
            await runner.stop()

    assert asyncio.run(session(b"kept")) == b"INSERTED 1\r\n"
    assert asyncio.run(session(None)) == b"FOUND 1 4\r\nkept\r\n"


def test_config_takes_options_by_keyword_and_refuses_unknown_ones() -> None:
    cfg = ServerConfig(port=0, max_job_size=10)
    assert (cfg.port, cfg.max_job_size, cfg.listen) == (0, 10, "0.0.0.0")
    assert cfg == ServerConfig(port=0, max_job_size=10)
    assert ServerConfig(listen="::1", port=5).listen_address == "[::1]:5"
    assert ServerConfig(listen="unix:/tmp/s").listen_address == "unix:/tmp/s"
    with pytest.raises(TypeError, match="no option 'prot'"):
        ServerConfig(prot=1)


def test_flags_fill_the_config() -> None:
    cfg, action = parse_args(["-l", "127.0.0.1", "-p11301", "-z", "100", "-VV", "--no-uvloop"])
    assert action == "serve"
    assert (cfg.listen, cfg.port, cfg.max_job_size, cfg.verbose, cfg.uvloop) == (
        "127.0.0.1",
        11301,
        100,
        2,
        False,
    )
    assert parse_args(["-v"])[1] == "version"
    assert parse_args(["--help"])[1] == "help"
    with pytest.raises(UsageError):
        parse_args(["--no-uvloop=1"])
    with pytest.raises(UsageError):
        parse_args(["--no-such-flag"])


def test_long_options_table_kinds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(LONG_OPTIONS, "--test-size", ("max_job_size", "size"))
    monkeypatch.setitem(LONG_OPTIONS, "--test-str", ("user", "str"))
    cfg, _ = parse_args(["--test-size=7", "--test-str", "nobody"])
    assert (cfg.max_job_size, cfg.user) == (7, "nobody")
    with pytest.raises(UsageError, match="invalid size"):
        parse_args(["--test-size", "x"])
    with pytest.raises(UsageError, match="requires an argument"):
        parse_args(["--test-str"])


def test_commands_are_dispatched_through_the_table(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(COMMANDS, "echo-args", "tests.server.test_runner:_echo_command")
    assert main(["echo-args", "a", "b"]) == 3
    assert capsys.readouterr().out == "a b\n"
    assert main(["no-such-command"]) != 0


def _echo_command(argv: list[str]) -> int:
    print(" ".join(argv))
    return len(argv) + 1


def _imports(module: str) -> set[str]:
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.removeprefix("geanstalk."))
        elif isinstance(node, ast.Import):
            names.update(a.name.removeprefix("geanstalk.") for a in node.names)
    return names


@pytest.mark.parametrize(
    ("module", "must_not_import"),
    [
        ("server", "protocol"),  # the facade is handed its connection factory
        ("storage", "waiters"),  # storage never reaches up to the lock service
        ("storage", "server"),
        ("waiters", "server"),
        ("protocol", "runner"),
    ],
)
def test_layers_import_only_downwards(module: str, must_not_import: str) -> None:
    assert must_not_import not in _imports(module)
