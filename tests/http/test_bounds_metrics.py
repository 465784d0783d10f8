"""/metrics shows the resource bounds: their settings, the job memory counted
against --max-memory, and how often each bound was hit (real server, real
sockets, parsed with prometheus_client)."""

from __future__ import annotations

import contextlib
import time

import pytest
from ophelp import metric_samples, say

from geanstalk.storage import JOB_OVERHEAD
from tests.servers import free_port, geanstalk_server

prometheus_client = pytest.importorskip("prometheus_client")


def _metrics(port: int) -> dict[str, float]:
    return metric_samples(
        port,
        "geanstalk_max_",
        "geanstalk_job_memory",
        "geanstalk_connections_r",
        "geanstalk_accept",
        "geanstalk_idle",
        "geanstalk_puts_out",
    )


def test_bounds_are_exported_and_count_what_happened() -> None:
    http = free_port()
    bound = 3 * (100 + JOB_OVERHEAD) + 50
    server = geanstalk_server(
        "--http", f"127.0.0.1:{http}", "--max-memory", str(bound), "--max-connections", "2"
    ).start()
    try:
        m = _metrics(http)
        assert m["geanstalk_max_memory_bytes"] == bound
        assert m["geanstalk_max_connections"] == 2
        assert m["geanstalk_job_memory_bytes"] == 0
        assert m["geanstalk_puts_out_of_memory_total"] == 0
        assert m["geanstalk_connections_refused_total"] == 0
        assert m["geanstalk_accept_pauses_total"] == 0
        assert m["geanstalk_idle_connections_closed_total"] == 0
        put = b"put 0 0 60 100\r\n" + b"b" * 100 + b"\r\n"
        for _ in range(50):  # the start-up probe may still count as open
            try:
                c = server.connect()
                assert say(c, b"list-tube-used\r\n") == b"USING default\r\n"
                break
            except ConnectionResetError:
                time.sleep(0.02)
        for _ in range(100):  # and is gone server-side: c is the only one
            if b"\ncurrent-connections: 1\n" in say(c, b"stats\r\n"):
                break
            time.sleep(0.02)
        assert say(c, put * 4, 4).count(b"INSERTED") == 3
        m = _metrics(http)
        assert m["geanstalk_job_memory_bytes"] == 3 * (100 + JOB_OVERHEAD)
        assert m["geanstalk_puts_out_of_memory_total"] == 1
        other = server.connect()
        # The third is reset at once (seen at connect, as a reset, or as EOF).
        with contextlib.suppress(ConnectionResetError):
            extra = server.connect()
            extra.settimeout(10)
            try:
                assert extra.recv(1) == b""
            finally:
                extra.close()
        assert say(other, b"delete 1\r\n") == b"DELETED\r\n"
        m = _metrics(http)
        assert m["geanstalk_connections_refused_total"] >= 1
        assert m["geanstalk_job_memory_bytes"] == 2 * (100 + JOB_OVERHEAD)
        for s in (c, other):
            s.close()
    finally:
        server.stop()


def test_without_bounds_the_settings_read_zero() -> None:
    http = free_port()
    server = geanstalk_server("--http", f"127.0.0.1:{http}").start()
    try:
        with server.connect() as c:
            assert say(c, b"put 0 0 60 2\r\nhi\r\n") == b"INSERTED 1\r\n"
        m = _metrics(http)
        assert m["geanstalk_max_memory_bytes"] == 0
        assert m["geanstalk_max_connections"] == 0
        assert m["geanstalk_job_memory_bytes"] == 0  # nothing is counted without a bound
    finally:
        server.stop()
