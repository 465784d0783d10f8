"""The pytest plugin as users meet it: pytester runs of test modules that use its fixtures."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading

import pytest
from raw_client import Wire

USER_TESTS = """
import greenstalk
import pystalk


def test_greenstalk(geanstalk_server):
    host, port = geanstalk_server.address
    assert host == geanstalk_server.host == "127.0.0.1" and port == geanstalk_server.port
    with greenstalk.Client(geanstalk_server.address, use="emails") as client:
        client.put("hello", delay=60)
        geanstalk_server.advance(60)
        client.watch("emails")
        job = client.reserve(timeout=0)
        assert job.body == "hello"
        client.release(job)
        client.pause_tube("emails", 300)
        try:
            client.reserve(timeout=0)
            raise AssertionError("a paused tube gave a job")
        except greenstalk.TimedOutError:
            pass
        geanstalk_server.advance(300)
        assert client.reserve(timeout=0).id == job.id
        client.delete(job)


def test_pystalk(geanstalk_server):
    client = pystalk.BeanstalkClient(geanstalk_server.host, geanstalk_server.port)
    client.put_job(b"payload", ttr=30)
    job = client.reserve_job(timeout=0)
    assert job.job_data == b"payload"
    geanstalk_server.advance(31)  # the TTR runs out: the job is ready again
    again = client.reserve_job(timeout=0)
    assert again.job_id == job.job_id
    client.delete_job(again)
    client.close()


LEAKED = []


def test_leaks_a_reserved_job(geanstalk_server):
    client = greenstalk.Client(geanstalk_server.address)  # never closed
    client.put("leaked")
    LEAKED.append((client, client.reserve(timeout=0)))


def test_the_next_test_starts_clean(geanstalk_server):
    with greenstalk.Client(geanstalk_server.address) as client:
        stats = client.stats()
        assert stats["total-jobs"] == 0 and stats["current-connections"] == 1
        client.put("fresh")
        assert client.reserve(timeout=0).id == 1
    # the leaked client's server is gone: its connection was closed at teardown
    leaked_client, _ = LEAKED[0]
    try:
        leaked_client.stats()
    except (ConnectionError, OSError, greenstalk.Error):
        pass
    else:
        raise AssertionError("the previous test's server still answers")


def test_no_server_thread_is_left():
    import threading

    assert [t.name for t in threading.enumerate() if t.name.startswith("geanstalk-")] == []
"""


def test_fixtures_with_greenstalk_and_pystalk_and_a_leak(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=5)


def test_p_no_geanstalk_turns_the_plugin_off(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_off="def test_it(geanstalk_server):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:geanstalk")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'geanstalk_server' not found*"])


def test_the_plugin_imports_nothing_of_the_server() -> None:
    code = (
        "import sys, geanstalk.testing.plugin\n"
        "heavy = ['asyncio', 'geanstalk.server', 'geanstalk.runner', 'geanstalk.protocol',"
        " 'geanstalk.testing.queue_contract', 'hypothesis']\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_teardown_stops_the_server_and_releases_the_port(geanstalk_server_factory) -> None:
    server = geanstalk_server_factory()
    client = Wire(server.address)
    assert client.ask("put 0 0 60 1", b"x") == "INSERTED 1"
    client.send("reserve")
    client.reply()
    server.stop()
    assert not server.running
    assert not [t for t in threading.enumerate() if t.name.startswith("geanstalk-server")]
    assert client.reader.readline() == b""  # the server closed the connection
    client.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(server.address, timeout=5)


def test_factory_options_by_long_flag_names(geanstalk_server_factory, tmp_path) -> None:
    small = geanstalk_server_factory(max_job_size=10)
    wire = Wire(small.address)
    assert wire.ask("put 0 0 60 11", b"x" * 11) == "JOB_TOO_BIG"
    assert wire.ask("put 0 0 60 10", b"x" * 10) == "INSERTED 1"
    wire.close()
    (tmp_path / "log").mkdir()
    (tmp_path / "log2").mkdir()
    logged = geanstalk_server_factory(binlog_dir=tmp_path / "log", fsync_ms=0, binlog_size=65536)
    wire = Wire(logged.address)
    assert wire.ask("put 0 0 60 4", b"kept") == "INSERTED 1"
    stats = wire.ask("stats")
    assert "binlog-max-size: 65536" in stats
    wire.close()
    assert os.listdir(tmp_path / "log")
    nosync = geanstalk_server_factory(binlog_dir=tmp_path / "log2", no_fsync=True)
    assert nosync.config.fsync_ms is None
    with pytest.raises(TypeError, match="no option --no-such-thing"):
        geanstalk_server_factory(no_such_thing=1)


def test_a_unix_socket_server(geanstalk_server_factory, tmp_path) -> None:
    path = str(tmp_path / "g.sock")
    server = geanstalk_server_factory(listen=f"unix:{path}")
    assert server.address == path
    wire = Wire(path)
    assert wire.ask("put 0 0 60 1", b"u") == "INSERTED 1"
    wire.close()


def test_a_server_process_killed_and_restarted_keeps_its_logged_jobs(
    geanstalk_process_factory, tmp_path
) -> None:
    (tmp_path / "log").mkdir()
    proc = geanstalk_process_factory(binlog_dir=tmp_path / "log", fsync_ms=0)
    first_pid = proc.pid
    wire = Wire(proc.address)
    assert wire.ask("put 0 0 60 5", b"saved") == "INSERTED 1"
    wire.close()
    assert proc.kill() == -9
    proc.restart()
    assert proc.pid != first_pid
    wire = Wire(proc.address)
    assert wire.ask("peek 1") == "FOUND 1 5\nsaved"
    wire.close()
    assert proc.terminate() == 0  # the graceful stop exits 0


def test_geanstalk_process(geanstalk_process) -> None:
    wire = Wire(geanstalk_process.address)
    assert wire.ask("put 0 0 60 1", b"p") == "INSERTED 1"
    wire.close()
    assert geanstalk_process.pid > 0


EXTERNAL_TESTS = """
import pytest
import greenstalk
from geanstalk.testing import AdvanceUnavailable


def test_against_the_external_server(geanstalk_server):
    assert geanstalk_server.port == {port}
    with greenstalk.Client(geanstalk_server.address) as client:
        assert client.stats()["version"] == "{version}"
        client.put("left behind")
        client.put("delayed", delay=100)
    with pytest.raises(AdvanceUnavailable, match="external"):
        geanstalk_server.advance(100)


def test_each_test_starts_clean(geanstalk_server):
    with greenstalk.Client(geanstalk_server.address) as client:
        assert client.stats()["current-jobs-ready"] == 0
        assert client.stats()["current-jobs-delayed"] == 0


def test_the_process_fixture_skips(geanstalk_process):
    pass
"""


@pytest.mark.reference
@pytest.mark.parametrize("how", ["option", "ini"])
def test_against_an_external_beanstalkd(pytester: pytest.Pytester, how: str) -> None:
    from tests.servers import BEANSTALKD, SKIP_NO_REFERENCE, running

    if BEANSTALKD is None:
        pytest.skip(SKIP_NO_REFERENCE)
    with running("beanstalkd") as reference:
        version = subprocess.run([BEANSTALKD, "-v"], capture_output=True, text=True).stdout.split()[
            -1
        ]
        pytester.makepyfile(test_ext=EXTERNAL_TESTS.format(port=reference.port, version=version))
        where = f"127.0.0.1:{reference.port}"
        if how == "option":
            result = pytester.runpytest_subprocess(
                "-p", "no:cacheprovider", f"--geanstalk-host={where}"
            )
        else:
            pytester.makeini(f"[pytest]\ngeanstalk_host = {where}\n")
            result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
        result.assert_outcomes(passed=2, skipped=1)


def test_the_readme_example_passes(pytester: pytest.Pytester) -> None:
    import re
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme[readme.index("## Testing your application") :]
    example = re.findall(r"```python\n(.*?)```", section, re.S)[0]
    pytester.makepyfile(test_readme=example)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=1)
