"""--log-format json, the operations flags, and the facade's stats values."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from ophelp import say

from geanstalk.cli import parse_args
from geanstalk.config import ServerConfig
from geanstalk.server import Server
from tests.servers import geanstalk_server


def test_json_log_lines(tmp_path: Path) -> None:
    err = tmp_path / "stderr"
    server = geanstalk_server("-V", "--log-format", "json", stderr_path=str(err)).start()
    try:
        with server.connect() as c:
            assert say(c, b"list-tube-used\r\n") == b"USING default\r\n"
    finally:
        assert server.stop() == 0
    lines = err.read_text().splitlines()
    assert lines
    docs = [json.loads(line) for line in lines]  # every line is one object
    for doc in docs:
        assert set(doc) == {"time", "level", "event", "fields"}
        assert doc["time"].endswith("Z") and doc["level"] == "info"
        assert doc["fields"]["pid"] == server.pid
    events = [d["event"] for d in docs]
    assert any(e.startswith("accept ") for e in events)
    assert any(e.startswith("SIGTERM") for e in events)


def test_text_logs_stay_as_they_were(tmp_path: Path) -> None:
    err = tmp_path / "stderr"
    server = geanstalk_server("-V", stderr_path=str(err)).start()
    server.stop()
    lines = err.read_text().splitlines()
    assert lines[0] == f"geanstalk: pid {server.pid}"


def test_operations_flags() -> None:
    cfg, action = parse_args(
        [
            "--http",
            "127.0.0.1:9100",
            "--metrics-names=beanstalkd-rs",
            "--no-metrics-instance",
            "--metrics-tube-limit",
            "50",
            "--log-format",
            "json",
        ]
    )
    assert action == "serve"
    assert (cfg.http, cfg.metrics_names, cfg.metrics_instance) == (
        "127.0.0.1:9100",
        "beanstalkd-rs",
        False,
    )
    assert (cfg.metrics_tube_limit, cfg.log_format) == (50, "json")
    default = ServerConfig()
    assert default.http is None and default.metrics_names == "beanstalkd-exporter"


@pytest.mark.parametrize(
    "argv", [["--metrics-names", "prom"], ["--log-format=xml"], ["--metrics-tube-limit", "-1"]]
)
def test_operations_flags_refuse_bad_values(argv: list[str]) -> None:
    from geanstalk.cli import UsageError

    with pytest.raises(UsageError):
        parse_args(argv)


def test_stats_values_agree_with_the_stats_document() -> None:
    """server_values()/tube_values() feed /metrics and /stats.json; they must
    say what stats and stats-tube say, key for key and in the same order."""
    loop = asyncio.new_event_loop()
    try:
        server = Server(loop, clock=lambda: 100.0)
        doc = server.stats_doc().decode().splitlines()[1:]
        values = server.stats_values()
        assert [line.split(": ")[0] for line in doc] == list(values)
        for line in doc:
            key, text = line.split(": ", 1)
            v = values[key]
            if isinstance(v, bool):
                v = "true" if v else "false"
            elif isinstance(v, float):
                v = f"{v:.6f}"
            elif key == "version":
                v = f'"{v}"'
            if key not in ("rusage-utime", "rusage-stime"):
                assert str(v) == text, key
        tube = server.storage.tube(b"default")
        tdoc = server.stats.stats_tube(tube).decode().splitlines()[1:]
        tvals = server.tube_values()[0]
        assert [line.split(": ")[0] for line in tdoc] == list(tvals)
        assert [line.split(": ", 1)[1] for line in tdoc] == [str(v) for v in tvals.values()]
    finally:
        loop.close()


def test_server_without_http_has_no_metrics_and_plain_connections() -> None:
    """Nothing of the endpoint is loaded or wired when --http is off."""
    import subprocess
    import sys

    code = (
        "import asyncio, sys\n"
        "from geanstalk.config import ServerConfig\n"
        "from geanstalk.runner import Runner\n"
        "async def main():\n"
        "    r = Runner(ServerConfig(listen='127.0.0.1', port=0), install_signals=False)\n"
        "    await r.start()\n"
        "    assert r.server.metrics is None and r.http is None\n"
        "    assert r.server.connection_factory.__name__ == 'Connection'\n"
        "    assert '_reserve' not in vars(r.server.storage)\n"
        "    await r.stop()\n"
        "asyncio.run(main())\n"
        "loaded = [m for m in sys.modules if m.startswith('geanstalk.') and m.split('.')[1] in\n"
        "          ('http', 'metrics', 'metrics_stats', 'exposition', 'instrumented', 'systemd', 'logformat')]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("value", ["9100", "127.0.0.1:", "127.0.0.1:70000"])
def test_bad_http_address_is_a_usage_error(value: str) -> None:
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, "-m", "geanstalk", "serve", "-l", "127.0.0.1", "-p", "0", "--http", value],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 5
    assert "--http wants ADDR:PORT" in r.stderr
