"""Fixtures for the TLS and auth tests: certificates made here, servers on loopback.

Every certificate comes from trustme (throwaway CAs, nothing from the
machine's trust store); every server is a real `geanstalk serve` child
process with a plain listener (used to read `stats` from outside the TLS
path) and a TLS listener, each on a free 127.0.0.1 port.
"""

from __future__ import annotations

import datetime
import os
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from tests.servers import ServerProcess, free_port, geanstalk_command, recv_until, wait_for_port


@dataclass
class PKI:
    """File paths of a small PKI: the server's CA and a CA that is not it."""

    dir: Path
    ca: trustme.CA
    ca_pem: str  # trusts the server certificate; signs the good client certificates
    server_pem: str  # certificate chain and key in one file
    client_pem: str  # CN=worker-1, signed by ca
    expired_client_pem: str
    other_ca: trustme.CA
    other_ca_pem: str
    other_client_pem: str  # signed by other_ca
    other_server_pem: str  # a server certificate from other_ca

    def client_context(self, cert: str | None = None, cafile: str | None = None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=cafile or self.ca_pem)
        if cert is not None:
            ctx.load_cert_chain(cert)
        return ctx


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    d = tmp_path_factory.mktemp("pki")
    ca = trustme.CA(organization_name="geanstalk tests")
    other = trustme.CA(organization_name="somebody else")

    def write(blob: trustme.Blob | trustme.LeafCert, name: str) -> str:
        path = str(d / name)
        if isinstance(blob, trustme.LeafCert):
            blob.private_key_and_cert_chain_pem.write_to_path(path)
        else:
            blob.write_to_path(path)
        return path

    past = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)
    return PKI(
        dir=d,
        ca=ca,
        ca_pem=write(ca.cert_pem, "ca.pem"),
        server_pem=write(ca.issue_cert("127.0.0.1", "localhost"), "server.pem"),
        client_pem=write(
            ca.issue_cert("worker-1@example.org", common_name="worker-1"), "client.pem"
        ),
        expired_client_pem=write(
            ca.issue_cert(
                "old@example.org",
                common_name="old-worker",
                not_before=past,
                not_after=past + datetime.timedelta(days=1),
            ),
            "expired-client.pem",
        ),
        other_ca=other,
        other_ca_pem=write(other.cert_pem, "other-ca.pem"),
        other_client_pem=write(other.issue_cert("x@example.org", common_name="x"), "other.pem"),
        other_server_pem=write(other.issue_cert("127.0.0.1"), "other-server.pem"),
    )


@dataclass
class TLSServer:
    """A geanstalk child with a plain port and a TLS port."""

    process: ServerProcess
    plain_port: int
    tls_port: int
    stderr_path: str
    plain: bool = True
    stats_calls: int = 0

    def tls(self, ctx: ssl.SSLContext, timeout: float = 10.0) -> ssl.SSLSocket:
        raw = socket.create_connection(("127.0.0.1", self.tls_port), timeout=timeout)
        return ctx.wrap_socket(raw, server_hostname="127.0.0.1")

    def raw_tls_port(self, timeout: float = 10.0) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.tls_port), timeout=timeout)

    def tls_connections(self) -> tuple[int, int]:
        """(current, total) connections in stats, less the plain ones this
        harness made: the start-up probe and every stats call, this one too."""
        stats = self.stats()
        current = int(stats["current-connections"]) - 1
        total = int(stats["total-connections"]) - self.stats_calls - (1 if self.plain else 0)
        return current, total

    def stats(self) -> dict[str, str]:
        self.stats_calls += 1
        with socket.create_connection(("127.0.0.1", self.plain_port), timeout=10) as s:
            s.sendall(b"stats\r\n")
            reply = recv_until(s)
        body = reply.split(b"\r\n", 1)[1]
        out = {}
        for line in body.decode().splitlines()[1:]:
            key, _, value = line.partition(": ")
            out[key] = value
        return out

    def log(self) -> str:
        with open(self.stderr_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def signal(self, sig: int) -> None:
        self.process.signal(sig)


def start_server(tmp_path: Path, *flags: str, plain: bool = True) -> TLSServer:
    """Start a server on two free ports. A port found free can be taken by
    another process before the server binds it (exit 111): then try others."""
    for attempt in range(3):
        port, tls_port = free_port(), free_port()
        if port == tls_port:
            continue
        stderr_path = str(tmp_path / f"server-{tls_port}.log")
        argv = geanstalk_command(
            "-V", "-l", "127.0.0.1", "-p", str(port),
            "--tls-listen", f"127.0.0.1:{tls_port}", *flags,
        )  # fmt: skip
        proc = ServerProcess(
            "geanstalk", argv, port if plain else tls_port, stderr_path=stderr_path
        )
        try:
            proc.start()
        except RuntimeError:
            if attempt == 2 or proc.proc is None or proc.proc.returncode != 111:
                raise
            continue
        if plain:
            wait_for_port(tls_port, 10.0, proc.proc)
        return TLSServer(proc, port, tls_port, stderr_path, plain)
    raise RuntimeError("no two free ports")


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator:
    """tls_server(*flags, plain=True): a started server, stopped at teardown."""
    started: list[TLSServer] = []

    def start(*flags: str, plain: bool = True) -> TLSServer:
        server = start_server(tmp_path, *flags, plain=plain)
        started.append(server)
        return server

    yield start
    for server in started:
        server.process.stop()


def tokens_file(tmp_path: Path, text: str, mode: int = 0o600) -> str:
    path = tmp_path / "tokens"
    path.write_text(text)
    os.chmod(path, mode)
    return str(path)
