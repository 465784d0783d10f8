"""With --http, /metrics counts the TLS listeners' handshakes, refusals and reloads."""

from __future__ import annotations

import signal
import socket
import sys
from pathlib import Path

import pytest

from tests.servers import free_port, recv_until
from tests.tls.conftest import tokens_file
from tests.tls.test_tls_listener import eventually, wait_closed

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "http"))
from ophelp import get, metric_samples  # noqa: E402


def tls_metrics(port: int) -> dict[str, float]:
    return metric_samples(port, "geanstalk_tls_")


def test_tls_counters_on_the_metrics_endpoint(tls_server, pki, tmp_path) -> None:
    http = free_port()
    tokens = tokens_file(tmp_path, "right\n")
    srv = tls_server(
        "--tls-cert", pki.server_pem, "--tls-key", pki.server_pem, "--auth-tokens", tokens,
        "--http", f"127.0.0.1:{http}",
    )  # fmt: skip
    eventually(lambda: tls_metrics(http).get("geanstalk_tls_pending") == 0)
    before = tls_metrics(http)
    with srv.tls(pki.client_context()) as s:
        s.sendall(b"auth right\r\n")
        assert recv_until(s) == b"AUTHENTICATED\r\n"
    with srv.tls(pki.client_context()) as s:
        s.sendall(b"auth wrong\r\n")
        assert wait_closed(s) == b"UNAUTHORIZED\r\n"
    with socket.create_connection(("127.0.0.1", srv.tls_port), timeout=10) as raw:
        raw.sendall(b"stats\r\n")  # no TLS at all
        assert wait_closed(raw) == b""
    srv.signal(signal.SIGHUP)
    eventually(lambda: "tls: reloaded certificate" in srv.log())

    def delta(name: str) -> float:
        return tls_metrics(http)[name] - before[name]

    eventually(lambda: delta("geanstalk_tls_handshake_failures_total") >= 1)
    assert delta("geanstalk_tls_handshakes_total") == 2
    assert delta("geanstalk_tls_auth_refused_total") == 1
    assert delta("geanstalk_tls_reloads_total") == 1
    assert tls_metrics(http)["geanstalk_tls_reload_failures_total"] == 0
    assert tls_metrics(http)["geanstalk_tls_pending"] == 0


def test_no_tls_metrics_without_tls(tmp_path) -> None:
    from tests.servers import geanstalk_server

    http = free_port()
    server = geanstalk_server("--http", f"127.0.0.1:{http}").start()
    try:
        assert tls_metrics(http) == {}
    finally:
        server.stop()


def test_connections_by_listener(tls_server, pki) -> None:
    """geanstalk_connections tells the TLS listener's clients from the plain port's."""
    http = free_port()
    srv = tls_server(
        "--tls-cert", pki.server_pem, "--tls-key", pki.server_pem, "--http", f"127.0.0.1:{http}"
    )

    def by_listener() -> dict[str, float]:
        _, _, body = get(http, "/metrics")
        return {
            s.labels["listener"]: s.value
            for fam in text_string_to_metric_families(body.decode())
            for s in fam.samples
            if s.name == "geanstalk_connections"
        }

    # The harness's start-up probes close in their own time.
    eventually(lambda: by_listener() == {"beanstalk": 0, "tls": 0})
    with srv.tls(pki.client_context()) as a, srv.tls(pki.client_context()) as b:
        for s in (a, b):
            s.sendall(b"list-tube-used\r\n")
            assert recv_until(s) == b"USING default\r\n"
        with socket.create_connection(("127.0.0.1", srv.plain_port), timeout=10) as plain:
            plain.sendall(b"list-tube-used\r\n")
            assert recv_until(plain) == b"USING default\r\n"
            assert by_listener() == {"beanstalk": 1, "tls": 2}
