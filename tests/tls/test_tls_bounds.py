"""The resource bounds cover TLS connections too: --max-connections counts
the plain and the TLS port together (a TLS connection from the start of its
handshake), and --idle-timeout closes an idle TLS client as it does a plain
one. Real server process, real TLS clients."""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from collections.abc import Callable

from tests.servers import recv_until


def _served(sock: socket.socket) -> bool:
    """Whether the server answers this connection (False once it reset or closed it)."""
    try:
        sock.sendall(b"list-tube-used\r\n")
        return recv_until(sock, timeout=10) == b"USING default\r\n"
    except (ConnectionError, ssl.SSLError):
        return False


def _open(make: Callable[[], socket.socket]) -> socket.socket:
    """A served connection, retried while the server still counts a closed
    one (the start-up probes) against the bound."""
    for _ in range(100):
        with contextlib.suppress(ConnectionError, ssl.SSLError, OSError):
            s = make()
            if _served(s):
                return s
            s.close()
        time.sleep(0.05)
    raise AssertionError("never served")


def _refused(make: Callable[[], socket.socket]) -> bool:
    try:
        s = make()
    except (ConnectionError, ssl.SSLError):
        return True  # reset during connect or handshake
    try:
        return not _served(s)
    finally:
        s.close()


def test_max_connections_counts_plain_and_tls_connections_together(tls_server, pki) -> None:  # type: ignore[no-untyped-def]
    srv = tls_server(
        "--tls-cert", pki.server_pem, "--tls-key", pki.server_pem, "--max-connections", "3"
    )  # fmt: skip
    ctx = pki.client_context()

    def plain() -> socket.socket:
        return socket.create_connection(("127.0.0.1", srv.plain_port), timeout=10)

    def tls() -> socket.socket:
        return srv.tls(ctx)

    held = [_open(plain), _open(tls), _open(tls)]
    # Three are open: a fourth is reset, on either port.
    assert _refused(tls)
    assert _refused(plain)
    assert all(_served(s) for s in held)
    assert "refused a connection (--max-connections)" in srv.log()
    # One TLS client goes: a TLS client is served again.
    held.pop().close()
    held.append(_open(tls))
    for s in held:
        s.close()


def test_idle_timeout_closes_an_idle_tls_connection(tls_server, pki) -> None:  # type: ignore[no-untyped-def]
    srv = tls_server(
        "--tls-cert", pki.server_pem, "--tls-key", pki.server_pem, "--idle-timeout", "1"
    )
    ctx = pki.client_context()
    idle = srv.tls(ctx)
    assert _served(idle)
    idle.settimeout(10)
    try:
        closed = idle.recv(1) == b""
    except (ConnectionError, ssl.SSLError):
        closed = True
    assert closed
    idle.close()
    assert "--idle-timeout" in srv.log()
