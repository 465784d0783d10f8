"""TLS listeners over real sockets: client flows, mutual TLS, handshakes that
fail for each reason, the handshake timeout and bound, and the flags."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
import time
import warnings

import greenstalk
import pystalk
import pytest

from tests.servers import recv_until


def wait_closed(sock: socket.socket, timeout: float = 20.0) -> bytes:
    """Read until the server closes; what it sent before (a reset counts as a close)."""
    sock.settimeout(timeout)
    got = b""
    try:
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                return got
            got += chunk
    except (ConnectionResetError, ssl.SSLError):
        return got


def eventually(predicate, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.02)


class TLSPystalk(pystalk.BeanstalkClient):
    """pystalk over TLS: it has no socket parameter, so its connect step is replaced."""

    context: ssl.SSLContext

    def _connect(self) -> None:
        raw = socket.create_connection((self.host, self.port), timeout=self.socket_timeout)
        self.socket = self.context.wrap_socket(raw, server_hostname=self.host)
        self._re_establish_use_watch()


def greenstalk_flow(sock: ssl.SSLSocket) -> None:
    body = bytes(range(256)) * 200  # binary, bigger than one TLS record
    with greenstalk.Client(sock, encoding=None, use="tls", watch="tls") as c:
        jid = c.put(body, priority=5, ttr=30)
        job = c.reserve(timeout=5)
        assert (job.id, job.body) == (jid, body)
        assert c.stats_job(job)["tube"] == "tls"
        c.bury(job)
        assert c.kick(1) == 1
        job = c.reserve(timeout=5)
        c.delete(job)
        with pytest.raises(greenstalk.TimedOutError):
            c.reserve(timeout=0)


def pystalk_flow(client: pystalk.BeanstalkClient) -> None:
    client.use("pys")
    client.watch("pys")
    _, jid = client.put_job("hello over tls")
    job = client.reserve_job(timeout=5)
    assert (job.job_id, job.job_data) == (jid, b"hello over tls")
    client.delete_job(job.job_id)
    assert client.stats()["current-jobs-ready"] == 0


def test_greenstalk_and_pystalk_over_tls_share_the_server_with_plain_clients(
    tls_server, pki
) -> None:
    srv = tls_server("--tls-cert", pki.server_pem, "--tls-key", pki.server_pem)
    greenstalk_flow(srv.tls(pki.client_context()))
    TLSPystalk.context = pki.client_context()
    client = TLSPystalk("127.0.0.1", srv.tls_port, socket_timeout=10, auto_decode=False)
    pystalk_flow(client)
    # A job put over TLS is there for a plain client, and the other way round.
    with srv.tls(pki.client_context()) as s:
        s.sendall(b"use shared\r\nput 0 0 10 3\r\nabc\r\n")
        assert recv_until(s, 2) == b"USING shared\r\nINSERTED 3\r\n"
    with srv.process.connect() as p:
        p.sendall(b"watch shared\r\nreserve-with-timeout 0\r\n")
        assert recv_until(p, 2) == b"WATCHING 2\r\nRESERVED 3 3\r\nabc\r\n"
    client.close()
    log = srv.log()
    assert "TLSv1.3" in log and "tls: listening on 127.0.0.1:" in log


def test_greenstalk_and_pystalk_over_mutual_tls_and_the_subject_is_logged(tls_server, pki) -> None:
    srv = tls_server(
        "--tls-cert", pki.server_pem, "--tls-key", pki.server_pem, "--tls-client-ca", pki.ca_pem
    )
    greenstalk_flow(srv.tls(pki.client_context(cert=pki.client_pem)))
    TLSPystalk.context = pki.client_context(cert=pki.client_pem)
    client = TLSPystalk("127.0.0.1", srv.tls_port, socket_timeout=10)
    pystalk_flow(client)
    client.close()
    eventually(lambda: "client certificate subject" in srv.log())
    line = next(x for x in srv.log().splitlines() if "client certificate subject" in x)
    subject, _, issuer = line.partition(" issuer ")
    assert "CN=worker-1" in subject and "O=geanstalk tests" in issuer


def test_tls_1_2_works_and_older_versions_are_refused(tls_server, pki) -> None:
    srv = tls_server("--tls-cert", pki.server_pem, "--tls-key", pki.server_pem)
    ctx = pki.client_context()
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with srv.tls(ctx) as s:
        assert s.version() == "TLSv1.2"
        s.sendall(b"list-tube-used\r\n")
        assert recv_until(s) == b"USING default\r\n"
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.load_verify_locations(pki.ca_pem)
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # that is the point
        old.minimum_version = ssl.TLSVersion.TLSv1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        srv.tls(old)
    eventually(lambda: "handshake failed: SSL: UNSUPPORTED_PROTOCOL" in srv.log())
    assert srv.tls_connections() == (0, 1)  # the TLS 1.2 one


def refused(srv, ctx: ssl.SSLContext) -> None:  # type: ignore[no-untyped-def]
    """The handshake is refused: at once (TLS 1.2), or with TLS 1.3 at the
    client's first read, since the client finishes before the server checks it."""
    try:
        s = srv.tls(ctx)
    except (ssl.SSLError, ConnectionResetError):
        return
    with s:
        try:
            s.sendall(b"stats\r\n")
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
            return
        assert wait_closed(s) == b""


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_handshakes_that_fail_for_each_reason_are_refused_logged_and_not_counted(
    tls_server, pki, version
) -> None:
    srv = tls_server(
        "--tls-cert", pki.server_pem, "--tls-key", pki.server_pem, "--tls-client-ca", pki.ca_pem
    )

    def ctx(cert: str | None) -> ssl.SSLContext:
        c = pki.client_context(cert=cert)
        c.minimum_version = c.maximum_version = version
        return c

    reasons = {
        "no client certificate": (ctx(None), "PEER_DID_NOT_RETURN_A_CERTIFICATE"),
        "a CA it does not trust": (ctx(pki.other_client_pem), "CERTIFICATE_VERIFY_FAILED"),
        "an expired certificate": (ctx(pki.expired_client_pem), "CERTIFICATE_VERIFY_FAILED"),
    }
    for what, (context, _) in reasons.items():
        refused(srv, context)
        assert srv.tls_connections() == (0, 0), what
    # Plain beanstalk protocol on the TLS port: no reply, closed.
    with srv.raw_tls_port() as raw:
        raw.sendall(b"stats\r\n")
        assert wait_closed(raw) == b""
    # The client does not trust the server (its own check; the server sees an alert).
    with pytest.raises(ssl.SSLCertVerificationError):
        srv.tls(pki.client_context(cert=pki.client_pem, cafile=pki.other_ca_pem))
    for _, reason in reasons.values():
        eventually(lambda reason=reason: f"handshake failed: SSL: {reason}" in srv.log())
    eventually(lambda: "handshake failed: SSL: WRONG_VERSION_NUMBER" in srv.log())
    eventually(lambda: "TLSV1_ALERT_UNKNOWN_CA" in srv.log())
    assert srv.tls_connections() == (0, 0)
    with srv.tls(ctx(pki.client_pem)) as s:  # a good client still gets in
        s.sendall(b"list-tube-used\r\n")
        assert recv_until(s) == b"USING default\r\n"


def test_a_connection_counts_in_stats_only_after_its_handshake(tls_server, pki) -> None:
    srv = tls_server("--tls-cert", pki.server_pem, "--tls-key", pki.server_pem)
    idle = [srv.raw_tls_port() for _ in range(3)]
    half = srv.raw_tls_port()
    half.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # the start of a ClientHello
    try:
        assert srv.tls_connections() == (0, 0)
        with srv.tls(pki.client_context()) as s:
            s.sendall(b"list-tube-used\r\n")
            assert recv_until(s) == b"USING default\r\n"
            assert srv.tls_connections() == (1, 1)
    finally:
        for s in [*idle, half]:
            s.close()


def test_a_handshake_that_does_not_finish_in_time_is_closed(tls_server, pki) -> None:
    srv = tls_server(
        "--tls-cert", pki.server_pem, "--tls-key", pki.server_pem, "--tls-handshake-timeout", "1"
    )
    with srv.raw_tls_port() as idle, srv.raw_tls_port() as half:
        half.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        assert wait_closed(idle) == b""
        assert wait_closed(half) in (b"", b"\x15\x03\x03\x00\x02\x02\x32")  # maybe an alert
    eventually(lambda: srv.log().count("handshake timed out") >= 2)
    assert srv.tls_connections() == (0, 0)


def test_at_most_max_pending_handshakes_at_once(tls_server, pki) -> None:
    srv = tls_server(
        "--tls-cert", pki.server_pem, "--tls-key", pki.server_pem, "--max-pending-handshakes", "2"
    )
    hogs = [srv.raw_tls_port(), srv.raw_tls_port()]

    # Both slots held (the server has taken both: a third is refused at once
    # with a reset, as accept.py refuses past --max-connections).
    def third_refused() -> bool:
        try:
            with srv.tls(pki.client_context()) as s:
                s.sendall(b"list-tube-used\r\n")
                return wait_closed(s) == b""
        except (ssl.SSLError, ConnectionError):
            return True

    eventually(third_refused)
    eventually(lambda: "refused a connection (--max-pending-handshakes)" in srv.log())
    for hog in hogs:
        hog.close()

    # Slots free again: a client gets in.
    def served() -> bool:
        try:
            with srv.tls(pki.client_context()) as s:
                s.sendall(b"list-tube-used\r\n")
                return recv_until(s) == b"USING default\r\n"
        except (ssl.SSLError, ConnectionError):
            return False

    eventually(served)


def test_no_plain_serves_tls_only(tls_server, pki) -> None:
    srv = tls_server(
        "--tls-cert", pki.server_pem, "--tls-key", pki.server_pem, "--no-plain", plain=False
    )
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", srv.plain_port), timeout=10)
    with srv.tls(pki.client_context()) as s:
        s.sendall(b"put 0 0 1 2\r\nok\r\n")
        assert recv_until(s) == b"INSERTED 1\r\n"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "geanstalk", "serve", "-l", "127.0.0.1", "-p", "0", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tls-listen", "127.0.0.1:0"], "--tls-listen needs --tls-cert and --tls-key"),
        (["--no-plain"], "--no-plain needs --tls-listen"),
        (["--tls-cert", "x.pem", "--tls-key", "x.pem"], "--tls-cert needs --tls-listen"),
        (["--auth-tokens", "t"], "--auth-tokens needs --tls-listen"),
        (["--tls-listen", "nowhere"], "invalid --tls-listen address"),
    ],
)
def test_tls_flags_that_do_not_go_together_are_usage_errors(args, message) -> None:
    done = run_cli(*args)
    assert done.returncode == 5
    assert message in done.stderr


def test_unusable_files_stop_the_start_with_the_reason(pki, tmp_path) -> None:
    missing = str(tmp_path / "missing.pem")
    done = run_cli("--tls-listen", "127.0.0.1:0", "--tls-cert", missing, "--tls-key", missing)
    assert done.returncode == 1 and "cannot read" in done.stderr and "missing.pem" in done.stderr
    done = run_cli(
        "--tls-listen", "127.0.0.1:0", "--tls-cert", pki.server_pem, "--tls-key", pki.ca_pem
    )
    assert done.returncode == 1 and "not a usable pair" in done.stderr
    done = run_cli(
        "--tls-listen",
        "127.0.0.1:0",
        "--tls-cert",
        pki.server_pem,
        "--tls-key",
        pki.server_pem,
        "--tls-client-ca",
        pki.server_pem + ".nope",
    )
    assert done.returncode == 1 and ".nope" in done.stderr
