"""Helpers of the operations tests: raw HTTP requests and beanstalk conversations."""

from __future__ import annotations

import socket

from tests.servers import recv_until


def http_request(
    port: int, path: str, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One request over a fresh connection; the response read to EOF."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    hdrs = {}
    for line in header_lines:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return int(status_line.split()[1]), hdrs, body


def get(port: int, path: str, **kw: object) -> tuple[int, dict[str, str], bytes]:
    return http_request(port, path, **kw)  # type: ignore[arg-type]


def say(sock: socket.socket, data: bytes, replies: int = 1) -> bytes:
    sock.sendall(data)
    return recv_until(sock, replies)


def yaml_dict(reply: bytes) -> dict[str, str]:
    """The body of an OK reply to stats / stats-tube, as key -> text."""
    _, _, body = reply.partition(b"\r\n")
    out = {}
    for line in body.decode().splitlines():
        if line.startswith("---") or not line:
            continue
        k, _, v = line.partition(": ")
        out[k] = v.strip('"')
    return out


def stats(sock: socket.socket) -> dict[str, str]:
    return yaml_dict(say(sock, b"stats\r\n"))


def stats_tube(sock: socket.socket, tube: str) -> dict[str, str]:
    return yaml_dict(say(sock, f"stats-tube {tube}\r\n".encode()))


def workload(sock: socket.socket) -> None:
    """A scripted workload touching every state: puts to three tubes, a
    delayed job, a reserve and delete, a bury, a release, a kick, a pause."""
    for tube, n in (("alpha", 3), ("beta", 2), ("gamma", 1)):
        say(sock, f"use {tube}\r\n".encode())
        for i in range(n):
            say(sock, b"put %d 0 60 5\r\nhello\r\n" % (i * 600))
    say(sock, b"put 5 3600 60 4\r\nlate\r\n")
    say(sock, b"watch alpha\r\n")
    say(sock, b"watch beta\r\n")
    say(sock, b"ignore default\r\n")
    job1 = say(sock, b"reserve\r\n").split()[1]
    say(sock, b"delete " + job1 + b"\r\n")
    job2 = say(sock, b"reserve\r\n").split()[1]
    say(sock, b"bury " + job2 + b" 10\r\n")
    job3 = say(sock, b"reserve\r\n").split()[1]
    say(sock, b"release " + job3 + b" 10 0\r\n")
    say(sock, b"use alpha\r\n")
    say(sock, b"kick 1\r\n")
    job4 = say(sock, b"reserve\r\n").split()[1]
    say(sock, b"peek-ready\r\n")
    say(sock, b"stats-job " + job4 + b"\r\n")
    say(sock, b"list-tubes\r\n")
    say(sock, b"pause-tube gamma 100\r\n")
    say(sock, b"put 1 0 60 3\r\nabc\r\n")


def metric_samples(port: int, *prefixes: str) -> dict[str, float]:
    """GET /metrics, parsed with prometheus_client: each sample whose name
    starts with one of prefixes, by name (callers importorskip the parser)."""
    from prometheus_client.parser import text_string_to_metric_families

    status, _, body = get(port, "/metrics")
    assert status == 200
    return {
        s.name: s.value
        for fam in text_string_to_metric_families(body.decode())
        for s in fam.samples
        if s.name.startswith(prefixes)
    }
