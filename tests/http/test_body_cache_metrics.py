"""/metrics shows the -b body cache: its limit and size, hits, misses and
read-backs (real server with -b --body-cache, real sockets, parsed with
prometheus_client)."""

from __future__ import annotations

import pytest
from ophelp import metric_samples, say

from tests.servers import free_port, geanstalk_server

prometheus_client = pytest.importorskip("prometheus_client")


def _metrics(port: int) -> dict[str, float]:
    return metric_samples(port, "geanstalk_body_")


def test_body_cache_series(tmp_path) -> None:
    http = free_port()
    server = geanstalk_server(
        "--http", f"127.0.0.1:{http}", "-b", str(tmp_path), "--body-cache", "0"
    ).start()
    try:
        c = server.connect()
        body = b"x" * 1000
        assert say(c, b"put 0 0 60 1000\r\n" + body + b"\r\n").startswith(b"INSERTED 1")
        assert say(c, b"peek 1\r\n") == b"FOUND 1 1000\r\n" + body + b"\r\n"
        m = _metrics(http)
        assert m["geanstalk_body_cache_limit_bytes"] == 0
        assert m["geanstalk_body_cache_bytes"] == 0
        assert m["geanstalk_body_cache_bodies"] == 0
        assert m["geanstalk_body_cache_misses_total"] == 1
        assert m["geanstalk_body_reads_total"] == 1
        assert m["geanstalk_body_read_bytes_total"] >= 1000
        assert m["geanstalk_body_read_errors_total"] == 0
        c.close()
    finally:
        server.stop()


def test_without_b_the_series_are_zero() -> None:
    http = free_port()
    server = geanstalk_server("--http", f"127.0.0.1:{http}").start()
    try:
        m = _metrics(http)
        assert m["geanstalk_body_cache_limit_bytes"] == 0
        assert m["geanstalk_body_cache_hits_total"] == 0
    finally:
        server.stop()
