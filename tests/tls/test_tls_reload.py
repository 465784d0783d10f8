"""SIGHUP reloads the certificate, key and client CA without dropping anyone."""

from __future__ import annotations

import shutil
import signal
import ssl
import threading
import time

import pytest

from tests.servers import recv_until


def until_true(predicate, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.05)


def handshake_ok(srv, ctx: ssl.SSLContext) -> bool:  # type: ignore[no-untyped-def]
    """A full exchange works (with TLS 1.3 a refused client certificate only
    shows at the first read)."""
    try:
        with srv.tls(ctx) as s:
            s.sendall(b"list-tube-used\r\n")
            return recv_until(s) == b"USING default\r\n"
    except (ssl.SSLError, ConnectionError, OSError):
        return False


class Traffic(threading.Thread):
    """One established TLS connection doing put/reserve/delete non-stop, and
    new connections made over and over: the load a reload happens under."""

    def __init__(self, srv, ctx: ssl.SSLContext) -> None:  # type: ignore[no-untyped-def]
        super().__init__(daemon=True)
        self.sock = srv.tls(ctx)
        self.rounds = 0
        self.error: BaseException | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                self.sock.sendall(b"put 0 0 60 4\r\nload\r\nreserve\r\n")
                reply = recv_until(self.sock, 2)
                jid = reply.split(b"\r\n")[0].split()[1]
                assert reply == b"INSERTED %b\r\nRESERVED %b 4\r\nload\r\n" % (jid, jid), reply
                self.sock.sendall(b"delete %b\r\n" % jid)
                assert recv_until(self.sock) == b"DELETED\r\n"
                self.rounds += 1
        except BaseException as exc:
            self.error = exc

    def finish(self) -> int:
        self.stop.set()
        self.join(30)
        self.sock.close()
        if self.error is not None:
            raise self.error
        return self.rounds


def test_reload_under_load_switches_new_handshakes_and_keeps_established_ones(
    tls_server, pki, tmp_path
) -> None:
    cert = tmp_path / "live.pem"
    shutil.copy(pki.server_pem, cert)
    srv = tls_server("--tls-cert", str(cert), "--tls-key", str(cert))
    old_trust = pki.client_context()
    new_trust = pki.client_context(cafile=pki.other_ca_pem)
    assert handshake_ok(srv, old_trust) and not handshake_ok(srv, new_trust)

    traffic = Traffic(srv, old_trust)
    traffic.start()
    until_true(lambda: traffic.rounds > 20)
    newcomers = [handshake_ok(srv, old_trust) for _ in range(5)]
    # The new certificate (from the other CA) replaces the file; then SIGHUP.
    shutil.copy(pki.other_server_pem, cert)
    srv.signal(signal.SIGHUP)
    until_true(lambda: handshake_ok(srv, new_trust))
    assert "tls: reloaded certificate" in srv.log()
    assert not handshake_ok(srv, old_trust)
    before = traffic.rounds
    until_true(lambda: traffic.rounds > before + 20)
    assert traffic.finish() > 40  # the established connection never broke
    assert all(newcomers)

    # A reload that fails (a broken file) keeps serving the last good one.
    cert.write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n")
    srv.signal(signal.SIGHUP)
    until_true(lambda: "tls: reload failed, still serving the previous files" in srv.log())
    assert "not a usable pair" in srv.log()
    assert handshake_ok(srv, new_trust)


def test_reload_changes_which_client_certificates_are_accepted(tls_server, pki, tmp_path) -> None:
    ca = tmp_path / "clients-ca.pem"
    shutil.copy(pki.ca_pem, ca)
    srv = tls_server(
        "--tls-cert", pki.server_pem, "--tls-key", pki.server_pem, "--tls-client-ca", str(ca)
    )
    ours = pki.client_context(cert=pki.client_pem)
    theirs = pki.client_context(cert=pki.other_client_pem)
    established = srv.tls(ours)
    assert handshake_ok(srv, ours) and not handshake_ok(srv, theirs)
    shutil.copy(pki.other_ca_pem, ca)
    srv.signal(signal.SIGHUP)
    until_true(lambda: handshake_ok(srv, theirs))
    assert not handshake_ok(srv, ours)
    # The connection made under the old CA is still served.
    established.sendall(b"list-tube-used\r\n")
    assert recv_until(established) == b"USING default\r\n"
    established.close()


@pytest.mark.parametrize("loop_flag", ["--no-uvloop"])
def test_tls_on_asyncio_own_loop(tls_server, pki, loop_flag) -> None:
    srv = tls_server("--tls-cert", pki.server_pem, "--tls-key", pki.server_pem, loop_flag)
    until_true(lambda: "event loop: asyncio" in srv.log())
    traffic = Traffic(srv, pki.client_context())
    traffic.start()
    until_true(lambda: traffic.rounds > 10)
    srv.signal(signal.SIGHUP)
    until_true(lambda: "tls: reloaded certificate" in srv.log())
    before = traffic.rounds
    until_true(lambda: traffic.rounds > before + 10)
    traffic.finish()
